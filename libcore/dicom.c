/* mod_jpip: DICOM Part 10 walker; frames of encapsulated JPEG 2000 as codestreams. */
#include "dicom.h"

#include <string.h>

#include <apr_strings.h>

#define TAG_ITEM JPIP_DICOM_TAG(0xFFFE, 0xE000)
#define TAG_ITEM_END JPIP_DICOM_TAG(0xFFFE, 0xE00D)
#define TAG_SEQ_END JPIP_DICOM_TAG(0xFFFE, 0xE0DD)
#define TAG_TS JPIP_DICOM_TAG(0x0002, 0x0010)
#define TAG_MS_CLASS JPIP_DICOM_TAG(0x0002, 0x0002)
#define TAG_MS_INST JPIP_DICOM_TAG(0x0002, 0x0003)
#define TAG_SOP_CLASS JPIP_DICOM_TAG(0x0008, 0x0016)
#define TAG_SOP_INST JPIP_DICOM_TAG(0x0008, 0x0018)
#define TAG_NFRAMES JPIP_DICOM_TAG(0x0028, 0x0008)
#define TAG_PHOTOMETRIC JPIP_DICOM_TAG(0x0028, 0x0004)
#define TAG_PIXEL_SPACING JPIP_DICOM_TAG(0x0028, 0x0030)
#define TAG_SHARED_FG JPIP_DICOM_TAG(0x5200, 0x9229)
#define TAG_PIXEL_MEASURES JPIP_DICOM_TAG(0x0028, 0x9110)
#define TAG_EOT JPIP_DICOM_TAG(0x7FE0, 0x0001)
#define TAG_EOT_LENGTHS JPIP_DICOM_TAG(0x7FE0, 0x0002)
#define TAG_PIXEL_DATA JPIP_DICOM_TAG(0x7FE0, 0x0010)
#define UNDEFINED 0xFFFFFFFFu

/* What a nested walk looks for (the one nested attribute collected). */
#define WANT_NONE 0
#define WANT_SHARED_ITEM 1   /* first item of Shared Functional Groups Sequence */
#define WANT_MEASURES_ITEM 2 /* first item of its Pixel Measures Sequence */

void jpip_dicom_limits_default(jpip_dicom_limits_t *lim)
{
    memset(lim, 0, sizeof(*lim));
    lim->max_depth = 32;
    lim->max_frames = 65536;
    lim->max_frags = 1048576;
    lim->max_elements = 4194304;
}

/* ---- transfer syntaxes ---------------------------------------------------- */

static const struct {
    const char *uid;
    const char *name;
    jpip_dicom_ts_t kind;
} ts_table[] = {
    {"1.2.840.10008.1.2", "Implicit VR Little Endian", JPIP_DICOM_TS_OTHER},
    {"1.2.840.10008.1.2.1", "Explicit VR Little Endian", JPIP_DICOM_TS_OTHER},
    {"1.2.840.10008.1.2.1.98", "Encapsulated Uncompressed Explicit VR Little Endian",
     JPIP_DICOM_TS_OTHER},
    {"1.2.840.10008.1.2.1.99", "Deflated Explicit VR Little Endian", JPIP_DICOM_TS_OTHER},
    {"1.2.840.10008.1.2.2", "Explicit VR Big Endian", JPIP_DICOM_TS_OTHER},
    {"1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)", JPIP_DICOM_TS_OTHER},
    {"1.2.840.10008.1.2.4.51", "JPEG Extended (Process 2 & 4)", JPIP_DICOM_TS_OTHER},
    {"1.2.840.10008.1.2.4.57", "JPEG Lossless, Non-Hierarchical (Process 14)", JPIP_DICOM_TS_OTHER},
    {"1.2.840.10008.1.2.4.70", "JPEG Lossless, Non-Hierarchical, First-Order Prediction",
     JPIP_DICOM_TS_OTHER},
    {"1.2.840.10008.1.2.4.80", "JPEG-LS Lossless Image Compression", JPIP_DICOM_TS_OTHER},
    {"1.2.840.10008.1.2.4.81", "JPEG-LS Lossy (Near-Lossless) Image Compression",
     JPIP_DICOM_TS_OTHER},
    {"1.2.840.10008.1.2.4.90", "JPEG 2000 Image Compression (Lossless Only)", JPIP_DICOM_TS_J2K},
    {"1.2.840.10008.1.2.4.91", "JPEG 2000 Image Compression", JPIP_DICOM_TS_J2K},
    {"1.2.840.10008.1.2.4.92", "JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only)",
     JPIP_DICOM_TS_J2K},
    {"1.2.840.10008.1.2.4.93", "JPEG 2000 Part 2 Multi-component Image Compression",
     JPIP_DICOM_TS_J2K},
    {"1.2.840.10008.1.2.4.94", "JPIP Referenced", JPIP_DICOM_TS_OTHER},
    {"1.2.840.10008.1.2.4.95", "JPIP Referenced Deflate", JPIP_DICOM_TS_OTHER},
    {"1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level", JPIP_DICOM_TS_OTHER},
    {"1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 High Profile / Level 4.1", JPIP_DICOM_TS_OTHER},
    {"1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000 Image Compression (Lossless Only)",
     JPIP_DICOM_TS_HTJ2K},
    {"1.2.840.10008.1.2.4.202",
     "High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only)",
     JPIP_DICOM_TS_HTJ2K},
    {"1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000 Image Compression", JPIP_DICOM_TS_HTJ2K},
    {"1.2.840.10008.1.2.4.204", "JPIP HTJ2K Referenced", JPIP_DICOM_TS_OTHER},
    {"1.2.840.10008.1.2.4.205", "JPIP HTJ2K Referenced Deflate", JPIP_DICOM_TS_OTHER},
    {"1.2.840.10008.1.2.5", "RLE Lossless", JPIP_DICOM_TS_OTHER},
};

jpip_dicom_ts_t jpip_dicom_ts_kind(const char *uid)
{
    apr_size_t i;

    for (i = 0; i < sizeof(ts_table) / sizeof(ts_table[0]); i++) {
        if (strcmp(ts_table[i].uid, uid) == 0) {
            return ts_table[i].kind;
        }
    }
    return JPIP_DICOM_TS_OTHER;
}

const char *jpip_dicom_ts_name(const char *uid)
{
    apr_size_t i;

    for (i = 0; i < sizeof(ts_table) / sizeof(ts_table[0]); i++) {
        if (strcmp(ts_table[i].uid, uid) == 0) {
            return ts_table[i].name;
        }
    }
    return NULL;
}

/* ---- the walker ------------------------------------------------------------- */

static apr_uint32_t le16(const unsigned char *p)
{
    return (apr_uint32_t)p[0] | ((apr_uint32_t)p[1] << 8);
}

static apr_uint32_t le32(const unsigned char *p)
{
    return le16(p) | (le16(p + 2) << 16);
}

static apr_uint64_t le64(const unsigned char *p)
{
    return (apr_uint64_t)le32(p) | ((apr_uint64_t)le32(p + 4) << 32);
}

/* Growable array in pool memory. */
typedef struct vec_t {
    apr_pool_t *pool;
    void *data;
    apr_size_t n, cap, elt;
} vec_t;

static void vec_init(vec_t *v, apr_pool_t *pool, apr_size_t elt)
{
    memset(v, 0, sizeof(*v));
    v->pool = pool;
    v->elt = elt;
}

static void *vec_push(vec_t *v)
{
    void *p;

    if (v->n == v->cap) {
        apr_size_t cap = v->cap ? v->cap * 2 : 16;
        void *nd = apr_palloc(v->pool, cap * v->elt);
        if (nd == NULL) {
            return NULL;
        }
        if (v->n > 0) {
            memcpy(nd, v->data, v->n * v->elt);
        }
        v->data = nd;
        v->cap = cap;
    }
    p = (char *)v->data + v->n * v->elt;
    memset(p, 0, v->elt);
    v->n++;
    return p;
}

/* One Pixel Data item after the Basic Offset Table. */
typedef struct item_t {
    apr_uint64_t rel; /* offset of its tag from the first fragment item's tag */
    apr_uint64_t off; /* its value in the file */
    apr_uint64_t len;
} item_t;

typedef struct walker_t {
    apr_pool_t *pool;
    jpip_src_t *src;
    apr_uint64_t size;
    jpip_dicom_limits_t lim;
    jpip_err_t *err;
    jpip_dicom_t *d;
    vec_t attrs; /* jpip_dicom_attr_t */
    vec_t elems; /* jpip_dicom_elem_t */
    vec_t items; /* item_t */
    int have_pixel;
    apr_uint64_t bot_off, bot_len;   /* Basic Offset Table value */
    apr_uint64_t eot_off, eot_len;   /* Extended Offset Table value */
    apr_uint64_t eotl_off, eotl_len; /* its Lengths */
    int have_eot, have_eotl;
} walker_t;

/* One element (or item) header. */
typedef struct el_t {
    apr_uint32_t tag;
    char vr[3];
    apr_uint64_t off;       /* its tag */
    apr_uint64_t value_off; /* its value */
    apr_uint64_t len;       /* value length (UNDEFINED allowed) */
    int undefined;
} el_t;

