/* Unit tests: the session store's semantics (sstore.h), each run against
 * every backend: shm (a region in this process) and kv (an in-memory
 * key-value cache with expiring entries, standing for a socache provider).
 * Expiry, eviction, per-client limits, reclaim after a dead owner (pid
 * reuse included), channel id parsing, pre-emption, qid order, delivery
 * on abort, lost updates, a store that is down or holds garbage. */
#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>

#include "sstore.h"
#include "testutil.h"

#define BACKENDS 2 /* _i: 0 shm, 1 kv */

static apr_pool_t *pool;

/* ---- the in-memory kv ------------------------------------------------ */

typedef struct fake_entry_t {
    unsigned char *data;
    apr_size_t len;
    apr_time_t expiry;
} fake_entry_t;

typedef struct fake_kv_t {
    apr_pool_t *pool;
    apr_hash_t *h;
    apr_thread_mutex_t *mu;
    int down;
    unsigned writes;
} fake_kv_t;

static fake_kv_t fake;

static apr_status_t fk_store(void *ctx, const char *key, const unsigned char *val, apr_size_t len,
                             apr_time_t expiry, apr_pool_t *p)
{
    fake_kv_t *f = ctx;
    fake_entry_t *e;

    (void)p;
    if (f->down) {
        return APR_ECONNREFUSED;
    }
    apr_thread_mutex_lock(f->mu);
    e = apr_pcalloc(f->pool, sizeof(*e));
    e->data = apr_pmemdup(f->pool, val, len);
    e->len = len;
    e->expiry = expiry;
    apr_hash_set(f->h, apr_pstrdup(f->pool, key), APR_HASH_KEY_STRING, e);
    f->writes++;
    apr_thread_mutex_unlock(f->mu);
    return APR_SUCCESS;
}

static apr_status_t fk_retrieve(void *ctx, const char *key, unsigned char *buf, apr_size_t cap,
                                apr_size_t *len, apr_pool_t *p)
{
    fake_kv_t *f = ctx;
    fake_entry_t *e;
    apr_status_t rv = APR_SUCCESS;

    (void)p;
    if (f->down) {
        return APR_ECONNREFUSED;
    }
    apr_thread_mutex_lock(f->mu);
    e = apr_hash_get(f->h, key, APR_HASH_KEY_STRING);
    if (e == NULL || e->expiry < apr_time_now()) {
        rv = APR_NOTFOUND;
    } else if (e->len > cap) {
        rv = APR_ENOSPC;
    } else {
        memcpy(buf, e->data, e->len);
        *len = e->len;
    }
    apr_thread_mutex_unlock(f->mu);
    return rv;
}

static apr_status_t fk_remove(void *ctx, const char *key, apr_pool_t *p)
{
    fake_kv_t *f = ctx;

    (void)p;
    if (f->down) {
        return APR_ECONNREFUSED;
    }
    apr_thread_mutex_lock(f->mu);
    apr_hash_set(f->h, key, APR_HASH_KEY_STRING, NULL);
    apr_thread_mutex_unlock(f->mu);
    return APR_SUCCESS;
}

/* ---- stores ------------------------------------------------------------ */

static apr_thread_mutex_t *shm_mu;
static jpip_sstore_counters_t counters;

static void mu_lock(void *ctx)
{
    apr_thread_mutex_lock(ctx);
}

static void mu_unlock(void *ctx)
{
    apr_thread_mutex_unlock(ctx);
}

static void setup(void)
{
    apr_pool_create(&pool, NULL);
    memset(&fake, 0, sizeof(fake));
    fake.pool = pool;
    fake.h = apr_hash_make(pool);
    apr_thread_mutex_create(&fake.mu, APR_THREAD_MUTEX_DEFAULT, pool);
    apr_thread_mutex_create(&shm_mu, APR_THREAD_MUTEX_DEFAULT, pool);
    memset(&counters, 0, sizeof(counters));
}

static void teardown(void)
{
    apr_pool_destroy(pool);
}

static jpip_sstore_conf_t conf_of(apr_uint32_t slots, int per_client)
{
    jpip_sstore_conf_t c;

    memset(&c, 0, sizeof(c));
    c.slots = slots;
    c.record_bytes = jpip_session_bytes_for(jpip_model_bytes_for(64));
    c.idle = apr_time_from_sec(60);
    c.max_per_client = per_client;
    c.wait_max = apr_time_from_sec(5);
    c.qid_wait = apr_time_from_msec(300);
    c.lease = apr_time_from_sec(30);
    return c;
}

