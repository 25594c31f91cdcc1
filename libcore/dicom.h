/* mod_jpip: DICOM Part 10 files whose Pixel Data is encapsulated JPEG 2000.
 *
 * jpip_dicom_parse walks a Part 10 file (128-byte preamble, "DICM", the
 * file meta group, then an Explicit VR Little Endian data set) only as far
 * as it must: the meta group for the Transfer Syntax UID, the top-level
 * elements up to Pixel Data (7FE0,0010), a few attributes a viewer needs,
 * and the items of the encapsulated Pixel Data. Every length is checked
 * against the file and the enclosing value before it is used; nested
 * sequences and items of undefined length are followed to their delimiters
 * (a UN element of undefined length as Implicit VR, PS3.5 6.2.2), odd
 * lengths are accepted, private elements are skipped like any other.
 * Nothing is read twice and no loop can run longer than the file has
 * bytes.
 *
 * Frames (PS3.5 A.4): the fragments after the Basic Offset Table item are
 * grouped into Number of Frames (0028,0008) frames (1 when absent), each a
 * JPEG 2000 codestream:
 *   - by the Extended Offset Table (7FE0,0001), and its Lengths (7FE0,0002)
 *     which cut each frame to its exact length, when present;
 *   - else by the Basic Offset Table when it is not empty;
 *   - else one fragment per frame when the counts agree, all fragments in
 *     one frame for a single-frame image, and otherwise a new frame at
 *     every fragment that starts with SOC + SIZ (FF4F FF51, Lsiz = 38+3C).
 * Table entries must name fragment starts, in increasing order, the first
 * one 0; a frame's last fragment loses the pad byte after its EOC when the
 * Lengths table does not give its length. A frame is the list of its
 * fragments' value ranges in the file (no copy): frame k (1-based, as DICOM
 * numbers them) is codestream k-1.
 *
 * Errors: JPIP_E_UNSUPPORTED when the file is DICOM but not served (another
 * transfer syntax, no Pixel Data, Pixel Data not encapsulated): the message
 * names the transfer syntax; JPIP_E_FORMAT for a malformed structure (the
 * message names the element or item and its file offset); JPIP_E_LIMIT
 * when a limit below is exceeded; JPIP_E_IO, JPIP_E_NOMEM.
 */
#ifndef JPIP_DICOM_H
#define JPIP_DICOM_H

#include <apr_pools.h>

#include "box.h"
#include "jpip_err.h"
#include "piece.h"
#include "source.h"

/* A tag as (group << 16) | element. */
#define JPIP_DICOM_TAG(g, e) ((((apr_uint32_t)(g)) << 16) | (apr_uint32_t)(e))

/* What the transfer syntax says about the pixel data. */
typedef enum {
    JPIP_DICOM_TS_OTHER = 0, /* not served */
    JPIP_DICOM_TS_J2K = 1,   /* 1.2.840.10008.1.2.4.90, .91, .92, .93 */
    JPIP_DICOM_TS_HTJ2K = 2  /* 1.2.840.10008.1.2.4.201, .202, .203 */
} jpip_dicom_ts_t;

typedef struct jpip_dicom_limits_t {
    apr_uint32_t max_depth;    /* sequence nesting below the top level (default 32) */
    apr_uint32_t max_frames;   /* frames (default 65536) */
    apr_uint32_t max_frags;    /* Pixel Data fragments (default 1048576) */
    apr_uint64_t max_elements; /* elements and items walked in all (default 4194304) */
    int keep_elements;         /* record every top-level element (jpip_dicom_t.elems) */
    int walk_all;              /* walk on after Pixel Data to the end of the data set */
} jpip_dicom_limits_t;

void jpip_dicom_limits_default(jpip_dicom_limits_t *lim);

/* One frame: frags[first_frag .. first_frag+nfrags) of the parse result. */
typedef struct jpip_dicom_frame_t {
    apr_uint64_t length; /* codestream bytes */
    apr_uint32_t first_frag;
    apr_uint32_t nfrags;
} jpip_dicom_frame_t;

/* One collected attribute: its value bytes as stored (at most
 * JPIP_DICOM_VALUE_MAX of them). parent is the index of the enclosing
 * sequence attribute in attrs, or -1 at the top level (nested attributes
 * are collected only on the path Shared Functional Groups Sequence >
 * Pixel Measures Sequence > Pixel Spacing, first items). */
#define JPIP_DICOM_VALUE_MAX 1024
typedef struct jpip_dicom_attr_t {
    apr_uint32_t tag;
    char vr[3];
    int parent;
    const unsigned char *value;
    apr_size_t len;
} jpip_dicom_attr_t;

/* One top-level element (keep_elements): bytes [off, end) of the file. */
typedef struct jpip_dicom_elem_t {
    apr_uint64_t off;       /* its tag */
    apr_uint64_t value_off; /* its value */
    apr_uint64_t end;       /* one past its value (past the delimiter if undefined length) */
    apr_uint32_t tag;
    char vr[3];
    int undefined; /* written with undefined length */
} jpip_dicom_elem_t;