static int vr_is_long(const char *vr)
{
    static const char *const longs[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ",
                                        "SV", "UC", "UN", "UR", "UT", "UV"};
    apr_size_t i;

    for (i = 0; i < sizeof(longs) / sizeof(longs[0]); i++) {
        if (vr[0] == longs[i][0] && vr[1] == longs[i][1]) {
            return 1;
        }
    }
    return 0;
}

static int vr_is_short(const char *vr)
{
    static const char *const shorts[] = {"AE", "AS", "AT", "CS", "DA", "DS", "DT",
                                         "FL", "FD", "IS", "LO", "LT", "PN", "SH",
                                         "SL", "SS", "ST", "TM", "UI", "UL", "US"};
    apr_size_t i;

    for (i = 0; i < sizeof(shorts) / sizeof(shorts[0]); i++) {
        if (vr[0] == shorts[i][0] && vr[1] == shorts[i][1]) {
            return 1;
        }
    }
    return 0;
}

static jpip_code_t count_walked(walker_t *w)
{
    if (++w->d->nwalked > w->lim.max_elements) {
        return jpip_err_set(w->err, JPIP_E_LIMIT,
                            "DICOM data set has more than %" APR_UINT64_T_FMT " elements and items",
                            w->lim.max_elements);
    }
    return JPIP_OK;
}

/* Read the element or item header at pos; its value must end by end
 * (unless undefined). where names the enclosing value for messages. */
static jpip_code_t read_el(walker_t *w, apr_uint64_t pos, apr_uint64_t end, int implicit,
                           const char *where, el_t *e)
{
    const unsigned char *p;
    apr_uint32_t group;
    jpip_code_t rc;

    memset(e, 0, sizeof(*e));
    e->off = pos;
    if (pos > end || end - pos < 8) {
        return jpip_err_set(w->err, JPIP_E_FORMAT,
                            "DICOM element at offset %" APR_UINT64_T_FMT
                            " is cut off by the end of the %s",
                            pos, where);
    }
    rc = count_walked(w);
    if (rc != JPIP_OK) {
        return rc;
    }
    rc = jpip_src_peek(w->src, pos, end - pos >= 12 ? 12 : 8, &p, w->err);
    if (rc != JPIP_OK) {
        return rc;
    }
    group = le16(p);
    e->tag = (group << 16) | le16(p + 2);
    if (group == 0xFFFE || implicit) {
        /* items and delimiters, and Implicit VR elements: tag and 32-bit length */
        e->len = le32(p + 4);
        e->value_off = pos + 8;
    } else {
        e->vr[0] = (char)p[4];
        e->vr[1] = (char)p[5];
        if (vr_is_long(e->vr)) {
            if (end - pos < 12) {
                return jpip_err_set(w->err, JPIP_E_FORMAT,
                                    "DICOM element (%04X,%04X) at offset %" APR_UINT64_T_FMT
                                    " is cut off by the end of the %s",
                                    group, e->tag & 0xFFFF, pos, where);
            }
            e->len = le32(p + 8);
            e->value_off = pos + 12;
        } else if (vr_is_short(e->vr)) {
            e->len = le16(p + 6);
            e->value_off = pos + 8;
        } else {
            return jpip_err_set(w->err, JPIP_E_FORMAT,
                                "DICOM element (%04X,%04X) at offset %" APR_UINT64_T_FMT
                                " has no known VR (bytes %02X %02X): not Explicit VR Little "
                                "Endian",
                                group, e->tag & 0xFFFF, pos, p[4], p[5]);
        }
    }
    if (e->len == UNDEFINED && (implicit || group == 0xFFFE || vr_is_long(e->vr))) {
        e->undefined = 1;
        return JPIP_OK;
    }
    if (e->len > end - e->value_off) {
        return jpip_err_set(w->err, JPIP_E_FORMAT,
                            "DICOM element (%04X,%04X) at offset %" APR_UINT64_T_FMT
                            ": its length %" APR_UINT64_T_FMT " runs past the end of the %s",
                            group, e->tag & 0xFFFF, pos, e->len, where);
    }
    return JPIP_OK;
}

static jpip_code_t walk_items(walker_t *w, apr_uint64_t pos, apr_uint64_t end, int delimited,
                              int implicit, int raw, unsigned depth, int want, int parent,
                              apr_uint64_t *next);

/* Where an item or a delimiter must come: refuse anything else by its tag,
 * before its length is read as an item length. */
static jpip_code_t expect_item(walker_t *w, apr_uint64_t pos, apr_uint64_t end, const char *where,
                               const char *what)
{
    const unsigned char *p;
    jpip_code_t rc;

    if (pos > end || end - pos < 4) {
        return jpip_err_set(w->err, JPIP_E_FORMAT,
                            "DICOM item at offset %" APR_UINT64_T_FMT
                            " is cut off by the end of the %s",
                            pos, where);
    }
    rc = jpip_src_peek(w->src, pos, 4, &p, w->err);
    if (rc != JPIP_OK) {
        return rc;
    }
    if (le16(p) != 0xFFFE) {
        return jpip_err_set(w->err, JPIP_E_FORMAT,
                            "DICOM (%04X,%04X) at offset %" APR_UINT64_T_FMT
                            " where %s was expected",
                            le16(p), le16(p + 2), pos, what);
    }
    return JPIP_OK;
}

/* Keep the value of e (at most JPIP_DICOM_VALUE_MAX bytes) as an attribute. */
static jpip_code_t keep_attr(walker_t *w, const el_t *e, int parent, int *index)
{
    jpip_dicom_attr_t *a;
    const unsigned char *p = NULL;
    jpip_code_t rc;

    int sq = e->undefined || (e->vr[0] == 'S' && e->vr[1] == 'Q');

    if (!sq && e->len > JPIP_DICOM_VALUE_MAX) {
        return JPIP_OK;
    }
    if (!sq && e->len > 0) {
        rc = jpip_src_peek(w->src, e->value_off, (apr_size_t)e->len, &p, w->err);
        if (rc != JPIP_OK) {
            return rc;
        }
    }
    a = vec_push(&w->attrs);
    if (a == NULL) {
        return jpip_err_set(w->err, JPIP_E_NOMEM, "out of memory");
    }
    a->tag = e->tag;
    memcpy(a->vr, sq ? "SQ" : e->vr, 3);
    a->parent = parent;
    a->len = sq ? 0 : (apr_size_t)e->len; /* a sequence is kept for its kept children */
    a->value = p != NULL ? apr_pmemdup(w->pool, p, (apr_size_t)e->len) : (const unsigned char *)"";
    if (index != NULL) {
        *index = (int)w->attrs.n - 1;
    }
    return JPIP_OK;
}

/* The value of element e, whatever its form; *next = one past it. */
static jpip_code_t skip_value(walker_t *w, const el_t *e, apr_uint64_t end, int implicit,
                              unsigned depth, int want, int parent, apr_uint64_t *next)
{
    int sq = implicit || (e->vr[0] == 'S' && e->vr[1] == 'Q');

    if (e->undefined) {
        /* SQ (or any undefined length in Implicit VR) holds items of
         * elements, UN holds them in Implicit VR (PS3.5 6.2.2), anything
         * else (encapsulated data) items of raw bytes */
        int un = !implicit && e->vr[0] == 'U' && e->vr[1] == 'N';
        int raw = !sq && !un;
        if (implicit && e->tag == TAG_PIXEL_DATA) {
            raw = 1;
        }
        return walk_items(w, e->value_off, end, 1, implicit || un, raw, depth, want, parent, next);
    }
    if (sq && !implicit && want != WANT_NONE) {
        return walk_items(w, e->value_off, e->value_off + e->len, 0, implicit, 0, depth, want,
                          parent, next);
    }
    *next = e->value_off + e->len;
    return JPIP_OK;
}

/* Elements of a nested data set (an item's value): from pos to end, or to
 * the item delimiter when delimited. */
static jpip_code_t walk_dataset(walker_t *w, apr_uint64_t pos, apr_uint64_t end, int delimited,
                                int implicit, unsigned depth, int want, int parent,
                                apr_uint64_t *next)
{
    const char *where = delimited ? "file (an item of undefined length never ends)" : "item";
    el_t e;
    jpip_code_t rc;

    for (;;) {
        int sub = WANT_NONE, idx = parent;

        if (!delimited && pos == end) {
            *next = pos;
            return JPIP_OK;
        }
        rc = read_el(w, pos, end, implicit, where, &e);
        if (rc != JPIP_OK) {
            return rc;
        }
        if (e.tag == TAG_ITEM_END) {
            *next = e.value_off;
            return JPIP_OK; /* a delimiter in an item of defined length ends it too */
        }
        if ((e.tag >> 16) == 0xFFFE) {
            return jpip_err_set(w->err, JPIP_E_FORMAT,
                                "DICOM item tag (FFFE,%04X) at offset %" APR_UINT64_T_FMT
                                " among the elements of an item",
                                e.tag & 0xFFFF, pos);
        }
        if (want == WANT_SHARED_ITEM && e.tag == TAG_PIXEL_MEASURES && !implicit) {
            rc = keep_attr(w, &e, parent, &idx);
            sub = WANT_MEASURES_ITEM;
        } else if (want == WANT_MEASURES_ITEM && e.tag == TAG_PIXEL_SPACING && !implicit) {
            rc = keep_attr(w, &e, parent, NULL);
        }
        if (rc != JPIP_OK) {
            return rc;
        }
        rc = skip_value(w, &e, end, implicit, depth, sub, idx, &pos);
        if (rc != JPIP_OK) {
            return rc;
        }
    }
}

