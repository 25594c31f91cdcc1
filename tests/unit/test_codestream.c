/* mod_jpip: unit tests for codestream parsing, geometry and packet order
 * (libcore/codestream.c, libcore/packets.c).
 *
 * Codestreams are assembled byte by byte here, so each test states exactly
 * which marker segment is valid or broken; the geometry and packet-order
 * expectations are worked out by hand from T.800 and the protocol notes.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- a tiny codestream writer ---- */

typedef struct cw_t {
    unsigned char b[4096];
    size_t n;
} cw_t;

static void u8(cw_t *w, unsigned v)
{
    ck_assert(w->n < sizeof(w->b));
    w->b[w->n++] = (unsigned char)v;
}

static void u16(cw_t *w, unsigned v)
{
    u8(w, v >> 8);
    u8(w, v & 0xFF);
}

static void u32(cw_t *w, apr_uint32_t v)
{
    u16(w, v >> 16);
    u16(w, v & 0xFFFF);
}

/* SIZ for one tile size, nc components with sub-sampling xr/yr. */
typedef struct siz_in_t {
    apr_uint32_t x, y, xo, yo, xt, yt, xto, yto;
    unsigned nc, xr, yr;
} siz_in_t;

static void put_siz(cw_t *w, const siz_in_t *s)
{
    unsigned c;

    u16(w, JPIP_MK_SIZ);
    u16(w, 38 + 3 * s->nc);
    u16(w, 0);
    u32(w, s->x);
    u32(w, s->y);
    u32(w, s->xo);
    u32(w, s->yo);
    u32(w, s->xt);
    u32(w, s->yt);
    u32(w, s->xto);
    u32(w, s->yto);
    u16(w, s->nc);
    for (c = 0; c < s->nc; c++) {
        u8(w, 7);
        u8(w, c == 0 ? 1 : s->xr);
        u8(w, c == 0 ? 1 : s->yr);
    }
}

/* COD: progression, layers, NL, code-block exps (value + 2). */
static void put_cod(cw_t *w, unsigned scod, unsigned prog, unsigned layers, unsigned nl,
                    unsigned xcb, unsigned ycb, const unsigned char *prec)
{
    unsigned r;

    u16(w, JPIP_MK_COD);
    u16(w, 12 + ((scod & 1) ? nl + 1 : 0));
    u8(w, scod);
    u8(w, prog);
    u16(w, layers);
    u8(w, 0);
    u8(w, nl);
    u8(w, xcb - 2);
    u8(w, ycb - 2);
    u8(w, 0);
    u8(w, 1);
    if (scod & 1) {
        for (r = 0; r <= nl; r++) {
            u8(w, prec[r]);
        }
    }
}

static void put_coc(cw_t *w, unsigned c, unsigned nl)
{
    u16(w, JPIP_MK_COC);
    u16(w, 9);
    u8(w, c);
    u8(w, 0);
    u8(w, nl);
    u8(w, 2);
    u8(w, 2);
    u8(w, 0);
    u8(w, 1);
}

static void put_qcd(cw_t *w)
{
    u16(w, JPIP_MK_QCD);
    u16(w, 4);
    u8(w, 0x40);
    u8(w, 0x40);
}

/* SOT + SOD with body bytes of zeros (empty packets); Psot exact. */
static void put_tpart(cw_t *w, unsigned t, unsigned tp, unsigned tn, unsigned body)
{
    unsigned i;

    u16(w, JPIP_MK_SOT);
    u16(w, 10);
    u16(w, t);
    u32(w, 14 + body);
    u8(w, tp);
    u8(w, tn);
    u16(w, JPIP_MK_SOD);
    for (i = 0; i < body; i++) {
        u8(w, 0);
    }
}

static const siz_in_t siz64 = {64, 64, 0, 0, 64, 64, 0, 0, 1, 1, 1};

/* A valid codestream of one 64x64 tile, 1 layer, NL 1: 2 empty packets. */
static void make_basic(cw_t *w, const siz_in_t *s)
{
    memset(w, 0, sizeof(*w));
    u16(w, JPIP_MK_SOC);
    put_siz(w, s);
    put_cod(w, 0, JPIP_PROG_LRCP, 1, 1, 6, 6, NULL);
    put_qcd(w);
}

static jpip_code_t parse(cw_t *w, jpip_cs_t **cs, jpip_err_t *err)
{
    jpip_src_t *src;

    jpip_src_open_mem(&src, pool, w->b, w->n, err);
    jpip_err_clear(err);
    return jpip_cs_parse(cs, pool, src, NULL, err);
}

