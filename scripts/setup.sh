#!/bin/bash
# Installs the build and test dependencies (Debian 12 packages) and builds
# modelprov into build/.  Safe to run again: apt and meson skip done work.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
        meson ninja-build pkg-config gcc clang libclang-rt-14-dev
        libssl-dev libxxhash-dev libjansson-dev libsqlite3-dev sqlite3
        protobuf-c-compiler libprotobuf-c-dev
        libgrpc-dev libinih-dev libsystemd-dev libpq-dev python3-grpcio python3-grpc-tools
        postgresql python3-psycopg2     # the collector suite on PostgreSQL (tests/postgres)
        python3 coreutils openssl
        libgraphviz-dev         # `modelprov report`'s lineage graph (libgvc: dot layout, SVG)
        chromium fonts-liberation   # tests/integration/test_cli_report.py renders the reports headless
        lintian man-db          # the package test (tests/package); the build
                                # dependencies come from debian/control
)

missing=()
for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO=sudo
        echo "setup: installing ${missing[*]}"
        $SUDO apt-get update -q
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

werror=false
[ "${CI:-}" = true ] && werror=true
if [ ! -d build ]; then
        meson setup build -Dwerror="$werror"
else
        meson configure build -Dwerror="$werror" >/dev/null
fi
ninja -C build
