/* mod_jpip: the on-disk index cache.
 *
 * An index is built once per file and kept in a cache directory, one file
 * per target, named by a hash of the target's path. The file records the
 * source key (path and identity, fileid.h) and the digest of the bytes it
 * was built from; an index is used only while the target's identity is
 * the recorded one and the digest of its bytes, taken again at load, is
 * the recorded one: anything else (the file changed, or was replaced by
 * one of the same size and times) means a rebuild, never an answer. Cache files are written to a
 * temporary name and renamed into place, so a reader never sees a partial
 * index and concurrent builders of the same target simply race to an
 * identical result. Readers map the file read-only: every worker process
 * shares one copy in the page cache, and a restart costs no rebuild.
 */
#ifndef JPIP_IXCACHE_H
#define JPIP_IXCACHE_H

#include <apr_file_info.h>
#include <apr_pools.h>

#include "fileid.h"
#include "index.h"
#include "jpip_err.h"
#include "rendition.h"

typedef enum {
    JPIP_IXC_MAPPED = 0,   /* loaded from a valid cache file */
    JPIP_IXC_BUILT,        /* built now (and stored, when a cache dir is set) */
    JPIP_IXC_BUILT_NOSTORE /* built now; storing it failed (see store_err) */
} jpip_ixc_how_t;

typedef struct jpip_ixc_result_t {
    jpip_index_t *ix;
    jpip_ixc_how_t how;
    jpip_err_t store_err; /* why the cache file could not be written */
} jpip_ixc_result_t;

/* The target id (JPIP tid) of a file version: a hash of the identity in
 * ix's key but its device (size, inode, mtime and ctime in nanoseconds)
 * and of its content digest, so it changes whenever the file does, and is
 * the same on every host that mounts the same file system. 24 hex digits.
 * path is not part of it. */
const char *jpip_ixcache_tid(apr_pool_t *pool, const char *path, const jpip_index_t *ix);

/* The cache file name for path inside dir. */
const char *jpip_ixcache_file(apr_pool_t *pool, const char *dir, const char *path);

/* Map the cache file of path if it indexes exactly the file open as f,
 * whose identity is id (fstat of f): the recorded identity is id and the
 * digest of f's bytes is the recorded one. Returns 1 and sets *ix, or 0
 * (no cache file, a stale, foreign or damaged one: the caller builds). */
int jpip_ixcache_load(apr_pool_t *pool, const char *dir, const char *path, apr_file_t *f,
                      const jpip_fileid_t *id, jpip_index_t **ix);

/* Open the index of the regular file at path, open as f with identity id.
 * With dir NULL nothing is cached on disk. Otherwise one process of the
 * host builds it: a lock file beside the cache file is taken exclusively
 * (one older than wait plus 5 s, left by a
 * builder that died, is taken over); the others wait up to wait for
 * the cache file, then build it themselves without storing it
 * (JPIP_IXC_BUILT_NOSTORE). The index and its mapping live as long as
 * pool. Errors are those of jpip_index_build (the file is not JPEG 2000,
 * a limit was hit) and JPIP_E_IO when the target cannot be read or changed
 * while it was read; a cache that cannot be read or written only costs a
 * rebuild. */
jpip_code_t jpip_ixcache_open(apr_pool_t *pool, const char *dir, const char *path, apr_file_t *f,
                              const jpip_fileid_t *id, const jpip_index_limits_t *limits,
                              apr_interval_time_t wait, jpip_ixc_result_t *res, jpip_err_t *err);

/* ---- renditions (rendition.h), kept beside the index ---- */

/* The rendition file name for path inside dir. */
const char *jpip_ixcache_rend_file(apr_pool_t *pool, const char *dir, const char *path);

/* Map the rendition of path made from ix, if there is a valid one.
 * Returns 1 and sets *rd, or 0. The mapping lives as long as pool. With
 * file not NULL the file stays open there too (for sendfile: the same
 * file as the mapping, whatever later replaces it under its name). */
int jpip_ixcache_rend_load(apr_pool_t *pool, const char *dir, const char *path,
                           const jpip_index_t *ix, jpip_rend_t **rd, apr_file_t **file);

/* Write the rendition of path (indexed by ix) into dir, reading the
 * target through file (whose identity the caller checked against ix):
 * to a temporary name taken exclusively, so that only one process builds
 * it, then renamed into place. JPIP_E_LIMIT when another builder holds
 * the temporary name (one left behind for stale_after is taken over) or
 * *cancel became nonzero; JPIP_E_IO when it cannot be written. */
jpip_code_t jpip_ixcache_rend_store(apr_pool_t *pool, const char *dir, const char *path,
                                    const jpip_index_t *ix, apr_file_t *file,
                                    apr_interval_time_t stale_after, volatile apr_uint32_t *cancel,
                                    jpip_err_t *err);

#endif /* JPIP_IXCACHE_H */
