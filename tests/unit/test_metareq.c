/* Unit tests: the metareq field (metareq.c): parsing every example of the
 * protocol notes, rejecting malformed values with a position, formatting,
 * and matching against a hand-assembled box layout ([*], [xml_], [*]!!,
 * R/D scopes, :0, :n, :r, priorities, qualifiers, the render set). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "box.h"
#include "jpip_err.h"
#include "metareq.h"
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

/* ---- parsing --------------------------------------------------------------- */

static jpip_code_t parse(const char *s, jpip_metareq_t *r, jpip_err_t *err)
{
    jpip_err_clear(err);
    return jpip_metareq_parse(r, pool, s, strlen(s), err);
}

START_TEST(parse_doc_examples)
{
    jpip_metareq_t r;
    jpip_err_t err;

    ck_assert_int_eq(parse("[*]!!", &r, &err), JPIP_OK);
    ck_assert_uint_eq(r.nitems, 1);
    ck_assert_uint_eq(r.nprops, 1);
    ck_assert(r.props[0].any);
    ck_assert(r.metadata_only);
    ck_assert_uint_eq(r.props[0].limit, JPIP_MQ_LIMIT_NONE);
    ck_assert_uint_eq(r.props[0].qual, 0);
    ck_assert(!r.props[0].priority);
    ck_assert_uint_eq(r.items[0].root, 0);
    ck_assert_uint_eq(r.items[0].depth, JPIP_MQ_DEPTH_ANY);

    ck_assert_int_eq(parse("[xml_]", &r, &err), JPIP_OK);
    ck_assert(!r.props[0].any);
    ck_assert_uint_eq(r.props[0].type, JPIP_BOX_XML);
    ck_assert(!r.metadata_only);

    ck_assert_int_eq(parse("[roid/w;lbl_:0/w!]R5D2,[asoc:r]", &r, &err), JPIP_OK);
    ck_assert_uint_eq(r.nitems, 2);
    ck_assert_uint_eq(r.nprops, 3);
    ck_assert_uint_eq(r.items[0].first_prop, 0);
    ck_assert_uint_eq(r.items[0].nprops, 2);
    ck_assert_uint_eq(r.items[0].root, 5);
    ck_assert_uint_eq(r.items[0].depth, 2);
    ck_assert_uint_eq(r.props[0].type, JPIP_BOX_TYPE('r', 'o', 'i', 'd'));
    ck_assert_uint_eq(r.props[0].qual, JPIP_MQ_W);
    ck_assert_uint_eq(r.props[0].limit, JPIP_MQ_LIMIT_NONE);
    ck_assert_uint_eq(r.props[1].type, JPIP_BOX_TYPE('l', 'b', 'l', ' '));
    ck_assert_uint_eq(r.props[1].limit, 0);
    ck_assert_uint_eq(r.props[1].qual, JPIP_MQ_W);
    ck_assert(r.props[1].priority);
    ck_assert_uint_eq(r.items[1].first_prop, 2);
    ck_assert_uint_eq(r.items[1].nprops, 1);
    ck_assert_uint_eq(r.props[2].type, JPIP_BOX_ASOC);
    ck_assert_uint_eq(r.props[2].limit, JPIP_MQ_LIMIT_R);
    ck_assert_uint_eq(r.items[1].root, 0);

    /* H.4 and friends */
    ck_assert_int_eq(parse("[xml_/a]", &r, &err), JPIP_OK);
    ck_assert_uint_eq(r.props[0].qual, JPIP_MQ_A);
    ck_assert_int_eq(parse("[jp2h]", &r, &err), JPIP_OK);
    ck_assert_uint_eq(r.props[0].type, JPIP_BOX_JP2H);
}
END_TEST

