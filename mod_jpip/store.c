/* mod_jpip: the session store in shared memory. */
#include "mod_jpip.h"
#include "store.h"

#include <http_log.h>
#include <util_mutex.h>

#include <apr_atomic.h>
#include <apr_global_mutex.h>
#include <apr_shm.h>
#include <apr_strings.h>

#include <errno.h>
#include <signal.h>
#include <unistd.h>

APLOG_USE_MODULE(jpip);

#define STORE_MUTEX_TYPE "jpip-session"
#define STORE_MAGIC 0x4A505354u /* "JPST" */
#define USERDATA_KEY "jpip_store"

typedef struct shm_hdr_t {
    apr_uint32_t magic;
    apr_uint32_t slots;
    apr_uint64_t slot_size;
    apr_interval_time_t idle;
    volatile apr_uint64_t counters[16]; /* apr_atomic_add64 */
    apr_uint64_t created, evicted, expired, refused, reclaimed;
} shm_hdr_t;

/* What survives a graceful restart, in the process pool. */
typedef struct store_t {
    apr_shm_t *shm;
    apr_global_mutex_t *mutex;
    apr_size_t size;
    shm_hdr_t *hdr;
    char *slots;
} store_t;

static store_t *store; /* in the parent and, by fork, in every child */

static apr_size_t hdr_bytes(void)
{
    return (sizeof(shm_hdr_t) + 63) & ~(apr_size_t)63;
}

static jpip_session_t *slot(apr_uint32_t i)
{
    return (jpip_session_t *)(void *)(store->slots + (apr_size_t)i * store->hdr->slot_size);
}

int jpip_store_pre_config(apr_pool_t *pconf)
{
    /* a process-shared pthread mutex where APR has one: taken and released
     * without a system call when uncontended, where fcntl locks always
     * enter the kernel. The Mutex directive can still choose another. */
#if APR_HAS_PROC_PTHREAD_SERIALIZE
    return ap_mutex_register(pconf, STORE_MUTEX_TYPE, NULL, APR_LOCK_PROC_PTHREAD, 0);
#else
    return ap_mutex_register(pconf, STORE_MUTEX_TYPE, NULL, APR_LOCK_DEFAULT, 0);
#endif
}

int jpip_store_post_config(apr_pool_t *pconf, server_rec *s, const jpip_store_conf_t *conf)
{
    apr_pool_t *pproc = s->process->pool;
    apr_size_t slot_size = jpip_session_bytes_for(conf->memory / (apr_size_t)conf->slots);
    apr_size_t size = hdr_bytes() + slot_size * (apr_size_t)conf->slots;
    store_t *old = NULL;
    apr_status_t rv;

    apr_pool_userdata_get((void **)&old, USERDATA_KEY, pproc);
    if (old != NULL && old->size == size && old->hdr->slot_size == slot_size) {
        /* a graceful restart with the same sizes: keep the sessions */
        store = old;
        store->hdr->idle = conf->idle;
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                     JPIPLOGNO(0020) "session store kept across the restart (%u sessions)",
                     store->hdr->slots);
        return OK;
    }
    store = apr_pcalloc(pproc, sizeof(*store));
    rv = apr_shm_create(&store->shm, size, NULL, pproc);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     JPIPLOGNO(0021) "cannot create %" APR_SIZE_T_FMT
                                     " bytes of shared memory for sessions",
                     size);
        store = NULL;
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (old != NULL && old->mutex != NULL) {
        store->mutex = old->mutex; /* old children may still hold it */
    } else {
        rv = ap_global_mutex_create(&store->mutex, NULL, STORE_MUTEX_TYPE, NULL, s, pproc, 0);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                         JPIPLOGNO(0022) "cannot create the session mutex");
            store = NULL;
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    store->size = size;
    store->hdr = apr_shm_baseaddr_get(store->shm);
    memset(store->hdr, 0, size);
    store->hdr->magic = STORE_MAGIC;
    store->hdr->slots = (apr_uint32_t)conf->slots;
    store->hdr->slot_size = slot_size;
    store->hdr->idle = conf->idle;
    store->slots = (char *)store->hdr + hdr_bytes();
    apr_pool_userdata_set(store, USERDATA_KEY, apr_pool_cleanup_null, pproc);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                 JPIPLOGNO(0023) "session store: %d sessions of %" APR_SIZE_T_FMT
                                 " bytes (%" APR_SIZE_T_FMT " bytes of shared memory)",
                 conf->slots, slot_size, size);
    return OK;
}

