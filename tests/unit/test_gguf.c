/* test_gguf.c - the GGUF reader, the ggml dequantizers and the llama.cpp ->
 * Hugging Face tensor name mapping.
 *
 * Generated files (built with a tiny GGUF writer below) check exact names,
 * shapes, dtypes, offsets, metadata, tokenizer and architecture fields, and
 * every malformed-header case with its error code and byte offset.  The
 * dequantizers are checked against hand-built blocks and, for the K-quants,
 * against slow element-wise implementations written from the format
 * descriptions.  The zoo part compares GGUF files with their safetensors
 * originals. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "formats/dtype.h"
#include "formats/gguf.h"
#include "formats/gguf_dequant.h"
#include "formats/gguf_names.h"
#include "formats/model.h"
#include "test.h"
#include "util/source.h"

/* ---- a tiny GGUF writer ----------------------------------------------------- */

static void put_f32(test_buf *b, float f) {
        uint32_t u;
        memcpy(&u, &f, 4);
        put_u32(b, u);
}

static void put_f64(test_buf *b, double f) {
        uint64_t u;
        memcpy(&u, &f, 8);
        put_u64(b, u);
}

static void put_strn(test_buf *b, const char *s, size_t n) {
        put_u64(b, n);
        put(b, s, n);
}

static void put_str(test_buf *b, const char *s) {
        put_strn(b, s, strlen(s));
}

static void pad_to(test_buf *b, size_t align) {
        while (b->n % align)
                put_u8(b, 0);
}

enum { T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 };

static void header(test_buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
        put(b, "GGUF", 4);
        put_u32(b, version);
        put_u64(b, n_tensors);
        put_u64(b, n_kv);
}

static void kv_u32(test_buf *b, const char *k, uint32_t v) { put_str(b, k); put_u32(b, T_U32); put_u32(b, v); }
static void kv_str(test_buf *b, const char *k, const char *v) { put_str(b, k); put_u32(b, T_STR); put_str(b, v); }
static void kv_f32(test_buf *b, const char *k, float v) { put_str(b, k); put_u32(b, T_F32); put_f32(b, v); }

static void kv_str_array(test_buf *b, const char *k, const char *const *v, size_t n) {
        put_str(b, k);
        put_u32(b, T_ARR);
        put_u32(b, T_STR);
        put_u64(b, n);
        for (size_t i = 0; i < n; i++)
                put_str(b, v[i]);
}

/* A tensor info; returns the position of its offset field. */
static size_t tinfo(test_buf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off) {
        put_str(b, name);
        put_u32(b, n_dims);
        for (uint32_t d = 0; d < n_dims; d++)
                put_u64(b, ne[d]);
        put_u32(b, type);
        size_t at = b->n;
        put_u64(b, off);
        return at;
}

/* ---- loading helpers ----------------------------------------------------------- */

static mp_model *load_buf(const void *p, size_t n, int *ret, mp_error *err) {
        mp_model *m = mp_model_new("/test");
        mp_source src;

        CHECK(m);
        CHECK(mp_model_add_file(m, "/test/x.gguf", "x.gguf", MP_ROLE_WEIGHTS, MP_FORMAT_GGUF, n) == 0);
        mp_source_init_mem(&src, "x.gguf", p, n);
        mp_error_clear(err);
        *ret = mp_gguf_load(m, 0, &src, err);
        return m;
}

static void expect_fail_at(const test_buf *b, int code, int64_t offset, const char *reason_part, int line) {
        mp_error err;
        int r;
        mp_model *m = load_buf(b->p, b->n, &r, &err);

        if (r != code || err.code != code || err.offset != offset) {
                fprintf(stderr, "line %d: expected %d at %" PRId64 ", got %d/%d at %" PRId64 ": %s\n",
                        line, code, offset, r, err.code, err.offset, err.reason);
                exit(1);
        }
        CHECK_STREQ(err.file, "x.gguf");
        CHECK(err.reason[0] != 0);
        if (reason_part && !strstr(err.reason, reason_part)) {
                fprintf(stderr, "line %d: reason '%s' lacks '%s'\n", line, err.reason, reason_part);
                exit(1);
        }
        /* nothing half-added */
        CHECK_EQ(m->n_tensors, 0);
        CHECK_EQ(m->n_metadata, 0);
        CHECK(!m->tokenizer);
        CHECK(!m->arch.architecture);
        mp_model_free(m);
}

#define EXPECT_FAIL(b, code, offset, part) expect_fail_at((b), (code), (int64_t) (offset), (part), __LINE__)

static const char *meta(const mp_model *m, const char *key) {
        for (size_t i = 0; i < m->n_metadata; i++)
                if (strcmp(m->metadata[i].key, key) == 0)
                        return m->metadata[i].value;
        return NULL;
}

/* ---- type ids and names ---------------------------------------------------------- */

static void test_type_ids(void) {
        static const struct { uint32_t id; mp_dtype t; } map[] = {
                { 0, MP_DTYPE_F32 }, { 1, MP_DTYPE_F16 }, { 2, MP_DTYPE_Q4_0 }, { 3, MP_DTYPE_Q4_1 },
                { 6, MP_DTYPE_Q5_0 }, { 7, MP_DTYPE_Q5_1 }, { 8, MP_DTYPE_Q8_0 }, { 9, MP_DTYPE_Q8_1 },
                { 10, MP_DTYPE_Q2_K }, { 11, MP_DTYPE_Q3_K }, { 12, MP_DTYPE_Q4_K }, { 13, MP_DTYPE_Q5_K },
                { 14, MP_DTYPE_Q6_K }, { 15, MP_DTYPE_Q8_K }, { 24, MP_DTYPE_I8 }, { 25, MP_DTYPE_I16 },
                { 26, MP_DTYPE_I32 }, { 27, MP_DTYPE_I64 }, { 28, MP_DTYPE_F64 }, { 30, MP_DTYPE_BF16 },
                { 16, MP_DTYPE_IQ2_XXS }, { 17, MP_DTYPE_IQ2_XS }, { 18, MP_DTYPE_IQ3_XXS },
                { 19, MP_DTYPE_IQ1_S }, { 20, MP_DTYPE_IQ4_NL }, { 21, MP_DTYPE_IQ3_S }, { 22, MP_DTYPE_IQ2_S },
                { 23, MP_DTYPE_IQ4_XS }, { 29, MP_DTYPE_IQ1_M }, { 34, MP_DTYPE_TQ1_0 }, { 35, MP_DTYPE_TQ2_0 },
                { 39, MP_DTYPE_MXFP4 },
        };
        for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
                CHECK_EQ(mp_gguf_type_to_dtype(map[i].id), map[i].t);
        /* removed (4, 5), ids ggml never assigned to a tensor type, garbage */
        static const uint32_t bad[] = { 4, 5, 31, 32, 33, 36, 40, 1000, UINT32_MAX };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                CHECK_EQ(mp_gguf_type_to_dtype(bad[i]), MP_DTYPE_INVALID);

        /* IQ / TQ / MXFP4 tensors are listed and hashed, never dequantized */
        uint8_t raw[136] = {0};
        float out[256];
        CHECK(!mp_dtype_get(MP_DTYPE_IQ4_XS)->to_f32);
        CHECK_EQ(mp_dtype_get(MP_DTYPE_IQ4_XS)->block_bytes, 136);
        CHECK_EQ(mp_dtype_to_f32(MP_DTYPE_IQ4_XS, raw, 1, out), -ENOTSUP);

        /* block layouts of dtype.c's table, as ggml-common.h defines them */
        static const struct { mp_dtype t; uint32_t elems, bytes; } blocks[] = {
                { MP_DTYPE_Q4_0, 32, 18 }, { MP_DTYPE_Q4_1, 32, 20 }, { MP_DTYPE_Q5_0, 32, 22 },
                { MP_DTYPE_Q5_1, 32, 24 }, { MP_DTYPE_Q8_0, 32, 34 }, { MP_DTYPE_Q8_1, 32, 36 },
                { MP_DTYPE_Q2_K, 256, 16 + 64 + 2 + 2 }, { MP_DTYPE_Q3_K, 256, 32 + 64 + 12 + 2 },
                { MP_DTYPE_Q4_K, 256, 2 + 2 + 12 + 128 }, { MP_DTYPE_Q5_K, 256, 2 + 2 + 12 + 32 + 128 },
                { MP_DTYPE_Q6_K, 256, 128 + 64 + 16 + 2 }, { MP_DTYPE_Q8_K, 256, 4 + 256 + 32 },
        };
        for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) {
                const mp_dtype_info *info = mp_dtype_get(blocks[i].t);
                CHECK(info && info->quantized);
                CHECK_EQ(info->block_elems, blocks[i].elems);
                CHECK_EQ(info->block_bytes, blocks[i].bytes);
        }
}

static void check_name(const char *arch, const char *in, const char *out, uint32_t flags) {
        uint32_t f = 12345;
        char *n = mp_gguf_hf_name(arch, in, &f);
        CHECK(n);
        if (strcmp(n, out) != 0 || f != flags) {
                fprintf(stderr, "%s/%s -> %s flags %u, expected %s flags %u\n", arch ? arch : "(null)", in, n, f,
                        out, flags);
                exit(1);
        }
        free(n);
}

