/* Fuzz target: the JP2/JPX box walker, the metadata-bin layout and the
 * metareq field.
 *
 * Input: byte 0 is a length n, bytes 1..n a metareq value (already
 * percent-decoded, as the handler passes it), the rest is the file. The
 * file is walked (jpip_box_layout_build) twice, with the default limits and
 * with everything behind placeholders (verbatim_max 0, tight box limits).
 * Every metadata-bin is then read back, every codestream opened as a
 * fragmented source, every compositing layer looked up, and the metareq is
 * parsed, formatted, matched and the render set computed. The invariants
 * box.h and metareq.h promise are checked: a violation aborts, so the
 * fuzzer reports it like a crash.
 */
#include <stdio.h>
#include <string.h>

#include "fuzz_common.h"

#include "box.h"
#include "metareq.h"
#include "roi.h"
#include "source.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_box: invariant failed at line %d: %s\n", __LINE__, #cond);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Read each bin whole, in two halves, and one byte past its end. */
static void read_bins(const jpip_box_layout_t *lay, jpip_src_t *src, apr_uint64_t fsize,
                      apr_pool_t *pool)
{
    jpip_err_t err;

    for (apr_uint32_t b = 0; b < lay->nbins; b++) {
        const jpip_metabin_t *m = &lay->bins[b];
        apr_uint64_t total = 0;

        CHECK(m->npieces <= lay->npieces && m->first_piece <= lay->npieces - m->npieces);
        for (apr_uint32_t k = 0; k < m->npieces; k++) {
            const jpip_piece_t *p = &lay->pieces[m->first_piece + k];
            apr_uint64_t off = p->off & ~JPIP_PIECE_SYNTH;
            apr_uint64_t lim = jpip_piece_is_synth(p) ? lay->synth_len : fsize;
            CHECK(off <= lim && p->len <= lim - off);
            total += p->len;
        }
        CHECK(total == m->length);
        if (m->length > (1u << 20))
            continue;
        apr_size_t len = (apr_size_t)m->length;
        unsigned char *buf = apr_palloc(pool, len + 1);
        CHECK(jpip_box_bin_read(lay, src, b, 0, buf, len, &err) == JPIP_OK);
        if (len > 1) {
            CHECK(jpip_box_bin_read(lay, src, b, len / 2, buf, len - len / 2, &err) == JPIP_OK);
        }
        CHECK(jpip_box_bin_read(lay, src, b, m->length, buf, 1, &err) != JPIP_OK);
    }
    CHECK(jpip_box_bin_read(lay, src, lay->nbins, 0, NULL, 0, &err) == JPIP_E_NOTFOUND);
}

static void check_boxes(const jpip_box_layout_t *lay)
{
    for (apr_uint32_t i = 0; i < lay->nboxes; i++) {
        const jpip_box_t *bx = &lay->boxes[i];
        CHECK(bx->end > i && bx->end <= lay->nboxes);
        CHECK(bx->parent == JPIP_BOX_NONE || bx->parent < i);
        if (bx->hdr_bin != JPIP_BOX_NONE) {
            CHECK(bx->hdr_bin < lay->nbins);
            CHECK(bx->hdr_bin_off + bx->hdr_bin_len <= lay->bins[bx->hdr_bin].length);
        }
        if (bx->contents_bin != JPIP_BOX_NONE) {
            CHECK(bx->contents_bin < lay->nbins);
            CHECK(bx->contents_bin_off <= lay->bins[bx->contents_bin].length);
            CHECK(bx->contents_bin_len <=
                  lay->bins[bx->contents_bin].length - bx->contents_bin_off);
        }
        CHECK(bx->codestream == JPIP_BOX_NONE || bx->codestream < lay->ncodestreams);
    }
}

static jpip_code_t count_emit(void *ctx, apr_uint64_t off, apr_uint64_t len, jpip_err_t *err)
{
    *(apr_uint64_t *)ctx += len;
    return JPIP_OK;
}

/* Each codestream as a fragmented source: first and last byte, mapping. */
static void open_codestreams(const jpip_box_layout_t *lay, jpip_src_t *src, apr_pool_t *pool)
{
    jpip_err_t err;

    for (apr_uint32_t c = 0; c < lay->ncodestreams; c++) {
        const jpip_cstream_t *cs = &lay->codestreams[c];
        jpip_src_t *view;
        unsigned v;
        apr_uint64_t mapped = 0;

        CHECK(cs->nfrags <= lay->nfrags && cs->first_frag <= lay->nfrags - cs->nfrags);
        /* an empty fragment list may come with no array at all */
        const jpip_piece_t *frags = cs->nfrags > 0 ? lay->frags + cs->first_frag : NULL;
        if (jpip_src_open_frags(&view, pool, src, frags, cs->nfrags, &err) != JPIP_OK)
            continue;
        CHECK(jpip_src_size(view) == cs->length);
        if (cs->length > 0) {
            CHECK(jpip_src_u8(view, 0, &v, &err) == JPIP_OK);
            CHECK(jpip_src_u8(view, cs->length - 1, &v, &err) == JPIP_OK);
        }
        CHECK(jpip_src_u8(view, cs->length, &v, &err) != JPIP_OK);
        CHECK(jpip_src_map(view, 0, cs->length, count_emit, &mapped, &err) == JPIP_OK);
        CHECK(mapped == cs->length);
    }
}

