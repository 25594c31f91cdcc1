/* mod_jpip: JPP-stream and JPT-stream message headers (server side).
 *
 * A message is a header followed by Msg-Length body bytes (protocol doc
 * C.2):
 *
 *   Bin-ID VBAS [Class VBAS] [CSn VBAS] Msg-Offset VBAS Msg-Length VBAS
 *   [Aux VBAS]
 *
 * This module writes headers only; the caller sends each body itself
 * (typically as file buckets over the image, zero copy), so a header is
 * written into a small caller buffer. Every VBAS is written at its minimal
 * length. A writer object carries the Class/CSn inheritance state of one
 * response: its first message always says both (bb=11), later messages
 * drop what repeats (bb=01 both repeat, bb=10 only CSn repeats).
 *
 * The End-Of-Response message is 00, reason, 00 (empty body), or, with a
 * body, 00, reason, VBAS length, body.
 */
#ifndef JPIP_JPP_H
#define JPIP_JPP_H

#include <apr.h>

#include "databin.h"

/* EOR reason codes (T.808 Table D.2). */
#define JPIP_EOR_IMAGE_DONE 1u
#define JPIP_EOR_WINDOW_DONE 2u
#define JPIP_EOR_WINDOW_CHANGE 3u
#define JPIP_EOR_BYTE_LIMIT 4u
#define JPIP_EOR_QUALITY_LIMIT 5u
#define JPIP_EOR_SESSION_LIMIT 6u
#define JPIP_EOR_RESPONSE_LIMIT 7u
#define JPIP_EOR_NONSPECIFIED 0xFFu

/* Longest VBAS of a 64-bit value: 10 bytes of 7 bits. */
#define JPIP_VBAS_MAX 10
/* Longest message header: a 64-bit Bin-ID (67 bits: 10 bytes), a 32-bit
 * class (5), CSn, offset, length and aux (10 each). */
#define JPIP_JPP_HEADER_MAX 64
/* Length of the EOR message this module writes. */
#define JPIP_JPP_EOR_LEN 3

/* Inheritance state of one response (or one auxiliary-transport chunk). */
typedef struct jpip_jpp_writer_t {
    int started;      /* a message has been written since the last reset */
    unsigned cls;     /* class of the previous message */
    apr_uint64_t csn; /* CSn of the previous message */
} jpip_jpp_writer_t;

/* Start a response: the next message will carry Class and CSn (bb=11).
 * Also call it at the start of every auxiliary-transport chunk. */
void jpip_jpp_writer_init(jpip_jpp_writer_t *w);

/* Number of bytes of the minimal VBAS for v (1..10). */
unsigned jpip_vbas_size(apr_uint64_t v);

/* Write the minimal VBAS for v to out (room for JPIP_VBAS_MAX bytes);
 * returns the number of bytes written. */
unsigned jpip_vbas_put(apr_uint64_t v, unsigned char *out);

/* Size in bytes of the header jpip_jpp_header would write now for these
 * arguments (it depends on w's inheritance state; w is not changed). aux
 * is counted only when cls is odd. Always <= JPIP_JPP_HEADER_MAX. */
apr_size_t jpip_jpp_header_size(const jpip_jpp_writer_t *w, unsigned cls, apr_uint64_t csn,
                                apr_uint64_t id, apr_uint64_t off, apr_uint64_t len,
                                apr_uint64_t aux);

/* Write the header of a message carrying bytes [off, off+len) of data-bin
 * (cls, csn, id) to out (room for JPIP_JPP_HEADER_MAX bytes), set the c
 * bit when complete (this message holds the bin's last byte, or len is 0
 * and off is the bin's length), write Aux iff cls is odd, and advance w's
 * inheritance state. Returns the header length. The caller sends exactly
 * len body bytes after it. The arguments come from the server's own index,
 * not from a client, so there is nothing to fail: classes are not checked
 * against Table A.2 (callers use the JPIP_CLASS_* values of databin.h). */
apr_size_t jpip_jpp_header(jpip_jpp_writer_t *w, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                           apr_uint64_t off, apr_uint64_t len, int complete, apr_uint64_t aux,
                           unsigned char *out);

/* Write the EOR message (00, reason, 00: empty body) to out (room for
 * JPIP_JPP_EOR_LEN bytes); returns JPIP_JPP_EOR_LEN. */
apr_size_t jpip_jpp_eor(unsigned reason, unsigned char *out);

/* Write the start of an EOR message whose body is body_len bytes (00,
 * reason, VBAS body_len) to out (room for JPIP_JPP_EOR_HEAD_MAX bytes);
 * returns its length. The caller sends the body after it. The body is
 * server-specific (T.808 D.3: clients skip it): mod_jpip puts a sentence
 * for humans there, e.g. the names of the regions a file offers, and
 * frames every error answer's text this way, so that a client that parses
 * any answer as a JPP-stream finds an EOR and no data. */
#define JPIP_JPP_EOR_HEAD_MAX (2 + JPIP_VBAS_MAX)
apr_size_t jpip_jpp_eor_head(unsigned reason, apr_uint64_t body_len, unsigned char *out);

/* A short name for an EOR reason ("window done", ...; "reserved" for codes
 * Table D.2 does not define). */
const char *jpip_eor_name(unsigned reason);

#endif /* JPIP_JPP_H */
