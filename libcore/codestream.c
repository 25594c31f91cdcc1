/* mod_jpip: JPEG 2000 codestream structure (T.800 Annex A and B). */
#include "codestream.h"

#include <string.h>

#include <apr_strings.h>

/* ---- small growable array over a pool ---- */

typedef struct vec_t {
    void *p;
    apr_size_t n, cap, esz;
    apr_pool_t *pool;
} vec_t;

static void vec_init(vec_t *v, apr_pool_t *pool, apr_size_t esz)
{
    v->p = NULL;
    v->n = v->cap = 0;
    v->esz = esz;
    v->pool = pool;
}

/* Append one zeroed element and return it, or NULL when out of memory. */
static void *vec_push(vec_t *v)
{
    if (v->n == v->cap) {
        apr_size_t cap = v->cap ? v->cap * 2 : 8;
        void *np = apr_palloc(v->pool, cap * v->esz);

        if (np == NULL) {
            return NULL;
        }
        if (v->n > 0) {
            memcpy(np, v->p, v->n * v->esz);
        }
        v->p = np;
        v->cap = cap;
    }
    memset((char *)v->p + v->n * v->esz, 0, v->esz);
    return (char *)v->p + (v->n++) * v->esz;
}

/* ---- names ---- */

const char *jpip_marker_name(unsigned code)
{
    switch (code) {
    case JPIP_MK_SOC:
        return "SOC";
    case JPIP_MK_CAP:
        return "CAP";
    case JPIP_MK_SIZ:
        return "SIZ";
    case JPIP_MK_COD:
        return "COD";
    case JPIP_MK_COC:
        return "COC";
    case JPIP_MK_TLM:
        return "TLM";
    case JPIP_MK_PRF:
        return "PRF";
    case JPIP_MK_PLM:
        return "PLM";
    case JPIP_MK_PLT:
        return "PLT";
    case JPIP_MK_CPF:
        return "CPF";
    case JPIP_MK_QCD:
        return "QCD";
    case JPIP_MK_QCC:
        return "QCC";
    case JPIP_MK_RGN:
        return "RGN";
    case JPIP_MK_POC:
        return "POC";
    case JPIP_MK_PPM:
        return "PPM";
    case JPIP_MK_PPT:
        return "PPT";
    case JPIP_MK_CRG:
        return "CRG";
    case JPIP_MK_COM:
        return "COM";
    case JPIP_MK_SOT:
        return "SOT";
    case JPIP_MK_SOP:
        return "SOP";
    case JPIP_MK_EPH:
        return "EPH";
    case JPIP_MK_SOD:
        return "SOD";
    case JPIP_MK_EOC:
        return "EOC";
    }
    return "unknown"; /* "unknown marker segment at offset ..." */
}

/* ---- marker segment access ---- */

/* A marker segment read in place: body points to its bytes after the
 * length field (valid until the next read from the source). */
typedef struct seg_view_t {
    unsigned code;
    apr_uint64_t off; /* offset of the marker */
    apr_uint64_t len; /* total bytes including the marker (2 + L) */
    const unsigned char *body;
    apr_size_t blen; /* L - 2 */
} seg_view_t;

/* Read the marker at off; for markers with a length, check that the
 * segment ends at or before limit and expose its body. */
static jpip_code_t seg_read(jpip_src_t *src, apr_uint64_t off, apr_uint64_t limit, seg_view_t *sv,
                            jpip_err_t *err)
{
    unsigned code, l;
    jpip_code_t rc;

    if (off > limit || limit - off < 2) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "header ends inside a marker at offset %" APR_UINT64_T_FMT, off);
    }
    rc = jpip_src_u16(src, off, &code, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    if (code < 0xFF01) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "expected a marker at offset %" APR_UINT64_T_FMT ", found 0x%04X", off,
                            code);
    }
    sv->code = code;
    sv->off = off;
    sv->body = NULL;
    sv->blen = 0;
    /* Markers without a length: SOC, SOD, EOC, EPH and the reserved FF30-FF3F. */
    if (code == JPIP_MK_SOC || code == JPIP_MK_SOD || code == JPIP_MK_EOC || code == JPIP_MK_EPH ||
        (code >= 0xFF30 && code <= 0xFF3F)) {
        sv->len = 2;
        return JPIP_OK;
    }
    if (limit - off < 4) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "%s marker segment at offset %" APR_UINT64_T_FMT " is truncated",
                            jpip_marker_name(code), off);
    }
    rc = jpip_src_u16(src, off + 2, &l, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    if (l < 2 || (apr_uint64_t)l + 2 > limit - off) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "%s marker segment at offset %" APR_UINT64_T_FMT
                            " has bad length %u (header ends %" APR_UINT64_T_FMT " bytes later)",
                            jpip_marker_name(code), off, l, limit - off);
    }
    sv->len = (apr_uint64_t)l + 2;
    sv->blen = l - 2;
    if (sv->blen > 0) {
        return jpip_src_peek(src, off + 4, sv->blen, &sv->body, err);
    }
    return JPIP_OK;
}

/* FF30-FF3F: reserved markers without a length, to be skipped. */
static int mk_reserved(unsigned code)
{
    return code >= 0xFF30 && code <= 0xFF3F;
}

static jpip_code_t seg_bad(const seg_view_t *sv, const char *why, jpip_err_t *err)
{
    return jpip_err_set(err, JPIP_E_FORMAT, "%s marker segment at offset %" APR_UINT64_T_FMT ": %s",
                        jpip_marker_name(sv->code), sv->off, why);
}

/* ---- SIZ ---- */

static jpip_code_t siz_parse(jpip_cs_t *cs, apr_pool_t *pool, const seg_view_t *sv, jpip_err_t *err)
{
    const unsigned char *p = sv->body;
    jpip_siz_t *s = &cs->siz;
    apr_uint64_t ntx, nty;
    unsigned c;

    if (sv->blen < 36) {
        return seg_bad(sv, "too short", err);
    }
    s->rsiz = jpip_be16(p);
    s->xsiz = jpip_be32(p + 2);
    s->ysiz = jpip_be32(p + 6);
    s->xosiz = jpip_be32(p + 10);
    s->yosiz = jpip_be32(p + 14);
    s->xtsiz = jpip_be32(p + 18);
    s->ytsiz = jpip_be32(p + 22);
    s->xtosiz = jpip_be32(p + 26);
    s->ytosiz = jpip_be32(p + 30);
    s->csiz = jpip_be16(p + 34);
    if (s->xsiz <= s->xosiz || s->ysiz <= s->yosiz) {
        return seg_bad(sv, "empty image area (Xsiz <= XOsiz or Ysiz <= YOsiz)", err);
    }
    if (s->xtsiz == 0 || s->ytsiz == 0) {
        return seg_bad(sv, "zero tile size", err);
    }
    if (s->xtosiz > s->xosiz || s->ytosiz > s->yosiz ||
        (apr_uint64_t)s->xtosiz + s->xtsiz <= s->xosiz ||
        (apr_uint64_t)s->ytosiz + s->ytsiz <= s->yosiz) {
        return seg_bad(sv, "tile offset outside the allowed range", err);
    }
    if (s->csiz == 0 || s->csiz > JPIP_MAX_COMPS) {
        return seg_bad(sv, "component count Csiz out of range 1..16384", err);
    }
    if (sv->blen != 36 + 3 * (apr_size_t)s->csiz) {
        return seg_bad(sv, "length does not match Csiz", err);
    }
    ntx = jpip_ceildiv((apr_uint64_t)s->xsiz - s->xtosiz, s->xtsiz);
    nty = jpip_ceildiv((apr_uint64_t)s->ysiz - s->ytosiz, s->ytsiz);
    if (ntx * nty > JPIP_MAX_TILES) {
        return seg_bad(sv, "more than 65535 tiles", err);
    }
    s->ntx = (apr_uint32_t)ntx;
    s->nty = (apr_uint32_t)nty;
    if (ntx * nty * s->csiz > cs->limits.max_tile_comps) {
        return jpip_err_set(err, JPIP_E_LIMIT,
                            "%" APR_UINT64_T_FMT
                            " tiles x %u components exceed the limit of %" APR_UINT64_T_FMT
                            " tile-components",
                            ntx * nty, (unsigned)s->csiz, cs->limits.max_tile_comps);
    }
    cs->comps = apr_pcalloc(pool, s->csiz * sizeof(jpip_comp_t));
    for (c = 0; c < s->csiz; c++) {
        const unsigned char *q = p + 36 + 3 * c;
        jpip_comp_t *cp = &cs->comps[c];

        cp->depth = (apr_byte_t)((q[0] & 0x7F) + 1);
        cp->is_signed = (q[0] & 0x80) != 0;
        cp->xr = q[1];
        cp->yr = q[2];
        if (cp->depth > 38) {
            return seg_bad(sv, "component bit depth above 38", err);
        }
        if (cp->xr == 0 || cp->yr == 0) {
            return seg_bad(sv, "component sub-sampling XRsiz/YRsiz is 0", err);
        }
    }
    return JPIP_OK;
}

