/* Fuzz target: the model= / need= grammar and the cache model (model.h).
 *
 * Input: byte 0 holds option bits, the rest is "<model value>\n<need
 * value>" (either may be empty; a value is cut at an embedded NUL). Both
 * values are parsed (with the default item bound and with a bound of 8),
 * then:
 *
 *   - jpip_model_build makes a stateless model from them, with no resolver
 *     or with a synthetic target (4 tiles, 3 components, 3 resolutions, 2
 *     precincts each), with a few or many runs;
 *   - the model spec is applied to a model already holding some runs,
 *     which must be all or nothing: on error the model is unchanged;
 *   - the runs are checked (sorted by class, csn, first id; first <= last;
 *     disjoint), the model is serialised and loaded back, and must come
 *     back equal; and the raw input is given to jpip_model_load as an
 *     untrusted serialised model.
 */
#include <stdio.h>
#include <string.h>

#include <apr_strings.h>

#include "fuzz_common.h"

#include "model.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_model: invariant failed at line %d: %s\n", __LINE__, #cond);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define NT 4
#define NC 3
#define NR 3
#define NP 2

static apr_uint64_t layer_bytes(void *ctx, apr_uint64_t csn, apr_uint64_t id, unsigned layers)
{
    if (layers >= 3)
        return JPIP_MODEL_COMPLETE;
    return (id % 7 + 1) * 100 * layers;
}

static int in(const jpip_model_range_t *r, apr_uint64_t v)
{
    return v >= r->first && (r->last == JPIP_MODEL_END || v <= r->last);
}

static jpip_code_t implicit(void *ctx, apr_uint64_t csn, const jpip_model_range_t *t,
                            const jpip_model_range_t *c, const jpip_model_range_t *r,
                            const jpip_model_range_t *p, jpip_model_visit_fn visit, void *vctx,
                            jpip_err_t *err)
{
    for (apr_uint64_t ti = 0; ti < NT; ti++)
        for (apr_uint64_t ci = 0; ci < NC; ci++)
            for (apr_uint64_t ri = 0; ri < NR; ri++)
                for (apr_uint64_t pi = 0; pi < NP; pi++) {
                    if (!in(t, ti) || !in(c, ci) || !in(r, ri) || !in(p, pi))
                        continue;
                    jpip_code_t rc = visit(vctx, ti + NT * (ci + NC * (ri * NP + pi)), err);
                    if (rc != JPIP_OK)
                        return rc;
                }
    return JPIP_OK;
}

static void check_runs(const jpip_model_t *m)
{
    jpip_model_run_t prev = {0, 0, 0, 0, 0}, cur;
    apr_size_t n = jpip_model_runs(m);

    CHECK(n <= jpip_model_capacity(m));
    for (apr_size_t i = 0; i < n; i++) {
        jpip_model_run(m, i, &cur);
        CHECK(cur.first <= cur.last);
        CHECK(cur.cls != 1 && cur.cls != 5);
        CHECK(cur.cls != 8 || cur.csn == 0);
        /* a layer count (precincts only) is nothing held without a resolver */
        apr_uint64_t want = cur.bytes;
        if (cur.bytes != JPIP_MODEL_COMPLETE && cur.bytes >= JPIP_MODEL_LAYERS(1)) {
            CHECK(cur.cls == 0 && cur.bytes <= JPIP_MODEL_LAYERS(JPIP_MODEL_MAX_LAYERS));
            want = 0;
        }
        CHECK(jpip_model_held(m, NULL, cur.cls, cur.csn, cur.first) == want);
        CHECK(jpip_model_held(m, NULL, cur.cls, cur.csn, cur.last) == want);
        if (i > 0) {
            CHECK(prev.cls < cur.cls || (prev.cls == cur.cls && prev.csn < cur.csn) ||
                  (prev.cls == cur.cls && prev.csn == cur.csn && prev.last < cur.first));
        }
        prev = cur;
    }
}

/* Serialise, load back into a fresh buffer, compare. */
static void roundtrip(const jpip_model_t *m)
{
    jpip_err_t err;
    apr_size_t size = jpip_model_size(m), len;
    apr_size_t cap = jpip_model_bytes_for(jpip_model_runs(m) + 1);
    void *buf = malloc(size);
    void *buf2 = aligned_alloc(8, (cap + 7) / 8 * 8);
    jpip_model_t *m2;

    if (buf == NULL || buf2 == NULL)
        abort();
    CHECK(jpip_model_serialize(m, buf, size, &len, &err) == JPIP_OK);
    CHECK(len == size);
    if (size > 0)
        CHECK(jpip_model_serialize(m, buf, size - 1, &len, &err) == JPIP_E_LIMIT);
    CHECK(jpip_model_load(buf2, (cap + 7) / 8 * 8, buf, len, &m2, &err) == JPIP_OK);
    CHECK(jpip_model_runs(m2) == jpip_model_runs(m));
    CHECK(jpip_model_inverted(m2) == jpip_model_inverted(m));
    for (apr_size_t i = 0; i < jpip_model_runs(m); i++) {
        jpip_model_run_t a, b;
        jpip_model_run(m, i, &a);
        jpip_model_run(m2, i, &b);
        CHECK(a.cls == b.cls && a.csn == b.csn && a.first == b.first && a.last == b.last &&
              a.bytes == b.bytes);
    }
    free(buf);
    free(buf2);
}

