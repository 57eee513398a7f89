/* test_blast_radius.c - blast radius (collector/blast_radius.h) on a real
 * store (store_fixture.h: a SQLite file in a temporary directory, or a
 * fresh PostgreSQL database under `meson test --setup postgres`), with real
 * fingerprints:
 *   - models generated here (always): exact, partial (also renamed, of
 *     another width) and lineage copies, unrelated models kept out of the
 *     candidates, removed rows, thresholds, threads, every target kind and
 *     its refusals, hostile and damaged records in the store;
 *   - the zoo, when present: every zoo model on its own simulated host; the
 *     blast radius of llama/base-1 and gpt2/base-1 must return the host of
 *     every model pairs.json links to them (distillation aside: a student
 *     trained from a fresh init shares no weights, and modelprov only calls
 *     lineage on weight evidence) and no host of a model it calls
 *     independent. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <time.h>

#include "catalog/catalog.h"
#include "collector/blast_radius.h"
#include "collector/hit_order.h"
#include "collector/store.h"
#include "fingerprint/compute.h"
#include "signals/sample.h"
#include "store_fixture.h"
#include "test.h"
#include "util/macro.h"

/* ---- store helpers ------------------------------------------------------ */

typedef struct host {
        char id[MP_STORE_HOST_ID_SIZE];
        uint64_t seq;
} host;

static void enroll(mp_store *s, const char *hostname, const char *machine_id, host *h) {
        uint8_t key[MP_STORE_DIGEST_SIZE] = { 1 };
        mp_host_info info = { .hostname = hostname, .machine_id = machine_id, .agent_version = "0.1.0" };
        mp_error err;
        int r = mp_store_enroll(s, &info, key, h->id, &err);
        if (r < 0)
                fprintf(stderr, "%s\n", err.reason);
        CHECK(r == 0);
        h->seq = 0;
}

static void ingest_one(mp_store *s, host *h, const mp_store_event *ev) {
        mp_store_event e = *ev;
        e.sequence = ++h->seq;
        e.observed_at = (int64_t) (1000 * h->seq);
        uint64_t acked = 0;
        size_t stored = 0;
        mp_error err;
        int r = mp_store_ingest(s, h->id, &e, 1, &acked, &stored, NULL, &err);
        if (r < 0)
                fprintf(stderr, "%s\n", err.reason);
        CHECK(r == 0);
        CHECK_EQ(stored, 1);
        CHECK_EQ(acked, h->seq);
}

/* Reports that h holds the model of rec (packed, with its digest) at path. */
static void put_model(mp_store *s, host *h, const char *path, const uint8_t *rec, size_t len,
                      const uint8_t digest[MP_STORE_DIGEST_SIZE]) {
        mp_store_event ev = { .kind = MP_STORE_EVENT_MODEL_ADDED, .path = path, .record = rec, .record_len = len };
        memcpy(ev.model_digest, digest, MP_STORE_DIGEST_SIZE);
        ingest_one(s, h, &ev);
}

static void remove_model(mp_store *s, host *h, const char *path) {
        mp_store_event ev = { .kind = MP_STORE_EVENT_MODEL_REMOVED, .path = path };
        ingest_one(s, h, &ev);
}

/* A model: its fingerprint, packed record and digest. */
typedef struct model {
        mp_fingerprint *fp;
        uint8_t *rec;
        size_t len;
        const uint8_t *digest;
} model;

static model model_of(mp_fingerprint *fp) {
        model m = { .fp = fp };
        CHECK(fp->model_digest.len == MP_STORE_DIGEST_SIZE);
        CHECK(mp_fingerprint_pack(fp, &m.rec, &m.len) == 0);
        m.digest = fp->model_digest.data;
        return m;
}

static void model_free(model *m) {
        free(m->rec);
        mp_fingerprint_free(m->fp);
}

static mp_fingerprint *fingerprint_path(const char *path) {
        mp_model *m = NULL;
        mp_fingerprint *fp = NULL;
        mp_error err;
        int r = mp_model_open(path, NULL, &m, &err);
        if (r < 0)
                fprintf(stderr, "%s: %s\n", path, err.reason);
        CHECK(r == 0);
        mp_pass_options po = { .jobs = 1 };
        CHECK(mp_fingerprint_compute(m, &po, &fp, &err) == 0);
        mp_model_free(m);
        return fp;
}

/* ---- blast helpers ------------------------------------------------------ */

typedef struct result {
        mp_blast_hit *h;
        size_t n;
        mp_blast_stats stats;
} result;

static result blast(mp_store *s, const mp_blast_target *t, const mp_blast_options *o) {
        result res = {};
        mp_error err;
        int r = mp_blast_radius(s, t, o, &res.h, &res.n, &res.stats, &err);
        if (r < 0)
                fprintf(stderr, "blast radius: %s\n", err.reason);
        CHECK(r == 0);
        return res;
}

static void result_free(result *r) {
        mp_blast_hits_free(r->h, r->n);
}

/* The hit at (hostname, path), or NULL. */
static const mp_blast_hit *find_hit(const result *res, const char *hostname, const char *path) {
        for (size_t i = 0; i < res->n; i++)
                if (strcmp(res->h[i].loc.hostname, hostname) == 0 && (!path || strcmp(res->h[i].loc.path, path) == 0))
                        return &res->h[i];
        return NULL;
}

static void print_hits(const char *what, const result *res) {
        fprintf(stderr, "   %s: %zu hits (%llu considered, %llu scored, %u threads)\n", what, res->n,
                (unsigned long long) res->stats.considered, (unsigned long long) res->stats.scored,
                res->stats.threads);
        for (size_t i = 0; i < res->n; i++)
                fprintf(stderr, "     %-28s %-22s %-40s %.3f %s%s\n", res->h[i].loc.hostname, res->h[i].loc.path,
                        res->h[i].relation, res->h[i].score, mp_verdict_name(res->h[i].verdict),
                        res->h[i].loc.present ? "" : " (removed)");
}

static mp_blast_target *target_digest(mp_store *s, const uint8_t *digest) {
        mp_blast_target *t = NULL;
        mp_error err;
        int r = mp_blast_target_from_digest(s, digest, &t, &err);
        if (r < 0)
                fprintf(stderr, "%s\n", err.reason);
        CHECK(r == 0);
        return t;
}

/* ---- generated models --------------------------------------------------- */

#define VOCAB 1024
#define INTER 256

/* What a generated model is made of.  Values come from test_value(run,
 * tensor id, element): the same run and id give the same tensor. */
typedef struct gen {
        unsigned run;                   /* the "training run" */
        unsigned hidden;                /* 64 unless changed */
        unsigned layers;                /* 2 unless pruned */
        float noise;                    /* a fine-tune: run + 1000's values times noise added */
        unsigned embed_run;             /* the embedding and LM head from another run (0: none) */
        bool f16;                       /* stored in F16 rather than F32 */
        unsigned extra_run;             /* adds "extra.weight", run extra_run's 64-wide embedding */
        bool reversed;                  /* the blocks' values in reverse order (a permutation) */
} gen;

