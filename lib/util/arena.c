/* arena.c - see arena.h. */
#include "util/arena.h"

#include <stdlib.h>
#include <string.h>

#include "util/macro.h"

void *mp_arena_calloc(mp_arena *a, size_t n, size_t elem) {
        size_t bytes;
        /* Refuse overflowing and absurd requests before calloc sees them. */
        if (__builtin_mul_overflow(n, elem, &bytes) || bytes > (SIZE_MAX >> 4))
                return NULL;
        if (MP_GROW(a->ptrs, a->allocated, a->n + 1) < 0)
                return NULL;
        void *p = calloc(n ? n : 1, elem ? elem : 1);
        if (!p)
                return NULL;
        a->ptrs[a->n++] = p;
        return p;
}

void *mp_arena_alloc(mp_arena *a, size_t size) {
        return mp_arena_calloc(a, 1, size);
}

char *mp_arena_strdup(mp_arena *a, const char *s) {
        if (!s)
                s = "";
        size_t n = strlen(s) + 1;
        char *p = mp_arena_alloc(a, n);
        if (p)
                memcpy(p, s, n);
        return p;
}

void mp_arena_free(mp_arena *a) {
        for (size_t i = 0; i < a->n; i++)
                free(a->ptrs[i]);
        free(a->ptrs);
        *a = (mp_arena) {0};
}
