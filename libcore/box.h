/* mod_jpip: JP2-family box walker and metadata-bin layout.
 *
 * jpip_box_layout_build reads a target once and describes, as plain data:
 *
 *   - the container (raw codestream, JP2, JPX, JPH) and its brand;
 *   - the box table: every box of the file in depth-first file order, with
 *     where its header and its contents live in the metadata-bins;
 *   - the metadata-bins (protocol notes D.1/D.2): bin 0 is the top-level
 *     box sequence; a box is either carried verbatim in its parent's bin or
 *     replaced by a synthesised placeholder ('phld') whose OrigID bin holds
 *     the box's contents (Flags=1), or, for a codestream box ('jp2c', or a
 *     JPX fragment table 'ftbl'), stands for codestream CSID (Flags=4);
 *   - every codestream as a list of file fragments (jpip_piece_t), ready
 *     for jpip_src_open_frags;
 *   - the JPX compositing layers as lists of codestream indices.
 *
 * Layout rules, so that bin ids are stable for a given file (they are
 * assigned in depth-first file order, and depend only on the file bytes
 * and jpip_box_limits_t.verbatim_max):
 *
 *   - top-level 'jp2c' (and 'ftbl' in JPX files) -> Flags=4 placeholder,
 *     52 bytes (60 when the original header used XLBox): LBox, 'phld',
 *     Flags=4, OrigID, OrigBH, EquivID=0, EquivBH=8 zero bytes, CSID. This
 *     is exactly what Kakadu's server synthesises. Its OrigID names a bin
 *     that is always empty (flag bit 0 is clear: contents not offered);
 *   - top-level 'jP  ', 'ftyp', 'rreq' -> verbatim, whatever their size;
 *   - any other box whose contents are at most verbatim_max bytes (and
 *     whose length does not run past the end of the file) -> verbatim,
 *     with all its descendants;
 *   - any other box -> Flags=1 placeholder, 28 bytes (36 with XLBox):
 *     LBox, 'phld', Flags=1, OrigID, OrigBH. The OrigID bin holds the
 *     contents: for a superbox the same rules applied to its sub-boxes, for
 *     any other box the raw contents bytes.
 *   OrigBH is always the box header exactly as it is in the file.
 *
 * Everything in jpip_box_layout_t is position-free: the structures refer
 * to each other only by array index, and every array is (count, pointer)
 * of fixed-width fields, so the index builder can copy each array into a
 * flat serialized blob as it is. The single exception is the synthesised
 * placeholder bytes: pieces with JPIP_PIECE_SYNTH set have offsets into
 * layout->synth; when the synth bytes are copied into an index data area
 * at offset B, call jpip_box_layout_rebase_synth(layout, B) first (or add B
 * to those offsets yourself).
 *
 * Raw codestreams have no boxes: one codestream (the whole file), and one
 * metadata-bin, bin 0, empty and complete.
 */
#ifndef JPIP_BOX_H
#define JPIP_BOX_H

#include <apr_pools.h>

#include "jpip_err.h"
#include "piece.h"
#include "source.h"

/* A box type as a big-endian 32-bit number: JPIP_BOX_TYPE('j','p','2','c'). */
#define JPIP_BOX_TYPE(a, b, c, d)                                                                  \
    (((apr_uint32_t)(unsigned char)(a) << 24) | ((apr_uint32_t)(unsigned char)(b) << 16) |         \
     ((apr_uint32_t)(unsigned char)(c) << 8) | (apr_uint32_t)(unsigned char)(d))

