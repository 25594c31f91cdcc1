/* Unit tests: what existing JPIP clients need of an answer (serve.c,
 * plan.c, tilepart.c, roi.c, metareq.c, jpp.c): metadata-bin messages one
 * box each, in file order, the bin's bytes unchanged; JPT views that send
 * only the leading tile-parts they need (and the rest when the view grows);
 * named regions of interest from XML and JPX ROI description boxes; the
 * target id on every answer; EOR messages with a body. Messages are read
 * by a small parser of this file, independent of client.c. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "box.h"
#include "client.h"
#include "fields.h"
#include "index.h"
#include "jpp.h"
#include "rebuild.h"
#include "request.h"
#include "roi.h"
#include "serve.h"
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

/* ---------------------------------------------------------- targets */

typedef struct target_t {
    unsigned char *data;
    size_t size;
    jpip_src_t *src;
    jpip_index_t *ix;
    jpip_box_layout_t *layout;
    jpip_roi_list_t rois;
    jpip_serve_target_t tgt;
} target_t;

static void open_target(target_t *t, const unsigned char *data, size_t size, int jp2)
{
    jpip_err_t err;

    memset(t, 0, sizeof(*t));
    t->data = (unsigned char *)data;
    t->size = size;
    ck_assert_int_eq(jpip_src_open_mem(&t->src, pool, data, size, &err), JPIP_OK);
    ck_assert_msg(jpip_index_build(&t->ix, pool, t->src, NULL, NULL, &err) == JPIP_OK, "%s",
                  err.msg);
    if (jp2) {
        const jpip_ix_cs_t *cs = jpip_index_cs(t->ix, 0);

        ck_assert_msg(jpip_box_layout_build(&t->layout, pool, t->src, NULL, &err) == JPIP_OK, "%s",
                      err.msg);
        ck_assert_msg(jpip_roi_collect(t->layout, t->src, cs->siz.xsiz - cs->siz.xosiz,
                                       cs->siz.ysiz - cs->siz.yosiz, pool, &t->rois,
                                       &err) == JPIP_OK,
                      "%s", err.msg);
        t->tgt.layout = t->layout;
        t->tgt.rois = &t->rois;
    }
    t->tgt.ix = t->ix;
    t->tgt.tid = "tid-1";
}

static jpip_code_t buf_write(void *ctx, const void *data, apr_size_t len, jpip_err_t *err)
{
    (void)err;
    tu_buf_put(ctx, data, len);
    return JPIP_OK;
}

static tu_buf_t serve(target_t *t, const char *q, jpip_response_t *resp)
{
    apr_array_header_t *f = NULL;
    jpip_request_t req;
    jpip_serve_opts_t o;
    jpip_err_t err;
    tu_buf_t b = tu_buf(pool);

    memset(&o, 0, sizeof(o));
    ck_assert_msg(jpip_fields_parse(pool, q, strlen(q), NULL, &f, &err) == JPIP_OK, "%s", err.msg);
    ck_assert_msg(jpip_request_parse(pool, f, &req, &err) == JPIP_OK, "%s: %s", q, err.msg);
    ck_assert_msg(jpip_serve_prepare(pool, &t->tgt, &req, NULL, &o, resp, &err) == JPIP_OK,
                  "%s: %s", q, err.msg);
    ck_assert_msg(resp->status == 200, "%s: %d %s", q, resp->status, resp->error);
    ck_assert_msg(jpip_serve_stream(pool, resp, t->ix, t->src, buf_write, &b, &err) == JPIP_OK,
                  "%s: %s", q, err.msg);
    return b;
}

static const char *header(const jpip_response_t *r, const char *name)
{
    int i;

    for (i = 0; i < r->headers->nelts; i++) {
        const jpip_header_t *h = &APR_ARRAY_IDX(r->headers, i, jpip_header_t);
        if (strcmp(h->name, name) == 0) {
            return h->value;
        }
    }
    return NULL;
}

/* ---------------------------------------------------- message parser */

typedef struct msg_t {
    unsigned cls;
    apr_uint64_t id, off, len;
    int complete;
    const unsigned char *body;
} msg_t;

