/* catalog.h - a catalog of fingerprints: one SQLite file of named records
 * with labels, which `modelprov scan` compares a model against.
 *
 * Layout (schema version MP_CATALOG_SCHEMA_VERSION, in PRAGMA user_version;
 * PRAGMA application_id marks the file as a modelprov catalog):
 *   entries(id, name UNIQUE, model_digest, source, arch_hash, family_hash,
 *           param_bucket, params, has_weights, added_at, record)
 *   labels(entry_id -> entries.id ON DELETE CASCADE, key, value)
 * `record` is the packed modelprov.v1.Fingerprint; the other columns are
 * copies of what the pre-filter and `catalog list` need, so that neither
 * unpacks records they do not compare.
 *
 * Every function returns 0 (or a documented positive value) on success, and
 * on failure a negative errno with err filled: the file is the catalog path,
 * the reason says what failed in plain words ("not a modelprov catalog",
 * "database is locked (another modelprov process is writing it)").
 *
 * Writes: each mp_catalog_add()/mp_catalog_remove() is atomic on its own;
 * wrap many in mp_catalog_begin()/mp_catalog_commit() to make them one
 * transaction (an import, a batch), and mp_catalog_rollback() to drop it.
 * A catalog handle is not thread-safe. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog/param_bucket.h"
#include "compare/compare.h"
#include "fingerprint/record.h"
#include "util/error.h"

#define MP_CATALOG_SCHEMA_VERSION 1

/* Where an entry came from. */
#define MP_CATALOG_SOURCE_LOCAL "local"                 /* catalog add: a model or a fingerprint file */
#define MP_CATALOG_SOURCE_PROVENANCEKIT "provenancekit" /* catalog import: metadata only, no weights */

/* Limits on what a user (or an imported file) can store. */
#define MP_CATALOG_NAME_MAX 512         /* bytes of an entry name */
#define MP_CATALOG_LABEL_KEY_MAX 64     /* bytes of a label key: [A-Za-z0-9._:/-] */
#define MP_CATALOG_LABEL_VALUE_MAX 1024 /* bytes of a label value: UTF-8, no control characters */

typedef struct mp_catalog mp_catalog;

typedef struct mp_label {
        const char *key;
        const char *value;
} mp_label;

/* Opens the catalog at path.  With create, a missing or empty file becomes a
 * new catalog; an existing file is never converted (a database that is not a
 * modelprov catalog is refused either way).  A write-protected file opens
 * read-only: list and scan work, writes fail with -EROFS. */
int mp_catalog_open(const char *path, bool create, mp_catalog **ret, mp_error *err);
void mp_catalog_close(mp_catalog *c);
static inline void mp_catalog_closep(mp_catalog **c) { mp_catalog_close(*c); }

const char *mp_catalog_path(const mp_catalog *c);

/* One transaction around several writes (BEGIN IMMEDIATE: the write lock is
 * taken at once, so a concurrent writer is reported here, not half-way). */
int mp_catalog_begin(mp_catalog *c, mp_error *err);
int mp_catalog_commit(mp_catalog *c, mp_error *err);
void mp_catalog_rollback(mp_catalog *c);

/* Checks an entry name or a label against the limits above; 0 or -EINVAL
 * with the reason in err (file = the catalog path, or NULL). */
int mp_catalog_check_name(const char *name, mp_error *err);
int mp_catalog_check_label(const char *key, const char *value, mp_error *err);

typedef enum mp_catalog_add_mode {
        MP_CATALOG_ADD_NEW = 0,                 /* -EEXIST when the name is taken */
        MP_CATALOG_ADD_REPLACE,                 /* replaces the entry of that name, labels included */
        MP_CATALOG_ADD_REPLACE_SAME_SOURCE,     /* replaces only an entry of the same source, else -EEXIST */
} mp_catalog_add_mode;

typedef struct mp_catalog_add_options {
        const char *source;             /* MP_CATALOG_SOURCE_*; NULL means local */
        const mp_label *labels;         /* keys must be distinct */
        size_t n_labels;
        mp_catalog_add_mode mode;
        /* The size bucket to store; NULL: estimated from the record
         * (mp_param_estimate_record()).  An imported catalog brings its own. */
        const char *param_bucket;
} mp_catalog_add_options;

/* Stores fp under name.  o may be NULL (local, no labels, new).  Returns 0
 * when added, 1 when an entry was replaced; -EEXIST when the name is taken
 * (see mode), -EINVAL for a bad name, label or bucket. */
int mp_catalog_add(mp_catalog *c, const char *name, const mp_fingerprint *fp,
                   const mp_catalog_add_options *o, mp_error *err);

/* Removes the entry called name; -ENOENT when there is none. */
int mp_catalog_remove(mp_catalog *c, const char *name, mp_error *err);

