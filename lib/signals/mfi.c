/* mfi.c - metadata family identification (see mfi.h): Python-compatible
 * formatting, the mfi object from config.json or GGUF metadata, its two
 * hashes and the three-tier similarity. */
#include "signals/mfi.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "signals/script.h"
#include "signals/vocab_sketch.h"
#include "util/macro.h"
#include "util/strutil.h"

/* ---- Python number formatting ------------------------------------------ */

/* round(x, -k) for 0 < k <= 3: to a multiple of p = 10^k, ties to even.
 * Below 2^63 the split into integer and fraction is exact; above, doubles
 * are multiples of 2048 > p/2, so the rounded decimal reads back as x. */
static double round_to_multiple(double x, int k) {
        assert(k > 0 && k <= 3);
        if (fabs(x) >= 0x1p63)
                return x;

        int64_t p = 1;
        for (int i = 0; i < k; i++)
                p *= 10;
        double fl = floor(x);
        double frac = x - fl;   /* exact */
        int64_t n = (int64_t) fl;
        int64_t r = ((n % p) + p) % p;
        int64_t base = n - r;   /* floor to a multiple of p */
        bool up;

        if (2 * r > p || (2 * r == p && frac > 0))
                up = true;
        else if (2 * r < p)
                up = false;
        else
                up = ((base / p) % 2) != 0;     /* tie: to the even multiple */
        double v = (double) (up ? base + p : base);
        return v == 0 ? copysign(0.0, x) : v;
}

double mp_py_round(double x, int ndigits) {
        char buf[512];

        if (!isfinite(x))
                return x;
        if (ndigits < 0)
                return round_to_multiple(x, -ndigits);
        if (ndigits > 300)
                return x;
        /* glibc prints the exact binary value correctly rounded (ties to
         * even), which is what Python's round() computes. */
        snprintf(buf, sizeof(buf), "%.*f", ndigits, x);
        return strtod(buf, NULL);
}