static void test_names(void) {
        const uint32_t R = MP_TENSOR_ROPE_PERMUTED, T = MP_TENSOR_TRANSPOSED;

        check_name("llama", "token_embd.weight", "model.embed_tokens.weight", 0);
        check_name("llama", "output_norm.weight", "model.norm.weight", 0);
        check_name("llama", "output.weight", "lm_head.weight", 0);
        check_name("llama", "blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight", 0);
        check_name("llama", "blk.12.attn_q.weight", "model.layers.12.self_attn.q_proj.weight", R);
        check_name("llama", "blk.12.attn_q.bias", "model.layers.12.self_attn.q_proj.bias", R);
        check_name("llama", "blk.3.attn_k.weight", "model.layers.3.self_attn.k_proj.weight", R);
        check_name("llama", "blk.3.attn_v.weight", "model.layers.3.self_attn.v_proj.weight", 0);
        check_name("llama", "blk.3.attn_output.weight", "model.layers.3.self_attn.o_proj.weight", 0);
        check_name("llama", "blk.3.ffn_norm.weight", "model.layers.3.post_attention_layernorm.weight", 0);
        check_name("llama", "blk.3.ffn_gate.weight", "model.layers.3.mlp.gate_proj.weight", 0);
        check_name("llama", "blk.3.ffn_up.weight", "model.layers.3.mlp.up_proj.weight", 0);
        check_name("llama", "blk.3.ffn_down.weight", "model.layers.3.mlp.down_proj.weight", 0);
        check_name("mistral", "blk.1.attn_k.weight", "model.layers.1.self_attn.k_proj.weight", R);
        /* qwen2 uses NEOX RoPE: no permutation, but q/k/v biases */
        check_name("qwen2", "blk.1.attn_q.weight", "model.layers.1.self_attn.q_proj.weight", 0);
        check_name("qwen2", "blk.1.attn_k.bias", "model.layers.1.self_attn.k_proj.bias", 0);
        check_name("qwen3", "blk.1.attn_q_norm.weight", "model.layers.1.self_attn.q_norm.weight", 0);
        /* pass-through: unknown names, unknown archs, odd block numbers */
        check_name("llama", "rope_freqs.weight", "rope_freqs.weight", 0);
        check_name("llama", "blk.0.attn_rot_embd", "blk.0.attn_rot_embd", 0);
        check_name("llama", "blk.x.attn_q.weight", "blk.x.attn_q.weight", 0);
        check_name("llama", "blk..attn_q.weight", "blk..attn_q.weight", 0);
        check_name("llama", "blk.1234567890.attn_q.weight", "blk.1234567890.attn_q.weight", 0);
        check_name("llama", "blk.1attn_q.weight", "blk.1attn_q.weight", 0);
        check_name("llama", "token_embd_x.weight", "token_embd_x.weight", 0);
        check_name("falcon", "blk.0.attn_q.weight", "blk.0.attn_q.weight", 0);
        check_name(NULL, "token_embd.weight", "token_embd.weight", 0);
        check_name("llama", "", "", 0);
        /* a base without suffix keeps mapping */
        check_name("llama", "output", "lm_head", 0);

        check_name("gpt2", "token_embd.weight", "transformer.wte.weight", 0);
        check_name("gpt2", "position_embd.weight", "transformer.wpe.weight", 0);
        check_name("gpt2", "output_norm.bias", "transformer.ln_f.bias", 0);
        check_name("gpt2", "output.weight", "lm_head.weight", 0);
        check_name("gpt2", "blk.2.attn_norm.weight", "transformer.h.2.ln_1.weight", 0);
        check_name("gpt2", "blk.2.attn_qkv.weight", "transformer.h.2.attn.c_attn.weight", T);
        check_name("gpt2", "blk.2.attn_qkv.bias", "transformer.h.2.attn.c_attn.bias", 0);
        check_name("gpt2", "blk.2.attn_output.weight", "transformer.h.2.attn.c_proj.weight", T);
        check_name("gpt2", "blk.2.ffn_norm.bias", "transformer.h.2.ln_2.bias", 0);
        check_name("gpt2", "blk.2.ffn_up.weight", "transformer.h.2.mlp.c_fc.weight", T);
        check_name("gpt2", "blk.2.ffn_down.weight", "transformer.h.2.mlp.c_proj.weight", T);
        check_name("gpt2", "blk.2.ffn_down.bias", "transformer.h.2.mlp.c_proj.bias", 0);

        check_name("gemma", "blk.0.ffn_norm.weight", "model.layers.0.post_attention_layernorm.weight", 0);
        check_name("gemma", "blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight", 0);
        check_name("gemma2", "blk.0.post_attention_norm.weight", "model.layers.0.post_attention_layernorm.weight", 0);
        check_name("gemma2", "blk.0.ffn_norm.weight", "model.layers.0.pre_feedforward_layernorm.weight", 0);
        check_name("gemma2", "blk.0.post_ffw_norm.weight", "model.layers.0.post_feedforward_layernorm.weight", 0);
        check_name("gemma3", "blk.5.attn_k_norm.weight", "model.layers.5.self_attn.k_norm.weight", 0);

        check_name("phi2", "output_norm.weight", "model.final_layernorm.weight", 0);
        check_name("phi2", "output.bias", "lm_head.bias", 0);
        check_name("phi2", "blk.0.attn_output.weight", "model.layers.0.self_attn.dense.weight", 0);
        check_name("phi2", "blk.0.ffn_up.bias", "model.layers.0.mlp.fc1.bias", 0);
        check_name("phi2", "blk.0.ffn_down.weight", "model.layers.0.mlp.fc2.weight", 0);
        check_name("phi2", "blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight", 0);
        check_name("phi3", "blk.0.attn_qkv.weight", "model.layers.0.self_attn.qkv_proj.weight", 0);
        check_name("phi3", "blk.0.ffn_up.weight", "model.layers.0.mlp.gate_up_proj.weight", 0);
        check_name("phi3", "output_norm.weight", "model.norm.weight", 0);

        CHECK_STREQ(mp_gguf_model_type("llama"), "llama");
        CHECK_STREQ(mp_gguf_model_type("gpt2"), "gpt2");
        CHECK_STREQ(mp_gguf_model_type("qwen2"), "qwen2");
        CHECK_STREQ(mp_gguf_model_type("phi2"), "phi");
        CHECK_STREQ(mp_gguf_model_type("phi3"), "phi3");
        CHECK_STREQ(mp_gguf_model_type("gemma"), "gemma");
        CHECK_STREQ(mp_gguf_model_type("command-r"), "cohere");
        CHECK_STREQ(mp_gguf_model_type("strange-arch"), "strange-arch");
        CHECK(mp_gguf_model_type(NULL) == NULL);
}

/* ---- dequantization: simple block formats ------------------------------------- */

static float f16(uint16_t h) {
        return mp_f16_to_f32(h);
}

static void test_dequant_q4_q5(void) {
        uint8_t b[24];
        float y[32];

        /* Q4_0: d = 0.5, element j (low nibble) = j & 15, element j+16 = 15 - j */
        memset(b, 0, sizeof(b));
        b[0] = 0x00; b[1] = 0x38;      /* 0.5 */
        for (int j = 0; j < 16; j++)
                b[2 + j] = (uint8_t) (j | ((15 - j) << 4));
        CHECK_EQ(mp_gguf_dequantize(MP_DTYPE_Q4_0, b, 1, y), 0);
        for (int j = 0; j < 16; j++) {
                CHECK(y[j] == (float) (j - 8) * 0.5f);
                CHECK(y[j + 16] == (float) (15 - j - 8) * 0.5f);
        }
        CHECK(y[0] == -4.0f && y[16] == 3.5f && y[15] == 3.5f && y[31] == -4.0f);

        /* Q4_1: d = 0.25, m = -1: x = q * 0.25 - 1 */
        memset(b, 0, sizeof(b));
        b[0] = 0x00; b[1] = 0x34;      /* 0.25 */
        b[2] = 0x00; b[3] = 0xbc;      /* -1.0 */
        for (int j = 0; j < 16; j++)
                b[4 + j] = (uint8_t) ((j * 7) & 15) | (uint8_t) (((j * 3 + 1) & 15) << 4);
        CHECK_EQ(mp_gguf_dequantize(MP_DTYPE_Q4_1, b, 1, y), 0);
        for (int j = 0; j < 16; j++) {
                CHECK(y[j] == (float) ((j * 7) & 15) * 0.25f - 1.0f);
                CHECK(y[j + 16] == (float) ((j * 3 + 1) & 15) * 0.25f - 1.0f);
        }
        CHECK(y[1] == 0.75f);          /* q = 7 */

        /* Q5_0: d = 2, qh = 0xa5a5f00f: bit j is the fifth bit of element j */
        memset(b, 0, sizeof(b));
        b[0] = 0x00; b[1] = 0x40;      /* 2.0 */
        const uint32_t qh = 0xa5a5f00fu;
        b[2] = (uint8_t) qh; b[3] = (uint8_t) (qh >> 8); b[4] = (uint8_t) (qh >> 16); b[5] = (uint8_t) (qh >> 24);
        for (int j = 0; j < 16; j++)
                b[6 + j] = (uint8_t) (j | ((j ^ 5) << 4));
        CHECK_EQ(mp_gguf_dequantize(MP_DTYPE_Q5_0, b, 1, y), 0);
        for (int i = 0; i < 32; i++) {
                int lo = i < 16 ? i : ((i - 16) ^ 5);
                int q = lo | (int) (((qh >> i) & 1) << 4);
                CHECK(y[i] == (float) (q - 16) * 2.0f);
        }
        CHECK(y[0] == 0.0f);           /* q = 0 | 16 */
        CHECK(y[4] == -24.0f);         /* q = 4, fifth bit clear */

        /* Q5_1: d = 0.125, m = 3 */
        memset(b, 0, sizeof(b));
        b[0] = 0x00; b[1] = 0x30;      /* 0.125 */
        b[2] = 0x00; b[3] = 0x42;      /* 3.0 */
        b[4] = 0xff; b[5] = 0x00; b[6] = 0x00; b[7] = 0x80;    /* bits 0..7 and 31 */
        for (int j = 0; j < 16; j++)
                b[8 + j] = (uint8_t) (15 - j) | (uint8_t) (j << 4);
        CHECK_EQ(mp_gguf_dequantize(MP_DTYPE_Q5_1, b, 1, y), 0);
        for (int i = 0; i < 32; i++) {
                int lo = i < 16 ? 15 - i : i - 16;
                int hi = (i < 8 || i == 31) ? 16 : 0;
                CHECK(y[i] == (float) (lo | hi) * 0.125f + 3.0f);
        }
        CHECK(y[0] == 31 * 0.125f + 3.0f && y[31] == 31 * 0.125f + 3.0f && y[8] == 7 * 0.125f + 3.0f);
}

static void test_dequant_q8(void) {
        uint8_t b[2 * 36];
        float y[64];

        /* Q8_0, two blocks: d = 0.0625 and -3 */
        b[0] = 0x00; b[1] = 0x2c;
        for (int j = 0; j < 32; j++)
                b[2 + j] = (uint8_t) (int8_t) (j * 8 - 128);
        b[34] = 0x00; b[35] = 0xc2;
        for (int j = 0; j < 32; j++)
                b[36 + j] = (uint8_t) (int8_t) (j - 16);
        CHECK_EQ(mp_gguf_dequantize(MP_DTYPE_Q8_0, b, 2, y), 0);
        for (int j = 0; j < 32; j++) {
                CHECK(y[j] == (float) (j * 8 - 128) * 0.0625f);
                CHECK(y[32 + j] == (float) (j - 16) * -3.0f);
        }
        CHECK(y[0] == -8.0f && y[31] == 7.5f && y[32] == 48.0f);

        /* Q8_1: d = 1.5, s ignored */
        b[0] = 0x00; b[1] = 0x3e;
        b[2] = 0x12; b[3] = 0x34;
        for (int j = 0; j < 32; j++)
                b[4 + j] = (uint8_t) (int8_t) (127 - j * 8);
        CHECK_EQ(mp_gguf_dequantize(MP_DTYPE_Q8_1, b, 1, y), 0);
        for (int j = 0; j < 32; j++)
                CHECK(y[j] == (float) (127 - j * 8) * 1.5f);
        CHECK(y[0] == 190.5f);

        /* through mp_dtype_to_f32, as readers use it */
        CHECK_EQ(mp_dtype_to_f32(MP_DTYPE_Q8_1, b, 1, y), 0);
        CHECK(y[1] == 119 * 1.5f);
        /* plain types are not quantized */
        CHECK_EQ(mp_gguf_dequantize(MP_DTYPE_F16, b, 1, y), -ENOTSUP);
        CHECK_EQ(mp_gguf_dequantize(MP_DTYPE_INVALID, b, 1, y), -ENOTSUP);
        CHECK_EQ(mp_gguf_dequantize((mp_dtype) 999, b, 1, y), -ENOTSUP);
        CHECK_EQ(mp_gguf_dequantize(MP_DTYPE_Q4_K, NULL, 0, NULL), 0);
}

