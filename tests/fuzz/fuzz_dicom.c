/* Fuzz target: the DICOM Part 10 walker, frames as codestreams, the
 * synthesised metadata-bin 0 and frame identifiers (dicom.c).
 *
 * Input: a file. It is parsed with the default limits, with every element
 * kept and the data set walked to its end, and with tight limits; then its
 * box layout is built, every metadata-bin read back, every codestream
 * opened as a fragmented source and, for small inputs, the file indexed.
 * The first bytes, as a string, also go through the frame identifier
 * parser. The invariants dicom.h and box.h promise are checked: a
 * violation aborts, so the fuzzer reports it like a crash.
 */
#include <stdio.h>
#include <string.h>

#include "fuzz_common.h"

#include "box.h"
#include "dicom.h"
#include "index.h"
#include "source.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_dicom: invariant failed at line %d: %s\n", __LINE__, #cond);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_parse(const jpip_dicom_t *d, apr_uint64_t size, const jpip_dicom_limits_t *lim)
{
    apr_uint64_t prev_end = 0;
    apr_uint32_t f, k;

    CHECK(d->nframes >= 1 && d->nframes <= lim->max_frames);
    CHECK(d->ts != JPIP_DICOM_TS_OTHER);
    CHECK(d->dataset_off >= 132 && d->dataset_off <= d->pixel_off);
    CHECK(d->pixel_off < d->pixel_end && d->pixel_end <= size);
    CHECK(d->nfrags <= lim->max_frags);
    for (f = 0; f < d->nframes; f++) {
        const jpip_dicom_frame_t *fr = &d->frames[f];
        apr_uint64_t total = 0;

        CHECK(fr->length > 0);
        CHECK(fr->first_frag <= d->nfrags && fr->nfrags <= d->nfrags - fr->first_frag);
        CHECK(f == 0 || fr->first_frag == d->frames[f - 1].first_frag + d->frames[f - 1].nfrags);
        for (k = 0; k < fr->nfrags; k++) {
            const jpip_piece_t *p = &d->frags[fr->first_frag + k];
            /* fragments lie inside the Pixel Data, in file order, apart */
            CHECK(p->len > 0);
            CHECK(p->off >= d->pixel_off && p->off + p->len <= d->pixel_end);
            CHECK(p->off >= prev_end);
            prev_end = p->off + p->len;
            total += p->len;
        }
        CHECK(total == fr->length);
    }
    for (k = 0; k < d->nattrs; k++) {
        CHECK(d->attrs[k].len <= JPIP_DICOM_VALUE_MAX);
        CHECK(d->attrs[k].parent < (int)k);
    }
    prev_end = 132;
    for (k = 0; k < d->nelems; k++) {
        const jpip_dicom_elem_t *e = &d->elems[k];
        CHECK(e->off == prev_end);
        CHECK(e->off < e->value_off && e->value_off <= e->end && e->end <= size);
        prev_end = e->end;
    }
    CHECK(d->nelems == 0 || lim->keep_elements);
}

static void check_xml(const jpip_dicom_t *d, apr_pool_t *pool)
{
    apr_size_t len, i;
    const char *x = jpip_dicom_xml(d, pool, &len);

    CHECK(strlen(x) == len);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)x[i];
        CHECK(c == '\n' || (c >= 0x20 && c < 0x7F));
    }
    CHECK(strstr(x, "</NativeDicomModel>\n") == x + len - 20);
}

