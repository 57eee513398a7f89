/* blast_radius.c - blast-radius latency over a fleet-sized store: by
 * default 100,000 fingerprints on 1,000 hosts (issue 4 target: at most 1 s),
 * and with --locations 10 the fleet of issue 7: 1,000,000 (host, path) rows
 * of 100,000 distinct fingerprints.  Built by meson, run by blast_radius.sh;
 * prints numbers, asserts nothing.
 *
 * The fleet is derived from real fingerprints (zoo llama/base-1 and
 * gpt2/base-1, or a model generated here when the zoo is missing): base
 * models ("families") get a hidden size drawn from the sizes real fleets
 * hold, skewed the way they are (4096 most of all), their own tensor
 * contents (hashes) and weight values (samples with family-specific sign
 * flips, so two families do not correlate); family sizes follow a Zipf law,
 * and each member is a fine-tune (all tensors changed a little), a LoRA
 * merge (embedding and head byte-identical to the base) or a conversion.
 * Every fingerprint lives on --locations (host, path) rows on distinct
 * hosts on average (default 1.2: each on one host, about a fifth on a
 * second).  The fill goes through mp_store_ingest, host by host, in calls
 * of up to 512 events; its time is printed.
 *
 * Then, for several targets (the base of the largest family in the largest
 * width cluster, bases in smaller clusters, a fingerprint record of a model
 * no host holds, host:path), the blast-radius latency, the candidates the
 * pre-filter let through and scored, and two references measured in the
 * same run: scoring every stored fingerprint without the pre-filter
 * (measured on a sample, extrapolated to the whole store on the same
 * number of threads) and a plain SQL read of every stored record.
 *
 * The store is SQLite (a temporary file, or --store FILE / sqlite:FILE) or
 * PostgreSQL (--store postgresql://..., an empty database; --reuse takes a
 * store this program filled before, with the same options).
 *
 * Usage: blast_radius [--fingerprints N] [--hosts N] [--families N]
 *                     [--locations L] [--threads N] [--store URL|FILE]
 *                     [--reuse] [--zoo DIR] */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "collector/blast_radius.h"
#include "collector/store.h"
#include "compare/compare.h"
#include "fingerprint/compute.h"
#include "fingerprint/record.h"
#include "signals/sample.h"
#include "util/heap.h"
#include "util/macro.h"
#include "util/strutil.h"

#define DIGEST_SIZE MP_STORE_DIGEST_SIZE

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, const mp_error *err) {
        fprintf(stderr, "blast_radius bench: %s: %s\n", what, err ? err->reason : strerror(errno));
        exit(2);
}

/* splitmix64: every choice below is a pure function of its inputs, so a
 * reused store and a fresh run agree on digests. */
static uint64_t mix(uint64_t x) {
        x += 0x9e3779b97f4a7c15ULL;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        return x ^ (x >> 31);
}

static uint64_t mix3(uint64_t a, uint64_t b, uint64_t c) {
        return mix(mix(mix(a) ^ b) ^ c);
}

/* ---- seeds -------------------------------------------------------------- */

typedef struct seed {
        uint8_t *rec;
        size_t len;
        uint64_t hidden;
        const char *family_hash;        /* one per architecture */
} seed;

static mp_fingerprint *fingerprint_path(const char *path) {
        mp_model *m = NULL;
        mp_fingerprint *fp = NULL;
        mp_error err;
        if (mp_model_open(path, NULL, &m, &err) < 0)
                die(path, &err);
        mp_pass_options po = { .jobs = 1 };
        if (mp_fingerprint_compute(m, &po, &fp, &err) < 0)
                die(path, &err);
        mp_model_free(m);
        return fp;
}

/* A 4-block Llama-named F16 model of random values, for when the zoo is
 * missing. */
