/* mod_jpip: error reporting. */
#include "jpip_err.h"

#include <stdio.h>
#include <string.h>

jpip_code_t jpip_err_set(jpip_err_t *err, jpip_code_t code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL) {
        return code;
    }
    err->code = code;
    err->limit = JPIP_LIMIT_NONE;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

jpip_code_t jpip_err_limit(jpip_err_t *err, jpip_limit_t limit, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL) {
        return JPIP_E_LIMIT;
    }
    err->code = JPIP_E_LIMIT;
    err->limit = limit;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return JPIP_E_LIMIT;
}

jpip_code_t jpip_err_prefix(jpip_err_t *err, jpip_code_t code, const char *fmt, ...)
{
    char msg[JPIP_ERR_MSG_MAX];
    va_list ap;
    int n;

    if (err == NULL) {
        return code;
    }
    memcpy(msg, err->msg, sizeof(msg));
    msg[sizeof(msg) - 1] = '\0';
    va_start(ap, fmt);
    n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof(err->msg)) {
        snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s", msg);
    }
    if (code != JPIP_E_LIMIT) {
        err->limit = JPIP_LIMIT_NONE;
    }
    err->code = code;
    return code;
}

jpip_code_t jpip_err_set_limit(jpip_err_t *err, jpip_limit_t limit)
{
    if (err->code == JPIP_E_LIMIT && err->limit == JPIP_LIMIT_NONE) {
        err->limit = limit;
    }
    return err->code;
}

jpip_code_t jpip_err_of_target(jpip_err_t *err)
{
    if (err->code == JPIP_E_UNSUPPORTED) {
        err->code = JPIP_E_FORMAT;
    }
    return jpip_err_set_limit(err, JPIP_LIMIT_TARGET);
}

int jpip_err_status(const jpip_err_t *err)
{
    switch (err->code) {
    case JPIP_E_REQUEST:
        return 400;
    case JPIP_E_FORBIDDEN:
        return 403;
    case JPIP_E_NOTFOUND:
        return 404;
    case JPIP_E_CONFLICT:
        return 409;
    case JPIP_E_LIMIT:
        return err->limit >= JPIP_LIMIT_INDEX_MEMORY ? 503 : 413;
    case JPIP_E_FORMAT:
        return 415;
    case JPIP_E_UNSUPPORTED:
        return 501;
    case JPIP_E_NOMEM:
    case JPIP_E_UNAVAILABLE:
        return 503;
    case JPIP_OK:
    case JPIP_E_IO:
    case JPIP_E_INTERNAL:
        break;
    }
    return 500;
}

const char *jpip_limit_name(jpip_limit_t limit)
{
    static const char *const names[] = {
        "none",   "fields",       "field-length",        "request-body",   "model-items",
        "bins",   "index-memory", "index-time",          "index-builds",   "index-busy",
        "target", "sessions",     "sessions-per-client", "session-memory", "channels"};

    return (unsigned)limit < sizeof(names) / sizeof(names[0]) ? names[limit] : "unknown";
}

void jpip_err_clear(jpip_err_t *err)
{
    if (err != NULL) {
        err->code = JPIP_OK;
        err->limit = JPIP_LIMIT_NONE;
        err->msg[0] = '\0';
    }
}

const char *jpip_code_name(jpip_code_t code)
{
    switch (code) {
    case JPIP_OK:
        return "ok";
    case JPIP_E_REQUEST:
        return "request";
    case JPIP_E_FORMAT:
        return "format";
    case JPIP_E_UNSUPPORTED:
        return "unsupported";
    case JPIP_E_NOTFOUND:
        return "not-found";
    case JPIP_E_FORBIDDEN:
        return "forbidden";
    case JPIP_E_LIMIT:
        return "limit";
    case JPIP_E_IO:
        return "io";
    case JPIP_E_NOMEM:
        return "nomem";
    case JPIP_E_CONFLICT:
        return "conflict";
    case JPIP_E_UNAVAILABLE:
        return "unavailable";
    case JPIP_E_INTERNAL:
        return "internal";
    }
    return "unknown";
}