typedef struct gen_tensor {
        char name[64];
        unsigned id, run;
        uint64_t rows, cols;            /* cols 0: a vector */
        bool norm;
        float noise;
        bool reversed;
} gen_tensor;

static size_t gen_tensors(const gen *g, gen_tensor *t) {
        size_t n = 0;
        unsigned er = g->embed_run ? g->embed_run : g->run;
        float en = g->embed_run ? 0 : g->noise;
        t[n++] = (gen_tensor) { "lm_head.weight", 1, er, VOCAB, g->hidden, false, en, false };
        t[n++] = (gen_tensor) { "model.embed_tokens.weight", 0, er, VOCAB, g->hidden, false, en, false };
        for (unsigned l = 0; l < g->layers; l++) {
                unsigned b = 10 + 10 * l;
                gen_tensor lt[4] = {
                        { "", b, g->run, g->hidden, 0, true, g->noise, g->reversed },
                        { "", b + 1, g->run, g->hidden, INTER, false, g->noise, g->reversed },
                        { "", b + 2, g->run, INTER, g->hidden, false, g->noise, g->reversed },
                        { "", b + 3, g->run, g->hidden, g->hidden, false, g->noise, g->reversed },
                };
                static const char *const names[4] = { "input_layernorm", "mlp.down_proj", "mlp.up_proj",
                                                       "self_attn.q_proj" };
                for (size_t k = 0; k < 4; k++) {
                        snprintf(lt[k].name, sizeof(lt[k].name), "model.layers.%u.%s.weight", l, names[k]);
                        t[n++] = lt[k];
                }
        }
        if (g->extra_run)
                t[n++] = (gen_tensor) { "extra.weight", 0, g->extra_run, VOCAB, 64, false, 0, false };
        return n;
}

/* Writes the model of g as a safetensors file in a new directory. */
static char *gen_write(const gen *g) {
        gen_tensor t[32];
        size_t nt = gen_tensors(g, t);
        size_t es = g->f16 ? 2 : 4;
        test_buf h = {0}, d = {0};
        uint64_t off = 0;
        put(&h, "{", 1);
        for (size_t k = 0; k < nt; k++) {
                uint64_t n = t[k].cols ? t[k].rows * t[k].cols : t[k].rows;
                char shape[64], *e = NULL;
                if (t[k].cols)
                        snprintf(shape, sizeof(shape), "%llu,%llu", (unsigned long long) t[k].rows,
                                 (unsigned long long) t[k].cols);
                else
                        snprintf(shape, sizeof(shape), "%llu", (unsigned long long) t[k].rows);
                CHECK(asprintf(&e, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%llu,%llu]}",
                               k ? "," : "", t[k].name, g->f16 ? "F16" : "F32", shape, (unsigned long long) off,
                               (unsigned long long) (off + es * n)) > 0);
                put(&h, e, strlen(e));
                free(e);
                for (uint64_t i = 0; i < n; i++) {
                        float v = test_value(t[k].run, t[k].id, t[k].reversed ? n - 1 - i : i) * 0.05f;
                        if (t[k].noise != 0)
                                v += t[k].noise * 0.05f * test_value(t[k].run + 1000, t[k].id, i);
                        if (t[k].norm)
                                v = 1.0f + 2 * v;
                        if (g->f16) {
                                uint16_t hv = mp_f32_to_f16(v);
                                put(&d, &hv, 2);
                        } else
                                put(&d, &v, 4);
                }
                off += es * n;
        }
        return test_write_safetensors(&h, &d);
}

static model gen_model(const gen *g) {
        char *path = gen_write(g);
        model m = model_of(fingerprint_path(path));
        free(path);
        return m;
}

static gen base_gen(unsigned run) {
        return (gen) { .run = run, .hidden = 64, .layers = 2 };
}

/* ---- the generated fleet ------------------------------------------------ */

enum {
        M_BASE,                 /* run 1 */
        M_TUNED,                /* base + 10% noise everywhere */
        M_F16,                  /* base stored in F16 */
        M_PRUNED,               /* base without its second block, 2% noise */
        M_SPLICED,              /* run 2's blocks with base's embedding and head */
        M_RENAMED,              /* another width (48), holding base's embedding as extra.weight */
        M_OTHER,                /* run 2 */
        M_THIRD,                /* run 3 */
        M_NARROW,               /* run 4, width 48: never a candidate */
        M_GONE,                 /* base + 5% noise, removed from its host */
        M_LORA,                 /* base's embedding and head untouched, 10% noise on the blocks */
        M_PERMUTED,             /* base's embedding and head, the blocks' values reversed */
        _M_MAX,
};

static const char *const gen_hosts[_M_MAX] = {
        "g-base", "g-tuned", "g-f16", "g-pruned", "g-spliced", "g-renamed", "g-other", "g-third", "g-narrow",
        "g-gone", "g-lora", "g-permuted",
};

typedef struct gen_fleet {
        char *dir, *path;
        mp_store *s;
        model m[_M_MAX];
        host h[_M_MAX];
        host copy;              /* "g-copy": base again at another path, and run 3 */
} gen_fleet;

static void gen_fleet_build(gen_fleet *f) {
        gen g[_M_MAX];
        for (size_t i = 0; i < _M_MAX; i++)
                g[i] = base_gen(1);
        g[M_TUNED].noise = 0.10f;
        g[M_F16].f16 = true;
        g[M_PRUNED].layers = 1;
        g[M_PRUNED].noise = 0.02f;
        g[M_SPLICED] = base_gen(2);
        g[M_SPLICED].embed_run = 1;
        g[M_RENAMED] = base_gen(5);
        g[M_RENAMED].hidden = 48;
        g[M_RENAMED].extra_run = 1;
        g[M_OTHER] = base_gen(2);
        g[M_THIRD] = base_gen(3);
        g[M_NARROW] = base_gen(4);
        g[M_NARROW].hidden = 48;
        g[M_GONE].noise = 0.05f;
        g[M_LORA].embed_run = 1;
        g[M_LORA].noise = 0.10f;
        g[M_PERMUTED].reversed = true;

        f->dir = test_tmpdir();
        f->path = test_path(f->dir, "store.db");
        f->s = open_store(f->path);
        for (size_t i = 0; i < _M_MAX; i++) {
                f->m[i] = gen_model(&g[i]);
                char machine[32];
                snprintf(machine, sizeof(machine), "machine-%zu", i);
                enroll(f->s, gen_hosts[i], machine, &f->h[i]);
                put_model(f->s, &f->h[i], "/models/m", f->m[i].rec, f->m[i].len, f->m[i].digest);
        }
        remove_model(f->s, &f->h[M_GONE], "/models/m");
        enroll(f->s, "g-copy", "machine-copy", &f->copy);
        put_model(f->s, &f->copy, "/srv/copy-of-base", f->m[M_BASE].rec, f->m[M_BASE].len, f->m[M_BASE].digest);
        put_model(f->s, &f->copy, "/srv/third", f->m[M_THIRD].rec, f->m[M_THIRD].len, f->m[M_THIRD].digest);
}

