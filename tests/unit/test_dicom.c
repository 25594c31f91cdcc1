/* Unit tests: the DICOM Part 10 walker, frames of encapsulated JPEG 2000 as
 * codestreams, the synthesised metadata-bin 0, frame identifiers (dicom.c),
 * and the indexer over a DICOM target (its bins equal those of the bare
 * codestreams, pieces pointing into the fragments where they lie). Files
 * are assembled in memory; codestreams come from opj_compress. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

#include "box.h"
#include "dicom.h"
#include "index.h"
#include "jpip_err.h"
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

/* ---- writing DICOM in memory ------------------------------------------ */

static void le16(tu_buf_t *b, unsigned v)
{
    unsigned char p[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
    tu_buf_put(b, p, 2);
}

static void le32(tu_buf_t *b, apr_uint32_t v)
{
    le16(b, v & 0xFFFF);
    le16(b, v >> 16);
}

static void le64(tu_buf_t *b, apr_uint64_t v)
{
    le32(b, (apr_uint32_t)v);
    le32(b, (apr_uint32_t)(v >> 32));
}

static int long_vr(const char *vr)
{
    return strstr("OB OD OF OL OV OW SQ SV UC UN UR UT UV", vr) != NULL;
}

/* An element header with an explicit length (UNDEF for undefined). */
#define UNDEF 0xFFFFFFFFu
static void hdr(tu_buf_t *b, apr_uint32_t tag, const char *vr, apr_uint32_t len)
{
    le16(b, tag >> 16);
    le16(b, tag & 0xFFFF);
    tu_buf_put(b, vr, 2);
    if (long_vr(vr)) {
        le16(b, 0);
        le32(b, len);
    } else {
        le16(b, len);
    }
}

static void el(tu_buf_t *b, apr_uint32_t tag, const char *vr, const void *v, size_t n)
{
    hdr(b, tag, vr, (apr_uint32_t)n);
    tu_buf_put(b, v, n);
}

static void str(tu_buf_t *b, apr_uint32_t tag, const char *vr, const char *s)
{
    size_t n = strlen(s);
    hdr(b, tag, vr, (apr_uint32_t)(n + (n & 1)));
    tu_buf_put(b, s, n);
    if (n & 1) {
        tu_buf_put(b, strcmp(vr, "UI") == 0 ? "\0" : " ", 1);
    }
}

static void us(tu_buf_t *b, apr_uint32_t tag, unsigned v)
{
    hdr(b, tag, "US", 2);
    le16(b, v);
}

static void tag_len(tu_buf_t *b, apr_uint32_t tag, apr_uint32_t len)
{
    le16(b, tag >> 16);
    le16(b, tag & 0xFFFF);
    le32(b, len);
}

#define ITEM JPIP_DICOM_TAG(0xFFFE, 0xE000)
#define ITEM_END JPIP_DICOM_TAG(0xFFFE, 0xE00D)
#define SEQ_END JPIP_DICOM_TAG(0xFFFE, 0xE0DD)
#define T(g, e) JPIP_DICOM_TAG(g, e)

static const char *TS90 = "1.2.840.10008.1.2.4.90";

/* Preamble, DICM, a file meta group with this transfer syntax. */
static void part10(tu_buf_t *b, const char *ts)
{
    tu_buf_t m = tu_buf(pool);
    static const unsigned char zero[128];

    tu_buf_put(b, zero, 128);
    tu_buf_put(b, "DICM", 4);
    el(&m, T(2, 1), "OB", "\0\1", 2);
    str(&m, T(2, 2), "UI", "1.2.840.10008.5.1.4.1.1.7");
    str(&m, T(2, 3), "UI", "1.2.3.4");
    str(&m, T(2, 0x10), "UI", ts);
    hdr(b, T(2, 0), "UL", 4);
    le32(b, (apr_uint32_t)m.n);
    tu_buf_put(b, m.p, m.n);
}

/* A fake codestream: SOC, a SIZ for w x h with nc 8-bit components, filler,
 * EOC. Enough for the walker and the layout (not for the indexer). */
static tu_buf_t fake_cs(unsigned w, unsigned h, unsigned nc, size_t filler, unsigned char ssiz)
{
    tu_buf_t c = tu_buf(pool);
    unsigned i;
    size_t k;

    tu_buf_u16(&c, 0xFF4F);
    tu_buf_u16(&c, 0xFF51);
    tu_buf_u16(&c, 38 + 3 * nc);
    tu_buf_u16(&c, 0);
    tu_buf_u32(&c, w);
    tu_buf_u32(&c, h);
    tu_buf_u32(&c, 0);
    tu_buf_u32(&c, 0);
    tu_buf_u32(&c, w);
    tu_buf_u32(&c, h);
    tu_buf_u32(&c, 0);
    tu_buf_u32(&c, 0);
    tu_buf_u16(&c, nc);
    for (i = 0; i < nc; i++) {
        unsigned char s[3] = {(unsigned char)(i == 1 && ssiz != 7 ? 11 : ssiz), 1, 1};
        tu_buf_put(&c, s, 3);
    }
    for (k = 0; k < filler; k++) {
        unsigned char x = (unsigned char)(k * 13 + 5);
        tu_buf_put(&c, &x, 1);
    }
    tu_buf_u16(&c, 0xFFD9);
    return c;
}

/* The common image attributes, (0008,0016) .. (0028,0103). */
static void image_attrs(tu_buf_t *b, unsigned rows, unsigned cols, const char *nframes)
{
    str(b, T(8, 0x16), "UI", "1.2.840.10008.5.1.4.1.1.7");
    str(b, T(8, 0x18), "UI", "1.2.3.4");
    str(b, T(8, 0x60), "CS", "OT");
    us(b, T(0x28, 2), 1);
    str(b, T(0x28, 4), "CS", "MONOCHROME2");
    if (nframes != NULL) {
        str(b, T(0x28, 8), "IS", nframes);
    }
    us(b, T(0x28, 0x10), rows);
    us(b, T(0x28, 0x11), cols);
    us(b, T(0x28, 0x100), 8);
    us(b, T(0x28, 0x101), 8);
    us(b, T(0x28, 0x102), 7);
    us(b, T(0x28, 0x103), 0);
}

typedef enum { TB_NONE, TB_BOT, TB_EOT, TB_EOT_NOLEN } table_t;

/* Encapsulated Pixel Data: nf codestreams, frame i cut into parts[i]
 * fragments (each of even length, the last padded with 0). The Extended
 * Offset Table goes before it. */
static void pixel(tu_buf_t *b, const tu_buf_t *cs, size_t nf, const unsigned *parts, table_t table)
{
    apr_uint64_t offs[16], pos = 0;
    size_t f, k;

    for (f = 0; f < nf; f++) {
        size_t n = cs[f].n + (cs[f].n & 1), step = (n / parts[f]) & ~(size_t)1;
        offs[f] = pos;
        for (k = 0; k < parts[f]; k++) {
            size_t len = k + 1 < parts[f] ? step : n - step * (parts[f] - 1);
            pos += 8 + len;
        }
    }
    if (table == TB_EOT || table == TB_EOT_NOLEN) {
        hdr(b, T(0x7FE0, 1), "OV", (apr_uint32_t)(8 * nf));
        for (f = 0; f < nf; f++) {
            le64(b, offs[f]);
        }
        if (table == TB_EOT) {
            hdr(b, T(0x7FE0, 2), "OV", (apr_uint32_t)(8 * nf));
            for (f = 0; f < nf; f++) {
                le64(b, cs[f].n);
            }
        }
    }
    hdr(b, T(0x7FE0, 0x10), "OB", UNDEF);
    tag_len(b, ITEM, table == TB_BOT ? (apr_uint32_t)(4 * nf) : 0);
    if (table == TB_BOT) {
        for (f = 0; f < nf; f++) {
            le32(b, (apr_uint32_t)offs[f]);
        }
    }
    for (f = 0; f < nf; f++) {
        size_t n = cs[f].n + (cs[f].n & 1), step = (n / parts[f]) & ~(size_t)1, at = 0;
        for (k = 0; k < parts[f]; k++) {
            size_t len = k + 1 < parts[f] ? step : n - step * (parts[f] - 1);
            tag_len(b, ITEM, (apr_uint32_t)len);
            if (at + len <= cs[f].n) {
                tu_buf_put(b, cs[f].p + at, len);
            } else {
                tu_buf_put(b, cs[f].p + at, cs[f].n - at);
                tu_buf_put(b, "\0", 1);
            }
            at += len;
        }
    }
    tag_len(b, SEQ_END, 0);
}

/* The first occurrence of n bytes pat in b, or NULL. */
static unsigned char *find(const tu_buf_t *b, const void *pat, size_t n)
{
    size_t i;

    for (i = 0; i + n <= b->n; i++) {
        if (memcmp(b->p + i, pat, n) == 0) {
            return b->p + i;
        }
    }
    return NULL;
}

static jpip_src_t *msrc(const tu_buf_t *b)
{
    jpip_src_t *s;
    jpip_err_t err;
    ck_assert_int_eq(jpip_src_open_mem(&s, pool, b->p, b->n, &err), JPIP_OK);
    return s;
}

static jpip_code_t parse(const tu_buf_t *b, const jpip_dicom_limits_t *lim, jpip_dicom_t **d,
                         jpip_err_t *err)
{
    jpip_err_clear(err);
    return jpip_dicom_parse(d, pool, msrc(b), lim, err);
}

/* The bytes of frame f, concatenated from its fragments. */
static unsigned char *frame_bytes(const jpip_dicom_t *d, const tu_buf_t *file, apr_uint32_t f,
                                  apr_uint64_t *len)
{
    const jpip_dicom_frame_t *fr = &d->frames[f];
    unsigned char *out = apr_palloc(pool, (apr_size_t)fr->length + 1), *p = out;
    apr_uint32_t k;
    apr_uint64_t total = 0;

    for (k = 0; k < fr->nfrags; k++) {
        const jpip_piece_t *pc = &d->frags[fr->first_frag + k];
        ck_assert(pc->off + pc->len <= file->n);
        memcpy(p, file->p + pc->off, (size_t)pc->len);
        p += pc->len;
        total += pc->len;
    }
    ck_assert_uint_eq(total, fr->length);
    *len = total;
    return out;
}

static void check_frames(const jpip_dicom_t *d, const tu_buf_t *file, const tu_buf_t *cs, size_t nf)
{
    size_t f;

    ck_assert_uint_eq(d->nframes, nf);
    for (f = 0; f < nf; f++) {
        apr_uint64_t len;
        unsigned char *got = frame_bytes(d, file, (apr_uint32_t)f, &len);
        ck_assert_uint_eq(len, cs[f].n);
        ck_assert_msg(memcmp(got, cs[f].p, cs[f].n) == 0, "frame %u bytes differ", (unsigned)f);
    }
}

/* ---- frames ---------------------------------------------------------------- */

START_TEST(sniff)
{
    tu_buf_t b = tu_buf(pool);

    ck_assert(!jpip_dicom_sniff(msrc(&b)));
    part10(&b, TS90);
    ck_assert(jpip_dicom_sniff(msrc(&b)));
    b.p[130] = 'X';
    ck_assert(!jpip_dicom_sniff(msrc(&b)));
}
END_TEST

START_TEST(frames_every_table)
{
    tu_buf_t cs[3];
    static const unsigned parts[3] = {3, 1, 2};
    table_t t;
    jpip_dicom_t *d;
    jpip_err_t err;

    cs[0] = fake_cs(40, 30, 1, 301, 7); /* odd: the last fragment is padded */
    cs[1] = fake_cs(40, 30, 1, 120, 7);
    cs[2] = fake_cs(40, 30, 1, 77, 7);
    for (t = TB_NONE; t <= TB_EOT_NOLEN; t++) {
        tu_buf_t b = tu_buf(pool);
        part10(&b, TS90);
        image_attrs(&b, 30, 40, "3");
        pixel(&b, cs, 3, parts, t);
        ck_assert_msg(parse(&b, NULL, &d, &err) == JPIP_OK, "table %d: %s", t, err.msg);
        check_frames(d, &b, cs, 3);
        ck_assert_str_eq(d->frames_by, t == TB_NONE  ? "SOC markers"
                                       : t == TB_BOT ? "Basic Offset Table"
                                                     : "Extended Offset Table");
        ck_assert_uint_eq(d->frames[0].nfrags, 3);
        ck_assert_str_eq(d->ts_uid, TS90);
        ck_assert_int_eq(d->ts, JPIP_DICOM_TS_J2K);
    }
}
END_TEST

START_TEST(frames_without_table)
{
    tu_buf_t cs[2], b = tu_buf(pool);
    static const unsigned one[2] = {1, 1}, split[1] = {4};
    jpip_dicom_t *d;
    jpip_err_t err;

    cs[0] = fake_cs(8, 8, 1, 40, 7);
    cs[1] = fake_cs(8, 8, 1, 41, 7);
    part10(&b, "1.2.840.10008.1.2.4.203");
    image_attrs(&b, 8, 8, "2");
    pixel(&b, cs, 2, one, TB_NONE);
    ck_assert_int_eq(parse(&b, NULL, &d, &err), JPIP_OK);
    ck_assert_str_eq(d->frames_by, "one fragment per frame");
    ck_assert_int_eq(d->ts, JPIP_DICOM_TS_HTJ2K);
    check_frames(d, &b, cs, 2);

    /* no Number of Frames: one frame of all the fragments */
    b = tu_buf(pool);
    part10(&b, TS90);
    image_attrs(&b, 8, 8, NULL);
    pixel(&b, cs, 1, split, TB_NONE);
    ck_assert_int_eq(parse(&b, NULL, &d, &err), JPIP_OK);
    ck_assert_str_eq(d->frames_by, "one frame");
    check_frames(d, &b, cs, 1);
}
END_TEST

START_TEST(soc_scan_wants_a_real_siz)
{
    /* frame 1's second fragment starts with FF4F FF51 but a SIZ length that
     * does not match its component count: not a frame start */
    tu_buf_t cs[2], b = tu_buf(pool), lie;
    static const unsigned parts[2] = {2, 1};
    jpip_dicom_t *d;
    jpip_err_t err;
    size_t half;

    cs[0] = fake_cs(8, 8, 1, 120, 7);
    cs[1] = fake_cs(8, 8, 1, 50, 7);
    half = ((cs[0].n + (cs[0].n & 1)) / 2) & ~(size_t)1; /* where its 2nd fragment starts */
    memcpy(cs[0].p + half, "\xFF\x4F\xFF\x51\x00\x30", 6);
    cs[0].p[half + 40] = 0;
    cs[0].p[half + 41] = 1;
    part10(&b, TS90);
    image_attrs(&b, 8, 8, "2");
    pixel(&b, cs, 2, parts, TB_NONE);
    ck_assert_msg(parse(&b, NULL, &d, &err) == JPIP_OK, "%s", err.msg);
    check_frames(d, &b, cs, 2);
    /* with a plausible SIZ there it is a start: three starts for two frames */
    lie = cs[0];
    lie.p[half + 5] = 41;
    b = tu_buf(pool);
    part10(&b, TS90);
    image_attrs(&b, 8, 8, "2");
    pixel(&b, cs, 2, parts, TB_NONE);
    ck_assert_int_eq(parse(&b, NULL, &d, &err), JPIP_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "more codestream starts"));
}
END_TEST

