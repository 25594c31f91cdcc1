/* mod_jpip unit tests: shared helpers. */
#include "testutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
