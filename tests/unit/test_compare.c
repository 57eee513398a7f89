/* test_compare.c - weight signals in the pass (sample positions, statistics,
 * END/LEP/NLF), compare verdicts and relations, and diff, on small models
 * written here with known values. */
#include <math.h>

#include "compare/compare.h"
#include "compare/diff.h"
#include "fingerprint/compute.h"
#include "formats/dtype.h"
#include "signals/sample.h"
#include "signals/tensor_role.h"
#include "test.h"

#define HIDDEN 32
#define VOCAB 96
#define INTER 64

typedef struct spec_tensor {
        const char *name;
        uint64_t rows, cols;    /* cols = 0: a vector of `rows` */
} spec_tensor;

static const spec_tensor model_tensors[] = {
        { "lm_head.weight", VOCAB, HIDDEN },
        { "model.embed_tokens.weight", VOCAB, HIDDEN },
        { "model.layers.0.input_layernorm.weight", HIDDEN * 2, 0 },
        { "model.layers.0.mlp.down_proj.weight", HIDDEN, INTER },
        { "model.layers.0.mlp.up_proj.weight", INTER, HIDDEN },
        { "model.layers.0.self_attn.q_proj.weight", HIDDEN, HIDDEN },
        { "model.layers.1.input_layernorm.weight", HIDDEN * 2, 0 },
        { "model.layers.1.mlp.down_proj.weight", HIDDEN, INTER },
        { "model.layers.1.mlp.up_proj.weight", INTER, HIDDEN },
        { "model.layers.1.self_attn.q_proj.weight", HIDDEN, HIDDEN },
};
#define N_TENSORS (sizeof(model_tensors) / sizeof(model_tensors[0]))

static uint64_t numel(const spec_tensor *t) {
        return t->cols ? t->rows * t->cols : t->rows;
}

/* Writes an F32 safetensors file; scale[k] multiplies tensor k, skip names a
 * tensor to leave out (NULL: none). */
static char *write_model(unsigned seed, const float scale[N_TENSORS], const char *skip) {
        test_buf h = {0}, d = {0};
        uint64_t off = 0;
        put(&h, "{", 1);
        bool first = true;
        for (size_t k = 0; k < N_TENSORS; k++) {
                const spec_tensor *t = &model_tensors[k];
                if (skip && strcmp(t->name, skip) == 0)
                        continue;
                char *e = NULL;
                uint64_t n = numel(t);
                if (t->cols)
                        CHECK(asprintf(&e, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%llu,%llu],\"data_offsets\":[%llu,%llu]}",
                                       first ? "" : ",", t->name, (unsigned long long) t->rows,
                                       (unsigned long long) t->cols, (unsigned long long) off,
                                       (unsigned long long) (off + 4 * n)) > 0);
                else
                        CHECK(asprintf(&e, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%llu],\"data_offsets\":[%llu,%llu]}",
                                       first ? "" : ",", t->name, (unsigned long long) t->rows,
                                       (unsigned long long) off, (unsigned long long) (off + 4 * n)) > 0);
                put(&h, e, strlen(e));
                free(e);
                first = false;
                for (uint64_t i = 0; i < n; i++) {
                        /* norm weights near 1, as trained ones are */
                        float v = t->cols ? test_value(seed, k, i) * 0.05f : 1.0f + 0.1f * test_value(seed, k, i);
                        v *= scale ? scale[k] : 1.0f;
                        put(&d, &v, 4);
                }
                off += 4 * n;
        }
        return test_write_safetensors(&h, &d);
}

static mp_fingerprint *fingerprint_of(const char *path) {
        mp_error err;
        mp_error_clear(&err);
        mp_model *m = NULL;
        CHECK(mp_model_open(path, NULL, &m, &err) == 0);
        mp_pass_options po = { .jobs = 1 };
        mp_fingerprint *fp = NULL;
        CHECK(mp_fingerprint_compute(m, &po, &fp, &err) == 0);
        mp_model_free(m);
        return fp;
}

static const Modelprov__V1__TensorDigest *record_tensor(const mp_fingerprint *fp, const char *name) {
        for (size_t i = 0; i < fp->n_tensors; i++)
                if (strcmp(fp->tensors[i]->name, name) == 0)
                        return fp->tensors[i];
        return NULL;
}

