/* Unit tests: renditions (rendition.c) and their use by the plan.
 *
 * A response that takes its precinct messages from the rendition must be
 * byte for byte the response made without it, for every kind of request
 * (whole frame, regions, reductions, layers, len, a client model), and
 * most of its messages must really come from the rendition. A rendition
 * that does not belong to the index, or whose table points outside the
 * file, is refused. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "fields.h"
#include "index.h"
#include "ixcache.h"
#include "rendition.h"
#include "request.h"
#include "serve.h"
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

typedef struct target_t {
    unsigned char *data;
    size_t size;
    jpip_src_t *src;
    jpip_index_t *ix;
    unsigned char *rdata; /* the rendition's bytes */
    size_t rsize;
    jpip_rend_t *rend;
} target_t;

static const char *generate(const char *name, int w, int h, int nc, const char *opts)
{
    char in[600];
    const char *out = apr_psprintf(pool, "%s/rend-%s.j2k", tu_tmpdir(), name);

    snprintf(in, sizeof(in), "%s/rend-%s.%s", tu_tmpdir(), name, nc == 1 ? "pgm" : "ppm");
    ck_assert_int_eq(tu_write_synth(in, w, h, nc, 11), 0);
    ck_assert_msg(tu_run("%s -i '%s' -o '%s' %s", tu_opj_compress(), in, out, opts) == 0,
                  "opj_compress %s failed", opts);
    return out;
}

/* Index path and write its rendition to a file; read it back. */
static void open_target(target_t *t, const char *path)
{
    const char *rpath = apr_pstrcat(pool, path, ".jprd", NULL);
    apr_file_t *f;
    jpip_err_t err;

    memset(t, 0, sizeof(*t));
    t->data = tu_read_file(pool, path, &t->size);
    ck_assert_ptr_nonnull(t->data);
    ck_assert_int_eq(jpip_src_open_mem(&t->src, pool, t->data, t->size, &err), JPIP_OK);
    ck_assert_msg(jpip_index_build(&t->ix, pool, t->src, NULL, NULL, &err) == JPIP_OK, "%s: %s",
                  path, err.msg);
    ck_assert_int_eq(
        apr_file_open(&f, rpath,
                      APR_FOPEN_CREATE | APR_FOPEN_TRUNCATE | APR_FOPEN_WRITE | APR_FOPEN_BINARY,
                      APR_FPROT_OS_DEFAULT, pool),
        APR_SUCCESS);
    ck_assert_msg(jpip_rend_write(t->ix, t->src, f, NULL, &err) == JPIP_OK, "%s", err.msg);
    apr_file_close(f);
    t->rdata = tu_read_file(pool, rpath, &t->rsize);
    ck_assert_ptr_nonnull(t->rdata);
    ck_assert_msg(jpip_rend_load(&t->rend, pool, t->ix, t->rdata, t->rsize, &err) == JPIP_OK, "%s",
                  err.msg);
}

static jpip_code_t buf_write(void *ctx, const void *data, apr_size_t len, jpip_err_t *err)
{
    (void)err;
    tu_buf_put(ctx, data, len);
    return JPIP_OK;
}

/* The body of the answer to q, with or without the rendition; *from_rend
 * counts the messages that came from it, *nrun the runs (rows of
 * neighbouring precincts sent as one range) among them. */
