/* Unit tests: the JPP/JPT stream reader and the data-bin cache (round trip
 * from the writer, overlap, order, truncation, garbage, limits, EOR, the
 * model string). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "client.h"
#include "jpp.h"
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

static apr_uint64_t rng_state;

static apr_uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static apr_uint64_t rndn(apr_uint64_t n)
{
    return n ? rnd() % n : 0;
}

/* A growable byte buffer for building streams. */
typedef struct buf_t {
    unsigned char *p;
    apr_size_t len, cap;
} buf_t;

static void buf_add(buf_t *b, const void *data, apr_size_t n)
{
    if (b->len + n > b->cap) {
        apr_size_t nc = b->cap ? b->cap : 1024;
        while (nc < b->len + n) {
            nc *= 2;
        }
        b->p = realloc(b->p, nc);
        ck_assert_ptr_nonnull(b->p);
        b->cap = nc;
    }
    if (n) {
        memcpy(b->p + b->len, data, n);
    }
    b->len += n;
}

static void add_msg(buf_t *b, jpip_jpp_writer_t *w, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                    apr_uint64_t off, apr_uint64_t len, int complete, const unsigned char *body)
{
    unsigned char h[JPIP_JPP_HEADER_MAX];
    apr_size_t n = jpip_jpp_header(w, cls, csn, id, off, len, complete, 7, h);

    buf_add(b, h, n);
    buf_add(b, body, (apr_size_t)len);
}

static void add_eor(buf_t *b, unsigned reason)
{
    unsigned char e[JPIP_JPP_EOR_LEN];

    buf_add(b, e, jpip_jpp_eor(reason, e));
}

/* Feed a buffer in random chunks (1 byte each when tiny is set). */
static jpip_code_t feed_chunks(jpip_reader_t *r, const unsigned char *p, apr_size_t n, int tiny,
                               jpip_err_t *err)
{
    apr_size_t i = 0;

    while (i < n) {
        apr_size_t k = tiny ? 1 : 1 + (apr_size_t)rndn(rndn(2) ? 16 : 5000);
        jpip_code_t rc;
        if (k > n - i) {
            k = n - i;
        }
        rc = jpip_reader_feed(r, p + i, k, err);
        if (rc != JPIP_OK) {
            return rc;
        }
        i += k;
    }
    return JPIP_OK;
}

static jpip_cache_t *new_cache(const jpip_cache_limits_t *lim)
{
    jpip_cache_t *c;
    jpip_err_t err;

    ck_assert_int_eq(jpip_cache_create(&c, pool, lim, &err), JPIP_OK);
    return c;
}

static jpip_reader_t *new_reader(jpip_cache_t *c)
{
    jpip_reader_t *r;
    jpip_err_t err;

    ck_assert_int_eq(jpip_reader_create(&r, c, pool, &err), JPIP_OK);
    return r;
}

