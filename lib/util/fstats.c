/* fstats.c - summary statistics of a float vector (see fstats.h). */
#include "util/fstats.h"

#include <assert.h>
#include <math.h>

void mp_fstats_of(const float *v, size_t n, mp_fstats *out) {
        assert(v && n > 0 && out);
        double sum = 0, sq = 0, mx = -INFINITY, mn = INFINITY;
        for (size_t i = 0; i < n; i++) {
                sum += v[i];
                sq += (double) v[i] * v[i];
                mx = v[i] > mx ? v[i] : mx;
                mn = v[i] < mn ? v[i] : mn;
        }
        double mean = sum / n, var = sq / n - mean * mean;
        *out = (mp_fstats) { .mean = mean, .std = var > 0 ? sqrt(var) : 0, .max = mx, .min = mn };
}
