/* Unit tests: JP2-family box walker, metadata-bin layout with placeholders,
 * codestream fragments, JPX layers, and the client-side JP2 rebuild
 * (box.c, jp2rebuild.c). Hand-assembled files in memory, the conformance
 * JP2 files, files made by opj_compress, the malformed corpus, and
 * truncated / bit-flipped copies of file1.jp2. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "box.h"
#include "jp2rebuild.h"
#include "jpip_err.h"
#include "piece.h"
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

/* ---- building files in memory ------------------------------------------ */

static void b_fill(tu_buf_t *b, size_t n, unsigned seed)
{
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)('a' + (i * 7 + seed) % 26);
        tu_buf_put(b, &c, 1);
    }
}

static void set32(unsigned char *p, apr_uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static size_t xbox_open(tu_buf_t *b, const char *type)
{
    size_t at = b->n;
    tu_buf_u32(b, 1);
    tu_buf_put(b, type, 4);
    tu_buf_u64(b, 0);
    return at;
}

static void xbox_close(tu_buf_t *b, size_t at)
{
    apr_uint64_t l = b->n - at;
    set32(b->p + at + 8, (apr_uint32_t)(l >> 32));
    set32(b->p + at + 12, (apr_uint32_t)l);
}

static void box_filled(tu_buf_t *b, const char *type, size_t n, unsigned seed)
{
    size_t at = tu_box_open(b, type);
    b_fill(b, n, seed);
    tu_box_close(b, at);
}

static void put_sig_ftyp(tu_buf_t *b, const char *brand, const char *compat)
{
    static const unsigned char sig[] = {0x0D, 0x0A, 0x87, 0x0A};
    size_t at;

    tu_box_data(b, "jP  ", sig, 4);
    at = tu_box_open(b, "ftyp");
    tu_buf_put(b, brand, 4);
    tu_buf_u32(b, 0);
    tu_buf_put(b, compat, strlen(compat));
    tu_box_close(b, at);
}

static void put_jp2h(tu_buf_t *b)
{
    static const unsigned char ihdr[14] = {0, 0, 0, 64, 0, 0, 0, 64, 0, 1, 7, 7, 0, 0};
    static const unsigned char colr[7] = {1, 0, 0, 0, 0, 0, 17};
    size_t at = tu_box_open(b, "jp2h");
    tu_box_data(b, "ihdr", ihdr, sizeof(ihdr));
    tu_box_data(b, "colr", colr, sizeof(colr));
    tu_box_close(b, at);
}

/* A fake codestream: SOC SIZ ... EOC, n bytes in all. */
static void b_codestream(tu_buf_t *b, size_t n, unsigned seed)
{
    static const unsigned char soc[] = {0xFF, 0x4F, 0xFF, 0x51};
    static const unsigned char eoc[] = {0xFF, 0xD9};
    tu_buf_put(b, soc, 4);
    b_fill(b, n - 6, seed);
    tu_buf_put(b, eoc, 2);
}

/* File A: JP2 with every kind of box the layout handles; no ftbl, so a
 * rebuild must give it back byte for byte.
 *   0 jP  1 ftyp  2 rreq  3 jp2h(4 ihdr, 5 colr)  6 xml(small)  7 zzzz
 *   8 uuid(6016, placed -> bin 1)
 *   9 asoc(placed -> bin 2)(10 lbl, 11 xml 6000 (placed -> bin 3),
 *          12 asoc(13 lbl, 14 xml small))
 *   15 jp2c with XLBox (codestream 0 -> stand-in bin 4)
 *   16 xml 5000 with LBox=0 (placed -> bin 5) */
static tu_buf_t file_a(void)
{
    tu_buf_t b = tu_buf(pool);
    size_t at, at2;
    static const unsigned char rreq[] = {1, 0x80, 0x80, 0, 1, 0, 5, 0x80, 0, 0};

    put_sig_ftyp(&b, "jp2 ", "jp2 ");
    tu_box_data(&b, "rreq", rreq, sizeof(rreq));
    put_jp2h(&b);
    tu_box_data(&b, "xml ", "<a/>", 4);
    box_filled(&b, "zzzz", 10, 1);
    at = tu_box_open(&b, "uuid");
    b_fill(&b, 16 + 6000, 2);
    tu_box_close(&b, at);
    at = tu_box_open(&b, "asoc");
    tu_box_data(&b, "lbl ", "hello", 5);
    box_filled(&b, "xml ", 6000, 3);
    at2 = tu_box_open(&b, "asoc");
    tu_box_data(&b, "lbl ", "inner", 5);
    tu_box_data(&b, "xml ", "<b/>", 4);
    tu_box_close(&b, at2);
    tu_box_close(&b, at);
    at = xbox_open(&b, "jp2c");
    b_codestream(&b, 300, 4);
    xbox_close(&b, at);
    tu_buf_u32(&b, 0);
    tu_buf_put(&b, "xml ", 4);
    b_fill(&b, 5000, 5);
    return b;
}

static jpip_src_t *mem_src(const void *p, size_t n)
{
    jpip_src_t *src;
    jpip_err_t err;
    ck_assert_int_eq(jpip_src_open_mem(&src, pool, p, n, &err), JPIP_OK);
    return src;
}

static jpip_code_t build(const tu_buf_t *b, const jpip_box_limits_t *lim, jpip_box_layout_t **lay,
                         jpip_err_t *err)
{
    jpip_err_clear(err);
    return jpip_box_layout_build(lay, pool, mem_src(b->p, b->n), lim, err);
}

/* ---- materialised bins, the rebuild provider ---------------------------- */

typedef struct bins_t {
    apr_uint32_t n;
    unsigned char **data;
    apr_uint64_t *len;
    int *present;
    int *complete;
    /* codestreams, for the rebuild callback */
    const jpip_box_layout_t *lay;
    jpip_src_t *src;
    const unsigned char *file; /* whole file in memory, or NULL */
} bins_t;

static bins_t materialise(const jpip_box_layout_t *lay, jpip_src_t *src, const unsigned char *file)
{
    bins_t m;
    apr_uint32_t i;
    jpip_err_t err;

    m.n = lay->nbins;
    m.data = apr_pcalloc(pool, (m.n + 1) * sizeof(*m.data));
    m.len = apr_pcalloc(pool, (m.n + 1) * sizeof(*m.len));
    m.present = apr_pcalloc(pool, (m.n + 1) * sizeof(int));
    m.complete = apr_pcalloc(pool, (m.n + 1) * sizeof(int));
    m.lay = lay;
    m.src = src;
    m.file = file;
    for (i = 0; i < m.n; i++) {
        m.len[i] = lay->bins[i].length;
        m.data[i] = apr_palloc(pool, (apr_size_t)m.len[i] + 1);
        ck_assert_int_eq(jpip_box_bin_read(lay, src, i, 0, m.data[i], (apr_size_t)m.len[i], &err),
                         JPIP_OK);
        m.present[i] = 1;
        m.complete[i] = 1;
    }
    return m;
}

static jpip_code_t prov_get(void *ctx, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                            const unsigned char **bytes, apr_size_t *len, int *complete,
                            jpip_err_t *err)
{
    bins_t *m = ctx;

    if (cls != JPIP_CLASS_META || csn != 0 || id >= m->n || !m->present[id]) {
        return JPIP_E_NOTFOUND;
    }
    *bytes = m->data[id];
    *len = m->len[id];
    *complete = m->complete[id];
    return JPIP_OK;
}

/* Codestream callback: the original codestream bytes. */
static jpip_code_t cs_orig(void *ctx, apr_uint64_t csid, const unsigned char **bytes,
                           apr_uint64_t *len, jpip_err_t *err)
{
    bins_t *m = ctx;
    const jpip_cstream_t *cs;
    unsigned char *p;
    apr_uint64_t at = 0;
    apr_uint32_t k;

    if (csid >= m->lay->ncodestreams) {
        return jpip_err_set(err, JPIP_E_NOTFOUND, "no codestream %" APR_UINT64_T_FMT, csid);
    }
    cs = &m->lay->codestreams[csid];
    if (m->file != NULL && cs->nfrags == 1) {
        *bytes = m->file + m->lay->frags[cs->first_frag].off;
        *len = cs->length;
        return JPIP_OK;
    }
    p = apr_palloc(pool, (apr_size_t)cs->length + 1);
    for (k = 0; k < cs->nfrags; k++) {
        const jpip_piece_t *f = &m->lay->frags[cs->first_frag + k];
        jpip_code_t rc = jpip_src_read(m->src, f->off, p + at, (apr_size_t)f->len, err);
        if (rc != JPIP_OK) {
            return rc;
        }
        at += f->len;
    }
    *bytes = p;
    *len = cs->length;
    return JPIP_OK;
}

static jpip_code_t write_buf(void *ctx, const void *bytes, apr_size_t len, jpip_err_t *err)
{
    (void)err;
    tu_buf_put(ctx, bytes, len);
    return JPIP_OK;
}

static jpip_code_t rebuild(bins_t *m, tu_buf_t *out, jpip_err_t *err)
{
    jpip_binsrc_t prov;

    prov.ctx = m;
    prov.get = prov_get;
    *out = tu_buf(pool);
    jpip_err_clear(err);
    return jpip_jp2_rebuild(&prov, cs_orig, m, write_buf, out, pool, err);
}

static int has_ftbl_codestream(const jpip_box_layout_t *lay)
{
    apr_uint32_t i;
    for (i = 0; i < lay->ncodestreams; i++) {
        apr_uint32_t b = lay->codestreams[i].box;
        if (b != JPIP_BOX_NONE && lay->boxes[b].type == JPIP_BOX_FTBL) {
            return 1;
        }
    }
    return 0;
}

static int has_type(const jpip_box_layout_t *lay, apr_uint32_t type)
{
    apr_uint32_t i;
    for (i = 0; i < lay->nboxes; i++) {
        if (lay->boxes[i].type == type) {
            return 1;
        }
    }
    return 0;
}

/* Expand every placeholder and compare with the original file. */
static void assert_roundtrip(const unsigned char *file, size_t n, const jpip_box_layout_t *lay,
                             jpip_src_t *src)
{
    bins_t m = materialise(lay, src, file);
    tu_buf_t out;
    jpip_err_t err;
    jpip_code_t rc = rebuild(&m, &out, &err);

    ck_assert_msg(rc == JPIP_OK, "rebuild failed: %s", err.msg);
    ck_assert_uint_eq(out.n, n);
    ck_assert_msg(memcmp(out.p, file, n) == 0, "rebuilt file differs from the original");
}

/* ---- tests: detection ---------------------------------------------------- */

START_TEST(detect_containers)
{
    static const unsigned char raw[] = {0xFF, 0x4F, 0xFF, 0x51, 0, 0};
    jpip_container_t c;
    apr_uint32_t brand;
    jpip_err_t err;
    tu_buf_t b = tu_buf(pool);

    ck_assert_int_eq(jpip_box_detect(mem_src(raw, sizeof(raw)), &c, &brand, &err), JPIP_OK);
    ck_assert_int_eq(c, JPIP_CONTAINER_RAW);

    ck_assert_int_eq(jpip_box_detect(mem_src("GIF89a, no JPEG 2000 here", 25), &c, &brand, &err),
                     JPIP_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "not a JPEG 2000 file"));
    ck_assert_int_eq(jpip_box_detect(mem_src("", 0), &c, &brand, &err), JPIP_E_FORMAT);

    put_sig_ftyp(&b, "jpx ", "jpx jp2 ");
    ck_assert_int_eq(jpip_box_detect(mem_src(b.p, b.n), &c, &brand, &err), JPIP_OK);
    ck_assert_int_eq(c, JPIP_CONTAINER_JPX);
    ck_assert_uint_eq(brand, JPIP_BOX_TYPE('j', 'p', 'x', ' '));

    b = tu_buf(pool);
    put_sig_ftyp(&b, "jph ", "jph ");
    ck_assert_int_eq(jpip_box_detect(mem_src(b.p, b.n), &c, &brand, &err), JPIP_OK);
    ck_assert_int_eq(c, JPIP_CONTAINER_JPH);

    b = tu_buf(pool);
    put_sig_ftyp(&b, "abcd", "jp2 ");
    ck_assert_int_eq(jpip_box_detect(mem_src(b.p, b.n), &c, &brand, &err), JPIP_OK);
    ck_assert_int_eq(c, JPIP_CONTAINER_JP2);

    b = tu_buf(pool);
    put_sig_ftyp(&b, "mjp2", "mjp2");
    ck_assert_int_eq(jpip_box_detect(mem_src(b.p, b.n), &c, &brand, &err), JPIP_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "mjp2"));

    /* signature box but no ftyp */
    b = tu_buf(pool);
    put_sig_ftyp(&b, "jp2 ", "jp2 ");
    memcpy(b.p + 16, "ftyq", 4);
    ck_assert_int_eq(jpip_box_detect(mem_src(b.p, b.n), &c, &brand, &err), JPIP_E_FORMAT);
}
END_TEST

