/* mod_jpip: a request on a session channel, the httpd side.
 *
 * Turns the store's outcomes (libcore/sstore.h) into HTTP answers and
 * keeps the list of messages an answer put in the brigade: they are
 * recorded in the session once handed to the network, in stretches long
 * enough that merging stays linear in the answer, and count as delivered
 * only if the answer completes (sstore.h).
 */
#include "sessions.h"
#include "store.h"

#include <http_log.h>
#include <http_protocol.h>

#include <apr_atomic.h>
#include <apr_strings.h>

#include "serve.h"
#include "sstore.h"

APLOG_USE_MODULE(jpip);

#define BATCH 256              /* messages the handler plans at a time */
#define HOLD_MSGS (16 * BATCH) /* messages it holds before passing a brigade */
#define DOWN_LOG_EVERY apr_time_from_sec(10)
/* a slow answer records (and, socache, renews its claim) at least this
 * often, well within the store's lease */
#define SYNC_EVERY apr_time_from_sec(5)
#define RETRY_AFTER "5"

struct jpip_chan_t {
    jpip_sclaim_t *claim;
    /* messages not yet recorded: pending[0, npassed) were handed to the
     * network, the rest are in the brigade being filled. Recorded once
     * flush_at were handed over (at least a few batches, and at least half
     * the model's runs, so that merging them costs O(messages) over the
     * answer) and when the answer ends. */
    jpip_model_sent_t *pending;
    apr_size_t npending, npassed, flush_at;
    apr_uint64_t sent;   /* message bytes handed to the network, not yet recorded */
    apr_uint64_t unsent; /* ... and of messages noted, not yet handed */
    apr_time_t synced;   /* when it last recorded */
    int aborted;
};

/* The store cannot be reached: 503 naming it, with Retry-After; the log
 * says so once per interval per process, not per request. */
static int store_down(request_rec *r, const char *name, const jpip_err_t *err)
{
    static volatile apr_uint64_t last;
    apr_uint64_t now = (apr_uint64_t)apr_time_now(), was = apr_atomic_read64(&last);

    if (now - was > (apr_uint64_t)DOWN_LOG_EVERY && apr_atomic_cas64(&last, now, was) == was) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      JPIPLOGNO(0504) "%s (said once every %d s while it lasts)", err->msg,
                      (int)apr_time_sec(DOWN_LOG_EVERY));
    }
    apr_table_setn(r->err_headers_out, "Retry-After", RETRY_AFTER);
    apr_table_setn(r->headers_out, "Retry-After", RETRY_AFTER);
    return jpip_refuse(
        r, name, HTTP_SERVICE_UNAVAILABLE,
        apr_psprintf(r->pool, "%s; requests without a session still work", err->msg));
}

static int session_gone(request_rec *r, const char *name, const char *cid)
{
    return jpip_refuse(r, name, HTTP_SERVICE_UNAVAILABLE,
                       apr_psprintf(r->pool, "channel %s does not exist or has expired",
                                    ap_escape_html(r->pool, cid)));
}

int jpip_chan_target(request_rec *r, const jpip_dir_conf_t *conf, const jpip_request_t *req,
                     const char *asked, const char **name)
{
    jpip_target_t t;
    jpip_err_t err;

    switch (jpip_sstore_target(jpip_store_sessions(), req->cid, r->pool, name, &err)) {
    case JPIP_SSTORE_OK:
        break;
    case JPIP_SSTORE_DOWN:
        return store_down(r, NULL, &err);
    default:
        return session_gone(r, NULL, req->cid);
    }
    /* naming the same target again is allowed; another one is not */
    if (asked != NULL && *asked != '\0' && strcmp(asked, "/") != 0 &&
        jpip_target_resolve(r->pool, conf->root, asked, conf->allow_outside_links == 1, &t, &err) !=
            JPIP_OK) {
        /* a deleted target is gone (404 naming it), not another one */
        return jpip_refuse(r, *name, jpip_err_status(&err), err.msg);
    }
    if (asked != NULL && *asked != '\0' && strcmp(asked, "/") != 0 && strcmp(t.name, *name) != 0) {
        return jpip_refuse(r, *name, HTTP_CONFLICT,
                           apr_psprintf(r->pool, "channel %s belongs to another target",
                                        ap_escape_html(r->pool, req->cid)));
    }
    return OK;
}