static char *write_generated(const char *dir) {
        static const struct {
                const char *name;
                unsigned rows, cols;
        } parts[] = {
                { "lm_head.weight", 2000, 128 }, { "model.embed_tokens.weight", 2000, 128 },
                { "input_layernorm.weight", 128, 0 }, { "mlp.down_proj.weight", 128, 256 },
                { "mlp.gate_proj.weight", 256, 128 }, { "mlp.up_proj.weight", 256, 128 },
                { "self_attn.q_proj.weight", 128, 128 }, { "self_attn.v_proj.weight", 128, 128 },
        };
        char *path = NULL;
        if (asprintf(&path, "%s/generated.safetensors", dir) < 0)
                die("asprintf", NULL);
        FILE *f = fopen(path, "wb");
        if (!f)
                die(path, NULL);
        char header[8192];
        size_t hn = 0;
        uint64_t off = 0, total = 0;
        hn += (size_t) snprintf(header + hn, sizeof(header) - hn, "{");
        for (int layer = -1; layer < 4; layer++)
                for (size_t k = layer < 0 ? 0 : 2; k < (layer < 0 ? 2 : ELEMENTSOF(parts)); k++) {
                        uint64_t n = (uint64_t) parts[k].rows * (parts[k].cols ? parts[k].cols : 1);
                        char name[96], shape[32];
                        if (layer < 0)
                                snprintf(name, sizeof(name), "%s", parts[k].name);
                        else
                                snprintf(name, sizeof(name), "model.layers.%d.%s", layer, parts[k].name);
                        if (parts[k].cols)
                                snprintf(shape, sizeof(shape), "%u,%u", parts[k].rows, parts[k].cols);
                        else
                                snprintf(shape, sizeof(shape), "%u", parts[k].rows);
                        hn += (size_t) snprintf(header + hn, sizeof(header) - hn,
                                                "%s\"%s\":{\"dtype\":\"F16\",\"shape\":[%s],\"data_offsets\":[%llu,%llu]}",
                                                off ? "," : "", name, shape, (unsigned long long) off,
                                                (unsigned long long) (off + 2 * n));
                        off += 2 * n;
                }
        total = off;
        hn += (size_t) snprintf(header + hn, sizeof(header) - hn, "}");
        while (hn % 8)
                header[hn++] = ' ';
        uint64_t le = hn;
        fwrite(&le, 8, 1, f);
        fwrite(header, 1, hn, f);
        for (uint64_t i = 0; i < total / 2; i++) {
                uint16_t h = mp_f32_to_f16((float) ((double) (mix(i) >> 11) / (double) (1ULL << 53) - 0.5) * 0.1f);
                fwrite(&h, 2, 1, f);
        }
        fclose(f);
        return path;
}

static int load_seeds(const char *zoo, const char *tmp, seed *seeds) {
        static const char *const zoo_models[] = { "llama/base-1", "gpt2/base-1" };
        struct stat st;
        int n = 0;
        if (zoo && stat(zoo, &st) == 0 && S_ISDIR(st.st_mode)) {
                for (size_t i = 0; i < ELEMENTSOF(zoo_models); i++) {
                        char *p = NULL;
                        if (asprintf(&p, "%s/%s", zoo, zoo_models[i]) < 0)
                                die("asprintf", NULL);
                        mp_fingerprint *fp = fingerprint_path(p);
                        seeds[n] = (seed) { .hidden = fp->arch ? fp->arch->hidden_size : 128,
                                            .family_hash = i == 0 ? "llama" : "gpt2" };
                        if (mp_fingerprint_pack(fp, &seeds[n].rec, &seeds[n].len) < 0)
                                die("pack", NULL);
                        mp_fingerprint_free(fp);
                        free(p);
                        n++;
                }
                printf("seeds: zoo llama/base-1 (%zu-byte record) and gpt2/base-1 (%zu bytes)\n", seeds[0].len,
                       seeds[1].len);
                return n;
        }
        printf("seeds: zoo missing (%s); a generated 4-block model\n", zoo ? zoo : "no --zoo");
        char *p = write_generated(tmp);
        mp_fingerprint *fp = fingerprint_path(p);
        seeds[0] = (seed) { .hidden = 128, .family_hash = "llama" };
        if (mp_fingerprint_pack(fp, &seeds[0].rec, &seeds[0].len) < 0)
                die("pack", NULL);
        mp_fingerprint_free(fp);
        unlink(p);
        free(p);
        return 1;
}

/* ---- the fleet ---------------------------------------------------------- */

/* Hidden sizes and their share of a fleet (per mille), skewed the way
 * published models are: 7-8B models (4096) most of all. */
static const struct {
        uint64_t hidden;
        unsigned per_mille;
} widths[] = {
        { 4096, 300 }, { 2048, 120 }, { 3072, 80 }, { 5120, 80 }, { 8192, 80 }, { 1024, 60 }, { 768, 60 },
        { 1536, 50 }, { 2560, 50 }, { 3584, 40 }, { 6144, 30 }, { 896, 30 }, { 7168, 20 },
};

typedef struct fleet {
        size_t n_fp, n_hosts, n_families;
        size_t *family_of;              /* fingerprint -> family */
        size_t *first_of;               /* family -> its first fingerprint (the base) */
        size_t *size_of;                /* family -> members */
        uint64_t *hidden_of;            /* family -> hidden size */
        double locations;               /* (host, path) rows per fingerprint, on average */
        size_t max_locations;           /* ceil(locations) */
        size_t step;                    /* hosts between a fingerprint's locations */
        int n_seeds;
        seed seeds[2];
} fleet;

static void digest_of(size_t i, uint8_t d[DIGEST_SIZE]) {
        for (size_t k = 0; k < DIGEST_SIZE / 8; k++) {
                uint64_t v = mix3(0xd16e57, i, k);
                memcpy(d + 8 * k, &v, 8);
        }
}

/* Family sizes: Zipf (1/rank) over the families, then each family's width
 * drawn so that the widths' shares of fingerprints follow the table. */