START_TEST(parse_type_encodings)
{
    jpip_metareq_t r;
    jpip_err_t err;

    ck_assert_int_eq(parse("[jP__]", &r, &err), JPIP_OK);
    ck_assert_uint_eq(r.props[0].type, JPIP_BOX_JP);
    ck_assert_int_eq(parse("[\\170ml_]", &r, &err), JPIP_OK);
    ck_assert_uint_eq(r.props[0].type, JPIP_BOX_XML);
    ck_assert_int_eq(parse("[\\000\\001\\377\\040]", &r, &err), JPIP_OK);
    ck_assert_uint_eq(r.props[0].type, 0x0001FF20u);
    ck_assert_int_eq(parse("[a-b#]", &r, &err), JPIP_OK);
    ck_assert_uint_eq(r.props[0].type, JPIP_BOX_TYPE('a', '-', 'b', '#'));
    ck_assert_int_eq(parse("[uuid:1024/ga!;*:r/wsga]D3R1,[xml_:0]!!", &r, &err), JPIP_OK);
    ck_assert_uint_eq(r.props[0].limit, 1024);
    ck_assert_uint_eq(r.props[0].qual, JPIP_MQ_G | JPIP_MQ_A);
    ck_assert(r.props[0].priority);
    ck_assert(r.props[1].any);
    ck_assert_uint_eq(r.props[1].qual, JPIP_MQ_W | JPIP_MQ_S | JPIP_MQ_G | JPIP_MQ_A);
    ck_assert_uint_eq(r.items[0].depth, 3);
    ck_assert_uint_eq(r.items[0].root, 1);
    ck_assert_uint_eq(r.props[2].limit, 0);
    ck_assert(r.metadata_only);
    /* the largest number accepted is 2^62 */
    ck_assert_int_eq(parse("[*:4611686018427387904]R4611686018427387904", &r, &err), JPIP_OK);
    ck_assert_uint_eq(r.props[0].limit, (apr_uint64_t)1 << 62);
    ck_assert_uint_eq(r.items[0].root, (apr_uint64_t)1 << 62);
}
END_TEST

/* Each malformed value with the offset its message must name. */
START_TEST(parse_rejects)
{
    static const struct {
        const char *s;
        int off; /* -1: do not check */
    } bad[] = {
        {"", -1},          {"xml_", 0},      {"[", 1},         {"[]", 1},
        {"[xml]", 4},      {"[xml_", 5},     {"[xml_:]", 6},   {"[xml_:x]", 6},
        {"[xml_/]", 6},    {"[xml_/x]", 6},  {"[xml_!!]", 6},  {"[*]!", 3},
        {"[*]!!x", 5},     {"[*],", 4},      {"[*]R", 4},      {"[*]Rx", 4},
        {"[*]R1R2", 5},    {"[*]D1D2", 5},   {"[*]x", 3},      {"[**]", 2},
        {"[\\9xx_]", 2},   {"[\\477ab]", 1}, {"[a b_]", 2},    {"[xml_:99999999999999999999]", 6},
        {"[xml_];[*]", 6}, {"[*] ", 3},      {"[x\001y_]", 2}, {"[*]R4611686018427387905", 4},
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        jpip_metareq_t r;
        jpip_err_t err;
        jpip_code_t rc = parse(bad[i].s, &r, &err);

        ck_assert_msg(rc == JPIP_E_REQUEST, "'%s' was accepted", bad[i].s);
        ck_assert_msg(strncmp(err.msg, "metareq: ", 9) == 0, "'%s': %s", bad[i].s, err.msg);
        if (bad[i].off >= 0) {
            char want[32];
            snprintf(want, sizeof(want), "offset %d", bad[i].off);
            ck_assert_msg(strstr(err.msg, want) != NULL, "'%s': message '%s' lacks '%s'", bad[i].s,
                          err.msg, want);
        }
    }
    /* too many props */
    {
        char *s = apr_palloc(pool, 4 * (JPIP_MQ_MAX_PROPS + 1) + 8);
        size_t n = 0;
        int k;
        jpip_metareq_t r;
        jpip_err_t err;

        s[n++] = '[';
        for (k = 0; k <= JPIP_MQ_MAX_PROPS; k++) {
            s[n++] = '*';
            s[n++] = ';';
        }
        s[n - 1] = ']';
        ck_assert_int_eq(jpip_metareq_parse(&r, pool, s, n, &err), JPIP_E_REQUEST);
        ck_assert_ptr_nonnull(strstr(err.msg, "more than"));
    }
    /* the length bounds the parse, not a NUL */
    {
        jpip_metareq_t r;
        jpip_err_t err;
        ck_assert_int_eq(jpip_metareq_parse(&r, pool, "[*]!!garbage", 5, &err), JPIP_OK);
        ck_assert(r.metadata_only);
        ck_assert_int_eq(jpip_metareq_parse(&r, pool, "[xml_]", 5, &err), JPIP_E_REQUEST);
    }
}
END_TEST

