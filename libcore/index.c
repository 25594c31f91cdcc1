/* mod_jpip: the index of a target: every data-bin -> its byte pieces. */
#include "index.h"

#include <stdlib.h>
#include <string.h>

#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_time.h>

#include "box.h"
#include "packets.h"
#include "t2.h"

/* ---- blob layout ---- */

#define IX_MAGIC "JPIPIDX\n"
#define IX_ENDIAN 0x01020304u

enum {
    SEC_PATH,  /* key path bytes, NUL-terminated */
    SEC_CS,    /* jpip_ix_cs_t */
    SEC_COMP,  /* jpip_comp_t */
    SEC_TILE,  /* jpip_ix_tile_t */
    SEC_TC,    /* jpip_ix_tc_t */
    SEC_TCCP,  /* jpip_tccp_t */
    SEC_BIN,   /* jpip_bin_t */
    SEC_PIECE, /* jpip_piece_t */
    SEC_BOUND, /* apr_uint64_t */
    SEC_SYNTH, /* bytes */
    NSEC
};

static const apr_size_t sec_esz[NSEC] = {1,
                                         sizeof(jpip_ix_cs_t),
                                         sizeof(jpip_comp_t),
                                         sizeof(jpip_ix_tile_t),
                                         sizeof(jpip_ix_tc_t),
                                         sizeof(jpip_tccp_t),
                                         sizeof(jpip_bin_t),
                                         sizeof(jpip_piece_t),
                                         sizeof(apr_uint64_t),
                                         1};

typedef struct ixsec_t {
    apr_uint64_t off;   /* from the start of the blob, 8-aligned */
    apr_uint64_t count; /* elements */
} ixsec_t;

typedef struct ixhdr_t {
    char magic[8];
    apr_uint32_t version;
    apr_uint32_t endian; /* IX_ENDIAN in the writer's byte order */
    apr_uint64_t total;  /* blob bytes */
    apr_uint64_t src_size;
    apr_int64_t src_mtime;
    apr_uint64_t src_dev, src_ino;
    apr_int64_t src_mtime_ns, src_ctime_ns;
    unsigned char digest[24]; /* JPIP_INDEX_DIGEST_LEN used */
    apr_uint64_t build_us;
    apr_uint64_t bytes_read;
    apr_uint32_t flags; /* JPIP_IXF_* */
    apr_uint32_t hdr_size;
    apr_uint64_t meta_bin0; /* bin of metadata-bin 0 */
    apr_uint64_t nmeta;
    ixsec_t sec[NSEC];
} ixhdr_t;

struct jpip_index_t {
    const unsigned char *base;
    apr_size_t size;
    const ixhdr_t *h;
    const jpip_ix_cs_t *cs;
    const jpip_comp_t *comps;
    const jpip_ix_tile_t *tiles;
    const jpip_ix_tc_t *tcs;
    const jpip_tccp_t *tccps;
    const jpip_bin_t *bins;
    const jpip_piece_t *pieces;
    const apr_uint64_t *bounds;
    const unsigned char *synth;
    jpip_ix_summary_t *sums; /* per codestream, computed at load */
    int last_bound_len;      /* every bin's last bound is its length (checked at load) */
    int built;               /* built by this process: the blob is writable */
};

void jpip_index_limits_default(jpip_index_limits_t *l)
{
    l->max_bins = ((apr_uint64_t)1) << 26;
    l->max_memory = ((apr_uint64_t)1) << 30;
    l->max_tile_comps = ((apr_uint64_t)1) << 24;
    l->max_tile_parts = ((apr_uint64_t)1) << 20;
    l->max_precincts_per_tile = ((apr_uint64_t)1) << 22;
    l->max_packets_per_tile = ((apr_uint64_t)1) << 26;
    l->max_codestreams = 65536;
    l->max_time = 0;
}

static void limits_fill(jpip_index_limits_t *l, const jpip_index_limits_t *in)
{
    jpip_index_limits_t d;

    jpip_index_limits_default(&d);
    *l = in != NULL ? *in : d;
    if (l->max_bins == 0) {
        l->max_bins = d.max_bins;
    }
    if (l->max_memory == 0) {
        l->max_memory = d.max_memory;
    }
    if (l->max_tile_comps == 0) {
        l->max_tile_comps = d.max_tile_comps;
    }
    if (l->max_tile_parts == 0) {
        l->max_tile_parts = d.max_tile_parts;
    }
    if (l->max_precincts_per_tile == 0) {
        l->max_precincts_per_tile = d.max_precincts_per_tile;
    }
    if (l->max_packets_per_tile == 0) {
        l->max_packets_per_tile = d.max_packets_per_tile;
    }
    if (l->max_codestreams == 0) {
        l->max_codestreams = d.max_codestreams;
    }
}

/* ---- builder: growable heap arrays, freed when the build ends ---- */

typedef struct gvec_t {
    void *p;
    apr_size_t n, cap, esz;
} gvec_t;

typedef struct builder_t {
    jpip_index_limits_t lim;
    apr_uint64_t mem; /* bytes held by the arrays below */
    gvec_t v[NSEC];
    apr_hash_t *tccp_ids; /* jpip_tccp_t bytes -> index + 1 */
    apr_pool_t *pool;     /* build scratch */
    apr_uint64_t cur;     /* bin being filled */
    apr_uint32_t flags;
    apr_uint64_t meta_bin0, nmeta;
    apr_time_t deadline; /* 0: none */
} builder_t;

static void builder_free(builder_t *b)
{
    unsigned i;

    for (i = 0; i < NSEC; i++) {
        free(b->v[i].p);
        b->v[i].p = NULL;
    }
}

/* Make room for k more elements of section s. */
static jpip_code_t gv_reserve(builder_t *b, unsigned s, apr_size_t k, jpip_err_t *err)
{
    gvec_t *g = &b->v[s];
    apr_size_t cap;
    void *np;

    if (g->cap - g->n >= k) {
        return JPIP_OK;
    }
    cap = g->cap ? g->cap + g->cap / 2 : 64;
    if (cap < g->n + k) {
        cap = g->n + k;
    }
    if ((apr_uint64_t)(cap - g->cap) * g->esz > b->lim.max_memory - b->mem ||
        cap > (apr_size_t)-1 / g->esz) {
        return jpip_err_limit(err, JPIP_LIMIT_INDEX_MEMORY,
                              "index larger than the limit of %" APR_UINT64_T_FMT " bytes",
                              b->lim.max_memory);
    }
    np = realloc(g->p, cap * g->esz);
    if (np == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory building the index");
    }
    b->mem += (apr_uint64_t)(cap - g->cap) * g->esz;
    g->p = np;
    g->cap = cap;
    return JPIP_OK;
}