static tu_buf_t serve(target_t *t, const char *q, int use_rend, apr_uint64_t *from_rend,
                      apr_uint64_t *nmsg, apr_uint64_t *nrun)
{
    apr_array_header_t *f = NULL;
    jpip_request_t req;
    jpip_serve_opts_t o;
    jpip_serve_target_t st;
    jpip_response_t resp;
    jpip_msg_t msgs[16];
    apr_size_t n, i;
    jpip_err_t err;
    tu_buf_t b = tu_buf(pool);

    memset(&o, 0, sizeof(o));
    memset(&st, 0, sizeof(st));
    st.ix = t->ix;
    st.tid = "rend";
    st.rend = use_rend ? t->rend : NULL;
    ck_assert_msg(jpip_fields_parse(pool, q, strlen(q), NULL, &f, &err) == JPIP_OK, "%s", err.msg);
    ck_assert_msg(jpip_request_parse(pool, f, &req, &err) == JPIP_OK, "%s: %s", q, err.msg);
    ck_assert_msg(jpip_serve_prepare(pool, &st, &req, NULL, &o, &resp, &err) == JPIP_OK, "%s: %s",
                  q, err.msg);
    ck_assert_int_eq(resp.status, 200);
    /* count first (a dry run), then stream from the start */
    *from_rend = *nmsg = *nrun = 0;
    do {
        ck_assert_int_eq(jpip_plan_next(resp.plan, msgs, 16, &n, &err), JPIP_OK);
        for (i = 0; i < n; i++) {
            ck_assert_uint_ge(msgs[i].count, 1);
            /* a single message's body lies in its bin; a run's records
             * its bytes, headers included */
            if (msgs[i].count == 1) {
                ck_assert_uint_le(msgs[i].off + msgs[i].len, msgs[i].bin->len);
            } else {
                ck_assert_uint_eq(msgs[i].hdr_len, 0);
                ck_assert_uint_gt(msgs[i].len, msgs[i].bin[msgs[i].count - 1].len);
            }
            *from_rend += msgs[i].rend_off != JPIP_REND_NONE ? msgs[i].count : 0;
            *nmsg += msgs[i].count;
            *nrun += msgs[i].count > 1;
        }
    } while (n > 0);
    jpip_plan_rewind(resp.plan);
    ck_assert_msg(jpip_serve_stream(pool, &resp, t->ix, t->src, buf_write, &b, &err) == JPIP_OK,
                  "%s: %s", q, err.msg);
    return b;
}

/* Every query answers the same with and without the rendition. Returns
 * the share of messages that came from it over all queries, and in *runs
 * how many runs there were. */
static double same_answers(target_t *t, const char *what, const char *const *qs, size_t nq,
                           apr_uint64_t *runs)
{
    apr_uint64_t used = 0, total = 0;
    size_t i;

    *runs = 0;
    for (i = 0; i < nq; i++) {
        apr_uint64_t r0, n0, r1, n1, u0, u1;
        tu_buf_t a = serve(t, qs[i], 0, &r0, &n0, &u0);
        tu_buf_t b = serve(t, qs[i], 1, &r1, &n1, &u1);

        ck_assert_uint_eq(r0, 0);
        ck_assert_uint_eq(u0, 0);
        *runs += u1;
        ck_assert_uint_eq(n0, n1);
        ck_assert_msg(a.n == b.n && memcmp(a.p, b.p, a.n) == 0,
                      "%s: %s: the answer differs with the rendition (%zu vs %zu bytes)", what,
                      qs[i], (size_t)a.n, (size_t)b.n);
        used += r1;
        total += n1;
    }
    return total > 0 ? (double)used / (double)total : 0.0;
}

START_TEST(answers_unchanged)
{
    static const struct {
        const char *name;
        int w, h, nc;
        const char *opts;
    } gen[] = {
        {"rpcl", 300, 200, 3, "-n 4 -r 30,10,3 -c [64,64] -p RPCL"},
        {"tiles_plt", 333, 250, 3, "-n 3 -r 20,5 -t 128,96 -TP R -PLT -p LRCP"},
        {"sop_eph", 210, 170, 1, "-n 4 -r 10,4 -c [32,32] -d 7,5 -T 3,2 -t 100,90 -SOP -EPH"},
        {"cprl_97", 256, 256, 3, "-n 5 -I -r 40,8 -b 16,16 -c [64,64] -p CPRL"},
    };
    static const char *const qs[] = {
        "type=jpp-stream&fsiz=4096,4096",
        "type=jpp-stream&fsiz=80,60",
        "type=jpp-stream&fsiz=150,100&roff=20,10&rsiz=60,50",
        "type=jpp-stream&fsiz=400,300&roff=100,100&rsiz=90,80",
        "type=jpp-stream&fsiz=400,300&layers=1",
        "type=jpp-stream&fsiz=400,300&comps=0",
        "type=jpp-stream&fsiz=400,300&len=5000",
        "type=jpp-stream&fsiz=400,300&model=P0,P1:7,P2",
        "type=jpp-stream&fsiz=400,300&model=Hm",
        "type=jpp-stream&fsiz=400,300&model=P5,P9",
        "type=jpp-stream&fsiz=400,300&layers=50",
        "type=jpp-stream&fsiz=400,300&metareq=[*]",
        "type=jpt-stream&fsiz=400,300",
    };
    size_t i;

    for (i = 0; i < sizeof(gen) / sizeof(gen[0]); i++) {
        target_t t;
        double share;
        apr_uint64_t runs;

        open_target(&t, generate(gen[i].name, gen[i].w, gen[i].h, gen[i].nc, gen[i].opts));
        share = same_answers(&t, gen[i].name, qs, sizeof(qs) / sizeof(qs[0]), &runs);
        ck_assert_msg(share > 0.5, "%s: only %.2f of the messages came from the rendition",
                      gen[i].name, share);
        /* precinct partitions put several precincts in a row: rows go out
         * as runs */
        if (strstr(gen[i].opts, "-c ") != NULL) {
            ck_assert_msg(runs > 0, "%s: no run of neighbouring precincts", gen[i].name);
        }
    }
}
END_TEST

