/* Unit tests: the strict parser of configured counts, sizes and seconds. */
#include <check.h>
#include <string.h>

#include "number.h"
#include "testutil.h"

#define MAX64 APR_UINT64_MAX

START_TEST(counts)
{
    apr_uint64_t v = 7;
    jpip_err_t err;

    ck_assert_int_eq(jpip_number_parse("12", JPIP_NUM_COUNT, 1, 100, &v, &err), JPIP_OK);
    ck_assert_uint_eq(v, 12);
    ck_assert_int_eq(jpip_number_parse("0", JPIP_NUM_COUNT, 0, 100, &v, &err), JPIP_OK);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(jpip_number_parse("007", JPIP_NUM_COUNT, 0, 100, &v, &err), JPIP_OK);
    ck_assert_uint_eq(v, 7);
    ck_assert_int_eq(jpip_number_parse("18446744073709551615", JPIP_NUM_COUNT, 0, MAX64, &v, &err),
                     JPIP_OK);
    ck_assert_uint_eq(v, MAX64);
}
END_TEST

/* Each refusal leaves the output alone and says what was wrong. */
START_TEST(counts_refused)
{
    static const struct {
        const char *in;
        const char *says;
    } cases[] = {{"12abc", "characters after"},
                 {"12 ", "characters after"},
                 {"1.5", "characters after"},
                 {"12K", "characters after"}, /* no suffix on a count */
                 {"-1", "negative"},
                 {"+1", "not a decimal"},
                 {" 1", "not a decimal"},
                 {"0x10", "characters after"},
                 {"", "empty"},
                 {"abc", "not a decimal"},
                 {"18446744073709551616", "too large"},
                 {"99999999999999999999999", "too large"},
                 {"0", "out of range"},
                 {"101", "out of range"}};
    apr_size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        apr_uint64_t v = 7;
        jpip_err_t err;

        ck_assert_msg(jpip_number_parse(cases[i].in, JPIP_NUM_COUNT, 1, 100, &v, &err) ==
                          JPIP_E_REQUEST,
                      "'%s' accepted", cases[i].in);
        ck_assert_msg(strstr(err.msg, cases[i].says) != NULL, "'%s': %s", cases[i].in, err.msg);
        ck_assert_uint_eq(v, 7);
    }
}
END_TEST

START_TEST(sizes)
{
    static const struct {
        const char *in;
        apr_uint64_t want;
    } cases[] = {{"4096", 4096},
                 {"4k", 4096},
                 {"4K", 4096},
                 {"64M", 64 << 20},
                 {"64m", 64 << 20},
                 {"1G", (apr_uint64_t)1 << 30},
                 {"2T", (apr_uint64_t)2 << 40},
                 {"16777215T", (apr_uint64_t)16777215 << 40}};
    apr_size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        apr_uint64_t v = 0;
        jpip_err_t err;

        ck_assert_msg(jpip_number_parse(cases[i].in, JPIP_NUM_SIZE, 1, MAX64, &v, &err) == JPIP_OK,
                      "%s: %s", cases[i].in, err.msg);
        ck_assert_uint_eq(v, cases[i].want);
    }
}
END_TEST

START_TEST(sizes_refused)
{
    static const struct {
        const char *in;
        const char *says;
    } cases[] = {{"99999999999999999999T", "too large"},
                 {"16777216T", "too large"}, /* 2^64 */
                 {"17179869184G", "too large"},
                 {"64MB", "characters after"},
                 {"64X", "unknown unit"},
                 {"M", "not a decimal"},
                 {"-64M", "negative"},
                 {"1.5G", "unknown unit"},
                 {"0K", "out of range"},
                 {"2G", "out of range"}};
    apr_size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        apr_uint64_t v = 7;
        jpip_err_t err;

        ck_assert_msg(jpip_number_parse(cases[i].in, JPIP_NUM_SIZE, 1, (apr_uint64_t)1 << 30, &v,
                                        &err) == JPIP_E_REQUEST,
                      "'%s' accepted", cases[i].in);
        ck_assert_msg(strstr(err.msg, cases[i].says) != NULL, "'%s': %s", cases[i].in, err.msg);
        ck_assert_uint_eq(v, 7);
    }
}
END_TEST

START_TEST(seconds)
{
    apr_uint64_t v = 0;
    jpip_err_t err;

    ck_assert_int_eq(jpip_seconds_parse("120", 1000, 86400000000u, &v, &err), JPIP_OK);
    ck_assert_uint_eq(v, 120000000u);
    ck_assert_int_eq(jpip_seconds_parse("0.02", 1000, 86400000000u, &v, &err), JPIP_OK);
    ck_assert_uint_eq(v, 20000);
    ck_assert_int_eq(jpip_seconds_parse("1.000001", 1, 86400000000u, &v, &err), JPIP_OK);
    ck_assert_uint_eq(v, 1000001);
    ck_assert_int_eq(jpip_seconds_parse("1.0000001", 1, 86400000000u, &v, &err), JPIP_E_REQUEST);
    ck_assert_ptr_nonnull(strstr(err.msg, "six decimals"));
    ck_assert_int_eq(jpip_seconds_parse("1.", 1, 86400000000u, &v, &err), JPIP_E_REQUEST);
    ck_assert_int_eq(jpip_seconds_parse("-1", 1, 86400000000u, &v, &err), JPIP_E_REQUEST);
    ck_assert_ptr_nonnull(strstr(err.msg, "negative"));
    ck_assert_int_eq(jpip_seconds_parse("5x", 1, 86400000000u, &v, &err), JPIP_E_REQUEST);
    ck_assert_int_eq(jpip_seconds_parse("0.0001", 1000, 86400000000u, &v, &err), JPIP_E_REQUEST);
    ck_assert_ptr_nonnull(strstr(err.msg, "out of range (0.001 to 86400 seconds)"));
    ck_assert_int_eq(jpip_seconds_parse("99999999999999999999", 1, MAX64, &v, &err),
                     JPIP_E_REQUEST);
    ck_assert_int_eq(jpip_seconds_parse("18446744073710", 1, MAX64, &v, &err), JPIP_E_REQUEST);
    ck_assert_ptr_nonnull(strstr(err.msg, "too large"));
    ck_assert_uint_eq(v, 1000001);
}
END_TEST

static Suite *number_suite(void)
{
    Suite *s = suite_create("number");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, counts);
    tcase_add_test(tc, counts_refused);
    tcase_add_test(tc, sizes);
    tcase_add_test(tc, sizes_refused);
    tcase_add_test(tc, seconds);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(number_suite, CK_ENV);
}
