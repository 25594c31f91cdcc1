/* Fuzz target: the client side of JPP/JPT streams (client.h) and what is
 * built on its cache.
 *
 * The input is a stream as a server would send it. It is parsed three
 * ways into three caches:
 *
 *   A. in one jpip_reader_feed call;
 *   B. in chunks of 1 to 16 bytes (sizes chosen from the input), which
 *      must give the same result as A: same return code, same bytes
 *      consumed, same cache contents (the reader reassembles messages
 *      split across chunks);
 *   C. in the same chunks, starting a new response after every EOR, with
 *      tight cache limits, so multi-response streams and the limit paths
 *      are reached.
 *
 * Cache A is then walked (iterate, lookup, get, the model string) and used
 * as the bin source of jpip_rebuild and jpip_jp2_rebuild: bins whose bytes
 * come straight from the fuzz input.
 */
#include <stdio.h>
#include <string.h>

#include "fuzz_common.h"

#include "client.h"
#include "jp2rebuild.h"
#include "rebuild.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_client: invariant failed at line %d: %s\n", __LINE__, #cond);    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

typedef struct run_t {
    jpip_cache_t *cache;
    jpip_reader_t *reader;
    jpip_code_t rc;     /* first failing feed, or finish */
    apr_uint64_t used;  /* jpip_reader_consumed at the end */
    unsigned long eors; /* responses seen (mode C) */
} run_t;

static size_t chunk_len(const uint8_t *data, size_t size, size_t pos)
{
    return 1 + (size ? data[(pos * 7 + 3) % size] % 16 : 0);
}

static void parse(run_t *r, apr_pool_t *pool, const jpip_cache_limits_t *lim, const uint8_t *data,
                  size_t size, int chunked, int responses)
{
    jpip_err_t err;
    size_t pos = 0;

    memset(r, 0, sizeof(*r));
    CHECK(jpip_cache_create(&r->cache, pool, lim, &err) == JPIP_OK);
    CHECK(jpip_reader_create(&r->reader, r->cache, pool, &err) == JPIP_OK);
    r->rc = JPIP_OK;
    while (pos < size && r->rc == JPIP_OK) {
        size_t n = chunked ? chunk_len(data, size, pos) : size - pos;
        if (n > size - pos)
            n = size - pos;
        /* a buffer of exactly n bytes so overreads are caught */
        unsigned char *chunk = malloc(n);
        if (chunk == NULL)
            abort();
        memcpy(chunk, data + pos, n);
        r->rc = jpip_reader_feed(r->reader, chunk, n, &err);
        free(chunk);
        pos += n;
        if (responses && r->rc == JPIP_OK && jpip_reader_eor(r->reader, NULL)) {
            r->eors++;
            jpip_reader_next_response(r->reader);
        }
    }
    if (r->rc == JPIP_OK)
        r->rc = jpip_reader_finish(r->reader, &err);
    else
        CHECK(jpip_reader_finish(r->reader, &err) != JPIP_OK); /* sticky */
    r->used = jpip_reader_consumed(r->reader);
    (void)jpip_reader_eor(r->reader, NULL);
}

typedef struct walk_t {
    const jpip_cache_t *cache;
    apr_uint64_t bins, held;
} walk_t;

static jpip_code_t visit(void *ctx, const jpip_cache_bin_t *b, jpip_err_t *err)
{
    walk_t *w = ctx;
    jpip_cache_bin_t again;
    const unsigned char *d;
    apr_uint64_t len;
    int complete;

    CHECK(b->cls == 0 || b->cls == 2 || b->cls == 4 || b->cls == 6 || b->cls == 8);
    CHECK(b->prefix <= b->held);
    CHECK(!b->complete || (b->length_known && b->prefix == b->length));
    CHECK(!b->length_known || b->held <= b->length);
    if (b->prefix > 0) {
        volatile unsigned char sink = b->data[0] ^ b->data[b->prefix - 1];
        (void)sink;
    }
    CHECK(jpip_cache_lookup(w->cache, b->cls, b->csn, b->id, &again) == JPIP_OK);
    CHECK(again.prefix == b->prefix && again.held == b->held);
    /* client.c answers NOTFOUND for a bin that holds bytes but no prefix
     * (client.h: "JPIP_OK ... the contiguous prefix (possibly empty)") */
    if (jpip_cache_get(w->cache, b->cls, b->csn, b->id, &d, &len, &complete) == JPIP_OK)
        CHECK(len == b->prefix && complete == b->complete);
    else
        CHECK(b->prefix == 0 && !b->complete);
    w->bins++;
    w->held += b->held;
    return JPIP_OK;
}

