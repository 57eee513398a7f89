/* state.c - the agent's state DB (see state.h): opening and migrating the
 * SQLite file, meta, files, models, findings, scan matches and roots, and
 * the commits that change them together with their outbox events.
 *
 * One file in WAL mode (the event loop, the workers and the reporter each
 * hold a handle; `modelprov status` reads alongside), synchronous=FULL (an
 * event the collector acknowledged must not be queued again after a power
 * loss, nor a state change lost without its event).  The schema is
 * versioned with PRAGMA user_version and upgraded by the migrations below,
 * each step in one transaction.  Statements are prepared once per handle
 * (state_internal.h). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/outbox.h"
#include "agent/state_internal.h"
#include "util/macro.h"
#include "util/sqlite_util.h"

/* PRAGMA application_id "mpst": tells the state DB from the collector's
 * store ("mpco"), a catalog ("mpca") and any other SQLite file. */
#define STATE_APPLICATION_ID 0x6d707374
#define STATE_BUSY_TIMEOUT_MS 10000
#define DIGEST_SIZE 32

/* ---- schema ------------------------------------------------------------- */

/* migrations[i] takes the state DB from schema version i to i + 1.  Append
 * only: a released step is never edited.  Large columns (record, event)
 * come last: SQLite reaches a column after a blob by walking its overflow
 * pages. */
static const char *const migrations[] = {
        "CREATE TABLE meta ("
        "  key TEXT PRIMARY KEY NOT NULL,"
        "  value) WITHOUT ROWID;"
        "CREATE TABLE roots ("
        "  path TEXT PRIMARY KEY NOT NULL,"
        "  present INTEGER NOT NULL CHECK (present IN (0, 1)),"
        "  updated_at INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE models ("
        "  root TEXT PRIMARY KEY NOT NULL,"
        "  digest BLOB NOT NULL CHECK (length(digest) = 32),"
        "  name TEXT NOT NULL,"
        "  layout TEXT NOT NULL,"
        "  format TEXT NOT NULL,"
        "  bytes INTEGER NOT NULL,"
        "  first_seen INTEGER NOT NULL,"
        "  changed_at INTEGER NOT NULL,"
        "  checked_at INTEGER NOT NULL,"
        "  record BLOB NOT NULL);"
        "CREATE TABLE files ("
        "  path TEXT PRIMARY KEY NOT NULL,"
        "  dev INTEGER NOT NULL,"
        "  ino INTEGER NOT NULL,"
        "  size INTEGER NOT NULL,"
        "  mtime_ns INTEGER NOT NULL,"
        "  ctime_ns INTEGER NOT NULL,"
        "  sha256 BLOB CHECK (sha256 IS NULL OR length(sha256) = 32),"
        "  model_root TEXT REFERENCES models(root) ON DELETE SET NULL);"
        "CREATE INDEX files_stat ON files(dev, ino, size, mtime_ns);"
        "CREATE INDEX files_model ON files(model_root);"
        "CREATE TABLE findings ("
        "  path TEXT NOT NULL,"
        "  kind TEXT NOT NULL,"
        "  detail TEXT NOT NULL,"
        "  first_seen INTEGER NOT NULL,"
        "  UNIQUE (path, kind, detail));"
        "CREATE TABLE scan_matches ("
        "  root TEXT NOT NULL,"
        "  digest BLOB NOT NULL CHECK (length(digest) = 32),"
        "  entry TEXT NOT NULL,"
        "  verdict TEXT NOT NULL,"
        "  score REAL NOT NULL,"
        "  relation TEXT NOT NULL,"
        "  first_seen INTEGER NOT NULL,"
        "  UNIQUE (root, digest, entry));"
        /* seq: NULL until the row is first sent (outbox.h).  AUTOINCREMENT:
         * ids never come back after the newest row was deleted, so id order
         * stays queue order. */
        "CREATE TABLE outbox ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  seq INTEGER UNIQUE CHECK (seq IS NULL OR seq > 0),"
        "  kind INTEGER NOT NULL,"
        "  path TEXT NOT NULL,"
        "  priority INTEGER NOT NULL,"
        "  queued_at INTEGER NOT NULL,"
        "  event BLOB NOT NULL);"
        "CREATE INDEX outbox_path ON outbox(path, priority);",
};

#define STATE_SCHEMA_VERSION ((int) ELEMENTSOF(migrations))

/* ---- errors, statements, transactions ----------------------------------- */

int agent_state_sql_error(agent_state *s, int rc, const char *what, mp_error *err) {
        const char *detail;
        switch (rc & 0xff) {
        case SQLITE_NOTADB:
                detail = "not a modelprov state DB (not an SQLite database)";
                break;
        case SQLITE_CORRUPT:
                detail = "the state DB is corrupt";
                break;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                detail = "the state DB stayed locked by another writer beyond the busy timeout";
                break;
        case SQLITE_FULL:
                detail = "disk full";
                break;
        case SQLITE_READONLY:
                detail = "the state DB is open read-only";
                break;
        default:
                detail = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
        }
        char why[128];
        int code = mp_sqlite_error_code(s->db, rc, why, sizeof(why));
        return mp_error_set(err, code, s->path, -1, "%s: %s%s", what, detail, why);
}

int agent_state_stmt(agent_state *s, const char *sql, sqlite3_stmt **ret, const char *what, mp_error *err) {
        assert(s && sql && ret);
        for (size_t i = 0; i < s->n_stmts; i++)
                if (s->stmts[i].sql == sql) {
                        sqlite3_reset(s->stmts[i].stmt);
                        sqlite3_clear_bindings(s->stmts[i].stmt);
                        *ret = s->stmts[i].stmt;
                        return 0;
                }
        /* A programming error, not a runtime condition: the set of
         * statements is fixed at compile time. */
        assert(s->n_stmts < AGENT_STATE_MAX_STMTS);
        if (s->n_stmts >= AGENT_STATE_MAX_STMTS)
                return mp_error_set(err, -ENOBUFS, s->path, -1, "%s: too many statements", what);
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
        if (rc != SQLITE_OK)
                return agent_state_sql_error(s, rc, what, err);
        s->stmts[s->n_stmts].sql = sql;
        s->stmts[s->n_stmts].stmt = st;
        s->n_stmts++;
        *ret = st;
        return 0;
}

