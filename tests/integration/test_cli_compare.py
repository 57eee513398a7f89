#!/usr/bin/env python3
"""`modelprov compare` and `modelprov diff`: verdicts and relation hints on
generated models (tests/gen/make_model.py --values normal: real weights, so
the same seed in F16 and F32 is the same model) and on zoo models; the --json
contract; stored fingerprints against model paths; tensor-level diff of a copy
with one altered tensor; usage errors."""
import json
import math
import os
import random
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import unittest

from testenv import BIN, HAVE_ZOO, ROOT, ZOO  # noqa: E402

VERDICTS = ("Confirmed Match", "High-Confidence Match", "Weak Match", "Not Matched")
MATCHED = VERDICTS[:2]
ALTERED = "model.layers.1.mlp.up_proj.weight"


def run(*args, check_rc=None):
    p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300)
    if check_rc is not None and p.returncode not in check_rc:
        raise AssertionError(f"{args}: exit {p.returncode}, stderr: {p.stderr}")
    return p


def compare(a, b):
    """compare --json of a and b (paths or records), parsed."""
    p = run("compare", "--json", a, b, check_rc=(0, 1))
    return json.loads(p.stdout)


def make_model(out, *args):
    subprocess.run([sys.executable, os.path.join(ROOT, "tests/gen/make_model.py"), "--out", out,
                    "--values", "normal", *args], check=True)
    return out


def fingerprint(model, out):
    run("fingerprint", "-q", "-o", out, model, check_rc=(0,))
    return out


def alter_tensor(model, name, scale, seed=7):
    """Multiplies every F16 value of tensor name in model/model.safetensors by
    (1 + scale * N(0, 1)): a relative change of about scale, nothing else
    touched."""
    path = os.path.join(model, "model.safetensors")
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        meta = json.loads(f.read(n))[name]
        assert meta["dtype"] == "F16"
        begin, end = meta["data_offsets"]
        f.seek(8 + n + begin)
        vals = struct.unpack(f"<{(end - begin) // 2}e", f.read(end - begin))
        rng = random.Random(seed)
        f.seek(8 + n + begin)
        f.write(struct.pack(f"<{len(vals)}e", *(v * (1 + scale * rng.gauss(0, 1)) for v in vals)))


class Contract:
    """Assertions on the --json contract of compare, shared by the tests."""

    def assert_contract(self, j):
        self.assertIn(j["verdict"], VERDICTS)
        for k in ("pipeline_score", "identity_score", "tokenizer_score"):
            self.assertIn(k, j)
            v = j[k]
            if v is not None:
                self.assertIsInstance(v, (int, float), k)
                self.assertNotIsInstance(v, bool, k)
                self.assertTrue(0.0 <= v <= 1.0, f"{k} = {v}")
        self.assertIsInstance(j["relation"], str)
        self.assertTrue(j["relation"])
        self.assertIsInstance(j["signals"], dict)
        self.assertGreaterEqual(len(j["signals"]), 8)       # at least the reference project's eight
        for name, v in j["signals"].items():
            self.assertRegex(name, r"^[a-z0-9_]+$")
            if v is not None:
                self.assertIsInstance(v, (int, float), name)
                self.assertFalse(math.isnan(v), name)


