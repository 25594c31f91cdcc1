/* mod_jpip: rebuild a JP2/JPX file from metadata-bins and codestreams. */
#include "jp2rebuild.h"

#include <string.h>

#include <apr_tables.h>

#include "box.h"
#include "source.h"

#define RB_MAX_DEPTH 32

/* The output is assembled as a list of segments (pointers into the bins,
 * the codestreams and small header buffers) and written only at the end,
 * once every box length is known. */
typedef struct seg_t {
    const unsigned char *p;
    apr_uint64_t len;
} seg_t;

typedef struct rb_t {
    const jpip_binsrc_t *bins;
    jpip_jp2_cs_fn cs;
    void *cs_ctx;
    apr_pool_t *pool;
    jpip_err_t *err;
    apr_array_header_t *segs;
} rb_t;

static int essential(apr_uint32_t type)
{
    static const apr_uint32_t ess[] = {
        JPIP_BOX_TYPE('j', 'p', '2', 'h'), JPIP_BOX_TYPE('i', 'h', 'd', 'r'),
        JPIP_BOX_TYPE('c', 'o', 'l', 'r'), JPIP_BOX_TYPE('b', 'p', 'c', 'c'),
        JPIP_BOX_TYPE('p', 'c', 'l', 'r'), JPIP_BOX_TYPE('c', 'm', 'a', 'p'),
        JPIP_BOX_TYPE('c', 'd', 'e', 'f'), JPIP_BOX_TYPE('j', 'p', 'c', 'h'),
        JPIP_BOX_TYPE('j', 'p', 'l', 'h'), JPIP_BOX_TYPE('c', 'g', 'r', 'p'),
        JPIP_BOX_TYPE('c', 'r', 'e', 'g'), JPIP_BOX_TYPE('o', 'p', 'c', 't'),
        JPIP_BOX_TYPE('c', 'o', 'm', 'p'), JPIP_BOX_TYPE('f', 't', 'y', 'p'),
        JPIP_BOX_TYPE('r', 'r', 'e', 'q'), JPIP_BOX_TYPE('j', 'P', ' ', ' '),
        JPIP_BOX_TYPE('j', 'p', '2', 'c'), JPIP_BOX_TYPE('f', 't', 'b', 'l'),
    };
    apr_size_t i;

    for (i = 0; i < sizeof(ess) / sizeof(ess[0]); i++) {
        if (ess[i] == type) {
            return 1;
        }
    }
    return 0;
}

static jpip_code_t push_seg(rb_t *rb, const unsigned char *p, apr_uint64_t len)
{
    seg_t *s = apr_array_push(rb->segs);

    if (s == NULL) {
        return jpip_err_set(rb->err, JPIP_E_NOMEM, "out of memory rebuilding the file");
    }
    s->p = p;
    s->len = len;
    return JPIP_OK;
}

/* Sum of segment lengths from index `from` on. */
static apr_uint64_t segs_len(const rb_t *rb, int from)
{
    const seg_t *s = (const seg_t *)rb->segs->elts;
    apr_uint64_t n = 0;
    int i;

    for (i = from; i < rb->segs->nelts; i++) {
        n += s[i].len;
    }
    return n;
}

/* Decoded box header. */
typedef struct hdr_t {
    apr_uint32_t lbox;
    apr_uint32_t type;
    unsigned hl;       /* 8 or 16 */
    apr_uint64_t blen; /* whole box, 0 when lbox == 0 */
} hdr_t;

/* Parse a box header at p (avail bytes). */
static jpip_code_t parse_hdr(rb_t *rb, const unsigned char *p, apr_uint64_t avail, hdr_t *h,
                             apr_uint64_t bin, apr_uint64_t off)
{
    char tb[5];

    if (avail < 8) {
        return jpip_err_set(rb->err, JPIP_E_FORMAT,
                            "metadata-bin %" APR_UINT64_T_FMT
                            ": truncated box header at offset %" APR_UINT64_T_FMT,
                            bin, off);
    }
    h->lbox = jpip_be32(p);
    h->type = jpip_be32(p + 4);
    h->hl = 8;
    h->blen = h->lbox;
    if (h->lbox == 1) {
        if (avail < 16) {
            return jpip_err_set(rb->err, JPIP_E_FORMAT,
                                "metadata-bin %" APR_UINT64_T_FMT
                                ": truncated XLBox header of '%s' at offset %" APR_UINT64_T_FMT,
                                bin, jpip_box_type_str(h->type, tb), off);
        }
        h->hl = 16;
        h->blen = jpip_be64(p + 8);
        if (h->blen < 16) {
            return jpip_err_set(rb->err, JPIP_E_FORMAT,
                                "metadata-bin %" APR_UINT64_T_FMT
                                ": box '%s' at offset %" APR_UINT64_T_FMT
                                " has XLBox %" APR_UINT64_T_FMT,
                                bin, jpip_box_type_str(h->type, tb), off, h->blen);
        }
    } else if (h->lbox != 0 && h->lbox < 8) {
        return jpip_err_set(rb->err, JPIP_E_FORMAT,
                            "metadata-bin %" APR_UINT64_T_FMT
                            ": box '%s' at offset %" APR_UINT64_T_FMT " has LBox %u",
                            bin, jpip_box_type_str(h->type, tb), off, h->lbox);
    }
    return JPIP_OK;
}

