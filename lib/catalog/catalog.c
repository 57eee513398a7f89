/* catalog.c - the SQLite catalog of fingerprints and the scan over it (see
 * catalog.h).
 *
 * SQLite reports failures as result codes and messages written for database
 * people; every call here goes through sql_error(), which turns them into a
 * negative errno and a sentence a user can act on, with the catalog path. */
#include "catalog/catalog.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/bump.h"
#include "util/macro.h"
#include "util/sqlite_util.h"
#include "util/strutil.h"

/* PRAGMA application_id: "mpca", so that `file` and we can tell the catalog
 * from any other SQLite database. */
#define CATALOG_APPLICATION_ID 0x6d706361
#define CATALOG_BUSY_TIMEOUT_MS 5000

struct mp_catalog {
        sqlite3 *db;
        char *path;
};


/* ---- errors ------------------------------------------------------------- */


static const char *sql_plain(int rc) {
        switch (rc & 0xff) {
        case SQLITE_NOTADB:
                return "not a modelprov catalog (not an SQLite database)";
        case SQLITE_CORRUPT:
                return "the catalog file is corrupt";
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return "database is locked (another modelprov process is writing it)";
        case SQLITE_READONLY:
                return "the catalog is read-only";
        case SQLITE_FULL:
                return "disk full";
        case SQLITE_NOMEM:
                return "out of memory";
        case SQLITE_IOERR:
                return "I/O error";
        case SQLITE_CANTOPEN:
                return "cannot open the catalog file";
        default:
                return NULL;
        }
}

/* Fills err for SQLite result code rc during `what` (NULL: say only what
 * went wrong); returns the errno. */
static int sql_error(const mp_catalog *c, int rc, const char *what, mp_error *err) {
        const char *plain = sql_plain(rc);
        const char *detail = plain ? plain : c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc);
        char why[128];
        int code = mp_sqlite_error_code(c->db, rc, why, sizeof(why));
        return mp_error_set(err, code, c->path, -1, "%s%s%s%s", what ? what : "", what ? ": " : "", detail, why);
}

static int exec_sql(mp_catalog *c, const char *sql, const char *what, mp_error *err) {
        int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
        return rc == SQLITE_OK ? 0 : sql_error(c, rc, what, err);
}

static int prepare(mp_catalog *c, const char *sql, sqlite3_stmt **ret, const char *what, mp_error *err) {
        int rc = sqlite3_prepare_v2(c->db, sql, -1, ret, NULL);
        return rc == SQLITE_OK ? 0 : sql_error(c, rc, what, err);
}

/* One integer from a single-row query (PRAGMAs, counts). */
static int query_int(mp_catalog *c, const char *sql, int64_t *ret, const char *what, mp_error *err) {
        _cleanup_(mp_sqlite_finalizep) sqlite3_stmt *s = NULL;
        int r = prepare(c, sql, &s, what, err);
        if (r < 0)
                return r;
        int rc = sqlite3_step(s);
        if (rc != SQLITE_ROW)
                return sql_error(c, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, what, err);
        *ret = sqlite3_column_int64(s, 0);
        return 0;
}

static const char *column_str(sqlite3_stmt *s, int i) {
        const unsigned char *t = sqlite3_column_text(s, i);
        return t ? (const char *) t : "";
}

/* ---- open --------------------------------------------------------------- */

static const char schema_sql[] =
        "CREATE TABLE entries ("
        "  id INTEGER PRIMARY KEY,"
        "  name TEXT UNIQUE NOT NULL,"
        "  model_digest BLOB,"
        "  source TEXT NOT NULL CHECK (source IN ('local', 'provenancekit')),"
        "  arch_hash TEXT,"
        "  family_hash TEXT,"
        "  param_bucket TEXT,"
        "  params INTEGER,"
        "  has_weights INTEGER NOT NULL,"
        "  added_at TEXT NOT NULL,"
        "  record BLOB NOT NULL);"
        "CREATE TABLE labels ("
        "  entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,"
        "  key TEXT NOT NULL,"
        "  value TEXT NOT NULL,"
        "  PRIMARY KEY (entry_id, key));"
        "CREATE INDEX labels_key_value ON labels(key, value);"
        "CREATE INDEX entries_param_bucket ON entries(param_bucket);"
        "CREATE INDEX entries_arch_hash ON entries(arch_hash);";

