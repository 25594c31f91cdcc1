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
#include "fileid.h"
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

/* The numeric and On/Off directives (config.c): their defaults, forms and
 * ranges are one table there, read through jpip_dir_get/jpip_srv_get. */
typedef enum {
    /* per <Location> */
    JPIP_V_MAX_BODY,        /* JPIPMaxRequestBody: bytes */
    JPIP_V_MAX_RESPONSE,    /* JPIPMaxResponseBytes: bytes, 0 = no limit */
    JPIP_V_MAX_FIELDS,      /* JPIPMaxFields */
    JPIP_V_MAX_FIELD_LEN,   /* JPIPMaxFieldLength: bytes */
    JPIP_V_MAX_MODEL_ITEMS, /* JPIPMaxModelItems */
    JPIP_V_MAX_BINS,        /* JPIPMaxBins */
    JPIP_V_IIIF_MAX_WIDTH,  /* JPIPIIIFMaxWidth: pixels */
    JPIP_V_IIIF_MAX_HEIGHT, /* JPIPIIIFMaxHeight: pixels */
    JPIP_V_IIIF_MAX_AREA,   /* JPIPIIIFMaxArea: pixels */
    JPIP_V_IIIF_MEMORY,     /* JPIPIIIFRenderMemory: bytes */
    JPIP_V_IIIF_TIME,       /* JPIPIIIFRenderTime: microseconds */
    JPIP_V_IIIF_RENDERS,    /* JPIPIIIFMaxRenders: per process */
    JPIP_V_IIIF_QUALITY,    /* JPIPIIIFJPEGQuality */
    /* per server: a virtual host may set its own */
    JPIP_V_SESSIONS_PER_CLIENT, /* JPIPMaxSessionsPerClient, 0 = no limit */
    JPIP_V_INDEX_MEMORY,        /* JPIPIndexMaxMemory: bytes */
    JPIP_V_INDEX_TIME,          /* JPIPIndexMaxTime: microseconds */
    /* global: read once per process, refused in a <VirtualHost> */
    JPIP_V_INDEX_ENTRIES,   /* JPIPIndexCacheEntries */
    JPIP_V_INDEX_BUILDS,    /* JPIPIndexMaxBuilds */
    JPIP_V_RENDITION,       /* JPIPRendition: 0 or 1 */
    JPIP_V_RENDITION_AFTER, /* JPIPRenditionAfter */
    JPIP_V_SESSIONS,        /* JPIPSessions */
    JPIP_V_SESSION_MEMORY,  /* JPIPSessionMemory: bytes */
    JPIP_V_SESSION_TIMEOUT, /* JPIPSessionTimeout: microseconds */
    JPIP_V_IIIF_HEAP,       /* JPIPIIIFHeapRetain: bytes, 0 = the C library's policy */
    JPIP_NVARS
} jpip_var_t;

/* Per-directory (per-<Location>) configuration. Every field has an
 * explicit unset value so the merge can tell "not said" from "said". */
typedef struct jpip_dir_conf_t {
    const char *root;                 /* JPIPRoot: the archive directory; NULL = unset */
    const char *location;             /* the <Location> path JPIPRoot was given in */
    int allow_outside_links;          /* JPIPFollowOutsideLinks; -1 = unset */
    int content_length;               /* JPIPContentLength; JPIP_CL_UNSET */
    apr_array_header_t *cors_origins; /* JPIPCORSOrigin (const char *); NULL = unset */
    const char *target;               /* JPIPTarget: image for requests naming none; NULL =
                                         unset, "" = none */
    const char *target_location;      /* the <Location> JPIPTarget was given in */
    jpip_viewer_conf_t viewer;        /* JPIPViewer* (viewer.h) */
    const char *iiif_cache_control;   /* JPIPIIIFCacheControl (iiif.c); NULL = unset */
    apr_int64_t num[JPIP_NVARS];      /* the numeric directives given here; -1 = unset */
} jpip_dir_conf_t;

/* JPIPIIIFCacheControl's default (docs/iiif.md). */
#define JPIP_DEFAULT_IIIF_CACHE_CONTROL "public, max-age=86400"

/* Server-wide configuration. */
typedef struct jpip_srv_conf_t {
    const char *index_dir;       /* JPIPIndexCache: directory, "" = none, NULL = unset (default) */
    apr_int64_t num[JPIP_NVARS]; /* the numeric directives given here; -1 = unset */
} jpip_srv_conf_t;

/* The value in force of a per-<Location> directive (its default unless
 * given), and of a server or global one for server s. */
apr_int64_t jpip_dir_get(const jpip_dir_conf_t *c, jpip_var_t v);
apr_int64_t jpip_srv_get(const server_rec *s, jpip_var_t v);

/* The directive's name. */
const char *jpip_var_name(jpip_var_t v);

/* The module's configuration hooks and directives (config.c). */
void *jpip_dir_create(apr_pool_t *p, char *dir);
void *jpip_dir_merge(apr_pool_t *p, void *basev, void *addv);
void *jpip_srv_create(apr_pool_t *p, server_rec *s);
void *jpip_srv_merge(apr_pool_t *p, void *basev, void *addv);
extern const command_rec jpip_cmds[];

extern module AP_MODULE_DECLARE_DATA jpip_module;

/* ------------------------------------------------ targets (targets.c) */

/* An indexed target, shared by the requests of one process. */
typedef struct jpip_tgt_t {
    const char *path; /* absolute, symbolic links resolved */
    apr_uint64_t size;
    jpip_fileid_t id; /* the version indexed (fileid.h) */
    const char *tid;  /* JPIP target id of this version */
    const jpip_index_t *ix;
    const jpip_box_layout_t *layout; /* JP2-family files; NULL for raw codestreams */
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
 * directory) when this process has no index of the file now at t's path:
 * the file is opened for the request and the entry is used only when the
 * identity of the open descriptor (fileid.h) is the one indexed. The
 * target stays valid until r's pool is cleared; jpip_targets_file gives
 * the request's descriptor, from which every byte of the answer is read.
 * Errors fill err (JPIP_E_FORBIDDEN: the file cannot be read by the
 * server; JPIP_E_NOTFOUND: it is gone; the file is not JPEG 2000, a
 * limit, I/O). */
jpip_code_t jpip_targets_get(request_rec *r, const jpip_target_t *t, const jpip_tgt_t **out,
                             jpip_err_t *err);
apr_file_t *jpip_targets_file(request_rec *r);
/* Close the request's descriptor (a request that looks at many targets and
 * reads none of them further: one descriptor at a time). The targets got
 * stay valid; jpip_targets_file is NULL until the next jpip_targets_get. */
void jpip_targets_file_close(request_rec *r);

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

/* Add the CORS headers of JPIPCORSOrigin when the request's Origin is
 * allowed (handler.c). */
void jpip_add_cors(request_rec *r, const jpip_dir_conf_t *conf, int preflight);

/* Show the counters in mod_status's server-status (status.c). */
void jpip_status_register(void);

/* JPIPMaxSessionsPerClient in force (0: no limit). */
int jpip_sessions_per_client(server_rec *s);

/* The directive that sets limit, or NULL for a limit no directive sets. */
const char *jpip_limit_directive(jpip_limit_t limit);

/* The index cache directory in force for s ("" or NULL: none). */
const char *jpip_index_dir(server_rec *s);

#endif /* MOD_JPIP_H */
