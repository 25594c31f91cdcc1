/* Unit tests: file identity, content digests, and the index cache
 * refusing an index that belongs to another file. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include <apr_strings.h>

#include "fileid.h"
#include "ixcache.h"
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

static const char *generate(const char *name, unsigned seed)
{
    const char *in = apr_psprintf(pool, "%s/fid-%s.ppm", tu_tmpdir(), name);
    const char *out = apr_psprintf(pool, "%s/fid-%s.j2k", tu_tmpdir(), name);

    ck_assert_int_eq(tu_write_synth(in, 256, 192, 3, seed), 0);
    ck_assert(tu_run("%s -i '%s' -o '%s' -n 4 -r 40,10 -c [32,32] -p RPCL >/dev/null",
                     tu_opj_compress(), in, out) == 0);
    return out;
}

static apr_file_t *open_ro(const char *path, jpip_fileid_t *id)
{
    apr_file_t *f;
    jpip_err_t err;

    ck_assert_int_eq(apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_BINARY, 0, pool),
                     APR_SUCCESS);
    ck_assert_int_eq(jpip_fileid_of_file(f, id, &err), JPIP_OK);
    return f;
}

/* A file of the same size and mtime moved over the old name, or the old
 * file rewritten in place with its mtime set back, is another identity,
 * and the cached index of the old one is not loaded for it. */
START_TEST(swap_same_size_and_mtime)
{
    const char *dir = apr_psprintf(pool, "%s/fid-cache", tu_tmpdir());
    const char *path = generate("a", 3);
    const char *other = apr_psprintf(pool, "%s.other", path);
    jpip_fileid_t id0, id1, id2;
    jpip_index_limits_t lim;
    jpip_ixc_result_t res;
    jpip_index_t *ix;
    jpip_err_t err;
    apr_file_t *f;
    unsigned char *data;
    size_t len;

    tu_run("rm -rf '%s' && mkdir -p '%s'", dir, dir);
    jpip_index_limits_default(&lim);
    f = open_ro(path, &id0);
    ck_assert_int_eq(jpip_ixcache_open(pool, dir, path, f, &id0, &lim, 0, &res, &err), JPIP_OK);
    ck_assert_int_eq(res.how, JPIP_IXC_BUILT);
    apr_file_close(f);
    f = open_ro(path, &id0);
    ck_assert_int_eq(jpip_ixcache_load(pool, dir, path, f, &id0, &ix), 1);
    apr_file_close(f);

    /* same size, other bytes in the middle, same mtime, renamed over */
    data = tu_read_file(pool, path, &len);
    data[len / 2] ^= 0x5a;
    ck_assert_int_eq(tu_write_file(other, data, len), 0);
    ck_assert_int_eq(tu_run("touch -r '%s' '%s' && mv '%s' '%s'", path, other, other, path), 0);
    f = open_ro(path, &id1);
    ck_assert(!jpip_fileid_equal(&id0, &id1));
    ck_assert_uint_eq(id0.size, id1.size);
    ck_assert_int_eq(id0.mtime_ns, id1.mtime_ns);
    ck_assert_int_eq(jpip_ixcache_load(pool, dir, path, f, &id1, &ix), 0);
    /* the old identity claimed for the new bytes: the digest refuses it */
    ck_assert_int_eq(jpip_ixcache_load(pool, dir, path, f, &id0, &ix), 0);
    apr_file_close(f);

    /* in place, mtime set back: the inode stays, ctime moves */
    ck_assert_int_eq(tu_run("cp -p '%s' '%s.ref' && printf 'xx' | dd of='%s' bs=1 seek=%lu "
                            "conv=notrunc status=none && touch -r '%s.ref' '%s'",
                            path, path, path, (unsigned long)(len / 3), path, path),
                     0);
    f = open_ro(path, &id2);
    ck_assert_uint_eq(id1.ino, id2.ino);
    ck_assert_int_eq(id1.mtime_ns, id2.mtime_ns);
    ck_assert(!jpip_fileid_equal(&id1, &id2));
    apr_file_close(f);
}
END_TEST

/* The digest covers sampled ranges: a change in the last bytes (a sample
 * always ends at the end) or in the main header changes it. */
START_TEST(digest_sees_changes)
{
    const char *path = generate("b", 5);
    const char *copy = apr_psprintf(pool, "%s.copy", path);
    unsigned char d0[JPIP_INDEX_DIGEST_LEN], d1[JPIP_INDEX_DIGEST_LEN];
    unsigned char *data;
    size_t len;
    jpip_fileid_t id;
    jpip_err_t err;
    apr_file_t *f;

    data = tu_read_file(pool, path, &len);
    f = open_ro(path, &id);
    ck_assert_int_eq(jpip_file_digest(f, id.size, NULL, d0, &err), JPIP_OK);
    apr_file_close(f);
    f = open_ro(path, &id);
    ck_assert_int_eq(jpip_file_digest(f, id.size, NULL, d1, &err), JPIP_OK);
    apr_file_close(f);
    ck_assert_int_eq(memcmp(d0, d1, sizeof(d0)), 0);
    data[len - 3] ^= 1;
    ck_assert_int_eq(tu_write_file(copy, data, len), 0);
    f = open_ro(copy, &id);
    ck_assert_int_eq(jpip_file_digest(f, id.size, NULL, d1, &err), JPIP_OK);
    ck_assert_int_ne(memcmp(d0, d1, sizeof(d0)), 0);
    /* the file is shorter than said: an error, not a digest */
    ck_assert_int_eq(jpip_file_digest(f, id.size + 100000, NULL, d1, &err), JPIP_E_IO);
    apr_file_close(f);
}
END_TEST

/* Reading through a window never reads past the end of a shrunk file. */
START_TEST(window_reads)
{
    const char *path = apr_psprintf(pool, "%s/fid-win.bin", tu_tmpdir());
    unsigned char buf[256], want[100000], got[300];
    jpip_file_window_t w;
    jpip_fileid_t id;
    jpip_err_t err;
    apr_file_t *f;
    size_t i;

    for (i = 0; i < sizeof(want); i++) {
        want[i] = (unsigned char)(i * 7 + (i >> 8));
    }
    ck_assert_int_eq(tu_write_file(path, want, sizeof(want)), 0);
    f = open_ro(path, &id);
    jpip_file_window_init(&w, f, id.size, buf, sizeof(buf));
    for (i = 0; i + 100 <= sizeof(want); i += 997) {
        ck_assert_int_eq(jpip_file_window_copy(&w, i, 100, got, &err), JPIP_OK);
        ck_assert_int_eq(memcmp(got, want + i, 100), 0);
        ck_assert_int_eq(jpip_file_window_copy(&w, i + 10, 50, got, &err), JPIP_OK);
        ck_assert_int_eq(memcmp(got, want + i + 10, 50), 0);
    }
    ck_assert_int_eq(jpip_file_window_copy(&w, 1000, 300, got, &err), JPIP_OK);
    ck_assert_int_eq(memcmp(got, want + 1000, 300), 0);
    ck_assert_int_eq(tu_run("truncate -s 5000 '%s'", path), 0);
    ck_assert_int_eq(jpip_file_window_copy(&w, 60000, 100, got, &err), JPIP_E_IO);
    apr_file_close(f);
}
END_TEST

static Suite *fileid_suite(void)
{
    Suite *s = suite_create("fileid");
    TCase *tc = tcase_create("fileid");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, swap_same_size_and_mtime);
    tcase_add_test(tc, digest_sees_changes);
    tcase_add_test(tc, window_reads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(fileid_suite, CK_NORMAL);
}