START_TEST(basic_parse)
{
    cw_t w;
    jpip_cs_t *cs;
    jpip_err_t err;
    jpip_src_t *src;
    jpip_tile_t *tile;
    jpip_index_t *ix;
    const jpip_bin_t *b;

    make_basic(&w, &siz64);
    put_tpart(&w, 0, 0, 1, 2);
    u16(&w, JPIP_MK_EOC);
    ck_assert_msg(parse(&w, &cs, &err) == JPIP_OK, "%s", err.msg);
    ck_assert_uint_eq(cs->siz.xsiz, 64);
    ck_assert_uint_eq(cs->siz.ntx, 1);
    ck_assert_uint_eq(cs->main.layers, 1);
    ck_assert_uint_eq(cs->main.tccp[0].nl, 1);
    ck_assert_uint_eq(cs->main.tccp[0].xcb, 6);
    ck_assert_uint_eq(cs->main.tccp[0].ppx[1], 15);
    ck_assert_uint_eq(cs->ntparts, 1);
    ck_assert(cs->has_eoc);
    jpip_src_open_mem(&src, pool, w.b, w.n, &err);
    ck_assert_int_eq(jpip_cs_tile_read(cs, src, 0, pool, &tile, &err), JPIP_OK);
    ck_assert_uint_eq(tile->nbodies, 1);
    ck_assert_uint_eq(tile->bodies[0].len, 2);
    /* Two empty packets (one per resolution) index to two empty layers. */
    ck_assert_msg(jpip_index_build(&ix, pool, src, NULL, NULL, &err) == JPIP_OK, "%s", err.msg);
    ck_assert_int_eq(jpip_index_bin(ix, JPIP_CLASS_PRECINCT, 0, 1, &b, &err), JPIP_OK);
    ck_assert_uint_eq(b->len, 1);
    ck_assert_uint_eq(b->nbounds, 1);
    ck_assert(b->flags & JPIP_BIN_COMPLETE);
    /* Psot = 0: the last tile-part runs to EOC. */
    w.b[w.n - 2 - 2 - 2 - 12 + 6] = 0;
    w.b[w.n - 2 - 2 - 2 - 12 + 7] = 0;
    w.b[w.n - 2 - 2 - 2 - 12 + 8] = 0;
    w.b[w.n - 2 - 2 - 2 - 12 + 9] = 0;
    ck_assert_msg(parse(&w, &cs, &err) == JPIP_OK, "%s", err.msg);
    ck_assert_uint_eq(cs->tparts[0].end, w.n - 2);
}
END_TEST

/* Each broken variant fails with JPIP_E_FORMAT and a message. */
START_TEST(siz_errors)
{
    static const siz_in_t bad[] = {
        {64, 64, 64, 0, 64, 64, 0, 0, 1, 1, 1},      /* Xsiz <= XOsiz */
        {64, 0, 0, 0, 64, 64, 0, 0, 1, 1, 1},        /* Ysiz 0 */
        {64, 64, 0, 0, 0, 64, 0, 0, 1, 1, 1},        /* XTsiz 0 */
        {64, 64, 4, 4, 64, 64, 5, 0, 1, 1, 1},       /* XTOsiz > XOsiz */
        {64, 64, 40, 0, 8, 8, 0, 0, 1, 1, 1},        /* first tile misses the image */
        {64, 64, 0, 0, 64, 64, 0, 0, 0, 1, 1},       /* Csiz 0 */
        {64, 64, 0, 0, 64, 64, 0, 0, 2, 0, 1},       /* XRsiz 0 */
        {100000, 100000, 0, 0, 1, 1, 0, 0, 1, 1, 1}, /* 10^10 tiles */
    };
    unsigned i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cw_t w;
        jpip_cs_t *cs;
        jpip_err_t err;

        make_basic(&w, &bad[i]);
        put_tpart(&w, 0, 0, 1, 2);
        u16(&w, JPIP_MK_EOC);
        ck_assert_msg(parse(&w, &cs, &err) == JPIP_E_FORMAT, "case %u", i);
        ck_assert_msg(strstr(err.msg, "SIZ") != NULL, "case %u: %s", i, err.msg);
    }
}
END_TEST

START_TEST(limit_tile_comps)
{
    cw_t w;
    jpip_cs_t *cs;
    jpip_err_t err;
    jpip_src_t *src;
    jpip_cs_limits_t lim;
    siz_in_t s = {64, 64, 0, 0, 8, 8, 0, 0, 3, 1, 1};

    make_basic(&w, &s);
    put_tpart(&w, 0, 0, 1, 2);
    jpip_src_open_mem(&src, pool, w.b, w.n, &err);
    memset(&lim, 0, sizeof(lim));
    lim.max_tile_comps = 100;
    ck_assert_int_eq(jpip_cs_parse(&cs, pool, src, &lim, &err), JPIP_E_LIMIT);
    ck_assert(err.msg[0] != '\0');
}
END_TEST