START_TEST(format_roundtrip)
{
    static const char *canon[] = {
        "[*]!!",
        "[xml_]",
        "[roid/w;lbl_:0/w!]R5D2,[asoc:r]",
        "[jP__;\\000\\001\\377x]D0",
        "[uuid:1024/ga!;*:r/wsga]R1D3,[xml_:0]!!",
    };
    size_t i;
    jpip_metareq_t r;
    jpip_err_t err;

    for (i = 0; i < sizeof(canon) / sizeof(canon[0]); i++) {
        ck_assert_msg(parse(canon[i], &r, &err) == JPIP_OK, "%s: %s", canon[i], err.msg);
        ck_assert_str_eq(jpip_metareq_format(&r, 0, pool), canon[i]);
    }
    /* D before R is accepted, written back in grammar order */
    ck_assert_int_eq(parse("[*]D3R1", &r, &err), JPIP_OK);
    ck_assert_str_eq(jpip_metareq_format(&r, 0, pool), "[*]R1D3");
    /* what is served: qualifiers without g or a dropped */
    ck_assert_int_eq(parse("[xml_/w;lbl_/sg;asoc/a!]", &r, &err), JPIP_OK);
    ck_assert_str_eq(jpip_metareq_format(&r, 1, pool), "[xml_;lbl_/sg;asoc/a!]");
}
END_TEST

/* ---- a hand-assembled file ----------------------------------------------- */

static void b_fill(tu_buf_t *b, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)('a' + i % 26);
        tu_buf_put(b, &c, 1);
    }
}

static void box_filled(tu_buf_t *b, const char *type, size_t n)
{
    size_t at = tu_box_open(b, type);
    b_fill(b, n);
    tu_box_close(b, at);
}

/* File M (default verbatim_max 4096):
 *   0 jP @0  1 ftyp @12  2 jp2h @32 (3 ihdr, 4 colr)  5 xml "<a/>" @77
 *   6 xml 5000 (placed, bin 1)
 *   7 asoc (placed, bin 2): 8 lbl "hello", 9 xml 6000 (placed, bin 3),
 *                           10 asoc (11 lbl "in", 12 xml "<b/>")
 *   13 jp2c (codestream 0, stand-in bin 4)   14 uuid 5000 (placed, bin 5)
 * Bin 0: [0,89) verbatim, phld(6) @89, phld(7) @117, phld(13) @145 (52
 * bytes), phld(14) @197; 225 bytes. Bin 2: lbl @0, phld(9) @13, asoc(10)
 * @41 with lbl @49 and xml @59 (contents @67); 71 bytes. */
static tu_buf_t file_m(void)
{
    static const unsigned char sig[] = {0x0D, 0x0A, 0x87, 0x0A};
    static const unsigned char ihdr[14] = {0, 0, 0, 64, 0, 0, 0, 64, 0, 1, 7, 7, 0, 0};
    static const unsigned char colr[7] = {1, 0, 0, 0, 0, 0, 17};
    static const unsigned char cs[] = {0xFF, 0x4F, 0xFF, 0x51};
    tu_buf_t b = tu_buf(pool);
    size_t at, at2;

    tu_box_data(&b, "jP  ", sig, 4);
    tu_box_data(&b, "ftyp", "jp2 \0\0\0\0jp2 ", 12);
    at = tu_box_open(&b, "jp2h");
    tu_box_data(&b, "ihdr", ihdr, sizeof(ihdr));
    tu_box_data(&b, "colr", colr, sizeof(colr));
    tu_box_close(&b, at);
    tu_box_data(&b, "xml ", "<a/>", 4);
    box_filled(&b, "xml ", 5000);
    at = tu_box_open(&b, "asoc");
    tu_box_data(&b, "lbl ", "hello", 5);
    box_filled(&b, "xml ", 6000);
    at2 = tu_box_open(&b, "asoc");
    tu_box_data(&b, "lbl ", "in", 2);
    tu_box_data(&b, "xml ", "<b/>", 4);
    tu_box_close(&b, at2);
    tu_box_close(&b, at);
    at = tu_box_open(&b, "jp2c");
    tu_buf_put(&b, cs, 4);
    b_fill(&b, 296);
    tu_box_close(&b, at);
    box_filled(&b, "uuid", 5000);
    return b;
}