/* ---- CAP ---- */

static jpip_code_t cap_parse(jpip_cs_t *cs, const seg_view_t *sv, jpip_err_t *err)
{
    apr_uint32_t pcap;
    unsigned bit, n = 0, k = 0;

    if (sv->blen < 4) {
        return seg_bad(sv, "too short", err);
    }
    pcap = jpip_be32(sv->body);
    for (bit = 0; bit < 32; bit++) {
        n += (pcap >> bit) & 1;
    }
    if (sv->blen != 4 + 2 * (apr_size_t)n) {
        return seg_bad(sv, "length does not match the bits set in Pcap", err);
    }
    cs->pcap = pcap;
    if (pcap & JPIP_PCAP_HT) {
        /* Ccap entries follow the set bits of Pcap from the MSB down. */
        for (bit = 31; bit > 17; bit--) {
            k += (pcap >> bit) & 1;
        }
        cs->ccap15 = jpip_be16(sv->body + 4 + 2 * k);
        cs->ht = 1;
    }
    return JPIP_OK;
}

/* ---- COD / COC ---- */

/* Parse SPcod/SPcoc (p, n bytes) with the precinct flag of Scod/Scoc. */
static jpip_code_t spco_parse(const seg_view_t *sv, const unsigned char *p, apr_size_t n,
                              unsigned csty, jpip_tccp_t *tc, jpip_err_t *err)
{
    unsigned r;

    if (n < 5) {
        return seg_bad(sv, "too short", err);
    }
    memset(tc, 0, sizeof(*tc));
    tc->nl = p[0];
    tc->xcb = (apr_byte_t)(p[1] + 2);
    tc->ycb = (apr_byte_t)(p[2] + 2);
    tc->cblksty = p[3];
    tc->transform = p[4];
    tc->csty = csty & JPIP_SCOD_PRECINCTS;
    if (tc->nl > JPIP_MAX_NL) {
        return seg_bad(sv, "more than 32 decomposition levels", err);
    }
    if (p[1] > 8 || p[2] > 8 || p[1] + p[2] > 8) {
        return seg_bad(sv, "code-block size out of range", err);
    }
    if (tc->csty) {
        if (n != 5 + (apr_size_t)tc->nl + 1) {
            return seg_bad(sv, "length does not match the precinct sizes", err);
        }
        for (r = 0; r <= tc->nl; r++) {
            tc->ppx[r] = p[5 + r] & 0x0F;
            tc->ppy[r] = p[5 + r] >> 4;
            if (r > 0 && (tc->ppx[r] == 0 || tc->ppy[r] == 0)) {
                return seg_bad(sv, "precinct exponent 0 above resolution 0", err);
            }
        }
    } else {
        if (n != 5) {
            return seg_bad(sv, "bad length", err);
        }
        for (r = 0; r <= tc->nl; r++) {
            tc->ppx[r] = 15;
            tc->ppy[r] = 15;
        }
    }
    return JPIP_OK;
}

/* COD: SGcod into tcp, SPcod into *tmpl. */
static jpip_code_t cod_parse(const seg_view_t *sv, jpip_tcp_t *tcp, jpip_tccp_t *tmpl,
                             jpip_err_t *err)
{
    const unsigned char *p = sv->body;

    if (sv->blen < 5) {
        return seg_bad(sv, "too short", err);
    }
    if (p[1] > JPIP_PROG_CPRL) {
        return seg_bad(sv, "unknown progression order", err);
    }
    if (jpip_be16(p + 2) == 0) {
        return seg_bad(sv, "zero quality layers", err);
    }
    tcp->scod = p[0];
    tcp->prog = p[1];
    tcp->layers = jpip_be16(p + 2);
    tcp->mct = p[4];
    return spco_parse(sv, p + 5, sv->blen - 5, p[0], tmpl, err);
}

/* Width in bytes of a component index field (Ccoc, Cqcc, Crgn, CSpoc). */
static apr_size_t comp_field(const jpip_cs_t *cs)
{
    return cs->siz.csiz < 257 ? 1 : 2;
}

static jpip_code_t coc_parse(const jpip_cs_t *cs, const seg_view_t *sv, jpip_tccp_t *tccp,
                             unsigned char *coc_set, jpip_err_t *err)
{
    apr_size_t w = comp_field(cs);
    unsigned c;

    if (sv->blen < w + 1) {
        return seg_bad(sv, "too short", err);
    }
    c = w == 1 ? sv->body[0] : jpip_be16(sv->body);
    if (c >= cs->siz.csiz) {
        return seg_bad(sv, "component index out of range", err);
    }
    coc_set[c] = 1;
    return spco_parse(sv, sv->body + w + 1, sv->blen - w - 1, sv->body[w], &tccp[c], err);
}

/* ---- QCD / QCC / RGN (validated, not kept) ---- */

static jpip_code_t qcx_check(const seg_view_t *sv, apr_size_t skip, jpip_err_t *err)
{
    apr_size_t n;
    unsigned style;

    if (sv->blen < skip + 1) {
        return seg_bad(sv, "too short", err);
    }
    style = sv->body[skip] & 0x1F;
    n = sv->blen - skip - 1;
    if ((style == 0 && n < 1) || (style == 1 && n != 2) || (style == 2 && (n < 2 || n % 2)) ||
        style > 2) {
        return seg_bad(sv, "quantization style and length disagree", err);
    }
    return JPIP_OK;
}

static jpip_code_t qcc_check(const jpip_cs_t *cs, const seg_view_t *sv, jpip_err_t *err)
{
    apr_size_t w = comp_field(cs);
    unsigned c;

    if (sv->blen < w) {
        return seg_bad(sv, "too short", err);
    }
    c = w == 1 ? sv->body[0] : jpip_be16(sv->body);
    if (c >= cs->siz.csiz) {
        return seg_bad(sv, "component index out of range", err);
    }
    return qcx_check(sv, w, err);
}

static jpip_code_t rgn_check(const jpip_cs_t *cs, const seg_view_t *sv, jpip_err_t *err)
{
    apr_size_t w = comp_field(cs);
    unsigned c;

    if (sv->blen != w + 2) {
        return seg_bad(sv, "bad length", err);
    }
    c = w == 1 ? sv->body[0] : jpip_be16(sv->body);
    if (c >= cs->siz.csiz) {
        return seg_bad(sv, "component index out of range", err);
    }
    return JPIP_OK;
}

/* ---- POC ---- */

