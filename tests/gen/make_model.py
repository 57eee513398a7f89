#!/usr/bin/env python3
"""Writes a llama-shaped model directory (safetensors, config.json, a small
tokenizer.json) for tests, the demo and benchmarks.  Standard library only.

Weights are pseudo-random bytes (seeded, so runs are reproducible) except that
--bytes-random uses os.urandom for speed on multi-GiB benchmark files.  The
file is sized by --hidden/--layers/--vocab, or by --target-bytes, which adds
layers until the model reaches that size.

--values normal writes real numbers instead of raw bytes (seeded N(0, 0.02)
matrices, norm weights near 1), rounded to the F16 grid first so that the same
seed gives exactly the same weights in F16 and F32 (and their BF16/F8 casts):
what the lineage tests need for "same weights, other dtype".  --sparse writes
only the header and leaves the data as a hole (truncate), for record-size
checks on huge shapes; F8_E4M3 (1 byte per element) keeps their apparent size
down.
"""
import argparse
import bisect
import json
import math
import os
import random
import struct

DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1}
TORCH_DTYPE = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F8_E4M3": "float8_e4m3fn"}


def tensor_shapes(hidden, layers, vocab, inter):
    shapes = [("model.embed_tokens.weight", [vocab, hidden])]
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes += [
            (p + "input_layernorm.weight", [hidden]),
            (p + "self_attn.q_proj.weight", [hidden, hidden]),
            (p + "self_attn.k_proj.weight", [hidden, hidden]),
            (p + "self_attn.v_proj.weight", [hidden, hidden]),
            (p + "self_attn.o_proj.weight", [hidden, hidden]),
            (p + "post_attention_layernorm.weight", [hidden]),
            (p + "mlp.gate_proj.weight", [inter, hidden]),
            (p + "mlp.up_proj.weight", [inter, hidden]),
            (p + "mlp.down_proj.weight", [hidden, inter]),
        ]
    shapes += [("model.norm.weight", [hidden]), ("lm_head.weight", [vocab, hidden])]
    return shapes


def nbytes(shape, dtype):
    n = DTYPE_BYTES[dtype]
    for d in shape:
        n *= d
    return n


def numel(shape):
    return math.prod(shape)


def _f8_e4m3_table():
    """(sorted finite values, their codes) of FP8 E4M3 "fn": bias 7, no
    infinities, only S.1111.111 is NaN."""
    vals = {}
    for code in range(0x80):
        e, m = code >> 3, code & 7
        if e == 15 and m == 7:
            continue
        v = (m / 8) * 2.0 ** -6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7)
        vals[v] = code
        vals[-v] = code | 0x80 if v else code
    keys = sorted(vals)
    return keys, [vals[k] for k in keys]


_F8 = None


def encode(values, dtype):
    """Packs floats (already on the F16 grid) little-endian in dtype."""
    global _F8
    if dtype == "F32":
        return struct.pack(f"<{len(values)}f", *values)
    if dtype == "F16":
        return struct.pack(f"<{len(values)}e", *values)
    if dtype == "BF16":
        # round to nearest even on the upper half of the F32 bits
        words = struct.unpack(f"<{len(values)}I", struct.pack(f"<{len(values)}f", *values))
        return struct.pack(f"<{len(values)}H",
                           *(((w + 0x7FFF + ((w >> 16) & 1)) >> 16) & 0xFFFF for w in words))
    if dtype == "F8_E4M3":
        if _F8 is None:
            _F8 = _f8_e4m3_table()
        keys, codes = _F8
        out = bytearray(len(values))
        for i, v in enumerate(values):
            j = min(max(bisect.bisect_left(keys, v), 1), len(keys) - 1)
            out[i] = codes[j] if keys[j] - v < v - keys[j - 1] else codes[j - 1]
        return bytes(out)
    raise ValueError(dtype)


def normal_values(name, shape, rng):
    """Seeded weights rounded to the F16 grid: norms near 1, matrices N(0, 0.02)."""
    n = numel(shape)
    if len(shape) == 1:
        vals = [1.0 + rng.gauss(0.0, 0.05) for _ in range(n)]
    else:
        vals = [rng.gauss(0.0, 0.02) for _ in range(n)]
    return list(struct.unpack(f"<{n}e", struct.pack(f"<{n}e", *vals)))


class TiledFill:
    """Raw-bytes fill that repeats one seeded block of normal values: realistic
    numbers (no NaN, Inf or denormals, unlike random bytes) at memory speed
    for multi-GiB benchmark files.  Tensors repeat each other; timing does not
    care."""

    def __init__(self, dtype, rng, elements=1 << 20):
        n = elements
        self.block = encode(struct.unpack(f"<{n}e", struct.pack(f"<{n}e", *(rng.gauss(0.0, 0.02)
                                                                              for _ in range(n)))), dtype)
        self.pos = 0

    def __call__(self, n):
        b = self.block
        reps = (self.pos + n + len(b) - 1) // len(b)
        out = (b * reps)[self.pos:self.pos + n]
        self.pos = (self.pos + n) % len(b)
        return out


