#!/bin/bash
# Agent benchmark (see agent.py): restart crawl of 10,000 unchanged files in
# 500 model directories, rename-to-inventory latency, idle CPU over 60 s.
# Prints each number with its reference measured in the same run.
# BUILD=DIR picks the build directory (default build/, built if missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD:-build}
if [ ! -x "$build/agent/modelprovd" ] || [ ! -x "$build/cli/modelprov" ]; then
        [ "$build" = build ] && ./scripts/setup.sh
fi
export MODELPROV_BIN="$PWD/$build/cli/modelprov"
export MODELPROV_COLLECTOR_BIN="$PWD/$build/collector/modelprov-collector"
export MODELPROV_AGENT_BIN="$PWD/$build/agent/modelprovd"
export MODELPROV_SOURCE_ROOT="$PWD"
# Debian's grpc for Python is only in the system interpreter.
exec /usr/bin/python3 tests/bench/agent.py "$@"