int agent_state_step_done(agent_state *s, sqlite3_stmt *st, const char *what, mp_error *err) {
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? 0 : agent_state_sql_error(s, rc, what, err);
}

int agent_state_run(agent_state *s, const char *sql, const char *what, mp_error *err) {
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, sql, &st, what, err);
        return r < 0 ? r : agent_state_step_done(s, st, what, err);
}

static const char SQL_BEGIN[] = "BEGIN IMMEDIATE";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";

int agent_state_begin(agent_state *s, const char *what, mp_error *err) {
        return agent_state_run(s, SQL_BEGIN, what, err);
}

int agent_state_end(agent_state *s, int r, const char *what, mp_error *err) {
        if (r >= 0) {
                int c = agent_state_run(s, SQL_COMMIT, what, err);
                if (c >= 0)
                        return r;
                r = c;
        }
        /* A failed COMMIT (or SQLITE_FULL mid-statement) may already have
         * rolled back. */
        if (!sqlite3_get_autocommit(s->db))
                (void) agent_state_run(s, SQL_ROLLBACK, what, NULL);
        return r;
}

static int exec_sql(agent_state *s, const char *sql, const char *what, mp_error *err) {
        int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        return rc == SQLITE_OK ? 0 : agent_state_sql_error(s, rc, what, err);
}

/* One integer from a single-row query (PRAGMAs, counts); not cached. */
static int query_int(agent_state *s, const char *sql, int64_t *ret, const char *what, mp_error *err) {
        _cleanup_(mp_sqlite_finalizep) sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return agent_state_sql_error(s, rc, what, err);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return agent_state_sql_error(s, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, what, err);
        *ret = sqlite3_column_int64(st, 0);
        return 0;
}

/* A copy of a text column ("" for NULL); NULL only when out of memory. */
static char *column_strdup(sqlite3_stmt *st, int i) {
        const unsigned char *t = sqlite3_column_text(st, i);
        return strdup(t ? (const char *) t : "");
}

static const char *column_text(sqlite3_stmt *st, int i) {
        const unsigned char *t = sqlite3_column_text(st, i);
        return t ? (const char *) t : "";
}

/* A 32-byte digest column; false when it is anything else (a hand-edited
 * or damaged file). */
static bool column_digest(sqlite3_stmt *st, int i, uint8_t out[DIGEST_SIZE]) {
        const void *b = sqlite3_column_blob(st, i);
        if (!b || sqlite3_column_bytes(st, i) != DIGEST_SIZE)
                return false;
        memcpy(out, b, DIGEST_SIZE);
        return true;
}

/* ---- open / close ------------------------------------------------------- */

static int migrate(agent_state *s, mp_error *err) {
        const char *what = "upgrading the state DB schema";
        int r = agent_state_begin(s, what, err);
        if (r < 0)
                return r;

        int64_t version = 0, app_id = 0, n_tables = 0;
        r = query_int(s, "PRAGMA user_version", &version, what, err);
        if (r >= 0)
                r = query_int(s, "PRAGMA application_id", &app_id, what, err);
        if (r >= 0 && version == 0) {
                /* Only an empty file becomes ours. */
                r = query_int(s, "SELECT count(*) FROM sqlite_master", &n_tables, what, err);
                if (r >= 0 && n_tables != 0)
                        r = mp_error_set(err, -EBADMSG, s->path, -1,
                                         "not a modelprov state DB (an SQLite database of another application)");
                else if (r >= 0 && app_id == 0) {
                        char sql[64];
                        snprintf(sql, sizeof(sql), "PRAGMA application_id = %d", STATE_APPLICATION_ID);
                        r = exec_sql(s, sql, what, err);
                }
        }
        for (int64_t v = version; r >= 0 && v < STATE_SCHEMA_VERSION; v++) {
                char sql[64];
                r = exec_sql(s, migrations[v], what, err);
                snprintf(sql, sizeof(sql), "PRAGMA user_version = %lld", (long long) v + 1);
                if (r >= 0)
                        r = exec_sql(s, sql, what, err);
        }
        return agent_state_end(s, r, what, err);
}

/* Is this our file, in a version this build understands?  Upgrades it when
 * it may write (the agent); `modelprov status` reads only the current
 * version. */
static int check_schema(agent_state *s, mp_error *err) {
        const char *what = "reading the state DB";
        int64_t app_id, version, n_tables;
        int r = query_int(s, "PRAGMA application_id", &app_id, what, err);
        if (r >= 0)
                r = query_int(s, "PRAGMA user_version", &version, what, err);
        if (r >= 0)
                r = query_int(s, "SELECT count(*) FROM sqlite_master", &n_tables, what, err);
        if (r < 0)
                return r;

        bool empty = app_id == 0 && version == 0 && n_tables == 0;
        if (!empty && app_id != STATE_APPLICATION_ID)
                return mp_error_set(err, -EBADMSG, s->path, -1,
                                    "not a modelprov state DB (an SQLite database of another application)");
        if (version > STATE_SCHEMA_VERSION)
                return mp_error_set(err, -ENOTSUP, s->path, -1,
                                    "state DB schema version %lld is newer than this modelprov supports (%d)",
                                    (long long) version, STATE_SCHEMA_VERSION);
        if (version < STATE_SCHEMA_VERSION) {
                if (s->readonly)
                        return mp_error_set(err, -ENOTSUP, s->path, -1,
                                            "state DB schema version %lld is older than this modelprov reads (%d):"
                                            " start modelprovd once to upgrade it", (long long) version,
                                            STATE_SCHEMA_VERSION);
                r = migrate(s, err);
                if (r >= 0)
                        r = query_int(s, "PRAGMA user_version", &version, what, err);
                if (r < 0)
                        return r;
                if (version != STATE_SCHEMA_VERSION)
                        return mp_error_set(err, -ENOTSUP, s->path, -1, "state DB schema version %lld not supported",
                                            (long long) version);
        }
        return 0;
}

