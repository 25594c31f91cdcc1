/* mod_jpip: the request handler.
 *
 * Claims requests whose handler is "jpip": reads the JPIP fields (query
 * string and, for POST, a bounded form body), resolves the target inside
 * JPIPRoot, finds its index, lets libcore decide the answer, and streams
 * it: message headers and small pieces copied into heap buckets (read
 * from the request's descriptor of the image, never a mapping of it),
 * large pieces as file buckets over that descriptor (sent with sendfile
 * where httpd can, never mapped), passed down in batches, stopping as soon
 * as the client has gone.
 */
#include "mod_jpip.h"

#include <http_core.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>

#include <apr_atomic.h>
#include <apr_buckets.h>
#include <apr_strings.h>

#include "fields.h"
#include "fileid.h"
#include "jpp.h"
#include "model.h"
#include "plan.h"
#include "request.h"
#include "serve.h"
#include "sessions.h"
#include "store.h"

APLOG_USE_MODULE(jpip);

#define BATCH 256 /* messages planned at a time (as sessions.c assumes) */
/* A brigade is passed down once it holds this many bytes or messages (or
 * the answer is over): runs of rendition messages then go out as a few
 * large file ranges rather than one per batch. */
#define HOLD_BYTES (1024 * 1024)
#define HOLD_MSGS (16 * BATCH)

/* -------------------------------------------------------------- answers */

/* msg with control characters (from the request, say) written as \xNN. */
static const char *escape_controls(apr_pool_t *p, const char *msg)
{
    const unsigned char *m;
    apr_size_t n = 0;
    char *out, *o;

    for (m = (const unsigned char *)msg; *m != '\0'; m++) {
        n += *m < 0x20 || *m == 0x7f || *m == '\\' ? 4 : 1;
    }
    if (n == strlen(msg)) {
        return msg;
    }
    o = out = apr_palloc(p, n + 1);
    for (m = (const unsigned char *)msg; *m != '\0'; m++) {
        if (*m < 0x20 || *m == 0x7f || *m == '\\') {
            static const char x[] = "0123456789abcdef";

            *o++ = '\\';
            *o++ = 'x';
            *o++ = x[*m >> 4];
            *o++ = x[*m & 15];
        } else {
            *o++ = (char)*m;
        }
    }
    *o = '\0';
    return out;
}

/* Answer with status and a short text body naming the problem, framed as
 * an EOR message (jpp.h) so that a client reading any body as a JPP-stream
 * takes nothing for data. Returns DONE: the request is answered (httpd
 * treats it as OK), which callers tell apart from OK, "go on". */
static int send_text(request_rec *r, int status, const char *msg)
{
    msg = escape_controls(r->pool, msg);
    r->status = status;
    ap_set_content_type(r, "text/plain; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    if (!r->header_only) {
        unsigned char eor[JPIP_JPP_EOR_HEAD_MAX];

        ap_rwrite(eor, (int)jpip_jpp_eor_head(JPIP_EOR_NONSPECIFIED, strlen(msg) + 1, eor), r);
        ap_rvputs(r, msg, "\n", NULL);
    }
    return DONE;
}

/* Log a refused request at info level (the client's fault, not the
 * server's) and answer it. */
int jpip_refuse(request_rec *r, const char *target, int status, const char *msg)
{
    msg = escape_controls(r->pool, msg);
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, JPIPLOGNO(0001) "jpip(target=%s): %d %s",
                  target != NULL ? escape_controls(r->pool, target) : "-", status, msg);
    return send_text(r, status, msg);
}

/* The status of an error of kind code (jpip_err_status). */
static int status_of_kind(jpip_code_t code)
{
    jpip_err_t e;

    jpip_err_set(&e, code, "-");
    return jpip_err_status(&e);
}

/* msg, followed by the directive of the limit hit, if it has one. */
static const char *with_directive(request_rec *r, const char *msg, jpip_limit_t limit)
{
    const char *d = jpip_limit_directive(limit);

    return d != NULL ? apr_psprintf(r->pool, "%s (%s)", msg, d) : msg;
}

/* Refuse for err: the status of its kind and limit (jpip_err_status),
 * its message naming the limit's directive. */
static int refuse_err(request_rec *r, const char *target, const jpip_err_t *err)
{
    return jpip_refuse(r, target, jpip_err_status(err),
                       with_directive(r, apr_pstrdup(r->pool, err->msg),
                                      err->code == JPIP_E_LIMIT ? err->limit : JPIP_LIMIT_NONE));
}