/* The path clients send later requests to (JPIP-cnew path=). */
static const char *channel_path(request_rec *r, const jpip_dir_conf_t *conf)
{
    const char *loc = conf->location != NULL ? conf->location : r->uri;

    while (*loc == '/') {
        loc++;
    }
    return *loc != '\0' ? loc : "/";
}

/* cnew: open a channel, in a new session or (with cid) in the channel's
 * session, and say so in JPIP-cnew. */
static int channel_open(request_rec *r, const jpip_dir_conf_t *conf, const jpip_request_t *req,
                        const jpip_tgt_t *tgt, const char *name, int jpt, const char **cid)
{
    char out[JPIP_CID_LEN + 1], group[48];
    jpip_err_t err;

    jpip_store_client_group(r->useragent_ip, group);
    switch (
        jpip_sstore_open(jpip_store_sessions(), req->cid, name, tgt->tid, group, jpt, out, &err)) {
    case JPIP_SSTORE_OK:
        break;
    case JPIP_SSTORE_GONE:
        return session_gone(r, name, req->cid != NULL ? req->cid : "-");
    case JPIP_SSTORE_DOWN:
        return store_down(r, name, &err);
    default:
        return jpip_refuse(r, name, HTTP_SERVICE_UNAVAILABLE, err.msg);
    }
    *cid = apr_pstrdup(r->pool, out);
    apr_table_setn(
        r->headers_out, "JPIP-cnew",
        apr_psprintf(r->pool, "cid=%s,path=%s,transport=http", *cid, channel_path(r, conf)));
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                  JPIPLOGNO(0013) "jpip(cid=%s,target=%s): channel opened", *cid, name);
    return OK;
}

int jpip_chan_begin(request_rec *r, const jpip_dir_conf_t *conf, const jpip_request_t *req,
                    const jpip_tgt_t *tgt, const char *name, int jpt, jpip_chan_t **out)
{
    apr_size_t max_items = (apr_size_t)jpip_dir_get(conf, JPIP_V_MAX_MODEL_ITEMS);
    jpip_chan_t *ch = apr_pcalloc(r->pool, sizeof(*ch));
    jpip_model_spec_t *model = NULL, *need = NULL;
    jpip_model_resolver_t res;
    const char *cid = req->cid;
    jpip_err_t err;
    int st;

    /* the fields are parsed before the session is claimed */
    if ((req->model != NULL &&
         jpip_model_parse(r->pool, req->model, 0, max_items, &model, &err) != JPIP_OK) ||
        (req->need != NULL &&
         jpip_model_parse(r->pool, req->need, 1, max_items, &need, &err) != JPIP_OK)) {
        const char *d = err.code == JPIP_E_LIMIT ? jpip_limit_directive(err.limit) : NULL;

        return jpip_refuse(r, name, jpip_err_status(&err),
                           d != NULL ? apr_psprintf(r->pool, "%s (%s)", err.msg, d) : err.msg);
    }
    if (req->cnew & JPIP_TRANSPORT_HTTP) {
        st = channel_open(r, conf, req, tgt, name, jpt, &cid);
        if (st != OK) {
            return st;
        }
    }
    jpip_serve_resolver(tgt->ix, &res);
    switch (jpip_sstore_claim(jpip_store_sessions(), r->pool, cid, req->qid, req->wait, tgt->tid,
                              model, need, &res, &ch->claim, &err)) {
    case JPIP_SSTORE_OK:
        break;
    case JPIP_SSTORE_GONE:
        return session_gone(r, name, cid);
    case JPIP_SSTORE_PREEMPTED:
        /* a newer request came while this one waited: it wins */
        r->status = HTTP_ACCEPTED;
        apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
        return DONE;
    case JPIP_SSTORE_DOWN:
        return store_down(r, name, &err);
    case JPIP_SSTORE_BUSY:
        return jpip_refuse(r, name, HTTP_SERVICE_UNAVAILABLE, err.msg);
    default:
        return jpip_refuse(r, name, HTTP_INTERNAL_SERVER_ERROR, err.msg);
    }
    if (ch->claim->reclaimed) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      JPIPLOGNO(0025) "jpip(cid=%s,target=%s): the process that was "
                                      "answering on this session is gone; the session's "
                                      "cache model starts again empty",
                      cid, name);
    }
    if (ch->claim->tid_changed) {
        apr_table_setn(r->headers_out, "JPIP-tid", tgt->tid);
    }
    ch->flush_at = jpip_model_runs(jpip_sclaim_model(ch->claim)) / 2;
    if (ch->flush_at < 4 * BATCH) {
        ch->flush_at = 4 * BATCH;
    }
    ch->pending =
        apr_palloc(r->pool, sizeof(jpip_model_sent_t) * (ch->flush_at + HOLD_MSGS + BATCH));
    ch->synced = apr_time_now();
    *out = ch;
    return OK;
}