/* Roles and blocks from the names of several model families. */
static void test_tensor_roles(void) {
        static const struct { const char *name; mp_tensor_role role; int layer; } cases[] = {
                { "model.layers.3.self_attn.q_proj.weight", MP_TR_ATTN_Q, 3 },
                { "model.layers.3.self_attn.k_proj.bias", MP_TR_ATTN_K, 3 },
                { "model.layers.12.mlp.down_proj.weight", MP_TR_MLP_DOWN, 12 },
                { "model.layers.0.mlp.gate_up_proj.weight", MP_TR_MLP_GATE_UP, 0 },
                { "model.layers.0.input_layernorm.weight", MP_TR_NORM, 0 },
                { "transformer.h.2.attn.c_attn.weight", MP_TR_ATTN_QKV, 2 },
                { "transformer.h.2.attn.c_proj.weight", MP_TR_ATTN_O, 2 },
                { "transformer.h.2.mlp.c_proj.weight", MP_TR_MLP_DOWN, 2 },
                { "transformer.h.2.mlp.c_fc.bias", MP_TR_MLP_UP, 2 },
                { "transformer.h.2.ln_1.weight", MP_TR_NORM, 2 },
                { "gpt_neox.layers.1.attention.query_key_value.weight", MP_TR_ATTN_QKV, 1 },
                { "gpt_neox.layers.1.attention.dense.weight", MP_TR_ATTN_O, 1 },
                { "gpt_neox.layers.1.mlp.dense_4h_to_h.weight", MP_TR_MLP_DOWN, 1 },
                { "bert.encoder.layer.4.attention.self.query.weight", MP_TR_ATTN_Q, 4 },
                { "bert.encoder.layer.4.intermediate.dense.weight", MP_TR_OTHER, 4 },
                { "model.embed_tokens.weight", MP_TR_EMBED, -1 },
                { "transformer.wte.weight", MP_TR_EMBED, -1 },
                { "transformer.wpe.weight", MP_TR_POS_EMBED, -1 },
                { "lm_head.weight", MP_TR_LM_HEAD, -1 },
                { "model.norm.weight", MP_TR_NORM, -1 },
                { "transformer.ln_f.bias", MP_TR_NORM, -1 },
                { "model.layers.x.self_attn.q_proj.weight", MP_TR_OTHER, -1 },  /* no block index */
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                mp_tensor_kind k = mp_tensor_kind_of(cases[i].name);
                if (k.role != cases[i].role || k.layer != cases[i].layer)
                        fprintf(stderr, "%s: role %s layer %d\n", cases[i].name, mp_tensor_role_name(k.role), k.layer);
                CHECK_EQ(k.role, cases[i].role);
                CHECK_EQ(k.layer, cases[i].layer);
        }
        CHECK(mp_tensor_kind_of("model.layers.3.self_attn.k_proj.bias").is_bias);
}

/* The stored-order mapping undoes llama.cpp's per-head RoPE row interleave
 * and a converter's transpose. */
static void test_stored_index(void) {
        enum { HEADS = 2, HD = 4, ROWS = HEADS * HD, COLS = 3 };
        float hf[ROWS * COLS], stored[ROWS * COLS];
        for (int r = 0; r < ROWS; r++)
                for (int c = 0; c < COLS; c++)
                        hf[r * COLS + c] = (float) (r * 10 + c);
        /* llama.cpp: view each head's rows as [2, HD/2], store as [HD/2, 2] */
        for (int h = 0; h < HEADS; h++)
                for (int j = 0; j < 2; j++)
                        for (int i = 0; i < HD / 2; i++)
                                for (int c = 0; c < COLS; c++)
                                        stored[(h * HD + 2 * i + j) * COLS + c] = hf[(h * HD + j * HD / 2 + i) * COLS + c];
        mp_tensor t = { .n_dims = 2, .shape = { ROWS, COLS }, .n_elements = ROWS * COLS,
                        .flags = MP_TENSOR_ROPE_PERMUTED };
        for (uint64_t p = 0; p < ROWS * COLS; p++)
                CHECK(stored[mp_sample_stored_index(&t, HEADS, p)] == hf[p]);

        /* transposed: stored [COLS, ROWS] of the HF [ROWS, COLS] matrix */
        mp_tensor tt = { .n_dims = 2, .shape = { COLS, ROWS }, .n_elements = ROWS * COLS,
                         .flags = MP_TENSOR_TRANSPOSED };
        for (int r = 0; r < ROWS; r++)
                for (int c = 0; c < COLS; c++)
                        stored[c * ROWS + r] = hf[r * COLS + c];
        for (uint64_t p = 0; p < ROWS * COLS; p++)
                CHECK(stored[mp_sample_stored_index(&tt, HEADS, p)] == hf[p]);
}

