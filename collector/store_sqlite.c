/* store_sqlite.c - the SQLite engine of the collector's store ("sqlite:PATH",
 * see store.h and store_engine.h).
 *
 * One file in WAL mode, so query clients read while agents' batches commit,
 * and several collector processes may share it (writers queue on the busy
 * timeout).  synchronous=FULL: an acknowledged batch survives power loss, not
 * only a killed process.  The schema is versioned with PRAGMA user_version
 * and upgraded by the migrations below, each step in one transaction.
 * Statements of the hot paths are prepared once per handle and reused. */
#include <assert.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "collector/store_engine.h"
#include "util/macro.h"
#include "util/sqlite_util.h"

/* PRAGMA application_id "mpco": tells a store from the catalog ("mpca") and
 * from any other SQLite database. */
#define STORE_APPLICATION_ID 0x6d70636f
#define STORE_BUSY_TIMEOUT_MS 10000
/* How often opening retries a lock SQLite would not wait for (below). */
#define STORE_OPEN_RETRY_MS 5

/* ---- schema ------------------------------------------------------------- */

/* migrations[i] takes a store from schema version i to i + 1.  Append only:
 * a released step is never edited. */
static const char *const migrations[] = {
        /* 1: hosts, their event streams, inventory, fingerprints, catalog. */
        "CREATE TABLE hosts ("
        "  id TEXT PRIMARY KEY NOT NULL,"
        "  machine_id TEXT UNIQUE NOT NULL,"
        "  hostname TEXT NOT NULL,"
        "  agent_version TEXT NOT NULL,"
        "  os TEXT NOT NULL,"
        "  key_hash BLOB NOT NULL CHECK (length(key_hash) = 32),"
        "  enrolled_at INTEGER NOT NULL,"
        "  last_seen INTEGER NOT NULL,"
        "  last_seq INTEGER NOT NULL CHECK (last_seq >= 0));"
        "CREATE TABLE fingerprints ("
        "  digest BLOB PRIMARY KEY NOT NULL CHECK (length(digest) = 32),"
        "  record BLOB NOT NULL,"
        "  name TEXT NOT NULL,"
        "  format TEXT NOT NULL,"
        "  arch_hash TEXT,"
        "  family_hash TEXT,"
        "  params INTEGER NOT NULL,"
        "  n_tensors INTEGER NOT NULL,"
        "  first_seen INTEGER NOT NULL);"
        "CREATE INDEX fingerprints_arch ON fingerprints(arch_hash, params);"
        "CREATE INDEX fingerprints_family ON fingerprints(family_hash, params);"
        "CREATE TABLE events ("
        "  host_id TEXT NOT NULL REFERENCES hosts(id),"
        "  seq INTEGER NOT NULL CHECK (seq > 0),"
        "  kind TEXT NOT NULL CHECK (kind IN ('model-added', 'model-changed', 'model-removed', 'finding',"
        "                                     'scan-match')),"
        "  observed_at INTEGER NOT NULL,"
        "  path TEXT NOT NULL,"
        "  model_digest BLOB CHECK (model_digest IS NULL OR length(model_digest) = 32),"
        "  finding_kind TEXT,"
        "  finding_detail TEXT,"
        "  match_entry TEXT,"
        "  match_verdict TEXT,"
        "  match_relation TEXT,"
        "  match_score REAL,"
        "  PRIMARY KEY (host_id, seq)) WITHOUT ROWID;"
        "CREATE INDEX events_path ON events(path);"
        "CREATE TABLE inventory ("
        "  host_id TEXT NOT NULL REFERENCES hosts(id),"
        "  path TEXT NOT NULL,"
        "  model_digest BLOB NOT NULL CHECK (length(model_digest) = 32),"
        "  first_seen INTEGER NOT NULL,"
        "  last_seen INTEGER NOT NULL,"
        "  present INTEGER NOT NULL CHECK (present IN (0, 1)),"
        "  PRIMARY KEY (host_id, path, model_digest)) WITHOUT ROWID;"
        "CREATE INDEX inventory_digest ON inventory(model_digest);"
        "CREATE TABLE catalog ("
        "  id INTEGER PRIMARY KEY CHECK (id = 1),"
        "  version TEXT NOT NULL,"
        "  uploaded_at INTEGER NOT NULL,"
        "  data BLOB NOT NULL);",

        /* 2: the blast-radius pre-filter (store.h "structure"): structural
         * columns and tensor keys.  The table is rebuilt rather than
         * altered so that the record comes last: SQLite reads a column
         * after a large blob only by walking the blob's overflow pages, and
         * the candidate query and the inventory's model names read the
         * small columns of thousands of rows.  Rows copied from version 1
         * have indexed = 0 until store.c has extracted their columns (the
         * same open, right after this step, or the next if it failed);
         * until then they count as unknown structure (hidden size 0, with
         * weights), so they stay candidates of every query. */
        "CREATE TABLE fingerprints2 ("
        "  digest BLOB PRIMARY KEY NOT NULL CHECK (length(digest) = 32),"
        "  name TEXT NOT NULL,"
        "  format TEXT NOT NULL,"
        "  arch_hash TEXT,"
        "  family_hash TEXT,"
        "  params INTEGER NOT NULL,"
        "  n_tensors INTEGER NOT NULL,"
        "  first_seen INTEGER NOT NULL,"
        "  hidden_size INTEGER NOT NULL DEFAULT 0 CHECK (hidden_size >= 0),"
        "  num_layers INTEGER NOT NULL DEFAULT 0,"
        "  vocab_size INTEGER NOT NULL DEFAULT 0,"
        "  has_weights INTEGER NOT NULL DEFAULT 1 CHECK (has_weights IN (0, 1)),"
        "  indexed INTEGER NOT NULL DEFAULT 0 CHECK (indexed IN (0, 1)),"
        "  record BLOB NOT NULL);"
        "INSERT INTO fingerprints2 (digest, name, format, arch_hash, family_hash, params, n_tensors, first_seen,"
        "                           record)"
        "  SELECT digest, name, format, arch_hash, family_hash, params, n_tensors, first_seen, record"
        "  FROM fingerprints;"
        "DROP TABLE fingerprints;"
        "ALTER TABLE fingerprints2 RENAME TO fingerprints;"
        "CREATE INDEX fingerprints_arch ON fingerprints(arch_hash, params);"
        "CREATE INDEX fingerprints_family ON fingerprints(family_hash, params);"
        /* Covering: the candidate query never touches the table. */
        "CREATE INDEX fingerprints_hidden ON fingerprints(hidden_size, has_weights, digest);"
        "CREATE INDEX fingerprints_unindexed ON fingerprints(digest) WHERE indexed = 0;"
        /* key: the leading 64 bits of a tensor's XXH3-128, as a signed
         * integer.  No foreign key: fingerprints are never deleted, and the
         * check would cost a lookup per key at ingest. */
        "CREATE TABLE tensor_keys ("
        "  key INTEGER NOT NULL,"
        "  digest BLOB NOT NULL CHECK (length(digest) = 32),"
        "  PRIMARY KEY (key, digest)) WITHOUT ROWID;",

        /* 3: blast radius reads the inventory rows of thousands of models a
         * query (mp_store_locations_of()): an index holding every column
         * those reads need, in their order (digest, host, path, first
         * seen), so that they neither visit the table nor sort.  It
         * replaces inventory_digest, its prefix. */
        "CREATE INDEX inventory_digest_rows ON inventory(model_digest, host_id, path, first_seen, last_seen,"
        "  present);"
        "DROP INDEX inventory_digest;"
        /* Scoring records (store.h): what blast radius reads of each
         * candidate, less than half its record.  A table of their own, as
         * a column after the record would be reached through the
         * record's overflow pages.  Rows stored before get theirs from
         * store.c's re-indexing, right after this step. */
        "CREATE TABLE scoring_records ("
        "  digest BLOB PRIMARY KEY NOT NULL CHECK (length(digest) = 32),"
        "  record BLOB NOT NULL);"
        "UPDATE fingerprints SET indexed = 0;"
        /* A finding's file inside the model (the agent reports it). */
        "ALTER TABLE events ADD COLUMN finding_file TEXT;",

        /* 4: nothing on SQLite.  PostgreSQL's step 4 stores its scoring
         * records in parts (store_postgres.c); taking the step here too
         * keeps one version number meaning one schema on both engines. */
        "",
};

#define STORE_SCHEMA_VERSION ((int) ELEMENTSOF(migrations))

/* ---- cached statements -------------------------------------------------- */