static apr_uint64_t vbas(const unsigned char *p, size_t n, size_t *pos)
{
    apr_uint64_t v = 0;

    for (;;) {
        ck_assert_msg(*pos < n, "VBAS past the end");
        v = (v << 7) | (p[*pos] & 0x7F);
        if (!(p[(*pos)++] & 0x80)) {
            return v;
        }
    }
}

/* All messages of a response, its EOR reason and EOR body. */
static msg_t *messages(const tu_buf_t *b, size_t *count, unsigned *eor, const char **eor_body)
{
    msg_t *m = apr_palloc(pool, sizeof(msg_t) * (b->n + 1));
    size_t pos = 0, n = 0;
    unsigned cls = 0;

    *eor = 0;
    *eor_body = NULL;
    while (pos < b->n) {
        unsigned char first = b->p[pos];
        apr_uint64_t id;

        if (first == 0) {
            apr_uint64_t blen;

            ck_assert_uint_lt(pos + 1, b->n);
            *eor = b->p[pos + 1];
            pos += 2;
            blen = vbas(b->p, b->n, &pos);
            ck_assert_uint_eq(pos + blen, b->n); /* the EOR ends the response */
            *eor_body = apr_pstrmemdup(pool, (const char *)b->p + pos, (apr_size_t)blen);
            break;
        }
        m[n].complete = (first >> 4) & 1;
        id = first & 0x0F;
        pos++;
        if (first & 0x80) {
            size_t p2 = pos;
            id = (id << 7) | vbas(b->p, b->n, &p2);
            pos = p2;
        }
        if (((first >> 5) & 3) >= 2) {
            cls = (unsigned)vbas(b->p, b->n, &pos);
        }
        if (((first >> 5) & 3) == 3) {
            (void)vbas(b->p, b->n, &pos);
        }
        m[n].cls = cls;
        m[n].id = id;
        m[n].off = vbas(b->p, b->n, &pos);
        m[n].len = vbas(b->p, b->n, &pos);
        if (cls & 1) {
            (void)vbas(b->p, b->n, &pos);
        }
        ck_assert_uint_le(pos + m[n].len, b->n);
        m[n].body = b->p + pos;
        pos += (size_t)m[n].len;
        n++;
    }
    ck_assert_msg(*eor != 0, "no EOR");
    *count = n;
    return m;
}

/* ----------------------------------------------------- test images */

static const char *compress(const char *name, int w, int h, const char *ext, const char *opts)
{
    char in[600];
    const char *out = apr_psprintf(pool, "%s/%s.%s", tu_tmpdir(), name, ext);

    snprintf(in, sizeof(in), "%s/%s.ppm", tu_tmpdir(), name);
    ck_assert_int_eq(tu_write_synth(in, w, h, 3, 11), 0);
    ck_assert_msg(tu_run("%s -i '%s' -o '%s' %s", tu_opj_compress(), in, out, opts) == 0,
                  "opj_compress %s failed", opts);
    return out;
}

/* A JP2 from opj_compress with metadata boxes appended: a small XML box
 * naming two regions (verbatim in bin 0), a large XML box (behind a
 * placeholder), and an 'asoc' over 4 KiB (so placed too, its bin holding
 * its sub-boxes) associating a label with a ROI description box. */
static tu_buf_t jp2_with_metadata(void)
{
    const char *path = compress("meta", 200, 150, "jp2", "-n 3 -r 20,5");
    size_t n, at;
    unsigned char *jp2 = tu_read_file(pool, path, &n);
    tu_buf_t b = tu_buf(pool);
    static const char xml[] = "<xmlbox>\n <roi name=\"island\" x=\"100\" y=\"50\" w=\"64\" "
                              "h=\"32\"/>\n <roi  h='10' w='20' y='140' x='5' name='ship' />\n"
                              " <roi name=\"bad\" x=\"-1\" y=\"0\" w=\"4\" h=\"4\"/>\n"
                              " <roi name=\"outside\" x=\"900\" y=\"0\" w=\"4\" h=\"4\"/>\n"
                              "</xmlbox>\n";
    char *big = apr_palloc(pool, 6000);
    unsigned char roid[1 + 19];

    ck_assert_ptr_nonnull(jp2);
    tu_buf_put(&b, jp2, n);
    tu_box_data(&b, "xml ", xml, sizeof(xml) - 1);
    memset(big, ' ', 6000);
    memcpy(big, "<big/>", 6);
    tu_box_data(&b, "xml ", big, 6000);
    /* asoc( lbl "harbour", roid(one rectangle 150,10 40x20), xml padding ) */
    memset(roid, 0, sizeof(roid));
    roid[0] = 1;
    roid[4 + 3] = 150; /* X (Rstatic, Rtyp, Rcp come first) */
    roid[8 + 3] = 10;  /* Y */
    roid[12 + 3] = 40; /* W */
    roid[16 + 3] = 20; /* H */
    at = tu_box_open(&b, "asoc");
    tu_box_data(&b, "lbl ", "harbour", 7);
    tu_box_data(&b, "roid", roid, sizeof(roid));
    tu_box_data(&b, "xml ", big, 5000);
    tu_box_close(&b, at);
    return b;
}

