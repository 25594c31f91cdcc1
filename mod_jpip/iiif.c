/* mod_jpip: the IIIF Image API 3.0 handler (SetHandler jpip-iiif).
 *
 *   {location}/{identifier}/info.json
 *   {location}/{identifier}/{region}/{size}/{rotation}/{quality}.{format}
 *
 * The identifier is the image's path below JPIPRoot, its slashes encoded
 * as %2F (httpd needs AllowEncodedSlashes NoDecode to pass them on) or
 * left plain: the parameters are read from the right, so a plain path is
 * never ambiguous. Images are rendered from the target's index by
 * libcore/render.c (only the precincts the region needs are decoded) and
 * encoded as JPEG or PNG. Answers carry an ETag made from the file's
 * identity and the canonical parameters, Last-Modified and the
 * configured Cache-Control, so conditional requests get 304 and httpd's
 * mod_cache (or any shared cache) can keep tiles.
 */
#include "mod_jpip.h"

#include <http_core.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>

#include <apr_atomic.h>
#include <apr_lib.h>
#include <apr_buckets.h>
#include <apr_md5.h>
#include <apr_strings.h>

#include <math.h>

#include "dicom.h"
#include "render.h"
#include "store.h"

APLOG_USE_MODULE(jpip);

#define PROFILE_URL "http://iiif.io/api/image/3/level2.json"
#define CONTEXT_URL "http://iiif.io/api/image/3/context.json"

static apr_uint32_t renders_active; /* renders running in this process */
static apr_uint32_t heap_set;       /* JPIPIIIFHeapRetain applied in this process */

/* ------------------------------------------------------------- answers */

static int iiif_error(request_rec *r, int status, const char *ident, const char *msg)
{
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, JPIPLOGNO(0401) "jpip-iiif(id=%s): %d %s",
                  ident != NULL ? ident : "-", status, msg);
    r->status = status;
    ap_set_content_type(r, "text/plain; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    if (!r->header_only) {
        ap_rvputs(r, msg, "\n", NULL);
    }
    return DONE;
}

/* ------------------------------------------------------------ parsing */

typedef struct iiif_req_t {
    const char *ident; /* decoded: the path below JPIPRoot */
    const char *ident_raw;
    apr_uint64_t csn;  /* the codestream: ";frame=N" selects N - 1 */
    const char *frame; /* ";frame=N" as given, or "" */
    int info;
    const char *region, *size, *rotation, *quality, *format;
} iiif_req_t;

