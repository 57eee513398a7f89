/* test_store.c - the collector's store (collector/store.h) on the engine
 * the test setup picks (store_fixture.h: SQLite files by default, fresh
 * PostgreSQL databases under `meson test --setup postgres`): schema
 * creation, reopen and refusals (each engine's own: foreign files or
 * databases, newer schemas, unreachable servers without a password in the
 * message); enrollment and key rotation; idempotent ordered ingest under
 * replays, overlaps and gaps; crash safety under SIGKILL; inventory
 * history; locations, fingerprints and the pre-filter on zoo records;
 * re-indexing old rows; hostile input; two processes writing at once; two
 * handles ingesting the same host's overlapping batches from two threads
 * (instances behind a load balancer); a connection killed under a handle;
 * catalog distribution; an ingest rate (printed, not asserted). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "catalog/catalog.h"
#include "collector/store.h"
#include "fingerprint/compute.h"
#include "store_fixture.h"
#include "test.h"
#include "util/macro.h"

/* The schema version this modelprov makes (both engines). */
#define STORE_VERSION 4

static const char *llama_arch = "4b414de3062423b5f3b534e10f21eafe18c08a72a5f6c361f6f724d846180b50";
static const char *other_arch = "1111111111111111111111111111111111111111111111111111111111111111";

static int open_store_err(const char *url, mp_error *err) {
        mp_store *s = NULL;
        int r = mp_store_open(url, &s, err);
        CHECK((r < 0) == (s == NULL));
        mp_store_close(s);
        return r;
}

/* A distinct digest for model number i. */
static void digest_of(unsigned i, uint8_t d[MP_STORE_DIGEST_SIZE]) {
        memset(d, 0, MP_STORE_DIGEST_SIZE);
        d[0] = 0xd0;
        memcpy(d + 1, &i, sizeof(i));
}

/* A packed hand-made record naming digest d. */
/* A record named name with n_tensors made-up tensors (64 half-precision
 * samples each), all derived from name and the tensor's index: the same
 * arguments make the same bytes. */
static uint8_t *make_record_tensors(const char *name, const uint8_t d[MP_STORE_DIGEST_SIZE], const char *arch,
                                    uint64_t params, size_t n_tensors, size_t *len) {
        mp_fingerprint fp;
        Modelprov__V1__Signals sig;
        modelprov__v1__fingerprint__init(&fp);
        modelprov__v1__signals__init(&sig);
        fp.record_version = MP_FINGERPRINT_RECORD_VERSION;
        fp.tool_version = (char *) "test";      /* what a scoring record drops: tells the two apart */
        fp.name = (char *) name;
        fp.format = (char *) "safetensors";
        fp.parameter_count = params;
        fp.model_digest.data = (uint8_t *) d;
        fp.model_digest.len = MP_STORE_DIGEST_SIZE;
        sig.arch_hash = (char *) arch;
        sig.family_hash = (char *) arch;
        fp.signals = &sig;

        static uint64_t shape[] = { 8, 8 };
        Modelprov__V1__TensorDigest *t = calloc(n_tensors ? n_tensors : 1, sizeof(*t));
        Modelprov__V1__TensorDigest **tp = calloc(n_tensors ? n_tensors : 1, sizeof(*tp));
        char (*names)[48] = calloc(n_tensors ? n_tensors : 1, sizeof(*names));
        uint8_t (*bytes)[16 + 128] = calloc(n_tensors ? n_tensors : 1, sizeof(*bytes));
        CHECK(t && tp && names && bytes);
        for (size_t i = 0; i < n_tensors; i++) {
                modelprov__v1__tensor_digest__init(&t[i]);
                snprintf(names[i], sizeof(names[i]), "model.layers.%zu.weight", i);
                for (size_t b = 0; b < sizeof(bytes[i]); b++)
                        bytes[i][b] = (uint8_t) (i * 31 + b * 7 + (uint8_t) name[0]);
                t[i].name = names[i];
                t[i].dtype = (char *) "F16";
                t[i].n_shape = ELEMENTSOF(shape);
                t[i].shape = shape;
                t[i].xxh3_128 = (ProtobufCBinaryData) { .len = 16, .data = bytes[i] };
                t[i].n_bytes = 128;
                t[i].sample = (ProtobufCBinaryData) { .len = 128, .data = bytes[i] + 16 };
                tp[i] = &t[i];
        }
        fp.n_tensors = n_tensors;
        fp.tensors = tp;
        uint8_t *buf;
        CHECK(mp_fingerprint_pack(&fp, &buf, len) == 0);
        free(t);
        free(tp);
        free(names);
        free(bytes);
        return buf;
}

static uint8_t *make_record(const char *name, const uint8_t d[MP_STORE_DIGEST_SIZE], const char *arch,
                            uint64_t params, size_t *len) {
        return make_record_tensors(name, d, arch, params, 0, len);
}

static mp_fingerprint *zoo_fingerprint(const char *zoo, const char *rel) {
        char *path = test_path(zoo, rel);
        mp_model *m = NULL;
        mp_fingerprint *fp = NULL;
        mp_error err;
        CHECK(mp_model_open(path, NULL, &m, &err) == 0);
        mp_pass_options po = { .jobs = 1 };
        CHECK(mp_fingerprint_compute(m, &po, &fp, &err) == 0);
        CHECK(fp->model_digest.len == MP_STORE_DIGEST_SIZE);
        mp_model_free(m);
        free(path);
        return fp;
}

static void enroll(mp_store *s, const char *hostname, const char *machine_id, uint8_t key_byte,
                   char id[MP_STORE_HOST_ID_SIZE]) {
        uint8_t key[MP_STORE_DIGEST_SIZE];
        memset(key, key_byte, sizeof(key));
        mp_host_info info = { .hostname = hostname, .machine_id = machine_id, .agent_version = "0.1.0",
                              .os = "Debian GNU/Linux 12" };
        mp_error err;
        int r = mp_store_enroll(s, &info, key, id, &err);
        if (r < 0)
                fprintf(stderr, "%s\n", err.reason);
        CHECK(r == 0);
}

static mp_store_event added(uint64_t seq, const char *path, unsigned model) {
        mp_store_event ev = { .sequence = seq, .kind = MP_STORE_EVENT_MODEL_ADDED, .observed_at = (int64_t) seq * 10,
                              .path = path };
        digest_of(model, ev.model_digest);
        return ev;
}

/* Ingest that must succeed; returns acked_through. */
static uint64_t ingest(mp_store *s, const char *host, const mp_store_event *ev, size_t n, size_t want_stored,
                       size_t want_dup) {
        uint64_t acked = 0;
        size_t stored = 99999, dup = 99999;
        mp_error err;
        int r = mp_store_ingest(s, host, ev, n, &acked, &stored, &dup, &err);
        if (r < 0)
                fprintf(stderr, "%s\n", err.reason);
        CHECK(r == 0);
        CHECK_EQ(stored, want_stored);
        CHECK_EQ(dup, want_dup);
        return acked;
}

/* One integer straight from the store, bypassing it. */
static int64_t sql_int(const char *path, const char *sql) {
        return store_sql_int(path, sql);
}

static uint64_t host_last_seq(mp_store *s, const char *id) {
        mp_store_host *h = NULL;
        size_t n = 0;
        CHECK(mp_store_hosts(s, &h, &n, NULL) == 0);
        uint64_t seq = UINT64_MAX;
        for (size_t i = 0; i < n; i++)
                if (strcmp(h[i].id, id) == 0)
                        seq = h[i].last_sequence;
        mp_store_hosts_free(h, n);
        CHECK(seq != UINT64_MAX);
        return seq;
}

/* Every stored sequence of host exactly once, 1..expect. */
static void check_events_exactly_once(const char *path, const char *host, int64_t expect) {
        char sql[256];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM events WHERE host_id = '%s'", host);
        CHECK_EQ(sql_int(path, sql), expect);
        snprintf(sql, sizeof(sql), "SELECT count(DISTINCT seq) FROM events WHERE host_id = '%s'", host);
        CHECK_EQ(sql_int(path, sql), expect);
        snprintf(sql, sizeof(sql), "SELECT coalesce(max(seq), 0) FROM events WHERE host_id = '%s'", host);
        CHECK_EQ(sql_int(path, sql), expect);
}

/* ---- open --------------------------------------------------------------- */

static void test_open_reopen(void) {
        char *dir = test_tmpdir();
        char *path = test_path(dir, "store.db");

        mp_store *s = open_store(path);
        CHECK_EQ(mp_store_schema_version(s), STORE_VERSION);
        mp_store_close(s);

        if (store_is_postgres()) {
                CHECK_EQ(sql_int(path, "SELECT count(*) FROM modelprov_meta WHERE key = 'application'"
                                       " AND value = 'modelprov-collector'"), 1);
                CHECK_EQ(sql_int(path, "SELECT value::bigint FROM modelprov_meta WHERE key = 'schema_version'"), STORE_VERSION);
                CHECK_EQ(sql_int(path, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND"
                                       " tablename IN ('hosts', 'events', 'inventory', 'fingerprints', 'catalog',"
                                       " 'tensor_keys', 'scoring_parts')"), 7);
                /* The same indexes as on SQLite. */
                CHECK_EQ(sql_int(path, "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() AND"
                                       " indexname IN ('fingerprints_arch', 'fingerprints_family', 'events_path',"
                                       " 'inventory_digest_rows', 'fingerprints_hidden', 'fingerprints_unindexed')"),
                         6);
                CHECK_EQ(sql_int(path, "SELECT count(*) FROM pg_indexes WHERE indexname = 'inventory_digest'"), 0);
        } else {
                CHECK_EQ(sql_int(path, "PRAGMA user_version"), STORE_VERSION);
                CHECK_EQ(sql_int(path, "PRAGMA application_id"), 0x6d70636f);
                CHECK_EQ(sql_int(path, "SELECT count(*) FROM sqlite_master WHERE name IN ('hosts', 'events',"
                                       " 'inventory', 'fingerprints', 'catalog')"), 5);
                CHECK_EQ(sql_int(path, "SELECT count(*) FROM sqlite_master WHERE name IN ('fingerprints_arch',"
                                       " 'fingerprints_family', 'events_path', 'inventory_digest_rows',"
                                       " 'fingerprints_hidden', 'fingerprints_unindexed')"), 6);
                CHECK_EQ(sql_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'inventory_digest'"), 0);
        }

        /* Reopening keeps what was stored and does not migrate again. */
        s = open_store(path);
        char id[MP_STORE_HOST_ID_SIZE];
        enroll(s, "alpha", "m-alpha", 1, id);
        mp_store_close(s);
        s = open_store(path);
        CHECK_EQ(mp_store_schema_version(s), STORE_VERSION);
        mp_store_host *h = NULL;
        size_t n = 0;
        CHECK(mp_store_hosts(s, &h, &n, NULL) == 0);
        CHECK_EQ(n, 1);
        CHECK_STREQ(h[0].id, id);
        mp_store_hosts_free(h, n);
        mp_store_close(s);

        if (!store_is_postgres()) {
                /* WAL: journal_mode is persistent in the file. */
                sqlite3 *db;
                sqlite3_stmt *q;
                CHECK(sqlite3_open(path, &db) == SQLITE_OK);
                CHECK(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL) == SQLITE_OK);
                CHECK(sqlite3_step(q) == SQLITE_ROW);
                CHECK_STREQ((const char *) sqlite3_column_text(q, 0), "wal");
                sqlite3_finalize(q);
                sqlite3_close(db);
        }

        free(path);
        free(dir);
}

/* The SQLite engine's refusals, on files. */
static void refusals_sqlite(const char *dir) {
        mp_error err;
        char *url = NULL;

        /* A store written by a newer modelprov. */
        char *newer = test_path(dir, "newer.db");
        mp_store_close(open_store(newer));
        sqlite3 *db;
        CHECK(sqlite3_open(newer, &db) == SQLITE_OK);
        CHECK(sqlite3_exec(db, "PRAGMA user_version = 7", NULL, NULL, NULL) == SQLITE_OK);
        sqlite3_close(db);
        CHECK(asprintf(&url, "sqlite:%s", newer) > 0);
        CHECK_EQ(open_store_err(url, &err), -ENOTSUP);
        CHECK(strstr(err.reason, "newer"));
        free(url);

        /* Not a database at all: refused, and the file is left untouched
         * (no WAL or journal switched on in it). */
        static const char garbage[] = "this is a text file, not a modelprov store, and it is long enough..........."
                                      "...........................................................................";
        char *text = test_write(dir, "text.db", garbage, sizeof(garbage));
        CHECK(asprintf(&url, "sqlite:%s", text) > 0);
        CHECK_EQ(open_store_err(url, &err), -EBADMSG);
        CHECK(strstr(err.reason, "not a modelprov store"));
        size_t len;
        char *back = test_read(text, &len);
        CHECK_EQ(len, sizeof(garbage));
        CHECK(memcmp(back, garbage, len) == 0);
        free(back);
        free(url);

        /* Another application's SQLite database. */
        char *foreign = test_path(dir, "foreign.db");
        CHECK(sqlite3_open(foreign, &db) == SQLITE_OK);
        CHECK(sqlite3_exec(db, "CREATE TABLE t (x)", NULL, NULL, NULL) == SQLITE_OK);
        sqlite3_close(db);
        CHECK(asprintf(&url, "sqlite:%s", foreign) > 0);
        CHECK_EQ(open_store_err(url, &err), -EBADMSG);
        CHECK(strstr(err.reason, "another application"));
        CHECK_EQ(sql_int(foreign, "SELECT count(*) FROM sqlite_master"), 1);
        free(url);

        /* A modelprov catalog is not a store either. */
        char *cat_path = test_path(dir, "catalog.db");
        mp_catalog *cat = NULL;
        CHECK(mp_catalog_open(cat_path, true, &cat, NULL) == 0);
        mp_catalog_close(cat);
        CHECK(asprintf(&url, "sqlite:%s", cat_path) > 0);
        CHECK_EQ(open_store_err(url, &err), -EBADMSG);
        CHECK(strstr(err.reason, "catalog"));
        free(url);

        /* A directory. */
        CHECK(asprintf(&url, "sqlite:%s", dir) > 0);
        CHECK(open_store_err(url, &err) < 0);
        CHECK(strstr(err.reason, "not a modelprov store"));
        free(url);

        free(newer);
        free(text);
        free(foreign);
        free(cat_path);
}

