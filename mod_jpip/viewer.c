/* mod_jpip: the zero-install viewer (viewer.h, docs/viewer.md).
 *
 * Everything written into a page that comes from the file system (names)
 * or from a file (XML boxes, ROI names) goes through esc_html; everything
 * put into a URL goes through esc_url first. Pages carry a
 * Content-Security-Policy that lets only the module's own assets run.
 */
#include "mod_jpip.h"

#include <http_core.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>

#include <apr_buckets.h>
#include <apr_file_info.h>
#include <apr_lib.h>
#include <apr_strings.h>

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "viewer.h"

APLOG_USE_MODULE(jpip);

#ifndef JPIP_VIEWER_DIR
#define JPIP_VIEWER_DIR "/usr/share/mod_jpip/viewer"
#endif

#define MAX_ENTRIES 10000      /* directory entries looked at for one index */
#define MAX_XML (64 * 1024)    /* bytes of one XML box shown */
#define MAX_XML_BOXES 32       /* XML boxes shown */
#define MAX_ROIS 256           /* ROI overlays */
#define THUMB "!160,160"       /* IIIF size of the index's thumbnails */
#define ASSET_MAX_AGE 31536000 /* a year: asset URLs carry the module version */

/* ------------------------------------------------------------ configuration */

void jpip_viewer_conf_init(jpip_viewer_conf_t *c)
{
    c->html = -1;
    c->iiif = NULL;
    c->download = -1;
    c->assets = NULL;
}

void jpip_viewer_conf_merge(jpip_viewer_conf_t *c, const jpip_viewer_conf_t *base,
                            const jpip_viewer_conf_t *add)
{
    c->html = add->html != -1 ? add->html : base->html;
    c->iiif = add->iiif != NULL ? add->iiif : base->iiif;
    c->download = add->download != -1 ? add->download : base->download;
    c->assets = add->assets != NULL ? add->assets : base->assets;
}

const char *jpip_viewer_cmd_flag(cmd_parms *cmd, void *dconf, int on)
{
    jpip_dir_conf_t *c = dconf;

    if (strcmp(cmd->info, "html") == 0) {
        c->viewer.html = on;
    } else {
        c->viewer.download = on;
    }
    return NULL;
}

const char *jpip_viewer_cmd_take1(cmd_parms *cmd, void *dconf, const char *arg)
{
    jpip_dir_conf_t *c = dconf;

    if (strcmp(cmd->info, "iiif") == 0) {
        apr_size_t n = strlen(arg);

        if (strcasecmp(arg, "none") == 0) {
            c->viewer.iiif = "";
            return NULL;
        }
        if (arg[0] != '/' || strpbrk(arg, "\"'<>\\ ?#") != NULL) {
            return "JPIPViewerIIIF: expected the URL path of the IIIF location (e.g. /iiif), "
                   "or none";
        }
        while (n > 1 && arg[n - 1] == '/') {
            n--;
        }
        c->viewer.iiif = apr_pstrmemdup(cmd->pool, arg, n);
        return NULL;
    }
    {
        const char *path = ap_server_root_relative(cmd->pool, arg);
        apr_finfo_t fi;

        if (path == NULL || apr_stat(&fi, path, APR_FINFO_TYPE, cmd->temp_pool) != APR_SUCCESS ||
            fi.filetype != APR_DIR) {
            return apr_psprintf(cmd->pool, "JPIPViewerAssets: '%s' is not a directory", arg);
        }
        c->viewer.assets = path;
    }
    return NULL;
}

/* ---------------------------------------------------------------- escaping */

/* Length of the valid UTF-8 sequence at s (1..4, within avail bytes), or 0. */
static int utf8_len(const unsigned char *s, apr_size_t avail)
{
    int n, i;
    apr_uint32_t cp;

    if (s[0] < 0x80) {
        return 1;
    }
    if ((s[0] & 0xE0) == 0xC0) {
        n = 2;
        cp = s[0] & 0x1F;
    } else if ((s[0] & 0xF0) == 0xE0) {
        n = 3;
        cp = s[0] & 0x0F;
    } else if ((s[0] & 0xF8) == 0xF0) {
        n = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if ((apr_size_t)n > avail) {
        return 0;
    }
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return 0;
    }
    return n;
}

/* len bytes of s as HTML text or attribute value: markup characters as
 * references, bytes that are not UTF-8 and control characters (but tab
 * and newline) as U+FFFD. */
static const char *esc_html_n(apr_pool_t *p, const char *s, apr_size_t len)
{
    static const char fffd[] = "\xEF\xBF\xBD";
    const unsigned char *u = (const unsigned char *)s;
    char *out = apr_palloc(p, len * 6 + 1), *o = out;
    apr_size_t i = 0;

    while (i < len) {
        unsigned char c = u[i];
        const char *ref = NULL;
        int n;

        switch (c) {
        case '&':
            ref = "&amp;";
            break;
        case '<':
            ref = "&lt;";
            break;
        case '>':
            ref = "&gt;";
            break;
        case '"':
            ref = "&quot;";
            break;
        case '\'':
            ref = "&#39;";
            break;
        default:
            break;
        }
        n = ref == NULL && ((c >= 0x20 && c != 0x7F) || c == '\n' || c == '\t')
                ? utf8_len(u + i, len - i)
                : 0;
        if (ref == NULL && n == 0) {
            ref = fffd;
        }
        if (ref != NULL) {
            apr_size_t k = strlen(ref);

            memcpy(o, ref, k);
            o += k;
            i++;
            continue;
        }
        memcpy(o, u + i, (apr_size_t)n);
        o += n;
        i += (apr_size_t)n;
    }
    *o = '\0';
    return out;
}

static const char *esc_html(apr_pool_t *p, const char *s)
{
    return esc_html_n(p, s, strlen(s));
}

/* s percent-encoded for a URL path: unreserved characters as they are,
 * '/' as it is when keep_slash, everything else as %XX. */
