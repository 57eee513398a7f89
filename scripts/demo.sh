#!/bin/bash
# The main job, from a fresh Debian 12 machine: set up, build, then inspect,
# fingerprint, compare and scan sample models (the zoo's, or generated ones
# when the zoo is not beside the checkout); then the whole system on one
# machine: a collector and the host agent on loopback, models put into the
# agent's watched directory, the fleet inventory and a blast-radius query,
# the HTML reports of both (build/demo/), and both stopped cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

mp=build/cli/modelprov
zoo=../shared/zoo
samples=()
if [ -d "$zoo" ]; then
        samples=("$zoo/llama/base-1" "$zoo/llama/base-1-q4_0/model-q4_0.gguf" "$zoo/gpt2/base-1-pt"
                 "$zoo/hub/models--zoo--llama-chained")
else
        echo "demo: zoo missing ($zoo): using a generated sample model"
        tmp=$(mktemp -d)
        python3 tests/gen/make_model.py --out "$tmp/sample" --hidden 64 --layers 2 --vocab 512
        samples=("$tmp/sample")
fi

for s in "${samples[@]}"; do
        echo "================================================================"
        echo "\$ modelprov inspect $s"
        "$mp" inspect "$s"
done
echo "================================================================"
echo "\$ modelprov fingerprint --json ${samples[0]} (first lines)"
# Through a file: with pipefail, head closing the pipe early would fail the demo.
"$mp" fingerprint --json "${samples[0]}" > /tmp/modelprov-demo.json
head -40 /tmp/modelprov-demo.json
echo "..."
"$mp" fingerprint -o /tmp/modelprov-demo.fp "${samples[0]}" && \
        echo "binary record: /tmp/modelprov-demo.fp ($(stat -c %s /tmp/modelprov-demo.fp) bytes)"

echo "================================================================"
tmpd=$(mktemp -d)
if [ -d "$zoo" ]; then
        base=$zoo/llama/base-1 derived=$zoo/llama/sft-light-q4_0 other=$zoo/llama/base-2
        bases=("$zoo/llama/base-1" "$zoo/llama/base-2" "$zoo/gpt2/base-1" "$zoo/gpt2/base-2")
else
        # same seed = same weights (F16, then cast to BF16); another seed = an unrelated model
        python3 tests/gen/make_model.py --out "$tmpd/a" --hidden 64 --layers 2 --vocab 512 --values normal --seed 1 >/dev/null
        python3 tests/gen/make_model.py --out "$tmpd/a-bf16" --hidden 64 --layers 2 --vocab 512 --values normal --seed 1 --dtype BF16 >/dev/null
        python3 tests/gen/make_model.py --out "$tmpd/b" --hidden 64 --layers 2 --vocab 512 --values normal --seed 2 >/dev/null
        base=$tmpd/a derived=$tmpd/a-bf16 other=$tmpd/b
        bases=("$tmpd/a" "$tmpd/b")
fi
echo "\$ modelprov compare $base $derived"
"$mp" compare -q "$base" "$derived"
echo "================================================================"
echo "\$ modelprov compare $base $other"
"$mp" compare -q "$base" "$other"
echo "================================================================"
echo "\$ modelprov diff $base $derived (last lines)"
"$mp" diff -q "$base" "$derived" > "$tmpd/diff.txt" || true
tail -4 "$tmpd/diff.txt"
echo "================================================================"
cat="$tmpd/refs.db"
for b in "${bases[@]}"; do
        "$mp" catalog add -q "$cat" "$b" --name "$(basename "$(dirname "$b")")/$(basename "$b")" --label source=demo >/dev/null
done
if [ -d ../shared/provenancekit-db ]; then
        echo "\$ modelprov catalog import $cat ../shared/provenancekit-db"
        "$mp" catalog import "$cat" ../shared/provenancekit-db
fi
echo "\$ modelprov scan $derived --catalog $cat"
"$mp" scan -q "$derived" --catalog "$cat"

echo "================================================================"
echo "The whole system on this machine: modelprov-collector and modelprovd on loopback."
for s in enroll query admin; do
        head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$tmpd/$s"
        chmod 600 "$tmpd/$s"
done
build/collector/modelprov-collector --config /dev/null --listen 127.0.0.1:0 --insecure-loopback \
        --store "sqlite:$tmpd/collector.db" --enroll-secret-file "$tmpd/enroll" \
        --query-token-file "$tmpd/query" --admin-token-file "$tmpd/admin" 2> "$tmpd/collector.log" &
