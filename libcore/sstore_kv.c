/* mod_jpip: the session store in a key-value cache shared by several hosts.
 *
 * Entries (every one carries its expiry: the idle timeout from its last
 * write, so sessions expire cluster-wide, and the cache's own eviction
 * policy evicts them):
 *
 *   jpip-s:<22 chars> a session record: session.h's header, then its model
 *                     (the runs in use only); read back with every check
 *                     jpip_session_check makes, since a cache is untrusted.
 *   jpip-c:<group>    the sessions a client group holds (per-client limit):
 *                     up to max_per_client session keys with expiries.
 *   jpip-p:<22 chars> the turns of requests waiting for a busy session
 *                     (pre-emption), so that waiting never writes the record.
 *
 * A channel id is 192 random bits (session.h): its first 22 characters
 * (132 bits) name the session's entry, shared by the session's channels;
 * the record holds each channel's whole id, which must match. Nothing
 * in an id depends on the host that made it.
 *
 * The cache has no compare-and-swap, so two requests (two hosts) may both
 * read a record and both write it. The design makes a lost update cost
 * resends only:
 *   - a request claims the session by writing a lease (busy, an expiry,
 *     a random writer tag) over the record it read; it works on a private
 *     copy. Two requests that read the record before either wrote may both
 *     claim it (reading the lease back would not prevent that: the other
 *     write may land after the read-back), so a claim is only a courtesy
 *     that keeps requests of one session in turn; what keeps the model
 *     right is the version check at write-back:
 *   - every write of the model bumps the record's version. A request writes
 *     its model back only over the version it read; if the version moved
 *     meanwhile, its own additions are dropped (counted as lost updates)
 *     and the stored model is kept: a model never grows from a stale write;
 *   - what the client discarded (model=-, need, a new tid, a reclaim) is
 *     written before anything is sent; when such a request finds the
 *     version moved at write-back, it empties the stored model (the safe
 *     side) rather than risk a discard being overwritten.
 * So the stored model is always a subset of what was delivered: the worst
 * a race does is make a later answer resend bytes.
 */
#include "sstore.h"

#include <string.h>
#include <unistd.h>

#include <apr_atomic.h>
#include <apr_general.h>
#include <apr_strings.h>

#define KEY_HEX 22 /* characters of a channel id that name the session: 132 bits */
#define CLIENT_MAX 1024
#define BACKOFF_MIN apr_time_from_msec(2)
#define BACKOFF_MAX apr_time_from_msec(64)
#define POLL_EVERY apr_time_from_msec(50) /* pre-emption checks while streaming */
#define LAST_READ "jpip-kv-last-read"     /* pool userdata: a record this request read */
#define LAST_READ_CID "jpip-kv-last-cid"

typedef struct kvs_t {
    jpip_kv_t kv;
} kvs_t;

typedef struct kv_claim_t {
    apr_uint64_t version;      /* the model version this request last wrote or read */
    apr_uint64_t synced_bytes; /* of c->sent, already added to the stored record */
    unsigned char *scratch;    /* record_bytes, for reads */
    apr_time_t polled;
    apr_time_t claimed;
    int preempted;
} kv_claim_t;

typedef struct client_entry_t {
    char key[KEY_HEX + 1];
    char pad[7];
    apr_time_t expiry;
} client_entry_t;

static kvs_t *impl(jpip_sstore_t *st)
{
    return st->impl;
}

static const char *skey(apr_pool_t *p, const char *cid)
{
    return apr_psprintf(p, "jpip-s:%.*s", KEY_HEX, cid);
}

static apr_uint64_t random64(void)
{
    apr_uint64_t v = 0;

    while (v == 0) {
        if (apr_generate_random_bytes((unsigned char *)&v, sizeof(v)) != APR_SUCCESS) {
            v = (apr_uint64_t)apr_time_now() ^ ((apr_uint64_t)getpid() << 40);
        }
    }
    return v;
}

static jpip_sstore_rc_t down(jpip_sstore_t *st, apr_status_t rv, jpip_err_t *err)
{
    char buf[120];

    jpip_err_set(err, JPIP_E_IO, "the session store (%s) cannot be reached: %s", impl(st)->kv.name,
                 apr_strerror(rv, buf, sizeof(buf)));
    return JPIP_SSTORE_DOWN;
}

