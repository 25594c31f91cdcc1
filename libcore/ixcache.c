/* mod_jpip: the on-disk index cache. */
#include "ixcache.h"

#include <string.h>

#include <apr_mmap.h>
#include <apr_sha1.h>
#include <apr_strings.h>

#include "fileid.h"

/* Hex SHA-1 of data (first nhex digits). */
static char *sha1_hex(apr_pool_t *pool, const void *data, apr_size_t len, int nhex)
{
    unsigned char digest[APR_SHA1_DIGESTSIZE];
    char *hex = apr_palloc(pool, 2 * APR_SHA1_DIGESTSIZE + 1);
    apr_sha1_ctx_t ctx;
    int i;

    apr_sha1_init(&ctx);
    apr_sha1_update_binary(&ctx, data, (unsigned)len);
    apr_sha1_final(digest, &ctx);
    for (i = 0; i < APR_SHA1_DIGESTSIZE; i++) {
        static const char x[] = "0123456789abcdef";
        hex[2 * i] = x[digest[i] >> 4];
        hex[2 * i + 1] = x[digest[i] & 15];
    }
    hex[nhex < 2 * APR_SHA1_DIGESTSIZE ? nhex : 2 * APR_SHA1_DIGESTSIZE] = '\0';
    return hex;
}

const char *jpip_ixcache_tid(apr_pool_t *pool, const char *path, const jpip_index_t *ix)
{
    jpip_index_key_t k;
    char *key;

    jpip_index_key(ix, &k);
    /* neither the path nor the device: hosts that mount one archive (NFS)
     * at different places or with different device numbers see one tid
     * for one file version, so a session moving between them keeps its
     * model; the inode, ctime and mtime still change with every rewrite */
    (void)path;
    key = apr_psprintf(
        pool,
        "%" APR_UINT64_T_FMT "|%" APR_UINT64_T_FMT "|%" APR_INT64_T_FMT "|%" APR_INT64_T_FMT "|%s",
        k.size, k.ino, k.mtime_ns, k.ctime_ns, sha1_hex(pool, k.digest, JPIP_INDEX_DIGEST_LEN, 40));
    return sha1_hex(pool, key, strlen(key), 24);
}

const char *jpip_ixcache_file(apr_pool_t *pool, const char *dir, const char *path)
{
    return apr_pstrcat(pool, dir, "/", sha1_hex(pool, path, strlen(path), 40), ".jpix", NULL);
}

/* Open a cache file and map the whole of it read-only (in pool).
 * Returns 0 when it is missing, empty or cannot be mapped. */
static int map_file(apr_pool_t *pool, const char *file, apr_int32_t flags, apr_file_t **f,
                    apr_mmap_t **mm)
{
    apr_finfo_t cf;

    if (apr_file_open(f, file, APR_FOPEN_READ | APR_FOPEN_BINARY | flags, 0, pool) != APR_SUCCESS) {
        return 0;
    }
    if (apr_file_info_get(&cf, APR_FINFO_SIZE, *f) != APR_SUCCESS || cf.size <= 0 ||
        (apr_uint64_t)cf.size > (apr_uint64_t)APR_SIZE_MAX ||
        apr_mmap_create(mm, *f, 0, (apr_size_t)cf.size, APR_MMAP_READ, pool) != APR_SUCCESS) {
        apr_file_close(*f);
        return 0;
    }
    return 1;
}

/* Map a cache file and accept it if it indexes exactly this source: the
 * same path and identity, and the digest of the bytes behind src equal to
 * the one recorded when it was built. */
static int try_load(apr_pool_t *pool, const char *file, const char *path, apr_file_t *src,
                    const jpip_fileid_t *id, jpip_index_t **ix)
{
    apr_file_t *f;
    apr_mmap_t *mm;
    jpip_index_key_t key;
    jpip_err_t err;
    unsigned char digest[JPIP_INDEX_DIGEST_LEN];

    if (!map_file(pool, file, 0, &f, &mm)) {
        return 0;
    }
    apr_file_close(f); /* the mapping stays valid */
    if (jpip_index_load(ix, pool, mm->mm, mm->size, &err) != JPIP_OK) {
        return 0;
    }
    jpip_index_key(*ix, &key);
    if (!jpip_fileid_matches_key(id, &key) || key.path == NULL || strcmp(key.path, path) != 0) {
        return 0;
    }
    return jpip_file_digest(src, id->size, *ix, digest, &err) == JPIP_OK &&
           memcmp(digest, key.digest, JPIP_INDEX_DIGEST_LEN) == 0;
}

