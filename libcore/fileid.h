/* mod_jpip: what a file is and what it holds.
 *
 * A target's identity is what changes whenever its contents can have
 * changed: the device and inode (a file renamed over the old name is
 * another inode), the size, and the modification and status-change times
 * to the nanosecond (an in-place rewrite changes ctime even when mtime is
 * set back with `touch -r` or `cp -p`). It is read from an open descriptor
 * (fstat), so it is the identity of the very bytes read through it.
 *
 * An index or rendition found on disk must also prove it belongs to the
 * bytes: jpip_file_digest hashes the file's size, its first 64 KiB, the
 * main header of its first codestreams and 32 ranges of 4 KiB spread over
 * the file (the last one ending at its end), read through the descriptor.
 *
 * jpip_file_pread reads at an offset without the descriptor's position, so
 * threads may share one descriptor.
 */
#ifndef JPIP_FILEID_H
#define JPIP_FILEID_H

#include <apr_file_io.h>

#include "index.h"
#include "jpip_err.h"

typedef struct jpip_fileid_t {
    apr_uint64_t dev, ino, size;
    apr_int64_t mtime_ns, ctime_ns;
} jpip_fileid_t;

/* The identity of an open file (fstat). JPIP_E_IO if it cannot be had. */
jpip_code_t jpip_fileid_of_file(apr_file_t *f, jpip_fileid_t *id, jpip_err_t *err);

/* 1 when a and b are the same version of the same file. */
int jpip_fileid_equal(const jpip_fileid_t *a, const jpip_fileid_t *b);

/* The identity fields of an index key (and back). */
void jpip_fileid_to_key(const jpip_fileid_t *id, jpip_index_key_t *key);
int jpip_fileid_matches_key(const jpip_fileid_t *id, const jpip_index_key_t *key);

/* Read exactly len bytes at off. JPIP_E_IO when the file is shorter (it
 * shrank) or the read fails. */
jpip_code_t jpip_file_pread(apr_file_t *f, apr_uint64_t off, void *buf, apr_size_t len,
                            jpip_err_t *err);

/* Small reads near each other served from one larger read: a window of
 * cap bytes of f (buf, from the caller) refilled with one pread when a
 * range falls outside it. */
typedef struct jpip_file_window_t {
    apr_file_t *f;
    apr_uint64_t size; /* the file's length as indexed */
    unsigned char *buf;
    apr_size_t cap;
    apr_uint64_t start; /* buf holds bytes [start, start + len) */
    apr_size_t len;
} jpip_file_window_t;

void jpip_file_window_init(jpip_file_window_t *w, apr_file_t *f, apr_uint64_t size,
                           unsigned char *buf, apr_size_t cap);

/* Copy bytes [off, off + len) of the file to out. JPIP_E_IO when the file
 * is shorter now or cannot be read. */
jpip_code_t jpip_file_window_copy(jpip_file_window_t *w, apr_uint64_t off, apr_size_t len,
                                  void *out, jpip_err_t *err);

/* The digest of the size bytes of f described above; ix (may be NULL)
 * locates the main headers. */
jpip_code_t jpip_file_digest(apr_file_t *f, apr_uint64_t size, const jpip_index_t *ix,
                             unsigned char out[JPIP_INDEX_DIGEST_LEN], jpip_err_t *err);

#endif /* JPIP_FILEID_H */
