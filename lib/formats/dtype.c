/* dtype.c - the dtype table and conversions of plain types to float32.
 * Block-quantized GGUF types are delegated to gguf_dequant.c. */
#include "formats/dtype.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "formats/gguf_dequant.h"

static const mp_dtype_info dtype_table[_MP_DTYPE_MAX] = {
        [MP_DTYPE_F64]     = { "F64",     1,   8, false, true },
        [MP_DTYPE_F32]     = { "F32",     1,   4, false, true },
        [MP_DTYPE_F16]     = { "F16",     1,   2, false, true },
        [MP_DTYPE_BF16]    = { "BF16",    1,   2, false, true },
        [MP_DTYPE_I64]     = { "I64",     1,   8, false, true },
        [MP_DTYPE_I32]     = { "I32",     1,   4, false, true },
        [MP_DTYPE_I16]     = { "I16",     1,   2, false, true },
        [MP_DTYPE_I8]      = { "I8",      1,   1, false, true },
        [MP_DTYPE_U64]     = { "U64",     1,   8, false, true },
        [MP_DTYPE_U32]     = { "U32",     1,   4, false, true },
        [MP_DTYPE_U16]     = { "U16",     1,   2, false, true },
        [MP_DTYPE_U8]      = { "U8",      1,   1, false, true },
        [MP_DTYPE_BOOL]    = { "BOOL",    1,   1, false, true },
        [MP_DTYPE_F8_E4M3] = { "F8_E4M3", 1,   1, false, true },
        [MP_DTYPE_F8_E5M2] = { "F8_E5M2", 1,   1, false, true },
        [MP_DTYPE_Q4_0]    = { "Q4_0",   32,  18, true,  true },
        [MP_DTYPE_Q4_1]    = { "Q4_1",   32,  20, true,  true },
        [MP_DTYPE_Q5_0]    = { "Q5_0",   32,  22, true,  true },
        [MP_DTYPE_Q5_1]    = { "Q5_1",   32,  24, true,  true },
        [MP_DTYPE_Q8_0]    = { "Q8_0",   32,  34, true,  true },
        [MP_DTYPE_Q8_1]    = { "Q8_1",   32,  36, true,  true },
        [MP_DTYPE_Q2_K]    = { "Q2_K",  256,  84, true,  true },
        [MP_DTYPE_Q3_K]    = { "Q3_K",  256, 110, true,  true },
        [MP_DTYPE_Q4_K]    = { "Q4_K",  256, 144, true,  true },
        [MP_DTYPE_Q5_K]    = { "Q5_K",  256, 176, true,  true },
        [MP_DTYPE_Q6_K]    = { "Q6_K",  256, 210, true,  true },
        [MP_DTYPE_Q8_K]    = { "Q8_K",  256, 292, true,  true },
        [MP_DTYPE_IQ2_XXS] = { "IQ2_XXS", 256, 66, true, false },
        [MP_DTYPE_IQ2_XS]  = { "IQ2_XS", 256,  74, true,  false },
        [MP_DTYPE_IQ3_XXS] = { "IQ3_XXS", 256, 98, true, false },
        [MP_DTYPE_IQ1_S]   = { "IQ1_S",  256,  50, true,  false },
        [MP_DTYPE_IQ4_NL]  = { "IQ4_NL",  32,  18, true,  false },
        [MP_DTYPE_IQ3_S]   = { "IQ3_S",  256, 110, true,  false },
        [MP_DTYPE_IQ2_S]   = { "IQ2_S",  256,  82, true,  false },
        [MP_DTYPE_IQ4_XS]  = { "IQ4_XS", 256, 136, true,  false },
        [MP_DTYPE_IQ1_M]   = { "IQ1_M",  256,  56, true,  false },
        [MP_DTYPE_TQ1_0]   = { "TQ1_0",  256,  54, true,  false },
        [MP_DTYPE_TQ2_0]   = { "TQ2_0",  256,  66, true,  false },
        [MP_DTYPE_MXFP4]   = { "MXFP4",   32,  17, true,  false },
};

const mp_dtype_info *mp_dtype_get(mp_dtype t) {
        if (t <= MP_DTYPE_INVALID || t >= _MP_DTYPE_MAX)
                return NULL;
        return &dtype_table[t];
}

const char *mp_dtype_name(mp_dtype t) {
        const mp_dtype_info *i = mp_dtype_get(t);
        return i ? i->name : "INVALID";
}

mp_dtype mp_dtype_from_safetensors(const char *name) {
        if (!name)
                return MP_DTYPE_INVALID;
        for (mp_dtype t = MP_DTYPE_F64; t <= MP_DTYPE_F8_E5M2; t++)
                if (strcmp(dtype_table[t].name, name) == 0)
                        return t;
        return MP_DTYPE_INVALID;
}

int mp_dtype_bytes(mp_dtype t, uint64_t n_elems, uint64_t *ret) {
        const mp_dtype_info *i = mp_dtype_get(t);
        if (!i)
                return -ENOTSUP;
        if (n_elems % i->block_elems != 0)
                return -EBADMSG;
        if (__builtin_mul_overflow(n_elems / i->block_elems, (uint64_t) i->block_bytes, ret))
                return -EOVERFLOW;
        return 0;
}

/* Shift exponent and mantissa into place and rebias; zero and subnormal
 * halves are renormalised by a float subtraction, infinities and NaNs get
 * the full exponent.  Exact for all 65536 inputs (unit test). */
