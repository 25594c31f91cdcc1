/* mod_jpip: rendering a region of a codestream into 8-bit pixels. */
#include "render.h"

#include <apr_hash.h>
#include <apr_strings.h>
#include <limits.h>
#include <math.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openjpeg.h>

#include "jp2rebuild.h"
#include "rebuild.h"
#include "request.h"
#include "view.h"

#define DEFAULT_MAX_BINS (1 << 20)

/* ------------------------------------------------------------- geometry */

/* The fewest decomposition levels of any tile-component of the tiles
 * [tx0, tx1) x [ty0, ty1): what a decoder's reduce factor may reach. */
static unsigned min_levels(const jpip_index_t *ix, const jpip_ix_cs_t *cs, apr_uint32_t tx0,
                           apr_uint32_t tx1, apr_uint32_t ty0, apr_uint32_t ty1)
{
    unsigned best = 32, c;
    apr_uint32_t tx, ty;

    for (ty = ty0; ty < ty1; ty++) {
        for (tx = tx0; tx < tx1; tx++) {
            for (c = 0; c < cs->siz.csiz; c++) {
                const jpip_tccp_t *p =
                    jpip_index_tccp(ix, jpip_index_tc(ix, cs, ty * cs->siz.ntx + tx, c));
                if (p->nl < best) {
                    best = p->nl;
                }
            }
        }
    }
    return best;
}

jpip_code_t jpip_render_geom(const jpip_index_t *ix, apr_uint64_t csn, jpip_render_geom_t *g,
                             jpip_err_t *err)
{
    const jpip_ix_cs_t *cs = jpip_index_cs(ix, csn);
    const jpip_tccp_t *p;
    apr_uint32_t ntx, nty;

    if (cs == NULL) {
        return jpip_err_set(err, JPIP_E_NOTFOUND, "the file has no codestream %" APR_UINT64_T_FMT,
                            csn);
    }
    memset(g, 0, sizeof(*g));
    g->width = cs->siz.xsiz - cs->siz.xosiz;
    g->height = cs->siz.ysiz - cs->siz.yosiz;
    g->ncomps = cs->siz.csiz;
    ntx = cs->siz.ntx;
    nty = cs->siz.nty;
    /* every tile when there are few; else a sample along the diagonal and
     * the first row (a hostile file with millions of tiles costs no more) */
    if ((apr_uint64_t)ntx * nty * cs->siz.csiz <= 65536) {
        g->levels = min_levels(ix, cs, 0, ntx, 0, nty);
    } else {
        g->levels = min_levels(ix, cs, 0, ntx < 64 ? ntx : 64, 0, 1);
    }
    g->tiled = ntx * nty > 1;
    g->tile_w = cs->siz.xtsiz;
    g->tile_h = cs->siz.ytsiz;
    p = jpip_index_tccp(ix, jpip_index_tc(ix, cs, 0, 0));
    if (p->csty & 0x01) {
        g->prec_w = p->ppx[p->nl] < 31 ? 1u << p->ppx[p->nl] : 0;
        g->prec_h = p->ppy[p->nl] < 31 ? 1u << p->ppy[p->nl] : 0;
    }
    return JPIP_OK;
}

/* ------------------------------------------------------- bins of a view */

typedef struct binset_t {
    const jpip_index_t *ix;
    const jpip_view_t *view;
    apr_hash_t *set; /* bin numbers (apr_uint64_t) the view needs */
    apr_pool_t *pool;
    apr_uint64_t n, max, bytes;
    apr_uint64_t usable; /* of the n, those the file has (a view_get finds) */
    const jpip_render_src_t *src;
} binset_t;

static jpip_code_t collect_row(void *ctx, const jpip_view_row_t *row, jpip_err_t *err)
{
    binset_t *bs = ctx;
    apr_uint64_t no = jpip_index_bin_no(bs->ix, row->bin);
    apr_uint32_t k;

    if (bs->n + row->n > bs->max) {
        return jpip_err_set(err, JPIP_E_LIMIT,
                            "the region needs more than %" APR_UINT64_T_FMT " precincts", bs->max);
    }
    for (k = 0; k < row->n; k++) {
        apr_uint64_t *key = apr_palloc(bs->pool, sizeof(*key));
        *key = no + k;
        apr_hash_set(bs->set, key, sizeof(*key), key);
        bs->bytes += row->bin[k].len;
        bs->usable += (row->bin[k].flags & JPIP_BIN_ABSENT) == 0;
    }
    bs->n += row->n;
    return JPIP_OK;
}

/* The bytes of a bin, copied out of the file. */
static jpip_code_t bin_bytes(const binset_t *bs, const jpip_bin_t *bin, const unsigned char **data,
                             apr_size_t *len, jpip_err_t *err)
{
    unsigned char *buf;
    const jpip_piece_t *pc;
    apr_uint64_t i, at = 0;

    if (bin->len > APR_SIZE_MAX - 1) {
        return jpip_err_set(err, JPIP_E_LIMIT, "a data-bin is too large to render");
    }
    if (bs->src->map != NULL) {
        buf = apr_palloc(bs->pool, (apr_size_t)bin->len + 1);
        jpip_index_bin_copy(bs->ix, bin, bs->src->map, buf);
        *data = buf;
        *len = (apr_size_t)bin->len;
        return JPIP_OK;
    }
    buf = apr_palloc(bs->pool, (apr_size_t)bin->len + 1);
    pc = jpip_index_pieces(bs->ix, bin);
    for (i = 0; i < bin->npieces; i++) {
        if (jpip_piece_is_synth(&pc[i])) {
            memcpy(buf + at, jpip_index_synth(bs->ix, &pc[i]), (apr_size_t)pc[i].len);
        } else {
            jpip_code_t rc =
                jpip_src_read(bs->src->src, pc[i].off, buf + at, (apr_size_t)pc[i].len, err);
            if (rc != JPIP_OK) {
                return rc;
            }
        }
        at += pc[i].len;
    }
    *data = buf;
    *len = (apr_size_t)bin->len;
    return JPIP_OK;
}

