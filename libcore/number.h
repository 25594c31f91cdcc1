/* mod_jpip: strict parsing of configured numbers and sizes.
 *
 * One parser for every count and byte size the configuration takes: only
 * decimal digits, then (for sizes) one optional binary suffix K, M, G or T
 * (either case), then nothing. Signs, spaces, trailing characters, values
 * out of range and values that overflow are refused with a message that
 * says which (the caller adds the directive's name).
 */
#ifndef JPIP_NUMBER_H
#define JPIP_NUMBER_H

#include <apr.h>

#include "jpip_err.h"

#define JPIP_NUM_COUNT 0 /* digits only */
#define JPIP_NUM_SIZE 1  /* digits and an optional K, M, G or T (x 1024^n) */

/* Parse s as a number of the given form within [min, max] into *out.
 * JPIP_E_REQUEST, naming the defect, for anything else. */
jpip_code_t jpip_number_parse(const char *s, int form, apr_uint64_t min, apr_uint64_t max,
                              apr_uint64_t *out, jpip_err_t *err);

/* Parse s as seconds with up to six decimals ("0.25", "120") within
 * [min, max] microseconds into *out. JPIP_E_REQUEST otherwise. */
jpip_code_t jpip_seconds_parse(const char *s, apr_uint64_t min, apr_uint64_t max, apr_uint64_t *out,
                               jpip_err_t *err);

#endif /* JPIP_NUMBER_H */