/* Bin 0 (or any metadata-bin) as the index has it. */
static unsigned char *meta_bin(const target_t *t, apr_uint64_t id, apr_uint64_t *len)
{
    const jpip_bin_t *bin;
    jpip_err_t err;
    unsigned char *out;

    ck_assert_int_eq(jpip_index_bin(t->ix, JPIP_CLASS_META, 0, id, &bin, &err), JPIP_OK);
    out = apr_palloc(pool, bin->len + 1);
    jpip_index_bin_copy(t->ix, bin, t->data, out);
    *len = bin->len;
    return out;
}

/* Each message of bin `id` is one whole box: it starts where the last one
 * ended, the box's length is the message's, and together they are the
 * bin's bytes. Returns the number of messages. */
static size_t check_one_box_each(const target_t *t, const msg_t *m, size_t n, apr_uint64_t id)
{
    apr_uint64_t blen, at = 0;
    unsigned char *bin = meta_bin(t, id, &blen);
    size_t i, k = 0;

    for (i = 0; i < n; i++) {
        apr_uint64_t lbox;

        if (m[i].cls != JPIP_CLASS_META || m[i].id != id) {
            continue;
        }
        k++;
        ck_assert_uint_eq(m[i].off, at); /* in file order, nothing skipped */
        ck_assert_uint_ge(m[i].len, 8);
        lbox = jpip_be32(m[i].body);
        if (lbox == 1) {
            lbox = jpip_be64(m[i].body + 8);
        }
        ck_assert_msg(lbox == m[i].len,
                      "bin %" APR_UINT64_T_FMT " message at %" APR_UINT64_T_FMT
                      ": %" APR_UINT64_T_FMT " bytes, box of %" APR_UINT64_T_FMT,
                      id, m[i].off, m[i].len, lbox);
        ck_assert_int_eq(memcmp(m[i].body, bin + m[i].off, (size_t)m[i].len), 0);
        at += m[i].len;
        ck_assert_int_eq(m[i].complete, at == blen);
    }
    ck_assert_uint_eq(at, blen);
    return k;
}

