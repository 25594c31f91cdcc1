/* Unit tests: the flat session record (init, its self-check, channels,
 * channel ids, the model it carries). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "session.h"
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

static jpip_session_t *new_session(apr_size_t size)
{
    void *buf = apr_pcalloc(pool, size);
    jpip_session_t *s = NULL;
    jpip_err_t err;

    ck_assert_msg(jpip_session_init(buf, size, "dir/a.jp2", "tid1", apr_time_from_sec(5), &s,
                                    &err) == JPIP_OK,
                  "%s", err.msg);
    ck_assert_ptr_eq(s, buf);
    return s;
}

START_TEST(init_and_check)
{
    apr_size_t size = jpip_session_bytes_for(jpip_model_bytes_for(50));
    jpip_session_t *s = new_session(size);
    jpip_model_t *m = jpip_session_model(s);
    jpip_err_t err;
    void *small;

    ck_assert_str_eq(s->target, "dir/a.jp2");
    ck_assert_str_eq(s->tid, "tid1");
    ck_assert_uint_eq(s->nchannels, 0);
    ck_assert_uint_eq(s->closed, 0);
    ck_assert_uint_eq(s->busy, 0);
    ck_assert_uint_eq(jpip_model_runs(m), 0);
    /* the model fills the rest of the record, and its size is known to
     * the status page from the start */
    ck_assert_uint_ge(jpip_model_capacity(m), 50);
    ck_assert_uint_eq(s->model_bytes, jpip_model_size(m));
    ck_assert_int_eq(jpip_session_check(s, size, &err), JPIP_OK);
    /* too small a slot, too long a name */
    small = apr_pcalloc(pool, 64);
    ck_assert_int_eq(jpip_session_init(small, 64, "a", "t", 0, &s, &err), JPIP_E_LIMIT);
    {
        char *longname = apr_pcalloc(pool, JPIP_SESSION_TARGET_MAX + 1);
        void *buf = apr_pcalloc(pool, size);

        memset(longname, 'x', JPIP_SESSION_TARGET_MAX);
        ck_assert_int_eq(jpip_session_init(buf, size, longname, "t", 0, &s, &err), JPIP_E_REQUEST);
    }
}
END_TEST

START_TEST(check_refuses_damage)
{
    apr_size_t size = jpip_session_bytes_for(jpip_model_bytes_for(20));
    jpip_session_t *s = new_session(size);
    jpip_session_t *copy = apr_palloc(pool, size);
    jpip_err_t err;

    memcpy(copy, s, size);
    copy->magic ^= 1;
    ck_assert_int_eq(jpip_session_check(copy, size, &err), JPIP_E_FORMAT);
    memcpy(copy, s, size);
    copy->nchannels = JPIP_SESSION_CHANNELS + 1;
    ck_assert_int_eq(jpip_session_check(copy, size, &err), JPIP_E_FORMAT);
    memcpy(copy, s, size);
    memset(copy->tid, 'z', sizeof(copy->tid)); /* no NUL */
    ck_assert_int_eq(jpip_session_check(copy, size, &err), JPIP_E_FORMAT);
    memcpy(copy, s, size);
    memset(copy->ch[3].cid, 'c', sizeof(copy->ch[3].cid));
    ck_assert_int_eq(jpip_session_check(copy, size, &err), JPIP_E_FORMAT);
    memcpy(copy, s, size);
    copy->model_off += 8;
    ck_assert_int_eq(jpip_session_check(copy, size, &err), JPIP_E_FORMAT);
    ck_assert_int_eq(jpip_session_check(s, size - 8, &err), JPIP_E_FORMAT);
}
END_TEST