static jpip_code_t poc_parse(const jpip_cs_t *cs, const seg_view_t *sv, vec_t *out, jpip_err_t *err)
{
    apr_size_t w = comp_field(cs);
    apr_size_t es = 5 + 2 * w;
    apr_size_t i;

    if (sv->blen == 0 || sv->blen % es != 0) {
        return seg_bad(sv, "length is not a whole number of entries", err);
    }
    for (i = 0; i < sv->blen / es; i++) {
        const unsigned char *p = sv->body + i * es;
        jpip_poc_t *e = vec_push(out);

        if (e == NULL) {
            return jpip_err_set(err, JPIP_E_NOMEM, "out of memory for POC");
        }
        e->rs = p[0];
        e->cs = w == 1 ? p[1] : jpip_be16(p + 1);
        e->lye = jpip_be16(p + 1 + w);
        e->re = p[3 + w];
        e->ce = w == 1 ? p[4 + w] : jpip_be16(p + 4 + w);
        e->prog = p[4 + 2 * w];
        if (e->ce == 0) {
            e->ce = w == 1 ? 256 : 16384;
        }
        if (e->prog > JPIP_PROG_CPRL) {
            return seg_bad(sv, "unknown progression order in an entry", err);
        }
        if (e->ce > cs->siz.csiz) {
            e->ce = cs->siz.csiz;
        }
        if (e->re > JPIP_MAX_RES) {
            e->re = JPIP_MAX_RES;
        }
    }
    return JPIP_OK;
}

/* ---- packed packet headers ---- */

/* A PPM or PPT marker segment: its data after the Z index byte. */
typedef struct zseg_t {
    apr_uint64_t off, len;
    unsigned z; /* Zppm / Zppt */
} zseg_t;

static jpip_code_t zseg_push(vec_t *v, const seg_view_t *sv, jpip_err_t *err)
{
    zseg_t *z = vec_push(v);

    if (z == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory for %s", jpip_marker_name(sv->code));
    }
    z->off = sv->off + 5;
    z->len = sv->blen - 1;
    z->z = sv->body[0];
    return JPIP_OK;
}

/* The data of packed-header segments in the order of their Z index, as a
 * decoder joins them (they may appear in any order; an index used twice is
 * refused, so there are at most 256). */
static jpip_code_t zseg_order(vec_t *zsegs, const char *what, apr_pool_t *pool, vec_t *out,
                              jpip_err_t *err)
{
    zseg_t *z = zsegs->p;
    unsigned char seen[256];
    apr_size_t i, j;

    memset(seen, 0, sizeof(seen));
    for (i = 0; i < zsegs->n; i++) {
        if (seen[z[i].z]) {
            return jpip_err_set(err, JPIP_E_FORMAT,
                                "%s marker segment at offset %" APR_UINT64_T_FMT
                                " repeats index %u",
                                what, z[i].off - 5, z[i].z);
        }
        seen[z[i].z] = 1;
    }
    for (i = 1; i < zsegs->n; i++) {
        zseg_t k = z[i];

        for (j = i; j > 0 && z[j - 1].z > k.z; j--) {
            z[j] = z[j - 1];
        }
        z[j] = k;
    }
    vec_init(out, pool, sizeof(jpip_piece_t));
    for (i = 0; i < zsegs->n; i++) {
        jpip_piece_t *pc;

        if (z[i].len == 0) {
            continue;
        }
        pc = vec_push(out);
        if (pc == NULL) {
            return jpip_err_set(err, JPIP_E_NOMEM, "out of memory for %s", what);
        }
        pc->off = z[i].off;
        pc->len = z[i].len;
    }
    return JPIP_OK;
}

/* ---- main header ---- */

typedef struct mainctx_t {
    jpip_tccp_t cod_tmpl;
    int have_cod, have_qcd;
    unsigned char *coc_set;
    vec_t segs, poc, ppm, tlm, plm;
} mainctx_t;

/* One TLM marker segment, kept for the consistency check after the walk. */
typedef struct tlm_seg_t {
    apr_uint64_t off; /* first entry */
    apr_size_t n;     /* entries */
    unsigned st, sp;  /* Ttlm bytes, Ptlm bytes */
} tlm_seg_t;

static jpip_code_t tlm_parse(const seg_view_t *sv, vec_t *tlm, jpip_err_t *err)
{
    unsigned st, sp;
    tlm_seg_t *t;

    if (sv->blen < 2) {
        return seg_bad(sv, "too short", err);
    }
    st = (sv->body[1] >> 4) & 3;
    sp = (sv->body[1] >> 6) & 1 ? 4 : 2;
    if (st == 3 || (sv->blen - 2) % (st + sp) != 0) {
        return seg_bad(sv, "bad Stlm or length", err);
    }
    t = vec_push(tlm);
    if (t == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory for TLM");
    }
    t->off = sv->off + 6;
    t->n = (sv->blen - 2) / (st + sp);
    t->st = st;
    t->sp = sp;
    return JPIP_OK;
}

static jpip_code_t main_seg(jpip_cs_t *cs, apr_pool_t *pool, mainctx_t *mc, const seg_view_t *sv,
                            int first, jpip_err_t *err)
{
    jpip_piece_t *pc;

    if (first != (sv->code == JPIP_MK_SIZ)) {
        return seg_bad(sv, first ? "SIZ must follow SOC" : "second SIZ", err);
    }
    switch (sv->code) {
    case JPIP_MK_SIZ:
        return siz_parse(cs, pool, sv, err);
    case JPIP_MK_CAP:
        return cap_parse(cs, sv, err);
    case JPIP_MK_COD:
        mc->have_cod = 1;
        return cod_parse(sv, &cs->main, &mc->cod_tmpl, err);
    case JPIP_MK_COC:
        return coc_parse(cs, sv, cs->main.tccp, mc->coc_set, err);
    case JPIP_MK_QCD:
        mc->have_qcd = 1;
        return qcx_check(sv, 0, err);
    case JPIP_MK_QCC:
        return qcc_check(cs, sv, err);
    case JPIP_MK_RGN:
        return rgn_check(cs, sv, err);
    case JPIP_MK_POC:
        return poc_parse(cs, sv, &mc->poc, err);
    case JPIP_MK_TLM:
        cs->has_tlm = 1;
        return tlm_parse(sv, &mc->tlm, err);
    case JPIP_MK_PLM:
        if (sv->blen < 1) {
            return seg_bad(sv, "too short", err);
        }
        cs->has_plm = 1;
        pc = vec_push(&mc->plm);
        if (pc == NULL) {
            return jpip_err_set(err, JPIP_E_NOMEM, "out of memory for PLM");
        }
        pc->off = sv->off + 5;
        pc->len = sv->blen - 1;
        return JPIP_OK;
    case JPIP_MK_PPM:
        if (sv->blen < 1) {
            return seg_bad(sv, "too short", err);
        }
        return zseg_push(&mc->ppm, sv, err);
    case JPIP_MK_CRG:
        return sv->blen == 4 * (apr_size_t)cs->siz.csiz ? JPIP_OK : seg_bad(sv, "bad length", err);
    case JPIP_MK_COM:
        return sv->blen >= 2 ? JPIP_OK : seg_bad(sv, "too short", err);
    case JPIP_MK_PLT:
    case JPIP_MK_PPT:
    case JPIP_MK_SOP:
        return seg_bad(sv, "not allowed in the main header", err);
    default:
        return JPIP_OK; /* CPF, PRF, Part 2 and unknown markers: skipped by length */
    }
}

static jpip_code_t main_finish(jpip_cs_t *cs, mainctx_t *mc, jpip_err_t *err)
{
    unsigned c;

    if (!mc->have_cod) {
        return jpip_err_set(err, JPIP_E_FORMAT, "main header has no COD marker segment");
    }
    if (!mc->have_qcd) {
        return jpip_err_set(err, JPIP_E_FORMAT, "main header has no QCD marker segment");
    }
    for (c = 0; c < cs->siz.csiz; c++) {
        if (!mc->coc_set[c]) {
            cs->main.tccp[c] = mc->cod_tmpl;
        }
        if (cs->main.tccp[c].cblksty & JPIP_CBLK_HT) {
            cs->ht = 1;
        }
    }
    cs->msegs = mc->segs.p;
    cs->nmsegs = mc->segs.n;
    cs->main.poc = mc->poc.p;
    cs->main.npoc = mc->poc.n;
    return JPIP_OK;
}

