/* store_postgres.c - the PostgreSQL engine of the collector's store
 * ("postgresql://..." or "postgres://...": a libpq connection URI; see
 * store.h and store_engine.h).
 *
 * For fleets: several collector instances behind a load balancer share one
 * database, and an agent may fail over from one instance to another in the
 * middle of its stream.  Exactly-once ingest is therefore enforced by the
 * database, never by one process's memory:
 *   - an ingest transaction starts with SELECT ... FOR UPDATE on the host's
 *     row, so two instances holding the same host's batches take turns and
 *     each reads the last_seq the other committed;
 *   - events have PRIMARY KEY (host_id, seq) and go in with ON CONFLICT DO
 *     NOTHING, counting what was inserted: a second copy cannot be stored,
 *     whatever any process believes;
 *   - enrollment is one upsert on the unique machine_id (two instances
 *     enrolling one machine agree on its host id), fingerprints and tensor
 *     keys are inserted with ON CONFLICT DO NOTHING, inventory rows upserted;
 *   - a batch's fingerprints go in first, in digest order, so that hosts
 *     reporting the same new models in different orders queue on them
 *     instead of deadlocking.
 * Every transaction runs at READ COMMITTED, set for the session: a server
 * default of REPEATABLE READ would make the reads under those locks stale.
 *
 * Schema: the SQLite engine's tables, columns and indexes (BYTEA for
 * digests and records, BIGINT for integers and times, TEXT COLLATE "C" so
 * that ORDER BY and the indexes compare bytes as SQLite does, whatever the
 * database's collation).  PostgreSQL has no application_id or user_version:
 * the table modelprov_meta holds our marker and the schema version.  Each
 * migration step runs in its own transaction under an advisory lock and
 * re-reads the version inside it, so instances starting together take turns
 * and none applies a step twice.
 *
 * Connections: one per mp_store handle.  The collector holds one handle per
 * worker thread (and blast radius its helpers): that is the connection
 * pool, without a lock, since no handle is ever shared between threads.
 * Every fixed statement is prepared once per connection, after connecting
 * and after a reset.  A call that finds its connection broken (a restarted
 * or failed-over server, a terminated backend) resets it once, prepares
 * again and runs again when nothing had been committed or handed to a
 * callback; a server still down is -EIO with a sentence, which the service
 * answers with UNAVAILABLE (agents retry).  Deadlocks and serialization
 * failures that remain possible (with other sessions on the database) are
 * retried a few times, then -EBUSY.  The lock timeout is the SQLite
 * engine's busy timeout.
 *
 * Results are read in text format, BYTEA as hex checked digit by digit (a
 * damaged row is -EBADMSG, never a crash), except the reads of records:
 * fingerprint records (one, or a batch with their digests) and the catalog
 * come in binary format.
 * Blast radius fetches thousands of records a query, and as hex they cost
 * the server an encoding, the wire twice the bytes and the client a
 * decoding: 2.5 times the time per scored fingerprint in bench_blast_radius
 * (10,000 fingerprints); the catalog's up to 512 MiB would even exceed
 * PostgreSQL's 1 GiB limit on a value's text.
 * Queries that may cover the whole fleet stream: the candidates and the
 * listings in single-row mode; foreach_fingerprint and re-indexing through
 * a cursor fetched in batches, since their callbacks may run queries on the
 * same connection in between (their SQL is built per filter, so those two
 * are parsed per call instead of prepared).
 *
 * Never in a message: the password.  Errors name the store as
 * postgresql://USER@HOST:PORT/DBNAME, and libpq's own messages, which may
 * echo an unparsable URL, are scrubbed of it. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collector/store_engine.h"
#include "util/macro.h"
#include "util/strutil.h"

#define STORE_MARKER "modelprov-collector"
/* pg_advisory_xact_lock() key of schema migrations: "modelpro". */
#define MIGRATION_LOCK_KEY INT64_C(0x6d6f64656c70726f)
#define CONNECT_TIMEOUT_S "10"
/* As STORE_BUSY_TIMEOUT_MS of the SQLite engine. */
#define LOCK_TIMEOUT "10s"
#define TX_ATTEMPTS 5
#define FETCH_ROWS 1000
#define MAX_PARAMS 16
#define MAX_SECRETS 4

/* ---- schema ------------------------------------------------------------- */

#define CTEXT "TEXT COLLATE \"C\""

/* A scoring record's parts (migration 4): SCORING_PART bytes each but the
 * last.  A part's row must fit a page (PostgreSQL keeps a value up to about
 * 8,160 bytes inline under STORAGE MAIN), with room for the digest, the
 * part numbers and the headers.  The SQL splits: one statement stores a
 * record whatever its size. */
#define SCORING_PART_BYTES 7800
#define SCORING_PART MP_STRINGIFY(SCORING_PART_BYTES)
static_assert(MP_STORE_MAX_RECORD / SCORING_PART_BYTES + 1 <= INT16_MAX, "parts are counted in a SMALLINT");
#define SCORING_PARTS_OF(record) "((length(" record ") + " SCORING_PART " - 1) / " SCORING_PART ")"
#define SCORING_PART_SERIES(record) "generate_series(0, " SCORING_PARTS_OF(record) " - 1)"
#define SCORING_PART_OF(record, p) "substring(" record " FROM " p " * " SCORING_PART " + 1 FOR " SCORING_PART ")"

/* migrations[i] takes a store from schema version i to i + 1, the same
 * steps as the SQLite engine's (but 4, which SQLite takes as a no-op).
 * Append only: a released step is never edited. */
static const char *const migrations[] = {
        /* 1: the marker; hosts, their event streams, inventory,
         * fingerprints, catalog. */
        "CREATE TABLE modelprov_meta ("
        "  key " CTEXT " PRIMARY KEY,"
        "  value " CTEXT " NOT NULL);"
        "INSERT INTO modelprov_meta (key, value) VALUES ('application', '" STORE_MARKER "');"
        "CREATE TABLE hosts ("
        "  id " CTEXT " PRIMARY KEY,"
        "  machine_id " CTEXT " UNIQUE NOT NULL,"
        "  hostname " CTEXT " NOT NULL,"
        "  agent_version " CTEXT " NOT NULL,"
        "  os " CTEXT " NOT NULL,"
        "  key_hash BYTEA NOT NULL CHECK (length(key_hash) = 32),"
        "  enrolled_at BIGINT NOT NULL,"
        "  last_seen BIGINT NOT NULL,"
        "  last_seq BIGINT NOT NULL CHECK (last_seq >= 0));"
        "CREATE TABLE fingerprints ("
        "  digest BYTEA PRIMARY KEY CHECK (length(digest) = 32),"
        "  record BYTEA NOT NULL,"
        "  name " CTEXT " NOT NULL,"
        "  format " CTEXT " NOT NULL,"
        "  arch_hash " CTEXT ","
        "  family_hash " CTEXT ","
        "  params BIGINT NOT NULL,"
        "  n_tensors BIGINT NOT NULL,"
        "  first_seen BIGINT NOT NULL);"
        "CREATE INDEX fingerprints_arch ON fingerprints(arch_hash, params);"
        "CREATE INDEX fingerprints_family ON fingerprints(family_hash, params);"
        "CREATE TABLE events ("
        "  host_id " CTEXT " NOT NULL REFERENCES hosts(id),"
        "  seq BIGINT NOT NULL CHECK (seq > 0),"
        "  kind " CTEXT " NOT NULL CHECK (kind IN ('model-added', 'model-changed', 'model-removed', 'finding',"
        "                                         'scan-match')),"
        "  observed_at BIGINT NOT NULL,"
        "  path " CTEXT " NOT NULL,"
        "  model_digest BYTEA CHECK (model_digest IS NULL OR length(model_digest) = 32),"
        "  finding_kind " CTEXT ","
        "  finding_detail " CTEXT ","
        "  match_entry " CTEXT ","
        "  match_verdict " CTEXT ","
        "  match_relation " CTEXT ","
        "  match_score DOUBLE PRECISION,"
        "  PRIMARY KEY (host_id, seq));"
        "CREATE INDEX events_path ON events(path);"
        "CREATE TABLE inventory ("
        "  host_id " CTEXT " NOT NULL REFERENCES hosts(id),"
        "  path " CTEXT " NOT NULL,"
        "  model_digest BYTEA NOT NULL CHECK (length(model_digest) = 32),"
        "  first_seen BIGINT NOT NULL,"
        "  last_seen BIGINT NOT NULL,"
        "  present SMALLINT NOT NULL CHECK (present IN (0, 1)),"
        "  PRIMARY KEY (host_id, path, model_digest));"
        "CREATE INDEX inventory_digest ON inventory(model_digest);"
        "CREATE TABLE catalog ("
        "  id INTEGER PRIMARY KEY CHECK (id = 1),"
        "  version " CTEXT " NOT NULL,"
        "  uploaded_at BIGINT NOT NULL,"
        "  data BYTEA NOT NULL);",

        /* 2: the blast-radius pre-filter (store.h "structure").  Columns are
         * added in place (SQLite rebuilt its table to move the record last;
         * PostgreSQL keeps large values out of line anyway).  Rows of
         * version 1 get indexed = 0 and unknown structure until store.c has
         * extracted their columns, as on SQLite. */
        "ALTER TABLE fingerprints"
        "  ADD COLUMN hidden_size BIGINT NOT NULL DEFAULT 0 CHECK (hidden_size >= 0),"
        "  ADD COLUMN num_layers BIGINT NOT NULL DEFAULT 0,"
        "  ADD COLUMN vocab_size BIGINT NOT NULL DEFAULT 0,"
        "  ADD COLUMN has_weights SMALLINT NOT NULL DEFAULT 1 CHECK (has_weights IN (0, 1)),"
        "  ADD COLUMN indexed SMALLINT NOT NULL DEFAULT 0 CHECK (indexed IN (0, 1));"
        /* Covering: the candidate query reads the index only. */
        "CREATE INDEX fingerprints_hidden ON fingerprints(hidden_size, has_weights, digest);"
        "CREATE INDEX fingerprints_unindexed ON fingerprints(digest) WHERE indexed = 0;"
        /* key: the leading 64 bits of a tensor's XXH3-128 as a signed
         * integer; no foreign key, as on SQLite. */
        "CREATE TABLE tensor_keys ("
        "  key BIGINT NOT NULL,"
        "  digest BYTEA NOT NULL CHECK (length(digest) = 32),"
        "  PRIMARY KEY (key, digest));",

        /* 3: as on SQLite, the inventory rows of many models by digest from
         * the index alone (an index-only scan where the visibility map
         * allows, in the order the query returns them); replaces
         * inventory_digest. */
        "CREATE INDEX inventory_digest_rows ON inventory (model_digest, host_id, path, first_seen)"
        "  INCLUDE (last_seen, present);"
        "DROP INDEX inventory_digest;"
        /* Scoring records (store.h), as on SQLite.  Out of line without
         * compression: weight samples do not compress, and each record is
         * read whole. */
        "CREATE TABLE scoring_records ("
        "  digest BYTEA PRIMARY KEY CHECK (length(digest) = 32),"
        "  record BYTEA NOT NULL);"
        "ALTER TABLE scoring_records ALTER COLUMN record SET STORAGE EXTERNAL;"
        "UPDATE fingerprints SET indexed = 0;"
        /* A finding's file inside the model (the agent reports it). */
        "ALTER TABLE events ADD COLUMN finding_file " CTEXT ";",

        /* 4 (nothing on SQLite, whose records stay whole): scoring records in
         * parts of at most SCORING_PART bytes, each stored inline in the
         * table's own pages.  A whole record (13 kB in the fleet bench) went
         * out of line, and reading it back took seven probes of the TOAST
         * table's index: over 2.5 times the server's time per record of
         * reading its parts (2,560 records of bench_blast_radius's store,
         * warm).  parts repeats the record's number of parts in each, so a
         * reader can tell a whole record from a damaged one. */
        "CREATE TABLE scoring_parts ("
        "  digest BYTEA NOT NULL CHECK (length(digest) = 32),"
        "  part SMALLINT NOT NULL CHECK (part >= 0),"
        "  parts SMALLINT NOT NULL CHECK (part < parts),"
        "  record BYTEA NOT NULL,"
        "  PRIMARY KEY (digest, part));"
        /* PLAIN: a tuple over 2 kB has its EXTENDED values moved out of line
         * first, however small, and the digest would be read back from
         * there. */
        "ALTER TABLE scoring_parts ALTER COLUMN digest SET STORAGE PLAIN,"
        "  ALTER COLUMN record SET STORAGE MAIN;"
        "INSERT INTO scoring_parts (digest, part, parts, record)"
        "  SELECT r.digest, p, " SCORING_PARTS_OF("r.record") ", " SCORING_PART_OF("r.record", "p")
        "  FROM scoring_records r, " SCORING_PART_SERIES("r.record") " AS p;"
        "DROP TABLE scoring_records;"
        /* Statistics now: until autovacuum gathers some, the planner would
         * read the table whole for a few digests. */
        "ANALYZE scoring_parts;",
};

