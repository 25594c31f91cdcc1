/* jpip-inspect: what mod_jpip's indexer sees in a JPEG 2000 file.
 *
 *   jpip-inspect FILE                 index summary as JSON
 *   jpip-inspect --bins FILE          every data-bin and its length
 *   jpip-inspect --rebuild OUT FILE   write the codestream (or JP2/JPX file)
 *                                     rebuilt from FILE's data-bins
 *       [--max-resolution R]          only resolutions 0..R, counted on the
 *                                     tile-component with the most levels (so
 *                                     NL - R levels are discarded everywhere,
 *                                     like opj_decompress -r NL-R)
 *       [--max-layers L]              only the first L quality layers
 *   jpip-inspect --packets OUT FILE   one line per packet: codestream, tile,
 *                                     component, resolution, precinct, layer,
 *                                     and the file ranges (offset+length) of
 *                                     its SOP segment, its header (EPH
 *                                     included) and its body
 *
 * The rebuilt file is written sparse: runs of zero bytes become holes, so a
 * huge 'free' box costs no disk space.
 * Exit status: 0 on success, 1 when the file cannot be indexed (the
 * message names the problem), 2 on a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_mmap.h>
#include <apr_strings.h>

#include "box.h"
#include "index.h"
#include "jp2rebuild.h"
#include "rebuild.h"
#include "t2.h"

typedef struct inspect_t {
    apr_pool_t *pool;
    const char *path;
    const unsigned char *data; /* the file, mapped */
    apr_uint64_t size;
    jpip_index_t *ix;
    jpip_src_t *src; /* the file, for the packet-header decoder */
    jpip_container_t container;
    jpip_rebuild_opts_t opts;
    unsigned max_res; /* --max-resolution, or JPIP_REBUILD_ALL */
} inspect_t;

static const char *prog_name(unsigned p)
{
    static const char *names[] = {"LRCP", "RLCP", "RPCL", "PCRL", "CPRL"};

    return p < 5 ? names[p] : "unknown";
}

static const char *container_name(jpip_container_t c)
{
    switch (c) {
    case JPIP_CONTAINER_RAW:
        return "codestream";
    case JPIP_CONTAINER_JP2:
        return "jp2";
    case JPIP_CONTAINER_JPX:
        return "jpx";
    case JPIP_CONTAINER_JPH:
        return "jph";
    case JPIP_CONTAINER_DICOM:
        return "dicom";
    }
    return "unknown";
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            printf("\\%c", c);
        } else if (c < 0x20) {
            printf("\\u%04x", c);
        } else {
            putchar(c);
        }
    }
    putchar('"');
}

/* ------------------------------------------------------------ bin walking */

typedef void (*bin_fn)(void *ctx, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                       const jpip_bin_t *bin);

/* Visit every data-bin of the index: metadata, then per codestream the
 * main header, tile headers, tiles and precincts. */
static void walk_bins(const jpip_index_t *ix, bin_fn fn, void *ctx)
{
    apr_uint64_t n, csn;
    jpip_err_t err;
    const jpip_bin_t *bin;

    for (n = 0; n < jpip_index_nmeta(ix); n++) {
        if (jpip_index_bin(ix, JPIP_CLASS_META, 0, n, &bin, &err) == JPIP_OK) {
            fn(ctx, JPIP_CLASS_META, 0, n, bin);
        }
    }
    for (csn = 0; csn < jpip_index_ncs(ix); csn++) {
        const jpip_ix_cs_t *cs = jpip_index_cs(ix, csn);
        apr_uint32_t nt = jpip_siz_ntiles(&cs->siz), t;
        unsigned c;

        if (jpip_index_bin(ix, JPIP_CLASS_MAIN, csn, 0, &bin, &err) == JPIP_OK) {
            fn(ctx, JPIP_CLASS_MAIN, csn, 0, bin);
        }
        for (t = 0; t < nt; t++) {
            if (jpip_index_bin(ix, JPIP_CLASS_TILEHDR, csn, t, &bin, &err) == JPIP_OK) {
                fn(ctx, JPIP_CLASS_TILEHDR, csn, t, bin);
            }
        }
        for (t = 0; t < nt; t++) {
            if (jpip_index_bin(ix, JPIP_CLASS_TILE, csn, t, &bin, &err) == JPIP_OK) {
                fn(ctx, JPIP_CLASS_TILE, csn, t, bin);
            }
        }
        for (t = 0; t < nt; t++) {
            for (c = 0; c < cs->siz.csiz; c++) {
                const jpip_ix_tc_t *tc = jpip_index_tc(ix, cs, t, c);
                apr_uint64_t s;

                for (s = 0; s < tc->nprec; s++) {
                    apr_uint64_t id = t + (c + s * cs->siz.csiz) * (apr_uint64_t)nt;
                    if (jpip_index_bin(ix, JPIP_CLASS_PRECINCT, csn, id, &bin, &err) == JPIP_OK) {
                        fn(ctx, JPIP_CLASS_PRECINCT, csn, id, bin);
                    }
                }
            }
        }
    }
}