/* Header and tile-part structure errors. */
START_TEST(structure_errors)
{
    cw_t w;
    jpip_cs_t *cs;
    jpip_err_t err;
    unsigned char prec[2] = {0x00, 0x00};

    /* no SOC */
    make_basic(&w, &siz64);
    w.b[1] = 0x4E;
    ck_assert_int_eq(parse(&w, &cs, &err), JPIP_E_FORMAT);
    /* missing COD */
    memset(&w, 0, sizeof(w));
    u16(&w, JPIP_MK_SOC);
    put_siz(&w, &siz64);
    put_qcd(&w);
    put_tpart(&w, 0, 0, 1, 2);
    ck_assert_int_eq(parse(&w, &cs, &err), JPIP_E_FORMAT);
    ck_assert(strstr(err.msg, "COD") != NULL);
    /* NL 33 */
    memset(&w, 0, sizeof(w));
    u16(&w, JPIP_MK_SOC);
    put_siz(&w, &siz64);
    put_cod(&w, 0, 0, 1, 33, 6, 6, NULL);
    put_qcd(&w);
    put_tpart(&w, 0, 0, 1, 2);
    ck_assert_int_eq(parse(&w, &cs, &err), JPIP_E_FORMAT);
    /* code-blocks 2^7 x 2^7 (sum of exponents above 12) */
    memset(&w, 0, sizeof(w));
    u16(&w, JPIP_MK_SOC);
    put_siz(&w, &siz64);
    put_cod(&w, 0, 0, 1, 1, 7, 7, NULL);
    put_qcd(&w);
    put_tpart(&w, 0, 0, 1, 2);
    ck_assert_int_eq(parse(&w, &cs, &err), JPIP_E_FORMAT);
    /* precinct exponent 0 above resolution 0 */
    memset(&w, 0, sizeof(w));
    u16(&w, JPIP_MK_SOC);
    put_siz(&w, &siz64);
    put_cod(&w, 1, 0, 1, 1, 6, 6, prec);
    put_qcd(&w);
    put_tpart(&w, 0, 0, 1, 2);
    ck_assert_int_eq(parse(&w, &cs, &err), JPIP_E_FORMAT);
    /* Psot below 14 */
    make_basic(&w, &siz64);
    put_tpart(&w, 0, 0, 1, 2);
    w.b[w.n - 2 - 2 - 12 + 9] = 13;
    w.b[w.n - 2 - 2 - 12 + 8] = 0;
    ck_assert_int_eq(parse(&w, &cs, &err), JPIP_E_FORMAT);
    ck_assert(strstr(err.msg, "Psot") != NULL);
    /* the data ending inside a tile-part header (before SOD is whole) */
    make_basic(&w, &siz64);
    put_tpart(&w, 0, 0, 1, 2);
    w.n -= 3;
    ck_assert_int_eq(parse(&w, &cs, &err), JPIP_E_FORMAT);
    ck_assert_msg(strstr(err.msg, "ends inside the header") != NULL, "%s", err.msg);
    /* ... or inside an SOT */
    make_basic(&w, &siz64);
    put_tpart(&w, 0, 0, 1, 2);
    w.n -= 10;
    ck_assert_int_eq(parse(&w, &cs, &err), JPIP_E_FORMAT);
    ck_assert_msg(strstr(err.msg, "cut short") != NULL, "%s", err.msg);
    /* tile index out of range */
    make_basic(&w, &siz64);
    put_tpart(&w, 1, 0, 1, 2);
    ck_assert_int_eq(parse(&w, &cs, &err), JPIP_E_FORMAT);
    /* TPsot out of order */
    make_basic(&w, &siz64);
    put_tpart(&w, 0, 1, 0, 2);
    ck_assert_int_eq(parse(&w, &cs, &err), JPIP_E_FORMAT);
    /* TNsot says 2, only one present, and no EOC: the tile never completes */
    make_basic(&w, &siz64);
    put_tpart(&w, 0, 0, 2, 2);
    ck_assert_int_eq(parse(&w, &cs, &err), JPIP_E_FORMAT);
    ck_assert_msg(strstr(err.msg, "before tile 0 is complete") != NULL, "%s", err.msg);
    /* no tile-part at all */
    make_basic(&w, &siz64);
    u16(&w, JPIP_MK_EOC);
    ck_assert_int_eq(parse(&w, &cs, &err), JPIP_E_FORMAT);
    /* garbage after the tile-part */
    make_basic(&w, &siz64);
    put_tpart(&w, 0, 0, 1, 2);
    u16(&w, 0x1234);
    ck_assert_int_eq(parse(&w, &cs, &err), JPIP_E_FORMAT);
    /* marker segment length running past the header */
    make_basic(&w, &siz64);
    w.b[w.n - 4] = 0x40; /* QCD length high byte */
    put_tpart(&w, 0, 0, 1, 2);
    ck_assert_int_eq(parse(&w, &cs, &err), JPIP_E_FORMAT);
}
END_TEST

/* Two 32x64 tiles (1 layer, NL 1: 2 packets each). */
static const siz_in_t siz2 = {64, 64, 0, 0, 32, 64, 0, 0, 1, 1, 1};

static jpip_code_t parse2(cw_t *w, jpip_cs_t **cs, jpip_err_t *err, int eoc)
{
    if (eoc) {
        u16(w, JPIP_MK_EOC);
    }
    return parse(w, cs, err);
}

/* Which tile-parts count, as openjpeg 2.5 reads them: absent tiles, TNsot
 * 0 or too large, TNsot one short, TPsot out of sequence, data ending
 * early with and without a tile left waiting. */
