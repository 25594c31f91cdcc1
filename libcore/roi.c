/* mod_jpip: named regions of interest. */
#include "roi.h"

#include <string.h>

#include <apr_strings.h>

typedef struct collect_t {
    const jpip_box_layout_t *lay;
    jpip_src_t *src;
    apr_pool_t *pool;
    apr_uint64_t width, height;
    apr_uint64_t budget; /* bytes still allowed to be read */
    jpip_roi_t *rois;
    apr_size_t n, cap;
} collect_t;

/* A name the `roi` field could ask for: JPIP token characters. */
static int name_ok(const char *s, apr_size_t n)
{
    apr_size_t i;

    if (n == 0 || n > 255) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7F || strchr("()<>@,;:\\\"/[]?={}&'", c) != NULL) {
            return 0;
        }
    }
    return 1;
}

/* Keep region (x, y, w, h) named name[0..n) if it is usable. */
static void keep(collect_t *c, const char *name, apr_size_t n, apr_uint64_t x, apr_uint64_t y,
                 apr_uint64_t w, apr_uint64_t h)
{
    jpip_roi_t *r;

    if (c->n >= JPIP_ROI_MAX || !name_ok(name, n) || w == 0 || h == 0 || x >= c->width ||
        y >= c->height) {
        return;
    }
    if (c->n == c->cap) {
        apr_size_t cap = c->cap ? 2 * c->cap : 8;
        jpip_roi_t *v = apr_palloc(c->pool, cap * sizeof(*v));

        if (c->n > 0) {
            memcpy(v, c->rois, c->n * sizeof(*v));
        }
        c->rois = v;
        c->cap = cap;
    }
    r = &c->rois[c->n++];
    r->name = apr_pstrmemdup(c->pool, name, n);
    r->x = x;
    r->y = y;
    r->w = w > c->width - x ? c->width - x : w;
    r->h = h > c->height - y ? c->height - y : h;
}

/* Read the contents of box i (at most JPIP_ROI_MAX_BOX bytes, within the
 * budget). NULL when it is too large or cannot be read. */
static const unsigned char *contents(collect_t *c, apr_uint32_t i, apr_size_t *len, jpip_err_t *err,
                                     jpip_code_t *rc)
{
    const jpip_box_t *b = &c->lay->boxes[i];
    unsigned char *buf;

    *rc = JPIP_OK;
    if (b->contents_len > JPIP_ROI_MAX_BOX || b->contents_len > c->budget) {
        return NULL;
    }
    *len = (apr_size_t)b->contents_len;
    buf = apr_palloc(c->pool, *len + 1);
    if (buf == NULL) {
        *rc = jpip_err_set(err, JPIP_E_NOMEM, "out of memory for metadata");
        return NULL;
    }
    c->budget -= b->contents_len;
    if (*len > 0) {
        jpip_code_t r = jpip_src_read(c->src, b->file_off + b->hdr_len, buf, *len, err);

        if (r == JPIP_E_IO) {
            *rc = r;
            return NULL;
        }
        if (r != JPIP_OK) {
            return NULL; /* a box the file does not hold whole: not offered */
        }
    }
    buf[*len] = '\0';
    return buf;
}

/* ------------------------------------------------------------ XML */

static int is_space(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* A decimal integer filling s[0..n), at most 2^40. */
static int parse_num(const char *s, apr_size_t n, apr_uint64_t *v)
{
    apr_uint64_t x = 0;
    apr_size_t i;

    if (n == 0 || n > 12) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
        x = x * 10 + (apr_uint64_t)(s[i] - '0');
    }
    *v = x;
    return x <= ((apr_uint64_t)1 << 40);
}

