/* test_incremental.c - incremental fingerprints and the gentler pass.
 *
 * A model's record rebuilt from the previous record and the files that
 * changed must be byte for byte the record a full compute gives, while
 * reading only the changed files (asserted on bytes read).  Also: the stop
 * flag, the read-rate cap (lower bounds on time only) and the shared rate
 * limiter. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "fingerprint/compute.h"
#include "fingerprint/render_json.h"
#include "pass/pass.h"
#include "model_fixture.h"
#include "test.h"
#include "util/rate_limit.h"

#define ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))
#define HIDDEN 64
#define VOCAB 256
#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"
#define INDEX "model.safetensors.index.json"

/* --- building models ------------------------------------------------------- */

typedef struct spec {
        const char *name;
        uint64_t rows, cols;    /* cols 0: a vector of rows elements */
} spec;

/* Shard 1 holds the embedding and layer 0, shard 2 layer 1, the final norm
 * and the LM head: norm vectors in both shards. */
static const spec shard1[] = {
        { "model.embed_tokens.weight", VOCAB, HIDDEN },
        { "model.layers.0.input_layernorm.weight", HIDDEN, 0 },
        { "model.layers.0.self_attn.q_proj.weight", HIDDEN, HIDDEN },
        { "model.layers.0.mlp.down_proj.weight", HIDDEN, 2 * HIDDEN },
        { "model.layers.0.post_attention_layernorm.weight", HIDDEN, 0 },
};
static const spec shard2[] = {
        { "model.layers.1.input_layernorm.weight", HIDDEN, 0 },
        { "model.layers.1.self_attn.q_proj.weight", HIDDEN, HIDDEN },
        { "model.layers.1.mlp.down_proj.weight", HIDDEN, 2 * HIDDEN },
        { "model.norm.weight", HIDDEN, 0 },
        { "lm_head.weight", VOCAB, HIDDEN },
};
/* shard 2 with one more norm vector: NLF is laid out for other vectors */
static const spec shard2_more[] = {
        { "model.layers.1.input_layernorm.weight", HIDDEN, 0 },
        { "model.layers.1.post_attention_layernorm.weight", HIDDEN, 0 },
        { "model.layers.1.self_attn.q_proj.weight", HIDDEN, HIDDEN },
        { "model.layers.1.mlp.down_proj.weight", HIDDEN, 2 * HIDDEN },
        { "model.norm.weight", HIDDEN, 0 },
        { "lm_head.weight", VOCAB, HIDDEN },
};

/* A safetensors file of F32 tensors with values of training run seed (norm
 * vectors around 1, as trained ones are). */
static void write_shard(const char *dir, const char *name, const spec *s, size_t n, unsigned seed) {
        test_buf h = {0}, d = {0}, f = {0};
        put(&h, "{", 1);
        for (size_t i = 0; i < n; i++) {
                uint64_t elems = s[i].rows * (s[i].cols ? s[i].cols : 1);
                char entry[256];
                int len = s[i].cols
                        ? snprintf(entry, sizeof(entry), "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%llu,%llu],\"data_offsets\":[%zu,%zu]}",
                                   i ? "," : "", s[i].name, (unsigned long long) s[i].rows,
                                   (unsigned long long) s[i].cols, d.n, d.n + (size_t) elems * 4)
                        : snprintf(entry, sizeof(entry), "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%llu],\"data_offsets\":[%zu,%zu]}",
                                   i ? "," : "", s[i].name, (unsigned long long) s[i].rows, d.n,
                                   d.n + (size_t) elems * 4);
                put(&h, entry, (size_t) len);
                for (uint64_t e = 0; e < elems; e++) {
                        float v = test_value(seed, i, e) * 0.1f + (s[i].cols ? 0.0f : 1.0f);
                        put(&d, &v, 4);
                }
        }
        put(&h, "}", 1);
        while (h.n % 8)
                put(&h, " ", 1);
        put_u64(&f, h.n);
        put(&f, h.p, h.n);
        put(&f, d.p, d.n);
        free(test_write(dir, name, f.p, f.n));
        free(h.p);
        free(d.p);
        free(f.p);
}

