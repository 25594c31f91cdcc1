/* mod_jpip: JPEG 2000 codestream structure (T.800 Annex A and B).
 *
 * jpip_cs_parse reads the main header and walks every tile-part (SOT and
 * Psot only; packet data is never read). jpip_cs_tile_read then parses the
 * tile-part headers of one tile and returns its effective coding
 * parameters, its marker segments and where its packet data, PLT and
 * packed headers (PPM/PPT) lie. The geometry helpers compute tile,
 * tile-component, resolution, precinct and code-block extents exactly as
 * T.800 B.2-B.7 define them, with 64-bit arithmetic.
 *
 * All offsets are logical offsets of the jpip_src_t the codestream was
 * parsed from (which may be a fragmented view); callers map them to file
 * pieces with jpip_src_map. The plain structs below (jpip_siz_t,
 * jpip_comp_t, jpip_tccp_t) hold fixed-width fields and no pointers, so
 * the index can store them verbatim.
 */
#ifndef JPIP_CODESTREAM_H
#define JPIP_CODESTREAM_H

#include <apr_pools.h>

#include "jpip_err.h"
#include "piece.h"
#include "source.h"
#include "t2.h"

/* Marker codes. */
#define JPIP_MK_SOC 0xFF4F
#define JPIP_MK_CAP 0xFF50
#define JPIP_MK_SIZ 0xFF51
#define JPIP_MK_COD 0xFF52
#define JPIP_MK_COC 0xFF53
#define JPIP_MK_TLM 0xFF55
#define JPIP_MK_PRF 0xFF56
#define JPIP_MK_PLM 0xFF57
#define JPIP_MK_PLT 0xFF58
#define JPIP_MK_CPF 0xFF59
#define JPIP_MK_QCD 0xFF5C
#define JPIP_MK_QCC 0xFF5D
#define JPIP_MK_RGN 0xFF5E
#define JPIP_MK_POC 0xFF5F
#define JPIP_MK_PPM 0xFF60
#define JPIP_MK_PPT 0xFF61
#define JPIP_MK_CRG 0xFF63
#define JPIP_MK_COM 0xFF64
#define JPIP_MK_SOT 0xFF90
#define JPIP_MK_SOP 0xFF91
#define JPIP_MK_EPH 0xFF92
#define JPIP_MK_SOD 0xFF93
#define JPIP_MK_EOC 0xFFD9

/* Progression orders (SGcod byte). */
#define JPIP_PROG_LRCP 0
#define JPIP_PROG_RLCP 1
#define JPIP_PROG_RPCL 2
#define JPIP_PROG_PCRL 3
#define JPIP_PROG_CPRL 4

/* Scod bits. */
#define JPIP_SCOD_PRECINCTS 0x01
#define JPIP_SCOD_SOP 0x02
#define JPIP_SCOD_EPH 0x04

#define JPIP_MAX_NL 32                 /* decomposition levels (T.800 A.6.1) */
#define JPIP_MAX_RES (JPIP_MAX_NL + 1) /* resolutions */
#define JPIP_MAX_COMPS 16384
#define JPIP_MAX_TILES 65535

/* Pcap bit for Part 15 (HTJ2K): Pcap^15, counted from the MSB. */
#define JPIP_PCAP_HT 0x00020000u

/* Image and tile size (SIZ). ntx * nty <= 65535. */
typedef struct jpip_siz_t {
    apr_uint32_t rsiz;
    apr_uint32_t xsiz, ysiz, xosiz, yosiz;
    apr_uint32_t xtsiz, ytsiz, xtosiz, ytosiz;
    apr_uint32_t csiz;
    apr_uint32_t ntx, nty;
} jpip_siz_t;

/* One component of SIZ. */
typedef struct jpip_comp_t {
    apr_byte_t depth;     /* bits, 1..38 */
    apr_byte_t is_signed; /* 0 or 1 */
    apr_byte_t xr, yr;    /* XRsiz, YRsiz, 1..255 */
} jpip_comp_t;

/* Coding style of one tile-component (COD/COC SPcod/SPcoc). */
typedef struct jpip_tccp_t {
    apr_byte_t nl;        /* decomposition levels, 0..32 */
    apr_byte_t xcb, ycb;  /* code-block size exponents (2..10), value + 2 */
    apr_byte_t cblksty;   /* JPIP_CBLK_* */
    apr_byte_t transform; /* 0 = 9-7 irreversible, 1 = 5-3 reversible */
    apr_byte_t csty;      /* JPIP_SCOD_PRECINCTS if explicit precincts */
    apr_byte_t pad[2];
    apr_byte_t ppx[JPIP_MAX_RES]; /* precinct exponents per resolution (15 by default) */
    apr_byte_t ppy[JPIP_MAX_RES];
    apr_byte_t pad2[6];
} jpip_tccp_t;

