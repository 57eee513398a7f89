/* test_safetensors.c - the safetensors reader, the shard index parser and
 * config.json -> mp_arch, on the zoo's real files and on files built here
 * (valid ones with known content, and malformed ones with the exact error
 * and byte offset each must produce). */
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>

#include "formats/config.h"
#include "formats/safetensors.h"
#include "util/macro.h"
#include "util/source.h"

/* ---- helpers ---- */

/* u64 LE header length + header + data, as a new buffer. */
static uint8_t *build(const char *header, const void *data, size_t data_len, size_t *ret_len) {
        size_t n = strlen(header);
        uint8_t *b = malloc(8 + n + data_len + 1);
        CHECK(b);
        for (int i = 0; i < 8; i++)
                b[i] = (uint8_t) ((uint64_t) n >> (8 * i));
        memcpy(b + 8, header, n);
        if (data_len)
                memcpy(b + 8 + n, data, data_len);
        *ret_len = 8 + n + data_len;
        return b;
}

static mp_model *new_model(size_t n_files) {
        mp_model *m = mp_model_new("/test");
        CHECK(m);
        for (size_t i = 0; i < n_files; i++) {
                char name[32];
                snprintf(name, sizeof(name), "f%zu.safetensors", i);
                CHECK_EQ(mp_model_add_file(m, name, name, MP_ROLE_WEIGHTS, MP_FORMAT_SAFETENSORS, 0), (long long) i);
        }
        return m;
}

static int load_mem(mp_model *m, size_t fi, const void *buf, size_t len, mp_error *err) {
        mp_source src;
        mp_source_init_mem(&src, "mem.safetensors", buf, len);
        mp_error_clear(err);
        return mp_safetensors_load(m, fi, &src, err);
}

static int load_path(mp_model *m, size_t fi, const char *path, mp_error *err) {
        mp_source src;
        mp_error_clear(err);
        int r = mp_source_open(&src, path, path, err);
        if (r < 0)
                return r;
        r = mp_safetensors_load(m, fi, &src, err);
        mp_source_close(&src);
        return r;
}

static const char *find_metadata(const mp_model *m, const char *key) {
        for (size_t i = 0; i < m->n_metadata; i++)
                if (strcmp(m->metadata[i].key, key) == 0)
                        return m->metadata[i].value;
        return NULL;
}

static void check_shape(const mp_tensor *t, uint32_t n_dims, uint64_t d0, uint64_t d1) {
        CHECK(t);
        CHECK_EQ(t->n_dims, n_dims);
        if (n_dims > 0)
                CHECK_EQ(t->shape[0], d0);
        if (n_dims > 1)
                CHECK_EQ(t->shape[1], d1);
}

/* The table row being checked, for the message when it fails (0: none). */
static int fail_line;

/* Loads a malformed buffer into a model that already holds one tensor and
 * one metadata entry, and checks the error and that the model is
 * unchanged. */
static void expect_fail_buf(const void *buf, size_t len, int code, int64_t offset, const char *needle) {
        static const char ok_header[] = "{\"__metadata__\":{\"k\":\"v\"},\"pre\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
        size_t ok_len;
        _cleanup_(freep) uint8_t *ok = build(ok_header, "x", 1, &ok_len);
        _cleanup_(mp_model_freep) mp_model *m = new_model(2);
        mp_error err;

        CHECK_EQ(load_mem(m, 0, ok, ok_len, &err), 0);
        CHECK_EQ(m->n_tensors, 1);

        int r = load_mem(m, 1, buf, len, &err);
        if (r != code || err.offset != offset || !strstr(err.reason, needle)) {
                char line[2048];
                mp_error_format(&err, line, sizeof(line));
                if (fail_line > 0)
                        fprintf(stderr, "case at line %d: ", fail_line);
                fprintf(stderr, "expected code %d offset %lld '%s', got %d: %s\n", code, (long long) offset,
                        needle, r, line);
        }
        CHECK_EQ(r, code);
        CHECK_EQ(err.code, code);
        CHECK_EQ(err.offset, offset);
        CHECK_STREQ(err.file, "mem.safetensors");
        CHECK(err.reason[0]);
        CHECK(strstr(err.reason, needle));
        /* one line, whatever the file put in names */
        CHECK(!strchr(err.reason, '\n'));
        CHECK_EQ(m->n_tensors, 1);
        CHECK_EQ(m->n_metadata, 1);
        CHECK_EQ(m->n_findings, 0);
}

static void expect_fail(const char *header, size_t data_len, int code, int64_t offset, const char *needle) {
        _cleanup_(freep) uint8_t *zeros = calloc(1, data_len + 1);
        size_t len;
        CHECK(zeros);
        _cleanup_(freep) uint8_t *b = build(header, zeros, data_len, &len);
        expect_fail_buf(b, len, code, offset, needle);
}

/* Size of the JSON header as build() writes it: the data start is 8 + this. */
#define DS(h) (8 + (int64_t) strlen(h))

/* ---- zoo ---- */

/* Every single-file safetensors model: loads, tensors sorted, contiguous
 * from the data start to the end of the file, F16/BF16, format=pt. */
static void test_zoo_all_files(void) {
        const char *zoo = test_zoo();
        if (!zoo) {
                fprintf(stderr, "zoo missing: skipping test_zoo_all_files\n");
                return;
        }
        _cleanup_(freep) char *pattern = test_path(zoo, "*/*/model.safetensors");
        glob_t g;
        CHECK_EQ(glob(pattern, 0, NULL, &g), 0);
        CHECK(g.gl_pathc >= 33);  /* 31 F16 + 2 BF16 single-file models */

        for (size_t i = 0; i < g.gl_pathc; i++) {
                _cleanup_(mp_model_freep) mp_model *m = new_model(1);
                mp_error err;
                int r = load_path(m, 0, g.gl_pathv[i], &err);
                if (r < 0)
                        fprintf(stderr, "%s: %s\n", g.gl_pathv[i], err.reason);
                CHECK_EQ(r, 0);
                CHECK(m->n_tensors >= 20);
                CHECK_EQ(m->n_findings, 0);
                CHECK_STREQ(find_metadata(m, "format"), "pt");

                bool bf16 = strstr(g.gl_pathv[i], "bf16") != NULL;
                uint64_t expect = m->tensors[0].offset;
                CHECK_EQ(expect % 8, 0);  /* header padded to a multiple of 8 */
                for (size_t t = 0; t < m->n_tensors; t++) {
                        const mp_tensor *x = &m->tensors[t];
                        CHECK_EQ(x->dtype, bf16 ? MP_DTYPE_BF16 : MP_DTYPE_F16);
                        CHECK_EQ(x->offset, expect);
                        CHECK_EQ(x->length, x->n_elements * 2);
                        CHECK_EQ(x->file_index, 0);
                        CHECK(x->source_name == NULL);
                        expect += x->length;
                }
                struct stat st;
                CHECK_EQ(stat(g.gl_pathv[i], &st), 0);
                CHECK_EQ(expect, (uint64_t) st.st_size);
        }
        globfree(&g);
}

