/* mod_jpip: the per-process cache of indexed targets.
 *
 * Each worker process keeps the targets it has served in a small table:
 * the index (mapped from the index cache directory, so every process
 * shares one copy in the page cache), the box layout used for metareq, and
 * the target id. Every request opens the file at the target's path and
 * reuses the entry only while the identity of that descriptor (device,
 * inode, size, mtime and ctime in nanoseconds: fileid.h) is the one the
 * entry indexed; any other file gets a new entry. The target is never
 * mapped: a file cut short while it is served must not raise SIGBUS. Entries are reference counted
 * by the requests using them, so eviction never pulls an index from under
 * a response being sent.
 */
#include "mod_jpip.h"

#include <http_log.h>
#include <http_protocol.h>

#include <apr_atomic.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>

#include "ixcache.h"
#include "store.h"

APLOG_USE_MODULE(jpip);

typedef struct entry_t {
    jpip_tgt_t tgt; /* first: a jpip_tgt_t pointer is the entry's */
    apr_pool_t *pool;
    int refs;
    int stale; /* removed from the table; destroy when refs drops to 0 */
    apr_time_t used;
    /* the rendition, all under cache.lock */
    const char *rend_dir;   /* the index cache it is kept in, or NULL: none */
    int hits;               /* requests served without one */
    int rend_busy;          /* a look or a build is under way */
    apr_time_t rend_looked; /* when this process last looked */
} entry_t;

static struct {
    apr_pool_t *pool;
    apr_thread_mutex_t *lock;
    apr_hash_t *table; /* path -> entry_t */
    int max;
    int building;   /* index builds running in this process */
    int max_builds; /* JPIPIndexMaxBuilds */
    /* renditions */
    server_rec *server;
    int rend_after;               /* JPIPRenditionAfter; 0: JPIPRendition Off */
    apr_thread_t *builder;        /* the rendition builder thread, or NULL */
    apr_pool_t *builder_pool;     /* its pool, with an allocator of its own */
    int builder_running;          /* it has not finished yet */
    volatile apr_uint32_t cancel; /* the process is ending: builders stop */
} cache;

/* The process is ending: stop the rendition builder and wait for it,
 * before the entries it reads are destroyed. */
static apr_status_t stop_builder(void *data)
{
    apr_status_t rv;

    (void)data;
    apr_atomic_set32(&cache.cancel, 1);
    if (cache.builder != NULL) {
        apr_thread_join(&rv, cache.builder);
        cache.builder = NULL;
        apr_pool_destroy(cache.builder_pool);
    }
    return APR_SUCCESS;
}

apr_status_t jpip_targets_init(apr_pool_t *pchild, server_rec *s)
{
    apr_status_t rv;

    cache.pool = pchild;
    cache.table = apr_hash_make(pchild);
    /* global directives: the main server's values, once per process */
    cache.max = (int)jpip_srv_get(s, JPIP_V_INDEX_ENTRIES);
    cache.max_builds = (int)jpip_srv_get(s, JPIP_V_INDEX_BUILDS);
    cache.server = s;
    cache.rend_after =
        jpip_srv_get(s, JPIP_V_RENDITION) ? (int)jpip_srv_get(s, JPIP_V_RENDITION_AFTER) : 0;
    rv = apr_thread_mutex_create(&cache.lock, APR_THREAD_MUTEX_DEFAULT, pchild);
    apr_pool_pre_cleanup_register(pchild, NULL, stop_builder);
    return rv;
}

static void release(entry_t *e)
{
    if (--e->refs == 0 && e->stale) {
        apr_pool_destroy(e->pool);
    }
}

static apr_status_t unref(void *data)
{
    apr_thread_mutex_lock(cache.lock);
    release(data);
    apr_thread_mutex_unlock(cache.lock);
    return APR_SUCCESS;
}

/* Drop the least recently used unreferenced entry. Called locked. */
static void evict_one(void)
{
    apr_hash_index_t *hi;
    entry_t *victim = NULL;

    for (hi = apr_hash_first(NULL, cache.table); hi != NULL; hi = apr_hash_next(hi)) {
        entry_t *e = apr_hash_this_val(hi);
        if (victim == NULL || e->used < victim->used) {
            victim = e;
        }
    }
    if (victim != NULL) {
        apr_hash_set(cache.table, victim->tgt.path, APR_HASH_KEY_STRING, NULL);
        victim->stale = 1;
        victim->refs++;
        release(victim);
    }
}

#define BUILD_WAIT apr_time_from_sec(10)

/* Take one of the JPIPIndexMaxBuilds build slots of this process, waiting
 * up to BUILD_WAIT for one: a burst of first requests (a restart) queues
 * briefly instead of failing. */