#define STORE_SCHEMA_VERSION ((int) ELEMENTSOF(migrations))

/* ---- prepared statements ------------------------------------------------ */

typedef enum stmt_id {
        ST_HOST_ENROLL,
        ST_HOST_KEY,
        ST_HOST_HEARTBEAT,
        ST_HOST_LOCK,
        ST_HOST_ADVANCE,
        ST_EVENT_INSERT,
        ST_FP_INSERT,
        ST_FP_SET_INDEX,
        ST_INV_PUT,
        ST_INV_CLOSE_PATH,
        ST_HOSTS,
        ST_HOST,
        ST_INVENTORY,
        ST_INVENTORY_HOST,
        ST_LOCATIONS,
        ST_HISTORY,                     /* + 1: of one host, + 2: of one path */
        ST_HISTORY_HOST,
        ST_HISTORY_PATH,
        ST_HISTORY_HOST_PATH,
        ST_FINGERPRINT,
        ST_FINGERPRINTS,
        ST_SCORING_RECORDS,
        ST_LOCATIONS_OF,
        ST_FIND_HOSTS,
        ST_INVENTORY_AT,
        ST_CANDIDATES,
        ST_CATALOG_PUT,
        ST_CATALOG_GET,
        ST_CATALOG_VERSION,
        _ST_MAX,
} stmt_id;

/* Keys of a new fingerprint only with its row: a digest seen before has
 * them already. */
#define INSERT_KEYS_OF(cte, keys)                                                       \
        " INSERT INTO tensor_keys (key, digest) SELECT k, " cte ".digest FROM " cte ","   \
        " unnest(" keys "::bigint[]) AS k ON CONFLICT DO NOTHING"

/* The scoring record of a new (or re-indexed) fingerprint, when there is
 * one (NULL: a record that no longer unpacks). */
#define INSERT_SCORING_OF(cte, record)                                                  \
        " s AS (INSERT INTO scoring_parts (digest, part, parts, record) SELECT " cte ".digest, p, "   \
        SCORING_PARTS_OF(record "::bytea") ", " SCORING_PART_OF(record "::bytea", "p")                 \
        " FROM " cte ", " SCORING_PART_SERIES(record "::bytea") " AS p"                                \
        " WHERE " record "::bytea IS NOT NULL ON CONFLICT DO NOTHING)"

#define HOST_COLUMNS                                                                    \
        "SELECT h.id, h.hostname, h.machine_id, h.agent_version, h.os, h.enrolled_at, h.last_seen, h.last_seq," \
        " (SELECT count(*) FROM inventory i WHERE i.host_id = h.id AND i.present = 1) FROM hosts h"

#define LOCATION_COLUMNS                                                                \
        "SELECT i.host_id, h.hostname, i.path, i.model_digest, i.first_seen, i.last_seen, i.present," \
        " coalesce(f.name, '') FROM inventory i JOIN hosts h ON h.id = i.host_id"        \
        " LEFT JOIN fingerprints f ON f.digest = i.model_digest"

#define HISTORY_COLUMNS                                                                 \
        "SELECT host_id, seq, kind, observed_at, path, model_digest, finding_kind, finding_detail, match_entry," \
        " match_verdict, match_relation, match_score, finding_file FROM events"

static const char *const stmt_sql[_ST_MAX] = {
        [ST_HOST_ENROLL] = "INSERT INTO hosts (id, machine_id, hostname, agent_version, os, key_hash, enrolled_at,"
                           " last_seen, last_seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 0)"
                           " ON CONFLICT (machine_id) DO UPDATE SET hostname = excluded.hostname,"
                           " agent_version = excluded.agent_version, os = excluded.os, key_hash = excluded.key_hash,"
                           " last_seen = greatest(hosts.last_seen, excluded.last_seen) RETURNING id",
        [ST_HOST_KEY] = "SELECT key_hash FROM hosts WHERE id = $1",
        [ST_HOST_HEARTBEAT] = "UPDATE hosts SET agent_version = $2, last_seen = greatest(last_seen, $3) WHERE id = $1",
        [ST_HOST_LOCK] = "SELECT last_seq FROM hosts WHERE id = $1 FOR UPDATE",
        [ST_HOST_ADVANCE] = "UPDATE hosts SET last_seq = $2, last_seen = greatest(last_seen, $3) WHERE id = $1",
        [ST_EVENT_INSERT] = "INSERT INTO events (host_id, seq, kind, observed_at, path, model_digest, finding_kind,"
                            " finding_detail, match_entry, match_verdict, match_relation, match_score, finding_file)"
                            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
                            " ON CONFLICT (host_id, seq) DO NOTHING",
        [ST_FP_INSERT] = "WITH f AS (INSERT INTO fingerprints (digest, record, name, format, arch_hash, family_hash,"
                         " params, n_tensors, first_seen, hidden_size, num_layers, vocab_size, has_weights, indexed)"
                         " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1)"
                         " ON CONFLICT (digest) DO NOTHING RETURNING digest)," INSERT_SCORING_OF("f", "$15")
                         INSERT_KEYS_OF("f", "$14"),
        [ST_FP_SET_INDEX] = "WITH f AS (UPDATE fingerprints SET hidden_size = $2, num_layers = $3, vocab_size = $4,"
                            " has_weights = $5, indexed = 1 WHERE digest = $1 RETURNING digest),"
                            INSERT_SCORING_OF("f", "$7") INSERT_KEYS_OF("f", "$6"),
        /* Closes the path's other models and opens this one, in one
         * statement: the two touch disjoint rows. */
        [ST_INV_PUT] = "WITH closed AS (UPDATE inventory SET present = 0, last_seen = greatest(last_seen, $4)"
                       " WHERE host_id = $1 AND path = $2 AND model_digest <> $3 AND present = 1)"
                       " INSERT INTO inventory (host_id, path, model_digest, first_seen, last_seen, present)"
                       " VALUES ($1, $2, $3, $4, $4, 1) ON CONFLICT (host_id, path, model_digest)"
                       " DO UPDATE SET present = 1, last_seen = greatest(inventory.last_seen, excluded.last_seen)",
        [ST_INV_CLOSE_PATH] = "UPDATE inventory SET present = 0, last_seen = greatest(last_seen, $3)"
                              " WHERE host_id = $1 AND path = $2 AND present = 1",
        [ST_HOSTS] = HOST_COLUMNS " ORDER BY h.hostname, h.id",
        [ST_HOST] = HOST_COLUMNS " WHERE h.id = $1",
        /* present >= 1: only present rows; present >= 0: all. */
        [ST_INVENTORY] = LOCATION_COLUMNS " WHERE i.present >= $1"
                         " ORDER BY i.host_id, i.path, i.first_seen, i.model_digest",
        [ST_INVENTORY_HOST] = LOCATION_COLUMNS " WHERE i.host_id = $1 AND i.present >= $2"
                              " ORDER BY i.path, i.first_seen, i.model_digest",
        [ST_LOCATIONS] = LOCATION_COLUMNS " WHERE i.model_digest = $1"
                         " ORDER BY i.host_id, i.path, i.first_seen",
        /* One statement per filter so that each uses its index. */
        [ST_HISTORY] = HISTORY_COLUMNS " ORDER BY host_id, seq",
        [ST_HISTORY_HOST] = HISTORY_COLUMNS " WHERE host_id = $1 ORDER BY host_id, seq",
        [ST_HISTORY_PATH] = HISTORY_COLUMNS " WHERE path = $1 ORDER BY host_id, seq",
        [ST_HISTORY_HOST_PATH] = HISTORY_COLUMNS " WHERE host_id = $1 AND path = $2 ORDER BY host_id, seq",
        [ST_FINGERPRINT] = "SELECT record FROM fingerprints WHERE digest = $1",
        /* Many digests per statement (store.h "fetch many"), each a probe
         * of the primary key. */
        [ST_FINGERPRINTS] = "SELECT digest, record FROM fingerprints WHERE digest = ANY ($1::bytea[])",
        /* Where a fingerprint has no scoring record (yet: the upgrade
         * builds them), pg_fingerprints() reads its full record after.
         * Joining fingerprints here instead (coalesce() of the two) cost
         * the server a fifth more per record.  The parts come in no
         * particular order: the client sorts them, as ORDER BY would make the
         * server sort megabytes (beyond work_mem, on disk). */
        [ST_SCORING_RECORDS] = "SELECT digest, part, parts, record FROM scoring_parts"
                               " WHERE digest = ANY ($1::bytea[])",
        /* Driven by the digests (store.c makes them distinct): one key
         * probe of fingerprints for the name and one index-only range of
         * inventory_digest_rows per digest.  Joining fingerprints to the
         * inventory rows instead let the planner hash the whole table
         * (100,000 rows) for a few hundred names.  Each host is looked up
         * once (h), not once per row: 2,560 rows of a batch name about 900
         * hosts in bench_blast_radius, and probing hosts per row cost its
         * worst case a tenth of its time.  Unordered:
         * pg_locations_of() sorts the rows; sorting them took the server
         * half of the statement. */
        [ST_LOCATIONS_OF] = "WITH r AS MATERIALIZED (SELECT i.host_id, i.path, i.model_digest, i.first_seen,"
                            "  i.last_seen, i.present, coalesce(f.name, '') AS name FROM unnest($1::bytea[]) AS d(digest)"
                            "  LEFT JOIN fingerprints f ON f.digest = d.digest"
                            "  JOIN inventory i ON i.model_digest = d.digest),"
                            " h AS MATERIALIZED (SELECT h.id, h.hostname FROM (SELECT DISTINCT host_id FROM r) AS u"
                            "  JOIN hosts h ON h.id = u.host_id)"
                            " SELECT r.host_id, h.hostname, r.path, r.model_digest, r.first_seen, r.last_seen,"
                            " r.present, r.name FROM r JOIN h ON h.id = r.host_id",
        [ST_FIND_HOSTS] = "SELECT id FROM hosts WHERE id = $1 OR hostname = $1 ORDER BY id",
        /* The inventory key's prefix (host_id, path). */
        [ST_INVENTORY_AT] = LOCATION_COLUMNS " WHERE i.host_id = $1 AND i.path = $2"
                            " ORDER BY i.first_seen, i.model_digest",
        /* Sorted and distinct by the server (bytea compares as memcmp). */
        [ST_CANDIDATES] = "SELECT digest FROM fingerprints WHERE hidden_size = ANY ($1::bigint[]) AND has_weights = 1"
                          " UNION SELECT digest FROM tensor_keys WHERE key = ANY ($2::bigint[]) ORDER BY 1",
        [ST_CATALOG_PUT] = "INSERT INTO catalog (id, version, uploaded_at, data) VALUES (1, $1, $2, $3)"
                           " ON CONFLICT (id) DO UPDATE SET version = excluded.version,"
                           " uploaded_at = excluded.uploaded_at, data = excluded.data",
        [ST_CATALOG_GET] = "SELECT version, data FROM catalog WHERE id = 1",
        [ST_CATALOG_VERSION] = "SELECT version FROM catalog WHERE id = 1",
};

/* How the last statement failed, which decides whether a call runs again. */
typedef enum failure {
        FAIL_NONE,
        FAIL_LOST,                      /* the connection broke */
        FAIL_CONFLICT,                  /* deadlock or serialization failure: rolled back */
        FAIL_OTHER,
} failure;

typedef struct pg_store {
        struct mp_store base;
        PGconn *conn;
        char *uri;                      /* with the password: for connecting only */
        char *where;                    /* how messages name the store: without it */
        char *secrets[MAX_SECRETS];     /* what messages must never show */
        bool too_many_secrets;          /* then libpq's messages are not shown at all */
        int version;                    /* 0 until the schema is known: nothing prepared */
        unsigned depth;                 /* > 0: inside a transaction of run_op() */
        unsigned cursors;               /* names cursors uniquely */
        unsigned seed;                  /* retry jitter */
        failure failure;
        bool reset_needed;
        bool committing;                /* COMMIT sent: its outcome may be unknown */
        bool delivered;                 /* rows reached a caller's callback */
} pg_store;

static pg_store *impl(mp_store *s) {
        assert(s && s->engine == &mp_store_postgres_engine);
        return (pg_store *) s;
}

static void pqclearp(PGresult **r) {
        PQclear(*r);
}

/* ---- messages without secrets ------------------------------------------- */