typedef enum stmt_id {
        ST_BEGIN,
        ST_COMMIT,
        ST_ROLLBACK,
        ST_HOST_BY_MACHINE,
        ST_HOST_INSERT,
        ST_HOST_REENROLL,
        ST_HOST_KEY,
        ST_HOST_HEARTBEAT,
        ST_HOST_SEQ,
        ST_HOST_ADVANCE,
        ST_EVENT_INSERT,
        ST_FP_INSERT,
        ST_KEY_INSERT,
        ST_SCORING_INSERT,
        ST_FP_SET_INDEX,
        ST_UNINDEXED,
        ST_CANDIDATES_HIDDEN,
        ST_CANDIDATES_KEY,
        ST_INV_CLOSE_OTHERS,
        ST_INV_UPSERT,
        ST_INV_CLOSE_PATH,
        ST_HOSTS,
        ST_INVENTORY,
        ST_LOCATIONS,
        ST_HISTORY,
        ST_FINGERPRINT,
        ST_FIND_HOSTS,
        ST_INVENTORY_AT,
        ST_CATALOG_PUT,
        ST_CATALOG_GET,
        ST_CATALOG_VERSION,
        _ST_MAX,
} stmt_id;

static const char *const stmt_sql[_ST_MAX] = {
        [ST_BEGIN] = "BEGIN IMMEDIATE",
        [ST_COMMIT] = "COMMIT",
        [ST_ROLLBACK] = "ROLLBACK",
        [ST_HOST_BY_MACHINE] = "SELECT id FROM hosts WHERE machine_id = ?1",
        [ST_HOST_INSERT] = "INSERT INTO hosts (id, machine_id, hostname, agent_version, os, key_hash, enrolled_at,"
                           " last_seen, last_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, 0)",
        [ST_HOST_REENROLL] = "UPDATE hosts SET hostname = ?2, agent_version = ?3, os = ?4, key_hash = ?5,"
                             " last_seen = max(last_seen, ?6) WHERE id = ?1",
        [ST_HOST_KEY] = "SELECT key_hash FROM hosts WHERE id = ?1",
        [ST_HOST_HEARTBEAT] = "UPDATE hosts SET agent_version = ?2, last_seen = max(last_seen, ?3) WHERE id = ?1",
        [ST_HOST_SEQ] = "SELECT last_seq FROM hosts WHERE id = ?1",
        [ST_HOST_ADVANCE] = "UPDATE hosts SET last_seq = ?2, last_seen = max(last_seen, ?3) WHERE id = ?1",
        [ST_EVENT_INSERT] = "INSERT INTO events (host_id, seq, kind, observed_at, path, model_digest, finding_kind,"
                            " finding_detail, match_entry, match_verdict, match_relation, match_score, finding_file)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        [ST_FP_INSERT] = "INSERT OR IGNORE INTO fingerprints (digest, record, name, format, arch_hash, family_hash,"
                         " params, n_tensors, first_seen, hidden_size, num_layers, vocab_size, has_weights, indexed)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 1)",
        [ST_KEY_INSERT] = "INSERT OR IGNORE INTO tensor_keys (key, digest) VALUES (?1, ?2)",
        [ST_SCORING_INSERT] = "INSERT OR IGNORE INTO scoring_records (digest, record) VALUES (?1, ?2)",
        [ST_FP_SET_INDEX] = "UPDATE fingerprints SET hidden_size = ?2, num_layers = ?3, vocab_size = ?4,"
                            " has_weights = ?5, indexed = 1 WHERE digest = ?1",
        [ST_UNINDEXED] = "SELECT digest, record FROM fingerprints WHERE indexed = 0 ORDER BY digest LIMIT ?1",
        /* Two statements, each on its index; store.c's caller merges. */
        [ST_CANDIDATES_HIDDEN] = "SELECT digest FROM fingerprints WHERE hidden_size = ?1 AND has_weights = 1",
        [ST_CANDIDATES_KEY] = "SELECT digest FROM tensor_keys WHERE key = ?1",
        [ST_INV_CLOSE_OTHERS] = "UPDATE inventory SET present = 0, last_seen = max(last_seen, ?4)"
                                " WHERE host_id = ?1 AND path = ?2 AND model_digest <> ?3 AND present = 1",
        [ST_INV_UPSERT] = "INSERT INTO inventory (host_id, path, model_digest, first_seen, last_seen, present)"
                          " VALUES (?1, ?2, ?3, ?4, ?4, 1) ON CONFLICT (host_id, path, model_digest)"
                          " DO UPDATE SET present = 1, last_seen = max(last_seen, excluded.last_seen)",
        [ST_INV_CLOSE_PATH] = "UPDATE inventory SET present = 0, last_seen = max(last_seen, ?3)"
                              " WHERE host_id = ?1 AND path = ?2 AND present = 1",
        [ST_HOSTS] = "SELECT h.id, h.hostname, h.machine_id, h.agent_version, h.os, h.enrolled_at, h.last_seen,"
                     " h.last_seq, (SELECT count(*) FROM inventory i WHERE i.host_id = h.id AND i.present = 1)"
                     " FROM hosts h WHERE ?1 IS NULL OR h.id = ?1 ORDER BY h.hostname, h.id",
        [ST_INVENTORY] = "SELECT i.host_id, h.hostname, i.path, i.model_digest, i.first_seen, i.last_seen, i.present,"
                         " coalesce(f.name, '')"
                         " FROM inventory i JOIN hosts h ON h.id = i.host_id"
                         " LEFT JOIN fingerprints f ON f.digest = i.model_digest"
                         " WHERE (?1 IS NULL OR i.host_id = ?1) AND (?2 = 0 OR i.present = 1)"
                         " ORDER BY i.host_id, i.path, i.first_seen",
        [ST_LOCATIONS] = "SELECT i.host_id, h.hostname, i.path, i.model_digest, i.first_seen, i.last_seen, i.present,"
                         " coalesce(f.name, '')"
                         " FROM inventory i JOIN hosts h ON h.id = i.host_id"
                         " LEFT JOIN fingerprints f ON f.digest = i.model_digest WHERE i.model_digest = ?1"
                         " ORDER BY i.host_id, i.path, i.first_seen",
        [ST_HISTORY] = "SELECT host_id, seq, kind, observed_at, path, model_digest, finding_kind, finding_detail,"
                       " match_entry, match_verdict, match_relation, match_score, finding_file FROM events"
                       " WHERE (?1 IS NULL OR host_id = ?1) AND (?2 IS NULL OR path = ?2) ORDER BY host_id, seq",
        [ST_FINGERPRINT] = "SELECT record FROM fingerprints WHERE digest = ?1",
        [ST_FIND_HOSTS] = "SELECT id FROM hosts WHERE id = ?1 OR hostname = ?1 ORDER BY id",
        /* The inventory key's prefix (host_id, path). */
        [ST_INVENTORY_AT] = "SELECT i.host_id, h.hostname, i.path, i.model_digest, i.first_seen, i.last_seen,"
                            " i.present, coalesce(f.name, '')"
                            " FROM inventory i JOIN hosts h ON h.id = i.host_id"
                            " LEFT JOIN fingerprints f ON f.digest = i.model_digest"
                            " WHERE i.host_id = ?1 AND i.path = ?2 ORDER BY i.first_seen, i.model_digest",
        [ST_CATALOG_PUT] = "INSERT OR REPLACE INTO catalog (id, version, uploaded_at, data) VALUES (1, ?1, ?2, ?3)",
        [ST_CATALOG_GET] = "SELECT version, data FROM catalog WHERE id = 1",
        [ST_CATALOG_VERSION] = "SELECT version FROM catalog WHERE id = 1",
};

/* Statements over a list of digests (store.h "fetch many"): "IN (?, ?,
 * ...)" with IN_CHUNK placeholders, those a call does not fill left NULL
 * (which match nothing).  SQLite has no array parameter, and one prepared
 * shape beats preparing a statement per list length. */
#define IN_CHUNK 256

typedef enum in_stmt_id {
        IN_RECORDS,
        IN_SCORING,
        IN_LOCATIONS,
        _IN_MAX,
} in_stmt_id;

static const struct {
        const char *head, *tail;
} in_sql[_IN_MAX] = {
        [IN_RECORDS] = { "SELECT digest, record FROM fingerprints WHERE digest IN (", ")" },
        /* coalesce() reads the full record only where no scoring record
         * is stored. */
        [IN_SCORING] = { "SELECT f.digest, coalesce(s.record, f.record) FROM fingerprints f"
                         " LEFT JOIN scoring_records s ON s.digest = f.digest WHERE f.digest IN (", ")" },
        [IN_LOCATIONS] = { "SELECT i.host_id, h.hostname, i.path, i.model_digest, i.first_seen, i.last_seen,"
                           " i.present, coalesce(f.name, '')"
                           " FROM inventory i JOIN hosts h ON h.id = i.host_id"
                           " LEFT JOIN fingerprints f ON f.digest = i.model_digest WHERE i.model_digest IN (",
                           ") ORDER BY i.model_digest, i.host_id, i.path, i.first_seen" },
};

typedef struct sqlite_store {
        struct mp_store base;
        sqlite3 *db;
        char *path;
        int version;
        sqlite3_stmt *stmts[_ST_MAX];
        sqlite3_stmt *in_stmts[_IN_MAX];
} sqlite_store;

static sqlite_store *impl(mp_store *s) {
        assert(s && s->engine == &mp_store_sqlite_engine);
        return (sqlite_store *) s;
}


/* ---- errors ------------------------------------------------------------- */


/* Fills err for SQLite result code rc while doing `what`, in words for an
 * operator rather than a database person; returns the errno. */
static int sql_error(const sqlite_store *st, int rc, const char *what, mp_error *err) {
        const char *detail;
        switch (rc & 0xff) {
        case SQLITE_NOTADB:
                detail = "not a modelprov store (not an SQLite database)";
                break;
        case SQLITE_CORRUPT:
                detail = "the store file is corrupt";
                break;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                detail = "the store stayed locked by another writer beyond the busy timeout";
                break;
        case SQLITE_FULL:
                detail = "disk full";
                break;
        default:
                detail = st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc);
        }
        char why[128];
        int code = mp_sqlite_error_code(st->db, rc, why, sizeof(why));
        return mp_error_set(err, code, st->path, -1, "%s: %s%s", what, detail, why);
}

