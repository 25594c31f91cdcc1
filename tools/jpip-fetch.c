/* jpip-fetch: a JPIP client on libcore.
 *
 *   jpip-fetch [options] URL -o OUT
 *
 * Sends the JPIP request in URL (every field as given, e.g.
 * https://host/jpip/scan.jp2?type=jpp-stream&fsiz=512,512&roff=0,0&rsiz=256,256)
 * to any JPIP server, parses the JPP- or JPT-stream into a data-bin cache,
 * and writes the codestream rebuilt from the bins received (a JP2/JPX file
 * when the target is one).
 *
 * HTTP is libcurl's: http:// and https:// URLs, HTTP/2 where the server
 * offers it (ALPN), one connection kept alive across all the requests of
 * a run (a session's, --repeat's, --window's), redirects followed, and
 * proxies from the environment as curl takes them (http_proxy,
 * https_proxy, all_proxy, no_proxy).
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
 *   --user USER:PASSWORD
 *                    authenticate (basic or digest, as the server asks)
 *   --cacert FILE    trust the certificates in FILE (PEM) for https://
 *   --insecure       do not verify the server's certificate
 *   --http1.1        speak HTTP/1.1 only
 *   --http2          speak HTTP/2, also over http:// (prior knowledge)
 *   -v               print each request's status, HTTP version and JPIP
 *                    headers, and at the end the bytes, requests and
 *                    connections used
 *
 * Exit status 0 on success, 1 on a network, HTTP or stream error (named on
 * stderr), 2 on a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_strings.h>
#include <apr_uri.h>

#include "client.h"
#include "jp2rebuild.h"
#include "rebuild.h"

#define FETCH_VERSION "0.1"

typedef struct http_resp_t {
    int status;           /* of the last response (after redirects, auth) */
    apr_table_t *headers; /* of the last response */
    apr_uint64_t body_bytes;
} http_resp_t;

typedef struct fetch_t {
    apr_pool_t *pool;
    CURL *curl; /* one handle: its connection is kept alive */
    char errbuf[CURL_ERROR_SIZE];
    apr_uri_t uri;
    const char *query; /* fields of URL, without fsiz/roff/rsiz when windows are given */
    jpip_cache_t *cache;
    jpip_reader_t *reader;
    apr_file_t *jpp; /* --jpp */
    int verbose;
    int post;
    int auth;         /* --user given: a 401 is answered by libcurl */
    const char *each; /* --each PREFIX */
    apr_int64_t csn;  /* --codestream N, or -1 */
    const char *ext;  /* extension of the output (from -o), for --each */
    unsigned nresp;
    unsigned nreq;     /* requests sent */
    long nconn;        /* connections opened */
    http_resp_t *resp; /* the response being read */
    /* where requests go: scheme://host:port, then path */
    const char *scheme;
    const char *host;
    apr_port_t port;
    const char *path; /* from JPIP-cnew, or the URL path */
    /* session */
    const char *cid;
} fetch_t;

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

/* Body bytes of a response that is not the last of its transfer (a
 * redirect being followed, a 401 answered with the credentials) are
 * dropped. */
static int passes_on(const fetch_t *f, int status)
{
    return !(status >= 100 && status < 200) && !(status >= 300 && status < 400) &&
           !(status == 401 && f->auth);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
    fetch_t *f = ctx;
    http_resp_t *resp = f->resp;
    size_t n = size * nmemb;
    jpip_err_t err;

    if (n == 0 || !passes_on(f, resp->status)) {
        return n;
    }
    resp->body_bytes += n;
    if (f->jpp != NULL && apr_file_write_full(f->jpp, data, n, NULL) != APR_SUCCESS) {
        die("cannot write the raw response");
    }
    if (resp->status == 200 && jpip_reader_feed(f->reader, data, n, &err) != JPIP_OK) {
        die("malformed JPIP stream: %s", err.msg);
    }
    return n;
}