/* Read the record under key into buf (record_bytes), checked. */
static jpip_sstore_rc_t load(jpip_sstore_t *st, const char *key, unsigned char *buf, apr_pool_t *p,
                             jpip_err_t *err)
{
    kvs_t *k = impl(st);
    apr_size_t cap = st->conf.record_bytes, len = 0, off = jpip_session_bytes_for(0);
    unsigned char *data = apr_palloc(p, cap);
    jpip_session_t *s = (jpip_session_t *)(void *)buf;
    jpip_model_t *m;
    apr_status_t rv = k->kv.retrieve(k->kv.ctx, key, data, cap, &len, p);

    if (APR_STATUS_IS_NOTFOUND(rv)) {
        /* socache providers answer "not found" for a failure too (redis,
         * memcache): a write tells an absent entry from an absent store */
        rv = k->kv.store(k->kv.ctx, JPIP_KV_PROBE_KEY, (const unsigned char *)"1", 1,
                         apr_time_now() + apr_time_from_sec(60), p);
        if (rv != APR_SUCCESS) {
            return down(st, rv, err);
        }
        /* the store answers: read once more, in case the first read failed
         * on a connection that broke (the provider has a fresh one now) */
        rv = k->kv.retrieve(k->kv.ctx, key, data, cap, &len, p);
        if (APR_STATUS_IS_NOTFOUND(rv)) {
            jpip_err_set(err, JPIP_E_NOTFOUND, "no such session");
            return JPIP_SSTORE_GONE;
        }
    }
    if (rv != APR_SUCCESS) {
        return down(st, rv, err);
    }
    if (len < off || ((const jpip_session_t *)(const void *)data)->model_off != off) {
        jpip_err_set(err, JPIP_E_FORMAT, "damaged session record in %s", k->kv.name);
        return JPIP_SSTORE_GONE;
    }
    memcpy(buf, data, off);
    s->size = (apr_uint32_t)cap;
    s->model_cap = (apr_uint32_t)(cap - off);
    if (jpip_model_load(buf + off, cap - off, data + off, len - off, &m, err) != JPIP_OK ||
        jpip_session_check(s, cap, err) != JPIP_OK) {
        jpip_err_set(err, JPIP_E_FORMAT, "damaged session record in %s", k->kv.name);
        return JPIP_SSTORE_GONE;
    }
    return JPIP_SSTORE_OK;
}

static jpip_sstore_rc_t put(jpip_sstore_t *st, const char *key, jpip_session_t *s, apr_pool_t *p,
                            jpip_err_t *err)
{
    kvs_t *k = impl(st);
    apr_size_t len = s->model_off + jpip_model_size(jpip_session_model(s));
    apr_status_t rv = k->kv.store(k->kv.ctx, key, (const unsigned char *)s, len,
                                  apr_time_now() + st->conf.idle, p);

    return rv == APR_SUCCESS ? JPIP_SSTORE_OK : down(st, rv, err);
}

static jpip_sstore_rc_t kv_target(jpip_sstore_t *st, const char *cid, apr_pool_t *p,
                                  const char **target, jpip_err_t *err)
{
    unsigned char *buf = apr_palloc(p, st->conf.record_bytes);
    jpip_session_t *s = (jpip_session_t *)(void *)buf;
    jpip_sstore_rc_t rc = load(st, skey(p, cid), buf, p, err);

    if (rc == JPIP_SSTORE_OK && (s->closed || jpip_session_channel(s, cid) == NULL)) {
        rc = JPIP_SSTORE_GONE;
    }
    if (rc == JPIP_SSTORE_GONE) {
        jpip_err_set(err, JPIP_E_NOTFOUND, "channel %s does not exist or has expired", cid);
    } else if (rc == JPIP_SSTORE_OK) {
        *target = apr_pstrdup(p, s->target);
        /* the claim that follows in this request starts from this read */
        apr_pool_userdata_setn(buf, LAST_READ, NULL, p);
        apr_pool_userdata_setn(apr_pstrdup(p, cid), LAST_READ_CID, NULL, p);
    }
    return rc;
}

/* Make room for one more session of client in its list; FULL if it holds
 * its share. The list is written back with the new session's key. */