/* ---- dequantization: K-quants against slow element-wise references ------------ */

static uint32_t rng_state = 12345;

static uint32_t rnd(void) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 17;
        rng_state ^= rng_state << 5;
        return rng_state;
}

/* Normal f16 values of moderate size, both signs. */
static uint16_t rnd_f16(void) {
        uint16_t exp = (uint16_t) (5 + rnd() % 20);
        return (uint16_t) ((rnd() & 0x8000) | (exp << 10) | (rnd() & 0x3ff));
}

static void rnd_fill(uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t) rnd();
}

static float rd_f16(const uint8_t *p) {
        return f16((uint16_t) (p[0] | (p[1] << 8)));
}

/* Element i of a 256-element super-block whose 2-bit quants are packed as
 * Q2_K/Q3_K do: each 32-byte group holds 128 elements, four 2-bit planes. */
static int low2(const uint8_t *qs, int i) {
        int g = i / 128, k = i % 128;
        return (qs[32 * g + k % 32] >> (2 * (k / 32))) & 3;
}

static float ref_q2_k(const uint8_t *b, int i) {
        const float d = rd_f16(b + 80), dmin = rd_f16(b + 82);
        const uint8_t sc = b[i / 16];
        const float dl = d * (float) (sc & 15), ml = dmin * (float) (sc >> 4);
        return dl * (float) low2(b + 16, i) - ml;
}

/* Q3_K scales, decoded from the packing the quantizer writes: scale j has its
 * low 4 bits in scales[j] (j < 8) or the high nibble of scales[j - 8], and
 * its high 2 bits in scales[8 + j % 4] at bit 2 * (j / 4). */
static int q3_scale(const uint8_t *s, int j) {
        int lo = j < 8 ? (s[j] & 15) : (s[j - 8] >> 4);
        int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        return (lo | (hi << 4)) - 32;
}

static float ref_q3_k(const uint8_t *b, int i) {
        const float d = rd_f16(b + 108);
        const int hbit = (b[i % 32] >> (i / 32)) & 1;
        const int q = low2(b + 32, i) - (hbit ? 0 : 4);
        const float dl = d * (float) q3_scale(b + 96, i / 16);
        return dl * (float) q;
}