/* Append one zeroed element to section s; *out gets its index. */
static jpip_code_t gv_push(builder_t *b, unsigned s, apr_uint64_t *out, jpip_err_t *err)
{
    gvec_t *g = &b->v[s];
    jpip_code_t rc;

    *out = 0;
    rc = gv_reserve(b, s, 1, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    memset((char *)g->p + g->n * g->esz, 0, g->esz);
    *out = g->n++;
    return JPIP_OK;
}

#define GV_AT(b, s, type, i) (((type *)(b)->v[s].p) + (i))

/* ---- bins ---- */

static jpip_code_t bin_new(builder_t *b, apr_uint64_t *idx, jpip_err_t *err)
{
    *idx = 0;
    if (b->v[SEC_BIN].n >= b->lim.max_bins) {
        return jpip_err_set(err, JPIP_E_LIMIT, "more than %" APR_UINT64_T_FMT " data-bins",
                            b->lim.max_bins);
    }
    return gv_push(b, SEC_BIN, idx, err);
}

/* Start filling bin idx: its pieces and bounds are appended from now on. */
static void bin_open(builder_t *b, apr_uint64_t idx)
{
    jpip_bin_t *bin = GV_AT(b, SEC_BIN, jpip_bin_t, idx);

    b->cur = idx;
    bin->piece0 = b->v[SEC_PIECE].n;
    bin->bound0 = b->v[SEC_BOUND].n;
    bin->npieces = 0;
    bin->nbounds = 0;
    bin->len = 0;
    bin->flags = 0;
}

/* Append bytes to the open bin, merging with the previous piece when
 * they continue it. */
static jpip_code_t bin_add(void *ctx, apr_uint64_t off, apr_uint64_t len, jpip_err_t *err)
{
    builder_t *b = ctx;
    jpip_bin_t *bin = GV_AT(b, SEC_BIN, jpip_bin_t, b->cur);
    jpip_piece_t *last;
    apr_uint64_t i;
    jpip_code_t rc;

    if (len == 0) {
        return JPIP_OK;
    }
    if (bin->npieces > 0) {
        last = GV_AT(b, SEC_PIECE, jpip_piece_t, b->v[SEC_PIECE].n - 1);
        if (!jpip_piece_is_synth(last) && last->off + last->len == off) {
            last->len += len;
            bin->len += len;
            return JPIP_OK;
        }
    }
    if (bin->npieces == 0xFFFFFFFFu) {
        return jpip_err_set(err, JPIP_E_LIMIT, "data-bin with too many pieces");
    }
    rc = gv_push(b, SEC_PIECE, &i, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    bin = GV_AT(b, SEC_BIN, jpip_bin_t, b->cur);
    last = GV_AT(b, SEC_PIECE, jpip_piece_t, i);
    last->off = off;
    last->len = len;
    bin->npieces++;
    bin->len += len;
    return JPIP_OK;
}

/* Record the current length of the open bin as a boundary. */
static jpip_code_t bin_bound(builder_t *b, jpip_err_t *err)
{
    apr_uint64_t i;
    jpip_code_t rc;
    jpip_bin_t *bin = GV_AT(b, SEC_BIN, jpip_bin_t, b->cur);

    if (bin->nbounds == 0xFFFF) {
        return jpip_err_set(err, JPIP_E_LIMIT, "data-bin with too many boundaries");
    }
    rc = gv_push(b, SEC_BOUND, &i, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    bin = GV_AT(b, SEC_BIN, jpip_bin_t, b->cur);
    *GV_AT(b, SEC_BOUND, apr_uint64_t, i) = bin->len;
    bin->nbounds++;
    return JPIP_OK;
}

static void bin_close(builder_t *b, int complete)
{
    GV_AT(b, SEC_BIN, jpip_bin_t, b->cur)->flags = complete ? JPIP_BIN_COMPLETE : 0;
}

/* Mark bin idx as belonging to a tile the codestream does not have. */
static void bin_absent(builder_t *b, apr_uint64_t idx)
{
    GV_AT(b, SEC_BIN, jpip_bin_t, idx)->flags |= JPIP_BIN_ABSENT;
}

/* ---- codestream ---- */

/* Context for one codestream. */
typedef struct csw_t {
    builder_t *b;
    jpip_src_t *src; /* the codestream (logical offsets) */
    const jpip_cs_t *cs;
    apr_uint64_t csi; /* index of its jpip_ix_cs_t */
    apr_uint64_t main_bin;
} csw_t;

/* Add the logical range [off, off+len) of the codestream to the open bin. */
static jpip_code_t cs_add(csw_t *w, apr_uint64_t off, apr_uint64_t len, jpip_err_t *err)
{
    return jpip_src_map(w->src, off, len, bin_add, w->b, err);
}

static jpip_code_t main_bin_fill(csw_t *w, jpip_err_t *err)
{
    const jpip_cs_t *cs = w->cs;
    apr_size_t i;
    jpip_code_t rc;

    bin_open(w->b, w->main_bin);
    rc = cs_add(w, cs->soc, 2, err);
    for (i = 0; i < cs->nmsegs && rc == JPIP_OK; i++) {
        unsigned code = cs->msegs[i].code;

        /* They describe the original file's layout; a rebuilt stream differs. */
        if (code == JPIP_MK_TLM || code == JPIP_MK_PLM || code == JPIP_MK_PPM) {
            continue;
        }
        rc = cs_add(w, cs->msegs[i].off, cs->msegs[i].len, err);
    }
    bin_close(w->b, 1);
    return rc;
}

/* Index of tccp in the shared table (equal parameter sets stored once). */
static jpip_code_t tccp_id(builder_t *b, const jpip_tccp_t *tc, apr_uint64_t *id, jpip_err_t *err)
{
    jpip_tccp_t key;
    apr_uint64_t *v;
    jpip_code_t rc;

    memcpy(&key, tc, sizeof(key));
    memset(key.pad, 0, sizeof(key.pad));
    memset(key.pad2, 0, sizeof(key.pad2));
    v = apr_hash_get(b->tccp_ids, &key, sizeof(key));
    if (v != NULL) {
        *id = *v;
        return JPIP_OK;
    }
    rc = gv_push(b, SEC_TCCP, id, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    *GV_AT(b, SEC_TCCP, jpip_tccp_t, *id) = key;
    v = apr_palloc(b->pool, sizeof(*v));
    *v = *id;
    apr_hash_set(b->tccp_ids, apr_pmemdup(b->pool, &key, sizeof(key)), sizeof(key), v);
    return JPIP_OK;
}

/* ---- one tile ---- */

/* Where a packet's bytes are: npieces logical ranges from piece0. */
typedef struct loc_t {
    apr_size_t piece0;
    apr_size_t npieces;
} loc_t;

typedef struct tw_t {
    csw_t *w;
    jpip_tile_t *tile;
    jpip_tlayout_t *lay;
    apr_pool_t *pool;
    jpip_pkt_t *pk; /* packet sequence */
    apr_size_t npk;
    loc_t *loc; /* located packets: a prefix of the sequence */
    apr_size_t nloc;
    int cut;           /* the last located packet is cut short by the end of the tile's data */
    int more;          /* the tile has more packets than pk lists (the data cannot hold them) */
    int absent;        /* the tile has no tile-part a decoder uses */
    jpip_piece_t *pcs; /* logical ranges of the located packets */
    apr_size_t npcs, cappcs;
    apr_uint64_t t2mem; /* bytes of packet-header decoding state of this tile */
} tw_t;

/* Append a logical range to the current packet (t2 emit callback). */
static jpip_code_t tw_add(void *ctx, apr_uint64_t off, apr_uint64_t len, jpip_err_t *err)
{
    tw_t *tw = ctx;

    if (len == 0) {
        return JPIP_OK;
    }
    if (tw->npcs > tw->loc[tw->nloc].piece0) {
        jpip_piece_t *last = &tw->pcs[tw->npcs - 1];

        if (last->off + last->len == off) {
            last->len += len;
            return JPIP_OK;
        }
    }
    if (tw->npcs == tw->cappcs) {
        apr_size_t cap = tw->cappcs ? tw->cappcs * 2 : 256;
        jpip_piece_t *np = apr_palloc(tw->pool, cap * sizeof(*np));

        if (np == NULL) {
            return jpip_err_set(err, JPIP_E_NOMEM, "out of memory locating packets");
        }
        if (tw->npcs > 0) {
            memcpy(np, tw->pcs, tw->npcs * sizeof(*np));
        }
        tw->pcs = np;
        tw->cappcs = cap;
    }
    tw->pcs[tw->npcs].off = off;
    tw->pcs[tw->npcs].len = len;
    tw->npcs++;
    return JPIP_OK;
}

/* Decode the PLT packet lengths of the tile into *vals (at most max).
 * Returns 0 (and no error) when they are malformed or too many. */
static int plt_values(tw_t *tw, const jpip_piece_t *plt, apr_size_t nplt, apr_uint64_t **vals,
                      apr_size_t *nvals, apr_size_t max, jpip_err_t *err)
{
    apr_uint64_t *v = apr_palloc(tw->pool, (max + 1) * sizeof(*v));
    apr_uint64_t acc = 0;
    apr_size_t n = 0, i;

    for (i = 0; i < nplt; i++) {
        apr_uint64_t done = 0;

        while (done < plt[i].len) {
            apr_uint64_t k = plt[i].len - done;
            const unsigned char *p;
            apr_size_t j;

            if (k > JPIP_SRC_PEEK_MAX) {
                k = JPIP_SRC_PEEK_MAX;
            }
            if (jpip_src_peek(tw->w->src, plt[i].off + done, (apr_size_t)k, &p, err) != JPIP_OK) {
                return 0;
            }
            for (j = 0; j < k; j++) {
                acc = (acc << 7) | (p[j] & 0x7F);
                if (acc >> 48) {
                    return 0;
                }
                if (!(p[j] & 0x80)) {
                    if (acc == 0 || n >= max) {
                        return 0;
                    }
                    v[n++] = acc;
                    acc = 0;
                }
            }
            done += k;
        }
    }
    *vals = v;
    *nvals = n;
    return acc == 0;
}

/* Locate packets from PLT. Returns 1 when PLT was present and agreed
 * with the tile-part lengths (every packet inside one tile-part body, the
 * bodies exactly covered), else 0 and nothing located. */
static int plt_locate(tw_t *tw, jpip_err_t *err)
{
    const jpip_tile_t *tile = tw->tile;
    /* PLT first; PLM (main header) when the tile has no PLT. */
    const jpip_piece_t *lp = tile->nplt > 0 ? tile->plt : tile->plm;
    apr_size_t nlp = tile->nplt > 0 ? tile->nplt : tile->nplm;
    apr_uint64_t *vals, pos = 0;
    apr_size_t nv, k, bi = 0;

    if (nlp == 0 || tile->nppt > 0 || tile->nppm > 0 || tw->w->cs->ppm_first != NULL ||
        !plt_values(tw, lp, nlp, &vals, &nv, tw->npk, err)) {
        return 0;
    }
    for (k = 0; k < nv; k++) {
        if (bi >= tile->nbodies || vals[k] > tile->bodies[bi].len - pos) {
            return 0;
        }
        pos += vals[k];
        if (pos == tile->bodies[bi].len) {
            bi++;
            pos = 0;
        }
    }
    if (bi != tile->nbodies) {
        return 0;
    }
    tw->pcs = apr_palloc(tw->pool, (nv + 1) * sizeof(jpip_piece_t));
    for (k = 0, bi = 0, pos = 0; k < nv; k++) {
        tw->loc[k].piece0 = k;
        tw->loc[k].npieces = 1;
        tw->pcs[k].off = tile->bodies[bi].off + pos;
        tw->pcs[k].len = vals[k];
        pos += vals[k];
        if (pos == tile->bodies[bi].len) {
            bi++;
            pos = 0;
        }
    }
    tw->npcs = tw->cappcs = nv;
    tw->nloc = nv;
    return 1;
}

/* Decoding state of the precinct of packet k, created on first use. */
static jpip_code_t prec_state(tw_t *tw, jpip_t2_prec_t **states, const jpip_pkt_t *k,
                              jpip_t2_prec_t **out, jpip_err_t *err)
{
    apr_uint64_t flat = jpip_pkt_flat(tw->lay, k);
    const jpip_tccp_t *tc = &tw->tile->tcp.tccp[k->comp];
    const jpip_pgrid_t *g = &tw->lay->res[k->comp][k->res].grid;
    jpip_t2_geom_t geom;
    jpip_code_t rc;

    if (states[flat] == NULL) {
        const builder_t *b = tw->w->b;

        rc = jpip_geom_prec_cblks(&tw->lay->tc[k->comp], tc, k->res, k->prec % g->npw,
                                  k->prec / g->npw, &geom, err);
        /* the decoding state grows with the code-blocks the header claims,
         * not with the data: charge it against the memory budget first */
        if (rc == JPIP_OK) {
            tw->t2mem += jpip_t2_prec_bytes(&geom);
            if (tw->t2mem > b->lim.max_memory - b->mem) {
                rc = jpip_err_limit(err, JPIP_LIMIT_INDEX_MEMORY,
                                    "decoding the packet headers of tile %u would need more than "
                                    "%" APR_UINT64_T_FMT " bytes",
                                    (unsigned)tw->tile->index, b->lim.max_memory);
            }
        }
        if (rc == JPIP_OK) {
            rc = jpip_t2_prec_create(&states[flat], tw->pool, &geom, tc->cblksty, err);
        }
        if (rc != JPIP_OK) {
            return rc;
        }
    }
    *out = states[flat];
    return JPIP_OK;
}

/* Skip an SOP marker segment at the cursor of the body stream, if any:
 * six bytes from an FF91, as a decoder skips them (Lsop and Nsop are not
 * looked at; fewer than six bytes left are not an SOP). */
static jpip_code_t sop_skip(tw_t *tw, jpip_t2_stream_t *bs, jpip_err_t *err)
{
    unsigned char m[6];
    apr_size_t got;
    jpip_code_t rc = jpip_t2_stream_peek(bs, m, 6, &got, err);

    if (rc != JPIP_OK || got < 6 || m[0] != 0xFF || m[1] != 0x91) {
        return rc;
    }
    return jpip_t2_stream_skip(bs, 6, tw_add, tw, err);
}

/* The rest of the tile's packet data belongs to packet k, which it cuts
 * short: a decoder takes what there is of it and reads no more packets. */
static jpip_code_t take_cut(tw_t *tw, jpip_t2_stream_t *bs, apr_size_t k, jpip_err_t *err)
{
    jpip_code_t rc = jpip_t2_stream_skip(bs, jpip_t2_stream_left(bs), tw_add, tw, err);

    if (rc == JPIP_OK) {
        jpip_err_clear(err);
        tw->loc[k].npieces = tw->npcs - tw->loc[k].piece0;
        tw->nloc = k + 1;
        tw->cut = 1;
    }
    return rc;
}

/* With EPH markers signalled, packets from k on that the data does not
 * reach (or the one whose header it cuts) cannot be read: a decoder finds
 * no EPH for them and gives up (openjpeg 2.5 does), so the file is refused
 * as well. */
static jpip_code_t eph_after_end(const tw_t *tw, apr_size_t k, jpip_err_t *err)
{
    return jpip_err_set(err, JPIP_E_FORMAT,
                        "tile %u: the packet data ends before packet %" APR_SIZE_T_FMT
                        " of %" APR_SIZE_T_FMT " is whole, and EPH markers are signalled",
                        (unsigned)tw->tile->index, k, tw->npk);
}

/* With packed headers the packets after a cut one still have headers: a
 * decoder reads them against no data, which for a non-empty one drops
 * what its code-blocks had. Bins cannot say that, so it is refused; empty
 * ones change nothing. */
static jpip_code_t packed_after_cut(tw_t *tw, jpip_t2_prec_t **states, jpip_t2_stream_t *h,
                                    apr_size_t k, int eph, jpip_err_t *err)
{
    apr_size_t j;

    for (j = k + 1; j < tw->npk && jpip_t2_stream_left(h) > 0; j++) {
        jpip_t2_prec_t *st;
        jpip_t2_packet_t pkt;
        jpip_code_t rc = prec_state(tw, states, &tw->pk[j], &st, err);

        if (rc == JPIP_OK) {
            rc = jpip_t2_read_header(st, tw->pk[j].layer, h, eph, &pkt, err);
        }
        if (rc == JPIP_OK && !pkt.empty) {
            rc = jpip_err_set(err, JPIP_E_FORMAT,
                              "its packet data ends inside packet %" APR_SIZE_T_FMT
                              ", and the packed headers (PPM/PPT) describe packets after it",
                              k);
        }
        if (rc == JPIP_OK) {
            rc = jpip_t2_stream_skip(h, pkt.header_len, NULL, NULL, err);
        }
        if (rc != JPIP_OK) {
            return rc;
        }
    }
    return JPIP_OK;
}

/* JPIP_E_LIMIT once the build has run longer than its limit. */
static jpip_code_t check_deadline(const builder_t *b, jpip_err_t *err)
{
    if (b->deadline != 0 && apr_time_now() > b->deadline) {
        return jpip_err_limit(err, JPIP_LIMIT_INDEX_TIME,
                              "indexing took longer than the %" APR_INT64_T_FMT
                              " s allowed per file",
                              (apr_int64_t)apr_time_sec(b->lim.max_time));
    }
    return JPIP_OK;
}

/* Locate packets by decoding their headers (T.800 B.10). Stops quietly at
 * the end of the packet data (the remaining packets are absent); a packet
 * the end of the data cuts short (its header, or its body running past
 * the tile's data) takes the rest of the data and ends the tile. */
static jpip_code_t t2_locate(tw_t *tw, jpip_err_t *err)
{
    const jpip_tile_t *tile = tw->tile;
    jpip_t2_stream_t bs, hs, *h = &bs;
    jpip_t2_prec_t **states;
    int eph = (tile->tcp.scod & JPIP_SCOD_EPH) != 0;
    int sop = (tile->tcp.scod & JPIP_SCOD_SOP) != 0;
    apr_size_t k;

    states = apr_pcalloc(tw->pool, (apr_size_t)tw->lay->nprec_total * sizeof(*states) + 1);
    jpip_t2_stream_init(&bs, tw->w->src, tile->bodies, tile->nbodies);
    bs.deadline = tw->w->b->deadline;
    if (tile->nppt > 0 || tw->w->cs->ppm_first != NULL) {
        if (tile->nppt > 0) {
            jpip_t2_stream_init(&hs, tw->w->src, tile->ppt, tile->nppt);
        } else {
            jpip_t2_stream_init(&hs, tw->w->src, tile->ppm, tile->nppm);
        }
        hs.deadline = tw->w->b->deadline;
        h = &hs;
    }
    tw->nloc = 0;
    for (k = 0; k < tw->npk; k++) {
        jpip_t2_prec_t *st;
        jpip_t2_packet_t pkt;
        jpip_code_t rc;

        if (jpip_t2_stream_left(h) == 0) {
            if (eph && h == &bs) {
                return eph_after_end(tw, k, err);
            }
            break;
        }
        if ((k & 4095) == 4095 && check_deadline(tw->w->b, err) != JPIP_OK) {
            return JPIP_E_LIMIT;
        }
        tw->loc[k].piece0 = tw->npcs;
        rc = prec_state(tw, states, &tw->pk[k], &st, err);
        if (rc == JPIP_OK && sop) {
            rc = sop_skip(tw, &bs, err);
        }
        if (rc == JPIP_OK) {
            rc = jpip_t2_read_header(st, tw->pk[k].layer, h, eph, &pkt, err);
            if (rc == JPIP_E_FORMAT && pkt.cut && h == &bs) {
                return eph ? eph_after_end(tw, k, err) : take_cut(tw, &bs, k, err);
            }
        }
        if (rc == JPIP_OK) {
            rc = jpip_t2_stream_skip(h, pkt.header_len, tw_add, tw, err);
        }
        if (rc == JPIP_OK && pkt.body_len > jpip_t2_stream_left(&bs)) {
            if (eph && h == &bs && (k + 1 < tw->npk || tw->more)) {
                return eph_after_end(tw, k + 1, err);
            }
            rc = h == &bs ? JPIP_OK : packed_after_cut(tw, states, h, k, eph, err);
            if (rc == JPIP_OK) {
                return take_cut(tw, &bs, k, err);
            }
        }
        if (rc == JPIP_OK) {
            rc = jpip_t2_stream_skip(&bs, pkt.body_len, tw_add, tw, err);
        }
        if (rc != JPIP_OK) {
            return jpip_err_prefix(err, rc,
                                   "tile %u, packet %" APR_SIZE_T_FMT " (layer %u, resolution %u, "
                                   "component %u, precinct %" APR_UINT64_T_FMT ")",
                                   (unsigned)tile->index, k, (unsigned)tw->pk[k].layer,
                                   (unsigned)tw->pk[k].res, (unsigned)tw->pk[k].comp,
                                   tw->pk[k].prec);
        }
        tw->loc[k].npieces = tw->npcs - tw->loc[k].piece0;
        tw->nloc = k + 1;
    }
    return JPIP_OK;
}

/* Fill the precinct bins of the tile from the located packets. */
static jpip_code_t tile_prec_bins(tw_t *tw, jpip_ix_tc_t *tcs, jpip_err_t *err)
{
    builder_t *b = tw->w->b;
    const jpip_tlayout_t *lay = tw->lay;
    apr_uint64_t np = lay->nprec_total, f;
    apr_size_t *start = apr_pcalloc(tw->pool, (apr_size_t)(np + 2) * sizeof(apr_size_t));
    apr_size_t *order = apr_palloc(tw->pool, (tw->nloc + 1) * sizeof(apr_size_t));
    apr_size_t k;
    unsigned c = 0;
    jpip_code_t rc;

    for (k = 0; k < tw->nloc; k++) {
        start[jpip_pkt_flat(lay, &tw->pk[k]) + 2]++;
    }
    for (f = 0; f < np; f++) {
        start[f + 2] += start[f + 1];
    }
    for (k = 0; k < tw->nloc; k++) {
        order[start[jpip_pkt_flat(lay, &tw->pk[k]) + 1]++] = k;
    }
    /* start[f] .. start[f+1] now lists precinct f's packets, in layer order. */
    for (f = 0; f < np; f++) {
        apr_uint64_t bi;
        apr_size_t j;

        while (c + 1 < lay->csiz && f >= lay->pbase[c + 1]) {
            c++;
        }
        rc = bin_new(b, &bi, err);
        if (rc != JPIP_OK) {
            return rc;
        }
        if (f == lay->pbase[c]) {
            tcs[c].prec_bin = bi;
        }
        bin_open(b, bi);
        for (j = start[f]; j < start[f + 1]; j++) {
            const loc_t *l = &tw->loc[order[j]];
            apr_size_t q;

            for (q = 0; q < l->npieces; q++) {
                const jpip_piece_t *p = &tw->pcs[l->piece0 + q];

                rc = cs_add(tw->w, p->off, p->len, err);
                if (rc != JPIP_OK) {
                    return rc;
                }
            }
            /* a packet cut short has no end to record */
            if (!(tw->cut && order[j] == tw->nloc - 1)) {
                rc = bin_bound(b, err);
            }
            if (rc != JPIP_OK) {
                return rc;
            }
        }
        bin_close(b, start[f + 1] - start[f] == tw->tile->tcp.layers &&
                         !(tw->cut && start[f + 1] > start[f] &&
                           order[start[f + 1] - 1] == tw->nloc - 1));
        if (tw->absent) {
            bin_absent(b, bi);
        }
    }
    return JPIP_OK;
}

/* Tile header bin and tile bin of tile t. */
static jpip_code_t tile_hdr_bins(csw_t *w, const jpip_tile_t *tile, jpip_err_t *err)
{
    const jpip_cs_t *cs = w->cs;
    apr_uint32_t nt = jpip_siz_ntiles(&cs->siz), i;
    apr_size_t k;
    jpip_code_t rc = JPIP_OK;

    bin_open(w->b, w->main_bin + 1 + tile->index);
    for (k = 0; k < tile->nsegs && rc == JPIP_OK; k++) {
        rc = cs_add(w, tile->segs[k].off, tile->segs[k].len, err);
    }
    bin_close(w->b, 1);
    bin_open(w->b, w->main_bin + 1 + nt + tile->index);
    for (i = cs->tile_first[tile->index]; i != JPIP_NONE && rc == JPIP_OK; i = cs->tparts[i].next) {
        rc = cs_add(w, cs->tparts[i].sot, cs->tparts[i].end - cs->tparts[i].sot, err);
        if (rc == JPIP_OK) {
            rc = bin_bound(w->b, err);
        }
    }
    bin_close(w->b, 1);
    if (cs->tile_first[tile->index] == JPIP_NONE) {
        bin_absent(w->b, w->main_bin + 1 + tile->index);
        bin_absent(w->b, w->main_bin + 1 + nt + tile->index);
    }
    return rc;
}

/* Record the tile and tile-component descriptions. */
static jpip_code_t tile_records(csw_t *w, const jpip_tile_t *tile, const jpip_tlayout_t *lay,
                                jpip_ix_tc_t *tcs, jpip_err_t *err)
{
    const jpip_ix_cs_t *ics = GV_AT(w->b, SEC_CS, jpip_ix_cs_t, w->csi);
    jpip_ix_tile_t *it = GV_AT(w->b, SEC_TILE, jpip_ix_tile_t, ics->tile0 + tile->index);
    unsigned c;

    it->layers = tile->tcp.layers;
    it->prog = (apr_byte_t)tile->tcp.prog;
    it->mct = (apr_byte_t)tile->tcp.mct;
    it->scod = (apr_byte_t)(tile->tcp.scod & (JPIP_SCOD_SOP | JPIP_SCOD_EPH));
    it->has_poc = tile->tcp.npoc > 0;
    it->ntp = w->cs->tile_ntp[tile->index];
    for (c = 0; c < lay->csiz; c++) {
        jpip_code_t rc = tccp_id(w->b, &tile->tcp.tccp[c], &tcs[c].tccp, err);

        if (rc != JPIP_OK) {
            return rc;
        }
        tcs[c].nprec = lay->nprec[c];
        tcs[c].prec_bin = 0;
    }
    return JPIP_OK;
}

/* The tile's packet sequence, cut to what its data can hold: every packet
 * takes at least one byte (of body, or of packed header), so a tile of n
 * bytes has at most n packets and the rest are absent. This keeps a tiny
 * malformed file from making us list millions of packets. */
typedef struct seq_t {
    jpip_pkt_t *v;
    apr_size_t n, cap;
    apr_uint64_t max;
    apr_pool_t *pool;
    int full;
} seq_t;

static jpip_code_t seq_add(void *ctx, const jpip_pkt_t *k, jpip_err_t *err)
{
    seq_t *s = ctx;

    if (s->n >= s->max) {
        s->full = 1;
        return JPIP_E_LIMIT; /* stops the walk; not an error for the caller */
    }
    if (s->n == s->cap) {
        apr_size_t cap = s->cap ? s->cap * 2 : 64;
        jpip_pkt_t *nv = apr_palloc(s->pool, cap * sizeof(*nv));

        if (nv == NULL) {
            return jpip_err_set(err, JPIP_E_NOMEM, "out of memory listing packets");
        }
        if (s->n > 0) {
            memcpy(nv, s->v, s->n * sizeof(*nv));
        }
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n++] = *k;
    return JPIP_OK;
}

static apr_uint64_t pieces_sum(const jpip_piece_t *p, apr_size_t n)
{
    apr_uint64_t t = 0;
    apr_size_t i;

    for (i = 0; i < n; i++) {
        t += p[i].len;
    }
    return t;
}

static jpip_code_t tile_sequence(tw_t *tw, apr_uint64_t max_packets, jpip_err_t *err)
{
    const jpip_tile_t *tile = tw->tile;
    seq_t s;
    jpip_code_t rc;

    memset(&s, 0, sizeof(s));
    s.pool = tw->pool;
    s.max = pieces_sum(tile->bodies, tile->nbodies) + pieces_sum(tile->ppt, tile->nppt) +
            pieces_sum(tile->ppm, tile->nppm);
    rc = jpip_packets_walk(tw->lay, &tile->tcp, tw->pool, max_packets, seq_add, &s, err);
    if (rc == JPIP_E_LIMIT && s.full) {
        rc = JPIP_OK;
    }
    tw->pk = s.v;
    tw->npk = s.n;
    tw->more = s.full;
    return rc;
}

static jpip_code_t tile_index(csw_t *w, apr_uint32_t t, apr_pool_t *pool, jpip_err_t *err)
{
    builder_t *b = w->b;
    tw_t tw;
    jpip_ix_tc_t *tcs;
    const jpip_ix_cs_t *ics;
    unsigned c;
    jpip_code_t rc;

    memset(&tw, 0, sizeof(tw));
    tw.w = w;
    tw.pool = pool;
    tw.absent = w->cs->tile_first[t] == JPIP_NONE;
    rc = check_deadline(b, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    rc = jpip_cs_tile_read(w->cs, w->src, t, pool, &tw.tile, err);
    if (rc == JPIP_OK) {
        rc = jpip_tlayout_build(&tw.lay, pool, &w->cs->siz, w->cs->comps, t, &tw.tile->tcp,
                                b->lim.max_precincts_per_tile, err);
    }
    if (rc == JPIP_OK) {
        rc = tile_sequence(&tw, b->lim.max_packets_per_tile, err);
    }
    if (rc == JPIP_OK) {
        rc = tile_hdr_bins(w, tw.tile, err);
    }
    if (rc != JPIP_OK) {
        return rc;
    }
    tcs = apr_pcalloc(pool, w->cs->siz.csiz * sizeof(*tcs));
    tw.loc = apr_pcalloc(pool, (tw.npk + 1) * sizeof(loc_t));
    if (plt_locate(&tw, err)) {
        b->flags |= JPIP_IXF_PLT;
    } else {
        rc = t2_locate(&tw, err);
        b->flags |= JPIP_IXF_DECODED;
    }
    if (rc == JPIP_OK) {
        rc = tile_records(w, tw.tile, tw.lay, tcs, err);
    }
    if (rc == JPIP_OK) {
        rc = tile_prec_bins(&tw, tcs, err);
    }
    if (rc != JPIP_OK) {
        return rc;
    }
    if (tw.tile->nppt > 0) {
        b->flags |= JPIP_IXF_PPT;
    }
    ics = GV_AT(b, SEC_CS, jpip_ix_cs_t, w->csi);
    for (c = 0; c < w->cs->siz.csiz; c++) {
        *GV_AT(b, SEC_TC, jpip_ix_tc_t, ics->tc0 + (apr_uint64_t)t * w->cs->siz.csiz + c) = tcs[c];
    }
    return JPIP_OK;
}

/* Reserve the codestream's records and fixed bins. */
static jpip_code_t cs_records(csw_t *w, jpip_err_t *err)
{
    builder_t *b = w->b;
    const jpip_cs_t *cs = w->cs;
    apr_uint64_t nt = jpip_siz_ntiles(&cs->siz), i, idx;
    jpip_ix_cs_t *ics;
    jpip_code_t rc;

    rc = gv_push(b, SEC_CS, &w->csi, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    ics = GV_AT(b, SEC_CS, jpip_ix_cs_t, w->csi);
    ics->siz = cs->siz;
    ics->ccap15 = cs->ccap15;
    ics->flags = (cs->ht ? JPIP_IXF_HT : 0) | (cs->tlm_ok ? JPIP_IXF_TLM : 0) |
                 (cs->ppm_first != NULL ? JPIP_IXF_PPM : 0) | (cs->has_plm ? JPIP_IXF_PLM : 0) |
                 (cs->truncated ? JPIP_IXF_CUT : 0);
    ics->comp0 = b->v[SEC_COMP].n;
    ics->tile0 = b->v[SEC_TILE].n;
    ics->tc0 = b->v[SEC_TC].n;
    if ((rc = gv_reserve(b, SEC_COMP, cs->siz.csiz, err)) != JPIP_OK ||
        (rc = gv_reserve(b, SEC_TILE, (apr_size_t)nt, err)) != JPIP_OK ||
        (rc = gv_reserve(b, SEC_TC, (apr_size_t)(nt * cs->siz.csiz), err)) != JPIP_OK) {
        return rc;
    }
    memcpy(GV_AT(b, SEC_COMP, jpip_comp_t, ics->comp0), cs->comps,
           cs->siz.csiz * sizeof(jpip_comp_t));
    b->v[SEC_COMP].n += cs->siz.csiz;
    memset(GV_AT(b, SEC_TILE, jpip_ix_tile_t, ics->tile0), 0,
           (apr_size_t)nt * sizeof(jpip_ix_tile_t));
    b->v[SEC_TILE].n += (apr_size_t)nt;
    memset(GV_AT(b, SEC_TC, jpip_ix_tc_t, ics->tc0), 0,
           (apr_size_t)(nt * cs->siz.csiz) * sizeof(jpip_ix_tc_t));
    b->v[SEC_TC].n += (apr_size_t)(nt * cs->siz.csiz);
    /* Main header, Nt tile headers, Nt tiles: consecutive bins. */
    for (i = 0; i < 1 + 2 * nt; i++) {
        rc = bin_new(b, &idx, err);
        if (rc != JPIP_OK) {
            return rc;
        }
        if (i == 0) {
            w->main_bin = idx;
        }
    }
    GV_AT(b, SEC_CS, jpip_ix_cs_t, w->csi)->main_bin = w->main_bin;
    b->flags |= GV_AT(b, SEC_CS, jpip_ix_cs_t, w->csi)->flags;
    return JPIP_OK;
}

static jpip_code_t cs_index(builder_t *b, jpip_src_t *src, apr_uint64_t csn, jpip_err_t *err)
{
    apr_pool_t *pool, *tpool;
    jpip_cs_limits_t cl;
    jpip_cs_t *cs;
    csw_t w;
    apr_uint32_t t, nt;
    jpip_code_t rc;

    if (apr_pool_create(&pool, b->pool) != APR_SUCCESS) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory");
    }
    memset(&cl, 0, sizeof(cl));
    cl.max_tile_parts = b->lim.max_tile_parts;
    cl.max_tile_comps = b->lim.max_tile_comps;
    rc = jpip_cs_parse(&cs, pool, src, &cl, err);
    if (rc != JPIP_OK) {
        apr_pool_destroy(pool);
        return csn == 0 ? rc : jpip_err_prefix(err, rc, "codestream %" APR_UINT64_T_FMT, csn);
    }
    memset(&w, 0, sizeof(w));
    w.b = b;
    w.src = src;
    w.cs = cs;
    rc = cs_records(&w, err);
    if (rc == JPIP_OK) {
        rc = main_bin_fill(&w, err);
    }
    nt = jpip_siz_ntiles(&cs->siz);
    for (t = 0; t < nt && rc == JPIP_OK; t++) {
        if (apr_pool_create(&tpool, pool) != APR_SUCCESS) {
            rc = jpip_err_set(err, JPIP_E_NOMEM, "out of memory");
            break;
        }
        rc = tile_index(&w, t, tpool, err);
        apr_pool_destroy(tpool);
    }
    apr_pool_destroy(pool);
    return rc;
}

/* ---- metadata-bins ---- */

static jpip_code_t meta_bins(builder_t *b, const jpip_index_input_t *in, jpip_err_t *err)
{
    apr_size_t i, k;
    apr_uint64_t idx;
    jpip_code_t rc;

    b->nmeta = in->nmeta;
    b->meta_bin0 = b->v[SEC_BIN].n;
    for (i = 0; i < in->nmeta; i++) {
        rc = bin_new(b, &idx, err);
        if (rc != JPIP_OK) {
            return rc;
        }
        if (in->meta_first[i] > in->nmeta_pieces ||
            in->meta_npieces[i] > in->nmeta_pieces - in->meta_first[i]) {
            return jpip_err_set(err, JPIP_E_FORMAT,
                                "metadata-bin %" APR_SIZE_T_FMT " has pieces outside the list", i);
        }
        bin_open(b, idx);
        for (k = 0; k < in->meta_npieces[i]; k++) {
            const jpip_piece_t *p = &in->meta_pieces[in->meta_first[i] + k];

            rc = bin_add(b, p->off, p->len, err);
            if (rc != JPIP_OK) {
                return rc;
            }
        }
        bin_close(b, 1);
    }
    if (in->nsynth > 0) {
        rc = gv_reserve(b, SEC_SYNTH, in->nsynth, err);
        if (rc != JPIP_OK) {
            return rc;
        }
        memcpy(b->v[SEC_SYNTH].p, in->synth, in->nsynth);
        b->v[SEC_SYNTH].n = in->nsynth;
    }
    return JPIP_OK;
}

/* ---- blob ---- */

static apr_uint64_t align8(apr_uint64_t x)
{
    return (x + 7) & ~(apr_uint64_t)7;
}

/* Lay out and copy everything into one blob. */
static jpip_code_t blob_make(builder_t *b, apr_pool_t *pool, const jpip_index_key_t *key,
                             apr_uint64_t src_size, apr_uint64_t bytes_read, apr_uint64_t build_us,
                             unsigned char **out, apr_size_t *outlen, jpip_err_t *err)
{
    const char *path = key != NULL && key->path != NULL ? key->path : "";
    apr_size_t plen = strlen(path) + 1;
    apr_uint64_t off = align8(sizeof(ixhdr_t)), total;
    ixhdr_t h;
    unsigned char *blob;
    unsigned s;

    memset(&h, 0, sizeof(h));
    memcpy(h.magic, IX_MAGIC, 8);
    h.version = JPIP_INDEX_VERSION;
    h.endian = IX_ENDIAN;
    h.hdr_size = sizeof(ixhdr_t);
    h.src_size = key != NULL && key->size != 0 ? key->size : src_size;
    h.src_mtime = key != NULL ? key->mtime : 0;
    if (key != NULL) {
        h.src_dev = key->dev;
        h.src_ino = key->ino;
        h.src_mtime_ns = key->mtime_ns;
        h.src_ctime_ns = key->ctime_ns;
        memcpy(h.digest, key->digest, JPIP_INDEX_DIGEST_LEN);
    }
    h.build_us = build_us;
    h.bytes_read = bytes_read;
    h.flags = b->flags;
    h.meta_bin0 = b->meta_bin0;
    h.nmeta = b->nmeta;
    for (s = 0; s < NSEC; s++) {
        h.sec[s].off = off;
        h.sec[s].count = s == SEC_PATH ? plen : b->v[s].n;
        off = align8(off + h.sec[s].count * sec_esz[s]);
    }
    total = off;
    if (total > b->lim.max_memory || total > (apr_size_t)-1) {
        return jpip_err_limit(err, JPIP_LIMIT_INDEX_MEMORY,
                              "index of %" APR_UINT64_T_FMT " bytes exceeds the limit", total);
    }
    h.total = total;
    blob = apr_palloc(pool, (apr_size_t)total);
    if (blob == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory for the index");
    }
    memset(blob, 0, (apr_size_t)total);
    memcpy(blob, &h, sizeof(h));
    memcpy(blob + h.sec[SEC_PATH].off, path, plen);
    for (s = SEC_PATH + 1; s < NSEC; s++) {
        if (b->v[s].n > 0) {
            memcpy(blob + h.sec[s].off, b->v[s].p, b->v[s].n * sec_esz[s]);
        }
    }
    *out = blob;
    *outlen = (apr_size_t)total;
    return JPIP_OK;
}

jpip_code_t jpip_index_build_from(jpip_index_t **ix, apr_pool_t *pool, jpip_src_t *src,
                                  const jpip_index_input_t *in, const jpip_index_key_t *key,
                                  const jpip_index_limits_t *limits, jpip_err_t *err)
{
    apr_time_t t0 = apr_time_now();
    builder_t b;
    apr_size_t i, bloblen = 0;
    unsigned char *blob = NULL;
    jpip_code_t rc = JPIP_OK;
    unsigned s;

    memset(&b, 0, sizeof(b));
    limits_fill(&b.lim, limits);
    b.deadline = b.lim.max_time > 0 ? t0 + b.lim.max_time : 0;
    for (s = 0; s < NSEC; s++) {
        b.v[s].esz = sec_esz[s];
    }
    if (in->ncs > b.lim.max_codestreams) {
        return jpip_err_set(err, JPIP_E_LIMIT, "%" APR_SIZE_T_FMT " codestreams exceed the limit",
                            in->ncs);
    }
    if (apr_pool_create(&b.pool, pool) != APR_SUCCESS) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory");
    }
    b.tccp_ids = apr_hash_make(b.pool);
    rc = meta_bins(&b, in, err);
    for (i = 0; i < in->ncs && rc == JPIP_OK; i++) {
        jpip_src_t *cssrc;

        rc = jpip_src_open_frags(&cssrc, b.pool, src, in->cs_frags[i], in->cs_nfrags[i], err);
        if (rc == JPIP_OK) {
            rc = cs_index(&b, cssrc, i, err);
        }
    }
    if (rc == JPIP_OK) {
        rc = blob_make(&b, pool, key, jpip_src_size(src), jpip_src_bytes_read(src),
                       (apr_uint64_t)(apr_time_now() - t0), &blob, &bloblen, err);
    }
    builder_free(&b);
    apr_pool_destroy(b.pool);
    if (rc != JPIP_OK) {
        return rc;
    }
    rc = jpip_index_load(ix, pool, blob, bloblen, err);
    if (rc == JPIP_OK) {
        (*ix)->built = (*ix)->base == blob;
    }
    return rc;
}

jpip_code_t jpip_index_build(jpip_index_t **ix, apr_pool_t *pool, jpip_src_t *src,
                             const jpip_index_key_t *key, const jpip_index_limits_t *limits,
                             jpip_err_t *err)
{
    jpip_box_limits_t bl;
    jpip_box_layout_t *lay;
    jpip_index_input_t in;
    apr_pool_t *tmp;
    jpip_index_limits_t lim;
    const jpip_piece_t **frags;
    apr_size_t *nfrags, *mfirst, *mn;
    apr_uint32_t i;
    jpip_code_t rc;

    limits_fill(&lim, limits);
    jpip_box_limits_default(&bl);
    if (lim.max_codestreams < bl.max_codestreams) {
        bl.max_codestreams = (apr_uint32_t)lim.max_codestreams;
    }
    if (apr_pool_create(&tmp, pool) != APR_SUCCESS) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory");
    }
    rc = jpip_box_layout_build(&lay, tmp, src, &bl, err);
    if (rc == JPIP_OK && lay->ncodestreams == 0) {
        /* nothing to decode (say, a file cut before its codestream box) */
        rc = jpip_err_set(err, JPIP_E_FORMAT, "the file has no codestream box");
    }
    if (rc != JPIP_OK) {
        apr_pool_destroy(tmp);
        return rc;
    }
    frags = apr_palloc(tmp, (lay->ncodestreams + 1) * sizeof(*frags));
    nfrags = apr_palloc(tmp, (lay->ncodestreams + 1) * sizeof(*nfrags));
    for (i = 0; i < lay->ncodestreams; i++) {
        frags[i] = lay->frags + lay->codestreams[i].first_frag;
        nfrags[i] = lay->codestreams[i].nfrags;
    }
    mfirst = apr_palloc(tmp, (lay->nbins + 1) * sizeof(*mfirst));
    mn = apr_palloc(tmp, (lay->nbins + 1) * sizeof(*mn));
    for (i = 0; i < lay->nbins; i++) {
        mfirst[i] = lay->bins[i].first_piece;
        mn[i] = lay->bins[i].npieces;
    }
    memset(&in, 0, sizeof(in));
    in.ncs = lay->ncodestreams;
    in.cs_frags = frags;
    in.cs_nfrags = nfrags;
    in.nmeta = lay->nbins;
    in.meta_pieces = lay->pieces;
    in.nmeta_pieces = lay->npieces;
    in.meta_first = mfirst;
    in.meta_npieces = mn;
    in.synth = lay->synth;
    in.nsynth = (apr_size_t)lay->synth_len;
    rc = jpip_index_build_from(ix, pool, src, &in, key, &lim, err);
    apr_pool_destroy(tmp);
    return rc;
}

jpip_code_t jpip_index_write(const jpip_index_t *ix, apr_file_t *f, jpip_err_t *err)
{
    apr_size_t done = 0;

    if (apr_file_write_full(f, ix->base, ix->size, &done) != APR_SUCCESS || done != ix->size) {
        return jpip_err_set(err, JPIP_E_IO, "writing the index failed");
    }
    return JPIP_OK;
}

const void *jpip_index_blob(const jpip_index_t *ix, apr_size_t *size)
{
    *size = ix->size;
    return ix->base;
}

/* ---- load and validation ---- */

static jpip_code_t bad(jpip_err_t *err, const char *what)
{
    return jpip_err_set(err, JPIP_E_FORMAT, "invalid index: %s", what);
}

static jpip_code_t check_sections(const ixhdr_t *h, apr_size_t size, jpip_err_t *err)
{
    unsigned s;

    for (s = 0; s < NSEC; s++) {
        const ixsec_t *x = &h->sec[s];

        if (x->off % 8 != 0 || x->off < sizeof(ixhdr_t) || x->off > size ||
            x->count > (size - x->off) / sec_esz[s]) {
            return jpip_err_set(err, JPIP_E_FORMAT, "invalid index: section %u out of bounds", s);
        }
    }
    return JPIP_OK;
}

static jpip_code_t check_header(const unsigned char *data, apr_size_t size, jpip_err_t *err)
{
    const ixhdr_t *h = (const ixhdr_t *)data;

    if (size < sizeof(ixhdr_t) || memcmp(h->magic, IX_MAGIC, 8) != 0) {
        return bad(err, "not an index (bad magic)");
    }
    if (h->endian != IX_ENDIAN) {
        return bad(err, "written on a machine of the other byte order");
    }
    if (h->version != JPIP_INDEX_VERSION || h->hdr_size != sizeof(ixhdr_t)) {
        return bad(err, "unsupported version");
    }
    if (h->total != size) {
        return bad(err, "size does not match the header");
    }
    if (check_sections(h, size, err) != JPIP_OK) {
        return JPIP_E_FORMAT;
    }
    if (h->sec[SEC_PATH].count == 0 || data[h->sec[SEC_PATH].off + h->sec[SEC_PATH].count - 1]) {
        return bad(err, "source path not terminated");
    }
    return JPIP_OK;
}

/* Every piece inside the file or the synth area. */
static jpip_code_t check_pieces(const jpip_index_t *ix, jpip_err_t *err)
{
    apr_uint64_t n = ix->h->sec[SEC_PIECE].count, nsynth = ix->h->sec[SEC_SYNTH].count, i;
    apr_uint64_t fsize = ix->h->src_size;

    for (i = 0; i < n; i++) {
        const jpip_piece_t *p = &ix->pieces[i];
        apr_uint64_t off = p->off & ~JPIP_PIECE_SYNTH;
        apr_uint64_t lim = jpip_piece_is_synth(p) ? nsynth : fsize;

        if (off > lim || p->len > lim - off) {
            return bad(err, "piece outside its source");
        }
    }
    return JPIP_OK;
}

static jpip_code_t check_bins(jpip_index_t *ix, jpip_err_t *err)
{
    apr_uint64_t nb = ix->h->sec[SEC_BIN].count, np = ix->h->sec[SEC_PIECE].count;
    apr_uint64_t nd = ix->h->sec[SEC_BOUND].count, i, k;

    ix->last_bound_len = 1;
    for (i = 0; i < nb; i++) {
        const jpip_bin_t *b = &ix->bins[i];
        apr_uint64_t sum = 0, prev = 0;

        if (b->piece0 > np || b->npieces > np - b->piece0 || b->bound0 > nd ||
            b->nbounds > nd - b->bound0) {
            return bad(err, "bin refers outside the piece or bound arrays");
        }
        for (k = 0; k < b->npieces; k++) {
            apr_uint64_t len = ix->pieces[b->piece0 + k].len;

            if (len > b->len - sum) {
                return bad(err, "bin pieces exceed its length");
            }
            sum += len;
        }
        if (sum != b->len) {
            return bad(err, "bin length disagrees with its pieces");
        }
        for (k = 0; k < b->nbounds; k++) {
            apr_uint64_t v = ix->bounds[b->bound0 + k];

            if (v < prev || v > b->len) {
                return bad(err, "bin boundaries out of order");
            }
            prev = v;
        }
        if (b->nbounds > 0 && prev != b->len) {
            ix->last_bound_len = 0;
        }
    }
    return JPIP_OK;
}

static jpip_code_t check_tccps(const jpip_index_t *ix, jpip_err_t *err)
{
    apr_uint64_t n = ix->h->sec[SEC_TCCP].count, i;
    unsigned r;

    for (i = 0; i < n; i++) {
        const jpip_tccp_t *t = &ix->tccps[i];

        if (t->nl > JPIP_MAX_NL || t->xcb > 10 || t->ycb > 10) {
            return bad(err, "coding parameters out of range");
        }
        for (r = 0; r <= t->nl; r++) {
            if (t->ppx[r] > 15 || t->ppy[r] > 15 || (r > 0 && (!t->ppx[r] || !t->ppy[r]))) {
                return bad(err, "precinct exponents out of range");
            }
        }
    }
    return JPIP_OK;
}

static int siz_sane(const jpip_siz_t *s)
{
    apr_uint64_t ntx, nty;

    if (s->xsiz <= s->xosiz || s->ysiz <= s->yosiz || !s->xtsiz || !s->ytsiz || !s->csiz ||
        s->csiz > JPIP_MAX_COMPS || s->xtosiz > s->xosiz || s->ytosiz > s->yosiz) {
        return 0;
    }
    ntx = jpip_ceildiv((apr_uint64_t)s->xsiz - s->xtosiz, s->xtsiz);
    nty = jpip_ceildiv((apr_uint64_t)s->ysiz - s->ytosiz, s->ytsiz);
    return ntx == s->ntx && nty == s->nty && ntx * nty <= JPIP_MAX_TILES;
}

/* Check the codestream records and, on the way (every tile-component is
 * visited anyway), fill the per-codestream summaries that requests would
 * otherwise recompute over all tile-components each time. */
static jpip_code_t check_cs(jpip_index_t *ix, apr_pool_t *pool, jpip_err_t *err)
{
    const ixhdr_t *h = ix->h;
    apr_uint64_t i, k;

    ix->sums = apr_pcalloc(pool, sizeof(*ix->sums) * (apr_size_t)(h->sec[SEC_CS].count + 1));
    if (ix->sums == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory for the index");
    }
    for (i = 0; i < h->sec[SEC_CS].count; i++) {
        const jpip_ix_cs_t *cs = &ix->cs[i];
        jpip_ix_summary_t *sum = &ix->sums[i];
        apr_uint64_t nt, ntc;

        if (!siz_sane(&cs->siz)) {
            return bad(err, "codestream SIZ values inconsistent");
        }
        nt = (apr_uint64_t)cs->siz.ntx * cs->siz.nty;
        ntc = nt * cs->siz.csiz;
        if (cs->comp0 > h->sec[SEC_COMP].count ||
            cs->siz.csiz > h->sec[SEC_COMP].count - cs->comp0 ||
            cs->tile0 > h->sec[SEC_TILE].count || nt > h->sec[SEC_TILE].count - cs->tile0 ||
            cs->tc0 > h->sec[SEC_TC].count || ntc > h->sec[SEC_TC].count - cs->tc0 ||
            cs->main_bin > h->sec[SEC_BIN].count ||
            1 + 2 * nt > h->sec[SEC_BIN].count - cs->main_bin) {
            return bad(err, "codestream record refers outside the arrays");
        }
        for (k = 0; k < cs->siz.csiz; k++) {
            if (!ix->comps[cs->comp0 + k].xr || !ix->comps[cs->comp0 + k].yr) {
                return bad(err, "component sub-sampling of 0");
            }
        }
        for (k = 0; k < ntc; k++) {
            const jpip_ix_tc_t *tc = &ix->tcs[cs->tc0 + k];

            if (tc->tccp >= h->sec[SEC_TCCP].count || tc->prec_bin > h->sec[SEC_BIN].count ||
                tc->nprec > h->sec[SEC_BIN].count - tc->prec_bin) {
                return bad(err, "tile-component record refers outside the arrays");
            }
            if (ix->tccps[tc->tccp].nl > sum->max_nl) {
                sum->max_nl = ix->tccps[tc->tccp].nl;
            }
        }
        for (k = 0; k < nt; k++) {
            const jpip_ix_tile_t *tile = &ix->tiles[cs->tile0 + k];

            if (tile->layers > sum->max_layers) {
                sum->max_layers = tile->layers;
            }
            sum->mct |= tile->mct != 0;
        }
    }
    if (h->meta_bin0 > h->sec[SEC_BIN].count || h->nmeta > h->sec[SEC_BIN].count - h->meta_bin0) {
        return bad(err, "metadata-bins outside the bin array");
    }
    return JPIP_OK;
}

jpip_code_t jpip_index_load(jpip_index_t **out, apr_pool_t *pool, const void *data, apr_size_t size,
                            jpip_err_t *err)
{
    const unsigned char *base = data;
    jpip_index_t *ix;
    jpip_code_t rc;

    if (((apr_uintptr_t)base & 7) != 0) {
        unsigned char *copy = apr_palloc(pool, size + 1);

        if (copy == NULL) {
            return jpip_err_set(err, JPIP_E_NOMEM, "out of memory for the index");
        }
        memcpy(copy, base, size);
        base = copy;
    }
    rc = check_header(base, size, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    ix = apr_pcalloc(pool, sizeof(*ix));
    ix->base = base;
    ix->size = size;
    ix->h = (const ixhdr_t *)base;
    ix->cs = (const void *)(base + ix->h->sec[SEC_CS].off);
    ix->comps = (const void *)(base + ix->h->sec[SEC_COMP].off);
    ix->tiles = (const void *)(base + ix->h->sec[SEC_TILE].off);
    ix->tcs = (const void *)(base + ix->h->sec[SEC_TC].off);
    ix->tccps = (const void *)(base + ix->h->sec[SEC_TCCP].off);
    ix->bins = (const void *)(base + ix->h->sec[SEC_BIN].off);
    ix->pieces = (const void *)(base + ix->h->sec[SEC_PIECE].off);
    ix->bounds = (const void *)(base + ix->h->sec[SEC_BOUND].off);
    ix->synth = base + ix->h->sec[SEC_SYNTH].off;
    if ((rc = check_pieces(ix, err)) != JPIP_OK || (rc = check_bins(ix, err)) != JPIP_OK ||
        (rc = check_tccps(ix, err)) != JPIP_OK || (rc = check_cs(ix, pool, err)) != JPIP_OK) {
        return rc;
    }
    *out = ix;
    return JPIP_OK;
}

void jpip_index_key(const jpip_index_t *ix, jpip_index_key_t *key)
{
    key->path = (const char *)ix->base + ix->h->sec[SEC_PATH].off;
    key->size = ix->h->src_size;
    key->mtime = ix->h->src_mtime;
    key->dev = ix->h->src_dev;
    key->ino = ix->h->src_ino;
    key->mtime_ns = ix->h->src_mtime_ns;
    key->ctime_ns = ix->h->src_ctime_ns;
    memcpy(key->digest, ix->h->digest, JPIP_INDEX_DIGEST_LEN);
}

jpip_code_t jpip_index_seal(jpip_index_t *ix, const unsigned char digest[JPIP_INDEX_DIGEST_LEN],
                            jpip_err_t *err)
{
    if (!ix->built) {
        return jpip_err_set(err, JPIP_E_REQUEST, "only an index built here can be sealed");
    }
    memcpy(((ixhdr_t *)(void *)(apr_uintptr_t)ix->base)->digest, digest, JPIP_INDEX_DIGEST_LEN);
    return JPIP_OK;
}

/* ---- accessors ---- */

apr_uint64_t jpip_index_ncs(const jpip_index_t *ix)
{
    return ix->h->sec[SEC_CS].count;
}

const jpip_ix_cs_t *jpip_index_cs(const jpip_index_t *ix, apr_uint64_t csn)
{
    return csn < ix->h->sec[SEC_CS].count ? &ix->cs[csn] : NULL;
}

const jpip_ix_summary_t *jpip_index_summary(const jpip_index_t *ix, const jpip_ix_cs_t *cs)
{
    return &ix->sums[cs - ix->cs];
}

const jpip_comp_t *jpip_index_comps(const jpip_index_t *ix, const jpip_ix_cs_t *cs)
{
    return &ix->comps[cs->comp0];
}

const jpip_ix_tile_t *jpip_index_tile(const jpip_index_t *ix, const jpip_ix_cs_t *cs,
                                      apr_uint32_t t)
{
    return t < jpip_siz_ntiles(&cs->siz) ? &ix->tiles[cs->tile0 + t] : NULL;
}

const jpip_ix_tc_t *jpip_index_tc(const jpip_index_t *ix, const jpip_ix_cs_t *cs, apr_uint32_t t,
                                  unsigned c)
{
    if (t >= jpip_siz_ntiles(&cs->siz) || c >= cs->siz.csiz) {
        return NULL;
    }
    return &ix->tcs[cs->tc0 + (apr_uint64_t)t * cs->siz.csiz + c];
}

const jpip_tccp_t *jpip_index_tccp(const jpip_index_t *ix, const jpip_ix_tc_t *tc)
{
    return &ix->tccps[tc->tccp];
}

apr_uint64_t jpip_index_nbins(const jpip_index_t *ix)
{
    return ix->h->sec[SEC_BIN].count;
}

apr_uint64_t jpip_index_nmeta(const jpip_index_t *ix)
{
    return ix->h->nmeta;
}

const jpip_piece_t *jpip_index_pieces(const jpip_index_t *ix, const jpip_bin_t *bin)
{
    return &ix->pieces[bin->piece0];
}

const apr_uint64_t *jpip_index_bounds(const jpip_index_t *ix, const jpip_bin_t *bin)
{
    return &ix->bounds[bin->bound0];
}

int jpip_index_last_bound_is_len(const jpip_index_t *ix)
{
    return ix->last_bound_len;
}

const unsigned char *jpip_index_synth(const jpip_index_t *ix, const jpip_piece_t *p)
{
    return ix->synth + (p->off & ~JPIP_PIECE_SYNTH);
}

static jpip_code_t nobin(jpip_err_t *err, unsigned cls, apr_uint64_t csn, apr_uint64_t id)
{
    return jpip_err_set(err, JPIP_E_NOTFOUND,
                        "no data-bin of class %u, codestream %" APR_UINT64_T_FMT
                        ", id %" APR_UINT64_T_FMT,
                        cls, csn, id);
}

jpip_code_t jpip_index_bin(const jpip_index_t *ix, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                           const jpip_bin_t **bin, jpip_err_t *err)
{
    const jpip_ix_cs_t *cs;
    apr_uint32_t nt, t;
    unsigned c;
    apr_uint64_t s;

    if (cls == JPIP_CLASS_META) {
        if (id >= ix->h->nmeta) {
            return nobin(err, cls, csn, id);
        }
        *bin = &ix->bins[ix->h->meta_bin0 + id];
        return JPIP_OK;
    }
    cs = jpip_index_cs(ix, csn);
    if (cs == NULL) {
        return nobin(err, cls, csn, id);
    }
    nt = jpip_siz_ntiles(&cs->siz);
    switch (cls) {
    case JPIP_CLASS_MAIN:
        if (id != 0) {
            return nobin(err, cls, csn, id);
        }
        *bin = &ix->bins[cs->main_bin];
        return JPIP_OK;
    case JPIP_CLASS_TILEHDR:
    case JPIP_CLASS_TILE:
    case JPIP_CLASS_TILE_EXT:
        if (id >= nt) {
            return nobin(err, cls, csn, id);
        }
        *bin = &ix->bins[cs->main_bin + 1 + (cls == JPIP_CLASS_TILEHDR ? 0 : nt) + id];
        return JPIP_OK;
    case JPIP_CLASS_PRECINCT:
    case JPIP_CLASS_PRECINCT_EXT: {
        const jpip_ix_tc_t *tc;

        jpip_prec_bin_split(id, cs->siz.csiz, nt, &t, &c, &s);
        tc = jpip_index_tc(ix, cs, t, c);
        if (tc == NULL || s >= tc->nprec) {
            return nobin(err, cls, csn, id);
        }
        *bin = &ix->bins[tc->prec_bin + s];
        return JPIP_OK;
    }
    default:
        return nobin(err, cls, csn, id);
    }
}

jpip_code_t jpip_index_res(const jpip_index_t *ix, const jpip_ix_cs_t *cs, apr_uint32_t t,
                           unsigned c, unsigned r, jpip_ix_res_t *out, jpip_err_t *err)
{
    const jpip_ix_tc_t *itc = jpip_index_tc(ix, cs, t, c);
    const jpip_tccp_t *tp;
    const jpip_comp_t *cp;
    jpip_rect_t tile, tc;
    unsigned q;

    if (itc == NULL) {
        return jpip_err_set(err, JPIP_E_NOTFOUND, "no tile-component %u,%u", (unsigned)t, c);
    }
    tp = jpip_index_tccp(ix, itc);
    if (r > tp->nl) {
        return jpip_err_set(err, JPIP_E_NOTFOUND, "resolution %u above NL %u", r, tp->nl);
    }
    cp = &jpip_index_comps(ix, cs)[c];
    jpip_geom_tile(&cs->siz, t, &tile);
    jpip_geom_tilecomp(&tile, cp->xr, cp->yr, &tc);
    out->s0 = 0;
    for (q = 0; q <= r; q++) {
        jpip_geom_res(&tc, tp->nl, q, &out->rect);
        jpip_geom_pgrid(&out->rect, tp->ppx[q], tp->ppy[q], &out->grid);
        if (q < r) {
            out->s0 += out->grid.npw * out->grid.nph;
        }
    }
    return JPIP_OK;
}

void jpip_index_stats(const jpip_index_t *ix, jpip_index_stats_t *st)
{
    st->flags = ix->h->flags;
    st->bytes_read = ix->h->bytes_read;
    st->build_us = ix->h->build_us;
    st->size = ix->size;
    st->nbins = ix->h->sec[SEC_BIN].count;
    st->npieces = ix->h->sec[SEC_PIECE].count;
}

apr_uint64_t jpip_index_bin_no(const jpip_index_t *ix, const jpip_bin_t *bin)
{
    return (apr_uint64_t)(bin - ix->bins);
}

const jpip_bin_t *jpip_index_prec_bin(const jpip_index_t *ix, const jpip_ix_tc_t *tc,
                                      apr_uint64_t s)
{
    return s < tc->nprec ? &ix->bins[tc->prec_bin + s] : NULL;
}

const jpip_bin_t *jpip_index_bin_at(const jpip_index_t *ix, apr_uint64_t n)
{
    return &ix->bins[n];
}

const unsigned char *jpip_index_piece_bytes(const jpip_index_t *ix, const jpip_piece_t *p,
                                            const unsigned char *file)
{
    return jpip_piece_is_synth(p) ? jpip_index_synth(ix, p) : file + p->off;
}

void jpip_index_bin_copy(const jpip_index_t *ix, const jpip_bin_t *bin, const unsigned char *file,
                         unsigned char *out)
{
    const jpip_piece_t *pc = jpip_index_pieces(ix, bin);
    apr_uint32_t i;

    for (i = 0; i < bin->npieces; i++) {
        memcpy(out, jpip_index_piece_bytes(ix, &pc[i], file), (apr_size_t)pc[i].len);
        out += pc[i].len;
    }
}