static jpip_sstore_rc_t client_add(jpip_sstore_t *st, const char *client, const char *key,
                                   apr_pool_t *p, jpip_err_t *err)
{
    kvs_t *k = impl(st);
    int max = st->conf.max_per_client > CLIENT_MAX ? CLIENT_MAX : st->conf.max_per_client;
    apr_size_t cap = sizeof(client_entry_t) * (apr_size_t)(max + 1), len = 0, i, n, kept = 0;
    client_entry_t *e = apr_pcalloc(p, cap);
    const char *ckey = apr_pstrcat(p, "jpip-c:", client, NULL);
    apr_time_t now = apr_time_now();
    apr_status_t rv;

    if (max <= 0) {
        return JPIP_SSTORE_OK;
    }
    rv = k->kv.retrieve(k->kv.ctx, ckey, (unsigned char *)e, cap, &len, p);
    if (rv != APR_SUCCESS && !APR_STATUS_IS_NOTFOUND(rv)) {
        return down(st, rv, err);
    }
    n = rv == APR_SUCCESS ? len / sizeof(client_entry_t) : 0;
    for (i = 0; i < n && i < (apr_size_t)max; i++) {
        e[i].key[KEY_HEX] = '\0';
        e[kept++] = e[i];
    }
    {
        /* an entry at the limit, or past its expiry (the session may have
         * been used since), is kept only if its session still exists */
        unsigned char *buf = apr_palloc(p, st->conf.record_bytes);
        apr_size_t live = 0;

        for (i = 0; i < kept; i++) {
            jpip_err_t e2;
            jpip_sstore_rc_t rc;

            if (kept < (apr_size_t)max && e[i].expiry > now) {
                e[live++] = e[i];
                continue;
            }
            rc = load(st, apr_pstrcat(p, "jpip-s:", e[i].key, NULL), buf, p, &e2);
            if (rc == JPIP_SSTORE_DOWN) {
                *err = e2;
                return rc;
            }
            if (rc == JPIP_SSTORE_OK && !((jpip_session_t *)(void *)buf)->closed) {
                e[i].expiry = ((jpip_session_t *)(void *)buf)->used + st->conf.idle;
                e[live++] = e[i];
            }
        }
        kept = live;
    }
    if (kept >= (apr_size_t)max) {
        jpip_sstore_count(st, &st->counters->refused, 1);
        jpip_err_set(err, JPIP_E_LIMIT,
                     "this client already has %d sessions (JPIPMaxSessionsPerClient); close "
                     "some with cclose",
                     (int)kept);
        return JPIP_SSTORE_FULL;
    }
    memset(&e[kept], 0, sizeof(e[kept]));
    apr_cpystrn(e[kept].key, key, sizeof(e[kept].key));
    e[kept].expiry = now + st->conf.idle;
    kept++;
    rv = k->kv.store(k->kv.ctx, ckey, (const unsigned char *)e, kept * sizeof(client_entry_t),
                     now + st->conf.idle, p);
    return rv == APR_SUCCESS ? JPIP_SSTORE_OK : down(st, rv, err);
}

static jpip_sstore_rc_t kv_open(jpip_sstore_t *st, const char *cid, const char *target,
                                const char *tid, const char *client, int jpt,
                                char out[JPIP_CID_LEN + 1], jpip_err_t *err)
{
    apr_pool_t *p;
    unsigned char *buf;
    jpip_session_t *s = NULL;
    jpip_channel_t *c;
    jpip_sstore_rc_t rc = JPIP_SSTORE_OK;
    const char *key;

    if (jpip_session_new_cid(out, err) != JPIP_OK) {
        return JPIP_SSTORE_ERROR;
    }
    if (apr_pool_create(&p, NULL) != APR_SUCCESS) {
        jpip_err_set(err, JPIP_E_NOMEM, "out of memory");
        return JPIP_SSTORE_ERROR;
    }
    buf = apr_palloc(p, st->conf.record_bytes);
    if (cid != NULL) {
        memcpy(out, cid, KEY_HEX); /* a channel of the same session */
        apr_time_t until = apr_time_now() + st->conf.qid_wait, backoff = BACKOFF_MIN;

        key = skey(p, cid);
        s = (jpip_session_t *)(void *)buf;
        /* the record is written here, so not over a busy one if that can be
         * helped: its owner's release would be overwritten (the claim
         * brought back until its lease lapses) */
        while ((rc = load(st, key, buf, p, err)) == JPIP_SSTORE_OK && s->busy != 0 &&
               s->lease > apr_time_now() && apr_time_now() < until) {
            apr_sleep(backoff);
            backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
        }
        if (rc == JPIP_SSTORE_OK && (s->closed || jpip_session_channel(s, cid) == NULL)) {
            rc = JPIP_SSTORE_GONE;
        }
        if (rc == JPIP_SSTORE_GONE) {
            jpip_err_set(err, JPIP_E_NOTFOUND, "channel %s does not exist or has expired", cid);
        }
    } else {
        key = skey(p, out);
        rc = client_add(st, client, key + strlen("jpip-s:"), p, err);
        if (rc == JPIP_SSTORE_OK && jpip_session_init(buf, st->conf.record_bytes, target, tid,
                                                      apr_time_now(), &s, err) != JPIP_OK) {
            rc = JPIP_SSTORE_ERROR;
        }
        if (rc == JPIP_SSTORE_OK) {
            apr_cpystrn(s->client, client, sizeof(s->client));
        }
    }
    if (rc == JPIP_SSTORE_OK && jpip_session_channel_open(s, out, jpt, &c, err) != JPIP_OK) {
        rc = JPIP_SSTORE_FULL;
    }
    if (rc == JPIP_SSTORE_OK) {
        s->writer = random64();
        rc = put(st, key, s, p, err);
        if (rc == JPIP_SSTORE_OK && cid == NULL) {
            jpip_sstore_count(st, &st->counters->created, 1);
        }
    }
    apr_pool_destroy(p);
    return rc;
}

