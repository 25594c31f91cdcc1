/* Unit tests: the JPIP request grammar (protocol notes section A). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>

#include "fields.h"
#include "request.h"

static apr_pool_t *pool;

static void setup(void)
{
    apr_pool_create(&pool, NULL);
}

static void teardown(void)
{
    apr_pool_destroy(pool);
}

static jpip_code_t parse(const char *q, jpip_request_t *req, jpip_err_t *err)
{
    apr_array_header_t *f = NULL;
    jpip_code_t rc = jpip_fields_parse(pool, q, strlen(q), NULL, &f, err);

    return rc != JPIP_OK ? rc : jpip_request_parse(pool, f, req, err);
}

START_TEST(full_view_window)
{
    jpip_request_t r;
    jpip_err_t err;

    ck_assert_int_eq(parse("target=a.jp2&tid=0&cnew=http-tcp,http&fsiz=1000,800,closest&roff=10,"
                           "20&rsiz=300,200&comps=0-2,5&stream=0-99:10&layers=3&len=2000&type="
                           "jpp-stream&wait=yes&align=no&qid=7&metareq=%5Bxml_%5D!!&model=Hm,P0",
                           &r, &err),
                     JPIP_OK);
    ck_assert_str_eq(r.target, "a.jp2");
    ck_assert_str_eq(r.tid, "0");
    ck_assert_uint_eq(r.cnew, JPIP_TRANSPORT_HTTP | JPIP_TRANSPORT_HTTP_TCP);
    ck_assert(r.has_fsiz && r.fx == 1000 && r.fy == 800 && r.round == JPIP_ROUND_CLOSEST);
    ck_assert(r.has_roff && r.ox == 10 && r.oy == 20);
    ck_assert(r.has_rsiz && r.sx == 300 && r.sy == 200);
    ck_assert_str_eq(jpip_ranges_format(pool, r.comps), "0-2,5");
    ck_assert(jpip_ranges_contain(r.comps, 1) && !jpip_ranges_contain(r.comps, 3));
    ck_assert(jpip_ranges_contain(r.stream, 30) && !jpip_ranges_contain(r.stream, 31));
    ck_assert(r.has_layers && r.layers == 3);
    ck_assert(r.has_len && r.len == 2000);
    ck_assert_uint_eq(r.type, JPIP_TYPE_JPP);
    ck_assert(r.wait == 1 && r.align == 0);
    ck_assert(r.qid == 7);
    ck_assert_str_eq(r.metareq, "[xml_]!!");
    ck_assert_str_eq(r.model, "Hm,P0");
    ck_assert_ptr_null(r.unsupported);
}
END_TEST

START_TEST(defaults_and_open_ranges)
{
    jpip_request_t r;
    jpip_err_t err;

    ck_assert_int_eq(
        parse("fsiz=64,64&comps=3-&handled&type=image/jpt-stream;ttype=ext,raw", &r, &err),
        JPIP_OK);
    ck_assert(r.round == JPIP_ROUND_DOWN);
    ck_assert(r.qid == -1);
    ck_assert(jpip_ranges_contain(r.comps, 4000000) && !jpip_ranges_contain(r.comps, 2));
    ck_assert_str_eq(jpip_ranges_format(pool, r.comps), "3-");
    ck_assert(r.handled);
    ck_assert_uint_eq(r.type, JPIP_TYPE_JPT_EXT | JPIP_TYPE_RAW);
    ck_assert_ptr_null(r.target);
    ck_assert(!r.has_len);
}
END_TEST

START_TEST(context_and_prefs)
{
    jpip_request_t r;
    jpip_err_t err;

    ck_assert_int_eq(parse("context=jpxl%3C0-3%3E,mj2t%3C1%3E%5Btrack%5D&pref=fullwindow/r,meta:"
                           "equiv&cclose=*",
                           &r, &err),
                     JPIP_OK);
    ck_assert_ptr_nonnull(r.jpxl);
    ck_assert(jpip_ranges_contain(r.jpxl, 3) && !jpip_ranges_contain(r.jpxl, 4));
    ck_assert_str_eq(r.pref_required, "fullwindow");
    ck_assert_int_eq(r.cclose->nelts, 1);
}
END_TEST

START_TEST(cclose_alone_names_its_channel)
{
    jpip_request_t r;
    jpip_err_t err;

    ck_assert_int_eq(parse("cclose=JPH_0123abcd", &r, &err), JPIP_OK);
    ck_assert_ptr_nonnull(r.cid);
    ck_assert_str_eq(r.cid, "JPH_0123abcd");
    ck_assert_int_eq(parse("cclose=a,b", &r, &err), JPIP_OK);
    ck_assert_str_eq(r.cid, "a");
    /* "*", a cid or a target of its own: no channel taken from it */
    ck_assert_int_eq(parse("cclose=*", &r, &err), JPIP_OK);
    ck_assert_ptr_null(r.cid);
    ck_assert_int_eq(parse("cid=c1&cclose=c2", &r, &err), JPIP_OK);
    ck_assert_str_eq(r.cid, "c1");
    ck_assert_int_eq(parse("target=a.jp2&cclose=c2", &r, &err), JPIP_OK);
    ck_assert_ptr_null(r.cid);
}
END_TEST

START_TEST(unsupported_fields_recorded)
{
    jpip_request_t r;
    jpip_err_t err;

    ck_assert_int_eq(parse("upload=jpp-stream", &r, &err), JPIP_OK);
    ck_assert_str_eq(r.unsupported, "upload");
}
END_TEST

START_TEST(malformed_requests_refused)
{
    const char *bad[] = {
        "bogus=1",
        "fsiz=0,10",
        "fsiz=10",
        "fsiz=10,10,sideways",
        "fsiz=-1,5",
        "fsiz=4294967296,1",
        "roff=1,1",
        "fsiz=9,9&rsiz=1",
        "comps=2-1",
        "comps=a",
        "comps=1,",
        "len=-5",
        "len=99999999999999999999",
        "layers=x",
        "quality=101",
        "wait=maybe",
        "qid=1.5",
        "cnew=",
        "cid=a%20b",
        "stream=0:0",
        "context=jpxl<0",
        "metareq=xml_",
        "tid=",
        "srate=1.2.3",
        "layers",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        jpip_request_t r;
        jpip_err_t err;
        jpip_code_t rc = parse(bad[i], &r, &err);

        ck_assert_msg(rc == JPIP_E_REQUEST, "accepted %s", bad[i]);
        ck_assert_msg(err.msg[0] != '\0', "no message for %s", bad[i]);
    }
}
END_TEST

START_TEST(messages_name_the_field)
{
    jpip_request_t r;
    jpip_err_t err;

    ck_assert_int_eq(parse("fsiz=10,10,sideways", &r, &err), JPIP_E_REQUEST);
    ck_assert_ptr_nonnull(strstr(err.msg, "fsiz"));
    ck_assert_int_eq(parse("frobnicate=1", &r, &err), JPIP_E_REQUEST);
    ck_assert_ptr_nonnull(strstr(err.msg, "frobnicate"));
}
END_TEST

static Suite *request_suite(void)
{
    Suite *s = suite_create("request");
    TCase *tc = tcase_create("grammar");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, full_view_window);
    tcase_add_test(tc, defaults_and_open_ranges);
    tcase_add_test(tc, context_and_prefs);
    tcase_add_test(tc, cclose_alone_names_its_channel);
    tcase_add_test(tc, unsupported_fields_recorded);
    tcase_add_test(tc, malformed_requests_refused);
    tcase_add_test(tc, messages_name_the_field);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(request_suite, CK_ENV);
}
