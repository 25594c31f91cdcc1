/* Unit tests: view.c, the view-window -> precinct mapping.
 *
 * On codestreams encoded here by openjpeg (512 x 512, three decomposition
 * levels, 32 x 32 precincts at every resolution, 5/3 and 9/7), the
 * precincts jpip_view_rows visits for a window must contain every
 * precinct the window's synthesis reads and lie within a loose outer bound
 * of the filters' reach. Both sets are worked out by hand below from the
 * lifting steps (T.800 F.3.8; docs/testing.md, the efficiency oracle), not
 * from view.c. Also: every row lies in its tile-component's precinct grid
 * and visits each precinct once, resolutions in order, lev and ids as the
 * header says; the whole frame visits every precinct of the served
 * resolutions and none above; only the tiles and components asked for;
 * a window inside another visits a subset; no image, no rows. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_hash.h>
#include <apr_strings.h>

#include "fields.h"
#include "index.h"
#include "request.h"
#include "testutil.h"
#include "view.h"

static apr_pool_t *pool;

static void setup(void)
{
    apr_pool_create(&pool, NULL);
}

static void teardown(void)
{
    apr_pool_destroy(pool);
}

/* Encode a synthetic picture; NULL when opj_compress fails. */
static jpip_index_t *encode(const char *name, int w, int h, int nc, const char *opts)
{
    const char *dir = tu_tmpdir();
    char *in = apr_psprintf(pool, "%s/%s.%s", dir, name, nc == 1 ? "pgm" : "ppm");
    char *out = apr_psprintf(pool, "%s/%s.j2k", dir, name);
    unsigned char *data;
    size_t len;
    jpip_src_t *src;
    jpip_index_t *ix;
    jpip_err_t err;

    ck_assert_int_eq(tu_write_synth(in, w, h, nc, 3), 0);
    ck_assert_msg(tu_run("%s -i %s -o %s %s", tu_opj_compress(), in, out, opts) == 0,
                  "opj_compress %s failed", opts);
    data = tu_read_file(pool, out, &len);
    ck_assert_ptr_nonnull(data);
    ck_assert_int_eq(jpip_src_open_mem(&src, pool, data, len, &err), JPIP_OK);
    ck_assert_msg(jpip_index_build(&ix, pool, src, NULL, NULL, &err) == JPIP_OK, "%s", err.msg);
    return ix;
}

/* One visited precinct: tile, component, resolution, absolute precinct
 * indices. */
typedef struct seen_t {
    apr_uint32_t t;
    unsigned c, r;
    apr_uint64_t kx, ky;
} seen_t;

typedef struct visit_t {
    const jpip_index_t *ix;
    const jpip_ix_cs_t *cs;
    apr_array_header_t *seen; /* of seen_t */
    apr_hash_t *ids;          /* in-class ids visited, to catch repeats */
    unsigned last_r, last_c;
    apr_uint32_t last_t;
    int any;
} visit_t;

static jpip_code_t on_row(void *ctx, const jpip_view_row_t *row, jpip_err_t *err)
{
    visit_t *v = ctx;
    const jpip_ix_tc_t *itc = jpip_index_tc(v->ix, v->cs, row->t, row->c);
    const jpip_tccp_t *tccp = jpip_index_tccp(v->ix, itc);
    apr_uint64_t nt = jpip_siz_ntiles(&v->cs->siz), csiz = v->cs->siz.csiz, s0, k;
    jpip_ix_res_t res;

    ck_assert_int_eq(jpip_index_res(v->ix, v->cs, row->t, row->c, row->r, &res, err), JPIP_OK);
    ck_assert_uint_le(row->r, tccp->nl);
    ck_assert_uint_eq(row->lev, tccp->nl - row->r);
    ck_assert_uint_eq(row->step, csiz * nt);
    ck_assert_uint_gt(row->n, 0);
    /* tile by tile, component by component, resolution 0 upwards */
    if (v->any && v->last_t == row->t && v->last_c == row->c) {
        ck_assert_uint_ge(row->r, v->last_r);
    }
    v->any = 1;
    v->last_t = row->t;
    v->last_c = row->c;
    v->last_r = row->r;
    s0 = (row->id - row->t) / nt / csiz;
    ck_assert_uint_eq(row->t + (row->c + s0 * csiz) * nt, row->id);
    for (k = 0; k < row->n; k++) {
        apr_uint64_t s = s0 + k, local, *key;
        seen_t *e;

        ck_assert_uint_ge(s, res.s0);
        local = s - res.s0;
        ck_assert_uint_lt(local, res.grid.npw * res.grid.nph);
        /* one row of one resolution */
        ck_assert_uint_eq(local / res.grid.npw, (s0 - res.s0) / res.grid.npw);
        ck_assert_ptr_eq(jpip_index_prec_bin(v->ix, itc, s), row->bin + k);
        key = apr_palloc(pool, sizeof(*key));
        *key = row->id + k * row->step;
        ck_assert_msg(apr_hash_get(v->ids, key, sizeof(*key)) == NULL,
                      "precinct %" APR_UINT64_T_FMT " visited twice", *key);
        apr_hash_set(v->ids, key, sizeof(*key), key);
        e = apr_array_push(v->seen);
        e->t = row->t;
        e->c = row->c;
        e->r = row->r;
        e->kx = res.grid.px0 + local % res.grid.npw;
        e->ky = res.grid.py0 + local / res.grid.npw;
    }
    return JPIP_OK;
}

