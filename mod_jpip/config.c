/* mod_jpip: directives, their defaults and the configuration's merging.
 *
 * Every numeric directive is a row of one table (name, form, where it may
 * be given, range, default) read by jpip_dir_get and jpip_srv_get, and is
 * parsed by one strict parser (libcore/number.h): trailing characters,
 * signs, values out of range and overflow are refused by `httpd -t` with
 * a message naming the directive. Directives read once per process are
 * GLOBAL_ONLY: httpd refuses them inside a <VirtualHost>.
 */
#include "mod_jpip.h"

#include <http_core.h>
#include <http_log.h>

#include <apr_strings.h>

#include "number.h"
#include "render.h"
#include "store.h"

typedef enum {
    FORM_COUNT,   /* digits */
    FORM_SIZE,    /* digits and an optional K, M, G or T */
    FORM_SECONDS, /* seconds with decimals, or httpd's time units (ms, s, mi, h) */
    FORM_FLAG     /* On or Off */
} form_t;

typedef enum {
    SCOPE_DIR,    /* <Location> */
    SCOPE_SERVER, /* server config or <VirtualHost> */
    SCOPE_GLOBAL  /* server config only: read once per process */
} scope_t;

typedef struct var_def_t {
    const char *name;
    form_t form;
    scope_t scope;
    apr_uint64_t min, max; /* values allowed (microseconds for FORM_SECONDS) */
    apr_int64_t def;       /* the default */
    const char *syntax;    /* what to write, for the error message */
} var_def_t;

#define KIB ((apr_uint64_t)1 << 10)
#define MIB ((apr_uint64_t)1 << 20)
#define GIB ((apr_uint64_t)1 << 30)
#define TIB ((apr_uint64_t)1 << 40)
#define SEC ((apr_uint64_t)APR_USEC_PER_SEC)