/* Every finite half value survives f16 -> f32 -> f16; ties go to even. */
static void test_f16_round_trip(void) {
        for (uint32_t h = 0; h < 0x10000; h++) {
                if ((h & 0x7c00) == 0x7c00)
                        continue;
                CHECK_EQ(mp_f32_to_f16(mp_f16_to_f32((uint16_t) h)), h);
        }
        CHECK_EQ(mp_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);           /* tie, even below */
        CHECK_EQ(mp_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);           /* tie, even above */
        CHECK_EQ(mp_f32_to_f16(1e9f), 0x7c00);                         /* overflow: inf */
        CHECK(mp_f32_to_f16(NAN) > 0x7c00);
}

/* Statistics, samples, END, LEP and NLF against values computed here. */
static void test_collected_signals(void) {
        char *path = write_model(1, NULL, NULL);
        mp_fingerprint *fp = fingerprint_of(path);

        for (size_t k = 0; k < N_TENSORS; k++) {
                const spec_tensor *st = &model_tensors[k];
                const Modelprov__V1__TensorDigest *t = record_tensor(fp, st->name);
                CHECK(t);
                double sum = 0, sq = 0;
                uint64_t n = numel(st);
                for (uint64_t i = 0; i < n; i++) {
                        double v = st->cols ? test_value(1, k, i) * 0.05f : 1.0f + 0.1f * test_value(1, k, i);
                        sum += v;
                        sq += v * v;
                }
                CHECK(fabs(t->l2 - sqrt(sq)) < 1e-5 * sqrt(sq));
                CHECK(fabs(t->mean - sum / n) < 1e-6);
                size_t ns = t->sample.len / 2;
                CHECK(ns == (n < 64 ? n : strstr(st->name, "embed") || strstr(st->name, "lm_head") ? (n < 256 ? n : 256) : 64));
                uint64_t shape[2] = { st->rows, st->cols };
                for (size_t j = 0; j < ns; j++) {
                        uint64_t p = mp_sample_position(shape, st->cols ? 2 : 1, n, j);
                        float want = st->cols ? test_value(1, k, p) * 0.05f : 1.0f + 0.1f * test_value(1, k, p);
                        uint16_t got = (uint16_t) (t->sample.data[2 * j] | t->sample.data[2 * j + 1] << 8);
                        CHECK_EQ(got, mp_f32_to_f16(want));
                }
        }

        const Modelprov__V1__Signals *s = fp->signals;
        CHECK(s && s->has_weights);
        CHECK_EQ(s->n_end_histogram, 20);
        double hsum = 0;
        for (size_t b = 0; b < 20; b++)
                hsum += s->end_histogram[b];
        CHECK(fabs(hsum - 1) < 1e-5);
        CHECK(s->end_min > 0 && s->end_max >= s->end_min);
        CHECK_EQ(s->n_lep, 2);
        CHECK(fmax(s->lep[0], s->lep[1]) == 1.0f);
        CHECK_STREQ(s->nlf_mode, "direct");
        CHECK_EQ(s->nlf_vectors, 2);
        CHECK_EQ(s->n_nlf, 2 * HIDDEN * 2);
        CHECK(s->nlf[0] == 1.0f + 0.1f * test_value(1, 2, 0));   /* layer 0's norm first */
        CHECK_EQ(s->n_eas_self_sim, s->n_eas_ids * (s->n_eas_ids - 1) / 2);
        CHECK(s->n_eas_ids >= 16);

        mp_fingerprint_free(fp);
        free(path);
}

static void compare_ok(const mp_fingerprint *a, const mp_fingerprint *b, mp_comparison *c) {
        CHECK(mp_compare(a, b, NULL, c) == 0);
}

