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
    JPIP_E_IO,          /* read or write failed */
    JPIP_E_NOMEM        /* allocation failed */
} jpip_code_t;

#define JPIP_ERR_MSG_MAX 256

typedef struct jpip_err_t {
    jpip_code_t code;
    char msg[JPIP_ERR_MSG_MAX];
} jpip_err_t;

/* Record an error (code plus printf-style message) and return code.
 * err may be NULL, in which case only the code is returned. */
jpip_code_t jpip_err_set(jpip_err_t *err, jpip_code_t code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Reset err to JPIP_OK with an empty message. */
void jpip_err_clear(jpip_err_t *err);

/* A short stable name for a code ("format", "request", ...). */
const char *jpip_code_name(jpip_code_t code);

#endif /* JPIP_ERR_H */
