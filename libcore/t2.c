/* mod_jpip: packet-header decoding (T.800 B.10; T.814 for HT code-blocks).
 *
 * Only the lengths matter here: every bit of the header is parsed (tag
 * trees, pass counts, Lblock, segment lengths) so that the header's byte
 * length and the sum of its codeword-segment lengths come out exactly.
 */
#include "t2.h"

#include <string.h>

/* A code-block carries at most 3*Mb-2 coding passes, Mb <= 74 even with the
 * largest ROI shift we accept (37 + 37); HT placeholder passes stay below
 * the same bound. 255 is a generous ceiling that still catches garbage. */
#define T2_MAX_PASSES 255u
/* Missing most significant bit-planes: at most 37 guard+exponent planes plus
 * a 37-plane ROI shift. Anything larger is a corrupt zero-bit-plane tree. */
#define T2_MAX_ZBP 74u
/* Segment lengths are coded on at most this many bits. */
#define T2_MAX_LENBITS 32u
/* Tag-tree depth for JPIP_T2_MAX_CBLKS leaves is 25; keep some margin. */
#define T2_MAX_TREE_DEPTH 40

/* Per code-block segment model. */
enum {
    KIND_P1,         /* Part-1 code-block, no BYPASS/TERMALL: one segment */
    KIND_P1_TERMALL, /* Part-1, each pass terminated */
    KIND_P1_BYPASS,  /* Part-1, lazy: 10 passes, then 2/1 alternating */
    KIND_HT          /* HT: cleanup, then refinement (2) / cleanup (1) alternating */
};

#define CB_INCLUDED 0x01 /* has contributed in an earlier packet */
#define CB_HT_PLHD 0x02  /* HT block whose first cleanup pass is still to come */
#define CB_MIXED 0x04    /* HT MIXED mode: kind not yet decided */

typedef struct t2_cblk_t {
    apr_uint16_t npasses;   /* coding passes so far, placeholders included */
    apr_uint16_t segno;     /* current codeword segment (after placeholders for HT) */
    apr_uint16_t segpasses; /* passes in the current segment so far */
    apr_byte_t lblock;
    apr_byte_t kind;
    apr_byte_t flags;
    apr_byte_t zbp;
} t2_cblk_t;

/* A tag tree over w x h leaves: levels from the leaves (level 0) up to a
 * single root. Each node keeps the lower bound learnt so far and whether
 * its value is known exactly. */
typedef struct t2_tnode_t {
    apr_uint32_t low;
    apr_uint32_t known;
} t2_tnode_t;

typedef struct t2_tlevel_t {
    apr_uint32_t w;     /* nodes across */
    apr_uint32_t first; /* index of the level's first node */
} t2_tlevel_t;

typedef struct t2_tree_t {
    unsigned nlevels;
    t2_tlevel_t *lv;
    t2_tnode_t *nodes;
} t2_tree_t;

typedef struct t2_band_t {
    apr_uint32_t ncbx, ncby;
    t2_cblk_t *cblks;
    t2_tree_t incl; /* inclusion tag tree */
    t2_tree_t zbp;  /* zero-bit-plane tag tree */
} t2_band_t;

struct jpip_t2_prec_t {
    unsigned nbands;
    unsigned cblksty;
    unsigned next_layer;
    t2_band_t band[3];
};

/* Levels and nodes of a tag tree over w x h leaves (w, h >= 1). Fills lv
 * (one entry per level) when not NULL. */
static apr_size_t tree_shape(apr_uint32_t w, apr_uint32_t h, t2_tlevel_t *lv, unsigned *nlevels)
{
    apr_size_t total = 0;
    unsigned n = 0;

    for (;;) {
        if (lv != NULL) {
            lv[n].w = w;
            lv[n].first = (apr_uint32_t)total;
        }
        total += (apr_size_t)w * h;
        n++;
        if (w <= 1 && h <= 1) {
            break;
        }
        w = (w + 1) / 2;
        h = (h + 1) / 2;
    }
    *nlevels = n;
    return total;
}

