/* mod_jpip: shared declarations of the httpd glue.
 *
 * mod_jpip is the only part of the project that includes httpd headers. It
 * owns configuration, the handler hook, target resolution against the
 * configured archive directory and (later) the shared-memory session
 * store; every JPIP semantic lives in libcore.
 */
#ifndef MOD_JPIP_H
#define MOD_JPIP_H

#include <httpd.h>
#include <http_config.h>

#define JPIP_MODULE_VERSION "0.1.0"

/* Log tags: every line starts "JPIPnnnn: " so admins can grep and filter. */
#define JPIPLOGNO(n) "JPIP" #n ": "

/* Per-directory (per-<Location>) configuration. Every field has an
 * explicit unset value so the merge can tell "not said" from "said". */
typedef struct jpip_dir_conf_t {
    const char *root;        /* JPIPRoot: the archive directory; NULL = unset */
    const char *location;    /* the <Location> path JPIPRoot was given in */
    int allow_outside_links; /* JPIPFollowOutsideLinks; -1 = unset */
    apr_off_t max_body;      /* JPIPMaxRequestBody; -1 = unset */
} jpip_dir_conf_t;

extern module AP_MODULE_DECLARE_DATA jpip_module;

#endif /* MOD_JPIP_H */