static void add_secret(pg_store *st, const char *s, size_t len) {
        if (len == 0)
                return;
        for (size_t i = 0; i < MAX_SECRETS; i++)
                if (!st->secrets[i]) {
                        st->secrets[i] = strndup(s, len);
                        if (!st->secrets[i])
                                st->too_many_secrets = true;    /* cannot scrub it: show nothing */
                        return;
                }
        st->too_many_secrets = true;
}

/* The password as written in the URL (userinfo, password= parameters) and
 * as libpq decodes it (percent-encoding), whichever a message may echo. */
static void find_secrets(pg_store *st) {
        mp_store_span spans[MAX_SECRETS];
        size_t n = mp_store_url_secrets(st->uri, spans, ELEMENTSOF(spans));
        for (size_t i = 0; i < n && i < ELEMENTSOF(spans); i++)
                add_secret(st, st->uri + spans[i].offset, spans[i].length);
        if (n > ELEMENTSOF(spans))
                st->too_many_secrets = true;

        char *msg = NULL;
        PQconninfoOption *opts = PQconninfoParse(st->uri, &msg);
        for (PQconninfoOption *o = opts; o && o->keyword; o++)
                if (strcmp(o->keyword, "password") == 0 && o->val)
                        add_secret(st, o->val, strlen(o->val));
        PQconninfoFree(opts);
        PQfreemem(msg);
}

/* msg (from libpq or the server) on one line without any secret: each
 * becomes "***", runs of spaces, line breaks and tabs one space. */
static const char *scrub(const pg_store *st, const char *msg, char *buf, size_t size) {
        assert(size > 4);
        if (!msg || !msg[0])
                msg = "no details";
        if (st->too_many_secrets)
                msg = "details withheld (the URL holds too many passwords to hide them reliably)";
        size_t o = 0;
        while (*msg && o + 1 < size) {
                size_t skip = 0;
                for (size_t i = 0; i < MAX_SECRETS && !skip; i++)
                        if (st->secrets[i] && strncmp(msg, st->secrets[i], strlen(st->secrets[i])) == 0)
                                skip = strlen(st->secrets[i]);
                if (skip) {
                        size_t n = size - 1 - o < 3 ? size - 1 - o : 3;
                        memcpy(buf + o, "***", n);
                        o += n;
                        msg += skip;
                        continue;
                }
                char c = *msg++;
                if (c == '\n' || c == '\t')
                        c = ' ';
                if (c != ' ' || (o > 0 && buf[o - 1] != ' '))
                        buf[o++] = c;
        }
        while (o > 0 && buf[o - 1] == ' ')
                o--;
        buf[o] = 0;
        return buf;
}

/* postgresql://USER@HOST:PORT/DBNAME of the connection (also one that
 * failed, naming the host it tried), or NULL when libpq has none. */
static char *describe(PGconn *c) {
        const char *user = PQuser(c), *host = PQhost(c), *port = PQport(c), *db = PQdb(c);
        if (!host || !host[0] || !db || !db[0])
                return NULL;
        bool v6 = strchr(host, ':');
        char *s = NULL;
        if (asprintf(&s, "postgresql://%s%s%s%s%s:%s/%s", user ? user : "", user && user[0] ? "@" : "",
                     v6 ? "[" : "", host, v6 ? "]" : "", port && port[0] ? port : "5432", db) < 0)
                return NULL;
        return s;
}

/* ---- errors ------------------------------------------------------------- */

/* The errno closest to SQLSTATE state (which may be ""), as the SQLite
 * engine's codes: damaged -> EBADMSG, busy -> EBUSY, full -> ENOSPC, ... */
static int state_errno(const char *state) {
        static const struct {
                const char *prefix;
                int code;
        } map[] = {
                { "53100", -ENOSPC },   /* disk full */
                { "53200", -ENOMEM },
                { "55P03", -EBUSY },    /* lock timeout */
                { "57014", -EBUSY },    /* statement timeout */
                { "25006", -EROFS },    /* a read-only transaction: a standby */
                { "42501", -EACCES },
                { "28", -EACCES },      /* invalid authorization */
                { "23", -EEXIST },      /* constraint violated */
                { "22", -EINVAL },      /* data exception */
                { "42", -EBADMSG },     /* unknown table or column: not our schema */
                { "XX001", -EBADMSG },  /* data corrupted */
                { "XX002", -EBADMSG },  /* index corrupted */
        };
        for (size_t i = 0; i < ELEMENTSOF(map); i++)
                if (mp_has_prefix(state, map[i].prefix))
                        return map[i].code;
        return -EIO;
}

/* Fills err for a failed statement (res may be NULL: libpq's message then)
 * while doing `what`, classifies the failure for run_op(), returns the
 * errno. */
static int sql_error(pg_store *st, const PGresult *res, const char *what, mp_error *err) {
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        if (!msg || !msg[0])
                msg = PQerrorMessage(st->conn);
        if (!state)
                state = "";
        char buf[MP_ERROR_REASON_MAX];
        scrub(st, msg, buf, sizeof(buf));

        /* 08: connection exception; 57P01-57P03: the server shut down or
         * restarted under this session. */
        if (PQstatus(st->conn) != CONNECTION_OK || mp_has_prefix(state, "08") || mp_has_prefix(state, "57P0")) {
                st->failure = FAIL_LOST;
                st->reset_needed = true;
                return mp_error_set(err, -EIO, st->where, -1, "%s: lost the connection to the store (%s)", what, buf);
        }
        if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0) {
                st->failure = FAIL_CONFLICT;
                return mp_error_set(err, -EBUSY, st->where, -1,
                                    "%s: concurrent writers kept conflicting in the store (%s)", what, buf);
        }
        st->failure = FAIL_OTHER;
        return mp_error_set(err, state_errno(state), st->where, -1, "%s: %s", what, buf);
}

static int check(pg_store *st, const PGresult *res, const char *what, mp_error *err) {
        ExecStatusType s = PQresultStatus(res);     /* of NULL: PGRES_FATAL_ERROR */
        return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK ? 0 : sql_error(st, res, what, err);
}

/* A row that cannot be read (-EBADMSG: damaged) or kept (-ENOMEM). */
static int read_error(pg_store *st, int r, const char *what, mp_error *err) {
        st->failure = FAIL_OTHER;
        if (r == -ENOMEM)
                return mp_error_set(err, r, st->where, -1, "out of memory");
        return mp_error_set(err, -EBADMSG, st->where, -1, "%s: the store holds a damaged row", what);
}

/* ---- parameters --------------------------------------------------------- */

/* Statement parameters: text, except BYTEA in binary (no escaping, half
 * the bytes).  The add functions return the parameter's number ($N). */
typedef struct pg_params {
        int n;
        const char *values[MAX_PARAMS];
        int lengths[MAX_PARAMS];
        int formats[MAX_PARAMS];
        char numbers[MAX_PARAMS][32];
        char *owned[2];                 /* array literals */
} pg_params;

static void params_freep(pg_params *p) {
        for (size_t i = 0; i < ELEMENTSOF(p->owned); i++)
                free(p->owned[i]);
}

static int param_text(pg_params *p, const char *t) {
        assert(p->n < MAX_PARAMS);
        p->values[p->n] = t;            /* NULL: SQL NULL */
        return ++p->n;
}

/* NULL for NULL and "", as the SQLite engine binds optional text. */
static int param_opt(pg_params *p, const char *t) {
        return param_text(p, t && t[0] ? t : NULL);
}

static int param_int(pg_params *p, int64_t v) {
        assert(p->n < MAX_PARAMS);
        snprintf(p->numbers[p->n], sizeof(p->numbers[p->n]), "%" PRId64, v);
        return param_text(p, p->numbers[p->n]);
}

/* Shortest text that reads back as the same double. */
static int param_double(pg_params *p, double v) {
        assert(p->n < MAX_PARAMS);
        snprintf(p->numbers[p->n], sizeof(p->numbers[p->n]), "%.17g", v);
        return param_text(p, p->numbers[p->n]);
}

static int param_bytes(pg_params *p, const void *b, size_t len) {
        assert(p->n < MAX_PARAMS && len <= INT_MAX);
        p->values[p->n] = b;
        p->lengths[p->n] = (int) len;
        p->formats[p->n] = 1;
        return ++p->n;
}

/* A bigint[] literal of n values (tensor keys as signed integers, as
 * stored); -ENOMEM. */
static int param_int_array(pg_params *p, const uint64_t *v, size_t n) {
        size_t slot = 0;
        while (slot < ELEMENTSOF(p->owned) && p->owned[slot])
                slot++;
        assert(slot < ELEMENTSOF(p->owned));
        char *s = malloc(n * 21 + 3), *o = s;
        if (!s)
                return -ENOMEM;
        *o++ = '{';
        for (size_t i = 0; i < n; i++)
                o += sprintf(o, "%s%" PRId64, i ? "," : "", (int64_t) v[i]);
        strcpy(o, "}");
        p->owned[slot] = s;
        return param_text(p, s);
}

/* A bytea[] literal of n digests: {"\\x<hex>",...} (the array syntax
 * unescapes the doubled backslash); -ENOMEM. */
static int param_digest_array(pg_params *p, const uint8_t *digests, size_t n) {
        size_t slot = 0;
        while (slot < ELEMENTSOF(p->owned) && p->owned[slot])
                slot++;
        assert(slot < ELEMENTSOF(p->owned));
        const size_t each = 2 * MP_STORE_DIGEST_SIZE + 6;       /* ,"\\x...hex..." */
        char *s = malloc(n * each + 3), *o = s;
        if (!s)
                return -ENOMEM;
        *o++ = '{';
        for (size_t i = 0; i < n; i++) {
                o = stpcpy(o, i ? ",\"\\\\x" : "\"\\\\x");
                mp_hex(digests + i * MP_STORE_DIGEST_SIZE, MP_STORE_DIGEST_SIZE, o);
                o += 2 * MP_STORE_DIGEST_SIZE;
                *o++ = '"';
        }
        strcpy(o, "}");
        p->owned[slot] = s;
        return param_text(p, s);
}

/* ---- reading values ----------------------------------------------------- */

/* Hex digit values, -1 for anything else: a table, since records are
 * decoded by the megabyte. */
static const int8_t hex_value[256] = {
        ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8, ['8'] = 9,
        ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
        ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};      /* value + 1: zero-filled entries mean "not a digit" */

/* The size of the BYTEA of column col in text format ("\x" and hex digits,
 * bytea_output = hex is set per session); -EBADMSG when it is not one. */
static int bytea_size(const PGresult *res, int row, int col, size_t *ret) {
        const char *v = PQgetvalue(res, row, col);
        size_t len = (size_t) PQgetlength(res, row, col);
        if (PQgetisnull(res, row, col) || len < 2 || v[0] != '\\' || v[1] != 'x' || len % 2)
                return -EBADMSG;
        *ret = (len - 2) / 2;
        return 0;
}

/* Decodes that BYTEA into out (bytea_size() bytes). */
static int bytea_decode(const PGresult *res, int row, int col, uint8_t *out) {
        const char *v = PQgetvalue(res, row, col) + 2;
        size_t n = ((size_t) PQgetlength(res, row, col) - 2) / 2;
        for (size_t i = 0; i < n; i++) {
                int hi = hex_value[(unsigned char) v[2 * i]] - 1, lo = hex_value[(unsigned char) v[2 * i + 1]] - 1;
                if ((hi | lo) < 0)
                        return -EBADMSG;
                out[i] = (uint8_t) (hi << 4 | lo);
        }
        return 0;
}

static int value_digest(const PGresult *res, int row, int col, uint8_t out[MP_STORE_DIGEST_SIZE]) {
        size_t n;
        int r = bytea_size(res, row, col, &n);
        if (r < 0 || n != MP_STORE_DIGEST_SIZE)
                return -EBADMSG;
        return bytea_decode(res, row, col, out);
}

/* Decodes a BYTEA into *buf, grown as needed (a 1-byte buffer at least, so
 * that success means a non-NULL pointer). */
static int value_bytes(const PGresult *res, int row, int col, uint8_t **buf, size_t *allocated, size_t *len) {
        size_t n;
        int r = bytea_size(res, row, col, &n);
        if (r < 0)
                return r;
        if (mp_grow((void **) buf, allocated, n ? n : 1, 1) < 0)
                return -ENOMEM;
        *len = n;
        return bytea_decode(res, row, col, *buf);
}

static int value_i64(const PGresult *res, int row, int col, int64_t *ret) {
        if (PQgetisnull(res, row, col))
                return -EBADMSG;
        const char *v = PQgetvalue(res, row, col);
        char *end;
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (errno != 0 || end == v || *end)
                return -EBADMSG;
        *ret = x;
        return 0;
}