void agent_state_close(agent_state *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n_stmts; i++)
                sqlite3_finalize(s->stmts[i].stmt);
        sqlite3_close(s->db);
        free(s->path);
        free(s);
}

/* Creates the file mode 0600 before SQLite opens it: it holds the host
 * key, SQLite would create it with the umask's mode, and it gives the -wal
 * and -shm files the mode of the main file.  An existing file is left
 * alone here: it is tightened only once it proved to be a state DB
 * (make_private()), never a file some option pointed at by mistake. */
static int create_file(const char *path, mp_error *err) {
        _cleanup_(closep) int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        if (fd < 0 && errno == EEXIST)
                return 0;
        if (fd < 0)
                return mp_error_set(err, -errno, path, -1, "cannot create the state DB: %s", strerror(errno));
        if (fchmod(fd, 0600) < 0)
                return mp_error_set(err, -errno, path, -1, "cannot make the state DB private (mode 0600): %s",
                                    strerror(errno));
        return 0;
}

static int make_private(const char *path, mp_error *err) {
        struct stat st;
        if (stat(path, &st) < 0)
                return mp_error_set(err, -errno, path, -1, "cannot open the state DB: %s", strerror(errno));
        if ((st.st_mode & 0077) != 0 && chmod(path, st.st_mode & 0700) < 0)
                return mp_error_set(err, -errno, path, -1, "cannot make the state DB private (mode 0600): %s",
                                    strerror(errno));
        return 0;
}

static int open_common(const char *path, bool readonly, agent_state **ret, mp_error *err) {
        assert(path && ret);

        if (!readonly) {
                int r = create_file(path, err);
                if (r < 0)
                        return r;
        }
        /* Read-only: a missing file is -ENOENT, and SQLite must not make
         * one. */
        struct stat st;
        if (stat(path, &st) < 0)
                return mp_error_set(err, -errno, path, -1, "cannot open the state DB: %s", strerror(errno));
        if (!S_ISREG(st.st_mode))
                return mp_error_set(err, -EISDIR, path, -1, "not a modelprov state DB (not a regular file)");

        _cleanup_(agent_state_closep) agent_state *s = calloc(1, sizeof(*s));
        if (!s || !(s->path = strdup(path)))
                return mp_error_set(err, -ENOMEM, path, -1, "out of memory");
        s->readonly = readonly;

        /* NOMUTEX: a handle is used by one thread at a time (state.h). */
        int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX;
        int rc = sqlite3_open_v2(path, &s->db, flags, NULL);
        if (rc != SQLITE_OK)
                return agent_state_sql_error(s, rc, "cannot open the state DB", err);
        sqlite3_extended_result_codes(s->db, 1);
        sqlite3_busy_timeout(s->db, STATE_BUSY_TIMEOUT_MS);

        /* The first read tells a foreign file (SQLITE_NOTADB) before WAL is
         * switched on, which would write to it. */
        int64_t ignored;
        int r = query_int(s, "PRAGMA application_id", &ignored, "opening the state DB", err);
        if (r >= 0 && !readonly)
                r = exec_sql(s, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON",
                             "opening the state DB", err);
        else if (r >= 0)
                r = exec_sql(s, "PRAGMA query_only = ON", "opening the state DB", err);
        if (r >= 0)
                r = check_schema(s, err);
        if (r >= 0 && !readonly)
                r = make_private(path, err);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(s);
        return 0;
}

int agent_state_open(const char *path, agent_state **ret, mp_error *err) {
        return open_common(path, false, ret, err);
}

int agent_state_open_readonly(const char *path, agent_state **ret, mp_error *err) {
        return open_common(path, true, ret, err);
}

struct sqlite3 *agent_state_db(agent_state *s) {
        assert(s);
        return s->db;
}

int agent_state_check(agent_state *s, mp_error *err) {
        assert(s);
        const char *what = "checking the state DB";
        _cleanup_(mp_sqlite_finalizep) sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(s->db, "PRAGMA integrity_check", -1, &st, NULL);
        if (rc != SQLITE_OK)
                return agent_state_sql_error(s, rc, what, err);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return agent_state_sql_error(s, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, what, err);
        const char *first = column_text(st, 0);
        if (strcmp(first, "ok") != 0)
                return mp_error_set(err, -EUCLEAN, s->path, -1, "the state DB failed its integrity check: %.200s",
                                    first);
        return 0;
}

/* ---- meta --------------------------------------------------------------- */

static const char SQL_META_GET[] = "SELECT value FROM meta WHERE key = ?1";
static const char SQL_META_SET[] = "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)";
static const char SQL_META_DELETE[] = "DELETE FROM meta WHERE key = ?1";

int agent_state_get_meta(agent_state *s, const char *key, char **ret) {
        assert(s && key && ret);
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, SQL_META_GET, &st, "reading meta", NULL);
        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        char *v = NULL;
        if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL && !(v = column_strdup(st, 0)))
                r = -ENOMEM;
        else if (rc != SQLITE_ROW && rc != SQLITE_DONE)
                r = agent_state_sql_error(s, rc, "reading meta", NULL);
        sqlite3_reset(st);
        if (r < 0)
                return r;
        *ret = v;
        return 0;
}

int agent_state_set_meta(agent_state *s, const char *key, const char *value) {
        assert(s && key);
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, value ? SQL_META_SET : SQL_META_DELETE, &st, "writing meta", NULL);
        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (value)
                sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
        return agent_state_step_done(s, st, "writing meta", NULL);
}

