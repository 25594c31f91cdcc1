/* mod_jpip: buffered, bounds-checked random access to an image file. */
#include "source.h"

#include "piece.h"

#include <fcntl.h>
#include <string.h>
#include <sys/uio.h>

#include <apr_portable.h>
#include <apr_strings.h>

#define SRC_WINDOW (256 * 1024)
/* Reading on densely (packet headers one after another), ask the kernel
 * to read this far ahead, this much at a time: the disk works while the
 * headers are decoded instead of waiting for each window. */
#define SRC_AHEAD (32 * 1024 * 1024)
#define SRC_AHEAD_STEP (8 * 1024 * 1024)

struct jpip_src_t {
    apr_file_t *file;         /* NULL for memory sources */
    const unsigned char *mem; /* memory source data */
    apr_uint64_t size;
    unsigned char *win;   /* buffered window (file sources) */
    apr_uint64_t win_off; /* file offset of win[0] */
    apr_size_t win_len;   /* valid bytes in win */
    apr_uint64_t bytes_read;
    apr_uint64_t ahead; /* read ahead up to here (0: not reading densely) */
    apr_uint64_t ahead_steps;
    /* fragmented view over base (JPX fragment tables) */
    jpip_src_t *base;
    jpip_piece_t *frags;      /* file ranges in base */
    apr_uint64_t *frag_start; /* logical offset of each fragment */
    apr_size_t nfrags;
    unsigned char *scratch; /* assembles peeks that cross fragments */
};

static jpip_code_t check_range(const jpip_src_t *src, apr_uint64_t off, apr_size_t len,
                               jpip_err_t *err)
{
    if (off > src->size || len > src->size - off) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "unexpected end of file: %" APR_SIZE_T_FMT
                            " bytes wanted at offset %" APR_UINT64_T_FMT " of a %" APR_UINT64_T_FMT
                            "-byte file",
                            len, off, src->size);
    }
    return JPIP_OK;
}

jpip_code_t jpip_src_open_file(jpip_src_t **src, apr_pool_t *pool, apr_file_t *file,
                               apr_uint64_t size, jpip_err_t *err)
{
    jpip_src_t *s = apr_pcalloc(pool, sizeof(*s));

    s->file = file;
    s->size = size;
    s->win = apr_palloc(pool, SRC_WINDOW);
    if (s->win == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory for the read buffer");
    }
    *src = s;
    return JPIP_OK;
}

jpip_code_t jpip_src_open_frags(jpip_src_t **src, apr_pool_t *pool, jpip_src_t *base,
                                const jpip_piece_t *frags, apr_size_t nfrags, jpip_err_t *err)
{
    jpip_src_t *s = apr_pcalloc(pool, sizeof(*s));
    apr_uint64_t total = 0;
    apr_size_t i;

    for (i = 0; i < nfrags; i++) {
        if (frags[i].off > base->size || frags[i].len > base->size - frags[i].off) {
            return jpip_err_set(err, JPIP_E_FORMAT,
                                "fragment %" APR_SIZE_T_FMT " (offset %" APR_UINT64_T_FMT
                                ", length %" APR_UINT64_T_FMT ") lies outside the file",
                                i, frags[i].off, frags[i].len);
        }
        if (frags[i].len > UINT64_MAX / 2 - total) {
            return jpip_err_set(err, JPIP_E_FORMAT, "fragment lengths overflow");
        }
        total += frags[i].len;
    }
    s->base = base;
    s->nfrags = nfrags;
    s->frags = apr_palloc(pool, (nfrags + 1) * sizeof(*frags));
    if (nfrags > 0) {
        memcpy(s->frags, frags, nfrags * sizeof(*frags));
    }
    s->frag_start = apr_palloc(pool, (nfrags + 1) * sizeof(apr_uint64_t));
    s->scratch = apr_palloc(pool, JPIP_SRC_PEEK_MAX);
    total = 0;
    for (i = 0; i < nfrags; i++) {
        s->frag_start[i] = total;
        total += frags[i].len;
    }
    s->frag_start[nfrags] = total;
    s->size = total;
    *src = s;
    return JPIP_OK;
}

