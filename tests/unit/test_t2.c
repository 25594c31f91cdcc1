/* mod_jpip: unit tests for packet-header decoding (libcore/t2.c).
 *
 * Three kinds of evidence: headers written bit by bit by hand, random
 * headers produced by an independent little encoder in this file, and
 * real codestreams from opj_compress whose PLT marker segments give every
 * packet's length.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_pools.h>

#include "t2.h"
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

/* ------------------------------------------------ bit writer (encoder) */

typedef struct bw_t {
    unsigned char *buf;
    size_t len, cap;
    unsigned cur, nb, room; /* room: 8, or 7 after 0xFF */
} bw_t;

static void bw_init(bw_t *w)
{
    memset(w, 0, sizeof(*w));
    w->cap = 64;
    w->buf = malloc(w->cap);
    w->room = 8;
}

static void bw_byte(bw_t *w, unsigned b)
{
    if (w->len == w->cap) {
        w->cap *= 2;
        w->buf = realloc(w->buf, w->cap);
    }
    w->buf[w->len++] = (unsigned char)b;
}

static void bw_bit(bw_t *w, unsigned bit)
{
    w->cur = (w->cur << 1) | (bit & 1);
    if (++w->nb == w->room) {
        bw_byte(w, w->cur);
        w->room = w->cur == 0xFF ? 7 : 8;
        w->cur = 0;
        w->nb = 0;
    }
}

static void bw_bits(bw_t *w, unsigned long v, unsigned n)
{
    while (n-- > 0) {
        bw_bit(w, (unsigned)(v >> n) & 1);
    }
}

/* Pad to the byte boundary; a trailing 0xFF gets a zero byte after it. */
static void bw_flush(bw_t *w)
{
    if (w->nb > 0) {
        bw_byte(w, w->cur << (w->room - w->nb));
        w->room = w->buf[w->len - 1] == 0xFF ? 7 : 8;
        w->cur = 0;
        w->nb = 0;
    }
    if (w->len > 0 && w->room == 7) {
        bw_byte(w, 0);
        w->room = 8;
    }
}

/* Decode one header from bytes (split into nsplit pieces of a memory
 * source, to cross piece boundaries). */
static jpip_code_t decode(jpip_t2_prec_t *prec, unsigned layer, const unsigned char *bytes,
                          size_t len, int eph, size_t nsplit, jpip_t2_packet_t *pkt,
                          jpip_err_t *err)
{
    jpip_src_t *src;
    jpip_piece_t pieces[8];
    jpip_t2_stream_t s;
    size_t i, off = 0;

    ck_assert(nsplit >= 1 && nsplit <= 8);
    ck_assert_int_eq(jpip_src_open_mem(&src, pool, bytes, len, err), JPIP_OK);
    for (i = 0; i < nsplit; i++) {
        size_t end = (i + 1 == nsplit) ? len : len * (i + 1) / nsplit;
        pieces[i].off = off;
        pieces[i].len = end - off;
        off = end;
    }
    jpip_t2_stream_init(&s, src, pieces, nsplit);
    return jpip_t2_read_header(prec, layer, &s, eph, pkt, err);
}

static jpip_t2_prec_t *prec_1band(unsigned w, unsigned h, unsigned sty)
{
    jpip_t2_geom_t g;
    jpip_t2_prec_t *p = NULL;
    jpip_err_t err;

    memset(&g, 0, sizeof(g));
    g.nbands = 1;
    g.ncbx[0] = w;
    g.ncby[0] = h;
    ck_assert_int_eq(jpip_t2_prec_create(&p, pool, &g, sty, &err), JPIP_OK);
    return p;
}

/* ----------------------------------------------------- hand-built tests */

START_TEST(empty_packet)
{
    static const unsigned char b0[] = {0x00, 0xAA};
    static const unsigned char b1[] = {0x00, 0xFF, 0x92, 0xAA};
    static const unsigned char b2[] = {0x00, 0xFF, 0x91};
    static const unsigned char b3[] = {0x00, 0xFF};
    jpip_t2_prec_t *p = prec_1band(2, 2, 0);
    jpip_t2_packet_t pkt;
    jpip_err_t err;

    ck_assert_int_eq(decode(p, 0, b0, sizeof(b0), 0, 1, &pkt, &err), JPIP_OK);
    ck_assert(pkt.empty);
    ck_assert_uint_eq(pkt.header_len, 1);
    ck_assert_uint_eq(pkt.body_len, 0);
    ck_assert_int_eq(decode(p, 1, b1, sizeof(b1), 1, 2, &pkt, &err), JPIP_OK);
    ck_assert_uint_eq(pkt.header_len, 3);
    /* an EPH signalled but absent (openjpeg 2.5 refuses it too) */
    ck_assert_int_eq(decode(p, 2, b2, sizeof(b2), 1, 1, &pkt, &err), JPIP_E_FORMAT);
    ck_assert(!pkt.cut);
    ck_assert_ptr_nonnull(strstr(err.msg, "EPH"));
    /* the data ending where the EPH belongs cuts the packet short */
    ck_assert_int_eq(decode(p, 2, b3, sizeof(b3), 1, 1, &pkt, &err), JPIP_E_FORMAT);
    ck_assert(pkt.cut);
    ck_assert_ptr_nonnull(strstr(err.msg, "EPH"));
    ck_assert_int_eq(decode(p, 2, b0, 1, 1, 1, &pkt, &err), JPIP_E_FORMAT);
    ck_assert(pkt.cut);
}
END_TEST