START_TEST(extended_and_partial_bins_not_from_rendition)
{
    target_t t;
    apr_uint64_t r, n, u;

    open_target(&t, generate("ext", 200, 150, 3, "-n 3 -r 20,5 -c [32,32] -p RPCL"));
    /* extended classes carry Aux, which the rendition does not */
    serve(&t, "type=jpp-stream;ptype=ext&fsiz=200,150", 1, &r, &n, &u);
    ck_assert_uint_gt(n, 10);
    ck_assert_uint_eq(r, 0);
    /* layer by layer: every message but a bin's last starts inside it */
    serve(&t, "type=jpp-stream&fsiz=200,150&len=100000000", 1, &r, &n, &u);
    ck_assert_uint_gt(n, 10);
    ck_assert_uint_lt(r, n / 2);
    ck_assert_uint_eq(u, 0);
    /* fewer layers than the bins have: no runs, each bin cut */
    serve(&t, "type=jpp-stream&fsiz=200,150&layers=1", 1, &r, &n, &u);
    ck_assert_uint_gt(n, 10);
    ck_assert_uint_eq(u, 0);
}
END_TEST

/* A rendition made from another index, or damaged, is refused. */
START_TEST(foreign_or_damaged_refused)
{
    target_t a, b;
    jpip_rend_t *rd;
    jpip_err_t err;
    unsigned char *copy;
    apr_uint64_t nbins, i;

    open_target(&a, generate("a", 120, 100, 3, "-n 3 -r 20,5 -c [32,32] -p RPCL"));
    open_target(&b, generate("b", 140, 100, 3, "-n 3 -r 20,5 -c [32,32] -p RPCL"));
    ck_assert_int_eq(jpip_rend_load(&rd, pool, a.ix, b.rdata, b.rsize, &err), JPIP_E_FORMAT);
    ck_assert_int_eq(jpip_rend_load(&rd, pool, a.ix, a.rdata, a.rsize - 1, &err), JPIP_E_FORMAT);
    ck_assert_int_eq(jpip_rend_load(&rd, pool, a.ix, a.rdata, 20, &err), JPIP_E_FORMAT);

    copy = apr_pmemdup(pool, a.rdata, a.rsize);
    copy[0] ^= 1;
    ck_assert_int_eq(jpip_rend_load(&rd, pool, a.ix, copy, a.rsize, &err), JPIP_E_FORMAT);

    /* a table entry pointing at the end of the file (the table follows
     * the 128-byte header) */
    nbins = jpip_index_nbins(a.ix);
    copy = apr_pmemdup(pool, a.rdata, a.rsize);
    for (i = 0; i < nbins; i++) {
        apr_uint64_t v;

        memcpy(&v, copy + 128 + 8 * i, 8);
        if (v != JPIP_REND_NONE) {
            v = a.rsize - 1;
            memcpy(copy + 128 + 8 * i, &v, 8);
            break;
        }
    }
    ck_assert_uint_lt(i, nbins);
    ck_assert_int_eq(jpip_rend_load(&rd, pool, a.ix, copy, a.rsize, &err), JPIP_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "not where it belongs"));
    /* two messages swapped: each inside the file, neither in its place */
    copy = apr_pmemdup(pool, a.rdata, a.rsize);
    {
        apr_uint64_t first = nbins, v0 = 0, v1 = 0;

        for (i = 0; i < nbins; i++) {
            apr_uint64_t v;

            memcpy(&v, copy + 128 + 8 * i, 8);
            if (v == JPIP_REND_NONE) {
                continue;
            }
            if (first == nbins) {
                first = i;
                v0 = v;
            } else {
                v1 = v;
                memcpy(copy + 128 + 8 * i, &v0, 8);
                memcpy(copy + 72 + 8 * first, &v1, 8);
                break;
            }
        }
        ck_assert_uint_lt(i, nbins);
    }
    ck_assert_int_eq(jpip_rend_load(&rd, pool, a.ix, copy, a.rsize, &err), JPIP_E_FORMAT);
    /* an entry for a bin that is not a precinct (bin 0 is the main header
     * or a metadata-bin) */
    copy = apr_pmemdup(pool, a.rdata, a.rsize);
    {
        apr_uint64_t v = 72 + 8 * nbins;

        memcpy(copy + 72, &v, 8);
    }
    ck_assert_int_eq(jpip_rend_load(&rd, pool, a.ix, copy, a.rsize, &err), JPIP_E_FORMAT);
    /* the good one still loads */
    ck_assert_int_eq(jpip_rend_load(&rd, pool, a.ix, a.rdata, a.rsize, &err), JPIP_OK);
}
END_TEST

