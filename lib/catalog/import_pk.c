/* import_pk.c - the reference project's database into a catalog (see
 * import_pk.h).
 *
 * Everything here is read from a directory someone else wrote: every JSON
 * value is type-checked before use, strings must be clean text, sizes and
 * counts are bounded, and every relative path is checked twice: on paper
 * (no absolute path, no "..") and after realpath() (no symlink out of DIR).
 * A bad asset or shard is skipped with a reason; only an unreadable
 * manifest fails the import. */
#include "catalog/import_pk.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/arena.h"
#include "util/macro.h"
#include "util/source.h"
#include "util/strutil.h"

typedef struct importer {
        mp_catalog *catalog;
        char *root;                     /* realpath of DIR */
        mp_import_skip_cb skip;
        void *userdata;
        mp_import_stats *stats;
        json_t *seen;                   /* names imported by this run, as a set */
        mp_error *err;                  /* the caller's, for failures of the catalog itself */
} importer;

/* Reports one skipped item (counted n times: a shard stands for its assets). */
static void skipped(importer *im, const char *what, size_t n, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void skipped(importer *im, const char *what, size_t n, const char *fmt, ...) {
        char reason[MP_ERROR_REASON_MAX], p_what[256], p_reason[MP_ERROR_REASON_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
        im->stats->skipped += n;
        if (im->skip)
                im->skip(mp_printable(p_what, sizeof(p_what), what ? what : "?"),
                         mp_printable(p_reason, sizeof(p_reason), reason), im->userdata);
}

/* A JSON string that is clean text (no NUL inside, no control characters),
 * or NULL. */
static const char *clean_string(const json_t *v) {
        if (!json_is_string(v))
                return NULL;
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (strlen(s) != n)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
                        return NULL;
        return s;
}

static const char *get_string(const json_t *obj, const char *key) {
        const char *s = clean_string(json_object_get(obj, key));
        return s && s[0] ? s : NULL;
}

/* ---- paths -------------------------------------------------------------- */

/* DIR + rel, refused unless it stays inside DIR.  Returns the real path
 * (malloc'd) or a negative errno with why in reason. */
static int resolve(const importer *im, const json_t *v, char **ret, char *reason, size_t size) {
        const char *rel = clean_string(v);
        if (!rel || !rel[0]) {
                snprintf(reason, size, "path is missing or not a clean string");
                return -EBADMSG;
        }
        if (rel[0] == '/') {
                snprintf(reason, size, "absolute path '%.200s' refused", rel);
                return -EPERM;
        }
        if (strlen(rel) >= PATH_MAX) {
                snprintf(reason, size, "path too long");
                return -ENAMETOOLONG;
        }
        for (const char *p = rel; *p;) {
                size_t n = strcspn(p, "/");
                if (n == 2 && p[0] == '.' && p[1] == '.') {
                        snprintf(reason, size, "path '%.200s' leads outside the database directory", rel);
                        return -EPERM;
                }
                p += n;
                p += *p == '/';
        }

        _cleanup_(freep) char *joined = mp_path_join(im->root, rel);
        if (!joined) {
                snprintf(reason, size, "out of memory");
                return -ENOMEM;
        }
        char *real = realpath(joined, NULL);
        if (!real) {
                int e = errno;
                snprintf(reason, size, "%.200s: %s", rel, e == ENOENT ? "no such file" : strerror(e));
                return -e;
        }
        size_t n = strlen(im->root);
        if (strncmp(real, im->root, n) != 0 || (real[n] != '/' && strcmp(im->root, "/") != 0)) {
                free(real);
                snprintf(reason, size, "path '%.200s' leads outside the database directory (symlink)", rel);
                return -EPERM;
        }
        *ret = real;
        return 0;
}

/* Reads the JSON object at DIR/rel (v is the JSON value holding rel). */
static int load_object(const importer *im, const json_t *v, json_t **ret, char *reason, size_t size) {
        _cleanup_(freep) char *path = NULL;
        int r = resolve(im, v, &path, reason, size);
        if (r < 0)
                return r;

        _cleanup_(freep) char *buf = NULL;
        size_t len;
        mp_error err;
        mp_error_clear(&err);
        r = mp_read_file_limited(path, json_string_value(v), MP_PK_JSON_MAX, &buf, &len, &err);
        if (r < 0) {
                snprintf(reason, size, "%s", err.reason);
                return r;
        }
        json_error_t jerr;
        json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!j) {
                snprintf(reason, size, "malformed JSON at line %d: %s", jerr.line, jerr.text);
                return -EBADMSG;
        }
        if (!json_is_object(j)) {
                json_decref(j);
                snprintf(reason, size, "not a JSON object");
                return -EBADMSG;
        }
        *ret = j;
        return 0;
}

/* ---- the record --------------------------------------------------------- */

/* A JSON value as compact text, owned by the arena. */
static char *arena_dump(mp_arena *a, const json_t *v) {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!s)
                return NULL;
        char *copy = mp_arena_strdup(a, s);
        free(s);
        return copy;
}

