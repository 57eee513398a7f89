/* blast_radius.c - exact copies, partial copies and lineage matches of a
 * target across the fleet's inventory (see blast_radius.h).
 *
 * The query runs in two steps: the store's pre-filter names the candidate
 * fingerprints (one SQL read on covering indexes); workers score them, each
 * claiming the next batch of candidates from a shared counter, reading their
 * scoring records (store.h: what compare needs here, less than half of a
 * record) in one store call, unpacking and comparing each with the target,
 * then reading the inventory rows of the batch's hits in one more call.  A
 * candidate's verdict lands in its own slot of a results array, and a
 * batch's rows in its own entry, so the workers share nothing they write. */
#include "collector/blast_radius.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog/catalog.h"
#include "collector/catalog_file.h"
#include "collector/hit_order.h"
#include "util/bump.h"
#include "util/macro.h"
#include "util/strutil.h"

/* Below this many candidates per thread, another thread costs more (a store
 * handle, a comparison query) than it saves; a thread scores at least one
 * batch (MP_BLAST_DEFAULT_BATCH). */
#define CANDIDATES_PER_THREAD MP_BLAST_DEFAULT_BATCH
#define DEFAULT_MAX_THREADS 8

/* lineage_explains(): tensors this close (1 - median relative change) are
 * the target's, changed (fine-tuned, converted); unrelated ones are ~0. */
#define CLOSE_ENOUGH 0.5

/* ---- targets ------------------------------------------------------------ */

void mp_blast_target_free(mp_blast_target *t) {
        if (!t)
                return;
        mp_fingerprint_free(t->fp);
        free(t->label);
        free(t);
}

static int target_new(const char *label, mp_blast_target **ret, mp_error *err) {
        mp_blast_target *t = calloc(1, sizeof(*t));
        if (!t || !(t->label = strdup(label))) {
                free(t);
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        }
        *ret = t;
        return 0;
}

/* Takes fp (unpacked by malloc) into t, with its digest when it has one. */
static int target_set_record(mp_blast_target *t, mp_fingerprint *fp, mp_error *err) {
        size_t len = fp->model_digest.len;
        if (len != 0 && len != MP_STORE_DIGEST_SIZE) {
                mp_fingerprint_free(fp);
                return mp_error_set(err, -EINVAL, NULL, -1, "the record's model digest is %zu bytes, not %d", len,
                                    MP_STORE_DIGEST_SIZE);
        }
        t->fp = fp;
        t->has_digest = fp->model_digest.len == MP_STORE_DIGEST_SIZE;
        if (t->has_digest)
                memcpy(t->digest, fp->model_digest.data, MP_STORE_DIGEST_SIZE);
        return 0;
}

int mp_blast_target_from_digest(mp_store *s, const uint8_t digest[MP_STORE_DIGEST_SIZE], mp_blast_target **ret,
                                mp_error *err) {
        assert(s && digest && ret);
        char hex[2 * MP_STORE_DIGEST_SIZE + 1];
        mp_hex(digest, MP_STORE_DIGEST_SIZE, hex);

        _cleanup_(freep) uint8_t *rec = NULL;
        size_t len = 0;
        int r = mp_store_fingerprint(s, digest, &rec, &len, err);
        if (r == -ENOENT) {
                /* No record: known only if some host reported the digest. */
                mp_store_location *l = NULL;
                size_t n = 0;
                r = mp_store_locations(s, digest, &l, &n, err);
                mp_store_locations_free(l, n);
                if (r >= 0 && n == 0)
                        return mp_error_set(err, -ENOENT, NULL, -1, "no host ever reported model %s", hex);
        }
        if (r < 0)
                return r;

        _cleanup_(mp_blast_target_freep) mp_blast_target *t = NULL;
        r = target_new(hex, &t, err);
        if (r < 0)
                return r;
        t->has_digest = true;
        memcpy(t->digest, digest, MP_STORE_DIGEST_SIZE);
        /* A stored record that no longer unpacks leaves the digest: exact
         * copies can still be found. */
        mp_fingerprint *fp = NULL;
        if (rec && mp_fingerprint_unpack("stored record", rec, len, &fp, NULL) >= 0) {
                if (fp->model_digest.len == 0 ||
                    (fp->model_digest.len == MP_STORE_DIGEST_SIZE &&
                     memcmp(fp->model_digest.data, digest, MP_STORE_DIGEST_SIZE) == 0))
                        t->fp = TAKE_PTR(fp);
                mp_fingerprint_free(fp);
        }
        *ret = TAKE_PTR(t);
        return 0;
}