void jpip_store_child_init(apr_pool_t *p, server_rec *s)
{
    apr_status_t rv;

    if (store == NULL) {
        return;
    }
    rv = apr_global_mutex_child_init(&store->mutex, apr_global_mutex_lockfile(store->mutex), p);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     JPIPLOGNO(0024) "cannot attach to the session mutex");
    }
}

int jpip_store_ready(void)
{
    return store != NULL;
}

void jpip_store_lock(void)
{
    apr_global_mutex_lock(store->mutex);
}

void jpip_store_unlock(void)
{
    apr_global_mutex_unlock(store->mutex);
}

#define CID_SLOT_DIGITS 8

jpip_code_t jpip_store_new_cid(const jpip_session_t *s, char *out, jpip_err_t *err)
{
    apr_size_t i = (apr_size_t)((const char *)s - store->slots) / store->hdr->slot_size;
    char prefix[CID_SLOT_DIGITS + 1];

    if (jpip_session_new_cid(out, err) != JPIP_OK) {
        return err->code;
    }
    apr_snprintf(prefix, sizeof(prefix), "%08x", (unsigned)i);
    memcpy(out, prefix, CID_SLOT_DIGITS);
    return JPIP_OK;
}

jpip_session_t *jpip_store_find(const char *cid)
{
    apr_uint32_t i = 0;
    jpip_session_t *s;
    int k;

    for (k = 0; k < CID_SLOT_DIGITS; k++) {
        char c = cid[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) {
            return NULL; /* not one of ours */
        }
        i = (i << 4) | (apr_uint32_t)d;
    }
    if (i >= store->hdr->slots) {
        return NULL;
    }
    s = slot(i);
    if (s->magic != 0 && !s->closed && jpip_session_channel(s, cid) != NULL) {
        return s;
    }
    return NULL;
}

void jpip_store_claim(jpip_session_t *s, apr_uint64_t seq)
{
    s->busy = seq;
    s->owner = (apr_uint32_t)getpid();
}

int jpip_store_reclaim(jpip_session_t *s)
{
    if (s->busy == 0 || s->owner == 0 || s->owner == (apr_uint32_t)getpid() ||
        kill((pid_t)s->owner, 0) == 0 || errno != ESRCH) {
        return 0; /* idle, or its owner is alive (or cannot be told) */
    }
    jpip_session_model_reset(s);
    s->busy = 0;
    s->owner = 0;
    store->hdr->reclaimed++;
    return 1;
}

/* Not busy, or busy for a process that is gone (and now taken back). */
static int idle(jpip_session_t *s)
{
    return s->busy == 0 || jpip_store_reclaim(s);
}

void jpip_store_remove(jpip_session_t *s)
{
    /* a busy session's record belongs to the request streaming on it,
     * which changes the model without the lock: it is only closed here,
     * and that request frees the slot when it ends */
    apr_atomic_set32(&s->closed, 1);
    if (s->busy == 0) {
        s->magic = 0;
    }
}

void jpip_store_expire(apr_time_t now)
{
    apr_uint32_t i;

    for (i = 0; i < store->hdr->slots; i++) {
        jpip_session_t *s = slot(i);
        if (s->magic != 0 && idle(s) && now - s->used > store->hdr->idle) {
            jpip_store_remove(s);
            store->hdr->expired++;
        }
    }
}

