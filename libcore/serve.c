/* mod_jpip: answering one JPIP request. */
#include "serve.h"

#include <string.h>

#include <apr_strings.h>

#include "metareq.h"

#define DEFAULT_MAX_ENTRIES ((apr_uint64_t)1 << 22)
#define DEFAULT_MAX_MODEL_RUNS 65536
#define DEFAULT_MAX_CODESTREAMS 1024

const char *jpip_serve_handled(void)
{
    return "target,tid,cid,cnew=http,cclose,qid,fsiz,rsiz,roff,comps,stream,context=jpxl,roi,"
           "layers,metareq,len,quality,align,wait,type=jpp-stream,type=jpt-stream,model,need,"
           "mset,pref,handled";
}

static void add_header(jpip_response_t *resp, const char *name, const char *value)
{
    jpip_header_t *h = apr_array_push(resp->headers);

    h->name = name;
    h->value = value;
}

/* Refuse for err: the status of its kind (and limit), its message. A
 * server failure (JPIP_E_NOMEM) is returned instead. */
static jpip_code_t refuse_err(jpip_response_t *resp, apr_pool_t *pool, const jpip_err_t *err)
{
    if (err->code == JPIP_E_NOMEM) {
        return err->code;
    }
    resp->status = jpip_err_status(err);
    resp->error = apr_pstrdup(pool, err->msg);
    resp->limit = err->code == JPIP_E_LIMIT ? err->limit : JPIP_LIMIT_NONE;
    resp->plan = NULL;
    return JPIP_OK;
}

/* Refuse with an error of kind code and msg (of any length). */
static jpip_code_t refuse(jpip_response_t *resp, apr_pool_t *pool, jpip_code_t code,
                          const char *msg)
{
    jpip_err_t e;

    jpip_err_set(&e, code, "-");
    refuse_err(resp, pool, &e);
    resp->error = msg;
    return JPIP_OK;
}

/* ------------------------------------------------------ model resolver */

static apr_uint64_t res_layer_bytes(void *ctx, apr_uint64_t csn, apr_uint64_t id, unsigned layers)
{
    const jpip_index_t *ix = ctx;
    const jpip_bin_t *bin;
    jpip_err_t err;

    if (jpip_index_bin(ix, JPIP_CLASS_PRECINCT, csn, id, &bin, &err) != JPIP_OK || layers == 0) {
        return 0;
    }
    if (layers >= bin->nbounds) {
        /* every layer present; bytes after the last (a packet a
         * truncated file cuts short) are not a layer */
        apr_uint64_t last = bin->nbounds > 0 ? jpip_index_bounds(ix, bin)[bin->nbounds - 1] : 0;

        return last >= bin->len ? JPIP_MODEL_COMPLETE : last;
    }
    return jpip_index_bounds(ix, bin)[layers - 1];
}

static apr_uint64_t clamp_last(apr_uint64_t last, apr_uint64_t n)
{
    return last >= n ? n - 1 : last;
}

static jpip_code_t res_implicit(void *ctx, apr_uint64_t csn, const jpip_model_range_t *tr,
                                const jpip_model_range_t *cr, const jpip_model_range_t *rr,
                                const jpip_model_range_t *pr, jpip_model_visit_fn visit, void *vctx,
                                jpip_err_t *err)
{
    const jpip_index_t *ix = ctx;
    const jpip_ix_cs_t *cs = jpip_index_cs(ix, csn);
    apr_uint64_t nt, t, c, r, p;

    if (cs == NULL) {
        return JPIP_OK;
    }
    nt = jpip_siz_ntiles(&cs->siz);
    for (t = tr->first; t < nt && t <= clamp_last(tr->last, nt); t++) {
        for (c = cr->first; c < cs->siz.csiz && c <= clamp_last(cr->last, cs->siz.csiz); c++) {
            unsigned nl =
                jpip_index_tccp(ix, jpip_index_tc(ix, cs, (apr_uint32_t)t, (unsigned)c))->nl;
            for (r = rr->first; r <= nl && r <= rr->last; r++) {
                jpip_ix_res_t res;
                apr_uint64_t np;
                jpip_code_t rc =
                    jpip_index_res(ix, cs, (apr_uint32_t)t, (unsigned)c, (unsigned)r, &res, err);

                if (rc != JPIP_OK) {
                    return rc;
                }
                np = res.grid.npw * res.grid.nph;
                for (p = pr->first; p < np && p <= pr->last; p++) {
                    apr_uint64_t id = t + (c + (res.s0 + p) * cs->siz.csiz) * nt;
                    rc = visit(vctx, id, err);
                    if (rc != JPIP_OK) {
                        return rc;
                    }
                }
            }
        }
    }
    return JPIP_OK;
}

