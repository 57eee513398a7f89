#!/usr/bin/env python3
"""CLI integration test for GGUF files: `modelprov inspect` on malformed,
generated and zoo GGUF files.

Environment: MODELPROV_BIN (the modelprov binary), MODELPROV_ZOO (the test
zoo; its tests are skipped when absent unless MODELPROV_REQUIRE_ZOO=1).
Standard library only.
"""

import hashlib
import json
import os
import re
import struct
import subprocess
import tempfile
import unittest

BIN = os.environ.get("MODELPROV_BIN")
ZOO = os.environ.get("MODELPROV_ZOO")
REQUIRE_ZOO = os.environ.get("MODELPROV_REQUIRE_ZOO") == "1"

# GGUF metadata value types and ggml tensor types used below
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q8_0 = 0, 1, 2, 8


class Builder:
    """Writes GGUF fields one by one and remembers where each one starts, so
    that a test knows the byte offset the reader must blame."""

    def __init__(self):
        self.b = bytearray()
        self.at = {}

    def mark(self, name):
        self.at[name] = len(self.b)

    def raw(self, data):
        self.b += data

    def u8(self, v):
        self.b += struct.pack("<B", v)

    def u32(self, v):
        self.b += struct.pack("<I", v)

    def u64(self, v):
        self.b += struct.pack("<Q", v)

    def f32(self, v):
        self.b += struct.pack("<f", v)

    def string(self, s):
        data = s.encode() if isinstance(s, str) else s
        self.u64(len(data))
        self.b += data

    def header(self, n_tensors, n_kv, version=3, magic=b"GGUF"):
        self.raw(magic)
        self.u32(version)
        self.u64(n_tensors)
        self.u64(n_kv)

    def kv_str(self, key, value):
        self.string(key)
        self.u32(STR)
        self.string(value)

    def kv_u32(self, key, value, mark=None):
        self.string(key)
        self.u32(U32)
        if mark:
            self.mark(mark)
        self.u32(value)

    def kv_f32(self, key, value):
        self.string(key)
        self.u32(F32)
        self.f32(value)

    def kv_str_array(self, key, values):
        self.string(key)
        self.u32(ARR)
        self.u32(STR)
        self.u64(len(values))
        for v in values:
            self.string(v)

    def tensor(self, name, ne, ggml_type, offset, tag=None):
        tag = tag or name
        self.mark(tag + ".name")
        self.string(name)
        self.mark(tag + ".ndims")
        self.u32(len(ne))
        for i, n in enumerate(ne):
            self.mark("%s.ne%d" % (tag, i))
            self.u64(n)
        self.mark(tag + ".type")
        self.u32(ggml_type)
        self.mark(tag + ".offset")
        self.u64(offset)

    def pad(self, align=32):
        while len(self.b) % align:
            self.b += b"\0"

    def zeros(self, n):
        self.b += bytes(n)


VOCAB = ["<unk>", "<s>", "</s>", "hello", "world"]


def tiny_llama():
    """A valid llama GGUF: 4 tensors (F32, F16, Q8_0, Q4_0), metadata and a
    5-token vocabulary.  Returns (bytes, data_start)."""
    g = Builder()
    g.header(4, 13)
    g.kv_str("general.architecture", "llama")
    g.kv_str("general.name", "tiny-llama")
    g.kv_u32("llama.context_length", 64)
    g.kv_u32("llama.embedding_length", 32)
    g.kv_u32("llama.block_count", 1)
    g.kv_u32("llama.feed_forward_length", 64)
    g.kv_u32("llama.attention.head_count", 4)
    g.kv_u32("llama.attention.head_count_kv", 2)
    g.kv_f32("llama.rope.freq_base", 10000.0)
    g.kv_str("tokenizer.ggml.model", "llama")
    g.kv_str_array("tokenizer.ggml.tokens", VOCAB)
    g.kv_u32("tokenizer.ggml.bos_token_id", 1)
    g.kv_u32("tokenizer.ggml.eos_token_id", 2)
    # token_embd: ne [32, 5] F32 -> HF [5, 32], 640 bytes
    g.tensor("token_embd.weight", [32, 5], GGML_F32, 0)
    # attn_q: ne [32, 32] F16 -> 2048 bytes
    g.tensor("blk.0.attn_q.weight", [32, 32], GGML_F16, 640)
    # ffn_down: ne [64, 32] Q8_0 -> 64 blocks of 34 bytes = 2176
    g.tensor("blk.0.ffn_down.weight", [64, 32], GGML_Q8_0, 640 + 2048)
    # output: ne [32, 5] Q4_0 -> 5 blocks of 18 bytes = 90
    g.tensor("output.weight", [32, 5], GGML_Q4_0, 640 + 2048 + 2176)
    g.pad()
    data_start = len(g.b)
    g.zeros(640 + 2048 + 2176 + 90)
    return bytes(g.b), data_start