/* The turns on a session while it is busy, an entry of its own
 * (jpip-p:<key>): the newest request's seq, and the newest that pre-empts
 * (without wait=yes). */
typedef struct turn_t {
    apr_uint64_t seq, preempt;
    apr_time_t when; /* of the last write: an owner heeds only those after its claim */
} turn_t;

static const char *tkey(apr_pool_t *p, const char *cid)
{
    return apr_psprintf(p, "jpip-p:%.*s", KEY_HEX, cid);
}

static jpip_sstore_rc_t turn_get(jpip_sstore_t *st, const char *cid, apr_pool_t *p, turn_t *t,
                                 jpip_err_t *err)
{
    kvs_t *k = impl(st);
    apr_size_t len = 0;
    apr_status_t rv =
        k->kv.retrieve(k->kv.ctx, tkey(p, cid), (unsigned char *)t, sizeof(*t), &len, p);

    if (rv != APR_SUCCESS && !APR_STATUS_IS_NOTFOUND(rv)) {
        return down(st, rv, err);
    }
    if (rv != APR_SUCCESS || len != sizeof(*t)) {
        memset(t, 0, sizeof(*t));
    }
    return JPIP_SSTORE_OK;
}

static jpip_sstore_rc_t turn_set(jpip_sstore_t *st, const char *cid, const turn_t *t, apr_pool_t *p)
{
    kvs_t *k = impl(st);
    turn_t w = *t;

    w.when = apr_time_now();
    return k->kv.store(k->kv.ctx, tkey(p, cid), (const unsigned char *)&w, sizeof(w),
                       apr_time_now() + st->conf.idle, p) == APR_SUCCESS
               ? JPIP_SSTORE_OK
               : JPIP_SSTORE_DOWN;
}

