#!/usr/bin/env python3
"""CLI contract of `modelprov inspect` on PyTorch zip checkpoints.

Checkpoints are generated here with the standard `pickle` and `zipfile`
modules, laid out like torch.save (ARCHIVE/data.pkl, ARCHIVE/data/KEY,
ARCHIVE/byteorder); torch itself is not needed: a stand-in `torch` module
makes pickle write the real global names (torch._utils._rebuild_tensor_v2,
torch.HalfStorage ...).  Malicious pickles reference os.system,
builtins.eval, subprocess.Popen (GLOBAL and STACK_GLOBAL); pickling them
executes nothing, and modelprov must not execute them either: the marker
file their payload would create must never appear.

Expectations: exit 0 on a clean checkpoint, 1 with an "unsafe-pickle-global"
finding whose offset is the opcode's offset in the file, 2 with one line
"modelprov: error: FILE: byte N: REASON" on malformed input.

Standard library only.  Env: MODELPROV_BIN (the binary), MODELPROV_ZOO."""

import collections
import hashlib
import io
import json
import os
import pickle
import pickletools
import re
import struct
import subprocess
import sys
import tempfile
import types
import unittest
import zipfile

BIN = os.environ.get("MODELPROV_BIN", "modelprov")
ZOO = os.environ.get("MODELPROV_ZOO", "")

ERROR_RE = re.compile(r"^modelprov: error: (?P<file>.+?): byte (?P<offset>\d+): (?P<reason>.+)$")