#define JPIP_BOX_JP JPIP_BOX_TYPE('j', 'P', ' ', ' ')
#define JPIP_BOX_FTYP JPIP_BOX_TYPE('f', 't', 'y', 'p')
#define JPIP_BOX_RREQ JPIP_BOX_TYPE('r', 'r', 'e', 'q')
#define JPIP_BOX_JP2H JPIP_BOX_TYPE('j', 'p', '2', 'h')
#define JPIP_BOX_IHDR JPIP_BOX_TYPE('i', 'h', 'd', 'r')
#define JPIP_BOX_COLR JPIP_BOX_TYPE('c', 'o', 'l', 'r')
#define JPIP_BOX_JP2C JPIP_BOX_TYPE('j', 'p', '2', 'c')
#define JPIP_BOX_FTBL JPIP_BOX_TYPE('f', 't', 'b', 'l')
#define JPIP_BOX_FLST JPIP_BOX_TYPE('f', 'l', 's', 't')
#define JPIP_BOX_JPCH JPIP_BOX_TYPE('j', 'p', 'c', 'h')
#define JPIP_BOX_JPLH JPIP_BOX_TYPE('j', 'p', 'l', 'h')
#define JPIP_BOX_CREG JPIP_BOX_TYPE('c', 'r', 'e', 'g')
#define JPIP_BOX_COMP JPIP_BOX_TYPE('c', 'o', 'm', 'p')
#define JPIP_BOX_ASOC JPIP_BOX_TYPE('a', 's', 'o', 'c')
#define JPIP_BOX_XML JPIP_BOX_TYPE('x', 'm', 'l', ' ')
#define JPIP_BOX_UUID JPIP_BOX_TYPE('u', 'u', 'i', 'd')
#define JPIP_BOX_PHLD JPIP_BOX_TYPE('p', 'h', 'l', 'd')

/* "No such index" for box, bin and codestream references. */
#define JPIP_BOX_NONE ((apr_uint32_t)0xFFFFFFFFu)

/* Placeholder flags (Table A.3). */
#define JPIP_PHLD_ORIG 1u  /* original contents in bin OrigID */
#define JPIP_PHLD_EQUIV 2u /* stream equivalent in bin EquivID */
#define JPIP_PHLD_CS 4u    /* incremental codestream CSID */
#define JPIP_PHLD_MULTI 8u /* codestreams CSID .. CSID+NCS-1 */

typedef enum {
    JPIP_CONTAINER_RAW = 1, /* bare codestream (starts FF4F FF51) */
    JPIP_CONTAINER_JP2 = 2, /* brand 'jp2 ' (or compatible with it) */
    JPIP_CONTAINER_JPX = 3, /* brand 'jpx ' / 'jpxb' */
    JPIP_CONTAINER_JPH = 4, /* brand 'jph ' (HTJ2K) */
    /* DICOM Part 10, frames of encapsulated JPEG 2000 (dicom.h) */
    JPIP_CONTAINER_DICOM = 5
} jpip_container_t;

/* How a box appears in the metadata-bins. */
#define JPIP_BOX_VERBATIM 0 /* header and contents bytes in hdr_bin */
#define JPIP_BOX_PLACED 1   /* Flags=1 placeholder in hdr_bin, contents in contents_bin */
#define JPIP_BOX_CSTREAM 2  /* Flags=4 placeholder in hdr_bin; contents are codestream */

/* jpip_box_t.flags */
#define JPIP_BOXF_SUPER 1u /* a superbox: its contents were walked as boxes */
#define JPIP_BOXF_CUT 2u   /* its length runs past the end of the file: cut there */

/* One box. hdr_bin_len bytes at hdr_bin_off of bin hdr_bin are its header
 * (verbatim) or its placeholder box (placed, codestream). Its contents are
 * contents_bin_len bytes at contents_bin_off of bin contents_bin: for a
 * verbatim box that is the same bin, right after the header; for a placed
 * box it is the whole OrigID bin (whose length differs from contents_len
 * when sub-boxes were themselves replaced by placeholders); for a
 * codestream box contents_bin is the empty stand-in bin. Boxes inside a
 * codestream box (the 'flst' of an 'ftbl') are in no bin: their hdr_bin and
 * contents_bin are JPIP_BOX_NONE. The descendants of box i are exactly the
 * boxes i+1 .. end-1. */
