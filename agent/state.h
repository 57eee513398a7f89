/* state.h - the agent's state DB: what it knows about the files and models
 * on this host, and the identity it enrolled with.
 *
 * One SQLite file (default /var/lib/modelprov/state.db, WAL mode,
 * synchronous=FULL, mode 0600 in a 0700 directory because it holds the
 * host key).  Tables:
 *   meta      key/value: schema version, host_id, host_key, acked_through,
 *             sent_through, last_contact (unix ms), last_error, collector,
 *             catalog_version, agent_version, ...
 *   roots     the watch roots and whether each exists / is watched
 *   files     path → (dev, ino, size, mtime_ns, ctime_ns) → sha256 and the
 *             model root it belongs to; the "is it unchanged?" check
 *   models    model root → digest, name, format, layout, the packed
 *             fingerprint record (the stored parts a model is rebuilt from
 *             when one of its files changes), first/last change
 *   findings  (path, kind, detail) → first seen; reported once
 *   outbox    see outbox.h
 *
 * Every change that the collector must hear about is made together with its
 * outbox event in one transaction (agent_state_commit_model() and friends),
 * so a crash (kill -9, power loss) either loses both or neither.
 *
 * Threads: an agent_state handle is used by one thread at a time.  The agent
 * opens one handle per thread (the event loop, each worker, the reporter);
 * SQLite serialises writers (busy timeout), WAL lets readers run alongside.
 * `modelprov status` opens the file read-only (agent_state_open_readonly()),
 * which never writes and never creates it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fingerprint/record.h"
#include "formats/model.h"
#include "util/error.h"

#define AGENT_STATE_DEFAULT_DIR "/var/lib/modelprov"
#define AGENT_STATE_FILE "state.db"

typedef struct agent_state agent_state;

/* meta keys shared by the agent's parts and `modelprov status`. */
#define AGENT_META_HOST_ID "host_id"
#define AGENT_META_HOST_KEY "host_key"                 /* never printed */
#define AGENT_META_ACKED_THROUGH "acked_through"
#define AGENT_META_SENT_THROUGH "sent_through"
#define AGENT_META_LAST_CONTACT "last_contact"         /* unix ms */
#define AGENT_META_LAST_ERROR "last_error"
#define AGENT_META_LAST_ERROR_AT "last_error_at"       /* unix ms */
#define AGENT_META_COLLECTOR "collector"
#define AGENT_META_CATALOG_VERSION "catalog_version"
#define AGENT_META_AGENT_VERSION "agent_version"

/* What identifies a file's content without reading it.  A file at the same
 * path must match all five fields (agent_file_stat_identical()): writing
 * bytes and then setting the mtime back still moves the ctime, and that is
 * the tampering this tool exists to notice.  A file found under another
 * path (renamed, hard-linked) is matched without the ctime
 * (agent_file_stat_same()), because rename changes it on ext4. */
typedef struct agent_file_stat {
        uint64_t dev;
        uint64_t ino;
        uint64_t size;
        int64_t mtime_ns;
        int64_t ctime_ns;
} agent_file_stat;

void agent_file_stat_from(agent_file_stat *fs, const struct stat *st);
bool agent_file_stat_same(const agent_file_stat *a, const agent_file_stat *b);
bool agent_file_stat_identical(const agent_file_stat *a, const agent_file_stat *b);

/* A file row. */
typedef struct agent_file {
        char *path;
        agent_file_stat stat;
        bool has_sha256;
        uint8_t sha256[32];
        char *model_root;               /* NULL: not (yet) part of a model */
} agent_file;

void agent_file_done(agent_file *f);

/* Opens (creating or migrating) the state DB at path, for the agent.
 * Creates the file mode 0600.  -errno with err filled. */
int agent_state_open(const char *path, agent_state **ret, mp_error *err);
/* Opens an existing state DB for reading only (modelprov status).  -ENOENT
 * when there is none. */
int agent_state_open_readonly(const char *path, agent_state **ret, mp_error *err);
void agent_state_close(agent_state *s);
static inline void agent_state_closep(agent_state **s) {
        if (*s)
                agent_state_close(*s);
}

/* "PRAGMA integrity_check" == ok: 0, else -EUCLEAN with the first problem. */
int agent_state_check(agent_state *s, mp_error *err);

/* meta: strings; *ret is NULL (and 0 returned) when the key is absent. */
int agent_state_get_meta(agent_state *s, const char *key, char **ret);
int agent_state_set_meta(agent_state *s, const char *key, const char *value);
int agent_state_get_meta_u64(agent_state *s, const char *key, uint64_t *ret);   /* absent: 0 */
int agent_state_set_meta_u64(agent_state *s, const char *key, uint64_t value);

/* files */
int agent_state_get_file(agent_state *s, const char *path, agent_file *ret);     /* -ENOENT if unknown */
/* A file with this exact content identity (dev, ino, size, mtime) anywhere:
 * a renamed or hard-linked file keeps its digest without a re-read. */
