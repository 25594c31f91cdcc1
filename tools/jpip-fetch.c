/* jpip-fetch: a JPIP client on libcore.
 *
 *   jpip-fetch [options] URL -o OUT
 *
 * Sends the JPIP request in URL (every field as given, e.g.
 * http://host/jpip/scan.jp2?type=jpp-stream&fsiz=512,512&roff=0,0&rsiz=256,256)
 * to any JPIP server, parses the JPP- or JPT-stream into a data-bin cache,
 * and writes the codestream rebuilt from the bins received (a JP2/JPX file
 * when the target is one).
 *
 * options:
 *   -o OUT           where to write the rebuilt image (required unless --jpp)
 *   --jpp FILE       also save the raw response bodies
 *   --window fx,fy,ox,oy,sx,sy
 *                    a view-window to request (repeatable; replaces fsiz,
 *                    roff and rsiz of URL for each request)
 *   --session        open a channel (cnew=http) and send every window over
 *                    it; without a granted channel, fall back to stateless
 *                    requests that declare the cache with model=
 *   --repeat         while a response ends with EOR 4 (byte limit), send the
 *                    request again (declaring the cache with model=, or on
 *                    the channel) until the window is done
 *   --each PREFIX    after every response, also write the image rebuilt so
 *                    far to PREFIX-N.EXT (N from 1)
 *   --post           send the fields as a form-encoded POST body
 *   --codestream N   write codestream N alone, bare, instead of the whole
 *                    file (e.g. one frame of a multi-frame target)
 *   -v               print each request's status and JPIP headers
 *
 * Each request uses its own connection. Exit status 0 on success, 1 on a
 * network, HTTP or stream error (named on stderr), 2 on a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_network_io.h>
#include <apr_strings.h>
#include <apr_uri.h>

#include "client.h"
#include "jp2rebuild.h"
#include "rebuild.h"

typedef struct fetch_t {
    apr_pool_t *pool;
    apr_uri_t uri;
    const char *query; /* fields of URL, without fsiz/roff/rsiz when windows are given */
    jpip_cache_t *cache;
    jpip_reader_t *reader;
    apr_file_t *jpp; /* --jpp */
    int verbose;
    int post;
    const char *each; /* --each PREFIX */
    apr_int64_t csn;  /* --codestream N, or -1 */
    const char *ext;  /* extension of the output (from -o), for --each */
    unsigned nresp;
    /* session */
    const char *cid;
    const char *path; /* from JPIP-cnew, or the URL path */
    const char *host;
    apr_port_t port;
} fetch_t;

typedef struct http_resp_t {
    int status;
    apr_table_t *headers;
    apr_uint64_t body_bytes;
} http_resp_t;