static jpip_code_t store(apr_pool_t *pool, const char *file, const jpip_index_t *ix,
                         jpip_err_t *err)
{
    char *tmp = apr_pstrcat(pool, file, ".XXXXXX", NULL);
    apr_file_t *f;
    jpip_code_t rc;

    if (apr_file_mktemp(&f, tmp, APR_FOPEN_CREATE | APR_FOPEN_WRITE | APR_FOPEN_EXCL, pool) !=
        APR_SUCCESS) {
        return jpip_err_set(err, JPIP_E_IO, "cannot create a file in the index cache directory");
    }
    rc = jpip_index_write(ix, f, err);
    if (apr_file_close(f) != APR_SUCCESS && rc == JPIP_OK) {
        rc = jpip_err_set(err, JPIP_E_IO, "cannot write the index cache file");
    }
    if (rc == JPIP_OK && apr_file_rename(tmp, file, pool) != APR_SUCCESS) {
        rc = jpip_err_set(err, JPIP_E_IO, "cannot rename the index cache file into place");
    }
    if (rc != JPIP_OK) {
        apr_file_remove(tmp, pool);
    }
    return rc;
}

int jpip_ixcache_load(apr_pool_t *pool, const char *dir, const char *path, apr_file_t *f,
                      const jpip_fileid_t *id, jpip_index_t **ix)
{
    return dir != NULL && try_load(pool, jpip_ixcache_file(pool, dir, path), path, f, id, ix);
}

/* Build the index from f and seal it with the digest of f's bytes. */
static jpip_code_t build(apr_pool_t *pool, const char *path, apr_file_t *f, const jpip_fileid_t *id,
                         const jpip_index_limits_t *limits, jpip_index_t **ix, jpip_err_t *err)
{
    jpip_src_t *src;
    jpip_index_key_t key;
    jpip_fileid_t after;
    unsigned char digest[JPIP_INDEX_DIGEST_LEN];
    jpip_code_t rc;

    memset(&key, 0, sizeof(key));
    rc = jpip_src_open_file(&src, pool, f, id->size, err);
    if (rc == JPIP_OK) {
        key.path = path;
        jpip_fileid_to_key(id, &key);
        rc = jpip_index_build(ix, pool, src, &key, limits, err);
    }
    if (rc == JPIP_OK) {
        rc = jpip_file_digest(f, id->size, *ix, digest, err);
    }
    if (rc == JPIP_OK) {
        rc = jpip_index_seal(*ix, digest, err);
    }
    /* a file rewritten while it was read is indexed from mixed bytes */
    if (rc == JPIP_OK &&
        (jpip_fileid_of_file(f, &after, err) != JPIP_OK || !jpip_fileid_equal(id, &after))) {
        rc = jpip_err_set(err, JPIP_E_IO, "the target changed while it was being indexed");
    }
    return rc;
}

/* The build lock: one process of the host builds an index, the others
 * wait for its cache file. */
#define LOCK_POLL apr_time_from_msec(20)
#define LOCK_SLACK apr_time_from_sec(5)

static int lock_take(apr_pool_t *pool, const char *lock, apr_interval_time_t stale_after)
{
    apr_file_t *lf;
    apr_int32_t flags = APR_FOPEN_CREATE | APR_FOPEN_WRITE | APR_FOPEN_EXCL;
    apr_status_t rv = apr_file_open(&lf, lock, flags, APR_FPROT_UREAD | APR_FPROT_UWRITE, pool);

    if (APR_STATUS_IS_EEXIST(rv)) {
        apr_finfo_t fi;

        /* a builder that died leaves its lock behind */
        if (apr_stat(&fi, lock, APR_FINFO_MTIME, pool) != APR_SUCCESS ||
            apr_time_now() - fi.mtime < stale_after) {
            return 0;
        }
        apr_file_remove(lock, pool);
        rv = apr_file_open(&lf, lock, flags, APR_FPROT_UREAD | APR_FPROT_UWRITE, pool);
    }
    if (rv != APR_SUCCESS) {
        return 0;
    }
    apr_file_close(lf);
    return 1;
}

jpip_code_t jpip_ixcache_open(apr_pool_t *pool, const char *dir, const char *path, apr_file_t *f,
                              const jpip_fileid_t *id, const jpip_index_limits_t *limits,
                              apr_interval_time_t wait, jpip_ixc_result_t *res, jpip_err_t *err)
{
    const char *file = dir != NULL ? jpip_ixcache_file(pool, dir, path) : NULL;
    const char *lock = file != NULL ? apr_pstrcat(pool, file, ".lock", NULL) : NULL;
    apr_time_t deadline = apr_time_now() + wait;
    int locked = 0;
    jpip_code_t rc;

    memset(res, 0, sizeof(*res));
    if (file != NULL) {
        for (;;) {
            if (try_load(pool, file, path, f, id, &res->ix)) {
                res->how = JPIP_IXC_MAPPED;
                return JPIP_OK;
            }
            /* a live builder gives up by wait (JPIPIndexMaxTime): a lock
             * older than that was left by one that died */
            if (lock_take(pool, lock, wait > 0 ? wait + LOCK_SLACK : apr_time_from_sec(60))) {
                locked = 1;
                /* it may have been stored between the look and the lock */
                if (try_load(pool, file, path, f, id, &res->ix)) {
                    apr_file_remove(lock, pool);
                    res->how = JPIP_IXC_MAPPED;
                    return JPIP_OK;
                }
                break;
            }
            if (apr_time_now() > deadline) {
                break; /* build it here, without storing */
            }
            apr_sleep(LOCK_POLL);
        }
    }
    rc = build(pool, path, f, id, limits, &res->ix, err);
    if (rc != JPIP_OK) {
        if (locked) {
            apr_file_remove(lock, pool);
        }
        return rc;
    }
    res->how = JPIP_IXC_BUILT;
    if (file != NULL && !locked) {
        res->how = JPIP_IXC_BUILT_NOSTORE;
        jpip_err_set(&res->store_err, JPIP_E_LIMIT,
                     "another process was still building it after the wait");
    } else if (file != NULL && store(pool, file, res->ix, &res->store_err) != JPIP_OK) {
        res->how = JPIP_IXC_BUILT_NOSTORE;
    }
    if (locked) {
        apr_file_remove(lock, pool);
    }
    return JPIP_OK;
}

