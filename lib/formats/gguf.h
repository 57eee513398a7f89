/* gguf.h - reader for GGUF v2/v3 (llama.cpp, Ollama, LM Studio).
 *
 * Header: magic "GGUF", u32 version, u64 tensor count, u64 kv count, then kv
 * pairs (string key, u32 type, value: any of the 13 GGUF value types,
 * arrays nested), tensor infos (name, u32 n_dims, u64 ne[n_dims], u32 type,
 * u64 offset), padding to general.alignment (default 32), then data.
 *
 * Tensors are added with Hugging Face names (see gguf_names.h), shapes in HF
 * order (GGUF ne[] reversed) and absolute offsets.  Architecture fields come
 * from <arch>.* keys, the tokenizer from tokenizer.ggml.* unless the model
 * already has one; other scalar keys are added as metadata. */
#pragma once

#include "formats/model.h"
#include "util/source.h"

#define MP_GGUF_MAX_TENSORS   (1u << 20)
#define MP_GGUF_MAX_KV        (1u << 20)
#define MP_GGUF_MAX_STRING    (16u * 1024 * 1024)
#define MP_GGUF_MAX_ARRAY     (16u * 1024 * 1024)
#define MP_GGUF_MAX_DEPTH     4

int mp_gguf_load(mp_model *m, size_t file_index, const mp_source *src, mp_error *err);

/* Maps a GGUF tensor type id to mp_dtype; MP_DTYPE_INVALID if unsupported. */
mp_dtype mp_gguf_type_to_dtype(uint32_t ggml_type);
