/* mod_jpip: a JPIP session record (T.808 Annex B; protocol notes E).
 *
 * A session binds a client's channels to one target version and holds the
 * cache model they share. The record is ONE flat, position-independent,
 * fixed-capacity buffer: a header, the channel table, then the model (a
 * model.h buffer). It is made to live in a slot of shared memory (every
 * httpd process sees it) and, later, as a value in an external session
 * cache (memcached, redis through httpd's socache). Callers serialise
 * access; nothing here locks. The request that owns a session (busy) may
 * change its model without the store's lock: nobody else touches the
 * model, or removes the record, while busy is set.
 */
#ifndef JPIP_SESSION_H
#define JPIP_SESSION_H

#include <apr_pools.h>
#include <apr_time.h>

#include "jpip_err.h"
#include "model.h"

/* channel ids: 32 characters of the URL-safe base64 alphabet (A-Z a-z
 * 0-9 - _), 192 random bits of which a store may replace a few with a
 * locator (the shm store: 6 characters, leaving 156 random bits) */
#define JPIP_CID_LEN 32
#define JPIP_SESSION_CHANNELS 8 /* channels one session may have */
#define JPIP_SESSION_TARGET_MAX 1024
#define JPIP_SESSION_TID_MAX 64

typedef struct jpip_channel_t {
    char cid[JPIP_CID_LEN + 1];
    unsigned char in_use;
    unsigned char jpt; /* the channel's return type */
    unsigned char pad[6];
    apr_int64_t next_qid; /* the qid expected next (-1: none seen) */
} jpip_channel_t;

typedef struct jpip_session_t {
    apr_uint32_t magic;
    apr_uint32_t size; /* bytes of the whole record */
    apr_time_t created;
    apr_time_t used;    /* last request */
    apr_uint64_t seq;   /* requests started (pre-emption: the newest wins) */
    apr_uint64_t busy;  /* seq of the request streaming now, 0 when idle */
    apr_uint32_t owner; /* process id of that request's process */
    apr_uint32_t pad0;
    apr_uint64_t owner_start; /* its start time (jpip_proc_start): a reused pid differs */
    apr_uint64_t version;     /* writes of the record (stores without shared memory) */
    apr_time_t lease;         /* busy until then at most (stores without shared memory) */
    apr_uint64_t writer;      /* random tag of the last write (stores without shared memory) */
    /* seq of the newest request that pre-empts (wait=no); set with
     * apr_atomic_set64 so that a streaming request can poll it between
     * batches with apr_atomic_read64, without the store's lock */
    volatile apr_uint64_t preempt;
    apr_uint64_t bytes;       /* message bytes sent */
    apr_uint64_t model_bytes; /* model size when the last request ended */
    apr_uint32_t nchannels;
    apr_uint32_t model_off; /* offset of the model buffer */
    apr_uint32_t model_cap; /* bytes of the model buffer */
    /* no further requests (EOR 6 was sent, or the last channel closed);
     * the owner sets and reads it without the lock: apr_atomic_*32 */
    volatile apr_uint32_t closed;
    char target[JPIP_SESSION_TARGET_MAX]; /* target name, relative to the archive */
    char tid[JPIP_SESSION_TID_MAX];       /* target version the model is about */
    char client[48];                      /* the address that opened it */
    jpip_channel_t ch[JPIP_SESSION_CHANNELS];
} jpip_session_t;

/* Bytes of a record whose model can hold model_bytes. */
apr_size_t jpip_session_bytes_for(apr_size_t model_bytes);

/* Make buf (size bytes, 8-byte aligned) a new session for target/tid with
 * no channels and an empty model filling the rest of buf. JPIP_E_LIMIT if
 * size is too small, JPIP_E_REQUEST if target or tid is too long. */
jpip_code_t jpip_session_init(void *buf, apr_size_t size, const char *target, const char *tid,
                              apr_time_t now, jpip_session_t **s, jpip_err_t *err);

/* Check a record read from shared or external storage before using it:
 * magic, sizes, offsets, NUL-terminated strings, the model. */
jpip_code_t jpip_session_check(const jpip_session_t *s, apr_size_t size, jpip_err_t *err);

/* The session's cache model (in place). */
jpip_model_t *jpip_session_model(jpip_session_t *s);

/* Reset the model (the target changed, or the client asked). */
void jpip_session_model_reset(jpip_session_t *s);

/* Open a channel with the given id; JPIP_E_LIMIT when the session has
 * JPIP_SESSION_CHANNELS channels. */
jpip_code_t jpip_session_channel_open(jpip_session_t *s, const char *cid, int jpt,
                                      jpip_channel_t **ch, jpip_err_t *err);

/* The open channel with this id, or NULL. */
jpip_channel_t *jpip_session_channel(jpip_session_t *s, const char *cid);

/* Close a channel ("*" closes all). Returns the number of channels still
 * open: when 0, the session is over. */
apr_uint32_t jpip_session_channel_close(jpip_session_t *s, const char *cid);

/* Fill out (JPIP_CID_LEN + 1 bytes) with a new channel id: 24 random
 * bytes in URL-safe base64. JPIP_E_IO if the system's random source fails. */
jpip_code_t jpip_session_new_cid(char *out, jpip_err_t *err);

/* The 64 characters of channel ids, in order (a character's index is its
 * 6-bit value). */
extern const char jpip_cid_alphabet[65];

#endif /* JPIP_SESSION_H */