START_TEST(tile_part_rules)
{
    cw_t w;
    jpip_cs_t *cs;
    jpip_err_t err;
    jpip_src_t *src;
    jpip_tile_t *tile;

    /* tile 1 has no tile-part: absent */
    make_basic(&w, &siz2);
    put_tpart(&w, 0, 0, 1, 2);
    ck_assert_msg(parse2(&w, &cs, &err, 1) == JPIP_OK, "%s", err.msg);
    ck_assert_uint_eq(cs->tile_ntp[1], 0);
    ck_assert_uint_eq(cs->tile_first[1], JPIP_NONE);
    jpip_src_open_mem(&src, pool, w.b, w.n, &err);
    ck_assert_int_eq(jpip_cs_tile_read(cs, src, 1, pool, &tile, &err), JPIP_OK);
    ck_assert_uint_eq(tile->nbodies, 0);
    /* TNsot 0, and TNsot larger than the tile-parts present */
    make_basic(&w, &siz2);
    put_tpart(&w, 0, 0, 0, 1);
    put_tpart(&w, 1, 0, 5, 1);
    put_tpart(&w, 0, 1, 0, 1);
    put_tpart(&w, 1, 1, 9, 1);
    ck_assert_msg(parse2(&w, &cs, &err, 1) == JPIP_OK, "%s", err.msg);
    ck_assert_uint_eq(cs->tile_ntp[0], 2);
    ck_assert_uint_eq(cs->tile_ntp[1], 2);
    ck_assert_uint_eq(cs->ndropped, 0);
    /* a tile-part beyond the TNsot in force */
    make_basic(&w, &siz2);
    put_tpart(&w, 0, 0, 1, 1);
    put_tpart(&w, 0, 1, 2, 1);
    ck_assert_int_eq(parse2(&w, &cs, &err, 1), JPIP_E_FORMAT);
    ck_assert_msg(strstr(err.msg, "TNsot") != NULL, "%s", err.msg);
    /* TNsot one short (TPsot == TNsot on the next one): accepted */
    make_basic(&w, &siz2);
    put_tpart(&w, 0, 0, 2, 1);
    put_tpart(&w, 0, 1, 2, 1);
    put_tpart(&w, 1, 0, 2, 1);
    put_tpart(&w, 0, 2, 2, 1);
    put_tpart(&w, 1, 1, 2, 1);
    put_tpart(&w, 1, 2, 2, 1);
    ck_assert_msg(parse2(&w, &cs, &err, 1) == JPIP_OK, "%s", err.msg);
    ck_assert_uint_eq(cs->tile_ntp[0], 3);
    ck_assert_uint_eq(cs->tile_ntp[1], 3);
    /* ... also from TNsot 1 */
    make_basic(&w, &siz2);
    put_tpart(&w, 0, 0, 1, 1);
    put_tpart(&w, 0, 1, 1, 1);
    put_tpart(&w, 1, 0, 1, 1);
    put_tpart(&w, 1, 1, 1, 1);
    ck_assert_msg(parse2(&w, &cs, &err, 1) == JPIP_OK, "%s", err.msg);
    ck_assert_uint_eq(cs->tile_ntp[1], 2);
    /* ... but not without that sign */
    make_basic(&w, &siz2);
    put_tpart(&w, 0, 0, 2, 1);
    put_tpart(&w, 0, 1, 2, 1);
    put_tpart(&w, 0, 2, 3, 1);
    ck_assert_int_eq(parse2(&w, &cs, &err, 1), JPIP_E_FORMAT);
    /* TPsot with a gap, and repeated */
    make_basic(&w, &siz2);
    put_tpart(&w, 0, 0, 0, 1);
    put_tpart(&w, 0, 2, 0, 1);
    ck_assert_int_eq(parse2(&w, &cs, &err, 1), JPIP_E_FORMAT);
    ck_assert_msg(strstr(err.msg, "TPsot 2, expected 1") != NULL, "%s", err.msg);
    make_basic(&w, &siz2);
    put_tpart(&w, 0, 0, 0, 1);
    put_tpart(&w, 0, 0, 0, 1);
    ck_assert_int_eq(parse2(&w, &cs, &err, 1), JPIP_E_FORMAT);
    /* no EOC after a complete tile, then also a stray byte */
    make_basic(&w, &siz2);
    put_tpart(&w, 0, 0, 1, 2);
    put_tpart(&w, 1, 0, 1, 2);
    ck_assert_msg(parse2(&w, &cs, &err, 0) == JPIP_OK, "%s", err.msg);
    ck_assert(!cs->has_eoc && !cs->truncated);
    u8(&w, 0xFF);
    ck_assert_msg(parse2(&w, &cs, &err, 0) == JPIP_OK, "%s", err.msg);
    /* cut inside the last tile-part's data: truncated, kept */
    w.n -= 2;
    ck_assert_msg(parse2(&w, &cs, &err, 0) == JPIP_OK, "%s", err.msg);
    ck_assert(cs->truncated);
    ck_assert_uint_eq(cs->tparts[1].end, w.n);
    ck_assert_uint_eq(cs->tparts[1].data, 2);
    /* no EOC while a tile waits for tile-parts (TNsot 0): refused, unless
     * a lone tile-part of TNsot 0 reads as the end (then the tiles from
     * it on are decoded, the others dropped) */
    make_basic(&w, &siz2);
    put_tpart(&w, 0, 0, 0, 1);
    put_tpart(&w, 0, 1, 0, 1);
    put_tpart(&w, 1, 0, 2, 1);
    ck_assert_int_eq(parse2(&w, &cs, &err, 0), JPIP_E_FORMAT);
    make_basic(&w, &siz2);
    put_tpart(&w, 0, 0, 0, 1);
    put_tpart(&w, 0, 1, 0, 1);
    put_tpart(&w, 1, 0, 0, 1);
    ck_assert_msg(parse2(&w, &cs, &err, 0) == JPIP_OK, "%s", err.msg);
    ck_assert_uint_eq(cs->ndropped, 1);
    ck_assert_uint_eq(cs->tile_first[0], JPIP_NONE);
    ck_assert_uint_eq(cs->tile_ntp[1], 1);
    /* a tile completed by TNsot whose tile-parts hold no data at all */
    make_basic(&w, &siz2);
    put_tpart(&w, 0, 0, 1, 0);
    put_tpart(&w, 1, 0, 1, 2);
    ck_assert_int_eq(parse2(&w, &cs, &err, 1), JPIP_E_FORMAT);
    ck_assert_msg(strstr(err.msg, "no packet data") != NULL, "%s", err.msg);
    /* ... and one left to EOC (TNsot 0) is dropped instead */
    make_basic(&w, &siz2);
    put_tpart(&w, 0, 0, 0, 0);
    put_tpart(&w, 1, 0, 1, 2);
    ck_assert_msg(parse2(&w, &cs, &err, 1) == JPIP_OK, "%s", err.msg);
    ck_assert_uint_eq(cs->ndropped, 1);
}
END_TEST

