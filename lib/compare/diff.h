/* diff.h - two fingerprints tensor by tensor.
 *
 * Tensors pair by Hugging Face name.  Each pair is identical (same dtype and
 * content hash), changed (with the relative change |A-B|/|A| measured on the
 * records' value samples, NAN when not comparable), or reshaped; unpaired
 * tensors are only in A or only in B.  Entries come in A's name order, then
 * B-only ones. */
#pragma once

#include <stddef.h>

#include <jansson.h>

#include "fingerprint/record.h"

typedef enum mp_diff_status {
        MP_DIFF_IDENTICAL = 0,
        MP_DIFF_CHANGED,
        MP_DIFF_RESHAPED,       /* same name, different shape */
        MP_DIFF_ONLY_A,
        MP_DIFF_ONLY_B,
        _MP_DIFF_MAX,
} mp_diff_status;

typedef struct mp_diff_entry {
        const char *name;                       /* borrowed from the records */
        mp_diff_status status;
        const Modelprov__V1__TensorDigest *a, *b;       /* NULL on the missing side */
        double rel_change;                      /* CHANGED only; NAN if unknown */
} mp_diff_entry;

typedef struct mp_diff {
        mp_diff_entry *entries;
        size_t n_entries;
        size_t count[_MP_DIFF_MAX];
} mp_diff;

/* The records must outlive the diff.  Returns 0 or -ENOMEM. */
int mp_diff_records(const mp_fingerprint *a, const mp_fingerprint *b, mp_diff *out);
void mp_diff_free(mp_diff *d);

const char *mp_diff_status_name(mp_diff_status s);     /* "identical", "changed", ... */

/* {"summary": {...counts}, "tensors": [{name, status, rel_change, dtype_a, dtype_b, shape_a, shape_b}]} */
json_t *mp_diff_to_json(const mp_diff *d);
