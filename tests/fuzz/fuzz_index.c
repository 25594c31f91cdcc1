/* Fuzz target: the codestream indexer, packet-header decoding included.
 *
 * The input is a whole target file (raw codestream, JP2, JPX, JPH) read as
 * a memory source. jpip_index_build runs over it (main and tile-part
 * headers, PLT/PLM/PPM/PPT, packet-header decoding in t2.c when there are
 * no usable PLT markers). The built index is then walked through its
 * public accessors (every bin of every class, pieces, bounds, resolutions)
 * and the pieces are checked against the file. Finally its blob is loaded
 * back with jpip_index_load, once intact and once with one byte changed
 * (a byte and position chosen from the input), and the loaded index is
 * walked the same way: the loader promises to refuse any blob whose
 * offsets it has not checked.
 */
#include <stdio.h>
#include <string.h>

#include "fuzz_common.h"

#include "index.h"
#include "packets.h"
#include "source.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_index: invariant failed at line %d: %s\n", __LINE__, #cond);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Work caps so one input cannot take seconds. */
#define MAX_CS 8
#define MAX_TILES 1024
#define MAX_COMPS 16
#define MAX_PREC 4096

static void check_bin(const jpip_index_t *ix, const jpip_bin_t *b, apr_uint64_t fsize)
{
    const jpip_piece_t *p = jpip_index_pieces(ix, b);
    const apr_uint64_t *bd = jpip_index_bounds(ix, b);
    apr_uint64_t sum = 0;

    for (apr_uint32_t k = 0; k < b->npieces; k++) {
        if (jpip_piece_is_synth(&p[k])) {
            const unsigned char *s = jpip_index_synth(ix, &p[k]);
            volatile unsigned char sink = 0;
            if (p[k].len > 0)
                sink ^= s[0] ^ s[p[k].len - 1];
        } else {
            CHECK(p[k].off <= fsize && p[k].len <= fsize - p[k].off);
        }
        sum += p[k].len;
    }
    CHECK(sum == b->len);
    for (apr_uint32_t k = 0; k < b->nbounds; k++)
        CHECK(bd[k] <= b->len);
}

static void get_bin(const jpip_index_t *ix, unsigned cls, apr_uint64_t csn, apr_uint64_t id,
                    apr_uint64_t fsize)
{
    const jpip_bin_t *b;
    jpip_err_t err;

    if (jpip_index_bin(ix, cls, csn, id, &b, &err) == JPIP_OK)
        check_bin(ix, b, fsize);
}

/* Walk every bin. strict: a freshly built index, where the accessors
 * must find everything the geometry says exists; a loaded blob only has to
 * be safe to walk. */