static jpip_code_t build_slot(jpip_err_t *err)
{
    apr_time_t deadline = apr_time_now() + BUILD_WAIT;

    for (;;) {
        apr_thread_mutex_lock(cache.lock);
        if (cache.building < cache.max_builds) {
            cache.building++;
            apr_thread_mutex_unlock(cache.lock);
            return JPIP_OK;
        }
        apr_thread_mutex_unlock(cache.lock);
        if (apr_time_now() > deadline) {
            return jpip_err_limit(err, JPIP_LIMIT_INDEX_BUILDS,
                                  "%d files are being indexed by this process already; try "
                                  "again shortly",
                                  cache.max_builds);
        }
        apr_sleep(apr_time_from_msec(20));
    }
}

static void build_slot_release(void)
{
    apr_thread_mutex_lock(cache.lock);
    cache.building--;
    apr_thread_mutex_unlock(cache.lock);
}

/* Build the entry for the file open as f (identity id): map or build the
 * index, and walk the boxes. */
static jpip_code_t build(request_rec *r, const jpip_target_t *t, apr_file_t *f,
                         const jpip_fileid_t *id, entry_t **out, jpip_err_t *err)
{
    apr_pool_t *p;
    entry_t *e;
    jpip_ixc_result_t res;
    jpip_index_limits_t lim;
    const char *dir = jpip_index_dir(r->server);
    apr_time_t t0 = apr_time_now();
    jpip_code_t rc;

    /* sub-pools of the shared parent are made and destroyed under the lock */
    apr_thread_mutex_lock(cache.lock);
    apr_pool_create(&p, cache.pool);
    apr_thread_mutex_unlock(cache.lock);
    apr_pool_tag(p, "jpip_target");
    e = apr_pcalloc(p, sizeof(*e));
    e->pool = p;
    e->tgt.path = apr_pstrdup(p, t->path);
    e->tgt.size = id->size;
    e->tgt.id = *id;
    jpip_index_limits_default(&lim);
    lim.max_memory = (apr_uint64_t)jpip_srv_get(r->server, JPIP_V_INDEX_MEMORY);
    lim.max_time = jpip_srv_get(r->server, JPIP_V_INDEX_TIME);
    if (dir != NULL && *dir == '\0') {
        dir = NULL;
    }
    memset(&res, 0, sizeof(res));
    if (jpip_ixcache_load(p, dir, t->path, f, id, &res.ix)) {
        res.how = JPIP_IXC_MAPPED;
        rc = JPIP_OK;
    } else {
        rc = build_slot(err);
        if (rc == JPIP_OK) {
            t0 = apr_time_now(); /* the build itself, not the wait for a slot */
            /* one process of the host builds; the others wait for it as
             * long as a build may take */
            rc = jpip_ixcache_open(p, dir, t->path, f, id, &lim, lim.max_time, &res, err);
            build_slot_release();
        }
    }
    if (rc == JPIP_OK) {
        jpip_src_t *src;
        jpip_container_t kind;
        apr_uint32_t brand;
        jpip_box_layout_t *lay = NULL;

        e->tgt.ix = res.ix;
        e->tgt.tid = jpip_ixcache_tid(p, t->path, res.ix);
        /* the box layout answers metareq; raw codestreams have none */
        rc = jpip_src_open_file(&src, p, f, e->tgt.size, err);
        if (rc == JPIP_OK) {
            rc = jpip_box_detect(src, &kind, &brand, err);
        }
        if (rc == JPIP_OK && kind != JPIP_CONTAINER_RAW) {
            rc = jpip_box_layout_build(&lay, p, src, NULL, err);
        }
        e->tgt.layout = lay;
        if (dir != NULL && e->tgt.size > 0) {
            e->rend_dir = apr_pstrdup(p, dir);
        }
    }
    if (rc != JPIP_OK) {
        apr_thread_mutex_lock(cache.lock);
        apr_pool_destroy(p);
        apr_thread_mutex_unlock(cache.lock);
        return jpip_err_of_target(err); /* the file's failure, not the request's */
    }
    if (res.how != JPIP_IXC_MAPPED) {
        jpip_index_stats_t st;

        jpip_index_stats(res.ix, &st);
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      JPIPLOGNO(0010) "jpip(target=%s): indexed in %.1f ms (%" APR_UINT64_T_FMT
                                      " bins, index %" APR_UINT64_T_FMT " bytes)%s%s",
                      t->name, (apr_time_now() - t0) / 1000.0, st.nbins, st.size,
                      res.how == JPIP_IXC_BUILT_NOSTORE ? "; not cached: " : "",
                      res.how == JPIP_IXC_BUILT_NOSTORE ? res.store_err.msg : "");
    }
    *out = e;
    return JPIP_OK;
}

#define FILE_NOTE "jpip-target-file"

