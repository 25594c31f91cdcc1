/* Unit tests: the model/need grammar and the flat cache model (held/add,
 * subtraction, need-inverted models, resolver callbacks, serialisation,
 * bounds, run compaction). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

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

static jpip_model_spec_t *parse_ok(const char *v, int need)
{
    jpip_model_spec_t *spec = NULL;
    jpip_err_t err;
    jpip_code_t rc = jpip_model_parse(pool, v, need, 0, &spec, &err);

    ck_assert_msg(rc == JPIP_OK, "'%s': %s", v, err.msg);
    return spec;
}

START_TEST(grammar_examples)
{
    jpip_model_spec_t *s = parse_ok("Hm,H*,M0,P0,P1:1024,P5:L2", 0);
    const jpip_model_item_t *it = s->items;

    ck_assert_uint_eq(s->nitems, 6);
    ck_assert_int_eq(it[0].kind, JPIP_MODEL_ITEM_MAIN);
    ck_assert_int_eq(it[0].qual, JPIP_MODEL_QUAL_NONE);
    ck_assert_int_eq(it[1].kind, JPIP_MODEL_ITEM_TILEHDR);
    ck_assert(it[1].all);
    ck_assert_int_eq(it[2].kind, JPIP_MODEL_ITEM_META);
    ck_assert_uint_eq(it[2].id, 0);
    ck_assert_int_eq(it[3].kind, JPIP_MODEL_ITEM_PRECINCT);
    ck_assert(!it[3].all);
    ck_assert_int_eq(it[4].qual, JPIP_MODEL_QUAL_BYTES);
    ck_assert_uint_eq(it[4].bytes, 1024);
    ck_assert_uint_eq(it[4].id, 1);
    ck_assert_int_eq(it[5].qual, JPIP_MODEL_QUAL_LAYERS);
    ck_assert_uint_eq(it[5].layers, 2);
    ck_assert_uint_eq(it[5].pos, 20);
    ck_assert_uint_eq(it[0].ncs, 1);
    ck_assert_uint_eq(it[0].cs[0].first, 0);
    ck_assert_uint_eq(it[0].cs[0].last, 0);

    s = parse_ok("[0],Hm,H0:17,[1-3],Hm", 0);
    ck_assert_uint_eq(s->nitems, 3);
    ck_assert_uint_eq(s->items[1].bytes, 17);
    ck_assert_uint_eq(s->items[1].cs[0].last, 0);
    ck_assert_uint_eq(s->items[2].ncs, 1);
    ck_assert_uint_eq(s->items[2].cs[0].first, 1);
    ck_assert_uint_eq(s->items[2].cs[0].last, 3);

    s = parse_ok("-P37", 0);
    ck_assert_uint_eq(s->nitems, 1);
    ck_assert(s->items[0].subtract);
    ck_assert_uint_eq(s->items[0].id, 37);

    s = parse_ok("t0c1r2:L3", 0);
    it = s->items;
    ck_assert_int_eq(it[0].kind, JPIP_MODEL_ITEM_IMPLICIT);
    ck_assert_uint_eq(it[0].t.first, 0);
    ck_assert_uint_eq(it[0].t.last, 0);
    ck_assert_uint_eq(it[0].c.first, 1);
    ck_assert_uint_eq(it[0].r.last, 2);
    ck_assert_uint_eq(it[0].p.first, 0);
    ck_assert_uint_eq(it[0].p.last, JPIP_MODEL_END);
    ck_assert_uint_eq(it[0].layers, 3);

    /* any order, ranges, '*', open ranges, ';'-lists, qualifier glued */
    s = parse_ok("p3-5r*c2,[0;2-],[*]Hm,T7:L1,-M*:10", 0);
    it = s->items;
    ck_assert_uint_eq(s->nitems, 4);
    ck_assert_uint_eq(it[0].p.first, 3);
    ck_assert_uint_eq(it[0].p.last, 5);
    ck_assert_uint_eq(it[0].r.last, JPIP_MODEL_END);
    ck_assert_uint_eq(it[0].t.last, JPIP_MODEL_END);
    ck_assert_uint_eq(it[1].ncs, 1);
    ck_assert_uint_eq(it[1].cs[0].last, JPIP_MODEL_END);
    ck_assert_int_eq(it[2].kind, JPIP_MODEL_ITEM_TILE);
    ck_assert(it[3].subtract);
    ck_assert(it[3].all);
    s = parse_ok("[0;2-],Hm", 0);
    ck_assert_uint_eq(s->items[0].ncs, 2);
    ck_assert_uint_eq(s->items[0].cs[1].first, 2);
    ck_assert_uint_eq(s->items[0].cs[1].last, JPIP_MODEL_END);
    s = parse_ok("P18446744073709551615", 0);
    ck_assert_uint_eq(s->items[0].id, JPIP_MODEL_END);

    s = parse_ok("Hm,P5:L2,t0", 1);
    ck_assert(s->need);
    ck_assert_uint_eq(s->nitems, 3);
}
END_TEST

START_TEST(grammar_rejects)
{
    static const struct {
        const char *v;
        int need;
        const char *msg;
    } bad[] = {
        {"", 0, "empty value"},
        {"X", 0, "position 0"},
        {"P", 0, "bin id"},
        {"P-1", 0, "bin id"},
        {"Hm:L2", 0, "layers qualifier"},
        {"H3:L2", 0, "layers qualifier"},
        {"P5:", 0, "byte count"},
        {"P5:Lx", 0, "number of layers"},
        {"P5:L70000", 0, "65535"},
        {"t0t1", 0, "repeated"},
        {"t0:100", 0, "only ':L"},
        {"tx", 0, "implicit"},
        {"P1,,P2", 0, "position 3"},
        {"P1,", 0, "empty item"},
        {"[", 0, "codestream"},
        {"[1", 0, "']'"},
        {"[a]", 0, "codestream"},
        {"[3-1]", 0, "range ends before"},
        {"P99999999999999999999999", 0, "too large"},
        {"P1 P2", 0, "position 2"},
        {"P1P2", 0, "','"},
        {"-P1", 1, "need does not allow"},
        {"Hm,-H1", 1, "position 3"},
        {"--P1", 0, "descriptor"},
    };
    unsigned i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        jpip_model_spec_t *spec;
        jpip_err_t err;
        jpip_code_t rc = jpip_model_parse(pool, bad[i].v, bad[i].need, 0, &spec, &err);
        ck_assert_msg(rc == JPIP_E_REQUEST, "'%s' accepted", bad[i].v);
        ck_assert_msg(strstr(err.msg, bad[i].msg) != NULL, "'%s': message '%s' lacks '%s'",
                      bad[i].v, err.msg, bad[i].msg);
        ck_assert_msg(strstr(err.msg, bad[i].need ? "need" : "model") != NULL, "%s", err.msg);
    }
}
END_TEST