static int hexval(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Percent-decode s; NULL for a malformed escape or an encoded NUL. */
static char *pct_decode(apr_pool_t *p, const char *s)
{
    char *out = apr_palloc(p, strlen(s) + 1), *o = out;

    while (*s != '\0') {
        if (*s == '%') {
            int a = hexval((unsigned char)s[1]), b = a >= 0 ? hexval((unsigned char)s[2]) : -1;
            if (a < 0 || b < 0 || (a == 0 && b == 0)) {
                return NULL;
            }
            *o++ = (char)(a * 16 + b);
            s += 3;
        } else {
            *o++ = *s++;
        }
    }
    *o = '\0';
    return out;
}

/* Percent-encode everything but the unreserved characters (so '/'
 * becomes %2F, as identifiers in IIIF URLs are written). */
static char *pct_encode(apr_pool_t *p, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = apr_palloc(p, strlen(s) * 3 + 1), *o = out;

    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (apr_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

/* The request path below the location, raw (undecoded): httpd decodes
 * r->uri and r->parsed_uri.path in place (all but %2F under
 * AllowEncodedSlashes NoDecode), and a name holding "%41" or "100%25"
 * must be decoded exactly once, here. The raw path is the request line's
 * up to its query; an absolute-form request line gives way to the parsed
 * path. */
static const char *below_location(request_rec *r, const jpip_dir_conf_t *conf)
{
    const char *path = r->parsed_uri.path != NULL ? r->parsed_uri.path : r->uri;
    apr_size_t n = conf->location != NULL ? strlen(conf->location) : 0;

    if (r->unparsed_uri != NULL && r->unparsed_uri[0] == '/') {
        path = apr_pstrndup(r->pool, r->unparsed_uri, strcspn(r->unparsed_uri, "?#"));
    }

    while (n > 0 && conf->location[n - 1] == '/') {
        n--;
    }
    if (n > 0 && strncmp(path, conf->location, n) == 0 && (path[n] == '/' || path[n] == '\0')) {
        return path + n;
    }
    return NULL;
}

/* A trailing ";frame=N" (N from 1) of the decoded identifier selects the
 * file's N-th codestream: a DICOM file's frame N, a JPX file's N-th
 * codestream (docs/dicom.md, "Frame identifiers"). Without it, the first. */
static int parse_frame(apr_pool_t *p, iiif_req_t *q, const char **msg)
{
    const char *name;
    apr_uint32_t frame;
    jpip_err_t err;

    jpip_err_clear(&err);
    if (jpip_dicom_frame_id_parse(p, q->ident, &name, &frame, &err) != JPIP_OK) {
        *msg = apr_pstrdup(p, err.msg);
        return HTTP_BAD_REQUEST;
    }
    q->csn = frame > 0 ? (apr_uint64_t)frame - 1 : 0;
    q->frame = frame > 0 ? apr_psprintf(p, ";frame=%u", frame) : "";
    if (frame > 0 && *name == '\0') {
        *msg = "the URL names no image identifier";
        return HTTP_BAD_REQUEST;
    }
    q->ident = name;
    return OK;
}

/* Split the path below the location. Returns OK, or a status with *msg. */
static int parse_path(request_rec *r, const jpip_dir_conf_t *conf, iiif_req_t *q, const char **msg)
{
    const char *rest = below_location(r, conf);
    apr_array_header_t *seg = apr_array_make(r->pool, 8, sizeof(char *));
    char *copy, *tok, *state;
    int n, k, st;

    memset(q, 0, sizeof(*q));
    if (rest == NULL) {
        *msg = "the URL is not below this IIIF location";
        return HTTP_NOT_FOUND;
    }
    /* segments, empty ones kept (an empty region is a malformed region) */
    copy = apr_pstrdup(r->pool, *rest == '/' ? rest + 1 : rest);
    for (tok = copy; *copy != '\0' && tok != NULL; tok = state) {
        state = strchr(tok, '/');
        if (state != NULL) {
            *state++ = '\0';
        }
        if (state != NULL || *tok != '\0') {
            APR_ARRAY_PUSH(seg, char *) = tok;
        }
    }
    n = seg->nelts;
    if (n == 0) {
        *msg = "the URL names no image: use {identifier}/info.json";
        return HTTP_BAD_REQUEST;
    }
    if (strcmp(APR_ARRAY_IDX(seg, n - 1, char *), "info.json") == 0) {
        q->info = 1;
        k = n - 1;
    } else if (n >= 5) {
        q->region = APR_ARRAY_IDX(seg, n - 4, char *);
        q->size = APR_ARRAY_IDX(seg, n - 3, char *);
        q->rotation = APR_ARRAY_IDX(seg, n - 2, char *);
        q->quality = APR_ARRAY_IDX(seg, n - 1, char *);
        k = n - 4;
    } else {
        k = n; /* the base URI of an image: redirect to its info.json */
    }
    if (k == 0) {
        *msg = "the URL names no image identifier";
        return HTTP_BAD_REQUEST;
    }
    q->ident_raw = APR_ARRAY_IDX(seg, 0, char *);
    {
        int i;
        for (i = 1; i < k; i++) {
            q->ident_raw =
                apr_pstrcat(r->pool, q->ident_raw, "/", APR_ARRAY_IDX(seg, i, char *), NULL);
        }
    }
    q->ident = pct_decode(r->pool, q->ident_raw);
    if (q->ident == NULL) {
        *msg = "the identifier has a malformed percent escape";
        return HTTP_BAD_REQUEST;
    }
    if ((st = parse_frame(r->pool, q, msg)) != OK) {
        return st;
    }
    if (q->quality != NULL) {
        char *dot = strrchr(q->quality, '.');
        if (dot == NULL || dot == q->quality || dot[1] == '\0') {
            *msg = "the last segment must be {quality}.{format}";
            return HTTP_BAD_REQUEST;
        }
        *dot = '\0';
        q->format = dot + 1;
    }
    if (!q->info && q->region == NULL) {
        return HTTP_SEE_OTHER;
    }
    return OK;
}

/* An unsigned integer of at most 10 digits. */
static int parse_uint(const char *s, const char *end, apr_uint64_t *v)
{
    apr_uint64_t x = 0;

    if (s == end || end - s > 10) {
        return 0;
    }
    for (; s < end; s++) {
        if (*s < '0' || *s > '9') {
            return 0;
        }
        x = x * 10 + (apr_uint64_t)(*s - '0');
    }
    *v = x;
    return 1;
}

/* A non-negative decimal number (digits, an optional fraction). */
static int parse_float(const char *s, const char *end, double *v)
{
    const char *p = s;
    int digits = 0;
    char buf[32];

    if (end - s <= 0 || end - s >= (long)sizeof(buf)) {
        return 0;
    }
    while (p < end && *p >= '0' && *p <= '9') {
        p++, digits++;
    }
    if (p < end && *p == '.') {
        p++;
        while (p < end && *p >= '0' && *p <= '9') {
            p++, digits++;
        }
    }
    if (p != end || digits == 0) {
        return 0;
    }
    memcpy(buf, s, (apr_size_t)(end - s));
    buf[end - s] = '\0';
    *v = strtod(buf, NULL);
    return 1;
}

/* n comma-separated unsigned integers or decimals. */
static int parse_list(const char *s, int n, int decimals, double *out)
{
    int i;

    for (i = 0; i < n; i++) {
        const char *e = strchr(s, ',');
        if ((e == NULL) != (i == n - 1)) {
            return 0;
        }
        if (e == NULL) {
            e = s + strlen(s);
        }
        if (decimals) {
            if (!parse_float(s, e, &out[i])) {
                return 0;
            }
        } else {
            apr_uint64_t v;
            if (!parse_uint(s, e, &v)) {
                return 0;
            }
            out[i] = (double)v;
        }
        s = *e != '\0' ? e + 1 : e;
    }
    return 1;
}

typedef struct limits_t {
    apr_uint64_t max_w, max_h, max_area;
} limits_t;

/* Region -> x, y, w, h inside a W x H image. */
static int parse_region(const char *s, apr_uint64_t W, apr_uint64_t H, apr_uint64_t *x,
                        apr_uint64_t *y, apr_uint64_t *w, apr_uint64_t *h, const char **msg)
{
    double v[4];

    if (strcmp(s, "full") == 0) {
        *x = *y = 0;
        *w = W;
        *h = H;
        return OK;
    }
    if (strcmp(s, "square") == 0) {
        apr_uint64_t m = W < H ? W : H;
        *x = (W - m) / 2;
        *y = (H - m) / 2;
        *w = *h = m;
        return OK;
    }
    if (strncmp(s, "pct:", 4) == 0) {
        double x0, y0, x1, y1;
        if (!parse_list(s + 4, 4, 1, v)) {
            *msg = "the region must be full, square, x,y,w,h or pct:x,y,w,h";
            return HTTP_BAD_REQUEST;
        }
        if (v[2] <= 0 || v[3] <= 0) {
            *msg = "the region has a zero width or height";
            return HTTP_BAD_REQUEST;
        }
        x0 = floor(v[0] * W / 100 + 0.5);
        y0 = floor(v[1] * H / 100 + 0.5);
        x1 = floor((v[0] + v[2]) * W / 100 + 0.5);
        y1 = floor((v[1] + v[3]) * H / 100 + 0.5);
        if (x0 >= W || y0 >= H) {
            *msg = "the region lies outside the image";
            return HTTP_BAD_REQUEST;
        }
        x1 = x1 > W ? W : x1;
        y1 = y1 > H ? H : y1;
        if (x1 <= x0 || y1 <= y0) {
            *msg = "the region is less than a pixel";
            return HTTP_BAD_REQUEST;
        }
        *x = (apr_uint64_t)x0;
        *y = (apr_uint64_t)y0;
        *w = (apr_uint64_t)(x1 - x0);
        *h = (apr_uint64_t)(y1 - y0);
        return OK;
    }
    if (!parse_list(s, 4, 0, v)) {
        *msg = "the region must be full, square, x,y,w,h or pct:x,y,w,h";
        return HTTP_BAD_REQUEST;
    }
    if (v[2] == 0 || v[3] == 0) {
        *msg = "the region has a zero width or height";
        return HTTP_BAD_REQUEST;
    }
    if (v[0] >= W || v[1] >= H) {
        *msg = "the region lies outside the image";
        return HTTP_BAD_REQUEST;
    }
    *x = (apr_uint64_t)v[0];
    *y = (apr_uint64_t)v[1];
    *w = (apr_uint64_t)v[2] > W - *x ? W - *x : (apr_uint64_t)v[2];
    *h = (apr_uint64_t)v[3] > H - *y ? H - *y : (apr_uint64_t)v[3];
    return OK;
}

/* round(a * b / c) for the aspect-preserving sizes. */
static apr_uint64_t muldiv(apr_uint64_t a, apr_uint64_t b, apr_uint64_t c)
{
    return (a * b * 2 + c) / (c * 2);
}

/* The largest scale the limits allow for a w x h region. */
static double limit_scale(const limits_t *lim, apr_uint64_t w, apr_uint64_t h)
{
    double s = (double)lim->max_w / w, t = (double)lim->max_h / h;
    double a = sqrt((double)lim->max_area / ((double)w * h));

    s = t < s ? t : s;
    return a < s ? a : s;
}

/* Size -> ow x oh for a rw x rh region. */
static int parse_size(const char *s, apr_uint64_t rw, apr_uint64_t rh, const limits_t *lim,
                      apr_uint64_t *ow, apr_uint64_t *oh, const char **msg)
{
    int up = 0, confined = 0;
    double v[2];
    const char *comma;

    if (*s == '^') {
        up = 1;
        s++;
    }
    if (strcmp(s, "max") == 0) {
        double k = limit_scale(lim, rw, rh);
        if (!up && k > 1) {
            k = 1;
        }
        if (k >= 1 && !up) {
            *ow = rw;
            *oh = rh;
        } else {
            *ow = (apr_uint64_t)floor(rw * k + 1e-9);
            *oh = (apr_uint64_t)floor(rh * k + 1e-9);
            *ow = *ow > lim->max_w ? lim->max_w : *ow;
            *oh = *oh > lim->max_h ? lim->max_h : *oh;
        }
        *ow = *ow == 0 ? 1 : *ow;
        *oh = *oh == 0 ? 1 : *oh;
        goto check;
    }
    if (strncmp(s, "pct:", 4) == 0) {
        if (!parse_float(s + 4, s + strlen(s), &v[0])) {
            *msg = "pct: in the size needs a number";
            return HTTP_BAD_REQUEST;
        }
        if (v[0] <= 0) {
            *msg = "the size is zero";
            return HTTP_BAD_REQUEST;
        }
        if (v[0] > 1e6) {
            *msg = "the size exceeds the server's maxWidth, maxHeight or maxArea (see info.json)";
            return HTTP_BAD_REQUEST;
        }
        if (v[0] > 100 && !up) {
            *msg = "a size above pct:100 needs the ^ prefix";
            return HTTP_BAD_REQUEST;
        }
        *ow = (apr_uint64_t)floor(rw * v[0] / 100 + 0.5);
        *oh = (apr_uint64_t)floor(rh * v[0] / 100 + 0.5);
        if (*ow == 0 || *oh == 0) {
            *msg = "the size is less than a pixel";
            return HTTP_BAD_REQUEST;
        }
        goto check;
    }
    if (*s == '!') {
        confined = 1;
        s++;
    }
    comma = strchr(s, ',');
    if (comma == NULL || strchr(comma + 1, ',') != NULL) {
        *msg = "the size must be max, w,, ,h, pct:n, w,h or !w,h (with an optional ^)";
        return HTTP_BAD_REQUEST;
    }
    if (comma == s || comma[1] == '\0') {
        apr_uint64_t n;
        const char *a = comma == s ? comma + 1 : s;
        const char *e = comma == s ? s + strlen(s) : comma;
        if (confined || !parse_uint(a, e, &n)) {
            *msg = "the size must be max, w,, ,h, pct:n, w,h or !w,h (with an optional ^)";
            return HTTP_BAD_REQUEST;
        }
        if (n == 0) {
            *msg = "the size is zero";
            return HTTP_BAD_REQUEST;
        }
        if (comma == s ? n > lim->max_h : n > lim->max_w) {
            *msg = "the size exceeds the server's maxWidth, maxHeight or maxArea (see info.json)";
            return HTTP_BAD_REQUEST;
        }
        if (comma == s) {
            *oh = n;
            *ow = muldiv(rw, n, rh);
        } else {
            *ow = n;
            *oh = muldiv(rh, n, rw);
        }
        *ow = *ow == 0 ? 1 : *ow;
        *oh = *oh == 0 ? 1 : *oh;
        if (!up && (*ow > rw || *oh > rh)) {
            *msg = "the size is larger than the region: use the ^ prefix to upscale";
            return HTTP_BAD_REQUEST;
        }
        goto check;
    }
    if (!parse_list(s, 2, 0, v)) {
        *msg = "the size must be max, w,, ,h, pct:n, w,h or !w,h (with an optional ^)";
        return HTTP_BAD_REQUEST;
    }
    if (v[0] == 0 || v[1] == 0) {
        *msg = "the size is zero";
        return HTTP_BAD_REQUEST;
    }
    if (confined) {
        double k = v[0] / rw < v[1] / rh ? v[0] / rw : v[1] / rh, kl = limit_scale(lim, rw, rh);
        if (!up && k > 1) {
            k = 1;
        }
        int capped = k > kl;
        if (capped) {
            k = kl; /* as large as possible, within the server's limits too */
        }
        *ow = (apr_uint64_t)floor(rw * k + (capped ? 1e-9 : 0.5));
        *oh = (apr_uint64_t)floor(rh * k + (capped ? 1e-9 : 0.5));
        *ow = *ow > (apr_uint64_t)v[0] ? (apr_uint64_t)v[0] : *ow == 0 ? 1 : *ow;
        *oh = *oh > (apr_uint64_t)v[1] ? (apr_uint64_t)v[1] : *oh == 0 ? 1 : *oh;
    } else {
        *ow = (apr_uint64_t)v[0];
        *oh = (apr_uint64_t)v[1];
        if (!up && (*ow > rw || *oh > rh)) {
            *msg = "the size is larger than the region: use the ^ prefix to upscale";
            return HTTP_BAD_REQUEST;
        }
    }
check:
    if (*ow > lim->max_w || *oh > lim->max_h || *ow * *oh > lim->max_area) {
        *msg = "the size exceeds the server's maxWidth, maxHeight or maxArea (see info.json)";
        return HTTP_BAD_REQUEST;
    }
    return OK;
}

static int parse_rotation(const char *s, int *mirror, unsigned *rot, const char **msg)
{
    double v;

    *mirror = *s == '!';
    s += *mirror;
    if (!parse_float(s, s + strlen(s), &v) || v > 360) {
        *msg = "the rotation must be a number of degrees from 0 to 360, optionally after !";
        return HTTP_BAD_REQUEST;
    }
    if (v == 0 || v == 90 || v == 180 || v == 270 || v == 360) {
        *rot = v == 360 ? 0 : (unsigned)v;
        return OK;
    }
    *msg = "only rotations by multiples of 90 degrees are implemented";
    return HTTP_NOT_IMPLEMENTED;
}

static int parse_quality(const char *q, const char *f, int *quality, int *png, const char **msg)
{
    static const char *const names[] = {"default", "color", "gray", "bitonal"};
    static const char *const other_formats[] = {"tif", "gif", "jp2", "pdf", "webp"};
    int i;

    for (i = 0; i < 4 && strcmp(q, names[i]) != 0; i++) {
    }
    if (i == 4) {
        *msg = "the quality must be default, color, gray or bitonal";
        return HTTP_BAD_REQUEST;
    }
    *quality = i;
    if (strcmp(f, "jpg") == 0 || strcmp(f, "png") == 0) {
        *png = f[0] == 'p';
        return OK;
    }
    for (i = 0; i < 5; i++) {
        if (strcmp(f, other_formats[i]) == 0) {
            *msg = "only the jpg and png formats are implemented";
            return HTTP_NOT_IMPLEMENTED;
        }
    }
    *msg = "the format must be jpg or png";
    return HTTP_BAD_REQUEST;
}

/* --------------------------------------------------------- the target */

static void get_limits(const jpip_dir_conf_t *conf, limits_t *lim)
{
    lim->max_w = (apr_uint64_t)jpip_dir_get(conf, JPIP_V_IIIF_MAX_WIDTH);
    lim->max_h = (apr_uint64_t)jpip_dir_get(conf, JPIP_V_IIIF_MAX_HEIGHT);
    lim->max_area = (apr_uint64_t)jpip_dir_get(conf, JPIP_V_IIIF_MAX_AREA);
}

static int open_target(request_rec *r, const jpip_dir_conf_t *conf, const iiif_req_t *q,
                       const jpip_tgt_t **tgt)
{
    jpip_target_t target;
    jpip_err_t err;

    jpip_err_clear(&err);
    if (jpip_target_resolve(r->pool, conf->root, q->ident, conf->allow_outside_links == 1, &target,
                            &err) != JPIP_OK) {
        int st = err.code == JPIP_E_FORBIDDEN ? HTTP_FORBIDDEN
                 : err.code == JPIP_E_REQUEST ? HTTP_BAD_REQUEST
                                              : HTTP_NOT_FOUND;
        return iiif_error(r, st, q->ident, err.msg);
    }
    if (jpip_targets_get(r, &target, tgt, &err) != JPIP_OK) {
        int st = err.code == JPIP_E_LIMIT ? HTTP_SERVICE_UNAVAILABLE
                 : err.code == JPIP_E_FORMAT || err.code == JPIP_E_UNSUPPORTED
                     ? HTTP_NOT_FOUND
                     : HTTP_INTERNAL_SERVER_ERROR;
        return iiif_error(r, st, target.name,
                          apr_psprintf(r->pool, "%s is not a servable JPEG 2000 image: %s",
                                       target.name, err.msg));
    }
    return OK;
}

/* ETag, Last-Modified and Cache-Control of an answer that depends only on
 * the file's identity and what: then 304 when the client has it. */
static int validators(request_rec *r, const jpip_dir_conf_t *conf, const jpip_tgt_t *tgt,
                      const char *what)
{
    unsigned char dg[APR_MD5_DIGESTSIZE];
    char hex[2 * 12 + 1];
    const char *key = apr_pstrcat(r->pool, tgt->tid, "\n", what, NULL);
    int st;

    apr_md5(dg, key, strlen(key));
    ap_bin2hex(dg, 12, hex);
    apr_table_setn(r->headers_out, "ETag", apr_pstrcat(r->pool, "\"", hex, "\"", NULL));
    ap_update_mtime(r, (apr_time_t)(tgt->id.mtime_ns / 1000));
    ap_set_last_modified(r);
    apr_table_setn(r->headers_out, "Cache-Control",
                   conf->iiif_cache_control != NULL ? conf->iiif_cache_control
                                                    : JPIP_DEFAULT_IIIF_CACHE_CONTROL);
    apr_table_setn(r->headers_out, "Link", "<" PROFILE_URL ">;rel=\"profile\"");
    st = ap_meets_conditions(r);
    if (st == HTTP_NOT_MODIFIED) {
        jpip_store_count(JPIP_STAT_IIIF_NOT_MODIFIED, 1);
    }
    return st;
}

static int send_buffer(request_rec *r, const char *type, const void *data, apr_size_t len)
{
    apr_bucket_brigade *bb;

    ap_set_content_type(r, type);
    ap_set_content_length(r, (apr_off_t)len);
    if (r->header_only) {
        return OK;
    }
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_heap_create(data, len, NULL, bb->bucket_alloc));
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(bb->bucket_alloc));
    return ap_pass_brigade(r->output_filters, bb) == APR_SUCCESS ? OK : AP_FILTER_ERROR;
}

/* ----------------------------------------------------------- info.json */

static int send_info(request_rec *r, const jpip_dir_conf_t *conf, const iiif_req_t *q,
                     const jpip_tgt_t *tgt)
{
    jpip_render_geom_t g;
    jpip_err_t err;
    limits_t lim;
    const char *loc = conf->location != NULL ? conf->location : "";
    apr_size_t ln = strlen(loc);
    const char *id;
    apr_uint32_t tw, th;
    unsigned k;
    int st;
    char *sizes = "", *scales = "";
    const char *accept = apr_table_get(r->headers_in, "Accept");

    if (jpip_render_geom(tgt->ix, q->csn, &g, &err) != JPIP_OK) {
        return iiif_error(r, HTTP_NOT_FOUND, q->ident, err.msg);
    }
    get_limits(conf, &lim);
    while (ln > 0 && loc[ln - 1] == '/') {
        ln--;
    }
    id = ap_construct_url(
        r->pool,
        apr_pstrcat(r->pool, apr_pstrndup(r->pool, loc, ln), "/",
                    pct_encode(r->pool, apr_pstrcat(r->pool, q->ident, q->frame, NULL)), NULL),
        r);
    st = validators(r, conf, tgt, apr_pstrcat(r->pool, "info.json\n", id, NULL));
    if (st != OK) {
        return st;
    }
    /* tiles the file answers cheaply: its tile grid, or its precincts */
    if (g.tiled && g.tile_w <= 2048 && g.tile_h <= 2048) {
        tw = g.tile_w;
        th = g.tile_h;
    } else if (g.prec_w >= 64 && g.prec_w <= 1024 && g.prec_h >= 64 && g.prec_h <= 1024) {
        tw = g.prec_w < 256 ? 256 : g.prec_w;
        th = g.prec_h < 256 ? 256 : g.prec_h;
    } else {
        tw = th = 512;
    }
    for (k = 0; k <= g.levels; k++) {
        apr_uint64_t w = jpip_ceilpow2(g.width, k), h = jpip_ceilpow2(g.height, k);
        scales = apr_psprintf(r->pool, "%s%s%u", scales, k > 0 ? ", " : "", 1u << k);
        if (w <= lim.max_w && h <= lim.max_h && w * h <= lim.max_area) {
            sizes = apr_psprintf(r->pool,
                                 "{\"width\": %" APR_UINT64_T_FMT ", \"height\": %" APR_UINT64_T_FMT
                                 "}%s%s",
                                 w, h, *sizes != '\0' ? ", " : "", sizes);
        }
    }
    ap_set_content_type(r, accept != NULL && ap_strstr_c(accept, "application/ld+json") != NULL
                               ? "application/ld+json;profile=\"" CONTEXT_URL "\""
                               : "application/json");
    apr_table_setn(r->headers_out, "Vary", "Accept");
    if (r->header_only) {
        return OK;
    }
    ap_rprintf(r,
               "{\n"
               "  \"@context\": \"" CONTEXT_URL "\",\n"
               "  \"id\": \"%s\",\n"
               "  \"type\": \"ImageService3\",\n"
               "  \"protocol\": \"http://iiif.io/api/image\",\n"
               "  \"profile\": \"level2\",\n"
               "  \"width\": %" APR_UINT64_T_FMT ",\n"
               "  \"height\": %" APR_UINT64_T_FMT ",\n"
               "  \"maxWidth\": %" APR_UINT64_T_FMT ",\n"
               "  \"maxHeight\": %" APR_UINT64_T_FMT ",\n"
               "  \"maxArea\": %" APR_UINT64_T_FMT ",\n"
               "  \"sizes\": [%s],\n"
               "  \"tiles\": [{\"width\": %u, \"height\": %u, \"scaleFactors\": [%s]}],\n"
               "  \"extraQualities\": [\"color\", \"gray\", \"bitonal\"],\n"
               "  \"extraFeatures\": [\"mirroring\", \"sizeUpscaling\", \"cors\", "
               "\"jsonldMediaType\", \"baseUriRedirect\"]\n"
               "}\n",
               id, g.width, g.height, lim.max_w, lim.max_h, lim.max_area, sizes, tw, th, scales);
    return OK;
}

/* -------------------------------------------------------------- images */

static apr_status_t render_cleanup(void *unused)
{
    (void)unused;
    apr_atomic_dec32(&renders_active);
    return APR_SUCCESS;
}

/* JPIPIIIFHeapRetain, at a process's first render: processes that never
 * render keep the C library's policy. */
static void retain_heap(request_rec *r)
{
    apr_size_t want;

    if (apr_atomic_cas32(&heap_set, 1, 0) != 0) {
        return;
    }
    want = (apr_size_t)jpip_srv_get(r->server, JPIP_V_IIIF_HEAP);
    if (want > 0) {
        apr_size_t got = jpip_render_heap_retain(want);

        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      JPIPLOGNO(0405) "jpip-iiif: this process keeps %" APR_SIZE_T_FMT
                                      " bytes of free heap between renders%s",
                      got, got == 0 ? " (the C library has no such setting)" : "");
    }
}

