/* mod_jpip: the client side of JPP-streams and JPT-streams: an incremental
 * stream reader feeding a bounded data-bin cache. */
#include <stdlib.h>
#include <string.h>

#include <apr_hash.h>
#include <apr_strings.h>

#include "client.h"

#define DEFAULT_MAX_BINS (((apr_uint64_t)1) << 22)
#define DEFAULT_MAX_BYTES (((apr_uint64_t)4) << 30)
#define DEFAULT_MAX_MESSAGE (((apr_uint64_t)1) << 30)
/* Disjoint ranges one bin may hold: keeps insertion cost bounded when a
 * hostile stream scatters one-byte messages. */
#define MAX_RANGES_PER_BIN 4096

#define KEY_LEN 17

typedef struct seg_t {
    apr_uint64_t start;
    apr_uint64_t len;
    apr_size_t cap;
    unsigned char *data; /* malloc'd */
} seg_t;

typedef struct bin_t {
    unsigned char key[KEY_LEN];
    unsigned cls;
    apr_uint64_t csn, id;
    seg_t *segs; /* malloc'd, sorted by start, disjoint and not adjacent */
    apr_size_t nseg, capseg;
    int length_known;
    apr_uint64_t length;
    apr_uint64_t held;
} bin_t;

struct jpip_cache_t {
    apr_pool_t *pool;
    apr_hash_t *bins;
    jpip_cache_limits_t lim;
    jpip_cache_stats_t st;
};

enum {
    RS_START, /* expecting the first byte of a message */
    RS_BINID, /* inside the Bin-ID VBAS */
    RS_VBAS,  /* inside another VBAS (field says which) */
    RS_BODY,  /* inside a data message body */
    RS_EOR_REASON,
    RS_EOR_BODY,
    RS_DONE /* after the EOR */
};

enum { F_CLASS, F_CSN, F_OFF, F_LEN, F_AUX, F_EORLEN };

static const char *const field_names[] = {"Class",      "CSn", "Msg-Offset",
                                          "Msg-Length", "Aux", "EOR body length"};

struct jpip_reader_t {
    jpip_cache_t *cache;
    int state;
    int field;
    apr_uint64_t acc;     /* VBAS value so far */
    apr_uint64_t pos;     /* bytes consumed */
    apr_uint64_t msg_pos; /* where the current message started */

    unsigned bb;
    int c;
    apr_uint64_t id, cls, csn, off, len, aux, done;
    bin_t *bin;

    unsigned inh_cls;
    apr_uint64_t inh_csn;

    int eor;
    unsigned eor_reason;

    jpip_err_t sticky;
};

/* ---- bins ---------------------------------------------------------- */

static unsigned class_family(unsigned cls)
{
    return (cls == 1 || cls == 5) ? cls - 1 : cls;
}

static void make_key(unsigned char *key, unsigned cls, apr_uint64_t csn, apr_uint64_t id)
{
    int i;

    key[0] = (unsigned char)cls;
    for (i = 0; i < 8; i++) {
        key[1 + i] = (unsigned char)(csn >> (56 - 8 * i));
        key[9 + i] = (unsigned char)(id >> (56 - 8 * i));
    }
}

static bin_t *bin_find(const jpip_cache_t *c, unsigned cls, apr_uint64_t csn, apr_uint64_t id)
{
    unsigned char key[KEY_LEN];

    cls = class_family(cls);
    if (cls == 8) {
        csn = 0;
    }
    make_key(key, cls, csn, id);
    return apr_hash_get(c->bins, key, KEY_LEN);
}

static jpip_code_t bin_get_or_create(jpip_cache_t *c, unsigned cls, apr_uint64_t csn,
                                     apr_uint64_t id, bin_t **out, jpip_err_t *err)
{
    bin_t *b = bin_find(c, cls, csn, id);

    if (b == NULL) {
        if (c->st.bins >= c->lim.max_bins) {
            return jpip_err_set(err, JPIP_E_LIMIT,
                                "cache: more than %" APR_UINT64_T_FMT " data-bins",
                                c->lim.max_bins);
        }
        b = apr_pcalloc(c->pool, sizeof(*b));
        b->cls = class_family(cls);
        b->csn = b->cls == 8 ? 0 : csn;
        b->id = id;
        make_key(b->key, b->cls, b->csn, b->id);
        apr_hash_set(c->bins, b->key, KEY_LEN, b);
        c->st.bins++;
    }
    *out = b;
    return JPIP_OK;
}