START_TEST(raw_codestream_layout)
{
    tu_buf_t b = tu_buf(pool);
    jpip_box_layout_t *lay;
    jpip_err_t err;
    const apr_uint32_t *cs;
    apr_uint32_t ncs;

    b_codestream(&b, 500, 9);
    ck_assert_int_eq(build(&b, NULL, &lay, &err), JPIP_OK);
    ck_assert_int_eq(lay->container, JPIP_CONTAINER_RAW);
    ck_assert_uint_eq(lay->nboxes, 0);
    ck_assert_uint_eq(lay->nbins, 1);
    ck_assert_uint_eq(lay->bins[0].length, 0);
    ck_assert_uint_eq(lay->bins[0].npieces, 0);
    ck_assert_uint_eq(lay->ncodestreams, 1);
    ck_assert_uint_eq(lay->codestreams[0].length, 500);
    ck_assert_uint_eq(lay->codestreams[0].nfrags, 1);
    ck_assert_uint_eq(lay->frags[0].off, 0);
    ck_assert_uint_eq(lay->frags[0].len, 500);
    ck_assert_int_eq(jpip_box_layer_codestreams(lay, 0, &cs, &ncs, &err), JPIP_OK);
    ck_assert_uint_eq(ncs, 1);
    ck_assert_uint_eq(cs[0], 0);
    ck_assert_int_eq(jpip_box_layer_codestreams(lay, 1, &cs, &ncs, &err), JPIP_E_NOTFOUND);

    /* the rebuild of an empty bin 0 is the bare codestream */
    {
        bins_t m = materialise(lay, mem_src(b.p, b.n), b.p);
        tu_buf_t out;
        ck_assert_int_eq(rebuild(&m, &out, &err), JPIP_OK);
        ck_assert_uint_eq(out.n, b.n);
        ck_assert_int_eq(memcmp(out.p, b.p, b.n), 0);
    }
}
END_TEST

/* ---- tests: hand-assembled file A ----------------------------------------- */

/* Expected placeholder bytes, built independently of box.c. */
static void expect_phld(tu_buf_t *e, const unsigned char *orig_hdr, unsigned hl,
                        apr_uint64_t origid, int cs, apr_uint64_t csid)
{
    *e = tu_buf(pool);
    tu_buf_u32(e, 20 + hl + (cs ? 24 : 0));
    tu_buf_put(e, "phld", 4);
    tu_buf_u32(e, cs ? 4 : 1);
    tu_buf_u64(e, origid);
    tu_buf_put(e, orig_hdr, hl);
    if (cs) {
        tu_buf_u64(e, 0);
        tu_buf_u64(e, 0);
        tu_buf_u64(e, csid);
    }
}

static void read_bin(const jpip_box_layout_t *lay, jpip_src_t *src, apr_uint32_t bin,
                     apr_uint64_t off, apr_size_t n, unsigned char *out)
{
    jpip_err_t err;
    ck_assert_msg(jpip_box_bin_read(lay, src, bin, off, out, n, &err) == JPIP_OK, "%s", err.msg);
}