static const char *esc_url(apr_pool_t *p, const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    apr_size_t len = strlen(s);
    char *out = apr_palloc(p, len * 3 + 1), *o = out;

    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (apr_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
            (c == '/' && keep_slash)) {
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

/* ------------------------------------------------------------- negotiation */

/* The q value of one Accept element's parameters (after its media range). */
static double accept_q(const char *params)
{
    const char *q = params;

    while ((q = strchr(q, ';')) != NULL) {
        q++;
        while (*q == ' ' || *q == '\t') {
            q++;
        }
        if ((q[0] == 'q' || q[0] == 'Q') && q[1] == '=') {
            double v = atof(q + 2);
            return v < 0 ? 0 : v > 1 ? 1 : v;
        }
    }
    return 1.0;
}

/* Whether Accept prefers HTML: text/html (or XHTML) is named with a q above
 * zero and at least that of any wildcard, and no JPIP media type is named
 * at all (a client that names one asks for JPIP, whatever its q). */
static int prefers_html(request_rec *r)
{
    const char *accept = apr_table_get(r->headers_in, "Accept");
    char *copy, *elt, *last;
    double q_html = 0, q_other = 0;

    if (accept == NULL) {
        return 0;
    }
    copy = apr_pstrdup(r->pool, accept);
    for (elt = apr_strtok(copy, ",", &last); elt != NULL; elt = apr_strtok(NULL, ",", &last)) {
        char *semi = strchr(elt, ';');
        apr_size_t n;
        double q;

        while (*elt == ' ' || *elt == '\t') {
            elt++;
        }
        n = semi != NULL ? (apr_size_t)(semi - elt) : strlen(elt);
        while (n > 0 && (elt[n - 1] == ' ' || elt[n - 1] == '\t')) {
            n--;
        }
        q = semi != NULL ? accept_q(semi) : 1.0;
        if ((n >= 10 && strncasecmp(elt + n - 10, "jpp-stream", 10) == 0) ||
            (n >= 10 && strncasecmp(elt + n - 10, "jpt-stream", 10) == 0) ||
            (n == 10 && strncasecmp(elt, "image/jpip", 10) == 0)) {
            return 0;
        }
        if ((n == 9 && strncasecmp(elt, "text/html", 9) == 0) ||
            (n == 21 && strncasecmp(elt, "application/xhtml+xml", 21) == 0)) {
            q_html = q > q_html ? q : q_html;
        } else if ((n == 3 && strncmp(elt, "*/*", 3) == 0) ||
                   (n == 6 && strncasecmp(elt, "text/*", 6) == 0)) {
            q_other = q > q_other ? q : q_other;
        }
    }
    return q_html > 0 && q_html >= q_other;
}

/* ------------------------------------------------------------------ output */

static const char *location_of(request_rec *r, const jpip_dir_conf_t *conf)
{
    const char *loc = conf->location != NULL ? conf->location : "";
    apr_size_t n = strlen(loc);

    while (n > 0 && loc[n - 1] == '/') {
        n--;
    }
    return apr_pstrmemdup(r->pool, loc, n);
}

static void page_headers(request_rec *r, const char *loc)
{
    /* scripts and styles only from the module's assets; images and
     * info.json from this server (the IIIF endpoint) */
    const char *assets =
        ap_construct_url(r->pool, apr_pstrcat(r->pool, loc, "/" JPIP_VIEWER_RESERVED "/", NULL), r);

    ap_set_content_type(r, "text/html; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    apr_table_mergen(r->headers_out, "Vary", "Accept");
    apr_table_setn(r->headers_out, "X-Content-Type-Options", "nosniff");
    apr_table_setn(r->headers_out, "Referrer-Policy", "same-origin");
    apr_table_setn(r->headers_out, "Content-Security-Policy",
                   apr_pstrcat(r->pool, "default-src 'none'; script-src ", assets, "; style-src ",
                               assets,
                               /* the empty <style> viewer.js adds for OpenSeadragon */
                               " 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
                               "; img-src 'self' data: blob:; connect-src 'self'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'self'",
                               NULL));
}

static const char *asset_url(apr_pool_t *p, const char *loc, const char *name)
{
    return apr_pstrcat(p, loc, "/" JPIP_VIEWER_RESERVED "/" JPIP_MODULE_VERSION "/", name, NULL);
}

static void page_start(request_rec *r, const char *loc, const char *title, const char *cls)
{
    ap_rvputs(r,
              "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
              "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
              "<link rel=\"icon\" href=\"data:,\">\n<title>",
              title, "</title>\n<link rel=\"stylesheet\" href=\"",
              esc_html(r->pool, asset_url(r->pool, loc, "viewer.css")),
              "\">\n</head>\n<body class=\"", cls, "\">\n", NULL);
}

/* An HTML error page; logs the refusal at info level. */
static int error_page(request_rec *r, const char *loc, int status, const char *msg)
{
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, JPIPLOGNO(0700) "viewer(uri=%s): %d %s", r->uri,
                  status, msg);
    r->status = status;
    page_headers(r, loc);
    page_start(r, loc, "mod_jpip: error", "jpip-error");
    ap_rvputs(r, "<main class=\"jpip-message\">\n<h1>",
              esc_html(r->pool, ap_get_status_line(status)), "</h1>\n<p>", esc_html(r->pool, msg),
              "</p>\n<p><a href=\"", esc_html(r->pool, loc),
              "/\">The archive</a></p>\n</main>\n</body>\n</html>\n", NULL);
    return DONE;
}

static const char *human_size(apr_pool_t *p, apr_off_t n)
{
    if (n < 1024) {
        return apr_psprintf(p, "%" APR_OFF_T_FMT " B", n);
    }
    if (n < 1024 * 1024) {
        return apr_psprintf(p, "%.1f KiB", (double)n / 1024);
    }
    if (n < (apr_off_t)1024 * 1024 * 1024) {
        return apr_psprintf(p, "%.1f MiB", (double)n / (1024 * 1024));
    }
    return apr_psprintf(p, "%.1f GiB", (double)n / (1024.0 * 1024 * 1024));
}

/* ------------------------------------------------------------------ paths */

/* The path below the location, without leading or trailing slashes;
 * *slash tells whether the URI ended with one. NULL when the URI is not
 * below the location. */
static const char *rel_path(request_rec *r, const char *loc, int *slash)
{
    apr_size_t n = strlen(loc), len;
    const char *rel;

    if (strncmp(r->uri, loc, n) != 0 || (r->uri[n] != '\0' && r->uri[n] != '/')) {
        return NULL;
    }
    rel = r->uri + n;
    while (*rel == '/') {
        rel++;
    }
    len = strlen(rel);
    *slash = r->uri[strlen(r->uri) - 1] == '/';
    while (len > 0 && rel[len - 1] == '/') {
        len--;
    }
    return apr_pstrmemdup(r->pool, rel, len);
}

/* A directory below root (rel "" is root itself), confined as targets
 * are: no ".." segment, no link out unless allowed. The real path, or
 * NULL. */
static const char *resolve_dir(apr_pool_t *p, const jpip_dir_conf_t *conf, const char *rel)
{
    char realroot[PATH_MAX], realdir[PATH_MAX];
    char *joined = NULL;
    const char *s;
    apr_finfo_t fi;
    apr_size_t n;

    for (s = rel; *s != '\0';) {
        const char *e = strchr(s, '/');
        apr_size_t k = e != NULL ? (apr_size_t)(e - s) : strlen(s);

        if (k == 2 && s[0] == '.' && s[1] == '.') {
            return NULL;
        }
        s += k;
        if (*s == '/') {
            s++;
        }
    }
    if (strchr(rel, '\\') != NULL ||
        apr_filepath_merge(&joined, conf->root, rel,
                           APR_FILEPATH_NOTABOVEROOT | APR_FILEPATH_NOTRELATIVE,
                           p) != APR_SUCCESS ||
        realpath(conf->root, realroot) == NULL || realpath(joined, realdir) == NULL) {
        return NULL;
    }
    n = strlen(realroot);
    if (conf->allow_outside_links != 1 &&
        !(strncmp(realroot, realdir, n) == 0 && (realdir[n] == '/' || realdir[n] == '\0')) &&
        !(n == 1 && realroot[0] == '/')) {
        return NULL;
    }
    if (apr_stat(&fi, realdir, APR_FINFO_TYPE, p) != APR_SUCCESS || fi.filetype != APR_DIR) {
        return NULL;
    }
    return apr_pstrdup(p, realdir);
}

/* The IIIF identifier of an image: its path below JPIPRoot, '/' encoded. */
static const char *iiif_base(apr_pool_t *p, const jpip_viewer_conf_t *vc, const char *rel)
{
    if (vc->iiif == NULL || *vc->iiif == '\0') {
        return NULL;
    }
    return apr_pstrcat(p, vc->iiif, "/", esc_url(p, rel, 0), NULL);
}

/* ------------------------------------------------------------------ files */

static const char *container_name(apr_uint32_t c)
{
    switch (c) {
    case JPIP_CONTAINER_RAW:
        return "raw codestream";
    case JPIP_CONTAINER_JP2:
        return "JP2";
    case JPIP_CONTAINER_JPX:
        return "JPX";
    case JPIP_CONTAINER_JPH:
        return "JPH (HTJ2K)";
    case JPIP_CONTAINER_DICOM:
        return "DICOM";
    default:
        return "unknown";
    }
}

static const char *container_type(apr_uint32_t c)
{
    switch (c) {
    case JPIP_CONTAINER_JP2:
        return "image/jp2";
    case JPIP_CONTAINER_JPX:
        return "image/jpx";
    case JPIP_CONTAINER_JPH:
        return "image/jph";
    case JPIP_CONTAINER_DICOM:
        return "application/dicom";
    default:
        return "image/j2c";
    }
}

/* An image of the archive, indexed. */
typedef struct image_t {
    const char *rel;
    jpip_target_t t;
    const jpip_tgt_t *tgt;
    apr_file_t *file; /* the descriptor whose identity is tgt's (jpip_targets_file) */
    apr_uint32_t width, height;
} image_t;

static jpip_code_t image_open(request_rec *r, const jpip_dir_conf_t *conf, const char *rel,
                              image_t *im, jpip_err_t *err)
{
    const jpip_ix_cs_t *cs;

    im->rel = rel;
    if (jpip_target_resolve(r->pool, conf->root, rel, conf->allow_outside_links == 1, &im->t,
                            err) != JPIP_OK ||
        jpip_targets_get(r, &im->t, &im->tgt, err) != JPIP_OK) {
        return err->code;
    }
    im->file = jpip_targets_file(r);
    cs = jpip_index_cs(im->tgt->ix, 0);
    if (cs == NULL) {
        return jpip_err_set(err, JPIP_E_FORMAT, "the file has no codestream");
    }
    im->width = cs->siz.xsiz - cs->siz.xosiz;
    im->height = cs->siz.ysiz - cs->siz.yosiz;
    return JPIP_OK;
}

/* Bytes [off, off+len) of the image's file, read from the descriptor whose
 * identity was checked, never by path (the file at the path may be another
 * version by now). */
static int image_read(const image_t *im, apr_uint64_t off, void *buf, apr_size_t len)
{
    jpip_err_t err;

    return im->file != NULL && off + len <= im->tgt->size &&
           jpip_file_pread(im->file, off, buf, len, &err) == JPIP_OK;
}

/* ------------------------------------------------------------------- index */

typedef struct entry_t {
    const char *name;
    int dir;
    image_t im;
} entry_t;

static int entry_cmp(const void *a, const void *b)
{
    const entry_t *x = a, *y = b;

    if (x->dir != y->dir) {
        return y->dir - x->dir;
    }
    return strcmp(x->name, y->name);
}

static int index_page(request_rec *r, const jpip_dir_conf_t *conf, const char *loc, const char *rel,
                      const char *dirpath)
{
    apr_dir_t *dir;
    apr_finfo_t fi;
    apr_array_header_t *ents = apr_array_make(r->pool, 16, sizeof(entry_t));
    int seen = 0, more = 0, i, nimages = 0;
    const char *title;

    if (apr_dir_open(&dir, dirpath, r->pool) != APR_SUCCESS) {
        return error_page(r, loc, HTTP_FORBIDDEN, "the directory cannot be read");
    }
    while (apr_dir_read(&fi, APR_FINFO_NAME | APR_FINFO_TYPE, dir) == APR_SUCCESS) {
        const char *child;
        entry_t e;
        jpip_err_t err;
        jpip_code_t rc;

        if (fi.name == NULL || fi.name[0] == '.') {
            continue; /* ".", "..", hidden files and the reserved name */
        }
        if (++seen > MAX_ENTRIES) {
            more = 1;
            break;
        }
        memset(&e, 0, sizeof(e));
        e.name = apr_pstrdup(r->pool, fi.name);
        child = *rel != '\0' ? apr_pstrcat(r->pool, rel, "/", e.name, NULL) : e.name;
        if (resolve_dir(r->pool, conf, child) != NULL) {
            e.dir = 1;
            e.im.rel = child;
        } else {
            jpip_err_clear(&err);
            rc = image_open(r, conf, child, &e.im, &err);
            /* the listing reads nothing more of the file: one descriptor
             * at a time, however many images the directory holds */
            jpip_targets_file_close(r);
            e.im.file = NULL;
            if (rc != JPIP_OK) {
                continue; /* not an image the module serves */
            }
            nimages++;
        }
        APR_ARRAY_PUSH(ents, entry_t) = e;
    }
    apr_dir_close(dir);
    qsort(ents->elts, (size_t)ents->nelts, sizeof(entry_t), entry_cmp);

    title = *rel != '\0' ? esc_html(r->pool, rel) : "JPEG 2000 archive";
    page_headers(r, loc);
    page_start(r, loc, apr_pstrcat(r->pool, title, " - mod_jpip", NULL), "jpip-index");
    ap_rvputs(r, "<header class=\"jpip-bar\">\n<h1>", title, "</h1>\n", NULL);
    if (*rel != '\0') {
        const char *up = strrchr(rel, '/');
        const char *parent = up != NULL ? apr_pstrmemdup(r->pool, rel, (apr_size_t)(up - rel)) : "";

        ap_rvputs(r, "<a class=\"jpip-up\" href=\"",
                  esc_html(r->pool, apr_pstrcat(r->pool, loc, "/", esc_url(r->pool, parent, 1),
                                                *parent != '\0' ? "/" : "", NULL)),
                  "\">Up</a>\n", NULL);
    }
    ap_rprintf(r, "<p class=\"jpip-count\">%d image%s, %d folder%s</p>\n</header>\n<main>\n",
               nimages, nimages == 1 ? "" : "s", ents->nelts - nimages,
               ents->nelts - nimages == 1 ? "" : "s");
    if (ents->nelts == 0) {
        ap_rputs("<p class=\"jpip-message\">No images here.</p>\n", r);
    }
    ap_rputs("<ul class=\"jpip-grid\">\n", r);
    for (i = 0; i < ents->nelts; i++) {
        const entry_t *e = &APR_ARRAY_IDX(ents, i, entry_t);
        const char *href =
            apr_pstrcat(r->pool, loc, "/", esc_url(r->pool, e->im.rel, 1), e->dir ? "/" : "", NULL);
        const char *name = esc_html(r->pool, e->name);

        if (e->dir) {
            ap_rvputs(r, "<li class=\"jpip-dir\"><a href=\"", esc_html(r->pool, href),
                      "\"><span class=\"jpip-thumb jpip-folder\"></span><span class=\"jpip-name\">",
                      name, "/</span></a></li>\n", NULL);
            continue;
        }
        ap_rvputs(r, "<li class=\"jpip-image\"><a href=\"", esc_html(r->pool, href),
                  "\"><span class=\"jpip-thumb\">", NULL);
        if (iiif_base(r->pool, &conf->viewer, e->im.rel) != NULL) {
            ap_rvputs(
                r, "<img loading=\"lazy\" alt=\"\" src=\"",
                esc_html(r->pool, apr_pstrcat(r->pool, iiif_base(r->pool, &conf->viewer, e->im.rel),
                                              "/full/" THUMB "/0/default.jpg", NULL)),
                "\">", NULL);
        }
        ap_rvputs(r, "</span><span class=\"jpip-name\">", name, "</span>", NULL);
        ap_rprintf(r,
                   "<span class=\"jpip-meta\"><span class=\"jpip-px\">%u &times; %u</span> "
                   "<span class=\"jpip-bytes\">%s</span></span></a></li>\n",
                   e->im.width, e->im.height, human_size(r->pool, e->im.t.finfo.size));
    }
    ap_rputs("</ul>\n", r);
    if (more) {
        ap_rprintf(r, "<p class=\"jpip-message\">Only the first %d entries are listed.</p>\n",
                   MAX_ENTRIES);
    }
    ap_rputs("</main>\n</body>\n</html>\n", r);
    return DONE;
}

/* ---------------------------------------------------------------- metadata */

/* One <roi name=".." x=".." y=".." w=".." h=".."/> of an XML box. */
typedef struct roi_t {
    const char *name;
    apr_int64_t v[4]; /* x, y, w, h */
} roi_t;

/* Append the UTF-8 form of code point cp. */
static apr_size_t put_utf8(char *o, apr_uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* An XML attribute value with its character and entity references
 * resolved (the five predefined entities, decimal and hex references);
 * anything else is kept as written. */
static const char *xml_unescape(apr_pool_t *p, const char *s, apr_size_t len)
{
    char *out = apr_palloc(p, len + 1), *o = out;
    apr_size_t i = 0;

    while (i < len) {
        const char *semi;
        apr_size_t k;

        if (s[i] != '&' || (semi = memchr(s + i, ';', len - i)) == NULL || semi - (s + i) > 12) {
            *o++ = s[i++];
            continue;
        }
        k = (apr_size_t)(semi - (s + i)) + 1;
        if (k == 4 && strncmp(s + i, "&lt;", 4) == 0) {
            *o++ = '<';
        } else if (k == 4 && strncmp(s + i, "&gt;", 4) == 0) {
            *o++ = '>';
        } else if (k == 5 && strncmp(s + i, "&amp;", 5) == 0) {
            *o++ = '&';
        } else if (k == 6 && strncmp(s + i, "&quot;", 6) == 0) {
            *o++ = '"';
        } else if (k == 6 && strncmp(s + i, "&apos;", 6) == 0) {
            *o++ = '\'';
        } else if (k > 3 && s[i + 1] == '#') {
            char num[16];
            char *end;
            unsigned long cp;
            int hex = s[i + 2] == 'x' || s[i + 2] == 'X';

            memcpy(num, s + i + 2 + hex, k - 3 - (apr_size_t)hex);
            num[k - 3 - (apr_size_t)hex] = '\0';
            cp = strtoul(num, &end, hex ? 16 : 10);
            if (*end != '\0' || num[0] == '\0' || cp == 0 || cp > 0x10FFFF ||
                (cp >= 0xD800 && cp <= 0xDFFF) || (size_t)(o - out) + 4 > len) {
                memcpy(o, s + i, k);
                o += k;
            } else {
                o += put_utf8(o, (apr_uint32_t)cp);
            }
        } else {
            memcpy(o, s + i, k);
            o += k;
        }
        i += k;
    }
    *o = '\0';
    return out;
}

/* The <roi .../> elements of an XML text (as opj_jpip_addxml writes
 * them): every one with a name and non-negative integer x, y and
 * positive w, h, clipped to the image. */
static void find_rois(apr_pool_t *p, const char *xml, apr_size_t len, apr_uint32_t width,
                      apr_uint32_t height, apr_array_header_t *rois)
{
    const char *s = xml, *end = xml + len;

    while (rois->nelts < MAX_ROIS && s < end) {
        const char *tag = NULL, *q;
        roi_t roi;
        int have = 0;

        for (q = s; q + 4 < end; q++) {
            if (q[0] == '<' && q[1] == 'r' && q[2] == 'o' && q[3] == 'i' &&
                (apr_isspace(q[4]) || q[4] == '/' || q[4] == '>')) {
                tag = q + 4;
                break;
            }
        }
        if (tag == NULL) {
            return;
        }
        memset(&roi, 0, sizeof(roi));
        s = tag;
        while (s < end && *s != '>') {
            const char *an, *v;
            apr_size_t alen;
            char quote;

            while (s < end && (apr_isspace(*s) || *s == '/')) {
                s++;
            }
            an = s;
            while (s < end && (apr_isalnum(*s) || *s == '_' || *s == '-' || *s == ':')) {
                s++;
            }
            alen = (apr_size_t)(s - an);
            while (s < end && apr_isspace(*s)) {
                s++;
            }
            if (alen == 0 || s >= end || *s != '=') {
                if (s < end && *s != '>') {
                    s++;
                }
                continue;
            }
            s++;
            while (s < end && apr_isspace(*s)) {
                s++;
            }
            if (s >= end || (*s != '"' && *s != '\'')) {
                continue;
            }
            quote = *s++;
            v = s;
            while (s < end && *s != quote) {
                s++;
            }
            if (s >= end) {
                return;
            }
            if (alen == 4 && strncmp(an, "name", 4) == 0) {
                roi.name = xml_unescape(p, v, (apr_size_t)(s - v));
                have |= 16;
            } else if (alen == 1 && strchr("xywh", an[0]) != NULL) {
                int k = (int)(strchr("xywh", an[0]) - "xywh");
                const char *d = v;
                apr_int64_t n = 0;

                while (d < s && apr_isspace(*d)) {
                    d++;
                }
                if (d == s) {
                    n = -1;
                }
                for (; d < s && apr_isdigit(*d) && n >= 0; d++) {
                    n = n * 10 + (*d - '0');
                    if (n > 0xFFFFFFFFLL) {
                        n = -1;
                    }
                }
                while (d < s && apr_isspace(*d)) {
                    d++;
                }
                if (d == s && n >= 0) {
                    roi.v[k] = n;
                    have |= 1 << k;
                }
            }
            s++;
        }
        if (have == 31 && roi.v[2] > 0 && roi.v[3] > 0 && roi.v[0] < width && roi.v[1] < height) {
            if (roi.v[0] + roi.v[2] > width) {
                roi.v[2] = width - roi.v[0];
            }
            if (roi.v[1] + roi.v[3] > height) {
                roi.v[3] = height - roi.v[1];
            }
            APR_ARRAY_PUSH(rois, roi_t) = roi;
        }
    }
}

static const char *colour_space(apr_pool_t *p, const unsigned char *c, apr_size_t n)
{
    if (n < 3) {
        return "colour specification cut short";
    }
    if (c[0] == 1 && n >= 7) {
        apr_uint32_t e = ((apr_uint32_t)c[3] << 24) | ((apr_uint32_t)c[4] << 16) |
                         ((apr_uint32_t)c[5] << 8) | c[6];

        switch (e) {
        case 16:
            return "sRGB";
        case 17:
            return "greyscale";
        case 18:
            return "sYCC";
        case 12:
            return "CMYK";
        case 20:
            return "e-sRGB";
        case 21:
            return "ROMM-RGB";
        case 3:
            return "YCbCr(2)";
        case 14:
            return "CIELab";
        case 24:
            return "e-sYCC";
        default:
            return apr_psprintf(p, "enumerated colour space %u", e);
        }
    }
    if (c[0] == 2) {
        return "restricted ICC profile";
    }
    if (c[0] == 3) {
        return "ICC profile";
    }
    if (c[0] == 4) {
        return "vendor colour method";
    }
    return apr_psprintf(p, "colour method %u", c[0]);
}

/* A resolution box (resc, resd): grid points per metre, and per inch. */
static const char *resolution(apr_pool_t *p, const unsigned char *b)
{
    unsigned vn = ((unsigned)b[0] << 8) | b[1], vd = ((unsigned)b[2] << 8) | b[3];
    unsigned hn = ((unsigned)b[4] << 8) | b[5], hd = ((unsigned)b[6] << 8) | b[7];
    int ve = (signed char)b[8], he = (signed char)b[9];
    double v, h;

    if (vd == 0 || hd == 0) {
        return "invalid (zero denominator)";
    }
    v = (double)vn / vd;
    h = (double)hn / hd;
    for (; ve > 0; ve--) {
        v *= 10;
    }
    for (; ve < 0; ve++) {
        v /= 10;
    }
    for (; he > 0; he--) {
        h *= 10;
    }
    for (; he < 0; he++) {
        h /= 10;
    }
    return apr_psprintf(p, "%.6g &times; %.6g per metre (%.4g &times; %.4g per inch)", h, v,
                        h * 0.0254, v * 0.0254);
}

/* ------------------------------------------------------------------ viewer */

static void row(request_rec *r, const char *key, const char *html)
{
    ap_rvputs(r, "<dt>", key, "</dt><dd>", html, "</dd>\n", NULL);
}

static int viewer_page(request_rec *r, const jpip_dir_conf_t *conf, const char *loc,
                       const image_t *im)
{
    apr_pool_t *p = r->pool;
    const jpip_box_layout_t *lay = im->tgt->layout;
    const jpip_ix_cs_t *cs = jpip_index_cs(im->tgt->ix, 0);
    const jpip_comp_t *comps = jpip_index_comps(im->tgt->ix, cs);
    const jpip_ix_summary_t *sum = jpip_index_summary(im->tgt->ix, cs);
    apr_array_header_t *rois = apr_array_make(p, 4, sizeof(roi_t));
    apr_array_header_t *xmls = apr_array_make(p, 2, sizeof(const char *));
    const char *colr = NULL, *resc = NULL, *resd = NULL, *base, *name, *slash, *url, *dirhref;
    apr_uint32_t i, nxml = 0;
    int k;

    for (i = 0; lay != NULL && i < lay->nboxes; i++) {
        const jpip_box_t *b = &lay->boxes[i];

        if (b->codestream != JPIP_BOX_NONE || b->hdr_bin == JPIP_BOX_NONE) {
            continue;
        }
        if (b->type == JPIP_BOX_XML) {
            apr_size_t n = b->contents_len > MAX_XML ? MAX_XML : (apr_size_t)b->contents_len;
            char *buf;

            nxml++;
            if (xmls->nelts >= MAX_XML_BOXES) {
                continue;
            }
            buf = apr_palloc(p, n + 1);
            if (!image_read(im, b->file_off + b->hdr_len, buf, n)) {
                continue;
            }
            buf[n] = '\0';
            find_rois(p, buf, n, im->width, im->height, rois);
            APR_ARRAY_PUSH(xmls, const char *) =
                apr_pstrcat(p, esc_html_n(p, buf, n),
                            n < b->contents_len ? "\n[... cut: the box is larger]" : "", NULL);
        } else if (b->type == JPIP_BOX_COLR && colr == NULL) {
            unsigned char c[7];
            apr_size_t n = b->contents_len < 7 ? (apr_size_t)b->contents_len : 7;

            if (image_read(im, b->file_off + b->hdr_len, c, n)) {
                colr = colour_space(p, c, n);
            }
        } else if ((b->type == JPIP_BOX_TYPE('r', 'e', 's', 'c') ||
                    b->type == JPIP_BOX_TYPE('r', 'e', 's', 'd')) &&
                   b->contents_len >= 10) {
            unsigned char c[10];

            if (image_read(im, b->file_off + b->hdr_len, c, 10)) {
                if (b->type == JPIP_BOX_TYPE('r', 'e', 's', 'c')) {
                    resc = resolution(p, c);
                } else {
                    resd = resolution(p, c);
                }
            }
        }
    }

    slash = strrchr(im->rel, '/');
    name = esc_html(p, slash != NULL ? slash + 1 : im->rel);
    dirhref = esc_html(
        p,
        apr_pstrcat(p, loc, "/",
                    slash != NULL
                        ? esc_url(p, apr_pstrmemdup(p, im->rel, (apr_size_t)(slash - im->rel)), 1)
                        : "",
                    slash != NULL ? "/" : "", NULL));
    url = ap_construct_url(p, apr_pstrcat(p, loc, "/", esc_url(p, im->rel, 1), NULL), r);
    base = iiif_base(p, &conf->viewer, im->rel);

    page_headers(r, loc);
    page_start(r, loc, apr_pstrcat(p, name, " - mod_jpip", NULL), "jpip-viewer");
    ap_rvputs(r, "<header class=\"jpip-bar\">\n<a class=\"jpip-up\" href=\"", dirhref,
              "\">Archive</a>\n<h1 id=\"jpip-title\">", name, "</h1>\n", NULL);
    ap_rprintf(r,
               "<p class=\"jpip-size\"><span id=\"jpip-px\">%u &times; %u</span> pixels, %s</p>\n",
               im->width, im->height, human_size(p, im->t.finfo.size));
    ap_rputs("<button type=\"button\" id=\"jpip-panel-toggle\" aria-controls=\"jpip-panel\">"
             "Details</button>\n</header>\n<main class=\"jpip-main\">\n",
             r);
    if (base != NULL) {
        ap_rprintf(r,
                   "<div id=\"jpip-osd\" class=\"jpip-osd\" data-info=\"%s\" data-prefix=\"%s\" "
                   "data-width=\"%u\" data-height=\"%u\" tabindex=\"0\"></div>\n",
                   esc_html(p, apr_pstrcat(p, base, "/info.json", NULL)),
                   esc_html(p, asset_url(p, loc, "openseadragon/images/")), im->width, im->height);
    } else {
        ap_rputs("<div id=\"jpip-osd\" class=\"jpip-osd jpip-message\"><p>No IIIF endpoint is "
                 "configured for this location (JPIPViewerIIIF), so the image cannot be drawn "
                 "here; JPIP clients can still open it with the URL in the panel.</p></div>\n",
                 r);
    }
    ap_rputs("<aside id=\"jpip-panel\" class=\"jpip-panel\">\n<h2>Image</h2>\n<dl>\n", r);
    row(r, "Name", name);
    row(r, "Size", apr_psprintf(p, "%u &times; %u pixels", im->width, im->height));
    row(r, "File",
        apr_pstrcat(p, human_size(p, im->t.finfo.size), ", ",
                    container_name(lay != NULL ? lay->container : JPIP_CONTAINER_RAW), NULL));
    row(r, "Components",
        apr_psprintf(p, "%u, %u bit%s%s", cs->siz.csiz, comps[0].depth,
                     comps[0].depth == 1 ? "" : "s", comps[0].is_signed ? " signed" : ""));
    row(r, "Colour space",
        colr != NULL ? esc_html(p, colr)
                     : (lay == NULL || lay->container == JPIP_CONTAINER_RAW
                            ? "not signalled (raw codestream)"
                            : "not signalled"));
    if (resc != NULL) {
        row(r, "Capture resolution", resc);
    }
    if (resd != NULL) {
        row(r, "Display resolution", resd);
    }
    row(r, "Coding",
        apr_psprintf(p, "%u resolution levels, %u quality layer%s, %u tile%s", sum->max_nl + 1,
                     sum->max_layers, sum->max_layers == 1 ? "" : "s", cs->siz.ntx * cs->siz.nty,
                     cs->siz.ntx * cs->siz.nty == 1 ? "" : "s"));
    if (jpip_index_ncs(im->tgt->ix) > 1) {
        row(r, "Codestreams",
            apr_psprintf(p, "%" APR_UINT64_T_FMT " (the first is shown)",
                         jpip_index_ncs(im->tgt->ix)));
    }
    ap_rputs("</dl>\n<h2>Open with a JPIP client</h2>\n<p class=\"jpip-copy\"><input "
             "id=\"jpip-url\" type=\"text\" readonly value=\"",
             r);
    ap_rvputs(
        r, esc_html(p, url),
        "\" aria-label=\"JPIP URL\"><button type=\"button\" id=\"jpip-copy\">Copy</button></p>\n",
        NULL);
    if (conf->viewer.download == 1) {
        ap_rvputs(r, "<p><a id=\"jpip-download\" download href=\"",
                  esc_html(p, apr_pstrcat(p, loc, "/" JPIP_VIEWER_RESERVED "/original/",
                                          esc_url(p, im->rel, 1), NULL)),
                  "\">Download the original</a></p>\n", NULL);
    }
    if (base != NULL) {
        ap_rvputs(r, "<p><a id=\"jpip-iiif\" href=\"",
                  esc_html(p, apr_pstrcat(p, base, "/info.json", NULL)),
                  "\">IIIF info.json</a></p>\n", NULL);
    }
    if (rois->nelts > 0) {
        ap_rputs("<h2>Regions of interest</h2>\n<ul id=\"jpip-rois\">\n", r);
        for (k = 0; k < rois->nelts; k++) {
            const roi_t *roi = &APR_ARRAY_IDX(rois, k, roi_t);

            ap_rprintf(
                r,
                "<li><button type=\"button\" class=\"jpip-roi-link\" data-roi=\"%d\" "
                "data-x=\"%" APR_INT64_T_FMT "\" data-y=\"%" APR_INT64_T_FMT
                "\" data-w=\"%" APR_INT64_T_FMT "\" data-h=\"%" APR_INT64_T_FMT
                "\" data-name=\"%s\">%s</button> <span class=\"jpip-roi-box\">%" APR_INT64_T_FMT
                ", %" APR_INT64_T_FMT ", %" APR_INT64_T_FMT " &times; %" APR_INT64_T_FMT
                "</span></li>\n",
                k, roi->v[0], roi->v[1], roi->v[2], roi->v[3], esc_html(p, roi->name),
                esc_html(p, roi->name), roi->v[0], roi->v[1], roi->v[2], roi->v[3]);
        }
        ap_rputs("</ul>\n", r);
    }
    if (nxml > 0) {
        ap_rprintf(r, "<h2>XML boxes (%u)</h2>\n", nxml);
        for (k = 0; k < xmls->nelts; k++) {
            ap_rprintf(r,
                       "<details class=\"jpip-xml\"><summary>XML box "
                       "%d</summary><pre>%s</pre></details>\n",
                       k + 1, APR_ARRAY_IDX(xmls, k, const char *));
        }
    }
    ap_rvputs(r, "</aside>\n</main>\n<script src=\"",
              esc_html(p, asset_url(p, loc, "openseadragon/openseadragon.min.js")),
              "\"></script>\n<script src=\"", esc_html(p, asset_url(p, loc, "viewer.js")),
              "\"></script>\n</body>\n</html>\n", NULL);
    return DONE;
}

/* ------------------------------------------------------------------ assets */

static const char *asset_type(const char *name)
{
    const char *dot = strrchr(name, '.');

    if (dot == NULL) {
        return "application/octet-stream";
    }
    if (strcmp(dot, ".js") == 0) {
        return "text/javascript; charset=utf-8";
    }
    if (strcmp(dot, ".css") == 0) {
        return "text/css; charset=utf-8";
    }
    if (strcmp(dot, ".png") == 0) {
        return "image/png";
    }
    if (strcmp(dot, ".svg") == 0) {
        return "image/svg+xml";
    }
    if (strcmp(dot, ".txt") == 0 || strcmp(dot, ".md") == 0) {
        return "text/plain; charset=utf-8";
    }
    if (strcmp(dot, ".map") == 0 || strcmp(dot, ".json") == 0) {
        return "application/json";
    }
    return "application/octet-stream";
}

/* Send the file at path, or f when it is already open (HEAD: only the
 * headers), with validators from fi, which describes what is sent. */
static int send_file(request_rec *r, const char *path, apr_file_t *f, apr_finfo_t *fi)
{
    apr_bucket_brigade *bb;
    int st;

    r->finfo = *fi;
    ap_update_mtime(r, fi->mtime);
    ap_set_last_modified(r);
    ap_set_etag(r);
    ap_set_accept_ranges(r);
    st = ap_meets_conditions(r);
    if (st != OK) {
        return st;
    }
    ap_set_content_length(r, fi->size);
    if (r->header_only) {
        return OK;
    }
    if (f == NULL && apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_SENDFILE_ENABLED,
                                   APR_FPROT_OS_DEFAULT, r->pool) != APR_SUCCESS) {
        return HTTP_FORBIDDEN;
    }
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    apr_brigade_insert_file(bb, f, 0, fi->size, r->pool);
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(r->connection->bucket_alloc));
    return ap_pass_brigade(r->output_filters, bb) == APR_SUCCESS ? OK : AP_FILTER_ERROR;
}

static int asset(request_rec *r, const jpip_dir_conf_t *conf, const char *loc, const char *name)
{
    const char *dir = conf->viewer.assets != NULL ? conf->viewer.assets : JPIP_VIEWER_DIR;
    const char *s, *path;
    apr_finfo_t fi;

    for (s = name; *s != '\0'; s++) {
        if (!(apr_isalnum(*s) || *s == '-' || *s == '_' || *s == '.' || *s == '/') ||
            (*s == '.' && (s == name || s[-1] == '/')) ||
            (*s == '/' && (s == name || s[-1] == '/'))) {
            return error_page(r, loc, HTTP_NOT_FOUND, "no such viewer asset");
        }
    }
    if (*name == '\0') {
        return error_page(r, loc, HTTP_NOT_FOUND, "no such viewer asset");
    }
    path = apr_pstrcat(r->pool, dir, "/", name, NULL);
    if (apr_stat(&fi, path, APR_FINFO_NORM, r->pool) != APR_SUCCESS || fi.filetype != APR_REG) {
        if (apr_stat(&fi, dir, APR_FINFO_TYPE, r->pool) != APR_SUCCESS) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                          JPIPLOGNO(0701) "viewer: the assets directory %s is missing "
                                          "(JPIPViewerAssets, or make install)",
                          dir);
        }
        return error_page(r, loc, HTTP_NOT_FOUND, "no such viewer asset");
    }
    ap_set_content_type(r, asset_type(name));
    apr_table_setn(r->headers_out, "Cache-Control",
                   apr_psprintf(r->pool, "public, max-age=%d, immutable", ASSET_MAX_AGE));
    apr_table_setn(r->headers_out, "X-Content-Type-Options", "nosniff");
    return send_file(r, path, NULL, &fi);
}