START_TEST(metadata_one_box_per_message)
{
    tu_buf_t file = jp2_with_metadata();
    target_t t;
    jpip_response_t resp;
    tu_buf_t b;
    msg_t *m;
    size_t n, i, nboxes = 0;
    unsigned eor;
    const char *body;
    apr_uint32_t x;
    apr_uint32_t asoc_bin = JPIP_BOX_NONE;

    open_target(&t, file.p, file.n, 1);
    for (x = 0; x < t.layout->nboxes; x = t.layout->boxes[x].end) {
        nboxes++;
        if (t.layout->boxes[x].type == JPIP_BOX_ASOC) {
            ck_assert_int_eq(t.layout->boxes[x].mode, JPIP_BOX_PLACED);
            asoc_bin = t.layout->boxes[x].contents_bin;
        }
    }
    ck_assert_uint_ge(nboxes, 7); /* jP, ftyp, jp2h, jp2c, xml, xml, asoc */
    ck_assert_uint_ne(asoc_bin, JPIP_BOX_NONE);

    /* bin 0 of a view: one message per top-level box */
    b = serve(&t, "fsiz=50,40", &resp);
    m = messages(&b, &n, &eor, &body);
    ck_assert_uint_eq(check_one_box_each(&t, m, n, 0), nboxes);
    /* every metadata-bin asked for: the placed superbox's bin goes out a
     * sub-box at a time too (lbl, roid, then the xml's placeholder) */
    b = serve(&t, "metareq=[*]!!", &resp);
    m = messages(&b, &n, &eor, &body);
    ck_assert_uint_eq(check_one_box_each(&t, m, n, 0), nboxes);
    ck_assert_uint_eq(check_one_box_each(&t, m, n, asoc_bin), 3);
    /* a placed plain box's bin is its raw contents: one message */
    for (i = 0; i < n; i++) {
        if (m[i].cls == JPIP_CLASS_META && m[i].id != 0 && m[i].id != asoc_bin &&
            m[i].len >= 5000) {
            ck_assert_int_eq(m[i].complete, 1);
            ck_assert_uint_eq(m[i].off, 0);
        }
    }
    /* len cuts inside a box: the bytes so far are still in order */
    b = serve(&t, "fsiz=50,40&len=100", &resp);
    m = messages(&b, &n, &eor, &body);
    ck_assert_uint_eq(eor, JPIP_EOR_BYTE_LIMIT);
    ck_assert_uint_ge(n, 2);
    for (i = 1; i < n; i++) {
        ck_assert_uint_eq(m[i].off, m[i - 1].off + m[i - 1].len);
    }
    /* a raw codestream's empty bin 0 is still one empty, complete message */
    {
        const char *raw = compress("raw", 64, 48, "j2k", "-n 2");
        size_t rn;
        unsigned char *rd = tu_read_file(pool, raw, &rn);
        target_t r;

        open_target(&r, rd, rn, 0);
        b = serve(&r, "fsiz=64,48", &resp);
        m = messages(&b, &n, &eor, &body);
        ck_assert_uint_eq(m[0].cls, JPIP_CLASS_META);
        ck_assert_uint_eq(m[0].len, 0);
        ck_assert_int_eq(m[0].complete, 1);
    }
}
END_TEST

/* --------------------------------------------------------------- JPT */

/* Byte ends of the tile-parts of tile `tile` in a raw codestream, by
 * walking SOT markers (independent of the index). */
static size_t tile_part_ends(const unsigned char *d, size_t n, unsigned tile, apr_uint64_t *ends,
                             size_t max)
{
    size_t pos = 2, k = 0;
    apr_uint64_t at = 0;

    /* skip the main header: marker segments up to the first SOT */
    while (pos + 4 <= n && !(d[pos] == 0xFF && d[pos + 1] == 0x90)) {
        pos += 2 + jpip_be16(d + pos + 2);
    }
    while (pos + 12 <= n && d[pos] == 0xFF && d[pos + 1] == 0x90) {
        apr_uint32_t psot = jpip_be32(d + pos + 6);

        if (psot == 0) {
            psot = (apr_uint32_t)(n - 2 - pos);
        }
        if (jpip_be16(d + pos + 4) == tile && k < max) {
            at += psot;
            ends[k++] = at;
        }
        pos += psot;
    }
    return k;
}

static int same_decode(const char *a, const char *b, unsigned reduce)
{
    const char *da = apr_psprintf(pool, "%s/da", tu_tmpdir());
    const char *db = apr_psprintf(pool, "%s/db", tu_tmpdir());
    size_t na, nb;
    unsigned char *pa, *pb;

    if (tu_run("%s -i '%s' -o '%s.ppm' -r %u", tu_opj_decompress(), a, da, reduce) != 0 ||
        tu_run("%s -i '%s' -o '%s.ppm' -r %u", tu_opj_decompress(), b, db, reduce) != 0) {
        return 0;
    }
    pa = tu_read_file(pool, apr_pstrcat(pool, da, ".ppm", NULL), &na);
    pb = tu_read_file(pool, apr_pstrcat(pool, db, ".ppm", NULL), &nb);
    return pa != NULL && pb != NULL && na == nb && memcmp(pa, pb, na) == 0;
}