void jpip_serve_resolver(const jpip_index_t *ix, jpip_model_resolver_t *res)
{
    memset(res, 0, sizeof(*res));
    res->ctx = (void *)ix;
    res->codestreams = jpip_index_ncs(ix);
    res->layer_bytes = res_layer_bytes;
    res->implicit = res_implicit;
}

/* Does any codestream of the target pack its packet headers in PPM? */
static int target_has_ppm(const jpip_index_t *ix)
{
    apr_uint64_t i;

    for (i = 0; i < jpip_index_ncs(ix); i++) {
        if (jpip_index_cs(ix, i)->flags & JPIP_IXF_PPM) {
            return 1;
        }
    }
    return 0;
}

/* -------------------------------------------------------- preferences */

/* Required preferences (`/r`) we satisfy: progressive delivery is what we
 * do, placeholders are incremental, codestreams go in order. */
static const char *unsupported_prefs(apr_pool_t *pool, const char *required)
{
    static const char *ok[] = {"progressive", "meta:incr", "codeseq:sequential", "concise"};
    char *copy = apr_pstrdup(pool, required), *last = NULL, *tok;
    const char *bad = NULL;

    for (tok = apr_strtok(copy, ",", &last); tok != NULL; tok = apr_strtok(NULL, ",", &last)) {
        apr_size_t i;
        int sat = 0;

        for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
            sat |= strcmp(tok, ok[i]) == 0;
        }
        if (!sat) {
            bad = bad == NULL ? apr_pstrcat(pool, tok, "/r", NULL)
                              : apr_pstrcat(pool, bad, ",", tok, "/r", NULL);
        }
    }
    return bad;
}

/* ----------------------------------------------------------- codestreams */

/* Add the codestreams of ranges (clipped to n) to the set; *clipped when
 * some were out of range. */
static void add_ranges(const apr_array_header_t *ranges, apr_uint64_t n, unsigned char *set,
                       int *clipped)
{
    int i;

    for (i = 0; i < ranges->nelts; i++) {
        const jpip_range_t *r = &APR_ARRAY_IDX(ranges, i, jpip_range_t);
        apr_uint64_t v;

        if (r->hi != JPIP_UINT_NONE && r->hi >= n) {
            *clipped = 1;
        }
        if (r->lo >= n) {
            *clipped = 1;
            continue;
        }
        for (v = r->lo; v < n && v <= r->hi; v += r->step) {
            set[v] = 1;
        }
    }
}

/* The codestreams the request names (stream= and context=jpxl<>), or
 * codestream 0. Fills headers for what was modified or expanded. */