const char *mp_py_float_repr(double x, char *buf) {
        char e[40], digits[20];
        int exp10 = 0;
        size_t nd = 0;

        assert(buf);
        if (isnan(x))
                return strcpy(buf, "nan");
        if (isinf(x))
                return strcpy(buf, x < 0 ? "-inf" : "inf");

        /* The shortest digit string that reads back as x (Python's 'r'). */
        for (int prec = 1; prec <= 17; prec++) {
                snprintf(e, sizeof(e), "%.*e", prec - 1, x);
                if (strtod(e, NULL) == x)
                        break;
        }
        const char *p = e + (e[0] == '-');
        for (; *p && *p != 'e'; p++)
                if (*p >= '0' && *p <= '9' && nd < sizeof(digits) - 1)
                        digits[nd++] = *p;
        if (*p == 'e')
                exp10 = atoi(p + 1);
        while (nd > 1 && digits[nd - 1] == '0')
                nd--;
        digits[nd] = 0;

        char *o = buf;
        if (signbit(x))
                *o++ = '-';
        int decpt = exp10 + 1;
        if (decpt <= -4 || decpt > 16) {
                *o++ = digits[0];
                if (nd > 1) {
                        *o++ = '.';
                        o = mempcpy(o, digits + 1, nd - 1);
                }
                snprintf(o, 16, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
        } else if (decpt <= 0) {
                o = mempcpy(o, "0.", 2);
                for (int i = 0; i < -decpt; i++)
                        *o++ = '0';
                o = mempcpy(o, digits, nd);
                *o = 0;
        } else if ((size_t) decpt < nd) {
                o = mempcpy(o, digits, (size_t) decpt);
                *o++ = '.';
                o = mempcpy(o, digits + decpt, nd - (size_t) decpt);
                *o = 0;
        } else {
                o = mempcpy(o, digits, nd);
                for (size_t i = nd; i < (size_t) decpt; i++)
                        *o++ = '0';
                strcpy(o, ".0");
        }
        return buf;
}

/* ---- json.dumps -------------------------------------------------------- */

static void dump_string(FILE *f, const char *s, size_t len) {
        fputc('"', f);
        for (size_t i = 0; i < len;) {
                uint32_t c;
                unsigned char b = (unsigned char) s[i];

                if (b == '"' || b == '\\') {
                        fprintf(f, "\\%c", b);
                        i++;
                        continue;
                }
                if (b >= 0x20 && b < 0x7f) {
                        fputc(b, f);
                        i++;
                        continue;
                }
                static const struct { char c, e; } short_esc[] = {
                        { '\n', 'n' }, { '\r', 'r' }, { '\t', 't' }, { '\b', 'b' }, { '\f', 'f' },
                };
                bool done = false;
                for (size_t k = 0; k < ELEMENTSOF(short_esc) && !done; k++)
                        if (b == (unsigned char) short_esc[k].c) {
                                fprintf(f, "\\%c", short_esc[k].e);
                                done = true;
                        }
                if (done) {
                        i++;
                        continue;
                }
                i += mp_utf8_decode(s + i, len - i, &c);
                if (c >= 0x10000) {
                        c -= 0x10000;
                        fprintf(f, "\\u%04x\\u%04x", 0xd800 + (c >> 10), 0xdc00 + (c & 0x3ff));
                } else
                        fprintf(f, "\\u%04x", c);
        }
        fputc('"', f);
}

static int cmp_keys(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static int dump_value(FILE *f, const json_t *v, bool sort_keys) {
        char buf[MP_PY_REPR_MAX];
        size_t i;
        json_t *item;

        switch (json_typeof(v)) {
        case JSON_NULL:
                fputs("null", f);
                return 0;
        case JSON_TRUE:
                fputs("true", f);
                return 0;
        case JSON_FALSE:
                fputs("false", f);
                return 0;
        case JSON_INTEGER:
                fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                return 0;
        case JSON_REAL: {
                double d = json_real_value(v);
                fputs(isnan(d) ? "NaN" : isinf(d) ? (d < 0 ? "-Infinity" : "Infinity") : mp_py_float_repr(d, buf), f);
                return 0;
        }
        case JSON_STRING:
                dump_string(f, json_string_value(v), json_string_length(v));
                return 0;
        case JSON_ARRAY:
                fputc('[', f);
                json_array_foreach((json_t *) v, i, item) {
                        if (i > 0)
                                fputs(", ", f);
                        int r = dump_value(f, item, sort_keys);
                        if (r < 0)
                                return r;
                }
                fputc(']', f);
                return 0;
        case JSON_OBJECT: {
                /* Sorted: UTF-8 byte order is code point order. */
                size_t n = json_object_size(v), k = 0;
                const char *key;
                _cleanup_(freep) const char **keys = calloc(n ? n : 1, sizeof(char *));
                if (!keys)
                        return -ENOMEM;
                json_object_foreach((json_t *) v, key, item)
                        keys[k++] = key;
                if (sort_keys)
                        qsort(keys, n, sizeof(char *), cmp_keys);
                fputc('{', f);
                for (k = 0; k < n; k++) {
                        if (k > 0)
                                fputs(", ", f);
                        dump_string(f, keys[k], strlen(keys[k]));
                        fputs(": ", f);
                        int r = dump_value(f, json_object_get(v, keys[k]), sort_keys);
                        if (r < 0)
                                return r;
                }
                fputc('}', f);
                return 0;
        }
        }
        return -EINVAL;
}

char *mp_py_json_dumps(const json_t *v, bool sort_keys) {
        char *s = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&s, &len);

        assert(v);
        if (!f)
                return NULL;
        int r = dump_value(f, v, sort_keys);
        if (fclose(f) != 0 || r < 0) {
                free(s);
                return NULL;
        }
        return s;
}

/* ---- building the mfi object ------------------------------------------- */

/* Model types whose transformers config maps another config.json key onto
 * a standard attribute (attribute_map, or an __init__ rename). */
static const struct alias {
        const char *model_types;        /* space separated */
        const char *attr, *key;
} aliases[] = {
        { "gpt2 gptj codegen gpt_bigcode", "hidden_size", "n_embd" },
        { "gpt2 gptj codegen gpt_bigcode", "num_hidden_layers", "n_layer" },
        { "gpt2 gptj codegen gpt_bigcode", "num_attention_heads", "n_head" },
        { "gpt2 gptj codegen gpt_bigcode", "max_position_embeddings", "n_positions" },
        { "bloom falcon", "num_hidden_layers", "n_layer" },
        { "bloom falcon", "num_attention_heads", "n_head" },
        { "falcon", "hidden_size", "n_embed" },
        { "t5 mt5 umt5 bart mbart marian m2m_100 pegasus mpt", "hidden_size", "d_model" },
        { "t5 mt5 umt5", "num_attention_heads", "num_heads" },
        { "t5 mt5 umt5", "num_hidden_layers", "num_layers" },
        { "t5 mt5 umt5", "head_dim", "d_kv" },
        { "bart mbart marian m2m_100 pegasus", "num_attention_heads", "encoder_attention_heads" },
        { "bart mbart marian m2m_100 pegasus", "num_hidden_layers", "encoder_layers" },
        { "mpt", "num_attention_heads", "n_heads" },
        { "mpt", "num_hidden_layers", "n_layers" },
        { "distilbert", "hidden_size", "dim" },
        { "distilbert", "num_attention_heads", "n_heads" },
        { "distilbert", "num_hidden_layers", "n_layers" },
};

/* Model types whose config leaves num_key_value_heads unset when config.json
 * has none (most newer decoder configs copy num_attention_heads instead). */
static const char *const no_kv_default =
        "bert roberta xlm-roberta albert deberta deberta-v2 distilbert electra bloom chatglm falcon gpt2 "
        "gpt_neox gptj codegen gpt_bigcode opt mpt t5 mt5 umt5 bart mbart marian m2m_100 pegasus";

/* Model types whose config class defaults attention_bias to False. */
static const char *const attention_bias_false =
        "llama gemma gemma2 gemma3 gemma3_text granite granitemoehybrid olmo2 olmo3 cohere cohere2 "
        "deepseek_v2 deepseek_v3 phi3 qwen3 qwen3_moe qwen3_5 hunyuan_v1_dense minicpm nemotron_h";

/* Model types with a class default query_pre_attn_scalar (qk_norm True). */
static const char *const qk_scalar_default = "gemma2 gemma3 gemma3_text";

/* Model types whose config fills head_dim = hidden_size / heads. */
static const char *const head_dim_default =
        "llama mistral mixtral qwen3 qwen3_moe gemma gemma2 gemma3 gemma3_text cohere2 glm4 "
        "hunyuan_v1_dense ministral mistral3 qwen3_5 wedlm";

/* Model types that still had a rope_theta attribute in the transformers
 * version that built the reference DB; for all others it moved into the
 * "rope parameters" dict (docs/signals.md). */
static const char *const rope_theta_kept = "internlm2 minicpm wedlm bolmo nemotron_flash";

static bool word_in(const char *list, const char *word) {
        size_t n = strlen(word);
        for (const char *p = list; (p = strstr(p, word)); p += n)
                if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0))
                        return true;
        return false;
}

