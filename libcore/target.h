/* mod_jpip: confining a requested target to the archive directory.
 *
 * The target name comes from the request (the `target` field, or the URL
 * path below the JPIP location) and is untrusted. It is resolved inside
 * the archive root and must stay there: no `..` segments, no absolute
 * escape, no symbolic link that leads outside (unless the caller allows
 * it), and only regular files are served.
 */
#ifndef JPIP_TARGET_H
#define JPIP_TARGET_H

#include <apr_file_info.h>
#include <apr_pools.h>

#include "jpip_err.h"

typedef struct jpip_target_t {
    const char *name; /* the normalised name relative to the root, for logs */
    const char *path; /* absolute path of the file, symbolic links resolved */
    apr_finfo_t finfo;
} jpip_target_t;

/* Resolve name under root. root must be an absolute directory path.
 * Returns JPIP_OK and fills *t, or:
 *   JPIP_E_REQUEST   the name is empty or malformed;
 *   JPIP_E_FORBIDDEN the name would leave the root (a `..` segment, a
 *                    symbolic link outside when allow_outside_links is 0),
 *                    or names something that is not a regular file nor a
 *                    directory (device, FIFO, socket);
 *   JPIP_E_NOTFOUND  no such file, or it is a directory.
 * Messages never contain the root or any other server path. */
jpip_code_t jpip_target_resolve(apr_pool_t *pool, const char *root, const char *name,
                                int allow_outside_links, jpip_target_t *t, jpip_err_t *err);

#endif /* JPIP_TARGET_H */
