/* test_core.c - the lib core: errors, bounded sources, dtypes, the model
 * record builders, tensor validation, the tokenizer record, file names. */
#include <errno.h>
#include <math.h>
#include <stdint.h>

#include "formats/dtype.h"
#include "formats/model.h"
#include "formats/tokenizer.h"
#include "test.h"
#include "util/strutil.h"
#include "util/arena.h"
#include "util/source.h"

static void test_error_format(void) {
        mp_error e;
        char buf[256];

        mp_error_clear(&e);
        CHECK_EQ(e.offset, -1);
        CHECK_EQ(mp_error_set(&e, -EBADMSG, "a.bin", 42, "bad %s", "thing"), -EBADMSG);
        mp_error_format(&e, buf, sizeof(buf));
        CHECK_STREQ(buf, "a.bin: byte 42: bad thing");

        mp_error_set(&e, -ENOENT, "b.bin", -5, "missing");
        mp_error_format(&e, buf, sizeof(buf));
        CHECK_STREQ(buf, "b.bin: missing");

        /* control characters from hostile names never reach the terminal */
        mp_error_set(&e, -EBADMSG, "c.bin", 1, "tensor '%s'", "a\nmodelprov: fake\x1b[2J");
        mp_error_format(&e, buf, sizeof(buf));
        CHECK_STREQ(buf, "c.bin: byte 1: tensor 'a?modelprov: fake?[2J'");

        /* a NULL error pointer is allowed everywhere */
        CHECK_EQ(mp_error_set(NULL, -EIO, "x", 0, "y"), -EIO);
}

static void test_source_bounds(void) {
        uint8_t data[16];
        for (int i = 0; i < 16; i++)
                data[i] = (uint8_t) i;
        mp_source s;
        mp_source_init_mem(&s, "mem", data, sizeof(data));

        uint8_t out[8];
        mp_error e;
        mp_error_clear(&e);
        CHECK_EQ(mp_source_pread(&s, out, 8, 8, &e), 0);
        CHECK_EQ(out[0], 8);
        CHECK_EQ(mp_source_pread(&s, out, 8, 9, &e), -EBADMSG);
        CHECK_EQ(e.offset, 9);
        CHECK_STREQ(e.file, "mem");
        CHECK(strstr(e.reason, "truncated"));
        /* offset + len overflowing uint64 must not wrap around */
        CHECK_EQ(mp_source_pread(&s, out, 8, UINT64_MAX - 2, &e), -EBADMSG);

        char *p = NULL;
        CHECK_EQ(mp_source_read_alloc(&s, 0, 16, 8, &p, &e), -E2BIG);
        CHECK_EQ(mp_source_read_alloc(&s, 4, 4, 8, &p, &e), 0);
        CHECK_EQ(p[0], 4);
        CHECK_EQ(p[4], 0);
        free(p);

        /* files: real size from fstat, directories refused */
        char *dir = test_tmpdir();
        char *path = test_write(dir, "f", data, 10);
        CHECK_EQ(mp_source_open(&s, path, NULL, &e), 0);
        CHECK_EQ(s.size, 10);
        CHECK_EQ(mp_source_pread(&s, out, 2, 8, &e), 0);
        CHECK_EQ(out[1], 9);
        CHECK_EQ(mp_source_pread(&s, out, 3, 8, &e), -EBADMSG);
        mp_source_close(&s);
        mp_source_close(&s);
        CHECK(mp_source_open(&s, dir, NULL, &e) < 0);
        free(path);
        free(dir);
}

