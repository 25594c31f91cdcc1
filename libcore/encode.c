/* mod_jpip: PNG (libpng) and JPEG (libjpeg-turbo) encoding into memory. */
#include "render.h"

#include <apr_strings.h>

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

/* ------------------------------------------------------------------ PNG */

typedef struct membuf_t {
    apr_pool_t *pool;
    unsigned char *buf;
    apr_size_t len, cap;
    int failed;
} membuf_t;

static void mb_put(membuf_t *m, const unsigned char *p, apr_size_t n)
{
    if (m->len + n > m->cap) {
        apr_size_t cap = m->cap * 2 + n + 8192;
        unsigned char *nb = apr_palloc(m->pool, cap);
        if (nb == NULL) {
            m->failed = 1;
            return;
        }
        if (m->len > 0) {
            memcpy(nb, m->buf, m->len);
        }
        m->buf = nb;
        m->cap = cap;
    }
    memcpy(m->buf + m->len, p, n);
    m->len += n;
}

static void png_put(png_structp png, png_bytep data, png_size_t n)
{
    mb_put(png_get_io_ptr(png), data, n);
}

static void png_noflush(png_structp png)
{
    (void)png;
}

static void png_fail(png_structp png, png_const_charp msg)
{
    (void)msg;
    png_longjmp(png, 1);
}

static void png_quiet(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

jpip_code_t jpip_encode_png(const jpip_raster_t *img, apr_pool_t *pool, unsigned char **out,
                            apr_size_t *len, jpip_err_t *err)
{
    static const int types[] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    membuf_t m;
    png_structp png;
    png_infop info;
    apr_uint32_t y;

    if (img->nch < 1 || img->nch > 4 || img->w == 0 || img->h == 0) {
        return jpip_err_set(err, JPIP_E_REQUEST, "nothing to encode");
    }
    memset(&m, 0, sizeof(m));
    m.pool = pool;
    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, png_fail, png_quiet);
    if (png == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "the PNG encoder cannot be created");
    }
    info = png_create_info_struct(png);
    if (info == NULL || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return jpip_err_set(err, JPIP_E_NOMEM, "the PNG encoder failed");
    }
    png_set_write_fn(png, &m, png_put, png_noflush);
    /* tiles are small and many: speed over the last few per cent */
    png_set_compression_level(png, 3);
    png_set_filter(png, 0, PNG_FILTER_SUB | PNG_FILTER_UP | PNG_FILTER_PAETH);
    png_set_IHDR(png, info, img->w, img->h, 8, types[img->nch], PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (y = 0; y < img->h; y++) {
        png_write_row(png, img->px + (apr_size_t)y * img->w * img->nch);
    }
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    if (m.failed) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory encoding PNG");
    }
    *out = m.buf;
    *len = m.len;
    return JPIP_OK;
}

/* ----------------------------------------------------------------- JPEG */

typedef struct jerr_t {
    struct jpeg_error_mgr mgr;
    jmp_buf jb;
} jerr_t;

static void jpeg_fail(j_common_ptr cinfo)
{
    longjmp(((jerr_t *)cinfo->err)->jb, 1);
}

static void jpeg_quiet(j_common_ptr cinfo, int level)
{
    (void)cinfo;
    (void)level;
}

jpip_code_t jpip_encode_jpeg(const jpip_raster_t *img, int quality, apr_pool_t *pool,
                             unsigned char **out, apr_size_t *len, jpip_err_t *err)
{
    struct jpeg_compress_struct ci;
    jerr_t je;
    unsigned char *mem = NULL;
    unsigned long mlen = 0;
    unsigned char *volatile row = NULL;
    unsigned nc = img->nch >= 3 ? 3 : 1;
    apr_uint32_t y, x;

    if (img->nch < 1 || img->nch > 4 || img->w == 0 || img->h == 0 || img->w > 65500 ||
        img->h > 65500) {
        return jpip_err_set(err, JPIP_E_REQUEST, "JPEG holds at most 65500 pixels a side");
    }
    memset(&ci, 0, sizeof(ci));
    ci.err = jpeg_std_error(&je.mgr);
    je.mgr.error_exit = jpeg_fail;
    je.mgr.emit_message = jpeg_quiet;
    if (setjmp(je.jb)) {
        jpeg_destroy_compress(&ci);
        free(mem);
        return jpip_err_set(err, JPIP_E_NOMEM, "the JPEG encoder failed");
    }
    jpeg_create_compress(&ci);
    jpeg_mem_dest(&ci, &mem, &mlen);
    ci.image_width = img->w;
    ci.image_height = img->h;
    ci.input_components = (int)nc;
    ci.in_color_space = nc == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, quality, TRUE);
    if (nc == 3) {
        /* no chroma sub-sampling: tiles of maps and scans keep their
         * coloured lines and text */
        ci.comp_info[0].h_samp_factor = ci.comp_info[0].v_samp_factor = 1;
    }
    jpeg_start_compress(&ci, TRUE);
    if (img->nch != nc) {
        row = apr_palloc(pool, (apr_size_t)img->w * nc);
    }
    for (y = 0; y < img->h; y++) {
        JSAMPROW rp;
        const unsigned char *s = img->px + (apr_size_t)y * img->w * img->nch;
        if (row != NULL) {
            for (x = 0; x < img->w; x++) {
                memcpy(row + (apr_size_t)x * nc, s + (apr_size_t)x * img->nch, nc);
            }
            rp = row;
        } else {
            rp = (JSAMPROW)s;
        }
        jpeg_write_scanlines(&ci, &rp, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    *out = apr_pmemdup(pool, mem, mlen);
    *len = mlen;
    free(mem);
    return JPIP_OK;
}
