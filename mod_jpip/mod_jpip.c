/* mod_jpip: a JPIP (ITU-T T.808 | ISO/IEC 15444-9) server for httpd 2.4.
 *
 * This file is the module record: directives, configuration merging and
 * hook registration. The handler is in handler.c, the per-process target
 * cache in targets.c; every JPIP semantic lives in libcore.
 */
#include "mod_jpip.h"

#include <http_core.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>
#include <mpm_common.h>
#include <unixd.h>

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include <apr_strings.h>

#include "store.h"

APLOG_USE_MODULE(jpip);

/* ------------------------------------------------------------------ config */

static void *jpip_dir_create(apr_pool_t *p, char *dir)
{
    jpip_dir_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->root = NULL;
    c->location = dir;
    c->allow_outside_links = -1;
    c->max_body = -1;
    c->content_length = JPIP_CL_UNSET;
    c->cors_origins = NULL;
    c->max_response = -1;
    c->max_fields = -1;
    c->max_field_len = -1;
    c->max_model_items = -1;
    c->max_bins = -1;
    c->target = NULL;
    c->target_location = NULL;
    return c;
}

static void *jpip_dir_merge(apr_pool_t *p, void *basev, void *addv)
{
    const jpip_dir_conf_t *base = basev, *add = addv;
    jpip_dir_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->root = add->root != NULL ? add->root : base->root;
    c->location = add->root != NULL ? add->location : base->location;
    c->allow_outside_links =
        add->allow_outside_links != -1 ? add->allow_outside_links : base->allow_outside_links;
    c->max_body = add->max_body != -1 ? add->max_body : base->max_body;
    c->content_length =
        add->content_length != JPIP_CL_UNSET ? add->content_length : base->content_length;
    c->cors_origins = add->cors_origins != NULL ? add->cors_origins : base->cors_origins;
    c->max_response = add->max_response != -1 ? add->max_response : base->max_response;
    c->max_fields = add->max_fields != -1 ? add->max_fields : base->max_fields;
    c->max_field_len = add->max_field_len != -1 ? add->max_field_len : base->max_field_len;
    c->max_model_items = add->max_model_items != -1 ? add->max_model_items : base->max_model_items;
    c->max_bins = add->max_bins != -1 ? add->max_bins : base->max_bins;
    c->target = add->target != NULL ? add->target : base->target;
    c->target_location = add->target != NULL ? add->target_location : base->target_location;
    return c;
}

static void *jpip_srv_create(apr_pool_t *p, server_rec *s)
{
    jpip_srv_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->index_dir = NULL;
    c->max_targets = -1;
    c->sessions = -1;
    c->session_memory = -1;
    c->session_idle = -1;
    c->sessions_per_client = -1;
    c->index_memory = -1;
    c->index_time = -1;
    c->index_builds = -1;
    c->rendition = -1;
    c->rendition_after = -1;
    return c;
}

static void *jpip_srv_merge(apr_pool_t *p, void *basev, void *addv)
{
    const jpip_srv_conf_t *base = basev, *add = addv;
    jpip_srv_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->index_dir = add->index_dir != NULL ? add->index_dir : base->index_dir;
    c->max_targets = add->max_targets != -1 ? add->max_targets : base->max_targets;
    c->sessions = add->sessions != -1 ? add->sessions : base->sessions;
    c->session_memory = add->session_memory != -1 ? add->session_memory : base->session_memory;
    c->session_idle = add->session_idle != -1 ? add->session_idle : base->session_idle;
    c->sessions_per_client =
        add->sessions_per_client != -1 ? add->sessions_per_client : base->sessions_per_client;
    c->index_memory = add->index_memory != -1 ? add->index_memory : base->index_memory;
    c->index_time = add->index_time != -1 ? add->index_time : base->index_time;
    c->index_builds = add->index_builds != -1 ? add->index_builds : base->index_builds;
    c->rendition = add->rendition != -1 ? add->rendition : base->rendition;
    c->rendition_after = add->rendition_after != -1 ? add->rendition_after : base->rendition_after;
    return c;
}

/* The default index cache: a directory under httpd's runtime dir. */
static const char *default_index_dir(apr_pool_t *p)
{
    return ap_runtime_dir_relative(p, "jpip-index");
}