/* Creates the schema in an empty database, under the write lock so that two
 * processes creating the same catalog do not both do it. */
static int create_schema(mp_catalog *c, mp_error *err) {
        int r = exec_sql(c, "BEGIN IMMEDIATE", "creating the catalog", err);
        if (r < 0)
                return r;

        int64_t n_tables;
        r = query_int(c, "SELECT count(*) FROM sqlite_master", &n_tables, "creating the catalog", err);
        if (r >= 0 && n_tables == 0) {
                char pragmas[128];
                snprintf(pragmas, sizeof(pragmas), "PRAGMA application_id = %d; PRAGMA user_version = %d;",
                         CATALOG_APPLICATION_ID, MP_CATALOG_SCHEMA_VERSION);
                r = exec_sql(c, schema_sql, "creating the catalog", err);
                if (r >= 0)
                        r = exec_sql(c, pragmas, "creating the catalog", err);
        }
        if (r >= 0)
                r = exec_sql(c, "COMMIT", "creating the catalog", err);
        if (r < 0)
                sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        return r;
}

/* Is this our file, and one this version understands? */
static int check_schema(mp_catalog *c, bool create, mp_error *err) {
        int64_t app_id, version, n_tables;
        int r = query_int(c, "PRAGMA application_id", &app_id, "reading the catalog", err);
        if (r >= 0)
                r = query_int(c, "PRAGMA user_version", &version, "reading the catalog", err);
        if (r >= 0)
                r = query_int(c, "SELECT count(*) FROM sqlite_master", &n_tables, "reading the catalog", err);
        if (r < 0)
                return r;

        if (app_id == 0 && version == 0 && n_tables == 0) {
                if (!create)
                        return mp_error_set(err, -EBADMSG, c->path, -1,
                                            "not a modelprov catalog (an empty database)");
                r = create_schema(c, err);
                if (r < 0)
                        return r;
                return check_schema(c, false, err);
        }
        if (app_id != CATALOG_APPLICATION_ID)
                return mp_error_set(err, -EBADMSG, c->path, -1,
                                    "not a modelprov catalog (an SQLite database of another application)");
        if (version > MP_CATALOG_SCHEMA_VERSION)
                return mp_error_set(err, -ENOTSUP, c->path, -1,
                                    "catalog schema version %lld is newer than this modelprov supports (%d)",
                                    (long long) version, MP_CATALOG_SCHEMA_VERSION);
        if (version < 1)
                return mp_error_set(err, -EBADMSG, c->path, -1, "not a modelprov catalog (no schema version)");
        return 0;
}