class GeneratedTest(unittest.TestCase, Contract):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cli-compare-")
        t = cls.tmp
        common = ("--hidden", "128", "--layers", "2", "--vocab", "1024")
        cls.m1 = make_model(os.path.join(t, "m1"), *common, "--seed", "1")
        cls.m1_f32 = make_model(os.path.join(t, "m1-f32"), *common, "--seed", "1", "--dtype", "F32")
        cls.m2 = make_model(os.path.join(t, "m2"), *common, "--seed", "2")
        cls.m1_3l = make_model(os.path.join(t, "m1-3l"), "--hidden", "128", "--layers", "3", "--vocab", "1024",
                               "--seed", "1")
        cls.m1_alt = os.path.join(t, "m1-alt")
        shutil.copytree(cls.m1, cls.m1_alt)
        alter_tensor(cls.m1_alt, ALTERED, 0.1)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def test_self_is_identical_copy(self):
        j = compare(self.m1, self.m1)
        self.assert_contract(j)
        self.assertEqual(j["verdict"], "Confirmed Match")
        self.assertEqual(j["relation"], "identical copy")
        self.assertGreaterEqual(j["identity_score"], 0.99)

    def test_other_dtype_same_weights(self):
        j = compare(self.m1, self.m1_f32)
        self.assert_contract(j)
        self.assertIn(j["verdict"], MATCHED)
        self.assertRegex(j["relation"], r"format|dtype")

    def test_different_seeds_not_matched(self):
        j = compare(self.m1, self.m2)
        self.assert_contract(j)
        self.assertEqual(j["verdict"], "Not Matched")
        self.assertNotIn(j["relation"], ("identical copy", "quantized copy"))
        self.assertLess(j["identity_score"], 0.5)

    def test_records_give_same_verdict_as_paths(self):
        fps = {m: fingerprint(m, m + ".fp") for m in (self.m1, self.m1_f32, self.m2)}
        for a, b in ((self.m1, self.m1), (self.m1, self.m1_f32), (self.m1, self.m2)):
            with self.subTest(a=os.path.basename(a), b=os.path.basename(b)):
                by_path, by_record = compare(a, b), compare(fps[a], fps[b])
                self.assert_contract(by_record)
                self.assertEqual(by_path["verdict"], by_record["verdict"])
                self.assertEqual(by_path["relation"], by_record["relation"])
                self.assertAlmostEqual(by_path["identity_score"], by_record["identity_score"], places=6)
        # a record against a model path works too
        self.assertEqual(compare(fps[self.m1], self.m1)["relation"], "identical copy")

    def test_record_to_fifo_keeps_the_fifo(self):
        # Regression: -o wrote a temporary file and renamed it over the
        # target, so `-o /dev/null` replaced /dev/null with a regular file.
        # Special files are now written in place; a FIFO stands in for
        # /dev/null here.
        fifo = os.path.join(self.tmp, "record.fifo")
        os.mkfifo(fifo)
        got = []
        reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
        reader.start()
        run("fingerprint", "-q", "-o", fifo, self.m1, check_rc=(0,))
        reader.join(timeout=60)
        self.assertTrue(stat.S_ISFIFO(os.stat(fifo).st_mode))
        self.assertEqual(got[0], open(fingerprint(self.m1, self.m1 + ".fifo-ref.fp"), "rb").read())
        self.assertEqual([f for f in os.listdir(self.tmp) if ".tmp-" in f], [])

    def test_plain_and_human_views(self):
        human = run("compare", self.m1, self.m2, check_rc=(0, 1))
        self.assertIn("Not Matched", human.stdout)
        plain = run("compare", "--plain", self.m1, self.m1, check_rc=(0, 1))
        self.assertIn("Confirmed Match", plain.stdout)
        self.assertTrue(all("\t" in l for l in plain.stdout.splitlines() if l), plain.stdout)

    def test_diff_one_altered_tensor(self):
        p = run("diff", self.m1, self.m1_alt, check_rc=(0, 1))
        lines = p.stdout.splitlines()
        changed = [l for l in lines if re.search(r"\bchanged\b", l) and "model." in l]
        self.assertEqual(len(changed), 1, p.stdout)
        self.assertIn(ALTERED, changed[0])
        # the relative change (about 0.1) is shown, as a fraction or a percentage
        rest = changed[0].replace(ALTERED, "")
        fractions = [float(x) for x in re.findall(r"(?<![\w.])(?:\d*\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)", rest)]
        percents = [float(x) for x in re.findall(r"(\d+(?:\.\d+)?)\s*%", rest)]
        self.assertTrue(any(0.05 <= x <= 0.2 for x in fractions) or any(5 <= x <= 20 for x in percents),
                        changed[0])
        for l in lines:
            if ALTERED not in l and "model." in l:
                self.assertNotRegex(l, r"\bchanged\b|only in", l)
        self.assert_summary(p.stdout, identical=20, changed=1, only_a=0, only_b=0)

    def test_diff_extra_layer_is_only_in_b(self):
        p = run("diff", self.m1, self.m1_3l, check_rc=(0, 1))
        only_b = [l for l in p.stdout.splitlines() if "model.layers.2." in l]
        self.assertEqual(len(only_b), 9, p.stdout)
        for l in only_b:
            self.assertRegex(l, r"only in B|only in b|only_b", l)
        # same seed: embeddings and layers 0-1 come first in the stream, so they are identical
        self.assert_summary(p.stdout, identical=19, changed=2, only_a=0, only_b=9)

    def assert_summary(self, out, identical, changed, only_a, only_b):
        def count(word):
            # "changed: 1" or "1 changed"
            m = re.search(rf"{word}\s*[:=]\s*(\d+)", summary) or re.search(rf"(\d+)\s+{word}", summary)
            return int(m.group(1)) if m else None
        cands = [l for l in out.splitlines() if "identical" in l and "changed" in l and "model." not in l]
        self.assertEqual(len(cands), 1, f"no single summary line in:\n{out}")
        summary = cands[0]
        self.assertEqual(count("identical"), identical, summary)
        self.assertEqual(count("changed"), changed, summary)
        self.assertEqual(count(r"only in A"), only_a, summary)
        self.assertEqual(count(r"only in B"), only_b, summary)

    def test_errors(self):
        for cmd in ("compare", "diff"):
            with self.subTest(cmd=cmd):
                p = run(cmd, "/nonexistent/model", self.m1)
                self.assertEqual(p.returncode, 2)
                self.assertRegex(p.stderr, r"^modelprov: error: .*/nonexistent/model")
                p = run(cmd, self.m1, "/nonexistent/other")
                self.assertEqual(p.returncode, 2)
                self.assertRegex(p.stderr, r"^modelprov: error: .*/nonexistent/other")
                self.assertEqual(run(cmd, self.m1).returncode, 2)             # one operand
                self.assertEqual(run(cmd, self.m1, self.m1, self.m2).returncode, 2)
                self.assertEqual(run(cmd, "--no-such-option", self.m1, self.m2).returncode, 2)
        # a file that is not a record nor a model
        junk = os.path.join(self.tmp, "junk.fp")
        with open(junk, "wb") as f:
            f.write(b"\xff" * 100)
        p = run("compare", junk, self.m1)
        self.assertEqual(p.returncode, 2)
        self.assertRegex(p.stderr, r"^modelprov: error: ")


