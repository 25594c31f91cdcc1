/* mod_jpip: a piece is a run of bytes that makes up part of a data-bin.
 *
 * Data-bins are rarely contiguous in the file: a precinct bin is its
 * packets from several tile-parts, a packet whose header was packed into
 * PPM/PPT is two runs, a metadata-bin mixes verbatim boxes with
 * synthesised placeholder boxes. Every bin is therefore an ordered list of
 * pieces. A piece either names bytes of the image file (off is a file
 * offset) or, with JPIP_PIECE_SYNTH set in off, bytes the index itself
 * holds (off & ~JPIP_PIECE_SYNTH is an offset into the index's data area).
 */
#ifndef JPIP_PIECE_H
#define JPIP_PIECE_H

#include <apr.h>

#define JPIP_PIECE_SYNTH (((apr_uint64_t)1) << 63)

typedef struct jpip_piece_t {
    apr_uint64_t off; /* file offset, or JPIP_PIECE_SYNTH | index data offset */
    apr_uint64_t len; /* bytes */
} jpip_piece_t;

static inline int jpip_piece_is_synth(const jpip_piece_t *p)
{
    return (p->off & JPIP_PIECE_SYNTH) != 0;
}

#endif /* JPIP_PIECE_H */
