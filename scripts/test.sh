#!/bin/bash
# Every test, from a fresh Debian 12 machine: set up, then run the suite in a
# normal build, the collector's tests again on PostgreSQL, the suite in an
# AddressSanitizer + UndefinedBehaviorSanitizer build,
# a short libFuzzer run of every parser, and the package test (build the
# .debs, lintian, install them here, run both daemons from the installed
# units, remove and purge).  Ends with one line "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

export MODELPROV_REQUIRE_ZOO=${MODELPROV_REQUIRE_ZOO:-$([ -d ../shared/zoo ] && echo 1 || echo 0)}
werror=false
[ "${CI:-}" = true ] && werror=true

passed=0
failed=0
count() {       # count LOGDIR [SETUP]: add meson's results to the totals
        local log=$1/meson-logs/testlog${2:+-$2}.json
        [ -f "$log" ] || return 0
        passed=$((passed + $(grep -c '"result": "OK"' "$log" || true)))
        failed=$((failed + $(grep -c -E '"result": "(FAIL|TIMEOUT|ERROR|UNEXPECTEDPASS)"' "$log" || true)))
}

status=0
echo "== normal build"
meson test -C build --print-errorlogs --num-processes 2 || status=1
count build

echo "== the collector's tests on PostgreSQL (a private server per test program)"
meson test -C build --setup postgres --suite collector --print-errorlogs --num-processes 2 || status=1
count build postgres

echo "== sanitizer build (ASan + UBSan, halt on error)"
if [ ! -d build-asan ]; then
        meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dwerror="$werror"
fi
ninja -C build-asan
meson test -C build-asan --print-errorlogs --num-processes 2 || status=1
count build-asan

echo "== fuzz smoke"
if ./scripts/fuzz.sh "${FUZZ_SECONDS:-60}"; then
        passed=$((passed + 1))
else
        failed=$((failed + 1))
        status=1
fi

echo "== packages (README \"Install on a fleet\": build, install, run, purge)"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo --preserve-env=MODELPROV_PACKAGE_CHECK"
if $SUDO python3 tests/package/install_test.py; then
        passed=$((passed + 1))
else
        failed=$((failed + 1))
        status=1
fi

echo "tests: $passed passed, $failed failed"
exit $status
