/* sample.h - deterministic value samples of tensors.
 *
 * Two models' tensors of the same name and shape are compared on values at
 * the same positions, so the positions depend only on the tensor's shape in
 * Hugging Face order.  For a matrix [rows, cols] sample j sits at
 *   row = h1(j) mod min(rows, MP_SAMPLE_ROW_SPAN), col = h2(j) mod cols,
 * so that two embedding tables that differ only by appended rows (a vocabulary
 * extension) are sampled at the same cells.  Vectors use h1(j) mod n;
 * higher-rank tensors are treated as [shape[0], rest].
 *
 * The pass delivers values in *stored* order, which differs from HF order
 * for GGUF q/k projections (rows interleaved for RoPE) and for matrices a
 * converter transposed; mp_sample_stored_index() maps one to the other. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "formats/model.h"

#define MP_SAMPLE_PER_TENSOR 64         /* layer tensors */
#define MP_SAMPLE_PER_EMBEDDING 256     /* token embedding and LM head */
#define MP_SAMPLE_ROW_SPAN 1024

/* A stored shape in HF order: a 2-D tensor flagged MP_TENSOR_TRANSPOSED
 * swaps its dimensions, anything else is copied (n_dims <= MP_MAX_DIMS).
 * Used for tensors of an open model and of a record alike. */
void mp_hf_shape(const uint64_t *stored, uint32_t n_dims, uint32_t flags, uint64_t shape[MP_MAX_DIMS]);

/* The tensor's shape in HF order (undoing a converter's transpose). */
void mp_tensor_hf_shape(const mp_tensor *t, uint64_t shape[MP_MAX_DIMS]);

/* HF-order element index of sample j of a tensor of this HF shape. */
uint64_t mp_sample_position(const uint64_t *shape, uint32_t n_dims, uint64_t n_elements, size_t j);

/* Stored-order index of the element at HF-order index hf.  n_heads is the
 * number of heads whose rows a RoPE permutation interleaved (attention heads
 * for q, key/value heads for k); ignored unless t is ROPE_PERMUTED. */
uint64_t mp_sample_stored_index(const mp_tensor *t, uint64_t n_heads, uint64_t hf);

/* IEEE half precision, round to nearest even; for samples in records. */
uint16_t mp_f32_to_f16(float f);
