/* mod_jpip: the server's cache model of a session, and the grammar of the
 * `model=` and `need=` request fields (protocol doc E.3, E.4).
 *
 * Grammar. jpip_model_parse turns a field value into a list of typed items:
 * codestream qualifiers ("[0]", "[1-3;5]", "[2-]", "[*]", applying to every
 * later item; default codestream 0), explicit bins (Hm, H<t>, P<I>, T<t>,
 * M<n>, each uid a number, a range "a-b" of numbers, or "*"; OpenHTJ2K's
 * "Ht<t>" and "Hp<I>" are read as H<t> and P<I>) with an optional ":<bytes>" or
 * ":L<layers>" qualifier, and implicit descriptors (t/c/r/p, each a number,
 * a range a-b or "*", in any order, each at most once) with an optional
 * ":L<layers>". A leading "-" makes an item subtractive; `need` forbids it.
 * Errors are JPIP_E_REQUEST with the field name, the position (0-based
 * offset in the value) and what was wrong; more than max_items items
 * (qualifier ranges included) is JPIP_E_LIMIT.
 *
 * Cache model. A jpip_model_t records, for every data-bin (class, csn, id),
 * how much of the bin the client holds: a number of leading bytes,
 * JPIP_MODEL_COMPLETE (the whole bin), or, for precinct bins,
 * JPIP_MODEL_LAYERS(L): exactly the bin's first L layers, however many
 * bytes that is in each bin. It is a sorted list of runs: consecutive ids
 * of one class and codestream holding the same value. Ids not in any run
 * hold the model's default: 0 for an ordinary model, everything for an
 * inverted one (stateless `need` requests: the client holds all but the
 * exceptions). So the model grows with the number of distinct runs the
 * session produced, not with the image: adding a million consecutive
 * complete bins is one run, and so is sending a million bins their first
 * layer (in bytes each bin would be a run of its own). Classes 1 and 5 are
 * recorded as 0 and 4 (same bytes); metadata-bins (class 8) are not
 * codestream-qualified and are recorded under csn 0.
 *
 * Layers become bytes through a resolver (jpip_model_resolver_t's
 * layer_bytes): every operation that compares or reports held bytes takes
 * one. Without it (NULL) a layer count counts as nothing held, which only
 * ever lowers what is held: the server sends those bytes again, never
 * omits any.
 *
 * The model is ONE flat, position-independent buffer (a header then an
 * array of fixed-size runs, native byte order, no pointers), so it can live
 * in shared memory and be operated on in place. Its capacity is fixed when
 * it is created; an operation that would need more runs fails with
 * JPIP_E_LIMIT and leaves the model unchanged. The buffer must be 8-byte
 * aligned. Callers serialise access (the session store's mutex).
 */
#ifndef JPIP_MODEL_H
#define JPIP_MODEL_H

#include <apr_pools.h>

#include "jpip_err.h"

#define JPIP_MODEL_COMPLETE (~(apr_uint64_t)0) /* held bytes: the whole bin */
#define JPIP_MODEL_END (~(apr_uint64_t)0)      /* open end of a range */
#define JPIP_MODEL_MAX_ITEMS 65536             /* default item bound of the parser */
#define JPIP_MODEL_MAX_LAYERS 65535
/* the held value "the first l layers" (1 <= l <= JPIP_MODEL_MAX_LAYERS) */
#define JPIP_MODEL_LAYERS(l) (((apr_uint64_t)1 << 62) | (apr_uint64_t)(l))

/* ---- grammar ------------------------------------------------------- */

typedef struct jpip_model_range_t {
    apr_uint64_t first, last; /* inclusive; last JPIP_MODEL_END for "a-" and "*" */
} jpip_model_range_t;

typedef enum {
    JPIP_MODEL_ITEM_MAIN,     /* Hm: main header (class 6, id 0) */
    JPIP_MODEL_ITEM_TILEHDR,  /* H<t>: tile header (class 2) */
    JPIP_MODEL_ITEM_PRECINCT, /* P<I>: precinct (class 0) */
    JPIP_MODEL_ITEM_TILE,     /* T<t>: tile (class 4) */
    JPIP_MODEL_ITEM_META,     /* M<n>: metadata-bin (class 8) */
    JPIP_MODEL_ITEM_IMPLICIT  /* t.. c.. r.. p..: precincts by position */
} jpip_model_kind_t;