static void test_dtype_conversions(void) {
        CHECK(mp_f16_to_f32(0x3c00) == 1.0f);
        CHECK(mp_f16_to_f32(0xc000) == -2.0f);
        CHECK(mp_f16_to_f32(0x7bff) == 65504.0f);
        CHECK(mp_f16_to_f32(0x0001) == ldexpf(1.0f, -24));     /* smallest subnormal */
        CHECK(isinf(mp_f16_to_f32(0x7c00)));
        CHECK(isnan(mp_f16_to_f32(0x7e00)));
        CHECK(mp_bf16_to_f32(0x3f80) == 1.0f);
        CHECK(mp_bf16_to_f32(0xc040) == -3.0f);
        CHECK(mp_f8_e4m3_to_f32(0x38) == 1.0f);
        CHECK(mp_f8_e4m3_to_f32(0x7e) == 448.0f);
        CHECK(mp_f8_e4m3_to_f32(0x01) == ldexpf(1.0f, -9));
        CHECK(isnan(mp_f8_e4m3_to_f32(0x7f)));
        CHECK(mp_f8_e5m2_to_f32(0x3c) == 1.0f);
        CHECK(mp_f8_e5m2_to_f32(0xc0) == -2.0f);

        const uint8_t i16[] = { 0xff, 0xff, 0x02, 0x00 };       /* -1, 2 */
        float out[4];
        CHECK_EQ(mp_dtype_to_f32(MP_DTYPE_I16, i16, 2, out), 0);
        CHECK(out[0] == -1.0f && out[1] == 2.0f);
        const uint8_t b[] = { 0, 7 };
        CHECK_EQ(mp_dtype_to_f32(MP_DTYPE_BOOL, b, 2, out), 0);
        CHECK(out[0] == 0.0f && out[1] == 1.0f);
        const double d = -0.5;
        CHECK_EQ(mp_dtype_to_f32(MP_DTYPE_F64, &d, 1, out), 0);
        CHECK(out[0] == -0.5f);
        CHECK_EQ(mp_dtype_to_f32(MP_DTYPE_INVALID, b, 1, out), -ENOTSUP);

        uint64_t n;
        CHECK_EQ(mp_dtype_bytes(MP_DTYPE_BF16, 10, &n), 0);
        CHECK_EQ(n, 20);
        CHECK_EQ(mp_dtype_bytes(MP_DTYPE_Q4_0, 64, &n), 0);
        CHECK_EQ(n, 36);
        CHECK_EQ(mp_dtype_bytes(MP_DTYPE_Q4_0, 33, &n), -EBADMSG);
        CHECK_EQ(mp_dtype_bytes(MP_DTYPE_Q6_K, 512, &n), 0);
        CHECK_EQ(n, 420);
        CHECK_EQ(mp_dtype_bytes(MP_DTYPE_F64, UINT64_MAX / 4, &n), -EOVERFLOW);
        CHECK_EQ(mp_dtype_from_safetensors("F8_E4M3"), MP_DTYPE_F8_E4M3);
        CHECK_EQ(mp_dtype_from_safetensors("Q4_0"), MP_DTYPE_INVALID);        /* not a safetensors dtype */
        CHECK_EQ(mp_dtype_from_safetensors("f16"), MP_DTYPE_INVALID);
        CHECK_STREQ(mp_dtype_name(MP_DTYPE_Q8_K), "Q8_K");
        CHECK_STREQ(mp_dtype_name((mp_dtype) 999), "INVALID");
}

static void test_tensor_check(void) {
        mp_error e;
        mp_tensor t = { .name = "w", .dtype = MP_DTYPE_F16, .n_dims = 2, .shape = { 3, 4 }, .n_elements = 12,
                        .offset = 100, .length = 24 };
        CHECK_EQ(mp_tensor_check(&t, 100, 124, "f", &e), 0);
        CHECK_EQ(mp_tensor_check(&t, 100, 123, "f", &e), -EBADMSG);            /* one byte past the end */
        CHECK_EQ(e.offset, 100);
        CHECK(strstr(e.reason, "outside"));
        CHECK_EQ(mp_tensor_check(&t, 101, 200, "f", &e), -EBADMSG);            /* before the data section */

        t.length = 22;
        CHECK_EQ(mp_tensor_check(&t, 100, 200, "f", &e), -EBADMSG);
        CHECK(strstr(e.reason, "need 24"));
        t.length = 24;

        t.n_elements = 13;
        CHECK_EQ(mp_tensor_check(&t, 100, 200, "f", &e), -EBADMSG);
        t.n_elements = 12;

        mp_tensor huge = t;
        huge.shape[0] = 1ull << 40;
        huge.shape[1] = 1ull << 40;
        CHECK_EQ(mp_tensor_check(&huge, 100, 200, "f", &e), -EOVERFLOW);

        mp_tensor q = { .name = "q", .dtype = MP_DTYPE_Q4_0, .n_dims = 1, .shape = { 40 }, .n_elements = 40,
                        .offset = 0, .length = 18 };
        CHECK_EQ(mp_tensor_check(&q, 0, 100, "f", &e), -EBADMSG);
        CHECK(strstr(e.reason, "blocks"));

        mp_tensor wrap = t;
        wrap.offset = UINT64_MAX - 4;
        CHECK_EQ(mp_tensor_check(&wrap, 0, UINT64_MAX, "f", &e), -EBADMSG);
}

