/* mod_jpip bench: the CPU cost of answering view-window requests in
 * libcore alone (no httpd, no network): for each request, parse the fields,
 * jpip_serve_prepare, then run the plan to its end and walk every message's
 * pieces, as the module does before handing buckets to httpd.
 *
 *   plan-cost FILE ITERATIONS QUERY...
 *
 * Builds FILE's index once, then answers every QUERY (a query string such
 * as "type=jpp-stream&fsiz=1024,768&roff=0,0&rsiz=512,384") ITERATIONS
 * times. Prints one line:
 *   PLANCOST requests=N ns_per_request=X msgs_per_request=M pieces_per_request=P
 *            bytes_per_request=B index_ms=I
 * Under `valgrind --tool=callgrind --toggle-collect=run_requests` the
 * instruction count of the request path alone is deterministic.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_pools.h>
#include <apr_time.h>

#include "fields.h"
#include "index.h"
#include "plan.h"
#include "request.h"
#include "serve.h"
#include "source.h"

typedef struct counts_t {
    apr_uint64_t msgs, pieces, bytes;
} counts_t;

static jpip_code_t count_piece(void *ctx, apr_uint64_t off, apr_uint64_t len,
                               const unsigned char *synth, jpip_err_t *err)
{
    counts_t *c = ctx;

    (void)off;
    (void)synth;
    (void)err;
    c->pieces++;
    c->bytes += len;
    return JPIP_OK;
}

/* Not static and not inlined: callgrind's --toggle-collect names it. */
__attribute__((noinline)) int run_requests(const jpip_index_t *ix, char **queries, int nq,
                                           long iters, apr_pool_t *pool, counts_t *c);

int run_requests(const jpip_index_t *ix, char **queries, int nq, long iters, apr_pool_t *pool,
                 counts_t *c)
{
    jpip_serve_target_t tgt;
    jpip_serve_opts_t so;
    jpip_msg_t msgs[64];
    long it;
    int q;

    memset(&tgt, 0, sizeof(tgt));
    tgt.ix = ix;
    tgt.tid = "bench";
    memset(&so, 0, sizeof(so));
    for (it = 0; it < iters; it++) {
        for (q = 0; q < nq; q++) {
            apr_array_header_t *fields = NULL;
            jpip_request_t req;
            jpip_response_t resp;
            jpip_err_t err;
            apr_size_t n, i;

            if (jpip_fields_parse(pool, queries[q], strlen(queries[q]), NULL, &fields, &err) !=
                    JPIP_OK ||
                jpip_request_parse(pool, fields, &req, &err) != JPIP_OK ||
                jpip_serve_prepare(pool, &tgt, &req, NULL, &so, &resp, &err) != JPIP_OK ||
                resp.status != 200) {
                fprintf(stderr, "plan-cost: %s: %s\n", queries[q],
                        resp.status != 200 && resp.error ? resp.error : err.msg);
                return 1;
            }
            for (;;) {
                if (jpip_plan_next(resp.plan, msgs, 64, &n, &err) != JPIP_OK || n == 0) {
                    break;
                }
                c->msgs += n;
                for (i = 0; i < n; i++) {
                    c->bytes += msgs[i].hdr_len;
                    jpip_plan_pieces(ix, &msgs[i], count_piece, c, &err);
                }
            }
            apr_pool_clear(pool);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    apr_pool_t *pool, *rpool;
    apr_file_t *f;
    apr_finfo_t fi;
    jpip_src_t *src;
    jpip_index_t *ix;
    jpip_err_t err;
    counts_t c;
    long iters;
    apr_time_t t0, t1, t2;
    apr_uint64_t nreq;

    if (argc < 4) {
        fprintf(stderr, "usage: plan-cost FILE ITERATIONS QUERY...\n");
        return 2;
    }
    apr_initialize();
    apr_pool_create(&pool, NULL);
    apr_pool_create(&rpool, pool);
    iters = atol(argv[2]);
    if (apr_file_open(&f, argv[1], APR_FOPEN_READ | APR_FOPEN_BINARY, 0, pool) != APR_SUCCESS ||
        apr_file_info_get(&fi, APR_FINFO_SIZE, f) != APR_SUCCESS) {
        fprintf(stderr, "plan-cost: cannot open %s\n", argv[1]);
        return 1;
    }
    t0 = apr_time_now();
    if (jpip_src_open_file(&src, pool, f, (apr_uint64_t)fi.size, &err) != JPIP_OK ||
        jpip_index_build(&ix, pool, src, NULL, NULL, &err) != JPIP_OK) {
        fprintf(stderr, "plan-cost: %s: %s\n", argv[1], err.msg);
        return 1;
    }
    t1 = apr_time_now();
    memset(&c, 0, sizeof(c));
    if (run_requests(ix, argv + 3, argc - 3, iters, rpool, &c) != 0) {
        return 1;
    }
    t2 = apr_time_now();
    nreq = (apr_uint64_t)iters * (apr_uint64_t)(argc - 3);
    printf("PLANCOST requests=%" APR_UINT64_T_FMT " ns_per_request=%.0f msgs_per_request=%.1f"
           " pieces_per_request=%.1f bytes_per_request=%.0f index_ms=%.1f\n",
           nreq, (double)(t2 - t1) * 1000.0 / (double)nreq, (double)c.msgs / (double)nreq,
           (double)c.pieces / (double)nreq, (double)c.bytes / (double)nreq, (t1 - t0) / 1000.0);
    apr_pool_destroy(pool);
    apr_terminate();
    return 0;
}