typedef struct jpip_dicom_t {
    char ts_uid[65];          /* Transfer Syntax UID, trailing padding removed */
    jpip_dicom_ts_t ts;       /* its kind */
    char sop_class[65];       /* (0002,0002), else (0008,0016); "" if neither */
    char sop_inst[65];        /* (0002,0003), else (0008,0018); "" if neither */
    apr_uint64_t meta_off;    /* first meta element (132) */
    apr_uint64_t dataset_off; /* first data set element, after the meta group */
    apr_uint64_t pixel_off;   /* Pixel Data element */
    apr_uint64_t pixel_end;   /* one past its sequence delimiter */
    apr_uint32_t nframes;
    jpip_dicom_frame_t *frames;
    apr_uint32_t nfrags;
    jpip_piece_t *frags;   /* file ranges, frame after frame */
    const char *frames_by; /* how frames were found, for tools and logs */
    apr_uint32_t nattrs;
    jpip_dicom_attr_t *attrs;
    apr_uint32_t nelems; /* keep_elements only */
    jpip_dicom_elem_t *elems;
    apr_uint64_t nwalked; /* elements and items walked */
} jpip_dicom_t;

/* Whether src looks like a Part 10 file: at least 132 bytes, "DICM" at
 * offset 128. Reads 4 bytes; never fails (0 on a read error). */
int jpip_dicom_sniff(jpip_src_t *src);

/* Parse src (see above); lim may be NULL for the defaults. The result and
 * everything it points to live in pool. */
jpip_code_t jpip_dicom_parse(jpip_dicom_t **out, apr_pool_t *pool, jpip_src_t *src,
                             const jpip_dicom_limits_t *lim, jpip_err_t *err);

/* The box layout (box.h) of a DICOM target, for the indexer and metareq:
 * container JPIP_CONTAINER_DICOM; codestream i is frame i+1 (its fragments
 * as frags); compositing layer i uses codestream i. Metadata-bin 0 holds
 * boxes synthesised by the server, in this order (all verbatim except the
 * placeholders; every box's file_off is JPIP_PIECE_SYNTH | its offset in
 * layout->synth, since none of them is in the file):
 *   'jP  ', 'ftyp' (brand 'jp2 ' for one J2K frame, 'jph ' for one HTJ2K
 *   frame, else 'jpx ' compatible with 'jp2 '/'jph '), 'jp2h' ('ihdr' and
 *   'bpcc' from codestream 0's SIZ, 'colr' enumerated from Photometric
 *   Interpretation), 'xml ' (the collected attributes as a PS3.19 Native
 *   DICOM Model document, see docs/dicom.md), then one Flags=4 placeholder
 *   for a 'jp2c' box per frame, each with its own always-empty OrigID bin.
 * Box limits apply: max_codestreams caps the frames, max_frags the
 * fragments. Errors as jpip_dicom_parse, and JPIP_E_FORMAT when frame 1
 * does not start with SOC and SIZ. */
jpip_code_t jpip_dicom_layout_build(jpip_box_layout_t **layout, apr_pool_t *pool, jpip_src_t *src,
                                    const jpip_box_limits_t *lim, jpip_err_t *err);

/* The Native DICOM Model XML of the collected attributes (NUL-terminated,
 * *len bytes without the NUL). Values are escaped; bytes outside printable
 * ASCII become '?'. */
const char *jpip_dicom_xml(const jpip_dicom_t *d, apr_pool_t *pool, apr_size_t *len);

/* The collected attribute with this tag at the top level, or NULL. */
const jpip_dicom_attr_t *jpip_dicom_attr(const jpip_dicom_t *d, apr_uint32_t tag);

/* Classify a Transfer Syntax UID, and name it for messages ("Explicit VR
 * Little Endian", ...; NULL when unknown). */
jpip_dicom_ts_t jpip_dicom_ts_kind(const char *uid);
const char *jpip_dicom_ts_name(const char *uid);

/* ---- frame identifiers -------------------------------------------------
 * A frame of a multi-frame target is named "<target>;frame=<n>", n the
 * DICOM frame number, 1 .. Number of Frames, in decimal without sign or
 * leading zeros (docs/dicom.md). */

/* Split id into the target and the frame number. An id without the
 * ";frame=" suffix is the whole target: *frame = 0. JPIP_E_REQUEST for a
 * malformed suffix (*target and *frame untouched). *target is allocated in
 * pool. */
jpip_code_t jpip_dicom_frame_id_parse(apr_pool_t *pool, const char *id, const char **target,
                                      apr_uint32_t *frame, jpip_err_t *err);

/* The codestream of frame `frame` (1-based) of a target with ncodestreams
 * codestreams: frame - 1. JPIP_E_NOTFOUND naming the frame count when
 * there is no such frame. */
jpip_code_t jpip_dicom_frame_codestream(apr_uint32_t frame, apr_uint64_t ncodestreams,
                                        apr_uint64_t *csn, jpip_err_t *err);

#endif /* JPIP_DICOM_H */