START_TEST(cancel_and_cache_files)
{
    target_t t;
    const char *path = generate("cache", 160, 120, 3, "-n 3 -r 20,5 -c [32,32] -p RPCL");
    const char *dir = apr_psprintf(pool, "%s/rend-cache", tu_tmpdir());
    volatile apr_uint32_t cancel = 1;
    jpip_rend_t *rd;
    jpip_err_t err;
    apr_file_t *f;
    const char *part;

    apr_file_t *tf;

    open_target(&t, path);
    ck_assert_int_eq(apr_file_open(&tf, path, APR_FOPEN_READ | APR_FOPEN_BINARY, 0, pool),
                     APR_SUCCESS);
    tu_run("rm -rf '%s' && mkdir -p '%s'", dir, dir);
    ck_assert_int_eq(jpip_ixcache_rend_load(pool, dir, path, t.ix, &rd, NULL), 0);
    /* cancelled: nothing left behind */
    ck_assert_int_eq(
        jpip_ixcache_rend_store(pool, dir, path, t.ix, tf, apr_time_from_sec(600), &cancel, &err),
        JPIP_E_LIMIT);
    ck_assert_int_eq(jpip_ixcache_rend_load(pool, dir, path, t.ix, &rd, NULL), 0);
    /* another builder's fresh temporary file: leave it alone */
    part = apr_pstrcat(pool, jpip_ixcache_rend_file(pool, dir, path), ".part", NULL);
    ck_assert_int_eq(
        apr_file_open(&f, part, APR_FOPEN_CREATE | APR_FOPEN_WRITE, APR_FPROT_OS_DEFAULT, pool),
        APR_SUCCESS);
    apr_file_close(f);
    cancel = 0;
    ck_assert_int_eq(
        jpip_ixcache_rend_store(pool, dir, path, t.ix, tf, apr_time_from_sec(600), &cancel, &err),
        JPIP_E_LIMIT);
    /* ... unless it is stale */
    ck_assert_int_eq(jpip_ixcache_rend_store(pool, dir, path, t.ix, tf, 0, &cancel, &err), JPIP_OK);
    ck_assert_int_eq(jpip_ixcache_rend_load(pool, dir, path, t.ix, &rd, NULL), 1);
    ck_assert_uint_eq(jpip_rend_size(rd), t.rsize);
    ck_assert_int_eq(memcmp(jpip_rend_data(rd), t.rdata, t.rsize), 0);
}
END_TEST

static Suite *rendition_suite(void)
{
    Suite *s = suite_create("rendition");
    TCase *tc = tcase_create("rendition");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, answers_unchanged);
    tcase_add_test(tc, extended_and_partial_bins_not_from_rendition);
    tcase_add_test(tc, foreign_or_damaged_refused);
    tcase_add_test(tc, cancel_and_cache_files);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(rendition_suite, CK_NORMAL);
}
