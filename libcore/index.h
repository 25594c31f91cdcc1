/* mod_jpip: the index of a target: every data-bin -> its byte pieces.
 *
 * jpip_index_build reads a target once (headers only; packet bodies are
 * skipped, and never read at all when PLT markers are usable) and records,
 * for every data-bin of every codestream, the ordered pieces of the file
 * (or of bytes held in the index) that make up the bin:
 *
 *   main header (class 6, id 0)  SOC..first SOT without TLM, PLM, PPM
 *   tile header (class 2, id t)  all tile-part headers of t, in order,
 *                                without SOT, SOD, PLT, PPT
 *   tile (class 4/5, id t)       every tile-part of t, SOT to its end
 *   precinct (class 0/1, id I)   its packets in layer order, each
 *                                [SOP][header][EPH][body], packed headers
 *                                (PPM/PPT) put back in front of the body;
 *                                where the tile's packet data ends inside
 *                                a packet (a truncated file), the bin ends
 *                                with that packet's bytes up to the end
 *                                of the data (no bound after them)
 *   metadata (class 8, id n)     from box.h's layout (bin 0 empty for a
 *                                raw codestream)
 *
 * The index is ONE contiguous, position-free blob: a header (magic,
 * version, endianness marker, the source key) and arrays referring to each
 * other by index, never by pointer. It can be written to a file and mapped
 * read-only by several processes; jpip_index_load validates every offset
 * of an untrusted blob before anything uses it. Integers are in the
 * builder's native byte order; a blob of the other order is refused.
 */
#ifndef JPIP_INDEX_H
#define JPIP_INDEX_H

#include <apr_file_io.h>
#include <apr_pools.h>

#include "codestream.h"
#include "databin.h"
#include "jpip_err.h"
#include "piece.h"
#include "source.h"

#define JPIP_INDEX_VERSION                                                                         \
    3 /* 2: absent tiles, truncated packets, tolerant tile-parts; 3: the file's                    \
         identity and a digest of its contents in the key */

/* Limits on what one target may make the server do (0 = default). */
typedef struct jpip_index_limits_t {
    apr_uint64_t max_bins;               /* data-bins in total (default 1 << 26) */
    apr_uint64_t max_memory;             /* index bytes (default 1 GiB) */
    apr_uint64_t max_tile_comps;         /* tiles x components (default 1 << 24) */
    apr_uint64_t max_tile_parts;         /* per codestream (default 1 << 20) */
    apr_uint64_t max_precincts_per_tile; /* default 1 << 22 */
    apr_uint64_t max_packets_per_tile;   /* default 1 << 26 */
    apr_uint64_t max_codestreams;        /* default 65536 */
    apr_interval_time_t max_time;        /* build time (default 0: no limit) */
} jpip_index_limits_t;

/* Fill l with the defaults. */
void jpip_index_limits_default(jpip_index_limits_t *l);

#define JPIP_INDEX_DIGEST_LEN 20

/* What identifies the source the index was built from: where it is (path),
 * what it is (fileid.h: device, inode, size, times in nanoseconds) and
 * what it holds (a digest of its main headers and sampled ranges, set by
 * jpip_index_seal once the index exists; all zero until then). */
typedef struct jpip_index_key_t {
    const char *path;  /* as the caller names it (may be ""); stored verbatim */
    apr_uint64_t size; /* file size */
    apr_int64_t mtime; /* modification time (apr_time_t) */
    apr_uint64_t dev, ino;
    apr_int64_t mtime_ns, ctime_ns;
    unsigned char digest[JPIP_INDEX_DIGEST_LEN];
} jpip_index_key_t;

/* One data-bin. pieces[piece0 .. piece0+npieces) are its bytes in order;
 * bounds[bound0 .. bound0+nbounds) are byte positions inside the bin: for
 * a precinct bin the end of each layer's packet present (layers 0 ..
 * nbounds-1), for a tile bin the end of each tile-part. */
typedef struct jpip_bin_t {
    apr_uint64_t len;
    apr_uint64_t piece0;
    apr_uint64_t bound0;
    apr_uint32_t npieces;
    apr_uint16_t nbounds;
    apr_uint16_t flags; /* JPIP_BIN_* */
} jpip_bin_t;

#define JPIP_BIN_COMPLETE 1 /* the bin holds all its data (all layers present) */
#define JPIP_BIN_ABSENT                                                                            \
    2 /* a bin of a tile the codestream does not have (no tile-part, or                            \
         none a decoder uses): empty, never sent, and a rebuild leaves                             \
         the tile out (a decoder shows it as zeros) */

/* Per-codestream record. Bins: main header = main_bin; tile header of t =
 * main_bin + 1 + t; tile t = main_bin + 1 + Nt + t; precincts through the
 * tile-component records. */
typedef struct jpip_ix_cs_t {
    jpip_siz_t siz;
    apr_uint32_t flags;  /* JPIP_IXF_* that apply to this codestream */
    apr_uint32_t ccap15; /* CAP Part 15 capabilities, 0 if none */
    apr_uint64_t comp0;  /* first jpip_comp_t (siz.csiz of them) */
    apr_uint64_t tile0;  /* first jpip_ix_tile_t (Nt of them) */
    apr_uint64_t tc0;    /* first jpip_ix_tc_t (Nt * Csiz, tile-major) */
    apr_uint64_t main_bin;
} jpip_ix_cs_t;

