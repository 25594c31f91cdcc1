/* Unit tests: error kinds and limits, and their one mapping to HTTP
 * statuses (jpip_err_status), and that the libcore limits say which limit
 * they hit. */
#include <check.h>
#include <string.h>

#include <apr_general.h>

#include "fields.h"
#include "jpip_err.h"
#include "model.h"
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

static int status(jpip_code_t code, jpip_limit_t limit)
{
    jpip_err_t err;

    if (code == JPIP_E_LIMIT) {
        jpip_err_limit(&err, limit, "x");
    } else {
        jpip_err_set(&err, code, "x");
    }
    return jpip_err_status(&err);
}

START_TEST(kinds_map_to_statuses)
{
    static const struct {
        jpip_code_t code;
        int status;
    } cases[] = {{JPIP_E_REQUEST, 400},  {JPIP_E_FORBIDDEN, 403},   {JPIP_E_NOTFOUND, 404},
                 {JPIP_E_CONFLICT, 409}, {JPIP_E_FORMAT, 415},      {JPIP_E_UNSUPPORTED, 501},
                 {JPIP_E_NOMEM, 503},    {JPIP_E_UNAVAILABLE, 503}, {JPIP_E_IO, 500},
                 {JPIP_E_INTERNAL, 500}};
    apr_size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ck_assert_msg(status(cases[i].code, JPIP_LIMIT_NONE) == cases[i].status, "%s: %d",
                      jpip_code_name(cases[i].code), status(cases[i].code, JPIP_LIMIT_NONE));
    }
}
END_TEST

/* A request asking too much is 413; the server's capacity is 503. */
START_TEST(limits_map_to_statuses)
{
    static const struct {
        jpip_limit_t limit;
        int status;
    } cases[] = {{JPIP_LIMIT_NONE, 413},
                 {JPIP_LIMIT_FIELDS, 413},
                 {JPIP_LIMIT_FIELD_LENGTH, 413},
                 {JPIP_LIMIT_REQUEST_BODY, 413},
                 {JPIP_LIMIT_MODEL_ITEMS, 413},
                 {JPIP_LIMIT_BINS, 413},
                 {JPIP_LIMIT_INDEX_MEMORY, 503},
                 {JPIP_LIMIT_INDEX_TIME, 503},
                 {JPIP_LIMIT_INDEX_BUILDS, 503},
                 {JPIP_LIMIT_INDEX_BUSY, 503},
                 {JPIP_LIMIT_TARGET, 503},
                 {JPIP_LIMIT_SESSIONS, 503},
                 {JPIP_LIMIT_SESSIONS_PER_CLIENT, 503},
                 {JPIP_LIMIT_SESSION_MEMORY, 503},
                 {JPIP_LIMIT_CHANNELS, 503}};
    apr_size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ck_assert_msg(status(JPIP_E_LIMIT, cases[i].limit) == cases[i].status, "%s: %d",
                      jpip_limit_name(cases[i].limit), status(JPIP_E_LIMIT, cases[i].limit));
    }
    ck_assert_str_eq(jpip_limit_name(JPIP_LIMIT_INDEX_TIME), "index-time");
    ck_assert_str_eq(jpip_limit_name((jpip_limit_t)999), "unknown");
}
END_TEST

START_TEST(set_and_clear_reset_the_limit)
{
    jpip_err_t err;

    ck_assert_int_eq(jpip_err_limit(&err, JPIP_LIMIT_BINS, "more than %d", 5), JPIP_E_LIMIT);
    ck_assert_int_eq(err.code, JPIP_E_LIMIT);
    ck_assert_int_eq(err.limit, JPIP_LIMIT_BINS);
    ck_assert_str_eq(err.msg, "more than 5");
    jpip_err_set(&err, JPIP_E_LIMIT, "built in");
    ck_assert_int_eq(err.limit, JPIP_LIMIT_NONE);
    jpip_err_limit(&err, JPIP_LIMIT_BINS, "x");
    jpip_err_clear(&err);
    ck_assert_int_eq(err.code, JPIP_OK);
    ck_assert_int_eq(err.limit, JPIP_LIMIT_NONE);
    ck_assert_int_eq(jpip_err_limit(NULL, JPIP_LIMIT_BINS, "ignored"), JPIP_E_LIMIT);
}
END_TEST

/* A caller names the bound it passed only when none is named yet. */
START_TEST(set_limit_names_unnamed_limits_only)
{
    jpip_err_t err;

    jpip_err_set(&err, JPIP_E_LIMIT, "built in");
    ck_assert_int_eq(jpip_err_set_limit(&err, JPIP_LIMIT_MODEL_ITEMS), JPIP_E_LIMIT);
    ck_assert_int_eq(err.limit, JPIP_LIMIT_MODEL_ITEMS);
    jpip_err_limit(&err, JPIP_LIMIT_BINS, "x");
    jpip_err_set_limit(&err, JPIP_LIMIT_MODEL_ITEMS);
    ck_assert_int_eq(err.limit, JPIP_LIMIT_BINS);
    jpip_err_set(&err, JPIP_E_REQUEST, "syntax");
    ck_assert_int_eq(jpip_err_set_limit(&err, JPIP_LIMIT_MODEL_ITEMS), JPIP_E_REQUEST);
    ck_assert_int_eq(err.limit, JPIP_LIMIT_NONE);
    ck_assert_int_eq(jpip_err_status(&err), 400);
}
END_TEST

