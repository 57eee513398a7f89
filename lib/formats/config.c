/* config.c - Hugging Face config.json to mp_arch.
 *
 * Configs in the wild are written by many tools and hand edits: the same
 * field has several names (GPT-2's n_embd, BART's d_model ...), numbers come
 * as null or as strings, multimodal models keep the language model's fields
 * in "text_config".  So a field with the wrong JSON type is treated as
 * absent rather than failing the whole model; only a file that is not a
 * JSON object at all is an error. */
#include "formats/config.h"

#include <assert.h>
#include <errno.h>
#include <math.h>

/* Field names in order of preference; NULL-terminated. */
#define NAMES(...) ((const char *const[]) { __VA_ARGS__, NULL })

/* First of names present in obj, or NULL. */
static const json_t *lookup(const json_t *obj, const char *const *names) {
        if (!json_is_object(obj))
                return NULL;
        for (; *names; names++) {
                const json_t *v = json_object_get(obj, *names);
                if (v && !json_is_null(v))
                        return v;
        }
        return NULL;
}

/* Looks in the primary object (text_config when used) first, then at the top
 * level, since multimodal configs split fields between the two. */
static const json_t *lookup2(const json_t *primary, const json_t *top, const char *const *names) {
        const json_t *v = lookup(primary, names);
        return v ? v : lookup(top, names);
}

/* Non-negative integer; an integral real (4096.0, written by some tools) is
 * accepted too.  Anything else leaves the field unknown (0). */
static uint64_t as_u64(const json_t *v) {
        if (json_is_integer(v))
                return json_integer_value(v) > 0 ? (uint64_t) json_integer_value(v) : 0;
        if (json_is_real(v)) {
                double d = json_real_value(v);
                if (d >= 1 && d < 18446744073709551616.0 && floor(d) == d)
                        return (uint64_t) d;
        }
        return 0;
}

static double as_double(const json_t *v) {
        return json_is_number(v) ? json_number_value(v) : NAN;
}

static const char *as_string(const json_t *v) {
        return json_is_string(v) ? json_string_value(v) : NULL;
}

static int as_tristate(const json_t *v) {
        return json_is_boolean(v) ? json_is_true(v) : -1;
}

/* "architectures": ["LlamaForCausalLM"] -> its first element. */
static const char *first_architecture(const json_t *primary, const json_t *top) {
        const json_t *a = lookup(top, NAMES("architectures"));
        if (!json_is_array(a) || json_array_size(a) == 0)
                a = lookup(primary, NAMES("architectures"));
        return json_is_array(a) ? as_string(json_array_get(a, 0)) : NULL;
}

/* transformers 5 moved rope_theta into "rope_parameters". */
static double rope_theta(const json_t *primary, const json_t *top) {
        double d = as_double(lookup2(primary, top, NAMES("rope_theta")));
        if (!isnan(d))
                return d;
        const json_t *p = lookup2(primary, top, NAMES("rope_parameters"));
        return as_double(lookup(p, NAMES("rope_theta")));
}

static int set_strings(mp_arch *a, const json_t *primary, const json_t *top) {
        int r;

        r = mp_arch_set_string(&a->architecture, first_architecture(primary, top));
        if (r < 0)
                return r;
        /* the model type of the whole model: "llava", not its "llama" part */
        const char *mt = as_string(lookup(top, NAMES("model_type")));
        r = mp_arch_set_string(&a->model_type, mt ? mt : as_string(lookup(primary, NAMES("model_type"))));
        if (r < 0)
                return r;
        r = mp_arch_set_string(&a->hidden_act,
                               as_string(lookup2(primary, top, NAMES("hidden_act", "activation_function",
                                                                      "hidden_activation"))));
        if (r < 0)
                return r;
        const char *dt = as_string(lookup(top, NAMES("torch_dtype", "dtype")));
        return mp_arch_set_string(&a->torch_dtype,
                                  dt ? dt : as_string(lookup(primary, NAMES("torch_dtype", "dtype"))));
}

int mp_arch_from_config(mp_arch *arch, const json_t *config) {
        static const char *const hidden_names[] = { "hidden_size", "n_embd", "d_model", NULL };
        mp_arch a = { .tie_word_embeddings = -1 };
        const json_t *top = config, *primary = config;
        int r;

        assert(arch);
        if (!json_is_object(config))
                return -EINVAL;

        const json_t *text = json_object_get(config, "text_config");
        if (!lookup(top, hidden_names) && json_is_object(text))
                primary = text;

        a.hidden_size = as_u64(lookup2(primary, top, hidden_names));
        a.num_layers = as_u64(lookup2(primary, top, NAMES("num_hidden_layers", "n_layer", "num_layers")));
        a.num_heads = as_u64(lookup2(primary, top, NAMES("num_attention_heads", "n_head")));
        a.num_kv_heads = as_u64(lookup2(primary, top, NAMES("num_key_value_heads")));
        a.intermediate_size = as_u64(lookup2(primary, top, NAMES("intermediate_size", "n_inner", "ffn_dim")));
        a.vocab_size = as_u64(lookup2(primary, top, NAMES("vocab_size")));
        a.max_positions = as_u64(lookup2(primary, top, NAMES("max_position_embeddings", "n_positions")));
        a.head_dim = as_u64(lookup2(primary, top, NAMES("head_dim")));
        a.rope_theta = rope_theta(primary, top);
        a.norm_eps = as_double(lookup2(primary, top, NAMES("rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon")));
        a.tie_word_embeddings = as_tristate(lookup2(primary, top, NAMES("tie_word_embeddings")));

        r = set_strings(&a, primary, top);
        if (r < 0) {
                mp_arch_clear(&a);
                return r;
        }

        /* only now, so that a failure leaves the caller's arch as it was */
        mp_arch_clear(arch);
        *arch = a;
        return 0;
}

int mp_config_load(mp_model *m, const char *label, const char *buf, size_t len, mp_error *err) {
        json_error_t jerr;
        int r;

        assert(m);
        assert(buf || len == 0);

        json_t *config = json_loadb(buf, len, 0, &jerr);
        if (!config)
                return mp_error_set(err, -EBADMSG, label, jerr.position > 0 ? jerr.position : 0,
                                    "invalid JSON: %s", jerr.text);
        if (!json_is_object(config)) {
                json_decref(config);
                return mp_error_set(err, -EBADMSG, label, 0, "config is not a JSON object");
        }

        r = mp_arch_from_config(&m->arch, config);
        if (r < 0) {
                json_decref(config);
                return mp_error_set(err, r, label, -1, "out of memory");
        }
        json_decref(m->config);
        m->config = config;
        return 0;
}
