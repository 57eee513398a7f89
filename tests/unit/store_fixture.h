/* store_fixture.h - a collector store in a test (test_store.c,
 * test_blast_radius.c) on the engine the test setup picks:
 *   MODELPROV_TEST_STORE unset or "sqlite": a SQLite file at path;
 *   MODELPROV_TEST_STORE=postgresql: a fresh PostgreSQL database per path
 *     (CREATE DATABASE on the server of MODELPROV_TEST_PG, a libpq conninfo
 *     of a role that may create databases; `meson test --setup postgres`
 *     starts a private server and sets both, see tests/postgres/).
 * The path is the key: opening it again reaches the same store (reopen
 * tests), also from a forked child.  Plain SQL on the store (counting rows,
 * damaging one) goes through store_sql_int() / store_sql_exec(), which
 * speak the engine's own client; store_blob_sql() writes a bytes literal
 * in its dialect.  Anything amiss fails the test with a sentence: a
 * postgres run without a server is a failure, never a skip. */
#pragma once

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "collector/store.h"
#include "test.h"
#include "util/macro.h"

/* Whether this run tests the PostgreSQL engine. */
static inline bool store_is_postgres(void) {
        const char *e = getenv("MODELPROV_TEST_STORE");
        if (!e || !e[0] || strcmp(e, "sqlite") == 0)
                return false;
        if (strcmp(e, "postgresql") != 0) {
                fprintf(stderr, "MODELPROV_TEST_STORE=%s: expected sqlite or postgresql\n", e);
                exit(1);
        }
        const char *pg = getenv("MODELPROV_TEST_PG");
        if (!pg || !pg[0]) {
                fprintf(stderr, "MODELPROV_TEST_STORE=postgresql but MODELPROV_TEST_PG is not set: it must hold the"
                                " libpq conninfo of a server to create test databases on (`meson test --setup"
                                " postgres` starts one)\n");
                exit(1);
        }
        return true;
}

/* A connection to database db (NULL: the one MODELPROV_TEST_PG names). */
static inline PGconn *store_pg_connect(const char *db) {
        const char *keys[] = { "dbname", db ? "dbname" : NULL, NULL };
        const char *values[] = { getenv("MODELPROV_TEST_PG"), db, NULL };
        PGconn *c = PQconnectdbParams(keys, values, 1);
        if (PQstatus(c) != CONNECTION_OK) {
                fprintf(stderr, "cannot connect to the test server (MODELPROV_TEST_PG=%s): %s",
                        getenv("MODELPROV_TEST_PG"), PQerrorMessage(c));
                exit(1);
        }
        return c;
}

/* Runs sql on c; returns the result, which must be fine. */
static inline PGresult *store_pg_run(PGconn *c, const char *sql) {
        PGresult *res = PQexec(c, sql);
        ExecStatusType s = PQresultStatus(res);
        if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
                fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
                exit(1);
        }
        return res;
}

/* One integer from a single-row query on c. */
static inline int64_t store_pg_int(PGconn *c, const char *sql) {
        PGresult *res = store_pg_run(c, sql);
        if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
                fprintf(stderr, "%s: %d rows, expected one value\n", sql, PQntuples(res));
                exit(1);
        }
        const char *v = PQgetvalue(res, 0, 0);
        int64_t x = strcmp(v, "t") == 0 ? 1 : strcmp(v, "f") == 0 ? 0 : strtoll(v, NULL, 10);
        PQclear(res);
        return x;
}

/* One integer from the server's admin database (MODELPROV_TEST_PG). */
static inline int64_t store_pg_admin_int(const char *sql) {
        PGconn *c = store_pg_connect(NULL);
        int64_t v = store_pg_int(c, sql);
        PQfinish(c);
        return v;
}

/* The database of path, created on first use: named by the pid and a
 * counter, so test binaries sharing a server never meet. */
static struct {
        char *path, *db;
} store_pg_dbs[256] __attribute__((unused));