int jpip_sessions_per_client(server_rec *s)
{
    const jpip_srv_conf_t *sc = ap_get_module_config(s->module_config, &jpip_module);

    return sc->sessions_per_client >= 0 ? sc->sessions_per_client
                                        : JPIP_DEFAULT_SESSIONS_PER_CLIENT;
}

const char *jpip_index_dir(server_rec *s)
{
    const jpip_srv_conf_t *sc = ap_get_module_config(s->module_config, &jpip_module);

    return sc->index_dir;
}

static const char *cmd_root(cmd_parms *cmd, void *dconf, const char *arg)
{
    jpip_dir_conf_t *c = dconf;
    const char *path = ap_server_root_relative(cmd->pool, arg);
    apr_finfo_t fi;

    if (path == NULL) {
        return apr_psprintf(cmd->pool, "JPIPRoot: invalid path '%s'", arg);
    }
    if (apr_stat(&fi, path, APR_FINFO_TYPE, cmd->temp_pool) != APR_SUCCESS ||
        fi.filetype != APR_DIR) {
        return apr_psprintf(cmd->pool, "JPIPRoot: '%s' is not a directory", path);
    }
    c->root = path;
    c->location = cmd->path;
    return NULL;
}

/* JPIPTarget: a path relative to JPIPRoot (confined to it at request time
 * like any target), or none. */
static const char *cmd_target(cmd_parms *cmd, void *dconf, const char *arg)
{
    jpip_dir_conf_t *c = dconf;
    const char *p;

    if (strcasecmp(arg, "none") == 0) {
        c->target = "";
        c->target_location = cmd->path;
        return NULL;
    }
    if (*arg == '\0' || *arg == '/') {
        return apr_psprintf(cmd->pool,
                            "JPIPTarget: '%s' is not a path relative to JPIPRoot (or none)", arg);
    }
    for (p = arg; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7F || *p == '\\') {
            return "JPIPTarget: control characters and backslashes are not allowed";
        }
    }
    for (p = arg; p != NULL; p = strchr(p, '/')) {
        if (*p == '/') {
            p++;
        }
        if (strncmp(p, "..", 2) == 0 && (p[2] == '/' || p[2] == '\0')) {
            return apr_psprintf(cmd->pool, "JPIPTarget: '%s' leaves JPIPRoot ('..')", arg);
        }
    }
    c->target = apr_pstrdup(cmd->pool, arg);
    c->target_location = cmd->path;
    return NULL;
}

static const char *cmd_outside_links(cmd_parms *cmd, void *dconf, int flag)
{
    ((jpip_dir_conf_t *)dconf)->allow_outside_links = flag ? 1 : 0;
    return NULL;
}

static const char *cmd_max_body(cmd_parms *cmd, void *dconf, const char *arg)
{
    apr_off_t v;

    if (apr_strtoff(&v, arg, NULL, 10) != APR_SUCCESS || v < 0 || v > 64 * 1024 * 1024) {
        return "JPIPMaxRequestBody: expected a byte count from 0 to 67108864";
    }
    ((jpip_dir_conf_t *)dconf)->max_body = v;
    return NULL;
}

static const char *cmd_max_response(cmd_parms *cmd, void *dconf, const char *arg)
{
    apr_off_t v;

    if (apr_strtoff(&v, arg, NULL, 10) != APR_SUCCESS || v < 0) {
        return "JPIPMaxResponseBytes: expected a byte count (0 for no limit)";
    }
    ((jpip_dir_conf_t *)dconf)->max_response = v;
    return NULL;
}

static const char *cmd_content_length(cmd_parms *cmd, void *dconf, const char *arg)
{
    jpip_dir_conf_t *c = dconf;

    if (strcasecmp(arg, "auto") == 0) {
        c->content_length = JPIP_CL_AUTO;
    } else if (strcasecmp(arg, "always") == 0) {
        c->content_length = JPIP_CL_ALWAYS;
    } else {
        return "JPIPContentLength: expected Auto or Always";
    }
    return NULL;
}