static void write_index(const char *dir, const spec *s2, size_t n2) {
        test_buf b = {0};
        const char *head = "{\"metadata\":{},\"weight_map\":{";
        put(&b, head, strlen(head));
        for (size_t i = 0; i < ELEMENTS(shard1) + n2; i++) {
                char entry[256];
                bool first = i < ELEMENTS(shard1);
                int len = snprintf(entry, sizeof(entry), "%s\"%s\":\"%s\"", i ? "," : "",
                                   first ? shard1[i].name : s2[i - ELEMENTS(shard1)].name, first ? SHARD1 : SHARD2);
                put(&b, entry, (size_t) len);
        }
        put(&b, "}}", 2);
        free(test_write(dir, INDEX, b.p, b.n));
        free(b.p);
}

static const char *CONFIG =
        "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":64,"
        "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":4,\"vocab_size\":256,"
        "\"intermediate_size\":128,\"rms_norm_eps\":1e-5,\"torch_dtype\":\"float32\"}";

static char *make_sharded(unsigned seed1, unsigned seed2) {
        char *dir = test_tmpdir();
        write_shard(dir, SHARD1, shard1, ELEMENTS(shard1), seed1);
        write_shard(dir, SHARD2, shard2, ELEMENTS(shard2), seed2);
        write_index(dir, shard2, ELEMENTS(shard2));
        free(test_write(dir, "config.json", CONFIG, strlen(CONFIG)));
        return dir;
}

static uint64_t file_size(const char *dir, const char *rel) {
        char *p = test_path(dir, rel);
        struct stat st;
        CHECK(stat(p, &st) == 0);
        free(p);
        return (uint64_t) st.st_size;
}

/* --- computing and comparing ---------------------------------------------- */

static void report(int r, const mp_error *e) {
        if (r < 0) {
                char buf[2048];
                mp_error_format(e, buf, sizeof(buf));
                fprintf(stderr, "compute: %s\n", buf);
        }
}

static mp_fingerprint *full(const char *path) {
        mp_model *m = open_ok(path);
        mp_fingerprint *fp = NULL;
        mp_error e;
        mp_error_clear(&e);
        int r = mp_fingerprint_compute(m, NULL, &fp, &e);
        report(r, &e);
        CHECK_EQ(r, 0);
        mp_model_free(m);
        return fp;
}

/* What the agent does: files whose stat did not change since `known` was
 * computed are marked digested with the digest `known` recorded. */
static void mark_known(mp_model *m, const mp_fingerprint *known, const char *const *rel, size_t n_rel) {
        for (size_t k = 0; k < n_rel; k++) {
                bool found = false;
                for (size_t i = 0; i < m->n_files && !found; i++) {
                        if (strcmp(m->files[i].rel_path, rel[k]) != 0)
                                continue;
                        for (size_t j = 0; j < known->n_files; j++)
                                if (strcmp(known->files[j]->path, rel[k]) == 0) {
                                        CHECK_EQ(known->files[j]->sha256.len, 32);
                                        memcpy(m->files[i].sha256, known->files[j]->sha256.data, 32);
                                        m->files[i].digested = true;
                                        found = true;
                                }
                }
                CHECK(found);
        }
}

static mp_fingerprint *incremental(const char *path, const mp_fingerprint *known, const char *const *rel,
                                   size_t n_rel, const mp_fingerprint *previous, uint64_t *bytes) {
        mp_model *m = open_ok(path);
        mark_known(m, known, rel, n_rel);
        mp_fingerprint *fp = NULL;
        mp_error e;
        mp_error_clear(&e);
        *bytes = UINT64_MAX;
        int r = mp_fingerprint_compute_incremental(m, &(mp_pass_options) { .jobs = 2 }, previous, &fp, bytes, &e);
        report(r, &e);
        CHECK_EQ(r, 0);
        for (size_t i = 0; i < m->n_files; i++)
                CHECK(m->files[i].digested);
        mp_model_free(m);
        return fp;
}

/* Byte-identical packed records; on a difference, the first differing
 * line of their JSON renderings says where. */