static jpip_sstore_t *make_store(int backend, const jpip_sstore_conf_t *conf)
{
    jpip_sstore_t *st = NULL;
    jpip_err_t err;

    if (backend == 0) {
        jpip_sstore_lock_t lk = {shm_mu, mu_lock, mu_unlock};
        void *region = apr_pcalloc(pool, jpip_sstore_shm_bytes(conf));

        ck_assert_msg(jpip_sstore_shm_create(pool, region, 1, conf, &lk, &counters, &st, &err) ==
                          JPIP_OK,
                      "%s", err.msg);
    } else {
        jpip_kv_t kv = {&fake, "fake 127.0.0.1:1", fk_store, fk_retrieve, fk_remove};

        ck_assert_msg(jpip_sstore_kv_create(pool, &kv, conf, &counters, &st, &err) == JPIP_OK, "%s",
                      err.msg);
    }
    return st;
}

static const char *open_session(jpip_sstore_t *st, const char *client)
{
    char cid[JPIP_CID_LEN + 1];
    jpip_err_t err;

    ck_assert_msg(jpip_sstore_open(st, NULL, "a.jp2", "tid1", client, 0, cid, &err) ==
                      JPIP_SSTORE_OK,
                  "open: %s", err.msg);
    ck_assert(jpip_cid_valid(cid));
    return apr_pstrdup(pool, cid);
}

static jpip_sclaim_t *claim(jpip_sstore_t *st, const char *cid, apr_int64_t qid, int wait)
{
    jpip_sclaim_t *c = NULL;
    jpip_err_t err;

    ck_assert_msg(jpip_sstore_claim(st, pool, cid, qid, wait, "tid1", NULL, NULL, NULL, &c, &err) ==
                      JPIP_SSTORE_OK,
                  "claim: %s", err.msg);
    return c;
}

static jpip_sstore_rc_t try_claim(jpip_sstore_t *st, const char *cid, jpip_sclaim_t **c)
{
    jpip_err_t err;

    return jpip_sstore_claim(st, pool, cid, -1, 0, "tid1", NULL, NULL, NULL, c, &err);
}

/* Record precincts first..last of codestream 0 as complete. */
static void send_bins(jpip_sclaim_t *c, apr_uint64_t first, apr_uint64_t last)
{
    jpip_model_sent_t m[64];
    apr_size_t n = 0;
    apr_uint64_t id;
    jpip_err_t err;

    for (id = first; id <= last && n < 64; id++, n++) {
        memset(&m[n], 0, sizeof(m[n]));
        m[n].cls = 0;
        m[n].id = id;
        m[n].len = 100;
        m[n].complete = 1;
    }
    ck_assert_int_eq(jpip_sclaim_record(c, m, n, 100 * n, &err), JPIP_SSTORE_OK);
}

static int held(jpip_sclaim_t *c, apr_uint64_t id)
{
    return jpip_model_held(jpip_sclaim_model(c), NULL, 0, 0, id) == JPIP_MODEL_COMPLETE;
}

/* ---- cases ---------------------------------------------------------- */

START_TEST(open_claim_record_release)
{
    jpip_sstore_conf_t conf = conf_of(4, 0);
    jpip_sstore_t *st = make_store(_i, &conf);
    const char *cid = open_session(st, "192.0.2.1"), *target = NULL;
    char cid2[JPIP_CID_LEN + 1];
    jpip_sclaim_t *c;
    jpip_err_t err;

    ck_assert_int_eq(jpip_sstore_target(st, cid, pool, &target, &err), JPIP_SSTORE_OK);
    ck_assert_str_eq(target, "a.jp2");
    c = claim(st, cid, -1, 0);
    ck_assert(!held(c, 3));
    send_bins(c, 1, 5);
    jpip_sstore_release(c, 1, NULL, 0);
    /* the next request's model holds what was delivered */
    c = claim(st, cid, -1, 0);
    ck_assert(held(c, 3) && held(c, 5) && !held(c, 6));
    jpip_sstore_release(c, 1, NULL, 0);
    /* a second channel on the session shares the model */
    ck_assert_int_eq(jpip_sstore_open(st, cid, NULL, NULL, "192.0.2.1", 0, cid2, &err),
                     JPIP_SSTORE_OK);
    ck_assert_str_ne(cid, cid2);
    c = claim(st, cid2, -1, 0);
    ck_assert(held(c, 4));
    /* cclose of every channel ends the session */
    {
        const char *all[] = {"*"};
        jpip_sstore_release(c, 1, all, 1);
    }
    ck_assert_int_eq(jpip_sstore_target(st, cid, pool, &target, &err), JPIP_SSTORE_GONE);
    ck_assert_int_eq(try_claim(st, cid2, &c), JPIP_SSTORE_GONE);
}
END_TEST

