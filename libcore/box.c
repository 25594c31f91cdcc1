/* mod_jpip: JP2-family box walker and metadata-bin layout. */
#include "box.h"

#include <string.h>

#include "dicom.h"

#include <apr_strings.h>
#include <apr_tables.h>

#define SIG_CONTENTS 0x0D0A870Au

/* Growable array of fixed-size elements with an element limit. */
typedef struct vec_t {
    apr_pool_t *pool;
    void *data;
    apr_size_t n;
    apr_size_t cap;
    apr_size_t elt;
} vec_t;

static void vec_init(vec_t *v, apr_pool_t *pool, apr_size_t elt)
{
    v->pool = pool;
    v->data = NULL;
    v->n = 0;
    v->cap = 0;
    v->elt = elt;
}

/* Make room for k more elements; returns a pointer to the first new one
 * (zeroed), or NULL when out of memory. */
static void *vec_push(vec_t *v, apr_size_t k)
{
    void *p;

    if (v->n + k > v->cap) {
        apr_size_t cap = v->cap ? v->cap : 16;
        void *nd;

        while (cap < v->n + k) {
            cap *= 2;
        }
        nd = apr_palloc(v->pool, cap * v->elt);
        if (nd == NULL) {
            return NULL;
        }
        if (v->n > 0) {
            memcpy(nd, v->data, v->n * v->elt);
        }
        v->data = nd;
        v->cap = cap;
    }
    p = (char *)v->data + v->n * v->elt;
    memset(p, 0, k * v->elt);
    v->n += k;
    return p;
}

#define VEC_AT(v, T, i) (((T *)(v)->data)[i])

typedef struct builder_t {
    apr_pool_t *pool;
    jpip_src_t *src;
    jpip_box_limits_t lim;
    jpip_err_t *err;
    apr_uint64_t size;
    jpip_container_t container;
    vec_t boxes;  /* jpip_box_t */
    vec_t bins;   /* jpip_metabin_t */
    vec_t pieces; /* jpip_piece_t */
    vec_t synth;  /* unsigned char */
    vec_t cs;     /* jpip_cstream_t */
    vec_t frags;  /* jpip_piece_t */
    vec_t layers; /* jpip_layer_t */
    vec_t lcs;    /* apr_uint32_t */
    int cs_seen;  /* the walk has met a codestream box */
} builder_t;