/* Apply spec to a model holding some runs: all or nothing. */
static void apply_atomic(apr_pool_t *pool, const jpip_model_spec_t *spec,
                         const jpip_model_resolver_t *res, apr_size_t runs, int inverted)
{
    jpip_model_t *m;
    jpip_err_t err;
    apr_size_t before_len, after_len;

    if (jpip_model_create(pool, runs, inverted, &m, &err) != JPIP_OK)
        return;
    (void)jpip_model_add(m, NULL, 6, 0, 0, 0, 1, &err);
    (void)jpip_model_add_range(m, NULL, 0, 0, 5, 40, 300, &err);
    (void)jpip_model_add(m, NULL, 2, 1, 3, 17, 0, &err);
    (void)jpip_model_add(m, NULL, 8, 0, 1, 0, 1, &err);
    apr_size_t size = jpip_model_size(m);
    unsigned char *before = apr_palloc(pool, size);
    unsigned char *after = apr_palloc(pool, jpip_model_bytes_for(runs));
    CHECK(jpip_model_serialize(m, before, size, &before_len, &err) == JPIP_OK);
    if (jpip_model_apply(m, spec, res, &err) != JPIP_OK) {
        CHECK(jpip_model_serialize(m, after, jpip_model_bytes_for(runs), &after_len, &err) ==
              JPIP_OK);
        CHECK(after_len == before_len && memcmp(before, after, before_len) == 0);
    }
    check_runs(m);
    roundtrip(m);
    (void)jpip_model_cut_range(m, NULL, 0, 0, 10, JPIP_MODEL_END - 1, 50, &err);
    jpip_model_forget_codestream(m, 0);
    check_runs(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *pool;
    jpip_err_t err;
    jpip_model_spec_t *mspec = NULL, *nspec = NULL, *tmp;
    jpip_model_resolver_t res = {NULL, 0, layer_bytes, implicit, 1u << 12};
    unsigned flags;
    jpip_model_t *m;

    if (size < 1)
        return 0;
    pool = jpip_fuzz_pool();
    flags = data[0];
    res.codestreams = 1 + flags % 3;

    /* split "<model>\n<need>" into two NUL-terminated strings */
    const char *text = (const char *)data + 1;
    size_t tlen = size - 1;
    const char *nl = memchr(text, '\n', tlen);
    size_t mlen = nl ? (size_t)(nl - text) : tlen;
    char *mval = apr_pstrmemdup(pool, text, mlen);
    char *nval = nl ? apr_pstrmemdup(pool, nl + 1, tlen - mlen - 1) : NULL;

    if (jpip_model_parse(pool, mval, 0, 0, &mspec, &err) != JPIP_OK)
        mspec = NULL;
    (void)jpip_model_parse(pool, mval, 1, 8, &tmp, &err);
    if (nval != NULL) {
        if (jpip_model_parse(pool, nval, 1, 0, &nspec, &err) != JPIP_OK)
            nspec = NULL;
        (void)jpip_model_parse(pool, nval, 0, 8, &tmp, &err);
    }
    if (mspec != NULL) {
        CHECK(!mspec->need);
        for (apr_size_t i = 0; i < mspec->nitems; i++)
            CHECK(mspec->items[i].cs != NULL && mspec->items[i].ncs > 0);
    }
    if (nspec != NULL) {
        for (apr_size_t i = 0; i < nspec->nitems; i++)
            CHECK(!nspec->items[i].subtract);
    }

    apr_size_t runs = (flags & 4) ? 4 : 4096;
    const jpip_model_resolver_t *r = (flags & 8) ? NULL : &res;
    if (jpip_model_build(pool, runs, mspec, nspec, r, &m, &err) == JPIP_OK) {
        check_runs(m);
        roundtrip(m);
        CHECK(jpip_model_inverted(m) == (nspec != NULL));
    }
    if (mspec != NULL)
        apply_atomic(pool, mspec, r, runs, (flags & 16) != 0);
    if (nspec != NULL)
        apply_atomic(pool, nspec, r, runs, (flags & 16) != 0);

    /* the raw input as an untrusted serialised model */
    {
        apr_size_t cap = jpip_model_bytes_for(64);
        void *buf = aligned_alloc(8, (cap + 7) / 8 * 8);
        unsigned char *copy = malloc(size);
        jpip_model_t *lm;
        if (buf == NULL || copy == NULL)
            abort();
        memcpy(copy, data, size);
        if (jpip_model_load(buf, (cap + 7) / 8 * 8, copy + 1, size - 1, &lm, &err) == JPIP_OK) {
            check_runs(lm);
            roundtrip(lm);
        }
        free(copy);
        free(buf);
    }

    apr_pool_destroy(pool);
    return 0;
}