int agent_state_find_file_by_stat(agent_state *s, const agent_file_stat *fs, agent_file *ret);
/* Calls cb for every file row (startup: the event loop loads them into a
 * hash in one query). */
int agent_state_foreach_file(agent_state *s, int (*cb)(void *userdata, const agent_file *f), void *userdata);

/* models */
typedef struct agent_model {
        char *root;
        uint8_t digest[32];
        char *name;
        char *layout;                   /* mp_layout_name() */
        char *format;                   /* mp_format_name() */
        uint64_t bytes;                 /* sum of its file sizes */
        int64_t first_seen;             /* unix ms */
        int64_t changed_at;             /* unix ms */
} agent_model;

void agent_model_done(agent_model *m);

/* The stored record of the model at root (NULL and -ENOENT if none). */
int agent_state_get_model(agent_state *s, const char *root, agent_model *ret, mp_fingerprint **ret_fp);
int agent_state_foreach_model(agent_state *s, int (*cb)(void *userdata, const agent_model *m), void *userdata);
/* Model roots that own files under dir (prefix + '/'), or that are dir. */
int agent_state_models_under(agent_state *s, const char *dir, char ***ret_roots, size_t *ret_n);

/* The result of fingerprinting one model, committed in one transaction:
 * the models row (ADDED when new, CHANGED when the digest moved, nothing
 * new when it is the same digest), its files rows (every file of the model
 * with its stat and sha256; rows of files that left the model are
 * detached), the findings not reported before, and an outbox event for each
 * of those changes.  *ret_kind receives what happened: 0 (unchanged),
 * AGENT_MODEL_ADDED or AGENT_MODEL_CHANGED. */
enum {
        AGENT_MODEL_UNCHANGED = 0,
        AGENT_MODEL_ADDED = 1,
        AGENT_MODEL_CHANGED = 2,
        AGENT_MODEL_REMOVED = 3,
};
typedef struct agent_model_result {
        const char *root;
        const mp_model *model;          /* files (with sha256), findings, name, layout */
        const mp_fingerprint *fingerprint;
        const agent_file_stat *file_stats;      /* one per model->files[i], taken before reading */
        int64_t observed_at;            /* unix ms */
} agent_model_result;

int agent_state_commit_model(agent_state *s, const agent_model_result *r, int *ret_kind, mp_error *err);

/* The model at root is gone (its root vanished, or no longer opens as a
 * model): deletes its row and its files' rows and queues MODEL_REMOVED.
 * -ENOENT when there was no such model (nothing queued). */
int agent_state_remove_model(agent_state *s, const char *root, int64_t observed_at, mp_error *err);

/* A file that is not a usable model but worth telling (unparseable,
 * hostile): stored and queued as a FINDING once per (path, kind, detail).
 * Returns 1 when new (queued), 0 when already known. */
int agent_state_add_finding(agent_state *s, const char *path, mp_finding_kind kind, const char *detail,
                            int64_t observed_at, mp_error *err);
/* Forgets findings for path (the file was fixed or removed), so they are
 * reported again if they come back. */
int agent_state_clear_findings(agent_state *s, const char *path);

/* A local scan hit against the configured catalog, queued as SCAN_MATCH;
 * once per (root, digest, entry). Returns 1 when new. */
int agent_state_add_scan_match(agent_state *s, const char *root, const uint8_t digest[32], const char *entry,
                               const char *verdict, double score, const char *relation, int64_t observed_at,
                               mp_error *err);

/* Drops files rows for paths that are gone (not part of any model any
 * more): path exactly, or everything under it when it was a directory. */
int agent_state_forget_files(agent_state *s, const char *path);

/* Counts for STATUS= and `modelprov status`. */
typedef struct agent_state_counts {
        uint64_t files;
        uint64_t models;
        uint64_t findings;
        uint64_t outbox_pending;
        uint64_t outbox_bytes;
        int64_t outbox_oldest;          /* unix ms the oldest pending event was observed; 0: none */
        uint64_t roots;
} agent_state_counts;
int agent_state_counts_get(agent_state *s, agent_state_counts *ret);

/* The watch roots, for `modelprov status`: replaces the roots table with
 * roots (NULL-terminated) and whether each exists (and so is watched). */
int agent_state_set_roots(agent_state *s, const char *const *roots, const bool *exists);
typedef struct agent_root {
        const char *path;
        bool exists;
        int64_t updated_at;             /* unix ms of the agent_state_set_roots() */
} agent_root;
int agent_state_foreach_root(agent_state *s, int (*cb)(void *userdata, const agent_root *r), void *userdata);

/* The findings reported so far, by path. */
typedef struct agent_finding {
        const char *path;
        const char *kind;               /* mp_finding_kind_name() */
        const char *detail;
        int64_t first_seen;             /* unix ms */
} agent_finding;
int agent_state_foreach_finding(agent_state *s, int (*cb)(void *userdata, const agent_finding *f),
                                void *userdata);

/* The underlying connection (outbox.c, tests). */
struct sqlite3 *agent_state_db(agent_state *s);