/* Per tile. */
typedef struct jpip_ix_tile_t {
    apr_uint32_t layers;
    apr_byte_t prog; /* JPIP_PROG_* of COD (POC may change the actual order) */
    apr_byte_t mct;
    apr_byte_t scod; /* JPIP_SCOD_SOP / _EPH */
    apr_byte_t has_poc;
    apr_uint32_t ntp; /* tile-parts (0: the tile is absent, its bins JPIP_BIN_ABSENT) */
    apr_uint32_t pad;
} jpip_ix_tile_t;

/* Per tile-component. */
typedef struct jpip_ix_tc_t {
    apr_uint64_t prec_bin; /* bin of the precinct with s = 0 */
    apr_uint64_t nprec;    /* precincts (s = 0 .. nprec-1) */
    apr_uint64_t tccp;     /* index of its jpip_tccp_t (shared between equal ones) */
} jpip_ix_tc_t;

/* jpip_ix_cs_t.flags and jpip_index_stats_t.flags. */
#define JPIP_IXF_PLT 0x01     /* packet lengths taken from PLT or PLM (some tile) */
#define JPIP_IXF_DECODED 0x02 /* packet headers decoded (some tile) */
#define JPIP_IXF_TLM 0x04     /* TLM present and consistent */
#define JPIP_IXF_PPM 0x08     /* packed headers in PPM */
#define JPIP_IXF_PPT 0x10     /* packed headers in PPT */
#define JPIP_IXF_PLM 0x20     /* PLM present */
#define JPIP_IXF_HT 0x40      /* HTJ2K code-blocks (CAP Part 15 or code-block style) */
#define JPIP_IXF_CUT 0x80     /* the data ends inside the last tile-part (a truncated file) */

typedef struct jpip_index_t jpip_index_t;

/* Build the index of the file behind src (the whole file). The container
 * (raw codestream, JP2, JPX, JPH) is recognised by box.h. key and limits
 * may be NULL. Errors: JPIP_E_FORMAT (the message names the marker or box
 * and offset), JPIP_E_LIMIT, JPIP_E_UNSUPPORTED, JPIP_E_IO, JPIP_E_NOMEM.
 * The index lives in pool. */
jpip_code_t jpip_index_build(jpip_index_t **ix, apr_pool_t *pool, jpip_src_t *src,
                             const jpip_index_key_t *key, const jpip_index_limits_t *limits,
                             jpip_err_t *err);

/* Describe-it-yourself variant (tests, tools): ncs codestreams, codestream
 * i being the concatenation of the file ranges cs_frags[i][0 ..
 * cs_nfrags[i]); nmeta metadata-bins with ids 0..nmeta-1, bin i being
 * meta_pieces[meta_first[i] .. meta_first[i] + meta_npieces[i])
 * (JPIP_PIECE_SYNTH pieces refer to synth[0 .. nsynth)). */
typedef struct jpip_index_input_t {
    apr_size_t ncs;
    const jpip_piece_t *const *cs_frags;
    const apr_size_t *cs_nfrags;
    apr_size_t nmeta;
    const jpip_piece_t *meta_pieces;
    apr_size_t nmeta_pieces;
    const apr_size_t *meta_first;
    const apr_size_t *meta_npieces;
    const unsigned char *synth;
    apr_size_t nsynth;
} jpip_index_input_t;
jpip_code_t jpip_index_build_from(jpip_index_t **ix, apr_pool_t *pool, jpip_src_t *src,
                                  const jpip_index_input_t *in, const jpip_index_key_t *key,
                                  const jpip_index_limits_t *limits, jpip_err_t *err);

/* Write the blob to f (all of it, or JPIP_E_IO). */
jpip_code_t jpip_index_write(const jpip_index_t *ix, apr_file_t *f, jpip_err_t *err);

/* The blob itself and its size. */
const void *jpip_index_blob(const jpip_index_t *ix, apr_size_t *size);

/* Open a blob (e.g. a mapped index file), validating every offset and
 * length before use. data must outlive the index; it is copied only when
 * it is not 8-byte aligned. JPIP_E_FORMAT names what was wrong. */
jpip_code_t jpip_index_load(jpip_index_t **ix, apr_pool_t *pool, const void *data, apr_size_t size,
                            jpip_err_t *err);

/* The source key recorded at build time. */
void jpip_index_key(const jpip_index_t *ix, jpip_index_key_t *key);

/* Record the digest of the source's contents (fileid.h) in an index this
 * process built (jpip_index_build*, not one loaded from elsewhere, whose
 * memory may be read-only): JPIP_E_REQUEST for a loaded one. */
jpip_code_t jpip_index_seal(jpip_index_t *ix, const unsigned char digest[JPIP_INDEX_DIGEST_LEN],
                            jpip_err_t *err);

/* ---- bins ---- */