static inline const char *store_pg_database(const char *path) {
        static unsigned counter;
        size_t i = 0;
        for (; i < ELEMENTSOF(store_pg_dbs) && store_pg_dbs[i].path; i++)
                if (strcmp(store_pg_dbs[i].path, path) == 0)
                        return store_pg_dbs[i].db;
        CHECK(i < ELEMENTSOF(store_pg_dbs));
        char *db = NULL, *sql = NULL;
        CHECK(asprintf(&db, "mp_test_%d_%u", (int) getpid(), counter++) > 0);
        CHECK(asprintf(&sql, "CREATE DATABASE %s", db) > 0);
        PGconn *c = store_pg_connect(NULL);
        PQclear(store_pg_run(c, sql));
        PQfinish(c);
        free(sql);
        store_pg_dbs[i].path = strdup(path);
        store_pg_dbs[i].db = db;
        CHECK(store_pg_dbs[i].path);
        return db;
}

/* The store URL of path: sqlite:PATH, or postgresql://USER@HOST:PORT/DB
 * for its database (a Unix socket directory as host, percent-encoded).
 * malloc'd. */
static inline char *store_url(const char *path) {
        char *url = NULL;
        if (!store_is_postgres()) {
                CHECK(asprintf(&url, "sqlite:%s", path) > 0);
                return url;
        }
        const char *db = store_pg_database(path);
        PGconn *c = store_pg_connect(NULL);
        const char *host = PQhost(c);
        char enc[1024];
        size_t o = 0;
        for (const char *h = host; *h && o + 4 < sizeof(enc); h++)
                if (strchr("/%@:?", *h))
                        o += snprintf(enc + o, sizeof(enc) - o, "%%%02X", (unsigned char) *h);
                else
                        enc[o++] = *h;
        enc[o] = 0;
        CHECK(asprintf(&url, "postgresql://%s@%s:%s/%s", PQuser(c), enc, PQport(c), db) > 0);
        PQfinish(c);
        return url;
}

/* The table of scoring records: one row per record on SQLite, one per
 * part on PostgreSQL (count(DISTINCT digest) counts records on both). */
static inline const char *store_scoring_table(void) {
        return store_is_postgres() ? "scoring_parts" : "scoring_records";
}

/* Opens the store of path, or the test fails with the store's error. */
static inline mp_store *open_store(const char *path) {
        char *url = store_url(path);
        mp_store *s = NULL;
        mp_error err;
        int r = mp_store_open(url, &s, &err);
        if (r < 0)
                fprintf(stderr, "%s: %s\n", err.file, err.reason);
        CHECK(r == 0);
        free(url);
        return s;
}

/* One integer from sql on the store of path, bypassing the store. */
static inline int64_t store_sql_int(const char *path, const char *sql) {
        if (store_is_postgres()) {
                PGconn *c = store_pg_connect(store_pg_database(path));
                int64_t v = store_pg_int(c, sql);
                PQfinish(c);
                return v;
        }
        sqlite3 *db = NULL;
        sqlite3_stmt *q = NULL;
        CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
        sqlite3_busy_timeout(db, 10000);
        if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
                fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
        CHECK(q);
        CHECK(sqlite3_step(q) == SQLITE_ROW);
        int64_t v = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
        sqlite3_close(db);
        return v;
}

/* Runs sql (statements without results) on the store of path. */
static inline void store_sql_exec(const char *path, const char *sql) {
        if (store_is_postgres()) {
                PGconn *c = store_pg_connect(store_pg_database(path));
                PQclear(store_pg_run(c, sql));
                PQfinish(c);
                return;
        }
        sqlite3 *db = NULL;
        CHECK(sqlite3_open(path, &db) == SQLITE_OK);
        sqlite3_busy_timeout(db, 10000);
        char *msg = NULL;
        if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
                fprintf(stderr, "%s: %s\n", sql, msg);
        CHECK(msg == NULL);
        sqlite3_close(db);
}

/* A literal of n bytes for SQL on the store: x'..' or '\x..'::bytea.
 * malloc'd. */
static inline char *store_blob_sql(const void *bytes, size_t n) {
        const uint8_t *b = bytes;
        char *s = malloc(2 * n + 16), *o = s;
        CHECK(s);
        o += sprintf(o, store_is_postgres() ? "'\\x" : "x'");
        for (size_t i = 0; i < n; i++)
                o += sprintf(o, "%02x", b[i]);
        strcpy(o, store_is_postgres() ? "'::bytea" : "'");
        return s;
}