typedef struct cfg_view {
        const json_t *top, *cfg;
        const char *model_type;         /* top-level, "unknown" if none */
} cfg_view;

/* getattr(cfg, name): the key itself, else its alias for this model type. */
static const json_t *attr(const cfg_view *v, const char *name) {
        const json_t *x = json_object_get(v->cfg, name);
        if (x)
                return x;
        for (size_t i = 0; i < ELEMENTSOF(aliases); i++)
                if (strcmp(aliases[i].attr, name) == 0 && word_in(aliases[i].model_types, v->model_type) &&
                    (x = json_object_get(v->cfg, aliases[i].key)))
                        return x;
        return NULL;
}

static bool is_num(const json_t *x) {
        return json_is_integer(x) || json_is_real(x);
}

static double num(const json_t *x) {
        return json_is_integer(x) ? (double) json_integer_value(x) : json_is_real(x) ? json_real_value(x) : 0;
}

/* Python truthiness of a config value. */
static bool truthy(const json_t *x) {
        switch (x ? json_typeof(x) : JSON_NULL) {
        case JSON_TRUE:    return true;
        case JSON_INTEGER: return json_integer_value(x) != 0;
        case JSON_REAL:    return json_real_value(x) != 0;
        case JSON_STRING:  return json_string_length(x) > 0;
        case JSON_ARRAY:   return json_array_size(x) > 0;
        case JSON_OBJECT:  return json_object_size(x) > 0;
        default:           return false;
        }
}

/* A numeric field: the config number as it was (int or float, as Python
 * keeps it), null for null; anything else (strings, lists: hostile or
 * broken configs) counts as absent. */
static json_t *num_field(const json_t *x, json_t *dflt) {
        if (is_num(x) || json_is_null(x)) {
                json_decref(dflt);
                return json_copy((json_t *) x);
        }
        return dflt;
}

/* config.hidden_size > 0 decides whether the top level is the text model. */
static const json_t *text_backbone(const json_t *top, const char *model_type) {
        cfg_view v = { .top = top, .cfg = top, .model_type = model_type };
        const json_t *h = attr(&v, "hidden_size");
        if (is_num(h) && num(h) != 0)
                return top;
        static const char *const subs[] = { "text_config", "decoder" };
        for (size_t i = 0; i < ELEMENTSOF(subs); i++) {
                const json_t *sub = json_object_get(top, subs[i]);
                if (!json_is_object(sub))
                        continue;
                /* The sub-config's own model_type picks its aliases. */
                const json_t *mt = json_object_get(sub, "model_type");
                cfg_view sv = { .top = top, .cfg = sub, .model_type = json_is_string(mt) ? json_string_value(mt) : "" };
                h = attr(&sv, "hidden_size");
                if (is_num(h) && num(h) > 0)
                        return sub;
        }
        return top;
}