START_TEST(one_cblk_layer0)
{
    jpip_t2_prec_t *p = prec_1band(1, 1, 0);
    jpip_t2_packet_t pkt;
    jpip_err_t err;
    bw_t w;

    bw_init(&w);
    bw_bit(&w, 1);          /* not empty */
    bw_bit(&w, 1);          /* inclusion tree: value 0 */
    bw_bits(&w, 1, 3);      /* zero bit-planes: 2 (0, 0, 1) */
    bw_bits(&w, 0xC, 4);    /* 3 passes: 1100 */
    bw_bit(&w, 0);          /* Lblock stays 3 */
    bw_bits(&w, 13, 3 + 1); /* length on 3 + floor(log2 3) bits */
    bw_flush(&w);
    ck_assert_uint_eq(w.len, 2);
    bw_byte(&w, 0x55); /* body bytes follow */
    ck_assert_int_eq(decode(p, 0, w.buf, w.len, 0, 1, &pkt, &err), JPIP_OK);
    ck_assert(!pkt.empty);
    ck_assert_uint_eq(pkt.header_len, 2);
    ck_assert_uint_eq(pkt.body_len, 13);
    free(w.buf);

    /* layer 1: included (1 bit), 37 passes, Lblock + 2, length on 5 + 5 bits */
    bw_init(&w);
    bw_bit(&w, 1);
    bw_bit(&w, 1);
    bw_bits(&w, 0x1FF, 9);
    bw_bits(&w, 0, 7);   /* 37 */
    bw_bits(&w, 0x6, 3); /* 110: Lblock 5 */
    bw_bits(&w, 1000, 10);
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 1, w.buf, w.len, 0, 3, &pkt, &err), JPIP_OK);
    ck_assert_uint_eq(pkt.header_len, w.len);
    ck_assert_uint_eq(pkt.body_len, 1000);
    free(w.buf);

    /* out-of-order layer */
    {
        static const unsigned char z[] = {0};
        ck_assert_int_eq(decode(p, 5, z, 1, 0, 1, &pkt, &err), JPIP_E_FORMAT);
    }
}
END_TEST

START_TEST(stuffing_after_ff)
{
    /* A header whose first byte is 0xFF: the second byte has 7 bits. */
    jpip_t2_prec_t *p = prec_1band(1, 1, 0);
    jpip_t2_packet_t pkt;
    jpip_err_t err;
    bw_t w;

    bw_init(&w);
    bw_bit(&w, 1);          /* non-empty */
    bw_bit(&w, 1);          /* included */
    bw_bit(&w, 1);          /* zero bit-planes 0 */
    bw_bits(&w, 0x1FF, 9);  /* passes escape to the 7-bit field */
    bw_bits(&w, 0x7F, 7);   /* 37 + 127 = 164 passes */
    bw_bits(&w, 0x2, 2);    /* Lblock 4 */
    bw_bits(&w, 0x3FF, 11); /* 4 + 7 bits of length: 1023 */
    bw_flush(&w);
    ck_assert_uint_eq(w.buf[0], 0xFF);
    ck_assert_uint_eq(w.buf[1], 0x7F);
    ck_assert_int_eq(decode(p, 0, w.buf, w.len, 0, 2, &pkt, &err), JPIP_OK);
    ck_assert_uint_eq(pkt.header_len, w.len);
    ck_assert_uint_eq(pkt.body_len, 1023);
    free(w.buf);

    /* A header whose last byte is 0xFF ends with one more byte: 1 1 1,
     * 1 pass (0), Lblock + 8 (111111110), 11 length bits of 2047. */
    p = prec_1band(1, 1, 0);
    bw_init(&w);
    bw_bits(&w, 0xE, 4);
    bw_bits(&w, 0x1FE, 9);
    bw_bits(&w, 2047, 11);
    bw_flush(&w);
    ck_assert_uint_eq(w.len, 4);
    ck_assert_uint_eq(w.buf[2], 0xFF);
    ck_assert_uint_eq(w.buf[3], 0x00);
    bw_byte(&w, 0xFF);
    bw_byte(&w, 0x92);
    ck_assert_int_eq(decode(p, 0, w.buf, w.len, 1, 3, &pkt, &err), JPIP_OK);
    ck_assert_uint_eq(pkt.header_len, 6);
    ck_assert_uint_eq(pkt.body_len, 2047);
    free(w.buf);
}
END_TEST

START_TEST(two_by_two_tag_trees)
{
    /* 2x2 code-blocks: first inclusion layers {0, 1, 1, never};
     * zero bit-planes {3, 1, 2, -}. */
    jpip_t2_prec_t *p = prec_1band(2, 2, 0);
    jpip_t2_packet_t pkt;
    jpip_err_t err;
    bw_t w;

    /* layer 0. Inclusion tree root = min = 0. cblk0: root 1 (=0), leaf 1 (=0).
     * Zero bit-plane root = min(3,1,2) = 1: root 0 1, leaf 0 0 1 (3).
     * cblk1: leaf (root known 0, leaf >= 1): 0. cblk2: 0. cblk3: 0. */
    bw_init(&w);
    bw_bit(&w, 1);
    bw_bits(&w, 0x3, 2); /* incl root 1, leaf 1 */
    bw_bits(&w, 0x1, 2); /* zbp root: 0 1 */
    bw_bits(&w, 0x1, 3); /* zbp leaf0: 0 0 1 -> 3 */
    bw_bit(&w, 0);       /* 1 pass */
    bw_bit(&w, 0);       /* Lblock 3 */
    bw_bits(&w, 5, 3);   /* length 5 */
    bw_bit(&w, 0);       /* cblk1 incl leaf: not in layer 0 */
    bw_bit(&w, 0);       /* cblk2 */
    bw_bit(&w, 0);       /* cblk3 */
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 0, w.buf, w.len, 0, 1, &pkt, &err), JPIP_OK);
    ck_assert_uint_eq(pkt.header_len, w.len);
    ck_assert_uint_eq(pkt.body_len, 5);
    free(w.buf);

    /* layer 1: cblk0 1 bit (included, 2 passes); cblk1 leaf 1 (=1), zbp leaf: 1 (=1),
     * cblk2 leaf 1, zbp 0 1 (=2); cblk3 leaf 0. */
    bw_init(&w);
    bw_bit(&w, 1);
    bw_bit(&w, 1);       /* cblk0 included */
    bw_bits(&w, 0x2, 2); /* 2 passes */
    bw_bit(&w, 0);
    bw_bits(&w, 9, 4); /* 3 + 1 bits */
    bw_bit(&w, 1);     /* cblk1 incl leaf = 1 */
    bw_bit(&w, 1);     /* zbp leaf: 1 */
    bw_bit(&w, 0);     /* 1 pass */
    bw_bit(&w, 0);
    bw_bits(&w, 3, 3);
    bw_bit(&w, 1);       /* cblk2 incl */
    bw_bits(&w, 0x1, 2); /* zbp 2 */
    bw_bit(&w, 0);
    bw_bits(&w, 0x6, 3); /* Lblock 5 */
    bw_bits(&w, 31, 5);
    bw_bit(&w, 0); /* cblk3 not yet */
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 1, w.buf, w.len, 0, 2, &pkt, &err), JPIP_OK);
    ck_assert_uint_eq(pkt.header_len, w.len);
    ck_assert_uint_eq(pkt.body_len, 9 + 3 + 31);
    free(w.buf);
}
END_TEST

