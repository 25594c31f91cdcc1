/* mod_jpip: data-bin classes (T.808 Table A.2), shared by the server
 * (index, plan), the message codec and the client side (cache, rebuild). */
#ifndef JPIP_DATABIN_H
#define JPIP_DATABIN_H

#define JPIP_CLASS_PRECINCT 0     /* precinct data-bin (JPP) */
#define JPIP_CLASS_PRECINCT_EXT 1 /* extended precinct data-bin, with Aux */
#define JPIP_CLASS_TILEHDR 2      /* tile header data-bin (JPP) */
#define JPIP_CLASS_TILE 4         /* tile data-bin (JPT) */
#define JPIP_CLASS_TILE_EXT 5     /* extended tile data-bin, with Aux */
#define JPIP_CLASS_MAIN 6         /* main header data-bin */
#define JPIP_CLASS_META 8         /* metadata-bin */

#include <apr.h>

#include "jpip_err.h"

/* Where a rebuild (rebuild.h, jp2rebuild.h) reads data-bins from: the
 * server-side index, a client cache, or a test. get returns JPIP_OK with the
 * bin's bytes (the first *len bytes of the bin, *complete set if that is
 * the whole bin), or JPIP_E_NOTFOUND if nothing of the bin is held; any
 * other code aborts the rebuild. Metadata-bins are asked for with class 8
 * and csn 0. The bytes must stay valid until the rebuild returns. */
typedef struct jpip_binsrc_t {
    void *ctx;
    jpip_code_t (*get)(void *ctx, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                       const unsigned char **data, apr_size_t *len, int *complete, jpip_err_t *err);
} jpip_binsrc_t;

#endif /* JPIP_DATABIN_H */
