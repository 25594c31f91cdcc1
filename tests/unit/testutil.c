/* mod_jpip unit tests: shared helpers. */
#include "testutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_strings.h>

static int is_dir(const char *p)
{
    struct stat st;

    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *tu_testdata(const char *sub)
{
    static char buf[4096];
    const char *base = getenv("JPIP_TESTDATA");

    if (base == NULL || *base == '\0') {
        base = "../../../shared/testdata";
    }
    snprintf(buf, sizeof(buf), "%s/%s", base, sub);
    return is_dir(buf) ? buf : NULL;
}

const char *tu_samples(void)
{
    const char *s = getenv("JPIP_SAMPLES");

    return s != NULL && is_dir(s) ? s : NULL;
}

const char *tu_tmpdir(void)
{
    static char dir[256];

    if (dir[0] == '\0') {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof(dir), "%s/jpip-unit-XXXXXX", t != NULL ? t : "/tmp");
        if (mkdtemp(dir) == NULL) {
            perror("mkdtemp");
            abort();
        }
    }
    return dir;
}

unsigned char *tu_read_file(apr_pool_t *pool, const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;

    if (f == NULL) {
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    buf = apr_palloc(pool, (apr_size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

int tu_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    int ok;

    if (f == NULL) {
        return -1;
    }
    ok = fwrite(data, 1, len, f) == len;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

int tu_run(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    int rc;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (getenv("TU_VERBOSE") == NULL) {
        strncat(cmd, " >/dev/null 2>&1", sizeof(cmd) - strlen(cmd) - 1);
    }
    rc = system(cmd);
    return rc == -1 ? -1 : WEXITSTATUS(rc);
}

const char *tu_opj_compress(void)
{
    const char *p = getenv("OPJ_COMPRESS");

    return p != NULL && *p != '\0' ? p : "opj_compress";
}

const char *tu_opj_decompress(void)
{
    const char *p = getenv("OPJ_DECOMPRESS");

    return p != NULL && *p != '\0' ? p : "opj_decompress";
}

int tu_write_synth(const char *path, int w, int h, int nc, unsigned seed)
{
    FILE *f = fopen(path, "wb");
    unsigned long st = seed * 2654435761u + 1;
    int x, y, c;

    if (f == NULL) {
        return -1;
    }
    fprintf(f, "P%c\n%d %d\n255\n", nc == 1 ? '5' : '6', w, h);
    for (y = 0; y < h; y++) {
        for (x = 0; x < w; x++) {
            for (c = 0; c < nc; c++) {
                double v = 128 + 90 * sin((x + 17 * c) / (9.0 + c)) * cos(y / 13.0) +
                           ((x / 32 + y / 32) % 2 ? 25 : -25);
                st = st * 1103515245ul + 12345ul;
                v += (double)((st >> 16) & 15);
                fputc(v < 0 ? 0 : v > 255 ? 255 : (int)v, f);
            }
        }
    }
    return fclose(f) == 0 ? 0 : -1;
}

void tu_skip(const char *what, const char *why)
{
    printf("SKIP: %s: %s\n", what, why);
    fflush(stdout);
}

tu_buf_t tu_buf(apr_pool_t *pool)
{
    tu_buf_t b;

    memset(&b, 0, sizeof(b));
    b.pool = pool;
    return b;
}

void tu_buf_put(tu_buf_t *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        unsigned char *np;

        while (cap < b->n + n) {
            cap *= 2;
        }
        np = apr_palloc(b->pool, cap);
        if (b->n) {
            memcpy(np, b->p, b->n);
        }
        b->p = np;
        b->cap = cap;
    }
    if (n) {
        memcpy(b->p + b->n, d, n);
    }
    b->n += n;
}

void tu_buf_u16(tu_buf_t *b, unsigned v)
{
    unsigned char x[2] = {(unsigned char)(v >> 8), (unsigned char)v};

    tu_buf_put(b, x, 2);
}

void tu_buf_u32(tu_buf_t *b, apr_uint32_t v)
{
    unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};

    tu_buf_put(b, x, 4);
}

void tu_buf_u64(tu_buf_t *b, apr_uint64_t v)
{
    tu_buf_u32(b, (apr_uint32_t)(v >> 32));
    tu_buf_u32(b, (apr_uint32_t)v);
}

size_t tu_box_open(tu_buf_t *b, const char *type)
{
    size_t at = b->n;

    tu_buf_u32(b, 0);
    tu_buf_put(b, type, 4);
    return at;
}

void tu_box_close(tu_buf_t *b, size_t at)
{
    apr_uint32_t l = (apr_uint32_t)(b->n - at);

    b->p[at] = (unsigned char)(l >> 24);
    b->p[at + 1] = (unsigned char)(l >> 16);
    b->p[at + 2] = (unsigned char)(l >> 8);
    b->p[at + 3] = (unsigned char)l;
}

void tu_box_data(tu_buf_t *b, const char *type, const void *d, size_t n)
{
    size_t at = tu_box_open(b, type);

    tu_buf_put(b, d, n);
    tu_box_close(b, at);
}

int tu_main(Suite *(*make)(void), enum print_output mode)
{
    SRunner *sr;
    int failed;

    apr_initialize();
    sr = srunner_create(make());
    srunner_run_all(sr, mode);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    apr_terminate();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
