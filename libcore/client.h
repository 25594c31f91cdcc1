/* mod_jpip: the client side of JPP-streams and JPT-streams.
 *
 * A reader parses a JPP- or JPT-stream (protocol doc C) incrementally: the
 * bytes may be fed in chunks of any size as they come off a socket, and a
 * message split across chunks is reassembled. Every VBAS is accepted at
 * any length (non-minimal ones too) as long as its value fits in 64 bits.
 * Class and CSn absent from a message header are inherited from the
 * previous message of the same response; a response starts with class 0,
 * CSn 0. The End-Of-Response message ends the response and its reason is
 * reported.
 *
 * The messages feed a data-bin cache. Bins are keyed by (class family,
 * CSn, id): extended classes share the bytes of their plain class (1 is
 * kept as 0, 5 as 4) and metadata-bins (class 8) are not codestream
 * qualified, so they are kept under CSn 0 whatever the message said.
 * Messages may arrive in any order and overlap; each bin keeps a sorted
 * list of the byte ranges it holds, and its usable bytes are the
 * contiguous prefix from offset 0. A bin's length is known once a message
 * with the c bit arrived (length = offset + length of that message).
 *
 * The cache is bounded (bins, bytes, single message length); exceeding a
 * bound is JPIP_E_LIMIT. A malformed stream is JPIP_E_FORMAT. After an
 * error the reader refuses further input (the error is sticky); the cache
 * keeps what was stored before the error.
 */
#ifndef JPIP_CLIENT_H
#define JPIP_CLIENT_H

#include <apr_pools.h>

#include "jpip_err.h"

typedef struct jpip_cache_t jpip_cache_t;
typedef struct jpip_reader_t jpip_reader_t;

/* Bounds on what a server can make the cache hold (0 = default). */
typedef struct jpip_cache_limits_t {
    apr_uint64_t max_bins;    /* distinct data-bins (default 1 << 22) */
    apr_uint64_t max_bytes;   /* bytes held over all bins (default 4 GiB) */
    apr_uint64_t max_message; /* Msg-Length of one message (default 1 GiB) */
} jpip_cache_limits_t;

/* Counters over everything the readers of a cache parsed. Per-class
 * counters are indexed by the class as sent (0..8); other classes never
 * reach the cache. */
typedef struct jpip_cache_stats_t {
    apr_uint64_t messages;     /* data messages */
    apr_uint64_t header_bytes; /* bytes of data message headers */
    apr_uint64_t body_bytes;   /* body bytes received (overlaps counted) */
    apr_uint64_t eors;         /* EOR messages */
    apr_uint64_t bins;         /* distinct bins in the cache */
    apr_uint64_t held_bytes;   /* distinct bytes held over all bins */
    apr_uint64_t class_messages[9];
    apr_uint64_t class_bytes[9]; /* body bytes per class */
} jpip_cache_stats_t;

/* One bin as the cache holds it. data/prefix stay valid until the bin
 * receives more bytes or the cache's pool is destroyed. */
typedef struct jpip_cache_bin_t {
    unsigned cls;              /* class family: 0, 2, 4, 6 or 8 */
    apr_uint64_t csn;          /* 0 for metadata-bins */
    apr_uint64_t id;           /* in-class id */
    const unsigned char *data; /* the contiguous prefix from offset 0 (NULL if none) */
    apr_uint64_t prefix;       /* its length */
    apr_uint64_t held;         /* distinct bytes held, prefix or not */
    apr_size_t ranges;         /* number of disjoint byte ranges held */
    int length_known;          /* a message with the c bit arrived */
    apr_uint64_t length;       /* the bin's length when length_known, else 0 */
    int complete;              /* length_known and prefix == length */
} jpip_cache_bin_t;

/* Create an empty cache in pool (limits may be NULL for the defaults).
 * Bin storage is released when pool is destroyed. */
jpip_code_t jpip_cache_create(jpip_cache_t **cache, apr_pool_t *pool,
                              const jpip_cache_limits_t *limits, jpip_err_t *err);

/* Look up bin (cls, csn, id); cls 1 and 5 find 0 and 4, csn is ignored for
 * metadata-bins. JPIP_OK and *bin filled, or JPIP_E_NOTFOUND when the
 * cache holds nothing of it. */