START_TEST(abort_counts_nothing)
{
    jpip_sstore_conf_t conf = conf_of(4, 0);
    jpip_sstore_t *st = make_store(_i, &conf);
    const char *cid = open_session(st, "192.0.2.1");
    jpip_sclaim_t *c = claim(st, cid, -1, 0);
    jpip_err_t err;

    send_bins(c, 1, 3);
    jpip_sstore_release(c, 1, NULL, 0);
    c = claim(st, cid, -1, 0);
    /* the answer records as it goes (and, kv, publishes), then fails */
    send_bins(c, 10, 20);
    ck_assert_int_eq(jpip_sclaim_sync(c, &err), JPIP_SSTORE_OK);
    send_bins(c, 21, 30);
    jpip_sstore_release(c, 0, NULL, 0);
    c = claim(st, cid, -1, 0);
    ck_assert(held(c, 2));
    ck_assert(!held(c, 10) && !held(c, 20) && !held(c, 25));
    jpip_sstore_release(c, 1, NULL, 0);
}
END_TEST

START_TEST(cid_parsing)
{
    jpip_sstore_conf_t conf = conf_of(4, 0);
    jpip_sstore_t *st = make_store(_i, &conf);
    const char *cid = open_session(st, "192.0.2.1"), *target;
    char forged[JPIP_CID_LEN + 1], out[JPIP_CID_LEN + 1];
    jpip_sclaim_t *c;
    jpip_err_t err;
    static const char *bad[] = {"",
                                "0",
                                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",   /* 31 */
                                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 33 */
                                "AAAAAA/AAAAAAAAAAAAAAAAAAAAAAAAA",
                                "AAAAAA AAAAAAAAAAAAAAAAAAAAAAAAA",
                                "////////////////////////////////",
                                "__________AAAAAAAAAAAAAAAAAAAAAA"};
    apr_size_t i;

    ck_assert_uint_eq(strlen(cid), JPIP_CID_LEN);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert(!jpip_cid_valid(bad[i]) || i == 7);
        ck_assert_int_eq(jpip_sstore_target(st, bad[i], pool, &target, &err), JPIP_SSTORE_GONE);
        ck_assert_int_eq(try_claim(st, bad[i], &c), JPIP_SSTORE_GONE);
    }
    /* the same locator with other random bits is not the channel */
    memcpy(forged, cid, sizeof(forged));
    forged[JPIP_CID_LEN - 1] = forged[JPIP_CID_LEN - 1] == 'A' ? 'B' : 'A';
    ck_assert_int_eq(jpip_sstore_target(st, forged, pool, &target, &err), JPIP_SSTORE_GONE);
    ck_assert_int_eq(try_claim(st, forged, &c), JPIP_SSTORE_GONE);
    ck_assert_int_eq(jpip_sstore_open(st, forged, NULL, NULL, "192.0.2.1", 0, out, &err),
                     JPIP_SSTORE_GONE);
    /* two ids never share their random part */
    ck_assert_str_ne(open_session(st, "192.0.2.1") + 6, cid + 6);
}
END_TEST

START_TEST(expiry)
{
    jpip_sstore_conf_t conf = conf_of(4, 0);
    jpip_sstore_t *st;
    const char *old, *young;
    jpip_sclaim_t *c;

    conf.idle = apr_time_from_msec(150);
    st = make_store(_i, &conf);
    old = open_session(st, "192.0.2.1");
    apr_sleep(apr_time_from_msec(400));
    young = open_session(st, "192.0.2.2"); /* shm: expiry runs as sessions open */
    ck_assert_int_eq(try_claim(st, old, &c), JPIP_SSTORE_GONE);
    c = claim(st, young, -1, 0);
    jpip_sstore_release(c, 1, NULL, 0);
    if (_i == 0) {
        ck_assert_uint_ge(counters.expired, 1);
    }
}
END_TEST

