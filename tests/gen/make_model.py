#!/usr/bin/env python3
"""Writes a llama-shaped model directory (safetensors, config.json, a small
tokenizer.json) for tests, the demo and benchmarks.  Standard library only.

Weights are pseudo-random bytes (seeded, so runs are reproducible) except that
--bytes-random uses os.urandom for speed on multi-GiB benchmark files.  The
file is sized by --hidden/--layers/--vocab, or by --target-bytes, which adds
layers until the model reaches that size.
"""
import argparse
import json
import os
import random
import struct

DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2}


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


def write_safetensors(path, tensors, dtype, fill):
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
        for name, shape in tensors:
            remaining = nbytes(shape, dtype)
            while remaining:
                n = min(remaining, 64 << 20)
                f.write(fill(n))
                remaining -= n


def write_tokenizer(out, vocab):
    base = [chr(c) for c in range(33, 127)]
    tokens = ["<unk>", "<s>", "</s>"] + base
    merges = []
    i = 0
    while len(tokens) < vocab:
        a, b = base[i % len(base)], base[(i * 7 + 3) % len(base)]
        tok = a + b + (str(i // len(base)) if i >= len(base) else "")
        if tok not in tokens:
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
    args = ap.parse_args()

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
    os.makedirs(args.out, exist_ok=True)

    if args.shards == 1:
        write_safetensors(os.path.join(args.out, "model.safetensors"), tensors, args.dtype, fill)
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
            write_safetensors(os.path.join(args.out, name), g, args.dtype, fill)
            weight_map.update({t[0]: name for t in g})
        with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)

    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": args.hidden,
              "num_hidden_layers": layers, "num_attention_heads": max(1, args.hidden // 64),
              "num_key_value_heads": max(1, args.hidden // 64), "intermediate_size": inter,
              "vocab_size": args.vocab, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
              "rope_theta": 10000.0, "tie_word_embeddings": False,
              "torch_dtype": {"F16": "float16", "BF16": "bfloat16", "F32": "float32"}[args.dtype]}
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    write_tokenizer(args.out, min(args.vocab, 4096))


if __name__ == "__main__":
    main()
