/* mod_jpip: answering one JPIP request (T.808 Annex C and D; protocol
 * notes sections A to F), independent of any web server.
 *
 * jpip_serve_prepare takes a parsed request and the target's index and
 * decides everything about the answer: the HTTP status (200, or the error
 * with a sentence naming the problem), the media type, the JPIP-* response
 * headers that tell the client what was served whenever it differs from
 * what was asked, and the plan of messages (plan.h). A `roi` field sets
 * the window to the named region (roi.h) and is answered in JPIP-roi
 * (with JPIP-fsiz, JPIP-roff and JPIP-rsiz); an unknown name gets
 * "JPIP-roi: roi=no-roi", the window as asked, and the names on offer in
 * the EOR body. The web server glue
 * then only writes headers and streams the plan's messages.
 */
#ifndef JPIP_SERVE_H
#define JPIP_SERVE_H

#include <apr_pools.h>
#include <apr_tables.h>

#include "box.h"
#include "index.h"
#include "model.h"
#include "plan.h"
#include "request.h"
#include "roi.h"

typedef struct jpip_header_t {
    const char *name;
    const char *value;
} jpip_header_t;

typedef struct jpip_serve_opts_t {
    apr_uint64_t max_entries;     /* data-bins one response may involve (0: 1 << 22) */
    apr_size_t max_model_runs;    /* size bound of a stateless request's model (0: 65536) */
    apr_size_t max_model_items;   /* items of one model or need field (0: 65536) */
    apr_uint64_t max_codestreams; /* codestreams one request may name (0: 1024) */
    apr_uint64_t max_response;    /* message bytes of one response (0: no limit) */
} jpip_serve_opts_t;

/* What the server knows about the target. */
typedef struct jpip_serve_target_t {
    const jpip_index_t *ix;
    const jpip_box_layout_t *layout; /* boxes of a JP2-family file; NULL for raw codestreams */
    const char *tid;                 /* the target's current id */
    const jpip_rend_t *rend;         /* its rendition, or NULL */
    const jpip_roi_list_t *rois;     /* its named regions (roi.h), or NULL: none; needed only
                                        when a request has a `roi` field */
} jpip_serve_target_t;

typedef struct jpip_response_t {
    int status;                  /* HTTP status: 200, or jpip_err_status() of the refusal */
    const char *error;           /* for errors: what was wrong */
    const char *content_type;    /* image/jpp-stream or image/jpt-stream */
    apr_array_header_t *headers; /* of jpip_header_t: the JPIP-* headers */
    jpip_plan_t *plan;           /* the messages (status 200) */
    int jpt;                     /* JPT-stream */
    const jpip_rend_t *rend;     /* the rendition messages may come from, or NULL */
    int covers_target;           /* a complete plan leaves the client holding everything */
    jpip_limit_t limit;          /* for a limit's status (413): which one */
    const char *eor_body;        /* a sentence for humans in the EOR's body, or NULL */
} jpip_response_t;

/* Prepare the answer to req. session_model is the session's cache model
 * (NULL for a stateless request: the model comes from the request's
 * model/need fields). Request-level problems are answered through
 * resp->status and resp->error (and resp->limit) with JPIP_OK returned; a
 * non-OK return is a server failure (JPIP_E_NOMEM) described by err. */
jpip_code_t jpip_serve_prepare(apr_pool_t *pool, const jpip_serve_target_t *tgt,
                               const jpip_request_t *req, const jpip_model_t *session_model,
                               const jpip_serve_opts_t *opts, jpip_response_t *resp,
                               jpip_err_t *err);

/* The EOR reason once the plan is exhausted: 1 when the client now holds
 * the whole target, else what the plan says (2, or 4 when len ran out). */
unsigned jpip_serve_eor(const jpip_response_t *resp);

/* The EOR message that ends a prepared response with reason: 00, reason,
 * and the EOR body (resp->eor_body, or nothing), allocated from pool;
 * jpip_serve_eor_len is its length, for Content-Length before the plan
 * has run. */
const unsigned char *jpip_serve_eor_msg(apr_pool_t *pool, const jpip_response_t *resp,
                                        unsigned reason, apr_size_t *len);
apr_size_t jpip_serve_eor_len(const jpip_response_t *resp);

/* Write the whole body of a prepared response (its messages, then the EOR)
 * through write, reading file bytes from src: for tests and tools; the
 * module streams file buckets instead. */
typedef jpip_code_t (*jpip_serve_write_fn)(void *ctx, const void *data, apr_size_t len,
                                           jpip_err_t *err);
jpip_code_t jpip_serve_stream(apr_pool_t *pool, const jpip_response_t *resp, const jpip_index_t *ix,
                              jpip_src_t *src, jpip_serve_write_fn write, void *wctx,
                              jpip_err_t *err);

/* The model resolver over an index (for :L qualifiers and implicit
 * precinct descriptors). */
void jpip_serve_resolver(const jpip_index_t *ix, jpip_model_resolver_t *res);

/* The fields this server handles, for JPIP-handled. */
const char *jpip_serve_handled(void);

#endif /* JPIP_SERVE_H */
