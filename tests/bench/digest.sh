#!/bin/bash
# Digest benchmark (see digest.py): builds modelprov if needed, then prints
# fingerprint/openssl time ratios and peak RSS.  Needs ~9 GiB in --dir.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x build/cli/modelprov ] || ./scripts/setup.sh
exec python3 tests/bench/digest.py "$@"