const char *jpip_box_type_str(apr_uint32_t type, char buf[5])
{
    int i;

    for (i = 0; i < 4; i++) {
        unsigned char c = (unsigned char)(type >> (24 - 8 * i));
        buf[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    buf[4] = '\0';
    return buf;
}

int jpip_box_is_super(apr_uint32_t type)
{
    static const apr_uint32_t super[] = {
        JPIP_BOX_TYPE('j', 'p', '2', 'h'), JPIP_BOX_TYPE('r', 'e', 's', ' '),
        JPIP_BOX_TYPE('u', 'i', 'n', 'f'), JPIP_BOX_TYPE('a', 's', 'o', 'c'),
        JPIP_BOX_TYPE('j', 'p', 'c', 'h'), JPIP_BOX_TYPE('j', 'p', 'l', 'h'),
        JPIP_BOX_TYPE('c', 'g', 'r', 'p'), JPIP_BOX_TYPE('f', 't', 'b', 'l'),
        JPIP_BOX_TYPE('c', 'o', 'm', 'p'), JPIP_BOX_TYPE('d', 'r', 'e', 'p'),
    };
    apr_size_t i;

    for (i = 0; i < sizeof(super) / sizeof(super[0]); i++) {
        if (super[i] == type) {
            return 1;
        }
    }
    return 0;
}

unsigned jpip_box_header_put(unsigned char hdr[16], apr_uint32_t type, apr_uint64_t contents_len)
{
    int i;

    if (contents_len <= 0xFFFFFFFFu - 8) {
        apr_uint32_t l = (apr_uint32_t)(contents_len + 8);
        for (i = 0; i < 4; i++) {
            hdr[i] = (unsigned char)(l >> (24 - 8 * i));
            hdr[4 + i] = (unsigned char)(type >> (24 - 8 * i));
        }
        return 8;
    }
    for (i = 0; i < 4; i++) {
        hdr[i] = (unsigned char)(1u >> (24 - 8 * i));
        hdr[4 + i] = (unsigned char)(type >> (24 - 8 * i));
    }
    for (i = 0; i < 8; i++) {
        hdr[8 + i] = (unsigned char)((contents_len + 16) >> (56 - 8 * i));
    }
    return 16;
}

void jpip_box_limits_default(jpip_box_limits_t *lim)
{
    lim->max_boxes = 1000000;
    lim->max_depth = 32;
    lim->max_codestreams = 65536;
    lim->max_frags = 1048576;
    lim->verbatim_max = 4096;
}

static int brand_in(apr_uint32_t b, apr_uint32_t t1, apr_uint32_t t2)
{
    return b == t1 || b == t2;
}

/* Container from ftyp: brand first, then the compatibility list. */
static jpip_container_t container_of(apr_uint32_t br, const unsigned char *cl, apr_size_t ncl)
{
    const apr_uint32_t jp2 = JPIP_BOX_TYPE('j', 'p', '2', ' ');
    const apr_uint32_t jpx = JPIP_BOX_TYPE('j', 'p', 'x', ' ');
    const apr_uint32_t jpxb = JPIP_BOX_TYPE('j', 'p', 'x', 'b');
    const apr_uint32_t jph = JPIP_BOX_TYPE('j', 'p', 'h', ' ');
    jpip_container_t found = 0;
    apr_size_t i;

    if (br == jp2) {
        return JPIP_CONTAINER_JP2;
    }
    if (brand_in(br, jpx, jpxb)) {
        return JPIP_CONTAINER_JPX;
    }
    if (br == jph) {
        return JPIP_CONTAINER_JPH;
    }
    for (i = 0; i < ncl; i++) {
        apr_uint32_t c = jpip_be32(cl + 4 * i);
        if (brand_in(c, jpx, jpxb)) {
            return JPIP_CONTAINER_JPX;
        }
        if (c == jph && found == 0) {
            found = JPIP_CONTAINER_JPH;
        }
        if (c == jp2 && found == 0) {
            found = JPIP_CONTAINER_JP2;
        }
    }
    return found;
}

jpip_code_t jpip_box_detect(jpip_src_t *src, jpip_container_t *container, apr_uint32_t *brand,
                            jpip_err_t *err)
{
    apr_uint64_t size = jpip_src_size(src);
    unsigned char h[20];
    apr_uint32_t flen, br;
    apr_uint64_t ncl;
    const unsigned char *cl;
    jpip_code_t rc;
    jpip_container_t c;
    char tb[5];

    *brand = 0;
    if (size >= 4) {
        rc = jpip_src_read(src, 0, h, 4, err);
        if (rc != JPIP_OK) {
            return rc;
        }
        if (h[0] == 0xFF && h[1] == 0x4F && h[2] == 0xFF && h[3] == 0x51) {
            *container = JPIP_CONTAINER_RAW;
            return JPIP_OK;
        }
    }
    if (size < 20) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "not a JPEG 2000 file (%" APR_UINT64_T_FMT
                            " bytes, no codestream or JP2 signature)",
                            size);
    }
    rc = jpip_src_read(src, 0, h, 20, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    if (jpip_be32(h) != 12 || jpip_be32(h + 4) != JPIP_BOX_JP || jpip_be32(h + 8) != SIG_CONTENTS) {
        if (jpip_dicom_sniff(src)) {
            *container = JPIP_CONTAINER_DICOM;
            return JPIP_OK;
        }
        return jpip_err_set(
            err, JPIP_E_FORMAT,
            "not a JPEG 2000 file (no codestream SOC/SIZ and no JP2 signature box)");
    }
    flen = jpip_be32(h + 12);
    if (jpip_be32(h + 16) != JPIP_BOX_FTYP) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "JP2 signature box not followed by a 'ftyp' box (found '%s' at offset "
                            "12)",
                            jpip_box_type_str(jpip_be32(h + 16), tb));
    }
    if (flen < 16 || (flen - 16) % 4 != 0 || flen > 12 + 4096 || flen > size - 12) {
        return jpip_err_set(err, JPIP_E_FORMAT, "'ftyp' box at offset 12 has bad length %u", flen);
    }
    rc = jpip_src_u32(src, 20, &br, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    ncl = (flen - 16) / 4;
    rc = jpip_src_peek(src, 28, (apr_size_t)(flen - 16), &cl, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    c = container_of(br, cl, (apr_size_t)ncl);
    *brand = br;
    if (c == 0) {
        return jpip_err_set(err, JPIP_E_UNSUPPORTED,
                            "JP2-family file of brand '%s' is neither JP2, JPX nor JPH",
                            jpip_box_type_str(br, tb));
    }
    *container = c;
    return JPIP_OK;
}

/* ---- box walk ---------------------------------------------------------- */

/* Whether a box that the end of the file cuts short may be kept, cut at
 * the end: a codestream box, or anything after one. A reader that has
 * reached the codestream has what it needs (openjpeg reads a codestream
 * to its end whatever its box says, and ignores what follows it); before
 * that, the file is refused. */
static int cut_ok(const builder_t *b, apr_uint32_t type)
{
    return b->cs_seen || type == JPIP_BOX_JP2C ||
           (type == JPIP_BOX_FTBL && b->container == JPIP_CONTAINER_JPX);
}

static jpip_code_t walk(builder_t *b, apr_uint64_t start, apr_uint64_t end, int end_is_eof,
                        apr_uint32_t parent, unsigned depth)
{
    apr_uint64_t off = start;
    char tb[5], pb[5];
    const char *pname = "the file";

    if (parent != JPIP_BOX_NONE) {
        const jpip_box_t *pbx = &VEC_AT(&b->boxes, jpip_box_t, parent);
        pname = apr_psprintf(b->pool, "its parent '%s' at offset %" APR_UINT64_T_FMT,
                             jpip_box_type_str(pbx->type, pb), pbx->file_off);
    }
    while (off < end) {
        unsigned char h[16];
        apr_uint32_t lbox, type, idx;
        apr_uint64_t blen;
        unsigned hl = 8;
        int cut = 0;
        jpip_box_t *bx;
        jpip_code_t rc;

        if (end - off < 8 && end_is_eof && b->cs_seen) {
            break; /* the start of a box header, cut by the end of the file: not a box */
        }
        if (end - off < 8) {
            return jpip_err_set(b->err, JPIP_E_FORMAT,
                                "truncated box header at offset %" APR_UINT64_T_FMT
                                " (%" APR_UINT64_T_FMT " bytes left in %s)",
                                off, end - off, pname);
        }
        rc = jpip_src_read(b->src, off, h, 8, b->err);
        if (rc != JPIP_OK) {
            return rc;
        }
        lbox = jpip_be32(h);
        type = jpip_be32(h + 4);
        if (lbox == 1) {
            if (end - off < 16 && end_is_eof && b->cs_seen) {
                break;
            }
            if (end - off < 16) {
                return jpip_err_set(b->err, JPIP_E_FORMAT,
                                    "box '%s' at offset %" APR_UINT64_T_FMT
                                    ": truncated XLBox header in %s",
                                    jpip_box_type_str(type, tb), off, pname);
            }
            rc = jpip_src_read(b->src, off + 8, h + 8, 8, b->err);
            if (rc != JPIP_OK) {
                return rc;
            }
            blen = jpip_be64(h + 8);
            hl = 16;
            if (blen < 16) {
                return jpip_err_set(b->err, JPIP_E_FORMAT,
                                    "box '%s' at offset %" APR_UINT64_T_FMT
                                    ": XLBox %" APR_UINT64_T_FMT " is shorter than its header",
                                    jpip_box_type_str(type, tb), off, blen);
            }
        } else if (lbox == 0) {
            if (!end_is_eof) {
                return jpip_err_set(b->err, JPIP_E_FORMAT,
                                    "box '%s' at offset %" APR_UINT64_T_FMT
                                    ": LBox=0 (to end of file) inside %s, which ends before the "
                                    "end of the file",
                                    jpip_box_type_str(type, tb), off, pname);
            }
            blen = end - off;
        } else if (lbox < 8) {
            return jpip_err_set(b->err, JPIP_E_FORMAT,
                                "box '%s' at offset %" APR_UINT64_T_FMT
                                ": LBox %u is shorter than its header",
                                jpip_box_type_str(type, tb), off, lbox);
        } else {
            blen = lbox;
        }
        if (blen > end - off && end_is_eof && cut_ok(b, type)) {
            blen = end - off; /* cut short by the end of the file: what there is of it */
            cut = 1;
        }
        if (blen > end - off) {
            return jpip_err_set(b->err, JPIP_E_FORMAT,
                                "box '%s' at offset %" APR_UINT64_T_FMT
                                " of length %" APR_UINT64_T_FMT
                                " overruns %s, which ends at offset %" APR_UINT64_T_FMT,
                                jpip_box_type_str(type, tb), off, blen, pname, end);
        }
        if (b->boxes.n >= b->lim.max_boxes) {
            return jpip_err_set(b->err, JPIP_E_LIMIT,
                                "box '%s' at offset %" APR_UINT64_T_FMT
                                ": more than %u boxes in the file",
                                jpip_box_type_str(type, tb), off, b->lim.max_boxes);
        }
        idx = (apr_uint32_t)b->boxes.n;
        bx = vec_push(&b->boxes, 1);
        if (bx == NULL) {
            return jpip_err_set(b->err, JPIP_E_NOMEM, "out of memory for the box table");
        }
        bx->file_off = off;
        bx->contents_len = blen - hl;
        bx->type = type;
        bx->parent = parent;
        bx->depth = (apr_uint16_t)depth;
        bx->hdr_len = (unsigned char)hl;
        bx->codestream = JPIP_BOX_NONE;
        bx->hdr_bin = JPIP_BOX_NONE;
        bx->contents_bin = JPIP_BOX_NONE;
        bx->flags = cut ? JPIP_BOXF_CUT : 0;
        if (type == JPIP_BOX_JP2C ||
            (type == JPIP_BOX_FTBL && b->container == JPIP_CONTAINER_JPX)) {
            b->cs_seen = 1;
        }
        if (jpip_box_is_super(type)) {
            VEC_AT(&b->boxes, jpip_box_t, idx).flags |= JPIP_BOXF_SUPER;
            if (depth + 1 > b->lim.max_depth) {
                return jpip_err_set(b->err, JPIP_E_LIMIT,
                                    "superbox '%s' at offset %" APR_UINT64_T_FMT
                                    ": nesting deeper than %u",
                                    jpip_box_type_str(type, tb), off, b->lim.max_depth);
            }
            rc = walk(b, off + hl, off + blen, end_is_eof && off + blen == end, idx, depth + 1);
            if (rc != JPIP_OK) {
                return rc;
            }
        }
        /* b->boxes may have moved during the recursion */
        VEC_AT(&b->boxes, jpip_box_t, idx).end = (apr_uint32_t)b->boxes.n;
        off += blen;
    }
    return JPIP_OK;
}

/* ---- codestreams and layers -------------------------------------------- */

static jpip_code_t add_frag(builder_t *b, apr_uint64_t off, apr_uint64_t len)
{
    jpip_piece_t *p;

    if (len == 0) {
        return JPIP_OK;
    }
    if (b->frags.n >= b->lim.max_frags) {
        return jpip_err_set(b->err, JPIP_E_LIMIT, "more than %u codestream fragments",
                            b->lim.max_frags);
    }
    p = vec_push(&b->frags, 1);
    if (p == NULL) {
        return jpip_err_set(b->err, JPIP_E_NOMEM, "out of memory for codestream fragments");
    }
    p->off = off;
    p->len = len;
    return JPIP_OK;
}

/* Fragments of the fragment table box fi (its one 'flst'). */
static jpip_code_t ftbl_frags(builder_t *b, apr_uint32_t fi, apr_uint32_t csi, jpip_cstream_t *cs)
{
    jpip_box_t *ft = &VEC_AT(&b->boxes, jpip_box_t, fi);
    apr_uint32_t j, fl = JPIP_BOX_NONE, nfl = 0;
    apr_uint64_t base, k;
    unsigned nf;
    jpip_code_t rc;

    for (j = fi + 1; j < ft->end; j = VEC_AT(&b->boxes, jpip_box_t, j).end) {
        if (VEC_AT(&b->boxes, jpip_box_t, j).type == JPIP_BOX_FLST) {
            if (fl == JPIP_BOX_NONE) {
                fl = j;
            }
            nfl++;
        }
    }
    if (nfl != 1) {
        return jpip_err_set(b->err, JPIP_E_FORMAT,
                            "fragment table 'ftbl' at offset %" APR_UINT64_T_FMT
                            " (codestream %u) has %u 'flst' boxes, expected one",
                            ft->file_off, csi, nfl);
    }
    {
        const jpip_box_t *fb = &VEC_AT(&b->boxes, jpip_box_t, fl);
        base = fb->file_off + fb->hdr_len;
        if (fb->contents_len < 2) {
            return jpip_err_set(b->err, JPIP_E_FORMAT,
                                "'flst' box at offset %" APR_UINT64_T_FMT " has no NF field",
                                fb->file_off);
        }
        rc = jpip_src_u16(b->src, base, &nf, b->err);
        if (rc != JPIP_OK) {
            return rc;
        }
        if (fb->contents_len != 2 + (apr_uint64_t)nf * 14) {
            return jpip_err_set(b->err, JPIP_E_FORMAT,
                                "'flst' box at offset %" APR_UINT64_T_FMT
                                ": NF=%u needs %u bytes of contents, box has %" APR_UINT64_T_FMT,
                                fb->file_off, nf, 2 + nf * 14, fb->contents_len);
        }
    }
    cs->first_frag = (apr_uint32_t)b->frags.n;
    for (k = 0; k < nf; k++) {
        unsigned char e[14];
        apr_uint64_t off, len;
        unsigned dr;

        rc = jpip_src_read(b->src, base + 2 + 14 * k, e, 14, b->err);
        if (rc != JPIP_OK) {
            return rc;
        }
        off = jpip_be64(e);
        len = jpip_be32(e + 8);
        dr = jpip_be16(e + 12);
        if (dr != 0) {
            return jpip_err_set(
                b->err, JPIP_E_UNSUPPORTED,
                "codestream %u ('ftbl' at offset %" APR_UINT64_T_FMT
                "): fragment %" APR_UINT64_T_FMT
                " is in external data reference %u ('dtbl' entry), not in this file",
                csi, ft->file_off, k, dr);
        }
        if (off > b->size || len > b->size - off) {
            return jpip_err_set(b->err, JPIP_E_FORMAT,
                                "codestream %u ('ftbl' at offset %" APR_UINT64_T_FMT
                                "): fragment %" APR_UINT64_T_FMT " (offset %" APR_UINT64_T_FMT
                                ", length %" APR_UINT64_T_FMT ") lies outside the file",
                                csi, ft->file_off, k, off, len);
        }
        rc = add_frag(b, off, len);
        if (rc != JPIP_OK) {
            return rc;
        }
        cs->length += len;
    }
    cs->nfrags = (apr_uint32_t)(b->frags.n - cs->first_frag);
    return JPIP_OK;
}

static jpip_code_t find_codestreams(builder_t *b)
{
    apr_uint32_t i;
    char tb[5];

    for (i = 0; i < b->boxes.n; i = VEC_AT(&b->boxes, jpip_box_t, i).end) {
        jpip_box_t *bx = &VEC_AT(&b->boxes, jpip_box_t, i);
        jpip_cstream_t *cs;
        apr_uint32_t csi = (apr_uint32_t)b->cs.n;
        jpip_code_t rc;

        if (bx->type != JPIP_BOX_JP2C &&
            !(bx->type == JPIP_BOX_FTBL && b->container == JPIP_CONTAINER_JPX)) {
            continue;
        }
        if (csi >= b->lim.max_codestreams) {
            return jpip_err_set(
                b->err, JPIP_E_LIMIT,
                "box '%s' at offset %" APR_UINT64_T_FMT ": more than %u codestreams",
                jpip_box_type_str(bx->type, tb), bx->file_off, b->lim.max_codestreams);
        }
        bx->codestream = csi;
        cs = vec_push(&b->cs, 1);
        if (cs == NULL) {
            return jpip_err_set(b->err, JPIP_E_NOMEM, "out of memory for codestreams");
        }
        cs->box = i;
        if (bx->type == JPIP_BOX_JP2C) {
            cs->first_frag = (apr_uint32_t)b->frags.n;
            rc = add_frag(b, bx->file_off + bx->hdr_len, bx->contents_len);
            if (rc != JPIP_OK) {
                return rc;
            }
            cs->nfrags = (apr_uint32_t)(b->frags.n - cs->first_frag);
            cs->length = bx->contents_len;
        } else {
            rc = ftbl_frags(b, i, csi, cs);
            if (rc != JPIP_OK) {
                return rc;
            }
        }
    }
    return JPIP_OK;
}

static jpip_code_t push_layer_cs(builder_t *b, apr_uint32_t cs)
{
    apr_uint32_t *p = vec_push(&b->lcs, 1);

    if (p == NULL) {
        return jpip_err_set(b->err, JPIP_E_NOMEM, "out of memory for compositing layers");
    }
    *p = cs;
    return JPIP_OK;
}

/* Codestreams of layer box li ('jplh'): its 'creg' list, else codestream
 * `layer`. */
static jpip_code_t jplh_layer(builder_t *b, apr_uint32_t li, apr_uint32_t layer)
{
    const jpip_box_t *lb = &VEC_AT(&b->boxes, jpip_box_t, li);
    apr_uint32_t j, creg = JPIP_BOX_NONE;
    jpip_layer_t *ly;
    jpip_code_t rc;

    for (j = li + 1; j < lb->end; j = VEC_AT(&b->boxes, jpip_box_t, j).end) {
        if (VEC_AT(&b->boxes, jpip_box_t, j).type == JPIP_BOX_CREG) {
            creg = j;
            break;
        }
    }
    ly = vec_push(&b->layers, 1);
    if (ly == NULL) {
        return jpip_err_set(b->err, JPIP_E_NOMEM, "out of memory for compositing layers");
    }
    ly->first = (apr_uint32_t)b->lcs.n;
    if (creg == JPIP_BOX_NONE) {
        if (layer < b->cs.n) {
            rc = push_layer_cs(b, layer);
            if (rc != JPIP_OK) {
                return rc;
            }
        }
    } else {
        const jpip_box_t *cb = &VEC_AT(&b->boxes, jpip_box_t, creg);
        apr_uint64_t n, k, base = cb->file_off + cb->hdr_len;

        if (cb->contents_len < 4 || (cb->contents_len - 4) % 6 != 0) {
            return jpip_err_set(b->err, JPIP_E_FORMAT,
                                "'creg' box at offset %" APR_UINT64_T_FMT
                                ": contents length %" APR_UINT64_T_FMT " is not 4 + 6n",
                                cb->file_off, cb->contents_len);
        }
        n = (cb->contents_len - 4) / 6;
        if (n > 65536) {
            return jpip_err_set(b->err, JPIP_E_LIMIT,
                                "'creg' box at offset %" APR_UINT64_T_FMT
                                " lists %" APR_UINT64_T_FMT " codestreams",
                                cb->file_off, n);
        }
        for (k = 0; k < n; k++) {
            unsigned cdn;

            rc = jpip_src_u16(b->src, base + 4 + 6 * k, &cdn, b->err);
            if (rc != JPIP_OK) {
                return rc;
            }
            if (cdn >= b->cs.n) {
                return jpip_err_set(b->err, JPIP_E_FORMAT,
                                    "'creg' box at offset %" APR_UINT64_T_FMT
                                    " (layer %u) names codestream %u; the file has %u",
                                    cb->file_off, layer, cdn, (unsigned)b->cs.n);
            }
            rc = push_layer_cs(b, cdn);
            if (rc != JPIP_OK) {
                return rc;
            }
        }
    }
    /* ly is still valid: only b->lcs grew */
    ly->count = (apr_uint32_t)(b->lcs.n - ly->first);
    return JPIP_OK;
}

static jpip_code_t find_layers(builder_t *b)
{
    apr_uint32_t i, nl = 0;
    jpip_code_t rc;

    for (i = 0; i < b->boxes.n; i = VEC_AT(&b->boxes, jpip_box_t, i).end) {
        if (VEC_AT(&b->boxes, jpip_box_t, i).type == JPIP_BOX_JPLH) {
            rc = jplh_layer(b, i, nl);
            if (rc != JPIP_OK) {
                return rc;
            }
            nl++;
        }
    }
    if (nl > 0) {
        return JPIP_OK;
    }
    for (i = 0; i < b->cs.n; i++) {
        jpip_layer_t *ly = vec_push(&b->layers, 1);
        if (ly == NULL) {
            return jpip_err_set(b->err, JPIP_E_NOMEM, "out of memory for compositing layers");
        }
        ly->first = (apr_uint32_t)b->lcs.n;
        ly->count = 1;
        rc = push_layer_cs(b, i);
        if (rc != JPIP_OK) {
            return rc;
        }
    }
    return JPIP_OK;
}

/* ---- metadata-bin layout ----------------------------------------------- */

static jpip_code_t new_bin(builder_t *b, apr_uint32_t box, apr_uint32_t flags, apr_uint32_t *id)
{
    jpip_metabin_t *m = vec_push(&b->bins, 1);

    if (m == NULL) {
        return jpip_err_set(b->err, JPIP_E_NOMEM, "out of memory for metadata-bins");
    }
    m->box = box;
    m->flags = flags;
    *id = (apr_uint32_t)(b->bins.n - 1);
    return JPIP_OK;
}

/* Decide how each box is carried and give every placeholder its OrigID,
 * in depth-first file order. */
static jpip_code_t assign_modes(builder_t *b)
{
    apr_uint32_t i, id = 0;
    jpip_code_t rc;

    rc = new_bin(b, JPIP_BOX_NONE, 0, &id); /* bin 0 */
    if (rc != JPIP_OK) {
        return rc;
    }
    for (i = 0; i < b->boxes.n; i++) {
        jpip_box_t *bx = &VEC_AT(&b->boxes, jpip_box_t, i);
        int top = bx->parent == JPIP_BOX_NONE;

        if (!top) {
            const jpip_box_t *pb = &VEC_AT(&b->boxes, jpip_box_t, bx->parent);
            /* inside a verbatim box: verbatim too; inside a codestream
             * box: in no bin at all (fill_bin never reaches it) */
            if (pb->mode == JPIP_BOX_VERBATIM || pb->mode == JPIP_BOX_CSTREAM) {
                bx->mode = JPIP_BOX_VERBATIM;
                continue;
            }
        }
        if (top && bx->codestream != JPIP_BOX_NONE) {
            bx->mode = JPIP_BOX_CSTREAM;
            rc = new_bin(b, i, JPIP_METABIN_CSTREAM, &id);
        } else if (!(bx->flags & JPIP_BOXF_CUT) &&
                   ((top && (bx->type == JPIP_BOX_JP || bx->type == JPIP_BOX_FTYP ||
                             bx->type == JPIP_BOX_RREQ)) ||
                    bx->contents_len <= b->lim.verbatim_max)) {
            /* (a box cut by the end of the file goes behind a placeholder:
             * its header states more than its bin could hold) */
            bx->mode = JPIP_BOX_VERBATIM;
            continue;
        } else {
            bx->mode = JPIP_BOX_PLACED;
            rc = new_bin(b, i, 0, &id);
        }
        if (rc != JPIP_OK) {
            return rc;
        }
        VEC_AT(&b->boxes, jpip_box_t, i).contents_bin = id;
    }
    return JPIP_OK;
}

static void put32(unsigned char *p, apr_uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void put64(unsigned char *p, apr_uint64_t v)
{
    put32(p, (apr_uint32_t)(v >> 32));
    put32(p + 4, (apr_uint32_t)v);
}

static jpip_code_t add_piece(builder_t *b, jpip_metabin_t *m, apr_uint64_t off, apr_uint64_t len)
{
    jpip_piece_t *p;

    if (len == 0) {
        return JPIP_OK;
    }
    if (m->npieces > 0 && !(off & JPIP_PIECE_SYNTH)) {
        jpip_piece_t *last = &VEC_AT(&b->pieces, jpip_piece_t, b->pieces.n - 1);
        if (!jpip_piece_is_synth(last) && last->off + last->len == off) {
            last->len += len;
            m->length += len;
            return JPIP_OK;
        }
    }
    p = vec_push(&b->pieces, 1);
    if (p == NULL) {
        return jpip_err_set(b->err, JPIP_E_NOMEM, "out of memory for metadata pieces");
    }
    p->off = off;
    p->len = len;
    m->npieces++;
    m->length += len;
    return JPIP_OK;
}

/* Synthesise the placeholder for box i into the synth buffer and add it to
 * bin m. Layout per protocol notes D.2 (and Kakadu): LBox 'phld' Flags
 * OrigID(8) OrigBH(8|16) [EquivID(8) EquivBH(8) CSID(8)]. */
static jpip_code_t add_placeholder(builder_t *b, jpip_metabin_t *m, apr_uint32_t i)
{
    const jpip_box_t *bx = &VEC_AT(&b->boxes, jpip_box_t, i);
    int cs = bx->mode == JPIP_BOX_CSTREAM;
    unsigned len = 20 + bx->hdr_len + (cs ? 24 : 0);
    apr_uint64_t at = b->synth.n;
    unsigned char *p = vec_push(&b->synth, len);
    jpip_code_t rc;

    if (p == NULL) {
        return jpip_err_set(b->err, JPIP_E_NOMEM, "out of memory for placeholders");
    }
    put32(p, len);
    put32(p + 4, JPIP_BOX_PHLD);
    put32(p + 8, cs ? JPIP_PHLD_CS : JPIP_PHLD_ORIG);
    put64(p + 12, bx->contents_bin);
    rc = jpip_src_read(b->src, bx->file_off, p + 20, bx->hdr_len, b->err);
    if (rc != JPIP_OK) {
        return rc;
    }
    if (cs) {
        /* EquivID and EquivBH zero (vec_push zeroed them), then CSID */
        put64(p + 20 + bx->hdr_len + 16, bx->codestream);
    }
    VEC_AT(&b->boxes, jpip_box_t, i).hdr_bin_len = (unsigned char)len;
    return add_piece(b, m, JPIP_PIECE_SYNTH | at, len);
}

/* Lay out the boxes first..end (siblings, walked by their end index) into
 * bin id. */
static jpip_code_t fill_bin(builder_t *b, apr_uint32_t id, apr_uint32_t first, apr_uint32_t end)
{
    apr_uint32_t i, j;
    jpip_code_t rc;

    for (i = first; i < end; i = VEC_AT(&b->boxes, jpip_box_t, i).end) {
        jpip_metabin_t *m = &VEC_AT(&b->bins, jpip_metabin_t, id);
        jpip_box_t *bx = &VEC_AT(&b->boxes, jpip_box_t, i);
        apr_uint64_t pos = m->length;

        bx->hdr_bin = id;
        bx->hdr_bin_off = pos;
        if (bx->mode != JPIP_BOX_VERBATIM) {
            rc = add_placeholder(b, m, i);
            if (rc != JPIP_OK) {
                return rc;
            }
            continue;
        }
        bx->hdr_bin_len = bx->hdr_len;
        rc = add_piece(b, m, bx->file_off, bx->hdr_len + bx->contents_len);
        if (rc != JPIP_OK) {
            return rc;
        }
        /* the box and all its descendants sit verbatim in this bin */
        for (j = i; j < bx->end; j++) {
            jpip_box_t *d = &VEC_AT(&b->boxes, jpip_box_t, j);

            d->hdr_bin = id;
            d->hdr_bin_off = pos + (d->file_off - bx->file_off);
            d->hdr_bin_len = d->hdr_len;
            d->contents_bin = id;
            d->contents_bin_off = d->hdr_bin_off + d->hdr_len;
            d->contents_bin_len = d->contents_len;
        }
    }
    return JPIP_OK;
}

static jpip_code_t layout_bins(builder_t *b)
{
    apr_uint32_t id;
    jpip_code_t rc;

    for (id = 0; id < b->bins.n; id++) {
        jpip_metabin_t *m = &VEC_AT(&b->bins, jpip_metabin_t, id);
        const jpip_box_t *bx;

        m->first_piece = (apr_uint32_t)b->pieces.n;
        if (id == 0) {
            rc = fill_bin(b, 0, 0, (apr_uint32_t)b->boxes.n);
        } else if (m->flags & JPIP_METABIN_CSTREAM) {
            continue;
        } else {
            bx = &VEC_AT(&b->boxes, jpip_box_t, m->box);
            if (bx->flags & JPIP_BOXF_SUPER) {
                rc = fill_bin(b, id, m->box + 1, bx->end);
            } else {
                rc = add_piece(b, m, bx->file_off + bx->hdr_len, bx->contents_len);
            }
        }
        if (rc != JPIP_OK) {
            return rc;
        }
        if (b->pieces.n > 0xFFFFFFF0u) {
            return jpip_err_set(b->err, JPIP_E_LIMIT, "too many metadata pieces");
        }
    }
    /* placed and codestream boxes: contents are their whole OrigID bin */
    for (id = 0; id < b->boxes.n; id++) {
        jpip_box_t *bx = &VEC_AT(&b->boxes, jpip_box_t, id);
        if (bx->mode != JPIP_BOX_VERBATIM) {
            bx->contents_bin_off = 0;
            bx->contents_bin_len = VEC_AT(&b->bins, jpip_metabin_t, bx->contents_bin).length;
        }
    }
    return JPIP_OK;
}

jpip_code_t jpip_box_layout_build(jpip_box_layout_t **layout, apr_pool_t *pool, jpip_src_t *src,
                                  const jpip_box_limits_t *lim, jpip_err_t *err)
{
    builder_t b;
    jpip_box_layout_t *l;
    jpip_container_t container;
    apr_uint32_t brand;
    jpip_code_t rc;

    memset(&b, 0, sizeof(b));
    b.pool = pool;
    b.src = src;
    b.err = err;
    b.size = jpip_src_size(src);
    if (lim != NULL) {
        b.lim = *lim;
    } else {
        jpip_box_limits_default(&b.lim);
    }
    vec_init(&b.boxes, pool, sizeof(jpip_box_t));
    vec_init(&b.bins, pool, sizeof(jpip_metabin_t));
    vec_init(&b.pieces, pool, sizeof(jpip_piece_t));
    vec_init(&b.synth, pool, 1);
    vec_init(&b.cs, pool, sizeof(jpip_cstream_t));
    vec_init(&b.frags, pool, sizeof(jpip_piece_t));
    vec_init(&b.layers, pool, sizeof(jpip_layer_t));
    vec_init(&b.lcs, pool, sizeof(apr_uint32_t));

    rc = jpip_box_detect(src, &container, &brand, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    if (container == JPIP_CONTAINER_DICOM) {
        return jpip_dicom_layout_build(layout, pool, src, &b.lim, err);
    }
    b.container = container;
    if (container == JPIP_CONTAINER_RAW) {
        jpip_cstream_t *cs;
        apr_uint32_t id = 0;

        rc = new_bin(&b, JPIP_BOX_NONE, 0, &id);
        if (rc == JPIP_OK) {
            cs = vec_push(&b.cs, 1);
            if (cs == NULL) {
                return jpip_err_set(err, JPIP_E_NOMEM, "out of memory");
            }
            cs->box = JPIP_BOX_NONE;
            cs->length = b.size;
            rc = add_frag(&b, 0, b.size);
            VEC_AT(&b.cs, jpip_cstream_t, 0).nfrags = (apr_uint32_t)b.frags.n;
        }
        if (rc == JPIP_OK) {
            rc = find_layers(&b);
        }
    } else {
        rc = walk(&b, 0, b.size, 1, JPIP_BOX_NONE, 0);
        if (rc == JPIP_OK) {
            rc = find_codestreams(&b);
        }
        if (rc == JPIP_OK) {
            rc = find_layers(&b);
        }
        if (rc == JPIP_OK) {
            rc = assign_modes(&b);
        }
        if (rc == JPIP_OK) {
            rc = layout_bins(&b);
        }
    }
    if (rc != JPIP_OK) {
        return rc;
    }
    l = apr_pcalloc(pool, sizeof(*l));
    if (l == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory");
    }
    l->container = container;
    l->brand = brand;
    l->nboxes = (apr_uint32_t)b.boxes.n;
    l->boxes = b.boxes.data;
    l->nbins = (apr_uint32_t)b.bins.n;
    l->bins = b.bins.data;
    l->npieces = (apr_uint32_t)b.pieces.n;
    l->pieces = b.pieces.data;
    l->synth_len = b.synth.n;
    l->synth = b.synth.data;
    l->ncodestreams = (apr_uint32_t)b.cs.n;
    l->codestreams = b.cs.data;
    l->nfrags = (apr_uint32_t)b.frags.n;
    l->frags = b.frags.data;
    l->nlayers = (apr_uint32_t)b.layers.n;
    l->layers = b.layers.data;
    l->nlayer_cs = (apr_uint32_t)b.lcs.n;
    l->layer_cs = b.lcs.data;
    *layout = l;
    return JPIP_OK;
}

void jpip_box_layout_rebase_synth(jpip_box_layout_t *layout, apr_uint64_t base)
{
    apr_uint32_t i;

    for (i = 0; i < layout->npieces; i++) {
        if (jpip_piece_is_synth(&layout->pieces[i])) {
            layout->pieces[i].off += base;
        }
    }
}

jpip_code_t jpip_box_layer_codestreams(const jpip_box_layout_t *layout, apr_uint32_t layer,
                                       const apr_uint32_t **cs, apr_uint32_t *ncs, jpip_err_t *err)
{
    if (layer >= layout->nlayers) {
        return jpip_err_set(err, JPIP_E_NOTFOUND, "compositing layer %u does not exist (%u layers)",
                            layer, layout->nlayers);
    }
    *ncs = layout->layers[layer].count;
    *cs = *ncs > 0 ? layout->layer_cs + layout->layers[layer].first : NULL;
    return JPIP_OK;
}

apr_uint32_t jpip_box_find(const jpip_box_layout_t *layout, apr_uint32_t type, apr_uint32_t parent,
                           apr_uint32_t from)
{
    apr_uint32_t i;

    for (i = from; i < layout->nboxes; i++) {
        if (layout->boxes[i].type == type && layout->boxes[i].parent == parent) {
            return i;
        }
    }
    return JPIP_BOX_NONE;
}

jpip_code_t jpip_box_bin_read(const jpip_box_layout_t *layout, jpip_src_t *src, apr_uint32_t bin,
                              apr_uint64_t off, void *buf, apr_size_t len, jpip_err_t *err)
{
    const jpip_metabin_t *m;
    unsigned char *dst = buf;
    apr_uint64_t pos = 0;
    apr_uint32_t k;

    if (bin >= layout->nbins) {
        return jpip_err_set(err, JPIP_E_NOTFOUND, "metadata-bin %u does not exist", bin);
    }
    m = &layout->bins[bin];
    if (off > m->length || len > m->length - off) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "range of %" APR_SIZE_T_FMT " bytes at %" APR_UINT64_T_FMT
                            " is outside metadata-bin %u (%" APR_UINT64_T_FMT " bytes)",
                            len, off, bin, m->length);
    }
    for (k = 0; k < m->npieces && len > 0; k++) {
        const jpip_piece_t *p = &layout->pieces[m->first_piece + k];
        apr_uint64_t in, n;

        if (off >= pos + p->len) {
            pos += p->len;
            continue;
        }
        in = off - pos;
        n = p->len - in;
        if (n > len) {
            n = len;
        }
        if (jpip_piece_is_synth(p)) {
            apr_uint64_t so = (p->off & ~JPIP_PIECE_SYNTH) + in;
            if (so > layout->synth_len || n > layout->synth_len - so) {
                return jpip_err_set(err, JPIP_E_FORMAT, "placeholder bytes outside synth data");
            }
            memcpy(dst, layout->synth + so, (apr_size_t)n);
        } else {
            jpip_code_t rc = jpip_src_read(src, p->off + in, dst, (apr_size_t)n, err);
            if (rc != JPIP_OK) {
                return rc;
            }
        }
        dst += n;
        off += n;
        len -= (apr_size_t)n;
        pos += p->len;
    }
    return JPIP_OK;
}