START_TEST(worked_stream)
{
    buf_t b = {0};
    jpip_jpp_writer_t w;
    unsigned char body[1200];
    jpip_cache_t *c = new_cache(NULL);
    jpip_reader_t *r = new_reader(c);
    jpip_err_t err;
    jpip_cache_bin_t info;
    unsigned reason = 0;
    const unsigned char *d;
    apr_uint64_t len;
    int complete;
    jpip_cache_stats_t st;

    memset(body, 0xAB, sizeof(body));
    jpip_jpp_writer_init(&w);
    add_msg(&b, &w, 6, 0, 0, 0, 159, 1, body);
    add_msg(&b, &w, 8, 0, 0, 0, 1200, 1, body);
    add_msg(&b, &w, 0, 0, 37, 0, 412, 0, body);
    add_msg(&b, &w, 0, 0, 38, 0, 2, 1, body);
    add_eor(&b, JPIP_EOR_WINDOW_DONE);
    ck_assert_int_eq(jpip_reader_feed(r, b.p, b.len, &err), JPIP_OK);
    ck_assert_int_eq(jpip_reader_finish(r, &err), JPIP_OK);
    ck_assert(jpip_reader_eor(r, &reason));
    ck_assert_uint_eq(reason, 2);

    ck_assert_int_eq(jpip_cache_lookup(c, 6, 0, 0, &info), JPIP_OK);
    ck_assert(info.complete);
    ck_assert_uint_eq(info.prefix, 159);
    ck_assert_int_eq(jpip_cache_lookup(c, 0, 0, 37, &info), JPIP_OK);
    ck_assert(!info.complete);
    ck_assert(!info.length_known);
    ck_assert_uint_eq(info.prefix, 412);
    ck_assert_int_eq(jpip_cache_get(c, 1, 0, 38, &d, &len, &complete), JPIP_OK);
    ck_assert_uint_eq(len, 2);
    ck_assert(complete);
    ck_assert_uint_eq(d[0], 0xAB);
    /* metadata-bins ignore csn */
    ck_assert_int_eq(jpip_cache_get(c, 8, 5, 0, &d, &len, &complete), JPIP_OK);
    ck_assert_uint_eq(len, 1200);
    ck_assert_int_eq(jpip_cache_get(c, 0, 1, 37, &d, &len, &complete), JPIP_E_NOTFOUND);

    jpip_cache_stats(c, &st);
    ck_assert_uint_eq(st.messages, 4);
    ck_assert_uint_eq(st.eors, 1);
    ck_assert_uint_eq(st.bins, 4);
    ck_assert_uint_eq(st.body_bytes, 159 + 1200 + 412 + 2);
    ck_assert_uint_eq(st.header_bytes, 6 + 5 + 6 + 4);
    ck_assert_uint_eq(st.class_messages[0], 2);
    ck_assert_uint_eq(st.class_bytes[8], 1200);
    ck_assert_uint_eq(jpip_reader_consumed(r), b.len);
    free(b.p);
}
END_TEST

/* ---- random round trip --------------------------------------------- */

typedef struct rbin_t {
    unsigned cls;
    apr_uint64_t csn, id, len;
    unsigned char *data;
    unsigned char *have;
    int sent;
    int complete_sent;
} rbin_t;

typedef struct rmsg_t {
    int bin;
    apr_uint64_t off, len;
} rmsg_t;

static const unsigned families[] = {0, 2, 4, 6, 8};