/* Counts from the headers (python3 json on the zoo files). */
static void test_zoo_counts(void) {
        static const struct { const char *rel; size_t n; uint64_t first_offset; } cases[] = {
                { "llama/base-1/model.safetensors",        39, 4136 },
                { "llama/base-1-bf16/model.safetensors",   39, 4176 },
                { "llama/pruned/model.safetensors",        30, 3176 },
                { "llama/distilled/model.safetensors",     21, 2216 },
                { "gpt2/base-1/model.safetensors",         52, 4992 },
                { "gpt2/base-1-bf16/model.safetensors",    52, 5048 },
                { "gpt2/pruned/model.safetensors",         40, 3824 },
                { "gpt2/distilled/model.safetensors",      28, 2672 },
        };
        const char *zoo = test_zoo();
        if (!zoo) {
                fprintf(stderr, "zoo missing: skipping test_zoo_counts\n");
                return;
        }
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(freep) char *p = test_path(zoo, cases[i].rel);
                _cleanup_(mp_model_freep) mp_model *m = new_model(1);
                mp_error err;
                CHECK_EQ(load_path(m, 0, p, &err), 0);
                CHECK_EQ(m->n_tensors, cases[i].n);
                CHECK_EQ(m->tensors[0].offset, cases[i].first_offset);
        }
}

static void test_zoo_llama_base1(void) {
        const char *zoo = test_zoo();
        if (!zoo) {
                fprintf(stderr, "zoo missing: skipping test_zoo_llama_base1\n");
                return;
        }
        _cleanup_(freep) char *p = test_path(zoo, "llama/base-1/model.safetensors");
        _cleanup_(mp_model_freep) mp_model *m = new_model(1);
        mp_error err;
        CHECK_EQ(load_path(m, 0, p, &err), 0);
        CHECK_EQ(m->n_tensors, 39);
        CHECK_EQ(m->n_metadata, 1);

        const mp_tensor *t = &m->tensors[0];
        CHECK_STREQ(t->name, "lm_head.weight");
        CHECK_EQ(t->dtype, MP_DTYPE_F16);
        check_shape(t, 2, 4000, 128);
        CHECK_EQ(t->offset, 4136);
        CHECK_EQ(t->length, 1024000);
        CHECK_EQ(t->n_elements, 512000);

        CHECK_STREQ(m->tensors[1].name, "model.embed_tokens.weight");
        CHECK_EQ(m->tensors[1].offset, 4136 + 1024000);
        CHECK_STREQ(m->tensors[2].name, "model.layers.0.input_layernorm.weight");
        check_shape(&m->tensors[2], 1, 128, 0);
        CHECK_EQ(m->tensors[2].offset, 2052136);
        CHECK_STREQ(m->tensors[38].name, "model.norm.weight");
        CHECK_EQ(m->tensors[38].offset + m->tensors[38].length, 3234088);

        check_shape(test_find_tensor(m, "model.layers.0.self_attn.k_proj.weight"), 2, 64, 128);   /* GQA: 2 kv heads x 32 */
        check_shape(test_find_tensor(m, "model.layers.3.mlp.down_proj.weight"), 2, 128, 256);
        CHECK(!test_find_tensor(m, "model.layers.4.mlp.down_proj.weight"));

        /* the first four values of lm_head.weight, decoded */
        _cleanup_(freep) char *bytes = test_read(p, NULL);
        float v[4];
        CHECK_EQ(mp_dtype_to_f32(MP_DTYPE_F16, bytes + t->offset, 4, v), 0);
        CHECK(v[0] == 0.06689453125f);
        CHECK(v[1] == -0.1683349609375f);
        CHECK(fabsf(v[2] - -0.00031256675720214844f) < 1e-12f);
        CHECK(v[3] == -0.447998046875f);
}