typedef struct mfi_builder {
        json_t *o;
        int r;
} mfi_builder;

/* Sets key to v (stolen); remembers the first failure. */
static void put(mfi_builder *b, const char *key, json_t *v) {
        if (b->r < 0) {
                json_decref(v);
                return;
        }
        if (!v || json_object_set_new(b->o, key, v) < 0)
                b->r = -ENOMEM;
}

static json_t *string_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}

static json_t *uint_or(uint64_t v, json_t *dflt) {
        if (v == 0 || v > INT64_MAX)
                return dflt;
        json_decref(dflt);
        return json_integer((json_int_t) v);
}

/* First of intermediate_size, d_ff, encoder_ffn_dim, decoder_ffn_dim,
 * ffn_dim that is a positive number; else hidden_dim if positive and not
 * hidden_size; else 0. */
static json_t *intermediate(const cfg_view *v, const json_t *hidden) {
        static const char *const keys[] = { "intermediate_size", "d_ff", "encoder_ffn_dim", "decoder_ffn_dim", "ffn_dim" };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const json_t *x = attr(v, keys[i]);
                if (is_num(x) && num(x) > 0)
                        return json_copy((json_t *) x);
        }
        const json_t *hd = attr(v, "hidden_dim");
        if (is_num(hd) && num(hd) > 0 && !(is_num(hidden) && num(hd) == num(hidden)))
                return json_copy((json_t *) hd);
        return json_integer(0);
}

/* rope_theta and rope_scaling the way the reference DB's transformers
 * version exposes them: for most model types rope_theta is gone and
 * rope_scaling is the "rope parameters" dict (the config's rope_scaling keys,
 * partial_rotary_factor, rope_theta and rope_type). */
static void rope_fields(mfi_builder *b, const cfg_view *v) {
        const json_t *theta = attr(v, "rope_theta"), *scaling = attr(v, "rope_scaling");
        const json_t *params = attr(v, "rope_parameters");

        if (word_in(rope_theta_kept, v->model_type)) {
                put(b, "rope_theta", is_num(theta) ? json_copy((json_t *) theta) : json_null());
                put(b, "rope_scaling", json_is_object(scaling) ? json_deep_copy(scaling) : json_null());
                return;
        }
        put(b, "rope_theta", json_null());
        if (json_is_object(params)) {
                put(b, "rope_scaling", json_deep_copy(params));
                return;
        }
        if (!is_num(theta) && !json_is_object(scaling)) {
                put(b, "rope_scaling", json_null());
                return;
        }

        json_t *d = json_is_object(scaling) ? json_deep_copy(scaling) : json_object();
        const json_t *prf = attr(v, "partial_rotary_factor");
        if (d && is_num(prf) && json_object_set_new(d, "partial_rotary_factor", json_copy((json_t *) prf)) < 0)
                goto fail;
        if (d && is_num(theta) && json_object_set_new(d, "rope_theta", json_copy((json_t *) theta)) < 0)
                goto fail;
        if (d && !json_object_get(d, "rope_type")) {
                const json_t *type = json_object_get(d, "type");
                if (json_object_set_new(d, "rope_type", json_is_string(type) ? json_copy((json_t *) type)
                                                                              : json_string("default")) < 0)
                        goto fail;
        }
        put(b, "rope_scaling", d);
        return;
fail:
        json_decref(d);
        b->r = -ENOMEM;
}

/* The fields that depend on num_attention_heads and num_key_value_heads. */
static void attention_fields(mfi_builder *b) {
        const json_t *heads = json_object_get(b->o, "num_attention_heads");
        const json_t *kv = json_object_get(b->o, "num_key_value_heads");
        double nah = truthy(heads) && is_num(heads) ? num(heads) : 1;
        double nkv = is_num(kv) ? num(kv) : 0;

        put(b, "gqa_ratio", json_real(truthy(kv) && is_num(kv) ? mp_py_round(nah / nkv, 1) : 1.0));
        const char *style = !is_num(kv) || nkv == nah ? "MHA" : nkv == 1 ? "MQA" : "GQA";
        put(b, "attention_style", json_string(style));
}

static bool has_any(const cfg_view *v, const char *a, const char *b) {
        return json_object_get(v->cfg, a) || json_object_get(v->cfg, b);
}