static void gen_fleet_free(gen_fleet *f) {
        mp_store_close(f->s);
        for (size_t i = 0; i < _M_MAX; i++)
                model_free(&f->m[i]);
        free(f->path);
        free(f->dir);
}

static void test_generated_fleet(void) {
        gen_fleet f;
        gen_fleet_build(&f);

        /* The structure the store extracted. */
        mp_store_structure st;
        mp_store_structure_of(f.m[M_BASE].fp, &st);
        CHECK_EQ(st.hidden_size, 64);
        CHECK_EQ(st.vocab_size, VOCAB);
        CHECK(st.has_weights);
        mp_store_structure_of(f.m[M_NARROW].fp, &st);
        CHECK_EQ(st.hidden_size, 48);
        uint64_t keys[64], two[2];
        /* embedding, head (256 KiB each), up and down (64 KiB) per block;
         * q_proj (16 KiB) and the norms are too small.  The smallest first. */
        CHECK_EQ(mp_store_tensor_keys(f.m[M_BASE].fp, keys, ELEMENTSOF(keys)), 6);
        for (size_t i = 1; i < 6; i++)
                CHECK(keys[i - 1] < keys[i]);
        CHECK_EQ(mp_store_tensor_keys(f.m[M_BASE].fp, two, 2), 2);
        CHECK(two[0] == keys[0] && two[1] == keys[1]);

        mp_blast_target *t = target_digest(f.s, f.m[M_BASE].digest);
        CHECK(t->fp && t->has_digest);
        result res = blast(f.s, t, NULL);
        print_hits("generated, base", &res);

        /* Exact copies first: the base's own row and g-copy's. */
        CHECK(res.n >= 2);
        for (size_t i = 0; i < 2; i++) {
                CHECK_STREQ(res.h[i].relation, MP_BLAST_EXACT_COPY);
                CHECK(res.h[i].score == 1);
                CHECK_EQ(res.h[i].verdict, MP_VERDICT_CONFIRMED);
                CHECK(memcmp(res.h[i].loc.model_digest, f.m[M_BASE].digest, 32) == 0);
                CHECK(res.h[i].loc.present);
                CHECK_STREQ(res.h[i].loc.model_name, f.m[M_BASE].fp->name);
        }
        CHECK(find_hit(&res, "g-copy", "/srv/copy-of-base"));
        CHECK(!find_hit(&res, "g-copy", "/srv/third"));

        /* Lineage: the fine-tune, the other dtype, the pruned copy; the LoRA
         * merge and the permuted copy share tensors byte for byte too, but
         * compare's lineage explains all of them: no partial copies. */
        static const int linked[] = { M_TUNED, M_F16, M_PRUNED, M_LORA, M_PERMUTED };
        for (size_t i = 0; i < ELEMENTSOF(linked); i++) {
                const mp_blast_hit *h = find_hit(&res, gen_hosts[linked[i]], "/models/m");
                CHECK(h);
                CHECK(strcmp(h->relation, MP_BLAST_EXACT_COPY) != 0);
                CHECK(strcmp(h->relation, MP_BLAST_PARTIAL_COPY) != 0);
                CHECK(h->score >= MP_BLAST_DEFAULT_THRESHOLD);
                CHECK(h->verdict >= MP_VERDICT_WEAK);
                CHECK(memcmp(h->loc.model_digest, f.m[linked[i]].digest, 32) == 0);
        }
        CHECK_STREQ(find_hit(&res, "g-f16", NULL)->lineage, "same weights in another format or dtype");
        CHECK_STREQ(find_hit(&res, "g-pruned", NULL)->relation, "pruned or resized");
        CHECK_STREQ(find_hit(&res, "g-lora", NULL)->relation, "fine-tune / continued training");
        CHECK_EQ(find_hit(&res, "g-lora", NULL)->tensors_shared, 2);
        CHECK_STREQ(find_hit(&res, "g-permuted", NULL)->relation, "permuted copy (function-preserving)");
        CHECK_EQ(find_hit(&res, "g-permuted", NULL)->tensors_shared, 2);

        /* Partial copies: base's embedding and head on run 2's blocks
         * (compare alone calls it a permuted copy: the same embedding,
         * uncorrelated blocks); and base's embedding under another name in
         * a model of another width, which only the tensor keys bring in. */
        const mp_blast_hit *sp = find_hit(&res, "g-spliced", NULL);
        CHECK(sp);
        CHECK_STREQ(sp->relation, MP_BLAST_PARTIAL_COPY);
        CHECK_STREQ(sp->lineage, "permuted copy (function-preserving)");
        CHECK_EQ(sp->tensors_shared, 2);
        CHECK(sp->shared > 0.6 && sp->shared < 0.7);   /* 512 of 768 KiB */
        CHECK(sp->score >= sp->shared);
        CHECK(sp->verdict >= MP_VERDICT_HIGH);
        const mp_blast_hit *rn = find_hit(&res, "g-renamed", NULL);
        CHECK(rn);
        CHECK_STREQ(rn->relation, MP_BLAST_PARTIAL_COPY);
        CHECK_EQ(rn->tensors_shared, 1);

        /* Unrelated: never a hit; run 4 (another width, no shared tensor)
         * never even a candidate. */
        CHECK(!find_hit(&res, "g-other", NULL));
        CHECK(!find_hit(&res, "g-third", NULL));
        CHECK(!find_hit(&res, "g-narrow", NULL));
        CHECK(!find_hit(&res, "g-gone", NULL));         /* removed */
        /* Candidates: every stored model but the base itself and the narrow
         * one. */
        CHECK_EQ(res.stats.considered, _M_MAX - 2);
        CHECK_EQ(res.stats.scored, res.stats.considered);
        CHECK_EQ(res.stats.unreadable, 0);
        CHECK_EQ(res.stats.models, 8);  /* base, tuned, f16, pruned, lora, permuted, spliced, renamed */
        CHECK_EQ(res.n, 9);
        for (size_t i = 1; i < res.n; i++)     /* ordered: exact first, then by score */
                CHECK(strcmp(res.h[i].relation, MP_BLAST_EXACT_COPY) != 0 || i < 2);
        for (size_t i = 3; i < res.n; i++)
                CHECK(res.h[i - 1].score >= res.h[i].score);
        size_t n_present = res.n;
        result_free(&res);

        /* Removed rows on request. */
        mp_blast_options o = { .include_removed = true };
        res = blast(f.s, t, &o);
        const mp_blast_hit *gone = find_hit(&res, "g-gone", "/models/m");
        CHECK(gone);
        CHECK(!gone->loc.present);
        CHECK_EQ(gone->loc.last_seen, 2000);            /* closed by the removal */
        CHECK_EQ(res.n, n_present + 1);
        result_free(&res);

        /* A strict threshold keeps the copies, drops weaker lineage. */
        o = (mp_blast_options) { .threshold = 0.999 };
        res = blast(f.s, t, &o);
        CHECK(find_hit(&res, "g-copy", NULL));
        CHECK(find_hit(&res, "g-spliced", NULL));       /* partial copies whatever the threshold */
        CHECK(find_hit(&res, "g-renamed", NULL));
        CHECK(!find_hit(&res, "g-tuned", NULL));
        result_free(&res);

        /* Threads: the same answer on 1 and 4 (asked for explicitly: by
         * default so few candidates stay on one). */
        mp_blast_options o1 = { .threads = 1 }, o4 = { .threads = 4 };
        result r1 = blast(f.s, t, &o1), r4 = blast(f.s, t, &o4);
        CHECK_EQ(r1.n, r4.n);
        CHECK_EQ(r1.stats.threads, 1);
        CHECK_EQ(r4.stats.threads, 4);
        for (size_t i = 0; i < r1.n; i++) {
                CHECK_STREQ(r1.h[i].loc.hostname, r4.h[i].loc.hostname);
                CHECK_STREQ(r1.h[i].relation, r4.h[i].relation);
                CHECK(r1.h[i].score == r4.h[i].score);
        }
        result_free(&r1);
        result_free(&r4);

        /* Bad options. */
        mp_error err;
        mp_blast_hit *h = NULL;
        size_t n = 0;
        static const double bad_thresholds[] = { -0.1, 1.5, NAN };
        for (size_t i = 0; i < ELEMENTSOF(bad_thresholds); i++) {
                o = (mp_blast_options) { .threshold = bad_thresholds[i] };
                CHECK_EQ(mp_blast_radius(f.s, t, &o, &h, &n, NULL, &err), -EINVAL);
        }
        o = (mp_blast_options) { .threads = MP_BLAST_MAX_THREADS + 1 };
        CHECK_EQ(mp_blast_radius(f.s, t, &o, &h, &n, NULL, &err), -EINVAL);

        /* The inventory shows model names. */
        mp_store_location *l = NULL;
        CHECK(mp_store_inventory(f.s, f.h[M_TUNED].id, true, &l, &n, NULL) == 0);
        CHECK_EQ(n, 1);
        CHECK_STREQ(l[0].model_name, f.m[M_TUNED].fp->name);
        CHECK(l[0].model_name[0]);
        mp_store_locations_free(l, n);

        mp_blast_target_free(t);
        gen_fleet_free(&f);
}