static const var_def_t vars[JPIP_NVARS] = {
    [JPIP_V_MAX_BODY] = {"JPIPMaxRequestBody", FORM_SIZE, SCOPE_DIR, 0, 64 * MIB, 64 * KIB,
                         "a size in bytes, with K or M allowed, up to 64M"},
    [JPIP_V_MAX_RESPONSE] = {"JPIPMaxResponseBytes", FORM_SIZE, SCOPE_DIR, 0, 1024 * TIB, 0,
                             "a size in bytes such as 4M, 0 for no limit"},
    [JPIP_V_MAX_FIELDS] = {"JPIPMaxFields", FORM_COUNT, SCOPE_DIR, 1, 100000, 64,
                           "a count from 1 to 100000"},
    [JPIP_V_MAX_FIELD_LEN] = {"JPIPMaxFieldLength", FORM_SIZE, SCOPE_DIR, 1, GIB, 256 * KIB,
                              "a size such as 256K, up to 1G"},
    [JPIP_V_MAX_MODEL_ITEMS] = {"JPIPMaxModelItems", FORM_COUNT, SCOPE_DIR, 1, 10000000, 16384,
                                "a count from 1 to 10000000"},
    [JPIP_V_MAX_BINS] = {"JPIPMaxBins", FORM_COUNT, SCOPE_DIR, 1, TIB, 1 << 20,
                         "a count from 1 to 1099511627776"},
    [JPIP_V_IIIF_MAX_WIDTH] = {"JPIPIIIFMaxWidth", FORM_COUNT, SCOPE_DIR, 1, 65500, 8192,
                               "a width in pixels from 1 to 65500 (a JPEG's limit)"},
    [JPIP_V_IIIF_MAX_HEIGHT] = {"JPIPIIIFMaxHeight", FORM_COUNT, SCOPE_DIR, 1, 65500, 8192,
                                "a height in pixels from 1 to 65500 (a JPEG's limit)"},
    [JPIP_V_IIIF_MAX_AREA] = {"JPIPIIIFMaxArea", FORM_COUNT, SCOPE_DIR, 1, 4000000000u, 4096 * 4096,
                              "a count of pixels from 1 to 4000000000"},
    [JPIP_V_IIIF_MEMORY] = {"JPIPIIIFRenderMemory", FORM_SIZE, SCOPE_DIR, MIB, TIB, 512 * MIB,
                            "a size such as 512M, from 1M to 1T"},
    [JPIP_V_IIIF_TIME] = {"JPIPIIIFRenderTime", FORM_SECONDS, SCOPE_DIR, 1000, 86400 * SEC,
                          30 * SEC,
                          "seconds (decimals allowed) or a time such as 500ms, 2mi, from "
                          "0.001 to 86400 seconds"},
    [JPIP_V_IIIF_RENDERS] = {"JPIPIIIFMaxRenders", FORM_COUNT, SCOPE_DIR, 1, 100000, 8,
                             "a count from 1 to 100000"},
    [JPIP_V_IIIF_QUALITY] = {"JPIPIIIFJPEGQuality", FORM_COUNT, SCOPE_DIR, 1, 100, 90,
                             "a JPEG quality from 1 to 100"},
    [JPIP_V_SESSIONS_PER_CLIENT] = {"JPIPMaxSessionsPerClient", FORM_COUNT, SCOPE_GLOBAL, 0,
                                    1000000, 32, "a count from 0 (no limit) to 1000000"},
    [JPIP_V_INDEX_MEMORY] = {"JPIPIndexMaxMemory", FORM_SIZE, SCOPE_SERVER, 1, 1024 * TIB, GIB,
                             "a size such as 1G"},
    [JPIP_V_INDEX_TIME] = {"JPIPIndexMaxTime", FORM_SECONDS, SCOPE_SERVER, 1000, 86400 * SEC,
                           120 * SEC,
                           "seconds (decimals allowed) or a time such as 500ms, 2mi, 1h, from "
                           "0.001 to 86400 seconds"},
    [JPIP_V_INDEX_ENTRIES] = {"JPIPIndexCacheEntries", FORM_COUNT, SCOPE_GLOBAL, 1, 1000000, 64,
                              "a count from 1 to 1000000"},
    [JPIP_V_INDEX_BUILDS] = {"JPIPIndexMaxBuilds", FORM_COUNT, SCOPE_GLOBAL, 1, 1000, 2,
                             "a count from 1 to 1000"},
    [JPIP_V_RENDITION] = {"JPIPRendition", FORM_FLAG, SCOPE_GLOBAL, 0, 1, 1, "On or Off"},
    [JPIP_V_RENDITION_AFTER] = {"JPIPRenditionAfter", FORM_COUNT, SCOPE_GLOBAL, 1, 1000000000, 8,
                                "a count from 1 to 1000000000"},
    [JPIP_V_SESSIONS] = {"JPIPSessions", FORM_COUNT, SCOPE_GLOBAL, 1, 1000000, 256,
                         "a count from 1 to 1000000"},
    [JPIP_V_SESSION_MEMORY] = {"JPIPSessionMemory", FORM_SIZE, SCOPE_GLOBAL, KIB, TIB, 64 * MIB,
                               "a size such as 64M, from 1K to 1T"},
    [JPIP_V_SESSION_TIMEOUT] = {"JPIPSessionTimeout", FORM_SECONDS, SCOPE_GLOBAL, SEC,
                                7 * 24 * 3600 * SEC, 300 * SEC,
                                "seconds or a time such as 5mi or 1h, from 1 to 604800 "
                                "seconds"},
    [JPIP_V_IIIF_HEAP] = {"JPIPIIIFHeapRetain", FORM_SIZE, SCOPE_GLOBAL, 0, 64 * MIB,
                          JPIP_RENDER_HEAP_DEFAULT,
                          "a size such as 16M, from 0 (the C library's own policy) to 64M"}};

apr_int64_t jpip_dir_get(const jpip_dir_conf_t *c, jpip_var_t v)
{
    return c != NULL && c->num[v] >= 0 ? c->num[v] : vars[v].def;
}

apr_int64_t jpip_srv_get(const server_rec *s, jpip_var_t v)
{
    const jpip_srv_conf_t *sc = ap_get_module_config(s->module_config, &jpip_module);

    return sc != NULL && sc->num[v] >= 0 ? sc->num[v] : vars[v].def;
}

const char *jpip_var_name(jpip_var_t v)
{
    return vars[v].name;
}