/* A clean string (or "") owned by the arena; NULL only on ENOMEM. */
static char *arena_string(mp_arena *a, const char *s) {
        return mp_arena_strdup(a, s ? s : "");
}

static const char *hash_field(const json_t *mfi, const char *key) {
        const char *s = get_string(mfi, key);
        return s && strlen(s) == 64 && mp_is_lower_hex(s, 64) ? s : NULL;
}

static int build_arch(mp_arena *a, const json_t *mfi, Modelprov__V1__Fingerprint *fp) {
        Modelprov__V1__Architecture *d = mp_arena_alloc(a, sizeof(*d));
        if (!d)
                return -ENOMEM;
        modelprov__v1__architecture__init(d);

        const json_t *archs = json_object_get(mfi, "architectures");
        d->architecture = arena_string(a, clean_string(json_array_get(archs, 0)));
        d->model_type = arena_string(a, get_string(mfi, "model_type"));
        d->hidden_act = arena_string(a, get_string(mfi, "hidden_act"));
        if (!d->architecture || !d->model_type || !d->hidden_act)
                return -ENOMEM;
        d->hidden_size = mp_mfi_field_u64(mfi, "hidden_size");
        d->num_layers = mp_mfi_field_u64(mfi, "num_hidden_layers");
        d->num_heads = mp_mfi_field_u64(mfi, "num_attention_heads");
        d->num_kv_heads = mp_mfi_field_u64(mfi, "num_key_value_heads");
        d->intermediate_size = mp_mfi_field_u64(mfi, "intermediate_size");
        d->vocab_size = mp_mfi_field_u64(mfi, "vocab_size");
        d->max_positions = mp_mfi_field_u64(mfi, "max_position_embeddings");
        d->head_dim = mp_mfi_field_u64(mfi, "head_dim");

        /* The DB keeps rope_theta inside rope_scaling for most models. */
        const json_t *theta = json_object_get(mfi, "rope_theta");
        if (!json_is_number(theta))
                theta = json_object_get(json_object_get(mfi, "rope_scaling"), "rope_theta");
        d->rope_theta = json_is_number(theta) ? json_number_value(theta) : 0;

        const json_t *tied = json_object_get(mfi, "tie_word_embeddings");
        d->tie_word_embeddings = json_is_boolean(tied) ? json_is_true(tied) : -1;
        fp->arch = d;
        return 0;
}

static int build_signals(mp_arena *a, const json_t *mfi, const json_t *tfv, Modelprov__V1__Fingerprint *fp) {
        Modelprov__V1__Signals *s = mp_arena_alloc(a, sizeof(*s));
        if (!s)
                return -ENOMEM;
        modelprov__v1__signals__init(s);
        s->mfi_json = arena_dump(a, mfi);
        s->tfv_json = json_is_object(tfv) ? arena_dump(a, tfv) : arena_string(a, NULL);
        s->arch_hash = arena_string(a, hash_field(mfi, "arch_hash"));
        s->family_hash = arena_string(a, hash_field(mfi, "family_hash"));
        if (!s->mfi_json || !s->tfv_json || !s->arch_hash || !s->family_hash)
                return -ENOMEM;
        s->has_weights = false;
        fp->signals = s;
        return 0;
}

/* The metadata map: where the entry came from, for `list --json` and
 * scans.  Values that are not clean strings are left out. */
static int build_metadata(mp_arena *a, const char *const kv[][2], size_t n, Modelprov__V1__Fingerprint *fp) {
        fp->metadata = mp_arena_calloc(a, n, sizeof(*fp->metadata));
        if (!fp->metadata)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (!kv[i][1])
                        continue;
                Modelprov__V1__Fingerprint__MetadataEntry *e = mp_arena_alloc(a, sizeof(*e));
                if (!e)
                        return -ENOMEM;
                modelprov__v1__fingerprint__metadata_entry__init(e);
                e->key = arena_string(a, kv[i][0]);
                e->value = arena_string(a, kv[i][1]);
                if (!e->key || !e->value)
                        return -ENOMEM;
                fp->metadata[fp->n_metadata++] = e;
        }
        return 0;
}

/* What one asset contributes, gathered from the manifest, shard and
 * feature file. */
typedef struct pk_asset {
        const char *name;
        const char *asset_id;
        const char *family_id;
        const char *publisher;
        const char *source_uri;
        const char *format;
        const char *param_bucket;       /* the catalog's, when it is a known bucket */
        const json_t *mfi;
        const json_t *tfv;
} pk_asset;