/* One header line; a status line starts the headers of a new response. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *ctx)
{
    fetch_t *f = ctx;
    http_resp_t *resp = f->resp;
    size_t n = size * nmemb, len = n;
    const char *colon, *v;

    while (len > 0 && (data[len - 1] == '\r' || data[len - 1] == '\n')) {
        len--;
    }
    if (len > 5 && strncmp(data, "HTTP/", 5) == 0) {
        const char *sp = memchr(data, ' ', len);
        resp->status = sp != NULL ? atoi(sp + 1) : 0;
        apr_table_clear(resp->headers);
        return n;
    }
    colon = memchr(data, ':', len);
    if (colon == NULL) {
        return n;
    }
    for (v = colon + 1; v < data + len && (*v == ' ' || *v == '\t'); v++) {
    }
    apr_table_add(resp->headers, apr_pstrmemdup(f->pool, data, (apr_size_t)(colon - data)),
                  apr_pstrmemdup(f->pool, v, (apr_size_t)(data + len - v)));
    return n;
}

/* scheme://host:port (an IPv6 address in brackets) */
static const char *origin(const fetch_t *f)
{
    const char *h = strchr(f->host, ':') != NULL ? apr_psprintf(f->pool, "[%s]", f->host) : f->host;

    return apr_psprintf(f->pool, "%s://%s:%u", f->scheme, h, f->port);
}

static const char *http_version(long v)
{
    switch (v) {
    case CURL_HTTP_VERSION_1_0:
        return "HTTP/1.0";
    case CURL_HTTP_VERSION_1_1:
        return "HTTP/1.1";
    case CURL_HTTP_VERSION_2_0:
        return "HTTP/2";
#ifdef CURL_HTTP_VERSION_3
    case CURL_HTTP_VERSION_3:
        return "HTTP/3";
#endif
    }
    return "HTTP";
}

/* One request: GET (or POST) path?fields, parse the response. */
static void http_request(fetch_t *f, const char *path, const char *fields, http_resp_t *resp)
{
    const char *url;
    long version = 0, conns = 0;
    CURLcode rc;
    jpip_err_t err;

    memset(resp, 0, sizeof(*resp));
    resp->headers = apr_table_make(f->pool, 8);
    f->resp = resp;
    f->errbuf[0] = '\0';
    /* long requests (a big model=) go as a form body, as JPIP allows */
    if (f->post || strlen(fields) > 6000) {
        url = apr_pstrcat(f->pool, origin(f), path, NULL);
        curl_easy_setopt(f->curl, CURLOPT_POSTFIELDS, fields);
        curl_easy_setopt(f->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(fields));
    } else {
        url = apr_pstrcat(f->pool, origin(f), path, *fields ? "?" : "", fields, NULL);
        curl_easy_setopt(f->curl, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(f->curl, CURLOPT_URL, url);
    jpip_reader_next_response(f->reader);
    rc = curl_easy_perform(f->curl);
    f->nreq++;
    if (curl_easy_getinfo(f->curl, CURLINFO_NUM_CONNECTS, &conns) == CURLE_OK) {
        f->nconn += conns;
    }
    if (rc != CURLE_OK) {
        die("%s: %s", url, f->errbuf[0] ? f->errbuf : curl_easy_strerror(rc));
    }
    curl_easy_getinfo(f->curl, CURLINFO_HTTP_VERSION, &version);
    if (f->verbose) {
        const apr_array_header_t *h = apr_table_elts(resp->headers);
        int i;

        fprintf(stderr, "jpip-fetch: %d for %s%s%s (%s)\n", resp->status, path, *fields ? "?" : "",
                fields, http_version(version));
        for (i = 0; i < h->nelts; i++) {
            const apr_table_entry_t *e = &((const apr_table_entry_t *)h->elts)[i];
            if (strncasecmp(e->key, "JPIP-", 5) == 0) {
                /* HTTP/2 sends names in lower case */
                fprintf(stderr, "  JPIP-%s: %s\n", e->key + 5, e->val);
            }
        }
    }
    if (resp->status != 200) {
        die("HTTP %d for %s", resp->status, path);
    }
    if (jpip_reader_finish(f->reader, &err) != JPIP_OK) {
        die("truncated JPIP stream: %s", err.msg);
    }
}

/* After a redirect, later requests go where the first one ended up. */
static void follow_effective(fetch_t *f)
{
    char *eff = NULL;
    apr_uri_t u;

    if (curl_easy_getinfo(f->curl, CURLINFO_EFFECTIVE_URL, &eff) != CURLE_OK || eff == NULL ||
        apr_uri_parse(f->pool, eff, &u) != APR_SUCCESS || u.hostname == NULL || u.scheme == NULL) {
        return;
    }
    f->scheme = apr_pstrdup(f->pool, u.scheme);
    f->host = apr_pstrdup(f->pool, u.hostname);
    f->port = u.port ? u.port : apr_uri_port_of_scheme(u.scheme);
    f->path = u.path != NULL ? apr_pstrdup(f->pool, u.path) : "/";
}

static void http_setup(fetch_t *f, const char *user, const char *cacert, int insecure, long version)
{
    CURL *c;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (c = curl_easy_init()) == NULL) {
        die("cannot start libcurl");
    }
    f->curl = c;
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, f->errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "jpip-fetch/" FETCH_VERSION);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    /* a server that stalls for two minutes is gone */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 120L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    /* a redirected POST stays a POST: its body holds the request's fields */
    curl_easy_setopt(c, CURLOPT_POSTREDIR, (long)CURL_REDIR_POST_ALL);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, version);
    if (user != NULL) {
        f->auth = 1;
        curl_easy_setopt(c, CURLOPT_USERPWD, user);
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_ANY);
    }
    if (cacert != NULL) {
        curl_easy_setopt(c, CURLOPT_CAINFO, cacert);
    }
    if (insecure) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
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
    fprintf(stderr,
            "usage: jpip-fetch [--session] [--repeat] [--each PREFIX] [--post] "
            "[--window fx,fy,ox,oy,sx,sy]... [--user USER:PASSWORD] [--cacert FILE] "
            "[--insecure] [--http1.1|--http2] [--jpp FILE] [--codestream N] [-v] URL -o OUT\n");
    return 2;
}