typedef struct class_sum_t {
    apr_uint64_t count[9], bytes[9];
} class_sum_t;

static void sum_bin(void *ctx, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                    const jpip_bin_t *bin)
{
    class_sum_t *s = ctx;

    s->count[cls]++;
    s->bytes[cls] += bin->len;
}

static const char *class_name(unsigned cls)
{
    switch (cls) {
    case JPIP_CLASS_PRECINCT:
        return "precinct";
    case JPIP_CLASS_TILEHDR:
        return "tile-header";
    case JPIP_CLASS_TILE:
        return "tile";
    case JPIP_CLASS_MAIN:
        return "main-header";
    case JPIP_CLASS_META:
        return "metadata";
    }
    return "unknown";
}

/* Where precinct bin id lies: tile, component, resolution and NL of its
 * tile-component (I = t + (c + s*Csiz)*Nt). */
static void print_precinct_place(const jpip_index_t *ix, apr_uint64_t csn, apr_uint64_t id)
{
    const jpip_ix_cs_t *cs = jpip_index_cs(ix, csn);
    apr_uint64_t nt = jpip_siz_ntiles(&cs->siz);
    apr_uint32_t t = (apr_uint32_t)(id % nt);
    unsigned c = (unsigned)((id / nt) % cs->siz.csiz), r;
    apr_uint64_t s = id / nt / cs->siz.csiz;
    const jpip_tccp_t *tccp = jpip_index_tccp(ix, jpip_index_tc(ix, cs, t, c));
    jpip_err_t err;

    for (r = 0; r < tccp->nl; r++) {
        jpip_ix_res_t res;
        if (jpip_index_res(ix, cs, t, c, r, &res, &err) == JPIP_OK &&
            s < res.s0 + res.grid.npw * res.grid.nph) {
            break;
        }
    }
    printf(" t=%u c=%u r=%u nl=%u", t, c, r, tccp->nl);
}

static void print_bin(void *ctx, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                      const jpip_bin_t *bin)
{
    printf("%-11s csn=%" APR_UINT64_T_FMT " id=%" APR_UINT64_T_FMT " length=%" APR_UINT64_T_FMT
           " pieces=%u",
           class_name(cls), csn, id, bin->len, bin->npieces);
    if (cls == JPIP_CLASS_PRECINCT) {
        printf(" layers=%u", bin->nbounds);
        print_precinct_place(ctx, csn, id);
    } else if (cls == JPIP_CLASS_TILE) {
        printf(" tile-parts=%u", bin->nbounds);
    }
    putchar('\n');
}

/* -------------------------------------------------------------- summary */

