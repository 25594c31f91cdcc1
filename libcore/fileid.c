/* mod_jpip: what a file is and what it holds. */
#include "fileid.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_portable.h>
#include <apr_sha1.h>

jpip_code_t jpip_fileid_of_file(apr_file_t *f, jpip_fileid_t *id, jpip_err_t *err)
{
    apr_os_file_t fd;
    struct stat st;

    if (apr_os_file_get(&fd, f) != APR_SUCCESS || fstat(fd, &st) != 0) {
        return jpip_err_set(err, JPIP_E_IO, "the target cannot be examined");
    }
    memset(id, 0, sizeof(*id));
    id->dev = (apr_uint64_t)st.st_dev;
    id->ino = (apr_uint64_t)st.st_ino;
    id->size = st.st_size > 0 ? (apr_uint64_t)st.st_size : 0;
    id->mtime_ns = (apr_int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    id->ctime_ns = (apr_int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
    return JPIP_OK;
}

int jpip_fileid_equal(const jpip_fileid_t *a, const jpip_fileid_t *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}

void jpip_fileid_to_key(const jpip_fileid_t *id, jpip_index_key_t *key)
{
    key->size = id->size;
    key->mtime = id->mtime_ns / 1000; /* apr_time_t */
    key->dev = id->dev;
    key->ino = id->ino;
    key->mtime_ns = id->mtime_ns;
    key->ctime_ns = id->ctime_ns;
}

int jpip_fileid_matches_key(const jpip_fileid_t *id, const jpip_index_key_t *key)
{
    return key->size == id->size && key->dev == id->dev && key->ino == id->ino &&
           key->mtime_ns == id->mtime_ns && key->ctime_ns == id->ctime_ns;
}

jpip_code_t jpip_file_pread(apr_file_t *f, apr_uint64_t off, void *buf, apr_size_t len,
                            jpip_err_t *err)
{
    apr_os_file_t fd;
    char *p = buf;

    if (apr_os_file_get(&fd, f) != APR_SUCCESS) {
        return jpip_err_set(err, JPIP_E_IO, "the target could not be read");
    }
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return jpip_err_set(err, JPIP_E_IO,
                                n == 0 ? "the target is shorter than its index says (it changed)"
                                       : "the target could not be read");
        }
        p += n;
        off += (apr_uint64_t)n;
        len -= (apr_size_t)n;
    }
    return JPIP_OK;
}

void jpip_file_window_init(jpip_file_window_t *w, apr_file_t *f, apr_uint64_t size,
                           unsigned char *buf, apr_size_t cap)
{
    w->f = f;
    w->size = size;
    w->buf = buf;
    w->cap = cap;
    w->start = 0;
    w->len = 0;
}

jpip_code_t jpip_file_window_copy(jpip_file_window_t *w, apr_uint64_t off, apr_size_t len,
                                  void *out, jpip_err_t *err)
{
    jpip_code_t rc;
    apr_size_t n;

    if (off >= w->start && len <= w->len && off - w->start <= w->len - len) {
        memcpy(out, w->buf + (off - w->start), len);
        return JPIP_OK;
    }
    if (len >= w->cap || off >= w->size) {
        return jpip_file_pread(w->f, off, out, len, err);
    }
    n = w->size - off < w->cap ? (apr_size_t)(w->size - off) : w->cap;
    if (n < len) {
        n = len;
    }
    w->len = 0;
    rc = jpip_file_pread(w->f, off, w->buf, n, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    w->start = off;
    w->len = n;
    memcpy(out, w->buf, len);
    return JPIP_OK;
}

#define HEAD_BYTES (64 * 1024)
#define MAIN_MAX (1024 * 1024) /* of main header bytes hashed, over all codestreams */
#define MAIN_CS 4              /* codestreams whose main header is hashed */
#define SAMPLES 32
#define SAMPLE_BYTES 4096

static jpip_code_t hash_range(apr_sha1_ctx_t *ctx, apr_file_t *f, apr_uint64_t off,
                              apr_uint64_t len, unsigned char *buf, jpip_err_t *err)
{
    while (len > 0) {
        apr_size_t n = len > HEAD_BYTES ? HEAD_BYTES : (apr_size_t)len;
        jpip_code_t rc = jpip_file_pread(f, off, buf, n, err);

        if (rc != JPIP_OK) {
            return rc;
        }
        apr_sha1_update_binary(ctx, buf, (unsigned)n);
        off += n;
        len -= n;
    }
    return JPIP_OK;
}

jpip_code_t jpip_file_digest(apr_file_t *f, apr_uint64_t size, const jpip_index_t *ix,
                             unsigned char out[JPIP_INDEX_DIGEST_LEN], jpip_err_t *err)
{
    unsigned char buf[HEAD_BYTES];
    unsigned char sz[8];
    apr_sha1_ctx_t ctx;
    apr_uint64_t main_left = MAIN_MAX, cs, ncs = ix != NULL ? jpip_index_ncs(ix) : 0;
    jpip_code_t rc;
    int i;

    apr_sha1_init(&ctx);
    for (i = 0; i < 8; i++) {
        sz[i] = (unsigned char)(size >> (8 * i));
    }
    apr_sha1_update_binary(&ctx, sz, sizeof(sz));
    rc = hash_range(&ctx, f, 0, size < HEAD_BYTES ? size : HEAD_BYTES, buf, err);
    for (cs = 0; cs < ncs && cs < MAIN_CS && rc == JPIP_OK; cs++) {
        const jpip_bin_t *bin = jpip_index_bin_at(ix, jpip_index_cs(ix, cs)->main_bin);
        const jpip_piece_t *pc = jpip_index_pieces(ix, bin);
        apr_uint32_t k;

        for (k = 0; k < bin->npieces && main_left > 0 && rc == JPIP_OK; k++) {
            apr_uint64_t n = pc[k].len < main_left ? pc[k].len : main_left;

            if (jpip_piece_is_synth(&pc[k])) {
                continue;
            }
            if (pc[k].off > size || n > size - pc[k].off) {
                return jpip_err_set(err, JPIP_E_IO, "the target is shorter than its index says");
            }
            rc = hash_range(&ctx, f, pc[k].off, n, buf, err);
            main_left -= n;
        }
    }
    if (size > HEAD_BYTES && rc == JPIP_OK) {
        apr_uint64_t span = size - SAMPLE_BYTES;

        for (i = 0; i < SAMPLES && rc == JPIP_OK; i++) {
            apr_uint64_t off = span / (SAMPLES - 1) * (apr_uint64_t)i;

            if (i == SAMPLES - 1) {
                off = span;
            }
            rc = hash_range(&ctx, f, off, SAMPLE_BYTES, buf, err);
        }
    }
    if (rc != JPIP_OK) {
        return rc;
    }
    apr_sha1_final(out, &ctx);
    return JPIP_OK;
}