/* Items of a sequence (or of encapsulated data when raw): from pos to end,
 * or to the sequence delimiter when delimited. Item data sets are walked
 * at depth + 1; the first item's when want asks for it. */
static jpip_code_t walk_items(walker_t *w, apr_uint64_t pos, apr_uint64_t end, int delimited,
                              int implicit, int raw, unsigned depth, int want, int parent,
                              apr_uint64_t *next)
{
    const char *where = delimited ? "file (a sequence of undefined length never ends)" : "sequence";
    apr_uint64_t nitem = 0;
    el_t e;
    jpip_code_t rc;

    if (depth + 1 > w->lim.max_depth) {
        return jpip_err_set(w->err, JPIP_E_FORMAT,
                            "DICOM sequences nested more than %u deep at offset %" APR_UINT64_T_FMT,
                            w->lim.max_depth, pos);
    }
    for (;; nitem++) {
        if (!delimited && pos == end) {
            *next = pos;
            return JPIP_OK;
        }
        rc = expect_item(w, pos, end, where, "a sequence item");
        if (rc == JPIP_OK) {
            rc = read_el(w, pos, end, 1, where, &e);
        }
        if (rc != JPIP_OK) {
            return rc;
        }
        if (e.tag == TAG_SEQ_END) {
            *next = e.value_off;
            return JPIP_OK;
        }
        if (e.tag != TAG_ITEM) {
            return jpip_err_set(w->err, JPIP_E_FORMAT,
                                "DICOM (%04X,%04X) at offset %" APR_UINT64_T_FMT
                                " where a sequence item was expected",
                                e.tag >> 16, e.tag & 0xFFFF, pos);
        }
        if (raw) {
            if (e.undefined) {
                return jpip_err_set(w->err, JPIP_E_FORMAT,
                                    "DICOM fragment item at offset %" APR_UINT64_T_FMT
                                    " has undefined length",
                                    pos);
            }
            pos = e.value_off + e.len;
            continue;
        }
        rc = walk_dataset(w, e.value_off, e.undefined ? end : e.value_off + e.len, e.undefined,
                          implicit, depth + 1, nitem == 0 ? want : WANT_NONE, parent, &pos);
        if (rc != JPIP_OK) {
            return rc;
        }
        if (!e.undefined) {
            pos = e.value_off + e.len;
        }
    }
}

/* The items of the top-level Pixel Data value from pos: the Basic Offset
 * Table, then the fragments, to the sequence delimiter. */
static jpip_code_t walk_pixel(walker_t *w, apr_uint64_t pos, apr_uint64_t *next)
{
    const char *where = "file (the Pixel Data fragments have no sequence delimiter)";
    apr_uint64_t first = 0;
    int bot = 1;
    el_t e;
    jpip_code_t rc;

    for (;;) {
        rc = expect_item(w, pos, w->size, where,
                         bot ? "the Basic Offset Table item" : "a fragment item");
        if (rc == JPIP_OK) {
            rc = read_el(w, pos, w->size, 1, where, &e);
        }
        if (rc != JPIP_OK) {
            return rc;
        }
        if (e.tag == TAG_SEQ_END && !bot) {
            *next = e.value_off;
            return JPIP_OK;
        }
        if (e.tag != TAG_ITEM) {
            return jpip_err_set(w->err, JPIP_E_FORMAT,
                                "DICOM (%04X,%04X) at offset %" APR_UINT64_T_FMT
                                " in the Pixel Data where %s item was expected",
                                e.tag >> 16, e.tag & 0xFFFF, pos,
                                bot ? "the Basic Offset Table" : "a fragment");
        }
        if (e.undefined) {
            return jpip_err_set(
                w->err, JPIP_E_FORMAT,
                "DICOM Pixel Data item at offset %" APR_UINT64_T_FMT " has undefined length", pos);
        }
        if (bot) {
            if (e.len % 4 != 0) {
                return jpip_err_set(w->err, JPIP_E_FORMAT,
                                    "DICOM Basic Offset Table at offset %" APR_UINT64_T_FMT
                                    " is %" APR_UINT64_T_FMT " bytes, not a multiple of 4",
                                    pos, e.len);
            }
            w->bot_off = e.value_off;
            w->bot_len = e.len;
            bot = 0;
            first = e.value_off + e.len;
        } else {
            item_t *it;

            if (w->items.n >= w->lim.max_frags) {
                return jpip_err_set(w->err, JPIP_E_LIMIT,
                                    "DICOM Pixel Data has more than %u fragments",
                                    w->lim.max_frags);
            }
            it = vec_push(&w->items);
            if (it == NULL) {
                return jpip_err_set(w->err, JPIP_E_NOMEM, "out of memory for fragments");
            }
            it->rel = pos - first;
            it->off = e.value_off;
            it->len = e.len;
        }
        pos = e.value_off + e.len;
    }
}

/* Top-level attributes kept for viewers (docs/dicom.md). */
static const struct {
    apr_uint32_t tag;
    const char *keyword;
} wanted[] = {
    {JPIP_DICOM_TAG(0x0002, 0x0010), "TransferSyntaxUID"},
    {JPIP_DICOM_TAG(0x0008, 0x0016), "SOPClassUID"},
    {JPIP_DICOM_TAG(0x0008, 0x0018), "SOPInstanceUID"},
    {JPIP_DICOM_TAG(0x0008, 0x0060), "Modality"},
    {JPIP_DICOM_TAG(0x0018, 0x0050), "SliceThickness"},
    {JPIP_DICOM_TAG(0x0018, 0x1164), "ImagerPixelSpacing"},
    {JPIP_DICOM_TAG(0x0020, 0x000D), "StudyInstanceUID"},
    {JPIP_DICOM_TAG(0x0020, 0x000E), "SeriesInstanceUID"},
    {JPIP_DICOM_TAG(0x0020, 0x0013), "InstanceNumber"},
    {JPIP_DICOM_TAG(0x0020, 0x0032), "ImagePositionPatient"},
    {JPIP_DICOM_TAG(0x0020, 0x0037), "ImageOrientationPatient"},
    {JPIP_DICOM_TAG(0x0028, 0x0002), "SamplesPerPixel"},
    {JPIP_DICOM_TAG(0x0028, 0x0004), "PhotometricInterpretation"},
    {JPIP_DICOM_TAG(0x0028, 0x0006), "PlanarConfiguration"},
    {JPIP_DICOM_TAG(0x0028, 0x0008), "NumberOfFrames"},
    {JPIP_DICOM_TAG(0x0028, 0x0010), "Rows"},
    {JPIP_DICOM_TAG(0x0028, 0x0011), "Columns"},
    {JPIP_DICOM_TAG(0x0028, 0x0030), "PixelSpacing"},
    {JPIP_DICOM_TAG(0x0028, 0x0034), "PixelAspectRatio"},
    {JPIP_DICOM_TAG(0x0028, 0x0100), "BitsAllocated"},
    {JPIP_DICOM_TAG(0x0028, 0x0101), "BitsStored"},
    {JPIP_DICOM_TAG(0x0028, 0x0102), "HighBit"},
    {JPIP_DICOM_TAG(0x0028, 0x0103), "PixelRepresentation"},
    {JPIP_DICOM_TAG(0x0028, 0x1050), "WindowCenter"},
    {JPIP_DICOM_TAG(0x0028, 0x1051), "WindowWidth"},
    {JPIP_DICOM_TAG(0x0028, 0x1052), "RescaleIntercept"},
    {JPIP_DICOM_TAG(0x0028, 0x1053), "RescaleSlope"},
    {JPIP_DICOM_TAG(0x0028, 0x1054), "RescaleType"},
    {JPIP_DICOM_TAG(0x0028, 0x2110), "LossyImageCompression"},
    {JPIP_DICOM_TAG(0x0028, 0x2112), "LossyImageCompressionRatio"},
    {JPIP_DICOM_TAG(0x0028, 0x9110), "PixelMeasuresSequence"},
    {JPIP_DICOM_TAG(0x5200, 0x9229), "SharedFunctionalGroupsSequence"},
};

static const char *keyword_of(apr_uint32_t tag)
{
    apr_size_t i;

    for (i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
        if (wanted[i].tag == tag) {
            return wanted[i].keyword;
        }
    }
    return NULL;
}

static int wanted_top(apr_uint32_t tag)
{
    return tag != TAG_PIXEL_MEASURES && tag != TAG_SHARED_FG && (tag >> 16) != 0x0002 &&
           keyword_of(tag) != NULL;
}

