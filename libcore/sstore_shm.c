/* mod_jpip: the session store in one shared memory region (one host).
 *
 * The region holds a header and fixed-size slots, each a session record.
 * Every operation takes the caller's lock, for a few field updates. A
 * channel id is the slot in 6 characters and 156 random bits: the slot
 * spares a search, the random part (which the slot's record must hold
 * exactly) makes it impossible to guess. A request that claims a session
 * (busy) owns the slot until it gives it back: it changes the model in
 * place without the lock; nothing evicts, expires or frees a busy slot.
 * Waiting for a busy session backs off from 1 ms to 32 ms between looks,
 * and looks at the busy field without the lock before taking it.
 */
#include "sstore.h"

#include <string.h>
#include <unistd.h>

#include <apr_atomic.h>
#include <apr_hash.h>
#include <apr_strings.h>

#define SHM_MAGIC 0x4A505354u /* "JPST" */
#define CID_SLOT_DIGITS 6     /* 36 bits of slot number */
#define BACKOFF_MIN apr_time_from_msec(1)
#define BACKOFF_MAX apr_time_from_msec(32)

typedef struct shm_hdr_t {
    apr_uint32_t magic;
    apr_uint32_t slots;
    apr_uint64_t slot_size;
} shm_hdr_t;

typedef struct shm_t {
    shm_hdr_t *hdr;
    char *slots;
    jpip_sstore_lock_t lock;
} shm_t;

static apr_size_t hdr_bytes(void)
{
    return (sizeof(shm_hdr_t) + 63) & ~(apr_size_t)63;
}

static apr_size_t slot_bytes(const jpip_sstore_conf_t *conf)
{
    return (conf->record_bytes + 7) & ~(apr_size_t)7;
}

apr_size_t jpip_sstore_shm_bytes(const jpip_sstore_conf_t *conf)
{
    return hdr_bytes() + slot_bytes(conf) * conf->slots;
}

int jpip_sstore_shm_compatible(const void *region, const jpip_sstore_conf_t *conf)
{
    const shm_hdr_t *h = region;

    return h->magic == SHM_MAGIC && h->slots == conf->slots && h->slot_size == slot_bytes(conf);
}

static shm_t *impl(jpip_sstore_t *st)
{
    return st->impl;
}

static jpip_session_t *slot(shm_t *m, apr_uint32_t i)
{
    return (jpip_session_t *)(void *)(m->slots + (apr_size_t)i * m->hdr->slot_size);
}

static void lock(shm_t *m)
{
    m->lock.lock(m->lock.ctx);
}

static void unlock(shm_t *m)
{
    m->lock.unlock(m->lock.ctx);
}

/* The session holding channel cid, or NULL. Locked. */
static jpip_session_t *find(shm_t *m, const char *cid)
{
    apr_uint32_t i = 0;
    jpip_session_t *s;
    int k;

    for (k = 0; k < CID_SLOT_DIGITS; k++) {
        const char *d = strchr(jpip_cid_alphabet, cid[k]);
        apr_uint64_t v = ((apr_uint64_t)i << 6) | (apr_uint64_t)(d - jpip_cid_alphabet);

        if (cid[k] == '\0' || d == NULL || v > 0xFFFFFFFFu) {
            return NULL;
        }
        i = (apr_uint32_t)v;
    }
    if (i >= m->hdr->slots) {
        return NULL;
    }
    s = slot(m, i);
    if (s->magic != 0 && !s->closed && jpip_session_channel(s, cid) != NULL) {
        return s;
    }
    return NULL;
}

/* Busy for a process that is gone: take it back, model emptied (the merge
 * may have been cut short). Locked. */
static int reclaim(jpip_sstore_t *st, jpip_session_t *s)
{
    if (!jpip_sstore_owner_gone(s)) {
        return 0;
    }
    jpip_session_model_reset(s);
    s->busy = 0;
    s->owner = 0;
    s->owner_start = 0;
    jpip_sstore_count(st, &st->counters->reclaimed, 1);
    return 1;
}

static int idle(jpip_sstore_t *st, jpip_session_t *s)
{
    return s->busy == 0 || reclaim(st, s);
}