@unittest.skipUnless(HAVE_ZOO, "zoo missing")
class ZooTest(unittest.TestCase, Contract):
    def z(self, folder):
        return os.path.join(ZOO, folder)

    def test_relations_on_zoo(self):
        cases = [("llama/base-1", "llama/base-1", ("Confirmed Match",), r"^identical copy$"),
                 ("llama/base-1", "llama/base-1-pt", ("Confirmed Match",), r"format|dtype"),
                 ("llama/base-1", "llama/base-1-bf16", MATCHED, r"format|dtype"),
                 ("gpt2/base-1", "gpt2/base-1-gguf-f16", MATCHED, r"format|dtype"),
                 ("llama/base-1", "llama/base-1-q8_0", MATCHED, r"^quantized copy$"),
                 ("gpt2/base-1", "gpt2/base-1-q4_0", MATCHED, r"^quantized copy$"),
                 ("llama/base-1", "llama/sft-light", MATCHED, r"fine-tune"),
                 ("llama/base-1", "llama/base-2", ("Not Matched",), r"."),
                 ("gpt2/base-1", "gpt2/base-3", ("Not Matched",), r"."),
                 ("gpt2/base-sametok", "llama/base-1", ("Not Matched",), r".")]
        for a, b, verdicts, relation in cases:
            with self.subTest(a=a, b=b):
                j = compare(self.z(a), self.z(b))
                self.assert_contract(j)
                self.assertIn(j["verdict"], verdicts)
                self.assertRegex(j["relation"], relation)

    def test_records_match_paths_on_zoo(self):
        with tempfile.TemporaryDirectory() as tmp:
            for a, b in (("llama/base-1", "llama/base-1-q4_0"), ("gpt2/base-1", "gpt2/base-2")):
                fa = fingerprint(self.z(a), os.path.join(tmp, "a.fp"))
                fb = fingerprint(self.z(b), os.path.join(tmp, "b.fp"))
                with self.subTest(a=a, b=b):
                    by_path, by_record = compare(self.z(a), self.z(b)), compare(fa, fb)
                    self.assertEqual(by_path["verdict"], by_record["verdict"])
                    self.assertEqual(by_path["relation"], by_record["relation"])

    def test_diff_reformat_all_identical(self):
        p = run("diff", self.z("llama/base-1"), self.z("llama/base-1-pt"), check_rc=(0, 1))
        self.assertNotRegex(p.stdout, r"model\..*\b(changed|only in)\b")
        self.assertRegex(p.stdout, r"\b0\s+changed|changed\s*[:=]\s*0\b")

    def test_diff_pruned_layer_only_in_a(self):
        p = run("diff", self.z("llama/base-1"), self.z("llama/pruned"), check_rc=(0, 1))
        layer3 = [l for l in p.stdout.splitlines() if "model.layers.3." in l]
        self.assertEqual(len(layer3), 9, p.stdout)
        for l in layer3:
            self.assertRegex(l, r"only in A|only in a|only_a", l)


if __name__ == "__main__":
    unittest.main(verbosity=2)