static void check_same_record(const mp_fingerprint *a, const mp_fingerprint *b) {
        uint8_t *pa = NULL, *pb = NULL;
        size_t na, nb;
        CHECK(mp_fingerprint_pack(a, &pa, &na) == 0);
        CHECK(mp_fingerprint_pack(b, &pb, &nb) == 0);
        if (na != nb || memcmp(pa, pb, na) != 0) {
                json_t *ja = mp_fingerprint_to_json(a), *jb = mp_fingerprint_to_json(b);
                char *sa = json_dumps(ja, JSON_INDENT(1) | JSON_SORT_KEYS);
                char *sb = json_dumps(jb, JSON_INDENT(1) | JSON_SORT_KEYS);
                size_t line = 1, i = 0;
                for (; sa[i] && sa[i] == sb[i]; i++)
                        line += sa[i] == '\n';
                fprintf(stderr, "records differ at JSON line %zu:\n--- full\n%.300s\n--- incremental\n%.300s\n", line,
                        sa + (i > 200 ? i - 200 : 0), sb + (i > 200 ? i - 200 : 0));
                free(sa);
                free(sb);
                json_decref(ja);
                json_decref(jb);
        }
        CHECK_EQ(na, nb);
        CHECK(memcmp(pa, pb, na) == 0);
        free(pa);
        free(pb);
}

/* The weight signals this test is about are really there (a record without
 * them would compare equal too easily). */
static void check_has_signals(const mp_fingerprint *fp) {
        CHECK(fp->signals);
        CHECK_EQ(fp->signals->n_end_histogram, 20);
        CHECK(fp->signals->n_eas_self_sim > 0);
        CHECK_EQ(fp->signals->nlf_vectors, 4);
        CHECK_EQ(fp->signals->n_lep, 2);
        for (size_t i = 0; i < fp->n_tensors; i++)
                CHECK(fp->tensors[i]->sample.len > 0);
}

/* --- tests ------------------------------------------------------------------ */

/* Shard 2 changes (new values, same names): only shard 2 is read. */
static void test_second_shard_changed(void) {
        char *dir = make_sharded(1, 1);
        mp_fingerprint *a = full(dir);
        check_has_signals(a);
        mp_fingerprint *again = full(dir);
        check_same_record(a, again);    /* full computes are deterministic */

        write_shard(dir, SHARD2, shard2, ELEMENTS(shard2), 2);
        mp_fingerprint *b_full = full(dir);
        CHECK(memcmp(a->model_digest.data, b_full->model_digest.data, 32) != 0);

        const char *known[] = { SHARD1, INDEX, "config.json" };
        uint64_t bytes;
        mp_fingerprint *b_inc = incremental(dir, a, known, ELEMENTS(known), a, &bytes);
        check_same_record(b_full, b_inc);
        CHECK_EQ(bytes, file_size(dir, SHARD2));

        mp_fingerprint_free(a);
        mp_fingerprint_free(again);
        mp_fingerprint_free(b_full);
        mp_fingerprint_free(b_inc);
        free(dir);
}

/* The shard with the embedding (END, EAS) and half the norm vectors
 * changes: only shard 1 is read, the rest comes from the previous record. */
static void test_embedding_shard_changed(void) {
        char *dir = make_sharded(1, 1);
        mp_fingerprint *a = full(dir);

        write_shard(dir, SHARD1, shard1, ELEMENTS(shard1), 3);
        mp_fingerprint *b_full = full(dir);
        CHECK(memcmp(a->signals->eas_self_sim, b_full->signals->eas_self_sim,
                     a->signals->n_eas_self_sim * sizeof(float)) != 0);

        const char *known[] = { SHARD2, INDEX, "config.json" };
        uint64_t bytes;
        mp_fingerprint *b_inc = incremental(dir, a, known, ELEMENTS(known), a, &bytes);
        check_same_record(b_full, b_inc);
        CHECK_EQ(bytes, file_size(dir, SHARD1));

        mp_fingerprint_free(a);
        mp_fingerprint_free(b_full);
        mp_fingerprint_free(b_inc);
        free(dir);
}

