#!/usr/bin/python3
"""store_explain.py - the query plans of a filled PostgreSQL collector store.

    store_explain.py postgresql://USER@HOST:PORT/DB

Runs EXPLAIN (ANALYZE, BUFFERS) on the queries the collector's engine
(collector/store_postgres.c) runs for the fleet questions, with parameters
taken from the data itself: the most common hidden size and the tensor keys
of one of its fingerprints (the blast-radius pre-filter), a batch of 256
candidates of that width (their scoring records, and the inventory rows of
all of them: what a blast-radius worker reads per batch), one model digest (where
is it: `query model`), one host and path (a host:path target), one host
(inventory of a host), and the whole present inventory.  Prints each plan with the table
sizes first.  docs/scaling.md quotes its output for a store filled by
tests/bench/blast_radius.sh --postgres.  Reads only."""
import re
import sys

import psycopg2

LOCATION_COLUMNS = ("SELECT i.host_id, h.hostname, i.path, i.model_digest, i.first_seen, i.last_seen, i.present "
                    "FROM inventory i JOIN hosts h ON h.id = i.host_id")


def one(cur, sql, params=()):
    cur.execute(sql, params)
    return cur.fetchone()


def explain(cur, title, sql, params):
    """EXPLAIN ANALYZE of sql (%s placeholders) as the collector runs it: a
    prepared statement, in its generic plan (main() forces it: PostgreSQL
    settles on it after five runs of a statement, and always for those
    taking arrays, whose generic plans look cheaper)."""
    print(f"--- {title}\n{sql}\n")
    numbers = iter(range(1, len(params) + 1))
    cur.execute("PREPARE q AS " + re.sub(r"%s", lambda _: f"${next(numbers)}", sql))
    arguments = " (" + ", ".join(["%s"] * len(params)) + ")" if params else ""
    cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE q" + arguments, params)
    for (line,) in cur.fetchall():
        print("    " + line)
    cur.execute("DEALLOCATE q")
    print()


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    conn = psycopg2.connect(sys.argv[1])
    conn.set_session(readonly=True, autocommit=True)
    cur = conn.cursor()
    cur.execute("SET plan_cache_mode = force_generic_plan")

    print("--- table sizes")
    for table in ("hosts", "fingerprints", "scoring_parts", "tensor_keys", "inventory", "events"):
        rows = one(cur, f"SELECT count(*) FROM {table}")[0]
        size = one(cur, "SELECT pg_size_pretty(pg_total_relation_size(%s))", (table,))[0]
        print(f"    {table:13} {rows:>12,} rows  {size:>10} with indexes")
    print()

    hidden = one(cur, "SELECT hidden_size FROM fingerprints GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")[0]
    digest = one(cur, "SELECT digest FROM fingerprints WHERE hidden_size = %s LIMIT 1", (hidden,))[0]
    cur.execute("SELECT key FROM tensor_keys WHERE digest = %s", (digest,))
    keys = [k for (k,) in cur.fetchall()]
    located = one(cur, "SELECT model_digest FROM inventory GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")[0]
    host = one(cur, "SELECT host_id FROM inventory GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")[0]

    explain(cur, f"blast radius, pre-filter: same width ({hidden}) or a shared tensor ({len(keys)} keys)",
            "SELECT digest FROM fingerprints WHERE hidden_size = ANY (%s::bigint[]) AND has_weights = 1 "
            "UNION SELECT digest FROM tensor_keys WHERE key = ANY (%s::bigint[]) ORDER BY 1",
            ([hidden], keys))
    cur.execute("SELECT digest FROM fingerprints WHERE hidden_size = %s ORDER BY digest LIMIT 256", (hidden,))
    batch = [bytes(d) for (d,) in cur.fetchall()]
    explain(cur, f"blast radius, the scoring records of a batch ({len(batch)} candidates)",
            "SELECT digest, part, parts, record FROM scoring_parts WHERE digest = ANY (%s::bytea[])", (batch,))
    explain(cur, f"blast radius, the inventory rows of a batch's hits ({len(batch)} models)",
            "WITH r AS MATERIALIZED (SELECT i.host_id, i.path, i.model_digest, i.first_seen, i.last_seen,"
            " i.present, coalesce(f.name, '') AS name FROM unnest(%s::bytea[]) AS d(digest)"
            " LEFT JOIN fingerprints f ON f.digest = d.digest JOIN inventory i ON i.model_digest = d.digest),"
            " h AS MATERIALIZED (SELECT h.id, h.hostname FROM (SELECT DISTINCT host_id FROM r) AS u"
            " JOIN hosts h ON h.id = u.host_id)"
            " SELECT r.host_id, h.hostname, r.path, r.model_digest, r.first_seen, r.last_seen, r.present, r.name"
            " FROM r JOIN h ON h.id = r.host_id", (batch,))
    explain(cur, "query model: where a model is",
            LOCATION_COLUMNS + " WHERE i.model_digest = %s ORDER BY i.host_id, i.path, i.first_seen", (located,))
    hostname, path = one(cur, "SELECT h.hostname, i.path FROM inventory i JOIN hosts h ON h.id = i.host_id"
                              " WHERE i.host_id = %s LIMIT 1", (host,))
    explain(cur, "blast radius host:path: the hosts a name names", "SELECT id FROM hosts WHERE id = %s OR hostname = %s"
            " ORDER BY id", (hostname, hostname))
    explain(cur, "blast radius host:path: the rows at the path",
            LOCATION_COLUMNS + " WHERE i.host_id = %s AND i.path = %s ORDER BY i.first_seen, i.model_digest",
            (host, path))
    explain(cur, "inventory of one host",
            LOCATION_COLUMNS + " WHERE i.host_id = %s AND i.present >= 1 ORDER BY i.path, i.first_seen, "
            "i.model_digest", (host,))
    explain(cur, "fleet inventory (present)",
            LOCATION_COLUMNS + " WHERE i.present >= 1 ORDER BY i.host_id, i.path, i.first_seen, i.model_digest",
            ())
    conn.close()


if __name__ == "__main__":
    main()