static jpip_code_t cs_from_cache(void *ctx, apr_uint64_t csid, const unsigned char **bytes,
                                 apr_uint64_t *len, jpip_err_t *err)
{
    void **c = ctx; /* cache, pool */
    jpip_binsrc_t bs = {c[0], jpip_cache_binsrc_get};
    jpip_rebuild_opts_t opts;
    unsigned char *out;
    apr_size_t n;
    jpip_code_t rc;

    if (csid > 3)
        return jpip_err_set(err, JPIP_E_NOTFOUND, "codestream beyond the fuzzer's cap");
    jpip_rebuild_opts_init(&opts);
    opts.csn = csid;
    opts.max_prec = 4096;
    rc = jpip_rebuild_mem(&bs, &opts, c[1], &out, &n, NULL, err);
    if (rc == JPIP_OK) {
        *bytes = out;
        *len = n;
    }
    return rc;
}

static jpip_code_t sink_write(void *ctx, const void *bytes, apr_size_t len, jpip_err_t *err)
{
    *(apr_uint64_t *)ctx += len;
    return JPIP_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *pool = jpip_fuzz_pool();
    run_t a, b, c;
    jpip_cache_limits_t tight = {64, 4096, 1024};
    jpip_cache_stats_t sa, sb;
    jpip_err_t err;
    const char *model;

    parse(&a, pool, NULL, data, size, 0, 0);
    parse(&b, pool, NULL, data, size, 1, 0);
    CHECK(a.rc == b.rc);
    if (a.rc == JPIP_OK)
        CHECK(a.used == b.used && a.used == size);
    jpip_cache_stats(a.cache, &sa);
    jpip_cache_stats(b.cache, &sb);
    if (a.rc == JPIP_OK) {
        CHECK(sa.messages == sb.messages && sa.bins == sb.bins && sa.held_bytes == sb.held_bytes);
        CHECK(sa.eors == sb.eors);
    }
    parse(&c, pool, &tight, data, size, 1, 1);

    walk_t w = {a.cache, 0, 0};
    CHECK(jpip_cache_iterate(a.cache, pool, visit, &w, &err) == JPIP_OK);
    CHECK(w.bins == sa.bins && w.held == sa.held_bytes);
    (void)jpip_cache_model_string(a.cache, pool, 0, &model, &err);
    (void)jpip_cache_model_string(a.cache, pool, 32, &model, &err);

    /* the cache as the source of a rebuild: bins straight from the input */
    {
        apr_pool_t *sub;
        void *ctx[2];
        apr_uint64_t total = 0;
        jpip_binsrc_t bs = {a.cache, jpip_cache_binsrc_get};
        jpip_rebuild_opts_t opts;
        unsigned char *out;
        apr_size_t n;

        apr_pool_create(&sub, pool);
        ctx[0] = a.cache;
        ctx[1] = sub;
        jpip_rebuild_opts_init(&opts);
        opts.max_prec = 4096;
        (void)jpip_rebuild_mem(&bs, &opts, sub, &out, &n, NULL, &err);
        opts.reduce = 1;
        opts.max_layers = 1;
        (void)jpip_rebuild_mem(&bs, &opts, sub, &out, &n, NULL, &err);
        (void)jpip_jp2_rebuild(&bs, cs_from_cache, ctx, sink_write, &total, sub, &err);
        apr_pool_destroy(sub);
    }

    apr_pool_destroy(pool);
    return 0;
}