/* ----------------------------------------------------------------- CORS */

static const char *const exposed_headers =
    "JPIP-cnew,JPIP-tid,JPIP-qid,JPIP-fsiz,JPIP-roff,JPIP-rsiz,JPIP-comps,JPIP-stream,"
    "JPIP-context,JPIP-roi,JPIP-layers,JPIP-metareq,JPIP-len,JPIP-quality,JPIP-mset,JPIP-pref,"
    "JPIP-handled";

/* Add the CORS headers when the request's Origin is allowed. */
void jpip_add_cors(request_rec *r, const jpip_dir_conf_t *conf, int preflight)
{
    const char *origin = apr_table_get(r->headers_in, "Origin");
    int i, ok = 0, any = 0;

    if (conf->cors_origins == NULL || origin == NULL) {
        return;
    }
    for (i = 0; i < conf->cors_origins->nelts; i++) {
        const char *o = APR_ARRAY_IDX(conf->cors_origins, i, const char *);
        any |= strcmp(o, "*") == 0;
        ok |= any || strcasecmp(o, origin) == 0;
    }
    if (!ok) {
        return;
    }
    apr_table_setn(r->headers_out, "Access-Control-Allow-Origin", any ? "*" : origin);
    if (!any) {
        apr_table_mergen(r->headers_out, "Vary", "Origin");
    }
    apr_table_setn(r->headers_out, "Access-Control-Expose-Headers", exposed_headers);
    if (preflight) {
        apr_table_setn(r->headers_out, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        apr_table_setn(r->headers_out, "Access-Control-Allow-Headers", "Content-Type");
        apr_table_setn(r->headers_out, "Access-Control-Max-Age", "86400");
    }
}

/* -------------------------------------------------------------- request */

/* Read a form-encoded POST body of at most max bytes. Each bucket is
 * copied out as it arrives: input filters may reuse their buffers. */
static jpip_code_t read_body(request_rec *r, apr_off_t max, const char **out, apr_size_t *outlen,
                             jpip_err_t *err)
{
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    const char *ctype = apr_table_get(r->headers_in, "Content-Type");
    apr_size_t cap = 1024, len = 0;
    char *buf = apr_palloc(r->pool, cap + 1);
    int seen_eos = 0;

    const char *clen = apr_table_get(r->headers_in, "Content-Length");
    apr_off_t declared = 0;

    /* refused before a byte of the body is read; the connection is then
     * closed, so that httpd does not read the body to discard it */
    if (ctype != NULL && ap_strstr_c(ctype, "x-www-form-urlencoded") == NULL) {
        r->connection->keepalive = AP_CONN_CLOSE;
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "a POST body must be application/x-www-form-urlencoded JPIP fields");
    }
    if (clen != NULL && ap_parse_strict_length(&declared, clen) && declared > max) {
        r->connection->keepalive = AP_CONN_CLOSE;
        return jpip_err_limit(err, JPIP_LIMIT_REQUEST_BODY,
                              "the request body (%" APR_OFF_T_FMT
                              " bytes) is larger than %" APR_OFF_T_FMT " bytes",
                              declared, max);
    }
    while (!seen_eos) {
        apr_status_t rv = ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES, APR_BLOCK_READ,
                                         HUGE_STRING_LEN);

        if (rv != APR_SUCCESS) {
            return jpip_err_set(err, JPIP_E_REQUEST, "the request body could not be read");
        }
        if (APR_BRIGADE_EMPTY(bb)) {
            break;
        }
        while (!APR_BRIGADE_EMPTY(bb)) {
            apr_bucket *b = APR_BRIGADE_FIRST(bb);
            const char *data;
            apr_size_t n;

            if (APR_BUCKET_IS_EOS(b)) {
                seen_eos = 1;
            } else if (!APR_BUCKET_IS_METADATA(b)) {
                if (apr_bucket_read(b, &data, &n, APR_BLOCK_READ) != APR_SUCCESS) {
                    return jpip_err_set(err, JPIP_E_REQUEST, "the request body could not be read");
                }
                if ((apr_off_t)(len + n) > max) {
                    return jpip_err_limit(
                        err, JPIP_LIMIT_REQUEST_BODY,
                        "the request body is larger than %" APR_OFF_T_FMT " bytes", max);
                }
                if (len + n > cap) {
                    char *nb;
                    while (len + n > cap) {
                        cap *= 2;
                    }
                    nb = apr_palloc(r->pool, cap + 1);
                    memcpy(nb, buf, len);
                    buf = nb;
                }
                memcpy(buf + len, data, n);
                len += n;
            }
            apr_bucket_delete(b);
        }
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    return JPIP_OK;
}

