/* test_signals.c - the metadata and tokenizer signals: Python-compatible
 * formatting, MFI (hashes against the reference DB, fields from configs and
 * GGUF, similarity tiers), TFV, vocabulary overlap and its sketch, and the
 * EAS anchor choice. */
#include "test.h"

#include <errno.h>
#include <glob.h>
#include <math.h>
#include <sys/stat.h>

#include <jansson.h>

#include "signals/anchors.h"
#include "signals/metadata.h"
#include "signals/mfi.h"
#include "signals/script.h"
#include "signals/tfv.h"
#include "signals/vocab_sketch.h"
#include "util/macro.h"

#define CHECK_NEAR(a, b, eps)                                                    \
        do {                                                                     \
                double _a = (a), _b = (b);                                       \
                if (!(fabs(_a - _b) <= (eps))) {                                 \
                        fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.10g, %s = %.10g\n", \
                                __FILE__, __LINE__, #a, _a, #b, _b);             \
                        exit(1);                                                 \
                }                                                                \
        } while (0)

static json_t *parse(const char *s) {
        json_error_t je;
        json_t *j = json_loads(s, 0, &je);
        if (!j)
                fprintf(stderr, "bad test JSON: %s\n", je.text);
        CHECK(j);
        return j;
}

static void check_repr(double x, const char *want) {
        char buf[MP_PY_REPR_MAX];
        CHECK_STREQ(mp_py_float_repr(x, buf), want);
}

static void test_py_format(void) {
        check_repr(0.1, "0.1");
        check_repr(10000.0, "10000.0");
        check_repr(500000.0, "500000.0");
        check_repr(1e16, "1e+16");
        check_repr(1e15, "1000000000000000.0");
        check_repr(1e-5, "1e-05");
        check_repr(0.0001, "0.0001");
        check_repr(-0.0, "-0.0");
        check_repr(0.0, "0.0");
        check_repr(5e-324, "5e-324");
        check_repr(1.7976931348623157e308, "1.7976931348623157e+308");
        check_repr(123456789012345680.0, "1.2345678901234568e+17");
        check_repr(1.0 / 3, "0.3333333333333333");
        check_repr(-2.5, "-2.5");
        check_repr(NAN, "nan");
        check_repr(-INFINITY, "-inf");

        /* Python round: exact binary value, ties to even. */
        CHECK(mp_py_round(0.125, 2) == 0.12);
        CHECK(mp_py_round(0.375, 2) == 0.38);
        CHECK(mp_py_round(2.675, 2) == 2.67);   /* 2.67499999... in binary */
        CHECK(mp_py_round(0.5, 0) == 0.0);
        CHECK(mp_py_round(1.5, 0) == 2.0);
        CHECK(mp_py_round(1000042.0, -2) == 1000000.0);
        CHECK(mp_py_round(1000050.0, -2) == 1000000.0);
        CHECK(mp_py_round(1000150.0, -2) == 1000200.0);
        CHECK(mp_py_round(1000050.5, -2) == 1000100.0);
        CHECK(mp_py_round(-1050.0, -2) == -1000.0);
        CHECK(mp_py_round(-1150.0, -2) == -1200.0);
        CHECK(mp_py_round(1e300, -2) == 1e300);
        CHECK(isnan(mp_py_round(NAN, 4)));

        json_t *j = parse("[\"roberta\", [\"RobertaForMaskedLM\"], 768, 12, 12, null, 3072, 50265, 514]");
        char *s = mp_py_json_dumps(j, true);
        CHECK_STREQ(s, "[\"roberta\", [\"RobertaForMaskedLM\"], 768, 12, 12, null, 3072, 50265, 514]");
        free(s);
        json_decref(j);

        /* ensure_ascii, escapes, sort_keys, floats, booleans. */
        j = parse("{\"b\": \"\\u00e9\\ud83d\\ude00\\u0001\\n\\t\\\"\\\\\\u007f/\", \"a\": [1.0, 0.5, true, false, {}]}");
        s = mp_py_json_dumps(j, true);
        CHECK_STREQ(s, "{\"a\": [1.0, 0.5, true, false, {}], \"b\": \"\\u00e9\\ud83d\\ude00\\u0001\\n\\t\\\"\\\\\\u007f/\"}");
        free(s);
        s = mp_py_json_dumps(j, false);
        CHECK(strncmp(s, "{\"b\": ", 6) == 0);
        free(s);
        json_decref(j);
}

/* ---- MFI against the reference DB ----------------------------------------------- */

/* "$MODELPROV_ZOO/../provenancekit-db", or NULL (with the zoo's convention
 * for a missing directory). */
static char *test_db(void) {
        const char *zoo = getenv("MODELPROV_ZOO");
        struct stat st;
        char *db = test_path(zoo ? zoo : ".", "../provenancekit-db");

        if (stat(db, &st) == 0 && S_ISDIR(st.st_mode))
                return db;
        fprintf(stderr, "provenancekit-db missing: %s does not exist\n", db);
        free(db);
        const char *req = getenv("MODELPROV_REQUIRE_ZOO");
        if (req && strcmp(req, "1") == 0) {
                fprintf(stderr, "MODELPROV_REQUIRE_ZOO=1: failing\n");
                exit(1);
        }
        return NULL;
}

static void test_db_hashes(void) {
        char *db = test_db();
        if (!db)
                return;
        char *pattern = test_path(db, "features/base/by-family/*/*_features.json");
        glob_t g;
        CHECK(glob(pattern, 0, NULL, &g) == 0);
        CHECK(g.gl_pathc >= 100);

        size_t arch_ok = 0, family_ok = 0, int_rope_fixed = 0;
        for (size_t i = 0; i < g.gl_pathc; i++) {
                json_error_t je;
                json_t *rec = json_load_file(g.gl_pathv[i], 0, &je);
                CHECK(rec);
                json_t *mfi = json_object_get(rec, "mfi");
                char arch[65], family[65];
                CHECK(mp_mfi_hashes(mfi, arch, family) == 0);

                arch_ok += strcmp(arch, json_string_value(json_object_get(mfi, "arch_hash"))) == 0;
                if (strcmp(family, json_string_value(json_object_get(mfi, "family_hash"))) == 0)
                        family_ok++;
                else {
                        /* The DB stored an integer config literal as a float:
                         * feed it as the integer config.json had. */
                        json_t *theta = json_object_get(mfi, "rope_theta");
                        CHECK(json_is_real(theta));
                        json_object_set_new(mfi, "rope_theta", json_integer((json_int_t) json_real_value(theta)));
                        CHECK(mp_mfi_hashes(mfi, arch, family) == 0);
                        CHECK_STREQ(family, json_string_value(json_object_get(mfi, "family_hash")));
                        int_rope_fixed++;
                }
                json_decref(rec);
        }
        fprintf(stderr, "DB: %zu records, arch_hash %zu ok, family_hash %zu ok + %zu with an integer rope_theta\n",
                g.gl_pathc, arch_ok, family_ok, int_rope_fixed);
        CHECK_EQ(arch_ok, g.gl_pathc);
        CHECK_EQ(int_rope_fixed, 4);
        globfree(&g);
        free(pattern);

        /* Spot values from the spec: roberta-base. */
        char *p = test_path(db, "features/base/by-family/facebookai--roberta/roberta-base__hf-safetensors_features.json");
        json_t *rec = json_load_file(p, 0, NULL);
        if (rec) {
                char arch[65], family[65];
                CHECK(mp_mfi_hashes(json_object_get(rec, "mfi"), arch, family) == 0);
                CHECK(strncmp(arch, "7a8bbc49", 8) == 0);
                CHECK(strncmp(family, "d5bd685b", 8) == 0);
                json_decref(rec);
        }
        free(p);
        free(db);
}

/* ---- MFI from configs ---------------------------------------------------------------- */

static mp_model *open_zoo(const char *zoo, const char *rel) {
        char *p = test_path(zoo, rel);
        mp_model *m = NULL;
        mp_error e = {};
        int r = mp_model_open(p, NULL, &m, &e);
        if (r < 0)
                fprintf(stderr, "%s: %s\n", p, e.reason);
        CHECK(r >= 0);
        free(p);
        return m;
}

static long long get_int(const json_t *o, const char *k) {
        const json_t *v = json_object_get(o, k);
        CHECK(json_is_integer(v));
        return json_integer_value(v);
}

static const char *get_str(const json_t *o, const char *k) {
        const json_t *v = json_object_get(o, k);
        CHECK(json_is_string(v));
        return json_string_value(v);
}

static void test_mfi_zoo(void) {
        const char *zoo = test_zoo();
        if (!zoo)
                return;

        mp_model *l1 = open_zoo(zoo, "llama/base-1"), *l2 = open_zoo(zoo, "llama/base-2");
        mp_model *g1 = open_zoo(zoo, "gpt2/base-1"), *lq = open_zoo(zoo, "llama/base-1-gguf-f16");
        json_t *a = NULL, *b = NULL, *g = NULL, *q = NULL;
        CHECK(mp_mfi_build(l1, &a) == 0 && a);
        CHECK(mp_mfi_build(l2, &b) == 0 && b);
        CHECK(mp_mfi_build(g1, &g) == 0 && g);
        CHECK(mp_mfi_build(lq, &q) == 0 && q);

        CHECK_EQ(json_object_size(a), 26);
        CHECK_STREQ(get_str(a, "model_type"), "llama");
        CHECK_EQ(get_int(a, "hidden_size"), 128);
        CHECK_EQ(get_int(a, "num_key_value_heads"), 2);
        CHECK_EQ(get_int(a, "intermediate_size"), 256);
        CHECK_EQ(get_int(a, "vocab_size"), 4000);
        CHECK_EQ(get_int(a, "head_dim"), 32);
        CHECK(json_is_null(json_object_get(a, "rope_theta")));
        CHECK(json_real_value(json_object_get(json_object_get(a, "rope_scaling"), "rope_theta")) == 10000.0);
        CHECK_STREQ(get_str(json_object_get(a, "rope_scaling"), "rope_type"), "default");
        CHECK_STREQ(get_str(a, "attention_style"), "GQA");
        CHECK(json_real_value(json_object_get(a, "gqa_ratio")) == 2.0);
        CHECK_STREQ(get_str(a, "norm_type"), "RMSNorm");
        CHECK(json_is_false(json_object_get(a, "attention_bias")));
        CHECK_STREQ(get_str(a, "pos_encoding"), "absolute");
        CHECK_EQ(get_int(a, "bos_token_id"), 1);
        CHECK_EQ(get_int(a, "eos_token_id"), 2);
        CHECK_STREQ(get_str(a, "token_id_signature"), "bos=1|eos=2");
        CHECK_EQ(strlen(get_str(a, "tokenizer_hash")), 64);

        /* The stored hashes are the ones recomputed from the fields. */
        char arch[65], family[65];
        CHECK(mp_mfi_hashes(a, arch, family) == 0);
        CHECK_STREQ(arch, get_str(a, "arch_hash"));
        CHECK_STREQ(family, get_str(a, "family_hash"));

        /* GPT-2 aliases, class defaults. */
        CHECK_STREQ(get_str(g, "model_type"), "gpt2");
        CHECK_EQ(get_int(g, "hidden_size"), 128);
        CHECK_EQ(get_int(g, "num_hidden_layers"), 4);
        CHECK_EQ(get_int(g, "num_attention_heads"), 4);
        CHECK_EQ(get_int(g, "max_position_embeddings"), 128);
        CHECK(json_is_null(json_object_get(g, "num_key_value_heads")));
        CHECK_EQ(get_int(g, "intermediate_size"), 0);
        CHECK(json_is_null(json_object_get(g, "hidden_act")));
        CHECK(json_is_null(json_object_get(g, "rope_scaling")));
        CHECK_STREQ(get_str(g, "attention_style"), "MHA");
        CHECK_STREQ(get_str(g, "norm_type"), "LayerNorm");
        CHECK(json_is_true(json_object_get(g, "tie_word_embeddings")));
        CHECK_STREQ(get_str(g, "token_id_signature"), "bos=2836|eos=2836");

        /* GGUF metadata only. */
        CHECK_STREQ(get_str(q, "model_type"), "llama");
        CHECK_EQ(get_int(q, "hidden_size"), 128);
        CHECK_EQ(get_int(q, "num_hidden_layers"), 4);
        CHECK_EQ(get_int(q, "num_key_value_heads"), 2);
        CHECK_EQ(get_int(q, "intermediate_size"), 256);
        CHECK_STREQ(get_str(q, "norm_type"), "RMSNorm");
        CHECK_STREQ(get_str(q, "attention_style"), "GQA");

        /* Tiers: same architecture; GPT-2 vs Llama is a poor soft match. */
        int tier;
        CHECK(mp_mfi_similarity(a, b, &tier) == 1.0);
        CHECK_EQ(tier, 1);
        double s = mp_mfi_similarity(a, g, &tier);
        CHECK_EQ(tier, 3);
        CHECK(s < 0.7);
        s = mp_mfi_similarity(a, q, &tier);
        CHECK_EQ(tier, 3);
        CHECK(s > 0.8);
        fprintf(stderr, "mfi llama/gpt2 %.4f, llama/gguf %.4f\n", mp_mfi_similarity(a, g, NULL), s);

        /* attach: record fields, the stored JSON keeps literals. */
        Modelprov__V1__Signals sig = MODELPROV__V1__SIGNALS__INIT;
        CHECK(mp_signals_attach_metadata(l1, &sig) == 0);
        CHECK_STREQ(sig.arch_hash, get_str(a, "arch_hash"));
        json_t *back = parse(sig.mfi_json);
        CHECK(json_equal(back, a));
        json_decref(back);
        back = parse(sig.tfv_json);
        CHECK_EQ(get_int(back, "num_merges"), 5296);
        json_decref(back);
        CHECK(sig.vocab_sketch && sig.vocab_sketch->n_mins == MP_VOCAB_SKETCH_K);
        CHECK_EQ(sig.vocab_sketch->vocab_size, 4000);
        free(sig.mfi_json);
        free(sig.arch_hash);
        free(sig.family_hash);
        free(sig.tfv_json);
        modelprov__v1__vocab_sketch__free_unpacked(sig.vocab_sketch, NULL);

        json_decref(a);
        json_decref(b);
        json_decref(g);
        json_decref(q);
        mp_model_free(l1);
        mp_model_free(l2);
        mp_model_free(g1);
        mp_model_free(lq);
}

static json_t *mfi_of_config(const char *config) {
        mp_model *m = mp_model_new("/nonexistent");
        CHECK(m);
        m->config = parse(config);
        json_t *o = NULL;
        CHECK(mp_mfi_build(m, &o) == 0);
        CHECK(o);
        mp_model_free(m);
        return o;
}

static void test_mfi_configs(void) {
        /* Multimodal: the text backbone; integer rope literal kept. */
        json_t *o = mfi_of_config("{\"model_type\": \"internlm2\", \"architectures\": [\"X\"], \"hidden_size\": 0,"
                                  " \"text_config\": {\"hidden_size\": 64, \"num_hidden_layers\": 3,"
                                  " \"num_attention_heads\": 8, \"rms_norm_eps\": 1e-6, \"rope_theta\": 1000042,"
                                  " \"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2.0}}}");
        CHECK_EQ(get_int(o, "hidden_size"), 64);
        CHECK_EQ(get_int(o, "num_key_value_heads"), 8);
        CHECK_EQ(get_int(o, "rope_theta"), 1000042);
        CHECK_STREQ(get_str(o, "pos_encoding"), "RoPE");
        CHECK_STREQ(get_str(o, "attention_style"), "MHA");
        CHECK_STREQ(get_str(o, "norm_type"), "RMSNorm");
        CHECK(json_is_null(json_object_get(o, "bos_token_id")));
        CHECK_STREQ(get_str(o, "token_id_signature"), "bos=None|eos=None");
        CHECK_STREQ(get_str(o, "tokenizer_hash"), "");

        /* The family list the hash covers, by hand: int bucket, "type". */
        char arch[65], family[65];
        CHECK(mp_mfi_hashes(o, arch, family) == 0);
        json_t *fl = json_pack("[sssssss]", "internlm2", "MHA", "silu", "RMSNorm", "", "1000000", "dynamic");
        json_array_set_new(fl, 2, json_null());
        char *fs = mp_py_json_dumps(fl, true);
        CHECK_STREQ(fs, "[\"internlm2\", \"MHA\", null, \"RMSNorm\", \"\", \"1000000\", \"dynamic\"]");
        free(fs);
        json_decref(fl);
        /* Same family as a float literal?  No: "1000000.0" is another bucket. */
        json_object_set_new(o, "rope_theta", json_real(1000042.0));
        char family2[65];
        CHECK(mp_mfi_hashes(o, arch, family2) == 0);
        CHECK(strcmp(family, family2) != 0);
        json_decref(o);

        /* MQA / GQA with 0 kv heads; rope_scaling "rope_type" is not "type". */
        o = mfi_of_config("{\"model_type\": \"llama\", \"num_attention_heads\": 8, \"num_key_value_heads\": 1,"
                          " \"hidden_size\": 64, \"rope_theta\": 500000.0,"
                          " \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}}");
        CHECK_STREQ(get_str(o, "attention_style"), "MQA");
        CHECK(json_real_value(json_object_get(o, "gqa_ratio")) == 8.0);
        CHECK_STREQ(get_str(json_object_get(o, "rope_scaling"), "rope_type"), "llama3");
        CHECK(json_real_value(json_object_get(json_object_get(o, "rope_scaling"), "rope_theta")) == 500000.0);
        CHECK_STREQ(get_str(o, "norm_type"), "unknown");
        json_decref(o);
        o = mfi_of_config("{\"model_type\": \"llama\", \"num_attention_heads\": 8, \"num_key_value_heads\": 0}");
        CHECK_STREQ(get_str(o, "attention_style"), "GQA");
        CHECK(json_real_value(json_object_get(o, "gqa_ratio")) == 1.0);
        json_decref(o);

        /* Hostile and broken values: never a crash, wrong types are absent. */
        o = mfi_of_config("{\"model_type\": 5, \"architectures\": [1, \"x\"], \"hidden_size\": \"abc\","
                          " \"num_hidden_layers\": [1], \"num_attention_heads\": 9223372036854775807,"
                          " \"num_key_value_heads\": -3, \"vocab_size\": 1e300, \"intermediate_size\": {},"
                          " \"rope_theta\": \"x\", \"rope_scaling\": [1], \"hidden_act\": 7,"
                          " \"text_config\": \"nope\", \"decoder\": [], \"attention_bias\": {\"a\": 1},"
                          " \"position_embedding_type\": 3, \"head_dim\": \"h\", \"layer_norm_eps\": null}");
        CHECK_STREQ(get_str(o, "model_type"), "unknown");
        CHECK_STREQ(json_string_value(json_array_get(json_object_get(o, "architectures"), 0)), "unknown");
        CHECK_EQ(get_int(o, "hidden_size"), 0);
        CHECK_EQ(get_int(o, "num_hidden_layers"), 0);
        CHECK_EQ(get_int(o, "num_key_value_heads"), -3);
        CHECK(json_real_value(json_object_get(o, "vocab_size")) == 1e300);
        CHECK_STREQ(get_str(o, "attention_style"), "GQA");
        CHECK_STREQ(get_str(o, "norm_type"), "LayerNorm");
        CHECK_STREQ(get_str(o, "pos_encoding"), "absolute");
        CHECK(json_is_null(json_object_get(o, "hidden_act")));
        CHECK(json_is_null(json_object_get(o, "head_dim")));
        CHECK(mp_mfi_hashes(o, arch, family) == 0);
        int tier;
        CHECK(mp_mfi_similarity(o, o, &tier) == 1.0);
        json_decref(o);

        /* No config and no GGUF architecture: no mfi. */
        mp_model *m = mp_model_new("/nonexistent");
        json_t *none = (json_t *) 1;
        CHECK(mp_mfi_build(m, &none) == 0);
        CHECK(!none);
        mp_model_free(m);
        CHECK(mp_mfi_hashes(NULL, arch, family) == -EINVAL);
}

static void test_mfi_similarity(void) {
        json_t *a = parse("{\"arch_hash\": \"x\", \"family_hash\": \"f\", \"hidden_size\": 1000,"
                          " \"num_hidden_layers\": 10, \"bos_token_id\": 1, \"eos_token_id\": 2,"
                          " \"qk_norm\": false, \"vocab_size\": 1000, \"attention_style\": \"GQA\","
                          " \"rope_theta\": null, \"norm_type\": \"RMSNorm\", \"pos_encoding\": \"absolute\","
                          " \"attention_bias\": null, \"model_type\": \"llama\"}");
        json_t *b = json_deep_copy(a);
        int tier;

        json_object_set_new(b, "arch_hash", json_string("y"));
        CHECK(mp_mfi_similarity(a, b, &tier) == 0.9);
        CHECK_EQ(tier, 2);

        /* Family equal but a dimension differs: tier 3.  hidden 950 stays
         * within 10% (credited), vocab 800 gives 1.5 * 0.8, eos differs,
         * attention_bias False != None. */
        json_object_set_new(b, "hidden_size", json_integer(950));
        json_object_set_new(b, "vocab_size", json_integer(800));
        json_object_set_new(b, "eos_token_id", json_integer(3));
        json_object_set_new(b, "attention_bias", json_false());
        double want = (2.0 * 0.5 + 1.8 + 1.5 + 1.5 + 1.5 * 0.8 + 1.5 + 1.2 + 0.5 + 0.4 + 0 + 0.1) / 12.4;
        CHECK(mp_mfi_similarity(a, b, &tier) == mp_py_round(want, 4));
        CHECK_EQ(tier, 3);

        /* hidden 850: out of 10%; rope on one side only; empty hashes. */
        json_object_set_new(b, "hidden_size", json_integer(850));
        json_object_set_new(b, "rope_theta", json_real(10000.0));
        json_object_set_new(a, "arch_hash", json_string(""));
        json_object_set_new(b, "arch_hash", json_string(""));
        want = (2.0 * 0.5 + 0 + 1.5 + 1.5 + 1.5 * 0.8 + 1.5 + 0 + 0.5 + 0.4 + 0 + 0.1) / 12.4;
        CHECK(mp_mfi_similarity(a, b, &tier) == mp_py_round(want, 4));
        CHECK(isnan(mp_mfi_similarity(a, NULL, &tier)));
        CHECK_EQ(tier, 0);
        json_decref(a);
        json_decref(b);
}

/* ---- TFV ---------------------------------------------------------------------------- */

static mp_tokenizer *make_tokenizer(const char *const *tokens, size_t n) {
        mp_tokenizer *t = mp_tokenizer_new(MP_TOK_BPE, "test");
        CHECK(t);
        for (size_t i = 0; i < n; i++)
                if (tokens[i])
                        CHECK(mp_tokenizer_set_token(t, i, tokens[i], strlen(tokens[i])) == 0);
        return t;
}

static void test_tfv_synthetic(void) {
        static const char *const toks[] = {
                "<unk>", "<s>", "</s>", "a", "b", "ab", "\xe2\x96\x81the", "\xc4\xa0x", "<0x0A>", "<0x0a>\n",
                "\xe7\x9a\x84", "\xd0\xb8", "\xce\xb1", "\xff\xfe", "\xe2\x96", NULL, "a", "123", "",
        };
        mp_tokenizer *t = make_tokenizer(toks, ELEMENTSOF(toks));
        t->bos_token = strdup("<s>");
        t->eos_token = strdup("</s>");
        t->pad_token = strdup("</s>");
        t->unk_token = strdup("<unk>");
        t->mask_token = strdup("<nomask>");     /* not in the vocabulary: the unk id */
        t->tokenizer_class = strdup("LlamaTokenizerFast");
        t->n_added_tokens = 3;
        static const char *const merges[][2] = { { "a", "b" }, { "\xe2\x96\x81", "the" }, { "1", "2" },
                                                 { "12", "3" }, { "x", "y" }, { "y", "z" } };
        for (size_t i = 0; i < ELEMENTSOF(merges); i++)
                CHECK(mp_tokenizer_merges_add(&t->merges, merges[i][0], strlen(merges[i][0]), merges[i][1],
                                              strlen(merges[i][1])) == 0);
        CHECK(mp_tokenizer_merges_finish(&t->merges) == 0);
        t->n_merges = t->merges.n;

        json_t *o = NULL;
        CHECK(mp_tfv_build(t, &o) == 0);
        char *dump = mp_py_json_dumps(o, false);
        /* Expected values computed with Python over the same strings (the
         * duplicate "a" and the hole do not count; "\xff\xfe" is two
         * replacement characters, "\xe2\x96" one). */
        CHECK_STREQ(dump,
                "{\"vocab_size\": 17, \"tokenizer_class\": \"LlamaTokenizerFast\", \"bos_token_id\": 1, "
                "\"eos_token_id\": 2, \"pad_token_id\": 2, \"num_added_tokens\": 3, \"num_special_tokens\": 4, "
                "\"num_merges\": 6, \"first_5_merges\": [\"a b\", \"\\u2581 the\", \"1 2\", \"12 3\", \"x y\"], "
                "\"merge_rule_hash\": \"0499c1196e562e781fd75394dec85bef01848836bba5ff96439cc9d326744709\", "
                "\"special_token_ids\": {\"pad\": 2, \"unk\": 0, \"mask\": 0}, \"pct_single_char\": 0.3529, "
                "\"avg_token_length\": 2.59, \"max_token_length\": 7, \"pct_whitespace_prefix\": 0.1176, "
                "\"pct_byte_tokens\": 0.1176, \"script_distribution\": {\"Latin\": 0.8571, \"CJK\": 0.0476, "
                "\"Cyrillic\": 0.0476, \"Other\": 0.0476}, "
                "\"all_merges_sha256\": \"0499c1196e562e781fd75394dec85bef01848836bba5ff96439cc9d326744709\"}");
        free(dump);
        CHECK(mp_tfv_similarity(o, o) == 1.0);
        json_decref(o);
        mp_tokenizer_free(t);
}

static void test_tfv_zoo(void) {
        const char *zoo = test_zoo();
        if (!zoo)
                return;
        mp_model *l = open_zoo(zoo, "llama/base-1"), *g = open_zoo(zoo, "gpt2/base-1");
        mp_model *gq = open_zoo(zoo, "gpt2/base-1-q4_0"), *r = open_zoo(zoo, "llama/vocab-rebuilt");
        json_t *a = NULL, *b = NULL, *c = NULL, *d = NULL;
        CHECK(mp_tfv_build(l->tokenizer, &a) == 0);
        CHECK(mp_tfv_build(g->tokenizer, &b) == 0);
        CHECK(mp_tfv_build(gq->tokenizer, &c) == 0);
        CHECK(mp_tfv_build(r->tokenizer, &d) == 0);

        /* Values computed with Python from tokenizer.json (pk semantics). */
        CHECK_EQ(get_int(a, "vocab_size"), 4000);
        CHECK_EQ(get_int(a, "num_merges"), 5296);
        CHECK_STREQ(json_string_value(json_array_get(json_object_get(a, "first_5_merges"), 3)), "li b");
        CHECK_STREQ(get_str(a, "merge_rule_hash"), "51230a07da7603aa734fc9e2fa6a84fbb6335bcd56f61c4df4e62fd08261ae70");
        CHECK_STREQ(get_str(a, "all_merges_sha256"), "9c6aca990555b59c9a6950e3236f9012aafeb6ec4a9c1294199f9e1b646c097e");
        CHECK(json_real_value(json_object_get(a, "pct_single_char")) == 0.0595);
        CHECK(json_real_value(json_object_get(a, "avg_token_length")) == 4.6);
        CHECK_EQ(get_int(a, "max_token_length"), 16);
        CHECK(json_real_value(json_object_get(a, "pct_whitespace_prefix")) == 0.2777);
        CHECK(json_real_value(json_object_get(a, "pct_byte_tokens")) == 0.064);
        CHECK_EQ(get_int(a, "bos_token_id"), 1);
        CHECK_EQ(get_int(a, "pad_token_id"), 2);
        CHECK_EQ(get_int(json_object_get(a, "special_token_ids"), "unk"), 0);
        char *sd = mp_py_json_dumps(json_object_get(a, "script_distribution"), false);
        CHECK_STREQ(sd, "{\"Latin\": 0.9958, \"Other\": 0.0019, \"Cyrillic\": 0.0017, \"Arabic\": 0.0005, \"CJK\": 0.0002}");
        free(sd);

        CHECK_EQ(get_int(b, "vocab_size"), 2837);
        CHECK_EQ(get_int(b, "num_merges"), 3801);
        CHECK_STREQ(get_str(b, "merge_rule_hash"), "68bea7b83636cb88040d171b841f0c395054df3d7649a116c443b05d7fdf626a");
        CHECK_STREQ(get_str(b, "all_merges_sha256"), "a434423c7463a995eec78781260ae25388634330396012b9498a6cebde13421c");
        CHECK(json_real_value(json_object_get(b, "avg_token_length")) == 4.12);
        CHECK(json_real_value(json_object_get(b, "pct_whitespace_prefix")) == 0.2108);

        /* The GGUF copy carries the same merges. */
        CHECK_STREQ(get_str(c, "all_merges_sha256"), get_str(b, "all_merges_sha256"));
        CHECK_STREQ(get_str(c, "merge_rule_hash"), get_str(b, "merge_rule_hash"));

        CHECK_STREQ(get_str(d, "merge_rule_hash"), "6e68d4e5aeb9c81ad5c6c00d2e413847185397ddcd59effa4092f65cd59b35d8");
        double s_same = mp_tfv_similarity(a, a), s_lg = mp_tfv_similarity(a, b), s_gq = mp_tfv_similarity(b, c);
        double s_lr = mp_tfv_similarity(a, d);
        fprintf(stderr, "tfv: same %.4f, llama/gpt2 %.4f, gpt2/gguf %.4f, llama/rebuilt %.4f\n", s_same, s_lg, s_gq, s_lr);
        CHECK(s_same == 1.0);
        CHECK(s_lg < 0.6);
        CHECK(s_gq > 0.75);
        CHECK(s_lr < s_same);

        /* Against a DB-shaped record (no all_merges_sha256): merge identity 0. */
        json_t *e = json_deep_copy(a);
        json_object_del(e, "all_merges_sha256");
        CHECK_NEAR(mp_tfv_similarity(a, e), 0.85, 1e-9);
        CHECK(isnan(mp_tfv_similarity(a, NULL)));

        json_decref(a);
        json_decref(b);
        json_decref(c);
        json_decref(d);
        json_decref(e);
        mp_model_free(l);
        mp_model_free(g);
        mp_model_free(gq);
        mp_model_free(r);
}

static void test_tokenizer_hostile(void) {
        /* additional_special_tokens: odd shapes ignored, list capped. */
        mp_tokenizer *t = make_tokenizer((const char *const[]) { "<s>", "x" }, 2);
        test_buf b = {};
#define PUTS(s) put(&b, s, strlen(s))
        PUTS("{\"additional_special_tokens\": [1, null, {\"content\": \"<x>\"}, \"<y>\"");
        for (size_t i = 0; i < MP_TOKENIZER_MAX_EXTRA_SPECIAL + 10; i++)
                PUTS(", \"<z>\"");
        PUTS("], \"mask_token\": [], \"tokenizer_class\": 3}");
#undef PUTS
        mp_error e = {};
        CHECK(mp_tokenizer_config_apply(t, "cfg", (const char *) b.p, b.n, &e) == 0);
        CHECK_EQ(t->n_extra_special, MP_TOKENIZER_MAX_EXTRA_SPECIAL);
        CHECK_STREQ(t->extra_special[0], "<x>");
        CHECK(!t->mask_token && !t->tokenizer_class);
        json_t *o = NULL;
        CHECK(mp_tfv_build(t, &o) == 0);
        CHECK_EQ(get_int(o, "num_special_tokens"), 3);
        CHECK_EQ(get_int(o, "num_merges"), 0);
        CHECK_STREQ(get_str(o, "merge_rule_hash"), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        CHECK_STREQ(get_str(o, "all_merges_sha256"), "");
        json_decref(o);
        free(b.p);
        mp_tokenizer_free(t);

        /* Empty vocabulary: only vocab_size and tokenizer_class. */
        t = mp_tokenizer_new(MP_TOK_UNKNOWN, "empty");
        CHECK(mp_tfv_build(t, &o) == 0);
        CHECK_EQ(json_object_size(o), 2);
        CHECK_EQ(get_int(o, "vocab_size"), 0);
        json_decref(o);
        Modelprov__V1__VocabSketch vs = MODELPROV__V1__VOCAB_SKETCH__INIT;
        CHECK(mp_vocab_sketch_build(t, &vs) == 0);
        CHECK_EQ(vs.n_mins, 0);
        CHECK(isnan(mp_vocab_sketch_jaccard(&vs, &vs)));
        CHECK(mp_vocab_jaccard(t, t) == 0.0);
        CHECK(mp_vocab_jaccard(NULL, NULL) == 0.0);
        mp_tokenizer_free(t);

        /* tokenizer.json: merges kept, a Prepend normalizer seen. */
        const char *tj = "{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\","
                         " \"prepend\": \"\\u2581\"}]}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,"
                         " \"b\": 1, \"ab\": 2, \"\\u2581\": 3}, \"merges\": [[\"a\", \"b\"], \"\\u2581 a\"]}}";
        CHECK(mp_tokenizer_json_parse("t.json", tj, strlen(tj), &t, &e) == 0);
        CHECK_EQ(t->dummy_prefix, 1);
        CHECK_EQ(t->merges.n, 2);
        CHECK_STREQ(t->merges.first[0], "a b");
        CHECK_STREQ(t->merges.first[1], "\xe2\x96\x81 a");
        mp_tokenizer_free(t);

        /* UTF-8 decoding with replacement, Python's maximal subparts. */
        uint32_t c;
        CHECK_EQ(mp_utf8_decode("\xe2\x96", 2, &c), 2);
        CHECK_EQ(c, 0xfffd);
        CHECK_EQ(mp_utf8_decode("\xed\xa0\x80", 3, &c), 1);    /* surrogate */
        CHECK_EQ(c, 0xfffd);
        CHECK_EQ(mp_utf8_decode("\xf0\x9f\x98\x80", 4, &c), 4);
        CHECK_EQ(c, 0x1f600);
        CHECK_EQ(mp_utf8_decode("\xc0\xaf", 2, &c), 1);        /* overlong */
        CHECK(mp_code_point_is_alpha(0x4e00) && mp_code_point_is_alpha('a') && !mp_code_point_is_alpha('1'));
        CHECK(mp_code_point_is_alpha(0x3b1) && mp_script_of_alpha(0x3b1) == MP_SCRIPT_OTHER);
        CHECK(mp_script_of_alpha(0x120) == MP_SCRIPT_LATIN);
        CHECK(mp_script_of_alpha(0xac00) == MP_SCRIPT_CJK);
        CHECK(mp_script_of_alpha(0x915) == MP_SCRIPT_DEVANAGARI);
}

/* ---- VOA ------------------------------------------------------------------------------ */

static void test_voa_synthetic(void) {
        mp_tokenizer *a = make_tokenizer((const char *const[]) { "a", "b", "c", "d", "a" }, 5);
        mp_tokenizer *b = make_tokenizer((const char *const[]) { "c", "d", "e", NULL, "f", "g" }, 6);
        /* {a,b,c,d} vs {c,d,e,f,g}: 2 / 7. */
        CHECK(mp_vocab_jaccard(a, b) == mp_py_round(2.0 / 7, 4));
        CHECK(mp_vocab_jaccard(a, a) == 1.0);
        Modelprov__V1__VocabSketch sa = MODELPROV__V1__VOCAB_SKETCH__INIT, sb = MODELPROV__V1__VOCAB_SKETCH__INIT;
        CHECK(mp_vocab_sketch_build(a, &sa) == 0);
        CHECK(mp_vocab_sketch_build(b, &sb) == 0);
        CHECK_EQ(sa.vocab_size, 4);
        CHECK_EQ(sa.n_mins, MP_VOCAB_SKETCH_K);
        CHECK(mp_vocab_sketch_jaccard(&sa, &sa) == 1.0);
        CHECK_NEAR(mp_vocab_sketch_jaccard(&sa, &sb), 2.0 / 7, 0.1);
        CHECK(isnan(mp_vocab_sketch_jaccard(&sa, NULL)));
        free(sa.mins);
        free(sb.mins);
        mp_tokenizer_free(a);
        mp_tokenizer_free(b);
}

static void test_voa_zoo(void) {
        const char *zoo = test_zoo();
        if (!zoo)
                return;
        char *mj = test_path(zoo, "models.json");
        json_t *models = json_load_file(mj, 0, NULL);
        CHECK(json_is_array(models));

        /* One model per distinct vocabulary. */
        mp_model *ms[64];
        const char *folder[64];
        Modelprov__V1__VocabSketch sk[64];
        uint8_t digest[64][32];
        size_t n = 0;
        size_t k;
        json_t *v;
        json_array_foreach(models, k, v) {
                const char *f = json_string_value(json_object_get(v, "folder"));
                mp_model *m = open_zoo(zoo, f);
                uint8_t d[32];
                if (!m->tokenizer) {
                        mp_model_free(m);
                        continue;
                }
                mp_tokenizer_vocab_digest(m->tokenizer, d);
                bool dup = false;
                for (size_t i = 0; i < n && !dup; i++)
                        dup = memcmp(digest[i], d, 32) == 0;
                if (dup || n >= ELEMENTSOF(ms)) {
                        mp_model_free(m);
                        continue;
                }
                memcpy(digest[n], d, 32);
                sk[n] = (Modelprov__V1__VocabSketch) MODELPROV__V1__VOCAB_SKETCH__INIT;
                CHECK(mp_vocab_sketch_build(m->tokenizer, &sk[n]) == 0);
                folder[n] = f;
                ms[n++] = m;
        }
        CHECK(n >= 4);

        double sum = 0, max = 0;
        size_t pairs = 0;
        for (size_t i = 0; i < n; i++)
                for (size_t j = i + 1; j < n; j++) {
                        double exact = mp_vocab_jaccard(ms[i]->tokenizer, ms[j]->tokenizer);
                        double est = mp_vocab_sketch_jaccard(&sk[i], &sk[j]);
                        CHECK(!isnan(exact) && !isnan(est));
                        double err = fabs(exact - est);
                        fprintf(stderr, "voa %-28s %-28s exact %.4f sketch %.4f\n", folder[i], folder[j], exact, est);
                        sum += err;
                        max = err > max ? err : max;
                        pairs++;
                }
        fprintf(stderr, "voa sketch: %zu vocabularies, %zu pairs, mean abs error %.4f, max %.4f\n", n, pairs,
                sum / (double) pairs, max);
        CHECK(max <= 0.1);
        for (size_t i = 0; i < n; i++) {
                free(sk[i].mins);
                mp_model_free(ms[i]);
        }
        json_decref(models);
        free(mj);
}

/* ---- anchors ------------------------------------------------------------------------- */

static void test_rng(void) {
        /* Values from numpy 1.24 (RandomState(42)). */
        mp_mt19937 g;
        mp_mt19937_seed(&g, 42);
        CHECK_EQ(mp_mt19937_next(&g), 1608637542u);
        uint32_t perm[10];
        mp_np_permutation(42, perm, 10);
        static const uint32_t want[10] = { 8, 1, 5, 0, 7, 2, 9, 4, 3, 6 };
        CHECK(memcmp(perm, want, sizeof(want)) == 0);

        /* No tokenizer: choice(range(50000), 64, replace=False). */
        mp_anchor out[MP_EAS_ANCHORS];
        CHECK_EQ(mp_anchors_select(NULL, 151936, out), 64);
        static const uint32_t first[8] = { 33553, 9427, 199, 12447, 39489, 42724, 10822, 49498 };
        for (size_t i = 0; i < 8; i++)
                CHECK_EQ(out[i].id, first[i]);
        CHECK_EQ(out[63].id, 34657);
        CHECK_EQ(mp_anchors_select(NULL, 10, out), 10);
        CHECK_EQ(mp_anchors_select(NULL, 0, out), 0);
}

static void test_anchors_synthetic(void) {
        /* A SentencePiece-like vocabulary, 70% Latin / 30% CJK letters. */
        const char *toks[256];
        size_t n = 0;
        toks[n++] = "<unk>";
        toks[n++] = "\xe2\x96\x81";
        toks[n++] = "\xe2\x96\x81the";
        toks[n++] = "\xe2\x96\x81of";
        toks[n++] = "\xe2\x96\x81\xe7\x9a\x84";        /* ▁的 */
        toks[n++] = "0";
        static char latin[70][4], cjk[30][4];
        for (size_t i = 0; i < 70; i++) {
                snprintf(latin[i], sizeof(latin[i]), "q%c", (char) ('A' + i % 26));
                latin[i][2] = (char) ('a' + i / 26);
                latin[i][3] = 0;
                toks[n++] = latin[i];
        }
        for (size_t i = 0; i < 30; i++) {
                /* U+4E00 + 0x100 + i, distinct from the anchor words. */
                uint32_t c = 0x4f00 + (uint32_t) i;
                cjk[i][0] = (char) (0xe0 | (c >> 12));
                cjk[i][1] = (char) (0x80 | ((c >> 6) & 0x3f));
                cjk[i][2] = (char) (0x80 | (c & 0x3f));
                cjk[i][3] = 0;
                toks[n++] = cjk[i];
        }
        mp_tokenizer *t = make_tokenizer(toks, n);
        t->kind = MP_TOK_SPM_UNIGRAM;
        t->unk_token = strdup("<unk>");

        mp_anchor out[MP_EAS_ANCHORS];
        int k = mp_anchors_select(t, n, out);
        CHECK_EQ(k, (int) n < 64 ? (int) n : 64);
        /* "0" → "▁" (no "▁0"), as the real encoder's first piece; the
         * other punctuation also starts with "▁" and is dropped as a
         * duplicate; Latin: ▁the, ▁of; CJK: ▁的; then the random fill. */
        CHECK_EQ(out[0].id, 1);
        CHECK_EQ(out[1].id, 2);
        CHECK_EQ(out[2].id, 3);
        CHECK_EQ(out[3].id, 4);
        CHECK(out[4].id > 4);
        for (int i = 0; i < k; i++)
                for (int j = i + 1; j < k; j++)
                        CHECK(out[i].id != out[j].id);
        mp_tokenizer_free(t);
}

static void test_anchors_zoo(void) {
        const char *zoo = test_zoo();
        if (!zoo)
                return;
        mp_model *l = open_zoo(zoo, "llama/base-1"), *g = open_zoo(zoo, "gpt2/base-1");
        mp_anchor a[MP_EAS_ANCHORS], b[MP_EAS_ANCHORS];
        CHECK_EQ(mp_anchors_select(l->tokenizer, 4000, a), 64);
        CHECK_EQ(mp_anchors_select(g->tokenizer, 2837, b), 64);
        /* Dummy prefix: every script anchor starts with "▁". */
        CHECK(a[0].token && strncmp(a[0].token, "\xe2\x96\x81", 3) == 0);
        /* Byte-level: "0" and "the" are plain tokens. */
        CHECK_STREQ(b[0].token, "0");
        bool the = false;
        for (size_t i = 0; i < 40; i++)
                the = the || (b[i].token && strcmp(b[i].token, "the") == 0);
        CHECK(the);
        fprintf(stderr, "anchors llama: %s %s %s ...; gpt2: %s %s %s ...\n", a[0].token, a[1].token, a[2].token,
                b[0].token, b[1].token, b[2].token);
        mp_model_free(l);
        mp_model_free(g);
}

int main(void) {
        RUN(test_py_format);
        RUN(test_db_hashes);
        RUN(test_mfi_configs);
        RUN(test_mfi_similarity);
        RUN(test_mfi_zoo);
        RUN(test_tfv_synthetic);
        RUN(test_tfv_zoo);
        RUN(test_tokenizer_hostile);
        RUN(test_voa_synthetic);
        RUN(test_voa_zoo);
        RUN(test_rng);
        RUN(test_anchors_synthetic);
        RUN(test_anchors_zoo);
        return 0;
}
