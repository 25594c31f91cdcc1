/* Unit tests for libcore/render.c and encode.c: resampling, the render
 * pipeline's limits and exactness on a generated image, the encoders. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <apr_strings.h>

#include "render.h"
#include "testutil.h"

static apr_pool_t *pool;

static void setup(void)
{
    apr_initialize();
    apr_pool_create(&pool, NULL);
}

static void teardown(void)
{
    apr_pool_destroy(pool);
    apr_terminate();
}

static jpip_raster_t gradient(apr_uint32_t w, apr_uint32_t h, unsigned n)
{
    jpip_raster_t r;
    apr_uint32_t x, y;
    unsigned c;

    r.w = w;
    r.h = h;
    r.nch = n;
    r.px = apr_palloc(pool, (apr_size_t)w * h * n);
    for (y = 0; y < h; y++) {
        for (x = 0; x < w; x++) {
            for (c = 0; c < n; c++) {
                r.px[((apr_size_t)y * w + x) * n + c] =
                    (unsigned char)((x * 3 + y * 5 + c * 40) & 255);
            }
        }
    }
    return r;
}

START_TEST(scale_identity_and_constant)
{
    jpip_raster_t in = gradient(37, 23, 3), out, flat;
    jpip_err_t err;

    /* the same size over the whole source: every pixel comes back */
    ck_assert_int_eq(jpip_raster_scale(&in, 0, 0, 37, 23, 37, 23, pool, &out, &err), JPIP_OK);
    ck_assert_uint_eq(out.w, 37);
    ck_assert_uint_eq(out.h, 23);
    ck_assert_mem_eq(out.px, in.px, 37 * 23 * 3);
    /* a flat picture stays flat whatever the scale, up or down */
    flat = gradient(40, 30, 1);
    memset(flat.px, 77, 40 * 30);
    ck_assert_int_eq(jpip_raster_scale(&flat, 0, 0, 40, 30, 13, 7, pool, &out, &err), JPIP_OK);
    for (size_t i = 0; i < 13 * 7; i++) {
        ck_assert_uint_eq(out.px[i], 77);
    }
    ck_assert_int_eq(jpip_raster_scale(&flat, 0.5, 0.25, 20, 10, 90, 45, pool, &out, &err),
                     JPIP_OK);
    for (size_t i = 0; i < 90 * 45; i++) {
        ck_assert_uint_eq(out.px[i], 77);
    }
}
END_TEST

START_TEST(scale_averages_when_shrinking)
{
    jpip_raster_t in, out;
    jpip_err_t err;
    apr_uint32_t x;

    /* alternate black and white columns: halving must average them (a
     * point sampler would give all black or all white) */
    in = gradient(64, 4, 1);
    for (x = 0; x < 64 * 4; x++) {
        in.px[x] = (x % 64) % 2 ? 255 : 0;
    }
    ck_assert_int_eq(jpip_raster_scale(&in, 0, 0, 64, 4, 32, 4, pool, &out, &err), JPIP_OK);
    for (x = 2; x < 30; x++) {
        ck_assert_int_ge(out.px[x], 110);
        ck_assert_int_le(out.px[x], 145);
    }
}
END_TEST

/* A generated image, indexed in memory. */
typedef struct img_t {
    jpip_index_t *ix;
    unsigned char *data;
    size_t size;
    const char *path;
} img_t;

static int make_image(img_t *im, int w, int h, int nc)
{
    char ppm[512], j2k[512];
    jpip_src_t *src;
    jpip_err_t err;

    snprintf(ppm, sizeof(ppm), "%s/r%dx%d.%s", tu_tmpdir(), w, h, nc == 3 ? "ppm" : "pgm");
    snprintf(j2k, sizeof(j2k), "%s/r%dx%d-%d.j2k", tu_tmpdir(), w, h, nc);
    if (tu_write_synth(ppm, w, h, nc, 7) != 0 ||
        tu_run("%s -i %s -o %s -n 4 -c [64,64] -t 96,80", tu_opj_compress(), ppm, j2k) != 0) {
        return 0;
    }
    im->path = apr_pstrdup(pool, j2k);
    im->data = tu_read_file(pool, j2k, &im->size);
    return im->data != NULL && jpip_src_open_mem(&src, pool, im->data, im->size, &err) == JPIP_OK &&
           jpip_index_build(&im->ix, pool, src, NULL, NULL, &err) == JPIP_OK;
}

START_TEST(render_matches_openjpeg_tile)
{
    img_t im;
    jpip_render_src_t rs;
    jpip_render_req_t rq;
    jpip_render_stats_t st;
    jpip_raster_t out;
    jpip_err_t err;
    char ref[600];
    unsigned char *pgm;
    size_t plen;

    ck_assert_msg(make_image(&im, 300, 200, 1), "cannot make the test image");
    memset(&rs, 0, sizeof(rs));
    rs.ix = im.ix;
    rs.map = im.data;
    memset(&rq, 0, sizeof(rq));
    /* a 128x128 region at scale 2: reduce 1, no resampling */
    rq.x = 128;
    rq.y = 64;
    rq.w = 128;
    rq.h = 128;
    rq.ow = 64;
    rq.oh = 64;
    ck_assert_int_eq(jpip_render(&rs, &rq, pool, &out, &st, &err), JPIP_OK);
    ck_assert_uint_eq(st.reduce, 1);
    ck_assert_uint_eq(out.w, 64);
    ck_assert_uint_eq(out.nch, 1);
    snprintf(ref, sizeof(ref), "%s/ref.pgm", tu_tmpdir());
    ck_assert_int_eq(
        tu_run("%s -i %s -o %s -r 1 -d 128,64,256,192", tu_opj_decompress(), im.path, ref), 0);
    pgm = tu_read_file(pool, ref, &plen);
    ck_assert_ptr_nonnull(pgm);
    ck_assert_uint_ge(plen, 64 * 64);
    /* the samples are the last w*h bytes of the 8-bit PGM */
    ck_assert_mem_eq(pgm + plen - 64 * 64, out.px, 64 * 64);
    /* fewer precincts than the whole image */
    ck_assert_uint_lt(st.cs_bytes, im.size);
}
END_TEST