/* Collect the JPIP fields from the query string and, for POST, the body. */
static jpip_code_t read_fields(request_rec *r, const jpip_dir_conf_t *conf,
                               apr_array_header_t **fields, jpip_err_t *err)
{
    apr_array_header_t *f = NULL;
    jpip_fields_limits_t lim;

    lim.max_fields = (apr_size_t)jpip_dir_get(conf, JPIP_V_MAX_FIELDS);
    lim.max_field_bytes = (apr_size_t)jpip_dir_get(conf, JPIP_V_MAX_FIELD_LEN);
    if (r->args != NULL &&
        jpip_fields_parse(r->pool, r->args, strlen(r->args), &lim, &f, err) != JPIP_OK) {
        return err->code;
    }
    if (r->method_number == M_POST) {
        const char *body = NULL;
        apr_size_t len = 0;
        jpip_code_t rc =
            read_body(r, (apr_off_t)jpip_dir_get(conf, JPIP_V_MAX_BODY), &body, &len, err);

        if (rc != JPIP_OK) {
            return rc;
        }
        if (jpip_fields_parse(r->pool, body, len, &lim, &f, err) != JPIP_OK) {
            return err->code;
        }
    }
    if (f == NULL) {
        f = apr_array_make(r->pool, 1, sizeof(jpip_field_t));
    }
    *fields = f;
    return JPIP_OK;
}

/* The target name: the `target` field, else the URL path below the
 * location JPIPRoot was configured for. */
static const char *target_name(request_rec *r, const jpip_dir_conf_t *conf,
                               const jpip_request_t *req)
{
    apr_size_t n = conf->location != NULL ? strlen(conf->location) : 0;

    if (req->target != NULL) {
        return req->target;
    }
    if (n > 0 && strncmp(r->uri, conf->location, n) == 0) {
        return r->uri + n;
    }
    return r->uri;
}

/* A request on no channel that names no target (no field, nothing below
 * the location JPIPTarget was given for) is for the JPIPTarget image. */
static const char *bound_target(request_rec *r, const jpip_dir_conf_t *conf,
                                const jpip_request_t *req)
{
    apr_size_t t = conf->target_location != NULL ? strlen(conf->target_location) : 0;

    if (req->target == NULL && conf->target != NULL && *conf->target != '\0' &&
        strncmp(r->uri, conf->target_location, t) == 0 &&
        (r->uri[t] == '\0' || (r->uri[t] == '/' && r->uri[t + 1] == '\0'))) {
        return conf->target;
    }
    return target_name(r, conf, req);
}

/* ------------------------------------------------------------- response */

/* A file the response sends ranges of as file buckets. */
typedef struct ofile_t {
    apr_file_t *file;  /* open for the whole response */
    apr_off_t size;    /* its length */
    apr_file_t *fd;    /* this batch's descriptor, or NULL */
    apr_pool_t *pool;  /* this batch's pool, or NULL */
    apr_bucket *proto; /* a file bucket over fd that every range copies, or NULL */
} ofile_t;

typedef struct out_t {
    request_rec *r;
    apr_bucket_brigade *bb;
    ofile_t tf;             /* the target */
    jpip_file_window_t win; /* small pieces of it, read (never mapped) */
    int copy;               /* HTTP/2: copy file bytes, no file buckets */
    char *gbuf;             /* the gather buffer being filled (GATHER bytes) */
    apr_bucket *gproto;     /* a heap bucket owning gbuf; slices of it are copies */
    apr_size_t gstart;      /* gbuf[gstart, gused): copied, not yet in the brigade */
    apr_size_t gused;
    apr_size_t pending; /* bytes copied since the last pass (HTTP/2) */
    apr_status_t rv;    /* first failure passing a brigade down */
    /* the rendition (rendition.h): whole messages as ranges of it */
    ofile_t rf;                /* its file (rf.file NULL: none) */
    const unsigned char *rmap; /* its mapping */
    apr_bucket *rlast;         /* the last rendition bucket put in the brigade */
    int sendfile;              /* EnableSendfile On: file buckets; else buckets over the mapping */
} out_t;

#define GATHER (64 * 1024)      /* heap buckets of message headers and small pieces */
#define SMALL_PIECE (16 * 1024) /* pieces below this are copied, not file buckets */
#define COPY_FLUSH (256 * 1024) /* HTTP/2: pass copies down every so many bytes */
#define WINDOW (32 * 1024)      /* reads of the target for small pieces */