int mp_blast_target_from_record(const uint8_t *record, size_t len, mp_blast_target **ret, mp_error *err) {
        assert(record || len == 0);
        assert(ret);
        if (len == 0)
                return mp_error_set(err, -EINVAL, NULL, -1, "empty fingerprint record");
        if (len > MP_STORE_MAX_RECORD)
                return mp_error_set(err, -EINVAL, NULL, -1, "a fingerprint record of %zu bytes exceeds the limit of %u",
                                    len, MP_STORE_MAX_RECORD);
        mp_fingerprint *fp = NULL;
        mp_error uerr;
        int r = mp_fingerprint_unpack("fingerprint record", record, len, &fp, &uerr);
        if (r < 0)
                return mp_error_set(err, -EINVAL, NULL, -1, "%s", uerr.reason);

        _cleanup_(mp_blast_target_freep) mp_blast_target *t = NULL;
        r = target_new(fp->name && fp->name[0] ? fp->name : "fingerprint record", &t, err);
        if (r >= 0)
                r = target_set_record(t, TAKE_PTR(fp), err);
        mp_fingerprint_free(fp);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(t);
        return 0;
}

int mp_blast_target_from_fingerprint(const mp_fingerprint *fp, mp_blast_target **ret, mp_error *err) {
        assert(fp && ret);
        _cleanup_(freep) uint8_t *buf = NULL;
        size_t len = 0;
        if (mp_fingerprint_pack(fp, &buf, &len) < 0)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        return mp_blast_target_from_record(buf, len, ret, err);
}

/* ---- catalog entries ---------------------------------------------------- */

typedef struct entry_search {
        const char *name;
        mp_fingerprint *found;          /* a malloc'd copy */
} entry_search;

#define ENTRY_FOUND (-ECANCELED)        /* stops the iteration, not an error */

static int entry_match(const mp_catalog_entry *e, const mp_fingerprint *fp, void *userdata) {
        entry_search *q = userdata;
        if (strcmp(e->name, q->name) != 0)
                return 0;
        /* The record lives in the catalog's arena: copy it out. */
        _cleanup_(freep) uint8_t *buf = NULL;
        size_t len = 0;
        if (mp_fingerprint_pack(fp, &buf, &len) < 0 ||
            mp_fingerprint_unpack("catalog entry", buf, len, &q->found, NULL) < 0)
                return -ENOMEM;
        return ENTRY_FOUND;
}

int mp_blast_target_from_catalog_entry(mp_store *s, const char *name, mp_blast_target **ret, mp_error *err) {
        assert(s && ret);
        int r = mp_catalog_check_name(name, err);
        if (r < 0)
                return r;               /* -EINVAL */

        _cleanup_(freep) uint8_t *bytes = NULL;
        size_t len = 0;
        char version[MP_STORE_CATALOG_VERSION_SIZE];
        r = mp_store_get_catalog(s, &bytes, &len, version, err);
        if (r == -ENOENT)
                return mp_error_set(err, -ENOENT, NULL, -1, "no catalog has been pushed to the collector");
        if (r < 0)
                return r;
        _cleanup_(catalog_file_closep) catalog_file *c = NULL;
        mp_error cerr;
        r = catalog_file_open(bytes, len, &c, &cerr);
        if (r < 0)
                return mp_error_set(err, r == -ENOMEM ? r : -EINVAL, NULL, -1, "the pushed catalog does not open: %s",
                                    cerr.reason);

        entry_search q = { .name = name };
        r = mp_catalog_foreach_candidate(catalog_file_catalog(c), NULL, 0, entry_match, &q, err);
        if (r == -ENOMEM)
                return mp_error_set(err, r, NULL, -1, "out of memory");
        if (r < 0 && r != ENTRY_FOUND)
                return r;
        if (!q.found) {
                char printable[128];
                return mp_error_set(err, -ENOENT, NULL, -1, "the pushed catalog has no entry \"%s\"",
                                    mp_printable(printable, sizeof(printable), name));
        }

        _cleanup_(mp_blast_target_freep) mp_blast_target *t = NULL;
        r = target_new(name, &t, err);
        if (r >= 0)
                r = target_set_record(t, TAKE_PTR(q.found), err);
        mp_fingerprint_free(q.found);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(t);
        return 0;
}

/* ---- host:path ---------------------------------------------------------- */

/* The row of host_id at path that names the model there: the present one,
 * else the last seen (one keyed lookup).  *found stays false when there is
 * none. */
