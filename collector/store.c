/* store.c - the engine-independent half of the collector's store (see
 * store.h): picks the engine from the URL (store_sqlite.c for "sqlite:",
 * store_postgres.c for "postgresql:" and "postgres:"), checks every
 * argument against the limits before an engine sees it, unpacks
 * fingerprint records once to refuse bad ones and extract their pre-filter
 * columns, makes host ids, and orders ingest batches by sequence.  Keeping
 * all of this here means an engine cannot forget a check. */
#include "collector/store.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "collector/store_engine.h"
#include "fingerprint/record.h"
#include "signals/tensor_role.h"
#include "util/bump.h"
#include "util/macro.h"
#include "util/strutil.h"

static const mp_store_engine *const engines[] = {
        &mp_store_sqlite_engine,
        &mp_store_postgres_engine,
};

#define SUPPORTED_URLS "sqlite:PATH or postgresql://[USER@]HOST[:PORT]/DBNAME"

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- argument checks ---------------------------------------------------- */

/* Valid UTF-8 of at most max bytes; with ident also non-empty and without
 * control characters (names shown in tables and logs).  Paths and details
 * may hold control characters: refusing them would wedge an agent's stream
 * on one oddly named file, so the display layer escapes them instead. */
static int check_text(const char *s, const char *what, size_t max, bool ident, bool optional, mp_error *err) {
        if (!s || !s[0]) {
                if (optional)
                        return 0;
                return mp_error_set(err, -EINVAL, NULL, -1, "%s must not be empty", what);
        }
        size_t n = strnlen(s, max + 1);
        if (n > max)
                return mp_error_set(err, -EINVAL, NULL, -1, "%s is longer than %zu bytes", what, max);
        if (mp_utf8_invalid_at((const uint8_t *) s, n) != n)
                return mp_error_set(err, -EINVAL, NULL, -1, "%s is not valid UTF-8", what);
        if (ident)
                for (size_t i = 0; i < n; i++)
                        if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
                                return mp_error_set(err, -EINVAL, NULL, -1, "%s contains control characters", what);
        return 0;
}

/* check_text() for a field of an event, named "event N: FIELD". */
static int check_field(const char *s, const char *what, const char *field, size_t max, bool ident, bool optional,
                       mp_error *err) {
        char label[96];
        snprintf(label, sizeof(label), "%s: %s", what, field);
        return check_text(s, label, max, ident, optional, err);
}

/* The canonical lowercase 8-4-4-4-12 form that mp_store_enroll() hands out. */
static int check_host_id(const char *id, mp_error *err) {
        if (!id)
                return mp_error_set(err, -EINVAL, NULL, -1, "host id missing");
        size_t n = strnlen(id, MP_STORE_HOST_ID_SIZE);
        bool ok = n == MP_STORE_HOST_ID_SIZE - 1;
        for (size_t i = 0; ok && i < n; i++)
                ok = (i == 8 || i == 13 || i == 18 || i == 23) ? id[i] == '-' : mp_is_lower_hex(id + i, 1);
        return ok ? 0 : mp_error_set(err, -EINVAL, NULL, -1, "host id is not a UUID");
}

static bool digest_is_zero(const uint8_t d[MP_STORE_DIGEST_SIZE]) {
        for (size_t i = 0; i < MP_STORE_DIGEST_SIZE; i++)
                if (d[i])
                        return false;
        return true;
}

static void sha256_hex(const uint8_t *buf, size_t len, char out[MP_STORE_CATALOG_VERSION_SIZE]) {
        uint8_t md[EVP_MAX_MD_SIZE];
        unsigned n = 0;
        if (EVP_Digest(buf, len, md, &n, EVP_sha256(), NULL) != 1 || n != 32)
                abort();        /* SHA-256 in memory cannot fail short of a broken libcrypto */
        mp_hex(md, n, out);
}

/* ---- structure ---------------------------------------------------------- */

/* Absurd values (a hostile record) read as unknown: the columns are SQLite
 * integers. */
static uint64_t sane(uint64_t v) {
        return v <= INT64_MAX ? v : 0;
}