static jpip_code_t grow_seg(seg_t *s, apr_uint64_t need, jpip_err_t *err)
{
    apr_size_t cap;
    unsigned char *p;

    if (need <= s->cap) {
        return JPIP_OK;
    }
    if (need > (apr_uint64_t)APR_SIZE_MAX / 2) {
        return jpip_err_set(err, JPIP_E_LIMIT, "cache: data-bin range too large for memory");
    }
    cap = s->cap < 256 ? 256 : s->cap;
    while (cap < need) {
        cap *= 2;
    }
    p = realloc(s->data, cap);
    if (p == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "cache: out of memory (%" APR_SIZE_T_FMT " bytes)",
                            cap);
    }
    s->data = p;
    s->cap = cap;
    return JPIP_OK;
}

/* Store bytes [a, a+n) of bin b (n > 0, a + n does not overflow). */
static jpip_code_t bin_insert(jpip_cache_t *c, bin_t *b, apr_uint64_t a, const unsigned char *p,
                              apr_uint64_t n, jpip_err_t *err)
{
    apr_uint64_t e = a + n, s0, e0, old = 0, delta;
    apr_size_t lo = 0, hi = b->nseg, i, j, k;
    jpip_code_t rc;

    if (b->length_known && e > b->length) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "data-bin (class %u, csn %" APR_UINT64_T_FMT ", id %" APR_UINT64_T_FMT
                            "): bytes up to %" APR_UINT64_T_FMT
                            " beyond its length %" APR_UINT64_T_FMT,
                            b->cls, b->csn, b->id, e, b->length);
    }
    /* i: first segment whose end reaches a (touches or overlaps) */
    while (lo < hi) {
        apr_size_t mid = lo + (hi - lo) / 2;
        if (b->segs[mid].start + b->segs[mid].len < a) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    i = lo;
    /* j: first segment starting beyond e */
    j = i;
    while (j < b->nseg && b->segs[j].start <= e) {
        j++;
    }
    s0 = a;
    e0 = e;
    if (i < j) {
        if (b->segs[i].start < s0) {
            s0 = b->segs[i].start;
        }
        if (b->segs[j - 1].start + b->segs[j - 1].len > e0) {
            e0 = b->segs[j - 1].start + b->segs[j - 1].len;
        }
    }
    for (k = i; k < j; k++) {
        old += b->segs[k].len;
    }
    delta = (e0 - s0) - old;
    if (delta > c->lim.max_bytes - c->st.held_bytes) {
        return jpip_err_set(err, JPIP_E_LIMIT, "cache: more than %" APR_UINT64_T_FMT " bytes held",
                            c->lim.max_bytes);
    }
    if (i == j) {
        seg_t ns;
        if (b->nseg >= MAX_RANGES_PER_BIN) {
            return jpip_err_set(err, JPIP_E_LIMIT,
                                "cache: data-bin (class %u, id %" APR_UINT64_T_FMT
                                ") split into more than %d ranges",
                                b->cls, b->id, MAX_RANGES_PER_BIN);
        }
        if (b->nseg == b->capseg) {
            apr_size_t nc = b->capseg ? b->capseg * 2 : 4;
            seg_t *ns2 = realloc(b->segs, nc * sizeof(seg_t));
            if (ns2 == NULL) {
                return jpip_err_set(err, JPIP_E_NOMEM, "cache: out of memory");
            }
            b->segs = ns2;
            b->capseg = nc;
        }
        memset(&ns, 0, sizeof(ns));
        rc = grow_seg(&ns, n, err);
        if (rc != JPIP_OK) {
            return rc;
        }
        memcpy(ns.data, p, (apr_size_t)n);
        ns.start = a;
        ns.len = n;
        memmove(b->segs + i + 1, b->segs + i, (b->nseg - i) * sizeof(seg_t));
        b->segs[i] = ns;
        b->nseg++;
    } else {
        seg_t base;
        if (b->segs[i].start == s0) {
            base = b->segs[i];
            k = i + 1;
        } else {
            memset(&base, 0, sizeof(base));
            k = i;
        }
        rc = grow_seg(&base, e0 - s0, err);
        if (rc != JPIP_OK) {
            if (k == i) {
                free(base.data);
            }
            return rc;
        }
        for (; k < j; k++) {
            memcpy(base.data + (b->segs[k].start - s0), b->segs[k].data,
                   (apr_size_t)b->segs[k].len);
            free(b->segs[k].data);
        }
        memcpy(base.data + (a - s0), p, (apr_size_t)n);
        base.start = s0;
        base.len = e0 - s0;
        b->segs[i] = base;
        memmove(b->segs + i + 1, b->segs + j, (b->nseg - j) * sizeof(seg_t));
        b->nseg -= j - i - 1;
    }
    b->held += delta;
    c->st.held_bytes += delta;
    return JPIP_OK;
}