START_TEST(eot_lengths_cut_frames)
{
    /* a frame whose EOT length is shorter than its fragments */
    tu_buf_t cs[2], b = tu_buf(pool), shorter[2];
    static const unsigned parts[2] = {3, 2};
    jpip_dicom_t *d;
    jpip_err_t err;

    cs[0] = fake_cs(8, 8, 1, 200, 7);
    cs[1] = fake_cs(8, 8, 1, 100, 7);
    part10(&b, TS90);
    image_attrs(&b, 8, 8, "2");
    pixel(&b, cs, 2, parts, TB_EOT);
    ck_assert_int_eq(parse(&b, NULL, &d, &err), JPIP_OK);
    check_frames(d, &b, cs, 2);
    /* patch the second length to 50: the frame ends inside its first fragment */
    {
        unsigned char *p = find(&b, "\xE0\x7F\x02\x00OV", 6);
        ck_assert_ptr_nonnull(p);
        p[12 + 8] = 50;
        memset(p + 12 + 9, 0, 7);
    }
    ck_assert_int_eq(parse(&b, NULL, &d, &err), JPIP_OK);
    shorter[0] = cs[0];
    shorter[1] = cs[1];
    shorter[1].n = 50;
    check_frames(d, &b, shorter, 2);
    ck_assert_uint_eq(d->frames[1].nfrags, 1);
}
END_TEST