/* The code-blocks of the precinct's bands, checked against the limit. */
static jpip_code_t prec_count(const jpip_t2_geom_t *geom, apr_uint64_t *n, jpip_err_t *err)
{
    apr_uint64_t total = 0;
    unsigned b;

    for (b = 0; b < geom->nbands && b < 3; b++) {
        total += (apr_uint64_t)geom->ncbx[b] * geom->ncby[b];
        if (total > JPIP_T2_MAX_CBLKS) {
            return jpip_err_set(
                err, JPIP_E_LIMIT,
                "precinct with more than %u code-blocks (band %u is %" APR_UINT64_T_FMT
                " x %" APR_UINT64_T_FMT ")",
                JPIP_T2_MAX_CBLKS, b, (apr_uint64_t)geom->ncbx[b], (apr_uint64_t)geom->ncby[b]);
        }
    }
    *n = total;
    return JPIP_OK;
}

apr_uint64_t jpip_t2_prec_bytes(const jpip_t2_geom_t *geom)
{
    apr_uint64_t n = 0;
    unsigned b;

    for (b = 0; b < geom->nbands && b < 3; b++) {
        n += (apr_uint64_t)geom->ncbx[b] * geom->ncby[b];
    }
    /* the code-blocks, and two tag trees per band whose levels sum to
     * under 4/3 of their leaves (plus one node per level of rounding) */
    return sizeof(jpip_t2_prec_t) + n * sizeof(t2_cblk_t) +
           2 * (n + n / 3 + 3 * T2_MAX_TREE_DEPTH) * sizeof(t2_tnode_t) +
           3 * T2_MAX_TREE_DEPTH * sizeof(t2_tlevel_t);
}

jpip_code_t jpip_t2_prec_create(jpip_t2_prec_t **prec, apr_pool_t *pool, const jpip_t2_geom_t *geom,
                                unsigned cblksty, jpip_err_t *err)
{
    apr_size_t nodes = 0, levels = 0, ncb, i;
    apr_uint64_t total = 0;
    jpip_t2_prec_t *p;
    t2_tnode_t *nd;
    t2_tlevel_t *lvp;
    t2_cblk_t *cb, init;
    unsigned b, nl;
    char *mem;
    jpip_code_t rc;

    if (geom->nbands != 1 && geom->nbands != 3) {
        return jpip_err_set(err, JPIP_E_LIMIT, "precinct with %u bands", geom->nbands);
    }
    if ((rc = prec_count(geom, &total, err)) != JPIP_OK) {
        return rc;
    }
    ncb = (apr_size_t)total;
    memset(&init, 0, sizeof(init));
    init.lblock = 3;
    if (cblksty & JPIP_CBLK_HT) {
        init.kind = KIND_HT;
        init.flags = CB_HT_PLHD | ((cblksty & JPIP_CBLK_HTMIXED) ? CB_MIXED : 0);
    } else if (cblksty & JPIP_CBLK_TERMALL) {
        init.kind = KIND_P1_TERMALL;
    } else if (cblksty & JPIP_CBLK_BYPASS) {
        init.kind = KIND_P1_BYPASS;
    } else {
        init.kind = KIND_P1;
    }
    /* one block: the precinct, its tag-tree nodes and levels, then its
     * code-blocks (in decreasing alignment); a band's two trees have the
     * same shape and share one level table */
    for (b = 0; b < geom->nbands; b++) {
        if (geom->ncbx[b] != 0 && geom->ncby[b] != 0) {
            nodes += 2 * tree_shape(geom->ncbx[b], geom->ncby[b], NULL, &nl);
            levels += nl;
        }
    }
    mem = apr_pcalloc(pool,
                      sizeof(*p) + nodes * sizeof(*nd) + levels * sizeof(*lvp) + ncb * sizeof(*cb));
    if (mem == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory for a precinct");
    }
    p = (jpip_t2_prec_t *)(void *)mem;
    nd = (t2_tnode_t *)(void *)(mem + sizeof(*p));
    lvp = (t2_tlevel_t *)(void *)(nd + nodes);
    cb = (t2_cblk_t *)(void *)(lvp + levels);
    for (i = 0; i < ncb; i++) {
        cb[i] = init;
    }
    p->nbands = geom->nbands;
    p->cblksty = cblksty;
    for (b = 0; b < geom->nbands; b++) {
        t2_band_t *band = &p->band[b];
        apr_size_t n;

        if (geom->ncbx[b] == 0 || geom->ncby[b] == 0) {
            continue; /* empty band: ncbx/ncby stay 0 */
        }
        band->ncbx = geom->ncbx[b];
        band->ncby = geom->ncby[b];
        band->cblks = cb;
        cb += (apr_size_t)band->ncbx * band->ncby;
        n = tree_shape(band->ncbx, band->ncby, lvp, &nl);
        band->incl.nlevels = band->zbp.nlevels = nl;
        band->incl.lv = band->zbp.lv = lvp;
        band->incl.nodes = nd;
        band->zbp.nodes = nd + n;
        lvp += nl;
        nd += 2 * n;
    }
    *prec = p;
    return JPIP_OK;
}

