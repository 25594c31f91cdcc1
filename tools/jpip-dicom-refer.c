/* jpip-dicom-refer: write the JPIP Referenced Pixel Data object of a DICOM file.
 *
 *   jpip-dicom-refer [--deflate] [--transfer-syntax UID] IN.dcm URL OUT.dcm
 *
 * IN.dcm is a Part 10 file whose Pixel Data is encapsulated JPEG 2000 or
 * HTJ2K, served by mod_jpip at URL (http:// or https://, e.g.
 * http://pacs.example/jpip/ct/0001.dcm). OUT.dcm gets the same data set
 * with (DICOM PS3.5 A.6, A.7, A.11, A.12):
 *   - Pixel Data (7FE0,0010) and the Extended Offset Table elements
 *     (7FE0,0001..0003) left out, and Pixel Data Provider URL (0028,7FE0)
 *     put in, holding URL (a '?' is appended when URL has no query, so that
 *     a client can append "&fsiz=...", "&stream=N"); Digital Signatures
 *     (FFFA,FFFA) left out as well, since what they signed is gone;
 *   - the file meta group rewritten: Transfer Syntax UID
 *     1.2.840.10008.1.2.4.94 (JPIP Referenced) for JPEG 2000 pixel data,
 *     1.2.840.10008.1.2.4.204 (JPIP HTJ2K Referenced) for HTJ2K, or with
 *     --deflate their Deflate variants .95 and .205, whose data set is then
 *     deflate-compressed (RFC 1951); --transfer-syntax picks one of the four
 *     explicitly; Implementation Class UID and Version Name are mod_jpip's;
 *     the media storage SOP class and instance and the other meta elements
 *     are kept.
 * Every other element is copied byte for byte, in order.
 *
 * Exit status 0 on success, 1 when IN.dcm cannot be referenced (named on
 * stderr), 2 on a usage error.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_strings.h>
#include <apr_tables.h>

#include "dicom.h"
#include "source.h"

/* 2.25 + a UUID (PS3.5 B.2): mod_jpip's Implementation Class UID */
#define IMPL_CLASS_UID "2.25.165345418145364718931775970403285178422"
#define IMPL_VERSION "MOD_JPIP " PACKAGE_VERSION

#define TS_REF "1.2.840.10008.1.2.4.94"
#define TS_REF_DEFLATE "1.2.840.10008.1.2.4.95"
#define TS_HT_REF "1.2.840.10008.1.2.4.204"
#define TS_HT_REF_DEFLATE "1.2.840.10008.1.2.4.205"
#define TAG_PROVIDER_URL JPIP_DICOM_TAG(0x0028, 0x7FE0)

typedef struct out_t {
    FILE *f;
    const char *path;
    z_stream z; /* when deflating the data set */
    int deflating;
} out_t;

static void die(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2), noreturn))
#endif
    ;

static const char *out_path; /* removed when we die */

static void die(const char *fmt, ...)
{
    va_list ap;

    fputs("jpip-dicom-refer: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (out_path != NULL) {
        remove(out_path);
    }
    exit(1);
}

static void put_raw(out_t *o, const void *p, size_t n)
{
    if (n > 0 && fwrite(p, 1, n, o->f) != n) {
        die("cannot write %s", o->path);
    }
}

static void put(out_t *o, const void *p, size_t n)
{
    unsigned char buf[65536];

    if (!o->deflating) {
        put_raw(o, p, n);
        return;
    }
    o->z.next_in = (Bytef *)p;
    o->z.avail_in = (uInt)n;
    while (o->z.avail_in > 0) {
        o->z.next_out = buf;
        o->z.avail_out = sizeof(buf);
        if (deflate(&o->z, Z_NO_FLUSH) != Z_OK) {
            die("deflate failed");
        }
        put_raw(o, buf, sizeof(buf) - o->z.avail_out);
    }
}

static void deflate_end(out_t *o)
{
    unsigned char buf[65536];
    int zr;

    do {
        o->z.next_out = buf;
        o->z.avail_out = sizeof(buf);
        zr = deflate(&o->z, Z_FINISH);
        if (zr != Z_OK && zr != Z_STREAM_END) {
            die("deflate failed");
        }
        put_raw(o, buf, sizeof(buf) - o->z.avail_out);
    } while (zr != Z_STREAM_END);
    deflateEnd(&o->z);
    o->deflating = 0;
}

/* An Explicit VR Little Endian element of a short or long VR, its value
 * padded to even length with pad. */
