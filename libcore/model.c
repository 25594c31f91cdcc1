/* mod_jpip: the cache model of a session and the model/need grammar. */
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>
#include <apr_tables.h>

#include "model.h"

/* ==== grammar ========================================================= */

typedef struct mparse_t {
    const char *s;
    apr_size_t i;
    const char *field;
    apr_size_t count, max;
    jpip_err_t *err;
} mparse_t;

static const jpip_model_range_t cs_default = {0, 0};

static jpip_code_t mp_fail(mparse_t *p, apr_size_t pos, const char *what)
{
    unsigned char ch = (unsigned char)p->s[pos];

    if (ch == '\0') {
        return jpip_err_set(p->err, JPIP_E_REQUEST,
                            "%s: position %" APR_SIZE_T_FMT " (end of value): %s", p->field, pos,
                            what);
    }
    if (ch >= 0x21 && ch < 0x7F) {
        return jpip_err_set(p->err, JPIP_E_REQUEST, "%s: position %" APR_SIZE_T_FMT " ('%c'): %s",
                            p->field, pos, ch, what);
    }
    return jpip_err_set(p->err, JPIP_E_REQUEST, "%s: position %" APR_SIZE_T_FMT " (0x%02X): %s",
                        p->field, pos, ch, what);
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static jpip_code_t mp_uint(mparse_t *p, apr_uint64_t *v, const char *what)
{
    apr_uint64_t x = 0;
    apr_size_t start = p->i;

    if (!is_digit(p->s[p->i])) {
        return mp_fail(p, p->i, what);
    }
    while (is_digit(p->s[p->i])) {
        unsigned d = (unsigned)(p->s[p->i] - '0');
        if (x > (JPIP_MODEL_END - d) / 10) {
            return mp_fail(p, start, "number too large");
        }
        x = x * 10 + d;
        p->i++;
    }
    *v = x;
    return JPIP_OK;
}

/* "*" or UINT ["-" [UINT]] */
static jpip_code_t mp_range(mparse_t *p, jpip_model_range_t *r, const char *what)
{
    apr_size_t start = p->i;
    jpip_code_t rc;

    if (p->s[p->i] == '*') {
        p->i++;
        r->first = 0;
        r->last = JPIP_MODEL_END;
        return JPIP_OK;
    }
    rc = mp_uint(p, &r->first, what);
    if (rc != JPIP_OK) {
        return rc;
    }
    r->last = r->first;
    if (p->s[p->i] == '-') {
        p->i++;
        if (is_digit(p->s[p->i])) {
            rc = mp_uint(p, &r->last, what);
            if (rc != JPIP_OK) {
                return rc;
            }
            if (r->last < r->first) {
                return mp_fail(p, start, "range ends before it starts");
            }
        } else {
            r->last = JPIP_MODEL_END;
        }
    }
    return JPIP_OK;
}

static jpip_code_t mp_count(mparse_t *p, apr_size_t pos)
{
    if (++p->count > p->max) {
        return jpip_err_limit(p->err, JPIP_LIMIT_MODEL_ITEMS,
                              "%s: position %" APR_SIZE_T_FMT ": more than %" APR_SIZE_T_FMT
                              " items",
                              p->field, pos, p->max);
    }
    return JPIP_OK;
}

/* "[" range *((";" / ",") range) "]" */
static jpip_code_t mp_qualifier(mparse_t *p, apr_pool_t *pool, const jpip_model_range_t **cs,
                                apr_size_t *ncs)
{
    apr_array_header_t *a = apr_array_make(pool, 4, sizeof(jpip_model_range_t));
    jpip_code_t rc;

    p->i++; /* '[' */
    for (;;) {
        jpip_model_range_t *r = apr_array_push(a);
        rc = mp_count(p, p->i);
        if (rc != JPIP_OK) {
            return rc;
        }
        rc = mp_range(p, r, "expected a codestream number, range or '*'");
        if (rc != JPIP_OK) {
            return rc;
        }
        if (p->s[p->i] == ';' || p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        if (p->s[p->i] == ']') {
            p->i++;
            break;
        }
        return mp_fail(p, p->i, "expected ';' or ']' in the codestream qualifier");
    }
    *cs = (const jpip_model_range_t *)a->elts;
    *ncs = (apr_size_t)a->nelts;
    return JPIP_OK;
}

static jpip_code_t mp_implicit(mparse_t *p, jpip_model_item_t *it)
{
    int seen[4] = {0, 0, 0, 0};
    static const char letters[] = "tcrp";
    jpip_model_range_t *dims[4];
    jpip_code_t rc;

    dims[0] = &it->t;
    dims[1] = &it->c;
    dims[2] = &it->r;
    dims[3] = &it->p;
    it->kind = JPIP_MODEL_ITEM_IMPLICIT;
    for (;;) {
        const char *l = p->s[p->i] ? strchr(letters, p->s[p->i]) : NULL;
        int k;
        if (l == NULL) {
            break;
        }
        k = (int)(l - letters);
        if (seen[k]) {
            return mp_fail(p, p->i, "letter repeated in an implicit descriptor");
        }
        seen[k] = 1;
        p->i++;
        rc = mp_range(p, dims[k], "expected a number, range or '*' in an implicit descriptor");
        if (rc != JPIP_OK) {
            return rc;
        }
    }
    return JPIP_OK;
}

static jpip_code_t mp_element(mparse_t *p, int need, jpip_model_item_t *it)
{
    jpip_code_t rc;
    char c;

    memset(it, 0, sizeof(*it));
    it->pos = p->i;
    it->t.last = it->c.last = it->r.last = it->p.last = JPIP_MODEL_END;
    if (p->s[p->i] == '-') {
        if (need) {
            return mp_fail(p, p->i, "need does not allow subtractive ('-') items");
        }
        it->subtract = 1;
        p->i++;
    }
    c = p->s[p->i];
    switch (c) {
    case 'H':
        p->i++;
        if (p->s[p->i] == 'm') {
            p->i++;
            it->kind = JPIP_MODEL_ITEM_MAIN;
            break;
        }
        it->kind = JPIP_MODEL_ITEM_TILEHDR;
        /* OpenHTJ2K's client writes tile headers as "Ht" and precincts as
         * "Hp"; T.808 allows nothing but 'm', a digit or '*' after 'H', so
         * the letters cannot mean anything else */
        if (p->s[p->i] == 't') {
            p->i++;
        } else if (p->s[p->i] == 'p') {
            p->i++;
            it->kind = JPIP_MODEL_ITEM_PRECINCT;
        }
        goto uid;
    case 'P':
        it->kind = JPIP_MODEL_ITEM_PRECINCT;
        p->i++;
        goto uid;
    case 'T':
        it->kind = JPIP_MODEL_ITEM_TILE;
        p->i++;
        goto uid;
    case 'M':
        it->kind = JPIP_MODEL_ITEM_META;
        p->i++;
        goto uid;
    case 't':
    case 'c':
    case 'r':
    case 'p':
        rc = mp_implicit(p, it);
        if (rc != JPIP_OK) {
            return rc;
        }
        break;
    case '\0':
    case ',':
        return mp_fail(p, p->i, "empty item");
    default:
        return mp_fail(p, p->i, "expected a bin descriptor (Hm, H, P, T, M, t, c, r, p)");
    }
    goto qualifier;
uid:
    if (p->s[p->i] == '*') {
        it->all = 1;
        p->i++;
    } else {
        apr_size_t at = p->i;

        rc = mp_uint(p, &it->id, "expected a bin id or '*'");
        if (rc != JPIP_OK) {
            return rc;
        }
        it->id_last = it->id;
        if (p->s[p->i] == '-') {
            /* a range of bin ids, as clients that compress their cache
             * lists write them: both ends given, the last not before the
             * first */
            p->i++;
            rc = mp_uint(p, &it->id_last, "expected the last bin id of the range");
            if (rc != JPIP_OK) {
                return rc;
            }
            if (it->id_last < it->id) {
                return mp_fail(p, at, "range ends before it starts");
            }
        }
    }
qualifier:
    if (p->s[p->i] != ':') {
        return JPIP_OK;
    }
    p->i++;
    if (p->s[p->i] == 'L') {
        apr_uint64_t v;
        apr_size_t at = p->i;
        if (it->kind == JPIP_MODEL_ITEM_MAIN || it->kind == JPIP_MODEL_ITEM_TILEHDR ||
            it->kind == JPIP_MODEL_ITEM_META) {
            return mp_fail(p, at, "a layers qualifier applies only to precinct and tile bins");
        }
        p->i++;
        rc = mp_uint(p, &v, "expected a number of layers after 'L'");
        if (rc != JPIP_OK) {
            return rc;
        }
        if (v > JPIP_MODEL_MAX_LAYERS) {
            return mp_fail(p, at, "more than 65535 layers");
        }
        it->qual = JPIP_MODEL_QUAL_LAYERS;
        it->layers = (unsigned)v;
        return JPIP_OK;
    }
    if (it->kind == JPIP_MODEL_ITEM_IMPLICIT) {
        return mp_fail(p, p->i, "an implicit descriptor takes only ':L<layers>'");
    }
    rc = mp_uint(p, &it->bytes, "expected a byte count or 'L<layers>' after ':'");
    if (rc != JPIP_OK) {
        return rc;
    }
    it->qual = JPIP_MODEL_QUAL_BYTES;
    return JPIP_OK;
}

jpip_code_t jpip_model_parse(apr_pool_t *pool, const char *value, int need, apr_size_t max_items,
                             jpip_model_spec_t **spec, jpip_err_t *err)
{
    mparse_t p;
    apr_array_header_t *items = apr_array_make(pool, 16, sizeof(jpip_model_item_t));
    const jpip_model_range_t *cs = &cs_default;
    apr_size_t ncs = 1;
    jpip_model_spec_t *out;
    jpip_code_t rc;

    memset(&p, 0, sizeof(p));
    p.s = value != NULL ? value : "";
    p.field = need ? "need" : "model";
    p.max = max_items ? max_items : JPIP_MODEL_MAX_ITEMS;
    p.err = err;
    if (p.s[0] == '\0') {
        return jpip_err_set(err, JPIP_E_REQUEST, "%s: empty value", p.field);
    }
    for (;;) {
        if (p.s[p.i] == '[') {
            rc = mp_qualifier(&p, pool, &cs, &ncs);
            if (rc != JPIP_OK) {
                return rc;
            }
            if (p.s[p.i] == '\0') {
                break;
            }
            if (p.s[p.i] != ',') {
                continue; /* "[0]Hm": an element may follow directly */
            }
        } else {
            jpip_model_item_t it;
            rc = mp_element(&p, need, &it);
            if (rc != JPIP_OK) {
                return rc;
            }
            rc = mp_count(&p, it.pos);
            if (rc != JPIP_OK) {
                return rc;
            }
            it.cs = cs;
            it.ncs = ncs;
            *(jpip_model_item_t *)apr_array_push(items) = it;
            if (p.s[p.i] == '\0') {
                break;
            }
            if (p.s[p.i] != ',') {
                return mp_fail(&p, p.i, "expected ',' after an item");
            }
        }
        p.i++; /* ',' */
        if (p.s[p.i] == '\0') {
            return mp_fail(&p, p.i, "empty item after ','");
        }
    }
    out = apr_pcalloc(pool, sizeof(*out));
    out->need = need;
    out->nitems = (apr_size_t)items->nelts;
    out->items = (jpip_model_item_t *)items->elts;
    *spec = out;
    return JPIP_OK;
}

/* ==== the model ======================================================= */

#define MODEL_MAGIC 0x4A504D44u /* "JPMD" */
#define MODEL_VERSION 2u        /* 2: layer counts */
#define FLAG_INVERTED 1u
#define TAG_LAYERS ((apr_uint64_t)1 << 62)
#define LAYERS_OF(v) ((unsigned)((v)&0xffffu)) /* L of JPIP_MODEL_LAYERS(L) */

typedef struct mrec_t {
    apr_uint64_t csn;
    apr_uint64_t first;
    apr_uint64_t last;
    apr_uint64_t bytes;
    apr_uint32_t cls;
    apr_uint32_t pad;
} mrec_t;

struct jpip_model_t {
    apr_uint32_t magic;
    apr_uint32_t version;
    apr_uint32_t flags;
    apr_uint32_t rec_size;
    apr_uint64_t count;
    apr_uint64_t cap;
    /* mrec_t runs[cap] follow */
};

#define HDR_SIZE sizeof(struct jpip_model_t)

static mrec_t *recs(jpip_model_t *m)
{
    return (mrec_t *)(void *)((char *)m + HDR_SIZE);
}

static const mrec_t *crecs(const jpip_model_t *m)
{
    return (const mrec_t *)(const void *)((const char *)m + HDR_SIZE);
}

static apr_uint64_t def_value(const jpip_model_t *m)
{
    return (m->flags & FLAG_INVERTED) ? JPIP_MODEL_COMPLETE : 0;
}

static unsigned norm_class(unsigned cls)
{
    return (cls == 1 || cls == 5) ? cls - 1 : cls;
}

static apr_uint64_t norm_csn(unsigned cls, apr_uint64_t csn)
{
    return cls == 8 ? 0 : csn;
}

/* -1, 0, 1 comparing the key of r with (cls, csn) */
static int key_cmp(const mrec_t *r, unsigned cls, apr_uint64_t csn)
{
    if (r->cls != cls) {
        return r->cls < cls ? -1 : 1;
    }
    if (r->csn != csn) {
        return r->csn < csn ? -1 : 1;
    }
    return 0;
}

/* ---- held values ---------------------------------------------------- */

static int is_layers(apr_uint64_t v)
{
    return v != JPIP_MODEL_COMPLETE && (v & TAG_LAYERS) != 0;
}

/* A well-formed held value of a run of class cls (not the default). */
static int value_ok(unsigned cls, apr_uint64_t v)
{
    if (v == JPIP_MODEL_COMPLETE || v < TAG_LAYERS) {
        return 1;
    }
    return cls == 0 && (v & ~(TAG_LAYERS | 0xffffu)) == 0 && LAYERS_OF(v) != 0;
}

/* The bytes value v stands for in bin (cls, csn, id): a layer count
 * through the resolver, as nothing held without one. */
static apr_uint64_t to_bytes(const jpip_model_resolver_t *res, unsigned cls, apr_uint64_t csn,
                             apr_uint64_t id, apr_uint64_t v)
{
    if (!is_layers(v)) {
        return v;
    }
    if (cls != 0 || res == NULL || res->layer_bytes == NULL) {
        return 0;
    }
    return res->layer_bytes(res->ctx, csn, id, LAYERS_OF(v));
}

apr_size_t jpip_model_bytes_for(apr_size_t runs)
{
    return HDR_SIZE + runs * sizeof(mrec_t);
}

jpip_code_t jpip_model_init(void *buf, apr_size_t size, int inverted, jpip_model_t **out,
                            jpip_err_t *err)
{
    jpip_model_t *m = buf;

    if (size < jpip_model_bytes_for(1)) {
        return jpip_err_set(err, JPIP_E_LIMIT,
                            "cache model: %" APR_SIZE_T_FMT " bytes is too small a buffer", size);
    }
    if (((apr_uintptr_t)buf & 7) != 0) {
        return jpip_err_set(err, JPIP_E_FORMAT, "cache model: buffer not 8-byte aligned");
    }
    m->magic = MODEL_MAGIC;
    m->version = MODEL_VERSION;
    m->flags = inverted ? FLAG_INVERTED : 0;
    m->rec_size = (apr_uint32_t)sizeof(mrec_t);
    m->count = 0;
    m->cap = (size - HDR_SIZE) / sizeof(mrec_t);
    *out = m;
    return JPIP_OK;
}

jpip_code_t jpip_model_create(apr_pool_t *pool, apr_size_t max_runs, int inverted, jpip_model_t **m,
                              jpip_err_t *err)
{
    apr_size_t size;
    void *buf;

    if (max_runs == 0 || max_runs > (APR_SIZE_MAX - HDR_SIZE) / sizeof(mrec_t)) {
        return jpip_err_set(err, JPIP_E_LIMIT, "cache model: bad capacity %" APR_SIZE_T_FMT,
                            max_runs);
    }
    size = jpip_model_bytes_for(max_runs);
    buf = apr_palloc(pool, size); /* APR pools align to 8 */
    if (buf == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "cache model: out of memory");
    }
    return jpip_model_init(buf, size, inverted, m, err);
}

void jpip_model_clear(jpip_model_t *m, int inverted)
{
    m->count = 0;
    m->flags = inverted ? FLAG_INVERTED : 0;
}

int jpip_model_inverted(const jpip_model_t *m)
{
    return (m->flags & FLAG_INVERTED) != 0;
}

apr_size_t jpip_model_runs(const jpip_model_t *m)
{
    return (apr_size_t)m->count;
}

apr_size_t jpip_model_capacity(const jpip_model_t *m)
{
    return (apr_size_t)m->cap;
}

apr_size_t jpip_model_size(const jpip_model_t *m)
{
    return jpip_model_bytes_for((apr_size_t)m->count);
}

jpip_code_t jpip_model_serialize(const jpip_model_t *m, void *buf, apr_size_t cap, apr_size_t *len,
                                 jpip_err_t *err)
{
    apr_size_t n = jpip_model_size(m);

    if (cap < n) {
        return jpip_err_set(
            err, JPIP_E_LIMIT,
            "cache model: %" APR_SIZE_T_FMT " bytes needed, %" APR_SIZE_T_FMT " available", n, cap);
    }
    if ((const void *)m != buf) {
        memmove(buf, m, n);
    }
    /* the cap field travels as is; jpip_model_load recomputes it */
    *len = n;
    return JPIP_OK;
}

jpip_code_t jpip_model_load(void *buf, apr_size_t size, const void *data, apr_size_t len,
                            jpip_model_t **out, jpip_err_t *err)
{
    struct jpip_model_t h;
    apr_uint64_t i, cap;
    const unsigned char *d = data;
    mrec_t prev, r;
    apr_uint64_t def;

    if (len < HDR_SIZE) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "cache model: %" APR_SIZE_T_FMT " bytes, shorter than its header", len);
    }
    memcpy(&h, d, HDR_SIZE);
    if (h.magic != MODEL_MAGIC || h.version != MODEL_VERSION) {
        return jpip_err_set(err, JPIP_E_FORMAT, "cache model: bad magic or version");
    }
    if (h.rec_size != sizeof(mrec_t) || (h.flags & ~FLAG_INVERTED) != 0) {
        return jpip_err_set(err, JPIP_E_FORMAT, "cache model: bad run size or flags");
    }
    if (h.count > (len - HDR_SIZE) / sizeof(mrec_t)) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "cache model: %" APR_UINT64_T_FMT " runs do not fit in %" APR_SIZE_T_FMT
                            " bytes",
                            h.count, len);
    }
    if (((apr_uintptr_t)buf & 7) != 0) {
        return jpip_err_set(err, JPIP_E_FORMAT, "cache model: buffer not 8-byte aligned");
    }
    cap = size >= HDR_SIZE ? (size - HDR_SIZE) / sizeof(mrec_t) : 0;
    if (size < HDR_SIZE || h.count > cap || cap == 0) {
        return jpip_err_set(err, JPIP_E_LIMIT,
                            "cache model: %" APR_UINT64_T_FMT
                            " runs do not fit in a %" APR_SIZE_T_FMT "-byte buffer",
                            h.count, size);
    }
    def = (h.flags & FLAG_INVERTED) ? JPIP_MODEL_COMPLETE : 0;
    memset(&prev, 0, sizeof(prev));
    for (i = 0; i < h.count; i++) {
        memcpy(&r, d + HDR_SIZE + i * sizeof(mrec_t), sizeof(r));
        if (r.first > r.last || r.bytes == def || r.pad != 0 || norm_class(r.cls) != r.cls ||
            norm_csn(r.cls, r.csn) != r.csn || !value_ok(r.cls, r.bytes)) {
            return jpip_err_set(err, JPIP_E_FORMAT,
                                "cache model: run %" APR_UINT64_T_FMT " is malformed", i);
        }
        if (i > 0) {
            int k = key_cmp(&prev, r.cls, r.csn);
            if (k > 0 || (k == 0 && prev.last >= r.first)) {
                return jpip_err_set(
                    err, JPIP_E_FORMAT,
                    "cache model: run %" APR_UINT64_T_FMT " out of order or overlapping", i);
            }
        }
        prev = r;
    }
    if ((const void *)d != buf) {
        memmove(buf, d, jpip_model_bytes_for((apr_size_t)h.count));
    }
    ((jpip_model_t *)buf)->cap = cap;
    *out = buf;
    return JPIP_OK;
}