START_TEST(per_client_limit)
{
    jpip_sstore_conf_t conf = conf_of(16, 2);
    jpip_sstore_t *st = make_store(_i, &conf);
    char cid[JPIP_CID_LEN + 1], g1[48], g2[48], g3[48];
    const char *first, *all[] = {"*"};
    jpip_sclaim_t *c;
    jpip_err_t err;

    /* two addresses of one /64 are one client */
    jpip_client_group("2001:db8:0:1::5", 32, 64, g1);
    jpip_client_group("2001:db8:0:1:ffff::9", 32, 64, g2);
    jpip_client_group("2001:db8:0:2::5", 32, 64, g3);
    ck_assert_str_eq(g1, "2001:db8:0:1::/64");
    ck_assert_str_eq(g1, g2);
    ck_assert_str_ne(g1, g3);
    first = open_session(st, g1);
    open_session(st, g2);
    ck_assert_int_eq(jpip_sstore_open(st, NULL, "a.jp2", "tid1", g1, 0, cid, &err),
                     JPIP_SSTORE_FULL);
    ck_assert_ptr_nonnull(strstr(err.msg, "JPIPMaxSessionsPerClient"));
    /* another client is not held back */
    open_session(st, g3);
    /* closing one makes room again */
    c = claim(st, first, -1, 0);
    jpip_sstore_release(c, 1, all, 1);
    open_session(st, g1);
}
END_TEST

START_TEST(fair_eviction)
{
    /* shm only: a kv cache evicts by its own policy */
    jpip_sstore_conf_t conf = conf_of(6, 0);
    jpip_sstore_t *st = make_store(0, &conf);
    const char *mine[2], *theirs[4];
    jpip_sclaim_t *c;
    int i;

    for (i = 0; i < 2; i++) {
        mine[i] = open_session(st, "192.0.2.1");
    }
    for (i = 0; i < 4; i++) {
        theirs[i] = open_session(st, "198.51.100.0/24");
    }
    /* the mass client opens more: only its own sessions make room, even
     * though the other client's are older */
    for (i = 0; i < 10; i++) {
        open_session(st, "198.51.100.0/24");
    }
    for (i = 0; i < 2; i++) {
        c = claim(st, mine[i], -1, 0);
        jpip_sstore_release(c, 1, NULL, 0);
    }
    ck_assert_int_eq(try_claim(st, theirs[0], &c), JPIP_SSTORE_GONE);
    ck_assert_uint_ge(counters.evicted, 10);
    /* a newcomer takes from the client with the most */
    open_session(st, "203.0.113.7");
    for (i = 0; i < 2; i++) {
        c = claim(st, mine[i], -1, 0);
        jpip_sstore_release(c, 1, NULL, 0);
    }
}
END_TEST

START_TEST(full_store_busy_sessions)
{
    jpip_sstore_conf_t conf = conf_of(2, 0);
    jpip_sstore_t *st = make_store(0, &conf);
    jpip_sclaim_t *a = claim(st, open_session(st, "192.0.2.1"), -1, 0);
    jpip_sclaim_t *b = claim(st, open_session(st, "192.0.2.2"), -1, 0);
    char cid[JPIP_CID_LEN + 1];
    jpip_err_t err;

    /* busy sessions are never evicted */
    ck_assert_int_eq(jpip_sstore_open(st, NULL, "a.jp2", "tid1", "192.0.2.3", 0, cid, &err),
                     JPIP_SSTORE_FULL);
    jpip_sstore_release(a, 1, NULL, 0);
    jpip_sstore_release(b, 1, NULL, 0);
    open_session(st, "192.0.2.3");
}
END_TEST

/* Make the claimed session look owned by a process that is gone. */
static void dead_owner(jpip_session_t *s, int reused)
{
    if (reused) {
        /* a live process with the owner's pid, started at another time */
        s->owner = (apr_uint32_t)getpid();
        s->owner_start = jpip_proc_self_start() + 12345;
    } else {
        pid_t pid = fork();

        if (pid == 0) {
            _exit(0);
        }
        waitpid(pid, NULL, 0);
        s->owner = (apr_uint32_t)pid;
        s->owner_start = 1;
    }
}

