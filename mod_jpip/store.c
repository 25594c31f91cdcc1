/* mod_jpip: the session store's httpd side (backends, segment, mutex). */
#include "mod_jpip.h"
#include "store.h"

#include <ap_provider.h>
#include <ap_socache.h>
#include <http_log.h>
#include <util_mutex.h>

#include <apr_atomic.h>
#include <apr_global_mutex.h>
#include <apr_shm.h>
#include <apr_strings.h>

APLOG_USE_MODULE(jpip);

#define STORE_MUTEX_TYPE "jpip-session"
#define USERDATA_KEY "jpip_store"
#define DEFAULT_V4_PREFIX 32
#define DEFAULT_V6_PREFIX 64

/* The head of the segment: counters every backend shares on this host. */
typedef struct seg_hdr_t {
    volatile apr_uint64_t counters[16]; /* JPIP_STAT_*, apr_atomic_add64 */
    jpip_sstore_counters_t sc;
} seg_hdr_t;

/* What survives a graceful restart, in the process pool. */
typedef struct store_t {
    apr_shm_t *shm;
    apr_global_mutex_t *mutex;
    apr_size_t size;
    seg_hdr_t *hdr;
    int kind;           /* 0 shm, 1 socache */
    const char *config; /* the backend and its sizes, to tell whether to keep it */
    jpip_sstore_t *st;
    /* socache */
    const ap_socache_provider_t *provider;
    ap_socache_instance_t *volatile instance; /* swapped by kv_renew */
    server_rec *server;
    const char *name;
    const char *args;               /* the provider's argument */
    struct ap_socache_hints hints;  /* as given to init */
    volatile apr_uint32_t renewing; /* a thread of this process connects afresh */
    volatile apr_time_t renewed;    /* when one last tried */
} store_t;

static store_t *store; /* in the parent and, by fork, in every child */

/* JPIPSessionStore / JPIPSessionClientPrefix: read once per configuration
 * pass (server-wide). */
static const char *conf_kind; /* NULL: shm; else the socache provider name */
static const char *conf_args; /* the provider's argument */
static int conf_v4 = DEFAULT_V4_PREFIX, conf_v6 = DEFAULT_V6_PREFIX;

static apr_size_t seg_hdr_bytes(void)
{
    return (sizeof(seg_hdr_t) + 63) & ~(apr_size_t)63;
}

const char *jpip_store_cmd(cmd_parms *cmd, void *dconf, const char *kind, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dconf;
    if (err != NULL) {
        return err;
    }
    if (strcasecmp(kind, "shm") == 0 && arg == NULL) {
        conf_kind = NULL;
        conf_args = NULL;
        return NULL;
    }
    if (strncasecmp(kind, "socache:", 8) == 0 && kind[8] != '\0') {
        conf_kind = apr_pstrdup(cmd->pool, kind + 8);
        conf_args = arg != NULL ? apr_pstrdup(cmd->pool, arg) : "";
        if (ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, conf_kind, AP_SOCACHE_PROVIDER_VERSION) ==
            NULL) {
            return apr_psprintf(cmd->pool,
                                "JPIPSessionStore: no socache provider named '%s' (is "
                                "mod_socache_%s loaded?)",
                                conf_kind, conf_kind);
        }
        return NULL;
    }
    return "JPIPSessionStore: expected 'shm' or 'socache:PROVIDER [ARGUMENTS]', e.g. "
           "'socache:redis 127.0.0.1:6379'";
}

static int prefix_value(const char *v, int max)
{
    char *end;
    long n;

    if (v == NULL) {
        return -1;
    }
    n = strtol(v, &end, 10);
    return end != v && *end == '\0' && n >= 1 && n <= max ? (int)n : 0;
}