/* ---- renditions ---- */

const char *jpip_ixcache_rend_file(apr_pool_t *pool, const char *dir, const char *path)
{
    return apr_pstrcat(pool, dir, "/", sha1_hex(pool, path, strlen(path), 40), ".jprd", NULL);
}

int jpip_ixcache_rend_load(apr_pool_t *pool, const char *dir, const char *path,
                           const jpip_index_t *ix, jpip_rend_t **rd, apr_file_t **file)
{
    apr_file_t *f;
    apr_mmap_t *mm;
    jpip_err_t err;

    if (dir == NULL || !map_file(pool, jpip_ixcache_rend_file(pool, dir, path),
                                 APR_FOPEN_SENDFILE_ENABLED, &f, &mm)) {
        return 0;
    }
    if (jpip_rend_load(rd, pool, ix, mm->mm, mm->size, &err) != JPIP_OK) {
        apr_mmap_delete(mm);
        apr_file_close(f);
        return 0;
    }
    if (file != NULL) {
        *file = f;
    } else {
        apr_file_close(f);
    }
    return 1;
}

jpip_code_t jpip_ixcache_rend_store(apr_pool_t *pool, const char *dir, const char *path,
                                    const jpip_index_t *ix, apr_file_t *file,
                                    apr_interval_time_t stale_after, volatile apr_uint32_t *cancel,
                                    jpip_err_t *err)
{
    const char *dst = jpip_ixcache_rend_file(pool, dir, path);
    const char *tmp = apr_pstrcat(pool, dst, ".part", NULL);
    apr_int32_t flags = APR_FOPEN_CREATE | APR_FOPEN_WRITE | APR_FOPEN_EXCL | APR_FOPEN_BINARY;
    apr_file_t *f;
    apr_fileperms_t perms = APR_FPROT_UREAD | APR_FPROT_UWRITE; /* as the index */
    apr_status_t rv = apr_file_open(&f, tmp, flags, perms, pool);
    jpip_code_t rc;

    if (APR_STATUS_IS_EEXIST(rv)) {
        apr_finfo_t fi;

        /* a builder that died leaves its file behind: take it over once
         * it has not changed for stale_after */
        if (apr_stat(&fi, tmp, APR_FINFO_MTIME, pool) != APR_SUCCESS ||
            apr_time_now() - fi.mtime < stale_after) {
            return jpip_err_limit(err, JPIP_LIMIT_INDEX_BUSY, "another process is building it");
        }
        apr_file_remove(tmp, pool);
        rv = apr_file_open(&f, tmp, flags, perms, pool);
    }
    if (rv != APR_SUCCESS) {
        if (APR_STATUS_IS_EEXIST(rv)) {
            return jpip_err_limit(err, JPIP_LIMIT_INDEX_BUSY,
                                  "cannot create a file in the index cache directory");
        }
        return jpip_err_set(err, JPIP_E_IO, "cannot create a file in the index cache directory");
    }
    {
        jpip_index_key_t key;
        jpip_src_t *src;

        jpip_index_key(ix, &key);
        rc = jpip_src_open_file(&src, pool, file, key.size, err);
        if (rc == JPIP_OK) {
            rc = jpip_rend_write(ix, src, f, cancel, err);
        }
    }
    if (apr_file_close(f) != APR_SUCCESS && rc == JPIP_OK) {
        rc = jpip_err_set(err, JPIP_E_IO, "cannot write the rendition");
    }
    if (rc == JPIP_OK && apr_file_rename(tmp, dst, pool) != APR_SUCCESS) {
        rc = jpip_err_set(err, JPIP_E_IO, "cannot rename the rendition into place");
    }
    if (rc != JPIP_OK) {
        apr_file_remove(tmp, pool);
    }
    return rc;
}