typedef struct jpip_box_t {
    apr_uint64_t file_off;         /* offset of the box header in the file */
    apr_uint64_t contents_len;     /* bytes after the header, in the file */
    apr_uint64_t hdr_bin_off;      /* offset of header/placeholder in hdr_bin */
    apr_uint64_t contents_bin_off; /* offset of the contents in contents_bin */
    apr_uint64_t contents_bin_len; /* bytes of contents_bin that carry the contents */
    apr_uint32_t type;             /* TBox */
    apr_uint32_t parent;           /* box index, JPIP_BOX_NONE at top level */
    apr_uint32_t end;              /* one past the last descendant */
    apr_uint32_t hdr_bin;          /* metadata-bin holding the header */
    apr_uint32_t contents_bin;     /* metadata-bin holding the contents */
    apr_uint32_t codestream;       /* codestream index, or JPIP_BOX_NONE */
    apr_uint16_t depth;            /* 0 = top level */
    unsigned char hdr_len;         /* 8, or 16 with XLBox (LBox=1) */
    unsigned char hdr_bin_len;     /* hdr_len, or the placeholder length */
    unsigned char mode;            /* JPIP_BOX_VERBATIM / _PLACED / _CSTREAM */
    unsigned char flags;           /* JPIP_BOXF_* */
    unsigned char pad[2];          /* zero */
} jpip_box_t;

/* jpip_metabin_t.flags */
#define JPIP_METABIN_CSTREAM 1u /* OrigID of a codestream placeholder: always empty */

/* One metadata-bin: the concatenation of npieces pieces starting at
 * layout->pieces[first_piece]. Its id is its index in layout->bins. */
typedef struct jpip_metabin_t {
    apr_uint64_t length;      /* total bytes */
    apr_uint32_t first_piece; /* index into layout->pieces */
    apr_uint32_t npieces;
    apr_uint32_t box;   /* box whose contents this bin holds; JPIP_BOX_NONE for bin 0 */
    apr_uint32_t flags; /* JPIP_METABIN_* */
} jpip_metabin_t;

/* One codestream: the concatenation of nfrags file ranges starting at
 * layout->frags[first_frag] (one range for 'jp2c', the flst list for
 * 'ftbl', the whole file for a raw codestream). */
typedef struct jpip_cstream_t {
    apr_uint64_t length;     /* total bytes */
    apr_uint32_t first_frag; /* index into layout->frags */
    apr_uint32_t nfrags;
    apr_uint32_t box; /* the 'jp2c'/'ftbl' box, JPIP_BOX_NONE for raw */
    apr_uint32_t pad; /* zero */
} jpip_cstream_t;

/* One compositing layer: layer_cs[first .. first+count-1] are the indices
 * of the codestreams it uses. */
typedef struct jpip_layer_t {
    apr_uint32_t first;
    apr_uint32_t count;
} jpip_layer_t;

typedef struct jpip_box_layout_t {
    apr_uint32_t container; /* jpip_container_t */
    apr_uint32_t brand;     /* ftyp BR, 0 for raw */

    apr_uint32_t nboxes;
    jpip_box_t *boxes; /* depth-first file order */

    apr_uint32_t nbins;
    jpip_metabin_t *bins; /* bins[id] */

    apr_uint32_t npieces;
    jpip_piece_t *pieces; /* file ranges, or JPIP_PIECE_SYNTH | offset into synth */

    apr_uint64_t synth_len;
    unsigned char *synth; /* placeholder box bytes */

    apr_uint32_t ncodestreams;
    jpip_cstream_t *codestreams;

    apr_uint32_t nfrags;
    jpip_piece_t *frags; /* file ranges of codestream fragments */

    apr_uint32_t nlayers;
    jpip_layer_t *layers;
    apr_uint32_t nlayer_cs;
    apr_uint32_t *layer_cs;
} jpip_box_layout_t;

typedef struct jpip_box_limits_t {
    apr_uint32_t max_boxes;       /* boxes in the whole file */
    apr_uint32_t max_depth;       /* superbox nesting; top level is depth 0 */
    apr_uint32_t max_codestreams; /* jp2c + ftbl */
    apr_uint32_t max_frags;       /* codestream fragments in total */
    apr_uint64_t verbatim_max;    /* contents above this go behind a placeholder */
} jpip_box_limits_t;

/* Defaults: 1000000 boxes, depth 32, 65536 codestreams, 1048576 fragments,
 * verbatim_max 4096. */
void jpip_box_limits_default(jpip_box_limits_t *lim);