jpip_session_t *jpip_store_create(const char *target, const char *tid, const char *client,
                                  int max_per_client, jpip_err_t *err)
{
    apr_time_t now = apr_time_now();
    jpip_session_t *free_slot = NULL, *oldest = NULL, *s = NULL;
    apr_uint32_t i;
    int mine = 0;

    jpip_store_expire(now);
    for (i = 0; max_per_client > 0 && i < store->hdr->slots; i++) {
        jpip_session_t *c = slot(i);
        mine += c->magic != 0 && strcmp(c->client, client) == 0;
    }
    if (max_per_client > 0 && mine >= max_per_client) {
        store->hdr->refused++;
        jpip_err_set(err, JPIP_E_LIMIT,
                     "this client already has %d sessions (JPIPMaxSessionsPerClient); close "
                     "some with cclose",
                     mine);
        return NULL;
    }
    for (i = 0; i < store->hdr->slots && free_slot == NULL; i++) {
        jpip_session_t *c = slot(i);
        if (c->magic == 0) {
            free_slot = c;
        } else if (idle(c) && (oldest == NULL || c->used < oldest->used)) {
            oldest = c;
        }
    }
    if (free_slot == NULL && oldest != NULL) {
        jpip_store_remove(oldest);
        store->hdr->evicted++;
        free_slot = oldest;
    }
    if (free_slot == NULL) {
        store->hdr->refused++;
        jpip_err_set(err, JPIP_E_LIMIT,
                     "too many sessions: all %u are busy (JPIPSessions); try again later or "
                     "without cnew",
                     store->hdr->slots);
        return NULL;
    }
    if (jpip_session_init(free_slot, (apr_size_t)store->hdr->slot_size, target, tid, now, &s,
                          err) != JPIP_OK) {
        free_slot->magic = 0;
        return NULL;
    }
    apr_cpystrn(s->client, client, sizeof(s->client));
    store->hdr->created++;
    return s;
}

void jpip_store_count(int which, apr_uint64_t n)
{
    if (store != NULL && which >= 0 && which < 16) {
        apr_atomic_add64(&store->hdr->counters[which], n);
    }
}

void jpip_store_stats(jpip_store_stats_t *st)
{
    apr_uint32_t i;

    memset(st, 0, sizeof(*st));
    if (store == NULL) {
        return;
    }
    jpip_store_lock();
    for (i = 0; i < store->hdr->slots; i++) {
        jpip_session_t *s = slot(i);
        if (s->magic != 0) {
            st->sessions++;
            st->channels += s->nchannels;
            st->mem_used += s->model_bytes; /* the model may be changing now */
        }
    }
    st->slots = store->hdr->slots;
    st->created = store->hdr->created;
    st->evicted = store->hdr->evicted;
    st->expired = store->hdr->expired;
    st->refused = store->hdr->refused;
    st->reclaimed = store->hdr->reclaimed;
    jpip_store_unlock();
    st->requests = apr_atomic_read64(&store->hdr->counters[JPIP_STAT_REQUESTS]);
    st->bytes = apr_atomic_read64(&store->hdr->counters[JPIP_STAT_BYTES]);
    st->index_hits = apr_atomic_read64(&store->hdr->counters[JPIP_STAT_INDEX_HITS]);
    st->index_builds = apr_atomic_read64(&store->hdr->counters[JPIP_STAT_INDEX_BUILDS]);
    st->iiif_renders = apr_atomic_read64(&store->hdr->counters[JPIP_STAT_IIIF_RENDERS]);
    st->iiif_render_us = apr_atomic_read64(&store->hdr->counters[JPIP_STAT_IIIF_RENDER_US]);
    st->iiif_bytes = apr_atomic_read64(&store->hdr->counters[JPIP_STAT_IIIF_BYTES]);
    st->iiif_not_modified = apr_atomic_read64(&store->hdr->counters[JPIP_STAT_IIIF_NOT_MODIFIED]);
    st->iiif_busy = apr_atomic_read64(&store->hdr->counters[JPIP_STAT_IIIF_BUSY]);
    st->mem_limit = store->size;
}