/* Index of the fragment holding logical offset off (off < size). */
static apr_size_t frag_find(const jpip_src_t *src, apr_uint64_t off)
{
    apr_size_t lo = 0, hi = src->nfrags;

    while (hi - lo > 1) {
        apr_size_t mid = lo + (hi - lo) / 2;
        if (src->frag_start[mid] <= off) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return lo;
}

jpip_code_t jpip_src_map(const jpip_src_t *src, apr_uint64_t off, apr_uint64_t len,
                         jpip_src_emit_fn emit, void *ctx, jpip_err_t *err)
{
    apr_size_t i;

    if (off > src->size || len > src->size - off) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "range of %" APR_UINT64_T_FMT " bytes at offset %" APR_UINT64_T_FMT
                            " lies outside the codestream",
                            len, off);
    }
    if (src->base == NULL) {
        return len == 0 ? JPIP_OK : emit(ctx, off, len, err);
    }
    if (len == 0) {
        return JPIP_OK;
    }
    for (i = frag_find(src, off); len > 0 && i < src->nfrags; i++) {
        apr_uint64_t in = off - src->frag_start[i];
        apr_uint64_t n = src->frags[i].len - in;
        jpip_code_t rc;

        if (n > len) {
            n = len;
        }
        if (n > 0) {
            rc = emit(ctx, src->frags[i].off + in, n, err);
            if (rc != JPIP_OK) {
                return rc;
            }
        }
        off += n;
        len -= n;
    }
    return JPIP_OK;
}

jpip_code_t jpip_src_open_mem(jpip_src_t **src, apr_pool_t *pool, const void *data,
                              apr_uint64_t size, jpip_err_t *err)
{
    jpip_src_t *s = apr_pcalloc(pool, sizeof(*s));

    (void)err;
    s->mem = data;
    s->size = size;
    *src = s;
    return JPIP_OK;
}

apr_uint64_t jpip_src_size(const jpip_src_t *src)
{
    return src->size;
}

apr_uint64_t jpip_src_bytes_read(const jpip_src_t *src)
{
    return src->base != NULL ? src->base->bytes_read : src->bytes_read;
}

apr_uint64_t jpip_src_ahead_steps(const jpip_src_t *src)
{
    return src->base != NULL ? src->base->ahead_steps : src->ahead_steps;
}

#if defined(POSIX_FADV_WILLNEED)
/* Whether the first and last bytes of the read-ahead step at off are in
 * the page cache: a read that must not wait for the disk (RWF_NOWAIT)
 * succeeds only then. Without RWF_NOWAIT, never. */
static int step_cached(apr_os_file_t fd, apr_uint64_t off, apr_uint64_t size)
{
#if defined(RWF_NOWAIT) /* glibc declares preadv2 with it */
    apr_uint64_t last = off + SRC_AHEAD_STEP - 1 < size ? off + SRC_AHEAD_STEP - 1 : size - 1;
    unsigned char b;
    struct iovec v;

    v.iov_base = &b;
    v.iov_len = 1;
    return preadv2(fd, &v, 1, (off_t)off, RWF_NOWAIT) == 1 &&
           preadv2(fd, &v, 1, (off_t)last, RWF_NOWAIT) == 1;
#else
    (void)fd;
    (void)off;
    (void)size;
    return 0;
#endif
}
#endif

/* The next window starts at off, want bytes. When it follows the last one
 * closely (dense reading, not skipping from header to header on PLT or
 * tile-part lengths), have the kernel read ahead of it. */
static void read_ahead(jpip_src_t *src, apr_uint64_t off, apr_size_t want)
{
#if defined(POSIX_FADV_WILLNEED)
    apr_os_file_t fd;
    apr_uint64_t end = src->win_off + src->win_len;

    if (src->win_len == 0 || off < src->win_off || (off > end && off - end >= SRC_WINDOW)) {
        src->ahead = 0;
        return;
    }
    if (src->ahead < off + want) {
        src->ahead = off + want;
    }
    if (src->ahead >= off + SRC_AHEAD - SRC_AHEAD_STEP || src->ahead >= src->size ||
        apr_os_file_get(&fd, src->file) != APR_SUCCESS) {
        return;
    }
    /* a hint: nothing to check. The kernel looks up every page of the
     * step even when all are cached (a tenth of a warm build): a step
     * whose first and last pages are cached is taken as cached. */
    if (!step_cached(fd, src->ahead, src->size)) {
        (void)posix_fadvise(fd, (off_t)src->ahead, SRC_AHEAD_STEP, POSIX_FADV_WILLNEED);
    }
    src->ahead += SRC_AHEAD_STEP;
    src->ahead_steps++;
#else
    (void)src;
    (void)off;
    (void)want;
#endif
}