const char *jpip_store_prefix_cmd(cmd_parms *cmd, void *dconf, const char *v4, const char *v6)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    int a = prefix_value(v4, 32), b = v6 != NULL ? prefix_value(v6, 128) : DEFAULT_V6_PREFIX;

    (void)dconf;
    if (err != NULL) {
        return err;
    }
    if (a <= 0 || b <= 0) {
        return "JPIPSessionClientPrefix: expected the IPv4 prefix length (1-32) and optionally "
               "the IPv6 one (1-128), e.g. '32 64'";
    }
    conf_v4 = a;
    conf_v6 = b;
    return NULL;
}

void jpip_store_client_group(const char *addr, char out[48])
{
    jpip_client_group(addr, conf_v4, conf_v6, out);
}

int jpip_store_pre_config(apr_pool_t *pconf)
{
    conf_kind = NULL;
    conf_args = NULL;
    conf_v4 = DEFAULT_V4_PREFIX;
    conf_v6 = DEFAULT_V6_PREFIX;
    /* a process-shared pthread mutex where APR has one: taken and released
     * without a system call when uncontended, where fcntl locks always
     * enter the kernel. The Mutex directive can still choose another. */
#if APR_HAS_PROC_PTHREAD_SERIALIZE
    return ap_mutex_register(pconf, STORE_MUTEX_TYPE, NULL, APR_LOCK_PROC_PTHREAD, 0);
#else
    return ap_mutex_register(pconf, STORE_MUTEX_TYPE, NULL, APR_LOCK_DEFAULT, 0);
#endif
}

static void mutex_lock(void *ctx)
{
    apr_global_mutex_lock(((store_t *)ctx)->mutex);
}

static void mutex_unlock(void *ctx)
{
    apr_global_mutex_unlock(((store_t *)ctx)->mutex);
}

/* ---- socache as a jpip_kv_t ---------------------------------------- */

#define RENEW_EVERY apr_time_from_sec(1)

static int kv_serial(store_t *t);

/* A networked provider's connections may all have broken (the store was
 * restarted). Its own recovery retries a dead server every few seconds,
 * through one pooled connection at a time, so a process that had many
 * open can wait a long time (measured: over 30 s). After a write fails,
 * at most once a second per process, this connects a fresh instance; if
 * a write through it works, the process uses it from then on. The old
 * instance is kept until the process ends (other threads may be inside
 * it), so at most one instance is added per recovery. Shared-memory and
 * file providers (those that need a mutex) are never renewed. Returns
 * whether a fresh instance is in use. */
static int kv_renew(store_t *t, apr_pool_t *p)
{
    apr_time_t now = apr_time_now();
    ap_socache_instance_t *fresh = NULL;
    apr_pool_t *fp;
    int ok = 0;

    if (kv_serial(t) || now - t->renewed < RENEW_EVERY ||
        apr_atomic_cas32(&t->renewing, 1, 0) != 0) {
        return 0;
    }
    t->renewed = now;
    if (apr_pool_create(&fp, NULL) == APR_SUCCESS) {
        if (t->provider->create(&fresh, t->args, fp, fp) == NULL && fresh != NULL &&
            t->provider->init(fresh, "jpip-session", &t->hints, t->server, fp) == APR_SUCCESS) {
            ok = t->provider->store(fresh, t->server, (const unsigned char *)JPIP_KV_PROBE_KEY,
                                    (unsigned int)strlen(JPIP_KV_PROBE_KEY),
                                    now + apr_time_from_sec(60), (unsigned char *)"1", 1,
                                    p) == APR_SUCCESS;
            if (!ok) {
                t->provider->destroy(fresh, t->server);
            }
        }
        if (ok) {
            (void)apr_atomic_xchgptr((volatile void **)(void *)&t->instance, fresh);
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, t->server,
                         JPIPLOGNO(0520) "session store %s: reachable again, connected afresh",
                         t->name);
        } else {
            apr_pool_destroy(fp);
        }
    }
    apr_atomic_set32(&t->renewing, 0);
    return ok;
}

