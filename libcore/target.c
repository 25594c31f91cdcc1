/* mod_jpip: confining a requested target to the archive directory. */
#include "target.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

/* Normalise name into a relative path: drop empty and "." segments,
 * refuse "..". Returns NULL (with err set) when refused. */
static const char *normalise(apr_pool_t *pool, const char *name, jpip_err_t *err)
{
    apr_size_t len = strlen(name);
    char *out = apr_palloc(pool, len + 1);
    apr_size_t o = 0;
    const char *p = name;

    while (*p != '\0') {
        const char *end = strchr(p, '/');
        apr_size_t n = end != NULL ? (apr_size_t)(end - p) : strlen(p);

        if (n == 2 && p[0] == '.' && p[1] == '.') {
            jpip_err_set(err, JPIP_E_FORBIDDEN, "target leaves the archive (a \"..\" segment)");
            return NULL;
        }
        if (n > 0 && !(n == 1 && p[0] == '.')) {
            if (o > 0) {
                out[o++] = '/';
            }
            memcpy(out + o, p, n);
            o += n;
        }
        p += n;
        if (*p == '/') {
            p++;
        }
    }
    out[o] = '\0';
    if (o == 0) {
        jpip_err_set(err, JPIP_E_REQUEST,
                     "no target named (give target= or a path below the "
                     "JPIP location)");
        return NULL;
    }
    return out;
}

/* Is path equal to root or below it? Both canonical. */
static int inside(const char *root, const char *path)
{
    apr_size_t n = strlen(root);

    if (n == 1 && root[0] == '/') {
        return path[0] == '/';
    }
    return strncmp(root, path, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* root's canonical form into realroot (PATH_MAX bytes). */
static jpip_code_t real_root(const char *root, char *realroot, jpip_err_t *err)
{
    if (realpath(root, realroot) == NULL) {
        return jpip_err_set(err, JPIP_E_NOTFOUND, "the archive directory is not available");
    }
    return JPIP_OK;
}

jpip_code_t jpip_target_resolve(apr_pool_t *pool, const char *root, const char *name,
                                int allow_outside_links, jpip_target_t *t, jpip_err_t *err)
{
    const char *rel;
    char *joined = NULL;
    char realroot[PATH_MAX], realfile[PATH_MAX];
    apr_status_t rv;
    jpip_code_t rc;

    if (name == NULL || strchr(name, '\\') != NULL) {
        return jpip_err_set(err, JPIP_E_REQUEST, "malformed target name");
    }
    rel = normalise(pool, name, err);
    if (rel == NULL) {
        return err != NULL ? err->code : JPIP_E_REQUEST;
    }
    rv = apr_filepath_merge(&joined, root, rel,
                            APR_FILEPATH_NOTABOVEROOT | APR_FILEPATH_NOTRELATIVE, pool);
    if (rv != APR_SUCCESS) {
        return jpip_err_set(err, JPIP_E_FORBIDDEN, "target leaves the archive");
    }
    if (realpath(joined, realfile) == NULL) {
        int e = errno;

        if ((rc = real_root(root, realroot, err)) != JPIP_OK) {
            return rc;
        }
        if (e == ENOENT || e == ENOTDIR) {
            return jpip_err_set(err, JPIP_E_NOTFOUND, "no such target: %.200s", rel);
        }
        return jpip_err_set(err, JPIP_E_FORBIDDEN, "target %.200s is not accessible", rel);
    }
    /* A canonical path that begins with root as written (the usual case)
     * is inside it: a canonical path has no link, '.' or '..' component, so
     * root is then a real directory, its own canonical form. Otherwise the
     * root is resolved too (a link to the archive, a path with '..'). */
    if (!allow_outside_links && !inside(root, realfile)) {
        if ((rc = real_root(root, realroot, err)) != JPIP_OK) {
            return rc;
        }
        if (!inside(realroot, realfile)) {
            return jpip_err_set(err, JPIP_E_FORBIDDEN,
                                "target %.200s is a link that leaves the archive", rel);
        }
    }
    rv = apr_stat(&t->finfo, realfile, APR_FINFO_TYPE | APR_FINFO_SIZE | APR_FINFO_MTIME, pool);
    if (rv != APR_SUCCESS && rv != APR_INCOMPLETE) {
        return jpip_err_set(err, JPIP_E_NOTFOUND, "no such target: %.200s", rel);
    }
    if (t->finfo.filetype == APR_DIR) {
        return jpip_err_set(err, JPIP_E_NOTFOUND, "target %.200s is a directory, not an image",
                            rel);
    }
    if (t->finfo.filetype != APR_REG) {
        return jpip_err_set(err, JPIP_E_FORBIDDEN, "target %.200s is not a regular file", rel);
    }
    t->name = rel;
    t->path = apr_pstrdup(pool, realfile);
    return JPIP_OK;
}