/* ---- target kinds ------------------------------------------------------- */

static void test_targets(void) {
        gen_fleet f;
        gen_fleet_build(&f);
        mp_error err;
        mp_blast_target *t = NULL;

        /* Digest: unknown; known without a record (exact copies only). */
        uint8_t unknown[32];
        memset(unknown, 0xee, sizeof(unknown));
        CHECK_EQ(mp_blast_target_from_digest(f.s, unknown, &t, &err), -ENOENT);
        CHECK(strstr(err.reason, "no host"));
        host bare;
        enroll(f.s, "g-bare", "machine-bare", &bare);
        uint8_t norec[32];
        memset(norec, 0x5a, sizeof(norec));
        mp_store_event ev = { .kind = MP_STORE_EVENT_MODEL_ADDED, .path = "/no/record" };
        memcpy(ev.model_digest, norec, 32);
        ingest_one(f.s, &bare, &ev);
        t = target_digest(f.s, norec);
        CHECK(!t->fp);
        result res = blast(f.s, t, NULL);
        CHECK_EQ(res.n, 1);
        CHECK_STREQ(res.h[0].loc.hostname, "g-bare");
        CHECK_STREQ(res.h[0].relation, MP_BLAST_EXACT_COPY);
        CHECK_STREQ(res.h[0].loc.model_name, "");
        CHECK_EQ(res.stats.considered, 0);
        result_free(&res);
        mp_blast_target_free(t);

        /* Record: the same answer as the digest it names. */
        CHECK(mp_blast_target_from_record(f.m[M_BASE].rec, f.m[M_BASE].len, &t, &err) == 0);
        CHECK(t->has_digest && memcmp(t->digest, f.m[M_BASE].digest, 32) == 0);
        res = blast(f.s, t, NULL);
        CHECK_EQ(res.n, 9);
        CHECK(find_hit(&res, "g-spliced", NULL));
        result_free(&res);
        mp_blast_target_free(t);
        /* A record of a model no host holds: its relatives, no exact copy. */
        mp_fingerprint *fresh = f.m[M_TUNED].fp;
        uint8_t fresh_digest[32], *own = fresh->model_digest.data;
        memset(fresh_digest, 0x77, sizeof(fresh_digest));
        fresh->model_digest.data = fresh_digest;
        CHECK(mp_blast_target_from_fingerprint(fresh, &t, &err) == 0);
        fresh->model_digest.data = own;
        res = blast(f.s, t, NULL);
        CHECK(find_hit(&res, "g-base", NULL));
        CHECK(find_hit(&res, "g-tuned", NULL));         /* now a relative */
        for (size_t i = 0; i < res.n; i++)
                CHECK(strcmp(res.h[i].relation, MP_BLAST_EXACT_COPY) != 0);
        result_free(&res);
        mp_blast_target_free(t);
        /* Malformed records. */
        static const uint8_t junk[] = { 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01 };
        CHECK_EQ(mp_blast_target_from_record(junk, sizeof(junk), &t, &err), -EINVAL);
        CHECK_EQ(mp_blast_target_from_record(junk, 0, &t, &err), -EINVAL);
        CHECK_EQ(mp_blast_target_from_record(junk, (size_t) MP_STORE_MAX_RECORD + 1, &t, &err), -EINVAL);
        mp_fingerprint odd;
        modelprov__v1__fingerprint__init(&odd);
        odd.record_version = MP_FINGERPRINT_RECORD_VERSION;
        odd.model_digest.data = fresh_digest;
        odd.model_digest.len = 31;
        CHECK_EQ(mp_blast_target_from_fingerprint(&odd, &t, &err), -EINVAL);
        CHECK(strstr(err.reason, "31 bytes"));

        /* Catalog entry: none pushed yet; then a real catalog. */
        CHECK_EQ(mp_blast_target_from_catalog_entry(f.s, "base", &t, &err), -ENOENT);
        CHECK(strstr(err.reason, "no catalog"));
        char *cat_path = test_path(f.dir, "catalog.db");
        mp_catalog *cat = NULL;
        CHECK(mp_catalog_open(cat_path, true, &cat, NULL) == 0);
        CHECK(mp_catalog_add(cat, "generated/base", f.m[M_BASE].fp, NULL, &err) == 0);
        CHECK(mp_catalog_add(cat, "generated/third", f.m[M_THIRD].fp, NULL, &err) == 0);
        mp_catalog_close(cat);
        size_t len;
        char *bytes = test_read(cat_path, &len);
        char version[MP_STORE_CATALOG_VERSION_SIZE];
        CHECK(mp_store_put_catalog(f.s, (const uint8_t *) bytes, len, version, NULL) == 0);
        free(bytes);
        CHECK(mp_blast_target_from_catalog_entry(f.s, "generated/base", &t, &err) == 0);
        CHECK(t->fp && memcmp(t->digest, f.m[M_BASE].digest, 32) == 0);
        CHECK_STREQ(t->label, "generated/base");
        res = blast(f.s, t, NULL);
        CHECK_EQ(res.n, 9);
        result_free(&res);
        mp_blast_target_free(t);
        CHECK(mp_blast_target_from_catalog_entry(f.s, "generated/third", &t, &err) == 0);
        res = blast(f.s, t, NULL);
        CHECK(find_hit(&res, "g-third", NULL));
        CHECK(find_hit(&res, "g-copy", "/srv/third"));
        CHECK(!find_hit(&res, "g-base", NULL));
        result_free(&res);
        mp_blast_target_free(t);
        CHECK_EQ(mp_blast_target_from_catalog_entry(f.s, "generated/none", &t, &err), -ENOENT);
        CHECK(strstr(err.reason, "no entry"));
        CHECK_EQ(mp_blast_target_from_catalog_entry(f.s, "", &t, &err), -EINVAL);
        CHECK_EQ(mp_blast_target_from_catalog_entry(f.s, "bad\nname", &t, &err), -EINVAL);
        free(cat_path);

        /* host:path by hostname and by host id; paths may hold colons. */
        CHECK(mp_blast_target_from_host_path(f.s, "g-tuned:/models/m", &t, &err) == 0);
        CHECK(memcmp(t->digest, f.m[M_TUNED].digest, 32) == 0);
        CHECK_STREQ(t->label, "g-tuned:/models/m");
        res = blast(f.s, t, NULL);
        CHECK(find_hit(&res, "g-base", NULL));
        CHECK(find_hit(&res, "g-tuned", NULL));
        result_free(&res);
        mp_blast_target_free(t);
        char *hp = NULL;
        CHECK(asprintf(&hp, "%s:/srv/copy-of-base", f.copy.id) > 0);
        CHECK(mp_blast_target_from_host_path(f.s, hp, &t, &err) == 0);
        CHECK(memcmp(t->digest, f.m[M_BASE].digest, 32) == 0);
        mp_blast_target_free(t);
        free(hp);
        put_model(f.s, &bare, "C:/odd:path", f.m[M_THIRD].rec, f.m[M_THIRD].len, f.m[M_THIRD].digest);
        CHECK(mp_blast_target_from_host_path(f.s, "g-bare:C:/odd:path", &t, &err) == 0);
        CHECK(memcmp(t->digest, f.m[M_THIRD].digest, 32) == 0);
        mp_blast_target_free(t);
        /* A removed model is still a target: the last one seen there. */
        CHECK(mp_blast_target_from_host_path(f.s, "g-gone:/models/m", &t, &err) == 0);
        CHECK(memcmp(t->digest, f.m[M_GONE].digest, 32) == 0);
        mp_blast_target_free(t);
        /* Refusals. */
        CHECK_EQ(mp_blast_target_from_host_path(f.s, "nobody:/models/m", &t, &err), -ENOENT);
        CHECK(strstr(err.reason, "unknown host"));
        CHECK_EQ(mp_blast_target_from_host_path(f.s, "g-base:/elsewhere", &t, &err), -ENOENT);
        CHECK(strstr(err.reason, "never reported"));
        static const char *const malformed[] = { "g-base", ":/models/m", "g-base:", "" };
        for (size_t i = 0; i < ELEMENTSOF(malformed); i++)
                CHECK_EQ(mp_blast_target_from_host_path(f.s, malformed[i], &t, &err), -EINVAL);
        CHECK_EQ(mp_blast_target_from_host_path(f.s, NULL, &t, &err), -EINVAL);
        /* Two hosts called "twin": fine while they agree on the model. */
        host twin1, twin2;
        enroll(f.s, "twin", "machine-twin-1", &twin1);
        enroll(f.s, "twin", "machine-twin-2", &twin2);
        put_model(f.s, &twin1, "/m", f.m[M_OTHER].rec, f.m[M_OTHER].len, f.m[M_OTHER].digest);
        put_model(f.s, &twin2, "/m", f.m[M_OTHER].rec, f.m[M_OTHER].len, f.m[M_OTHER].digest);
        CHECK(mp_blast_target_from_host_path(f.s, "twin:/m", &t, &err) == 0);
        mp_blast_target_free(t);
        put_model(f.s, &twin2, "/m", f.m[M_THIRD].rec, f.m[M_THIRD].len, f.m[M_THIRD].digest);
        CHECK_EQ(mp_blast_target_from_host_path(f.s, "twin:/m", &t, &err), -EINVAL);
        CHECK(strstr(err.reason, "host id"));
        CHECK(mp_blast_target_from_host_path(f.s, "twin:/nothing", &t, &err) == -ENOENT);

        gen_fleet_free(&f);
}

