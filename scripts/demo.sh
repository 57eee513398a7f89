#!/bin/bash
# The main job, from a fresh Debian 12 machine: set up, build, then inspect
# and fingerprint sample models (the zoo's, or a generated one when the zoo
# is not beside the checkout).
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