static int kv_serial(store_t *t)
{
    return (t->provider->flags & AP_SOCACHE_FLAG_NOTMPSAFE) != 0;
}

static apr_status_t kv_store(void *ctx, const char *key, const unsigned char *val, apr_size_t len,
                             apr_time_t expiry, apr_pool_t *p)
{
    store_t *t = ctx;
    apr_status_t rv;

    if (len > 0xFFFFFFFFu) {
        return APR_ENOSPC;
    }
    if (kv_serial(t)) {
        apr_global_mutex_lock(t->mutex);
    }
    rv = t->provider->store(t->instance, t->server, (const unsigned char *)key,
                            (unsigned int)strlen(key), expiry, (unsigned char *)val,
                            (unsigned int)len, p);
    if (rv != APR_SUCCESS) {
        /* once more: a pooled connection may have broken (a store restart)
         * and the provider reconnects on the next call */
        rv = t->provider->store(t->instance, t->server, (const unsigned char *)key,
                                (unsigned int)strlen(key), expiry, (unsigned char *)val,
                                (unsigned int)len, p);
    }
    if (rv != APR_SUCCESS && kv_renew(t, p)) {
        rv = t->provider->store(t->instance, t->server, (const unsigned char *)key,
                                (unsigned int)strlen(key), expiry, (unsigned char *)val,
                                (unsigned int)len, p);
    }
    if (kv_serial(t)) {
        apr_global_mutex_unlock(t->mutex);
    }
    return rv;
}

static apr_status_t kv_retrieve(void *ctx, const char *key, unsigned char *buf, apr_size_t cap,
                                apr_size_t *len, apr_pool_t *p)
{
    store_t *t = ctx;
    unsigned int n = cap > 0xFFFFFFFFu ? 0xFFFFFFFFu : (unsigned int)cap;
    apr_status_t rv;

    if (kv_serial(t)) {
        apr_global_mutex_lock(t->mutex);
    }
    rv = t->provider->retrieve(t->instance, t->server, (const unsigned char *)key,
                               (unsigned int)strlen(key), buf, &n, p);
    if (kv_serial(t)) {
        apr_global_mutex_unlock(t->mutex);
    }
    *len = n;
    return rv;
}

static apr_status_t kv_remove(void *ctx, const char *key, apr_pool_t *p)
{
    store_t *t = ctx;
    apr_status_t rv;

    if (kv_serial(t)) {
        apr_global_mutex_lock(t->mutex);
    }
    rv = t->provider->remove(t->instance, t->server, (const unsigned char *)key,
                             (unsigned int)strlen(key), p);
    if (rv != APR_SUCCESS && !APR_STATUS_IS_NOTFOUND(rv)) {
        rv = t->provider->remove(t->instance, t->server, (const unsigned char *)key,
                                 (unsigned int)strlen(key), p);
    }
    if (kv_serial(t)) {
        apr_global_mutex_unlock(t->mutex);
    }
    return rv;
}

static apr_status_t socache_destroy(void *data)
{
    store_t *t = data;

    if (t->instance != NULL) {
        t->provider->destroy(t->instance, t->server);
        t->instance = NULL;
    }
    return APR_SUCCESS;
}

/* Connect the provider (post_config: it lives as long as this
 * configuration). */