START_TEST(grammar_limit)
{
    jpip_model_spec_t *spec;
    jpip_err_t err;
    char *big;
    int i;

    ck_assert_int_eq(jpip_model_parse(pool, "P1,P2,P3,P4", 0, 4, &spec, &err), JPIP_OK);
    ck_assert_int_eq(jpip_model_parse(pool, "P1,P2,P3,P4,P5", 0, 4, &spec, &err), JPIP_E_LIMIT);
    ck_assert_int_eq(jpip_model_parse(pool, "[0;1;2;3;4],P1", 0, 4, &spec, &err), JPIP_E_LIMIT);
    /* the default bound */
    big = apr_palloc(pool, 3 * (JPIP_MODEL_MAX_ITEMS + 1) + 1);
    for (i = 0; i <= JPIP_MODEL_MAX_ITEMS; i++) {
        memcpy(big + 3 * i, "P1,", 3);
    }
    big[3 * (JPIP_MODEL_MAX_ITEMS + 1) - 1] = '\0';
    ck_assert_int_eq(jpip_model_parse(pool, big, 0, 0, &spec, &err), JPIP_E_LIMIT);
    ck_assert_ptr_nonnull(strstr(err.msg, "more than"));
}
END_TEST

static jpip_model_t *new_model(apr_size_t runs, int inverted)
{
    jpip_model_t *m;
    jpip_err_t err;

    ck_assert_int_eq(jpip_model_create(pool, runs, inverted, &m, &err), JPIP_OK);
    return m;
}

START_TEST(held_and_add)
{
    jpip_model_t *m = new_model(64, 0);
    jpip_err_t err;

    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 5), 0);
    ck_assert_int_eq(jpip_model_add(m, NULL, 0, 0, 5, 100, 0, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 5), 100);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 1, 0, 5), 100); /* extended class: same bin */
    ck_assert_int_eq(jpip_model_add(m, NULL, 1, 0, 5, 50, 0, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 5), 100); /* never decreases */
    ck_assert_int_eq(jpip_model_add(m, NULL, 0, 0, 5, 0, 1, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 5), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 1, 5), 0); /* other codestream */
    ck_assert_uint_eq(jpip_model_held(m, NULL, 2, 0, 5), 0); /* other class */
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 4), 0);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 6), 0);
    /* metadata-bins are not codestream-qualified */
    ck_assert_int_eq(jpip_model_add(m, NULL, 8, 3, 2, 10, 0, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 8, 0, 2), 10);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 8, 7, 2), 10);
    /* tile data-bins, class 5 = 4 */
    ck_assert_int_eq(jpip_model_add(m, NULL, 5, 1, 0, 10, 1, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 4, 1, 0), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_runs(m), 3);
    /* adding 0 bytes changes nothing */
    ck_assert_int_eq(jpip_model_add(m, NULL, 0, 0, 77, 0, 0, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_runs(m), 3);
}
END_TEST

START_TEST(million_ids_one_run)
{
    jpip_model_t *m = new_model(4, 0);
    jpip_err_t err;
    apr_uint64_t i;
    jpip_model_run_t run;

    /* plain tests in the hot loops: every ck_assert is a write() */
    for (i = 0; i < 1000000; i++) {
        if (jpip_model_add(m, NULL, 0, 0, i, 0, 1, &err) != JPIP_OK) {
            ck_abort_msg("add %u: %s", (unsigned)i, err.msg);
        }
    }
    ck_assert_uint_eq(jpip_model_runs(m), 1);
    jpip_model_run(m, 0, &run);
    ck_assert_uint_eq(run.first, 0);
    ck_assert_uint_eq(run.last, 999999);
    ck_assert_uint_eq(run.bytes, JPIP_MODEL_COMPLETE);
    /* downwards too */
    for (i = 2000000; i > 1000000; i--) {
        if (jpip_model_add(m, NULL, 2, 0, i, 0, 1, &err) != JPIP_OK) {
            ck_abort_msg("add %u: %s", (unsigned)i, err.msg);
        }
    }
    ck_assert_uint_eq(jpip_model_runs(m), 2);
    ck_assert_uint_eq(jpip_model_size(m), jpip_model_bytes_for(2));
    ck_assert_uint_eq(jpip_model_held(m, NULL, 2, 0, 1500000), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 2, 0, 1000000), 0);
}
END_TEST

/* Random add/cut on a small id space against a reference array. */
START_TEST(random_against_reference)
{
    enum { IDS = 200, KEYS = 4 };
    static apr_uint64_t ref[KEYS][IDS];
    static const unsigned kcls[KEYS] = {0, 0, 2, 8};
    static const apr_uint64_t kcsn[KEYS] = {0, 1, 0, 0};
    static const apr_uint64_t vals[] = {0, 10, 20, 30, JPIP_MODEL_COMPLETE};
    apr_uint64_t x = 99991;
    int inv;

    for (inv = 0; inv < 2; inv++) {
        jpip_model_t *m = new_model(4096, inv);
        jpip_err_t err;
        int it, k, i;
        apr_size_t r;

        for (k = 0; k < KEYS; k++) {
            for (i = 0; i < IDS; i++) {
                ref[k][i] = inv ? JPIP_MODEL_COMPLETE : 0;
            }
        }
        for (it = 0; it < 20000; it++) {
            int key, a, b, op;
            apr_uint64_t v;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            key = (int)(x % KEYS);
            a = (int)((x >> 8) % IDS);
            b = a + (int)((x >> 20) % ((x >> 40) % 4 == 0 ? 40 : 3));
            if (b >= IDS) {
                b = IDS - 1;
            }
            op = (int)((x >> 30) % 2);
            v = vals[(x >> 33) % 5];
            if (op == 0) {
                if (jpip_model_add_range(m, NULL, kcls[key], kcsn[key], (apr_uint64_t)a,
                                         (apr_uint64_t)b, v, &err) != JPIP_OK) {
                    ck_abort_msg("%s", err.msg);
                }
                for (i = a; i <= b; i++) {
                    ref[key][i] = ref[key][i] > v ? ref[key][i] : v;
                }
            } else {
                if (jpip_model_cut_range(m, NULL, kcls[key], kcsn[key], (apr_uint64_t)a,
                                         (apr_uint64_t)b, v, &err) != JPIP_OK) {
                    ck_abort_msg("%s", err.msg);
                }
                for (i = a; i <= b; i++) {
                    ref[key][i] = ref[key][i] < v ? ref[key][i] : v;
                }
            }
            if (it % 500 == 0 || it == 19999) {
                for (k = 0; k < KEYS; k++) {
                    for (i = 0; i < IDS; i++) {
                        if (jpip_model_held(m, NULL, kcls[k], kcsn[k], (apr_uint64_t)i) !=
                            ref[k][i]) {
                            ck_abort_msg("iteration %d key %d id %d: held differs", it, k, i);
                        }
                    }
                }
                /* runs are sorted, disjoint, never the default, never
                 * mergeable with their neighbour */
                for (r = 0; r < jpip_model_runs(m); r++) {
                    jpip_model_run_t cur, prev;
                    jpip_model_run(m, r, &cur);
                    ck_assert_uint_ne(cur.bytes, inv ? JPIP_MODEL_COMPLETE : 0);
                    ck_assert_uint_le(cur.first, cur.last);
                    if (r > 0) {
                        jpip_model_run(m, r - 1, &prev);
                        if (prev.cls == cur.cls && prev.csn == cur.csn) {
                            ck_assert_uint_lt(prev.last, cur.first);
                            ck_assert(!(prev.last + 1 == cur.first && prev.bytes == cur.bytes));
                        } else {
                            ck_assert(prev.cls < cur.cls ||
                                      (prev.cls == cur.cls && prev.csn < cur.csn));
                        }
                    }
                }
            }
        }
    }
}
END_TEST

