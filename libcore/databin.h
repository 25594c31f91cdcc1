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

#endif /* JPIP_DATABIN_H */