static unsigned char *element(apr_pool_t *pool, apr_uint32_t tag, const char *vr, const void *value,
                              size_t len, char pad, size_t *outlen)
{
    int lng = strcmp(vr, "OB") == 0 || strcmp(vr, "UR") == 0;
    size_t vlen = len + (len & 1), hl = lng ? 12 : 8;
    unsigned char *e = apr_pcalloc(pool, hl + vlen);

    e[0] = (unsigned char)(tag >> 16);
    e[1] = (unsigned char)(tag >> 24);
    e[2] = (unsigned char)tag;
    e[3] = (unsigned char)(tag >> 8);
    e[4] = (unsigned char)vr[0];
    e[5] = (unsigned char)vr[1];
    if (lng) {
        e[8] = (unsigned char)vlen;
        e[9] = (unsigned char)(vlen >> 8);
        e[10] = (unsigned char)(vlen >> 16);
        e[11] = (unsigned char)(vlen >> 24);
    } else {
        if (vlen > 0xFFFF) {
            die("value of (%04X,%04X) too long", tag >> 16, tag & 0xFFFF);
        }
        e[6] = (unsigned char)vlen;
        e[7] = (unsigned char)(vlen >> 8);
    }
    memcpy(e + hl, value, len);
    if (len & 1) {
        e[hl + len] = (unsigned char)pad;
    }
    *outlen = hl + vlen;
    return e;
}

/* Copy file bytes [off, end) to o. */
static void copy_range(out_t *o, jpip_src_t *src, apr_uint64_t off, apr_uint64_t end)
{
    unsigned char buf[65536];
    jpip_err_t err;

    while (off < end) {
        apr_size_t n = end - off > sizeof(buf) ? sizeof(buf) : (apr_size_t)(end - off);
        if (jpip_src_read(src, off, buf, n, &err) != JPIP_OK) {
            die("cannot read the input: %s", err.msg);
        }
        put(o, buf, n);
        off += n;
    }
}

typedef struct melem_t {
    apr_uint32_t tag;
    const unsigned char *bytes; /* NULL: copy from the input */
    size_t len;
    const jpip_dicom_elem_t *orig;
} melem_t;

static int melem_cmp(const void *a, const void *b)
{
    const melem_t *x = a, *y = b;

    return x->tag < y->tag ? -1 : x->tag > y->tag;
}

static int url_ok(const char *u)
{
    const char *p;

    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0) {
        return 0;
    }
    for (p = u; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7F || *p == '\\') {
            return 0;
        }
    }
    return strlen(u) > 8;
}

static int usage(void)
{
    fprintf(stderr, "usage: jpip-dicom-refer [--deflate] [--transfer-syntax UID] IN.dcm URL "
                    "OUT.dcm\n");
    return 2;
}

