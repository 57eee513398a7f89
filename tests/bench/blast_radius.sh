#!/bin/bash
# Blast-radius benchmark (see blast_radius.c): builds the bench program in
# $MODELPROV_BUILD (default build/), fills a store with 100,000 fingerprints
# from 1,000 hosts (about 3.5 GB under $TMPDIR, removed afterwards unless
# --store FILE is given) and prints blast-radius latencies next to their
# references.  Arguments go to the program: --fingerprints N, --hosts N,
# --families N, --threads N, --store FILE [--reuse], --zoo DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${MODELPROV_BUILD:-build}
if [ ! -d "$build" ]; then
        if [ "$build" = build ]; then ./scripts/setup.sh; else meson setup "$build"; fi
fi
ninja -C "$build" tests/bench_blast_radius >/dev/null
export MODELPROV_ZOO=${MODELPROV_ZOO:-$PWD/../shared/zoo}
exec "$build/tests/bench_blast_radius" "$@"
