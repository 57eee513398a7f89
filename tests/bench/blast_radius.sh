#!/bin/bash
# Blast-radius benchmark (see blast_radius.c): builds the bench program in
# $MODELPROV_BUILD (default build/), fills a store with 100,000 fingerprints
# from 1,000 hosts and prints the fill time and blast-radius latencies next
# to their references.  Arguments go to the program: --fingerprints N,
# --hosts N, --families N, --locations L ((host, path) rows per fingerprint;
# --locations 10 is the fleet of issue 7: 1,000,000 rows), --threads N,
# --store FILE|sqlite:FILE|postgresql://... [--reuse], --zoo DIR.
#
# Without --store the store is a temporary SQLite file under $TMPDIR
# (about 3.5 GB at the default size), removed afterwards.  --postgres runs
# the program against an empty database on a private PostgreSQL server
# (tests/postgres/pg_server.py, removed afterwards) and prints the
# database's size at the end.  The server's shared_buffers is
# $BENCH_PG_SHARED_BUFFERS, by default 4GB: as docs/scaling.md advises, room
# for the scoring records (1.6 GB at the default size); 128MB is
# PostgreSQL's default.
set -euo pipefail
cd "$(dirname "$0")/../.."
postgres=false
args=()
for a in "$@"; do
        if [ "$a" = --postgres ]; then postgres=true; else args+=("$a"); fi
done
if $postgres && [ -z "${MODELPROV_TEST_PG:-}" ]; then
        # Again, beside a server of its own (pg_server.py sets MODELPROV_TEST_PG).
        exec /usr/bin/python3 tests/postgres/pg_server.py --shared-buffers "${BENCH_PG_SHARED_BUFFERS:-4GB}" \
                -- "$0" "$@"
fi

build=${MODELPROV_BUILD:-build}
if [ ! -d "$build" ]; then
        if [ "$build" = build ]; then ./scripts/setup.sh; else meson setup "$build"; fi
fi
ninja -C "$build" tests/bench_blast_radius >/dev/null
export MODELPROV_ZOO=${MODELPROV_ZOO:-$PWD/../shared/zoo}
bench="$build/tests/bench_blast_radius"
if ! $postgres; then
        exec "$bench" "${args[@]}"
fi

# MODELPROV_TEST_PG is a libpq conninfo: "host=H port=P user=U dbname=D".
declare -A pg
for kv in $MODELPROV_TEST_PG; do pg[${kv%%=*}]=${kv#*=}; done
db=blast_radius
psql "$MODELPROV_TEST_PG" -qAtc "CREATE DATABASE $db"
status=0
"$bench" --store "postgresql://${pg[user]}@${pg[host]}:${pg[port]}/$db" "${args[@]}" || status=$?
echo "database size: $(psql "$MODELPROV_TEST_PG" -qAtc "SELECT pg_size_pretty(pg_database_size('$db'))")"
exit $status
