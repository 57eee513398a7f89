#!/bin/bash
# Collector ingest benchmark (see collector_load.py): 100 simulated agents on
# loopback against a collector with a temporary SQLite store; prints model
# reports per second, the Heartbeat RPC rate as reference, and their ratio.
# BUILD=DIR picks the build directory (default build/, built if missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD:-build}
if [ ! -x "$build/collector/modelprov-collector" ] || [ ! -x "$build/cli/modelprov" ]; then
        [ "$build" = build ] && ./scripts/setup.sh
fi
export MODELPROV_BIN="$PWD/$build/cli/modelprov"
export MODELPROV_COLLECTOR_BIN="$PWD/$build/collector/modelprov-collector"
export MODELPROV_SOURCE_ROOT="$PWD"
# Debian's grpc for Python is only in the system interpreter.
exec /usr/bin/python3 tests/bench/collector_load.py "$@"