const jpip_model_t *jpip_chan_model(const jpip_chan_t *ch)
{
    return jpip_sclaim_model(ch->claim);
}

void jpip_chan_note(jpip_chan_t *ch, const jpip_msg_t *msgs, apr_size_t n)
{
    apr_size_t i;
    apr_uint32_t k;

    for (i = 0; i < n; i++) {
        for (k = 0; k < msgs[i].count; k++) {
            jpip_model_sent_t *p = &ch->pending[ch->npending++];

            p->cls = msgs[i].cls;
            p->csn = msgs[i].csn;
            p->id = msgs[i].id + k * msgs[i].step;
            p->off = msgs[i].off;
            p->len = msgs[i].count > 1 ? msgs[i].bin[k].len : msgs[i].len;
            p->complete = msgs[i].complete;
            p->layers = msgs[i].count > 1 ? 0 : msgs[i].layers;
        }
        ch->unsent += msgs[i].hdr_len + msgs[i].len;
    }
}

/* Record what was handed over; publish: write it to the store now (the
 * answer goes on; at its end the release writes it). Returns the EOR
 * reason to stop with, or 0. */
static unsigned chan_flush(jpip_chan_t *ch, int publish)
{
    jpip_err_t err;
    unsigned stop = 0;

    if (ch->npassed > 0 || ch->sent > 0) {
        if (jpip_sclaim_record(ch->claim, ch->pending, ch->npassed, ch->sent, &err) !=
            JPIP_SSTORE_OK) {
            stop = JPIP_EOR_SESSION_LIMIT; /* closed meanwhile, or the model is full */
        }
        /* published (socache) as the answer goes: the claim stays alive;
         * it counts as delivered only when the answer completes */
        if (publish) {
            (void)jpip_sclaim_sync(ch->claim, &err);
        }
    }
    ch->synced = apr_time_now();
    memmove(ch->pending, ch->pending + ch->npassed,
            sizeof(*ch->pending) * (ch->npending - ch->npassed));
    ch->npending -= ch->npassed;
    ch->npassed = 0;
    ch->sent = 0;
    if (stop == 0 && jpip_sclaim_closed(ch->claim)) {
        stop = JPIP_EOR_SESSION_LIMIT;
    }
    if (stop == 0 && jpip_sclaim_preempted(ch->claim)) {
        stop = JPIP_EOR_WINDOW_CHANGE; /* pre-empted by a newer request */
    }
    return stop;
}

unsigned jpip_chan_passed(jpip_chan_t *ch)
{
    ch->npassed = ch->npending;
    ch->sent += ch->unsent;
    ch->unsent = 0;
    if (ch->npassed >= ch->flush_at || jpip_sclaim_preempted(ch->claim) ||
        apr_time_now() - ch->synced > SYNC_EVERY) {
        return chan_flush(ch, 1);
    }
    return 0;
}

unsigned jpip_chan_finish(jpip_chan_t *ch)
{
    ch->npassed = ch->npending;
    ch->sent += ch->unsent;
    ch->unsent = 0;
    return ch->npassed > 0 && chan_flush(ch, 0) == JPIP_EOR_SESSION_LIMIT ? JPIP_EOR_SESSION_LIMIT
                                                                          : 0;
}

void jpip_chan_aborted(jpip_chan_t *ch)
{
    ch->aborted = 1;
}

void jpip_chan_end(jpip_chan_t *ch, const jpip_request_t *req)
{
    const char **names = NULL;
    int n = 0;

    if (req->cclose != NULL) {
        n = req->cclose->nelts;
        names = (const char **)(void *)req->cclose->elts;
    }
    jpip_sstore_release(ch->claim, !ch->aborted, names, n);
}
