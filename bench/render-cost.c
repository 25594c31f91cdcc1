/* mod_jpip bench: the cost of rendering IIIF tiles in libcore alone (no
 * httpd, no network, no encoding): random full-resolution tiles of a
 * raw codestream, rendered one after another.
 *
 *   render-cost FILE TILES [TILE_SIZE [SEED [HEAP_RETAIN]]]
 *
 * Builds FILE's index once, then renders TILES random TILE_SIZE x
 * TILE_SIZE tiles (default 256) on the TILE_SIZE grid, at full resolution.
 * Prints one line:
 *   RENDERCOST tiles=N ms_per_tile=X plan_ms=P decode_ms=D post_ms=Q
 *              bins_per_tile=B cs_bytes_per_tile=C
 * HEAP_RETAIN: bytes, as JPIPIIIFHeapRetain (default 16777216, the
 * module's default; 0 leaves the C library's policy).
 * Under `perf record` the decode's profile is that of one render.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_pools.h>
#include <apr_time.h>

#include "index.h"
#include "render.h"
#include "source.h"

int main(int argc, char **argv)
{
    apr_pool_t *pool, *rpool;
    apr_file_t *f;
    apr_finfo_t fi;
    jpip_render_src_t rs;
    jpip_render_geom_t g;
    jpip_index_t *ix;
    jpip_err_t err;
    long n, i, tile = 256;
    unsigned seed = 1;
    double plan = 0, dec = 0, post = 0, bins = 0, bytes = 0;
    long cropped = 0;
    apr_size_t heap = JPIP_RENDER_HEAP_DEFAULT;
    apr_time_t t0;

    if (argc < 3) {
        fprintf(stderr, "usage: render-cost FILE TILES [TILE_SIZE [SEED [HEAP_RETAIN]]]\n");
        return 2;
    }
    n = atol(argv[2]);
    if (argc > 3) {
        tile = atol(argv[3]);
    }
    if (argc > 4) {
        seed = (unsigned)atol(argv[4]);
    }
    if (argc > 5) {
        heap = (apr_size_t)atol(argv[5]);
    }
    if (heap > 0 && jpip_render_heap_retain(heap) == 0) {
        fprintf(stderr, "render-cost: the C library keeps its own heap policy\n");
    }
    apr_initialize();
    apr_pool_create(&pool, NULL);
    apr_pool_create(&rpool, pool);
    memset(&rs, 0, sizeof(rs));
    if (apr_file_open(&f, argv[1], APR_FOPEN_READ | APR_FOPEN_BINARY, 0, pool) != APR_SUCCESS ||
        apr_file_info_get(&fi, APR_FINFO_SIZE, f) != APR_SUCCESS) {
        fprintf(stderr, "render-cost: cannot open %s\n", argv[1]);
        return 1;
    }
    if (jpip_src_open_file(&rs.src, pool, f, (apr_uint64_t)fi.size, &err) != JPIP_OK ||
        jpip_index_build(&ix, pool, rs.src, NULL, NULL, &err) != JPIP_OK ||
        jpip_render_geom(ix, 0, &g, &err) != JPIP_OK) {
        fprintf(stderr, "render-cost: %s: %s\n", argv[1], err.msg);
        return 1;
    }
    rs.ix = ix;
    srand(seed);
    t0 = apr_time_now();
    for (i = 0; i < n; i++) {
        jpip_render_req_t rq;
        jpip_render_stats_t st;
        jpip_raster_t out;
        apr_uint64_t nx = (g.width + (apr_uint64_t)tile - 1) / (apr_uint64_t)tile;
        apr_uint64_t ny = (g.height + (apr_uint64_t)tile - 1) / (apr_uint64_t)tile;

        memset(&rq, 0, sizeof(rq));
        rq.x = (apr_uint64_t)rand() % nx * (apr_uint64_t)tile;
        rq.y = (apr_uint64_t)rand() % ny * (apr_uint64_t)tile;
        rq.w = g.width - rq.x < (apr_uint64_t)tile ? g.width - rq.x : (apr_uint64_t)tile;
        rq.h = g.height - rq.y < (apr_uint64_t)tile ? g.height - rq.y : (apr_uint64_t)tile;
        rq.ow = (apr_uint32_t)rq.w;
        rq.oh = (apr_uint32_t)rq.h;
        rq.drop_alpha = 1;
        if (jpip_render(&rs, &rq, rpool, &out, &st, &err) != JPIP_OK) {
            fprintf(stderr, "render-cost: tile %" APR_UINT64_T_FMT ",%" APR_UINT64_T_FMT ": %s\n",
                    rq.x, rq.y, err.msg);
            return 1;
        }
        plan += (double)st.t_plan;
        dec += (double)st.t_decode;
        post += (double)st.t_post;
        bins += (double)st.bins;
        bytes += (double)st.cs_bytes;
        cropped += st.cropped;
        apr_pool_clear(rpool);
    }
    printf("RENDERCOST tiles=%ld ms_per_tile=%.2f plan_ms=%.2f decode_ms=%.2f post_ms=%.2f"
           " bins_per_tile=%.0f cs_bytes_per_tile=%.0f cropped=%ld\n",
           n, (double)(apr_time_now() - t0) / 1000.0 / (double)n, plan / 1000.0 / (double)n,
           dec / 1000.0 / (double)n, post / 1000.0 / (double)n, bins / (double)n, bytes / (double)n,
           cropped);
    apr_pool_destroy(pool);
    apr_terminate();
    return 0;
}