/* Fill the header reserved at segment index hseg for a box of `type` whose
 * contents are the segments after it. orig (hl bytes) is the header the
 * bins gave; reuse it when it still fits. */
static jpip_code_t finish_header(rb_t *rb, int hseg, apr_uint32_t type, const unsigned char *orig,
                                 const hdr_t *oh, int at_eof)
{
    apr_uint64_t clen = segs_len(rb, hseg + 1);
    seg_t *s = &((seg_t *)rb->segs->elts)[hseg];
    unsigned char *h;

    if (orig != NULL && oh->type == type &&
        ((oh->lbox == 0 && at_eof) ||
         (oh->lbox != 0 && oh->blen >= oh->hl && oh->blen - oh->hl == clen))) {
        s->p = orig;
        s->len = oh->hl;
        return JPIP_OK;
    }
    h = apr_palloc(rb->pool, 16);
    if (h == NULL) {
        return jpip_err_set(rb->err, JPIP_E_NOMEM, "out of memory rebuilding the file");
    }
    s->p = h;
    s->len = jpip_box_header_put(h, type, clen);
    return JPIP_OK;
}

static jpip_code_t expand(rb_t *rb, const unsigned char *p, apr_uint64_t n, apr_uint64_t bin,
                          unsigned depth, int at_eof);

/* Write codestream csid as a 'jp2c' box; orig/oh: the header to reuse. */
static jpip_code_t put_codestream(rb_t *rb, apr_uint64_t csid, const unsigned char *orig,
                                  const hdr_t *oh, int at_eof)
{
    const unsigned char *cs = NULL;
    apr_uint64_t len = 0;
    int hseg = rb->segs->nelts;
    jpip_code_t rc;

    rc = push_seg(rb, NULL, 0);
    if (rc != JPIP_OK) {
        return rc;
    }
    rc = rb->cs(rb->cs_ctx, csid, &cs, &len, rb->err);
    if (rc != JPIP_OK) {
        if (rb->err != NULL && rb->err->code != rc) {
            jpip_err_set(rb->err, rc, "codestream %" APR_UINT64_T_FMT " could not be rebuilt",
                         csid);
        }
        return rc;
    }
    rc = push_seg(rb, cs, len);
    if (rc != JPIP_OK) {
        return rc;
    }
    return finish_header(rb, hseg, JPIP_BOX_JP2C, orig, oh, at_eof);
}

/* Fetch a metadata-bin that must be complete. *present = 0 if it is missing
 * or incomplete. */
static jpip_code_t get_bin(rb_t *rb, apr_uint64_t id, const unsigned char **bytes,
                           apr_uint64_t *len, int *present)
{
    int complete = 0;
    apr_size_t n = 0;
    jpip_err_t gerr;
    jpip_code_t rc =
        rb->bins->get(rb->bins->ctx, JPIP_CLASS_META, 0, id, bytes, &n, &complete, &gerr);

    *len = n;
    *present = 0;
    if (rc == JPIP_E_NOTFOUND) {
        return JPIP_OK;
    }
    if (rc != JPIP_OK) {
        return jpip_err_set(rb->err, rc, "metadata-bin %" APR_UINT64_T_FMT " could not be read",
                            id);
    }
    *present = complete;
    return JPIP_OK;
}