/* ------------------------------------------------------------ streams */

void jpip_t2_stream_init(jpip_t2_stream_t *s, jpip_src_t *src, const jpip_piece_t *pieces,
                         apr_size_t npieces)
{
    s->src = src;
    s->pieces = pieces;
    s->npieces = npieces;
    s->cur = 0;
    s->pos = 0;
    s->deadline = 0;
}

apr_uint64_t jpip_t2_stream_left(const jpip_t2_stream_t *s)
{
    apr_uint64_t left = 0;
    apr_size_t i;

    for (i = s->cur; i < s->npieces; i++) {
        left += s->pieces[i].len - (i == s->cur ? s->pos : 0);
    }
    return left;
}

/* Step over exhausted pieces so that cur names a piece with bytes left, or
 * npieces at the end. */
static void stream_settle(jpip_t2_stream_t *s)
{
    while (s->cur < s->npieces && s->pos >= s->pieces[s->cur].len) {
        s->cur++;
        s->pos = 0;
    }
}

apr_uint64_t jpip_t2_stream_fileoff(const jpip_t2_stream_t *s)
{
    jpip_t2_stream_t t = *s;

    stream_settle(&t);
    if (t.cur < t.npieces) {
        return t.pieces[t.cur].off + t.pos;
    }
    if (t.npieces == 0) {
        return 0;
    }
    return t.pieces[t.npieces - 1].off + t.pieces[t.npieces - 1].len;
}

jpip_code_t jpip_t2_stream_peek(jpip_t2_stream_t *s, unsigned char *buf, apr_size_t n,
                                apr_size_t *got, jpip_err_t *err)
{
    jpip_t2_stream_t t = *s;
    apr_size_t done = 0;

    stream_settle(&t);
    while (done < n && t.cur < t.npieces) {
        apr_uint64_t avail = t.pieces[t.cur].len - t.pos;
        apr_size_t k = n - done;
        jpip_code_t rc;

        if (k > avail) {
            k = (apr_size_t)avail;
        }
        rc = jpip_src_read(t.src, t.pieces[t.cur].off + t.pos, buf + done, k, err);
        if (rc != JPIP_OK) {
            return rc;
        }
        done += k;
        t.pos += k;
        stream_settle(&t);
    }
    *got = done;
    return JPIP_OK;
}

jpip_code_t jpip_t2_stream_skip(jpip_t2_stream_t *s, apr_uint64_t n, jpip_src_emit_fn emit,
                                void *ctx, jpip_err_t *err)
{
    if (n > jpip_t2_stream_left(s)) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "%" APR_UINT64_T_FMT " bytes wanted but only %" APR_UINT64_T_FMT
                            " left in the packet data",
                            n, jpip_t2_stream_left(s));
    }
    stream_settle(s);
    while (n > 0) {
        apr_uint64_t avail = s->pieces[s->cur].len - s->pos;
        apr_uint64_t k = n < avail ? n : avail;

        if (emit != NULL) {
            jpip_code_t rc = emit(ctx, s->pieces[s->cur].off + s->pos, k, err);
            if (rc != JPIP_OK) {
                return rc;
            }
        }
        s->pos += k;
        n -= k;
        stream_settle(s);
    }
    return JPIP_OK;
}

