/* mod_jpip: splitting a JPIP request into its fields. */
#include "fields.h"

#include <string.h>

#include <apr_strings.h>

void jpip_fields_limits_default(jpip_fields_limits_t *lim)
{
    lim->max_fields = 64;
    lim->max_field_bytes = 1024 * 1024;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

long jpip_percent_decode(char *s, apr_size_t len)
{
    apr_size_t i, o = 0;

    for (i = 0; i < len; i++) {
        char c = s[i];

        if (c == '%') {
            int hi, lo;

            if (len - i < 3 || (hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0) {
                return -1;
            }
            c = (char)(hi * 16 + lo);
            if (c == '\0') {
                return -1;
            }
            i += 2;
        } else if (c == '+') {
            c = ' ';
        } else if (c == '\0') {
            return -1;
        }
        s[o++] = c;
    }
    s[o] = '\0';
    return (long)o;
}

static int name_ok(const char *n)
{
    if (*n == '\0') {
        return 0;
    }
    for (; *n != '\0'; n++) {
        if (!((*n >= 'a' && *n <= 'z') || (*n >= '0' && *n <= '9') || *n == '_' || *n == '-')) {
            return 0;
        }
    }
    return 1;
}

const jpip_field_t *jpip_fields_find(const apr_array_header_t *fields, const char *name)
{
    int i;

    if (fields == NULL) {
        return NULL;
    }
    for (i = 0; i < fields->nelts; i++) {
        const jpip_field_t *f = &APR_ARRAY_IDX(fields, i, jpip_field_t);
        if (strcmp(f->name, name) == 0) {
            return f;
        }
    }
    return NULL;
}

/* Decode one `name[=value]` piece and append it. */
static jpip_code_t add_field(apr_pool_t *pool, const char *p, apr_size_t n, apr_array_header_t *out,
                             jpip_err_t *err)
{
    const char *eq = memchr(p, '=', n);
    apr_size_t nlen = eq != NULL ? (apr_size_t)(eq - p) : n;
    char *name = apr_pstrmemdup(pool, p, nlen);
    char *value = eq != NULL ? apr_pstrmemdup(pool, eq + 1, n - nlen - 1) : apr_pstrdup(pool, "");
    jpip_field_t *f;

    if (jpip_percent_decode(name, nlen) < 0) {
        return jpip_err_set(err, JPIP_E_REQUEST, "malformed percent-encoding in a field name");
    }
    if (!name_ok(name)) {
        return jpip_err_set(err, JPIP_E_REQUEST,
                            "malformed field name \"%.40s\" (lower-case letters and digits only)",
                            name);
    }
    if (jpip_percent_decode(value, strlen(value)) < 0) {
        return jpip_err_set(err, JPIP_E_REQUEST,
                            "field \"%s\": malformed percent-encoding or encoded NUL", name);
    }
    if (jpip_fields_find(out, name) != NULL) {
        return jpip_err_set(err, JPIP_E_REQUEST, "field \"%s\" is given more than once", name);
    }
    f = apr_array_push(out);
    f->name = name;
    f->value = value;
    f->has_value = eq != NULL;
    return JPIP_OK;
}

jpip_code_t jpip_fields_parse(apr_pool_t *pool, const char *s, apr_size_t len,
                              const jpip_fields_limits_t *lim, apr_array_header_t **out,
                              jpip_err_t *err)
{
    jpip_fields_limits_t dflt;
    apr_size_t pos = 0;

    if (lim == NULL) {
        jpip_fields_limits_default(&dflt);
        lim = &dflt;
    }
    if (*out == NULL) {
        *out = apr_array_make(pool, 16, sizeof(jpip_field_t));
    }
    while (pos < len) {
        const char *amp = memchr(s + pos, '&', len - pos);
        apr_size_t n = amp != NULL ? (apr_size_t)(amp - (s + pos)) : len - pos;
        jpip_code_t rc;

        if (n > lim->max_field_bytes) {
            return jpip_err_limit(err, JPIP_LIMIT_FIELD_LENGTH,
                                  "a field is %" APR_SIZE_T_FMT
                                  " bytes long; the limit is %" APR_SIZE_T_FMT,
                                  n, lim->max_field_bytes);
        }
        if (n > 0) {
            if ((apr_size_t)(*out)->nelts >= lim->max_fields) {
                return jpip_err_limit(err, JPIP_LIMIT_FIELDS,
                                      "more than %" APR_SIZE_T_FMT " fields in one request",
                                      lim->max_fields);
            }
            rc = add_field(pool, s + pos, n, *out, err);
            if (rc != JPIP_OK) {
                return rc;
            }
        }
        pos += n + 1;
    }
    return JPIP_OK;
}