/* One <roi .../> element starting after "<roi" at s (up to end). */
static void xml_element(collect_t *c, const char *s, const char *end)
{
    const char *name = NULL;
    apr_size_t nlen = 0;
    apr_uint64_t v[4];
    int have = 0;

    for (;;) {
        const char *k, *val;
        apr_size_t klen, vlen;
        char q;

        while (s < end && is_space((unsigned char)*s)) {
            s++;
        }
        if (s >= end || *s == '/' || *s == '>') {
            break;
        }
        k = s;
        while (s < end && *s != '=' && !is_space((unsigned char)*s) && *s != '>' && *s != '/') {
            s++;
        }
        klen = (apr_size_t)(s - k);
        while (s < end && is_space((unsigned char)*s)) {
            s++;
        }
        if (s >= end || *s != '=') {
            return; /* not an attribute: a malformed element */
        }
        s++;
        while (s < end && is_space((unsigned char)*s)) {
            s++;
        }
        if (s >= end || (*s != '"' && *s != '\'')) {
            return;
        }
        q = *s++;
        val = s;
        while (s < end && *s != q) {
            s++;
        }
        if (s >= end) {
            return;
        }
        vlen = (apr_size_t)(s - val);
        s++;
        if (klen == 4 && memcmp(k, "name", 4) == 0) {
            name = val;
            nlen = vlen;
        } else if (klen == 1 && *k != '\0' && strchr("xywh", *k) != NULL) {
            int idx = (int)(strchr("xywh", *k) - "xywh");

            if (!parse_num(val, vlen, &v[idx])) {
                return;
            }
            have |= 1 << idx;
        }
    }
    if (name != NULL && have == 15) {
        keep(c, name, nlen, v[0], v[1], v[2], v[3]);
    }
}

static void xml_scan(collect_t *c, const char *s, apr_size_t len)
{
    const char *end = s + len, *p = s;

    while ((p = memchr(p, '<', (apr_size_t)(end - p))) != NULL) {
        if (end - p > 4 && memcmp(p, "<roi", 4) == 0 && is_space((unsigned char)p[4])) {
            xml_element(c, p + 4, end);
        }
        p++;
    }
}

/* ----------------------------------------------------------- JPX */

/* The label naming box i: a 'lbl ' child of an enclosing 'asoc', or the
 * first box of an 'asoc' child of it, nearest first. */
static apr_uint32_t label_of(const jpip_box_layout_t *lay, apr_uint32_t i)
{
    apr_uint32_t p = lay->boxes[i].parent;

    while (p != JPIP_BOX_NONE && p < lay->nboxes && lay->boxes[p].type == JPIP_BOX_ASOC) {
        apr_uint32_t k;

        for (k = p + 1; k < lay->boxes[p].end && k < lay->nboxes; k = lay->boxes[k].end) {
            if (lay->boxes[k].type == JPIP_BOX_TYPE('l', 'b', 'l', ' ')) {
                return k;
            }
            if (lay->boxes[k].type == JPIP_BOX_ASOC && k + 1 < lay->boxes[k].end &&
                lay->boxes[k + 1].type == JPIP_BOX_TYPE('l', 'b', 'l', ' ')) {
                return k + 1;
            }
            if (lay->boxes[k].end <= k) {
                break;
            }
        }
        p = lay->boxes[p].parent;
    }
    return JPIP_BOX_NONE;
}

/* The bounding box of the regions of 'roid' contents d[0..n). */
static int roid_bounds(const unsigned char *d, apr_size_t n, apr_uint64_t *x0, apr_uint64_t *y0,
                       apr_uint64_t *x1, apr_uint64_t *y1)
{
    unsigned nr, k;
    int any = 0;

    if (n < 1) {
        return 0;
    }
    nr = d[0];
    if (n < 1 + (apr_size_t)nr * 19) {
        return 0;
    }
    for (k = 0; k < nr; k++) {
        const unsigned char *e = d + 1 + (apr_size_t)k * 19;
        apr_uint64_t x = jpip_be32(e + 3), y = jpip_be32(e + 7);
        apr_uint64_t w = jpip_be32(e + 11), h = jpip_be32(e + 15);
        apr_uint64_t a0, b0, a1, b1;

        if (e[1] == 1) { /* elliptical: centre and half axes */
            a0 = x > w ? x - w : 0;
            b0 = y > h ? y - h : 0;
            a1 = x + w;
            b1 = y + h;
        } else if (e[1] == 0) {
            a0 = x;
            b0 = y;
            a1 = x + w;
            b1 = y + h;
        } else {
            continue; /* a shape this reader does not know */
        }
        if (a1 <= a0 || b1 <= b0) {
            continue;
        }
        if (!any || a0 < *x0) {
            *x0 = a0;
        }
        if (!any || b0 < *y0) {
            *y0 = b0;
        }
        if (!any || a1 > *x1) {
            *x1 = a1;
        }
        if (!any || b1 > *y1) {
            *y1 = b1;
        }
        any = 1;
    }
    return any;
}