static jpip_code_t main_parse(jpip_cs_t *cs, apr_pool_t *pool, jpip_src_t *src, mainctx_t *mc,
                              jpip_err_t *err)
{
    apr_uint64_t size = jpip_src_size(src), pos = 2;
    unsigned code;
    jpip_code_t rc = jpip_src_u16(src, 0, &code, err);

    if (rc != JPIP_OK || code != JPIP_MK_SOC) {
        return jpip_err_set(err, JPIP_E_FORMAT, "not a JPEG 2000 codestream (no SOC marker)");
    }
    for (;;) {
        seg_view_t sv;
        jpip_seg_t *s;

        /* the first SOT ends the main header (the tile-part walk reads it) */
        if (size - pos >= 2 && jpip_src_u16(src, pos, &code, NULL) == JPIP_OK &&
            code == JPIP_MK_SOT) {
            break;
        }
        rc = seg_read(src, pos, size, &sv, err);
        if (rc != JPIP_OK) {
            return rc;
        }
        if (sv.len == 2 && !mk_reserved(sv.code)) {
            return jpip_err_set(
                err, JPIP_E_FORMAT,
                "unexpected %s marker in the main header at offset %" APR_UINT64_T_FMT,
                jpip_marker_name(sv.code), pos);
        }
        if (sv.len == 2) {
            /* A reserved marker without a length: kept, not interpreted. */
            if (pos == 2) {
                return jpip_err_set(err, JPIP_E_FORMAT, "SIZ must follow SOC");
            }
        } else if (pos == 2) {
            /* SIZ first: it sizes the COC bookkeeping below. */
            rc = main_seg(cs, pool, mc, &sv, 1, err);
            if (rc != JPIP_OK) {
                return rc;
            }
            cs->main.tccp = apr_pcalloc(pool, cs->siz.csiz * sizeof(jpip_tccp_t));
            mc->coc_set = apr_pcalloc(pool, cs->siz.csiz);
        } else {
            rc = main_seg(cs, pool, mc, &sv, 0, err);
            if (rc != JPIP_OK) {
                return rc;
            }
        }
        if (mc->segs.n >= cs->limits.max_segments) {
            return jpip_err_set(err, JPIP_E_LIMIT,
                                "more than %" APR_UINT64_T_FMT
                                " marker segments in the main header",
                                cs->limits.max_segments);
        }
        s = vec_push(&mc->segs);
        if (s == NULL) {
            return jpip_err_set(err, JPIP_E_NOMEM, "out of memory for the main header");
        }
        s->off = sv.off;
        s->len = sv.len;
        s->code = sv.code;
        pos += sv.len;
    }
    cs->main_end = pos;
    return main_finish(cs, mc, err);
}

/* ---- tile-part walk ---- */

/* Find SOD in the tile-part header [pos, end); *body = first byte after it. */
static jpip_code_t tpart_find_sod(jpip_src_t *src, apr_uint64_t pos, apr_uint64_t end,
                                  apr_uint64_t *body, jpip_err_t *err)
{
    while (pos < end) {
        seg_view_t sv;
        jpip_code_t rc = seg_read(src, pos, end, &sv, err);

        if (rc != JPIP_OK) {
            return rc;
        }
        if (sv.code == JPIP_MK_SOD) {
            *body = pos + 2;
            return JPIP_OK;
        }
        if (sv.len == 2 && !mk_reserved(sv.code)) {
            return jpip_err_set(
                err, JPIP_E_FORMAT,
                "unexpected %s marker in a tile-part header at offset %" APR_UINT64_T_FMT,
                jpip_marker_name(sv.code), pos);
        }
        pos += sv.len;
    }
    return jpip_err_set(err, JPIP_E_FORMAT,
                        "tile-part header ending at offset %" APR_UINT64_T_FMT " has no SOD", end);
}

/* How the tile-part data ends (what a decoder meets after the last one). */
enum {
    END_EOC,      /* an EOC marker */
    END_CLEAN,    /* the end of the data, right after a tile-part (or one stray byte later) */
    END_PSOT0,    /* a last tile-part of Psot 0 whose final two bytes are not EOC */
    END_TRUNCATED /* the end of the data inside the last tile-part */
};

/* Read the SOT segment at pos and the tile-part it starts. *last is set
 * for the tile-part that ends the data: Psot 0 (to the end, before a
 * final EOC, whose two bytes a decoder takes as EOC whatever they are) or
 * a Psot running past the end (cut short: end is the end of the data). */
static jpip_code_t tpart_read(jpip_cs_t *cs, jpip_src_t *src, apr_uint64_t pos, jpip_tpart_t *tp,
                              int *last, jpip_err_t *err)
{
    apr_uint64_t size = jpip_src_size(src), hend;
    const unsigned char *p;
    apr_uint32_t psot;
    jpip_code_t rc;

    if (size - pos < 12) {
        return jpip_err_set(
            err, JPIP_E_FORMAT,
            "SOT at offset %" APR_UINT64_T_FMT " is cut short by the end of the codestream", pos);
    }
    rc = jpip_src_peek(src, pos, 12, &p, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    if (jpip_be16(p + 2) != 10) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "SOT at offset %" APR_UINT64_T_FMT " has Lsot != 10", pos);
    }
    tp->sot = pos;
    tp->tile = jpip_be16(p + 4);
    psot = jpip_be32(p + 6);
    tp->psot = psot;
    tp->tpsot = p[10];
    tp->tnsot = p[11];
    tp->next = JPIP_NONE;
    if (tp->tile >= jpip_siz_ntiles(&cs->siz)) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "SOT at offset %" APR_UINT64_T_FMT " names tile %u of %u", pos,
                            (unsigned)tp->tile, (unsigned)jpip_siz_ntiles(&cs->siz));
    }
    *last = 0;
    if (psot != 0 && psot < 14) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "tile-part at offset %" APR_UINT64_T_FMT " has Psot %u (below 14)", pos,
                            (unsigned)psot);
    }
    hend = psot == 0 || psot > size - pos ? size : pos + psot;
    rc = tpart_find_sod(src, pos + 12, hend, &tp->body, err);
    if (rc != JPIP_OK) {
        if (hend == size && psot != size - pos) {
            char msg[JPIP_ERR_MSG_MAX];

            apr_cpystrn(msg, err != NULL ? err->msg : "", sizeof(msg));
            return jpip_err_set(err, JPIP_E_FORMAT,
                                "the codestream ends inside the header of the tile-part at offset "
                                "%" APR_UINT64_T_FMT " (%s)",
                                pos, msg);
        }
        return rc;
    }
    if (psot == 0) {
        /* to the end, less two bytes taken for EOC (as openjpeg does;
         * with fewer than two left it reads what there is) */
        tp->end = size - tp->body >= 2 ? size - 2 : size;
        tp->data = tp->end - tp->body;
        *last = 1;
    } else if (psot > size - pos) {
        tp->end = size;
        tp->data = pos + psot - tp->body;
        cs->truncated = 1;
        *last = 1;
    } else {
        tp->end = pos + psot;
        tp->data = tp->end - tp->body;
    }
    return JPIP_OK;
}

/* Link tile-part i into its tile; TPsot must continue its tile's sequence. */
static jpip_code_t tpart_link(jpip_cs_t *cs, apr_uint32_t *tile_last, apr_size_t i, jpip_err_t *err)
{
    jpip_tpart_t *tp = &cs->tparts[i];
    apr_uint32_t t = tp->tile;

    if (tp->tpsot != cs->tile_ntp[t]) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "tile-part at offset %" APR_UINT64_T_FMT
                            " of tile %u has TPsot %u, expected %u",
                            tp->sot, (unsigned)t, (unsigned)tp->tpsot, (unsigned)cs->tile_ntp[t]);
    }
    if (cs->tile_first[t] == JPIP_NONE) {
        cs->tile_first[t] = (apr_uint32_t)i;
    } else {
        cs->tparts[tile_last[t]].next = (apr_uint32_t)i;
    }
    tile_last[t] = (apr_uint32_t)i;
    cs->tile_ntp[t]++;
    return JPIP_OK;
}

