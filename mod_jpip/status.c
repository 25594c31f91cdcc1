/* mod_jpip: the status page (SetHandler jpip-status), as text or, with
 * ?json, as JSON, and the same counters in mod_status's server-status
 * (HTML, and ?auto's "Key: value" lines). Counters come from the shared
 * session segment, so every process reports the same figures. */
#include "mod_jpip.h"
#include "store.h"

#include <http_protocol.h>
#include <mod_status.h>

#include <apr_strings.h>

/* One counter: its JSON name, its server-status ?auto key, its label. */
typedef struct counter_t {
    const char *json;
    const char *key;
    const char *label;
    apr_uint64_t value;
} counter_t;

#define NCOUNTERS 21

static void counters(counter_t *c)
{
    jpip_store_stats_t st;
    const counter_t all[NCOUNTERS] = {
        {"sessions", "JPIPSessionsOpen", "sessions open", 0},
        {"session_slots", "JPIPSessionSlots", "session slots", 0},
        {"channels", "JPIPChannels", "channels open", 0},
        {"sessions_created", "JPIPSessionsCreated", "sessions created", 0},
        {"sessions_evicted", "JPIPSessionsEvicted", "sessions evicted", 0},
        {"sessions_expired", "JPIPSessionsExpired", "sessions expired", 0},
        {"sessions_refused", "JPIPSessionsRefused", "sessions refused", 0},
        {"sessions_reclaimed", "JPIPSessionsReclaimed", "sessions reclaimed", 0},
        {"session_lost_updates", "JPIPSessionLostUpdates", "session write-backs lost (resent)", 0},
        {"model_bytes_used", "JPIPModelBytesUsed", "cache model bytes used", 0},
        {"shared_memory_bytes", "JPIPSharedMemoryBytes", "shared memory bytes", 0},
        {"requests", "JPIPRequests", "requests", 0},
        {"bytes_sent", "JPIPBytesSent", "bytes sent", 0},
        {"index_cache_hits", "JPIPIndexCacheHits", "index cache hits", 0},
        {"index_cache_misses", "JPIPIndexCacheMisses", "index cache misses", 0},
        {"iiif_renders", "JPIPIIIFRenders", "IIIF renders", 0},
        {"iiif_render_us", "JPIPIIIFRenderMicroseconds", "IIIF render time (us)", 0},
        {"iiif_bytes", "JPIPIIIFBytes", "IIIF bytes sent", 0},
        {"iiif_not_modified", "JPIPIIIFNotModified", "IIIF not modified (304)", 0},
        {"iiif_busy", "JPIPIIIFBusy", "IIIF renders refused busy", 0},
        {"iiif_cropped", "JPIPIIIFCropped", "IIIF renders from a cropped codestream", 0}};
    const apr_uint64_t *v[NCOUNTERS] = {
        &st.sessions,       &st.slots,      &st.channels,          &st.created,
        &st.evicted,        &st.expired,    &st.refused,           &st.reclaimed,
        &st.lost_updates,   &st.mem_used,   &st.mem_limit,         &st.requests,
        &st.bytes,          &st.index_hits, &st.index_builds,      &st.iiif_renders,
        &st.iiif_render_us, &st.iiif_bytes, &st.iiif_not_modified, &st.iiif_busy,
        &st.iiif_cropped};
    int i;

    jpip_store_stats(&st);
    for (i = 0; i < NCOUNTERS; i++) {
        c[i] = all[i];
        c[i].value = *v[i];
    }
}