typedef enum {
    JPIP_MODEL_QUAL_NONE,  /* the whole bin */
    JPIP_MODEL_QUAL_BYTES, /* :<bytes> */
    JPIP_MODEL_QUAL_LAYERS /* :L<layers> */
} jpip_model_qual_t;

typedef struct jpip_model_item_t {
    jpip_model_kind_t kind;
    int subtract;         /* "-" */
    int all;              /* uid "*" (explicit kinds) */
    apr_uint64_t id;      /* uid (explicit kinds, unless all) */
    apr_uint64_t id_last; /* last uid of a range "a-b" (= id for one bin) */
    jpip_model_qual_t qual;
    apr_uint64_t bytes;            /* JPIP_MODEL_QUAL_BYTES */
    unsigned layers;               /* JPIP_MODEL_QUAL_LAYERS */
    jpip_model_range_t t, c, r, p; /* implicit; an absent letter is 0..END */
    const jpip_model_range_t *cs;  /* codestreams in force (never NULL) */
    apr_size_t ncs;
    apr_size_t pos; /* offset of the item in the field value */
} jpip_model_item_t;

typedef struct jpip_model_spec_t {
    int need; /* parsed as `need` */
    apr_size_t nitems;
    jpip_model_item_t *items; /* codestream qualifiers are folded into items */
} jpip_model_spec_t;

/* Parse a model (need = 0) or need (need = 1) field value (already
 * percent-decoded) into *spec, allocated from pool. max_items 0 means
 * JPIP_MODEL_MAX_ITEMS. An empty value is an error. */
jpip_code_t jpip_model_parse(apr_pool_t *pool, const char *value, int need, apr_size_t max_items,
                             jpip_model_spec_t **spec, jpip_err_t *err);

/* ---- the model ----------------------------------------------------- */

typedef struct jpip_model_t jpip_model_t;
typedef struct jpip_model_resolver_t jpip_model_resolver_t; /* below */

/* One run: ids first..last of (cls, csn) hold bytes each (a byte count,
 * JPIP_MODEL_COMPLETE or JPIP_MODEL_LAYERS(L), as recorded). */
typedef struct jpip_model_run_t {
    unsigned cls;
    apr_uint64_t csn, first, last, bytes;
} jpip_model_run_t;

/* Buffer size needed for a model of up to runs runs. */
apr_size_t jpip_model_bytes_for(apr_size_t runs);

/* Make buf (size bytes, 8-byte aligned) an empty model; inverted models
 * hold everything by default. The capacity is what fits in size.
 * JPIP_E_LIMIT if size cannot hold the header and one run. */
jpip_code_t jpip_model_init(void *buf, apr_size_t size, int inverted, jpip_model_t **m,
                            jpip_err_t *err);

/* jpip_model_init on a buffer of jpip_model_bytes_for(max_runs) from pool. */
jpip_code_t jpip_model_create(apr_pool_t *pool, apr_size_t max_runs, int inverted, jpip_model_t **m,
                              jpip_err_t *err);

/* Forget everything (keeping the capacity) and set the default. */
void jpip_model_clear(jpip_model_t *m, int inverted);

int jpip_model_inverted(const jpip_model_t *m);
apr_size_t jpip_model_runs(const jpip_model_t *m);     /* runs in use */
apr_size_t jpip_model_capacity(const jpip_model_t *m); /* runs that fit */

/* Bytes jpip_model_serialize writes: the header plus the runs in use. */
apr_size_t jpip_model_size(const jpip_model_t *m);

/* Copy the model's used part to buf. JPIP_E_LIMIT if cap < size. */
jpip_code_t jpip_model_serialize(const jpip_model_t *m, void *buf, apr_size_t cap, apr_size_t *len,
                                 jpip_err_t *err);

/* Check that data (len bytes, untrusted: e.g. from a shared segment or a
 * cache server) is a well-formed serialised model and copy it into buf
 * (size bytes, 8-byte aligned), whose size sets the capacity. data and buf
 * may be the same. JPIP_E_FORMAT naming the defect; JPIP_E_LIMIT if it
 * does not fit. */
jpip_code_t jpip_model_load(void *buf, apr_size_t size, const void *data, apr_size_t len,
                            jpip_model_t **m, jpip_err_t *err);

/* Copy src into dst's buffer (dst keeps its own capacity). JPIP_E_LIMIT if
 * the runs do not fit. */
jpip_code_t jpip_model_copy(jpip_model_t *dst, const jpip_model_t *src, jpip_err_t *err);