static int host_path_row(mp_store *s, const char *host_id, const char *path, mp_store_location *best, bool *found,
                         mp_error *err) {
        mp_store_location *l = NULL;
        size_t n = 0;
        int r = mp_store_inventory_at(s, host_id, path, &l, &n, err);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                bool better = !*found || (l[i].present && !best->present) ||
                              (l[i].present == best->present && l[i].last_seen > best->last_seen);
                if (better) {
                        memcpy(best->host_id, l[i].host_id, sizeof(best->host_id));
                        memcpy(best->model_digest, l[i].model_digest, MP_STORE_DIGEST_SIZE);
                        best->present = l[i].present;
                        best->last_seen = l[i].last_seen;
                        *found = true;
                }
        }
        mp_store_locations_free(l, n);
        return r;
}

int mp_blast_target_from_host_path(mp_store *s, const char *host_path, mp_blast_target **ret, mp_error *err) {
        assert(s && ret);
        const char *colon = host_path ? strchr(host_path, ':') : NULL;
        if (!colon || colon == host_path || !colon[1])
                return mp_error_set(err, -EINVAL, NULL, -1, "expected HOST:PATH (a hostname or host id, a colon,"
                                    " and a model path)");
        size_t host_len = (size_t) (colon - host_path);
        if (host_len > MP_STORE_MAX_IDENT || strlen(colon + 1) > MP_STORE_MAX_PATH)
                return mp_error_set(err, -EINVAL, NULL, -1, "HOST:PATH is too long");
        char host[MP_STORE_MAX_IDENT + 1];
        memcpy(host, host_path, host_len);
        host[host_len] = 0;
        const char *path = colon + 1;

        _cleanup_(freep) char (*ids)[MP_STORE_HOST_ID_SIZE] = NULL;
        size_t n_named = 0, n_holding = 0;
        int r = mp_store_find_hosts(s, host, &ids, &n_named, err);
        mp_store_location best = {}, mine = {};
        bool found = false, conflict = false;
        for (size_t i = 0; r >= 0 && i < n_named; i++) {
                bool here = false;
                r = host_path_row(s, ids[i], path, &mine, &here, err);
                if (r < 0 || !here)
                        continue;
                if (n_holding++ > 0 && memcmp(mine.model_digest, best.model_digest, MP_STORE_DIGEST_SIZE) != 0)
                        conflict = true;
                best = mine;
                found = true;
                mine = (mp_store_location) {};
        }
        if (r < 0)
                return r;

        char p_host[128], p_path[256];
        mp_printable(p_host, sizeof(p_host), host);
        mp_printable(p_path, sizeof(p_path), path);
        if (n_named == 0)
                return mp_error_set(err, -ENOENT, NULL, -1, "unknown host \"%s\"", p_host);
        if (conflict)
                return mp_error_set(err, -EINVAL, NULL, -1, "\"%s\" names %zu hosts holding different models at %s;"
                                    " give the host id", p_host, n_named, p_path);
        if (!found)
                return mp_error_set(err, -ENOENT, NULL, -1, "host \"%s\" never reported a model at %s", p_host,
                                    p_path);

        _cleanup_(mp_blast_target_freep) mp_blast_target *t = NULL;
        r = mp_blast_target_from_digest(s, best.model_digest, &t, err);
        if (r < 0)
                return r;
        char *label = strdup(host_path);
        if (!label)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        free(t->label);
        t->label = label;
        *ret = TAKE_PTR(t);
        return 0;
}

/* ---- the target's tensors ----------------------------------------------- */

/* The target's keyed tensors by full content hash, for matching candidates
 * tensor by tensor whatever their names. */
typedef struct keyed {
        uint8_t hash[16];
        uint64_t n_bytes;
} keyed;

static int cmp_keyed(const void *a, const void *b) {
        return memcmp(((const keyed *) a)->hash, ((const keyed *) b)->hash, 16);
}

typedef struct target_index {
        keyed *k;                       /* sorted by hash, distinct */
        size_t n;
        uint64_t bytes;                 /* of all keyed tensors, copies included (saturating) */
        const Modelprov__V1__TensorDigest **by_name;    /* keyed tensors sorted by name */
        size_t n_by_name;
        uint64_t *keys;                 /* all its tensor keys, for the candidate query */
        size_t n_keys;
} target_index;

static uint64_t add_sat(uint64_t a, uint64_t b) {
        return a + b < a ? UINT64_MAX : a + b;
}

static int cmp_tensor_name(const void *a, const void *b) {
        return strcmp((*(const Modelprov__V1__TensorDigest *const *) a)->name,
                      (*(const Modelprov__V1__TensorDigest *const *) b)->name);
}