/* The PostgreSQL engine's refusals, on databases of the test server. */
static void refusals_postgres(const char *dir) {
        mp_error err;

        /* A store written by a newer modelprov. */
        char *newer = test_path(dir, "newer");
        mp_store_close(open_store(newer));
        store_sql_exec(newer, "UPDATE modelprov_meta SET value = '7' WHERE key = 'schema_version'");
        char *url = store_url(newer);
        CHECK_EQ(open_store_err(url, &err), -ENOTSUP);
        CHECK(strstr(err.reason, "newer"));
        CHECK(strstr(err.file, "postgresql://"));
        free(url);
        /* ... and a damaged version. */
        store_sql_exec(newer, "UPDATE modelprov_meta SET value = 'two' WHERE key = 'schema_version'");
        url = store_url(newer);
        CHECK_EQ(open_store_err(url, &err), -EBADMSG);
        CHECK(strstr(err.reason, "version"));
        free(url);

        /* Another application's database: refused and left untouched. */
        char *foreign = test_path(dir, "foreign");
        store_sql_exec(foreign, "CREATE TABLE t (x integer); INSERT INTO t VALUES (1)");
        url = store_url(foreign);
        CHECK_EQ(open_store_err(url, &err), -EBADMSG);
        CHECK(strstr(err.reason, "another application"));
        CHECK_EQ(sql_int(foreign, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"), 1);
        CHECK_EQ(sql_int(foreign, "SELECT count(*) FROM t"), 1);
        free(url);

        /* A modelprov_meta that is not ours. */
        char *other = test_path(dir, "other");
        store_sql_exec(other, "CREATE TABLE modelprov_meta (key text PRIMARY KEY, value text NOT NULL);"
                              " INSERT INTO modelprov_meta VALUES ('application', 'modelprov-catalog'),"
                              " ('schema_version', '1')");
        url = store_url(other);
        CHECK_EQ(open_store_err(url, &err), -EBADMSG);
        CHECK(strstr(err.reason, "not a modelprov store"));
        free(url);

        /* A database that does not exist. */
        char *base = store_url(newer);
        char *slash = strrchr(base, '/');
        CHECK(slash);
        *slash = 0;
        CHECK(asprintf(&url, "%s/mp_no_such_database", base) > 0);
        CHECK_EQ(open_store_err(url, &err), -EIO);
        CHECK(strstr(err.reason, "mp_no_such_database"));
        free(url);
        free(base);

        free(newer);
        free(foreign);
        free(other);
}

/* Does err show secret anywhere? */
static bool shows(const mp_error *err, const char *secret) {
        return strstr(err->reason, secret) || strstr(err->file, secret);
}

/* PostgreSQL URLs that fail before any server answers: run on every
 * setup, no server needed. */
static void refusals_postgres_urls(void) {
        mp_error err;
        /* Nothing listens on port 1: refused at once.  Both schemes. */
        static const char *const unreachable[] = {
                "postgresql://alice:pw-Secret-42@127.0.0.1:1/fleet",
                "postgres://alice:pw-Secret-42@127.0.0.1:1/fleet?sslmode=disable",
                "postgresql://alice@127.0.0.1:1/fleet?password=pw-Secret-42",
        };
        for (size_t i = 0; i < ELEMENTSOF(unreachable); i++) {
                CHECK_EQ(open_store_err(unreachable[i], &err), -EIO);
                fprintf(stderr, "   %s: %s\n", err.file, err.reason);
                CHECK(strstr(err.reason, "cannot connect"));
                CHECK(strstr(err.file, "127.0.0.1") && strstr(err.file, "fleet") && strstr(err.file, ":1/"));
                CHECK(!shows(&err, "pw-Secret-42"));
        }

        /* URLs libpq cannot parse: its messages echo them, the password
         * scrubbed out. */
        static const char *const malformed[] = {
                "postgresql://alice:pw-Secret-42@[::1/fleet",
                "postgresql://alice:pw-Secret-42@127.0.0.1:notaport/fleet",
                "postgresql://alice:pw%zzSecret-42@127.0.0.1/fleet",
                "postgresql://127.0.0.1/fleet?password=pw-Secret-42&bogus=1",
                "postgresql://alice:pw?Secret-42@127.0.0.1/fleet?bogus",
        };
        for (size_t i = 0; i < ELEMENTSOF(malformed); i++) {
                int r = open_store_err(malformed[i], &err);
                fprintf(stderr, "   %s: %s\n", err.file, err.reason);
                CHECK(r == -EINVAL || r == -EIO);
                CHECK(!shows(&err, "Secret-42"));
        }
        CHECK_EQ(open_store_err("postgresql:fleet", &err), -EINVAL);
        CHECK(strstr(err.reason, "postgresql://"));

        /* The redacted form for logs. */
        char *red = mp_store_url_redacted("postgresql://alice:pw-Secret-42@db:5432/fleet?password=x&sslmode=require");
        CHECK_STREQ(red, "postgresql://alice:***@db:5432/fleet?password=***&sslmode=require");
        free(red);
        red = mp_store_url_redacted("sqlite:/var/lib/modelprov/store.db");
        CHECK_STREQ(red, "sqlite:/var/lib/modelprov/store.db");
        free(red);
}

static void test_refusals(void) {
        char *dir = test_tmpdir();
        mp_error err;

        if (store_is_postgres())
                refusals_postgres(dir);
        else
                refusals_sqlite(dir);
        refusals_postgres_urls();

        /* Unknown schemes (the message shows the scheme only: the rest may
         * hold a password), no scheme, empty location. */
        CHECK_EQ(open_store_err("mysql://root:hunter2-pw@db.example/modelprov", &err), -EPROTONOSUPPORT);
        CHECK(strstr(err.reason, "unsupported store"));
        CHECK(strstr(err.reason, "mysql"));
        CHECK(!shows(&err, "hunter2-pw"));
        CHECK_EQ(open_store_err("/var/lib/store.db", &err), -EINVAL);
        CHECK_EQ(open_store_err("sqlite:", &err), -EINVAL);
        CHECK_EQ(open_store_err("postgresql:", &err), -EINVAL);
        CHECK_EQ(open_store_err("", &err), -EINVAL);

        free(dir);
}

/* ---- hosts -------------------------------------------------------------- */

static bool is_uuid4(const char *id) {
        if (strlen(id) != 36 || id[14] != '4' || !strchr("89ab", id[19]))
                return false;
        for (size_t i = 0; i < 36; i++) {
                bool dash = i == 8 || i == 13 || i == 18 || i == 23;
                if (dash ? id[i] != '-' : !strchr("0123456789abcdef", id[i]))
                        return false;
        }
        return true;
}

static void test_enroll(void) {
        char *dir = test_tmpdir();
        char *path = test_path(dir, "store.db");
        mp_store *s = open_store(path);
        mp_error err;

        char a[MP_STORE_HOST_ID_SIZE], b[MP_STORE_HOST_ID_SIZE], a2[MP_STORE_HOST_ID_SIZE];
        enroll(s, "alpha", "machine-a", 0x11, a);
        enroll(s, "beta", "machine-b", 0x22, b);
        CHECK(is_uuid4(a));
        CHECK(is_uuid4(b));
        CHECK(strcmp(a, b) != 0);

        uint8_t key[MP_STORE_DIGEST_SIZE], want[MP_STORE_DIGEST_SIZE];
        memset(want, 0x11, sizeof(want));
        CHECK(mp_store_host_key_hash(s, a, key, NULL) == 0);
        CHECK(memcmp(key, want, sizeof(key)) == 0);

        /* Some events, then a re-enrollment of the same machine. */
        mp_store_event ev[3] = { added(1, "/m/a", 1), added(2, "/m/b", 2), added(3, "/m/c", 3) };
        CHECK_EQ(ingest(s, a, ev, 3, 3, 0), 3);
        enroll(s, "alpha-renamed", "machine-a", 0x33, a2);
        CHECK_STREQ(a2, a);
        memset(want, 0x33, sizeof(want));
        CHECK(mp_store_host_key_hash(s, a, key, NULL) == 0);
        CHECK(memcmp(key, want, sizeof(key)) == 0);
        CHECK_EQ(host_last_seq(s, a), 3);
        /* The sequence state survived: a replay is still a duplicate. */
        CHECK_EQ(ingest(s, a, ev, 3, 0, 3), 3);

        /* Heartbeat. */
        CHECK(mp_store_heartbeat(s, b, "0.2.0", 4102444800000LL, NULL) == 0);
        mp_store_host *h = NULL;
        size_t n = 0;
        CHECK(mp_store_hosts(s, &h, &n, NULL) == 0);
        CHECK_EQ(n, 2);
        CHECK_STREQ(h[0].hostname, "alpha-renamed");    /* ordered by hostname */
        CHECK_STREQ(h[0].id, a);
        CHECK_EQ(h[0].model_count, 3);
        CHECK_EQ(h[0].last_sequence, 3);
        CHECK_STREQ(h[0].machine_id, "machine-a");
        CHECK_STREQ(h[0].os, "Debian GNU/Linux 12");
        CHECK_STREQ(h[1].agent_version, "0.2.0");
        CHECK_EQ(h[1].last_seen, 4102444800000LL);
        CHECK(h[1].enrolled_at > 1600000000000LL && h[1].enrolled_at < 4102444800000LL);
        CHECK_EQ(h[1].model_count, 0);
        mp_store_hosts_free(h, n);

        /* One host by id: what Enroll and Heartbeat answer with. */
        CHECK(mp_store_get_host(s, a, &h, NULL) == 0);
        CHECK_STREQ(h->id, a);
        CHECK_STREQ(h->hostname, "alpha-renamed");
        CHECK_EQ(h->last_sequence, 3);
        CHECK_EQ(h->model_count, 3);
        mp_store_hosts_free(h, 1);

        /* Unknown hosts. */
        const char *ghost = "01234567-89ab-4cde-8f01-23456789abcd";
        h = NULL;
        CHECK_EQ(mp_store_get_host(s, ghost, &h, &err), -ENOENT);
        CHECK(!h);
        CHECK_EQ(mp_store_get_host(s, "not-a-host-id", &h, &err), -EINVAL);
        CHECK_EQ(mp_store_host_key_hash(s, ghost, key, &err), -ENOENT);
        CHECK(strstr(err.reason, "unknown host"));
        CHECK_EQ(mp_store_heartbeat(s, ghost, "0.1.0", 1, &err), -ENOENT);
        CHECK_EQ(mp_store_ingest(s, ghost, ev, 1, NULL, NULL, NULL, &err), -ENOENT);

        mp_store_close(s);
        free(path);
        free(dir);
}

/* ---- ingest ------------------------------------------------------------- */

static void test_ingest_replays(void) {
        char *dir = test_tmpdir();
        char *path = test_path(dir, "store.db");
        mp_store *s = open_store(path);
        char id[MP_STORE_HOST_ID_SIZE];
        enroll(s, "alpha", "machine-a", 1, id);

        char paths[20][32];
        mp_store_event ev[20];
        for (unsigned i = 0; i < 20; i++) {
                snprintf(paths[i], sizeof(paths[i]), "/models/%u", i + 1);
                ev[i] = added(i + 1, paths[i], i + 1);
        }

        CHECK_EQ(ingest(s, id, ev, 10, 10, 0), 10);             /* 1..10 */
        CHECK_EQ(ingest(s, id, ev, 10, 0, 10), 10);             /* the same batch again */
        CHECK_EQ(ingest(s, id, ev + 5, 10, 5, 5), 15);          /* 6..15 overlaps */
        CHECK_EQ(ingest(s, id, ev, 0, 0, 0), 15);               /* empty batch: the ack again */

        /* Out of order with a gap: 18, 16, 20, 17 -> 16, 17, 18 stored, 20
         * waits for 19. */
        mp_store_event gap[4] = { ev[17], ev[15], ev[19], ev[16] };
        CHECK_EQ(ingest(s, id, gap, 4, 3, 0), 18);
        /* The agent resends 19, 20 (and a stale 14). */
        mp_store_event rest[3] = { ev[19], ev[13], ev[18] };
        CHECK_EQ(ingest(s, id, rest, 3, 2, 1), 20);
        /* A sequence twice in one batch: the first copy wins. */
        mp_store_event twice[2] = { added(21, "/models/first", 100), added(21, "/models/second", 101) };
        CHECK_EQ(ingest(s, id, twice, 2, 1, 1), 21);
        mp_store_close(s);

        check_events_exactly_once(path, id, 21);
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM events WHERE path = '/models/second'"), 0);
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM inventory"), 21);

        s = open_store(path);
        mp_store_history_entry *h = NULL;
        size_t n = 0;
        CHECK(mp_store_history(s, id, NULL, &h, &n, NULL) == 0);
        CHECK_EQ(n, 21);
        for (size_t i = 0; i < n; i++) {
                CHECK_EQ(h[i].sequence, i + 1);
                CHECK_EQ(h[i].kind, MP_STORE_EVENT_MODEL_ADDED);
                CHECK(h[i].has_digest);
        }
        CHECK_STREQ(h[20].path, "/models/first");
        mp_store_history_free(h, n);
        mp_store_close(s);
        free(path);
        free(dir);
}

/* The child ingests batches of 5 as fast as it can and writes each ack to
 * the pipe after its commit returned; the parent kills it mid-stream. */
static void crash_child(const char *path, const char *id, uint64_t start, int fd) {
        mp_store *s = open_store(path);
        char paths[5][64];
        for (uint64_t next = start;; next += 5) {
                mp_store_event ev[5];
                for (unsigned k = 0; k < 5; k++) {
                        snprintf(paths[k], sizeof(paths[k]), "/crash/%llu", (unsigned long long) (next + k));
                        ev[k] = added(next + k, paths[k], (unsigned) (next + k));
                }
                uint64_t acked;
                if (mp_store_ingest(s, id, ev, 5, &acked, NULL, NULL, NULL) < 0)
                        _exit(2);
                if (write(fd, &acked, sizeof(acked)) != sizeof(acked))
                        _exit(3);
        }
}

static void test_crash_safety(void) {
        char *dir = test_tmpdir();
        char *path = test_path(dir, "store.db");
        char id[MP_STORE_HOST_ID_SIZE];
        mp_store *s = open_store(path);
        enroll(s, "alpha", "machine-a", 1, id);
        mp_store_close(s);

        for (int round = 0; round < 3; round++) {
                s = open_store(path);
                uint64_t start = host_last_seq(s, id) + 1;
                mp_store_close(s);

                int p[2];
                CHECK(pipe(p) == 0);
                pid_t pid = fork();
                CHECK(pid >= 0);
                if (pid == 0) {
                        close(p[0]);
                        crash_child(path, id, start, p[1]);
                }
                close(p[1]);

                /* Let it get going (a different depth each round), then kill. */
                uint64_t acked = 0, last_reported = 0;
                size_t seen = 0;
                while (seen < 20 + 37 * (size_t) round && read(p[0], &acked, sizeof(acked)) == sizeof(acked)) {
                        last_reported = acked;
                        seen++;
                }
                CHECK(kill(pid, SIGKILL) == 0);
                int status;
                CHECK(waitpid(pid, &status, 0) == pid);
                CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
                while (read(p[0], &acked, sizeof(acked)) == sizeof(acked))
                        last_reported = acked;
                close(p[0]);
                CHECK(last_reported >= start);

                /* Every acknowledged event is there exactly once, nothing
                 * half-written beyond the last commit. */
                s = open_store(path);
                uint64_t last = host_last_seq(s, id);
                mp_store_close(s);
                CHECK(last >= last_reported);
                check_events_exactly_once(path, id, (int64_t) last);
                fprintf(stderr, "   round %d: acked %llu reported, %llu stored\n", round,
                        (unsigned long long) last_reported, (unsigned long long) last);

                /* An agent that lost its acks resends from 1: all duplicates. */
                s = open_store(path);
                mp_store_event ev[5];
                char paths[5][64];
                for (unsigned k = 0; k < 5; k++) {
                        snprintf(paths[k], sizeof(paths[k]), "/crash/%llu", (unsigned long long) (k + 1));
                        ev[k] = added(k + 1, paths[k], k + 1);
                }
                CHECK_EQ(ingest(s, id, ev, 5, 0, 5), last);
                mp_store_close(s);
        }
        free(path);
        free(dir);
}

/* ---- inventory ---------------------------------------------------------- */

static void test_inventory_history(void) {
        char *dir = test_tmpdir();
        char *path = test_path(dir, "store.db");
        mp_store *s = open_store(path);
        char id[MP_STORE_HOST_ID_SIZE], other[MP_STORE_HOST_ID_SIZE];
        enroll(s, "alpha", "machine-a", 1, id);
        enroll(s, "beta", "machine-b", 2, other);

        const char *p = "/srv/models/llama";
        mp_store_event ev[6] = {
                { .sequence = 1, .kind = MP_STORE_EVENT_MODEL_ADDED, .observed_at = 1000, .path = p },
                { .sequence = 2, .kind = MP_STORE_EVENT_MODEL_CHANGED, .observed_at = 2000, .path = p },
                { .sequence = 3, .kind = MP_STORE_EVENT_FINDING, .observed_at = 2500, .path = p,
                  .finding_kind = "truncated", .finding_detail = "tensor x ends past the file\n(line 2)",
                  .finding_file = "model-00002-of-00002.safetensors" },
                { .sequence = 4, .kind = MP_STORE_EVENT_SCAN_MATCH, .observed_at = 2600, .path = p,
                  .match_entry = "llama-base", .match_verdict = "derived", .match_relation = "fine-tune",
                  .match_score = 0.93 },
                { .sequence = 5, .kind = MP_STORE_EVENT_MODEL_REMOVED, .observed_at = 3000, .path = p },
                { .sequence = 6, .kind = MP_STORE_EVENT_MODEL_ADDED, .observed_at = 4000, .path = p },
        };
        digest_of(1, ev[0].model_digest);
        digest_of(2, ev[1].model_digest);
        digest_of(2, ev[3].model_digest);
        digest_of(2, ev[4].model_digest);
        digest_of(1, ev[5].model_digest);       /* the first model comes back */

        /* Step by step, checking the rows after each. */
        uint8_t d1[MP_STORE_DIGEST_SIZE], d2[MP_STORE_DIGEST_SIZE];
        digest_of(1, d1);
        digest_of(2, d2);
        mp_store_location *l = NULL;
        size_t n = 0;

        CHECK_EQ(ingest(s, id, ev, 2, 2, 0), 2);
        CHECK(mp_store_inventory(s, id, false, &l, &n, NULL) == 0);
        CHECK_EQ(n, 2);
        /* Ordered by path then first_seen: d1 (1000) before d2 (2000). */
        CHECK(memcmp(l[0].model_digest, d1, 32) == 0);
        CHECK(!l[0].present);
        CHECK_EQ(l[0].first_seen, 1000);
        CHECK_EQ(l[0].last_seen, 2000);
        CHECK(memcmp(l[1].model_digest, d2, 32) == 0);
        CHECK(l[1].present);
        CHECK_EQ(l[1].first_seen, 2000);
        CHECK_STREQ(l[1].hostname, "alpha");
        CHECK_STREQ(l[1].path, p);
        mp_store_locations_free(l, n);

        CHECK_EQ(ingest(s, id, ev + 2, 3, 3, 0), 5);
        CHECK(mp_store_inventory(s, id, true, &l, &n, NULL) == 0);
        CHECK_EQ(n, 0);                                  /* removal closed it */
        mp_store_locations_free(l, n);
        CHECK(mp_store_inventory(s, id, false, &l, &n, NULL) == 0);
        CHECK_EQ(n, 2);
        CHECK(!l[1].present);
        CHECK_EQ(l[1].last_seen, 3000);
        mp_store_locations_free(l, n);

        CHECK_EQ(ingest(s, id, ev + 5, 1, 1, 0), 6);
        CHECK(mp_store_inventory(s, NULL, true, &l, &n, NULL) == 0);
        CHECK_EQ(n, 1);
        CHECK(memcmp(l[0].model_digest, d1, 32) == 0);
        CHECK(l[0].present);
        CHECK_EQ(l[0].first_seen, 1000);                 /* first seen kept across the gap */
        CHECK_EQ(l[0].last_seen, 4000);
        mp_store_locations_free(l, n);

        /* The other host's inventory is its own. */
        mp_store_event mine = added(1, p, 2);
        CHECK_EQ(ingest(s, other, &mine, 1, 1, 0), 1);
        CHECK(mp_store_inventory(s, other, false, &l, &n, NULL) == 0);
        CHECK_EQ(n, 1);
        CHECK_STREQ(l[0].host_id, other);
        mp_store_locations_free(l, n);
        CHECK(mp_store_locations(s, d2, &l, &n, NULL) == 0);
        CHECK_EQ(n, 2);                                  /* alpha (closed) and beta (present) */
        CHECK(l[0].present != l[1].present);
        mp_store_locations_free(l, n);

        /* History of the path, per host and over all hosts. */
        mp_store_history_entry *h = NULL;
        CHECK(mp_store_history(s, id, p, &h, &n, NULL) == 0);
        CHECK_EQ(n, 6);
        static const mp_store_event_kind kinds[6] = {
                MP_STORE_EVENT_MODEL_ADDED, MP_STORE_EVENT_MODEL_CHANGED, MP_STORE_EVENT_FINDING,
                MP_STORE_EVENT_SCAN_MATCH, MP_STORE_EVENT_MODEL_REMOVED, MP_STORE_EVENT_MODEL_ADDED,
        };
        for (size_t i = 0; i < 6; i++) {
                CHECK_EQ(h[i].kind, kinds[i]);
                CHECK_EQ(h[i].observed_at, ev[i].observed_at);
        }
        CHECK(!h[2].has_digest);
        CHECK_STREQ(h[2].finding_kind, "truncated");
        CHECK_STREQ(h[2].finding_detail, "tensor x ends past the file\n(line 2)");
        CHECK_STREQ(h[2].finding_file, "model-00002-of-00002.safetensors");
        CHECK(!h[3].finding_file);
        CHECK(!h[2].match_entry);
        CHECK_STREQ(h[3].match_entry, "llama-base");
        CHECK_STREQ(h[3].match_verdict, "derived");
        CHECK_STREQ(h[3].match_relation, "fine-tune");
        CHECK(fabs(h[3].match_score - 0.93) < 1e-12);
        CHECK(!h[3].finding_kind);
        mp_store_history_free(h, n);
        CHECK(mp_store_history(s, NULL, p, &h, &n, NULL) == 0);
        CHECK_EQ(n, 7);
        mp_store_history_free(h, n);
        CHECK(mp_store_history(s, NULL, "/nowhere", &h, &n, NULL) == 0);
        CHECK_EQ(n, 0);
        mp_store_history_free(h, n);

        mp_store_close(s);
        free(path);
        free(dir);
}

/* ---- fingerprints ------------------------------------------------------- */

static int count_cb(const mp_store_fingerprint_info *info, void *userdata) {
        size_t *n = userdata;
        mp_fingerprint *fp = NULL;
        /* The columns agree with the record they were extracted from. */
        CHECK(mp_fingerprint_unpack("stored", info->record, info->record_len, &fp, NULL) == 0);
        CHECK(memcmp(fp->model_digest.data, info->digest, 32) == 0);
        CHECK_STREQ(fp->name, info->name);
        CHECK_EQ(fp->parameter_count, info->params);
        CHECK_EQ(fp->n_tensors, info->n_tensors);
        mp_store_structure st;
        mp_store_structure_of(fp, &st);
        CHECK_EQ(st.hidden_size, info->structure.hidden_size);
        CHECK_EQ(st.num_layers, info->structure.num_layers);
        CHECK_EQ(st.vocab_size, info->structure.vocab_size);
        CHECK_EQ(st.has_weights, info->structure.has_weights);
        mp_fingerprint_free(fp);
        (*n)++;
        return 0;
}

static int stop_cb(const mp_store_fingerprint_info *info, void *userdata) {
        (*(size_t *) userdata)++;
        return 1;
}

/* A callback that queries the store it is called from (allowed: reads). */
struct nested {
        mp_store *s;
        size_t calls, locations;
};

static int nested_cb(const mp_store_fingerprint_info *info, void *userdata) {
        struct nested *q = userdata;
        mp_store_location *l = NULL;
        size_t n = 0;
        CHECK(mp_store_locations(q->s, info->digest, &l, &n, NULL) == 0);
        mp_store_locations_free(l, n);
        uint8_t *rec = NULL;
        size_t len = 0;
        CHECK(mp_store_fingerprint(q->s, info->digest, &rec, &len, NULL) == 0);
        CHECK_EQ(len, info->record_len);
        CHECK(memcmp(rec, info->record, len) == 0);
        free(rec);
        q->calls++;
        q->locations += n;
        return 0;
}

static size_t count_fingerprints(mp_store *s, const mp_store_fingerprint_filter *f) {
        size_t n = 0;
        CHECK(mp_store_foreach_fingerprint(s, f, count_cb, &n, NULL) == 0);
        return n;
}

/* ---- fetching many ------------------------------------------------------ */

struct fetched {
        uint8_t (*digests)[MP_STORE_DIGEST_SIZE];
        size_t n;
        mp_store *s;
        size_t stop_after;              /* 0: never */
};

static int fetched_record(const uint8_t *digest, const uint8_t *record, size_t len, void *userdata) {
        struct fetched *f = userdata;
        if (f->stop_after && f->n == f->stop_after)
                return -ECANCELED;
        memcpy(f->digests[f->n++], digest, MP_STORE_DIGEST_SIZE);
        /* The record as the one-digest call reads it. */
        mp_fingerprint *fp = NULL;
        CHECK(mp_fingerprint_unpack("fetched", record, len, &fp, NULL) == 0);
        CHECK(fp->model_digest.len == MP_STORE_DIGEST_SIZE);
        CHECK(memcmp(fp->model_digest.data, digest, MP_STORE_DIGEST_SIZE) == 0);
        mp_fingerprint_free(fp);
        return 0;
}

/* The number of scoring records stored (of parts, on PostgreSQL). */
static int64_t scoring_records_stored(const char *path) {
        _cleanup_(freep) char *sql = NULL;
        CHECK(asprintf(&sql, "SELECT count(DISTINCT digest) FROM %s", store_scoring_table()) > 0);
        return sql_int(path, sql);
}

struct scoring_check {
        size_t n;
        size_t n_full;                  /* of them, full records (no scoring record stored) */
};

/* A scoring record is the one mp_store_scoring_record() makes from the
 * digest's full record (make_record_tensors() of its name and number of
 * tensors), or that full record where no scoring record is stored. */
static int check_scoring(const uint8_t *digest, const uint8_t *record, size_t len, void *userdata) {
        struct scoring_check *c = userdata;
        mp_fingerprint *fp = NULL;
        CHECK(mp_fingerprint_unpack("scoring", record, len, &fp, NULL) == 0);
        CHECK(fp->model_digest.len == MP_STORE_DIGEST_SIZE);
        CHECK(memcmp(fp->model_digest.data, digest, MP_STORE_DIGEST_SIZE) == 0);
        size_t full_len = 0;
        _cleanup_(freep) uint8_t *full = make_record_tensors(fp->name, digest, llama_arch, fp->parameter_count,
                                                             fp->n_tensors, &full_len);
        mp_fingerprint *ffp = NULL;
        CHECK(mp_fingerprint_unpack("full", full, full_len, &ffp, NULL) == 0);
        _cleanup_(freep) uint8_t *expect = NULL;
        size_t expect_len = 0;
        CHECK(mp_store_scoring_record(ffp, &expect, &expect_len) == 0);
        CHECK(expect_len < full_len);
        if (len == full_len && memcmp(full, record, len) == 0)
                c->n_full++;
        else {
                CHECK_EQ(expect_len, len);
                CHECK(memcmp(expect, record, len) == 0);
        }
        mp_fingerprint_free(ffp);
        mp_fingerprint_free(fp);
        c->n++;
        return 0;
}

static bool digest_in(const uint8_t (*d)[MP_STORE_DIGEST_SIZE], size_t n, const uint8_t *x) {
        for (size_t i = 0; i < n; i++)
                if (memcmp(d[i], x, MP_STORE_DIGEST_SIZE) == 0)
                        return true;
        return false;
}

#define FETCH_MODELS 600

/* mp_store_fingerprints(), mp_store_locations_of(), mp_store_find_hosts()
 * and mp_store_inventory_at() agree with the one-at-a-time calls, across
 * more digests than one statement takes (SQLite: 256). */
static void test_fetch_many(void) {
        _cleanup_(freep) char *dir = test_tmpdir();
        _cleanup_(freep) char *path = test_path(dir, "store.db");
        mp_store *s = open_store(path);
        char a1[MP_STORE_HOST_ID_SIZE], a2[MP_STORE_HOST_ID_SIZE], b[MP_STORE_HOST_ID_SIZE];
        enroll(s, "alpha", "machine-a1", 1, a1);
        enroll(s, "alpha", "machine-a2", 2, a2);
        enroll(s, "beta", "machine-b", 3, b);

        /* Models 0..599 on a1 (every tenth without a record), every third
         * also on b, every seventh removed from a1; /changed holds model 0,
         * then model 1. */
        mp_store_event *ev = calloc(FETCH_MODELS + FETCH_MODELS / 7 + 3, sizeof(*ev));
        uint8_t **recs = calloc(FETCH_MODELS, sizeof(*recs));
        char (*paths)[32] = calloc(FETCH_MODELS, sizeof(*paths));
        CHECK(ev && recs && paths);
        size_t n_ev = 0;
        for (unsigned j = 0; j < FETCH_MODELS; j++) {
                snprintf(paths[j], sizeof(paths[j]), "/m/%u", j);
                mp_store_event *e = &ev[n_ev];
                *e = added(n_ev + 1, paths[j], j);
                n_ev++;
                if (j % 10 != 0) {
                        size_t len = 0;
                        recs[j] = make_record(paths[j], e->model_digest, llama_arch, j, &len);
                        e->record = recs[j];
                        e->record_len = len;
                }
        }
        for (unsigned j = 0; j < FETCH_MODELS; j += 7) {
                ev[n_ev] = (mp_store_event) { .sequence = n_ev + 1, .kind = MP_STORE_EVENT_MODEL_REMOVED,
                                              .observed_at = (int64_t) (n_ev + 1) * 10, .path = paths[j] };
                n_ev++;
        }
        ev[n_ev] = added(n_ev + 1, "/changed", 0);
        n_ev++;
        ev[n_ev] = added(n_ev + 1, "/changed", 1);
        n_ev++;
        CHECK_EQ(ingest(s, a1, ev, n_ev, n_ev, 0), n_ev);
        size_t n_b = 0;
        for (unsigned j = 0; j < FETCH_MODELS; j += 3) {
                ev[n_b] = added(n_b + 1, paths[j], j);
                n_b++;
        }
        CHECK_EQ(ingest(s, b, ev, n_b, n_b, 0), n_b);

        /* Every model, 50 never stored and some twice, in a scrambled order. */
        size_t n_ask = FETCH_MODELS + 50 + 20;
        uint8_t (*ask)[MP_STORE_DIGEST_SIZE] = calloc(n_ask, sizeof(*ask));
        CHECK(ask);
        for (unsigned i = 0; i < FETCH_MODELS + 50; i++)
                digest_of((i * 383) % (FETCH_MODELS + 50), ask[i]);
        for (unsigned i = 0; i < 20; i++)
                digest_of(i * 13, ask[FETCH_MODELS + 50 + i]);

        struct fetched f = { .digests = calloc(n_ask, sizeof(*f.digests)), .s = s };
        CHECK(f.digests);
        CHECK(mp_store_fingerprints(s, (const uint8_t *) ask, n_ask, fetched_record, &f, NULL) == 0);
        /* Exactly the models with a record, each once. */
        CHECK_EQ(f.n, FETCH_MODELS - FETCH_MODELS / 10);
        for (unsigned j = 0; j < FETCH_MODELS + 50; j++) {
                uint8_t d[MP_STORE_DIGEST_SIZE];
                digest_of(j, d);
                CHECK_EQ(digest_in(f.digests, f.n, d), j < FETCH_MODELS && j % 10 != 0);
        }
        for (size_t i = 0; i < f.n; i++)
                for (size_t k = i + 1; k < f.n; k++)
                        CHECK(memcmp(f.digests[i], f.digests[k], MP_STORE_DIGEST_SIZE) != 0);

        /* Scoring records: for each model with a record, what
         * mp_store_scoring_record() makes of it, smaller. */
        struct scoring_check sc = { .n = 0 };
        CHECK(mp_store_scoring_records(s, (const uint8_t *) ask, n_ask, check_scoring, &sc, NULL) == 0);
        CHECK_EQ(sc.n, FETCH_MODELS - FETCH_MODELS / 10);
        CHECK_EQ(sc.n_full, 0);

        /* Where the scoring record is missing (an upgrade not yet done
         * building them), the full record stands in, once. */
        size_t n_dropped = 0;
        for (unsigned j = 1; j < FETCH_MODELS; j += 5) {
                uint8_t d[MP_STORE_DIGEST_SIZE];
                digest_of(j, d);
                _cleanup_(freep) char *dl = store_blob_sql(d, sizeof(d));
                _cleanup_(freep) char *sql = NULL;
                CHECK(asprintf(&sql, "DELETE FROM %s WHERE digest = %s", store_scoring_table(), dl) > 0);
                store_sql_exec(path, sql);
                n_dropped++;
        }
        sc = (struct scoring_check) {};
        CHECK(mp_store_scoring_records(s, (const uint8_t *) ask, n_ask, check_scoring, &sc, NULL) == 0);
        CHECK_EQ(sc.n, FETCH_MODELS - FETCH_MODELS / 10);
        CHECK_EQ(sc.n_full, n_dropped);

        /* A callback's error stops the call and is returned. */
        f.n = 0;
        f.stop_after = 300;
        CHECK_EQ(mp_store_fingerprints(s, (const uint8_t *) ask, n_ask, fetched_record, &f, NULL), -ECANCELED);
        CHECK_EQ(f.n, 300);
        mp_error err;
        CHECK_EQ(mp_store_fingerprints(s, (const uint8_t *) ask, MP_STORE_MAX_FETCH + 1, fetched_record, &f, &err),
                 -EINVAL);
        CHECK(mp_store_fingerprints(s, NULL, 0, fetched_record, &f, NULL) == 0);

        /* Locations: one run per digest in digest order, each run what
         * mp_store_locations() says for it. */
        mp_store_location *l = NULL;
        size_t n = 0;
        CHECK(mp_store_locations_of(s, (const uint8_t *) ask, n_ask, &l, &n, NULL) == 0);
        size_t expect = 0, at = 0;
        uint8_t prev[MP_STORE_DIGEST_SIZE] = {};
        for (size_t i = 0; i < n; i++) {
                CHECK(i == 0 || memcmp(prev, l[i].model_digest, MP_STORE_DIGEST_SIZE) <= 0);
                memcpy(prev, l[i].model_digest, MP_STORE_DIGEST_SIZE);
        }
        while (at < n) {
                mp_store_location *one = NULL;
                size_t n_one = 0;
                CHECK(mp_store_locations(s, l[at].model_digest, &one, &n_one, NULL) == 0);
                CHECK(n_one > 0 && at + n_one <= n);
                for (size_t k = 0; k < n_one && at + k < n; k++) {
                        const mp_store_location *x = &one[k], *y = &l[at + k];
                        CHECK_STREQ(x->host_id, y->host_id);
                        CHECK_STREQ(x->hostname, y->hostname);
                        CHECK_STREQ(x->path, y->path);
                        CHECK_STREQ(x->model_name, y->model_name);
                        CHECK(memcmp(x->model_digest, y->model_digest, MP_STORE_DIGEST_SIZE) == 0);
                        CHECK_EQ(x->first_seen, y->first_seen);
                        CHECK_EQ(x->last_seen, y->last_seen);
                        CHECK_EQ(x->present, y->present);
                }
                at += n_one;
                expect += n_one;
                mp_store_locations_free(one, n_one);
        }
        /* 600 rows on a1, 200 on b, /changed twice. */
        CHECK_EQ(n, FETCH_MODELS + FETCH_MODELS / 3 + 2);
        CHECK_EQ(expect, n);
        mp_store_locations_free(l, n);
        CHECK(mp_store_locations_of(s, NULL, 0, &l, &n, NULL) == 0);
        CHECK_EQ(n, 0);
        CHECK(!l);
        CHECK_EQ(mp_store_locations_of(s, (const uint8_t *) ask, MP_STORE_MAX_FETCH + 1, &l, &n, NULL), -EINVAL);

        /* Hosts by name or id. */
        char (*ids)[MP_STORE_HOST_ID_SIZE] = NULL;
        CHECK(mp_store_find_hosts(s, "alpha", &ids, &n, NULL) == 0);
        CHECK_EQ(n, 2);
        CHECK(strcmp(ids[0], ids[1]) < 0);
        CHECK((strcmp(ids[0], a1) == 0 && strcmp(ids[1], a2) == 0) ||
              (strcmp(ids[0], a2) == 0 && strcmp(ids[1], a1) == 0));
        free(ids);
        CHECK(mp_store_find_hosts(s, b, &ids, &n, NULL) == 0);
        CHECK_EQ(n, 1);
        CHECK_STREQ(ids[0], b);
        free(ids);
        CHECK(mp_store_find_hosts(s, "gamma", &ids, &n, NULL) == 0);
        CHECK_EQ(n, 0);
        free(ids);
        CHECK_EQ(mp_store_find_hosts(s, "al\001pha", &ids, &n, NULL), -EINVAL);
        CHECK_EQ(mp_store_find_hosts(s, "", &ids, &n, NULL), -EINVAL);

        /* One path of one host: its rows by first_seen. */
        CHECK(mp_store_inventory_at(s, a1, "/changed", &l, &n, NULL) == 0);
        CHECK_EQ(n, 2);
        uint8_t d0[MP_STORE_DIGEST_SIZE], d1[MP_STORE_DIGEST_SIZE];
        digest_of(0, d0);
        digest_of(1, d1);
        CHECK(memcmp(l[0].model_digest, d0, MP_STORE_DIGEST_SIZE) == 0 && !l[0].present);
        CHECK(memcmp(l[1].model_digest, d1, MP_STORE_DIGEST_SIZE) == 0 && l[1].present);
        CHECK(l[0].first_seen < l[1].first_seen);
        CHECK_STREQ(l[1].hostname, "alpha");
        CHECK_STREQ(l[1].path, "/changed");
        mp_store_locations_free(l, n);
        CHECK(mp_store_inventory_at(s, a1, paths[7], &l, &n, NULL) == 0);
        CHECK_EQ(n, 1);
        CHECK(!l[0].present);                            /* removed */
        CHECK_STREQ(l[0].model_name, paths[7]);
        mp_store_locations_free(l, n);
        CHECK(mp_store_inventory_at(s, a2, paths[7], &l, &n, NULL) == 0);
        CHECK_EQ(n, 0);
        mp_store_locations_free(l, n);
        CHECK(mp_store_inventory_at(s, a1, "/nowhere", &l, &n, NULL) == 0);
        CHECK_EQ(n, 0);
        mp_store_locations_free(l, n);
        CHECK_EQ(mp_store_inventory_at(s, "not-a-host", "/m/1", &l, &n, NULL), -EINVAL);

        mp_store_close(s);
        for (unsigned j = 0; j < FETCH_MODELS; j++)
                free(recs[j]);
        free(recs);
        free(paths);
        free(ev);
        free(ask);
        free(f.digests);
}

static void test_fingerprints_zoo(void) {
        const char *zoo = test_zoo();
        if (!zoo)
                return;
        static const char *const models[] = { "llama/base-1", "llama/sft-light", "gpt2/base-1" };
        mp_fingerprint *fp[3];
        uint8_t *rec[3];
        size_t len[3];
        for (size_t i = 0; i < 3; i++) {
                fp[i] = zoo_fingerprint(zoo, models[i]);
                CHECK(mp_fingerprint_pack(fp[i], &rec[i], &len[i]) == 0);
                CHECK(fp[i]->signals && fp[i]->signals->arch_hash[0]);
        }
        CHECK(strcmp(fp[0]->signals->arch_hash, fp[2]->signals->arch_hash) != 0);

        char *dir = test_tmpdir();
        char *path = test_path(dir, "store.db");
        mp_store *s = open_store(path);
        char a[MP_STORE_HOST_ID_SIZE], b[MP_STORE_HOST_ID_SIZE];
        enroll(s, "alpha", "machine-a", 1, a);
        enroll(s, "beta", "machine-b", 2, b);

        /* alpha holds all three, beta a copy of llama/base-1 elsewhere. */
        mp_store_event ev[3];
        for (size_t i = 0; i < 3; i++) {
                ev[i] = (mp_store_event) { .sequence = i + 1, .kind = MP_STORE_EVENT_MODEL_ADDED, .observed_at = 5,
                                           .path = models[i], .record = rec[i], .record_len = len[i] };
                memcpy(ev[i].model_digest, fp[i]->model_digest.data, 32);
        }
        CHECK_EQ(ingest(s, a, ev, 3, 3, 0), 3);
        mp_store_event copy = ev[0];
        copy.sequence = 1;
        copy.path = "/home/bob/llama";
        CHECK_EQ(ingest(s, b, &copy, 1, 1, 0), 1);
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM fingerprints"), 3);   /* one per digest */

        mp_store_location *l = NULL;
        size_t n = 0;
        CHECK(mp_store_locations(s, ev[0].model_digest, &l, &n, NULL) == 0);
        CHECK_EQ(n, 2);
        bool seen_a = false, seen_b = false;
        for (size_t i = 0; i < n; i++) {
                seen_a |= strcmp(l[i].host_id, a) == 0 && strcmp(l[i].path, "llama/base-1") == 0;
                seen_b |= strcmp(l[i].host_id, b) == 0 && strcmp(l[i].path, "/home/bob/llama") == 0;
                CHECK(l[i].present);
        }
        CHECK(seen_a && seen_b);
        mp_store_locations_free(l, n);

        uint8_t *back = NULL;
        size_t back_len = 0;
        CHECK(mp_store_fingerprint(s, ev[2].model_digest, &back, &back_len, NULL) == 0);
        CHECK_EQ(back_len, len[2]);
        CHECK(memcmp(back, rec[2], len[2]) == 0);
        free(back);
        uint8_t none[32];
        digest_of(424242, none);
        mp_error err;
        CHECK_EQ(mp_store_fingerprint(s, none, &back, &back_len, &err), -ENOENT);
        CHECK(mp_store_locations(s, none, &l, &n, NULL) == 0);
        CHECK_EQ(n, 0);
        mp_store_locations_free(l, n);

        /* The pre-filter. */
        CHECK_EQ(count_fingerprints(s, NULL), 3);
        mp_store_fingerprint_filter f = { .arch_hash = fp[0]->signals->arch_hash };
        size_t same_arch = strcmp(fp[0]->signals->arch_hash, fp[1]->signals->arch_hash) == 0 ? 2 : 1;
        CHECK_EQ(count_fingerprints(s, &f), same_arch);
        f = (mp_store_fingerprint_filter) { .family_hash = fp[2]->signals->family_hash };
        CHECK(count_fingerprints(s, &f) >= 1);
        f = (mp_store_fingerprint_filter) { .arch_hash = other_arch };
        CHECK_EQ(count_fingerprints(s, &f), 0);
        f = (mp_store_fingerprint_filter) { .min_params = fp[2]->parameter_count,
                                            .max_params = fp[2]->parameter_count };
        size_t want = 0;
        for (size_t i = 0; i < 3; i++)
                want += fp[i]->parameter_count == fp[2]->parameter_count;
        CHECK_EQ(count_fingerprints(s, &f), want);
        size_t calls = 0;
        CHECK(mp_store_foreach_fingerprint(s, NULL, stop_cb, &calls, NULL) == 0);
        CHECK_EQ(calls, 1);
        struct nested q = { .s = s };
        CHECK(mp_store_foreach_fingerprint(s, NULL, nested_cb, &q, NULL) == 0);
        CHECK_EQ(q.calls, 3);
        CHECK_EQ(q.locations, 4);               /* llama/base-1 on both hosts */
        /* The handle is fine afterwards (no transaction left open). */
        CHECK(mp_store_locations(s, ev[1].model_digest, &l, &n, NULL) == 0);
        CHECK_EQ(n, 1);
        mp_store_locations_free(l, n);

        mp_store_close(s);
        for (size_t i = 0; i < 3; i++) {
                free(rec[i]);
                mp_fingerprint_free(fp[i]);
        }
        free(path);
        free(dir);
}

/* ---- schema 1 -> 2 ------------------------------------------------------ */

/* The schema of version 1 exactly as released (migrations are append-only,
 * so this never changes): the fixture for the upgrade test. */
static const char schema_v1[] =
        "CREATE TABLE hosts (id TEXT PRIMARY KEY NOT NULL, machine_id TEXT UNIQUE NOT NULL, hostname TEXT NOT NULL,"
        "  agent_version TEXT NOT NULL, os TEXT NOT NULL, key_hash BLOB NOT NULL CHECK (length(key_hash) = 32),"
        "  enrolled_at INTEGER NOT NULL, last_seen INTEGER NOT NULL, last_seq INTEGER NOT NULL CHECK (last_seq >= 0));"
        "CREATE TABLE fingerprints (digest BLOB PRIMARY KEY NOT NULL CHECK (length(digest) = 32), record BLOB NOT NULL,"
        "  name TEXT NOT NULL, format TEXT NOT NULL, arch_hash TEXT, family_hash TEXT, params INTEGER NOT NULL,"
        "  n_tensors INTEGER NOT NULL, first_seen INTEGER NOT NULL);"
        "CREATE INDEX fingerprints_arch ON fingerprints(arch_hash, params);"
        "CREATE INDEX fingerprints_family ON fingerprints(family_hash, params);"
        "CREATE TABLE events (host_id TEXT NOT NULL REFERENCES hosts(id), seq INTEGER NOT NULL CHECK (seq > 0),"
        "  kind TEXT NOT NULL CHECK (kind IN ('model-added', 'model-changed', 'model-removed', 'finding',"
        "  'scan-match')), observed_at INTEGER NOT NULL, path TEXT NOT NULL,"
        "  model_digest BLOB CHECK (model_digest IS NULL OR length(model_digest) = 32), finding_kind TEXT,"
        "  finding_detail TEXT, match_entry TEXT, match_verdict TEXT, match_relation TEXT, match_score REAL,"
        "  PRIMARY KEY (host_id, seq)) WITHOUT ROWID;"
        "CREATE INDEX events_path ON events(path);"
        "CREATE TABLE inventory (host_id TEXT NOT NULL REFERENCES hosts(id), path TEXT NOT NULL,"
        "  model_digest BLOB NOT NULL CHECK (length(model_digest) = 32), first_seen INTEGER NOT NULL,"
        "  last_seen INTEGER NOT NULL, present INTEGER NOT NULL CHECK (present IN (0, 1)),"
        "  PRIMARY KEY (host_id, path, model_digest)) WITHOUT ROWID;"
        "CREATE INDEX inventory_digest ON inventory(model_digest);"
        "CREATE TABLE catalog (id INTEGER PRIMARY KEY CHECK (id = 1), version TEXT NOT NULL,"
        "  uploaded_at INTEGER NOT NULL, data BLOB NOT NULL);"
        "PRAGMA application_id = 1836082031;"
        "PRAGMA user_version = 1;";

/* A fingerprint row as version 1 wrote it, with an inventory row and event
 * of host h, in SQL both engines read. */
static void v1_insert(const char *path, const char *h, unsigned seq, const uint8_t d[32], const uint8_t *rec,
                      size_t len, const char *name) {
        char *dl = store_blob_sql(d, 32), *rl = store_blob_sql(rec, len), *sql = NULL;
        CHECK(asprintf(&sql,
                       "INSERT INTO fingerprints (digest, record, name, format, arch_hash, family_hash, params,"
                       " n_tensors, first_seen) VALUES (%s, %s, '%s', 'safetensors', NULL, NULL, 7, 0, 5);"
                       "INSERT INTO inventory (host_id, path, model_digest, first_seen, last_seen, present)"
                       " VALUES ('%s', '/v1/%u', %s, 5, 5, 1);"
                       "INSERT INTO events (host_id, seq, kind, observed_at, path, model_digest)"
                       " VALUES ('%s', %u, 'model-added', 5, '/v1/%u', %s)",
                       dl, rl, name, h, seq, dl, h, seq, seq, dl) > 0);
        store_sql_exec(path, sql);
        free(sql);
        free(dl);
        free(rl);
}

/* A store holding fingerprints whose structural columns were never
 * extracted.  SQLite: a file of schema version 1 exactly as released (the
 * migration to 2 copies its rows unindexed).  PostgreSQL: rows as
 * migration 2 leaves those of version 1 (indexed = 0, the columns'
 * defaults), inserted into a fresh store. */
static void test_upgrade_v1(void) {
        const char *zoo = test_zoo();
        char *dir = test_tmpdir();
        char *path = test_path(dir, "v1.db");
        const char *h = "01234567-89ab-4cde-8f01-23456789abcd";

        if (store_is_postgres())
                mp_store_close(open_store(path));
        else {
                sqlite3 *db;
                CHECK(sqlite3_open(path, &db) == SQLITE_OK);
                CHECK(sqlite3_exec(db, schema_v1, NULL, NULL, NULL) == SQLITE_OK);
                sqlite3_close(db);
        }
        uint8_t zero[32] = { 0 };
        char *zl = store_blob_sql(zero, sizeof(zero)), *sql = NULL;
        CHECK(asprintf(&sql, "INSERT INTO hosts (id, machine_id, hostname, agent_version, os, key_hash, enrolled_at,"
                             " last_seen, last_seq) VALUES ('%s', 'machine-v1', 'old', '0.0.9', '', %s, 1, 1, 3)",
                       h, zl) > 0);
        store_sql_exec(path, sql);
        free(sql);
        free(zl);
        /* A hand-made record, a record that does not unpack, and (with the
         * zoo) a real one. */
        uint8_t d1[32], d2[32], d3[32];
        digest_of(1, d1);
        digest_of(2, d2);
        size_t len1;
        uint8_t *rec1 = make_record("hand-made", d1, llama_arch, 42, &len1);
        static const uint8_t junk[] = { 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01 };
        v1_insert(path, h, 1, d1, rec1, len1, "hand-made");
        v1_insert(path, h, 2, d2, junk, sizeof(junk), "damaged");
        mp_fingerprint *fp = NULL;
        uint8_t *rec3 = NULL;
        size_t len3 = 0;
        if (zoo) {
                fp = zoo_fingerprint(zoo, "llama/base-1");
                CHECK(mp_fingerprint_pack(fp, &rec3, &len3) == 0);
                memcpy(d3, fp->model_digest.data, 32);
                v1_insert(path, h, 3, d3, rec3, len3, "llama/base-1");
        }
        if (store_is_postgres())
                CHECK_EQ(sql_int(path, "SELECT count(*) FROM fingerprints WHERE indexed = 1"), 0);

        /* Opening upgrades and re-indexes. */
        mp_store *s = open_store(path);
        CHECK_EQ(mp_store_schema_version(s), STORE_VERSION);
        if (!store_is_postgres())
                CHECK_EQ(sql_int(path, "PRAGMA user_version"), STORE_VERSION);
        int64_t n_fp = zoo ? 3 : 2;
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM fingerprints"), n_fp);
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM fingerprints WHERE indexed = 1"), n_fp);
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM events"), n_fp);
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM inventory"), n_fp);
        CHECK_EQ(sql_int(path, "SELECT has_weights FROM fingerprints WHERE name = 'damaged'"), 0);
        /* Scoring records for all but the record that does not unpack. */
        CHECK_EQ(scoring_records_stored(path), n_fp - 1);
        CHECK_EQ(sql_int(path, "SELECT params FROM fingerprints WHERE name = 'hand-made'"), 7);  /* kept */
        CHECK_EQ(host_last_seq(s, h), 3);

        /* Names in the inventory; the record readable as before. */
        mp_store_location *l = NULL;
        size_t n = 0;
        CHECK(mp_store_inventory(s, h, true, &l, &n, NULL) == 0);
        CHECK_EQ(n, (size_t) n_fp);
        CHECK_STREQ(l[0].model_name, "hand-made");
        CHECK_STREQ(l[1].model_name, "damaged");
        mp_store_locations_free(l, n);
        uint8_t *back = NULL;
        size_t back_len = 0;
        CHECK(mp_store_fingerprint(s, d1, &back, &back_len, NULL) == 0);
        CHECK_EQ(back_len, len1);
        CHECK(memcmp(back, rec1, len1) == 0);
        free(back);

        if (zoo) {
                /* The real record got its structure and tensor keys, and
                 * the pre-filter finds it by either. */
                CHECK_EQ(sql_int(path, "SELECT hidden_size FROM fingerprints WHERE name = 'llama/base-1'"), 128);
                CHECK_EQ(sql_int(path, "SELECT num_layers FROM fingerprints WHERE name = 'llama/base-1'"), 4);
                CHECK_EQ(sql_int(path, "SELECT vocab_size FROM fingerprints WHERE name = 'llama/base-1'"), 4000);
                uint64_t keys[MP_STORE_INDEXED_KEYS];
                int nk = mp_store_tensor_keys(fp, keys, MP_STORE_INDEXED_KEYS);
                CHECK(nk > 0 && nk < MP_STORE_INDEXED_KEYS);    /* all of them: 14 */
                CHECK_EQ(sql_int(path, "SELECT count(*) FROM tensor_keys"), nk);
                mp_store_structure st;
                mp_store_structure_of(fp, &st);
                uint8_t *c = NULL;
                size_t nc = 0;
                CHECK(mp_store_candidates(s, NULL, keys, 1, NULL, &c, &nc, NULL) == 0);
                CHECK_EQ(nc, 1);
                CHECK(memcmp(c, d3, 32) == 0);
                free(c);
                CHECK(mp_store_candidates(s, &st, NULL, 0, NULL, &c, &nc, NULL) == 0);
                CHECK_EQ(nc, 1);                /* the hand-made and damaged ones have no weights */
                free(c);
                CHECK(mp_store_candidates(s, &st, NULL, 0, d3, &c, &nc, NULL) == 0);
                CHECK_EQ(nc, 0);
                CHECK(c == NULL);
        }
        mp_store_close(s);

        /* Reopening finds nothing left to do. */
        s = open_store(path);
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM fingerprints WHERE indexed = 0"), 0);
        mp_store_close(s);

        free(rec1);
        free(rec3);
        mp_fingerprint_free(fp);
        free(path);
        free(dir);
}

static int cmp_key(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

/* The structure and candidates of fingerprints ingested by this version. */
/* A schema 2 store (what this version makes, with the additions of schema
 * 3, and on PostgreSQL 4, taken back) is upgraded on open: the inventory's covering index, and a
 * scoring record for every stored record, built by re-indexing. */
static void test_upgrade_v2(void) {
        _cleanup_(freep) char *dir = test_tmpdir();
        _cleanup_(freep) char *path = test_path(dir, "store.db");
        mp_store *s = open_store(path);
        char id[MP_STORE_HOST_ID_SIZE];
        enroll(s, "alpha", "machine-v2", 1, id);
        enum { N = 40 };
        mp_store_event ev[N];
        uint8_t *recs[N] = {};
        char paths[N][16];
        uint8_t digests[N][MP_STORE_DIGEST_SIZE];
        for (unsigned j = 0; j < N; j++) {
                snprintf(paths[j], sizeof(paths[j]), "/v2/%u", j);
                ev[j] = added(j + 1, paths[j], 7000 + j);
                memcpy(digests[j], ev[j].model_digest, MP_STORE_DIGEST_SIZE);
                if (j % 4 != 0) {
                        size_t len = 0;
                        recs[j] = make_record(paths[j], ev[j].model_digest, llama_arch, j, &len);
                        ev[j].record = recs[j];
                        ev[j].record_len = len;
                }
        }
        CHECK_EQ(ingest(s, id, ev, N, N, 0), N);
        mp_store_close(s);

        _cleanup_(freep) char *drop = NULL;
        CHECK(asprintf(&drop, "DROP TABLE %s", store_scoring_table()) > 0);
        store_sql_exec(path, drop);
        store_sql_exec(path, "DROP INDEX inventory_digest_rows");
        store_sql_exec(path, "CREATE INDEX inventory_digest ON inventory(model_digest)");
        store_sql_exec(path, "ALTER TABLE events DROP COLUMN finding_file");
        if (store_is_postgres())
                store_sql_exec(path, "UPDATE modelprov_meta SET value = '2' WHERE key = 'schema_version'");
        else
                store_sql_exec(path, "PRAGMA user_version = 2");

        s = open_store(path);
        CHECK_EQ(mp_store_schema_version(s), STORE_VERSION);
        int64_t with_record = N - (N + 3) / 4;
        CHECK_EQ(scoring_records_stored(path), with_record);
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM fingerprints WHERE indexed = 1"), with_record);
        if (store_is_postgres()) {
                CHECK_EQ(sql_int(path, "SELECT count(*) FROM pg_indexes WHERE indexname = 'inventory_digest_rows'"), 1);
                CHECK_EQ(sql_int(path, "SELECT count(*) FROM pg_indexes WHERE indexname = 'inventory_digest'"), 0);
        } else {
                CHECK_EQ(sql_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'inventory_digest_rows'"), 1);
                CHECK_EQ(sql_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'inventory_digest'"), 0);
        }
        struct scoring_check sc = { .n = 0 };
        CHECK(mp_store_scoring_records(s, (const uint8_t *) digests, N, check_scoring, &sc, NULL) == 0);
        CHECK_EQ(sc.n, (size_t) with_record);
        mp_store_location *l = NULL;
        size_t n = 0;
        CHECK(mp_store_locations_of(s, (const uint8_t *) digests, N, &l, &n, NULL) == 0);
        CHECK_EQ(n, N);
        mp_store_locations_free(l, n);
        mp_store_close(s);

        /* Opening again changes nothing. */
        s = open_store(path);
        CHECK_EQ(scoring_records_stored(path), with_record);
        mp_store_close(s);
        for (unsigned j = 0; j < N; j++)
                free(recs[j]);
}

/* Scoring records of every size come back whole: on PostgreSQL they are
 * stored in parts of 7,800 bytes (migration 4), so the sizes straddle
 * one, two and several parts.  A record whose parts do not add up is
 * replaced by its full record; a store of schema 3 (PostgreSQL) is
 * converted to parts on open. */
enum { PARTS_MODELS = 7, PART_BYTES = 7800 };

/* Stores the models; their digests, sorted, into digests.  Returns the
 * number of parts their scoring records make. */
static int64_t parts_fixture(mp_store *s, uint8_t (*digests)[MP_STORE_DIGEST_SIZE]) {
        static const size_t n_tensors[PARTS_MODELS] = { 0, 52, 54, 106, 108, 160, 280 };
        char id[MP_STORE_HOST_ID_SIZE];
        enroll(s, "alpha", "machine-parts", 1, id);
        mp_store_event ev[PARTS_MODELS];
        uint8_t *recs[PARTS_MODELS];
        char paths[PARTS_MODELS][16];
        int64_t parts = 0;
        bool sizes[4] = {};             /* records of 1, 2, 3 parts and more, seen */
        for (unsigned j = 0; j < PARTS_MODELS; j++) {
                snprintf(paths[j], sizeof(paths[j]), "/parts/%u", j);
                ev[j] = added(j + 1, paths[j], 900 + j);
                memcpy(digests[j], ev[j].model_digest, MP_STORE_DIGEST_SIZE);
                size_t len = 0;
                recs[j] = make_record_tensors(paths[j], ev[j].model_digest, llama_arch, j, n_tensors[j], &len);
                ev[j].record = recs[j];
                ev[j].record_len = len;

                mp_fingerprint *fp = NULL;
                CHECK(mp_fingerprint_unpack("record", recs[j], len, &fp, NULL) == 0);
                _cleanup_(freep) uint8_t *scoring = NULL;
                size_t scoring_len = 0;
                CHECK(mp_store_scoring_record(fp, &scoring, &scoring_len) == 0);
                mp_fingerprint_free(fp);
                int64_t n = (int64_t) ((scoring_len + PART_BYTES - 1) / PART_BYTES);
                sizes[n > 3 ? 3 : n - 1] = true;
                parts += n;
        }
        CHECK(sizes[0] && sizes[1] && sizes[2] && sizes[3]);
        CHECK_EQ(ingest(s, id, ev, PARTS_MODELS, PARTS_MODELS, 0), PARTS_MODELS);
        for (unsigned j = 0; j < PARTS_MODELS; j++)
                free(recs[j]);
        qsort(digests, PARTS_MODELS, MP_STORE_DIGEST_SIZE, mp_store_digest_cmp);
        return parts;
}

static void check_all_scoring(mp_store *s, const uint8_t (*digests)[MP_STORE_DIGEST_SIZE], size_t want_full) {
        struct scoring_check sc = { .n = 0 };
        CHECK(mp_store_scoring_records(s, (const uint8_t *) digests, PARTS_MODELS, check_scoring, &sc, NULL) == 0);
        CHECK_EQ(sc.n, PARTS_MODELS);
        CHECK_EQ(sc.n_full, want_full);
}

static void test_scoring_parts(void) {
        _cleanup_(freep) char *dir = test_tmpdir();
        _cleanup_(freep) char *path = test_path(dir, "store.db");
        uint8_t digests[PARTS_MODELS][MP_STORE_DIGEST_SIZE];
        mp_store *s = open_store(path);
        int64_t parts = parts_fixture(s, digests);
        check_all_scoring(s, digests, 0);
        if (!store_is_postgres()) {
                mp_store_close(s);
                return;
        }
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM scoring_parts"), parts);
        CHECK_EQ(sql_int(path, "SELECT max(length(record)) FROM scoring_parts"), PART_BYTES);
        /* Stored inline, digest included: nothing in the table's TOAST. */
        CHECK_EQ(sql_int(path, "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'scoring_parts'"),
                 0);

        /* Schema 3 kept each record whole: opening such a store splits
         * them (the same records come back, none of them full). */
        mp_store_close(s);
        store_sql_exec(path, "CREATE TABLE scoring_records (digest BYTEA PRIMARY KEY, record BYTEA NOT NULL)");
        store_sql_exec(path, "INSERT INTO scoring_records SELECT digest, string_agg(record, ''::bytea ORDER BY part)"
                             " FROM scoring_parts GROUP BY digest");
        store_sql_exec(path, "DROP TABLE scoring_parts");
        store_sql_exec(path, "UPDATE modelprov_meta SET value = '3' WHERE key = 'schema_version'");
        s = open_store(path);
        CHECK_EQ(mp_store_schema_version(s), STORE_VERSION);
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM scoring_parts"), parts);
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM pg_tables WHERE tablename = 'scoring_records'"), 0);
        check_all_scoring(s, digests, 0);

        /* Damaged records of three parts or more: one loses a middle part,
         * one its first, one has parts that disagree on their number.  Each
         * is read as its full record. */
        static const char *const damage[] = {
                "DELETE FROM scoring_parts WHERE part = 1 AND digest = ",
                "DELETE FROM scoring_parts WHERE part = 0 AND digest = ",
                "UPDATE scoring_parts SET parts = parts + 1 WHERE part = 0 AND digest = ",
        };
        size_t n_damaged = 0;
        for (unsigned j = 0; j < PARTS_MODELS && n_damaged < ELEMENTSOF(damage); j++) {
                _cleanup_(freep) char *dl = store_blob_sql(digests[j], MP_STORE_DIGEST_SIZE), *count = NULL, *sql = NULL;
                CHECK(asprintf(&count, "SELECT count(*) FROM scoring_parts WHERE digest = %s", dl) > 0);
                if (sql_int(path, count) < 3)
                        continue;
                CHECK(asprintf(&sql, "%s%s", damage[n_damaged++], dl) > 0);
                store_sql_exec(path, sql);
        }
        CHECK_EQ(n_damaged, ELEMENTSOF(damage));
        check_all_scoring(s, digests, n_damaged);
        mp_store_close(s);
}

static void test_candidates(void) {
        char *dir = test_tmpdir();
        char *path = test_path(dir, "store.db");
        mp_store *s = open_store(path);
        char id[MP_STORE_HOST_ID_SIZE];
        enroll(s, "alpha", "machine-a", 1, id);

        /* Records with tensors: widths 64, 64, 32, one of unknown width (no
         * matrix), and a 32-wide one sharing a tensor with the first. */
        static const struct {
                uint64_t width;
                uint8_t hash_byte;
        } spec[] = { { 64, 1 }, { 64, 2 }, { 32, 3 }, { 0, 4 }, { 32, 1 } };
        enum { N = sizeof(spec) / sizeof(spec[0]) };
        uint8_t d[N][32];
        mp_store_event ev[N];
        uint8_t *rec[N];
        char paths[N][16];
        for (size_t i = 0; i < N; i++) {
                digest_of(100 + (unsigned) i, d[i]);
                mp_fingerprint fp;
                Modelprov__V1__Signals sig;
                Modelprov__V1__TensorDigest t, *tp = &t;
                modelprov__v1__fingerprint__init(&fp);
                modelprov__v1__signals__init(&sig);
                modelprov__v1__tensor_digest__init(&t);
                uint64_t shape[2] = { 4096, spec[i].width };
                uint8_t hash[16], sample[4] = { 0, 0x3c, 0, 0xbc };
                memset(hash, spec[i].hash_byte, sizeof(hash));
                t.name = (char *) "model.layers.0.mlp.up_proj.weight";
                t.dtype = (char *) "F16";
                t.shape = shape;
                t.n_shape = spec[i].width ? 2 : 1;
                t.xxh3_128.data = hash;
                t.xxh3_128.len = 16;
                t.n_bytes = 4096 * (spec[i].width ? spec[i].width : 1) * 2;
                t.l2 = 1;
                t.std = 0.1;
                t.sample.data = sample;
                t.sample.len = sizeof(sample);
                sig.has_weights = true;
                fp.record_version = MP_FINGERPRINT_RECORD_VERSION;
                fp.model_digest.data = d[i];
                fp.model_digest.len = 32;
                fp.tensors = &tp;
                fp.n_tensors = 1;
                fp.signals = &sig;
                size_t len;
                CHECK(mp_fingerprint_pack(&fp, &rec[i], &len) == 0);
                mp_store_structure st;
                mp_store_structure_of(&fp, &st);
                CHECK_EQ(st.hidden_size, spec[i].width);        /* the most frequent row width */
                CHECK(st.has_weights);
                uint64_t k[4];
                CHECK_EQ(mp_store_tensor_keys(&fp, k, 4), spec[i].width ? 1 : 0);
                snprintf(paths[i], sizeof(paths[i]), "/c/%zu", i);
                ev[i] = (mp_store_event) { .sequence = i + 1, .kind = MP_STORE_EVENT_MODEL_ADDED, .observed_at = 1,
                                           .path = paths[i], .record = rec[i], .record_len = len };
                memcpy(ev[i].model_digest, d[i], 32);
        }
        CHECK_EQ(ingest(s, id, ev, N, N, 0), N);
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM tensor_keys"), 4);        /* the vector has none */
        CHECK_EQ(sql_int(path, "SELECT count(DISTINCT key) FROM tensor_keys"), 3);

        uint8_t *c = NULL;
        size_t nc = 0;
        mp_store_structure w64 = { .hidden_size = 64, .has_weights = true };
        uint64_t key1 = 0x0101010101010101ULL;
        /* Width 64: both 64-wide ones and the unknown one. */
        CHECK(mp_store_candidates(s, &w64, NULL, 0, NULL, &c, &nc, NULL) == 0);
        CHECK_EQ(nc, 3);
        for (size_t i = 1; i < nc; i++)
                CHECK(memcmp(c + 32 * (i - 1), c + 32 * i, 32) < 0);   /* sorted, distinct */
        free(c);
        /* ... plus the 32-wide one sharing key 1, the first excluded. */
        CHECK(mp_store_candidates(s, &w64, &key1, 1, d[0], &c, &nc, NULL) == 0);
        CHECK_EQ(nc, 3);
        bool has4 = false;
        for (size_t i = 0; i < nc; i++) {
                CHECK(memcmp(c + 32 * i, d[0], 32) != 0);
                has4 |= memcmp(c + 32 * i, d[4], 32) == 0;
        }
        CHECK(has4);
        free(c);
        /* Unknown width: just the unknown one; keys alone: the sharers. */
        mp_store_structure w0 = { .has_weights = true };
        CHECK(mp_store_candidates(s, &w0, NULL, 0, NULL, &c, &nc, NULL) == 0);
        CHECK_EQ(nc, 1);
        CHECK(memcmp(c, d[3], 32) == 0);
        free(c);
        CHECK(mp_store_candidates(s, NULL, &key1, 1, NULL, &c, &nc, NULL) == 0);
        CHECK_EQ(nc, 2);
        free(c);
        /* Limits. */
        mp_error err;
        mp_store_structure huge = { .hidden_size = UINT64_MAX };
        CHECK_EQ(mp_store_candidates(s, &huge, NULL, 0, NULL, &c, &nc, &err), -EINVAL);
        CHECK_EQ(mp_store_candidates(s, NULL, &key1, MP_STORE_MAX_QUERY_KEYS + 1, NULL, &c, &nc, &err), -EINVAL);

        /* The fingerprint filter by width, and the structure it reports. */
        mp_store_fingerprint_filter f = { .hidden_size = 32 };
        CHECK_EQ(count_fingerprints(s, &f), 2);
        f.hidden_size = UINT64_MAX;
        CHECK_EQ(mp_store_foreach_fingerprint(s, &f, count_cb, &nc, &err), -EINVAL);

        /* A model with more keyed tensors than are indexed: its smallest
         * keys are, and a query with any of them finds it. */
        enum { MANY = MP_STORE_INDEXED_KEYS + 9 };
        Modelprov__V1__TensorDigest many[MANY], *manyp[MANY];
        uint8_t hashes[MANY][16], dm[32];
        uint64_t shape[2] = { 1024, 64 };
        uint64_t want[MANY];
        for (size_t i = 0; i < MANY; i++) {
                modelprov__v1__tensor_digest__init(&many[i]);
                for (size_t b = 0; b < 16; b++)
                        hashes[i][b] = (uint8_t) (i * 37 + b * 11 + 5);
                many[i].name = (char *) "w";
                many[i].shape = shape;
                many[i].n_shape = 2;
                many[i].xxh3_128.data = hashes[i];
                many[i].xxh3_128.len = 16;
                many[i].n_bytes = 1024 * 64 * 2;
                many[i].l2 = 1;
                many[i].std = 0.5;
                manyp[i] = &many[i];
                want[i] = mp_store_tensor_key(&many[i]);
        }
        mp_fingerprint mfp;
        modelprov__v1__fingerprint__init(&mfp);
        mfp.record_version = MP_FINGERPRINT_RECORD_VERSION;
        digest_of(200, dm);
        mfp.model_digest.data = dm;
        mfp.model_digest.len = 32;
        mfp.tensors = manyp;
        mfp.n_tensors = MANY;
        uint8_t *mrec;
        size_t mlen;
        CHECK(mp_fingerprint_pack(&mfp, &mrec, &mlen) == 0);
        mp_store_event mev = { .sequence = N + 1, .kind = MP_STORE_EVENT_MODEL_ADDED, .observed_at = 1,
                               .path = "/c/many", .record = mrec, .record_len = mlen };
        memcpy(mev.model_digest, dm, 32);
        CHECK_EQ(ingest(s, id, &mev, 1, 1, 0), N + 1);
        free(mrec);
        char *dml = store_blob_sql(dm, sizeof(dm)), *sql = NULL;
        CHECK(asprintf(&sql, "SELECT count(*) FROM tensor_keys WHERE digest = %s", dml) > 0);
        CHECK_EQ(sql_int(path, sql), MP_STORE_INDEXED_KEYS);
        free(sql);
        free(dml);
        qsort(want, MANY, sizeof(*want), cmp_key);
        CHECK(mp_store_candidates(s, NULL, &want[MP_STORE_INDEXED_KEYS - 1], 1, NULL, &c, &nc, NULL) == 0);
        CHECK_EQ(nc, 1);
        CHECK(memcmp(c, dm, 32) == 0);
        free(c);
        CHECK(mp_store_candidates(s, NULL, &want[MP_STORE_INDEXED_KEYS], 1, NULL, &c, &nc, NULL) == 0);
        CHECK_EQ(nc, 0);                /* not indexed */
        CHECK(mp_store_candidates(s, NULL, want, MANY, NULL, &c, &nc, NULL) == 0);
        CHECK_EQ(nc, 1);                /* a query with all its keys */
        free(c);

        mp_store_close(s);
        for (size_t i = 0; i < N; i++)
                free(rec[i]);
        free(path);
        free(dir);
}

/* ---- hostile input ------------------------------------------------------ */

static void expect_refused(mp_store *s, const char *id, const mp_store_event *ev, size_t n, int code,
                           const char *reason) {
        mp_error err;
        uint64_t acked = 777;
        int r = mp_store_ingest(s, id, ev, n, &acked, NULL, NULL, &err);
        if (r != code)
                fprintf(stderr, "got %d (%s), want %d\n", r, r < 0 ? err.reason : "", code);
        CHECK_EQ(r, code);
        CHECK_EQ(acked, 777);           /* untouched on failure */
        if (reason && !strstr(err.reason, reason)) {
                fprintf(stderr, "reason \"%s\" lacks \"%s\"\n", err.reason, reason);
                CHECK(false);
        }
}

static void test_hostile(void) {
        char *dir = test_tmpdir();
        char *path = test_path(dir, "store.db");
        mp_store *s = open_store(path);
        char id[MP_STORE_HOST_ID_SIZE];
        enroll(s, "alpha", "machine-a", 1, id);
        mp_error err;

        /* Each batch starts with a valid event 1: nothing of it may stay. */
        mp_store_event ev[2] = { added(1, "/ok", 1), added(2, "/bad", 2) };
#define REFUSE(setup, code, reason)                                     \
        do {                                                            \
                ev[1] = added(2, "/bad", 2);                            \
                setup;                                                  \
                expect_refused(s, id, ev, 2, code, reason);             \
        } while (0)

        REFUSE(ev[1].sequence = 0, -EINVAL, "sequence");
        REFUSE(ev[1].sequence = (uint64_t) INT64_MAX + 1, -EINVAL, "sequence");
        REFUSE(ev[1].kind = 99, -EINVAL, "unknown event kind");
        REFUSE(ev[1].kind = 0, -EINVAL, "unknown event kind");
        REFUSE(ev[1].observed_at = -1, -EINVAL, "time");
        REFUSE(ev[1].path = NULL, -EINVAL, "path");
        REFUSE(ev[1].path = "", -EINVAL, "path");
        REFUSE(ev[1].path = "/bad\xff\xfe", -EINVAL, "UTF-8");
        char *long_path = malloc(MP_STORE_MAX_PATH + 2);
        memset(long_path, 'x', MP_STORE_MAX_PATH + 1);
        long_path[MP_STORE_MAX_PATH + 1] = 0;
        REFUSE(ev[1].path = long_path, -EINVAL, "longer than");
        REFUSE(memset(ev[1].model_digest, 0, 32), -EINVAL, "without a model digest");
        REFUSE(ev[1].finding_kind = "x", -EINVAL, "finding fields");
        REFUSE(ev[1].match_score = 0.5, -EINVAL, "match fields");
        REFUSE((ev[1].kind = MP_STORE_EVENT_FINDING, ev[1].finding_kind = "a\nb"), -EINVAL, "control");
        REFUSE((ev[1].kind = MP_STORE_EVENT_FINDING), -EINVAL, "finding kind");
        REFUSE((ev[1].kind = MP_STORE_EVENT_SCAN_MATCH, ev[1].match_entry = "e", ev[1].match_verdict = "v",
                ev[1].match_score = NAN), -EINVAL, "finite");
        REFUSE((ev[1].kind = MP_STORE_EVENT_SCAN_MATCH, ev[1].match_entry = "e"), -EINVAL, "match verdict");
        static const uint8_t junk[] = { 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01 };
        REFUSE((ev[1].record = junk, ev[1].record_len = sizeof(junk)), -EBADMSG, "fingerprint");
        REFUSE((ev[1].record = junk, ev[1].record_len = 0), -EINVAL, "disagree");
        REFUSE((ev[1].kind = MP_STORE_EVENT_MODEL_REMOVED, ev[1].record = junk, ev[1].record_len = sizeof(junk)),
               -EINVAL, "carry a record");
        uint8_t d9[32];
        digest_of(9, d9);
        size_t mlen;
        uint8_t *mismatch = make_record("m", d9, llama_arch, 7, &mlen);
        REFUSE((ev[1].record = mismatch, ev[1].record_len = mlen), -EBADMSG, "model digest");
        uint8_t *huge = calloc(1, MP_STORE_MAX_RECORD + 1);
        CHECK(huge);
        REFUSE((ev[1].record = huge, ev[1].record_len = MP_STORE_MAX_RECORD + 1), -EINVAL, "limit");
        free(huge);
        /* A record with a control character in its format column. */
        uint8_t d2[32];
        digest_of(2, d2);
        mp_fingerprint fp;
        modelprov__v1__fingerprint__init(&fp);
        fp.record_version = MP_FINGERPRINT_RECORD_VERSION;
        fp.format = (char *) "safe\033[2Jtensors";
        fp.model_digest.data = d2;
        fp.model_digest.len = 32;
        uint8_t *esc;
        size_t esc_len;
        CHECK(mp_fingerprint_pack(&fp, &esc, &esc_len) == 0);
        REFUSE((ev[1].record = esc, ev[1].record_len = esc_len), -EINVAL, "record format");
        /* An unsupported record version. */
        fp.format = (char *) "safetensors";
        fp.record_version = 99;
        uint8_t *v99;
        size_t v99_len;
        CHECK(mp_fingerprint_pack(&fp, &v99, &v99_len) == 0);
        REFUSE((ev[1].record = v99, ev[1].record_len = v99_len), -ENOTSUP, "version");
#undef REFUSE

        /* Too many events. */
        mp_store_event *many = calloc(MP_STORE_MAX_BATCH + 1, sizeof(*many));
        for (size_t i = 0; i <= MP_STORE_MAX_BATCH; i++)
                many[i] = added(i + 1, "/many", 1);
        expect_refused(s, id, many, MP_STORE_MAX_BATCH + 1, -EINVAL, "batch");
        free(many);

        /* Records that each fit but together exceed the batch limit (never
         * read: the sizes are checked first). */
        enum { N_BIG = MP_STORE_MAX_BATCH_BYTES / MP_STORE_MAX_RECORD + 1 };
        uint8_t *big = calloc(1, MP_STORE_MAX_RECORD);
        mp_store_event bigs[N_BIG];
        for (size_t i = 0; i < N_BIG; i++) {
                bigs[i] = added(i + 1, "/big", (unsigned) i + 1);
                bigs[i].record = big;
                bigs[i].record_len = MP_STORE_MAX_RECORD;
        }
        expect_refused(s, id, bigs, N_BIG, -EINVAL, "in all");
        free(big);

        /* Bad host ids. */
        expect_refused(s, "not-a-uuid", ev, 1, -EINVAL, "UUID");
        expect_refused(s, "01234567-89AB-4cde-8f01-23456789abcd", ev, 1, -EINVAL, "UUID");
        expect_refused(s, "01234567-89ab-4cde-8f01-23456789abcd", ev, 1, -ENOENT, "unknown host");

        /* Nothing of any of it was stored. */
        CHECK_EQ(host_last_seq(s, id), 0);
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM events"), 0);
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM inventory"), 0);
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM fingerprints"), 0);

        /* Enrollment. */
        uint8_t key[32] = { 0 };
        char out[MP_STORE_HOST_ID_SIZE];
        mp_host_info bad[] = {
                { .hostname = "evil\nhost", .machine_id = "m", .agent_version = "1" },
                { .hostname = "", .machine_id = "m", .agent_version = "1" },
                { .hostname = "h", .machine_id = NULL, .agent_version = "1" },
                { .hostname = "h", .machine_id = "m", .agent_version = "1", .os = "\x7f" },
                { .hostname = long_path, .machine_id = "m", .agent_version = "1" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                CHECK_EQ(mp_store_enroll(s, &bad[i], key, out, &err), -EINVAL);
        mp_store_host *h = NULL;
        size_t n = 0;
        CHECK(mp_store_hosts(s, &h, &n, NULL) == 0);
        CHECK_EQ(n, 1);
        mp_store_hosts_free(h, n);
        CHECK_EQ(mp_store_heartbeat(s, id, "1\n2", 1, &err), -EINVAL);
        CHECK_EQ(mp_store_heartbeat(s, id, "1", -5, &err), -EINVAL);
        mp_store_history_entry *he = NULL;
        CHECK_EQ(mp_store_history(s, "x", NULL, &he, &n, &err), -EINVAL);
        mp_store_location *l = NULL;
        CHECK_EQ(mp_store_inventory(s, "x", false, &l, &n, &err), -EINVAL);
        mp_store_fingerprint_filter f = { .max_params = UINT64_MAX };
        CHECK_EQ(mp_store_foreach_fingerprint(s, &f, count_cb, &n, &err), -EINVAL);

        /* After all that, the valid event goes in. */
        CHECK_EQ(ingest(s, id, ev, 1, 1, 0), 1);

        mp_store_close(s);
        free(long_path);
        free(mismatch);
        free(esc);
        free(v99);
        free(path);
        free(dir);
}

/* ---- concurrency -------------------------------------------------------- */

static void writer_child(const char *path, const char *id, unsigned base) {
        mp_store *s = open_store(path);
        char paths[10][64];
        for (uint64_t next = 1; next <= 600; next += 10) {
                mp_store_event ev[10];
                for (unsigned k = 0; k < 10; k++) {
                        snprintf(paths[k], sizeof(paths[k]), "/w/%llu", (unsigned long long) (next + k));
                        ev[k] = added(next + k, paths[k], base + (unsigned) (next + k));
                }
                uint64_t acked;
                mp_error err;
                if (mp_store_ingest(s, id, ev, 10, &acked, NULL, NULL, &err) < 0) {
                        fprintf(stderr, "writer %u: %s\n", base, err.reason);
                        _exit(2);
                }
                if (acked != next + 9)
                        _exit(3);
        }
        mp_store_close(s);
        _exit(0);
}

static void test_two_writers(void) {
        char *dir = test_tmpdir();
        char *path = test_path(dir, "store.db");
        char a[MP_STORE_HOST_ID_SIZE], b[MP_STORE_HOST_ID_SIZE];
        mp_store *s = open_store(path);
        enroll(s, "alpha", "machine-a", 1, a);
        enroll(s, "beta", "machine-b", 2, b);
        mp_store_close(s);

        pid_t pa = fork();
        CHECK(pa >= 0);
        if (pa == 0)
                writer_child(path, a, 0);
        pid_t pb = fork();
        CHECK(pb >= 0);
        if (pb == 0)
                writer_child(path, b, 100000);

        /* A reader meanwhile (WAL: never blocked by the writers). */
        s = open_store(path);
        for (int i = 0; i < 20; i++) {
                mp_store_location *l = NULL;
                size_t n = 0;
                CHECK(mp_store_inventory(s, NULL, true, &l, &n, NULL) == 0);
                mp_store_locations_free(l, n);
        }
        mp_store_close(s);

        int status;
        CHECK(waitpid(pa, &status, 0) == pa);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK(waitpid(pb, &status, 0) == pb);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        check_events_exactly_once(path, a, 600);
        check_events_exactly_once(path, b, 600);
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM inventory WHERE present = 1"), 1200);
        free(path);
        free(dir);
}

/* Two collector instances behind a load balancer: each thread has its own
 * handle (on PostgreSQL its own connection) and sends the same host's
 * stream, resending a few acknowledged events before each batch as an agent
 * does that failed over with acks in flight.  The store must take turns:
 * every event stored exactly once, every call's ack covering its batch. */
enum { RACE_EVENTS = 1500, RACE_BATCH = 25 };

typedef struct racer {
        const char *url, *host;
        const mp_store_event *ev;
        pthread_barrier_t *start;
        unsigned seed;
        size_t stored, dup, calls;
} racer;

static void *race_ingest(void *arg) {
        racer *rc = arg;
        mp_store *s = NULL;
        mp_error err;
        if (mp_store_open(rc->url, &s, &err) < 0) {
                fprintf(stderr, "%s: %s\n", err.file, err.reason);
                CHECK(false);
        }
        pthread_barrier_wait(rc->start);
        uint64_t acked = 0;
        unsigned x = rc->seed;
        while (acked < RACE_EVENTS) {
                x = x * 1103515245u + 12345u;
                uint64_t back = (x >> 16) % 8;
                uint64_t from = acked + 1 > back ? acked + 1 - back : 1;
                size_t len = RACE_EVENTS - from + 1 < RACE_BATCH ? RACE_EVENTS - from + 1 : RACE_BATCH;
                uint64_t a = 0;
                size_t st = 0, dup = 0;
                if (mp_store_ingest(s, rc->host, rc->ev + from - 1, len, &a, &st, &dup, &err) < 0) {
                        fprintf(stderr, "racer %u: %s\n", rc->seed, err.reason);
                        CHECK(false);
                }
                /* The batch starts at or before the store's next sequence,
                 * so all of it is stored now or was before. */
                CHECK_EQ(st + dup, len);
                CHECK(a >= from + len - 1);
                CHECK(a >= acked);
                acked = a;
                rc->stored += st;
                rc->dup += dup;
                rc->calls++;
        }
        mp_store_close(s);
        return NULL;
}

typedef struct enroller {
        const char *url;
        pthread_barrier_t *start;
        uint8_t key_byte;
        char id[MP_STORE_HOST_ID_SIZE];
} enroller;

static void *race_enroll(void *arg) {
        enroller *e = arg;
        mp_store *s = NULL;
        mp_error err;
        CHECK(mp_store_open(e->url, &s, &err) == 0);
        uint8_t key[MP_STORE_DIGEST_SIZE];
        memset(key, e->key_byte, sizeof(key));
        mp_host_info info = { .hostname = "raced", .machine_id = "machine-raced", .agent_version = "0.1.0" };
        pthread_barrier_wait(e->start);
        if (mp_store_enroll(s, &info, key, e->id, &err) < 0) {
                fprintf(stderr, "enroll: %s\n", err.reason);
                CHECK(false);
        }
        mp_store_close(s);
        return NULL;
}

typedef struct opener {
        const char *url;
        pthread_barrier_t *start;
        int r;
        char why[MP_ERROR_REASON_MAX];
} opener;

static void *race_open(void *arg) {
        opener *o = arg;
        mp_store *s = NULL;
        mp_error err;
        pthread_barrier_wait(o->start);
        o->r = mp_store_open(o->url, &s, &err);
        if (o->r < 0)
                snprintf(o->why, sizeof(o->why), "%s", err.reason);
        else
                o->r = mp_store_schema_version(s);
        mp_store_close(s);
        return NULL;
}

/* One race of test_concurrent_open() on a new store. */
static void concurrent_open_round(void) {
        enum { OPENERS = 4 };
        char *dir = test_tmpdir();
        char *path = test_path(dir, "store.db");
        char *url = store_url(path);
        pthread_barrier_t start;
        CHECK(pthread_barrier_init(&start, NULL, OPENERS) == 0);
        opener o[OPENERS];
        pthread_t t[OPENERS];
        for (size_t i = 0; i < OPENERS; i++) {
                o[i] = (opener) { .url = url, .start = &start };
                CHECK(pthread_create(&t[i], NULL, race_open, &o[i]) == 0);
        }
        for (size_t i = 0; i < OPENERS; i++) {
                CHECK(pthread_join(t[i], NULL) == 0);
                if (o[i].r < 0)
                        fprintf(stderr, "opener %zu: %s\n", i, o[i].why);
                CHECK_EQ(o[i].r, STORE_VERSION);
        }
        pthread_barrier_destroy(&start);
        if (store_is_postgres()) {
                CHECK_EQ(sql_int(path, "SELECT count(*) FROM modelprov_meta"), 2);
                CHECK_EQ(sql_int(path, "SELECT value::bigint FROM modelprov_meta WHERE key = 'schema_version'"), STORE_VERSION);
        } else
                CHECK_EQ(sql_int(path, "PRAGMA user_version"), STORE_VERSION);
        free(url);
        free(path);
        free(dir);
}

/* Instances starting together on a new store: one creates the schema, the
 * others wait and find it (no step applied twice, nobody refused).  Races
 * over the WAL switch were lost about once in a hundred on SQLite (busy at
 * once, not after the timeout): many rounds. */
static void test_concurrent_open(void) {
        unsigned rounds = store_is_postgres() ? 3 : 100;
        for (unsigned k = 0; k < rounds; k++)
                concurrent_open_round();
}

static void test_concurrent_ingest(void) {
        char *dir = test_tmpdir();
        char *path = test_path(dir, "store.db");
        char *url = store_url(path);
        mp_store *s = open_store(path);
        char id[MP_STORE_HOST_ID_SIZE];
        enroll(s, "alpha", "machine-a", 1, id);

        char (*paths)[32] = calloc(RACE_EVENTS, sizeof(*paths));
        mp_store_event *ev = calloc(RACE_EVENTS, sizeof(*ev));
        CHECK(paths && ev);
        for (unsigned i = 0; i < RACE_EVENTS; i++) {
                snprintf(paths[i], sizeof(paths[i]), "/race/%u", i + 1);
                ev[i] = added(i + 1, paths[i], i + 1);
        }

        pthread_barrier_t start;
        CHECK(pthread_barrier_init(&start, NULL, 2) == 0);
        racer rc[2] = {
                { .url = url, .host = id, .ev = ev, .start = &start, .seed = 1 },
                { .url = url, .host = id, .ev = ev, .start = &start, .seed = 2 },
        };
        pthread_t t[2];
        for (size_t i = 0; i < 2; i++)
                CHECK(pthread_create(&t[i], NULL, race_ingest, &rc[i]) == 0);
        for (size_t i = 0; i < 2; i++)
                CHECK(pthread_join(t[i], NULL) == 0);
        pthread_barrier_destroy(&start);
        fprintf(stderr, "   instance 1: %zu calls, %zu stored, %zu duplicates; instance 2: %zu calls, %zu stored, %zu"
                " duplicates\n", rc[0].calls, rc[0].stored, rc[0].dup, rc[1].calls, rc[1].stored, rc[1].dup);

        /* Every event stored by exactly one of them, exactly once. */
        CHECK_EQ(rc[0].stored + rc[1].stored, RACE_EVENTS);
        check_events_exactly_once(path, id, RACE_EVENTS);
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM inventory WHERE present = 1"), RACE_EVENTS);
        CHECK_EQ(host_last_seq(s, id), RACE_EVENTS);
        /* And the stream goes on from there. */
        mp_store_event next = added(RACE_EVENTS + 1, "/race/next", RACE_EVENTS + 1);
        CHECK_EQ(ingest(s, id, &next, 1, 1, 0), RACE_EVENTS + 1);

        /* One machine enrolling through four instances at once: one host. */
        enum { ENROLLERS = 4 };
        CHECK(pthread_barrier_init(&start, NULL, ENROLLERS) == 0);
        enroller en[ENROLLERS];
        pthread_t te[ENROLLERS];
        for (size_t i = 0; i < ENROLLERS; i++) {
                en[i] = (enroller) { .url = url, .start = &start, .key_byte = (uint8_t) (0x40 + i) };
                CHECK(pthread_create(&te[i], NULL, race_enroll, &en[i]) == 0);
        }
        for (size_t i = 0; i < ENROLLERS; i++)
                CHECK(pthread_join(te[i], NULL) == 0);
        pthread_barrier_destroy(&start);
        for (size_t i = 1; i < ENROLLERS; i++)
                CHECK_STREQ(en[i].id, en[0].id);
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM hosts WHERE machine_id = 'machine-raced'"), 1);
        /* The key of whichever enrolled last is the one stored. */
        uint8_t key[MP_STORE_DIGEST_SIZE];
        CHECK(mp_store_host_key_hash(s, en[0].id, key, NULL) == 0);
        CHECK(key[0] >= 0x40 && key[0] < 0x40 + ENROLLERS);

        mp_store_close(s);
        free(paths);
        free(ev);
        free(url);
        free(path);
        free(dir);
}

/* Two hosts reporting the same new models in opposite orders through two
 * instances, at once: both batches go in whole, each fingerprint once, and
 * on PostgreSQL without a deadlock (the engine inserts fingerprints in
 * digest order, so the two transactions queue instead of each waiting for
 * what the other inserted first). */
enum { CROSS_MODELS = 60, CROSS_ROUNDS = 3 };

typedef struct crosser {
        const char *url, *host;
        pthread_barrier_t *start;
        mp_store_event ev[CROSS_MODELS];
} crosser;

static void *cross_ingest(void *arg) {
        crosser *c = arg;
        mp_store *s = NULL;
        mp_error err;
        CHECK(mp_store_open(c->url, &s, &err) == 0);
        pthread_barrier_wait(c->start);
        uint64_t acked = 0;
        size_t stored = 0;
        if (mp_store_ingest(s, c->host, c->ev, CROSS_MODELS, &acked, &stored, NULL, &err) < 0) {
                fprintf(stderr, "crossing ingest: %s\n", err.reason);
                CHECK(false);
        }
        CHECK_EQ(stored, CROSS_MODELS);
        mp_store_close(s);
        return NULL;
}

/* The deadlocks the server counted in path's database, once every session
 * there has ended (a backend reports its counters when it exits). */
static int64_t pg_deadlocks(const char *path) {
        char *sql = NULL;
        CHECK(asprintf(&sql, "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'", store_pg_database(path)) >
              0);
        for (int wait = 0; wait < 100 && store_pg_admin_int(sql) > 0; wait++)
                usleep(50 * 1000);
        free(sql);
        CHECK(asprintf(&sql, "SELECT deadlocks FROM pg_stat_database WHERE datname = '%s'", store_pg_database(path)) >
              0);
        int64_t n = store_pg_admin_int(sql);
        free(sql);
        return n;
}

static void test_crossing_fingerprints(void) {
        char *dir = test_tmpdir();
        char *path = test_path(dir, "store.db");
        char *url = store_url(path);
        mp_store *s = open_store(path);
        char id[2][MP_STORE_HOST_ID_SIZE];
        enroll(s, "cross-a", "machine-cross-a", 1, id[0]);
        enroll(s, "cross-b", "machine-cross-b", 2, id[1]);
        mp_store_close(s);

        static crosser c[2];
        for (unsigned round = 0; round < CROSS_ROUNDS; round++) {
                uint8_t *rec[CROSS_MODELS];
                size_t len[CROSS_MODELS];
                char paths[CROSS_MODELS][32];
                for (unsigned i = 0; i < CROSS_MODELS; i++) {
                        uint8_t d[MP_STORE_DIGEST_SIZE];
                        digest_of(1000 * (round + 1) + i, d);
                        rec[i] = make_record("crossing", d, llama_arch, 7, &len[i]);
                        snprintf(paths[i], sizeof(paths[i]), "/cross/%u/%u", round, i);
                }
                pthread_barrier_t start;
                CHECK(pthread_barrier_init(&start, NULL, 2) == 0);
                for (unsigned h = 0; h < 2; h++) {
                        c[h] = (crosser) { .url = url, .host = id[h], .start = &start };
                        for (unsigned k = 0; k < CROSS_MODELS; k++) {
                                unsigned i = h ? CROSS_MODELS - 1 - k : k;
                                c[h].ev[k] = added(round * CROSS_MODELS + k + 1, paths[i], 1000 * (round + 1) + i);
                                c[h].ev[k].record = rec[i];
                                c[h].ev[k].record_len = len[i];
                        }
                }
                pthread_t t[2];
                for (unsigned h = 0; h < 2; h++)
                        CHECK(pthread_create(&t[h], NULL, cross_ingest, &c[h]) == 0);
                for (unsigned h = 0; h < 2; h++)
                        CHECK(pthread_join(t[h], NULL) == 0);
                pthread_barrier_destroy(&start);
                for (unsigned i = 0; i < CROSS_MODELS; i++)
                        free(rec[i]);

                CHECK_EQ(sql_int(path, "SELECT count(*) FROM fingerprints"), (round + 1) * CROSS_MODELS);
                check_events_exactly_once(path, id[0], (round + 1) * CROSS_MODELS);
                check_events_exactly_once(path, id[1], (round + 1) * CROSS_MODELS);
        }
        if (store_is_postgres())
                CHECK_EQ(pg_deadlocks(path), 0);

        free(url);
        free(path);
        free(dir);
}

struct blocked_ingest {
        mp_store *s;
        const char *host;
        const mp_store_event *ev;
        int r;
        char why[MP_ERROR_REASON_MAX];
};

static void *blocked_ingest_run(void *arg) {
        struct blocked_ingest *b = arg;
        mp_error err;
        size_t stored = 0;
        b->r = mp_store_ingest(b->s, b->host, b->ev, 1, NULL, &stored, NULL, &err);
        if (b->r < 0)
                snprintf(b->why, sizeof(b->why), "%s", err.reason);
        else
                b->r = (int) stored;
        return NULL;
}

/* Waits until the store's session on path's database waits for a lock. */
static void wait_for_lock_wait(const char *path) {
        char *sql = NULL;
        CHECK(asprintf(&sql, "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' AND application_name ="
                             " 'modelprov-collector' AND wait_event_type = 'Lock'", store_pg_database(path)) > 0);
        int wait = 0;
        while (store_pg_admin_int(sql) == 0 && wait++ < 200)
                usleep(20 * 1000);
        CHECK(wait < 200);
        free(sql);
}

/* The PostgreSQL engine's own tests start here: a store with one enrolled
 * host, or NULL (said on stderr) under the default setup, which is SQLite. */
static mp_store *postgres_store_with_host(char **dir, char **path, char id[MP_STORE_HOST_ID_SIZE]) {
        if (!store_is_postgres()) {
                fprintf(stderr, "   (the PostgreSQL engine's: `meson test --setup postgres`)\n");
                return NULL;
        }
        *dir = test_tmpdir();
        *path = test_path(*dir, "store");
        mp_store *s = open_store(*path);
        enroll(s, "alpha", "machine-a", 1, id);
        return s;
}

/* A deadlock with the engine's transaction as its victim: another session
 * holds an uncommitted fingerprint the ingest needs, then asks for the
 * host row the ingest holds.  The server fails the ingest (40P01), the
 * engine runs it again, and it goes in once the other session is done. */
static void test_postgres_deadlock(void) {
        char *dir, *path, id[MP_STORE_HOST_ID_SIZE];
        mp_store *s = postgres_store_with_host(&dir, &path, id);
        if (!s)
                return;
        char *sql = NULL;
        CHECK(asprintf(&sql, "ALTER DATABASE %s SET deadlock_timeout = '100ms'", store_pg_database(path)) > 0);
        store_sql_exec(path, sql);
        free(sql);
        mp_store_close(s);
        s = open_store(path);           /* a session with that setting */

        uint8_t d[MP_STORE_DIGEST_SIZE];
        digest_of(77, d);
        size_t len;
        uint8_t *rec = make_record("contended", d, llama_arch, 7, &len);
        mp_store_event ev = added(1, "/contended", 77);
        ev.record = rec;
        ev.record_len = len;

        PGconn *other = store_pg_connect(store_pg_database(path));
        /* Only the ingest's session may find the deadlock: with the
         * database's 100 ms here too, a loaded machine could run this
         * session's check first and make it the victim instead. */
        PQclear(store_pg_run(other, "SET deadlock_timeout = '10min'"));
        char *dl = store_blob_sql(d, sizeof(d));
        CHECK(asprintf(&sql, "BEGIN; INSERT INTO fingerprints (digest, record, name, format, params, n_tensors,"
                             " first_seen) VALUES (%s, '\\x00', 'other', 'x', 0, 0, 0)", dl) > 0);
        PQclear(store_pg_run(other, sql));
        free(sql);

        struct blocked_ingest b = { .s = s, .host = id, .ev = &ev };
        pthread_t t;
        CHECK(pthread_create(&t, NULL, blocked_ingest_run, &b) == 0);
        wait_for_lock_wait(path);       /* holds the host row, waits for the digest */
        CHECK(asprintf(&sql, "SELECT 1 FROM hosts WHERE id = '%s' FOR UPDATE", id) > 0);
        PQclear(store_pg_run(other, sql));      /* returns once the ingest's first try is rolled back */
        free(sql);
        wait_for_lock_wait(path);       /* the second try waits for the host row */
        PQclear(store_pg_run(other, "ROLLBACK"));
        CHECK(pthread_join(t, NULL) == 0);
        if (b.r < 0)
                fprintf(stderr, "ingest: %s\n", b.why);
        CHECK_EQ(b.r, 1);
        PQfinish(other);

        /* The record is the ingest's, not the rolled-back one. */
        uint8_t *back = NULL;
        size_t back_len = 0;
        CHECK(mp_store_fingerprint(s, d, &back, &back_len, NULL) == 0);
        CHECK_EQ(back_len, len);
        CHECK(memcmp(back, rec, len) == 0);
        free(back);
        check_events_exactly_once(path, id, 1);
        mp_store_close(s);
        CHECK_EQ(pg_deadlocks(path), 1);

        free(dl);
        free(rec);
        free(path);
        free(dir);
}

/* The backend of the handle open on path's database (the only
 * modelprov-collector session there). */
static int64_t store_backend(const char *path) {
        char *sql = NULL;
        CHECK(asprintf(&sql, "SELECT pid FROM pg_stat_activity WHERE datname = '%s' AND application_name ="
                             " 'modelprov-collector'", store_pg_database(path)) > 0);
        int64_t pid = store_pg_admin_int(sql);
        free(sql);
        return pid;
}

static void terminate_backend(int64_t pid) {
        char sql[96];
        snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%lld, 10000)", (long long) pid);
        CHECK_EQ(store_pg_admin_int(sql), 1);   /* waits until it is gone */
}

static void allow_connections(const char *path, bool allow) {
        char *sql = NULL;
        CHECK(asprintf(&sql, "ALTER DATABASE %s ALLOW_CONNECTIONS %s", store_pg_database(path),
                       allow ? "true" : "false") > 0);
        PGconn *c = store_pg_connect(NULL);
        PQclear(store_pg_run(c, sql));
        PQfinish(c);
        free(sql);
}

/* A server restart, as a handle sees it: its connection killed between
 * calls.  The next call resets it once and succeeds, writes included; with
 * the database refusing connections, each call is -EIO with a sentence,
 * and the handle recovers once it accepts them again. */
static void test_postgres_reconnect(void) {
        char *dir, *path, id[MP_STORE_HOST_ID_SIZE];
        mp_store *s = postgres_store_with_host(&dir, &path, id);
        if (!s)
                return;
        mp_error err;

        /* A write first (a transaction: BEGIN meets the dead connection). */
        int64_t pid = store_backend(path);
        terminate_backend(pid);
        mp_store_event ev[2] = { added(1, "/r/1", 1), added(2, "/r/2", 2) };
        CHECK_EQ(ingest(s, id, ev, 1, 1, 0), 1);
        int64_t pid2 = store_backend(path);
        CHECK(pid2 != pid);

        /* A read, then a streamed listing, then a single-statement write. */
        terminate_backend(pid2);
        CHECK_EQ(host_last_seq(s, id), 1);
        terminate_backend(store_backend(path));
        mp_store_location *l = NULL;
        size_t n = 0;
        CHECK(mp_store_inventory(s, NULL, true, &l, &n, NULL) == 0);
        CHECK_EQ(n, 1);
        mp_store_locations_free(l, n);
        terminate_backend(store_backend(path));
        CHECK(mp_store_heartbeat(s, id, "0.2.0", 5, NULL) == 0);

        /* Down for good: -EIO, the handle stays usable. */
        allow_connections(path, false);
        terminate_backend(store_backend(path));
        CHECK_EQ(mp_store_ingest(s, id, ev + 1, 1, NULL, NULL, NULL, &err), -EIO);
        fprintf(stderr, "   %s: %s\n", err.file, err.reason);
        CHECK(strstr(err.reason, "connection"));
        CHECK_EQ(mp_store_get_host(s, id, &(mp_store_host *) { NULL }, &err), -EIO);
        allow_connections(path, true);
        CHECK_EQ(ingest(s, id, ev + 1, 1, 1, 0), 2);
        CHECK_EQ(ingest(s, id, ev, 2, 0, 2), 2);
        check_events_exactly_once(path, id, 2);

        mp_store_close(s);
        free(path);
        free(dir);
}

/* ---- catalog ------------------------------------------------------------ */

static void test_catalog_distribution(void) {
        char *dir = test_tmpdir();
        char *path = test_path(dir, "store.db");
        mp_store *s = open_store(path);
        mp_error err;
        char version[MP_STORE_CATALOG_VERSION_SIZE];

        CHECK_EQ(mp_store_get_catalog(s, NULL, NULL, version, &err), -ENOENT);

        /* A real (empty) catalog file. */
        char *cat_path = test_path(dir, "catalog.db");
        mp_catalog *cat = NULL;
        CHECK(mp_catalog_open(cat_path, true, &cat, NULL) == 0);
        mp_catalog_close(cat);
        size_t len;
        char *bytes = test_read(cat_path, &len);

        CHECK(mp_store_put_catalog(s, (const uint8_t *) bytes, len, version, &err) == 0);
        uint8_t md[32];
        unsigned mdn;
        CHECK(EVP_Digest(bytes, len, md, &mdn, EVP_sha256(), NULL) == 1);
        char hex[65];
        for (unsigned i = 0; i < 32; i++)
                snprintf(hex + 2 * i, 3, "%02x", md[i]);
        CHECK_STREQ(version, hex);

        char v2[MP_STORE_CATALOG_VERSION_SIZE];
        uint8_t *back = NULL;
        size_t back_len = 0;
        CHECK(mp_store_get_catalog(s, &back, &back_len, v2, NULL) == 0);
        CHECK_STREQ(v2, hex);
        CHECK_EQ(back_len, len);
        CHECK(memcmp(back, bytes, len) == 0);
        free(back);
        memset(v2, 0, sizeof(v2));
        CHECK(mp_store_get_catalog(s, NULL, NULL, v2, NULL) == 0);
        CHECK_STREQ(v2, hex);

        /* Refused: not SQLite, too short; the current one stays. */
        static const char junk[200] = "PK\003\004 not a catalog";
        CHECK_EQ(mp_store_put_catalog(s, (const uint8_t *) junk, sizeof(junk), v2, &err), -EBADMSG);
        CHECK_EQ(mp_store_put_catalog(s, (const uint8_t *) bytes, 50, v2, &err), -EBADMSG);
        CHECK_EQ(mp_store_put_catalog(s, (const uint8_t *) bytes, (size_t) MP_STORE_MAX_CATALOG + 1, v2, &err),
                 -EINVAL);
        CHECK(mp_store_get_catalog(s, NULL, NULL, v2, NULL) == 0);
        CHECK_STREQ(v2, hex);

        /* A new upload replaces it, across a reopen. */
        bytes[len - 1] ^= 1;
        CHECK(mp_store_put_catalog(s, (const uint8_t *) bytes, len, version, NULL) == 0);
        CHECK(strcmp(version, hex) != 0);
        mp_store_close(s);
        s = open_store(path);
        CHECK(mp_store_get_catalog(s, &back, &back_len, v2, NULL) == 0);
        CHECK_STREQ(v2, version);
        CHECK(memcmp(back, bytes, len) == 0);
        free(back);
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM catalog"), 1);

        mp_store_close(s);
        free(bytes);
        free(cat_path);
        free(path);
        free(dir);
}

/* ---- rate --------------------------------------------------------------- */

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Model reports with distinct realistic records (a zoo record under new
 * digests), batches of 50, one process.  Printed, never asserted. */
static void test_ingest_rate(void) {
        const char *zoo = test_zoo();
        if (!zoo)
                return;
        enum { N = 2000, BATCH = 50 };
        mp_fingerprint *fp = zoo_fingerprint(zoo, "llama/base-1");
        uint8_t **rec = calloc(N, sizeof(*rec));
        size_t *len = calloc(N, sizeof(*len));
        char (*paths)[32] = calloc(N, sizeof(*paths));
        mp_store_event *ev = calloc(N, sizeof(*ev));
        uint8_t digest[32], *own = fp->model_digest.data;
        fp->model_digest.data = digest;
        for (unsigned i = 0; i < N; i++) {
                digest_of(i + 1, digest);
                CHECK(mp_fingerprint_pack(fp, &rec[i], &len[i]) == 0);
                snprintf(paths[i], sizeof(paths[i]), "/models/%u", i);
                ev[i] = added(i + 1, paths[i], i + 1);
                ev[i].record = rec[i];
                ev[i].record_len = len[i];
        }
        fp->model_digest.data = own;

        char *dir = test_tmpdir();
        char *path = test_path(dir, "store.db");
        mp_store *s = open_store(path);
        char id[MP_STORE_HOST_ID_SIZE];
        enroll(s, "alpha", "machine-a", 1, id);
        double t0 = now_s();
        for (size_t i = 0; i < N; i += BATCH)
                CHECK_EQ(ingest(s, id, ev + i, BATCH, BATCH, 0), i + BATCH);
        double dt = now_s() - t0;
        fprintf(stderr, "   ingest: %d model reports (%zu-byte records, batches of %d) in %.3f s = %.0f/s\n", N,
                len[0], BATCH, dt, N / dt);
        /* More rows than one fetch or one page: in digest order, each
         * once. */
        t0 = now_s();
        CHECK_EQ(count_fingerprints(s, NULL), N);
        mp_store_structure st;
        mp_store_structure_of(fp, &st);
        uint8_t *c = NULL;
        size_t nc = 0;
        CHECK(mp_store_candidates(s, &st, NULL, 0, NULL, &c, &nc, NULL) == 0);
        CHECK_EQ(nc, N);
        for (size_t i = 1; i < nc; i++)
                CHECK(memcmp(c + 32 * (i - 1), c + 32 * i, 32) < 0);
        free(c);
        fprintf(stderr, "   all %d fingerprints read and their candidates selected in %.3f s\n", N, now_s() - t0);
        mp_store_close(s);
        CHECK_EQ(sql_int(path, "SELECT count(*) FROM fingerprints"), N);

        for (unsigned i = 0; i < N; i++)
                free(rec[i]);
        free(rec);
        free(len);
        free(paths);
        free(ev);
        mp_fingerprint_free(fp);
        free(path);
        free(dir);
}

int main(void) {
        RUN(test_open_reopen);
        RUN(test_refusals);
        RUN(test_enroll);
        RUN(test_ingest_replays);
        RUN(test_crash_safety);
        RUN(test_inventory_history);
        RUN(test_fetch_many);
        RUN(test_fingerprints_zoo);
        RUN(test_upgrade_v1);
        RUN(test_upgrade_v2);
        RUN(test_scoring_parts);
        RUN(test_candidates);
        RUN(test_hostile);
        RUN(test_two_writers);
        RUN(test_concurrent_open);
        RUN(test_concurrent_ingest);
        RUN(test_crossing_fingerprints);
        RUN(test_postgres_deadlock);
        RUN(test_postgres_reconnect);
        RUN(test_catalog_distribution);
        RUN(test_ingest_rate);
        return 0;
}