/* Nothing changed: nothing is read, the record is the same. */
static void test_unchanged(void) {
        char *dir = make_sharded(4, 5);
        mp_fingerprint *a = full(dir);
        const char *known[] = { SHARD1, SHARD2, INDEX, "config.json" };
        uint64_t bytes;
        mp_fingerprint *b = incremental(dir, a, known, ELEMENTS(known), a, &bytes);
        check_same_record(a, b);
        CHECK_EQ(bytes, 0);
        mp_fingerprint_free(a);
        mp_fingerprint_free(b);
        free(dir);
}

/* previous is another model's record (same file names, other content):
 * nothing can be reused, the weight files are read, the record is right. */
static void test_previous_of_other_model(void) {
        char *dir = make_sharded(6, 7);
        char *other = make_sharded(8, 9);
        mp_fingerprint *a = full(dir);
        mp_fingerprint *o = full(other);

        const char *known[] = { SHARD1, SHARD2, INDEX, "config.json" };
        uint64_t bytes;
        mp_fingerprint *b = incremental(dir, a, known, ELEMENTS(known), o, &bytes);
        check_same_record(a, b);
        CHECK_EQ(bytes, file_size(dir, SHARD1) + file_size(dir, SHARD2));

        /* and no previous record at all */
        mp_fingerprint *c = incremental(dir, a, known, ELEMENTS(known), NULL, &bytes);
        check_same_record(a, c);
        CHECK_EQ(bytes, file_size(dir, SHARD1) + file_size(dir, SHARD2));

        mp_fingerprint_free(a);
        mp_fingerprint_free(o);
        mp_fingerprint_free(b);
        mp_fingerprint_free(c);
        free(dir);
        free(other);
}

/* Shard 2 gains a norm vector: NLF is laid out for 5 vectors instead of 4,
 * so the previous record's rows do not fit; the unchanged shard's norm
 * vectors (two of HIDDEN floats) are read on their own, not the shard. */
static void test_nlf_layout_changed(void) {
        char *dir = make_sharded(1, 1);
        mp_fingerprint *a = full(dir);

        write_shard(dir, SHARD2, shard2_more, ELEMENTS(shard2_more), 1);
        write_index(dir, shard2_more, ELEMENTS(shard2_more));
        mp_fingerprint *b_full = full(dir);
        CHECK_EQ(b_full->signals->nlf_vectors, 5);

        const char *known[] = { SHARD1, "config.json" };
        uint64_t bytes;
        mp_fingerprint *b_inc = incremental(dir, a, known, ELEMENTS(known), a, &bytes);
        check_same_record(b_full, b_inc);
        CHECK_EQ(bytes, file_size(dir, SHARD2) + file_size(dir, INDEX) + 2 * HIDDEN * sizeof(float));

        mp_fingerprint_free(a);
        mp_fingerprint_free(b_full);
        mp_fingerprint_free(b_inc);
        free(dir);
}

/* A record from a tampered store: a known file's tensor is missing in it, or
 * its sample has the wrong size; that file is read, the result stays right. */
static void test_damaged_previous(void) {
        char *dir = make_sharded(1, 1);
        mp_fingerprint *a = full(dir);
        mp_fingerprint *damaged = full(dir);
        /* drop the last tensor (lm_head, shard 2) */
        damaged->n_tensors--;
        /* a shard-1 layer tensor with a short sample */
        for (size_t i = 0; i < damaged->n_tensors; i++)
                if (strcmp(damaged->tensors[i]->name, "model.layers.0.self_attn.q_proj.weight") == 0)
                        damaged->tensors[i]->sample.len -= 2;

        const char *known[] = { SHARD1, SHARD2, INDEX, "config.json" };
        uint64_t bytes;
        mp_fingerprint *b = incremental(dir, a, known, ELEMENTS(known), damaged, &bytes);
        check_same_record(a, b);
        CHECK_EQ(bytes, file_size(dir, SHARD1) + file_size(dir, SHARD2));

        damaged->n_tensors++;
        mp_fingerprint_free(a);
        mp_fingerprint_free(damaged);
        mp_fingerprint_free(b);
        free(dir);
}

/* A single-file model from the zoo (GGUF) and a hub snapshot (SHA-256 blob
 * names, still checked): unchanged, nothing read. */