START_TEST(render_limits)
{
    img_t im;
    jpip_render_src_t rs;
    jpip_render_req_t rq;
    jpip_raster_t out;
    jpip_err_t err;

    ck_assert_msg(make_image(&im, 300, 200, 3), "cannot make the test image");
    memset(&rs, 0, sizeof(rs));
    rs.ix = im.ix;
    rs.map = im.data;
    memset(&rq, 0, sizeof(rq));
    rq.w = 300;
    rq.h = 200;
    rq.ow = 300;
    rq.oh = 200;
    rq.max_memory = 100000;
    ck_assert_int_eq(jpip_render(&rs, &rq, pool, &out, NULL, &err), JPIP_E_LIMIT);
    rq.max_memory = 0;
    rq.max_bins = 2;
    ck_assert_int_eq(jpip_render(&rs, &rq, pool, &out, NULL, &err), JPIP_E_LIMIT);
    rq.max_bins = 0;
    rq.x = 250;
    rq.w = 100; /* past the right edge */
    ck_assert_int_eq(jpip_render(&rs, &rq, pool, &out, NULL, &err), JPIP_E_REQUEST);
    rq.x = 0;
    rq.w = 300;
    rq.rotate = 90;
    rq.quality = JPIP_RENDER_GRAY;
    rq.ow = 150;
    rq.oh = 100;
    ck_assert_int_eq(jpip_render(&rs, &rq, pool, &out, NULL, &err), JPIP_OK);
    ck_assert_uint_eq(out.w, 100);
    ck_assert_uint_eq(out.h, 150);
    ck_assert_uint_eq(out.nch, 1);
}
END_TEST

START_TEST(encoders)
{
    jpip_raster_t in = gradient(33, 17, 4);
    unsigned char *out;
    apr_size_t len;
    jpip_err_t err;

    ck_assert_int_eq(jpip_encode_png(&in, pool, &out, &len, &err), JPIP_OK);
    ck_assert_uint_gt(len, 33);
    ck_assert_mem_eq(out, "\x89PNG\r\n\x1a\n", 8);
    /* IHDR: width, height, depth 8, colour type 6 (RGBA) */
    ck_assert_uint_eq(((unsigned)out[16] << 24 | out[17] << 16 | out[18] << 8 | out[19]), 33);
    ck_assert_uint_eq(((unsigned)out[20] << 24 | out[21] << 16 | out[22] << 8 | out[23]), 17);
    ck_assert_uint_eq(out[24], 8);
    ck_assert_uint_eq(out[25], 6);
    ck_assert_int_eq(jpip_encode_jpeg(&in, 90, pool, &out, &len, &err), JPIP_OK);
    ck_assert_uint_gt(len, 100);
    ck_assert_uint_eq(out[0], 0xFF);
    ck_assert_uint_eq(out[1], 0xD8);
    ck_assert_uint_eq(out[len - 2], 0xFF);
    ck_assert_uint_eq(out[len - 1], 0xD9);
    in.w = 0;
    ck_assert_int_ne(jpip_encode_png(&in, pool, &out, &len, &err), JPIP_OK);
}
END_TEST

/* The sanitizers' allocators replace glibc's and ignore mallopt. */
#if defined(__SANITIZE_ADDRESS__)
#define OWN_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OWN_ALLOCATOR 1
#endif
#endif

/* JPIPIIIFHeapRetain: a freed buffer of a few megabytes stays in the heap
 * (glibc would otherwise map it on its own and unmap it at free). */
START_TEST(heap_retain)
{
    ck_assert_uint_eq(jpip_render_heap_retain(0), 0);
#if defined(OWN_ALLOCATOR)
    /* no such setting: said so, nothing retained */
    ck_assert_uint_eq(jpip_render_heap_retain(8 << 20), 0);
#elif defined(__GLIBC__) && __GLIBC_PREREQ(2, 33)
    {
        struct mallinfo2 before, after;
        char *p;

        ck_assert_uint_eq(jpip_render_heap_retain(8 << 20), 8 << 20);
        before = mallinfo2();
        p = malloc(3 << 20);
        ck_assert_ptr_nonnull(p);
        memset(p, 1, 3 << 20);
        /* from the heap, not a mapping of its own */
        ck_assert_uint_eq(mallinfo2().hblkhd, before.hblkhd);
        free(p);
        after = mallinfo2();
        ck_assert_uint_ge(after.fordblks, (apr_size_t)3 << 20); /* kept, not trimmed */
    }
#endif
}
END_TEST

int main(void)
{
    Suite *s = suite_create("render");
    TCase *tc = tcase_create("render");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, scale_identity_and_constant);
    tcase_add_test(tc, scale_averages_when_shrinking);
    tcase_add_test(tc, render_matches_openjpeg_tile);
    tcase_add_test(tc, render_limits);
    tcase_add_test(tc, encoders);
    tcase_add_test(tc, heap_retain);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
