#!/usr/bin/env python3
"""CLI contract of `modelprov inspect` on safetensors files and sharded
safetensors directories: malformed files exit 2 with one
"modelprov: error: FILE: byte N: REASON" line, valid ones exit 0 (1 when
findings are present) and --json describes the tensors exactly.

Standard library only.  Env: MODELPROV_BIN (the binary), MODELPROV_ZOO."""

import hashlib
import json
import os
import re
import struct
import subprocess
import tempfile
import unittest

BIN = os.environ.get("MODELPROV_BIN", "modelprov")
ZOO = os.environ.get("MODELPROV_ZOO", "")

ERROR_RE = re.compile(r"^modelprov: error: (?P<file>.+?): byte (?P<offset>\d+): (?P<reason>.+)$")


def safetensors_bytes(header, data=b"", raw_header=None):
    """u64 LE header length + JSON header + data."""
    h = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + data


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def tensor_file(doc, t):
    """The file a tensor lives in: "file" is an index into "files" (or a path)."""
    f = t["file"]
    return doc["files"][f]["path"] if isinstance(f, int) else f


def run(*args):
    return subprocess.run([BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, errors="replace", timeout=120)


class SafetensorsCli(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="modelprov-st-")
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, name, content):
        path = os.path.join(self.dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
        return path

    def assert_error_line(self, args, path, offset, needles):
        """exit 2 and exactly one error line naming path and offset."""
        r = run("inspect", *args)
        self.assertEqual(r.returncode, 2, f"stdout={r.stdout!r} stderr={r.stderr!r}")
        lines = [l for l in r.stderr.splitlines() if l.startswith("modelprov: error:")]
        self.assertEqual(len(lines), 1, r.stderr)
        m = ERROR_RE.match(lines[0])
        self.assertIsNotNone(m, lines[0])
        self.assertTrue(m.group("file").endswith(path), lines[0])
        if offset is not None:
            self.assertEqual(int(m.group("offset")), offset, lines[0])
        for n in needles:
            self.assertIn(n, m.group("reason"), lines[0])
        return m

    def assert_malformed(self, content, offset, *needles):
        """The same bytes as a file given directly (when they look like
        safetensors at all: byte 8 is the '{' of the header) and as the
        weights of a model directory."""
        self.count = getattr(self, "count", 0) + 1
        sub = f"case{self.count}"
        p = self.write(os.path.join(sub, "model.safetensors"), content)
        m = self.assert_error_line([os.path.join(self.dir, sub)], p, offset, needles)
        if len(content) > 8 and content[8:9] == b"{":
            self.assert_error_line([p], p, offset, needles)
        else:   # not recognisable as safetensors on its own: still exit 2
            self.assert_error_line([p], p, None, [])
        return m

    def inspect_json(self, path, expect_rc=0):
        r = run("inspect", "--json", path)
        self.assertEqual(r.returncode, expect_rc, f"stderr={r.stderr!r}")
        doc = json.loads(r.stdout)
        self.assertIsInstance(doc, dict)
        for key in ("format", "layout", "files", "tensors", "tokenizer", "arch", "findings"):
            self.assertTrue(key in doc, f"{key!r} missing from the JSON; keys: {sorted(doc)}")
        return doc

    # ---- malformed files ----

    def test_truncated_header_length(self):
        self.assert_malformed(b"\x10\x00\x00\x00\x00", 0, "truncated")

    def test_header_length_beyond_file(self):
        self.assert_malformed(struct.pack("<Q", 1000) + b"{}", 0, "header length 1000")

    def test_header_length_beyond_limit(self):
        self.assert_malformed(struct.pack("<Q", 2**63 + 5) + b"{}      ", 0, "exceeds")

    def test_invalid_json(self):
        # jansson stops after the second ',' (position 8 of the header)
        self.assert_malformed(safetensors_bytes(None, raw_header=b'{"a":1,,}'), 8 + 8, "invalid JSON")

    def test_duplicate_names(self):
        raw = (b'{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
               b'"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}')
        self.assert_malformed(safetensors_bytes(None, b"\0\0", raw_header=raw), None, "duplicate")

    def test_data_offsets_outside_file(self):
        header = {"w": entry("F32", [4], 64, 80)}
        b = safetensors_bytes(header, b"\0" * 16)
        data_start = len(b) - 16
        self.assert_malformed(b, data_start + 64, "'w'", "beyond the file")

    def test_overlapping_tensors(self):
        header = {"first": entry("F16", [4], 0, 8), "second": entry("F16", [4], 4, 12)}
        b = safetensors_bytes(header, b"\0" * 12)
        data_start = len(b) - 12
        self.assert_malformed(b, data_start + 4, "'second'", "'first'", "overlaps")

    def test_huge_declared_shape(self):
        header = {"w": entry("F32", [2**40, 2**40], 0, 4)}
        m = self.assert_malformed(safetensors_bytes(header, b"\0" * 4), None, "'w'")
        self.assertIn("overflow", m.group("reason"))

    def test_unknown_dtype(self):
        header = {"w": entry("F12", [2], 0, 4)}
        b = safetensors_bytes(header, b"\0" * 4)
        self.assert_malformed(b, len(b) - 4, "'w'", "F12")

    def test_shape_length_mismatch(self):
        header = {"w": entry("F16", [3, 3], 0, 16)}
        b = safetensors_bytes(header, b"\0" * 16)
        self.assert_malformed(b, len(b) - 16, "'w'", "need 18")

    def test_negative_shape(self):
        header = {"w": entry("U8", [-1], 0, 1)}
        self.assert_malformed(safetensors_bytes(header, b"\0"), None, "shape")

    def test_metadata_not_strings(self):
        header = {"__metadata__": {"format": 1}, "w": entry("U8", [1], 0, 1)}
        self.assert_malformed(safetensors_bytes(header, b"\0"), 8, "__metadata__")

    # ---- valid files ----

    def test_valid_tiny_file(self):
        header = {
            "__metadata__": {"format": "pt"},
            "b.bias": entry("BF16", [2], 24, 28),
            "a.weight": entry("F32", [2, 3], 0, 24),
            "c.flag": entry("BOOL", [1, 1, 2], 28, 30),
            "d.fp8": entry("F8_E4M3", [2], 30, 32),
        }
        data = bytes(range(32))
        b = safetensors_bytes(header, data)
        ds = len(b) - len(data)
        p = self.write("tiny.safetensors", b)
        doc = self.inspect_json(p, 0)
        self.assertEqual(doc["format"], "safetensors")
        self.assertEqual(doc["layout"], "file")
        self.assertEqual(doc["findings"], [])
        self.assertIsNone(doc["tokenizer"])

        self.assertEqual(len(doc["files"]), 1)
        f = doc["files"][0]
        self.assertTrue(f["path"].endswith("tiny.safetensors"))
        self.assertEqual(f["size"], len(b))
        self.assertEqual(f["sha256"], hashlib.sha256(b).hexdigest())
        self.assertEqual(f["format"], "safetensors")
        self.assertEqual(f["role"], "weights")

        got = [(t["name"], t["dtype"], t["shape"], t["offset"], t["length"]) for t in doc["tensors"]]
        self.assertEqual(got, [
            ("a.weight", "F32", [2, 3], ds, 24),
            ("b.bias", "BF16", [2], ds + 24, 4),
            ("c.flag", "BOOL", [1, 1, 2], ds + 28, 2),
            ("d.fp8", "F8_E4M3", [2], ds + 30, 2),
        ])
        for t in doc["tensors"]:
            self.assertTrue(tensor_file(doc, t).endswith("tiny.safetensors"))

        # the text form succeeds too
        r = run("inspect", p)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("safetensors", r.stdout)
        self.assertEqual(r.stderr, "")

    def test_zero_element_and_scalar(self):
        header = {"empty": entry("F16", [0, 8], 0, 0), "scalar": entry("F64", [], 0, 8)}
        b = safetensors_bytes(header, b"\0" * 8)
        doc = self.inspect_json(self.write("edge.safetensors", b), 0)
        shapes = {t["name"]: t["shape"] for t in doc["tensors"]}
        self.assertEqual(shapes, {"empty": [0, 8], "scalar": []})

    def test_unowned_bytes_are_a_finding(self):
        header = {"w": entry("U8", [4], 0, 4)}
        b = safetensors_bytes(header, b"\0" * 4 + b"PAYLOAD!")
        p = self.write("trailing.safetensors", b)
        doc = self.inspect_json(p, 1)
        kinds = [x["kind"] for x in doc["findings"]]
        self.assertIn("suspicious-layout", kinds)
        f = [x for x in doc["findings"] if x["kind"] == "suspicious-layout"][0]
        self.assertEqual(f["offset"], len(b) - 8)
        self.assertIn("8 bytes", f["detail"])

    # ---- sharded directories ----

    def write_sharded(self, sub, names, missing=()):
        shard_headers = {
            names[0]: {"x.weight": entry("F16", [2, 2], 0, 8)},
            names[1]: {"y.weight": entry("F32", [3], 0, 12), "z.bias": entry("U8", [4], 12, 16)},
        }
        wm = {}
        for shard, header in shard_headers.items():
            for t in header:
                wm[t] = shard
            if shard not in missing:
                size = max(e["data_offsets"][1] for e in header.values())
                self.write(os.path.join(sub, shard), safetensors_bytes(header, b"\1" * size))
        self.write(os.path.join(sub, "model.safetensors.index.json"),
                   json.dumps({"metadata": {"total_size": 24}, "weight_map": wm}).encode())
        self.write(os.path.join(sub, "config.json"),
                   json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                               "hidden_size": 2, "num_hidden_layers": 1, "vocab_size": 2,
                               "rope_theta": 10000.0, "rms_norm_eps": 1e-6}).encode())
        return os.path.join(self.dir, sub)

    def test_sharded_ok(self):
        names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
        d = self.write_sharded("ok", names)
        doc = self.inspect_json(d, 0)
        self.assertEqual(doc["format"], "safetensors")
        self.assertEqual(doc["layout"], "directory")
        self.assertEqual(sorted(t["name"] for t in doc["tensors"]), ["x.weight", "y.weight", "z.bias"])
        roles = {os.path.basename(f["path"]): f["role"] for f in doc["files"]}
        self.assertEqual(roles.get(names[0]), "weights")
        self.assertEqual(roles.get(names[1]), "weights")
        self.assertEqual(roles.get("model.safetensors.index.json"), "index")
        by_name = {t["name"]: t for t in doc["tensors"]}
        self.assertTrue(tensor_file(doc, by_name["x.weight"]).endswith(names[0]))
        self.assertTrue(tensor_file(doc, by_name["z.bias"]).endswith(names[1]))
        self.assertEqual(doc["arch"]["hidden_size"], 2)

    def test_sharded_missing_shard(self):
        names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
        d = self.write_sharded("missing", names, missing=(names[1],))
        r = run("inspect", d)
        self.assertEqual(r.returncode, 2, r.stderr)
        lines = [l for l in r.stderr.splitlines() if l.startswith("modelprov: error:")]
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn(names[1], lines[0])

    def test_sharded_escaping_shard_name(self):
        names = ["model-00001-of-00002.safetensors", "../outside.safetensors"]
        self.write("outside.safetensors", safetensors_bytes({"y.weight": entry("U8", [1], 0, 1)}, b"\0"))
        d = self.write_sharded("escape", names, missing=(names[1],))
        r = run("inspect", d)
        self.assertEqual(r.returncode, 2, r.stderr)
        lines = [l for l in r.stderr.splitlines() if l.startswith("modelprov: error:")]
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn("model.safetensors.index.json", lines[0])

    # ---- the zoo ----

    def zoo(self, rel):
        p = os.path.join(ZOO, rel)
        if not ZOO or not os.path.exists(p):
            if os.environ.get("MODELPROV_REQUIRE_ZOO") == "1":
                self.fail(f"zoo missing: {p}")
            self.skipTest(f"zoo missing: {p}")
        return p

    def test_zoo_llama_file(self):
        p = self.zoo("llama/base-1/model.safetensors")
        doc = self.inspect_json(p, 0)
        self.assertEqual(len(doc["tensors"]), 39)
        t0 = doc["tensors"][0]
        self.assertEqual((t0["name"], t0["dtype"], t0["shape"], t0["offset"], t0["length"]),
                         ("lm_head.weight", "F16", [4000, 128], 4136, 1024000))

    def test_zoo_sharded_dir(self):
        d = self.zoo("llama/sft-heavy")
        doc = self.inspect_json(d, 0)
        self.assertEqual(len(doc["tensors"]), 39)
        weights = sorted(os.path.basename(f["path"]) for f in doc["files"] if f["role"] == "weights")
        self.assertEqual(weights, ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        a = doc["arch"]
        self.assertEqual((a["architecture"], a["hidden_size"], a["num_layers"]), ("LlamaForCausalLM", 128, 4))
        self.assertEqual((a["num_heads"], a["num_kv_heads"], a["vocab_size"]), (4, 2, 4000))

    def test_zoo_gpt2_dir_arch(self):
        # GPT-2 names (n_embd, n_layer ...); no rope_theta: unknown, not an error
        doc = self.inspect_json(self.zoo("gpt2/base-1"), 0)
        a = doc["arch"]
        self.assertIsInstance(a, dict)
        self.assertEqual((a["architecture"], a["model_type"]), ("GPT2LMHeadModel", "gpt2"))
        self.assertEqual((a["hidden_size"], a["num_layers"], a["num_heads"]), (128, 4, 4))
        self.assertEqual((a["vocab_size"], a["max_positions"], a["tie_word_embeddings"]), (2837, 128, 1))
        self.assertEqual(a["hidden_act"], "gelu_new")

    def test_zoo_gpt2_conv1d(self):
        doc = self.inspect_json(self.zoo("gpt2/base-1/model.safetensors"), 0)
        shapes = {t["name"]: t["shape"] for t in doc["tensors"]}
        self.assertEqual(shapes["transformer.h.0.attn.c_attn.weight"], [128, 384])
        self.assertNotIn("lm_head.weight", shapes)


if __name__ == "__main__":
    unittest.main()