static const char *cmd_cors(cmd_parms *cmd, void *dconf, const char *arg)
{
    jpip_dir_conf_t *c = dconf;

    if (c->cors_origins == NULL) {
        c->cors_origins = apr_array_make(cmd->pool, 2, sizeof(const char *));
    }
    APR_ARRAY_PUSH(c->cors_origins, const char *) = arg;
    return NULL;
}

static const char *cmd_index_cache(cmd_parms *cmd, void *dconf, const char *arg)
{
    jpip_srv_conf_t *sc = ap_get_module_config(cmd->server->module_config, &jpip_module);
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);

    if (err != NULL) {
        return err;
    }
    if (strcasecmp(arg, "none") == 0) {
        sc->index_dir = "";
        return NULL;
    }
    sc->index_dir = ap_server_root_relative(cmd->pool, arg);
    return sc->index_dir != NULL ? NULL : "JPIPIndexCache: invalid path";
}

static const char *cmd_index_entries(cmd_parms *cmd, void *dconf, const char *arg)
{
    jpip_srv_conf_t *sc = ap_get_module_config(cmd->server->module_config, &jpip_module);
    int n = atoi(arg);

    if (n < 1 || n > 1000000) {
        return "JPIPIndexCacheEntries: expected a count from 1 to 1000000";
    }
    sc->max_targets = n;
    return NULL;
}

/* A count from lo to hi, or 0 with *err set naming the directive. */
static int parse_count(cmd_parms *cmd, const char *arg, apr_int64_t lo, apr_int64_t hi,
                       apr_int64_t *out, const char **err)
{
    char *end;
    apr_int64_t v = apr_strtoi64(arg, &end, 10);

    if (end == arg || *end != '\0' || v < lo || v > hi) {
        *err = apr_psprintf(cmd->pool,
                            "%s: expected a number from %" APR_INT64_T_FMT " to %" APR_INT64_T_FMT,
                            cmd->cmd->name, lo, hi);
        return 0;
    }
    *out = v;
    return 1;
}

/* A byte size with an optional K, M or G suffix. */
static int parse_size(cmd_parms *cmd, const char *arg, apr_int64_t *out, const char **err)
{
    char *end;
    apr_int64_t v = apr_strtoi64(arg, &end, 10);

    if (*end == 'K' || *end == 'k') {
        v *= 1024;
        end++;
    } else if (*end == 'M' || *end == 'm') {
        v *= 1024 * 1024;
        end++;
    } else if (*end == 'G' || *end == 'g') {
        v *= (apr_int64_t)1024 * 1024 * 1024;
        end++;
    }
    if (end == arg || *end != '\0' || v <= 0) {
        *err = apr_psprintf(cmd->pool, "%s: expected a size such as 64M", cmd->cmd->name);
        return 0;
    }
    *out = v;
    return 1;
}

static const char *cmd_dir_number(cmd_parms *cmd, void *dconf, const char *arg)
{
    jpip_dir_conf_t *c = dconf;
    const char *err = NULL;
    const char *name = cmd->cmd->name;
    apr_int64_t v;

    if (strcasecmp(name, "JPIPMaxFields") == 0) {
        if (parse_count(cmd, arg, 1, 100000, &v, &err)) {
            c->max_fields = (int)v;
        }
    } else if (strcasecmp(name, "JPIPMaxFieldLength") == 0) {
        if (parse_size(cmd, arg, &v, &err)) {
            c->max_field_len = v;
        }
    } else if (strcasecmp(name, "JPIPMaxModelItems") == 0) {
        if (parse_count(cmd, arg, 1, 10000000, &v, &err)) {
            c->max_model_items = (int)v;
        }
    } else if (strcasecmp(name, "JPIPMaxBins") == 0) {
        if (parse_count(cmd, arg, 1, (apr_int64_t)1 << 40, &v, &err)) {
            c->max_bins = v;
        }
    }
    return err;
}

