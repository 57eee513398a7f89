/* param_bucket.h - the scan pre-filter by model size.
 *
 * The reference project sorts every model into one of four size buckets,
 * from a parameter estimate computed from its MFI fields (hidden size,
 * layers, heads, vocabulary ...; docs/signals.md), and a scan only
 * looks at catalog entries in the query's bucket and its two neighbours.
 * This is the same estimate, so that imported catalogs and our own records
 * fall into the same buckets.  When a record has no MFI fields (no
 * config.json, a bare weight file) its real parameter count is used. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "fingerprint/record.h"

typedef enum mp_param_bucket {
        MP_BUCKET_UP_TO_1B = 0, /* "<=1B" */
        MP_BUCKET_1_10B,        /* "1-10B" */
        MP_BUCKET_10_40B,       /* "10-40B" */
        MP_BUCKET_40B_PLUS,     /* "40B+" */
        _MP_BUCKET_MAX,
} mp_param_bucket;

/* "<=1B", "1-10B", "10-40B", "40B+". */
const char *mp_param_bucket_name(mp_param_bucket b);

/* The bucket named s; -EINVAL for anything else (NULL included). */
int mp_param_bucket_from_name(const char *s);

/* The bucket of a parameter count: < 1e9, < 1e10, < 4e10, else 40B+. */
mp_param_bucket mp_param_bucket_of(uint64_t params);

/* An MFI integer field as the reference reads it: a positive JSON integer,
 * else 0 (missing, null, negative, another type). */
uint64_t mp_mfi_field_u64(const json_t *mfi, const char *key);

/* The reference estimate from an MFI object (the "mfi" of a feature bundle,
 * or Signals.mfi_json parsed).  Fields with the wrong type or a negative
 * value count as absent; arithmetic saturates at UINT64_MAX instead of
 * overflowing (hostile fields land in "40B+").  Returns 0, or -ENODATA when
 * mfi is not an object or the estimate is 0 (no usable dimensions). */
int mp_param_estimate_mfi(const json_t *mfi, uint64_t *ret);

/* The estimate for a record: from its Signals.mfi_json when that parses and
 * gives a nonzero estimate, else its parameter_count.  -ENODATA when
 * neither is known. */
int mp_param_estimate_record(const mp_fingerprint *fp, uint64_t *ret);

/* The buckets a scan of a query in bucket b looks at: b and its neighbours
 * (index +-1), in bucket order.  Fills out[] and returns how many (2 or 3). */
size_t mp_param_bucket_neighbours(mp_param_bucket b, mp_param_bucket out[static 3]);
