#!/bin/bash
# Collector fleet load and fault test (see collector_fleet.py): two collector
# instances sharing one PostgreSQL database (a private server started by
# tests/postgres/pg_server.py for this run), 1,000 simulated agents, one
# instance SIGKILLed mid-stream; prints ingest rate, ack latency, failover
# time and checks in the database that no event was lost or stored twice
# (exit 1 if one was).  Arguments go to the script (--agents, --models,
# --batch, --procs, --keep, ...; --engine sqlite runs both instances on one
# SQLite file instead).  BUILD=DIR picks the build directory (default
# build/); the collector and the CLI are built there first.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD:-build}
if [ ! -d "$build" ]; then
        if [ "$build" = build ]; then ./scripts/setup.sh; else meson setup "$build"; fi
fi
ninja -C "$build" collector/modelprov-collector cli/modelprov >/dev/null
export MODELPROV_BIN="$PWD/$build/cli/modelprov"
export MODELPROV_COLLECTOR_BIN="$PWD/$build/collector/modelprov-collector"
export MODELPROV_SOURCE_ROOT="$PWD"
export MODELPROV_ZOO=${MODELPROV_ZOO:-$PWD/../shared/zoo}
keep=()
for a in "$@"; do [ "$a" = --keep ] && keep=(--keep); done
# Debian's grpc for Python is only in the system interpreter.
exec /usr/bin/python3 tests/postgres/pg_server.py "${keep[@]}" -- \
        /usr/bin/python3 tests/bench/collector_fleet.py "$@"
