/* macro.h - small helpers used across libmodelprov: cleanup attributes,
 * overflow-checked size arithmetic, array sizes. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

/* Cleanup helpers: declare a variable with _cleanup_(freep) and it is freed
 * on every exit path of its scope. */
#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p) {
        free(*(void **) p);
}

static inline void closep(int *fd) {
        if (*fd >= 0)
                close(*fd);
}

static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}

/* A macro's value as a string literal: MP_STRINGIFY(N) with #define N 7 is "7". */
#define MP_STRINGIFY_(x) #x
#define MP_STRINGIFY(x) MP_STRINGIFY_(x)

/* Takes ownership away from a cleanup variable: returns it and sets it NULL. */
#define TAKE_PTR(p) ({ __typeof__(p) _tp = (p); (p) = NULL; _tp; })
#define TAKE_FD(fd) ({ int _tf = (fd); (fd) = -1; _tf; })

/* Overflow-checked arithmetic on sizes declared by files: true on overflow. */
static inline bool mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *out) {
        return __builtin_mul_overflow(a, b, out);
}

static inline bool add_overflow_u64(uint64_t a, uint64_t b, uint64_t *out) {
        return __builtin_add_overflow(a, b, out);
}

/* Grows a dynamic array *array of *allocated elements of size elem so that it
 * holds at least need elements.  Returns 0 or -ENOMEM; never shrinks. */
int mp_grow(void **array, size_t *allocated, size_t need, size_t elem);

#define MP_GROW(array, allocated, need) \
        mp_grow((void **) &(array), &(allocated), (need), sizeof(*(array)))

#include <dirent.h>
static inline void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}
