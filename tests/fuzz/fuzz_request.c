/* Fuzz target: a JPIP request as it arrives (query string or POST body).
 *
 * The input is the raw field string. It is split and decoded
 * (jpip_fields_parse), typed (jpip_request_parse), and whatever parsed is
 * used the way the handler uses it: range lists are formatted back and
 * queried, the metareq field is parsed. The percent decoder is also run on
 * the raw bytes by itself.
 */
#include <string.h>

#include "fuzz_common.h"

#include "fields.h"
#include "metareq.h"
#include "request.h"

static void use_ranges(apr_pool_t *pool, const apr_array_header_t *r)
{
    if (r == NULL)
        return;
    (void)jpip_ranges_format(pool, r);
    (void)jpip_ranges_contain(r, 0);
    (void)jpip_ranges_contain(r, 7);
    (void)jpip_ranges_contain(r, JPIP_UINT_NONE - 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *pool = jpip_fuzz_pool();
    jpip_fields_limits_t lim;
    apr_array_header_t *fields = NULL;
    jpip_request_t req;
    jpip_err_t err;

    /* The decoder alone, on a private copy it may rewrite. */
    char *copy = apr_palloc(pool, size + 1);
    memcpy(copy, data, size);
    copy[size] = '\0';
    (void)jpip_percent_decode(copy, size);

    jpip_fields_limits_default(&lim);
    if (jpip_fields_parse(pool, (const char *)data, size, &lim, &fields, &err) == JPIP_OK) {
        (void)jpip_fields_find(fields, "target");
        (void)jpip_fields_find(fields, "model");
        memset(&req, 0, sizeof(req));
        if (jpip_request_parse(pool, fields, &req, &err) == JPIP_OK) {
            use_ranges(pool, req.comps);
            use_ranges(pool, req.stream);
            use_ranges(pool, req.jpxl);
            use_ranges(pool, req.mset);
            if (req.metareq != NULL) {
                jpip_metareq_t mr;
                if (jpip_metareq_parse(&mr, pool, req.metareq, strlen(req.metareq), &err) ==
                    JPIP_OK) {
                    (void)jpip_metareq_format(&mr, 0, pool);
                    (void)jpip_metareq_format(&mr, 1, pool);
                }
            }
        }
    }

    /* Tight limits take the limit paths. */
    lim.max_fields = 3;
    lim.max_field_bytes = 16;
    fields = NULL;
    (void)jpip_fields_parse(pool, (const char *)data, size, &lim, &fields, &err);

    apr_pool_destroy(pool);
    return 0;
}