/* Q4_K/Q5_K scale and min of sub-block j, from the quantizer's packing. */
static void k_scale_min(const uint8_t *s, int j, int *ls, int *lm) {
        if (j < 4) {
                *ls = s[j] & 63;
                *lm = s[j + 4] & 63;
        } else {
                *ls = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
                *lm = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
}

static int nibble4(const uint8_t *qs, int i) {
        uint8_t byte = qs[32 * (i / 64) + i % 32];
        return (i / 32) % 2 ? byte >> 4 : byte & 15;
}

static float ref_q4_k(const uint8_t *b, int i) {
        int ls, lm;
        k_scale_min(b + 4, i / 32, &ls, &lm);
        const float d1 = rd_f16(b) * (float) ls, m1 = rd_f16(b + 2) * (float) lm;
        return d1 * (float) nibble4(b + 16, i) - m1;
}

static float ref_q5_k(const uint8_t *b, int i) {
        int ls, lm;
        k_scale_min(b + 4, i / 32, &ls, &lm);
        const float d1 = rd_f16(b) * (float) ls, m1 = rd_f16(b + 2) * (float) lm;
        const int q = nibble4(b + 48, i) + (((b[16 + i % 32] >> (i / 32)) & 1) ? 16 : 0);
        return d1 * (float) q - m1;
}

static float ref_q6_k(const uint8_t *b, int i) {
        const int g = i / 128, k = i % 128, quarter = k / 32, l = k % 32;
        const uint8_t lo_byte = b[64 * g + l + 32 * (quarter & 1)];
        const int lo = quarter >= 2 ? lo_byte >> 4 : lo_byte & 15;
        const int hi = (b[128 + 32 * g + l] >> (2 * quarter)) & 3;
        const int8_t sc = (int8_t) b[192 + i / 16];
        return rd_f16(b + 208) * (float) sc * (float) ((lo | (hi << 4)) - 32);
}

static float ref_q8_k(const uint8_t *b, int i) {
        float d;
        uint32_t u = (uint32_t) b[0] | ((uint32_t) b[1] << 8) | ((uint32_t) b[2] << 16) | ((uint32_t) b[3] << 24);
        memcpy(&d, &u, 4);
        return (float) (int8_t) b[4 + i] * d;
}

typedef float (*ref_fn)(const uint8_t *b, int i);

static void check_kquant(mp_dtype t, ref_fn ref, const size_t *f16_at, size_t n_f16) {
        const mp_dtype_info *info = mp_dtype_get(t);
        enum { N = 8 };
        uint8_t *blocks = malloc(N * info->block_bytes);
        float y[N * 256];

        CHECK(blocks);
        for (int trial = 0; trial < 50; trial++) {
                rnd_fill(blocks, N * info->block_bytes);
                for (int k = 0; k < N; k++)
                        for (size_t f = 0; f < n_f16; f++) {
                                uint16_t h = rnd_f16();
                                blocks[k * info->block_bytes + f16_at[f]] = (uint8_t) h;
                                blocks[k * info->block_bytes + f16_at[f] + 1] = (uint8_t) (h >> 8);
                        }
                if (t == MP_DTYPE_Q8_K)
                        for (int k = 0; k < N; k++) {
                                float d = (float) (rnd() % 1000) / 4096.0f - 0.1f;
                                memcpy(blocks + k * info->block_bytes, &d, 4);
                        }
                CHECK_EQ(mp_gguf_dequantize(t, blocks, N, y), 0);
                for (int k = 0; k < N; k++)
                        for (int i = 0; i < 256; i++) {
                                float want = ref(blocks + k * info->block_bytes, i);
                                if (memcmp(&want, &y[k * 256 + i], sizeof(float)) != 0) {
                                        fprintf(stderr, "%s block %d element %d: %.9g != reference %.9g\n",
                                                info->name, k, i, y[k * 256 + i], want);
                                        exit(1);
                                }
                        }
        }
        free(blocks);
}

static void test_dequant_kquants(void) {
        static const size_t q2[] = { 80, 82 }, q3[] = { 108 }, q4[] = { 0, 2 }, q6[] = { 208 };

        check_kquant(MP_DTYPE_Q2_K, ref_q2_k, q2, 2);
        check_kquant(MP_DTYPE_Q3_K, ref_q3_k, q3, 1);
        check_kquant(MP_DTYPE_Q4_K, ref_q4_k, q4, 2);
        check_kquant(MP_DTYPE_Q5_K, ref_q5_k, q4, 2);
        check_kquant(MP_DTYPE_Q6_K, ref_q6_k, q6, 1);
        check_kquant(MP_DTYPE_Q8_K, ref_q8_k, NULL, 0);
}

/* A few elements computed by hand from the layouts. */
static void test_dequant_kquants_by_hand(void) {
        uint8_t b[292];
        float y[256];

        /* Q2_K: d = 2, dmin = 0.5; sub-block 9 (elements 144..159) has scale 3,
         * min 5.  Element 150: group 1, k = 22, plane 0, byte 32 + 22. */
        memset(b, 0, sizeof(b));
        b[9] = 0x53;
        b[16 + 32 + 22] = 0x02;        /* element 150: q = 2; element 150+32: q = 0 */
        b[80] = 0x00; b[81] = 0x40;
        b[82] = 0x00; b[83] = 0x38;
        CHECK_EQ(mp_gguf_dequantize(MP_DTYPE_Q2_K, b, 1, y), 0);
        CHECK(y[150] == 2.0f * 3 * 2 - 0.5f * 5);      /* 9.5 */
        CHECK(y[151] == -2.5f);                         /* q = 0 */
        CHECK(y[0] == 0.0f);                            /* scale 0, min 0 */

        /* Q3_K: d = 1; scale of sub-block 13 (elements 208..223) = 6-bit 45
         * (45 - 32 = 13): low nibble 13 in the high nibble of scales[5], high
         * bits 2 at bit 6 of scales[8 + 1].  Element 211: low bits at group 1,
         * k = 83, plane 2, byte 32 + 19; its third bit is hmask[19] bit 6. */
        memset(b, 0, sizeof(b));
        b[96 + 5] = 0xd0;
        b[96 + 9] = 0x80;
        b[32 + 32 + 19] = 3 << 4;      /* q = 3 */
        b[19] = 1 << 6;                 /* high bit set: no -4 */
        b[108] = 0x00; b[109] = 0x3c;
        CHECK_EQ(mp_gguf_dequantize(MP_DTYPE_Q3_K, b, 1, y), 0);
        CHECK(y[211] == 13.0f * 3);
        CHECK(y[212] == 13.0f * -4);   /* q = 0, high bit clear */
        CHECK(y[0] == -32.0f * -4);    /* scale 0 - 32, q = -4 */

        /* Q4_K: d = 1, dmin = 0.5; sub-block 5 scale 37, min 9: scales[9] =
         * 0x95, scales[1] bits 6-7 = 37 >> 4 = 2.  Element 163: chunk 2, high
         * nibble, byte 64 + 3. */
        memset(b, 0, sizeof(b));
        b[0] = 0x00; b[1] = 0x3c;
        b[2] = 0x00; b[3] = 0x38;
        b[4 + 9] = 0x95;
        b[4 + 1] = 0x80;
        b[16 + 64 + 3] = 0xa7;
        CHECK_EQ(mp_gguf_dequantize(MP_DTYPE_Q4_K, b, 1, y), 0);
        CHECK(y[163] == 365.5f);       /* 37 * 10 - 0.5 * 9 */
        CHECK(y[131] == 0.0f);         /* sub-block 4: scale 0 (b[8] low nibble 0) */

        /* Q5_K: same scales; element 163 gets its fifth bit from qh[3] bit 5. */
        memset(b, 0, sizeof(b));
        b[0] = 0x00; b[1] = 0x3c;
        b[2] = 0x00; b[3] = 0x38;
        b[4 + 9] = 0x95;
        b[4 + 1] = 0x80;
        b[16 + 3] = 1 << 5;
        b[48 + 64 + 3] = 0xa7;
        CHECK_EQ(mp_gguf_dequantize(MP_DTYPE_Q5_K, b, 1, y), 0);
        CHECK(y[163] == 37.0f * 26 - 4.5f);

        /* Q6_K: d = 0.25, scale of sub-block 11 = -3.  Element 185: group 1,
         * k = 57, quarter 1, l = 25: low nibble of ql[64 + 25 + 32], bits 2-3
         * of qh[32 + 25]. */
        memset(b, 0, sizeof(b));
        b[64 + 25 + 32] = 0x0b;
        b[128 + 32 + 25] = 2 << 2;
        b[192 + 11] = (uint8_t) (int8_t) -3;
        b[208] = 0x00; b[209] = 0x34;
        CHECK_EQ(mp_gguf_dequantize(MP_DTYPE_Q6_K, b, 1, y), 0);
        CHECK(y[185] == 0.25f * -3 * ((0x0b | (2 << 4)) - 32));        /* 0.25 * -3 * 11 */
        CHECK(y[185] == -8.25f);

        /* Q8_K: f32 d = -0.5 */
        memset(b, 0, sizeof(b));
        float d = -0.5f;
        memcpy(b, &d, 4);
        b[4 + 255] = (uint8_t) (int8_t) -128;
        CHECK_EQ(mp_gguf_dequantize(MP_DTYPE_Q8_K, b, 1, y), 0);
        CHECK(y[255] == 64.0f);
}

/* ---- a valid generated file --------------------------------------------------- */

static const char *const vocab[] = { "<unk>", "<s>", "</s>", "a", "b" };

typedef struct tiny {
        test_buf b;
        size_t n_kv;
        size_t data_start;
        uint64_t rel[5];
} tiny;

static void build_tiny(tiny *t, uint32_t version) {
        test_buf *b = &t->b;
        const size_t n_kv = 34;
        static const uint64_t ne_embd[] = { 4, 5 }, ne_q[] = { 4, 4 }, ne_down[] = { 32, 2 }, ne_norm[] = { 4 },
                              ne_rope[] = { 2 };

        memset(t, 0, sizeof(*t));
        header(b, version, 5, n_kv);
        kv_str(b, "general.architecture", "llama");
        kv_str(b, "general.name", "tiny");
        kv_u32(b, "general.alignment", 64);
        kv_u32(b, "llama.context_length", 256);
        put_str(b, "llama.embedding_length"); put_u32(b, T_U64); put_u64(b, 64);
        put_str(b, "llama.block_count"); put_u32(b, T_I32); put_u32(b, 2);
        kv_u32(b, "llama.feed_forward_length", 128);
        kv_u32(b, "llama.attention.head_count", 4);
        kv_u32(b, "llama.attention.head_count_kv", 2);
        kv_f32(b, "llama.rope.freq_base", 500000.0f);
        kv_f32(b, "llama.attention.layer_norm_rms_epsilon", 1e-6f);
        put_str(b, "test.u8"); put_u32(b, T_U8); put_u8(b, 200);
        put_str(b, "test.i8"); put_u32(b, T_I8); put_u8(b, (uint8_t) -5);
        put_str(b, "test.u16"); put_u32(b, T_U16); put_u16(b, 60000);
        put_str(b, "test.i16"); put_u32(b, T_I16); put_u16(b, (uint16_t) -30000);
        put_str(b, "test.i32"); put_u32(b, T_I32); put_u32(b, (uint32_t) -7);
        put_str(b, "test.i64"); put_u32(b, T_I64); put_u64(b, (uint64_t) -1000000000000LL);
        put_str(b, "test.u64"); put_u32(b, T_U64); put_u64(b, UINT64_MAX);
        put_str(b, "test.f64"); put_u32(b, T_F64); put_f64(b, 0.1);
        put_str(b, "test.bool"); put_u32(b, T_BOOL); put_u8(b, 1);
        put_str(b, "test.false"); put_u32(b, T_BOOL); put_u8(b, 0);
        {       /* a chat template sized string: summarised, not kept */
                char *s = malloc(5000);
                CHECK(s);
                memset(s, 'x', 5000);
                put_str(b, "test.long_string"); put_u32(b, T_STR); put_strn(b, s, 5000);
                free(s);
        }
        /* [[1, 2], [3]] as UINT16 arrays in an array: depth 2 */
        put_str(b, "test.nested"); put_u32(b, T_ARR); put_u32(b, T_ARR); put_u64(b, 2);
        put_u32(b, T_U16); put_u64(b, 2); put_u16(b, 1); put_u16(b, 2);
        put_u32(b, T_U16); put_u64(b, 1); put_u16(b, 3);
        put_str(b, "test.empty"); put_u32(b, T_ARR); put_u32(b, T_F64); put_u64(b, 0);
        kv_str(b, "test.empty_string", "");
        kv_str(b, "tokenizer.ggml.model", "llama");
        kv_str(b, "tokenizer.ggml.pre", "default");
        kv_str_array(b, "tokenizer.ggml.tokens", vocab, 5);
        static const char *const merges[] = { "a b" };
        kv_str_array(b, "tokenizer.ggml.merges", merges, 1);
        put_str(b, "tokenizer.ggml.scores"); put_u32(b, T_ARR); put_u32(b, T_F32); put_u64(b, 5);
        for (int i = 0; i < 5; i++)
                put_f32(b, (float) -i);
        kv_u32(b, "tokenizer.ggml.bos_token_id", 1);
        kv_u32(b, "tokenizer.ggml.eos_token_id", 2);
        kv_u32(b, "tokenizer.ggml.unknown_token_id", 0);
        kv_u32(b, "tokenizer.ggml.padding_token_id", 99);      /* out of range: no pad token */
        t->n_kv = n_kv;

        t->rel[0] = 0;          /* 80 bytes F32 */
        t->rel[1] = 128;        /* 32 bytes F16 */
        t->rel[2] = 192;        /* 68 bytes Q8_0 */
        t->rel[3] = 320;        /* 16 bytes F32 */
        t->rel[4] = 384;        /* 8 bytes F32 */
        tinfo(b, "token_embd.weight", 2, ne_embd, 0, t->rel[0]);
        tinfo(b, "blk.0.attn_q.weight", 2, ne_q, 1, t->rel[1]);
        tinfo(b, "blk.1.ffn_down.weight", 2, ne_down, 8, t->rel[2]);
        tinfo(b, "output_norm.weight", 1, ne_norm, 0, t->rel[3]);
        tinfo(b, "rope_freqs.weight", 1, ne_rope, 0, t->rel[4]);
        pad_to(b, 64);
        t->data_start = b->n;

        /* data: token_embd = 0..19, attn_q = f16 of i - 8, ffn_down = two Q8_0
         * blocks, output_norm = 1.5, rope_freqs = 7, 8 */
        for (int i = 0; i < 20; i++)
                put_f32(b, (float) i);
        pad_to(b, 64);
        for (int i = 0; i < 16; i++)
                put_u16(b, i < 8 ? 0xc000 : 0x3c00);  /* -2, then 1 */
        pad_to(b, 64);
        for (int k = 0; k < 2; k++) {
                put_u16(b, k == 0 ? 0x3800 : 0x4000);   /* 0.5, 2 */
                for (int j = 0; j < 32; j++)
                        put_u8(b, (uint8_t) (int8_t) (j - 10));
        }
        pad_to(b, 64);
        for (int i = 0; i < 4; i++)
                put_f32(b, 1.5f);
        pad_to(b, 64);
        put_f32(b, 7.0f);
        put_f32(b, 8.0f);
}

static void test_valid_file(void) {
        tiny t;
        mp_error err;
        int r;

        build_tiny(&t, 3);
        mp_model *m = load_buf(t.b.p, t.b.n, &r, &err);
        if (r < 0)
                fprintf(stderr, "%s at %" PRId64 "\n", err.reason, err.offset);
        CHECK_EQ(r, 0);

        /* tensors, in file order, HF names, shapes reversed, absolute offsets */
        CHECK_EQ(m->n_tensors, 5);
        static const struct {
                const char *name, *source;
                mp_dtype dtype;
                uint32_t n_dims;
                uint64_t shape[2];
                uint64_t length;
                uint32_t flags;
        } want[] = {
                { "model.embed_tokens.weight", "token_embd.weight", MP_DTYPE_F32, 2, { 5, 4 }, 80, 0 },
                { "model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight", MP_DTYPE_F16, 2, { 4, 4 }, 32,
                  MP_TENSOR_ROPE_PERMUTED },
                { "model.layers.1.mlp.down_proj.weight", "blk.1.ffn_down.weight", MP_DTYPE_Q8_0, 2, { 2, 32 }, 68, 0 },
                { "model.norm.weight", "output_norm.weight", MP_DTYPE_F32, 1, { 4, 0 }, 16, 0 },
                { "rope_freqs.weight", "rope_freqs.weight", MP_DTYPE_F32, 1, { 2, 0 }, 8, 0 },
        };
        for (size_t i = 0; i < 5; i++) {
                const mp_tensor *x = &m->tensors[i];
                CHECK_STREQ(x->name, want[i].name);
                CHECK_STREQ(x->source_name, want[i].source);
                CHECK_EQ(x->dtype, want[i].dtype);
                CHECK_EQ(x->n_dims, want[i].n_dims);
                for (uint32_t d = 0; d < x->n_dims; d++)
                        CHECK_EQ(x->shape[d], want[i].shape[d]);
                CHECK_EQ(x->n_elements, want[i].shape[0] * (want[i].n_dims > 1 ? want[i].shape[1] : 1));
                CHECK_EQ(x->length, want[i].length);
                CHECK_EQ(x->offset, t.data_start + t.rel[i]);
                CHECK_EQ(x->file_index, 0);
                CHECK_EQ(x->flags, want[i].flags);
        }
        CHECK_EQ(t.data_start % 64, 0);

        /* values through the offsets */
        float v[64];
        const mp_tensor *x = &m->tensors[0];
        CHECK_EQ(mp_dtype_to_f32(x->dtype, t.b.p + x->offset, x->n_elements, v), 0);
        for (int i = 0; i < 20; i++)
                CHECK(v[i] == (float) i);
        x = &m->tensors[1];
        CHECK_EQ(mp_dtype_to_f32(x->dtype, t.b.p + x->offset, x->n_elements, v), 0);
        CHECK(v[0] == -2.0f && v[7] == -2.0f && v[8] == 1.0f && v[15] == 1.0f);
        x = &m->tensors[2];
        CHECK_EQ(mp_dtype_to_f32(x->dtype, t.b.p + x->offset, x->n_elements / 32, v), 0);
        CHECK(v[0] == -5.0f && v[31] == 10.5f && v[32] == -20.0f && v[63] == 42.0f);
        x = &m->tensors[4];
        CHECK_EQ(mp_dtype_to_f32(x->dtype, t.b.p + x->offset, x->n_elements, v), 0);
        CHECK(v[0] == 7.0f && v[1] == 8.0f);

        /* metadata: every kv in file order, rendered */
        CHECK_EQ(m->n_metadata, t.n_kv);
        CHECK_STREQ(m->metadata[0].key, "general.architecture");
        CHECK_STREQ(meta(m, "general.architecture"), "llama");
        CHECK_STREQ(meta(m, "general.name"), "tiny");
        CHECK_STREQ(meta(m, "general.alignment"), "64");
        CHECK_STREQ(meta(m, "llama.embedding_length"), "64");
        CHECK_STREQ(meta(m, "llama.rope.freq_base"), "500000");
        CHECK_STREQ(meta(m, "test.u8"), "200");
        CHECK_STREQ(meta(m, "test.i8"), "-5");
        CHECK_STREQ(meta(m, "test.u16"), "60000");
        CHECK_STREQ(meta(m, "test.i16"), "-30000");
        CHECK_STREQ(meta(m, "test.i32"), "-7");
        CHECK_STREQ(meta(m, "test.i64"), "-1000000000000");
        CHECK_STREQ(meta(m, "test.u64"), "18446744073709551615");
        CHECK_STREQ(meta(m, "test.f64"), "0.10000000000000001");
        CHECK_STREQ(meta(m, "test.bool"), "true");
        CHECK_STREQ(meta(m, "test.false"), "false");
        CHECK_STREQ(meta(m, "test.long_string"), "[string of 5000 bytes]");
        CHECK_STREQ(meta(m, "test.nested"), "[array of 2 ARRAY]");
        CHECK_STREQ(meta(m, "test.empty"), "[array of 0 FLOAT64]");
        CHECK_STREQ(meta(m, "test.empty_string"), "");
        CHECK_STREQ(meta(m, "tokenizer.ggml.tokens"), "[array of 5 STRING]");
        CHECK_STREQ(meta(m, "tokenizer.ggml.scores"), "[array of 5 FLOAT32]");
        CHECK_STREQ(meta(m, "tokenizer.ggml.bos_token_id"), "1");

        /* architecture */
        CHECK_STREQ(m->arch.architecture, "llama");
        CHECK_STREQ(m->arch.model_type, "llama");
        CHECK_EQ(m->arch.hidden_size, 64);
        CHECK_EQ(m->arch.num_layers, 2);
        CHECK_EQ(m->arch.num_heads, 4);
        CHECK_EQ(m->arch.num_kv_heads, 2);
        CHECK_EQ(m->arch.intermediate_size, 128);
        CHECK_EQ(m->arch.vocab_size, 5);        /* no llama.vocab_size: the token count */
        CHECK_EQ(m->arch.max_positions, 256);
        CHECK_EQ(m->arch.head_dim, 16);
        CHECK(m->arch.rope_theta == 500000.0);
        CHECK(m->arch.norm_eps == (double) 1e-6f);
        CHECK_EQ(m->arch.tie_word_embeddings, -1);

        /* tokenizer */
        const mp_tokenizer *tok = m->tokenizer;
        CHECK(tok);
        CHECK_EQ(tok->kind, MP_TOK_GGUF_LLAMA);
        CHECK_STREQ(tok->model_name, "llama");
        CHECK_STREQ(tok->source, "x.gguf");
        CHECK_STREQ(tok->pre_tokenizer, "default");
        CHECK_EQ(tok->n_tokens, 5);
        for (int i = 0; i < 5; i++)
                CHECK_STREQ(tok->tokens[i], vocab[i]);
        CHECK_EQ(tok->n_merges, 1);
        CHECK_STREQ(tok->bos_token, "<s>");
        CHECK_STREQ(tok->eos_token, "</s>");
        CHECK_STREQ(tok->unk_token, "<unk>");
        CHECK(tok->pad_token == NULL);
        mp_model_free(m);

        /* version 2 reads the same */
        free(t.b.p);
        build_tiny(&t, 2);
        m = load_buf(t.b.p, t.b.n, &r, &err);
        CHECK_EQ(r, 0);
        CHECK_EQ(m->n_tensors, 5);
        mp_model_free(m);

        /* through a file source (the buffered reader over pread) */
        char *dir = test_tmpdir();
        char *path = test_write(dir, "tiny.gguf", t.b.p, t.b.n);
        mp_source src;
        CHECK_EQ(mp_source_open(&src, path, "tiny.gguf", &err), 0);
        m = mp_model_new(dir);
        CHECK_EQ(mp_gguf_load(m, 0, &src, &err), 0);
        CHECK_EQ(m->n_tensors, 5);
        CHECK_EQ(m->tokenizer->n_tokens, 5);
        mp_source_close(&src);
        mp_model_free(m);
        free(path);
        free(dir);

        /* every prefix of the file fails cleanly, with an offset inside it */
        for (size_t len = 0; len < t.b.n; len++) {
                m = load_buf(t.b.p, len, &r, &err);
                if (r >= 0 || err.offset < 0 || (uint64_t) err.offset > len || !err.reason[0]) {
                        fprintf(stderr, "prefix %zu: r=%d offset %" PRId64 " %s\n", len, r, err.offset, err.reason);
                        exit(1);
                }
                CHECK_EQ(m->n_tensors, 0);
                mp_model_free(m);
        }
        free(t.b.p);
}

/* What the model knew before (config.json, a tokenizer.json) wins. */
static void test_existing_fields(void) {
        tiny t;
        mp_error err;
        mp_source src;

        build_tiny(&t, 3);
        mp_model *m = mp_model_new("/x");
        CHECK(m);
        m->tokenizer = mp_tokenizer_new(MP_TOK_BPE, "tokenizer.json");
        CHECK(m->tokenizer);
        m->arch.hidden_size = 999;
        CHECK_EQ(mp_arch_set_string(&m->arch.model_type, "custom"), 0);
        mp_source_init_mem(&src, "x.gguf", t.b.p, t.b.n);
        CHECK_EQ(mp_gguf_load(m, 0, &src, &err), 0);
        CHECK_EQ(m->tokenizer->kind, MP_TOK_BPE);
        CHECK_EQ(m->tokenizer->n_tokens, 0);
        CHECK_EQ(m->arch.hidden_size, 999);
        CHECK_STREQ(m->arch.model_type, "custom");
        CHECK_STREQ(m->arch.architecture, "llama");
        CHECK_EQ(m->arch.num_heads, 4);
        CHECK_EQ(m->arch.head_dim, 999 / 4);
        mp_model_free(m);
        free(t.b.p);
}

static void test_minimal_files(void) {
        test_buf b = { 0 };
        mp_error err;
        int r;

        /* header only */
        header(&b, 3, 0, 0);
        mp_model *m = load_buf(b.p, b.n, &r, &err);
        CHECK_EQ(r, 0);
        CHECK_EQ(m->n_tensors, 0);
        CHECK_EQ(m->n_metadata, 0);
        CHECK(!m->tokenizer);
        CHECK(!m->arch.architecture);
        mp_model_free(m);

        /* default alignment 32, no architecture: names pass through; a 0-d
         * tensor is a scalar; gpt2-style kv head default */
        free(b.p);
        b = (test_buf) { 0 };
        header(&b, 3, 2, 2);
        kv_u32(&b, "x.attention.head_count", 8);
        kv_u32(&b, "x.embedding_length", 64);
        tinfo(&b, "blk.0.attn_q.weight", 1, (const uint64_t[]) { 4 }, 0, 0);
        tinfo(&b, "scalar", 0, NULL, 0, 32);
        pad_to(&b, 32);
        size_t ds = b.n;
        for (int i = 0; i < 9; i++)
                put_f32(&b, 0.0f);
        m = load_buf(b.p, b.n, &r, &err);
        CHECK_EQ(r, 0);
        CHECK_EQ(m->n_tensors, 2);
        CHECK_STREQ(m->tensors[0].name, "blk.0.attn_q.weight");
        CHECK_EQ(m->tensors[0].flags, 0);
        CHECK_EQ(m->tensors[0].offset, ds);
        CHECK_EQ(m->tensors[1].n_dims, 0);
        CHECK_EQ(m->tensors[1].n_elements, 1);
        CHECK_EQ(m->tensors[1].length, 4);
        CHECK_EQ(m->tensors[1].offset, ds + 32);
        CHECK(!m->arch.architecture);
        CHECK_EQ(m->arch.hidden_size, 0);      /* no arch, no <arch>.* keys */
        mp_model_free(m);
        free(b.p);

        /* a tokenizer without tokenizer.ggml.model is "other"; gpt2 kind;
         * merges count */
        b = (test_buf) { 0 };
        header(&b, 3, 0, 4);
        kv_str(&b, "general.architecture", "gpt2");
        kv_str(&b, "tokenizer.ggml.model", "gpt2");
        kv_str_array(&b, "tokenizer.ggml.tokens", vocab, 3);
        static const char *const mg[] = { "a b", "b c", "ab c" };
        kv_str_array(&b, "tokenizer.ggml.merges", mg, 3);
        m = load_buf(b.p, b.n, &r, &err);
        CHECK_EQ(r, 0);
        CHECK_EQ(m->tokenizer->kind, MP_TOK_GGUF_GPT2);
        CHECK_EQ(m->tokenizer->n_merges, 3);
        CHECK_EQ(m->arch.vocab_size, 3);
        CHECK_STREQ(m->arch.model_type, "gpt2");
        mp_model_free(m);
        free(b.p);

        b = (test_buf) { 0 };
        header(&b, 3, 0, 2);
        kv_str(&b, "tokenizer.ggml.model", "bert");
        kv_str_array(&b, "tokenizer.ggml.tokens", vocab, 2);
        m = load_buf(b.p, b.n, &r, &err);
        CHECK_EQ(r, 0);
        CHECK_EQ(m->tokenizer->kind, MP_TOK_GGUF_OTHER);
        CHECK_STREQ(m->tokenizer->model_name, "bert");
        mp_model_free(m);
        free(b.p);

        /* a token with a NUL keeps the part before it */
        b = (test_buf) { 0 };
        header(&b, 3, 0, 1);
        put_str(&b, "tokenizer.ggml.tokens"); put_u32(&b, T_ARR); put_u32(&b, T_STR); put_u64(&b, 2);
        put_str(&b, "x");
        put_strn(&b, "ab\0c", 4);
        m = load_buf(b.p, b.n, &r, &err);
        CHECK_EQ(r, 0);
        CHECK_EQ(m->tokenizer->kind, MP_TOK_GGUF_OTHER);
        CHECK_STREQ(m->tokenizer->tokens[1], "ab");
        mp_model_free(m);
        free(b.p);
}

/* ---- malformed files ---------------------------------------------------------- */

static void test_bad_header(void) {
        test_buf b = { 0 };

        put(&b, "GGUG", 4); put_u32(&b, 3); put_u64(&b, 0); put_u64(&b, 0);
        EXPECT_FAIL(&b, -EBADMSG, 0, "magic");
        free(b.p);

        b = (test_buf) { 0 };
        put(&b, "GG", 2);
        EXPECT_FAIL(&b, -EBADMSG, 0, "truncated");
        free(b.p);

        b = (test_buf) { 0 };
        put(&b, "GGUF", 4); put_u16(&b, 3);
        EXPECT_FAIL(&b, -EBADMSG, 4, "truncated");
        free(b.p);

        static const uint32_t versions[] = { 0, 1, 4, 99, 0x03000000u, UINT32_MAX };
        for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
                b = (test_buf) { 0 };
                header(&b, versions[i], 0, 0);
                EXPECT_FAIL(&b, -ENOTSUP, 4, NULL);
                free(b.p);
        }
        b = (test_buf) { 0 };
        header(&b, 1, 0, 0);
        EXPECT_FAIL(&b, -ENOTSUP, 4, "version 1");
        free(b.p);

        b = (test_buf) { 0 };
        header(&b, 3, 0, 0);
        b.n -= 3;
        EXPECT_FAIL(&b, -EBADMSG, 16, "truncated");
        free(b.p);

        b = (test_buf) { 0 };
        header(&b, 3, UINT64_C(1) << 60, 0);
        EXPECT_FAIL(&b, -E2BIG, 8, "tensor count");
        free(b.p);

        b = (test_buf) { 0 };
        header(&b, 3, MP_GGUF_MAX_TENSORS + 1, 0);
        EXPECT_FAIL(&b, -E2BIG, 8, NULL);
        free(b.p);

        /* within the limit but more than the file could describe */
        b = (test_buf) { 0 };
        header(&b, 3, 100, 0);
        for (int i = 0; i < 100; i++)
                put_u8(&b, 0);
        EXPECT_FAIL(&b, -E2BIG, 8, NULL);
        free(b.p);

        b = (test_buf) { 0 };
        header(&b, 3, 0, UINT64_C(1) << 60);
        EXPECT_FAIL(&b, -E2BIG, 16, "metadata count");
        free(b.p);

        b = (test_buf) { 0 };
        header(&b, 3, 0, 10);
        kv_u32(&b, "a", 1);
        EXPECT_FAIL(&b, -E2BIG, 16, NULL);
        free(b.p);
}

