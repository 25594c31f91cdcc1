/* mod_jpip: a JPIP (ITU-T T.808 | ISO/IEC 15444-9) server for httpd 2.4.
 *
 * This file is the module record, its directives and the handler. The
 * handler claims requests whose handler is "jpip", reads the JPIP fields
 * (query string or form-encoded POST body), resolves the target inside
 * JPIPRoot, and answers. Every JPIP semantic lives in libcore.
 */
#include "mod_jpip.h"

#include <http_core.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>

#include <apr_strings.h>

#include "fields.h"
#include "target.h"

APLOG_USE_MODULE(jpip);

#define DEFAULT_MAX_BODY (64 * 1024)

/* ------------------------------------------------------------------ config */

static void *jpip_dir_create(apr_pool_t *p, char *dir)
{
    jpip_dir_conf_t *c = apr_pcalloc(p, sizeof(*c));

    c->root = NULL;
    c->location = dir;
    c->allow_outside_links = -1;
    c->max_body = -1;
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
    return c;
}

static int conf_outside_links(const jpip_dir_conf_t *c)
{
    return c->allow_outside_links == 1;
}

static apr_off_t conf_max_body(const jpip_dir_conf_t *c)
{
    return c->max_body >= 0 ? c->max_body : DEFAULT_MAX_BODY;
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

static const command_rec jpip_cmds[] = {
    AP_INIT_TAKE1("JPIPRoot", cmd_root, NULL, ACCESS_CONF,
                  "The directory of JPEG 2000 images served at this location"),
    AP_INIT_FLAG("JPIPFollowOutsideLinks", cmd_outside_links, NULL, ACCESS_CONF,
                 "On to serve symbolic links that lead outside JPIPRoot (default Off)"),
    AP_INIT_TAKE1("JPIPMaxRequestBody", cmd_max_body, NULL, ACCESS_CONF,
                  "Largest POST request body in bytes (default 65536)"),
    {NULL}};

/* --------------------------------------------------------------- responses */

/* Answer with status and a short text body naming the problem. */
static int send_text(request_rec *r, int status, const char *msg)
{
    r->status = status;
    ap_set_content_type(r, "text/plain; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    if (!r->header_only) {
        ap_rvputs(r, msg, "\n", NULL);
    }
    return OK;
}

static int http_status_of(jpip_code_t code)
{
    switch (code) {
    case JPIP_E_REQUEST:
        return HTTP_BAD_REQUEST;
    case JPIP_E_FORBIDDEN:
        return HTTP_FORBIDDEN;
    case JPIP_E_NOTFOUND:
        return HTTP_NOT_FOUND;
    case JPIP_E_UNSUPPORTED:
        return HTTP_NOT_IMPLEMENTED;
    case JPIP_E_LIMIT:
        return HTTP_REQUEST_ENTITY_TOO_LARGE;
    case JPIP_E_FORMAT:
        return HTTP_UNSUPPORTED_MEDIA_TYPE;
    case JPIP_E_NOMEM:
        return HTTP_SERVICE_UNAVAILABLE;
    default:
        return HTTP_INTERNAL_SERVER_ERROR;
    }
}

/* Log a refused request at info level (the client's fault, not the
 * server's) and answer it. */
static int refuse(request_rec *r, const char *target, const jpip_err_t *err)
{
    int status = http_status_of(err->code);

    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, JPIPLOGNO(0001) "jpip(target=%s): %d %s",
                  target != NULL ? target : "-", status, err->msg);
    return send_text(r, status, err->msg);
}

/* ----------------------------------------------------------------- request */

/* Read a form-encoded POST body of at most max bytes into *out. */
static int read_body(request_rec *r, apr_off_t max, const char **out, apr_size_t *outlen,
                     jpip_err_t *err)
{
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    const char *ctype = apr_table_get(r->headers_in, "Content-Type");
    apr_off_t total = 0;
    char *buf;
    apr_size_t len;
    int seen_eos = 0;

    if (ctype != NULL && ap_strstr_c(ctype, "x-www-form-urlencoded") == NULL) {
        jpip_err_set(err, JPIP_E_REQUEST,
                     "POST body must be application/x-www-form-urlencoded JPIP fields");
        return HTTP_UNSUPPORTED_MEDIA_TYPE;
    }
    do {
        apr_status_t rv = ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES, APR_BLOCK_READ,
                                         HUGE_STRING_LEN);
        apr_off_t n = 0;

        if (rv != APR_SUCCESS) {
            jpip_err_set(err, JPIP_E_REQUEST, "could not read the request body");
            return HTTP_BAD_REQUEST;
        }
        seen_eos = APR_BUCKET_IS_EOS(APR_BRIGADE_LAST(bb));
        apr_brigade_length(bb, 1, &n);
        total += n;
        if (total > max) {
            jpip_err_set(err, JPIP_E_LIMIT,
                         "request body larger than JPIPMaxRequestBody (%" APR_OFF_T_FMT " bytes)",
                         max);
            return HTTP_REQUEST_ENTITY_TOO_LARGE;
        }
        if (!seen_eos) {
            continue;
        }
    } while (!seen_eos);
    if (apr_brigade_pflatten(bb, &buf, &len, r->pool) != APR_SUCCESS) {
        jpip_err_set(err, JPIP_E_NOMEM, "out of memory reading the request body");
        return HTTP_SERVICE_UNAVAILABLE;
    }
    *out = buf;
    *outlen = len;
    return OK;
}