static void config_fields(mfi_builder *b, const json_t *top) {
        const json_t *mt = json_object_get(top, "model_type");
        cfg_view v = { .top = top, .model_type = json_is_string(mt) ? json_string_value(mt) : "unknown" };
        v.cfg = text_backbone(top, v.model_type);

        put(b, "model_type", json_string(v.model_type));
        const json_t *archs = json_object_get(top, "architectures");
        bool archs_ok = json_is_array(archs) && json_array_size(archs) > 0;
        for (size_t i = 0; archs_ok && i < json_array_size(archs); i++)
                archs_ok = json_is_string(json_array_get(archs, i));
        put(b, "architectures", archs_ok ? json_deep_copy(archs) : json_pack("[s]", "unknown"));

        const json_t *hidden = attr(&v, "hidden_size");
        put(b, "hidden_size", num_field(hidden, json_integer(0)));
        put(b, "num_hidden_layers", num_field(attr(&v, "num_hidden_layers"), json_integer(0)));
        put(b, "num_attention_heads", num_field(attr(&v, "num_attention_heads"), json_integer(0)));

        const json_t *kv = attr(&v, "num_key_value_heads");
        if (!kv && !word_in(no_kv_default, v.model_type) && strcmp(v.model_type, "unknown") != 0)
                kv = attr(&v, "num_attention_heads");
        put(b, "num_key_value_heads", num_field(kv, json_null()));
        put(b, "intermediate_size", intermediate(&v, hidden));
        put(b, "vocab_size", num_field(attr(&v, "vocab_size"), json_integer(0)));
        put(b, "max_position_embeddings", num_field(attr(&v, "max_position_embeddings"), json_integer(0)));

        const json_t *act = attr(&v, "hidden_act");
        if (!json_is_string(act))
                act = attr(&v, "hidden_activation");
        put(b, "hidden_act", json_is_string(act) ? json_copy((json_t *) act) : json_null());

        rope_fields(b, &v);

        const json_t *tie = attr(&v, "tie_word_embeddings");
        put(b, "tie_word_embeddings", json_is_boolean(tie) ? json_copy((json_t *) tie) : json_true());
}

/* After bos/eos: the fields the config decides by attribute presence. */
static void config_late_fields(mfi_builder *b, const json_t *top) {
        const json_t *mt = json_object_get(top, "model_type");
        cfg_view v = { .top = top, .model_type = json_is_string(mt) ? json_string_value(mt) : "unknown" };
        v.cfg = text_backbone(top, v.model_type);

        attention_fields(b);
        put(b, "norm_type", json_string(has_any(&v, "rms_norm_eps", "rms_norm_epsilon") ? "RMSNorm" :
                                        has_any(&v, "layer_norm_eps", "layer_norm_epsilon") ? "LayerNorm" : "unknown"));

        const json_t *bias = attr(&v, "attention_bias");
        if (!bias)
                bias = attr(&v, "bias");
        if (bias && !json_is_object(bias) && !json_is_array(bias))
                put(b, "attention_bias", json_copy((json_t *) bias));
        else
                put(b, "attention_bias", word_in(attention_bias_false, v.model_type) ? json_false() : json_null());

        const json_t *qs = attr(&v, "query_pre_attn_scalar");
        bool qk = truthy(attr(&v, "qk_layernorm")) || truthy(attr(&v, "qk_norm")) ||
                  (qs ? !json_is_null(qs) : word_in(qk_scalar_default, v.model_type));
        put(b, "qk_norm", json_boolean(qk));

        const json_t *pe = attr(&v, "position_embedding_type");
        if (!json_is_null(json_object_get(b->o, "rope_theta")))
                put(b, "pos_encoding", json_string("RoPE"));
        else
                put(b, "pos_encoding", json_is_string(pe) ? json_copy((json_t *) pe) : json_string("absolute"));

        const json_t *hd = attr(&v, "head_dim");
        const json_t *h = json_object_get(b->o, "hidden_size"), *nh = json_object_get(b->o, "num_attention_heads");
        if (is_num(hd) || json_is_null(hd))
                put(b, "head_dim", json_copy((json_t *) hd));
        else if (word_in(head_dim_default, v.model_type) && json_is_integer(h) && json_is_integer(nh) &&
                 json_integer_value(nh) > 0)
                put(b, "head_dim", json_integer(json_integer_value(h) / json_integer_value(nh)));
        else
                put(b, "head_dim", json_null());
}