static int download(request_rec *r, const jpip_dir_conf_t *conf, const char *loc, const char *rel)
{
    image_t im;
    jpip_err_t err;
    apr_finfo_t fi;
    const char *base;
    char *ascii, *c;

    if (conf->viewer.download != 1) {
        return error_page(r, loc, HTTP_NOT_FOUND,
                          "downloads of the originals are not offered here (JPIPViewerDownload)");
    }
    jpip_err_clear(&err);
    if (image_open(r, conf, rel, &im, &err) != JPIP_OK) {
        return error_page(r, loc, err.code == JPIP_E_FORBIDDEN ? HTTP_FORBIDDEN : HTTP_NOT_FOUND,
                          err.code == JPIP_E_FORMAT || err.code == JPIP_E_UNSUPPORTED
                              ? "not an image of this archive"
                              : err.msg);
    }
    base = strrchr(rel, '/') != NULL ? strrchr(rel, '/') + 1 : rel;
    ascii = apr_pstrdup(r->pool, base);
    for (c = ascii; *c != '\0'; c++) {
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7F || *c == '"' || *c == '\\' ||
            *c == '%') {
            *c = '_';
        }
    }
    ap_set_content_type(
        r, container_type(im.tgt->layout != NULL ? im.tgt->layout->container : JPIP_CONTAINER_RAW));
    apr_table_setn(r->headers_out, "Content-Disposition",
                   apr_psprintf(r->pool, "attachment; filename=\"%s\"; filename*=UTF-8''%s", ascii,
                                esc_url(r->pool, base, 0)));
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    apr_table_setn(r->headers_out, "X-Content-Type-Options", "nosniff");
    /* the version indexed, from its checked descriptor: size, date and
     * ETag are that version's, whatever the path holds by now */
    fi = im.t.finfo;
    fi.size = (apr_off_t)im.tgt->size;
    fi.mtime = (apr_time_t)(im.tgt->id.mtime_ns / 1000);
    fi.inode = (apr_ino_t)im.tgt->id.ino;
    fi.device = (apr_dev_t)im.tgt->id.dev;
    return send_file(r, im.tgt->path, im.file, &fi);
}