/* --------------------------------------------------------- bit reader */

#define BR_CHUNK 512 /* bytes of header looked at in place at a time */

/* Reads packet-header bits with T.800 B.10.1 bit-stuffing: a byte that
 * follows 0xFF carries only 7 bits (its MSB is a stuffed 0). The bytes
 * are read in place from the source (jpip_src_peek): nothing else reads
 * it while a header is decoded. */
typedef struct t2_bits_t {
    jpip_t2_stream_t s;     /* a copy of the caller's cursor, at p[0] */
    const unsigned char *p; /* the bytes at the cursor */
    apr_size_t len, pos;    /* bytes at p, next unread */
    apr_uint64_t consumed;  /* bytes taken so far */
    unsigned cur;           /* current byte */
    unsigned nbits;         /* unread bits left in cur */
    int last_ff;            /* the last byte taken was 0xFF */
    int eod;                /* a read ran past the end of the stream */
    unsigned layer;
    jpip_err_t *err;
} t2_bits_t;

/* Look at the next bytes of the stream, in place. */
static jpip_code_t bits_refill(t2_bits_t *br)
{
    jpip_code_t rc = jpip_t2_stream_skip(&br->s, br->len, NULL, NULL, br->err);
    apr_uint64_t avail;

    if (rc != JPIP_OK) {
        return rc;
    }
    br->len = br->pos = 0;
    stream_settle(&br->s);
    if (br->s.cur == br->s.npieces) {
        br->eod = 1;
        return jpip_err_set(br->err, JPIP_E_FORMAT,
                            "layer %u: packet header runs past the end of the data "
                            "after %" APR_UINT64_T_FMT " bytes",
                            br->layer, br->consumed);
    }
    avail = br->s.pieces[br->s.cur].len - br->s.pos;
    rc = jpip_src_peek(br->s.src, br->s.pieces[br->s.cur].off + br->s.pos,
                       avail < BR_CHUNK ? (apr_size_t)avail : BR_CHUNK, &br->p, br->err);
    if (rc == JPIP_OK) {
        br->len = avail < BR_CHUNK ? (apr_size_t)avail : BR_CHUNK;
    }
    return rc;
}

static jpip_code_t bits_byte(t2_bits_t *br, unsigned *v)
{
    if (br->pos == br->len) {
        jpip_code_t rc = bits_refill(br);

        if (rc != JPIP_OK) {
            return rc;
        }
    }
    *v = br->p[br->pos++];
    br->consumed++;
    return JPIP_OK;
}

/* Take the next byte as the current one: 7 bits after a 0xFF, else 8. */
static jpip_code_t bits_load(t2_bits_t *br)
{
    jpip_code_t rc = bits_byte(br, &br->cur);

    if (rc != JPIP_OK) {
        return rc;
    }
    br->nbits = br->last_ff ? 7 : 8;
    br->last_ff = br->cur == 0xFF;
    return JPIP_OK;
}

static APR_INLINE jpip_code_t bits_read1(t2_bits_t *br, unsigned *bit)
{
    if (br->nbits == 0) {
        jpip_code_t rc = bits_load(br);

        if (rc != JPIP_OK) {
            return rc;
        }
    }
    br->nbits--;
    *bit = (br->cur >> br->nbits) & 1u;
    return JPIP_OK;
}

/* Read n <= 32 bits, most significant first, as many at a time as the
 * current byte has. */
static jpip_code_t bits_read(t2_bits_t *br, unsigned n, apr_uint32_t *v)
{
    apr_uint32_t x = 0;

    while (n > 0) {
        unsigned k;

        if (br->nbits == 0) {
            jpip_code_t rc = bits_load(br);

            if (rc != JPIP_OK) {
                return rc;
            }
        }
        k = n < br->nbits ? n : br->nbits;
        br->nbits -= k;
        x = (x << k) | ((br->cur >> br->nbits) & ((1u << k) - 1));
        n -= k;
    }
    *v = x;
    return JPIP_OK;
}