static void test_zoo_bf16_and_gpt2(void) {
        const char *zoo = test_zoo();
        if (!zoo) {
                fprintf(stderr, "zoo missing: skipping test_zoo_bf16_and_gpt2\n");
                return;
        }
        mp_error err;
        {
                _cleanup_(freep) char *p = test_path(zoo, "llama/base-1-bf16/model.safetensors");
                _cleanup_(mp_model_freep) mp_model *m = new_model(1);
                CHECK_EQ(load_path(m, 0, p, &err), 0);
                const mp_tensor *t = &m->tensors[0];
                CHECK_STREQ(t->name, "lm_head.weight");
                CHECK_EQ(t->dtype, MP_DTYPE_BF16);
                CHECK_EQ(t->offset, 4176);
                _cleanup_(freep) char *bytes = test_read(p, NULL);
                float v[2];
                CHECK_EQ(mp_dtype_to_f32(MP_DTYPE_BF16, bytes + t->offset, 2, v), 0);
                CHECK(v[0] == 0.06689453125f);
                CHECK(v[1] == -0.16796875f);
        }
        {
                _cleanup_(freep) char *p = test_path(zoo, "gpt2/base-1/model.safetensors");
                _cleanup_(mp_model_freep) mp_model *m = new_model(1);
                CHECK_EQ(load_path(m, 0, p, &err), 0);
                CHECK_EQ(m->n_tensors, 52);
                CHECK_STREQ(m->tensors[0].name, "transformer.h.0.attn.c_attn.bias");
                const mp_tensor *t = test_find_tensor(m, "transformer.h.0.attn.c_attn.weight");
                check_shape(t, 2, 128, 384);    /* Conv1D: [in, out] */
                CHECK_EQ(t->offset, 4992 + 768);
                CHECK_EQ(t->length, 98304);
                check_shape(test_find_tensor(m, "transformer.wte.weight"), 2, 2837, 128);
                check_shape(test_find_tensor(m, "transformer.wpe.weight"), 2, 128, 128);
                check_shape(test_find_tensor(m, "transformer.h.3.mlp.c_fc.weight"), 2, 128, 512);
                CHECK(!test_find_tensor(m, "lm_head.weight"));       /* tied */
        }
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* llama/sft-heavy: index -> 2 shards, which together hold the same 39 names
 * as base-1, each tensor in the shard the index says. */
static void test_zoo_sharded(void) {
        const char *zoo = test_zoo();
        if (!zoo) {
                fprintf(stderr, "zoo missing: skipping test_zoo_sharded\n");
                return;
        }
        _cleanup_(freep) char *ip = test_path(zoo, "llama/sft-heavy/model.safetensors.index.json");
        size_t len;
        _cleanup_(freep) char *buf = test_read(ip, &len);
        char **shards = NULL;
        mp_error err;
        CHECK_EQ(mp_safetensors_index_parse(ip, buf, len, &shards, &err), 2);
        CHECK_STREQ(shards[0], "model-00001-of-00002.safetensors");
        CHECK_STREQ(shards[1], "model-00002-of-00002.safetensors");
        CHECK(shards[2] == NULL);

        _cleanup_(mp_model_freep) mp_model *m = new_model(2);
        for (size_t i = 0; i < 2; i++) {
                char rel[128];
                snprintf(rel, sizeof(rel), "llama/sft-heavy/%s", shards[i]);
                _cleanup_(freep) char *p = test_path(zoo, rel);
                CHECK_EQ(load_path(m, i, p, &err), 0);
                free(shards[i]);
        }
        free(shards);
        CHECK_EQ(m->n_tensors, 39);
        CHECK_EQ(m->n_metadata, 2);     /* format=pt from each shard */
        CHECK_STREQ(m->tensors[0].name, "lm_head.weight");
        CHECK_EQ(m->tensors[0].file_index, 0);
        CHECK_EQ(m->tensors[0].offset, 216);
        CHECK_STREQ(m->tensors[2].name, "model.layers.0.input_layernorm.weight");
        CHECK_EQ(m->tensors[2].file_index, 1);
        CHECK_EQ(m->tensors[2].offset, 3888);

        /* every weight_map entry names the shard its tensor came from */
        json_t *idx = json_loadb(buf, len, 0, NULL);
        CHECK(idx);
        json_t *map = json_object_get(idx, "weight_map");
        CHECK_EQ(json_object_size(map), 39);
        const char *key;
        json_t *v;
        json_object_foreach(map, key, v) {
                const mp_tensor *t = test_find_tensor(m, key);
                CHECK(t);
                CHECK_EQ(t->file_index, strstr(json_string_value(v), "00001") ? 0 : 1);
        }
        json_decref(idx);

        /* same names as base-1 */
        _cleanup_(freep) char *bp = test_path(zoo, "llama/base-1/model.safetensors");
        _cleanup_(mp_model_freep) mp_model *b = new_model(1);
        CHECK_EQ(load_path(b, 0, bp, &err), 0);
        char *na[39], *nb[39];
        for (size_t i = 0; i < 39; i++) {
                na[i] = m->tensors[i].name;
                nb[i] = b->tensors[i].name;
        }
        qsort(na, 39, sizeof(char *), cmp_str);
        qsort(nb, 39, sizeof(char *), cmp_str);
        for (size_t i = 0; i < 39; i++)
                CHECK_STREQ(na[i], nb[i]);
}

/* The hub cache blob of llama-chained is a plain safetensors file. */
static void test_zoo_hub_blob(void) {
        const char *zoo = test_zoo();
        if (!zoo) {
                fprintf(stderr, "zoo missing: skipping test_zoo_hub_blob\n");
                return;
        }
        _cleanup_(freep) char *p = test_path(zoo, "hub/models--zoo--llama-chained/blobs/"
                                            "6c3f3fbf517105c97a86ad8c4c3a1582a0aa4e1c28f9f40e6e47bd7aef925b70");
        _cleanup_(mp_model_freep) mp_model *m = new_model(1);
        mp_error err;
        CHECK_EQ(load_path(m, 0, p, &err), 0);
        CHECK_EQ(m->n_tensors, 39);
        CHECK_EQ(m->tensors[0].offset, 4136);

        /* a non-safetensors zoo file fails cleanly */
        _cleanup_(freep) char *cp = test_path(zoo, "llama/base-1/config.json");
        _cleanup_(mp_model_freep) mp_model *c = new_model(1);
        CHECK(load_path(c, 0, cp, &err) < 0);
        CHECK(err.offset == 0);
        CHECK_EQ(c->n_tensors, 0);
}

static void load_config_file(mp_model *m, const char *path) {
        size_t len;
        _cleanup_(freep) char *buf = test_read(path, &len);
        mp_error err;
        mp_error_clear(&err);
        int r = mp_config_load(m, path, buf, len, &err);
        if (r < 0)
                fprintf(stderr, "%s: %s\n", path, err.reason);
        CHECK_EQ(r, 0);
}

static void test_zoo_configs(void) {
        const char *zoo = test_zoo();
        if (!zoo) {
                fprintf(stderr, "zoo missing: skipping test_zoo_configs\n");
                return;
        }
        {
                _cleanup_(freep) char *p = test_path(zoo, "llama/base-1/config.json");
                _cleanup_(mp_model_freep) mp_model *m = new_model(0);
                load_config_file(m, p);
                const mp_arch *a = &m->arch;
                CHECK(json_is_object(m->config));
                CHECK_STREQ(a->architecture, "LlamaForCausalLM");
                CHECK_STREQ(a->model_type, "llama");
                CHECK_EQ(a->hidden_size, 128);
                CHECK_EQ(a->num_layers, 4);
                CHECK_EQ(a->num_heads, 4);
                CHECK_EQ(a->num_kv_heads, 2);
                CHECK_EQ(a->intermediate_size, 256);
                CHECK_EQ(a->vocab_size, 4000);
                CHECK_EQ(a->max_positions, 128);
                CHECK_EQ(a->head_dim, 32);
                CHECK(a->rope_theta == 10000.0);
                CHECK(a->norm_eps == 1e-5);
                CHECK_EQ(a->tie_word_embeddings, 0);
                CHECK_STREQ(a->hidden_act, "silu");
                CHECK_STREQ(a->torch_dtype, "float16");
        }
        {
                _cleanup_(freep) char *p = test_path(zoo, "gpt2/base-1/config.json");
                _cleanup_(mp_model_freep) mp_model *m = new_model(0);
                load_config_file(m, p);
                const mp_arch *a = &m->arch;
                CHECK_STREQ(a->architecture, "GPT2LMHeadModel");
                CHECK_STREQ(a->model_type, "gpt2");
                CHECK_EQ(a->hidden_size, 128);
                CHECK_EQ(a->num_layers, 4);
                CHECK_EQ(a->num_heads, 4);
                CHECK_EQ(a->num_kv_heads, 0);
                CHECK_EQ(a->intermediate_size, 0);      /* n_inner: null */
                CHECK_EQ(a->vocab_size, 2837);
                CHECK_EQ(a->max_positions, 128);
                CHECK_EQ(a->head_dim, 0);
                CHECK(isnan(a->rope_theta));
                CHECK(a->norm_eps == 1e-5);
                CHECK_EQ(a->tie_word_embeddings, 1);
                CHECK_STREQ(a->hidden_act, "gelu_new");
                CHECK_STREQ(a->torch_dtype, "float16");
        }

        /* every config of the zoo */
        static const struct { const char *dir; uint64_t vocab, layers; } cases[] = {
                { "llama/pruned", 4000, 3 }, { "llama/distilled", 4000, 2 },
                { "llama/vocab-extended", 4500, 4 }, { "llama/vocab-rebuilt", 6000, 4 },
                { "gpt2/pruned", 2837, 3 }, { "gpt2/vocab-extended", 3337, 4 },
                { "gpt2/base-sametok", 4000, 4 }, { "gpt2/vocab-rebuilt", 6000, 4 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char rel[128];
                snprintf(rel, sizeof(rel), "%s/config.json", cases[i].dir);
                _cleanup_(freep) char *p = test_path(zoo, rel);
                _cleanup_(mp_model_freep) mp_model *m = new_model(0);
                load_config_file(m, p);
                CHECK_EQ(m->arch.vocab_size, cases[i].vocab);
                CHECK_EQ(m->arch.num_layers, cases[i].layers);
        }

        _cleanup_(freep) char *pattern = test_path(zoo, "*/*/config.json");
        glob_t g;
        CHECK_EQ(glob(pattern, 0, NULL, &g), 0);
        CHECK(g.gl_pathc >= 36);
        for (size_t i = 0; i < g.gl_pathc; i++) {
                _cleanup_(mp_model_freep) mp_model *m = new_model(0);
                load_config_file(m, g.gl_pathv[i]);
                CHECK_EQ(m->arch.hidden_size, 128);
                CHECK_EQ(m->arch.num_heads, 4);
                CHECK(m->arch.model_type);
                CHECK(strstr(g.gl_pathv[i], m->arch.model_type));     /* "llama/" or "gpt2/" */
        }
        globfree(&g);
}

/* ---- generated files ---- */

/* One tensor of every dtype, declared in the header in reverse file order,
 * with known bytes that decode to known values. */
static void test_all_dtypes(void) {
        static const char header[] =
                "{\"f8e5m2\":{\"dtype\":\"F8_E5M2\",\"shape\":[2],\"data_offsets\":[80,82]},"
                "\"f8e4m3\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[78,80]},"
                "\"bool\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[76,78]},"
                "\"u8\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[74,76]},"
                "\"u16\":{\"dtype\":\"U16\",\"shape\":[1],\"data_offsets\":[72,74]},"
                "\"u32\":{\"dtype\":\"U32\",\"shape\":[1],\"data_offsets\":[68,72]},"
                "\"u64\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[60,68]},"
                "\"i8\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[58,60]},"
                "\"i16\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[56,58]},"
                "\"i32\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[52,56]},"
                "\"i64\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[44,52]},"
                "\"bf16\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[40,44]},"
                "\"f16\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[36,40]},"
                "\"f32\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[32,36]},"
                "\"f64\":{\"dtype\":\"F64\",\"shape\":[2,2],\"data_offsets\":[0,32]}}";
        static const struct { const char *name; mp_dtype dtype; uint64_t rel; uint64_t len; float v0, v1; } want[] = {
                { "f64",    MP_DTYPE_F64,      0, 32,  1.5f, -2.0f },
                { "f32",    MP_DTYPE_F32,     32,  4,  3.25f, 0 },
                { "f16",    MP_DTYPE_F16,     36,  4,  1.0f, -2.0f },
                { "bf16",   MP_DTYPE_BF16,    40,  4,  1.0f, 0.5f },
                { "i64",    MP_DTYPE_I64,     44,  8, -5.0f, 0 },
                { "i32",    MP_DTYPE_I32,     52,  4, -70000.0f, 0 },
                { "i16",    MP_DTYPE_I16,     56,  2, -300.0f, 0 },
                { "i8",     MP_DTYPE_I8,      58,  2, -3.0f, 127.0f },
                { "u64",    MP_DTYPE_U64,     60,  8,  1099511627776.0f, 0 },
                { "u32",    MP_DTYPE_U32,     68,  4,  4000000000.0f, 0 },
                { "u16",    MP_DTYPE_U16,     72,  2,  65535.0f, 0 },
                { "u8",     MP_DTYPE_U8,      74,  2,  200.0f, 7.0f },
                { "bool",   MP_DTYPE_BOOL,    76,  2,  0.0f, 1.0f },
                { "f8e4m3", MP_DTYPE_F8_E4M3, 78,  2,  1.0f, -2.0f },
                { "f8e5m2", MP_DTYPE_F8_E5M2, 80,  2,  1.0f, 0.5f },
        };
        uint8_t data[82] = { 0 };
        double d[4] = { 1.5, -2.0, 0, 0 };
        float f = 3.25f;
        int64_t i64 = -5;
        int32_t i32 = -70000;
        int16_t i16 = -300;
        uint64_t u64 = 1ull << 40;
        uint32_t u32 = 4000000000u;
        uint16_t u16 = 65535, f16[2] = { 0x3c00, 0xc000 }, bf16[2] = { 0x3f80, 0x3f00 };
        memcpy(data + 0, d, 32);
        memcpy(data + 32, &f, 4);
        memcpy(data + 36, f16, 4);
        memcpy(data + 40, bf16, 4);
        memcpy(data + 44, &i64, 8);
        memcpy(data + 52, &i32, 4);
        memcpy(data + 56, &i16, 2);
        data[58] = (uint8_t) -3; data[59] = 127;
        memcpy(data + 60, &u64, 8);
        memcpy(data + 68, &u32, 4);
        memcpy(data + 72, &u16, 2);
        data[74] = 200; data[75] = 7;
        data[76] = 0; data[77] = 1;
        data[78] = 0x38; data[79] = 0xc0;       /* E4M3: 1.0, -2.0 */
        data[80] = 0x3c; data[81] = 0x38;       /* E5M2: 1.0, 0.5 */

        size_t len;
        _cleanup_(freep) uint8_t *b = build(header, data, sizeof(data), &len);
        _cleanup_(mp_model_freep) mp_model *m = new_model(1);
        mp_error err;
        CHECK_EQ(load_mem(m, 0, b, len, &err), 0);
        CHECK_EQ(m->n_tensors, ELEMENTSOF(want));
        CHECK_EQ(m->n_metadata, 0);
        CHECK_EQ(m->n_findings, 0);

        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                const mp_tensor *t = &m->tensors[i];    /* file offset order */
                CHECK_STREQ(t->name, want[i].name);
                CHECK_EQ(t->dtype, want[i].dtype);
                CHECK_EQ(t->offset, (uint64_t) DS(header) + want[i].rel);
                CHECK_EQ(t->length, want[i].len);
                CHECK(t->source_name == NULL);

                float v[4];
                CHECK(t->n_elements <= 4);
                CHECK_EQ(mp_dtype_to_f32(t->dtype, b + t->offset, t->n_elements, v), 0);
                CHECK(v[0] == want[i].v0);
                if (t->n_elements > 1)
                        CHECK(v[1] == want[i].v1);
        }
        check_shape(&m->tensors[0], 2, 2, 2);
        CHECK_EQ(m->tensors[0].n_elements, 4);
        check_shape(&m->tensors[1], 2, 1, 1);
}

static void test_metadata_and_edge_shapes(void) {
        /* scalars, zero-element tensors (at the same offset as a real one),
         * metadata, padding spaces at the end of the header */
        static const char header[] =
                "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"caf\\u00e9 \\\"q\\\"\"},"
                "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                "\"empty\":{\"dtype\":\"F16\",\"shape\":[0,4],\"data_offsets\":[4,4]},"
                "\"empty2\":{\"dtype\":\"U8\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
                "\"row\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,4],\"data_offsets\":[4,8],\"extra\":1}}      ";
        uint8_t data[8] = { 0, 0, 0x80, 0x3f, 1, 2, 3, 4 };
        size_t len;
        _cleanup_(freep) uint8_t *b = build(header, data, sizeof(data), &len);
        _cleanup_(mp_model_freep) mp_model *m = new_model(1);
        mp_error err;
        CHECK_EQ(load_mem(m, 0, b, len, &err), 0);
        CHECK_EQ(m->n_tensors, 4);
        CHECK_EQ(m->n_findings, 0);
        CHECK_STREQ(find_metadata(m, "format"), "pt");
        CHECK_STREQ(find_metadata(m, "note"), "caf\xc3\xa9 \"q\"");

        const mp_tensor *s = &m->tensors[0];
        CHECK_STREQ(s->name, "scalar");
        CHECK_EQ(s->n_dims, 0);
        CHECK_EQ(s->n_elements, 1);
        CHECK_EQ(s->offset, (uint64_t) DS(header));
        /* zero-length tensors sort before the tensor at the same offset */
        CHECK_STREQ(m->tensors[1].name, "empty");
        CHECK_EQ(m->tensors[1].n_elements, 0);
        CHECK_EQ(m->tensors[1].length, 0);
        check_shape(&m->tensors[1], 2, 0, 4);
        CHECK_STREQ(m->tensors[2].name, "empty2");
        CHECK_EQ(m->tensors[2].offset, (uint64_t) DS(header) + 4);
        CHECK_STREQ(m->tensors[3].name, "row");
        CHECK_EQ(m->tensors[3].n_dims, 8);
        CHECK_EQ(m->tensors[3].shape[7], 4);

        /* an empty header is a model without tensors, not an error */
        _cleanup_(freep) uint8_t *e = build("{}", NULL, 0, &len);
        _cleanup_(mp_model_freep) mp_model *m2 = new_model(1);
        CHECK_EQ(load_mem(m2, 0, e, len, &err), 0);
        CHECK_EQ(m2->n_tensors, 0);
}

/* Bytes that belong to no tensor are reported as a suspicious finding. */
static void test_gaps(void) {
        static const char h1[] = "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                                 "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[5,7]}}";
        uint8_t data[10] = { 0 };
        size_t len;
        mp_error err;
        {
                _cleanup_(freep) uint8_t *b = build(h1, data, 7, &len);
                _cleanup_(mp_model_freep) mp_model *m = new_model(1);
                CHECK_EQ(load_mem(m, 0, b, len, &err), 0);
                CHECK_EQ(m->n_tensors, 2);
                CHECK_EQ(m->n_findings, 1);
                CHECK_EQ(m->findings[0].kind, MP_FINDING_SUSPICIOUS);
                CHECK_EQ(m->findings[0].offset, DS(h1) + 2);
                CHECK_STREQ(m->findings[0].file, "mem.safetensors");
                CHECK(strstr(m->findings[0].detail, "3 bytes"));
        }
        {
                /* the hole plus 3 trailing bytes */
                _cleanup_(freep) uint8_t *b = build(h1, data, 10, &len);
                _cleanup_(mp_model_freep) mp_model *m = new_model(1);
                CHECK_EQ(load_mem(m, 0, b, len, &err), 0);
                CHECK_EQ(m->n_findings, 1);
                CHECK(strstr(m->findings[0].detail, "6 bytes"));
        }
}