/* One message at a time, as a session recorded them before batching. */
static jpip_code_t record_one_by_one(jpip_model_t *m, const jpip_model_sent_t *s, apr_size_t n,
                                     jpip_err_t *err)
{
    apr_size_t i;

    for (i = 0; i < n; i++) {
        apr_uint64_t held = jpip_model_held(m, NULL, s[i].cls, s[i].csn, s[i].id);
        if (held != JPIP_MODEL_COMPLETE && s[i].off <= held &&
            jpip_model_add(m, NULL, s[i].cls, s[i].csn, s[i].id, s[i].off + s[i].len, s[i].complete,
                           err) != JPIP_OK) {
            return JPIP_E_LIMIT;
        }
    }
    return JPIP_OK;
}

/* Batches of messages, recorded in one pass, give the same model as the
 * same messages added one by one: runs split, merged, new ranges, holes
 * skipped, extended classes folded, several messages of one bin. */
/* jpip_model_held_row against a search per bin: rows of ids with
 * various steps over models with sparse runs of other classes and
 * codestreams around them, and inverted models. */
START_TEST(held_row_matches_held)
{
    apr_uint64_t x = 424242;
    int inv, it;

    for (inv = 0; inv < 2; inv++) {
        for (it = 0; it < 300; it++) {
            jpip_model_t *m = new_model(4096, inv);
            jpip_err_t err;
            int j, q;

            for (j = 0; j < 40; j++) {
                apr_uint64_t id, len;
                unsigned cls;

                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                id = x % 300;
                cls = (x >> 20) % 3 == 0 ? 2 : 0;
                len = (x >> 24) % 3 == 0 ? 0 : 1 + (x >> 26) % 50;
                /* 0 bytes of a bin: a run that holds nothing */
                ck_assert_int_eq(
                    jpip_model_add(m, NULL, cls, (x >> 30) % 2, id, len, (x >> 40) % 5 == 0, &err),
                    JPIP_OK);
            }
            for (q = 0; q < 50; q++) {
                apr_uint64_t id, step, k, held[30];
                apr_size_t n;

                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                id = x % 320;
                step = 1 + (x >> 12) % 12;
                n = (apr_size_t)((x >> 20) % 30);
                jpip_model_held_row(m, NULL, 0, (x >> 40) % 2, id, step, n, held);
                for (k = 0; k < n; k++) {
                    ck_assert_uint_eq(held[k],
                                      jpip_model_held(m, NULL, 0, (x >> 40) % 2, id + k * step));
                }
            }
        }
    }
}
END_TEST

START_TEST(record_batch_matches_adds)
{
    enum { IDS = 300, BATCH = 64 };
    static const unsigned cls[] = {0, 1, 2, 4, 5, 6, 8};
    apr_uint64_t x = 7777;
    int round, inv;

    for (inv = 0; inv < 2; inv++) {
        jpip_model_t *a = new_model(8192, inv), *b = new_model(8192, inv);
        jpip_err_t err;
        unsigned c;

        /* an inverted model holds everything: make it lack the low ids */
        for (c = 0; inv && c < 7; c++) {
            ck_assert_int_eq(jpip_model_cut_range(a, NULL, cls[c], 0, 0, IDS / 2, 0, &err),
                             JPIP_OK);
            ck_assert_int_eq(jpip_model_cut_range(a, NULL, cls[c], 1, 0, IDS / 2, 0, &err),
                             JPIP_OK);
        }
        ck_assert_int_eq(jpip_model_copy(b, a, &err), JPIP_OK);
        for (round = 0; round < 400; round++) {
            jpip_model_sent_t s[BATCH];
            apr_size_t n = 0, r;
            unsigned i;

            apr_uint64_t next = 0, step = 1, left = 0;

            while (n < BATCH) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s[n].cls = cls[x % 7];
                s[n].csn = (x >> 8) % 2;
                s[n].id = (x >> 12) % IDS;
                if (round % 2 == 1) {
                    /* ascending stretches, as a plan's rows come: ids
                     * step apart in one bin class, which may meet
                     * another stretch's bins */
                    if (left == 0) {
                        next = s[n].id;
                        step = 1 + (x >> 60) % 3;
                        left = 1 + (x >> 20) % 12;
                    } else {
                        s[n].cls = s[n - 1].cls;
                        s[n].csn = s[n - 1].csn;
                    }
                    s[n].id = next % IDS;
                    next += step;
                    left--;
                }
                s[n].off =
                    (x >> 24) % 3 == 0 ? 0 : jpip_model_held(a, NULL, s[n].cls, s[n].csn, s[n].id);
                if (s[n].off == JPIP_MODEL_COMPLETE || (x >> 28) % 11 == 0) {
                    s[n].off = (x >> 32) % 50; /* may leave a hole */
                }
                s[n].len = (x >> 40) % 40;
                s[n].complete = (x >> 50) % 4 == 0;
                s[n].layers = 0;
                n++;
                /* a later message of the same bin, as len-limited answers send */
                if (n < BATCH && (x >> 55) % 5 == 0) {
                    s[n] = s[n - 1];
                    s[n].off = s[n - 1].off + s[n - 1].len;
                    s[n].len = 7;
                    s[n].complete = 0;
                    s[n - 1].complete = 0;
                    n++;
                }
            }
            ck_assert_int_eq(record_one_by_one(a, s, n, &err), JPIP_OK);
            ck_assert_int_eq(jpip_model_record(b, NULL, s, n, &err), JPIP_OK);
            ck_assert_uint_eq(jpip_model_runs(a), jpip_model_runs(b));
            for (r = 0; r < jpip_model_runs(a); r++) {
                jpip_model_run_t ra, rb;
                jpip_model_run(a, r, &ra);
                jpip_model_run(b, r, &rb);
                ck_assert_msg(ra.cls == rb.cls && ra.csn == rb.csn && ra.first == rb.first &&
                                  ra.last == rb.last && ra.bytes == rb.bytes,
                              "round %d run %u differs", round, (unsigned)r);
            }
            for (i = 0; i < 7; i++) {
                ck_assert_uint_eq(jpip_model_held(a, NULL, cls[i], 1, IDS - 1),
                                  jpip_model_held(b, NULL, cls[i], 1, IDS - 1));
            }
        }
        ck_assert_uint_gt(jpip_model_runs(a), inv ? 5 : 50); /* real models were built */
    }
}
END_TEST

/* A batch that does not fit leaves the model as it was. */
START_TEST(record_batch_all_or_nothing)
{
    jpip_model_t *m = new_model(4, 0);
    jpip_model_sent_t s[8];
    jpip_err_t err;
    apr_size_t i;

    memset(s, 0, sizeof(s));
    for (i = 0; i < 3; i++) {
        s[i].id = 10 * i; /* three separate runs */
        s[i].complete = 1;
    }
    ck_assert_int_eq(jpip_model_record(m, NULL, s, 3, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_runs(m), 3);
    for (i = 0; i < 8; i++) {
        s[i].id = 100 + 2 * i; /* eight more: beyond the capacity */
    }
    ck_assert_int_eq(jpip_model_record(m, NULL, s, 8, &err), JPIP_E_LIMIT);
    ck_assert_uint_eq(jpip_model_runs(m), 3);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 100), 0);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 20), JPIP_MODEL_COMPLETE);
    ck_assert_int_eq(jpip_model_record(m, NULL, s, 0, &err), JPIP_OK);
}
END_TEST

