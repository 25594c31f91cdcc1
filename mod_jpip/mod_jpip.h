/* mod_jpip: shared declarations of the httpd glue.
 *
 * mod_jpip is the only part of the project that includes httpd headers. It
 * owns configuration, the handler hook, the per-process cache of target
 * indexes and (later) the shared-memory session store; every JPIP semantic
 * lives in libcore.
 */
#ifndef MOD_JPIP_H
#define MOD_JPIP_H

#include <httpd.h>
#include <http_config.h>

#include "box.h"
#include "index.h"
#include "target.h"
#include "viewer.h"

#define JPIP_MODULE_VERSION "0.1.0"

/* Log tags: every line starts "JPIPnnnn: " so admins can grep and filter. */
#define JPIPLOGNO(n) "JPIP" #n ": "

/* Content-Length policy (JPIPContentLength). */
#define JPIP_CL_UNSET -1
#define JPIP_CL_AUTO 0   /* only for HTTP/1.0 clients; chunked otherwise */
#define JPIP_CL_ALWAYS 1 /* plan twice and send Content-Length to everyone */

/* Per-directory (per-<Location>) configuration. Every field has an
 * explicit unset value so the merge can tell "not said" from "said". */
typedef struct jpip_dir_conf_t {
    const char *root;                 /* JPIPRoot: the archive directory; NULL = unset */
    const char *location;             /* the <Location> path JPIPRoot was given in */
    int allow_outside_links;          /* JPIPFollowOutsideLinks; -1 = unset */
    apr_off_t max_body;               /* JPIPMaxRequestBody; -1 = unset */
    int content_length;               /* JPIPContentLength; JPIP_CL_UNSET */
    apr_array_header_t *cors_origins; /* JPIPCORSOrigin (const char *); NULL = unset */
    apr_int64_t max_response;         /* JPIPMaxResponseBytes; -1 = unset, 0 = none */
    int max_fields;                   /* JPIPMaxFields; -1 = unset */
    apr_int64_t max_field_len;        /* JPIPMaxFieldLength; -1 = unset */
    int max_model_items;              /* JPIPMaxModelItems; -1 = unset */
    apr_int64_t max_bins;             /* JPIPMaxBins; -1 = unset */
    const char *target;               /* JPIPTarget: image for requests naming none; NULL =
                                         unset, "" = none */
    const char *target_location;      /* the <Location> JPIPTarget was given in */
    jpip_viewer_conf_t viewer;        /* JPIPViewer* (viewer.h) */
    /* the IIIF handler (iiif.c); -1 / NULL = unset */
    const char *iiif_cache_control; /* JPIPIIIFCacheControl */
    apr_int64_t iiif_max_width;     /* JPIPIIIFMaxWidth */
    apr_int64_t iiif_max_height;    /* JPIPIIIFMaxHeight */
    apr_int64_t iiif_max_area;      /* JPIPIIIFMaxArea */
    apr_int64_t iiif_render_memory; /* JPIPIIIFRenderMemory: bytes */
    apr_interval_time_t iiif_time;  /* JPIPIIIFRenderTime */
    int iiif_max_renders;           /* JPIPIIIFMaxRenders: per process */
    int iiif_jpeg_quality;          /* JPIPIIIFJPEGQuality */
} jpip_dir_conf_t;

/* IIIF defaults (docs/iiif.md). */
#define JPIP_DEFAULT_IIIF_CACHE_CONTROL "public, max-age=86400"
#define JPIP_DEFAULT_IIIF_MAX_SIDE 8192
#define JPIP_DEFAULT_IIIF_MAX_AREA (4096 * 4096)
#define JPIP_DEFAULT_IIIF_RENDER_MEMORY ((apr_int64_t)512 << 20)
#define JPIP_DEFAULT_IIIF_TIME apr_time_from_sec(30)
#define JPIP_DEFAULT_IIIF_RENDERS 4
#define JPIP_DEFAULT_IIIF_JPEG_QUALITY 90

/* Request defaults (docs/security.md). */
#define JPIP_DEFAULT_MAX_FIELDS 64
#define JPIP_DEFAULT_MAX_FIELD_LEN (256 * 1024)
#define JPIP_DEFAULT_MAX_MODEL_ITEMS 16384
#define JPIP_DEFAULT_MAX_BINS (1 << 20)