static void print_codestream(const jpip_index_t *ix, apr_uint64_t csn)
{
    const jpip_ix_cs_t *cs = jpip_index_cs(ix, csn);
    const jpip_comp_t *comps = jpip_index_comps(ix, cs);
    apr_uint32_t nt = jpip_siz_ntiles(&cs->siz), t;
    apr_uint64_t prec[JPIP_MAX_RES] = {0};
    unsigned minnl = JPIP_MAX_NL, maxnl = 0, maxlayers = 0, c, r;
    apr_uint32_t absent = 0;
    int poc = 0;
    jpip_err_t err;

    for (t = 0; t < nt; t++) {
        const jpip_ix_tile_t *tile = jpip_index_tile(ix, cs, t);

        absent += tile->ntp == 0;
        if (tile->layers > maxlayers) {
            maxlayers = tile->layers;
        }
        poc |= tile->has_poc;
        for (c = 0; c < cs->siz.csiz; c++) {
            const jpip_tccp_t *tccp = jpip_index_tccp(ix, jpip_index_tc(ix, cs, t, c));

            minnl = tccp->nl < minnl ? tccp->nl : minnl;
            maxnl = tccp->nl > maxnl ? tccp->nl : maxnl;
            for (r = 0; r <= tccp->nl; r++) {
                jpip_ix_res_t res;
                if (jpip_index_res(ix, cs, t, c, r, &res, &err) == JPIP_OK) {
                    prec[r] += res.grid.npw * res.grid.nph;
                }
            }
        }
    }
    printf("    {\n");
    printf("      \"index\": %" APR_UINT64_T_FMT ",\n", csn);
    printf("      \"width\": %u, \"height\": %u,\n", cs->siz.xsiz - cs->siz.xosiz,
           cs->siz.ysiz - cs->siz.yosiz);
    printf("      \"image_offset\": [%u, %u],\n", cs->siz.xosiz, cs->siz.yosiz);
    printf("      \"tile_size\": [%u, %u], \"tile_offset\": [%u, %u],\n", cs->siz.xtsiz,
           cs->siz.ytsiz, cs->siz.xtosiz, cs->siz.ytosiz);
    printf("      \"tiles\": %u, \"tiles_across\": %u, \"tiles_down\": %u,\n", nt, cs->siz.ntx,
           cs->siz.nty);
    printf("      \"tiles_absent\": %u, \"truncated\": %s,\n", (unsigned)absent,
           (cs->flags & JPIP_IXF_CUT) ? "true" : "false");
    printf("      \"components\": %u,\n      \"subsampling\": [", cs->siz.csiz);
    for (c = 0; c < cs->siz.csiz; c++) {
        printf("%s[%u, %u]", c ? ", " : "", comps[c].xr, comps[c].yr);
    }
    printf("],\n      \"bit_depth\": [");
    for (c = 0; c < cs->siz.csiz; c++) {
        printf("%s%u", c ? ", " : "", comps[c].depth);
    }
    printf("],\n");
    printf("      \"levels\": %u, \"levels_min\": %u,\n", maxnl, minnl);
    printf("      \"layers\": %u,\n", maxlayers);
    printf("      \"progression\": \"%s\", \"poc\": %s,\n",
           prog_name(jpip_index_tile(ix, cs, 0)->prog), poc ? "true" : "false");
    printf("      \"htj2k\": %s,\n", (cs->flags & JPIP_IXF_HT) ? "true" : "false");
    printf("      \"precincts_per_resolution\": [");
    for (r = 0; r <= maxnl; r++) {
        printf("%s%" APR_UINT64_T_FMT, r ? ", " : "", prec[r]);
    }
    printf("]\n    }");
}

