/* mod_jpip: rebuilding a decodable codestream from JPP data-bins.
 *
 * This is the client side of JPP-streams and the oracle the tests use to
 * check what the server sends (protocol doc C.7). Given the data-bins of
 * one codestream, some of them partial or absent, it writes a codestream
 * any Part-1/Part-15 decoder accepts:
 *
 *   SOC + main header (TLM, PLM and PPM dropped)
 *   for each tile t in raster order of which a bin is held, one tile-part:
 *     SOT (Lsot 10, Isot t, Psot exact, TPsot 0, TNsot 1)
 *     the tile header bin (PLT, PPT and a trailing SOD dropped), SOD
 *     every packet of the tile in the order its progression (and POC)
 *     gives, layer l of a precinct taken from its precinct bin
 *   EOC
 *
 * A tile of which neither the tile header bin nor the tile bin is held is
 * left out (the original may not have it: openjpeg shows a missing tile
 * as zeros), unless no tile is held at all, when every tile is written
 * with empty packets.
 *
 * Packet boundaries inside a precinct bin are found by decoding the packet
 * headers of the bin itself ([SOP] header [EPH] body, in layer order). A
 * packet that is not wholly present, or whose precinct bin is absent, or
 * that options exclude, is written as an empty packet (0x00, then FF92
 * if EPH is signalled; preceded by an SOP segment if SOP is signalled).
 * Once one layer of a precinct is written empty, all its later layers are
 * too: the code-block state of later packet headers depends on every
 * earlier one, so nothing after a gap can be used. A complete bin that
 * ends at a packet boundary has no more packets (the rest are empty); a
 * complete bin that ends inside a packet holds the end of a truncated
 * original: that packet's bytes are written as they are, as the last of
 * the tile, so that a decoder meets the same cut (and, as for the
 * original, reads nothing after it in the tile).
 */
#ifndef JPIP_REBUILD_H
#define JPIP_REBUILD_H

#include <apr_pools.h>

#include "codestream.h"
#include "databin.h"
#include "jpip_err.h"

#define JPIP_REBUILD_ALL 0xFFFFFFFFu

typedef struct jpip_rebuild_opts_t {
    apr_uint64_t csn;      /* codestream number within the target */
    unsigned reduce;       /* discard this many resolution levels from every tile-component
                              (r > NL - reduce left empty, r = 0 always kept), as a decoder's
                              reduce option and the view-window's discard level do; 0: none */
    unsigned max_layers;   /* layers >= max_layers are left empty; JPIP_REBUILD_ALL: none */
    apr_uint64_t max_prec; /* precincts per tile (memory bound); 0: 1 << 22 */
    int crop;              /* write the codestream of crop_rect only (see below) */
    jpip_rect_t crop_rect; /* on the reference grid, inside the image */
} jpip_rebuild_opts_t;

/* Cropping (single-tile codestreams): SIZ's image area becomes crop_rect,
 * on the same reference grid (so every precinct and code-block partition
 * keeps its place), and each precinct of the cropped tile is taken from
 * the original's bin of the same precinct. A precinct the rectangle's
 * edges cut (its extent in the cropped resolution differs) is written
 * empty and counted in prec_cut: a caller that needs it must not crop
 * there. jpip_rebuild_crop_align gives the edges that cut no precinct. */

/* Options that keep everything. */
void jpip_rebuild_opts_init(jpip_rebuild_opts_t *opts);

typedef struct jpip_rebuild_stats_t {
    apr_uint64_t tiles;
    apr_uint64_t packets;       /* packets written */
    apr_uint64_t packets_empty; /* of which synthesised empty */
    apr_uint64_t bytes;         /* codestream length */
    apr_uint64_t prec_bins;     /* precinct bins found and used */
    apr_uint64_t prec_cut;      /* of those, left out because a crop cuts them */
} jpip_rebuild_stats_t;

/* Output sink: called with consecutive pieces of the codestream. */
typedef jpip_code_t (*jpip_rebuild_write_fn)(void *ctx, const void *data, apr_size_t len,
                                             jpip_err_t *err);

/* Rebuild the codestream from bins, writing it to write(). The main
 * header bin must be complete (JPIP_E_NOTFOUND otherwise); a partial tile
 * header bin gives a tile of empty packets under the main header's coding
 * parameters. A partial precinct bin is used up to its last whole packet,
 * a complete one as described above. stats may be NULL. Scratch memory
 * comes from sub-pools of pool, released per tile. */
jpip_code_t jpip_rebuild(const jpip_binsrc_t *bins, const jpip_rebuild_opts_t *opts,
                         apr_pool_t *pool, jpip_rebuild_write_fn write, void *wctx,
                         jpip_rebuild_stats_t *stats, jpip_err_t *err);

/* The same, into one buffer allocated from pool. */
jpip_code_t jpip_rebuild_mem(const jpip_binsrc_t *bins, const jpip_rebuild_opts_t *opts,
                             apr_pool_t *pool, unsigned char **out, apr_size_t *outlen,
                             jpip_rebuild_stats_t *stats, jpip_err_t *err);

/* The granularity of crop edges that cut no precinct of any resolution of
 * any component: every multiple of *ax (*ay) on the reference grid is a
 * precinct boundary everywhere. 0 when there is no such granularity below
 * 2^32 (the default precinct size, or odd sub-sampling). */
void jpip_rebuild_crop_align(const jpip_comp_t *comps, const jpip_tccp_t *const *tccps,
                             unsigned ncomps, apr_uint64_t *ax, apr_uint64_t *ay);

#endif /* JPIP_REBUILD_H */