static void test_bad_kv(void) {
        test_buf b = { 0 };
        size_t at;

        /* key length past the end of the file */
        header(&b, 3, 0, 1);
        put_u64(&b, 1000); put(&b, "abc", 3); put_u32(&b, 0); put_u8(&b, 0);
        EXPECT_FAIL(&b, -E2BIG, 24, "past the end");
        free(b.p);

        /* key length above the name limit */
        b = (test_buf) { 0 };
        header(&b, 3, 0, 1);
        put_u64(&b, UINT64_C(1) << 40);
        for (int i = 0; i < 16; i++)
                put_u8(&b, 'a');
        EXPECT_FAIL(&b, -E2BIG, 24, "limit");
        free(b.p);

        /* key with a NUL */
        b = (test_buf) { 0 };
        header(&b, 3, 0, 1);
        put_strn(&b, "a\0b", 3); put_u32(&b, T_U8); put_u8(&b, 1);
        EXPECT_FAIL(&b, -EBADMSG, 24, "NUL");
        free(b.p);

        /* unknown value type */
        b = (test_buf) { 0 };
        header(&b, 3, 0, 1);
        put_str(&b, "k"); at = b.n; put_u32(&b, 13); put_u32(&b, 0);
        EXPECT_FAIL(&b, -EBADMSG, at, "unknown value type");
        free(b.p);

        /* truncated scalar value */
        b = (test_buf) { 0 };
        header(&b, 3, 0, 1);
        put_str(&b, "k"); put_u32(&b, T_U64); at = b.n; put_u32(&b, 0);
        EXPECT_FAIL(&b, -EBADMSG, at, "truncated");
        free(b.p);

        /* string value past the end */
        b = (test_buf) { 0 };
        header(&b, 3, 0, 1);
        put_str(&b, "k"); put_u32(&b, T_STR); at = b.n; put_u64(&b, 100); put(&b, "abc", 3);
        EXPECT_FAIL(&b, -E2BIG, at, "past the end");
        free(b.p);

        /* string value above MP_GGUF_MAX_STRING */
        b = (test_buf) { 0 };
        header(&b, 3, 0, 1);
        put_str(&b, "k"); put_u32(&b, T_STR); at = b.n; put_u64(&b, MP_GGUF_MAX_STRING + 1ull); put(&b, "abc", 3);
        EXPECT_FAIL(&b, -E2BIG, at, "limit");
        free(b.p);

        /* array count above the limit */
        b = (test_buf) { 0 };
        header(&b, 3, 0, 1);
        put_str(&b, "k"); put_u32(&b, T_ARR); put_u32(&b, T_U32); at = b.n; put_u64(&b, UINT64_C(1) << 40);
        put_u32(&b, 0);
        EXPECT_FAIL(&b, -E2BIG, at, "limit");
        free(b.p);

        /* array count within the limit, beyond the bytes left: 1M u32 */
        b = (test_buf) { 0 };
        header(&b, 3, 0, 1);
        put_str(&b, "k"); put_u32(&b, T_ARR); put_u32(&b, T_U32); at = b.n; put_u64(&b, 1u << 20);
        for (int i = 0; i < 100; i++)
                put_u32(&b, 0);
        EXPECT_FAIL(&b, -E2BIG, at, "left");
        free(b.p);

        /* array of strings: 1M elements need at least 8 MiB */
        b = (test_buf) { 0 };
        header(&b, 3, 0, 1);
        put_str(&b, "k"); put_u32(&b, T_ARR); put_u32(&b, T_STR); at = b.n; put_u64(&b, 1u << 20);
        put_str(&b, "x");
        EXPECT_FAIL(&b, -E2BIG, at, NULL);
        free(b.p);

        /* array element string past the end */
        b = (test_buf) { 0 };
        header(&b, 3, 0, 1);
        put_str(&b, "k"); put_u32(&b, T_ARR); put_u32(&b, T_STR); put_u64(&b, 2);
        put_str(&b, "x"); at = b.n; put_u64(&b, 50); put_u64(&b, 0);
        EXPECT_FAIL(&b, -E2BIG, at, "past the end");
        free(b.p);

        /* unknown array element type */
        b = (test_buf) { 0 };
        header(&b, 3, 0, 1);
        put_str(&b, "k"); put_u32(&b, T_ARR); at = b.n; put_u32(&b, 77); put_u64(&b, 0);
        EXPECT_FAIL(&b, -EBADMSG, at, "element type");
        free(b.p);

        /* nesting: depth MP_GGUF_MAX_DEPTH is fine, one more is not */
        for (int depth = MP_GGUF_MAX_DEPTH; depth <= MP_GGUF_MAX_DEPTH + 1; depth++) {
                b = (test_buf) { 0 };
                header(&b, 3, 0, 1);
                put_str(&b, "k"); put_u32(&b, T_ARR);
                for (int d = 1; d < depth; d++) {
                        put_u32(&b, T_ARR);
                        put_u64(&b, 1);
                }
                at = b.n;
                put_u32(&b, T_U8); put_u64(&b, 1); put_u8(&b, 5);
                if (depth == MP_GGUF_MAX_DEPTH) {
                        mp_error err;
                        int r;
                        mp_model *m = load_buf(b.p, b.n, &r, &err);
                        CHECK_EQ(r, 0);
                        CHECK_STREQ(meta(m, "k"), "[array of 1 ARRAY]");
                        mp_model_free(m);
                } else
                        EXPECT_FAIL(&b, -EBADMSG, at, "nested");
                free(b.p);
        }

        /* duplicate key: reported at the second one */
        b = (test_buf) { 0 };
        header(&b, 3, 0, 3);
        kv_u32(&b, "a", 1);
        kv_u32(&b, "b", 1);
        at = b.n;
        kv_str(&b, "a", "again");
        EXPECT_FAIL(&b, -EBADMSG, at, "duplicate key");
        free(b.p);

        /* alignment: zero, not a power of two, wrong type */
        static const uint32_t bad_align[] = { 0, 3, 48, 0x80000001u };
        for (size_t i = 0; i < sizeof(bad_align) / sizeof(bad_align[0]); i++) {
                b = (test_buf) { 0 };
                header(&b, 3, 0, 1);
                put_str(&b, "general.alignment"); put_u32(&b, T_U32); at = b.n; put_u32(&b, bad_align[i]);
                EXPECT_FAIL(&b, -EBADMSG, at, "alignment");
                free(b.p);
        }
        b = (test_buf) { 0 };
        header(&b, 3, 0, 1);
        put_str(&b, "general.alignment"); put_u32(&b, T_STR); at = b.n; put_str(&b, "32");
        EXPECT_FAIL(&b, -EBADMSG, at, "alignment");
        free(b.p);

        /* vocabulary token longer than the tokenizer limit */
        b = (test_buf) { 0 };
        header(&b, 3, 0, 1);
        put_str(&b, "tokenizer.ggml.tokens"); put_u32(&b, T_ARR); put_u32(&b, T_STR); put_u64(&b, 2);
        put_str(&b, "ok");
        at = b.n;
        {
                char *s = calloc(1, MP_TOKENIZER_MAX_TOKEN_LEN + 1);
                CHECK(s);
                memset(s, 'y', MP_TOKENIZER_MAX_TOKEN_LEN + 1);
                put_strn(&b, s, MP_TOKENIZER_MAX_TOKEN_LEN + 1);
                free(s);
        }
        EXPECT_FAIL(&b, -E2BIG, at, "limit");
        free(b.p);
}