int agent_state_get_meta_u64(agent_state *s, const char *key, uint64_t *ret) {
        assert(s && key && ret);
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, SQL_META_GET, &st, "reading meta", NULL);
        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        uint64_t v = 0;
        if (rc == SQLITE_ROW) {
                /* Written by agent_state_set_meta_u64() as an integer; text
                 * is accepted when it is a plain decimal number. */
                if (sqlite3_column_type(st, 0) == SQLITE_INTEGER && sqlite3_column_int64(st, 0) >= 0)
                        v = (uint64_t) sqlite3_column_int64(st, 0);
                else if (sqlite3_column_type(st, 0) != SQLITE_NULL) {
                        const char *t = column_text(st, 0);
                        char *end;
                        errno = 0;
                        unsigned long long u = strtoull(t, &end, 10);
                        if (errno || end == t || *end || t[0] == '-')
                                r = -EBADMSG;
                        v = u;
                }
        } else if (rc != SQLITE_DONE)
                r = agent_state_sql_error(s, rc, "reading meta", NULL);
        sqlite3_reset(st);
        if (r < 0)
                return r;
        *ret = v;
        return 0;
}

int agent_state_set_meta_u64(agent_state *s, const char *key, uint64_t value) {
        assert(s && key);
        if (value > INT64_MAX)
                return -ERANGE;
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, SQL_META_SET, &st, "writing meta", NULL);
        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (int64_t) value);
        return agent_state_step_done(s, st, "writing meta", NULL);
}

/* ---- files -------------------------------------------------------------- */

void agent_file_stat_from(agent_file_stat *fs, const struct stat *st) {
        assert(fs && st);
        *fs = (agent_file_stat) {
                .dev = (uint64_t) st->st_dev,
                .ino = (uint64_t) st->st_ino,
                .size = (uint64_t) st->st_size,
                .mtime_ns = (int64_t) st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec,
                .ctime_ns = (int64_t) st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec,
        };
}

bool agent_file_stat_same(const agent_file_stat *a, const agent_file_stat *b) {
        assert(a && b);
        return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns;
}

bool agent_file_stat_identical(const agent_file_stat *a, const agent_file_stat *b) {
        return agent_file_stat_same(a, b) && a->ctime_ns == b->ctime_ns;
}

void agent_file_done(agent_file *f) {
        if (!f)
                return;
        free(f->path);
        free(f->model_root);
        *f = (agent_file) {0};
}

#define FILE_COLUMNS "path, dev, ino, size, mtime_ns, ctime_ns, sha256, model_root"

/* A files row (FILE_COLUMNS) into f, which owns copies. */
static int file_from_row(sqlite3_stmt *st, agent_file *f) {
        *f = (agent_file) {
                .stat = {
                        /* dev and ino are stored as their two's complement
                         * bit pattern: SQLite integers are signed. */
                        .dev = (uint64_t) sqlite3_column_int64(st, 1),
                        .ino = (uint64_t) sqlite3_column_int64(st, 2),
                        .size = (uint64_t) sqlite3_column_int64(st, 3),
                        .mtime_ns = sqlite3_column_int64(st, 4),
                        .ctime_ns = sqlite3_column_int64(st, 5),
                },
        };
        f->has_sha256 = column_digest(st, 6, f->sha256);
        f->path = column_strdup(st, 0);
        if (sqlite3_column_type(st, 7) != SQLITE_NULL)
                f->model_root = column_strdup(st, 7);
        if (!f->path || (sqlite3_column_type(st, 7) != SQLITE_NULL && !f->model_root)) {
                agent_file_done(f);
                return -ENOMEM;
        }
        return 0;
}

/* Steps st (bound, a FILE_COLUMNS query) for its first row. */
static int one_file(agent_state *s, sqlite3_stmt *st, agent_file *ret) {
        int rc = sqlite3_step(st);
        int r = rc == SQLITE_ROW ? file_from_row(st, ret)
                : rc == SQLITE_DONE ? -ENOENT
                : agent_state_sql_error(s, rc, "reading files", NULL);
        sqlite3_reset(st);
        return r;
}

static const char SQL_FILE_GET[] = "SELECT " FILE_COLUMNS " FROM files WHERE path = ?1";
static const char SQL_FILE_BY_STAT[] = "SELECT " FILE_COLUMNS " FROM files"
                                       " WHERE dev = ?1 AND ino = ?2 AND size = ?3 AND mtime_ns = ?4"
                                       " ORDER BY sha256 IS NULL, path LIMIT 1";
static const char SQL_FILE_ALL[] = "SELECT " FILE_COLUMNS " FROM files ORDER BY path";

int agent_state_get_file(agent_state *s, const char *path, agent_file *ret) {
        assert(s && path && ret);
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, SQL_FILE_GET, &st, "reading files", NULL);
        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
        return one_file(s, st, ret);
}

int agent_state_find_file_by_stat(agent_state *s, const agent_file_stat *fs, agent_file *ret) {
        assert(s && fs && ret);
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, SQL_FILE_BY_STAT, &st, "reading files", NULL);
        if (r < 0)
                return r;
        sqlite3_bind_int64(st, 1, (int64_t) fs->dev);
        sqlite3_bind_int64(st, 2, (int64_t) fs->ino);
        sqlite3_bind_int64(st, 3, (int64_t) fs->size);
        sqlite3_bind_int64(st, 4, fs->mtime_ns);
        return one_file(s, st, ret);
}

/* Steps the statement sql through its rows, calling row() on each until it
 * returns < 0 (returned as is); the statement is reset either way. */
static int each_row(agent_state *s, const char *sql, const char *what, int (*row)(sqlite3_stmt *st, void *ctx),
                    void *ctx) {
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, sql, &st, what, NULL);
        if (r < 0)
                return r;
        int rc;
        while (r >= 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
                r = row(st, ctx);
        if (r >= 0 && rc != SQLITE_DONE)
                r = agent_state_sql_error(s, rc, what, NULL);
        sqlite3_reset(st);
        return r < 0 ? r : 0;
}

typedef struct file_visit {
        int (*cb)(void *userdata, const agent_file *f);
        void *userdata;
} file_visit;

static int visit_file_row(sqlite3_stmt *st, void *ctx) {
        file_visit *v = ctx;
        agent_file f;
        int r = file_from_row(st, &f);
        if (r >= 0)
                r = v->cb(v->userdata, &f);
        agent_file_done(&f);
        return r;
}