static jpip_code_t keep_elem(walker_t *w, const el_t *e, apr_uint64_t end)
{
    jpip_dicom_elem_t *x;

    if (!w->lim.keep_elements) {
        return JPIP_OK;
    }
    x = vec_push(&w->elems);
    if (x == NULL) {
        return jpip_err_set(w->err, JPIP_E_NOMEM, "out of memory");
    }
    x->off = e->off;
    x->value_off = e->value_off;
    x->end = end;
    x->tag = e->tag;
    memcpy(x->vr, e->vr, 3);
    x->undefined = e->undefined;
    return JPIP_OK;
}

/* A UI value into out (65 bytes): padding dropped, anything but digits
 * and dots made '?', so that it can go into messages as it is. */
static void uid_copy(char out[65], const unsigned char *p, apr_size_t n)
{
    apr_size_t i, k = 0;

    while (n > 0 && (p[n - 1] == 0 || p[n - 1] == ' ')) {
        n--;
    }
    for (i = 0; i < n && k < 64; i++) {
        out[k++] = (p[i] >= '0' && p[i] <= '9') || p[i] == '.' ? (char)p[i] : '?';
    }
    out[k] = '\0';
}

static jpip_code_t read_uid(walker_t *w, const el_t *e, char out[65])
{
    const unsigned char *p;
    apr_size_t n = e->len > 64 ? 64 : (apr_size_t)e->len;
    jpip_code_t rc;

    out[0] = '\0';
    if (e->undefined || n == 0) {
        return JPIP_OK;
    }
    rc = jpip_src_peek(w->src, e->value_off, n, &p, w->err);
    if (rc == JPIP_OK) {
        uid_copy(out, p, n);
    }
    return rc;
}

/* The file meta group from 132: Explicit VR Little Endian whatever the
 * transfer syntax, every element of group 0002. */
static jpip_code_t walk_meta(walker_t *w, apr_uint64_t *next)
{
    apr_uint64_t pos = 132;
    jpip_dicom_t *d = w->d;
    int have_ts = 0;
    el_t e;
    jpip_code_t rc;

    for (;;) {
        const unsigned char *p;
        apr_uint64_t end;

        if (w->size - pos < 8) {
            break;
        }
        rc = jpip_src_peek(w->src, pos, 2, &p, w->err);
        if (rc != JPIP_OK) {
            return rc;
        }
        if (le16(p) != 0x0002) {
            break;
        }
        rc = read_el(w, pos, w->size, 0, "file meta group", &e);
        if (rc != JPIP_OK) {
            return rc;
        }
        if (e.undefined) {
            return jpip_err_set(w->err, JPIP_E_FORMAT,
                                "DICOM file meta element (0002,%04X) at offset %" APR_UINT64_T_FMT
                                " has undefined length",
                                e.tag & 0xFFFF, pos);
        }
        end = e.value_off + e.len;
        if (e.tag == TAG_TS) {
            rc = read_uid(w, &e, d->ts_uid);
            have_ts = 1;
        } else if (e.tag == TAG_MS_CLASS) {
            rc = read_uid(w, &e, d->sop_class);
        } else if (e.tag == TAG_MS_INST) {
            rc = read_uid(w, &e, d->sop_inst);
        }
        if (rc == JPIP_OK) {
            rc = keep_elem(w, &e, end);
        }
        if (rc != JPIP_OK) {
            return rc;
        }
        pos = end;
    }
    if (!have_ts || d->ts_uid[0] == '\0') {
        return jpip_err_set(w->err, JPIP_E_FORMAT,
                            "DICOM file meta group has no Transfer Syntax UID (0002,0010)");
    }
    *next = pos;
    return JPIP_OK;
}

/* The top-level data set from pos: attributes, offset tables, Pixel Data. */
static jpip_code_t walk_top(walker_t *w, apr_uint64_t pos)
{
    jpip_dicom_t *d = w->d;
    el_t e;
    jpip_code_t rc;

    while (pos < w->size) {
        apr_uint64_t next = 0;
        int idx = -1, want = WANT_NONE;

        rc = read_el(w, pos, w->size, 0, "file", &e);
        if (rc != JPIP_OK) {
            return rc;
        }
        if ((e.tag >> 16) == 0xFFFE) {
            return jpip_err_set(w->err, JPIP_E_FORMAT,
                                "DICOM item tag (FFFE,%04X) at offset %" APR_UINT64_T_FMT
                                " at the top level of the data set",
                                e.tag & 0xFFFF, pos);
        }
        if (e.tag == TAG_PIXEL_DATA && !w->have_pixel) {
            if (!e.undefined) {
                return jpip_err_set(w->err, JPIP_E_FORMAT,
                                    "DICOM Pixel Data (7FE0,0010) at offset %" APR_UINT64_T_FMT
                                    " is not encapsulated (%" APR_UINT64_T_FMT
                                    " bytes of native pixels) under transfer syntax %s",
                                    pos, e.len, d->ts_uid);
            }
            d->pixel_off = pos;
            rc = walk_pixel(w, e.value_off, &next);
            if (rc != JPIP_OK) {
                return rc;
            }
            d->pixel_end = next;
            w->have_pixel = 1;
            rc = keep_elem(w, &e, next);
            if (rc != JPIP_OK || !w->lim.walk_all) {
                return rc;
            }
            pos = next;
            continue;
        }
        rc = JPIP_OK;
        if (e.tag == TAG_EOT || e.tag == TAG_EOT_LENGTHS) {
            if (e.undefined) {
                return jpip_err_set(w->err, JPIP_E_FORMAT,
                                    "DICOM Extended Offset Table element (7FE0,%04X) at offset "
                                    "%" APR_UINT64_T_FMT " has undefined length",
                                    e.tag & 0xFFFF, pos);
            }
            if (e.tag == TAG_EOT) {
                w->have_eot = 1;
                w->eot_off = e.value_off;
                w->eot_len = e.len;
            } else {
                w->have_eotl = 1;
                w->eotl_off = e.value_off;
                w->eotl_len = e.len;
            }
        } else if (wanted_top(e.tag)) {
            rc = keep_attr(w, &e, -1, NULL);
        } else if (e.tag == TAG_SHARED_FG && (e.undefined || (e.vr[0] == 'S' && e.vr[1] == 'Q'))) {
            rc = keep_attr(w, &e, -1, &idx);
            want = WANT_SHARED_ITEM;
        }
        if (rc == JPIP_OK && e.tag == TAG_SOP_CLASS && d->sop_class[0] == '\0') {
            rc = read_uid(w, &e, d->sop_class);
        }
        if (rc == JPIP_OK && e.tag == TAG_SOP_INST && d->sop_inst[0] == '\0') {
            rc = read_uid(w, &e, d->sop_inst);
        }
        if (rc != JPIP_OK) {
            return rc;
        }
        rc = skip_value(w, &e, w->size, 0, 0, want, idx, &next);
        if (rc == JPIP_OK) {
            rc = keep_elem(w, &e, next);
        }
        if (rc != JPIP_OK) {
            return rc;
        }
        pos = next;
    }
    return JPIP_OK;
}

/* ---- frames --------------------------------------------------------------- */

/* Number of Frames (IS) from the kept attributes; 1 when absent. */
static jpip_code_t number_of_frames(walker_t *w, apr_uint64_t *n)
{
    const jpip_dicom_attr_t *a = jpip_dicom_attr(w->d, TAG_NFRAMES);
    apr_uint64_t v = 0;
    apr_size_t i = 0, len;
    int digits = 0;

    *n = 1;
    if (a == NULL) {
        return JPIP_OK;
    }
    len = a->len;
    while (len > 0 && (a->value[len - 1] == ' ' || a->value[len - 1] == 0)) {
        len--;
    }
    while (i < len && a->value[i] == ' ') {
        i++;
    }
    if (i < len && a->value[i] == '+') {
        i++;
    }
    for (; i < len; i++) {
        if (a->value[i] < '0' || a->value[i] > '9' || v > 0xFFFFFFFFull) {
            return jpip_err_set(w->err, JPIP_E_FORMAT,
                                "DICOM Number of Frames (0028,0008) is not a frame count");
        }
        v = v * 10 + (a->value[i] - '0');
        digits++;
    }
    if (digits == 0 || v > 0xFFFFFFFFull) {
        return jpip_err_set(w->err, JPIP_E_FORMAT,
                            "DICOM Number of Frames (0028,0008) is not a frame count");
    }
    if (v == 0) {
        return jpip_err_set(w->err, JPIP_E_FORMAT, "DICOM Number of Frames (0028,0008) is 0");
    }
    *n = v;
    return JPIP_OK;
}

/* The index of the item whose tag is at rel (from the first fragment's),
 * or -1. Items are in increasing rel order. */