/* One tensor info after an optional alignment kv, then data. */
static void one_tensor(test_buf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                       uint64_t rel, size_t data_bytes, size_t *ndims_at, size_t *ne_at, size_t *type_at,
                       size_t *off_at) {
        header(b, 3, 1, 0);
        put_str(b, name);
        *ndims_at = b->n;
        put_u32(b, n_dims);
        *ne_at = b->n;
        for (uint32_t d = 0; d < n_dims; d++)
                put_u64(b, ne[d]);
        *type_at = b->n;
        put_u32(b, type);
        *off_at = b->n;
        put_u64(b, rel);
        pad_to(b, 32);
        for (size_t i = 0; i < data_bytes; i++)
                put_u8(b, 0);
}

/* Which field of a tensor info an error is expected at. */
typedef enum tinfo_field {
        TI_NAME,
        TI_NDIMS,
        TI_NE,
        TI_TYPE,
        TI_OFFSET,
} tinfo_field;

/* A file with one bad tensor info (see one_tensor()), and its error at a
 * field of that info. */
typedef struct one_tensor_case {
        int line;
        uint32_t n_dims;
        uint64_t ne[9];
        uint32_t type;
        uint64_t rel;
        size_t data_bytes;
        int code;
        tinfo_field field;
        size_t delta;
        const char *reason;
} one_tensor_case;

static const one_tensor_case bad_one_tensor[] = {
        /* n_dims 9 */
        { __LINE__, 9, { 1, 1, 1, 1, 1, 1, 1, 1, 1 }, 0, 0, 64, -EBADMSG, TI_NDIMS, 0, "dimensions" },
        /* ne product overflows at the third dimension */
        { __LINE__, 3, { 1u << 31, 1u << 31, 1u << 31 }, 0, 0, 64, -EOVERFLOW, TI_NE, 16, "overflow" },
        /* 2^63 elements fit, their F32 byte size does not */
        { __LINE__, 3, { UINT64_C(1) << 31, UINT64_C(1) << 31, 2 }, 0, 0, 64, -EOVERFLOW, TI_TYPE, 0, "byte size" },
        /* huge but representable (2^62 F16 = 2^63 bytes): outside the file */
        { __LINE__, 2, { UINT64_C(1) << 31, UINT64_C(1) << 31 }, 1, 0, 64, -EBADMSG, TI_OFFSET, 0, "outside" },
        /* unknown / unsupported ggml types */
        { __LINE__, 1, { 256 }, 4, 0, 1024, -ENOTSUP, TI_TYPE, 0, "ggml type" },
        { __LINE__, 1, { 256 }, 31, 0, 1024, -ENOTSUP, TI_TYPE, 0, "ggml type" },
        { __LINE__, 1, { 256 }, 1000, 0, 1024, -ENOTSUP, TI_TYPE, 0, "ggml type" },
        /* Q8_0 row of 33 elements */
        { __LINE__, 2, { 33, 32 }, 8, 0, 2048, -EBADMSG, TI_NE, 0, "block size" },
        /* 0-d quantized tensor: one element is not a block */
        { __LINE__, 0, { 0 }, 12, 0, 256, -EBADMSG, TI_TYPE, 0, "block size" },
        /* data offset outside the file, and past the end by one byte */
        { __LINE__, 1, { 4 }, 0, UINT64_C(1) << 62, 16, -EBADMSG, TI_OFFSET, 0, "outside" },
        { __LINE__, 1, { 4 }, 0, 0, 15, -EBADMSG, TI_OFFSET, 0, "outside" },
        { __LINE__, 1, { 4 }, 0, UINT64_MAX - 31, 16, -EBADMSG, TI_OFFSET, 0, NULL },
        /* misaligned data offset */
        { __LINE__, 1, { 4 }, 0, 16, 64, -EBADMSG, TI_OFFSET, 0, "alignment" },
};