static int target_index_init(target_index *ti, const mp_fingerprint *fp) {
        *ti = (target_index) {};
        if (!fp)
                return 0;
        size_t n = fp->n_tensors ? fp->n_tensors : 1;
        ti->k = malloc(n * sizeof(*ti->k));
        ti->by_name = malloc(n * sizeof(*ti->by_name));
        ti->keys = malloc(n * sizeof(*ti->keys));
        if (!ti->k || !ti->by_name || !ti->keys)
                return -ENOMEM;
        for (size_t i = 0; i < fp->n_tensors; i++) {
                const Modelprov__V1__TensorDigest *t = fp->tensors[i];
                if (!mp_store_tensor_keyed(t))
                        continue;
                memcpy(ti->k[ti->n].hash, t->xxh3_128.data, 16);
                ti->k[ti->n++].n_bytes = t->n_bytes;
                ti->bytes = add_sat(ti->bytes, t->n_bytes);
                ti->by_name[ti->n_by_name++] = t;
        }
        qsort(ti->by_name, ti->n_by_name, sizeof(*ti->by_name), cmp_tensor_name);
        qsort(ti->k, ti->n, sizeof(*ti->k), cmp_keyed);
        size_t d = 0;
        for (size_t i = 0; i < ti->n; i++)
                if (d == 0 || cmp_keyed(&ti->k[d - 1], &ti->k[i]) != 0)
                        ti->k[d++] = ti->k[i];
        ti->n = d;

        int r = mp_store_tensor_keys(fp, ti->keys, fp->n_tensors < MP_STORE_MAX_QUERY_KEYS ? fp->n_tensors
                                                                                    : MP_STORE_MAX_QUERY_KEYS);
        if (r < 0)
                return r;
        ti->n_keys = (size_t) r;
        return 0;
}

static void target_index_done(target_index *ti) {
        free(ti->k);
        free(ti->by_name);
        free(ti->keys);
}

/* ---- scoring ------------------------------------------------------------ */


/* What scoring found for one candidate: for a hit, also its inventory
 * rows (a run of its batch's rows, fetched by the worker in parallel, on
 * its own handle). */
typedef struct verdict_slot {
        bool hit;
        bool unreadable;
        bool scored;
        const char *relation, *lineage;
        mp_verdict verdict;
        double score, shared;
        size_t tensors_shared;
        mp_store_location *rows;
        size_t n_rows;
} verdict_slot;

typedef struct scoring {
        mp_store *store;                /* the caller's: worker 0 uses it */
        const mp_blast_target *target;
        const target_index *ti;
        double threshold;
        const uint8_t *candidates;      /* n * 32 bytes */
        size_t n;
        /* Candidates a worker claims at a time (options.batch): one store
         * call fetches their records, one more the inventory rows of those
         * that hit.  Per-candidate calls made blast radius a matter of round
         * trips (two per candidate on PostgreSQL); a batch amortises them
         * while leaving enough batches to balance the threads. */
        size_t batch;
        bool full_records;              /* options.full_records */
        verdict_slot *slots;            /* n */
        mp_store_location **batch_rows; /* per batch: the rows its slots point into */
        size_t *batch_n_rows;
        atomic_size_t next;             /* the next batch */
        atomic_bool stop;
} scoring;

typedef struct worker {
        scoring *sc;
        mp_store *store;                /* a helper handle of the caller's, or the caller's */
        mp_compare_query *q;
        mp_bump bump;
        size_t first, n_batch;          /* the batch being scored: candidates [first, first + n_batch) */
        pthread_t thread;
        bool started;
        int r;
        mp_error err;
        uint8_t *seen;                  /* per target keyed tensor: matched by this candidate */
} worker;

/* How a candidate's keyed tensors relate to the target's, by content. */
typedef struct overlap {
        uint64_t shared_bytes;          /* byte-identical to one of the target's, under any name */
        uint64_t own_bytes;             /* all the candidate's (both saturating) */
        size_t n_shared;
        bool complete;                  /* every keyed tensor on both sides has its identical twin */
        bool rearranged;                /* each other one has a same-named, same-shape twin of the same
                                         * norm: its values moved, none changed (a permutation); only
                                         * worked out for a partial overlap (some shared, not complete) */
} overlap;

static bool same_shape(const Modelprov__V1__TensorDigest *a, const Modelprov__V1__TensorDigest *b) {
        return a->n_shape == b->n_shape && memcmp(a->shape, b->shape, a->n_shape * sizeof(*a->shape)) == 0;
}

/* A permutation keeps the sum of squares: equal norms up to the rounding
 * of a different summation order.  Independently trained tensors differ
 * by far more. */
static bool same_norm(double a, double b) {
        return isfinite(a) && isfinite(b) && a > 0 && fabs(a - b) <= 1e-4 * a;
}