static void fleet_plan(fleet *f) {
        f->family_of = calloc(f->n_fp, sizeof(size_t));
        f->first_of = calloc(f->n_families, sizeof(size_t));
        f->size_of = calloc(f->n_families, sizeof(size_t));
        f->hidden_of = calloc(f->n_families, sizeof(uint64_t));
        if (!f->family_of || !f->first_of || !f->size_of || !f->hidden_of)
                die("calloc", NULL);
        double h = 0;
        for (size_t k = 0; k < f->n_families; k++)
                h += 1.0 / (double) (k + 1);
        size_t assigned = 0;
        for (size_t k = 0; k < f->n_families; k++) {
                size_t want = (size_t) floor((double) f->n_fp / h / (double) (k + 1));
                f->size_of[k] = want ? want : 1;
                assigned += f->size_of[k];
        }
        for (size_t k = 0; assigned < f->n_fp; k = (k + 1) % f->n_families, assigned++)
                f->size_of[k]++;
        while (assigned > f->n_fp)
                for (size_t k = f->n_families; k-- > 0 && assigned > f->n_fp;)
                        if (f->size_of[k] > 1) {
                                f->size_of[k]--;
                                assigned--;
                        }

        /* Widths: largest family first to the width furthest below its share. */
        double got[ELEMENTSOF(widths)] = {};
        for (size_t k = 0; k < f->n_families; k++) {
                size_t best = 0;
                double best_gap = -1e300;
                for (size_t w = 0; w < ELEMENTSOF(widths); w++) {
                        double gap = widths[w].per_mille / 1000.0 * (double) f->n_fp - got[w];
                        /* a little deterministic jitter so equal gaps do not always pick the same */
                        gap += (double) (mix3(7, k, w) % 1000) * 1e-6;
                        if (gap > best_gap) {
                                best_gap = gap;
                                best = w;
                        }
                }
                got[best] += (double) f->size_of[k];
                f->hidden_of[k] = widths[best].hidden;
        }

        size_t i = 0;
        for (size_t k = 0; k < f->n_families; k++) {
                f->first_of[k] = i;
                for (size_t m = 0; m < f->size_of[k]; m++)
                        f->family_of[i++] = k;
        }
}

/* Flips the sign of F16 sample j of tensor t when the family's bit says so:
 * two families' values then share no correlation, a family's members keep
 * theirs. */
static void family_samples(Modelprov__V1__TensorDigest *t, uint64_t family, size_t index) {
        for (size_t j = 0; j + 1 < t->sample.len; j += 2)
                if (mix3(family, index, j) & 1)
                        t->sample.data[j + 1] ^= 0x80;
}

/* A member's change: noise of about `scale` of each sample's magnitude. */
static void member_noise(Modelprov__V1__TensorDigest *t, uint64_t member, double scale) {
        for (size_t j = 0; j + 1 < t->sample.len; j += 2) {
                uint16_t h = (uint16_t) (t->sample.data[j] | t->sample.data[j + 1] << 8);
                float v = mp_f16_to_f32(h);
                double u = (double) (mix3(member, j, 3) >> 11) / (double) (1ULL << 53) * 2 - 1;
                h = mp_f32_to_f16((float) (v * (1 + scale * u)));
                t->sample.data[j] = (uint8_t) h;
                t->sample.data[j + 1] = (uint8_t) (h >> 8);
        }
}

/* Another run or a change moves a tensor's norm and spread a little: by a
 * factor within 1 +- scale. */
static void scale_stats(Modelprov__V1__TensorDigest *t, uint64_t v, double scale) {
        double f = 1 + scale * ((double) (v >> 11) / (double) (1ULL << 53) * 2 - 1);
        t->l2 *= f;
        t->std *= f;
}

static void xor_hash(Modelprov__V1__TensorDigest *t, uint64_t v) {
        for (size_t b = 0; b < t->xxh3_128.len && b < 8; b++)
                t->xxh3_128.data[b] ^= (uint8_t) (v >> (8 * b));
}

static bool is_embedding_or_head(const char *name) {
        return strstr(name, "embed_tokens") || strstr(name, "lm_head") || strstr(name, "wte");
}

