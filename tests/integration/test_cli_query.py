#!/usr/bin/python3
"""`modelprov query hosts|inventory|blast-radius|model|history` and
`modelprov catalog push` against a real `modelprov-collector` on loopback.

A fleet of three simulated hosts reports generated models through the
Python gRPC client (collector_env.py): a base model, an exact copy of it on
another host, a fine-tune of it, an independent model (later removed on one
host), a finding and a catalog match.  Then every query subcommand runs in
table, --json and --csv form and is checked against what was reported; the
three formats must agree.  Also: credentials (wrong token, token file
readable by others, MODELPROV_TOKEN), plaintext refused towards a
non-loopback address, an unreachable collector, TLS with a self-signed
certificate (verifies with --ca-file, fails clearly without it), mutual TLS
(a missing client certificate must fail fast instead of being retried as
UNAVAILABLE), and catalog push followed by a blast radius by entry name."""
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import collector_env as env  # noqa: E402

pb, rpc = env.load_stubs()

BIN = env.BIN
HEX64 = re.compile(r"^[0-9a-f]{64}$")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
INVENTORY_KEYS = ["host", "host_id", "path", "model_digest", "model_name", "present",
                  "first_seen", "first_seen_ms", "last_seen", "last_seen_ms"]
BLAST_KEYS = ["host", "host_id", "path", "model_digest", "model_name", "relation", "verdict", "score",
              "present", "first_seen", "first_seen_ms", "last_seen", "last_seen_ms"]
HOST_KEYS = ["host", "host_id", "agent_version", "enrolled_at", "enrolled_at_ms", "last_seen", "last_seen_ms",
             "acked_through", "models", "stale"]
HISTORY_KEYS = ["observed_at", "observed_at_ms", "host", "host_id", "sequence", "kind", "path", "model_digest",
                "detail"]


def clean_env(**extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith("MODELPROV_TOKEN")
         and k not in ("MODELPROV_COLLECTOR", "MODELPROV_DEBUG")}
    e.update(extra)
    return e


def run(*args, env_extra=None, timeout=120):
    """The CLI's exit status and output, decoded without newline translation
    (CSV lines end in CRLF)."""
    p = subprocess.run([BIN, *args], capture_output=True, timeout=timeout, env=clean_env(**(env_extra or {})))
    p.stdout, p.stderr = p.stdout.decode(), p.stderr.decode()
    return p


