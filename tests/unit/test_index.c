/* mod_jpip: unit tests for the index (libcore/index.c).
 *
 * Codestreams are made at test time by opj_compress from synthetic
 * pictures with many option sets (progressions, POC, tiles, tile-parts,
 * precincts, SOP/EPH, PLT, TLM, offsets, sub-sampling). For each we check
 * the byte accounting of the bins, that PLT-derived and header-decoded
 * packet boundaries agree, that the blob survives write/load, and that
 * bin lookup by id works. The conformance and malformed corpora, and
 * truncated and bit-flipped copies of the conformance files, must index
 * or fail cleanly.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>

#include "codestream.h"
#include "index.h"
#include "packets.h"
#include "source.h"
#include "testutil.h"

static apr_pool_t *pool;

static void setup(void)
{
    apr_pool_create(&pool, NULL);
}

static void teardown(void)
{
    apr_pool_destroy(pool);
}

/* Index a memory buffer; returns the code, *ix on success. */
static jpip_code_t index_mem(const unsigned char *data, size_t len, jpip_index_t **ix,
                             jpip_err_t *err)
{
    jpip_src_t *src;

    jpip_src_open_mem(&src, pool, data, len, err);
    return jpip_index_build(ix, pool, src, NULL, NULL, err);
}

/* Encode a synthetic picture with opj_compress options; returns the
 * codestream bytes or NULL (test failure). */
static unsigned char *encode(const char *name, int w, int h, int nc, const char *opts, size_t *len)
{
    const char *dir = tu_tmpdir();
    char *in = apr_psprintf(pool, "%s/%s.%s", dir, name, nc == 1 ? "pgm" : "ppm");
    char *out = apr_psprintf(pool, "%s/%s.j2k", dir, name);
    int rc;

    ck_assert_int_eq(tu_write_synth(in, w, h, nc, 7), 0);
    rc = tu_run("%s -i %s -o %s %s", tu_opj_compress(), in, out, opts);
    ck_assert_msg(rc == 0, "opj_compress %s failed", opts);
    return tu_read_file(pool, out, len);
}

static int piece_cmp(const void *a, const void *b)
{
    const jpip_piece_t *x = a, *y = b;

    return x->off < y->off ? -1 : x->off > y->off;
}

/* (a) Accounting: per tile, the precinct bins cover every byte of the
 * tile-part bodies exactly once (no packed headers), and the tile bin is
 * SOT+header+SOD+bodies of all its tile-parts. */
