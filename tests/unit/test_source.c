/* Unit tests: error reporting, the bounded file reader (plain and
 * fragmented), request field splitting, and target confinement. */
#include <check.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "fields.h"
#include "jpip_err.h"
#include "piece.h"
#include "source.h"
#include "target.h"
#include "testutil.h"

static apr_pool_t *pool;

static void setup(void)
{
    apr_pool_create(&pool, NULL);
}

static void teardown(void)
{
    apr_pool_destroy(pool);
}

START_TEST(err_set_formats_message)
{
    jpip_err_t err;

    ck_assert_int_eq(jpip_err_set(&err, JPIP_E_FORMAT, "bad %s at %d", "SIZ", 12), JPIP_E_FORMAT);
    ck_assert_str_eq(err.msg, "bad SIZ at 12");
    ck_assert_str_eq(jpip_code_name(err.code), "format");
    jpip_err_clear(&err);
    ck_assert_int_eq(err.code, JPIP_OK);
    ck_assert_int_eq(jpip_err_set(NULL, JPIP_E_IO, "ignored"), JPIP_E_IO);
}
END_TEST

START_TEST(mem_source_bounds)
{
    static const unsigned char data[] = {0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x29, 1, 2, 3, 4, 5, 6};
    jpip_src_t *src;
    jpip_err_t err;
    unsigned v16;
    apr_uint32_t v32;
    apr_uint64_t v64;
    unsigned char buf[4];

    ck_assert_int_eq(jpip_src_open_mem(&src, pool, data, sizeof(data), &err), JPIP_OK);
    ck_assert_int_eq(jpip_src_size(src), sizeof(data));
    ck_assert_int_eq(jpip_src_u16(src, 0, &v16, &err), JPIP_OK);
    ck_assert_uint_eq(v16, 0xFF4F);
    ck_assert_int_eq(jpip_src_u32(src, 2, &v32, &err), JPIP_OK);
    ck_assert_uint_eq(v32, 0xFF510029u);
    ck_assert_int_eq(jpip_src_u64(src, 4, &v64, &err), JPIP_OK);
    ck_assert(v64 == 0x0029010203040506ull);
    /* one byte past the end, and offsets that would wrap */
    ck_assert_int_eq(jpip_src_u64(src, 5, &v64, &err), JPIP_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "offset 5"));
    ck_assert_int_eq(jpip_src_read(src, ~(apr_uint64_t)0, buf, 1, &err), JPIP_E_FORMAT);
    ck_assert_int_eq(jpip_src_read(src, 1, buf, (apr_size_t)-1, &err), JPIP_E_FORMAT);
}
END_TEST

/* A file source must give the same bytes as the file, across its window. */
START_TEST(file_source_matches_file)
{
    char path[512];
    size_t n = 700000, i;
    unsigned char *data = malloc(n);
    apr_file_t *f;
    jpip_src_t *src;
    jpip_err_t err;
    unsigned char buf[1000];
    apr_uint64_t offs[] = {0, 1, 262143, 262144 - 500, 524287, n - 1000};

    for (i = 0; i < n; i++) {
        data[i] = (unsigned char)(i * 7 + (i >> 9));
    }
    snprintf(path, sizeof(path), "%s/src.bin", tu_tmpdir());
    ck_assert_int_eq(tu_write_file(path, data, n), 0);
    ck_assert_int_eq(apr_file_open(&f, path, APR_FOPEN_READ, 0, pool), APR_SUCCESS);
    ck_assert_int_eq(jpip_src_open_file(&src, pool, f, n, &err), JPIP_OK);
    for (i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
        ck_assert_int_eq(jpip_src_read(src, offs[i], buf, sizeof(buf), &err), JPIP_OK);
        ck_assert_mem_eq(buf, data + offs[i], sizeof(buf));
    }
    ck_assert_int_eq(jpip_src_read(src, n - 10, buf, 11, &err), JPIP_E_FORMAT);
    free(data);
}
END_TEST

/* Reading a file densely, as packet headers are read (each peek a little
 * past the last, windows overlapping), reads ahead a step at a time, a
 * few steps in all; reading by skips reads nothing ahead. */