static int socache_setup(apr_pool_t *pconf, server_rec *s, store_t *t, const jpip_sstore_conf_t *sc)
{
    struct ap_socache_hints hints;
    ap_socache_instance_t *inst = NULL;
    const char *err;
    jpip_kv_t kv;
    jpip_err_t jerr;
    apr_status_t rv;

    t->provider =
        ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, conf_kind, AP_SOCACHE_PROVIDER_VERSION);
    err = t->provider->create(&inst, conf_args, pconf, pconf);
    t->instance = inst;
    if (err != NULL) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     JPIPLOGNO(0500) "JPIPSessionStore socache:%s %s: %s", conf_kind, conf_args,
                     err);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    memset(&hints, 0, sizeof(hints));
    hints.avg_id_len = 40;
    hints.avg_obj_size = 16 * 1024;
    hints.expiry_interval = 30;
    t->server = s;
    t->hints = hints;
    t->args = apr_pstrdup(pconf, conf_args);
    t->renewing = 0;
    t->renewed = 0;
    rv = t->provider->init(t->instance, "jpip-session", &hints, s, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     JPIPLOGNO(0501) "cannot initialise the session store socache:%s %s", conf_kind,
                     conf_args);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    apr_pool_cleanup_register(pconf, t, socache_destroy, apr_pool_cleanup_null);
    t->name = apr_pstrcat(pconf, conf_kind, *conf_args != '\0' ? " " : "", conf_args, NULL);
    kv.ctx = t;
    kv.name = t->name;
    kv.store = kv_store;
    kv.retrieve = kv_retrieve;
    kv.remove = kv_remove;
    if (jpip_sstore_kv_create(pconf, &kv, sc, &t->hdr->sc, &t->st, &jerr) != JPIP_OK) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, JPIPLOGNO(0502) "session store: %s", jerr.msg);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

/* ---- the segment --------------------------------------------------- */

int jpip_store_post_config(apr_pool_t *pconf, server_rec *s, const jpip_store_conf_t *conf)
{
    apr_pool_t *pproc = s->process->pool;
    jpip_sstore_conf_t sc;
    jpip_sstore_lock_t lk;
    jpip_err_t jerr;
    store_t *old = NULL, *t;
    apr_size_t size;
    const char *config;
    apr_status_t rv;
    int keep;

    memset(&sc, 0, sizeof(sc));
    sc.slots = conf_kind == NULL ? (apr_uint32_t)conf->slots : 0;
    sc.record_bytes = jpip_session_bytes_for(conf->memory / (apr_size_t)conf->slots);
    sc.idle = conf->idle;
    sc.max_per_client = conf->max_per_client;
    sc.wait_max = apr_time_from_sec(60);
    sc.qid_wait = apr_time_from_sec(2);
    sc.lease = apr_time_from_sec(30);
    size = seg_hdr_bytes() + (conf_kind == NULL ? jpip_sstore_shm_bytes(&sc) : 0);
    config = conf_kind == NULL ? apr_psprintf(pconf, "shm %" APR_SIZE_T_FMT, size)
                               : apr_psprintf(pconf, "socache %s %s", conf_kind, conf_args);

    apr_pool_userdata_get((void **)&old, USERDATA_KEY, pproc);
    keep = old != NULL && old->size == size && strcmp(old->config, config) == 0;
    if (keep) {
        t = old; /* a graceful restart with the same store: keep the sessions */
    } else {
        t = apr_pcalloc(pproc, sizeof(*t));
        rv = apr_shm_create(&t->shm, size, NULL, pproc);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                         JPIPLOGNO(0021) "cannot create %" APR_SIZE_T_FMT
                                         " bytes of shared memory for sessions",
                         size);
            store = NULL;
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        t->size = size;
        t->config = apr_pstrdup(pproc, config);
        t->hdr = apr_shm_baseaddr_get(t->shm);
        memset(t->hdr, 0, size);
        if (old != NULL && old->mutex != NULL) {
            t->mutex = old->mutex; /* old children may still hold it */
        } else {
            rv = ap_global_mutex_create(&t->mutex, NULL, STORE_MUTEX_TYPE, NULL, s, pproc, 0);
            if (rv != APR_SUCCESS) {
                ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                             JPIPLOGNO(0022) "cannot create the session mutex");
                store = NULL;
                return HTTP_INTERNAL_SERVER_ERROR;
            }
        }
        if (old != NULL && old->shm != NULL) {
            /* the previous generation's segment (anonymous shared memory):
             * its children keep their own mapping while they finish, the
             * parent lets go of its own now, so a restart that changes the
             * sizes leaves nothing behind */
            apr_shm_destroy(old->shm);
            old->shm = NULL;
        }
        apr_pool_userdata_set(t, USERDATA_KEY, apr_pool_cleanup_null, pproc);
    }
    t->kind = conf_kind != NULL;
    store = t;
    if (t->kind) {
        return socache_setup(pconf, s, t, &sc);
    }
    lk.ctx = t;
    lk.lock = mutex_lock;
    lk.unlock = mutex_unlock;
    if (jpip_sstore_shm_create(pconf, (char *)t->hdr + seg_hdr_bytes(), !keep, &sc, &lk,
                               &t->hdr->sc, &t->st, &jerr) != JPIP_OK) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, JPIPLOGNO(0503) "session store: %s", jerr.msg);
        store = NULL;
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    t->name = "shm";
    if (keep) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                     JPIPLOGNO(0020) "session store kept across the restart (%d sessions)",
                     conf->slots);
    } else {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                     JPIPLOGNO(0023) "session store: %d sessions of %" APR_SIZE_T_FMT
                                     " bytes (%" APR_SIZE_T_FMT " bytes of shared memory)",
                     conf->slots, sc.record_bytes, size);
    }
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
    return store != NULL && store->st != NULL;
}

