/* mod_jpip: named regions of interest (T.808 C.4 `roi`, D.2 `JPIP-roi`).
 *
 * A file may name regions of its image in its metadata:
 *
 *   - XML boxes ('xml ', at any depth) holding elements such as OpenJPIP's
 *     opj_jpip_addxml writes: <roi name="island" x="1890" y="1950"
 *     w="770" h="310"/> (attributes in any order, quoted with " or ',
 *     decimal integers);
 *   - JPX ROI description boxes ('roid', T.801 Annex M) named by a label
 *     box ('lbl ') associated with them: a 'lbl ' beside the 'roid' in an
 *     enclosing 'asoc', or first in an 'asoc' beside it (the nearest such
 *     label going outwards). A 'roid' with several regions names their
 *     bounding box; an elliptical region its bounding box.
 *
 * Coordinates are full-resolution image samples from the top-left corner
 * of the image (what OpenJPIP's viewer assumes of its XML, and how
 * Kakadu's server treats 'roid' regions of the default codestream).
 * Regions are clipped to the image; a region outside it, empty, or with a
 * name that is not a JPIP token (the `roi` field's syntax) is left out.
 *
 * Everything read is untrusted: at most JPIP_ROI_MAX_BOX bytes of any one
 * box and JPIP_ROI_MAX_TOTAL in all are read, and at most JPIP_ROI_MAX
 * regions kept, in file order. A malformed element is skipped, never an
 * error: a region that cannot be read is simply not offered.
 */
#ifndef JPIP_ROI_H
#define JPIP_ROI_H

#include <apr_pools.h>

#include "box.h"
#include "index.h"
#include "jpip_err.h"
#include "request.h"
#include "source.h"

#define JPIP_ROI_MAX 1024
#define JPIP_ROI_MAX_BOX (1024 * 1024)
#define JPIP_ROI_MAX_TOTAL (8 * 1024 * 1024)

typedef struct jpip_roi_t {
    const char *name;
    apr_uint64_t x, y, w, h; /* full-resolution samples from the image's top-left corner */
} jpip_roi_t;

typedef struct jpip_roi_list_t {
    jpip_roi_t *rois; /* in file order */
    apr_size_t n;
} jpip_roi_list_t;

/* Collect the named regions of the file behind src (laid out as layout)
 * for an image of width x height samples, into *out (pool memory).
 * Errors: JPIP_E_IO when the file cannot be read, JPIP_E_NOMEM. */
jpip_code_t jpip_roi_collect(const jpip_box_layout_t *layout, jpip_src_t *src, apr_uint64_t width,
                             apr_uint64_t height, apr_pool_t *pool, jpip_roi_list_t *out,
                             jpip_err_t *err);

/* jpip_roi_collect over file (size bytes, open: the descriptor whose
 * identity was checked, never the path again), for codestream 0 of ix. */
jpip_code_t jpip_roi_load(const jpip_box_layout_t *layout, const jpip_index_t *ix, apr_file_t *file,
                          apr_uint64_t size, apr_pool_t *pool, jpip_roi_list_t *out,
                          jpip_err_t *err);

/* The region a `roi` value asks for, or NULL: the one of that name (the
 * first in file order), or for "dynamic" the region that overlaps the
 * request's own view-window most (its frame and region mapped onto the
 * full-resolution image; the whole image without a window), the first one
 * on a tie. width, height: the full-resolution image. */
const jpip_roi_t *jpip_roi_choose(const jpip_roi_list_t *list, const char *name,
                                  const jpip_request_t *req, apr_uint64_t width,
                                  apr_uint64_t height);

/* Set req's view-window to region roi of a width x height image: the
 * region replaces roff and rsiz; the frame stays the request's fsiz (the
 * region scaled into it, offset rounded down and end up) or, without one,
 * the full-resolution frame. */
void jpip_roi_apply(const jpip_roi_t *roi, apr_uint64_t width, apr_uint64_t height,
                    jpip_request_t *req);

/* The names on offer, comma-separated, for a sentence ("" if none). */
const char *jpip_roi_names(const jpip_roi_list_t *list, apr_pool_t *pool);

#endif /* JPIP_ROI_H */