START_TEST(dense_reading_reads_ahead)
{
    enum { MIB = 1024 * 1024, SIZE = 40 * MIB };
    char path[512];
    unsigned char *data = calloc(1, SIZE);
    apr_file_t *f;
    jpip_src_t *src;
    jpip_err_t err;
    const unsigned char *p;
    apr_uint64_t off;

    for (off = 0; off < SIZE; off += 4096) {
        data[off] = (unsigned char)(off >> 12);
    }
    snprintf(path, sizeof(path), "%s/dense.bin", tu_tmpdir());
    ck_assert_int_eq(tu_write_file(path, data, SIZE), 0);
    ck_assert_int_eq(apr_file_open(&f, path, APR_FOPEN_READ, 0, pool), APR_SUCCESS);
    ck_assert_int_eq(jpip_src_open_file(&src, pool, f, SIZE, &err), JPIP_OK);
    for (off = 0; off + 512 <= SIZE; off += 500) {
        ck_assert_int_eq(jpip_src_peek(src, off, 512, &p, &err), JPIP_OK);
        ck_assert_mem_eq(p, data + off, 512);
    }
#if defined(POSIX_FADV_WILLNEED)
    /* 8 MiB steps: at most one per step of the file, and more than one */
    ck_assert_uint_gt(jpip_src_ahead_steps(src), 1);
    ck_assert_uint_le(jpip_src_ahead_steps(src), SIZE / (8 * MIB) + 1);
#endif
    ck_assert_int_eq(jpip_src_open_file(&src, pool, f, SIZE, &err), JPIP_OK);
    for (off = 0; off + 512 <= SIZE; off += MIB) {
        ck_assert_int_eq(jpip_src_peek(src, off, 512, &p, &err), JPIP_OK);
    }
    ck_assert_uint_eq(jpip_src_ahead_steps(src), 0);
    free(data);
}
END_TEST

struct collect {
    jpip_piece_t p[8];
    int n;
};

static jpip_code_t collect_emit(void *ctx, apr_uint64_t off, apr_uint64_t len, jpip_err_t *err)
{
    struct collect *c = ctx;

    (void)err;
    c->p[c->n].off = off;
    c->p[c->n].len = len;
    c->n++;
    return JPIP_OK;
}

START_TEST(fragmented_view)
{
    static const unsigned char data[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    jpip_piece_t frags[] = {{30, 4}, {2, 3}, {10, 6}};
    jpip_src_t *base, *src;
    jpip_err_t err;
    unsigned char buf[13];
    struct collect c = {{{0, 0}}, 0};

    ck_assert_int_eq(jpip_src_open_mem(&base, pool, data, 36, &err), JPIP_OK);
    ck_assert_int_eq(jpip_src_open_frags(&src, pool, base, frags, 3, &err), JPIP_OK);
    ck_assert_int_eq(jpip_src_size(src), 13);
    ck_assert_int_eq(jpip_src_read(src, 0, buf, 13, &err), JPIP_OK);
    ck_assert_mem_eq(buf, "uvwx234abcdef", 13);
    ck_assert_int_eq(jpip_src_read(src, 3, buf, 3, &err), JPIP_OK);
    ck_assert_mem_eq(buf, "x23", 3);
    ck_assert_int_eq(jpip_src_map(src, 3, 6, collect_emit, &c, &err), JPIP_OK);
    ck_assert_int_eq(c.n, 3);
    ck_assert(c.p[0].off == 33 && c.p[0].len == 1);
    ck_assert(c.p[1].off == 2 && c.p[1].len == 3);
    ck_assert(c.p[2].off == 10 && c.p[2].len == 2);
    ck_assert_int_eq(jpip_src_map(src, 10, 4, collect_emit, &c, &err), JPIP_E_FORMAT);
    frags[0].len = 7; /* 30+7 > 36 */
    ck_assert_int_eq(jpip_src_open_frags(&src, pool, base, frags, 3, &err), JPIP_E_FORMAT);
}
END_TEST

START_TEST(fields_split_and_decode)
{
    const char *q = "target=a%20b.jp2&fsiz=640,480,round-up&&handled&metareq=%5B*%5D!!&x=a%26b%3Dc";
    apr_array_header_t *f = NULL;
    jpip_err_t err;

    ck_assert_int_eq(jpip_fields_parse(pool, q, strlen(q), NULL, &f, &err), JPIP_OK);
    ck_assert_int_eq(f->nelts, 5);
    ck_assert_str_eq(jpip_fields_find(f, "target")->value, "a b.jp2");
    ck_assert_str_eq(jpip_fields_find(f, "fsiz")->value, "640,480,round-up");
    ck_assert_int_eq(jpip_fields_find(f, "handled")->has_value, 0);
    ck_assert_str_eq(jpip_fields_find(f, "metareq")->value, "[*]!!");
    ck_assert_str_eq(jpip_fields_find(f, "x")->value, "a&b=c");
    ck_assert_ptr_null(jpip_fields_find(f, "len"));
}
END_TEST

START_TEST(fields_refuse_malformed)
{
    const char *bad[] = {"fsiz=1,2&fsiz=3,4", "a=%zz", "a=%0", "target=x%00y", "=x",
                         "FSIZ=1,1",          "a b=1"};
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        apr_array_header_t *f = NULL;
        jpip_err_t err;

        ck_assert_msg(jpip_fields_parse(pool, bad[i], strlen(bad[i]), NULL, &f, &err) ==
                          JPIP_E_REQUEST,
                      "accepted %s", bad[i]);
        ck_assert(err.msg[0] != '\0');
    }
}
END_TEST

START_TEST(fields_limits)
{
    jpip_fields_limits_t lim = {3, 10};
    apr_array_header_t *f = NULL;
    jpip_err_t err;

    ck_assert_int_eq(jpip_fields_parse(pool, "a=1&b=2&c=3&d=4", 15, &lim, &f, &err), JPIP_E_LIMIT);
    f = NULL;
    ck_assert_int_eq(jpip_fields_parse(pool, "a=12345678901", 13, &lim, &f, &err), JPIP_E_LIMIT);
}
END_TEST