/* Run i (0 <= i < jpip_model_runs) in order of (class, csn, first id). */
void jpip_model_run(const jpip_model_t *m, apr_size_t i, jpip_model_run_t *run);

/* Leading bytes of bin (cls, csn, id) the client holds; JPIP_MODEL_COMPLETE
 * when it holds the whole bin. A layer count is resolved through res. */
apr_uint64_t jpip_model_held(const jpip_model_t *m, const jpip_model_resolver_t *res, unsigned cls,
                             apr_uint64_t csn, apr_uint64_t id);

/* jpip_model_held of the n bins (cls, csn, id + k * step), k < n, into
 * held[k]: one search and one walk over the runs they span, not a search
 * per bin. */
void jpip_model_held_row(const jpip_model_t *m, const jpip_model_resolver_t *res, unsigned cls,
                         apr_uint64_t csn, apr_uint64_t id, apr_uint64_t step, apr_size_t n,
                         apr_uint64_t *held);

/* Record that the client holds the first upto bytes of the bin (the whole
 * bin if complete); held bytes never decrease here. JPIP_E_LIMIT (model
 * unchanged) when the runs would exceed the capacity. */
jpip_code_t jpip_model_add(jpip_model_t *m, const jpip_model_resolver_t *res, unsigned cls,
                           apr_uint64_t csn, apr_uint64_t id, apr_uint64_t upto, int complete,
                           jpip_err_t *err);

/* One message sent to the client: bytes [off, off+len) of a bin; complete
 * when it holds the bin's last byte; layers (precinct bins, 0 if not)
 * when off+len is exactly the end of the bin's first `layers` layers:
 * then the model records the layer count, not the byte count. */
typedef struct jpip_model_sent_t {
    unsigned cls;
    apr_uint64_t csn, id, off, len;
    int complete;
    unsigned layers;
} jpip_model_sent_t;

/* Record the messages of a response (or one batch of it) in m, in one pass
 * over the model: O(runs + n log s) for n messages that come in s
 * ascending stretches, not a search and shift per message.
 * Same outcome as jpip_model_add(m, cls, csn, id, off + len, complete) for
 * each message in order, except that a range which would leave a hole
 * (off beyond what is held) is skipped, since the model cannot express it.
 * All or nothing: JPIP_E_LIMIT (m unchanged) when the runs would exceed
 * the capacity; JPIP_E_NOMEM if the scratch copy cannot be allocated. */
jpip_code_t jpip_model_record(jpip_model_t *m, const jpip_model_resolver_t *res,
                              const jpip_model_sent_t *sent, apr_size_t n, jpip_err_t *err);

/* The same in two steps: jpip_model_batch_make copies and sorts the
 * messages (O(n log s), no model needed), jpip_model_record_batch merges
 * them into m (O(runs + n)). A
 * batch is recorded once, then freed with jpip_model_batch_free (NULL is
 * fine). */
typedef struct jpip_model_batch_t jpip_model_batch_t;
jpip_code_t jpip_model_batch_make(jpip_model_batch_t **b, const jpip_model_sent_t *sent,
                                  apr_size_t n, jpip_err_t *err);
jpip_code_t jpip_model_record_batch(jpip_model_t *m, const jpip_model_resolver_t *res,
                                    jpip_model_batch_t *b, jpip_err_t *err);
void jpip_model_batch_free(jpip_model_batch_t *b);

/* Recording a response whose runs may not fit (sessions): while they
 * surely fit in m (its runs plus two per message of the batch), b is
 * recorded in m; from the first batch that might not, m's runs go to a
 * *spill model in process memory (malloc'd, grown as needed) and this and
 * later batches of the response are recorded there, so that no message
 * of the response is lost to a full model half way (a later message of a
 * bin extends what an earlier one left). jpip_model_unspill ends the
 * response: the spill's runs go back to m, and when they do not fit,
 * what they say about partly held bins is forgotten (those bins hold
 * nothing again), then, if need be, the last complete runs, until they
 * fit. It returns the bins forgotten and frees the spill (NULL: nothing
 * to do). Forgetting only lowers what is held, so the server at worst
 * sends bytes again, never omits any; and a model whose bins are all
 * complete is a run per class and codestream however many bins the image
 * has, so a session that grows to the whole image ends small. Inverted
 * models never spill. */