int agent_state_foreach_file(agent_state *s, int (*cb)(void *userdata, const agent_file *f), void *userdata) {
        assert(s && cb);
        return each_row(s, SQL_FILE_ALL, "reading files", visit_file_row, &(file_visit) {cb, userdata});
}

/* Paths under a directory are matched as a range of the primary key:
 * dir + "/" <= path < dir + "0" ('0' follows '/'), which the index serves;
 * LIKE would scan and would read '%' and '_' in names as wildcards. */
static const char SQL_FILES_FORGET[] = "DELETE FROM files WHERE path = ?1 OR (path > ?1 || '/' AND path < ?1 || '0')";

int agent_state_forget_files(agent_state *s, const char *path) {
        assert(s && path);
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, SQL_FILES_FORGET, &st, "forgetting files", NULL);
        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
        r = agent_state_step_done(s, st, "forgetting files", NULL);
        return r < 0 ? r : sqlite3_changes(s->db);
}

/* ---- models ------------------------------------------------------------- */

void agent_model_done(agent_model *m) {
        if (!m)
                return;
        free(m->root);
        free(m->name);
        free(m->layout);
        free(m->format);
        *m = (agent_model) {0};
}

#define MODEL_COLUMNS "root, digest, name, layout, format, bytes, first_seen, changed_at"

static int model_from_row(sqlite3_stmt *st, agent_model *m) {
        *m = (agent_model) {
                .bytes = (uint64_t) sqlite3_column_int64(st, 5),
                .first_seen = sqlite3_column_int64(st, 6),
                .changed_at = sqlite3_column_int64(st, 7),
        };
        if (!column_digest(st, 1, m->digest))
                return -EBADMSG;
        m->root = column_strdup(st, 0);
        m->name = column_strdup(st, 2);
        m->layout = column_strdup(st, 3);
        m->format = column_strdup(st, 4);
        if (!m->root || !m->name || !m->layout || !m->format) {
                agent_model_done(m);
                return -ENOMEM;
        }
        return 0;
}

static const char SQL_MODEL_GET[] = "SELECT " MODEL_COLUMNS ", record FROM models WHERE root = ?1";
static const char SQL_MODEL_ALL[] = "SELECT " MODEL_COLUMNS " FROM models ORDER BY root";

int agent_state_get_model(agent_state *s, const char *root, agent_model *ret, mp_fingerprint **ret_fp) {
        assert(s && root);
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, SQL_MODEL_GET, &st, "reading models", NULL);
        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, root, -1, SQLITE_STATIC);

        agent_model m = {0};
        _cleanup_(mp_fingerprint_freep) mp_fingerprint *fp = NULL;
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                r = model_from_row(st, &m);
                if (r >= 0 && ret_fp) {
                        const void *b = sqlite3_column_blob(st, 8);
                        size_t n = (size_t) sqlite3_column_bytes(st, 8);
                        r = b ? mp_fingerprint_unpack(s->path, b, n, &fp, NULL) : -EBADMSG;
                }
        } else
                r = rc == SQLITE_DONE ? -ENOENT : agent_state_sql_error(s, rc, "reading models", NULL);
        sqlite3_reset(st);
        if (r < 0) {
                agent_model_done(&m);
                if (ret_fp)
                        *ret_fp = NULL;
                return r;
        }
        if (ret)
                *ret = m;
        else
                agent_model_done(&m);
        if (ret_fp)
                *ret_fp = TAKE_PTR(fp);
        return 0;
}

typedef struct model_visit {
        int (*cb)(void *userdata, const agent_model *m);
        void *userdata;
} model_visit;

static int visit_model_row(sqlite3_stmt *st, void *ctx) {
        model_visit *v = ctx;
        agent_model m;
        int r = model_from_row(st, &m);
        if (r >= 0)
                r = v->cb(v->userdata, &m);
        agent_model_done(&m);
        return r;
}

int agent_state_foreach_model(agent_state *s, int (*cb)(void *userdata, const agent_model *m), void *userdata) {
        assert(s && cb);
        return each_row(s, SQL_MODEL_ALL, "reading models", visit_model_row, &(model_visit) {cb, userdata});
}

/* Roots of models that own a file under dir, are dir, or lie under it (a
 * directory of models removed at once). */
static const char SQL_MODELS_UNDER[] =
        "SELECT model_root FROM files WHERE model_root IS NOT NULL"
        "   AND (path = ?1 OR (path > ?1 || '/' AND path < ?1 || '0'))"
        " UNION SELECT root FROM models WHERE root = ?1 OR (root > ?1 || '/' AND root < ?1 || '0')"
        " ORDER BY 1";

int agent_state_models_under(agent_state *s, const char *dir, char ***ret_roots, size_t *ret_n) {
        assert(s && dir && ret_roots && ret_n);
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, SQL_MODELS_UNDER, &st, "reading models", NULL);
        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, dir, -1, SQLITE_STATIC);

        char **roots = NULL;
        size_t n = 0, allocated = 0;
        int rc;
        while (r >= 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                /* One more slot for a NULL terminator: callers may walk
                 * either way. */
                r = MP_GROW(roots, allocated, n + 2);
                if (r >= 0 && !(roots[n] = column_strdup(st, 0)))
                        r = -ENOMEM;
                if (r >= 0)
                        roots[++n] = NULL;
        }
        if (r >= 0 && rc != SQLITE_DONE)
                r = agent_state_sql_error(s, rc, "reading models", NULL);
        sqlite3_reset(st);
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        free(roots[i]);
                free(roots);
                return r;
        }
        *ret_roots = roots;
        *ret_n = n;
        return 0;
}

/* ---- commits ------------------------------------------------------------ */

static ProtobufCBinaryData digest_field(const uint8_t *d) {
        return (ProtobufCBinaryData) { .len = DIGEST_SIZE, .data = (uint8_t *) d };
}

static const char SQL_MODEL_DIGEST[] = "SELECT digest FROM models WHERE root = ?1";
static const char SQL_MODEL_INSERT[] =
        "INSERT INTO models (root, digest, name, layout, format, bytes, first_seen, changed_at, checked_at, record)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?7, ?8)";