static jpip_code_t choose_codestreams(apr_pool_t *pool, const jpip_serve_target_t *tgt,
                                      const jpip_request_t *req, apr_uint64_t maxcs,
                                      jpip_response_t *resp, apr_array_header_t **out,
                                      jpip_err_t *err)
{
    apr_uint64_t n = jpip_index_ncs(tgt->ix), v;
    unsigned char *set = apr_pcalloc(pool, n > 0 ? n : 1);
    int clipped = 0, any = 0;
    apr_array_header_t *list = apr_array_make(pool, 4, sizeof(apr_uint64_t));

    if (req->stream != NULL) {
        add_ranges(req->stream, n, set, &clipped);
        any = 1;
    }
    if (req->jpxl != NULL) {
        const char *expansion = "";
        int i;

        any = 1;
        for (i = 0; i < req->jpxl->nelts; i++) {
            const jpip_range_t *r = &APR_ARRAY_IDX(req->jpxl, i, jpip_range_t);
            apr_uint64_t layer;

            for (layer = r->lo; layer <= r->hi && layer < 65536; layer += r->step) {
                const apr_uint32_t *cs = NULL;
                apr_uint32_t ncs = 0, k;
                jpip_err_t lerr;

                if (tgt->layout != NULL) {
                    if (jpip_box_layer_codestreams(tgt->layout, (apr_uint32_t)layer, &cs, &ncs,
                                                   &lerr) != JPIP_OK) {
                        break; /* no such layer: the rest are absent too */
                    }
                } else if (layer > 0) {
                    break;
                } else {
                    static const apr_uint32_t zero = 0;
                    cs = &zero;
                    ncs = n > 0 ? 1 : 0;
                }
                for (k = 0; k < ncs; k++) {
                    if (cs[k] < n) {
                        set[cs[k]] = 1;
                        expansion = apr_psprintf(pool, "%s%s%u", expansion,
                                                 *expansion != '\0' ? "," : "", cs[k]);
                    }
                }
            }
        }
        add_header(
            resp, "JPIP-context",
            apr_psprintf(pool, "jpxl<%s>=%s", jpip_ranges_format(pool, req->jpxl), expansion));
    }
    if (!any && n > 0) {
        set[0] = 1;
    }
    for (v = 0; v < n; v++) {
        if (set[v]) {
            if ((apr_uint64_t)list->nelts >= maxcs) {
                clipped = 1;
                break;
            }
            APR_ARRAY_PUSH(list, apr_uint64_t) = v;
        }
    }
    if (clipped && req->stream != NULL) {
        const char *s = "";
        int i;

        for (i = 0; i < list->nelts; i++) {
            s = apr_psprintf(pool, "%s%s%" APR_UINT64_T_FMT, s, i ? "," : "",
                             APR_ARRAY_IDX(list, i, apr_uint64_t));
        }
        add_header(resp, "JPIP-stream", s);
    }
    *out = list;
    (void)err;
    return JPIP_OK;
}

/* ------------------------------------------------------------ metadata */

/* Plan the selected ranges; the messages of each bin end at its boxes'
 * ends (one box or placeholder per message, in file order: clients such as
 * OpenJPIP's read only the first box of each message). done[] marks the
 * bins whose ends the plan has (nbins entries). */
static jpip_code_t plan_metasel(apr_pool_t *pool, const jpip_box_layout_t *layout,
                                jpip_plan_t *plan, const jpip_metasel_t *sel, int force_priority,
                                unsigned char *done, jpip_err_t *err)
{
    apr_size_t i;

    for (i = 0; i < sel->nranges; i++) {
        const jpip_metarange_t *m = &sel->ranges[i];
        jpip_code_t rc;

        if (layout != NULL && m->bin < layout->nbins && !done[m->bin]) {
            const apr_uint64_t *ends;
            apr_size_t n;

            done[m->bin] = 1;
            rc = jpip_metareq_box_ends(layout, m->bin, pool, &ends, &n, err);
            if (rc == JPIP_OK && n > 0) {
                rc = jpip_plan_meta_ends(plan, m->bin, ends, n, err);
            }
            if (rc != JPIP_OK) {
                return rc;
            }
        }
        rc = jpip_plan_add_meta(plan, m->bin, m->off, m->len, force_priority || m->priority, err);
        if (rc != JPIP_OK) {
            return rc;
        }
    }
    return JPIP_OK;
}