static jpip_box_layout_t *layout_m(apr_uint64_t verbatim_max, jpip_src_t **srcp)
{
    tu_buf_t b = file_m();
    jpip_box_layout_t *lay;
    jpip_box_limits_t lim;
    jpip_src_t *src;
    jpip_err_t err;

    jpip_box_limits_default(&lim);
    lim.verbatim_max = verbatim_max;
    ck_assert_int_eq(jpip_src_open_mem(&src, pool, b.p, b.n, &err), JPIP_OK);
    ck_assert_msg(jpip_box_layout_build(&lay, pool, src, &lim, &err) == JPIP_OK, "%s", err.msg);
    if (srcp != NULL) {
        *srcp = src;
    }
    return lay;
}

/* Ranges as text: "bin:off+len" (a trailing '!' for priority), space separated. */
static const char *sel_str(const jpip_metasel_t *sel)
{
    char *s = "";
    apr_size_t i;

    for (i = 0; i < sel->nranges; i++) {
        const jpip_metarange_t *r = &sel->ranges[i];
        s = apr_psprintf(pool, "%s%s%u:%" APR_UINT64_T_FMT "+%" APR_UINT64_T_FMT "%s", s,
                         i ? " " : "", r->bin, r->off, r->len, r->priority ? "!" : "");
    }
    return s;
}

/* The selection is sorted, disjoint, inside its bins and readable. */
static void check_sel(const jpip_box_layout_t *lay, jpip_src_t *src, const jpip_metasel_t *sel)
{
    apr_size_t i;

    for (i = 0; i < sel->nranges; i++) {
        const jpip_metarange_t *r = &sel->ranges[i];
        ck_assert_uint_lt(r->bin, lay->nbins);
        ck_assert_uint_le(r->off + r->len, lay->bins[r->bin].length);
        ck_assert(!(lay->bins[r->bin].flags & JPIP_METABIN_CSTREAM));
        if (i > 0) {
            const jpip_metarange_t *q = &sel->ranges[i - 1];
            ck_assert(q->bin < r->bin || (q->bin == r->bin && q->off + q->len <= r->off));
        }
        if (src != NULL && r->len > 0) {
            unsigned char *buf = apr_palloc(pool, (apr_size_t)r->len);
            jpip_err_t err;
            ck_assert_int_eq(
                jpip_box_bin_read(lay, src, r->bin, r->off, buf, (apr_size_t)r->len, &err),
                JPIP_OK);
        }
    }
}

static const char *match(const jpip_box_layout_t *lay, const char *mq, int *modified)
{
    jpip_metareq_t r;
    jpip_metasel_t sel;
    jpip_err_t err;

    ck_assert_msg(parse(mq, &r, &err) == JPIP_OK, "%s: %s", mq, err.msg);
    ck_assert_int_eq(jpip_metareq_match(&r, lay, pool, &sel, &err), JPIP_OK);
    check_sel(lay, NULL, &sel);
    if (modified != NULL) {
        *modified = sel.modified;
    }
    return sel_str(&sel);
}

START_TEST(layout_m_is_as_described)
{
    jpip_box_layout_t *lay = layout_m(4096, NULL);

    ck_assert_uint_eq(lay->nboxes, 15);
    ck_assert_uint_eq(lay->nbins, 6);
    ck_assert_uint_eq(lay->bins[0].length, 225);
    ck_assert_uint_eq(lay->bins[2].length, 71);
    ck_assert_uint_eq(lay->boxes[7].hdr_bin_off, 117);
    ck_assert_uint_eq(lay->boxes[13].hdr_bin_off, 145);
    ck_assert_uint_eq(lay->boxes[12].hdr_bin_off, 59);
    ck_assert_uint_eq(lay->boxes[12].contents_bin_off, 67);
}
END_TEST