START_TEST(termall_and_bypass)
{
    jpip_t2_prec_t *p = prec_1band(1, 1, JPIP_CBLK_TERMALL);
    jpip_t2_packet_t pkt;
    jpip_err_t err;
    bw_t w;

    /* TERMALL, 3 passes: three lengths on Lblock bits each */
    bw_init(&w);
    bw_bits(&w, 0x7, 3); /* non-empty, incl, zbp 0 */
    bw_bits(&w, 0xC, 4); /* 3 passes */
    bw_bit(&w, 0);
    bw_bits(&w, 1, 3);
    bw_bits(&w, 2, 3);
    bw_bits(&w, 7, 3);
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 0, w.buf, w.len, 0, 1, &pkt, &err), JPIP_OK);
    ck_assert_uint_eq(pkt.header_len, w.len);
    ck_assert_uint_eq(pkt.body_len, 10);
    free(w.buf);

    /* BYPASS: 12 passes in layer 0 = segment of 10 (3 + 3 bits) + 2 (3 + 1 bits);
     * layer 1: 4 passes = 1 (cleanup, 3 bits) + 2 (4 bits) + 1 (cleanup, 3 bits) */
    p = prec_1band(1, 1, JPIP_CBLK_BYPASS);
    bw_init(&w);
    bw_bits(&w, 0x7, 3);
    bw_bits(&w, 0xF, 4);
    bw_bits(&w, 12 - 6, 5); /* 12 passes */
    bw_bit(&w, 0);
    bw_bits(&w, 60, 6);
    bw_bits(&w, 11, 4);
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 0, w.buf, w.len, 0, 1, &pkt, &err), JPIP_OK);
    ck_assert_uint_eq(pkt.header_len, w.len);
    ck_assert_uint_eq(pkt.body_len, 71);
    free(w.buf);
    bw_init(&w);
    bw_bits(&w, 0x3, 2);
    bw_bits(&w, 0xD, 4); /* 1101: 3 + 1 = 4 passes */
    bw_bit(&w, 0);
    bw_bits(&w, 4, 3);
    bw_bits(&w, 15, 4);
    bw_bits(&w, 6, 3);
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 1, w.buf, w.len, 0, 1, &pkt, &err), JPIP_OK);
    ck_assert_uint_eq(pkt.header_len, w.len);
    ck_assert_uint_eq(pkt.body_len, 25);
    free(w.buf);

    /* BYPASS, a single packet of 7 passes then 5: the first segment (10)
     * spans two packets: 3 + 2 bits, then 3 + 1 bits for passes 7..9,
     * then 3 + 1 bits for the raw pair 10..11 */
    p = prec_1band(1, 1, JPIP_CBLK_BYPASS);
    bw_init(&w);
    bw_bits(&w, 0x7, 3);
    bw_bits(&w, 0xF, 4);
    bw_bits(&w, 1, 5); /* 7 */
    bw_bit(&w, 0);
    bw_bits(&w, 20, 5);
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 0, w.buf, w.len, 0, 1, &pkt, &err), JPIP_OK);
    ck_assert_uint_eq(pkt.body_len, 20);
    free(w.buf);
    bw_init(&w);
    bw_bits(&w, 0x3, 2);
    bw_bits(&w, 0xE, 4); /* 1110: 5 passes */
    bw_bit(&w, 0);
    bw_bits(&w, 9, 4);
    bw_bits(&w, 10, 4);
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 1, w.buf, w.len, 0, 1, &pkt, &err), JPIP_OK);
    ck_assert_uint_eq(pkt.header_len, w.len);
    ck_assert_uint_eq(pkt.body_len, 19);
    free(w.buf);
}
END_TEST

