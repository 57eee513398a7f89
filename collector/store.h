/* store.h - the collector's storage: enrolled hosts, the ordered stream of
 * events each host reports, the fleet inventory with its history, the
 * fingerprints behind it, and the reference catalog handed to agents.
 *
 * One interface, two engines, picked by mp_store_open() from the URL
 * scheme: SQLite (one file, nothing to set up) and PostgreSQL (for fleets:
 * several collector instances share one database).  Same schema, same
 * results, same errors.  Everything that does not depend on the engine
 * lives in store.c: argument limits against hostile input, record
 * unpacking, host id generation, ordering a batch by sequence.  An engine
 * sees only validated input.
 *
 * Contract shared by every function:
 *   - returns 0 (or a count) on success, a negative errno on failure, and
 *     fills err (may be NULL) with a sentence naming the store (never a
 *     password);
 *   - -EINVAL: an argument violates a limit below (nothing is stored);
 *   - -EBADMSG: a fingerprint record or catalog that does not parse (nothing
 *     is stored), or a damaged row in the store;
 *   - -ENOENT: unknown host, digest or no catalog;
 *   - -EBUSY: the store stayed locked beyond the busy timeout (SQLite), or
 *     concurrent writers kept conflicting (PostgreSQL: lock timeout,
 *     deadlocks and serialization failures retried a few times);
 *   - -EIO: the store cannot be reached (PostgreSQL: the server is down or
 *     the connection broke and one reconnect failed, or it broke during a
 *     COMMIT, whose outcome is then unknown); retrying later is the answer,
 *     safe since every write is idempotent (ingest by sequence, enrollment
 *     by machine id, upserts), and the handle stays usable: it reconnects
 *     on its next call;
 *   - a write either happens completely or not at all (one transaction).
 * An mp_store handle is not thread-safe: use one per thread (engines support
 * several handles and several processes on one store; on PostgreSQL a
 * handle is one connection, so handles are the connection pool).
 *
 * Times are milliseconds since the Unix epoch.  Model digests are the raw
 * 32 bytes of the record's model_digest (SHA-256). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fingerprint/record.h"
#include "util/error.h"

typedef struct mp_store mp_store;

#define MP_STORE_DIGEST_SIZE 32
/* Orders digests as bytes (memcmp), the order the store's fetch-many calls
 * and their results use; for qsort() and bsearch(). */
int mp_store_digest_cmp(const void *a, const void *b);
/* A host id: a UUIDv4 in its 36-character text form, plus NUL. */
#define MP_STORE_HOST_ID_SIZE 37
/* A catalog version: lowercase hex SHA-256 of its bytes, plus NUL. */
#define MP_STORE_CATALOG_VERSION_SIZE 65

/* Limits against hostile input, checked before anything is stored. */
#define MP_STORE_MAX_IDENT      256              /* hostname, machine id, versions, os, kinds, names */
#define MP_STORE_MAX_PATH       4096             /* model paths */
#define MP_STORE_MAX_DETAIL     4096             /* finding detail */
#define MP_STORE_MAX_BATCH      4096             /* events per ingest call */
#define MP_STORE_MAX_RECORD     (16u << 20)      /* one packed fingerprint record */
#define MP_STORE_MAX_BATCH_BYTES (64u << 20)     /* all records of one ingest call */
#define MP_STORE_MAX_CATALOG    (512u << 20)     /* one catalog upload */

/* ---- open --------------------------------------------------------------- */

/* Opens (and creates its schema on first use) the store named by url:
 *   "sqlite:PATH"        one SQLite file (WAL, busy timeout, schema
 *                        migrations);
 *   "postgresql://..."   a PostgreSQL database, given as a libpq connection
 *   "postgres://..."     URI: postgresql://[USER[:PASSWORD]@]HOST[:PORT]/DBNAME
 *                        [?PARAM=VALUE&...], e.g. postgresql://modelprov@
 *                        db.example.net/modelprov?sslmode=verify-full (a
 *                        password is better kept in ~/.pgpass or
 *                        PGPASSFILE than in the URL).  The database must
 *                        exist (encoding UTF8: paths are any UTF-8); the
 *                        schema is created in it (in the first schema of
 *                        the search_path), which needs the right to create
 *                        tables on first use only.
 * Unknown schemes: -EPROTONOSUPPORT; a malformed URL: -EINVAL.  A file or
 * database that is not a modelprov store (SQLite: another application's
 * file or a catalog; PostgreSQL: tables but no modelprov_meta marker):
 * -EBADMSG.  A store written by a newer modelprov (newer schema): -ENOTSUP.
 * A PostgreSQL server that cannot be reached or refuses the login: -EIO. */