jpip_code_t jpip_roi_collect(const jpip_box_layout_t *layout, jpip_src_t *src, apr_uint64_t width,
                             apr_uint64_t height, apr_pool_t *pool, jpip_roi_list_t *out,
                             jpip_err_t *err)
{
    collect_t c;
    apr_uint32_t i;

    memset(&c, 0, sizeof(c));
    memset(out, 0, sizeof(*out));
    c.lay = layout;
    c.src = src;
    c.pool = pool;
    c.width = width;
    c.height = height;
    c.budget = JPIP_ROI_MAX_TOTAL;
    for (i = 0; layout != NULL && i < layout->nboxes && c.n < JPIP_ROI_MAX; i++) {
        const jpip_box_t *b = &layout->boxes[i];
        const unsigned char *d;
        apr_size_t len;
        jpip_code_t rc;

        if (b->type == JPIP_BOX_XML) {
            d = contents(&c, i, &len, err, &rc);
            if (rc != JPIP_OK) {
                return rc;
            }
            if (d != NULL) {
                xml_scan(&c, (const char *)d, len);
            }
        } else if (b->type == JPIP_BOX_TYPE('r', 'o', 'i', 'd')) {
            apr_uint32_t l = label_of(layout, i);
            apr_uint64_t x0 = 0, y0 = 0, x1 = 0, y1 = 0;
            const unsigned char *name;
            apr_size_t nlen;

            if (l == JPIP_BOX_NONE) {
                continue; /* an unnamed region cannot be asked for */
            }
            d = contents(&c, i, &len, err, &rc);
            if (rc != JPIP_OK) {
                return rc;
            }
            if (d == NULL || !roid_bounds(d, len, &x0, &y0, &x1, &y1)) {
                continue;
            }
            name = contents(&c, l, &nlen, err, &rc);
            if (rc != JPIP_OK) {
                return rc;
            }
            if (name != NULL) {
                keep(&c, (const char *)name, nlen, x0, y0, x1 - x0, y1 - y0);
            }
        }
    }
    out->rois = c.rois;
    out->n = c.n;
    return JPIP_OK;
}

/* ------------------------------------------------------------ use */

static apr_uint64_t overlap(apr_uint64_t a0, apr_uint64_t a1, apr_uint64_t b0, apr_uint64_t b1)
{
    apr_uint64_t lo = a0 > b0 ? a0 : b0, hi = a1 < b1 ? a1 : b1;

    return hi > lo ? hi - lo : 0;
}

