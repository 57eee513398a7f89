/* arena.h - a list of allocations freed together.
 *
 * Used to assemble nested protobuf-c messages: every piece is allocated from
 * the arena and the whole tree goes with one mp_arena_free(). */
#pragma once

#include <stddef.h>

typedef struct mp_arena {
        void **ptrs;
        size_t n, allocated;
} mp_arena;

/* Zeroed memory owned by the arena; NULL on failure. */
void *mp_arena_alloc(mp_arena *a, size_t size);
/* Zeroed array of n elements of size elem, overflow-checked. */
void *mp_arena_calloc(mp_arena *a, size_t n, size_t elem);
char *mp_arena_strdup(mp_arena *a, const char *s);
void mp_arena_free(mp_arena *a);
