#!/usr/bin/env python3
"""CLI contract for the Hugging Face hub cache and Ollama store layouts.

Builds hub caches and Ollama stores in temporary directories (standard
library only: the weight files are written with struct) and checks what
`modelprov inspect` reports: exit 0 for intact layouts, 1 when a blob's
name does not match its content or a snapshot link escapes, 2 with a
"modelprov: error: FILE: byte N: REASON" line for a malformed manifest.

Env: MODELPROV_BIN (the modelprov binary), MODELPROV_ZOO (the test zoo).
"""
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import unittest

BIN = os.environ.get("MODELPROV_BIN")
ZOO = os.environ.get("MODELPROV_ZOO")
ZOO_REPO = "hub/models--zoo--llama-chained"
ZOO_REV = "106777b02b66c5210bdfb27123edc24319ccccaa"
REV = "0123456789abcdef0123456789abcdef01234567"


def safetensors_bytes():
    """A valid safetensors file: one F32 [2, 2] tensor."""
    header = json.dumps({"weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}},
                        separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + struct.pack("<4f", 1.0, -2.0, 0.5, 4.0)


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_bytes():
    """A valid GGUF v3 file: general.architecture = llama and one F32 tensor
    token_embd.weight with ne = [4, 2], data aligned to 32 bytes."""
    out = b"GGUF" + struct.pack("<IQQ", 3, 1, 1)
    out += gguf_string("general.architecture") + struct.pack("<I", 8) + gguf_string("llama")
    out += gguf_string("token_embd.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 4, 2)
    out += struct.pack("<IQ", 0, 0)            # GGML_TYPE_F32, offset 0 in the data section
    out += b"\0" * (-len(out) % 32)
    return out + struct.pack("<8f", *[0.25 * i for i in range(8)])


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def git_sha1_hex(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def make_hub_repo(root, files, blob_names=None, rev=REV):
    """models--test--tiny with files {rel: bytes}; blob_names {rel: name}
    overrides the blob name (to make it lie about the content)."""
    repo = os.path.join(root, "models--test--tiny")
    blob_names = blob_names or {}
    for rel, data in files.items():
        name = blob_names.get(rel) or (sha256_hex(data) if rel.endswith(".safetensors") else git_sha1_hex(data))
        write(os.path.join(repo, "blobs", name), data)
        link = os.path.join(repo, "snapshots", rev, rel)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.join("../" * (rel.count("/") + 2) + "blobs", name), link)
    write(os.path.join(repo, "refs", "main"), rev.encode())
    return repo


def snapshot_blob_name(entry):
    """The blob a snapshot entry points at: a symlink, or a stub file holding
    the link target (caches copied without symlinks)."""
    if os.path.islink(entry):
        return os.path.basename(os.readlink(entry))
    with open(entry, "rb") as f:
        return os.path.basename(f.read().decode().strip())


class OllamaStore:
    """A store with mymodel:7b = config + GGUF model + template + params."""

    def __init__(self, root):
        self.root = root
        self.blobs = {}
        self.config = self.add_blob(json.dumps({"model_format": "gguf", "model_family": "llama"}).encode())
        self.model = self.add_blob(gguf_bytes())
        self.template = self.add_blob(b"{{ .Prompt }}")
        self.params = self.add_blob(json.dumps({"stop": ["</s>"]}).encode())
        self.manifest = self.write_manifest()

    def add_blob(self, data):
        hexd = sha256_hex(data)
        write(os.path.join(self.root, "blobs", "sha256-" + hexd), data)
        self.blobs[hexd] = data
        return hexd

    def blob_path(self, hexd):
        return os.path.join(self.root, "blobs", "sha256-" + hexd)

    def manifest_doc(self, model_digest=None):
        def layer(kind, hexd):
            return {"mediaType": "application/vnd.ollama.image." + kind, "digest": "sha256:" + hexd,
                    "size": len(self.blobs[hexd])}
        model = layer("model", self.model)
        if model_digest is not None:
            model["digest"] = model_digest
        return {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": "sha256:" + self.config, "size": len(self.blobs[self.config])},
            "layers": [model, layer("template", self.template), layer("params", self.params)],
        }

    def write_manifest(self, doc=None, name="mymodel", tag="7b"):
        path = os.path.join(self.root, "manifests", "registry.ollama.ai", "library", name, tag)
        text = json.dumps(doc or self.manifest_doc()).encode()
        write(path, text)
        return path


@unittest.skipUnless(BIN, "MODELPROV_BIN is not set")
class CliLayouts(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def inspect(self, *args):
        p = subprocess.run([BIN, "inspect", "--json", *args], capture_output=True, text=True, timeout=300)
        doc = None
        if p.returncode in (0, 1):
            try:
                doc = json.loads(p.stdout)
            except ValueError:
                self.fail("stdout is not one JSON object (rc %d): %r\nstderr: %s"
                          % (p.returncode, p.stdout[:500], p.stderr))
        return p, doc

    def finding_kinds(self, doc):
        return [f["kind"] for f in doc.get("findings", [])]

    # ---- hub cache -------------------------------------------------------

    def test_hub_intact(self):
        st = safetensors_bytes()
        repo = make_hub_repo(self.tmp, {"model.safetensors": st, "config.json": b'{"model_type": "llama"}'})
        p, doc = self.inspect(repo)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(doc["layout"], "hf-hub-cache")
        shas = {f["sha256"] for f in doc["files"]}
        self.assertIn(sha256_hex(st), shas)
        self.assertEqual(self.finding_kinds(doc), [])
        names = [t["name"] for t in doc["tensors"]]
        self.assertEqual(names, ["weight"])

    def test_hub_blob_digest_mismatch(self):
        st = safetensors_bytes()
        wrong = sha256_hex(b"not the content")
        repo = make_hub_repo(self.tmp, {"model.safetensors": st, "config.json": b'{"model_type": "llama"}'},
                             blob_names={"model.safetensors": wrong})
        for path in (repo, os.path.join(repo, "snapshots", REV)):
            p, doc = self.inspect(path)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn("blob-digest-mismatch", self.finding_kinds(doc))
            # the weights still parse: the mismatch is a finding, not an error
            self.assertEqual([t["name"] for t in doc["tensors"]], ["weight"])

    def test_hub_git_blob_mismatch(self):
        st = safetensors_bytes()
        repo = make_hub_repo(self.tmp, {"model.safetensors": st, "config.json": b'{"model_type": "llama"}'},
                             blob_names={"config.json": git_sha1_hex(b"{}")})
        p, doc = self.inspect(repo)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("blob-digest-mismatch", self.finding_kinds(doc))

    def test_hub_escaping_link(self):
        st = safetensors_bytes()
        repo = make_hub_repo(self.tmp, {"model.safetensors": st})
        os.symlink("/etc/passwd", os.path.join(repo, "snapshots", REV, "tokenizer.json"))
        p, doc = self.inspect(repo)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("suspicious-layout", self.finding_kinds(doc))
        for f in doc["files"]:
            self.assertNotEqual(os.path.realpath(f["path"]), "/etc/passwd")

    def test_hub_zoo_snapshot(self):
        if not ZOO or not os.path.isdir(ZOO):
            self.skipTest("zoo missing")
        snap = os.path.join(ZOO, ZOO_REPO, "snapshots", ZOO_REV)
        for path in (snap, os.path.join(ZOO, ZOO_REPO)):
            p, doc = self.inspect(path)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(doc["layout"], "hf-hub-cache")
            self.assertEqual(doc["findings"], [])
            expected = {snapshot_blob_name(os.path.join(snap, n)) for n in os.listdir(snap)}
            self.assertEqual(len(doc["files"]), 4)
            self.assertEqual({f["sha256"] for f in doc["files"]}, expected)
            self.assertTrue(any(f["role"] == "weights" and f["format"] == "safetensors" for f in doc["files"]))

    # ---- Ollama store ----------------------------------------------------

    def test_ollama_by_name_and_by_manifest(self):
        store = OllamaStore(os.path.join(self.tmp, "store"))
        for args in (["--ollama-store", store.root, "ollama:mymodel:7b"], [store.manifest]):
            p, doc = self.inspect(*args)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(doc["layout"], "ollama")
            self.assertEqual(doc["format"], "gguf")
            self.assertEqual(doc["findings"], [])
            shas = {f["sha256"] for f in doc["files"]}
            for hexd in (store.model, store.config, store.template, store.params):
                self.assertIn(hexd, shas)
            weights = [f for f in doc["files"] if f["role"] == "weights"]
            self.assertEqual(len(weights), 1)
            self.assertEqual(weights[0]["sha256"], store.model)
            self.assertEqual(len(doc["tensors"]), 1)
            self.assertEqual(doc["tensors"][0]["shape"], [2, 4])

    def test_ollama_via_env(self):
        store = OllamaStore(os.path.join(self.tmp, "store"))
        env = dict(os.environ, OLLAMA_MODELS=store.root, HOME=self.tmp)
        p = subprocess.run([BIN, "inspect", "--json", "ollama:mymodel:7b"], capture_output=True, text=True,
                           timeout=300, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["layout"], "ollama")

    def test_ollama_tampered_blob(self):
        store = OllamaStore(os.path.join(self.tmp, "store"))
        path = store.blob_path(store.model)
        with open(path, "r+b") as f:           # same size, still a valid GGUF
            f.seek(-4, os.SEEK_END)
            f.write(struct.pack("<f", 123.0))
        p, doc = self.inspect("--ollama-store", store.root, "ollama:mymodel:7b")
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("blob-digest-mismatch", self.finding_kinds(doc))

    def test_ollama_bad_digest_string(self):
        store = OllamaStore(os.path.join(self.tmp, "store"))
        bad = "sha256:" + store.model.upper()
        manifest = store.write_manifest(store.manifest_doc(model_digest=bad))
        with open(manifest, "rb") as f:
            offset = f.read().index(b'"' + bad.encode() + b'"')
        p, _ = self.inspect(manifest)
        self.assertEqual(p.returncode, 2, p.stderr)
        lines = [l for l in p.stderr.splitlines() if l.startswith("modelprov: error: ")]
        self.assertEqual(len(lines), 1, p.stderr)
        m = re.match(r"modelprov: error: (.*): byte (\d+): (.+)$", lines[0])
        self.assertTrue(m, lines[0])
        self.assertEqual(m.group(1), manifest)
        self.assertEqual(int(m.group(2)), offset)
        self.assertIn("digest", m.group(3))

    def test_ollama_missing_blob(self):
        store = OllamaStore(os.path.join(self.tmp, "store"))
        os.unlink(store.blob_path(store.model))
        p, _ = self.inspect("--ollama-store", store.root, "ollama:mymodel:7b")
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(store.model, p.stderr)
        self.assertIn("modelprov: error: ", p.stderr)

    def test_ollama_bad_name(self):
        store = OllamaStore(os.path.join(self.tmp, "store"))
        for name in ("ollama:../../etc/passwd", "ollama:a/b/c/d", "ollama:mymodel:13b"):
            p, _ = self.inspect("--ollama-store", store.root, name)
            self.assertEqual(p.returncode, 2, name + ": " + p.stderr)
            self.assertIn("modelprov: error: ", p.stderr)


if __name__ == "__main__":
    unittest.main()