START_TEST(apply_model_items)
{
    jpip_model_t *m = new_model(64, 0);
    jpip_err_t err;
    apr_size_t runs;

    ck_assert_int_eq(jpip_model_apply(m, parse_ok("Hm,H*,M0,P0,P1:1024,P5:L2", 0), NULL, &err),
                     JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 6, 0, 0), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 2, 0, 123456789), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 8, 0, 0), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 8, 0, 1), 0);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 0), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 1), 1024);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 5), 0); /* :L unresolvable: not assumed */
    ck_assert_uint_eq(jpip_model_held(m, NULL, 6, 1, 0), 0); /* codestream 0 only */

    /* subtractive: whole bin, down to a byte count; session persists */
    ck_assert_int_eq(jpip_model_add_range(m, NULL, 0, 0, 10, 99, JPIP_MODEL_COMPLETE, &err),
                     JPIP_OK);
    runs = jpip_model_runs(m);
    ck_assert_int_eq(jpip_model_apply(m, parse_ok("-P37,-P40:100,-H3,-P1:2000", 0), NULL, &err),
                     JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 37), 0);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 36), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 38), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 40), 100);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 2, 0, 3), 0);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 2, 0, 4), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 1), 1024); /* cut to 2000: still 1024 */
    ck_assert_uint_gt(jpip_model_runs(m), runs);
    /* -P* drops every precinct; unresolvable -:L cuts the whole bin */
    ck_assert_int_eq(jpip_model_apply(m, parse_ok("-P*,-T*:L1", 0), NULL, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 38), 0);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 0), 0);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 2, 0, 4), JPIP_MODEL_COMPLETE);
}
END_TEST

/* A fake target: 2 tiles, 3 components, 3 resolutions of 4 precincts each;
 * precinct I = t + (c + s*3)*2 with s = r*4 + p; layer l is 100 bytes, 5
 * layers. */
/* The fake target: 72 precincts per codestream (2 tiles, 3 components,
 * 3 resolutions, 4 precincts), five layers of 100 bytes each. */
static apr_uint64_t fake_layer_bytes(void *ctx, apr_uint64_t csn, apr_uint64_t id, unsigned layers)
{
    (void)ctx;
    (void)csn;
    if (id >= 72) {
        return 0; /* not a precinct of the target */
    }
    return layers >= 5 ? JPIP_MODEL_COMPLETE : (apr_uint64_t)layers * 100;
}

static int in_range(const jpip_model_range_t *r, apr_uint64_t v)
{
    return v >= r->first && v <= r->last;
}

static jpip_code_t fake_implicit(void *ctx, apr_uint64_t csn, const jpip_model_range_t *t,
                                 const jpip_model_range_t *c, const jpip_model_range_t *r,
                                 const jpip_model_range_t *p, jpip_model_visit_fn visit, void *vctx,
                                 jpip_err_t *err)
{
    apr_uint64_t tt, cc, rr, pp;

    for (tt = 0; tt < 2; tt++) {
        for (cc = 0; cc < 3; cc++) {
            for (rr = 0; rr < 3; rr++) {
                for (pp = 0; pp < 4; pp++) {
                    if (in_range(t, tt) && in_range(c, cc) && in_range(r, rr) && in_range(p, pp)) {
                        jpip_code_t rc = visit(vctx, tt + (cc + (rr * 4 + pp) * 3) * 2, err);
                        if (rc != JPIP_OK) {
                            return rc;
                        }
                    }
                }
            }
        }
    }
    return JPIP_OK;
}

static apr_uint64_t fake_id(int t, int c, int r, int p)
{
    return (apr_uint64_t)(t + (c + (r * 4 + p) * 3) * 2);
}

START_TEST(resolver_layers_and_implicit)
{
    jpip_model_resolver_t res = {NULL, 4, fake_layer_bytes, fake_implicit, 0};
    jpip_model_t *m = new_model(256, 0);
    jpip_err_t err;
    int p;

    ck_assert_int_eq(jpip_model_apply(m, parse_ok("P5:L2,t0c1r2:L3", 0), &res, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, 5), 200);
    for (p = 0; p < 4; p++) {
        ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, fake_id(0, 1, 2, p)), 300);
        ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, fake_id(1, 1, 2, p)), 0);
        ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, fake_id(0, 1, 1, p)), 0);
    }
    /* P*:L5 is every precinct, complete */
    ck_assert_int_eq(jpip_model_apply(m, parse_ok("[1],P*:L5", 0), &res, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 1, fake_id(1, 2, 2, 3)), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 1, 72), 0); /* not a precinct of the target */
    /* subtractive implicit, down to one layer */
    ck_assert_int_eq(jpip_model_apply(m, parse_ok("[1],-t1r2p3:L1", 0), &res, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 1, fake_id(1, 2, 2, 3)), 100);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 1, fake_id(1, 2, 2, 2)), JPIP_MODEL_COMPLETE);
    /* codestream ranges are clipped to the target's 4 codestreams */
    ck_assert_int_eq(jpip_model_apply(m, parse_ok("[2-],Hm,[*],H0", 0), &res, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(m, &res, 6, 1, 0), 0);
    ck_assert_uint_eq(jpip_model_held(m, &res, 6, 2, 0), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, &res, 6, 3, 0), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, &res, 6, 4, 0), 0);
    ck_assert_uint_eq(jpip_model_held(m, &res, 2, 0, 0), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, &res, 2, 3, 0), JPIP_MODEL_COMPLETE);
    /* visit bound */
    res.max_visits = 10;
    ck_assert_int_eq(jpip_model_apply(m, parse_ok("t*", 0), &res, &err), JPIP_E_LIMIT);
    ck_assert_ptr_nonnull(strstr(err.msg, "position 0"));
}
END_TEST

START_TEST(unresolvable_stays_safe)
{
    jpip_model_t *m = new_model(64, 0);
    jpip_err_t err;

    ck_assert_int_eq(jpip_model_add_range(m, NULL, 0, 0, 0, 1000, JPIP_MODEL_COMPLETE, &err),
                     JPIP_OK);
    /* an implicit addition without a resolver assumes nothing */
    ck_assert_int_eq(jpip_model_apply(m, parse_ok("t0r1,[0]P2000:L3", 0), NULL, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 2000), 0);
    /* an implicit subtraction without a resolver drops every precinct */
    ck_assert_int_eq(jpip_model_apply(m, parse_ok("-t0r1", 0), NULL, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 7), 0);
    ck_assert_uint_eq(jpip_model_runs(m), 0);
}
END_TEST

START_TEST(need_builds_inverted_model)
{
    jpip_model_resolver_t res = {NULL, 1, fake_layer_bytes, fake_implicit, 0};
    jpip_model_t *m;
    jpip_err_t err;
    int p;

    ck_assert_int_eq(
        jpip_model_build(pool, 64, NULL, parse_ok("Hm,P5,P7:L2,t0c0r1", 1), &res, &m, &err),
        JPIP_OK);
    ck_assert(jpip_model_inverted(m));
    ck_assert_uint_eq(jpip_model_held(m, &res, 6, 0, 0), 0);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, 5), 0);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, 6), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, 7), 0);
    ck_assert_uint_eq(jpip_model_held(m, &res, 2, 0, 0), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, &res, 8, 0, 0), JPIP_MODEL_COMPLETE);
    for (p = 0; p < 4; p++) {
        ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, fake_id(0, 0, 1, p)), 0);
    }
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, fake_id(0, 0, 2, 0)), JPIP_MODEL_COMPLETE);
    /* the server then records what it sends, as in a session */
    ck_assert_int_eq(jpip_model_add(m, NULL, 0, 0, 5, 0, 1, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, 5), JPIP_MODEL_COMPLETE);

    /* no need: the empty model plus the model items */
    ck_assert_int_eq(jpip_model_build(pool, 64, parse_ok("Hm", 0), NULL, &res, &m, &err), JPIP_OK);
    ck_assert(!jpip_model_inverted(m));
    ck_assert_uint_eq(jpip_model_held(m, &res, 6, 0, 0), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, 0), 0);
}
END_TEST