static void round_trip(unsigned seed, int nbins, int drop_percent)
{
    rbin_t *bins = calloc((size_t)nbins, sizeof(rbin_t));
    rmsg_t *msgs = NULL;
    size_t nmsg = 0, capmsg = 0, i;
    buf_t b = {0};
    jpip_jpp_writer_t w;
    jpip_cache_t *c = new_cache(NULL);
    jpip_reader_t *r = new_reader(c);
    jpip_err_t err;
    int k;

    rng_state = 0x9E3779B97F4A7C15ull ^ seed;
    for (k = 0; k < nbins; k++) {
        rbin_t *rb = &bins[k];
        apr_uint64_t j;
        rb->cls = families[rndn(5)];
        rb->csn = rb->cls == 8 ? 0 : rndn(3);
        /* ids distinct by construction: k in the low bits, random high bits */
        rb->id =
            rb->cls == 6 ? (apr_uint64_t)k : ((rndn(4) == 0 ? rnd() << 20 : 0) | (apr_uint64_t)k);
        rb->len = rndn(8) == 0 ? 0 : rndn(3000);
        rb->data = malloc((size_t)rb->len + 1);
        rb->have = calloc((size_t)rb->len + 1, 1);
        for (j = 0; j < rb->len; j++) {
            rb->data[j] = (unsigned char)rnd();
        }
        /* cut [0, len) into pieces, plus a few overlapping extras */
        {
            apr_uint64_t off = 0;
            int extra = (int)rndn(3);
            do {
                apr_uint64_t n = rb->len - off;
                if (n > 1 && rndn(2)) {
                    n = 1 + rndn(n);
                }
                if (nmsg == capmsg) {
                    capmsg = capmsg ? capmsg * 2 : 256;
                    msgs = realloc(msgs, capmsg * sizeof(*msgs));
                }
                msgs[nmsg].bin = k;
                msgs[nmsg].off = off;
                msgs[nmsg].len = n;
                nmsg++;
                off += n;
            } while (off < rb->len);
            while (extra-- > 0 && rb->len > 0) {
                apr_uint64_t a = rndn(rb->len);
                if (nmsg == capmsg) {
                    capmsg *= 2;
                    msgs = realloc(msgs, capmsg * sizeof(*msgs));
                }
                msgs[nmsg].bin = k;
                msgs[nmsg].off = a;
                msgs[nmsg].len = 1 + rndn(rb->len - a);
                nmsg++;
            }
        }
    }
    /* shuffle: any order */
    for (i = nmsg; i > 1; i--) {
        size_t j = (size_t)rndn(i);
        rmsg_t t = msgs[i - 1];
        msgs[i - 1] = msgs[j];
        msgs[j] = t;
    }
    jpip_jpp_writer_init(&w);
    for (i = 0; i < nmsg; i++) {
        rbin_t *rb = &bins[msgs[i].bin];
        unsigned cls = rb->cls;
        apr_uint64_t csn = rb->csn;
        int complete = msgs[i].off + msgs[i].len == rb->len;
        if ((int)rndn(100) < drop_percent) {
            continue;
        }
        if ((cls == 0 || cls == 4) && rndn(2)) {
            cls++; /* extended class: same bytes, with Aux */
        }
        if (cls == 8) {
            csn = rndn(4); /* metadata-bins are not codestream-qualified */
        }
        add_msg(&b, &w, cls, csn, rb->id, msgs[i].off, msgs[i].len, complete,
                rb->data + msgs[i].off);
        memset(rb->have + msgs[i].off, 1, (size_t)msgs[i].len);
        rb->sent = 1;
        rb->complete_sent |= complete;
    }
    add_eor(&b, JPIP_EOR_IMAGE_DONE);
    ck_assert_int_eq(feed_chunks(r, b.p, b.len, 0, &err), JPIP_OK);
    ck_assert_msg(jpip_reader_finish(r, &err) == JPIP_OK, "%s", err.msg);
    ck_assert(jpip_reader_eor(r, NULL));

    for (k = 0; k < nbins; k++) {
        rbin_t *rb = &bins[k];
        jpip_cache_bin_t info;
        apr_uint64_t prefix = 0, held = 0, j;
        jpip_code_t rc = jpip_cache_lookup(c, rb->cls, rb->csn, rb->id, &info);
        if (!rb->sent) {
            ck_assert_int_eq(rc, JPIP_E_NOTFOUND);
            free(rb->data);
            free(rb->have);
            continue;
        }
        ck_assert_int_eq(rc, JPIP_OK);
        while (prefix < rb->len && rb->have[prefix]) {
            prefix++;
        }
        for (j = 0; j < rb->len; j++) {
            held += rb->have[j];
        }
        ck_assert_uint_eq(info.prefix, prefix);
        ck_assert_uint_eq(info.held, held);
        ck_assert_int_eq(info.length_known, rb->complete_sent);
        ck_assert_int_eq(info.complete, rb->complete_sent && prefix == rb->len);
        if (prefix) {
            ck_assert(memcmp(info.data, rb->data, (size_t)prefix) == 0);
        }
        free(rb->data);
        free(rb->have);
    }
    free(bins);
    free(msgs);
    free(b.p);
}

START_TEST(round_trip_complete)
{
    round_trip(1, 2000, 0);
    round_trip(2, 300, 0);
}
END_TEST

START_TEST(round_trip_with_holes)
{
    round_trip(3, 2000, 30);
    round_trip(4, 500, 60);
}
END_TEST

