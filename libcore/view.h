/* mod_jpip: mapping a view-window onto the data-bins of a codestream
 * (T.808 C.4; protocol notes section B).
 *
 * jpip_view_resolve turns the request's fsiz/roff/rsiz/comps/layers into
 * what is actually served for one codestream: a discard level d (from the
 * round direction), the served frame and region (scaled and clipped), the
 * region on the reference grid, the components (widened to the colour
 * transform triple when needed) and the layer limit, with a flag for each
 * field whose served value differs from the request (JPIP-* headers).
 *
 * jpip_view_rows then visits every precinct data-bin the window needs,
 * a row of neighbours at a time: for each tile meeting the region, each served component, each
 * resolution up to the one chosen, the precincts whose samples contribute
 * to the region during wavelet synthesis (the region is grown by the
 * filter's reach at each level, so edges decode exactly).
 */
#ifndef JPIP_VIEW_H
#define JPIP_VIEW_H

#include <apr_pools.h>

#include "index.h"
#include "jpip_err.h"
#include "request.h"

#define JPIP_VIEW_MOD_FSIZ 0x01
#define JPIP_VIEW_MOD_ROFF 0x02
#define JPIP_VIEW_MOD_RSIZ 0x04
#define JPIP_VIEW_MOD_COMPS 0x08
#define JPIP_VIEW_MOD_LAYERS 0x10

typedef struct jpip_view_t {
    apr_uint64_t csn;
    int has_image;            /* fsiz given and the region is not empty */
    unsigned d;               /* discarded resolution levels */
    apr_uint64_t fw, fh;      /* served frame size W(d), H(d) */
    apr_uint64_t ox, oy;      /* served region offset, in the served frame */
    apr_uint64_t sx, sy;      /* served region size */
    jpip_rect_t region;       /* the region on the reference grid */
    unsigned char *comps;     /* comps[c] != 0 when component c is served */
    apr_uint32_t ncomps;      /* Csiz */
    const char *comps_served; /* served components in field syntax ("0-2") */
    unsigned layers;          /* served layer limit; 0 = all */
    unsigned max_layers;      /* most layers of any tile */
    unsigned modified;        /* JPIP_VIEW_MOD_* */
} jpip_view_t;

/* Resolve the view-window of req for codestream csn of ix. Without fsiz
 * the view has no image data (headers and metadata only). Errors:
 * JPIP_E_NOTFOUND for a codestream the target does not have. */
jpip_code_t jpip_view_resolve(const jpip_index_t *ix, apr_uint64_t csn, const jpip_request_t *req,
                              apr_pool_t *pool, jpip_view_t *v, jpip_err_t *err);

/* Is tile t of the view's codestream met by the region? */
int jpip_view_tile_relevant(const jpip_index_t *ix, const jpip_view_t *v, apr_uint32_t t);

/* The tiles whose rectangles the view's region may meet: columns
 * [tx0, tx1) and rows [ty0, ty1) of the tile grid (ntx columns; tile t =
 * ty * ntx + tx), found by division, so that callers visit O(tiles met)
 * and never all the tiles of the image. Empty without an image region.
 * jpip_view_tile_relevant still decides for each. */
typedef struct jpip_view_tiles_t {
    apr_uint32_t tx0, tx1, ty0, ty1, ntx;
} jpip_view_tiles_t;
void jpip_view_tiles(const jpip_index_t *ix, const jpip_view_t *v, jpip_view_tiles_t *tr);

/* A row of precinct bins the view needs: n neighbours in one row of one
 * resolution of a tile-component, left to right. lev counts resolution
 * levels from the top of its tile-component (0 = full resolution), so
 * that sorting by lev descending gives the lowest resolutions first
 * across tile-components with different numbers of levels. The k-th
 * precinct of the row has in-class id id + k * step (I = t + (c +
 * s*Csiz)*Nt, so step = Csiz*Nt) and bin bin + k (the bins of a
 * tile-component are consecutive in the index). */
typedef struct jpip_view_row_t {
    apr_uint32_t t;
    unsigned c, r, lev;
    apr_uint64_t id;
    apr_uint64_t step;
    apr_uint32_t n;
    const jpip_bin_t *bin;
} jpip_view_row_t;

typedef jpip_code_t (*jpip_view_row_fn)(void *ctx, const jpip_view_row_t *row, jpip_err_t *err);

/* Visit the precinct bins of the view, row by row (tile by tile,
 * component by component, resolution 0 upwards, rows top down): a visit
 * per row, not per precinct, so that callers may take a row whole. */
jpip_code_t jpip_view_rows(const jpip_index_t *ix, const jpip_view_t *v, jpip_view_row_fn fn,
                           void *ctx, jpip_err_t *err);

#endif /* JPIP_VIEW_H */
