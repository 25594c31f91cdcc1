/* mod_jpip: rebuilding a decodable codestream from JPP data-bins. */
#include "rebuild.h"

#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

#include "codestream.h"
#include "packets.h"
#include "source.h"
#include "t2.h"

#define RB_DEFAULT_MAX_PREC (((apr_uint64_t)1) << 22)

void jpip_rebuild_opts_init(jpip_rebuild_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->reduce = 0;
    opts->max_layers = JPIP_REBUILD_ALL;
}

/* ------------------------------------------------------ growable buffer */

typedef struct rb_buf_t {
    unsigned char *p;
    apr_size_t n, cap;
} rb_buf_t;

static jpip_code_t buf_put(rb_buf_t *b, const void *data, apr_size_t len, jpip_err_t *err)
{
    if (len > b->cap - b->n) {
        apr_size_t cap = b->cap ? b->cap : 4096;
        unsigned char *np;

        while (cap - b->n < len) {
            if (cap > ((apr_size_t)-1) / 2) {
                return jpip_err_set(err, JPIP_E_LIMIT, "rebuilt codestream too large");
            }
            cap *= 2;
        }
        np = realloc(b->p, cap);
        if (np == NULL) {
            return jpip_err_set(err, JPIP_E_NOMEM, "out of memory for the rebuilt codestream");
        }
        b->p = np;
        b->cap = cap;
    }
    if (len > 0) {
        memcpy(b->p + b->n, data, len);
        b->n += len;
    }
    return JPIP_OK;
}

static apr_status_t buf_cleanup(void *data)
{
    rb_buf_t *b = data;

    free(b->p);
    b->p = NULL;
    return APR_SUCCESS;
}

static void put_be16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void put_be32(unsigned char *p, apr_uint32_t v)
{
    put_be16(p, v >> 16);
    put_be16(p + 2, v & 0xFFFF);
}

/* ------------------------------------------------ header-bin filtering */

/* Copy the marker segments of a header bin to out, dropping those whose
 * codes are listed in drop (0-terminated). A bare SOD is accepted only as
 * the very last marker (and dropped). Every length is checked against the
 * bin, so the walk ends (each step moves on by at least 2 bytes). */
static jpip_code_t filter_segments(const unsigned char *d, apr_size_t len, apr_size_t pos,
                                   const unsigned *drop, const char *what, rb_buf_t *out,
                                   jpip_err_t *err)
{
    while (pos < len) {
        unsigned code, seglen, i;
        int keep = 1;

        if (len - pos < 2 || d[pos] != 0xFF) {
            return jpip_err_set(err, JPIP_E_FORMAT, "%s: no marker at offset %" APR_SIZE_T_FMT,
                                what, pos);
        }
        code = jpip_be16(d + pos);
        if (code == JPIP_MK_SOD && len - pos == 2) {
            return JPIP_OK;
        }
        if (code >= 0xFF30 && code <= 0xFF3F) {
            pos += 2; /* reserved markers without a segment (T.800 A.1.4): dropped */
            continue;
        }
        if (len - pos < 4) {
            return jpip_err_set(err, JPIP_E_FORMAT,
                                "%s: marker %s at offset %" APR_SIZE_T_FMT " is cut short", what,
                                jpip_marker_name(code), pos);
        }
        seglen = jpip_be16(d + pos + 2);
        if (code < 0xFF40 || code == JPIP_MK_SOT || code == JPIP_MK_SOD || code == JPIP_MK_SOC ||
            code == JPIP_MK_EOC || seglen < 2 || seglen > len - pos - 2) {
            return jpip_err_set(
                err, JPIP_E_FORMAT,
                "%s: bad marker segment %04X (length %u) at offset %" APR_SIZE_T_FMT, what, code,
                seglen, pos);
        }
        for (i = 0; drop[i] != 0; i++) {
            if (drop[i] == code) {
                keep = 0;
            }
        }
        if (keep) {
            jpip_code_t rc = buf_put(out, d + pos, 2 + (apr_size_t)seglen, err);
            if (rc != JPIP_OK) {
                return rc;
            }
        }
        pos += 2 + (apr_size_t)seglen;
    }
    return JPIP_OK;
}