/* Close s; a busy session's slot is freed by its owner when it ends. */
static void remove_session(jpip_session_t *s)
{
    apr_atomic_set32(&s->closed, 1);
    if (s->busy == 0) {
        s->magic = 0;
    }
}

static void expire(jpip_sstore_t *st, apr_time_t now)
{
    shm_t *m = impl(st);
    apr_uint32_t i;

    for (i = 0; i < m->hdr->slots; i++) {
        jpip_session_t *s = slot(m, i);
        if (s->magic != 0 && idle(st, s) && now - s->used > st->conf.idle) {
            remove_session(s);
            jpip_sstore_count(st, &st->counters->expired, 1);
        }
    }
}

/* Fair eviction: the least recently used idle session of the client group
 * that holds the most sessions (busy ones count; ties go to the group with
 * the older idle session). A client that holds more than anyone else thus
 * pushes out its own sessions, never another's. Locked. */
static jpip_session_t *victim(jpip_sstore_t *st)
{
    shm_t *m = impl(st);
    apr_pool_t *tmp;
    apr_hash_t *count;
    jpip_session_t *best = NULL;
    apr_uintptr_t best_n = 0;
    apr_uint32_t i;

    if (apr_pool_create(&tmp, NULL) != APR_SUCCESS) {
        return NULL;
    }
    count = apr_hash_make(tmp);
    for (i = 0; i < m->hdr->slots; i++) {
        jpip_session_t *s = slot(m, i);
        if (s->magic != 0) {
            apr_uintptr_t n = (apr_uintptr_t)apr_hash_get(count, s->client, APR_HASH_KEY_STRING);
            apr_hash_set(count, s->client, APR_HASH_KEY_STRING, (void *)(n + 1));
        }
    }
    for (i = 0; i < m->hdr->slots; i++) {
        jpip_session_t *s = slot(m, i);
        apr_uintptr_t n;

        if (s->magic == 0 || !idle(st, s)) {
            continue;
        }
        n = (apr_uintptr_t)apr_hash_get(count, s->client, APR_HASH_KEY_STRING);
        if (best == NULL || n > best_n || (n == best_n && s->used < best->used)) {
            best = s;
            best_n = n;
        }
    }
    apr_pool_destroy(tmp);
    return best;
}

static jpip_code_t new_cid(shm_t *m, const jpip_session_t *s, char *out, jpip_err_t *err)
{
    apr_size_t i = (apr_size_t)((const char *)s - m->slots) / m->hdr->slot_size;
    int k;

    /* 192 random bits, the first 36 replaced by the slot: 156 remain */
    if (jpip_session_new_cid(out, err) != JPIP_OK) {
        return err->code;
    }
    for (k = CID_SLOT_DIGITS - 1; k >= 0; k--) {
        out[k] = jpip_cid_alphabet[i & 63];
        i >>= 6;
    }
    return JPIP_OK;
}

static jpip_session_t *create(jpip_sstore_t *st, const char *target, const char *tid,
                              const char *client, jpip_sstore_rc_t *rc, jpip_err_t *err)
{
    shm_t *m = impl(st);
    apr_time_t now = apr_time_now();
    jpip_session_t *free_slot = NULL, *s = NULL;
    apr_uint32_t i;
    int mine = 0;

    expire(st, now);
    for (i = 0; st->conf.max_per_client > 0 && i < m->hdr->slots; i++) {
        jpip_session_t *c = slot(m, i);
        mine += c->magic != 0 && strcmp(c->client, client) == 0;
    }
    if (st->conf.max_per_client > 0 && mine >= st->conf.max_per_client) {
        jpip_sstore_count(st, &st->counters->refused, 1);
        *rc = JPIP_SSTORE_FULL;
        jpip_err_set(err, JPIP_E_LIMIT,
                     "this client already has %d sessions (JPIPMaxSessionsPerClient); close "
                     "some with cclose",
                     mine);
        return NULL;
    }
    for (i = 0; i < m->hdr->slots && free_slot == NULL; i++) {
        if (slot(m, i)->magic == 0) {
            free_slot = slot(m, i);
        }
    }
    if (free_slot == NULL && (free_slot = victim(st)) != NULL) {
        remove_session(free_slot);
        jpip_sstore_count(st, &st->counters->evicted, 1);
    }
    if (free_slot == NULL) {
        jpip_sstore_count(st, &st->counters->refused, 1);
        *rc = JPIP_SSTORE_FULL;
        jpip_err_set(err, JPIP_E_LIMIT,
                     "too many sessions: all %u are busy (JPIPSessions); try again later or "
                     "without cnew",
                     m->hdr->slots);
        return NULL;
    }
    if (jpip_session_init(free_slot, (apr_size_t)m->hdr->slot_size, target, tid, now, &s, err) !=
        JPIP_OK) {
        free_slot->magic = 0;
        *rc = JPIP_SSTORE_ERROR;
        return NULL;
    }
    apr_cpystrn(s->client, client, sizeof(s->client));
    jpip_sstore_count(st, &st->counters->created, 1);
    return s;
}