START_TEST(overlap_and_order)
{
    static const unsigned char all[] = "0123456789abcdefghij";
    buf_t b = {0};
    jpip_jpp_writer_t w;
    jpip_cache_t *c = new_cache(NULL);
    jpip_reader_t *r = new_reader(c);
    jpip_err_t err;
    jpip_cache_bin_t info;

    jpip_jpp_writer_init(&w);
    add_msg(&b, &w, 0, 0, 9, 15, 5, 1, all + 15); /* the end first */
    add_msg(&b, &w, 0, 0, 9, 5, 3, 0, all + 5);
    add_msg(&b, &w, 0, 0, 9, 12, 2, 0, all + 12);
    ck_assert_int_eq(jpip_reader_feed(r, b.p, b.len, &err), JPIP_OK);
    ck_assert_int_eq(jpip_cache_lookup(c, 0, 0, 9, &info), JPIP_OK);
    ck_assert_uint_eq(info.prefix, 0);
    ck_assert_uint_eq(info.ranges, 3);
    ck_assert_uint_eq(info.held, 10);
    ck_assert(info.length_known);
    ck_assert_uint_eq(info.length, 20);
    ck_assert(!info.complete);
    b.len = 0;
    add_msg(&b, &w, 0, 0, 9, 0, 6, 0, all);     /* overlaps [5,8) */
    add_msg(&b, &w, 0, 0, 9, 7, 9, 0, all + 7); /* bridges to 16, overlaps three */
    ck_assert_int_eq(jpip_reader_feed(r, b.p, b.len, &err), JPIP_OK);
    ck_assert_int_eq(jpip_cache_lookup(c, 0, 0, 9, &info), JPIP_OK);
    ck_assert_uint_eq(info.ranges, 1);
    ck_assert(info.complete);
    ck_assert_uint_eq(info.prefix, 20);
    ck_assert(memcmp(info.data, all, 20) == 0);
    /* a repeat changes nothing */
    b.len = 0;
    add_msg(&b, &w, 1, 0, 9, 3, 4, 0, all + 3);
    ck_assert_int_eq(jpip_reader_feed(r, b.p, b.len, &err), JPIP_OK);
    ck_assert_int_eq(jpip_cache_lookup(c, 0, 0, 9, &info), JPIP_OK);
    ck_assert_uint_eq(info.held, 20);
    ck_assert_int_eq(jpip_reader_finish(r, &err), JPIP_OK);
    ck_assert(!jpip_reader_eor(r, NULL));
    free(b.p);
}
END_TEST

START_TEST(empty_complete_bin)
{
    buf_t b = {0};
    jpip_jpp_writer_t w;
    jpip_cache_t *c = new_cache(NULL);
    jpip_reader_t *r = new_reader(c);
    jpip_err_t err;
    const unsigned char *d;
    apr_uint64_t len = 99;
    apr_size_t slen = 99;
    int complete = 0;

    jpip_jpp_writer_init(&w);
    add_msg(&b, &w, 2, 0, 4, 0, 0, 1, NULL); /* empty tile header */
    add_msg(&b, &w, 2, 0, 5, 0, 0, 0, NULL); /* nothing, not complete */
    ck_assert_int_eq(jpip_reader_feed(r, b.p, b.len, &err), JPIP_OK);
    ck_assert_int_eq(jpip_cache_get(c, 2, 0, 4, &d, &len, &complete), JPIP_OK);
    ck_assert_uint_eq(len, 0);
    ck_assert(complete);
    ck_assert_int_eq(jpip_cache_binsrc_get(c, 2, 0, 4, &d, &slen, &complete, &err), JPIP_OK);
    ck_assert_uint_eq(slen, 0);
    ck_assert_int_eq(jpip_cache_get(c, 2, 0, 5, &d, &len, &complete), JPIP_E_NOTFOUND);
    ck_assert_int_eq(jpip_cache_binsrc_get(c, 2, 0, 5, &d, &slen, &complete, &err),
                     JPIP_E_NOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "id 5"));
    ck_assert_int_eq(jpip_cache_binsrc_get(c, 2, 0, 4, &d, &slen, &complete, &err), JPIP_OK);
    free(b.p);
}
END_TEST

/* Every proper prefix of a valid stream: finish() is clean at message
 * boundaries and a FORMAT error inside a message; never a crash. */