/* Number of tiles from the SIZ segment that must follow SOC. */
static jpip_code_t siz_ntiles(const unsigned char *d, apr_size_t len, apr_uint32_t *nt,
                              jpip_err_t *err)
{
    apr_uint64_t xsiz, ysiz, xtsiz, ytsiz, xtosiz, ytosiz, ntx, nty;

    if (len < 4 + 38 || jpip_be16(d) != JPIP_MK_SOC || jpip_be16(d + 2) != JPIP_MK_SIZ) {
        return jpip_err_set(err, JPIP_E_FORMAT, "main header bin does not start with SOC, SIZ");
    }
    xsiz = jpip_be32(d + 8);
    ysiz = jpip_be32(d + 12);
    xtsiz = jpip_be32(d + 24);
    ytsiz = jpip_be32(d + 28);
    xtosiz = jpip_be32(d + 32);
    ytosiz = jpip_be32(d + 36);
    if (xtsiz == 0 || ytsiz == 0 || xtosiz >= xsiz || ytosiz >= ysiz) {
        return jpip_err_set(err, JPIP_E_FORMAT, "main header bin: inconsistent SIZ tiling");
    }
    ntx = jpip_ceildiv(xsiz - xtosiz, xtsiz);
    nty = jpip_ceildiv(ysiz - ytosiz, ytsiz);
    if (ntx * nty > JPIP_MAX_TILES) {
        return jpip_err_set(err, JPIP_E_FORMAT, "main header bin: more than %u tiles",
                            JPIP_MAX_TILES);
    }
    *nt = (apr_uint32_t)(ntx * nty);
    return JPIP_OK;
}

/* --------------------------------------------------------- precincts */

typedef struct rb_prec_t {
    jpip_t2_prec_t *t2;
    jpip_src_t *src;
    const unsigned char *data;
    apr_size_t len, pos;
    int opened;
    int complete;
    int dead; /* a layer was written empty: so are all later ones */
} rb_prec_t;

typedef struct rb_tile_t {
    const jpip_binsrc_t *bins;
    const jpip_rebuild_opts_t *opts;
    const jpip_cs_t *cs;
    const jpip_tile_t *tile;
    const jpip_tlayout_t *lay;
    const jpip_tlayout_t *lay0; /* cropping: the original's layout, whose bins are used */
    const jpip_siz_t *siz0;     /* cropping: the original's SIZ */
    apr_pool_t *pool;
    rb_prec_t *prec;
    rb_buf_t body;
    int cut; /* a packet cut short by the end of the original's data was written: the tile ends */
    jpip_rebuild_stats_t *stats;
} rb_tile_t;

/* Precinct (ax, ay) (absolute indices, exponents ppx, ppy) clipped to a
 * resolution's extent. */
static void prec_clip(const jpip_rect_t *res, apr_uint64_t ax, apr_uint64_t ay, unsigned ppx,
                      unsigned ppy, jpip_rect_t *out)
{
    out->x0 = ax << ppx > res->x0 ? ax << ppx : res->x0;
    out->y0 = ay << ppy > res->y0 ? ay << ppy : res->y0;
    out->x1 = (ax + 1) << ppx < res->x1 ? (ax + 1) << ppx : res->x1;
    out->y1 = (ay + 1) << ppy < res->y1 ? (ay + 1) << ppy : res->y1;
}

/* Cropping: the original's sequence number of packet k's precinct; 0 in
 * *cut when the crop leaves the precinct whole. */
static apr_uint64_t crop_seq(const rb_tile_t *rt, const jpip_pkt_t *k, int *cut)
{
    const jpip_tres_t *tr = &rt->lay->res[k->comp][k->res];
    const jpip_tres_t *t0 = &rt->lay0->res[k->comp][k->res];
    const jpip_tccp_t *tccp = &rt->tile->tcp.tccp[k->comp];
    apr_uint64_t ax = tr->grid.px0 + k->prec % tr->grid.npw;
    apr_uint64_t ay = tr->grid.py0 + k->prec / tr->grid.npw;
    jpip_rect_t a, b;

    *cut = 1;
    if (ax < t0->grid.px0 || ay < t0->grid.py0 || ax - t0->grid.px0 >= t0->grid.npw ||
        ay - t0->grid.py0 >= t0->grid.nph) {
        return 0;
    }
    prec_clip(&tr->rect, ax, ay, tccp->ppx[k->res], tccp->ppy[k->res], &a);
    prec_clip(&t0->rect, ax, ay, tccp->ppx[k->res], tccp->ppy[k->res], &b);
    *cut = memcmp(&a, &b, sizeof(a)) != 0;
    return t0->s0 + (ay - t0->grid.py0) * t0->grid.npw + (ax - t0->grid.px0);
}