static void test_malformed_prefix(void) {
        uint8_t b[16] = { 0 };

        /* shorter than the length field */
        expect_fail_buf(b, 0, -EBADMSG, 0, "truncated");
        expect_fail_buf(b, 7, -EBADMSG, 0, "truncated");

        /* header length beyond the limit, beyond the file, u64 max */
        uint64_t n = (uint64_t) MP_SAFETENSORS_MAX_HEADER + 1;
        for (int i = 0; i < 8; i++)
                b[i] = (uint8_t) (n >> (8 * i));
        expect_fail_buf(b, 16, -E2BIG, 0, "exceeds the limit");
        memset(b, 0xff, 8);
        expect_fail_buf(b, 16, -E2BIG, 0, "exceeds the limit");
        memset(b, 0, 8);
        b[0] = 9;
        memcpy(b + 8, "{}      ", 8);
        expect_fail_buf(b, 16, -E2BIG, 0, "exceeds the file size");

        /* zero-length header: not JSON */
        b[0] = 0;
        expect_fail_buf(b, 8, -EBADMSG, 8, "invalid JSON");
}

static void test_malformed_json(void) {
        /* syntax errors: 8 + jansson's position */
        expect_fail("{\"a\":1,,}", 0, -EBADMSG, 8 + 8, "invalid JSON");
        expect_fail("{\"a\": ", 0, -EBADMSG, 8 + 6, "invalid JSON");
        expect_fail("{} x", 0, -EBADMSG, 8 + 4, "invalid JSON");
        expect_fail("{\"a\":\"\\u0000\"}", 0, -EBADMSG, 8 + 13, "invalid JSON");
        expect_fail("{\"a\xff\":1}", 0, -EBADMSG, 8 + 3, "invalid JSON");     /* bad UTF-8 */
        /* duplicate tensor names */
        expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                    "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, -EBADMSG, 8 + 56, "duplicate");
        /* not an object */
        expect_fail("[]", 0, -EBADMSG, 8, "not an object");

        /* deep nesting stops at jansson's depth limit, not at the stack */
        size_t depth = 100000;
        _cleanup_(freep) char *deep = malloc(depth + 8);
        CHECK(deep);
        strcpy(deep, "{\"a\":");
        memset(deep + 5, '[', depth);
        deep[5 + depth] = 0;
        size_t len;
        _cleanup_(freep) uint8_t *b = build(deep, NULL, 0, &len);
        _cleanup_(mp_model_freep) mp_model *m = new_model(1);
        mp_error err;
        CHECK_EQ(load_mem(m, 0, b, len, &err), -EBADMSG);
        CHECK(err.offset > 8 && err.offset <= (int64_t) len);
        CHECK(strstr(err.reason, "invalid JSON"));
}

