/* mod_jpip: the status page (SetHandler jpip-status), as text or, with
 * ?json, as JSON. Counters come from the shared session segment, so every
 * process reports the same figures. */
#include "mod_jpip.h"
#include "store.h"

#include <http_protocol.h>

#include <apr_strings.h>

int jpip_status_handle(request_rec *r)
{
    jpip_store_stats_t st;
    int json;

    if (r->handler == NULL || strcmp(r->handler, "jpip-status") != 0) {
        return DECLINED;
    }
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    json = r->args != NULL && strcmp(r->args, "json") == 0;
    jpip_store_stats(&st);
    ap_set_content_type(r, json ? "application/json" : "text/plain; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    if (r->header_only) {
        return OK;
    }
    if (json) {
        ap_rprintf(r,
                   "{\"version\": \"%s\", \"sessions\": %" APR_UINT64_T_FMT
                   ", \"session_slots\": %" APR_UINT64_T_FMT ", \"channels\": %" APR_UINT64_T_FMT
                   ", \"sessions_created\": %" APR_UINT64_T_FMT
                   ", \"sessions_evicted\": %" APR_UINT64_T_FMT
                   ", \"sessions_expired\": %" APR_UINT64_T_FMT
                   ", \"sessions_refused\": %" APR_UINT64_T_FMT
                   ", \"sessions_reclaimed\": %" APR_UINT64_T_FMT
                   ", \"session_lost_updates\": %" APR_UINT64_T_FMT ", \"session_store\": \"%s\""
                   ", \"model_bytes_used\": %" APR_UINT64_T_FMT
                   ", \"shared_memory_bytes\": %" APR_UINT64_T_FMT
                   ", \"requests\": %" APR_UINT64_T_FMT ", \"bytes_sent\": %" APR_UINT64_T_FMT
                   ", \"index_cache_hits\": %" APR_UINT64_T_FMT
                   ", \"index_cache_misses\": %" APR_UINT64_T_FMT "}\n",
                   JPIP_MODULE_VERSION, st.sessions, st.slots, st.channels, st.created, st.evicted,
                   st.expired, st.refused, st.reclaimed, st.lost_updates,
                   ap_escape_quotes(r->pool, jpip_store_name()), st.mem_used, st.mem_limit,
                   st.requests, st.bytes, st.index_hits, st.index_builds);
        return OK;
    }
    ap_rprintf(r,
               "mod_jpip %s\n"
               "sessions: %" APR_UINT64_T_FMT " open of %" APR_UINT64_T_FMT
               " (channels %" APR_UINT64_T_FMT ")\n"
               "sessions created: %" APR_UINT64_T_FMT ", evicted: %" APR_UINT64_T_FMT
               ", expired: %" APR_UINT64_T_FMT ", refused: %" APR_UINT64_T_FMT
               ", reclaimed: %" APR_UINT64_T_FMT ", lost updates: %" APR_UINT64_T_FMT "\n"
               "session store: %s\n"
               "cache models: %" APR_UINT64_T_FMT " bytes used of %" APR_UINT64_T_FMT
               " bytes of shared memory\n"
               "requests: %" APR_UINT64_T_FMT "\n"
               "bytes sent: %" APR_UINT64_T_FMT "\n"
               "index cache: %" APR_UINT64_T_FMT " hits, %" APR_UINT64_T_FMT " misses\n",
               JPIP_MODULE_VERSION, st.sessions, st.slots, st.channels, st.created, st.evicted,
               st.expired, st.refused, st.reclaimed, st.lost_updates, jpip_store_name(),
               st.mem_used, st.mem_limit, st.requests, st.bytes, st.index_hits, st.index_builds);
    return OK;
}