/* Rebuild the codestream from an answer (client.c, rebuild.c) to path. */
static void rebuild_to(const tu_buf_t *b, const char *path)
{
    jpip_cache_t *c;
    jpip_reader_t *r;
    jpip_binsrc_t bs;
    jpip_rebuild_opts_t o;
    unsigned char *out;
    apr_size_t outlen;
    jpip_err_t err;

    ck_assert_int_eq(jpip_cache_create(&c, pool, NULL, &err), JPIP_OK);
    ck_assert_int_eq(jpip_reader_create(&r, c, pool, &err), JPIP_OK);
    ck_assert_msg(jpip_reader_feed(r, b->p, b->n, &err) == JPIP_OK, "%s", err.msg);
    bs.ctx = c;
    bs.get = jpip_cache_binsrc_get;
    jpip_rebuild_opts_init(&o);
    ck_assert_msg(jpip_rebuild_mem(&bs, &o, pool, &out, &outlen, NULL, &err) == JPIP_OK, "%s",
                  err.msg);
    ck_assert_int_eq(tu_write_file(path, out, outlen), 0);
}

START_TEST(jpt_leading_tile_parts)
{
    /* one tile, a tile-part per resolution (the layout OpenJPIP documents
     * for JPT), 6 resolutions */
    const char *path = compress("tpr", 256, 192, "j2k", "-n 6 -TP R -r 30,8,1 -p RPCL");
    size_t n;
    unsigned char *d = tu_read_file(pool, path, &n);
    apr_uint64_t ends[64];
    size_t ntp = tile_part_ends(d, n, 0, ends, 64), i, nm;
    target_t t;
    jpip_response_t resp;
    tu_buf_t b, full;
    msg_t *m;
    unsigned eor;
    const char *body;
    const char *rebuilt = apr_psprintf(pool, "%s/tpr-rebuilt.j2k", tu_tmpdir());
    unsigned reduce;

    ck_assert_uint_eq(ntp, 6);
    open_target(&t, d, n, 0);
    full = serve(&t, "type=jpt-stream&fsiz=256,192", &resp);
    for (reduce = 0; reduce <= 5; reduce++) {
        const char *q =
            apr_psprintf(pool, "type=jpt-stream&fsiz=%u,%u", 256u >> reduce, 192u >> reduce);
        apr_uint64_t sent = 0;

        b = serve(&t, q, &resp);
        m = messages(&b, &nm, &eor, &body);
        for (i = 0; i < nm; i++) {
            if (m[i].cls == JPIP_CLASS_TILE) {
                ck_assert_uint_eq(m[i].off, sent);
                sent += m[i].len;
                ck_assert_int_eq(m[i].complete, reduce == 0);
            }
        }
        /* resolutions 0 .. 5 - reduce: exactly that many leading tile-parts */
        ck_assert_msg(sent == ends[5 - reduce],
                      "reduce %u: %" APR_UINT64_T_FMT " tile bytes, want %" APR_UINT64_T_FMT,
                      reduce, sent, ends[5 - reduce]);
        ck_assert_uint_eq(eor, JPIP_EOR_WINDOW_DONE);
        rebuild_to(&b, rebuilt);
        ck_assert_msg(same_decode(path, rebuilt, reduce), "reduce %u: pixels differ", reduce);
    }
    ck_assert_uint_lt(ends[3] * 4, ends[5]); /* a quarter-size view is a small part */
    ck_assert_uint_gt(full.n, ends[5]);

    /* the view grows: a client holding the quarter-size prefix gets the rest
     * from where it stopped */
    b = serve(
        &t,
        apr_psprintf(pool, "type=jpt-stream&fsiz=256,192&model=Hm,T0:%" APR_UINT64_T_FMT, ends[3]),
        &resp);
    m = messages(&b, &nm, &eor, &body);
    for (i = 0; i < nm; i++) {
        if (m[i].cls == JPIP_CLASS_TILE) {
            ck_assert_uint_eq(m[i].off, ends[3]);
            ck_assert_uint_eq(m[i].off + m[i].len, ends[5]);
            ck_assert_int_eq(m[i].complete, 1);
        }
    }

    /* tile-parts by layer: a layer limit takes the leading ones */
    path = compress("tpl", 128, 96, "j2k", "-n 3 -TP L -r 40,10,2 -p LRCP");
    d = tu_read_file(pool, path, &n);
    ntp = tile_part_ends(d, n, 0, ends, 64);
    ck_assert_uint_eq(ntp, 3);
    open_target(&t, d, n, 0);
    for (i = 1; i <= 3; i++) {
        apr_uint64_t sent = 0;
        size_t k;

        b = serve(&t, apr_psprintf(pool, "type=jpt-stream&fsiz=128,96&layers=%u", (unsigned)i),
                  &resp);
        m = messages(&b, &nm, &eor, &body);
        for (k = 0; k < nm; k++) {
            if (m[k].cls == JPIP_CLASS_TILE) {
                sent += m[k].len;
            }
        }
        ck_assert_uint_eq(sent, ends[i - 1]);
    }
    /* one tile-part per tile: nothing to leave out */
    path = compress("tp1", 128, 96, "j2k", "-n 3 -r 40,10");
    d = tu_read_file(pool, path, &n);
    ck_assert_uint_eq(tile_part_ends(d, n, 0, ends, 64), 1);
    open_target(&t, d, n, 0);
    b = serve(&t, "type=jpt-stream&fsiz=32,24", &resp);
    m = messages(&b, &nm, &eor, &body);
    for (i = 0; i < nm; i++) {
        if (m[i].cls == JPIP_CLASS_TILE) {
            ck_assert_uint_eq(m[i].len, ends[0]);
        }
    }
}
END_TEST

