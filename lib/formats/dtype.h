/* dtype.h - element types of tensors in every supported format, and their
 * conversion to float32.
 *
 * Plain types (one element per "block") and GGUF block-quantized types share
 * one enum so that a tensor directory entry can name any of them.  A tensor of
 * n elements occupies n / block_elems * block_bytes bytes; n must be a
 * multiple of block_elems (checked by readers). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum mp_dtype {
        MP_DTYPE_INVALID = 0,
        /* plain types (safetensors names) */
        MP_DTYPE_F64, MP_DTYPE_F32, MP_DTYPE_F16, MP_DTYPE_BF16,
        MP_DTYPE_I64, MP_DTYPE_I32, MP_DTYPE_I16, MP_DTYPE_I8,
        MP_DTYPE_U64, MP_DTYPE_U32, MP_DTYPE_U16, MP_DTYPE_U8,
        MP_DTYPE_BOOL, MP_DTYPE_F8_E4M3, MP_DTYPE_F8_E5M2,
        /* GGUF block-quantized types */
        MP_DTYPE_Q4_0, MP_DTYPE_Q4_1, MP_DTYPE_Q5_0, MP_DTYPE_Q5_1,
        MP_DTYPE_Q8_0, MP_DTYPE_Q8_1,
        MP_DTYPE_Q2_K, MP_DTYPE_Q3_K, MP_DTYPE_Q4_K, MP_DTYPE_Q5_K,
        MP_DTYPE_Q6_K, MP_DTYPE_Q8_K,
        /* GGUF types listed (so their tensors can be hashed and diffed) but
         * not converted to float32: to_f32 is false. */
        MP_DTYPE_IQ2_XXS, MP_DTYPE_IQ2_XS, MP_DTYPE_IQ3_XXS, MP_DTYPE_IQ1_S, MP_DTYPE_IQ4_NL,
        MP_DTYPE_IQ3_S, MP_DTYPE_IQ2_S, MP_DTYPE_IQ4_XS, MP_DTYPE_IQ1_M, MP_DTYPE_TQ1_0,
        MP_DTYPE_TQ2_0, MP_DTYPE_MXFP4,
        _MP_DTYPE_MAX,
} mp_dtype;

typedef struct mp_dtype_info {
        const char *name;        /* "F16", "Q4_K", ... (safetensors/GGUF spelling) */
        uint32_t block_elems;    /* elements per block: 1 for plain types */
        uint32_t block_bytes;    /* bytes per block */
        bool quantized;          /* a GGUF block quantization */
        bool to_f32;             /* mp_dtype_to_f32 supports it */
} mp_dtype_info;

/* Table lookup; returns NULL for MP_DTYPE_INVALID or out-of-range values. */
const mp_dtype_info *mp_dtype_get(mp_dtype t);
const char *mp_dtype_name(mp_dtype t);

/* Parses a safetensors dtype name ("F16", "BF16", "F8_E4M3", ...). */
mp_dtype mp_dtype_from_safetensors(const char *name);

/* Bytes taken by n_elems elements of type t.  Fails (-EBADMSG) when n_elems is
 * not a multiple of the block size, (-EOVERFLOW) on overflow. */
int mp_dtype_bytes(mp_dtype t, uint64_t n_elems, uint64_t *ret);

/* Converts n_blocks whole blocks at src into n_blocks * block_elems floats at
 * dst.  src needs no alignment.  Returns 0, or -ENOTSUP for types without a
 * float conversion.  Plain integer and bool types convert by value. */
int mp_dtype_to_f32(mp_dtype t, const void *src, size_t n_blocks, float *dst);

/* Scalar helpers, exposed for tests and for the GGUF dequantizers. */
float mp_f16_to_f32(uint16_t h);
float mp_bf16_to_f32(uint16_t h);
float mp_f8_e4m3_to_f32(uint8_t v);
float mp_f8_e5m2_to_f32(uint8_t v);