/* A malformed header and the error it gives: at a file offset (ABS) or at
 * an offset into the data section (DATA, from 8 + the header's length). */
typedef struct entry_case {
        int line;
        const char *header;
        size_t data_len;
        int code;
        bool in_data;
        int64_t offset;
        const char *needle;
} entry_case;

#define ABS(o) false, (o)
#define DATA(o) true, (o)
#define T(body) "{\"t\":" body "}"

static const entry_case malformed_entries[] = {
        { __LINE__, T("[1]"),
          0, -EBADMSG, ABS(8), "entry is not an object" },
        { __LINE__, T("{\"dtype\":\"U8\",\"shape\":[1]}"),
          1, -EBADMSG, ABS(8), "data_offsets" },
        { __LINE__, T("{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}"),
          1, -EBADMSG, ABS(8), "data_offsets" },
        { __LINE__, T("{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}"),
          1, -EBADMSG, ABS(8), "data_offsets" },
        { __LINE__, T("{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}"),
          1, -EBADMSG, ABS(8), "data_offsets" },
        { __LINE__, T("{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0.0,1]}"),
          1, -EBADMSG, ABS(8), "data_offsets" },
        { __LINE__, T("{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[\"0\",1]}"),
          1, -EBADMSG, ABS(8), "data_offsets" },
        { __LINE__, T("{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[99999999999999999999,1]}"),
          1, -EBADMSG, ABS(8 + 67), "invalid JSON" }, /* too big for jansson */
        /* data start + begin beyond INT64_MAX: the offset is clamped */
        { __LINE__, T("{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[9223372036854775807,9223372036854775807]}"),
          1, -EBADMSG, ABS(INT64_MAX), "span 0 bytes" },
        { __LINE__, T("{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,1]}"),
          2, -EBADMSG, DATA(2), "begin 2 > end 1" },

        /* dtype */
        { __LINE__, T("{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,1]}"),
          1, -ENOTSUP, DATA(0), "unknown dtype 'F17'" },
        { __LINE__, T("{\"dtype\":\"f16\",\"shape\":[1],\"data_offsets\":[0,2]}"),
          2, -ENOTSUP, DATA(0), "unknown dtype" },
        { __LINE__, T("{\"dtype\":\"Q4_0\",\"shape\":[32],\"data_offsets\":[0,18]}"),
          18, -ENOTSUP, DATA(0), "unknown dtype" }, /* GGUF-only */
        { __LINE__, T("{\"dtype\":16,\"shape\":[1],\"data_offsets\":[0,2]}"),
          2, -EBADMSG, DATA(0), "dtype is not a string" },
        { __LINE__, T("{\"shape\":[1],\"data_offsets\":[0,2]}"),
          2, -EBADMSG, DATA(0), "dtype is not a string" },

        /* shape */
        { __LINE__, T("{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}"),
          1, -EBADMSG, DATA(0), "shape[0]" },
        { __LINE__, T("{\"dtype\":\"U8\",\"shape\":[1,1.5],\"data_offsets\":[0,1]}"),
          1, -EBADMSG, DATA(0), "shape[1]" },
        { __LINE__, T("{\"dtype\":\"U8\",\"shape\":[1,null],\"data_offsets\":[0,1]}"),
          1, -EBADMSG, DATA(0), "shape[1]" },
        { __LINE__, T("{\"dtype\":\"U8\",\"shape\":\"1\",\"data_offsets\":[0,1]}"),
          1, -EBADMSG, DATA(0), "shape is not an array" },
        { __LINE__, T("{\"dtype\":\"U8\",\"data_offsets\":[0,1]}"),
          1, -EBADMSG, DATA(0), "shape is not an array" },
        { __LINE__, T("{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}"),
          1, -EBADMSG, DATA(0), "9 dimensions" },
        /* huge declared shapes */
        { __LINE__, T("{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,4]}"),
          4, -EOVERFLOW, DATA(0), "shape product overflows" },
        { __LINE__, T("{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}"),
          8, -EOVERFLOW, DATA(0), "overflows" },
        { __LINE__, T("{\"dtype\":\"F32\",\"shape\":[1048576,1048576],\"data_offsets\":[0,4]}"),
          4, -EBADMSG, DATA(0), "need 4398046511104" },
        /* a zero dim does not hide an overflowing one: product is 0 */
        { __LINE__, T("{\"dtype\":\"F32\",\"shape\":[0,9223372036854775807],\"data_offsets\":[0,4]}"),
          4, -EBADMSG, DATA(0), "need 0" },

        /* length and bounds */
        { __LINE__, T("{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,4]}"),
          4, -EBADMSG, DATA(0), "span 4 bytes, shape and dtype F16 need 6" },
        { __LINE__, T("{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}"),
          3, -EBADMSG, DATA(0), "beyond the file" },
        { __LINE__, T("{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[100,104]}"),
          8, -EBADMSG, DATA(100), "beyond the file" },
        { __LINE__, T("{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[100,100]}"),
          8, -EBADMSG, DATA(100), "beyond the file" },
        { __LINE__, T("{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[9223372036854775000,9223372036854775000]}"),
          8, -EBADMSG, DATA(9223372036854775000LL), "beyond the file" },

        /* __metadata__ */
        { __LINE__, "{\"__metadata__\":{\"a\":1}}",
          0, -EBADMSG, ABS(8), "__metadata__ value of 'a'" },
        { __LINE__, "{\"__metadata__\":{\"a\":\"x\",\"b\":{\"c\":\"d\"}}}",
          0, -EBADMSG, ABS(8), "__metadata__ value of 'b'" },
        { __LINE__, "{\"__metadata__\":[\"a\"]}",
          0, -EBADMSG, ABS(8), "__metadata__ is not an object" },

        /* a name with a newline does not break the one-line message */
        { __LINE__, "{\"evil\\nmodelprov: ok\":{\"dtype\":\"X\",\"shape\":[1],\"data_offsets\":[0,1]}}",
          1, -ENOTSUP, DATA(0), "tensor 'evil?modelprov: ok'" },
};

