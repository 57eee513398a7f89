/* anchors.h - the anchor tokens of the embedding anchor similarity (EAS).
 *
 * EAS compares the geometry of a fixed set of tokens' embeddings.  The set is
 * chosen from the vocabulary, script-aware, as the reference project defines
 * it (docs/signals.md): universal digits and punctuation, then common words
 * of each script that makes up at least 5% of the vocabulary, then
 * deterministic pseudo-random ids to fill up to MP_EAS_ANCHORS. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "formats/tokenizer.h"

#define MP_EAS_ANCHORS 64

typedef struct mp_anchor {
        uint32_t id;            /* row of the embedding table */
        const char *token;      /* the vocabulary's string (borrowed), NULL if unknown */
} mp_anchor;

/* Chooses up to MP_EAS_ANCHORS anchors among the first n_rows ids of t (t may
 * be NULL: then only the pseudo-random fill is used).  Ids are distinct.
 * Returns the number chosen (>= 0) or a negative errno. */
int mp_anchors_select(const mp_tokenizer *t, uint64_t n_rows, mp_anchor out[MP_EAS_ANCHORS]);