static jpip_code_t prec_open(rb_tile_t *rt, const jpip_pkt_t *k, rb_prec_t *st, jpip_err_t *err)
{
    const jpip_cs_t *cs = rt->cs;
    const jpip_tres_t *tr = &rt->lay->res[k->comp][k->res];
    apr_uint64_t s = jpip_pkt_seq_s(rt->lay, k);
    const jpip_siz_t *siz = rt->siz0 != NULL ? rt->siz0 : &cs->siz;
    jpip_t2_geom_t g;
    jpip_code_t rc;
    int cut = 0;
    apr_uint64_t id;

    if (rt->lay0 != NULL) {
        s = crop_seq(rt, k, &cut);
    }
    id = jpip_prec_bin_id(rt->lay->tile, k->comp, s, siz->csiz, jpip_siz_ntiles(siz));
    st->opened = 1;
    rc = rt->bins->get(rt->bins->ctx, JPIP_CLASS_PRECINCT, rt->opts->csn, id, &st->data, &st->len,
                       &st->complete, err);
    if (rc == JPIP_E_NOTFOUND) {
        st->dead = 1;
        return JPIP_OK;
    }
    if (rc != JPIP_OK) {
        return rc;
    }
    if (cut) {
        /* its code-blocks differ in the cropped tile: the bin's data does
         * not fit them */
        rt->stats->prec_cut++;
        st->dead = 1;
        return JPIP_OK;
    }
    rt->stats->prec_bins++;
    rc = jpip_geom_prec_cblks(&rt->lay->tc[k->comp], &rt->tile->tcp.tccp[k->comp], k->res,
                              k->prec % tr->grid.npw, k->prec / tr->grid.npw, &g, err);
    if (rc == JPIP_OK) {
        rc = jpip_t2_prec_create(&st->t2, rt->pool, &g, rt->tile->tcp.tccp[k->comp].cblksty, err);
    }
    if (rc == JPIP_OK) {
        rc = jpip_src_open_mem(&st->src, rt->pool, st->data, st->len, err);
    }
    return rc;
}

static jpip_code_t put_empty(rb_tile_t *rt, apr_uint64_t seq, jpip_err_t *err)
{
    unsigned char b[9];
    apr_size_t n = 0;
    unsigned scod = rt->tile->tcp.scod;

    if (scod & JPIP_SCOD_SOP) {
        put_be16(b, JPIP_MK_SOP);
        put_be16(b + 2, 4);
        put_be16(b + 4, (unsigned)(seq & 0xFFFF));
        n = 6;
    }
    b[n++] = 0;
    if (scod & JPIP_SCOD_EPH) {
        put_be16(b + n, JPIP_MK_EPH);
        n += 2;
    }
    rt->stats->packets_empty++;
    return buf_put(&rt->body, b, n, err);
}

