/* macro.c - the out-of-line part of macro.h (array growth). */
#include "util/macro.h"

#include <errno.h>

int mp_grow(void **array, size_t *allocated, size_t need, size_t elem) {
        if (need <= *allocated)
                return 0;

        size_t n = *allocated ? *allocated : 8;
        while (n < need) {
                if (n > SIZE_MAX / 2)
                        return -ENOMEM;
                n *= 2;
        }
        size_t bytes;
        if (__builtin_mul_overflow(n, elem, &bytes))
                return -ENOMEM;

        void *p = realloc(*array, bytes);
        if (!p)
                return -ENOMEM;
        *array = p;
        *allocated = n;
        return 0;
}