static void print_summary(const inspect_t *in)
{
    jpip_index_stats_t st;
    class_sum_t sum;
    static const unsigned classes[] = {JPIP_CLASS_META, JPIP_CLASS_MAIN, JPIP_CLASS_TILEHDR,
                                       JPIP_CLASS_TILE, JPIP_CLASS_PRECINCT};
    apr_uint64_t csn;
    unsigned i;

    memset(&sum, 0, sizeof(sum));
    walk_bins(in->ix, sum_bin, &sum);
    jpip_index_stats(in->ix, &st);
    printf("{\n  \"file\": ");
    json_string(in->path);
    printf(",\n  \"size\": %" APR_UINT64_T_FMT ",\n", in->size);
    printf("  \"container\": \"%s\",\n", container_name(in->container));
    printf("  \"codestreams\": [\n");
    for (csn = 0; csn < jpip_index_ncs(in->ix); csn++) {
        print_codestream(in->ix, csn);
        printf("%s\n", csn + 1 < jpip_index_ncs(in->ix) ? "," : "");
    }
    printf("  ],\n  \"data_bins\": {\n");
    for (i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
        printf("    \"%s\": {\"count\": %" APR_UINT64_T_FMT ", \"bytes\": %" APR_UINT64_T_FMT
               "}%s\n",
               class_name(classes[i]), sum.count[classes[i]], sum.bytes[classes[i]],
               i + 1 < sizeof(classes) / sizeof(classes[0]) ? "," : "");
    }
    printf("  },\n");
    printf(
        "  \"markers_used\": {\"plt\": %s, \"tlm\": %s, \"ppm\": %s, \"ppt\": %s, "
        "\"packet_headers_decoded\": %s},\n",
        (st.flags & JPIP_IXF_PLT) ? "true" : "false", (st.flags & JPIP_IXF_TLM) ? "true" : "false",
        (st.flags & JPIP_IXF_PPM) ? "true" : "false", (st.flags & JPIP_IXF_PPT) ? "true" : "false",
        (st.flags & JPIP_IXF_DECODED) ? "true" : "false");
    printf("  \"index\": {\"bytes\": %" APR_UINT64_T_FMT ", \"bins\": %" APR_UINT64_T_FMT
           ", \"pieces\": %" APR_UINT64_T_FMT
           ", \"build_ms\": %.3f, \"file_bytes_read\": %" APR_UINT64_T_FMT "}\n}\n",
           st.size, st.nbins, st.npieces, st.build_us / 1000.0, st.bytes_read);
}

/* -------------------------------------------------------------- rebuild */

/* Rebuild options for codestream csn: --max-resolution R becomes the
 * number of levels to discard from the deepest tile-component. */
static jpip_rebuild_opts_t opts_for(const inspect_t *in, apr_uint64_t csn)
{
    jpip_rebuild_opts_t o = in->opts;
    const jpip_ix_cs_t *cs = jpip_index_cs(in->ix, csn);
    apr_uint32_t t, nt;
    unsigned c, maxnl = 0;

    o.csn = csn;
    if (in->max_res == JPIP_REBUILD_ALL || cs == NULL) {
        return o;
    }
    nt = jpip_siz_ntiles(&cs->siz);
    for (t = 0; t < nt; t++) {
        for (c = 0; c < cs->siz.csiz; c++) {
            unsigned nl = jpip_index_tccp(in->ix, jpip_index_tc(in->ix, cs, t, c))->nl;
            maxnl = nl > maxnl ? nl : maxnl;
        }
    }
    o.reduce = in->max_res < maxnl ? maxnl - in->max_res : 0;
    return o;
}

/* The bytes of a bin: straight from the mapped file when it is one piece,
 * otherwise assembled in the pool. */
static jpip_code_t bin_bytes(inspect_t *in, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                             const unsigned char **data, apr_uint64_t *len, jpip_err_t *err)
{
    const jpip_bin_t *bin;
    const jpip_piece_t *pc;
    unsigned char *buf;
    jpip_code_t rc = jpip_index_bin(in->ix, cls, csn, id, &bin, err);

    if (rc != JPIP_OK) {
        return rc;
    }
    pc = jpip_index_pieces(in->ix, bin);
    *len = bin->len;
    if (bin->npieces == 1 && !jpip_piece_is_synth(&pc[0])) {
        *data = in->data + pc[0].off;
        return JPIP_OK;
    }
    buf = apr_palloc(in->pool, (apr_size_t)bin->len + 1);
    jpip_index_bin_copy(in->ix, bin, in->data, buf);
    *data = buf;
    return JPIP_OK;
}