static int build_record(mp_arena *a, const pk_asset *x, Modelprov__V1__Fingerprint *fp) {
        modelprov__v1__fingerprint__init(fp);
        fp->record_version = MP_FINGERPRINT_RECORD_VERSION;
        fp->tool_version = arena_string(a, MODELPROV_VERSION);
        fp->name = arena_string(a, x->name);
        fp->layout = arena_string(a, "provenancekit");
        fp->format = arena_string(a, x->format);
        if (!fp->tool_version || !fp->name || !fp->layout || !fp->format)
                return -ENOMEM;

        const char *const meta[][2] = {
                { "family_id", x->family_id },
                { "publisher", x->publisher },
                { "source_uri", x->source_uri },
                { "format", x->format },
                { "asset_id", x->asset_id },
                { "param_bucket", x->param_bucket },
        };
        int r = build_arch(a, x->mfi, fp);
        if (r >= 0)
                r = build_signals(a, x->mfi, x->tfv, fp);
        if (r >= 0)
                r = build_metadata(a, meta, ELEMENTSOF(meta), fp);
        return r;
}

/* ---- assets and shards -------------------------------------------------- */

static int store_asset(importer *im, const pk_asset *x) {
        mp_arena a = {0};
        Modelprov__V1__Fingerprint fp;
        int r = build_record(&a, x, &fp);
        if (r < 0) {
                mp_arena_free(&a);
                return r;
        }

        mp_label labels[2];
        size_t n_labels = 0;
        if (x->family_id && mp_catalog_check_label("family", x->family_id, NULL) >= 0)
                labels[n_labels++] = (mp_label) { "family", x->family_id };
        if (x->publisher && mp_catalog_check_label("publisher", x->publisher, NULL) >= 0)
                labels[n_labels++] = (mp_label) { "publisher", x->publisher };

        mp_catalog_add_options o = {
                .source = MP_CATALOG_SOURCE_PROVENANCEKIT,
                .labels = labels,
                .n_labels = n_labels,
                .mode = MP_CATALOG_ADD_REPLACE_SAME_SOURCE,
                .param_bucket = x->param_bucket,
        };
        mp_error err;
        mp_error_clear(&err);
        r = mp_catalog_add(im->catalog, x->name, &fp, &o, &err);
        mp_arena_free(&a);
        if (r == -EEXIST || r == -EINVAL) {
                skipped(im, x->asset_id, 1, "%s", r == -EEXIST ? "the name is taken by a local entry" : err.reason);
                return 0;
        }
        if (r < 0) {
                /* The catalog itself failed (disk full, locked): stop. */
                if (im->err)
                        *im->err = err;
                return r;
        }
        im->stats->imported++;
        return 0;
}

/* Imports one asset of a shard.  Returns < 0 only for failures of the
 * catalog itself; a bad asset is skipped. */
static int import_asset(importer *im, const json_t *asset, const char *family_id, const char *publisher) {
        char reason[MP_ERROR_REASON_MAX];
        const char *asset_id = get_string(asset, "asset_id");
        const char *what = asset_id ? asset_id : "(asset without asset_id)";

        if (!json_is_object(asset)) {
                skipped(im, "(asset)", 1, "not a JSON object");
                return 0;
        }
        pk_asset x = {
                .asset_id = asset_id,
                .family_id = family_id,
                .publisher = publisher,
                .source_uri = get_string(asset, "source_uri"),
                .format = get_string(asset, "format"),
                .param_bucket = get_string(asset, "param_bucket"),
        };
        /* The display name: canonical_name, else model_id. */
        const json_t *name = json_object_get(asset, "canonical_name");
        if (!name || json_is_null(name) || (json_is_string(name) && json_string_length(name) == 0))
                name = json_object_get(asset, "model_id");
        if (!json_is_string(name) || json_string_length(name) == 0) {
                skipped(im, what, 1, "no canonical_name or model_id");
                return 0;
        }
        x.name = clean_string(name);
        mp_error err;
        if (!x.name || mp_catalog_check_name(x.name, &err) < 0) {
                skipped(im, what, 1, "bad name: %s",
                        x.name ? err.reason : "control characters or NUL in the name");
                return 0;
        }
        if (x.param_bucket && mp_param_bucket_from_name(x.param_bucket) < 0)
                x.param_bucket = NULL;  /* estimated from the mfi instead */

        _cleanup_(json_decrefp) json_t *features = NULL;
        if (load_object(im, json_object_get(asset, "feature_path"), &features, reason, sizeof(reason)) < 0) {
                skipped(im, what, 1, "feature file: %s", reason);
                return 0;
        }
        x.mfi = json_object_get(features, "mfi");
        x.tfv = json_object_get(features, "tfv");
        if (!json_is_object(x.mfi)) {
                skipped(im, what, 1, "feature file has no \"mfi\" object");
                return 0;
        }
        if (json_object_get(im->seen, x.name)) {
                skipped(im, what, 1, "duplicate name '%s' in the database", x.name);
                return 0;
        }
        if (json_object_set_new(im->seen, x.name, json_true()) < 0)
                return -ENOMEM;
        return store_asset(im, &x);
}