/* GGUF metadata (no config.json): the fields llama.cpp keeps. */
static void gguf_fields(mfi_builder *b, const mp_model *m) {
        const mp_arch *a = &m->arch;
        const char *mt = a->model_type ? a->model_type : "unknown";

        put(b, "model_type", json_string(mt));
        put(b, "architectures", json_pack("[s]", "unknown"));
        put(b, "hidden_size", uint_or(a->hidden_size, json_integer(0)));
        put(b, "num_hidden_layers", uint_or(a->num_layers, json_integer(0)));
        put(b, "num_attention_heads", uint_or(a->num_heads, json_integer(0)));
        put(b, "num_key_value_heads", uint_or(a->num_kv_heads, json_null()));
        put(b, "intermediate_size", uint_or(a->intermediate_size, json_integer(0)));
        put(b, "vocab_size", uint_or(a->vocab_size, json_integer(0)));
        put(b, "max_position_embeddings", uint_or(a->max_positions, json_integer(0)));
        put(b, "hidden_act", string_or_null(a->hidden_act));

        /* Same rule as for configs: the theta goes into the rope dict. */
        bool have_theta = isfinite(a->rope_theta) && a->rope_theta > 0;
        if (word_in(rope_theta_kept, mt)) {
                put(b, "rope_theta", have_theta ? json_real(a->rope_theta) : json_null());
                put(b, "rope_scaling", json_null());
        } else {
                put(b, "rope_theta", json_null());
                put(b, "rope_scaling", have_theta ? json_pack("{s:f,s:s}", "rope_theta", a->rope_theta,
                                                              "rope_type", "default")
                                                  : json_null());
        }
        put(b, "tie_word_embeddings", a->tie_word_embeddings < 0 ? json_null() : json_boolean(a->tie_word_embeddings));
}

static void gguf_late_fields(mfi_builder *b, const mp_model *m) {
        bool rms = false, ln = false;

        attention_fields(b);
        for (size_t i = 0; i < m->n_metadata; i++) {
                rms = rms || mp_has_suffix(m->metadata[i].key, ".attention.layer_norm_rms_epsilon");
                ln = ln || mp_has_suffix(m->metadata[i].key, ".attention.layer_norm_epsilon");
        }
        put(b, "norm_type", json_string(rms ? "RMSNorm" : ln ? "LayerNorm" : "unknown"));
        put(b, "attention_bias", json_null());
        put(b, "qk_norm", json_false());
        put(b, "pos_encoding", json_string(json_is_null(json_object_get(b->o, "rope_theta")) ? "absolute" : "RoPE"));
        put(b, "head_dim", uint_or(m->arch.head_dim, json_null()));
}

/* The id transformers gives a special token string: its vocabulary id,
 * else the unknown token's id, else None. */
static json_t *special_id(const mp_vocab_index *ix, const char *tok) {
        const mp_tokenizer *t = ix->t;
        int64_t id = tok ? mp_vocab_index_find(ix, tok, strlen(tok)) : -1;

        if (tok && id < 0 && t && t->unk_token)
                id = mp_vocab_index_find(ix, t->unk_token, strlen(t->unk_token));
        return id >= 0 ? json_integer(id) : json_null();
}

static void tokenizer_fields(mfi_builder *b, const mp_tokenizer *t) {
        _cleanup_(mp_vocab_index_done) mp_vocab_index ix = {};

        if (b->r < 0)
                return;
        if (mp_vocab_index_build(t, &ix) < 0) {
                b->r = -ENOMEM;
                return;
        }
        put(b, "bos_token_id", special_id(&ix, t ? t->bos_token : NULL));
        put(b, "eos_token_id", special_id(&ix, t ? t->eos_token : NULL));
}

/* str() of a token id as Python prints it in token_id_signature. */
static void py_str_id(const json_t *v, char *buf, size_t size) {
        if (json_is_integer(v))
                snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else
                snprintf(buf, size, "None");
}

static void finish_fields(mfi_builder *b, const mp_tokenizer *t) {
        char hex[65] = "", bos[32], eos[32], sig[80];

        if (t) {
                uint8_t d[32];
                mp_tokenizer_vocab_digest(t, d);
                for (size_t i = 0; i < 32; i++)
                        snprintf(hex + 2 * i, 3, "%02x", d[i]);
        }
        put(b, "tokenizer_hash", json_string(hex));

        py_str_id(json_object_get(b->o, "bos_token_id"), bos, sizeof(bos));
        py_str_id(json_object_get(b->o, "eos_token_id"), eos, sizeof(eos));
        snprintf(sig, sizeof(sig), "bos=%s|eos=%s", bos, eos);
        put(b, "token_id_signature", json_string(sig));

        if (b->r < 0)
                return;
        char arch[65], family[65];
        int r = mp_mfi_hashes(b->o, arch, family);
        if (r < 0) {
                b->r = r;
                return;
        }
        put(b, "arch_hash", json_string(arch));
        put(b, "family_hash", json_string(family));
}