static jpip_code_t binsrc_get(void *ctx, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                              const unsigned char **data, apr_size_t *len, int *complete,
                              jpip_err_t *err)
{
    inspect_t *in = ctx;
    const jpip_bin_t *bin;
    apr_uint64_t n = 0;
    jpip_code_t rc;

    /* the bins of a tile the codestream lacks are never sent */
    if (cls != JPIP_CLASS_META && jpip_index_bin(in->ix, cls, csn, id, &bin, NULL) == JPIP_OK &&
        (bin->flags & JPIP_BIN_ABSENT)) {
        return jpip_err_set(err, JPIP_E_NOTFOUND, "the codestream has no such tile");
    }
    rc = bin_bytes(in, cls, csn, id, data, &n, err);
    *len = (apr_size_t)n;
    *complete = 1;
    return rc;
}

static jpip_code_t rebuild_cs(void *ctx, apr_uint64_t csid, const unsigned char **bytes,
                              apr_uint64_t *len, jpip_err_t *err)
{
    inspect_t *in = ctx;
    jpip_binsrc_t bs = {in, binsrc_get};
    jpip_rebuild_opts_t opts = opts_for(in, csid);
    unsigned char *out;
    apr_size_t n;
    jpip_code_t rc;

    rc = jpip_rebuild_mem(&bs, &opts, in->pool, &out, &n, NULL, err);
    *bytes = out;
    *len = n;
    return rc;
}

/* The output file: blocks of zeros are skipped with a seek, so the file
 * gets holes there; out_finish sets the final length. */
typedef struct out_t {
    apr_file_t *f;
    apr_off_t pos;
} out_t;

#define HOLE_BLOCK 65536

static int all_zero(const unsigned char *p, apr_size_t n)
{
    apr_size_t i;

    for (i = 0; i < n; i++) {
        if (p[i] != 0) {
            return 0;
        }
    }
    return 1;
}

static jpip_code_t write_file(void *ctx, const void *data, apr_size_t len, jpip_err_t *err)
{
    out_t *o = ctx;
    const unsigned char *p = data;

    while (len > 0) {
        apr_size_t n = len < HOLE_BLOCK ? len : HOLE_BLOCK, done = 0;

        if (n == HOLE_BLOCK && all_zero(p, n)) {
            apr_off_t at = o->pos + (apr_off_t)n;
            if (apr_file_seek(o->f, APR_SET, &at) != APR_SUCCESS) {
                return jpip_err_set(err, JPIP_E_IO, "seek failed");
            }
        } else if (apr_file_write_full(o->f, p, n, &done) != APR_SUCCESS) {
            return jpip_err_set(err, JPIP_E_IO, "write failed");
        }
        o->pos += (apr_off_t)n;
        p += n;
        len -= n;
    }
    return JPIP_OK;
}

static jpip_code_t do_rebuild(inspect_t *in, const char *outpath, jpip_err_t *err)
{
    apr_file_t *f;
    out_t o;
    jpip_code_t rc;

    if (apr_file_open(&f, outpath, APR_FOPEN_WRITE | APR_FOPEN_CREATE | APR_FOPEN_TRUNCATE,
                      APR_FPROT_OS_DEFAULT, in->pool) != APR_SUCCESS) {
        return jpip_err_set(err, JPIP_E_IO, "cannot create %s", outpath);
    }
    o.f = f;
    o.pos = 0;
    if (in->container == JPIP_CONTAINER_RAW) {
        jpip_binsrc_t bs = {in, binsrc_get};
        jpip_rebuild_opts_t opts = opts_for(in, 0);
        rc = jpip_rebuild(&bs, &opts, in->pool, write_file, &o, NULL, err);
    } else {
        jpip_binsrc_t bs = {in, binsrc_get};
        rc = jpip_jp2_rebuild(&bs, rebuild_cs, in, write_file, &o, in->pool, err);
    }
    /* a trailing hole: the length comes from the truncation */
    if (rc == JPIP_OK && apr_file_trunc(f, o.pos) != APR_SUCCESS) {
        rc = jpip_err_set(err, JPIP_E_IO, "cannot write %s", outpath);
    }
    if (apr_file_close(f) != APR_SUCCESS && rc == JPIP_OK) {
        rc = jpip_err_set(err, JPIP_E_IO, "cannot write %s", outpath);
    }
    return rc;
}