static apr_status_t cache_cleanup(void *data)
{
    jpip_cache_t *c = data;
    apr_hash_index_t *hi;

    for (hi = apr_hash_first(NULL, c->bins); hi; hi = apr_hash_next(hi)) {
        bin_t *b = apr_hash_this_val(hi);
        apr_size_t k;
        for (k = 0; k < b->nseg; k++) {
            free(b->segs[k].data);
        }
        free(b->segs);
        b->segs = NULL;
        b->nseg = 0;
    }
    return APR_SUCCESS;
}

jpip_code_t jpip_cache_create(jpip_cache_t **cache, apr_pool_t *pool,
                              const jpip_cache_limits_t *limits, jpip_err_t *err)
{
    jpip_cache_t *c = apr_pcalloc(pool, sizeof(*c));

    if (c == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "cache: out of memory");
    }
    c->pool = pool;
    c->bins = apr_hash_make(pool);
    if (limits != NULL) {
        c->lim = *limits;
    }
    if (c->lim.max_bins == 0) {
        c->lim.max_bins = DEFAULT_MAX_BINS;
    }
    if (c->lim.max_bytes == 0) {
        c->lim.max_bytes = DEFAULT_MAX_BYTES;
    }
    if (c->lim.max_message == 0) {
        c->lim.max_message = DEFAULT_MAX_MESSAGE;
    }
    apr_pool_cleanup_register(pool, c, cache_cleanup, apr_pool_cleanup_null);
    *cache = c;
    return JPIP_OK;
}

static void bin_describe(const bin_t *b, jpip_cache_bin_t *out)
{
    out->cls = b->cls;
    out->csn = b->csn;
    out->id = b->id;
    if (b->nseg > 0 && b->segs[0].start == 0) {
        out->data = b->segs[0].data;
        out->prefix = b->segs[0].len;
    } else {
        out->data = NULL;
        out->prefix = 0;
    }
    out->held = b->held;
    out->ranges = b->nseg;
    out->length_known = b->length_known;
    out->length = b->length_known ? b->length : 0;
    out->complete = b->length_known && out->prefix == b->length;
}

jpip_code_t jpip_cache_lookup(const jpip_cache_t *cache, unsigned cls, apr_uint64_t csn,
                              apr_uint64_t id, jpip_cache_bin_t *bin)
{
    const bin_t *b = bin_find(cache, cls, csn, id);

    if (b == NULL) {
        return JPIP_E_NOTFOUND;
    }
    bin_describe(b, bin);
    return JPIP_OK;
}

jpip_code_t jpip_cache_get(const jpip_cache_t *cache, unsigned cls, apr_uint64_t csn,
                           apr_uint64_t id, const unsigned char **data, apr_uint64_t *len,
                           int *complete)
{
    jpip_cache_bin_t info;

    if (jpip_cache_lookup(cache, cls, csn, id, &info) != JPIP_OK) {
        return JPIP_E_NOTFOUND;
    }
    if (info.prefix == 0 && !info.complete) {
        return JPIP_E_NOTFOUND;
    }
    *data = info.data != NULL ? info.data : (const unsigned char *)"";
    *len = info.prefix;
    *complete = info.complete;
    return JPIP_OK;
}

jpip_code_t jpip_cache_binsrc_get(void *ctx, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                                  const unsigned char **data, apr_size_t *len, int *complete,
                                  jpip_err_t *err)
{
    apr_uint64_t l;

    if (jpip_cache_get(ctx, cls, csn, id, data, &l, complete) != JPIP_OK) {
        return jpip_err_set(err, JPIP_E_NOTFOUND,
                            "cache: no bytes of data-bin (class %u, csn %" APR_UINT64_T_FMT
                            ", id %" APR_UINT64_T_FMT ")",
                            cls, csn, id);
    }
    if (l > (apr_uint64_t)APR_SIZE_MAX) {
        return jpip_err_set(err, JPIP_E_LIMIT, "cache: data-bin too large for this platform");
    }
    *len = (apr_size_t)l;
    return JPIP_OK;
}