/* Put what was copied into the gather buffer since the last slice into the
 * brigade, as a heap bucket sharing the buffer (a copy of gproto), so that
 * other buckets can follow it and the rest of the buffer still be filled.
 * A full buffer is let go (its slices keep it alive). On HTTP/2 streams,
 * whose buckets another thread frees, a buffer is never shared by two
 * passes, and the copies are passed down once enough are pending. */
static void gather_flush(out_t *o)
{
    if (o->gbuf != NULL) {
        if (o->gused > o->gstart) {
            apr_bucket *b;

            apr_bucket_copy(o->gproto, &b);
            b->start = (apr_off_t)o->gstart;
            b->length = o->gused - o->gstart;
            APR_BRIGADE_INSERT_TAIL(o->bb, b);
            o->gstart = o->gused;
        }
        if (o->gused == GATHER || o->copy) {
            apr_bucket_destroy(o->gproto);
            o->gbuf = NULL;
            o->gproto = NULL;
        }
    }
    if (o->copy && o->pending >= COPY_FLUSH && o->rv == APR_SUCCESS) {
        o->rv = ap_pass_brigade(o->r->output_filters, o->bb);
        apr_brigade_cleanup(o->bb);
        o->pending = 0;
    }
}

/* Room for at least one byte in the gather buffer. */
static void gather_room(out_t *o)
{
    if (o->gbuf != NULL && o->gused == GATHER) {
        gather_flush(o);
    }
    if (o->gbuf == NULL) {
        o->gbuf = apr_bucket_alloc(GATHER, o->bb->bucket_alloc);
        o->gproto = apr_bucket_heap_create(o->gbuf, GATHER, apr_bucket_free, o->bb->bucket_alloc);
        o->gstart = 0;
        o->gused = 0;
    }
}

/* The response is over (or abandoned): let the gather buffer go. */
static void gather_done(out_t *o)
{
    if (o->gproto != NULL) {
        apr_bucket_destroy(o->gproto);
        o->gproto = NULL;
        o->gbuf = NULL;
    }
}

/* Copy len bytes (from memory, or read from the target at off when data is NULL)
 * into gather buffers. */
static jpip_code_t gather(out_t *o, const void *data, apr_uint64_t off, apr_uint64_t len,
                          jpip_err_t *err)
{
    const char *p = data;

    while (len > 0) {
        apr_size_t n;

        gather_room(o);
        n = GATHER - o->gused;
        if (n > len) {
            n = (apr_size_t)len;
        }
        if (p != NULL) {
            memcpy(o->gbuf + o->gused, p, n);
            p += n;
        } else {
            jpip_code_t rc = jpip_file_window_copy(&o->win, off, n, o->gbuf + o->gused, err);

            if (rc != JPIP_OK) {
                return rc;
            }
            off += n;
        }
        o->gused += n;
        o->pending += n;
        len -= n;
    }
    return JPIP_OK;
}

/* The batch's file bucket over f, made when its first range needs it. Each
 * batch's file buckets get their own descriptor in their own pool: a filter
 * that sets them aside (HTTP/2's beam, the core's deferred writes) takes
 * that descriptor over and closes it when done, which must not close the
 * one later batches use. */
static apr_bucket *batch_proto(out_t *o, ofile_t *f)
{
    if (f->proto == NULL) {
        apr_pool_create(&f->pool, o->r->pool);
        if (apr_file_dup(&f->fd, f->file, f->pool) != APR_SUCCESS) {
            apr_pool_destroy(f->pool);
            f->pool = NULL;
            return NULL;
        }
        f->proto =
            apr_bucket_file_create(f->fd, 0, (apr_size_t)f->size, f->pool, o->bb->bucket_alloc);
        if (f == &o->tf) {
            /* httpd would map the target to read it (EnableMMAP): a file
             * cut short meanwhile would then kill the process */
            apr_bucket_file_enable_mmap(f->proto, 0);
        }
    }
    return f->proto;
}

/* After the batch was passed down: its file buckets are written or set
 * aside into a filter's pool. */
static void batch_file_done(ofile_t *f)
{
    if (f->proto != NULL) {
        apr_bucket_destroy(f->proto);
        apr_pool_destroy(f->pool);
        f->proto = NULL;
        f->pool = NULL;
        f->fd = NULL;
    }
}

static void batch_done(out_t *o)
{
    batch_file_done(&o->tf);
    batch_file_done(&o->rf);
    o->rlast = NULL;
}