static void check_zoo_unchanged(const char *rel) {
        const char *zoo = test_zoo();
        if (!zoo)
                return;
        char *path = test_path(zoo, rel);
        mp_fingerprint *a = full(path);
        CHECK(a->n_tensors > 0);
        CHECK(a->signals && a->signals->n_lep > 0);

        const char **known = calloc(a->n_files, sizeof(char *));
        CHECK(known);
        for (size_t i = 0; i < a->n_files; i++)
                known[i] = a->files[i]->path;
        uint64_t bytes;
        mp_fingerprint *b = incremental(path, a, known, a->n_files, a, &bytes);
        check_same_record(a, b);
        CHECK_EQ(bytes, 0);

        free(known);
        mp_fingerprint_free(a);
        mp_fingerprint_free(b);
        free(path);
}

static void test_zoo_gguf_unchanged(void) {
        check_zoo_unchanged("llama/base-1-q4_0/model-q4_0.gguf");
}

static void test_zoo_hub_unchanged(void) {
        check_zoo_unchanged("hub/models--zoo--llama-chained");
}

/* --- a hub snapshot with a git-SHA-1 blob name ------------------------------- */

#define REV "0123456789abcdef0123456789abcdef01234567"

static void hex_of(const uint8_t *d, size_t n, char *out) {
        for (size_t i = 0; i < n; i++)
                sprintf(out + 2 * i, "%02x", d[i]);
}

static void digest_hex(const EVP_MD *md, const char *prefix, size_t prefix_len, const void *p, size_t n,
                       char *out) {
        uint8_t d[EVP_MAX_MD_SIZE];
        unsigned len = 0;
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        CHECK(ctx && EVP_DigestInit_ex(ctx, md, NULL) == 1);
        CHECK(EVP_DigestUpdate(ctx, prefix, prefix_len) == 1 && EVP_DigestUpdate(ctx, p, n) == 1);
        CHECK(EVP_DigestFinal_ex(ctx, d, &len) == 1);
        EVP_MD_CTX_free(ctx);
        hex_of(d, len, out);
}

/* Puts content into blobs/ under its name (SHA-256, git SHA-1, or `name`
 * when given) and links snapshots/REV/rel to it. */
static void hub_put(const char *repo, const char *rel, const void *p, size_t n, bool git, const char *name) {
        char hex[65], hdr[64];
        if (name)
                snprintf(hex, sizeof(hex), "%s", name);
        else if (git)
                digest_hex(EVP_sha1(), hdr, (size_t) snprintf(hdr, sizeof(hdr), "blob %zu", n) + 1, p, n, hex);
        else
                digest_hex(EVP_sha256(), "", 0, p, n, hex);
        char *blobs = test_path(repo, "blobs");
        free(test_write(blobs, hex, p, n));
        char *snap = test_path(repo, "snapshots/" REV);
        char *link = test_path(snap, rel);
        char target[128];
        snprintf(target, sizeof(target), "../../blobs/%s", hex);
        CHECK(symlink(target, link) == 0);
        free(link);
        free(snap);
        free(blobs);
}

static char *make_hub(const char *config_blob_name) {
        char *root = test_tmpdir();
        char *repo = test_path(root, "models--org--tiny");
        const char *dirs[] = { "", "/blobs", "/snapshots", "/snapshots/" REV, "/refs" };
        for (size_t i = 0; i < ELEMENTS(dirs); i++) {
                char d[4096];
                snprintf(d, sizeof(d), "%s%s", repo, dirs[i]);
                CHECK(mkdir(d, 0755) == 0);
        }
        char *refs = test_path(repo, "refs");
        free(test_write(refs, "main", REV, strlen(REV)));

        char *tmp = test_tmpdir();
        write_shard(tmp, "w.safetensors", shard1, ELEMENTS(shard1), 11);
        char *w = test_path(tmp, "w.safetensors");
        size_t n;
        char *weights = test_read(w, &n);
        hub_put(repo, "model.safetensors", weights, n, false, NULL);
        hub_put(repo, "config.json", CONFIG, strlen(CONFIG), true, config_blob_name);
        free(weights);
        free(w);
        free(tmp);
        free(refs);
        free(root);
        return repo;
}

