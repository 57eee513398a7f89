#!/usr/bin/env python3
"""The fingerprint record stays under 256 KiB for a 70B-class shape: 80
layers, hidden size 8192, vocabulary 32000 (issue 3).

The model is generated sparse (safetensors header written, data left as a
hole) in F8_E4M3, so it takes no disk blocks; its weight values do not matter
for the size, only the tensor count, names and shapes do.  The MLP
intermediate size is set to the hidden size to keep the apparent size (and
the time to read the holes) down; the tensor count is the same.  Needs a
filesystem with sparse files (checked with a probe first); the temp dir lives
next to the build, on the same filesystem."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from testenv import BIN, ROOT  # noqa: E402
LIMIT = 256 * 1024
LAYERS, HIDDEN, VOCAB = 80, 8192, 32000
TENSORS = 1 + 9 * LAYERS + 2        # embeddings, 9 per layer, final norm, lm_head
SKIP = 77                           # meson: test skipped


def sparse_supported(d):
    """True if a 64 MiB truncated file takes (almost) no blocks in d."""
    probe = os.path.join(d, "probe")
    with open(probe, "wb") as f:
        f.truncate(64 << 20)
    blocks = os.stat(probe).st_blocks * 512
    os.unlink(probe)
    return blocks < (1 << 20)


def main():
    build = os.path.dirname(os.path.dirname(os.path.abspath(BIN)))
    with tempfile.TemporaryDirectory(prefix="record-size-", dir=build) as tmp:
        if not sparse_supported(tmp):
            free = shutil.disk_usage(tmp).free
            print(f"the filesystem of {tmp} does not support sparse files ({free >> 30} GiB free; "
                  f"the model would need ~36 GiB of real blocks); record size not checked")
            return SKIP
        model = os.path.join(tmp, "m")
        subprocess.run([sys.executable, os.path.join(ROOT, "tests/gen/make_model.py"), "--out", model,
                        "--sparse", "--dtype", "F8_E4M3", "--hidden", str(HIDDEN), "--intermediate", str(HIDDEN),
                        "--layers", str(LAYERS), "--vocab", str(VOCAB), "--tokenizer-vocab", str(VOCAB)],
                       check=True)
        weights = os.path.join(model, "model.safetensors")
        st = os.stat(weights)
        assert st.st_blocks * 512 < (16 << 20), "the generated model is not sparse"

        record = os.path.join(tmp, "m.fp")
        t0 = time.monotonic()
        p = subprocess.run([BIN, "fingerprint", "-q", "--json", "-o", record, model],
                           capture_output=True, text=True)
        elapsed = time.monotonic() - t0
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
            print(f"FAIL: fingerprint exited {p.returncode}")
            return 1
        j = json.loads(p.stdout)
        size = os.path.getsize(record)
        print(f"model: {LAYERS} layers, hidden {HIDDEN}, vocab {VOCAB}, {len(j['tensors'])} tensors, "
              f"{st.st_size / (1 << 30):.1f} GiB apparent (F8_E4M3, sparse)")
        print(f"record: {size} bytes ({size / 1024:.1f} KiB; limit {LIMIT // 1024} KiB), "
              f"fingerprint took {elapsed:.1f} s")

        failures = []
        if len(j["tensors"]) != TENSORS:
            failures.append(f"record lists {len(j['tensors'])} tensors, expected {TENSORS}")
        if size >= LIMIT:
            failures.append(f"record is {size} bytes, not under {LIMIT}")
        if size < 4096:
            failures.append(f"record is only {size} bytes: per-tensor entries missing?")
        for f in failures:
            print("FAIL: " + f)
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