static void test_model_builders(void) {
        mp_model *m = mp_model_new("/x");
        CHECK(m);
        for (int i = 0; i < 100; i++) {
                mp_tensor t = { .name = "t", .source_name = "src", .dtype = MP_DTYPE_F32, .n_elements = 2 };
                CHECK_EQ(mp_model_add_tensor(m, &t), i);
        }
        CHECK_EQ(m->n_tensors, 100);
        CHECK_STREQ(m->tensors[99].source_name, "src");
        CHECK_EQ(mp_model_parameter_count(m), 200);
        CHECK_EQ(mp_model_add_file(m, "/x/a", "a", MP_ROLE_WEIGHTS, MP_FORMAT_GGUF, 5), 0);
        CHECK_EQ(mp_model_add_finding(m, MP_FINDING_UNSAFE_PICKLE, "a", 7, "os.%s", "system"), 0);
        CHECK_STREQ(m->findings[0].detail, "os.system");
        CHECK_EQ(m->findings[0].offset, 7);
        CHECK_EQ(mp_model_add_metadata(m, "k", NULL), 0);
        CHECK_STREQ(m->metadata[0].value, "");
        CHECK_EQ(mp_arch_set_string(&m->arch.model_type, "llama"), 0);
        CHECK_EQ(mp_arch_set_string(&m->arch.model_type, "gpt2"), 0);
        CHECK_STREQ(m->arch.model_type, "gpt2");
        CHECK_STREQ(mp_finding_kind_name(MP_FINDING_DIGEST_MISMATCH), "blob-digest-mismatch");
        CHECK_STREQ(mp_format_name((mp_format) 77), "unknown");
        mp_model_free(m);
}

static void test_classify(void) {
        mp_file_role role;
        mp_format format;
        CHECK(mp_classify_file_name("model-00001-of-00002.safetensors", &role, &format));
        CHECK(role == MP_ROLE_WEIGHTS && format == MP_FORMAT_SAFETENSORS);
        CHECK(mp_classify_file_name("dir/model.safetensors.index.json", &role, &format));
        CHECK(role == MP_ROLE_INDEX);
        CHECK(mp_classify_file_name("pytorch_model.bin.index.json", &role, &format));
        CHECK(role == MP_ROLE_INDEX);
        CHECK(mp_classify_file_name("pytorch_model-00001-of-00003.bin", &role, &format));
        CHECK(format == MP_FORMAT_PYTORCH_ZIP);
        CHECK(mp_classify_file_name("tokenizer.model", &role, &format));
        CHECK(format == MP_FORMAT_SENTENCEPIECE);
        /* never model material: credentials, docs, random binaries */
        CHECK(!mp_classify_file_name("token", NULL, NULL));
        CHECK(!mp_classify_file_name("README.md", NULL, NULL));
        CHECK(!mp_classify_file_name("optimizer.bin", NULL, NULL));
}

