/* Unit tests: JPP/JPT message header writer (VBAS, Bin-ID, inheritance,
 * Aux, EOR), checked against the worked encodings of the protocol doc C.4. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>

#include "jpp.h"
#include "testutil.h"

static void expect_bytes(const unsigned char *got, apr_size_t n, const unsigned char *want,
                         apr_size_t wn)
{
    apr_size_t i;

    ck_assert_uint_eq(n, wn);
    for (i = 0; i < n; i++) {
        ck_assert_msg(got[i] == want[i], "byte %u: got %02X want %02X", (unsigned)i, got[i],
                      want[i]);
    }
}

START_TEST(worked_encodings)
{
    jpip_jpp_writer_t w;
    unsigned char out[JPIP_JPP_HEADER_MAX];
    apr_size_t n, sz;
    static const unsigned char main_hdr[] = {0x70, 0x06, 0x00, 0x00, 0x81, 0x1F};
    static const unsigned char meta[] = {0x50, 0x08, 0x00, 0x89, 0x30};
    static const unsigned char p37[] = {0xC0, 0x25, 0x00, 0x00, 0x83, 0x1C};
    static const unsigned char p38[] = {0xB0, 0x26, 0x00, 0x02};
    static const unsigned char eor[] = {0x00, 0x02, 0x00};

    jpip_jpp_writer_init(&w);
    sz = jpip_jpp_header_size(&w, JPIP_CLASS_MAIN, 0, 0, 0, 159, 0);
    n = jpip_jpp_header(&w, JPIP_CLASS_MAIN, 0, 0, 0, 159, 1, 0, out);
    expect_bytes(out, n, main_hdr, sizeof(main_hdr));
    ck_assert_uint_eq(sz, n);

    sz = jpip_jpp_header_size(&w, JPIP_CLASS_META, 0, 0, 0, 1200, 0);
    n = jpip_jpp_header(&w, JPIP_CLASS_META, 0, 0, 0, 1200, 1, 0, out);
    expect_bytes(out, n, meta, sizeof(meta));
    ck_assert_uint_eq(sz, n);

    sz = jpip_jpp_header_size(&w, JPIP_CLASS_PRECINCT, 0, 37, 0, 412, 0);
    n = jpip_jpp_header(&w, JPIP_CLASS_PRECINCT, 0, 37, 0, 412, 0, 0, out);
    expect_bytes(out, n, p37, sizeof(p37));
    ck_assert_uint_eq(sz, n);

    sz = jpip_jpp_header_size(&w, JPIP_CLASS_PRECINCT, 0, 38, 0, 2, 0);
    n = jpip_jpp_header(&w, JPIP_CLASS_PRECINCT, 0, 38, 0, 2, 1, 0, out);
    expect_bytes(out, n, p38, sizeof(p38));
    ck_assert_uint_eq(sz, n);

    n = jpip_jpp_eor(JPIP_EOR_WINDOW_DONE, out);
    expect_bytes(out, n, eor, sizeof(eor));
}
END_TEST

START_TEST(vbas_boundaries)
{
    unsigned char out[JPIP_VBAS_MAX];
    static const unsigned char v0[] = {0x00};
    static const unsigned char v127[] = {0x7F};
    static const unsigned char v128[] = {0x81, 0x00};
    static const unsigned char v159[] = {0x81, 0x1F};
    static const unsigned char v16383[] = {0xFF, 0x7F};
    static const unsigned char v16384[] = {0x81, 0x80, 0x00};
    static const unsigned char v63[] = {0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    static const unsigned char vmax[] = {0x81, 0xFF, 0xFF, 0xFF, 0xFF,
                                         0xFF, 0xFF, 0xFF, 0xFF, 0x7F};
    unsigned n;

    n = jpip_vbas_put(0, out);
    expect_bytes(out, n, v0, sizeof(v0));
    n = jpip_vbas_put(127, out);
    expect_bytes(out, n, v127, sizeof(v127));
    n = jpip_vbas_put(128, out);
    expect_bytes(out, n, v128, sizeof(v128));
    n = jpip_vbas_put(159, out);
    expect_bytes(out, n, v159, sizeof(v159));
    n = jpip_vbas_put(16383, out);
    expect_bytes(out, n, v16383, sizeof(v16383));
    n = jpip_vbas_put(16384, out);
    expect_bytes(out, n, v16384, sizeof(v16384));
    n = jpip_vbas_put(((apr_uint64_t)1) << 63, out);
    expect_bytes(out, n, v63, sizeof(v63));
    n = jpip_vbas_put(~(apr_uint64_t)0, out);
    expect_bytes(out, n, vmax, sizeof(vmax));
    ck_assert_uint_eq(jpip_vbas_size(0), 1);
    ck_assert_uint_eq(jpip_vbas_size(127), 1);
    ck_assert_uint_eq(jpip_vbas_size(128), 2);
    ck_assert_uint_eq(jpip_vbas_size(16383), 2);
    ck_assert_uint_eq(jpip_vbas_size(16384), 3);
    ck_assert_uint_eq(jpip_vbas_size(((apr_uint64_t)1) << 63), 10);
}
END_TEST

/* A k-byte Bin-ID holds 7k-3 bits: the largest such id fits, the next
 * one needs another byte. */