START_TEST(every_truncation)
{
    buf_t b = {0};
    jpip_jpp_writer_t w;
    apr_size_t *bounds = NULL, nb = 0, t, bi = 0;
    unsigned char body[300];
    int k;

    rng_state = 77;
    for (k = 0; k < (int)sizeof(body); k++) {
        body[k] = (unsigned char)k;
    }
    jpip_jpp_writer_init(&w);
    bounds = malloc(64 * sizeof(*bounds));
    bounds[nb++] = 0;
    for (k = 0; k < 40; k++) {
        unsigned cls = families[rndn(5)] + (rndn(3) == 0 ? 1 : 0);
        if (cls == 3 || cls == 7 || cls == 9) {
            cls--;
        }
        add_msg(&b, &w, cls, rndn(2), rndn(k % 3 ? 100 : 1u << 30), rndn(1000), rndn(300), 0, body);
        bounds[nb++] = b.len;
    }
    add_eor(&b, JPIP_EOR_BYTE_LIMIT);
    for (t = 0; t <= b.len; t++) {
        jpip_cache_t *c;
        jpip_reader_t *r;
        jpip_err_t err;
        jpip_code_t rc;
        apr_pool_t *sub;
        int boundary;

        while (bi < nb && bounds[bi] < t) {
            bi++;
        }
        boundary = (bi < nb && bounds[bi] == t) || t == b.len;
        apr_pool_create(&sub, pool);
        ck_assert_int_eq(jpip_cache_create(&c, sub, NULL, &err), JPIP_OK);
        ck_assert_int_eq(jpip_reader_create(&r, c, sub, &err), JPIP_OK);
        ck_assert_int_eq(feed_chunks(r, b.p, t, t % 2, &err), JPIP_OK);
        rc = jpip_reader_finish(r, &err);
        if (boundary) {
            ck_assert_msg(rc == JPIP_OK, "prefix %u: %s", (unsigned)t, err.msg);
        } else {
            ck_assert_msg(rc == JPIP_E_FORMAT, "prefix %u accepted", (unsigned)t);
            ck_assert_ptr_nonnull(strstr(err.msg, "stream ends inside"));
            /* sticky */
            ck_assert_int_eq(jpip_reader_feed(r, b.p, 1, &err), JPIP_E_FORMAT);
        }
        ck_assert_int_eq(jpip_reader_eor(r, NULL), t == b.len);
        apr_pool_destroy(sub);
    }
    free(bounds);
    free(b.p);
}
END_TEST

START_TEST(random_garbage)
{
    jpip_cache_limits_t lim = {1000, 1 << 20, 1 << 16};
    unsigned char buf[4096];
    int it;

    rng_state = 12345;
    for (it = 0; it < 3000; it++) {
        apr_pool_t *sub;
        jpip_cache_t *c;
        jpip_reader_t *r;
        jpip_err_t err;
        apr_size_t n = (apr_size_t)rndn(sizeof(buf)), j;
        jpip_code_t rc;
        int mode = (int)rndn(3);

        for (j = 0; j < n; j++) {
            apr_uint64_t x = rnd();
            /* mode 1: mostly small bytes so that headers parse more often */
            buf[j] = (unsigned char)(mode == 1 ? (x & 0x8F) | 0x20 : x);
            if (mode == 2 && rndn(4) == 0) {
                buf[j] = 0x80;
            }
        }
        apr_pool_create(&sub, pool);
        ck_assert_int_eq(jpip_cache_create(&c, sub, &lim, &err), JPIP_OK);
        ck_assert_int_eq(jpip_reader_create(&r, c, sub, &err), JPIP_OK);
        rc = feed_chunks(r, buf, n, 0, &err);
        if (rc == JPIP_OK) {
            rc = jpip_reader_finish(r, &err);
        }
        ck_assert(rc == JPIP_OK || rc == JPIP_E_FORMAT || rc == JPIP_E_LIMIT);
        if (rc != JPIP_OK) {
            ck_assert(err.msg[0] != '\0');
        }
        apr_pool_destroy(sub);
    }
}
END_TEST

/* Feed raw bytes to a fresh reader; return the code of feed + finish. */
static jpip_code_t parse_raw(const unsigned char *p, apr_size_t n, const jpip_cache_limits_t *lim,
                             jpip_cache_t **cout, jpip_reader_t **rout, jpip_err_t *err)
{
    jpip_cache_t *c = new_cache(lim);
    jpip_reader_t *r = new_reader(c);
    jpip_code_t rc = jpip_reader_feed(r, p, n, err);

    if (rc == JPIP_OK) {
        rc = jpip_reader_finish(r, err);
    }
    if (cout) {
        *cout = c;
    }
    if (rout) {
        *rout = r;
    }
    return rc;
}

