/* heap.c - malloc tuning (see heap.h). */
#include "util/heap.h"

#include <malloc.h>

#define KEEP_FREED (512 * 1024 * 1024)
#define MMAP_AT_LEAST (64 * 1024 * 1024)

void mp_heap_keep_freed(void) {
        /* Setting either also stops glibc's own adjustment of both. */
        mallopt(M_TRIM_THRESHOLD, KEEP_FREED);
        mallopt(M_MMAP_THRESHOLD, MMAP_AT_LEAST);
}