static int import_shard(importer *im, const json_t *entry) {
        char reason[MP_ERROR_REASON_MAX];
        const json_t *path = json_object_get(entry, "shard_path");
        const char *what = clean_string(path) ? json_string_value(path) : "(shard)";

        _cleanup_(json_decrefp) json_t *shard = NULL;
        if (load_object(im, path, &shard, reason, sizeof(reason)) < 0) {
                skipped(im, what, 1, "shard: %s", reason);
                return 0;
        }
        const json_t *family = json_object_get(shard, "family");
        const json_t *assets = json_object_get(shard, "assets");
        const char *family_id = get_string(family, "family_id");
        if (!family_id)
                family_id = get_string(entry, "family_id");
        if (!json_is_array(assets)) {
                skipped(im, what, 1, "shard has no \"assets\" array");
                return 0;
        }
        if (json_array_size(assets) > MP_PK_ASSETS_MAX) {
                skipped(im, what, 1, "shard has %zu assets, more than %d", json_array_size(assets), MP_PK_ASSETS_MAX);
                return 0;
        }

        size_t i;
        const json_t *asset;
        json_array_foreach(assets, i, asset) {
                int r = import_asset(im, asset, family_id, get_string(family, "publisher"));
                if (r < 0)
                        return r;
        }
        return 0;
}

static int import_manifest(importer *im, const char *dir, mp_error *err) {
        char reason[MP_ERROR_REASON_MAX];
        _cleanup_(json_decrefp) json_t *rel = json_string("catalog/manifest.json");
        _cleanup_(json_decrefp) json_t *manifest = NULL;
        if (!rel)
                return mp_error_set(err, -ENOMEM, dir, -1, "out of memory");
        int r = load_object(im, rel, &manifest, reason, sizeof(reason));
        if (r < 0)
                return mp_error_set(err, r, dir, -1, "not a provenancekit database: %s", reason);

        const json_t *shards = json_object_get(manifest, "shards");
        if (!json_is_array(shards))
                return mp_error_set(err, -EBADMSG, dir, -1,
                                    "not a provenancekit database: catalog/manifest.json has no \"shards\" array");
        if (json_array_size(shards) > MP_PK_SHARDS_MAX)
                return mp_error_set(err, -E2BIG, dir, -1, "catalog/manifest.json lists %zu shards, more than %d",
                                    json_array_size(shards), MP_PK_SHARDS_MAX);

        size_t i;
        const json_t *entry;
        json_array_foreach(shards, i, entry) {
                if (!json_is_object(entry)) {
                        skipped(im, "(shard)", 1, "manifest entry %zu is not a JSON object", i);
                        continue;
                }
                r = import_shard(im, entry);
                if (r == -ENOMEM && (!err || err->code == 0))
                        return mp_error_set(err, r, dir, -1, "out of memory");
                if (r < 0)
                        return r;       /* store_asset() filled err */
        }
        return 0;
}

int mp_catalog_import_pk(mp_catalog *c, const char *dir, mp_import_skip_cb skip, void *userdata,
                         mp_import_stats *stats, mp_error *err) {
        assert(c);
        assert(dir);
        assert(stats);

        *stats = (mp_import_stats) {0};
        mp_error_clear(err);
        _cleanup_(freep) char *root = realpath(dir, NULL);
        if (!root)
                return mp_error_set(err, -errno, dir, -1, "cannot open the database directory: %s", strerror(errno));
        _cleanup_(json_decrefp) json_t *seen = json_object();
        if (!seen)
                return mp_error_set(err, -ENOMEM, dir, -1, "out of memory");

        importer im = {
                .catalog = c,
                .root = root,
                .skip = skip,
                .userdata = userdata,
                .stats = stats,
                .seen = seen,
                .err = err,
        };
        int r = mp_catalog_begin(c, err);
        if (r < 0)
                return r;
        r = import_manifest(&im, dir, err);
        if (r >= 0)
                r = mp_catalog_commit(c, err);
        if (r < 0) {
                mp_catalog_rollback(c);
                *stats = (mp_import_stats) {0};
        }
        return r;
}