static const char *cmd_srv_number(cmd_parms *cmd, void *dconf, const char *arg)
{
    jpip_srv_conf_t *sc = ap_get_module_config(cmd->server->module_config, &jpip_module);
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);
    const char *name = cmd->cmd->name;
    apr_int64_t v;

    if (err != NULL) {
        return err;
    }
    if (strcasecmp(name, "JPIPMaxSessionsPerClient") == 0) {
        if (parse_count(cmd, arg, 0, 1000000, &v, &err)) {
            sc->sessions_per_client = (int)v;
        }
    } else if (strcasecmp(name, "JPIPIndexMaxMemory") == 0) {
        if (parse_size(cmd, arg, &v, &err)) {
            sc->index_memory = v;
        }
    } else if (strcasecmp(name, "JPIPIndexMaxTime") == 0) {
        char *end;
        double secs = strtod(arg, &end);

        if (end == arg || *end != '\0' || !(secs >= 0.001 && secs <= 86400)) {
            return "JPIPIndexMaxTime: expected seconds (decimals allowed), from 0.001 to 86400";
        }
        sc->index_time = (apr_interval_time_t)(secs * APR_USEC_PER_SEC);
    } else if (strcasecmp(name, "JPIPIndexMaxBuilds") == 0) {
        if (parse_count(cmd, arg, 1, 1000, &v, &err)) {
            sc->index_builds = (int)v;
        }
    }
    return err;
}

/* Session directives are global: there is one session store. */
static jpip_srv_conf_t *global_conf(cmd_parms *cmd, const char **err)
{
    *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    return ap_get_module_config(cmd->server->module_config, &jpip_module);
}

/* Rendition directives are global too: each process keeps one cache of
 * targets for all virtual hosts. */
static const char *cmd_rendition(cmd_parms *cmd, void *dconf, int on)
{
    const char *err;
    jpip_srv_conf_t *sc = global_conf(cmd, &err);

    if (err == NULL) {
        sc->rendition = on;
    }
    return err;
}

static const char *cmd_rendition_after(cmd_parms *cmd, void *dconf, const char *arg)
{
    const char *err;
    jpip_srv_conf_t *sc = global_conf(cmd, &err);
    apr_int64_t v;

    if (err == NULL && parse_count(cmd, arg, 1, 1000000000, &v, &err)) {
        sc->rendition_after = (int)v;
    }
    return err;
}

static const char *cmd_sessions(cmd_parms *cmd, void *dconf, const char *arg)
{
    const char *err;
    jpip_srv_conf_t *sc = global_conf(cmd, &err);
    int n = atoi(arg);

    if (err != NULL) {
        return err;
    }
    if (n < 1 || n > 1000000) {
        return "JPIPSessions: expected a count from 1 to 1000000";
    }
    sc->sessions = n;
    return NULL;
}

static const char *cmd_session_memory(cmd_parms *cmd, void *dconf, const char *arg)
{
    const char *err;
    jpip_srv_conf_t *sc = global_conf(cmd, &err);
    apr_off_t v;
    char *end;

    if (err != NULL) {
        return err;
    }
    if (apr_strtoff(&v, arg, &end, 10) != APR_SUCCESS || v <= 0) {
        return "JPIPSessionMemory: expected a size such as 64M";
    }
    if (*end == 'K' || *end == 'k') {
        v *= 1024;
    } else if (*end == 'M' || *end == 'm') {
        v *= 1024 * 1024;
    } else if (*end == 'G' || *end == 'g') {
        v *= (apr_off_t)1024 * 1024 * 1024;
    } else if (*end != '\0') {
        return "JPIPSessionMemory: expected a size such as 64M";
    }
    sc->session_memory = v;
    return NULL;
}

static const char *cmd_session_timeout(cmd_parms *cmd, void *dconf, const char *arg)
{
    const char *err;
    jpip_srv_conf_t *sc = global_conf(cmd, &err);
    int n = atoi(arg);

    if (err != NULL) {
        return err;
    }
    if (n < 1 || n > 7 * 24 * 3600) {
        return "JPIPSessionTimeout: expected seconds, from 1 to 604800";
    }
    sc->session_idle = apr_time_from_sec(n);
    return NULL;
}

