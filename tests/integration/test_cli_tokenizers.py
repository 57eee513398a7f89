#!/usr/bin/env python3
"""CLI contract for the tokenizer readers.

`modelprov inspect --json DIR` on small model directories written here
(config.json + a one-tensor safetensors file + the tokenizer file under
test): the tokenizer kind, vocabulary size and digest for each tokenizer
file kind; a malformed tokenizer file is a finding ("unparseable-file",
exit 1) and does not stop the inspection; the zoo's real tokenizers.

Environment: MODELPROV_BIN (the modelprov binary), MODELPROV_ZOO.
Standard library only.
"""
import hashlib
import json
import os
import struct
import subprocess
import tempfile
import unittest

BIN = os.environ.get("MODELPROV_BIN", "modelprov")
ZOO = os.environ.get("MODELPROV_ZOO", "")


def run(*args):
    p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def inspect_json(path):
    rc, out, err = run("inspect", "--json", path)
    if rc not in (0, 1):
        raise AssertionError(f"modelprov exited {rc}: {err}")
    return rc, json.loads(out)


def vocab_digest(tokens):
    """sha256 over the id-ordered tokens, each followed by NUL (None: hole)."""
    h = hashlib.sha256()
    for t in tokens:
        h.update((t or "").encode() + b"\0")
    return h.hexdigest()


# ---- protobuf by hand (sentencepiece ModelProto) ----

def varint(v):
    out = bytearray()
    while True:
        c = v & 0x7F
        v >>= 7
        if v:
            out.append(c | 0x80)
        else:
            out.append(c)
            return bytes(out)


def pb_field(number, wire_type, payload):
    tag = varint(number << 3 | wire_type)
    if wire_type == 0:
        return tag + varint(payload)
    if wire_type == 2:
        return tag + varint(len(payload)) + payload
    return tag + payload


def spm_piece(piece, score, ptype=None):
    m = pb_field(1, 2, piece.encode()) + pb_field(2, 5, struct.pack("<f", score))
    if ptype is not None:
        m += pb_field(3, 0, ptype)
    return pb_field(1, 2, m)


def spm_model(pieces, model_type=None, byte_fallback=None):
    out = b"".join(spm_piece(*p) for p in pieces)
    spec = b""
    if model_type is not None:
        spec += pb_field(3, 0, model_type)
    if byte_fallback is not None:
        spec += pb_field(35, 0, int(byte_fallback))
    if model_type is not None or byte_fallback is not None:
        out += pb_field(2, 2, spec)
    return out


# ---- a tiny valid model directory ----

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 2,
    "num_hidden_layers": 1,
    "num_attention_heads": 1,
    "vocab_size": 8,
}


def safetensors_bytes():
    header = {"model.embed_tokens.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)


def write_model_dir(root, files):
    """config.json + model.safetensors + files {name: bytes|str}."""
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump(CONFIG, f)
    with open(os.path.join(root, "model.safetensors"), "wb") as f:
        f.write(safetensors_bytes())
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)


BPE_JSON = {
    "version": "1.0",
    "added_tokens": [{"id": 0, "content": "<unk>", "special": True},
                     {"id": 6, "content": "<|end|>", "special": True}],
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False},
    "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": False,
              "vocab": {"<unk>": 0, "a": 1, "b": 2, "ab": 3, "\u0120a": 4, "\u0120": 5},
              "merges": ["a b", "\u0120 a"]},
}
BPE_TOKENS = ["<unk>", "a", "b", "ab", "\u0120a", "\u0120", "<|end|>"]

UNIGRAM_JSON = {
    "added_tokens": [{"id": 3, "content": "<mask>", "special": True}],
    "pre_tokenizer": {"type": "Sequence",
                      "pretokenizers": [{"type": "WhitespaceSplit"}, {"type": "Metaspace"}]},
    "model": {"type": "Unigram", "unk_id": 0,
              "vocab": [["<unk>", 0.0], ["\u2581a", -1.5], ["b", -2.25]]},
}
UNIGRAM_TOKENS = ["<unk>", "\u2581a", "b", "<mask>"]

WORDPIECE_JSON = {
    "pre_tokenizer": {"type": "BertPreTokenizer"},
    "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
              "vocab": {"[PAD]": 0, "[UNK]": 1, "hello": 2, "##lo": 3, "world": 4}},
}
WORDPIECE_TOKENS = ["[PAD]", "[UNK]", "hello", "##lo", "world"]