/* The record of fingerprint i, packed. */
static uint8_t *make_record(const fleet *f, size_t i, size_t *len) {
        size_t fam = f->family_of[i], member = i - f->first_of[fam];
        const seed *sd = &f->seeds[fam % (size_t) f->n_seeds];
        uint64_t hidden = f->hidden_of[fam];
        mp_fingerprint *fp = NULL;
        if (mp_fingerprint_unpack("seed", sd->rec, sd->len, &fp, NULL) < 0)
                die("unpack seed", NULL);

        uint8_t d[DIGEST_SIZE];
        digest_of(i, d);
        memcpy(fp->model_digest.data, d, DIGEST_SIZE);
        /* Strings point at local buffers while packing, and back before
         * the free: an empty string is protobuf-c's static default. */
        char name[96], arch_hash[65];
        snprintf(name, sizeof(name), "family-%zu/%s-%zu", fam, member ? "variant" : "base", member);
        char *own_name = fp->name, *own_arch = fp->signals ? fp->signals->arch_hash : NULL;
        fp->name = name;
        for (int k = 0; k < 4; k++)
                snprintf(arch_hash + 16 * k, 17, "%016llx", (unsigned long long) mix3(fam, hidden, (uint64_t) k));
        if (fp->signals)
                fp->signals->arch_hash = arch_hash;
        if (fp->arch)
                fp->arch->hidden_size = hidden;
        fp->parameter_count = fp->parameter_count / sd->hidden * hidden;

        /* 0: the base; then by member: 1..6 fine-tunes, 7..8 LoRA merges
         * (embedding and head untouched), 9 conversions, and 1 in 100 an
         * assembly: the base's embedding and head on blocks of another
         * run (a partial copy). */
        unsigned kind = member == 0 ? 0 : 1 + (unsigned) (mix3(fam, member, 11) % 9);
        if (member > 0 && mix3(fam, member, 12) % 100 == 0)
                kind = 10;
        for (size_t t = 0; t < fp->n_tensors; t++) {
                Modelprov__V1__TensorDigest *td = fp->tensors[t];
                for (size_t k = 0; k < td->n_shape; k++)
                        if (td->shape[k] == sd->hidden) {
                                td->shape[k] = hidden;
                                td->n_bytes = td->n_bytes / sd->hidden * hidden;
                        }
                bool frozen = (kind == 7 || kind == 8 || kind == 10) && is_embedding_or_head(td->name);
                uint64_t run = kind == 10 && !frozen ? mix3(fam, member, 13) | 1ULL << 63 : fam;
                xor_hash(td, mix3(run, 0x5eed, t));
                family_samples(td, run, t);
                scale_stats(td, mix3(run, 0x57a7, t), 0.1);
                if (kind == 10)
                        continue;
                if (kind != 0 && !frozen) {
                        xor_hash(td, mix3(fam, member, t + 1));
                        scale_stats(td, mix3(fam, member, t + 2), 0.02);
                        member_noise(td, mix3(fam, member, t), kind == 9 ? 0.01 : 0.08);
                }
        }
        uint8_t *rec = NULL;
        if (mp_fingerprint_pack(fp, &rec, len) < 0)
                die("pack", NULL);
        fp->name = own_name;
        if (fp->signals)
                fp->signals->arch_hash = own_arch;
        mp_fingerprint_free(fp);
        return rec;
}

static void host_name(size_t h, char *buf, size_t size) {
        snprintf(buf, size, "node-%04zu", h);
}

/* How many (host, path) locations fingerprint i has: floor(L) or one more,
 * the fraction of L choosing which (a pure function of i, so a reused
 * store and a fresh run agree). */
static size_t locations_of(const fleet *f, size_t i) {
        size_t n = (size_t) f->locations;
        double frac = f->locations - (double) n;
        if (frac > 0 && (double) (mix3(i, 0x10c, 0) % 1000000) < frac * 1e6)
                n++;
        return n;
}

/* The host of location k of fingerprint i: location 0 on host i % hosts,
 * the others `step` hosts further each, so a fingerprint's locations are
 * on distinct hosts (k * step < hosts for every k < max_locations). */
static size_t location_host(const fleet *f, size_t i, size_t k) {
        return (i + k * f->step) % f->n_hosts;
}

static void location_path(size_t i, size_t k, char *buf, size_t size) {
        if (k == 0)
                snprintf(buf, size, "/models/own/%zu", i);
        else
                snprintf(buf, size, "/models/copy-%zu/%zu", k, i);
}

/* Events of one host gathered for one mp_store_ingest call (one
 * transaction), within the store's per-call limits. */
#define FILL_CHUNK 512
#define FILL_CHUNK_BYTES (MP_STORE_MAX_BATCH_BYTES / 2)

typedef struct filler {
        mp_store *s;
        mp_store_event ev[FILL_CHUNK];
        uint8_t *recs[FILL_CHUNK];
        char paths[FILL_CHUNK][64];
        size_t n, bytes;
        size_t rows, records;
} filler;

static void fill_flush(filler *fl, const char *host_id, uint64_t *seq) {
        if (fl->n == 0)
                return;
        uint64_t acked;
        size_t stored;
        mp_error err;
        if (mp_store_ingest(fl->s, host_id, fl->ev, fl->n, &acked, &stored, NULL, &err) < 0)
                die("ingest", &err);
        if (stored != fl->n || acked != *seq + fl->n) {
                fprintf(stderr, "blast_radius bench: ingest stored %zu of %zu events (acked through %llu)\n", stored,
                        fl->n, (unsigned long long) acked);
                exit(2);
        }
        *seq = acked;
        for (size_t k = 0; k < fl->n; k++)
                free(fl->recs[k]);
        fl->rows += fl->n;
        fl->n = fl->bytes = 0;
}

/* Adds location k of fingerprint i to the host's pending events.  Only
 * location 0 carries the record: the store keeps one fingerprint per
 * digest, and sending it again with every copy would make the fill unpack
 * the same record `locations` times for nothing. */