START_TEST(malformed)
{
    jpip_t2_packet_t pkt;
    jpip_err_t err;
    jpip_t2_prec_t *p;
    bw_t w;
    unsigned i;

    /* header running off the end */
    p = prec_1band(1, 1, 0);
    {
        static const unsigned char b[] = {0xFF};
        ck_assert_int_eq(decode(p, 0, b, 1, 0, 1, &pkt, &err), JPIP_E_FORMAT);
        ck_assert_ptr_nonnull(strstr(err.msg, "end"));
    }
    /* absurd zero bit-planes: 80 zeros in the tree */
    p = prec_1band(1, 1, 0);
    bw_init(&w);
    bw_bits(&w, 0x3, 2);
    for (i = 0; i < 80; i++) {
        bw_bit(&w, 0);
    }
    bw_bit(&w, 1);
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 0, w.buf, w.len, 0, 1, &pkt, &err), JPIP_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "bit-planes"));
    ck_assert_ptr_nonnull(strstr(err.msg, "code-block (0,0)"));
    free(w.buf);
    /* Lblock overflow: comma code of 40 ones */
    p = prec_1band(1, 1, 0);
    bw_init(&w);
    bw_bits(&w, 0x7, 3);
    bw_bit(&w, 0);
    for (i = 0; i < 40; i++) {
        bw_bit(&w, 1);
    }
    bw_bit(&w, 0);
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 0, w.buf, w.len, 0, 1, &pkt, &err), JPIP_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "Lblock"));
    free(w.buf);
    /* Lblock 30 with 37 passes: 35 length bits */
    p = prec_1band(1, 1, 0);
    bw_init(&w);
    bw_bits(&w, 0x7, 3);
    bw_bits(&w, 0x1FF, 9);
    bw_bits(&w, 0, 7);
    for (i = 0; i < 27; i++) {
        bw_bit(&w, 1);
    }
    bw_bit(&w, 0);
    bw_bits(&w, 0, 20);
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 0, w.buf, w.len, 0, 1, &pkt, &err), JPIP_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "32"));
    free(w.buf);
    /* too many passes over two layers: 164 + 164 */
    p = prec_1band(1, 1, 0);
    for (i = 0; i < 2; i++) {
        jpip_code_t rc;
        bw_init(&w);
        bw_bits(&w, i == 0 ? 0x7 : 0x3, i == 0 ? 3 : 2);
        bw_bits(&w, 0x1FF, 9);
        bw_bits(&w, 0x7F, 7);
        bw_bit(&w, 0);
        bw_bits(&w, 1, 3 + 7);
        bw_flush(&w);
        rc = decode(p, i, w.buf, w.len, 0, 1, &pkt, &err);
        ck_assert_int_eq(rc, i == 0 ? JPIP_OK : JPIP_E_FORMAT);
        free(w.buf);
    }
    ck_assert_ptr_nonnull(strstr(err.msg, "layer 1"));
    /* absurd geometry */
    {
        jpip_t2_geom_t g;
        jpip_t2_prec_t *q;
        memset(&g, 0, sizeof(g));
        g.nbands = 3;
        g.ncbx[0] = g.ncby[0] = 1u << 12;
        g.ncbx[1] = g.ncby[1] = 1;
        ck_assert_int_eq(jpip_t2_prec_create(&q, pool, &g, 0, &err), JPIP_E_LIMIT);
    }
}
END_TEST

/* ----------------------------------------------------------- HT tests */

START_TEST(ht_basic)
{
    jpip_t2_prec_t *p = prec_1band(1, 1, JPIP_CBLK_HT);
    jpip_t2_packet_t pkt;
    jpip_err_t err;
    bw_t w;

    /* layer 0: cleanup + SigProp + MagRef: cleanup on Lblock bits, refinement
     * segment (2 passes) on Lblock + 1 */
    bw_init(&w);
    bw_bits(&w, 0x7, 3);
    bw_bits(&w, 0xC, 4); /* 3 passes */
    bw_bit(&w, 0);
    bw_bits(&w, 5, 3);
    bw_bits(&w, 9, 4);
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 0, w.buf, w.len, 0, 1, &pkt, &err), JPIP_OK);
    ck_assert_uint_eq(pkt.header_len, w.len);
    ck_assert_uint_eq(pkt.body_len, 14);
    free(w.buf);
    /* layer 1: another HT set: cleanup (3 bits), refinement (4 bits) */
    bw_init(&w);
    bw_bits(&w, 0x3, 2);
    bw_bits(&w, 0xC, 4);
    bw_bit(&w, 0);
    bw_bits(&w, 6, 3);
    bw_bits(&w, 1, 4);
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 1, w.buf, w.len, 0, 1, &pkt, &err), JPIP_OK);
    ck_assert_uint_eq(pkt.header_len, w.len);
    ck_assert_uint_eq(pkt.body_len, 7);
    free(w.buf);

    /* split refinement: layer 0 cleanup + SigProp (3 + 3 bits), layer 1
     * MagRef alone (3 bits) then a cleanup (3 bits) */
    p = prec_1band(1, 1, JPIP_CBLK_HT);
    bw_init(&w);
    bw_bits(&w, 0x7, 3);
    bw_bits(&w, 0x2, 2); /* 2 passes */
    bw_bit(&w, 0);
    bw_bits(&w, 7, 3);
    bw_bits(&w, 2, 3);
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 0, w.buf, w.len, 0, 1, &pkt, &err), JPIP_OK);
    ck_assert_uint_eq(pkt.header_len, w.len);
    ck_assert_uint_eq(pkt.body_len, 9);
    free(w.buf);
    bw_init(&w);
    bw_bits(&w, 0x3, 2);
    bw_bits(&w, 0x2, 2);
    bw_bit(&w, 0);
    bw_bits(&w, 1, 3);
    bw_bits(&w, 4, 3);
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 1, w.buf, w.len, 0, 1, &pkt, &err), JPIP_OK);
    ck_assert_uint_eq(pkt.header_len, w.len);
    ck_assert_uint_eq(pkt.body_len, 5);
    free(w.buf);
}
END_TEST