static const Modelprov__V1__TensorDigest *embedding_of(const mp_fingerprint *fp) {
        for (size_t i = 0; i < fp->n_tensors; i++) {
                const Modelprov__V1__TensorDigest *t = fp->tensors[i];
                if (t->n_shape == 2 && mp_tensor_kind_of(t->name).role == MP_TR_EMBED)
                        return t;
        }
        return NULL;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

/* The most frequent row width (last dimension) of the >= 2-D tensors, the
 * larger one on a tie; 0 when there is none.  Sorting a copy keeps this
 * O(n log n) for hostile tensor counts. */
static uint64_t common_row_width(const mp_fingerprint *fp) {
        _cleanup_(freep) uint64_t *w = malloc((fp->n_tensors ? fp->n_tensors : 1) * sizeof(*w));
        size_t n = 0;
        if (!w)
                return 0;       /* unknown: the fingerprint stays a candidate of every query */
        for (size_t i = 0; i < fp->n_tensors; i++)
                if (fp->tensors[i]->n_shape >= 2)
                        w[n++] = fp->tensors[i]->shape[fp->tensors[i]->n_shape - 1];
        qsort(w, n, sizeof(*w), cmp_u64);
        uint64_t best = 0;
        size_t best_run = 0;
        for (size_t i = 0, run; i < n; i += run) {
                for (run = 1; i + run < n && w[i + run] == w[i]; run++)
                        ;
                if (run >= best_run) {
                        best = w[i];
                        best_run = run;
                }
        }
        return best;
}

static bool has_weight_samples(const mp_fingerprint *fp) {
        if (!fp->signals || !fp->signals->has_weights)
                return false;
        for (size_t i = 0; i < fp->n_tensors; i++)
                if (fp->tensors[i]->sample.len > 0)
                        return true;
        return false;
}

void mp_store_structure_of(const mp_fingerprint *fp, mp_store_structure *ret) {
        assert(fp && ret);
        const Modelprov__V1__TensorDigest *embed = embedding_of(fp);
        const Modelprov__V1__Architecture *arch = fp->arch;

        uint64_t hidden = arch ? sane(arch->hidden_size) : 0;
        if (hidden == 0)
                hidden = embed ? sane(embed->shape[1]) : sane(common_row_width(fp));
        uint64_t layers = fp->signals ? fp->signals->num_layers : 0;
        if (layers == 0 && arch)
                layers = sane(arch->num_layers);
        uint64_t vocab = arch ? sane(arch->vocab_size) : 0;
        if (vocab == 0 && embed)
                vocab = sane(embed->shape[0]);

        *ret = (mp_store_structure) {
                .hidden_size = hidden,
                .num_layers = layers,
                .vocab_size = vocab,
                .has_weights = has_weight_samples(fp),
        };
}

bool mp_store_tensor_keyed(const Modelprov__V1__TensorDigest *t) {
        assert(t);
        if (t->xxh3_128.len != 16 || t->n_bytes < MP_STORE_TENSOR_KEY_MIN_BYTES)
                return false;
        size_t wide = 0;
        for (size_t d = 0; d < t->n_shape; d++)
                wide += t->shape[d] > 1;
        if (wide < 2)
                return false;
        /* A constant tensor (known non-zero norm, no spread) says nothing
         * about a training run; neither does a 2-D+ ".bias", which is a
         * buffer (real biases are vectors). */
        if (t->l2 > 0 && t->std == 0)
                return false;
        return !mp_has_suffix(t->name ? t->name : "", ".bias");
}

uint64_t mp_store_tensor_key(const Modelprov__V1__TensorDigest *t) {
        assert(t && t->xxh3_128.len == 16);
        uint64_t k = 0;
        for (size_t i = 0; i < 8; i++)
                k = k << 8 | t->xxh3_128.data[i];      /* canonical XXH3-128 is big-endian */
        return k;
}

int mp_store_tensor_keys(const mp_fingerprint *fp, uint64_t *keys, size_t max) {
        assert(fp && (keys || max == 0));
        _cleanup_(freep) uint64_t *all = malloc((fp->n_tensors ? fp->n_tensors : 1) * sizeof(*all));
        if (!all)
                return -ENOMEM;
        size_t n = 0;
        for (size_t i = 0; i < fp->n_tensors; i++)
                if (mp_store_tensor_keyed(fp->tensors[i]))
                        all[n++] = mp_store_tensor_key(fp->tensors[i]);
        qsort(all, n, sizeof(*all), cmp_u64);

        /* Distinct: a tied embedding stored twice (GGUF's output copy)
         * counts once. */
        size_t k = 0;
        for (size_t i = 0; i < n && k < max && k < INT_MAX; i++)
                if (k == 0 || keys[k - 1] != all[i])
                        keys[k++] = all[i];
        return (int) k;
}

/* fp without what blast radius never reads (store.h), sharing fp's
 * memory: valid as long as fp. */
static void scoring_view(const mp_fingerprint *fp, mp_fingerprint *view, Modelprov__V1__Signals *signals) {
        *view = *fp;
        view->n_files = 0;
        view->files = NULL;
        view->tokenizer = NULL;
        view->n_findings = 0;
        view->findings = NULL;
        view->n_metadata = 0;
        view->metadata = NULL;
        view->tool_version = (char *) "";
        view->revision = (char *) "";
        view->layout = (char *) "";
        if (!fp->signals)
                return;
        modelprov__v1__signals__init(signals);
        signals->arch_hash = fp->signals->arch_hash;
        signals->family_hash = fp->signals->family_hash;
        signals->vocab_sketch = fp->signals->vocab_sketch;
        signals->num_layers = fp->signals->num_layers;
        signals->has_weights = fp->signals->has_weights;
        view->signals = signals;
}

int mp_store_scoring_record(const mp_fingerprint *fp, uint8_t **ret, size_t *len) {
        assert(fp && ret && len);
        mp_fingerprint view;
        Modelprov__V1__Signals signals;
        scoring_view(fp, &view, &signals);
        return mp_fingerprint_pack(&view, ret, len);
}

/* The scoring record of fp into c, packed in bump. */
static int scoring_column(const mp_fingerprint *fp, mp_store_fp_columns *c, mp_bump *bump) {
        mp_fingerprint view;
        Modelprov__V1__Signals signals;
        scoring_view(fp, &view, &signals);
        size_t len = protobuf_c_message_get_packed_size(&view.base);
        uint8_t *buf = mp_bump_alloc(bump, len ? len : 1);
        if (!buf)
                return -ENOMEM;
        c->scoring_len = protobuf_c_message_pack(&view.base, buf);
        c->scoring = buf;
        return 0;
}

/* The structure, tensor keys and scoring record of fp into c; they live in
 * bump. */
static int structure_columns(const mp_fingerprint *fp, mp_store_fp_columns *c, mp_bump *bump) {
        int r = scoring_column(fp, c, bump);
        if (r < 0)
                return r;
        mp_store_structure_of(fp, &c->structure);
        size_t max = fp->n_tensors < MP_STORE_INDEXED_KEYS ? fp->n_tensors : MP_STORE_INDEXED_KEYS;
        uint64_t *keys = mp_bump_alloc(bump, (max ? max : 1) * sizeof(*keys));
        if (!keys)
                return -ENOMEM;
        int n = mp_store_tensor_keys(fp, keys, max);
        if (n < 0)
                return n;
        c->keys = keys;
        c->n_keys = (size_t) n;
        return 0;
}

/* ---- open --------------------------------------------------------------- */

/* Re-indexing: fingerprints stored before the structural columns existed
 * (schema 1) get them from their records, REINDEX_BATCH at a time (and at
 * most REINDEX_BYTES of records held), each batch one transaction. */
#define REINDEX_BATCH 256
#define REINDEX_BYTES (64u << 20)

typedef struct reindex_batch {
        mp_store_fp_index items[REINDEX_BATCH];
        uint8_t *records[REINDEX_BATCH];
        size_t lens[REINDEX_BATCH];
        size_t n, bytes;
} reindex_batch;

static int reindex_collect(const mp_store_fingerprint_info *info, void *userdata) {
        reindex_batch *b = userdata;
        uint8_t *copy = malloc(info->record_len ? info->record_len : 1);
        if (!copy)
                return -ENOMEM;
        if (info->record_len)
                memcpy(copy, info->record, info->record_len);
        memcpy(b->items[b->n].digest, info->digest, MP_STORE_DIGEST_SIZE);
        b->records[b->n] = copy;
        b->lens[b->n] = info->record_len;
        b->n++;
        b->bytes += info->record_len;
        return b->n == REINDEX_BATCH || b->bytes >= REINDEX_BYTES;
}

/* The columns of one stored record.  Ingest refused records that do not
 * unpack; one that does not now (a damaged file) is indexed as having no
 * weights, so it is neither retried at every open nor ever scored. */
static int reindex_one(mp_store_fp_index *it, const uint8_t *record, size_t len, mp_bump *bump) {
        ProtobufCAllocator alloc = mp_bump_protobuf_allocator(bump);
        mp_fingerprint *fp = NULL;
        it->fp = (mp_store_fp_columns) { .name = "", .format = "" };
        if (mp_fingerprint_unpack_with("stored record", record, len, &alloc, &fp, NULL) < 0)
                return 0;
        it->fp.name = fp->name;
        it->fp.format = fp->format;
        return structure_columns(fp, &it->fp, bump);
}

static int reindex(mp_store *s, mp_error *err) {
        _cleanup_(freep) reindex_batch *b = calloc(1, sizeof(*b));
        if (!b)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        mp_bump bump = {};
        int r;
        do {
                b->n = b->bytes = 0;
                r = s->engine->unindexed(s, REINDEX_BATCH, reindex_collect, b, err);
                if (r == -ENOMEM)       /* from reindex_collect, which cannot fill err */
                        r = mp_error_set(err, r, NULL, -1, "out of memory");
                for (size_t i = 0; r >= 0 && i < b->n; i++)
                        if (reindex_one(&b->items[i], b->records[i], b->lens[i], &bump) < 0)
                                r = mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
                if (r >= 0 && b->n > 0)
                        r = s->engine->set_index(s, b->items, b->n, err);
                for (size_t i = 0; i < b->n; i++)
                        free(b->records[i]);
                mp_bump_reset(&bump);
        } while (r >= 0 && b->n > 0);
        mp_bump_free(&bump);
        return r;
}

static int open_engine(const mp_store_engine *engine, const char *location, mp_store **ret, mp_error *err) {
        mp_store *s = NULL;
        int r = engine->open(location, &s, err);
        if (r < 0)
                return r;
        r = reindex(s, err);
        if (r < 0) {
                mp_store_close(s);
                return r;
        }
        *ret = s;
        return 0;
}

static bool scheme_is(const char *scheme, const char *url, size_t len) {
        return scheme && strlen(scheme) == len && strncmp(url, scheme, len) == 0;
}

int mp_store_open(const char *url, mp_store **ret, mp_error *err) {
        assert(ret);

        if (!url || !url[0])
                return mp_error_set(err, -EINVAL, NULL, -1, "no store URL given (expected " SUPPORTED_URLS ")");
        const char *colon = strchr(url, ':');
        if (!colon)
                return mp_error_set(err, -EINVAL, url, -1, "store URL has no scheme (expected " SUPPORTED_URLS ")");

        size_t scheme_len = colon - url;
        for (size_t i = 0; i < ELEMENTSOF(engines); i++)
                if (scheme_is(engines[i]->scheme, url, scheme_len) || scheme_is(engines[i]->alias, url, scheme_len)) {
                        if (!colon[1])
                                return mp_error_set(err, -EINVAL, NULL, -1, "store URL %.*s: has an empty location",
                                                    (int) scheme_len + 1, url);
                        return open_engine(engines[i], colon + 1, ret, err);
                }

        /* Only the scheme: an unknown URL may still hold a password. */
        char scheme[64];
        snprintf(scheme, sizeof(scheme), "%.*s", (int) (scheme_len < 48 ? scheme_len : 48), url);
        return mp_error_set(err, -EPROTONOSUPPORT, NULL, -1, "unsupported store scheme \"%s\" (supported: "
                            SUPPORTED_URLS ")", mp_printable(scheme, sizeof(scheme), scheme));
}

size_t mp_store_url_secrets(const char *url, mp_store_span *spans, size_t max) {
        assert(url && (spans || max == 0));
        size_t n = 0;
        const char *colon = strchr(url, ':');
        if (!colon || strncmp(colon + 1, "//", 2) != 0)
                return 0;       /* not SCHEME://AUTHORITY...: sqlite:PATH */
        const char *authority = colon + 3;

        /* USER:PASSWORD@ before the host, which ends at the first '/' (as
         * libpq reads it: a '?' there is part of the password).  libpq
         * takes the userinfo up to the first '@', a browser up to the last;
         * the password span runs to the last, which covers both readings. */
        size_t auth_len = strcspn(authority, "/");
        const char *at = memrchr(authority, '@', auth_len);
        const char *pw = at ? memchr(authority, ':', at - authority) : NULL;
        if (pw && at > pw + 1) {
                if (n < max)
                        spans[n] = (mp_store_span) { pw + 1 - url, at - pw - 1 };
                n++;
        }

        const char *query = strchr(at ? at : authority, '?');
        for (const char *p = query; p; p = strchr(p + 1, '&')) {
                static const char key[] = "password=";
                if (strncmp(p + 1, key, strlen(key)) != 0)
                        continue;
                const char *value = p + 1 + strlen(key);
                size_t len = strcspn(value, "&");
                if (len == 0)
                        continue;
                if (n < max)
                        spans[n] = (mp_store_span) { value - url, len };
                n++;
        }
        return n;
}

char *mp_store_url_redacted(const char *url) {
        assert(url);
        mp_store_span spans[8];
        size_t n = mp_store_url_secrets(url, spans, ELEMENTSOF(spans));
        if (n > ELEMENTSOF(spans))
                return strdup("(a URL with too many passwords to show)");

        /* The spans come in URL order and do not overlap. */
        size_t len = strlen(url);
        char *out = malloc(len + 3 * n + 1), *o = out;
        if (!out)
                return NULL;
        size_t from = 0;
        for (size_t i = 0; i < n; i++) {
                memcpy(o, url + from, spans[i].offset - from);
                o += spans[i].offset - from;
                memcpy(o, "***", 3);
                o += 3;
                from = spans[i].offset + spans[i].length;
        }
        memcpy(o, url + from, len - from + 1);
        return out;
}

void mp_store_close(mp_store *s) {
        if (!s)
                return;
        for (size_t i = 0; i < MP_STORE_MAX_HELPERS; i++)
                mp_store_close(s->helpers[i]);
        s->engine->close(s);
}

int mp_store_schema_version(mp_store *s) {
        assert(s);
        return s->engine->schema_version(s);
}

int mp_store_helper(mp_store *s, unsigned i, mp_store **ret, mp_error *err) {
        assert(s && ret && i < MP_STORE_MAX_HELPERS);
        if (!s->helpers[i]) {
                int r = s->engine->open_another(s, &s->helpers[i], err);
                if (r < 0)
                        return r;
        }
        *ret = s->helpers[i];
        return 0;
}

/* ---- hosts -------------------------------------------------------------- */

int mp_store_enroll(mp_store *s, const mp_host_info *info, const uint8_t key_hash[MP_STORE_DIGEST_SIZE],
                    char host_id_out[MP_STORE_HOST_ID_SIZE], mp_error *err) {
        assert(s && info && key_hash && host_id_out);

        int r = check_text(info->hostname, "hostname", MP_STORE_MAX_IDENT, true, false, err);
        if (r >= 0)
                r = check_text(info->machine_id, "machine id", MP_STORE_MAX_IDENT, true, false, err);
        if (r >= 0)
                r = check_text(info->agent_version, "agent version", MP_STORE_MAX_IDENT, true, false, err);
        if (r >= 0)
                r = check_text(info->os, "os", MP_STORE_MAX_IDENT, true, true, err);
        if (r < 0)
                return r;

        /* UUIDv4 (RFC 9562): 122 random bits, version and variant fixed. */
        uint8_t u[16];
        if (getrandom(u, sizeof(u), 0) != (ssize_t) sizeof(u))
                return mp_error_set(err, -EIO, NULL, -1, "cannot get random bytes for a host id");
        u[6] = (u[6] & 0x0f) | 0x40;
        u[8] = (u[8] & 0x3f) | 0x80;
        char id[MP_STORE_HOST_ID_SIZE];
        snprintf(id, sizeof(id), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
                 u[15]);

        return s->engine->enroll(s, info, key_hash, id, now_ms(), host_id_out, err);
}

int mp_store_host_key_hash(mp_store *s, const char *host_id, uint8_t out[MP_STORE_DIGEST_SIZE], mp_error *err) {
        assert(s && out);
        int r = check_host_id(host_id, err);
        return r < 0 ? r : s->engine->host_key_hash(s, host_id, out, err);
}

int mp_store_heartbeat(mp_store *s, const char *host_id, const char *agent_version, int64_t now, mp_error *err) {
        assert(s);
        int r = check_host_id(host_id, err);
        if (r >= 0)
                r = check_text(agent_version, "agent version", MP_STORE_MAX_IDENT, true, false, err);
        if (r >= 0 && now < 0)
                r = mp_error_set(err, -EINVAL, NULL, -1, "heartbeat time is negative");
        return r < 0 ? r : s->engine->heartbeat(s, host_id, agent_version, now, err);
}

/* ---- ingest ------------------------------------------------------------- */

static const char *const kind_names[_MP_STORE_EVENT_KIND_MAX] = {
        [MP_STORE_EVENT_MODEL_ADDED] = "model-added",
        [MP_STORE_EVENT_MODEL_CHANGED] = "model-changed",
        [MP_STORE_EVENT_MODEL_REMOVED] = "model-removed",
        [MP_STORE_EVENT_FINDING] = "finding",
        [MP_STORE_EVENT_SCAN_MATCH] = "scan-match",
};

const char *mp_store_event_kind_name(mp_store_event_kind k) {
        return k > 0 && k < _MP_STORE_EVENT_KIND_MAX ? kind_names[k] : NULL;
}

mp_store_event_kind mp_store_event_kind_of(const char *name) {
        for (mp_store_event_kind k = 1; name && k < _MP_STORE_EVENT_KIND_MAX; k++)
                if (strcmp(name, kind_names[k]) == 0)
                        return k;
        return 0;
}

/* Unpacks the record (refusing what does not parse or names another model)
 * and points the item's columns into the unpacked tree, which lives in
 * bump until the ingest call returns. */
static int extract_columns(mp_store_item *it, mp_bump *bump, const char *what, mp_error *err) {
        const mp_store_event *ev = it->ev;
        ProtobufCAllocator alloc = mp_bump_protobuf_allocator(bump);
        const mp_fingerprint *fp = ev->fingerprint;
        int r;

        if (!fp) {
                mp_fingerprint *unpacked = NULL;
                mp_error uerr;
                r = mp_fingerprint_unpack_with(what, ev->record, ev->record_len, &alloc, &unpacked, &uerr);
                if (r < 0)
                        return mp_error_set(err, r == -ENOTSUP ? -ENOTSUP : -EBADMSG, NULL, -1, "%s: %s", what,
                                            uerr.reason);
                fp = unpacked;
        } else if (fp->record_version != MP_FINGERPRINT_RECORD_VERSION)
                return mp_error_set(err, -ENOTSUP, NULL, -1, "%s: fingerprint record version %u not supported", what,
                                    fp->record_version);
        if (fp->model_digest.len != 0 &&
            (fp->model_digest.len != MP_STORE_DIGEST_SIZE ||
             memcmp(fp->model_digest.data, ev->model_digest, MP_STORE_DIGEST_SIZE) != 0))
                return mp_error_set(err, -EBADMSG, NULL, -1, "%s: the record's model digest is not the event's", what);

        const char *arch = fp->signals && fp->signals->arch_hash[0] ? fp->signals->arch_hash : NULL;
        const char *family = fp->signals && fp->signals->family_hash[0] ? fp->signals->family_hash : NULL;
        r = check_field(fp->name, what, "record name", MP_STORE_MAX_IDENT * 4, false, true, err);
        if (r >= 0)
                r = check_field(fp->format, what, "record format", MP_STORE_MAX_IDENT, true, true, err);
        if (r >= 0)
                r = check_field(arch, what, "record arch hash", 128, true, true, err);
        if (r >= 0)
                r = check_field(family, what, "record family hash", 128, true, true, err);
        if (r < 0)
                return r;

        it->fp = (mp_store_fp_columns) {
                .name = fp->name,
                .format = fp->format,
                .arch_hash = arch,
                .family_hash = family,
                .params = fp->parameter_count,
                .n_tensors = fp->n_tensors,
        };
        if (it->fp.params > INT64_MAX)
                return mp_error_set(err, -EBADMSG, NULL, -1, "%s: absurd parameter count", what);
        r = structure_columns(fp, &it->fp, bump);
        return r < 0 ? mp_error_set(err, r, NULL, -1, "out of memory") : 0;
}

static int check_event(mp_store_item *it, size_t index, mp_bump *bump, mp_error *err) {
        const mp_store_event *ev = it->ev;
        char what[64];
        snprintf(what, sizeof(what), "event %zu", index);

        if (ev->sequence == 0 || ev->sequence > INT64_MAX)
                return mp_error_set(err, -EINVAL, NULL, -1, "%s: sequence must be between 1 and 2^63-1", what);
        if (!mp_store_event_kind_name(ev->kind))
                return mp_error_set(err, -EINVAL, NULL, -1, "%s: unknown event kind %d", what, (int) ev->kind);
        if (ev->observed_at < 0)
                return mp_error_set(err, -EINVAL, NULL, -1, "%s: negative observation time", what);

        bool model = ev->kind == MP_STORE_EVENT_MODEL_ADDED || ev->kind == MP_STORE_EVENT_MODEL_CHANGED;
        bool finding = ev->kind == MP_STORE_EVENT_FINDING;
        bool match = ev->kind == MP_STORE_EVENT_SCAN_MATCH;
        it->has_digest = !digest_is_zero(ev->model_digest);

        int r = check_field(ev->path, what, "path", MP_STORE_MAX_PATH, false, false, err);
        if (r < 0)
                return r;
        if ((model || match) && !it->has_digest)
                return mp_error_set(err, -EINVAL, NULL, -1, "%s: %s without a model digest", what,
                                    mp_store_event_kind_name(ev->kind));
        if (!model && ev->record)
                return mp_error_set(err, -EINVAL, NULL, -1, "%s: only model-added and model-changed carry a record",
                                    what);
        if (ev->fingerprint && !ev->record)
                return mp_error_set(err, -EINVAL, NULL, -1, "%s: an unpacked fingerprint without its record", what);
        if (!ev->record != (ev->record_len == 0))
                return mp_error_set(err, -EINVAL, NULL, -1, "%s: record pointer and length disagree", what);
        if (ev->record_len > MP_STORE_MAX_RECORD)
                return mp_error_set(err, -EINVAL, NULL, -1, "%s: record of %zu bytes exceeds the limit of %u", what,
                                    ev->record_len, MP_STORE_MAX_RECORD);

        if (!finding && (ev->finding_kind || ev->finding_detail || ev->finding_file))
                return mp_error_set(err, -EINVAL, NULL, -1, "%s: finding fields on a %s event", what,
                                    mp_store_event_kind_name(ev->kind));
        if (!match && (ev->match_entry || ev->match_verdict || ev->match_relation || ev->match_score != 0))
                return mp_error_set(err, -EINVAL, NULL, -1, "%s: match fields on a %s event", what,
                                    mp_store_event_kind_name(ev->kind));
        if (finding) {
                r = check_field(ev->finding_kind, what, "finding kind", MP_STORE_MAX_IDENT, true, false, err);
                if (r >= 0)
                        r = check_field(ev->finding_detail, what, "finding detail", MP_STORE_MAX_DETAIL, false, true,
                                        err);
                if (r >= 0)
                        r = check_field(ev->finding_file, what, "finding file", MP_STORE_MAX_PATH, false, true, err);
        }
        if (match) {
                r = check_field(ev->match_entry, what, "match entry", MP_STORE_MAX_IDENT, true, false, err);
                if (r >= 0)
                        r = check_field(ev->match_verdict, what, "match verdict", MP_STORE_MAX_IDENT, true, false, err);
                if (r >= 0)
                        r = check_field(ev->match_relation, what, "match relation", MP_STORE_MAX_IDENT, true, true,
                                        err);
                if (r >= 0 && !isfinite(ev->match_score))
                        r = mp_error_set(err, -EINVAL, NULL, -1, "%s: match score is not a finite number", what);
        }
        if (r < 0)
                return r;

        return ev->record ? extract_columns(it, bump, what, err) : 0;
}

/* Sequence order; ties (a sequence sent twice in one batch) by position so
 * the first copy wins, as it would have in two batches. */
static int item_order(const void *a, const void *b) {
        const mp_store_item *x = a, *y = b;
        if (x->ev->sequence != y->ev->sequence)
                return x->ev->sequence < y->ev->sequence ? -1 : 1;
        return x->ev < y->ev ? -1 : x->ev > y->ev;
}

size_t mp_store_ingest_run(const mp_store_item *items, size_t n, uint64_t last, const mp_store_item **take,
                           size_t *duplicates) {
        assert((items && take) || n == 0);
        assert(duplicates);
        size_t k = 0;
        *duplicates = 0;
        for (size_t i = 0; i < n; i++) {
                if (items[i].ev->sequence <= last) {
                        (*duplicates)++;
                        continue;
                }
                if (items[i].ev->sequence != last + 1)
                        break;
                take[k++] = &items[i];
                last++;
        }
        return k;
}

static void mp_bump_freep(mp_bump *b) {
        mp_bump_free(b);
}

int mp_store_ingest(mp_store *s, const char *host_id, const mp_store_event *events, size_t n,
                    uint64_t *acked_through, size_t *stored, size_t *duplicates, mp_error *err) {
        assert(s);
        assert(events || n == 0);

        int r = check_host_id(host_id, err);
        if (r < 0)
                return r;
        if (n > MP_STORE_MAX_BATCH)
                return mp_error_set(err, -EINVAL, NULL, -1, "a batch of %zu events exceeds the limit of %u", n,
                                    MP_STORE_MAX_BATCH);

        size_t total = 0;
        for (size_t i = 0; i < n; i++)
                total += events[i].record_len <= MP_STORE_MAX_RECORD ? events[i].record_len : MP_STORE_MAX_RECORD + 1;
        if (total > MP_STORE_MAX_BATCH_BYTES)
                return mp_error_set(err, -EINVAL, NULL, -1, "the batch's records exceed %u bytes in all",
                                    MP_STORE_MAX_BATCH_BYTES);

        _cleanup_(freep) mp_store_item *items = calloc(n ? n : 1, sizeof(*items));
        if (!items)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        _cleanup_(mp_bump_freep) mp_bump bump = {};
        for (size_t i = 0; i < n; i++) {
                items[i].ev = &events[i];
                r = check_event(&items[i], i, &bump, err);
                if (r < 0)
                        return r;
        }
        qsort(items, n, sizeof(*items), item_order);

        uint64_t acked = 0;
        size_t st = 0, dup = 0;
        r = s->engine->ingest(s, host_id, items, n, now_ms(), &acked, &st, &dup, err);
        if (r < 0)
                return r;
        if (acked_through)
                *acked_through = acked;
        if (stored)
                *stored = st;
        if (duplicates)
                *duplicates = dup;
        return 0;
}

/* ---- queries ------------------------------------------------------------ */

int mp_store_hosts(mp_store *s, mp_store_host **ret, size_t *n, mp_error *err) {
        assert(s && ret && n);
        return s->engine->hosts(s, NULL, ret, n, err);
}

int mp_store_get_host(mp_store *s, const char *host_id, mp_store_host **ret, mp_error *err) {
        assert(s && ret);
        int r = check_host_id(host_id, err);
        if (r < 0)
                return r;
        size_t n = 0;
        return s->engine->hosts(s, host_id, ret, &n, err);
}

void mp_store_hosts_free(mp_store_host *h, size_t n) {
        for (size_t i = 0; h && i < n; i++) {
                free(h[i].hostname);
                free(h[i].machine_id);
                free(h[i].agent_version);
                free(h[i].os);
        }
        free(h);
}

int mp_store_inventory(mp_store *s, const char *host_id, bool only_present, mp_store_location **ret, size_t *n,
                       mp_error *err) {
        assert(s && ret && n);
        if (host_id) {
                int r = check_host_id(host_id, err);
                if (r < 0)
                        return r;
        }
        return s->engine->inventory(s, host_id, only_present, NULL, ret, n, err);
}

int mp_store_locations(mp_store *s, const uint8_t digest[MP_STORE_DIGEST_SIZE], mp_store_location **ret,
                       size_t *n, mp_error *err) {
        assert(s && digest && ret && n);
        return s->engine->inventory(s, NULL, false, digest, ret, n, err);
}

void mp_store_locations_free(mp_store_location *l, size_t n) {
        for (size_t i = 0; l && i < n; i++) {
                free(l[i].hostname);
                free(l[i].path);
                free(l[i].model_name);
        }
        free(l);
}

int mp_store_history(mp_store *s, const char *host_id, const char *path, mp_store_history_entry **ret, size_t *n,
                     mp_error *err) {
        assert(s && ret && n);
        int r = host_id ? check_host_id(host_id, err) : 0;
        if (r >= 0 && path)
                r = check_text(path, "path", MP_STORE_MAX_PATH, false, false, err);
        return r < 0 ? r : s->engine->history(s, host_id, path, ret, n, err);
}

void mp_store_history_free(mp_store_history_entry *h, size_t n) {
        for (size_t i = 0; h && i < n; i++) {
                free(h[i].path);
                free(h[i].finding_kind);
                free(h[i].finding_detail);
                free(h[i].finding_file);
                free(h[i].match_entry);
                free(h[i].match_verdict);
                free(h[i].match_relation);
        }
        free(h);
}

int mp_store_fingerprint(mp_store *s, const uint8_t digest[MP_STORE_DIGEST_SIZE], uint8_t **ret, size_t *len,
                         mp_error *err) {
        assert(s && digest && ret && len);
        return s->engine->fingerprint(s, digest, ret, len, err);
}

static int check_fetch(size_t n, mp_error *err) {
        if (n > MP_STORE_MAX_FETCH)
                return mp_error_set(err, -EINVAL, NULL, -1, "%zu digests exceed the limit of %d per call", n,
                                    MP_STORE_MAX_FETCH);
        return 0;
}

int mp_store_digest_cmp(const void *a, const void *b) {
        return memcmp(a, b, MP_STORE_DIGEST_SIZE);
}

/* A sorted, distinct copy of n digests (at most MP_STORE_MAX_FETCH): the
 * engines split it into statements in order, so that rows ordered by digest
 * within each statement are ordered overall. */
static int sorted_digests(const uint8_t *digests, size_t n, uint8_t **ret, size_t *n_ret, mp_error *err) {
        int r = check_fetch(n, err);
        if (r < 0)
                return r;
        uint8_t *d = malloc(n ? n * MP_STORE_DIGEST_SIZE : 1);
        if (!d)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        if (n > 0)
                memcpy(d, digests, n * MP_STORE_DIGEST_SIZE);
        qsort(d, n, MP_STORE_DIGEST_SIZE, mp_store_digest_cmp);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
                if (k == 0 ||
                    mp_store_digest_cmp(d + (k - 1) * MP_STORE_DIGEST_SIZE, d + i * MP_STORE_DIGEST_SIZE) != 0)
                        memmove(d + k++ * MP_STORE_DIGEST_SIZE, d + i * MP_STORE_DIGEST_SIZE, MP_STORE_DIGEST_SIZE);
        *ret = d;
        *n_ret = k;
        return 0;
}

static int fetch_records(mp_store *s, const uint8_t *digests, size_t n, bool scoring, mp_store_record_cb cb,
                         void *userdata, mp_error *err) {
        assert(s && cb);
        assert(digests || n == 0);
        _cleanup_(freep) uint8_t *d = NULL;
        size_t k = 0;
        int r = sorted_digests(digests, n, &d, &k, err);
        if (r < 0 || k == 0)
                return r;
        return s->engine->fingerprints(s, d, k, scoring, cb, userdata, err);
}

int mp_store_fingerprints(mp_store *s, const uint8_t *digests, size_t n, mp_store_record_cb cb, void *userdata,
                          mp_error *err) {
        return fetch_records(s, digests, n, false, cb, userdata, err);
}

int mp_store_scoring_records(mp_store *s, const uint8_t *digests, size_t n, mp_store_record_cb cb, void *userdata,
                             mp_error *err) {
        return fetch_records(s, digests, n, true, cb, userdata, err);
}

int mp_store_locations_of(mp_store *s, const uint8_t *digests, size_t n, mp_store_location **ret, size_t *n_ret,
                          mp_error *err) {
        assert(s && ret && n_ret);
        assert(digests || n == 0);
        _cleanup_(freep) uint8_t *d = NULL;
        size_t k = 0;
        int r = sorted_digests(digests, n, &d, &k, err);
        if (r < 0)
                return r;
        if (k == 0) {
                *ret = NULL;
                *n_ret = 0;
                return 0;
        }
        return s->engine->locations_of(s, d, k, ret, n_ret, err);
}

int mp_store_find_hosts(mp_store *s, const char *name, char (**ret)[MP_STORE_HOST_ID_SIZE], size_t *n,
                        mp_error *err) {
        assert(s && ret && n);
        int r = check_text(name, "host name", MP_STORE_MAX_IDENT, true, false, err);
        return r < 0 ? r : s->engine->find_hosts(s, name, ret, n, err);
}

int mp_store_inventory_at(mp_store *s, const char *host_id, const char *path, mp_store_location **ret, size_t *n,
                          mp_error *err) {
        assert(s && ret && n);
        int r = check_host_id(host_id, err);
        if (r >= 0)
                r = check_text(path, "path", MP_STORE_MAX_PATH, false, false, err);
        return r < 0 ? r : s->engine->inventory_at(s, host_id, path, ret, n, err);
}

int mp_store_foreach_fingerprint(mp_store *s, const mp_store_fingerprint_filter *filter, mp_store_fingerprint_cb cb,
                                 void *userdata, mp_error *err) {
        assert(s && cb);
        static const mp_store_fingerprint_filter any = {};
        if (!filter)
                filter = &any;
        int r = check_text(filter->arch_hash, "arch hash", 128, true, true, err);
        if (r >= 0)
                r = check_text(filter->family_hash, "family hash", 128, true, true, err);
        if (r >= 0 && (filter->min_params > INT64_MAX || filter->max_params > INT64_MAX))
                r = mp_error_set(err, -EINVAL, NULL, -1, "parameter range beyond 2^63-1");
        if (r >= 0 && filter->hidden_size > INT64_MAX)
                r = mp_error_set(err, -EINVAL, NULL, -1, "hidden size beyond 2^63-1");
        return r < 0 ? r : s->engine->foreach_fingerprint(s, filter, cb, userdata, err);
}

int mp_store_candidates(mp_store *s, const mp_store_structure *structure, const uint64_t *keys, size_t n_keys,
                        const uint8_t *exclude, uint8_t **ret, size_t *n, mp_error *err) {
        assert(s && ret && n);
        assert(keys || n_keys == 0);
        if (structure && structure->hidden_size > INT64_MAX)
                return mp_error_set(err, -EINVAL, NULL, -1, "hidden size beyond 2^63-1");
        if (n_keys > MP_STORE_MAX_QUERY_KEYS)
                return mp_error_set(err, -EINVAL, NULL, -1, "%zu tensor keys exceed the limit of %u", n_keys,
                                    MP_STORE_MAX_QUERY_KEYS);
        return s->engine->candidates(s, structure, keys, n_keys, exclude, ret, n, err);
}

/* ---- catalog distribution ----------------------------------------------- */

int mp_store_put_catalog(mp_store *s, const uint8_t *bytes, size_t len,
                         char version_out[MP_STORE_CATALOG_VERSION_SIZE], mp_error *err) {
        static const char sqlite_magic[16] = "SQLite format 3";       /* with its NUL */
        assert(s && version_out);
        assert(bytes || len == 0);

        if (len > MP_STORE_MAX_CATALOG)
                return mp_error_set(err, -EINVAL, NULL, -1, "a catalog of %zu bytes exceeds the limit of %u", len,
                                    MP_STORE_MAX_CATALOG);
        if (len < 100 || memcmp(bytes, sqlite_magic, sizeof(sqlite_magic)) != 0)
                return mp_error_set(err, -EBADMSG, NULL, -1, "not a modelprov catalog (not an SQLite database)");

        char version[MP_STORE_CATALOG_VERSION_SIZE];
        sha256_hex(bytes, len, version);
        int r = s->engine->put_catalog(s, bytes, len, version, now_ms(), err);
        if (r < 0)
                return r;
        memcpy(version_out, version, sizeof(version));
        return 0;
}

int mp_store_get_catalog(mp_store *s, uint8_t **ret, size_t *len, char version_out[MP_STORE_CATALOG_VERSION_SIZE],
                         mp_error *err) {
        assert(s && version_out);
        assert(!ret || len);
        return s->engine->get_catalog(s, ret, len, version_out, err);
}
