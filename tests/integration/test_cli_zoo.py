#!/usr/bin/env python3
"""`modelprov inspect` and `modelprov fingerprint` on every model in the zoo:
exit codes, JSON shape, and per-file SHA-256 equal to models.json and to
sha256sum.  Also the generated sample model (runs without the zoo), the plain
and human views, -o records, and usage errors."""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import unittest

from testenv import BIN, HAVE_ZOO, ROOT, ZOO  # noqa: E402


def run(*args, check_rc=None):
    p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300)
    if check_rc is not None and p.returncode != check_rc:
        raise AssertionError(f"{args}: exit {p.returncode}, stderr: {p.stderr}")
    return p


def sha256sum(path):
    out = subprocess.run(["sha256sum", path], capture_output=True, text=True, check=True).stdout
    return out.split()[0]


def make_model(tmp, *args):
    out = os.path.join(tmp, "m")
    subprocess.run([sys.executable, os.path.join(ROOT, "tests/gen/make_model.py"), "--out", out, *args],
                   check=True)
    return out


@unittest.skipUnless(HAVE_ZOO, "zoo missing")
class ZooTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(ZOO, "models.json")) as f:
            cls.models = json.load(f)

    def test_every_model_inspects_and_digests_match(self):
        checked = 0
        for entry in self.models:
            folder = os.path.join(ZOO, entry["folder"])
            with self.subTest(folder=entry["folder"]):
                p = run("inspect", "--json", "--quiet", folder, check_rc=0)
                self.assertEqual(p.stderr, "")          # no progress noise when not a tty
                j = json.loads(p.stdout)
                self.assertGreater(len(j["tensors"]), 0)
                self.assertEqual(j["findings"], [])
                files = {f["path"]: f for f in j["files"]}
                for name, sha in entry["weight_files_sha256"].items():
                    self.assertIn(name, files)
                    self.assertEqual(files[name]["sha256"], sha)
                    self.assertEqual(files[name]["sha256"], sha256sum(files[name]["location"]))
                    self.assertEqual(files[name]["size"], os.path.getsize(files[name]["location"]))
                    checked += 1
                fmt = entry["format"].split("-")[0].replace("pytorch", "pytorch-zip")
                self.assertEqual(j["format"], fmt)
                self.assertEqual(j["arch"]["model_type"], entry["arch"])
                self.assertIsNotNone(j["tokenizer"])
                for t in j["tensors"]:
                    self.assertEqual(len(t["xxh3_128"]), 32)
                    self.assertGreaterEqual(t["offset"], 0)
        self.assertGreaterEqual(checked, 45)

    def test_every_model_fingerprints(self):
        with tempfile.TemporaryDirectory() as tmp:
            for entry in self.models:
                folder = os.path.join(ZOO, entry["folder"])
                with self.subTest(folder=entry["folder"]):
                    out = os.path.join(tmp, "r.fp")
                    p = run("fingerprint", "--json", "-o", out, folder, check_rc=0)
                    j = json.loads(p.stdout)
                    self.assertEqual(len(j["model_digest"]), 64)
                    self.assertEqual(j["record_version"], 1)
                    self.assertTrue(os.path.getsize(out) > 100)
                    self.assertLess(os.path.getsize(out), 256 * 1024)

    def test_same_weights_same_tensor_hashes_across_formats(self):
        a = json.loads(run("fingerprint", os.path.join(ZOO, "llama/base-1"), check_rc=0).stdout)
        b = json.loads(run("fingerprint", os.path.join(ZOO, "llama/base-1-pt"), check_rc=0).stdout)
        ha = {t["name"]: t["xxh3_128"] for t in a["tensors"]}
        hb = {t["name"]: t["xxh3_128"] for t in b["tensors"]}
        self.assertEqual(ha, hb)
        self.assertNotEqual(a["model_digest"], b["model_digest"])

    def test_hub_snapshot_and_repo_agree(self):
        repo = os.path.join(ZOO, "hub/models--zoo--llama-chained")
        snap = os.path.join(repo, "snapshots/106777b02b66c5210bdfb27123edc24319ccccaa")
        a = json.loads(run("inspect", "--json", repo, check_rc=0).stdout)
        b = json.loads(run("inspect", "--json", snap, check_rc=0).stdout)
        self.assertEqual(a["layout"], "hf-hub-cache")
        self.assertEqual(a["model_digest"], b["model_digest"])
        self.assertEqual(a["revision"], "106777b02b66c5210bdfb27123edc24319ccccaa")
        for f in a["files"]:
            self.assertEqual(f["expected"], "sha256:" + f["sha256"])

    def test_human_and_plain_views(self):
        p = run("inspect", os.path.join(ZOO, "llama/base-1-q4_0/model-q4_0.gguf"), check_rc=0)
        self.assertIn("Q4_0", p.stdout)
        self.assertIn("gguf", p.stdout)
        p = run("inspect", "--plain", os.path.join(ZOO, "gpt2/base-1"), check_rc=0)
        lines = [l.split("\t") for l in p.stdout.splitlines()]
        keys = {l[0] for l in lines}
        self.assertTrue({"name", "format", "parameters", "digest", "file", "tokenizer"} <= keys)
        files = [l for l in lines if l[0] == "file"]
        st = [l for l in files if l[1] == "model.safetensors"][0]
        self.assertEqual(st[3], sha256sum(os.path.join(ZOO, "gpt2/base-1/model.safetensors")))


class GeneratedTest(unittest.TestCase):
    def test_sharded_model_jobs(self):
        with tempfile.TemporaryDirectory() as tmp:
            m = make_model(tmp, "--shards", "4", "--layers", "4")
            a = json.loads(run("fingerprint", "--jobs", "1", m, check_rc=0).stdout)
            b = json.loads(run("fingerprint", "--jobs", "4", m, check_rc=0).stdout)
            self.assertEqual(a["model_digest"], b["model_digest"])
            self.assertEqual(len([f for f in a["files"] if f["role"] == "weights"]), 4)
            for f in a["files"]:
                self.assertEqual(f["sha256"], sha256sum(os.path.join(m, f["path"])))

    def test_record_file_is_binary_protobuf(self):
        with tempfile.TemporaryDirectory() as tmp:
            m = make_model(tmp)
            out = os.path.join(tmp, "x.fp")
            p = run("fingerprint", "-o", out, m, check_rc=0)
            self.assertEqual(p.stdout, "")      # -o alone prints nothing
            data = open(out, "rb").read()
            self.assertEqual(data[0], 0x08)     # field 1 (record_version), varint
            self.assertEqual(data[1], 1)

    def test_usage_errors_exit_2(self):
        self.assertEqual(run().returncode, 2)
        self.assertEqual(run("nosuchcommand").returncode, 2)
        self.assertEqual(run("inspect").returncode, 2)
        self.assertEqual(run("fingerprint", "--jobs", "0", "x").returncode, 2)
        p = run("inspect", "/nonexistent/model")
        self.assertEqual(p.returncode, 2)
        self.assertRegex(p.stderr, r"^modelprov: error: /nonexistent/model: ")
        self.assertEqual(run("--help").returncode, 0)
        self.assertIn("modelprov", run("--version").stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
