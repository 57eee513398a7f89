/* compare_internal.h - the parts of mp_compare(), one file per evidence kind.
 *
 * Each fills its signals of out->signal[] (and details) and leaves the
 * others alone; compare.c combines them into scores and a verdict. */
#pragma once

#include "compare/compare.h"

/* Weight signals: EAS, NLF, LEP, END, WVC and modelprov's tensor-level and
 * robust signals; tensor identity details.  Returns 0 or -ENOMEM. */
int mp_compare_weights(const mp_fingerprint *a, const mp_fingerprint *b, mp_comparison *out);

/* MFI (with out->mfi_tier), TFV, VOA (exact when both tokenizers are given,
 * else from the vocabulary sketches). */
void mp_compare_metadata(const mp_fingerprint *a, const mp_fingerprint *b, const mp_compare_options *o,
                         mp_comparison *out);

/* Relative change |a - b| / |a| of two same-shape tensors on their stored
 * samples; NAN when they cannot be compared (no samples, shapes differ). */
double mp_record_rel_change(const Modelprov__V1__TensorDigest *a, const Modelprov__V1__TensorDigest *b);

/* Statistics helpers shared by the parts; NAN when undefined. */
double mp_stat_pearson(const double *x, const double *y, size_t n);
double mp_stat_cosine(const double *x, const double *y, size_t n);
double mp_round4(double x);