static size_t count_mismatches(const mp_fingerprint *fp) {
        size_t n = 0;
        for (size_t i = 0; i < fp->n_findings; i++)
                n += strstr(fp->findings[i]->detail, "git SHA-1") != NULL;
        return n;
}

/* A known file named by git SHA-1 is not read when the previous record shows
 * its name checked out; a name that did not (a tampered blob) is checked
 * again, so the finding stays. */
static void test_hub_git_names(void) {
        const char *known[] = { "model.safetensors", "config.json" };
        uint64_t bytes;

        char *good = make_hub(NULL);
        mp_fingerprint *a = full(good);
        CHECK_EQ(count_mismatches(a), 0);
        CHECK_EQ(a->n_files, 2);
        mp_fingerprint *b = incremental(good, a, known, ELEMENTS(known), a, &bytes);
        check_same_record(a, b);
        CHECK_EQ(bytes, 0);
        mp_fingerprint_free(b);
        /* without a previous record, the weights and the git-named config
         * are read */
        b = incremental(good, a, known, ELEMENTS(known), NULL, &bytes);
        check_same_record(a, b);
        CHECK_EQ(bytes, a->total_bytes);
        mp_fingerprint_free(b);
        mp_fingerprint_free(a);

        char *bad = make_hub("0000000000000000000000000000000000000bad");
        a = full(bad);
        CHECK_EQ(count_mismatches(a), 1);
        b = incremental(bad, a, known, ELEMENTS(known), a, &bytes);
        check_same_record(a, b);
        CHECK_EQ(bytes, strlen(CONFIG));
        mp_fingerprint_free(b);
        mp_fingerprint_free(a);
        free(good);
        free(bad);
}

/* A file of one F32 tensor of `elems` values. */
static char *make_single(uint64_t elems, unsigned seed) {
        char *dir = test_tmpdir();
        spec s = { "model.layers.0.mlp.down_proj.weight", elems / 1024, 1024 };
        write_shard(dir, "model.safetensors", &s, 1, seed);
        return dir;
}

typedef struct stopper {
        volatile sig_atomic_t stop;
        unsigned chunks;
        unsigned chunks_after_stop;
} stopper;

static void stop_after_first_chunk(void *userdata, uint64_t done, uint64_t total) {
        (void) done;
        (void) total;
        stopper *s = userdata;
        if (s->stop)
                s->chunks_after_stop++;
        s->chunks++;
        s->stop = 1;
}

/* A stop request ends the pass within one chunk, with -ECANCELED. */
static void test_stop(void) {
        char *dir = make_single(1 << 20, 1);    /* 4 MiB */
        mp_model *m = open_ok(dir);
        stopper s = {0};
        mp_pass_options o = { .jobs = 1, .chunk_bytes = 64 * 1024, .stop = &s.stop,
                              .progress = stop_after_first_chunk, .progress_userdata = &s };
        mp_fingerprint *fp = NULL;
        mp_error e;
        mp_error_clear(&e);
        uint64_t bytes = 0;
        CHECK_EQ(mp_fingerprint_compute_incremental(m, &o, NULL, &fp, &bytes, &e), -ECANCELED);
        CHECK(!fp);
        CHECK_EQ(s.chunks, 1);
        CHECK_EQ(s.chunks_after_stop, 0);
        CHECK(!m->files[0].digested);

        /* stopped before it starts: nothing read */
        s = (stopper) { .stop = 1 };
        mp_pass_result res;
        CHECK_EQ(mp_pass_run(m, &o, &res, &e), -ECANCELED);
        CHECK_EQ(s.chunks, 0);
        mp_model_free(m);
        free(dir);
}

static double now_sec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t pass_bytes(const char *dir, const mp_pass_options *o) {
        mp_model *m = open_ok(dir);
        mp_pass_result res;
        mp_error e;
        mp_error_clear(&e);
        CHECK_EQ(mp_pass_run(m, o, &res, &e), 0);
        uint64_t n = res.bytes_read;
        for (size_t i = 0; i < m->n_tensors; i++)
                CHECK(res.tensor_done[i]);
        mp_pass_result_free(&res);
        mp_model_free(m);
        return n;
}

