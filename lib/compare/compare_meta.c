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

void mp_meta_side_init(const mp_fingerprint *fp, mp_meta_side *out) {
        const Modelprov__V1__Signals *s = fp->signals;
        *out = (mp_meta_side) { .fp = fp };
        if (s) {
                out->mfi = parse_object(s->mfi_json);
                out->tfv = parse_object(s->tfv_json);
        }
}

void mp_meta_side_done(mp_meta_side *m) {
        json_decref(m->mfi);
        json_decref(m->tfv);
        *m = (mp_meta_side) {0};
}

void mp_compare_metadata(const mp_meta_side *a, const mp_fingerprint *b, const mp_compare_options *o,
                         mp_comparison *out) {
        const Modelprov__V1__Signals *s = a->fp->signals, *t = b->signals;
        if (!s || !t)
                return;
        json_t *mfi = parse_object(t->mfi_json), *tfv = parse_object(t->tfv_json);
        int tier = 0;
        out->signal[MP_SIG_MFI] = a->mfi && mfi ? mp_mfi_similarity(a->mfi, mfi, &tier) : NAN;
        out->mfi_tier = isnan(out->signal[MP_SIG_MFI]) ? 0 : tier;
        out->signal[MP_SIG_TFV] = a->tfv && tfv ? mp_tfv_similarity(a->tfv, tfv) : NAN;
        json_decref(mfi);
        json_decref(tfv);

        if (o && o->tokenizer_a && o->tokenizer_b) {
                out->signal[MP_SIG_VOA] = mp_vocab_jaccard(o->tokenizer_a, o->tokenizer_b);
                out->voa_exact = true;
        }
        else if (s->vocab_sketch && t->vocab_sketch)
                out->signal[MP_SIG_VOA] = mp_round4(mp_vocab_sketch_jaccard(s->vocab_sketch, t->vocab_sketch));
}