START_TEST(ht_placeholders)
{
    jpip_t2_prec_t *p = prec_1band(1, 1, JPIP_CBLK_HT);
    jpip_t2_packet_t pkt;
    jpip_err_t err;
    bw_t w;

    /* 3 placeholder passes + cleanup + SigProp: cleanup on Lblock +
     * floor(log2(4)) = 5 bits, SigProp on 3 bits */
    bw_init(&w);
    bw_bits(&w, 0x7, 3);
    bw_bits(&w, 0xE, 4); /* 11 10: 3 + 2 = 5 passes */
    bw_bit(&w, 0);
    bw_bits(&w, 17, 5);
    bw_bits(&w, 3, 3);
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 0, w.buf, w.len, 0, 1, &pkt, &err), JPIP_OK);
    ck_assert_uint_eq(pkt.header_len, w.len);
    ck_assert_uint_eq(pkt.body_len, 20);
    free(w.buf);

    /* placeholders only in layer 0 (3 passes, zero length on 3 + 1 bits),
     * then the cleanup alone in layer 1 (3 bits) */
    p = prec_1band(1, 1, JPIP_CBLK_HT);
    bw_init(&w);
    bw_bits(&w, 0x7, 3);
    bw_bits(&w, 0xC, 4);
    bw_bit(&w, 0);
    bw_bits(&w, 0, 4);
    bw_bits(&w, 0x5, 3); /* trailing padding that must not be read as header */
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 0, w.buf, w.len, 0, 1, &pkt, &err), JPIP_OK);
    ck_assert_uint_eq(pkt.header_len, w.len);
    ck_assert_uint_eq(pkt.body_len, 0);
    free(w.buf);
    bw_init(&w);
    bw_bits(&w, 0x3, 2);
    bw_bit(&w, 0); /* 1 pass */
    bw_bit(&w, 0);
    bw_bits(&w, 6, 3);
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 1, w.buf, w.len, 0, 1, &pkt, &err), JPIP_OK);
    ck_assert_uint_eq(pkt.header_len, w.len);
    ck_assert_uint_eq(pkt.body_len, 6);
    free(w.buf);

    /* HT-only: a non-zero length where only placeholders fit is an error */
    p = prec_1band(1, 1, JPIP_CBLK_HT);
    bw_init(&w);
    bw_bits(&w, 0x7, 3);
    bw_bits(&w, 0xC, 4);
    bw_bit(&w, 0);
    bw_bits(&w, 1, 4);
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 0, w.buf, w.len, 0, 1, &pkt, &err), JPIP_E_FORMAT);
    free(w.buf);
}
END_TEST

START_TEST(ht_mixed)
{
    jpip_t2_prec_t *p = prec_1band(2, 1, JPIP_CBLK_HT | JPIP_CBLK_HTMIXED);
    jpip_t2_packet_t pkt;
    jpip_err_t err;
    bw_t w;

    /* cblk0: HT (Lblock 4, cleanup length 5 = 0101, MSB 0), 1 pass.
     * cblk1: Part-1, 3 passes, Lblock 3: 3 bits read (110, not HT since
     * Lblock is 3), then 1 more: length 1101 = 13. */
    bw_init(&w);
    bw_bit(&w, 1);
    bw_bits(&w, 0x3, 2); /* incl tree: root 1, leaf0 1 */
    bw_bits(&w, 0x3, 2); /* zbp root 1 (=0), leaf0 1 (=0) */
    bw_bit(&w, 0);       /* 1 pass */
    bw_bits(&w, 0x2, 2); /* Lblock 4 */
    bw_bits(&w, 5, 4);
    bw_bit(&w, 1);       /* cblk1 incl leaf */
    bw_bit(&w, 1);       /* zbp leaf 0 */
    bw_bits(&w, 0xC, 4); /* 3 passes */
    bw_bit(&w, 0);
    bw_bits(&w, 13, 4);
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 0, w.buf, w.len, 0, 1, &pkt, &err), JPIP_OK);
    ck_assert_uint_eq(pkt.header_len, w.len);
    ck_assert_uint_eq(pkt.body_len, 18);
    free(w.buf);
    /* layer 1: cblk0 (HT) 2 passes: refinement segment on 4 + 1 bits;
     * cblk1 (Part 1) 2 passes: one segment on 3 + 1 bits */
    bw_init(&w);
    bw_bit(&w, 1);
    bw_bit(&w, 1);
    bw_bits(&w, 0x2, 2);
    bw_bit(&w, 0);
    bw_bits(&w, 21, 5);
    bw_bit(&w, 1);
    bw_bits(&w, 0x2, 2);
    bw_bit(&w, 0);
    bw_bits(&w, 11, 4);
    bw_flush(&w);
    ck_assert_int_eq(decode(p, 1, w.buf, w.len, 0, 1, &pkt, &err), JPIP_OK);
    ck_assert_uint_eq(pkt.header_len, w.len);
    ck_assert_uint_eq(pkt.body_len, 32);
    free(w.buf);
}
END_TEST

/* -------------------------------- random headers from a reference encoder */

/* Tag-tree encoder (T.800 B.10.2), independent of the decoder's layout. */
typedef struct enc_tree_t {
    unsigned nlev, w[24], h[24], first[24];
    unsigned *value, *low, *known;
} enc_tree_t;

static void etree_init(enc_tree_t *t, unsigned w, unsigned h, const unsigned *leaves)
{
    unsigned n = 0, total = 0, l, x, y;

    memset(t, 0, sizeof(*t));
    for (;;) {
        t->w[n] = w;
        t->h[n] = h;
        t->first[n] = total;
        total += w * h;
        n++;
        if (w == 1 && h == 1) {
            break;
        }
        w = (w + 1) / 2;
        h = (h + 1) / 2;
    }
    t->nlev = n;
    t->value = calloc(total, sizeof(unsigned));
    t->low = calloc(total, sizeof(unsigned));
    t->known = calloc(total, sizeof(unsigned));
    for (x = 0; x < t->w[0] * t->h[0]; x++) {
        t->value[x] = leaves[x];
    }
    for (l = 1; l < n; l++) {
        for (y = 0; y < t->h[l]; y++) {
            for (x = 0; x < t->w[l]; x++) {
                unsigned m = ~0u, cx, cy;
                for (cy = 2 * y; cy < 2 * y + 2 && cy < t->h[l - 1]; cy++) {
                    for (cx = 2 * x; cx < 2 * x + 2 && cx < t->w[l - 1]; cx++) {
                        unsigned v = t->value[t->first[l - 1] + cy * t->w[l - 1] + cx];
                        m = v < m ? v : m;
                    }
                }
                t->value[t->first[l] + y * t->w[l] + x] = m;
            }
        }
    }
}