static const char SQL_MODEL_UPDATE[] =
        "UPDATE models SET digest = ?2, name = ?3, layout = ?4, format = ?5, bytes = ?6, changed_at = ?7,"
        " checked_at = ?7, record = ?8 WHERE root = ?1";
static const char SQL_MODEL_CHECKED[] = "UPDATE models SET checked_at = max(checked_at, ?2) WHERE root = ?1";
static const char SQL_FILES_DETACH[] = "UPDATE files SET model_root = NULL WHERE model_root = ?1";
static const char SQL_FILE_UPSERT[] =
        "INSERT INTO files (path, dev, ino, size, mtime_ns, ctime_ns, sha256, model_root)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (path) DO UPDATE SET"
        " dev = excluded.dev, ino = excluded.ino, size = excluded.size, mtime_ns = excluded.mtime_ns,"
        " ctime_ns = excluded.ctime_ns, sha256 = excluded.sha256, model_root = excluded.model_root";
static const char SQL_FILES_OF_MODEL_DELETE[] = "DELETE FROM files WHERE model_root = ?1";
static const char SQL_MODEL_DELETE[] = "DELETE FROM models WHERE root = ?1";
static const char SQL_MATCHES_OF_ROOT_DELETE[] = "DELETE FROM scan_matches WHERE root = ?1";
static const char SQL_FINDING_INSERT[] =
        "INSERT OR IGNORE INTO findings (path, kind, detail, first_seen) VALUES (?1, ?2, ?3, ?4)";
static const char SQL_FINDINGS_CLEAR[] = "DELETE FROM findings WHERE path = ?1";
static const char SQL_MATCH_INSERT[] =
        "INSERT OR IGNORE INTO scan_matches (root, digest, entry, verdict, score, relation, first_seen)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/* The stored digest of the model at root: 1 when found, 0 when none. */
static int stored_digest(agent_state *s, const char *root, uint8_t out[DIGEST_SIZE], const char *what,
                         mp_error *err) {
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, SQL_MODEL_DIGEST, &st, what, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, root, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                /* A damaged digest reads as all zeros, so "changed": the
                 * row is rewritten. */
                if (!column_digest(st, 0, out))
                        memset(out, 0, DIGEST_SIZE);
                r = 1;
        } else
                r = rc == SQLITE_DONE ? 0 : agent_state_sql_error(s, rc, what, err);
        sqlite3_reset(st);
        return r;
}

/* Inserts a finding row; 1 when it is new, 0 when known. */
static int insert_finding(agent_state *s, const char *path, const char *kind, const char *detail,
                          int64_t observed_at, const char *what, mp_error *err) {
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, SQL_FINDING_INSERT, &st, what, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, detail ? detail : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, observed_at);
        r = agent_state_step_done(s, st, what, err);
        return r < 0 ? r : sqlite3_changes(s->db) > 0;
}

/* Records a finding and, when new, queues its FINDING event (inside the
 * caller's transaction).  digest may be NULL.  1 when new. */
static int finding_with_event(agent_state *s, const char *path, const char *kind, int64_t offset, const char *detail,
                              const uint8_t *digest, int64_t observed_at, const char *what, mp_error *err) {
        int r = insert_finding(s, path, kind, detail, observed_at, what, err);
        if (r <= 0)
                return r;
        Modelprov__V1__Finding f = MODELPROV__V1__FINDING__INIT;
        f.kind = (char *) kind;
        f.file = (char *) path;
        f.offset = offset;
        f.detail = (char *) (detail ? detail : "");
        Modelprov__V1__Event ev = MODELPROV__V1__EVENT__INIT;
        ev.kind = MODELPROV__V1__EVENT_KIND__FINDING;
        ev.observed_at = observed_at;
        ev.path = (char *) path;
        if (digest)
                ev.model_digest = digest_field(digest);
        ev.finding = &f;
        r = agent_outbox_append_full(s, &ev, err);
        return r < 0 ? r : 1;
}

static int upsert_files(agent_state *s, const agent_model_result *res, const char *what, mp_error *err) {
        const mp_model *m = res->model;
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, SQL_FILES_DETACH, &st, what, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, res->root, -1, SQLITE_STATIC);
        r = agent_state_step_done(s, st, what, err);
        for (size_t i = 0; r >= 0 && i < m->n_files; i++) {
                const agent_file_stat *fs = &res->file_stats[i];
                r = agent_state_stmt(s, SQL_FILE_UPSERT, &st, what, err);
                if (r < 0)
                        break;
                sqlite3_bind_text(st, 1, m->files[i].path, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 2, (int64_t) fs->dev);
                sqlite3_bind_int64(st, 3, (int64_t) fs->ino);
                sqlite3_bind_int64(st, 4, (int64_t) fs->size);
                sqlite3_bind_int64(st, 5, fs->mtime_ns);
                sqlite3_bind_int64(st, 6, fs->ctime_ns);
                if (m->files[i].digested)
                        sqlite3_bind_blob(st, 7, m->files[i].sha256, DIGEST_SIZE, SQLITE_STATIC);
                sqlite3_bind_text(st, 8, res->root, -1, SQLITE_STATIC);
                r = agent_state_step_done(s, st, what, err);
        }
        return r;
}

/* Writes the models row for kind (ADDED: insert, CHANGED: rewrite,
 * UNCHANGED: only the time of the check). */