int mp_store_open(const char *url, mp_store **ret, mp_error *err);
void mp_store_close(mp_store *s);
static inline void mp_store_closep(mp_store **s) { mp_store_close(*s); }

/* url for a log line or a message: a PostgreSQL URL's password (after
 * "USER:" and in a password= parameter) replaced by "***"; other URLs as
 * they are.  malloc'd; NULL on ENOMEM. */
char *mp_store_url_redacted(const char *url);

/* The schema version of an opened store (after migrations). */
int mp_store_schema_version(mp_store *s);

/* Helper handle i (< MP_STORE_MAX_HELPERS) on the store s is open on, for
 * another thread of a call that holds s (blast radius scores on several):
 * opened on first use, kept (warm caches) until mp_store_close(s), which
 * closes it.  Same errors as mp_store_open(). */
#define MP_STORE_MAX_HELPERS 64
int mp_store_helper(mp_store *s, unsigned i, mp_store **ret, mp_error *err);

/* ---- hosts -------------------------------------------------------------- */

typedef struct mp_host_info {
        const char *hostname;           /* required, clean text */
        const char *machine_id;         /* required: the host's stable identity (/etc/machine-id) */
        const char *agent_version;      /* required */
        const char *os;                 /* may be NULL or "" */
} mp_host_info;

/* Enrolls a host and stores key_hash, the SHA-256 of its per-host key (the
 * service makes the key and never hands it to the store).  A machine_id seen
 * before is re-enrolled: same host id, same sequence state, the key hash is
 * replaced (the old key stops working) and the descriptive fields updated.
 * host_id_out receives the host id (a new random UUIDv4 for a new host). */
int mp_store_enroll(mp_store *s, const mp_host_info *info, const uint8_t key_hash[MP_STORE_DIGEST_SIZE],
                    char host_id_out[MP_STORE_HOST_ID_SIZE], mp_error *err);

/* The stored key hash of host_id, for authenticating its calls; -ENOENT
 * when the host is unknown.  The caller compares in constant time. */
int mp_store_host_key_hash(mp_store *s, const char *host_id, uint8_t out[MP_STORE_DIGEST_SIZE], mp_error *err);

/* Records that host_id is alive (last_seen = now_ms) and runs agent_version. */
int mp_store_heartbeat(mp_store *s, const char *host_id, const char *agent_version, int64_t now_ms,
                       mp_error *err);

/* ---- ingest ------------------------------------------------------------- */

typedef enum mp_store_event_kind {
        MP_STORE_EVENT_MODEL_ADDED = 1,
        MP_STORE_EVENT_MODEL_CHANGED,   /* the file at path now holds model_digest */
        MP_STORE_EVENT_MODEL_REMOVED,   /* the model at path is gone */
        MP_STORE_EVENT_FINDING,         /* a problem with the file at path (finding_*) */
        MP_STORE_EVENT_SCAN_MATCH,      /* the model at path matched a catalog entry (match_*) */
        _MP_STORE_EVENT_KIND_MAX,
} mp_store_event_kind;

/* The name of a kind ("model-added", ...), NULL when out of range. */
const char *mp_store_event_kind_name(mp_store_event_kind k);
/* The kind of a name, 0 when name (may be NULL) names none. */
mp_store_event_kind mp_store_event_kind_of(const char *name);

/* One event as the agent reported it.  Strings are borrowed.  Which fields
 * count depends on kind; the others must be NULL/0:
 *   added/changed: path, model_digest, record (optional: the packed
 *                  modelprov.v1.Fingerprint; when present its model_digest
 *                  must equal model_digest);
 *   removed:       path (model_digest informative);
 *   finding:       path, finding_kind, finding_detail and finding_file
 *                  (both optional);
 *   scan-match:    path, model_digest, match_entry, match_verdict,
 *                  match_relation (optional), match_score (finite). */
typedef struct mp_store_event {
        uint64_t sequence;              /* > 0, <= INT64_MAX; contiguous per host */
        mp_store_event_kind kind;
        int64_t observed_at;            /* >= 0 */
        const char *path;
        uint8_t model_digest[MP_STORE_DIGEST_SIZE];
        const uint8_t *record;
        size_t record_len;
        /* Optional: record already unpacked (the service parsed the batch),
         * so ingest does not unpack it again.  Only with record, and it must
         * be what record holds. */
        const mp_fingerprint *fingerprint;
        const char *finding_kind;
        const char *finding_detail;
        const char *finding_file;       /* optional: the file in the model it is about */
        const char *match_entry;
        const char *match_verdict;
        const char *match_relation;
        double match_score;
} mp_store_event;