/* Server-wide configuration. */
typedef struct jpip_srv_conf_t {
    const char *index_dir;      /* JPIPIndexCache: directory, "" = none, NULL = unset (default) */
    int max_targets;            /* JPIPIndexCacheEntries: targets kept per process; -1 = unset */
    int sessions;               /* JPIPSessions: session slots; -1 = unset */
    apr_int64_t session_memory; /* JPIPSessionMemory: bytes; -1 = unset */
    apr_interval_time_t session_idle; /* JPIPSessionTimeout; -1 = unset */
    int sessions_per_client;          /* JPIPMaxSessionsPerClient; -1 = unset */
    apr_int64_t index_memory;         /* JPIPIndexMaxMemory; -1 = unset */
    apr_interval_time_t index_time;   /* JPIPIndexMaxTime; -1 = unset */
    int index_builds;                 /* JPIPIndexMaxBuilds: per process; -1 = unset */
    int rendition;                    /* JPIPRendition: 0 off, 1 on; -1 = unset */
    int rendition_after;              /* JPIPRenditionAfter: requests; -1 = unset */
} jpip_srv_conf_t;

/* Session defaults. */
#define JPIP_DEFAULT_SESSIONS 256
#define JPIP_DEFAULT_SESSION_MEMORY (64 * 1024 * 1024)
#define JPIP_DEFAULT_SESSION_IDLE apr_time_from_sec(300)
#define JPIP_DEFAULT_SESSIONS_PER_CLIENT 32
#define JPIP_DEFAULT_INDEX_MEMORY ((apr_int64_t)1 << 30)
#define JPIP_DEFAULT_INDEX_TIME apr_time_from_sec(120)
#define JPIP_DEFAULT_INDEX_BUILDS 2
#define JPIP_DEFAULT_RENDITION_AFTER 8

extern module AP_MODULE_DECLARE_DATA jpip_module;

/* ------------------------------------------------ targets (targets.c) */

/* An indexed target, shared by the requests of one process. */
typedef struct jpip_tgt_t {
    const char *path; /* absolute, symbolic links resolved */
    apr_uint64_t size;
    apr_int64_t mtime;
    const char *tid; /* JPIP target id of this version */
    const jpip_index_t *ix;
    const jpip_box_layout_t *layout; /* JP2-family files; NULL for raw codestreams */
    const unsigned char *map;        /* the file mapped read-only, or NULL */
    void *rend;                      /* its rendition once mapped (a jpip_tgt_rend_t *),
                                        set and read atomically: use
                                        jpip_targets_rendition */
} jpip_tgt_t;

/* A target's rendition: mapped, and open for sendfile (the same file). */
typedef struct jpip_tgt_rend_t {
    const struct jpip_rend_t *rd;
    apr_file_t *file;
} jpip_tgt_rend_t;

/* Create the per-process cache (child_init). */
apr_status_t jpip_targets_init(apr_pool_t *pchild, server_rec *s);

/* The indexed target for t, built (or mapped from the index cache
 * directory) when this process has no current index of it. The target
 * stays valid until r's pool is cleared. Errors fill err (the file is not
 * JPEG 2000, a limit, I/O). */
jpip_code_t jpip_targets_get(request_rec *r, const jpip_target_t *t, const jpip_tgt_t **out,
                             jpip_err_t *err);

/* The target's rendition (rendition.h) if this process has one mapped,
 * else NULL. Counts the request: once a process has served a target
 * JPIPRenditionAfter times it looks for the rendition in the index cache
 * (again at most once a second) and, when there is none, builds it in a
 * background thread while requests go on without it. */
const jpip_tgt_rend_t *jpip_targets_rendition(request_rec *r, const jpip_tgt_t *tgt);

/* The handler hooks (handler.c, status.c). */
int jpip_handle(request_rec *r);
int jpip_status_handle(request_rec *r);
int jpip_iiif_handle(request_rec *r);

/* The IIIF directives (iiif.c). */
const char *jpip_iiif_cmd(cmd_parms *cmd, void *dconf, const char *arg);

/* Add the CORS headers of JPIPCORSOrigin when the request's Origin is
 * allowed (handler.c). */
void jpip_add_cors(request_rec *r, const jpip_dir_conf_t *conf, int preflight);

/* JPIPMaxSessionsPerClient in force (0: no limit). */
int jpip_sessions_per_client(server_rec *s);

/* The index cache directory in force for s ("" or NULL: none). */
const char *jpip_index_dir(server_rec *s);

#endif /* MOD_JPIP_H */
