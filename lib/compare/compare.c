/* compare.c - combining the evidence of two fingerprints into scores, a
 * verdict and a relation hint (see compare.h and docs/signals.md). */
#include "compare/compare.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare/compare_internal.h"
#include "signals/tensor_role.h"
#include "util/macro.h"

static const char *const signal_names[_MP_SIG_MAX] = {
        [MP_SIG_MFI] = "mfi", [MP_SIG_TFV] = "tfv", [MP_SIG_VOA] = "voa", [MP_SIG_EAS] = "eas",
        [MP_SIG_NLF] = "nlf", [MP_SIG_LEP] = "lep", [MP_SIG_END] = "end", [MP_SIG_WVC] = "wvc",
        [MP_SIG_TENSOR_IDENTITY] = "tensor_identity", [MP_SIG_TENSOR_CLOSENESS] = "tensor_closeness",
        [MP_SIG_EMBED_VALUES] = "embedding_values", [MP_SIG_LAYER_VALUES] = "layer_values",
        [MP_SIG_LAYER_STATS] = "layer_stats",
};

const char *mp_signal_name(mp_signal_id id) {
        return (unsigned) id < _MP_SIG_MAX ? signal_names[id] : "unknown";
}

const char *mp_verdict_name(mp_verdict v) {
        switch (v) {
        case MP_VERDICT_CONFIRMED: return "Confirmed Match";
        case MP_VERDICT_HIGH:      return "High-Confidence Match";
        case MP_VERDICT_WEAK:      return "Weak Match";
        default:                   return "Not Matched";
        }
}

/* The reference project's identity score: fixed weights over its five
 * weight signals, renormalised over those available. */
static double reference_identity(const mp_comparison *c) {
        static const struct { mp_signal_id id; double w; } weights[] = {
                { MP_SIG_EAS, 0.36 }, { MP_SIG_NLF, 0.08 }, { MP_SIG_LEP, 0.16 },
                { MP_SIG_END, 0.19 }, { MP_SIG_WVC, 0.21 },
        };
        double sum = 0, wsum = 0;
        for (size_t i = 0; i < sizeof(weights) / sizeof(weights[0]); i++)
                if (!isnan(c->signal[weights[i].id])) {
                        sum += weights[i].w * c->signal[weights[i].id];
                        wsum += weights[i].w;
                }
        return wsum < 1e-10 ? NAN : mp_round4(sum / wsum);
}

static double tokenizer_score(const mp_comparison *c) {
        double tfv = c->signal[MP_SIG_TFV], voa = c->signal[MP_SIG_VOA];
        if (isnan(tfv) && isnan(voa))
                return NAN;
        return mp_round4(0.25 * (isnan(tfv) ? 0 : tfv) + 0.75 * (isnan(voa) ? 0 : voa));
}

static double sig(const mp_comparison *c, mp_signal_id id) {
        return isnan(c->signal[id]) ? 0 : c->signal[id];
}

mp_verdict mp_verdict_of_score(double s) {
        return s >= MP_VERDICT_CONFIRMED_AT ? MP_VERDICT_CONFIRMED
               : s >= MP_VERDICT_HIGH_AT    ? MP_VERDICT_HIGH
               : s >= MP_VERDICT_WEAK_AT    ? MP_VERDICT_WEAK
                                            : MP_VERDICT_NOT_MATCHED;
}

/* modelprov's identity score: the strongest direct weight evidence.  Each of
 * these signals stays near 0 for independently trained models whatever their
 * architecture, tokenizer or data, so any one of them being high is evidence
 * of shared weights; averaging them would let a permuted layer stack hide
 * identical embeddings. */
static double own_identity(const mp_comparison *c) {
        if (!c->weights)
                return NAN;
        static const mp_signal_id direct[] = { MP_SIG_TENSOR_IDENTITY, MP_SIG_TENSOR_CLOSENESS,
                                               MP_SIG_LAYER_VALUES, MP_SIG_EMBED_VALUES };
        double best = 0;
        for (size_t i = 0; i < sizeof(direct) / sizeof(direct[0]); i++)
                best = fmax(best, sig(c, direct[i]));
        return mp_round4(best);
}

/* Expected relative change a quantization brings (with margin): a pair
 * closer than this is a quantized copy, a farther one was also trained. */