int mp_mfi_build(const mp_model *m, json_t **ret) {
        assert(m);
        assert(ret);

        *ret = NULL;
        bool have_config = json_is_object(m->config);
        if (!have_config && !m->arch.model_type && !m->arch.architecture)
                return 0;

        mfi_builder b = { .o = json_object() };
        if (!b.o)
                return -ENOMEM;

        if (have_config)
                config_fields(&b, m->config);
        else
                gguf_fields(&b, m);
        tokenizer_fields(&b, m->tokenizer);
        if (have_config)
                config_late_fields(&b, m->config);
        else
                gguf_late_fields(&b, m);
        finish_fields(&b, m->tokenizer);

        if (b.r < 0) {
                json_decref(b.o);
                return b.r;
        }
        *ret = b.o;
        return 0;
}

/* ---- hashes -------------------------------------------------------------- */

static int sha256_hex(const char *s, char hex[65]) {
        uint8_t d[32];
        unsigned int n = sizeof(d);

        if (EVP_Digest(s, strlen(s), d, &n, EVP_sha256(), NULL) != 1)
                return -ENOMEM;
        for (size_t i = 0; i < 32; i++)
                snprintf(hex + 2 * i, 3, "%02x", d[i]);
        return 0;
}

/* Python str() of a scalar config value (for rope_scaling["type"]).  Lists
 * and dicts are rendered as JSON, which differs from Python's repr only in
 * quotes; no real config has one there. */
static char *py_str(const json_t *v) {
        char buf[MP_PY_REPR_MAX], *s = NULL;

        switch (json_typeof(v)) {
        case JSON_STRING:  return strdup(json_string_value(v));
        case JSON_NULL:    return strdup("None");
        case JSON_TRUE:    return strdup("True");
        case JSON_FALSE:   return strdup("False");
        case JSON_REAL:    return strdup(mp_py_float_repr(json_real_value(v), buf));
        case JSON_INTEGER:
                return asprintf(&s, "%" JSON_INTEGER_FORMAT, json_integer_value(v)) < 0 ? NULL : s;
        default:
                return mp_py_json_dumps(v, true);
        }
}

/* str(round(rope_theta, -2)), keeping int vs float; "none" for None. */
static char *rope_bucket(const json_t *theta) {
        char buf[MP_PY_REPR_MAX], *s = NULL;

        if (json_is_integer(theta)) {
                __int128 x = json_integer_value(theta), r = ((x % 100) + 100) % 100, base = x - r;
                if (r > 50 || (r == 50 && ((base / 100) % 2) != 0))
                        base += 100;
                /* Up to ~9.2e18 + 100: print through two halves. */
                bool neg = base < 0;
                unsigned __int128 u = neg ? -(unsigned __int128) base : (unsigned __int128) base;
                uint64_t hi = (uint64_t) (u / 1000000000000000000ULL), lo = (uint64_t) (u % 1000000000000000000ULL);
                int k = hi ? asprintf(&s, "%s%" PRIu64 "%018" PRIu64, neg ? "-" : "", hi, lo)
                           : asprintf(&s, "%s%" PRIu64, neg ? "-" : "", lo);
                return k < 0 ? NULL : s;
        }
        if (json_is_real(theta))
                return strdup(mp_py_float_repr(mp_py_round(json_real_value(theta), -2), buf));
        /* None, or (hostile) another type: Python would fail; count as none. */
        return strdup("none");
}

static json_t *field_or_null(const json_t *mfi, const char *key) {
        json_t *v = json_object_get(mfi, key);
        return v ? json_incref(v) : json_null();
}

int mp_mfi_hashes(const json_t *mfi, char arch_hex[65], char family_hex[65]) {
        static const char *const arch_keys[] = {
                "model_type", "architectures", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "intermediate_size", "vocab_size", "max_position_embeddings",
        };
        _cleanup_(json_decrefp) json_t *arch = NULL, *family = NULL;
        _cleanup_(freep) char *arch_s = NULL, *family_s = NULL, *bucket = NULL, *scaling_type = NULL;

        assert(arch_hex);
        assert(family_hex);
        if (!json_is_object(mfi))
                return -EINVAL;

        arch = json_array();
        if (!arch)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(arch_keys); i++)
                if (json_array_append_new(arch, field_or_null(mfi, arch_keys[i])) < 0)
                        return -ENOMEM;

        bucket = rope_bucket(json_object_get(mfi, "rope_theta"));
        const json_t *rs = json_object_get(mfi, "rope_scaling");
        if (json_is_object(rs) && json_object_size(rs) > 0 && json_object_get(rs, "type"))
                scaling_type = py_str(json_object_get(rs, "type"));
        else
                scaling_type = strdup("none");
        if (!bucket || !scaling_type)
                return -ENOMEM;

        family = json_pack("[oooooss]", field_or_null(mfi, "model_type"), field_or_null(mfi, "attention_style"),
                           field_or_null(mfi, "hidden_act"), field_or_null(mfi, "norm_type"),
                           field_or_null(mfi, "tokenizer_hash"), bucket, scaling_type);
        if (!family)
                return -ENOMEM;

        arch_s = mp_py_json_dumps(arch, true);
        family_s = mp_py_json_dumps(family, true);
        if (!arch_s || !family_s)
                return -ENOMEM;
        int r = sha256_hex(arch_s, arch_hex);
        if (r < 0)
                return r;
        return sha256_hex(family_s, family_hex);
}