/* One progression order change (POC entry); ranges are half-open and
 * already clamped to the codestream (ce <= Csiz, lye <= layers). */
typedef struct jpip_poc_t {
    apr_uint32_t rs, cs, lye, re, ce, prog;
} jpip_poc_t;

/* Coding parameters in force for a tile (or the main-header defaults). */
typedef struct jpip_tcp_t {
    unsigned scod;     /* JPIP_SCOD_* (SOP, EPH; bit 0 unused here) */
    unsigned prog;     /* JPIP_PROG_* */
    unsigned layers;   /* 1..65535 */
    unsigned mct;      /* 0 or 1 (Part 2 may have more) */
    jpip_tccp_t *tccp; /* Csiz entries */
    jpip_poc_t *poc;   /* progression order changes, NULL if none */
    apr_size_t npoc;
} jpip_tcp_t;

/* A marker segment: code, logical offset of its marker, total length
 * including the 2-byte marker (2 for SOD). */
typedef struct jpip_seg_t {
    apr_uint64_t off;
    apr_uint64_t len;
    unsigned code;
} jpip_seg_t;

/* A tile-part as found by the SOT walk. */
typedef struct jpip_tpart_t {
    apr_uint64_t sot;  /* logical offset of its SOT marker */
    apr_uint64_t body; /* first byte after SOD */
    apr_uint64_t end;  /* one past its last byte present */
    apr_uint64_t data; /* packet data bytes its Psot announces (more than end - body when cut) */
    apr_uint32_t psot;
    apr_uint32_t tile;
    apr_uint32_t tpsot, tnsot;
    apr_uint32_t next; /* next tile-part of the same tile, or JPIP_NONE */
} jpip_tpart_t;

#define JPIP_NONE 0xFFFFFFFFu

/* Limits applied while parsing (0 means the built-in default). */
typedef struct jpip_cs_limits_t {
    apr_uint64_t max_tile_parts; /* default 1 << 20 */
    apr_uint64_t max_tile_comps; /* tiles * components, default 1 << 24 */
    apr_uint64_t max_segments;   /* marker segments per header, default 1 << 20 */
    int headers_only;            /* the tile-parts hold headers and no packet data (a rebuild's
                                    skeleton): each one counts, none is checked as a decoder would */
} jpip_cs_limits_t;

typedef struct jpip_cs_t {
    jpip_siz_t siz;
    jpip_comp_t *comps;    /* siz.csiz entries */
    apr_uint32_t pcap;     /* CAP Pcap, 0 if no CAP */
    unsigned ccap15;       /* CAP Ccap for Part 15, 0 if absent */
    int ht;                /* Part 15 code-blocks signalled (CAP or code-block style) */
    jpip_tcp_t main;       /* main-header defaults (main POC in main.poc) */
    apr_uint64_t soc;      /* logical offset of SOC */
    apr_uint64_t main_end; /* offset of the first SOT */
    jpip_seg_t *msegs;     /* main-header marker segments after SOC (SIZ .. last) */
    apr_size_t nmsegs;
    jpip_tpart_t *tparts; /* in codestream order */
    apr_size_t ntparts;
    apr_uint32_t *tile_first; /* first tile-part of each tile, JPIP_NONE if none */
    apr_uint32_t *tile_ntp;   /* tile-parts per tile (0: the tile is absent) */
    apr_uint64_t end;         /* end of the last tile-part (EOC or end of data) */
    int has_eoc;
    int truncated;         /* the data ends inside the last tile-part (its Psot runs past it) */
    apr_uint32_t ndropped; /* tiles whose tile-parts a decoder never decodes (see below) */
    /* PPM: packed headers of tile-part i are ppm_pieces[ppm_first[i] ..
     * ppm_first[i+1]) (logical ranges); NULL when there is no PPM. */
    jpip_piece_t *ppm_pieces;
    apr_size_t *ppm_first;
    int has_tlm, tlm_ok; /* TLM present; it matched every tile-part */
    int has_plm;
    /* PLM: packet lengths (Iplm bytes) of tile-part i are plm_pieces[plm_first[i]
     * .. plm_first[i+1]); NULL when there is no PLM or it does not match. */
    jpip_piece_t *plm_pieces;
    apr_size_t *plm_first;
    jpip_cs_limits_t limits;
} jpip_cs_t;

/* Everything the index needs about one tile. */
typedef struct jpip_tile_t {
    apr_uint32_t index;
    jpip_tcp_t tcp;   /* effective coding parameters */
    jpip_seg_t *segs; /* tile-part header segments for the tile header bin
                         (all tile-parts, in order; no SOT, SOD, PLT, PPT) */
    apr_size_t nsegs;
    jpip_piece_t *bodies; /* packet data of each tile-part, in order */
    apr_size_t nbodies;
    jpip_piece_t *plt; /* data of the PLT segments (after Zplt), in order */
    apr_size_t nplt;
    jpip_piece_t *ppt; /* data of the PPT segments (after Zppt), in order */
    apr_size_t nppt;
    jpip_piece_t *ppm; /* this tile's PPM header data (all its tile-parts) */
    apr_size_t nppm;
    jpip_piece_t *plm; /* this tile's PLM packet lengths (Iplm bytes) */
    apr_size_t nplm;
} jpip_tile_t;