static jpip_sstore_rc_t kv_claim(jpip_sstore_t *st, jpip_sclaim_t *cl, apr_int64_t qid, int wait,
                                 jpip_err_t *err)
{
    apr_pool_t *p = cl->pool;
    const char *key = skey(p, cl->cid);
    unsigned char *buf;
    jpip_session_t *s;
    kv_claim_t *kc = apr_pcalloc(p, sizeof(*kc));
    apr_time_t start = apr_time_now(), backoff = BACKOFF_MIN;
    int first = 1, turn_seen = 0;
    void *last = NULL, *last_cid = NULL;

    kc->scratch = apr_palloc(p, st->conf.record_bytes);
    apr_pool_userdata_get(&last, LAST_READ, p);
    apr_pool_userdata_get(&last_cid, LAST_READ_CID, p);
    if (last == NULL || last_cid == NULL || strcmp(last_cid, cl->cid) != 0) {
        last = NULL;
    }
    /* used once: a later claim in this pool reads afresh */
    apr_pool_userdata_setn(NULL, LAST_READ, NULL, p);
    buf = last != NULL ? last : apr_palloc(p, st->conf.record_bytes);
    s = (jpip_session_t *)(void *)buf;
    for (;;) {
        /* the first look may use what this request read a moment ago (the
         * channel's target): a claim is a courtesy, write-back decides */
        jpip_sstore_rc_t rc = first && last != NULL ? JPIP_SSTORE_OK : load(st, key, buf, p, err);
        jpip_channel_t *c;
        apr_time_t now = apr_time_now();
        turn_t turn;

        if (rc == JPIP_SSTORE_OK && (s->closed || (c = jpip_session_channel(s, cl->cid)) == NULL)) {
            rc = JPIP_SSTORE_GONE;
        }
        if (rc != JPIP_SSTORE_OK) {
            if (rc == JPIP_SSTORE_GONE) {
                jpip_err_set(err, JPIP_E_NOTFOUND, "channel %s does not exist or has expired",
                             cl->cid);
            }
            return rc;
        }
        if (first) {
            first = 0;
            cl->seq = (s->seq > cl->seq ? s->seq : cl->seq) + 1;
        }
        if (s->busy != 0 && s->lease < now) {
            /* the claim lapsed: its owner died, or its host lost the store */
            jpip_session_model_reset(s);
            s->busy = 0;
            s->version++;
            cl->reclaimed = 1;
            jpip_sstore_count(st, &st->counters->reclaimed, 1);
        }
        if (s->busy == 0 &&
            (qid < 0 || c->next_qid < 0 || qid <= c->next_qid || now - start > st->conf.qid_wait)) {
            apr_uint64_t tag = random64();

            s->seq = cl->seq > s->seq ? cl->seq : s->seq;
            s->busy = cl->seq;
            s->lease = now + st->conf.lease;
            s->owner = (apr_uint32_t)getpid();
            s->writer = tag;
            if (qid >= 0) {
                c->next_qid = qid + 1;
            }
            rc = put(st, key, s, p, err);
            if (rc != JPIP_SSTORE_OK) {
                return rc;
            }
            /* no read-back (see the top of this file): a request of another
             * host that claimed at the same moment finds out at write-back,
             * where one of the two keeps its additions and the other's are
             * sent again later */
            if (cl->reclaimed) {
                turn_t t;
                memset(&t, 0, sizeof(t));
                t.seq = t.preempt = cl->seq;
                (void)turn_set(st, cl->cid, &t, p); /* a lapsed owner stops */
            }
            kc->version = s->version;
            kc->polled = now;
            kc->claimed = now;
            cl->s = s;
            cl->size = st->conf.record_bytes;
            cl->priv = kc;
            return JPIP_SSTORE_OK;
        } else {
            /* busy (or an earlier qid is due): the newest request's turn is
             * a small entry of its own, so that waiting never writes the
             * record (a stale write could bring back a claim given up) */
            rc = turn_get(st, cl->cid, p, &turn, err);
            if (rc != JPIP_SSTORE_OK) {
                return rc;
            }
            if (!turn_seen) {
                /* take a turn after every one given out */
                turn_seen = 1;
                if (turn.seq >= cl->seq) {
                    cl->seq = turn.seq + 1;
                }
                turn.seq = cl->seq;
                if (!wait) {
                    turn.preempt = cl->seq; /* the one streaming now ends with EOR 3 */
                }
                if (turn_set(st, cl->cid, &turn, p) != JPIP_SSTORE_OK) {
                    return down(st, APR_EGENERAL, err);
                }
            } else if (turn.preempt > cl->seq) {
                jpip_err_set(err, JPIP_E_LIMIT, "a newer request on the session came first");
                return JPIP_SSTORE_PREEMPTED;
            }
        }
        if (now - start > st->conf.wait_max) {
            jpip_err_set(err, JPIP_E_LIMIT, "the channel stayed busy: try again later");
            return JPIP_SSTORE_BUSY;
        }
        apr_sleep(backoff);
        backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
    }
}

static int kv_preempted(jpip_sclaim_t *cl)
{
    kv_claim_t *kc = cl->priv;
    apr_time_t now = apr_time_now();
    turn_t turn;
    jpip_err_t err;

    if (kc->preempted || now - kc->polled < POLL_EVERY) {
        return kc->preempted;
    }
    kc->polled = now;
    if (turn_get(cl->st, cl->cid, cl->pool, &turn, &err) == JPIP_SSTORE_OK) {
        /* a turn left by a request that gave up before this claim is
         * not one (hosts' clocks differ a little: at worst a request
         * waits for the answer to end instead of pre-empting it) */
        kc->preempted = turn.preempt > cl->seq && turn.when >= kc->claimed;
    } /* else the store is away: carry on, the write-back will tell */
    return kc->preempted;
}

/* Write what this request knows over the stored record. Releases the
 * session when release is set. */