static void check_accounting(const unsigned char *data, size_t len, const jpip_index_t *ix,
                             int complete)
{
    jpip_src_t *src;
    jpip_cs_t *cs;
    jpip_err_t err;
    const jpip_ix_cs_t *ics = jpip_index_cs(ix, 0);
    apr_uint32_t t, nt;
    apr_uint64_t tiles_total = 0;
    const jpip_bin_t *bin;

    ck_assert_ptr_nonnull(ics);
    jpip_src_open_mem(&src, pool, data, len, &err);
    ck_assert_int_eq(jpip_cs_parse(&cs, pool, src, NULL, &err), JPIP_OK);
    nt = jpip_siz_ntiles(&cs->siz);
    ck_assert_int_eq(jpip_index_bin(ix, JPIP_CLASS_MAIN, 0, 0, &bin, &err), JPIP_OK);
    ck_assert(bin->flags & JPIP_BIN_COMPLETE);
    for (t = 0; t < nt; t++) {
        jpip_tile_t *tile;
        const jpip_bin_t *hb, *tb;
        apr_uint64_t plt_bytes = 0, bodies = 0, hdr, prec_total = 0, s;
        apr_size_t i, np = 0, cap = 64;
        jpip_piece_t *all = malloc(cap * sizeof(*all));
        unsigned c;

        ck_assert_int_eq(jpip_cs_tile_read(cs, src, t, pool, &tile, &err), JPIP_OK);
        for (i = 0; i < tile->nplt; i++) {
            plt_bytes += tile->plt[i].len + 5;
        }
        for (i = 0; i < tile->nppt; i++) {
            plt_bytes += tile->ppt[i].len + 5;
        }
        for (i = 0; i < tile->nbodies; i++) {
            bodies += tile->bodies[i].len;
        }
        ck_assert_int_eq(jpip_index_bin(ix, JPIP_CLASS_TILEHDR, 0, t, &hb, &err), JPIP_OK);
        ck_assert_int_eq(jpip_index_bin(ix, JPIP_CLASS_TILE, 0, t, &tb, &err), JPIP_OK);
        hdr = hb->len;
        ck_assert_uint_eq(tb->nbounds, cs->tile_ntp[t]);
        ck_assert_uint_eq(jpip_index_bounds(ix, tb)[tb->nbounds - 1], tb->len);
        tiles_total += tb->len;
        for (c = 0; c < cs->siz.csiz; c++) {
            const jpip_ix_tc_t *tc = jpip_index_tc(ix, ics, t, c);

            for (s = 0; s < tc->nprec; s++) {
                apr_uint64_t id = jpip_prec_bin_id(t, c, s, cs->siz.csiz, nt);
                const jpip_piece_t *pc;

                ck_assert_int_eq(jpip_index_bin(ix, JPIP_CLASS_PRECINCT, 0, id, &bin, &err),
                                 JPIP_OK);
                ck_assert_msg(!complete || (bin->flags & JPIP_BIN_COMPLETE),
                              "tile %u comp %u prec %llu incomplete", t, c, (unsigned long long)s);
                ck_assert_uint_le(bin->nbounds, jpip_index_tile(ix, ics, t)->layers);
                ck_assert_int_eq(bin->nbounds == jpip_index_tile(ix, ics, t)->layers,
                                 (bin->flags & JPIP_BIN_COMPLETE) != 0);
                if (bin->nbounds > 0) {
                    ck_assert_uint_eq(jpip_index_bounds(ix, bin)[bin->nbounds - 1], bin->len);
                }
                prec_total += bin->len;
                pc = jpip_index_pieces(ix, bin);
                for (i = 0; i < bin->npieces; i++) {
                    if (np == cap) {
                        cap *= 2;
                        all = realloc(all, cap * sizeof(*all));
                    }
                    all[np++] = pc[i];
                }
            }
        }
        /* SOT (12) + SOD (2) per tile-part, plus the header bin, PLT/PPT, bodies
         * (PLT/PPT segments without data are not listed in tile->plt). */
        {
            apr_uint64_t tparts = 0;
            apr_uint32_t q;

            for (q = cs->tile_first[t]; q != JPIP_NONE; q = cs->tparts[q].next) {
                tparts += cs->tparts[q].end - cs->tparts[q].sot;
            }
            ck_assert_uint_eq(tb->len, tparts);
            ck_assert_uint_le(14 * cs->tile_ntp[t] + hdr + plt_bytes + bodies, tb->len);
            ck_assert_uint_eq((tb->len - (14 * cs->tile_ntp[t] + hdr + plt_bytes + bodies)) % 5, 0);
        }
        if (tile->nppt > 0 || cs->ppm_first != NULL) {
            /* Packed headers: every header byte went back in front of its body. */
            apr_uint64_t packed = 0;

            for (i = 0; i < tile->nppt; i++) {
                packed += tile->ppt[i].len;
            }
            for (i = 0; i < tile->nppm; i++) {
                packed += tile->ppm[i].len;
            }
            ck_assert_uint_eq(prec_total, bodies + packed);
        } else {
            apr_size_t bi = 0;

            ck_assert_uint_eq(prec_total, bodies);
            qsort(all, np, sizeof(*all), piece_cmp);
            for (i = 0; i < np; i++) {
                /* Each piece inside one body; pieces disjoint. */
                while (bi < tile->nbodies &&
                       tile->bodies[bi].off + tile->bodies[bi].len <= all[i].off) {
                    bi++;
                }
                ck_assert(bi < tile->nbodies);
                ck_assert(all[i].off >= tile->bodies[bi].off);
                ck_assert(all[i].off + all[i].len <= tile->bodies[bi].off + tile->bodies[bi].len);
                if (i > 0) {
                    ck_assert(all[i - 1].off + all[i - 1].len <= all[i].off);
                }
            }
        }
        free(all);
    }
    ck_assert_uint_eq(tiles_total, cs->end - cs->main_end);
}