def run(*args):
    return subprocess.run([BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, errors="replace", timeout=120)


# ---- a stand-in torch, so that pickle writes torch's global names ----------------

def _install_fake_torch():
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    torch._utils = utils

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called")

    def _rebuild_parameter(*args):
        raise AssertionError("never called")

    for f in (_rebuild_tensor_v2, _rebuild_parameter):
        f.__module__ = "torch._utils"
        f.__qualname__ = f.__name__
        setattr(utils, f.__name__, f)
    storages = {}
    for name in ("HalfStorage", "FloatStorage", "BFloat16Storage", "LongStorage"):
        cls = type(name, (), {"__module__": "torch"})
        setattr(torch, name, cls)
        storages[name] = cls
    sys.modules.setdefault("torch", torch)
    sys.modules.setdefault("torch._utils", utils)
    return sys.modules["torch"], sys.modules["torch._utils"]


TORCH, UTILS = _install_fake_torch()
ELSIZE = {"HalfStorage": 2, "FloatStorage": 4, "BFloat16Storage": 2, "LongStorage": 8}
DTYPE = {"HalfStorage": "F16", "FloatStorage": "F32", "BFloat16Storage": "BF16", "LongStorage": "I64"}


class Storage:
    def __init__(self, kind, key, numel):
        self.cls, self.key, self.numel = getattr(TORCH, kind), key, numel


class Tensor:
    """Pickles like a torch.Tensor: _rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    def __init__(self, storage, offset, shape, stride):
        self.args = (storage, offset, tuple(shape), tuple(stride), False, collections.OrderedDict())

    def __reduce_ex__(self, protocol):
        return (UTILS._rebuild_tensor_v2, self.args)


class Parameter:
    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce_ex__(self, protocol):
        return (UTILS._rebuild_parameter, (self.tensor, True, collections.OrderedDict()))


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def torch_pickle(obj, protocol=2, fix_imports=False):
    b = io.BytesIO()
    TorchPickler(b, protocol=protocol, fix_imports=fix_imports).dump(obj)
    return b.getvalue()


# Payloads: pickling them runs nothing; loading them with pickle would.
class EvilSystem:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class EvilEval:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (eval, (f"open({self.path!r}, 'w')",))


class EvilPopen:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (subprocess.Popen, (["touch", self.path],))


def binunicode(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def short_binunicode(s):
    b = s.encode()
    return b"\x8c" + struct.pack("<B", len(b)) + b


def write_checkpoint(path, pkl, storages, prefix="archive", compress=(), extra=()):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(prefix + "/data.pkl", pkl)
        z.writestr(prefix + "/byteorder", "little")
        for key, data in storages.items():
            method = zipfile.ZIP_DEFLATED if key in compress else zipfile.ZIP_STORED
            z.writestr(zipfile.ZipInfo(prefix + "/data/" + key), data, compress_type=method)
        for name, data in extra:
            z.writestr(name, data)
        z.writestr(prefix + "/version", "3\n")


def data_offset(path, name):
    """Absolute offset of an entry's data: after its local header."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        h = f.read(30)
    n, m = struct.unpack("<HH", h[26:30])
    return info.header_offset + 30 + n + m


def central_entries(path):
    """{name: offset of its central directory entry}, and the end record's offset."""
    with open(path, "rb") as f:
        data = f.read()
    eocd = data.rindex(b"PK\x05\x06")
    cd = struct.unpack("<I", data[eocd + 16:eocd + 20])[0]
    out, pos = {}, cd
    while data[pos:pos + 4] == b"PK\x01\x02":
        n, m, k = struct.unpack("<HHH", data[pos + 28:pos + 34])
        out[data[pos + 46:pos + 46 + n].decode()] = pos
        pos += 46 + n + m + k
    return out, eocd


class TorchCli(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="modelprov-torch-")
        self.dir = self.tmp.name
        self.marker = os.path.join(self.dir, "PWNED")

    def tearDown(self):
        self.assertFalse(os.path.exists(self.marker), "a pickle payload was executed")
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def inspect_json(self, path, expect_rc):
        r = run("inspect", "--json", path)
        self.assertEqual(r.returncode, expect_rc, f"stdout={r.stdout!r} stderr={r.stderr!r}")
        return json.loads(r.stdout)

    def assert_error(self, path, offset, *needles):
        r = run("inspect", path)
        self.assertEqual(r.returncode, 2, f"stdout={r.stdout!r} stderr={r.stderr!r}")
        lines = [l for l in r.stderr.splitlines() if l.startswith("modelprov: error:")]
        self.assertEqual(len(lines), 1, r.stderr)
        m = ERROR_RE.match(lines[0])
        self.assertIsNotNone(m, lines[0])
        self.assertTrue(m.group("file").endswith(os.path.basename(path)), lines[0])
        if offset is not None:
            self.assertEqual(int(m.group("offset")), offset, lines[0])
        for n in needles:
            self.assertIn(n, m.group("reason"), lines[0])

    # ---- a clean checkpoint -------------------------------------------------------

    def state_dict(self):
        s0, s1 = Storage("HalfStorage", "0", 6), Storage("FloatStorage", "1", 8)
        sd = collections.OrderedDict()
        sd["layer.weight"] = Tensor(s0, 0, (2, 3), (3, 1))
        sd["layer.bias"] = Parameter(Tensor(s1, 2, (3,), (1,)))
        sd["layer.t"] = Tensor(s1, 0, (2, 2), (1, 2))
        sd["ids"] = Tensor(Storage("LongStorage", "2", 3), 0, (3,), (1,))
        sd._metadata = collections.OrderedDict({"": {"version": 1}})
        storages = {"0": struct.pack("<6H", *range(1, 7)),
                    "1": struct.pack("<8f", *range(8)),
                    "2": struct.pack("<3q", 5, -1, 7)}
        return sd, storages

    def test_clean_checkpoint(self):
        sd, storages = self.state_dict()
        for proto in (2, 4, 5):
            with self.subTest(protocol=proto):
                p = self.path(f"model{proto}.pt")
                write_checkpoint(p, torch_pickle({"model": sd, "epoch": 7}, proto), storages)
                doc = self.inspect_json(p, 0)
                self.assertEqual(doc["format"], "pytorch-zip")
                self.assertEqual(doc["layout"], "file")
                self.assertEqual(doc["findings"], [])
                self.assertEqual(len(doc["files"]), 1)
                f = doc["files"][0]
                with open(p, "rb") as fh:
                    content = fh.read()
                self.assertEqual(f["size"], len(content))
                self.assertEqual(f["sha256"], hashlib.sha256(content).hexdigest())
                self.assertEqual(f["format"], "pytorch-zip")
                self.assertEqual(f["role"], "weights")
                t = {x["name"]: x for x in doc["tensors"]}
                self.assertEqual([x["name"] for x in doc["tensors"]],
                                 ["model.layer.weight", "model.layer.bias", "model.layer.t", "model.ids"])
                d0 = data_offset(p, "archive/data/0")
                d1 = data_offset(p, "archive/data/1")
                d2 = data_offset(p, "archive/data/2")
                w = t["model.layer.weight"]
                self.assertEqual((w["dtype"], w["shape"], w["offset"], w["length"]), ("F16", [2, 3], d0, 12))
                b = t["model.layer.bias"]
                self.assertEqual((b["dtype"], b["shape"], b["offset"], b["length"]), ("F32", [3], d1 + 8, 12))
                self.assertEqual(content[b["offset"]:b["offset"] + 12], struct.pack("<3f", 2, 3, 4))
                i = t["model.ids"]
                self.assertEqual((i["dtype"], i["offset"], i["length"]), ("I64", d2, 24))
                self.assertEqual(t["model.layer.t"]["shape"], [2, 2])

    # ---- malicious pickles ------------------------------------------------------

    def check_findings(self, p, pkl, expected):
        """expected: list of (module.name, opcode offset in data.pkl)."""
        before = set(os.listdir(self.dir))
        doc = self.inspect_json(p, 1)
        base = data_offset(p, "archive/data.pkl")
        got = [(f["kind"], f["offset"], f["detail"]) for f in doc["findings"]]
        want = [("unsafe-pickle-global", base + off, f"pickle references {name} (not executed)")
                for name, off in expected]
        self.assertEqual(got, want)
        for f in doc["findings"]:
            self.assertTrue(f["file"].endswith(os.path.basename(p)))
        # the plain view lists them too, with the same exit code
        r = run("inspect", p)
        self.assertEqual(r.returncode, 1, r.stderr)
        for name, _ in expected:
            self.assertIn(name, r.stdout)
        self.assertEqual(set(os.listdir(self.dir)), before)
        self.assertFalse(os.path.exists(self.marker))
        return doc

    def test_os_system_hand_written(self):
        # What malicious checkpoints contain: GLOBAL 'os system' + REDUCE.
        pkl = (b"\x80\x02}q\x00(" + binunicode("payload") + b"q\x01cos\nsystem\nq\x02"
               + binunicode(f"touch {self.marker}") + b"\x85q\x03Rq\x04u.")
        pickletools.dis(pkl, out=io.StringIO())        # a well-formed pickle
        p = self.path("evil.pt")
        write_checkpoint(p, pkl, {})
        self.check_findings(p, pkl, [("os.system", pkl.index(b"cos\nsystem"))])

    def test_payloads_from_pickle(self):
        sd, storages = self.state_dict()
        system = "posix.system" if os.name == "posix" else "nt.system"
        cases = [
            (system, EvilSystem(f"touch {self.marker}"), 2, False),
            ("builtins.eval", EvilEval(self.marker), 2, False),
            ("__builtin__.eval", EvilEval(self.marker), 2, True),      # Python 2 names
            ("subprocess.Popen", EvilPopen(self.marker), 2, False),
            (system, EvilSystem(f"touch {self.marker}"), 4, False),    # STACK_GLOBAL
            ("subprocess.Popen", EvilPopen(self.marker), 5, False),
        ]
        for i, (name, payload, proto, fix) in enumerate(cases):
            with self.subTest(name=name, protocol=proto):
                obj = collections.OrderedDict(sd)
                obj["x"] = payload
                pkl = torch_pickle(obj, proto, fix)
                ops = list(pickletools.genops(pkl))
                opname = "GLOBAL" if proto < 4 else "STACK_GLOBAL"
                if proto < 4:
                    offs = [pos for op, arg, pos in ops if op.name == "GLOBAL" and arg.replace(" ", ".") == name]
                else:
                    offs = []
                    for j, (op, arg, pos) in enumerate(ops):
                        if op.name == "STACK_GLOBAL":
                            strs = [a for o, a, _ in ops[:j] if o.name == "SHORT_BINUNICODE"]
                            if ".".join(strs[-2:]) == name:
                                offs.append(pos)
                self.assertEqual(len(offs), 1, (opname, name))
                p = self.path(f"evil{i}.pt")
                write_checkpoint(p, pkl, storages)
                doc = self.check_findings(p, pkl, [(name, offs[0])])
                # the tensors around the payload are still listed
                self.assertEqual(len(doc["tensors"]), 4)

    def test_stack_global_hand_written(self):
        pkl = (b"\x80\x04" + short_binunicode("builtins") + b"\x94" + short_binunicode("exec") + b"\x94\x93\x94"
               + short_binunicode(f"open({self.marker!r}, 'w')") + b"\x94\x85\x94R\x94.")
        pickletools.dis(pkl, out=io.StringIO())
        p = self.path("sg.pt")
        write_checkpoint(p, pkl, {})
        self.check_findings(p, pkl, [("builtins.exec", pkl.index(b"\x93"))])

    # ---- malformed files --------------------------------------------------------

    def good(self, name="good.pt"):
        sd, storages = self.state_dict()
        p = self.path(name)
        write_checkpoint(p, torch_pickle(sd), storages)
        return p

    def patch(self, src, name, at, fmt, value):
        with open(src, "rb") as f:
            data = bytearray(f.read())
        struct.pack_into(fmt, data, at, *(value if isinstance(value, tuple) else (value,)))
        p = self.path(name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def test_truncated_zip(self):
        p = self.good()
        with open(p, "rb") as f:
            data = f.read()
        t = self.path("trunc.pt")
        with open(t, "wb") as f:
            f.write(data[:len(data) // 2])
        self.assert_error(t, 0, "end of central directory")

    def test_eocd_outside(self):
        p = self.good()
        _, eocd = central_entries(p)
        size = os.path.getsize(p)
        q = self.patch(p, "eocd.pt", eocd + 16, "<I", size + 1000)
        self.assert_error(q, eocd + 16, "central directory")

    def test_entry_data_outside(self):
        p = self.good()
        cde, _ = central_entries(p)
        at = cde["archive/data/1"]
        q = self.patch(p, "outside.pt", at + 20, "<II", (1 << 30, 1 << 30))
        self.assert_error(q, at + 20, "archive/data/1", "runs past")

    def test_data_pkl_missing(self):
        sd, storages = self.state_dict()
        p = self.path("nopkl.pt")
        with zipfile.ZipFile(p, "w") as z:
            for k, v in storages.items():
                z.writestr("archive/data/" + k, v)
        self.assert_error(p, 0, "data.pkl")

    def malformed_pickle(self, name, pkl, pkl_offset, *needles):
        p = self.path(name)
        write_checkpoint(p, pkl, {})
        self.assert_error(p, data_offset(p, "archive/data.pkl") + pkl_offset, *needles)

    def test_pickle_truncated(self):
        pkl = torch_pickle({"a": 1})[:-1]      # no STOP
        self.malformed_pickle("nostop.pt", pkl, len(pkl), "no STOP")

    def test_pickle_stack_underflow(self):
        self.malformed_pickle("underflow.pt", b"\x80\x02N00.", 4, "stack underflow")

    def test_pickle_memo_out_of_range(self):
        self.malformed_pickle("memo.pt", b"\x80\x02}q\x00h\x07.", 5, "memo index 7")

    def test_pickle_deep_nesting(self):
        pkl = b"]" * 10000 + b"a" * 9999 + b"."
        self.malformed_pickle("deep.pt", pkl, 10000 + 64, "nested deeper")

    def test_pickle_huge_binunicode(self):
        self.malformed_pickle("huge.pt", b"\x80\x02X\xff\xff\xff\x7fabc.", 2, "2147483647 bytes")

    def test_pickle_malformed_after_payload(self):
        # Python would run os.system before reaching the error: say so.
        pkl = b"\x80\x02cos\nsystem\n" + binunicode("id") + b"\x85Rh\x09."
        self.malformed_pickle("payload-then-error.pt", pkl, pkl.index(b"h\x09"), "memo index 9",
                              "references os.system")

    def test_storage_key_missing(self):
        sd, storages = self.state_dict()
        del storages["1"]
        p = self.path("nokey.pt")
        write_checkpoint(p, torch_pickle(sd), storages)
        self.assert_error(p, data_offset(p, "archive/data.pkl"), "archive/data/1", "missing")

    def test_storage_too_small_for_shape(self):
        sd, storages = self.state_dict()
        sd["layer.weight"] = Tensor(Storage("HalfStorage", "0", 6), 2, (2, 3), (3, 1))
        p = self.path("small.pt")
        write_checkpoint(p, torch_pickle(sd), storages)
        self.assert_error(p, data_offset(p, "archive/data/0"), "layer.weight", "past the end")

    def test_storage_size_mismatch(self):
        sd, storages = self.state_dict()
        storages["0"] = storages["0"][:10]
        p = self.path("short.pt")
        write_checkpoint(p, torch_pickle(sd), storages)
        self.assert_error(p, data_offset(p, "archive/data/0"), "holds 10 bytes")

    def test_compressed_storage(self):
        sd, storages = self.state_dict()
        p = self.path("deflate.pt")
        write_checkpoint(p, torch_pickle(sd), storages, compress=("1",))
        self.assert_error(p, data_offset(p, "archive/data/1"), "compressed")

    def test_big_endian(self):
        sd, storages = self.state_dict()
        p = self.path("big.pt")
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("archive/data.pkl", torch_pickle(sd))
            z.writestr("archive/byteorder", "big")
            for k, v in storages.items():
                z.writestr("archive/data/" + k, v)
        self.assert_error(p, data_offset(p, "archive/byteorder"), "big-endian")

    def test_legacy_torch_pickle(self):
        p = self.path("legacy.pt")
        with open(p, "wb") as f:
            f.write(pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2) + pickle.dumps(1001, protocol=2))
        self.assert_error(p, 0)

    # ---- the zoo ----------------------------------------------------------------

    def zoo_check(self, family, n_tensors):
        if not ZOO or not os.path.isdir(ZOO):
            self.skipTest("zoo missing")
        pt = os.path.join(ZOO, family, "base-1-pt", "pytorch_model.bin")
        st = os.path.join(ZOO, family, "base-1", "model.safetensors")
        doc = self.inspect_json(pt, 0)
        self.assertEqual(doc["format"], "pytorch-zip")
        self.assertEqual(doc["findings"], [])
        with open(st, "rb") as f:
            sdata = f.read()
        hlen = struct.unpack("<Q", sdata[:8])[0]
        header = json.loads(sdata[8:8 + hlen])
        header.pop("__metadata__", None)
        with open(pt, "rb") as f:
            pdata = f.read()
        self.assertEqual(len(doc["tensors"]), n_tensors)
        self.assertEqual({t["name"] for t in doc["tensors"]}, set(header))
        for t in doc["tensors"]:
            h = header[t["name"]]
            self.assertEqual(t["dtype"], h["dtype"], t["name"])
            self.assertEqual(t["shape"], h["shape"], t["name"])
            b, e = h["data_offsets"]
            self.assertEqual(t["length"], e - b)
            self.assertEqual(pdata[t["offset"]:t["offset"] + t["length"]], sdata[8 + hlen + b:8 + hlen + e],
                             t["name"])

    def test_zoo_llama(self):
        self.zoo_check("llama", 39)

    def test_zoo_gpt2(self):
        self.zoo_check("gpt2", 52)


if __name__ == "__main__":
    unittest.main()