/* ---- batches ------------------------------------------------------------ */

/* Stores events (sequences and times set here) of h in one call. */
static void ingest_many(mp_store *s, host *h, mp_store_event *ev, size_t n) {
        for (size_t i = 0; i < n; i++) {
                ev[i].sequence = ++h->seq;
                ev[i].observed_at = (int64_t) (1000 * h->seq);
        }
        uint64_t acked = 0;
        size_t stored = 0;
        mp_error err;
        int r = mp_store_ingest(s, h->id, ev, n, &acked, &stored, NULL, &err);
        if (r < 0)
                fprintf(stderr, "%s\n", err.reason);
        CHECK(r == 0);
        CHECK_EQ(stored, n);
}

static void check_same_hits(const result *a, const result *b) {
        CHECK_EQ(a->n, b->n);
        CHECK_EQ(a->stats.considered, b->stats.considered);
        CHECK_EQ(a->stats.scored, b->stats.scored);
        CHECK_EQ(a->stats.unreadable, b->stats.unreadable);
        CHECK_EQ(a->stats.models, b->stats.models);
        for (size_t i = 0; i < a->n && i < b->n; i++) {
                const mp_blast_hit *x = &a->h[i], *y = &b->h[i];
                CHECK_STREQ(x->loc.host_id, y->loc.host_id);
                CHECK_STREQ(x->loc.hostname, y->loc.hostname);
                CHECK_STREQ(x->loc.path, y->loc.path);
                CHECK_STREQ(x->loc.model_name, y->loc.model_name);
                CHECK(memcmp(x->loc.model_digest, y->loc.model_digest, MP_STORE_DIGEST_SIZE) == 0);
                CHECK_EQ(x->loc.first_seen, y->loc.first_seen);
                CHECK_EQ(x->loc.last_seen, y->loc.last_seen);
                CHECK_EQ(x->loc.present, y->loc.present);
                CHECK_STREQ(x->relation, y->relation);
                CHECK_STREQ(x->lineage, y->lineage);
                CHECK_EQ(x->verdict, y->verdict);
                CHECK(x->score == y->score);
                CHECK(x->shared == y->shared);
                CHECK_EQ(x->tensors_shared, y->tensors_shared);
        }
}

#define BATCH_FAMILIES 4
#define BATCH_MEMBERS 75
#define BATCH_HOSTS 20

/* Member k of family f (run f + 1): fine-tunes, F16 copies and pruned
 * copies of the base, splices of its embedding onto foreign blocks
 * (partial copies), unrelated models of the same width. */