const char *jpip_limit_directive(jpip_limit_t limit)
{
    switch (limit) {
    case JPIP_LIMIT_FIELDS:
        return vars[JPIP_V_MAX_FIELDS].name;
    case JPIP_LIMIT_FIELD_LENGTH:
        return vars[JPIP_V_MAX_FIELD_LEN].name;
    case JPIP_LIMIT_REQUEST_BODY:
        return vars[JPIP_V_MAX_BODY].name;
    case JPIP_LIMIT_MODEL_ITEMS:
        return vars[JPIP_V_MAX_MODEL_ITEMS].name;
    case JPIP_LIMIT_BINS:
        return vars[JPIP_V_MAX_BINS].name;
    case JPIP_LIMIT_INDEX_MEMORY:
        return vars[JPIP_V_INDEX_MEMORY].name;
    case JPIP_LIMIT_INDEX_TIME:
        return vars[JPIP_V_INDEX_TIME].name;
    case JPIP_LIMIT_INDEX_BUILDS:
        return vars[JPIP_V_INDEX_BUILDS].name;
    case JPIP_LIMIT_SESSIONS:
        return vars[JPIP_V_SESSIONS].name;
    case JPIP_LIMIT_SESSIONS_PER_CLIENT:
        return vars[JPIP_V_SESSIONS_PER_CLIENT].name;
    case JPIP_LIMIT_SESSION_MEMORY:
        return vars[JPIP_V_SESSION_MEMORY].name;
    case JPIP_LIMIT_NONE:
    case JPIP_LIMIT_INDEX_BUSY:
    case JPIP_LIMIT_TARGET:
    case JPIP_LIMIT_CHANNELS:
        break;
    }
    return NULL;
}

/* ------------------------------------------------------- create, merge */

static void num_unset(apr_int64_t *num)
{
    int i;

    for (i = 0; i < JPIP_NVARS; i++) {
        num[i] = -1;
    }
}

static void num_merge(apr_int64_t *num, const apr_int64_t *base, const apr_int64_t *add)
{
    int i;

    for (i = 0; i < JPIP_NVARS; i++) {
        num[i] = add[i] >= 0 ? add[i] : base[i];
    }
}

void *jpip_dir_create(apr_pool_t *p, char *dir)
{
    jpip_dir_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->root = NULL;
    c->location = dir;
    c->allow_outside_links = -1;
    c->content_length = JPIP_CL_UNSET;
    c->cors_origins = NULL;
    c->target = NULL;
    c->target_location = NULL;
    c->iiif_cache_control = NULL;
    jpip_viewer_conf_init(&c->viewer);
    num_unset(c->num);
    return c;
}

void *jpip_dir_merge(apr_pool_t *p, void *basev, void *addv)
{
    const jpip_dir_conf_t *base = basev, *add = addv;
    jpip_dir_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->root = add->root != NULL ? add->root : base->root;
    c->location = add->root != NULL ? add->location : base->location;
    c->allow_outside_links =
        add->allow_outside_links != -1 ? add->allow_outside_links : base->allow_outside_links;
    c->content_length =
        add->content_length != JPIP_CL_UNSET ? add->content_length : base->content_length;
    c->cors_origins = add->cors_origins != NULL ? add->cors_origins : base->cors_origins;
    c->target = add->target != NULL ? add->target : base->target;
    c->target_location = add->target != NULL ? add->target_location : base->target_location;
    c->iiif_cache_control =
        add->iiif_cache_control != NULL ? add->iiif_cache_control : base->iiif_cache_control;
    jpip_viewer_conf_merge(&c->viewer, &base->viewer, &add->viewer);
    num_merge(c->num, base->num, add->num);
    return c;
}

void *jpip_srv_create(apr_pool_t *p, server_rec *s)
{
    jpip_srv_conf_t *c = apr_pcalloc(p, sizeof(*c));

    (void)s;
    c->index_dir = NULL;
    num_unset(c->num);
    return c;
}

void *jpip_srv_merge(apr_pool_t *p, void *basev, void *addv)
{
    const jpip_srv_conf_t *base = basev, *add = addv;
    jpip_srv_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->index_dir = add->index_dir != NULL ? add->index_dir : base->index_dir;
    num_merge(c->num, base->num, add->num);
    return c;
}

int jpip_sessions_per_client(server_rec *s)
{
    return (int)jpip_srv_get(s, JPIP_V_SESSIONS_PER_CLIENT);
}