static void test_verdicts(void) {
        char *pa = write_model(1, NULL, NULL), *pb = write_model(2, NULL, NULL);
        float scale[N_TENSORS];
        for (size_t k = 0; k < N_TENSORS; k++)
                scale[k] = strstr(model_tensors[k].name, "q_proj") ? 0.5f : 1.0f;
        char *pr = write_model(1, scale, NULL);
        char *pp = write_model(1, NULL, "model.layers.1.self_attn.q_proj.weight");
        mp_fingerprint *a = fingerprint_of(pa), *b = fingerprint_of(pb), *r = fingerprint_of(pr), *p = fingerprint_of(pp);
        mp_comparison c;

        compare_ok(a, a, &c);
        CHECK_EQ(c.verdict, MP_VERDICT_CONFIRMED);
        CHECK_STREQ(c.relation, "identical copy");
        CHECK(c.identity_score == 1.0);
        CHECK(c.signal[MP_SIG_TENSOR_IDENTITY] == 1.0);

        /* independent values: nothing in common */
        compare_ok(a, b, &c);
        CHECK_EQ(c.verdict, MP_VERDICT_NOT_MATCHED);
        CHECK_STREQ(c.relation, "unrelated");
        CHECK(c.identity_score < 0.3);
        CHECK_EQ(c.tensors_identical, 0);

        /* a rescale keeps every correlation and moves two tensors' norms */
        compare_ok(a, r, &c);
        CHECK(c.verdict >= MP_VERDICT_HIGH);
        CHECK_EQ(c.tensors_scaled, 2);
        CHECK(c.signal[MP_SIG_LAYER_VALUES] > 0.99);
        CHECK_STREQ(c.relation, "rescaled copy (function-preserving)");

        /* JSON contract */
        json_t *j = mp_comparison_to_json(&c);
        CHECK(j);
        CHECK(json_is_string(json_object_get(j, "verdict")));
        CHECK(json_is_number(json_object_get(j, "identity_score")));
        CHECK(json_is_object(json_object_get(j, "signals")));
        CHECK(json_object_get(json_object_get(j, "signals"), "eas"));
        json_decref(j);

        /* diff: the rescaled tensors changed by exactly the scale, a removed one is only in A */
        mp_diff d;
        CHECK(mp_diff_records(a, r, &d) == 0);
        CHECK_EQ(d.count[MP_DIFF_CHANGED], 2);
        CHECK_EQ(d.count[MP_DIFF_IDENTICAL], N_TENSORS - 2);
        for (size_t i = 0; i < d.n_entries; i++)
                if (d.entries[i].status == MP_DIFF_CHANGED)
                        CHECK(fabs(d.entries[i].rel_change - 0.5) < 1e-3);
        mp_diff_free(&d);
        CHECK(mp_diff_records(a, p, &d) == 0);
        CHECK_EQ(d.count[MP_DIFF_ONLY_A], 1);
        CHECK_EQ(d.count[MP_DIFF_ONLY_B], 0);
        CHECK_EQ(d.count[MP_DIFF_IDENTICAL], N_TENSORS - 1);
        mp_diff_free(&d);

        mp_fingerprint_free(a);
        mp_fingerprint_free(b);
        mp_fingerprint_free(r);
        mp_fingerprint_free(p);
        free(pa);
        free(pb);
        free(pr);
        free(pp);
}

/* A record written to disk and read back compares as the original. */
static void test_record_round_trip(void) {
        char *pa = write_model(3, NULL, NULL);
        mp_fingerprint *a = fingerprint_of(pa), *back = NULL;
        char *dir = test_tmpdir(), *fpath = test_path(dir, "a.fp");
        mp_error err;
        mp_error_clear(&err);
        CHECK(mp_fingerprint_write(a, fpath, &err) == 0);
        CHECK(mp_fingerprint_read(fpath, &back, &err) == 0);
        mp_comparison c;
        compare_ok(a, back, &c);
        CHECK_EQ(c.verdict, MP_VERDICT_CONFIRMED);
        CHECK(c.signal[MP_SIG_EAS] == 1.0);
        CHECK(c.signal[MP_SIG_END] == 1.0);
        CHECK(c.signal[MP_SIG_LEP] == 1.0);
        mp_fingerprint_free(a);
        mp_fingerprint_free(back);
        free(pa);
        free(dir);
        free(fpath);
}

/* Records come from catalogs and peers: inconsistent ones compare without
 * crashing and without inventing evidence. */