/* A jpip_binsrc_t over the index that holds only what the view needs. */
static jpip_code_t view_get(void *ctx, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                            const unsigned char **data, apr_size_t *len, int *complete,
                            jpip_err_t *err)
{
    binset_t *bs = ctx;
    const jpip_bin_t *bin;
    jpip_err_t e2;

    switch (cls) {
    case JPIP_CLASS_MAIN:
    case JPIP_CLASS_META:
        break;
    case JPIP_CLASS_TILEHDR:
        if (csn != bs->view->csn || id >= 0xFFFFFFFFu ||
            !jpip_view_tile_relevant(bs->ix, bs->view, (apr_uint32_t)id)) {
            return JPIP_E_NOTFOUND;
        }
        break;
    case JPIP_CLASS_PRECINCT:
        break;
    default:
        return JPIP_E_NOTFOUND;
    }
    if (cls != JPIP_CLASS_META && csn != bs->view->csn) {
        return JPIP_E_NOTFOUND;
    }
    if (jpip_index_bin(bs->ix, cls, csn, id, &bin, &e2) != JPIP_OK ||
        (bin->flags & JPIP_BIN_ABSENT)) {
        return JPIP_E_NOTFOUND;
    }
    if (cls == JPIP_CLASS_PRECINCT) {
        apr_uint64_t no = jpip_index_bin_no(bs->ix, bin);
        if (apr_hash_get(bs->set, &no, sizeof(no)) == NULL) {
            return JPIP_E_NOTFOUND;
        }
    }
    *complete = (bin->flags & JPIP_BIN_COMPLETE) != 0 || cls != JPIP_CLASS_PRECINCT;
    return bin_bytes(bs, bin, data, len, err);
}

/* ------------------------------------------------------------- decoding */

typedef struct memstream_t {
    const unsigned char *data;
    apr_size_t len, pos;
} memstream_t;

static OPJ_SIZE_T ms_read(void *buf, OPJ_SIZE_T n, void *ctx)
{
    memstream_t *m = ctx;
    apr_size_t left = m->len - m->pos;

    if (left == 0) {
        return (OPJ_SIZE_T)-1;
    }
    if (n > left) {
        n = left;
    }
    memcpy(buf, m->data + m->pos, n);
    m->pos += n;
    return n;
}

static OPJ_OFF_T ms_skip(OPJ_OFF_T n, void *ctx)
{
    memstream_t *m = ctx;

    if (n < 0) {
        if ((apr_size_t)(-n) > m->pos) {
            n = -(OPJ_OFF_T)m->pos;
        }
    } else if ((apr_size_t)n > m->len - m->pos) {
        n = (OPJ_OFF_T)(m->len - m->pos);
    }
    m->pos = (apr_size_t)((OPJ_OFF_T)m->pos + n);
    return n;
}

static OPJ_BOOL ms_seek(OPJ_OFF_T n, void *ctx)
{
    memstream_t *m = ctx;

    if (n < 0 || (apr_uint64_t)n > m->len) {
        return OPJ_FALSE;
    }
    m->pos = (apr_size_t)n;
    return OPJ_TRUE;
}

typedef struct dec_t {
    opj_codec_t *codec;
    opj_stream_t *stream;
    opj_image_t *image;
    char msg[200];
} dec_t;

static void on_error(const char *msg, void *ctx)
{
    dec_t *d = ctx;

    if (d->msg[0] == '\0') {
        apr_size_t n;
        apr_cpystrn(d->msg, msg, sizeof(d->msg));
        n = strlen(d->msg);
        while (n > 0 && (d->msg[n - 1] == '\n' || d->msg[n - 1] == '\r')) {
            d->msg[--n] = '\0';
        }
    }
}

static void on_quiet(const char *msg, void *ctx)
{
    (void)msg;
    (void)ctx;
}

static apr_status_t dec_cleanup(void *ctx)
{
    dec_t *d = ctx;

    if (d->image != NULL) {
        opj_image_destroy(d->image);
    }
    if (d->stream != NULL) {
        opj_stream_destroy(d->stream);
    }
    if (d->codec != NULL) {
        opj_destroy_codec(d->codec);
    }
    return APR_SUCCESS;
}

static jpip_code_t decode(const unsigned char *cs, apr_size_t len, int jp2, unsigned reduce,
                          const jpip_rect_t *area, apr_pool_t *pool, dec_t **out, jpip_err_t *err)
{
    dec_t *d = apr_pcalloc(pool, sizeof(*d));
    memstream_t *m = apr_pcalloc(pool, sizeof(*m));
    opj_dparameters_t par;

    apr_pool_cleanup_register(pool, d, dec_cleanup, apr_pool_cleanup_null);
    m->data = cs;
    m->len = len;
    d->codec = opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
    d->stream = opj_stream_create(64 * 1024, OPJ_TRUE);
    if (d->codec == NULL || d->stream == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "the decoder cannot be created");
    }
    opj_set_error_handler(d->codec, on_error, d);
    opj_set_warning_handler(d->codec, on_quiet, d);
    opj_set_info_handler(d->codec, on_quiet, d);
    opj_stream_set_user_data(d->stream, m, NULL);
    opj_stream_set_user_data_length(d->stream, len);
    opj_stream_set_read_function(d->stream, ms_read);
    opj_stream_set_skip_function(d->stream, ms_skip);
    opj_stream_set_seek_function(d->stream, ms_seek);
    opj_set_default_decoder_parameters(&par);
    par.cp_reduce = reduce;
    if (!opj_setup_decoder(d->codec, &par) || !opj_read_header(d->stream, d->codec, &d->image) ||
        !opj_set_decode_area(d->codec, d->image, (OPJ_INT32)area->x0, (OPJ_INT32)area->y0,
                             (OPJ_INT32)area->x1, (OPJ_INT32)area->y1) ||
        !opj_decode(d->codec, d->stream, d->image) || !opj_end_decompress(d->codec, d->stream)) {
        return jpip_err_set(err, JPIP_E_FORMAT, "the decoder refused the image data: %s",
                            d->msg[0] != '\0' ? d->msg : "no reason given");
    }
    *out = d;
    return JPIP_OK;
}

/* --------------------------------------------------------- to 8-bit */