START_TEST(match_all)
{
    jpip_box_layout_t *lay = layout_m(4096, NULL);
    jpip_metareq_t r;
    jpip_metasel_t sel;
    jpip_err_t err;
    int mod;

    ck_assert_str_eq(match(lay, "[*]", &mod), "0:0+225 1:0+5000 2:0+71 3:0+6000 5:0+5000");
    ck_assert_int_eq(mod, 0);
    ck_assert_str_eq(match(lay, "[*]!!", &mod), "0:0+225 1:0+5000 2:0+71 3:0+6000 5:0+5000");
    ck_assert_int_eq(parse("[*]!!", &r, &err), JPIP_OK);
    ck_assert(r.metadata_only);
    ck_assert_str_eq(match(lay, "[*!]", NULL), "0:0+225! 1:0+5000! 2:0+71! 3:0+6000! 5:0+5000!");
    /* top-level boxes only, but each in full, so the same bytes */
    ck_assert_str_eq(match(lay, "[*]D0", NULL), "0:0+225 1:0+5000 2:0+71 3:0+6000 5:0+5000");
    /* top-level headers only */
    ck_assert_str_eq(match(lay, "[*:0]D0", NULL), "0:0+8 0:12+8 0:32+8 0:77+8 0:89+136");
    /* everything placed: still every bin but the codestream stand-in */
    {
        jpip_box_layout_t *l0 = layout_m(0, NULL);
        apr_uint32_t i;
        const char *want = "";
        for (i = 0; i < l0->nbins; i++) {
            if (!(l0->bins[i].flags & JPIP_METABIN_CSTREAM)) {
                want = apr_psprintf(pool, "%s%s%u:0+%" APR_UINT64_T_FMT, want, *want ? " " : "", i,
                                    l0->bins[i].length);
            }
        }
        ck_assert_str_eq(match(l0, "[*]", NULL), want);
    }
    (void)sel;
}
END_TEST

START_TEST(match_type)
{
    jpip_box_layout_t *lay = layout_m(4096, NULL);
    int mod;

    /* every xml box in full, with the headers leading to it */
    ck_assert_str_eq(match(lay, "[xml_]", &mod),
                     "0:0+8 0:12+8 0:32+8 0:77+68 1:0+5000 2:0+8 2:13+44 2:59+12 3:0+6000");
    ck_assert_int_eq(mod, 0);
    /* headers only */
    ck_assert_str_eq(match(lay, "[xml_:0]", NULL),
                     "0:0+8 0:12+8 0:32+8 0:77+8 0:89+56 2:0+8 2:13+44 2:59+8");
    /* the first 2 bytes of each */
    ck_assert_str_eq(match(lay, "[xml_:2]", NULL),
                     "0:0+8 0:12+8 0:32+8 0:77+10 0:89+56 1:0+2 2:0+8 2:13+44 2:59+10 3:0+2");
    /* an absent type selects nothing */
    ck_assert_str_eq(match(lay, "[roid]", NULL), "");
    /* the codestream box: its placeholder, never the codestream */
    ck_assert_str_eq(match(lay, "[jp2c]", NULL), "0:0+8 0:12+8 0:32+8 0:77+8 0:89+108");
    /* a verbatim superbox in full */
    ck_assert_str_eq(match(lay, "[jp2h]", NULL), "0:0+8 0:12+8 0:32+45");
    /* several props and items */
    ck_assert_str_eq(match(lay, "[uuid:0;lbl_:0],[jp2h:0]", NULL),
                     "0:0+8 0:12+8 0:32+8 0:77+8 0:89+136 2:0+8 2:13+44");
}
END_TEST

START_TEST(match_recursive)
{
    jpip_box_layout_t *lay = layout_m(4096, NULL);

    /* both asoc boxes and the headers of everything inside */
    ck_assert_str_eq(match(lay, "[asoc:r]", NULL),
                     "0:0+8 0:12+8 0:32+8 0:77+8 0:89+56 2:0+8 2:13+44 2:59+8");
    /* an asoc in full: its bin and the bins of its placed descendants */
    ck_assert_str_eq(match(lay, "[asoc]D0", NULL),
                     "0:0+8 0:12+8 0:32+8 0:77+8 0:89+56 2:0+71 3:0+6000");
}
END_TEST