/* Per-tile state of the decoder emulated by tparts_settle. */
typedef struct tstate_t {
    apr_uint32_t n;     /* tile-parts announced (TNsot in force, corrected), 0: unknown */
    unsigned char data; /* it holds packet data not decoded yet */
    unsigned char keep; /* it gets decoded */
} tstate_t;

/* Whether a decoder of encoders' one-short TNsot applies its correction:
 * the next tile-part of the tile that tile-part i completed has TPsot ==
 * TNsot (looked for over the tile-parts that follow, up to one whose Psot
 * a decoder cannot skip). */
static int tn_correction(const jpip_cs_t *cs, apr_size_t i)
{
    apr_size_t j;

    for (j = i + 1; j < cs->ntparts; j++) {
        const jpip_tpart_t *q = &cs->tparts[j];

        if (q->tile == cs->tparts[i].tile) {
            return q->tpsot == q->tnsot;
        }
        if (q->psot < 14) {
            return 0;
        }
    }
    return 0;
}

static jpip_code_t tn_bad(const jpip_tpart_t *tp, apr_uint32_t n, jpip_err_t *err)
{
    return jpip_err_set(err, JPIP_E_FORMAT,
                        "tile-part at offset %" APR_UINT64_T_FMT
                        " is tile-part %u of tile %u, which has %u (TNsot)",
                        tp->sot, (unsigned)tp->tpsot, (unsigned)tp->tile, (unsigned)n);
}

/* Decide which tiles a decoder decodes, replaying openjpeg 2.5's reading
 * of SOT markers (a tile is decoded once its TNsot tile-parts are read,
 * the others at EOC), and unlink the tiles it would never decode. */
static jpip_code_t tparts_settle(jpip_cs_t *cs, apr_pool_t *pool, int end, jpip_err_t *err)
{
    apr_uint32_t nt = jpip_siz_ntiles(&cs->siz), t, corr = 0, kept = 0;
    tstate_t *st = apr_pcalloc(pool, nt * sizeof(*st));
    const jpip_tpart_t *lt = &cs->tparts[cs->ntparts - 1];
    int checked = 0, done = 0;
    apr_size_t i;

    for (i = 0; i < cs->ntparts; i++) {
        const jpip_tpart_t *tp = &cs->tparts[i];
        tstate_t *s = &st[tp->tile];

        if (s->n != 0 && tp->tpsot >= s->n) {
            return tn_bad(tp, s->n, err);
        }
        if (tp->tnsot != 0) {
            if (tp->tpsot >= tp->tnsot + corr) {
                return tn_bad(tp, tp->tnsot + corr, err);
            }
            s->n = tp->tnsot + corr;
        }
        s->data |= tp->data > 0;
        done = s->n != 0 && s->n == tp->tpsot + 1;
        if (done && !checked) {
            checked = 1;
            if (tn_correction(cs, i)) {
                corr = 1;
                done = 0;
                for (t = 0; t < nt; t++) {
                    st[t].n += st[t].n != 0;
                }
            }
        }
        if (done) {
            if (!s->data) {
                return jpip_err_set(err, JPIP_E_FORMAT, "tile %u has no packet data",
                                    (unsigned)tp->tile);
            }
            s->keep = 1;
            s->data = 0;
        }
    }
    if (end == END_EOC) {
        for (t = 0; t < nt; t++) {
            st[t].keep |= st[t].data;
        }
    } else if (done) {
        /* without EOC, one more tile is decoded after a cleanly ended one */
        for (t = lt->tile + 1; end == END_CLEAN && t < nt; t++) {
            if (st[t].data) {
                st[t].keep = 1;
                break;
            }
        }
    } else if (end == END_PSOT0) {
        st[lt->tile].keep |= st[lt->tile].data;
    } else {
        apr_uint32_t u = nt;

        /* the data ends while the last tile waits for tile-parts: a
         * decoder gives up, unless the last tile has a lone tile-part of
         * TNsot 0 somewhere before it, read as an implicit EOC */
        if (lt->tile + 1 == nt) {
            for (u = 0; u < nt; u++) {
                if (cs->tile_ntp[u] == 1 && st[u].n == 0) {
                    break;
                }
            }
        }
        if (u == nt) {
            return jpip_err_set(err, JPIP_E_FORMAT,
                                "the codestream ends before tile %u is complete (tile-part %u, "
                                "TNsot %u, and no EOC)",
                                (unsigned)lt->tile, (unsigned)lt->tpsot, (unsigned)lt->tnsot);
        }
        for (t = u; t < nt; t++) {
            st[t].keep |= st[t].data;
        }
    }
    for (t = 0; t < nt; t++) {
        if (st[t].keep) {
            kept++;
        } else if (cs->tile_first[t] != JPIP_NONE) {
            cs->tile_first[t] = JPIP_NONE;
            cs->tile_ntp[t] = 0;
            cs->ndropped++;
        }
    }
    if (kept == 0) {
        return jpip_err_set(err, JPIP_E_FORMAT, "no tile of the codestream has packet data");
    }
    return JPIP_OK;
}

static jpip_code_t tparts_walk(jpip_cs_t *cs, apr_pool_t *pool, jpip_src_t *src, jpip_err_t *err)
{
    apr_uint32_t nt = jpip_siz_ntiles(&cs->siz);
    apr_uint32_t *tile_last = apr_palloc(pool, nt * sizeof(apr_uint32_t));
    apr_uint64_t size = jpip_src_size(src), pos = cs->main_end;
    int end = END_CLEAN;
    vec_t tps;
    apr_uint32_t t;

    vec_init(&tps, pool, sizeof(jpip_tpart_t));
    cs->tile_first = apr_palloc(pool, nt * sizeof(apr_uint32_t));
    cs->tile_ntp = apr_pcalloc(pool, nt * sizeof(apr_uint32_t));
    for (t = 0; t < nt; t++) {
        cs->tile_first[t] = JPIP_NONE;
    }
    /* one stray byte after a tile-part is read as half a marker and let be */
    while (size - pos > 1) {
        jpip_tpart_t *tp;
        unsigned code;
        int last = 0;
        jpip_code_t rc = jpip_src_u16(src, pos, &code, err);

        if (rc == JPIP_OK && code == JPIP_MK_EOC) {
            cs->has_eoc = 1;
            end = END_EOC;
            break;
        }
        if (rc != JPIP_OK || code != JPIP_MK_SOT) {
            return jpip_err_set(err, JPIP_E_FORMAT,
                                "expected SOT or EOC at offset %" APR_UINT64_T_FMT, pos);
        }
        if (tps.n >= cs->limits.max_tile_parts) {
            return jpip_err_set(err, JPIP_E_LIMIT, "more than %" APR_UINT64_T_FMT " tile-parts",
                                cs->limits.max_tile_parts);
        }
        tp = vec_push(&tps);
        if (tp == NULL) {
            return jpip_err_set(err, JPIP_E_NOMEM, "out of memory for tile-parts");
        }
        rc = tpart_read(cs, src, pos, tp, &last, err);
        if (rc != JPIP_OK) {
            return rc;
        }
        cs->tparts = tps.p;
        cs->ntparts = tps.n;
        rc = tpart_link(cs, tile_last, tps.n - 1, err);
        if (rc != JPIP_OK) {
            return rc;
        }
        pos = tp->end;
        if (last) {
            if (cs->truncated) {
                end = END_TRUNCATED;
            } else if (size - pos >= 2 && jpip_src_u16(src, pos, &code, NULL) == JPIP_OK &&
                       code == JPIP_MK_EOC) {
                cs->has_eoc = 1;
                end = END_EOC;
            } else {
                end = size - pos >= 2 ? END_PSOT0 : END_CLEAN;
            }
            break;
        }
    }
    cs->end = pos;
    if (tps.n == 0) {
        return jpip_err_set(err, JPIP_E_FORMAT, "codestream has no tile-part");
    }
    return cs->limits.headers_only ? JPIP_OK : tparts_settle(cs, pool, end, err);
}