/* The forms real clients write: ranges of bin ids (OpenHTJ2K compresses
 * its cache list into "H0-11,M0,Hm", "P0-5") and OpenHTJ2K's "Ht"/"Hp"
 * spellings of tile header and precinct bins. Each reading covers exactly
 * the bins named, never a neighbour the client did not list. */
START_TEST(client_forms)
{
    jpip_model_resolver_t res = {NULL, 1, fake_layer_bytes, fake_implicit, 0};
    jpip_model_spec_t *s = parse_ok("H0-11,M0,Hm,P0-5,Ht*,Ht3,Hp7-8:100", 0);
    const jpip_model_item_t *it = s->items;
    jpip_model_t *m = new_model(64, 0);
    jpip_err_t err;
    apr_uint64_t id;

    ck_assert_uint_eq(s->nitems, 7);
    ck_assert_int_eq(it[0].kind, JPIP_MODEL_ITEM_TILEHDR);
    ck_assert_uint_eq(it[0].id, 0);
    ck_assert_uint_eq(it[0].id_last, 11);
    ck_assert_int_eq(it[1].kind, JPIP_MODEL_ITEM_META);
    ck_assert_uint_eq(it[1].id_last, 0);
    ck_assert_int_eq(it[2].kind, JPIP_MODEL_ITEM_MAIN);
    ck_assert_int_eq(it[3].kind, JPIP_MODEL_ITEM_PRECINCT);
    ck_assert_uint_eq(it[3].id_last, 5);
    ck_assert_int_eq(it[4].kind, JPIP_MODEL_ITEM_TILEHDR);
    ck_assert(it[4].all);
    ck_assert_int_eq(it[5].kind, JPIP_MODEL_ITEM_TILEHDR);
    ck_assert_uint_eq(it[5].id, 3);
    ck_assert_uint_eq(it[5].id_last, 3);
    ck_assert_int_eq(it[6].kind, JPIP_MODEL_ITEM_PRECINCT);
    ck_assert_uint_eq(it[6].id, 7);
    ck_assert_uint_eq(it[6].id_last, 8);
    ck_assert_uint_eq(it[6].bytes, 100);

    /* a range holds exactly its ends and what lies between */
    ck_assert_int_eq(jpip_model_apply(m, parse_ok("P3-5,H2-3,M1-2:10", 0), NULL, &err), JPIP_OK);
    for (id = 0; id < 10; id++) {
        ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, id),
                          id >= 3 && id <= 5 ? JPIP_MODEL_COMPLETE : 0);
        ck_assert_uint_eq(jpip_model_held(m, &res, 2, 0, id),
                          id >= 2 && id <= 3 ? JPIP_MODEL_COMPLETE : 0);
        ck_assert_uint_eq(jpip_model_held(m, &res, 8, 0, id), id >= 1 && id <= 2 ? 10 : 0);
    }
    /* subtractive ranges, and a range of layers resolved bin by bin */
    ck_assert_int_eq(jpip_model_apply(m, parse_ok("-P4-5,P10-12:L2", 0), &res, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, 3), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, 4), 0);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, 5), 0);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, 9), 0);
    for (id = 10; id <= 12; id++) {
        ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, id), 200);
    }
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, 13), 0);
    /* without a resolver a range of layers assumes nothing */
    m = new_model(64, 0);
    ck_assert_int_eq(jpip_model_apply(m, parse_ok("P1-3:L2", 0), NULL, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, 2), 0);
    /* need: the range is what the client lacks */
    ck_assert_int_eq(jpip_model_build(pool, 64, NULL, parse_ok("P2-3,Ht1", 1), &res, &m, &err),
                     JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, 1), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, 2), 0);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, 3), 0);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, 4), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, &res, 2, 0, 1), 0);
    ck_assert_uint_eq(jpip_model_held(m, &res, 2, 0, 0), JPIP_MODEL_COMPLETE);
    /* a range of layers is one run of a layer count, however many bins it
     * spans (no bin is visited: the visit bound does not apply) */
    res.max_visits = 8;
    m = new_model(64, 0);
    ck_assert_int_eq(jpip_model_apply(m, parse_ok("P0-100:L1", 0), &res, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_runs(m), 1);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, 0), 100);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, 71), 100);
    ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, 72), 0); /* not a precinct */
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 5), 0);  /* unresolved: nothing */
}
END_TEST

START_TEST(client_forms_rejects)
{
    static const struct {
        const char *v;
        const char *msg;
    } bad[] = {
        {"P5-", "last bin id"}, {"P5-3", "range ends before"},
        {"P-", "bin id"},       {"H1-x", "last bin id"},
        {"Hx", "bin id"},       {"Htm", "bin id"},
        {"Hp", "bin id"},       {"P1-2-3", "','"},
        {"Hm1", "','"},         {"M0-*", "last bin id"},
    };
    unsigned i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        jpip_model_spec_t *spec;
        jpip_err_t err;
        jpip_code_t rc = jpip_model_parse(pool, bad[i].v, 0, 0, &spec, &err);

        ck_assert_msg(rc == JPIP_E_REQUEST, "'%s' accepted", bad[i].v);
        ck_assert_msg(strstr(err.msg, bad[i].msg) != NULL, "'%s': message '%s' lacks '%s'",
                      bad[i].v, err.msg, bad[i].msg);
    }
}
END_TEST