START_TEST(file_a_box_table)
{
    tu_buf_t a = file_a();
    jpip_box_layout_t *lay;
    jpip_err_t err;
    static const char *types[] = {"jP  ", "ftyp", "rreq", "jp2h", "ihdr", "colr",
                                  "xml ", "zzzz", "uuid", "asoc", "lbl ", "xml ",
                                  "asoc", "lbl ", "xml ", "jp2c", "xml "};
    static const int parents[] = {-1, -1, -1, -1, 3, 3, -1, -1, -1, -1, 9, 9, 9, 12, 12, -1, -1};
    apr_uint32_t i;

    ck_assert_msg(build(&a, NULL, &lay, &err) == JPIP_OK, "%s", err.msg);
    ck_assert_int_eq(lay->container, JPIP_CONTAINER_JP2);
    ck_assert_uint_eq(lay->nboxes, 17);
    for (i = 0; i < 17; i++) {
        ck_assert_uint_eq(lay->boxes[i].type, jpip_be32((const unsigned char *)types[i]));
        ck_assert_uint_eq(lay->boxes[i].parent,
                          parents[i] < 0 ? JPIP_BOX_NONE : (apr_uint32_t)parents[i]);
    }
    ck_assert_uint_eq(lay->boxes[3].end, 6);
    ck_assert_uint_eq(lay->boxes[9].end, 15);
    ck_assert_uint_eq(lay->boxes[12].end, 15);
    ck_assert_uint_eq(lay->boxes[14].depth, 2);
    ck_assert_uint_eq(lay->boxes[15].hdr_len, 16);
    ck_assert_uint_eq(lay->boxes[15].contents_len, 300);
    ck_assert_uint_eq(lay->boxes[15].codestream, 0);
    ck_assert_uint_eq(lay->boxes[16].contents_len, 5000);
    ck_assert(lay->boxes[9].flags & JPIP_BOXF_SUPER);
    ck_assert(!(lay->boxes[8].flags & JPIP_BOXF_SUPER));

    /* modes and bins, ids in depth-first order */
    ck_assert_uint_eq(lay->nbins, 6);
    ck_assert_int_eq(lay->boxes[3].mode, JPIP_BOX_VERBATIM);
    ck_assert_int_eq(lay->boxes[8].mode, JPIP_BOX_PLACED);
    ck_assert_uint_eq(lay->boxes[8].contents_bin, 1);
    ck_assert_int_eq(lay->boxes[9].mode, JPIP_BOX_PLACED);
    ck_assert_uint_eq(lay->boxes[9].contents_bin, 2);
    ck_assert_int_eq(lay->boxes[11].mode, JPIP_BOX_PLACED);
    ck_assert_uint_eq(lay->boxes[11].contents_bin, 3);
    ck_assert_int_eq(lay->boxes[12].mode, JPIP_BOX_VERBATIM);
    ck_assert_int_eq(lay->boxes[15].mode, JPIP_BOX_CSTREAM);
    ck_assert_uint_eq(lay->boxes[15].contents_bin, 4);
    ck_assert(lay->bins[4].flags & JPIP_METABIN_CSTREAM);
    ck_assert_uint_eq(lay->bins[4].length, 0);
    ck_assert_uint_eq(lay->boxes[16].contents_bin, 5);
    ck_assert_uint_eq(lay->bins[1].box, 8);
    ck_assert_uint_eq(lay->bins[2].box, 9);
    ck_assert_uint_eq(lay->bins[3].box, 11);
    ck_assert_uint_eq(lay->bins[5].box, 16);

    /* where headers sit in the bins */
    ck_assert_uint_eq(lay->boxes[10].hdr_bin, 2);
    ck_assert_uint_eq(lay->boxes[10].hdr_bin_off, 0);
    ck_assert_uint_eq(lay->boxes[11].hdr_bin, 2);
    ck_assert_uint_eq(lay->boxes[11].hdr_bin_off, 13);
    ck_assert_uint_eq(lay->boxes[11].hdr_bin_len, 28);
    ck_assert_uint_eq(lay->boxes[12].hdr_bin_off, 41);
    ck_assert_uint_eq(lay->boxes[14].hdr_bin, 2);
    ck_assert_uint_eq(lay->boxes[14].hdr_bin_off, 41 + 8 + 13);
    ck_assert_uint_eq(lay->boxes[14].contents_bin, 2);
    ck_assert_uint_eq(lay->boxes[14].contents_bin_off, 41 + 8 + 13 + 8);
    ck_assert_uint_eq(lay->boxes[14].contents_bin_len, 4);
    ck_assert_uint_eq(lay->boxes[4].hdr_bin, 0);
    ck_assert_uint_eq(lay->boxes[4].hdr_bin_off, lay->boxes[4].file_off);
    ck_assert_uint_eq(lay->boxes[11].contents_bin_len, 6000);
    ck_assert_uint_eq(lay->boxes[9].contents_bin_len, lay->bins[2].length);

    /* codestream 0 = the jp2c contents */
    ck_assert_uint_eq(lay->ncodestreams, 1);
    ck_assert_uint_eq(lay->codestreams[0].nfrags, 1);
    ck_assert_uint_eq(lay->frags[0].off, lay->boxes[15].file_off + 16);
    ck_assert_uint_eq(lay->frags[0].len, 300);
    ck_assert_uint_eq(lay->nlayers, 1);
    ck_assert_uint_eq(jpip_box_find(lay, JPIP_BOX_XML, 12, 0), 14);
    ck_assert_uint_eq(jpip_box_find(lay, JPIP_BOX_XML, JPIP_BOX_NONE, 7), 16);
    ck_assert_uint_eq(jpip_box_find(lay, JPIP_BOX_COMP, JPIP_BOX_NONE, 0), JPIP_BOX_NONE);
}
END_TEST

START_TEST(file_a_bin0_bytes)
{
    tu_buf_t a = file_a(), e;
    jpip_box_layout_t *lay;
    jpip_err_t err;
    jpip_src_t *src = mem_src(a.p, a.n);
    const jpip_box_t *bx = NULL;
    apr_uint64_t verb;
    unsigned char *bin;
    apr_uint64_t off;

    ck_assert_int_eq(jpip_box_layout_build(&lay, pool, src, NULL, &err), JPIP_OK);
    verb = lay->boxes[8].file_off; /* jP .. zzzz verbatim */
    ck_assert_uint_eq(lay->bins[0].npieces, 5);
    ck_assert(!jpip_piece_is_synth(&lay->pieces[0]));
    ck_assert_uint_eq(lay->pieces[0].off, 0);
    ck_assert_uint_eq(lay->pieces[0].len, verb);
    ck_assert_uint_eq(lay->bins[0].length, verb + 28 + 28 + 60 + 28);

    bin = apr_palloc(pool, (apr_size_t)lay->bins[0].length);
    read_bin(lay, src, 0, 0, (apr_size_t)lay->bins[0].length, bin);
    ck_assert_int_eq(memcmp(bin, a.p, (size_t)verb), 0);
    off = verb;
    bx = &lay->boxes[8];
    expect_phld(&e, a.p + bx->file_off, 8, 1, 0, 0);
    ck_assert_int_eq(memcmp(bin + off, e.p, e.n), 0);
    ck_assert_uint_eq(lay->boxes[8].hdr_bin_off, off);
    off += e.n;
    bx = &lay->boxes[9];
    expect_phld(&e, a.p + bx->file_off, 8, 2, 0, 0);
    ck_assert_int_eq(memcmp(bin + off, e.p, e.n), 0);
    off += e.n;
    bx = &lay->boxes[15];
    expect_phld(&e, a.p + bx->file_off, 16, 4, 1, 0);
    ck_assert_uint_eq(e.n, 60);
    ck_assert_int_eq(memcmp(bin + off, e.p, e.n), 0);
    ck_assert_uint_eq(lay->boxes[15].hdr_bin_off, off);
    ck_assert_uint_eq(lay->boxes[15].hdr_bin_len, 60);
    off += e.n;
    bx = &lay->boxes[16];
    expect_phld(&e, a.p + bx->file_off, 8, 5, 0, 0);
    ck_assert_uint_eq(jpip_be32(e.p + 20), 0); /* OrigBH keeps LBox=0 */
    ck_assert_int_eq(memcmp(bin + off, e.p, e.n), 0);
    off += e.n;
    ck_assert_uint_eq(off, lay->bins[0].length);

    /* bin 1: the uuid contents; bin 2: lbl verbatim, phld, inner asoc */
    ck_assert_uint_eq(lay->bins[1].length, 6016);
    ck_assert_uint_eq(lay->bins[1].npieces, 1);
    ck_assert_uint_eq(lay->pieces[lay->bins[1].first_piece].off, lay->boxes[8].file_off + 8);
    ck_assert_uint_eq(lay->bins[2].npieces, 3);
    ck_assert_uint_eq(lay->bins[2].length, 13 + 28 + (8 + 13 + 12));
    bin = apr_palloc(pool, (apr_size_t)lay->bins[2].length);
    read_bin(lay, src, 2, 0, (apr_size_t)lay->bins[2].length, bin);
    ck_assert_int_eq(memcmp(bin, a.p + lay->boxes[10].file_off, 13), 0);
    expect_phld(&e, a.p + lay->boxes[11].file_off, 8, 3, 0, 0);
    ck_assert_int_eq(memcmp(bin + 13, e.p, e.n), 0);
    ck_assert_int_eq(memcmp(bin + 41, a.p + lay->boxes[12].file_off, 33), 0);
    ck_assert_uint_eq(lay->bins[3].length, 6000);
    ck_assert_uint_eq(lay->bins[5].length, 5000);

    /* out-of-range reads are refused */
    ck_assert_int_eq(jpip_box_bin_read(lay, src, 2, 1, bin, (apr_size_t)lay->bins[2].length, &err),
                     JPIP_E_FORMAT);
    ck_assert_int_eq(jpip_box_bin_read(lay, src, 99, 0, bin, 1, &err), JPIP_E_NOTFOUND);

    /* a partial read in the middle, across pieces */
    {
        unsigned char part[40];
        read_bin(lay, src, 0, verb - 10, 40, part);
        ck_assert_int_eq(memcmp(part, a.p + verb - 10, 10), 0);
        expect_phld(&e, a.p + lay->boxes[8].file_off, 8, 1, 0, 0);
        ck_assert_int_eq(memcmp(part + 10, e.p, 28), 0);
    }
}
END_TEST

