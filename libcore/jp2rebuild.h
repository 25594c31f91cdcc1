/* mod_jpip: client side, rebuild a JP2/JPX file from metadata-bins.
 *
 * Starting from metadata-bin 0, every box is written out:
 *   - an ordinary box is copied; a superbox (box.h jpip_box_is_super) is
 *     copied with its sub-boxes expanded the same way;
 *   - a placeholder with flag 4 (incremental codestream) becomes a 'jp2c'
 *     box holding the rebuilt codestream CSID (flag 8: CSID..CSID+NCS-1,
 *     one 'jp2c' each). This is also done for a JPX 'ftbl' placeholder,
 *     since the fragment offsets mean nothing in the rebuilt file;
 *   - a placeholder with flag 1 becomes OrigBH followed by the contents of
 *     bin OrigID (expanded again when OrigBH names a superbox);
 *   - otherwise flag 2: EquivBH followed by the contents of bin EquivID.
 * A box header from the bins (a copied header, OrigBH) is written as it is
 * whenever it still states the right length (or is LBox=0 on a box that
 * still runs to the end of the file); otherwise a new header is written,
 * with XLBox when the box reaches 4 GiB. So when every bin is complete and
 * the codestream callback returns the original codestream, a file laid out
 * by box.c comes back byte for byte (except 'ftbl', replaced by 'jp2c').
 *
 * A bin that is missing or incomplete drops its box if the box is not
 * needed to render (e.g. 'xml ', 'uuid', 'asoc'); for the others (jp2h and
 * its sub-boxes, jpch, jplh, cgrp, creg, opct, comp, ftyp, rreq) it is
 * JPIP_E_NOTFOUND naming the bin. Bin 0 itself must be complete.
 * An empty bin 0 (raw codestream target) yields codestream 0, bare.
 */
#ifndef JPIP_JP2REBUILD_H
#define JPIP_JP2REBUILD_H

#include <apr_pools.h>

#include "databin.h"
#include "jpip_err.h"

/* Produce the rebuilt codestream csid (e.g. libcore/rebuild.c). *bytes must
 * stay valid until jpip_jp2_rebuild returns. JPIP_E_NOTFOUND if it cannot. */
typedef jpip_code_t (*jpip_jp2_cs_fn)(void *ctx, apr_uint64_t csid, const unsigned char **bytes,
                                      apr_uint64_t *len, jpip_err_t *err);

/* Consume the next len bytes of the rebuilt file. */
typedef jpip_code_t (*jpip_jp2_write_fn)(void *ctx, const void *bytes, apr_size_t len,
                                         jpip_err_t *err);

/* Rebuild the file and pass it, in order, to write. Nothing is written
 * unless the whole file could be assembled. Scratch memory from pool.
 * Errors: JPIP_E_NOTFOUND (an essential bin or a codestream is missing),
 * JPIP_E_FORMAT (a bin does not parse as boxes, a bad placeholder),
 * JPIP_E_LIMIT (placeholders nested deeper than 32: a cycle), JPIP_E_NOMEM,
 * and whatever cs or write return. */
jpip_code_t jpip_jp2_rebuild(const jpip_binsrc_t *bins, jpip_jp2_cs_fn cs, void *cs_ctx,
                             jpip_jp2_write_fn write, void *write_ctx, apr_pool_t *pool,
                             jpip_err_t *err);

#endif /* JPIP_JP2REBUILD_H */