static void etree_free(enc_tree_t *t)
{
    free(t->value);
    free(t->low);
    free(t->known);
}

static void etree_encode(enc_tree_t *t, bw_t *w, unsigned x, unsigned y, unsigned thr)
{
    unsigned idx[24], l, low = 0;
    int i;

    for (l = 0; l < t->nlev; l++) {
        idx[l] = t->first[l] + (y >> l) * t->w[l] + (x >> l);
    }
    for (i = (int)t->nlev - 1; i >= 0; i--) {
        unsigned k = idx[i];
        if (t->low[k] < low) {
            t->low[k] = low;
        }
        while (t->low[k] < thr) {
            if (t->low[k] >= t->value[k]) {
                if (!t->known[k]) {
                    bw_bit(w, 1);
                    t->known[k] = 1;
                }
                break;
            }
            bw_bit(w, 0);
            t->low[k]++;
        }
        low = t->low[k];
    }
}

/* Does a Part-1 segment end after pass i (0-based)? Written from the
 * T.800 description, not from the decoder's segment model. */
static int seg_ends_after(unsigned sty, unsigned i)
{
    if (sty & JPIP_CBLK_TERMALL) {
        return 1;
    }
    if (sty & JPIP_CBLK_BYPASS) {
        return i == 9 || (i >= 10 && (i - 10) % 3 != 0);
    }
    return 0;
}

static unsigned flog2(unsigned v)
{
    unsigned l = 0;
    while (v > 1) {
        v >>= 1;
        l++;
    }
    return l;
}

static void put_npasses(bw_t *w, unsigned n)
{
    if (n == 1) {
        bw_bit(w, 0);
    } else if (n == 2) {
        bw_bits(w, 2, 2);
    } else if (n <= 5) {
        bw_bits(w, 0xC | (n - 3), 4);
    } else if (n <= 36) {
        bw_bits(w, 0x1E0 | (n - 6), 9);
    } else {
        bw_bits(w, 0xFF80 | (n - 37), 16);
    }
}

#define RMAX_CB 16
#define RMAX_L 6

typedef struct rcblk_t {
    unsigned first_layer; /* RMAX_L: never */
    unsigned zbp;
    unsigned npass[RMAX_L];
    unsigned total, lblock;
} rcblk_t;

static unsigned long rnd_state = 12345;
static unsigned rnd(unsigned n)
{
    rnd_state = rnd_state * 6364136223846793005ul + 1442695040888963407ul;
    return (unsigned)((rnd_state >> 33) % n);
}