/* The target's keyed tensor with t's content, or NULL. */
static const keyed *shared_with_target(const target_index *ti, const Modelprov__V1__TensorDigest *t) {
        keyed key;
        memcpy(key.hash, t->xxh3_128.data, 16);
        return ti->n ? bsearch(&key, ti->k, ti->n, sizeof(*ti->k), cmp_keyed) : NULL;
}

/* Has each of b's keyed tensors that the target lacks a twin of the same
 * name, shape and norm there? */
static bool rearranged(const target_index *ti, const mp_fingerprint *b) {
        for (size_t i = 0; i < b->n_tensors; i++) {
                const Modelprov__V1__TensorDigest *t = b->tensors[i];
                if (!mp_store_tensor_keyed(t) || shared_with_target(ti, t))
                        continue;
                const Modelprov__V1__TensorDigest *const *twin =
                        ti->n_by_name ? bsearch(&t, ti->by_name, ti->n_by_name, sizeof(*ti->by_name),
                                                cmp_tensor_name)
                                      : NULL;
                if (!twin || !same_shape(t, *twin) || !same_norm((*twin)->l2, t->l2))
                        return false;
        }
        return true;
}

static void tensor_overlap(const worker *w, const mp_fingerprint *b, overlap *o) {
        const target_index *ti = w->sc->ti;
        size_t n_seen = 0;
        bool all_mine = true;
        *o = (overlap) {};
        memset(w->seen, 0, ti->n ? ti->n : 1);
        for (size_t i = 0; i < b->n_tensors; i++) {
                const Modelprov__V1__TensorDigest *t = b->tensors[i];
                if (!mp_store_tensor_keyed(t))
                        continue;
                o->own_bytes = add_sat(o->own_bytes, t->n_bytes);
                const keyed *k = shared_with_target(ti, t);
                if (!k) {
                        all_mine = false;
                        continue;
                }
                o->shared_bytes = add_sat(o->shared_bytes, t->n_bytes);
                o->n_shared++;
                size_t at = (size_t) (k - ti->k);
                n_seen += !w->seen[at];
                w->seen[at] = 1;
        }
        o->complete = all_mine && n_seen == ti->n;
        /* Only a partial overlap asks (lineage_explains()); the name
         * lookups it takes were a tenth of scoring a fine-tune. */
        if (o->n_shared > 0 && !o->complete)
                o->rearranged = rearranged(ti, b);
}

/* Does compare's lineage account for the whole candidate, beyond the
 * tensors it shares byte for byte with the target?  Yes for a derivative
 * of the whole model: its other tensors are close (a LoRA merge that left
 * the embedding alone, a conversion keeping some tensors), correlate per
 * block, are rescaled, or are the target's rearranged.  No for a model
 * assembled from the target's parts and foreign ones: compare sees the
 * shared parts (an identical embedding alone reads as a permuted copy to
 * it) but the rest is unrelated. */
static bool lineage_explains(const mp_comparison *c, const overlap *o) {
        if (c->verdict < MP_VERDICT_HIGH)
                return false;
        return c->signal[MP_SIG_TENSOR_CLOSENESS] >= CLOSE_ENOUGH ||
               c->signal[MP_SIG_LAYER_VALUES] >= MP_BLAST_DEFAULT_THRESHOLD || c->tensors_scaled > 0 ||
               o->rearranged;
}

/* Scores candidate i from its packed record into its slot. */
static int score_one(worker *w, size_t i, const uint8_t *rec, size_t len) {
        scoring *sc = w->sc;
        verdict_slot *v = &sc->slots[i];

        ProtobufCAllocator alloc = mp_bump_protobuf_allocator(&w->bump);
        mp_fingerprint *b = NULL;
        if (mp_fingerprint_unpack_with("stored record", rec, len, &alloc, &b, NULL) < 0) {
                v->unreadable = true;
                return 0;
        }

        /* Blast radius reads compare's weight evidence and relation hint,
         * never the MFI and TFV similarities: without their JSON (parsed
         * per comparison, a third of its time) they are NaN and everything
         * read stays the same (VOA comes from the vocabulary sketches). */
        if (b->signals) {
                b->signals->mfi_json = (char *) "";
                b->signals->tfv_json = (char *) "";
        }

        mp_comparison c;
        int r = mp_compare_query_run(w->q, b, NULL, &c);
        if (r < 0)
                return mp_error_set(&w->err, r, NULL, -1, "out of memory");
        v->scored = true;

        overlap o;
        tensor_overlap(w, b, &o);
        uint64_t total = o.own_bytes > sc->ti->bytes ? o.own_bytes : sc->ti->bytes;
        v->shared = total ? fmin(1, (double) o.shared_bytes / (double) total) : 0;
        v->tensors_shared = o.n_shared;
        v->lineage = c.relation;
        double identity = isnan(c.identity_score) ? 0 : c.identity_score;

        if (o.n_shared > 0 && !o.complete && !lineage_explains(&c, &o)) {
                v->hit = true;
                v->relation = MP_BLAST_PARTIAL_COPY;
                v->score = fmax(identity, v->shared);
                v->verdict = mp_verdict_of_score(v->score);
        } else if (c.weights && identity >= sc->threshold) {
                v->hit = true;
                v->relation = c.relation;
                v->score = identity;
                v->verdict = c.verdict;
        }
        return 0;
}