static gen batch_member(unsigned f, unsigned k) {
        unsigned run = f + 1;
        gen g = base_gen(run);
        switch (k % 5) {
        case 0:
                g.noise = 0.002f * (float) (k + 1);
                break;
        case 1:
                g.f16 = true;
                g.noise = 0.001f * (float) (k + 1);
                break;
        case 2:
                g = base_gen(50 + 100 * f + k);
                g.embed_run = run;
                break;
        case 3:
                g = base_gen(1000 + 100 * f + k);
                break;
        default:
                g.layers = 1;
                g.noise = 0.003f * (float) (k + 1);
        }
        return g;
}

/* A few hundred fingerprints of known families on 20 hosts, some on two,
 * some removed: blast radius in batches of any size, on any number of
 * threads, on scoring records (store.h), finds exactly what it finds on
 * full records, one record per store call. */
static void test_batches_agree(void) {
        _cleanup_(freep) char *dir = test_tmpdir();
        _cleanup_(freep) char *path = test_path(dir, "store.db");
        mp_store *s = open_store(path);
        host h[BATCH_HOSTS];
        for (size_t i = 0; i < BATCH_HOSTS; i++) {
                char name[32], machine[32];
                snprintf(name, sizeof(name), "b-host-%02zu", i % 15);   /* some hostnames shared */
                snprintf(machine, sizeof(machine), "batch-machine-%zu", i);
                enroll(s, name, machine, &h[i]);
        }

        size_t n_models = BATCH_FAMILIES * BATCH_MEMBERS;
        model *m = calloc(n_models, sizeof(*m));
        CHECK(m);
        char (*paths)[2][32] = calloc(n_models, sizeof(*paths));
        mp_store_event *ev[BATCH_HOSTS];
        size_t n_ev[BATCH_HOSTS] = {};
        for (size_t i = 0; i < BATCH_HOSTS; i++)
                CHECK(ev[i] = calloc(3 * n_models, sizeof(*ev[i])));
        for (size_t j = 0; j < n_models; j++) {
                gen g = batch_member((unsigned) (j / BATCH_MEMBERS), (unsigned) (j % BATCH_MEMBERS));
                m[j] = gen_model(&g);
                snprintf(paths[j][0], sizeof(paths[j][0]), "/models/%zu", j);
                snprintf(paths[j][1], sizeof(paths[j][1]), "/copies/%zu", j);
                size_t at[2] = { j % BATCH_HOSTS, (j * 7 + 3) % BATCH_HOSTS };
                for (size_t c = 0; c < (j % 3 == 0 ? 2 : 1); c++) {
                        mp_store_event *e = &ev[at[c]][n_ev[at[c]]++];
                        *e = (mp_store_event) { .kind = MP_STORE_EVENT_MODEL_ADDED, .path = paths[j][c],
                                                .record = m[j].rec, .record_len = m[j].len };
                        memcpy(e->model_digest, m[j].digest, MP_STORE_DIGEST_SIZE);
                }
                if (j % 11 == 0)
                        ev[at[0]][n_ev[at[0]]++] = (mp_store_event) { .kind = MP_STORE_EVENT_MODEL_REMOVED,
                                                                     .path = paths[j][0] };
        }
        for (size_t i = 0; i < BATCH_HOSTS; i++) {
                ingest_many(s, &h[i], ev[i], n_ev[i]);
                free(ev[i]);
        }

        /* A real record's scoring record keeps its tensors and drops most
         * of its signals. */
        _cleanup_(freep) uint8_t *scoring = NULL;
        size_t scoring_len = 0;
        CHECK(mp_store_scoring_record(m[0].fp, &scoring, &scoring_len) == 0);
        CHECK(scoring_len < m[0].len);
        mp_fingerprint *sfp = NULL;
        CHECK(mp_fingerprint_unpack("scoring", scoring, scoring_len, &sfp, NULL) == 0);
        CHECK_EQ(sfp->n_tensors, m[0].fp->n_tensors);
        CHECK(sfp->signals && sfp->signals->has_weights && sfp->signals->n_eas_self_sim == 0);
        CHECK(m[0].fp->signals->n_eas_self_sim > 0);
        mp_fingerprint_free(sfp);

        /* The bases, a fine-tune, a splice; a threshold that lets weak
         * matches in, too. */
        size_t targets[] = { 0, BATCH_MEMBERS, 2 * BATCH_MEMBERS, 3 * BATCH_MEMBERS, 5, 7 };
        static const mp_blast_options variants[] = {
                { .threads = 1, .batch = 0 },
                { .threads = 3, .batch = 7 },
                { .threads = 2, .batch = 300 },
                { .threads = 0, .batch = 0 },
                { .threads = 4, .batch = MP_STORE_MAX_FETCH },
                { .threads = 2, .batch = 0, .full_records = true },
                { .threads = 1, .batch = 1 },
        };
        size_t partial = 0, lineage = 0;
        for (size_t ti = 0; ti < ELEMENTSOF(targets); ti++) {
                mp_blast_target *t = target_digest(s, m[targets[ti]].digest);
                for (int removed = 0; removed <= 1; removed++)
                        for (int low = 0; low <= 1; low++) {
                                double threshold = low ? 0.2 : 0;
                                mp_blast_options one = { .threads = 1, .batch = 1, .include_removed = removed,
                                                         .threshold = threshold, .full_records = true };
                                result ref = blast(s, t, &one);
                                CHECK(ref.stats.considered > MP_BLAST_DEFAULT_BATCH);
                                CHECK(ref.n > 0);
                                for (size_t i = 0; i < ref.n; i++) {
                                        partial += strcmp(ref.h[i].relation, MP_BLAST_PARTIAL_COPY) == 0;
                                        lineage += strcmp(ref.h[i].relation, MP_BLAST_PARTIAL_COPY) != 0 &&
                                                   strcmp(ref.h[i].relation, MP_BLAST_EXACT_COPY) != 0;
                                }
                                for (size_t v = 0; v < ELEMENTSOF(variants); v++) {
                                        mp_blast_options o = variants[v];
                                        o.include_removed = removed;
                                        o.threshold = threshold;
                                        result res = blast(s, t, &o);
                                        check_same_hits(&ref, &res);
                                        result_free(&res);
                                }
                                result_free(&ref);
                        }
                mp_blast_target_free(t);
        }
        /* The comparison covered both kinds of hits. */
        CHECK(partial > 0);
        CHECK(lineage > 0);

        /* A batch beyond the store's limit is refused. */
        mp_blast_target *t = target_digest(s, m[0].digest);
        mp_blast_options big = { .batch = MP_STORE_MAX_FETCH + 1 };
        mp_blast_hit *hits = NULL;
        size_t n_hits = 0;
        CHECK_EQ(mp_blast_radius(s, t, &big, &hits, &n_hits, NULL, NULL), -EINVAL);
        mp_blast_target_free(t);

        mp_store_close(s);
        for (size_t j = 0; j < n_models; j++)
                model_free(&m[j]);
        free(m);
        free(paths);
}

/* ---- hostile and damaged records ---------------------------------------- */

