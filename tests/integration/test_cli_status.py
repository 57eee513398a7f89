#!/usr/bin/env python3
"""`modelprov status`: the agent's state DB read-only, as a table and as JSON.

The state DB is written by tests/unit/agent_state_fixture.c through the
agent's own state library (argv[1] or $MODELPROV_STATE_FIXTURE): enrolled, two
roots (one missing), one model with a finding, a finding about a file that is
no model, one event acknowledged and two pending.  Checks the data in both
forms, that the host key never appears, that the file is not changed, that it
reads while another process holds a write transaction open, and the errors
(no state, not a state DB, usage)."""
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

BIN = os.environ.get("MODELPROV_BIN", "build/cli/modelprov")
FIXTURE = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MODELPROV_STATE_FIXTURE",
                                                                "build/tests/agent_state_fixture")
del sys.argv[1:]


def run(*args):
    return subprocess.run([BIN, "status", *args], capture_output=True, text=True, timeout=60)


class StatusTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.state_dir = cls.tmp.name
        cls.db = os.path.join(cls.state_dir, "state.db")
        p = subprocess.run([FIXTURE, cls.db], capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise AssertionError(f"fixture failed: {p.stderr}")
        cls.fx = json.loads(p.stdout)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def assert_no_key(self, p):
        self.assertNotIn(self.fx["host_key"], p.stdout + p.stderr)
        self.assertNotIn(self.fx["host_key"][:16], p.stdout + p.stderr)

    def test_table(self):
        before = os.stat(self.db)
        p = run("--state-dir", self.state_dir)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = p.stdout
        self.assert_no_key(p)
        self.assertIn(f"host id:       {self.fx['host_id']}", out)
        self.assertIn("collector:     collector.example:7443", out)
        self.assertRegex(out, r"last contact:  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(4[2-9] s ago\)")
        self.assertRegex(out, r"last error:    \S+Z \([5-9] s ago\): collector unreachable: connection refused\n")
        self.assertRegex(out, rf"outbox:        {self.fx['pending']} events pending, .*oldest observed .* s ago\)")
        self.assertIn("acknowledged through #1, sent through #1", out)
        # roots: the existing one watched, the missing one said so
        self.assertRegex(out, rf"(?m)^{self.fx['root']}\s+yes\s+watched$")
        self.assertRegex(out, r"(?m)^/nonexistent/models\s+no\s+missing \(retried\)$")
        # the model: path, name, short digest, format
        self.assertRegex(out, rf"(?m)^{self.fx['root']}\s+{self.fx['name']}\s+{self.fx['digest'][:12]}\s+"
                              r"safetensors\s+\d+(\.\d)? (B|KiB)\s+\d{4}-")
        self.assertNotIn(self.fx["digest"], out)
        self.assertIn("1 model\n", out)
        # findings: the model's and the unsafe pickle
        self.assertRegex(out, rf"(?m)^{self.fx['model_file']}\s+suspicious-layout\s+unexpected tensor layout$")
        self.assertRegex(out, r"(?m)^/models/evil/pytorch_model.bin\s+unsafe-pickle-global\s+global os.system$")
        self.assertIn("2 findings\n", out)
        # read-only: nothing written
        after = os.stat(self.db)
        self.assertEqual((before.st_size, before.st_mtime_ns), (after.st_size, after.st_mtime_ns))

    def test_json(self):
        p = run("--state", self.db, "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assert_no_key(p)
        j = json.loads(p.stdout)
        self.assertEqual(j["host_id"], self.fx["host_id"])
        self.assertEqual(j["collector"], "collector.example:7443")
        self.assertEqual(j["agent_version"], "0.1.0")
        self.assertNotIn("host_key", j)
        now = int(time.time() * 1000)
        self.assertTrue(42 <= j["last_contact_age_s"] <= 100, j)
        self.assertTrue(now - 100000 < j["last_contact_ms"] < now, j)
        self.assertEqual(j["last_error"], "collector unreachable: connection refused")
        self.assertIsInstance(j["last_error_at_ms"], int)
        self.assertEqual(j["outbox"]["events"], self.fx["pending"])
        self.assertEqual(j["outbox"]["bytes"], self.fx["pending_bytes"])
        self.assertEqual(j["outbox"]["acked_through"], 1)
        self.assertTrue(25 <= j["outbox"]["oldest_age_s"] <= 100, j)
        self.assertEqual([(r["path"], r["exists"]) for r in j["roots"]],
                         sorted([(self.fx["root"], True), ("/nonexistent/models", False)]))
        self.assertEqual(len(j["models"]), 1)
        m = j["models"][0]
        self.assertEqual(m["root"], self.fx["root"])
        self.assertEqual(m["name"], self.fx["name"])
        self.assertEqual(m["model_digest"], self.fx["digest"])
        self.assertEqual(m["format"], "safetensors")
        self.assertEqual(m["layout"], "file")
        self.assertGreater(m["bytes"], 512)
        self.assertEqual(m["first_seen_ms"], m["changed_at_ms"])
        self.assertEqual(sorted((f["path"], f["kind"], f["detail"]) for f in j["findings"]),
                         sorted([(self.fx["model_file"], "suspicious-layout", "unexpected tensor layout"),
                                 ("/models/evil/pytorch_model.bin", "unsafe-pickle-global", "global os.system")]))

    def test_reads_beside_a_writer(self):
        # Another process holds the write lock with an uncommitted change,
        # as the agent does mid-commit: status reads the committed state.
        w = sqlite3.connect(self.db, timeout=10, isolation_level=None)
        try:
            self.assertEqual(w.execute("PRAGMA journal_mode").fetchone()[0], "wal")
            w.execute("BEGIN IMMEDIATE")
            w.execute("DELETE FROM findings")
            p = run("--state", self.db, "--json")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(len(json.loads(p.stdout)["findings"]), 2)
        finally:
            w.execute("ROLLBACK")
            w.close()

    def test_missing_state(self):
        d = os.path.join(self.state_dir, "nowhere")
        for args in (("--state-dir", d), ("--state", os.path.join(d, "state.db"), "--json")):
            p = run(*args)
            self.assertEqual(p.returncode, 2)
            self.assertEqual(p.stdout, "")
            self.assertIn(f"no agent state at {os.path.join(d, 'state.db')} (is modelprovd running? see --state-dir)",
                          p.stderr)
        self.assertFalse(os.path.exists(d))

    def test_not_a_state_db(self):
        junk = os.path.join(self.state_dir, "junk.db")
        with open(junk, "wb") as f:
            f.write(os.urandom(8192))
        p = run("--state", junk)
        self.assertEqual(p.returncode, 2)
        self.assertIn("not a modelprov state DB", p.stderr)
        other = os.path.join(self.state_dir, "other.db")
        c = sqlite3.connect(other)
        c.execute("CREATE TABLE t (x)")
        c.commit()
        c.close()
        p = run("--state", other)
        self.assertEqual(p.returncode, 2)
        self.assertIn("another application", p.stderr)

    def test_usage(self):
        p = run("--help")
        self.assertEqual(p.returncode, 0)
        self.assertIn("usage: modelprov status", p.stdout)
        for args in (("--state", "a", "--state-dir", "b"), ("extra",), ("--bogus",), ("--state",)):
            p = run(*args)
            self.assertEqual(p.returncode, 2, args)
            self.assertIn("modelprov", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