/* Find a bin by class (extended classes accepted), codestream and in-class
 * id, in O(1). csn is ignored for metadata-bins. JPIP_E_NOTFOUND if there
 * is no such bin. */
jpip_code_t jpip_index_bin(const jpip_index_t *ix, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                           const jpip_bin_t **bin, jpip_err_t *err);

/* The number of a bin of ix (0 .. jpip_index_nbins - 1), and the bin of
 * a number (n < jpip_index_nbins). */
apr_uint64_t jpip_index_bin_no(const jpip_index_t *ix, const jpip_bin_t *bin);
const jpip_bin_t *jpip_index_bin_at(const jpip_index_t *ix, apr_uint64_t n);

/* Precinct s of a tile-component (what jpip_index_bin finds for its
 * in-class id, without taking the id apart), or NULL if there is none. */
const jpip_bin_t *jpip_index_prec_bin(const jpip_index_t *ix, const jpip_ix_tc_t *tc,
                                      apr_uint64_t s);

/* Pieces and bounds of a bin. */
const jpip_piece_t *jpip_index_pieces(const jpip_index_t *ix, const jpip_bin_t *bin);
const apr_uint64_t *jpip_index_bounds(const jpip_index_t *ix, const jpip_bin_t *bin);

/* Whether the last bound of every bin (that has bounds) is its length, so
 * that all of a bin's layers end at bin->len without reading its bounds. */
int jpip_index_last_bound_is_len(const jpip_index_t *ix);

/* The bytes of piece p of a bin: in file (the whole target in memory)
 * or, for a synthesised piece, in the index. */
const unsigned char *jpip_index_piece_bytes(const jpip_index_t *ix, const jpip_piece_t *p,
                                            const unsigned char *file);

/* Copy the bin->len bytes of bin into out: file pieces from file (the
 * whole target in memory, e.g. mapped), synthesised ones from the index. */
void jpip_index_bin_copy(const jpip_index_t *ix, const jpip_bin_t *bin, const unsigned char *file,
                         unsigned char *out);

/* Bytes of a JPIP_PIECE_SYNTH piece (the piece was validated at load). */
const unsigned char *jpip_index_synth(const jpip_index_t *ix, const jpip_piece_t *p);

/* Total bins, and the number of metadata-bins (ids 0 .. n-1). */
apr_uint64_t jpip_index_nbins(const jpip_index_t *ix);
apr_uint64_t jpip_index_nmeta(const jpip_index_t *ix);

/* ---- geometry ---- */

/* Number of codestreams. */
apr_uint64_t jpip_index_ncs(const jpip_index_t *ix);

/* Codestream csn, or NULL. */
const jpip_ix_cs_t *jpip_index_cs(const jpip_index_t *ix, apr_uint64_t csn);

/* What a request needs of all of a codestream's tile-components, computed
 * once when the index is built or loaded (so O(1) per request): the most
 * decomposition levels and layers of any tile-component or tile, and
 * whether any tile uses a multi-component transform. */
typedef struct jpip_ix_summary_t {
    unsigned max_nl;
    unsigned max_layers;
    int mct;
} jpip_ix_summary_t;
const jpip_ix_summary_t *jpip_index_summary(const jpip_index_t *ix, const jpip_ix_cs_t *cs);

/* Its SIZ components (csiz entries). */
const jpip_comp_t *jpip_index_comps(const jpip_index_t *ix, const jpip_ix_cs_t *cs);

/* Tile t (< Nt) and tile-component (t, c) of a codestream, and the
 * tile-component's coding parameters (NL, code-block style, precinct
 * exponents). */
const jpip_ix_tile_t *jpip_index_tile(const jpip_index_t *ix, const jpip_ix_cs_t *cs,
                                      apr_uint32_t t);
const jpip_ix_tc_t *jpip_index_tc(const jpip_index_t *ix, const jpip_ix_cs_t *cs, apr_uint32_t t,
                                  unsigned c);
const jpip_tccp_t *jpip_index_tccp(const jpip_index_t *ix, const jpip_ix_tc_t *tc);

/* Resolution r of tile-component (t, c): extent and precinct grid, and
 * the sequence number s of its first precinct. JPIP_E_NOTFOUND if r > NL. */
typedef struct jpip_ix_res_t {
    jpip_rect_t rect;
    jpip_pgrid_t grid;
    apr_uint64_t s0;
} jpip_ix_res_t;
jpip_code_t jpip_index_res(const jpip_index_t *ix, const jpip_ix_cs_t *cs, apr_uint32_t t,
                           unsigned c, unsigned r, jpip_ix_res_t *out, jpip_err_t *err);

/* ---- statistics ---- */

typedef struct jpip_index_stats_t {
    apr_uint32_t flags;      /* JPIP_IXF_* over all codestreams */
    apr_uint64_t bytes_read; /* file bytes read while building */
    apr_uint64_t build_us;   /* build time in microseconds */
    apr_uint64_t size;       /* index blob bytes */
    apr_uint64_t nbins, npieces;
} jpip_index_stats_t;
void jpip_index_stats(const jpip_index_t *ix, jpip_index_stats_t *st);

#endif /* JPIP_INDEX_H */
