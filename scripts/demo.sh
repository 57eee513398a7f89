#!/bin/bash
# The main job, from a fresh Debian 12 machine: set up, build, then inspect,
# fingerprint, compare and scan sample models (the zoo's, or generated ones
# when the zoo is not beside the checkout), and ask a collector on loopback
# where a model and its derivatives are held.
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
echo "The collector: three simulated hosts report models; where is $base, or anything made from it?"
for s in enroll query admin; do
        head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$tmpd/$s"
        chmod 600 "$tmpd/$s"
done
build/collector/modelprov-collector --config /dev/null --listen 127.0.0.1:0 --insecure-loopback \
        --store "sqlite:$tmpd/collector.db" --enroll-secret-file "$tmpd/enroll" \
        --query-token-file "$tmpd/query" --admin-token-file "$tmpd/admin" 2> "$tmpd/collector.log" &
collector=$!
trap 'kill $collector 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "listening on" "$tmpd/collector.log" && break; sleep 0.1; done
addr=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$tmpd/collector.log")
for m in "$base" "$derived" "$other"; do
        "$mp" fingerprint -q -o "$tmpd/$(basename "$m").fp" "$m"
done
fp() { echo "$tmpd/$(basename "$1").fp"; }
/usr/bin/python3 scripts/demo_fleet.py "$addr" "$tmpd/enroll" \
        "gpu-a=$(fp "$base"),$(fp "$other")" "gpu-b=$(fp "$derived")" "gpu-c=$(fp "$other")"
q=(--collector "$addr" --token-file "$tmpd/query" --insecure-loopback)
echo "\$ modelprov catalog push $cat --collector $addr"
"$mp" catalog push "$cat" --collector "$addr" --token-file "$tmpd/admin" --insecure-loopback
echo "\$ modelprov query hosts"
"$mp" query hosts "${q[@]}"
echo "\$ modelprov query inventory"
"$mp" query inventory "${q[@]}"
echo "\$ modelprov query blast-radius --model $base"
"$mp" query blast-radius --model "$base" "${q[@]}" -q
kill "$collector"
wait "$collector" || true
trap - EXIT
rm -rf "$tmpd"
