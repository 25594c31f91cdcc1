/* mod_jpip: renditions, precinct messages laid out ready to send.
 *
 * A small view of a large image is thousands of small precinct data-bins.
 * Sent from the image file, every one of them is a message header made on
 * the spot and a body copied out of the file, because a bin's bytes lie
 * between other bins' bytes and a header has to come before them. A
 * rendition is a second file, kept next to the index, that holds every
 * precinct data-bin of the target as the complete JPP-stream message a
 * response would send for it:
 *
 *   Bin-ID VBAS (bb = 01, c bit set)  Msg-Offset 0  Msg-Length  body
 *
 * that is, exactly the bytes jpip_jpp_header and the bin's pieces give
 * for a whole bin following another precinct message of the same
 * codestream. The messages are in the order a plan sends them (codestream,
 * then lowest resolution first, then tile, component and precinct in
 * raster order), so the messages of a view are long runs of neighbours and
 * a response sends each run as one range of the rendition file (sendfile)
 * with no header made and no byte copied.
 *
 * Every precinct bin has its message, so the messages of a row of
 * neighbouring precincts (one resolution of a tile-component) are one
 * range, whose ends the table gives: a view's rows go out with no work
 * per precinct.
 *
 * The file: a header (magic, version, byte-order marker, the source key
 * with its identity and digest, fileid.h, and the size of the index it was made from), a table with
 * one 64-bit entry per data-bin of the index (the offset of the bin's message, or JPIP_REND_NONE),
 * then the messages. jpip_rend_load checks the header against the index and walks the layout,
 * checking that every message is where the writer puts it, back to back to the end of the file, so
 * an untrusted file can make a response wrong but never read out of bounds.
 */
#ifndef JPIP_RENDITION_H
#define JPIP_RENDITION_H

#include <apr_file_io.h>
#include <apr_pools.h>

#include "index.h"
#include "jpip_err.h"

#define JPIP_REND_NONE (~(apr_uint64_t)0)

typedef struct jpip_rend_t jpip_rend_t;

/* Write the rendition of ix to f (opened for writing, at offset 0),
 * reading the target's bytes from src (never a mapping of the target: a
 * file cut short while it is read is JPIP_E_FORMAT or JPIP_E_IO, not a
 * signal). *cancel (may be NULL) is polled: when it
 * becomes nonzero the write stops with JPIP_E_LIMIT. JPIP_E_IO when f
 * cannot be written; JPIP_E_LIMIT too when the index has more bins than a
 * rendition table is allowed (1 << 26). */
jpip_code_t jpip_rend_write(const jpip_index_t *ix, jpip_src_t *src, apr_file_t *f,
                            volatile apr_uint32_t *cancel, jpip_err_t *err);

/* Open a rendition (data, size: typically a read-only mapping that
 * outlives the result) made from exactly this index. JPIP_E_FORMAT names
 * what does not match. */
jpip_code_t jpip_rend_load(jpip_rend_t **rd, apr_pool_t *pool, const jpip_index_t *ix,
                           const void *data, apr_size_t size, jpip_err_t *err);

/* Its table: the offset of the message of bin number n (see
 * jpip_index_bin_no) is table[n], or JPIP_REND_NONE. The message is
 * jpip_rend_msg_size bytes long: its header as jpip_jpp_header_size gives
 * it after another precinct message of its codestream, and the bin. The
 * loader checked that each lies in the file. */
const apr_uint64_t *jpip_rend_table(const jpip_rend_t *rd);
apr_uint64_t jpip_rend_msg_size(apr_uint64_t csn, apr_uint64_t id, const jpip_bin_t *bin);

/* Whether every precinct bin's message is the one message a plan makes
 * for all of its layers (the bin has bounds, the last at its length), so
 * that a row wanted whole may be sent as one range; and the most bounds
 * (layers) of any precinct bin. */
int jpip_rend_rows(const jpip_rend_t *rd, unsigned *max_nb);

/* The rendition's bytes and size. */
const unsigned char *jpip_rend_data(const jpip_rend_t *rd);
apr_uint64_t jpip_rend_size(const jpip_rend_t *rd);

#endif /* JPIP_RENDITION_H */