/* ---- TLM consistency ---- */

static jpip_code_t tlm_check(jpip_cs_t *cs, jpip_src_t *src, const vec_t *tlm, jpip_err_t *err)
{
    const tlm_seg_t *ts = tlm->p;
    apr_size_t i, j, k = 0;

    for (i = 0; i < tlm->n; i++) {
        for (j = 0; j < ts[i].n; j++, k++) {
            apr_uint64_t off = ts[i].off + j * (ts[i].st + ts[i].sp);
            const unsigned char *p;
            apr_uint32_t tile, len;
            jpip_code_t rc;

            if (k >= cs->ntparts) {
                return JPIP_OK; /* more entries than tile-parts: not used */
            }
            rc = jpip_src_peek(src, off, ts[i].st + ts[i].sp, &p, err);
            if (rc != JPIP_OK) {
                return rc;
            }
            tile = ts[i].st == 0 ? (apr_uint32_t)k : ts[i].st == 1 ? p[0] : jpip_be16(p);
            len = ts[i].sp == 2 ? jpip_be16(p + ts[i].st) : jpip_be32(p + ts[i].st);
            if (tile != cs->tparts[k].tile || len != cs->tparts[k].end - cs->tparts[k].sot) {
                return JPIP_OK;
            }
        }
    }
    cs->tlm_ok = k == cs->ntparts;
    return JPIP_OK;
}

/* ---- PPM split per tile-part ---- */

/* A cursor over an ordered list of logical ranges of a source. */
typedef struct pcur_t {
    const jpip_piece_t *pc;
    apr_size_t n, i;
    apr_uint64_t pos;
} pcur_t;

/* Take len bytes at the cursor, appending their ranges to out. */
static jpip_code_t pcur_take(pcur_t *c, apr_uint64_t len, vec_t *out, jpip_err_t *err)
{
    while (len > 0) {
        apr_uint64_t n;
        jpip_piece_t *o;

        if (c->i >= c->n) {
            return jpip_err_set(err, JPIP_E_FORMAT, "PPM data ends early");
        }
        n = c->pc[c->i].len - c->pos;
        if (n > len) {
            n = len;
        }
        if (n > 0 && out != NULL) {
            o = vec_push(out);
            if (o == NULL) {
                return jpip_err_set(err, JPIP_E_NOMEM, "out of memory for PPM");
            }
            o->off = c->pc[c->i].off + c->pos;
            o->len = n;
        }
        c->pos += n;
        len -= n;
        if (c->pos == c->pc[c->i].len) {
            c->i++;
            c->pos = 0;
        }
    }
    return JPIP_OK;
}

static jpip_code_t ppm_split(jpip_cs_t *cs, apr_pool_t *pool, jpip_src_t *src, vec_t *ppm,
                             jpip_err_t *err)
{
    pcur_t cur = {ppm->p, ppm->n, 0, 0};
    vec_t out;
    apr_size_t i;

    vec_init(&out, pool, sizeof(jpip_piece_t));
    cs->ppm_first = apr_palloc(pool, (cs->ntparts + 1) * sizeof(apr_size_t));
    for (i = 0; i < cs->ntparts; i++) {
        vec_t nb;
        unsigned char b[4];
        apr_size_t k;
        jpip_code_t rc;

        /* Nppm (4 bytes) may itself straddle two PPM segments. */
        vec_init(&nb, pool, sizeof(jpip_piece_t));
        rc = pcur_take(&cur, 4, &nb, err);
        if (rc != JPIP_OK) {
            return jpip_err_set(err, JPIP_E_FORMAT,
                                "PPM has no Nppm for tile-part %" APR_SIZE_T_FMT, i);
        }
        {
            apr_size_t got = 0;

            for (k = 0; k < nb.n; k++) {
                const jpip_piece_t *q = (const jpip_piece_t *)nb.p + k;

                rc = jpip_src_read(src, q->off, b + got, (apr_size_t)q->len, err);
                if (rc != JPIP_OK) {
                    return rc;
                }
                got += (apr_size_t)q->len;
            }
        }
        cs->ppm_first[i] = out.n;
        rc = pcur_take(&cur, jpip_be32(b), &out, err);
        if (rc != JPIP_OK) {
            return jpip_err_set(err, JPIP_E_FORMAT,
                                "PPM data ends inside the headers of tile-part %" APR_SIZE_T_FMT,
                                i);
        }
    }
    cs->ppm_first[cs->ntparts] = out.n;
    cs->ppm_pieces = out.p;
    return JPIP_OK;
}

/* ---- PLM split per tile-part ---- */

/* Assign the PLM series (Nplm, Iplm...) to the tile-parts in codestream
 * order. A PLM that does not describe exactly every tile-part is not used
 * (plm_first stays NULL) and packet headers are decoded instead. */
static void plm_split(jpip_cs_t *cs, apr_pool_t *pool, jpip_src_t *src, vec_t *plm)
{
    pcur_t cur = {plm->p, plm->n, 0, 0};
    apr_size_t *first = apr_palloc(pool, (cs->ntparts + 1) * sizeof(apr_size_t));
    vec_t out, nb;
    apr_size_t i;

    vec_init(&out, pool, sizeof(jpip_piece_t));
    for (i = 0; i < cs->ntparts; i++) {
        unsigned n;

        vec_init(&nb, pool, sizeof(jpip_piece_t));
        if (pcur_take(&cur, 1, &nb, NULL) != JPIP_OK || nb.n != 1 ||
            jpip_src_u8(src, ((jpip_piece_t *)nb.p)->off, &n, NULL) != JPIP_OK) {
            return;
        }
        first[i] = out.n;
        if (pcur_take(&cur, n, &out, NULL) != JPIP_OK) {
            return;
        }
    }
    if (cur.i < cur.n) {
        return; /* more series than tile-parts */
    }
    first[cs->ntparts] = out.n;
    cs->plm_first = first;
    cs->plm_pieces = out.p;
}

/* ---- entry point ---- */

static void limits_default(jpip_cs_limits_t *l, const jpip_cs_limits_t *in)
{
    memset(l, 0, sizeof(*l));
    if (in != NULL) {
        *l = *in;
    }
    if (l->max_tile_parts == 0) {
        l->max_tile_parts = 1u << 20;
    }
    if (l->max_tile_comps == 0) {
        l->max_tile_comps = 1u << 24;
    }
    if (l->max_segments == 0) {
        l->max_segments = 1u << 20;
    }
}

jpip_code_t jpip_cs_parse(jpip_cs_t **out, apr_pool_t *pool, jpip_src_t *src,
                          const jpip_cs_limits_t *limits, jpip_err_t *err)
{
    jpip_cs_t *cs = apr_pcalloc(pool, sizeof(*cs));
    mainctx_t mc;
    jpip_code_t rc;

    memset(&mc, 0, sizeof(mc));
    limits_default(&cs->limits, limits);
    vec_init(&mc.segs, pool, sizeof(jpip_seg_t));
    vec_init(&mc.poc, pool, sizeof(jpip_poc_t));
    vec_init(&mc.ppm, pool, sizeof(zseg_t));
    vec_init(&mc.tlm, pool, sizeof(tlm_seg_t));
    vec_init(&mc.plm, pool, sizeof(jpip_piece_t));
    rc = main_parse(cs, pool, src, &mc, err);
    if (rc == JPIP_OK) {
        rc = tparts_walk(cs, pool, src, err);
    }
    if (rc == JPIP_OK && mc.tlm.n > 0) {
        rc = tlm_check(cs, src, &mc.tlm, err);
    }
    if (rc == JPIP_OK && mc.plm.n > 0) {
        plm_split(cs, pool, src, &mc.plm);
    }
    if (rc == JPIP_OK && mc.ppm.n > 0) {
        vec_t ppm;

        rc = zseg_order(&mc.ppm, "PPM", pool, &ppm, err);
        if (rc == JPIP_OK) {
            rc = ppm_split(cs, pool, src, &ppm, err);
        }
    }
    if (rc != JPIP_OK) {
        return rc;
    }
    *out = cs;
    return JPIP_OK;
}