def read_safetensors_names(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return {k: v["shape"] for k, v in header.items()}


@unittest.skipUnless(BIN, "MODELPROV_BIN not set")
class GgufCli(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.assertTrue(os.access(BIN, os.X_OK), "%s is not executable" % BIN)

    def write(self, name, data):
        path = os.path.join(self.tmp.name, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def run_cli(self, *args):
        return subprocess.run([BIN, "inspect", *args], capture_output=True, text=True, timeout=120)

    def expect_error(self, name, data, offset, reason=None):
        """inspect exits 2 with one line 'modelprov: error: FILE: byte N: REASON'."""
        path = self.write(name + ".gguf", bytes(data))
        p = self.run_cli(path)
        self.assertEqual(p.returncode, 2, "%s: exit %d, stderr %r" % (name, p.returncode, p.stderr))
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, "%s: stderr %r" % (name, p.stderr))
        m = re.fullmatch(r"modelprov: error: (.+): byte (\d+): (.+)", lines[0])
        self.assertIsNotNone(m, "%s: stderr %r" % (name, lines[0]))
        self.assertEqual(m.group(1), path)
        self.assertEqual(int(m.group(2)), offset, "%s: %s" % (name, lines[0]))
        if reason:
            self.assertIn(reason, m.group(3), name)
        # --json does not change the verdict
        self.assertEqual(self.run_cli("--json", path).returncode, 2)

    # -- header --------------------------------------------------------------

    def test_bad_magic(self):
        g = Builder()
        g.header(0, 0, magic=b"GGUX")
        # the format sniffer (open.c) or the reader rejects it at byte 0
        self.expect_error("magic", g.b, 0)

    def test_versions(self):
        for version in (1, 99):
            g = Builder()
            g.header(0, 0, version=version)
            self.expect_error("version%d" % version, g.b, 4, "version")

    def test_tensor_count(self):
        g = Builder()
        g.header(2 ** 60, 0)
        self.expect_error("tensor_count", g.b, 8, "tensor count")

    def test_kv_count(self):
        g = Builder()
        g.header(0, 2 ** 60)
        self.expect_error("kv_count", g.b, 16, "metadata count")

    # -- metadata ------------------------------------------------------------

    def test_string_past_eof(self):
        g = Builder()
        g.header(0, 1)
        g.mark("len")
        g.u64(4096)
        g.raw(b"general.name")
        self.expect_error("key_past_eof", g.b, g.at["len"], "past the end")

        g = Builder()
        g.header(0, 1)
        g.string("general.name")
        g.u32(STR)
        g.mark("len")
        g.u64(1 << 40)
        g.raw(b"x" * 16)
        self.expect_error("value_too_long", g.b, g.at["len"])

    def test_array_count_huge(self):
        g = Builder()
        g.header(0, 1)
        g.string("tokenizer.ggml.scores")
        g.u32(ARR)
        g.u32(F32)
        g.mark("count")
        g.u64(2 ** 62)
        g.zeros(64)
        self.expect_error("array_huge", g.b, g.at["count"], "array")

        # under the element limit, beyond the bytes in the file
        g = Builder()
        g.header(0, 1)
        g.string("tokenizer.ggml.tokens")
        g.u32(ARR)
        g.u32(STR)
        g.mark("count")
        g.u64(1 << 20)
        g.string("a")
        self.expect_error("array_past_eof", g.b, g.at["count"])

    def test_unknown_value_type(self):
        g = Builder()
        g.header(0, 1)
        g.string("general.name")
        g.mark("type")
        g.u32(13)
        g.u64(0)
        self.expect_error("value_type", g.b, g.at["type"], "value type")

    def test_nested_too_deep(self):
        g = Builder()
        g.header(0, 1)
        g.string("deep")
        g.u32(ARR)
        for _ in range(4):
            g.u32(ARR)
            g.u64(1)
        g.mark("inner")
        g.u32(U8)
        g.u64(1)
        g.u8(1)
        self.expect_error("nested", g.b, g.at["inner"], "nested")

    def test_alignment(self):
        for value in (0, 3):
            g = Builder()
            g.header(0, 1)
            g.kv_u32("general.alignment", value, mark="value")
            self.expect_error("alignment%d" % value, g.b, g.at["value"], "alignment")

    # -- tensor infos --------------------------------------------------------

    def one_tensor(self, ne, ggml_type, offset, data_bytes):
        g = Builder()
        g.header(1, 0)
        g.tensor("token_embd.weight", ne, ggml_type, offset, tag="t")
        g.pad()
        g.zeros(data_bytes)
        return g

    def test_unknown_ggml_type(self):
        for t in (4, 31, 99):
            g = self.one_tensor([32], t, 0, 64)
            self.expect_error("ggml_type%d" % t, g.b, g.at["t.type"], "type")

    def test_offset_outside_file(self):
        g = self.one_tensor([32, 4], GGML_F32, 1 << 40, 512)
        self.expect_error("outside", g.b, g.at["t.offset"], "outside")
        g = self.one_tensor([32, 4], GGML_F32, 0, 511)
        self.expect_error("outside_by_one", g.b, g.at["t.offset"], "outside")

    def test_misaligned(self):
        g = self.one_tensor([8], GGML_F32, 16, 64)
        self.expect_error("misaligned", g.b, g.at["t.offset"], "alignment")

    def test_overlap(self):
        g = Builder()
        g.header(2, 0)
        g.tensor("a", [16], GGML_F32, 0)
        g.tensor("b", [16], GGML_F32, 32)
        g.pad()
        g.zeros(128)
        self.expect_error("overlap", g.b, g.at["b.offset"], "overlaps")

    def test_n_dims(self):
        g = self.one_tensor([1] * 9, GGML_F32, 0, 64)
        self.expect_error("ndims", g.b, g.at["t.ndims"], "dimensions")

    def test_ne_overflow(self):
        g = self.one_tensor([1 << 32, 1 << 32, 1 << 32], GGML_F32, 0, 64)
        self.expect_error("ne_overflow", g.b, g.at["t.ne1"], "overflow")

    def test_block_size(self):
        g = self.one_tensor([33, 2], GGML_Q8_0, 0, 256)
        self.expect_error("block", g.b, g.at["t.ne0"], "block")

    def test_truncated_everywhere(self):
        """Every prefix of a valid file is an error pointing inside it."""
        data, _ = tiny_llama()
        for n in sorted({0, 3, 4, 7, 8, 20, 24, 30, 100, 200, 400, len(data) // 2, len(data) - 1}):
            path = self.write("prefix%d.gguf" % n, data[:n])
            p = self.run_cli(path)
            self.assertEqual(p.returncode, 2, "prefix %d: %r" % (n, p.stderr))
            m = re.search(r": byte (\d+): ", p.stderr)
            self.assertIsNotNone(m, p.stderr)
            self.assertLessEqual(int(m.group(1)), n)

    # -- valid files -----------------------------------------------------------

    def test_valid_tiny(self):
        data, data_start = tiny_llama()
        path = self.write("tiny.gguf", data)
        p = self.run_cli(path)
        self.assertEqual(p.returncode, 0, p.stderr)

        p = self.run_cli("--json", path)
        self.assertEqual(p.returncode, 0, p.stderr)
        rec = json.loads(p.stdout)
        self.assertEqual(rec["format"], "gguf")
        self.assertEqual(rec["layout"], "file")
        self.assertEqual(len(rec["files"]), 1)
        f = rec["files"][0]
        self.assertEqual(os.path.basename(f["path"]), "tiny.gguf")
        self.assertEqual(f["size"], len(data))
        self.assertEqual(f["sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual(f["format"], "gguf")
        self.assertEqual(f["role"], "weights")

        want = [
            ("model.embed_tokens.weight", "F32", [5, 32], 0, 640),
            ("model.layers.0.self_attn.q_proj.weight", "F16", [32, 32], 640, 2048),
            ("model.layers.0.mlp.down_proj.weight", "Q8_0", [32, 64], 2688, 2176),
            ("lm_head.weight", "Q4_0", [5, 32], 4864, 90),
        ]
        got = [(t["name"], t["dtype"], t["shape"], t["offset"] - data_start, t["length"]) for t in rec["tensors"]]
        self.assertEqual(got, want)
        for t in rec["tensors"]:
            self.assertEqual(t["file"], 0)

        self.assertEqual(rec["tokenizer"]["kind"], "gguf-llama")
        self.assertEqual(rec["tokenizer"]["vocab_size"], 5)
        self.assertEqual(rec["tokenizer"]["bos_token"], "<s>")
        self.assertEqual(rec["tokenizer"]["eos_token"], "</s>")
        arch = rec["arch"]
        self.assertEqual(arch["architecture"], "llama")
        self.assertEqual(arch["model_type"], "llama")
        self.assertEqual(arch["hidden_size"], 32)
        self.assertEqual(arch["num_layers"], 1)
        self.assertEqual(arch["num_heads"], 4)
        self.assertEqual(arch["num_kv_heads"], 2)
        self.assertEqual(arch["head_dim"], 8)
        self.assertEqual(arch["vocab_size"], 5)
        self.assertEqual(arch["max_positions"], 64)
        self.assertEqual(rec["findings"], [])

    def test_version2_and_empty(self):
        g = Builder()
        g.header(0, 0, version=2)
        path = self.write("empty.gguf", g.b)
        p = self.run_cli("--json", path)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["tensors"], [])

    # -- the zoo ---------------------------------------------------------------

    def zoo_ggufs(self):
        if not ZOO or not os.path.isdir(ZOO):
            if REQUIRE_ZOO:
                self.fail("zoo missing: %s" % ZOO)
            self.skipTest("zoo missing")
        found = []
        for family in ("llama", "gpt2"):
            for folder in sorted(os.listdir(os.path.join(ZOO, family))):
                d = os.path.join(ZOO, family, folder)
                found += [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".gguf")]
        self.assertEqual(len(found), 8)
        return found

    def test_zoo(self):
        for path in self.zoo_ggufs():
            p = self.run_cli("--json", path)
            self.assertEqual(p.returncode, 0, "%s: %s" % (path, p.stderr))
            rec = json.loads(p.stdout)
            self.assertEqual(rec["format"], "gguf")
            self.assertIn(len(rec["tensors"]), (39, 53), path)
            self.assertIsNotNone(rec["tokenizer"])
            self.assertEqual(rec["findings"], [])

    def test_zoo_names_match_safetensors(self):
        self.zoo_ggufs()
        for family, extra in (("llama", set()), ("gpt2", {"lm_head.weight"})):
            st = read_safetensors_names(os.path.join(ZOO, family, "base-1", "model.safetensors"))
            d = os.path.join(ZOO, family, "base-1-gguf-f16")
            path = os.path.join(d, [f for f in os.listdir(d) if f.endswith(".gguf")][0])
            p = self.run_cli("--json", path)
            self.assertEqual(p.returncode, 0, p.stderr)
            tensors = {t["name"]: t for t in json.loads(p.stdout)["tensors"]}
            self.assertEqual(set(tensors), set(st) | extra)
            for name, shape in st.items():
                t = tensors[name]
                if t["flags"] & 2:      # MP_TENSOR_TRANSPOSED: gpt2 Conv1D weights
                    self.assertEqual(t["shape"], shape[::-1], name)
                else:
                    self.assertEqual(t["shape"], shape, name)


if __name__ == "__main__":
    unittest.main()