START_TEST(malformed_streams)
{
    jpip_err_t err;
    /* bb=00 with a non-zero first byte */
    static const unsigned char bb00[] = {0x0F, 0x00, 0x01, 0xAA};
    static const unsigned char bb00c[] = {0x80, 0x05, 0x00, 0x01, 0xAA};
    /* class 3 (reserved) */
    static const unsigned char cls3[] = {0x60, 0x03, 0x00, 0x00, 0x00};
    static const unsigned char cls9[] = {0x60, 0x09, 0x00, 0x00, 0x00};
    /* offset VBAS of 11 bytes 0xFF...: overflows */
    static const unsigned char ovf[] = {0x60, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0x00};
    /* offset 2^64-1 and length 1: offset + length overflows */
    static const unsigned char sum[] = {0x60, 0x00, 0x00, 0x81, 0xFF, 0xFF, 0xFF, 0xFF,
                                        0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0x01, 0xAA};
    /* two different lengths for one bin */
    static const unsigned char twolen[] = {0x71, 0x00, 0x00, 0x00, 0x01, 0xAA,
                                           0x31, 0x00, 0x02, 0xAA, 0xBB};
    /* bytes beyond the known length */
    static const unsigned char beyond[] = {0x71, 0x00, 0x00, 0x00, 0x01,
                                           0xAA, 0x21, 0x01, 0x01, 0xBB};
    /* data after the EOR */
    static const unsigned char after[] = {0x00, 0x02, 0x00, 0x60};

    ck_assert_int_eq(parse_raw(bb00, sizeof(bb00), NULL, NULL, NULL, &err), JPIP_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "bb=00"));
    ck_assert_int_eq(parse_raw(bb00c, sizeof(bb00c), NULL, NULL, NULL, &err), JPIP_E_FORMAT);
    ck_assert_int_eq(parse_raw(cls3, sizeof(cls3), NULL, NULL, NULL, &err), JPIP_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "class 3"));
    ck_assert_int_eq(parse_raw(cls9, sizeof(cls9), NULL, NULL, NULL, &err), JPIP_E_FORMAT);
    ck_assert_int_eq(parse_raw(ovf, sizeof(ovf), NULL, NULL, NULL, &err), JPIP_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "Msg-Offset VBAS overflows"));
    ck_assert_int_eq(parse_raw(sum, sizeof(sum), NULL, NULL, NULL, &err), JPIP_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "overflows"));
    ck_assert_int_eq(parse_raw(twolen, sizeof(twolen), NULL, NULL, NULL, &err), JPIP_E_FORMAT);
    ck_assert_int_eq(parse_raw(beyond, sizeof(beyond), NULL, NULL, NULL, &err), JPIP_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "beyond"));
    ck_assert_int_eq(parse_raw(after, sizeof(after), NULL, NULL, NULL, &err), JPIP_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "after the EOR"));
}
END_TEST

START_TEST(limits)
{
    jpip_err_t err;
    jpip_cache_limits_t lim = {2, 10, 5};
    /* a 6-byte message: above max_message 5 */
    static const unsigned char big[] = {0x60, 0x00, 0x00, 0x00, 0x06, 1, 2, 3, 4, 5, 6};
    /* three bins of 1 byte: above max_bins 2 */
    static const unsigned char bins3[] = {0x60, 0x00, 0x00, 0x00, 0x01, 1,    0x21,
                                          0x00, 0x01, 2,    0x22, 0x00, 0x01, 3};
    /* 3 x 4 bytes in one bin: above max_bytes 10 */
    static const unsigned char bytes[] = {0x60, 0x00, 0x00, 0x00, 0x04, 1, 2, 3,
                                          4,    0x20, 0x04, 0x04, 1,    2, 3, 4,
                                          0x20, 0x08, 0x04, 1,    2,    3, 4};
    /* the same bytes twice do not count twice */
    static const unsigned char again[] = {0x60, 0x00, 0x00, 0x00, 0x04, 1, 2, 3,
                                          4,    0x20, 0x00, 0x04, 1,    2, 3, 4,
                                          0x20, 0x04, 0x04, 1,    2,    3, 4};

    ck_assert_int_eq(parse_raw(big, sizeof(big), &lim, NULL, NULL, &err), JPIP_E_LIMIT);
    ck_assert_ptr_nonnull(strstr(err.msg, "Msg-Length"));
    ck_assert_int_eq(parse_raw(bins3, sizeof(bins3), &lim, NULL, NULL, &err), JPIP_E_LIMIT);
    ck_assert_int_eq(parse_raw(bytes, sizeof(bytes), &lim, NULL, NULL, &err), JPIP_E_LIMIT);
    ck_assert_int_eq(parse_raw(again, sizeof(again), &lim, NULL, NULL, &err), JPIP_OK);
}
END_TEST