/* Stores the events of host_id in one transaction, in sequence order (the
 * batch may arrive in any order).  With L the host's last stored sequence:
 * an event with sequence <= L is a duplicate (counted, not stored: the agent
 * resent it after a lost ack); the next stored one must be L + 1; at a gap
 * ingest stops, stores nothing beyond it, and reports the partial ack.
 * *acked_through receives the host's last stored sequence afterwards (the
 * agent drops everything up to it and resends the rest), *stored and
 * *duplicates the counts (either may be NULL).  Adds and changes update the
 * inventory (the path's previous model gets present = 0; the same digest
 * reported again, or back after a removal, keeps its first_seen and gets
 * present = 1 and a new last_seen) and store the
 * fingerprint once per digest; removals close the path's present rows.
 * Any invalid event fails the whole call (-EINVAL, -EBADMSG) with nothing
 * stored; an unknown host is -ENOENT. */
int mp_store_ingest(mp_store *s, const char *host_id, const mp_store_event *events, size_t n,
                    uint64_t *acked_through, size_t *stored, size_t *duplicates, mp_error *err);

/* ---- structure: the blast-radius pre-filter ----------------------------
 *
 * At ingest every fingerprint gets structural columns and an index of its
 * tensor contents, so that blast radius (blast_radius.h) scores only the
 * stored fingerprints that can be related to a target instead of all:
 *
 *   hidden size: lineage evidence (compare.h) compares same-named tensors
 *     whose samples line up, which takes equal row widths, i.e. the same
 *     hidden size.  Every derivation compare recognises keeps it: fine-tunes,
 *     LoRA merges, merges, quantization, reformatting, permutation and
 *     rescaling attacks, vocabulary changes, layer pruning (the zoo's
 *     pruned models drop a block, not width).  Unlike the family hash it
 *     separates the sizes of one family (a 8B model and a 70B one share a
 *     family hash but no tensor compare could line up), and unlike the
 *     arch hash it survives GGUF conversion and vocabulary changes (both
 *     change the arch hash, and the family hash too).
 *   tensor keys: the leading 64 bits of the XXH3-128 content hash of each
 *     large tensor, so that a model holding another one's tensors byte for
 *     byte is found by content whatever its structure says (another name,
 *     a config.json that lies about the width).  Only tensors that identify
 *     a training run count: at least MP_STORE_TENSOR_KEY_MIN_BYTES, at least
 *     2-D, not constant (std 0 with a non-zero norm), not a ".bias" buffer
 *     (GPT-2's causal mask is identical in every GPT-2 checkpoint).
 *     A model is indexed under its MP_STORE_INDEXED_KEYS smallest keys
 *     (bottom-k, as MinHash): every key is a random leaf insert at ingest,
 *     so a 7B model's ~220 would make ingest write-bound, while a query
 *     looks up all of the target's keys: a model whose keyed tensors are a
 *     share p of the target's has its sample hit with probability about
 *     1 - (1 - p)^32 (p = 0.1: 97%); all of them, when it has at most 32. */

#define MP_STORE_TENSOR_KEY_MIN_BYTES (64u << 10)
#define MP_STORE_INDEXED_KEYS 32
#define MP_STORE_MAX_QUERY_KEYS 65536

typedef struct mp_store_structure {
        /* From config.json or GGUF metadata, else the token embedding's row
         * width, else the most frequent row width of the >= 2-D tensors
         * (that of q/k/v/o/gate/up in any transformer naming); 0 when the
         * model has no matrix at all. */
        uint64_t hidden_size;
        uint64_t num_layers;            /* transformer blocks seen in the weights, else config; 0 unknown */
        uint64_t vocab_size;            /* config, else embedding rows; 0 unknown */
        bool has_weights;               /* weight signals with samples: comparable on weights */
} mp_store_structure;

/* The structural columns of a record, as ingest stores them. */
void mp_store_structure_of(const mp_fingerprint *fp, mp_store_structure *ret);

/* Whether tensor t gets a tensor key (the rules above), and its key. */
bool mp_store_tensor_keyed(const Modelprov__V1__TensorDigest *t);
uint64_t mp_store_tensor_key(const Modelprov__V1__TensorDigest *t);

/* The max smallest distinct tensor keys of fp, ascending; returns their
 * number, or -ENOMEM. */
int mp_store_tensor_keys(const mp_fingerprint *fp, uint64_t *keys, size_t max);