/* The metadata rendering needs (always sent), then what metareq asks. */
static jpip_code_t plan_metadata(apr_pool_t *pool, const jpip_serve_target_t *tgt,
                                 const jpip_request_t *req, const apr_array_header_t *cs,
                                 jpip_plan_t *plan, jpip_response_t *resp, int *metadata_only,
                                 int *all_meta, jpip_err_t *err)
{
    jpip_metareq_t mq;
    jpip_metasel_t sel;
    jpip_code_t rc;
    unsigned char *done =
        apr_pcalloc(pool, tgt->layout != NULL && tgt->layout->nbins > 0 ? tgt->layout->nbins : 1);

    *metadata_only = 0;
    *all_meta = jpip_index_nmeta(tgt->ix) <= 1;
    if (tgt->layout == NULL) {
        /* a raw codestream: metadata-bin 0 exists and is empty */
        rc = jpip_plan_add_meta(plan, 0, 0, 0, 1, err);
    } else {
        apr_uint32_t *ids = apr_palloc(pool, sizeof(apr_uint32_t) * (cs->nelts + 1));
        int i;

        for (i = 0; i < cs->nelts; i++) {
            ids[i] = (apr_uint32_t)APR_ARRAY_IDX(cs, i, apr_uint64_t);
        }
        rc = jpip_metareq_render(tgt->layout, ids, (apr_size_t)cs->nelts, pool, &sel, err);
        if (rc == JPIP_OK) {
            rc = plan_metasel(pool, tgt->layout, plan, &sel, 1, done, err);
        }
    }
    if (rc != JPIP_OK || req->metareq == NULL) {
        return rc;
    }
    rc = jpip_metareq_parse(&mq, pool, req->metareq, strlen(req->metareq), err);
    if (rc != JPIP_OK) {
        return rc; /* JPIP_E_REQUEST: the caller answers 400 */
    }
    *metadata_only = mq.metadata_only;
    if (tgt->layout != NULL) {
        rc = jpip_metareq_match(&mq, tgt->layout, pool, &sel, err);
        if (rc != JPIP_OK) {
            return rc;
        }
        if (sel.modified) {
            add_header(resp, "JPIP-metareq", jpip_metareq_format(&mq, 1, pool));
        }
        if (mq.nprops == 1 && mq.props[0].any && mq.props[0].limit == JPIP_MQ_LIMIT_NONE &&
            mq.nitems == 1 && mq.items[0].root == 0) {
            *all_meta = 1;
        }
        rc = plan_metasel(pool, tgt->layout, plan, &sel, 0, done, err);
    }
    return rc;
}

/* ---------------------------------------------------------------- main */