static jpip_sstore_rc_t shm_target(jpip_sstore_t *st, const char *cid, apr_pool_t *p,
                                   const char **target, jpip_err_t *err)
{
    shm_t *m = impl(st);
    jpip_session_t *s;

    lock(m);
    s = find(m, cid);
    if (s != NULL) {
        *target = apr_pstrdup(p, s->target);
    }
    unlock(m);
    if (s == NULL) {
        jpip_err_set(err, JPIP_E_NOTFOUND, "channel %s does not exist or has expired", cid);
        return JPIP_SSTORE_GONE;
    }
    return JPIP_SSTORE_OK;
}

static jpip_sstore_rc_t shm_open(jpip_sstore_t *st, const char *cid, const char *target,
                                 const char *tid, const char *client, int jpt,
                                 char out[JPIP_CID_LEN + 1], jpip_err_t *err)
{
    shm_t *m = impl(st);
    jpip_sstore_rc_t rc = JPIP_SSTORE_GONE;
    jpip_session_t *s;
    jpip_channel_t *c;

    lock(m);
    s = cid != NULL ? find(m, cid) : create(st, target, tid, client, &rc, err);
    if (s == NULL) {
        unlock(m);
        if (cid != NULL) {
            jpip_err_set(err, JPIP_E_NOTFOUND, "channel %s does not exist or has expired", cid);
        }
        return rc;
    }
    if (new_cid(m, s, out, err) != JPIP_OK ||
        jpip_session_channel_open(s, out, jpt, &c, err) != JPIP_OK) {
        if (cid == NULL) {
            s->magic = 0; /* the session has no channel: free it again */
        }
        unlock(m);
        return err->code == JPIP_E_LIMIT ? JPIP_SSTORE_FULL : JPIP_SSTORE_ERROR;
    }
    unlock(m);
    return JPIP_SSTORE_OK;
}

static jpip_sstore_rc_t shm_claim(jpip_sstore_t *st, jpip_sclaim_t *cl, apr_int64_t qid, int wait,
                                  jpip_err_t *err)
{
    shm_t *m = impl(st);
    apr_time_t start = apr_time_now(), backoff = BACKOFF_MIN;
    jpip_session_t *s;
    jpip_channel_t *c;

    lock(m);
    s = find(m, cl->cid);
    if (s == NULL) {
        unlock(m);
        jpip_err_set(err, JPIP_E_NOTFOUND, "channel %s does not exist or has expired", cl->cid);
        return JPIP_SSTORE_GONE;
    }
    cl->seq = ++s->seq;
    if (!wait) {
        apr_atomic_set64(&s->preempt, cl->seq); /* the one streaming now ends with EOR 3 */
    }
    for (;;) {
        apr_time_t now;

        c = jpip_session_channel(s, cl->cid);
        if (s->busy != 0 && reclaim(st, s)) {
            cl->reclaimed = 1;
        }
        now = apr_time_now();
        if (s->busy == 0 &&
            (qid < 0 || c->next_qid < 0 || qid <= c->next_qid || now - start > st->conf.qid_wait)) {
            break; /* locked */
        }
        if (apr_atomic_read64(&s->preempt) > cl->seq) {
            unlock(m);
            jpip_err_set(err, JPIP_E_LIMIT, "a newer request on the session came first");
            return JPIP_SSTORE_PREEMPTED;
        }
        unlock(m);
        if (now - start > st->conf.wait_max) {
            jpip_err_set(err, JPIP_E_LIMIT, "the channel stayed busy: try again later");
            return JPIP_SSTORE_BUSY;
        }
        /* look without the lock until it seems free (or pre-empted) */
        do {
            apr_sleep(backoff);
            backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
        } while (s->busy != 0 && apr_atomic_read64(&s->preempt) <= cl->seq &&
                 apr_time_now() - start <= st->conf.wait_max && !jpip_sstore_owner_gone(s));
        lock(m);
        s = find(m, cl->cid);
        if (s == NULL) {
            unlock(m);
            jpip_err_set(err, JPIP_E_NOTFOUND, "channel %s does not exist or has expired", cl->cid);
            return JPIP_SSTORE_GONE;
        }
    }
    s->busy = cl->seq;
    s->owner = (apr_uint32_t)getpid();
    s->owner_start = jpip_proc_self_start();
    if (qid >= 0) {
        c->next_qid = qid + 1;
    }
    unlock(m);
    cl->s = s;
    cl->size = (apr_size_t)m->hdr->slot_size;
    return JPIP_SSTORE_OK;
}

