/* compare_meta.c - metadata and tokenizer evidence of a comparison: MFI
 * (three tiers), TFV, and VOA (exact from two tokenizers, else estimated
 * from the records' vocabulary sketches).  None of it can make a match
 * (compare.c), but it narrows candidates and explains results. */
#include "compare/compare_internal.h"

#include <math.h>

#include "signals/mfi.h"
#include "signals/tfv.h"
#include "signals/vocab_sketch.h"

static json_t *parse_object(const char *s) {
        if (!s || !*s)
                return NULL;
        json_t *j = json_loads(s, JSON_REJECT_DUPLICATES, NULL);
        if (j && !json_is_object(j)) {
                json_decref(j);
                return NULL;
        }
        return j;
}

static double similarity_of(const char *ja, const char *jb, double (*fn)(const json_t *, const json_t *, int *),
                            int *tier) {
        json_t *a = parse_object(ja), *b = parse_object(jb);
        double r = a && b ? fn(a, b, tier) : NAN;
        json_decref(a);
        json_decref(b);
        return r;
}

static double mfi_fn(const json_t *a, const json_t *b, int *tier) {
        return mp_mfi_similarity(a, b, tier);
}

static double tfv_fn(const json_t *a, const json_t *b, int *tier) {
        (void) tier;
        return mp_tfv_similarity(a, b);
}

void mp_compare_metadata(const mp_fingerprint *a, const mp_fingerprint *b, const mp_compare_options *o,
                         mp_comparison *out) {
        const Modelprov__V1__Signals *s = a->signals, *t = b->signals;
        if (!s || !t)
                return;
        int tier = 0;
        out->signal[MP_SIG_MFI] = similarity_of(s->mfi_json, t->mfi_json, mfi_fn, &tier);
        out->mfi_tier = isnan(out->signal[MP_SIG_MFI]) ? 0 : tier;
        out->signal[MP_SIG_TFV] = similarity_of(s->tfv_json, t->tfv_json, tfv_fn, NULL);
        if (o && o->tokenizer_a && o->tokenizer_b)
                out->signal[MP_SIG_VOA] = mp_vocab_jaccard(o->tokenizer_a, o->tokenizer_b);
        else if (s->vocab_sketch && t->vocab_sketch)
                out->signal[MP_SIG_VOA] = mp_round4(mp_vocab_sketch_jaccard(s->vocab_sketch, t->vocab_sketch));
}