#undef T
#undef DATA
#undef ABS

static void test_malformed_entries(void) {
        for (size_t i = 0; i < sizeof(malformed_entries) / sizeof(malformed_entries[0]); i++) {
                const entry_case *c = &malformed_entries[i];

                fail_line = c->line;
                expect_fail(c->header, c->data_len, c->code, c->in_data ? DS(c->header) + c->offset : c->offset,
                            c->needle);
        }
        fail_line = 0;
}

static void test_overlaps(void) {
        const char *h;

        /* b starts inside a */
        h = "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
            "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}";
        expect_fail(h, 6, -EBADMSG, DS(h) + 2, "tensor 'b' [");
        expect_fail(h, 6, -EBADMSG, DS(h) + 2, "overlaps tensor 'a'");
        /* identical ranges (aliasing) */
        h = "{\"x\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
            "\"y\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
        expect_fail(h, 4, -EBADMSG, DS(h), "tensor 'y'");
        /* c is inside a, but after the smaller b: still caught */
        h = "{\"c\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[8,9]},"
            "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]},"
            "\"a\":{\"dtype\":\"U8\",\"shape\":[10],\"data_offsets\":[0,10]}}";
        expect_fail(h, 10, -EBADMSG, DS(h) + 1, "tensor 'b'");
        h = "{\"a\":{\"dtype\":\"U8\",\"shape\":[10],\"data_offsets\":[0,10]},"
            "\"e\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[5,5]},"
            "\"c\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[8,9]}}";
        expect_fail(h, 10, -EBADMSG, DS(h) + 8, "overlaps tensor 'a'");

        /* adjacent is fine */
        h = "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
            "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}";
        uint8_t data[8] = { 0 };
        size_t len;
        _cleanup_(freep) uint8_t *b = build(h, data, 8, &len);
        _cleanup_(mp_model_freep) mp_model *m = new_model(1);
        mp_error err;
        CHECK_EQ(load_mem(m, 0, b, len, &err), 0);
        CHECK_EQ(m->n_tensors, 2);
}

/* Many tensors: the sort and the overlap check stay exact. */
static void test_many_tensors(void) {
        const size_t n = 5000;
        size_t cap = n * 80 + 16, pos = 0;
        _cleanup_(freep) char *h = malloc(cap);
        CHECK(h);
        pos += (size_t) snprintf(h + pos, cap - pos, "{");
        /* declared in a scrambled order */
        for (size_t k = 0; k < n; k++) {
                size_t i = (k * 7919) % n;
                pos += (size_t) snprintf(h + pos, cap - pos, "%s\"t%zu\":{\"dtype\":\"I16\",\"shape\":[3],\"data_offsets\":[%zu,%zu]}",
                                         k ? "," : "", i, i * 6, i * 6 + 6);
        }
        snprintf(h + pos, cap - pos, "}");
        _cleanup_(freep) uint8_t *data = calloc(n, 6);
        CHECK(data);
        size_t len;
        _cleanup_(freep) uint8_t *b = build(h, data, n * 6, &len);
        _cleanup_(mp_model_freep) mp_model *m = new_model(1);
        mp_error err;
        CHECK_EQ(load_mem(m, 0, b, len, &err), 0);
        CHECK_EQ(m->n_tensors, n);
        for (size_t i = 0; i < n; i++) {
                char name[32];
                snprintf(name, sizeof(name), "t%zu", i);
                CHECK_STREQ(m->tensors[i].name, name);
                CHECK_EQ(m->tensors[i].offset, (uint64_t) DS(h) + i * 6);
        }
}