static double quant_tolerance(const char *dtype) {
        static const struct { const char *dtype; double tol; } table[] = {
                { "Q8_0", 0.012 }, { "Q8_1", 0.012 }, { "Q8_K", 0.012 }, { "Q6_K", 0.03 },
                { "Q5_0", 0.06 }, { "Q5_1", 0.06 }, { "Q5_K", 0.06 }, { "Q4_0", 0.12 },
                { "Q4_1", 0.11 }, { "Q4_K", 0.09 }, { "Q3_K", 0.2 }, { "Q2_K", 0.3 },
        };
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
                if (strcmp(dtype, table[i].dtype) == 0)
                        return table[i].tol;
        return 0.3;     /* IQ*, TQ*: coarse */
}

/* The dtype holding most of the weight bytes. */
static const char *main_dtype(const mp_fingerprint *fp) {
        const char *best = "";
        uint64_t most = 0;
        for (size_t i = 0; i < fp->n_dtypes; i++)
                if (fp->dtypes[i]->n_bytes > most) {
                        most = fp->dtypes[i]->n_bytes;
                        best = fp->dtypes[i]->dtype;
                }
        return best;
}

static bool is_quantized(const char *dtype) {
        return dtype[0] == 'Q' || strncmp(dtype, "IQ", 2) == 0 || strncmp(dtype, "TQ", 2) == 0;
}

/* Rows of the token embedding, by the same name rules the pass used. */
static uint64_t embedding_rows(const mp_fingerprint *fp) {
        for (size_t i = 0; i < fp->n_tensors; i++)
                if (fp->tensors[i]->n_shape == 2 && mp_tensor_kind_of(fp->tensors[i]->name).role == MP_TR_EMBED)
                        return fp->tensors[i]->shape[0];
        return 0;
}

static uint32_t layers_of(const mp_fingerprint *fp) {
        return fp->signals ? fp->signals->num_layers : 0;
}

static const char *relation(const mp_fingerprint *a, const mp_fingerprint *b, const mp_comparison *c) {
        const char *da = main_dtype(a), *db = main_dtype(b);
        double rel = c->median_rel_change;

        if (a->model_digest.len == 32 && b->model_digest.len == 32 &&
            memcmp(a->model_digest.data, b->model_digest.data, 32) == 0)
                return "identical copy";
        if (c->tensors_common > 0 && c->tensors_identical == c->tensors_common && a->n_tensors == b->n_tensors)
                return strcmp(a->format, b->format) == 0 ? "identical copy" : "same weights in another format or dtype";
        if (embedding_rows(a) != embedding_rows(b) ||
            (!isnan(c->signal[MP_SIG_VOA]) && c->signal[MP_SIG_VOA] < 0.9))
                return "vocabulary changed";
        if (layers_of(a) != layers_of(b) || (a->arch && b->arch && a->arch->hidden_size != b->arch->hidden_size))
                return "pruned or resized";
        if (sig(c, MP_SIG_LAYER_VALUES) < 0.3 && sig(c, MP_SIG_EMBED_VALUES) >= 0.9)
                return "permuted copy (function-preserving)";
        if (c->tensors_scaled > 0)
                return "rescaled copy (function-preserving)";
        if (!isnan(rel) && (is_quantized(da) || is_quantized(db)) && strcmp(da, db) != 0 &&
            rel <= fmax(is_quantized(da) ? quant_tolerance(da) : 0, is_quantized(db) ? quant_tolerance(db) : 0))
                return "quantized copy";
        if (!isnan(rel) && rel < 0.01)
                return "same weights in another format or dtype";
        return "fine-tune / continued training";
}

static void explain(mp_comparison *c) {
        double changed = c->tensors_common ? 100.0 * (double) (c->tensors_common - c->tensors_identical) / c->tensors_common : 0;
        if (!c->weights) {
                snprintf(c->explanation, sizeof(c->explanation),
                         "no weights on one side: metadata tier %d, tokenizer score %.2f; a match needs weight evidence",
                         c->mfi_tier, isnan(c->tokenizer_score) ? 0.0 : c->tokenizer_score);
                return;
        }
        if (c->verdict == MP_VERDICT_NOT_MATCHED) {
                snprintf(c->explanation, sizeof(c->explanation),
                         "no shared weights: best direct weight evidence %.2f (independent models stay below %.2f)",
                         c->identity_score, MP_VERDICT_WEAK_AT);
                return;
        }
        snprintf(c->explanation, sizeof(c->explanation),
                 "%s: %.0f%% of %zu same-shape tensors changed (median relative change %.3g), layer values %.2f, "
                 "embedding values %.2f, embedding geometry %.2f",
                 c->relation, changed, c->tensors_common, isnan(c->median_rel_change) ? 0.0 : c->median_rel_change,
                 sig(c, MP_SIG_LAYER_VALUES), sig(c, MP_SIG_EMBED_VALUES), sig(c, MP_SIG_EAS));
}