/* --------------------------------------------------------------- ROI */

START_TEST(regions_of_interest)
{
    tu_buf_t file = jp2_with_metadata();
    target_t t;
    jpip_response_t resp;
    tu_buf_t b;
    size_t n;
    unsigned eor;
    const char *body;

    open_target(&t, file.p, file.n, 1);
    /* the XML regions (the malformed and outside ones left out), then the
     * labelled ROI description box */
    ck_assert_uint_eq(t.rois.n, 3);
    ck_assert_str_eq(t.rois.rois[0].name, "island");
    ck_assert_uint_eq(t.rois.rois[0].x, 100);
    ck_assert_uint_eq(t.rois.rois[0].y, 50);
    ck_assert_uint_eq(t.rois.rois[0].w, 64);
    ck_assert_uint_eq(t.rois.rois[0].h, 32);
    ck_assert_str_eq(t.rois.rois[1].name, "ship");
    ck_assert_uint_eq(t.rois.rois[1].x, 5);
    ck_assert_uint_eq(t.rois.rois[1].h, 10); /* clipped to the image */
    ck_assert_str_eq(t.rois.rois[2].name, "harbour");
    ck_assert_uint_eq(t.rois.rois[2].x, 150);
    ck_assert_uint_eq(t.rois.rois[2].y, 10);
    ck_assert_uint_eq(t.rois.rois[2].w, 40);
    ck_assert_uint_eq(t.rois.rois[2].h, 20);

    /* by name: the window is the region, at full resolution */
    b = serve(&t, "roi=island", &resp);
    ck_assert_str_eq(header(&resp, "JPIP-roi"), "roi=island;fsiz=200,150;rsiz=64,32;roff=100,50");
    ck_assert_str_eq(header(&resp, "JPIP-fsiz"), "200,150");
    ck_assert_str_eq(header(&resp, "JPIP-roff"), "100,50");
    ck_assert_str_eq(header(&resp, "JPIP-rsiz"), "64,32");
    (void)messages(&b, &n, &eor, &body);
    ck_assert_uint_eq(eor, JPIP_EOR_WINDOW_DONE);
    ck_assert_uint_gt(n, 3); /* image data came */
    /* with a frame: the region scaled into it (offset down, end up) */
    serve(&t, "roi=harbour&fsiz=100,75", &resp);
    ck_assert_str_eq(header(&resp, "JPIP-roi"), "roi=harbour;fsiz=100,75;rsiz=20,10;roff=75,5");
    /* dynamic: the region meeting the request's window most */
    serve(&t, "roi=dynamic&fsiz=200,150&roff=0,120&rsiz=60,30", &resp);
    ck_assert_ptr_nonnull(strstr(header(&resp, "JPIP-roi"), "roi=ship;"));
    serve(&t, "roi=dynamic", &resp);
    ck_assert_ptr_nonnull(strstr(header(&resp, "JPIP-roi"), "roi=island;"));
    /* an unknown name: no-roi, the window as asked, the names in the EOR */
    b = serve(&t, "roi=volcano&fsiz=50,40", &resp);
    ck_assert_str_eq(header(&resp, "JPIP-roi"), "roi=no-roi");
    ck_assert_ptr_null(header(&resp, "JPIP-roff"));
    (void)messages(&b, &n, &eor, &body);
    ck_assert_uint_eq(eor, JPIP_EOR_WINDOW_DONE);
    ck_assert_ptr_nonnull(strstr(body, "'volcano'"));
    ck_assert_ptr_nonnull(strstr(body, "island, ship, harbour"));
    ck_assert_uint_gt(n, 3);
    /* a target without regions says so */
    t.tgt.rois = NULL;
    b = serve(&t, "roi=island", &resp);
    ck_assert_str_eq(header(&resp, "JPIP-roi"), "roi=no-roi");
    (void)messages(&b, &n, &eor, &body);
    ck_assert_ptr_nonnull(strstr(body, "names no regions"));
}
END_TEST

