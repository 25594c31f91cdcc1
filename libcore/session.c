/* mod_jpip: a JPIP session record. */
#include "session.h"

#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#define SESSION_MAGIC 0x4A505353u /* "JPSS" */

static apr_size_t header_bytes(void)
{
    return (sizeof(jpip_session_t) + 7) & ~(apr_size_t)7;
}

apr_size_t jpip_session_bytes_for(apr_size_t model_bytes)
{
    return header_bytes() + ((model_bytes + 7) & ~(apr_size_t)7);
}

jpip_code_t jpip_session_init(void *buf, apr_size_t size, const char *target, const char *tid,
                              apr_time_t now, jpip_session_t **out, jpip_err_t *err)
{
    jpip_session_t *s = buf;
    jpip_model_t *m;
    jpip_code_t rc;

    if (size < header_bytes() + jpip_model_bytes_for(1) || size > 0xFFFFFFFFu) {
        return jpip_err_limit(err, JPIP_LIMIT_SESSION_MEMORY,
                              "a session slot of %" APR_SIZE_T_FMT " bytes cannot hold a session",
                              size);
    }
    if (strlen(target) >= sizeof(s->target) || strlen(tid) >= sizeof(s->tid)) {
        return jpip_err_set(err, JPIP_E_REQUEST, "the target name is too long for a session");
    }
    memset(s, 0, header_bytes());
    s->magic = SESSION_MAGIC;
    s->size = (apr_uint32_t)size;
    s->created = now;
    s->used = now;
    s->model_off = (apr_uint32_t)header_bytes();
    s->model_cap = (apr_uint32_t)(size - header_bytes());
    apr_cpystrn(s->target, target, sizeof(s->target));
    apr_cpystrn(s->tid, tid, sizeof(s->tid));
    rc = jpip_model_init((char *)s + s->model_off, s->model_cap, 0, &m, err);
    if (rc == JPIP_OK) {
        s->model_bytes = jpip_model_size(m);
        *out = s;
    }
    return rc;
}

jpip_code_t jpip_session_check(const jpip_session_t *s, apr_size_t size, jpip_err_t *err)
{
    jpip_model_t *m;
    apr_uint32_t i;

    if (size < header_bytes() || s->magic != SESSION_MAGIC || s->size != size ||
        s->model_off != header_bytes() || s->model_cap != size - header_bytes() ||
        s->nchannels > JPIP_SESSION_CHANNELS ||
        memchr(s->target, '\0', sizeof(s->target)) == NULL ||
        memchr(s->tid, '\0', sizeof(s->tid)) == NULL) {
        return jpip_err_set(err, JPIP_E_FORMAT, "damaged session record");
    }
    for (i = 0; i < JPIP_SESSION_CHANNELS; i++) {
        if (memchr(s->ch[i].cid, '\0', sizeof(s->ch[i].cid)) == NULL) {
            return jpip_err_set(err, JPIP_E_FORMAT, "damaged session record (channel %u)", i);
        }
    }
    /* the model checks itself in place */
    return jpip_model_load((char *)s + s->model_off, s->model_cap, (const char *)s + s->model_off,
                           jpip_model_size((const jpip_model_t *)((const char *)s + s->model_off)),
                           &m, err);
}

jpip_model_t *jpip_session_model(jpip_session_t *s)
{
    return (jpip_model_t *)((char *)s + s->model_off);
}

void jpip_session_model_reset(jpip_session_t *s)
{
    jpip_model_clear(jpip_session_model(s), 0);
}

jpip_channel_t *jpip_session_channel(jpip_session_t *s, const char *cid)
{
    apr_uint32_t i;

    for (i = 0; i < JPIP_SESSION_CHANNELS; i++) {
        if (s->ch[i].in_use && strcmp(s->ch[i].cid, cid) == 0) {
            return &s->ch[i];
        }
    }
    return NULL;
}

jpip_code_t jpip_session_channel_open(jpip_session_t *s, const char *cid, int jpt,
                                      jpip_channel_t **out, jpip_err_t *err)
{
    apr_uint32_t i;

    for (i = 0; i < JPIP_SESSION_CHANNELS; i++) {
        if (!s->ch[i].in_use) {
            memset(&s->ch[i], 0, sizeof(s->ch[i]));
            apr_cpystrn(s->ch[i].cid, cid, sizeof(s->ch[i].cid));
            s->ch[i].in_use = 1;
            s->ch[i].jpt = jpt != 0;
            s->ch[i].next_qid = -1;
            s->nchannels++;
            *out = &s->ch[i];
            return JPIP_OK;
        }
    }
    return jpip_err_limit(err, JPIP_LIMIT_CHANNELS, "a session has at most %d channels",
                          JPIP_SESSION_CHANNELS);
}

apr_uint32_t jpip_session_channel_close(jpip_session_t *s, const char *cid)
{
    apr_uint32_t i;

    for (i = 0; i < JPIP_SESSION_CHANNELS; i++) {
        if (s->ch[i].in_use && (strcmp(cid, "*") == 0 || strcmp(s->ch[i].cid, cid) == 0)) {
            s->ch[i].in_use = 0;
            s->nchannels--;
        }
    }
    return s->nchannels;
}

const char jpip_cid_alphabet[65] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

jpip_code_t jpip_session_new_cid(char *out, jpip_err_t *err)
{
    unsigned char r[JPIP_CID_LEN * 3 / 4];
    int i;

    if (apr_generate_random_bytes(r, sizeof(r)) != APR_SUCCESS) {
        return jpip_err_set(err, JPIP_E_IO, "no random bytes for a channel id");
    }
    for (i = 0; i < JPIP_CID_LEN; i++) {
        /* 6 bits per character */
        int bit = i * 6, byte = bit / 8, shift = bit % 8;
        unsigned v = ((unsigned)r[byte] << 8) | (byte + 1 < (int)sizeof(r) ? r[byte + 1] : 0);
        out[i] = jpip_cid_alphabet[(v >> (10 - shift)) & 63];
    }
    out[JPIP_CID_LEN] = '\0';
    return JPIP_OK;
}