/* ---- walking ------------------------------------------------------------ */

START_TEST(walks_sequences_private_and_odd)
{
    tu_buf_t cs = fake_cs(16, 12, 1, 64, 7), b = tu_buf(pool), inner = tu_buf(pool);
    static const unsigned one = 1;
    jpip_dicom_t *d;
    jpip_err_t err;
    const jpip_dicom_attr_t *a;
    const char *xml;
    apr_size_t xlen;
    int i;

    part10(&b, TS90);
    str(&b, T(8, 0x16), "UI", "1.2.840.10008.5.1.4.1.1.7");
    str(&b, T(8, 0x18), "UI", "9.8.7");
    str(&b, T(8, 0x60), "CS", "<&\"'\x01\xE9");
    /* a private odd-length element, a defined-length sequence whose item
     * holds an undefined-length sequence, and a UN of undefined length
     * holding an Implicit VR data set with a nested sequence */
    el(&b, T(9, 0x10), "LO", "odd", 3);
    str(&inner, T(8, 0x100), "SH", "T-1");
    hdr(&inner, T(8, 0x9215), "SQ", UNDEF);
    tag_len(&inner, ITEM, UNDEF);
    str(&inner, T(8, 0x102), "SH", "X");
    tag_len(&inner, ITEM_END, 0);
    tag_len(&inner, SEQ_END, 0);
    hdr(&b, T(8, 0x1140), "SQ", (apr_uint32_t)(inner.n + 8));
    tag_len(&b, ITEM, (apr_uint32_t)inner.n);
    tu_buf_put(&b, inner.p, inner.n);
    hdr(&b, T(0x11, 0x1000), "UN", UNDEF);
    tag_len(&b, ITEM, UNDEF);
    tag_len(&b, T(8, 0x100), 4);
    tu_buf_put(&b, "UN-1", 4);
    tag_len(&b, T(8, 0x9215), UNDEF);
    tag_len(&b, ITEM, UNDEF);
    tag_len(&b, T(8, 0x102), 2);
    tu_buf_put(&b, "XY", 2);
    tag_len(&b, ITEM_END, 0);
    tag_len(&b, SEQ_END, 0);
    tag_len(&b, ITEM_END, 0);
    tag_len(&b, SEQ_END, 0);
    /* the image, Pixel Spacing only inside the Shared Functional Groups */
    us(&b, T(0x28, 0x10), 12);
    us(&b, T(0x28, 0x11), 16);
    hdr(&b, T(0x5200, 0x9229), "SQ", UNDEF);
    tag_len(&b, ITEM, UNDEF);
    hdr(&b, T(0x28, 0x9110), "SQ", UNDEF);
    tag_len(&b, ITEM, UNDEF);
    str(&b, T(0x28, 0x30), "DS", "0.5\\0.25 ");
    tag_len(&b, ITEM_END, 0);
    tag_len(&b, SEQ_END, 0);
    tag_len(&b, ITEM_END, 0);
    tag_len(&b, SEQ_END, 0);
    pixel(&b, &cs, 1, &one, TB_BOT);
    /* trailing padding after the Pixel Data is not walked */
    el(&b, T(0xFFFC, 0xFFFC), "OB", "\0\0\0\0", 4);
    ck_assert_msg(parse(&b, NULL, &d, &err) == JPIP_OK, "%s", err.msg);
    check_frames(d, &b, &cs, 1);
    ck_assert_str_eq(d->sop_inst, "1.2.3.4");
    a = jpip_dicom_attr(d, T(0x28, 0x10));
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(a->len, 2);
    ck_assert_ptr_null(jpip_dicom_attr(d, T(0x28, 0x30))); /* not at the top level */
    xml = jpip_dicom_xml(d, pool, &xlen);
    ck_assert_uint_eq(strlen(xml), xlen);
    ck_assert_ptr_nonnull(strstr(xml, "keyword=\"Modality\"><Value number=\"1\">&lt;&amp;&quot;"
                                      "&apos;?\?</Value>"));
    ck_assert_ptr_nonnull(
        strstr(xml, "keyword=\"SharedFunctionalGroupsSequence\"><Item number=\"1\"><DicomAttribute "
                    "tag=\"00289110\" vr=\"SQ\" keyword=\"PixelMeasuresSequence\"><Item "
                    "number=\"1\"><DicomAttribute tag=\"00280030\" vr=\"DS\" "
                    "keyword=\"PixelSpacing\"><Value number=\"1\">0.5</Value><Value "
                    "number=\"2\">0.25</Value>"));
    ck_assert_ptr_nonnull(strstr(xml, "keyword=\"NumberOfFrames\"><Value number=\"1\">1<"));
    ck_assert_ptr_nonnull(strstr(xml, "keyword=\"Rows\"><Value number=\"1\">12<"));
    ck_assert_ptr_null(strstr(xml, "odd"));
    /* every '<' in the document opens a tag of ours */
    for (i = 0; xml[i] != '\0'; i++) {
        if (xml[i] == '<') {
            ck_assert(xml[i + 1] == '?' || xml[i + 1] == '/' || xml[i + 1] == 'N' ||
                      xml[i + 1] == 'D' || xml[i + 1] == 'V' || xml[i + 1] == 'I');
        }
    }
}
END_TEST