static void walk(const jpip_index_t *ix, int strict)
{
    jpip_index_stats_t st;
    jpip_index_key_t key;
    jpip_err_t err;
    apr_uint64_t ncs = jpip_index_ncs(ix);
    apr_uint64_t fsize;

    jpip_index_stats(ix, &st);
    jpip_index_key(ix, &key);
    fsize = key.size;
    for (apr_uint64_t m = 0; m < jpip_index_nmeta(ix) && m < 4096; m++)
        get_bin(ix, JPIP_CLASS_META, 0, m, fsize);
    get_bin(ix, JPIP_CLASS_META, 0, jpip_index_nmeta(ix), fsize);
    get_bin(ix, 3, 0, 0, fsize);
    get_bin(ix, JPIP_CLASS_MAIN, ncs, 0, fsize);

    for (apr_uint64_t csn = 0; csn < ncs && csn < MAX_CS; csn++) {
        const jpip_ix_cs_t *cs = jpip_index_cs(ix, csn);
        CHECK(cs != NULL || !strict);
        if (cs == NULL)
            continue;
        const jpip_comp_t *comps = jpip_index_comps(ix, cs);
        apr_uint32_t nt = jpip_siz_ntiles(&cs->siz);
        volatile unsigned sink = 0;

        for (apr_uint32_t c = 0; c < cs->siz.csiz && c < MAX_COMPS; c++)
            sink += comps[c].depth;
        get_bin(ix, JPIP_CLASS_MAIN, csn, 0, fsize);
        get_bin(ix, JPIP_CLASS_MAIN, csn, 1, fsize);
        for (apr_uint32_t t = 0; t < nt && t < MAX_TILES; t++) {
            const jpip_ix_tile_t *tile = jpip_index_tile(ix, cs, t);
            CHECK(tile != NULL || !strict);
            if (tile == NULL)
                continue;
            sink += tile->layers;
            get_bin(ix, JPIP_CLASS_TILEHDR, csn, t, fsize);
            get_bin(ix, JPIP_CLASS_TILE, csn, t, fsize);
            get_bin(ix, JPIP_CLASS_TILE_EXT, csn, t, fsize);
            for (unsigned c = 0; c < cs->siz.csiz && c < MAX_COMPS; c++) {
                const jpip_ix_tc_t *tc = jpip_index_tc(ix, cs, t, c);
                CHECK(tc != NULL || !strict);
                if (tc == NULL)
                    continue;
                const jpip_tccp_t *tccp = jpip_index_tccp(ix, tc);
                CHECK(tccp != NULL || !strict);
                if (tccp == NULL)
                    continue;
                for (apr_uint64_t s = 0; s < tc->nprec && s < MAX_PREC; s++)
                    get_bin(ix, JPIP_CLASS_PRECINCT, csn,
                            jpip_prec_bin_id(t, c, s, cs->siz.csiz, nt), fsize);
                get_bin(ix, JPIP_CLASS_PRECINCT, csn,
                        jpip_prec_bin_id(t, c, tc->nprec, cs->siz.csiz, nt), fsize);
                for (unsigned r = 0; r <= (unsigned)tccp->nl + 1 && r <= JPIP_MAX_RES; r++) {
                    jpip_ix_res_t res;
                    (void)jpip_index_res(ix, cs, t, c, r, &res, &err);
                }
            }
        }
        get_bin(ix, JPIP_CLASS_TILE, csn, nt, fsize);
    }
}

/* Load a copy of blob (optionally with one byte changed) and walk it. */
static void reload(const void *blob, apr_size_t bsize, uint32_t h, int mutate, apr_pool_t *pool)
{
    jpip_index_t *ix2;
    jpip_err_t err;
    unsigned char *copy = malloc(bsize ? bsize : 1);

    if (copy == NULL)
        abort();
    memcpy(copy, blob, bsize);
    if (mutate && bsize > 0)
        copy[h % bsize] ^= (unsigned char)((h >> 24) | 1);
    if (jpip_index_load(&ix2, pool, copy, bsize, &err) == JPIP_OK) {
        if (!mutate)
            CHECK(jpip_index_nbins(ix2) > 0);
        walk(ix2, 0);
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *pool = jpip_fuzz_pool();
    jpip_src_t *src;
    jpip_index_t *ix;
    jpip_index_key_t key;
    jpip_err_t err;

    memset(&key, 0, sizeof(key));
    key.path = "fuzz";
    key.size = size;
    if (jpip_src_open_mem(&src, pool, data, size, &err) == JPIP_OK &&
        jpip_index_build(&ix, pool, src, &key, NULL, &err) == JPIP_OK) {
        apr_size_t bsize;
        const void *blob = jpip_index_blob(ix, &bsize);
        uint32_t h = jpip_fuzz_hash(data, size);

        jpip_index_key_t back;

        jpip_index_key(ix, &back);
        CHECK(back.size == size);
        walk(ix, 1);
        reload(blob, bsize, h, 0, pool);
        reload(blob, bsize, h, 1, pool);
        reload(blob, bsize, h * 2654435761u, 1, pool);
    }
    apr_pool_destroy(pool);
    return 0;
}