START_TEST(serialize_round_trip)
{
    jpip_model_t *m = new_model(1000, 0), *m2;
    jpip_err_t err;
    apr_uint64_t i;
    apr_size_t len, size;
    void *buf, *buf2, *small;

    for (i = 0; i < 300; i++) {
        ck_assert_int_eq(
            jpip_model_add(m, NULL, (unsigned)(i % 3) * 2, i % 5, i * 7, i, i % 4 == 0, &err),
            JPIP_OK);
    }
    size = jpip_model_size(m);
    ck_assert_uint_eq(size, jpip_model_bytes_for(jpip_model_runs(m)));
    buf = apr_palloc(pool, size);
    ck_assert_int_eq(jpip_model_serialize(m, buf, size - 1, &len, &err), JPIP_E_LIMIT);
    ck_assert_int_eq(jpip_model_serialize(m, buf, size, &len, &err), JPIP_OK);
    ck_assert_uint_eq(len, size);
    /* load into a bigger buffer: capacity from the buffer */
    buf2 = apr_palloc(pool, jpip_model_bytes_for(2000));
    ck_assert_int_eq(jpip_model_load(buf2, jpip_model_bytes_for(2000), buf, len, &m2, &err),
                     JPIP_OK);
    ck_assert_uint_eq(jpip_model_capacity(m2), 2000);
    ck_assert_uint_eq(jpip_model_runs(m2), jpip_model_runs(m));
    for (i = 0; i < 2200; i++) {
        unsigned cls = (unsigned)(i % 3) * 2;
        ck_assert_uint_eq(jpip_model_held(m2, NULL, cls, i % 5, i),
                          jpip_model_held(m, NULL, cls, i % 5, i));
    }
    /* in place (e.g. a shared segment) */
    ck_assert_int_eq(jpip_model_load(buf, size, buf, len, &m2, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(m2, NULL, 0, 0, 0), JPIP_MODEL_COMPLETE);
    /* too small a destination */
    small = apr_palloc(pool, jpip_model_bytes_for(10));
    ck_assert_int_eq(jpip_model_load(small, jpip_model_bytes_for(10), buf, len, &m2, &err),
                     JPIP_E_LIMIT);
    /* corruption is refused */
    {
        unsigned char *c = apr_pmemdup(pool, buf, len);
        ck_assert_int_eq(jpip_model_load(buf2, jpip_model_bytes_for(2000), c, 10, &m2, &err),
                         JPIP_E_FORMAT);
        ck_assert_int_eq(jpip_model_load(buf2, jpip_model_bytes_for(2000), c, len - 1, &m2, &err),
                         JPIP_E_FORMAT);
        c[0] ^= 1;
        ck_assert_int_eq(jpip_model_load(buf2, jpip_model_bytes_for(2000), c, len, &m2, &err),
                         JPIP_E_FORMAT);
        c[0] ^= 1;
        /* swap two runs: out of order */
        {
            unsigned char tmp[40];
            apr_size_t h = jpip_model_bytes_for(0), r = (len - h) / jpip_model_runs(m);
            ck_assert_uint_eq(r, 40);
            memcpy(tmp, c + h, r);
            memcpy(c + h, c + h + r, r);
            memcpy(c + h + r, tmp, r);
        }
        ck_assert_int_eq(jpip_model_load(buf2, jpip_model_bytes_for(2000), c, len, &m2, &err),
                         JPIP_E_FORMAT);
        ck_assert_ptr_nonnull(strstr(err.msg, "run 1"));
    }
}
END_TEST

START_TEST(size_bound_enforced)
{
    jpip_model_t *m = new_model(4, 0), *cp;
    jpip_err_t err;
    unsigned char before[512], after[512];
    apr_size_t n1, n2;
    apr_uint64_t i;

    for (i = 0; i < 4; i++) {
        ck_assert_int_eq(jpip_model_add(m, NULL, 0, 0, i * 10, 0, 1, &err), JPIP_OK);
    }
    ck_assert_int_eq(jpip_model_serialize(m, before, sizeof(before), &n1, &err), JPIP_OK);
    ck_assert_int_eq(jpip_model_add(m, NULL, 0, 0, 100, 0, 1, &err), JPIP_E_LIMIT);
    ck_assert_ptr_nonnull(strstr(err.msg, "more than 4 runs"));
    /* adjacent additions merge and still fit */
    ck_assert_int_eq(jpip_model_add(m, NULL, 0, 0, 31, 0, 1, &err), JPIP_OK);
    ck_assert_uint_eq(jpip_model_runs(m), 4);
    /* splitting a run needs room: refused, model unchanged */
    ck_assert_int_eq(jpip_model_serialize(m, before, sizeof(before), &n1, &err), JPIP_OK);
    ck_assert_int_eq(jpip_model_cut_range(m, NULL, 0, 0, 31, 31, 0, &err), JPIP_OK);
    ck_assert_int_eq(jpip_model_add(m, NULL, 0, 0, 31, 0, 1, &err), JPIP_OK);
    ck_assert_int_eq(jpip_model_apply(m, parse_ok("P50,P60,-P0", 0), NULL, &err), JPIP_E_LIMIT);
    ck_assert_int_eq(jpip_model_serialize(m, after, sizeof(after), &n2, &err), JPIP_OK);
    ck_assert_uint_eq(n1, n2);
    ck_assert(memcmp(before, after, n1) == 0);
    /* buffers too small */
    ck_assert_int_eq(jpip_model_init(before, 8, 0, &cp, &err), JPIP_E_LIMIT);
    ck_assert_int_eq(jpip_model_create(pool, 0, 0, &cp, &err), JPIP_E_LIMIT);
    /* copy into a smaller model */
    ck_assert_int_eq(jpip_model_create(pool, 2, 0, &cp, &err), JPIP_OK);
    ck_assert_int_eq(jpip_model_copy(cp, m, &err), JPIP_E_LIMIT);
}
END_TEST

START_TEST(forget_codestream)
{
    jpip_model_t *m = new_model(64, 0);
    jpip_err_t err;

    ck_assert_int_eq(jpip_model_apply(m, parse_ok("M0,[0],Hm,P1,[1],Hm,P1", 0), NULL, &err),
                     JPIP_OK);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 6, 0, 0), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 6, 1, 0), 0); /* csn 1: beyond the one codestream */
    ck_assert_int_eq(jpip_model_add(m, NULL, 6, 1, 0, 0, 1, &err), JPIP_OK);
    ck_assert_int_eq(jpip_model_add(m, NULL, 6, 0, 0, 0, 1, &err), JPIP_OK);
    jpip_model_forget_codestream(m, 0);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 6, 0, 0), 0);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 0, 1), 0);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 6, 1, 0), JPIP_MODEL_COMPLETE);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 8, 0, 0), JPIP_MODEL_COMPLETE);
    jpip_model_clear(m, 1);
    ck_assert_uint_eq(jpip_model_runs(m), 0);
    ck_assert_uint_eq(jpip_model_held(m, NULL, 0, 9, 9), JPIP_MODEL_COMPLETE);
}
END_TEST

/* Random strings over the grammar's alphabet: parse never crashes, and
 * what parses applies (with and without a resolver) within its bounds. */
START_TEST(grammar_fuzz)
{
    static const char alphabet[] = "HmPTMtcrp0123456789*-:L[];,x ";
    jpip_model_resolver_t res = {NULL, 3, fake_layer_bytes, fake_implicit, 5000};
    apr_uint64_t x = 4242;
    char buf[64];
    int it, ok = 0;

    for (it = 0; it < 20000; it++) {
        jpip_model_spec_t *spec;
        jpip_err_t err;
        jpip_code_t rc;
        int n, i;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        n = (int)(x % 24);
        for (i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = alphabet[x % (sizeof(alphabet) - 1)];
        }
        buf[n] = '\0';
        rc = jpip_model_parse(pool, buf, (int)(x >> 60) & 1, 8, &spec, &err);
        if (rc != JPIP_OK && rc != JPIP_E_REQUEST && rc != JPIP_E_LIMIT) {
            ck_abort_msg("'%s': code %d", buf, rc);
        }
        if (rc == JPIP_OK) {
            jpip_model_t *m = new_model(32, (x >> 50) & 1);
            ok++;
            rc = jpip_model_apply(m, spec, (x >> 51) & 1 ? &res : NULL, &err);
            if (rc != JPIP_OK && rc != JPIP_E_LIMIT) {
                ck_abort_msg("'%s': apply code %d: %s", buf, rc, err.msg);
            }
        }
    }
    ck_assert_int_gt(ok, 100);
}
END_TEST