static int bin_cmp(const void *x, const void *y)
{
    const bin_t *a = *(const bin_t *const *)x, *b = *(const bin_t *const *)y;

    /* the key is big-endian (class, csn, id): byte order is numeric order */
    return memcmp(a->key, b->key, KEY_LEN);
}

/* All bins as a sorted array from pool. */
static bin_t **sorted_bins(const jpip_cache_t *c, apr_pool_t *pool, apr_size_t *n,
                           int (*cmp)(const void *, const void *))
{
    apr_size_t cnt = apr_hash_count(c->bins), k = 0;
    bin_t **v = apr_palloc(pool, (cnt ? cnt : 1) * sizeof(*v));
    apr_hash_index_t *hi;

    for (hi = apr_hash_first(pool, c->bins); hi && k < cnt; hi = apr_hash_next(hi)) {
        v[k++] = apr_hash_this_val(hi);
    }
    qsort(v, k, sizeof(*v), cmp);
    *n = k;
    return v;
}

jpip_code_t jpip_cache_iterate(const jpip_cache_t *cache, apr_pool_t *pool,
                               jpip_cache_visit_fn visit, void *ctx, jpip_err_t *err)
{
    apr_size_t n, k;
    bin_t **v = sorted_bins(cache, pool, &n, bin_cmp);

    for (k = 0; k < n; k++) {
        jpip_cache_bin_t info;
        jpip_code_t rc;
        bin_describe(v[k], &info);
        rc = visit(ctx, &info, err);
        if (rc != JPIP_OK) {
            return rc;
        }
    }
    return JPIP_OK;
}

void jpip_cache_stats(const jpip_cache_t *cache, jpip_cache_stats_t *stats)
{
    *stats = cache->st;
}

/* Model order: metadata-bins first, then by csn, then Hm, H, T, P. */
static int model_rank(unsigned cls)
{
    switch (cls) {
    case 8:
        return 0;
    case 6:
        return 1;
    case 2:
        return 2;
    case 4:
        return 3;
    default:
        return 4;
    }
}

static int model_cmp(const void *x, const void *y)
{
    const bin_t *a = *(const bin_t *const *)x, *b = *(const bin_t *const *)y;
    int ma = a->cls != 8, mb = b->cls != 8, ra, rb;

    if (ma != mb) {
        return ma - mb;
    }
    if (a->csn != b->csn) {
        return a->csn < b->csn ? -1 : 1;
    }
    ra = model_rank(a->cls);
    rb = model_rank(b->cls);
    if (ra != rb) {
        return ra - rb;
    }
    if (a->id != b->id) {
        return a->id < b->id ? -1 : 1;
    }
    return 0;
}

typedef struct sbuf_t {
    char *p;
    apr_size_t len, cap, max;
    apr_pool_t *pool;
} sbuf_t;

static jpip_code_t sbuf_add(sbuf_t *s, const char *str, jpip_err_t *err)
{
    apr_size_t n = strlen(str);

    if (s->max != 0 && s->len + n > s->max) {
        return jpip_err_set(err, JPIP_E_LIMIT, "model string longer than %" APR_SIZE_T_FMT " bytes",
                            s->max);
    }
    if (s->len + n + 1 > s->cap) {
        apr_size_t nc = s->cap ? s->cap : 256;
        char *np;
        while (nc < s->len + n + 1) {
            nc *= 2;
        }
        np = apr_palloc(s->pool, nc);
        if (s->len) {
            memcpy(np, s->p, s->len);
        }
        s->p = np;
        s->cap = nc;
    }
    memcpy(s->p + s->len, str, n + 1);
    s->len += n;
    return JPIP_OK;
}