typedef struct chan_t {
    const opj_image_comp_t *c;
    apr_int64_t off, maxv; /* sample + off in [0, maxv] */
    apr_uint64_t cx0, cy0; /* the component's origin at the reduced resolution */
    apr_uint32_t *xi;      /* column of each output pixel */
} chan_t;

static apr_int64_t clampi(apr_int64_t v, apr_int64_t lo, apr_int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static unsigned char to8(apr_int64_t v, apr_int64_t maxv)
{
    v = clampi(v, 0, maxv);
    return (unsigned char)((v * 255 + maxv / 2) / maxv);
}

/* Component c decoded over area (reference grid) at reduce d: openjpeg
 * reports its origin at full resolution, so the reduced origin is computed
 * here as the decoder does, ceil(ceil(x0 / dx) / 2^d). */
static jpip_code_t chan_init(chan_t *ch, const opj_image_comp_t *c, const jpip_rect_t *area,
                             unsigned d, apr_uint64_t rx0, apr_uint32_t w, apr_pool_t *pool,
                             jpip_err_t *err)
{
    apr_uint32_t i;
    unsigned prec = c->prec == 0 ? 1 : c->prec > 38 ? 38 : c->prec;

    if (c->data == NULL || c->w == 0 || c->h == 0 || c->dx == 0 || c->dy == 0) {
        return jpip_err_set(err, JPIP_E_FORMAT, "the decoder returned an empty component");
    }
    ch->c = c;
    ch->maxv = ((apr_int64_t)1 << prec) - 1;
    ch->off = c->sgnd ? (apr_int64_t)1 << (prec - 1) : 0;
    ch->cx0 = jpip_ceilpow2(jpip_ceildiv(area->x0, c->dx), d);
    ch->cy0 = jpip_ceilpow2(jpip_ceildiv(area->y0, c->dy), d);
    ch->xi = apr_palloc(pool, sizeof(*ch->xi) * w);
    for (i = 0; i < w; i++) {
        apr_int64_t k = (apr_int64_t)((rx0 + i) / c->dx) - (apr_int64_t)ch->cx0;
        ch->xi[i] = (apr_uint32_t)clampi(k, 0, (apr_int64_t)c->w - 1);
    }
    return JPIP_OK;
}

static const OPJ_INT32 *chan_row(const chan_t *ch, apr_uint64_t ry)
{
    apr_int64_t k = (apr_int64_t)(ry / ch->c->dy) - (apr_int64_t)ch->cy0;

    return ch->c->data + (apr_size_t)clampi(k, 0, (apr_int64_t)ch->c->h - 1) * ch->c->w;
}

/* The decoded image as 8-bit pixels over the reduced region [rx0, rx1) x
 * [ry0, ry1) (coordinates of the reduced reference grid). */
static jpip_code_t to_raster(const opj_image_t *im, const jpip_rect_t *rr, const jpip_rect_t *area,
                             unsigned d, int drop_alpha, apr_pool_t *pool, jpip_raster_t *out,
                             jpip_err_t *err)
{
    chan_t ch[4];
    int colour, alpha = -1;
    unsigned i, nc, n = 0;
    apr_uint32_t w = (apr_uint32_t)(rr->x1 - rr->x0), h = (apr_uint32_t)(rr->y1 - rr->y0), x, y;
    int sycc;
    jpip_code_t rc;

    if (im->numcomps == 0) {
        return jpip_err_set(err, JPIP_E_FORMAT, "the decoder returned no components");
    }
    colour = im->numcomps >= 3 && im->color_space != OPJ_CLRSPC_GRAY;
    nc = colour ? 3 : 1;
    for (i = 0; i < im->numcomps; i++) {
        if (im->comps[i].alpha && i >= nc) {
            alpha = (int)i;
            break;
        }
    }
    if (alpha < 0 && im->numcomps == nc + 1 && im->color_space != OPJ_CLRSPC_CMYK) {
        alpha = (int)nc;
    }
    if (drop_alpha) {
        alpha = -1;
    }
    for (i = 0; i < nc; i++) {
        if ((rc = chan_init(&ch[n++], &im->comps[i], area, d, rr->x0, w, pool, err)) != JPIP_OK) {
            return rc;
        }
    }
    if (alpha >= 0 &&
        (rc = chan_init(&ch[n++], &im->comps[alpha], area, d, rr->x0, w, pool, err)) != JPIP_OK) {
        return rc;
    }
    /* sYCC as the file says, or as a raw codestream with sub-sampled
     * chroma (full-resolution first component, the others coarser) can
     * only mean */
    sycc = colour &&
           (im->color_space == OPJ_CLRSPC_SYCC ||
            ((im->color_space == OPJ_CLRSPC_UNKNOWN || im->color_space == OPJ_CLRSPC_UNSPECIFIED) &&
             im->numcomps == 3 && im->comps[0].dx == 1 && im->comps[0].dy == 1 &&
             (im->comps[1].dx > 1 || im->comps[1].dy > 1) && im->comps[1].dx == im->comps[2].dx &&
             im->comps[1].dy == im->comps[2].dy));
    out->w = w;
    out->h = h;
    out->nch = n;
    out->px = apr_palloc(pool, (apr_size_t)w * h * n);
    for (y = 0; y < h; y++) {
        unsigned char *o = out->px + (apr_size_t)y * w * n;
        const OPJ_INT32 *row[4];

        for (i = 0; i < n; i++) {
            row[i] = chan_row(&ch[i], rr->y0 + y);
        }
        for (x = 0; x < w; x++, o += n) {
            if (sycc) {
                /* sYCC (IEC 61966-2-1 Annex G), chroma centred on half range */
                double yy = row[0][ch[0].xi[x]] + ch[0].off;
                double half = (double)(ch[1].maxv + 1) / 2;
                double cb = row[1][ch[1].xi[x]] + ch[1].off - half;
                double cr = row[2][ch[2].xi[x]] + ch[2].off - half;
                o[0] = to8((apr_int64_t)floor(yy + 1.402 * cr + 0.5), ch[0].maxv);
                o[1] =
                    to8((apr_int64_t)floor(yy - 0.344136 * cb - 0.714136 * cr + 0.5), ch[0].maxv);
                o[2] = to8((apr_int64_t)floor(yy + 1.772 * cb + 0.5), ch[0].maxv);
                if (n == 4) {
                    o[3] = to8(row[3][ch[3].xi[x]] + ch[3].off, ch[3].maxv);
                }
                continue;
            }
            for (i = 0; i < n; i++) {
                o[i] = to8(row[i][ch[i].xi[x]] + ch[i].off, ch[i].maxv);
            }
        }
    }
    return JPIP_OK;
}

/* ------------------------------------------------------------ resampling */

/* Weights of one axis: for each output sample, the first source sample
 * and its weights (a triangle filter of radius max(1, scale), so that a
 * reduction averages every source pixel it covers). */
typedef struct axis_t {
    apr_uint32_t *first;
    apr_uint32_t *count;
    double *w; /* count[i] weights for output i, at i * stride */
    apr_uint32_t stride;
} axis_t;

static jpip_code_t axis_init(axis_t *a, apr_uint32_t in, double f0, double fspan, apr_uint32_t out,
                             apr_pool_t *pool, jpip_err_t *err)
{
    double scale = fspan / out, support = scale > 1 ? scale : 1;
    apr_uint32_t i;

    a->stride = (apr_uint32_t)ceil(support) * 2 + 2;
    if ((apr_uint64_t)a->stride * out > ((apr_uint64_t)1 << 28)) {
        return jpip_err_set(err, JPIP_E_LIMIT, "the scaling is too large");
    }
    a->first = apr_palloc(pool, sizeof(*a->first) * out);
    a->count = apr_palloc(pool, sizeof(*a->count) * out);
    a->w = apr_palloc(pool, sizeof(*a->w) * a->stride * out);
    for (i = 0; i < out; i++) {
        double centre = f0 + (i + 0.5) * scale;
        apr_int64_t lo = (apr_int64_t)floor(centre - support),
                    hi = (apr_int64_t)ceil(centre + support);
        apr_int64_t s;
        double sum = 0;
        apr_uint32_t k = 0;
        double *w = a->w + (apr_size_t)i * a->stride;

        if (lo < 0) {
            lo = 0;
        }
        if (hi > (apr_int64_t)in) {
            hi = in;
        }
        for (s = lo; s < hi && k < a->stride; s++) {
            double t = fabs((s + 0.5 - centre) / support);
            double v = t < 1 ? 1 - t : 0;
            if (k == 0 && v == 0) {
                lo = s + 1;
                continue;
            }
            w[k++] = v;
            sum += v;
        }
        while (k > 0 && w[k - 1] == 0) {
            k--;
        }
        if (k == 0 || sum <= 0) {
            /* outside the source (rounding at an edge): the nearest sample */
            lo = (apr_int64_t)floor(centre);
            lo = lo < 0 ? 0 : lo >= (apr_int64_t)in ? (apr_int64_t)in - 1 : lo;
            w[0] = 1;
            k = 1;
            sum = 1;
        }
        for (s = 0; s < k; s++) {
            w[s] /= sum;
        }
        a->first[i] = (apr_uint32_t)lo;
        a->count[i] = k;
    }
    return JPIP_OK;
}

jpip_code_t jpip_raster_scale(const jpip_raster_t *in, double fx, double fy, double fw, double fh,
                              apr_uint32_t ow, apr_uint32_t oh, apr_pool_t *pool,
                              jpip_raster_t *out, jpip_err_t *err)
{
    axis_t ax, ay;
    float *tmp;
    unsigned n = in->nch, c;
    apr_uint32_t x, y, k;
    jpip_code_t rc;

    if ((rc = axis_init(&ax, in->w, fx, fw, ow, pool, err)) != JPIP_OK ||
        (rc = axis_init(&ay, in->h, fy, fh, oh, pool, err)) != JPIP_OK) {
        return rc;
    }
    /* horizontal pass over the source rows the output uses */
    tmp = apr_palloc(pool, sizeof(float) * (apr_size_t)ow * in->h * n);
    for (y = 0; y < in->h; y++) {
        const unsigned char *src = in->px + (apr_size_t)y * in->w * n;
        float *t = tmp + (apr_size_t)y * ow * n;
        for (x = 0; x < ow; x++) {
            const double *w = ax.w + (apr_size_t)x * ax.stride;
            const unsigned char *s = src + (apr_size_t)ax.first[x] * n;
            for (c = 0; c < n; c++) {
                double acc = 0;
                for (k = 0; k < ax.count[x]; k++) {
                    acc += w[k] * s[k * n + c];
                }
                t[x * n + c] = (float)acc;
            }
        }
    }
    out->w = ow;
    out->h = oh;
    out->nch = n;
    out->px = apr_palloc(pool, (apr_size_t)ow * oh * n);
    for (y = 0; y < oh; y++) {
        const double *w = ay.w + (apr_size_t)y * ay.stride;
        unsigned char *o = out->px + (apr_size_t)y * ow * n;
        for (x = 0; x < ow * n; x++) {
            double acc = 0;
            for (k = 0; k < ay.count[y]; k++) {
                acc += w[k] * tmp[((apr_size_t)ay.first[y] + k) * ow * n + x];
            }
            acc = floor(acc + 0.5);
            o[x] = (unsigned char)(acc < 0 ? 0 : acc > 255 ? 255 : acc);
        }
    }
    return JPIP_OK;
}

/* ---------------------------------------------------- quality, rotation */

static void to_quality(jpip_raster_t *r, int quality, apr_pool_t *pool)
{
    unsigned n = r->nch, alpha = (n == 2 || n == 4);
    unsigned on = alpha ? 2 : 1;
    apr_size_t i, np = (apr_size_t)r->w * r->h;
    unsigned char *o;

    if (quality != JPIP_RENDER_GRAY && quality != JPIP_RENDER_BITONAL) {
        return;
    }
    o = apr_palloc(pool, np * on);
    for (i = 0; i < np; i++) {
        const unsigned char *s = r->px + i * n;
        unsigned g = n >= 3 ? (299u * s[0] + 587u * s[1] + 114u * s[2] + 500) / 1000 : s[0];
        if (quality == JPIP_RENDER_BITONAL) {
            g = g >= 128 ? 255 : 0;
        }
        o[i * on] = (unsigned char)g;
        if (alpha) {
            o[i * on + 1] = s[n - 1];
        }
    }
    r->px = o;
    r->nch = on;
}

static void orient(jpip_raster_t *r, int mirror, unsigned rotate, apr_pool_t *pool)
{
    apr_uint32_t w = r->w, h = r->h, ow, oh, x, y;
    unsigned n = r->nch;
    unsigned char *o;

    if (!mirror && rotate == 0) {
        return;
    }
    ow = rotate == 90 || rotate == 270 ? h : w;
    oh = rotate == 90 || rotate == 270 ? w : h;
    o = apr_palloc(pool, (apr_size_t)w * h * n);
    for (y = 0; y < h; y++) {
        for (x = 0; x < w; x++) {
            apr_uint32_t sx = mirror ? w - 1 - x : x, dx, dy;
            switch (rotate) {
            case 90:
                dx = h - 1 - y;
                dy = x;
                break;
            case 180:
                dx = w - 1 - x;
                dy = h - 1 - y;
                break;
            case 270:
                dx = y;
                dy = w - 1 - x;
                break;
            default:
                dx = x;
                dy = y;
            }
            memcpy(o + ((apr_size_t)dy * ow + dx) * n, r->px + ((apr_size_t)y * w + sx) * n, n);
        }
    }
    r->px = o;
    r->w = ow;
    r->h = oh;
}

/* --------------------------------------------------------------- render */

typedef struct cs_out_t {
    unsigned char *data;
    apr_size_t len;
} cs_out_t;

static jpip_code_t give_cs(void *ctx, apr_uint64_t csid, const unsigned char **bytes,
                           apr_uint64_t *len, jpip_err_t *err)
{
    cs_out_t *c = ctx;

    if (csid != 0) {
        return jpip_err_set(err, JPIP_E_NOTFOUND, "codestream %" APR_UINT64_T_FMT, csid);
    }
    *bytes = c->data;
    *len = c->len;
    return JPIP_OK;
}

typedef struct grow_t {
    apr_pool_t *pool;
    unsigned char *buf;
    apr_size_t len, cap;
} grow_t;

static jpip_code_t grow_write(void *ctx, const void *bytes, apr_size_t len, jpip_err_t *err)
{
    grow_t *g = ctx;

    if (g->len + len > g->cap) {
        apr_size_t cap = g->cap * 2 + len + 4096;
        unsigned char *nb = apr_palloc(g->pool, cap);
        if (nb == NULL) {
            return jpip_err_set(err, JPIP_E_NOMEM, "out of memory");
        }
        if (g->len > 0) {
            memcpy(nb, g->buf, g->len);
        }
        g->buf = nb;
        g->cap = cap;
    }
    memcpy(g->buf + g->len, bytes, len);
    g->len += len;
    return JPIP_OK;
}

static jpip_code_t past_deadline(const jpip_render_req_t *rq, const char *stage, jpip_err_t *err)
{
    if (rq->deadline != 0 && apr_time_now() > rq->deadline) {
        return jpip_err_set(err, JPIP_E_LIMIT, "the render ran out of time (%s)", stage);
    }
    return JPIP_OK;
}

/* The decode area on the reference grid, widened when components are
 * sub-sampled so that each has samples in it (a decoder refuses an area
 * that leaves one empty), and clipped to the image. */
static void grow_area(const jpip_ix_cs_t *cs, const jpip_index_t *ix, unsigned d, jpip_rect_t *area)
{
    const jpip_comp_t *comps = jpip_index_comps(ix, cs);
    apr_uint64_t mx = 1, my = 1;
    unsigned c;

    for (c = 0; c < cs->siz.csiz; c++) {
        mx = comps[c].xr > mx ? comps[c].xr : mx;
        my = comps[c].yr > my ? comps[c].yr : my;
    }
    if (mx > 1 || my > 1) {
        mx <<= d;
        my <<= d;
        area->x0 = area->x0 / mx * mx;
        area->y0 = area->y0 / my * my;
        area->x1 = jpip_ceildiv(area->x1, mx) * mx;
        area->y1 = jpip_ceildiv(area->y1, my) * my;
    }
    area->x0 = area->x0 < cs->siz.xosiz ? cs->siz.xosiz : area->x0;
    area->y0 = area->y0 < cs->siz.yosiz ? cs->siz.yosiz : area->y0;
    area->x1 = area->x1 > cs->siz.xsiz ? cs->siz.xsiz : area->x1;
    area->y1 = area->y1 > cs->siz.ysiz ? cs->siz.ysiz : area->y1;
}

/* A crop of the image for the decode area (single-tile codestreams): the
 * area widened by a margin wider than the wavelet's reach from every
 * level, its edges then moved out to precinct boundaries of every
 * resolution (jpip_rebuild_crop_align), clipped to the image. A decoder
 * sets up the code-blocks and precincts of its whole tile before it
 * decodes an area; on a large image most of that is for precincts the
 * area never meets. The samples of the area are those of the whole: the
 * inverse transform of the crop reaches the area's samples only through
 * coefficients inside the crop. 0 when the crop would be the image. */
static int choose_crop(const jpip_index_t *ix, const jpip_ix_cs_t *cs, const jpip_rect_t *area,
                       apr_pool_t *pool, jpip_rect_t *crop)
{
    const jpip_comp_t *comps = jpip_index_comps(ix, cs);
    const jpip_tccp_t **tccps;
    apr_uint64_t ax, ay, mx, my;
    unsigned c, nl = 0, xr = 1, yr = 1;

    if (cs->siz.ntx != 1 || cs->siz.nty != 1) {
        return 0;
    }
    tccps = apr_palloc(pool, cs->siz.csiz * sizeof(*tccps));
    for (c = 0; c < cs->siz.csiz; c++) {
        tccps[c] = jpip_index_tccp(ix, jpip_index_tc(ix, cs, 0, c));
        nl = tccps[c]->nl > nl ? tccps[c]->nl : nl;
        xr = comps[c].xr > xr ? comps[c].xr : xr;
        yr = comps[c].yr > yr ? comps[c].yr : yr;
    }
    jpip_rebuild_crop_align(comps, tccps, cs->siz.csiz, &ax, &ay);
    /* a synthesis step reaches 2 coefficients (9/7) either way, a level's
     * coefficient spans 2^level samples: 16 * 2^NL covers every level's
     * reach, rounding included, with room to spare */
    mx = (apr_uint64_t)xr << (nl + 4);
    my = (apr_uint64_t)yr << (nl + 4);
    crop->x0 = cs->siz.xosiz;
    crop->y0 = cs->siz.yosiz;
    crop->x1 = cs->siz.xsiz;
    crop->y1 = cs->siz.ysiz;
    if (ax != 0) {
        apr_uint64_t x0 = area->x0 > mx ? (area->x0 - mx) / ax * ax : 0;
        apr_uint64_t x1 = jpip_ceildiv(area->x1 + mx, ax) * ax;
        crop->x0 = x0 > crop->x0 ? x0 : crop->x0;
        crop->x1 = x1 < crop->x1 ? x1 : crop->x1;
    }
    if (ay != 0) {
        apr_uint64_t y0 = area->y0 > my ? (area->y0 - my) / ay * ay : 0;
        apr_uint64_t y1 = jpip_ceildiv(area->y1 + my, ay) * ay;
        crop->y0 = y0 > crop->y0 ? y0 : crop->y0;
        crop->y1 = y1 < crop->y1 ? y1 : crop->y1;
    }
    return crop->x0 != cs->siz.xosiz || crop->y0 != cs->siz.yosiz || crop->x1 != cs->siz.xsiz ||
           crop->y1 != cs->siz.ysiz;
}

/* The box of type t among the boxes in [p, end), or NULL; *clen its
 * contents' length. */
static unsigned char *find_box(unsigned char *p, unsigned char *end, const char *t,
                               apr_size_t *clen)
{
    while (end - p >= 8) {
        apr_uint64_t len = jpip_be32(p), hl = 8;

        if (len == 1) {
            if (end - p < 16) {
                return NULL;
            }
            len = jpip_be64(p + 8);
            hl = 16;
        } else if (len == 0) {
            len = (apr_uint64_t)(end - p);
        }
        if (len < hl || len > (apr_uint64_t)(end - p)) {
            return NULL;
        }
        if (memcmp(p + 4, t, 4) == 0) {
            *clen = (apr_size_t)(len - hl);
            return p + hl;
        }
        p += len;
    }
    return NULL;
}

/* A cropped codestream's JP2 header: the image header box says the
 * crop's size (openjpeg refuses an ihdr that disagrees with SIZ). 0 when
 * the file has no ihdr where a JP2 has it. */
static int crop_ihdr(unsigned char *jp2, apr_size_t len, const jpip_rect_t *crop)
{
    apr_size_t hlen, ilen;
    unsigned char *h = find_box(jp2, jp2 + len, "jp2h", &hlen);
    unsigned char *i = h != NULL ? find_box(h, h + hlen, "ihdr", &ilen) : NULL;
    apr_uint64_t w = crop->x1 - crop->x0, ht = crop->y1 - crop->y0;

    if (i == NULL || ilen < 8) {
        return 0;
    }
    i[0] = (unsigned char)(ht >> 24);
    i[1] = (unsigned char)(ht >> 16);
    i[2] = (unsigned char)(ht >> 8);
    i[3] = (unsigned char)ht;
    i[4] = (unsigned char)(w >> 24);
    i[5] = (unsigned char)(w >> 16);
    i[6] = (unsigned char)(w >> 8);
    i[7] = (unsigned char)w;
    return 1;
}

/* The codestream to decode: the view's bins rebuilt (cropped when crop is
 * not NULL), and wrapped in the file's JP2 header when it has one (its
 * palette, channels and colour space apply). *jbuf is NULL when there is
 * no JP2 wrapping. *used: precinct bins the codestream holds. */
static jpip_code_t assemble(const jpip_render_src_t *src, const jpip_render_req_t *rq,
                            jpip_binsrc_t *bsrc, unsigned d, const jpip_rect_t *crop,
                            apr_pool_t *pool, unsigned char **cbuf, apr_size_t *clen,
                            unsigned char **jbuf, apr_size_t *jlen, apr_uint64_t *used,
                            jpip_err_t *err)
{
    jpip_rebuild_opts_t ro;
    jpip_rebuild_stats_t rs;
    jpip_code_t rc;

    jpip_rebuild_opts_init(&ro);
    ro.csn = rq->csn;
    ro.reduce = d;
    if (crop != NULL) {
        ro.crop = 1;
        ro.crop_rect = *crop;
    }
    *jbuf = NULL;
    *jlen = 0;
    if ((rc = jpip_rebuild_mem(bsrc, &ro, pool, cbuf, clen, &rs, err)) != JPIP_OK) {
        return rc;
    }
    *used = rs.prec_bins;
    if (src->layout != NULL &&
        (src->layout->container == JPIP_CONTAINER_JP2 ||
         src->layout->container == JPIP_CONTAINER_JPX) &&
        src->layout->ncodestreams == 1 && rq->csn == 0) {
        cs_out_t co;
        grow_t g;
        jpip_err_t e2;

        co.data = *cbuf;
        co.len = *clen;
        memset(&g, 0, sizeof(g));
        g.pool = pool;
        if (jpip_jp2_rebuild(bsrc, give_cs, &co, grow_write, &g, pool, &e2) == JPIP_OK &&
            (crop == NULL || crop_ihdr(g.buf, g.len, crop))) {
            *jbuf = g.buf;
            *jlen = g.len;
        } else if (crop != NULL) {
            /* not cropped without the header the whole image has */
            return jpip_err_set(err, JPIP_E_FORMAT, "the JP2 header does not take the crop");
        } /* else the bare codestream still decodes */
    }
    return JPIP_OK;
}

static int aligned(apr_uint64_t v, unsigned d)
{
    return (v & ((((apr_uint64_t)1) << d) - 1)) == 0;
}

jpip_code_t jpip_render(const jpip_render_src_t *src, const jpip_render_req_t *rq, apr_pool_t *pool,
                        jpip_raster_t *out, jpip_render_stats_t *stats, jpip_err_t *err)
{
    const jpip_index_t *ix = src->ix;
    const jpip_ix_cs_t *cs = jpip_index_cs(ix, rq->csn);
    jpip_render_stats_t st;
    jpip_request_t req;
    jpip_view_t view;
    jpip_rect_t rr, area, crop;
    jpip_binsrc_t bsrc;
    binset_t bs;
    jpip_raster_t raw;
    unsigned char *cbuf, *jbuf = NULL;
    apr_size_t clen, jlen = 0;
    apr_uint64_t gx0, gy0, gx1, gy1, fx0, fy0, est;
    apr_uint32_t tx0, tx1, ty0, ty1;
    unsigned d, maxd, pass;
    dec_t *dec;
    apr_time_t t0 = apr_time_now(), t1 = t0;
    jpip_code_t rc;

    memset(&st, 0, sizeof(st));
    if (cs == NULL) {
        return jpip_err_set(err, JPIP_E_NOTFOUND, "the file has no codestream %" APR_UINT64_T_FMT,
                            rq->csn);
    }
    if (rq->w == 0 || rq->h == 0 || rq->ow == 0 || rq->oh == 0 ||
        rq->x + rq->w > cs->siz.xsiz - cs->siz.xosiz ||
        rq->y + rq->h > cs->siz.ysiz - cs->siz.yosiz) {
        return jpip_err_set(err, JPIP_E_REQUEST, "the region is outside the image");
    }
    gx0 = cs->siz.xosiz + rq->x;
    gy0 = cs->siz.yosiz + rq->y;
    gx1 = gx0 + rq->w;
    gy1 = gy0 + rq->h;
    /* the tiles the region meets, for the reduce factor they all allow */
    tx0 = (apr_uint32_t)((gx0 - cs->siz.xtosiz) / cs->siz.xtsiz);
    tx1 = (apr_uint32_t)jpip_ceildiv(gx1 - cs->siz.xtosiz, cs->siz.xtsiz);
    ty0 = (apr_uint32_t)((gy0 - cs->siz.ytosiz) / cs->siz.ytsiz);
    ty1 = (apr_uint32_t)jpip_ceildiv(gy1 - cs->siz.ytosiz, cs->siz.ytsiz);
    tx1 = tx1 > cs->siz.ntx ? cs->siz.ntx : tx1;
    ty1 = ty1 > cs->siz.nty ? cs->siz.nty : ty1;
    maxd = min_levels(ix, cs, tx0, tx1, ty0, ty1);
    for (d = 0;
         d < maxd && jpip_ceilpow2(rq->w, d + 1) >= rq->ow && jpip_ceilpow2(rq->h, d + 1) >= rq->oh;
         d++) {
    }
    /* a level that does not shrink the image (tiny images) is not discarded:
     * the view-window maps the frame size onto the smallest such level */
    while (d > 0 &&
           jpip_ceilpow2(cs->siz.xsiz, d) - jpip_ceilpow2(cs->siz.xosiz, d) ==
               jpip_ceilpow2(cs->siz.xsiz, d - 1) - jpip_ceilpow2(cs->siz.xosiz, d - 1) &&
           jpip_ceilpow2(cs->siz.ysiz, d) - jpip_ceilpow2(cs->siz.yosiz, d) ==
               jpip_ceilpow2(cs->siz.ysiz, d - 1) - jpip_ceilpow2(cs->siz.yosiz, d - 1)) {
        d--;
    }
    st.reduce = d;
    fx0 = jpip_ceilpow2(cs->siz.xosiz, d);
    fy0 = jpip_ceilpow2(cs->siz.yosiz, d);
    rr.x0 = jpip_floorpow2(gx0, d);
    rr.y0 = jpip_floorpow2(gy0, d);
    rr.x0 = rr.x0 < fx0 ? fx0 : rr.x0;
    rr.y0 = rr.y0 < fy0 ? fy0 : rr.y0;
    rr.x1 = jpip_ceilpow2(gx1, d);
    rr.y1 = jpip_ceilpow2(gy1, d);
    st.decoded_w = rr.x1 - rr.x0;
    st.decoded_h = rr.y1 - rr.y0;
    if (st.decoded_w > 0xFFFFFFFu || st.decoded_h > 0xFFFFFFFu) {
        return jpip_err_set(err, JPIP_E_LIMIT, "the region is too large to decode");
    }
    /* the decoder holds 32-bit samples of every component and the wavelet
     * buffers of the region; the output stages a few bytes per pixel */
    est =
        st.decoded_w * st.decoded_h * (cs->siz.csiz * 8 + 16) + (apr_uint64_t)rq->ow * rq->oh * 16;
    if (rq->max_memory != 0 && est > rq->max_memory) {
        return jpip_err_set(err, JPIP_E_LIMIT,
                            "rendering this region needs about %" APR_UINT64_T_FMT
                            " MB, more than the %" APR_UINT64_T_FMT " MB allowed",
                            est >> 20, rq->max_memory >> 20);
    }

    /* the view-window of that region at that resolution */
    memset(&req, 0, sizeof(req));
    req.qid = -1;
    req.has_fsiz = req.has_roff = req.has_rsiz = 1;
    req.round = JPIP_ROUND_DOWN;
    req.fx = (apr_uint32_t)(jpip_ceilpow2(cs->siz.xsiz, d) - fx0);
    req.fy = (apr_uint32_t)(jpip_ceilpow2(cs->siz.ysiz, d) - fy0);
    req.ox = (apr_uint32_t)(rr.x0 - fx0);
    req.oy = (apr_uint32_t)(rr.y0 - fy0);
    req.sx = (apr_uint32_t)st.decoded_w;
    req.sy = (apr_uint32_t)st.decoded_h;
    if ((rc = jpip_view_resolve(ix, rq->csn, &req, pool, &view, err)) != JPIP_OK) {
        return rc;
    }
    if (view.d != d || !view.has_image) {
        return jpip_err_set(err, JPIP_E_FORMAT, "the region does not map onto the codestream");
    }
    memset(&bs, 0, sizeof(bs));
    bs.ix = ix;
    bs.view = &view;
    bs.set = apr_hash_make(pool);
    bs.pool = pool;
    bs.max = rq->max_bins != 0 ? rq->max_bins : DEFAULT_MAX_BINS;
    bs.src = src;
    if ((rc = jpip_view_rows(ix, &view, collect_row, &bs, err)) != JPIP_OK) {
        return rc;
    }
    st.bins = bs.n;
    if (rq->max_memory != 0 && est + bs.bytes * 2 > rq->max_memory) {
        return jpip_err_set(err, JPIP_E_LIMIT,
                            "the region needs %" APR_UINT64_T_FMT
                            " MB of coded data, more than the memory allowed",
                            bs.bytes >> 20);
    }
    bsrc.ctx = &bs;
    bsrc.get = view_get;
    area.x0 = rr.x0 << d;
    area.y0 = rr.y0 << d;
    area.x1 = rr.x1 << d;
    area.y1 = rr.y1 << d;
    grow_area(cs, ix, d, &area);
    /* first cropped, when a crop helps; the whole image if that fails in
     * any way (a crop never costs correctness) */
    for (pass = choose_crop(ix, cs, &area, pool, &crop) ? 0 : 1; pass < 2; pass++) {
        const jpip_rect_t *c = pass == 0 ? &crop : NULL;
        apr_uint64_t used = 0;

        jpip_err_clear(err);
        rc = assemble(src, rq, &bsrc, d, c, pool, &cbuf, &clen, &jbuf, &jlen, &used, err);
        if (rc == JPIP_OK && c != NULL && used != bs.usable) {
            rc = JPIP_E_FORMAT; /* a bin the view needs is outside the crop */
        }
        if (rc != JPIP_OK) {
            if (c != NULL) {
                continue;
            }
            return rc;
        }
        st.cs_bytes = jbuf != NULL ? jlen : clen;
        t1 = apr_time_now();
        st.t_plan = t1 - t0;
        if ((rc = past_deadline(rq, "planning", err)) != JPIP_OK) {
            return rc;
        }
        rc = jbuf != NULL ? decode(jbuf, jlen, 1, d, &area, pool, &dec, err) : JPIP_E_FORMAT;
        if (rc != JPIP_OK && (c == NULL || jbuf == NULL)) {
            /* the bare codestream: a JPX header openjpeg does not read (a
             * cropped JP2 whose header fails is decoded whole instead) */
            rc = decode(cbuf, clen, 0, d, &area, pool, &dec, err);
        }
        st.cropped = rc == JPIP_OK && c != NULL;
        if (rc == JPIP_OK || c == NULL) {
            break;
        }
    }
    if (rc == JPIP_E_FORMAT) {
        /* openjpeg refuses some areas of sub-sampled or oddly tiled images
         * that it decodes whole: the whole image at this resolution, when
         * that fits the memory allowed (the rebuilt codestream still holds
         * only the region's precincts) */
        apr_uint64_t fw = jpip_ceilpow2(cs->siz.xsiz, d) - fx0;
        apr_uint64_t fh = jpip_ceilpow2(cs->siz.ysiz, d) - fy0;
        if (rq->max_memory == 0 || fw * fh * (cs->siz.csiz * 8 + 16) + clen * 2 <= rq->max_memory) {
            jpip_err_t e2;
            area.x0 = cs->siz.xosiz;
            area.y0 = cs->siz.yosiz;
            area.x1 = cs->siz.xsiz;
            area.y1 = cs->siz.ysiz;
            if (decode(cbuf, clen, 0, d, &area, pool, &dec, &e2) == JPIP_OK) {
                rc = JPIP_OK;
            }
        }
    }
    if (rc != JPIP_OK) {
        return rc;
    }
    st.t_decode = apr_time_now() - t1;
    t1 = apr_time_now();
    if ((rc = past_deadline(rq, "decoding", err)) != JPIP_OK) {
        return rc;
    }
    rc = to_raster(dec->image, &rr, &area, d, rq->drop_alpha, pool, &raw, err);
    /* the decoder's buffers go now, not with the request */
    dec_cleanup(dec);
    apr_pool_cleanup_kill(pool, dec, dec_cleanup);
    if (rc != JPIP_OK) {
        return rc;
    }
    if (raw.w == rq->ow && raw.h == rq->oh && aligned(gx0, d) && aligned(gy0, d) &&
        (aligned(gx1, d) || gx1 == cs->siz.xsiz) && (aligned(gy1, d) || gy1 == cs->siz.ysiz)) {
        *out = raw; /* the decoded region is the output: no resampling */
    } else {
        double s = (double)(1ull << d);
        if ((rc = jpip_raster_scale(&raw, gx0 / s - rr.x0, gy0 / s - rr.y0, rq->w / s, rq->h / s,
                                    rq->ow, rq->oh, pool, out, err)) != JPIP_OK) {
            return rc;
        }
    }
    to_quality(out, rq->quality, pool);
    orient(out, rq->mirror, rq->rotate, pool);
    st.t_post = apr_time_now() - t1;
    if (stats != NULL) {
        *stats = st;
    }
    return JPIP_OK;
}

apr_size_t jpip_render_heap_retain(apr_size_t retain)
{
#if defined(__GLIBC__) && defined(M_TRIM_THRESHOLD) && defined(M_MMAP_THRESHOLD)
    /* glibc: M_TRIM_THRESHOLD is the free space at the top of a heap it
     * keeps (main heap and thread arenas alike); M_MMAP_THRESHOLD the size
     * from which a request is mapped on its own. Setting either fixes both
     * (the dynamic threshold stops), so both are set. */
    if (retain == 0 || retain > (apr_size_t)INT_MAX) {
        return 0;
    }
    if (mallopt(M_TRIM_THRESHOLD, (int)retain) == 0 ||
        mallopt(M_MMAP_THRESHOLD, (int)(retain / 2)) == 0) {
        return 0;
    }
    return retain;
#else
    (void)retain;
    return 0;
#endif
}