/* Write packet k (the seq-th of the tile). */
static jpip_code_t put_packet(rb_tile_t *rt, const jpip_pkt_t *k, apr_uint64_t seq, jpip_err_t *err)
{
    apr_uint64_t flat = jpip_pkt_flat(rt->lay, k);
    rb_prec_t *st = &rt->prec[flat];
    apr_size_t hpos;
    jpip_piece_t piece;
    jpip_t2_stream_t s;
    jpip_t2_packet_t pk;
    jpip_code_t rc;

    rt->stats->packets++;
    if (!st->opened) {
        rc = prec_open(rt, k, st, err);
        if (rc != JPIP_OK) {
            return rc;
        }
    }
    if (st->dead || k->layer >= rt->opts->max_layers ||
        (k->res > 0 && k->res + rt->opts->reduce > rt->tile->tcp.tccp[k->comp].nl)) {
        st->dead = 1;
        return put_empty(rt, seq, err);
    }
    if (st->pos == st->len) {
        /* the bin ends here (all of it is held when complete): the
         * precinct has no more packets */
        st->dead = 1;
        return put_empty(rt, seq, err);
    }
    hpos = st->pos;
    /* an SOP marker segment, copied with the packet, only where the coding
     * style allows one: the indexer splits packets the same way */
    if ((rt->tile->tcp.scod & JPIP_SCOD_SOP) && st->len - hpos >= 6 && st->data[hpos] == 0xFF &&
        st->data[hpos + 1] == 0x91) {
        hpos += 6;
    }
    piece.off = hpos;
    piece.len = st->len - hpos;
    jpip_t2_stream_init(&s, st->src, &piece, 1);
    rc = jpip_t2_read_header(st->t2, k->layer, &s, (rt->tile->tcp.scod & JPIP_SCOD_EPH) != 0, &pk,
                             err);
    if (rc == JPIP_OK && (pk.header_len > piece.len || pk.body_len > piece.len - pk.header_len)) {
        rc = jpip_err_set(err, JPIP_E_FORMAT,
                          "packet of %" APR_UINT64_T_FMT " + %" APR_UINT64_T_FMT
                          " bytes but %" APR_UINT64_T_FMT " left",
                          pk.header_len, pk.body_len, piece.len);
    }
    if (rc != JPIP_OK) {
        if (!st->complete && rc == JPIP_E_FORMAT) {
            /* a partial bin: the packet is not all there yet */
            st->dead = 1;
            return put_empty(rt, seq, err);
        }
        if (rc == JPIP_E_FORMAT) {
            /* a complete bin ending inside a packet: the original's data
             * ends there. Written as it is, last in the tile, so that a
             * decoder meets the same cut (and reads no packet after it) */
            jpip_err_clear(err);
            rt->cut = 1;
            st->dead = 1;
            rc = buf_put(&rt->body, st->data + st->pos, st->len - st->pos, err);
            st->pos = st->len;
            return rc;
        }
        return jpip_err_prefix(err, rc,
                               "precinct bin of tile %u, component %u, resolution %u, "
                               "precinct %" APR_UINT64_T_FMT " (s=%" APR_UINT64_T_FMT ")",
                               (unsigned)rt->lay->tile, (unsigned)k->comp, (unsigned)k->res,
                               k->prec, jpip_pkt_seq_s(rt->lay, k));
    }
    {
        apr_size_t end = (apr_size_t)(hpos + pk.header_len + pk.body_len);

        rc = buf_put(&rt->body, st->data + st->pos, end - st->pos, err);
        st->pos = end;
    }
    return rc;
}

/* ------------------------------------------------------------- driver */

typedef struct rb_out_t {
    jpip_rebuild_write_fn write;
    void *ctx;
    apr_uint64_t bytes;
} rb_out_t;

static jpip_code_t out_put(rb_out_t *o, const void *data, apr_size_t len, jpip_err_t *err)
{
    o->bytes += len;
    return len > 0 ? o->write(o->ctx, data, len, err) : JPIP_OK;
}

static void sot_make(unsigned char *b, apr_uint32_t t, apr_uint32_t psot)
{
    put_be16(b, JPIP_MK_SOT);
    put_be16(b + 2, 10);
    put_be16(b + 4, (unsigned)t);
    put_be32(b + 6, psot);
    b[10] = 0;
    b[11] = 1;
}

static jpip_code_t get_bin(const jpip_binsrc_t *bins, unsigned cls, apr_uint64_t csn,
                           apr_uint64_t id, const unsigned char **d, apr_size_t *len, int *complete,
                           int *found, jpip_err_t *err)
{
    jpip_code_t rc = bins->get(bins->ctx, cls, csn, id, d, len, complete, err);

    *found = rc == JPIP_OK;
    if (rc == JPIP_E_NOTFOUND) {
        *d = NULL;
        *len = 0;
        *complete = 0;
        jpip_err_clear(err);
        return JPIP_OK;
    }
    return rc;
}