START_TEST(reclaim_dead_owner)
{
    /* _i: 0 dead pid, 1 reused pid (shm); kv: a lapsed lease */
    jpip_sstore_conf_t conf = conf_of(4, 0);
    jpip_sstore_t *st = make_store(0, &conf);
    const char *cid = open_session(st, "192.0.2.1");
    jpip_sclaim_t *c = claim(st, cid, -1, 0);

    ck_assert(!jpip_sstore_owner_gone(c->s)); /* this very process */
    send_bins(c, 1, 5);
    dead_owner(c->s, _i);
    ck_assert(jpip_sstore_owner_gone(c->s));
    /* the next request is answered at once, from an emptied model */
    c = claim(st, cid, -1, 0);
    ck_assert(c->reclaimed);
    ck_assert(!held(c, 3));
    ck_assert_uint_eq(counters.reclaimed, 1);
    jpip_sstore_release(c, 1, NULL, 0);
}
END_TEST

START_TEST(kv_lapsed_lease)
{
    jpip_sstore_conf_t conf = conf_of(0, 0);
    jpip_sstore_t *st;
    const char *cid;
    jpip_sclaim_t *c;

    conf.lease = apr_time_from_msec(100);
    st = make_store(1, &conf);
    cid = open_session(st, "192.0.2.1");
    c = claim(st, cid, -1, 0);
    send_bins(c, 1, 5);
    (void)c; /* never released: its host died */
    apr_sleep(apr_time_from_msec(250));
    c = claim(st, cid, -1, 0);
    ck_assert(c->reclaimed && !held(c, 3));
    jpip_sstore_release(c, 1, NULL, 0);
}
END_TEST

typedef struct claimer_t {
    jpip_sstore_t *st;
    const char *cid;
    int wait;
    apr_int64_t qid;
    jpip_sstore_rc_t rc;
    jpip_sclaim_t *c;
    apr_pool_t *p;
    volatile int done;
} claimer_t;