START_TEST(keeps_all_elements)
{
    tu_buf_t cs = fake_cs(16, 12, 1, 64, 7), b = tu_buf(pool);
    static const unsigned one = 1;
    jpip_dicom_limits_t lim;
    jpip_dicom_t *d;
    jpip_err_t err;
    apr_uint32_t i;

    part10(&b, TS90);
    image_attrs(&b, 12, 16, NULL);
    pixel(&b, &cs, 1, &one, TB_NONE);
    el(&b, T(0xFFFC, 0xFFFC), "OB", "\0\0", 2);
    jpip_dicom_limits_default(&lim);
    lim.keep_elements = 1;
    lim.walk_all = 1;
    ck_assert_int_eq(parse(&b, &lim, &d, &err), JPIP_OK);
    /* 5 meta elements, 11 image attributes, Pixel Data, padding: one
     * contiguous run of the file from 132 */
    ck_assert_uint_eq(d->nelems, 5 + 11 + 1 + 1);
    ck_assert_uint_eq(d->elems[0].off, 132);
    for (i = 1; i < d->nelems; i++) {
        ck_assert_uint_eq(d->elems[i].off, d->elems[i - 1].end);
    }
    ck_assert_uint_eq(d->elems[d->nelems - 1].end, b.n);
    ck_assert_uint_eq(d->elems[d->nelems - 2].tag, T(0x7FE0, 0x10));
    ck_assert(d->elems[d->nelems - 2].undefined);
    ck_assert_uint_eq(d->dataset_off, d->elems[5].off);
}
END_TEST

/* A file with this transfer syntax and one valid frame, extra elements
 * before the image attributes. */
static tu_buf_t file_with(const char *ts, const tu_buf_t *extra, const char *nframes)
{
    tu_buf_t cs = fake_cs(16, 12, 1, 64, 7), b = tu_buf(pool);
    static const unsigned one = 1;

    part10(&b, ts);
    if (extra != NULL) {
        tu_buf_put(&b, extra->p, extra->n);
    }
    image_attrs(&b, 12, 16, nframes);
    pixel(&b, &cs, 1, &one, TB_BOT);
    return b;
}

static void expect_error(const tu_buf_t *b, jpip_code_t code, const char *msg)
{
    jpip_dicom_t *d;
    jpip_err_t err;
    jpip_code_t rc = parse(b, NULL, &d, &err);

    ck_assert_msg(rc == code, "code %d, want %d: %s", rc, code, err.msg);
    ck_assert_msg(strstr(err.msg, msg) != NULL, "message \"%s\" lacks \"%s\"", err.msg, msg);
}

