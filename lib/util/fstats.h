/* fstats.h - summary statistics of a float vector (mean, population std,
 * max, min), as the NLF "stats" mode stores them. */
#pragma once

#include <stddef.h>

typedef struct mp_fstats {
        double mean, std, max, min;
} mp_fstats;

/* n must be > 0. */
void mp_fstats_of(const float *v, size_t n, mp_fstats *out);