/* End of header: drop the rest of the current byte; a header whose last
 * byte is 0xFF is followed by one more (stuffed) byte that belongs to it. */
static jpip_code_t bits_align(t2_bits_t *br)
{
    br->nbits = 0;
    if (br->last_ff) {
        unsigned v;
        br->last_ff = 0;
        return bits_byte(br, &v);
    }
    return JPIP_OK;
}

/* ----------------------------------------------------------- tag trees */

/* Decode leaf (x, y) of t against threshold: afterwards the leaf's value is
 * known if it is below the threshold. Sets *below accordingly. Every loop
 * either reads a bit or ends, and reads stop at threshold. */
static jpip_code_t tree_decode(t2_tree_t *t, t2_bits_t *br, apr_uint32_t x, apr_uint32_t y,
                               apr_uint32_t threshold, int *below)
{
    t2_tnode_t *path[T2_MAX_TREE_DEPTH];
    apr_uint32_t low = 0;
    unsigned lv;
    int i;

    for (lv = 0; lv < t->nlevels; lv++) {
        path[lv] = &t->nodes[t->lv[lv].first + (apr_size_t)y * t->lv[lv].w + x];
        x /= 2;
        y /= 2;
    }
    for (i = (int)t->nlevels - 1; i >= 0; i--) {
        t2_tnode_t *nd = path[i];

        if (nd->low < low) {
            nd->low = low;
        }
        while (!nd->known && nd->low < threshold) {
            unsigned bit;
            jpip_code_t rc = bits_read1(br, &bit);

            if (rc != JPIP_OK) {
                return rc;
            }
            if (bit) {
                nd->known = 1;
            } else {
                nd->low++;
            }
        }
        low = nd->low;
    }
    *below = path[0]->known && path[0]->low < threshold;
    return JPIP_OK;
}

/* ---------------------------------------------------- header fields */

/* Number of coding passes (T.800 Table B.4). */
static jpip_code_t read_npasses(t2_bits_t *br, unsigned *n)
{
    apr_uint32_t v;
    jpip_code_t rc;

    if ((rc = bits_read(br, 1, &v)) != JPIP_OK) {
        return rc;
    }
    if (v == 0) {
        *n = 1;
        return JPIP_OK;
    }
    if ((rc = bits_read(br, 1, &v)) != JPIP_OK) {
        return rc;
    }
    if (v == 0) {
        *n = 2;
        return JPIP_OK;
    }
    if ((rc = bits_read(br, 2, &v)) != JPIP_OK) {
        return rc;
    }
    if (v != 3) {
        *n = 3 + v;
        return JPIP_OK;
    }
    if ((rc = bits_read(br, 5, &v)) != JPIP_OK) {
        return rc;
    }
    if (v != 31) {
        *n = 6 + v;
        return JPIP_OK;
    }
    if ((rc = bits_read(br, 7, &v)) != JPIP_OK) {
        return rc;
    }
    *n = 37 + v;
    return JPIP_OK;
}

static unsigned floorlog2(unsigned v)
{
    unsigned l = 0;

    while (v > 1) {
        v >>= 1;
        l++;
    }
    return l;
}

/* Passes the current segment of a code-block of this kind can hold. */
static unsigned seg_max(unsigned kind, unsigned segno)
{
    switch (kind) {
    case KIND_P1_TERMALL:
        return 1;
    case KIND_P1_BYPASS:
        return segno == 0 ? 10 : (segno % 2 ? 2 : 1);
    case KIND_HT:
        return segno % 2 ? 2 : 1;
    default:
        return T2_MAX_PASSES;
    }
}

typedef struct t2_where_t {
    unsigned layer, band;
    apr_uint32_t x, y;
} t2_where_t;

#define WHERE_FMT "layer %u, band %u, code-block (%u,%u)"
#define WHERE_ARGS(w) (w)->layer, (w)->band, (unsigned)(w)->x, (unsigned)(w)->y

static jpip_code_t read_len(t2_bits_t *br, const t2_where_t *w, unsigned nbits, apr_uint32_t *len)
{
    if (nbits > T2_MAX_LENBITS) {
        return jpip_err_set(br->err, JPIP_E_FORMAT,
                            WHERE_FMT ": segment length coded on %u bits (more than 32)",
                            WHERE_ARGS(w), nbits);
    }
    return bits_read(br, nbits, len);
}