START_TEST(match_root_and_depth)
{
    jpip_box_layout_t *lay = layout_m(4096, NULL);

    /* the boxes of bin 2 (inside the outer asoc) and below */
    ck_assert_str_eq(match(lay, "[xml_]R2", NULL),
                     "0:0+8 0:12+8 0:32+8 0:77+8 0:89+56 2:0+8 2:13+44 2:59+12 3:0+6000");
    /* ... the top level of bin 2 only */
    ck_assert_str_eq(match(lay, "[xml_]R2D0", NULL),
                     "0:0+8 0:12+8 0:32+8 0:77+8 0:89+56 2:0+8 2:13+28 3:0+6000");
    /* top level of bin 0 only */
    ck_assert_str_eq(match(lay, "[xml_]D0", NULL), "0:0+8 0:12+8 0:32+8 0:77+40 1:0+5000");
    /* D1 reaches inside the outer asoc, not the inner one */
    ck_assert_str_eq(match(lay, "[lbl_:0]D1", NULL), "0:0+8 0:12+8 0:32+8 0:77+8 0:89+56 2:0+8");
    /* bins without boxes, or that do not exist */
    ck_assert_str_eq(match(lay, "[xml_]R1", NULL), "");
    ck_assert_str_eq(match(lay, "[*]R4", NULL), "");
    ck_assert_str_eq(match(lay, "[*]R99", NULL), "");
    ck_assert_str_eq(match(lay, "[*]R18446744073709551", NULL), "");
}
END_TEST

START_TEST(match_priority_and_qualifiers)
{
    jpip_box_layout_t *lay = layout_m(4096, NULL);
    int mod;

    /* priority ranges win where the two overlap; nothing is selected twice */
    ck_assert_str_eq(match(lay, "[xml_:0!;jp2h]", NULL),
                     "0:0+8! 0:12+8! 0:32+8! 0:40+37 0:77+8! 0:89+56! 2:0+8! 2:13+44! 2:59+8!");
    ck_assert_str_eq(match(lay, "[jp2h],[xml_:0!]", NULL),
                     "0:0+8! 0:12+8! 0:32+8! 0:40+37 0:77+8! 0:89+56! 2:0+8! 2:13+44! 2:59+8!");

    /* every box here is global: w or s alone is served as if it had g */
    match(lay, "[xml_/w]", &mod);
    ck_assert_int_eq(mod, 1);
    ck_assert_str_eq(match(lay, "[xml_/w]", NULL), match(lay, "[xml_]", NULL));
    match(lay, "[xml_/s;jp2h/g]", &mod);
    ck_assert_int_eq(mod, 1);
    match(lay, "[xml_/wsg]", &mod);
    ck_assert_int_eq(mod, 0);
    match(lay, "[xml_/a]", &mod);
    ck_assert_int_eq(mod, 0);
    match(lay, "[xml_/g]", &mod);
    ck_assert_int_eq(mod, 0);
}
END_TEST

START_TEST(render_set)
{
    jpip_box_layout_t *lay = layout_m(4096, NULL), *l0;
    jpip_metasel_t sel;
    jpip_err_t err;
    jpip_src_t *src;

    ck_assert_int_eq(jpip_metareq_render(lay, NULL, 0, pool, &sel, &err), JPIP_OK);
    ck_assert_str_eq(sel_str(&sel), "0:0+225!");

    /* jp2h behind placeholders: its bins come along */
    l0 = layout_m(0, &src);
    ck_assert_int_eq(jpip_metareq_render(l0, NULL, 0, pool, &sel, &err), JPIP_OK);
    check_sel(l0, src, &sel);
    {
        apr_uint32_t h = jpip_box_find(l0, JPIP_BOX_JP2H, JPIP_BOX_NONE, 0);
        const char *want =
            apr_psprintf(pool,
                         "0:0+%" APR_UINT64_T_FMT "! %u:0+%" APR_UINT64_T_FMT
                         "! %u:0+%" APR_UINT64_T_FMT "! %u:0+%" APR_UINT64_T_FMT "!",
                         l0->bins[0].length, l0->boxes[h].contents_bin,
                         l0->bins[l0->boxes[h].contents_bin].length, l0->boxes[h + 1].contents_bin,
                         l0->boxes[h + 1].contents_len, l0->boxes[h + 2].contents_bin,
                         l0->boxes[h + 2].contents_len);
        ck_assert_str_eq(sel_str(&sel), want);
    }

    /* raw codestream: the empty bin 0, as one zero-length range */
    {
        static const unsigned char raw[] = {0xFF, 0x4F, 0xFF, 0x51, 0, 0, 0, 0};
        jpip_box_layout_t *lr;
        jpip_metareq_t r;
        ck_assert_int_eq(jpip_src_open_mem(&src, pool, raw, sizeof(raw), &err), JPIP_OK);
        ck_assert_int_eq(jpip_box_layout_build(&lr, pool, src, NULL, &err), JPIP_OK);
        ck_assert_int_eq(jpip_metareq_render(lr, NULL, 0, pool, &sel, &err), JPIP_OK);
        ck_assert_str_eq(sel_str(&sel), "0:0+0!");
        ck_assert_int_eq(parse("[*]", &r, &err), JPIP_OK);
        ck_assert_int_eq(jpip_metareq_match(&r, lr, pool, &sel, &err), JPIP_OK);
        ck_assert_uint_eq(sel.nranges, 0);
    }
}
END_TEST