/* A whole message taken from the rendition: bytes [off, off+len) of it.
 * Neighbouring messages, the usual case, grow one bucket: a file bucket
 * (sendfile) under EnableSendfile On, as httpd's own handler does; else a
 * transient bucket over the mapping, written with writev straight from the
 * page cache (the core copies what it must set aside, so nothing points
 * into the mapping once the request is over). */
static jpip_code_t put_rend(out_t *o, apr_uint64_t off, apr_uint64_t len, jpip_err_t *err)
{
    apr_bucket *b = o->rlast;

    if (o->copy) {
        return gather(o, o->rmap + off, 0, len, err);
    }
    gather_flush(o);
    if (b != NULL && b == APR_BRIGADE_LAST(o->bb) && (apr_uint64_t)b->start + b->length == off &&
        b->length + len < ((apr_uint64_t)1 << 30)) {
        b->length += (apr_size_t)len;
        return JPIP_OK;
    }
    if (!o->sendfile) {
        /* start is the offset in the rendition: the bucket's data begins
         * at rmap + start */
        b = apr_bucket_transient_create((const char *)o->rmap, (apr_size_t)(off + len),
                                        o->bb->bucket_alloc);
        b->start = (apr_off_t)off;
        b->length = (apr_size_t)len;
    } else {
        if (batch_proto(o, &o->rf) == NULL) {
            return jpip_err_set(err, JPIP_E_IO, "the rendition could not be reopened");
        }
        apr_bucket_copy(o->rf.proto, &b);
        b->start = (apr_off_t)off;
        b->length = (apr_size_t)len;
    }
    APR_BRIGADE_INSERT_TAIL(o->bb, b);
    o->rlast = b;
    return JPIP_OK;
}

static jpip_code_t put_piece(void *ctx, apr_uint64_t off, apr_uint64_t len,
                             const unsigned char *synth, jpip_err_t *err)
{
    out_t *o = ctx;
    apr_bucket *b;

    if (synth != NULL) {
        return gather(o, synth, 0, len, err);
    }
    if (o->copy || len < SMALL_PIECE) {
        /* HTTP/2 hands buckets to another thread after the request may
         * have ended: no file buckets there; small pieces are copied */
        return gather(o, NULL, off, len, err);
    }
    /* zero copy for large pieces. The copies share the file bucket's data:
     * when a filter sets one aside (moving the descriptor into its own
     * pool) all of them follow. */
    if (batch_proto(o, &o->tf) == NULL) {
        return jpip_err_set(err, JPIP_E_IO, "the target could not be reopened");
    }
    gather_flush(o);
    apr_bucket_copy(o->tf.proto, &b);
    b->start = (apr_off_t)off;
    b->length = (apr_size_t)len;
    APR_BRIGADE_INSERT_TAIL(o->bb, b);
    return JPIP_OK;
}

/* Run the plan once without sending, for Content-Length. */
static apr_uint64_t plan_size(jpip_response_t *resp, jpip_msg_t *msgs, jpip_err_t *err)
{
    apr_size_t n;
    apr_uint64_t total;

    do {
        if (jpip_plan_next(resp->plan, msgs, BATCH, &n, err) != JPIP_OK) {
            return 0;
        }
    } while (n > 0);
    total = jpip_plan_bytes(resp->plan) + jpip_serve_eor_len(resp);
    jpip_plan_rewind(resp->plan);
    return total;
}

/* Stream the plan's messages and the EOR. Returns the HTTP status to
 * return from the handler (OK, or an error before anything was sent). */
