/* mod_jpip: the `metareq` request field (protocol notes A.2, D.4).
 *
 *   metareq      = 1#( "[" 1$(req-box-prop) "]" [root-bin] [max-depth] ) [metadata-only]
 *   req-box-prop = box-type [":" (UINT / "r")] ["/" 1*("w"/"s"/"g"/"a")] ["!"]
 *   root-bin     = "R" UINT          max-depth = "D" UINT        metadata-only = "!!"
 *
 * A box type is 4 characters, or "*" for any type. In a type, "_" stands
 * for a space and "\ddd" (three octal digits) for any byte; other
 * printable characters that are not part of the grammar ("[]:;/!,\_")
 * stand for themselves. The parser takes the value already percent-decoded.
 *
 * The matcher turns a parsed request into byte ranges of metadata-bins,
 * given a box layout (box.h):
 *   - the scope of each bracketed item is the boxes of root bin R (default
 *     0) and their descendants down to D levels below (default unlimited;
 *     D0 = the boxes of the root bin only), counted in box nesting;
 *   - for each match it selects the box's locator: its header (or its
 *     placeholder), the headers of the boxes before it in the same bin and
 *     the same for each ancestor, up to bin 0, so a client can walk from
 *     the start of each bin on the placeholder path to the box;
 *   - then contents: ":n" the first n bytes of the contents (as carried in
 *     the contents bin), ":0" none, ":r" none but the locators of every
 *     descendant, no limit the whole box including the contents bins of
 *     every placed descendant. Codestream contents are never selected.
 *   - the qualifiers: this server has no region- or codestream-tied
 *     metadata, every box is global, so a box matches whatever the
 *     qualifier; when an item asked for neither g nor a, the served request
 *     differs from the one asked and `modified` is set.
 */
#ifndef JPIP_METAREQ_H
#define JPIP_METAREQ_H

#include <apr_pools.h>

#include "box.h"
#include "jpip_err.h"

/* jpip_metareq_prop_t.qual bits; 0 means absent (= w|s|g). */
#define JPIP_MQ_W 1u
#define JPIP_MQ_S 2u
#define JPIP_MQ_G 4u
#define JPIP_MQ_A 8u

/* jpip_metareq_prop_t.limit values */
#define JPIP_MQ_LIMIT_NONE ((apr_uint64_t)-1) /* whole box */
#define JPIP_MQ_LIMIT_R ((apr_uint64_t)-2)    /* ":r" */

typedef struct jpip_metareq_prop_t {
    apr_uint32_t type;  /* box type (meaningless when any) */
    int any;            /* "*" */
    apr_uint64_t limit; /* bytes of contents, or JPIP_MQ_LIMIT_NONE / _R */
    unsigned qual;      /* JPIP_MQ_* bits, 0 if absent */
    int priority;       /* "!" */
} jpip_metareq_prop_t;

typedef struct jpip_metareq_item_t {
    apr_size_t first_prop; /* index into props */
    apr_size_t nprops;
    apr_uint64_t root;  /* R, default 0 */
    apr_uint64_t depth; /* D, default JPIP_MQ_DEPTH_ANY */
} jpip_metareq_item_t;

#define JPIP_MQ_DEPTH_ANY ((apr_uint64_t)-1)

typedef struct jpip_metareq_t {
    jpip_metareq_item_t *items;
    apr_size_t nitems;
    jpip_metareq_prop_t *props;
    apr_size_t nprops;
    int metadata_only; /* trailing "!!" */
} jpip_metareq_t;

/* Most props accepted in one field; more is a JPIP_E_REQUEST error. */
#define JPIP_MQ_MAX_PROPS 1024

/* Parse the percent-decoded value s (len bytes, NUL not required) into
 * *req, allocated in pool. JPIP_E_REQUEST with a message naming the
 * character offset (0-based) and what was expected. */
jpip_code_t jpip_metareq_parse(jpip_metareq_t *req, apr_pool_t *pool, const char *s, apr_size_t len,
                               jpip_err_t *err);

/* Write req back in the grammar (box types encoded as above), e.g. for a
 * JPIP-metareq response header. With `served` set, qualifiers are dropped
 * from items that asked for neither g nor a (what the matcher served). */
const char *jpip_metareq_format(const jpip_metareq_t *req, int served, apr_pool_t *pool);

/* A selected byte range of a metadata-bin. */
typedef struct jpip_metarange_t {
    apr_uint64_t off;
    apr_uint64_t len;
    apr_uint32_t bin;
    int priority; /* from a "!" prop: send before image data */
} jpip_metarange_t;

/* The matcher's result: ranges sorted by (bin, off), non-overlapping and
 * non-adjacent within a bin (adjacent/overlapping selections are merged;
 * a merged range has priority if any part had). */
typedef struct jpip_metasel_t {
    jpip_metarange_t *ranges;
    apr_size_t nranges;
    int modified; /* the served request differs from the one asked */
} jpip_metasel_t;

/* Select the metadata-bin bytes that answer req over layout. out's arrays
 * are allocated in pool. Never fails on content: an absent type, an
 * unknown root bin or a root bin that holds no boxes select nothing.
 * Errors: JPIP_E_NOMEM. */
jpip_code_t jpip_metareq_match(const jpip_metareq_t *req, const jpip_box_layout_t *layout,
                               apr_pool_t *pool, jpip_metasel_t *out, jpip_err_t *err);

/* The metadata a client needs to render codestreams cs[0..ncs-1] (cs NULL:
 * codestream 0), sent whatever metareq says: all of bin 0, the whole
 * 'jp2h' box, and for JPX the whole 'jpch' box of each listed codestream,
 * the whole 'jplh' box of each layer using one of them, and the 'comp'
 * box. Ranges as for jpip_metareq_match, priority set; an empty bin 0 (raw
 * codestream) appears as one zero-length range (bin 0, off 0, len 0),
 * meaning: send it as complete and empty. */
jpip_code_t jpip_metareq_render(const jpip_box_layout_t *layout, const apr_uint32_t *cs,
                                apr_size_t ncs, apr_pool_t *pool, jpip_metasel_t *out,
                                jpip_err_t *err);

/* The end offsets, increasing, of the boxes carried at the top of
 * metadata-bin `bin` (the top-level boxes for bin 0, the sub-boxes of a
 * placed superbox for its contents bin; each verbatim box or placeholder
 * once): where one message per box ends (plan.h jpip_plan_meta_ends). A bin
 * that holds the raw contents of one box, an unknown bin, or a bin without
 * boxes gives *n = 0. *ends is allocated in pool. Errors: JPIP_E_NOMEM. */
jpip_code_t jpip_metareq_box_ends(const jpip_box_layout_t *layout, apr_uint32_t bin,
                                  apr_pool_t *pool, const apr_uint64_t **ends, apr_size_t *n,
                                  jpip_err_t *err);

#endif /* JPIP_METAREQ_H */
