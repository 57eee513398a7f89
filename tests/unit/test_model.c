/* test_model.c - mp_model_open() across layouts and formats, the single
 * streaming pass (digests, tensor hashes, visitors, parallel jobs), tensor
 * streaming, and the fingerprint record round trip.  Cross-format checks
 * use the zoo: the same base-1 weights stored as safetensors, PyTorch and
 * GGUF must agree where their bytes are the same. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "fingerprint/record.h"
#include "fingerprint/render_json.h"
#include "formats/model.h"
#include "pass/pass.h"
#include "model_fixture.h"
#include "test.h"
#include "util/strutil.h"

static void pass_ok(mp_model *m, const mp_pass_options *o, mp_pass_result *res) {
        mp_error e;
        mp_error_clear(&e);
        int r = mp_pass_run(m, o, res, &e);
        if (r < 0) {
                char buf[2048];
                mp_error_format(&e, buf, sizeof(buf));
                fprintf(stderr, "pass: %s\n", buf);
        }
        CHECK_EQ(r, 0);
}

static ssize_t tensor_index(const mp_model *m, const char *name) {
        for (size_t i = 0; i < m->n_tensors; i++)
                if (strcmp(m->tensors[i].name, name) == 0)
                        return (ssize_t) i;
        return -1;
}

/* Every weight file's SHA-256 from the pass equals models.json. */
static void test_zoo_digests(void) {
        const char *zoo = test_zoo();
        if (!zoo)
                return;
        char *mj = test_path(zoo, "models.json");
        json_error_t je;
        json_t *models = json_load_file(mj, 0, &je);
        CHECK(json_is_array(models));

        size_t idx;
        json_t *entry;
        size_t checked = 0;
        json_array_foreach(models, idx, entry) {
                char *dir = test_path(zoo, json_string_value(json_object_get(entry, "folder")));
                mp_model *m = open_ok(dir);
                mp_pass_result res;
                pass_ok(m, NULL, &res);

                const char *fname;
                json_t *sha;
                json_object_foreach(json_object_get(entry, "weight_files_sha256"), fname, sha) {
                        bool found = false;
                        for (size_t i = 0; i < m->n_files; i++) {
                                if (strcmp(m->files[i].rel_path, fname) != 0)
                                        continue;
                                char hex[65];
                                mp_hex(m->files[i].sha256, 32, hex);
                                if (strcmp(hex, json_string_value(sha)) != 0)
                                        fprintf(stderr, "%s/%s: %s != %s\n", dir, fname, hex, json_string_value(sha));
                                CHECK_STREQ(hex, json_string_value(sha));
                                found = true;
                                checked++;
                        }
                        CHECK(found);
                }
                CHECK(m->n_tensors > 0);
                CHECK_EQ(m->n_findings, 0);
                mp_pass_result_free(&res);
                mp_model_free(m);
                free(dir);
        }
        fprintf(stderr, "checked %zu weight files against models.json\n", checked);
        CHECK(checked >= 45);
        json_decref(models);
        free(mj);
}

/* Identical F16 bytes in safetensors, PyTorch zip and GGUF hash identically. */
static void test_zoo_cross_format_hashes(void) {
        const char *zoo = test_zoo();
        if (!zoo)
                return;
        const char *rels[] = { "llama/base-1", "llama/base-1-pt", "llama/base-1-gguf-f16/model-f16.gguf" };
        mp_model *m[3];
        mp_pass_result res[3];
        for (int i = 0; i < 3; i++) {
                char *p = test_path(zoo, rels[i]);
                m[i] = open_ok(p);
                pass_ok(m[i], NULL, &res[i]);
                free(p);
        }
        CHECK_EQ(m[0]->n_tensors, m[1]->n_tensors);
        for (size_t i = 0; i < m[0]->n_tensors; i++) {
                ssize_t j = tensor_index(m[1], m[0]->tensors[i].name);
                CHECK(j >= 0);
                CHECK(memcmp(res[0].tensor_xxh3[i], res[1].tensor_xxh3[j], 16) == 0);
        }
        /* token embeddings: same F16 rows in GGUF (ne reversed = same bytes) */
        ssize_t a = tensor_index(m[0], "model.embed_tokens.weight");
        ssize_t b = tensor_index(m[2], "model.embed_tokens.weight");
        CHECK(a >= 0 && b >= 0);
        CHECK_EQ(m[2]->tensors[b].shape[0], 4000);
        CHECK_EQ(m[2]->tensors[b].shape[1], 128);
        CHECK(memcmp(res[0].tensor_xxh3[a], res[2].tensor_xxh3[b], 16) == 0);
        /* q_proj rows are permuted by the converter: different bytes */
        a = tensor_index(m[0], "model.layers.0.self_attn.q_proj.weight");
        b = tensor_index(m[2], "model.layers.0.self_attn.q_proj.weight");
        CHECK(a >= 0 && b >= 0);
        CHECK(m[2]->tensors[b].flags & MP_TENSOR_ROPE_PERMUTED);
        CHECK(memcmp(res[0].tensor_xxh3[a], res[2].tensor_xxh3[b], 16) != 0);
        for (int i = 0; i < 3; i++) {
                mp_pass_result_free(&res[i]);
                mp_model_free(m[i]);
        }
}

