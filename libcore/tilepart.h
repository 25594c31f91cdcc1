/* mod_jpip: the leading tile-parts of a tile that a view needs (JPT).
 *
 * A tile data-bin is the tile's tile-parts one after another (SOT
 * included), and a client can use only a prefix of it. When an encoder
 * splits each tile's packets into tile-parts by resolution (opj_compress
 * -TP R, the layout OpenJPIP documents for JPT), by layer (-TP L) or by
 * component (-TP C), a view that wants less than everything needs only the
 * tile-parts up to the last one holding a packet it wants: of a component
 * it serves, at a resolution up to the one it chose, in a layer below its
 * limit. The rest follows when a later view wants it (a session's model,
 * or a stateless model, records the prefix the client holds).
 *
 * The answer is computed from the index alone: the file position of the
 * last wanted byte of every wanted precinct, mapped into the tile bin.
 * Its cost is that of listing the tile's precincts up to the view's
 * resolution, as a JPP view of the whole tile would.
 */
#ifndef JPIP_TILEPART_H
#define JPIP_TILEPART_H

#include "index.h"
#include "jpip_err.h"
#include "view.h"

/* The number of leading tile-parts of tile t that view v needs, in
 * 1 .. ntp (ntp, the tile's tile-parts, when v wants all of the tile,
 * when the tile has one tile-part, or when the index cannot place a wanted
 * byte: the safe side; 1 when the view wants no packet of the tile, which
 * still needs its first tile-part header). 0 only for a tile without
 * tile-parts. Errors: JPIP_E_NOTFOUND for a tile or codestream the index
 * does not have. */
jpip_code_t jpip_tileparts_needed(const jpip_index_t *ix, const jpip_view_t *v, apr_uint32_t t,
                                  apr_uint32_t *count, jpip_err_t *err);

#endif /* JPIP_TILEPART_H */
