#!/bin/bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for
# SECONDS (default 60), seeded with the zoo's files and the kept regression
# inputs.  Fails on any crash; a crash input is left in fuzz-corpus-work/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}

if [ ! -d build-fuzz ]; then
        CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
fi
ninja -C build-fuzz

zoo=../shared/zoo
work=fuzz-corpus-work
mkdir -p "$work"

seed() {        # seed TARGET PATTERN...: copy matching zoo files into the corpus
        local dir=$work/$1/seed
        shift
        mkdir -p "$dir"
        [ -d "$zoo" ] || return 0
        for pattern in "$@"; do
                find -L "$zoo" -name "$pattern" -size -4M -exec cp -f {} "$dir/" \; 2>/dev/null || true
        done
}
seed safetensors '*.safetensors'
seed gguf '*.gguf'
seed pickle 'data.pkl'
seed tokenizer 'tokenizer.json' 'tokenizer_config.json'
seed layouts 'refs-main-none'
mkdir -p "$work/features/seed"
pkdb=../shared/provenancekit-db
if [ -d "$pkdb" ]; then
        find "$pkdb/features" -name '*_features.json' -size -256k -exec cp -f -t "$work/features/seed/" {} +
fi
# records: the fingerprints of a few zoo models (built by the normal build)
mkdir -p "$work/record/seed"
if [ -d "$zoo" ] && [ -x build/cli/modelprov ]; then
        for m in llama/base-1 gpt2/base-1-q4_0 llama/vocab-extended; do
                build/cli/modelprov fingerprint -q -o "$work/record/seed/$(echo "$m" | tr / -).fp" "$zoo/$m" || true
        done
fi
# collector requests: the first byte picks the method (Ingest: 0 Enroll,
# 1 Report, 2 Heartbeat, 3 FetchCatalog, 4 PushCatalog; Query: 5 Hosts,
# 6 Inventory, 7 BlastRadius, 8 Model, 9 History); the records above go into
# a report batch and a blast-radius request, hand-encoded protobuf.
mkdir -p "$work/collector/seed"
python3 - "$work/record/seed" "$work/collector/seed" <<'PY'
import hashlib, pathlib, sys
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
def varint(n):
    b = bytearray()
    while True:
        b.append((n & 0x7f) | (0x80 if n > 0x7f else 0))
        n >>= 7
        if not n:
            return bytes(b)
def field(num, payload):        # length-delimited field
    return varint(num << 3 | 2) + varint(len(payload)) + payload
host = field(1, field(1, b"h") + field(2, b"machine-0001") + field(3, b"0.1"))
(out / "enroll").write_bytes(b"\x00" + host)
(out / "history").write_bytes(b"\x09" + field(2, b"/m") + b"\x18\x05")
for i, rec in enumerate(sorted(src.glob("*.fp"))):
    r = rec.read_bytes()
    digest = hashlib.sha256(r).digest()
    event = b"\x08" + varint(i + 1) + b"\x10\x01" + field(4, b"/models/m") + field(5, digest) + field(6, r)
    (out / f"report{i}").write_bytes(b"\x01" + field(1, event))
    (out / f"blast{i}").write_bytes(b"\x07" + field(2, r))
PY

# daemon configs: the shipped ones and a few shapes of keys
mkdir -p "$work/options/seed"
cp -f packaging/agent.conf "$work/options/seed/agent.conf"
cp -f packaging/collector.conf "$work/options/seed/collector.conf"
printf '[agent]\nwatch = /a\nwatch = /b\nsettle = 0.25\nflag = yes\ncount = 7\nlog-level = debug\n' \
        > "$work/options/seed/all-types.conf"

# Torch data.pkl members live inside zip files: extract a few.
if [ -d "$zoo" ]; then
        python3 - "$zoo" "$work/pickle/seed" <<'PY'
import sys, zipfile, pathlib
zoo, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for i, f in enumerate(zoo.rglob("pytorch_model.bin")):
    with zipfile.ZipFile(f) as z:
        for n in z.namelist():
            if n.endswith("data.pkl"):
                (out / f"data{i}.pkl").write_bytes(z.read(n))
PY
fi

# -max_len: seeds are whole zoo files (MiBs); the headers that matter fit in
# 256 KiB, and shorter inputs make the smoke run several times faster.
status=0
for target in safetensors gguf pickle tokenizer layouts record features collector options; do
        corpus=$work/$target/corpus
        mkdir -p "$corpus"
        regressions=tests/fuzz/regressions/$target
        mkdir -p "$work/$target/empty"
        [ -d "$regressions" ] || regressions=$work/$target/empty
        echo "fuzz: $target for ${seconds}s"
        if ! build-fuzz/tests/fuzz_$target -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 -max_len=262144 \
                -artifact_prefix="$work/$target/" -print_final_stats=1 \
                "$corpus" "$work/$target/seed" "$regressions" 2>"$work/$target/log"; then
                echo "fuzz: $target FAILED; see $work/$target/log and crash-* files there"
                tail -40 "$work/$target/log"
                status=1
        else
                grep -E 'stat::number_of_executed_units|Done' "$work/$target/log" | tail -2 || true
        fi
done
exit $status