START_TEST(file_a_roundtrip_and_stable)
{
    tu_buf_t a = file_a();
    jpip_box_layout_t *l1, *l2;
    jpip_err_t err;
    jpip_box_limits_t lim;
    jpip_src_t *src = mem_src(a.p, a.n);

    ck_assert_int_eq(jpip_box_layout_build(&l1, pool, src, NULL, &err), JPIP_OK);
    ck_assert_int_eq(jpip_box_layout_build(&l2, pool, src, NULL, &err), JPIP_OK);
    ck_assert_uint_eq(l1->nboxes, l2->nboxes);
    ck_assert_int_eq(memcmp(l1->boxes, l2->boxes, l1->nboxes * sizeof(jpip_box_t)), 0);
    ck_assert_int_eq(memcmp(l1->bins, l2->bins, l1->nbins * sizeof(jpip_metabin_t)), 0);
    ck_assert_int_eq(memcmp(l1->pieces, l2->pieces, l1->npieces * sizeof(jpip_piece_t)), 0);
    ck_assert_int_eq(memcmp(l1->synth, l2->synth, (size_t)l1->synth_len), 0);
    assert_roundtrip(a.p, a.n, l1, src);

    /* everything behind placeholders: still lossless */
    jpip_box_limits_default(&lim);
    lim.verbatim_max = 0;
    ck_assert_int_eq(jpip_box_layout_build(&l2, pool, src, &lim, &err), JPIP_OK);
    ck_assert_int_eq(l2->boxes[3].mode, JPIP_BOX_PLACED);   /* jp2h */
    ck_assert_int_eq(l2->boxes[4].mode, JPIP_BOX_PLACED);   /* ihdr */
    ck_assert_int_eq(l2->boxes[0].mode, JPIP_BOX_VERBATIM); /* jP */
    ck_assert_int_eq(l2->boxes[2].mode, JPIP_BOX_VERBATIM); /* rreq */
    assert_roundtrip(a.p, a.n, l2, src);

    /* everything verbatim (but the codestream) */
    lim.verbatim_max = 1u << 20;
    ck_assert_int_eq(jpip_box_layout_build(&l2, pool, src, &lim, &err), JPIP_OK);
    ck_assert_uint_eq(l2->nbins, 2);
    assert_roundtrip(a.p, a.n, l2, src);

    /* rebasing moves only the synthesised pieces */
    jpip_box_layout_rebase_synth(l1, 1000);
    ck_assert_uint_eq(l1->pieces[0].off, 0);
    ck_assert_uint_eq(l1->pieces[1].off, JPIP_PIECE_SYNTH | 1000);
}
END_TEST

START_TEST(rebuild_missing_and_changed)
{
    tu_buf_t a = file_a(), out;
    jpip_box_layout_t *lay;
    jpip_err_t err;
    jpip_src_t *src = mem_src(a.p, a.n);
    bins_t m;
    jpip_box_layout_t *rl;

    ck_assert_int_eq(jpip_box_layout_build(&lay, pool, src, NULL, &err), JPIP_OK);
    m = materialise(lay, src, a.p);

    /* a missing xml bin: the box is left out, the rest is intact */
    m.present[3] = 0;
    ck_assert_msg(rebuild(&m, &out, &err) == JPIP_OK, "%s", err.msg);
    ck_assert_uint_eq(out.n, a.n - (8 + 6000));
    ck_assert_int_eq(jpip_box_layout_build(&rl, pool, mem_src(out.p, out.n), NULL, &err), JPIP_OK);
    ck_assert_uint_eq(rl->nboxes, 16);
    ck_assert_uint_eq(rl->boxes[9].contents_len, lay->boxes[9].contents_len - 6008);
    m.present[3] = 1;

    /* incomplete counts as missing */
    m.complete[1] = 0;
    ck_assert_int_eq(rebuild(&m, &out, &err), JPIP_OK);
    ck_assert_uint_eq(out.n, a.n - (8 + 6016));
    m.complete[1] = 1;

    /* bin 0 missing: nothing to rebuild */
    m.present[0] = 0;
    ck_assert_int_eq(rebuild(&m, &out, &err), JPIP_E_NOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "metadata-bin 0"));
    m.present[0] = 1;
}
END_TEST

START_TEST(rebuild_essential_missing)
{
    tu_buf_t a = file_a(), out;
    jpip_box_layout_t *lay;
    jpip_box_limits_t lim;
    jpip_err_t err;
    jpip_src_t *src = mem_src(a.p, a.n);
    bins_t m;

    jpip_box_limits_default(&lim);
    lim.verbatim_max = 0;
    ck_assert_int_eq(jpip_box_layout_build(&lay, pool, src, &lim, &err), JPIP_OK);
    m = materialise(lay, src, a.p);
    /* the jp2h contents bin */
    m.present[lay->boxes[3].contents_bin] = 0;
    ck_assert_int_eq(rebuild(&m, &out, &err), JPIP_E_NOTFOUND);
    ck_assert_msg(strstr(err.msg, "jp2h") != NULL, "%s", err.msg);
    ck_assert_msg(
        strstr(err.msg, apr_psprintf(pool, "metadata-bin %u ", lay->boxes[3].contents_bin)) != NULL,
        "%s", err.msg);
}
END_TEST

/* A codestream callback that returns a different codestream. */
static unsigned char *other_cs;
static apr_uint64_t other_len;

static jpip_code_t cs_other(void *ctx, apr_uint64_t csid, const unsigned char **bytes,
                            apr_uint64_t *len, jpip_err_t *err)
{
    (void)ctx;
    (void)err;
    (void)csid;
    *bytes = other_cs;
    *len = other_len;
    return JPIP_OK;
}

static jpip_code_t cs_none(void *ctx, apr_uint64_t csid, const unsigned char **bytes,
                           apr_uint64_t *len, jpip_err_t *err)
{
    (void)ctx;
    (void)bytes;
    (void)len;
    return jpip_err_set(err, JPIP_E_NOTFOUND, "codestream %" APR_UINT64_T_FMT " not cached", csid);
}

START_TEST(rebuild_fixes_lengths)
{
    tu_buf_t a = file_a(), out = tu_buf(pool);
    jpip_box_layout_t *lay, *rl;
    jpip_err_t err;
    jpip_src_t *src = mem_src(a.p, a.n);
    jpip_binsrc_t prov;
    bins_t m;

    ck_assert_int_eq(jpip_box_layout_build(&lay, pool, src, NULL, &err), JPIP_OK);
    m = materialise(lay, src, a.p);
    prov.ctx = &m;
    prov.get = prov_get;
    other_len = 123;
    other_cs = apr_pcalloc(pool, 123);
    other_cs[0] = 0xFF;
    other_cs[1] = 0x4F;
    ck_assert_int_eq(jpip_jp2_rebuild(&prov, cs_other, NULL, write_buf, &out, pool, &err), JPIP_OK);
    ck_assert_uint_eq(out.n, a.n - 300 - 16 + 123 + 8);
    ck_assert_int_eq(jpip_box_layout_build(&rl, pool, mem_src(out.p, out.n), NULL, &err), JPIP_OK);
    ck_assert_uint_eq(rl->nboxes, 17);
    ck_assert_uint_eq(rl->boxes[15].type, JPIP_BOX_JP2C);
    ck_assert_uint_eq(rl->boxes[15].hdr_len, 8);
    ck_assert_uint_eq(rl->boxes[15].contents_len, 123);
    ck_assert_uint_eq(rl->codestreams[0].length, 123);

    /* the codestream cannot be had: its error comes back */
    out = tu_buf(pool);
    ck_assert_int_eq(jpip_jp2_rebuild(&prov, cs_none, NULL, write_buf, &out, pool, &err),
                     JPIP_E_NOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "codestream 0"));
    ck_assert_uint_eq(out.n, 0);
}
END_TEST