/* Tile-parts of two tiles interleaved; TNsot 0 allowed; COD/COC
 * precedence: tile COC > tile COD > main COC > main COD. */
START_TEST(tiles_and_precedence)
{
    cw_t w;
    jpip_cs_t *cs;
    jpip_err_t err;
    jpip_src_t *src;
    jpip_tile_t *tile;
    siz_in_t s = {64, 32, 0, 0, 32, 32, 0, 0, 3, 1, 1};
    size_t sot;

    make_basic(&w, &s);
    put_coc(&w, 1, 0);
    /* tile 1 part 0: COD NL=3 and COC(c2) NL=2 */
    sot = w.n;
    u16(&w, JPIP_MK_SOT);
    u16(&w, 10);
    u16(&w, 1);
    u32(&w, 0);
    u8(&w, 0);
    u8(&w, 0);
    put_cod(&w, 0, JPIP_PROG_RLCP, 2, 3, 4, 4, NULL);
    put_coc(&w, 2, 2);
    u16(&w, JPIP_MK_SOD);
    u8(&w, 0);
    w.b[sot + 8] = (unsigned char)((w.n - sot) >> 8);
    w.b[sot + 9] = (unsigned char)((w.n - sot) & 0xFF);
    put_tpart(&w, 0, 0, 0, 1);
    put_tpart(&w, 1, 1, 0, 1);
    u16(&w, JPIP_MK_EOC);
    ck_assert_msg(parse(&w, &cs, &err) == JPIP_OK, "%s", err.msg);
    ck_assert_uint_eq(cs->ntparts, 3);
    ck_assert_uint_eq(cs->tile_ntp[1], 2);
    ck_assert_uint_eq(cs->tile_first[0], 1);
    ck_assert_uint_eq(cs->tparts[0].next, 2);
    ck_assert_uint_eq(cs->main.tccp[0].nl, 1);
    ck_assert_uint_eq(cs->main.tccp[1].nl, 0);
    jpip_src_open_mem(&src, pool, w.b, w.n, &err);
    ck_assert_int_eq(jpip_cs_tile_read(cs, src, 1, pool, &tile, &err), JPIP_OK);
    ck_assert_uint_eq(tile->tcp.prog, JPIP_PROG_RLCP);
    ck_assert_uint_eq(tile->tcp.layers, 2);
    ck_assert_uint_eq(tile->tcp.tccp[0].nl, 3);
    ck_assert_uint_eq(tile->tcp.tccp[1].nl, 3); /* tile COD beats main COC */
    ck_assert_uint_eq(tile->tcp.tccp[2].nl, 2); /* tile COC beats tile COD */
    ck_assert_uint_eq(tile->nsegs, 2);
    ck_assert_uint_eq(tile->nbodies, 2);
    ck_assert_int_eq(jpip_cs_tile_read(cs, src, 0, pool, &tile, &err), JPIP_OK);
    ck_assert_uint_eq(tile->tcp.tccp[1].nl, 0);
    ck_assert_uint_eq(tile->nsegs, 0);
}
END_TEST

/* CAP with Part 15 bit: HT signalled, Ccap15 kept. */
START_TEST(cap_ht)
{
    cw_t w;
    jpip_cs_t *cs;
    jpip_err_t err;

    memset(&w, 0, sizeof(w));
    u16(&w, JPIP_MK_SOC);
    put_siz(&w, &siz64);
    u16(&w, JPIP_MK_CAP);
    u16(&w, 8);
    u32(&w, JPIP_PCAP_HT);
    u16(&w, 0x0003);
    put_cod(&w, 0, 0, 1, 1, 6, 6, NULL);
    put_qcd(&w);
    put_tpart(&w, 0, 0, 1, 2);
    ck_assert_msg(parse(&w, &cs, &err) == JPIP_OK, "%s", err.msg);
    ck_assert(cs->ht);
    ck_assert_uint_eq(cs->ccap15, 3);
    /* CAP length disagreeing with Pcap */
    w.b[2 + 43 + 3] = 10;
    ck_assert_int_eq(parse(&w, &cs, &err), JPIP_E_FORMAT);
}
END_TEST

/* ---- geometry ---- */

static jpip_tccp_t tccp_make(unsigned nl, unsigned xcb, unsigned ycb, unsigned pp)
{
    jpip_tccp_t t;
    unsigned r;

    memset(&t, 0, sizeof(t));
    t.nl = (apr_byte_t)nl;
    t.xcb = (apr_byte_t)xcb;
    t.ycb = (apr_byte_t)ycb;
    for (r = 0; r <= nl; r++) {
        t.ppx[r] = t.ppy[r] = (apr_byte_t)pp;
    }
    return t;
}

