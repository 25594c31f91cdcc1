/* mod_jpip: parsing and typing a JPIP request. */
#include "request.h"

#include <string.h>

#include <apr_strings.h>

#include "fields.h"

/* ----------------------------------------------------------- lexical items */

/* Parse a UINT of at most 32 bits at *p, advancing *p. */
static int lex_u32(const char **p, apr_uint32_t *out)
{
    const char *s = *p;
    apr_uint64_t v = 0;

    if (*s < '0' || *s > '9') {
        return 0;
    }
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (apr_uint64_t)(*s - '0');
        if (v > 0xFFFFFFFFull) {
            return 0;
        }
        s++;
    }
    *out = (apr_uint32_t)v;
    *p = s;
    return 1;
}

static int lex_u64(const char **p, apr_uint64_t *out)
{
    const char *s = *p;
    apr_uint64_t v = 0;

    if (*s < '0' || *s > '9') {
        return 0;
    }
    while (*s >= '0' && *s <= '9') {
        unsigned d = (unsigned)(*s - '0');
        if (v > (APR_UINT64_MAX - d) / 10) {
            return 0;
        }
        v = v * 10 + d;
        s++;
    }
    *out = v;
    *p = s;
    return 1;
}

/* UFLOAT: digits with at most one '.', at least one digit. */
static int is_ufloat(const char *s)
{
    int digits = 0, dots = 0;

    for (; *s != '\0'; s++) {
        if (*s >= '0' && *s <= '9') {
            digits++;
        } else if (*s == '.' && dots == 0) {
            dots++;
        } else {
            return 0;
        }
    }
    return digits > 0;
}

/* Token characters for ids (tid, cid, roi names). */
static int is_token(const char *s, apr_size_t maxlen)
{
    apr_size_t n = 0;

    for (; *s != '\0'; s++, n++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7F || strchr("()<>@,;:\\\"/[]?={}", c) != NULL) {
            return 0;
        }
    }
    return n > 0 && n <= maxlen;
}

/* UINT-RANGE [":" UINT] at *p. */
static int lex_range(const char **p, int sampled, jpip_range_t *r)
{
    const char *s = *p;

    if (!lex_u32(&s, &r->lo)) {
        return 0;
    }
    r->hi = r->lo;
    r->step = 1;
    if (*s == '-') {
        s++;
        if (*s >= '0' && *s <= '9') {
            if (!lex_u32(&s, &r->hi) || r->hi < r->lo) {
                return 0;
            }
        } else {
            r->hi = JPIP_UINT_NONE;
        }
    }
    if (sampled && *s == ':') {
        s++;
        if (!lex_u32(&s, &r->step) || r->step == 0) {
            return 0;
        }
    }
    *p = s;
    return 1;
}

/* 1#range up to the end of the string (or a terminator char). */
static int lex_range_list(apr_pool_t *pool, const char **p, int sampled, char term,
                          apr_array_header_t **out)
{
    apr_array_header_t *a = apr_array_make(pool, 4, sizeof(jpip_range_t));
    const char *s = *p;

    for (;;) {
        jpip_range_t *r = apr_array_push(a);
        if (!lex_range(&s, sampled, r)) {
            return 0;
        }
        if (*s == ',') {
            s++;
            continue;
        }
        break;
    }
    if (*s != term) {
        return 0;
    }
    *p = s;
    *out = a;
    return 1;
}

static int parse_pair(const char *v, apr_uint32_t *a, apr_uint32_t *b, const char **rest)
{
    const char *s = v;

    if (!lex_u32(&s, a) || *s != ',') {
        return 0;
    }
    s++;
    if (!lex_u32(&s, b)) {
        return 0;
    }
    *rest = s;
    return 1;
}

