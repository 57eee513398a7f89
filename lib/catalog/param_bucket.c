/* param_bucket.c - size buckets for the scan pre-filter (see param_bucket.h).
 *
 * The estimate follows the reference definition term by term (docs/signals.md, "Catalog and scan"),
 * including its Python truthiness: a field that is missing, null or 0 falls
 * back to the next choice ("nkv or nh", "inter or 4h", "head_dim or h // nh"),
 * and an unknown tie_word_embeddings counts as tied. */
#include "catalog/param_bucket.h"

#include <assert.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "util/macro.h"

static const char *const bucket_names[_MP_BUCKET_MAX] = {
        [MP_BUCKET_UP_TO_1B] = "<=1B",
        [MP_BUCKET_1_10B] = "1-10B",
        [MP_BUCKET_10_40B] = "10-40B",
        [MP_BUCKET_40B_PLUS] = "40B+",
};

const char *mp_param_bucket_name(mp_param_bucket b) {
        return b >= 0 && b < _MP_BUCKET_MAX ? bucket_names[b] : "?";
}

int mp_param_bucket_from_name(const char *s) {
        if (!s)
                return -EINVAL;
        for (int b = 0; b < _MP_BUCKET_MAX; b++)
                if (strcmp(s, bucket_names[b]) == 0)
                        return b;
        return -EINVAL;
}

mp_param_bucket mp_param_bucket_of(uint64_t params) {
        if (params < UINT64_C(1000000000))
                return MP_BUCKET_UP_TO_1B;
        if (params < UINT64_C(10000000000))
                return MP_BUCKET_1_10B;
        if (params < UINT64_C(40000000000))
                return MP_BUCKET_10_40B;
        return MP_BUCKET_40B_PLUS;
}

size_t mp_param_bucket_neighbours(mp_param_bucket b, mp_param_bucket out[static 3]) {
        size_t n = 0;
        /* An unknown bucket is treated as the largest, as the reference does. */
        if (b < 0 || b >= _MP_BUCKET_MAX)
                b = MP_BUCKET_40B_PLUS;
        for (int i = (int) b - 1; i <= (int) b + 1; i++)
                if (i >= 0 && i < _MP_BUCKET_MAX)
                        out[n++] = (mp_param_bucket) i;
        return n;
}

/* 0 for missing, null, negative or non-integer values: Python's
 * "x or default" then picks the default. */
uint64_t mp_mfi_field_u64(const json_t *mfi, const char *key) {
        const json_t *v = json_object_get(mfi, key);
        if (!json_is_integer(v) || json_integer_value(v) <= 0)
                return 0;
        return (uint64_t) json_integer_value(v);
}

static uint64_t sat_mul(uint64_t a, uint64_t b) {
        uint64_t r;
        return mul_overflow_u64(a, b, &r) ? UINT64_MAX : r;
}

static uint64_t sat_add(uint64_t a, uint64_t b) {
        uint64_t r;
        return add_overflow_u64(a, b, &r) ? UINT64_MAX : r;
}

static bool is_gated(const json_t *mfi) {
        static const char *const gated_acts[] = { "silu", "swiglu", "gegelu" };
        static const char *const gated_types[] = {
                "gemma", "gemma2", "gemma3", "gemma3_text", "llama", "mistral", "mixtral", "phi3", "phi4",
                "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "deepseek_v2", "deepseek_v3", "cohere",
                "cohere2", "command-r", "starcoder2",
        };
        const char *act = json_string_value(json_object_get(mfi, "hidden_act"));
        const char *type = json_string_value(json_object_get(mfi, "model_type"));

        for (size_t i = 0; act && i < ELEMENTSOF(gated_acts); i++)
                if (strcasecmp(act, gated_acts[i]) == 0)
                        return true;
        for (size_t i = 0; type && i < ELEMENTSOF(gated_types); i++)
                if (strcasecmp(type, gated_types[i]) == 0)
                        return true;
        return false;
}

/* tie_word_embeddings: null or missing means tied (the transformers
 * default); otherwise Python truthiness of the value. */
static bool is_tied(const json_t *mfi) {
        const json_t *v = json_object_get(mfi, "tie_word_embeddings");
        if (!v || json_is_null(v))
                return true;
        if (json_is_boolean(v))
                return json_is_true(v);
        if (json_is_number(v))
                return json_number_value(v) != 0;
        if (json_is_string(v))
                return json_string_length(v) > 0;
        return true;
}

int mp_param_estimate_mfi(const json_t *mfi, uint64_t *ret) {
        assert(ret);

        if (!json_is_object(mfi))
                return -ENODATA;

        uint64_t h = mp_mfi_field_u64(mfi, "hidden_size");
        uint64_t layers = mp_mfi_field_u64(mfi, "num_hidden_layers");
        uint64_t vocab = mp_mfi_field_u64(mfi, "vocab_size");
        uint64_t nh = mp_mfi_field_u64(mfi, "num_attention_heads");
        uint64_t nkv = mp_mfi_field_u64(mfi, "num_key_value_heads");
        uint64_t inter = mp_mfi_field_u64(mfi, "intermediate_size");
        uint64_t hd = mp_mfi_field_u64(mfi, "head_dim");
        if (nkv == 0)
                nkv = nh;
        if (inter == 0)
                inter = sat_mul(4, h);
        if (hd == 0)
                hd = nh ? h / nh : h;

        uint64_t qkv = sat_mul(sat_mul(h, hd), sat_add(nh, sat_mul(2, nkv)));
        uint64_t o = sat_mul(sat_mul(nh, hd), h);
        uint64_t mlp = sat_mul(sat_mul(is_gated(mfi) ? 3 : 2, h), inter);
        uint64_t embed = sat_mul(vocab, h);
        uint64_t params = sat_add(embed, sat_mul(layers, sat_add(sat_add(qkv, o), mlp)));
        if (!is_tied(mfi))
                params = sat_add(params, embed);

        if (params == 0)
                return -ENODATA;
        *ret = params;
        return 0;
}

int mp_param_estimate_record(const mp_fingerprint *fp, uint64_t *ret) {
        assert(fp);
        assert(ret);

        if (fp->signals && fp->signals->mfi_json && fp->signals->mfi_json[0]) {
                json_t *mfi = json_loads(fp->signals->mfi_json, JSON_REJECT_DUPLICATES, NULL);
                int r = mp_param_estimate_mfi(mfi, ret);
                json_decref(mfi);
                if (r >= 0)
                        return 0;
        }
        if (fp->parameter_count == 0)
                return -ENODATA;
        *ret = fp->parameter_count;
        return 0;
}