START_TEST(non_minimal_vbas_and_initial_inheritance)
{
    jpip_err_t err;
    jpip_cache_t *c;
    jpip_cache_bin_t info;
    /* bb=01 first: class 0, csn 0 inherited from the initial state. Bin-ID
     * 5 written esajpip style (zero id bits, then a VBAS), offset 0 as
     * 80 80 00, length 2 as 80 02. */
    static const unsigned char s[] = {0xB0, 0x05, 0x80, 0x80, 0x00, 0x80, 0x02, 0xAA, 0xBB,
                                      /* bb=10: class 2, csn inherited (0), id 1 */
                                      0xD0, 0x01, 0x82 & 0x7F, 0x00, 0x01, 0xCC,
                                      /* bb=11 with csn 3, class 6 */
                                      0x70, 0x06, 0x03, 0x00, 0x01, 0xDD,
                                      /* bb=10 class 0: csn 3 inherited */
                                      0x50, 0x00, 0x00, 0x01, 0xEE,
                                      /* EOR 0xFF with a 3-byte body to skip */
                                      0x00, 0xFF, 0x03, 1, 2, 3};
    jpip_reader_t *r;
    unsigned reason;

    ck_assert_int_eq(parse_raw(s, sizeof(s), NULL, &c, &r, &err), JPIP_OK);
    ck_assert_int_eq(jpip_cache_lookup(c, 0, 0, 5, &info), JPIP_OK);
    ck_assert_uint_eq(info.prefix, 2);
    ck_assert(info.complete);
    ck_assert_int_eq(jpip_cache_lookup(c, 2, 0, 1, &info), JPIP_OK);
    ck_assert_uint_eq(info.prefix, 1);
    ck_assert_int_eq(jpip_cache_lookup(c, 6, 3, 0, &info), JPIP_OK);
    ck_assert_int_eq(jpip_cache_lookup(c, 0, 3, 0, &info), JPIP_OK);
    ck_assert_uint_eq(info.data[0], 0xEE);
    ck_assert(jpip_reader_eor(r, &reason));
    ck_assert_uint_eq(reason, 0xFF);
}
END_TEST

START_TEST(eor_and_next_response)
{
    static const unsigned reasons[] = {1, 2, 3, 4, 5, 6, 7, 0xFF};
    unsigned i;
    jpip_cache_t *c = new_cache(NULL);
    jpip_reader_t *r = new_reader(c);
    jpip_err_t err;
    unsigned reason;
    jpip_cache_bin_t info;

    for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        unsigned char e[3];
        /* each response: bb=01 message (class 0, csn 0 again), then the EOR */
        unsigned char m[] = {0x20, (unsigned char)i, 0x01, (unsigned char)(0x40 + i)};
        jpip_jpp_eor(reasons[i], e);
        ck_assert_int_eq(jpip_reader_feed(r, m, sizeof(m), &err), JPIP_OK);
        ck_assert(!jpip_reader_eor(r, NULL));
        ck_assert_int_eq(jpip_reader_feed(r, e, 3, &err), JPIP_OK);
        ck_assert(jpip_reader_eor(r, &reason));
        ck_assert_uint_eq(reason, reasons[i]);
        ck_assert_int_eq(jpip_reader_finish(r, &err), JPIP_OK);
        jpip_reader_next_response(r);
    }
    ck_assert_int_eq(jpip_cache_lookup(c, 0, 0, 0, &info), JPIP_OK);
    ck_assert_uint_eq(info.prefix, 8);
    ck_assert_uint_eq(info.data[7], 0x47);
}
END_TEST