jpip_code_t jpip_model_record_spill(jpip_model_t *m, const jpip_model_resolver_t *res,
                                    jpip_model_t **spill, jpip_model_batch_t *b, jpip_err_t *err);
apr_uint64_t jpip_model_unspill(jpip_model_t *m, jpip_model_t *spill);

/* held = max(held, bytes) for ids first..last (first <= last). bytes
 * may be JPIP_MODEL_LAYERS(L). Where the order of a layer count and a
 * byte count differs from bin to bin and the range is more than one bin,
 * what was held stays (an addition never needs to be recorded). */
jpip_code_t jpip_model_add_range(jpip_model_t *m, const jpip_model_resolver_t *res, unsigned cls,
                                 apr_uint64_t csn, apr_uint64_t first, apr_uint64_t last,
                                 apr_uint64_t bytes, jpip_err_t *err);

/* held = min(held, keep) for ids first..last: the client discarded the
 * rest (keep 0: the whole bins). Where a layer count and a byte count
 * order differently from bin to bin, the bins of a range of more than one
 * hold nothing after it (lower is safe). */
jpip_code_t jpip_model_cut_range(jpip_model_t *m, const jpip_model_resolver_t *res, unsigned cls,
                                 apr_uint64_t csn, apr_uint64_t first, apr_uint64_t last,
                                 apr_uint64_t keep, jpip_err_t *err);

/* Drop every run of codestream csn (all classes but metadata): its bins
 * return to the default (for mset). Never needs room. */
void jpip_model_forget_codestream(jpip_model_t *m, apr_uint64_t csn);

/* What the server knows about the target, to resolve :L qualifiers and
 * implicit descriptors. Every callback may be NULL: the model then stays
 * on the safe side (an addition it cannot resolve is ignored; a
 * subtraction or need it cannot resolve drops the whole class of the
 * codestream, e.g. every precinct). */
typedef jpip_code_t (*jpip_model_visit_fn)(void *vctx, apr_uint64_t precinct_id, jpip_err_t *err);

struct jpip_model_resolver_t {
    void *ctx;
    /* codestreams in the target: qualifier ranges are clipped to it
     * (0 means 1) */
    apr_uint64_t codestreams;
    /* bytes of the first `layers` layers of a precinct bin;
     * JPIP_MODEL_COMPLETE if that is the whole bin; 0 if unknown */
    apr_uint64_t (*layer_bytes)(void *ctx, apr_uint64_t csn, apr_uint64_t precinct_id,
                                unsigned layers);
    /* call visit(vctx, I, err) for every precinct id I of codestream csn
     * whose tile, component, resolution and precinct-in-resolution index
     * lie in the ranges (last may be JPIP_MODEL_END); stop and return the
     * first non-OK code visit returns */
    jpip_code_t (*implicit)(void *ctx, apr_uint64_t csn, const jpip_model_range_t *t,
                            const jpip_model_range_t *c, const jpip_model_range_t *r,
                            const jpip_model_range_t *p, jpip_model_visit_fn visit, void *vctx,
                            jpip_err_t *err);
    /* bound on precinct ids and (item, codestream) pairs one apply may
     * visit (0: 1 << 22); beyond it JPIP_E_LIMIT */
    apr_uint64_t max_visits;
};

/* Apply a parsed field to m, all or nothing (on error m is unchanged).
 * model items: additive raise what is held (no qualifier: complete),
 * subtractive lower it ("-P5": nothing of P5; "-P5:100": at most 100
 * bytes; "-P5:L2": at most two layers, recorded as a layer count). need
 * items: the client lacks the bin, held becomes 0 (a need qualifier is
 * not used to keep bytes, which is safe: the server sends from the start
 * of the bin). res may be NULL. The scratch copy is malloc'd and freed
 * here. */
jpip_code_t jpip_model_apply(jpip_model_t *m, const jpip_model_spec_t *spec,
                             const jpip_model_resolver_t *res, jpip_err_t *err);

/* The model of a stateless request (doc E.5) in a new buffer from pool of
 * at most max_runs runs: when need is given, everything minus the need
 * items (an inverted model), else nothing; then the model items applied.
 * model and need may each be NULL. */
jpip_code_t jpip_model_build(apr_pool_t *pool, apr_size_t max_runs, const jpip_model_spec_t *model,
                             const jpip_model_spec_t *need, const jpip_model_resolver_t *res,
                             jpip_model_t **m, jpip_err_t *err);

#endif /* JPIP_MODEL_H */