/* mp_store_fingerprints() callback: the record of one candidate of the
 * worker's batch (found by digest: candidates are sorted). */
static int score_record(const uint8_t *digest, const uint8_t *rec, size_t len, void *userdata) {
        worker *w = userdata;
        const uint8_t *base = w->sc->candidates + w->first * MP_STORE_DIGEST_SIZE;
        const uint8_t *at = bsearch(digest, base, w->n_batch, MP_STORE_DIGEST_SIZE, mp_store_digest_cmp);
        if (!at)
                return 0;               /* not asked for: cannot happen */
        size_t i = w->first + (size_t) (at - base) / MP_STORE_DIGEST_SIZE;
        if (w->sc->slots[i].scored || w->sc->slots[i].unreadable)
                return 0;
        int r = score_one(w, i, rec, len);
        mp_bump_reset(&w->bump);
        return r;
}

/* The inventory rows of the batch's hits, in one store call; each hit's
 * slot points at its run of rows (ordered by digest, as the slots). */
static int batch_locations(worker *w, size_t batch) {
        scoring *sc = w->sc;
        _cleanup_(freep) uint8_t *hits = malloc(w->n_batch * MP_STORE_DIGEST_SIZE);
        if (!hits)
                return mp_error_set(&w->err, -ENOMEM, NULL, -1, "out of memory");
        size_t n_hits = 0;
        for (size_t i = w->first; i < w->first + w->n_batch; i++)
                if (sc->slots[i].hit)
                        memcpy(hits + n_hits++ * MP_STORE_DIGEST_SIZE, sc->candidates + i * MP_STORE_DIGEST_SIZE,
                               MP_STORE_DIGEST_SIZE);
        if (n_hits == 0)
                return 0;

        mp_store_location *l = NULL;
        size_t n = 0;
        int r = mp_store_locations_of(w->store, hits, n_hits, &l, &n, &w->err);
        if (r < 0)
                return r;
        sc->batch_rows[batch] = l;
        sc->batch_n_rows[batch] = n;
        size_t at = 0;
        for (size_t i = w->first; i < w->first + w->n_batch; i++) {
                verdict_slot *v = &sc->slots[i];
                if (!v->hit)
                        continue;
                const uint8_t *d = sc->candidates + i * MP_STORE_DIGEST_SIZE;
                while (at < n && memcmp(l[at].model_digest, d, MP_STORE_DIGEST_SIZE) < 0)
                        at++;
                v->rows = l + at;
                while (at < n && memcmp(l[at].model_digest, d, MP_STORE_DIGEST_SIZE) == 0) {
                        at++;
                        v->n_rows++;
                }
        }
        return 0;
}

static int score_batch(worker *w, size_t batch) {
        scoring *sc = w->sc;
        w->first = batch * sc->batch;
        w->n_batch = sc->n - w->first < sc->batch ? sc->n - w->first : sc->batch;
        const uint8_t *first = sc->candidates + w->first * MP_STORE_DIGEST_SIZE;
        int r = sc->full_records ? mp_store_fingerprints(w->store, first, w->n_batch, score_record, w, &w->err)
                                 : mp_store_scoring_records(w->store, first, w->n_batch, score_record, w, &w->err);
        if (r < 0)
                return r;
        /* A candidate without a record cannot happen (fingerprints are
         * never deleted): counted as unreadable. */
        for (size_t i = w->first; i < w->first + w->n_batch; i++)
                if (!sc->slots[i].scored)
                        sc->slots[i].unreadable = true;
        return batch_locations(w, batch);
}

static void *worker_run(void *userdata) {
        worker *w = userdata;
        scoring *sc = w->sc;
        size_t n_batches = (sc->n + sc->batch - 1) / sc->batch;

        w->r = mp_compare_query_new(sc->target->fp, &w->q);
        if (w->r < 0)
                mp_error_set(&w->err, w->r, NULL, -1, "out of memory");
        while (w->r >= 0 && !atomic_load(&sc->stop)) {
                size_t batch = atomic_fetch_add(&sc->next, 1);
                if (batch >= n_batches)
                        break;
                w->r = score_batch(w, batch);
        }
        if (w->r < 0)
                atomic_store(&sc->stop, true);
        mp_compare_query_free(w->q);
        w->q = NULL;
        mp_bump_free(&w->bump);
        return NULL;
}