/* Bit flips in a serialised model: load refuses or accepts a model that
 * still answers queries. */
START_TEST(load_fuzz)
{
    jpip_model_t *m = new_model(64, 0), *m2;
    jpip_err_t err;
    apr_size_t len, i;
    unsigned char *ser, *dst;
    apr_uint64_t x = 777;
    int it;

    for (i = 0; i < 40; i++) {
        ck_assert_int_eq(
            jpip_model_add(m, NULL, (unsigned)(i % 5) * 2, i % 2, i * 3, i, i % 3 == 0, &err),
            JPIP_OK);
    }
    ser = apr_palloc(pool, jpip_model_size(m));
    ck_assert_int_eq(jpip_model_serialize(m, ser, jpip_model_size(m), &len, &err), JPIP_OK);
    dst = apr_palloc(pool, jpip_model_bytes_for(64));
    for (it = 0; it < 20000; it++) {
        unsigned char *c = apr_pmemdup(pool, ser, len);
        int flips = 1 + it % 3, f;
        jpip_code_t rc;
        for (f = 0; f < flips; f++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c[x % len] ^= (unsigned char)(1u << ((x >> 32) % 8));
        }
        rc = jpip_model_load(dst, jpip_model_bytes_for(64), c, len, &m2, &err);
        if (rc == JPIP_OK) {
            jpip_model_held(m2, NULL, 0, 0, x % 200);
            if (jpip_model_add(m2, NULL, 2, 1, x % 200, 5, 0, &err) != JPIP_OK &&
                err.code != JPIP_E_LIMIT) {
                ck_abort_msg("add after load: %s", err.msg);
            }
        } else if (rc != JPIP_E_FORMAT && rc != JPIP_E_LIMIT) {
            ck_abort_msg("load code %d", rc);
        }
    }
}
END_TEST

/* The len growth of a session over a whole 32768x32768 image in a model of
 * a session's default size (JPIPSessionMemory 64M over 256 sessions): 3
 * components, 9 resolutions, 128x128 precincts (262143 precinct bins),
 * five layers each, sent layer by layer in answers cut at growing lengths
 * (each half as long again as the one before, as streaming clients ask),
 * each answer's messages recorded in batches. Every bin of a layer round
 * holds a different number of bytes, so a model of byte counts would need
 * a run per bin; one of layer counts needs a few runs per answer. No
 * answer loses anything for room (no bin forgotten), no byte is sent
 * twice, and the model stays a few runs all the way. */
#define BIG_LAYERS 5
#define BIG_BINS 262143u
static apr_uint64_t big_layer_end(apr_uint64_t id, unsigned l)
{
    return (apr_uint64_t)(l + 1) * (40 + (id * 2654435761u) % 200);
}

static apr_uint64_t big_layer_bytes(void *ctx, apr_uint64_t csn, apr_uint64_t id, unsigned layers)
{
    (void)ctx;
    if (csn != 0 || id >= BIG_BINS || layers == 0) {
        return 0;
    }
    return layers >= BIG_LAYERS ? JPIP_MODEL_COMPLETE : big_layer_end(id, layers - 1);
}

START_TEST(whole_32768_image_at_session_size)
{
    jpip_model_resolver_t res = {NULL, 1, big_layer_bytes, NULL, 0};
    apr_size_t size = (64u << 20) / 256 - 256; /* the slot less its session header */
    apr_uint64_t nbins = 0, sent = 0, total, answer_len = 1000000, at = 0, dropped = 0;
    apr_uint64_t r, id;
    apr_size_t most = 0, answers = 0;
    unsigned l;
    void *buf = malloc(size);
    jpip_model_t *m;
    jpip_model_sent_t *msgs;
    jpip_err_t err;
    apr_size_t nm = 0, cap = 4096;

    for (r = 0; r < 9; r++) {
        apr_uint64_t side = (32768 >> (8 - r)) / 128;

        nbins += 3 * (side > 0 ? side * side : 1);
    }
    ck_assert_uint_eq(nbins, BIG_BINS);
    ck_assert_int_eq(jpip_model_init(buf, size, 0, &m, &err), JPIP_OK);
    msgs = malloc(cap * sizeof(*msgs));
    total = 0;
    for (id = 0; id < nbins; id++) {
        total += big_layer_end(id, BIG_LAYERS - 1);
    }
    /* the plan's order: layer by layer over every bin; an answer ends
     * after answer_len bytes; each answer is recorded in batches of up to
     * cap messages, then the spill goes back into the model */
    while (at < (apr_uint64_t)BIG_LAYERS * nbins) {
        apr_uint64_t budget = answer_len;
        jpip_model_t *spill = NULL;

        while (budget > 0 && at < (apr_uint64_t)BIG_LAYERS * nbins) {
            jpip_model_batch_t *b;

            nm = 0;
            while (nm < cap && budget > 0 && at < (apr_uint64_t)BIG_LAYERS * nbins) {
                apr_uint64_t held;

                l = (unsigned)(at / nbins);
                id = at % nbins;
                held = jpip_model_held(spill != NULL ? spill : m, &res, 0, 0, id);
                if (held != JPIP_MODEL_COMPLETE && held < big_layer_end(id, l)) {
                    apr_uint64_t end = big_layer_end(id, l);

                    if (end - held > budget) {
                        end = held + budget;
                    }
                    msgs[nm].cls = 0;
                    msgs[nm].csn = 0;
                    msgs[nm].id = id;
                    msgs[nm].off = held;
                    msgs[nm].len = end - held;
                    msgs[nm].complete = end == big_layer_end(id, BIG_LAYERS - 1);
                    /* a message that ends a layer says so, as the plan's do */
                    msgs[nm].layers = end == big_layer_end(id, l) ? l + 1 : 0;
                    budget -= end - held;
                    sent += end - held;
                    nm++;
                    if (end < big_layer_end(id, l)) {
                        break; /* cut inside the layer */
                    }
                }
                at++;
            }
            ck_assert_int_eq(jpip_model_batch_make(&b, msgs, nm, &err), JPIP_OK);
            ck_assert_msg(jpip_model_record_spill(m, &res, &spill, b, &err) == JPIP_OK, "%s",
                          err.msg);
            jpip_model_batch_free(b);
        }
        dropped += jpip_model_unspill(m, spill);
        answers++;
        if (jpip_model_size(m) > most) {
            most = jpip_model_size(m);
        }
        /* the next answer starts again from what the model says is held */
        at = 0;
        while (at < (apr_uint64_t)BIG_LAYERS * nbins) {
            apr_uint64_t held = jpip_model_held(m, &res, 0, 0, at % nbins);

            if (held != JPIP_MODEL_COMPLETE &&
                held < big_layer_end(at % nbins, (unsigned)(at / nbins))) {
                break;
            }
            at++;
        }
        answer_len = answer_len * 3 / 2;
    }
    for (id = 0; id < nbins; id += 997) {
        ck_assert_uint_eq(jpip_model_held(m, &res, 0, 0, id), JPIP_MODEL_COMPLETE);
    }
    ck_assert_uint_eq(jpip_model_runs(m), 1);
    printf("model of a whole 32768x32768 image (%" APR_UINT64_T_FMT " bins, %" APR_UINT64_T_FMT
           " bytes, %" APR_SIZE_T_FMT " answers): at most %" APR_SIZE_T_FMT
           " bytes on the way, %" APR_SIZE_T_FMT " at the end; %" APR_UINT64_T_FMT
           " bytes sent for it, %" APR_UINT64_T_FMT " bins forgotten\n",
           nbins, total, answers, most, jpip_model_size(m), sent, dropped);
    ck_assert_uint_eq(dropped, 0);
    ck_assert_uint_eq(sent, total); /* nothing twice */
    ck_assert_uint_le(most, jpip_model_bytes_for(8));
    free(msgs);
    free(buf);
}
END_TEST