START_TEST(header_put)
{
    unsigned char h[16];

    ck_assert_uint_eq(jpip_box_header_put(h, JPIP_BOX_JP2C, 100), 8);
    ck_assert_uint_eq(jpip_be32(h), 108);
    ck_assert_uint_eq(jpip_be32(h + 4), JPIP_BOX_JP2C);
    ck_assert_uint_eq(jpip_box_header_put(h, JPIP_BOX_JP2C, 0xFFFFFFFFu - 8), 8);
    ck_assert_uint_eq(jpip_be32(h), 0xFFFFFFFFu);
    ck_assert_uint_eq(jpip_box_header_put(h, JPIP_BOX_JP2C, 0xFFFFFFFFu - 7), 16);
    ck_assert_uint_eq(jpip_be32(h), 1);
    ck_assert_uint_eq(jpip_be64(h + 8), 0xFFFFFFFFull - 7 + 16);
    ck_assert_uint_eq(jpip_box_header_put(h, JPIP_BOX_JP2C, 5ull << 32), 16);
    ck_assert_uint_eq(jpip_be64(h + 8), (5ull << 32) + 16);
}
END_TEST

/* Bins crafted by a (hostile) server: placeholder cycles, bad placeholders. */
START_TEST(rebuild_hostile_bins)
{
    tu_buf_t b0 = tu_buf(pool), b1 = tu_buf(pool), out;
    bins_t m;
    jpip_err_t err;
    unsigned char *data[2];
    apr_uint64_t len[2];
    int present[2] = {1, 1}, complete[2] = {1, 1};
    static const unsigned char sig[] = {0x0D, 0x0A, 0x87, 0x0A};

    tu_box_data(&b0, "jP  ", sig, 4);
    /* phld(flag 1) for an asoc whose contents are bin 1 ... */
    tu_buf_u32(&b0, 28);
    tu_buf_put(&b0, "phld", 4);
    tu_buf_u32(&b0, 1);
    tu_buf_u64(&b0, 1);
    tu_buf_u32(&b0, 100);
    tu_buf_put(&b0, "asoc", 4);
    /* ... and bin 1 points at itself */
    tu_buf_u32(&b1, 28);
    tu_buf_put(&b1, "phld", 4);
    tu_buf_u32(&b1, 1);
    tu_buf_u64(&b1, 1);
    tu_buf_u32(&b1, 100);
    tu_buf_put(&b1, "asoc", 4);
    data[0] = b0.p;
    data[1] = b1.p;
    len[0] = b0.n;
    len[1] = b1.n;
    memset(&m, 0, sizeof(m));
    m.n = 2;
    m.data = data;
    m.len = len;
    m.present = present;
    m.complete = complete;
    ck_assert_int_eq(rebuild(&m, &out, &err), JPIP_E_LIMIT);

    /* a placeholder too short to hold OrigBH */
    len[1] = 0;
    set32(b0.p + 12, 20);
    len[0] = 12 + 20;
    ck_assert_int_eq(rebuild(&m, &out, &err), JPIP_E_FORMAT);

    /* a box overrunning bin 0 */
    set32(b0.p + 12, 1000);
    ck_assert_int_eq(rebuild(&m, &out, &err), JPIP_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "overruns"));

    /* a truncated header at the end of bin 0 */
    len[0] = 12 + 5;
    ck_assert_int_eq(rebuild(&m, &out, &err), JPIP_E_FORMAT);
}
END_TEST

/* ---- JPX: fragment tables, layers ----------------------------------------- */

/* File B: JPX, codestream 0 in jp2c, codestream 1 in an ftbl whose two
 * fragments (in reverse file order) sit in an mdat box. Layer 0 uses
 * codestreams 1 and 0 (creg), layer 1 has no creg (codestream 1). */
static tu_buf_t file_b(apr_uint64_t *frag_off, size_t *cs1_len, unsigned dr, int bad_off)
{
    tu_buf_t b = tu_buf(pool);
    size_t at, at2, ft_nf_at, mdat;
    unsigned char cs1[400];
    size_t i;

    put_sig_ftyp(&b, "jpx ", "jpx jp2 ");
    put_jp2h(&b);
    at = tu_box_open(&b, "jplh");
    at2 = tu_box_open(&b, "creg");
    tu_buf_u16(&b, 1);
    tu_buf_u16(&b, 1);
    tu_buf_u16(&b, 1);
    tu_buf_put(&b, "\1\1\0\0", 4);
    tu_buf_u16(&b, 0);
    tu_buf_put(&b, "\1\1\0\0", 4);
    tu_box_close(&b, at2);
    tu_box_close(&b, at);
    at = tu_box_open(&b, "jplh");
    tu_box_data(&b, "lbl ", "second", 6);
    tu_box_close(&b, at);
    at = tu_box_open(&b, "jp2c");
    b_codestream(&b, 200, 11);
    tu_box_close(&b, at);
    at = tu_box_open(&b, "ftbl");
    at2 = tu_box_open(&b, "flst");
    tu_buf_u16(&b, 2);
    ft_nf_at = b.n;
    tu_buf_u64(&b, 0);
    tu_buf_u32(&b, 150);
    tu_buf_u16(&b, 0);
    tu_buf_u64(&b, 0);
    tu_buf_u32(&b, 250);
    tu_buf_u16(&b, (unsigned)dr);
    tu_box_close(&b, at2);
    tu_box_close(&b, at);
    /* codestream 1 = cs1[0..150) then cs1[150..400); stored second part first */
    {
        tu_buf_t t = tu_buf(pool);
        b_codestream(&t, 400, 12);
        memcpy(cs1, t.p, 400);
    }
    at = tu_box_open(&b, "mdat");
    mdat = b.n;
    tu_buf_put(&b, cs1 + 150, 250);
    tu_buf_put(&b, cs1, 150);
    tu_box_close(&b, at);
    /* patch the fragment offsets */
    for (i = 0; i < 2; i++) {
        apr_uint64_t off = i == 0 ? mdat + 250 : mdat;
        if (bad_off && i == 1) {
            off = (apr_uint64_t)b.n - 10;
        }
        set32(b.p + ft_nf_at + 14 * i, (apr_uint32_t)(off >> 32));
        set32(b.p + ft_nf_at + 14 * i + 4, (apr_uint32_t)off);
        frag_off[i] = off;
    }
    *cs1_len = 400;
    return b;
}

START_TEST(jpx_fragments_and_layers)
{
    apr_uint64_t fo[2];
    size_t cs1len;
    tu_buf_t b = file_b(fo, &cs1len, 0, 0), out;
    jpip_box_layout_t *lay, *rl;
    jpip_err_t err;
    jpip_src_t *src = mem_src(b.p, b.n), *fs;
    const apr_uint32_t *cs;
    apr_uint32_t ncs, ft, fl;
    const unsigned char *p;
    bins_t m;
    unsigned char bin0[200];

    ck_assert_msg(build(&b, NULL, &lay, &err) == JPIP_OK, "%s", err.msg);
    ck_assert_int_eq(lay->container, JPIP_CONTAINER_JPX);
    ck_assert_uint_eq(lay->ncodestreams, 2);
    ck_assert_uint_eq(lay->codestreams[1].nfrags, 2);
    ck_assert_uint_eq(lay->codestreams[1].length, 400);
    ck_assert_uint_eq(lay->frags[lay->codestreams[1].first_frag].off, fo[0]);
    ck_assert_uint_eq(lay->frags[lay->codestreams[1].first_frag].len, 150);
    ck_assert_uint_eq(lay->frags[lay->codestreams[1].first_frag + 1].off, fo[1]);
    ck_assert_uint_eq(lay->frags[lay->codestreams[1].first_frag + 1].len, 250);

    /* the fragmented view reads as one codestream */
    ck_assert_int_eq(jpip_src_open_frags(&fs, pool, src,
                                         lay->frags + lay->codestreams[1].first_frag,
                                         lay->codestreams[1].nfrags, &err),
                     JPIP_OK);
    ck_assert_int_eq(jpip_src_peek(fs, 0, 4, &p, &err), JPIP_OK);
    ck_assert_int_eq(p[0], 0xFF);
    ck_assert_int_eq(p[1], 0x4F);
    ck_assert_int_eq(jpip_src_peek(fs, 398, 2, &p, &err), JPIP_OK);
    ck_assert_int_eq(p[1], 0xD9);

    ck_assert_uint_eq(lay->nlayers, 2);
    ck_assert_int_eq(jpip_box_layer_codestreams(lay, 0, &cs, &ncs, &err), JPIP_OK);
    ck_assert_uint_eq(ncs, 2);
    ck_assert_uint_eq(cs[0], 1);
    ck_assert_uint_eq(cs[1], 0);
    ck_assert_int_eq(jpip_box_layer_codestreams(lay, 1, &cs, &ncs, &err), JPIP_OK);
    ck_assert_uint_eq(ncs, 1);
    ck_assert_uint_eq(cs[0], 1);

    /* the ftbl is a Flags=4 placeholder for codestream 1; its flst is in no bin */
    ft = jpip_box_find(lay, JPIP_BOX_FTBL, JPIP_BOX_NONE, 0);
    fl = jpip_box_find(lay, JPIP_BOX_FLST, ft, 0);
    ck_assert_uint_ne(ft, JPIP_BOX_NONE);
    ck_assert_uint_eq(fl, ft + 1);
    ck_assert_int_eq(lay->boxes[ft].mode, JPIP_BOX_CSTREAM);
    ck_assert_uint_eq(lay->boxes[ft].codestream, 1);
    ck_assert_uint_eq(lay->boxes[fl].hdr_bin, JPIP_BOX_NONE);
    read_bin(lay, src, 0, lay->boxes[ft].hdr_bin_off, 52, bin0);
    {
        tu_buf_t e;
        expect_phld(&e, b.p + lay->boxes[ft].file_off, 8, lay->boxes[ft].contents_bin, 1, 1);
        ck_assert_int_eq(memcmp(bin0, e.p, 52), 0);
    }

    /* rebuilt: the ftbl comes back as a jp2c holding codestream 1 */
    m = materialise(lay, src, b.p);
    ck_assert_msg(rebuild(&m, &out, &err) == JPIP_OK, "%s", err.msg);
    ck_assert_int_eq(jpip_box_layout_build(&rl, pool, mem_src(out.p, out.n), NULL, &err), JPIP_OK);
    ck_assert_uint_eq(rl->ncodestreams, 2);
    ck_assert_uint_eq(rl->boxes[rl->codestreams[1].box].type, JPIP_BOX_JP2C);
    ck_assert_uint_eq(rl->codestreams[1].length, 400);
    {
        const unsigned char *c1;
        apr_uint64_t l1;
        ck_assert_int_eq(cs_orig(&m, 1, &c1, &l1, &err), JPIP_OK);
        ck_assert_int_eq(memcmp(out.p + rl->frags[rl->codestreams[1].first_frag].off, c1, 400), 0);
    }
}
END_TEST