static char root[512];

static void make_archive(void)
{
    char p[600];

    snprintf(root, sizeof(root), "%s/archive", tu_tmpdir());
    mkdir(root, 0755);
    snprintf(p, sizeof(p), "%s/sub", root);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/sub/img.jp2", root);
    tu_write_file(p, "x", 1);
    snprintf(p, sizeof(p), "%s/outside.jp2", tu_tmpdir());
    tu_write_file(p, "y", 1);
    snprintf(p, sizeof(p), "%s/escape.jp2", root);
    unlink(p);
    ck_assert_int_eq(symlink("../outside.jp2", p), 0);
    snprintf(p, sizeof(p), "%s/inner.jp2", root);
    unlink(p);
    ck_assert_int_eq(symlink("sub/img.jp2", p), 0);
    snprintf(p, sizeof(p), "%s/fifo", root);
    unlink(p);
    ck_assert_int_eq(mkfifo(p, 0644), 0);
    /* a sibling whose name begins with the archive's */
    snprintf(p, sizeof(p), "%s/archive2", tu_tmpdir());
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/archive2/f.jp2", tu_tmpdir());
    tu_write_file(p, "z", 1);
    snprintf(p, sizeof(p), "%s/sibling.jp2", root);
    unlink(p);
    ck_assert_int_eq(symlink("../archive2/f.jp2", p), 0);
    /* the archive reached through a link */
    snprintf(p, sizeof(p), "%s/archive-link", tu_tmpdir());
    unlink(p);
    ck_assert_int_eq(symlink("archive", p), 0);
}

START_TEST(target_confinement)
{
    struct {
        const char *name;
        jpip_code_t want;
    } cases[] = {
        {"sub/img.jp2", JPIP_OK},
        {"/sub//./img.jp2", JPIP_OK},
        {"inner.jp2", JPIP_OK},
        {"../outside.jp2", JPIP_E_FORBIDDEN},
        {"sub/../../x", JPIP_E_FORBIDDEN},
        {"escape.jp2", JPIP_E_FORBIDDEN},
        {"missing.jp2", JPIP_E_NOTFOUND},
        {"sub", JPIP_E_NOTFOUND},
        {"fifo", JPIP_E_FORBIDDEN},
        {"sibling.jp2", JPIP_E_FORBIDDEN},
        {"", JPIP_E_REQUEST},
        {"/", JPIP_E_REQUEST},
        {"a\\..\\b", JPIP_E_REQUEST},
    };
    size_t i, k;
    char roots[4][600];

    make_archive();
    /* the archive as written, through a link, with '..', with a trailing
     * slash: the same answers */
    snprintf(roots[0], sizeof(roots[0]), "%s", root);
    snprintf(roots[1], sizeof(roots[1]), "%s/archive-link", tu_tmpdir());
    snprintf(roots[2], sizeof(roots[2]), "%s/sub/..", root);
    snprintf(roots[3], sizeof(roots[3]), "%s/", root);
    for (k = 0; k < 4; k++) {
        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            jpip_target_t t;
            jpip_err_t err;
            jpip_code_t rc = jpip_target_resolve(pool, roots[k], cases[i].name, 0, &t, &err);

            ck_assert_msg(rc == cases[i].want, "root %s, %s: got %s (%s)", roots[k], cases[i].name,
                          jpip_code_name(rc), rc == JPIP_OK ? "" : err.msg);
            if (rc != JPIP_OK) {
                ck_assert_ptr_null(strstr(err.msg, tu_tmpdir())); /* no server paths */
            } else {
                ck_assert_int_eq(t.finfo.size, 1);
            }
        }
    }
    {
        jpip_target_t t;
        jpip_err_t err;
        char gone[600];

        snprintf(gone, sizeof(gone), "%s/no-archive", tu_tmpdir());
        ck_assert_int_eq(jpip_target_resolve(pool, gone, "sub/img.jp2", 0, &t, &err),
                         JPIP_E_NOTFOUND);
        ck_assert_ptr_nonnull(strstr(err.msg, "archive directory"));
    }
    {
        jpip_target_t t;
        jpip_err_t err;
        ck_assert_int_eq(jpip_target_resolve(pool, root, "escape.jp2", 1, &t, &err), JPIP_OK);
    }
}
END_TEST

static Suite *source_suite(void)
{
    Suite *s = suite_create("source");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, err_set_formats_message);
    tcase_add_test(tc, mem_source_bounds);
    tcase_add_test(tc, file_source_matches_file);
    tcase_add_test(tc, dense_reading_reads_ahead);
    tcase_add_test(tc, fragmented_view);
    tcase_add_test(tc, fields_split_and_decode);
    tcase_add_test(tc, fields_refuse_malformed);
    tcase_add_test(tc, fields_limits);
    tcase_add_test(tc, target_confinement);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(source_suite, CK_ENV);
}