static void decide(const mp_fingerprint *a, const mp_fingerprint *b, mp_comparison *c) {
        double s = c->identity_score;
        if (isnan(s)) {
                /* No weights on one side (an imported catalog entry): metadata
                 * and tokenizer can point at a candidate, never confirm one. */
                bool meta = c->mfi_tier >= 1 && c->mfi_tier <= 2;
                bool tok = !isnan(c->tokenizer_score) && c->tokenizer_score >= 0.75;
                c->verdict = meta && tok ? MP_VERDICT_WEAK : MP_VERDICT_NOT_MATCHED;
                c->relation = "unknown (no weights to compare)";
                explain(c);
                return;
        }
        c->verdict = mp_verdict_of_score(s);
        if (c->verdict >= MP_VERDICT_HIGH)
                c->relation = relation(a, b, c);
        else if (c->verdict == MP_VERDICT_WEAK)
                c->relation = "distant or shared initialisation";
        else
                c->relation = "unrelated";
        explain(c);
}

struct mp_compare_query {
        const mp_fingerprint *a;
        mp_weight_side *weights;
        mp_meta_side meta;
};

int mp_compare_query_new(const mp_fingerprint *a, mp_compare_query **ret) {
        assert(a && ret);
        mp_compare_query *q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->a = a;
        int r = mp_weight_side_new(a, &q->weights);
        if (r < 0) {
                free(q);
                return r;
        }
        mp_meta_side_init(a, &q->meta);
        *ret = q;
        return 0;
}

void mp_compare_query_free(mp_compare_query *q) {
        if (!q)
                return;
        mp_weight_side_free(q->weights);
        mp_meta_side_done(&q->meta);
        free(q);
}

int mp_compare_query_run(mp_compare_query *q, const mp_fingerprint *b, const mp_compare_options *o,
                         mp_comparison *out) {
        assert(q && b && out);
        memset(out, 0, sizeof(*out));
        for (size_t i = 0; i < _MP_SIG_MAX; i++)
                out->signal[i] = NAN;
        out->median_rel_change = NAN;

        int r = mp_compare_weights(q->weights, b, out);
        if (r < 0)
                return r;
        mp_compare_metadata(&q->meta, b, o, out);

        out->tokenizer_score = tokenizer_score(out);
        double ref = reference_identity(out);
        if (out->mfi_tier >= 1 && out->mfi_tier <= 2)
                out->pipeline_score = out->signal[MP_SIG_MFI];
        else
                out->pipeline_score = !isnan(ref) ? ref : out->signal[MP_SIG_MFI];
        out->identity_score = own_identity(out);
        decide(q->a, b, out);
        return 0;
}

int mp_compare(const mp_fingerprint *a, const mp_fingerprint *b, const mp_compare_options *o,
               mp_comparison *out) {
        _cleanup_(mp_compare_query_freep) mp_compare_query *q = NULL;
        int r = mp_compare_query_new(a, &q);
        if (r < 0)
                return r;
        return mp_compare_query_run(q, b, o, out);
}

static json_t *num_or_null(double x) {
        return isnan(x) ? json_null() : json_real(x);
}

json_t *mp_comparison_to_json(const mp_comparison *c) {
        json_t *signals = json_object();
        for (size_t i = 0; signals && i < _MP_SIG_MAX; i++)
                json_object_set_new(signals, signal_names[i], num_or_null(c->signal[i]));
        json_t *details = json_pack("{s:i, s:b, s:I, s:I, s:I, s:I, s:o}", "mfi_tier", c->mfi_tier,
                                    "weights_compared", c->weights, "tensors_common", (json_int_t) c->tensors_common,
                                    "tensors_identical", (json_int_t) c->tensors_identical,
                                    "elements_common", (json_int_t) c->bytes_common,
                                    "elements_identical", (json_int_t) c->bytes_identical,
                                    "median_relative_change", num_or_null(c->median_rel_change));
        if (details) {
                json_object_set_new(details, "tensors_rescaled", json_integer((json_int_t) c->tensors_scaled));
                json_object_set_new(details, "voa_method", json_string(isnan(c->signal[MP_SIG_VOA]) ? "none"
                                                                       : c->voa_exact ? "exact" : "sketch"));
        }
        return json_pack("{s:s, s:o, s:o, s:o, s:s, s:s, s:o, s:o}", "verdict", mp_verdict_name(c->verdict),
                         "pipeline_score", num_or_null(c->pipeline_score),
                         "identity_score", num_or_null(c->identity_score),
                         "tokenizer_score", num_or_null(c->tokenizer_score), "relation", c->relation,
                         "explanation", c->explanation, "signals", signals, "details", details);
}
