#!/bin/bash
# Signal benchmarks (see signals.py): builds modelprov if needed, then prints
# fingerprint/openssl on a 2 GiB file, compare of two stored fingerprints and
# scan against a 1,000-entry catalog.  Needs ~5 GiB in --dir; a few minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x build/cli/modelprov ] || ./scripts/setup.sh
exec python3 tests/bench/signals.py "$@"