/* Write the index, read it back, load it, compare. */
static void check_roundtrip(const jpip_index_t *ix)
{
    const char *path = apr_psprintf(pool, "%s/ix.bin", tu_tmpdir());
    apr_file_t *f;
    jpip_err_t err;
    apr_size_t n, n2;
    const void *blob = jpip_index_blob(ix, &n);
    unsigned char *back;
    size_t blen;
    jpip_index_t *ix2;

    ck_assert_int_eq(
        apr_file_open(&f, path,
                      APR_FOPEN_WRITE | APR_FOPEN_CREATE | APR_FOPEN_TRUNCATE | APR_FOPEN_BINARY,
                      APR_FPROT_OS_DEFAULT, pool),
        APR_SUCCESS);
    ck_assert_int_eq(jpip_index_write(ix, f, &err), JPIP_OK);
    apr_file_close(f);
    back = tu_read_file(pool, path, &blen);
    ck_assert_uint_eq(blen, n);
    ck_assert_int_eq(memcmp(back, blob, n), 0);
    ck_assert_int_eq(jpip_index_load(&ix2, pool, back, blen, &err), JPIP_OK);
    ck_assert_ptr_eq(jpip_index_blob(ix2, &n2), back);
    ck_assert_uint_eq(jpip_index_nbins(ix2), jpip_index_nbins(ix));
    /* Unaligned copies load too (copied). */
    {
        unsigned char *odd = apr_palloc(pool, blen + 1);

        memcpy(odd + 1, back, blen);
        ck_assert_int_eq(jpip_index_load(&ix2, pool, odd + 1, blen, &err), JPIP_OK);
    }
}

/* Per precinct bin: (length, layer bounds) sequence, for comparisons. */
static apr_uint64_t *bin_profile(const jpip_index_t *ix, apr_size_t *n)
{
    const jpip_ix_cs_t *cs = jpip_index_cs(ix, 0);
    apr_uint32_t nt = jpip_siz_ntiles(&cs->siz), t;
    apr_size_t k = 0, cap = 1024;
    apr_uint64_t *v = apr_palloc(pool, cap * sizeof(*v));
    unsigned c;

    for (t = 0; t < nt; t++) {
        for (c = 0; c < cs->siz.csiz; c++) {
            const jpip_ix_tc_t *tc = jpip_index_tc(ix, cs, t, c);
            apr_uint64_t s;

            for (s = 0; s < tc->nprec; s++) {
                const jpip_bin_t *b;
                jpip_err_t err;
                unsigned q;

                ck_assert_int_eq(jpip_index_bin(ix, JPIP_CLASS_PRECINCT_EXT, 0,
                                                jpip_prec_bin_id(t, c, s, cs->siz.csiz, nt), &b,
                                                &err),
                                 JPIP_OK);
                if (k + b->nbounds + 2 > cap) {
                    apr_uint64_t *nv = apr_palloc(pool, 2 * (cap + b->nbounds) * sizeof(*nv));

                    memcpy(nv, v, k * sizeof(*v));
                    v = nv;
                    cap = 2 * (cap + b->nbounds);
                }
                v[k++] = b->len;
                for (q = 0; q < b->nbounds; q++) {
                    v[k++] = jpip_index_bounds(ix, b)[q];
                }
            }
        }
    }
    *n = k;
    return v;
}

/* Option sets for opj_compress. Each runs with and without -PLT. */
static const struct {
    int w, h, nc;
    const char *opts;
} cases[] = {
    {96, 80, 1, "-n 3 -p LRCP"},
    {96, 80, 3, "-n 4 -p RLCP -r 40,10,1"},
    {130, 100, 3, "-n 4 -p RPCL -r 30,8,2 -c [32,32],[32,32],[16,16] -b 8,8"},
    {130, 100, 3, "-n 3 -p PCRL -r 20,4 -c [64,64],[32,32] -b 16,16 -SOP -EPH"},
    {130, 100, 3, "-n 3 -p CPRL -r 20,4 -c [32,32] -b 8,8 -d 13,7"},
    {200, 150, 3, "-n 3 -p RPCL -t 64,48 -T 5,3 -d 9,11 -c [16,16] -b 4,4 -r 15,3"},
    {200, 150, 1, "-n 4 -p LRCP -t 64,64 -TP R -r 10,5,2"},
    {200, 150, 3, "-n 3 -p RPCL -t 100,100 -TP R -SOP -EPH -TLM -c [32,32]"},
    {160, 120, 3, "-n 3 -r 16,4,1 -POC T1=0,0,2,4,3,CPRL/T1=0,0,3,4,3,LRCP"},
    {160, 120, 3, "-n 3 -t 80,60 -r 16,4,1 -POC T0=0,0,1,2,2,RPCL/T2=1,0,3,4,3,PCRL"},
    {64, 64, 1, "-n 1 -p LRCP -M 63"},
    {100, 90, 1, "-n 5 -p PCRL -c [128,128],[64,64],[32,32],[16,16] -b 4,4 -r 50,20,5,1"},
};