/* The digests (32 bytes each, one malloc'd block, sorted, distinct; NULL
 * when there are none) of the stored fingerprints that may be related to a
 * model of the given structure and tensor keys: those indexed under one of
 * keys (at most MP_STORE_MAX_QUERY_KEYS), whatever their structure,
 * and, when structure is non-NULL, those with weights and its hidden size
 * or an unknown one (0: it cannot be ruled out; a structure of hidden size
 * 0 asks for exactly these).  exclude (may be NULL) is left out. */
int mp_store_candidates(mp_store *s, const mp_store_structure *structure, const uint64_t *keys, size_t n_keys,
                        const uint8_t *exclude, uint8_t **ret, size_t *n, mp_error *err);

/* ---- queries ------------------------------------------------------------ */

typedef struct mp_store_host {
        char id[MP_STORE_HOST_ID_SIZE];
        char *hostname;
        char *machine_id;
        char *agent_version;
        char *os;
        int64_t enrolled_at;
        int64_t last_seen;
        uint64_t last_sequence;
        uint64_t model_count;           /* inventory rows still present */
} mp_store_host;

/* Every host, ordered by hostname then id (text compares as bytes on every
 * engine, whatever the database's collation). */
int mp_store_hosts(mp_store *s, mp_store_host **ret, size_t *n, mp_error *err);
/* One host (free with mp_store_hosts_free(h, 1)); -ENOENT when unknown. */
int mp_store_get_host(mp_store *s, const char *host_id, mp_store_host **ret, mp_error *err);
void mp_store_hosts_free(mp_store_host *h, size_t n);

typedef struct mp_store_location {
        char host_id[MP_STORE_HOST_ID_SIZE];
        char *hostname;
        char *path;
        uint8_t model_digest[MP_STORE_DIGEST_SIZE];
        char *model_name;               /* the stored fingerprint's name; "" when none or no record */
        int64_t first_seen;
        int64_t last_seen;
        bool present;
} mp_store_location;

/* Inventory rows of host_id (NULL: every host), only those still present
 * when only_present; ordered by host, path, first_seen. */
int mp_store_inventory(mp_store *s, const char *host_id, bool only_present, mp_store_location **ret,
                       size_t *n, mp_error *err);
/* Inventory rows (present or not) that hold digest, ordered like above. */
int mp_store_locations(mp_store *s, const uint8_t digest[MP_STORE_DIGEST_SIZE], mp_store_location **ret,
                       size_t *n, mp_error *err);
void mp_store_locations_free(mp_store_location *l, size_t n);

typedef struct mp_store_history_entry {
        char host_id[MP_STORE_HOST_ID_SIZE];
        uint64_t sequence;
        mp_store_event_kind kind;
        int64_t observed_at;
        char *path;
        uint8_t model_digest[MP_STORE_DIGEST_SIZE];
        bool has_digest;
        char *finding_kind;             /* NULL unless a finding */
        char *finding_detail;
        char *finding_file;             /* NULL when the agent named none */
        char *match_entry;              /* NULL unless a scan match */
        char *match_verdict;
        char *match_relation;
        double match_score;
} mp_store_history_entry;

/* The stored events of host_id (NULL: all hosts) about path (NULL: any),
 * by host and sequence (for one host: the order it reported them). */
int mp_store_history(mp_store *s, const char *host_id, const char *path, mp_store_history_entry **ret,
                     size_t *n, mp_error *err);
void mp_store_history_free(mp_store_history_entry *h, size_t n);

/* The packed fingerprint record stored for digest (malloc'd); -ENOENT when
 * no host ever reported one. */
int mp_store_fingerprint(mp_store *s, const uint8_t digest[MP_STORE_DIGEST_SIZE], uint8_t **ret, size_t *len,
                         mp_error *err);

/* Blast radius reads thousands of records and locations a query: these
 * fetch many digests per statement instead of one (round trips, not the
 * statements, were its cost).  At most MP_STORE_MAX_FETCH digests a call,
 * 32 bytes each, back to back. */
#define MP_STORE_MAX_FETCH 4096

/* Called with one stored record: digest (32 bytes) and record are valid
 * during the call only, and the callback must not use the store.  A
 * negative return stops the fetch and is returned. */
typedef int (*mp_store_record_cb)(const uint8_t *digest, const uint8_t *record, size_t len, void *userdata);

/* Calls cb for each of the n digests that has a stored record, once per
 * distinct digest, in no particular order; digests without one are
 * skipped (cb never sees them).  -EINVAL when n > MP_STORE_MAX_FETCH. */