static int parse_yesno(const char *v, int *out)
{
    if (strcmp(v, "yes") == 0) {
        *out = 1;
        return 1;
    }
    if (strcmp(v, "no") == 0) {
        *out = 0;
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ field parsers */

typedef jpip_code_t (*field_fn)(apr_pool_t *pool, const char *v, jpip_request_t *req,
                                jpip_err_t *err);

static jpip_code_t bad(jpip_err_t *err, const char *field, const char *why)
{
    return jpip_err_set(err, JPIP_E_REQUEST, "malformed \"%s\" field: %s", field, why);
}

static jpip_code_t f_target(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    if (*v == '\0') {
        return bad(err, "target", "empty");
    }
    req->target = v;
    return JPIP_OK;
}

static jpip_code_t f_subtarget(apr_pool_t *pool, const char *v, jpip_request_t *req,
                               jpip_err_t *err)
{
    if (*v == '\0') {
        return bad(err, "subtarget", "empty");
    }
    req->subtarget = v;
    if (req->unsupported == NULL) {
        req->unsupported = "subtarget";
    }
    return JPIP_OK;
}

static jpip_code_t f_tid(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    if (!is_token(v, 255)) {
        return bad(err, "tid", "expected 1 to 255 token characters");
    }
    req->tid = v;
    return JPIP_OK;
}

static jpip_code_t f_cid(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    if (!is_token(v, 255)) {
        return bad(err, "cid", "expected a channel id of 1 to 255 token characters");
    }
    req->cid = v;
    return JPIP_OK;
}

static jpip_code_t f_cnew(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    char *copy = apr_pstrdup(pool, v), *last = NULL, *tok;
    int n = 0;

    for (tok = apr_strtok(copy, ",", &last); tok != NULL; tok = apr_strtok(NULL, ",", &last)) {
        if (!is_token(tok, 64)) {
            return bad(err, "cnew", "expected a list of transport names");
        }
        if (strcmp(tok, "http") == 0) {
            req->cnew |= JPIP_TRANSPORT_HTTP;
        } else if (strcmp(tok, "http-tcp") == 0) {
            req->cnew |= JPIP_TRANSPORT_HTTP_TCP;
        } else if (strcmp(tok, "http-udp") == 0) {
            req->cnew |= JPIP_TRANSPORT_HTTP_UDP;
        }
        n++;
    }
    if (n == 0) {
        return bad(err, "cnew", "no transport named");
    }
    req->cnew_raw = v;
    return JPIP_OK;
}

static jpip_code_t f_cclose(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    char *copy = apr_pstrdup(pool, v), *last = NULL, *tok;

    req->cclose = apr_array_make(pool, 2, sizeof(const char *));
    for (tok = apr_strtok(copy, ",", &last); tok != NULL; tok = apr_strtok(NULL, ",", &last)) {
        if (strcmp(tok, "*") != 0 && !is_token(tok, 255)) {
            return bad(err, "cclose", "expected \"*\" or a list of channel ids");
        }
        APR_ARRAY_PUSH(req->cclose, const char *) = tok;
    }
    if (req->cclose->nelts == 0) {
        return bad(err, "cclose", "no channel named");
    }
    return JPIP_OK;
}

static jpip_code_t f_qid(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    apr_uint32_t q;
    const char *s = v;

    if (!lex_u32(&s, &q) || *s != '\0') {
        return bad(err, "qid", "expected an unsigned integer");
    }
    req->qid = q;
    return JPIP_OK;
}

static jpip_code_t f_fsiz(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    const char *rest;

    if (!parse_pair(v, &req->fx, &req->fy, &rest)) {
        return bad(err, "fsiz", "expected fx,fy[,round-direction]");
    }
    if (req->fx == 0 || req->fy == 0) {
        return bad(err, "fsiz", "frame sizes must be greater than 0");
    }
    req->round = JPIP_ROUND_DOWN;
    if (*rest == ',') {
        rest++;
        if (strcmp(rest, "round-down") == 0) {
            req->round = JPIP_ROUND_DOWN;
        } else if (strcmp(rest, "round-up") == 0) {
            req->round = JPIP_ROUND_UP;
        } else if (strcmp(rest, "closest") == 0) {
            req->round = JPIP_ROUND_CLOSEST;
        } else {
            return bad(err, "fsiz", "round direction must be round-down, round-up or closest");
        }
    } else if (*rest != '\0') {
        return bad(err, "fsiz", "expected fx,fy[,round-direction]");
    }
    req->has_fsiz = 1;
    return JPIP_OK;
}

static jpip_code_t f_roff(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    const char *rest;

    if (!parse_pair(v, &req->ox, &req->oy, &rest) || *rest != '\0') {
        return bad(err, "roff", "expected ox,oy");
    }
    req->has_roff = 1;
    return JPIP_OK;
}

static jpip_code_t f_rsiz(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    const char *rest;

    if (!parse_pair(v, &req->sx, &req->sy, &rest) || *rest != '\0') {
        return bad(err, "rsiz", "expected sx,sy");
    }
    req->has_rsiz = 1;
    return JPIP_OK;
}

static jpip_code_t f_comps(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    const char *s = v;

    if (!lex_range_list(pool, &s, 0, '\0', &req->comps)) {
        return bad(err, "comps", "expected a list of component ranges such as 0-2,5");
    }
    return JPIP_OK;
}

static jpip_code_t f_stream(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    const char *s = v;

    if (!lex_range_list(pool, &s, 1, '\0', &req->stream)) {
        return bad(err, "stream", "expected a list of codestream ranges such as 0,2-5:2");
    }
    return JPIP_OK;
}

static jpip_code_t f_mset(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    const char *s = v;

    if (!lex_range_list(pool, &s, 1, '\0', &req->mset)) {
        return bad(err, "mset", "expected a list of codestream ranges");
    }
    return JPIP_OK;
}

/* context = 1#context-range; we interpret jpxl<ranges>[...] and skip the
 * rest (mj2t, other context types) as the standard allows. */
static jpip_code_t f_context(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    const char *s = v;

    req->context = v;
    while (*s != '\0') {
        const char *lt = strchr(s, '<');
        const char *gt;
        apr_size_t tlen;

        if (lt == NULL || (gt = strchr(lt, '>')) == NULL) {
            return bad(err, "context", "expected type<ranges>, e.g. jpxl<0-3>");
        }
        tlen = (apr_size_t)(lt - s);
        if (tlen == 4 && strncmp(s, "jpxl", 4) == 0) {
            const char *r = lt + 1;
            apr_array_header_t *ranges;

            if (!lex_range_list(pool, &r, 1, '>', &ranges)) {
                return bad(err, "context", "malformed jpxl<...> layer ranges");
            }
            if (req->jpxl == NULL) {
                req->jpxl = ranges;
            } else {
                apr_array_cat(req->jpxl, ranges);
            }
        }
        s = gt + 1;
        if (*s == '[') { /* geometry or track qualifier: skip it */
            const char *close = strchr(s, ']');
            if (close == NULL) {
                return bad(err, "context", "unterminated [...]");
            }
            s = close + 1;
        }
        if (*s == ',') {
            s++;
            if (*s == '\0') {
                return bad(err, "context", "trailing comma");
            }
        } else if (*s != '\0') {
            return bad(err, "context", "expected ',' between context ranges");
        }
    }
    return JPIP_OK;
}

static jpip_code_t f_layers(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    const char *s = v;

    if (!lex_u32(&s, &req->layers) || *s != '\0') {
        return bad(err, "layers", "expected an unsigned integer");
    }
    req->has_layers = 1;
    return JPIP_OK;
}

static jpip_code_t f_srate(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    if (!is_ufloat(v)) {
        return bad(err, "srate", "expected a non-negative decimal number");
    }
    req->srate = v;
    return JPIP_OK;
}

static jpip_code_t f_drate(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    if (!is_ufloat(v)) {
        return bad(err, "drate", "expected a non-negative decimal number");
    }
    req->drate = v;
    return JPIP_OK;
}

static jpip_code_t f_roi(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    if (!is_token(v, 255)) {
        return bad(err, "roi", "expected a region name");
    }
    req->roi = v;
    return JPIP_OK;
}

static jpip_code_t f_metareq(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    if (*v != '[') {
        return bad(err, "metareq", "expected [box-type...]");
    }
    req->metareq = v;
    return JPIP_OK;
}

static jpip_code_t f_len(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    const char *s = v;

    if (!lex_u64(&s, &req->len) || *s != '\0') {
        return bad(err, "len", "expected a byte count");
    }
    req->has_len = 1;
    return JPIP_OK;
}

static jpip_code_t f_quality(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    const char *s = v;
    apr_uint32_t q;

    if (!lex_u32(&s, &q) || *s != '\0' || q > 100) {
        return bad(err, "quality", "expected 0 to 100");
    }
    req->quality = q;
    req->has_quality = 1;
    return JPIP_OK;
}

static jpip_code_t f_align(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    return parse_yesno(v, &req->align) ? JPIP_OK : bad(err, "align", "expected yes or no");
}

static jpip_code_t f_wait(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    return parse_yesno(v, &req->wait) ? JPIP_OK : bad(err, "wait", "expected yes or no");
}

/* type = 1#image-return-type; unknown types are simply not acceptable. */
static jpip_code_t f_type(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    char *copy = apr_pstrdup(pool, v), *last = NULL, *tok;

    req->type_raw = v;
    for (tok = apr_strtok(copy, ",", &last); tok != NULL; tok = apr_strtok(NULL, ",", &last)) {
        char *params = strchr(tok, ';');
        int ext = 0;

        while (*tok == ' ') {
            tok++;
        }
        if (params != NULL) {
            *params++ = '\0';
            ext = strstr(params, "ptype=ext") != NULL || strstr(params, "ttype=ext") != NULL;
        }
        if (strncmp(tok, "image/", 6) == 0) {
            tok += 6;
        }
        if (strcmp(tok, "jpp-stream") == 0) {
            req->type |= ext ? JPIP_TYPE_JPP_EXT : JPIP_TYPE_JPP;
        } else if (strcmp(tok, "jpt-stream") == 0) {
            req->type |= ext ? JPIP_TYPE_JPT_EXT : JPIP_TYPE_JPT;
        } else if (strcmp(tok, "raw") == 0) {
            req->type |= JPIP_TYPE_RAW;
        } else if (strcmp(tok, "*") == 0 || strcmp(tok, "*/*") == 0) {
            req->type |= JPIP_TYPE_JPP | JPIP_TYPE_JPT;
        }
    }
    return JPIP_OK;
}

static jpip_code_t f_model(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    req->model = v;
    return JPIP_OK;
}

static jpip_code_t f_tpmodel(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    req->tpmodel = v;
    return JPIP_OK;
}

static jpip_code_t f_need(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    req->need = v;
    return JPIP_OK;
}

static jpip_code_t f_tpneed(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    req->tpneed = v;
    return JPIP_OK;
}

static jpip_code_t f_cap(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    req->cap = v;
    return JPIP_OK;
}

/* pref = 1#related-pref-set; a set ending in "/r" is required. */
static jpip_code_t f_pref(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    char *copy = apr_pstrdup(pool, v), *last = NULL, *tok;

    req->pref = v;
    for (tok = apr_strtok(copy, ",", &last); tok != NULL; tok = apr_strtok(NULL, ",", &last)) {
        apr_size_t n = strlen(tok);

        if (n >= 2 && strcmp(tok + n - 2, "/r") == 0) {
            tok[n - 2] = '\0';
            req->pref_required = req->pref_required == NULL
                                     ? tok
                                     : apr_pstrcat(pool, req->pref_required, ",", tok, NULL);
        }
    }
    return JPIP_OK;
}

static jpip_code_t f_handled(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    req->handled = 1;
    return JPIP_OK;
}

static jpip_code_t f_ignored(apr_pool_t *pool, const char *v, jpip_request_t *req, jpip_err_t *err)
{
    return JPIP_OK;
}

/* Recognised fields that this server does not serve: answered with 501. */
static jpip_code_t f_unsupported(apr_pool_t *pool, const char *v, jpip_request_t *req,
                                 jpip_err_t *err)
{
    return JPIP_OK; /* name recorded by the caller */
}

static const struct {
    const char *name;
    field_fn fn;
} field_table[] = {
    {"target", f_target},
    {"subtarget", f_subtarget},
    {"tid", f_tid},
    {"cid", f_cid},
    {"cnew", f_cnew},
    {"cclose", f_cclose},
    {"qid", f_qid},
    {"fsiz", f_fsiz},
    {"roff", f_roff},
    {"rsiz", f_rsiz},
    {"comps", f_comps},
    {"stream", f_stream},
    {"context", f_context},
    {"srate", f_srate},
    {"roi", f_roi},
    {"layers", f_layers},
    {"metareq", f_metareq},
    {"len", f_len},
    {"quality", f_quality},
    {"align", f_align},
    {"wait", f_wait},
    {"type", f_type},
    {"drate", f_drate},
    {"model", f_model},
    {"tpmodel", f_tpmodel},
    {"need", f_need},
    {"tpneed", f_tpneed},
    {"mset", f_mset},
    {"cap", f_cap},
    {"pref", f_pref},
    {"csf", f_ignored},
    {"handled", f_handled},
    {"upload", f_unsupported},
    {"xpbox", f_unsupported},
    {"xpbin", f_unsupported},
    {"xpquery", f_unsupported},
    {"abandon", f_unsupported},
    {"barrier", f_unsupported},
    {"sendto", f_unsupported},
    {"twait", f_unsupported},
};

jpip_code_t jpip_request_parse(apr_pool_t *pool, const apr_array_header_t *fields,
                               jpip_request_t *req, jpip_err_t *err)
{
    int i;

    memset(req, 0, sizeof(*req));
    req->qid = -1;
    for (i = 0; i < fields->nelts; i++) {
        const jpip_field_t *f = &APR_ARRAY_IDX(fields, i, jpip_field_t);
        apr_size_t k;
        int found = 0;

        for (k = 0; k < sizeof(field_table) / sizeof(field_table[0]); k++) {
            if (strcmp(field_table[k].name, f->name) == 0) {
                jpip_code_t rc;

                if (!f->has_value && field_table[k].fn != f_handled) {
                    return jpip_err_set(err, JPIP_E_REQUEST, "field \"%s\" needs a value", f->name);
                }
                rc = field_table[k].fn(pool, f->value, req, err);
                if (rc != JPIP_OK) {
                    return rc;
                }
                if (field_table[k].fn == f_unsupported && req->unsupported == NULL) {
                    req->unsupported = field_table[k].name;
                }
                found = 1;
                break;
            }
        }
        if (!found) {
            return jpip_err_set(err, JPIP_E_REQUEST, "unrecognised request field \"%.40s\"",
                                f->name);
        }
    }
    if ((req->has_roff || req->has_rsiz) && !req->has_fsiz) {
        return jpip_err_set(err, JPIP_E_REQUEST,
                            "\"%s\" needs \"fsiz\": a region is relative to a frame size",
                            req->has_roff ? "roff" : "rsiz");
    }
    /* `cclose=<ids>` with no cid and no target (OpenJPIP's viewer closes its
     * channel so) is a request on the first channel it names, of the session
     * whose channels it closes. "*" alone names no channel to speak on. */
    if (req->cclose != NULL && req->cid == NULL && req->target == NULL && !req->cnew &&
        strcmp(APR_ARRAY_IDX(req->cclose, 0, const char *), "*") != 0) {
        req->cid = APR_ARRAY_IDX(req->cclose, 0, const char *);
    }
    return JPIP_OK;
}

int jpip_ranges_contain(const apr_array_header_t *ranges, apr_uint32_t v)
{
    int i;

    if (ranges == NULL) {
        return 1;
    }
    for (i = 0; i < ranges->nelts; i++) {
        const jpip_range_t *r = &APR_ARRAY_IDX(ranges, i, jpip_range_t);
        if (v >= r->lo && v <= r->hi && (v - r->lo) % r->step == 0) {
            return 1;
        }
    }
    return 0;
}

const char *jpip_ranges_format(apr_pool_t *pool, const apr_array_header_t *ranges)
{
    const char *out = "";
    int i;

    for (i = 0; ranges != NULL && i < ranges->nelts; i++) {
        const jpip_range_t *r = &APR_ARRAY_IDX(ranges, i, jpip_range_t);
        const char *one;

        if (r->hi == r->lo) {
            one = apr_psprintf(pool, "%u", r->lo);
        } else if (r->hi == JPIP_UINT_NONE) {
            one = apr_psprintf(pool, "%u-", r->lo);
        } else {
            one = apr_psprintf(pool, "%u-%u", r->lo, r->hi);
        }
        if (r->step > 1) {
            one = apr_psprintf(pool, "%s:%u", one, r->step);
        }
        out = i == 0 ? one : apr_pstrcat(pool, out, ",", one, NULL);
    }
    return out;
}