/* Context put before a message keeps what the error is. */
START_TEST(prefix_keeps_kind_and_limit)
{
    jpip_err_t err;

    jpip_err_limit(&err, JPIP_LIMIT_INDEX_TIME, "ran out of time");
    ck_assert_int_eq(jpip_err_prefix(&err, JPIP_E_LIMIT, "tile %u", 3u), JPIP_E_LIMIT);
    ck_assert_str_eq(err.msg, "tile 3: ran out of time");
    ck_assert_int_eq(err.limit, JPIP_LIMIT_INDEX_TIME);
    ck_assert_int_eq(jpip_err_status(&err), 503);
    jpip_err_set(&err, JPIP_E_FORMAT, "bad marker");
    ck_assert_int_eq(jpip_err_prefix(&err, JPIP_E_FORMAT, "codestream %d", 2), JPIP_E_FORMAT);
    ck_assert_str_eq(err.msg, "codestream 2: bad marker");
    ck_assert_int_eq(err.limit, JPIP_LIMIT_NONE);
    ck_assert_int_eq(jpip_err_prefix(NULL, JPIP_E_IO, "x"), JPIP_E_IO);
}
END_TEST

/* What the target cannot give is the file's fault: 415, or 503 for a
 * bound of the indexer; the server's own limits keep their names. */
START_TEST(target_errors)
{
    jpip_err_t err;

    jpip_err_set(&err, JPIP_E_UNSUPPORTED, "a feature");
    ck_assert_int_eq(jpip_err_of_target(&err), JPIP_E_FORMAT);
    ck_assert_int_eq(jpip_err_status(&err), 415);
    ck_assert_str_eq(err.msg, "a feature");
    jpip_err_set(&err, JPIP_E_LIMIT, "more than 65535 tiles");
    ck_assert_int_eq(jpip_err_of_target(&err), JPIP_E_LIMIT);
    ck_assert_int_eq(err.limit, JPIP_LIMIT_TARGET);
    ck_assert_int_eq(jpip_err_status(&err), 503);
    jpip_err_limit(&err, JPIP_LIMIT_INDEX_TIME, "too slow");
    jpip_err_of_target(&err);
    ck_assert_int_eq(err.limit, JPIP_LIMIT_INDEX_TIME);
    jpip_err_set(&err, JPIP_E_IO, "unreadable");
    ck_assert_int_eq(jpip_err_of_target(&err), JPIP_E_IO);
    ck_assert_int_eq(jpip_err_status(&err), 500);
}
END_TEST

/* The limits of request parsing say which they are: the glue names the
 * directive from that, not from the message. */
START_TEST(parsers_name_their_limits)
{
    jpip_fields_limits_t lim = {3, 10};
    apr_array_header_t *f = NULL;
    jpip_model_spec_t *spec;
    jpip_err_t err;

    ck_assert_int_eq(jpip_fields_parse(pool, "a=1&b=2&c=3&d=4", 15, &lim, &f, &err), JPIP_E_LIMIT);
    ck_assert_int_eq(err.limit, JPIP_LIMIT_FIELDS);
    ck_assert_int_eq(jpip_err_status(&err), 413);
    f = NULL;
    ck_assert_int_eq(jpip_fields_parse(pool, "a=12345678901", 13, &lim, &f, &err), JPIP_E_LIMIT);
    ck_assert_int_eq(err.limit, JPIP_LIMIT_FIELD_LENGTH);
    f = NULL;
    ck_assert_int_eq(jpip_fields_parse(pool, "a=%zz", 5, &lim, &f, &err), JPIP_E_REQUEST);
    ck_assert_int_eq(err.limit, JPIP_LIMIT_NONE);
    ck_assert_int_eq(jpip_model_parse(pool, "P1,P2,P3,P4,P5", 0, 4, &spec, &err), JPIP_E_LIMIT);
    ck_assert_int_eq(err.limit, JPIP_LIMIT_MODEL_ITEMS);
    ck_assert_int_eq(jpip_model_parse(pool, "Q5", 0, 4, &spec, &err), JPIP_E_REQUEST);
    ck_assert_int_eq(err.limit, JPIP_LIMIT_NONE);
}
END_TEST

static Suite *err_suite(void)
{
    Suite *s = suite_create("err");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, kinds_map_to_statuses);
    tcase_add_test(tc, limits_map_to_statuses);
    tcase_add_test(tc, set_and_clear_reset_the_limit);
    tcase_add_test(tc, set_limit_names_unnamed_limits_only);
    tcase_add_test(tc, prefix_keeps_kind_and_limit);
    tcase_add_test(tc, target_errors);
    tcase_add_test(tc, parsers_name_their_limits);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(err_suite, CK_ENV);
}