jpip_code_t jpip_cache_model_string(const jpip_cache_t *cache, apr_pool_t *pool, apr_size_t max_len,
                                    const char **out, jpip_err_t *err)
{
    apr_size_t n, k;
    bin_t **v = sorted_bins(cache, pool, &n, model_cmp);
    sbuf_t s;
    int have_csn = 0;
    apr_uint64_t cur_csn = 0;

    memset(&s, 0, sizeof(s));
    s.pool = pool;
    s.max = max_len;
    for (k = 0; k < n; k++) {
        jpip_cache_bin_t info;
        char item[96];
        const char *q = "";
        jpip_code_t rc;

        bin_describe(v[k], &info);
        if (info.prefix == 0 && !info.complete) {
            continue;
        }
        if (info.cls == 6 && info.id != 0) {
            continue; /* no descriptor names it */
        }
        if (info.cls != 8 && (!have_csn || cur_csn != info.csn)) {
            apr_snprintf(item, sizeof(item), "%s[%" APR_UINT64_T_FMT "]", s.len ? "," : "",
                         info.csn);
            rc = sbuf_add(&s, item, err);
            if (rc != JPIP_OK) {
                return rc;
            }
            have_csn = 1;
            cur_csn = info.csn;
        }
        if (!info.complete) {
            q = apr_psprintf(pool, ":%" APR_UINT64_T_FMT, info.prefix);
        }
        switch (info.cls) {
        case 8:
            apr_snprintf(item, sizeof(item), "%sM%" APR_UINT64_T_FMT "%s", s.len ? "," : "",
                         info.id, q);
            break;
        case 6:
            apr_snprintf(item, sizeof(item), "%sHm%s", s.len ? "," : "", q);
            break;
        case 2:
            apr_snprintf(item, sizeof(item), "%sH%" APR_UINT64_T_FMT "%s", s.len ? "," : "",
                         info.id, q);
            break;
        case 4:
            apr_snprintf(item, sizeof(item), "%sT%" APR_UINT64_T_FMT "%s", s.len ? "," : "",
                         info.id, q);
            break;
        default:
            apr_snprintf(item, sizeof(item), "%sP%" APR_UINT64_T_FMT "%s", s.len ? "," : "",
                         info.id, q);
            break;
        }
        rc = sbuf_add(&s, item, err);
        if (rc != JPIP_OK) {
            return rc;
        }
    }
    *out = s.p != NULL ? s.p : "";
    return JPIP_OK;
}

/* ---- reader -------------------------------------------------------- */

jpip_code_t jpip_reader_create(jpip_reader_t **reader, jpip_cache_t *cache, apr_pool_t *pool,
                               jpip_err_t *err)
{
    jpip_reader_t *r = apr_pcalloc(pool, sizeof(*r));

    if (r == NULL) {
        return jpip_err_set(err, JPIP_E_NOMEM, "reader: out of memory");
    }
    r->cache = cache;
    r->state = RS_START;
    jpip_err_clear(&r->sticky);
    *reader = r;
    return JPIP_OK;
}

void jpip_reader_next_response(jpip_reader_t *r)
{
    if (r->state == RS_DONE) {
        r->state = RS_START;
    }
    r->inh_cls = 0;
    r->inh_csn = 0;
    r->eor = 0;
    r->eor_reason = 0;
}

int jpip_reader_eor(const jpip_reader_t *r, unsigned *reason)
{
    if (r->eor && reason != NULL) {
        *reason = r->eor_reason;
    }
    return r->eor;
}

apr_uint64_t jpip_reader_consumed(const jpip_reader_t *r)
{
    return r->pos;
}

/* Record e as the reader's sticky error, copy it to err, return its code. */
static jpip_code_t reader_fail(jpip_reader_t *r, const jpip_err_t *e, jpip_err_t *err)
{
    r->sticky = *e;
    if (err != NULL) {
        *err = *e;
    }
    return e->code;
}

static void message_done(jpip_reader_t *r)
{
    if (r->c) {
        r->bin->length_known = 1;
        r->bin->length = r->off + r->len;
    }
    r->state = RS_START;
}