/* One tile: its packets into rt->body. */
static jpip_code_t tile_packets(rb_tile_t *rt, const jpip_cs_t *cs, jpip_src_t *skel,
                                apr_uint32_t t, jpip_err_t *err)
{
    jpip_tile_t *tile;
    jpip_tlayout_t *lay;
    jpip_pkt_t *pkts;
    apr_size_t npkts, i;
    apr_uint64_t maxp = rt->opts->max_prec ? rt->opts->max_prec : RB_DEFAULT_MAX_PREC;
    jpip_code_t rc;

    rc = jpip_cs_tile_read(cs, skel, t, rt->pool, &tile, err);
    if (rc == JPIP_OK) {
        rc = jpip_tlayout_build(&lay, rt->pool, &cs->siz, cs->comps, t, &tile->tcp, maxp, err);
    }
    if (rc == JPIP_OK) {
        rc = jpip_packets_list(lay, &tile->tcp, rt->pool, 0, &pkts, &npkts, err);
    }
    if (rc != JPIP_OK) {
        return rc;
    }
    if (rt->siz0 != NULL) {
        jpip_tlayout_t *lay0;

        rc = jpip_tlayout_build(&lay0, rt->pool, rt->siz0, cs->comps, t, &tile->tcp, maxp, err);
        if (rc != JPIP_OK) {
            return rc;
        }
        rt->lay0 = lay0;
    }
    rt->tile = tile;
    rt->lay = lay;
    rt->prec = apr_pcalloc(rt->pool, (apr_size_t)(lay->nprec_total + 1) * sizeof(rb_prec_t));
    if (rt->prec == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory for precinct state");
    }
    for (i = 0; i < npkts && !rt->cut; i++) {
        rc = put_packet(rt, &pkts[i], i, err);
        if (rc != JPIP_OK) {
            return rc;
        }
    }
    return JPIP_OK;
}

/* JPT: write the complete tile-parts of tile t's tile data-bin (each SOT
 * checked, TNsot set to the number written). *done = 0 when the bin is
 * absent or holds no complete tile-part, so the caller falls back to
 * precincts. */
static jpip_code_t put_tile_bin(rb_out_t *out, const jpip_binsrc_t *bins,
                                const jpip_rebuild_opts_t *opts, apr_uint32_t t, int *done,
                                jpip_rebuild_stats_t *stats, jpip_err_t *err)
{
    const unsigned char *d;
    apr_size_t len, pos = 0, ends[256];
    int complete, found;
    unsigned count = 0, i;
    jpip_code_t rc = get_bin(bins, JPIP_CLASS_TILE, opts->csn, t, &d, &len, &complete, &found, err);

    *done = 0;
    if (rc != JPIP_OK || !found || out == NULL) {
        *done = rc == JPIP_OK && found ? -1 : 0; /* out NULL: only asked whether it is held */
        return rc;
    }
    /* find the complete tile-parts */
    while (len - pos >= 14 && count < 255) {
        apr_uint32_t psot = ((apr_uint32_t)d[pos + 6] << 24) | ((apr_uint32_t)d[pos + 7] << 16) |
                            ((apr_uint32_t)d[pos + 8] << 8) | d[pos + 9];

        if (d[pos] != 0xFF || d[pos + 1] != 0x90 || jpip_be16(d + pos + 4) != t) {
            return jpip_err_set(err, JPIP_E_FORMAT,
                                "tile data-bin %u: no SOT of tile %u at byte %" APR_SIZE_T_FMT,
                                (unsigned)t, (unsigned)t, pos);
        }
        if ((psot == 0 || psot > len - pos) && complete) {
            /* the last tile-part: to the end of the bin (Psot 0), or cut
             * short by the end of the original's data, written as it is */
            psot = (apr_uint32_t)(len - pos);
        }
        if (psot < 14 || psot > len - pos) {
            break; /* the rest of this tile-part has not arrived */
        }
        pos += psot;
        ends[count++] = pos;
    }
    if (count == 0) {
        return JPIP_OK;
    }
    for (i = 0; i < count && rc == JPIP_OK; i++) {
        apr_size_t start = i == 0 ? 0 : ends[i - 1];
        unsigned char sot[12];

        memcpy(sot, d + start, sizeof(sot));
        put_be32(sot + 6, (apr_uint32_t)(ends[i] - start)); /* Psot: its bytes written */
        sot[10] = (unsigned char)i;                         /* TPsot */
        sot[11] = (unsigned char)count;                     /* TNsot: the tile-parts written */
        rc = out_put(out, sot, sizeof(sot), err);
        if (rc == JPIP_OK) {
            rc = out_put(out, d + start + 12, ends[i] - start - 12, err);
        }
    }
    stats->tiles++;
    *done = rc == JPIP_OK;
    return rc;
}

