/* gguf_dequant.h - dequantization of GGUF block formats to float32.
 *
 * Block layouts follow ggml's reference definitions (ggml-common.h):
 *   Q4_0  32 elems, 18 B: f16 d, 16 B nibbles; x = d * (q - 8)
 *   Q4_1  32 elems, 20 B: f16 d, f16 m, 16 B nibbles; x = d*q + m
 *   Q5_0  32 elems, 22 B: f16 d, u32 high bits, 16 B nibbles; x = d*(q - 16)
 *   Q5_1  32 elems, 24 B: f16 d, f16 m, u32 qh, 16 B; x = d*q + m
 *   Q8_0  32 elems, 34 B: f16 d, 32 x i8; x = d*q
 *   Q8_1  32 elems, 36 B: f16 d, f16 s, 32 x i8; x = d*q
 *   Q2_K..Q6_K, Q8_K: 256-element super-blocks (84, 110, 144, 176, 210, 292 B).
 * Within the 32-element blocks, the low nibbles are elements 0..15 and the
 * high nibbles 16..31. */
#pragma once

#include <stddef.h>

#include "formats/dtype.h"

/* Dequantizes n_blocks blocks of quantized type t from src to dst
 * (n_blocks * block_elems floats).  Returns 0 or -ENOTSUP. */
int mp_gguf_dequantize(mp_dtype t, const void *src, size_t n_blocks, float *dst);