/* The precincts visited for query q (fields as a client sends them). */
static apr_array_header_t *visit(const jpip_index_t *ix, const char *q, jpip_view_t *vout)
{
    apr_array_header_t *f = NULL;
    jpip_request_t req;
    jpip_view_t v;
    jpip_err_t err;
    visit_t ctx;

    ck_assert_int_eq(jpip_fields_parse(pool, q, strlen(q), NULL, &f, &err), JPIP_OK);
    ck_assert_msg(jpip_request_parse(pool, f, &req, &err) == JPIP_OK, "%s: %s", q, err.msg);
    ck_assert_msg(jpip_view_resolve(ix, 0, &req, pool, &v, &err) == JPIP_OK, "%s", err.msg);
    memset(&ctx, 0, sizeof(ctx));
    ctx.ix = ix;
    ctx.cs = jpip_index_cs(ix, 0);
    ctx.seen = apr_array_make(pool, 64, sizeof(seen_t));
    ctx.ids = apr_hash_make(pool);
    ck_assert_msg(jpip_view_rows(ix, &v, on_row, &ctx, &err) == JPIP_OK, "%s", err.msg);
    if (vout != NULL) {
        *vout = v;
    }
    return ctx.seen;
}

/* Precinct columns [kx0, kx1] and rows [ky0, ky1] of one resolution. */
typedef struct rect_t {
    unsigned kx0, kx1, ky0, ky1;
} rect_t;

static int in_rect(const rect_t *b, const seen_t *e)
{
    return e->kx >= b->kx0 && e->kx <= b->kx1 && e->ky >= b->ky0 && e->ky <= b->ky1;
}

/* need[r] <= visited at r <= reach[r], for r = 0..nres-1; nothing above. */
static void check_bounds(const apr_array_header_t *seen, unsigned nres, const rect_t *need,
                         const rect_t *reach, const char *what)
{
    unsigned r;
    int i;

    for (i = 0; i < seen->nelts; i++) {
        const seen_t *e = &APR_ARRAY_IDX(seen, i, seen_t);
        ck_assert_msg(e->r < nres, "%s: resolution %u visited", what, e->r);
        ck_assert_msg(in_rect(&reach[e->r], e),
                      "%s: precinct (%" APR_UINT64_T_FMT ",%" APR_UINT64_T_FMT
                      ") of resolution %u is beyond the filters' reach",
                      what, e->kx, e->ky, e->r);
    }
    for (r = 0; r < nres; r++) {
        apr_uint64_t kx, ky;
        for (ky = need[r].ky0; ky <= need[r].ky1; ky++) {
            for (kx = need[r].kx0; kx <= need[r].kx1; kx++) {
                int found = 0;
                for (i = 0; i < seen->nelts && !found; i++) {
                    const seen_t *e = &APR_ARRAY_IDX(seen, i, seen_t);
                    found = e->r == r && e->kx == kx && e->ky == ky;
                }
                ck_assert_msg(found,
                              "%s: needed precinct (%" APR_UINT64_T_FMT ",%" APR_UINT64_T_FMT
                              ") of resolution %u not visited",
                              what, kx, ky, r);
            }
        }
    }
}

#define PREC32 "-n 4 -c [32,32],[32,32],[32,32],[32,32] -b 16,16"