static void *APR_THREAD_FUNC claimer(apr_thread_t *t, void *data)
{
    claimer_t *w = data;
    jpip_err_t err;

    w->rc = jpip_sstore_claim(w->st, w->p, w->cid, w->qid, w->wait, "tid1", NULL, NULL, NULL, &w->c,
                              &err);
    w->done = 1;
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

static apr_thread_t *start_claimer(claimer_t *w, jpip_sstore_t *st, const char *cid, int wait,
                                   apr_int64_t qid)
{
    apr_thread_t *t;

    memset(w, 0, sizeof(*w));
    w->st = st;
    w->cid = cid;
    w->wait = wait;
    w->qid = qid;
    apr_pool_create(&w->p, pool);
    ck_assert_int_eq(apr_thread_create(&t, NULL, claimer, w, pool), APR_SUCCESS);
    return t;
}

static int wait_for(volatile int *flag, jpip_sclaim_t *preempted)
{
    int i;

    for (i = 0; i < 500; i++) {
        if ((flag != NULL && *flag) || (preempted != NULL && jpip_sclaim_preempted(preempted))) {
            return 1;
        }
        apr_sleep(apr_time_from_msec(10));
    }
    return 0;
}

START_TEST(preemption)
{
    jpip_sstore_conf_t conf = conf_of(4, 0);
    jpip_sstore_t *st = make_store(_i, &conf);
    const char *cid = open_session(st, "192.0.2.1");
    jpip_sclaim_t *a = claim(st, cid, -1, 0);
    claimer_t b, c, d;
    apr_thread_t *tb, *tc, *td;
    apr_status_t rv;

    /* wait=yes does not pre-empt */
    td = start_claimer(&d, st, cid, 1, -1);
    apr_sleep(apr_time_from_msec(150));
    ck_assert(!jpip_sclaim_preempted(a) && !d.done);
    /* a request without wait=yes pre-empts the one streaming */
    tb = start_claimer(&b, st, cid, 0, -1);
    ck_assert(wait_for(NULL, a));
    /* ... and the one waiting is overtaken by it: 202 */
    ck_assert(wait_for(&d.done, NULL));
    apr_thread_join(&rv, td);
    ck_assert_int_eq(d.rc, JPIP_SSTORE_PREEMPTED);
    /* a third overtakes the second while it waits */
    tc = start_claimer(&c, st, cid, 0, -1);
    ck_assert(wait_for(&b.done, NULL));
    apr_thread_join(&rv, tb);
    ck_assert_int_eq(b.rc, JPIP_SSTORE_PREEMPTED);
    ck_assert(!c.done);
    jpip_sstore_release(a, 1, NULL, 0);
    ck_assert(wait_for(&c.done, NULL));
    apr_thread_join(&rv, tc);
    ck_assert_int_eq(c.rc, JPIP_SSTORE_OK);
    ck_assert(!jpip_sclaim_preempted(c.c));
    jpip_sstore_release(c.c, 1, NULL, 0);
}
END_TEST

START_TEST(qid_order)
{
    jpip_sstore_conf_t conf = conf_of(4, 0);
    jpip_sstore_t *st;
    const char *cid;
    jpip_sclaim_t *a;
    claimer_t w3, w2;
    apr_thread_t *t3, *t2;
    apr_status_t rv;

    conf.qid_wait = apr_time_from_sec(4);
    st = make_store(_i, &conf);
    cid = open_session(st, "192.0.2.1");
    a = claim(st, cid, 1, 1);
    jpip_sstore_release(a, 1, NULL, 0);
    /* qid 3 arrives before qid 2: it waits for 2, which goes first */
    t3 = start_claimer(&w3, st, cid, 1, 3);
    apr_sleep(apr_time_from_msec(200));
    ck_assert(!w3.done);
    t2 = start_claimer(&w2, st, cid, 1, 2);
    ck_assert(wait_for(&w2.done, NULL));
    apr_thread_join(&rv, t2);
    ck_assert_int_eq(w2.rc, JPIP_SSTORE_OK);
    ck_assert(!w3.done);
    jpip_sstore_release(w2.c, 1, NULL, 0);
    ck_assert(wait_for(&w3.done, NULL));
    apr_thread_join(&rv, t3);
    ck_assert_int_eq(w3.rc, JPIP_SSTORE_OK);
    jpip_sstore_release(w3.c, 1, NULL, 0);
}
END_TEST

START_TEST(kv_lost_update_only_resends)
{
    jpip_sstore_conf_t conf = conf_of(0, 0);
    jpip_sstore_t *st = make_store(1, &conf);
    const char *cid = open_session(st, "192.0.2.1");
    jpip_sclaim_t *c = claim(st, cid, -1, 0), *d;
    apr_hash_index_t *hi;

    send_bins(c, 1, 3);
    jpip_sstore_release(c, 1, NULL, 0);
    c = claim(st, cid, -1, 0);
    send_bins(c, 10, 12);
    /* another host writes the record meanwhile (its version moves on) */
    for (hi = apr_hash_first(pool, fake.h); hi != NULL; hi = apr_hash_next(hi)) {
        const char *k = apr_hash_this_key(hi);
        fake_entry_t *e = apr_hash_this_val(hi);
        if (strncmp(k, "jpip-s:", 7) == 0) {
            ((jpip_session_t *)(void *)e->data)->version += 5;
        }
    }
    jpip_sstore_release(c, 1, NULL, 0);
    ck_assert_uint_eq(counters.lost_updates, 1);
    /* the stale write did not grow the model: 10-12 will be sent again,
     * and what was held before stays */
    d = claim(st, cid, -1, 0);
    ck_assert(held(d, 2) && !held(d, 11));
    jpip_sstore_release(d, 1, NULL, 0);
}
END_TEST

START_TEST(kv_down_and_damaged)
{
    jpip_sstore_conf_t conf = conf_of(0, 0);
    jpip_sstore_t *st = make_store(1, &conf);
    const char *cid = open_session(st, "192.0.2.1"), *target;
    char out[JPIP_CID_LEN + 1];
    jpip_sclaim_t *c;
    jpip_err_t err;
    apr_hash_index_t *hi;

    fake.down = 1;
    ck_assert_int_eq(jpip_sstore_target(st, cid, pool, &target, &err), JPIP_SSTORE_DOWN);
    ck_assert_ptr_nonnull(strstr(err.msg, "fake 127.0.0.1:1"));
    ck_assert_int_eq(jpip_sstore_open(st, NULL, "a.jp2", "t", "192.0.2.1", 0, out, &err),
                     JPIP_SSTORE_DOWN);
    ck_assert_int_eq(try_claim(st, cid, &c), JPIP_SSTORE_DOWN);
    fake.down = 0;
    /* garbage under the session's key: gone, not trusted */
    for (hi = apr_hash_first(pool, fake.h); hi != NULL; hi = apr_hash_next(hi)) {
        fake_entry_t *e = apr_hash_this_val(hi);
        if (strncmp(apr_hash_this_key(hi), "jpip-s:", 7) == 0) {
            memset(e->data + 8, 0xff, e->len - 8);
        }
    }
    ck_assert_int_eq(try_claim(st, cid, &c), JPIP_SSTORE_GONE);
    for (hi = apr_hash_first(pool, fake.h); hi != NULL; hi = apr_hash_next(hi)) {
        fake_entry_t *e = apr_hash_this_val(hi);
        if (strncmp(apr_hash_this_key(hi), "jpip-s:", 7) == 0) {
            e->len = 10;
        }
    }
    ck_assert_int_eq(try_claim(st, cid, &c), JPIP_SSTORE_GONE);
}
END_TEST

START_TEST(tid_change_empties)
{
    jpip_sstore_conf_t conf = conf_of(4, 0);
    jpip_sstore_t *st = make_store(_i, &conf);
    const char *cid = open_session(st, "192.0.2.1");
    jpip_sclaim_t *c = claim(st, cid, -1, 0);
    jpip_err_t err;

    send_bins(c, 1, 3);
    jpip_sstore_release(c, 1, NULL, 0);
    ck_assert_int_eq(jpip_sstore_claim(st, pool, cid, -1, 0, "tid2", NULL, NULL, NULL, &c, &err),
                     JPIP_SSTORE_OK);
    ck_assert(c->tid_changed && !held(c, 2));
    jpip_sstore_release(c, 1, NULL, 0);
}
END_TEST

START_TEST(client_groups)
{
    char g[48];

    jpip_client_group("192.0.2.77", 24, 64, g);
    ck_assert_str_eq(g, "192.0.2.0/24");
    jpip_client_group("192.0.2.77", 32, 64, g);
    ck_assert_str_eq(g, "192.0.2.77");
    jpip_client_group("2001:db8:aaaa:bbbb:1:2:3:4", 32, 48, g);
    ck_assert_str_eq(g, "2001:db8:aaaa::/48");
    jpip_client_group("2001:db8::1", 32, 128, g);
    ck_assert_str_eq(g, "2001:db8::1");
    jpip_client_group("not an address", 24, 64, g);
    ck_assert_str_eq(g, "not an address");
}
END_TEST

static Suite *sstore_suite(void)
{
    Suite *s = suite_create("sstore");
    TCase *tc = tcase_create("every backend");
    TCase *t1 = tcase_create("one backend");

    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, open_claim_record_release, 0, BACKENDS);
    tcase_add_loop_test(tc, abort_counts_nothing, 0, BACKENDS);
    tcase_add_loop_test(tc, cid_parsing, 0, BACKENDS);
    tcase_add_loop_test(tc, expiry, 0, BACKENDS);
    tcase_add_loop_test(tc, per_client_limit, 0, BACKENDS);
    tcase_add_loop_test(tc, preemption, 0, BACKENDS);
    tcase_add_loop_test(tc, qid_order, 0, BACKENDS);
    tcase_add_loop_test(tc, tid_change_empties, 0, BACKENDS);
    suite_add_tcase(s, tc);
    tcase_set_timeout(t1, 60);
    tcase_add_checked_fixture(t1, setup, teardown);
    tcase_add_test(t1, fair_eviction);
    tcase_add_test(t1, full_store_busy_sessions);
    tcase_add_loop_test(t1, reclaim_dead_owner, 0, 2);
    tcase_add_test(t1, kv_lapsed_lease);
    tcase_add_test(t1, kv_lost_update_only_resends);
    tcase_add_test(t1, kv_down_and_damaged);
    tcase_add_test(t1, client_groups);
    suite_add_tcase(s, t1);
    return s;
}

int main(void)
{
    return tu_main(sstore_suite, CK_ENV);
}
