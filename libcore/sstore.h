/* mod_jpip: the session store, a layer of its own (protocol notes E).
 *
 * The store keeps session records (session.h) and gives a request its turn
 * on one: it finds a channel's session, opens channels and sessions within
 * the limits (expiry, fair eviction, sessions per client), claims a
 * session for one request at a time (qid order, pre-emption, waiting with
 * a bounded backoff), records what was sent, and gives the session back.
 * The semantics live here, in libcore; a backend is a table of operations
 * (jpip_sstore_ops_t) behind them:
 *
 *   shm   fixed-size slots in one memory region shared by the processes of
 *         one host, under a lock the caller supplies (the httpd glue: a
 *         global mutex). The claiming request owns the slot and merges what
 *         it sends into it in place.
 *   kv    any key-value cache with expiring entries and no compare-and-swap
 *         (the httpd glue: a socache provider such as redis or memcache),
 *         reached through jpip_kv_t, so that several hosts share sessions.
 *         The claiming request works on a private copy and writes it back
 *         with a version; a lost update can only cause resends (see
 *         sstore_kv.c and docs/sessions.md).
 *
 * What counts as delivered: the messages of an answer that completed.
 * jpip_sclaim_record merges sent messages into the claimed record as the
 * answer goes; jpip_sstore_release with delivered = 0 (the connection was
 * aborted or a write failed) puts the model back as it was when the answer
 * began, so none of that answer's messages count as held.
 */
#ifndef JPIP_SSTORE_H
#define JPIP_SSTORE_H

#include <apr_pools.h>
#include <apr_time.h>

#include "jpip_err.h"
#include "model.h"
#include "session.h"

/* Outcomes of the store beyond jpip_code_t's: a claim returns JPIP_OK or
 * one of these through jpip_sstore_claim's result. */
typedef enum {
    JPIP_SSTORE_OK = 0,
    JPIP_SSTORE_GONE,      /* no such channel (unknown, closed, evicted, expired) */
    JPIP_SSTORE_PREEMPTED, /* a newer request came while this one waited */
    JPIP_SSTORE_BUSY,      /* the session stayed busy past the wait bound */
    JPIP_SSTORE_FULL,      /* no room for a session, or the client holds its share */
    JPIP_SSTORE_DOWN,      /* the backend is unreachable or answered garbage */
    JPIP_SSTORE_ERROR      /* anything else (err says what) */
} jpip_sstore_rc_t;

typedef struct jpip_sstore_conf_t {
    apr_uint32_t slots;           /* sessions kept at once (shm); 0: no bound (kv) */
    apr_size_t record_bytes;      /* bytes of one session record (jpip_session_bytes_for) */
    apr_interval_time_t idle;     /* idle time after which a session expires */
    int max_per_client;           /* sessions one client group may hold (0: no limit) */
    apr_interval_time_t wait_max; /* how long a request waits for its turn */
    apr_interval_time_t qid_wait; /* how long a request ahead in qid waits */
    apr_interval_time_t lease;    /* kv: a claim lapses unless renewed this often */
} jpip_sstore_conf_t;

/* Counters, shared by the processes of a host (atomically updated when
 * the caller puts them in shared memory). */
typedef struct jpip_sstore_counters_t {
    volatile apr_uint64_t created, evicted, expired, refused, reclaimed, lost_updates;
} jpip_sstore_counters_t;

typedef struct jpip_sstore_stats_t {
    apr_uint64_t sessions, channels, slots, mem_used; /* 0 where the backend cannot tell */
} jpip_sstore_stats_t;

typedef struct jpip_sstore_t jpip_sstore_t;
typedef struct jpip_sclaim_t jpip_sclaim_t;

/* One request's turn on a session. */
struct jpip_sclaim_t {
    jpip_sstore_t *st;
    apr_pool_t *pool;
    char cid[JPIP_CID_LEN + 1];
    apr_uint64_t seq;    /* this request's turn */
    jpip_session_t *s;   /* the record it owns: the slot (shm) or a private copy (kv) */
    apr_size_t size;     /* bytes of *s */
    jpip_model_t *snap;  /* the model when the answer began (after the request's fields) */
    int reclaimed;       /* the previous owner was gone: the model was emptied */
    int tid_changed;     /* the target changed: the model was emptied */
    int cut;             /* the request took something out of the model */
    apr_uint64_t sent;   /* message bytes recorded */
    jpip_model_t *spill; /* the model while it may not fit the record (model.h's spill) */
    const jpip_model_resolver_t *res; /* the target's layer counts (a copy), or NULL */
    void *priv;                       /* the backend's */
};

