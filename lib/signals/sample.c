/* sample.c - deterministic sample positions and stored-order mapping
 * (see sample.h). */
#include "signals/sample.h"

#include <assert.h>
#include <math.h>
#include <string.h>

/* splitmix64 finalizer: a fixed, well-mixed hash of the sample number. */
static uint64_t mix64(uint64_t x) {
        x += 0x9e3779b97f4a7c15ULL;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        return x ^ (x >> 31);
}

void mp_hf_shape(const uint64_t *stored, uint32_t n_dims, uint32_t flags, uint64_t shape[MP_MAX_DIMS]) {
        assert(n_dims <= MP_MAX_DIMS);
        memset(shape, 0, MP_MAX_DIMS * sizeof(uint64_t));
        memcpy(shape, stored, n_dims * sizeof(uint64_t));
        if ((flags & MP_TENSOR_TRANSPOSED) && n_dims == 2) {
                shape[0] = stored[1];
                shape[1] = stored[0];
        }
}

void mp_tensor_hf_shape(const mp_tensor *t, uint64_t shape[MP_MAX_DIMS]) {
        mp_hf_shape(t->shape, t->n_dims, t->flags, shape);
}

uint64_t mp_sample_position(const uint64_t *shape, uint32_t n_dims, uint64_t n_elements, size_t j) {
        assert(n_elements > 0);
        uint64_t h1 = mix64(2 * (uint64_t) j), h2 = mix64(2 * (uint64_t) j + 1);
        if (n_dims < 2 || shape[0] == 0)
                return h1 % n_elements;
        uint64_t rows = shape[0], cols = n_elements / rows;
        uint64_t span = rows < MP_SAMPLE_ROW_SPAN ? rows : MP_SAMPLE_ROW_SPAN;
        return (h1 % span) * cols + h2 % cols;
}

uint64_t mp_sample_stored_index(const mp_tensor *t, uint64_t n_heads, uint64_t hf) {
        if (t->n_dims != 2)
                return hf;
        uint64_t shape[MP_MAX_DIMS];
        mp_tensor_hf_shape(t, shape);
        uint64_t rows = shape[0], cols = shape[1];
        if (rows == 0 || cols == 0)
                return hf;
        uint64_t r = hf / cols, c = hf % cols;

        if (t->flags & MP_TENSOR_TRANSPOSED)
                return c * rows + r;
        if ((t->flags & MP_TENSOR_ROPE_PERMUTED) && n_heads > 0 && rows % n_heads == 0) {
                /* llama.cpp's converter views each head's rows as [2, hd/2]
                 * and stores them as [hd/2, 2]. */
                uint64_t hd = rows / n_heads;
                if (hd % 2 == 0) {
                        uint64_t h = r / hd, rr = r % hd, half = hd / 2;
                        r = h * hd + 2 * (rr % half) + rr / half;
                }
        }
        return r * cols + c;
}

uint16_t mp_f32_to_f16(float f) {
        uint32_t x;
        memcpy(&x, &f, 4);
        uint16_t sign = (uint16_t) ((x >> 16) & 0x8000);
        uint32_t exp = (x >> 23) & 0xff, mant = x & 0x7fffff;

        if (exp == 0xff)                                /* inf, nan */
                return sign | 0x7c00 | (mant ? 0x200 : 0);
        int e = (int) exp - 127 + 15;
        if (e >= 31)
                return sign | 0x7c00;                   /* overflow: inf */
        if (e <= 0) {                                   /* subnormal or zero */
                if (e < -10)
                        return sign;
                mant |= 0x800000;
                uint32_t shift = (uint32_t) (14 - e);
                uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
                if (rem > mid || (rem == mid && (half & 1)))
                        half++;
                return sign | (uint16_t) half;
        }
        uint32_t half = ((uint32_t) e << 10) | (mant >> 13);
        uint32_t rem = mant & 0x1fff;
        if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
                half++;                                 /* may carry into the exponent: correct */
        return sign | (uint16_t) half;
}