static int shm_preempted(jpip_sclaim_t *c)
{
    return apr_atomic_read64(&c->s->preempt) > c->seq;
}

static jpip_sstore_rc_t shm_sync(jpip_sclaim_t *c, jpip_err_t *err)
{
    (void)c;
    (void)err;
    return JPIP_SSTORE_OK; /* the record is the shared one */
}

static void shm_release(jpip_sclaim_t *cl, const char *const *cclose, int nclose)
{
    shm_t *m = impl(cl->st);
    jpip_session_t *s = cl->s;
    int i;

    lock(m);
    for (i = 0; i < nclose; i++) {
        if (jpip_session_channel_close(s, cclose[i]) == 0) {
            apr_atomic_set32(&s->closed, 1); /* its last channel */
        }
    }
    s->busy = 0;
    s->owner = 0;
    s->used = apr_time_now();
    s->model_bytes = jpip_model_size(jpip_session_model(s));
    if (apr_atomic_read32(&s->closed)) {
        remove_session(s);
    }
    unlock(m);
}

static void shm_stats(jpip_sstore_t *st, jpip_sstore_stats_t *out)
{
    shm_t *m = impl(st);
    apr_uint32_t i;

    lock(m);
    for (i = 0; i < m->hdr->slots; i++) {
        jpip_session_t *s = slot(m, i);
        if (s->magic != 0) {
            out->sessions++;
            out->channels += s->nchannels;
            out->mem_used += s->model_bytes; /* the model may be changing now */
        }
    }
    out->slots = m->hdr->slots;
    unlock(m);
}

static const jpip_sstore_ops_t shm_ops = {"shm",         shm_target, shm_open,    shm_claim,
                                          shm_preempted, shm_sync,   shm_release, shm_stats};

jpip_code_t jpip_sstore_shm_create(apr_pool_t *pool, void *region, int init,
                                   const jpip_sstore_conf_t *conf, const jpip_sstore_lock_t *lk,
                                   jpip_sstore_counters_t *counters, jpip_sstore_t **out,
                                   jpip_err_t *err)
{
    jpip_sstore_t *st = apr_pcalloc(pool, sizeof(*st));
    shm_t *m = apr_pcalloc(pool, sizeof(*m));

    if (conf->slots == 0 || conf->record_bytes < jpip_session_bytes_for(jpip_model_bytes_for(1))) {
        return jpip_err_set(err, JPIP_E_LIMIT,
                            "a session store needs at least one slot of %" APR_SIZE_T_FMT " bytes",
                            jpip_session_bytes_for(jpip_model_bytes_for(1)));
    }
    m->hdr = region;
    m->slots = (char *)region + hdr_bytes();
    m->lock = *lk;
    if (init) {
        memset(region, 0, jpip_sstore_shm_bytes(conf));
        m->hdr->magic = SHM_MAGIC;
        m->hdr->slots = conf->slots;
        m->hdr->slot_size = slot_bytes(conf);
    } else if (!jpip_sstore_shm_compatible(region, conf)) {
        return jpip_err_set(err, JPIP_E_FORMAT, "the session region was made for other sizes");
    }
    st->ops = &shm_ops;
    st->conf = *conf;
    st->counters = counters;
    st->impl = m;
    *out = st;
    return JPIP_OK;
}