static int stream_body(request_rec *r, const jpip_tgt_t *tgt, apr_file_t *rfile, const char *name,
                       jpip_response_t *resp, jpip_msg_t *msgs, jpip_chan_t *ch)
{
    conn_rec *c = r->connection;
    out_t o;
    apr_size_t n, i, nb;
    apr_uint64_t nmsg = 0, nrend = 0, hbytes = 0, hmsgs = 0;
    unsigned reason, stop = 0;
    jpip_err_t err;
    apr_status_t rv = APR_SUCCESS;

    memset(&o, 0, sizeof(o));
    o.r = r;
    o.bb = apr_brigade_create(r->pool, c->bucket_alloc);
    o.copy = c->master != NULL; /* an HTTP/2 stream */
    {
        core_dir_config *cd = ap_get_core_module_config(r->per_dir_config);
        o.sendfile = cd->enable_sendfile == ENABLE_SENDFILE_ON;
        if (resp->rend != NULL && cd->enable_mmap == ENABLE_MMAP_OFF) {
            o.sendfile = 1; /* EnableMMAP Off: file buckets of the rendition */
        }
    }
    o.tf.size = (apr_off_t)tgt->size;
    o.tf.file = jpip_targets_file(r); /* the descriptor whose identity was checked */
    jpip_file_window_init(&o.win, o.tf.file, tgt->size, apr_palloc(r->pool, WINDOW), WINDOW);
    if (resp->rend != NULL) {
        o.rmap = jpip_rend_data(resp->rend);
        o.rf.file = rfile;
        o.rf.size = (apr_off_t)jpip_rend_size(resp->rend);
    }
    for (;;) {
        int more = jpip_plan_next(resp->plan, msgs, BATCH, &n, &err) == JPIP_OK && n > 0;

        if (!more) {
            n = 0;
            if (hmsgs == 0) {
                break;
            }
        }
        for (i = 0, nb = 0; i < n && o.rv == APR_SUCCESS; i++) {
            nb += msgs[i].count;
            hbytes += msgs[i].hdr_len + msgs[i].len;
            if (msgs[i].rend_off != JPIP_REND_NONE) {
                nrend += msgs[i].count;
                if (put_rend(&o, msgs[i].rend_off, msgs[i].hdr_len + msgs[i].len, &err) !=
                        JPIP_OK &&
                    o.rv == APR_SUCCESS) {
                    o.rv = APR_EGENERAL;
                }
                continue;
            }
            if ((gather(&o, msgs[i].hdr, 0, msgs[i].hdr_len, &err) != JPIP_OK ||
                 jpip_plan_pieces(tgt->ix, &msgs[i], put_piece, &o, &err) != JPIP_OK) &&
                o.rv == APR_SUCCESS) {
                o.rv = APR_EGENERAL;
            }
        }
        if (ch != NULL) {
            jpip_chan_note(ch, msgs, n);
        }
        nmsg += nb;
        hmsgs += nb;
        if (more && o.rv == APR_SUCCESS && hbytes < HOLD_BYTES && hmsgs < HOLD_MSGS) {
            continue;
        }
        gather_flush(&o);
        if (o.rv != APR_SUCCESS && !c->aborted) {
            /* the target could not be read (it shrank, say): the answer
             * is cut short, without its last chunk, and the connection
             * closed, so that the client cannot take it for complete */
            ap_log_rerror(
                APLOG_MARK, APLOG_WARNING, 0, r,
                JPIPLOGNO(0300) "jpip(target=%s): answer cut short after %" APR_UINT64_T_FMT
                                " messages: %s",
                name, nmsg, err.msg);
            c->keepalive = AP_CONN_CLOSE;
            apr_brigade_cleanup(o.bb);
            APR_BRIGADE_INSERT_TAIL(
                o.bb, ap_bucket_error_create(HTTP_BAD_GATEWAY, NULL, r->pool, c->bucket_alloc));
            ap_pass_brigade(r->output_filters, o.bb);
        }
        rv = o.rv != APR_SUCCESS ? o.rv : ap_pass_brigade(r->output_filters, o.bb);
        apr_brigade_cleanup(o.bb);
        batch_done(&o);
        hbytes = 0;
        hmsgs = 0;
        if (rv != APR_SUCCESS || c->aborted) {
            if (ch != NULL) {
                jpip_chan_aborted(ch); /* nothing of this answer counts as held */
            }
            gather_done(&o);
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, r,
                          JPIPLOGNO(0011) "jpip(target=%s): client gone after %" APR_UINT64_T_FMT
                                          " messages",
                          name, nmsg);
            return OK;
        }
        /* only what was handed to the network is recorded */
        if ((ch != NULL && (stop = jpip_chan_passed(ch)) != 0) || !more) {
            break;
        }
    }
    if (ch != NULL && stop == 0) {
        stop = jpip_chan_finish(ch); /* 6: all was sent, but the session is over */
    }
    reason = stop != 0 ? stop : jpip_serve_eor(resp);
    jpip_store_count(JPIP_STAT_BYTES, jpip_plan_bytes(resp->plan));
    {
        apr_size_t elen;
        const unsigned char *e = jpip_serve_eor_msg(r->pool, resp, reason, &elen);

        APR_BRIGADE_INSERT_TAIL(
            o.bb, apr_bucket_heap_create((const char *)e, elen, NULL, c->bucket_alloc));
    }
    if (ch != NULL) {
        /* a session's answer is delivered once all of it was written */
        APR_BRIGADE_INSERT_TAIL(o.bb, apr_bucket_flush_create(c->bucket_alloc));
    }
    APR_BRIGADE_INSERT_TAIL(o.bb, apr_bucket_eos_create(c->bucket_alloc));
    rv = ap_pass_brigade(r->output_filters, o.bb);
    if (ch != NULL && (rv != APR_SUCCESS || c->aborted)) {
        jpip_chan_aborted(ch);
    }
    gather_done(&o);
    apr_table_setn(r->notes, "jpip-messages", apr_psprintf(r->pool, "%" APR_UINT64_T_FMT, nmsg));
    apr_table_setn(r->notes, "jpip-bytes",
                   apr_psprintf(r->pool, "%" APR_UINT64_T_FMT, jpip_plan_bytes(resp->plan)));
    apr_table_setn(r->notes, "jpip-eor", apr_psprintf(r->pool, "%u", reason));
    apr_table_setn(r->notes, "jpip-rendition-messages",
                   apr_psprintf(r->pool, "%" APR_UINT64_T_FMT, nrend));
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, r,
                  JPIPLOGNO(0012) "jpip(target=%s): %" APR_UINT64_T_FMT
                                  " messages, %" APR_UINT64_T_FMT " bytes, EOR %u (%s)",
                  name, nmsg, jpip_plan_bytes(resp->plan), reason, jpip_eor_name(reason));
    return OK;
}