/* Protocol notes B.7: 2048x2048, 2x2 tiles, Csiz 3, NL 3, precincts 128. */
START_TEST(worked_example)
{
    jpip_siz_t siz = {0, 2048, 2048, 0, 0, 1024, 1024, 0, 0, 3, 2, 2};
    jpip_comp_t comps[3] = {{8, 0, 1, 1}, {8, 0, 1, 1}, {8, 0, 1, 1}};
    jpip_tccp_t tc[3];
    jpip_tcp_t tcp;
    jpip_tlayout_t *lay;
    jpip_err_t err;
    jpip_pkt_t k;
    apr_uint32_t t;
    unsigned c;
    apr_uint64_t s;

    tc[0] = tc[1] = tc[2] = tccp_make(3, 6, 6, 7);
    memset(&tcp, 0, sizeof(tcp));
    tcp.layers = 1;
    tcp.tccp = tc;
    ck_assert_int_eq(jpip_tlayout_build(&lay, pool, &siz, comps, 0, &tcp, 0, &err), JPIP_OK);
    ck_assert_uint_eq(lay->res[2][0].grid.npw * lay->res[2][0].grid.nph, 1);
    ck_assert_uint_eq(lay->res[2][1].grid.npw, 2);
    ck_assert_uint_eq(lay->res[2][2].grid.npw, 4);
    ck_assert_uint_eq(lay->res[2][2].s0, 5);
    k.comp = 2;
    k.res = 1;
    k.prec = 1; /* px = 1, py = 0 */
    k.layer = 0;
    ck_assert_uint_eq(jpip_pkt_seq_s(lay, &k), 2);
    ck_assert_uint_eq(jpip_prec_bin_id(0, 2, 2, 3, 4), 32);
    jpip_prec_bin_split(32, 3, 4, &t, &c, &s);
    ck_assert_uint_eq(t, 0);
    ck_assert_uint_eq(c, 2);
    ck_assert_uint_eq(s, 2);
}
END_TEST

/* The precinct grid is anchored at 0, not at the tile origin. */
START_TEST(grid_anchor)
{
    jpip_rect_t res = {5, 3, 300, 130};
    jpip_pgrid_t g;
    jpip_rect_t tile, tcr, r;
    jpip_siz_t siz = {0, 1000, 900, 7, 9, 256, 256, 3, 5, 1, 4, 4};

    jpip_geom_pgrid(&res, 7, 6, &g);
    ck_assert_uint_eq(g.px0, 0);
    ck_assert_uint_eq(g.npw, 3);
    ck_assert_uint_eq(g.py0, 0);
    ck_assert_uint_eq(g.nph, 3);
    res.x0 = 130;
    jpip_geom_pgrid(&res, 7, 6, &g);
    ck_assert_uint_eq(g.px0, 1);
    ck_assert_uint_eq(g.npw, 2);
    res.x1 = res.x0;
    jpip_geom_pgrid(&res, 7, 6, &g);
    ck_assert_uint_eq(g.npw * g.nph, 0);
    /* Tile 5 (p=1, q=1): [259, 515) x [261, 517); sub-sampled by 3 x 2. */
    jpip_geom_tile(&siz, 5, &tile);
    ck_assert_uint_eq(tile.x0, 259);
    ck_assert_uint_eq(tile.y1, 517);
    jpip_geom_tile(&siz, 0, &tile);
    ck_assert_uint_eq(tile.x0, 7);
    ck_assert_uint_eq(tile.y0, 9);
    jpip_geom_tile(&siz, 15, &tile);
    ck_assert_uint_eq(tile.x1, 1000);
    ck_assert_uint_eq(tile.y1, 900);
    jpip_geom_tile(&siz, 5, &tile);
    jpip_geom_tilecomp(&tile, 3, 2, &tcr);
    ck_assert_uint_eq(tcr.x0, 87);  /* ceil(259/3) */
    ck_assert_uint_eq(tcr.x1, 172); /* ceil(515/3) */
    jpip_geom_res(&tcr, 3, 1, &r);
    ck_assert_uint_eq(r.x0, 22); /* ceil(87/4) */
    ck_assert_uint_eq(r.x1, 43);
}
END_TEST

START_TEST(codeblocks)
{
    jpip_rect_t tc = {0, 0, 64, 64};
    jpip_tccp_t t = tccp_make(1, 4, 4, 15);
    jpip_t2_geom_t g;
    jpip_err_t err;

    ck_assert_int_eq(jpip_geom_prec_cblks(&tc, &t, 0, 0, 0, &g, &err), JPIP_OK);
    ck_assert_uint_eq(g.nbands, 1);
    ck_assert_uint_eq(g.ncbx[0], 2);
    ck_assert_uint_eq(g.ncby[0], 2);
    ck_assert_int_eq(jpip_geom_prec_cblks(&tc, &t, 1, 0, 0, &g, &err), JPIP_OK);
    ck_assert_uint_eq(g.nbands, 3);
    ck_assert_uint_eq(g.ncbx[2], 2);
    /* Precincts of 32 at r=1: 16 in the bands, code-blocks min(16, 16). */
    t.ppx[1] = t.ppy[1] = 5;
    ck_assert_int_eq(jpip_geom_prec_cblks(&tc, &t, 1, 1, 1, &g, &err), JPIP_OK);
    ck_assert_uint_eq(g.ncbx[0], 1);
    ck_assert_uint_eq(g.ncby[1], 1);
    /* Precincts of 8 at r=1: bands 4, code-blocks shrink to 4. */
    t.ppx[1] = t.ppy[1] = 3;
    ck_assert_int_eq(jpip_geom_prec_cblks(&tc, &t, 1, 0, 0, &g, &err), JPIP_OK);
    ck_assert_uint_eq(g.ncbx[0], 1);
    /* Odd origin: tile-component [1, 6) at NL 1, r 1: HL x [0, 3), LH x [1, 3). */
    tc.x0 = 1;
    tc.x1 = 6;
    tc.y0 = 0;
    tc.y1 = 2;
    t = tccp_make(1, 2, 2, 15);
    ck_assert_int_eq(jpip_geom_prec_cblks(&tc, &t, 1, 0, 0, &g, &err), JPIP_OK);
    ck_assert_uint_eq(g.ncbx[0], 1);
    ck_assert_uint_eq(g.ncbx[1], 1);
    ck_assert_uint_eq(g.ncby[1], 1);
    /* A single-row tile-component: the LH and HH bands are empty. */
    tc.y0 = 0;
    tc.y1 = 1;
    ck_assert_int_eq(jpip_geom_prec_cblks(&tc, &t, 1, 0, 0, &g, &err), JPIP_OK);
    ck_assert_uint_eq(g.ncby[1], 0);
    ck_assert_uint_eq(g.ncbx[1], 0);
    ck_assert_uint_eq(g.ncby[0], 1);
}
END_TEST