START_TEST(opj_cases)
{
    char name[32];
    size_t l1, l2;
    unsigned char *d1, *d2;
    jpip_index_t *ix1, *ix2;
    jpip_err_t err;
    jpip_index_stats_t st1, st2;
    apr_uint64_t *p1, *p2;
    apr_size_t n1, n2;
    const jpip_bin_t *mb;

    snprintf(name, sizeof(name), "case%d", _i);
    d1 = encode(name, cases[_i].w, cases[_i].h, cases[_i].nc, cases[_i].opts, &l1);
    snprintf(name, sizeof(name), "case%dplt", _i);
    d2 = encode(name, cases[_i].w, cases[_i].h, cases[_i].nc,
                apr_pstrcat(pool, cases[_i].opts, " -PLT", NULL), &l2);
    ck_assert_ptr_nonnull(d1);
    ck_assert_ptr_nonnull(d2);
    ck_assert_msg(index_mem(d1, l1, &ix1, &err) == JPIP_OK, "%s: %s", cases[_i].opts, err.msg);
    ck_assert_msg(index_mem(d2, l2, &ix2, &err) == JPIP_OK, "%s -PLT: %s", cases[_i].opts, err.msg);
    jpip_index_stats(ix1, &st1);
    jpip_index_stats(ix2, &st2);
    ck_assert(st1.flags & JPIP_IXF_DECODED);
    ck_assert(!(st1.flags & JPIP_IXF_PLT));
    ck_assert_msg(st2.flags & JPIP_IXF_PLT, "PLT not used for %s", cases[_i].opts);
    ck_assert(!(st2.flags & JPIP_IXF_DECODED));
    jpip_index_blob(ix1, &n1);
    ck_assert_uint_eq(st1.size, n1);
    /* opj_compress writes only the packets its POC volumes reach. */
    check_accounting(d1, l1, ix1, strstr(cases[_i].opts, "POC") == NULL);
    check_accounting(d2, l2, ix2, strstr(cases[_i].opts, "POC") == NULL);
    /* (b) PLT-derived and decoded boundaries agree exactly. */
    p1 = bin_profile(ix1, &n1);
    p2 = bin_profile(ix2, &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert_msg(memcmp(p1, p2, n1 * sizeof(*p1)) == 0, "PLT and decoded differ for %s",
                  cases[_i].opts);
    /* Raw codestream: metadata-bin 0 present, empty, complete. */
    ck_assert_int_eq(jpip_index_bin(ix1, JPIP_CLASS_META, 0, 0, &mb, &err), JPIP_OK);
    ck_assert_uint_eq(mb->len, 0);
    ck_assert(mb->flags & JPIP_BIN_COMPLETE);
    ck_assert_int_eq(jpip_index_bin(ix1, JPIP_CLASS_META, 0, 1, &mb, &err), JPIP_E_NOTFOUND);
    check_roundtrip(ix1);
}
END_TEST

/* The main header bin drops TLM; the tile header bins drop PLT. */
START_TEST(header_bins_strip)
{
    size_t l;
    unsigned char *d = encode("strip", 128, 96, 3, "-n 3 -t 64,48 -TLM -PLT -TP R", &l);
    jpip_index_t *ix;
    jpip_err_t err;
    const jpip_bin_t *b;
    const jpip_piece_t *p;
    jpip_index_stats_t st;
    apr_size_t i;

    ck_assert_int_eq(index_mem(d, l, &ix, &err), JPIP_OK);
    jpip_index_stats(ix, &st);
    ck_assert(st.flags & JPIP_IXF_TLM);
    ck_assert(st.flags & JPIP_IXF_PLT);
    ck_assert_int_eq(jpip_index_bin(ix, JPIP_CLASS_MAIN, 0, 0, &b, &err), JPIP_OK);
    p = jpip_index_pieces(ix, b);
    for (i = 0; i < b->npieces; i++) {
        apr_uint64_t o;

        for (o = p[i].off; o + 1 < p[i].off + p[i].len; o++) {
            ck_assert_msg(!(d[o] == 0xFF && d[o + 1] == 0x55), "TLM in main header bin");
        }
    }
    ck_assert_int_eq(d[p[0].off], 0xFF);
    ck_assert_int_eq(d[p[0].off + 1], 0x4F);
    ck_assert_int_eq(jpip_index_bin(ix, JPIP_CLASS_TILEHDR, 0, 0, &b, &err), JPIP_OK);
    /* -TP R, one QCD/COD-free header: with PLT stripped the bin is empty. */
    ck_assert_uint_eq(b->len, 0);
    ck_assert(b->flags & JPIP_BIN_COMPLETE);
    ck_assert_int_eq(jpip_index_bin(ix, JPIP_CLASS_TILEHDR, 0, 6, &b, &err), JPIP_E_NOTFOUND);
    ck_assert_int_eq(jpip_index_bin(ix, 3, 0, 0, &b, &err), JPIP_E_NOTFOUND);
    ck_assert_int_eq(jpip_index_bin(ix, JPIP_CLASS_MAIN, 1, 0, &b, &err), JPIP_E_NOTFOUND);
    ck_assert_int_eq(jpip_index_bin(ix, JPIP_CLASS_PRECINCT, 0, 1u << 30, &b, &err),
                     JPIP_E_NOTFOUND);
}
END_TEST

/* Sub-sampled components from raw input. */
START_TEST(subsampled)
{
    const char *dir = tu_tmpdir();
    char *raw = apr_psprintf(pool, "%s/sub.raw", dir);
    char *out = apr_psprintf(pool, "%s/sub.j2k", dir);
    char *outp = apr_psprintf(pool, "%s/subp.j2k", dir);
    int w = 131, h = 77, cw = (w + 1) / 2, ch = (h + 1) / 2;
    size_t n = (size_t)w * h + 2 * (size_t)cw * ch, i, l1, l2;
    unsigned char *buf = malloc(n), *d1, *d2;
    jpip_index_t *ix1, *ix2;
    jpip_err_t err;
    apr_uint64_t *p1, *p2;
    apr_size_t n1, n2;

    for (i = 0; i < n; i++) {
        buf[i] = (unsigned char)((i * 7) ^ (i >> 5));
    }
    ck_assert_int_eq(tu_write_file(raw, buf, n), 0);
    free(buf);
    ck_assert_int_eq(tu_run("%s -i %s -o %s -F %d,%d,3,8,u@1x1:2x2:2x2 -n 3 -p RPCL -c [16,16] "
                            "-b 4,4 -r 10,3 -d 3,5 -t 64,40 -T 1,2",
                            tu_opj_compress(), raw, out, w, h),
                     0);
    ck_assert_int_eq(tu_run("%s -i %s -o %s -F %d,%d,3,8,u@1x1:2x2:2x2 -n 3 -p RPCL -c [16,16] "
                            "-b 4,4 -r 10,3 -d 3,5 -t 64,40 -T 1,2 -PLT",
                            tu_opj_compress(), raw, outp, w, h),
                     0);
    d1 = tu_read_file(pool, out, &l1);
    d2 = tu_read_file(pool, outp, &l2);
    ck_assert_msg(index_mem(d1, l1, &ix1, &err) == JPIP_OK, "%s", err.msg);
    ck_assert_msg(index_mem(d2, l2, &ix2, &err) == JPIP_OK, "%s", err.msg);
    check_accounting(d1, l1, ix1, 1);
    p1 = bin_profile(ix1, &n1);
    p2 = bin_profile(ix2, &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert(memcmp(p1, p2, n1 * sizeof(*p1)) == 0);
    {
        const jpip_ix_cs_t *cs = jpip_index_cs(ix1, 0);

        ck_assert_uint_eq(jpip_index_comps(ix1, cs)[1].xr, 2);
        ck_assert_uint_eq(jpip_index_comps(ix1, cs)[2].yr, 2);
    }
}
END_TEST

/* PLM: move the PLT of a one-tile-part stream into a main-header PLM; the
 * lengths must then come from PLM and agree with the PLT-derived index. */
START_TEST(plm_used)
{
    size_t l, n;
    unsigned char *d = encode("plm", 96, 80, 1, "-n 3 -p LRCP -r 20,5 -PLT", &l);
    unsigned char *m;
    jpip_src_t *src;
    jpip_cs_t *cs;
    jpip_tile_t *tile;
    jpip_err_t err;
    jpip_index_t *ix1, *ix2;
    jpip_index_stats_t st;
    apr_uint64_t segoff, seglen, dlen, psot, *p1, *p2;
    apr_size_t n1, n2;

    jpip_src_open_mem(&src, pool, d, l, &err);
    ck_assert_int_eq(jpip_cs_parse(&cs, pool, src, NULL, &err), JPIP_OK);
    ck_assert_int_eq(jpip_cs_tile_read(cs, src, 0, pool, &tile, &err), JPIP_OK);
    ck_assert_uint_eq(cs->ntparts, 1);
    ck_assert_uint_eq(tile->nplt, 1);
    dlen = tile->plt[0].len;
    ck_assert_uint_lt(dlen, 256);
    segoff = tile->plt[0].off - 5;
    seglen = dlen + 5;
    /* new = main header | PLM(Zplm, Nplm, Iplm) | tile-part without PLT | rest */
    m = apr_palloc(pool, l + 16);
    n = 0;
    memcpy(m, d, cs->main_end);
    n = cs->main_end;
    m[n++] = 0xFF;
    m[n++] = 0x57;
    m[n++] = (unsigned char)((dlen + 4) >> 8);
    m[n++] = (unsigned char)((dlen + 4) & 0xFF);
    m[n++] = 0;
    m[n++] = (unsigned char)dlen;
    memcpy(m + n, d + tile->plt[0].off, dlen);
    n += dlen;
    memcpy(m + n, d + cs->main_end, segoff - cs->main_end);
    psot = cs->tparts[0].end - cs->tparts[0].sot - seglen;
    m[n + 6] = (unsigned char)(psot >> 24);
    m[n + 7] = (unsigned char)(psot >> 16);
    m[n + 8] = (unsigned char)(psot >> 8);
    m[n + 9] = (unsigned char)psot;
    n += segoff - cs->main_end;
    memcpy(m + n, d + segoff + seglen, l - segoff - seglen);
    n += l - segoff - seglen;
    ck_assert_msg(index_mem(m, n, &ix2, &err) == JPIP_OK, "%s", err.msg);
    ck_assert_int_eq(index_mem(d, l, &ix1, &err), JPIP_OK);
    jpip_index_stats(ix2, &st);
    ck_assert(st.flags & JPIP_IXF_PLM);
    ck_assert(st.flags & JPIP_IXF_PLT);
    ck_assert(!(st.flags & JPIP_IXF_DECODED));
    check_accounting(m, n, ix2, 1);
    p1 = bin_profile(ix1, &n1);
    p2 = bin_profile(ix2, &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert(memcmp(p1, p2, n1 * sizeof(*p1)) == 0);
    /* A PLM series count that does not match the tile-parts is ignored. */
    m[cs->main_end + 5] = (unsigned char)(dlen - 1);
    ck_assert_msg(index_mem(m, n, &ix2, &err) == JPIP_OK, "%s", err.msg);
    jpip_index_stats(ix2, &st);
    ck_assert(st.flags & JPIP_IXF_DECODED);
}
END_TEST

/* Limits give JPIP_E_LIMIT with a message. */
START_TEST(limits)
{
    size_t l;
    unsigned char *d = encode("lim", 128, 96, 3, "-n 3 -t 32,32", &l);
    jpip_src_t *src;
    jpip_index_t *ix;
    jpip_err_t err;
    jpip_index_limits_t lim;

    jpip_src_open_mem(&src, pool, d, l, &err);
    jpip_index_limits_default(&lim);
    lim.max_bins = 20;
    ck_assert_int_eq(jpip_index_build(&ix, pool, src, NULL, &lim, &err), JPIP_E_LIMIT);
    ck_assert(strlen(err.msg) > 0);
    jpip_index_limits_default(&lim);
    lim.max_tile_comps = 10;
    ck_assert_int_eq(jpip_index_build(&ix, pool, src, NULL, &lim, &err), JPIP_E_LIMIT);
    jpip_index_limits_default(&lim);
    lim.max_memory = 2000;
    ck_assert_int_eq(jpip_index_build(&ix, pool, src, NULL, &lim, &err), JPIP_E_LIMIT);
    jpip_index_limits_default(&lim);
    lim.max_precincts_per_tile = 2;
    ck_assert_int_eq(jpip_index_build(&ix, pool, src, NULL, &lim, &err), JPIP_E_LIMIT);
    ck_assert_int_eq(jpip_index_build(&ix, pool, src, NULL, NULL, &err), JPIP_OK);
}
END_TEST

/* Corrupted blobs load or fail with a format error; loaded ones are safe
 * to walk completely. */
START_TEST(blob_corruption)
{
    size_t l;
    unsigned char *d = encode("blob", 96, 64, 3, "-n 3 -t 48,32 -r 10,2", &l);
    jpip_index_t *ix, *ix2;
    jpip_err_t err;
    apr_size_t n, i;
    const unsigned char *blob;
    unsigned char *copy;
    unsigned long st = 12345;
    int k;

    ck_assert_int_eq(index_mem(d, l, &ix, &err), JPIP_OK);
    blob = jpip_index_blob(ix, &n);
    copy = apr_palloc(pool, n);
    for (k = 0; k < 400; k++) {
        jpip_code_t rc;

        memcpy(copy, blob, n);
        st = st * 1103515245ul + 12345ul;
        copy[(st >> 8) % n] ^= (unsigned char)(1u << ((st >> 4) & 7));
        rc = jpip_index_load(&ix2, pool, copy, n, &err);
        ck_assert(rc == JPIP_OK || rc == JPIP_E_FORMAT);
        if (rc == JPIP_OK) {
            for (i = 0; i < jpip_index_ncs(ix2); i++) {
                const jpip_ix_cs_t *cs = jpip_index_cs(ix2, i);
                apr_uint32_t t, nt = jpip_siz_ntiles(&cs->siz);

                for (t = 0; t < nt; t++) {
                    unsigned c;

                    for (c = 0; c < cs->siz.csiz; c++) {
                        const jpip_ix_tc_t *tc = jpip_index_tc(ix2, cs, t, c);
                        const jpip_tccp_t *tp = jpip_index_tccp(ix2, tc);
                        jpip_ix_res_t res;
                        const jpip_bin_t *b;
                        apr_uint64_t s;

                        ck_assert_int_eq(jpip_index_res(ix2, cs, t, c, tp->nl, &res, &err),
                                         JPIP_OK);
                        for (s = 0; s < tc->nprec && s < 100; s++) {
                            jpip_index_bin(ix2, 0, i, jpip_prec_bin_id(t, c, s, cs->siz.csiz, nt),
                                           &b, &err);
                        }
                    }
                }
            }
        }
    }
    ck_assert_int_eq(jpip_index_load(&ix2, pool, blob, 10, &err), JPIP_E_FORMAT);
    memcpy(copy, blob, n);
    ck_assert_int_eq(jpip_index_load(&ix2, pool, copy, n - 8, &err), JPIP_E_FORMAT);
}
END_TEST

/* ---- corpora ---- */

/* Index a file; it must succeed or fail with a clean code and message. */
static jpip_code_t index_file_ok(const char *path, int must_succeed)
{
    size_t len;
    unsigned char *d = tu_read_file(pool, path, &len);
    jpip_index_t *ix;
    jpip_err_t err;
    jpip_code_t rc;

    ck_assert_ptr_nonnull(d);
    jpip_err_clear(&err);
    rc = index_mem(d, len, &ix, &err);
    if (must_succeed) {
        ck_assert_msg(rc == JPIP_OK, "%s: %s", path, err.msg);
    } else {
        ck_assert_msg(rc == JPIP_OK || rc == JPIP_E_FORMAT || rc == JPIP_E_LIMIT ||
                          rc == JPIP_E_UNSUPPORTED,
                      "%s: unexpected code %d (%s)", path, rc, err.msg);
        ck_assert_msg(rc == JPIP_OK || err.msg[0] != '\0', "%s: no message", path);
    }
    return rc;
}

static char **list_dir(const char *dir, apr_size_t *n)
{
    apr_dir_t *d;
    apr_finfo_t fi;
    char **v = apr_palloc(pool, 512 * sizeof(char *));

    *n = 0;
    if (apr_dir_open(&d, dir, pool) != APR_SUCCESS) {
        return v;
    }
    while (apr_dir_read(&fi, APR_FINFO_NAME | APR_FINFO_TYPE, d) == APR_SUCCESS && *n < 512) {
        const char *dot = strrchr(fi.name, '.');

        if (fi.filetype == APR_REG && dot != NULL &&
            (strcmp(dot, ".j2k") == 0 || strcmp(dot, ".jp2") == 0 || strcmp(dot, ".jpc") == 0 ||
             strcmp(dot, ".j2c") == 0 || strcmp(dot, ".jpx") == 0 || strcmp(dot, ".jph") == 0)) {
            v[(*n)++] = apr_pstrcat(pool, dir, "/", fi.name, NULL);
        }
    }
    apr_dir_close(d);
    return v;
}

START_TEST(conformance)
{
    const char *dir = tu_testdata("conformance");
    apr_size_t n, i;
    char **files;

    if (dir == NULL) {
        tu_skip("conformance", "test data absent");
        return;
    }
    files = list_dir(dir, &n);
    ck_assert(n > 0);
    for (i = 0; i < n; i++) {
        size_t len;
        unsigned char *d = tu_read_file(pool, files[i], &len);
        jpip_index_t *ix;
        jpip_err_t err;
        jpip_index_stats_t st;

        ck_assert_msg(index_mem(d, len, &ix, &err) == JPIP_OK, "%s: %s", files[i], err.msg);
        jpip_index_stats(ix, &st);
        if (getenv("TU_VERBOSE") != NULL) {
            printf("%s: flags %#x bins %llu size %llu\n", files[i], (unsigned)st.flags,
                   (unsigned long long)st.nbins, (unsigned long long)st.size);
        }
        if (len > 2 && d[0] == 0xFF && d[1] == 0x4F) {
            check_accounting(d, len, ix, 1);
        }
    }
}
END_TEST

START_TEST(malformed)
{
    const char *dir = tu_testdata("malformed");
    apr_size_t n, i;
    char **files;

    if (dir == NULL) {
        tu_skip("malformed", "test data absent");
        return;
    }
    files = list_dir(dir, &n);
    for (i = 0; i < n; i++) {
        index_file_ok(files[i], 0);
    }
}
END_TEST

/* Truncations at several points and random bit flips of every
 * conformance file: index or fail cleanly, never crash or hang. */
START_TEST(mutations)
{
    const char *dir = tu_testdata("conformance");
    apr_size_t n, i;
    char **files;
    unsigned long st = 99;

    if (dir == NULL) {
        tu_skip("mutations", "test data absent");
        return;
    }
    files = list_dir(dir, &n);
    for (i = 0; i < n; i++) {
        size_t len, cut;
        unsigned char *d = tu_read_file(pool, files[i], &len);
        unsigned char *m = malloc(len);
        int k;

        for (k = 1; k <= 12; k++) {
            jpip_index_t *ix;
            jpip_err_t err;
            jpip_code_t rc;

            cut = k <= 6 ? (size_t)k * 40 : len * (size_t)(k - 6) / 7;
            if (cut >= len) {
                continue;
            }
            rc = index_mem(d, cut, &ix, &err);
            ck_assert_msg(rc == JPIP_OK || rc == JPIP_E_FORMAT || rc == JPIP_E_LIMIT ||
                              rc == JPIP_E_UNSUPPORTED,
                          "%s cut %zu: code %d", files[i], cut, rc);
        }
        for (k = 0; k < 25; k++) {
            jpip_index_t *ix;
            jpip_err_t err;
            jpip_code_t rc;
            int f;

            memcpy(m, d, len);
            for (f = 0; f < 1 + k % 4; f++) {
                size_t at;

                st = st * 6364136223846793005ul + 1442695040888963407ul;
                /* Half the flips land in the first 2 KiB, where the headers are. */
                at = (size_t)((st >> 20) % (k % 2 && len > 2048 ? 2048 : len));
                m[at] ^= (unsigned char)(1u << ((st >> 8) & 7));
            }
            rc = index_mem(m, len, &ix, &err);
            ck_assert_msg(rc == JPIP_OK || rc == JPIP_E_FORMAT || rc == JPIP_E_LIMIT ||
                              rc == JPIP_E_UNSUPPORTED,
                          "%s flip %d: code %d", files[i], k, rc);
        }
        free(m);
    }
}
END_TEST

static Suite *index_suite(void)
{
    Suite *s = suite_create("index");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, opj_cases, 0, (int)(sizeof(cases) / sizeof(cases[0])));
    tcase_add_test(tc, header_bins_strip);
    tcase_add_test(tc, subsampled);
    tcase_add_test(tc, plm_used);
    tcase_add_test(tc, limits);
    tcase_add_test(tc, blob_corruption);
    tcase_add_test(tc, conformance);
    tcase_add_test(tc, malformed);
    tcase_add_test(tc, mutations);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(index_suite, CK_NORMAL);
}