/* -------------------------------------------------------------- packets */

/* Print the file ranges of bytes [start, start+len) of a bin as
 * " name=off+len,off+len" (" name=-" when len is 0). */
static void print_ranges(FILE *out, const char *name, const jpip_piece_t *pc, apr_uint32_t npc,
                         apr_uint64_t start, apr_uint64_t len)
{
    apr_uint64_t at = 0;
    apr_uint32_t i;
    int first = 1;

    fprintf(out, " %s=", name);
    if (len == 0) {
        fputc('-', out);
        return;
    }
    for (i = 0; i < npc && len > 0; i++) {
        apr_uint64_t p0 = at, o, n;

        at += pc[i].len;
        if (at <= start) {
            continue;
        }
        o = start - p0; /* start >= p0: earlier pieces were consumed */
        n = pc[i].len - o < len ? pc[i].len - o : len;
        fprintf(out, "%s%" APR_UINT64_T_FMT "+%" APR_UINT64_T_FMT, first ? "" : ",", pc[i].off + o,
                n);
        first = 0;
        len -= n;
        start += n;
    }
}

/* The packets of one precinct bin: their headers are decoded again from
 * the bin's own bytes (layer by layer) to split each packet into its SOP
 * segment, header and body. */
static jpip_code_t precinct_packets(inspect_t *in, FILE *out, apr_uint64_t csn,
                                    const jpip_ix_cs_t *cs, apr_uint32_t t, unsigned c,
                                    const jpip_rect_t *tcr, unsigned r, const jpip_ix_res_t *res,
                                    apr_uint64_t k, apr_pool_t *pool, jpip_err_t *err)
{
    const jpip_ix_tile_t *tile = jpip_index_tile(in->ix, cs, t);
    const jpip_ix_tc_t *tc = jpip_index_tc(in->ix, cs, t, c);
    const jpip_tccp_t *tccp = jpip_index_tccp(in->ix, tc);
    apr_uint32_t nt = jpip_siz_ntiles(&cs->siz);
    apr_uint64_t s = res->s0 + k, id = t + (c + s * cs->siz.csiz) * (apr_uint64_t)nt, pos = 0;
    const jpip_bin_t *bin;
    const jpip_piece_t *pc;
    const apr_uint64_t *bounds;
    jpip_t2_geom_t geom;
    jpip_t2_prec_t *prec;
    jpip_t2_stream_t st;
    unsigned l;
    jpip_code_t rc;

    if ((rc = jpip_index_bin(in->ix, JPIP_CLASS_PRECINCT, csn, id, &bin, err)) != JPIP_OK ||
        (rc = jpip_geom_prec_cblks(tcr, tccp, r, k % res->grid.npw, k / res->grid.npw, &geom,
                                   err)) != JPIP_OK ||
        (rc = jpip_t2_prec_create(&prec, pool, &geom, tccp->cblksty, err)) != JPIP_OK) {
        return rc;
    }
    pc = jpip_index_pieces(in->ix, bin);
    bounds = jpip_index_bounds(in->ix, bin);
    jpip_t2_stream_init(&st, in->src, pc, bin->npieces);
    for (l = 0; l < bin->nbounds; l++) {
        apr_uint64_t sop = 0;
        jpip_t2_packet_t pk;

        if (tile->scod & JPIP_SCOD_SOP) {
            unsigned char m[2];
            apr_size_t got;
            if ((rc = jpip_t2_stream_peek(&st, m, 2, &got, err)) != JPIP_OK) {
                return rc;
            }
            if (got == 2 && m[0] == 0xFF && m[1] == 0x91) {
                sop = 6;
            }
        }
        if ((rc = jpip_t2_stream_skip(&st, sop, NULL, NULL, err)) != JPIP_OK ||
            (rc = jpip_t2_read_header(prec, l, &st, (tile->scod & JPIP_SCOD_EPH) != 0, &pk, err)) !=
                JPIP_OK ||
            (rc = jpip_t2_stream_skip(&st, pk.header_len + pk.body_len, NULL, NULL, err)) !=
                JPIP_OK) {
            char why[sizeof(err->msg)];
            memcpy(why, err->msg, sizeof(why));
            return jpip_err_set(err, rc, "precinct bin %" APR_UINT64_T_FMT " layer %u: %s", id, l,
                                why);
        }
        if (pos + sop + pk.header_len + pk.body_len != bounds[l]) {
            return jpip_err_set(err, JPIP_E_FORMAT,
                                "precinct bin %" APR_UINT64_T_FMT
                                " layer %u: packet ends at %" APR_UINT64_T_FMT
                                ", the index says %" APR_UINT64_T_FMT,
                                id, l, pos + sop + pk.header_len + pk.body_len, bounds[l]);
        }
        fprintf(out,
                "cs=%" APR_UINT64_T_FMT " tile=%u comp=%u res=%u prec=%" APR_UINT64_T_FMT
                " layer=%u bin=%" APR_UINT64_T_FMT,
                csn, (unsigned)t, c, r, k, l, id);
        print_ranges(out, "sop", pc, bin->npieces, pos, sop);
        print_ranges(out, "header", pc, bin->npieces, pos + sop, pk.header_len);
        print_ranges(out, "body", pc, bin->npieces, pos + sop + pk.header_len, pk.body_len);
        fputc('\n', out);
        pos = bounds[l];
    }
    return JPIP_OK;
}