class NormalFill:
    """A write_safetensors() fill that gives numbers, not bytes."""

    def __init__(self, rng):
        self.rng = rng

    def values(self, name, shape):
        return normal_values(name, shape, self.rng)


def write_safetensors(path, tensors, dtype, fill, sparse=False):
    """fill(n) gives n bytes of raw data, or, when it has .values, fill.values
    (name, shape) gives the tensor's numbers.  sparse: data left as a hole."""
    header, offset = {}, 0
    for name, shape in tensors:
        size = nbytes(shape, dtype)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        if sparse:
            f.truncate(8 + len(raw) + offset)
            return
        for name, shape in tensors:
            if hasattr(fill, "values"):
                f.write(encode(fill.values(name, shape), dtype))
                continue
            remaining = nbytes(shape, dtype)
            while remaining:
                n = min(remaining, 64 << 20)
                f.write(fill(n))
                remaining -= n


def write_tokenizer(out, vocab):
    base = [chr(c) for c in range(33, 127)]
    tokens = ["<unk>", "<s>", "</s>"] + base
    seen = set(tokens)
    merges = []
    i = 0
    while len(tokens) < vocab:
        a, b = base[i % len(base)], base[(i * 7 + 3) % len(base)]
        tok = a + b + (str(i // len(base)) if i >= len(base) else "")
        if tok not in seen:
            seen.add(tok)
            tokens.append(tok)
            merges.append(f"{a} {b}")
        i += 1
    tok = {"version": "1.0", "added_tokens": [], "pre_tokenizer": {"type": "Metaspace"},
           "model": {"type": "BPE", "vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges}}
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(tok, f)
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                   "tokenizer_class": "LlamaTokenizerFast"}, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--intermediate", type=int, default=0, help="default 8/3 hidden, rounded to 64")
    ap.add_argument("--dtype", choices=sorted(DTYPE_BYTES), default="F16")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--target-bytes", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bytes-random", action="store_true", help="os.urandom data (fast, not reproducible)")
    ap.add_argument("--values", choices=("bytes", "normal", "tiled"), default="bytes",
                    help="bytes: raw seeded bytes (default); normal: real weights on the F16 grid; "
                         "tiled: one block of normal values repeated (fast, for benchmarks)")
    ap.add_argument("--sparse", action="store_true", help="write headers only, data as a hole")
    ap.add_argument("--tokenizer-vocab", type=int, default=0, help="tokenizer size (default min(vocab, 4096))")
    args = ap.parse_args()
    if args.values != "bytes" and args.bytes_random:
        ap.error("--values and --bytes-random exclude each other")

    inter = args.intermediate or max(64, (args.hidden * 8 // 3 + 63) // 64 * 64)
    layers = args.layers
    if args.target_bytes:
        layers = 1
        while sum(nbytes(s, args.dtype) for _, s in tensor_shapes(args.hidden, layers, args.vocab, inter)) \
                < args.target_bytes:
            layers += 1
    tensors = tensor_shapes(args.hidden, layers, args.vocab, inter)

    rng = random.Random(args.seed)
    fill = os.urandom if args.bytes_random else rng.randbytes
    if args.values == "normal":
        fill = NormalFill(rng)
    elif args.values == "tiled":
        fill = TiledFill(args.dtype, rng)
    os.makedirs(args.out, exist_ok=True)

    if args.shards == 1:
        write_safetensors(os.path.join(args.out, "model.safetensors"), tensors, args.dtype, fill, args.sparse)
    else:
        total = sum(nbytes(s, args.dtype) for _, s in tensors)
        per, groups, cur, size = total / args.shards, [], [], 0
        for t in tensors:
            cur.append(t)
            size += nbytes(t[1], args.dtype)
            if size >= per * (len(groups) + 1) and len(groups) < args.shards - 1:
                groups.append(cur)
                cur = []
        groups.append(cur)
        weight_map = {}
        for i, g in enumerate(groups):
            name = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
            write_safetensors(os.path.join(args.out, name), g, args.dtype, fill, args.sparse)
            weight_map.update({t[0]: name for t in g})
        with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)

    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": args.hidden,
              "num_hidden_layers": layers, "num_attention_heads": max(1, args.hidden // 64),
              "num_key_value_heads": max(1, args.hidden // 64), "intermediate_size": inter,
              "vocab_size": args.vocab, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
              "rope_theta": 10000.0, "tie_word_embeddings": False,
              "torch_dtype": TORCH_DTYPE[args.dtype]}
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    write_tokenizer(args.out, args.tokenizer_vocab or min(args.vocab, 4096))


if __name__ == "__main__":
    main()