def iso_of_ms(ms):
    return datetime.fromtimestamp(ms // 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Fleet:
    """Models, records and a catalog, generated once for the whole file."""

    def __init__(self, tmp):
        common = ("--hidden", "64", "--layers", "2", "--vocab", "512")
        self.base_dir = env.make_model(os.path.join(tmp, "base"), *common, "--seed", "11")
        self.other_dir = env.make_model(os.path.join(tmp, "other"), *common, "--seed", "12")
        self.lonely_dir = env.make_model(os.path.join(tmp, "lonely"), "--hidden", "96", "--layers", "3",
                                         "--vocab", "700", "--seed", "13")
        self.ft_dir = env.perturb_model(self.base_dir, os.path.join(tmp, "finetune"))
        self.records = {}
        for name in ("base", "other", "lonely", "ft"):
            path = os.path.join(tmp, name + ".fp")
            self.records[name] = env.fingerprint(getattr(self, name + "_dir"), path)
            setattr(self, name + "_fp_path", path)
        self.fp = {k: pb.Fingerprint.FromString(v) for k, v in self.records.items()}
        self.hex = {k: v.model_digest.hex() for k, v in self.fp.items()}
        self.catalog = env.catalog_add(os.path.join(tmp, "catalog.db"), self.base_fp_path, "gen-base")


class QueryTestBase(unittest.TestCase):
    tls = False

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cli-query-")
        cls.fleet = Fleet(cls.tmp)
        cls.collector = env.Collector(os.path.join(cls.tmp, "collector"), tls=cls.tls).start()
        cls.report_fleet()

    @classmethod
    def tearDownClass(cls):
        rc = cls.collector.stop()
        log = cls.collector.log()
        shutil.rmtree(cls.tmp)
        if rc != 0:
            raise AssertionError(f"collector exit status {rc} after SIGTERM; its log:\n{log[-6000:]}")

    @classmethod
    def report_fleet(cls):
        f, c = cls.fleet, cls.collector
        ch = c.channel()
        ev = env.Events()
        cls.agents = {}
        for i, name in enumerate(("host-a", "host-b", "host-c")):
            a = env.Agent(c, ch, machine_id=f"{i + 1:032x}", hostname=name)
            a.enroll()
            cls.agents[name] = a
        r = f.records
        cls.agents["host-a"].report([
            ev.batch([ev.added(1, "/models/base", r["base"]), ev.added(2, "/models/other", r["other"])]),
            ev.batch([ev.finding(3, "/models/other", detail="os.system, in pickle"),
                      ev.match(4, "/models/base", f.fp["base"].model_digest, entry="gen-base")]),
            ev.batch([ev.removed(5, "/models/other", f.fp["other"].model_digest)]),
        ])
        cls.agents["host-b"].report([
            ev.batch([ev.added(1, "/srv/base-copy", r["base"]), ev.added(2, "/srv/finetune", r["ft"])]),
        ])
        cls.agents["host-c"].report([ev.batch([ev.added(1, "/data/other", r["other"])])])
        ch.close()

    # -- helpers

    def conn(self, token_file=None):
        c = self.collector
        args = ["--collector", c.target, "--token-file", token_file or c.query_file]
        return args + (["--ca-file", c.cert] if self.tls else ["--insecure-loopback"])

    def query(self, *args, rc=0, token_file=None):
        p = run("query", *args, *self.conn(token_file))
        if p.returncode != rc:
            raise AssertionError(f"query {args}: exit {p.returncode} (wanted {rc})\nstdout: {p.stdout}\n"
                                 f"stderr: {p.stderr}\ncollector log:\n{self.collector.log()[-3000:]}")
        return p

    def formats(self, *args, keys, rc=0):
        """(table stdout, JSON rows, CSV rows as dicts), checking that CSV
        has exactly the JSON keys and the same values."""
        table = self.query(*args, rc=rc).stdout
        rows = json.loads(self.query(*args, "--json", rc=rc).stdout)
        raw = self.query(*args, "--csv", rc=rc).stdout
        self.assertIn("\r\n", raw)
        reader = csv.reader(io.StringIO(raw, newline=""))
        header = next(reader)
        self.assertEqual(header, keys)
        csv_rows = [dict(zip(header, line)) for line in reader]
        self.assertEqual(len(csv_rows), len(rows))
        for j, c in zip(rows, csv_rows):
            self.assertEqual(list(j.keys()), keys)
            for k in keys:
                v = j[k]
                want = "" if v is None else ("true" if v is True else "false" if v is False else str(v))
                if isinstance(v, float):
                    self.assertAlmostEqual(float(c[k]), v, places=6)
                else:
                    self.assertEqual(c[k], want, k)
        return table, rows, csv_rows

    def check_times(self, row, *keys):
        for k in keys:
            self.assertRegex(row[k], ISO)
            self.assertIsInstance(row[k + "_ms"], int)
            self.assertEqual(row[k], iso_of_ms(row[k + "_ms"]))


class QueryPlaintext(QueryTestBase):
    tls = False

    def test_hosts(self):
        table, rows, _ = self.formats("hosts", keys=HOST_KEYS)
        self.assertEqual(sorted(r["host"] for r in rows), ["host-a", "host-b", "host-c"])
        by = {r["host"]: r for r in rows}
        for name, a in self.agents.items():
            r = by[name]
            self.assertEqual(r["host_id"], a.host_id)
            self.assertRegex(r["host_id"], env.UUID)
            self.assertEqual(r["agent_version"], "test-agent 1")
            self.assertIs(r["stale"], False)
            self.check_times(r, "enrolled_at", "last_seen")
        self.assertEqual((by["host-a"]["acked_through"], by["host-b"]["acked_through"]), (5, 2))
        self.assertEqual((by["host-a"]["models"], by["host-b"]["models"], by["host-c"]["models"]), (1, 2, 1))
        lines = table.splitlines()
        self.assertEqual(lines[0].split(), ["HOST", "HOST", "ID", "AGENT", "LAST", "SEEN", "MODELS", "STALE"])
        self.assertTrue(any(l.startswith("host-a ") and self.agents["host-a"].host_id in l for l in lines))
        self.assertEqual(lines[-1], "3 hosts, 0 stale")

    def test_inventory(self):
        f = self.fleet
        table, rows, _ = self.formats("inventory", keys=INVENTORY_KEYS)
        got = sorted((r["host"], r["path"], r["model_digest"], r["present"]) for r in rows)
        self.assertEqual(got, sorted([("host-a", "/models/base", f.hex["base"], True),
                                      ("host-b", "/srv/base-copy", f.hex["base"], True),
                                      ("host-b", "/srv/finetune", f.hex["ft"], True),
                                      ("host-c", "/data/other", f.hex["other"], True)]))
        for r in rows:
            self.assertRegex(r["model_digest"], HEX64)
            self.assertEqual(r["host_id"], self.agents[r["host"]].host_id)
            self.check_times(r, "first_seen", "last_seen")
            self.assertLessEqual(r["first_seen_ms"], r["last_seen_ms"])
            self.assertEqual(r["model_name"], f.fp["ft" if r["path"] == "/srv/finetune" else
                                                  "other" if "other" in r["path"] else "base"].name)
        # Tables: aligned, short digests, human times.
        lines = table.splitlines()
        self.assertEqual(lines[0].split()[:4], ["HOST", "PATH", "DIGEST", "MODEL"])
        self.assertNotIn(f.hex["base"], table)
        self.assertIn(f.hex["base"][:12], table)
        self.assertEqual(len({l.index("/") for l in lines[1:-1]}), 1)      # the PATH column lines up
        self.assertRegex(table, r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
        self.assertEqual(lines[-1], "4 entries")

        # --all adds the removed model, not present; --host by name and by id.
        rows = json.loads(self.query("inventory", "--all", "--json").stdout)
        removed = [r for r in rows if not r["present"]]
        self.assertEqual([(r["host"], r["path"]) for r in removed], [("host-a", "/models/other")])
        for h in ("host-b", self.agents["host-b"].host_id):
            rows = json.loads(self.query("inventory", "--host", h, "--json").stdout)
            self.assertEqual(sorted(r["path"] for r in rows), ["/srv/base-copy", "/srv/finetune"])
        p = self.query("inventory", "--host", "no-such-host", rc=2)
        self.assertIn("no-such-host", p.stderr)

    def test_blast_radius(self):
        f = self.fleet
        base_copies = [("host-a", "/models/base", "exact copy"), ("host-b", "/srv/base-copy", "exact copy")]
        for how, x in (("digest", f.hex["base"]), ("digest, upper case", f.hex["base"].upper()),
                       ("record file", f.base_fp_path), ("model path", f.base_dir),
                       ("host:path", "host-a:/models/base")):
            with self.subTest(by=how):
                table, rows, _ = self.formats("blast-radius", "--model", x, keys=BLAST_KEYS)
                hits = {(r["host"], r["path"]): r for r in rows}
                for host, path, relation in base_copies:
                    self.assertEqual(hits[(host, path)]["relation"], relation)
                    self.assertEqual(hits[(host, path)]["model_digest"], f.hex["base"])
                    self.assertGreaterEqual(hits[(host, path)]["score"], 0.99)
                # The fine-tune is linked to the base; the independent model is not.
                self.assertIn(("host-b", "/srv/finetune"), hits)
                self.assertNotEqual(hits[("host-b", "/srv/finetune")]["relation"], "exact copy")
                self.assertFalse(any("other" in p for _, p in hits), hits)
                for r in rows:
                    self.assertIs(r["present"], True)
                    self.assertIsInstance(r["verdict"], str)
                    self.check_times(r, "first_seen", "last_seen")
                self.assertRegex(table.splitlines()[-1], r"^3 paths on 2 hosts affected \(\d+ fingerprints "
                                                         r"considered, \d+ scored\)$")

        # The removed copy of the other model only with --all.
        rows = json.loads(self.query("blast-radius", "--model", f.hex["other"], "--json").stdout)
        self.assertEqual([(r["host"], r["path"]) for r in rows], [("host-c", "/data/other")])
        rows = json.loads(self.query("blast-radius", "--model", f.hex["other"], "--all", "--json").stdout)
        self.assertEqual(sorted((r["host"], r["path"], r["present"]) for r in rows),
                         [("host-a", "/models/other", False), ("host-c", "/data/other", True)])

        # Nothing affected: exit 1, said plainly; --json prints [].
        p = self.query("blast-radius", "--model", f.lonely_fp_path, rc=1)
        self.assertRegex(p.stdout, r"^nothing affected \(")
        self.assertEqual(json.loads(self.query("blast-radius", "--model", f.lonely_fp_path, "--json", rc=1).stdout),
                         [])

        # Unknown targets are errors (exit 2) that name the status.
        for x in ("ab" * 32, "host-a:/nowhere", "no-such-entry"):
            with self.subTest(unknown=x):
                p = self.query("blast-radius", "--model", x, rc=2)
                self.assertIn(f"collector {self.collector.target}: ", p.stderr)

    def test_model(self):
        f = self.fleet
        p = self.query("model", f.hex["base"])
        self.assertIn(f"digest:      {f.hex['base']}", p.stdout)
        self.assertIn(f"name:        {f.fp['base'].name}", p.stdout)
        self.assertIn("/srv/base-copy", p.stdout)
        self.assertEqual(p.stdout.splitlines()[-1], "2 locations")
        j = json.loads(self.query("model", f.hex["base"], "--json").stdout)
        self.assertEqual(j["fingerprint"]["model_digest"], f.hex["base"])
        self.assertEqual(j["fingerprint"]["name"], f.fp["base"].name)
        self.assertEqual(sorted(l["path"] for l in j["locations"]), ["/models/base", "/srv/base-copy"])
        self.assertEqual(list(j["locations"][0].keys()), INVENTORY_KEYS)
        raw = self.query("model", f.hex["base"], "--csv").stdout
        lines = list(csv.reader(io.StringIO(raw, newline="")))
        self.assertEqual(lines[0], INVENTORY_KEYS)
        self.assertEqual(sorted(l[2] for l in lines[1:]), ["/models/base", "/srv/base-copy"])

        p = self.query("model", "01" * 32, rc=2)
        self.assertIn(f"collector {self.collector.target}: NOT_FOUND", p.stderr)
        p = self.query("model", "xyz", rc=2)
        self.assertIn("not a model digest", p.stderr)

    def test_history(self):
        f = self.fleet
        table, rows, _ = self.formats("history", "--host", "host-a", keys=HISTORY_KEYS)
        self.assertEqual([(r["sequence"], r["kind"], r["path"]) for r in rows],
                         [(1, "MODEL_ADDED", "/models/base"), (2, "MODEL_ADDED", "/models/other"),
                          (3, "FINDING", "/models/other"), (4, "SCAN_MATCH", "/models/base"),
                          (5, "MODEL_REMOVED", "/models/other")])
        for r in rows:
            self.assertEqual((r["host"], r["host_id"]), ("host-a", self.agents["host-a"].host_id))
            self.check_times(r, "observed_at")
        self.assertEqual(rows[0]["model_digest"], f.hex["base"])
        self.assertEqual(rows[2]["detail"], "unsafe-pickle-global: os.system, in pickle in pytorch_model.bin")
        self.assertTrue(rows[3]["detail"].startswith("gen-base (Confirmed Match, score 0.970"))
        self.assertIn('"unsafe-pickle-global: os.system, in pickle in pytorch_model.bin"', self.query("history", "--csv").stdout)
        self.assertEqual(table.splitlines()[-1], "5 events")

        rows = json.loads(self.query("history", "--json").stdout)
        self.assertEqual(len(rows), 8)
        rows = json.loads(self.query("history", "--path", "/models/other", "--json").stdout)
        self.assertEqual([r["sequence"] for r in rows], [2, 3, 5])
        rows = json.loads(self.query("history", "--host", "host-a", "--limit", "2", "--json").stdout)
        self.assertEqual([r["sequence"] for r in rows], [4, 5])

    def test_credentials(self):
        c = self.collector
        wrong = env.write_secret(os.path.join(self.tmp, "wrong.token"), "wrong-" + "x" * 20)
        for sub in (("hosts",), ("inventory",), ("blast-radius", "--model", self.fleet.hex["base"]),
                    ("model", self.fleet.hex["base"]), ("history",)):
            with self.subTest(query=sub):
                p = self.query(*sub, rc=2, token_file=wrong)
                self.assertIn(f"modelprov: error: collector {c.target}: UNAUTHENTICATED", p.stderr)
                self.assertEqual(p.stdout, "")
        # The admin token works for queries too; the query token via the
        # environment; a token file others can read is refused unread.
        self.query("hosts", token_file=c.admin_file)
        p = run("query", "hosts", "--collector", c.target, "--insecure-loopback",
                env_extra={"MODELPROV_TOKEN": c.query_token})
        self.assertEqual(p.returncode, 0, p.stderr)
        p = run("query", "hosts", "--collector", c.target, "--insecure-loopback",
                env_extra={"MODELPROV_TOKEN": "short"})
        self.assertEqual(p.returncode, 2)
        self.assertIn("MODELPROV_TOKEN", p.stderr)
        loose = env.write_secret(os.path.join(self.tmp, "loose.token"), c.query_token, mode=0o644)
        p = self.query("hosts", rc=2, token_file=loose)
        self.assertIn("chmod 600", p.stderr)
        p = run("query", "hosts", "--collector", c.target, "--insecure-loopback")
        self.assertEqual(p.returncode, 2)
        self.assertIn("--token-file", p.stderr)
        p = run("query", "hosts", "--token-file", c.query_file, "--insecure-loopback",
                env_extra={"MODELPROV_COLLECTOR": c.target})
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_transport_errors(self):
        c = self.collector
        # Plaintext is refused towards anything but loopback, before any I/O.
        for addr in ("10.1.2.3:5000", "collector.example.com:7443", "[2001:db8::1]:7443"):
            with self.subTest(addr=addr):
                t = time.monotonic()
                p = run("query", "hosts", "--collector", addr, "--insecure-loopback", "--token-file", c.query_file)
                self.assertEqual(p.returncode, 2)
                self.assertIn("only allowed to a loopback collector", p.stderr)
                self.assertLess(time.monotonic() - t, 5)
        # Nobody listening: UNAVAILABLE after a few quick retries.
        t = time.monotonic()
        p = run("query", "hosts", "--collector", "127.0.0.1:1", "--insecure-loopback", "--token-file", c.query_file)
        self.assertEqual(p.returncode, 2)
        self.assertIn("collector 127.0.0.1:1: UNAVAILABLE", p.stderr)
        self.assertIn("gave up after 4 attempts", p.stderr)
        self.assertLess(time.monotonic() - t, 20)
        for bad in ("nocolon", "host:99999", "a b:1"):
            p = run("query", "hosts", "--collector", bad, "--insecure-loopback", "--token-file", c.query_file)
            self.assertEqual(p.returncode, 2)
            self.assertIn("collector address", p.stderr)

    def test_usage(self):
        for args in (("query",), ("query", "bogus"), ("query", "blast-radius"),
                     ("query", "blast-radius", "--model", "x", "--threshold", "2"),
                     ("query", "history", "--limit", "0"), ("query", "model"), ("query", "hosts", "extra"),
                     ("query", "hosts", "--token", "abc"), ("query", "hosts", "--timeout", "0"),
                     ("catalog", "push"), ("catalog", "push", "a", "b")):
            with self.subTest(args=args):
                p = run(*args)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn("modelprov", p.stderr)
        p = run("query", "--help")
        self.assertEqual(p.returncode, 0)
        self.assertIn("1 nothing is", p.stdout)
        p = run("--help")
        self.assertIn("query", p.stdout)

    def test_catalog_push_then_blast_radius_by_entry(self):
        c, f = self.collector, self.fleet
        # Not a catalog: refused here, nothing sent.
        txt = os.path.join(self.tmp, "notes.txt")
        with open(txt, "w") as fh:
            fh.write("not a catalog at all, just some text long enough for a header check\n" * 4)
        p = run("catalog", "push", txt, *self.conn(c.admin_file))
        self.assertEqual(p.returncode, 2)
        self.assertIn("not a modelprov catalog", p.stderr)
        # The query token may not push.
        p = run("catalog", "push", f.catalog, *self.conn())
        self.assertEqual(p.returncode, 2)
        self.assertIn(f"collector {c.target}: UNAUTHENTICATED", p.stderr)
        p = run("catalog", "push", f.catalog, *self.conn(c.admin_file))
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(f.catalog, "rb") as fh:
            version = hashlib.sha256(fh.read()).hexdigest()
        self.assertEqual(p.stdout.strip(), f"pushed {f.catalog} to collector {c.target}: version {version}, 1 entry")

        rows = json.loads(self.query("blast-radius", "--model", "gen-base", "--json").stdout)
        self.assertEqual(sorted((r["host"], r["path"]) for r in rows),
                         [("host-a", "/models/base"), ("host-b", "/srv/base-copy"), ("host-b", "/srv/finetune")])


class QueryTls(QueryTestBase):
    tls = True

    def test_tls(self):
        c = self.collector
        rows = json.loads(self.query("hosts", "--json").stdout)
        self.assertEqual(len(rows), 3)
        # localhost is in the certificate as well.  Resolving it, Debian's
        # c-ares 1.18.1 leaks the name it copied (c-ares/c-ares#439, 10
        # bytes): not ours, so LeakSanitizer is told to ignore that library.
        supp = os.path.join(self.tmp, "lsan.supp")
        with open(supp, "w") as fh:
            fh.write("leak:libcares.so\n")
        p = run("query", "hosts", "--collector", f"localhost:{c.port}", "--ca-file", c.cert,
                "--token-file", c.query_file, env_extra={"LSAN_OPTIONS": f"suppressions={supp}"})
        self.assertEqual(p.returncode, 0, p.stderr)

        # Without the CA: the system roots do not know the certificate.
        t = time.monotonic()
        p = run("query", "hosts", "--collector", c.target, "--token-file", c.query_file)
        self.assertEqual(p.returncode, 2)
        self.assertIn(f"modelprov: error: collector {c.target}: UNAVAILABLE: TLS handshake failed", p.stderr)
        self.assertIn("certificate verify failed", p.stderr)
        self.assertLess(time.monotonic() - t, 10)
        # gRPC core's own log lines stay out of the CLI's stderr.
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        # A name the certificate does not have.
        p = run("query", "hosts", "--collector", c.target, "--ca-file", c.cert, "--server-name", "other.example",
                "--token-file", c.query_file)
        self.assertEqual(p.returncode, 2)
        self.assertIn("TLS handshake failed", p.stderr)
        # Plaintext against TLS: a hint, not a hang.
        p = run("query", "hosts", "--collector", c.target, "--insecure-loopback", "--token-file", c.query_file)
        self.assertEqual(p.returncode, 2)
        self.assertIn("UNAVAILABLE", p.stderr)
        self.assertIn("does the collector expect TLS?", p.stderr)
        # --ca-file with plaintext makes no sense.
        p = run("query", "hosts", "--collector", c.target, "--insecure-loopback", "--ca-file", c.cert,
                "--token-file", c.query_file)
        self.assertEqual(p.returncode, 2)
        self.assertIn("needs TLS", p.stderr)


class QueryMutualTls(unittest.TestCase):
    """The collector requires client certificates: with one the query works;
    without one gRPC says UNAVAILABLE (not UNAUTHENTICATED), and the client
    must give up at once with a clear reason instead of retrying."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cli-query-mtls-")
        client_dir = os.path.join(cls.tmp, "client")
        os.makedirs(client_dir)
        cls.client_cert, cls.client_key = env.make_cert(client_dir)
        cls.collector = env.Collector(os.path.join(cls.tmp, "collector"), tls=True,
                                      extra_args=["--tls-client-ca", cls.client_cert]).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.collector.stop()
        log = cls.collector.log()
        shutil.rmtree(cls.tmp)
        if rc != 0:
            raise AssertionError(f"collector exit status {rc} after SIGTERM; its log:\n{log[-6000:]}")

    def test_client_certificate(self):
        c = self.collector
        base = ["query", "hosts", "--collector", c.target, "--ca-file", c.cert, "--token-file", c.query_file]
        p = run(*base, "--client-cert", self.client_cert, "--client-key", self.client_key, "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout), [])

        t = time.monotonic()
        p = run(*base)
        took = time.monotonic() - t
        self.assertEqual(p.returncode, 2)
        self.assertIn(f"collector {c.target}: UNAVAILABLE", p.stderr)
        self.assertIn("requires a client certificate", p.stderr)
        self.assertIn("not retried", p.stderr)
        self.assertLess(took, 10)
        # A certificate the collector does not trust: the same.
        other_dir = os.path.join(self.tmp, "other")
        os.makedirs(other_dir)
        cert, key = env.make_cert(other_dir)
        p = run(*base, "--client-cert", cert, "--client-key", key)
        self.assertEqual(p.returncode, 2)
        self.assertIn("requires a client certificate", p.stderr)
        p = run(*base, "--client-cert", cert)
        self.assertEqual(p.returncode, 2)
        self.assertIn("both the certificate and its key", p.stderr)
        self.assertTrue(c.alive())


if __name__ == "__main__":
    unittest.main(verbosity=2)