static jpip_code_t do_packets(inspect_t *in, const char *outpath, jpip_err_t *err)
{
    FILE *out = strcmp(outpath, "-") == 0 ? stdout : fopen(outpath, "w");
    apr_uint64_t csn;
    jpip_code_t rc = JPIP_OK;

    if (out == NULL) {
        return jpip_err_set(err, JPIP_E_IO, "cannot create %s", outpath);
    }
    for (csn = 0; csn < jpip_index_ncs(in->ix) && rc == JPIP_OK; csn++) {
        const jpip_ix_cs_t *cs = jpip_index_cs(in->ix, csn);
        const jpip_comp_t *comps = jpip_index_comps(in->ix, cs);
        apr_uint32_t nt = jpip_siz_ntiles(&cs->siz), t;

        for (t = 0; t < nt && rc == JPIP_OK; t++) {
            unsigned c;
            jpip_rect_t tr;

            jpip_geom_tile(&cs->siz, t, &tr);
            for (c = 0; c < cs->siz.csiz && rc == JPIP_OK; c++) {
                const jpip_tccp_t *tccp = jpip_index_tccp(in->ix, jpip_index_tc(in->ix, cs, t, c));
                jpip_rect_t tcr;
                unsigned r;

                jpip_geom_tilecomp(&tr, comps[c].xr, comps[c].yr, &tcr);
                for (r = 0; r <= tccp->nl && rc == JPIP_OK; r++) {
                    jpip_ix_res_t res;
                    apr_uint64_t k, n;
                    apr_pool_t *sub;

                    if ((rc = jpip_index_res(in->ix, cs, t, c, r, &res, err)) != JPIP_OK) {
                        break;
                    }
                    n = res.grid.npw * res.grid.nph;
                    apr_pool_create(&sub, in->pool);
                    for (k = 0; k < n && rc == JPIP_OK; k++) {
                        rc = precinct_packets(in, out, csn, cs, t, c, &tcr, r, &res, k, sub, err);
                        apr_pool_clear(sub);
                    }
                    apr_pool_destroy(sub);
                }
            }
        }
    }
    if (out != stdout && fclose(out) != 0 && rc == JPIP_OK) {
        rc = jpip_err_set(err, JPIP_E_IO, "cannot write %s", outpath);
    }
    return rc;
}

/* ----------------------------------------------------------------- main */

static int usage(void)
{
    fprintf(stderr, "usage: jpip-inspect [--bins] FILE\n"
                    "       jpip-inspect --rebuild OUT [--max-resolution R] [--max-layers L] "
                    "FILE\n"
                    "       jpip-inspect --packets OUT FILE\n");
    return 2;
}

