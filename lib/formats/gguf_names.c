/* gguf_names.c - llama.cpp tensor names to Hugging Face names.
 *
 * llama.cpp's converter (convert_hf_to_gguf.py with gguf-py's
 * TensorNameMap) renames every tensor: "model.layers.3.self_attn.q_proj.weight"
 * becomes "blk.3.attn_q.weight".  Comparing a GGUF with its safetensors
 * origin needs the reverse mapping, which depends on the architecture: the
 * same "blk.N.attn_output" is "self_attn.o_proj" in llama and
 * "attn.c_proj" in gpt2.
 *
 * A name is "<base>[.<suffix>]" at the top level or "blk.<N>.<base>[.<suffix>]"
 * per layer; we map <base> through the family's table and keep the suffix
 * (".weight", ".bias", ...) verbatim.  Anything unknown is returned
 * unchanged so that no tensor disappears from the directory. */
#include "formats/gguf_names.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/model.h"
#include "util/macro.h"

typedef struct name_map {
        const char *gguf;       /* llama.cpp base name */
        const char *hf;         /* HF name, relative to the family's prefix */
        uint32_t weight_flags;  /* MP_TENSOR_* set on its ".weight" */
        uint32_t bias_flags;    /* MP_TENSOR_* set on its ".bias" */
} name_map;

typedef struct family {
        const char *block_prefix;       /* e.g. "model.layers." */
        const name_map *top;            /* tensors outside blocks */
        const name_map *block;          /* per-block tensors */
} family;

/* A marker meaning "RoPE-permuted if the architecture permutes": llama.cpp
 * permutes Q/K rows (weights and biases) from HF's rotate-half layout to
 * GGML's interleaved one for LLaMA-style models only; NEOX-RoPE models
 * (qwen2, gemma, phi) are written as is. */
#define ROPE MP_TENSOR_ROPE_PERMUTED

static const name_map llama_top[] = {
        { "token_embd",  "model.embed_tokens", 0, 0 },
        { "output_norm", "model.norm",         0, 0 },
        { "output",      "lm_head",            0, 0 },
        { NULL, NULL, 0, 0 }
};

static const name_map llama_block[] = {
        { "attn_norm",   "input_layernorm",          0,    0 },
        { "attn_q",      "self_attn.q_proj",         ROPE, ROPE },
        { "attn_k",      "self_attn.k_proj",         ROPE, ROPE },
        { "attn_v",      "self_attn.v_proj",         0,    0 },
        { "attn_output", "self_attn.o_proj",         0,    0 },
        { "attn_q_norm", "self_attn.q_norm",         0,    0 },     /* qwen3, gemma3 */
        { "attn_k_norm", "self_attn.k_norm",         0,    0 },
        { "ffn_norm",    "post_attention_layernorm", 0,    0 },
        { "ffn_gate",    "mlp.gate_proj",            0,    0 },
        { "ffn_up",      "mlp.up_proj",              0,    0 },
        { "ffn_down",    "mlp.down_proj",            0,    0 },
        { NULL, NULL, 0, 0 }
};

/* Gemma 2/3 have four norms per layer; llama.cpp's ffn_norm is the
 * pre-feed-forward one there. */
static const name_map gemma2_block[] = {
        { "attn_norm",           "input_layernorm",            0, 0 },
        { "attn_q",              "self_attn.q_proj",           0, 0 },
        { "attn_k",              "self_attn.k_proj",           0, 0 },
        { "attn_v",              "self_attn.v_proj",           0, 0 },
        { "attn_output",         "self_attn.o_proj",           0, 0 },
        { "attn_q_norm",         "self_attn.q_norm",           0, 0 },
        { "attn_k_norm",         "self_attn.k_norm",           0, 0 },
        { "post_attention_norm", "post_attention_layernorm",   0, 0 },
        { "ffn_norm",            "pre_feedforward_layernorm",  0, 0 },
        { "post_ffw_norm",       "post_feedforward_layernorm", 0, 0 },
        { "ffn_gate",            "mlp.gate_proj",              0, 0 },
        { "ffn_up",              "mlp.up_proj",                0, 0 },
        { "ffn_down",            "mlp.down_proj",              0, 0 },
        { NULL, NULL, 0, 0 }
};