START_TEST(hostile_xml_regions)
{
    static const char *const xml[] = {
        "<roi name=\"a\" x=\"1\" y=\"1\" w=\"1\"",             /* cut short */
        "<roi name=\"a\" x=\"1\" y=\"1\" w=\"1\" h=\"1e9\"/>", /* not an integer */
        "<roi name=\"a b\" x=\"1\" y=\"1\" w=\"1\" h=\"1\"/>", /* not a token */
        "<roi name=\"a\" x=\"99999999999999\" y=\"1\" w=\"1\" h=\"1\"/>",
        "<roi name=\"a\" x=\"1\" y=\"1\" w=\"0\" h=\"1\"/>",     /* empty */
        "<roi name=\"a\" x=\"1\" x=\"1\" y=\"1\" w=\"1\"/>",     /* h missing */
        "<roiname=\"a\" x=\"1\" y=\"1\" w=\"1\" h=\"1\"/>",      /* not the element */
        "<roi name=\"a\" x=1 y=\"1\" w=\"1\" h=\"1\"/>",         /* unquoted */
        "<roi name=\"a\" x=\"1\" y=\"1\" w=\"1\" h=\"1",         /* unterminated value */
        "<roi name=\"&amp;\" x=\"1\" y=\"1\" w=\"1\" h=\"1\"/>", /* an entity */
    };
    const char *path = compress("hostile", 64, 48, "jp2", "-n 2");
    size_t n, i;
    unsigned char *jp2 = tu_read_file(pool, path, &n);

    for (i = 0; i < sizeof(xml) / sizeof(xml[0]); i++) {
        tu_buf_t b = tu_buf(pool);
        target_t t;

        tu_buf_put(&b, jp2, n);
        tu_box_data(&b, "xml ", xml[i], strlen(xml[i]));
        open_target(&t, b.p, b.n, 1);
        ck_assert_msg(t.rois.n == 0, "'%s' gave a region", xml[i]);
    }
    {
        /* a NUL where an attribute name is (found by fuzzing) */
        static const char nul[] = "<roi name=\"a\" x=\"1\" y=\"1\" w=\"1\" h=\"1\" \0=\"2\"/>";
        tu_buf_t b = tu_buf(pool);
        target_t t;

        tu_buf_put(&b, jp2, n);
        tu_box_data(&b, "xml ", nul, sizeof(nul) - 1);
        open_target(&t, b.p, b.n, 1);
        ck_assert_uint_eq(t.rois.n, 1);
    }
}
END_TEST

/* ------------------------------------------------------ the rest */

START_TEST(eor_with_body)
{
    unsigned char out[JPIP_JPP_EOR_HEAD_MAX];

    ck_assert_uint_eq(jpip_jpp_eor_head(JPIP_EOR_NONSPECIFIED, 0, out), 3);
    ck_assert_int_eq(memcmp(out, "\x00\xff\x00", 3), 0);
    ck_assert_uint_eq(jpip_jpp_eor_head(JPIP_EOR_WINDOW_DONE, 127, out), 3);
    ck_assert_uint_eq(out[2], 127);
    ck_assert_uint_eq(jpip_jpp_eor_head(JPIP_EOR_NONSPECIFIED, 200, out), 4);
    ck_assert_int_eq(memcmp(out, "\x00\xff\x81\x48", 4), 0);
}
END_TEST

static Suite *make(void)
{
    Suite *s = suite_create("clients");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 300);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, eor_with_body);
    tcase_add_test(tc, metadata_one_box_per_message);
    tcase_add_test(tc, regions_of_interest);
    tcase_add_test(tc, hostile_xml_regions);
    tcase_add_test(tc, jpt_leading_tile_parts);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(make, CK_NORMAL);
}