static int parse_uint(const char *s, unsigned *out)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);

    if (*s == '\0' || *end != '\0' || v > 0xFFFFFFF0ul) {
        return 0;
    }
    *out = (unsigned)v;
    return 1;
}

static int open_target(inspect_t *in, jpip_err_t *err)
{
    apr_file_t *f;
    apr_finfo_t fi;
    apr_mmap_t *mm;
    jpip_src_t *src;
    jpip_index_key_t key;
    apr_uint32_t brand;

    if (apr_file_open(&f, in->path, APR_FOPEN_READ | APR_FOPEN_BINARY, 0, in->pool) !=
            APR_SUCCESS ||
        apr_file_info_get(&fi, APR_FINFO_SIZE | APR_FINFO_MTIME, f) != APR_SUCCESS) {
        jpip_err_set(err, JPIP_E_IO, "cannot open the file");
        return 0;
    }
    in->size = (apr_uint64_t)fi.size;
    if (fi.size > 0 &&
        apr_mmap_create(&mm, f, 0, (apr_size_t)fi.size, APR_MMAP_READ, in->pool) == APR_SUCCESS) {
        in->data = mm->mm;
    }
    if (jpip_src_open_file(&src, in->pool, f, in->size, err) != JPIP_OK ||
        jpip_box_detect(src, &in->container, &brand, err) != JPIP_OK) {
        return 0;
    }
    in->src = src;
    memset(&key, 0, sizeof(key));
    key.path = in->path;
    key.size = in->size;
    key.mtime = fi.mtime;
    return jpip_index_build(&in->ix, in->pool, src, &key, NULL, err) == JPIP_OK;
}

int main(int argc, char **argv)
{
    inspect_t in;
    const char *rebuild_out = NULL, *packets_out = NULL;
    int bins = 0, i, status = 0;
    jpip_err_t err;

    apr_app_initialize(&argc, (const char *const **)&argv, NULL);
    memset(&in, 0, sizeof(in));
    apr_pool_create(&in.pool, NULL);
    jpip_rebuild_opts_init(&in.opts);
    in.max_res = JPIP_REBUILD_ALL;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--bins") == 0) {
            bins = 1;
        } else if (strcmp(argv[i], "--rebuild") == 0 && i + 1 < argc) {
            rebuild_out = argv[++i];
        } else if (strcmp(argv[i], "--packets") == 0 && i + 1 < argc) {
            packets_out = argv[++i];
        } else if (strcmp(argv[i], "--max-resolution") == 0 && i + 1 < argc) {
            if (!parse_uint(argv[++i], &in.max_res)) {
                return usage();
            }
        } else if (strcmp(argv[i], "--max-layers") == 0 && i + 1 < argc) {
            if (!parse_uint(argv[++i], &in.opts.max_layers)) {
                return usage();
            }
        } else if (argv[i][0] == '-' || in.path != NULL) {
            return usage();
        } else {
            in.path = argv[i];
        }
    }
    if (in.path == NULL) {
        return usage();
    }
    jpip_err_clear(&err);
    if (!open_target(&in, &err)) {
        fprintf(stderr, "jpip-inspect: %s: %s\n", in.path, err.msg);
        status = 1;
    } else if (rebuild_out != NULL) {
        if (in.data == NULL) {
            fprintf(stderr, "jpip-inspect: %s: cannot map the file\n", in.path);
            status = 1;
        } else if (do_rebuild(&in, rebuild_out, &err) != JPIP_OK) {
            fprintf(stderr, "jpip-inspect: %s: rebuild failed: %s\n", in.path, err.msg);
            status = 1;
        }
    } else if (packets_out != NULL) {
        if (do_packets(&in, packets_out, &err) != JPIP_OK) {
            fprintf(stderr, "jpip-inspect: %s: --packets: %s\n", in.path, err.msg);
            status = 1;
        }
    } else if (bins) {
        walk_bins(in.ix, print_bin, in.ix);
    } else {
        print_summary(&in);
    }
    apr_pool_destroy(in.pool);
    apr_terminate();
    return status;
}
