/* mfi.h - metadata family identification (MFI), as the reference project
 * defines it (docs/signals.md), and the
 * Python-compatible number and JSON formatting its hashes need.
 *
 * The "mfi" object has the reference's 26 fields, in its order: model_type,
 * architectures, hidden_size, num_hidden_layers, num_attention_heads,
 * num_key_value_heads, intermediate_size, vocab_size,
 * max_position_embeddings, hidden_act, rope_theta, rope_scaling,
 * tie_word_embeddings, bos_token_id, eos_token_id, gqa_ratio,
 * attention_style, norm_type, attention_bias, qk_norm, pos_encoding,
 * head_dim, tokenizer_hash, token_id_signature, arch_hash, family_hash.
 *
 * tokenizer_hash differs from the reference on purpose: the reference hashes
 * the Rust tokenizers library's re-serialisation of the tokenizer, which
 * cannot be reproduced here.  Ours is the hex SHA-256 of
 * mp_tokenizer_vocab_digest()'s input (the id-ordered vocabulary); it never
 * equals a value from the reference DB, so family_hash never matches one
 * either.  arch_hash is byte-exact. */
#pragma once

#include <stdbool.h>

#include <jansson.h>

#include "formats/model.h"

/* Python round(x, ndigits) on a float: correctly rounded from the exact
 * binary value, ties to even.  NaN and infinities are returned as is. */
double mp_py_round(double x, int ndigits);

/* Python repr(x) of a float ("0.1", "10000.0", "1e+16", "nan", "-inf"),
 * into buf of at least MP_PY_REPR_MAX bytes.  Returns buf. */
#define MP_PY_REPR_MAX 32
const char *mp_py_float_repr(double x, char *buf);

/* json.dumps(v, sort_keys=sort_keys) with Python's defaults: ", " and ": "
 * separators, ensure_ascii (\uXXXX, surrogate pairs), floats by repr, NaN
 * and Infinity for non-finite numbers.  Without sort_keys, objects keep
 * their insertion order.  Returns a malloc'd string, NULL on ENOMEM. */
char *mp_py_json_dumps(const json_t *v, bool sort_keys);

/* Builds the mfi object of m: from m->config (config.json; the text
 * backbone of multimodal configs, the transformers attribute aliases and
 * __init__ defaults that docs/signals.md lists), else from the GGUF metadata
 * in m->arch.  bos/eos ids come from m->tokenizer.  With neither config nor
 * architecture, *ret is NULL and 0 is returned.  Returns 0 or -ENOMEM. */
int mp_mfi_build(const mp_model *m, json_t **ret);

/* arch_hash and family_hash (lowercase hex, NUL-terminated) from the fields
 * of an mfi object, byte-exact with the reference.  rope_theta's bucket
 * follows the JSON literal's type (integer or real), as the reference's
 * config.json literal does.  Returns 0, -EINVAL if mfi is not an object, or
 * -ENOMEM. */
int mp_mfi_hashes(const json_t *mfi, char arch_hex[65], char family_hex[65]);

/* The three-tier MFI similarity: 1.0 (tier 1, equal arch_hash), 0.9 (tier 2,
 * equal family_hash, hidden size and layer count), else the weighted
 * soft match rounded to 4 places (tier 3).  NAN (tier 0) if either is not
 * an object.  tier may be NULL. */
double mp_mfi_similarity(const json_t *a, const json_t *b, int *tier);