int mp_store_fingerprints(mp_store *s, const uint8_t *digests, size_t n, mp_store_record_cb cb, void *userdata,
                          mp_error *err);

/* The scoring record of a fingerprint: the packed record without what
 * blast radius never reads, stored beside the full one at ingest (schema
 * 3; older rows get theirs when the store is opened).  Kept: name, format,
 * model digest, parameter count, tensors, architecture, dtypes, and of the
 * signals the hashes, vocabulary sketch, layer count and has_weights;
 * dropped: files, tokenizer, findings, metadata, and the signals only
 * compare's reference score, its explanation or its metadata evidence use
 * (MFI and TFV JSON, EAS anchors and self-similarity, END, NLF, LEP) --
 * about 12 of 29 KB.  Blast radius compares it exactly as the full record
 * (identity score, verdict, relation, tensor evidence: compare.h).  The
 * packed bytes (malloc'd) in *ret; -ENOMEM. */
int mp_store_scoring_record(const mp_fingerprint *fp, uint8_t **ret, size_t *len);

/* As mp_store_fingerprints(), but each digest's scoring record, or its
 * full record where none is stored (a store not yet re-indexed). */
int mp_store_scoring_records(mp_store *s, const uint8_t *digests, size_t n, mp_store_record_cb cb, void *userdata,
                             mp_error *err);

/* The inventory rows (present or not) holding any of the n digests,
 * ordered by model digest (bytes), then host, path and first_seen: each
 * model's rows in mp_store_locations() order, one run per digest.
 * -EINVAL when n > MP_STORE_MAX_FETCH. */
int mp_store_locations_of(mp_store *s, const uint8_t *digests, size_t n, mp_store_location **ret, size_t *n_ret,
                          mp_error *err);

/* The ids of the hosts that name calls themselves or whose id it is (a
 * hostname may be shared), ordered by id, as one malloc'd array (NULL when
 * none).  name: clean text of at most MP_STORE_MAX_IDENT bytes. */
int mp_store_find_hosts(mp_store *s, const char *name, char (**ret)[MP_STORE_HOST_ID_SIZE], size_t *n,
                        mp_error *err);

/* The inventory rows (present or not) of host_id at path, ordered by
 * first_seen: one keyed lookup, whatever the size of the host's inventory. */
int mp_store_inventory_at(mp_store *s, const char *host_id, const char *path, mp_store_location **ret, size_t *n,
                          mp_error *err);

/* The structural pre-filter for blast radius: only fingerprints whose
 * extracted columns match are handed to the callback.  NULL/0 = any. */
typedef struct mp_store_fingerprint_filter {
        const char *arch_hash;
        const char *family_hash;
        uint64_t min_params;
        uint64_t max_params;            /* 0: no upper bound */
        uint64_t hidden_size;           /* 0: any */
} mp_store_fingerprint_filter;

typedef struct mp_store_fingerprint_info {
        const uint8_t *digest;          /* 32 bytes */
        const char *name;               /* "" when the record had none */
        const char *format;
        const char *arch_hash;
        const char *family_hash;
        uint64_t params;
        uint64_t n_tensors;
        mp_store_structure structure;
        const uint8_t *record;
        size_t record_len;
} mp_store_fingerprint_info;

/* Calls cb for each stored fingerprint passing filter (may be NULL), in
 * digest order; the info is valid during the call only, and cb may run
 * other queries on s (not writes).  A negative return
 * of cb stops and is returned, a positive one stops and 0 is returned. */
typedef int (*mp_store_fingerprint_cb)(const mp_store_fingerprint_info *info, void *userdata);
int mp_store_foreach_fingerprint(mp_store *s, const mp_store_fingerprint_filter *filter, mp_store_fingerprint_cb cb,
                                 void *userdata, mp_error *err);

/* ---- catalog distribution ----------------------------------------------- */

/* Replaces the current reference catalog with the SQLite catalog file bytes
 * (checked for the SQLite header, at most MP_STORE_MAX_CATALOG).  Its
 * version is the hex SHA-256 of the bytes, written to version_out. */
int mp_store_put_catalog(mp_store *s, const uint8_t *bytes, size_t len,
                         char version_out[MP_STORE_CATALOG_VERSION_SIZE], mp_error *err);
/* The current catalog: version always, the bytes (malloc'd) when ret is
 * non-NULL.  -ENOENT when none was put. */
int mp_store_get_catalog(mp_store *s, uint8_t **ret, size_t *len,
                         char version_out[MP_STORE_CATALOG_VERSION_SIZE], mp_error *err);