START_TEST(random_roundtrip)
{
    unsigned iter;

    for (iter = 0; iter < 400; iter++) {
        static const unsigned stys[] = {0, JPIP_CBLK_BYPASS, JPIP_CBLK_TERMALL,
                                        JPIP_CBLK_BYPASS | JPIP_CBLK_TERMALL};
        unsigned sty = stys[rnd(4)];
        unsigned nb = rnd(2) ? 3 : 1, nl = 1 + rnd(RMAX_L), b, l;
        jpip_t2_geom_t g;
        rcblk_t cb[3][RMAX_CB];
        enc_tree_t incl[3], zt[3];
        jpip_t2_prec_t *prec;
        jpip_err_t err;

        memset(&g, 0, sizeof(g));
        memset(cb, 0, sizeof(cb));
        g.nbands = nb;
        for (b = 0; b < nb; b++) {
            unsigned leaves_i[RMAX_CB], leaves_z[RMAX_CB], k;
            g.ncbx[b] = rnd(5);
            g.ncby[b] = g.ncbx[b] ? 1 + rnd(RMAX_CB / g.ncbx[b]) : rnd(3);
            if (g.ncbx[b] * g.ncby[b] > RMAX_CB) {
                g.ncby[b] = 1;
            }
            for (k = 0; k < g.ncbx[b] * g.ncby[b]; k++) {
                rcblk_t *c = &cb[b][k];
                c->first_layer = rnd(nl + 1); /* == nl: never */
                c->zbp = rnd(3) ? rnd(4) : rnd(30);
                c->lblock = 3;
                for (l = c->first_layer; l < nl; l++) {
                    unsigned left = 164 - c->total;
                    unsigned n = l == c->first_layer ? 1 : 0;
                    if (left > 0 && rnd(4)) {
                        n = 1 + rnd(rnd(4) ? 12 : 164);
                    }
                    if (n > left) {
                        n = left;
                    }
                    if (l == c->first_layer && n == 0) {
                        n = 1;
                    }
                    c->npass[l] = n;
                    c->total += n;
                }
                leaves_i[k] = c->first_layer;
                leaves_z[k] = c->zbp;
            }
            if (g.ncbx[b] * g.ncby[b] > 0) {
                etree_init(&incl[b], g.ncbx[b], g.ncby[b], leaves_i);
                etree_init(&zt[b], g.ncbx[b], g.ncby[b], leaves_z);
            }
        }
        ck_assert_int_eq(jpip_t2_prec_create(&prec, pool, &g, sty, &err), JPIP_OK);
        for (l = 0; l < nl; l++) {
            bw_t w;
            unsigned long long body = 0;
            int any = 0, nonempty, eph = (int)rnd(2);
            jpip_t2_packet_t pkt;
            unsigned k;
            jpip_code_t rc;

            for (b = 0; b < nb; b++) {
                for (k = 0; k < g.ncbx[b] * g.ncby[b]; k++) {
                    any |= cb[b][k].npass[l] > 0;
                }
            }
            nonempty = any || rnd(2);
            bw_init(&w);
            bw_bit(&w, (unsigned)nonempty);
            if (nonempty) {
                for (b = 0; b < nb; b++) {
                    for (k = 0; k < g.ncbx[b] * g.ncby[b]; k++) {
                        rcblk_t *c = &cb[b][k];
                        unsigned x = k % g.ncbx[b], y = k / g.ncbx[b], n = c->npass[l];
                        unsigned done = 0, start, p, need = 0, segs = 0;
                        unsigned long lens[200];
                        unsigned npieces[200];

                        if (c->first_layer > l) {
                            etree_encode(&incl[b], &w, x, y, l + 1);
                            continue;
                        }
                        if (c->first_layer == l) {
                            etree_encode(&incl[b], &w, x, y, l + 1);
                            etree_encode(&zt[b], &w, x, y, c->zbp + 1);
                        } else {
                            bw_bit(&w, n > 0);
                        }
                        if (n == 0) {
                            continue;
                        }
                        put_npasses(&w, n);
                        /* split into segment pieces and pick lengths */
                        start = 0;
                        {
                            unsigned before = 0, ll;
                            for (ll = 0; ll < l; ll++) {
                                before += c->npass[ll];
                            }
                            for (p = 0; p < n; p++) {
                                if (seg_ends_after(sty, before + p) || p == n - 1) {
                                    unsigned kpass = p + 1 - start;
                                    unsigned long len = rnd(3) ? rnd(200) : rnd(1u << 20);
                                    unsigned bits = flog2(len) + 1;
                                    lens[segs] = len;
                                    npieces[segs] = kpass;
                                    if (bits > flog2(kpass) + c->lblock &&
                                        bits - flog2(kpass) - c->lblock > need) {
                                        need = bits - flog2(kpass) - c->lblock;
                                    }
                                    segs++;
                                    start = p + 1;
                                }
                            }
                            done = n;
                        }
                        ck_assert_uint_eq(done, n);
                        for (p = 0; p < need; p++) {
                            bw_bit(&w, 1);
                        }
                        bw_bit(&w, 0);
                        c->lblock += need;
                        for (p = 0; p < segs; p++) {
                            bw_bits(&w, lens[p], c->lblock + flog2(npieces[p]));
                            body += lens[p];
                        }
                    }
                }
            }
            bw_flush(&w);
            if (eph) {
                bw_byte(&w, 0xFF);
                bw_byte(&w, 0x92);
            }
            {
                size_t hl = w.len;
                bw_byte(&w, 0xFF); /* the body (or the next packet) follows */
                bw_byte(&w, 0x91);
                rc = decode(prec, l, w.buf, w.len, eph, 1 + rnd(5), &pkt, &err);
                if (rc != JPIP_OK) {
                    ck_abort_msg("iter %u layer %u: %s", iter, l, err.msg);
                }
                ck_assert_uint_eq(pkt.header_len, hl);
                ck_assert_uint_eq(pkt.body_len, body);
            }
            free(w.buf);
        }
        for (b = 0; b < nb; b++) {
            if (g.ncbx[b] * g.ncby[b] > 0) {
                etree_free(&incl[b]);
                etree_free(&zt[b]);
            }
        }
    }
}
END_TEST

/* ----------------------------------------- real files from opj_compress */

typedef struct cs_t {
    unsigned char *d;
    size_t n;
} cs_t;

/* Write a noisy 8-bit grey picture, so that code-blocks have many passes. */
static void write_pgm(const char *path, unsigned w, unsigned h)
{
    FILE *f = fopen(path, "wb");
    unsigned x, y;

    ck_assert_ptr_nonnull(f);
    fprintf(f, "P5\n%u %u\n255\n", w, h);
    for (y = 0; y < h; y++) {
        for (x = 0; x < w; x++) {
            unsigned v = (x * 3 + y * 2 + ((x / 16 + y / 16) % 2) * 60 + rnd(40)) & 0xFF;
            fputc((int)v, f);
        }
    }
    fclose(f);
}

static cs_t read_file(const char *path)
{
    cs_t c = {NULL, 0};
    FILE *f = fopen(path, "rb");
    long n;

    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    c.d = malloc((size_t)n);
    c.n = fread(c.d, 1, (size_t)n, f);
    fclose(f);
    return c;
}

static unsigned ceil_div_pow2(long v, unsigned s)
{
    long d = 1L << s;
    if (v <= 0) {
        return 0;
    }
    return (unsigned)((v + d - 1) / d);
}