static void report_view(apr_pool_t *pool, const jpip_view_t *v, const jpip_roi_t *roi,
                        jpip_response_t *resp)
{
    if (roi != NULL) {
        /* the window came from the region: say all of it */
        add_header(resp, "JPIP-roi",
                   apr_psprintf(pool,
                                "roi=%s;fsiz=%" APR_UINT64_T_FMT ",%" APR_UINT64_T_FMT
                                ";rsiz=%" APR_UINT64_T_FMT ",%" APR_UINT64_T_FMT
                                ";roff=%" APR_UINT64_T_FMT ",%" APR_UINT64_T_FMT,
                                roi->name, v->fw, v->fh, v->sx, v->sy, v->ox, v->oy));
        add_header(resp, "JPIP-fsiz",
                   apr_psprintf(pool, "%" APR_UINT64_T_FMT ",%" APR_UINT64_T_FMT, v->fw, v->fh));
        add_header(resp, "JPIP-roff",
                   apr_psprintf(pool, "%" APR_UINT64_T_FMT ",%" APR_UINT64_T_FMT, v->ox, v->oy));
        add_header(resp, "JPIP-rsiz",
                   apr_psprintf(pool, "%" APR_UINT64_T_FMT ",%" APR_UINT64_T_FMT, v->sx, v->sy));
    } else if (v->modified & JPIP_VIEW_MOD_FSIZ) {
        add_header(resp, "JPIP-fsiz",
                   apr_psprintf(pool, "%" APR_UINT64_T_FMT ",%" APR_UINT64_T_FMT, v->fw, v->fh));
    }
    if (roi == NULL && (v->modified & JPIP_VIEW_MOD_ROFF)) {
        add_header(resp, "JPIP-roff",
                   apr_psprintf(pool, "%" APR_UINT64_T_FMT ",%" APR_UINT64_T_FMT, v->ox, v->oy));
    }
    if (roi == NULL && (v->modified & JPIP_VIEW_MOD_RSIZ)) {
        add_header(resp, "JPIP-rsiz",
                   apr_psprintf(pool, "%" APR_UINT64_T_FMT ",%" APR_UINT64_T_FMT, v->sx, v->sy));
    }
    if (v->modified & JPIP_VIEW_MOD_COMPS) {
        add_header(resp, "JPIP-comps", v->comps_served);
    }
    if (v->modified & JPIP_VIEW_MOD_LAYERS) {
        add_header(resp, "JPIP-layers", apr_psprintf(pool, "%u", v->layers));
    }
}

/* Does the view cover its whole codestream: full resolution, whole image,
 * every component and layer? */
static int view_is_full(const jpip_index_t *ix, const jpip_view_t *v)
{
    const jpip_ix_cs_t *cs = jpip_index_cs(ix, v->csn);
    apr_uint32_t c;

    if (!v->has_image || v->d != 0 || (v->layers != 0 && v->layers < v->max_layers) ||
        v->region.x0 > cs->siz.xosiz || v->region.y0 > cs->siz.yosiz ||
        v->region.x1 < cs->siz.xsiz || v->region.y1 < cs->siz.ysiz) {
        return 0;
    }
    for (c = 0; c < v->ncomps; c++) {
        if (!v->comps[c]) {
            return 0;
        }
    }
    return 1;
}

/* The window of a `roi` request: the named region's (roi.h), else the
 * request's own with "JPIP-roi: roi=no-roi" and the names on offer in the
 * EOR body. The geometry is the first codestream's. */
static jpip_code_t choose_roi(apr_pool_t *pool, const jpip_serve_target_t *tgt,
                              const jpip_request_t *req, const apr_array_header_t *cs,
                              jpip_response_t *resp, jpip_request_t *wreq, const jpip_roi_t **roi)
{
    const jpip_ix_cs_t *c;
    apr_uint64_t w, h;

    *wreq = *req;
    *roi = NULL;
    if (req->roi == NULL || cs->nelts == 0) {
        return JPIP_OK;
    }
    c = jpip_index_cs(tgt->ix, APR_ARRAY_IDX(cs, 0, apr_uint64_t));
    w = c->siz.xsiz - c->siz.xosiz;
    h = c->siz.ysiz - c->siz.yosiz;
    *roi = jpip_roi_choose(tgt->rois, req->roi, req, w, h);
    if (*roi != NULL) {
        jpip_roi_apply(*roi, w, h, wreq);
        return JPIP_OK;
    }
    add_header(resp, "JPIP-roi", "roi=no-roi");
    resp->eor_body =
        tgt->rois != NULL && tgt->rois->n > 0
            ? apr_psprintf(pool, "no region of interest '%s' in this target; its regions: %s",
                           req->roi, jpip_roi_names(tgt->rois, pool))
            : apr_psprintf(pool, "no region of interest '%s': this target names no regions",
                           req->roi);
    return JPIP_OK;
}

/* The stateless model: the request's model/need fields (when its tid, if
 * any, matches), resolved through the target's res. */