static jpip_code_t add_body(t2_bits_t *br, const t2_where_t *w, apr_uint64_t *body,
                            apr_uint32_t len)
{
    if (*body > UINT64_MAX - len) {
        return jpip_err_set(br->err, JPIP_E_FORMAT, WHERE_FMT ": packet body length overflows",
                            WHERE_ARGS(w));
    }
    *body += len;
    return JPIP_OK;
}

/* Allocate n passes to the code-block's segments (segment model of its
 * kind), reading one length per segment piece. */
static jpip_code_t read_segments(t2_bits_t *br, const t2_where_t *w, t2_cblk_t *cb, unsigned n,
                                 apr_uint64_t *body)
{
    while (n > 0) {
        unsigned max = seg_max(cb->kind, cb->segno);
        unsigned take;
        apr_uint32_t len;
        jpip_code_t rc;

        if (cb->segpasses >= max) {
            cb->segno++; /* the current segment is full: the next one begins */
            cb->segpasses = 0;
            continue;
        }
        take = n < max - cb->segpasses ? n : max - cb->segpasses;
        rc = read_len(br, w, cb->lblock + floorlog2(take), &len);
        if (rc == JPIP_OK) {
            rc = add_body(br, w, body, len);
        }
        if (rc != JPIP_OK) {
            return rc;
        }
        cb->segpasses = (apr_uint16_t)(cb->segpasses + take);
        cb->npasses = (apr_uint16_t)(cb->npasses + take);
        n -= take;
    }
    return JPIP_OK;
}

/* A mixed-mode block turned out to be a Part-1 block: its first n passes
 * were one segment. Only the plain segment model is supported there. */
static jpip_code_t become_part1(t2_bits_t *br, const t2_where_t *w, jpip_t2_prec_t *prec,
                                t2_cblk_t *cb, unsigned n)
{
    if (prec->cblksty & (JPIP_CBLK_BYPASS | JPIP_CBLK_TERMALL)) {
        return jpip_err_set(br->err, JPIP_E_UNSUPPORTED,
                            WHERE_FMT ": Part-1 code-block in HT MIXED mode with BYPASS or "
                                      "TERMALL is not supported",
                            WHERE_ARGS(w));
    }
    cb->kind = KIND_P1;
    cb->flags &= (apr_byte_t) ~(CB_HT_PLHD | CB_MIXED);
    cb->segno = 0;
    cb->segpasses = (apr_uint16_t)n;
    cb->npasses = (apr_uint16_t)(cb->npasses + n);
    return JPIP_OK;
}

/* First contribution(s) of an HT code-block, before its first cleanup pass
 * (T.814 B.3): leading passes may be placeholders (empty HT sets). The
 * cleanup length is coded on Lblock + floor(log2(P + 1)) bits, P being the
 * placeholder passes in this packet; a contribution of placeholders only
 * codes a zero length on Lblock + floor(log2(n)) bits, as for Part 1. The
 * shorter field is read first; a zero value means "read on". */