/* JPX: the render set follows the requested codestreams. */
START_TEST(render_jpx)
{
    static const unsigned char sig[] = {0x0D, 0x0A, 0x87, 0x0A};
    static const unsigned char cs[] = {0xFF, 0x4F, 0xFF, 0x51, 0xFF, 0xD9};
    tu_buf_t b = tu_buf(pool);
    size_t at;
    int i;
    jpip_src_t *src;
    jpip_box_layout_t *lay;
    jpip_metasel_t sel;
    jpip_err_t err;
    apr_uint32_t want_cs = 1;

    tu_box_data(&b, "jP  ", sig, 4);
    tu_box_data(&b, "ftyp", "jpx \0\0\0\0jpx jp2 ", 16);
    at = tu_box_open(&b, "jp2h");
    box_filled(&b, "ihdr", 14);
    tu_box_close(&b, at);
    for (i = 0; i < 3; i++) {
        at = tu_box_open(&b, "jpch");
        box_filled(&b, "ihdr", 14);
        tu_box_close(&b, at);
    }
    for (i = 0; i < 3; i++) {
        at = tu_box_open(&b, "jplh");
        box_filled(&b, "lbl ", 3);
        tu_box_close(&b, at);
    }
    for (i = 0; i < 3; i++) {
        tu_box_data(&b, "jp2c", cs, sizeof(cs));
    }
    ck_assert_int_eq(jpip_src_open_mem(&src, pool, b.p, b.n, &err), JPIP_OK);
    ck_assert_int_eq(jpip_box_layout_build(&lay, pool, src, NULL, &err), JPIP_OK);
    ck_assert_uint_eq(lay->ncodestreams, 3);
    ck_assert_uint_eq(lay->nlayers, 3);
    ck_assert_int_eq(jpip_metareq_render(lay, &want_cs, 1, pool, &sel, &err), JPIP_OK);
    check_sel(lay, src, &sel);
    /* everything is verbatim in bin 0 */
    ck_assert_str_eq(sel_str(&sel),
                     apr_psprintf(pool, "0:0+%" APR_UINT64_T_FMT "!", lay->bins[0].length));
    /* with placeholders: bin 0, and the bins of jp2h, jpch 1, jplh 1 */
    {
        jpip_box_limits_t lim;
        apr_uint32_t h = 0, c1, l1;
        jpip_box_limits_default(&lim);
        lim.verbatim_max = 10;
        ck_assert_int_eq(jpip_box_layout_build(&lay, pool, src, &lim, &err), JPIP_OK);
        ck_assert_int_eq(jpip_metareq_render(lay, &want_cs, 1, pool, &sel, &err), JPIP_OK);
        check_sel(lay, src, &sel);
        h = jpip_box_find(lay, JPIP_BOX_JP2H, JPIP_BOX_NONE, 0);
        c1 = jpip_box_find(lay, JPIP_BOX_JPCH, JPIP_BOX_NONE, 0);
        c1 = jpip_box_find(lay, JPIP_BOX_JPCH, JPIP_BOX_NONE, c1 + 1);
        l1 = jpip_box_find(lay, JPIP_BOX_JPLH, JPIP_BOX_NONE, 0);
        l1 = jpip_box_find(lay, JPIP_BOX_JPLH, JPIP_BOX_NONE, l1 + 1);
        ck_assert_str_eq(
            sel_str(&sel),
            apr_psprintf(pool,
                         "0:0+%" APR_UINT64_T_FMT "! %u:0+%" APR_UINT64_T_FMT
                         "! %u:0+%" APR_UINT64_T_FMT "! %u:0+%" APR_UINT64_T_FMT
                         "! %u:0+%" APR_UINT64_T_FMT "! %u:0+%" APR_UINT64_T_FMT "!",
                         lay->bins[0].length, lay->boxes[h].contents_bin,
                         lay->boxes[h].contents_bin_len, lay->boxes[h + 1].contents_bin,
                         lay->boxes[h + 1].contents_bin_len, lay->boxes[c1].contents_bin,
                         lay->boxes[c1].contents_bin_len, lay->boxes[c1 + 1].contents_bin,
                         lay->boxes[c1 + 1].contents_bin_len, lay->boxes[l1].contents_bin,
                         lay->boxes[l1].contents_bin_len));
    }
}
END_TEST

