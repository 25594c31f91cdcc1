/* mod_jpip: planning a JPP/JPT response.
 *
 * A plan is the ordered list of messages one response sends: the
 * metadata the client needs first, then the main header of each
 * codestream and the tile headers of the tiles the view meets, then the
 * image data quality layer by quality layer, the lowest resolutions first
 * within each layer, so that a response cut short by `len` is the best
 * picture for its size; then metadata asked for without priority. What the
 * client's cache model already holds is never sent.
 *
 * The plan holds one small record per data-bin involved (not per byte or
 * per message): its memory grows with the view, never with the response.
 * Messages are produced on demand in batches, each with its header bytes
 * written (the header's inheritance state is the plan's own), so the plan
 * can be run once to learn the exact response size (Content-Length) and
 * then again, after jpip_plan_rewind, to send it.
 */
#ifndef JPIP_PLAN_H
#define JPIP_PLAN_H

#include <apr_pools.h>

#include "index.h"
#include "jpp.h"
#include "model.h"
#include "rendition.h"
#include "view.h"

typedef struct jpip_plan_opts_t {
    int jpt;                  /* JPT-stream: tile data-bins instead of precincts */
    int extended;             /* extended classes (1, 5) with Aux */
    int has_len;              /* len given: a hard limit on message bytes */
    apr_uint64_t len;         /* headers and bodies of the messages, not the EOR */
    int align;                /* cut precinct messages only at packet boundaries */
    int whole_bins;           /* no layer interleaving: each bin's layers in one message
                                 (fewer, larger messages when nothing will cut the answer) */
    apr_uint64_t max_entries; /* most data-bins one plan may involve (0: 1 << 24) */
    const jpip_rend_t *rend;  /* the target's rendition, or NULL */
    /* turns the model's layer counts into bytes (NULL: a layer count is
     * nothing held); must live as long as the plan */
    const jpip_model_resolver_t *res;
} jpip_plan_opts_t;

/* One message of the response. Its body is bytes [off, off+len) of the
 * data-bin; jpip_plan_pieces says where they are. When rend_off is not
 * JPIP_REND_NONE the whole message, header and body (hdr_len + len bytes),
 * is that range of the rendition instead, and hdr is not written.
 *
 * A run (count > 1, always from the rendition) stands for count whole-bin
 * precinct messages back to back: those of bins bin, bin + 1, ... with
 * ids id, id + step, ...; hdr_len is 0 and len the bytes of all of them,
 * headers included. */
typedef struct jpip_msg_t {
    unsigned cls; /* as sent (1 or 5 when extended) */
    apr_uint64_t csn;
    apr_uint64_t id;
    apr_uint64_t off;
    apr_uint64_t len;
    int complete;          /* the message holds the bin's last byte */
    unsigned layers;       /* precinct bins: off+len ends the first `layers` layers (0: not) */
    const jpip_bin_t *bin; /* the bin in the index */
    apr_uint64_t rend_off;
    apr_uint32_t count; /* messages this one stands for: 1, or a run */
    apr_uint64_t step;  /* a run: between the ids of neighbours */
    unsigned hdr_len;
    unsigned char hdr[JPIP_JPP_HEADER_MAX];
} jpip_msg_t;

typedef struct jpip_plan_t jpip_plan_t;

/* Start a plan over ix. model (may be NULL: the client holds nothing) is
 * only read, while bins are added; the caller records what was actually
 * sent in its own model afterwards. */
jpip_code_t jpip_plan_create(jpip_plan_t **plan, apr_pool_t *pool, const jpip_index_t *ix,
                             const jpip_model_t *model, const jpip_plan_opts_t *opts,
                             jpip_err_t *err);

/* Bytes [off, off+len) of metadata-bin id (clipped to the bin). priority:
 * before the image data, else after it. The same range added twice is sent
 * once. */
jpip_code_t jpip_plan_add_meta(jpip_plan_t *plan, apr_uint64_t id, apr_uint64_t off,
                               apr_uint64_t len, int priority, jpip_err_t *err);

/* Messages of metadata-bin id end at these offsets (ends[0 .. n), in
 * increasing order: the end of each box carried at the top of the bin),
 * so that each message carries one box or placeholder (or the part of one
 * that a range or len leaves), as clients that read one box per message
 * need. ends must outlive the plan. Without a call, a range goes out as
 * one message. */
jpip_code_t jpip_plan_meta_ends(jpip_plan_t *plan, apr_uint64_t id, const apr_uint64_t *ends,
                                apr_size_t n, jpip_err_t *err);

/* Everything the view needs: the main header of its codestream (always),
 * the tile headers and precincts (JPP) or tiles (JPT) it meets, up to its
 * layer limit. */
jpip_code_t jpip_plan_add_view(jpip_plan_t *plan, const jpip_view_t *view, jpip_err_t *err);

/* Start again from the first message (after a dry run). */
void jpip_plan_rewind(jpip_plan_t *plan);

/* Produce up to max next messages into out; *n is how many records of
 * out were filled (0 at the end), standing for at most max messages in
 * all (the sum of their counts). Stops early when len is exhausted. */
jpip_code_t jpip_plan_next(jpip_plan_t *plan, jpip_msg_t *out, apr_size_t max, apr_size_t *n,
                           jpip_err_t *err);

/* After jpip_plan_next returned 0 messages: the EOR reason
 * (JPIP_EOR_BYTE_LIMIT if len stopped it, else JPIP_EOR_WINDOW_DONE), and
 * the bytes of all messages produced since the last rewind. */
unsigned jpip_plan_eor(const jpip_plan_t *plan);
apr_uint64_t jpip_plan_bytes(const jpip_plan_t *plan);

/* Bins involved in the plan, and whether the client will hold every one of
 * them completely once the plan has been sent in full. */
apr_uint64_t jpip_plan_nbins(const jpip_plan_t *plan);

/* Call emit for each run of file bytes (or index bytes: synth != NULL)
 * that make up the body of msg, in order. */
typedef jpip_code_t (*jpip_plan_emit_fn)(void *ctx, apr_uint64_t file_off, apr_uint64_t len,
                                         const unsigned char *synth, jpip_err_t *err);
jpip_code_t jpip_plan_pieces(const jpip_index_t *ix, const jpip_msg_t *msg, jpip_plan_emit_fn emit,
                             void *ctx, jpip_err_t *err);

#endif /* JPIP_PLAN_H */