/* Parse the main header at logical offset 0 of src and walk all
 * tile-parts. limits may be NULL. Errors: JPIP_E_FORMAT naming the marker
 * and offset, JPIP_E_LIMIT, JPIP_E_UNSUPPORTED.
 *
 * Which tile-parts count follows what openjpeg 2.5 decodes (the reference
 * decoder; docs/protocol-notes.md lists the cases): TPsot must run 0, 1,
 * 2, ... within each tile; a TNsot of 0 or larger than the tile-parts
 * present is accepted, a tile-part beyond a non-zero TNsot is not (with
 * openjpeg's allowance for encoders whose TNsot is one short); tiles may
 * have no tile-part at all (tile_ntp 0: absent). The data may end early:
 * without EOC, inside the last tile-part's packet data (truncated), or one
 * stray byte after it; a tile the decoder would then never decode (it
 * waits for tile-parts announced by TNsot) is dropped: its tile-parts stay
 * in tparts, unlinked, and the tile is absent. Ending inside a marker
 * segment or a tile-part header, and ending before the last tile-part's
 * tile is complete, are JPIP_E_FORMAT, as openjpeg refuses them too. */
jpip_code_t jpip_cs_parse(jpip_cs_t **cs, apr_pool_t *pool, jpip_src_t *src,
                          const jpip_cs_limits_t *limits, jpip_err_t *err);

/* Parse the tile-part headers of tile t (< Nt) and fill *tile from pool. */
jpip_code_t jpip_cs_tile_read(const jpip_cs_t *cs, jpip_src_t *src, apr_uint32_t t,
                              apr_pool_t *pool, jpip_tile_t **tile, jpip_err_t *err);

/* ---- geometry (T.800 B.2 - B.7) ---- */

typedef struct jpip_rect_t {
    apr_uint64_t x0, y0, x1, y1;
} jpip_rect_t;

/* Number of tiles. */
static inline apr_uint32_t jpip_siz_ntiles(const jpip_siz_t *siz)
{
    return siz->ntx * siz->nty;
}

/* ceil(a / b) for b > 0. */
static inline apr_uint64_t jpip_ceildiv(apr_uint64_t a, apr_uint64_t b)
{
    return a / b + (a % b != 0);
}

/* ceil(a / 2^n), floor(a / 2^n); n may be up to 63. */
static inline apr_uint64_t jpip_ceilpow2(apr_uint64_t a, unsigned n)
{
    return n >= 64 ? (a != 0) : (a >> n) + ((a & ((((apr_uint64_t)1) << n) - 1)) != 0);
}
static inline apr_uint64_t jpip_floorpow2(apr_uint64_t a, unsigned n)
{
    return n >= 64 ? 0 : a >> n;
}

/* Tile t on the reference grid. */
void jpip_geom_tile(const jpip_siz_t *siz, apr_uint32_t t, jpip_rect_t *out);

/* Tile-component extent of a tile for sub-sampling (xr, yr). */
void jpip_geom_tilecomp(const jpip_rect_t *tile, unsigned xr, unsigned yr, jpip_rect_t *out);

/* Resolution r (0..nl) of a tile-component with nl levels. */
void jpip_geom_res(const jpip_rect_t *tc, unsigned nl, unsigned r, jpip_rect_t *out);

/* Precinct grid of a resolution with exponents (ppx, ppy) (protocol B.4):
 * first absolute precinct column/row and counts (0 when empty). */
typedef struct jpip_pgrid_t {
    apr_uint64_t px0, py0; /* absolute index of the first precinct */
    apr_uint64_t npw, nph;
} jpip_pgrid_t;
void jpip_geom_pgrid(const jpip_rect_t *res, unsigned ppx, unsigned ppy, jpip_pgrid_t *out);

/* Code-block layout of precinct (px, py) (relative to the grid's first
 * precinct) of resolution r of a tile-component, for the packet-header
 * decoder. JPIP_E_FORMAT if the coding parameters are inconsistent (e.g.
 * PPx = 0 at r > 0). */
jpip_code_t jpip_geom_prec_cblks(const jpip_rect_t *tc, const jpip_tccp_t *tccp, unsigned r,
                                 apr_uint64_t px, apr_uint64_t py, jpip_t2_geom_t *out,
                                 jpip_err_t *err);

/* A short name for a marker code ("SIZ", "COD", ...; "unknown" if unknown). */
const char *jpip_marker_name(unsigned code);

#endif /* JPIP_CODESTREAM_H */
