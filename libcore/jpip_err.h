/* mod_jpip: error reporting shared by every libcore module.
 *
 * Every fallible libcore function returns a jpip_code_t and, on failure,
 * fills a caller-provided jpip_err_t with a short human-readable message
 * that names what was wrong (the field, the marker, the box, the offset).
 * The message never contains a server path: callers add the target name
 * themselves when they log.
 */
#ifndef JPIP_ERR_H
#define JPIP_ERR_H

#include <stdarg.h>

typedef enum {
    JPIP_OK = 0,
    JPIP_E_REQUEST,     /* malformed request field (HTTP 400) */
    JPIP_E_FORMAT,      /* the file is not valid JPEG 2000 / JP2 (HTTP 415/500) */
    JPIP_E_UNSUPPORTED, /* valid, recognised, but not served (HTTP 501) */
    JPIP_E_NOTFOUND,    /* no such target, bin, box (HTTP 404) */
    JPIP_E_FORBIDDEN,   /* outside the archive (HTTP 403) */
    JPIP_E_LIMIT,       /* a configured or built-in limit was exceeded */
    JPIP_E_IO,          /* read or write failed (HTTP 500) */
    JPIP_E_NOMEM,       /* allocation failed (HTTP 503) */
    JPIP_E_CONFLICT,    /* the request contradicts the server's state (HTTP 409) */
    JPIP_E_UNAVAILABLE, /* not now: a channel gone or busy, a store not ready (HTTP 503) */
    JPIP_E_INTERNAL     /* a server defect or misconfiguration (HTTP 500) */
} jpip_code_t;

/* Which limit a JPIP_E_LIMIT hit. Limits on what one request asks for
 * answer 413; limits on what the server does for everyone (indexing,
 * sessions) answer 503. The httpd glue names each limit's directive. */
typedef enum {
    JPIP_LIMIT_NONE = 0, /* no limit, or a bound built into the code (HTTP 413) */
    /* the request is too large (HTTP 413) */
    JPIP_LIMIT_FIELDS,       /* fields in one request */
    JPIP_LIMIT_FIELD_LENGTH, /* bytes of one field */
    JPIP_LIMIT_REQUEST_BODY, /* bytes of a POST body */
    JPIP_LIMIT_MODEL_ITEMS,  /* items of a model or need field, runs of the model they make */
    JPIP_LIMIT_BINS,         /* data-bins one response involves */
    /* the server cannot take it on now (HTTP 503) */
    JPIP_LIMIT_INDEX_MEMORY,        /* bytes of one target's index */
    JPIP_LIMIT_INDEX_TIME,          /* time to index one target */
    JPIP_LIMIT_INDEX_BUILDS,        /* targets one process indexes at once */
    JPIP_LIMIT_INDEX_BUSY,          /* another process is indexing the target */
    JPIP_LIMIT_TARGET,              /* a bound built into the indexer, hit by the target */
    JPIP_LIMIT_SESSIONS,            /* sessions at once */
    JPIP_LIMIT_SESSIONS_PER_CLIENT, /* sessions of one client address */
    JPIP_LIMIT_SESSION_MEMORY,      /* shared memory for sessions' models */
    JPIP_LIMIT_CHANNELS             /* channels of one session */
} jpip_limit_t;

#define JPIP_ERR_MSG_MAX 256

typedef struct jpip_err_t {
    jpip_code_t code;
    jpip_limit_t limit; /* for JPIP_E_LIMIT: which; JPIP_LIMIT_NONE otherwise */
    char msg[JPIP_ERR_MSG_MAX];
} jpip_err_t;

/* Record an error (code plus printf-style message) and return code.
 * err may be NULL, in which case only the code is returned. */
jpip_code_t jpip_err_set(jpip_err_t *err, jpip_code_t code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Record that limit was hit (code JPIP_E_LIMIT) and return JPIP_E_LIMIT. */
jpip_code_t jpip_err_limit(jpip_err_t *err, jpip_limit_t limit, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Put context before err's message ("context: message"), keeping its
 * limit, and record code (the error being passed on). Returns code. */
jpip_code_t jpip_err_prefix(jpip_err_t *err, jpip_code_t code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Say which limit a JPIP_E_LIMIT that names none was: for callers that
 * passed the bound themselves. Other errors are left alone. Returns the
 * error's code. */
jpip_code_t jpip_err_set_limit(jpip_err_t *err, jpip_limit_t limit);

/* Read err as a failure of the target rather than of the request: a
 * feature the server does not serve makes the file unservable
 * (JPIP_E_FORMAT), and a built-in bound becomes JPIP_LIMIT_TARGET.
 * Returns the error's code. */
jpip_code_t jpip_err_of_target(jpip_err_t *err);

/* The HTTP status that answers err (an error, not JPIP_OK): the one
 * mapping from kinds and limits to statuses (docs/security.md). */
int jpip_err_status(const jpip_err_t *err);

/* A limit's stable name ("fields", "index-time", ...). */
const char *jpip_limit_name(jpip_limit_t limit);

/* Reset err to JPIP_OK with an empty message. */
void jpip_err_clear(jpip_err_t *err);

/* A short stable name for a code ("format", "request", ...). */
const char *jpip_code_name(jpip_code_t code);

#endif /* JPIP_ERR_H */