static apr_int64_t item_at(const walker_t *w, apr_uint64_t rel)
{
    const item_t *it = w->items.data;
    apr_size_t lo = 0, hi = w->items.n;

    while (lo < hi) {
        apr_size_t mid = lo + (hi - lo) / 2;
        if (it[mid].rel == rel) {
            return (apr_int64_t)mid;
        }
        if (it[mid].rel < rel) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return -1;
}

/* Frame starts from an offset table of n entries of esz bytes at off. */
static jpip_code_t table_starts(walker_t *w, const char *name, apr_uint64_t off, apr_uint64_t n,
                                unsigned esz, apr_uint32_t *starts)
{
    apr_uint64_t i, prev = 0;
    jpip_code_t rc;

    for (i = 0; i < n; i++) {
        const unsigned char *p;
        apr_uint64_t v;
        apr_int64_t k;

        rc = jpip_src_peek(w->src, off + i * esz, esz, &p, w->err);
        if (rc != JPIP_OK) {
            return rc;
        }
        v = esz == 4 ? le32(p) : le64(p);
        if ((i == 0 && v != 0) || (i > 0 && v <= prev)) {
            return jpip_err_set(w->err, JPIP_E_FORMAT,
                                "DICOM %s entry %" APR_UINT64_T_FMT " (%" APR_UINT64_T_FMT
                                ") is %s",
                                name, i, v, i == 0 ? "not 0" : "not beyond the previous entry");
        }
        k = item_at(w, v);
        if (k < 0) {
            return jpip_err_set(w->err, JPIP_E_FORMAT,
                                "DICOM %s entry %" APR_UINT64_T_FMT " (%" APR_UINT64_T_FMT
                                ") does not point at a fragment of the Pixel Data",
                                name, i, v);
        }
        starts[i] = (apr_uint32_t)k;
        prev = v;
    }
    return JPIP_OK;
}

/* Whether the fragment's value starts like a codestream: SOC, SIZ and a
 * SIZ length that matches its component count. */
static jpip_code_t starts_codestream(walker_t *w, const item_t *it, int *yes)
{
    const unsigned char *p;
    jpip_code_t rc;

    *yes = 0;
    if (it->len < 42) {
        return JPIP_OK;
    }
    rc = jpip_src_peek(w->src, it->off, 42, &p, w->err);
    if (rc != JPIP_OK) {
        return rc;
    }
    *yes = p[0] == 0xFF && p[1] == 0x4F && p[2] == 0xFF && p[3] == 0x51 &&
           jpip_be16(p + 4) == 38 + 3 * jpip_be16(p + 40) && jpip_be16(p + 40) > 0;
    return JPIP_OK;
}

/* Group the items into frames; fill d->frames and d->frags. */
static jpip_code_t make_frames(walker_t *w)
{
    jpip_dicom_t *d = w->d;
    const item_t *it = w->items.data;
    apr_uint64_t nframes, m = w->items.n, i, *lengths = NULL;
    apr_uint32_t *starts, f;
    vec_t frags;
    jpip_code_t rc;

    rc = number_of_frames(w, &nframes);
    if (rc != JPIP_OK) {
        return rc;
    }
    if (m == 0) {
        return jpip_err_set(w->err, JPIP_E_FORMAT, "DICOM Pixel Data has no fragments");
    }
    if (nframes > m) {
        return jpip_err_set(w->err, JPIP_E_FORMAT,
                            "DICOM Number of Frames is %" APR_UINT64_T_FMT
                            " but the Pixel Data has only %" APR_UINT64_T_FMT " fragments",
                            nframes, m);
    }
    if (nframes > w->lim.max_frames) {
        return jpip_err_set(w->err, JPIP_E_LIMIT,
                            "DICOM file has %" APR_UINT64_T_FMT " frames; the limit is %u", nframes,
                            w->lim.max_frames);
    }
    starts = apr_palloc(w->pool, (apr_size_t)(nframes + 1) * sizeof(*starts));
    if (starts == NULL) {
        return jpip_err_set(w->err, JPIP_E_NOMEM, "out of memory");
    }
    if (w->have_eot && w->eot_len > 0) {
        if (w->eot_len % 8 != 0 || w->eot_len / 8 != nframes) {
            return jpip_err_set(w->err, JPIP_E_FORMAT,
                                "DICOM Extended Offset Table is %" APR_UINT64_T_FMT
                                " bytes for %" APR_UINT64_T_FMT " frames",
                                w->eot_len, nframes);
        }
        rc = table_starts(w, "Extended Offset Table", w->eot_off, nframes, 8, starts);
        if (rc != JPIP_OK) {
            return rc;
        }
        if (w->have_eotl) {
            if (w->eotl_len != w->eot_len) {
                return jpip_err_set(w->err, JPIP_E_FORMAT,
                                    "DICOM Extended Offset Table Lengths is %" APR_UINT64_T_FMT
                                    " bytes for %" APR_UINT64_T_FMT " frames",
                                    w->eotl_len, nframes);
            }
            lengths = apr_palloc(w->pool, (apr_size_t)nframes * sizeof(*lengths));
            for (i = 0; i < nframes; i++) {
                const unsigned char *p;
                rc = jpip_src_peek(w->src, w->eotl_off + i * 8, 8, &p, w->err);
                if (rc != JPIP_OK) {
                    return rc;
                }
                lengths[i] = le64(p);
            }
        }
        d->frames_by = "Extended Offset Table";
    } else if (w->bot_len > 0) {
        if (w->bot_len / 4 != nframes) {
            return jpip_err_set(w->err, JPIP_E_FORMAT,
                                "DICOM Basic Offset Table has %" APR_UINT64_T_FMT
                                " entries for %" APR_UINT64_T_FMT " frames",
                                w->bot_len / 4, nframes);
        }
        rc = table_starts(w, "Basic Offset Table", w->bot_off, nframes, 4, starts);
        if (rc != JPIP_OK) {
            return rc;
        }
        d->frames_by = "Basic Offset Table";
    } else if (m == nframes) {
        for (i = 0; i < m; i++) {
            starts[i] = (apr_uint32_t)i;
        }
        d->frames_by = "one fragment per frame";
    } else if (nframes == 1) {
        starts[0] = 0;
        d->frames_by = "one frame";
    } else {
        apr_uint64_t n = 0;
        for (i = 0; i < m; i++) {
            int yes;
            rc = starts_codestream(w, &it[i], &yes);
            if (rc != JPIP_OK) {
                return rc;
            }
            if (i == 0 && !yes) {
                return jpip_err_set(w->err, JPIP_E_FORMAT,
                                    "DICOM Pixel Data: the first fragment does not start with a "
                                    "JPEG 2000 codestream (and there is no offset table)");
            }
            if (yes) {
                if (n == nframes) {
                    n++;
                    break;
                }
                starts[n++] = (apr_uint32_t)i;
            }
        }
        if (n != nframes) {
            return jpip_err_set(w->err, JPIP_E_FORMAT,
                                "DICOM Pixel Data: %s codestream starts in %" APR_UINT64_T_FMT
                                " fragments for %" APR_UINT64_T_FMT " frames (no offset table)",
                                n > nframes ? "more" : "fewer", m, nframes);
        }
        d->frames_by = "SOC markers";
    }
    starts[nframes] = (apr_uint32_t)m;

    d->nframes = (apr_uint32_t)nframes;
    d->frames = apr_pcalloc(w->pool, (apr_size_t)nframes * sizeof(*d->frames));
    vec_init(&frags, w->pool, sizeof(jpip_piece_t));
    for (f = 0; f < nframes; f++) {
        jpip_dicom_frame_t *fr = &d->frames[f];
        apr_uint64_t total = 0;

        fr->first_frag = (apr_uint32_t)frags.n;
        for (i = starts[f]; i < starts[f + 1]; i++) {
            jpip_piece_t *p;
            if (it[i].len == 0) {
                continue;
            }
            p = vec_push(&frags);
            if (p == NULL) {
                return jpip_err_set(w->err, JPIP_E_NOMEM, "out of memory");
            }
            p->off = it[i].off;
            p->len = it[i].len;
            total += it[i].len;
        }
        fr->nfrags = (apr_uint32_t)frags.n - fr->first_frag;
        if (lengths != NULL) {
            apr_uint64_t want = lengths[f], keep = 0;
            if (want > total) {
                return jpip_err_set(
                    w->err, JPIP_E_FORMAT,
                    "DICOM Extended Offset Table Lengths: frame %u is %" APR_UINT64_T_FMT
                    " bytes but its fragments hold %" APR_UINT64_T_FMT,
                    f + 1, want, total);
            }
            /* cut the frame to its stated length */
            for (i = 0; i < fr->nfrags; i++) {
                jpip_piece_t *p = &((jpip_piece_t *)frags.data)[fr->first_frag + i];
                if (keep + p->len >= want) {
                    p->len = want - keep;
                    keep = want;
                    fr->nfrags = (apr_uint32_t)(i + (p->len > 0 ? 1 : 0));
                    frags.n = fr->first_frag + fr->nfrags;
                    break;
                }
                keep += p->len;
            }
            total = want;
        } else if (fr->nfrags > 0) {
            /* the pad byte that makes an item's length even, after EOC */
            jpip_piece_t *p = &((jpip_piece_t *)frags.data)[frags.n - 1];
            const unsigned char *q;
            if (p->len >= 3) {
                rc = jpip_src_peek(w->src, p->off + p->len - 3, 3, &q, w->err);
                if (rc != JPIP_OK) {
                    return rc;
                }
                if (q[0] == 0xFF && q[1] == 0xD9 && q[2] == 0x00) {
                    p->len--;
                    total--;
                }
            }
        }
        if (total == 0) {
            return jpip_err_set(w->err, JPIP_E_FORMAT, "DICOM frame %u is empty", f + 1);
        }
        fr->length = total;
    }
    d->nfrags = (apr_uint32_t)frags.n;
    d->frags = frags.data;
    return JPIP_OK;
}

int jpip_dicom_sniff(jpip_src_t *src)
{
    unsigned char m[4];
    jpip_err_t err;

    if (jpip_src_size(src) < 132) {
        return 0;
    }
    if (jpip_src_read(src, 128, m, 4, &err) != JPIP_OK) {
        return 0;
    }
    return memcmp(m, "DICM", 4) == 0;
}

jpip_code_t jpip_dicom_parse(jpip_dicom_t **out, apr_pool_t *pool, jpip_src_t *src,
                             const jpip_dicom_limits_t *lim, jpip_err_t *err)
{
    walker_t w;
    jpip_dicom_t *d;
    apr_uint64_t pos = 0;
    jpip_code_t rc;

    memset(&w, 0, sizeof(w));
    w.pool = pool;
    w.src = src;
    w.size = jpip_src_size(src);
    w.err = err;
    if (lim != NULL) {
        w.lim = *lim;
    } else {
        jpip_dicom_limits_default(&w.lim);
    }
    if (!jpip_dicom_sniff(src)) {
        return jpip_err_set(err, JPIP_E_FORMAT, "not a DICOM file (no \"DICM\" at offset 128)");
    }
    d = apr_pcalloc(pool, sizeof(*d));
    if (d == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "out of memory");
    }
    w.d = d;
    vec_init(&w.attrs, pool, sizeof(jpip_dicom_attr_t));
    vec_init(&w.elems, pool, sizeof(jpip_dicom_elem_t));
    vec_init(&w.items, pool, sizeof(item_t));
    d->meta_off = 132;
    rc = walk_meta(&w, &pos);
    if (rc != JPIP_OK) {
        return rc;
    }
    d->dataset_off = pos;
    d->ts = jpip_dicom_ts_kind(d->ts_uid);
    if (d->ts == JPIP_DICOM_TS_OTHER) {
        const char *name = jpip_dicom_ts_name(d->ts_uid);
        return jpip_err_set(err, JPIP_E_UNSUPPORTED,
                            "DICOM file with transfer syntax %s (%s): its pixel data is not "
                            "JPEG 2000",
                            d->ts_uid, name != NULL ? name : "not a known transfer syntax");
    }
    rc = walk_top(&w, pos);
    if (rc != JPIP_OK) {
        return rc;
    }
    d->nattrs = (apr_uint32_t)w.attrs.n;
    d->attrs = w.attrs.data;
    d->nelems = (apr_uint32_t)w.elems.n;
    d->elems = w.elems.data;
    if (!w.have_pixel) {
        return jpip_err_set(err, JPIP_E_UNSUPPORTED,
                            "DICOM file with transfer syntax %s (%s) has no Pixel Data "
                            "(7FE0,0010)",
                            d->ts_uid, jpip_dicom_ts_name(d->ts_uid));
    }
    rc = make_frames(&w);
    if (rc != JPIP_OK) {
        return rc;
    }
    *out = d;
    return JPIP_OK;
}