START_TEST(model_string)
{
    buf_t b = {0};
    jpip_jpp_writer_t w;
    jpip_cache_t *c = new_cache(NULL);
    jpip_reader_t *r = new_reader(c);
    jpip_err_t err;
    const char *s;
    unsigned char body[64] = {0};

    ck_assert_int_eq(jpip_cache_model_string(c, pool, 0, &s, &err), JPIP_OK);
    ck_assert_str_eq(s, "");
    jpip_jpp_writer_init(&w);
    add_msg(&b, &w, 0, 0, 5, 0, 10, 0, body);
    add_msg(&b, &w, 0, 0, 1, 0, 10, 1, body);
    add_msg(&b, &w, 0, 0, 7, 4, 10, 1, body); /* no prefix: left out */
    add_msg(&b, &w, 6, 0, 0, 0, 20, 1, body);
    add_msg(&b, &w, 2, 0, 3, 0, 0, 1, body);
    add_msg(&b, &w, 8, 0, 0, 0, 30, 1, body);
    add_msg(&b, &w, 8, 0, 4, 0, 30, 0, body);
    add_msg(&b, &w, 6, 2, 0, 0, 20, 0, body);
    add_msg(&b, &w, 5, 2, 1, 0, 20, 1, body);
    ck_assert_int_eq(jpip_reader_feed(r, b.p, b.len, &err), JPIP_OK);
    ck_assert_int_eq(jpip_cache_model_string(c, pool, 0, &s, &err), JPIP_OK);
    ck_assert_str_eq(s, "M0,M4:30,[0],Hm,H3,P1,P5:10,[2],Hm:20,T1");
    ck_assert_int_eq(jpip_cache_model_string(c, pool, 12, &s, &err), JPIP_E_LIMIT);
    free(b.p);
}
END_TEST

static jpip_code_t count_visit(void *ctx, const jpip_cache_bin_t *bin, jpip_err_t *err)
{
    apr_uint64_t *prev = ctx;
    apr_uint64_t key = ((apr_uint64_t)bin->cls << 32) | bin->id;

    ck_assert_uint_gt(key, prev[0]);
    prev[0] = key;
    prev[1]++;
    return JPIP_OK;
}

START_TEST(iterate_sorted)
{
    buf_t b = {0};
    jpip_jpp_writer_t w;
    jpip_cache_t *c = new_cache(NULL);
    jpip_reader_t *r = new_reader(c);
    jpip_err_t err;
    unsigned char body[4] = {0};
    apr_uint64_t st[2] = {0, 0};
    int k;

    jpip_jpp_writer_init(&w);
    for (k = 99; k >= 0; k--) {
        add_msg(&b, &w, families[k % 5], 0, (apr_uint64_t)k + 1, 0, 4, 1, body);
    }
    ck_assert_int_eq(jpip_reader_feed(r, b.p, b.len, &err), JPIP_OK);
    ck_assert_int_eq(jpip_cache_iterate(c, pool, count_visit, st, &err), JPIP_OK);
    ck_assert_uint_eq(st[1], 100);
    free(b.p);
}
END_TEST

static Suite *client_suite(void)
{
    Suite *s = suite_create("client");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, worked_stream);
    tcase_add_test(tc, round_trip_complete);
    tcase_add_test(tc, round_trip_with_holes);
    tcase_add_test(tc, overlap_and_order);
    tcase_add_test(tc, empty_complete_bin);
    tcase_add_test(tc, every_truncation);
    tcase_add_test(tc, random_garbage);
    tcase_add_test(tc, malformed_streams);
    tcase_add_test(tc, limits);
    tcase_add_test(tc, non_minimal_vbas_and_initial_inheritance);
    tcase_add_test(tc, eor_and_next_response);
    tcase_add_test(tc, model_string);
    tcase_add_test(tc, iterate_sorted);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(client_suite, CK_ENV);
}