/* Collect the JPIP fields from the query string and, for POST, the body. */
static int read_fields(request_rec *r, const jpip_dir_conf_t *conf, apr_array_header_t **fields,
                       jpip_err_t *err)
{
    apr_array_header_t *f = NULL;

    if (r->args != NULL &&
        jpip_fields_parse(r->pool, r->args, strlen(r->args), NULL, &f, err) != JPIP_OK) {
        return http_status_of(err->code);
    }
    if (r->method_number == M_POST) {
        const char *body = NULL;
        apr_size_t len = 0;
        int st = read_body(r, conf_max_body(conf), &body, &len, err);

        if (st != OK) {
            return st;
        }
        if (jpip_fields_parse(r->pool, body, len, NULL, &f, err) != JPIP_OK) {
            return http_status_of(err->code);
        }
    }
    if (f == NULL) {
        f = apr_array_make(r->pool, 1, sizeof(jpip_field_t));
    }
    *fields = f;
    return OK;
}

/* The target name: the `target` field, else the URL path below the
 * location JPIPRoot was configured for. */
static const char *target_name(request_rec *r, const jpip_dir_conf_t *conf,
                               const apr_array_header_t *fields)
{
    const jpip_field_t *t = jpip_fields_find(fields, "target");
    apr_size_t n;

    if (t != NULL) {
        return t->value;
    }
    n = conf->location != NULL ? strlen(conf->location) : 0;
    if (n > 0 && strncmp(r->uri, conf->location, n) == 0) {
        return r->uri + n;
    }
    return r->uri;
}

static int jpip_handler(request_rec *r)
{
    const jpip_dir_conf_t *conf;
    apr_array_header_t *fields = NULL;
    jpip_target_t target;
    jpip_err_t err;
    const char *name;
    int st;

    if (r->handler == NULL || strcmp(r->handler, "jpip") != 0) {
        return DECLINED;
    }
    conf = ap_get_module_config(r->per_dir_config, &jpip_module);
    r->allowed = (AP_METHOD_BIT << M_GET) | (AP_METHOD_BIT << M_POST);
    if (r->method_number != M_GET && r->method_number != M_POST) {
        apr_table_setn(r->headers_out, "Allow", "GET, HEAD, POST");
        return send_text(r, HTTP_METHOD_NOT_ALLOWED,
                         apr_psprintf(r->pool, "method %s is not allowed: JPIP uses GET or POST",
                                      ap_escape_html(r->pool, r->method)));
    }
    if (conf->root == NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      JPIPLOGNO(0002) "SetHandler jpip at %s without JPIPRoot", r->uri);
        return send_text(r, HTTP_INTERNAL_SERVER_ERROR,
                         "this JPIP location has no JPIPRoot configured");
    }
    jpip_err_clear(&err);
    st = read_fields(r, conf, &fields, &err);
    if (st != OK) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, JPIPLOGNO(0003) "jpip(target=-): %d %s", st,
                      err.msg);
        return send_text(r, st, err.msg);
    }
    name = target_name(r, conf, fields);
    if (jpip_target_resolve(r->pool, conf->root, name, conf_outside_links(conf), &target, &err) !=
        JPIP_OK) {
        return refuse(r, name, &err);
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                  JPIPLOGNO(0004) "jpip(target=%s): %" APR_OFF_T_FMT " bytes", target.name,
                  target.finfo.size);
    jpip_err_set(&err, JPIP_E_UNSUPPORTED, "serving view-windows of %s is not implemented yet",
                 target.name);
    return refuse(r, target.name, &err);
}

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

static int jpip_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s)
{
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, JPIPLOGNO(0005) "mod_jpip/%s ready",
                 JPIP_MODULE_VERSION);
    return OK;
}

static void jpip_register_hooks(apr_pool_t *p)
{
    ap_hook_post_config(jpip_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_map_to_storage(jpip_map_to_storage, NULL, NULL, APR_HOOK_FIRST);
    ap_hook_handler(jpip_handler, NULL, NULL, APR_HOOK_MIDDLE);
}

module AP_MODULE_DECLARE_DATA jpip_module = {STANDARD20_MODULE_STUFF,
                                             jpip_dir_create, /* per-directory config */
                                             jpip_dir_merge,  /* merge per-directory */
                                             NULL,            /* per-server config */
                                             NULL,            /* merge per-server */
                                             jpip_cmds,       /* directives */
                                             jpip_register_hooks,
#if defined(AP_MODULE_FLAG_NONE)
                                             AP_MODULE_FLAG_ALWAYS_MERGE
#endif
};