jpip_code_t jpip_rebuild(const jpip_binsrc_t *bins, const jpip_rebuild_opts_t *opts,
                         apr_pool_t *pool, jpip_rebuild_write_fn write, void *wctx,
                         jpip_rebuild_stats_t *stats, jpip_err_t *err)
{
    static const unsigned main_drop[] = {JPIP_MK_TLM, JPIP_MK_PLM, JPIP_MK_PPM, 0};
    static const unsigned tile_drop[] = {JPIP_MK_PLT, JPIP_MK_PPT, 0};
    jpip_rebuild_stats_t dummy;
    const unsigned char *md;
    apr_size_t mlen;
    int complete, found;
    apr_uint32_t nt = 0, t;
    rb_buf_t mainhdr = {NULL, 0, 0}, skel = {NULL, 0, 0};
    rb_buf_t *thdr;
    unsigned char *thdr_held; /* 1: a tile header bin was found (a JPP tile), 2: a tile bin */
    int held_any;             /* some tile is held at all */
    apr_pool_t *sub;
    jpip_src_t *skel_src;
    jpip_cs_t *cs;
    rb_out_t out;
    jpip_code_t rc;
    jpip_siz_t siz0; /* cropping: the original's */
    static const unsigned char soc_eoc[4] = {0xFF, 0x4F, 0xFF, 0xD9};

    if (stats == NULL) {
        stats = &dummy;
    }
    memset(stats, 0, sizeof(*stats));
    out.write = write;
    out.ctx = wctx;
    out.bytes = 0;
    if (apr_pool_create(&sub, pool) != APR_SUCCESS) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory for a pool");
    }
    apr_pool_cleanup_register(sub, &mainhdr, buf_cleanup, apr_pool_cleanup_null);
    apr_pool_cleanup_register(sub, &skel, buf_cleanup, apr_pool_cleanup_null);

    /* main header: complete, SOC first */
    rc = get_bin(bins, JPIP_CLASS_MAIN, opts->csn, 0, &md, &mlen, &complete, &found, err);
    if (rc == JPIP_OK && (!found || !complete)) {
        rc = jpip_err_set(err, JPIP_E_NOTFOUND, "the main header bin is %s",
                          found ? "incomplete" : "absent");
    }
    if (rc == JPIP_OK) {
        rc = siz_ntiles(md, mlen, &nt, err);
    }
    if (rc == JPIP_OK && opts->crop) {
        const jpip_rect_t *c = &opts->crop_rect;

        /* siz_ntiles checked that SIZ is there */
        siz0.xsiz = jpip_be32(md + 8);
        siz0.ysiz = jpip_be32(md + 12);
        siz0.xosiz = jpip_be32(md + 16);
        siz0.yosiz = jpip_be32(md + 20);
        if (nt != 1 || c->x0 < siz0.xosiz || c->y0 < siz0.yosiz || c->x1 > siz0.xsiz ||
            c->y1 > siz0.ysiz || c->x0 >= c->x1 || c->y0 >= c->y1) {
            rc = jpip_err_set(err, JPIP_E_REQUEST,
                              nt != 1 ? "only a single-tile codestream can be cropped"
                                      : "the crop is not inside the image");
        }
    }
    if (rc == JPIP_OK) {
        rc = buf_put(&mainhdr, soc_eoc, 2, err);
    }
    if (rc == JPIP_OK) {
        rc = filter_segments(md, mlen, 2, main_drop, "main header bin", &mainhdr, err);
    }
    if (rc == JPIP_OK && opts->crop) {
        /* SIZ is the first segment written: Xsiz, Ysiz, XOsiz, YOsiz */
        put_be32(mainhdr.p + 8, (apr_uint32_t)opts->crop_rect.x1);
        put_be32(mainhdr.p + 12, (apr_uint32_t)opts->crop_rect.y1);
        put_be32(mainhdr.p + 16, (apr_uint32_t)opts->crop_rect.x0);
        put_be32(mainhdr.p + 20, (apr_uint32_t)opts->crop_rect.y0);
    }
    if (rc != JPIP_OK) {
        apr_pool_destroy(sub);
        return rc;
    }

    /* tile headers, and a skeleton codestream (headers only) to parse */
    thdr = apr_pcalloc(sub, nt * sizeof(*thdr));
    thdr_held = apr_pcalloc(sub, nt + 1);
    held_any = 0;
    rc = buf_put(&skel, mainhdr.p, mainhdr.n, err);
    for (t = 0; rc == JPIP_OK && t < nt; t++) {
        const unsigned char *td;
        apr_size_t tlen;
        unsigned char sot[12];
        char what[48];

        apr_pool_cleanup_register(sub, &thdr[t], buf_cleanup, apr_pool_cleanup_null);
        rc = get_bin(bins, JPIP_CLASS_TILEHDR, opts->csn, t, &td, &tlen, &complete, &found, err);
        thdr_held[t] = rc == JPIP_OK && found;
        if (rc == JPIP_OK && !found) {
            int tb = 0;

            rc = put_tile_bin(NULL, bins, opts, t, &tb, stats, err);
            thdr_held[t] = tb ? 2 : 0; /* 2: only its tile bin */
        }
        held_any |= thdr_held[t] != 0;
        if (rc == JPIP_OK && found && complete) {
            apr_snprintf(what, sizeof(what), "tile header bin %u", (unsigned)t);
            rc = filter_segments(td, tlen, 0, tile_drop, what, &thdr[t], err);
        }
        if (rc == JPIP_OK && 14 + (apr_uint64_t)thdr[t].n > 0xFFFFFFFFu) {
            rc = jpip_err_set(err, JPIP_E_LIMIT, "tile header bin %u too long", (unsigned)t);
        }
        if (rc == JPIP_OK) {
            sot_make(sot, t, (apr_uint32_t)(14 + thdr[t].n));
            rc = buf_put(&skel, sot, sizeof(sot), err);
        }
        if (rc == JPIP_OK) {
            rc = buf_put(&skel, thdr[t].p, thdr[t].n, err);
        }
        if (rc == JPIP_OK) {
            static const unsigned char sod[2] = {0xFF, 0x93};
            rc = buf_put(&skel, sod, 2, err);
        }
    }
    if (rc == JPIP_OK) {
        rc = buf_put(&skel, soc_eoc + 2, 2, err);
    }
    if (rc == JPIP_OK) {
        rc = jpip_src_open_mem(&skel_src, sub, skel.p, skel.n, err);
    }
    if (rc == JPIP_OK) {
        jpip_cs_limits_t lim;

        memset(&lim, 0, sizeof(lim));
        lim.headers_only = 1;
        rc = jpip_cs_parse(&cs, sub, skel_src, &lim, err);
    }
    if (rc == JPIP_OK) {
        rc = out_put(&out, mainhdr.p, mainhdr.n, err);
    }

    for (t = 0; rc == JPIP_OK && t < nt; t++) {
        rb_tile_t rt;
        apr_pool_t *tp;
        apr_uint64_t psot;
        unsigned char sot[12];
        static const unsigned char sod[2] = {0xFF, 0x93};

        int jpt = 0;

        /* JPT: a tile whose tile data-bin is held but not its header bin */
        if (thdr_held[t] == 2) {
            rc = put_tile_bin(&out, bins, opts, t, &jpt, stats, err);
            if (rc != JPIP_OK) {
                break;
            }
        }
        if (jpt) {
            continue;
        }
        /* a tile of which nothing is held is left out: the original may
         * lack it (a decoder shows a missing tile as zeros). When no tile
         * is held at all, every tile is written empty, so that the
         * codestream still decodes */
        if (thdr_held[t] == 0 && held_any) {
            continue;
        }
        if (apr_pool_create(&tp, sub) != APR_SUCCESS) {
            rc = jpip_err_set(err, JPIP_E_NOMEM, "out of memory for a pool");
            break;
        }
        memset(&rt, 0, sizeof(rt));
        rt.bins = bins;
        rt.opts = opts;
        rt.cs = cs;
        if (opts->crop) {
            apr_uint32_t x1 = siz0.xsiz, y1 = siz0.ysiz, x0 = siz0.xosiz, y0 = siz0.yosiz;

            siz0 = cs->siz;
            siz0.xsiz = x1;
            siz0.ysiz = y1;
            siz0.xosiz = x0;
            siz0.yosiz = y0;
            rt.siz0 = &siz0;
        }
        rt.pool = tp;
        rt.stats = stats;
        apr_pool_cleanup_register(tp, &rt.body, buf_cleanup, apr_pool_cleanup_null);
        rc = tile_packets(&rt, cs, skel_src, t, err);
        psot = 14 + (apr_uint64_t)thdr[t].n + rt.body.n;
        if (rc == JPIP_OK && psot > 0xFFFFFFFFu) {
            rc = jpip_err_set(err, JPIP_E_LIMIT, "tile %u longer than 4 GiB", (unsigned)t);
        }
        if (rc == JPIP_OK) {
            sot_make(sot, t, (apr_uint32_t)psot);
            rc = out_put(&out, sot, sizeof(sot), err);
        }
        if (rc == JPIP_OK) {
            rc = out_put(&out, thdr[t].p, thdr[t].n, err);
        }
        if (rc == JPIP_OK) {
            rc = out_put(&out, sod, 2, err);
        }
        if (rc == JPIP_OK) {
            rc = out_put(&out, rt.body.p, rt.body.n, err);
        }
        stats->tiles++;
        apr_pool_destroy(tp);
    }
    if (rc == JPIP_OK) {
        rc = out_put(&out, soc_eoc + 2, 2, err);
    }
    stats->bytes = out.bytes;
    apr_pool_destroy(sub);
    return rc;
}