START_TEST(channels_open_and_close)
{
    jpip_session_t *s = new_session(jpip_session_bytes_for(jpip_model_bytes_for(10)));
    char cids[JPIP_SESSION_CHANNELS + 1][JPIP_CID_LEN + 1];
    jpip_channel_t *c;
    jpip_err_t err;
    int i;

    for (i = 0; i <= JPIP_SESSION_CHANNELS; i++) {
        ck_assert_int_eq(jpip_session_new_cid(cids[i], &err), JPIP_OK);
        ck_assert_uint_eq(strlen(cids[i]), JPIP_CID_LEN);
        ck_assert_uint_eq(strspn(cids[i], jpip_cid_alphabet), JPIP_CID_LEN);
        ck_assert_str_ne(cids[i], i > 0 ? cids[i - 1] : "");
    }
    for (i = 0; i < JPIP_SESSION_CHANNELS; i++) {
        ck_assert_int_eq(jpip_session_channel_open(s, cids[i], i % 2, &c, &err), JPIP_OK);
        ck_assert_int_eq(c->jpt, i % 2);
        ck_assert_int_eq(c->next_qid, -1);
    }
    ck_assert_int_eq(jpip_session_channel_open(s, cids[JPIP_SESSION_CHANNELS], 0, &c, &err),
                     JPIP_E_LIMIT);
    ck_assert_ptr_eq(jpip_session_channel(s, cids[JPIP_SESSION_CHANNELS]), NULL);
    ck_assert_ptr_nonnull(jpip_session_channel(s, cids[2]));
    ck_assert_uint_eq(jpip_session_channel_close(s, cids[2]), JPIP_SESSION_CHANNELS - 1);
    ck_assert_ptr_eq(jpip_session_channel(s, cids[2]), NULL);
    /* closing an unknown or already closed channel changes nothing */
    ck_assert_uint_eq(jpip_session_channel_close(s, cids[2]), JPIP_SESSION_CHANNELS - 1);
    /* the freed place takes a new channel */
    ck_assert_int_eq(jpip_session_channel_open(s, cids[JPIP_SESSION_CHANNELS], 0, &c, &err),
                     JPIP_OK);
    ck_assert_uint_eq(s->nchannels, JPIP_SESSION_CHANNELS);
    ck_assert_uint_eq(jpip_session_channel_close(s, "*"), 0);
    for (i = 0; i <= JPIP_SESSION_CHANNELS; i++) {
        ck_assert_ptr_eq(jpip_session_channel(s, cids[i]), NULL);
    }
}
END_TEST

START_TEST(model_lives_in_the_record)
{
    apr_size_t size = jpip_session_bytes_for(jpip_model_bytes_for(8));
    jpip_session_t *s = new_session(size);
    jpip_model_sent_t sent[2] = {{2, 0, 5, 0, 100, 1, 0}, {2, 0, 9, 0, 40, 0, 0}};
    jpip_session_t *copy = apr_palloc(pool, size);
    jpip_err_t err;

    ck_assert_int_eq(jpip_model_record(jpip_session_model(s), NULL, sent, 2, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(jpip_session_model(s), NULL, 2, 0, 5), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(jpip_session_model(s), NULL, 2, 0, 9), 40);
    /* flat and position-independent: a byte copy is the same session */
    memcpy(copy, s, size);
    ck_assert_int_eq(jpip_session_check(copy, size, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(jpip_session_model(copy), NULL, 2, 0, 9), 40);
    jpip_session_model_reset(s);
    ck_assert_uint_eq(jpip_model_runs(jpip_session_model(s)), 0);
    ck_assert_uint_eq(jpip_model_held(jpip_session_model(s), NULL, 2, 0, 5), 0);
    ck_assert_int_eq(jpip_session_check(s, size, &err), JPIP_OK);
}
END_TEST

static Suite *session_suite(void)
{
    Suite *s = suite_create("session");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, init_and_check);
    tcase_add_test(tc, check_refuses_damage);
    tcase_add_test(tc, channels_open_and_close);
    tcase_add_test(tc, model_lives_in_the_record);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(session_suite, CK_ENV);
}
