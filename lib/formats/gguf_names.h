/* gguf_names.h - llama.cpp tensor names to Hugging Face names.
 *
 * Covers the architectures the zoo uses (llama, gpt2) and common ones
 * (mistral and qwen2 use llama names, gemma, phi2, phi3).  Unknown names are
 * returned unchanged so nothing is lost. */
#pragma once

#include <stdint.h>

/* Returns a newly allocated HF name for gguf_name under architecture arch
 * (general.architecture), or NULL on allocation failure.  *flags receives
 * MP_TENSOR_ROPE_PERMUTED for llama-style q/k projections and
 * MP_TENSOR_TRANSPOSED where the converter transposed the matrix (gpt2). */
char *mp_gguf_hf_name(const char *arch, const char *gguf_name, uint32_t *flags);

/* Maps general.architecture to a Hugging Face model_type ("llama", "gpt2",
 * "qwen2", "gemma", "phi", "phi3", ...); returns arch itself if unknown. */
const char *mp_gguf_model_type(const char *arch);