/* ---- similarity ------------------------------------------------------------ */

/* Python ==, with a missing key as None. */
static bool py_eq(const json_t *a, const json_t *b) {
        if (!a || json_is_null(a) || !b || json_is_null(b))
                return (!a || json_is_null(a)) && (!b || json_is_null(b));
        if (is_num(a) && is_num(b))
                return num(a) == num(b);
        return json_equal((json_t *) a, (json_t *) b);
}

static bool positive(const json_t *x) {
        return is_num(x) && num(x) > 0;
}

/* 1 − |a−b| / max(a, b). */
static double closeness(double a, double b) {
        double m = a > b ? a : b;
        return m == 0 ? 0 : 1 - fabs(a - b) / m;
}

double mp_mfi_similarity(const json_t *a, const json_t *b, int *tier) {
        int dummy;
        if (!tier)
                tier = &dummy;
        *tier = 0;
        if (!json_is_object(a) || !json_is_object(b))
                return NAN;

#define F(o, k) json_object_get(o, k)
        const char *ah = json_string_value(F(a, "arch_hash")), *bh = json_string_value(F(b, "arch_hash"));
        if (ah && bh && *ah && strcmp(ah, bh) == 0) {
                *tier = 1;
                return 1.0;
        }
        const char *af = json_string_value(F(a, "family_hash")), *bf = json_string_value(F(b, "family_hash"));
        if (af && bf && *af && strcmp(af, bf) == 0 && py_eq(F(a, "hidden_size"), F(b, "hidden_size")) &&
            py_eq(F(a, "num_hidden_layers"), F(b, "num_hidden_layers"))) {
                *tier = 2;
                return 0.9;
        }

        double score = 0, total = 0;

        total += 2.0;
        score += 2.0 * ((py_eq(F(a, "bos_token_id"), F(b, "bos_token_id")) ? 1 : 0) +
                        (py_eq(F(a, "eos_token_id"), F(b, "eos_token_id")) ? 1 : 0)) / 2;

        static const struct { const char *key; double w; } binary_dims[] = {
                { "hidden_size", 1.8 }, { "num_hidden_layers", 1.5 },
        };
        for (size_t i = 0; i < ELEMENTSOF(binary_dims); i++) {
                const json_t *x = F(a, binary_dims[i].key), *y = F(b, binary_dims[i].key);
                if (!positive(x) || !positive(y))
                        continue;
                total += binary_dims[i].w;
                if (closeness(num(x), num(y)) >= 0.90)
                        score += binary_dims[i].w;
        }

        const json_t *va = F(a, "vocab_size"), *vb = F(b, "vocab_size");
        if (truthy(va) && truthy(vb) && is_num(va) && is_num(vb)) {
                total += 1.5;
                score += 1.5 * closeness(num(va), num(vb));
        }

        const json_t *ra = F(a, "rope_theta"), *rb = F(b, "rope_theta");
        total += 1.2;
        if (positive(ra) && positive(rb))
                score += 1.2 * closeness(num(ra), num(rb));
        else if ((!ra || json_is_null(ra)) && (!rb || json_is_null(rb)))
                score += 1.2;

        static const struct { const char *key; double w; } equal_fields[] = {
                { "qk_norm", 1.5 }, { "attention_style", 1.5 }, { "norm_type", 0.5 },
                { "pos_encoding", 0.4 }, { "attention_bias", 0.4 }, { "model_type", 0.1 },
        };
        for (size_t i = 0; i < ELEMENTSOF(equal_fields); i++) {
                total += equal_fields[i].w;
                if (py_eq(F(a, equal_fields[i].key), F(b, equal_fields[i].key)))
                        score += equal_fields[i].w;
        }
#undef F

        *tier = 3;
        return total > 0 ? mp_py_round(score / total, 4) : 0.0;
}