START_TEST(large_ids)
{
    jpip_jpp_writer_t w;
    unsigned char out[JPIP_JPP_HEADER_MAX];
    unsigned k;

    for (k = 1; k <= 9; k++) {
        apr_uint64_t top = (((apr_uint64_t)1) << (7 * k - 3)) - 1;
        apr_size_t n;

        jpip_jpp_writer_init(&w);
        jpip_jpp_header(&w, 0, 0, 0, 0, 0, 0, 0, out);
        /* bb=01 now: header = Bin-ID + offset + length (1 byte each) */
        n = jpip_jpp_header(&w, 0, 0, top, 0, 0, 0, 0, out);
        ck_assert_uint_eq(n, k + 2);
        ck_assert_uint_eq(out[0] & 0x0F, (unsigned)((top >> (7 * (k - 1))) & 0x0F));
        ck_assert_uint_eq((out[0] >> 5) & 3, 1);
        n = jpip_jpp_header(&w, 0, 0, top + 1, 0, 0, 0, 0, out);
        ck_assert_uint_eq(n, k + 3);
        /* the first byte of the longer id has zero id bits except the top one */
        ck_assert_uint_eq(out[0] & 0x0F, 0);
        ck_assert_uint_eq(out[1], k > 1 ? 0x90 : 0x10); /* bit 7k-3 is bit 4 of the second byte */
    }
    jpip_jpp_writer_init(&w);
    jpip_jpp_header(&w, 0, 0, 0, 0, 0, 0, 0, out);
    ck_assert_uint_eq(jpip_jpp_header(&w, 0, 0, ~(apr_uint64_t)0, 0, 0, 0, 0, out), 12);
    ck_assert_uint_eq(out[0], 0xA0 | 0x01);
    ck_assert_uint_eq(out[9], 0x7F);
}
END_TEST

START_TEST(aux_for_odd_classes)
{
    jpip_jpp_writer_t w;
    unsigned char out[JPIP_JPP_HEADER_MAX];
    apr_size_t n;
    /* class 1, csn 0, id 5, off 0, len 300 (82 2C), aux 3 */
    static const unsigned char ext[] = {0x65, 0x01, 0x00, 0x00, 0x82, 0x2C, 0x03};
    static const unsigned char ext2[] = {0x26, 0x82, 0x2C, 0x10, 0x83, 0x00};
    static const unsigned char tile5[] = {0x71, 0x05, 0x02, 0x00, 0x0A, 0x81, 0x00};

    jpip_jpp_writer_init(&w);
    ck_assert_uint_eq(jpip_jpp_header_size(&w, 1, 0, 5, 0, 300, 3), sizeof(ext));
    n = jpip_jpp_header(&w, 1, 0, 5, 0, 300, 0, 3, out);
    expect_bytes(out, n, ext, sizeof(ext));
    /* same class and csn: bb=01, aux still present */
    ck_assert_uint_eq(jpip_jpp_header_size(&w, 1, 0, 6, 300, 16, 384), sizeof(ext2));
    n = jpip_jpp_header(&w, 1, 0, 6, 300, 16, 0, 384, out);
    expect_bytes(out, n, ext2, sizeof(ext2));
    /* class 5 in codestream 2: bb=11 */
    n = jpip_jpp_header(&w, 5, 2, 1, 0, 10, 1, 128, out);
    expect_bytes(out, n, tile5, sizeof(tile5));
    /* even classes never carry aux, whatever is passed */
    n = jpip_jpp_header(&w, 0, 2, 1, 0, 10, 1, 128, out);
    ck_assert_uint_eq(n, 4);
}
END_TEST

