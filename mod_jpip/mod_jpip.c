/* mod_jpip: a JPIP (ITU-T T.808 | ISO/IEC 15444-9) server for httpd 2.4.
 *
 * This file is the module record and hook registration. Directives and
 * configuration merging are in config.c, the handler in handler.c, the
 * per-process target cache in targets.c; every JPIP semantic lives in
 * libcore.
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

/* The default index cache: a directory under httpd's runtime dir. */
static const char *default_index_dir(apr_pool_t *p)
{
    return ap_runtime_dir_relative(p, "jpip-index");
}

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
        jpip_store_conf_t stc;
        int rv;

        stc.slots = (int)jpip_srv_get(s, JPIP_V_SESSIONS);
        stc.memory = (apr_size_t)jpip_srv_get(s, JPIP_V_SESSION_MEMORY);
        stc.idle = jpip_srv_get(s, JPIP_V_SESSION_TIMEOUT);
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
    ap_hook_handler(jpip_iiif_handle, NULL, NULL, APR_HOOK_MIDDLE);
    jpip_status_register();
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