int main(int argc, char **argv)
{
    apr_pool_t *pool;
    apr_file_t *f;
    apr_finfo_t fi;
    jpip_src_t *src;
    jpip_dicom_limits_t lim;
    jpip_dicom_t *d;
    jpip_err_t err;
    const char *in = NULL, *url = NULL, *outp = NULL, *ts = NULL;
    int deflating = 0, i, nmeta = 0, inserted = 0;
    melem_t *me;
    size_t glen = 0, ulen;
    unsigned char *ue, gl[12];
    apr_uint32_t k;
    out_t o;

    apr_app_initialize(&argc, (const char *const **)&argv, NULL);
    apr_pool_create(&pool, NULL);
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--deflate") == 0) {
            deflating = 1;
        } else if (strcmp(argv[i], "--transfer-syntax") == 0 && i + 1 < argc) {
            ts = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return usage();
        } else if (in == NULL) {
            in = argv[i];
        } else if (url == NULL) {
            url = argv[i];
        } else if (outp == NULL) {
            outp = argv[i];
        } else {
            return usage();
        }
    }
    if (outp == NULL) {
        return usage();
    }
    if (!url_ok(url)) {
        fprintf(stderr, "jpip-dicom-refer: the URL must be http:// or https://, printable ASCII "
                        "without spaces\n");
        return 2;
    }
    if (ts != NULL && strcmp(ts, TS_REF) != 0 && strcmp(ts, TS_REF_DEFLATE) != 0 &&
        strcmp(ts, TS_HT_REF) != 0 && strcmp(ts, TS_HT_REF_DEFLATE) != 0) {
        fprintf(stderr, "jpip-dicom-refer: --transfer-syntax must be %s, %s, %s or %s\n", TS_REF,
                TS_REF_DEFLATE, TS_HT_REF, TS_HT_REF_DEFLATE);
        return 2;
    }

    if (apr_file_open(&f, in, APR_FOPEN_READ | APR_FOPEN_BINARY, 0, pool) != APR_SUCCESS ||
        apr_file_info_get(&fi, APR_FINFO_SIZE, f) != APR_SUCCESS) {
        die("cannot open %s", in);
    }
    if (jpip_src_open_file(&src, pool, f, (apr_uint64_t)fi.size, &err) != JPIP_OK) {
        die("%s: %s", in, err.msg);
    }
    jpip_dicom_limits_default(&lim);
    lim.keep_elements = 1;
    lim.walk_all = 1;
    if (jpip_dicom_parse(&d, pool, src, &lim, &err) != JPIP_OK) {
        die("%s: %s", in, err.msg);
    }
    if (d->sop_class[0] == '\0' || d->sop_inst[0] == '\0') {
        die("%s: no SOP Class or SOP Instance UID", in);
    }
    if (ts == NULL) {
        ts = d->ts == JPIP_DICOM_TS_HTJ2K ? (deflating ? TS_HT_REF_DEFLATE : TS_HT_REF)
                                          : (deflating ? TS_REF_DEFLATE : TS_REF);
    }
    deflating = strcmp(ts, TS_REF_DEFLATE) == 0 || strcmp(ts, TS_HT_REF_DEFLATE) == 0;
    if (strchr(url, '?') == NULL) {
        url = apr_pstrcat(pool, url, "?", NULL);
    }
    ue = element(pool, TAG_PROVIDER_URL, "UR", url, strlen(url), ' ', &ulen);

    /* the meta group: ours, then the input's other meta elements */
    me = apr_pcalloc(pool, (d->nelems + 8) * sizeof(*me));
    {
        static const unsigned char version[2] = {0, 1};
        struct {
            apr_uint32_t tag;
            const char *vr;
            const void *v;
            size_t n;
            char pad;
        } mine[] = {
            {JPIP_DICOM_TAG(2, 1), "OB", version, 2, 0},
            {JPIP_DICOM_TAG(2, 2), "UI", d->sop_class, strlen(d->sop_class), 0},
            {JPIP_DICOM_TAG(2, 3), "UI", d->sop_inst, strlen(d->sop_inst), 0},
            {JPIP_DICOM_TAG(2, 0x10), "UI", ts, strlen(ts), 0},
            {JPIP_DICOM_TAG(2, 0x12), "UI", IMPL_CLASS_UID, strlen(IMPL_CLASS_UID), 0},
            {JPIP_DICOM_TAG(2, 0x13), "SH", IMPL_VERSION, strlen(IMPL_VERSION), ' '},
        };
        size_t j;

        for (j = 0; j < sizeof(mine) / sizeof(mine[0]); j++) {
            me[nmeta].tag = mine[j].tag;
            me[nmeta].bytes = element(pool, mine[j].tag, mine[j].vr, mine[j].v, mine[j].n,
                                      mine[j].pad, &me[nmeta].len);
            nmeta++;
        }
    }
    for (k = 0; k < d->nelems; k++) {
        const jpip_dicom_elem_t *e = &d->elems[k];
        apr_uint32_t el = e->tag & 0xFFFF;

        if ((e->tag >> 16) != 2 || el <= 3 || el == 0x10 || el == 0x12 || el == 0x13) {
            continue;
        }
        me[nmeta].tag = e->tag;
        me[nmeta].orig = e;
        me[nmeta].len = (size_t)(e->end - e->off);
        nmeta++;
    }
    qsort(me, (size_t)nmeta, sizeof(*me), melem_cmp);
    for (i = 0; i < nmeta; i++) {
        glen += me[i].len;
    }

    memset(&o, 0, sizeof(o));
    o.path = outp;
    o.f = fopen(outp, "wb");
    if (o.f == NULL) {
        die("cannot create %s", outp);
    }
    out_path = outp;
    {
        unsigned char pre[132];
        memset(pre, 0, 128);
        memcpy(pre + 128, "DICM", 4);
        put_raw(&o, pre, sizeof(pre));
    }
    memcpy(gl, "\x02\x00\x00\x00UL\x04\x00", 8);
    gl[8] = (unsigned char)glen;
    gl[9] = (unsigned char)(glen >> 8);
    gl[10] = (unsigned char)(glen >> 16);
    gl[11] = (unsigned char)(glen >> 24);
    put_raw(&o, gl, 12);
    for (i = 0; i < nmeta; i++) {
        if (me[i].bytes != NULL) {
            put_raw(&o, me[i].bytes, me[i].len);
        } else {
            copy_range(&o, src, me[i].orig->off, me[i].orig->end);
        }
    }

    /* the data set, deflated for the Deflate transfer syntaxes */
    if (deflating) {
        if (deflateInit2(&o.z, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            die("deflate failed");
        }
        o.deflating = 1;
    }
    for (k = 0; k < d->nelems; k++) {
        const jpip_dicom_elem_t *e = &d->elems[k];

        if ((e->tag >> 16) == 2) {
            continue;
        }
        if (!inserted && e->tag > TAG_PROVIDER_URL) {
            put(&o, ue, ulen);
            inserted = 1;
        }
        if ((e->tag >> 16) == 0x7FE0 && (e->tag & 0xFFFF) <= 0x10) {
            continue; /* Pixel Data and its offset tables: now at URL */
        }
        if (e->tag == TAG_PROVIDER_URL || e->tag == JPIP_DICOM_TAG(0xFFFA, 0xFFFA)) {
            continue;
        }
        copy_range(&o, src, e->off, e->end);
    }
    if (!inserted) {
        put(&o, ue, ulen);
    }
    if (o.deflating) {
        deflate_end(&o);
    }
    if (fclose(o.f) != 0) {
        die("cannot write %s", outp);
    }
    apr_file_close(f);
    printf("%s: %u frame%s, transfer syntax %s, Pixel Data Provider URL %s\n", outp, d->nframes,
           d->nframes == 1 ? "" : "s", ts, url);
    apr_pool_destroy(pool);
    apr_terminate();
    return 0;
}