static void test_tokenizer_record(void) {
        mp_tokenizer *a = mp_tokenizer_new(MP_TOK_BPE, "a"), *b = mp_tokenizer_new(MP_TOK_BPE, "b");
        CHECK(a && b);
        CHECK_EQ(mp_tokenizer_set_token(a, 0, "x", 1), 0);
        CHECK_EQ(mp_tokenizer_set_token(a, 40, "y", 1), 0);
        CHECK_EQ(a->n_tokens, 41);
        CHECK(a->tokens[20] == NULL);
        CHECK_EQ(mp_tokenizer_set_token(b, 40, "y", 1), 0);
        CHECK_EQ(mp_tokenizer_set_token(b, 0, "x", 1), 0);
        uint8_t da[32], db[32];
        mp_tokenizer_vocab_digest(a, da);
        mp_tokenizer_vocab_digest(b, db);
        CHECK(memcmp(da, db, 32) == 0);         /* order of insertion does not matter */
        CHECK_EQ(mp_tokenizer_set_token(b, 1, "", 0), 0);       /* a hole becomes an empty token */
        mp_tokenizer_vocab_digest(b, db);
        CHECK(memcmp(da, db, 32) == 0);         /* documented: hole and "" hash alike */
        CHECK_EQ(mp_tokenizer_set_token(b, 1, "z", 1), 0);
        mp_tokenizer_vocab_digest(b, db);
        CHECK(memcmp(da, db, 32) != 0);
        CHECK_EQ(mp_tokenizer_set_token(a, MP_TOKENIZER_MAX_TOKENS, "x", 1), -E2BIG);
        CHECK_STREQ(mp_tokenizer_kind_name(MP_TOK_SPM_BPE), "sentencepiece-bpe");
        mp_tokenizer_free(a);
        mp_tokenizer_free(b);
}

static void test_arena(void) {
        mp_arena a = {0};
        for (int i = 0; i < 1000; i++)
                CHECK(mp_arena_alloc(&a, 16));
        CHECK_STREQ(mp_arena_strdup(&a, NULL), "");
        CHECK(mp_arena_calloc(&a, SIZE_MAX / 2, 4) == NULL);
        mp_arena_free(&a);
}

/* Protocol strings from Linux paths: bytes in, valid UTF-8 within a limit out. */
static void test_utf8_sanitize(void) {
        char *s = mp_utf8_sanitize("plain/path/model.gguf", 64);
        CHECK_STREQ(s, "plain/path/model.gguf");
        free(s);

        s = mp_utf8_sanitize("caf\xc3\xa9/\xff\xfe.bin", 64);      /* é is kept, 0xff 0xfe escaped */
        CHECK_STREQ(s, "caf\xc3\xa9/\\xff\\xfe.bin");
        CHECK_EQ(mp_utf8_invalid_at((const uint8_t *) s, strlen(s)), strlen(s));
        free(s);

        s = mp_utf8_sanitize("\xed\xa0\x80", 64);                 /* a surrogate is not UTF-8 */
        CHECK_STREQ(s, "\\xed\\xa0\\x80");
        free(s);

        /* Cut on a character boundary, never in the middle of "é" or an escape. */
        char long_name[200];
        memset(long_name, 'a', sizeof long_name);
        long_name[14] = (char) 0xc3, long_name[15] = (char) 0xa9;
        long_name[sizeof long_name - 1] = '\0';
        s = mp_utf8_sanitize(long_name, 16);
        CHECK(strlen(s) <= 16);
        CHECK_STREQ(s + strlen(s) - 3, "...");
        CHECK_EQ(mp_utf8_invalid_at((const uint8_t *) s, strlen(s)), strlen(s));
        free(s);

        s = mp_utf8_sanitize("0123456789abcdef", 16);               /* exactly fits */
        CHECK_STREQ(s, "0123456789abcdef");
        free(s);
}

static void test_path_under(void) {
        CHECK(mp_path_under("/a/b", "/a/b"));
        CHECK(mp_path_under("/a/b/c", "/a/b"));
        CHECK(!mp_path_under("/a/bc", "/a/b"));
        CHECK(!mp_path_under("/a", "/a/b"));
        CHECK(mp_path_under("/x", "/"));
        CHECK(mp_path_under("/", "/"));
}

int main(void) {
        RUN(test_error_format);
        RUN(test_path_under);
        RUN(test_utf8_sanitize);
        RUN(test_source_bounds);
        RUN(test_dtype_conversions);
        RUN(test_tensor_check);
        RUN(test_model_builders);
        RUN(test_classify);
        RUN(test_tokenizer_record);
        RUN(test_arena);
        return 0;
}
