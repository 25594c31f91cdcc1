/* mod_jpip: the leading tile-parts of a tile that a view needs (JPT). */
#include "tilepart.h"

/* The file offset of the last byte of [0, end) of bin, over its file
 * pieces (a packed header rebuilt in the index has no place in the file:
 * the body that follows it does). 0 with *found clear if none. */
static apr_uint64_t last_file_byte(const jpip_index_t *ix, const jpip_bin_t *bin, apr_uint64_t end,
                                   int *found)
{
    const jpip_piece_t *pc = jpip_index_pieces(ix, bin);
    apr_uint64_t at = 0, best = 0;
    apr_uint32_t i;

    *found = 0;
    for (i = 0; i < bin->npieces && at < end; i++) {
        apr_uint64_t n = pc[i].len < end - at ? pc[i].len : end - at;

        if (n > 0 && !jpip_piece_is_synth(&pc[i]) && (!*found || pc[i].off + n - 1 > best)) {
            best = pc[i].off + n - 1;
            *found = 1;
        }
        at += pc[i].len;
    }
    return best;
}

/* The position inside the tile bin of file byte off, or the bin's length
 * if the bin does not hold it. */
static apr_uint64_t tile_bin_pos(const jpip_index_t *ix, const jpip_bin_t *tbin, apr_uint64_t off)
{
    const jpip_piece_t *pc = jpip_index_pieces(ix, tbin);
    apr_uint64_t at = 0;
    apr_uint32_t i;

    for (i = 0; i < tbin->npieces; i++) {
        if (!jpip_piece_is_synth(&pc[i]) && off >= pc[i].off && off - pc[i].off < pc[i].len) {
            return at + (off - pc[i].off);
        }
        at += pc[i].len;
    }
    return tbin->len;
}

/* Does the view want everything of tile t: full resolution, every layer
 * and every component? */
static int wants_all(const jpip_view_t *v)
{
    apr_uint32_t c;

    if (v->d != 0 || (v->layers != 0 && v->layers < v->max_layers)) {
        return 0;
    }
    for (c = 0; c < v->ncomps; c++) {
        if (!v->comps[c]) {
            return 0;
        }
    }
    return 1;
}

jpip_code_t jpip_tileparts_needed(const jpip_index_t *ix, const jpip_view_t *v, apr_uint32_t t,
                                  apr_uint32_t *count, jpip_err_t *err)
{
    const jpip_ix_cs_t *cs = jpip_index_cs(ix, v->csn);
    const jpip_bin_t *tbin;
    const apr_uint64_t *tb;
    apr_uint64_t need = 0; /* bytes of the tile bin the view needs */
    apr_uint32_t c, k;
    jpip_code_t rc;

    *count = 0;
    if (cs == NULL) {
        return jpip_err_set(err, JPIP_E_NOTFOUND, "no codestream %" APR_UINT64_T_FMT, v->csn);
    }
    rc = jpip_index_bin(ix, JPIP_CLASS_TILE, v->csn, t, &tbin, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    *count = tbin->nbounds;
    if (tbin->nbounds <= 1 || wants_all(v)) {
        return JPIP_OK;
    }
    tb = jpip_index_bounds(ix, tbin);
    for (c = 0; c < cs->siz.csiz && c < v->ncomps; c++) {
        const jpip_ix_tc_t *tc;
        unsigned nl, r, rmax;

        if (!v->comps[c]) {
            continue;
        }
        tc = jpip_index_tc(ix, cs, t, c);
        nl = jpip_index_tccp(ix, tc)->nl;
        rmax = nl > v->d ? nl - v->d : 0;
        for (r = 0; r <= rmax; r++) {
            jpip_ix_res_t res;
            apr_uint64_t s, np;

            rc = jpip_index_res(ix, cs, t, c, r, &res, err);
            if (rc != JPIP_OK) {
                return rc;
            }
            np = res.grid.npw * res.grid.nph;
            for (s = res.s0; s < res.s0 + np; s++) {
                const jpip_bin_t *pb = jpip_index_prec_bin(ix, tc, s);
                apr_uint64_t end, pos;
                unsigned nl_bin;
                int found;

                if (pb == NULL || pb->nbounds == 0) {
                    continue; /* no packet of this precinct in the file */
                }
                nl_bin = v->layers != 0 && v->layers < pb->nbounds ? v->layers : pb->nbounds;
                end = jpip_index_bounds(ix, pb)[nl_bin - 1];
                if (end == 0) {
                    continue;
                }
                pos = last_file_byte(ix, pb, end, &found);
                if (!found) {
                    return JPIP_OK; /* cannot place it: the whole tile */
                }
                pos = tile_bin_pos(ix, tbin, pos);
                if (pos >= tbin->len) {
                    return JPIP_OK;
                }
                if (pos + 1 > need) {
                    need = pos + 1;
                }
                if (need > tb[tbin->nbounds - 2]) {
                    return JPIP_OK; /* the last tile-part is needed: all of them */
                }
            }
        }
    }
    /* the tile-parts up to the one holding the last needed byte */
    k = 0;
    while (k < tbin->nbounds && tb[k] < need) {
        k++;
    }
    *count = k < tbin->nbounds ? k + 1 : tbin->nbounds;
    return JPIP_OK;
}