/* server-status (mod_status): the counters beside httpd's own. */
static int jpip_status_hook(request_rec *r, int flags)
{
    counter_t c[NCOUNTERS];
    int i;

    counters(c);
    if (flags & AP_STATUS_SHORT) {
        ap_rprintf(r, "JPIPVersion: %s\n", JPIP_MODULE_VERSION);
        for (i = 0; i < NCOUNTERS; i++) {
            ap_rprintf(r, "%s: %" APR_UINT64_T_FMT "\n", c[i].key, c[i].value);
        }
        return OK;
    }
    ap_rprintf(r, "<hr />\n<h2>mod_jpip %s</h2>\n", JPIP_MODULE_VERSION);
    if (flags & AP_STATUS_NOTABLE) {
        for (i = 0; i < NCOUNTERS; i++) {
            ap_rprintf(r, "%s: %" APR_UINT64_T_FMT "<br />\n", c[i].label, c[i].value);
        }
        return OK;
    }
    ap_rputs("<table border=\"0\">\n", r);
    for (i = 0; i < NCOUNTERS; i++) {
        ap_rprintf(r,
                   "<tr><th align=\"left\">%s</th><td align=\"right\">%" APR_UINT64_T_FMT
                   "</td></tr>\n",
                   c[i].label, c[i].value);
    }
    ap_rputs("</table>\n", r);
    return OK;
}

void jpip_status_register(void)
{
    APR_OPTIONAL_HOOK(ap, status_hook, jpip_status_hook, NULL, NULL, APR_HOOK_MIDDLE);
}

int jpip_status_handle(request_rec *r)
{
    jpip_store_stats_t st;
    counter_t c[NCOUNTERS];
    int json, i;

    if (r->handler == NULL || strcmp(r->handler, "jpip-status") != 0) {
        return DECLINED;
    }
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    json = r->args != NULL && strcmp(r->args, "json") == 0;
    ap_set_content_type(r, json ? "application/json" : "text/plain; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    if (r->header_only) {
        return OK;
    }
    if (json) {
        counters(c);
        ap_rprintf(r, "{\"version\": \"%s\", \"session_store\": \"%s\"", JPIP_MODULE_VERSION,
                   ap_escape_quotes(r->pool, jpip_store_name()));
        for (i = 0; i < NCOUNTERS; i++) {
            ap_rprintf(r, ", \"%s\": %" APR_UINT64_T_FMT, c[i].json, c[i].value);
        }
        ap_rputs("}\n", r);
        return OK;
    }
    jpip_store_stats(&st);
    ap_rprintf(
        r,
        "mod_jpip %s\n"
        "sessions: %" APR_UINT64_T_FMT " open of %" APR_UINT64_T_FMT " (channels %" APR_UINT64_T_FMT
        ")\n"
        "sessions created: %" APR_UINT64_T_FMT ", evicted: %" APR_UINT64_T_FMT
        ", expired: %" APR_UINT64_T_FMT ", refused: %" APR_UINT64_T_FMT
        ", reclaimed: %" APR_UINT64_T_FMT ", lost updates: %" APR_UINT64_T_FMT "\n"
        "session store: %s\n"
        "cache models: %" APR_UINT64_T_FMT " bytes used of %" APR_UINT64_T_FMT
        " bytes of shared memory\n"
        "requests: %" APR_UINT64_T_FMT "\n"
        "bytes sent: %" APR_UINT64_T_FMT "\n"
        "index cache: %" APR_UINT64_T_FMT " hits, %" APR_UINT64_T_FMT " misses\n"
        "iiif renders: %" APR_UINT64_T_FMT " (%" APR_UINT64_T_FMT " us, %" APR_UINT64_T_FMT
        " bytes), not modified (304): %" APR_UINT64_T_FMT ", refused busy: %" APR_UINT64_T_FMT
        ", from a cropped codestream: %" APR_UINT64_T_FMT "\n",
        JPIP_MODULE_VERSION, st.sessions, st.slots, st.channels, st.created, st.evicted, st.expired,
        st.refused, st.reclaimed, st.lost_updates, jpip_store_name(), st.mem_used, st.mem_limit,
        st.requests, st.bytes, st.index_hits, st.index_builds, st.iiif_renders, st.iiif_render_us,
        st.iiif_bytes, st.iiif_not_modified, st.iiif_busy, st.iiif_cropped);
    return OK;
}