/* ---- tile-part headers of one tile ---- */

typedef struct tilectx_t {
    jpip_tccp_t cod_tmpl;
    int have_cod;
    unsigned char *coc_set;
    vec_t segs, plt, ppt, bodies, ppm, poc, plm;
} tilectx_t;

static jpip_code_t piece_push(vec_t *v, apr_uint64_t off, apr_uint64_t len, jpip_err_t *err)
{
    jpip_piece_t *p;

    if (len == 0) {
        return JPIP_OK;
    }
    p = vec_push(v);
    if (p == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory for a tile");
    }
    p->off = off;
    p->len = len;
    return JPIP_OK;
}

/* Handle one tile-part header segment; *keep says whether it belongs in
 * the tile header bin. first: this is the tile's first tile-part. */
static jpip_code_t tile_seg(const jpip_cs_t *cs, jpip_tile_t *tile, tilectx_t *tc,
                            const seg_view_t *sv, int first, int *keep, jpip_err_t *err)
{
    *keep = 1;
    switch (sv->code) {
    case JPIP_MK_COD:
        if (!first) {
            return JPIP_OK; /* only the first tile-part may carry it; ignored */
        }
        tc->have_cod = 1;
        return cod_parse(sv, &tile->tcp, &tc->cod_tmpl, err);
    case JPIP_MK_COC:
        return first ? coc_parse(cs, sv, tile->tcp.tccp, tc->coc_set, err) : JPIP_OK;
    case JPIP_MK_QCD:
        return qcx_check(sv, 0, err);
    case JPIP_MK_QCC:
        return qcc_check(cs, sv, err);
    case JPIP_MK_RGN:
        return rgn_check(cs, sv, err);
    case JPIP_MK_POC:
        return poc_parse(cs, sv, &tc->poc, err);
    case JPIP_MK_PLT:
        *keep = 0;
        if (sv->blen < 1) {
            return seg_bad(sv, "too short", err);
        }
        return piece_push(&tc->plt, sv->off + 5, sv->blen - 1, err);
    case JPIP_MK_PPT:
        *keep = 0;
        if (sv->blen < 1) {
            return seg_bad(sv, "too short", err);
        }
        return zseg_push(&tc->ppt, sv, err);
    case JPIP_MK_SIZ:
    case JPIP_MK_CAP:
    case JPIP_MK_TLM:
    case JPIP_MK_PLM:
    case JPIP_MK_PPM:
    case JPIP_MK_CRG:
    case JPIP_MK_SOT:
        return seg_bad(sv, "not allowed in a tile-part header", err);
    default:
        return JPIP_OK;
    }
}

/* Walk the header of tile-part i (the k-th of its tile). */
static jpip_code_t tile_tpart(const jpip_cs_t *cs, jpip_src_t *src, jpip_tile_t *tile,
                              tilectx_t *tc, apr_size_t i, int first, jpip_err_t *err)
{
    const jpip_tpart_t *tp = &cs->tparts[i];
    apr_uint64_t pos = tp->sot + 12, hend = tp->body - 2;
    apr_size_t k;
    jpip_code_t rc;

    while (pos < hend) {
        seg_view_t sv;
        jpip_seg_t *s;
        int keep;

        rc = seg_read(src, pos, hend, &sv, err);
        if (rc != JPIP_OK) {
            return rc;
        }
        if (sv.len == 2 && !mk_reserved(sv.code)) {
            return jpip_err_set(
                err, JPIP_E_FORMAT,
                "unexpected %s marker in a tile-part header at offset %" APR_UINT64_T_FMT,
                jpip_marker_name(sv.code), pos);
        }
        keep = 1;
        rc = sv.len == 2 ? JPIP_OK : tile_seg(cs, tile, tc, &sv, first, &keep, err);
        if (rc != JPIP_OK) {
            return rc;
        }
        if (keep) {
            if (tc->segs.n >= cs->limits.max_segments) {
                return jpip_err_set(err, JPIP_E_LIMIT, "too many marker segments in tile %u",
                                    (unsigned)tile->index);
            }
            s = vec_push(&tc->segs);
            if (s == NULL) {
                return jpip_err_set(err, JPIP_E_NOMEM, "out of memory for a tile header");
            }
            s->off = sv.off;
            s->len = sv.len;
            s->code = sv.code;
        }
        pos += sv.len;
    }
    rc = piece_push(&tc->bodies, tp->body, tp->end - tp->body, err);
    if (rc == JPIP_OK && cs->plm_first != NULL) {
        const jpip_piece_t *pp = cs->plm_pieces;

        for (k = cs->plm_first[i]; k < cs->plm_first[i + 1] && rc == JPIP_OK; k++) {
            rc = piece_push(&tc->plm, pp[k].off, pp[k].len, err);
        }
    }
    if (rc == JPIP_OK && cs->ppm_first != NULL) {
        const jpip_piece_t *pp = cs->ppm_pieces;

        for (k = cs->ppm_first[i]; k < cs->ppm_first[i + 1] && rc == JPIP_OK; k++) {
            rc = piece_push(&tc->ppm, pp[k].off, pp[k].len, err);
        }
    }
    return rc;
}

/* Apply COD/COC precedence (tile COC > tile COD > main COC > main COD). */
static void tile_finish(const jpip_cs_t *cs, jpip_tile_t *tile, tilectx_t *tc)
{
    unsigned c;

    for (c = 0; c < cs->siz.csiz; c++) {
        if (!tc->coc_set[c] && tc->have_cod) {
            tile->tcp.tccp[c] = tc->cod_tmpl;
        }
    }
    if (tc->poc.n > 0) {
        tile->tcp.poc = tc->poc.p;
        tile->tcp.npoc = tc->poc.n;
    }
    tile->segs = tc->segs.p;
    tile->nsegs = tc->segs.n;
    tile->plt = tc->plt.p;
    tile->nplt = tc->plt.n;
    tile->ppt = tc->ppt.p;
    tile->nppt = tc->ppt.n;
    tile->bodies = tc->bodies.p;
    tile->nbodies = tc->bodies.n;
    tile->ppm = tc->ppm.p;
    tile->nppm = tc->ppm.n;
    tile->plm = tc->plm.p;
    tile->nplm = tc->plm.n;
}

