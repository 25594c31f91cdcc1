/* mod_jpip: strict parsing of configured numbers and sizes. */
#include "number.h"

#define DIGIT(c) ((c) >= '0' && (c) <= '9')

/* The digits at *p as a value, or JPIP_E_REQUEST on overflow. */
static jpip_code_t digits(const char *s, const char **p, apr_uint64_t *v, jpip_err_t *err)
{
    *v = 0;
    if (!DIGIT(**p)) {
        return jpip_err_set(err, JPIP_E_REQUEST,
                            **p == '-'    ? "'%s' is negative"
                            : **p == '\0' ? "an empty value is not a number%s"
                                          : "'%s' is not a decimal number",
                            **p == '\0' ? "" : s);
    }
    for (; DIGIT(**p); (*p)++) {
        unsigned d = (unsigned)(**p - '0');

        if (*v > (APR_UINT64_MAX - d) / 10) {
            return jpip_err_set(err, JPIP_E_REQUEST, "'%s' is too large", s);
        }
        *v = *v * 10 + d;
    }
    return JPIP_OK;
}

static jpip_code_t in_range(const char *s, apr_uint64_t v, apr_uint64_t min, apr_uint64_t max,
                            apr_uint64_t *out, jpip_err_t *err)
{
    if (v < min || v > max) {
        return jpip_err_set(err, JPIP_E_REQUEST,
                            "'%s' is out of range (%" APR_UINT64_T_FMT " to %" APR_UINT64_T_FMT ")",
                            s, min, max);
    }
    *out = v;
    return JPIP_OK;
}

jpip_code_t jpip_number_parse(const char *s, int form, apr_uint64_t min, apr_uint64_t max,
                              apr_uint64_t *out, jpip_err_t *err)
{
    const char *p = s;
    apr_uint64_t v;
    unsigned shift = 0;

    if (digits(s, &p, &v, err) != JPIP_OK) {
        return JPIP_E_REQUEST;
    }
    if (form == JPIP_NUM_SIZE && *p != '\0') {
        switch (*p) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        case 't':
        case 'T':
            shift = 40;
            break;
        default:
            return jpip_err_set(err, JPIP_E_REQUEST,
                                "'%s' has an unknown unit (use K, M, G or T, or none for bytes)",
                                s);
        }
        p++;
    }
    if (*p != '\0') {
        return jpip_err_set(err, JPIP_E_REQUEST, "'%s' has characters after the number", s);
    }
    if (shift > 0 && v > (APR_UINT64_MAX >> shift)) {
        return jpip_err_set(err, JPIP_E_REQUEST, "'%s' is too large", s);
    }
    return in_range(s, v << shift, min, max, out, err);
}

jpip_code_t jpip_seconds_parse(const char *s, apr_uint64_t min, apr_uint64_t max, apr_uint64_t *out,
                               jpip_err_t *err)
{
    const char *p = s;
    apr_uint64_t v, frac = 0, scale = 1000000;

    if (digits(s, &p, &v, err) != JPIP_OK) {
        return JPIP_E_REQUEST;
    }
    if (*p == '.') {
        p++;
        if (!DIGIT(*p)) {
            return jpip_err_set(err, JPIP_E_REQUEST, "'%s' has no digits after the point", s);
        }
        for (; DIGIT(*p); p++) {
            if (scale == 1) {
                return jpip_err_set(err, JPIP_E_REQUEST,
                                    "'%s' has more than six decimals (microseconds)", s);
            }
            scale /= 10;
            frac += (apr_uint64_t)(*p - '0') * scale;
        }
    }
    if (*p != '\0') {
        return jpip_err_set(err, JPIP_E_REQUEST, "'%s' has characters after the number", s);
    }
    if (v > (APR_UINT64_MAX - frac) / 1000000) {
        return jpip_err_set(err, JPIP_E_REQUEST, "'%s' is too large", s);
    }
    v = v * 1000000 + frac;
    if (v < min || v > max) {
        return jpip_err_set(err, JPIP_E_REQUEST, "'%s' is out of range (%g to %g seconds)", s,
                            (double)min / 1e6, (double)max / 1e6);
    }
    *out = v;
    return JPIP_OK;
}