/* A backend. Every operation returns a jpip_sstore_rc_t and fills err
 * with a sentence on failure. */
typedef struct jpip_sstore_ops_t {
    const char *name;
    /* the target (allocated from p) of channel cid's session */
    jpip_sstore_rc_t (*target)(jpip_sstore_t *st, const char *cid, apr_pool_t *p,
                               const char **target, jpip_err_t *err);
    /* open a channel: on cid's session, or (cid NULL) on a new session for
     * target/tid opened by client. The new channel id goes to out. */
    jpip_sstore_rc_t (*open)(jpip_sstore_t *st, const char *cid, const char *target,
                             const char *tid, const char *client, int jpt,
                             char out[JPIP_CID_LEN + 1], jpip_err_t *err);
    /* wait for the request's turn on cid's session and claim it; fills c */
    jpip_sstore_rc_t (*claim)(jpip_sstore_t *st, jpip_sclaim_t *c, apr_int64_t qid, int wait,
                              jpip_err_t *err);
    /* has a newer request asked to pre-empt c? (cheap: called between batches) */
    int (*preempted)(jpip_sclaim_t *c);
    /* the record's changes so far may be published (kv: written back and the
     * lease renewed); shm: nothing to do */
    jpip_sstore_rc_t (*sync)(jpip_sclaim_t *c, jpip_err_t *err);
    /* give the session back; close the channels named ("*": all of them) */
    void (*release)(jpip_sclaim_t *c, const char *const *cclose, int nclose);
    void (*stats)(jpip_sstore_t *st, jpip_sstore_stats_t *out);
} jpip_sstore_ops_t;

struct jpip_sstore_t {
    const jpip_sstore_ops_t *ops;
    jpip_sstore_conf_t conf;
    jpip_sstore_counters_t *counters;
    void *impl;
};

/* ---- the operations, through the table --------------------------- */

jpip_sstore_rc_t jpip_sstore_target(jpip_sstore_t *st, const char *cid, apr_pool_t *p,
                                    const char **target, jpip_err_t *err);
jpip_sstore_rc_t jpip_sstore_open(jpip_sstore_t *st, const char *cid, const char *target,
                                  const char *tid, const char *client, int jpt,
                                  char out[JPIP_CID_LEN + 1], jpip_err_t *err);

/* Claim cid's session for one request (qid -1: none; wait: wait=yes, do
 * not pre-empt the request streaming now), then bring its model up to
 * date: emptied if the target's tid changed, the request's model and need
 * fields applied (either may be NULL; a field that does not fit is
 * ignored), and a snapshot taken for planning and for an answer that
 * fails. *out is allocated from pool. */
jpip_sstore_rc_t jpip_sstore_claim(jpip_sstore_t *st, apr_pool_t *pool, const char *cid,
                                   apr_int64_t qid, int wait, const char *tid,
                                   const jpip_model_spec_t *model, const jpip_model_spec_t *need,
                                   const jpip_model_resolver_t *res, jpip_sclaim_t **out,
                                   jpip_err_t *err);

/* The model to plan the answer with (the snapshot: read only). */
const jpip_model_t *jpip_sclaim_model(const jpip_sclaim_t *c);

/* Record n messages sent (bytes: their message bytes) in the claimed
 * record. JPIP_SSTORE_FULL when the model cannot hold them: the session is
 * closed (the answer should end with EOR 6 rather than send twice). */
jpip_sstore_rc_t jpip_sclaim_record(jpip_sclaim_t *c, const jpip_model_sent_t *sent, apr_size_t n,
                                    apr_uint64_t bytes, jpip_err_t *err);

/* Whether a newer request pre-empts c, or the session was closed. */
int jpip_sclaim_preempted(jpip_sclaim_t *c);
int jpip_sclaim_closed(jpip_sclaim_t *c);

/* Publish what was recorded (kv), renewing the claim. */
jpip_sstore_rc_t jpip_sclaim_sync(jpip_sclaim_t *c, jpip_err_t *err);