static apr_uint64_t gcd64(apr_uint64_t a, apr_uint64_t b)
{
    while (b != 0) {
        apr_uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* lcm(a, v), 0 past 2^32 (or when a is already 0). */
static apr_uint64_t lcm_capped(apr_uint64_t a, apr_uint64_t v)
{
    apr_uint64_t l;

    if (a == 0 || v == 0 || v > 0xFFFFFFFFu) {
        return 0;
    }
    l = a / gcd64(a, v) * v;
    return l > 0xFFFFFFFFu ? 0 : l;
}

void jpip_rebuild_crop_align(const jpip_comp_t *comps, const jpip_tccp_t *const *tccps,
                             unsigned ncomps, apr_uint64_t *ax, apr_uint64_t *ay)
{
    unsigned c, r;

    *ax = *ay = 1;
    for (c = 0; c < ncomps; c++) {
        const jpip_tccp_t *p = tccps[c];

        for (r = 0; r <= p->nl; r++) {
            /* a precinct of resolution r spans 2^(PP + NL - r) samples of
             * the tile-component, XRsiz times as many on the grid */
            unsigned ex = p->ppx[r] + p->nl - r, ey = p->ppy[r] + p->nl - r;

            *ax = ex >= 32 ? 0 : lcm_capped(*ax, ((apr_uint64_t)comps[c].xr) << ex);
            *ay = ey >= 32 ? 0 : lcm_capped(*ay, ((apr_uint64_t)comps[c].yr) << ey);
        }
    }
}

static jpip_code_t mem_write(void *ctx, const void *data, apr_size_t len, jpip_err_t *err)
{
    return buf_put(ctx, data, len, err);
}

jpip_code_t jpip_rebuild_mem(const jpip_binsrc_t *bins, const jpip_rebuild_opts_t *opts,
                             apr_pool_t *pool, unsigned char **out, apr_size_t *outlen,
                             jpip_rebuild_stats_t *stats, jpip_err_t *err)
{
    rb_buf_t b = {NULL, 0, 0};
    jpip_code_t rc = jpip_rebuild(bins, opts, pool, mem_write, &b, stats, err);

    if (rc == JPIP_OK) {
        *out = apr_palloc(pool, b.n > 0 ? b.n : 1);
        if (*out == NULL) {
            rc = jpip_err_set(err, JPIP_E_NOMEM, "out of memory for the rebuilt codestream");
        } else {
            memcpy(*out, b.p, b.n);
            *outlen = b.n;
        }
    }
    free(b.p);
    return rc;
}