static int write_model_row(agent_state *s, const agent_model_result *res, int kind, const uint8_t *record,
                           size_t record_len, const char *what, mp_error *err) {
        const mp_model *m = res->model;
        const mp_fingerprint *fp = res->fingerprint;
        sqlite3_stmt *st;
        int r;

        if (kind == AGENT_MODEL_UNCHANGED) {
                r = agent_state_stmt(s, SQL_MODEL_CHECKED, &st, what, err);
                if (r < 0)
                        return r;
                sqlite3_bind_text(st, 1, res->root, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 2, res->observed_at);
                return agent_state_step_done(s, st, what, err);
        }

        uint64_t bytes = 0;
        for (size_t i = 0; i < m->n_files; i++)
                bytes += m->files[i].size;
        r = agent_state_stmt(s, kind == AGENT_MODEL_ADDED ? SQL_MODEL_INSERT : SQL_MODEL_UPDATE, &st, what, err);
        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, res->root, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, fp->model_digest.data, DIGEST_SIZE, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, m->name ? m->name : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, mp_layout_name(m->layout), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, mp_format_name(m->format), -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, (int64_t) bytes);
        sqlite3_bind_int64(st, 7, res->observed_at);
        sqlite3_bind_blob(st, 8, record, (int) record_len, SQLITE_STATIC);
        return agent_state_step_done(s, st, what, err);
}

static int commit_model_locked(agent_state *s, const agent_model_result *res, const uint8_t *record,
                               size_t record_len, int *ret_kind, const char *what, mp_error *err) {
        const mp_model *m = res->model;
        const mp_fingerprint *fp = res->fingerprint;
        uint8_t old[DIGEST_SIZE];

        int r = stored_digest(s, res->root, old, what, err);
        if (r < 0)
                return r;
        int kind = r == 0 ? AGENT_MODEL_ADDED
                 : memcmp(old, fp->model_digest.data, DIGEST_SIZE) != 0 ? AGENT_MODEL_CHANGED
                 : AGENT_MODEL_UNCHANGED;

        r = write_model_row(s, res, kind, record, record_len, what, err);
        if (r >= 0)
                r = upsert_files(s, res, what, err);
        if (r >= 0 && kind != AGENT_MODEL_UNCHANGED) {
                Modelprov__V1__Event ev = MODELPROV__V1__EVENT__INIT;
                ev.kind = kind == AGENT_MODEL_ADDED ? MODELPROV__V1__EVENT_KIND__MODEL_ADDED
                                                    : MODELPROV__V1__EVENT_KIND__MODEL_CHANGED;
                ev.observed_at = res->observed_at;
                ev.path = (char *) res->root;
                ev.model_digest = fp->model_digest;
                ev.fingerprint = (mp_fingerprint *) fp;
                r = agent_outbox_append_full(s, &ev, err);
        }
        for (size_t i = 0; r >= 0 && i < m->n_findings; i++) {
                const mp_finding *f = &m->findings[i];
                const char *path = f->file && f->file[0] ? f->file : res->root;
                r = finding_with_event(s, path, mp_finding_kind_name(f->kind), f->offset, f->detail,
                                       fp->model_digest.data, res->observed_at, what, err);
        }
        if (r >= 0)
                *ret_kind = kind;
        return r;
}

int agent_state_commit_model(agent_state *s, const agent_model_result *res, int *ret_kind, mp_error *err) {
        assert(s && res && res->root && res->model && res->fingerprint && ret_kind);
        assert(res->model->n_files == 0 || res->file_stats);
        const char *what = "recording a model";

        if (res->fingerprint->model_digest.len != DIGEST_SIZE)
                return mp_error_set(err, -EINVAL, res->root, -1, "%s: the fingerprint has no model digest", what);
        _cleanup_(freep) uint8_t *record = NULL;
        size_t record_len;
        int r = mp_fingerprint_pack(res->fingerprint, &record, &record_len);
        if (r < 0)
                return mp_error_set(err, r, res->root, -1, "%s: cannot pack the fingerprint", what);

        r = agent_state_begin(s, what, err);
        if (r < 0)
                return r;
        int kind = AGENT_MODEL_UNCHANGED;
        r = commit_model_locked(s, res, record, record_len, &kind, what, err);
        r = agent_state_end(s, r, what, err);
        if (r < 0)
                return r;
        *ret_kind = kind;
        return 0;
}

int agent_state_remove_model(agent_state *s, const char *root, int64_t observed_at, mp_error *err) {
        assert(s && root);
        const char *what = "removing a model";
        uint8_t old[DIGEST_SIZE];

        int r = agent_state_begin(s, what, err);
        if (r < 0)
                return r;
        r = stored_digest(s, root, old, what, err);
        if (r == 0)
                r = -ENOENT;    /* nothing to tell; no error text: not a failure */
        static const char *const deletes[] = { SQL_FILES_OF_MODEL_DELETE, SQL_MATCHES_OF_ROOT_DELETE,
                                               SQL_MODEL_DELETE };
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(deletes); i++) {
                sqlite3_stmt *st;
                r = agent_state_stmt(s, deletes[i], &st, what, err);
                if (r < 0)
                        break;
                sqlite3_bind_text(st, 1, root, -1, SQLITE_STATIC);
                r = agent_state_step_done(s, st, what, err);
        }
        if (r >= 0) {
                Modelprov__V1__Event ev = MODELPROV__V1__EVENT__INIT;
                ev.kind = MODELPROV__V1__EVENT_KIND__MODEL_REMOVED;
                ev.observed_at = observed_at;
                ev.path = (char *) root;
                ev.model_digest = digest_field(old);
                r = agent_outbox_append_full(s, &ev, err);
        }
        return agent_state_end(s, r, what, err);
}

int agent_state_add_finding(agent_state *s, const char *path, mp_finding_kind kind, const char *detail,
                            int64_t observed_at, mp_error *err) {
        assert(s && path);
        const char *what = "recording a finding";
        int r = agent_state_begin(s, what, err);
        if (r < 0)
                return r;
        r = finding_with_event(s, path, mp_finding_kind_name(kind), -1, detail, NULL, observed_at, what, err);
        return agent_state_end(s, r, what, err);
}

int agent_state_clear_findings(agent_state *s, const char *path) {
        assert(s && path);
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, SQL_FINDINGS_CLEAR, &st, "forgetting findings", NULL);
        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
        r = agent_state_step_done(s, st, "forgetting findings", NULL);
        return r < 0 ? r : sqlite3_changes(s->db);
}

