/* mod_jpip: JPP-stream and JPT-stream message headers (server side). */
#include "jpp.h"

void jpip_jpp_writer_init(jpip_jpp_writer_t *w)
{
    w->started = 0;
    w->cls = 0;
    w->csn = 0;
}

unsigned jpip_vbas_size(apr_uint64_t v)
{
    unsigned n = 1;

    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

unsigned jpip_vbas_put(apr_uint64_t v, unsigned char *out)
{
    unsigned n, i;

    if (v < 0x80) { /* most classes, codestreams, offsets and short lengths */
        out[0] = (unsigned char)v;
        return 1;
    }
    n = jpip_vbas_size(v);
    for (i = n; i-- > 0; v >>= 7) {
        out[i] = (unsigned char)((v & 0x7F) | (i + 1 < n ? 0x80 : 0));
    }
    return n;
}

/* Bytes of the Bin-ID VBAS: k bytes carry a 7k-3 bit id. */
static unsigned binid_size(apr_uint64_t id)
{
    unsigned k = 1;

    /* k = 10 carries 67 bits, enough for any 64-bit id */
    while (k < 10 && (id >> (7 * k - 3)) != 0) {
        k++;
    }
    return k;
}

/* The bb indicator the writer would use for (cls, csn) now. */
static unsigned choose_bb(const jpip_jpp_writer_t *w, unsigned cls, apr_uint64_t csn)
{
    if (!w->started || w->csn != csn) {
        return 3;
    }
    return w->cls == cls ? 1 : 2;
}

apr_size_t jpip_jpp_header_size(const jpip_jpp_writer_t *w, unsigned cls, apr_uint64_t csn,
                                apr_uint64_t id, apr_uint64_t off, apr_uint64_t len,
                                apr_uint64_t aux)
{
    unsigned bb = choose_bb(w, cls, csn);
    apr_size_t n = binid_size(id);

    if (bb & 2) {
        n += jpip_vbas_size(cls);
    }
    if (bb == 3) {
        n += jpip_vbas_size(csn);
    }
    n += jpip_vbas_size(off) + jpip_vbas_size(len);
    if (cls & 1) {
        n += jpip_vbas_size(aux);
    }
    return n;
}

apr_size_t jpip_jpp_header(jpip_jpp_writer_t *w, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                           apr_uint64_t off, apr_uint64_t len, int complete, apr_uint64_t aux,
                           unsigned char *out)
{
    unsigned bb = choose_bb(w, cls, csn);
    unsigned k = binid_size(id), i;
    apr_size_t n = 0;

    out[n++] = (unsigned char)((k > 1 ? 0x80 : 0) | (bb << 5) | (complete ? 0x10 : 0) |
                               ((id >> (7 * (k - 1))) & 0x0F));
    for (i = 1; i < k; i++) {
        unsigned shift = 7 * (k - 1 - i);
        out[n++] = (unsigned char)(((id >> shift) & 0x7F) | (i + 1 < k ? 0x80 : 0));
    }
    if (bb & 2) {
        n += jpip_vbas_put(cls, out + n);
    }
    if (bb == 3) {
        n += jpip_vbas_put(csn, out + n);
    }
    n += jpip_vbas_put(off, out + n);
    n += jpip_vbas_put(len, out + n);
    if (cls & 1) {
        n += jpip_vbas_put(aux, out + n);
    }
    w->started = 1;
    w->cls = cls;
    w->csn = csn;
    return n;
}

apr_size_t jpip_jpp_eor(unsigned reason, unsigned char *out)
{
    out[0] = 0x00;
    out[1] = (unsigned char)(reason & 0xFF);
    out[2] = 0x00;
    return JPIP_JPP_EOR_LEN;
}

apr_size_t jpip_jpp_eor_head(unsigned reason, apr_uint64_t body_len, unsigned char *out)
{
    out[0] = 0x00;
    out[1] = (unsigned char)(reason & 0xFF);
    return 2 + jpip_vbas_put(body_len, out + 2);
}

const char *jpip_eor_name(unsigned reason)
{
    switch (reason) {
    case JPIP_EOR_IMAGE_DONE:
        return "image done";
    case JPIP_EOR_WINDOW_DONE:
        return "window done";
    case JPIP_EOR_WINDOW_CHANGE:
        return "window change";
    case JPIP_EOR_BYTE_LIMIT:
        return "byte limit reached";
    case JPIP_EOR_QUALITY_LIMIT:
        return "quality limit reached";
    case JPIP_EOR_SESSION_LIMIT:
        return "session limit reached";
    case JPIP_EOR_RESPONSE_LIMIT:
        return "response limit reached";
    case JPIP_EOR_NONSPECIFIED:
        return "non-specified";
    default:
        return "reserved";
    }
}