static void test_hostile_records(void) {
        gen_fleet f;
        gen_fleet_build(&f);
        host evil;
        enroll(f.s, "g-evil", "machine-evil", &evil);

        /* Records an agent may send (they unpack, name their digest) but
         * whose contents are absurd: shapes, sizes, stats, samples, a
         * hidden size beyond int64, and a copy of the base's embedding
         * digest with garbage around it. */
        const mp_fingerprint *base = f.m[M_BASE].fp;
        for (unsigned v = 0; v < 6; v++) {
                _cleanup_(freep) uint8_t *copy = NULL;
                size_t copy_len = 0;
                CHECK(mp_fingerprint_pack(base, &copy, &copy_len) == 0);
                mp_fingerprint *fp = NULL;
                CHECK(mp_fingerprint_unpack("copy", copy, copy_len, &fp, NULL) == 0);
                uint8_t digest[32];
                memset(digest, 0xa0 + v, sizeof(digest));
                memcpy(fp->model_digest.data, digest, 32);
                for (size_t i = 0; i < fp->n_tensors; i++) {
                        Modelprov__V1__TensorDigest *td = fp->tensors[i];
                        switch (v) {
                        case 0:         /* shapes of zeros and a 9-dim monster */
                                for (size_t d = 0; d < td->n_shape; d++)
                                        td->shape[d] = i % 2 ? 0 : UINT64_MAX;
                                break;
                        case 1:         /* NaN and infinite statistics */
                                td->l2 = NAN;
                                td->std = INFINITY;
                                td->mean = -NAN;
                                break;
                        case 2:         /* samples of odd lengths */
                                if (td->sample.len)
                                        td->sample.len = i % 3;
                                break;
                        case 3:         /* sizes that overflow when summed */
                                td->n_bytes = UINT64_MAX - i;
                                break;
                        case 4:         /* short hashes */
                                td->xxh3_128.len = i % 16;
                                break;
                        default:        /* everything at once, names empty */
                                td->name[0] = 0;
                                td->n_bytes = UINT64_MAX;
                                td->l2 = NAN;
                        }
                }
                if (v == 5 && fp->arch)
                        fp->arch->hidden_size = UINT64_MAX;
                uint8_t *rec;
                size_t len;
                CHECK(mp_fingerprint_pack(fp, &rec, &len) == 0);
                char path[32];
                snprintf(path, sizeof(path), "/evil/%u", v);
                put_model(f.s, &evil, path, rec, len, digest);
                free(rec);
                mp_fingerprint_free(fp);
        }

        /* And one stored record damaged in the store itself, both its
         * full and its scoring record: they no longer unpack. */
        static const uint8_t junk[] = { 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01 };
        char *jl = store_blob_sql(junk, sizeof(junk)), *dl = store_blob_sql(f.m[M_TUNED].digest, 32), *sql = NULL;
        CHECK(asprintf(&sql, "UPDATE fingerprints SET record = %s WHERE digest = %s", jl, dl) > 0);
        store_sql_exec(f.path, sql);
        free(sql);
        if (store_is_postgres()) {      /* in parts: the junk becomes the only one */
                CHECK(asprintf(&sql, "DELETE FROM scoring_parts WHERE digest = %s AND part > 0", dl) > 0);
                store_sql_exec(f.path, sql);
                free(sql);
                CHECK(asprintf(&sql, "UPDATE scoring_parts SET record = %s, parts = 1 WHERE digest = %s", jl, dl) > 0);
        } else
                CHECK(asprintf(&sql, "UPDATE scoring_records SET record = %s WHERE digest = %s", jl, dl) > 0);
        store_sql_exec(f.path, sql);
        free(sql);
        free(jl);
        free(dl);

        mp_blast_target *t = target_digest(f.s, f.m[M_BASE].digest);
        result res = blast(f.s, t, NULL);
        print_hits("hostile", &res);
        CHECK_EQ(res.stats.unreadable, 1);
        CHECK(!find_hit(&res, "g-tuned", NULL));        /* damaged: skipped */
        CHECK(find_hit(&res, "g-copy", NULL));
        CHECK(find_hit(&res, "g-spliced", NULL));
        CHECK(find_hit(&res, "g-f16", NULL));
        for (size_t i = 0; i < res.n; i++) {
                CHECK(isfinite(res.h[i].score) && res.h[i].score >= 0 && res.h[i].score <= 1);
                CHECK(isfinite(res.h[i].shared) && res.h[i].shared >= 0 && res.h[i].shared <= 1);
        }
        result_free(&res);
        mp_blast_target_free(t);

        /* Each hostile record as the target. */
        for (unsigned v = 0; v < 6; v++) {
                uint8_t digest[32];
                memset(digest, 0xa0 + v, sizeof(digest));
                t = target_digest(f.s, digest);
                res = blast(f.s, t, NULL);
                CHECK(find_hit(&res, "g-evil", NULL));  /* itself */
                result_free(&res);
                mp_blast_target_free(t);
        }

        /* A damaged record as the target: exact copies still found. */
        t = target_digest(f.s, f.m[M_TUNED].digest);
        CHECK(!t->fp);
        res = blast(f.s, t, NULL);
        CHECK_EQ(res.n, 1);
        CHECK_STREQ(res.h[0].loc.hostname, "g-tuned");
        result_free(&res);
        mp_blast_target_free(t);

        gen_fleet_free(&f);
}

/* ---- the zoo fleet ------------------------------------------------------ */

typedef struct zoo_model {
        const char *folder;
        char hostname[96];
        model m;
} zoo_model;

static zoo_model *zoo_find(zoo_model *z, size_t n, const char *folder) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(z[i].folder, folder) == 0)
                        return &z[i];
        return NULL;
}

/* The zoo's lineage (pairs.json) against blast radius of target. */
static void check_zoo_target(mp_store *s, zoo_model *z, size_t n, json_t *pairs, const char *target) {
        zoo_model *tz = zoo_find(z, n, target);
        CHECK(tz);
        mp_blast_target *t = target_digest(s, tz->m.digest);
        result res = blast(s, t, NULL);
        print_hits(target, &res);
        CHECK(find_hit(&res, tz->hostname, NULL));

        size_t n_linked = 0, n_independent = 0;
        size_t i;
        json_t *p;
        json_array_foreach(pairs, i, p) {
                const char *a = json_string_value(json_object_get(p, "a"));
                const char *b = json_string_value(json_object_get(p, "b"));
                const char *label = json_string_value(json_object_get(p, "label"));
                const char *category = json_string_value(json_object_get(p, "category"));
                CHECK(a && b && label && category);
                const char *other = strcmp(a, target) == 0 ? b : strcmp(b, target) == 0 ? a : NULL;
                if (!other)
                        continue;
                zoo_model *oz = zoo_find(z, n, other);
                CHECK(oz);
                const mp_blast_hit *h = find_hit(&res, oz->hostname, NULL);
                if (strcmp(label, "linked") == 0 && strcmp(category, "distillation") != 0) {
                        if (!h)
                                fprintf(stderr, "%s: linked %s (%s) not found\n", target, other, category);
                        CHECK(h);
                        CHECK(h->score >= MP_BLAST_DEFAULT_THRESHOLD);
                        n_linked++;
                } else if (strcmp(label, "independent") == 0) {
                        if (h)
                                fprintf(stderr, "%s: independent %s found as %s %.3f\n", target, other, h->relation,
                                        h->score);
                        CHECK(!h);
                        n_independent++;
                }
        }
        CHECK(n_linked >= 10);
        CHECK(n_independent >= 3);
        /* Every zoo model is 128 wide: all are candidates (the generated
         * fleet shows the pre-filter leaving other widths out). */
        CHECK_EQ(res.stats.considered, n - 1);
        CHECK_EQ(res.stats.scored, n - 1);
        CHECK_EQ(res.stats.unreadable, 0);
        result_free(&res);
        mp_blast_target_free(t);
}