int agent_state_add_scan_match(agent_state *s, const char *root, const uint8_t digest[32], const char *entry,
                               const char *verdict, double score, const char *relation, int64_t observed_at,
                               mp_error *err) {
        assert(s && root && digest && entry);
        const char *what = "recording a scan match";
        sqlite3_stmt *st;
        int r = agent_state_begin(s, what, err);
        if (r < 0)
                return r;
        r = agent_state_stmt(s, SQL_MATCH_INSERT, &st, what, err);
        if (r >= 0) {
                sqlite3_bind_text(st, 1, root, -1, SQLITE_STATIC);
                sqlite3_bind_blob(st, 2, digest, DIGEST_SIZE, SQLITE_STATIC);
                sqlite3_bind_text(st, 3, entry, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 4, verdict ? verdict : "", -1, SQLITE_STATIC);
                sqlite3_bind_double(st, 5, score);
                sqlite3_bind_text(st, 6, relation ? relation : "", -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 7, observed_at);
                r = agent_state_step_done(s, st, what, err);
        }
        if (r >= 0 && sqlite3_changes(s->db) > 0) {
                Modelprov__V1__ScanMatch match = MODELPROV__V1__SCAN_MATCH__INIT;
                match.catalog_entry = (char *) entry;
                match.verdict = (char *) (verdict ? verdict : "");
                match.score = score;
                match.relation = (char *) (relation ? relation : "");
                Modelprov__V1__Event ev = MODELPROV__V1__EVENT__INIT;
                ev.kind = MODELPROV__V1__EVENT_KIND__SCAN_MATCH;
                ev.observed_at = observed_at;
                ev.path = (char *) root;
                ev.model_digest = digest_field(digest);
                ev.match = &match;
                r = agent_outbox_append_full(s, &ev, err);
                if (r >= 0)
                        r = 1;
        } else if (r >= 0)
                r = 0;
        return agent_state_end(s, r, what, err);
}

/* ---- roots, findings, counts -------------------------------------------- */

static const char SQL_ROOTS_CLEAR[] = "DELETE FROM roots";
static const char SQL_ROOT_INSERT[] = "INSERT OR REPLACE INTO roots (path, present, updated_at) VALUES (?1, ?2, ?3)";
static const char SQL_ROOTS_ALL[] = "SELECT path, present, updated_at FROM roots ORDER BY path";
static const char SQL_FINDINGS_ALL[] =
        "SELECT path, kind, detail, first_seen FROM findings ORDER BY path, kind, detail";

int agent_state_set_roots(agent_state *s, const char *const *roots, const bool *exists) {
        assert(s && roots);
        const char *what = "recording the watch roots";
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t now = (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;

        int r = agent_state_begin(s, what, NULL);
        if (r < 0)
                return r;
        r = agent_state_run(s, SQL_ROOTS_CLEAR, what, NULL);
        for (size_t i = 0; r >= 0 && roots[i]; i++) {
                sqlite3_stmt *st;
                r = agent_state_stmt(s, SQL_ROOT_INSERT, &st, what, NULL);
                if (r < 0)
                        break;
                sqlite3_bind_text(st, 1, roots[i], -1, SQLITE_STATIC);
                sqlite3_bind_int(st, 2, exists && exists[i]);
                sqlite3_bind_int64(st, 3, now);
                r = agent_state_step_done(s, st, what, NULL);
        }
        return agent_state_end(s, r, what, NULL);
}

typedef struct root_visit {
        int (*cb)(void *userdata, const agent_root *r);
        void *userdata;
} root_visit;

static int visit_root_row(sqlite3_stmt *st, void *ctx) {
        root_visit *v = ctx;
        agent_root root = {
                .path = column_text(st, 0),
                .exists = sqlite3_column_int(st, 1) != 0,
                .updated_at = sqlite3_column_int64(st, 2),
        };
        return v->cb(v->userdata, &root);
}

int agent_state_foreach_root(agent_state *s, int (*cb)(void *userdata, const agent_root *r), void *userdata) {
        assert(s && cb);
        return each_row(s, SQL_ROOTS_ALL, "reading roots", visit_root_row, &(root_visit) {cb, userdata});
}

typedef struct finding_visit {
        int (*cb)(void *userdata, const agent_finding *f);
        void *userdata;
} finding_visit;

static int visit_finding_row(sqlite3_stmt *st, void *ctx) {
        finding_visit *v = ctx;
        agent_finding f = {
                .path = column_text(st, 0),
                .kind = column_text(st, 1),
                .detail = column_text(st, 2),
                .first_seen = sqlite3_column_int64(st, 3),
        };
        return v->cb(v->userdata, &f);
}

int agent_state_foreach_finding(agent_state *s, int (*cb)(void *userdata, const agent_finding *f),
                                void *userdata) {
        assert(s && cb);
        return each_row(s, SQL_FINDINGS_ALL, "reading findings", visit_finding_row, &(finding_visit) {cb, userdata});
}

static const char SQL_COUNTS[] =
        "SELECT (SELECT count(*) FROM files), (SELECT count(*) FROM models), (SELECT count(*) FROM findings),"
        " (SELECT count(*) FROM roots), count(*), coalesce(sum(length(event)), 0), coalesce(min(queued_at), 0)"
        " FROM outbox";

int agent_state_counts_get(agent_state *s, agent_state_counts *ret) {
        assert(s && ret);
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, SQL_COUNTS, &st, "counting", NULL);
        if (r < 0)
                return r;
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                *ret = (agent_state_counts) {
                        .files = (uint64_t) sqlite3_column_int64(st, 0),
                        .models = (uint64_t) sqlite3_column_int64(st, 1),
                        .findings = (uint64_t) sqlite3_column_int64(st, 2),
                        .roots = (uint64_t) sqlite3_column_int64(st, 3),
                        .outbox_pending = (uint64_t) sqlite3_column_int64(st, 4),
                        .outbox_bytes = (uint64_t) sqlite3_column_int64(st, 5),
                        .outbox_oldest = sqlite3_column_int64(st, 6),
                };
        else
                r = agent_state_sql_error(s, rc, "counting", NULL);
        sqlite3_reset(st);
        return r;
}
