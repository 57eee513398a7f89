#!/usr/bin/env python3
"""Writes a fine-tune-like copy of a model directory made by make_model.py
(--values normal, F16): every matrix gets N(0, noise) added (the weights
themselves are N(0, 0.02)), vectors stay.  Standard library only; used by
tests and the demo."""
import argparse
import json
import random
import shutil
import struct


def perturb_model(src, out, noise=0.004, seed=5):
    shutil.copytree(src, out)
    path = out + "/model.safetensors"
    rng = random.Random(seed)
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        for name, meta in header.items():
            if name == "__metadata__" or len(meta["shape"]) != 2:
                continue
            if meta["dtype"] != "F16":
                raise SystemExit(f"{name}: expected F16, got {meta['dtype']}")
            begin, end = meta["data_offsets"]
            f.seek(8 + n + begin)
            vals = struct.unpack(f"<{(end - begin) // 2}e", f.read(end - begin))
            f.seek(8 + n + begin)
            f.write(struct.pack(f"<{len(vals)}e", *(v + noise * rng.gauss(0, 1) for v in vals)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--noise", type=float, default=0.004)
    ap.add_argument("--seed", type=int, default=5)
    a = ap.parse_args()
    perturb_model(a.src, a.out, a.noise, a.seed)


if __name__ == "__main__":
    main()