/* GPT-2 uses Conv1D layers stored [in, out]; the converter transposes the
 * 2-D weights to GGML's [out][in] row layout. */
#define T MP_TENSOR_TRANSPOSED

static const name_map gpt2_top[] = {
        { "token_embd",    "transformer.wte",  0, 0 },
        { "position_embd", "transformer.wpe",  0, 0 },
        { "output_norm",   "transformer.ln_f", 0, 0 },
        { "output",        "lm_head",          0, 0 },
        { NULL, NULL, 0, 0 }
};

static const name_map gpt2_block[] = {
        { "attn_norm",   "ln_1",        0, 0 },
        { "attn_qkv",    "attn.c_attn", T, 0 },
        { "attn_output", "attn.c_proj", T, 0 },
        { "ffn_norm",    "ln_2",        0, 0 },
        { "ffn_up",      "mlp.c_fc",    T, 0 },
        { "ffn_down",    "mlp.c_proj",  T, 0 },
        { NULL, NULL, 0, 0 }
};

/* Phi-2 (PhiForCausalLM): parallel attention/MLP with one LayerNorm per
 * layer, "dense" output projection, fc1/fc2 MLP.  Old GGUFs converted from
 * the pre-transformers checkpoint carry a fused attn_qkv. */
static const name_map phi2_top[] = {
        { "token_embd",  "model.embed_tokens",    0, 0 },
        { "output_norm", "model.final_layernorm", 0, 0 },
        { "output",      "lm_head",               0, 0 },
        { NULL, NULL, 0, 0 }
};

static const name_map phi2_block[] = {
        { "attn_norm",   "input_layernorm",    0, 0 },
        { "attn_q",      "self_attn.q_proj",   0, 0 },
        { "attn_k",      "self_attn.k_proj",   0, 0 },
        { "attn_v",      "self_attn.v_proj",   0, 0 },
        { "attn_qkv",    "self_attn.qkv_proj", 0, 0 },
        { "attn_output", "self_attn.dense",    0, 0 },
        { "ffn_up",      "mlp.fc1",            0, 0 },
        { "ffn_down",    "mlp.fc2",            0, 0 },
        { NULL, NULL, 0, 0 }
};

/* Phi-3 keeps HF's fused projections: qkv_proj and gate_up_proj (the latter
 * is llama.cpp's ffn_up). */
static const name_map phi3_block[] = {
        { "attn_norm",   "input_layernorm",          0, 0 },
        { "attn_qkv",    "self_attn.qkv_proj",       0, 0 },
        { "attn_q",      "self_attn.q_proj",         0, 0 },
        { "attn_k",      "self_attn.k_proj",         0, 0 },
        { "attn_v",      "self_attn.v_proj",         0, 0 },
        { "attn_output", "self_attn.o_proj",         0, 0 },
        { "ffn_norm",    "post_attention_layernorm", 0, 0 },
        { "ffn_up",      "mlp.gate_up_proj",         0, 0 },
        { "ffn_down",    "mlp.down_proj",            0, 0 },
        { NULL, NULL, 0, 0 }
};

static const family fam_llama  = { "model.layers.",  llama_top, llama_block };
static const family fam_gemma2 = { "model.layers.",  llama_top, gemma2_block };
static const family fam_gpt2   = { "transformer.h.", gpt2_top,  gpt2_block };
static const family fam_phi2   = { "model.layers.",  phi2_top,  phi2_block };
static const family fam_phi3   = { "model.layers.",  llama_top, phi3_block };

typedef struct arch_info {
        const char *arch;               /* general.architecture */
        const char *model_type;         /* HF config model_type */
        const family *fam;              /* NULL: names pass through */
        bool rope_permuted;             /* converter permuted Q/K rows */
} arch_info;