/* ------------------------------------------------------------------ handler */

int jpip_viewer_handle(request_rec *r)
{
    const jpip_dir_conf_t *conf = ap_get_module_config(r->per_dir_config, &jpip_module);
    const char *loc, *rel, *dirpath;
    int slash = 0;

    if (conf->viewer.html == 0 || r->method_number != M_GET) {
        return DECLINED;
    }
    loc = location_of(r, conf);
    rel = rel_path(r, loc, &slash);
    if (rel == NULL) {
        return DECLINED;
    }
    /* the reserved path: assets and originals, whatever Accept says */
    if (strncmp(rel, JPIP_VIEWER_RESERVED, sizeof(JPIP_VIEWER_RESERVED) - 1) == 0 &&
        (rel[sizeof(JPIP_VIEWER_RESERVED) - 1] == '/' ||
         rel[sizeof(JPIP_VIEWER_RESERVED) - 1] == '\0')) {
        const char *sub = rel + sizeof(JPIP_VIEWER_RESERVED) - 1;
        apr_size_t vn = strlen(JPIP_MODULE_VERSION);

        sub += *sub == '/';
        if (strncmp(sub, "original/", 9) == 0) {
            return download(r, conf, loc, sub + 9);
        }
        if (strncmp(sub, JPIP_MODULE_VERSION, vn) == 0 && sub[vn] == '/') {
            return asset(r, conf, loc, sub + vn + 1);
        }
        return error_page(r, loc, HTTP_NOT_FOUND, "no such viewer asset");
    }
    if ((r->args != NULL && *r->args != '\0') || !prefers_html(r)) {
        return DECLINED; /* JPIP, exactly as without the viewer */
    }
    dirpath = resolve_dir(r->pool, conf, rel);
    if (dirpath != NULL) {
        if (!slash) {
            apr_table_setn(r->headers_out, "Location",
                           ap_construct_url(r->pool,
                                            apr_pstrcat(r->pool, loc, "/", esc_url(r->pool, rel, 1),
                                                        *rel != '\0' ? "/" : "", NULL),
                                            r));
            return HTTP_MOVED_PERMANENTLY;
        }
        return index_page(r, conf, loc, rel, dirpath);
    }
    {
        image_t im;
        jpip_err_t err;

        jpip_err_clear(&err);
        if (image_open(r, conf, rel, &im, &err) != JPIP_OK) {
            int st = err.code == JPIP_E_FORBIDDEN  ? HTTP_FORBIDDEN
                     : err.code == JPIP_E_NOTFOUND ? HTTP_NOT_FOUND
                     : err.code == JPIP_E_LIMIT    ? HTTP_SERVICE_UNAVAILABLE
                     : err.code == JPIP_E_REQUEST  ? HTTP_BAD_REQUEST
                                                   : HTTP_UNSUPPORTED_MEDIA_TYPE;

            return error_page(
                r, loc, st,
                st == HTTP_UNSUPPORTED_MEDIA_TYPE
                    ? apr_pstrcat(r->pool, "not a servable JPEG 2000 file: ", err.msg, NULL)
                    : err.msg);
        }
        return viewer_page(r, conf, loc, &im);
    }
}
