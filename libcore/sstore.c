/* mod_jpip: the session store's semantics shared by every backend. */
#include "sstore.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <apr_atomic.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <apr_strings.h>

/* ---- through the table -------------------------------------------- */

jpip_sstore_rc_t jpip_sstore_target(jpip_sstore_t *st, const char *cid, apr_pool_t *p,
                                    const char **target, jpip_err_t *err)
{
    if (!jpip_cid_valid(cid)) {
        jpip_err_set(err, JPIP_E_NOTFOUND, "not a channel id of this server");
        return JPIP_SSTORE_GONE;
    }
    return st->ops->target(st, cid, p, target, err);
}

jpip_sstore_rc_t jpip_sstore_open(jpip_sstore_t *st, const char *cid, const char *target,
                                  const char *tid, const char *client, int jpt,
                                  char out[JPIP_CID_LEN + 1], jpip_err_t *err)
{
    if (cid != NULL && !jpip_cid_valid(cid)) {
        jpip_err_set(err, JPIP_E_NOTFOUND, "not a channel id of this server");
        return JPIP_SSTORE_GONE;
    }
    return st->ops->open(st, cid, target, tid, client, jpt, out, err);
}

static int spec_cuts(const jpip_model_spec_t *spec)
{
    apr_size_t i;

    if (spec == NULL) {
        return 0;
    }
    if (spec->need) {
        return 1;
    }
    for (i = 0; i < spec->nitems; i++) {
        if (spec->items[i].subtract) {
            return 1;
        }
    }
    return 0;
}

jpip_sstore_rc_t jpip_sstore_claim(jpip_sstore_t *st, apr_pool_t *pool, const char *cid,
                                   apr_int64_t qid, int wait, const char *tid,
                                   const jpip_model_spec_t *model, const jpip_model_spec_t *need,
                                   const jpip_model_resolver_t *res, jpip_sclaim_t **out,
                                   jpip_err_t *err)
{
    jpip_sclaim_t *c = apr_pcalloc(pool, sizeof(*c));
    jpip_sstore_rc_t rc;
    jpip_model_t *m;
    jpip_err_t ignored;

    if (!jpip_cid_valid(cid)) {
        jpip_err_set(err, JPIP_E_NOTFOUND, "not a channel id of this server");
        return JPIP_SSTORE_GONE;
    }
    c->st = st;
    c->pool = pool;
    c->res = res != NULL ? apr_pmemdup(pool, res, sizeof(*res)) : NULL;
    apr_cpystrn(c->cid, cid, sizeof(c->cid));
    rc = st->ops->claim(st, c, qid, wait, err);
    if (rc != JPIP_SSTORE_OK) {
        return rc;
    }
    m = jpip_session_model(c->s);
    if (strcmp(c->s->tid, tid) != 0) {
        /* the file changed since the session began: its model is stale */
        jpip_model_clear(m, 0);
        apr_cpystrn(c->s->tid, tid, sizeof(c->s->tid));
        c->tid_changed = 1;
    }
    /* declared holdings (and, for need, what the client lacks) persist in
     * the session; a field that does not fit the model is ignored */
    if (model != NULL) {
        jpip_model_apply(m, model, res, &ignored);
    }
    if (need != NULL) {
        jpip_model_apply(m, need, res, &ignored);
    }
    c->cut = spec_cuts(model) || spec_cuts(need) || c->tid_changed || c->reclaimed;
    /* the snapshot: planned from, and put back if the answer fails. A
     * copy, not a load: the record's model was checked when it entered the
     * store (a backend that fetches records checks them then) and has been
     * kept valid since */
    if (jpip_model_create(pool, jpip_model_runs(m) + 1, 0, &c->snap, err) != JPIP_OK ||
        jpip_model_copy(c->snap, m, err) != JPIP_OK) {
        jpip_sstore_release(c, 1, NULL, 0);
        return JPIP_SSTORE_ERROR;
    }
    if (c->cut && st->ops->sync(c, err) != JPIP_SSTORE_OK) {
        /* what the client discarded must be known before anything is sent */
        jpip_sstore_release(c, 0, NULL, 0);
        return JPIP_SSTORE_DOWN;
    }
    *out = c;
    return JPIP_SSTORE_OK;
}

const jpip_model_t *jpip_sclaim_model(const jpip_sclaim_t *c)
{
    return c->snap;
}

int jpip_sclaim_closed(jpip_sclaim_t *c)
{
    return apr_atomic_read32(&c->s->closed) != 0;
}

int jpip_sclaim_preempted(jpip_sclaim_t *c)
{
    return c->st->ops->preempted(c);
}