START_TEST(other_transfer_syntaxes)
{
    static const struct {
        const char *ts, *msg;
    } cases[] = {
        {"1.2.840.10008.1.2", "1.2.840.10008.1.2 (Implicit VR Little Endian): its pixel data is "
                              "not JPEG 2000"},
        {"1.2.840.10008.1.2.1", "(Explicit VR Little Endian)"},
        {"1.2.840.10008.1.2.1.99", "(Deflated Explicit VR Little Endian)"},
        {"1.2.840.10008.1.2.4.50", "(JPEG Baseline (Process 1))"},
        {"1.2.840.10008.1.2.4.94", "(JPIP Referenced)"},
        {"1.2.840.10008.1.2.4.204", "(JPIP HTJ2K Referenced)"},
        {"1.2.840.10008.1.2.5", "(RLE Lossless)"},
        {"1.2.3.4.5", "1.2.3.4.5 (not a known transfer syntax)"},
        {"1.2.840.<script>", "1.2.840.???????? (not a known"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tu_buf_t b = file_with(cases[i].ts, NULL, NULL);
        expect_error(&b, JPIP_E_UNSUPPORTED, cases[i].msg);
    }
    ck_assert_int_eq(jpip_dicom_ts_kind("1.2.840.10008.1.2.4.91"), JPIP_DICOM_TS_J2K);
    ck_assert_int_eq(jpip_dicom_ts_kind("1.2.840.10008.1.2.4.92"), JPIP_DICOM_TS_J2K);
    ck_assert_int_eq(jpip_dicom_ts_kind("1.2.840.10008.1.2.4.93"), JPIP_DICOM_TS_J2K);
    ck_assert_int_eq(jpip_dicom_ts_kind("1.2.840.10008.1.2.4.201"), JPIP_DICOM_TS_HTJ2K);
    ck_assert_int_eq(jpip_dicom_ts_kind("1.2.840.10008.1.2.4.202"), JPIP_DICOM_TS_HTJ2K);
    ck_assert_int_eq(jpip_dicom_ts_kind("1.2.840.10008.1.2.4.9"), JPIP_DICOM_TS_OTHER);
}
END_TEST

START_TEST(hostile_structure)
{
    tu_buf_t good = file_with(TS90, NULL, NULL), b, x;
    jpip_dicom_limits_t lim;
    jpip_dicom_t *d;
    jpip_err_t err;
    size_t cut, i;
    unsigned char *p;

    /* every truncation is an error, never a crash or an overread */
    for (cut = 0; cut < good.n; cut++) {
        b = good;
        b.n = cut;
        ck_assert_int_ne(parse(&b, NULL, &d, &err), JPIP_OK);
    }

    /* a length past the end */
    x = tu_buf(pool);
    hdr(&x, T(9, 0x10), "LO", 60000);
    b = file_with(TS90, &x, NULL);
    expect_error(&b, JPIP_E_FORMAT, "(0009,0010) at offset");
    expect_error(&b, JPIP_E_FORMAT, "runs past the end of the file");

    /* nesting 40 deep */
    x = tu_buf(pool);
    for (i = 0; i < 40; i++) {
        hdr(&x, T(8, 0x1140), "SQ", UNDEF);
        tag_len(&x, ITEM, UNDEF);
    }
    for (i = 0; i < 40; i++) {
        tag_len(&x, ITEM_END, 0);
        tag_len(&x, SEQ_END, 0);
    }
    b = file_with(TS90, &x, NULL);
    expect_error(&b, JPIP_E_FORMAT, "nested more than 32 deep");
    jpip_dicom_limits_default(&lim);
    lim.max_depth = 64;
    ck_assert_int_eq(parse(&b, &lim, &d, &err), JPIP_OK);

    /* undefined lengths that never end */
    x = tu_buf(pool);
    hdr(&x, T(8, 0x1140), "SQ", UNDEF);
    tag_len(&x, ITEM, UNDEF);
    str(&x, T(8, 0x100), "SH", "T");
    b = tu_buf(pool);
    part10(&b, TS90);
    tu_buf_put(&b, x.p, x.n);
    expect_error(&b, JPIP_E_FORMAT, "never ends");
    b.n -= 10; /* and cut inside the last element */
    expect_error(&b, JPIP_E_FORMAT, "never ends");

    /* an item at the top level, an element where an item belongs */
    x = tu_buf(pool);
    tag_len(&x, ITEM, 0);
    b = file_with(TS90, &x, NULL);
    expect_error(&b, JPIP_E_FORMAT, "at the top level");
    x = tu_buf(pool);
    hdr(&x, T(8, 0x1140), "SQ", UNDEF);
    str(&x, T(8, 0x100), "SH", "T");
    b = file_with(TS90, &x, NULL);
    expect_error(&b, JPIP_E_FORMAT, "where a sequence item was expected");

    /* an unknown VR: an Implicit VR data set under an explicit syntax */
    x = tu_buf(pool);
    tag_len(&x, T(8, 0x16), 4);
    tu_buf_put(&x, "1.2 ", 4);
    b = file_with(TS90, &x, NULL);
    expect_error(&b, JPIP_E_FORMAT, "has no known VR");

    /* zero frames, a billion frames, a count that is no number */
    b = file_with(TS90, NULL, "0");
    expect_error(&b, JPIP_E_FORMAT, "Number of Frames (0028,0008) is 0");
    b = file_with(TS90, NULL, "1000000000");
    expect_error(&b, JPIP_E_FORMAT, "only 1 fragments");
    b = file_with(TS90, NULL, "99999999999");
    expect_error(&b, JPIP_E_FORMAT, "not a frame count");
    b = file_with(TS90, NULL, "1e3 ");
    expect_error(&b, JPIP_E_FORMAT, "not a frame count");

    /* the Basic Offset Table pointing outside, or not at a fragment */
    b = file_with(TS90, NULL, NULL);
    p = find(&b, "\xFE\xFF\x00\xE0\x04\x00\x00\x00", 8);
    ck_assert_ptr_nonnull(p);
    memcpy(p + 8, "\x00\xFF\xFF\x7F", 4);
    expect_error(&b, JPIP_E_FORMAT, "Basic Offset Table entry 0");
    memcpy(p + 8, "\x00\x00\x00\x00", 4);
    memcpy(p + 4, "\x03\x00\x00\x00", 4);
    expect_error(&b, JPIP_E_FORMAT, "not a multiple of 4");
    memcpy(p + 4, "\xF0\xFF\xFF\xFF", 4);
    expect_error(&b, JPIP_E_FORMAT, "runs past the end");
    /* a fragment of undefined length */
    memcpy(p + 4, "\x04\x00\x00\x00", 4);
    memcpy(p + 16, "\xFF\xFF\xFF\xFF", 4);
    expect_error(&b, JPIP_E_FORMAT, "undefined length");
    /* no fragments at all */
    b = tu_buf(pool);
    part10(&b, TS90);
    image_attrs(&b, 12, 16, NULL);
    hdr(&b, T(0x7FE0, 0x10), "OB", UNDEF);
    tag_len(&b, ITEM, 0);
    tag_len(&b, SEQ_END, 0);
    expect_error(&b, JPIP_E_FORMAT, "has no fragments");
    /* native pixels, no pixels */
    b = tu_buf(pool);
    part10(&b, TS90);
    image_attrs(&b, 2, 2, NULL);
    el(&b, T(0x7FE0, 0x10), "OB", "\1\2\3\4", 4);
    expect_error(&b, JPIP_E_FORMAT, "is not encapsulated");
    b = tu_buf(pool);
    part10(&b, TS90);
    image_attrs(&b, 2, 2, NULL);
    expect_error(&b, JPIP_E_UNSUPPORTED, "has no Pixel Data");
    /* no transfer syntax, no DICM */
    b = tu_buf(pool);
    part10(&b, TS90);
    b.n = 132;
    expect_error(&b, JPIP_E_FORMAT, "no Transfer Syntax UID");
    b.p[128] = 'X';
    expect_error(&b, JPIP_E_FORMAT, "no \"DICM\"");
}
END_TEST

START_TEST(limits)
{
    tu_buf_t cs[4], b = tu_buf(pool);
    static const unsigned parts[4] = {3, 3, 3, 3};
    jpip_dicom_limits_t lim;
    jpip_dicom_t *d;
    jpip_err_t err;
    size_t i;

    for (i = 0; i < 4; i++) {
        cs[i] = fake_cs(8, 8, 1, 100 + i, 7);
    }
    part10(&b, TS90);
    image_attrs(&b, 8, 8, "4");
    pixel(&b, cs, 4, parts, TB_BOT);
    jpip_dicom_limits_default(&lim);
    lim.max_frames = 3;
    ck_assert_int_eq(parse(&b, &lim, &d, &err), JPIP_E_LIMIT);
    ck_assert_ptr_nonnull(strstr(err.msg, "4 frames; the limit is 3"));
    jpip_dicom_limits_default(&lim);
    lim.max_frags = 11;
    ck_assert_int_eq(parse(&b, &lim, &d, &err), JPIP_E_LIMIT);
    ck_assert_ptr_nonnull(strstr(err.msg, "more than 11 fragments"));
    jpip_dicom_limits_default(&lim);
    lim.max_elements = 20;
    ck_assert_int_eq(parse(&b, &lim, &d, &err), JPIP_E_LIMIT);
    ck_assert_ptr_nonnull(strstr(err.msg, "more than 20 elements"));
    jpip_dicom_limits_default(&lim);
    ck_assert_int_eq(parse(&b, &lim, &d, &err), JPIP_OK);
    check_frames(d, &b, cs, 4);
}
END_TEST

/* ---- the box layout ----------------------------------------------------- */

START_TEST(layout_boxes_and_bins)
{
    tu_buf_t cs[3], b = tu_buf(pool);
    static const unsigned parts[3] = {2, 2, 1};
    jpip_box_layout_t *lay;
    jpip_container_t c;
    apr_uint32_t brand, i, k;
    jpip_err_t err;
    jpip_src_t *src;
    const unsigned char *s;

    for (i = 0; i < 3; i++) {
        cs[i] = fake_cs(20, 10, 3, 90 + 10 * i, 7);
    }
    part10(&b, TS90);
    image_attrs(&b, 10, 20, "3");
    pixel(&b, cs, 3, parts, TB_BOT);
    src = msrc(&b);
    ck_assert_int_eq(jpip_box_detect(src, &c, &brand, &err), JPIP_OK);
    ck_assert_int_eq(c, JPIP_CONTAINER_DICOM);
    ck_assert_msg(jpip_box_layout_build(&lay, pool, src, NULL, &err) == JPIP_OK, "%s", err.msg);
    ck_assert_int_eq(lay->container, JPIP_CONTAINER_DICOM);
    ck_assert_uint_eq(lay->brand, JPIP_BOX_TYPE('j', 'p', 'x', ' '));
    ck_assert_uint_eq(lay->ncodestreams, 3);
    ck_assert_uint_eq(lay->nbins, 4);
    ck_assert_uint_eq(lay->nlayers, 3);
    /* jP, ftyp, jp2h > ihdr colr, xml, 3 placeholders */
    ck_assert_uint_eq(lay->nboxes, 9);
    ck_assert_uint_eq(lay->boxes[2].type, JPIP_BOX_JP2H);
    ck_assert_uint_eq(lay->boxes[2].end, 5);
    ck_assert_uint_eq(lay->boxes[3].parent, 2);
    ck_assert_uint_eq(lay->boxes[5].type, JPIP_BOX_XML);
    /* bin 0 is all of synth, and the boxes tile it */
    ck_assert_uint_eq(lay->bins[0].length, lay->synth_len);
    s = lay->synth;
    for (i = 0, k = 0; i < lay->nboxes; i = lay->boxes[i].end) {
        ck_assert_uint_eq(lay->boxes[i].hdr_bin_off, k);
        k += lay->boxes[i].mode == JPIP_BOX_CSTREAM ? lay->boxes[i].hdr_bin_len
                                                    : 8 + lay->boxes[i].contents_len;
    }
    ck_assert_uint_eq(k, lay->synth_len);
    ck_assert_int_eq(memcmp(s, "\0\0\0\x0cjP  \r\n\x87\n", 12), 0);
    ck_assert_int_eq(memcmp(s + 12,
                            "\0\0\0\x18"
                            "ftypjpx \0\0\0\0jpx jp2 ",
                            24),
                     0);
    /* ihdr: 10 x 20, 3 components of 8 bits... except component 1 (12 bits):
     * BPC 255 and a bpcc box? fake_cs with ssiz 7 keeps them equal */
    ck_assert_int_eq(memcmp(s + 36 + 8, "\0\0\0\x16ihdr\0\0\0\x0a\0\0\0\x14\0\x03\x07\x07\0\0", 22),
                     0);
    for (i = 0; i < 3; i++) {
        const jpip_box_t *bx = &lay->boxes[6 + i];
        const unsigned char *ph = s + bx->hdr_bin_off;
        const jpip_cstream_t *cd = &lay->codestreams[i];
        apr_uint64_t total = 0;

        ck_assert_int_eq(bx->mode, JPIP_BOX_CSTREAM);
        ck_assert_uint_eq(bx->codestream, i);
        ck_assert_uint_eq(bx->hdr_bin_len, 52);
        ck_assert_int_eq(memcmp(ph + 4, "phld\0\0\0\x04", 8), 0);
        ck_assert_uint_eq(jpip_be64(ph + 12), i + 1); /* OrigID */
        ck_assert_uint_eq(jpip_be32(ph + 20), cs[i].n + 8);
        ck_assert_int_eq(memcmp(ph + 24, "jp2c", 4), 0);
        ck_assert_uint_eq(jpip_be64(ph + 44), i); /* CSID */
        ck_assert_uint_eq(lay->bins[i + 1].length, 0);
        ck_assert_uint_eq(lay->bins[i + 1].flags, JPIP_METABIN_CSTREAM);
        ck_assert_uint_eq(cd->box, 6 + i);
        for (k = 0; k < cd->nfrags; k++) {
            total += lay->frags[cd->first_frag + k].len;
        }
        ck_assert_uint_eq(total, cs[i].n);
        ck_assert_uint_eq(cd->length, cs[i].n);
        ck_assert_uint_eq(lay->layer_cs[lay->layers[i].first], i);
    }
    ck_assert_uint_eq(lay->codestreams[0].nfrags, 2);
}
END_TEST

START_TEST(layout_single_frames_and_depths)
{
    tu_buf_t cs = fake_cs(20, 10, 3, 90, 15), b = tu_buf(pool);
    static const unsigned one = 1;
    jpip_box_layout_t *lay;
    jpip_err_t err;
    const unsigned char *s;

    /* one HTJ2K frame, components of 16, 12 and 16 bits: 'jph ', bpcc */
    part10(&b, "1.2.840.10008.1.2.4.201");
    image_attrs(&b, 10, 20, NULL);
    pixel(&b, &cs, 1, &one, TB_NONE);
    ck_assert_int_eq(jpip_box_layout_build(&lay, pool, msrc(&b), NULL, &err), JPIP_OK);
    s = lay->synth;
    ck_assert_uint_eq(lay->brand, JPIP_BOX_TYPE('j', 'p', 'h', ' '));
    ck_assert_int_eq(memcmp(s + 12,
                            "\0\0\0\x14"
                            "ftypjph \0\0\0\0jph ",
                            20),
                     0);
    ck_assert_uint_eq(lay->boxes[3].type, JPIP_BOX_IHDR);
    ck_assert_uint_eq(s[lay->boxes[3].contents_bin_off + 10], 255);
    ck_assert_uint_eq(lay->boxes[4].type, JPIP_BOX_TYPE('b', 'p', 'c', 'c'));
    ck_assert_int_eq(memcmp(s + lay->boxes[4].contents_bin_off, "\x0f\x0b\x0f", 3), 0);
    ck_assert_uint_eq(lay->boxes[2].end, 6);

    /* one J2K frame: 'jp2 '; frame 1 not a codestream: refused */
    b = tu_buf(pool);
    part10(&b, TS90);
    image_attrs(&b, 10, 20, NULL);
    cs = fake_cs(20, 10, 1, 90, 7);
    pixel(&b, &cs, 1, &one, TB_NONE);
    ck_assert_int_eq(jpip_box_layout_build(&lay, pool, msrc(&b), NULL, &err), JPIP_OK);
    ck_assert_uint_eq(lay->brand, JPIP_BOX_TYPE('j', 'p', '2', ' '));
    cs.p[3] = 0x52;
    b = tu_buf(pool);
    part10(&b, TS90);
    image_attrs(&b, 10, 20, NULL);
    pixel(&b, &cs, 1, &one, TB_NONE);
    ck_assert_int_eq(jpip_box_layout_build(&lay, pool, msrc(&b), NULL, &err), JPIP_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "frame 1 is not a JPEG 2000 codestream"));
}
END_TEST

