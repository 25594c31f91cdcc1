/* mod_jpip: the packet sequence of a tile (T.800 B.9 - B.12, A.6.6).
 *
 * A tile's packets appear in the order given by its progression (one of
 * the five orders of COD, or the volumes of POC, each packet once only,
 * at its first occurrence). jpip_tlayout_build computes the precinct
 * layout of a tile (every tile-component's resolutions and precinct
 * grids); jpip_packets_walk then yields (layer, resolution, component,
 * precinct) in codestream order. Position-driven orders (RPCL, PCRL,
 * CPRL) follow the reference-grid stepping of B.12 with component
 * sub-sampling: a precinct comes at the first grid position (y, x) whose
 * tests select it, which is the position of its upper-left corner on the
 * reference grid, clamped to the tile origin.
 *
 * The precinct numbering within a tile-component (s) and the precinct
 * data-bin id (I = t + (c + s * Csiz) * Nt) follow the protocol doc B.5.
 */
#ifndef JPIP_PACKETS_H
#define JPIP_PACKETS_H

#include <apr_pools.h>

#include "codestream.h"
#include "jpip_err.h"

/* One resolution of one tile-component. */
typedef struct jpip_tres_t {
    jpip_rect_t rect;  /* in resolution coordinates */
    jpip_pgrid_t grid; /* its precincts */
    apr_uint64_t s0;   /* sequence number s of its first precinct */
} jpip_tres_t;

/* Precinct layout of one tile. */
typedef struct jpip_tlayout_t {
    apr_uint32_t tile;
    unsigned csiz;
    jpip_rect_t rect;         /* tile on the reference grid */
    const jpip_tccp_t *tccp;  /* per component (the tile's jpip_tcp_t) */
    const jpip_comp_t *comps; /* SIZ components */
    jpip_rect_t *tc;          /* tile-component extents */
    jpip_tres_t **res;        /* res[c][r], r = 0..tccp[c].nl */
    apr_uint64_t *nprec;      /* precincts of each tile-component */
    apr_uint64_t *pbase;      /* flat index of component c's first precinct */
    apr_uint64_t nprec_total; /* precincts of the whole tile */
} jpip_tlayout_t;

/* Compute the layout of tile t with coding parameters tcp. JPIP_E_LIMIT
 * if the tile has more than max_precincts precincts (0: 1 << 26). */
jpip_code_t jpip_tlayout_build(jpip_tlayout_t **lay, apr_pool_t *pool, const jpip_siz_t *siz,
                               const jpip_comp_t *comps, apr_uint32_t t, const jpip_tcp_t *tcp,
                               apr_uint64_t max_precincts, jpip_err_t *err);

/* One packet: prec is the precinct index within its resolution, in raster
 * order (py * npw + px). */
typedef struct jpip_pkt_t {
    apr_uint32_t layer;
    apr_uint32_t res;
    apr_uint32_t comp;
    apr_uint64_t prec;
} jpip_pkt_t;

/* Flat index of a packet's precinct in its tile (pbase[c] + s). */
static inline apr_uint64_t jpip_pkt_flat(const jpip_tlayout_t *lay, const jpip_pkt_t *k)
{
    return lay->pbase[k->comp] + lay->res[k->comp][k->res].s0 + k->prec;
}

/* Precinct sequence number s within the tile-component. */
static inline apr_uint64_t jpip_pkt_seq_s(const jpip_tlayout_t *lay, const jpip_pkt_t *k)
{
    return lay->res[k->comp][k->res].s0 + k->prec;
}

typedef jpip_code_t (*jpip_pkt_fn)(void *ctx, const jpip_pkt_t *pkt, jpip_err_t *err);

/* Call fn for every packet of the tile in codestream order, stopping at
 * (and returning) its first error. Scratch memory (a bitmap of packets
 * seen, the sort keys of position-driven orders) comes from pool.
 * JPIP_E_LIMIT if the tile has more than max_packets packets (0: 1 << 28). */
jpip_code_t jpip_packets_walk(const jpip_tlayout_t *lay, const jpip_tcp_t *tcp, apr_pool_t *pool,
                              apr_uint64_t max_packets, jpip_pkt_fn fn, void *ctx, jpip_err_t *err);

/* The same sequence as an array (for the rebuild code): *pkts from pool. */
jpip_code_t jpip_packets_list(const jpip_tlayout_t *lay, const jpip_tcp_t *tcp, apr_pool_t *pool,
                              apr_uint64_t max_packets, jpip_pkt_t **pkts, apr_size_t *npkts,
                              jpip_err_t *err);

/* Precinct data-bin id I = t + (c + s * Csiz) * Nt. */
static inline apr_uint64_t jpip_prec_bin_id(apr_uint32_t t, unsigned c, apr_uint64_t s,
                                            unsigned csiz, apr_uint32_t ntiles)
{
    return t + (c + s * csiz) * (apr_uint64_t)ntiles;
}

/* Inverse of jpip_prec_bin_id. */
static inline void jpip_prec_bin_split(apr_uint64_t id, unsigned csiz, apr_uint32_t ntiles,
                                       apr_uint32_t *t, unsigned *c, apr_uint64_t *s)
{
    *t = (apr_uint32_t)(id % ntiles);
    *c = (unsigned)((id / ntiles) % csiz);
    *s = id / ntiles / csiz;
}

#endif /* JPIP_PACKETS_H */