jpip_sstore_rc_t jpip_sclaim_record(jpip_sclaim_t *c, const jpip_model_sent_t *sent, apr_size_t n,
                                    apr_uint64_t bytes, jpip_err_t *err)
{
    jpip_model_batch_t *b = NULL;
    jpip_sstore_rc_t rc = JPIP_SSTORE_OK;

    if (jpip_sclaim_closed(c)) {
        jpip_err_set(err, JPIP_E_LIMIT, "the session was closed");
        return JPIP_SSTORE_FULL;
    }
    /* one pass over the model for all of them; a range that does not
     * extend what is held leaves a hole the model cannot express: not
     * recorded, at worst sent again */
    if (jpip_model_batch_make(&b, sent, n, err) != JPIP_OK ||
        /* what may not fit the record's model goes to a spill model in
         * process memory, made to fit when the claim is released */
        jpip_model_record_spill(jpip_session_model(c->s), c->res, &c->spill, b, err) != JPIP_OK) {
        /* the model is full: end the session rather than send twice */
        apr_atomic_set32(&c->s->closed, 1);
        rc = JPIP_SSTORE_FULL;
    }
    jpip_model_batch_free(b);
    c->s->bytes += bytes;
    c->sent += bytes;
    return rc;
}

jpip_sstore_rc_t jpip_sclaim_sync(jpip_sclaim_t *c, jpip_err_t *err)
{
    return c->st->ops->sync(c, err);
}

void jpip_sstore_release(jpip_sclaim_t *c, int delivered, const char *const *cclose, int nclose)
{
    /* the spill goes back to the record's model; what does not fit is
     * forgotten (sent again later, never skipped) */
    jpip_model_unspill(jpip_session_model(c->s), c->spill);
    c->spill = NULL;
    if (!delivered) {
        jpip_err_t ignored;

        /* nothing of an answer that did not complete counts as held; the
         * snapshot's runs fit, since they came from this model */
        if (jpip_model_copy(jpip_session_model(c->s), c->snap, &ignored) != JPIP_OK) {
            jpip_model_clear(jpip_session_model(c->s), 0);
        }
    }
    c->st->ops->release(c, cclose, nclose);
}

void jpip_sstore_stats(jpip_sstore_t *st, jpip_sstore_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    st->ops->stats(st, out);
}

/* ---- helpers ------------------------------------------------------- */

apr_uint64_t jpip_proc_start(long pid)
{
    char path[64], buf[1024];
    const char *p;
    FILE *f;
    size_t n;
    int field;
    unsigned long long v = 0;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* the name in parentheses may hold spaces: count from the last ')';
     * the start time is field 22, the 20th after it */
    p = strrchr(buf, ')');
    if (p == NULL) {
        return 0;
    }
    for (field = 2; field < 22 && *p != '\0'; p++) {
        if (*p == ' ') {
            field++;
        }
    }
    if (field != 22 || sscanf(p, "%llu", &v) != 1) {
        return 0;
    }
    return (apr_uint64_t)v;
}

apr_uint64_t jpip_proc_self_start(void)
{
    static volatile apr_uint32_t pid;
    static volatile apr_uint64_t start;
    apr_uint32_t me = (apr_uint32_t)getpid();

    if (apr_atomic_read32(&pid) != me) {
        /* first use in this process (a fork copies the parent's) */
        apr_atomic_set64(&start, jpip_proc_start((long)me));
        apr_atomic_set32(&pid, me);
    }
    return apr_atomic_read64(&start);
}

int jpip_sstore_owner_gone(const jpip_session_t *s)
{
    apr_uint64_t start;

    if (s->busy == 0 || s->owner == 0) {
        return 0;
    }
    if (kill((pid_t)s->owner, 0) != 0) {
        return errno == ESRCH; /* EPERM: it exists */
    }
    /* a process of that id lives; is it the one that claimed? */
    start = jpip_proc_start((long)s->owner);
    return s->owner_start != 0 && start != 0 && start != s->owner_start;
}

void jpip_client_group(const char *addr, int v4_prefix, int v6_prefix, char out[48])
{
    unsigned char a[16];
    char txt[64];
    int bits, i;
    int family = strchr(addr, ':') != NULL ? AF_INET6 : AF_INET;

    if (inet_pton(family, addr, a) != 1) {
        apr_cpystrn(out, addr, 48);
        return;
    }
    bits = family == AF_INET6 ? v6_prefix : v4_prefix;
    if (bits <= 0 || bits >= (family == AF_INET6 ? 128 : 32)) {
        apr_cpystrn(out, addr, 48);
        return;
    }
    for (i = 0; i < (family == AF_INET6 ? 16 : 4); i++) {
        int keep = bits - 8 * i;
        a[i] &= keep >= 8 ? 0xff : keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));
    }
    if (inet_ntop(family, a, txt, sizeof(txt)) == NULL) {
        apr_cpystrn(out, addr, 48);
        return;
    }
    apr_snprintf(out, 48, "%s/%d", txt, bits);
}

int jpip_cid_valid(const char *cid)
{
    return cid != NULL && strlen(cid) == JPIP_CID_LEN &&
           strspn(cid, jpip_cid_alphabet) == JPIP_CID_LEN;
}

void jpip_sstore_count(jpip_sstore_t *st, volatile apr_uint64_t *counter, apr_uint64_t n)
{
    (void)st;
    apr_atomic_add64(counter, n);
}