/* The header of a data message is complete: check it and find its bin. */
static jpip_code_t header_done(jpip_reader_t *r, jpip_err_t *err)
{
    jpip_cache_t *c = r->cache;
    bin_t *b = NULL;
    jpip_code_t rc;
    apr_size_t k;

    r->inh_cls = (unsigned)r->cls;
    r->inh_csn = r->csn;
    if (r->len > c->lim.max_message) {
        return jpip_err_set(err, JPIP_E_LIMIT,
                            "message at byte %" APR_UINT64_T_FMT ": Msg-Length %" APR_UINT64_T_FMT
                            " above the limit %" APR_UINT64_T_FMT,
                            r->msg_pos, r->len, c->lim.max_message);
    }
    if (r->off > ~(apr_uint64_t)0 - r->len) {
        return jpip_err_set(
            err, JPIP_E_FORMAT,
            "message at byte %" APR_UINT64_T_FMT ": Msg-Offset + Msg-Length overflows", r->msg_pos);
    }
    rc = bin_get_or_create(c, (unsigned)r->cls, r->csn, r->id, &b, err);
    if (rc != JPIP_OK) {
        return rc;
    }
    if (r->c) {
        apr_uint64_t total = r->off + r->len;
        if (b->length_known && b->length != total) {
            return jpip_err_set(err, JPIP_E_FORMAT,
                                "message at byte %" APR_UINT64_T_FMT
                                ": data-bin (class %u, id %" APR_UINT64_T_FMT
                                ") length %" APR_UINT64_T_FMT ", earlier %" APR_UINT64_T_FMT,
                                r->msg_pos, b->cls, b->id, total, b->length);
        }
        k = b->nseg;
        if (k > 0 && b->segs[k - 1].start + b->segs[k - 1].len > total) {
            return jpip_err_set(err, JPIP_E_FORMAT,
                                "message at byte %" APR_UINT64_T_FMT
                                ": data-bin (class %u, id %" APR_UINT64_T_FMT
                                ") ends at %" APR_UINT64_T_FMT " but bytes beyond it arrived",
                                r->msg_pos, b->cls, b->id, total);
        }
    }
    r->bin = b;
    r->done = 0;
    c->st.messages++;
    c->st.class_messages[r->cls]++;
    c->st.header_bytes += r->pos - r->msg_pos;
    if (r->len == 0) {
        message_done(r);
    } else {
        r->state = RS_BODY;
    }
    return JPIP_OK;
}

/* Move to the next header field after the one just read (or after the
 * Bin-ID when field is -1). */
static jpip_code_t next_field(jpip_reader_t *r, int after, jpip_err_t *err)
{
    int f = after + 1;

    if (f <= F_CLASS && !(r->bb & 2)) {
        f = F_CSN;
    }
    if (f == F_CSN && r->bb != 3) {
        f = F_OFF;
    }
    if (f == F_AUX && !(r->cls & 1)) {
        return header_done(r, err);
    }
    if (f > F_AUX) {
        return header_done(r, err);
    }
    r->field = f;
    r->acc = 0;
    r->state = RS_VBAS;
    return JPIP_OK;
}

static jpip_code_t field_done(jpip_reader_t *r, jpip_err_t *err)
{
    apr_uint64_t v = r->acc;

    switch (r->field) {
    case F_CLASS:
        if (v == 3 || v == 7 || v > 8) {
            return jpip_err_set(err, JPIP_E_FORMAT,
                                "message at byte %" APR_UINT64_T_FMT ": class %" APR_UINT64_T_FMT
                                " is reserved or unknown",
                                r->msg_pos, v);
        }
        r->cls = v;
        break;
    case F_CSN:
        r->csn = v;
        break;
    case F_OFF:
        r->off = v;
        break;
    case F_LEN:
        r->len = v;
        break;
    case F_AUX:
        r->aux = v;
        break;
    case F_EORLEN:
        r->len = v;
        r->done = 0;
        if (v == 0) {
            r->eor = 1;
            r->state = RS_DONE;
            r->cache->st.eors++;
        } else {
            r->state = RS_EOR_BODY;
        }
        return JPIP_OK;
    }
    return next_field(r, r->field, err);
}

/* Add one VBAS byte to the accumulator. */
static jpip_code_t vbas_byte(jpip_reader_t *r, unsigned char b, const char *what, jpip_err_t *err)
{
    if ((r->acc >> 57) != 0) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "message at byte %" APR_UINT64_T_FMT ": %s VBAS overflows 64 bits",
                            r->msg_pos, what);
    }
    r->acc = (r->acc << 7) | (b & 0x7F);
    return JPIP_OK;
}

static jpip_code_t first_byte(jpip_reader_t *r, unsigned char b, jpip_err_t *err)
{
    r->msg_pos = r->pos;
    if (b == 0x00) {
        r->state = RS_EOR_REASON;
        return JPIP_OK;
    }
    r->bb = (b >> 5) & 3;
    if (r->bb == 0) {
        return jpip_err_set(err, JPIP_E_FORMAT,
                            "message at byte %" APR_UINT64_T_FMT
                            ": first byte 0x%02X has bb=00 (only 0x00, the EOR, may)",
                            r->msg_pos, b);
    }
    r->c = (b >> 4) & 1;
    r->cls = r->inh_cls;
    r->csn = r->inh_csn;
    r->aux = 0;
    r->acc = b & 0x0F;
    if (b & 0x80) {
        r->state = RS_BINID;
        return JPIP_OK;
    }
    r->id = r->acc;
    return next_field(r, -1, err);
}