static jpip_sstore_rc_t write_back(jpip_sclaim_t *cl, int release, const char *const *cclose,
                                   int nclose, jpip_err_t *err)
{
    jpip_sstore_t *st = cl->st;
    kv_claim_t *kc = cl->priv;
    const char *key = skey(cl->pool, cl->cid);
    jpip_session_t *r = (jpip_session_t *)(void *)kc->scratch;
    jpip_sstore_rc_t rc = load(st, key, kc->scratch, cl->pool, err);
    int i, ours;

    if (rc != JPIP_SSTORE_OK) {
        return rc;
    }
    ours = r->busy == cl->seq;
    if (r->version == kc->version && ours) {
        jpip_err_t e2;
        if (jpip_model_copy(jpip_session_model(r), jpip_session_model(cl->s), &e2) != JPIP_OK) {
            jpip_model_clear(jpip_session_model(r), 0);
        }
    } else {
        /* someone else wrote the model meanwhile: keep theirs, without
         * what this request added (resent later, never skipped) */
        jpip_sstore_count(st, &st->counters->lost_updates, 1);
        if (cl->cut) {
            jpip_model_clear(jpip_session_model(r), 0);
        }
    }
    r->version++;
    r->bytes += cl->sent - kc->synced_bytes;
    kc->synced_bytes = cl->sent;
    r->model_bytes = jpip_model_size(jpip_session_model(r));
    r->used = apr_time_now();
    if (apr_atomic_read32(&cl->s->closed)) {
        r->closed = 1;
    }
    r->writer = random64();
    if (ours) {
        r->lease = apr_time_now() + st->conf.lease;
    }
    if (release) {
        for (i = 0; i < nclose; i++) {
            if (jpip_session_channel_close(r, cclose[i]) == 0) {
                r->closed = 1;
            }
        }
        if (ours) {
            r->busy = 0;
            r->owner = 0;
        }
        if (r->closed) {
            apr_status_t rv = impl(st)->kv.remove(impl(st)->kv.ctx, key, cl->pool);
            return rv == APR_SUCCESS || APR_STATUS_IS_NOTFOUND(rv) ? JPIP_SSTORE_OK
                                                                   : down(st, rv, err);
        }
    }
    rc = put(st, key, r, cl->pool, err);
    if (rc == JPIP_SSTORE_OK) {
        kc->version = r->version;
        if (ours) {
            /* this request's copy follows: its next write is not stale */
            jpip_model_t *m = jpip_session_model(cl->s);
            jpip_err_t e2;
            if (jpip_model_copy(m, jpip_session_model(r), &e2) != JPIP_OK) {
                jpip_model_clear(m, 0);
            }
        }
    }
    return rc;
}

static jpip_sstore_rc_t kv_sync(jpip_sclaim_t *cl, jpip_err_t *err)
{
    return write_back(cl, 0, NULL, 0, err);
}

static void kv_release(jpip_sclaim_t *cl, const char *const *cclose, int nclose)
{
    jpip_err_t err;

    /* if the store is away, the lease lapses and the session is taken
     * back with its model emptied: resends, never a skip */
    (void)write_back(cl, 1, cclose, nclose, &err);
}

static void kv_stats(jpip_sstore_t *st, jpip_sstore_stats_t *out)
{
    (void)st;
    (void)out; /* the cache knows; the status page shows this host's counters */
}

static const jpip_sstore_ops_t kv_ops = {"kv",         kv_target, kv_open,    kv_claim,
                                         kv_preempted, kv_sync,   kv_release, kv_stats};

jpip_code_t jpip_sstore_kv_create(apr_pool_t *pool, const jpip_kv_t *kv,
                                  const jpip_sstore_conf_t *conf, jpip_sstore_counters_t *counters,
                                  jpip_sstore_t **out, jpip_err_t *err)
{
    jpip_sstore_t *st = apr_pcalloc(pool, sizeof(*st));
    kvs_t *k = apr_pcalloc(pool, sizeof(*k));

    if (conf->record_bytes < jpip_session_bytes_for(jpip_model_bytes_for(1))) {
        return jpip_err_set(err, JPIP_E_LIMIT,
                            "a session record of %" APR_SIZE_T_FMT " bytes cannot hold a session",
                            conf->record_bytes);
    }
    k->kv = *kv;
    st->ops = &kv_ops;
    st->conf = *conf;
    if (st->conf.lease <= 0) {
        st->conf.lease = apr_time_from_sec(30);
    }
    st->counters = counters;
    st->impl = k;
    *out = st;
    return JPIP_OK;
}