const char *jpip_index_dir(server_rec *s)
{
    const jpip_srv_conf_t *sc = ap_get_module_config(s->module_config, &jpip_module);

    return sc->index_dir;
}

/* ------------------------------------------------------------- parsing */

/* A time: httpd's form (digits and ms, s, mi or h, through
 * ap_timeout_parameter_parse), else seconds with decimals. */
static jpip_code_t parse_time(const var_def_t *d, const char *arg, apr_uint64_t *out,
                              jpip_err_t *err)
{
    static const struct {
        const char *unit;
        apr_uint64_t us;
    } units[] = {{"ms", 1000}, {"s", SEC}, {"mi", 60 * SEC}, {"h", 3600 * SEC}};
    const char *p = arg;
    apr_size_t i;

    while (*p >= '0' && *p <= '9') {
        p++;
    }
    if (p == arg || *p == '\0' || *p == '.') {
        return jpip_seconds_parse(arg, d->min, d->max, out, err);
    }
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(p, units[i].unit) == 0) {
            char digits[24];
            apr_uint64_t n;
            apr_interval_time_t t;

            if ((apr_size_t)(p - arg) >= sizeof(digits)) {
                return jpip_err_set(err, JPIP_E_REQUEST, "'%s' is too large", arg);
            }
            memcpy(digits, arg, (apr_size_t)(p - arg));
            digits[p - arg] = '\0';
            /* bounded before httpd multiplies it by the unit */
            if (jpip_number_parse(digits, JPIP_NUM_COUNT, 0, d->max / units[i].us, &n, err) !=
                    JPIP_OK ||
                ap_timeout_parameter_parse(arg, &t, "s") != APR_SUCCESS || t < 0 ||
                (apr_uint64_t)t < d->min) {
                return jpip_err_set(err, JPIP_E_REQUEST, "'%s' is out of range (%g to %g seconds)",
                                    arg, (double)d->min / SEC, (double)d->max / SEC);
            }
            *out = (apr_uint64_t)t;
            return JPIP_OK;
        }
    }
    return jpip_err_set(err, JPIP_E_REQUEST, "'%s' has an unknown unit (use ms, s, mi or h)", arg);
}

/* The numeric directives: one handler, the table row in cmd->info. */
static const char *cmd_var(cmd_parms *cmd, void *dconf, const char *arg)
{
    jpip_var_t v = (jpip_var_t)(apr_uintptr_t)cmd->info;
    const var_def_t *d = &vars[v];
    apr_uint64_t val;
    jpip_err_t err;
    jpip_code_t rc;
    const char *msg = ap_check_cmd_context(cmd, d->scope == SCOPE_GLOBAL   ? GLOBAL_ONLY
                                                : d->scope == SCOPE_SERVER ? NOT_IN_DIR_CONTEXT
                                                                           : 0);

    if (msg != NULL) {
        return msg;
    }
    if (d->form == FORM_SECONDS) {
        rc = parse_time(d, arg, &val, &err);
    } else {
        rc = jpip_number_parse(arg, d->form == FORM_SIZE ? JPIP_NUM_SIZE : JPIP_NUM_COUNT, d->min,
                               d->max, &val, &err);
    }
    if (rc != JPIP_OK) {
        return apr_psprintf(cmd->pool, "%s: %s; expected %s", d->name, err.msg, d->syntax);
    }
    if (d->scope == SCOPE_DIR) {
        ((jpip_dir_conf_t *)dconf)->num[v] = (apr_int64_t)val;
    } else {
        jpip_srv_conf_t *sc = ap_get_module_config(cmd->server->module_config, &jpip_module);
        sc->num[v] = (apr_int64_t)val;
    }
    return NULL;
}