jpip_code_t jpip_reader_feed(jpip_reader_t *r, const void *data, apr_size_t len, jpip_err_t *uerr)
{
    const unsigned char *p = data;
    apr_size_t i = 0;
    jpip_code_t rc = JPIP_OK;
    jpip_err_t e, *err = &e;

    if (r->sticky.code != JPIP_OK) {
        return reader_fail(r, &r->sticky, uerr);
    }
    jpip_err_clear(&e);
    while (i < len) {
        unsigned char b = p[i];

        switch (r->state) {
        case RS_START:
            rc = first_byte(r, b, err);
            i++;
            r->pos++;
            break;
        case RS_BINID:
            rc = vbas_byte(r, b, "Bin-ID", err);
            i++;
            r->pos++;
            if (rc == JPIP_OK && !(b & 0x80)) {
                r->id = r->acc;
                rc = next_field(r, -1, err);
            }
            break;
        case RS_VBAS:
            rc = vbas_byte(r, b, field_names[r->field], err);
            i++;
            r->pos++;
            if (rc == JPIP_OK && !(b & 0x80)) {
                rc = field_done(r, err);
            }
            break;
        case RS_BODY: {
            apr_uint64_t want = r->len - r->done;
            apr_size_t n = len - i;
            if ((apr_uint64_t)n > want) {
                n = (apr_size_t)want;
            }
            rc = bin_insert(r->cache, r->bin, r->off + r->done, p + i, n, err);
            if (rc != JPIP_OK) {
                break;
            }
            r->cache->st.body_bytes += n;
            r->cache->st.class_bytes[r->cls] += n;
            r->done += n;
            i += n;
            r->pos += n;
            if (r->done == r->len) {
                message_done(r);
            }
            break;
        }
        case RS_EOR_REASON:
            r->eor_reason = b;
            r->field = F_EORLEN;
            r->acc = 0;
            r->state = RS_VBAS;
            i++;
            r->pos++;
            break;
        case RS_EOR_BODY: {
            apr_uint64_t want = r->len - r->done;
            apr_size_t n = len - i;
            if ((apr_uint64_t)n > want) {
                n = (apr_size_t)want;
            }
            r->done += n;
            i += n;
            r->pos += n;
            if (r->done == r->len) {
                r->eor = 1;
                r->state = RS_DONE;
                r->cache->st.eors++;
            }
            break;
        }
        default: /* RS_DONE */
            rc = jpip_err_set(err, JPIP_E_FORMAT,
                              "byte %" APR_UINT64_T_FMT ": data after the EOR message", r->pos);
            break;
        }
        if (rc != JPIP_OK) {
            return reader_fail(r, &e, uerr);
        }
    }
    return JPIP_OK;
}

jpip_code_t jpip_reader_finish(jpip_reader_t *r, jpip_err_t *uerr)
{
    jpip_err_t e, *err = &e;

    if (r->sticky.code != JPIP_OK) {
        return reader_fail(r, &r->sticky, uerr);
    }
    switch (r->state) {
    case RS_START:
    case RS_DONE:
        return JPIP_OK;
    case RS_BODY:
        jpip_err_set(err, JPIP_E_FORMAT,
                     "stream ends inside the body of the message at byte %" APR_UINT64_T_FMT
                     " (%" APR_UINT64_T_FMT " of %" APR_UINT64_T_FMT " bytes)",
                     r->msg_pos, r->done, r->len);
        break;
    case RS_EOR_REASON:
    case RS_EOR_BODY:
        jpip_err_set(err, JPIP_E_FORMAT,
                     "stream ends inside the EOR message at byte %" APR_UINT64_T_FMT, r->msg_pos);
        break;
    default:
        jpip_err_set(err, JPIP_E_FORMAT,
                     "stream ends inside the header of the message at byte %" APR_UINT64_T_FMT,
                     r->msg_pos);
        break;
    }
    return reader_fail(r, &e, uerr);
}