/* A long fragment list stays inside the codestream box: no bin of its own. */
START_TEST(jpx_long_fragment_list)
{
    tu_buf_t b = tu_buf(pool);
    size_t at, at2, mdat, list;
    unsigned k;
    jpip_box_layout_t *lay;
    jpip_err_t err;
    apr_uint32_t fl;

    put_sig_ftyp(&b, "jpx ", "jpx ");
    at = tu_box_open(&b, "ftbl");
    at2 = tu_box_open(&b, "flst");
    tu_buf_u16(&b, 300);
    list = b.n;
    for (k = 0; k < 300; k++) {
        tu_buf_u64(&b, 0);
        tu_buf_u32(&b, 1);
        tu_buf_u16(&b, 0);
    }
    tu_box_close(&b, at2);
    tu_box_close(&b, at);
    at = tu_box_open(&b, "mdat");
    mdat = b.n;
    b_codestream(&b, 300, 1);
    tu_box_close(&b, at);
    for (k = 0; k < 300; k++) {
        set32(b.p + list + 14 * k + 4, (apr_uint32_t)(mdat + k));
    }
    ck_assert_msg(build(&b, NULL, &lay, &err) == JPIP_OK, "%s", err.msg);
    ck_assert_uint_eq(lay->ncodestreams, 1);
    ck_assert_uint_eq(lay->codestreams[0].nfrags, 300);
    ck_assert_uint_eq(lay->codestreams[0].length, 300);
    ck_assert_uint_eq(lay->frags[299].off, mdat + 299);
    fl = jpip_box_find(lay, JPIP_BOX_FLST, 2, 0);
    ck_assert_uint_eq(fl, 3);
    ck_assert_uint_eq(lay->boxes[fl].hdr_bin, JPIP_BOX_NONE);
    ck_assert_uint_eq(lay->boxes[fl].contents_bin, JPIP_BOX_NONE);
    ck_assert_uint_eq(lay->nbins, 2); /* bin 0, the codestream stand-in */
}
END_TEST

START_TEST(jpx_external_and_bad_fragments)
{
    apr_uint64_t fo[2];
    size_t l;
    tu_buf_t b;
    jpip_box_layout_t *lay;
    jpip_err_t err;

    b = file_b(fo, &l, 3, 0);
    ck_assert_int_eq(build(&b, NULL, &lay, &err), JPIP_E_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "data reference 3") != NULL, "%s", err.msg);
    ck_assert_msg(strstr(err.msg, "codestream 1") != NULL, "%s", err.msg);

    b = file_b(fo, &l, 0, 1);
    ck_assert_int_eq(build(&b, NULL, &lay, &err), JPIP_E_FORMAT);
    ck_assert_msg(strstr(err.msg, "outside the file") != NULL, "%s", err.msg);
}
END_TEST

START_TEST(jpx_bad_creg_and_flst)
{
    tu_buf_t b = tu_buf(pool);
    size_t at, at2;
    jpip_box_layout_t *lay;
    jpip_err_t err;

    put_sig_ftyp(&b, "jpx ", "jpx ");
    at = tu_box_open(&b, "jplh");
    at2 = tu_box_open(&b, "creg");
    tu_buf_u16(&b, 1);
    tu_buf_u16(&b, 1);
    tu_buf_u16(&b, 7); /* codestream 7: there is none */
    tu_buf_put(&b, "\1\1\0\0", 4);
    tu_box_close(&b, at2);
    tu_box_close(&b, at);
    ck_assert_int_eq(build(&b, NULL, &lay, &err), JPIP_E_FORMAT);
    ck_assert_msg(strstr(err.msg, "creg") && strstr(err.msg, "codestream 7"), "%s", err.msg);

    b = tu_buf(pool);
    put_sig_ftyp(&b, "jpx ", "jpx ");
    at = tu_box_open(&b, "jplh");
    at2 = tu_box_open(&b, "creg");
    tu_buf_u16(&b, 1);
    tu_buf_u16(&b, 1);
    tu_buf_u16(&b, 0);
    tu_box_close(&b, at2);
    tu_box_close(&b, at);
    ck_assert_int_eq(build(&b, NULL, &lay, &err), JPIP_E_FORMAT);
    ck_assert_msg(strstr(err.msg, "4 + 6n"), "%s", err.msg);

    /* flst NF disagreeing with its length */
    b = tu_buf(pool);
    put_sig_ftyp(&b, "jpx ", "jpx ");
    at = tu_box_open(&b, "ftbl");
    at2 = tu_box_open(&b, "flst");
    tu_buf_u16(&b, 3);
    tu_buf_u64(&b, 0);
    tu_buf_u32(&b, 10);
    tu_buf_u16(&b, 0);
    tu_box_close(&b, at2);
    tu_box_close(&b, at);
    ck_assert_int_eq(build(&b, NULL, &lay, &err), JPIP_E_FORMAT);
    ck_assert_msg(strstr(err.msg, "flst"), "%s", err.msg);

    /* ftbl without flst */
    b = tu_buf(pool);
    put_sig_ftyp(&b, "jpx ", "jpx ");
    at = tu_box_open(&b, "ftbl");
    tu_box_close(&b, at);
    ck_assert_int_eq(build(&b, NULL, &lay, &err), JPIP_E_FORMAT);
    ck_assert_msg(strstr(err.msg, "ftbl"), "%s", err.msg);
}
END_TEST

/* ---- malformed structure ---------------------------------------------------- */