static int value_u64(const PGresult *res, int row, int col, uint64_t *ret) {
        int64_t v = 0;
        int r = value_i64(res, row, col, &v);
        *ret = (uint64_t) v;            /* as stored from store.c's (int64_t) casts */
        return r;
}

static int value_double(const PGresult *res, int row, int col, double *ret) {
        if (PQgetisnull(res, row, col)) {
                *ret = 0;
                return 0;
        }
        const char *v = PQgetvalue(res, row, col);
        char *end;
        *ret = strtod(v, &end);
        return end == v || *end ? -EBADMSG : 0;
}

/* A copy of a text column; SQL NULL is NULL when nullable, else damage. */
static int value_dup(const PGresult *res, int row, int col, bool nullable, char **ret) {
        if (PQgetisnull(res, row, col)) {
                *ret = NULL;
                return nullable ? 0 : -EBADMSG;
        }
        *ret = strdup(PQgetvalue(res, row, col));
        return *ret ? 0 : -ENOMEM;
}

/* Borrowed text; SQL NULL is NULL. */
static const char *value_text(const PGresult *res, int row, int col) {
        return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static int value_host_id(const PGresult *res, int row, int col, char out[MP_STORE_HOST_ID_SIZE]) {
        if (PQgetisnull(res, row, col) || PQgetlength(res, row, col) != MP_STORE_HOST_ID_SIZE - 1)
                return -EBADMSG;
        memcpy(out, PQgetvalue(res, row, col), MP_STORE_HOST_ID_SIZE);
        return 0;
}

/* A copy of a BYTEA column of a binary-format result (its bytes as they
 * are; a 1-byte buffer at least). */
static int value_raw_dup(const PGresult *res, int row, int col, uint8_t **ret, size_t *len) {
        if (PQgetisnull(res, row, col))
                return -EBADMSG;
        size_t n = (size_t) PQgetlength(res, row, col);
        uint8_t *copy = malloc(n ? n : 1);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, PQgetvalue(res, row, col), n);
        *ret = copy;
        *len = n;
        return 0;
}

/* The number of rows a command affected. */
static uint64_t affected(PGresult *res) {
        return strtoull(PQcmdTuples(res), NULL, 10);
}

/* ---- running statements ------------------------------------------------- */

static const char *stmt_name(stmt_id id, char buf[16]) {
        snprintf(buf, 16, "mp_%d", (int) id);
        return buf;
}

static int exec_simple(pg_store *st, const char *sql, const char *what, mp_error *err) {
        _cleanup_(pqclearp) PGresult *res = PQexec(st->conn, sql);
        return check(st, res, what, err);
}

/* Runs prepared statement id with p; results in text format, or binary
 * with binary.  *ret (may be NULL) receives the result. */
static int exec_stmt(pg_store *st, stmt_id id, const pg_params *p, bool binary, PGresult **ret, const char *what,
                     mp_error *err) {
        char name[16];
        PGresult *res = PQexecPrepared(st->conn, stmt_name(id, name), p->n, p->values, p->lengths, p->formats,
                                       binary);
        int r = check(st, res, what, err);
        if (r < 0 || !ret)
                PQclear(res);
        else
                *ret = res;
        return r;
}

typedef int (*row_fn)(pg_store *st, const PGresult *res, int row, void *userdata, const char *what,
                      mp_error *err);

/* Runs prepared statement id and hands each row to fn as it arrives
 * (single-row mode: the whole result is never held).  fn must not use the
 * connection; a negative return stops and is returned. */
static int stream_rows(pg_store *st, stmt_id id, const pg_params *p, row_fn fn, void *userdata, const char *what,
                       mp_error *err) {
        char name[16];
        if (!PQsendQueryPrepared(st->conn, stmt_name(id, name), p->n, p->values, p->lengths, p->formats, 0))
                return sql_error(st, NULL, what, err);
        (void) PQsetSingleRowMode(st->conn);    /* if refused, whole results: handled alike */

        int r = 0;
        PGresult *res;
        /* After a failure the rest is read and dropped: the connection must
         * be idle for the next statement. */
        while ((res = PQgetResult(st->conn))) {
                ExecStatusType s = PQresultStatus(res);
                if (r >= 0 && (s == PGRES_SINGLE_TUPLE || s == PGRES_TUPLES_OK))
                        for (int i = 0; r >= 0 && i < PQntuples(res); i++)
                                r = fn(st, res, i, userdata, what, err);
                else if (r >= 0)
                        r = sql_error(st, res, what, err);
                PQclear(res);
        }
        return r;
}

/* Runs sql (parameters p) through a cursor in the current transaction,
 * FETCH_ROWS at a time, handing each row to fn, which may run statements
 * on the connection in between.  A negative return of fn stops and is
 * returned, a positive one stops and 0 is returned. */
static int cursor_rows(pg_store *st, const char *sql, const pg_params *p, row_fn fn, void *userdata,
                       const char *what, mp_error *err) {
        assert(st->depth > 0);
        char name[32], fetch[64];
        snprintf(name, sizeof(name), "mp_cursor_%u", st->cursors++);
        snprintf(fetch, sizeof(fetch), "FETCH %d FROM %s", FETCH_ROWS, name);
        _cleanup_(freep) char *declare = NULL;
        if (asprintf(&declare, "DECLARE %s NO SCROLL CURSOR FOR %s", name, sql) < 0) {
                declare = NULL;
                return read_error(st, -ENOMEM, what, err);
        }
        _cleanup_(pqclearp) PGresult *d = PQexecParams(st->conn, declare, p->n, NULL, p->values, p->lengths,
                                                        p->formats, 0);
        int r = check(st, d, what, err);
        while (r == 0) {
                _cleanup_(pqclearp) PGresult *res = PQexec(st->conn, fetch);
                r = check(st, res, what, err);
                int n = r < 0 ? 0 : PQntuples(res);
                for (int i = 0; r == 0 && i < n; i++)
                        r = fn(st, res, i, userdata, what, err);
                if (r == 0 && n < FETCH_ROWS)
                        break;
        }
        /* The cursor goes with the transaction. */
        return r < 0 ? r : 0;
}

/* ---- connections and retries -------------------------------------------- */

static void ignore_notice(void *arg, const char *message) {
        (void) arg;
        (void) message;         /* "relation exists, skipping" and the like: not for the log */
}

/* What every session needs, whatever the server's defaults: hex BYTEA
 * text, doubles that read back exactly, READ COMMITTED, and waits on row
 * locks bounded like SQLite's busy timeout. */
static int set_session(pg_store *st, const char *what, mp_error *err) {
        return exec_simple(st,
                           "SET bytea_output = 'hex'; SET extra_float_digits = 3;"
                           " SET default_transaction_isolation = 'read committed';"
                           " SET lock_timeout = '" LOCK_TIMEOUT "'",
                           what, err);
}