const jpip_roi_t *jpip_roi_choose(const jpip_roi_list_t *list, const char *name,
                                  const jpip_request_t *req, apr_uint64_t width,
                                  apr_uint64_t height)
{
    apr_uint64_t x0 = 0, y0 = 0, x1 = width, y1 = height, best = 0;
    const jpip_roi_t *pick = NULL;
    apr_size_t i;

    if (list == NULL || list->n == 0 || name == NULL) {
        return NULL;
    }
    if (strcmp(name, "dynamic") != 0) {
        for (i = 0; i < list->n; i++) {
            if (strcmp(list->rois[i].name, name) == 0) {
                return &list->rois[i];
            }
        }
        return NULL;
    }
    if (req->has_fsiz && (req->has_roff || req->has_rsiz)) {
        /* the request's window on the full-resolution image */
        apr_uint64_t ox = req->has_roff ? req->ox : 0, oy = req->has_roff ? req->oy : 0;
        apr_uint64_t ex = req->has_rsiz ? ox + req->sx : req->fx;
        apr_uint64_t ey = req->has_rsiz ? oy + req->sy : req->fy;

        /* clipped to the frame first, so no product overflows */
        ox = ox < req->fx ? ox : req->fx;
        oy = oy < req->fy ? oy : req->fy;
        ex = ex < req->fx ? ex : req->fx;
        ey = ey < req->fy ? ey : req->fy;
        x0 = ox * width / req->fx;
        y0 = oy * height / req->fy;
        x1 = (ex * width + req->fx - 1) / req->fx;
        y1 = (ey * height + req->fy - 1) / req->fy;
    }
    for (i = 0; i < list->n; i++) {
        const jpip_roi_t *r = &list->rois[i];
        apr_uint64_t a = overlap(r->x, r->x + r->w, x0, x1) * overlap(r->y, r->y + r->h, y0, y1);

        if (pick == NULL || a > best) {
            pick = r;
            best = a;
        }
    }
    return pick;
}

void jpip_roi_apply(const jpip_roi_t *roi, apr_uint64_t width, apr_uint64_t height,
                    jpip_request_t *req)
{
    if (!req->has_fsiz) {
        req->has_fsiz = 1;
        req->fx = (apr_uint32_t)width;
        req->fy = (apr_uint32_t)height;
        req->round = JPIP_ROUND_DOWN;
        req->ox = (apr_uint32_t)roi->x;
        req->oy = (apr_uint32_t)roi->y;
        req->sx = (apr_uint32_t)roi->w;
        req->sy = (apr_uint32_t)roi->h;
    } else {
        apr_uint64_t ex = ((roi->x + roi->w) * req->fx + width - 1) / width;
        apr_uint64_t ey = ((roi->y + roi->h) * req->fy + height - 1) / height;

        req->ox = (apr_uint32_t)(roi->x * req->fx / width);
        req->oy = (apr_uint32_t)(roi->y * req->fy / height);
        req->sx = (apr_uint32_t)(ex > req->ox ? ex - req->ox : 1);
        req->sy = (apr_uint32_t)(ey > req->oy ? ey - req->oy : 1);
    }
    req->has_roff = 1;
    req->has_rsiz = 1;
}

const char *jpip_roi_names(const jpip_roi_list_t *list, apr_pool_t *pool)
{
    const char *s = "";
    apr_size_t i;

    for (i = 0; list != NULL && i < list->n; i++) {
        s = apr_pstrcat(pool, s, i > 0 ? ", " : "", list->rois[i].name, NULL);
    }
    return s;
}

jpip_code_t jpip_roi_load(const jpip_box_layout_t *layout, const jpip_index_t *ix, apr_file_t *file,
                          apr_uint64_t size, apr_pool_t *pool, jpip_roi_list_t *out,
                          jpip_err_t *err)
{
    const jpip_ix_cs_t *cs = jpip_index_cs(ix, 0);
    jpip_src_t *src;
    jpip_code_t rc;

    memset(out, 0, sizeof(*out));
    if (layout == NULL || cs == NULL) {
        return JPIP_OK; /* a raw codestream has no metadata to name regions */
    }
    if (file == NULL) {
        return jpip_err_set(err, JPIP_E_IO, "the target is not open");
    }
    rc = jpip_src_open_file(&src, pool, file, size, err);
    if (rc == JPIP_OK) {
        rc = jpip_roi_collect(layout, src, cs->siz.xsiz - cs->siz.xosiz,
                              cs->siz.ysiz - cs->siz.yosiz, pool, out, err);
    }
    return rc;
}