jpip_code_t jpip_model_copy(jpip_model_t *dst, const jpip_model_t *src, jpip_err_t *err)
{
    apr_uint64_t cap = dst->cap;

    if (src->count > cap) {
        return jpip_err_set(err, JPIP_E_LIMIT,
                            "cache model: %" APR_UINT64_T_FMT
                            " runs do not fit in %" APR_UINT64_T_FMT,
                            src->count, cap);
    }
    if (dst != src) {
        memcpy(dst, src, jpip_model_size(src));
    }
    dst->cap = cap;
    return JPIP_OK;
}

void jpip_model_run(const jpip_model_t *m, apr_size_t i, jpip_model_run_t *run)
{
    const mrec_t *r = crecs(m) + i;

    run->cls = r->cls;
    run->csn = r->csn;
    run->first = r->first;
    run->last = r->last;
    run->bytes = r->bytes;
}

/* The first run of (cls, csn) (normalised) not entirely before id, or the
 * first run of a later key, or count. */
static apr_size_t find_run(const jpip_model_t *m, unsigned cls, apr_uint64_t csn, apr_uint64_t id)
{
    const mrec_t *r = crecs(m);
    apr_size_t lo = 0, hi = (apr_size_t)m->count;

    while (lo < hi) {
        apr_size_t mid = lo + (hi - lo) / 2;
        int k = key_cmp(&r[mid], cls, csn);
        if (k < 0 || (k == 0 && r[mid].last < id)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

apr_uint64_t jpip_model_held(const jpip_model_t *m, const jpip_model_resolver_t *res, unsigned cls,
                             apr_uint64_t csn, apr_uint64_t id)
{
    const mrec_t *r = crecs(m);
    apr_size_t i;

    cls = norm_class(cls);
    csn = norm_csn(cls, csn);
    i = find_run(m, cls, csn, id);
    if (i < m->count && key_cmp(&r[i], cls, csn) == 0 && r[i].first <= id) {
        return to_bytes(res, cls, csn, id, r[i].bytes);
    }
    return def_value(m);
}

void jpip_model_held_row(const jpip_model_t *m, const jpip_model_resolver_t *res, unsigned cls,
                         apr_uint64_t csn, apr_uint64_t id, apr_uint64_t step, apr_size_t n,
                         apr_uint64_t *held)
{
    const mrec_t *r = crecs(m);
    apr_uint64_t def = def_value(m);
    apr_size_t i, k = 0;

    cls = norm_class(cls);
    csn = norm_csn(cls, csn);
    i = find_run(m, cls, csn, id);
    /* the ids ascend, and so do the runs: one walk over both */
    while (k < n) {
        apr_uint64_t x = id + k * step;

        while (i < m->count && key_cmp(&r[i], cls, csn) == 0 && r[i].last < x) {
            i++;
        }
        if (i == m->count || key_cmp(&r[i], cls, csn) != 0) {
            break; /* no run at or after x */
        }
        if (r[i].first <= x) {
            held[k++] = to_bytes(res, cls, csn, x, r[i].bytes);
        } else {
            /* the ids before this run hold the default */
            apr_uint64_t next = step == 0 ? n : (r[i].first - id + step - 1) / step;

            while (k < n && k < next) {
                held[k++] = def;
            }
        }
    }
    while (k < n) {
        held[k++] = def;
    }
}

enum { OP_MAX, OP_MIN };

/* Where a range operation applies. */
typedef struct opctx_t {
    const jpip_model_resolver_t *res;
    unsigned cls;
    apr_uint64_t csn;
} opctx_t;

/* op(old, v) for ids f..l. Byte counts, and layer counts, compare among
 * themselves; a layer count against a byte count only bin by bin: for one
 * bin through the resolver, for more the result is one that is never more
 * than the true one (an addition keeps what was held, a cut keeps
 * nothing). */
static apr_uint64_t op_apply(const opctx_t *o, apr_uint64_t f, apr_uint64_t l, int op,
                             apr_uint64_t old, apr_uint64_t v)
{
    apr_uint64_t tag, b;

    if (is_layers(old) == is_layers(v)) {
        if (op == OP_MAX) {
            return old > v ? old : v;
        }
        return old < v ? old : v;
    }
    tag = is_layers(old) ? old : v;
    b = is_layers(old) ? v : old;
    if (b == 0) {
        return op == OP_MAX ? tag : 0;
    }
    if (b == JPIP_MODEL_COMPLETE) {
        return op == OP_MAX ? b : tag;
    }
    if (f == l && o->res != NULL && o->res->layer_bytes != NULL) {
        apr_uint64_t tb = to_bytes(o->res, o->cls, o->csn, f, tag);

        if (tb != 0) {
            if (op == OP_MAX) {
                return tb >= b ? tag : b;
            }
            return tb <= b ? tag : b;
        }
    }
    return op == OP_MAX ? old : 0;
}

typedef struct emit_t {
    mrec_t *out;
    apr_size_t n;
    apr_uint64_t def;
    unsigned cls;
    apr_uint64_t csn;
} emit_t;

static void emit(emit_t *e, apr_uint64_t first, apr_uint64_t last, apr_uint64_t bytes)
{
    mrec_t *prev = e->n ? &e->out[e->n - 1] : NULL;

    if (bytes == e->def) {
        return;
    }
    if (prev != NULL && prev->cls == e->cls && prev->csn == e->csn && prev->bytes == bytes &&
        prev->last + 1 == first) {
        prev->last = last;
        return;
    }
    e->out[e->n].cls = e->cls;
    e->out[e->n].csn = e->csn;
    e->out[e->n].first = first;
    e->out[e->n].last = last;
    e->out[e->n].bytes = bytes;
    e->out[e->n].pad = 0;
    e->n++;
}

/* held = op(held, v) for ids a..b of (cls, csn), all or nothing. */
static jpip_code_t range_op(jpip_model_t *m, const jpip_model_resolver_t *res, unsigned cls,
                            apr_uint64_t csn, apr_uint64_t a, apr_uint64_t b, int op,
                            apr_uint64_t v, jpip_err_t *err)
{
    opctx_t o;
    mrec_t *r = recs(m);
    apr_size_t n = (apr_size_t)m->count, lo = 0, hi, k, j, newn;
    apr_uint64_t def = def_value(m), cur;
    mrec_t local[16];
    emit_t e;
    int ended = 0;

    cls = norm_class(cls);
    csn = norm_csn(cls, csn);
    o.res = res;
    o.cls = cls;
    o.csn = csn;
    /* lo: first run that overlaps a..b or touches it, or lies beyond it */
    hi = n;
    while (lo < hi) {
        apr_size_t mid = lo + (hi - lo) / 2;
        int kc = key_cmp(&r[mid], cls, csn);
        if (kc < 0 || (kc == 0 && a > 0 && r[mid].last < a - 1)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    hi = lo;
    while (hi < n && key_cmp(&r[hi], cls, csn) == 0 &&
           (b == JPIP_MODEL_END || r[hi].first <= b + 1)) {
        hi++;
    }
    k = hi - lo;
    e.n = 0;
    e.def = def;
    e.cls = cls;
    e.csn = csn;
    e.out = 2 * k + 3 <= sizeof(local) / sizeof(local[0]) ? local
                                                          : malloc((2 * k + 3) * sizeof(mrec_t));
    if (e.out == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "cache model: out of memory");
    }
    cur = (k > 0 && r[lo].first < a) ? r[lo].first : a;
    for (j = lo; j < hi; j++) {
        const mrec_t *x = &r[j];
        if (x->first > cur) {
            emit(&e, cur, x->first - 1, op_apply(&o, cur, x->first - 1, op, def, v)); /* a gap */
        }
        if (x->first < a) {
            emit(&e, x->first, a - 1, x->bytes);
        }
        {
            apr_uint64_t f = x->first > a ? x->first : a;
            apr_uint64_t l = x->last < b ? x->last : b;
            if (f <= l) {
                emit(&e, f, l, op_apply(&o, f, l, op, x->bytes, v));
            }
        }
        if (x->last > b) {
            emit(&e, b + 1, x->last, x->bytes);
        }
        if (x->last == JPIP_MODEL_END) {
            ended = 1;
        } else {
            cur = x->last + 1;
        }
    }
    if (!ended && cur <= b) {
        emit(&e, cur, b, op_apply(&o, cur, b, op, def, v));
    }
    newn = n - k + e.n;
    if (newn > m->cap) {
        if (e.out != local) {
            free(e.out);
        }
        return jpip_err_set(err, JPIP_E_LIMIT, "cache model: more than %" APR_UINT64_T_FMT " runs",
                            m->cap);
    }
    if (e.n != k) {
        memmove(r + lo + e.n, r + hi, (n - hi) * sizeof(mrec_t));
    }
    memcpy(r + lo, e.out, e.n * sizeof(mrec_t));
    m->count = newn;
    if (e.out != local) {
        free(e.out);
    }
    return JPIP_OK;
}

jpip_code_t jpip_model_add(jpip_model_t *m, const jpip_model_resolver_t *res, unsigned cls,
                           apr_uint64_t csn, apr_uint64_t id, apr_uint64_t upto, int complete,
                           jpip_err_t *err)
{
    if (!complete && !value_ok(norm_class(cls), upto)) {
        return jpip_err_set(err, JPIP_E_REQUEST, "cache model: bad held value");
    }
    return range_op(m, res, cls, csn, id, id, OP_MAX, complete ? JPIP_MODEL_COMPLETE : upto, err);
}

/* An operation on first..last with value v, checked. */
static jpip_code_t checked_range_op(jpip_model_t *m, const jpip_model_resolver_t *res, unsigned cls,
                                    apr_uint64_t csn, apr_uint64_t first, apr_uint64_t last, int op,
                                    apr_uint64_t v, jpip_err_t *err)
{
    if (first > last) {
        return jpip_err_set(err, JPIP_E_REQUEST, "cache model: empty id range");
    }
    if (!value_ok(norm_class(cls), v)) {
        return jpip_err_set(err, JPIP_E_REQUEST, "cache model: bad held value");
    }
    return range_op(m, res, cls, csn, first, last, op, v, err);
}

jpip_code_t jpip_model_add_range(jpip_model_t *m, const jpip_model_resolver_t *res, unsigned cls,
                                 apr_uint64_t csn, apr_uint64_t first, apr_uint64_t last,
                                 apr_uint64_t bytes, jpip_err_t *err)
{
    return checked_range_op(m, res, cls, csn, first, last, OP_MAX, bytes, err);
}

jpip_code_t jpip_model_cut_range(jpip_model_t *m, const jpip_model_resolver_t *res, unsigned cls,
                                 apr_uint64_t csn, apr_uint64_t first, apr_uint64_t last,
                                 apr_uint64_t keep, jpip_err_t *err)
{
    return checked_range_op(m, res, cls, csn, first, last, OP_MIN, keep, err);
}

/* ==== recording a batch of sent messages ============================= */

typedef struct upd_t {
    unsigned cls;
    apr_uint64_t csn, id, off, end; /* end: COMPLETE for a complete message */
    apr_uint64_t val;               /* the held value after it: end, or a layer count */
} upd_t;

/* x's bin comes before y's */
static int upd_before(const upd_t *x, const upd_t *y)
{
    if (x->cls != y->cls) {
        return x->cls < y->cls;
    }
    if (x->csn != y->csn) {
        return x->csn < y->csn;
    }
    return x->id < y->id;
}

/* The end of the ascending stretch of u[0, n) that starts at i. */
static apr_size_t stretch_end(const upd_t *u, apr_size_t i, apr_size_t n)
{
    for (i++; i < n && !upd_before(&u[i], &u[i - 1]); i++) {
    }
    return i;
}

/* Sort u by bin, keeping the order of a bin's messages (a stable sort).
 * Messages come in ascending stretches (the bins of a row, of a
 * resolution), so a natural merge sort costs O(n log stretches): nothing
 * when they are in order already. Returns the sorted array: u or tmp. */
static upd_t *sort_updates(upd_t *u, upd_t *tmp, apr_size_t n)
{
    if (n < 2) {
        return u;
    }
    for (;;) {
        apr_size_t i = 0, o = 0, merges = 0;

        while (i < n) {
            apr_size_t a = i, ae = stretch_end(u, i, n), b = ae, be;

            if (ae == n) {
                if (merges == 0) {
                    return u; /* one stretch: sorted */
                }
                memcpy(tmp + o, u + a, (n - a) * sizeof(*u));
                break;
            }
            be = stretch_end(u, b, n);
            /* merge; on equal bins the earlier stretch goes first */
            while (a < ae && b < be) {
                tmp[o++] = upd_before(&u[b], &u[a]) ? u[b++] : u[a++];
            }
            memcpy(tmp + o, u + a, (ae - a) * sizeof(*u));
            o += ae - a;
            memcpy(tmp + o, u + b, (be - b) * sizeof(*u));
            o += be - b;
            merges++;
            i = be;
        }
        {
            upd_t *t = u;
            u = tmp;
            tmp = t;
        }
    }
}

/* emit() for a run of (cls, csn): a merge crosses keys. */
static void emit_key(emit_t *e, unsigned cls, apr_uint64_t csn, apr_uint64_t first,
                     apr_uint64_t last, apr_uint64_t bytes)
{
    e->cls = cls;
    e->csn = csn;
    emit(e, first, last, bytes);
}

struct jpip_model_batch_t {
    upd_t *u; /* sorted: points into buf */
    upd_t *buf;
    apr_size_t n;
};

jpip_code_t jpip_model_batch_make(jpip_model_batch_t **batch, const jpip_model_sent_t *sent,
                                  apr_size_t n, jpip_err_t *err)
{
    jpip_model_batch_t *b = malloc(sizeof(*b));
    apr_size_t i;

    *batch = NULL;
    /* room for the messages and a merge buffer as large */
    if (b == NULL || (b->buf = malloc((n > 0 ? 2 * n : 1) * sizeof(*b->buf))) == NULL) {
        free(b);
        return jpip_err_set(err, JPIP_E_NOMEM, "cache model: out of memory");
    }
    b->n = n;
    for (i = 0; i < n; i++) {
        upd_t *x = &b->buf[i];

        x->cls = norm_class(sent[i].cls);
        x->csn = norm_csn(x->cls, sent[i].csn);
        x->id = sent[i].id;
        x->off = sent[i].off;
        x->end = sent[i].complete ? JPIP_MODEL_COMPLETE : sent[i].off + sent[i].len;
        x->val = x->end;
        if (!sent[i].complete && x->cls == 0 && sent[i].layers > 0 &&
            sent[i].layers <= JPIP_MODEL_MAX_LAYERS) {
            x->val = JPIP_MODEL_LAYERS(sent[i].layers);
        } else if (!value_ok(x->cls, x->end)) {
            x->end = x->val = 0; /* no bin is that long: a message of nothing */
        }
    }
    /* by bin, and within a bin in the order the messages were sent */
    b->u = sort_updates(b->buf, b->buf + n, n);
    *batch = b;
    return JPIP_OK;
}

void jpip_model_batch_free(jpip_model_batch_t *b)
{
    if (b != NULL) {
        free(b->buf);
        free(b);
    }
}

jpip_code_t jpip_model_record(jpip_model_t *m, const jpip_model_resolver_t *res,
                              const jpip_model_sent_t *sent, apr_size_t n, jpip_err_t *err)
{
    jpip_model_batch_t *b;
    jpip_code_t rc;

    if (n == 0) {
        return JPIP_OK;
    }
    rc = jpip_model_batch_make(&b, sent, n, err);
    if (rc == JPIP_OK) {
        rc = jpip_model_record_batch(m, res, b, err);
        jpip_model_batch_free(b);
    }
    return rc;
}

/* The runs of e do not fit in cap: forget what they say about partly held
 * bins (those bins go back to holding nothing), then, if that is not
 * enough, the last complete runs, until they fit. Only for ordinary
 * models, where forgetting lowers what is held: the server then sends
 * those bytes again, never omits any. Returns the bins forgotten. */
static apr_uint64_t shed(emit_t *e, apr_uint64_t cap)
{
    apr_uint64_t dropped = 0;
    apr_size_t i, o = 0;

    for (i = 0; i < e->n; i++) {
        if (e->out[i].bytes == JPIP_MODEL_COMPLETE) {
            e->out[o++] = e->out[i];
        } else {
            dropped += e->out[i].last - e->out[i].first + 1;
        }
    }
    e->n = o;
    while (e->n > cap) {
        e->n--;
        dropped += e->out[e->n].last - e->out[e->n].first + 1;
    }
    return dropped;
}

static jpip_code_t record_batch(jpip_model_t *m, const jpip_model_resolver_t *res,
                                jpip_model_batch_t *b, jpip_err_t *err);

jpip_code_t jpip_model_record_batch(jpip_model_t *m, const jpip_model_resolver_t *res,
                                    jpip_model_batch_t *b, jpip_err_t *err)
{
    return record_batch(m, res, b, err);
}

/* A model of cap runs in malloc'd memory holding m's runs. */
static jpip_model_t *spill_make(const jpip_model_t *m, apr_uint64_t cap)
{
    apr_size_t size = jpip_model_bytes_for((apr_size_t)cap);
    jpip_model_t *s = malloc(size);

    if (s != NULL) {
        memcpy(s, m, jpip_model_size(m));
        s->cap = cap;
    }
    return s;
}

jpip_code_t jpip_model_record_spill(jpip_model_t *m, const jpip_model_resolver_t *res,
                                    jpip_model_t **spill, jpip_model_batch_t *b, jpip_err_t *err)
{
    jpip_model_t *t = *spill != NULL ? *spill : m;
    apr_uint64_t need = t->count + 2 * (apr_uint64_t)b->n + 1;

    if (need <= t->cap || (m->flags & FLAG_INVERTED)) {
        return record_batch(t, res, b, err);
    }
    /* it may not fit: record where it surely does */
    t = spill_make(t, need + need / 2);
    if (t == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "cache model: out of memory");
    }
    free(*spill);
    *spill = t;
    return record_batch(t, res, b, err);
}

apr_uint64_t jpip_model_unspill(jpip_model_t *m, jpip_model_t *spill)
{
    emit_t e;
    apr_uint64_t dropped;

    if (spill == NULL) {
        return 0;
    }
    e.out = recs(spill);
    e.n = (apr_size_t)spill->count;
    dropped = e.n > m->cap ? shed(&e, m->cap) : 0;
    memcpy(recs(m), e.out, e.n * sizeof(*e.out));
    m->count = e.n;
    free(spill);
    return dropped;
}

static jpip_code_t record_batch(jpip_model_t *m, const jpip_model_resolver_t *res,
                                jpip_model_batch_t *b, jpip_err_t *err)
{
    const mrec_t *r = crecs(m);
    apr_size_t nr = (apr_size_t)m->count, n = b->n, i, j, k, nu = 0;
    apr_uint64_t def = def_value(m);
    upd_t *u = b->u;
    emit_t e;
    mrec_t cur;
    int have_cur = 0;

    if (n == 0) {
        return JPIP_OK;
    }
    e.out = malloc((nr + 2 * n) * sizeof(*e.out));
    e.n = 0;
    e.def = def;
    if (e.out == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "cache model: out of memory");
    }
    b->n = 0; /* the updates are folded in place below: a batch is used once */
    /* fold each bin's messages into one new held value, from what it held
     * (the bins ascend, and so do the runs: one walk over both) */
    for (i = 0, k = 0; i < n; i = j) {
        apr_uint64_t held = def, v;
        int kc = 0;

        while (k < nr && ((kc = key_cmp(&r[k], u[i].cls, u[i].csn)) < 0 ||
                          (kc == 0 && r[k].last < u[i].id))) {
            k++;
        }
        if (k < nr && kc == 0 && r[k].first <= u[i].id) {
            held = r[k].bytes;
        }
        v = held;

        for (j = i; j < n && u[j].cls == u[i].cls && u[j].csn == u[i].csn && u[j].id == u[i].id;
             j++) {
            apr_uint64_t hb = to_bytes(res, u[i].cls, u[i].csn, u[i].id, v);

            if (hb != JPIP_MODEL_COMPLETE && u[j].off <= hb && u[j].end > hb) {
                v = u[j].val;
            }
        }
        if (v != held) {
            u[nu] = u[i];
            u[nu].val = v; /* never less than held: it only grew */
            nu++;
        }
    }
    /* merge the new values (ascending, one per bin) into the runs */
    k = 0;
    for (i = 0; i < nu; i++) {
        const upd_t *x = &u[i];
        int kc = 0;

        for (;;) {
            if (!have_cur) {
                if (k >= nr) {
                    break;
                }
                cur = r[k++];
                have_cur = 1;
            }
            kc = key_cmp(&cur, x->cls, x->csn);
            if (kc < 0 || (kc == 0 && cur.last < x->id)) {
                emit_key(&e, cur.cls, cur.csn, cur.first, cur.last, cur.bytes);
                have_cur = 0;
                continue;
            }
            break;
        }
        if (have_cur && kc == 0 && cur.first <= x->id) {
            /* x lies inside the current run: split it around x */
            if (cur.first < x->id) {
                emit_key(&e, cur.cls, cur.csn, cur.first, x->id - 1, cur.bytes);
            }
            emit_key(&e, x->cls, x->csn, x->id, x->id, x->val);
            if (cur.last > x->id) {
                cur.first = x->id + 1;
            } else {
                have_cur = 0;
            }
        } else {
            emit_key(&e, x->cls, x->csn, x->id, x->id, x->val);
        }
    }
    if (have_cur) {
        emit_key(&e, cur.cls, cur.csn, cur.first, cur.last, cur.bytes);
    }
    for (; k < nr; k++) {
        emit_key(&e, r[k].cls, r[k].csn, r[k].first, r[k].last, r[k].bytes);
    }
    if (e.n > m->cap) {
        free(e.out);
        return jpip_err_set(err, JPIP_E_LIMIT, "cache model: more than %" APR_UINT64_T_FMT " runs",
                            m->cap);
    }
    memcpy(recs(m), e.out, e.n * sizeof(*e.out));
    m->count = e.n;
    free(e.out);
    return JPIP_OK;
}

void jpip_model_forget_codestream(jpip_model_t *m, apr_uint64_t csn)
{
    mrec_t *r = recs(m);
    apr_size_t i, o = 0;

    for (i = 0; i < m->count; i++) {
        if (r[i].cls == 8 || r[i].csn != csn) {
            r[o++] = r[i];
        }
    }
    m->count = o;
}

/* ==== applying model / need items ===================================== */

typedef struct apply_t {
    jpip_model_t *m;
    const jpip_model_resolver_t *res;
    const jpip_model_item_t *it;
    int need;
    apr_uint64_t csn;
    apr_uint64_t visits, max_visits;
} apply_t;

static jpip_code_t count_visit(apply_t *ap, jpip_err_t *err)
{
    if (++ap->visits > ap->max_visits) {
        return jpip_err_set(err, JPIP_E_LIMIT,
                            "%s: position %" APR_SIZE_T_FMT ": more than %" APR_UINT64_T_FMT
                            " bins to resolve",
                            ap->need ? "need" : "model", ap->it->pos, ap->max_visits);
    }
    return JPIP_OK;
}

/* Apply item ap->it to precinct (or tile) ids first..last of ap->csn, with
 * a known byte value for :L resolved per id when one id is given. */
static jpip_code_t apply_ids(apply_t *ap, unsigned cls, apr_uint64_t first, apr_uint64_t last,
                             jpip_err_t *err)
{
    const jpip_model_item_t *it = ap->it;
    const jpip_model_resolver_t *res = ap->res;
    apr_uint64_t v;

    if (ap->need) {
        return range_op(ap->m, res, cls, ap->csn, first, last, OP_MIN, 0, err);
    }
    switch (it->qual) {
    case JPIP_MODEL_QUAL_BYTES:
        v = it->bytes;
        break;
    case JPIP_MODEL_QUAL_LAYERS:
        /* recorded as a layer count, resolved bin by bin when it is read */
        if (cls == 0 && it->layers > 0 && res != NULL && res->layer_bytes != NULL) {
            v = JPIP_MODEL_LAYERS(it->layers);
        } else {
            v = 0; /* unresolvable: add nothing, or cut everything */
        }
        break;
    default:
        v = it->subtract ? 0 : JPIP_MODEL_COMPLETE;
        break;
    }
    return range_op(ap->m, res, cls, ap->csn, first, last, it->subtract ? OP_MIN : OP_MAX, v, err);
}

static jpip_code_t implicit_visit(void *vctx, apr_uint64_t id, jpip_err_t *err)
{
    apply_t *ap = vctx;
    jpip_code_t rc = count_visit(ap, err);

    if (rc != JPIP_OK) {
        return rc;
    }
    return apply_ids(ap, 0, id, id, err);
}

/* Precincts chosen by position (an implicit item, or P*:L<n>). */
static jpip_code_t apply_implicit(apply_t *ap, const jpip_model_range_t *t,
                                  const jpip_model_range_t *c, const jpip_model_range_t *r,
                                  const jpip_model_range_t *p, jpip_err_t *err)
{
    const jpip_model_resolver_t *res = ap->res;

    if (res == NULL || res->implicit == NULL) {
        if (ap->need || ap->it->subtract) {
            return range_op(ap->m, res, 0, ap->csn, 0, JPIP_MODEL_END, OP_MIN, 0, err);
        }
        return JPIP_OK;
    }
    return res->implicit(res->ctx, ap->csn, t, c, r, p, implicit_visit, ap, err);
}

static jpip_code_t apply_item(apply_t *ap, jpip_err_t *err)
{
    const jpip_model_item_t *it = ap->it;
    apr_uint64_t first = it->all ? 0 : it->id, last = it->all ? JPIP_MODEL_END : it->id_last;

    switch (it->kind) {
    case JPIP_MODEL_ITEM_MAIN:
        return apply_ids(ap, 6, 0, 0, err);
    case JPIP_MODEL_ITEM_TILEHDR:
        return apply_ids(ap, 2, first, last, err);
    case JPIP_MODEL_ITEM_TILE:
        return apply_ids(ap, 4, first, last, err);
    case JPIP_MODEL_ITEM_META:
        return apply_ids(ap, 8, first, last, err);
    case JPIP_MODEL_ITEM_PRECINCT:
        /* a layer count is one value for every bin of the range */
        return apply_ids(ap, 0, first, last, err);
    default:
        return apply_implicit(ap, &it->t, &it->c, &it->r, &it->p, err);
    }
}

static jpip_code_t apply_spec(jpip_model_t *m, const jpip_model_spec_t *spec,
                              const jpip_model_resolver_t *res, jpip_err_t *err)
{
    apply_t ap;
    apr_size_t i, k;
    apr_uint64_t ncs = (res != NULL && res->codestreams > 0) ? res->codestreams : 1;
    jpip_code_t rc;

    memset(&ap, 0, sizeof(ap));
    ap.m = m;
    ap.res = res;
    ap.need = spec->need;
    ap.max_visits =
        (res != NULL && res->max_visits > 0) ? res->max_visits : ((apr_uint64_t)1 << 22);
    for (i = 0; i < spec->nitems; i++) {
        const jpip_model_item_t *it = &spec->items[i];
        ap.it = it;
        if (it->kind == JPIP_MODEL_ITEM_META) {
            ap.csn = 0; /* metadata-bins are not codestream-qualified */
            rc = count_visit(&ap, err);
            if (rc == JPIP_OK) {
                rc = apply_item(&ap, err);
            }
            if (rc != JPIP_OK) {
                return rc;
            }
            continue;
        }
        for (k = 0; k < it->ncs; k++) {
            apr_uint64_t c, lastc = it->cs[k].last < ncs - 1 ? it->cs[k].last : ncs - 1;
            for (c = it->cs[k].first; c <= lastc; c++) {
                ap.csn = c;
                rc = count_visit(&ap, err);
                if (rc == JPIP_OK) {
                    rc = apply_item(&ap, err);
                }
                if (rc != JPIP_OK) {
                    return rc;
                }
                if (c == JPIP_MODEL_END) {
                    break;
                }
            }
        }
    }
    return JPIP_OK;
}

jpip_code_t jpip_model_apply(jpip_model_t *m, const jpip_model_spec_t *spec,
                             const jpip_model_resolver_t *res, jpip_err_t *err)
{
    apr_size_t size = jpip_model_bytes_for((apr_size_t)m->cap);
    jpip_model_t *scratch = malloc(size);
    jpip_code_t rc;

    if (scratch == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "cache model: out of memory");
    }
    memcpy(scratch, m, jpip_model_size(m));
    rc = apply_spec(scratch, spec, res, err);
    if (rc == JPIP_OK) {
        memcpy(m, scratch, jpip_model_size(scratch));
    }
    free(scratch);
    return rc;
}

jpip_code_t jpip_model_build(apr_pool_t *pool, apr_size_t max_runs, const jpip_model_spec_t *model,
                             const jpip_model_spec_t *need, const jpip_model_resolver_t *res,
                             jpip_model_t **out, jpip_err_t *err)
{
    jpip_model_t *m;
    jpip_code_t rc = jpip_model_create(pool, max_runs, need != NULL, &m, err);

    if (rc != JPIP_OK) {
        return rc;
    }
    if (need != NULL) {
        rc = apply_spec(m, need, res, err);
        if (rc != JPIP_OK) {
            return rc;
        }
    }
    if (model != NULL) {
        rc = apply_spec(m, model, res, err);
        if (rc != JPIP_OK) {
            return rc;
        }
    }
    *out = m;
    return JPIP_OK;
}