/* The placeholder box at p (blen bytes including its 8-byte header). */
static jpip_code_t put_placeholder(rb_t *rb, const unsigned char *p, apr_uint64_t blen,
                                   apr_uint64_t bin, apr_uint64_t off, unsigned depth, int at_eof)
{
    const unsigned char *q = p + 8, *obh, *ebh = NULL;
    apr_uint64_t rest = blen - 8, origid, equivid = 0, csid = 0, ncs = 1;
    apr_uint32_t flags;
    hdr_t oh, eh;
    jpip_code_t rc;
    char tb[5];

    if (rest < 20) {
        return jpip_err_set(rb->err, JPIP_E_FORMAT,
                            "metadata-bin %" APR_UINT64_T_FMT
                            ": placeholder at offset %" APR_UINT64_T_FMT " is %" APR_UINT64_T_FMT
                            " bytes, too short",
                            bin, off, blen);
    }
    flags = jpip_be32(q);
    origid = jpip_be64(q + 4);
    obh = q + 12;
    rc = parse_hdr(rb, obh, rest - 12, &oh, bin, off);
    if (rc != JPIP_OK) {
        return rc;
    }
    q = obh + oh.hl;
    rest -= 12 + oh.hl;
    if (flags & (JPIP_PHLD_EQUIV | JPIP_PHLD_CS | JPIP_PHLD_MULTI)) {
        if (rest < 8) {
            return jpip_err_set(rb->err, JPIP_E_FORMAT,
                                "metadata-bin %" APR_UINT64_T_FMT
                                ": placeholder at offset %" APR_UINT64_T_FMT " lacks EquivID",
                                bin, off);
        }
        equivid = jpip_be64(q);
        ebh = q + 8;
        rc = parse_hdr(rb, ebh, rest - 8, &eh, bin, off);
        if (rc != JPIP_OK) {
            return rc;
        }
        q = ebh + eh.hl;
        rest -= 8 + eh.hl;
    }
    if (flags & (JPIP_PHLD_CS | JPIP_PHLD_MULTI)) {
        if (rest < 8) {
            return jpip_err_set(rb->err, JPIP_E_FORMAT,
                                "metadata-bin %" APR_UINT64_T_FMT
                                ": placeholder at offset %" APR_UINT64_T_FMT " lacks CSID",
                                bin, off);
        }
        csid = jpip_be64(q);
        q += 8;
        rest -= 8;
        if (flags & JPIP_PHLD_MULTI) {
            if (rest < 4) {
                return jpip_err_set(rb->err, JPIP_E_FORMAT,
                                    "metadata-bin %" APR_UINT64_T_FMT
                                    ": placeholder at offset %" APR_UINT64_T_FMT " lacks NCS",
                                    bin, off);
            }
            ncs = jpip_be32(q);
        }
    }
    if (flags & (JPIP_PHLD_CS | JPIP_PHLD_MULTI)) {
        apr_uint64_t k;
        for (k = 0; k < ncs; k++) {
            rc = put_codestream(rb, csid + k, ncs == 1 ? obh : NULL, &oh, at_eof && k + 1 == ncs);
            if (rc != JPIP_OK) {
                return rc;
            }
        }
        return JPIP_OK;
    }
    if (flags & (JPIP_PHLD_ORIG | JPIP_PHLD_EQUIV)) {
        int orig = (flags & JPIP_PHLD_ORIG) != 0;
        apr_uint64_t id = orig ? origid : equivid;
        const unsigned char *hb = orig ? obh : ebh;
        const hdr_t *h = orig ? &oh : &eh;
        const unsigned char *bytes = NULL;
        apr_uint64_t len = 0;
        int present, hseg;

        rc = get_bin(rb, id, &bytes, &len, &present);
        if (rc != JPIP_OK) {
            return rc;
        }
        if (!present) {
            if (essential(h->type)) {
                return jpip_err_set(rb->err, JPIP_E_NOTFOUND,
                                    "metadata-bin %" APR_UINT64_T_FMT
                                    " (contents of the '%s' box) is missing or incomplete",
                                    id, jpip_box_type_str(h->type, tb));
            }
            return JPIP_OK; /* leave the box out */
        }
        hseg = rb->segs->nelts;
        rc = push_seg(rb, NULL, 0);
        if (rc != JPIP_OK) {
            return rc;
        }
        if (jpip_box_is_super(h->type)) {
            rc = expand(rb, bytes, len, id, depth + 1, at_eof);
        } else {
            rc = push_seg(rb, bytes, len);
        }
        if (rc != JPIP_OK) {
            return rc;
        }
        return finish_header(rb, hseg, h->type, hb, h, at_eof);
    }
    if (essential(oh.type)) {
        return jpip_err_set(rb->err, JPIP_E_FORMAT,
                            "metadata-bin %" APR_UINT64_T_FMT
                            ": placeholder for '%s' at offset %" APR_UINT64_T_FMT
                            " has flags %u: nothing to rebuild it from",
                            bin, jpip_box_type_str(oh.type, tb), off, flags);
    }
    return JPIP_OK;
}

