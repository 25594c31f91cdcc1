/* mod_jpip: the session store.
 *
 * Sessions live in fixed-size slots of one shared-memory segment, created
 * by the parent at post_config and inherited by every child, guarded by a
 * global mutex registered as "jpip-session" (so the Mutex directive can
 * choose its mechanism). Segment and mutex are kept in the process pool
 * across graceful restarts, so sessions survive them and old and new
 * generations of children share one lock.
 *
 * The interface is small on purpose (find, create, remove, expire, plus
 * lock/unlock around them) so that another backend, such as httpd's socache
 * providers for a cluster of hosts, can stand behind it. Every function
 * except jpip_store_lock itself must be called with the store locked, and
 * the lock is never held while sending. A request that has claimed a
 * session (jpip_store_claim) owns the record until it sets busy back to 0
 * under the lock: meanwhile it may change the model without the lock, and
 * nothing else frees or reuses the slot. (A socache backend would claim
 * by a lease in the shared record and write the model back when the
 * request ends.)
 */
#ifndef JPIP_STORE_H
#define JPIP_STORE_H

#include <httpd.h>
#include <http_config.h>

#include "session.h"

typedef struct jpip_store_conf_t {
    int slots;                /* JPIPSessions */
    apr_size_t memory;        /* JPIPSessionMemory: bytes for all sessions */
    apr_interval_time_t idle; /* JPIPSessionTimeout */
} jpip_store_conf_t;

/* Counters kept in the shared segment (the status page). */
typedef struct jpip_store_stats_t {
    apr_uint64_t sessions;          /* open now */
    apr_uint64_t channels;          /* open now */
    apr_uint64_t slots;             /* capacity */
    apr_uint64_t created;           /* sessions ever created */
    apr_uint64_t evicted;           /* closed to make room */
    apr_uint64_t expired;           /* closed for idleness */
    apr_uint64_t refused;           /* cnew refused: no room */
    apr_uint64_t reclaimed;         /* taken back from a process that died owning them */
    apr_uint64_t requests;          /* JPIP requests answered */
    apr_uint64_t bytes;             /* JPIP message bytes sent */
    apr_uint64_t index_hits;        /* targets found indexed in a process */
    apr_uint64_t index_builds;      /* targets indexed or mapped from the cache */
    apr_uint64_t iiif_renders;      /* IIIF images rendered */
    apr_uint64_t iiif_render_us;    /* their render and encode time, microseconds */
    apr_uint64_t iiif_bytes;        /* their encoded bytes */
    apr_uint64_t iiif_not_modified; /* IIIF answers the client had (304) */
    apr_uint64_t iiif_busy;         /* IIIF renders refused at JPIPIIIFMaxRenders (503) */
    apr_uint64_t mem_used;          /* bytes of session models in use */
    apr_uint64_t mem_limit;         /* bytes of the segment */
} jpip_store_stats_t;

#define JPIP_STAT_REQUESTS 0
#define JPIP_STAT_BYTES 1
#define JPIP_STAT_INDEX_HITS 2
#define JPIP_STAT_INDEX_BUILDS 3
#define JPIP_STAT_IIIF_RENDERS 4
#define JPIP_STAT_IIIF_RENDER_US 5
#define JPIP_STAT_IIIF_BYTES 6
#define JPIP_STAT_IIIF_NOT_MODIFIED 7
#define JPIP_STAT_IIIF_BUSY 8

/* pre_config: register the mutex type. */
int jpip_store_pre_config(apr_pool_t *pconf);
/* post_config (real pass): create, or keep from the previous generation,
 * the segment and the mutex. */
int jpip_store_post_config(apr_pool_t *pconf, server_rec *s, const jpip_store_conf_t *conf);
/* child_init: attach to the mutex. */
void jpip_store_child_init(apr_pool_t *p, server_rec *s);
/* Is the store there (post_config succeeded)? */
int jpip_store_ready(void);

void jpip_store_lock(void);
void jpip_store_unlock(void);

/* The session holding channel cid, or NULL (unknown, closed or expired).
 * Constant time: a channel id names its slot (jpip_store_new_cid). */
jpip_session_t *jpip_store_find(const char *cid);

/* A new channel id for session s: its slot in 8 hex digits, then 96
 * random bits in hex (JPIP_CID_LEN characters and a NUL into out). The
 * slot prefix only spares a search; the random part is what makes a
 * channel id impossible to guess. JPIP_E_IO if there are no random bytes. */
jpip_code_t jpip_store_new_cid(const jpip_session_t *s, char *out, jpip_err_t *err);

/* A new session for target/tid opened by client, in a free slot (after
 * expiring idle ones, evicting the least recently used idle session if
 * none is free). NULL with err set when every slot is busy, or when client
 * already has max_per_client sessions (0: no limit). */
jpip_session_t *jpip_store_create(const char *target, const char *tid, const char *client,
                                  int max_per_client, jpip_err_t *err);

/* Claim session s for the request numbered seq of this process: it owns
 * the record until it sets busy back to 0. Under the lock. */
void jpip_store_claim(jpip_session_t *s, apr_uint64_t seq);

/* Whether s is busy for a process that no longer exists (killed in the
 * middle of an answer, by a crash or a hard restart). Such a session is
 * given up: its model may be half merged, so it is emptied, and it is idle
 * again. Returns 1 if so. Under the lock. */
int jpip_store_reclaim(jpip_session_t *s);

/* Close the session and free its slot; a busy session's slot is freed by
 * the request that owns it, when it ends. */
void jpip_store_remove(jpip_session_t *s);

/* Close the sessions idle for longer than the timeout (never a busy one). */
void jpip_store_expire(apr_time_t now);

/* Add n to a counter (JPIP_STAT_*); may be called unlocked. */
void jpip_store_count(int which, apr_uint64_t n);

/* A snapshot of the counters. */
void jpip_store_stats(jpip_store_stats_t *st);

#endif /* JPIP_STORE_H */
