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
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

void jpip_err_clear(jpip_err_t *err)
{
    if (err != NULL) {
        err->code = JPIP_OK;
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
    }
    return "unknown";
}