static const arch_info archs[] = {
        { "llama",      "llama",       &fam_llama,  true  },
        { "mistral",    "mistral",     &fam_llama,  true  },
        { "qwen2",      "qwen2",       &fam_llama,  false },
        { "qwen3",      "qwen3",       &fam_llama,  false },
        { "gemma",      "gemma",       &fam_llama,  false },
        { "gemma2",     "gemma2",      &fam_gemma2, false },
        { "gemma3",     "gemma3",      &fam_gemma2, false },
        { "gpt2",       "gpt2",        &fam_gpt2,   false },
        { "phi2",       "phi",         &fam_phi2,   false },
        { "phi3",       "phi3",        &fam_phi3,   false },
        /* model_type only: tensor names are not mapped for these */
        { "qwen2moe",   "qwen2_moe",   NULL, false },
        { "qwen3moe",   "qwen3_moe",   NULL, false },
        { "starcoder",  "gpt_bigcode", NULL, false },
        { "starcoder2", "starcoder2",  NULL, false },
        { "gptneox",    "gpt_neox",    NULL, false },
        { "gptj",       "gptj",        NULL, false },
        { "falcon",     "falcon",      NULL, false },
        { "command-r",  "cohere",      NULL, false },
        { "deepseek2",  "deepseek_v2", NULL, false },
        { "stablelm",   "stablelm",    NULL, false },
        { "internlm2",  "internlm2",   NULL, false },
        { "olmo",       "olmo",        NULL, false },
        { "olmo2",      "olmo2",       NULL, false },
        { "bert",       "bert",        NULL, false },
        { "t5",         "t5",          NULL, false },
        { "mamba",      "mamba",       NULL, false },
        { "bloom",      "bloom",       NULL, false },
        { "mpt",        "mpt",         NULL, false },
};

static const arch_info *arch_lookup(const char *arch) {
        if (!arch)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(archs); i++)
                if (strcmp(archs[i].arch, arch) == 0)
                        return &archs[i];
        return NULL;
}

const char *mp_gguf_model_type(const char *arch) {
        const arch_info *a = arch_lookup(arch);
        return a ? a->model_type : arch;
}

/* Finds base (the part of s up to the first '.' or the end) in map. */
static const name_map *map_lookup(const name_map *map, const char *s, const char **ret_suffix) {
        size_t n = strcspn(s, ".");

        for (; map->gguf; map++)
                if (strlen(map->gguf) == n && strncmp(map->gguf, s, n) == 0) {
                        *ret_suffix = s + n;
                        return map;
                }
        return NULL;
}

static uint32_t suffix_flags(const name_map *e, const char *suffix, bool rope_permuted) {
        uint32_t f = 0;

        if (strcmp(suffix, ".weight") == 0)
                f = e->weight_flags;
        else if (strcmp(suffix, ".bias") == 0)
                f = e->bias_flags;
        if (!rope_permuted)
                f &= ~(uint32_t) MP_TENSOR_ROPE_PERMUTED;
        return f;
}

/* Parses "blk.<N>." at the start of name: returns the position after the
 * dot and the digits of N (as they are, without leading zeros so that the
 * HF name is canonical), or NULL. */
static const char *parse_block(const char *name, const char **ret_digits, size_t *ret_n_digits) {
        if (strncmp(name, "blk.", 4) != 0)
                return NULL;
        const char *p = name + 4, *digits = p;
        while (*p >= '0' && *p <= '9')
                p++;
        size_t n = (size_t) (p - digits);
        if (n == 0 || n > 9 || *p != '.')
                return NULL;
        while (n > 1 && *digits == '0') {      /* "blk.007." is layer 7 */
                digits++;
                n--;
        }
        *ret_digits = digits;
        *ret_n_digits = n;
        return p + 1;
}

char *mp_gguf_hf_name(const char *arch, const char *gguf_name, uint32_t *flags) {
        const arch_info *a = arch_lookup(arch);
        const char *suffix = NULL, *digits = NULL, *rest;
        const name_map *e;
        size_t n_digits = 0;
        char *out = NULL;
        int r;

        *flags = 0;
        if (!gguf_name)
                return NULL;
        if (!a || !a->fam)
                return strdup(gguf_name);

        rest = parse_block(gguf_name, &digits, &n_digits);
        if (rest) {
                e = map_lookup(a->fam->block, rest, &suffix);
                if (!e)
                        return strdup(gguf_name);
                r = asprintf(&out, "%s%.*s.%s%s", a->fam->block_prefix, (int) n_digits, digits, e->hf, suffix);
        } else {
                e = map_lookup(a->fam->top, gguf_name, &suffix);
                if (!e)
                        return strdup(gguf_name);
                r = asprintf(&out, "%s%s", e->hf, suffix);
        }
        if (r < 0)
                return NULL;
        *flags = suffix_flags(e, suffix, a->rope_permuted);
        return out;
}