START_TEST(malformed_boxes)
{
    tu_buf_t b;
    size_t at;
    jpip_box_layout_t *lay;
    jpip_err_t err;
    jpip_box_limits_t lim;
    int i;
    size_t opens[40];

    /* LBox smaller than a header */
    b = tu_buf(pool);
    put_sig_ftyp(&b, "jp2 ", "jp2 ");
    tu_buf_u32(&b, 5);
    tu_buf_put(&b, "xml ", 4);
    b_fill(&b, 20, 0);
    ck_assert_int_eq(build(&b, NULL, &lay, &err), JPIP_E_FORMAT);
    ck_assert_msg(strstr(err.msg, "'xml '") && strstr(err.msg, "offset 32"), "%s", err.msg);

    /* a box running past the end of the file */
    b = tu_buf(pool);
    put_sig_ftyp(&b, "jp2 ", "jp2 ");
    tu_buf_u32(&b, 100);
    tu_buf_put(&b, "uuid", 4);
    b_fill(&b, 20, 0);
    ck_assert_int_eq(build(&b, NULL, &lay, &err), JPIP_E_FORMAT);
    ck_assert_msg(strstr(err.msg, "overruns the file"), "%s", err.msg);

    /* a sub-box overrunning its superbox */
    b = tu_buf(pool);
    put_sig_ftyp(&b, "jp2 ", "jp2 ");
    at = tu_box_open(&b, "jp2h");
    tu_buf_u32(&b, 40);
    tu_buf_put(&b, "ihdr", 4);
    b_fill(&b, 14, 0);
    tu_box_close(&b, at);
    box_filled(&b, "xml ", 30, 0);
    ck_assert_int_eq(build(&b, NULL, &lay, &err), JPIP_E_FORMAT);
    ck_assert_msg(strstr(err.msg, "'ihdr'") &&
                      strstr(err.msg, "overruns its parent 'jp2h' at offset 32"),
                  "%s", err.msg);

    /* LBox=0 inside a superbox that is not last */
    b = tu_buf(pool);
    put_sig_ftyp(&b, "jp2 ", "jp2 ");
    at = tu_box_open(&b, "asoc");
    tu_buf_u32(&b, 0);
    tu_buf_put(&b, "xml ", 4);
    b_fill(&b, 10, 0);
    tu_box_close(&b, at);
    box_filled(&b, "xml ", 30, 0);
    ck_assert_int_eq(build(&b, NULL, &lay, &err), JPIP_E_FORMAT);
    ck_assert_msg(strstr(err.msg, "LBox=0"), "%s", err.msg);

    /* ... but fine in a superbox that runs to the end of the file */
    b = tu_buf(pool);
    put_sig_ftyp(&b, "jp2 ", "jp2 ");
    tu_buf_u32(&b, 0);
    tu_buf_put(&b, "asoc", 4);
    tu_buf_u32(&b, 0);
    tu_buf_put(&b, "xml ", 4);
    b_fill(&b, 10, 0);
    ck_assert_msg(build(&b, NULL, &lay, &err) == JPIP_OK, "%s", err.msg);
    ck_assert_uint_eq(lay->boxes[3].contents_len, 10);
    assert_roundtrip(b.p, b.n, lay, mem_src(b.p, b.n));

    /* XLBox shorter than its header */
    b = tu_buf(pool);
    put_sig_ftyp(&b, "jp2 ", "jp2 ");
    tu_buf_u32(&b, 1);
    tu_buf_put(&b, "uuid", 4);
    tu_buf_u64(&b, 12);
    b_fill(&b, 20, 0);
    ck_assert_int_eq(build(&b, NULL, &lay, &err), JPIP_E_FORMAT);
    ck_assert_msg(strstr(err.msg, "XLBox"), "%s", err.msg);

    /* trailing bytes that cannot be a box */
    b = tu_buf(pool);
    put_sig_ftyp(&b, "jp2 ", "jp2 ");
    b_fill(&b, 5, 0);
    ck_assert_int_eq(build(&b, NULL, &lay, &err), JPIP_E_FORMAT);
    ck_assert_msg(strstr(err.msg, "truncated box header"), "%s", err.msg);

    /* nesting deeper than 32 */
    b = tu_buf(pool);
    put_sig_ftyp(&b, "jp2 ", "jp2 ");
    for (i = 0; i < 40; i++) {
        opens[i] = tu_box_open(&b, "asoc");
    }
    for (i = 39; i >= 0; i--) {
        tu_box_close(&b, opens[i]);
    }
    ck_assert_int_eq(build(&b, NULL, &lay, &err), JPIP_E_LIMIT);
    ck_assert_msg(strstr(err.msg, "'asoc'") && strstr(err.msg, "deeper than 32"), "%s", err.msg);

    /* too many boxes for the limits */
    b = tu_buf(pool);
    put_sig_ftyp(&b, "jp2 ", "jp2 ");
    for (i = 0; i < 10; i++) {
        box_filled(&b, "free", 4, 0);
    }
    jpip_box_limits_default(&lim);
    lim.max_boxes = 5;
    ck_assert_int_eq(build(&b, &lim, &lay, &err), JPIP_E_LIMIT);
    ck_assert_msg(strstr(err.msg, "more than 5 boxes") && strstr(err.msg, "'free'"), "%s", err.msg);
    lim.max_boxes = 12;
    ck_assert_int_eq(build(&b, &lim, &lay, &err), JPIP_OK);
}
END_TEST

/* ---- real files --------------------------------------------------------------- */

/* Layout, codestream fragments, stability and a lossless round trip. */
static void check_real_file(const char *path, const unsigned char *d, size_t n)
{
    jpip_src_t *src = mem_src(d, n);
    jpip_box_layout_t *l1, *l2;
    jpip_box_limits_t lim;
    jpip_err_t err;
    apr_uint32_t i;

    ck_assert_msg(jpip_box_layout_build(&l1, pool, src, NULL, &err) == JPIP_OK, "%s: %s", path,
                  err.msg);
    ck_assert_msg(l1->ncodestreams >= 1, "%s: no codestream", path);
    for (i = 0; i < l1->ncodestreams; i++) {
        const jpip_cstream_t *cs = &l1->codestreams[i];
        const jpip_box_t *bx = &l1->boxes[cs->box];
        const jpip_piece_t *f = &l1->frags[cs->first_frag];
        ck_assert_uint_eq(cs->nfrags, 1);
        ck_assert_uint_eq(f->off, bx->file_off + bx->hdr_len);
        ck_assert_uint_eq(f->len, bx->contents_len);
        ck_assert_msg(d[f->off] == 0xFF && d[f->off + 1] == 0x4F && d[f->off + 2] == 0xFF &&
                          d[f->off + 3] == 0x51,
                      "%s: codestream %u does not start with SOC SIZ", path, i);
    }
    /* bin 0 starts with the signature and ftyp, verbatim */
    {
        unsigned char h[32];
        read_bin(l1, src, 0, 0, 32, h);
        ck_assert_int_eq(memcmp(h, d, 32), 0);
    }
    ck_assert_int_eq(jpip_box_layout_build(&l2, pool, src, NULL, &err), JPIP_OK);
    ck_assert_uint_eq(l1->nbins, l2->nbins);
    ck_assert_int_eq(memcmp(l1->boxes, l2->boxes, l1->nboxes * sizeof(jpip_box_t)), 0);
    ck_assert_int_eq(memcmp(l1->bins, l2->bins, l1->nbins * sizeof(jpip_metabin_t)), 0);
    ck_assert_int_eq(memcmp(l1->synth, l2->synth, (size_t)l1->synth_len), 0);
    assert_roundtrip(d, n, l1, src);
    jpip_box_limits_default(&lim);
    lim.verbatim_max = 0;
    ck_assert_int_eq(jpip_box_layout_build(&l2, pool, src, &lim, &err), JPIP_OK);
    assert_roundtrip(d, n, l2, src);
}

START_TEST(conformance_files)
{
    const char *dir = tu_testdata("conformance");
    static const char *names[] = {"file1.jp2", "file2.jp2",         "file3.jp2",        "file4.jp2",
                                  "file5.jp2", "file6.jp2",         "file7.jp2",        "file8.jp2",
                                  "file9.jp2", "subsampling_1.jp2", "subsampling_2.jp2"};
    size_t i;

    if (dir == NULL) {
        tu_skip("conformance_files", "test data absent");
        return;
    }
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *path = apr_pstrcat(pool, dir, "/", names[i], NULL);
        size_t n;
        unsigned char *d = tu_read_file(pool, path, &n);
        ck_assert_msg(d != NULL, "cannot read %s", path);
        check_real_file(path, d, n);
    }
    /* file7's jp2h (a 13 kB ICC profile) goes behind a placeholder; file8
     * has an xml box after the codestream */
    {
        size_t n;
        const char *p = apr_pstrcat(pool, dir, "/file7.jp2", NULL);
        unsigned char *d = tu_read_file(pool, p, &n);
        jpip_box_layout_t *lay;
        jpip_err_t err;
        apr_uint32_t h;
        ck_assert_int_eq(jpip_box_layout_build(&lay, pool, mem_src(d, n), NULL, &err), JPIP_OK);
        h = jpip_box_find(lay, JPIP_BOX_JP2H, JPIP_BOX_NONE, 0);
        ck_assert_int_eq(lay->boxes[h].mode, JPIP_BOX_PLACED);
        ck_assert_uint_eq(lay->boxes[h].contents_bin, 1);
        ck_assert_uint_eq(lay->boxes[h + 1].type, JPIP_BOX_IHDR);
        ck_assert_int_eq(lay->boxes[h + 1].mode, JPIP_BOX_VERBATIM);
        ck_assert_uint_eq(lay->boxes[h + 1].hdr_bin, 1);
    }
}
END_TEST