class TokenizerKinds(unittest.TestCase):
    def inspect_dir(self, files):
        with tempfile.TemporaryDirectory() as d:
            write_model_dir(d, files)
            rc, out = inspect_json(d)
        self.assertEqual(out["findings"], [])
        self.assertEqual(rc, 0)
        self.assertEqual(len(out["tensors"]), 1)     # the model itself was read
        self.assertIsNotNone(out["tokenizer"])
        return out["tokenizer"]

    def test_tokenizer_json_bpe(self):
        tok = self.inspect_dir({"tokenizer.json": json.dumps(BPE_JSON)})
        self.assertEqual(tok["kind"], "bpe")
        self.assertEqual(tok["vocab_size"], 7)
        self.assertEqual(tok["merges"], 2)
        self.assertEqual(tok["added_tokens"], 2)
        self.assertEqual(tok["pre_tokenizer"], "ByteLevel")
        self.assertEqual(tok["unk_token"], "<unk>")
        self.assertEqual(tok["vocab_sha256"], vocab_digest(BPE_TOKENS))

    def test_tokenizer_json_unigram(self):
        tok = self.inspect_dir({"tokenizer.json": json.dumps(UNIGRAM_JSON)})
        self.assertEqual(tok["kind"], "unigram")
        self.assertEqual(tok["vocab_size"], 4)
        self.assertEqual(tok["merges"], 0)
        self.assertEqual(tok["pre_tokenizer"], "WhitespaceSplit+Metaspace")
        self.assertEqual(tok["unk_token"], "<unk>")
        self.assertEqual(tok["vocab_sha256"], vocab_digest(UNIGRAM_TOKENS))

    def test_tokenizer_json_wordpiece(self):
        tok = self.inspect_dir({"tokenizer.json": json.dumps(WORDPIECE_JSON)})
        self.assertEqual(tok["kind"], "wordpiece")
        self.assertEqual(tok["vocab_size"], 5)
        self.assertEqual(tok["unk_token"], "[UNK]")
        self.assertEqual(tok["pre_tokenizer"], "BertPreTokenizer")
        self.assertEqual(tok["vocab_sha256"], vocab_digest(WORDPIECE_TOKENS))

    def test_tokenizer_config_applies(self):
        cfg = {"tokenizer_class": "PreTrainedTokenizerFast",
               "bos_token": {"content": "<s>", "lstrip": False}, "eos_token": "</s>",
               "pad_token": None, "chat_template": 5}
        tok = self.inspect_dir({"tokenizer.json": json.dumps(WORDPIECE_JSON),
                                "tokenizer_config.json": json.dumps(cfg)})
        self.assertEqual(tok["bos_token"], "<s>")
        self.assertEqual(tok["eos_token"], "</s>")
        self.assertIsNone(tok["pad_token"])
        self.assertEqual(tok["model_name"], "PreTrainedTokenizerFast")

    def test_vocab_merges(self):
        vocab = {"a": 0, "b": 1, "ab": 2, "#": 3, "##": 4, "\u0120the": 5}
        merges = "#version: 0.2\na b\n# #\n\n"
        tok = self.inspect_dir({"vocab.json": json.dumps(vocab), "merges.txt": merges})
        self.assertEqual(tok["kind"], "bpe")
        self.assertEqual(tok["vocab_size"], 6)
        self.assertEqual(tok["merges"], 2)
        self.assertEqual(tok["vocab_sha256"], vocab_digest(["a", "b", "ab", "#", "##", "\u0120the"]))

    def test_sentencepiece_bpe(self):
        pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3), ("\u2581the", -1.0, None),
                  ("<0x41>", 0.0, 6)]
        tok = self.inspect_dir({"tokenizer.model": spm_model(pieces, model_type=2, byte_fallback=True)})
        self.assertEqual(tok["kind"], "sentencepiece-bpe")
        self.assertEqual(tok["vocab_size"], 5)
        self.assertEqual(tok["unk_token"], "<unk>")
        self.assertEqual(tok["vocab_sha256"], vocab_digest([p[0] for p in pieces]))

    def test_sentencepiece_unigram_default(self):
        pieces = [("<unk>", 0.0, 2), ("a", -1.0, None), ("b", -2.0, None)]
        tok = self.inspect_dir({"tokenizer.model": spm_model(pieces)})
        self.assertEqual(tok["kind"], "sentencepiece-unigram")
        self.assertEqual(tok["vocab_size"], 3)