static int exec_sql(sqlite_store *st, const char *sql, const char *what, mp_error *err) {
        int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
        return rc == SQLITE_OK ? 0 : sql_error(st, rc, what, err);
}

/* exec_sql(), retrying while the database is locked, up to the busy
 * timeout.  Switching a new file to WAL takes an exclusive lock that
 * SQLite does not wait for through the busy handler: collectors opening a
 * new store together got SQLITE_BUSY at once (test_concurrent_open, about
 * one race in a hundred).  sql must be safe to run again from its start. */
static int exec_sql_waiting(sqlite_store *st, const char *sql, const char *what, mp_error *err) {
        for (unsigned waited_ms = 0;; waited_ms += STORE_OPEN_RETRY_MS) {
                int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
                if (rc == SQLITE_OK)
                        return 0;
                if ((rc & 0xff) != SQLITE_BUSY || waited_ms >= STORE_BUSY_TIMEOUT_MS)
                        return sql_error(st, rc, what, err);
                usleep(STORE_OPEN_RETRY_MS * 1000);
        }
}

/* The cached statement id, reset and unbound, prepared on first use. */
static int stmt(sqlite_store *st, stmt_id id, sqlite3_stmt **ret, const char *what, mp_error *err) {
        sqlite3_stmt *s = st->stmts[id];
        if (!s) {
                int rc = sqlite3_prepare_v3(st->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
                if (rc != SQLITE_OK)
                        return sql_error(st, rc, what, err);
                st->stmts[id] = s;
        } else {
                sqlite3_reset(s);
                sqlite3_clear_bindings(s);
        }
        *ret = s;
        return 0;
}

/* The cached IN-list statement id, reset and unbound (every placeholder
 * NULL), prepared on first use. */
static int in_stmt(sqlite_store *st, in_stmt_id id, sqlite3_stmt **ret, const char *what, mp_error *err) {
        sqlite3_stmt *s = st->in_stmts[id];
        if (s) {
                sqlite3_reset(s);
                sqlite3_clear_bindings(s);
                *ret = s;
                return 0;
        }
        size_t head = strlen(in_sql[id].head), tail = strlen(in_sql[id].tail);
        _cleanup_(freep) char *sql = malloc(head + 2 * IN_CHUNK + tail + 1);
        if (!sql)
                return mp_error_set(err, -ENOMEM, st->path, -1, "out of memory");
        char *o = mempcpy(sql, in_sql[id].head, head);
        for (size_t i = 0; i < IN_CHUNK; i++)
                o = mempcpy(o, i ? ",?" : "?", i ? 2 : 1);
        memcpy(o, in_sql[id].tail, tail + 1);
        int rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
        if (rc != SQLITE_OK)
                return sql_error(st, rc, what, err);
        st->in_stmts[id] = s;
        *ret = s;
        return 0;
}

/* Binds up to IN_CHUNK digests (borrowed) to an in_stmt(). */
static void bind_digests(sqlite3_stmt *q, const uint8_t *digests, size_t n) {
        assert(n <= IN_CHUNK);
        for (size_t i = 0; i < n; i++)
                sqlite3_bind_blob(q, (int) i + 1, digests + i * MP_STORE_DIGEST_SIZE, MP_STORE_DIGEST_SIZE,
                                  SQLITE_STATIC);
}

/* Steps a statement that returns no rows, then resets it so it holds no
 * locks or pending state. */
static int step_done(sqlite_store *st, sqlite3_stmt *s, const char *what, mp_error *err) {
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        return rc == SQLITE_DONE ? 0 : sql_error(st, rc, what, err);
}

static int run(sqlite_store *st, stmt_id id, const char *what, mp_error *err) {
        sqlite3_stmt *s;
        int r = stmt(st, id, &s, what, err);
        return r < 0 ? r : step_done(st, s, what, err);
}

static int begin(sqlite_store *st, const char *what, mp_error *err) {
        return run(st, ST_BEGIN, what, err);
}

/* Commits when r >= 0, rolls back otherwise; returns r or the commit error. */
static int end(sqlite_store *st, int r, const char *what, mp_error *err) {
        if (r >= 0) {
                r = run(st, ST_COMMIT, what, err);
                if (r >= 0)
                        return 0;
        }
        /* A failed COMMIT (or SQLITE_FULL) may already have rolled back. */
        if (!sqlite3_get_autocommit(st->db))
                (void) run(st, ST_ROLLBACK, what, NULL);
        return r;
}

/* One integer from a single-row query (PRAGMAs, counts). */
static int query_int(sqlite_store *st, const char *sql, int64_t *ret, const char *what, mp_error *err) {
        _cleanup_(mp_sqlite_finalizep) sqlite3_stmt *s = NULL;
        int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
        if (rc != SQLITE_OK)
                return sql_error(st, rc, what, err);
        rc = sqlite3_step(s);
        if (rc != SQLITE_ROW)
                return sql_error(st, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, what, err);
        *ret = sqlite3_column_int64(s, 0);
        return 0;
}

static int bind_text_or_null(sqlite3_stmt *s, int i, const char *t) {
        return t && t[0] ? sqlite3_bind_text(s, i, t, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
}

static char *column_strdup(sqlite3_stmt *s, int i) {
        const unsigned char *t = sqlite3_column_text(s, i);
        return t ? strdup((const char *) t) : NULL;
}

static int column_digest(sqlite3_stmt *s, int i, uint8_t out[MP_STORE_DIGEST_SIZE]) {
        const void *b = sqlite3_column_blob(s, i);
        if (!b || sqlite3_column_bytes(s, i) != MP_STORE_DIGEST_SIZE)
                return -EBADMSG;
        memcpy(out, b, MP_STORE_DIGEST_SIZE);
        return 0;
}

static void column_host_id(sqlite3_stmt *s, int i, char out[MP_STORE_HOST_ID_SIZE]) {
        const unsigned char *t = sqlite3_column_text(s, i);
        snprintf(out, MP_STORE_HOST_ID_SIZE, "%s", t ? (const char *) t : "");
}

/* ---- open --------------------------------------------------------------- */

/* Brings the schema from its version to STORE_SCHEMA_VERSION under the
 * write lock, re-reading the version inside it: two collectors starting on
 * the same new file must not both migrate. */
static int migrate(sqlite_store *st, mp_error *err) {
        const char *what = "upgrading the store schema";
        int r = begin(st, what, err);
        if (r < 0)
                return r;

        int64_t version, app_id;
        r = query_int(st, "PRAGMA user_version", &version, what, err);
        if (r >= 0)
                r = query_int(st, "PRAGMA application_id", &app_id, what, err);
        if (r >= 0 && version == 0) {
                /* Only an empty file gets our application id. */
                int64_t n_tables;
                r = query_int(st, "SELECT count(*) FROM sqlite_master", &n_tables, what, err);
                if (r >= 0 && n_tables != 0)
                        r = mp_error_set(err, -EBADMSG, st->path, -1, "not a modelprov store (an SQLite database of"
                                         " another application)");
                else if (r >= 0 && app_id == 0) {
                        char sql[64];
                        snprintf(sql, sizeof(sql), "PRAGMA application_id = %d", STORE_APPLICATION_ID);
                        r = exec_sql(st, sql, what, err);
                }
        }
        for (int64_t v = version; r >= 0 && v < STORE_SCHEMA_VERSION; v++) {
                char sql[64];
                r = exec_sql(st, migrations[v], what, err);
                snprintf(sql, sizeof(sql), "PRAGMA user_version = %lld", (long long) v + 1);
                if (r >= 0)
                        r = exec_sql(st, sql, what, err);
        }
        return end(st, r, what, err);
}

/* Is this our file, and one this version understands? */
static int check_schema(sqlite_store *st, mp_error *err) {
        const char *what = "reading the store";
        int64_t app_id, version, n_tables;
        /* One read transaction: a collector opening the new file at the
         * same time may create the schema between two reads, and an id
         * read before it with tables read after looked like another
         * application's database (test_concurrent_open). */
        int r = exec_sql(st, "BEGIN", what, err);
        if (r >= 0)
                r = query_int(st, "PRAGMA application_id", &app_id, what, err);
        if (r >= 0)
                r = query_int(st, "PRAGMA user_version", &version, what, err);
        if (r >= 0)
                r = query_int(st, "SELECT count(*) FROM sqlite_master", &n_tables, what, err);
        r = end(st, r, what, err);
        if (r < 0)
                return r;

        bool empty = app_id == 0 && version == 0 && n_tables == 0;
        if (!empty && app_id != STORE_APPLICATION_ID)
                return mp_error_set(err, -EBADMSG, st->path, -1,
                                    app_id == 0x6d706361 ? "not a modelprov store (a modelprov catalog)"
                                                         : "not a modelprov store (an SQLite database of another"
                                                           " application)");
        if (version > STORE_SCHEMA_VERSION)
                return mp_error_set(err, -ENOTSUP, st->path, -1,
                                    "store schema version %lld is newer than this modelprov supports (%d)",
                                    (long long) version, STORE_SCHEMA_VERSION);
        if (version < STORE_SCHEMA_VERSION) {
                r = migrate(st, err);
                if (r < 0)
                        return r;
                r = query_int(st, "PRAGMA user_version", &version, what, err);
                if (r < 0)
                        return r;
        }
        if (version != STORE_SCHEMA_VERSION)
                return mp_error_set(err, -ENOTSUP, st->path, -1, "store schema version %lld not supported",
                                    (long long) version);
        st->version = (int) version;
        return 0;
}

static void sqlite_close(mp_store *s) {
        sqlite_store *st = impl(s);
        for (size_t i = 0; i < _ST_MAX; i++)
                sqlite3_finalize(st->stmts[i]);
        for (size_t i = 0; i < _IN_MAX; i++)
                sqlite3_finalize(st->in_stmts[i]);
        sqlite3_close(st->db);
        free(st->path);
        free(st);
}

static void sqlite_storep(sqlite_store **st) {
        if (*st)
                sqlite_close(&(*st)->base);
}

static int sqlite_open(const char *path, mp_store **ret, mp_error *err) {
        struct stat sb;
        if (stat(path, &sb) < 0) {
                if (errno != ENOENT)
                        return mp_error_set(err, -errno, path, -1, "cannot open the store: %s", strerror(errno));
        } else if (!S_ISREG(sb.st_mode))
                return mp_error_set(err, -EISDIR, path, -1, "not a modelprov store (not a regular file)");

        _cleanup_(sqlite_storep) sqlite_store *st = calloc(1, sizeof(*st));
        if (!st)
                return mp_error_set(err, -ENOMEM, path, -1, "out of memory");
        st->base.engine = &mp_store_sqlite_engine;
        if (!(st->path = strdup(path)))
                return mp_error_set(err, -ENOMEM, path, -1, "out of memory");

        int rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 NULL);
        if (rc != SQLITE_OK)
                return sql_error(st, rc, "cannot open the store", err);
        sqlite3_extended_result_codes(st->db, 1);
        sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);

        /* The first read tells a foreign file (SQLITE_NOTADB) before WAL is
         * switched on, which would write to it. */
        int64_t ignored;
        int r = query_int(st, "PRAGMA application_id", &ignored, "opening the store", err);
        if (r < 0)
                return r;
        /* Blast radius reads thousands of records a query, each tens of
         * KiB in a chain of overflow pages that SQLite fetches with a
         * pread() apiece: 16 KiB pages (set only while the file is empty,
         * before WAL writes its header) make the chains 4 times shorter,
         * and the first 2 GiB (SQLite's cap) are memory-mapped, which
         * spares the reads altogether.  SQLite maps read only; the risk it
         * documents, SIGBUS when the file shrinks under the mapping, takes
         * a VACUUM, which nothing here runs. */
        r = exec_sql_waiting(st, "PRAGMA page_size = 16384; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                             " PRAGMA foreign_keys = ON; PRAGMA mmap_size = 2147418112", "opening the store", err);
        if (r >= 0)
                r = check_schema(st, err);
        if (r < 0)
                return r;

        *ret = &TAKE_PTR(st)->base;
        return 0;
}

static int sqlite_open_another(mp_store *s, mp_store **ret, mp_error *err) {
        return sqlite_open(impl(s)->path, ret, err);
}

static int sqlite_schema_version(mp_store *s) {
        return impl(s)->version;
}

/* ---- hosts -------------------------------------------------------------- */

static int sqlite_enroll(mp_store *s, const mp_host_info *info, const uint8_t key_hash[MP_STORE_DIGEST_SIZE],
                         const char *new_id, int64_t now, char host_id_out[MP_STORE_HOST_ID_SIZE], mp_error *err) {
        sqlite_store *st = impl(s);
        const char *what = "enrolling a host";
        char id[MP_STORE_HOST_ID_SIZE] = "";
        sqlite3_stmt *q;

        int r = begin(st, what, err);
        if (r < 0)
                return r;
        r = stmt(st, ST_HOST_BY_MACHINE, &q, what, err);
        if (r >= 0) {
                sqlite3_bind_text(q, 1, info->machine_id, -1, SQLITE_STATIC);
                int rc = sqlite3_step(q);
                if (rc == SQLITE_ROW)
                        column_host_id(q, 0, id);
                else if (rc != SQLITE_DONE)
                        r = sql_error(st, rc, what, err);
                sqlite3_reset(q);
        }
        if (r >= 0 && id[0]) {
                r = stmt(st, ST_HOST_REENROLL, &q, what, err);
                if (r >= 0) {
                        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
                        sqlite3_bind_text(q, 2, info->hostname, -1, SQLITE_STATIC);
                        sqlite3_bind_text(q, 3, info->agent_version, -1, SQLITE_STATIC);
                        sqlite3_bind_text(q, 4, info->os ? info->os : "", -1, SQLITE_STATIC);
                        sqlite3_bind_blob(q, 5, key_hash, MP_STORE_DIGEST_SIZE, SQLITE_STATIC);
                        sqlite3_bind_int64(q, 6, now);
                        r = step_done(st, q, what, err);
                }
        } else if (r >= 0) {
                snprintf(id, sizeof(id), "%s", new_id);
                r = stmt(st, ST_HOST_INSERT, &q, what, err);
                if (r >= 0) {
                        sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
                        sqlite3_bind_text(q, 2, info->machine_id, -1, SQLITE_STATIC);
                        sqlite3_bind_text(q, 3, info->hostname, -1, SQLITE_STATIC);
                        sqlite3_bind_text(q, 4, info->agent_version, -1, SQLITE_STATIC);
                        sqlite3_bind_text(q, 5, info->os ? info->os : "", -1, SQLITE_STATIC);
                        sqlite3_bind_blob(q, 6, key_hash, MP_STORE_DIGEST_SIZE, SQLITE_STATIC);
                        sqlite3_bind_int64(q, 7, now);
                        r = step_done(st, q, what, err);
                }
        }
        r = end(st, r, what, err);
        if (r < 0)
                return r;
        memcpy(host_id_out, id, MP_STORE_HOST_ID_SIZE);
        return 0;
}

static int unknown_host(sqlite_store *st, const char *host_id, mp_error *err) {
        return mp_error_set(err, -ENOENT, st->path, -1, "unknown host %s", host_id);
}

static int sqlite_host_key_hash(mp_store *s, const char *host_id, uint8_t out[MP_STORE_DIGEST_SIZE], mp_error *err) {
        sqlite_store *st = impl(s);
        const char *what = "looking up a host key";
        sqlite3_stmt *q;
        int r = stmt(st, ST_HOST_KEY, &q, what, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(q, 1, host_id, -1, SQLITE_STATIC);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW)
                r = column_digest(q, 0, out) < 0 ? sql_error(st, SQLITE_CORRUPT, what, err) : 0;
        else
                r = rc == SQLITE_DONE ? unknown_host(st, host_id, err) : sql_error(st, rc, what, err);
        sqlite3_reset(q);
        return r;
}

static int sqlite_heartbeat(mp_store *s, const char *host_id, const char *agent_version, int64_t now,
                            mp_error *err) {
        sqlite_store *st = impl(s);
        const char *what = "recording a heartbeat";
        sqlite3_stmt *q;
        int r = stmt(st, ST_HOST_HEARTBEAT, &q, what, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(q, 1, host_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, agent_version, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 3, now);
        r = step_done(st, q, what, err);
        if (r >= 0 && sqlite3_changes(st->db) == 0)
                r = unknown_host(st, host_id, err);
        return r;
}

/* ---- ingest ------------------------------------------------------------- */

static int host_last_seq(sqlite_store *st, const char *host_id, uint64_t *ret, const char *what, mp_error *err) {
        sqlite3_stmt *q;
        int r = stmt(st, ST_HOST_SEQ, &q, what, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(q, 1, host_id, -1, SQLITE_STATIC);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW)
                *ret = (uint64_t) sqlite3_column_int64(q, 0);
        r = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? unknown_host(st, host_id, err) : sql_error(st, rc, what, err);
        sqlite3_reset(q);
        return r;
}

static int insert_event(sqlite_store *st, const char *host_id, const mp_store_item *it, const char *what,
                        mp_error *err) {
        const mp_store_event *ev = it->ev;
        sqlite3_stmt *q;
        int r = stmt(st, ST_EVENT_INSERT, &q, what, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(q, 1, host_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, (int64_t) ev->sequence);
        sqlite3_bind_text(q, 3, mp_store_event_kind_name(ev->kind), -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 4, ev->observed_at);
        sqlite3_bind_text(q, 5, ev->path, -1, SQLITE_STATIC);
        if (it->has_digest)
                sqlite3_bind_blob(q, 6, ev->model_digest, MP_STORE_DIGEST_SIZE, SQLITE_STATIC);
        if (ev->kind == MP_STORE_EVENT_FINDING) {
                sqlite3_bind_text(q, 7, ev->finding_kind, -1, SQLITE_STATIC);
                bind_text_or_null(q, 8, ev->finding_detail);
                bind_text_or_null(q, 13, ev->finding_file);
        } else if (ev->kind == MP_STORE_EVENT_SCAN_MATCH) {
                sqlite3_bind_text(q, 9, ev->match_entry, -1, SQLITE_STATIC);
                sqlite3_bind_text(q, 10, ev->match_verdict, -1, SQLITE_STATIC);
                bind_text_or_null(q, 11, ev->match_relation);
                sqlite3_bind_double(q, 12, ev->match_score);
        }
        return step_done(st, q, what, err);
}

/* hidden size, layers, vocabulary size, has_weights at ?first.. */
static void bind_structure(sqlite3_stmt *q, int first, const mp_store_structure *m) {
        sqlite3_bind_int64(q, first, (int64_t) m->hidden_size);
        sqlite3_bind_int64(q, first + 1, (int64_t) m->num_layers);
        sqlite3_bind_int64(q, first + 2, (int64_t) m->vocab_size);
        sqlite3_bind_int(q, first + 3, m->has_weights);
}

/* The scoring record, when there is one (not for a record that no longer
 * unpacks). */
static int insert_scoring(sqlite_store *st, const uint8_t digest[MP_STORE_DIGEST_SIZE], const mp_store_fp_columns *c,
                          const char *what, mp_error *err) {
        if (!c->scoring)
                return 0;
        sqlite3_stmt *q;
        int r = stmt(st, ST_SCORING_INSERT, &q, what, err);
        if (r < 0)
                return r;
        sqlite3_bind_blob(q, 1, digest, MP_STORE_DIGEST_SIZE, SQLITE_STATIC);
        sqlite3_bind_blob64(q, 2, c->scoring, c->scoring_len, SQLITE_STATIC);
        return step_done(st, q, what, err);
}

static int insert_keys(sqlite_store *st, const uint8_t digest[MP_STORE_DIGEST_SIZE], const mp_store_fp_columns *c,
                       const char *what, mp_error *err) {
        for (size_t i = 0; i < c->n_keys; i++) {
                sqlite3_stmt *q;
                int r = stmt(st, ST_KEY_INSERT, &q, what, err);
                if (r < 0)
                        return r;
                sqlite3_bind_int64(q, 1, (int64_t) c->keys[i]);
                sqlite3_bind_blob(q, 2, digest, MP_STORE_DIGEST_SIZE, SQLITE_STATIC);
                r = step_done(st, q, what, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The first record of a digest wins: a digest names the bytes, so every
 * later record of it describes the same model. */
static int insert_fingerprint(sqlite_store *st, const mp_store_item *it, const char *what, mp_error *err) {
        const mp_store_event *ev = it->ev;
        sqlite3_stmt *q;
        int r = stmt(st, ST_FP_INSERT, &q, what, err);
        if (r < 0)
                return r;
        sqlite3_bind_blob(q, 1, ev->model_digest, MP_STORE_DIGEST_SIZE, SQLITE_STATIC);
        sqlite3_bind_blob64(q, 2, ev->record, ev->record_len, SQLITE_STATIC);
        sqlite3_bind_text(q, 3, it->fp.name ? it->fp.name : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 4, it->fp.format ? it->fp.format : "", -1, SQLITE_STATIC);
        bind_text_or_null(q, 5, it->fp.arch_hash);
        bind_text_or_null(q, 6, it->fp.family_hash);
        sqlite3_bind_int64(q, 7, (int64_t) it->fp.params);
        sqlite3_bind_int64(q, 8, (int64_t) it->fp.n_tensors);
        sqlite3_bind_int64(q, 9, ev->observed_at);
        bind_structure(q, 10, &it->fp.structure);
        r = step_done(st, q, what, err);
        /* Keys only with the row: a digest seen before has them already. */
        if (r >= 0 && sqlite3_changes(st->db) == 1) {
                r = insert_keys(st, ev->model_digest, &it->fp, what, err);
                if (r >= 0)
                        r = insert_scoring(st, ev->model_digest, &it->fp, what, err);
        }
        return r;
}

/* The inventory side of one event: an added or changed model makes its
 * digest the one present at path (closing whatever was there), a removal
 * closes the path. */
static int update_inventory(sqlite_store *st, const char *host_id, const mp_store_event *ev, const char *what,
                            mp_error *err) {
        sqlite3_stmt *q;
        int r;

        if (ev->kind == MP_STORE_EVENT_MODEL_REMOVED) {
                r = stmt(st, ST_INV_CLOSE_PATH, &q, what, err);
                if (r < 0)
                        return r;
                sqlite3_bind_text(q, 1, host_id, -1, SQLITE_STATIC);
                sqlite3_bind_text(q, 2, ev->path, -1, SQLITE_STATIC);
                sqlite3_bind_int64(q, 3, ev->observed_at);
                return step_done(st, q, what, err);
        }
        if (ev->kind != MP_STORE_EVENT_MODEL_ADDED && ev->kind != MP_STORE_EVENT_MODEL_CHANGED)
                return 0;

        for (stmt_id id = ST_INV_CLOSE_OTHERS; id <= ST_INV_UPSERT; id++) {
                r = stmt(st, id, &q, what, err);
                if (r < 0)
                        return r;
                sqlite3_bind_text(q, 1, host_id, -1, SQLITE_STATIC);
                sqlite3_bind_text(q, 2, ev->path, -1, SQLITE_STATIC);
                sqlite3_bind_blob(q, 3, ev->model_digest, MP_STORE_DIGEST_SIZE, SQLITE_STATIC);
                sqlite3_bind_int64(q, 4, ev->observed_at);
                r = step_done(st, q, what, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int sqlite_ingest(mp_store *s, const char *host_id, const mp_store_item *items, size_t n, int64_t now,
                         uint64_t *acked_through, size_t *stored, size_t *duplicates, mp_error *err) {
        sqlite_store *st = impl(s);
        const char *what = "storing events";
        uint64_t last = 0;
        size_t n_stored = 0, n_dup = 0;

        _cleanup_(freep) const mp_store_item **take = calloc(n ? n : 1, sizeof *take);
        if (!take)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");

        int r = begin(st, what, err);
        if (r < 0)
                return r;
        r = host_last_seq(st, host_id, &last, what, err);
        size_t n_take = r < 0 ? 0 : mp_store_ingest_run(items, n, last, take, &n_dup);
        for (size_t i = 0; r >= 0 && i < n_take; i++) {
                const mp_store_item *it = take[i];
                r = insert_event(st, host_id, it, what, err);
                if (r >= 0 && it->ev->record)
                        r = insert_fingerprint(st, it, what, err);
                if (r >= 0)
                        r = update_inventory(st, host_id, it->ev, what, err);
                if (r >= 0) {
                        last = it->ev->sequence;
                        n_stored++;
                }
        }
        if (r >= 0) {
                sqlite3_stmt *q;
                r = stmt(st, ST_HOST_ADVANCE, &q, what, err);
                if (r >= 0) {
                        sqlite3_bind_text(q, 1, host_id, -1, SQLITE_STATIC);
                        sqlite3_bind_int64(q, 2, (int64_t) last);
                        sqlite3_bind_int64(q, 3, now);
                        r = step_done(st, q, what, err);
                }
        }
        r = end(st, r, what, err);
        if (r < 0)
                return r;
        *acked_through = last;
        *stored = n_stored;
        *duplicates = n_dup;
        return 0;
}

/* ---- queries ------------------------------------------------------------ */

/* Steps q to its end, appending one zeroed element of `size` bytes per row
 * to *array and letting fill() set it from the row.  On failure the
 * elements so far stay in *array (*n of them) for the caller to free. */
typedef int (*row_fill_fn)(sqlite_store *st, sqlite3_stmt *q, void *elem, const char *what, mp_error *err);

static int collect_rows(sqlite_store *st, sqlite3_stmt *q, size_t size, row_fill_fn fill, void **array, size_t *n,
                        const char *what, mp_error *err) {
        size_t allocated = 0;
        for (;;) {
                int rc = sqlite3_step(q);
                if (rc == SQLITE_DONE)
                        return 0;
                if (rc != SQLITE_ROW)
                        return sql_error(st, rc, what, err);
                if (mp_grow(array, &allocated, *n + 1, size) < 0)
                        return mp_error_set(err, -ENOMEM, st->path, -1, "out of memory");
                void *e = (char *) *array + *n * size;
                memset(e, 0, size);
                (*n)++;
                int r = fill(st, q, e, what, err);
                if (r < 0)
                        return r;
        }
}

static int fill_host(sqlite_store *st, sqlite3_stmt *q, void *elem, const char *what, mp_error *err) {
        mp_store_host *e = elem;
        (void) what;
        *e = (mp_store_host) {
                .hostname = column_strdup(q, 1),
                .machine_id = column_strdup(q, 2),
                .agent_version = column_strdup(q, 3),
                .os = column_strdup(q, 4),
                .enrolled_at = sqlite3_column_int64(q, 5),
                .last_seen = sqlite3_column_int64(q, 6),
                .last_sequence = (uint64_t) sqlite3_column_int64(q, 7),
                .model_count = (uint64_t) sqlite3_column_int64(q, 8),
        };
        column_host_id(q, 0, e->id);
        if (!e->hostname || !e->machine_id || !e->agent_version || !e->os)
                return mp_error_set(err, -ENOMEM, st->path, -1, "out of memory");
        return 0;
}

static int sqlite_hosts(mp_store *s, const char *host_id, mp_store_host **ret, size_t *ret_n, mp_error *err) {
        sqlite_store *st = impl(s);
        const char *what = host_id ? "looking up a host" : "listing hosts";
        mp_store_host *h = NULL;
        size_t n = 0;
        sqlite3_stmt *q = NULL;

        int r = stmt(st, ST_HOSTS, &q, what, err);
        if (r >= 0) {
                if (host_id)
                        sqlite3_bind_text(q, 1, host_id, -1, SQLITE_STATIC);
                else
                        sqlite3_bind_null(q, 1);
                r = collect_rows(st, q, sizeof(*h), fill_host, (void **) &h, &n, what, err);
        }
        if (r >= 0 && host_id && n == 0)
                r = unknown_host(st, host_id, err);
        if (q)
                sqlite3_reset(q);
        if (r < 0) {
                mp_store_hosts_free(h, n);
                return r;
        }
        *ret = h;
        *ret_n = n;
        return 0;
}

static int fill_location(sqlite_store *st, sqlite3_stmt *q, void *elem, const char *what, mp_error *err) {
        mp_store_location *e = elem;
        *e = (mp_store_location) {
                .hostname = column_strdup(q, 1),
                .path = column_strdup(q, 2),
                .first_seen = sqlite3_column_int64(q, 4),
                .last_seen = sqlite3_column_int64(q, 5),
                .present = sqlite3_column_int(q, 6) != 0,
                .model_name = column_strdup(q, 7),
        };
        column_host_id(q, 0, e->host_id);
        if (column_digest(q, 3, e->model_digest) < 0)
                return sql_error(st, SQLITE_CORRUPT, what, err);
        if (!e->hostname || !e->path || !e->model_name)
                return mp_error_set(err, -ENOMEM, st->path, -1, "out of memory");
        return 0;
}

static int sqlite_inventory(mp_store *s, const char *host_id, bool only_present, const uint8_t *digest,
                            mp_store_location **ret, size_t *ret_n, mp_error *err) {
        sqlite_store *st = impl(s);
        const char *what = digest ? "looking up model locations" : "listing the inventory";
        mp_store_location *l = NULL;
        size_t n = 0;
        sqlite3_stmt *q = NULL;

        int r = stmt(st, digest ? ST_LOCATIONS : ST_INVENTORY, &q, what, err);
        if (r >= 0 && digest)
                sqlite3_bind_blob(q, 1, digest, MP_STORE_DIGEST_SIZE, SQLITE_STATIC);
        else if (r >= 0) {
                bind_text_or_null(q, 1, host_id);
                sqlite3_bind_int(q, 2, only_present);
        }
        if (r >= 0)
                r = collect_rows(st, q, sizeof(*l), fill_location, (void **) &l, &n, what, err);
        if (q)
                sqlite3_reset(q);
        if (r < 0) {
                mp_store_locations_free(l, n);
                return r;
        }
        *ret = l;
        *ret_n = n;
        return 0;
}

static int sqlite_locations_of(mp_store *s, const uint8_t *digests, size_t n, mp_store_location **ret,
                               size_t *ret_n, mp_error *err) {
        sqlite_store *st = impl(s);
        const char *what = "looking up model locations";
        mp_store_location *l = NULL;
        size_t n_l = 0;
        int r = 0;
        /* One read transaction: the chunks see the same store. */
        bool tx = sqlite3_get_autocommit(st->db);
        if (tx)
                r = exec_sql(st, "BEGIN", what, err);
        for (size_t at = 0; r >= 0 && at < n; at += IN_CHUNK) {
                sqlite3_stmt *q;
                r = in_stmt(st, IN_LOCATIONS, &q, what, err);
                if (r < 0)
                        break;
                bind_digests(q, digests + at * MP_STORE_DIGEST_SIZE, n - at < IN_CHUNK ? n - at : IN_CHUNK);
                r = collect_rows(st, q, sizeof(*l), fill_location, (void **) &l, &n_l, what, err);
                sqlite3_reset(q);
        }
        if (tx)
                (void) exec_sql(st, "COMMIT", what, NULL);      /* read only: nothing to lose */
        if (r < 0) {
                mp_store_locations_free(l, n_l);
                return r;
        }
        *ret = l;
        *ret_n = n_l;
        return 0;
}

static int sqlite_inventory_at(mp_store *s, const char *host_id, const char *path, mp_store_location **ret,
                               size_t *ret_n, mp_error *err) {
        sqlite_store *st = impl(s);
        const char *what = "looking up an inventory row";
        mp_store_location *l = NULL;
        size_t n = 0;
        sqlite3_stmt *q = NULL;
        int r = stmt(st, ST_INVENTORY_AT, &q, what, err);
        if (r >= 0) {
                sqlite3_bind_text(q, 1, host_id, -1, SQLITE_STATIC);
                sqlite3_bind_text(q, 2, path, -1, SQLITE_STATIC);
                r = collect_rows(st, q, sizeof(*l), fill_location, (void **) &l, &n, what, err);
        }
        if (q)
                sqlite3_reset(q);
        if (r < 0) {
                mp_store_locations_free(l, n);
                return r;
        }
        *ret = l;
        *ret_n = n;
        return 0;
}

static int fill_host_id(sqlite_store *st, sqlite3_stmt *q, void *elem, const char *what, mp_error *err) {
        (void) st, (void) what, (void) err;
        column_host_id(q, 0, elem);
        return 0;
}

static int sqlite_find_hosts(mp_store *s, const char *name, char (**ret)[MP_STORE_HOST_ID_SIZE], size_t *ret_n,
                             mp_error *err) {
        sqlite_store *st = impl(s);
        const char *what = "looking up a host";
        char (*ids)[MP_STORE_HOST_ID_SIZE] = NULL;
        size_t n = 0;
        sqlite3_stmt *q = NULL;
        int r = stmt(st, ST_FIND_HOSTS, &q, what, err);
        if (r >= 0) {
                sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
                r = collect_rows(st, q, sizeof(*ids), fill_host_id, (void **) &ids, &n, what, err);
        }
        if (q)
                sqlite3_reset(q);
        if (r < 0) {
                free(ids);
                return r;
        }
        *ret = ids;
        *ret_n = n;
        return 0;
}

/* NULL for SQL NULL; sets *oom when a non-NULL value could not be copied. */
static char *column_strdup_opt(sqlite3_stmt *s, int i, bool *oom) {
        if (sqlite3_column_type(s, i) == SQLITE_NULL)
                return NULL;
        char *t = column_strdup(s, i);
        if (!t)
                *oom = true;
        return t;
}

static int fill_history(sqlite_store *st, sqlite3_stmt *q, void *elem, const char *what, mp_error *err) {
        mp_store_history_entry *e = elem;
        bool oom = false;
        *e = (mp_store_history_entry) {
                .sequence = (uint64_t) sqlite3_column_int64(q, 1),
                .kind = mp_store_event_kind_of((const char *) sqlite3_column_text(q, 2)),
                .observed_at = sqlite3_column_int64(q, 3),
                .path = column_strdup_opt(q, 4, &oom),
                .finding_kind = column_strdup_opt(q, 6, &oom),
                .finding_detail = column_strdup_opt(q, 7, &oom),
                .match_entry = column_strdup_opt(q, 8, &oom),
                .match_verdict = column_strdup_opt(q, 9, &oom),
                .match_relation = column_strdup_opt(q, 10, &oom),
                .match_score = sqlite3_column_double(q, 11),
                .finding_file = column_strdup_opt(q, 12, &oom),
        };
        column_host_id(q, 0, e->host_id);
        e->has_digest = sqlite3_column_type(q, 5) != SQLITE_NULL;
        if (oom)
                return mp_error_set(err, -ENOMEM, st->path, -1, "out of memory");
        if (e->kind == 0 || !e->path || (e->has_digest && column_digest(q, 5, e->model_digest) < 0))
                return sql_error(st, SQLITE_CORRUPT, what, err);
        return 0;
}

static int sqlite_history(mp_store *s, const char *host_id, const char *path, mp_store_history_entry **ret,
                          size_t *ret_n, mp_error *err) {
        sqlite_store *st = impl(s);
        const char *what = "reading the history";
        mp_store_history_entry *h = NULL;
        size_t n = 0;
        sqlite3_stmt *q = NULL;

        int r = stmt(st, ST_HISTORY, &q, what, err);
        if (r >= 0) {
                bind_text_or_null(q, 1, host_id);
                bind_text_or_null(q, 2, path);
                r = collect_rows(st, q, sizeof(*h), fill_history, (void **) &h, &n, what, err);
        }
        if (q)
                sqlite3_reset(q);
        if (r < 0) {
                mp_store_history_free(h, n);
                return r;
        }
        *ret = h;
        *ret_n = n;
        return 0;
}

/* A copy of blob column i of q (a zero-length blob gives a 1-byte buffer so
 * that success always means a non-NULL pointer). */
static int column_blob_dup(sqlite_store *st, sqlite3_stmt *q, int i, uint8_t **ret, size_t *len, mp_error *err) {
        const void *b = sqlite3_column_blob(q, i);
        size_t n = (size_t) sqlite3_column_bytes(q, i);
        uint8_t *copy = malloc(n ? n : 1);
        if (!copy)
                return mp_error_set(err, -ENOMEM, st->path, -1, "out of memory");
        if (n)
                memcpy(copy, b, n);
        *ret = copy;
        *len = n;
        return 0;
}

static int sqlite_fingerprint(mp_store *s, const uint8_t digest[MP_STORE_DIGEST_SIZE], uint8_t **ret, size_t *len,
                              mp_error *err) {
        sqlite_store *st = impl(s);
        const char *what = "reading a fingerprint";
        sqlite3_stmt *q;
        int r = stmt(st, ST_FINGERPRINT, &q, what, err);
        if (r < 0)
                return r;
        sqlite3_bind_blob(q, 1, digest, MP_STORE_DIGEST_SIZE, SQLITE_STATIC);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW)
                r = column_blob_dup(st, q, 0, ret, len, err);
        else if (rc == SQLITE_DONE)
                r = mp_error_set(err, -ENOENT, st->path, -1, "no fingerprint stored for that model digest");
        else
                r = sql_error(st, rc, what, err);
        sqlite3_reset(q);
        return r;
}

static int sqlite_fingerprints(mp_store *s, const uint8_t *digests, size_t n, bool scoring, mp_store_record_cb cb,
                               void *userdata, mp_error *err) {
        sqlite_store *st = impl(s);
        const char *what = "reading fingerprints";
        int r = 0;
        bool tx = sqlite3_get_autocommit(st->db);
        if (tx)
                r = exec_sql(st, "BEGIN", what, err);
        for (size_t at = 0; r >= 0 && at < n; at += IN_CHUNK) {
                sqlite3_stmt *q;
                r = in_stmt(st, scoring ? IN_SCORING : IN_RECORDS, &q, what, err);
                if (r < 0)
                        break;
                bind_digests(q, digests + at * MP_STORE_DIGEST_SIZE, n - at < IN_CHUNK ? n - at : IN_CHUNK);
                for (;;) {
                        int rc = sqlite3_step(q);
                        if (rc == SQLITE_DONE)
                                break;
                        if (rc != SQLITE_ROW) {
                                r = sql_error(st, rc, what, err);
                                break;
                        }
                        if (sqlite3_column_bytes(q, 0) != MP_STORE_DIGEST_SIZE) {
                                r = sql_error(st, SQLITE_CORRUPT, what, err);
                                break;
                        }
                        r = cb(sqlite3_column_blob(q, 0), sqlite3_column_blob(q, 1),
                               (size_t) sqlite3_column_bytes(q, 1), userdata);
                        if (r < 0)
                                break;
                }
                sqlite3_reset(q);
        }
        if (tx)
                (void) exec_sql(st, "COMMIT", what, NULL);      /* read only: nothing to lose */
        return r < 0 ? r : 0;
}

/* The statement is built per filter (four shapes) so that SQLite can use the
 * arch or family index: "?1 IS NULL OR arch_hash = ?1" would defeat it. */
/* Steps q to its end, checking that column 0 of every row is a 32-byte
 * digest, and hands each row to fn: a negative return of fn stops and is
 * returned, a positive one stops and 0 is returned.  q is not reset. */
typedef int (*digest_row_fn)(sqlite3_stmt *q, void *userdata);

static int step_digest_rows(sqlite_store *st, sqlite3_stmt *q, digest_row_fn fn, void *userdata, const char *what,
                            mp_error *err) {
        for (;;) {
                int rc = sqlite3_step(q);
                if (rc == SQLITE_DONE)
                        return 0;
                if (rc != SQLITE_ROW)
                        return sql_error(st, rc, what, err);
                if (sqlite3_column_bytes(q, 0) != MP_STORE_DIGEST_SIZE)
                        return sql_error(st, SQLITE_CORRUPT, what, err);
                int r = fn(q, userdata);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
}

struct fingerprint_rows {
        mp_store_fingerprint_cb cb;
        void *userdata;
};

/* A row of (digest, name, format, arch_hash, family_hash, params,
 * n_tensors, hidden_size, num_layers, vocab_size, has_weights, record). */
static int fingerprint_row(sqlite3_stmt *q, void *userdata) {
        struct fingerprint_rows *rows = userdata;
        mp_store_fingerprint_info info = {
                .digest = sqlite3_column_blob(q, 0),
                .name = (const char *) sqlite3_column_text(q, 1),
                .format = (const char *) sqlite3_column_text(q, 2),
                .arch_hash = (const char *) sqlite3_column_text(q, 3),
                .family_hash = (const char *) sqlite3_column_text(q, 4),
                .params = (uint64_t) sqlite3_column_int64(q, 5),
                .n_tensors = (uint64_t) sqlite3_column_int64(q, 6),
                .structure = {
                        .hidden_size = (uint64_t) sqlite3_column_int64(q, 7),
                        .num_layers = (uint64_t) sqlite3_column_int64(q, 8),
                        .vocab_size = (uint64_t) sqlite3_column_int64(q, 9),
                        .has_weights = sqlite3_column_int(q, 10) != 0,
                },
                .record = sqlite3_column_blob(q, 11),
                .record_len = (size_t) sqlite3_column_bytes(q, 11),
        };
        return rows->cb(&info, rows->userdata);
}

/* A row of (digest, record). */
static int record_row(sqlite3_stmt *q, void *userdata) {
        struct fingerprint_rows *rows = userdata;
        mp_store_fingerprint_info info = {
                .digest = sqlite3_column_blob(q, 0),
                .record = sqlite3_column_blob(q, 1),
                .record_len = (size_t) sqlite3_column_bytes(q, 1),
        };
        return rows->cb(&info, rows->userdata);
}

static int sqlite_foreach_fingerprint(mp_store *s, const mp_store_fingerprint_filter *f, mp_store_fingerprint_cb cb,
                                      void *userdata, mp_error *err) {
        sqlite_store *st = impl(s);
        const char *what = "reading fingerprints";
        char sql[512];
        snprintf(sql, sizeof(sql),
                 "SELECT digest, name, format, arch_hash, family_hash, params, n_tensors, hidden_size, num_layers,"
                 " vocab_size, has_weights, record FROM fingerprints"
                 " WHERE params >= ?3 AND (?4 = 0 OR params <= ?4)%s%s%s ORDER BY digest",
                 f->arch_hash ? " AND arch_hash = ?1" : "", f->family_hash ? " AND family_hash = ?2" : "",
                 f->hidden_size ? " AND hidden_size = ?5" : "");

        _cleanup_(mp_sqlite_finalizep) sqlite3_stmt *q = NULL;
        int rc = sqlite3_prepare_v2(st->db, sql, -1, &q, NULL);
        if (rc != SQLITE_OK)
                return sql_error(st, rc, what, err);
        if (f->arch_hash)
                sqlite3_bind_text(q, 1, f->arch_hash, -1, SQLITE_STATIC);
        if (f->family_hash)
                sqlite3_bind_text(q, 2, f->family_hash, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 3, (int64_t) f->min_params);
        sqlite3_bind_int64(q, 4, (int64_t) f->max_params);
        if (f->hidden_size)
                sqlite3_bind_int64(q, 5, (int64_t) f->hidden_size);

        struct fingerprint_rows rows = {.cb = cb, .userdata = userdata};
        return step_digest_rows(st, q, fingerprint_row, &rows, what, err);
}

/* ---- blast-radius pre-filter -------------------------------------------- */

struct digest_array {
        uint8_t **array;
        size_t *n, *allocated;
};

static int append_digest(sqlite3_stmt *q, void *userdata) {
        struct digest_array *a = userdata;
        if (mp_grow((void **) a->array, a->allocated, *a->n + 1, MP_STORE_DIGEST_SIZE) < 0)
                return -ENOMEM;
        memcpy(*a->array + *a->n * MP_STORE_DIGEST_SIZE, sqlite3_column_blob(q, 0), MP_STORE_DIGEST_SIZE);
        (*a->n)++;
        return 0;
}

/* Appends the digest column of each row of q to the array (32 bytes each);
 * q is reset afterwards. */
static int collect_digests(sqlite_store *st, sqlite3_stmt *q, uint8_t **array, size_t *n, size_t *allocated,
                           const char *what, mp_error *err) {
        struct digest_array a = {.array = array, .n = n, .allocated = allocated};
        int r = step_digest_rows(st, q, append_digest, &a, what, err);
        if (r == -ENOMEM)
                mp_error_set(err, r, st->path, -1, "out of memory");
        sqlite3_reset(q);
        return r;
}

static int sqlite_candidates(mp_store *s, const mp_store_structure *structure, const uint64_t *keys,
                             size_t n_keys, const uint8_t *exclude, uint8_t **ret, size_t *ret_n, mp_error *err) {
        sqlite_store *st = impl(s);
        const char *what = "selecting blast-radius candidates";
        _cleanup_(freep) uint8_t *d = NULL;
        size_t n = 0, allocated = 0;
        sqlite3_stmt *q;

        /* One read transaction: the two statements see the same store. */
        int r = exec_sql(st, "BEGIN", what, err);
        if (r < 0)
                return r;
        uint64_t hidden[2] = { structure ? structure->hidden_size : 0, 0 };
        size_t n_hidden = !structure ? 0 : hidden[0] ? 2 : 1;
        for (size_t i = 0; r >= 0 && i < n_hidden; i++) {
                r = stmt(st, ST_CANDIDATES_HIDDEN, &q, what, err);
                if (r >= 0) {
                        sqlite3_bind_int64(q, 1, (int64_t) hidden[i]);
                        r = collect_digests(st, q, &d, &n, &allocated, what, err);
                }
        }
        for (size_t i = 0; r >= 0 && i < n_keys; i++) {
                r = stmt(st, ST_CANDIDATES_KEY, &q, what, err);
                if (r >= 0) {
                        sqlite3_bind_int64(q, 1, (int64_t) keys[i]);
                        r = collect_digests(st, q, &d, &n, &allocated, what, err);
                }
        }
        (void) exec_sql(st, "COMMIT", what, NULL);      /* read only: nothing to lose */
        if (r < 0)
                return r;

        /* Sorted, distinct, without exclude. */
        if (n > 0)
                qsort(d, n, MP_STORE_DIGEST_SIZE, mp_store_digest_cmp);
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                const uint8_t *x = d + i * MP_STORE_DIGEST_SIZE;
                if (k > 0 && memcmp(x, d + (k - 1) * MP_STORE_DIGEST_SIZE, MP_STORE_DIGEST_SIZE) == 0)
                        continue;
                if (exclude && memcmp(x, exclude, MP_STORE_DIGEST_SIZE) == 0)
                        continue;
                memmove(d + k * MP_STORE_DIGEST_SIZE, x, MP_STORE_DIGEST_SIZE);
                k++;
        }
        if (k == 0) {
                free(d);
                d = NULL;
        }
        *ret = TAKE_PTR(d);
        *ret_n = k;
        return 0;
}

static int sqlite_unindexed(mp_store *s, size_t max, mp_store_fingerprint_cb cb, void *userdata, mp_error *err) {
        sqlite_store *st = impl(s);
        const char *what = "re-indexing fingerprints";
        sqlite3_stmt *q;
        int r = stmt(st, ST_UNINDEXED, &q, what, err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(q, 1, (int64_t) (max < INT64_MAX ? max : INT64_MAX));
        struct fingerprint_rows rows = {.cb = cb, .userdata = userdata};
        r = step_digest_rows(st, q, record_row, &rows, what, err);
        sqlite3_reset(q);
        return r;
}

static int sqlite_set_index(mp_store *s, const mp_store_fp_index *items, size_t n, mp_error *err) {
        sqlite_store *st = impl(s);
        const char *what = "re-indexing fingerprints";
        int r = begin(st, what, err);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                sqlite3_stmt *q;
                r = stmt(st, ST_FP_SET_INDEX, &q, what, err);
                if (r < 0)
                        break;
                sqlite3_bind_blob(q, 1, items[i].digest, MP_STORE_DIGEST_SIZE, SQLITE_STATIC);
                bind_structure(q, 2, &items[i].fp.structure);
                r = step_done(st, q, what, err);
                if (r >= 0)
                        r = insert_keys(st, items[i].digest, &items[i].fp, what, err);
                if (r >= 0)
                        r = insert_scoring(st, items[i].digest, &items[i].fp, what, err);
        }
        return end(st, r, what, err);
}

/* ---- catalog distribution ----------------------------------------------- */

static int sqlite_put_catalog(mp_store *s, const uint8_t *bytes, size_t len, const char *version, int64_t now,
                              mp_error *err) {
        sqlite_store *st = impl(s);
        const char *what = "storing the catalog";
        sqlite3_stmt *q;
        int r = stmt(st, ST_CATALOG_PUT, &q, what, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(q, 1, version, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, now);
        sqlite3_bind_blob64(q, 3, bytes, len, SQLITE_STATIC);
        return step_done(st, q, what, err);
}

static int sqlite_get_catalog(mp_store *s, uint8_t **ret, size_t *len, char version_out[MP_STORE_CATALOG_VERSION_SIZE],
                              mp_error *err) {
        sqlite_store *st = impl(s);
        const char *what = "reading the catalog";
        sqlite3_stmt *q;
        /* Without ret, the blob is not read at all: agents poll the version. */
        int r = stmt(st, ret ? ST_CATALOG_GET : ST_CATALOG_VERSION, &q, what, err);
        if (r < 0)
                return r;
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
                const unsigned char *v = sqlite3_column_text(q, 0);
                if (!v || strlen((const char *) v) != MP_STORE_CATALOG_VERSION_SIZE - 1)
                        r = sql_error(st, SQLITE_CORRUPT, what, err);
                else {
                        memcpy(version_out, v, MP_STORE_CATALOG_VERSION_SIZE);
                        if (ret)
                                r = column_blob_dup(st, q, 1, ret, len, err);
                }
        } else if (rc == SQLITE_DONE)
                r = mp_error_set(err, -ENOENT, st->path, -1, "no catalog has been uploaded");
        else
                r = sql_error(st, rc, what, err);
        sqlite3_reset(q);
        return r;
}

const mp_store_engine mp_store_sqlite_engine = {
        .scheme = "sqlite",
        .open = sqlite_open,
        .open_another = sqlite_open_another,
        .close = sqlite_close,
        .schema_version = sqlite_schema_version,
        .enroll = sqlite_enroll,
        .host_key_hash = sqlite_host_key_hash,
        .heartbeat = sqlite_heartbeat,
        .ingest = sqlite_ingest,
        .hosts = sqlite_hosts,
        .inventory = sqlite_inventory,
        .history = sqlite_history,
        .fingerprint = sqlite_fingerprint,
        .fingerprints = sqlite_fingerprints,
        .locations_of = sqlite_locations_of,
        .find_hosts = sqlite_find_hosts,
        .inventory_at = sqlite_inventory_at,
        .foreach_fingerprint = sqlite_foreach_fingerprint,
        .candidates = sqlite_candidates,
        .unindexed = sqlite_unindexed,
        .set_index = sqlite_set_index,
        .put_catalog = sqlite_put_catalog,
        .get_catalog = sqlite_get_catalog,
};