static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("jpip-fetch: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* ------------------------------------------------------------------ HTTP */

typedef struct conn_t {
    apr_socket_t *sock;
    char buf[65536];
    apr_size_t pos, len;
    int eof;
} conn_t;

/* Fill the buffer; 0 at end of stream. */
static int fill(conn_t *c)
{
    apr_size_t n = sizeof(c->buf);
    apr_status_t rv;

    if (c->eof) {
        return 0;
    }
    rv = apr_socket_recv(c->sock, c->buf, &n);
    c->pos = 0;
    c->len = n;
    if (rv != APR_SUCCESS || n == 0) {
        c->eof = 1;
        return n > 0;
    }
    return 1;
}

/* Read a CRLF-terminated line (without it) of at most 8 KiB. */
static char *read_line(apr_pool_t *pool, conn_t *c)
{
    char line[8192];
    apr_size_t n = 0;

    for (;;) {
        char ch;

        if (c->pos == c->len && !fill(c)) {
            return n > 0 ? apr_pstrmemdup(pool, line, n) : NULL;
        }
        ch = c->buf[c->pos++];
        if (ch == '\n') {
            if (n > 0 && line[n - 1] == '\r') {
                n--;
            }
            return apr_pstrmemdup(pool, line, n);
        }
        if (n + 1 >= sizeof(line)) {
            die("an HTTP header line is too long");
        }
        line[n++] = ch;
    }
}

static void feed(fetch_t *f, const char *data, apr_size_t n, http_resp_t *resp)
{
    jpip_err_t err;

    if (n == 0) {
        return;
    }
    resp->body_bytes += n;
    if (f->jpp != NULL) {
        apr_file_write_full(f->jpp, data, n, NULL);
    }
    if (resp->status == 200 && jpip_reader_feed(f->reader, data, n, &err) != JPIP_OK) {
        die("malformed JPIP stream: %s", err.msg);
    }
}

/* Pass up to n body bytes (all until close when n is -1) to feed. */
static void body_bytes(fetch_t *f, conn_t *c, apr_int64_t n, http_resp_t *resp)
{
    while (n != 0) {
        apr_size_t take;

        if (c->pos == c->len && !fill(c)) {
            if (n > 0) {
                die("the connection closed %" APR_INT64_T_FMT " bytes before the end of the body",
                    n);
            }
            return;
        }
        take = c->len - c->pos;
        if (n > 0 && (apr_int64_t)take > n) {
            take = (apr_size_t)n;
        }
        feed(f, c->buf + c->pos, take, resp);
        c->pos += take;
        if (n > 0) {
            n -= (apr_int64_t)take;
        }
    }
}

static void read_chunked(fetch_t *f, conn_t *c, http_resp_t *resp)
{
    for (;;) {
        char *line = read_line(f->pool, c), *end;
        apr_int64_t size;

        if (line == NULL) {
            die("the connection closed inside a chunked body");
        }
        size = apr_strtoi64(line, &end, 16);
        if (end == line || size < 0) {
            die("malformed chunk size line \"%.40s\"", line);
        }
        if (size == 0) {
            while ((line = read_line(f->pool, c)) != NULL && *line != '\0') {
            }
            return;
        }
        body_bytes(f, c, size, resp);
        line = read_line(f->pool, c);
        if (line == NULL || *line != '\0') {
            die("a chunk is not followed by CRLF");
        }
    }
}

/* One request: GET (or POST) path?fields, parse the response. */
static void http_request(fetch_t *f, const char *path, const char *fields, http_resp_t *resp)
{
    apr_sockaddr_t *sa;
    conn_t *c = apr_pcalloc(f->pool, sizeof(*c));
    const char *req, *line, *te, *cl;
    apr_size_t n;
    jpip_err_t err;

    if (apr_sockaddr_info_get(&sa, f->host, APR_UNSPEC, f->port, 0, f->pool) != APR_SUCCESS ||
        apr_socket_create(&c->sock, sa->family, SOCK_STREAM, APR_PROTO_TCP, f->pool) !=
            APR_SUCCESS ||
        apr_socket_timeout_set(c->sock, apr_time_from_sec(120)) != APR_SUCCESS ||
        apr_socket_connect(c->sock, sa) != APR_SUCCESS) {
        die("cannot connect to %s:%u", f->host, f->port);
    }
    /* long requests (a big model=) go as a form body, as JPIP allows */
    if (f->post || strlen(fields) > 6000) {
        req = apr_psprintf(f->pool,
                           "POST %s HTTP/1.1\r\nHost: %s:%u\r\nConnection: close\r\n"
                           "Content-Type: application/x-www-form-urlencoded\r\n"
                           "Content-Length: %" APR_SIZE_T_FMT "\r\n\r\n%s",
                           path, f->host, f->port, strlen(fields), fields);
    } else {
        req =
            apr_psprintf(f->pool, "GET %s%s%s HTTP/1.1\r\nHost: %s:%u\r\nConnection: close\r\n\r\n",
                         path, *fields ? "?" : "", fields, f->host, f->port);
    }
    n = strlen(req);
    if (apr_socket_send(c->sock, req, &n) != APR_SUCCESS || n != strlen(req)) {
        die("cannot send the request");
    }
    line = read_line(f->pool, c);
    if (line == NULL || sscanf(line, "HTTP/%*d.%*d %d", &resp->status) != 1) {
        die("no HTTP status line in the response");
    }
    resp->headers = apr_table_make(f->pool, 8);
    while ((line = read_line(f->pool, c)) != NULL && *line != '\0') {
        const char *colon = strchr(line, ':');
        if (colon != NULL) {
            const char *v = colon + 1;
            while (*v == ' ' || *v == '\t') {
                v++;
            }
            apr_table_add(resp->headers, apr_pstrmemdup(f->pool, line, (apr_size_t)(colon - line)),
                          v);
        }
    }
    if (f->verbose) {
        const apr_array_header_t *h = apr_table_elts(resp->headers);
        int i;

        fprintf(stderr, "jpip-fetch: %d for %s%s%s\n", resp->status, path, *fields ? "?" : "",
                fields);
        for (i = 0; i < h->nelts; i++) {
            const apr_table_entry_t *e = &((const apr_table_entry_t *)h->elts)[i];
            if (strncasecmp(e->key, "JPIP-", 5) == 0) {
                fprintf(stderr, "  %s: %s\n", e->key, e->val);
            }
        }
    }
    jpip_reader_next_response(f->reader);
    te = apr_table_get(resp->headers, "Transfer-Encoding");
    cl = apr_table_get(resp->headers, "Content-Length");
    if (te != NULL && strcasecmp(te, "chunked") == 0) {
        read_chunked(f, c, resp);
    } else if (cl != NULL) {
        body_bytes(f, c, apr_atoi64(cl), resp);
    } else {
        body_bytes(f, c, -1, resp);
    }
    apr_socket_close(c->sock);
    if (resp->status != 200) {
        die("HTTP %d for %s", resp->status, path);
    }
    if (jpip_reader_finish(f->reader, &err) != JPIP_OK) {
        die("truncated JPIP stream: %s", err.msg);
    }
}

/* ------------------------------------------------------------ windows */

/* query without the fields whose names start with one of the prefixes
 * (a NULL-terminated list such as "fsiz=", "target="). */
static const char *strip_fields(apr_pool_t *pool, const char *query, const char *const *prefixes)
{
    char *copy = apr_pstrdup(pool, query != NULL ? query : ""), *last = NULL, *tok;
    const char *out = "";

    for (tok = apr_strtok(copy, "&", &last); tok != NULL; tok = apr_strtok(NULL, "&", &last)) {
        const char *const *p;
        int drop = 0;

        for (p = prefixes; *p != NULL; p++) {
            drop |= strncmp(tok, *p, strlen(*p)) == 0;
        }
        if (!drop) {
            out = *out ? apr_pstrcat(pool, out, "&", tok, NULL) : tok;
        }
    }
    return out;
}

static const char *const window_prefixes[] = {"fsiz=", "roff=", "rsiz=", NULL};
/* what a channel already knows: the target and its id */
static const char *const session_prefixes[] = {"target=", "tid=", "cnew=", NULL};

static const char *window_fields(apr_pool_t *pool, const char *w)
{
    unsigned long v[6];

    if (sscanf(w, "%lu,%lu,%lu,%lu,%lu,%lu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) {
        fprintf(stderr, "jpip-fetch: --window wants fx,fy,ox,oy,sx,sy\n");
        exit(2);
    }
    return apr_psprintf(pool, "fsiz=%lu,%lu&roff=%lu,%lu&rsiz=%lu,%lu", v[0], v[1], v[2], v[3],
                        v[4], v[5]);
}

static const char *join(apr_pool_t *pool, const char *a, const char *b)
{
    if (*a == '\0') {
        return b;
    }
    return *b == '\0' ? a : apr_pstrcat(pool, a, "&", b, NULL);
}

/* Parse JPIP-cnew: cid=...,path=...,transport=...,host=...,port=... */
static int parse_cnew(fetch_t *f, const char *v)
{
    char *copy = apr_pstrdup(f->pool, v), *last = NULL, *tok;

    for (tok = apr_strtok(copy, ",", &last); tok != NULL; tok = apr_strtok(NULL, ",", &last)) {
        while (*tok == ' ') {
            tok++;
        }
        if (strncmp(tok, "cid=", 4) == 0) {
            f->cid = tok + 4;
        } else if (strncmp(tok, "path=", 5) == 0) {
            f->path = tok[5] == '/' ? tok + 5 : apr_pstrcat(f->pool, "/", tok + 5, NULL);
        } else if (strncmp(tok, "host=", 5) == 0) {
            f->host = tok + 5;
        } else if (strncmp(tok, "port=", 5) == 0) {
            f->port = (apr_port_t)atoi(tok + 5);
        } else if (strncmp(tok, "transport=", 10) == 0 && strcmp(tok + 10, "http") != 0) {
            return 0;
        }
    }
    return f->cid != NULL;
}

/* ------------------------------------------------------------- output */

static jpip_code_t write_file(void *ctx, const void *data, apr_size_t len, jpip_err_t *err)
{
    if (apr_file_write_full(ctx, data, len, NULL) != APR_SUCCESS) {
        return jpip_err_set(err, JPIP_E_IO, "write failed");
    }
    return JPIP_OK;
}

static jpip_code_t rebuild_cs(void *ctx, apr_uint64_t csid, const unsigned char **bytes,
                              apr_uint64_t *len, jpip_err_t *err)
{
    fetch_t *f = ctx;
    jpip_binsrc_t bs = {f->cache, jpip_cache_binsrc_get};
    jpip_rebuild_opts_t o;
    unsigned char *out;
    apr_size_t n;
    jpip_code_t rc;

    jpip_rebuild_opts_init(&o);
    o.csn = csid;
    rc = jpip_rebuild_mem(&bs, &o, f->pool, &out, &n, NULL, err);
    *bytes = out;
    *len = n;
    return rc;
}

static void write_output(fetch_t *f, const char *out)
{
    const unsigned char *m0;
    apr_uint64_t m0len = 0;
    int complete = 0;
    apr_file_t *fd;
    jpip_err_t err;
    jpip_code_t rc;

    if (apr_file_open(&fd, out, APR_FOPEN_WRITE | APR_FOPEN_CREATE | APR_FOPEN_TRUNCATE,
                      APR_FPROT_OS_DEFAULT, f->pool) != APR_SUCCESS) {
        die("cannot create %s", out);
    }
    /* a JP2-family target has boxes in metadata-bin 0; a raw codestream none */
    jpip_cache_get(f->cache, JPIP_CLASS_META, 0, 0, &m0, &m0len, &complete);
    if (f->csn >= 0) {
        jpip_binsrc_t bs = {f->cache, jpip_cache_binsrc_get};
        jpip_rebuild_opts_t o;

        jpip_rebuild_opts_init(&o);
        o.csn = (apr_uint64_t)f->csn;
        rc = jpip_rebuild(&bs, &o, f->pool, write_file, fd, NULL, &err);
    } else if (m0len > 0) {
        jpip_binsrc_t bs = {f->cache, jpip_cache_binsrc_get};
        rc = jpip_jp2_rebuild(&bs, rebuild_cs, f, write_file, fd, f->pool, &err);
    } else {
        jpip_binsrc_t bs = {f->cache, jpip_cache_binsrc_get};
        jpip_rebuild_opts_t o;

        jpip_rebuild_opts_init(&o);
        rc = jpip_rebuild(&bs, &o, f->pool, write_file, fd, NULL, &err);
    }
    if (rc != JPIP_OK) {
        die("cannot rebuild the image from the bins received: %s", err.msg);
    }
    apr_file_close(fd);
}

/* After each response: the EOR reason, and the --each snapshot. */
static unsigned after_response(fetch_t *f)
{
    unsigned reason = 0;

    f->nresp++;
    if (!jpip_reader_eor(f->reader, &reason)) {
        die("the response did not end with an EOR message");
    }
    if (f->each != NULL) {
        write_output(f, apr_psprintf(f->pool, "%s-%u%s", f->each, f->nresp, f->ext));
    }
    return reason;
}

/* --------------------------------------------------------------- main */

static int usage(void)
{
    fprintf(stderr, "usage: jpip-fetch [--session] [--post] [--window fx,fy,ox,oy,sx,sy]... "
                    "[--jpp FILE] [--codestream N] [-v] URL -o OUT\n");
    return 2;
}

int main(int argc, char **argv)
{
    fetch_t f;
    const char *url = NULL, *out = NULL, *jppfile = NULL;
    apr_array_header_t *windows;
    int session = 0, repeat = 0, i;
    jpip_err_t err;
    http_resp_t resp;
    apr_uint64_t total = 0;

    apr_app_initialize(&argc, (const char *const **)&argv, NULL);
    memset(&f, 0, sizeof(f));
    f.csn = -1;
    apr_pool_create(&f.pool, NULL);
    windows = apr_array_make(f.pool, 4, sizeof(const char *));
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
            out = argv[++i];
        } else if (strcmp(argv[i], "--jpp") == 0 && i + 1 < argc) {
            jppfile = argv[++i];
        } else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc) {
            APR_ARRAY_PUSH(windows, const char *) = argv[++i];
        } else if (strcmp(argv[i], "--session") == 0) {
            session = 1;
        } else if (strcmp(argv[i], "--repeat") == 0) {
            repeat = 1;
        } else if (strcmp(argv[i], "--each") == 0 && i + 1 < argc) {
            f.each = argv[++i];
        } else if (strcmp(argv[i], "--post") == 0) {
            f.post = 1;
        } else if (strcmp(argv[i], "--codestream") == 0 && i + 1 < argc) {
            char *end;
            f.csn = apr_strtoi64(argv[++i], &end, 10);
            if (*end != '\0' || end == argv[i] || f.csn < 0) {
                return usage();
            }
        } else if (strcmp(argv[i], "-v") == 0) {
            f.verbose = 1;
        } else if (argv[i][0] == '-' || url != NULL) {
            return usage();
        } else {
            url = argv[i];
        }
    }
    if (url == NULL || (out == NULL && jppfile == NULL)) {
        return usage();
    }
    if (apr_uri_parse(f.pool, url, &f.uri) != APR_SUCCESS || f.uri.hostname == NULL ||
        (f.uri.scheme != NULL && strcmp(f.uri.scheme, "http") != 0)) {
        fprintf(stderr, "jpip-fetch: expected an http:// URL\n");
        return 2;
    }
    f.host = f.uri.hostname;
    f.port = f.uri.port ? f.uri.port : 80;
    f.path = f.uri.path != NULL ? f.uri.path : "/";
    f.query = windows->nelts > 0 ? strip_fields(f.pool, f.uri.query, window_prefixes)
                                 : (f.uri.query ? f.uri.query : "");
    if (jpip_cache_create(&f.cache, f.pool, NULL, &err) != JPIP_OK ||
        jpip_reader_create(&f.reader, f.cache, f.pool, &err) != JPIP_OK) {
        die("%s", err.msg);
    }
    if (jppfile != NULL &&
        apr_file_open(&f.jpp, jppfile, APR_FOPEN_WRITE | APR_FOPEN_CREATE | APR_FOPEN_TRUNCATE,
                      APR_FPROT_OS_DEFAULT, f.pool) != APR_SUCCESS) {
        die("cannot create %s", jppfile);
    }
    if (windows->nelts == 0) {
        APR_ARRAY_PUSH(windows, const char *) = NULL;
    }
    f.ext = out != NULL && strrchr(out, '.') != NULL ? strrchr(out, '.') : ".j2k";
    for (i = 0; i < windows->nelts; i++) {
        const char *w = APR_ARRAY_IDX(windows, i, const char *);
        const char *fields = join(f.pool, f.query, w != NULL ? window_fields(f.pool, w) : "");
        unsigned reason, rounds = 0;

        do {
            if (session && f.cid == NULL) {
                const char *cnew;

                http_request(&f, f.path, join(f.pool, fields, "cnew=http"), &resp);
                cnew = apr_table_get(resp.headers, "JPIP-cnew");
                if (cnew == NULL || !parse_cnew(&f, cnew)) {
                    if (f.verbose) {
                        fprintf(stderr, "jpip-fetch: no channel granted: stateless requests\n");
                    }
                    session = 0;
                }
            } else if (session) {
                http_request(&f, f.path,
                             join(f.pool, apr_pstrcat(f.pool, "cid=", f.cid, NULL),
                                  strip_fields(f.pool, fields, session_prefixes)),
                             &resp);
            } else {
                const char *model = NULL, *q = fields;

                if (f.nresp > 0 &&
                    jpip_cache_model_string(f.cache, f.pool, 1 << 20, &model, &err) == JPIP_OK &&
                    *model != '\0') {
                    q = join(f.pool, fields, apr_pstrcat(f.pool, "model=", model, NULL));
                }
                http_request(&f, f.path, q, &resp);
            }
            total += resp.body_bytes;
            reason = after_response(&f);
        } while (repeat && reason == 4 && ++rounds < 100000);
    }
    if (session && f.cid != NULL) {
        http_request(&f, f.path,
                     apr_pstrcat(f.pool, "cid=", f.cid, "&cclose=", f.cid, "&len=0", NULL), &resp);
    }
    if (f.verbose) {
        fprintf(stderr, "jpip-fetch: %" APR_UINT64_T_FMT " body bytes in %d request(s)\n", total,
                windows->nelts);
    }
    if (f.jpp != NULL) {
        apr_file_close(f.jpp);
    }
    if (out != NULL) {
        write_output(&f, out);
    }
    apr_pool_destroy(f.pool);
    apr_terminate();
    return 0;
}
