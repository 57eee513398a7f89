/* gguf_dequant.c - dequantization of ggml block formats to float32.
 *
 * Each function follows the arithmetic of ggml's reference
 * dequantize_row_* routines operation by operation (same operand order,
 * float32 throughout, no fused multiply-add), so that the values we hash are
 * bit-identical to what llama.cpp's reference path produces.  Blocks are read
 * byte by byte with explicit little-endian decoding: src needs no alignment
 * and the code does not depend on the host's struct layout. */
#include "formats/gguf_dequant.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

/* Contraction into fma would change rounding relative to the reference.
 * GCC does not know the pragma but does not contract in ISO C mode
 * (-std=c11, as meson builds us). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define QK 32           /* elements of the simple block formats */
#define QK_K 256        /* elements of a K-quant super-block */

static uint16_t le16(const uint8_t *p) {
        return (uint16_t) (p[0] | (p[1] << 8));
}

static uint32_t le32(const uint8_t *p) {
        return (uint32_t) p[0] | ((uint32_t) p[1] << 8) | ((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}

static float half(const uint8_t *p) {
        return mp_f16_to_f32(le16(p));
}

/* Q4_0: f16 d, 16 bytes of nibbles; x = d * (q - 8). */
static void dequant_q4_0(const uint8_t *b, float *y) {
        const float d = half(b);
        const uint8_t *qs = b + 2;

        for (int j = 0; j < QK / 2; j++) {
                const int x0 = (qs[j] & 0x0f) - 8;
                const int x1 = (qs[j] >> 4) - 8;
                y[j] = (float) x0 * d;
                y[j + QK / 2] = (float) x1 * d;
        }
}

/* Q4_1: f16 d, f16 m, 16 bytes of nibbles; x = d * q + m. */
static void dequant_q4_1(const uint8_t *b, float *y) {
        const float d = half(b), m = half(b + 2);
        const uint8_t *qs = b + 4;

        for (int j = 0; j < QK / 2; j++) {
                y[j] = (float) (qs[j] & 0x0f) * d + m;
                y[j + QK / 2] = (float) (qs[j] >> 4) * d + m;
        }
}

/* The fifth bit of element j (low half) is bit j of qh, of element j + 16
 * (high half) bit j + 16. */
static int q5_high(uint32_t qh, int j, bool upper) {
        return (int) ((qh >> (j + (upper ? 16 : 0))) & 1u) << 4;
}

/* Q5_0: f16 d, u32 qh, 16 bytes of nibbles; x = d * (q - 16). */
static void dequant_q5_0(const uint8_t *b, float *y) {
        const float d = half(b);
        const uint32_t qh = le32(b + 2);
        const uint8_t *qs = b + 6;

        for (int j = 0; j < QK / 2; j++) {
                const int x0 = ((qs[j] & 0x0f) | q5_high(qh, j, false)) - 16;
                const int x1 = ((qs[j] >> 4) | q5_high(qh, j, true)) - 16;
                y[j] = (float) x0 * d;
                y[j + QK / 2] = (float) x1 * d;
        }
}

/* Q5_1: f16 d, f16 m, u32 qh, 16 bytes of nibbles; x = d * q + m. */
static void dequant_q5_1(const uint8_t *b, float *y) {
        const float d = half(b), m = half(b + 2);
        const uint32_t qh = le32(b + 4);
        const uint8_t *qs = b + 8;

        for (int j = 0; j < QK / 2; j++) {
                const int x0 = (qs[j] & 0x0f) | q5_high(qh, j, false);
                const int x1 = (qs[j] >> 4) | q5_high(qh, j, true);
                y[j] = (float) x0 * d + m;
                y[j + QK / 2] = (float) x1 * d + m;
        }
}

/* Q8_0 (f16 d, 32 x i8) and Q8_1 (f16 d, f16 s, 32 x i8): x = d * q.  Q8_1's
 * s is d * sum(q), a cache for dot products, not needed here. */
static void dequant_q8(const uint8_t *b, size_t qs_offset, float *y) {
        const float d = half(b);
        const uint8_t *qs = b + qs_offset;

        for (int j = 0; j < QK; j++)
                y[j] = (float) (int8_t) qs[j] * d;
}

/* Q2_K: scales[16] (low nibble scale, high nibble min), qs[64] (2-bit
 * quants), f16 d, f16 dmin.  Sixteen sub-blocks of 16 elements:
 * x = d * scale * q - dmin * min. */
static void dequant_q2_k(const uint8_t *b, float *y) {
        const uint8_t *scales = b, *qs = b + 16;
        const float d = half(b + 80), dmin = half(b + 82);
        int is = 0;

        for (int n = 0; n < QK_K; n += 128) {
                const uint8_t *q = qs + n / 4;
                for (int shift = 0; shift < 8; shift += 2)
                        for (int half_ = 0; half_ < 2; half_++) {
                                const uint8_t sc = scales[is++];
                                const float dl = d * (float) (sc & 0x0f);
                                const float ml = dmin * (float) (sc >> 4);
                                for (int l = 0; l < 16; l++)
                                        *y++ = dl * (float) ((q[l + 16 * half_] >> shift) & 3) - ml;
                        }
        }
}

/* The 16 six-bit scales of Q3_K packed in 12 bytes: scale i (group g = i/4,
 * k = i%4) has its low nibble in byte k (g 0, 2) or 4 + k (g 1, 3), low or
 * high nibble for g < 2 or g >= 2, and its two high bits at bit 2g of byte
 * 8 + k. */
static int q3_k_scale(const uint8_t *s, int i) {
        const int g = i / 4, k = i % 4;
        const uint8_t byte = s[(g & 1) ? 4 + k : k];
        const int low = g < 2 ? (byte & 0x0f) : (byte >> 4);
        const int high = (s[8 + k] >> (2 * g)) & 3;
        return (low | (high << 4)) - 32;
}

/* Q3_K: hmask[32] (third bit, clear means "subtract 4"), qs[64] (low two
 * bits), scales[12], f16 d.  x = d * scale * (q - (hbit ? 0 : 4)). */
static void dequant_q3_k(const uint8_t *b, float *y) {
        const uint8_t *hmask = b, *qs = b + 32, *scales = b + 96;
        const float d_all = half(b + 108);
        uint8_t m = 1;
        int is = 0;

        for (int n = 0; n < QK_K; n += 128) {
                const uint8_t *q = qs + n / 4;
                for (int shift = 0; shift < 8; shift += 2) {
                        for (int half_ = 0; half_ < 2; half_++) {
                                const float dl = d_all * (float) q3_k_scale(scales, is++);
                                for (int l = 0; l < 16; l++) {
                                        const int idx = l + 16 * half_;
                                        const int v = ((q[idx] >> shift) & 3) - ((hmask[idx] & m) ? 0 : 4);
                                        *y++ = dl * (float) v;
                                }
                        }
                        m = (uint8_t) (m << 1);
                }
        }
}

/* The 8 six-bit (scale, min) pairs of Q4_K/Q5_K packed in 12 bytes. */
static void k4_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *mn) {
        if (j < 4) {
                *sc = q[j] & 63;
                *mn = q[j + 4] & 63;
        } else {
                *sc = (uint8_t) ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
                *mn = (uint8_t) ((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
        }
}

/* Q4_K and Q5_K share their layout but for Q5_K's qh[32]: f16 d, f16 dmin,
 * scales[12], [qh[32],] qs[128].  Eight sub-blocks of 32; each 32-byte group
 * of qs holds two sub-blocks (low nibbles, then high).  For Q5_K the fifth
 * bit of sub-block s, element l is bit s of qh[l]; qh is NULL for Q4_K, which
 * adds 0 instead and so computes exactly what a Q4_K-only loop would.  Inline
 * so that each caller gets the loop specialised for its constant qh. */
static inline void dequant_q45_k(const uint8_t *b, const uint8_t *qh, const uint8_t *q, float *y) {
        const float d = half(b), dmin = half(b + 2);
        const uint8_t *scales = b + 4;
        unsigned u1 = 1, u2 = 2;

        for (int is = 0; is < 8; is += 2, q += 32, u1 <<= 2, u2 <<= 2) {
                uint8_t sc, mn;
                k4_scale_min(is, scales, &sc, &mn);
                const float d1 = d * (float) sc, m1 = dmin * (float) mn;
                k4_scale_min(is + 1, scales, &sc, &mn);
                const float d2 = d * (float) sc, m2 = dmin * (float) mn;
                for (int l = 0; l < 32; l++)
                        *y++ = d1 * (float) ((q[l] & 0x0f) + ((qh && (qh[l] & u1)) ? 16 : 0)) - m1;
                for (int l = 0; l < 32; l++)
                        *y++ = d2 * (float) ((q[l] >> 4) + ((qh && (qh[l] & u2)) ? 16 : 0)) - m2;
        }
}

static void dequant_q4_k(const uint8_t *b, float *y) {
        dequant_q45_k(b, NULL, b + 16, y);
}

static void dequant_q5_k(const uint8_t *b, float *y) {
        dequant_q45_k(b, b + 16, b + 48, y);
}

/* Q6_K: ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16], f16 d.
 * x = d * scale * (q - 32), sixteen sub-blocks of 16. */
static void dequant_q6_k(const uint8_t *b, float *y) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *) (b + 192);
        const float d = half(b + 208);

        for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
                for (int l = 0; l < 32; l++) {
                        const int is = l / 16;
                        const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
                        const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
                        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                        y[l] = d * (float) sc[is] * (float) q1;
                        y[l + 32] = d * (float) sc[is + 2] * (float) q2;
                        y[l + 64] = d * (float) sc[is + 4] * (float) q3;
                        y[l + 96] = d * (float) sc[is + 6] * (float) q4;
                }
}

/* Q8_K: f32 d, 256 x i8, 16 x i16 bsums (a cache for dot products). */
static void dequant_q8_k(const uint8_t *b, float *y) {
        const uint32_t bits = le32(b);
        float d;
        memcpy(&d, &bits, sizeof(d));

        for (int j = 0; j < QK_K; j++)
                y[j] = (float) (int8_t) b[4 + j] * d;
}

int mp_gguf_dequantize(mp_dtype t, const void *src, size_t n_blocks, float *dst) {
        const mp_dtype_info *info = mp_dtype_get(t);
        const uint8_t *s = src;

        if (!info || !info->quantized)
                return -ENOTSUP;
        assert(src || n_blocks == 0);
        assert(dst || n_blocks == 0);

        for (size_t i = 0; i < n_blocks; i++, s += info->block_bytes, dst += info->block_elems)
                switch (t) {
                case MP_DTYPE_Q4_0: dequant_q4_0(s, dst); break;
                case MP_DTYPE_Q4_1: dequant_q4_1(s, dst); break;
                case MP_DTYPE_Q5_0: dequant_q5_0(s, dst); break;
                case MP_DTYPE_Q5_1: dequant_q5_1(s, dst); break;
                case MP_DTYPE_Q8_0: dequant_q8(s, 2, dst); break;
                case MP_DTYPE_Q8_1: dequant_q8(s, 4, dst); break;
                case MP_DTYPE_Q2_K: dequant_q2_k(s, dst); break;
                case MP_DTYPE_Q3_K: dequant_q3_k(s, dst); break;
                case MP_DTYPE_Q4_K: dequant_q4_k(s, dst); break;
                case MP_DTYPE_Q5_K: dequant_q5_k(s, dst); break;
                case MP_DTYPE_Q6_K: dequant_q6_k(s, dst); break;
                case MP_DTYPE_Q8_K: dequant_q8_k(s, dst); break;
                default:
                        return -ENOTSUP;
                }
        return 0;
}