/* As asked (at most one per candidate), or by default the CPUs, at most
 * DEFAULT_MAX_THREADS, and only as many as the candidates keep busy. */
static unsigned threads_for(const mp_blast_options *o, size_t n) {
        if (o->threads > 0)
                return n < o->threads ? (n ? (unsigned) n : 1) : o->threads;
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        unsigned max = cpus < 1 ? 1 : cpus > DEFAULT_MAX_THREADS ? DEFAULT_MAX_THREADS : (unsigned) cpus;
        size_t useful = (n + CANDIDATES_PER_THREAD - 1) / CANDIDATES_PER_THREAD;
        return useful < max ? (useful ? (unsigned) useful : 1) : max;
}

/* Scores every candidate into sc->slots on up to n_threads threads; the
 * caller's thread is one of them, the others use the store's helper
 * handles (kept open across queries, so their caches stay warm).  A thread
 * that cannot get a handle is simply not started: the others take its
 * share. */
static int score_all(scoring *sc, unsigned n_threads, unsigned *used, mp_error *err) {
        _cleanup_(freep) worker *w = calloc(n_threads, sizeof(*w));
        if (!w)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        int r = 0;
        for (unsigned i = 0; r >= 0 && i < n_threads; i++) {
                w[i].sc = sc;
                if (!(w[i].seen = malloc(sc->ti->n ? sc->ti->n : 1)))
                        r = mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        }
        w[0].store = sc->store;
        *used = 1;
        for (unsigned i = 1; r >= 0 && i < n_threads; i++) {
                if (mp_store_helper(sc->store, i - 1, &w[i].store, NULL) < 0)
                        break;
                if (pthread_create(&w[i].thread, NULL, worker_run, &w[i]) != 0)
                        break;
                w[i].started = true;
                (*used)++;
        }
        if (r >= 0)
                worker_run(&w[0]);

        for (unsigned i = 0; i < n_threads; i++) {
                if (w[i].started)
                        pthread_join(w[i].thread, NULL);
                if (r >= 0 && w[i].r < 0) {
                        r = w[i].r;
                        if (err)
                                *err = w[i].err;
                }
                free(w[i].seen);
        }
        return r;
}

/* ---- hits --------------------------------------------------------------- */

typedef struct hit_list {
        mp_blast_hit *h;
        size_t n, allocated;
} hit_list;

/* v's inventory rows as hits carrying its findings; the rows' strings move
 * to the hits. */
static int add_rows(verdict_slot *v, bool include_removed, hit_list *out, mp_error *err) {
        mp_store_location *l = v->rows;
        size_t n = v->n_rows;
        int r = 0;
        for (size_t i = 0; i < n; i++) {
                if (!l[i].present && !include_removed)
                        continue;
                if (MP_GROW(out->h, out->allocated, out->n + 1) < 0) {
                        r = mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
                        break;
                }
                out->h[out->n++] = (mp_blast_hit) {
                        .loc = l[i],
                        .relation = v->relation,
                        .lineage = v->lineage,
                        .verdict = v->verdict,
                        .score = v->score,
                        .shared = v->shared,
                        .tensors_shared = v->tensors_shared,
                };
                /* The strings moved to the hit. */
                l[i].hostname = l[i].path = l[i].model_name = NULL;
        }
        return r;
}

/* The slots and the batches' rows (those add_rows() took are emptied). */
static void scoring_done(scoring *sc) {
        size_t n_batches = (sc->n + sc->batch - 1) / sc->batch;
        for (size_t b = 0; sc->batch_rows && b < n_batches; b++)
                mp_store_locations_free(sc->batch_rows[b], sc->batch_n_rows[b]);
        free(sc->batch_rows);
        free(sc->batch_n_rows);
        free(sc->slots);
}

void mp_blast_hits_free(mp_blast_hit *h, size_t n) {
        for (size_t i = 0; h && i < n; i++) {
                free(h[i].loc.hostname);
                free(h[i].loc.path);
                free(h[i].loc.model_name);
        }
        free(h);
}

/* ---- the query ---------------------------------------------------------- */