const jpip_dicom_attr_t *jpip_dicom_attr(const jpip_dicom_t *d, apr_uint32_t tag)
{
    apr_uint32_t i;

    for (i = 0; i < d->nattrs; i++) {
        if (d->attrs[i].tag == tag && d->attrs[i].parent < 0) {
            return &d->attrs[i];
        }
    }
    return NULL;
}

/* ---- Native DICOM Model XML --------------------------------------------- */

typedef struct sbuf_t {
    apr_pool_t *pool;
    char *p;
    apr_size_t n, cap;
} sbuf_t;

static void sb_put(sbuf_t *b, const char *s, apr_size_t n)
{
    if (b->n + n + 1 > b->cap) {
        apr_size_t cap = b->cap ? b->cap : 1024;
        char *np;
        while (cap < b->n + n + 1) {
            cap *= 2;
        }
        np = apr_palloc(b->pool, cap);
        if (b->n > 0) {
            memcpy(np, b->p, b->n);
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(sbuf_t *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_escaped(sbuf_t *b, const unsigned char *s, apr_size_t n)
{
    apr_size_t i;

    for (i = 0; i < n; i++) {
        switch (s[i]) {
        case '<':
            sb_str(b, "&lt;");
            break;
        case '>':
            sb_str(b, "&gt;");
            break;
        case '&':
            sb_str(b, "&amp;");
            break;
        case '"':
            sb_str(b, "&quot;");
            break;
        case '\'':
            sb_str(b, "&apos;");
            break;
        default: {
            char c = s[i] >= 0x20 && s[i] < 0x7F ? (char)s[i] : '?';
            sb_put(b, &c, 1);
        }
        }
    }
}

static void sb_value(sbuf_t *b, unsigned number, const unsigned char *s, apr_size_t n)
{
    char num[32];

    apr_snprintf(num, sizeof(num), "<Value number=\"%u\">", number);
    sb_str(b, num);
    sb_escaped(b, s, n);
    sb_str(b, "</Value>");
}

/* Values of a kept attribute, by its VR. */
static void xml_values(sbuf_t *b, const jpip_dicom_attr_t *a)
{
    char num[32];
    apr_size_t i;
    unsigned k = 1;

    if (strcmp(a->vr, "US") == 0 || strcmp(a->vr, "SS") == 0) {
        for (i = 0; i + 2 <= a->len; i += 2, k++) {
            apr_uint32_t v = le16(a->value + i);
            if (a->vr[0] == 'S') {
                apr_snprintf(num, sizeof(num), "%d", (int)(apr_int16_t)v);
            } else {
                apr_snprintf(num, sizeof(num), "%u", v);
            }
            sb_value(b, k, (const unsigned char *)num, strlen(num));
        }
        return;
    }
    if (strcmp(a->vr, "UL") == 0 || strcmp(a->vr, "SL") == 0) {
        for (i = 0; i + 4 <= a->len; i += 4, k++) {
            apr_uint32_t v = le32(a->value + i);
            if (a->vr[0] == 'S') {
                apr_snprintf(num, sizeof(num), "%d", (int)(apr_int32_t)v);
            } else {
                apr_snprintf(num, sizeof(num), "%u", v);
            }
            sb_value(b, k, (const unsigned char *)num, strlen(num));
        }
        return;
    }
    /* text: backslash-separated values, padding trimmed, empty ones left out */
    for (i = 0; i <= a->len; k++) {
        apr_size_t j = i, s, e;
        while (j < a->len && a->value[j] != '\\') {
            j++;
        }
        s = i;
        e = j;
        while (s < e && a->value[s] == ' ') {
            s++;
        }
        while (e > s && (a->value[e - 1] == ' ' || a->value[e - 1] == 0)) {
            e--;
        }
        if (e > s) {
            sb_value(b, k, a->value + s, e - s);
        }
        i = j + 1;
    }
}

static void xml_attr_open(sbuf_t *b, apr_uint32_t tag, const char *vr)
{
    char head[160];
    const char *kw = keyword_of(tag);

    apr_snprintf(head, sizeof(head), "<DicomAttribute tag=\"%08X\" vr=\"%s\"%s%s%s>", tag, vr,
                 kw != NULL ? " keyword=\"" : "", kw != NULL ? kw : "", kw != NULL ? "\"" : "");
    sb_str(b, head);
}

/* Attribute i and, for a sequence, its kept children as the first item. */
static void xml_attr(sbuf_t *b, const jpip_dicom_t *d, apr_uint32_t i, unsigned depth)
{
    const jpip_dicom_attr_t *a = &d->attrs[i];
    apr_uint32_t j;

    if (strcmp(a->vr, "SQ") == 0) {
        int kids = 0;
        for (j = i + 1; j < d->nattrs; j++) {
            kids |= d->attrs[j].parent == (int)i;
        }
        if (!kids || depth >= 4) {
            return;
        }
    }
    xml_attr_open(b, a->tag, a->vr);
    if (strcmp(a->vr, "SQ") == 0) {
        {
            sb_str(b, "<Item number=\"1\">");
            for (j = i + 1; j < d->nattrs; j++) {
                if (d->attrs[j].parent == (int)i) {
                    xml_attr(b, d, j, depth + 1);
                }
            }
            sb_str(b, "</Item>");
        }
    } else {
        xml_values(b, a);
    }
    sb_str(b, "</DicomAttribute>\n");
}

const char *jpip_dicom_xml(const jpip_dicom_t *d, apr_pool_t *pool, apr_size_t *len)
{
    sbuf_t b;
    apr_uint32_t i;
    int nf = 0;
    char num[32];

    memset(&b, 0, sizeof(b));
    b.pool = pool;
    sb_str(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<NativeDicomModel xmlns=\"http://dicom.nema.org/PS3.19/models/NativeDICOM\" "
               "xml:space=\"preserve\">\n");
    xml_attr_open(&b, TAG_TS, "UI");
    sb_value(&b, 1, (const unsigned char *)d->ts_uid, strlen(d->ts_uid));
    sb_str(&b, "</DicomAttribute>\n");
    for (i = 0; i < d->nattrs; i++) {
        if (d->attrs[i].parent >= 0) {
            continue;
        }
        if (d->attrs[i].tag > TAG_NFRAMES && !nf) {
            nf = 1;
            /* the frame count as served, also when the file leaves it out */
            xml_attr_open(&b, TAG_NFRAMES, "IS");
            apr_snprintf(num, sizeof(num), "%u", d->nframes);
            sb_value(&b, 1, (const unsigned char *)num, strlen(num));
            sb_str(&b, "</DicomAttribute>\n");
        }
        if (d->attrs[i].tag == TAG_NFRAMES) {
            continue;
        }
        xml_attr(&b, d, i, 0);
    }
    if (!nf) {
        xml_attr_open(&b, TAG_NFRAMES, "IS");
        apr_snprintf(num, sizeof(num), "%u", d->nframes);
        sb_value(&b, 1, (const unsigned char *)num, strlen(num));
        sb_str(&b, "</DicomAttribute>\n");
    }
    sb_str(&b, "</NativeDicomModel>\n");
    *len = b.n;
    return b.p;
}

/* ---- box layout ----------------------------------------------------------- */

typedef struct lb_t {
    apr_pool_t *pool;
    jpip_err_t *err;
    sbuf_t synth;
    vec_t boxes; /* jpip_box_t */
} lb_t;

static void put32(unsigned char *p, apr_uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void put64(unsigned char *p, apr_uint64_t v)
{
    put32(p, (apr_uint32_t)(v >> 32));
    put32(p + 4, (apr_uint32_t)v);
}

/* Start a verbatim box of contents_len bytes; its header goes into synth
 * now, its contents follow. */
static jpip_code_t lb_box(lb_t *lb, apr_uint32_t type, apr_uint64_t contents_len,
                          apr_uint32_t parent, unsigned depth, apr_uint32_t *index)
{
    jpip_box_t *bx = vec_push(&lb->boxes);
    unsigned char hdr[16];
    unsigned hl = jpip_box_header_put(hdr, type, contents_len);

    if (bx == NULL) {
        return jpip_err_set(lb->err, JPIP_E_NOMEM, "out of memory");
    }
    bx->file_off = JPIP_PIECE_SYNTH | lb->synth.n;
    bx->contents_len = contents_len;
    bx->hdr_bin_off = lb->synth.n;
    bx->contents_bin_off = lb->synth.n + hl;
    bx->contents_bin_len = contents_len;
    bx->type = type;
    bx->parent = parent;
    bx->end = (apr_uint32_t)lb->boxes.n;
    bx->hdr_bin = 0;
    bx->contents_bin = 0;
    bx->codestream = JPIP_BOX_NONE;
    bx->depth = (apr_uint16_t)depth;
    bx->hdr_len = (unsigned char)hl;
    bx->hdr_bin_len = (unsigned char)hl;
    bx->mode = JPIP_BOX_VERBATIM;
    sb_put(&lb->synth, (const char *)hdr, hl);
    if (index != NULL) {
        *index = (apr_uint32_t)lb->boxes.n - 1;
    }
    return JPIP_OK;
}

/* The Flags=4 placeholder standing for frame csn's 'jp2c' box. */
static jpip_code_t lb_placeholder(lb_t *lb, apr_uint32_t csn, apr_uint64_t length)
{
    jpip_box_t *bx = vec_push(&lb->boxes);
    unsigned char ph[60], bh[16];
    unsigned hl = jpip_box_header_put(bh, JPIP_BOX_JP2C, length), len = 20 + hl + 24;

    if (bx == NULL) {
        return jpip_err_set(lb->err, JPIP_E_NOMEM, "out of memory");
    }
    memset(ph, 0, sizeof(ph));
    put32(ph, len);
    put32(ph + 4, JPIP_BOX_PHLD);
    put32(ph + 8, JPIP_PHLD_CS);
    put64(ph + 12, (apr_uint64_t)csn + 1);
    memcpy(ph + 20, bh, hl);
    /* EquivID and EquivBH stay zero, then CSID */
    put64(ph + 20 + hl + 16, csn);
    bx->file_off = JPIP_PIECE_SYNTH | lb->synth.n;
    bx->contents_len = length;
    bx->hdr_bin_off = lb->synth.n;
    bx->type = JPIP_BOX_JP2C;
    bx->parent = JPIP_BOX_NONE;
    bx->end = (apr_uint32_t)lb->boxes.n;
    bx->hdr_bin = 0;
    bx->contents_bin = csn + 1;
    bx->codestream = csn;
    bx->hdr_len = (unsigned char)hl;
    bx->hdr_bin_len = (unsigned char)len;
    bx->mode = JPIP_BOX_CSTREAM;
    sb_put(&lb->synth, (const char *)ph, len);
    return JPIP_OK;
}

static void lb_bytes(lb_t *lb, const void *p, apr_size_t n)
{
    sb_put(&lb->synth, p, n);
}

/* The SIZ fields of frame 1 that the JP2 header repeats. */
typedef struct siz_t {
    apr_uint32_t width, height;
    unsigned ncomps;
    unsigned char *ssiz; /* ncomps bytes */
} siz_t;

static jpip_code_t frame_siz(const jpip_dicom_t *d, jpip_src_t *src, apr_pool_t *pool, siz_t *out,
                             jpip_err_t *err)
{
    const jpip_dicom_frame_t *fr = &d->frames[0];
    jpip_src_t *fs;
    unsigned char h[42];
    apr_uint32_t xsiz, ysiz, xo, yo;
    unsigned c, i;
    jpip_code_t rc;

    rc = jpip_src_open_frags(&fs, pool, src, d->frags + fr->first_frag, fr->nfrags, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    if (jpip_src_size(fs) < 42 || jpip_src_read(fs, 0, h, 42, err) != JPIP_OK || h[0] != 0xFF ||
        h[1] != 0x4F || h[2] != 0xFF || h[3] != 0x51) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "DICOM frame 1 is not a JPEG 2000 codestream (no SOC and SIZ at its "
                            "start)");
    }
    c = jpip_be16(h + 40);
    xsiz = jpip_be32(h + 8);
    ysiz = jpip_be32(h + 12);
    xo = jpip_be32(h + 16);
    yo = jpip_be32(h + 20);
    if (c == 0 || jpip_be16(h + 4) != 38 + 3 * c || xsiz <= xo || ysiz <= yo) {
        return jpip_err_set(err, JPIP_E_FORMAT, "DICOM frame 1: malformed SIZ marker segment");
    }
    out->width = xsiz - xo;
    out->height = ysiz - yo;
    out->ncomps = c;
    out->ssiz = apr_palloc(pool, c);
    for (i = 0; i < c; i++) {
        unsigned v;
        rc = jpip_src_u8(fs, 42 + 3 * (apr_uint64_t)i, &v, err);
        if (rc != JPIP_OK) {
            return rc;
        }
        out->ssiz[i] = (unsigned char)v;
    }
    return JPIP_OK;
}

/* Enumerated colour space for the 'colr' box from Photometric
 * Interpretation: 17 greyscale, 16 sRGB (RGB, and YBR_RCT/ICT, which the
 * decoder's inverse component transform turns into RGB), 18 sYCC. */
static apr_uint32_t enum_cs(const jpip_dicom_t *d, unsigned ncomps)
{
    const jpip_dicom_attr_t *a = jpip_dicom_attr(d, TAG_PHOTOMETRIC);
    char pi[20];
    apr_size_t n = 0;

    if (ncomps < 3) {
        return 17;
    }
    if (a != NULL) {
        while (n < a->len && n < sizeof(pi) - 1 && a->value[n] != ' ' && a->value[n] != 0) {
            pi[n] = (char)a->value[n];
            n++;
        }
    }
    pi[n] = '\0';
    if (strcmp(pi, "YBR_FULL") == 0 || strcmp(pi, "YBR_FULL_422") == 0) {
        return 18;
    }
    return 16;
}

jpip_code_t jpip_dicom_layout_build(jpip_box_layout_t **layout, apr_pool_t *pool, jpip_src_t *src,
                                    const jpip_box_limits_t *blim, jpip_err_t *err)
{
    jpip_dicom_limits_t dl;
    jpip_box_limits_t bl;
    jpip_dicom_t *d;
    jpip_box_layout_t *l;
    siz_t siz;
    lb_t lb;
    apr_uint32_t i, jp2h, brand, nb;
    const char *xml;
    apr_size_t xlen;
    unsigned char b[64];
    int same = 1, multi, ht;
    jpip_code_t rc;

    memset(&siz, 0, sizeof(siz));
    if (blim == NULL) {
        jpip_box_limits_default(&bl);
        blim = &bl;
    }
    jpip_dicom_limits_default(&dl);
    dl.max_frames = blim->max_codestreams;
    dl.max_frags = blim->max_frags;
    if (blim->max_depth < dl.max_depth) {
        dl.max_depth = blim->max_depth;
    }
    rc = jpip_dicom_parse(&d, pool, src, &dl, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    if ((apr_uint64_t)d->nframes + 8 > blim->max_boxes) {
        return jpip_err_set(err, JPIP_E_LIMIT, "DICOM file has %u frames; the limit is %u boxes",
                            d->nframes, blim->max_boxes);
    }
    rc = frame_siz(d, src, pool, &siz, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    for (i = 1; i < siz.ncomps; i++) {
        same &= siz.ssiz[i] == siz.ssiz[0];
    }
    multi = d->nframes > 1;
    ht = d->ts == JPIP_DICOM_TS_HTJ2K;
    brand = multi ? JPIP_BOX_TYPE('j', 'p', 'x', ' ')
            : ht  ? JPIP_BOX_TYPE('j', 'p', 'h', ' ')
                  : JPIP_BOX_TYPE('j', 'p', '2', ' ');

    memset(&lb, 0, sizeof(lb));
    lb.pool = pool;
    lb.err = err;
    lb.synth.pool = pool;
    vec_init(&lb.boxes, pool, sizeof(jpip_box_t));

    /* signature */
    rc = lb_box(&lb, JPIP_BOX_JP, 4, JPIP_BOX_NONE, 0, NULL);
    put32(b, 0x0D0A870Au);
    lb_bytes(&lb, b, 4);
    /* ftyp: brand, MinV, compatibility list */
    if (rc == JPIP_OK) {
        rc = lb_box(&lb, JPIP_BOX_FTYP, multi ? 16 : 12, JPIP_BOX_NONE, 0, NULL);
    }
    put32(b, brand);
    put32(b + 4, 0);
    if (multi) {
        put32(b + 8, JPIP_BOX_TYPE('j', 'p', 'x', ' '));
        put32(b + 12, ht ? JPIP_BOX_TYPE('j', 'p', 'h', ' ') : JPIP_BOX_TYPE('j', 'p', '2', ' '));
    } else {
        put32(b + 8, brand);
    }
    lb_bytes(&lb, b, multi ? 16 : 12);
    /* jp2h: ihdr (22), [bpcc], colr (15) */
    nb = same ? 0 : 8 + siz.ncomps;
    if (rc == JPIP_OK) {
        rc = lb_box(&lb, JPIP_BOX_JP2H, 22 + nb + 15, JPIP_BOX_NONE, 0, &jp2h);
    }
    if (rc == JPIP_OK) {
        rc = lb_box(&lb, JPIP_BOX_IHDR, 14, jp2h, 1, NULL);
    }
    put32(b, siz.height);
    put32(b + 4, siz.width);
    b[8] = (unsigned char)(siz.ncomps >> 8);
    b[9] = (unsigned char)siz.ncomps;
    b[10] = same ? siz.ssiz[0] : 255;
    b[11] = 7; /* C: JPEG 2000 */
    b[12] = 0; /* UnkC: colour space known */
    b[13] = 0; /* IPR */
    lb_bytes(&lb, b, 14);
    if (!same && rc == JPIP_OK) {
        rc = lb_box(&lb, JPIP_BOX_TYPE('b', 'p', 'c', 'c'), siz.ncomps, jp2h, 1, NULL);
        lb_bytes(&lb, siz.ssiz, siz.ncomps);
    }
    if (rc == JPIP_OK) {
        rc = lb_box(&lb, JPIP_BOX_COLR, 7, jp2h, 1, NULL);
    }
    b[0] = 1; /* METH: enumerated */
    b[1] = 0;
    b[2] = 0;
    put32(b + 3, enum_cs(d, siz.ncomps));
    lb_bytes(&lb, b, 7);
    if (rc == JPIP_OK) {
        jpip_box_t *bx = &((jpip_box_t *)lb.boxes.data)[jp2h];
        bx->flags = JPIP_BOXF_SUPER;
        bx->end = (apr_uint32_t)lb.boxes.n;
    }
    /* the attributes a viewer needs */
    xml = jpip_dicom_xml(d, pool, &xlen);
    if (rc == JPIP_OK) {
        rc = lb_box(&lb, JPIP_BOX_XML, xlen, JPIP_BOX_NONE, 0, NULL);
    }
    lb_bytes(&lb, xml, xlen);
    for (i = 0; i < d->nframes && rc == JPIP_OK; i++) {
        rc = lb_placeholder(&lb, i, d->frames[i].length);
    }
    if (rc != JPIP_OK) {
        return rc;
    }
    /* each box ends after itself, but jp2h after its sub-boxes */
    for (i = 0; i < lb.boxes.n; i++) {
        jpip_box_t *bx = &((jpip_box_t *)lb.boxes.data)[i];
        if (!(bx->flags & JPIP_BOXF_SUPER)) {
            bx->end = i + 1;
        }
    }

    l = apr_pcalloc(pool, sizeof(*l));
    l->container = JPIP_CONTAINER_DICOM;
    l->brand = brand;
    l->nboxes = (apr_uint32_t)lb.boxes.n;
    l->boxes = lb.boxes.data;
    l->synth_len = lb.synth.n;
    l->synth = (unsigned char *)lb.synth.p;
    l->npieces = 1;
    l->pieces = apr_pcalloc(pool, sizeof(jpip_piece_t));
    l->pieces[0].off = JPIP_PIECE_SYNTH;
    l->pieces[0].len = lb.synth.n;
    l->nbins = d->nframes + 1;
    l->bins = apr_pcalloc(pool, (apr_size_t)l->nbins * sizeof(jpip_metabin_t));
    l->bins[0].length = lb.synth.n;
    l->bins[0].first_piece = 0;
    l->bins[0].npieces = 1;
    l->bins[0].box = JPIP_BOX_NONE;
    l->ncodestreams = d->nframes;
    l->codestreams = apr_pcalloc(pool, (apr_size_t)d->nframes * sizeof(jpip_cstream_t));
    l->nlayers = d->nframes;
    l->layers = apr_pcalloc(pool, (apr_size_t)d->nframes * sizeof(jpip_layer_t));
    l->nlayer_cs = d->nframes;
    l->layer_cs = apr_pcalloc(pool, (apr_size_t)d->nframes * sizeof(apr_uint32_t));
    for (i = 0; i < d->nframes; i++) {
        apr_uint32_t box = l->nboxes - d->nframes + i;

        l->bins[i + 1].first_piece = 1;
        l->bins[i + 1].box = box;
        l->bins[i + 1].flags = JPIP_METABIN_CSTREAM;
        l->codestreams[i].length = d->frames[i].length;
        l->codestreams[i].first_frag = d->frames[i].first_frag;
        l->codestreams[i].nfrags = d->frames[i].nfrags;
        l->codestreams[i].box = box;
        l->layers[i].first = i;
        l->layers[i].count = 1;
        l->layer_cs[i] = i;
    }
    l->nfrags = d->nfrags;
    l->frags = d->frags;
    *layout = l;
    return JPIP_OK;
}

/* ---- frame identifiers -------------------------------------------------- */

jpip_code_t jpip_dicom_frame_id_parse(apr_pool_t *pool, const char *id, const char **target,
                                      apr_uint32_t *frame, jpip_err_t *err)
{
    const char *semi = strrchr(id, ';');
    const char *p;
    apr_uint64_t v = 0;

    if (semi == NULL || strncmp(semi, ";frame=", 7) != 0) {
        *target = apr_pstrdup(pool, id);
        *frame = 0;
        return JPIP_OK;
    }
    p = semi + 7;
    if (*p < '1' || *p > '9') {
        return jpip_err_set(err, JPIP_E_REQUEST,
                            "frame identifier: \";frame=\" wants a frame number from 1");
    }
    for (; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || v > 0xFFFFFFFFull / 10) {
            return jpip_err_set(err, JPIP_E_REQUEST,
                                "frame identifier: malformed frame number after \";frame=\"");
        }
        v = v * 10 + (apr_uint64_t)(*p - '0');
    }
    if (v > 0xFFFFFFFFull) {
        return jpip_err_set(err, JPIP_E_REQUEST, "frame identifier: frame number too large");
    }
    *target = apr_pstrmemdup(pool, id, (apr_size_t)(semi - id));
    *frame = (apr_uint32_t)v;
    return JPIP_OK;
}

jpip_code_t jpip_dicom_frame_codestream(apr_uint32_t frame, apr_uint64_t ncodestreams,
                                        apr_uint64_t *csn, jpip_err_t *err)
{
    if (frame == 0 || frame > ncodestreams) {
        return jpip_err_set(err, JPIP_E_NOTFOUND,
                            "frame %u does not exist (the target has %" APR_UINT64_T_FMT
                            " frame%s, numbered from 1)",
                            frame, ncodestreams, ncodestreams == 1 ? "" : "s");
    }
    *csn = (apr_uint64_t)frame - 1;
    return JPIP_OK;
}