static jpip_code_t read_ht_first(t2_bits_t *br, const t2_where_t *w, jpip_t2_prec_t *prec,
                                 t2_cblk_t *cb, unsigned n, apr_uint64_t *body)
{
    unsigned href = (cb->npasses + n - 1) % 3; /* refinement passes after the cleanup */
    int seg = (int)n - (int)href;              /* placeholders + the cleanup pass */
    unsigned nbits = cb->lblock + (seg >= 1 ? floorlog2((unsigned)seg) : 0);
    unsigned full = cb->lblock + floorlog2(n);
    int mixed = (cb->flags & CB_MIXED) != 0;
    apr_uint32_t v = 0, more = 0;
    jpip_code_t rc;

    if (full > T2_MAX_LENBITS) {
        return jpip_err_set(br->err, JPIP_E_FORMAT,
                            WHERE_FMT ": segment length coded on %u bits (more than 32)",
                            WHERE_ARGS(w), full);
    }
    if (seg < 1) {
        nbits = full;
    }
    if ((rc = read_len(br, w, nbits, &v)) != JPIP_OK) {
        return rc;
    }
    if (v != 0 && seg >= 1) {
        if (!mixed || (cb->lblock > 3 && v > 1 && (v >> (nbits - 1)) == 0)) {
            /* the first HT cleanup segment */
            if ((rc = add_body(br, w, body, v)) != JPIP_OK) {
                return rc;
            }
            cb->flags &= (apr_byte_t) ~(CB_HT_PLHD | CB_MIXED);
            cb->npasses = (apr_uint16_t)(cb->npasses + seg);
            cb->segno = 0;
            cb->segpasses = 1;
            return read_segments(br, w, cb, href, body);
        }
        /* MIXED mode and no HT discriminator (Lblock > 3 and a zero MSB):
         * a Part-1 block, whose length field is the longer one */
        if (nbits < full) {
            if ((rc = bits_read(br, full - nbits, &more)) != JPIP_OK) {
                return rc;
            }
            v = (v << (full - nbits)) | more;
        }
        if ((rc = add_body(br, w, body, v)) != JPIP_OK) {
            return rc;
        }
        return become_part1(br, w, prec, cb, n);
    }
    if (nbits < full) {
        if ((rc = bits_read(br, full - nbits, &more)) != JPIP_OK) {
            return rc;
        }
        v = (v << (full - nbits)) | more;
    }
    if (v == 0) {
        cb->npasses = (apr_uint16_t)(cb->npasses + n); /* placeholder passes only */
        return JPIP_OK;
    }
    if (!mixed) {
        return jpip_err_set(br->err, JPIP_E_FORMAT,
                            WHERE_FMT ": non-zero length %u for HT placeholder passes",
                            WHERE_ARGS(w), (unsigned)v);
    }
    if ((rc = add_body(br, w, body, v)) != JPIP_OK) {
        return rc;
    }
    return become_part1(br, w, prec, cb, n);
}

static jpip_code_t read_cblk(t2_bits_t *br, jpip_t2_prec_t *prec, t2_band_t *band,
                             const t2_where_t *w, apr_uint64_t *body)
{
    t2_cblk_t *cb = &band->cblks[(apr_size_t)w->y * band->ncbx + w->x];
    unsigned n, inc;
    int included;
    jpip_code_t rc;

    if (!(cb->flags & CB_INCLUDED)) {
        rc = tree_decode(&band->incl, br, w->x, w->y, (apr_uint32_t)w->layer + 1, &included);
        if (rc != JPIP_OK) {
            return rc;
        }
    } else {
        unsigned bit;
        if ((rc = bits_read1(br, &bit)) != JPIP_OK) {
            return rc;
        }
        included = (int)bit;
    }
    if (!included) {
        return JPIP_OK;
    }
    if (!(cb->flags & CB_INCLUDED)) {
        apr_uint32_t thr;
        int known = 0;

        /* Each round reads at least one bit or learns the value. */
        for (thr = 1; !known; thr++) {
            if (thr > T2_MAX_ZBP + 1) {
                return jpip_err_set(br->err, JPIP_E_FORMAT,
                                    WHERE_FMT ": more than %u missing bit-planes", WHERE_ARGS(w),
                                    T2_MAX_ZBP);
            }
            rc = tree_decode(&band->zbp, br, w->x, w->y, thr, &known);
            if (rc != JPIP_OK) {
                return rc;
            }
        }
        cb->zbp = (apr_byte_t)band->zbp.nodes[(apr_size_t)w->y * band->ncbx + w->x].low;
        cb->flags |= CB_INCLUDED;
    }
    if ((rc = read_npasses(br, &n)) != JPIP_OK) {
        return rc;
    }
    if (cb->npasses + n > T2_MAX_PASSES) {
        return jpip_err_set(br->err, JPIP_E_FORMAT,
                            WHERE_FMT ": %u coding passes in all (at most %u possible)",
                            WHERE_ARGS(w), cb->npasses + n, T2_MAX_PASSES);
    }
    /* Lblock increment: a comma code (k ones, then a zero). */
    for (inc = 0;; inc++) {
        unsigned bit;
        if ((rc = bits_read1(br, &bit)) != JPIP_OK) {
            return rc;
        }
        if (!bit) {
            break;
        }
        if (cb->lblock + inc + 1 > T2_MAX_LENBITS) {
            return jpip_err_set(br->err, JPIP_E_FORMAT, WHERE_FMT ": Lblock grows beyond %u bits",
                                WHERE_ARGS(w), T2_MAX_LENBITS);
        }
    }
    cb->lblock = (apr_byte_t)(cb->lblock + inc);
    if (cb->flags & CB_HT_PLHD) {
        return read_ht_first(br, w, prec, cb, n, body);
    }
    return read_segments(br, w, cb, n, body);
}