static void test_file_source(void) {
        /* through a real file: the label is the path */
        static const char h[] = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        float v[2] = { 0.25f, -8.0f };
        size_t len;
        _cleanup_(freep) uint8_t *b = build(h, v, sizeof(v), &len);
        _cleanup_(freep) char *dir = test_tmpdir();
        _cleanup_(freep) char *p = test_write(dir, "w.safetensors", b, len);
        _cleanup_(mp_model_freep) mp_model *m = new_model(1);
        mp_error err;
        CHECK_EQ(load_path(m, 0, p, &err), 0);
        CHECK_EQ(m->n_tensors, 1);
        float got[2];
        CHECK_EQ(mp_dtype_to_f32(MP_DTYPE_F32, b + m->tensors[0].offset, 2, got), 0);
        CHECK(got[0] == 0.25f && got[1] == -8.0f);

        _cleanup_(freep) char *p2 = test_write(dir, "short.safetensors", b, len - 1);
        CHECK_EQ(load_path(m, 0, p2, &err), -EBADMSG);
        CHECK_STREQ(err.file, p2);
        CHECK_EQ(err.offset, DS(h));
        CHECK_EQ(m->n_tensors, 1);
        unlink(p);
        unlink(p2);
        rmdir(dir);
}

/* ---- index ---- */

static void strv_free(char **l) {
        for (char **p = l; p && *p; p++)
                free(*p);
        free(l);
}

static void index_fail(const char *json, int code, int64_t offset, const char *needle) {
        char **shards = (char **) 0x1;  /* must stay untouched */
        mp_error err;
        mp_error_clear(&err);
        int r = mp_safetensors_index_parse("idx.json", json, strlen(json), &shards, &err);
        if (r != code || err.offset != offset || !strstr(err.reason, needle))
                fprintf(stderr, "index: expected %d @%lld '%s', got %d @%lld: %s\n", code, (long long) offset,
                        needle, r, (long long) err.offset, err.reason);
        CHECK_EQ(r, code);
        CHECK_EQ(err.code, code);
        CHECK_EQ(err.offset, offset);
        CHECK_STREQ(err.file, "idx.json");
        CHECK(strstr(err.reason, needle));
        CHECK(shards == (char **) 0x1);
}

static void test_index(void) {
        static const char ok[] =
                "{\"metadata\":{\"total_size\":10},\"weight_map\":{"
                "\"a\":\"s2.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s2.safetensors\",\"d\":\"s3.safetensors\"}}";
        char **shards = NULL;
        mp_error err;
        CHECK_EQ(mp_safetensors_index_parse("idx.json", ok, strlen(ok), &shards, &err), 3);
        CHECK_STREQ(shards[0], "s2.safetensors");
        CHECK_STREQ(shards[1], "s1.safetensors");
        CHECK_STREQ(shards[2], "s3.safetensors");
        CHECK(shards[3] == NULL);
        strv_free(shards);

        index_fail("{\"weight_map\":{\"a\":\"x\",}}", -EBADMSG, 24, "invalid JSON");
        index_fail("{\"weight_map\":{\"a\":\"x\",\"a\":\"y\"}}", -EBADMSG, 26, "duplicate");
        index_fail("[\"x\"]", -EBADMSG, 0, "not a JSON object");
        index_fail("{\"metadata\":{}}", -EBADMSG, 0, "no \"weight_map\"");
        index_fail("{\"weight_map\":[\"x\"]}", -EBADMSG, 0, "no \"weight_map\"");
        index_fail("{\"weight_map\":{}}", -EBADMSG, 1, "empty");
        /* offsets point at the bad value */
        index_fail("{\"weight_map\":{\"a\":\"ok\",\"b\":3}}", -EBADMSG, 24, "entry of 'b' is not a string");
        index_fail("{\"weight_map\":{\"a\":\"ok\",\"b\":\"\"}}", -EBADMSG, 28, "is empty");
        index_fail("{\"weight_map\":{\"a\":\"/etc/passwd\"}}", -EBADMSG, 19, "absolute");
        index_fail("{\"weight_map\":{\"a\":\"../x.safetensors\"}}", -EBADMSG, 19, "contains '/'");
        index_fail("{\"weight_map\":{\"a\":\"sub/x.safetensors\"}}", -EBADMSG, 19, "contains '/'");
        index_fail("{\"weight_map\":{\"a\":\"..\"}}", -EBADMSG, 19, "contains '..'");
        index_fail("{\"weight_map\":{\"a\":\".\"}}", -EBADMSG, 19, "is '.'");
        index_fail("{\"weight_map\":{\"a\":\"x\\ny\"}}", -EBADMSG, 19, "control character");
        /* spelled differently from jansson's encoding: start of file */
        index_fail("{\"weight_map\":{\"a\":\"\\u002fetc\"}}", -EBADMSG, 0, "absolute");

        /* too many shards */
        size_t n = 65537, cap = n * 40 + 32, pos = 0;
        _cleanup_(freep) char *big = malloc(cap);
        CHECK(big);
        pos += (size_t) snprintf(big + pos, cap - pos, "{\"weight_map\":{");
        for (size_t i = 0; i < n; i++)
                pos += (size_t) snprintf(big + pos, cap - pos, "%s\"t%zu\":\"s%zu\"", i ? "," : "", i, i);
        snprintf(big + pos, cap - pos, "}}");
        shards = NULL;
        CHECK_EQ(mp_safetensors_index_parse("idx.json", big, strlen(big), &shards, &err), -E2BIG);
        CHECK(shards == NULL);
        CHECK(strstr(err.reason, "65536"));
        CHECK(err.offset > 0);
        CHECK_EQ(err.offset, (int64_t) (strstr(big, "\"s65536\"") - big));

        /* ... but many tensors in few shards are fine */
        pos = 0;
        pos += (size_t) snprintf(big + pos, cap - pos, "{\"weight_map\":{");
        for (size_t i = 0; i < n; i++)
                pos += (size_t) snprintf(big + pos, cap - pos, "%s\"t%zu\":\"s%zu\"", i ? "," : "", i, i % 3);
        snprintf(big + pos, cap - pos, "}}");
        CHECK_EQ(mp_safetensors_index_parse("idx.json", big, strlen(big), &shards, &err), 3);
        CHECK_STREQ(shards[2], "s2");
        strv_free(shards);
}

/* ---- config ---- */

static void config_ok(mp_model *m, const char *json) {
        mp_error err;
        mp_error_clear(&err);
        int r = mp_config_load(m, "config.json", json, strlen(json), &err);
        if (r < 0)
                fprintf(stderr, "config: %s\n", err.reason);
        CHECK_EQ(r, 0);
        CHECK(m->config);
}