jpip_sstore_t *jpip_store_sessions(void)
{
    return store != NULL ? store->st : NULL;
}

const char *jpip_store_name(void)
{
    return store != NULL && store->name != NULL ? store->name : "none";
}

void jpip_store_count(int which, apr_uint64_t n)
{
    if (store != NULL && which >= 0 && which < 16) {
        apr_atomic_add64(&store->hdr->counters[which], n);
    }
}

void jpip_store_stats(jpip_store_stats_t *st)
{
    jpip_sstore_stats_t ss;
    jpip_sstore_counters_t *c;

    memset(st, 0, sizeof(*st));
    if (!jpip_store_ready()) {
        return;
    }
    jpip_sstore_stats(store->st, &ss);
    c = &store->hdr->sc;
    st->sessions = ss.sessions;
    st->channels = ss.channels;
    st->slots = ss.slots;
    st->mem_used = ss.mem_used;
    st->created = apr_atomic_read64(&c->created);
    st->evicted = apr_atomic_read64(&c->evicted);
    st->expired = apr_atomic_read64(&c->expired);
    st->refused = apr_atomic_read64(&c->refused);
    st->reclaimed = apr_atomic_read64(&c->reclaimed);
    st->lost_updates = apr_atomic_read64(&c->lost_updates);
    st->requests = apr_atomic_read64(&store->hdr->counters[JPIP_STAT_REQUESTS]);
    st->bytes = apr_atomic_read64(&store->hdr->counters[JPIP_STAT_BYTES]);
    st->index_hits = apr_atomic_read64(&store->hdr->counters[JPIP_STAT_INDEX_HITS]);
    st->index_builds = apr_atomic_read64(&store->hdr->counters[JPIP_STAT_INDEX_BUILDS]);
    st->iiif_renders = apr_atomic_read64(&store->hdr->counters[JPIP_STAT_IIIF_RENDERS]);
    st->iiif_render_us = apr_atomic_read64(&store->hdr->counters[JPIP_STAT_IIIF_RENDER_US]);
    st->iiif_bytes = apr_atomic_read64(&store->hdr->counters[JPIP_STAT_IIIF_BYTES]);
    st->iiif_not_modified = apr_atomic_read64(&store->hdr->counters[JPIP_STAT_IIIF_NOT_MODIFIED]);
    st->iiif_busy = apr_atomic_read64(&store->hdr->counters[JPIP_STAT_IIIF_BUSY]);
    st->iiif_cropped = apr_atomic_read64(&store->hdr->counters[JPIP_STAT_IIIF_CROPPED]);
    st->mem_limit = store->size;
}