/* Expand the box sequence p[0..n) of bin `bin` into segments. at_eof: the
 * sequence runs to the end of the rebuilt file. */
static jpip_code_t expand(rb_t *rb, const unsigned char *p, apr_uint64_t n, apr_uint64_t bin,
                          unsigned depth, int at_eof)
{
    apr_uint64_t off = 0;
    char tb[5];

    if (depth > RB_MAX_DEPTH) {
        return jpip_err_set(rb->err, JPIP_E_LIMIT,
                            "metadata-bin %" APR_UINT64_T_FMT
                            ": placeholders nested deeper than %d (a cycle?)",
                            bin, RB_MAX_DEPTH);
    }
    while (off < n) {
        hdr_t h;
        apr_uint64_t blen;
        int last;
        jpip_code_t rc = parse_hdr(rb, p + off, n - off, &h, bin, off);

        if (rc != JPIP_OK) {
            return rc;
        }
        blen = h.lbox == 0 ? n - off : h.blen;
        if (blen > n - off || blen < h.hl) {
            return jpip_err_set(
                rb->err, JPIP_E_FORMAT,
                "metadata-bin %" APR_UINT64_T_FMT ": box '%s' at offset %" APR_UINT64_T_FMT
                " of length %" APR_UINT64_T_FMT " overruns the bin (%" APR_UINT64_T_FMT " bytes)",
                bin, jpip_box_type_str(h.type, tb), off, blen, n);
        }
        last = at_eof && off + blen == n;
        if (h.type == JPIP_BOX_PHLD) {
            rc = put_placeholder(rb, p + off, blen, bin, off, depth, last);
        } else if (jpip_box_is_super(h.type)) {
            int hseg = rb->segs->nelts;
            rc = push_seg(rb, NULL, 0);
            if (rc == JPIP_OK) {
                rc = expand(rb, p + off + h.hl, blen - h.hl, bin, depth + 1, last);
            }
            if (rc == JPIP_OK) {
                rc = finish_header(rb, hseg, h.type, p + off, &h, last);
            }
        } else {
            rc = push_seg(rb, p + off, blen);
        }
        if (rc != JPIP_OK) {
            return rc;
        }
        off += blen;
    }
    return JPIP_OK;
}

jpip_code_t jpip_jp2_rebuild(const jpip_binsrc_t *bins, jpip_jp2_cs_fn cs, void *cs_ctx,
                             jpip_jp2_write_fn write, void *write_ctx, apr_pool_t *pool,
                             jpip_err_t *err)
{
    rb_t rb;
    const unsigned char *b0 = NULL;
    apr_uint64_t n0 = 0;
    int present, i;
    jpip_code_t rc;

    rb.bins = bins;
    rb.cs = cs;
    rb.cs_ctx = cs_ctx;
    rb.pool = pool;
    rb.err = err;
    rb.segs = apr_array_make(pool, 64, sizeof(seg_t));
    if (rb.segs == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory rebuilding the file");
    }
    rc = get_bin(&rb, 0, &b0, &n0, &present);
    if (rc != JPIP_OK) {
        return rc;
    }
    if (!present) {
        return jpip_err_set(err, JPIP_E_NOTFOUND, "metadata-bin 0 is missing or incomplete");
    }
    if (n0 == 0) {
        const unsigned char *c = NULL;
        apr_uint64_t clen = 0;
        rc = cs(cs_ctx, 0, &c, &clen, err);
        if (rc == JPIP_OK) {
            rc = push_seg(&rb, c, clen);
        }
    } else {
        rc = expand(&rb, b0, n0, 0, 0, 1);
    }
    if (rc != JPIP_OK) {
        return rc;
    }
    for (i = 0; i < rb.segs->nelts; i++) {
        const seg_t *s = &((const seg_t *)rb.segs->elts)[i];
        const unsigned char *p = s->p;
        apr_uint64_t left = s->len;

        /* apr_size_t may be narrower than a segment */
        while (left > 0) {
            apr_size_t k = left > ((apr_size_t)1 << 30) ? ((apr_size_t)1 << 30) : (apr_size_t)left;
            rc = write(write_ctx, p, k, err);
            if (rc != JPIP_OK) {
                return rc;
            }
            p += k;
            left -= k;
        }
    }
    return JPIP_OK;
}