static const command_rec jpip_cmds[] = {
    AP_INIT_TAKE1("JPIPRoot", cmd_root, NULL, ACCESS_CONF,
                  "The directory of JPEG 2000 images served at this location"),
    AP_INIT_TAKE1("JPIPTarget", cmd_target, NULL, ACCESS_CONF,
                  "The image (relative to JPIPRoot) served to requests that name none, or none"),
    AP_INIT_FLAG("JPIPFollowOutsideLinks", cmd_outside_links, NULL, ACCESS_CONF,
                 "On to serve symbolic links that lead outside JPIPRoot (default Off)"),
    AP_INIT_TAKE1("JPIPMaxRequestBody", cmd_max_body, NULL, ACCESS_CONF,
                  "Largest POST request body in bytes (default 65536)"),
    AP_INIT_TAKE1("JPIPMaxResponseBytes", cmd_max_response, NULL, ACCESS_CONF,
                  "Most message bytes in one response, whatever len asks (default 0: no limit)"),
    AP_INIT_TAKE1("JPIPContentLength", cmd_content_length, NULL, ACCESS_CONF,
                  "Auto (Content-Length for HTTP/1.0 only) or Always (never chunked)"),
    AP_INIT_ITERATE("JPIPCORSOrigin", cmd_cors, NULL, ACCESS_CONF,
                    "Origins (or *) whose browser pages may read JPIP responses"),
    AP_INIT_TAKE1("JPIPIndexCache", cmd_index_cache, NULL, RSRC_CONF,
                  "Directory for target indexes shared by all processes, or none"),
    AP_INIT_TAKE1("JPIPIndexCacheEntries", cmd_index_entries, NULL, RSRC_CONF,
                  "Indexed targets each process keeps open (default 64)"),
    AP_INIT_TAKE1("JPIPMaxFields", cmd_dir_number, NULL, ACCESS_CONF,
                  "Most JPIP fields in one request (default 64)"),
    AP_INIT_TAKE1("JPIPMaxFieldLength", cmd_dir_number, NULL, ACCESS_CONF,
                  "Longest single JPIP field, e.g. 256K (default 256K)"),
    AP_INIT_TAKE1("JPIPMaxModelItems", cmd_dir_number, NULL, ACCESS_CONF,
                  "Most items in one model= or need= field (default 16384)"),
    AP_INIT_TAKE1("JPIPMaxBins", cmd_dir_number, NULL, ACCESS_CONF,
                  "Most data-bins one response may involve (default 1048576)"),
    AP_INIT_TAKE1("JPIPMaxSessionsPerClient", cmd_srv_number, NULL, RSRC_CONF,
                  "Sessions one client address may hold at once, 0 for no limit (default 32)"),
    AP_INIT_TAKE1("JPIPIndexMaxMemory", cmd_srv_number, NULL, RSRC_CONF,
                  "Largest index one file may need, e.g. 1G (default 1G)"),
    AP_INIT_TAKE1("JPIPIndexMaxTime", cmd_srv_number, NULL, RSRC_CONF,
                  "Seconds indexing one file may take, decimals allowed (default 120)"),
    AP_INIT_TAKE1("JPIPIndexMaxBuilds", cmd_srv_number, NULL, RSRC_CONF,
                  "Files one process may index at the same time (default 2)"),
    AP_INIT_FLAG("JPIPRendition", cmd_rendition, NULL, RSRC_CONF,
                 "Keep a ready-to-send copy of each busy target's precinct messages beside "
                 "its index (default On)"),
    AP_INIT_TAKE1("JPIPRenditionAfter", cmd_rendition_after, NULL, RSRC_CONF,
                  "Requests a process serves on a target before it looks for or builds the "
                  "rendition (default 8)"),
    AP_INIT_TAKE1("JPIPSessions", cmd_sessions, NULL, RSRC_CONF,
                  "JPIP sessions kept at once in shared memory (default 256)"),
    AP_INIT_TAKE1("JPIPSessionMemory", cmd_session_memory, NULL, RSRC_CONF,
                  "Shared memory for all session cache models, e.g. 64M (default 64M)"),
    AP_INIT_TAKE1("JPIPSessionTimeout", cmd_session_timeout, NULL, RSRC_CONF,
                  "Seconds a session may stay idle before it is closed (default 300)"),
    AP_INIT_TAKE12("JPIPSessionStore", jpip_store_cmd, NULL, RSRC_CONF,
                   "Where sessions live: shm (default) or socache:PROVIDER [ARGUMENTS]"),
    AP_INIT_TAKE12("JPIPSessionClientPrefix", jpip_store_prefix_cmd, NULL, RSRC_CONF,
                   "Prefix lengths that group client addresses for session limits and "
                   "eviction: IPv4 [IPv6] (default 32 64)"),
    {NULL}};