static int respond(request_rec *r, const jpip_dir_conf_t *conf, const jpip_tgt_t *tgt,
                   const char *name, const jpip_request_t *req, jpip_chan_t *ch)
{
    jpip_serve_target_t st;
    const jpip_tgt_rend_t *tr;
    jpip_serve_opts_t so;
    jpip_response_t resp;
    jpip_err_t err;
    jpip_msg_t *msgs = apr_palloc(r->pool, sizeof(jpip_msg_t) * BATCH);
    jpip_code_t rc;
    int i;
    memset(&so, 0, sizeof(so));
    so.max_response = (apr_uint64_t)jpip_dir_get(conf, JPIP_V_MAX_RESPONSE);
    so.max_entries = (apr_uint64_t)jpip_dir_get(conf, JPIP_V_MAX_BINS);
    so.max_model_items = (apr_size_t)jpip_dir_get(conf, JPIP_V_MAX_MODEL_ITEMS);
    st.ix = tgt->ix;
    st.layout = tgt->layout;
    st.tid = tgt->tid;
    tr = jpip_targets_rendition(r, tgt);
    st.rend = tr != NULL ? tr->rd : NULL;
    st.rois = NULL;
    if (req->roi != NULL) {
        /* regions are read from the file only for the requests that name one */
        jpip_roi_list_t *rl = apr_pcalloc(r->pool, sizeof(*rl));

        if (jpip_roi_load(tgt->layout, tgt->ix, jpip_targets_file(r), tgt->size, r->pool, rl,
                          &err) != JPIP_OK) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                          JPIPLOGNO(0120) "jpip(target=%s): its regions of interest cannot be "
                                          "read: %s",
                          name, err.msg);
        }
        st.rois = rl;
    }
    rc = jpip_serve_prepare(r->pool, &st, req, ch != NULL ? jpip_chan_model(ch) : NULL, &so, &resp,
                            &err);
    if (rc != JPIP_OK) {
        return refuse_err(r, name, &err);
    }
    for (i = 0; i < resp.headers->nelts; i++) {
        const jpip_header_t *h = &APR_ARRAY_IDX(resp.headers, i, jpip_header_t);
        apr_table_setn(r->headers_out, h->name, h->value);
    }
    if (resp.status != 200) {
        return jpip_refuse(r, name, resp.status, with_directive(r, resp.error, resp.limit));
    }
    ap_set_content_type(r, resp.content_type);
    if (ch != NULL) {
        /* the answer depends on the session's cache model */
        apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
        if (req->mset != NULL) {
            apr_table_setn(r->headers_out, "JPIP-mset", jpip_ranges_format(r->pool, req->mset));
        }
    }
    if (r->proto_num < HTTP_VERSION(1, 1) || conf->content_length == JPIP_CL_ALWAYS) {
        /* HTTP/1.0 cannot be chunked, and some desktop clients want a
         * length: the plan knows the exact size before the first byte */
        ap_set_content_length(r, (apr_off_t)plan_size(&resp, msgs, &err));
    }
    if (r->header_only) {
        return OK;
    }
    return stream_body(r, tgt, tr != NULL ? tr->file : NULL, name, &resp, msgs, ch);
}

