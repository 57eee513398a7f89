/* vocab_sketch.h - vocabulary overlap (VOA): the exact Jaccard index of two
 * vocabularies, and a MinHash sketch that estimates it from two fingerprints
 * without the vocabularies.
 *
 * A vocabulary here is the *set* of distinct raw token strings ("Ġthe",
 * "▁the" and "the" all differ), as the reference's get_vocab() keys are.
 * Holes (ids without a token) are not members.  Strings are compared as
 * bytes; the reference decodes invalid UTF-8 with replacement first, which
 * can only merge strings that differ in their invalid bytes.
 *
 * Also home of the vocabulary index (string -> id) that the TFV, VOA and
 * anchor code share. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "formats/tokenizer.h"
#include "modelprov.pb-c.h"
#include "signals/metadata.h"

/* Open-addressing hash index over a tokenizer's strings.  For a string that
 * occurs at several ids, the lowest id is the one found. */
typedef struct mp_vocab_index {
        const mp_tokenizer *t;  /* borrowed */
        uint32_t *slots;        /* id + 1, 0 = empty */
        size_t mask;            /* slots - 1 (power of two) */
        size_t n_distinct;      /* distinct strings */
} mp_vocab_index;

/* Builds the index (t may be NULL or empty: an empty index).  Returns 0 or
 * -ENOMEM.  Free with mp_vocab_index_done(). */
int mp_vocab_index_build(const mp_tokenizer *t, mp_vocab_index *ret);
void mp_vocab_index_done(mp_vocab_index *ix);

/* The id of the len bytes at s, or -1. */
int64_t mp_vocab_index_find(const mp_vocab_index *ix, const char *s, size_t len);

/* True if id holds the first occurrence of its string: iterating ids with
 * this filter visits every distinct string once. */
int mp_vocab_index_is_first(const mp_vocab_index *ix, size_t id);

/* Exact Jaccard of the two string sets, round(|A∩B| / |A∪B|, 4); 0.0 when
 * both are empty (or NULL); NAN on ENOMEM. */
double mp_vocab_jaccard(const mp_tokenizer *a, const mp_tokenizer *b);

/* Fills out (an initialised message; mins is malloc'd) with the
 * MP_VOCAB_SKETCH_K minima of seeded XXH3-64 hashes over the distinct
 * strings of t.  An empty or missing vocabulary gives vocab_size 0 and no
 * mins.  Returns 0 or -ENOMEM. */
int mp_vocab_sketch_build(const mp_tokenizer *t, Modelprov__V1__VocabSketch *out);

/* Estimated Jaccard: the share of the k positions whose minima agree
 * (k = the shorter sketch).  NAN if either sketch is missing or empty.
 * Not rounded: the caller compares or rounds it. */
double mp_vocab_sketch_jaccard(const Modelprov__V1__VocabSketch *a, const Modelprov__V1__VocabSketch *b);