START_TEST(opj_compress_files)
{
    const char *tmp = tu_tmpdir();
    const char *pgm = apr_pstrcat(pool, tmp, "/box_in.ppm", NULL);
    static const char *opts[] = {"", "-n 3 -t 32,32", "-p RPCL -c [64,64],[64,64] -r 20,10,1"};
    size_t i;

    if (tu_write_synth(pgm, 97, 61, 3, 7) != 0) {
        tu_skip("opj_compress_files", "cannot write the input picture");
        return;
    }
    for (i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        const char *out = apr_psprintf(pool, "%s/box_%u.jp2", tmp, (unsigned)i);
        size_t n;
        unsigned char *d;
        if (tu_run("%s -i %s -o %s %s", tu_opj_compress(), pgm, out, opts[i]) != 0) {
            tu_skip("opj_compress_files", "opj_compress not available or failed");
            return;
        }
        d = tu_read_file(pool, out, &n);
        ck_assert_ptr_nonnull(d);
        check_real_file(out, d, n);
    }
}
END_TEST

/* Whether the layout of an n-byte file took a box as cut short by the end
 * of the file, or left trailing bytes that are no box. */
static int cut_short(const jpip_box_layout_t *lay, size_t n)
{
    apr_uint64_t end = 0;
    apr_uint32_t i;

    for (i = 0; i < lay->nboxes; i++) {
        const jpip_box_t *bx = &lay->boxes[i];

        if (bx->flags & JPIP_BOXF_CUT) {
            return 1;
        }
        if (bx->parent == JPIP_BOX_NONE) {
            end = bx->file_off + bx->hdr_len + bx->contents_len;
        }
    }
    return lay->nboxes > 0 && end != n;
}

/* The rebuild of a file cut short has the same boxes, each of its true
 * length now (the lengths that ran past the end are set right). */
static void same_boxes(const jpip_box_layout_t *lay, const tu_buf_t *out, const char *what)
{
    jpip_box_layout_t *lay2;
    jpip_err_t err;
    apr_uint32_t i;

    ck_assert_msg(jpip_box_layout_build(&lay2, pool, mem_src(out->p, out->n), NULL, &err) ==
                      JPIP_OK,
                  "%s: the rebuilt file does not walk: %s", what, err.msg);
    ck_assert_msg(lay2->nboxes == lay->nboxes, "%s: %u boxes rebuilt of %u", what, lay2->nboxes,
                  lay->nboxes);
    for (i = 0; i < lay->nboxes; i++) {
        ck_assert_msg(lay2->boxes[i].type == lay->boxes[i].type &&
                          !(lay2->boxes[i].flags & JPIP_BOXF_CUT) &&
                          lay2->boxes[i].contents_len == lay->boxes[i].contents_len,
                      "%s: box %u differs in the rebuilt file", what, i);
    }
    ck_assert_msg(!cut_short(lay2, out->n), "%s: the rebuilt file is cut short too", what);
}

/* Outcome of a layout attempt on hostile input: a clean result or a clean
 * error, and when it parsed, a rebuild that does not fail unexpectedly. */
static int hostile_ok, hostile_rejected;

static void check_hostile(const unsigned char *d, size_t n, const char *what)
{
    jpip_box_layout_t *lay;
    jpip_err_t err;
    jpip_src_t *src = mem_src(d, n);
    jpip_code_t rc;

    jpip_err_clear(&err);
    rc = jpip_box_layout_build(&lay, pool, src, NULL, &err);
    ck_assert_msg(rc == JPIP_OK || rc == JPIP_E_FORMAT || rc == JPIP_E_LIMIT ||
                      rc == JPIP_E_UNSUPPORTED,
                  "%s: unexpected code %s (%s)", what, jpip_code_name(rc), err.msg);
    if (rc != JPIP_OK) {
        ck_assert_msg(err.msg[0] != '\0', "%s: error without a message", what);
        hostile_rejected++;
        return;
    }
    hostile_ok++;
    {
        bins_t m = materialise(lay, src, d);
        tu_buf_t out;
        rc = rebuild(&m, &out, &err);
        if (has_type(lay, JPIP_BOX_PHLD)) {
            return; /* a real 'phld' in the file reads as a placeholder */
        }
        ck_assert_msg(rc == JPIP_OK, "%s: rebuild: %s", what, err.msg);
        if (cut_short(lay, n)) {
            same_boxes(lay, &out, what);
        } else if (!has_ftbl_codestream(lay)) {
            ck_assert_msg(out.n == n && memcmp(out.p, d, n) == 0, "%s: round trip differs", what);
        }
    }
}

START_TEST(malformed_corpus)
{
    const char *dir = tu_testdata("malformed");
    DIR *dp;
    struct dirent *de;
    int count = 0;

    hostile_ok = hostile_rejected = 0;
    if (dir == NULL) {
        tu_skip("malformed_corpus", "test data absent");
        return;
    }
    dp = opendir(dir);
    ck_assert_ptr_nonnull(dp);
    while ((de = readdir(dp)) != NULL) {
        const char *path;
        unsigned char *d;
        size_t n;
        if (de->d_name[0] == '.') {
            continue;
        }
        path = apr_pstrcat(pool, dir, "/", de->d_name, NULL);
        d = tu_read_file(pool, path, &n);
        if (d == NULL) {
            continue;
        }
        check_hostile(d, n, de->d_name);
        count++;
    }
    closedir(dp);
    ck_assert_int_gt(count, 0);
    printf("malformed_corpus: %d files, %d parsed, %d rejected cleanly\n", count, hostile_ok,
           hostile_rejected);
}
END_TEST

START_TEST(truncated_and_flipped)
{
    const char *dir = tu_testdata("conformance");
    unsigned char *d;
    size_t n, len, i;
    unsigned long st = 12345;

    hostile_ok = hostile_rejected = 0;
    if (dir == NULL) {
        tu_skip("truncated_and_flipped", "test data absent");
        return;
    }
    d = tu_read_file(pool, apr_pstrcat(pool, dir, "/file1.jp2", NULL), &n);
    ck_assert_ptr_nonnull(d);
    /* every length through the box headers, then a sample */
    for (len = 0; len < n; len += (len < 1400 ? 1 : 4099)) {
        apr_pool_t *sub = pool;
        apr_pool_create(&pool, sub);
        check_hostile(d, len, apr_psprintf(pool, "file1.jp2 cut at %u", (unsigned)len));
        apr_pool_destroy(pool);
        pool = sub;
    }
    /* bit flips, mostly in the box headers */
    for (i = 0; i < 3000; i++) {
        size_t pos;
        unsigned bit;
        apr_pool_t *sub = pool;

        st = st * 6364136223846793005ul + 1442695040888963407ul;
        pos = (size_t)((st >> 33) % (i % 4 == 0 ? n : 1400));
        bit = (unsigned)((st >> 20) & 7);
        d[pos] ^= (unsigned char)(1u << bit);
        apr_pool_create(&pool, sub);
        check_hostile(
            d, n, apr_psprintf(pool, "file1.jp2 bit %u of byte %u flipped", bit, (unsigned)pos));
        apr_pool_destroy(pool);
        pool = sub;
        d[pos] ^= (unsigned char)(1u << bit);
    }
    printf("truncated_and_flipped: %d parsed, %d rejected cleanly\n", hostile_ok, hostile_rejected);
}
END_TEST

static Suite *box_suite(void)
{
    Suite *s = suite_create("box");
    TCase *tc = tcase_create("layout");
    TCase *tr = tcase_create("real");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, detect_containers);
    tcase_add_test(tc, raw_codestream_layout);
    tcase_add_test(tc, file_a_box_table);
    tcase_add_test(tc, file_a_bin0_bytes);
    tcase_add_test(tc, file_a_roundtrip_and_stable);
    tcase_add_test(tc, rebuild_missing_and_changed);
    tcase_add_test(tc, rebuild_essential_missing);
    tcase_add_test(tc, rebuild_fixes_lengths);
    tcase_add_test(tc, header_put);
    tcase_add_test(tc, rebuild_hostile_bins);
    tcase_add_test(tc, jpx_fragments_and_layers);
    tcase_add_test(tc, jpx_long_fragment_list);
    tcase_add_test(tc, jpx_external_and_bad_fragments);
    tcase_add_test(tc, jpx_bad_creg_and_flst);
    tcase_add_test(tc, malformed_boxes);
    suite_add_tcase(s, tc);

    tcase_add_checked_fixture(tr, setup, teardown);
    tcase_set_timeout(tr, 300);
    tcase_add_test(tr, conformance_files);
    tcase_add_test(tr, opj_compress_files);
    tcase_add_test(tr, malformed_corpus);
    tcase_add_test(tr, truncated_and_flipped);
    suite_add_tcase(s, tr);
    return s;
}

int main(void)
{
    return tu_main(box_suite, CK_ENV);
}