/* ---- packet order ---- */

static jpip_pkt_t *order(const jpip_siz_t *siz, const jpip_comp_t *comps, jpip_tcp_t *tcp,
                         apr_size_t *n)
{
    jpip_tlayout_t *lay;
    jpip_pkt_t *v;
    jpip_err_t err;

    ck_assert_int_eq(jpip_tlayout_build(&lay, pool, siz, comps, 0, tcp, 0, &err), JPIP_OK);
    ck_assert_int_eq(jpip_packets_list(lay, tcp, pool, 0, &v, n, &err), JPIP_OK);
    return v;
}

static void expect(const jpip_pkt_t *v, apr_size_t i, unsigned l, unsigned r, unsigned c,
                   unsigned p)
{
    ck_assert_msg(v[i].layer == l && v[i].res == r && v[i].comp == c && v[i].prec == p,
                  "packet %u is l%u r%u c%u p%u, expected l%u r%u c%u p%u", (unsigned)i,
                  (unsigned)v[i].layer, (unsigned)v[i].res, (unsigned)v[i].comp,
                  (unsigned)v[i].prec, l, r, c, p);
}

START_TEST(order_layer_major)
{
    jpip_siz_t siz = {0, 64, 64, 0, 0, 64, 64, 0, 0, 2, 1, 1};
    jpip_comp_t comps[2] = {{8, 0, 1, 1}, {8, 0, 1, 1}};
    jpip_tccp_t tc[2];
    jpip_tcp_t tcp;
    jpip_pkt_t *v;
    apr_size_t n;

    tc[0] = tc[1] = tccp_make(1, 6, 6, 15);
    memset(&tcp, 0, sizeof(tcp));
    tcp.layers = 2;
    tcp.tccp = tc;
    tcp.prog = JPIP_PROG_LRCP;
    v = order(&siz, comps, &tcp, &n);
    ck_assert_uint_eq(n, 8);
    expect(v, 0, 0, 0, 0, 0);
    expect(v, 1, 0, 0, 1, 0);
    expect(v, 2, 0, 1, 0, 0);
    expect(v, 4, 1, 0, 0, 0);
    tcp.prog = JPIP_PROG_RLCP;
    v = order(&siz, comps, &tcp, &n);
    expect(v, 0, 0, 0, 0, 0);
    expect(v, 1, 0, 0, 1, 0);
    expect(v, 2, 1, 0, 0, 0);
    expect(v, 4, 0, 1, 0, 0);
}
END_TEST

/* PCRL on one component, 2x2 precincts at both resolutions: positions
 * (0,0), (0,32), (32,0), (32,32), each r0 then r1. */
START_TEST(order_position)
{
    jpip_siz_t siz = {0, 64, 64, 0, 0, 64, 64, 0, 0, 1, 1, 1};
    jpip_comp_t comps[2] = {{8, 0, 1, 1}, {8, 0, 2, 2}};
    jpip_tccp_t tc[2];
    jpip_tcp_t tcp;
    jpip_pkt_t *v;
    apr_size_t n, i;

    tc[0] = tccp_make(1, 2, 2, 4);
    tc[0].ppx[1] = tc[0].ppy[1] = 5;
    memset(&tcp, 0, sizeof(tcp));
    tcp.layers = 1;
    tcp.tccp = tc;
    tcp.prog = JPIP_PROG_PCRL;
    v = order(&siz, comps, &tcp, &n);
    ck_assert_uint_eq(n, 8);
    for (i = 0; i < 4; i++) {
        expect(v, 2 * i, 0, 0, 0, (unsigned)i);
        expect(v, 2 * i + 1, 0, 1, 0, (unsigned)i);
    }
    /* RPCL: all of r0 in raster order, then r1. */
    tcp.prog = JPIP_PROG_RPCL;
    v = order(&siz, comps, &tcp, &n);
    for (i = 0; i < 4; i++) {
        expect(v, i, 0, 0, 0, (unsigned)i);
        expect(v, 4 + i, 0, 1, 0, (unsigned)i);
    }
    /* Two components, the second sub-sampled 2x2 with a single precinct per
     * resolution (precinct 2^5 covers its 32x32 samples): at (0,0) c0 r0,
     * c1 r0, and r1 of c1 follows at (0,0) as well in PCRL. */
    siz.csiz = 2;
    tc[1] = tccp_make(1, 2, 2, 5);
    tcp.prog = JPIP_PROG_PCRL;
    v = order(&siz, comps, &tcp, &n);
    ck_assert_uint_eq(n, 10);
    expect(v, 0, 0, 0, 0, 0);
    expect(v, 1, 0, 1, 0, 0);
    expect(v, 2, 0, 0, 1, 0);
    expect(v, 3, 0, 1, 1, 0);
    expect(v, 4, 0, 0, 0, 1);
    /* CPRL: component 0 entirely first. */
    tcp.prog = JPIP_PROG_CPRL;
    v = order(&siz, comps, &tcp, &n);
    expect(v, 7, 0, 1, 0, 3);
    expect(v, 8, 0, 0, 1, 0);
}
END_TEST