static void test_hostile_records(void) {
        char *pa = write_model(4, NULL, NULL);
        mp_fingerprint *good = fingerprint_of(pa);
        mp_fingerprint *bad = fingerprint_of(pa);

        /* self-similarity shorter than the anchor count says; NLF claims more
         * vectors than values; LEP empty; an odd-length sample; a shape of 9
         * dimensions; a block index far beyond the others */
        bad->signals->n_eas_self_sim = 3;
        bad->signals->nlf_vectors = 1000000;
        bad->signals->n_lep = 0;
        bad->tensors[0]->sample.len = 7;
        uint64_t *shape9 = calloc(9, sizeof(uint64_t));
        CHECK(shape9);
        for (size_t i = 0; i < 9; i++)
                shape9[i] = 2;
        free(bad->tensors[1]->shape);
        bad->tensors[1]->shape = shape9;
        bad->tensors[1]->n_shape = 9;
        free(bad->tensors[2]->name);
        bad->tensors[2]->name = strdup("model.layers.99999.mlp.up_proj.weight");
        CHECK(bad->tensors[2]->name);

        mp_comparison c;
        compare_ok(good, bad, &c);
        CHECK(isnan(c.signal[MP_SIG_EAS]));
        CHECK(isnan(c.signal[MP_SIG_LEP]));
        CHECK(c.identity_score >= 0 && c.identity_score <= 1);
        compare_ok(bad, good, &c);
        compare_ok(bad, bad, &c);
        mp_diff d;
        CHECK(mp_diff_records(bad, good, &d) == 0);
        json_decref(mp_diff_to_json(&d));
        mp_diff_free(&d);

        /* a record without any signals (an older or foreign record) */
        Modelprov__V1__Signals *saved = bad->signals;
        bad->signals = NULL;
        compare_ok(good, bad, &c);
        CHECK(!c.weights);
        CHECK(isnan(c.identity_score));
        CHECK_EQ(c.verdict, MP_VERDICT_NOT_MATCHED);
        bad->signals = saved;

        mp_fingerprint_free(good);
        mp_fingerprint_free(bad);
        free(pa);
}

/* A query remembers the tensor names of the records it meets (a blast
 * radius meets the same few hundred names thousands of times): its
 * results are mp_compare()'s, for names met before, for new ones, and
 * after more names than it keeps (a stream of distinct names from hostile
 * records). */
static void test_query_remembers_names(void) {
        char *pa = write_model(1, NULL, NULL);
        float scale[N_TENSORS];
        for (size_t k = 0; k < N_TENSORS; k++)
                scale[k] = strstr(model_tensors[k].name, "q_proj") ? 0.5f : 1.0f;
        char *pr = write_model(1, scale, NULL);
        mp_fingerprint *a = fingerprint_of(pa), *b = fingerprint_of(pr);
        mp_compare_query *q = NULL;
        CHECK_EQ(mp_compare_query_new(a, &q), 0);

        char *original[N_TENSORS];
        char renamed[N_TENSORS][96];
        CHECK_EQ(b->n_tensors, N_TENSORS);
        for (size_t i = 0; i < N_TENSORS; i++)
                original[i] = b->tensors[i]->name;
        size_t scaled_seen = 0;
        for (unsigned round = 0; round < 1200; round++) {
                /* Odd rounds: names never met before (12,000 in all); even
                 * rounds: the model's own. */
                for (size_t i = 0; i < N_TENSORS; i++) {
                        snprintf(renamed[i], sizeof(renamed[i]), "r%u.%s", round, original[i]);
                        b->tensors[i]->name = round % 2 ? renamed[i] : original[i];
                }
                mp_comparison with_query, fresh;
                CHECK_EQ(mp_compare_query_run(q, b, NULL, &with_query), 0);
                CHECK_EQ(mp_compare(a, b, NULL, &fresh), 0);
                CHECK(memcmp(&with_query, &fresh, sizeof(fresh)) == 0);
                scaled_seen += with_query.tensors_scaled;
                CHECK_EQ(with_query.tensors_scaled, round % 2 ? 0u : 2u);
        }
        CHECK_EQ(scaled_seen, 1200);
        for (size_t i = 0; i < N_TENSORS; i++)
                b->tensors[i]->name = original[i];

        mp_compare_query_free(q);
        mp_fingerprint_free(a);
        mp_fingerprint_free(b);
        free(pa);
        free(pr);
}

int main(void) {
        RUN(test_tensor_roles);
        RUN(test_stored_index);
        RUN(test_f16_round_trip);
        RUN(test_collected_signals);
        RUN(test_verdicts);
        RUN(test_query_remembers_names);
        RUN(test_record_round_trip);
        RUN(test_hostile_records);
        return 0;
}