static int prepare_all(pg_store *st, const char *what, mp_error *err) {
        for (stmt_id id = 0; id < _ST_MAX; id++) {
                char name[16];
                _cleanup_(pqclearp) PGresult *res = PQprepare(st->conn, stmt_name(id, name), stmt_sql[id], 0, NULL);
                int r = check(st, res, what, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int connect_store(pg_store *st, mp_error *err) {
        /* Ours before the URL's ("dbname" is expanded in place), so that the
         * URL may override them; client_encoding after it: store.c hands
         * over UTF-8. */
        static const char *const keys[] = { "connect_timeout", "fallback_application_name", "dbname",
                                            "client_encoding", NULL };
        const char *values[] = { CONNECT_TIMEOUT_S, "modelprov-collector", st->uri, "UTF8", NULL };

        char buf[MP_ERROR_REASON_MAX];
        char *msg = NULL;
        PQconninfoOption *opts = PQconninfoParse(st->uri, &msg);
        PQconninfoFree(opts);
        if (!opts) {
                int r = mp_error_set(err, msg ? -EINVAL : -ENOMEM, st->where, -1, "invalid PostgreSQL URL: %s",
                                     scrub(st, msg ? msg : "out of memory", buf, sizeof(buf)));
                PQfreemem(msg);
                return r;
        }

        st->conn = PQconnectdbParams(keys, values, 1);
        if (!st->conn)
                return mp_error_set(err, -ENOMEM, st->where, -1, "out of memory");
        PQsetNoticeProcessor(st->conn, ignore_notice, NULL);
        char *where = describe(st->conn);
        if (where) {
                free(st->where);
                st->where = where;
        }
        if (PQstatus(st->conn) != CONNECTION_OK)
                return mp_error_set(err, -EIO, st->where, -1, "cannot connect to the store: %s",
                                    scrub(st, PQerrorMessage(st->conn), buf, sizeof(buf)));
        return set_session(st, "setting up the store connection", err);
}

/* After a lost connection: one reset, then the session as new. */
static int reconnect(pg_store *st, const char *what, mp_error *err) {
        st->reset_needed = false;
        PQreset(st->conn);
        if (PQstatus(st->conn) != CONNECTION_OK) {
                char buf[MP_ERROR_REASON_MAX];
                st->reset_needed = true;
                return mp_error_set(err, -EIO, st->where, -1,
                                    "%s: lost the connection to the store and could not reconnect (%s)", what,
                                    scrub(st, PQerrorMessage(st->conn), buf, sizeof(buf)));
        }
        int r = set_session(st, what, err);
        /* Until the schema is known (a reset during a migration) there is
         * nothing to prepare. */
        if (r >= 0 && st->version != 0)
                r = prepare_all(st, what, err);
        return r;
}

static void backoff(pg_store *st, unsigned attempt) {
        long ms = (long) attempt * 5 + rand_r(&st->seed) % 10;
        struct timespec ts = { .tv_sec = 0, .tv_nsec = ms * 1000000L };
        nanosleep(&ts, NULL);
}

/* Ends run_op()'s transaction: COMMIT when r >= 0, else ROLLBACK if one is
 * open (not after a lost connection). */
static int finish(pg_store *st, int r, const char *what, mp_error *err) {
        if (r >= 0) {
                st->committing = true;
                r = exec_simple(st, "COMMIT", what, err);
                if (r >= 0)
                        return 0;
        }
        PGTransactionStatusType t = PQtransactionStatus(st->conn);
        if (t == PQTRANS_INTRANS || t == PQTRANS_INERROR)
                PQclear(PQexec(st->conn, "ROLLBACK"));
        return r;
}

typedef int (*op_fn)(pg_store *st, void *userdata, mp_error *err);

/* Runs fn, in a transaction of its own with tx, and runs it again after a
 * lost connection (once, after a reset, when nothing was committed or
 * delivered to a callback) or a deadlock / serialization failure (up to
 * TX_ATTEMPTS times).  fn starts from scratch each time.  Inside another
 * run_op() transaction (a callback's query) fn just runs in it. */
static int run_op(pg_store *st, const char *what, bool tx, op_fn fn, void *userdata, mp_error *err) {
        if (st->depth > 0)
                return fn(st, userdata, err);

        bool reset = false;
        for (unsigned attempt = 1;; attempt++) {
                if (st->reset_needed || PQstatus(st->conn) != CONNECTION_OK) {
                        if (reset)
                                return mp_error_set(err, -EIO, st->where, -1, "%s: lost the connection to the store",
                                                    what);
                        reset = true;
                        int r = reconnect(st, what, err);
                        if (r < 0)
                                return r;
                }
                st->failure = FAIL_NONE;
                st->committing = st->delivered = false;

                int r = tx ? exec_simple(st, "BEGIN", what, err) : 0;
                if (r >= 0) {
                        st->depth += tx;
                        r = fn(st, userdata, err);
                        st->depth -= tx;
                }
                if (tx)
                        r = finish(st, r, what, err);
                if (r >= 0)
                        return r;

                bool again = false;
                if (st->failure == FAIL_LOST)
                        again = !reset && !st->committing && !st->delivered;
                else if (st->failure == FAIL_CONFLICT && attempt < TX_ATTEMPTS && !st->delivered) {
                        again = true;
                        backoff(st, attempt);
                }
                if (!again)
                        return r;
        }
}

/* ---- schema check and migrations ---------------------------------------- */

typedef struct schema_state {
        bool has_meta;
        int64_t tables;                 /* in our schema, ours or not */
        char marker[64];                /* "" when none */
        int64_t version;                /* -1 when missing or not a number */
} schema_state;

static int read_state(pg_store *st, schema_state *ret, const char *what, mp_error *err) {
        *ret = (schema_state) {};
        _cleanup_(pqclearp) PGresult *res = PQexec(st->conn,
                "SELECT to_regclass('modelprov_meta') IS NOT NULL,"
                " (SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema())");
        int r = check(st, res, what, err);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1 || value_i64(res, 0, 1, &ret->tables) < 0)
                return read_error(st, -EBADMSG, what, err);
        ret->has_meta = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        if (!ret->has_meta)
                return 0;

        _cleanup_(pqclearp) PGresult *meta = PQexec(st->conn,
                "SELECT (SELECT value FROM modelprov_meta WHERE key = 'application'),"
                " (SELECT value FROM modelprov_meta WHERE key = 'schema_version')");
        r = check(st, meta, what, err);
        if (r < 0)
                return r;
        if (PQntuples(meta) != 1)
                return read_error(st, -EBADMSG, what, err);
        const char *marker = value_text(meta, 0, 0);
        snprintf(ret->marker, sizeof(ret->marker), "%s", marker ? marker : "");
        if (value_i64(meta, 0, 1, &ret->version) < 0 || ret->version < 0)
                ret->version = -1;
        return 0;
}

/* Is this our database, in a version this modelprov understands? */
static int refuse_foreign(pg_store *st, const schema_state *s, mp_error *err) {
        if ((!s->has_meta && s->tables > 0) || (s->has_meta && strcmp(s->marker, STORE_MARKER) != 0))
                return mp_error_set(err, -EBADMSG, st->where, -1,
                                    "not a modelprov store (a PostgreSQL database of another application: its"
                                    " schema holds tables but no modelprov marker)");
        if (s->has_meta && s->version < 0)
                return mp_error_set(err, -EBADMSG, st->where, -1, "the store's schema version is damaged");
        if (s->version > STORE_SCHEMA_VERSION)
                return mp_error_set(err, -ENOTSUP, st->where, -1,
                                    "store schema version %" PRId64 " is newer than this modelprov supports (%d)",
                                    s->version, STORE_SCHEMA_VERSION);
        return 0;
}

/* One migration step, under the lock, from the version read inside it;
 * *done when none is left. */
static int migrate_step(pg_store *st, void *userdata, mp_error *err) {
        bool *done = userdata;
        const char *what = "upgrading the store schema";
        char sql[128];
        /* Another instance may hold the lock through a long step. */
        snprintf(sql, sizeof(sql), "SET LOCAL lock_timeout = 0; SELECT pg_advisory_xact_lock(%" PRId64 ")",
                 MIGRATION_LOCK_KEY);
        int r = exec_simple(st, sql, what, err);
        schema_state s;
        if (r >= 0)
                r = read_state(st, &s, what, err);
        if (r >= 0)
                r = refuse_foreign(st, &s, err);
        if (r < 0)
                return r;
        *done = s.version >= STORE_SCHEMA_VERSION;
        if (*done)
                return 0;

        r = exec_simple(st, migrations[s.version], what, err);
        if (r < 0)
                return r;
        pg_params p = {};
        param_int(&p, s.version + 1);
        _cleanup_(pqclearp) PGresult *res = PQexecParams(st->conn,
                "INSERT INTO modelprov_meta (key, value) VALUES ('schema_version', $1)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value", p.n, NULL, p.values, NULL, NULL, 0);
        r = check(st, res, what, err);
        *done = r >= 0 && s.version + 1 >= STORE_SCHEMA_VERSION;
        return r;
}

static int check_schema(pg_store *st, mp_error *err) {
        const char *what = "reading the store";
        schema_state s;
        int r = read_state(st, &s, what, err);
        if (r >= 0)
                r = refuse_foreign(st, &s, err);
        for (bool done = s.version >= STORE_SCHEMA_VERSION; r >= 0 && !done;)
                r = run_op(st, "upgrading the store schema", true, migrate_step, &done, err);
        if (r >= 0)
                r = read_state(st, &s, what, err);
        if (r < 0)
                return r;
        if (s.version != STORE_SCHEMA_VERSION)
                return mp_error_set(err, -ENOTSUP, st->where, -1, "store schema version %" PRId64 " not supported",
                                    s.version);
        st->version = (int) s.version;
        return 0;
}

/* ---- open --------------------------------------------------------------- */

/* Frees s after wiping it: it may hold a password. */
static void free_secret(char *s) {
        if (s)
                explicit_bzero(s, strlen(s));
        free(s);
}

static void pg_close(mp_store *s) {
        pg_store *st = impl(s);
        PQfinish(st->conn);
        free_secret(st->uri);
        free(st->where);
        for (size_t i = 0; i < MAX_SECRETS; i++)
                free_secret(st->secrets[i]);
        free(st);
}

static void pg_storep(pg_store **st) {
        if (*st)
                pg_close(&(*st)->base);
}

static int open_uri(const char *uri, mp_store **ret, mp_error *err) {
        _cleanup_(pg_storep) pg_store *st = calloc(1, sizeof(*st));
        if (!st)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        st->base.engine = &mp_store_postgres_engine;
        st->seed = (unsigned) time(NULL) ^ (unsigned) (uintptr_t) st;
        if (!(st->uri = strdup(uri)))
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        find_secrets(st);
        /* Until libpq can tell host and database: the URL, redacted. */
        if (!(st->where = mp_store_url_redacted(uri)))
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");

        int r = connect_store(st, err);
        if (r >= 0)
                r = check_schema(st, err);
        if (r >= 0)
                r = prepare_all(st, "preparing statements", err);
        if (r < 0)
                return r;
        *ret = &TAKE_PTR(st)->base;
        return 0;
}

static int pg_open(const char *location, mp_store **ret, mp_error *err) {
        /* libpq reads "postgres://" and "postgresql://" alike. */
        if (!mp_has_prefix(location, "//"))
                return mp_error_set(err, -EINVAL, NULL, -1, "a PostgreSQL store URL is"
                                    " postgresql://[USER@]HOST[:PORT]/DBNAME[?PARAM=VALUE...]");
        char *uri = NULL;
        if (asprintf(&uri, "postgresql:%s", location) < 0)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        int r = open_uri(uri, ret, err);
        free_secret(uri);
        return r;
}

static int pg_open_another(mp_store *s, mp_store **ret, mp_error *err) {
        return open_uri(impl(s)->uri, ret, err);
}

static int pg_schema_version(mp_store *s) {
        return impl(s)->version;
}

/* ---- hosts -------------------------------------------------------------- */

static int unknown_host(pg_store *st, const char *host_id, mp_error *err) {
        st->failure = FAIL_OTHER;
        return mp_error_set(err, -ENOENT, st->where, -1, "unknown host %s", host_id);
}

struct enroll {
        const mp_host_info *info;
        const uint8_t *key_hash;
        const char *new_id;
        int64_t now;
        char id[MP_STORE_HOST_ID_SIZE];
};

static int enroll_tx(pg_store *st, void *userdata, mp_error *err) {
        struct enroll *e = userdata;
        const char *what = "enrolling a host";
        pg_params p = {};
        param_text(&p, e->new_id);
        param_text(&p, e->info->machine_id);
        param_text(&p, e->info->hostname);
        param_text(&p, e->info->agent_version);
        param_text(&p, e->info->os ? e->info->os : "");
        param_bytes(&p, e->key_hash, MP_STORE_DIGEST_SIZE);
        param_int(&p, e->now);
        _cleanup_(pqclearp) PGresult *res = NULL;
        int r = exec_stmt(st, ST_HOST_ENROLL, &p, false, &res, what, err);
        if (r >= 0 && (PQntuples(res) != 1 || value_host_id(res, 0, 0, e->id) < 0))
                r = read_error(st, -EBADMSG, what, err);
        return r;
}

static int pg_enroll(mp_store *s, const mp_host_info *info, const uint8_t key_hash[MP_STORE_DIGEST_SIZE],
                     const char *new_id, int64_t now, char host_id_out[MP_STORE_HOST_ID_SIZE], mp_error *err) {
        struct enroll e = { .info = info, .key_hash = key_hash, .new_id = new_id, .now = now };
        int r = run_op(impl(s), "enrolling a host", true, enroll_tx, &e, err);
        if (r < 0)
                return r;
        memcpy(host_id_out, e.id, MP_STORE_HOST_ID_SIZE);
        return 0;
}

struct host_key {
        const char *host_id;
        uint8_t *out;
};

static int host_key_op(pg_store *st, void *userdata, mp_error *err) {
        struct host_key *k = userdata;
        const char *what = "looking up a host key";
        pg_params p = {};
        param_text(&p, k->host_id);
        _cleanup_(pqclearp) PGresult *res = NULL;
        int r = exec_stmt(st, ST_HOST_KEY, &p, false, &res, what, err);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                return unknown_host(st, k->host_id, err);
        return value_digest(res, 0, 0, k->out) < 0 ? read_error(st, -EBADMSG, what, err) : 0;
}

static int pg_host_key_hash(mp_store *s, const char *host_id, uint8_t out[MP_STORE_DIGEST_SIZE], mp_error *err) {
        struct host_key k = { .host_id = host_id, .out = out };
        return run_op(impl(s), "looking up a host key", false, host_key_op, &k, err);
}

struct heartbeat {
        const char *host_id, *agent_version;
        int64_t now;
};

static int heartbeat_tx(pg_store *st, void *userdata, mp_error *err) {
        struct heartbeat *h = userdata;
        pg_params p = {};
        param_text(&p, h->host_id);
        param_text(&p, h->agent_version);
        param_int(&p, h->now);
        _cleanup_(pqclearp) PGresult *res = NULL;
        int r = exec_stmt(st, ST_HOST_HEARTBEAT, &p, false, &res, "recording a heartbeat", err);
        if (r >= 0 && affected(res) == 0)
                r = unknown_host(st, h->host_id, err);
        return r;
}

static int pg_heartbeat(mp_store *s, const char *host_id, const char *agent_version, int64_t now, mp_error *err) {
        struct heartbeat h = { .host_id = host_id, .agent_version = agent_version, .now = now };
        return run_op(impl(s), "recording a heartbeat", true, heartbeat_tx, &h, err);
}

/* ---- ingest ------------------------------------------------------------- */

/* The host's last stored sequence, its row locked until the transaction
 * ends: another instance's ingest for this host waits here. */
static int lock_host(pg_store *st, const char *host_id, uint64_t *ret, const char *what, mp_error *err) {
        pg_params p = {};
        param_text(&p, host_id);
        _cleanup_(pqclearp) PGresult *res = NULL;
        int r = exec_stmt(st, ST_HOST_LOCK, &p, false, &res, what, err);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                return unknown_host(st, host_id, err);
        return value_u64(res, 0, 0, ret) < 0 ? read_error(st, -EBADMSG, what, err) : 0;
}

/* *inserted: false when (host, seq) was stored already, which only a store
 * whose last_seq lags its events can show: the key decides, not last_seq
 * (the event's fingerprint, inserted before, was then stored with it). */
static int insert_event(pg_store *st, const char *host_id, const mp_store_item *it, bool *inserted,
                        const char *what, mp_error *err) {
        const mp_store_event *ev = it->ev;
        bool finding = ev->kind == MP_STORE_EVENT_FINDING, match = ev->kind == MP_STORE_EVENT_SCAN_MATCH;
        pg_params p = {};
        param_text(&p, host_id);
        param_int(&p, (int64_t) ev->sequence);
        param_text(&p, mp_store_event_kind_name(ev->kind));
        param_int(&p, ev->observed_at);
        param_text(&p, ev->path);
        if (it->has_digest)
                param_bytes(&p, ev->model_digest, MP_STORE_DIGEST_SIZE);
        else
                param_text(&p, NULL);
        param_text(&p, finding ? ev->finding_kind : NULL);
        param_opt(&p, finding ? ev->finding_detail : NULL);
        param_text(&p, match ? ev->match_entry : NULL);
        param_text(&p, match ? ev->match_verdict : NULL);
        param_opt(&p, match ? ev->match_relation : NULL);
        if (match)
                param_double(&p, ev->match_score);
        else
                param_text(&p, NULL);
        param_opt(&p, finding ? ev->finding_file : NULL);
        _cleanup_(pqclearp) PGresult *res = NULL;
        int r = exec_stmt(st, ST_EVENT_INSERT, &p, false, &res, what, err);
        if (r >= 0)
                *inserted = affected(res) == 1;
        return r;
}

/* hidden size, layers, vocabulary size, has_weights. */
static void param_structure(pg_params *p, const mp_store_structure *m) {
        param_int(p, (int64_t) m->hidden_size);
        param_int(p, (int64_t) m->num_layers);
        param_int(p, (int64_t) m->vocab_size);
        param_int(p, m->has_weights);
}

/* A fingerprint and its tensor keys, unless its digest is stored. */
/* The scoring record, or NULL. */
static void param_scoring(pg_params *p, const mp_store_fp_columns *c) {
        if (c->scoring)
                param_bytes(p, c->scoring, c->scoring_len);
        else
                param_text(p, NULL);
}

static int insert_fingerprint(pg_store *st, const mp_store_item *it, const char *what, mp_error *err) {
        const mp_store_event *ev = it->ev;
        _cleanup_(params_freep) pg_params p = {};
        param_bytes(&p, ev->model_digest, MP_STORE_DIGEST_SIZE);
        param_bytes(&p, ev->record, ev->record_len);
        param_text(&p, it->fp.name ? it->fp.name : "");
        param_text(&p, it->fp.format ? it->fp.format : "");
        param_opt(&p, it->fp.arch_hash);
        param_opt(&p, it->fp.family_hash);
        param_int(&p, (int64_t) it->fp.params);
        param_int(&p, (int64_t) it->fp.n_tensors);
        param_int(&p, ev->observed_at);
        param_structure(&p, &it->fp.structure);
        if (param_int_array(&p, it->fp.keys, it->fp.n_keys) < 0)
                return read_error(st, -ENOMEM, what, err);
        param_scoring(&p, &it->fp);
        return exec_stmt(st, ST_FP_INSERT, &p, false, NULL, what, err);
}

/* An added or changed model becomes the one present at its path, a removal
 * closes the path. */
static int update_inventory(pg_store *st, const char *host_id, const mp_store_event *ev, const char *what,
                            mp_error *err) {
        pg_params p = {};
        param_text(&p, host_id);
        param_text(&p, ev->path);
        if (ev->kind == MP_STORE_EVENT_MODEL_REMOVED) {
                param_int(&p, ev->observed_at);
                return exec_stmt(st, ST_INV_CLOSE_PATH, &p, false, NULL, what, err);
        }
        if (ev->kind != MP_STORE_EVENT_MODEL_ADDED && ev->kind != MP_STORE_EVENT_MODEL_CHANGED)
                return 0;
        param_bytes(&p, ev->model_digest, MP_STORE_DIGEST_SIZE);
        param_int(&p, ev->observed_at);
        return exec_stmt(st, ST_INV_PUT, &p, false, NULL, what, err);
}

struct ingest {
        const char *host_id;
        const mp_store_item *items;
        size_t n;
        int64_t now;
        const mp_store_item **take;     /* scratch of n: the items this call stores */
        const mp_store_item **records;  /* scratch of n: those with a record */
        uint64_t last;
        size_t stored, dup;
};

/* Digest, then sequence (the first record of a digest wins, as on
 * SQLite). */
static int record_order(const void *a, const void *b) {
        const mp_store_event *x = (*(const mp_store_item *const *) a)->ev;
        const mp_store_event *y = (*(const mp_store_item *const *) b)->ev;
        int c = memcmp(x->model_digest, y->model_digest, MP_STORE_DIGEST_SIZE);
        if (c != 0)
                return c;
        return x->sequence < y->sequence ? -1 : x->sequence > y->sequence;
}

/* Fingerprints go in before the events, in digest order.  Two hosts'
 * batches often carry the same new models (a fleet installing a release),
 * and an insert waits for another transaction's uncommitted row of the
 * same digest: in report order, two batches holding two digests in
 * opposite orders would deadlock (each lost one costs deadlock_timeout);
 * in one global order they queue instead. */
static int insert_fingerprints(pg_store *st, struct ingest *in, size_t n_take, const char *what, mp_error *err) {
        size_t n = 0;
        for (size_t i = 0; i < n_take; i++)
                if (in->take[i]->ev->record)
                        in->records[n++] = in->take[i];
        qsort(in->records, n, sizeof(*in->records), record_order);
        for (size_t i = 0; i < n; i++) {
                int r = insert_fingerprint(st, in->records[i], what, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int ingest_tx(pg_store *st, void *userdata, mp_error *err) {
        struct ingest *in = userdata;
        const char *what = "storing events";
        in->stored = 0;

        int r = lock_host(st, in->host_id, &in->last, what, err);
        if (r < 0)
                return r;

        /* The run that continues the stream: its fingerprints first, then
         * its events in sequence order. */
        size_t n_take = mp_store_ingest_run(in->items, in->n, in->last, in->take, &in->dup);
        r = insert_fingerprints(st, in, n_take, what, err);
        for (size_t i = 0; r >= 0 && i < n_take; i++) {
                bool inserted = false;
                r = insert_event(st, in->host_id, in->take[i], &inserted, what, err);
                if (r >= 0 && inserted)
                        r = update_inventory(st, in->host_id, in->take[i]->ev, what, err);
                if (r >= 0) {
                        in->last = in->take[i]->ev->sequence;
                        if (inserted)
                                in->stored++;
                        else
                                in->dup++;
                }
        }
        if (r < 0)
                return r;

        pg_params p = {};
        param_text(&p, in->host_id);
        param_int(&p, (int64_t) in->last);
        param_int(&p, in->now);
        return exec_stmt(st, ST_HOST_ADVANCE, &p, false, NULL, what, err);
}

static int pg_ingest(mp_store *s, const char *host_id, const mp_store_item *items, size_t n, int64_t now,
                     uint64_t *acked_through, size_t *stored, size_t *duplicates, mp_error *err) {
        pg_store *st = impl(s);
        _cleanup_(freep) const mp_store_item **scratch = calloc(2 * n + 1, sizeof(*scratch));
        if (!scratch)
                return mp_error_set(err, -ENOMEM, st->where, -1, "out of memory");
        struct ingest in = { .host_id = host_id, .items = items, .n = n, .now = now, .take = scratch,
                             .records = scratch + n };
        int r = run_op(st, "storing events", true, ingest_tx, &in, err);
        if (r < 0)
                return r;
        *acked_through = in.last;
        *stored = in.stored;
        *duplicates = in.dup;
        return 0;
}

/* ---- listings ----------------------------------------------------------- */

/* Fills one zeroed element from a row: -EBADMSG (damaged) or -ENOMEM. */
typedef int (*fill_fn)(const PGresult *res, int row, void *elem);
typedef void (*free_fn)(void *array, size_t n);

typedef struct listing {
        stmt_id id;
        const pg_params *p;
        size_t size;
        fill_fn fill;
        free_fn free;
        const char *what;
        void *array;
        size_t n, allocated;
} listing;

static int listing_row(pg_store *st, const PGresult *res, int row, void *userdata, const char *what,
                       mp_error *err) {
        listing *l = userdata;
        if (mp_grow(&l->array, &l->allocated, l->n + 1, l->size) < 0)
                return read_error(st, -ENOMEM, what, err);
        void *e = (char *) l->array + l->n * l->size;
        memset(e, 0, l->size);
        l->n++;
        int r = l->fill(res, row, e);
        return r < 0 ? read_error(st, r, what, err) : 0;
}

static int listing_op(pg_store *st, void *userdata, mp_error *err) {
        listing *l = userdata;
        l->free(l->array, l->n);        /* what a failed attempt collected */
        l->array = NULL;
        l->n = l->allocated = 0;
        return stream_rows(st, l->id, l->p, listing_row, l, l->what, err);
}

/* Every row of statement id as an array of elements (NULL when none). */
static int list_rows(pg_store *st, listing *l, void **ret, size_t *n, mp_error *err) {
        int r = run_op(st, l->what, false, listing_op, l, err);
        if (r < 0) {
                l->free(l->array, l->n);
                return r;
        }
        *ret = l->array;
        *n = l->n;
        return 0;
}

static int fill_host(const PGresult *res, int row, void *elem) {
        mp_store_host *e = elem;
        int r = value_host_id(res, row, 0, e->id);
        if (r >= 0)
                r = value_dup(res, row, 1, false, &e->hostname);
        if (r >= 0)
                r = value_dup(res, row, 2, false, &e->machine_id);
        if (r >= 0)
                r = value_dup(res, row, 3, false, &e->agent_version);
        if (r >= 0)
                r = value_dup(res, row, 4, false, &e->os);
        if (r >= 0)
                r = value_i64(res, row, 5, &e->enrolled_at);
        if (r >= 0)
                r = value_i64(res, row, 6, &e->last_seen);
        if (r >= 0)
                r = value_u64(res, row, 7, &e->last_sequence);
        if (r >= 0)
                r = value_u64(res, row, 8, &e->model_count);
        return r;
}

static void free_hosts(void *array, size_t n) {
        mp_store_hosts_free(array, n);
}

static int pg_hosts(mp_store *s, const char *host_id, mp_store_host **ret, size_t *ret_n, mp_error *err) {
        pg_store *st = impl(s);
        pg_params p = {};
        if (host_id)
                param_text(&p, host_id);
        listing l = { .id = host_id ? ST_HOST : ST_HOSTS, .p = &p, .size = sizeof(mp_store_host),
                      .fill = fill_host, .free = free_hosts,
                      .what = host_id ? "looking up a host" : "listing hosts" };
        void *a = NULL;
        size_t n = 0;
        int r = list_rows(st, &l, &a, &n, err);
        if (r >= 0 && host_id && n == 0)
                r = unknown_host(st, host_id, err);
        if (r < 0)
                return r;
        *ret = a;
        *ret_n = n;
        return 0;
}

static int fill_location(const PGresult *res, int row, void *elem) {
        mp_store_location *e = elem;
        int64_t present = 0;
        int r = value_host_id(res, row, 0, e->host_id);
        if (r >= 0)
                r = value_dup(res, row, 1, false, &e->hostname);
        if (r >= 0)
                r = value_dup(res, row, 2, false, &e->path);
        if (r >= 0)
                r = value_digest(res, row, 3, e->model_digest);
        if (r >= 0)
                r = value_i64(res, row, 4, &e->first_seen);
        if (r >= 0)
                r = value_i64(res, row, 5, &e->last_seen);
        if (r >= 0)
                r = value_i64(res, row, 6, &present);
        if (r >= 0)
                r = value_dup(res, row, 7, false, &e->model_name);
        e->present = present != 0;
        return r;
}

static void free_locations(void *array, size_t n) {
        mp_store_locations_free(array, n);
}

static int pg_inventory(mp_store *s, const char *host_id, bool only_present, const uint8_t *digest,
                        mp_store_location **ret, size_t *ret_n, mp_error *err) {
        pg_params p = {};
        stmt_id id;
        if (digest) {
                id = ST_LOCATIONS;
                param_bytes(&p, digest, MP_STORE_DIGEST_SIZE);
        } else {
                id = host_id ? ST_INVENTORY_HOST : ST_INVENTORY;
                if (host_id)
                        param_text(&p, host_id);
                param_int(&p, only_present);
        }
        listing l = { .id = id, .p = &p, .size = sizeof(mp_store_location), .fill = fill_location,
                      .free = free_locations,
                      .what = digest ? "looking up model locations" : "listing the inventory" };
        return list_rows(impl(s), &l, (void **) ret, ret_n, err);
}

/* mp_store_locations_of()'s order: digest, host id, path, first_seen.
 * The key columns' "C" collation compares bytes, as strcmp() does; (host
 * id, path, digest) is the inventory's key, so no two rows tie. */
static int location_order(const void *a, const void *b) {
        const mp_store_location *x = a, *y = b;
        int c = memcmp(x->model_digest, y->model_digest, MP_STORE_DIGEST_SIZE);
        if (c == 0)
                c = strcmp(x->host_id, y->host_id);
        if (c == 0)
                c = strcmp(x->path, y->path);
        if (c == 0)
                c = (x->first_seen > y->first_seen) - (x->first_seen < y->first_seen);
        return c;
}

static int pg_locations_of(mp_store *s, const uint8_t *digests, size_t n, mp_store_location **ret, size_t *ret_n,
                           mp_error *err) {
        pg_store *st = impl(s);
        const char *what = "looking up model locations";
        _cleanup_(params_freep) pg_params p = {};
        if (param_digest_array(&p, digests, n) < 0)
                return read_error(st, -ENOMEM, what, err);
        listing l = { .id = ST_LOCATIONS_OF, .p = &p, .size = sizeof(mp_store_location), .fill = fill_location,
                      .free = free_locations, .what = what };
        int r = list_rows(st, &l, (void **) ret, ret_n, err);
        if (r >= 0 && *ret_n > 1)
                qsort(*ret, *ret_n, sizeof(**ret), location_order);
        return r;
}

static int pg_inventory_at(mp_store *s, const char *host_id, const char *path, mp_store_location **ret,
                           size_t *ret_n, mp_error *err) {
        pg_params p = {};
        param_text(&p, host_id);
        param_text(&p, path);
        listing l = { .id = ST_INVENTORY_AT, .p = &p, .size = sizeof(mp_store_location), .fill = fill_location,
                      .free = free_locations, .what = "looking up an inventory row" };
        return list_rows(impl(s), &l, (void **) ret, ret_n, err);
}

static int fill_host_id(const PGresult *res, int row, void *elem) {
        return value_host_id(res, row, 0, elem);
}

static void free_host_ids(void *array, size_t n) {
        (void) n;
        free(array);
}

static int pg_find_hosts(mp_store *s, const char *name, char (**ret)[MP_STORE_HOST_ID_SIZE], size_t *ret_n,
                         mp_error *err) {
        pg_params p = {};
        param_text(&p, name);
        listing l = { .id = ST_FIND_HOSTS, .p = &p, .size = MP_STORE_HOST_ID_SIZE, .fill = fill_host_id,
                      .free = free_host_ids, .what = "looking up a host" };
        return list_rows(impl(s), &l, (void **) ret, ret_n, err);
}

static int fill_history(const PGresult *res, int row, void *elem) {
        mp_store_history_entry *e = elem;
        int r = value_host_id(res, row, 0, e->host_id);
        if (r >= 0)
                r = value_u64(res, row, 1, &e->sequence);
        e->kind = mp_store_event_kind_of(value_text(res, row, 2));
        if (r >= 0 && e->kind == 0)
                r = -EBADMSG;
        if (r >= 0)
                r = value_i64(res, row, 3, &e->observed_at);
        if (r >= 0)
                r = value_dup(res, row, 4, false, &e->path);
        e->has_digest = !PQgetisnull(res, row, 5);
        if (r >= 0 && e->has_digest)
                r = value_digest(res, row, 5, e->model_digest);
        if (r >= 0)
                r = value_dup(res, row, 6, true, &e->finding_kind);
        if (r >= 0)
                r = value_dup(res, row, 7, true, &e->finding_detail);
        if (r >= 0)
                r = value_dup(res, row, 8, true, &e->match_entry);
        if (r >= 0)
                r = value_dup(res, row, 9, true, &e->match_verdict);
        if (r >= 0)
                r = value_dup(res, row, 10, true, &e->match_relation);
        if (r >= 0)
                r = value_double(res, row, 11, &e->match_score);
        if (r >= 0)
                r = value_dup(res, row, 12, true, &e->finding_file);
        return r;
}

static void free_history(void *array, size_t n) {
        mp_store_history_free(array, n);
}

static int pg_history(mp_store *s, const char *host_id, const char *path, mp_store_history_entry **ret,
                      size_t *ret_n, mp_error *err) {
        pg_params p = {};
        if (host_id)
                param_text(&p, host_id);
        if (path)
                param_text(&p, path);
        listing l = { .id = ST_HISTORY + (host_id ? 1 : 0) + (path ? 2 : 0), .p = &p,
                      .size = sizeof(mp_store_history_entry), .fill = fill_history, .free = free_history,
                      .what = "reading the history" };
        return list_rows(impl(s), &l, (void **) ret, ret_n, err);
}

/* ---- fingerprints ------------------------------------------------------- */

struct fingerprint {
        const uint8_t *digest;
        uint8_t *record;
        size_t len, allocated;
};

static int fingerprint_op(pg_store *st, void *userdata, mp_error *err) {
        struct fingerprint *f = userdata;
        const char *what = "reading a fingerprint";
        pg_params p = {};
        param_bytes(&p, f->digest, MP_STORE_DIGEST_SIZE);
        _cleanup_(pqclearp) PGresult *res = NULL;
        int r = exec_stmt(st, ST_FINGERPRINT, &p, true, &res, what, err);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0) {
                st->failure = FAIL_OTHER;
                return mp_error_set(err, -ENOENT, st->where, -1, "no fingerprint stored for that model digest");
        }
        r = value_raw_dup(res, 0, 0, &f->record, &f->len);
        return r < 0 ? read_error(st, r, what, err) : 0;
}

static int pg_fingerprint(mp_store *s, const uint8_t digest[MP_STORE_DIGEST_SIZE], uint8_t **ret, size_t *len,
                          mp_error *err) {
        struct fingerprint f = { .digest = digest };
        int r = run_op(impl(s), "reading a fingerprint", false, fingerprint_op, &f, err);
        if (r < 0) {
                free(f.record);
                return r;
        }
        *ret = f.record;
        *len = f.len;
        return 0;
}

struct fingerprints {
        stmt_id id;
        const pg_params *p;
        mp_store_record_cb cb;
        void *userdata;
};

/* Hands one record to f's callback. */
static int deliver_record(pg_store *st, const struct fingerprints *f, const uint8_t *digest, const uint8_t *record,
                          size_t len) {
        st->delivered = true;   /* from here on, running again would repeat rows */
        int r = f->cb(digest, record, len, f->userdata);
        if (r < 0)
                st->failure = FAIL_OTHER;
        return r;
}

/* The rows of a binary (digest, record) result to f's callback. */
static int deliver_rows(pg_store *st, const struct fingerprints *f, const PGresult *res, const char *what,
                        mp_error *err) {
        if (PQnfields(res) != 2)
                return read_error(st, -EBADMSG, what, err);
        for (int i = 0; i < PQntuples(res); i++) {
                if (PQgetisnull(res, i, 0) || PQgetlength(res, i, 0) != MP_STORE_DIGEST_SIZE ||
                    PQgetisnull(res, i, 1))
                        return read_error(st, -EBADMSG, what, err);
                int r = deliver_record(st, f, (const uint8_t *) PQgetvalue(res, i, 0),
                                       (const uint8_t *) PQgetvalue(res, i, 1), (size_t) PQgetlength(res, i, 1));
                if (r < 0)
                        return r;
        }
        return 0;
}

/* A row of (digest, part, parts, record) of scoring_parts. */
typedef struct part_row {
        const uint8_t *digest;
        int part, parts;
        int row;
} part_row;

static int part_row_order(const void *a, const void *b) {
        const part_row *x = a, *y = b;
        int c = memcmp(x->digest, y->digest, MP_STORE_DIGEST_SIZE);
        return c ? c : (x->part > y->part) - (x->part < y->part);
}

/* A binary SMALLINT (network order). */
static int value_i16(const PGresult *res, int row, int col, int *ret) {
        if (PQgetisnull(res, row, col) || PQgetlength(res, row, col) != 2)
                return -EBADMSG;
        const uint8_t *v = (const uint8_t *) PQgetvalue(res, row, col);
        *ret = (int16_t) (v[0] << 8 | v[1]);
        return 0;
}

/* The rows of a binary (digest, part, parts, record) result, sorted by
 * digest and part. */
static int sorted_parts(const PGresult *res, part_row **ret) {
        int n = PQntuples(res);
        if (PQnfields(res) != 4)
                return -EBADMSG;
        _cleanup_(freep) part_row *rows = malloc((n ? (size_t) n : 1) * sizeof(*rows));
        if (!rows)
                return -ENOMEM;
        for (int i = 0; i < n; i++) {
                if (PQgetisnull(res, i, 0) || PQgetlength(res, i, 0) != MP_STORE_DIGEST_SIZE ||
                    value_i16(res, i, 1, &rows[i].part) < 0 || value_i16(res, i, 2, &rows[i].parts) < 0 ||
                    PQgetisnull(res, i, 3))
                        return -EBADMSG;
                rows[i].digest = (const uint8_t *) PQgetvalue(res, i, 0);
                rows[i].row = i;
        }
        qsort(rows, (size_t) n, sizeof(*rows), part_row_order);
        *ret = TAKE_PTR(rows);
        return n;
}

/* Does the run of rows r[0..n) of one digest hold its record whole: parts
 * 0 .. parts - 1, each once, all agreeing on parts? */
static bool parts_whole(const part_row *r, int n) {
        for (int i = 0; i < n; i++)
                if (r[i].part != i || r[i].parts != n)
                        return false;
        return n > 0;
}

/* The record of the parts r[0..n) (whole: parts_whole()): the one part's
 * value, or the parts joined in *buf (of *allocated bytes, grown). */
static int join_parts(const PGresult *res, const part_row *r, int n, uint8_t **buf, size_t *allocated,
                      const uint8_t **record, size_t *len) {
        if (n == 1) {
                *record = (const uint8_t *) PQgetvalue(res, r[0].row, 3);
                *len = (size_t) PQgetlength(res, r[0].row, 3);
                return 0;
        }
        size_t total = 0;
        for (int j = 0; j < n; j++)
                total += (size_t) PQgetlength(res, r[j].row, 3);
        if (MP_GROW(*buf, *allocated, total) < 0)
                return -ENOMEM;
        size_t at = 0;
        for (int j = 0; j < n; j++) {
                size_t part_len = (size_t) PQgetlength(res, r[j].row, 3);
                memcpy(*buf + at, PQgetvalue(res, r[j].row, 3), part_len);
                at += part_len;
        }
        *record = *buf;
        *len = total;
        return 0;
}

/* The scoring records of a binary (digest, part, parts, record) result
 * (migration 4) to f's callback: each whole record, joined.  A record
 * whose parts do not add up is damaged: it is not delivered, so that the
 * full record stands in for it (read_scoring_records()). */
static int deliver_parts(pg_store *st, const struct fingerprints *f, const PGresult *res, const char *what,
                         mp_error *err) {
        _cleanup_(freep) part_row *rows = NULL;
        int n = sorted_parts(res, &rows);
        if (n < 0)
                return read_error(st, n, what, err);

        _cleanup_(freep) uint8_t *joined = NULL;        /* reused from record to record */
        size_t allocated = 0;
        for (int i = 0, k; i < n; i = k) {
                for (k = i + 1; k < n && memcmp(rows[k].digest, rows[i].digest, MP_STORE_DIGEST_SIZE) == 0; k++)
                        ;
                if (!parts_whole(rows + i, k - i))
                        continue;
                const uint8_t *record;
                size_t len;
                if (join_parts(res, rows + i, k - i, &joined, &allocated, &record, &len) < 0)
                        return read_error(st, -ENOMEM, what, err);
                int r = deliver_record(st, f, rows[i].digest, record, len);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Binary results, as for one record (see the top). */
static int fingerprints_op(pg_store *st, void *userdata, mp_error *err) {
        struct fingerprints *f = userdata;
        const char *what = "reading fingerprints";
        _cleanup_(pqclearp) PGresult *res = NULL;
        int r = exec_stmt(st, f->id, f->p, true, &res, what, err);
        if (r < 0)
                return r;
        return f->id == ST_SCORING_RECORDS ? deliver_parts(st, f, res, what, err)
                                           : deliver_rows(st, f, res, what, err);
}

static int read_records(pg_store *st, stmt_id id, const uint8_t *digests, size_t n, mp_store_record_cb cb,
                        void *userdata, mp_error *err) {
        const char *what = "reading fingerprints";
        _cleanup_(params_freep) pg_params p = {};
        if (param_digest_array(&p, digests, n) < 0)
                return read_error(st, -ENOMEM, what, err);
        struct fingerprints f = { .id = id, .p = &p, .cb = cb, .userdata = userdata };
        return run_op(st, what, false, fingerprints_op, &f, err);
}

/* A read of scoring records: which of the (sorted) digests it delivered,
 * besides the caller's callback. */
struct scoring_read {
        const uint8_t *digests;
        size_t n;
        bool *delivered;
        mp_store_record_cb cb;
        void *userdata;
};

static int scoring_row(const uint8_t *digest, const uint8_t *record, size_t len, void *userdata) {
        struct scoring_read *sr = userdata;
        const uint8_t *at = bsearch(digest, sr->digests, sr->n, MP_STORE_DIGEST_SIZE, mp_store_digest_cmp);
        if (at)
                sr->delivered[(size_t) (at - sr->digests) / MP_STORE_DIGEST_SIZE] = true;
        return sr->cb(digest, record, len, sr->userdata);
}

/* The scoring records of the digests, then the full records of those that
 * have none. */
static int read_scoring_records(pg_store *st, const uint8_t *digests, size_t n, mp_store_record_cb cb,
                                void *userdata, mp_error *err) {
        _cleanup_(freep) bool *delivered = calloc(n, sizeof(*delivered));
        _cleanup_(freep) uint8_t *missing = malloc(n * MP_STORE_DIGEST_SIZE);
        if (!delivered || !missing)
                return read_error(st, -ENOMEM, "reading fingerprints", err);
        struct scoring_read sr = { .digests = digests, .n = n, .delivered = delivered, .cb = cb,
                                   .userdata = userdata };
        int r = read_records(st, ST_SCORING_RECORDS, digests, n, scoring_row, &sr, err);
        if (r < 0)
                return r;
        size_t n_missing = 0;
        for (size_t i = 0; i < n; i++)
                if (!delivered[i])
                        memcpy(missing + n_missing++ * MP_STORE_DIGEST_SIZE, digests + i * MP_STORE_DIGEST_SIZE,
                               MP_STORE_DIGEST_SIZE);
        return n_missing ? read_records(st, ST_FINGERPRINTS, missing, n_missing, cb, userdata, err) : 0;
}

static int pg_fingerprints(mp_store *s, const uint8_t *digests, size_t n, bool scoring, mp_store_record_cb cb,
                           void *userdata, mp_error *err) {
        pg_store *st = impl(s);
        assert(n > 0);          /* store.c: sorted, distinct, at least one */
        return scoring ? read_scoring_records(st, digests, n, cb, userdata, err)
                       : read_records(st, ST_FINGERPRINTS, digests, n, cb, userdata, err);
}

/* A caller's callback over fingerprint rows, with the record decoded into
 * a buffer reused from row to row. */
struct fingerprint_rows {
        mp_store_fingerprint_cb cb;
        void *userdata;
        uint8_t *record;
        size_t allocated;
};

/* A row of (digest, name, format, arch_hash, family_hash, params,
 * n_tensors, hidden_size, num_layers, vocab_size, has_weights, record), or
 * of (digest, record) only. */
static int fingerprint_row(pg_store *st, const PGresult *res, int row, void *userdata, const char *what,
                           mp_error *err) {
        struct fingerprint_rows *rows = userdata;
        bool full = PQnfields(res) == 12;
        uint8_t digest[MP_STORE_DIGEST_SIZE];
        int64_t has_weights = 0;
        mp_store_fingerprint_info info = { .digest = digest };

        int r = value_digest(res, row, 0, digest);
        if (r >= 0 && full) {
                info.name = value_text(res, row, 1);
                info.format = value_text(res, row, 2);
                info.arch_hash = value_text(res, row, 3);
                info.family_hash = value_text(res, row, 4);
                if (!info.name || !info.format)
                        r = -EBADMSG;
                if (r >= 0)
                        r = value_u64(res, row, 5, &info.params);
                if (r >= 0)
                        r = value_u64(res, row, 6, &info.n_tensors);
                if (r >= 0)
                        r = value_u64(res, row, 7, &info.structure.hidden_size);
                if (r >= 0)
                        r = value_u64(res, row, 8, &info.structure.num_layers);
                if (r >= 0)
                        r = value_u64(res, row, 9, &info.structure.vocab_size);
                if (r >= 0)
                        r = value_i64(res, row, 10, &has_weights);
                info.structure.has_weights = has_weights != 0;
        }
        if (r >= 0)
                r = value_bytes(res, row, full ? 11 : 1, &rows->record, &rows->allocated, &info.record_len);
        if (r < 0)
                return read_error(st, r, what, err);
        info.record = rows->record;

        st->delivered = true;           /* from here on, running again would repeat rows */
        return rows->cb(&info, rows->userdata);
}

struct cursor_query {
        const char *sql;
        const pg_params *p;
        const char *what;
        struct fingerprint_rows rows;
};

static int cursor_op(pg_store *st, void *userdata, mp_error *err) {
        struct cursor_query *q = userdata;
        return cursor_rows(st, q->sql, q->p, fingerprint_row, &q->rows, q->what, err);
}

static int pg_foreach_fingerprint(mp_store *s, const mp_store_fingerprint_filter *f, mp_store_fingerprint_cb cb,
                                  void *userdata, mp_error *err) {
        /* Only the conditions that apply, so that the planner sees each
         * index it can use. */
        pg_params p = {};
        char sql[768];
        int n = snprintf(sql, sizeof(sql),
                         "SELECT digest, name, format, arch_hash, family_hash, params, n_tensors, hidden_size,"
                         " num_layers, vocab_size, has_weights, record FROM fingerprints WHERE params >= $%d::bigint",
                         param_int(&p, (int64_t) f->min_params));
        if (f->max_params)
                n += snprintf(sql + n, sizeof(sql) - n, " AND params <= $%d::bigint",
                              param_int(&p, (int64_t) f->max_params));
        if (f->arch_hash)
                n += snprintf(sql + n, sizeof(sql) - n, " AND arch_hash = $%d", param_text(&p, f->arch_hash));
        if (f->family_hash)
                n += snprintf(sql + n, sizeof(sql) - n, " AND family_hash = $%d", param_text(&p, f->family_hash));
        if (f->hidden_size)
                n += snprintf(sql + n, sizeof(sql) - n, " AND hidden_size = $%d::bigint",
                              param_int(&p, (int64_t) f->hidden_size));
        snprintf(sql + n, sizeof(sql) - n, " ORDER BY digest");

        struct cursor_query q = { .sql = sql, .p = &p, .what = "reading fingerprints",
                                  .rows = { .cb = cb, .userdata = userdata } };
        int r = run_op(impl(s), q.what, true, cursor_op, &q, err);
        free(q.rows.record);
        return r;
}

static int pg_unindexed(mp_store *s, size_t max, mp_store_fingerprint_cb cb, void *userdata, mp_error *err) {
        pg_params p = {};
        param_int(&p, (int64_t) (max < INT64_MAX ? max : INT64_MAX));
        struct cursor_query q = {
                .sql = "SELECT digest, record FROM fingerprints WHERE indexed = 0 ORDER BY digest LIMIT $1::bigint",
                .p = &p, .what = "re-indexing fingerprints", .rows = { .cb = cb, .userdata = userdata } };
        int r = run_op(impl(s), q.what, true, cursor_op, &q, err);
        free(q.rows.record);
        return r;
}

struct set_index {
        const mp_store_fp_index *items;
        size_t n;
};

static int set_index_tx(pg_store *st, void *userdata, mp_error *err) {
        struct set_index *si = userdata;
        const char *what = "re-indexing fingerprints";
        for (size_t i = 0; i < si->n; i++) {
                _cleanup_(params_freep) pg_params p = {};
                param_bytes(&p, si->items[i].digest, MP_STORE_DIGEST_SIZE);
                param_structure(&p, &si->items[i].fp.structure);
                if (param_int_array(&p, si->items[i].fp.keys, si->items[i].fp.n_keys) < 0)
                        return read_error(st, -ENOMEM, what, err);
                param_scoring(&p, &si->items[i].fp);
                int r = exec_stmt(st, ST_FP_SET_INDEX, &p, false, NULL, what, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int pg_set_index(mp_store *s, const mp_store_fp_index *items, size_t n, mp_error *err) {
        struct set_index si = { .items = items, .n = n };
        return run_op(impl(s), "re-indexing fingerprints", true, set_index_tx, &si, err);
}

/* ---- blast-radius pre-filter -------------------------------------------- */

struct candidates {
        const pg_params *p;
        const uint8_t *exclude;
        uint8_t *d;
        size_t n, allocated;
};

static int candidate_row(pg_store *st, const PGresult *res, int row, void *userdata, const char *what,
                         mp_error *err) {
        struct candidates *c = userdata;
        uint8_t d[MP_STORE_DIGEST_SIZE];
        if (value_digest(res, row, 0, d) < 0)
                return read_error(st, -EBADMSG, what, err);
        if (c->exclude && memcmp(d, c->exclude, MP_STORE_DIGEST_SIZE) == 0)
                return 0;
        if (mp_grow((void **) &c->d, &c->allocated, c->n + 1, MP_STORE_DIGEST_SIZE) < 0)
                return read_error(st, -ENOMEM, what, err);
        memcpy(c->d + c->n * MP_STORE_DIGEST_SIZE, d, MP_STORE_DIGEST_SIZE);
        c->n++;
        return 0;
}

static int candidates_op(pg_store *st, void *userdata, mp_error *err) {
        struct candidates *c = userdata;
        c->n = 0;
        return stream_rows(st, ST_CANDIDATES, c->p, candidate_row, c, "selecting blast-radius candidates", err);
}

static int pg_candidates(mp_store *s, const mp_store_structure *structure, const uint64_t *keys, size_t n_keys,
                         const uint8_t *exclude, uint8_t **ret, size_t *ret_n, mp_error *err) {
        pg_store *st = impl(s);
        const char *what = "selecting blast-radius candidates";
        /* The structure's hidden size and the unknown one (0); with hidden
         * size 0, only the unknown. */
        uint64_t hidden[2] = { structure ? structure->hidden_size : 0, 0 };
        size_t n_hidden = !structure ? 0 : hidden[0] ? 2 : 1;
        _cleanup_(params_freep) pg_params p = {};
        if (param_int_array(&p, hidden, n_hidden) < 0 || param_int_array(&p, keys, n_keys) < 0)
                return read_error(st, -ENOMEM, what, err);

        struct candidates c = { .p = &p, .exclude = exclude };
        int r = run_op(st, what, false, candidates_op, &c, err);
        if (r < 0 || c.n == 0) {
                free(c.d);
                c.d = NULL;
        }
        if (r < 0)
                return r;
        *ret = c.d;
        *ret_n = c.n;
        return 0;
}

/* ---- catalog distribution ----------------------------------------------- */

struct catalog {
        const uint8_t *bytes;
        size_t len;
        const char *version;
        int64_t now;
        /* get */
        bool with_data;
        char version_out[MP_STORE_CATALOG_VERSION_SIZE];
        uint8_t *data;
};

static int put_catalog_tx(pg_store *st, void *userdata, mp_error *err) {
        struct catalog *c = userdata;
        pg_params p = {};
        param_text(&p, c->version);
        param_int(&p, c->now);
        param_bytes(&p, c->bytes, c->len);
        return exec_stmt(st, ST_CATALOG_PUT, &p, false, NULL, "storing the catalog", err);
}

static int pg_put_catalog(mp_store *s, const uint8_t *bytes, size_t len, const char *version, int64_t now,
                          mp_error *err) {
        struct catalog c = { .bytes = bytes, .len = len, .version = version, .now = now };
        return run_op(impl(s), "storing the catalog", true, put_catalog_tx, &c, err);
}

/* Binary results (see the top): the version comes raw, checked as hex. */
static int get_catalog_op(pg_store *st, void *userdata, mp_error *err) {
        struct catalog *c = userdata;
        const char *what = "reading the catalog";
        pg_params p = {};
        _cleanup_(pqclearp) PGresult *res = NULL;
        int r = exec_stmt(st, c->with_data ? ST_CATALOG_GET : ST_CATALOG_VERSION, &p, c->with_data, &res, what, err);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0) {
                st->failure = FAIL_OTHER;
                return mp_error_set(err, -ENOENT, st->where, -1, "no catalog has been uploaded");
        }
        const char *v = PQgetvalue(res, 0, 0);
        if (PQgetisnull(res, 0, 0) || PQgetlength(res, 0, 0) != MP_STORE_CATALOG_VERSION_SIZE - 1 ||
            !mp_is_lower_hex(v, MP_STORE_CATALOG_VERSION_SIZE - 1))
                return read_error(st, -EBADMSG, what, err);
        memcpy(c->version_out, v, MP_STORE_CATALOG_VERSION_SIZE - 1);
        c->version_out[MP_STORE_CATALOG_VERSION_SIZE - 1] = 0;
        if (!c->with_data)
                return 0;
        free(c->data);
        c->data = NULL;
        r = value_raw_dup(res, 0, 1, &c->data, &c->len);
        return r < 0 ? read_error(st, r, what, err) : 0;
}

static int pg_get_catalog(mp_store *s, uint8_t **ret, size_t *len, char version_out[MP_STORE_CATALOG_VERSION_SIZE],
                          mp_error *err) {
        struct catalog c = { .with_data = ret != NULL };
        int r = run_op(impl(s), "reading the catalog", false, get_catalog_op, &c, err);
        if (r < 0) {
                free(c.data);
                return r;
        }
        memcpy(version_out, c.version_out, MP_STORE_CATALOG_VERSION_SIZE);
        if (ret) {
                *ret = c.data;
                *len = c.len;
        }
        return 0;
}

const mp_store_engine mp_store_postgres_engine = {
        .scheme = "postgresql",
        .alias = "postgres",
        .open = pg_open,
        .open_another = pg_open_another,
        .close = pg_close,
        .schema_version = pg_schema_version,
        .enroll = pg_enroll,
        .host_key_hash = pg_host_key_hash,
        .heartbeat = pg_heartbeat,
        .ingest = pg_ingest,
        .hosts = pg_hosts,
        .inventory = pg_inventory,
        .history = pg_history,
        .fingerprint = pg_fingerprint,
        .fingerprints = pg_fingerprints,
        .locations_of = pg_locations_of,
        .find_hosts = pg_find_hosts,
        .inventory_at = pg_inventory_at,
        .foreach_fingerprint = pg_foreach_fingerprint,
        .candidates = pg_candidates,
        .unindexed = pg_unindexed,
        .set_index = pg_set_index,
        .put_catalog = pg_put_catalog,
        .get_catalog = pg_get_catalog,
};
