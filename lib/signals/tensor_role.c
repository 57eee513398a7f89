/* tensor_role.c - tensor roles from Hugging Face names (see tensor_role.h). */
#include "signals/tensor_role.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "util/macro.h"
#include "util/strutil.h"

/* Containers of transformer blocks: "<prefix>.<container>.<N>.<rest>". */
static const char *const block_containers[] = { "layers", "h", "blocks", "layer", "block" };

/* Parses the block index; *rest points after "<N>." on success. */
static int parse_layer(const char *name, const char **rest) {
        for (const char *p = name; *p; p++) {
                if (p != name && p[-1] != '.')
                        continue;
                for (size_t i = 0; i < sizeof(block_containers) / sizeof(block_containers[0]); i++) {
                        size_t l = strlen(block_containers[i]);
                        if (strncmp(p, block_containers[i], l) != 0 || p[l] != '.')
                                continue;
                        const char *d = p + l + 1;
                        if (*d < '0' || *d > '9')
                                continue;
                        char *end;
                        long v = strtol(d, &end, 10);
                        if (*end != '.' || v < 0 || v > 100000)
                                continue;
                        *rest = end + 1;
                        return (int) v;
                }
        }
        *rest = name;
        return -1;
}

/* Roles of layer tensors by the last name component before ".weight" /
 * ".bias", sorted for bsearch.  Components that mean different things in
 * attention and in the MLP (GPT-2's c_proj, BERT/NeoX's dense) are resolved
 * by the component before them, in role_in_context(). */
typedef struct role_name {
        const char *component;
        mp_tensor_role role;
} role_name;

static const role_name role_names[] = {
        { "Wqkv", MP_TR_ATTN_QKV },
        { "c_attn", MP_TR_ATTN_QKV },
        { "c_fc", MP_TR_MLP_UP },
        { "dense_4h_to_h", MP_TR_MLP_DOWN },
        { "dense_h_to_4h", MP_TR_MLP_UP },
        { "down_proj", MP_TR_MLP_DOWN },
        { "fc1", MP_TR_MLP_UP },
        { "fc2", MP_TR_MLP_DOWN },
        { "gate_proj", MP_TR_MLP_GATE },
        { "gate_up_proj", MP_TR_MLP_GATE_UP },
        { "k_proj", MP_TR_ATTN_K },
        { "key", MP_TR_ATTN_K },
        { "o_proj", MP_TR_ATTN_O },
        { "out_proj", MP_TR_ATTN_O },
        { "q_proj", MP_TR_ATTN_Q },
        { "query", MP_TR_ATTN_Q },
        { "query_key_value", MP_TR_ATTN_QKV },
        { "qkv_proj", MP_TR_ATTN_QKV },
        { "up_proj", MP_TR_MLP_UP },
        { "v_proj", MP_TR_ATTN_V },
        { "value", MP_TR_ATTN_V },
        { "w1", MP_TR_MLP_GATE },
        { "w2", MP_TR_MLP_DOWN },
        { "w3", MP_TR_MLP_UP },
        { "wk", MP_TR_ATTN_K },
        { "wo", MP_TR_ATTN_O },
        { "wq", MP_TR_ATTN_Q },
        { "wv", MP_TR_ATTN_V },
};

static int cmp_role_name(const void *key, const void *elem) {
        return strcmp(key, ((const role_name *) elem)->component);
}

/* rest: the name after "<container>.<N>.", e.g. "mlp.c_proj.weight". */
static mp_tensor_role layer_role(const char *rest) {
        /* the last component before the parameter name, and the one before it */
        char buf[128];
        size_t len = strlen(rest);
        if (len >= sizeof(buf))
                return MP_TR_OTHER;
        memcpy(buf, rest, len + 1);
        char *param = strrchr(buf, '.');
        if (!param)
                return MP_TR_OTHER;
        *param = '\0';
        char *last = strrchr(buf, '.');
        const char *component = last ? last + 1 : buf;
        const char *parent = "";
        if (last) {
                *last = '\0';
                char *p = strrchr(buf, '.');
                parent = p ? p + 1 : buf;
        }

        if (strcmp(component, "c_proj") == 0)          /* GPT-2 */
                return strcmp(parent, "mlp") == 0 ? MP_TR_MLP_DOWN : MP_TR_ATTN_O;
        if (strcmp(component, "dense") == 0)           /* BERT, NeoX, Falcon */
                return strstr(parent, "attention") ? MP_TR_ATTN_O : MP_TR_OTHER;
        const role_name *r = bsearch(component, role_names, ELEMENTSOF(role_names), sizeof(role_names[0]),
                                     cmp_role_name);
        return r ? r->role : MP_TR_OTHER;
}

/* True if name contains needle as whole dot-separated components. */
static bool has_component(const char *name, const char *needle) {
        size_t l = strlen(needle);
        for (const char *p = strstr(name, needle); p; p = strstr(p + 1, needle)) {
                bool start = p == name || p[-1] == '.';
                bool stop = p[l] == '\0' || p[l] == '.';
                if (start && stop)
                        return true;
        }
        return false;
}

/* Normalization layers: any component mentioning norm, or GPT-2's ln_1/ln_f. */
static bool is_norm_name(const char *name) {
        return strstr(name, "norm") || strstr(name, "ln_") || has_component(name, "ln");
}

mp_tensor_kind mp_tensor_kind_of(const char *name) {
        assert(name);
        mp_tensor_kind k = { .role = MP_TR_OTHER };
        const char *rest;
        k.layer = parse_layer(name, &rest);
        k.is_bias = mp_has_suffix(name, ".bias");

        if (is_norm_name(rest)) {
                k.role = MP_TR_NORM;
                return k;
        }
        if (k.layer >= 0) {
                k.role = layer_role(rest);
                return k;
        }
        if (has_component(name, "embed_tokens") || has_component(name, "wte") ||
            has_component(name, "word_embeddings") || has_component(name, "tok_embeddings") ||
            has_component(name, "embed_in"))
                k.role = MP_TR_EMBED;
        else if (has_component(name, "wpe") || has_component(name, "position_embeddings") ||
                 has_component(name, "embed_positions"))
                k.role = MP_TR_POS_EMBED;
        else if (has_component(name, "lm_head") || has_component(name, "embed_out") ||
                 has_component(name, "output"))
                k.role = MP_TR_LM_HEAD;
        return k;
}

const char *mp_tensor_role_name(mp_tensor_role r) {
        static const char *const names[_MP_TR_MAX] = {
                [MP_TR_OTHER] = "other", [MP_TR_EMBED] = "embed", [MP_TR_POS_EMBED] = "pos-embed",
                [MP_TR_LM_HEAD] = "lm-head", [MP_TR_NORM] = "norm",
                [MP_TR_ATTN_Q] = "attn-q", [MP_TR_ATTN_K] = "attn-k", [MP_TR_ATTN_V] = "attn-v",
                [MP_TR_ATTN_O] = "attn-o", [MP_TR_ATTN_QKV] = "attn-qkv",
                [MP_TR_MLP_GATE] = "mlp-gate", [MP_TR_MLP_UP] = "mlp-up", [MP_TR_MLP_DOWN] = "mlp-down",
                [MP_TR_MLP_GATE_UP] = "mlp-gate-up",
        };
        return (unsigned) r < _MP_TR_MAX ? names[r] : "other";
}