static jpip_code_t stateless_model(apr_pool_t *pool, const jpip_model_resolver_t *res,
                                   const jpip_request_t *req, int tid_ok,
                                   const jpip_serve_opts_t *o, jpip_model_t **m, jpip_err_t *err)
{
    jpip_model_spec_t *model = NULL, *need = NULL;
    jpip_code_t rc;

    *m = NULL;
    if (!tid_ok || (req->model == NULL && req->need == NULL)) {
        return JPIP_OK;
    }
    if (req->model != NULL) {
        rc = jpip_model_parse(pool, req->model, 0, o->max_model_items, &model, err);
        if (rc != JPIP_OK) {
            return rc;
        }
    }
    if (req->need != NULL) {
        rc = jpip_model_parse(pool, req->need, 1, o->max_model_items, &need, err);
        if (rc != JPIP_OK) {
            return rc;
        }
    }
    rc = jpip_model_build(pool, o->max_model_runs, model, need, res, m, err);
    if (rc != JPIP_OK) {
        /* the runs the items make are bounded with them */
        return jpip_err_set_limit(err, JPIP_LIMIT_MODEL_ITEMS);
    }
    return JPIP_OK;
}

jpip_code_t jpip_serve_prepare(apr_pool_t *pool, const jpip_serve_target_t *tgt,
                               const jpip_request_t *req, const jpip_model_t *session_model,
                               const jpip_serve_opts_t *opts, jpip_response_t *resp,
                               jpip_err_t *err)
{
    jpip_serve_opts_t o = *opts;
    jpip_plan_opts_t po;
    jpip_model_resolver_t *res;
    const jpip_model_t *model = session_model;
    jpip_model_t *smodel = NULL;
    apr_array_header_t *cs;
    jpip_request_t wreq; /* the window served: the request's, or its roi's */
    const jpip_roi_t *roi = NULL;
    int tid_ok = 1, metadata_only = 0, all_meta = 0, full = 1, i;
    jpip_code_t rc;

    memset(resp, 0, sizeof(*resp));
    resp->headers = apr_array_make(pool, 8, sizeof(jpip_header_t));
    resp->status = 200;
    if (o.max_entries == 0) {
        o.max_entries = DEFAULT_MAX_ENTRIES;
    }
    if (o.max_model_runs == 0) {
        o.max_model_runs = DEFAULT_MAX_MODEL_RUNS;
    }
    if (o.max_codestreams == 0) {
        o.max_codestreams = DEFAULT_MAX_CODESTREAMS;
    }

    /* fields that need an answer whatever happens. The target id goes
     * out unless the request named the current one (notes: OpenJPIP's
     * server sends it on every answer and its viewer relies on it, T.808
     * requires it when tid differs; a matching tid needs no answer) */
    if (req->tid == NULL) {
        add_header(resp, "JPIP-tid", tgt->tid);
    } else if (strcmp(req->tid, tgt->tid) != 0) {
        add_header(resp, "JPIP-tid", tgt->tid);
        tid_ok = 0; /* the client's cache is of another target version */
    }
    if (req->qid >= 0) {
        add_header(resp, "JPIP-qid", apr_psprintf(pool, "%" APR_INT64_T_FMT, req->qid));
    }
    if (req->handled) {
        add_header(resp, "JPIP-handled", jpip_serve_handled());
    }
    if (req->has_quality) {
        add_header(resp, "JPIP-quality", "-1"); /* quality limiting is not offered */
    }

    if (req->unsupported != NULL) {
        return refuse(
            resp, pool, JPIP_E_UNSUPPORTED,
            apr_psprintf(pool, "the \"%s\" request field is not served", req->unsupported));
    }
    if (req->pref_required != NULL) {
        const char *bad = unsupported_prefs(pool, req->pref_required);
        if (bad != NULL) {
            add_header(resp, "JPIP-pref", bad);
            return refuse(resp, pool, JPIP_E_UNSUPPORTED,
                          apr_psprintf(pool, "required preferences are not supported: %s", bad));
        }
    }
    if (req->type_raw != NULL) {
        if (req->type & (JPIP_TYPE_JPP | JPIP_TYPE_JPP_EXT)) {
            resp->jpt = 0;
        } else if (req->type & (JPIP_TYPE_JPT | JPIP_TYPE_JPT_EXT)) {
            if (target_has_ppm(tgt->ix)) {
                /* tile-parts of a PPM codestream carry no packet headers: a
                 * client could only decode them with the main header's PPM,
                 * which the main header bin cannot carry for JPP clients */
                return refuse(resp, pool, JPIP_E_FORMAT,
                              "jpt-stream is not offered for this target: its packet headers "
                              "are packed in PPM markers; ask for jpp-stream");
            }
            resp->jpt = 1;
        } else {
            return refuse(resp, pool, JPIP_E_FORMAT,
                          apr_psprintf(pool,
                                       "none of the return types \"%s\" is served "
                                       "(jpp-stream, jpt-stream)",
                                       req->type_raw));
        }
    }
    memset(&po, 0, sizeof(po));
    if (req->type_raw != NULL && !resp->jpt) {
        po.extended = (req->type & JPIP_TYPE_JPP) == 0;
    }
    resp->content_type = resp->jpt ? "image/jpt-stream" : "image/jpp-stream";
    po.jpt = resp->jpt;
    po.align = req->align;
    po.max_entries = o.max_entries;
    po.has_len = req->has_len;
    po.len = req->len;
    if (o.max_response > 0 && (!req->has_len || req->len > o.max_response)) {
        po.has_len = 1;
        po.len = o.max_response;
        add_header(resp, "JPIP-len", apr_psprintf(pool, "%" APR_UINT64_T_FMT, po.len));
    }
    /* Without a byte limit the whole window goes out: interleaving layers
     * (the best picture for a cut answer) only costs messages then. */
    po.whole_bins = !po.has_len;
    po.rend = tgt->rend;
    /* one resolver for the request's model and the plan (which keeps it) */
    res = apr_palloc(pool, sizeof(*res));
    jpip_serve_resolver(tgt->ix, res);
    po.res = res;
    resp->rend = tgt->rend;
    if (model == NULL) {
        rc = stateless_model(pool, res, req, tid_ok, &o, &smodel, err);
        if (rc != JPIP_OK) {
            return refuse_err(resp, pool, err);
        }
        model = smodel;
    }
    rc = choose_codestreams(pool, tgt, req, o.max_codestreams, resp, &cs, err);
    if (rc == JPIP_OK) {
        rc = jpip_plan_create(&resp->plan, pool, tgt->ix, model, &po, err);
    }
    if (rc == JPIP_OK) {
        rc = plan_metadata(pool, tgt, req, cs, resp->plan, resp, &metadata_only, &all_meta, err);
    }
    if (rc != JPIP_OK) {
        return refuse_err(resp, pool, err);
    }
    rc = choose_roi(pool, tgt, req, cs, resp, &wreq, &roi);
    if (rc != JPIP_OK) {
        return rc;
    }
    for (i = 0; i < cs->nelts; i++) {
        jpip_view_t v;
        jpip_request_t r = wreq;

        if (metadata_only) {
            r.has_fsiz = 0;
        }
        rc = jpip_view_resolve(tgt->ix, APR_ARRAY_IDX(cs, i, apr_uint64_t), &r, pool, &v, err);
        if (rc == JPIP_OK) {
            rc = jpip_plan_add_view(resp->plan, &v, err);
        }
        if (rc != JPIP_OK) {
            return refuse_err(resp, pool, err);
        }
        if (i == 0) {
            report_view(pool, &v, roi, resp);
        }
        full &= view_is_full(tgt->ix, &v);
    }
    resp->covers_target =
        full && all_meta && (apr_uint64_t)cs->nelts == jpip_index_ncs(tgt->ix) && !resp->jpt;
    return JPIP_OK;
}