/* POC: volumes in order, each packet once, layers of a precinct ascending. */
START_TEST(order_poc)
{
    jpip_siz_t siz = {0, 64, 64, 0, 0, 64, 64, 0, 0, 3, 1, 1};
    jpip_comp_t comps[3] = {{8, 0, 1, 1}, {8, 0, 1, 1}, {8, 0, 1, 1}};
    jpip_tccp_t tc[3];
    jpip_tcp_t tcp;
    jpip_poc_t poc[3] = {{0, 0, 1, 2, 2, JPIP_PROG_RPCL},
                         {1, 1, 3, 3, 3, JPIP_PROG_CPRL},
                         {0, 0, 3, 33, 3, JPIP_PROG_LRCP}};
    jpip_pkt_t *v;
    apr_size_t n, i, j;

    tc[0] = tc[1] = tc[2] = tccp_make(2, 3, 3, 5);
    memset(&tcp, 0, sizeof(tcp));
    tcp.layers = 3;
    tcp.tccp = tc;
    tcp.poc = poc;
    tcp.npoc = 3;
    v = order(&siz, comps, &tcp, &n);
    /* 3 comps x (1 + 1 + 4 precincts) x 3 layers */
    ck_assert_uint_eq(n, 3 * 6 * 3);
    /* First volume: r0..1, c0..1, layer 0 only; RPCL. */
    expect(v, 0, 0, 0, 0, 0);
    expect(v, 1, 0, 0, 1, 0);
    expect(v, 2, 0, 1, 0, 0);
    expect(v, 3, 0, 1, 1, 0);
    /* Second volume starts at c1 r1 layers 0..2: layer 0 already sent. */
    expect(v, 4, 1, 1, 1, 0);
    expect(v, 5, 2, 1, 1, 0);
    for (i = 0; i < n; i++) {
        for (j = i + 1; j < n; j++) {
            ck_assert(!(v[i].layer == v[j].layer && v[i].res == v[j].res &&
                        v[i].comp == v[j].comp && v[i].prec == v[j].prec));
            if (v[i].res == v[j].res && v[i].comp == v[j].comp && v[i].prec == v[j].prec) {
                ck_assert_uint_lt(v[i].layer, v[j].layer);
            }
        }
    }
}
END_TEST

/* PPM and PPT in the conformance streams: packed headers per tile-part. */
START_TEST(packed_headers)
{
    const char *dir = tu_testdata("conformance");
    static const char *names[] = {"p1_03.j2k", "p1_05.j2k", "p1_02.j2k", "p1_06.j2k"};
    unsigned i;

    if (dir == NULL) {
        tu_skip("packed_headers", "test data absent");
        return;
    }
    for (i = 0; i < 4; i++) {
        size_t len;
        char *path = apr_pstrcat(pool, dir, "/", names[i], NULL);
        unsigned char *d = tu_read_file(pool, path, &len);
        jpip_src_t *src;
        jpip_cs_t *cs;
        jpip_tile_t *tile;
        jpip_err_t err;

        ck_assert_ptr_nonnull(d);
        jpip_src_open_mem(&src, pool, d, len, &err);
        ck_assert_msg(jpip_cs_parse(&cs, pool, src, NULL, &err) == JPIP_OK, "%s", err.msg);
        ck_assert_int_eq(jpip_cs_tile_read(cs, src, 0, pool, &tile, &err), JPIP_OK);
        if (i < 2) {
            ck_assert_ptr_nonnull(cs->ppm_first);
            ck_assert_uint_gt(tile->nppm, 0);
        } else {
            ck_assert_ptr_null(cs->ppm_first);
            ck_assert_uint_gt(tile->nppt, 0);
        }
    }
}
END_TEST

static Suite *codestream_suite(void)
{
    Suite *s = suite_create("codestream");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, basic_parse);
    tcase_add_test(tc, siz_errors);
    tcase_add_test(tc, limit_tile_comps);
    tcase_add_test(tc, structure_errors);
    tcase_add_test(tc, tile_part_rules);
    tcase_add_test(tc, tiles_and_precedence);
    tcase_add_test(tc, cap_ht);
    tcase_add_test(tc, worked_example);
    tcase_add_test(tc, grid_anchor);
    tcase_add_test(tc, codeblocks);
    tcase_add_test(tc, order_layer_major);
    tcase_add_test(tc, order_position);
    tcase_add_test(tc, order_poc);
    tcase_add_test(tc, packed_headers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(codestream_suite, CK_NORMAL);
}