/* ------------------------------------------------------------------- hooks */

/* Requests inside a JPIP location are not files under the DocumentRoot:
 * skip httpd's directory walk for them (as mod_proxy does), so no
 * <Directory> rules or "file does not exist" noise apply to them. */
static int jpip_map_to_storage(request_rec *r)
{
    const jpip_dir_conf_t *conf = ap_get_module_config(r->per_dir_config, &jpip_module);

    if (conf != NULL && conf->root != NULL) {
        return OK;
    }
    return DECLINED;
}

/* Create each server's index cache directory, owned by the user the
 * children run as (they write the index files). */
static int jpip_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s)
{
    server_rec *vs;

    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    for (vs = s; vs != NULL; vs = vs->next) {
        jpip_srv_conf_t *sc = ap_get_module_config(vs->module_config, &jpip_module);
        apr_status_t rv;

        if (sc->index_dir == NULL) {
            sc->index_dir = default_index_dir(pconf);
        }
        if (*sc->index_dir == '\0') {
            continue;
        }
        rv = apr_dir_make_recursive(sc->index_dir, APR_FPROT_OS_DEFAULT, ptemp);
        if (rv != APR_SUCCESS && !APR_STATUS_IS_EEXIST(rv)) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s,
                         JPIPLOGNO(0006) "cannot create the index cache %s: indexes will be "
                                         "built in memory by each process",
                         sc->index_dir);
            continue;
        }
        if (geteuid() == 0 &&
            chown(sc->index_dir, ap_unixd_config.user_id, ap_unixd_config.group_id) != 0) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, APR_FROM_OS_ERROR(errno), s,
                         JPIPLOGNO(0007) "cannot give the index cache %s to the server user",
                         sc->index_dir);
        }
    }
    {
        const jpip_srv_conf_t *sc = ap_get_module_config(s->module_config, &jpip_module);
        jpip_store_conf_t stc;
        int rv;

        stc.slots = sc->sessions > 0 ? sc->sessions : JPIP_DEFAULT_SESSIONS;
        stc.memory = sc->session_memory > 0 ? (apr_size_t)sc->session_memory
                                            : (apr_size_t)JPIP_DEFAULT_SESSION_MEMORY;
        stc.idle = sc->session_idle > 0 ? sc->session_idle : JPIP_DEFAULT_SESSION_IDLE;
        stc.max_per_client = jpip_sessions_per_client(s);
        rv = jpip_store_post_config(pconf, s, &stc);
        if (rv != OK) {
            return rv;
        }
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, JPIPLOGNO(0005) "mod_jpip/%s ready",
                 JPIP_MODULE_VERSION);
    return OK;
}

static int jpip_pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp)
{
    return jpip_store_pre_config(pconf);
}

static void jpip_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_status_t rv = jpip_targets_init(pchild, s);

    jpip_store_child_init(pchild, s);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     JPIPLOGNO(0008) "cannot create the target cache of this process");
    }
}

static void jpip_register_hooks(apr_pool_t *p)
{
    ap_hook_pre_config(jpip_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(jpip_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(jpip_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_map_to_storage(jpip_map_to_storage, NULL, NULL, APR_HOOK_FIRST);
    ap_hook_handler(jpip_handle, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(jpip_status_handle, NULL, NULL, APR_HOOK_MIDDLE);
}

module AP_MODULE_DECLARE_DATA jpip_module = {STANDARD20_MODULE_STUFF,
                                             jpip_dir_create, /* per-directory config */
                                             jpip_dir_merge,  /* merge per-directory */
                                             jpip_srv_create, /* per-server config */
                                             jpip_srv_merge,  /* merge per-server */
                                             jpip_cmds,       /* directives */
                                             jpip_register_hooks,
#if defined(AP_MODULE_FLAG_NONE)
                                             AP_MODULE_FLAG_ALWAYS_MERGE
#endif
};