/* Real files: every request gives a sorted, disjoint, readable selection. */
START_TEST(match_real_files)
{
    const char *dir = tu_testdata("conformance");
    static const char *names[] = {"file1.jp2", "file7.jp2", "file8.jp2", "subsampling_1.jp2"};
    static const char *reqs[] = {
        "[*]",   "[*]!!",      "[xml_]", "[xml_:0]", "[jp2h:r]", "[*:r]D1", "[uuid:10!;xml_:5]",
        "[*]R1", "[colr;jp2c]"};
    size_t i, k;

    if (dir == NULL) {
        tu_skip("match_real_files", "test data absent");
        return;
    }
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        size_t n;
        unsigned char *d = tu_read_file(pool, apr_pstrcat(pool, dir, "/", names[i], NULL), &n);
        jpip_src_t *src;
        jpip_box_layout_t *lay;
        jpip_err_t err;
        jpip_box_limits_t lim;

        ck_assert_ptr_nonnull(d);
        ck_assert_int_eq(jpip_src_open_mem(&src, pool, d, n, &err), JPIP_OK);
        jpip_box_limits_default(&lim);
        lim.verbatim_max = 256;
        ck_assert_int_eq(jpip_box_layout_build(&lay, pool, src, &lim, &err), JPIP_OK);
        for (k = 0; k < sizeof(reqs) / sizeof(reqs[0]); k++) {
            jpip_metareq_t r;
            jpip_metasel_t sel;
            ck_assert_int_eq(parse(reqs[k], &r, &err), JPIP_OK);
            ck_assert_int_eq(jpip_metareq_match(&r, lay, pool, &sel, &err), JPIP_OK);
            check_sel(lay, src, &sel);
        }
        {
            jpip_metasel_t sel;
            ck_assert_int_eq(jpip_metareq_render(lay, NULL, 0, pool, &sel, &err), JPIP_OK);
            check_sel(lay, src, &sel);
            ck_assert_uint_eq(sel.ranges[0].bin, 0);
            ck_assert_uint_eq(sel.ranges[0].len, lay->bins[0].length);
        }
    }
}
END_TEST

static Suite *metareq_suite(void)
{
    Suite *s = suite_create("metareq");
    TCase *tp = tcase_create("parse");
    TCase *tm = tcase_create("match");

    tcase_add_checked_fixture(tp, setup, teardown);
    tcase_add_test(tp, parse_doc_examples);
    tcase_add_test(tp, parse_type_encodings);
    tcase_add_test(tp, parse_rejects);
    tcase_add_test(tp, format_roundtrip);
    suite_add_tcase(s, tp);

    tcase_add_checked_fixture(tm, setup, teardown);
    tcase_add_test(tm, layout_m_is_as_described);
    tcase_add_test(tm, match_all);
    tcase_add_test(tm, match_type);
    tcase_add_test(tm, match_recursive);
    tcase_add_test(tm, match_root_and_depth);
    tcase_add_test(tm, match_priority_and_qualifiers);
    tcase_add_test(tm, render_set);
    tcase_add_test(tm, render_jpx);
    tcase_add_test(tm, match_real_files);
    suite_add_tcase(s, tm);
    return s;
}

int main(void)
{
    return tu_main(metareq_suite, CK_ENV);
}