/* Files with up to three 1-d F32 tensors (and an architecture when arch is
 * set) whose ranges or names clash; the error is at the name or at the
 * offset field of tensor info `bad`. */
typedef struct tensor_set_case {
        int line;
        const char *arch;
        size_t n;
        struct { const char *name; uint64_t ne0, rel; } t[3];
        size_t data_bytes;
        size_t bad;
        tinfo_field field;
        const char *reason;
} tensor_set_case;

static const tensor_set_case bad_tensor_sets[] = {
        /* overlapping tensors: b starts inside a; reported at b's offset */
        { __LINE__, NULL, 3, { { "a", 16, 0 }, { "c", 8, 128 }, { "b", 16, 32 } }, 256,
          2, TI_OFFSET, "overlaps" },
        /* b lies inside a, which is not its neighbour in info order:
         * a [0, 512), s [512, 516), b [64, 80) */
        { __LINE__, NULL, 3, { { "a", 128, 0 }, { "s", 1, 512 }, { "b", 4, 64 } }, 1024,
          2, TI_OFFSET, "overlaps" },
        /* identical ranges */
        { __LINE__, NULL, 2, { { "a", 8, 0 }, { "b", 8, 0 } }, 64,
          1, TI_OFFSET, "overlaps" },
        /* duplicate tensor names, and two names mapping to one HF name */
        { __LINE__, NULL, 2, { { "w", 8, 0 }, { "w", 8, 32 } }, 64,
          1, TI_NAME, "duplicate tensor" },
        { __LINE__, "llama", 2, { { "token_embd.weight", 8, 0 }, { "model.embed_tokens.weight", 8, 32 } }, 64,
          1, TI_NAME, "both map" },
};

static void test_bad_tensors(void) {
        test_buf b = { 0 };
        size_t nd, ne, ty, off;

        for (size_t i = 0; i < sizeof(bad_one_tensor) / sizeof(bad_one_tensor[0]); i++) {
                const one_tensor_case *c = &bad_one_tensor[i];

                b = (test_buf) { 0 };
                one_tensor(&b, "t", c->n_dims, c->ne, c->type, c->rel, c->data_bytes, &nd, &ne, &ty, &off);
                size_t at = c->field == TI_NDIMS ? nd : c->field == TI_NE ? ne : c->field == TI_TYPE ? ty : off;
                CHECK(c->field != TI_NAME);
                expect_fail_at(&b, c->code, (int64_t) (at + c->delta), c->reason, c->line);
                free(b.p);
        }

        for (size_t i = 0; i < sizeof(bad_tensor_sets) / sizeof(bad_tensor_sets[0]); i++) {
                const tensor_set_case *c = &bad_tensor_sets[i];
                size_t name_at[3], off_at[3];

                b = (test_buf) { 0 };
                header(&b, 3, c->n, c->arch ? 1 : 0);
                if (c->arch)
                        kv_str(&b, "general.architecture", c->arch);
                for (size_t k = 0; k < c->n; k++) {
                        name_at[k] = b.n;
                        off_at[k] = tinfo(&b, c->t[k].name, 1, &c->t[k].ne0, 0, c->t[k].rel);
                }
                pad_to(&b, 32);
                for (size_t k = 0; k < c->data_bytes; k++)
                        put_u8(&b, 0);
                CHECK(c->field == TI_NAME || c->field == TI_OFFSET);
                expect_fail_at(&b, -EBADMSG,
                               (int64_t) (c->field == TI_NAME ? name_at[c->bad] : off_at[c->bad]),
                               c->reason, c->line);
                free(b.p);
        }

        /* 8 dimensions are fine */
        static const uint64_t ones[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
        b = (test_buf) { 0 };
        one_tensor(&b, "t", 8, ones, 0, 0, 4, &nd, &ne, &ty, &off);
        {
                mp_error err;
                int r;
                mp_model *m = load_buf(b.p, b.n, &r, &err);
                CHECK_EQ(r, 0);
                CHECK_EQ(m->tensors[0].n_dims, 8);
                mp_model_free(m);
        }
        free(b.p);

        /* truncated tensor info: ne[1] cut short */
        b = (test_buf) { 0 };
        header(&b, 3, 1, 0);
        put_str(&b, "t"); put_u32(&b, 2); put_u64(&b, 4);
        size_t at = b.n;
        put_u32(&b, 7);
        EXPECT_FAIL(&b, -EBADMSG, at, "truncated");
        free(b.p);

        /* tensor name with a NUL */
        b = (test_buf) { 0 };
        header(&b, 3, 1, 0);
        at = b.n;
        put_strn(&b, "a\0", 2); put_u32(&b, 1); put_u64(&b, 1); put_u32(&b, 0); put_u64(&b, 0);
        pad_to(&b, 32);
        put_u32(&b, 0);
        EXPECT_FAIL(&b, -EBADMSG, at, "NUL");
        free(b.p);
}

/* ---- the zoo -------------------------------------------------------------------- */

typedef struct st_tensor {
        char *name;
        uint64_t shape[MP_MAX_DIMS];
        size_t n_dims;
        uint64_t begin, end;    /* absolute */
} st_tensor;

/* Reads a safetensors header with jansson (test-only, trusted zoo file). */
static st_tensor *read_safetensors(const char *path, size_t *ret_n) {
        size_t len;
        char *file = test_read(path, &len);
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--)
                hlen = (hlen << 8) | (uint8_t) file[i];
        json_error_t jerr;
        json_t *h = json_loadb(file + 8, (size_t) hlen, 0, &jerr);
        CHECK(h);
        st_tensor *v = calloc(json_object_size(h), sizeof(*v));
        size_t n = 0;
        const char *key;
        json_t *val;
        json_object_foreach(h, key, val) {
                if (strcmp(key, "__metadata__") == 0)
                        continue;
                v[n].name = strdup(key);
                json_t *shape = json_object_get(val, "shape");
                v[n].n_dims = json_array_size(shape);
                for (size_t d = 0; d < v[n].n_dims; d++)
                        v[n].shape[d] = (uint64_t) json_integer_value(json_array_get(shape, d));
                json_t *offs = json_object_get(val, "data_offsets");
                v[n].begin = 8 + hlen + (uint64_t) json_integer_value(json_array_get(offs, 0));
                v[n].end = 8 + hlen + (uint64_t) json_integer_value(json_array_get(offs, 1));
                n++;
        }
        json_decref(h);
        free(file);
        *ret_n = n;
        return v;
}

static void free_safetensors(st_tensor *v, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(v[i].name);
        free(v);
}

static mp_model *load_path(const char *path) {
        mp_source src;
        mp_error err;
        mp_model *m = mp_model_new(path);

        CHECK(m);
        if (mp_source_open(&src, path, path, &err) < 0 || mp_gguf_load(m, 0, &src, &err) < 0) {
                fprintf(stderr, "%s: %s at %" PRId64 "\n", path, err.reason, err.offset);
                exit(1);
        }
        mp_source_close(&src);
        return m;
}

/* The single .gguf in a zoo folder. */
static char *zoo_gguf(const char *zoo, const char *folder) {
        char *dir = test_path(zoo, folder), *found = NULL;
        DIR *d = opendir(dir);
        struct dirent *de;

        CHECK(d);
        while ((de = readdir(d)))
                if (strstr(de->d_name, ".gguf")) {
                        CHECK(!found);
                        CHECK(asprintf(&found, "%s/%s", dir, de->d_name) > 0);
                }
        closedir(d);
        free(dir);
        CHECK(found);
        return found;
}

static char *read_range(const char *path, uint64_t off, uint64_t len) {
        mp_source src;
        mp_error err;
        char *p = malloc((size_t) len + 1);
        CHECK(p);
        CHECK_EQ(mp_source_open(&src, path, path, &err), 0);
        CHECK_EQ(mp_source_pread(&src, p, (size_t) len, off, &err), 0);
        mp_source_close(&src);
        return p;
}

static int cmp_rows_len;
static int cmp_rows(const void *a, const void *b) {
        return memcmp(a, b, (size_t) cmp_rows_len);
}

/* The same rows in any order: the RoPE permutation of llama.cpp only
 * reorders rows inside each head. */
static bool same_rows(char *a, char *b, size_t n_rows, size_t row_bytes) {
        cmp_rows_len = (int) row_bytes;
        qsort(a, n_rows, row_bytes, cmp_rows);
        qsort(b, n_rows, row_bytes, cmp_rows);
        return memcmp(a, b, n_rows * row_bytes) == 0;
}

static void compare_with_safetensors(const char *zoo, const char *gguf_folder, const char *st_rel, bool gpt2) {
        char *gpath = zoo_gguf(zoo, gguf_folder), *spath = test_path(zoo, st_rel);
        mp_model *m = load_path(gpath);
        size_t n_st;
        st_tensor *st = read_safetensors(spath, &n_st);
        size_t matched = 0, permuted = 0, transposed = 0;

        for (size_t i = 0; i < m->n_tensors; i++) {
                const mp_tensor *t = &m->tensors[i];
                const st_tensor *s = NULL;
                for (size_t j = 0; j < n_st; j++)
                        if (strcmp(st[j].name, t->name) == 0)
                                s = &st[j];
                if (!s) {
                        /* gpt2 GGUFs carry the tied head as output.weight */
                        if (!(gpt2 && strcmp(t->name, "lm_head.weight") == 0)) {
                                fprintf(stderr, "%s: %s (%s) not in the safetensors file\n", gpath, t->name,
                                        t->source_name);
                                exit(1);
                        }
                        continue;
                }
                matched++;
                CHECK_EQ(t->n_dims, s->n_dims);
                bool tr = (t->flags & MP_TENSOR_TRANSPOSED) != 0;
                for (size_t d = 0; d < s->n_dims; d++)
                        CHECK_EQ(t->shape[d], tr ? s->shape[s->n_dims - 1 - d] : s->shape[d]);
                if (tr) {
                        transposed++;
                        CHECK_EQ(t->n_dims, 2);
                }
                if (t->dtype != MP_DTYPE_F16)
                        continue;
                /* F16 GGUF data against the F16 safetensors data */
                CHECK_EQ(t->length, s->end - s->begin);
                char *a = read_range(gpath, t->offset, t->length), *b = read_range(spath, s->begin, t->length);
                if (t->flags & MP_TENSOR_ROPE_PERMUTED) {
                        permuted++;
                        size_t row = (size_t) t->shape[1] * 2;
                        CHECK(memcmp(a, b, (size_t) t->length) != 0);
                        CHECK(same_rows(a, b, (size_t) t->shape[0], row));
                } else if (tr) {
                        /* GGUF [out][in] against Conv1D [in][out] */
                        const uint16_t *ga = (const uint16_t *) a, *sb = (const uint16_t *) b;
                        for (uint64_t r = 0; r < t->shape[0]; r++)
                                for (uint64_t c = 0; c < t->shape[1]; c++)
                                        CHECK(ga[r * t->shape[1] + c] == sb[c * t->shape[0] + r]);
                } else
                        CHECK(memcmp(a, b, (size_t) t->length) == 0);
                free(a);
                free(b);
        }
        CHECK_EQ(matched, n_st);        /* and every safetensors tensor has a GGUF twin */
        if (gpt2) {
                CHECK_EQ(m->n_tensors, n_st + 1);
                CHECK_EQ(transposed, 16);       /* 4 layers x c_attn, c_proj, c_fc, mlp.c_proj */
                CHECK_EQ(permuted, 0);
        } else {
                CHECK_EQ(m->n_tensors, n_st);
                CHECK_EQ(permuted, 8);          /* 4 layers x q, k */
                CHECK_EQ(transposed, 0);
        }
        fprintf(stderr, "  %s: %zu tensors match %s\n", gguf_folder, matched, st_rel);
        free_safetensors(st, n_st);
        mp_model_free(m);
        free(gpath);
        free(spath);
}