static void fill_add(filler *fl, const fleet *f, const char *host_id, uint64_t *seq, size_t i, size_t k) {
        size_t len = 0;
        uint8_t *rec = k == 0 ? make_record(f, i, &len) : NULL;
        if (fl->n == FILL_CHUNK || (rec && fl->bytes + len > FILL_CHUNK_BYTES))
                fill_flush(fl, host_id, seq);
        size_t n = fl->n++;
        fl->recs[n] = rec;
        fl->bytes += len;
        fl->records += rec != NULL;
        location_path(i, k, fl->paths[n], sizeof(fl->paths[n]));
        fl->ev[n] = (mp_store_event) { .sequence = *seq + n + 1,
                                       .kind = MP_STORE_EVENT_MODEL_ADDED,
                                       .observed_at = 1700000000000LL + (int64_t) i,
                                       .path = fl->paths[n], .record = rec, .record_len = len };
        digest_of(i, fl->ev[n].model_digest);
}

/* Enrolls the hosts, then host by host reports every location it holds,
 * in ingest calls of up to FILL_CHUNK events. */
static void fill(mp_store *s, const fleet *f) {
        char (*ids)[MP_STORE_HOST_ID_SIZE] = calloc(f->n_hosts, sizeof(*ids));
        filler *fl = calloc(1, sizeof(*fl));
        if (!ids || !fl)
                die("calloc", NULL);
        fl->s = s;
        mp_error err;
        double t0 = now_s(), last = t0;
        for (size_t h = 0; h < f->n_hosts; h++) {
                char name[32], machine[48];
                host_name(h, name, sizeof(name));
                snprintf(machine, sizeof(machine), "bench-machine-%zu", h);
                uint8_t key[DIGEST_SIZE] = { 7 };
                mp_host_info info = { .hostname = name, .machine_id = machine, .agent_version = "bench" };
                if (mp_store_enroll(s, &info, key, ids[h], &err) < 0)
                        die("enroll", &err);
        }
        double enroll_s = now_s() - t0;

        for (size_t h = 0; h < f->n_hosts; h++) {
                uint64_t seq = 0;
                for (size_t k = 0; k < f->max_locations; k++) {
                        /* the i with location_host(i, k) == h */
                        size_t first = (h + f->n_hosts - k * f->step % f->n_hosts) % f->n_hosts;
                        for (size_t i = first; i < f->n_fp; i += f->n_hosts)
                                if (k < locations_of(f, i)) {
                                        assert(location_host(f, i, k) == h);
                                        fill_add(fl, f, ids[h], &seq, i, k);
                                }
                }
                fill_flush(fl, ids[h], &seq);
                if (now_s() - last > 10) {
                        last = now_s();
                        fprintf(stderr, "  filling: %zu of %zu hosts, %zu rows, %.0f/s\n", h + 1, f->n_hosts,
                                fl->rows, (double) fl->rows / (last - t0));
                }
        }
        double dt = now_s() - t0;
        printf("fill: %zu (host, path) rows (%.2f per fingerprint; the %zu records with the first of each) from %zu"
               " hosts in %.1f s (%.0f rows/s; enrolling the hosts %.1f s of it)\n",
               fl->rows, (double) fl->rows / (double) f->n_fp, fl->records, f->n_hosts, dt, (double) fl->rows / dt,
               enroll_s);
        free(fl);
        free(ids);
}

/* ---- references --------------------------------------------------------- */

typedef struct scan_sum {
        uint64_t rows, bytes;
} scan_sum;

static int scan_cb(const mp_store_fingerprint_info *info, void *userdata) {
        scan_sum *s = userdata;
        s->rows++;
        s->bytes += info->record_len;
        return 0;
}

/* Seconds per fingerprint to read, unpack and compare a sample of stored
 * fingerprints with the target, one thread, no pre-filter; *fetch_per
 * receives the part spent reading the record from the store. */
static double full_scoring_per_fp(mp_store *s, const fleet *f, const mp_fingerprint *target, size_t sample,
                                  double *fetch_per) {
        mp_compare_query *q = NULL;
        if (mp_compare_query_new(target, &q) < 0)
                die("compare query", NULL);
        double t0 = now_s(), fetch = 0;
        for (size_t k = 0; k < sample; k++) {
                uint8_t d[DIGEST_SIZE], *rec = NULL;
                size_t len = 0;
                digest_of((size_t) (mix3(99, k, 0) % f->n_fp), d);
                mp_error err;
                double tf = now_s();
                if (mp_store_fingerprint(s, d, &rec, &len, &err) < 0)
                        die("read fingerprint", &err);
                fetch += now_s() - tf;
                mp_fingerprint *b = NULL;
                if (mp_fingerprint_unpack("stored", rec, len, &b, NULL) < 0)
                        die("unpack", NULL);
                mp_comparison c;
                mp_compare_query_run(q, b, NULL, &c);
                mp_fingerprint_free(b);
                free(rec);
        }
        double per = (now_s() - t0) / (double) sample;
        *fetch_per = fetch / (double) sample;
        mp_compare_query_free(q);
        return per;
}