int mp_catalog_open(const char *path, bool create, mp_catalog **ret, mp_error *err) {
        assert(path);
        assert(ret);

        struct stat st;
        if (stat(path, &st) < 0) {
                if (errno != ENOENT || !create)
                        return mp_error_set(err, -errno, path, -1, "cannot open the catalog: %s", strerror(errno));
        } else if (!S_ISREG(st.st_mode))
                return mp_error_set(err, -EISDIR, path, -1, "not a modelprov catalog (not a regular file)");

        _cleanup_(mp_catalog_closep) mp_catalog *c = calloc(1, sizeof(*c));
        if (!c || !(c->path = strdup(path)))
                return mp_error_set(err, -ENOMEM, path, -1, "out of memory");

        int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX;
        int rc = sqlite3_open_v2(path, &c->db, flags, NULL);
        if (rc != SQLITE_OK)
                return sql_error(c, rc, NULL, err);
        sqlite3_extended_result_codes(c->db, 1);
        sqlite3_busy_timeout(c->db, CATALOG_BUSY_TIMEOUT_MS);

        /* Records are tens of KiB: large pages keep each in a few pages
         * instead of a chain of a dozen overflow pages, which a scan walks
         * with a read per page.  Takes effect only on a new, empty file. */
        int r = exec_sql(c, "PRAGMA page_size = 65536", "opening the catalog", err);
        if (r >= 0)
                r = check_schema(c, create, err);
        if (r < 0)
                return r;
        r = exec_sql(c, "PRAGMA foreign_keys = ON", "opening the catalog", err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

void mp_catalog_close(mp_catalog *c) {
        if (!c)
                return;
        sqlite3_close(c->db);   /* every statement is finalized by its user */
        free(c->path);
        free(c);
}

const char *mp_catalog_path(const mp_catalog *c) {
        return c->path;
}

int mp_catalog_begin(mp_catalog *c, mp_error *err) {
        return exec_sql(c, "BEGIN IMMEDIATE", "starting a transaction", err);
}

int mp_catalog_commit(mp_catalog *c, mp_error *err) {
        return exec_sql(c, "COMMIT", "committing", err);
}

void mp_catalog_rollback(mp_catalog *c) {
        if (!sqlite3_get_autocommit(c->db))
                sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Savepoints make single writes atomic both alone and inside a transaction
 * opened with mp_catalog_begin(). */
static int savepoint(mp_catalog *c, mp_error *err) {
        return exec_sql(c, "SAVEPOINT catalog_write", "starting a write", err);
}

static int savepoint_end(mp_catalog *c, int r, mp_error *err) {
        if (r < 0) {
                sqlite3_exec(c->db, "ROLLBACK TO catalog_write; RELEASE catalog_write", NULL, NULL, NULL);
                return r;
        }
        int q = exec_sql(c, "RELEASE catalog_write", "committing", err);
        return q < 0 ? q : r;
}

/* ---- names and labels --------------------------------------------------- */

/* Valid UTF-8 without control characters: safe in SQLite TEXT, JSON and on
 * a terminal. */
static bool is_clean_text(const char *s) {
        size_t n = strlen(s);
        if (mp_utf8_invalid_at((const uint8_t *) s, n) != n)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
                        return false;
        return true;
}

int mp_catalog_check_name(const char *name, mp_error *err) {
        if (!name || !name[0])
                return mp_error_set(err, -EINVAL, NULL, -1, "an entry name must not be empty");
        if (strlen(name) > MP_CATALOG_NAME_MAX)
                return mp_error_set(err, -EINVAL, NULL, -1, "entry name longer than %d bytes", MP_CATALOG_NAME_MAX);
        if (!is_clean_text(name))
                return mp_error_set(err, -EINVAL, NULL, -1,
                                    "entry name is not valid UTF-8 or contains control characters");
        return 0;
}

int mp_catalog_check_label(const char *key, const char *value, mp_error *err) {
        char buf[MP_CATALOG_LABEL_KEY_MAX + 8];
        size_t n = key ? strlen(key) : 0;

        if (n == 0 || n > MP_CATALOG_LABEL_KEY_MAX)
                return mp_error_set(err, -EINVAL, NULL, -1, "a label key needs 1 to %d characters",
                                    MP_CATALOG_LABEL_KEY_MAX);
        if (strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:/-") != n)
                return mp_error_set(err, -EINVAL, NULL, -1,
                                    "label key '%s' may only use letters, digits and . _ : / -",
                                    mp_printable(buf, sizeof(buf), key));
        if (!value || strlen(value) > MP_CATALOG_LABEL_VALUE_MAX || !is_clean_text(value))
                return mp_error_set(err, -EINVAL, NULL, -1,
                                    "label '%s': the value must be UTF-8 text of at most %d bytes without control characters",
                                    key, MP_CATALOG_LABEL_VALUE_MAX);
        return 0;
}

/* Re-targets a check's error at the catalog file. */
static int check_in(const mp_catalog *c, int r, mp_error *err) {
        if (r < 0 && err)
                snprintf(err->file, sizeof(err->file), "%s", c->path);
        return r;
}

static int check_labels(const mp_catalog *c, const mp_label *labels, size_t n, mp_error *err) {
        for (size_t i = 0; i < n; i++) {
                int r = mp_catalog_check_label(labels[i].key, labels[i].value, err);
                if (r < 0)
                        return check_in(c, r, err);
                for (size_t j = 0; j < i; j++)
                        if (strcmp(labels[i].key, labels[j].key) == 0)
                                return mp_error_set(err, -EINVAL, c->path, -1, "label '%s' given twice",
                                                    labels[i].key);
        }
        return 0;
}

/* ---- add / remove ------------------------------------------------------- */

/* The existing entry called name: 1 with its id and source (malloc'd), 0
 * when there is none. */
static int find_entry(mp_catalog *c, const char *name, int64_t *ret_id, char **ret_source, mp_error *err) {
        _cleanup_(mp_sqlite_finalizep) sqlite3_stmt *s = NULL;
        int r = prepare(c, "SELECT id, source FROM entries WHERE name = ?", &s, "looking up an entry", err);
        if (r < 0)
                return r;
        sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
                return 0;
        if (rc != SQLITE_ROW)
                return sql_error(c, rc, "looking up an entry", err);
        *ret_id = sqlite3_column_int64(s, 0);
        if (!(*ret_source = strdup(column_str(s, 1))))
                return mp_error_set(err, -ENOMEM, c->path, -1, "out of memory");
        return 1;
}

static int delete_entry(mp_catalog *c, int64_t id, mp_error *err) {
        _cleanup_(mp_sqlite_finalizep) sqlite3_stmt *s = NULL;
        int r = prepare(c, "DELETE FROM entries WHERE id = ?", &s, "removing an entry", err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(s, 1, id);
        int rc = sqlite3_step(s);
        return rc == SQLITE_DONE ? 0 : sql_error(c, rc, "removing an entry", err);
}

static int insert_labels(mp_catalog *c, int64_t id, const mp_label *labels, size_t n, mp_error *err) {
        if (n == 0)
                return 0;
        _cleanup_(mp_sqlite_finalizep) sqlite3_stmt *s = NULL;
        int r = prepare(c, "INSERT INTO labels (entry_id, key, value) VALUES (?, ?, ?)", &s, "adding labels", err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                sqlite3_reset(s);
                sqlite3_bind_int64(s, 1, id);
                sqlite3_bind_text(s, 2, labels[i].key, -1, SQLITE_STATIC);
                sqlite3_bind_text(s, 3, labels[i].value, -1, SQLITE_STATIC);
                int rc = sqlite3_step(s);
                if (rc != SQLITE_DONE)
                        return sql_error(c, rc, "adding labels", err);
        }
        return 0;
}

/* Binds text, or NULL for an empty/absent string. */
static void bind_text_or_null(sqlite3_stmt *s, int i, const char *t) {
        if (t && t[0])
                sqlite3_bind_text(s, i, t, -1, SQLITE_STATIC);
        else
                sqlite3_bind_null(s, i);
}

static bool record_has_weights(const mp_fingerprint *fp) {
        if (fp->signals)
                return fp->signals->has_weights || fp->n_tensors > 0;
        return fp->n_tensors > 0;
}

static int insert_entry(mp_catalog *c, const char *name, const mp_fingerprint *fp, const char *source,
                        const char *bucket, const uint8_t *blob, size_t blob_len, int64_t *ret_id, mp_error *err) {
        _cleanup_(mp_sqlite_finalizep) sqlite3_stmt *s = NULL;
        int r = prepare(c,
                        "INSERT INTO entries (name, model_digest, source, arch_hash, family_hash, param_bucket,"
                        " params, has_weights, added_at, record)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), ?)",
                        &s, "adding an entry", err);
        if (r < 0)
                return r;

        uint64_t params = 0;
        (void) mp_param_estimate_record(fp, &params);   /* unknown stays NULL */

        sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
        if (fp->model_digest.len > 0)
                sqlite3_bind_blob(s, 2, fp->model_digest.data, (int) fp->model_digest.len, SQLITE_STATIC);
        else
                sqlite3_bind_null(s, 2);
        sqlite3_bind_text(s, 3, source, -1, SQLITE_STATIC);
        bind_text_or_null(s, 4, fp->signals ? fp->signals->arch_hash : NULL);
        bind_text_or_null(s, 5, fp->signals ? fp->signals->family_hash : NULL);
        bind_text_or_null(s, 6, bucket);
        /* SQLite integers are signed; a saturated estimate is stored as the maximum. */
        if (params > 0)
                sqlite3_bind_int64(s, 7, params > INT64_MAX ? INT64_MAX : (int64_t) params);
        else
                sqlite3_bind_null(s, 7);
        sqlite3_bind_int(s, 8, record_has_weights(fp));
        sqlite3_bind_blob64(s, 9, blob, blob_len, SQLITE_STATIC);

        int rc = sqlite3_step(s);
        if ((rc & 0xff) == SQLITE_CONSTRAINT)
                return mp_error_set(err, -EEXIST, c->path, -1, "an entry named '%s' already exists", name);
        if (rc != SQLITE_DONE)
                return sql_error(c, rc, "adding an entry", err);
        *ret_id = sqlite3_last_insert_rowid(c->db);
        return 0;
}

/* The bucket to store: the caller's (checked) or the record's estimate. */
static int entry_bucket(const mp_catalog *c, const mp_fingerprint *fp, const char *given, const char **ret,
                        mp_error *err) {
        if (given) {
                if (mp_param_bucket_from_name(given) < 0)
                        return mp_error_set(err, -EINVAL, c->path, -1, "unknown size bucket '%s'", given);
                *ret = given;
                return 0;
        }
        uint64_t params;
        *ret = mp_param_estimate_record(fp, &params) >= 0 ? mp_param_bucket_name(mp_param_bucket_of(params)) : NULL;
        return 0;
}

static int add_locked(mp_catalog *c, const char *name, const mp_fingerprint *fp, const mp_catalog_add_options *o,
                      const char *bucket, const uint8_t *blob, size_t blob_len, mp_error *err) {
        const char *source = o->source ? o->source : MP_CATALOG_SOURCE_LOCAL;
        _cleanup_(freep) char *old_source = NULL;
        int64_t id = 0;
        bool replaced = false;

        int r = find_entry(c, name, &id, &old_source, err);
        if (r < 0)
                return r;
        if (r > 0) {
                bool may = o->mode == MP_CATALOG_ADD_REPLACE ||
                           (o->mode == MP_CATALOG_ADD_REPLACE_SAME_SOURCE && strcmp(old_source, source) == 0);
                if (!may)
                        return mp_error_set(err, -EEXIST, c->path, -1, "an entry named '%s' already exists%s", name,
                                            o->mode == MP_CATALOG_ADD_NEW ? " (use --replace to replace it)"
                                                                          : " and comes from another source");
                r = delete_entry(c, id, err);
                if (r < 0)
                        return r;
                replaced = true;
        }
        r = insert_entry(c, name, fp, source, bucket, blob, blob_len, &id, err);
        if (r < 0)
                return r;
        r = insert_labels(c, id, o->labels, o->n_labels, err);
        if (r < 0)
                return r;
        return replaced;
}

int mp_catalog_add(mp_catalog *c, const char *name, const mp_fingerprint *fp, const mp_catalog_add_options *o,
                   mp_error *err) {
        static const mp_catalog_add_options defaults = {0};
        assert(c);
        assert(fp);

        if (!o)
                o = &defaults;
        assert(o->labels || o->n_labels == 0);
        if (o->source && strcmp(o->source, MP_CATALOG_SOURCE_LOCAL) != 0 &&
            strcmp(o->source, MP_CATALOG_SOURCE_PROVENANCEKIT) != 0)
                return mp_error_set(err, -EINVAL, c->path, -1, "unknown entry source '%s'", o->source);
        int r = check_in(c, mp_catalog_check_name(name, err), err);
        if (r < 0)
                return r;
        r = check_labels(c, o->labels, o->n_labels, err);
        if (r < 0)
                return r;
        const char *bucket = NULL;
        r = entry_bucket(c, fp, o->param_bucket, &bucket, err);
        if (r < 0)
                return r;

        _cleanup_(freep) uint8_t *blob = NULL;
        size_t blob_len;
        if (mp_fingerprint_pack(fp, &blob, &blob_len) < 0)
                return mp_error_set(err, -ENOMEM, c->path, -1, "out of memory packing the record of '%s'", name);
        if (blob_len > MP_FINGERPRINT_MAX_BYTES)
                return mp_error_set(err, -E2BIG, c->path, -1, "the record of '%s' is %zu bytes, over the limit", name,
                                    blob_len);

        r = savepoint(c, err);
        if (r < 0)
                return r;
        r = add_locked(c, name, fp, o, bucket, blob, blob_len, err);
        return savepoint_end(c, r, err);
}

int mp_catalog_remove(mp_catalog *c, const char *name, mp_error *err) {
        assert(c);
        assert(name);

        _cleanup_(mp_sqlite_finalizep) sqlite3_stmt *s = NULL;
        int r = prepare(c, "DELETE FROM entries WHERE name = ?", &s, "removing an entry", err);
        if (r < 0)
                return r;
        sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        if (rc != SQLITE_DONE)
                return sql_error(c, rc, "removing an entry", err);
        if (sqlite3_changes(c->db) == 0) {
                char buf[128];
                return mp_error_set(err, -ENOENT, c->path, -1, "no entry named '%s'",
                                    mp_printable(buf, sizeof(buf), name));
        }
        return 0;
}

/* ---- reading ------------------------------------------------------------ */

int mp_catalog_get_labels(mp_catalog *c, int64_t id, mp_label **ret, size_t *ret_n, mp_error *err) {
        assert(c);
        assert(ret && ret_n);

        _cleanup_(mp_sqlite_finalizep) sqlite3_stmt *s = NULL;
        int r = prepare(c,
                        "SELECT key, value, (SELECT count(*) FROM labels WHERE entry_id = ?1),"
                        " (SELECT coalesce(sum(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB)) + 2), 0)"
                        "  FROM labels WHERE entry_id = ?1)"
                        " FROM labels WHERE entry_id = ?1 ORDER BY key",
                        &s, "reading labels", err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(s, 1, id);

        /* One block: the array, then the strings. */
        _cleanup_(freep) mp_label *labels = NULL;
        size_t n = 0, total = 0;
        char *strings = NULL, *end = NULL;
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                if (!labels) {
                        total = (size_t) sqlite3_column_int64(s, 2);
                        size_t bytes = (size_t) sqlite3_column_int64(s, 3);
                        labels = malloc(total * sizeof(*labels) + bytes + 1);
                        if (!labels)
                                return mp_error_set(err, -ENOMEM, c->path, -1, "out of memory");
                        strings = (char *) (labels + total);
                        end = strings + bytes + 1;
                }
                const char *k = column_str(s, 0), *v = column_str(s, 1);
                size_t kn = strlen(k) + 1, vn = strlen(v) + 1;
                if (n >= total || kn + vn > (size_t) (end - strings))
                        return mp_error_set(err, -EBADMSG, c->path, -1, "labels changed while reading them");
                labels[n].key = memcpy(strings, k, kn);
                strings += kn;
                labels[n].value = memcpy(strings, v, vn);
                strings += vn;
                n++;
        }
        if (rc != SQLITE_DONE)
                return sql_error(c, rc, "reading labels", err);
        *ret = TAKE_PTR(labels);
        *ret_n = n;
        return 0;
}

#define ENTRY_COLUMNS \
        "id, name, source, param_bucket, params, has_weights, arch_hash, family_hash, added_at, model_digest"
enum { COL_ID, COL_NAME, COL_SOURCE, COL_BUCKET, COL_PARAMS, COL_WEIGHTS, COL_ARCH, COL_FAMILY, COL_ADDED,
       COL_DIGEST, COL_RECORD };

static void entry_from_row(sqlite3_stmt *s, mp_catalog_entry *e) {
        int64_t params = sqlite3_column_int64(s, COL_PARAMS);
        *e = (mp_catalog_entry) {
                .id = sqlite3_column_int64(s, COL_ID),
                .name = column_str(s, COL_NAME),
                .source = column_str(s, COL_SOURCE),
                .param_bucket = column_str(s, COL_BUCKET),
                .params = params > 0 ? (uint64_t) params : 0,
                .has_weights = sqlite3_column_int(s, COL_WEIGHTS) != 0,
                .arch_hash = column_str(s, COL_ARCH),
                .family_hash = column_str(s, COL_FAMILY),
                .added_at = column_str(s, COL_ADDED),
                .model_digest = sqlite3_column_blob(s, COL_DIGEST),
                .model_digest_len = (size_t) sqlite3_column_bytes(s, COL_DIGEST),
        };
        if (e->model_digest_len == 0)
                e->model_digest = NULL;
}

int mp_catalog_list(mp_catalog *c, mp_catalog_entry_cb cb, void *userdata, mp_error *err) {
        assert(c);
        assert(cb);

        _cleanup_(mp_sqlite_finalizep) sqlite3_stmt *s = NULL;
        int r = prepare(c, "SELECT " ENTRY_COLUMNS " FROM entries ORDER BY name", &s, "listing entries", err);
        if (r < 0)
                return r;
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                mp_catalog_entry e;
                entry_from_row(s, &e);
                _cleanup_(freep) mp_label *labels = NULL;
                r = mp_catalog_get_labels(c, e.id, &labels, &e.n_labels, err);
                if (r < 0)
                        return r;
                e.labels = labels;
                r = cb(&e, userdata);
                if (r < 0)
                        return r;
        }
        return rc == SQLITE_DONE ? 0 : sql_error(c, rc, "listing entries", err);
}

int mp_catalog_count(mp_catalog *c, size_t *ret, mp_error *err) {
        int64_t n;
        int r = query_int(c, "SELECT count(*) FROM entries", &n, "counting entries", err);
        if (r < 0)
                return r;
        *ret = (size_t) n;
        return 0;
}

int mp_catalog_foreach_candidate(mp_catalog *c, const mp_param_bucket *buckets, size_t n_buckets,
                                 mp_catalog_candidate_cb cb, void *userdata, mp_error *err) {
        assert(c);
        assert(cb);
        assert(n_buckets <= _MP_BUCKET_MAX);

        /* "param_bucket IN (?, ?, ?) OR param_bucket IS NULL": one query.
         * NOT INDEXED: a walk in rowid order needs no sort; through the
         * bucket index SQLite sorted the rows, blobs and all, in a temporary
         * file (a write and a read per page: 2/3 of a scan's time). */
        char sql[256] = "SELECT " ENTRY_COLUMNS ", record FROM entries NOT INDEXED";
        if (n_buckets > 0) {
                strcat(sql, " WHERE param_bucket IS NULL OR param_bucket IN (?");
                for (size_t i = 1; i < n_buckets; i++)
                        strcat(sql, ", ?");
                strcat(sql, ")");
        }
        strcat(sql, " ORDER BY id");

        _cleanup_(mp_sqlite_finalizep) sqlite3_stmt *s = NULL;
        int r = prepare(c, sql, &s, "reading entries", err);
        if (r < 0)
                return r;
        _cleanup_(mp_bump_free) mp_bump bump = {0};
        ProtobufCAllocator alloc = mp_bump_protobuf_allocator(&bump);
        for (size_t i = 0; i < n_buckets; i++)
                sqlite3_bind_text(s, (int) i + 1, mp_param_bucket_name(buckets[i]), -1, SQLITE_STATIC);

        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                mp_catalog_entry e;
                entry_from_row(s, &e);

                /* Unpacked straight from SQLite's buffer, into memory that
                 * the next row reuses: no copy, and no malloc/free per
                 * field of every record. */
                const uint8_t *blob = sqlite3_column_blob(s, COL_RECORD);
                size_t len = (size_t) sqlite3_column_bytes(s, COL_RECORD);
                mp_fingerprint *fp = NULL;
                mp_error uerr;
                mp_error_clear(&uerr);
                mp_bump_reset(&bump);
                r = mp_fingerprint_unpack_with(c->path, blob ? blob : (const uint8_t *) "", len, &alloc, &fp, &uerr);
                if (r < 0) {
                        char buf[128];
                        return mp_error_set(err, r, c->path, -1, "entry '%s': %s",
                                            mp_printable(buf, sizeof(buf), e.name), uerr.reason);
                }
                r = cb(&e, fp, userdata);
                if (r < 0)
                        return r;
        }
        return rc == SQLITE_DONE ? 0 : sql_error(c, rc, "reading entries", err);
}

/* ---- scan --------------------------------------------------------------- */

double mp_scan_rank_score(const mp_comparison *cmp) {
        if (!isnan(cmp->identity_score))
                return cmp->identity_score;
        /* Metadata alone: its score counts only where compare found the
         * metadata strong enough for a Weak Match; otherwise a shared
         * architecture would list unrelated catalog entries above the
         * threshold. */
        if (cmp->verdict >= MP_VERDICT_WEAK && !isnan(cmp->pipeline_score))
                return cmp->pipeline_score;
        return 0.0;
}

int mp_scan_match_order(const mp_scan_match *a, const mp_scan_match *b) {
        if (a->cmp.verdict != b->cmp.verdict)
                return a->cmp.verdict > b->cmp.verdict ? -1 : 1;
        if (a->score != b->score)
                return a->score > b->score ? -1 : 1;
        return strcmp(a->name, b->name);
}

static void scan_match_done(mp_scan_match *m) {
        free(m->name);
        free(m->source);
        free(m->param_bucket);
        free(m->labels);
        *m = (mp_scan_match) {0};
}

void mp_scan_result_free(mp_scan_result *r) {
        if (!r)
                return;
        for (size_t i = 0; i < r->n_matches; i++)
                scan_match_done(&r->matches[i]);
        free(r->matches);
        r->matches = NULL;
        r->n_matches = 0;
}

typedef struct scan_state {
        mp_compare_query *query;        /* prepared once for all entries */
        const mp_scan_options *o;
        mp_scan_result *res;
        size_t allocated;
} scan_state;

/* Keeps the top_k best matches sorted in res->matches; copies strings only
 * for a candidate that gets in. */
static int scan_candidate(const mp_catalog_entry *e, const mp_fingerprint *fp, void *userdata) {
        scan_state *st = userdata;
        mp_scan_result *res = st->res;
        mp_scan_match m = { .entry_id = e->id, .name = (char *) e->name, .has_weights = e->has_weights };

        int r = mp_compare_query_run(st->query, fp, NULL, &m.cmp);
        if (r < 0)
                return r;
        res->n_candidates++;
        /* compare.h promises this already; a scan states it regardless,
         * since the catalog knows the entry has no weights. */
        if (!e->has_weights && m.cmp.verdict > MP_VERDICT_WEAK)
                m.cmp.verdict = MP_VERDICT_WEAK;
        m.score = mp_scan_rank_score(&m.cmp);
        if (!(m.score >= st->o->threshold))
                return 0;
        res->n_above_threshold++;

        size_t k = st->o->top_k;
        if (res->n_matches == k && mp_scan_match_order(&m, &res->matches[k - 1]) >= 0)
                return 0;
        if (MP_GROW(res->matches, st->allocated, res->n_matches + 1) < 0)
                return -ENOMEM;

        size_t pos = res->n_matches;
        while (pos > 0 && mp_scan_match_order(&m, &res->matches[pos - 1]) < 0)
                pos--;
        if (res->n_matches == k)
                scan_match_done(&res->matches[--res->n_matches]);
        memmove(&res->matches[pos + 1], &res->matches[pos], (res->n_matches - pos) * sizeof(m));
        res->n_matches++;

        m.name = strdup(e->name);
        m.source = strdup(e->source);
        m.param_bucket = strdup(e->param_bucket);
        res->matches[pos] = m;
        if (!m.name || !m.source || !m.param_bucket)
                return -ENOMEM;
        return 0;
}

/* The buckets to search for the query; none (all) when its size is unknown. */
static void scan_buckets(const mp_fingerprint *query, const mp_scan_options *o, mp_scan_result *res) {
        uint64_t params;
        res->query_bucket = -1;
        res->n_buckets = 0;
        if (mp_param_estimate_record(query, &params) < 0)
                return;
        res->query_params = params;
        res->query_bucket = mp_param_bucket_of(params);
        if (!o->all_buckets)
                res->n_buckets = mp_param_bucket_neighbours(res->query_bucket, res->buckets);
}

int mp_catalog_scan(mp_catalog *c, const mp_fingerprint *query, const mp_scan_options *o, mp_scan_result *ret,
                    mp_error *err) {
        assert(c);
        assert(query);
        assert(o);
        assert(ret);

        if (o->top_k < 1 || o->top_k > MP_SCAN_TOP_K_MAX)
                return mp_error_set(err, -EINVAL, c->path, -1, "top-k must be between 1 and %d", MP_SCAN_TOP_K_MAX);
        if (!(o->threshold >= 0 && o->threshold <= 1))
                return mp_error_set(err, -EINVAL, c->path, -1, "the threshold must be between 0 and 1");

        mp_error_clear(err);
        _cleanup_(mp_compare_query_freep) mp_compare_query *q = NULL;
        if (mp_compare_query_new(query, &q) < 0)
                return mp_error_set(err, -ENOMEM, c->path, -1, "out of memory");
        mp_scan_result res = {0};
        scan_state st = { .query = q, .o = o, .res = &res };
        scan_buckets(query, o, &res);

        int r = mp_catalog_count(c, &res.n_entries, err);
        if (r >= 0)
                r = mp_catalog_foreach_candidate(c, res.buckets, res.n_buckets, scan_candidate, &st, err);
        if (r == -ENOMEM && err && err->code == 0)
                r = mp_error_set(err, r, c->path, -1, "out of memory while scanning");
        /* Labels only for what is shown. */
        for (size_t i = 0; r >= 0 && i < res.n_matches; i++)
                r = mp_catalog_get_labels(c, res.matches[i].entry_id, &res.matches[i].labels,
                                          &res.matches[i].n_labels, err);
        if (r < 0) {
                mp_scan_result_free(&res);
                return r;
        }
        *ret = res;
        return 0;
}