/* Copy the body of one message into ctx->out via write. */
typedef struct stream_ctx_t {
    jpip_src_t *src;
    jpip_serve_write_fn write;
    void *wctx;
    unsigned char *buf;
} stream_ctx_t;

static jpip_code_t stream_piece(void *vctx, apr_uint64_t off, apr_uint64_t len,
                                const unsigned char *synth, jpip_err_t *err)
{
    stream_ctx_t *c = vctx;

    if (synth != NULL) {
        return c->write(c->wctx, synth, (apr_size_t)len, err);
    }
    while (len > 0) {
        apr_size_t n = len > JPIP_SRC_PEEK_MAX ? JPIP_SRC_PEEK_MAX : (apr_size_t)len;
        jpip_code_t rc = jpip_src_read(c->src, off, c->buf, n, err);

        if (rc == JPIP_OK) {
            rc = c->write(c->wctx, c->buf, n, err);
        }
        if (rc != JPIP_OK) {
            return rc;
        }
        off += n;
        len -= n;
    }
    return JPIP_OK;
}

jpip_code_t jpip_serve_stream(apr_pool_t *pool, const jpip_response_t *resp, const jpip_index_t *ix,
                              jpip_src_t *src, jpip_serve_write_fn write, void *wctx,
                              jpip_err_t *err)
{
    jpip_msg_t msgs[32];
    apr_size_t n, i;
    stream_ctx_t c;
    jpip_code_t rc;

    c.src = src;
    c.write = write;
    c.wctx = wctx;
    c.buf = apr_palloc(pool, JPIP_SRC_PEEK_MAX);
    for (;;) {
        rc = jpip_plan_next(resp->plan, msgs, 32, &n, err);
        if (rc != JPIP_OK || n == 0) {
            break;
        }
        for (i = 0; i < n && rc == JPIP_OK; i++) {
            if (msgs[i].rend_off != JPIP_REND_NONE) {
                rc = write(wctx, jpip_rend_data(resp->rend) + msgs[i].rend_off,
                           msgs[i].hdr_len + (apr_size_t)msgs[i].len, err);
                continue;
            }
            rc = write(wctx, msgs[i].hdr, msgs[i].hdr_len, err);
            if (rc == JPIP_OK) {
                rc = jpip_plan_pieces(ix, &msgs[i], stream_piece, &c, err);
            }
        }
        if (rc != JPIP_OK) {
            return rc;
        }
    }
    if (rc != JPIP_OK) {
        return rc;
    }
    {
        apr_size_t elen;
        const unsigned char *e = jpip_serve_eor_msg(pool, resp, jpip_serve_eor(resp), &elen);

        return write(wctx, e, elen, err);
    }
}

const unsigned char *jpip_serve_eor_msg(apr_pool_t *pool, const jpip_response_t *resp,
                                        unsigned reason, apr_size_t *len)
{
    apr_size_t blen = resp->eor_body != NULL ? strlen(resp->eor_body) : 0;
    unsigned char *out = apr_palloc(pool, JPIP_JPP_EOR_HEAD_MAX + blen);
    apr_size_t n = jpip_jpp_eor_head(reason, blen, out);

    if (blen > 0) {
        memcpy(out + n, resp->eor_body, blen);
    }
    *len = n + blen;
    return out;
}

apr_size_t jpip_serve_eor_len(const jpip_response_t *resp)
{
    apr_size_t blen = resp->eor_body != NULL ? strlen(resp->eor_body) : 0;

    return 2 + jpip_vbas_size(blen) + blen;
}

unsigned jpip_serve_eor(const jpip_response_t *resp)
{
    unsigned eor = jpip_plan_eor(resp->plan);

    return eor == JPIP_EOR_WINDOW_DONE && resp->covers_target ? JPIP_EOR_IMAGE_DONE : eor;
}