static int send_image(request_rec *r, const jpip_dir_conf_t *conf, const iiif_req_t *q,
                      const jpip_tgt_t *tgt)
{
    jpip_render_geom_t g;
    jpip_render_req_t rq;
    jpip_render_src_t src;
    jpip_render_stats_t rs;
    jpip_raster_t img;
    jpip_err_t err;
    limits_t lim;
    apr_uint64_t ow, oh;
    apr_pool_t *rp;
    unsigned char *out;
    apr_size_t olen;
    const char *msg = NULL;
    int st, png, maxr, jq;
    apr_time_t t0;
    jpip_code_t rc;

    jpip_err_clear(&err);
    if (jpip_render_geom(tgt->ix, q->csn, &g, &err) != JPIP_OK) {
        return iiif_error(r, HTTP_NOT_FOUND, q->ident, err.msg);
    }
    get_limits(conf, &lim);
    memset(&rq, 0, sizeof(rq));
    if ((st = parse_region(q->region, g.width, g.height, &rq.x, &rq.y, &rq.w, &rq.h, &msg)) != OK ||
        (st = parse_size(q->size, rq.w, rq.h, &lim, &ow, &oh, &msg)) != OK ||
        (st = parse_rotation(q->rotation, &rq.mirror, &rq.rotate, &msg)) != OK ||
        (st = parse_quality(q->quality, q->format, &rq.quality, &png, &msg)) != OK) {
        return iiif_error(r, st, q->ident, msg);
    }
    rq.csn = q->csn;
    rq.ow = (apr_uint32_t)ow;
    rq.oh = (apr_uint32_t)oh;
    rq.drop_alpha = !png;
    jq = (int)jpip_dir_get(conf, JPIP_V_IIIF_QUALITY);
    st = validators(r, conf, tgt,
                    apr_psprintf(r->pool,
                                 "%" APR_UINT64_T_FMT ",%" APR_UINT64_T_FMT ",%" APR_UINT64_T_FMT
                                 ",%" APR_UINT64_T_FMT "/%u,%u/%s%u/%d.%s/%d/%" APR_UINT64_T_FMT,
                                 rq.x, rq.y, rq.w, rq.h, rq.ow, rq.oh, rq.mirror ? "!" : "",
                                 rq.rotate, rq.quality, png ? "png" : "jpg", jq, rq.csn));
    if (st != OK) {
        return st;
    }
    maxr = (int)jpip_dir_get(conf, JPIP_V_IIIF_RENDERS);
    if ((int)apr_atomic_inc32(&renders_active) >= maxr) {
        apr_atomic_dec32(&renders_active);
        jpip_store_count(JPIP_STAT_IIIF_BUSY, 1);
        apr_table_setn(r->headers_out, "Retry-After", "1");
        return iiif_error(r, HTTP_SERVICE_UNAVAILABLE, q->ident,
                          "the server is rendering as many images as it may (JPIPIIIFMaxRenders); "
                          "try again");
    }
    retain_heap(r);
    apr_pool_create(&rp, r->pool);
    apr_pool_cleanup_register(rp, NULL, render_cleanup, apr_pool_cleanup_null);
    memset(&src, 0, sizeof(src));
    src.ix = tgt->ix;
    src.layout = tgt->layout;
    /* read from the descriptor whose identity was checked, never mapped:
     * a file cut short under the render makes it fail, not the process */
    if (jpip_src_open_file(&src.src, rp, jpip_targets_file(r), tgt->size, &err) != JPIP_OK) {
        apr_pool_destroy(rp);
        return iiif_error(r, HTTP_INTERNAL_SERVER_ERROR, q->ident, "the image cannot be read");
    }
    rq.max_memory = (apr_uint64_t)jpip_dir_get(conf, JPIP_V_IIIF_MEMORY);
    rq.max_bins = (apr_uint64_t)jpip_dir_get(conf, JPIP_V_MAX_BINS);
    t0 = apr_time_now();
    rq.deadline = t0 + (apr_interval_time_t)jpip_dir_get(conf, JPIP_V_IIIF_TIME);
    rc = jpip_render(&src, &rq, rp, &img, &rs, &err);
    if (rc == JPIP_OK) {
        rc = png ? jpip_encode_png(&img, rp, &out, &olen, &err)
                 : jpip_encode_jpeg(&img, jq, rp, &out, &olen, &err);
    }
    if (rc != JPIP_OK) {
        int code = rc == JPIP_E_LIMIT     ? HTTP_SERVICE_UNAVAILABLE
                   : rc == JPIP_E_REQUEST ? HTTP_BAD_REQUEST
                   : rc == JPIP_E_FORMAT  ? HTTP_UNPROCESSABLE_ENTITY
                                          : HTTP_INTERNAL_SERVER_ERROR;
        const char *m = apr_pstrdup(r->pool, err.msg);

        apr_pool_destroy(rp);
        if (rc == JPIP_E_FORMAT || rc == JPIP_E_IO || rc == JPIP_E_NOMEM) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                          JPIPLOGNO(0402) "jpip-iiif(id=%s): cannot render: %s", q->ident, m);
        }
        if (code == HTTP_SERVICE_UNAVAILABLE) {
            apr_table_unset(r->headers_out, "ETag");
            apr_table_unset(r->headers_out, "Last-Modified");
        }
        return iiif_error(r, code, q->ident, m);
    }
    jpip_store_count(JPIP_STAT_IIIF_RENDERS, 1);
    jpip_store_count(JPIP_STAT_IIIF_RENDER_US, (apr_uint64_t)(apr_time_now() - t0));
    jpip_store_count(JPIP_STAT_IIIF_BYTES, olen);
    if (rs.cropped) {
        jpip_store_count(JPIP_STAT_IIIF_CROPPED, 1);
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                  JPIPLOGNO(0403) "jpip-iiif(id=%s): reduce %u, %" APR_UINT64_T_FMT
                                  " precincts, %" APR_UINT64_T_FMT
                                  " bytes coded%s, plan %" APR_TIME_T_FMT
                                  " us, decode %" APR_TIME_T_FMT " us, post %" APR_TIME_T_FMT " us",
                  q->ident, rs.reduce, rs.bins, rs.cs_bytes, rs.cropped ? " (cropped)" : "",
                  rs.t_plan, rs.t_decode, rs.t_post);
    st = send_buffer(r, png ? "image/png" : "image/jpeg", out, olen);
    apr_pool_destroy(rp);
    return st;
}