int main(int argc, char **argv)
{
    fetch_t f;
    const char *url = NULL, *out = NULL, *jppfile = NULL, *user = NULL, *cacert = NULL;
    apr_array_header_t *windows;
    int session = 0, repeat = 0, insecure = 0, i;
    long version = CURL_HTTP_VERSION_2TLS; /* HTTP/2 where TLS offers it */
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
        } else if (strcmp(argv[i], "--user") == 0 && i + 1 < argc) {
            user = argv[++i];
        } else if (strcmp(argv[i], "--cacert") == 0 && i + 1 < argc) {
            cacert = argv[++i];
        } else if (strcmp(argv[i], "--insecure") == 0 || strcmp(argv[i], "-k") == 0) {
            insecure = 1;
        } else if (strcmp(argv[i], "--http1.1") == 0) {
            version = CURL_HTTP_VERSION_1_1;
        } else if (strcmp(argv[i], "--http2") == 0) {
            version = CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
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
        f.uri.scheme == NULL ||
        (strcasecmp(f.uri.scheme, "http") != 0 && strcasecmp(f.uri.scheme, "https") != 0)) {
        fprintf(stderr, "jpip-fetch: expected an http:// or https:// URL\n");
        return 2;
    }
    if (version == CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE && strcasecmp(f.uri.scheme, "https") == 0) {
        version = CURL_HTTP_VERSION_2TLS; /* TLS negotiates it */
    }
    f.scheme = apr_pstrdup(f.pool, f.uri.scheme);
    f.host = f.uri.hostname;
    f.port = f.uri.port ? f.uri.port : apr_uri_port_of_scheme(f.scheme);
    f.path = f.uri.path != NULL ? f.uri.path : "/";
    f.query = windows->nelts > 0 ? strip_fields(f.pool, f.uri.query, window_prefixes)
                                 : (f.uri.query ? f.uri.query : "");
    http_setup(&f, user, cacert, insecure, version);
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
                follow_effective(&f);
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
                if (f.nresp == 0) {
                    follow_effective(&f);
                }
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
        fprintf(stderr,
                "jpip-fetch: %" APR_UINT64_T_FMT " body bytes in %d request(s)"
                " (%u sent over %ld connection(s))\n",
                total, windows->nelts, f.nreq, f.nconn);
    }
    if (f.jpp != NULL) {
        apr_file_close(f.jpp);
    }
    if (out != NULL) {
        write_output(&f, out);
    }
    curl_easy_cleanup(f.curl);
    curl_global_cleanup();
    apr_pool_destroy(f.pool);
    apr_terminate();
    return 0;
}