/* A global On/Off directive (httpd's ap_set_flag_slot is per directory). */
static const char *cmd_global_flag(cmd_parms *cmd, void *dconf, int on)
{
    jpip_var_t v = (jpip_var_t)(apr_uintptr_t)cmd->info;
    const char *msg = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    jpip_srv_conf_t *sc = ap_get_module_config(cmd->server->module_config, &jpip_module);

    (void)dconf;
    if (msg == NULL) {
        sc->num[v] = on ? 1 : 0;
    }
    return msg;
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

static const char *cmd_content_length(cmd_parms *cmd, void *dconf, const char *arg)
{
    jpip_dir_conf_t *c = dconf;

    (void)cmd;
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

    (void)dconf;
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

static const char *cmd_iiif_cache_control(cmd_parms *cmd, void *dconf, const char *arg)
{
    jpip_dir_conf_t *c = dconf;
    const char *p;

    for (p = arg; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7F) {
            return "JPIPIIIFCacheControl: control characters are not allowed in a header value";
        }
    }
    c->iiif_cache_control = apr_pstrdup(cmd->pool, arg);
    return NULL;
}

const command_rec jpip_cmds[] = {
    AP_INIT_TAKE1("JPIPRoot", cmd_root, NULL, ACCESS_CONF,
                  "The directory of JPEG 2000 images served at this location"),
    AP_INIT_TAKE1("JPIPTarget", cmd_target, NULL, ACCESS_CONF,
                  "The image (relative to JPIPRoot) served to requests that name none, or none"),
    AP_INIT_FLAG("JPIPFollowOutsideLinks", ap_set_flag_slot,
                 (void *)APR_OFFSETOF(jpip_dir_conf_t, allow_outside_links), ACCESS_CONF,
                 "On to serve symbolic links that lead outside JPIPRoot (default Off)"),
    AP_INIT_TAKE1("JPIPMaxRequestBody", cmd_var, (void *)JPIP_V_MAX_BODY, ACCESS_CONF,
                  "Largest POST request body in bytes (default 64K)"),
    AP_INIT_TAKE1("JPIPMaxResponseBytes", cmd_var, (void *)JPIP_V_MAX_RESPONSE, ACCESS_CONF,
                  "Most message bytes in one response, whatever len asks (default 0: no limit)"),
    AP_INIT_TAKE1("JPIPContentLength", cmd_content_length, NULL, ACCESS_CONF,
                  "Auto (Content-Length for HTTP/1.0 only) or Always (never chunked)"),
    AP_INIT_ITERATE("JPIPCORSOrigin", cmd_cors, NULL, ACCESS_CONF,
                    "Origins (or *) whose browser pages may read JPIP responses"),
    AP_INIT_TAKE1("JPIPIndexCache", cmd_index_cache, NULL, RSRC_CONF,
                  "Directory for target indexes shared by all processes, or none"),
    AP_INIT_TAKE1("JPIPIndexCacheEntries", cmd_var, (void *)JPIP_V_INDEX_ENTRIES, RSRC_CONF,
                  "Indexed targets each process keeps open (default 64)"),
    AP_INIT_TAKE1("JPIPMaxFields", cmd_var, (void *)JPIP_V_MAX_FIELDS, ACCESS_CONF,
                  "Most JPIP fields in one request (default 64)"),
    AP_INIT_TAKE1("JPIPMaxFieldLength", cmd_var, (void *)JPIP_V_MAX_FIELD_LEN, ACCESS_CONF,
                  "Longest single JPIP field, e.g. 256K (default 256K)"),
    AP_INIT_TAKE1("JPIPMaxModelItems", cmd_var, (void *)JPIP_V_MAX_MODEL_ITEMS, ACCESS_CONF,
                  "Most items in one model= or need= field (default 16384)"),
    AP_INIT_TAKE1("JPIPMaxBins", cmd_var, (void *)JPIP_V_MAX_BINS, ACCESS_CONF,
                  "Most data-bins one response may involve (default 1048576)"),
    AP_INIT_TAKE1("JPIPIIIFCacheControl", cmd_iiif_cache_control, NULL, ACCESS_CONF,
                  "Cache-Control of IIIF images and info.json (default \"public, max-age=86400\")"),
    AP_INIT_TAKE1("JPIPIIIFMaxWidth", cmd_var, (void *)JPIP_V_IIIF_MAX_WIDTH, ACCESS_CONF,
                  "Widest IIIF output in pixels (default 8192)"),
    AP_INIT_TAKE1("JPIPIIIFMaxHeight", cmd_var, (void *)JPIP_V_IIIF_MAX_HEIGHT, ACCESS_CONF,
                  "Tallest IIIF output in pixels (default 8192)"),
    AP_INIT_TAKE1("JPIPIIIFMaxArea", cmd_var, (void *)JPIP_V_IIIF_MAX_AREA, ACCESS_CONF,
                  "Most pixels of one IIIF output (default 16777216)"),
    AP_INIT_TAKE1("JPIPIIIFRenderMemory", cmd_var, (void *)JPIP_V_IIIF_MEMORY, ACCESS_CONF,
                  "Memory one IIIF render may use, e.g. 512M (default 512M)"),
    AP_INIT_TAKE1("JPIPIIIFRenderTime", cmd_var, (void *)JPIP_V_IIIF_TIME, ACCESS_CONF,
                  "Time one IIIF render may take: seconds (decimals allowed) or 500ms "
                  "(default 30)"),
    AP_INIT_TAKE1("JPIPIIIFMaxRenders", cmd_var, (void *)JPIP_V_IIIF_RENDERS, ACCESS_CONF,
                  "IIIF renders one process runs at once; more get 503 (default 8)"),
    AP_INIT_TAKE1("JPIPIIIFJPEGQuality", cmd_var, (void *)JPIP_V_IIIF_QUALITY, ACCESS_CONF,
                  "JPEG quality of IIIF jpg output, 1 to 100 (default 90)"),
    AP_INIT_TAKE1("JPIPIIIFHeapRetain", cmd_var, (void *)JPIP_V_IIIF_HEAP, RSRC_CONF,
                  "Free heap a process keeps between IIIF renders instead of returning it to "
                  "the kernel, e.g. 16M; 0 for the C library's policy (default 16M)"),
    AP_INIT_TAKE1("JPIPMaxSessionsPerClient", cmd_var, (void *)JPIP_V_SESSIONS_PER_CLIENT,
                  RSRC_CONF,
                  "Sessions one client address may hold at once, 0 for no limit (default 32)"),
    AP_INIT_TAKE1("JPIPIndexMaxMemory", cmd_var, (void *)JPIP_V_INDEX_MEMORY, RSRC_CONF,
                  "Largest index one file may need, e.g. 1G (default 1G)"),
    AP_INIT_TAKE1("JPIPIndexMaxTime", cmd_var, (void *)JPIP_V_INDEX_TIME, RSRC_CONF,
                  "Time indexing one file may take: seconds (decimals allowed) or 500ms, 2mi, "
                  "1h (default 120)"),
    AP_INIT_TAKE1("JPIPIndexMaxBuilds", cmd_var, (void *)JPIP_V_INDEX_BUILDS, RSRC_CONF,
                  "Files one process may index at the same time (default 2)"),
    AP_INIT_FLAG("JPIPRendition", cmd_global_flag, (void *)JPIP_V_RENDITION, RSRC_CONF,
                 "Keep a ready-to-send copy of each busy target's precinct messages beside "
                 "its index (default On)"),
    AP_INIT_TAKE1("JPIPRenditionAfter", cmd_var, (void *)JPIP_V_RENDITION_AFTER, RSRC_CONF,
                  "Requests a process serves on a target before it looks for or builds the "
                  "rendition (default 8)"),
    AP_INIT_TAKE1("JPIPSessions", cmd_var, (void *)JPIP_V_SESSIONS, RSRC_CONF,
                  "JPIP sessions kept at once in shared memory (default 256)"),
    AP_INIT_TAKE1("JPIPSessionMemory", cmd_var, (void *)JPIP_V_SESSION_MEMORY, RSRC_CONF,
                  "Shared memory for all session cache models, e.g. 64M (default 64M)"),
    AP_INIT_TAKE1("JPIPSessionTimeout", cmd_var, (void *)JPIP_V_SESSION_TIMEOUT, RSRC_CONF,
                  "Time a session may stay idle before it is closed: seconds or 5mi, 1h "
                  "(default 300)"),
    AP_INIT_TAKE12("JPIPSessionStore", jpip_store_cmd, NULL, RSRC_CONF,
                   "Where sessions live: shm (default) or socache:PROVIDER [ARGUMENTS]"),
    AP_INIT_TAKE12("JPIPSessionClientPrefix", jpip_store_prefix_cmd, NULL, RSRC_CONF,
                   "Prefix lengths that group client addresses for session limits and "
                   "eviction: IPv4 [IPv6] (default 32 64)"),
    JPIP_VIEWER_CMDS,
    {NULL}};