/* The cap is a lower bound on time: 4 MiB at 8 MiB/s takes >= 0.5 s (0.4 s
 * asserted: sleeping can be late, never early). */
static void test_rate_cap(void) {
        char *dir = make_single(1 << 20, 2);
        mp_pass_options o = { .jobs = 2, .max_bytes_per_sec = 8u << 20 };
        double t0 = now_sec();
        uint64_t n = pass_bytes(dir, &o);
        double dt = now_sec() - t0;
        fprintf(stderr, "%llu bytes at 8 MiB/s: %.3f s\n", (unsigned long long) n, dt);
        CHECK(n >= 4u << 20);
        CHECK(dt >= 0.4);
        free(dir);
}

typedef struct shared_job {
        const char *dir;
        mp_rate_limit *rl;
        uint64_t bytes;
} shared_job;

static void *shared_pass(void *arg) {
        shared_job *j = arg;
        j->bytes = pass_bytes(j->dir, &(mp_pass_options) { .jobs = 1, .chunk_bytes = 256 * 1024, .rate_limit = j->rl });
        return NULL;
}

/* One limiter shared by two concurrent passes caps their sum: 2 x 2 MiB at
 * 8 MiB/s takes >= 0.5 s, where each alone would take 0.25 s. */
static void test_shared_limit(void) {
        char *d1 = make_single(1 << 19, 3), *d2 = make_single(1 << 19, 4);
        mp_rate_limit *rl = NULL;
        CHECK(mp_rate_limit_new(8u << 20, &rl) == 0);
        CHECK_EQ(mp_rate_limit_get(rl), 8u << 20);
        shared_job j[2] = { { d1, rl, 0 }, { d2, rl, 0 } };
        pthread_t t[2];
        double t0 = now_sec();
        for (int i = 0; i < 2; i++)
                CHECK(pthread_create(&t[i], NULL, shared_pass, &j[i]) == 0);
        for (int i = 0; i < 2; i++)
                pthread_join(t[i], NULL);
        double dt = now_sec() - t0;
        fprintf(stderr, "2 x %llu bytes sharing 8 MiB/s: %.3f s\n", (unsigned long long) j[0].bytes, dt);
        CHECK(j[0].bytes >= 2u << 20 && j[1].bytes >= 2u << 20);
        CHECK(dt >= 0.45);

        /* unlimited after set(0) */
        mp_rate_limit_set(rl, 0);
        CHECK_EQ(mp_rate_limit_take(rl, 1u << 30, NULL), 0);
        mp_rate_limit_free(rl);
        free(d1);
        free(d2);
}

typedef struct delayed_stop {
        volatile sig_atomic_t *flag;
} delayed_stop;

static void *stop_soon(void *arg) {
        delayed_stop *d = arg;
        struct timespec ts = { .tv_sec = 0, .tv_nsec = 200 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        *d->flag = 1;
        return NULL;
}

/* A wait for the cap ends on a stop request (here a 1 GiB grant at 1 KiB/s,
 * which would otherwise take twelve days). */
static void test_limit_wait_stops(void) {
        mp_rate_limit *rl = NULL;
        CHECK(mp_rate_limit_new(1024, &rl) == 0);
        volatile sig_atomic_t flag = 0;
        delayed_stop d = { &flag };
        pthread_t t;
        CHECK(pthread_create(&t, NULL, stop_soon, &d) == 0);
        CHECK_EQ(mp_rate_limit_take(rl, 1u << 30, &flag), -ECANCELED);
        pthread_join(t, NULL);
        mp_rate_limit_free(rl);
}

int main(void) {
        RUN(test_second_shard_changed);
        RUN(test_embedding_shard_changed);
        RUN(test_unchanged);
        RUN(test_previous_of_other_model);
        RUN(test_nlf_layout_changed);
        RUN(test_damaged_previous);
        RUN(test_zoo_gguf_unchanged);
        RUN(test_zoo_hub_unchanged);
        RUN(test_hub_git_names);
        RUN(test_stop);
        RUN(test_rate_cap);
        RUN(test_shared_limit);
        RUN(test_limit_wait_stops);
        return 0;
}