apr_file_t *jpip_targets_file(request_rec *r)
{
    void *f = NULL;

    apr_pool_userdata_get(&f, FILE_NOTE, r->pool);
    return f;
}

void jpip_targets_file_close(request_rec *r)
{
    apr_file_t *f = jpip_targets_file(r);

    if (f != NULL) {
        apr_pool_userdata_setn(NULL, FILE_NOTE, NULL, r->pool);
        apr_file_close(f);
    }
}

/* Open the target for this request. */
static jpip_code_t open_target(request_rec *r, const jpip_target_t *t, apr_file_t **f,
                               jpip_fileid_t *id, jpip_err_t *err)
{
    apr_status_t rv = apr_file_open(
        f, t->path, APR_FOPEN_READ | APR_FOPEN_BINARY | APR_FOPEN_SENDFILE_ENABLED, 0, r->pool);

    if (APR_STATUS_IS_EACCES(rv)) {
        return jpip_err_set(err, JPIP_E_FORBIDDEN, "the server may not read the target");
    }
    if (APR_STATUS_IS_ENOENT(rv)) {
        return jpip_err_set(err, JPIP_E_NOTFOUND, "the target is gone");
    }
    if (rv != APR_SUCCESS) {
        return jpip_err_set(err, JPIP_E_IO, "the target cannot be opened for reading");
    }
    apr_pool_userdata_setn(*f, FILE_NOTE, NULL, r->pool);
    return jpip_fileid_of_file(*f, id, err);
}

jpip_code_t jpip_targets_get(request_rec *r, const jpip_target_t *t, const jpip_tgt_t **out,
                             jpip_err_t *err)
{
    entry_t *e, *fresh = NULL;
    apr_file_t *f;
    jpip_fileid_t id;
    jpip_code_t rc;

    rc = open_target(r, t, &f, &id, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    apr_thread_mutex_lock(cache.lock);
    e = apr_hash_get(cache.table, t->path, APR_HASH_KEY_STRING);
    if (e != NULL && jpip_fileid_equal(&e->tgt.id, &id)) {
        e->refs++;
        e->used = apr_time_now();
        apr_thread_mutex_unlock(cache.lock);
        jpip_store_count(JPIP_STAT_INDEX_HITS, 1);
        apr_pool_cleanup_register(r->pool, e, unref, apr_pool_cleanup_null);
        *out = &e->tgt;
        return JPIP_OK;
    }
    apr_thread_mutex_unlock(cache.lock);

    /* build outside the lock: other targets keep being served meanwhile,
     * but at most JPIPIndexMaxBuilds real builds at once in this process
     * (mapping an index another process already built does not count) */
    rc = build(r, t, f, &id, &fresh, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    jpip_store_count(JPIP_STAT_INDEX_BUILDS, 1);
    apr_thread_mutex_lock(cache.lock);
    e = apr_hash_get(cache.table, t->path, APR_HASH_KEY_STRING);
    if (e != NULL) { /* an older version, or a concurrent build: replace it */
        apr_hash_set(cache.table, e->tgt.path, APR_HASH_KEY_STRING, NULL);
        e->stale = 1;
        e->refs++;
        release(e);
    }
    while ((int)apr_hash_count(cache.table) >= cache.max) {
        evict_one();
    }
    fresh->refs = 1;
    fresh->used = apr_time_now();
    apr_hash_set(cache.table, fresh->tgt.path, APR_HASH_KEY_STRING, fresh);
    apr_thread_mutex_unlock(cache.lock);
    apr_pool_cleanup_register(r->pool, fresh, unref, apr_pool_cleanup_null);
    *out = &fresh->tgt;
    return JPIP_OK;
}

/* ------------------------------------------------------------ renditions */

#define REND_LOOK_EVERY apr_time_from_sec(1)
#define REND_STALE apr_time_from_sec(600) /* a builder's file untouched so long was left */

/* Map e's rendition file if there is a valid one. Called with e->rend_busy
 * set (so by one thread at a time), under cache.lock (the entry's pool
 * shares the process pool's allocator). */
static int rend_load(entry_t *e)
{
    jpip_rend_t *rd;
    apr_file_t *f;
    jpip_tgt_rend_t *tr;

    if (!jpip_ixcache_rend_load(e->pool, e->rend_dir, e->tgt.path, e->tgt.ix, &rd, &f)) {
        return 0;
    }
    tr = apr_palloc(e->pool, sizeof(*tr));
    tr->rd = rd;
    tr->file = f;
    apr_atomic_casptr((volatile void **)&e->tgt.rend, tr, NULL);
    return 1;
}

static void rend_done(entry_t *e)
{
    apr_thread_mutex_lock(cache.lock);
    e->rend_busy = 0;
    release(e);
    apr_thread_mutex_unlock(cache.lock);
}

static void *APR_THREAD_FUNC rend_build(apr_thread_t *thd, void *data)
{
    entry_t *e = data;
    apr_pool_t *p = apr_thread_pool_get(thd); /* the builder's own allocator */
    jpip_err_t err;
    jpip_code_t rc;
    apr_time_t t0 = apr_time_now();
    apr_file_t *f = NULL;
    jpip_fileid_t id;

    /* its own descriptor, read with its own position; and only while the
     * file at the path is still the version indexed */
    if (apr_file_open(&f, e->tgt.path, APR_FOPEN_READ | APR_FOPEN_BINARY, 0, p) != APR_SUCCESS ||
        jpip_fileid_of_file(f, &id, &err) != JPIP_OK || !jpip_fileid_equal(&id, &e->tgt.id)) {
        rc = jpip_err_set(&err, JPIP_E_IO, "the target changed since it was indexed");
    } else {
        rc = jpip_ixcache_rend_store(p, e->rend_dir, e->tgt.path, e->tgt.ix, f, REND_STALE,
                                     &cache.cancel, &err);
    }
    if (f != NULL) {
        apr_file_close(f);
    }
    if (rc == JPIP_OK) {
        int ok;

        apr_thread_mutex_lock(cache.lock);
        ok = rend_load(e);
        apr_thread_mutex_unlock(cache.lock);
        if (ok) {
            const jpip_tgt_rend_t *tr = e->tgt.rend; /* set by this thread */

            ap_log_error(
                APLOG_MARK, APLOG_INFO, 0, cache.server,
                JPIPLOGNO(0014) "jpip(file=%s): rendition built in %.1f ms (%" APR_UINT64_T_FMT
                                " bytes)",
                e->tgt.path, (apr_time_now() - t0) / 1000.0, jpip_rend_size(tr->rd));
        } else {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, cache.server,
                         JPIPLOGNO(0200) "jpip(file=%s): rendition built in %.1f ms, but it "
                                         "could not be mapped",
                         e->tgt.path, (apr_time_now() - t0) / 1000.0);
        }
    } else if (!apr_atomic_read32(&cache.cancel) &&
               strcmp(err.msg, "another process is building it") != 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, cache.server,
                     JPIPLOGNO(0015) "jpip(file=%s): no rendition: %s; responses are made "
                                     "from the file",
                     e->tgt.path, err.msg);
    }
    rend_done(e);
    apr_thread_mutex_lock(cache.lock);
    cache.builder_running = 0;
    apr_thread_mutex_unlock(cache.lock);
    /* a plain return, not apr_thread_exit: pthread_exit unwinds without
     * the compiler's epilogues (sanitizers then see a dirty stack), and
     * the thread's pool goes with builder_pool after the join anyway */
    return NULL;
}