class MalformedTokenizers(unittest.TestCase):
    """An auxiliary file that does not parse is a finding, not a failure."""

    def inspect_bad(self, files, bad_file):
        with tempfile.TemporaryDirectory() as d:
            write_model_dir(d, files)
            rc, out = inspect_json(d)
            rc_text, _, _ = run("inspect", d)
        self.assertEqual(rc, 1)
        self.assertEqual(rc_text, 1)
        self.assertEqual(len(out["tensors"]), 1)     # the weights were still read
        self.assertEqual(out["format"], "safetensors")
        found = [f for f in out["findings"] if f["kind"] == "unparseable-file"]
        self.assertEqual(len(found), 1, out["findings"])
        self.assertTrue(found[0]["file"].endswith(bad_file), found[0])
        return out, found[0]

    def test_invalid_json(self):
        text = '{"model": {"type": "BPE", "vocab": {"a": 0,}}}'
        out, f = self.inspect_bad({"tokenizer.json": text}, "tokenizer.json")
        self.assertIsNone(out["tokenizer"])
        self.assertEqual(f["offset"], text.index(",}") + 2)     # jansson: just past the '}'
        self.assertIn("invalid JSON", f["detail"])

    def test_conflicting_ids(self):
        text = json.dumps({"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}})
        out, f = self.inspect_bad({"tokenizer.json": text}, "tokenizer.json")
        self.assertIsNone(out["tokenizer"])
        self.assertIn('model.vocab["b"]: id 0 of "b" is already "a"', f["detail"])

    def test_huge_id(self):
        text = json.dumps({"model": {"type": "WordLevel", "vocab": {"a": 2 ** 40}}})
        _, f = self.inspect_bad({"tokenizer.json": text}, "tokenizer.json")
        self.assertIn("exceeds the limit", f["detail"])

    def test_bad_merges_line(self):
        merges = "#version: 0.2\na b\nab\n"
        out, f = self.inspect_bad({"vocab.json": json.dumps({"a": 0, "b": 1, "ab": 2}),
                                   "merges.txt": merges}, "merges.txt")
        self.assertIsNone(out["tokenizer"])
        self.assertEqual(f["offset"], merges.index("ab\n"))
        self.assertIn("line 3", f["detail"])

    def test_truncated_sentencepiece(self):
        model = spm_model([("<unk>", 0.0, 2), ("hello", -1.0, None)], model_type=1)
        second = len(spm_piece("<unk>", 0.0, 2))
        cut = model[:second + 4]
        out, f = self.inspect_bad({"tokenizer.model": cut}, "tokenizer.model")
        self.assertIsNone(out["tokenizer"])
        self.assertEqual(f["offset"], second)
        self.assertIn("truncated", f["detail"])

    def test_sentencepiece_wrong_wire_type(self):
        model = pb_field(1, 0, 5)     # pieces as a varint
        _, f = self.inspect_bad({"tokenizer.model": model}, "tokenizer.model")
        self.assertEqual(f["offset"], 0)
        self.assertIn("wire type", f["detail"])

    def test_fallback_to_next_tokenizer_file(self):
        """A broken tokenizer.json is reported; the next file still gives the tokenizer."""
        pieces = [("<unk>", 0.0, 2), ("x", -1.0, None)]
        out, _ = self.inspect_bad({"tokenizer.json": "{", "tokenizer.model": spm_model(pieces)},
                                  "tokenizer.json")
        self.assertIsNotNone(out["tokenizer"])
        self.assertEqual(out["tokenizer"]["kind"], "sentencepiece-unigram")
        self.assertEqual(out["tokenizer"]["vocab_size"], 2)


@unittest.skipUnless(ZOO and os.path.isdir(ZOO), "zoo missing")
class ZooTokenizers(unittest.TestCase):
    def test_llama_base_1(self):
        rc, out = inspect_json(os.path.join(ZOO, "llama", "base-1"))
        self.assertEqual(rc, 0)
        tok = out["tokenizer"]
        self.assertEqual(tok["kind"], "bpe")
        self.assertEqual(tok["vocab_size"], 4000)
        self.assertEqual(tok["merges"], 5296)
        self.assertEqual(tok["bos_token"], "<s>")
        self.assertEqual(tok["eos_token"], "</s>")
        self.assertEqual(tok["vocab_sha256"],
                         "260d69d5356566f58fd8395de74b5325582040536ed2444b277de5f2303f23b7")

    def test_gpt2_base_1(self):
        rc, out = inspect_json(os.path.join(ZOO, "gpt2", "base-1"))
        self.assertEqual(rc, 0)
        tok = out["tokenizer"]
        self.assertEqual(tok["kind"], "bpe")
        self.assertEqual(tok["vocab_size"], 2837)
        self.assertEqual(tok["merges"], 3801)
        self.assertEqual(tok["pre_tokenizer"], "ByteLevel")


if __name__ == "__main__":
    unittest.main()