static void check_layout(const jpip_box_layout_t *lay, jpip_src_t *src, apr_uint64_t size,
                         apr_pool_t *pool)
{
    jpip_err_t err;
    apr_uint32_t i, k;

    CHECK(lay->container == JPIP_CONTAINER_DICOM);
    CHECK(lay->ncodestreams >= 1 && lay->nbins == lay->ncodestreams + 1);
    CHECK(lay->nlayers == lay->ncodestreams);
    CHECK(lay->npieces == 1 && lay->bins[0].length == lay->synth_len);
    for (i = 0; i < lay->nboxes; i++) {
        const jpip_box_t *bx = &lay->boxes[i];
        CHECK(bx->end > i && bx->end <= lay->nboxes);
        CHECK(bx->parent == JPIP_BOX_NONE || bx->parent < i);
        CHECK(bx->hdr_bin == 0 && bx->hdr_bin_off + bx->hdr_bin_len <= lay->synth_len);
        CHECK(bx->codestream == JPIP_BOX_NONE || bx->codestream < lay->ncodestreams);
        CHECK(bx->contents_bin < lay->nbins);
    }
    for (i = 0; i < lay->ncodestreams; i++) {
        const jpip_cstream_t *cs = &lay->codestreams[i];
        jpip_src_t *fs;
        apr_uint64_t total = 0;

        CHECK(cs->box < lay->nboxes && lay->boxes[cs->box].codestream == i);
        CHECK(cs->first_frag <= lay->nfrags && cs->nfrags <= lay->nfrags - cs->first_frag);
        for (k = 0; k < cs->nfrags; k++) {
            const jpip_piece_t *p = &lay->frags[cs->first_frag + k];
            CHECK(p->off <= size && p->len <= size - p->off);
            total += p->len;
        }
        CHECK(total == cs->length);
        CHECK(jpip_src_open_frags(&fs, pool, src, lay->frags + cs->first_frag, cs->nfrags, &err) ==
              JPIP_OK);
        CHECK(jpip_src_size(fs) == cs->length);
        CHECK(lay->bins[i + 1].length == 0);
    }
    if (lay->bins[0].length <= (1u << 20)) {
        unsigned char *buf = apr_palloc(pool, (apr_size_t)lay->bins[0].length + 1);
        CHECK(jpip_box_bin_read(lay, src, 0, 0, buf, (apr_size_t)lay->bins[0].length, &err) ==
              JPIP_OK);
        CHECK(memcmp(buf, "\0\0\0\x0cjP  ", 8) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *pool = jpip_fuzz_pool();
    jpip_dicom_limits_t lim;
    jpip_dicom_t *d;
    jpip_box_layout_t *lay;
    jpip_src_t *src;
    jpip_err_t err;
    jpip_code_t rc;
    char id[65];
    const char *t;
    apr_uint32_t frame;

    CHECK(jpip_src_open_mem(&src, pool, data, size, &err) == JPIP_OK);

    jpip_dicom_limits_default(&lim);
    rc = jpip_dicom_parse(&d, pool, src, &lim, &err);
    CHECK(rc == JPIP_OK || err.msg[0] != '\0');
    if (rc == JPIP_OK) {
        check_parse(d, size, &lim);
        check_xml(d, pool);
    }
    lim.keep_elements = 1;
    lim.walk_all = 1;
    if (jpip_dicom_parse(&d, pool, src, &lim, &err) == JPIP_OK) {
        check_parse(d, size, &lim);
    }
    jpip_dicom_limits_default(&lim);
    lim.max_depth = 3;
    lim.max_frames = 2;
    lim.max_frags = 6;
    lim.max_elements = 64;
    if (jpip_dicom_parse(&d, pool, src, &lim, &err) == JPIP_OK) {
        check_parse(d, size, &lim);
        CHECK(d->nwalked <= 64);
    }

    if (jpip_box_layout_build(&lay, pool, src, NULL, &err) == JPIP_OK &&
        lay->container == JPIP_CONTAINER_DICOM) {
        check_layout(lay, src, size, pool);
        if (size <= 16384) {
            jpip_index_limits_t il;
            jpip_index_t *ix;

            jpip_index_limits_default(&il);
            il.max_bins = 1 << 16;
            il.max_memory = 1 << 24;
            if (jpip_index_build(&ix, pool, src, NULL, &il, &err) == JPIP_OK) {
                CHECK(jpip_index_ncs(ix) == lay->ncodestreams);
                CHECK(jpip_index_nmeta(ix) == lay->nbins);
            }
        }
    }

    memcpy(id, data, size < 64 ? size : 64);
    id[size < 64 ? size : 64] = '\0';
    if (jpip_dicom_frame_id_parse(pool, id, &t, &frame, &err) == JPIP_OK) {
        apr_uint64_t csn;
        CHECK(strlen(t) <= strlen(id));
        if (jpip_dicom_frame_codestream(frame, 3, &csn, &err) == JPIP_OK) {
            CHECK(frame >= 1 && frame <= 3 && csn == frame - 1u);
        }
    }
    apr_pool_destroy(pool);
    return 0;
}
