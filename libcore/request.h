/* mod_jpip: a JPIP request, parsed and typed (T.808 Annex C; protocol
 * notes section A).
 *
 * jpip_request_parse takes the fields split by fields.c and checks every
 * one against its grammar. Unknown field names are a JPIP_E_REQUEST (400).
 * Fields that are recognised but not served (upload, the xpath fields, the
 * HTTP-UDP loss-recovery fields) are recorded in `unsupported` so that the
 * caller answers 501 naming them; fields a server may ignore (cap, drate,
 * srate for stills...) are parsed and kept. Fields with a grammar of their
 * own (metareq, model, need) are kept as strings here and parsed by their
 * modules.
 */
#ifndef JPIP_REQUEST_H
#define JPIP_REQUEST_H

#include <apr_pools.h>
#include <apr_tables.h>

#include "jpip_err.h"

#define JPIP_UINT_NONE 0xFFFFFFFFu /* open upper bound of a range */

typedef enum { JPIP_ROUND_DOWN = 0, JPIP_ROUND_UP, JPIP_ROUND_CLOSEST } jpip_round_t;

/* `a`, `a-b`, or `a-` (hi = JPIP_UINT_NONE), with optional `:step`. */
typedef struct jpip_range_t {
    apr_uint32_t lo;
    apr_uint32_t hi;
    apr_uint32_t step; /* 1 unless sampled */
} jpip_range_t;

/* Transports offered in cnew. */
#define JPIP_TRANSPORT_HTTP 0x1
#define JPIP_TRANSPORT_HTTP_TCP 0x2
#define JPIP_TRANSPORT_HTTP_UDP 0x4

/* Return types acceptable in `type`. */
#define JPIP_TYPE_JPP 0x1
#define JPIP_TYPE_JPT 0x2
#define JPIP_TYPE_RAW 0x4
#define JPIP_TYPE_JPP_EXT 0x8 /* jpp-stream;ptype=ext */
#define JPIP_TYPE_JPT_EXT 0x10

typedef struct jpip_request_t {
    /* target identification */
    const char *target;    /* NULL when absent */
    const char *subtarget; /* NULL when absent */
    const char *tid;       /* NULL when absent; "0" asks for one */

    /* sessions and channels */
    const char *cid;            /* NULL when absent */
    unsigned cnew;              /* JPIP_TRANSPORT_* offered; 0 when absent */
    const char *cnew_raw;       /* the field as given */
    apr_array_header_t *cclose; /* of const char *: channel ids, or "*"; NULL when absent */
    apr_int64_t qid;            /* -1 when absent */

    /* view-window */
    int has_fsiz;
    apr_uint32_t fx, fy;
    jpip_round_t round;
    int has_roff;
    apr_uint32_t ox, oy;
    int has_rsiz;
    apr_uint32_t sx, sy;
    apr_array_header_t *comps;  /* of jpip_range_t; NULL = all */
    apr_array_header_t *stream; /* of jpip_range_t; NULL = default */
    const char *context;        /* raw; NULL when absent */
    apr_array_header_t *jpxl;   /* of jpip_range_t from context=jpxl<...>; NULL if none */
    int has_layers;
    apr_uint32_t layers; /* 0 means all */
    const char *srate;   /* raw UFLOAT; ignorable for stills */
    const char *roi;     /* NULL when absent */
    const char *metareq; /* raw; parsed by metareq.c */

    /* limits and server control */
    int has_len;
    apr_uint64_t len;
    int has_quality;
    unsigned quality; /* 0..100 */
    int align;        /* align=yes */
    int wait;         /* wait=yes */
    unsigned type;    /* JPIP_TYPE_*; 0 when absent */
    const char *type_raw;
    const char *drate;

    /* cache management (parsed by model.c) */
    const char *model;
    const char *tpmodel;
    const char *need;
    const char *tpneed;
    apr_array_header_t *mset; /* of jpip_range_t; NULL when absent */

    /* capabilities and preferences */
    const char *cap;
    const char *pref;
    const char *pref_required; /* the `/r` sets, comma-joined; NULL if none */
    int handled;

    /* recognised but not served: the first such field's name (501) */
    const char *unsupported;
} jpip_request_t;

/* Parse fields (an array of jpip_field_t from jpip_fields_parse) into *req.
 * JPIP_E_REQUEST on an unknown field or a malformed value, with a message
 * naming the field and what is wrong; JPIP_E_REQUEST too for illegal
 * combinations (roff or rsiz without fsiz). */
jpip_code_t jpip_request_parse(apr_pool_t *pool, const apr_array_header_t *fields,
                               jpip_request_t *req, jpip_err_t *err);

/* Does a range list contain v? (NULL list: every value.) */
int jpip_ranges_contain(const apr_array_header_t *ranges, apr_uint32_t v);

/* Format a range list back into field syntax ("0-2,5"). */
const char *jpip_ranges_format(apr_pool_t *pool, const apr_array_header_t *ranges);

#endif /* JPIP_REQUEST_H */
