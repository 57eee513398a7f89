/* store_engine.h - what a storage engine implements (private to collector/).
 *
 * store.c validates every argument against the limits in store.h, unpacks
 * fingerprint records, extracts their pre-filter columns, generates host ids
 * and orders ingest batches; an engine receives only validated input and
 * owns nothing but the persistence.  An engine's handle type embeds
 * struct mp_store as its first member. */
#pragma once

#include "collector/store.h"

struct mp_store {
        const struct mp_store_engine *engine;
        struct mp_store *helpers[MP_STORE_MAX_HELPERS];        /* store.c's, see mp_store_helper() */
};

/* The pre-filter columns of a record, pointing into memory that lives as
 * long as the ingest (or re-index) call. */
typedef struct mp_store_fp_columns {
        const char *name;
        const char *format;
        const char *arch_hash;          /* NULL when the record has no signals */
        const char *family_hash;
        uint64_t params;
        uint64_t n_tensors;
        mp_store_structure structure;
        const uint64_t *keys;           /* tensor keys (store.h), distinct */
        size_t n_keys;
        const uint8_t *scoring;         /* the scoring record (store.h) */
        size_t scoring_len;
} mp_store_fp_columns;

/* A stored fingerprint whose columns store.c extracted again (stores
 * written before the columns existed). */
typedef struct mp_store_fp_index {
        uint8_t digest[MP_STORE_DIGEST_SIZE];
        mp_store_fp_columns fp;
} mp_store_fp_index;

/* A validated event; items reach the engine sorted by sequence. */
typedef struct mp_store_item {
        const mp_store_event *ev;
        bool has_digest;                /* model_digest is not all zero */
        mp_store_fp_columns fp;         /* meaningful when ev->record */
} mp_store_item;

typedef struct mp_store_engine {
        const char *scheme;             /* the URL prefix before ':' */
        const char *alias;              /* another scheme of the same engine, or NULL */
        int (*open)(const char *location, mp_store **ret, mp_error *err);
        int (*open_another)(mp_store *s, mp_store **ret, mp_error *err);
        void (*close)(mp_store *s);
        int (*schema_version)(mp_store *s);

        /* new_id: a fresh UUID used only when machine_id is new. */
        int (*enroll)(mp_store *s, const mp_host_info *info, const uint8_t key_hash[MP_STORE_DIGEST_SIZE],
                      const char *new_id, int64_t now_ms, char host_id_out[MP_STORE_HOST_ID_SIZE], mp_error *err);
        int (*host_key_hash)(mp_store *s, const char *host_id, uint8_t out[MP_STORE_DIGEST_SIZE], mp_error *err);
        int (*heartbeat)(mp_store *s, const char *host_id, const char *agent_version, int64_t now_ms,
                         mp_error *err);
        int (*ingest)(mp_store *s, const char *host_id, const mp_store_item *items, size_t n, int64_t now_ms,
                      uint64_t *acked_through, size_t *stored, size_t *duplicates, mp_error *err);

        /* Every host, or only host_id (-ENOENT when unknown). */
        int (*hosts)(mp_store *s, const char *host_id, mp_store_host **ret, size_t *n, mp_error *err);
        /* Inventory rows filtered by host_id and present (each NULL/false:
         * no filter) or, when digest is non-NULL, every row holding it. */
        int (*inventory)(mp_store *s, const char *host_id, bool only_present, const uint8_t *digest,
                         mp_store_location **ret, size_t *n, mp_error *err);
        int (*history)(mp_store *s, const char *host_id, const char *path, mp_store_history_entry **ret,
                       size_t *n, mp_error *err);
        int (*fingerprint)(mp_store *s, const uint8_t digest[MP_STORE_DIGEST_SIZE], uint8_t **ret, size_t *len,
                           mp_error *err);
        /* See store.h; n <= MP_STORE_MAX_FETCH, digests sorted and
         * distinct; scoring: the scoring records (else the full ones). */
        int (*fingerprints)(mp_store *s, const uint8_t *digests, size_t n, bool scoring, mp_store_record_cb cb,
                            void *userdata, mp_error *err);
        int (*locations_of)(mp_store *s, const uint8_t *digests, size_t n, mp_store_location **ret, size_t *n_ret,
                            mp_error *err);
        int (*find_hosts)(mp_store *s, const char *name, char (**ret)[MP_STORE_HOST_ID_SIZE], size_t *n,
                          mp_error *err);
        int (*inventory_at)(mp_store *s, const char *host_id, const char *path, mp_store_location **ret, size_t *n,
                            mp_error *err);
        int (*foreach_fingerprint)(mp_store *s, const mp_store_fingerprint_filter *filter,
                                   mp_store_fingerprint_cb cb, void *userdata, mp_error *err);
        /* See mp_store_candidates(); keys may hold duplicates. */
        int (*candidates)(mp_store *s, const mp_store_structure *structure, const uint64_t *keys, size_t n_keys,
                          const uint8_t *exclude, uint8_t **ret, size_t *n, mp_error *err);
        /* Up to max stored fingerprints whose columns were never extracted
         * (info: digest and record only); cb as for foreach_fingerprint. */
        int (*unindexed)(mp_store *s, size_t max, mp_store_fingerprint_cb cb, void *userdata, mp_error *err);
        /* Stores the extracted columns of n stored fingerprints (and their
         * scoring records), in one transaction. */
        int (*set_index)(mp_store *s, const mp_store_fp_index *items, size_t n, mp_error *err);

        int (*put_catalog)(mp_store *s, const uint8_t *bytes, size_t len, const char *version, int64_t now_ms,
                           mp_error *err);
        int (*get_catalog)(mp_store *s, uint8_t **ret, size_t *len, char version_out[MP_STORE_CATALOG_VERSION_SIZE],
                           mp_error *err);
} mp_store_engine;

/* The run of a batch (items sorted by sequence) that continues a host's
 * stream after its last stored sequence: an item at or below the sequence
 * reached is a duplicate (a replay, or a sequence twice in the batch: the
 * first copy wins), a gap ends the run (the agent resends from the ack).
 * Points take[0..] (room for n) at the run's items, returns how many, and
 * counts the duplicates before the gap in *duplicates. */
size_t mp_store_ingest_run(const mp_store_item *items, size_t n, uint64_t last, const mp_store_item **take,
                           size_t *duplicates);

extern const mp_store_engine mp_store_sqlite_engine;
extern const mp_store_engine mp_store_postgres_engine;

/* Where a URL holds a password: the part of its userinfo after ':' and the
 * value of each "password=" query parameter.  Fills up to max spans and
 * returns how many there are (more than max: the caller must not trust
 * its redaction). */
typedef struct mp_store_span {
        size_t offset, length;
} mp_store_span;
size_t mp_store_url_secrets(const char *url, mp_store_span *spans, size_t max);
