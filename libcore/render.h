/* mod_jpip: rendering a region of a codestream into 8-bit pixels.
 *
 * The renderer never decodes the file: it plans the precinct data-bins a
 * region needs at the chosen resolution (the same planning that answers a
 * JPIP view-window, view.h), assembles an in-memory codestream holding
 * only those bins (rebuild.h; a JP2 file keeps its header boxes through
 * jp2rebuild.h, so that palettes, channel definitions and the colour space
 * apply), and decodes that with libopenjp2 at a reduce factor over a
 * decode area. A single-tile codestream is cropped to the decode area
 * plus the wavelet's reach, on precinct boundaries of every resolution
 * (rebuild.h, cropping), so that the decoder's set-up of the tile costs
 * what the region needs, not what the image has. The decoded samples become 8-bit grey or RGB, with
 * alpha when the image has it: samples above 8 bits are scaled, signed samples shifted, sub-sampled
 * components replicated onto the image grid, sYCC converted to RGB. Then the pixels are resampled
 * to the output size with a triangle filter widened to the scale (an area filter when shrinking),
 * turned grey or bitonal if asked, mirrored and rotated.
 *
 * The resolution is the smallest one whose region is at least the output
 * size in both directions (so no more resolution than the output needs is
 * ever decoded). Every stage checks the limits before allocating.
 */
#ifndef JPIP_RENDER_H
#define JPIP_RENDER_H

#include <apr_pools.h>
#include <apr_time.h>

#include "box.h"
#include "index.h"
#include "jpip_err.h"
#include "source.h"

/* Geometry of a codestream, as a renderer sees it. */
typedef struct jpip_render_geom_t {
    apr_uint64_t width, height;  /* Xsiz - XOsiz, Ysiz - YOsiz */
    unsigned levels;             /* resolution reductions every tile-component allows */
    apr_uint32_t tile_w, tile_h; /* tile grid, when the image has more than one tile */
    apr_uint32_t prec_w, prec_h; /* precinct size at full resolution, 0: no partition */
    unsigned ncomps;
    int tiled;
} jpip_render_geom_t;

/* Fill g for codestream csn. JPIP_E_NOTFOUND if there is no such codestream. */
jpip_code_t jpip_render_geom(const jpip_index_t *ix, apr_uint64_t csn, jpip_render_geom_t *g,
                             jpip_err_t *err);

/* Where the bytes of the target are. */
typedef struct jpip_render_src_t {
    const jpip_index_t *ix;
    const jpip_box_layout_t *layout; /* NULL for a raw codestream */
    const unsigned char *map;        /* the whole file in memory, or NULL */
    jpip_src_t *src;                 /* else: the file, read piece by piece */
} jpip_render_src_t;

#define JPIP_RENDER_DEFAULT 0 /* as the image is: colour or grey */
#define JPIP_RENDER_COLOR 1
#define JPIP_RENDER_GRAY 2
#define JPIP_RENDER_BITONAL 3

typedef struct jpip_render_req_t {
    apr_uint64_t csn;
    apr_uint64_t x, y, w, h; /* region in full-resolution pixels, inside the image, w, h > 0 */
    apr_uint32_t ow, oh;     /* output size before rotation, > 0 */
    int mirror;              /* mirror (left-right) before rotating */
    unsigned rotate;         /* clockwise: 0, 90, 180 or 270 */
    int quality;             /* JPIP_RENDER_* */
    int drop_alpha;          /* the output format has no alpha */
    apr_uint64_t max_memory; /* bytes one render may hold (estimate); 0: no limit */
    apr_uint64_t max_bins;   /* precinct bins one render may use; 0: 1 << 20 */
    apr_time_t deadline;     /* checked between stages; 0: none */
} jpip_render_req_t;

/* 8-bit pixels, interleaved, rows top down without padding. */
typedef struct jpip_raster_t {
    apr_uint32_t w, h;
    unsigned nch; /* 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA */
    unsigned char *px;
} jpip_raster_t;

typedef struct jpip_render_stats_t {
    unsigned reduce;        /* resolution levels discarded */
    apr_uint64_t bins;      /* precinct bins used */
    apr_uint64_t cs_bytes;  /* bytes of the assembled codestream */
    int cropped;            /* the codestream was cropped to the region (render.c) */
    apr_uint64_t decoded_w; /* decoded region size */
    apr_uint64_t decoded_h;
    apr_interval_time_t t_plan, t_decode, t_post; /* microseconds per stage */
} jpip_render_stats_t;

/* Render rq into out (pixels from pool). Errors: JPIP_E_REQUEST (a region
 * outside the image), JPIP_E_LIMIT (memory, bins or time, the message
 * names which), JPIP_E_FORMAT (the decoder refused the data, with its
 * message), JPIP_E_NOMEM, JPIP_E_IO. stats may be NULL. */
jpip_code_t jpip_render(const jpip_render_src_t *src, const jpip_render_req_t *rq, apr_pool_t *pool,
                        jpip_raster_t *out, jpip_render_stats_t *stats, jpip_err_t *err);

/* Keep up to retain bytes of freed memory in this process's heap between
 * renders, and take buffers up to half of it from the heap, instead of
 * mapping them from the kernel and giving them back after each render
 * (the decoder's buffers are a few megabytes: with the C library's
 * defaults every render faults them in again). Process-wide; 0 leaves the
 * C library's policy. Returns the bytes now retained (0 where the C
 * library has no such setting). */
apr_size_t jpip_render_heap_retain(apr_size_t retain);

/* JPIPIIIFHeapRetain's default, and bench/render-cost's. */
#define JPIP_RENDER_HEAP_DEFAULT ((apr_size_t)16 << 20)

/* Resample in (w x h pixels) to ow x oh, reading the window of in that
 * starts at (fx, fy) and spans fw x fh source pixels (fractional). */
jpip_code_t jpip_raster_scale(const jpip_raster_t *in, double fx, double fy, double fw, double fh,
                              apr_uint32_t ow, apr_uint32_t oh, apr_pool_t *pool,
                              jpip_raster_t *out, jpip_err_t *err);

/* Encoders (encode.c): the whole image into one buffer from pool. quality
 * is the JPEG quality (1..100). JPEG has no alpha: it is dropped. */
jpip_code_t jpip_encode_png(const jpip_raster_t *img, apr_pool_t *pool, unsigned char **out,
                            apr_size_t *len, jpip_err_t *err);
jpip_code_t jpip_encode_jpeg(const jpip_raster_t *img, int quality, apr_pool_t *pool,
                             unsigned char **out, apr_size_t *len, jpip_err_t *err);

#endif /* JPIP_RENDER_H */