static void test_zoo_fleet(void) {
        const char *zoo = test_zoo();
        if (!zoo) {
                fprintf(stderr, "   zoo fleet not tested (the generated fleet above was)\n");
                return;
        }
        char *models_path = test_path(zoo, "models.json"), *pairs_path = test_path(zoo, "pairs.json");
        json_error_t jerr;
        json_t *models = json_load_file(models_path, 0, &jerr), *pairs = json_load_file(pairs_path, 0, &jerr);
        CHECK(json_is_array(models) && json_is_array(pairs));

        size_t n = json_array_size(models);
        zoo_model *z = calloc(n, sizeof(*z));
        char *dir = test_tmpdir();
        char *path = test_path(dir, "store.db");
        mp_store *s = open_store(path);
        double t0 = (double) clock() / CLOCKS_PER_SEC;
        for (size_t i = 0; i < n; i++) {
                z[i].folder = json_string_value(json_object_get(json_array_get(models, i), "folder"));
                CHECK(z[i].folder);
                char *mp = test_path(zoo, z[i].folder);
                z[i].m = model_of(fingerprint_path(mp));
                free(mp);
                /* One host per model, named after it. */
                snprintf(z[i].hostname, sizeof(z[i].hostname), "zoo-%.80s", z[i].folder);
                for (char *c = z[i].hostname; *c; c++)
                        if (*c == '/')
                                *c = '-';
                host h;
                char machine[48];
                snprintf(machine, sizeof(machine), "zoo-machine-%zu", i);
                enroll(s, z[i].hostname, machine, &h);
                put_model(s, &h, "/models/zoo", z[i].m.rec, z[i].m.len, z[i].m.digest);
        }
        fprintf(stderr, "   %zu zoo models fingerprinted and stored in %.1f s of CPU\n", n,
                (double) clock() / CLOCKS_PER_SEC - t0);

        check_zoo_target(s, z, n, pairs, "llama/base-1");
        check_zoo_target(s, z, n, pairs, "gpt2/base-1");

        mp_store_close(s);
        for (size_t i = 0; i < n; i++)
                model_free(&z[i].m);
        free(z);
        json_decref(models);
        json_decref(pairs);
        free(models_path);
        free(pairs_path);
        free(path);
        free(dir);
}

/* ---- the order of hits --------------------------------------------------- */

/* n hits with many ties: few scores, hostnames shared by several host ids,
 * repeated paths and first_seen; a few exact copies among them. */
static mp_blast_hit *tied_hits(size_t n) {
        mp_blast_hit *h = calloc(n, sizeof(*h));
        CHECK(h);
        for (size_t i = 0; i < n; i++) {
                unsigned x = (unsigned) (i * 2654435761u);
                char name[32], path[32];
                snprintf(h[i].loc.host_id, sizeof(h[i].loc.host_id), "id-%02u", x % 37);
                snprintf(name, sizeof(name), "host-%u", (x % 37) % 11);
                snprintf(path, sizeof(path), "/m/%u", (x >> 8) % 5);
                CHECK(h[i].loc.hostname = strdup(name));
                CHECK(h[i].loc.path = strdup(path));
                CHECK(h[i].loc.model_name = strdup(""));
                h[i].loc.first_seen = (x >> 12) % 3;
                h[i].score = ((x >> 16) % 4) / 4.0;
                h[i].relation = (x >> 20) % 50 == 0 ? MP_BLAST_EXACT_COPY : MP_BLAST_PARTIAL_COPY;
        }
        return h;
}

/* Is a before b, or equal, in the documented order? */
static bool hits_ordered(const mp_blast_hit *a, const mp_blast_hit *b) {
        bool ea = strcmp(a->relation, MP_BLAST_EXACT_COPY) == 0, eb = strcmp(b->relation, MP_BLAST_EXACT_COPY) == 0;
        if (ea != eb)
                return ea;
        if (a->score != b->score)
                return a->score > b->score;
        int c = strcmp(a->loc.hostname, b->loc.hostname);
        if (c == 0)
                c = strcmp(a->loc.host_id, b->loc.host_id);
        if (c == 0)
                c = strcmp(a->loc.path, b->loc.path);
        return c < 0 || (c == 0 && a->loc.first_seen <= b->loc.first_seen);
}

/* Sorted on any number of threads, in parts of any size, hits come out in
 * the documented order, and in the very order of the one-thread sort
 * (ties included: they are broken by position). */
static void test_hit_order(void) {
        const size_t n = 5000;
        mp_blast_hit *ref = tied_hits(n);
        CHECK_EQ(mp_blast_hits_sort(&ref, n, 1, 0), 0);
        for (size_t i = 1; i < n; i++)
                CHECK(hits_ordered(&ref[i - 1], &ref[i]));

        static const struct { unsigned threads; size_t per_thread; } variants[] = {
                { 2, 100 }, { 3, 100 }, { 4, 1 }, { 7, 500 }, { 16, 1 }, { 0, 1 }, { 5, MP_HIT_ORDER_PER_THREAD },
        };
        for (size_t v = 0; v < ELEMENTSOF(variants); v++) {
                mp_blast_hit *h = tied_hits(n);
                CHECK_EQ(mp_blast_hits_sort(&h, n, variants[v].threads, variants[v].per_thread), 0);
                for (size_t i = 0; i < n; i++) {
                        CHECK_STREQ(h[i].loc.host_id, ref[i].loc.host_id);
                        CHECK_STREQ(h[i].loc.path, ref[i].loc.path);
                        CHECK_EQ(h[i].loc.first_seen, ref[i].loc.first_seen);
                        CHECK(h[i].score == ref[i].score);
                        CHECK(h[i].relation == ref[i].relation);
                }
                mp_blast_hits_free(h, n);
        }
        mp_blast_hits_free(ref, n);

        /* Nothing and one hit are sorted as they are. */
        mp_blast_hit *none = NULL;
        CHECK_EQ(mp_blast_hits_sort(&none, 0, 4, 1), 0);
        CHECK(!none);
        mp_blast_hit *one = tied_hits(1);
        CHECK_EQ(mp_blast_hits_sort(&one, 1, 4, 1), 0);
        mp_blast_hits_free(one, 1);
}

int main(void) {
        RUN(test_hit_order);
        RUN(test_generated_fleet);
        RUN(test_targets);
        RUN(test_batches_agree);
        RUN(test_hostile_records);
        RUN(test_zoo_fleet);
        return 0;
}