float mp_f16_to_f32(uint16_t h) {
        uint32_t bits = (uint32_t) (h & 0x7fff) << 13;
        uint32_t exp = bits & 0x0f800000u;
        float f;

        bits += (uint32_t) (127 - 15) << 23;
        if (exp == 0x0f800000u)                 /* inf, NaN */
                bits += (uint32_t) (128 - 16) << 23;
        else if (exp == 0) {                    /* zero, subnormal */
                const uint32_t magic_bits = (uint32_t) 113 << 23;
                float magic;
                memcpy(&magic, &magic_bits, sizeof(magic));
                bits += 1u << 23;
                memcpy(&f, &bits, sizeof(f));
                f -= magic;
                memcpy(&bits, &f, sizeof(bits));
        }
        bits |= (uint32_t) (h & 0x8000) << 16;
        memcpy(&f, &bits, sizeof(f));
        return f;
}

float mp_bf16_to_f32(uint16_t h) {
        uint32_t bits = (uint32_t) h << 16;
        float f;
        memcpy(&f, &bits, sizeof(f));
        return f;
}

/* FP8 E4M3 (OCP "fn" variant used by safetensors/torch): bias 7, no
 * infinities, S.1111.111 is NaN. */
float mp_f8_e4m3_to_f32(uint8_t v) {
        int sign = v >> 7, exp = (v >> 3) & 0xf, man = v & 7;
        float f;
        if (exp == 0xf && man == 7)
                return NAN;
        if (exp == 0)
                f = ldexpf((float) man, -9);            /* man/8 * 2^-6 */
        else
                f = ldexpf(1.0f + (float) man / 8.0f, exp - 7);
        return sign ? -f : f;
}

/* FP8 E5M2: IEEE-like, bias 15, with infinities and NaNs. */
float mp_f8_e5m2_to_f32(uint8_t v) {
        return mp_f16_to_f32((uint16_t) v << 8);
}

/* Conversion tables for the 16- and 8-bit float types, built once: a table
 * lookup per element is several times faster than decoding the bits, and
 * every weight of a model goes through here during the pass. */
static float f16_table[1u << 16];
static float f8_e4m3_table[256], f8_e5m2_table[256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void tables_init(void) {
        for (uint32_t h = 0; h < (1u << 16); h++)
                f16_table[h] = mp_f16_to_f32((uint16_t) h);
        for (uint32_t v = 0; v < 256; v++) {
                f8_e4m3_table[v] = mp_f8_e4m3_to_f32((uint8_t) v);
                f8_e5m2_table[v] = mp_f8_e5m2_to_f32((uint8_t) v);
        }
}

/* BF16 is the top half of an F32: widen and shift, eight at a time with
 * the compiler's vector extensions (SSE2 on any x86-64; -O2 does not
 * vectorize loops of unknown length by itself). */
typedef uint16_t v8u16 __attribute__((vector_size(16)));
typedef uint32_t v8u32 __attribute__((vector_size(32)));

static void bf16_to_f32_block(const uint8_t *s, size_t n, float *dst) {
        size_t k = 0;
        for (; k + 8 <= n; k += 8) {
                v8u16 h;
                memcpy(&h, s + 2 * k, sizeof(h));
                v8u32 w = __builtin_convertvector(h, v8u32) << 16;
                memcpy(dst + k, &w, sizeof(w));
        }
        for (; k < n; k++) {
                uint32_t w = (uint32_t) (s[2 * k] | s[2 * k + 1] << 8) << 16;
                memcpy(dst + k, &w, sizeof(w));
        }
}

#define CONVERT_LOOP(type, expr)                                \
        do {                                                    \
                for (size_t k = 0; k < n; k++) {                \
                        type x;                                 \
                        memcpy(&x, s + k * sizeof(type), sizeof(type)); \
                        dst[k] = (expr);                        \
                }                                               \
        } while (0)

int mp_dtype_to_f32(mp_dtype t, const void *src, size_t n_blocks, float *dst) {
        const uint8_t *s = src;
        pthread_once(&tables_once, tables_init);
        size_t n = n_blocks;   /* plain types: one element per block */

        switch (t) {
        case MP_DTYPE_F64:     CONVERT_LOOP(double, (float) x); return 0;
        case MP_DTYPE_F32:     memcpy(dst, s, n * sizeof(float)); return 0;
        case MP_DTYPE_F16:     CONVERT_LOOP(uint16_t, f16_table[x]); return 0;
        case MP_DTYPE_BF16:    bf16_to_f32_block(s, n, dst); return 0;
        case MP_DTYPE_I64:     CONVERT_LOOP(int64_t, (float) x); return 0;
        case MP_DTYPE_I32:     CONVERT_LOOP(int32_t, (float) x); return 0;
        case MP_DTYPE_I16:     CONVERT_LOOP(int16_t, (float) x); return 0;
        case MP_DTYPE_I8:      CONVERT_LOOP(int8_t, (float) x); return 0;
        case MP_DTYPE_U64:     CONVERT_LOOP(uint64_t, (float) x); return 0;
        case MP_DTYPE_U32:     CONVERT_LOOP(uint32_t, (float) x); return 0;
        case MP_DTYPE_U16:     CONVERT_LOOP(uint16_t, (float) x); return 0;
        case MP_DTYPE_U8:      CONVERT_LOOP(uint8_t, (float) x); return 0;
        case MP_DTYPE_BOOL:    CONVERT_LOOP(uint8_t, x ? 1.0f : 0.0f); return 0;
        case MP_DTYPE_F8_E4M3: CONVERT_LOOP(uint8_t, f8_e4m3_table[x]); return 0;
        case MP_DTYPE_F8_E5M2: CONVERT_LOOP(uint8_t, f8_e5m2_table[x]); return 0;
        default:
                break;
        }

        const mp_dtype_info *i = mp_dtype_get(t);
        if (i && i->quantized && i->to_f32)
                return mp_gguf_dequantize(t, src, n_blocks, dst);
        return -ENOTSUP;
}