START_TEST(inheritance_rule)
{
    jpip_jpp_writer_t w;
    unsigned char out[JPIP_JPP_HEADER_MAX];

    jpip_jpp_writer_init(&w);
    jpip_jpp_header(&w, 0, 3, 1, 0, 1, 0, 0, out);
    ck_assert_uint_eq((out[0] >> 5) & 3, 3); /* first message of the response */
    jpip_jpp_header(&w, 0, 3, 2, 0, 1, 0, 0, out);
    ck_assert_uint_eq((out[0] >> 5) & 3, 1); /* class and csn repeat */
    jpip_jpp_header(&w, 2, 3, 2, 0, 1, 0, 0, out);
    ck_assert_uint_eq((out[0] >> 5) & 3, 2); /* only csn repeats */
    jpip_jpp_header(&w, 2, 4, 2, 0, 1, 0, 0, out);
    ck_assert_uint_eq((out[0] >> 5) & 3, 3); /* csn changes */
    jpip_jpp_writer_init(&w);                /* next response */
    jpip_jpp_header(&w, 2, 4, 2, 0, 1, 0, 0, out);
    ck_assert_uint_eq((out[0] >> 5) & 3, 3);
    /* the c bit */
    jpip_jpp_header(&w, 2, 4, 2, 0, 1, 1, 0, out);
    ck_assert_uint_eq(out[0], 0x32);
}
END_TEST

START_TEST(header_size_matches)
{
    jpip_jpp_writer_t w1, w2;
    unsigned char out[JPIP_JPP_HEADER_MAX];
    unsigned i;
    static const unsigned classes[] = {0, 1, 2, 4, 5, 6, 8};
    apr_uint64_t x = 88172645463325252ull;

    jpip_jpp_writer_init(&w1);
    jpip_jpp_writer_init(&w2);
    for (i = 0; i < 20000; i++) {
        apr_uint64_t id, off, len, aux, csn;
        unsigned cls, sh;
        apr_size_t sz, n;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        sh = (unsigned)(x % 64);
        cls = classes[(x >> 8) % 7];
        csn = (x >> 12) % 3;
        id = x >> sh;
        off = (x * 31) >> (63 - sh);
        len = (x * 17) >> ((sh + 7) % 64);
        aux = x >> 40;
        sz = jpip_jpp_header_size(&w1, cls, csn, id, off, len, aux);
        n = jpip_jpp_header(&w2, cls, csn, id, off, len, i & 1, aux, out);
        ck_assert_uint_eq(sz, n);
        ck_assert_uint_le(n, JPIP_JPP_HEADER_MAX);
        jpip_jpp_header(&w1, cls, csn, id, off, len, i & 1, aux, out);
    }
}
END_TEST

START_TEST(eor_reasons)
{
    unsigned char out[JPIP_JPP_EOR_LEN];
    static const unsigned reasons[] = {1, 2, 3, 4, 5, 6, 7, 0xFF};
    unsigned i;

    for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        ck_assert_uint_eq(jpip_jpp_eor(reasons[i], out), 3);
        ck_assert_uint_eq(out[0], 0);
        ck_assert_uint_eq(out[1], reasons[i]);
        ck_assert_uint_eq(out[2], 0);
        ck_assert_str_ne(jpip_eor_name(reasons[i]), "reserved");
    }
    ck_assert_uint_eq(JPIP_EOR_BYTE_LIMIT, 4);
    ck_assert_uint_eq(JPIP_EOR_NONSPECIFIED, 0xFF);
    ck_assert_str_eq(jpip_eor_name(8), "reserved");
    ck_assert_str_eq(jpip_eor_name(JPIP_EOR_WINDOW_DONE), "window done");
}
END_TEST

static Suite *jpp_suite(void)
{
    Suite *s = suite_create("jpp");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, worked_encodings);
    tcase_add_test(tc, vbas_boundaries);
    tcase_add_test(tc, large_ids);
    tcase_add_test(tc, aux_for_odd_classes);
    tcase_add_test(tc, inheritance_rule);
    tcase_add_test(tc, header_size_matches);
    tcase_add_test(tc, eor_reasons);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(jpp_suite, CK_ENV);
}
