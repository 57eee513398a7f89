/* vocab_sketch.c - vocabulary index, exact Jaccard and the MinHash sketch
 * (see vocab_sketch.h). */
#include "signals/vocab_sketch.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "signals/mfi.h"
#include "util/macro.h"

/* Hash of the index; any fixed seed would do. */
#define INDEX_SEED UINT64_C(0x6d6f64656c70726f)

/* splitmix64's finalizer: a bijection of 64-bit words that mixes well. */
static uint64_t mix64(uint64_t z) {
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

/* The sketch's k-th hash of a token: one XXH3-64 of the string, then a
 * different bijection per k (xor with a spread seed, then mix).  One string
 * hash per token instead of k keeps a 150k vocabulary at a few ms; spread
 * seeds matter, nearby ones would give correlated functions and a biased
 * estimate.  The seeds and mixing are part of the record's format: changing
 * them makes old sketches incomparable. */
static uint64_t sketch_hash(uint64_t token_hash, uint64_t k) {
        return mix64(token_hash ^ mix64((k + 1) * UINT64_C(0x9e3779b97f4a7c15)));
}

static uint64_t index_hash(const char *s, size_t len) {
        return XXH3_64bits_withSeed(s, len, INDEX_SEED);
}

int mp_vocab_index_build(const mp_tokenizer *t, mp_vocab_index *ret) {
        assert(ret);

        *ret = (mp_vocab_index) { .t = t };
        if (!t || t->n_tokens == 0)
                return 0;

        /* Load factor <= 1/2. */
        size_t n = 16;
        while (n < 2 * t->n_tokens)
                n *= 2;
        uint32_t *slots = calloc(n, sizeof(uint32_t));
        if (!slots)
                return -ENOMEM;

        ret->slots = slots;
        ret->mask = n - 1;
        for (size_t id = 0; id < t->n_tokens; id++) {
                const char *s = t->tokens[id];
                if (!s)
                        continue;
                size_t len = strlen(s);
                for (size_t h = (size_t) index_hash(s, len) & ret->mask;; h = (h + 1) & ret->mask) {
                        if (slots[h] == 0) {
                                slots[h] = (uint32_t) id + 1;
                                ret->n_distinct++;
                                break;
                        }
                        if (strcmp(t->tokens[slots[h] - 1], s) == 0)
                                break;  /* a later duplicate: the first id stays */
                }
        }
        return 0;
}

void mp_vocab_index_done(mp_vocab_index *ix) {
        if (!ix)
                return;
        free(ix->slots);
        *ix = (mp_vocab_index) {};
}

int64_t mp_vocab_index_find(const mp_vocab_index *ix, const char *s, size_t len) {
        assert(ix);
        assert(s || len == 0);

        if (!ix->slots)
                return -1;
        for (size_t h = (size_t) index_hash(s, len) & ix->mask;; h = (h + 1) & ix->mask) {
                uint32_t v = ix->slots[h];
                if (v == 0)
                        return -1;
                const char *tok = ix->t->tokens[v - 1];
                if (strncmp(tok, s, len) == 0 && tok[len] == 0)
                        return (int64_t) v - 1;
        }
}

int mp_vocab_index_is_first(const mp_vocab_index *ix, size_t id) {
        assert(ix);
        if (!ix->t || id >= ix->t->n_tokens || !ix->t->tokens[id])
                return 0;
        const char *s = ix->t->tokens[id];
        return mp_vocab_index_find(ix, s, strlen(s)) == (int64_t) id;
}

double mp_vocab_jaccard(const mp_tokenizer *a, const mp_tokenizer *b) {
        _cleanup_(mp_vocab_index_done) mp_vocab_index ia = {}, ib = {};

        if (mp_vocab_index_build(a, &ia) < 0 || mp_vocab_index_build(b, &ib) < 0)
                return NAN;

        size_t inter = 0;
        for (size_t id = 0; a && id < a->n_tokens; id++)
                if (mp_vocab_index_is_first(&ia, id) &&
                    mp_vocab_index_find(&ib, a->tokens[id], strlen(a->tokens[id])) >= 0)
                        inter++;

        size_t uni = ia.n_distinct + ib.n_distinct - inter;
        if (uni == 0)
                return 0.0;
        return mp_py_round((double) inter / (double) uni, 4);
}

int mp_vocab_sketch_build(const mp_tokenizer *t, Modelprov__V1__VocabSketch *out) {
        _cleanup_(mp_vocab_index_done) mp_vocab_index ix = {};
        int r;

        assert(out);

        free(out->mins);
        out->mins = NULL;
        out->n_mins = 0;
        out->vocab_size = 0;

        r = mp_vocab_index_build(t, &ix);
        if (r < 0)
                return r;
        if (ix.n_distinct == 0)
                return 0;

        uint64_t *mins = malloc(MP_VOCAB_SKETCH_K * sizeof(uint64_t));
        if (!mins)
                return -ENOMEM;
        for (size_t k = 0; k < MP_VOCAB_SKETCH_K; k++)
                mins[k] = UINT64_MAX;

        for (size_t id = 0; id < t->n_tokens; id++) {
                if (!mp_vocab_index_is_first(&ix, id))
                        continue;
                uint64_t th = XXH3_64bits(t->tokens[id], strlen(t->tokens[id]));
                for (size_t k = 0; k < MP_VOCAB_SKETCH_K; k++) {
                        uint64_t h = sketch_hash(th, k);
                        if (h < mins[k])
                                mins[k] = h;
                }
        }

        out->mins = mins;
        out->n_mins = MP_VOCAB_SKETCH_K;
        out->vocab_size = ix.n_distinct;
        return 0;
}

double mp_vocab_sketch_jaccard(const Modelprov__V1__VocabSketch *a, const Modelprov__V1__VocabSketch *b) {
        if (!a || !b || a->n_mins == 0 || b->n_mins == 0 || !a->mins || !b->mins)
                return NAN;

        size_t k = a->n_mins < b->n_mins ? a->n_mins : b->n_mins, same = 0;
        for (size_t i = 0; i < k; i++)
                same += a->mins[i] == b->mins[i];
        return (double) same / (double) k;
}