/* Layer counts against a reference of bytes: random messages (some ending
 * a layer, some inside one, some leaving holes, some complete), recorded
 * in batches into a model of layer counts, and applied one by one to an
 * array of held bytes. Through the resolver the model says exactly what
 * the array says for every bin, after every batch; model additions and
 * cuts of layer counts and byte counts agree with the array too. */
#define REF_IDS 200
static apr_uint64_t ref_layer_end(apr_uint64_t id, unsigned l) /* l: 0-based */
{
    return (apr_uint64_t)(l + 1) * (10 + id % 7) + (l > 1 ? id % 3 : 0);
}

static apr_uint64_t ref_layer_bytes(void *ctx, apr_uint64_t csn, apr_uint64_t id, unsigned layers)
{
    (void)ctx;
    (void)csn;
    if (id >= REF_IDS || layers == 0) {
        return 0;
    }
    return layers >= 4 ? JPIP_MODEL_COMPLETE : ref_layer_end(id, layers - 1);
}

static apr_uint64_t ref_len(apr_uint64_t id)
{
    return ref_layer_end(id, 3);
}

START_TEST(layers_against_reference)
{
    jpip_model_resolver_t res = {NULL, 1, ref_layer_bytes, NULL, 0};
    apr_uint64_t ref[REF_IDS];
    jpip_model_t *m = new_model(4096, 0);
    apr_uint64_t x = 4242;
    jpip_err_t err;
    int round, layer_runs = 0;

    memset(ref, 0, sizeof(ref));
    for (round = 0; round < 3000; round++) {
        jpip_model_sent_t s[16];
        apr_size_t n = 0, i;
        apr_uint64_t id;

        while (n < 16) {
            apr_uint64_t h;
            unsigned l;

            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            id = (x >> 8) % REF_IDS;
            h = ref[id] == JPIP_MODEL_COMPLETE ? ref_len(id) : ref[id];
            l = (unsigned)((x >> 20) % 4);
            s[n].cls = 0;
            s[n].csn = 0;
            s[n].id = id;
            s[n].off = (x >> 24) % 9 == 0 ? (x >> 28) % 30 : h; /* may leave a hole */
            if ((x >> 34) % 3 == 0) {
                s[n].len = (x >> 36) % 25; /* ends anywhere */
            } else {
                /* ends a layer (or is nothing, when that layer is held) */
                s[n].len = ref_layer_end(id, l) > s[n].off ? ref_layer_end(id, l) - s[n].off : 0;
            }
            if (s[n].off + s[n].len > ref_len(id)) {
                s[n].len = ref_len(id) - s[n].off;
            }
            s[n].complete = s[n].off + s[n].len == ref_len(id);
            s[n].layers = 0;
            for (l = 0; l < 4; l++) {
                if (!s[n].complete && s[n].off + s[n].len == ref_layer_end(id, l)) {
                    s[n].layers = l + 1;
                }
            }
            n++;
        }
        /* the reference: one by one */
        for (i = 0; i < n; i++) {
            apr_uint64_t *h = &ref[s[i].id];

            if (*h != JPIP_MODEL_COMPLETE && s[i].off <= *h && s[i].off + s[i].len > *h) {
                *h = s[i].complete ? JPIP_MODEL_COMPLETE : s[i].off + s[i].len;
            }
        }
        ck_assert_int_eq(jpip_model_record(m, &res, s, n, &err), JPIP_OK);
        if (round % 500 == 499) {
            /* declared holdings and discards, in layers and in bytes */
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            id = (x >> 8) % REF_IDS;
            if (round % 1000 == 499) {
                apr_uint64_t k, last = id + 5 < REF_IDS ? id + 5 : REF_IDS - 1;

                ck_assert_int_eq(
                    jpip_model_cut_range(m, &res, 0, 0, id, last, JPIP_MODEL_LAYERS(1), &err),
                    JPIP_OK);
                for (k = id; k <= last; k++) {
                    apr_uint64_t e = ref_layer_end(k, 0);

                    /* a cut over many bins may keep less, never more */
                    ck_assert_uint_le(jpip_model_held(m, &res, 0, 0, k), e);
                    ref[k] = jpip_model_held(m, &res, 0, 0, k);
                }
            } else {
                ck_assert_int_eq(jpip_model_add(m, &res, 0, 0, id, JPIP_MODEL_LAYERS(2), 0, &err),
                                 JPIP_OK);
                if (ref[id] != JPIP_MODEL_COMPLETE && ref[id] < ref_layer_end(id, 1)) {
                    ref[id] = ref_layer_end(id, 1);
                }
            }
        }
        for (id = 0; id < REF_IDS; id++) {
            ck_assert_msg(jpip_model_held(m, &res, 0, 0, id) == ref[id],
                          "round %d bin %u: model %" APR_UINT64_T_FMT
                          ", reference %" APR_UINT64_T_FMT,
                          round, (unsigned)id, jpip_model_held(m, &res, 0, 0, id), ref[id]);
        }
        for (i = 0; i < jpip_model_runs(m); i++) {
            jpip_model_run_t run;

            jpip_model_run(m, i, &run);
            layer_runs += run.bytes != JPIP_MODEL_COMPLETE && run.bytes >= JPIP_MODEL_LAYERS(1);
        }
    }
    ck_assert_int_gt(layer_runs, 1000); /* layer counts were recorded */
    /* without a resolver a layer count is nothing held */
    for (x = 0; x < REF_IDS; x++) {
        apr_uint64_t h = jpip_model_held(m, NULL, 0, 0, x);

        ck_assert(h == 0 || h == ref[x]);
    }
}
END_TEST

static Suite *model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, grammar_examples);
    tcase_add_test(tc, grammar_rejects);
    tcase_add_test(tc, grammar_limit);
    tcase_add_test(tc, held_and_add);
    tcase_add_test(tc, million_ids_one_run);
    tcase_add_test(tc, random_against_reference);
    tcase_add_test(tc, held_row_matches_held);
    tcase_add_test(tc, record_batch_matches_adds);
    tcase_add_test(tc, record_batch_all_or_nothing);
    tcase_add_test(tc, apply_model_items);
    tcase_add_test(tc, resolver_layers_and_implicit);
    tcase_add_test(tc, unresolvable_stays_safe);
    tcase_add_test(tc, need_builds_inverted_model);
    tcase_add_test(tc, client_forms);
    tcase_add_test(tc, client_forms_rejects);
    tcase_add_test(tc, serialize_round_trip);
    tcase_add_test(tc, size_bound_enforced);
    tcase_add_test(tc, forget_codestream);
    tcase_add_test(tc, grammar_fuzz);
    tcase_add_test(tc, load_fuzz);
    tcase_add_test(tc, whole_32768_image_at_session_size);
    tcase_add_test(tc, layers_against_reference);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(model_suite, CK_ENV);
}