/* What the catalog knows about an entry without unpacking its record.
 * Strings are "" when unknown and, like the arrays, valid only during the
 * callback that receives the entry. */
typedef struct mp_catalog_entry {
        int64_t id;
        const char *name;
        const char *source;
        const char *param_bucket;
        uint64_t params;                /* estimate; 0 when unknown */
        bool has_weights;               /* false: metadata and tokenizer features only */
        const char *arch_hash;
        const char *family_hash;
        const char *added_at;           /* UTC, 2026-01-31T12:00:00Z */
        const uint8_t *model_digest;    /* NULL when the record has none */
        size_t model_digest_len;
        const mp_label *labels;         /* sorted by key; NULL when not loaded */
        size_t n_labels;
} mp_catalog_entry;

/* Return a negative errno to stop the iteration; it is passed through. */
typedef int (*mp_catalog_entry_cb)(const mp_catalog_entry *e, void *userdata);
typedef int (*mp_catalog_candidate_cb)(const mp_catalog_entry *e, const mp_fingerprint *fp, void *userdata);

/* Every entry, in name order, labels loaded. */
int mp_catalog_list(mp_catalog *c, mp_catalog_entry_cb cb, void *userdata, mp_error *err);

/* Number of entries. */
int mp_catalog_count(mp_catalog *c, size_t *ret, mp_error *err);

/* The entries whose param_bucket is one of buckets[0..n) or unknown (those
 * cannot be ruled out), or every entry when n_buckets is 0, with their
 * unpacked records (valid during the callback; labels not loaded).  One
 * query; each record is unpacked once.  A record that does not unpack stops
 * the iteration with -EBADMSG and an error naming the entry. */
int mp_catalog_foreach_candidate(mp_catalog *c, const mp_param_bucket *buckets, size_t n_buckets,
                                 mp_catalog_candidate_cb cb, void *userdata, mp_error *err);

/* The labels of entry id, sorted by key, as one allocation: free *ret with
 * free() (the strings live in the same block); NULL when there are none. */
int mp_catalog_get_labels(mp_catalog *c, int64_t id, mp_label **ret, size_t *ret_n, mp_error *err);

/* ---- scan ---------------------------------------------------------------
 *
 * The query against every candidate that passes the size pre-filter (its
 * bucket +-1, unless all_buckets), scored with mp_compare().  The ranking
 * score of a comparison is its identity score (weight evidence) when there
 * is one, else its pipeline score if the metadata reached Weak Match, else
 * 0 (NaN counting as 0); a match needs a
 * ranking score >= threshold.  Matches are ordered by verdict, then ranking
 * score, then name, so that a metadata-only entry (at most Weak Match) never
 * outranks a weight-evidence match, and the top_k first are kept.  An entry
 * without weights is never more than Weak Match, whatever the comparison
 * says. */

#define MP_SCAN_DEFAULT_TOP_K 3
#define MP_SCAN_DEFAULT_THRESHOLD 0.5
#define MP_SCAN_TOP_K_MAX 100000

typedef struct mp_scan_options {
        size_t top_k;                   /* 1..MP_SCAN_TOP_K_MAX */
        double threshold;               /* in [0, 1] */
        bool all_buckets;               /* no size pre-filter */
} mp_scan_options;

typedef struct mp_scan_match {
        int64_t entry_id;
        char *name;
        char *source;
        char *param_bucket;             /* "" when unknown */
        bool has_weights;               /* false: the verdict rests on metadata only */
        mp_label *labels;               /* one block (mp_catalog_get_labels) */
        size_t n_labels;
        double score;                   /* the ranking score */
        mp_comparison cmp;              /* query = a, entry = b */
} mp_scan_match;

typedef struct mp_scan_result {
        uint64_t query_params;          /* 0 when unknown */
        int query_bucket;               /* mp_param_bucket, or -1 when unknown (then all buckets) */
        mp_param_bucket buckets[3];     /* the buckets searched, n_buckets = 0 for all */
        size_t n_buckets;
        size_t n_entries;               /* in the catalog */
        size_t n_candidates;            /* compared */
        size_t n_above_threshold;
        mp_scan_match *matches;         /* best first, at most top_k */
        size_t n_matches;
} mp_scan_result;

int mp_catalog_scan(mp_catalog *c, const mp_fingerprint *query, const mp_scan_options *o,
                    mp_scan_result *ret, mp_error *err);
void mp_scan_result_free(mp_scan_result *r);

/* The ranking rules above, exposed for tests and for printing. */
double mp_scan_rank_score(const mp_comparison *cmp);
/* < 0 when a ranks before b. */
int mp_scan_match_order(const mp_scan_match *a, const mp_scan_match *b);