jpip_code_t jpip_cache_lookup(const jpip_cache_t *cache, unsigned cls, apr_uint64_t csn,
                              apr_uint64_t id, jpip_cache_bin_t *bin);

/* The usable bytes of a bin: JPIP_OK with *data, *len the contiguous
 * prefix (possibly empty) and *complete whether it is the whole bin;
 * JPIP_E_NOTFOUND when nothing of the bin is held. */
jpip_code_t jpip_cache_get(const jpip_cache_t *cache, unsigned cls, apr_uint64_t csn,
                           apr_uint64_t id, const unsigned char **data, apr_uint64_t *len,
                           int *complete);

/* The same with the signature of jpip_binsrc_t.get (rebuild.h): ctx is the
 * cache. JPIP_E_NOTFOUND (with a message) also when the prefix is empty,
 * and JPIP_E_LIMIT if the prefix does not fit in apr_size_t. */
jpip_code_t jpip_cache_binsrc_get(void *ctx, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                                  const unsigned char **data, apr_size_t *len, int *complete,
                                  jpip_err_t *err);

/* Visit every bin in increasing (class, csn, id) order; stop early and
 * return visit's code when it is not JPIP_OK. Scratch from pool. The cache
 * must not change during the walk. */
typedef jpip_code_t (*jpip_cache_visit_fn)(void *ctx, const jpip_cache_bin_t *bin, jpip_err_t *err);
jpip_code_t jpip_cache_iterate(const jpip_cache_t *cache, apr_pool_t *pool,
                               jpip_cache_visit_fn visit, void *ctx, jpip_err_t *err);

/* Counters so far. */
void jpip_cache_stats(const jpip_cache_t *cache, jpip_cache_stats_t *stats);

/* Describe what the cache holds as the value of a `model=` field (doc
 * E.4), allocated from pool: metadata-bins first (M<id>), then per
 * codestream a qualifier [<csn>] followed by Hm, H<t>, T<t>, P<I>; a bin
 * whose prefix is not the whole bin gets :<prefix bytes>, a bin with no
 * prefix is left out. "" when nothing is held. JPIP_E_LIMIT when the value
 * would be longer than max_len (0: no bound). */
jpip_code_t jpip_cache_model_string(const jpip_cache_t *cache, apr_pool_t *pool, apr_size_t max_len,
                                    const char **out, jpip_err_t *err);

/* Create a reader that stores into cache. Allocation from pool. */
jpip_code_t jpip_reader_create(jpip_reader_t **reader, jpip_cache_t *cache, apr_pool_t *pool,
                               jpip_err_t *err);

/* Parse the next len bytes of the stream. JPIP_E_FORMAT for a malformed
 * stream (bb=00 in a data message, reserved class 3 or 7, unknown class
 * above 8, a VBAS overflowing 64 bits, offset + length overflowing, data
 * beyond a bin's known length or two different lengths for one bin, bytes
 * after the EOR), JPIP_E_LIMIT when a cache bound is hit, JPIP_E_NOMEM.
 * Body bytes are stored as they arrive; a message's c bit takes effect
 * when its last body byte arrived. */
jpip_code_t jpip_reader_feed(jpip_reader_t *reader, const void *data, apr_size_t len,
                             jpip_err_t *err);

/* End of input. JPIP_OK if the stream stopped between messages (with or
 * without an EOR: check jpip_reader_eor), JPIP_E_FORMAT naming where if
 * it stopped inside a message, or the sticky error of an earlier feed. */
jpip_code_t jpip_reader_finish(jpip_reader_t *reader, jpip_err_t *err);

/* 1 and *reason set if the EOR message of the current response was read
 * (its body, if any, skipped); 0 otherwise. reason may be NULL. */
int jpip_reader_eor(const jpip_reader_t *reader, unsigned *reason);

/* Start a new response on the same reader and cache: inheritance resets to
 * class 0, CSn 0 and the EOR flag clears. A sticky error is kept. */
void jpip_reader_next_response(jpip_reader_t *reader);

/* Total bytes consumed by the reader so far. */
apr_uint64_t jpip_reader_consumed(const jpip_reader_t *reader);

#endif /* JPIP_CLIENT_H */