/* 5/3, window [200,232)^2 at full resolution. Resolution 3 (512 wide,
 * 16-sample subband precincts): outputs 200..231 read the interleaved
 * coefficients 199..233 (even x: x-1..x+1, odd x: x-2..x+2), so low-pass
 * 100..116 and high-pass 99..116: subband precincts 6 and 7. Resolution 2,
 * outputs 100..116: coefficients 99..117, low 50..58, high 49..58:
 * precinct 3. Resolution 1, outputs 50..58: 49..59, low 25..29, high
 * 24..29: precinct 1. Resolution 0, samples 25..29: precinct 0 (32
 * samples). The outer bound halves outwards and widens by 2 at each
 * level: subbands 98..117 at resolution 3 (precincts 6..7), 47..60 at 2
 * (2..3), 21..32 at 1 (1..2), and the same 21..32 at resolution 0
 * (0..1). */
START_TEST(window_53)
{
    jpip_index_t *ix = encode("v53", 512, 512, 1, PREC32);
    static const rect_t need[4] = {{0, 0, 0, 0}, {1, 1, 1, 1}, {3, 3, 3, 3}, {6, 7, 6, 7}};
    static const rect_t reach[4] = {{0, 1, 0, 1}, {1, 2, 1, 2}, {2, 3, 2, 3}, {6, 7, 6, 7}};
    /* [256,264)^2: on a precinct edge at every level. Resolution 3:
     * coefficients 255..265, high-pass 127..132 (precincts 7, 8); 2:
     * outputs 128..132, 127..133, high 63..66 (3, 4); 1: outputs 64..66,
     * 63..67, high 31..33 (1, 2); 0: samples 32..33 (precinct 1). */
    static const rect_t need2[4] = {{1, 1, 1, 1}, {1, 2, 1, 2}, {3, 4, 3, 4}, {7, 8, 7, 8}};
    static const rect_t reach2[4] = {{0, 1, 0, 1}, {1, 2, 1, 2}, {3, 4, 3, 4}, {7, 8, 7, 8}};

    check_bounds(visit(ix, "fsiz=512,512&roff=200,200&rsiz=32,32", NULL), 4, need, reach,
                 "5/3 [200,232)");
    check_bounds(visit(ix, "fsiz=512,512&roff=256,256&rsiz=8,8", NULL), 4, need2, reach2,
                 "5/3 [256,264)");
}
END_TEST

/* 9/7: even outputs read x-3..x+3, odd ones x-4..x+4. [200,232)^2:
 * resolution 3 reads 197..235, high-pass 98..117 (precincts 6, 7), low
 * 99..117; resolution 2, outputs 99..117, reads 95..121, low 48..60, high
 * 47..60 (precincts 2, 3); resolution 1, outputs 48..60, reads 45..63,
 * low 23..31, high 22..31 (1); resolution 0: 23..31 (0). The outer bound
 * widens by 4: 96..119 (6..7), 44..63 (2..3), 18..35 (1..2), 18..35 at
 * resolution 0 (0..1). */
START_TEST(window_97)
{
    jpip_index_t *ix = encode("v97", 512, 512, 1, "-I " PREC32);
    static const rect_t need[4] = {{0, 0, 0, 0}, {1, 1, 1, 1}, {2, 3, 2, 3}, {6, 7, 6, 7}};
    static const rect_t reach[4] = {{0, 1, 0, 1}, {1, 2, 1, 2}, {2, 3, 2, 3}, {6, 7, 6, 7}};
    /* at d = 2 the window is [50,58)^2 of resolution 1: outputs 50..57 ->
     * 47..61, high 23..30 (precinct 1); resolution 0: low 24..30
     * (precinct 0). The outer bound (widened by 4) reaches 1..2 and
     * 0..1. */
    static const rect_t need2[2] = {{0, 0, 0, 0}, {1, 1, 1, 1}};
    static const rect_t reach2[2] = {{0, 1, 0, 1}, {1, 2, 1, 2}};

    check_bounds(visit(ix, "fsiz=512,512&roff=200,200&rsiz=32,32", NULL), 4, need, reach,
                 "9/7 [200,232)");
    check_bounds(visit(ix, "fsiz=128,128&roff=50,50&rsiz=8,8", NULL), 2, need2, reach2,
                 "9/7 d=2 [50,58)");
}
END_TEST

/* A strip on the right edge: the symmetric extension reflects inside, so
 * nothing beyond the last precinct column is needed or visited. */
START_TEST(edge_strip)
{
    jpip_index_t *ix = encode("v53e", 512, 512, 1, PREC32);
    static const rect_t need[4] = {{1, 1, 0, 1}, {3, 3, 0, 3}, {7, 7, 0, 7}, {14, 15, 0, 15}};

    check_bounds(visit(ix, "fsiz=512,512&roff=480,0&rsiz=32,512", NULL), 4, need, need,
                 "5/3 right strip");
}
END_TEST

