/* mod_jpip: random-access reading of an untrusted image file.
 *
 * A jpip_src_t reads bytes at 64-bit offsets from either an open APR file
 * or a memory buffer (tests, fuzzers). Reads go through one buffered
 * window, so walking headers and seeking past packet bodies costs only the
 * pages actually touched. Every read is bounds-checked against the source
 * size: asking for bytes past the end is a JPIP_E_FORMAT error naming the
 * offset, never a short read the caller could forget to check.
 */
#ifndef JPIP_SOURCE_H
#define JPIP_SOURCE_H

#include <apr_file_io.h>
#include <apr_pools.h>

#include "jpip_err.h"

typedef struct jpip_src_t jpip_src_t;

/* Wrap an open file. size is the file size (from apr_file_info_get). */
jpip_code_t jpip_src_open_file(jpip_src_t **src, apr_pool_t *pool, apr_file_t *file,
                               apr_uint64_t size, jpip_err_t *err);

/* A view of a fragmented codestream (JPX fragment tables): the logical
 * bytes are the concatenation of the given file ranges of base, which must
 * each lie inside base. Offsets passed to the readers below are logical;
 * jpip_src_map turns a logical range back into file pieces. The frags
 * array is copied. */
struct jpip_piece_t;
jpip_code_t jpip_src_open_frags(jpip_src_t **src, apr_pool_t *pool, jpip_src_t *base,
                                const struct jpip_piece_t *frags, apr_size_t nfrags,
                                jpip_err_t *err);

/* Translate the logical range [off, off+len) into file pieces, calling
 * emit for each (one call for plain sources, possibly several across
 * fragment boundaries). Stops at and returns emit's first error. */
typedef jpip_code_t (*jpip_src_emit_fn)(void *ctx, apr_uint64_t file_off, apr_uint64_t len,
                                        jpip_err_t *err);
jpip_code_t jpip_src_map(const jpip_src_t *src, apr_uint64_t off, apr_uint64_t len,
                         jpip_src_emit_fn emit, void *ctx, jpip_err_t *err);

/* Wrap a memory buffer, which must outlive the source. */
jpip_code_t jpip_src_open_mem(jpip_src_t **src, apr_pool_t *pool, const void *data,
                              apr_uint64_t size, jpip_err_t *err);

/* Total size in bytes. */
apr_uint64_t jpip_src_size(const jpip_src_t *src);

/* Copy exactly len bytes at offset off into buf. JPIP_E_FORMAT if the
 * range is not inside the source, JPIP_E_IO if the file read fails. */
jpip_code_t jpip_src_read(jpip_src_t *src, apr_uint64_t off, void *buf, apr_size_t len,
                          jpip_err_t *err);

/* Return a pointer to len bytes at off, valid until the next call on src.
 * len must be at most JPIP_SRC_PEEK_MAX. Same errors as jpip_src_read. */
#define JPIP_SRC_PEEK_MAX 65536
jpip_code_t jpip_src_peek(jpip_src_t *src, apr_uint64_t off, apr_size_t len,
                          const unsigned char **out, jpip_err_t *err);

/* Big-endian readers with the same checking. */
jpip_code_t jpip_src_u8(jpip_src_t *src, apr_uint64_t off, unsigned *v, jpip_err_t *err);
jpip_code_t jpip_src_u16(jpip_src_t *src, apr_uint64_t off, unsigned *v, jpip_err_t *err);
jpip_code_t jpip_src_u32(jpip_src_t *src, apr_uint64_t off, apr_uint32_t *v, jpip_err_t *err);
jpip_code_t jpip_src_u64(jpip_src_t *src, apr_uint64_t off, apr_uint64_t *v, jpip_err_t *err);

/* Bytes physically read from the underlying file so far (statistics). */
apr_uint64_t jpip_src_bytes_read(const jpip_src_t *src);

/* Read-ahead steps taken so far (statistics): each asks the kernel for
 * the next stretch of a file read densely, unless it is cached already. */
apr_uint64_t jpip_src_ahead_steps(const jpip_src_t *src);

/* Big-endian decoding helpers for bytes already in memory. */
static inline unsigned jpip_be16(const unsigned char *p)
{
    return ((unsigned)p[0] << 8) | p[1];
}
static inline apr_uint32_t jpip_be32(const unsigned char *p)
{
    return ((apr_uint32_t)p[0] << 24) | ((apr_uint32_t)p[1] << 16) | ((apr_uint32_t)p[2] << 8) |
           p[3];
}
static inline apr_uint64_t jpip_be64(const unsigned char *p)
{
    return ((apr_uint64_t)jpip_be32(p) << 32) | jpip_be32(p + 4);
}

#endif /* JPIP_SOURCE_H */