/* Identify the container from the first bytes of src: raw codestream or
 * JP2 family (signature box, then 'ftyp', whose brand or compatibility
 * list decides JP2/JPX/JPH). *brand gets the ftyp brand (0 for raw).
 * JPIP_E_FORMAT "not a JPEG 2000 file" for anything else; JPIP_E_UNSUPPORTED
 * for a JP2-family file of another kind (e.g. 'mjp2', 'jpm '). A file that
 * is neither but has "DICM" at offset 128 is JPIP_CONTAINER_DICOM, whose
 * layout jpip_box_layout_build takes from jpip_dicom_layout_build. */
jpip_code_t jpip_box_detect(jpip_src_t *src, jpip_container_t *container, apr_uint32_t *brand,
                            jpip_err_t *err);

/* Walk src and build its layout, allocated in pool. lim may be NULL for the
 * defaults. A JP2-family file without any codestream box builds (with
 * ncodestreams 0): whether to serve it is the caller's decision. A file
 * cut short is walked as far as it goes once a codestream box has been
 * met: a box whose length runs past the end of the file (a codestream box
 * itself, or any box after one) is taken to end there (JPIP_BOXF_CUT), and
 * a box header cut by the end of the file is not a box. Errors: JPIP_E_FORMAT for a
 * malformed box structure (message names the box type and file offset), JPIP_E_LIMIT when lim is
 * exceeded, JPIP_E_UNSUPPORTED for fragments in other files (ftbl with DR != 0), JPIP_E_IO /
 * JPIP_E_NOMEM. */
jpip_code_t jpip_box_layout_build(jpip_box_layout_t **layout, apr_pool_t *pool, jpip_src_t *src,
                                  const jpip_box_limits_t *lim, jpip_err_t *err);

/* Add base to the offset of every JPIP_PIECE_SYNTH piece (see above). */
void jpip_box_layout_rebase_synth(jpip_box_layout_t *layout, apr_uint64_t base);

/* The codestream indices used by compositing layer `layer`: *cs points at
 * *ncs indices inside the layout. JPX: layer i is the i-th top-level 'jplh'
 * box; its 'creg' box lists its codestreams, otherwise it uses codestream
 * i. Without 'jplh' boxes (JP2, or JPX without them) layer i is codestream
 * i. JPIP_E_NOTFOUND if the layer does not exist. */
jpip_code_t jpip_box_layer_codestreams(const jpip_box_layout_t *layout, apr_uint32_t layer,
                                       const apr_uint32_t **cs, apr_uint32_t *ncs, jpip_err_t *err);

/* Index of the first box at index >= from with the given type and parent
 * (JPIP_BOX_NONE parent = top level), or JPIP_BOX_NONE. */
apr_uint32_t jpip_box_find(const jpip_box_layout_t *layout, apr_uint32_t type, apr_uint32_t parent,
                           apr_uint32_t from);

/* Copy len bytes of metadata-bin `bin` starting at off into buf, reading
 * file pieces from src (the same file the layout was built from) and
 * placeholder bytes from layout->synth (which must not have been rebased).
 * JPIP_E_NOTFOUND for an unknown bin, JPIP_E_FORMAT if the range is
 * outside the bin. */
jpip_code_t jpip_box_bin_read(const jpip_box_layout_t *layout, jpip_src_t *src, apr_uint32_t bin,
                              apr_uint64_t off, void *buf, apr_size_t len, jpip_err_t *err);

/* Whether boxes of this type contain only boxes (jp2h, res , uinf, asoc,
 * jpch, jplh, cgrp, ftbl, comp, drep). The index boxes other servers
 * write (cidx, fidx, ...) are carried as opaque metadata: some writers
 * fill them with sub-boxes that do not parse (opj_compress -jpip). */
int jpip_box_is_super(apr_uint32_t type);

/* Write a box header for contents of contents_len bytes into hdr: 8 bytes,
 * or 16 (XLBox) when the box would not fit in 32 bits. Returns its length. */
unsigned jpip_box_header_put(unsigned char hdr[16], apr_uint32_t type, apr_uint64_t contents_len);

/* Printable form of a type for messages: 4 characters, non-printable bytes
 * as '?'. buf must hold 5 bytes; returns buf. */
const char *jpip_box_type_str(apr_uint32_t type, char buf[5]);

#endif /* JPIP_BOX_H */