typedef struct collect {
        size_t ti;
        float *values;
        size_t n;
        bool order_ok;
} collect;

static int collect_begin(void *ud, const mp_model *m, size_t ti) {
        collect *c = ud;
        (void) m;
        return ti == c->ti ? 0 : 1;
}

static int stream_values(void *ud, const float *v, size_t n, uint64_t first) {
        collect *c = ud;
        if (first != c->n)
                c->order_ok = false;
        c->values = realloc(c->values, (c->n + n) * sizeof(float));
        CHECK(c->values);
        memcpy(c->values + c->n, v, n * sizeof(float));
        c->n += n;
        return 0;
}

/* The visitor's callback: the same, for the one tensor asked for. */
static int collect_values(void *ud, size_t ti, const float *v, size_t n, uint64_t first) {
        const collect *c = ud;
        CHECK_EQ(ti, c->ti);
        return stream_values(ud, v, n, first);
}

/* Visitors receive exactly the dequantized values that tensor streaming
 * gives, with small chunks forcing blocks to straddle chunk boundaries. */
static void test_zoo_visitor_quantized(void) {
        const char *zoo = test_zoo();
        if (!zoo)
                return;
        char *q = test_path(zoo, "llama/base-1-q4_0/model-q4_0.gguf");
        char *f = test_path(zoo, "llama/base-1");
        mp_model *mq = open_ok(q), *mf = open_ok(f);

        ssize_t ti = tensor_index(mq, "model.layers.1.mlp.down_proj.weight");
        CHECK(ti >= 0);
        CHECK_EQ(mq->tensors[ti].dtype, MP_DTYPE_Q4_0);

        collect c = { .ti = (size_t) ti, .order_ok = true };
        mp_tensor_visitor v = { .userdata = &c, .begin = collect_begin, .values = collect_values };
        mp_pass_options o = { .jobs = 1, .chunk_bytes = 4096 + 7, .visitors = &v, .n_visitors = 1 };
        mp_pass_result res;
        pass_ok(mq, &o, &res);
        CHECK(c.order_ok);
        CHECK_EQ(c.n, mq->tensors[ti].n_elements);

        collect s = { .order_ok = true };
        mp_error e;
        CHECK_EQ(mp_tensor_stream_f32(mq, (size_t) ti, 1000, stream_values, &s, &e), 0);
        CHECK(s.order_ok);
        CHECK_EQ(s.n, c.n);
        CHECK(memcmp(s.values, c.values, c.n * sizeof(float)) == 0);

        /* against the F16 original: Q4_0 error is bounded by the block scale */
        ssize_t tf = tensor_index(mf, "model.layers.1.mlp.down_proj.weight");
        CHECK(tf >= 0);
        collect o16 = { .order_ok = true };
        CHECK_EQ(mp_tensor_stream_f32(mf, (size_t) tf, 4096, stream_values, &o16, &e), 0);
        CHECK_EQ(o16.n, c.n);
        double err2 = 0, ref2 = 0;
        for (size_t i = 0; i < c.n; i++) {
                err2 += (c.values[i] - o16.values[i]) * (double) (c.values[i] - o16.values[i]);
                ref2 += o16.values[i] * (double) o16.values[i];
        }
        fprintf(stderr, "Q4_0 relative error %.4f\n", sqrt(err2 / ref2));
        CHECK(sqrt(err2 / ref2) < 0.2);
        CHECK(sqrt(err2 / ref2) > 0.0);

        free(c.values);
        free(s.values);
        free(o16.values);
        mp_pass_result_free(&res);
        mp_model_free(mq);
        mp_model_free(mf);
        free(q);
        free(f);
}

