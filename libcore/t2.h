/* mod_jpip: packet-header decoding (T.800 B.10, T.814 for HT code-blocks).
 *
 * The indexer needs, for every packet, how many bytes its header takes and
 * how many body bytes follow, without decoding any coefficient. That means
 * running the packet-header syntax: inclusion and zero-bit-plane tag trees,
 * number of coding passes, Lblock and codeword-segment lengths, with the
 * state each code-block carries from one layer to the next. A
 * jpip_t2_prec_t is that state for one precinct of one tile-component
 * resolution; its packets must be fed in layer order (any progression
 * order keeps a precinct's layers in order).
 *
 * Headers are read from a jpip_t2_stream_t: a cursor over an ordered list
 * of byte ranges of a jpip_src_t (the tile-part bodies, or the contents of
 * PPM/PPT marker segments when headers are packed).
 */
#ifndef JPIP_T2_H
#define JPIP_T2_H

#include <apr_pools.h>

#include "jpip_err.h"
#include "piece.h"
#include "source.h"

/* Code-block style bits (SPcod/SPcoc code-block style byte). */
#define JPIP_CBLK_BYPASS 0x01  /* selective arithmetic coding bypass */
#define JPIP_CBLK_RESET 0x02   /* reset context probabilities */
#define JPIP_CBLK_TERMALL 0x04 /* termination on each coding pass */
#define JPIP_CBLK_VSC 0x08     /* vertically causal context */
#define JPIP_CBLK_PTERM 0x10   /* predictable termination */
#define JPIP_CBLK_SEGSYM 0x20  /* segmentation symbols */
#define JPIP_CBLK_HT 0x40      /* HTJ2K (Part 15) code-blocks */
#define JPIP_CBLK_HTMIXED 0x80 /* with HT: Part-1 and HT code-blocks may be mixed */

/* Code-block layout of one precinct. Bands are ordered as in the packet:
 * LL alone at resolution 0, else HL, LH, HH. A band with no code-blocks
 * inside this precinct has ncbx or ncby 0 and contributes nothing. */
typedef struct jpip_t2_geom_t {
    unsigned nbands;      /* 1 or 3 */
    apr_uint32_t ncbx[3]; /* code-blocks across, per band */
    apr_uint32_t ncby[3]; /* code-blocks down, per band */
} jpip_t2_geom_t;

typedef struct jpip_t2_prec_t jpip_t2_prec_t;

/* Create the decoding state for one precinct. cblksty is the code-block
 * style byte in force for its tile-component. Memory comes from pool and
 * is proportional to the number of code-blocks. JPIP_E_LIMIT if the
 * geometry is absurd (more than JPIP_T2_MAX_CBLKS code-blocks). */
#define JPIP_T2_MAX_CBLKS (1u << 24)
jpip_code_t jpip_t2_prec_create(jpip_t2_prec_t **prec, apr_pool_t *pool, const jpip_t2_geom_t *geom,
                                unsigned cblksty, jpip_err_t *err);

/* Bytes jpip_t2_prec_create allocates for geom (an upper bound), so that
 * callers can charge the decoding state against a memory budget before
 * creating it. */
apr_uint64_t jpip_t2_prec_bytes(const jpip_t2_geom_t *geom);

/* A read cursor over the concatenation of pieces (file ranges of src;
 * never JPIP_PIECE_SYNTH). The pieces array must outlive the stream. */
typedef struct jpip_t2_stream_t {
    jpip_src_t *src;
    const jpip_piece_t *pieces;
    apr_size_t npieces;
    apr_size_t cur;      /* current piece */
    apr_uint64_t pos;    /* offset inside the current piece */
    apr_time_t deadline; /* 0, or when decoding must give up (JPIP_E_LIMIT):
                            a header may walk millions of code-blocks */
} jpip_t2_stream_t;

void jpip_t2_stream_init(jpip_t2_stream_t *s, jpip_src_t *src, const jpip_piece_t *pieces,
                         apr_size_t npieces);

/* Bytes left from the cursor to the end of the last piece. */
apr_uint64_t jpip_t2_stream_left(const jpip_t2_stream_t *s);

/* File offset of the cursor (the offset one past the last piece at end). */
apr_uint64_t jpip_t2_stream_fileoff(const jpip_t2_stream_t *s);

/* Read up to n bytes at the cursor without moving it; *got may be < n at
 * the end of the stream. */
jpip_code_t jpip_t2_stream_peek(jpip_t2_stream_t *s, unsigned char *buf, apr_size_t n,
                                apr_size_t *got, jpip_err_t *err);

/* Advance the cursor by n bytes, calling emit (if not NULL) with the file
 * range of each piece crossed, so callers can record where the bytes were.
 * JPIP_E_FORMAT if fewer than n bytes are left. */
jpip_code_t jpip_t2_stream_skip(jpip_t2_stream_t *s, apr_uint64_t n, jpip_src_emit_fn emit,
                                void *ctx, jpip_err_t *err);

typedef struct jpip_t2_packet_t {
    apr_uint64_t header_len; /* header bytes consumed from the header stream, EPH included */
    apr_uint64_t body_len;   /* body bytes that follow in the body stream */
    int empty;               /* the header's first bit was 0 (no code-block contributes) */
    int cut;                 /* on JPIP_E_FORMAT: the header runs past the end of the stream */
} jpip_t2_packet_t;

/* Decode the header of the next packet (layer `layer`, which must be one
 * more than the previous call's) of this precinct from hdr. The cursor of
 * hdr is NOT moved: the caller skips header_len bytes itself (recording
 * the pieces). use_eph: the tile-component's COD/COC signals EPH, so an
 * EPH marker (FF92) should follow the header; it is counted in header_len
 * when it is there, and a header without it is taken as it is (as
 * openjpeg does). An SOP marker segment, if any, must already have been
 * skipped. Errors name the layer and what was inconsistent
 * (JPIP_E_FORMAT); out->cut tells a header cut short by the end of the
 * stream (the data was truncated) from a malformed one. */
jpip_code_t jpip_t2_read_header(jpip_t2_prec_t *prec, unsigned layer, jpip_t2_stream_t *hdr,
                                int use_eph, jpip_t2_packet_t *out, jpip_err_t *err);

#endif /* JPIP_T2_H */