/* ---- the index over a DICOM target ---------------------------------------- */

static unsigned char *encode(const char *name, int w, int h, const char *opts, size_t *len)
{
    const char *dir = tu_tmpdir();
    char *in = apr_psprintf(pool, "%s/%s.pgm", dir, name);
    char *out = apr_psprintf(pool, "%s/%s.j2k", dir, name);

    ck_assert_int_eq(tu_write_synth(in, w, h, 1, 11), 0);
    ck_assert_int_eq(tu_run("%s -i %s -o %s %s", tu_opj_compress(), in, out, opts), 0);
    return tu_read_file(pool, out, len);
}

static unsigned char *bin_bytes(const jpip_index_t *ix, const jpip_bin_t *bin,
                                const unsigned char *file)
{
    unsigned char *out = apr_palloc(pool, (apr_size_t)bin->len + 1);
    jpip_index_bin_copy(ix, bin, file, out);
    return out;
}

START_TEST(index_equals_bare_codestreams)
{
    tu_buf_t cs[2], b = tu_buf(pool);
    static const unsigned parts[2] = {5, 3};
    jpip_index_t *ix, *bare;
    jpip_src_t *src;
    jpip_err_t err;
    size_t n0, n1;
    apr_uint64_t f, i, nb = 0;

    cs[0].p = encode("dcm-a", 70, 50, "-n 3 -t 32,32 -r 10,3", &n0);
    cs[0].n = n0;
    cs[1].p = encode("dcm-b", 64, 40, "-n 2 -SOP -EPH", &n1);
    cs[1].n = n1;
    part10(&b, TS90);
    image_attrs(&b, 50, 70, "2");
    pixel(&b, cs, 2, parts, TB_EOT);
    ck_assert_int_eq(jpip_src_open_mem(&src, pool, b.p, b.n, &err), JPIP_OK);
    ck_assert_msg(jpip_index_build(&ix, pool, src, NULL, NULL, &err) == JPIP_OK, "%s", err.msg);
    ck_assert_uint_eq(jpip_index_ncs(ix), 2);
    for (f = 0; f < 2; f++) {
        jpip_src_t *bs;
        const jpip_ix_cs_t *c = jpip_index_cs(ix, f);
        const jpip_ix_cs_t *bc;

        ck_assert_int_eq(jpip_src_open_mem(&bs, pool, cs[f].p, cs[f].n, &err), JPIP_OK);
        ck_assert_int_eq(jpip_index_build(&bare, pool, bs, NULL, NULL, &err), JPIP_OK);
        bc = jpip_index_cs(bare, 0);
        ck_assert_uint_eq(c->siz.xsiz, bc->siz.xsiz);
        /* every codestream bin of frame f holds the bytes of the bare
         * codestream's same bin, read from the DICOM file's fragments */
        for (i = 0; i < jpip_index_nbins(bare); i++) {
            const jpip_bin_t *x = jpip_index_bin_at(bare, i), *y;
            apr_uint64_t k = i - bc->main_bin;
            const jpip_piece_t *pc;
            apr_uint64_t j;

            if (i < bc->main_bin) {
                continue; /* metadata-bins */
            }
            y = jpip_index_bin_at(ix, c->main_bin + k);
            ck_assert_uint_eq(x->len, y->len);
            ck_assert_int_eq(
                memcmp(bin_bytes(bare, x, cs[f].p), bin_bytes(ix, y, b.p), (size_t)x->len), 0);
            pc = jpip_index_pieces(ix, y);
            for (j = 0; j < y->npieces; j++) {
                ck_assert(!jpip_piece_is_synth(&pc[j]));
                ck_assert(pc[j].off >= 132 && pc[j].off + pc[j].len <= b.n);
            }
            nb++;
        }
    }
    ck_assert_uint_gt(nb, 20);
}
END_TEST

