/* tensor_role.h - what a tensor is for, read from its Hugging Face name.
 *
 * Signals need to know which tensor is the token embedding, which ones are
 * normalization weights, which belong to attention or the MLP of which
 * transformer block.  Names differ between model families (Llama
 * "model.layers.3.self_attn.q_proj.weight", GPT-2 "transformer.h.3.attn.c_attn.weight",
 * NeoX "gpt_neox.layers.3.attention.query_key_value.weight", ...); this file
 * is the one place that knows the spellings. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef enum mp_tensor_role {
        MP_TR_OTHER = 0,
        MP_TR_EMBED,            /* token embedding table [vocab, hidden] */
        MP_TR_POS_EMBED,        /* learned position embeddings */
        MP_TR_LM_HEAD,          /* output projection [vocab, hidden] */
        MP_TR_NORM,             /* LayerNorm / RMSNorm weight or bias */
        MP_TR_ATTN_Q, MP_TR_ATTN_K, MP_TR_ATTN_V, MP_TR_ATTN_O,
        MP_TR_ATTN_QKV,         /* fused q|k|v (GPT-2 c_attn, NeoX query_key_value) */
        MP_TR_MLP_GATE, MP_TR_MLP_UP, MP_TR_MLP_DOWN,
        MP_TR_MLP_GATE_UP,      /* fused gate|up */
        _MP_TR_MAX,
} mp_tensor_role;

typedef struct mp_tensor_kind {
        mp_tensor_role role;
        int layer;              /* transformer block index, -1 if none */
        bool is_bias;           /* name ends in ".bias" */
} mp_tensor_kind;

mp_tensor_kind mp_tensor_kind_of(const char *name);

const char *mp_tensor_role_name(mp_tensor_role r);
