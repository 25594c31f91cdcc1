/* mod_jpip fuzzing: what every fuzz target shares.
 *
 * Each target defines LLVMFuzzerTestOneInput. libFuzzer calls it in the
 * clang build; replay.c calls it in the ordinary build, over a corpus. The
 * input gets a pool of its own, backed by an allocator of its own, so that
 * everything allocated for one input goes back to malloc when the pool is
 * destroyed: AddressSanitizer then sees use-after-destroy, and nothing
 * from one input can survive into the next.
 */
#ifndef JPIP_FUZZ_COMMON_H
#define JPIP_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <apr_allocator.h>
#include <apr_general.h>
#include <apr_pools.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* APR once per process; apr_terminate at exit keeps LeakSanitizer quiet. */
static inline void jpip_fuzz_init(void)
{
    static int done;
    if (!done) {
        if (apr_initialize() != APR_SUCCESS)
            abort();
        atexit(apr_terminate);
        done = 1;
    }
}

/* A fresh pool with its own allocator; apr_pool_destroy frees both. */
static inline apr_pool_t *jpip_fuzz_pool(void)
{
    apr_allocator_t *alloc = NULL;
    apr_pool_t *pool = NULL;

    jpip_fuzz_init();
    if (apr_allocator_create(&alloc) != APR_SUCCESS)
        abort();
    if (apr_pool_create_ex(&pool, NULL, NULL, alloc) != APR_SUCCESS)
        abort();
    apr_allocator_owner_set(alloc, pool);
    return pool;
}

/* A small deterministic hash of the input, for choosing options that the
 * input format has no room for (rebuild limits, partial bins). */
static inline uint32_t jpip_fuzz_hash(const uint8_t *data, size_t size)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    return h;
}

#endif /* JPIP_FUZZ_COMMON_H */