static unsigned count_res(const apr_array_header_t *seen, unsigned r)
{
    unsigned n = 0;
    int i;

    for (i = 0; i < seen->nelts; i++) {
        n += APR_ARRAY_IDX(seen, i, seen_t).r == r;
    }
    return n;
}

/* The whole frame at d visits every precinct of resolutions 0..NL-d once
 * and none above: 4, 16, 64, 256 precincts. */
START_TEST(whole_frames)
{
    jpip_index_t *ix = encode("v53w", 512, 512, 1, PREC32);
    static const unsigned per_res[4] = {4, 16, 64, 256};
    unsigned d, r;

    for (d = 0; d <= 3; d++) {
        char *q = apr_psprintf(pool, "fsiz=%u,%u", 512u >> d, 512u >> d);
        apr_array_header_t *seen = visit(ix, q, NULL);
        unsigned want = 0;

        for (r = 0; r <= 3; r++) {
            ck_assert_uint_eq(count_res(seen, r), r <= 3 - d ? per_res[r] : 0);
            want += r <= 3 - d ? per_res[r] : 0;
        }
        ck_assert_int_eq(seen->nelts, (int)want);
    }
}
END_TEST

/* Tiles and components: a window inside tile 4 of a 3 x 3 grid visits
 * that tile only, and comps=1 (no colour transform) component 1 only. */
START_TEST(tiles_and_components)
{
    jpip_index_t *ix = encode("v53t", 300, 300, 3, "-n 3 -c [32,32] -b 16,16 -t 100,100 -mct 0");
    apr_array_header_t *seen = visit(ix, "fsiz=300,300&roff=130,120&rsiz=40,50&comps=1", NULL);
    int i;

    ck_assert_int_gt(seen->nelts, 0);
    for (i = 0; i < seen->nelts; i++) {
        const seen_t *e = &APR_ARRAY_IDX(seen, i, seen_t);
        ck_assert_uint_eq(e->t, 4);
        ck_assert_uint_eq(e->c, 1);
    }
    /* across the corner of four tiles: exactly those four */
    seen = visit(ix, "fsiz=300,300&roff=190,190&rsiz=20,20", NULL);
    {
        unsigned tiles = 0, comps = 0;
        for (i = 0; i < seen->nelts; i++) {
            const seen_t *e = &APR_ARRAY_IDX(seen, i, seen_t);
            tiles |= 1u << e->t;
            comps |= 1u << e->c;
        }
        ck_assert_uint_eq(tiles, (1u << 4) | (1u << 5) | (1u << 7) | (1u << 8));
        ck_assert_uint_eq(comps, 7);
    }
}
END_TEST

static int contains(const apr_array_header_t *big, const seen_t *e)
{
    int i;

    for (i = 0; i < big->nelts; i++) {
        const seen_t *b = &APR_ARRAY_IDX(big, i, seen_t);
        if (b->t == e->t && b->c == e->c && b->r == e->r && b->kx == e->kx && b->ky == e->ky) {
            return 1;
        }
    }
    return 0;
}

/* A window inside another visits a subset of its precincts; an empty one
 * (outside the frame) none. */
START_TEST(nested_and_empty)
{
    jpip_index_t *ix = encode("v97n", 512, 512, 1, "-I " PREC32);
    apr_array_header_t *outer = visit(ix, "fsiz=512,512&roff=100,150&rsiz=200,120", NULL);
    apr_array_header_t *inner = visit(ix, "fsiz=512,512&roff=180,170&rsiz=30,30", NULL);
    apr_array_header_t *none;
    jpip_view_t v;
    int i;

    ck_assert_int_lt(inner->nelts, outer->nelts);
    for (i = 0; i < inner->nelts; i++) {
        ck_assert(contains(outer, &APR_ARRAY_IDX(inner, i, seen_t)));
    }
    none = visit(ix, "fsiz=512,512&roff=600,600&rsiz=10,10", &v);
    ck_assert_int_eq(v.has_image, 0);
    ck_assert_int_eq(none->nelts, 0);
    none = visit(ix, "metareq=[*]", &v);
    ck_assert_int_eq(none->nelts, 0);
}
END_TEST

static Suite *view_suite(void)
{
    Suite *s = suite_create("view");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, window_53);
    tcase_add_test(tc, window_97);
    tcase_add_test(tc, edge_strip);
    tcase_add_test(tc, whole_frames);
    tcase_add_test(tc, tiles_and_components);
    tcase_add_test(tc, nested_and_empty);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(view_suite, CK_ENV);
}
