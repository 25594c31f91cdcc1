/* mod_jpip unit tests: shared helpers (paths, temporary files, commands). */
#ifndef JPIP_TESTUTIL_H
#define JPIP_TESTUTIL_H

#include <stddef.h>

#include <check.h>

#include <apr_pools.h>
#include <apr.h>

/* The shared test corpus (../shared/testdata beside the source tree, or
 * $JPIP_TESTDATA), or NULL when it is absent: tests then skip the cases
 * that need it and say so. sub is "conformance" or "malformed". */
const char *tu_testdata(const char *sub);

/* The build's generated sample archive ($JPIP_SAMPLES), or NULL. */
const char *tu_samples(void);

/* A fresh temporary directory for this test process (created once). */
const char *tu_tmpdir(void);

/* Read a whole file into pool memory; NULL on failure. */
unsigned char *tu_read_file(apr_pool_t *pool, const char *path, size_t *len);

/* Write len bytes to path; 0 on success. */
int tu_write_file(const char *path, const void *data, size_t len);

/* Run a shell command (stdout/stderr to /dev/null unless verbose);
 * returns its exit status. */
int tu_run(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Path of opj_compress / opj_decompress ($OPJ_COMPRESS, else PATH). */
const char *tu_opj_compress(void);
const char *tu_opj_decompress(void);

/* Write a synthetic w x h picture with nc (1 or 3) 8-bit components as
 * PGM/PPM to path; 0 on success. Deterministic for a given seed. */
int tu_write_synth(const char *path, int w, int h, int nc, unsigned seed);

/* A growable byte buffer in pool memory, for building files and streams
 * in memory. Start one with tu_buf(pool). */
typedef struct tu_buf_t {
    unsigned char *p;
    size_t n;
    size_t cap;
    apr_pool_t *pool;
} tu_buf_t;

tu_buf_t tu_buf(apr_pool_t *pool);
void tu_buf_put(tu_buf_t *b, const void *d, size_t n);
/* Big-endian integers. */
void tu_buf_u16(tu_buf_t *b, unsigned v);
void tu_buf_u32(tu_buf_t *b, apr_uint32_t v);
void tu_buf_u64(tu_buf_t *b, apr_uint64_t v);

/* JP2 boxes with a 4-byte length: open one (returns where it starts),
 * close it (writes its length), or write a whole one holding d. */
size_t tu_box_open(tu_buf_t *b, const char *type);
void tu_box_close(tu_buf_t *b, size_t at);
void tu_box_data(tu_buf_t *b, const char *type, const void *d, size_t n);

/* A test program's main: APR up, the suite make() builds run with the
 * given output mode, APR down; EXIT_SUCCESS when every check passed. */
int tu_main(Suite *(*make)(void), enum print_output mode);

/* Print a line saying a test case was skipped and why. */
void tu_skip(const char *what, const char *why);

#endif /* JPIP_TESTUTIL_H */