int jpip_handle(request_rec *r)
{
    const jpip_dir_conf_t *conf;
    apr_array_header_t *fields = NULL;
    jpip_request_t req;
    jpip_target_t target;
    const jpip_tgt_t *tgt;
    jpip_err_t err;
    const char *name = NULL;
    jpip_chan_t *ch = NULL;
    int st;

    if (r->handler == NULL || strcmp(r->handler, "jpip") != 0) {
        return DECLINED;
    }
    conf = ap_get_module_config(r->per_dir_config, &jpip_module);
    r->allowed =
        (AP_METHOD_BIT << M_GET) | (AP_METHOD_BIT << M_POST) | (AP_METHOD_BIT << M_OPTIONS);
    if (r->method_number == M_OPTIONS) {
        apr_table_setn(r->headers_out, "Allow", "GET, HEAD, POST, OPTIONS");
        jpip_add_cors(r, conf, 1);
        r->status = HTTP_NO_CONTENT;
        return OK;
    }
    if (r->method_number != M_GET && r->method_number != M_POST) {
        apr_table_setn(r->headers_out, "Allow", "GET, HEAD, POST, OPTIONS");
        return send_text(r, HTTP_METHOD_NOT_ALLOWED,
                         apr_psprintf(r->pool, "method %s is not allowed: JPIP uses GET or POST",
                                      ap_escape_html(r->pool, r->method)));
    }
    jpip_add_cors(r, conf, 0);
    if (conf->root == NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      JPIPLOGNO(0002) "SetHandler jpip at %s without JPIPRoot", r->uri);
        return send_text(r, status_of_kind(JPIP_E_INTERNAL),
                         "this JPIP location has no JPIPRoot configured");
    }
    if ((st = jpip_viewer_handle(r)) != DECLINED) {
        return st; /* a browser's page or a viewer asset (viewer.c) */
    }
    jpip_err_clear(&err);
    if (read_fields(r, conf, &fields, &err) != JPIP_OK ||
        jpip_request_parse(r->pool, fields, &req, &err) != JPIP_OK) {
        return refuse_err(r, NULL, &err);
    }
    jpip_store_count(JPIP_STAT_REQUESTS, 1);
    if (req.cid != NULL) {
        if (!jpip_store_ready()) {
            return jpip_refuse(r, NULL, HTTP_SERVICE_UNAVAILABLE,
                               apr_psprintf(r->pool, "channel %s does not exist or has expired",
                                            ap_escape_html(r->pool, req.cid)));
        }
        st = jpip_chan_target(r, conf, &req, target_name(r, conf, &req), &name);
        if (st != OK) {
            return st;
        }
    } else {
        name = bound_target(r, conf, &req);
    }
    if (jpip_target_resolve(r->pool, conf->root, name, conf->allow_outside_links == 1, &target,
                            &err) != JPIP_OK) {
        return refuse_err(r, name, &err);
    }
    if (jpip_targets_get(r, &target, &tgt, &err) != JPIP_OK) {
        const char *what = err.code == JPIP_E_LIMIT    ? "cannot be indexed within the limits"
                           : err.code == JPIP_E_FORMAT ? "is not a servable JPEG 2000 file"
                                                       : "cannot be served";

        if (err.code == JPIP_E_FORBIDDEN || err.code == JPIP_E_NOTFOUND) {
            return jpip_refuse(r, target.name, jpip_err_status(&err),
                               apr_psprintf(r->pool, "%s: %s", target.name, err.msg));
        }
        return jpip_refuse(
            r, target.name, jpip_err_status(&err),
            with_directive(r, apr_psprintf(r->pool, "%s %s: %s", target.name, what, err.msg),
                           err.code == JPIP_E_LIMIT ? err.limit : JPIP_LIMIT_NONE));
    }
    if ((req.cid == NULL && !(req.cnew & JPIP_TRANSPORT_HTTP)) || !jpip_store_ready()) {
        return respond(r, conf, tgt, target.name, &req, NULL); /* stateless */
    }
    /* only http is granted; other transports offered alone get a
     * stateless answer (no JPIP-cnew), as T.808 allows */
    st = jpip_chan_begin(r, conf, &req, tgt, target.name,
                         req.type_raw != NULL && !(req.type & (JPIP_TYPE_JPP | JPIP_TYPE_JPP_EXT)),
                         &ch);
    if (st != OK) {
        return st;
    }
    st = respond(r, conf, tgt, target.name, &req, ch);
    jpip_chan_end(ch, &req);
    return st;
}