/* Fill the window so that it starts at off and holds at least len bytes. */
static jpip_code_t fill_window(jpip_src_t *src, apr_uint64_t off, apr_size_t len, jpip_err_t *err)
{
    apr_off_t pos = (apr_off_t)off;
    apr_size_t want = SRC_WINDOW;
    apr_size_t got = 0;
    apr_status_t rv;

    if (want > src->size - off) {
        want = (apr_size_t)(src->size - off);
    }
    read_ahead(src, off, want);
    rv = apr_file_seek(src->file, APR_SET, &pos);
    if (rv != APR_SUCCESS) {
        return jpip_err_set(err, JPIP_E_IO, "seek to offset %" APR_UINT64_T_FMT " failed", off);
    }
    rv = apr_file_read_full(src->file, src->win, want, &got);
    src->win_off = off;
    src->win_len = got;
    src->bytes_read += got;
    if (got < len) {
        src->win_len = 0;
        return jpip_err_set(err, JPIP_E_IO,
                            "read of %" APR_SIZE_T_FMT " bytes at offset %" APR_UINT64_T_FMT
                            " failed (file changed while being read?)",
                            len, off);
    }
    (void)rv;
    return JPIP_OK;
}

jpip_code_t jpip_src_peek(jpip_src_t *src, apr_uint64_t off, apr_size_t len,
                          const unsigned char **out, jpip_err_t *err)
{
    jpip_code_t rc;

    if (len > JPIP_SRC_PEEK_MAX) {
        return jpip_err_set(err, JPIP_E_LIMIT, "internal: peek of %" APR_SIZE_T_FMT " bytes", len);
    }
    rc = check_range(src, off, len, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    if (src->mem != NULL) {
        *out = src->mem + off;
        return JPIP_OK;
    }
    if (src->base != NULL) {
        apr_size_t i = len > 0 ? frag_find(src, off) : 0;
        apr_size_t done = 0;

        if (len > 0 && off + len <= src->frag_start[i + 1]) {
            return jpip_src_peek(src->base, src->frags[i].off + (off - src->frag_start[i]), len,
                                 out, err);
        }
        while (done < len) {
            apr_uint64_t in = off + done - src->frag_start[i];
            apr_uint64_t n = src->frags[i].len - in;

            if (n > len - done) {
                n = len - done;
            }
            rc = jpip_src_read(src->base, src->frags[i].off + in, src->scratch + done,
                               (apr_size_t)n, err);
            if (rc != JPIP_OK) {
                return rc;
            }
            done += (apr_size_t)n;
            i++;
        }
        *out = src->scratch;
        return JPIP_OK;
    }
    if (src->win_len == 0 || off < src->win_off || off - src->win_off > src->win_len ||
        len > src->win_len - (apr_size_t)(off - src->win_off)) {
        rc = fill_window(src, off, len, err);
        if (rc != JPIP_OK) {
            return rc;
        }
    }
    *out = src->win + (apr_size_t)(off - src->win_off);
    return JPIP_OK;
}

jpip_code_t jpip_src_read(jpip_src_t *src, apr_uint64_t off, void *buf, apr_size_t len,
                          jpip_err_t *err)
{
    unsigned char *dst = buf;
    jpip_code_t rc = check_range(src, off, len, err);

    if (rc != JPIP_OK) {
        return rc;
    }
    while (len > 0) {
        apr_size_t n = len > JPIP_SRC_PEEK_MAX ? JPIP_SRC_PEEK_MAX : len;
        const unsigned char *p;

        rc = jpip_src_peek(src, off, n, &p, err);
        if (rc != JPIP_OK) {
            return rc;
        }
        memcpy(dst, p, n);
        dst += n;
        off += n;
        len -= n;
    }
    return JPIP_OK;
}

jpip_code_t jpip_src_u8(jpip_src_t *src, apr_uint64_t off, unsigned *v, jpip_err_t *err)
{
    const unsigned char *p;
    jpip_code_t rc = jpip_src_peek(src, off, 1, &p, err);

    if (rc == JPIP_OK) {
        *v = p[0];
    }
    return rc;
}

jpip_code_t jpip_src_u16(jpip_src_t *src, apr_uint64_t off, unsigned *v, jpip_err_t *err)
{
    const unsigned char *p;
    jpip_code_t rc = jpip_src_peek(src, off, 2, &p, err);

    if (rc == JPIP_OK) {
        *v = jpip_be16(p);
    }
    return rc;
}

jpip_code_t jpip_src_u32(jpip_src_t *src, apr_uint64_t off, apr_uint32_t *v, jpip_err_t *err)
{
    const unsigned char *p;
    jpip_code_t rc = jpip_src_peek(src, off, 4, &p, err);

    if (rc == JPIP_OK) {
        *v = jpip_be32(p);
    }
    return rc;
}

jpip_code_t jpip_src_u64(jpip_src_t *src, apr_uint64_t off, apr_uint64_t *v, jpip_err_t *err)
{
    const unsigned char *p;
    jpip_code_t rc = jpip_src_peek(src, off, 8, &p, err);

    if (rc == JPIP_OK) {
        *v = jpip_be64(p);
    }
    return rc;
}
