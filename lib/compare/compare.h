/* compare.h - do two models share lineage?  Scores every signal of two
 * fingerprint records, combines them and gives a verdict.
 *
 * Works on records alone (stored fingerprints, catalog entries): no weights
 * are read.  When the caller still has the two models' tokenizers it may pass
 * them for an exact vocabulary overlap instead of the sketch estimate.
 *
 * The rules (docs/signals.md): every signal of the reference project is
 * computed as it defines it, for side-by-side reading ("pipeline_score" is
 * that project's combination); modelprov's own verdict rests on weight
 * evidence only.  Metadata and tokenizer evidence explain and narrow, never
 * decide; without weights on both sides the verdict is at most Weak Match. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "fingerprint/record.h"
#include "formats/tokenizer.h"

typedef enum mp_signal_id {
        /* the reference project's eight */
        MP_SIG_MFI = 0,
        MP_SIG_TFV,
        MP_SIG_VOA,
        MP_SIG_EAS,
        MP_SIG_NLF,
        MP_SIG_LEP,
        MP_SIG_END,
        MP_SIG_WVC,
        /* modelprov's own */
        MP_SIG_TENSOR_IDENTITY,         /* share of tensor bytes with identical content hash */
        MP_SIG_TENSOR_CLOSENESS,        /* 1 - median relative change of same-shape tensors */
        MP_SIG_EMBED_VALUES,            /* value correlation of shared embedding rows */
        MP_SIG_LAYER_VALUES,            /* scale-free value correlation per layer (best alignment) */
        MP_SIG_LAYER_STATS,             /* per-layer std pattern of attention/MLP matrices */
        _MP_SIG_MAX,
} mp_signal_id;

typedef enum mp_verdict {
        MP_VERDICT_NOT_MATCHED = 0,
        MP_VERDICT_WEAK,
        MP_VERDICT_HIGH,
        MP_VERDICT_CONFIRMED,
} mp_verdict;

/* Verdict bounds on the identity score, calibrated on the zoo
 * (docs/signals.md "Calibration"): independent pairs score <= 0.15 there,
 * linked ones (distillation aside) >= 0.70, shared-initialisation pairs
 * about 0.3-0.4. */
#define MP_VERDICT_CONFIRMED_AT 0.90
#define MP_VERDICT_HIGH_AT 0.50
#define MP_VERDICT_WEAK_AT 0.30

/* The verdict an identity score earns (weight evidence on both sides). */
mp_verdict mp_verdict_of_score(double identity_score);

typedef struct mp_comparison {
        double signal[_MP_SIG_MAX];     /* in [0, 1]; NAN = not available */
        double identity_score;          /* modelprov's weight-evidence score; NAN without weights */
        double tokenizer_score;         /* 0.25 TFV + 0.75 VOA; NAN if neither side has a tokenizer */
        double pipeline_score;          /* the reference project's combination, for reading side by side */
        int mfi_tier;                   /* 1, 2, 3; 0 when MFI is unavailable */
        bool voa_exact;                 /* VOA from both vocabularies, not the sketches */
        bool weights;                   /* weight evidence on both sides */
        mp_verdict verdict;
        const char *relation;           /* "identical copy", "quantized copy", ... (static) */
        /* tensor-level identity */
        size_t tensors_common;          /* same name and shape */
        size_t tensors_identical;       /* ... and same content hash */
        uint64_t bytes_common, bytes_identical;
        double median_rel_change;       /* NAN if no comparable samples */
        size_t tensors_scaled;          /* values correlate (r >= 0.97) but norms differ by > 20% */
        char explanation[320];          /* one plain sentence */
} mp_comparison;

typedef struct mp_compare_options {
        const mp_tokenizer *tokenizer_a, *tokenizer_b;  /* for exact VOA; may be NULL */
} mp_compare_options;

/* Compares a and b.  o may be NULL.  Never fails on content: missing
 * signals are NAN.  Returns 0 or -ENOMEM. */
int mp_compare(const mp_fingerprint *a, const mp_fingerprint *b, const mp_compare_options *o,
               mp_comparison *out);

/* One record compared with many (a scan: the query against every catalog
 * entry): what depends on the left side alone (its tensor index, parsed
 * metadata) is built once.  a must outlive the query.  mp_compare() is
 * new + run + free.  A query remembers what it learnt of the right sides'
 * tensor names: one thread at a time runs it (give each thread its own). */
typedef struct mp_compare_query mp_compare_query;
int mp_compare_query_new(const mp_fingerprint *a, mp_compare_query **ret);
int mp_compare_query_run(mp_compare_query *q, const mp_fingerprint *b, const mp_compare_options *o,
                         mp_comparison *out);
void mp_compare_query_free(mp_compare_query *q);
static inline void mp_compare_query_freep(mp_compare_query **q) { mp_compare_query_free(*q); }

const char *mp_signal_name(mp_signal_id id);    /* "mfi", "eas", "tensor_identity", ... */
const char *mp_verdict_name(mp_verdict v);      /* "Confirmed Match", ... */

/* The --json contract of `modelprov compare`: verdict, pipeline_score,
 * identity_score, tokenizer_score, relation, signals {name: score|null},
 * plus details.  Returns NULL on allocation failure. */
json_t *mp_comparison_to_json(const mp_comparison *c);