/* ---- queries ------------------------------------------------------------ */

/* Seconds to read the inventory rows of the distinct models among the hits,
 * MP_STORE_MAX_FETCH models per mp_store_locations_of() call (as blast
 * radius reads them, in larger batches), on one thread: the part of a blast radius
 * that grows with the (host, path) rows per fingerprint. */
static double locations_s(mp_store *s, const mp_blast_hit *h, size_t n, size_t *models, size_t *rows) {
        uint8_t (*d)[DIGEST_SIZE] = n ? calloc(n, DIGEST_SIZE) : NULL;
        if (n && !d)
                die("calloc", NULL);
        for (size_t i = 0; i < n; i++)
                memcpy(d[i], h[i].loc.model_digest, DIGEST_SIZE);
        qsort(d, n, DIGEST_SIZE, mp_store_digest_cmp);
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
                if (m == 0 || memcmp(d[m - 1], d[i], DIGEST_SIZE) != 0)
                        memmove(d[m++], d[i], DIGEST_SIZE);
        *rows = 0;
        double t0 = now_s();
        for (size_t i = 0; i < m; i += MP_STORE_MAX_FETCH) {
                mp_store_location *l = NULL;
                size_t k = 0, batch = m - i < MP_STORE_MAX_FETCH ? m - i : MP_STORE_MAX_FETCH;
                mp_error err;
                if (mp_store_locations_of(s, d[i], batch, &l, &k, &err) < 0)
                        die("locations", &err);
                *rows += k;
                mp_store_locations_free(l, k);
        }
        double dt = now_s() - t0;
        *models = m;
        free(d);
        return dt;
}

static double run_query(mp_store *s, const char *label, mp_blast_target *t, unsigned threads, double full_s,
                        double scan_s) {
        mp_blast_options o = { .threads = threads };
        mp_blast_hit *h = NULL;
        size_t n = 0;
        mp_blast_stats st;
        mp_error err;
        double best = 1e300;
        for (int rep = 0; rep < 3; rep++) {     /* best of three: the first also warms the page cache */
                double t0 = now_s();
                if (mp_blast_radius(s, t, &o, &h, &n, &st, &err) < 0)
                        die("blast radius", &err);
                double dt = now_s() - t0;
                if (dt < best)
                        best = dt;
                if (rep < 2)
                        mp_blast_hits_free(h, n);
        }
        size_t exact = 0, partial = 0;
        for (size_t i = 0; i < n; i++) {
                exact += strcmp(h[i].relation, MP_BLAST_EXACT_COPY) == 0;
                partial += strcmp(h[i].relation, MP_BLAST_PARTIAL_COPY) == 0;
        }
        printf("  %-44s %7.3f s  considered %6llu  scored %6llu  hits %5zu (%zu exact, %zu partial) in %llu models"
               "  threads %u  full/blast %5.1fx  scan/blast %5.1fx\n",
               label, best, (unsigned long long) st.considered, (unsigned long long) st.scored, n, exact, partial,
               (unsigned long long) st.models, st.threads, full_s / best, scan_s / best);
        size_t models, rows;
        double loc_s = locations_s(s, h, n, &models, &rows);
        printf("  %-44s (reading the hits' %zu rows, of %zu models, alone: %.3f s on one thread)\n", "", rows,
               models, loc_s);
        mp_blast_hits_free(h, n);
        return best;
}

/* --store: a URL mp_store_open() takes, or a plain path meaning SQLite.
 * *path receives the SQLite file (NULL for PostgreSQL). */
static char *store_url(const char *arg, char **path) {
        char *url = NULL;
        *path = NULL;
        if (mp_has_prefix(arg, "postgresql://") || mp_has_prefix(arg, "postgres://"))
                url = strdup(arg);
        else if (mp_has_prefix(arg, "sqlite:")) {
                url = strdup(arg);
                *path = strdup(arg + strlen("sqlite:"));
        } else {
                *path = strdup(arg);
                if (asprintf(&url, "sqlite:%s", arg) < 0)
                        url = NULL;
        }
        if (!url || (mp_has_prefix(url, "sqlite:") && !*path))
                die("strdup", NULL);
        return url;
}

static size_t store_host_count(mp_store *s) {
        mp_store_host *h = NULL;
        size_t n = 0;
        mp_error err;
        if (mp_store_hosts(s, &h, &n, &err) < 0)
                die("hosts", &err);
        mp_store_hosts_free(h, n);
        return n;
}