static void test_config_generated(void) {
        mp_error err;
        {
                /* multimodal: fields from text_config, model type from the top */
                _cleanup_(mp_model_freep) mp_model *m = new_model(0);
                config_ok(m, "{\"architectures\":[\"LlavaForConditionalGeneration\"],\"model_type\":\"llava\","
                             "\"torch_dtype\":\"bfloat16\",\"tie_word_embeddings\":true,"
                             "\"vision_config\":{\"hidden_size\":1024},"
                             "\"text_config\":{\"model_type\":\"llama\",\"hidden_size\":4096,\"num_hidden_layers\":32,"
                             "\"num_attention_heads\":32,\"num_key_value_heads\":8,\"intermediate_size\":14336,"
                             "\"vocab_size\":32064,\"rms_norm_eps\":1e-6,\"hidden_act\":\"silu\","
                             "\"rope_parameters\":{\"rope_theta\":500000.0,\"rope_type\":\"default\"}}}");
                const mp_arch *a = &m->arch;
                CHECK_STREQ(a->architecture, "LlavaForConditionalGeneration");
                CHECK_STREQ(a->model_type, "llava");
                CHECK_EQ(a->hidden_size, 4096);
                CHECK_EQ(a->num_layers, 32);
                CHECK_EQ(a->num_kv_heads, 8);
                CHECK_EQ(a->intermediate_size, 14336);
                CHECK_EQ(a->vocab_size, 32064);
                CHECK(a->norm_eps == 1e-6);
                CHECK(a->rope_theta == 500000.0);
                CHECK_STREQ(a->hidden_act, "silu");
                CHECK_STREQ(a->torch_dtype, "bfloat16");
                CHECK_EQ(a->tie_word_embeddings, 1);
                CHECK_EQ(a->max_positions, 0);
        }
        {
                /* wrong types are ignored; alternative names; integral reals */
                _cleanup_(mp_model_freep) mp_model *m = new_model(0);
                config_ok(m, "{\"architectures\":\"Foo\",\"model_type\":7,\"d_model\":512.0,\"num_layers\":\"6\","
                             "\"n_head\":8,\"ffn_dim\":2048,\"vocab_size\":-5,\"n_positions\":1024.5,"
                             "\"head_dim\":true,\"rope_theta\":\"big\",\"layer_norm_eps\":1e-12,"
                             "\"tie_word_embeddings\":1,\"activation_function\":[\"gelu\"],\"dtype\":\"float32\","
                             "\"text_config\":{\"hidden_size\":99}}");
                const mp_arch *a = &m->arch;
                CHECK(a->architecture == NULL);
                CHECK(a->model_type == NULL);
                CHECK_EQ(a->hidden_size, 512);          /* top level has it: text_config unused */
                CHECK_EQ(a->num_layers, 0);
                CHECK_EQ(a->num_heads, 8);
                CHECK_EQ(a->intermediate_size, 2048);
                CHECK_EQ(a->vocab_size, 0);
                CHECK_EQ(a->max_positions, 0);
                CHECK_EQ(a->head_dim, 0);
                CHECK(isnan(a->rope_theta));
                CHECK(a->norm_eps == 1e-12);
                CHECK_EQ(a->tie_word_embeddings, -1);
                CHECK(a->hidden_act == NULL);
                CHECK_STREQ(a->torch_dtype, "float32");

                /* loading again replaces config and arch (ASan checks the frees) */
                json_t *old = m->config;
                config_ok(m, "{\"architectures\":[\"BertModel\",\"x\"],\"hidden_size\":768,"
                             "\"layer_norm_epsilon\":1e-5,\"tie_word_embeddings\":false}");
                CHECK(m->config != old);
                CHECK_STREQ(a->architecture, "BertModel");
                CHECK_EQ(a->hidden_size, 768);
                CHECK_EQ(a->num_heads, 0);
                CHECK(a->torch_dtype == NULL);
                CHECK_EQ(a->tie_word_embeddings, 0);

                /* a failed load keeps the previous config and arch */
                old = m->config;
                mp_error_clear(&err);
                CHECK_EQ(mp_config_load(m, "config.json", "{\"a\":", 5, &err), -EBADMSG);
                CHECK_EQ(err.offset, 5);
                CHECK_STREQ(err.file, "config.json");
                CHECK(strstr(err.reason, "invalid JSON"));
                CHECK(m->config == old);
                CHECK_EQ(a->hidden_size, 768);

                CHECK_EQ(mp_config_load(m, "config.json", "[1,2]", 5, &err), -EBADMSG);
                CHECK_EQ(err.offset, 0);
                CHECK(strstr(err.reason, "not a JSON object"));
                CHECK(m->config == old);

                CHECK_EQ(mp_config_load(m, "config.json", "", 0, &err), -EBADMSG);
                CHECK_EQ(err.offset, 0);
        }
        {
                mp_arch a = { .tie_word_embeddings = -1 };
                json_t *arr = json_array();
                CHECK_EQ(mp_arch_from_config(&a, arr), -EINVAL);
                CHECK_EQ(mp_arch_from_config(&a, NULL), -EINVAL);
                json_decref(arr);
                json_t *o = json_pack("{s:i, s:[s]}", "n_embd", 64, "architectures", "GPT2LMHeadModel");
                CHECK(o);
                CHECK_EQ(mp_arch_from_config(&a, o), 0);
                CHECK_EQ(a.hidden_size, 64);
                CHECK_STREQ(a.architecture, "GPT2LMHeadModel");
                json_decref(o);
                mp_arch_clear(&a);
        }
}

/* ---- fuzz regressions ---- */

static void test_regressions(void) {
        const char *root = getenv("MODELPROV_SOURCE_ROOT");
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/tests/fuzz/regressions/safetensors", root ? root : ".");
        DIR *d = opendir(dir);
        if (!d) {
                fprintf(stderr, "no regression dir %s\n", dir);
                CHECK(!root);   /* under meson the directory must exist */
                return;
        }
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                char p[8192];
                snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
                size_t len;
                _cleanup_(freep) char *buf = test_read(p, &len);
                _cleanup_(mp_model_freep) mp_model *m = new_model(1);
                mp_error err;
                int r = load_mem(m, 0, buf, len, &err);
                CHECK(r == 0 || (err.code == r && err.reason[0]));
                char **shards = NULL;
                r = mp_safetensors_index_parse(p, buf, len, &shards, &err);
                CHECK(r >= 0 || err.code == r);
                strv_free(shards);
                r = mp_config_load(m, p, buf, len, &err);
                CHECK(r == 0 || err.code == r);
                n++;
        }
        closedir(d);
        fprintf(stderr, "replayed %zu regression inputs\n", n);
}

int main(void) {
        RUN(test_zoo_all_files);
        RUN(test_zoo_counts);
        RUN(test_zoo_llama_base1);
        RUN(test_zoo_bf16_and_gpt2);
        RUN(test_zoo_sharded);
        RUN(test_zoo_hub_blob);
        RUN(test_zoo_configs);
        RUN(test_all_dtypes);
        RUN(test_metadata_and_edge_shapes);
        RUN(test_gaps);
        RUN(test_malformed_prefix);
        RUN(test_malformed_json);
        RUN(test_malformed_entries);
        RUN(test_overlaps);
        RUN(test_many_tensors);
        RUN(test_file_source);
        RUN(test_index);
        RUN(test_config_generated);
        RUN(test_regressions);
        return 0;
}