collector=$!
agent=
cleanup() { kill $collector $agent 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do grep -q "listening on" "$tmpd/collector.log" && break; sleep 0.1; done
addr=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$tmpd/collector.log")
echo "collector: listening on $addr, store $tmpd/collector.db"

models=$tmpd/models
mkdir -p "$models"
echo "\$ modelprovd --watch $models --collector $addr --insecure-loopback ..."
build/agent/modelprovd --config /dev/null --watch "$models" --state-dir "$tmpd/agent" --settle 0.5 \
        --collector "$addr" --enroll-secret-file "$tmpd/enroll" --insecure-loopback 2> "$tmpd/agent.log" &
agent=$!
for _ in $(seq 100); do grep -q "modelprovd: ready" "$tmpd/agent.log" && break; sleep 0.1; done

# A base model, a fine-tune-like derivative and a quantized copy of it.
if [ -d "$zoo" ]; then
        cp -r "$zoo/llama/base-1" "$models/base"
        cp -r "$zoo/llama/sft-light" "$models/finetune"
        mkdir "$models/quantized" && cp "$zoo/llama/base-1-q4_0/model-q4_0.gguf" "$models/quantized/"
else
        # Written outside, then renamed in, as a downloader does.
        python3 tests/gen/make_model.py --out "$tmpd/new-base" --hidden 64 --layers 2 --vocab 512 --values normal --seed 1 >/dev/null
        python3 tests/gen/perturb_model.py "$tmpd/new-base" "$tmpd/new-finetune"
        python3 tests/gen/make_model.py --out "$tmpd/new-quantized" --hidden 64 --layers 2 --vocab 512 --values normal --seed 1 --dtype F8_E4M3 >/dev/null
        for m in base finetune quantized; do mv "$tmpd/new-$m" "$models/$m"; done
fi
echo "put into $models: base, finetune, quantized"
agent_done() {
        "$mp" status --state-dir "$tmpd/agent" --json | /usr/bin/python3 -c \
                'import json,sys; s=json.load(sys.stdin); sys.exit(not (len(s["models"]) == 3 and s["outbox"]["events"] == 0))'
}
for _ in $(seq 600); do agent_done && break; sleep 0.2; done
echo "\$ modelprov status --state-dir $tmpd/agent"
"$mp" status --state-dir "$tmpd/agent"

# Two more hosts of the fleet, simulated, so that the blast radius has
# somewhere else to look.
for m in "$base" "$derived" "$other"; do
        "$mp" fingerprint -q -o "$tmpd/$(basename "$m").fp" "$m"
done
fp() { echo "$tmpd/$(basename "$1").fp"; }
/usr/bin/python3 scripts/demo_fleet.py "$addr" "$tmpd/enroll" "gpu-b=$(fp "$derived")" "gpu-c=$(fp "$other")"
q=(--collector "$addr" --token-file "$tmpd/query" --insecure-loopback)
echo "\$ modelprov catalog push $cat --collector $addr"
"$mp" catalog push "$cat" --collector "$addr" --token-file "$tmpd/admin" --insecure-loopback
echo "\$ modelprov query hosts"
"$mp" query hosts "${q[@]}"
echo "\$ modelprov query inventory"
"$mp" query inventory "${q[@]}"
echo "\$ modelprov query blast-radius --model $models/base"
"$mp" query blast-radius --model "$models/base" "${q[@]}" -q
mkdir -p build/demo
echo "\$ modelprov report inventory -o build/demo/inventory.html"
"$mp" report inventory "${q[@]}" -o build/demo/inventory.html
echo "\$ modelprov report blast-radius $models/base -o build/demo/incident.html (and --format md)"
"$mp" report blast-radius "$models/base" "${q[@]}" -q -o build/demo/incident.html
"$mp" report blast-radius "$models/base" "${q[@]}" -q --format md | awk '/^## /{p = /^## Affected/} p'
echo "reports: $PWD/build/demo/inventory.html, $PWD/build/demo/incident.html (self-contained: open them in any browser)"
echo "stopping modelprovd and the collector"
kill -TERM "$agent" && wait "$agent"
kill -TERM "$collector" && wait "$collector"
trap - EXIT
rm -rf "$tmpd"
