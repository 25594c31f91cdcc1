/* mod_jpip: the metareq field: parser, formatter, matcher. */
#include "metareq.h"

#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>
#include <apr_tables.h>

/* ---- parser ------------------------------------------------------------- */

typedef struct parser_t {
    const char *s;
    apr_size_t len;
    apr_size_t pos;
    jpip_err_t *err;
} parser_t;

static int peek(const parser_t *p)
{
    return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
}

static jpip_code_t unexpected(parser_t *p, const char *expected)
{
    int c = peek(p);

    if (c < 0) {
        return jpip_err_set(p->err, JPIP_E_REQUEST,
                            "metareq: unexpected end at offset %" APR_SIZE_T_FMT ", expected %s",
                            p->pos, expected);
    }
    if (c >= 0x20 && c < 0x7f) {
        return jpip_err_set(p->err, JPIP_E_REQUEST,
                            "metareq: unexpected '%c' at offset %" APR_SIZE_T_FMT ", expected %s",
                            c, p->pos, expected);
    }
    return jpip_err_set(p->err, JPIP_E_REQUEST,
                        "metareq: unexpected byte 0x%02X at offset %" APR_SIZE_T_FMT
                        ", expected %s",
                        (unsigned)c, p->pos, expected);
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* UINT, at most 2^62 (the limit sentinels sit above it). */
static jpip_code_t parse_uint(parser_t *p, apr_uint64_t *v, const char *what)
{
    apr_uint64_t x = 0;
    apr_size_t start = p->pos;

    if (!is_digit(peek(p))) {
        return unexpected(p, what);
    }
    while (is_digit(peek(p))) {
        apr_uint64_t d = (apr_uint64_t)(peek(p) - '0');
        const apr_uint64_t max = (apr_uint64_t)1 << 62;

        if (x > (max - d) / 10) {
            return jpip_err_set(p->err, JPIP_E_REQUEST,
                                "metareq: number at offset %" APR_SIZE_T_FMT " is too large",
                                start);
        }
        x = x * 10 + d;
        p->pos++;
    }
    *v = x;
    return JPIP_OK;
}

static int is_delim(int c)
{
    return c == '[' || c == ']' || c == ':' || c == ';' || c == '/' || c == '!' || c == ',' ||
           c == '\\' || c == '_' || c == '*';
}

static jpip_code_t parse_type(parser_t *p, jpip_metareq_prop_t *prop)
{
    apr_uint32_t t = 0;
    int k;

    if (peek(p) == '*') {
        p->pos++;
        prop->any = 1;
        return JPIP_OK;
    }
    for (k = 0; k < 4; k++) {
        int c = peek(p);
        unsigned v;

        if (c == '_') {
            v = ' ';
            p->pos++;
        } else if (c == '\\') {
            int d;
            v = 0;
            p->pos++;
            for (d = 0; d < 3; d++) {
                int o = peek(p);
                if (o < '0' || o > '7') {
                    return unexpected(p, "an octal digit in a \\ddd box-type escape");
                }
                v = v * 8 + (unsigned)(o - '0');
                p->pos++;
            }
            if (v > 255) {
                p->pos -= 3;
                return jpip_err_set(p->err, JPIP_E_REQUEST,
                                    "metareq: octal escape at offset %" APR_SIZE_T_FMT
                                    " is larger than 255",
                                    p->pos - 1);
            }
        } else if (c > 0x20 && c < 0x7f && !is_delim(c)) {
            v = (unsigned)c;
            p->pos++;
        } else {
            return unexpected(p, k == 0 ? "a box type (4 characters) or '*'"
                                        : "a 4-character box type ('_' for a space)");
        }
        t = (t << 8) | v;
    }
    prop->type = t;
    return JPIP_OK;
}

static jpip_code_t parse_prop(parser_t *p, jpip_metareq_prop_t *prop)
{
    jpip_code_t rc;

    memset(prop, 0, sizeof(*prop));
    prop->limit = JPIP_MQ_LIMIT_NONE;
    rc = parse_type(p, prop);
    if (rc != JPIP_OK) {
        return rc;
    }
    if (peek(p) == ':') {
        p->pos++;
        if (peek(p) == 'r') {
            p->pos++;
            prop->limit = JPIP_MQ_LIMIT_R;
        } else {
            rc = parse_uint(p, &prop->limit, "a byte limit (digits) or 'r' after ':'");
            if (rc != JPIP_OK) {
                return rc;
            }
        }
    }
    if (peek(p) == '/') {
        p->pos++;
        for (;;) {
            int c = peek(p);
            unsigned bit = c == 'w'   ? JPIP_MQ_W
                           : c == 's' ? JPIP_MQ_S
                           : c == 'g' ? JPIP_MQ_G
                           : c == 'a' ? JPIP_MQ_A
                                      : 0;
            if (bit == 0) {
                break;
            }
            prop->qual |= bit;
            p->pos++;
        }
        if (prop->qual == 0) {
            return unexpected(p, "a qualifier 'w', 's', 'g' or 'a' after '/'");
        }
    }
    if (peek(p) == '!') {
        p->pos++;
        prop->priority = 1;
    }
    return JPIP_OK;
}

jpip_code_t jpip_metareq_parse(jpip_metareq_t *req, apr_pool_t *pool, const char *s, apr_size_t len,
                               jpip_err_t *err)
{
    parser_t p;
    apr_array_header_t *items = apr_array_make(pool, 4, sizeof(jpip_metareq_item_t));
    apr_array_header_t *props = apr_array_make(pool, 4, sizeof(jpip_metareq_prop_t));
    jpip_code_t rc;

    memset(req, 0, sizeof(*req));
    p.s = s;
    p.len = len;
    p.pos = 0;
    p.err = err;
    if (len == 0) {
        return jpip_err_set(err, JPIP_E_REQUEST, "metareq: empty value");
    }
    for (;;) {
        jpip_metareq_item_t *it;
        int have_r = 0, have_d = 0;

        if (peek(&p) != '[') {
            return unexpected(&p, "'['");
        }
        p.pos++;
        it = apr_array_push(items);
        it->first_prop = (apr_size_t)props->nelts;
        it->nprops = 0;
        it->root = 0;
        it->depth = JPIP_MQ_DEPTH_ANY;
        for (;;) {
            jpip_metareq_prop_t *prop;

            if (props->nelts >= JPIP_MQ_MAX_PROPS) {
                return jpip_err_set(
                    err, JPIP_E_REQUEST,
                    "metareq: more than %d box properties (at offset %" APR_SIZE_T_FMT ")",
                    JPIP_MQ_MAX_PROPS, p.pos);
            }
            prop = apr_array_push(props);
            rc = parse_prop(&p, prop);
            if (rc != JPIP_OK) {
                return rc;
            }
            it->nprops++;
            if (peek(&p) == ';') {
                p.pos++;
                continue;
            }
            if (peek(&p) == ']') {
                p.pos++;
                break;
            }
            return unexpected(&p, "';', ']', ':', '/' or '!'");
        }
        for (;;) {
            if (peek(&p) == 'R' && !have_r) {
                p.pos++;
                rc = parse_uint(&p, &it->root, "a bin number after 'R'");
                have_r = 1;
            } else if (peek(&p) == 'D' && !have_d) {
                p.pos++;
                rc = parse_uint(&p, &it->depth, "a depth after 'D'");
                have_d = 1;
            } else {
                break;
            }
            if (rc != JPIP_OK) {
                return rc;
            }
        }
        if (peek(&p) < 0) {
            break;
        }
        if (peek(&p) == ',') {
            p.pos++;
            continue;
        }
        if (peek(&p) == '!' && p.pos + 1 < p.len && p.s[p.pos + 1] == '!') {
            p.pos += 2;
            req->metadata_only = 1;
            if (peek(&p) >= 0) {
                return unexpected(&p, "the end of the field after '!!'");
            }
            break;
        }
        return unexpected(&p, "',', 'R', 'D', '!!' or the end of the field");
    }
    req->items = (jpip_metareq_item_t *)items->elts;
    req->nitems = (apr_size_t)items->nelts;
    req->props = (jpip_metareq_prop_t *)props->elts;
    req->nprops = (apr_size_t)props->nelts;
    return JPIP_OK;
}

/* ---- formatter ---------------------------------------------------------- */

static int served_differs(const jpip_metareq_prop_t *pr)
{
    return pr->qual != 0 && !(pr->qual & (JPIP_MQ_G | JPIP_MQ_A));
}

const char *jpip_metareq_format(const jpip_metareq_t *req, int served, apr_pool_t *pool)
{
    /* worst case per prop: 16 (type) + 21 (limit) + 5 (qual) + 1 + 1 */
    apr_size_t cap = 4 + req->nitems * 48 + req->nprops * 48;
    char *buf = apr_palloc(pool, cap);
    apr_size_t n = 0, i, k;

    for (i = 0; i < req->nitems; i++) {
        const jpip_metareq_item_t *it = &req->items[i];

        if (i > 0) {
            buf[n++] = ',';
        }
        buf[n++] = '[';
        for (k = 0; k < it->nprops; k++) {
            const jpip_metareq_prop_t *pr = &req->props[it->first_prop + k];
            int j;

            if (k > 0) {
                buf[n++] = ';';
            }
            if (pr->any) {
                buf[n++] = '*';
            } else {
                for (j = 0; j < 4; j++) {
                    unsigned c = (pr->type >> (24 - 8 * j)) & 0xFF;
                    if (c == ' ') {
                        buf[n++] = '_';
                    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                               (c >= '0' && c <= '9')) {
                        buf[n++] = (char)c;
                    } else {
                        buf[n++] = '\\';
                        buf[n++] = (char)('0' + ((c >> 6) & 7));
                        buf[n++] = (char)('0' + ((c >> 3) & 7));
                        buf[n++] = (char)('0' + (c & 7));
                    }
                }
            }
            if (pr->limit == JPIP_MQ_LIMIT_R) {
                n += (apr_size_t)apr_snprintf(buf + n, cap - n, ":r");
            } else if (pr->limit != JPIP_MQ_LIMIT_NONE) {
                n += (apr_size_t)apr_snprintf(buf + n, cap - n, ":%" APR_UINT64_T_FMT, pr->limit);
            }
            if (pr->qual != 0 && !(served && served_differs(pr))) {
                buf[n++] = '/';
                if (pr->qual & JPIP_MQ_W) {
                    buf[n++] = 'w';
                }
                if (pr->qual & JPIP_MQ_S) {
                    buf[n++] = 's';
                }
                if (pr->qual & JPIP_MQ_G) {
                    buf[n++] = 'g';
                }
                if (pr->qual & JPIP_MQ_A) {
                    buf[n++] = 'a';
                }
            }
            if (pr->priority) {
                buf[n++] = '!';
            }
        }
        buf[n++] = ']';
        if (it->root != 0) {
            n += (apr_size_t)apr_snprintf(buf + n, cap - n, "R%" APR_UINT64_T_FMT, it->root);
        }
        if (it->depth != JPIP_MQ_DEPTH_ANY) {
            n += (apr_size_t)apr_snprintf(buf + n, cap - n, "D%" APR_UINT64_T_FMT, it->depth);
        }
    }
    if (req->metadata_only) {
        buf[n++] = '!';
        buf[n++] = '!';
    }
    buf[n] = '\0';
    return buf;
}

/* ---- matcher ------------------------------------------------------------ */

#define MARK_ANY 1u
#define MARK_PRIO 2u

typedef struct matcher_t {
    const jpip_box_layout_t *lay;
    apr_pool_t *pool;
    jpip_err_t *err;
    unsigned char *mark;     /* per box: MARK_* (locator already selected) */
    apr_uint32_t *prev;      /* per box: previous sibling or JPIP_BOX_NONE */
    unsigned char *binfull;  /* per bin: MARK_* (whole bin already selected) */
    apr_array_header_t *out; /* jpip_metarange_t */
} matcher_t;

static jpip_code_t matcher_init(matcher_t *m, const jpip_box_layout_t *lay, apr_pool_t *pool,
                                jpip_err_t *err)
{
    apr_uint32_t i;
    apr_uint32_t *last;

    m->lay = lay;
    m->pool = pool;
    m->err = err;
    m->mark = apr_pcalloc(pool, (apr_size_t)lay->nboxes + 1);
    m->prev = apr_palloc(pool, ((apr_size_t)lay->nboxes + 1) * sizeof(apr_uint32_t));
    m->binfull = apr_pcalloc(pool, (apr_size_t)lay->nbins + 1);
    /* last child seen so far, per parent (+1 slot for the top level) */
    last = apr_palloc(pool, ((apr_size_t)lay->nboxes + 1) * sizeof(apr_uint32_t));
    m->out = apr_array_make(pool, 16, sizeof(jpip_metarange_t));
    if (m->mark == NULL || m->prev == NULL || m->binfull == NULL || last == NULL ||
        m->out == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory matching metareq");
    }
    for (i = 0; i <= lay->nboxes; i++) {
        last[i] = JPIP_BOX_NONE;
    }
    for (i = 0; i < lay->nboxes; i++) {
        apr_uint32_t par = lay->boxes[i].parent;
        apr_uint32_t slot = par == JPIP_BOX_NONE ? lay->nboxes : par;
        m->prev[i] = last[slot];
        last[slot] = i;
    }
    return JPIP_OK;
}

static void add_range(matcher_t *m, apr_uint32_t bin, apr_uint64_t off, apr_uint64_t len, int prio)
{
    jpip_metarange_t *r;

    if (len == 0 || bin == JPIP_BOX_NONE) {
        return;
    }
    r = apr_array_push(m->out);
    r->bin = bin;
    r->off = off;
    r->len = len;
    r->priority = prio;
}

static void add_bin(matcher_t *m, apr_uint32_t bin, int prio)
{
    unsigned want = prio ? MARK_PRIO : MARK_ANY;

    if (bin >= m->lay->nbins || (m->binfull[bin] & want)) {
        return;
    }
    m->binfull[bin] |= want | MARK_ANY;
    add_range(m, bin, 0, m->lay->bins[bin].length, prio);
}

static void add_header(matcher_t *m, apr_uint32_t i, int prio)
{
    const jpip_box_t *b = &m->lay->boxes[i];
    add_range(m, b->hdr_bin, b->hdr_bin_off, b->hdr_bin_len, prio);
}

/* Select the headers a client walks through to reach box x. A marked box
 * has its header, the headers of its earlier siblings and its ancestors'
 * locators selected already, so the walk stops at the first one. */
static void locate(matcher_t *m, apr_uint32_t x, int prio)
{
    unsigned want = prio ? MARK_PRIO : MARK_ANY;

    while (x != JPIP_BOX_NONE) {
        apr_uint32_t s;

        if (m->mark[x] & want) {
            return;
        }
        m->mark[x] |= want | MARK_ANY;
        add_header(m, x, prio);
        for (s = m->prev[x]; s != JPIP_BOX_NONE; s = m->prev[s]) {
            if (m->mark[s] & want) {
                return;
            }
            m->mark[s] |= want | MARK_ANY;
            add_header(m, s, prio);
        }
        x = m->lay->boxes[x].parent;
    }
}

/* Select box x per limit. */
static void select_box(matcher_t *m, apr_uint32_t x, apr_uint64_t limit, int prio)
{
    const jpip_box_t *b = &m->lay->boxes[x];
    apr_uint32_t d;

    if (b->hdr_bin == JPIP_BOX_NONE) {
        return; /* inside a codestream box: not metadata */
    }
    locate(m, x, prio);
    if (b->mode == JPIP_BOX_CSTREAM) {
        return;
    }
    if (limit == JPIP_MQ_LIMIT_R) {
        for (d = x + 1; d < b->end; d++) {
            if (m->lay->boxes[d].hdr_bin != JPIP_BOX_NONE) {
                locate(m, d, prio);
            }
        }
    } else if (limit == JPIP_MQ_LIMIT_NONE) {
        if (b->mode == JPIP_BOX_VERBATIM) {
            add_range(m, b->contents_bin, b->contents_bin_off, b->contents_bin_len, prio);
        }
        for (d = x; d < b->end; d++) {
            const jpip_box_t *db = &m->lay->boxes[d];
            if (db->mode == JPIP_BOX_PLACED && db->hdr_bin != JPIP_BOX_NONE) {
                add_bin(m, db->contents_bin, prio);
            }
        }
    } else if (limit > 0) {
        add_range(m, b->contents_bin, b->contents_bin_off,
                  limit < b->contents_bin_len ? limit : b->contents_bin_len, prio);
    }
}

static int range_cmp(const void *a, const void *b)
{
    const jpip_metarange_t *x = a, *y = b;

    if (x->bin != y->bin) {
        return x->bin < y->bin ? -1 : 1;
    }
    if (x->off != y->off) {
        return x->off < y->off ? -1 : 1;
    }
    return 0;
}

/* Sort and merge r[0..n) in place; returns the new count. */
static apr_size_t merge(jpip_metarange_t *r, apr_size_t n)
{
    apr_size_t i, k = 0;

    if (n == 0) {
        return 0;
    }
    qsort(r, n, sizeof(*r), range_cmp);
    for (i = 1; i < n; i++) {
        jpip_metarange_t *c = &r[k];
        if (r[i].bin == c->bin && r[i].off <= c->off + c->len) {
            apr_uint64_t end = r[i].off + r[i].len;
            if (end > c->off + c->len) {
                c->len = end - c->off;
            }
        } else {
            r[++k] = r[i];
        }
    }
    return k + 1;
}

/* Final list: priority ranges merged, non-priority ranges merged with the
 * priority bytes cut out, both in (bin, off) order. */
static jpip_code_t finish(matcher_t *m, jpip_metasel_t *out)
{
    apr_size_t n = (apr_size_t)m->out->nelts, np = 0, nn = 0, i, j, k = 0;
    jpip_metarange_t *all = (jpip_metarange_t *)m->out->elts;
    jpip_metarange_t *pr = apr_palloc(m->pool, (n + 1) * sizeof(*pr));
    jpip_metarange_t *nr = apr_palloc(m->pool, (n + 1) * sizeof(*nr));
    jpip_metarange_t *cut, *res;
    apr_size_t ncut = 0;

    if (pr == NULL || nr == NULL) {
        return jpip_err_set(m->err, JPIP_E_NOMEM, "out of memory matching metareq");
    }
    for (i = 0; i < n; i++) {
        if (all[i].priority) {
            pr[np++] = all[i];
        } else {
            nr[nn++] = all[i];
        }
    }
    np = merge(pr, np);
    nn = merge(nr, nn);
    /* each priority range splits at most one non-priority range in two */
    cut = apr_palloc(m->pool, (nn + np + 1) * sizeof(*cut));
    if (cut == NULL) {
        return jpip_err_set(m->err, JPIP_E_NOMEM, "out of memory matching metareq");
    }
    j = 0;
    for (i = 0; i < nn; i++) {
        jpip_metarange_t c = nr[i];
        apr_uint64_t cend = c.off + c.len;

        while (j < np &&
               (pr[j].bin < c.bin || (pr[j].bin == c.bin && pr[j].off + pr[j].len <= c.off))) {
            j++;
        }
        for (k = j; k < np && pr[k].bin == c.bin && pr[k].off < cend; k++) {
            if (pr[k].off > c.off) {
                cut[ncut] = c;
                cut[ncut].len = pr[k].off - c.off;
                ncut++;
            }
            if (pr[k].off + pr[k].len >= cend) {
                c.len = 0;
                break;
            }
            if (pr[k].off + pr[k].len > c.off) {
                c.off = pr[k].off + pr[k].len;
            }
            c.len = cend - c.off;
        }
        if (c.len > 0) {
            cut[ncut++] = c;
        }
    }
    res = apr_palloc(m->pool, (ncut + np + 1) * sizeof(*res));
    if (res == NULL) {
        return jpip_err_set(m->err, JPIP_E_NOMEM, "out of memory matching metareq");
    }
    memcpy(res, pr, np * sizeof(*res));
    memcpy(res + np, cut, ncut * sizeof(*res));
    qsort(res, np + ncut, sizeof(*res), range_cmp);
    out->ranges = res;
    out->nranges = np + ncut;
    return JPIP_OK;
}

static void match_item(matcher_t *m, const jpip_metareq_t *req, const jpip_metareq_item_t *it)
{
    const jpip_box_layout_t *lay = m->lay;
    apr_uint32_t first, end, i;
    apr_uint64_t base_depth;
    apr_size_t k;

    if (it->root >= lay->nbins) {
        return;
    }
    if (it->root == 0) {
        first = 0;
        end = lay->nboxes;
        base_depth = 0;
    } else {
        const jpip_metabin_t *bin = &lay->bins[it->root];
        const jpip_box_t *owner;

        if (bin->box == JPIP_BOX_NONE || (bin->flags & JPIP_METABIN_CSTREAM)) {
            return;
        }
        owner = &lay->boxes[bin->box];
        if (!(owner->flags & JPIP_BOXF_SUPER)) {
            return; /* the bin holds raw contents, no boxes */
        }
        first = bin->box + 1;
        end = owner->end;
        base_depth = (apr_uint64_t)owner->depth + 1;
    }
    for (i = first; i < end; i++) {
        const jpip_box_t *b = &lay->boxes[i];

        if (b->hdr_bin == JPIP_BOX_NONE) {
            continue;
        }
        if (it->depth != JPIP_MQ_DEPTH_ANY && b->depth - base_depth > it->depth) {
            continue;
        }
        for (k = 0; k < it->nprops; k++) {
            const jpip_metareq_prop_t *pr = &req->props[it->first_prop + k];
            if (pr->any || pr->type == b->type) {
                select_box(m, i, pr->limit, pr->priority);
            }
        }
    }
}

jpip_code_t jpip_metareq_match(const jpip_metareq_t *req, const jpip_box_layout_t *layout,
                               apr_pool_t *pool, jpip_metasel_t *out, jpip_err_t *err)
{
    matcher_t m;
    apr_size_t i;
    jpip_code_t rc;

    memset(out, 0, sizeof(*out));
    rc = matcher_init(&m, layout, pool, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    for (i = 0; i < req->nitems; i++) {
        match_item(&m, req, &req->items[i]);
    }
    for (i = 0; i < req->nprops; i++) {
        if (served_differs(&req->props[i])) {
            out->modified = 1;
        }
    }
    return finish(&m, out);
}

/* The i-th top-level box of the given type, or JPIP_BOX_NONE. */
static apr_uint32_t nth_top(const jpip_box_layout_t *lay, apr_uint32_t type, apr_uint32_t n)
{
    apr_uint32_t i;

    for (i = 0; i < lay->nboxes; i = lay->boxes[i].end) {
        if (lay->boxes[i].type == type) {
            if (n == 0) {
                return i;
            }
            n--;
        }
    }
    return JPIP_BOX_NONE;
}

jpip_code_t jpip_metareq_render(const jpip_box_layout_t *layout, const apr_uint32_t *cs,
                                apr_size_t ncs, apr_pool_t *pool, jpip_metasel_t *out,
                                jpip_err_t *err)
{
    static const apr_uint32_t zero = 0;
    matcher_t m;
    apr_uint32_t i, x;
    apr_size_t k;
    jpip_code_t rc;
    int empty0 = layout->nbins > 0 && layout->bins[0].length == 0;

    memset(out, 0, sizeof(*out));
    rc = matcher_init(&m, layout, pool, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    if (cs == NULL) {
        cs = &zero;
        ncs = 1;
    }
    add_bin(&m, 0, 1);
    x = nth_top(layout, JPIP_BOX_JP2H, 0);
    if (x != JPIP_BOX_NONE) {
        select_box(&m, x, JPIP_MQ_LIMIT_NONE, 1);
    }
    if (layout->container == JPIP_CONTAINER_JPX) {
        for (k = 0; k < ncs; k++) {
            x = nth_top(layout, JPIP_BOX_JPCH, cs[k]);
            if (x != JPIP_BOX_NONE) {
                select_box(&m, x, JPIP_MQ_LIMIT_NONE, 1);
            }
        }
        for (i = 0; i < layout->nlayers; i++) {
            const jpip_layer_t *ly = &layout->layers[i];
            apr_uint32_t j;
            int uses = 0;

            for (j = 0; j < ly->count && !uses; j++) {
                for (k = 0; k < ncs; k++) {
                    if (layout->layer_cs[ly->first + j] == cs[k]) {
                        uses = 1;
                    }
                }
            }
            x = uses ? nth_top(layout, JPIP_BOX_JPLH, i) : JPIP_BOX_NONE;
            if (x != JPIP_BOX_NONE) {
                select_box(&m, x, JPIP_MQ_LIMIT_NONE, 1);
            }
        }
        x = nth_top(layout, JPIP_BOX_COMP, 0);
        if (x != JPIP_BOX_NONE) {
            select_box(&m, x, JPIP_MQ_LIMIT_NONE, 1);
        }
    }
    rc = finish(&m, out);
    if (rc == JPIP_OK && empty0) {
        /* an empty bin 0 (raw codestream) must still be sent, as complete */
        jpip_metarange_t *r = apr_palloc(pool, (out->nranges + 1) * sizeof(*r));
        if (r == NULL) {
            return jpip_err_set(err, JPIP_E_NOMEM, "out of memory");
        }
        r[0].bin = 0;
        r[0].off = 0;
        r[0].len = 0;
        r[0].priority = 1;
        memcpy(r + 1, out->ranges, out->nranges * sizeof(*r));
        out->ranges = r;
        out->nranges++;
    }
    return rc;
}

jpip_code_t jpip_metareq_box_ends(const jpip_box_layout_t *layout, apr_uint32_t bin,
                                  apr_pool_t *pool, const apr_uint64_t **ends, apr_size_t *n,
                                  jpip_err_t *err)
{
    apr_uint32_t first, last, i;
    apr_size_t count = 0, k = 0;
    apr_uint64_t *e;

    *ends = NULL;
    *n = 0;
    if (bin >= layout->nbins) {
        return JPIP_OK;
    }
    if (bin == 0) {
        first = 0;
        last = layout->nboxes;
    } else {
        apr_uint32_t p = layout->bins[bin].box;

        /* a bin holding the raw contents of one box has no boxes to end */
        if (p >= layout->nboxes || !(layout->boxes[p].flags & JPIP_BOXF_SUPER) ||
            layout->boxes[p].mode != JPIP_BOX_PLACED) {
            return JPIP_OK;
        }
        first = p + 1;
        last = layout->boxes[p].end;
    }
    for (i = first; i < last && i < layout->nboxes; i = layout->boxes[i].end) {
        count++;
        if (layout->boxes[i].end <= i) {
            break; /* the layout is well formed; never loop if it were not */
        }
    }
    if (count == 0) {
        return JPIP_OK;
    }
    e = apr_palloc(pool, count * sizeof(*e));
    if (e == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory");
    }
    for (i = first; i < last && i < layout->nboxes && k < count; i = layout->boxes[i].end) {
        const jpip_box_t *b = &layout->boxes[i];
        apr_uint64_t end =
            b->hdr_bin_off + (b->mode == JPIP_BOX_VERBATIM ? b->hdr_len + b->contents_len
                                                           : (apr_uint64_t)b->hdr_bin_len);

        if (b->hdr_bin == bin && (k == 0 || end > e[k - 1])) {
            e[k++] = end;
        }
        if (b->end <= i) {
            break;
        }
    }
    *ends = e;
    *n = k;
    return JPIP_OK;
}