static char *make_model(const char *args) {
        char *dir = test_tmpdir();
        char *cmd = NULL;
        const char *root = getenv("MODELPROV_SOURCE_ROOT");
        CHECK(root);
        CHECK(asprintf(&cmd, "python3 %s/tests/gen/make_model.py --out %s/m %s", root, dir, args) > 0);
        CHECK_EQ(system(cmd), 0);
        free(cmd);
        char *m = NULL;
        CHECK(asprintf(&m, "%s/m", dir) > 0);
        free(dir);
        return m;
}

/* Sharded model: parallel jobs give the same result as one job; the digest
 * depends on content and relative paths only. */
static void test_generated_sharded_parallel(void) {
        char *dir = make_model("--hidden 64 --layers 4 --shards 3");
        mp_model *a = open_ok(dir), *b = open_ok(dir);
        size_t weights = 0;
        for (size_t i = 0; i < a->n_files; i++)
                weights += a->files[i].role == MP_ROLE_WEIGHTS;
        CHECK_EQ(weights, 3);
        CHECK_EQ(a->n_tensors, 2 + 4 * 9 + 1);

        mp_pass_options o1 = { .jobs = 1 }, o3 = { .jobs = 3, .chunk_bytes = 8192 };
        mp_pass_result r1, r3;
        pass_ok(a, &o1, &r1);
        pass_ok(b, &o3, &r3);
        CHECK(memcmp(r1.model_digest, r3.model_digest, 32) == 0);
        CHECK(memcmp(r1.tensor_xxh3, r3.tensor_xxh3, 16 * a->n_tensors) == 0);
        for (size_t i = 0; i < a->n_files; i++)
                CHECK(memcmp(a->files[i].sha256, b->files[i].sha256, 32) == 0);

        /* fingerprint record: build, pack, unpack, JSON */
        mp_fingerprint *fp = NULL;
        mp_error e;
        CHECK_EQ(mp_fingerprint_build(a, &r1, &fp, &e), 0);
        CHECK_EQ(fp->n_tensors, a->n_tensors);
        CHECK_EQ(fp->n_files, a->n_files);
        CHECK_EQ(fp->model_digest.len, 32);
        CHECK_STREQ(fp->arch->model_type, "llama");
        CHECK_EQ(fp->arch->hidden_size, 64);
        CHECK(fp->tokenizer);
        CHECK_EQ(fp->tokenizer->vocab_size, 512);
        char *out = NULL;
        CHECK(asprintf(&out, "%s/record.fp", dir) > 0);
        CHECK_EQ(mp_fingerprint_write(fp, out, &e), 0);
        mp_fingerprint *back = NULL;
        CHECK_EQ(mp_fingerprint_read(out, &back, &e), 0);
        CHECK(memcmp(back->model_digest.data, r1.model_digest, 32) == 0);
        CHECK_EQ(back->n_tensors, fp->n_tensors);
        json_t *j = mp_fingerprint_to_json(back);
        CHECK(j);
        CHECK_EQ(json_array_size(json_object_get(j, "tensors")), a->n_tensors);
        json_decref(j);

        /* garbage is not a record */
        char *junk = test_write(dir, "junk.fp", "\xff\xff\xff\xff", 4);
        mp_fingerprint *bad = NULL;
        CHECK(mp_fingerprint_read(junk, &bad, &e) < 0);
        CHECK(bad == NULL);

        mp_fingerprint_free(fp);
        mp_fingerprint_free(back);
        mp_pass_result_free(&r1);
        mp_pass_result_free(&r3);
        mp_model_free(a);
        mp_model_free(b);
        free(out);
        free(junk);
        free(dir);
}

/* A file that grows or shrinks between open and pass is an error, not a
 * silently wrong digest. */
static void test_file_changed_during_pass(void) {
        char *dir = make_model("--hidden 64 --layers 1");
        mp_model *m = open_ok(dir);
        char *w = NULL;
        CHECK(asprintf(&w, "%s/model.safetensors", dir) > 0);
        CHECK_EQ(truncate(w, 100), 0);
        mp_pass_result res;
        mp_error e;
        CHECK(mp_pass_run(m, NULL, &res, &e) < 0);
        CHECK(strstr(e.reason, "changed"));
        mp_model_free(m);
        free(w);
        free(dir);
}