static int check_options(const mp_blast_options *o, double *threshold, mp_error *err) {
        if (isnan(o->threshold) || o->threshold < 0 || o->threshold > 1)
                return mp_error_set(err, -EINVAL, NULL, -1, "threshold must be in (0, 1] (0 for the default %.2f)",
                                    MP_BLAST_DEFAULT_THRESHOLD);
        if (o->threads > MP_BLAST_MAX_THREADS)
                return mp_error_set(err, -EINVAL, NULL, -1, "at most %d threads", MP_BLAST_MAX_THREADS);
        if (o->batch > MP_STORE_MAX_FETCH)
                return mp_error_set(err, -EINVAL, NULL, -1, "at most %d candidates per batch", MP_STORE_MAX_FETCH);
        *threshold = o->threshold > 0 ? o->threshold : MP_BLAST_DEFAULT_THRESHOLD;
        return 0;
}

int mp_blast_radius(mp_store *s, const mp_blast_target *t, const mp_blast_options *o, mp_blast_hit **hits,
                    size_t *n_hits, mp_blast_stats *stats, mp_error *err) {
        assert(s && t && hits && n_hits);
        static const mp_blast_options defaults = {};
        if (!o)
                o = &defaults;
        double threshold = MP_BLAST_DEFAULT_THRESHOLD;
        int r = check_options(o, &threshold, err);
        if (r < 0)
                return r;

        _cleanup_(target_index_done) target_index ti = {};
        if (target_index_init(&ti, t->fp) < 0)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");

        /* Candidates: by structure only when the target has weight evidence
         * to compare (else only its tensors can be matched). */
        mp_store_structure st = {};
        if (t->fp)
                mp_store_structure_of(t->fp, &st);
        _cleanup_(freep) uint8_t *cand = NULL;
        size_t n_cand = 0;
        if (t->fp) {
                r = mp_store_candidates(s, st.has_weights ? &st : NULL, ti.keys, ti.n_keys,
                                        t->has_digest ? t->digest : NULL, &cand, &n_cand, err);
                if (r < 0)
                        return r;
        }

        size_t batch = o->batch ? o->batch : MP_BLAST_DEFAULT_BATCH;
        size_t n_batches = (n_cand + batch - 1) / batch;
        scoring sc = {
                .batch = batch,
                .full_records = o->full_records,
                .store = s,
                .target = t,
                .ti = &ti,
                .threshold = threshold,
                .candidates = cand,
                .n = n_cand,
                .slots = calloc(n_cand ? n_cand : 1, sizeof(*sc.slots)),
                .batch_rows = calloc(n_batches ? n_batches : 1, sizeof(*sc.batch_rows)),
                .batch_n_rows = calloc(n_batches ? n_batches : 1, sizeof(*sc.batch_n_rows)),
        };
        verdict_slot *slots = sc.slots;
        if (!sc.slots || !sc.batch_rows || !sc.batch_n_rows) {
                scoring_done(&sc);
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        }
        atomic_init(&sc.next, 0);
        atomic_init(&sc.stop, false);
        unsigned used = 0;
        if (n_cand > 0)
                r = score_all(&sc, threads_for(o, n_cand), &used, err);

        hit_list out = {};
        verdict_slot exact = {
                .hit = true,
                .relation = MP_BLAST_EXACT_COPY,
                .lineage = "identical copy",
                .verdict = MP_VERDICT_CONFIRMED,
                .score = 1,
                .shared = 1,
                .tensors_shared = ti.n,
        };
        mp_blast_stats sum = { .considered = n_cand, .threads = used };
        if (r >= 0 && t->has_digest) {
                r = mp_store_locations(s, t->digest, &exact.rows, &exact.n_rows, err);
                if (r >= 0)
                        r = add_rows(&exact, o->include_removed, &out, err);
                sum.models += out.n > 0;
                mp_store_locations_free(exact.rows, exact.n_rows);
        }
        /* Room for every row at once: the hits of a large family are
         * over 100,000. */
        size_t n_rows = out.n;
        for (size_t i = 0; i < n_cand; i++)
                n_rows += slots[i].hit ? slots[i].n_rows : 0;
        if (r >= 0 && MP_GROW(out.h, out.allocated, n_rows) < 0)
                r = mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        for (size_t i = 0; r >= 0 && i < n_cand; i++) {
                sum.scored += slots[i].scored;
                sum.unreadable += slots[i].unreadable;
                if (!slots[i].hit)
                        continue;
                size_t before = out.n;
                r = add_rows(&slots[i], o->include_removed, &out, err);
                sum.models += out.n > before;
        }
        scoring_done(&sc);
        if (r < 0) {
                mp_blast_hits_free(out.h, out.n);
                return r;
        }
        r = mp_blast_hits_sort(&out.h, out.n, used, 0);
        if (r < 0) {
                mp_blast_hits_free(out.h, out.n);
                return mp_error_set(err, r, NULL, -1, "out of memory");
        }
        *hits = out.h;
        *n_hits = out.n;
        if (stats)
                *stats = sum;
        return 0;
}