static void check_sel(const jpip_box_layout_t *lay, const jpip_metasel_t *sel)
{
    for (apr_size_t i = 0; i < sel->nranges; i++) {
        const jpip_metarange_t *r = &sel->ranges[i];
        CHECK(r->bin < lay->nbins);
        CHECK(r->off <= lay->bins[r->bin].length && r->len <= lay->bins[r->bin].length - r->off);
        if (i > 0) {
            const jpip_metarange_t *q = &sel->ranges[i - 1];
            /* sorted, disjoint; adjacent only where the priority differs
             * (metareq.h says non-adjacent: the matcher keeps a priority
             * range apart from its non-priority neighbour) */
            CHECK(q->bin < r->bin || (q->bin == r->bin && q->off + q->len <= r->off));
            CHECK(q->bin < r->bin || q->off + q->len < r->off || q->priority != r->priority);
        }
    }
}

static void one_layout(const unsigned char *file, apr_size_t fsize, const jpip_metareq_t *mr,
                       const jpip_box_limits_t *lim, apr_pool_t *pool)
{
    jpip_src_t *src;
    jpip_box_layout_t *lay;
    jpip_container_t container;
    apr_uint32_t brand;
    jpip_err_t err;
    jpip_metasel_t sel;

    if (jpip_src_open_mem(&src, pool, file, fsize, &err) != JPIP_OK)
        return;
    (void)jpip_box_detect(src, &container, &brand, &err);
    if (jpip_box_layout_build(&lay, pool, src, lim, &err) != JPIP_OK)
        return;
    CHECK(lay->nbins >= 1);
    check_boxes(lay);
    read_bins(lay, src, fsize, pool);
    open_codestreams(lay, src, pool);

    for (apr_uint32_t l = 0; l <= lay->nlayers && l < 64; l++) {
        const apr_uint32_t *cs;
        apr_uint32_t ncs;
        if (jpip_box_layer_codestreams(lay, l, &cs, &ncs, &err) == JPIP_OK) {
            volatile apr_uint32_t sink = 0;
            for (apr_uint32_t k = 0; k < ncs; k++)
                sink += cs[k];
        }
    }
    (void)jpip_box_find(lay, JPIP_BOX_JP2H, JPIP_BOX_NONE, 0);
    (void)jpip_box_find(lay, JPIP_BOX_XML, JPIP_BOX_NONE, lay->nboxes / 2);

    if (mr != NULL && jpip_metareq_match(mr, lay, pool, &sel, &err) == JPIP_OK)
        check_sel(lay, &sel);
    if (jpip_metareq_render(lay, NULL, 0, pool, &sel, &err) == JPIP_OK)
        check_sel(lay, &sel);
    if (lay->ncodestreams > 0) {
        apr_uint32_t *all = apr_palloc(pool, sizeof(*all) * lay->ncodestreams);
        for (apr_uint32_t c = 0; c < lay->ncodestreams; c++)
            all[c] = lay->ncodestreams - 1 - c;
        if (jpip_metareq_render(lay, all, lay->ncodestreams, pool, &sel, &err) == JPIP_OK)
            check_sel(lay, &sel);
    }
    /* what clients read of the layout: box ends per bin (increasing, inside
     * the bin) and the named regions */
    for (apr_uint32_t b = 0; b < lay->nbins && b < 64; b++) {
        const apr_uint64_t *ends;
        apr_size_t n;
        if (jpip_metareq_box_ends(lay, b, pool, &ends, &n, &err) == JPIP_OK) {
            for (apr_size_t k = 0; k < n; k++) {
                CHECK(ends[k] <= lay->bins[b].length);
                CHECK(k == 0 || ends[k] > ends[k - 1]);
            }
        }
    }
    {
        jpip_roi_list_t rois;
        if (jpip_roi_collect(lay, src, 4096, 4096, pool, &rois, &err) == JPIP_OK) {
            for (apr_size_t k = 0; k < rois.n; k++) {
                CHECK(rois.rois[k].w > 0 && rois.rois[k].x + rois.rois[k].w <= 4096);
                CHECK(rois.rois[k].h > 0 && rois.rois[k].y + rois.rois[k].h <= 4096);
            }
        }
    }
    jpip_box_layout_rebase_synth(lay, 4096);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *pool;
    jpip_metareq_t mr;
    int have_mr = 0;
    jpip_box_limits_t lim;
    jpip_err_t err;
    size_t n;

    if (size < 1)
        return 0;
    n = data[0];
    if (n > size - 1)
        n = size - 1;
    pool = jpip_fuzz_pool();

    /* exactly n bytes, no terminator: the parser must not need one */
    char *mtext = malloc(n ? n : 1);
    if (mtext == NULL)
        abort();
    memcpy(mtext, data + 1, n);
    if (jpip_metareq_parse(&mr, pool, mtext, n, &err) == JPIP_OK) {
        have_mr = 1;
        (void)jpip_metareq_format(&mr, 0, pool);
        (void)jpip_metareq_format(&mr, 1, pool);
    }
    free(mtext);

    jpip_box_limits_default(&lim);
    one_layout(data + 1 + n, size - 1 - n, have_mr ? &mr : NULL, &lim, pool);
    lim.verbatim_max = 0;
    lim.max_boxes = 64;
    lim.max_depth = 4;
    lim.max_codestreams = 4;
    lim.max_frags = 16;
    one_layout(data + 1 + n, size - 1 - n, have_mr ? &mr : NULL, &lim, pool);

    apr_pool_destroy(pool);
    return 0;
}