int main(int argc, char **argv) {
        mp_heap_keep_freed();           /* as the collector does */
        fleet f = { .n_fp = 100000, .n_hosts = 1000, .n_families = 400, .locations = 1.2 };
        unsigned threads = 0;
        const char *store_arg = NULL, *zoo = getenv("MODELPROV_ZOO");
        bool reuse = false;
        static const struct option opts[] = {
                { "fingerprints", required_argument, NULL, 'n' }, { "hosts", required_argument, NULL, 'H' },
                { "families", required_argument, NULL, 'F' },     { "threads", required_argument, NULL, 't' },
                { "locations", required_argument, NULL, 'L' },    { "store", required_argument, NULL, 's' },
                { "reuse", no_argument, NULL, 'r' },              { "zoo", required_argument, NULL, 'z' },
                {},
        };
        int c;
        while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0)
                switch (c) {
                case 'n': f.n_fp = strtoull(optarg, NULL, 10); break;
                case 'H': f.n_hosts = strtoull(optarg, NULL, 10); break;
                case 'F': f.n_families = strtoull(optarg, NULL, 10); break;
                case 't': threads = (unsigned) strtoul(optarg, NULL, 10); break;
                case 'L': f.locations = strtod(optarg, NULL); break;
                case 's': store_arg = optarg; break;
                case 'r': reuse = true; break;
                case 'z': zoo = optarg; break;
                default:
                        fprintf(stderr, "usage: %s [--fingerprints N] [--hosts N] [--families N] [--locations L]"
                                        " [--threads N] [--store FILE|sqlite:FILE|postgresql://...] [--reuse]"
                                        " [--zoo DIR]\n", argv[0]);
                        return 2;
                }
        if (f.n_fp < 100 || f.n_hosts < 2 || f.n_families < 4 || f.n_families > f.n_fp / 4) {
                fprintf(stderr, "need >= 100 fingerprints, >= 2 hosts, 4 .. fingerprints/4 families\n");
                return 2;
        }
        if (!(f.locations >= 1) || f.locations > (double) f.n_hosts) {
                fprintf(stderr, "need 1 <= locations <= hosts\n");
                return 2;
        }
        f.max_locations = (size_t) ceil(f.locations);
        f.step = f.n_hosts / f.max_locations;

        const char *tmp_env = getenv("TMPDIR");
        char *tmpdir = NULL;
        if (asprintf(&tmpdir, "%s/modelprov-blast-XXXXXX", tmp_env && tmp_env[0] ? tmp_env : "/tmp") < 0 ||
            !mkdtemp(tmpdir))
                die("mkdtemp", NULL);
        char *path = NULL, *url = NULL;
        if (store_arg)
                url = store_url(store_arg, &path);
        else {
                if (asprintf(&path, "%s/store.db", tmpdir) < 0 || asprintf(&url, "sqlite:%s", path) < 0)
                        die("asprintf", NULL);
        }

        f.n_seeds = load_seeds(zoo, tmpdir, f.seeds);
        fleet_plan(&f);

        /* A SQLite file is made afresh unless reused; a PostgreSQL database
         * must be empty unless reused (the bench never drops data). */
        struct stat sb;
        if (path && !(reuse && stat(path, &sb) == 0))
                unlink(path);
        mp_store *s = NULL;
        mp_error err;
        double t0 = now_s();
        if (mp_store_open(url, &s, &err) < 0)
                die(url, &err);
        size_t hosts = store_host_count(s);
        if (hosts > 0 && !reuse) {
                fprintf(stderr, "blast_radius bench: %s already holds %zu hosts: use --reuse (with the options it was"
                                " filled with) or an empty store\n", url, hosts);
                return 2;
        }
        if (hosts == 0)
                fill(s, &f);
        else
                printf("reusing %s with %zu hosts (opened in %.1f s; filled with the same --fingerprints, --hosts,"
                       " --families and --locations, it is assumed)\n", url, hosts, now_s() - t0);
        if (path && stat(path, &sb) == 0)
                printf("store: %s, %.2f GB, %zu fingerprints, %zu hosts, %zu families\n", path,
                       (double) sb.st_size / 1e9, f.n_fp, f.n_hosts, f.n_families);
        else
                printf("store: %s, %zu fingerprints, %zu hosts, %zu families\n", url, f.n_fp, f.n_hosts,
                       f.n_families);

        /* Width clusters. */
        size_t cluster[ELEMENTSOF(widths)] = {};
        for (size_t k = 0; k < f.n_families; k++)
                for (size_t w = 0; w < ELEMENTSOF(widths); w++)
                        if (widths[w].hidden == f.hidden_of[k])
                                cluster[w] += f.size_of[k];
        printf("fingerprints by hidden size:");
        for (size_t w = 0; w < ELEMENTSOF(widths); w++)
                printf(" %llu:%zu", (unsigned long long) widths[w].hidden, cluster[w]);
        printf("\n");

        /* Targets: the largest family (in its cluster), the largest family
         * of a mid-size and of the smallest cluster. */
        size_t big = 0, mid = SIZE_MAX, small = SIZE_MAX;
        for (size_t k = 0; k < f.n_families; k++) {
                if (f.hidden_of[k] == 2048 && mid == SIZE_MAX)
                        mid = k;
                if (f.hidden_of[k] == 7168 && small == SIZE_MAX)
                        small = k;
        }
        if (mid == SIZE_MAX)
                mid = f.n_families / 2;
        if (small == SIZE_MAX)
                small = f.n_families - 1;

        /* References, on the base of the largest family. */
        uint8_t d[DIGEST_SIZE];
        digest_of(f.first_of[big], d);
        mp_blast_target *t = NULL;
        if (mp_blast_target_from_digest(s, d, &t, &err) < 0)
                die("target", &err);
        double ts = now_s();
        scan_sum sum = {};
        if (mp_store_foreach_fingerprint(s, NULL, scan_cb, &sum, &err) < 0)
                die("scan", &err);
        double scan_s = now_s() - ts;
        size_t sample = f.n_fp < 2000 ? f.n_fp : 2000;
        double fetch_per = 0, per_fp = full_scoring_per_fp(s, &f, t->fp, sample, &fetch_per);
        unsigned used_threads = threads;
        if (used_threads == 0) {
                long cpus = sysconf(_SC_NPROCESSORS_ONLN);
                used_threads = cpus < 1 ? 1 : cpus > 8 ? 8 : (unsigned) cpus;
        }
        double full_s = per_fp * (double) f.n_fp / used_threads;
        printf("reference: SQL read of all %llu records (%.2f GB): %.2f s; full scoring without pre-filter:"
               " %.0f us per fingerprint (%.0f us of it reading the record; sample of %zu), %.1f s for all on %u"
               " threads\n",
               (unsigned long long) sum.rows, (double) sum.bytes / 1e9, scan_s, per_fp * 1e6, fetch_per * 1e6,
               sample, full_s, used_threads);

        printf("blast radius (best of 3):\n");
        char label[96];
        snprintf(label, sizeof(label), "base of family 0 (%zu members, %llu wide)", f.size_of[big],
                 (unsigned long long) f.hidden_of[big]);
        double worst = run_query(s, label, t, threads, full_s, scan_s);
        mp_blast_target_free(t);

        size_t picks[2] = { mid, small };
        for (size_t k = 0; k < 2; k++) {
                size_t fam = picks[k];
                digest_of(f.first_of[fam], d);
                if (mp_blast_target_from_digest(s, d, &t, &err) < 0)
                        die("target", &err);
                snprintf(label, sizeof(label), "base of family %zu (%zu members, %llu wide)", fam, f.size_of[fam],
                         (unsigned long long) f.hidden_of[fam]);
                double dt = run_query(s, label, t, threads, full_s, scan_s);
                worst = dt > worst ? dt : worst;
                mp_blast_target_free(t);
        }

        /* A record of a member of family 0 that no host holds (a
         * fingerprint file handed in by an incident responder). */
        fleet g = f;
        size_t len;
        uint8_t *rec = make_record(&g, f.first_of[big] + 1, &len);
        mp_fingerprint *fp = NULL;
        if (mp_fingerprint_unpack("record", rec, len, &fp, NULL) < 0)
                die("unpack", NULL);
        memset(fp->model_digest.data, 0xfe, DIGEST_SIZE);
        if (mp_blast_target_from_fingerprint(fp, &t, &err) < 0)
                die("target", &err);
        double dt = run_query(s, "fingerprint record of a family 0 fine-tune", t, threads, full_s, scan_s);
        worst = dt > worst ? dt : worst;
        mp_blast_target_free(t);
        mp_fingerprint_free(fp);
        free(rec);

        /* host:path of the mid family's base. */
        char hp[128], hn[32];
        host_name(location_host(&f, f.first_of[mid], 0), hn, sizeof(hn));
        snprintf(hp, sizeof(hp), "%s:/models/own/%zu", hn, f.first_of[mid]);
        ts = now_s();
        if (mp_blast_target_from_host_path(s, hp, &t, &err) < 0)
                die("host:path", &err);
        printf("  (host:path %s resolved in %.3f s)\n", hp, now_s() - ts);
        dt = run_query(s, "host:path of a family base", t, threads, full_s, scan_s);
        worst = dt > worst ? dt : worst;
        mp_blast_target_free(t);

        printf("worst blast-radius latency: %.3f s (target <= 1 s: %s)\n", worst, worst <= 1.0 ? "met" : "NOT met");

        mp_store_close(s);
        if (!store_arg) {
                unlink(path);
                char *side = NULL;
                if (asprintf(&side, "%s-wal", path) > 0) {
                        unlink(side);
                        free(side);
                }
                if (asprintf(&side, "%s-shm", path) > 0) {
                        unlink(side);
                        free(side);
                }
        }
        rmdir(tmpdir);
        for (int i = 0; i < f.n_seeds; i++)
                free(f.seeds[i].rec);
        free(f.family_of);
        free(f.first_of);
        free(f.size_of);
        free(f.hidden_of);
        free(url);
        free(path);
        free(tmpdir);
        return 0;
}