/* Encode with opj_compress and check every packet against PLT. */
static void check_opj(const char *opts, unsigned W, unsigned H)
{
    char pgm[512], j2k[512];
    cs_t c;
    size_t pos, sod = 0, nplt = 0, i;
    unsigned long plt[4096];
    unsigned scod = 0, layers = 0, nl = 0, xcb = 0, ycb = 0, sty = 0, r, l, prog = 0;
    jpip_t2_prec_t *prec[33];
    jpip_src_t *src;
    jpip_err_t err;
    unsigned long k = 0;

    snprintf(pgm, sizeof(pgm), "%s/t2.pgm", tu_tmpdir());
    snprintf(j2k, sizeof(j2k), "%s/t2.j2k", tu_tmpdir());
    write_pgm(pgm, W, H);
    ck_assert_msg(
        tu_run("'%s' -i '%s' -o '%s' -PLT -p LRCP %s", tu_opj_compress(), pgm, j2k, opts) == 0,
        "opj_compress failed with %s", opts);
    c = read_file(j2k);
    unlink(pgm);
    unlink(j2k);

    /* main header: COD; tile-part header: PLT; then SOD */
    pos = 2;
    while (pos + 4 <= c.n) {
        unsigned m = (c.d[pos] << 8) | c.d[pos + 1];
        unsigned len;
        if (m == 0xFF93) {
            sod = pos + 2;
            break;
        }
        len = (c.d[pos + 2] << 8) | c.d[pos + 3];
        if (m == 0xFF90) {
            len = 10;
        }
        if (m == 0xFF52) {
            const unsigned char *s = c.d + pos + 4;
            scod = s[0];
            prog = s[1];
            layers = (s[2] << 8) | s[3];
            nl = s[5];
            xcb = s[6] + 2;
            ycb = s[7] + 2;
            sty = s[8];
            ck_assert_msg((scod & 1) == 0, "test expects default precincts");
        }
        if (m == 0xFF58) {
            unsigned long v = 0;
            for (i = pos + 5; i < pos + 2 + len; i++) {
                v = (v << 7) | (c.d[i] & 0x7F);
                if (!(c.d[i] & 0x80)) {
                    ck_assert(nplt < 4096);
                    plt[nplt++] = v;
                    v = 0;
                }
            }
        }
        pos += 2 + len;
    }
    ck_assert_uint_eq(prog, 0); /* LRCP */
    ck_assert(sod > 0);
    ck_assert_uint_eq(nplt, (nl + 1) * layers);

    for (r = 0; r <= nl; r++) {
        jpip_t2_geom_t g;
        memset(&g, 0, sizeof(g));
        if (r == 0) {
            g.nbands = 1;
            g.ncbx[0] = ceil_div_pow2(ceil_div_pow2(W, nl), xcb);
            g.ncby[0] = ceil_div_pow2(ceil_div_pow2(H, nl), ycb);
        } else {
            unsigned n = nl - r + 1;
            long half = 1L << (n - 1);
            long hw = ((long)W - half + (1L << n) - 1) >> n; /* high-pass width */
            long hh = ((long)H - half + (1L << n) - 1) >> n;
            long lw = ((long)W + (1L << n) - 1) >> n;
            long lh = ((long)H + (1L << n) - 1) >> n;
            g.nbands = 3;
            g.ncbx[0] = ceil_div_pow2(hw, xcb); /* HL */
            g.ncby[0] = ceil_div_pow2(lh, ycb);
            g.ncbx[1] = ceil_div_pow2(lw, xcb); /* LH */
            g.ncby[1] = ceil_div_pow2(hh, ycb);
            g.ncbx[2] = ceil_div_pow2(hw, xcb); /* HH */
            g.ncby[2] = ceil_div_pow2(hh, ycb);
        }
        ck_assert_int_eq(jpip_t2_prec_create(&prec[r], pool, &g, sty, &err), JPIP_OK);
    }
    ck_assert_int_eq(jpip_src_open_mem(&src, pool, c.d, c.n, &err), JPIP_OK);
    pos = sod;
    for (l = 0; l < layers; l++) {
        for (r = 0; r <= nl; r++, k++) {
            jpip_piece_t piece;
            jpip_t2_stream_t s;
            jpip_t2_packet_t pkt;
            size_t start = pos;
            jpip_code_t rc;

            if (scod & 2) {
                ck_assert_uint_eq(c.d[pos], 0xFF);
                ck_assert_uint_eq(c.d[pos + 1], 0x91);
                pos += 6;
            }
            piece.off = pos;
            piece.len = c.n - pos;
            jpip_t2_stream_init(&s, src, &piece, 1);
            rc = jpip_t2_read_header(prec[r], l, &s, (scod & 4) != 0, &pkt, &err);
            ck_assert_msg(rc == JPIP_OK, "%s: layer %u res %u: %s", opts, l, r, err.msg);
            pos += pkt.header_len + pkt.body_len;
            ck_assert_msg(pos - start == plt[k], "%s: packet l=%u r=%u: %zu bytes, PLT says %lu",
                          opts, l, r, pos - start, plt[k]);
        }
    }
    ck_assert_uint_eq(c.d[pos], 0xFF);
    ck_assert_uint_eq(c.d[pos + 1], 0xD9);
    printf("test_t2: opj_compress %s (%ux%u, cblksty 0x%02x): %lu packets match PLT\n", opts, W, H,
           sty, k);
    free(c.d);
}

START_TEST(opj_files)
{
    if (tu_run("command -v '%s'", tu_opj_compress()) != 0) {
        tu_skip("t2 real files", "opj_compress not found");
        return;
    }
    check_opj("-n 4 -b 16,16 -r 80,40,20,10,1", 200, 136);
    check_opj("-n 3 -b 8,8 -r 30,10,1 -SOP -EPH", 97, 61);
    check_opj("-n 5 -b 32,16 -r 60,20,5 -M 1", 301, 150);
    check_opj("-n 2 -b 16,16 -r 50,8,2 -M 4", 64, 64);
    check_opj("-n 4 -b 16,32 -r 40,10,3,1 -M 5 -EPH", 131, 257);
    check_opj("-n 3 -b 4,4 -r 20,5 -M 63 -SOP", 45, 39);
    check_opj("-n 1 -b 64,64 -I -r 20,7,2", 300, 200);
}
END_TEST

static Suite *t2_suite(void)
{
    Suite *s = suite_create("t2");
    TCase *tc = tcase_create("headers");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, empty_packet);
    tcase_add_test(tc, one_cblk_layer0);
    tcase_add_test(tc, stuffing_after_ff);
    tcase_add_test(tc, two_by_two_tag_trees);
    tcase_add_test(tc, termall_and_bypass);
    tcase_add_test(tc, malformed);
    tcase_add_test(tc, ht_basic);
    tcase_add_test(tc, ht_placeholders);
    tcase_add_test(tc, ht_mixed);
    tcase_add_test(tc, random_roundtrip);
    tcase_add_test(tc, opj_files);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(t2_suite, CK_NORMAL);
}
