/* mod_jpip: the session store's httpd side.
 *
 * The session semantics live in libcore (sstore.h); this file gives them
 * their backend, as JPIPSessionStore chooses:
 *
 *   shm (default)  one shared-memory segment of JPIPSessions slots, made by
 *                  the parent at post_config and inherited by every child,
 *                  under a global mutex registered as "jpip-session" (so the
 *                  Mutex directive can choose its mechanism). Segment and
 *                  mutex live in the process pool, so sessions survive a
 *                  graceful restart that keeps the sizes; a restart that
 *                  changes them frees the old segment.
 *   socache:NAME ARGS  any httpd socache provider (redis, memcache, shmcb,
 *                  dbm, ...) through ap_lookup_provider, so several hosts
 *                  share sessions. Providers that are not safe across
 *                  processes are called under the same mutex.
 *
 * Counters (the status page) are kept in a small shared segment whatever
 * the backend.
 */
#ifndef JPIP_STORE_H
#define JPIP_STORE_H

#include <httpd.h>
#include <http_config.h>

#include "sstore.h"

typedef struct jpip_store_conf_t {
    int slots;                /* JPIPSessions */
    apr_size_t memory;        /* JPIPSessionMemory: bytes for all sessions */
    apr_interval_time_t idle; /* JPIPSessionTimeout */
    int max_per_client;       /* JPIPMaxSessionsPerClient */
} jpip_store_conf_t;

/* Counters kept in the shared segment (the status page). */
typedef struct jpip_store_stats_t {
    apr_uint64_t sessions;          /* open now (shm) */
    apr_uint64_t channels;          /* open now (shm) */
    apr_uint64_t slots;             /* capacity (shm) */
    apr_uint64_t created;           /* sessions ever created */
    apr_uint64_t evicted;           /* closed to make room */
    apr_uint64_t expired;           /* closed for idleness */
    apr_uint64_t refused;           /* cnew refused: no room */
    apr_uint64_t reclaimed;         /* taken back from a process that died owning them */
    apr_uint64_t lost_updates;      /* write-backs that lost a race (socache): resends */
    apr_uint64_t requests;          /* JPIP requests answered */
    apr_uint64_t bytes;             /* JPIP message bytes sent */
    apr_uint64_t index_hits;        /* targets found indexed in a process */
    apr_uint64_t index_builds;      /* targets indexed or mapped from the cache */
    apr_uint64_t iiif_renders;      /* IIIF images rendered */
    apr_uint64_t iiif_render_us;    /* their render and encode time, microseconds */
    apr_uint64_t iiif_bytes;        /* their encoded bytes */
    apr_uint64_t iiif_not_modified; /* IIIF answers the client had (304) */
    apr_uint64_t iiif_busy;         /* IIIF renders refused at JPIPIIIFMaxRenders (503) */
    apr_uint64_t iiif_cropped;      /* IIIF renders decoded from a cropped codestream */
    apr_uint64_t mem_used;          /* bytes of session models in use (shm) */
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
#define JPIP_STAT_IIIF_CROPPED 9

/* JPIPSessionStore and JPIPSessionClientPrefix (server-wide). */
const char *jpip_store_cmd(cmd_parms *cmd, void *dconf, const char *kind, const char *arg);
const char *jpip_store_prefix_cmd(cmd_parms *cmd, void *dconf, const char *v4, const char *v6);

/* pre_config: register the mutex type, reset the directives. */
int jpip_store_pre_config(apr_pool_t *pconf);
/* post_config (real pass): create, or keep from the previous generation,
 * the segment, the mutex and the backend. */
int jpip_store_post_config(apr_pool_t *pconf, server_rec *s, const jpip_store_conf_t *conf);
/* child_init: attach to the mutex. */
void jpip_store_child_init(apr_pool_t *p, server_rec *s);
/* Is the store there (post_config succeeded)? */
int jpip_store_ready(void);

/* The session store, and what to call it in messages ("shm", "redis
 * 127.0.0.1:6379"). */
jpip_sstore_t *jpip_store_sessions(void);
const char *jpip_store_name(void);

/* The group client's address counts in (JPIPSessionClientPrefix). */
void jpip_store_client_group(const char *addr, char out[48]);

/* Add n to a counter (JPIP_STAT_*); may be called unlocked. */
void jpip_store_count(int which, apr_uint64_t n);

/* A snapshot of the counters. */
void jpip_store_stats(jpip_store_stats_t *st);

#endif /* JPIP_STORE_H */
