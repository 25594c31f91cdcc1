/* mod_jpip: a request on a session channel, the httpd side (sessions.c).
 *
 * The handler asks this layer for the channel's target, opens channels
 * (cnew), takes its turn on the session, notes the messages it puts in the
 * brigade and tells it when a brigade went out, and ends the request. It
 * never touches a session record: the store (libcore/sstore.h) does.
 */
#ifndef JPIP_SESSIONS_H
#define JPIP_SESSIONS_H

#include "mod_jpip.h"

#include "model.h"
#include "plan.h"
#include "request.h"

typedef struct jpip_chan_t jpip_chan_t;

/* The target of the channel req->cid names; asked is the target the
 * request names (NULL or "" for none). Returns OK with *name set, or the
 * answer already sent (an unknown channel: 503; another target: 409; the
 * store unreachable: 503 with Retry-After). */
int jpip_chan_target(request_rec *r, const jpip_dir_conf_t *conf, const jpip_request_t *req,
                     const char *asked, const char **name);

/* Open a channel when the request says cnew (jpt: its return type is
 * JPT), then take this request's turn on the session. Returns OK with *out
 * set, or the answer already sent (202 when overtaken while waiting). */
int jpip_chan_begin(request_rec *r, const jpip_dir_conf_t *conf, const jpip_request_t *req,
                    const jpip_tgt_t *tgt, const char *name, int jpt, jpip_chan_t **out);

/* The model the answer is planned with. */
const jpip_model_t *jpip_chan_model(const jpip_chan_t *ch);

/* Messages put in the brigade (not yet handed to the network). */
void jpip_chan_note(jpip_chan_t *ch, const jpip_msg_t *msgs, apr_size_t n);

/* The brigade with everything noted so far was handed to the network.
 * Returns the EOR reason to stop with (pre-empted: 3; the session closed
 * or its model full: 6), or 0 to go on. */
unsigned jpip_chan_passed(jpip_chan_t *ch);

/* The answer's messages are all out: record what is left. Returns the EOR
 * reason to end with if not the plan's (6: the session is over), or 0. */
unsigned jpip_chan_finish(jpip_chan_t *ch);

/* The answer did not complete (the client went away, a write failed):
 * nothing of it will count as held. */
void jpip_chan_aborted(jpip_chan_t *ch);

/* The request is over: the session is given back, with what the answer
 * delivered recorded, and what cclose names closed. */
void jpip_chan_end(jpip_chan_t *ch, const jpip_request_t *req);

/* The answer with status and sentence (handler.c). */
int jpip_refuse(request_rec *r, const char *target, int status, const char *msg);

#endif /* JPIP_SESSIONS_H */