/* The answer is over. delivered = 0 when it did not complete (connection
 * aborted, a write failed): the model goes back to the snapshot, so none of
 * its messages count as held. Then the session is given back and the
 * channels in cclose (n of them, "*" for all) are closed. */
void jpip_sstore_release(jpip_sclaim_t *c, int delivered, const char *const *cclose, int nclose);

void jpip_sstore_stats(jpip_sstore_t *st, jpip_sstore_stats_t *out);

/* ---- helpers shared by the backends ------------------------------ */

/* The start time of process pid (clock ticks since boot, from /proc), or 0
 * if it cannot be told. With kill(pid, 0) it tells a live owner from a
 * process that reused its pid. */
apr_uint64_t jpip_proc_start(long pid);

/* jpip_proc_start of this process, looked up once per process. */
apr_uint64_t jpip_proc_self_start(void);

/* Whether the process that claimed s (owner, owner_start) is gone. */
int jpip_sstore_owner_gone(const jpip_session_t *s);

/* The group a client address counts in for limits and eviction: the
 * address cut to its first v4_prefix (IPv4) or v6_prefix (IPv6) bits, as
 * "192.0.2.0/24" or "2001:db8:0:1::/64" (the whole address when the prefix
 * is the full length or 0), into out (48 bytes). A string that is not an
 * address is kept as it is (cut to 47 bytes). */
void jpip_client_group(const char *addr, int v4_prefix, int v6_prefix, char out[48]);

/* Whether cid can be a channel id: exactly JPIP_CID_LEN characters of
 * jpip_cid_alphabet. */
int jpip_cid_valid(const char *cid);

/* Atomic adds to the counters. */
void jpip_sstore_count(jpip_sstore_t *st, volatile apr_uint64_t *counter, apr_uint64_t n);

/* ---- backends ---------------------------------------------------- */

/* A lock over the shm region, shared by every process using it. */
typedef struct jpip_sstore_lock_t {
    void *ctx;
    void (*lock)(void *ctx);
    void (*unlock)(void *ctx);
} jpip_sstore_lock_t;

/* Bytes of the region the shm backend needs for conf. */
apr_size_t jpip_sstore_shm_bytes(const jpip_sstore_conf_t *conf);

/* The shm backend over region (jpip_sstore_shm_bytes(conf) bytes, 8-byte
 * aligned, shared by every process that uses the store); init: format it
 * (else it is taken as it is, e.g. after a graceful restart: the sessions
 * are kept). The store and its state are allocated from pool. */
jpip_code_t jpip_sstore_shm_create(apr_pool_t *pool, void *region, int init,
                                   const jpip_sstore_conf_t *conf, const jpip_sstore_lock_t *lock,
                                   jpip_sstore_counters_t *counters, jpip_sstore_t **out,
                                   jpip_err_t *err);

/* Whether a shm region formatted earlier suits conf (same slots and record
 * size): sessions can be kept across a restart. */
int jpip_sstore_shm_compatible(const void *region, const jpip_sstore_conf_t *conf);

/* The entry written to tell an absent store from an absent entry (and,
 * in the glue, to try a fresh connection): value "1", a minute's expiry. */
#define JPIP_KV_PROBE_KEY "jpip-probe"

/* A key-value cache: the operations of httpd's socache providers. */
typedef struct jpip_kv_t {
    void *ctx;
    const char *name; /* e.g. "redis 127.0.0.1:6379", for messages */
    /* store len bytes under key until expiry (absolute) */
    apr_status_t (*store)(void *ctx, const char *key, const unsigned char *val, apr_size_t len,
                          apr_time_t expiry, apr_pool_t *p);
    /* retrieve into buf (cap bytes), *len set; APR_NOTFOUND when absent */
    apr_status_t (*retrieve)(void *ctx, const char *key, unsigned char *buf, apr_size_t cap,
                             apr_size_t *len, apr_pool_t *p);
    apr_status_t (*remove)(void *ctx, const char *key, apr_pool_t *p);
} jpip_kv_t;

/* The kv backend over kv; state from pool. */
jpip_code_t jpip_sstore_kv_create(apr_pool_t *pool, const jpip_kv_t *kv,
                                  const jpip_sstore_conf_t *conf, jpip_sstore_counters_t *counters,
                                  jpip_sstore_t **out, jpip_err_t *err);

#endif /* JPIP_SSTORE_H */
