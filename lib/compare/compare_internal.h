/* compare_internal.h - the parts of mp_compare(), one file per evidence kind.
 *
 * Each fills its signals of out->signal[] (and details) and leaves the
 * others alone; compare.c combines them into scores and a verdict. */
#pragma once

#include "compare/compare.h"

/* The left side of comparisons, prepared once: its tensors indexed by name,
 * their samples decoded (the record must outlive it).  It remembers the
 * tensor names of the right sides it meets, so one thread at a time uses it. */
typedef struct mp_weight_side mp_weight_side;
int mp_weight_side_new(const mp_fingerprint *fp, mp_weight_side **ret);
void mp_weight_side_free(mp_weight_side *s);

/* Weight signals: EAS, NLF, LEP, END, WVC and modelprov's tensor-level
 * signals; tensor identity details.  Returns 0 or -ENOMEM. */
int mp_compare_weights(mp_weight_side *a, const mp_fingerprint *b, mp_comparison *out);

/* The left side's metadata, parsed once (NULL members when absent). */
typedef struct mp_meta_side {
        const mp_fingerprint *fp;
        json_t *mfi, *tfv;
} mp_meta_side;
void mp_meta_side_init(const mp_fingerprint *fp, mp_meta_side *out);
void mp_meta_side_done(mp_meta_side *m);

/* MFI (with out->mfi_tier), TFV, VOA (exact when both tokenizers are given,
 * else from the vocabulary sketches). */
void mp_compare_metadata(const mp_meta_side *a, const mp_fingerprint *b, const mp_compare_options *o,
                         mp_comparison *out);

/* Relative change |a - b| / |a| of two same-shape tensors on their stored
 * samples; NAN when they cannot be compared (no samples, shapes differ). */
double mp_record_rel_change(const Modelprov__V1__TensorDigest *a, const Modelprov__V1__TensorDigest *b);

/* Statistics helpers shared by the parts; NAN when undefined. */
double mp_stat_pearson(const double *x, const double *y, size_t n);
double mp_stat_cosine(const double *x, const double *y, size_t n);
double mp_round4(double x);
