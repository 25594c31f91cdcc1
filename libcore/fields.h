/* mod_jpip: splitting a JPIP request into its fields.
 *
 * A JPIP request is an application/x-www-form-urlencoded string: fields
 * joined by '&', each `name=value` (or a bare `name`, as in `handled`).
 * Name and value are percent-decoded separately after splitting, so a
 * value may carry %26 ('&') and %3D ('='). This layer only splits and
 * decodes; request.c gives the fields their JPIP meaning.
 */
#ifndef JPIP_FIELDS_H
#define JPIP_FIELDS_H

#include <apr_pools.h>
#include <apr_tables.h>

#include "jpip_err.h"

typedef struct jpip_field_t {
    const char *name;  /* decoded, NUL-terminated */
    const char *value; /* decoded, NUL-terminated; "" for a bare name */
    int has_value;     /* 0 for a bare name without '=' */
} jpip_field_t;

typedef struct jpip_fields_limits_t {
    apr_size_t max_fields;      /* most fields in one request */
    apr_size_t max_field_bytes; /* longest single field, encoded */
} jpip_fields_limits_t;

/* Defaults: 64 fields, 1 MiB per field (model fields can be long). */
void jpip_fields_limits_default(jpip_fields_limits_t *lim);

/* Split and decode `len` bytes of `s` (not necessarily NUL-terminated),
 * appending jpip_field_t entries to *out (created when NULL). Errors, all
 * JPIP_E_REQUEST unless a limit is hit (JPIP_E_LIMIT): bad percent escape,
 * an encoded NUL byte, an empty or non-lower-case name, a field given
 * twice. Messages name the field. */
jpip_code_t jpip_fields_parse(apr_pool_t *pool, const char *s, apr_size_t len,
                              const jpip_fields_limits_t *lim, apr_array_header_t **out,
                              jpip_err_t *err);

/* The field called name, or NULL. */
const jpip_field_t *jpip_fields_find(const apr_array_header_t *fields, const char *name);

/* Percent-decode in place ('+' becomes a space). Returns the decoded
 * length, or -1 on a malformed escape or an encoded NUL. */
long jpip_percent_decode(char *s, apr_size_t len);

#endif /* JPIP_FIELDS_H */