jpip_code_t jpip_cs_tile_read(const jpip_cs_t *cs, jpip_src_t *src, apr_uint32_t t,
                              apr_pool_t *pool, jpip_tile_t **out, jpip_err_t *err)
{
    jpip_tile_t *tile;
    tilectx_t tc;
    apr_uint32_t i;
    int first = 1;

    if (t >= jpip_siz_ntiles(&cs->siz)) {
        return jpip_err_set(err, JPIP_E_NOTFOUND, "no tile %u", (unsigned)t);
    }
    tile = apr_pcalloc(pool, sizeof(*tile));
    tile->index = t;
    tile->tcp = cs->main;
    tile->tcp.tccp = apr_pmemdup(pool, cs->main.tccp, cs->siz.csiz * sizeof(jpip_tccp_t));
    memset(&tc, 0, sizeof(tc));
    tc.coc_set = apr_pcalloc(pool, cs->siz.csiz);
    vec_init(&tc.segs, pool, sizeof(jpip_seg_t));
    vec_init(&tc.plt, pool, sizeof(jpip_piece_t));
    vec_init(&tc.ppt, pool, sizeof(zseg_t));
    vec_init(&tc.bodies, pool, sizeof(jpip_piece_t));
    vec_init(&tc.ppm, pool, sizeof(jpip_piece_t));
    vec_init(&tc.poc, pool, sizeof(jpip_poc_t));
    vec_init(&tc.plm, pool, sizeof(jpip_piece_t));
    for (i = cs->tile_first[t]; i != JPIP_NONE; i = cs->tparts[i].next) {
        jpip_code_t rc = tile_tpart(cs, src, tile, &tc, i, first, err);

        if (rc != JPIP_OK) {
            return rc;
        }
        first = 0;
    }
    if (tc.ppt.n > 0 && cs->ppm_first != NULL) {
        return jpip_err_set(err, JPIP_E_FORMAT, "tile %u has PPT although the main header has PPM",
                            (unsigned)t);
    }
    if (tc.ppt.n > 0) {
        vec_t ppt;
        jpip_code_t rc = zseg_order(&tc.ppt, "PPT", pool, &ppt, err);

        if (rc != JPIP_OK) {
            return rc;
        }
        tc.ppt = ppt;
    }
    tile_finish(cs, tile, &tc);
    *out = tile;
    return JPIP_OK;
}

/* ---- geometry ---- */

void jpip_geom_tile(const jpip_siz_t *siz, apr_uint32_t t, jpip_rect_t *out)
{
    apr_uint64_t p = t % siz->ntx, q = t / siz->ntx;
    apr_uint64_t x0 = siz->xtosiz + p * siz->xtsiz, y0 = siz->ytosiz + q * siz->ytsiz;

    out->x0 = x0 > siz->xosiz ? x0 : siz->xosiz;
    out->y0 = y0 > siz->yosiz ? y0 : siz->yosiz;
    out->x1 = x0 + siz->xtsiz < siz->xsiz ? x0 + siz->xtsiz : siz->xsiz;
    out->y1 = y0 + siz->ytsiz < siz->ysiz ? y0 + siz->ytsiz : siz->ysiz;
}

void jpip_geom_tilecomp(const jpip_rect_t *tile, unsigned xr, unsigned yr, jpip_rect_t *out)
{
    out->x0 = jpip_ceildiv(tile->x0, xr);
    out->y0 = jpip_ceildiv(tile->y0, yr);
    out->x1 = jpip_ceildiv(tile->x1, xr);
    out->y1 = jpip_ceildiv(tile->y1, yr);
}

void jpip_geom_res(const jpip_rect_t *tc, unsigned nl, unsigned r, jpip_rect_t *out)
{
    unsigned n = r <= nl ? nl - r : 0;

    out->x0 = jpip_ceilpow2(tc->x0, n);
    out->y0 = jpip_ceilpow2(tc->y0, n);
    out->x1 = jpip_ceilpow2(tc->x1, n);
    out->y1 = jpip_ceilpow2(tc->y1, n);
}

void jpip_geom_pgrid(const jpip_rect_t *res, unsigned ppx, unsigned ppy, jpip_pgrid_t *out)
{
    memset(out, 0, sizeof(*out));
    out->px0 = jpip_floorpow2(res->x0, ppx);
    out->py0 = jpip_floorpow2(res->y0, ppy);
    if (res->x1 > res->x0 && res->y1 > res->y0) {
        out->npw = jpip_ceilpow2(res->x1, ppx) - out->px0;
        out->nph = jpip_ceilpow2(res->y1, ppy) - out->py0;
    }
}

/* Band coordinate ceil((a - o * 2^(nb-1)) / 2^nb); never negative for a >= 0. */
static apr_uint64_t band_coord(apr_uint64_t a, unsigned nb, unsigned o)
{
    apr_uint64_t sub = o ? ((apr_uint64_t)1) << (nb - 1) : 0;

    return a >= sub ? jpip_ceilpow2(a - sub, nb) : 0;
}

/* Code-blocks across [x0, x1) for blocks of 2^e, anchored at 0. */
static apr_uint64_t cblk_span(apr_uint64_t x0, apr_uint64_t x1, unsigned e)
{
    return x0 < x1 ? jpip_ceilpow2(x1, e) - jpip_floorpow2(x0, e) : 0;
}

static jpip_code_t cblk_count(apr_uint64_t nx, apr_uint64_t ny, jpip_t2_geom_t *g, unsigned b,
                              jpip_err_t *err)
{
    if (nx == 0 || ny == 0) {
        nx = ny = 0;
    }
    if (nx > JPIP_T2_MAX_CBLKS || ny > JPIP_T2_MAX_CBLKS || nx * ny > JPIP_T2_MAX_CBLKS) {
        return jpip_err_set(err, JPIP_E_LIMIT, "precinct with more than %u code-blocks",
                            (unsigned)JPIP_T2_MAX_CBLKS);
    }
    g->ncbx[b] = (apr_uint32_t)nx;
    g->ncby[b] = (apr_uint32_t)ny;
    return JPIP_OK;
}

jpip_code_t jpip_geom_prec_cblks(const jpip_rect_t *tc, const jpip_tccp_t *tccp, unsigned r,
                                 apr_uint64_t px, apr_uint64_t py, jpip_t2_geom_t *out,
                                 jpip_err_t *err)
{
    static const unsigned xob[3] = {1, 0, 1}, yob[3] = {0, 1, 1};
    jpip_rect_t res;
    jpip_pgrid_t g;
    unsigned b, ex, ey, nb, ppx, ppy;

    memset(out, 0, sizeof(*out));
    if (r > tccp->nl) {
        return jpip_err_set(err, JPIP_E_FORMAT, "resolution %u above NL %u", r, tccp->nl);
    }
    ppx = tccp->ppx[r];
    ppy = tccp->ppy[r];
    jpip_geom_res(tc, tccp->nl, r, &res);
    jpip_geom_pgrid(&res, ppx, ppy, &g);
    px += g.px0;
    py += g.py0;
    if (r == 0) {
        ex = tccp->xcb < ppx ? tccp->xcb : ppx;
        ey = tccp->ycb < ppy ? tccp->ycb : ppy;
        out->nbands = 1;
        return cblk_count(cblk_span(res.x0 > (px << ppx) ? res.x0 : px << ppx,
                                    res.x1 < ((px + 1) << ppx) ? res.x1 : (px + 1) << ppx, ex),
                          cblk_span(res.y0 > (py << ppy) ? res.y0 : py << ppy,
                                    res.y1 < ((py + 1) << ppy) ? res.y1 : (py + 1) << ppy, ey),
                          out, 0, err);
    }
    if (ppx == 0 || ppy == 0) {
        return jpip_err_set(err, JPIP_E_FORMAT, "precinct exponent 0 at resolution %u", r);
    }
    ppx--;
    ppy--;
    ex = tccp->xcb < ppx ? tccp->xcb : ppx;
    ey = tccp->ycb < ppy ? tccp->ycb : ppy;
    nb = tccp->nl - r + 1;
    out->nbands = 3;
    for (b = 0; b < 3; b++) {
        apr_uint64_t bx0 = band_coord(tc->x0, nb, xob[b]), bx1 = band_coord(tc->x1, nb, xob[b]);
        apr_uint64_t by0 = band_coord(tc->y0, nb, yob[b]), by1 = band_coord(tc->y1, nb, yob[b]);
        apr_uint64_t x0 = px << ppx, x1 = (px + 1) << ppx, y0 = py << ppy, y1 = (py + 1) << ppy;
        jpip_code_t rc;

        rc = cblk_count(cblk_span(x0 > bx0 ? x0 : bx0, x1 < bx1 ? x1 : bx1, ex),
                        cblk_span(y0 > by0 ? y0 : by0, y1 < by1 ? y1 : by1, ey), out, b, err);
        if (rc != JPIP_OK) {
            return rc;
        }
    }
    return JPIP_OK;
}
