/* anchors.h - the anchor tokens of the embedding anchor similarity (EAS).
 *
 * EAS compares the geometry of a fixed set of tokens' embeddings.  The set is
 * chosen as the reference project does (docs/signals.md):
 * 16 digits and punctuation, then common words of each script that makes up
 * at least 5% of the vocabulary's letters (allocation by Python round), then
 * ids drawn by numpy's RandomState(42).choice(pool, replace=False) to fill up
 * to MP_EAS_ANCHORS.
 *
 * One approximation: the reference takes the first id of the tokenizer's
 * encoding of each string; modelprov has no encoder, so it takes the longest
 * vocabulary token that is a prefix of the string as the tokenizer would see
 * it (after the SentencePiece "▁" dummy prefix, or mapped to byte-level
 * symbols), else the unknown token (see anchors.c). */
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
 * be NULL: then only the pseudo-random fill is used).  Ids are distinct, in
 * the reference's order.  Returns the number chosen (>= 0) or a negative
 * errno. */
int mp_anchors_select(const mp_tokenizer *t, uint64_t n_rows, mp_anchor out[MP_EAS_ANCHORS]);

/* The legacy numpy generator (MT19937 with init_genrand seeding), exposed
 * for tests. */
typedef struct mp_mt19937 {
        uint32_t mt[624];
        unsigned i;
} mp_mt19937;

void mp_mt19937_seed(mp_mt19937 *g, uint32_t seed);
uint32_t mp_mt19937_next(mp_mt19937 *g);

/* numpy.random.RandomState(seed).permutation(n) into perm[n]. */
void mp_np_permutation(uint32_t seed, uint32_t *perm, size_t n);