/* ------------------------------------------------------------- handler */

int jpip_iiif_handle(request_rec *r)
{
    const jpip_dir_conf_t *conf;
    const jpip_tgt_t *tgt;
    iiif_req_t q;
    const char *msg = NULL;
    int st;

    if (r->handler == NULL || strcmp(r->handler, "jpip-iiif") != 0) {
        return DECLINED;
    }
    conf = ap_get_module_config(r->per_dir_config, &jpip_module);
    r->allowed = (AP_METHOD_BIT << M_GET) | (AP_METHOD_BIT << M_OPTIONS);
    if (r->method_number == M_OPTIONS) {
        apr_table_setn(r->headers_out, "Allow", "GET, HEAD, OPTIONS");
        jpip_add_cors(r, conf, 1);
        r->status = HTTP_NO_CONTENT;
        return OK;
    }
    if (r->method_number != M_GET) {
        apr_table_setn(r->headers_out, "Allow", "GET, HEAD, OPTIONS");
        return iiif_error(r, HTTP_METHOD_NOT_ALLOWED, NULL,
                          "IIIF images are read with GET or HEAD");
    }
    jpip_add_cors(r, conf, 0);
    if (conf->root == NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      JPIPLOGNO(0404) "SetHandler jpip-iiif at %s without JPIPRoot", r->uri);
        return iiif_error(r, HTTP_INTERNAL_SERVER_ERROR, NULL,
                          "this IIIF location has no JPIPRoot configured");
    }
    st = parse_path(r, conf, &q, &msg);
    if (st == HTTP_SEE_OTHER) {
        const char *path = r->parsed_uri.path != NULL ? r->parsed_uri.path : r->uri;
        apr_size_t pl = strlen(path);
        const char *loc =
            apr_pstrcat(r->pool, path, pl > 0 && path[pl - 1] == '/' ? "" : "/", "info.json", NULL);
        if (open_target(r, conf, &q, &tgt) != OK) {
            return DONE;
        }
        apr_table_setn(r->headers_out, "Location", ap_construct_url(r->pool, loc, r));
        return HTTP_SEE_OTHER;
    }
    if (st != OK) {
        return iiif_error(r, st, q.ident, msg);
    }
    if (open_target(r, conf, &q, &tgt) != OK) {
        return DONE;
    }
    return q.info ? send_info(r, conf, &q, tgt) : send_image(r, conf, &q, tgt);
}