static const char *zoo_root;

static void test_zoo_names(void) {
        compare_with_safetensors(zoo_root, "llama/base-1-gguf-f16", "llama/base-1/model.safetensors", false);
        compare_with_safetensors(zoo_root, "gpt2/base-1-gguf-f16", "gpt2/base-1/model.safetensors", true);
}

static void test_zoo_metadata(void) {
        char *p = zoo_gguf(zoo_root, "llama/base-1-gguf-f16");
        mp_model *m = load_path(p);
        CHECK_STREQ(m->arch.architecture, "llama");
        CHECK_STREQ(m->arch.model_type, "llama");
        CHECK_EQ(m->arch.hidden_size, 128);
        CHECK_EQ(m->arch.num_layers, 4);
        CHECK_EQ(m->arch.num_heads, 4);
        CHECK_EQ(m->arch.num_kv_heads, 2);
        CHECK_EQ(m->arch.intermediate_size, 256);
        CHECK_EQ(m->arch.vocab_size, 4000);
        CHECK_EQ(m->arch.max_positions, 128);
        CHECK_EQ(m->arch.head_dim, 32);
        CHECK(m->arch.rope_theta == 10000.0);
        CHECK(fabs(m->arch.norm_eps - 1e-5) < 1e-9);
        CHECK_STREQ(meta(m, "general.name"), "dev-llama-base-1");
        CHECK_EQ(m->tokenizer->kind, MP_TOK_GGUF_LLAMA);
        CHECK_EQ(m->tokenizer->n_tokens, 4000);
        CHECK_STREQ(m->tokenizer->bos_token, "<s>");
        CHECK_STREQ(m->tokenizer->eos_token, "</s>");
        CHECK_STREQ(m->tokenizer->unk_token, "<unk>");
        CHECK_STREQ(m->tokenizer->tokens[3], "<0x00>");
        mp_model_free(m);
        free(p);

        p = zoo_gguf(zoo_root, "gpt2/base-1-q4_0");
        m = load_path(p);
        CHECK_STREQ(m->arch.architecture, "gpt2");
        CHECK_EQ(m->arch.hidden_size, 128);
        CHECK_EQ(m->arch.num_heads, 4);
        CHECK_EQ(m->arch.num_kv_heads, 4);
        CHECK_EQ(m->arch.intermediate_size, 512);
        CHECK_EQ(m->arch.vocab_size, 2837);
        CHECK_EQ(m->tokenizer->kind, MP_TOK_GGUF_GPT2);
        CHECK_EQ(m->tokenizer->n_tokens, 2837);
        CHECK_EQ(m->tokenizer->n_merges, 3801);
        CHECK_STREQ(m->tokenizer->tokens[0], "\xc4\x80");     /* "Ā": byte 0 in GPT-2's mapping */
        CHECK(m->tokenizer->bos_token && strcmp(m->tokenizer->bos_token, m->tokenizer->eos_token) == 0);
        CHECK_EQ(test_find_tensor(m, "transformer.h.0.attn.c_attn.weight")->dtype, MP_DTYPE_Q4_0);
        CHECK_EQ(test_find_tensor(m, "transformer.h.0.attn.c_attn.bias")->dtype, MP_DTYPE_F32);
        mp_model_free(m);
        free(p);

        /* every GGUF of the zoo loads */
        static const char *const folders[] = {
                "llama/base-1-gguf-f16", "llama/base-1-q8_0", "llama/base-1-q4_0", "llama/sft-light-q4_0",
                "gpt2/base-1-gguf-f16", "gpt2/base-1-q8_0", "gpt2/base-1-q4_0", "gpt2/sft-light-q4_0",
        };
        for (size_t i = 0; i < sizeof(folders) / sizeof(folders[0]); i++) {
                p = zoo_gguf(zoo_root, folders[i]);
                m = load_path(p);
                CHECK(m->n_tensors == 39 || m->n_tensors == 53);
                CHECK(m->tokenizer);
                mp_model_free(m);
                free(p);
        }
}

/* Dequantized Q8_0 / Q4_0 token embeddings against the F16 original: the
 * error per element is bounded by the block's scale d: half a step for Q8_0
 * (round to nearest), a full step for Q4_0 (whose largest-magnitude value
 * is clamped at 7 instead of 8), plus the rounding of d itself to f16 (the
 * ggml quantizers compute q with the unrounded d; |q| <= 128). */
static void check_quantized_embedding(const char *zoo, const char *folder, mp_dtype t, double steps) {
        char *fp = zoo_gguf(zoo, "llama/base-1-gguf-f16"), *qp = zoo_gguf(zoo, folder);
        mp_model *fm = load_path(fp), *qm = load_path(qp);
        const mp_tensor *ft = test_find_tensor(fm, "model.embed_tokens.weight"), *qt = test_find_tensor(qm, "model.embed_tokens.weight");
        const mp_dtype_info *info = mp_dtype_get(t);

        CHECK(ft && qt);
        CHECK_EQ(ft->dtype, MP_DTYPE_F16);
        CHECK_EQ(qt->dtype, t);
        CHECK_EQ(qt->n_elements, ft->n_elements);
        CHECK_EQ(qt->shape[0], 4000);
        CHECK_EQ(qt->shape[1], 128);

        char *fraw = read_range(fp, ft->offset, ft->length), *qraw = read_range(qp, qt->offset, qt->length);
        size_t n = (size_t) ft->n_elements, nb = n / 32;
        float *f = malloc(n * sizeof(float)), *q = malloc(n * sizeof(float));
        CHECK(f && q);
        CHECK_EQ(mp_dtype_to_f32(MP_DTYPE_F16, fraw, n, f), 0);
        CHECK_EQ(mp_dtype_to_f32(t, qraw, nb, q), 0);

        double worst = 0;
        size_t exact = 0;
        for (size_t k = 0; k < nb; k++) {
                const uint8_t *blk = (const uint8_t *) qraw + k * info->block_bytes;
                double d = fabs((double) rd_f16(blk));
                double bound = d * steps + 128.0 * d * 0x1p-11 + 1e-12;
                for (size_t j = 0; j < 32; j++) {
                        double e = fabs((double) q[k * 32 + j] - (double) f[k * 32 + j]);
                        if (e > bound) {
                                fprintf(stderr, "%s block %zu elem %zu: |%g - %g| = %g > %g (d = %g)\n", folder, k, j,
                                        q[k * 32 + j], f[k * 32 + j], e, bound, d);
                                exit(1);
                        }
                        if (d > 0 && e / d > worst)
                                worst = e / d;
                        exact += e == 0;
                }
        }
        fprintf(stderr, "  %s: %zu blocks, max error %.4f d, %zu exact elements\n", folder, nb, worst, exact);
        /* the bound is not vacuous: the errors use most of it */
        CHECK(worst > steps * 0.9);
        free(f);
        free(q);
        free(fraw);
        free(qraw);
        mp_model_free(fm);
        mp_model_free(qm);
        free(fp);
        free(qp);
}

static void test_zoo_dequant(void) {
        check_quantized_embedding(zoo_root, "llama/base-1-q8_0", MP_DTYPE_Q8_0, 0.5);
        check_quantized_embedding(zoo_root, "llama/base-1-q4_0", MP_DTYPE_Q4_0, 1.0);
}

/* ---- fuzz regressions ---------------------------------------------------------- */

static void test_regressions(void) {
        const char *root = getenv("MODELPROV_SOURCE_ROOT");
        char *dir = NULL;
        size_t n = 0;

        if (!root) {
                fprintf(stderr, "MODELPROV_SOURCE_ROOT unset: regressions skipped\n");
                return;
        }
        CHECK(asprintf(&dir, "%s/tests/fuzz/regressions/gguf", root) > 0);
        DIR *d = opendir(dir);
        if (!d) {
                fprintf(stderr, "%s: no regression inputs\n", dir);
                free(dir);
                return;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                char *p = NULL;
                size_t len;
                CHECK(asprintf(&p, "%s/%s", dir, de->d_name) > 0);
                char *data = test_read(p, &len);
                mp_error err;
                int r;
                mp_model *m = load_buf(data, len, &r, &err);
                if (r < 0)
                        CHECK(err.code == r && err.reason[0] && err.offset <= (int64_t) len);
                /* dequantize what loaded, as the fuzzer does */
                for (size_t i = 0; r >= 0 && i < m->n_tensors; i++) {
                        const mp_tensor *t = &m->tensors[i];
                        const mp_dtype_info *info = mp_dtype_get(t->dtype);
                        if (t->n_elements > 1u << 20)
                                continue;
                        float *out = malloc((size_t) t->n_elements * sizeof(float) + 1);
                        CHECK(out);
                        if (!info->to_f32) {    /* listed and hashed only (IQ*, TQ*, MXFP4) */
                                CHECK_EQ(mp_dtype_to_f32(t->dtype, data + t->offset, 1, out), -ENOTSUP);
                                free(out);
                                continue;
                        }
                        CHECK_EQ(mp_dtype_to_f32(t->dtype, data + t->offset, (size_t) (t->n_elements / info->block_elems),
                                                 out), 0);
                        free(out);
                }
                mp_model_free(m);
                free(data);
                free(p);
                n++;
        }
        closedir(d);
        fprintf(stderr, "  %zu regression inputs replayed\n", n);
        free(dir);
}

int main(void) {
        RUN(test_type_ids);
        RUN(test_names);
        RUN(test_dequant_q4_q5);
        RUN(test_dequant_q8);
        RUN(test_dequant_kquants);
        RUN(test_dequant_kquants_by_hand);
        RUN(test_valid_file);
        RUN(test_existing_fields);
        RUN(test_minimal_files);
        RUN(test_bad_header);
        RUN(test_bad_kv);
        RUN(test_bad_tensors);
        RUN(test_regressions);

        zoo_root = test_zoo();
        if (!zoo_root) {
                fprintf(stderr, "zoo part skipped\n");
                return 0;
        }
        RUN(test_zoo_names);
        RUN(test_zoo_metadata);
        RUN(test_zoo_dequant);
        return 0;
}