const jpip_tgt_rend_t *jpip_targets_rendition(request_rec *r, const jpip_tgt_t *tgt)
{
    entry_t *e = (entry_t *)(void *)tgt;
    void *rd = apr_atomic_casptr((volatile void **)&e->tgt.rend, NULL, NULL);
    apr_time_t now;
    int build = 0;

    if (rd != NULL || cache.rend_after == 0 || e->rend_dir == NULL) {
        return rd;
    }
    now = apr_time_now();
    apr_thread_mutex_lock(cache.lock);
    if (e->hits < cache.rend_after) {
        e->hits++;
    }
    if (e->rend_busy || e->hits < cache.rend_after || now - e->rend_looked < REND_LOOK_EVERY) {
        apr_thread_mutex_unlock(cache.lock);
        return NULL;
    }
    e->rend_busy = 1;
    e->rend_looked = now;
    e->refs++; /* held by the look or the builder */
    if (!rend_load(e) && !cache.builder_running && !apr_atomic_read32(&cache.cancel)) {
        apr_status_t rv = APR_SUCCESS;

        if (cache.builder != NULL) {
            apr_thread_join(&rv, cache.builder); /* it has finished */
            cache.builder = NULL;
            apr_pool_destroy(cache.builder_pool);
        }
        rv = apr_pool_create_unmanaged_ex(&cache.builder_pool, NULL, NULL);
        if (rv == APR_SUCCESS) {
            rv = apr_thread_create(&cache.builder, NULL, rend_build, e, cache.builder_pool);
            if (rv != APR_SUCCESS) {
                apr_pool_destroy(cache.builder_pool);
            }
        }
        if (rv == APR_SUCCESS) {
            cache.builder_running = 1;
            build = 1;
        } else {
            cache.builder = NULL;
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, rv, r,
                          JPIPLOGNO(0016) "jpip: cannot start a thread to build a rendition");
        }
    }
    apr_thread_mutex_unlock(cache.lock);
    if (!build) {
        rend_done(e);
    }
    return apr_atomic_casptr((volatile void **)&e->tgt.rend, NULL, NULL);
}