/* The code-block contributions of a packet whose first bit is set: adds
 * their codeword-segment lengths to *body. */
static jpip_code_t read_contributions(t2_bits_t *br, jpip_t2_prec_t *prec, unsigned layer,
                                      apr_time_t deadline, apr_uint64_t *body)
{
    apr_uint64_t visited = 0;
    unsigned b;

    for (b = 0; b < prec->nbands; b++) {
        t2_band_t *band = &prec->band[b];
        t2_where_t w;

        w.layer = layer;
        w.band = b;
        for (w.y = 0; w.y < band->ncby; w.y++) {
            for (w.x = 0; w.x < band->ncbx; w.x++) {
                jpip_code_t rc;

                if (deadline != 0 && (++visited & 0xFFFF) == 0 && apr_time_now() > deadline) {
                    return jpip_err_limit(br->err, JPIP_LIMIT_INDEX_TIME,
                                          "packet header decoding ran out of time (layer %u, "
                                          "band %u)",
                                          layer, b);
                }
                rc = read_cblk(br, prec, band, &w, body);
                if (rc != JPIP_OK) {
                    return rc;
                }
            }
        }
    }
    return JPIP_OK;
}

jpip_code_t jpip_t2_read_header(jpip_t2_prec_t *prec, unsigned layer, jpip_t2_stream_t *hdr,
                                int use_eph, jpip_t2_packet_t *out, jpip_err_t *err)
{
    t2_bits_t br;
    apr_uint64_t body = 0;
    unsigned bit;
    jpip_code_t rc;

    out->cut = 0;
    if (layer != prec->next_layer) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "packets of a precinct out of layer order (layer %u, expected %u)",
                            layer, prec->next_layer);
    }
    memset(&br, 0, sizeof(br)); /* small: the bytes are read in place */
    br.s = *hdr;
    br.layer = layer;
    br.err = err;

    rc = bits_read1(&br, &bit);
    if (rc == JPIP_OK) {
        out->empty = !bit;
        if (bit) {
            rc = read_contributions(&br, prec, layer, hdr->deadline, &body);
        }
    }
    if (rc == JPIP_OK) {
        rc = bits_align(&br);
    }
    if (rc != JPIP_OK) {
        out->cut = br.eod;
        return rc;
    }
    if (use_eph) {
        apr_uint64_t hlen = br.consumed;
        unsigned m0 = 0, m1 = 0;

        /* the end of the data where the EPH belongs cuts the packet short */
        rc = bits_byte(&br, &m0);
        if (rc == JPIP_OK && m0 == 0xFF) {
            rc = bits_byte(&br, &m1);
        }
        if (rc != JPIP_OK) {
            out->cut = br.eod;
            return jpip_err_set(
                err, rc,
                "layer %u: the data ends where the EPH marker of a %" APR_UINT64_T_FMT
                "-byte packet header belongs",
                layer, hlen);
        }
        if (m0 != 0xFF || m1 != 0x92) {
            return jpip_err_set(err, JPIP_E_FORMAT,
                                "layer %u: EPH marker (FF92) missing after a %" APR_UINT64_T_FMT
                                "-byte packet header",
                                layer, hlen);
        }
    }
    prec->next_layer = layer + 1;
    out->header_len = br.consumed;
    out->body_len = body;
    return JPIP_OK;
}