/* Share of a file's pages in the page cache (0..1). */
static double resident_share(const char *path) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        CHECK(fd >= 0);
        struct stat st;
        CHECK(fstat(fd, &st) == 0);
        size_t page = (size_t) sysconf(_SC_PAGESIZE), pages = ((size_t) st.st_size + page - 1) / page;
        void *p = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        CHECK(p != MAP_FAILED);
        unsigned char *vec = malloc(pages);
        CHECK(vec && mincore(p, (size_t) st.st_size, vec) == 0);
        size_t n = 0;
        for (size_t i = 0; i < pages; i++)
                n += vec[i] & 1;
        free(vec);
        munmap(p, (size_t) st.st_size);
        close(fd);
        return (double) n / (double) pages;
}

static void evict(const char *path) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        CHECK(fd >= 0);
        CHECK(fdatasync(fd) == 0);      /* dirty pages cannot be dropped */
        CHECK(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
        close(fd);
}

/* The pass leaves the page cache as it found it: a cold file does not fill
 * the cache (a scan must not evict an inference server's working set), a
 * warm file (a model being served) stays cached. */
static void test_page_cache_left_as_found(void) {
        char *dir = make_model("--hidden 256 --layers 6 --vocab 2048");
        char *w = NULL;
        CHECK(asprintf(&w, "%s/model.safetensors", dir) > 0);

        evict(w);
        double before = resident_share(w);
        CHECK(before < 0.25);
        mp_model *m = open_ok(dir);
        mp_pass_options o = { .jobs = 1, .chunk_bytes = 1 << 20 };
        mp_pass_result res;
        pass_ok(m, &o, &res);
        mp_pass_result_free(&res);
        double cold_after = resident_share(w);
        fprintf(stderr, "cold file: %.2f resident before, %.2f after the pass\n", before, cold_after);
        CHECK(cold_after < 0.25);

        free(test_read(w, NULL));               /* warm it */
        CHECK(resident_share(w) > 0.99);
        pass_ok(m, &o, &res);
        mp_pass_result_free(&res);
        double warm_after = resident_share(w);
        fprintf(stderr, "warm file: %.2f resident after the pass\n", warm_after);
        CHECK(warm_after > 0.99);

        mp_model_free(m);
        free(w);
        free(dir);
}

/* Directories: no weights is an error; a README or a credential is never
 * part of the model; several GGUFs are ambiguous. */
static void test_directory_rules(void) {
        char *dir = make_model("--hidden 64 --layers 1");
        free(test_write(dir, "README.md", "hi", 2));
        free(test_write(dir, "token", "hf_secret", 9));
        mp_model *m = open_ok(dir);
        for (size_t i = 0; i < m->n_files; i++) {
                CHECK(strcmp(m->files[i].rel_path, "README.md") != 0);
                CHECK(strcmp(m->files[i].rel_path, "token") != 0);
        }
        mp_model_free(m);

        char *empty = test_tmpdir();
        free(test_write(empty, "config.json", "{}", 2));
        mp_error e;
        CHECK_EQ(mp_model_open(empty, NULL, &m, &e), -ENOENT);
        CHECK(strstr(e.reason, "no model weights"));

        /* an unparseable config does not stop the model, it is a finding */
        free(test_write(dir, "config.json", "{not json", 9));
        m = open_ok(dir);
        CHECK_EQ(m->n_findings, 1);
        CHECK_EQ(m->findings[0].kind, MP_FINDING_UNPARSEABLE);
        mp_model_free(m);

        /* a file that is no model at all */
        char *junk = test_write(empty, "x.bin", "hello world", 11);
        CHECK_EQ(mp_model_open(junk, NULL, &m, &e), -EBADMSG);
        CHECK_EQ(e.offset, 0);
        free(junk);
        free(empty);
        free(dir);
}

int main(void) {
        RUN(test_generated_sharded_parallel);
        RUN(test_file_changed_during_pass);
        RUN(test_directory_rules);
        RUN(test_page_cache_left_as_found);
        RUN(test_zoo_digests);
        RUN(test_zoo_cross_format_hashes);
        RUN(test_zoo_visitor_quantized);
        return 0;
}