/* ---- frame identifiers ---------------------------------------------------- */

START_TEST(frame_identifiers)
{
    const char *t;
    apr_uint32_t f = 99;
    apr_uint64_t csn;
    jpip_err_t err;

    ck_assert_int_eq(jpip_dicom_frame_id_parse(pool, "ct/a.dcm;frame=3", &t, &f, &err), JPIP_OK);
    ck_assert_str_eq(t, "ct/a.dcm");
    ck_assert_uint_eq(f, 3);
    ck_assert_int_eq(jpip_dicom_frame_id_parse(pool, "ct/a.dcm", &t, &f, &err), JPIP_OK);
    ck_assert_str_eq(t, "ct/a.dcm");
    ck_assert_uint_eq(f, 0);
    ck_assert_int_eq(jpip_dicom_frame_id_parse(pool, "x;y/a.dcm;frame=4294967295", &t, &f, &err),
                     JPIP_OK);
    ck_assert_str_eq(t, "x;y/a.dcm");
    ck_assert_uint_eq(f, 4294967295u);
    ck_assert_int_eq(jpip_dicom_frame_id_parse(pool, "a;b", &t, &f, &err), JPIP_OK);
    ck_assert_str_eq(t, "a;b");
    t = "unchanged";
    f = 7;
    ck_assert_int_eq(jpip_dicom_frame_id_parse(pool, "a.dcm;frame=0", &t, &f, &err),
                     JPIP_E_REQUEST);
    ck_assert_int_eq(jpip_dicom_frame_id_parse(pool, "a.dcm;frame=03", &t, &f, &err),
                     JPIP_E_REQUEST);
    ck_assert_int_eq(jpip_dicom_frame_id_parse(pool, "a.dcm;frame=", &t, &f, &err), JPIP_E_REQUEST);
    ck_assert_int_eq(jpip_dicom_frame_id_parse(pool, "a.dcm;frame=2x", &t, &f, &err),
                     JPIP_E_REQUEST);
    ck_assert_int_eq(jpip_dicom_frame_id_parse(pool, "a.dcm;frame=+2", &t, &f, &err),
                     JPIP_E_REQUEST);
    ck_assert_int_eq(jpip_dicom_frame_id_parse(pool, "a.dcm;frame=4294967296", &t, &f, &err),
                     JPIP_E_REQUEST);
    ck_assert_str_eq(t, "unchanged");
    ck_assert_uint_eq(f, 7);

    ck_assert_int_eq(jpip_dicom_frame_codestream(1, 3, &csn, &err), JPIP_OK);
    ck_assert_uint_eq(csn, 0);
    ck_assert_int_eq(jpip_dicom_frame_codestream(3, 3, &csn, &err), JPIP_OK);
    ck_assert_uint_eq(csn, 2);
    ck_assert_int_eq(jpip_dicom_frame_codestream(4, 3, &csn, &err), JPIP_E_NOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "frame 4 does not exist (the target has 3 frames"));
    ck_assert_int_eq(jpip_dicom_frame_codestream(0, 3, &csn, &err), JPIP_E_NOTFOUND);
}
END_TEST

static Suite *dicom_suite(void)
{
    Suite *s = suite_create("dicom");
    TCase *tc = tcase_create("walker");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, sniff);
    tcase_add_test(tc, frames_every_table);
    tcase_add_test(tc, frames_without_table);
    tcase_add_test(tc, soc_scan_wants_a_real_siz);
    tcase_add_test(tc, eot_lengths_cut_frames);
    tcase_add_test(tc, walks_sequences_private_and_odd);
    tcase_add_test(tc, keeps_all_elements);
    tcase_add_test(tc, other_transfer_syntaxes);
    tcase_add_test(tc, hostile_structure);
    tcase_add_test(tc, limits);
    tcase_add_test(tc, layout_boxes_and_bins);
    tcase_add_test(tc, layout_single_frames_and_depths);
    tcase_add_test(tc, index_equals_bare_codestreams);
    tcase_add_test(tc, frame_identifiers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(dicom_suite, CK_ENV);
}
