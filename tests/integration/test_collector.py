#!/usr/bin/python3
"""The collector end to end: a real `modelprov-collector` on a loopback port,
Python gRPC clients generated from proto/ (collector_env.py), the SQLite
store read directly (read-only) to count what was really stored.

  - CrashTest: 20 concurrent agents report batches; the collector is killed
    with SIGKILL mid-stream and restarted on the same store and port; the
    agents resume (from Heartbeat's acked_through, from a re-enrollment, or
    from their own last ack) and resend the rest, some acked events again.
    Afterwards every event is stored exactly once: History per host is
    1..N once each, with the content that was sent, and so are the rows of
    the SQLite file.
  - ReplayTest: acknowledged batches sent again store nothing (stored 0,
    duplicates n, rows unchanged), not even with other content; a partial
    overlap stores only the new part; a gap stops the ack before it.
  - BadInputTest: missing or wrong credentials (UNAUTHENTICATED), garbage
    and truncated protobuf through a raw client, unknown enum values,
    sequence 0, a 31-byte digest, over-long strings, too many events
    (INVALID_ARGUMENT), messages over 64 MiB (RESOURCE_EXHAUSTED); after
    each the collector still answers and the store is unchanged.
  - ReenrollTest: the same machine id gets the same host id and a new key;
    the old key is refused; acked_through is kept.
  - BlastRadiusTest: zoo models spread over 11 simulated hosts; querying a
    base returns every host and path holding a model linked to it (easy and
    medium pairs of pairs.json; the hard ones are printed, not asserted)
    and none holding only unrelated ones; copies are "exact copy"; a
    removed model shows only with include_removed.  By digest, fingerprint,
    catalog entry and host:path.  Without the zoo: generated models.
  - ShutdownTest: SIGTERM with a Report stream open exits 0 at once; the
    store is there after a restart.  (The command line itself is
    test_collector_daemon.py's.)
Each collector must exit 0 on SIGTERM at the end (a crash or a sanitizer
report fails the test)."""
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import collector_env as env  # noqa: E402
from collector_env import grpc  # noqa: E402

pb, rpc = env.load_stubs()
SC = grpc.StatusCode
TMP = None
RECORDS = None      # model key -> record bytes (zoo or generated), shared by the tests
FLEET = None


def setUpModule():
    global TMP, RECORDS, FLEET
    TMP = tempfile.mkdtemp(prefix="collector-test-")
    FLEET = zoo_fleet() if env.require_zoo_rule() else generated_fleet()
    models = {key: path for key, path in FLEET["models"].items()}
    RECORDS = env.fingerprint_many(models, os.path.join(TMP, "records"))


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


# ---- fleets for blast radius -----------------------------------------------------

def zoo_fleet():
    """Zoo models over 11 hosts; what querying each base must and must not
    return, from the zoo's own labels (pairs.json) and lineage (models.json)."""
    with open(os.path.join(env.ZOO, "models.json")) as f:
        lineage = {m["folder"]: m["parents"] for m in json.load(f)}
    with open(os.path.join(env.ZOO, "pairs.json")) as f:
        pairs = {frozenset((p["a"], p["b"])): p for p in json.load(f)}
    chained = next(k for k in lineage if k.startswith("hub/models--zoo--llama-chained"))
    hosts = [
        ("h00-base", [("llama/base-1", "/srv/llama-base", False)]),
        ("h01-mixed", [("llama/base-1", "/data/copy/base-1", False), ("llama/base-2", "/data/other", False)]),
        ("h02-sft", [("llama/sft-light", "/srv/sft", False)]),
        ("h03-q8", [("llama/base-1-q8_0", "/srv/q8", False)]),
        ("h04-formats", [("llama/base-1-bf16", "/srv/bf16", False), ("llama/base-1-pt", "/srv/pt", False)]),
        ("h05-heavy", [("llama/sft-heavy", "/srv/heavy", False), (chained, "/srv/chained", False)]),
        ("h06-base2", [("llama/base-2", "/srv/b2", False)]),
        ("h07-unrelated", [("llama/base-3", "/srv/b3", False), ("gpt2/base-1", "/srv/gpt2", False)]),
        ("h08-derived", [("llama/lora-merged", "/srv/lora", False), ("llama/pruned", "/srv/pruned", False),
                         ("llama/merge-base1-base2", "/srv/merge", False)]),
        ("h09-removed", [("llama/base-1", "/srv/old-base", True), ("gpt2/base-2", "/srv/g2", False)]),
        ("h10-quant", [("llama/base-1-q4_0", "/srv/q4", False), ("llama/vocab-extended", "/srv/vocab", False),
                       ("llama/permuted", "/srv/permuted", False)]),
    ]

    def ancestors(m):
        out, todo = set(), [m]
        while todo:
            x = todo.pop()
            if x not in out:
                out.add(x)
                todo += lineage.get(x, [])
        return out

    held = sorted({m for _, ms in hosts for m, _, _ in ms})
    queries = {}
    for base in ("llama/base-1", "gpt2/base-1"):
        must, must_not, hard = {base}, set(), set()
        for m in held:
            if m == base:
                continue
            p = pairs.get(frozenset((base, m)))
            related = bool(ancestors(base) & ancestors(m))
            if p and p["label"] == "linked" and p["difficulty"] in ("easy", "medium"):
                must.add(m)
            elif p and p["label"] == "linked" or related:
                hard.add(m)
            elif (not p or p["label"] == "independent") and not related:
                must_not.add(m)
        queries[base] = (must, must_not, hard)
    return {"models": {m: os.path.join(env.ZOO, m) for m in held}, "hosts": hosts, "queries": queries,
            "exact": "llama/base-1"}


def generated_fleet():
    """The same checks on generated models: a base, a fine-tune-like
    perturbed copy, and an independent model."""
    d = os.path.join(TMP, "models")
    common = ("--hidden", "128", "--layers", "2", "--vocab", "1024")
    base = env.make_model(os.path.join(d, "base"), *common, "--seed", "1")
    tuned = env.perturb_model(base, os.path.join(d, "tuned"))
    other = env.make_model(os.path.join(d, "other"), *common, "--seed", "2")
    hosts = [
        ("g00-base", [("base", "/srv/base", False)]),
        ("g01-mixed", [("base", "/data/copy/base", False), ("other", "/data/other", False)]),
        ("g02-tuned", [("tuned", "/srv/tuned", False)]),
        ("g03-other", [("other", "/srv/other", False)]),
        ("g04-removed", [("base", "/srv/old-base", True), ("other", "/srv/o2", False)]),
        ("g05-tuned", [("tuned", "/opt/tuned", False), ("other", "/opt/other", False)]),
    ]
    return {"models": {"base": base, "tuned": tuned, "other": other}, "hosts": hosts,
            "queries": {"base": ({"base", "tuned"}, {"other"}, set())}, "exact": "base"}


def digest_of(record):
    return pb.Fingerprint.FromString(record).model_digest


class CollectorCase(unittest.TestCase):
    """One collector per test class, stopped with SIGTERM at the end: it must
    exit 0."""
    collector_args = {}

    @classmethod
    def setUpClass(cls):
        cls.collector = env.Collector(os.path.join(TMP, cls.__name__), **cls.collector_args).start()
        cls.ch = cls.collector.channel()
        cls.query = rpc.QueryStub(cls.ch)
        cls.ingest = rpc.IngestStub(cls.ch)
        cls.ev = env.Events()

    @classmethod
    def tearDownClass(cls):
        cls.ch.close()
        rc = cls.collector.stop()
        if rc != 0:
            raise AssertionError(f"collector exit status {rc} after SIGTERM; its log:\n{cls.collector.log()}")

    def agent(self, machine_id, hostname=None):
        a = env.Agent(self.collector, self.ch, machine_id, hostname)
        a.enroll()
        return a

    def history(self, host_id, path=""):
        return self.query.History(pb.HistoryRequest(host_id=host_id, path=path, limit=100000),
                                  metadata=self.collector.query_md(), timeout=30).events

    def inventory(self, host_id="", include_removed=True):
        return self.query.Inventory(pb.InventoryRequest(host_id=host_id, include_removed=include_removed),
                                    metadata=self.collector.query_md(), timeout=30).items


# ---- crash and resume ------------------------------------------------------------------

class CrashTest(CollectorCase):
    AGENTS = 20
    EVENTS = 240
    BATCH = 8

    def plan(self, i, records):
        """Agent i's events: adds (some with the fingerprint, some without),
        removals, findings, scan matches.  (events, added paths, removed paths)"""
        ev, events, present, added, removed, sent = self.ev, [], [], [], [], set()
        for seq in range(1, self.EVENTS + 1):
            r = seq % 8
            if r == 0 and present:
                path = present.pop(0)
                events.append(ev.removed(seq, path))
                removed.append(path)
            elif r == 3:
                events.append(ev.finding(seq, f"/srv/a{i}/m{seq - 1}", detail=f"detail {i}/{seq}"))
            elif r == 5:
                events.append(ev.match(seq, f"/srv/a{i}/m{seq - 1}", digest_of(records[0]), score=seq / 1000))
            else:
                rec = records[(i + seq) % len(records)]
                path = f"/srv/a{i}/m{seq}"
                first = rec not in sent
                sent.add(rec)
                events.append(ev.added(seq, path, rec, with_fingerprint=first or seq % 3 == 0))
                present.append(path)
                added.append(path)
        return events, added, removed

    def test_sigkill_mid_stream_every_event_once(self):
        c = self.collector
        records = list(RECORDS.values())[:6]
        plans = [self.plan(i, records) for i in range(self.AGENTS)]
        agents = [self.agent(f"crash-machine-{i:04d}", f"crash-{i:02d}") for i in range(self.AGENTS)]
        for a in agents:
            a.reconnect()               # one channel per agent
        acked_total = [0] * self.AGENTS
        stats = {"errors": [], "bad": [], "duplicates": 0, "interrupted": set(), "resumed": {}}
        lock = threading.Lock()
        deadline = time.monotonic() + 120

        def run_agent(i):
            a, events = agents[i], plans[i][0]
            rng = random.Random(i)
            mode = ("heartbeat", "enroll", "own-ack")[i % 3]
            acked = 0               # what this agent was told
            resync = False
            while acked < self.EVENTS:
                if time.monotonic() > deadline:
                    with lock:
                        stats["bad"].append(f"agent {i}: gave up at {acked}")
                    return
                try:
                    if resync:
                        a.reconnect()
                        if mode == "heartbeat":
                            server = a.heartbeat(timeout=15).acked_through
                        elif mode == "enroll":
                            old = a.host_id
                            server = a.enroll(timeout=15).acked_through
                            if a.host_id != old:
                                with lock:
                                    stats["bad"].append(f"agent {i}: re-enroll changed host id")
                        else:
                            server = None
                        if server is not None:
                            if server < acked:     # an acknowledged event was lost
                                with lock:
                                    stats["bad"].append(f"agent {i}: server at {server}, acked {acked}")
                            acked = max(acked, server)
                        with lock:
                            stats["resumed"][i] = mode
                        resync = False
                    # resend some already acknowledged events too (replays)
                    start = max(1, acked + 1 - rng.randint(0, 12))
                    todo = events[start - 1:]
                    batches = [self.ev.batch(todo[k:k + self.BATCH]) for k in range(0, len(todo), self.BATCH)]
                    def progress(ack):
                        acked_total[i] = max(acked_total[i], ack.acked_through)
                    acks, err = self.report_checked(a, batches, rng, i, acked, lock, stats, progress)
                    if acks:
                        acked = max(acked, acks[-1].acked_through)
                    if err is not None:
                        with lock:
                            stats["interrupted"].add(i)
                            stats["errors"].append(err)
                        resync = True
                        time.sleep(rng.uniform(0.1, 0.3))
                except grpc.RpcError as e:
                    with lock:
                        stats["errors"].append(e.code())
                    resync = True
                    time.sleep(rng.uniform(0.1, 0.3))

        threads = [threading.Thread(target=run_agent, args=(i,)) for i in range(self.AGENTS)]
        for t in threads:
            t.start()
        # SIGKILL once about a third of all events is acknowledged.
        total = self.AGENTS * self.EVENTS
        while sum(acked_total) < total // 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        acked_at_kill = sum(acked_total)
        old_port = c.port
        c.kill()
        time.sleep(0.3)
        try:
            c.start()                   # same store, same port
        except env.CollectorError:
            c.start(port=0)             # the port was taken meanwhile: agents follow the new one
        for t in threads:
            t.join()
        self.assertEqual(stats["bad"], [])
        self.assertLess(acked_at_kill, total, "the kill came after the agents had finished")
        self.assertTrue(stats["interrupted"], "no agent noticed the kill")
        unexpected = [e for e in stats["errors"] if e not in (SC.UNAVAILABLE,)]
        self.assertEqual(unexpected, [], "errors other than UNAVAILABLE while the collector was down")
        self.assertGreater(stats["duplicates"], 0, "no replays were acknowledged")
        self.assertEqual(set(stats["resumed"].values()), {"heartbeat", "enroll", "own-ack"},
                         "not every way of resuming was exercised")
        print(f"\ncrash test: killed at {acked_at_kill}/{total} acked events, {len(stats['interrupted'])} "
              f"agents interrupted, {len(stats['errors'])} errors, {stats['duplicates']} replayed events acked "
              f"again; restarted on {'the same' if c.port == old_port else 'a new'} port", file=sys.stderr)

        # Every event exactly once, through the Query service ...
        hosts = {h.host_id: h for h in self.query.Hosts(pb.HostsRequest(), metadata=c.query_md(), timeout=30).hosts}
        for i, a in enumerate(agents):
            events, added, removed = plans[i]
            with self.subTest(agent=i):
                self.assertEqual(hosts[a.host_id].acked_through, self.EVENTS)
                hist = self.history(a.host_id)
                self.assertEqual([e.event.sequence for e in hist], list(range(1, self.EVENTS + 1)))
                self.assertEqual([(e.event.kind, e.event.path) for e in hist], [(e.kind, e.path) for e in events])
                inv = self.inventory(a.host_id)
                self.assertEqual(sorted(x.path for x in inv), sorted(added))
                self.assertEqual(sorted(x.path for x in inv if not x.present), sorted(removed))
        # ... and in the SQLite file itself.
        with c.db() as db:
            for i, a in enumerate(agents):
                n, distinct, lo, hi = db.execute("SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM events "
                                                 "WHERE host_id = ?", (a.host_id,)).fetchone()
                self.assertEqual((n, distinct, lo, hi), (self.EVENTS, self.EVENTS, 1, self.EVENTS), f"agent {i}")
                self.assertEqual(db.execute("SELECT last_seq FROM hosts WHERE id = ?", (a.host_id,)).fetchone()[0],
                                 self.EVENTS)
                rows = db.execute("SELECT path, present FROM inventory WHERE host_id = ?", (a.host_id,)).fetchall()
                self.assertEqual(len(rows), len(plans[i][1]), f"agent {i} inventory")
            self.assertEqual(db.execute("SELECT count(*) FROM events").fetchone()[0], total)
            self.assertEqual(db.execute("SELECT count(*) FROM hosts").fetchone()[0], self.AGENTS)
            self.assertEqual(db.execute("SELECT count(*) FROM fingerprints").fetchone()[0], len(set(records)))

    def report_checked(self, a, batches, rng, i, acked, lock, stats, progress):
        """One Report stream over batches, pacing them; checks each ack
        against what this agent knows: (acks, error code or None)."""
        acks, e = a.report_stream(_Paced(batches, rng), timeout=30, on_ack=progress)
        err = e.code() if e is not None else None
        for batch, ack in zip(batches, acks):
            seqs = [e.sequence for e in batch.events]
            problems = []
            # The batch's last event, or more when the server had stored
            # beyond the batch before a kill (all of it a replay then).
            if ack.acked_through < seqs[-1] or (ack.acked_through > seqs[-1] and ack.duplicates != len(seqs)):
                problems.append(f"acked_through {ack.acked_through} (duplicates {ack.duplicates}), "
                                f"batch ends at {seqs[-1]}")
            if ack.stored + ack.duplicates != len(seqs):
                problems.append(f"stored {ack.stored} + duplicates {ack.duplicates} != {len(seqs)}")
            # Events at or below what the agent was told are certainly
            # duplicates (the server may have stored more before a kill).
            if ack.duplicates < sum(1 for s in seqs if s <= acked):
                problems.append(f"duplicates {ack.duplicates} < replayed {sum(1 for s in seqs if s <= acked)}")
            acked = max(acked, ack.acked_through)
            with lock:
                stats["duplicates"] += ack.duplicates
                if problems:
                    stats["bad"].append(f"agent {i} batch {seqs[0]}..{seqs[-1]}: " + "; ".join(problems))
        return acks, err


class _Paced(list):
    """Batches whose iteration sleeps a little before each one, so that the
    kill lands while streams are open."""

    def __init__(self, batches, rng):
        super().__init__(batches)
        self.rng = rng

    def __iter__(self):
        for b in list.__iter__(self):
            time.sleep(self.rng.uniform(0.005, 0.03))
            yield b


# ---- replays and gaps ----------------------------------------------------------------

class ReplayTest(CollectorCase):
    def test_replayed_batches_store_nothing(self):
        ev, c = self.ev, self.collector
        rec = next(iter(RECORDS.values()))
        a = self.agent("replay-machine-0001", "replay-host")

        def batch(lo, hi, prefix="/srv/m"):
            return ev.batch(ev.added(s, f"{prefix}{s}", rec, with_fingerprint=(s == 1)) if s % 4 else
                            ev.finding(s, f"{prefix}{s - 1}") for s in range(lo, hi + 1))

        first = [batch(1, 10), batch(11, 20), batch(21, 30)]
        acks = a.report(first)
        self.assertEqual([(x.acked_through, x.stored, x.duplicates) for x in acks],
                         [(10, 10, 0), (20, 10, 0), (30, 10, 0)])
        counts = c.counts()
        hist = self.history(a.host_id)
        self.assertEqual(counts["last_seq"][a.host_id], 30)

        # The same batches again, on a new stream: acknowledged, not stored.
        acks = a.report(first[:2])
        self.assertEqual([(x.acked_through, x.stored, x.duplicates) for x in acks], [(30, 0, 10), (30, 0, 10)])
        # Even with other content under the same sequence numbers.
        acks = a.report([batch(1, 10, prefix="/elsewhere/")])
        self.assertEqual([(x.acked_through, x.stored, x.duplicates) for x in acks], [(30, 0, 10)])
        self.assertEqual(c.counts(), counts)
        self.assertEqual(self.history(a.host_id), hist)
        self.assertEqual(a.heartbeat().acked_through, 30)

        # A partial overlap stores only the new part.
        acks = a.report([batch(26, 35)])
        self.assertEqual([(x.acked_through, x.stored, x.duplicates) for x in acks], [(35, 5, 5)])
        # A gap (38 missing): stored up to the gap, the ack says where.
        gap = ev.batch([ev.finding(36, "/srv/m36"), ev.finding(37, "/srv/m37"), ev.finding(39, "/srv/m39"),
                        ev.finding(40, "/srv/m40")])
        acks = a.report([gap])
        self.assertEqual((acks[0].acked_through, acks[0].stored), (37, 2))
        acks = a.report([ev.batch([ev.finding(s, f"/srv/m{s}") for s in (38, 39, 40)])])
        self.assertEqual([(x.acked_through, x.stored, x.duplicates) for x in acks], [(40, 3, 0)])
        self.assertEqual([e.event.sequence for e in self.history(a.host_id)], list(range(1, 41)))
        with c.db() as db:
            self.assertEqual(db.execute("SELECT count(*), max(seq) FROM events WHERE host_id = ?",
                                        (a.host_id,)).fetchone(), (40, 40))
            self.assertEqual(db.execute("SELECT count(*) FROM events WHERE path LIKE '/elsewhere/%'").fetchone()[0], 0)


# ---- hostile and unauthenticated input ------------------------------------------------

class BadInputTest(CollectorCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.rec = next(iter(RECORDS.values()))
        cls.a = env.Agent(cls.collector, cls.ch, "bad-input-machine-1", "bad-input-host")
        cls.a.enroll()
        ev = cls.ev
        cls.a.report([ev.batch([ev.added(1, "/srv/good", cls.rec), ev.finding(2, "/srv/good")])])
        cls.other = env.Agent(cls.collector, cls.ch, "bad-input-machine-2", "other-host")
        cls.other.enroll()

    def snapshot(self):
        inv = sorted((i.host_id, i.path, i.model_digest, i.present, i.first_seen, i.last_seen)
                     for i in self.inventory())
        return self.collector.counts(), inv

    def refused(self, expect, fn, what):
        with self.subTest(what):
            before = self.snapshot()
            got = env.status_of(fn)
            self.assertTrue(self.collector.alive(), f"collector died on: {what}\n{self.collector.log()[-4000:]}")
            self.assertEqual(got, expect, what)
            self.query.Hosts(pb.HostsRequest(), metadata=self.collector.query_md(), timeout=10)   # still answers
            self.assertEqual(self.snapshot(), before, f"store changed by: {what}")

    def next_seq(self):
        return self.collector.counts()["last_seq"][self.a.host_id] + 1

    def report_fn(self, batches, metadata=None, raw=False):
        def fn():
            _, err = self.a.report_stream(batches, timeout=20, metadata=metadata, raw=raw)
            if err is not None:
                raise err
        return fn

    def test_unauthenticated(self):
        c, a, ev = self.collector, self.a, self.ev
        host = pb.HostInfo(hostname="intruder", machine_id="intruder-machine", agent_version="1")
        good = ev.batch([ev.finding(self.next_seq(), "/srv/x")])
        wrong_key = env.host_metadata(a.host_id, "k" * 43)
        other_key = env.host_metadata(a.host_id, self.other.key)      # a real key, of another host
        unknown_host = env.host_metadata("00000000-0000-4000-8000-000000000000", a.key)
        cases = [
            ("enroll without metadata", lambda: self.ingest.Enroll(pb.EnrollRequest(host=host), timeout=10)),
            ("enroll with a wrong secret", lambda: self.ingest.Enroll(
                pb.EnrollRequest(host=host), metadata=env.bearer("not-the-enroll-secret-0123"), timeout=10)),
            ("enroll with the query token", lambda: self.ingest.Enroll(
                pb.EnrollRequest(host=host), metadata=c.query_md(), timeout=10)),
            ("enroll secret without Bearer", lambda: self.ingest.Enroll(
                pb.EnrollRequest(host=host), metadata=(("authorization", c.enroll_secret),), timeout=10)),
            ("heartbeat without metadata", lambda: self.ingest.Heartbeat(pb.HeartbeatRequest(), timeout=10)),
            ("heartbeat with a wrong key", lambda: self.ingest.Heartbeat(pb.HeartbeatRequest(), metadata=wrong_key,
                                                                          timeout=10)),
            ("heartbeat with another host's key", lambda: self.ingest.Heartbeat(
                pb.HeartbeatRequest(), metadata=other_key, timeout=10)),
            ("heartbeat of an unknown host", lambda: self.ingest.Heartbeat(
                pb.HeartbeatRequest(), metadata=unknown_host, timeout=10)),
            ("heartbeat without host id", lambda: self.ingest.Heartbeat(
                pb.HeartbeatRequest(), metadata=env.bearer(a.key), timeout=10)),
            ("heartbeat with the enroll secret", lambda: self.ingest.Heartbeat(
                pb.HeartbeatRequest(), metadata=env.host_metadata(a.host_id, c.enroll_secret), timeout=10)),
            ("report without metadata", self.report_fn([good], metadata=())),
            ("report with a wrong key", self.report_fn([good], metadata=wrong_key)),
            ("report with another host's key", self.report_fn([good], metadata=other_key)),
            ("fetch catalog without metadata", lambda: self.ingest.FetchCatalog(pb.FetchCatalogRequest(),
                                                                                timeout=10)),
            ("push catalog without metadata", lambda: self.ingest.PushCatalog(
                pb.PushCatalogRequest(catalog=b"SQLite format 3\x00"), timeout=10)),
            ("push catalog with the query token", lambda: self.ingest.PushCatalog(
                pb.PushCatalogRequest(catalog=b"SQLite format 3\x00"), metadata=c.query_md(), timeout=10)),
            ("push catalog with a host key", lambda: self.ingest.PushCatalog(
                pb.PushCatalogRequest(catalog=b"SQLite format 3\x00"), metadata=a.md(), timeout=10)),
        ]
        for method, req in (("Hosts", pb.HostsRequest()), ("Inventory", pb.InventoryRequest()),
                            ("History", pb.HistoryRequest()), ("Model", pb.ModelRequest(model_digest=b"\0" * 32)),
                            ("BlastRadius", pb.BlastRadiusRequest(model_digest=b"\0" * 32))):
            call = getattr(self.query, method)
            for what, md in (("no metadata", ()), ("a wrong query token", env.bearer("wrong-query-token-0123456")),
                             ("a host key", a.md()), ("the enroll secret", env.bearer(c.enroll_secret)),
                             ("an empty bearer", (("authorization", "Bearer "),))):
                cases.append((f"{method} with {what}", lambda call=call, req=req, md=md:
                              call(req, metadata=md, timeout=10)))
        for what, fn in cases:
            self.refused(SC.UNAUTHENTICATED, fn, what)
        # The admin token is accepted by the Query service.
        self.query.Hosts(pb.HostsRequest(), metadata=c.admin_md(), timeout=10)

    def test_garbage_and_truncated_bytes(self):
        c, a = self.collector, self.a
        rec = self.rec
        valid = self.ev.batch([self.ev.added(self.next_seq(), "/srv/" + "p" * 200, rec)]).SerializeToString()
        # A cut inside the fingerprint: the length prefix promises more bytes.
        truncated = valid[:len(valid) // 2]
        garbage = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01garbage"
        for b in (truncated, garbage):
            with self.assertRaises(Exception):
                pb.ReportBatch.FromString(b)            # not parsable by anyone
        enroll = self.ch.unary_unary(env.INGEST + "Enroll")
        heartbeat = self.ch.unary_unary(env.INGEST + "Heartbeat")
        inventory = self.ch.unary_unary(env.QUERY + "Inventory")
        blast = self.ch.unary_unary(env.QUERY + "BlastRadius")
        push = self.ch.unary_unary(env.INGEST + "PushCatalog")
        enroll_trunc = pb.EnrollRequest(host=pb.HostInfo(hostname="h" * 100, machine_id="m" * 100)) \
            .SerializeToString()[:-20]
        cases = [
            ("enroll: garbage", lambda: enroll(garbage, metadata=env.bearer(c.enroll_secret), timeout=10)),
            ("enroll: truncated", lambda: enroll(enroll_trunc, metadata=env.bearer(c.enroll_secret), timeout=10)),
            ("heartbeat: garbage", lambda: heartbeat(garbage, metadata=a.md(), timeout=10)),
            ("inventory: garbage", lambda: inventory(garbage, metadata=c.query_md(), timeout=10)),
            ("blast radius: truncated", lambda: blast(pb.BlastRadiusRequest(fingerprint=pb.Fingerprint.FromString(
                rec)).SerializeToString()[:-7], metadata=c.query_md(), timeout=10)),
            ("push catalog: garbage", lambda: push(garbage, metadata=c.admin_md(), timeout=10)),
            ("push catalog: not a catalog", lambda: self.ingest.PushCatalog(
                pb.PushCatalogRequest(catalog=b"this is not an SQLite file" * 10), metadata=c.admin_md(),
                timeout=10)),
            ("report: truncated batch", self.report_fn([truncated], raw=True)),
            ("report: garbage batch", self.report_fn([garbage], raw=True)),
        ]
        for what, fn in cases:
            self.refused(SC.INVALID_ARGUMENT, fn, what)

    def test_limits_and_enums(self):
        ev, rec = self.ev, self.rec
        fp = pb.Fingerprint.FromString(rec)
        s = self.next_seq()

        def event(**kw):
            e = pb.Event(sequence=s, kind=pb.MODEL_ADDED, observed_at=env.now_ms(), path="/srv/new",
                         model_digest=fp.model_digest)
            for k, v in kw.items():
                if k == "fingerprint":
                    e.fingerprint.CopyFrom(v)
                else:
                    setattr(e, k, v)
            return e

        other_fp = pb.Fingerprint()
        other_fp.CopyFrom(fp)
        other_fp.model_digest = bytes(32)
        cases = [
            ("unknown event kind 99", [event(kind=99)]),
            ("event kind unspecified", [event(kind=0)]),
            ("sequence 0", [event(sequence=0)]),
            ("31-byte digest", [event(model_digest=fp.model_digest[:31])]),
            ("33-byte digest", [event(model_digest=fp.model_digest + b"\0")]),
            ("model added without digest", [event(model_digest=b"")]),
            ("model added without path", [event(path="")]),
            ("over-long path", [event(path="/srv/" + "x" * 5000)]),
            ("fingerprint of another digest", [event(fingerprint=other_fp)]),
            ("finding without finding", [pb.Event(sequence=s, kind=pb.FINDING, observed_at=1, path="/srv/f")]),
            ("over-long finding detail", [ev.finding(s, "/srv/f", detail="d" * 70000)]),
            ("scan match without match", [pb.Event(sequence=s, kind=pb.SCAN_MATCH, observed_at=1, path="/srv/f",
                                                   model_digest=fp.model_digest)]),
            ("over-long catalog entry", [ev.match(s, "/srv/f", fp.model_digest, entry="e" * 5000)]),
            ("good events, then a bad one in the same batch",
             [ev.finding(s, "/srv/a"), ev.finding(s + 1, "/srv/b"), event(sequence=s + 2, kind=99)]),
            ("empty batch", []),
            ("4097 events in one batch", [ev.finding(s + k, "/f") for k in range(4097)]),
        ]
        for what, events in cases:
            self.refused(SC.INVALID_ARGUMENT, self.report_fn([ev.batch(events)]), "report: " + what)
        host = lambda **kw: pb.EnrollRequest(host=pb.HostInfo(**{"hostname": "h", "machine_id": "m-limits",
                                                                  "agent_version": "1", **kw}))
        c = self.collector
        for what, req in (("over-long hostname", host(hostname="h" * 300)),
                          ("over-long machine id", host(machine_id="m" * 300)),
                          ("no machine id", host(machine_id="")),
                          ("no host info", pb.EnrollRequest())):
            self.refused(SC.INVALID_ARGUMENT, lambda req=req: self.ingest.Enroll(
                req, metadata=env.bearer(c.enroll_secret), timeout=10), "enroll: " + what)
        q = c.query_md()
        for what, req in (("no target", pb.BlastRadiusRequest()),
                          ("two targets", pb.BlastRadiusRequest(model_digest=fp.model_digest, catalog_entry="x")),
                          ("31-byte digest", pb.BlastRadiusRequest(model_digest=fp.model_digest[:31])),
                          ("threshold above 1", pb.BlastRadiusRequest(model_digest=fp.model_digest, threshold=1.5))):
            self.refused(SC.INVALID_ARGUMENT, lambda req=req: self.query.BlastRadius(req, metadata=q, timeout=10),
                         "blast radius: " + what)
        self.refused(SC.INVALID_ARGUMENT, lambda: self.query.Model(pb.ModelRequest(model_digest=b"\1" * 31),
                                                                   metadata=q, timeout=10), "model: 31-byte digest")

    def test_oversize_messages(self):
        c = self.collector
        big = b"x" * (env.MAX_MESSAGE + 1024)
        event = env.field_bytes(4, big)                 # Event.path
        batch = env.field_bytes(1, event)               # ReportBatch.events
        self.refused(SC.RESOURCE_EXHAUSTED, self.report_fn([batch], raw=True), "report: 64 MiB + 1 KiB batch")
        self.refused(SC.RESOURCE_EXHAUSTED, lambda: self.ingest.PushCatalog(
            pb.PushCatalogRequest(catalog=b"SQLite format 3\x00" + big), metadata=c.admin_md(), timeout=60),
            "push catalog: 64 MiB + 1 KiB")
        self.refused(SC.RESOURCE_EXHAUSTED, lambda: self.ingest.Enroll(
            pb.EnrollRequest(host=pb.HostInfo(hostname="h", machine_id="m" * len(big))),
            metadata=env.bearer(c.enroll_secret), timeout=60), "enroll: 64 MiB + 1 KiB machine id")

    def test_bad_batch_after_good_ones_keeps_the_good(self):
        ev, a, c = self.ev, self.a, self.collector
        s = self.next_seq()
        before = c.counts()
        acks, err = a.report_stream([ev.batch([ev.finding(s, "/srv/g1"), ev.finding(s + 1, "/srv/g2")]),
                                     ev.batch([ev.finding(s + 2, "/srv/g3"), pb.Event(sequence=s + 3, kind=77)])])
        self.assertEqual([(x.acked_through, x.stored) for x in acks], [(s + 1, 2)])
        self.assertIsNotNone(err)
        self.assertEqual(err.code(), SC.INVALID_ARGUMENT)
        after = c.counts()
        self.assertEqual(after["events"], before["events"] + 2)
        self.assertEqual(after["last_seq"][a.host_id], s + 1)
        # garbage after a good batch on the raw stream: the same
        acks, err = a.report_stream([ev.batch([ev.finding(s + 2, "/srv/g3")]).SerializeToString(), b"\xff" * 12],
                                    raw=True)
        self.assertEqual([(x.acked_through, x.stored) for x in acks], [(s + 2, 1)])
        self.assertEqual(err.code() if err else SC.OK, SC.INVALID_ARGUMENT)
        self.assertEqual(c.counts()["events"], before["events"] + 3)

    def test_unknown_method(self):
        call = self.ch.unary_unary("/modelprov.v1.Ingest/NoSuchMethod")
        self.refused(SC.UNIMPLEMENTED, lambda: call(b"", metadata=self.a.md(), timeout=5), "unknown method")


# ---- re-enrollment ----------------------------------------------------------------------

class ReenrollTest(CollectorCase):
    def test_same_host_new_key(self):
        ev = self.ev
        a = self.agent("reenroll-machine-01", "reenroll-host")
        first_id, first_key = a.host_id, a.key
        a.report([ev.batch([ev.finding(s, f"/srv/{s}") for s in range(1, 6)])])
        r = a.enroll()
        self.assertEqual(r.host_id, first_id)
        self.assertNotEqual(r.host_key, first_key)
        self.assertEqual(r.acked_through, 5)
        old = env.host_metadata(first_id, first_key)
        self.assertEqual(env.status_of(lambda: self.ingest.Heartbeat(pb.HeartbeatRequest(), metadata=old,
                                                                     timeout=10)), SC.UNAUTHENTICATED)
        _, err = a.report_stream([ev.batch([ev.finding(6, "/srv/6")])], metadata=old)
        self.assertEqual(err.code() if err else SC.OK, SC.UNAUTHENTICATED)
        self.assertEqual(a.heartbeat().acked_through, 5)
        acks = a.report([ev.batch([ev.finding(6, "/srv/6")])])
        self.assertEqual((acks[0].acked_through, acks[0].stored), (6, 1))
        # Another machine id is another host.
        b = self.agent("reenroll-machine-02", "reenroll-host")
        self.assertNotEqual(b.host_id, first_id)
        self.assertEqual(b.acked_through, 0)
        hosts = self.query.Hosts(pb.HostsRequest(), metadata=self.collector.query_md(), timeout=10).hosts
        self.assertEqual(sorted((h.host_id, h.acked_through) for h in hosts),
                         sorted([(first_id, 6), (b.host_id, 0)]))


# ---- blast radius over a fleet -----------------------------------------------------------

class BlastRadiusTest(CollectorCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        ev = cls.ev
        cls.host_of = {}           # hostname -> host id
        for n, (hostname, models) in enumerate(FLEET["hosts"]):
            a = env.Agent(cls.collector, cls.ch, f"fleet-machine-{n:03d}", hostname)
            a.enroll()
            cls.host_of[hostname] = a.host_id
            events, seq = [], 0
            for key, path, _ in models:
                seq += 1
                events.append(ev.added(seq, path, RECORDS[key]))
            for key, path, removed in models:
                if removed:
                    seq += 1
                    events.append(ev.removed(seq, path, digest_of(RECORDS[key])))
            a.report([ev.batch(events)])
        catalog = os.path.join(TMP, "fleet-catalog.db")
        rec_file = os.path.join(TMP, "fleet-exact.fp")
        with open(rec_file, "wb") as f:
            f.write(RECORDS[FLEET["exact"]])
        env.catalog_add(catalog, rec_file, "fleet-base")
        with open(catalog, "rb") as f:
            cls.ingest.PushCatalog(pb.PushCatalogRequest(catalog=f.read()), metadata=cls.collector.admin_md(),
                                   timeout=30)

    def blast(self, **kw):
        return self.query.BlastRadius(pb.BlastRadiusRequest(**kw), metadata=self.collector.query_md(), timeout=60)

    def expected(self, keys, include_removed=False):
        """{(host id, path)} of every placement of keys."""
        return {(self.host_of[h], p) for h, ms in FLEET["hosts"] for k, p, removed in ms
                if k in keys and (include_removed or not removed)}

    def check(self, resp, base, include_removed=False):
        must, must_not, hard = FLEET["queries"][base]
        got = {(h.item.host_id, h.item.path): h for h in resp.hits}
        missing = self.expected(must, include_removed) - set(got)
        wrong = self.expected(must_not, True) & set(got)
        names = {v: k for k, v in self.host_of.items()}
        self.assertEqual(missing, set(), "linked models not returned: "
                         + ", ".join(f"{names[h]}:{p}" for h, p in sorted(missing)))
        self.assertEqual(wrong, set(), "unrelated models returned: "
                         + ", ".join(f"{names[h]}:{p}" for h, p in sorted(wrong)))
        hosts_must = {h for h, _ in self.expected(must, include_removed)}
        hosts_only_unrelated = {self.host_of[h] for h, ms in FLEET["hosts"]
                                if all(k in must_not for k, _, _ in ms)}
        self.assertEqual({h.item.host_id for h in resp.hits} & hosts_only_unrelated, set())
        self.assertLessEqual(hosts_must, {h.item.host_id for h in resp.hits})
        placed = {(self.host_of[hn], p): (k, r) for hn, ms in FLEET["hosts"] for k, p, r in ms}
        for (host, path), h in got.items():
            key, removed = placed[(host, path)]
            self.assertEqual(h.item.hostname, names[host])
            self.assertEqual(h.item.model_digest, digest_of(RECORDS[key]), (names[host], path))
            self.assertEqual(h.item.present, not removed, (names[host], path))
            # "exact copy" exactly for the queried model's own digest
            self.assertEqual(h.relation == "exact copy", key == base, (names[host], path, h.relation))
            self.assertTrue(h.relation, (names[host], path))
            self.assertTrue(0.0 <= h.score <= 1.0, h.score)
            self.assertLessEqual(h.item.first_seen, h.item.last_seen)
        self.assertGreaterEqual(resp.fingerprints_considered, resp.fingerprints_scored)
        hard_found = sorted(f"{names[h]}:{p}" for h, p in self.expected(hard) & set(got))
        hard_missed = sorted(f"{names[h]}:{p}" for h, p in self.expected(hard) - set(got))
        print(f"\nblast radius of {base}: {len(got)} hits; hard pairs found {hard_found}, missed {hard_missed}",
              file=sys.stderr)
        return got

    def test_base_by_digest(self):
        exact = FLEET["exact"]
        digest = digest_of(RECORDS[exact])
        got = self.check(self.blast(model_digest=digest), exact)
        for host, path in self.expected({exact}):
            self.assertEqual(got[(host, path)].relation, "exact copy")
            self.assertEqual(got[(host, path)].item.model_digest, digest)
            self.assertTrue(got[(host, path)].item.present)
        removed = {(self.host_of[h], p) for h, ms in FLEET["hosts"] for k, p, r in ms if r}
        self.assertTrue(removed)
        self.assertEqual(set(got) & removed, set(), "a removed model is returned without include_removed")
        got = self.check(self.blast(model_digest=digest, include_removed=True), exact, include_removed=True)
        for key in removed:
            self.assertIn(key, got)
            self.assertFalse(got[key].item.present)
            self.assertEqual(got[key].relation, "exact copy")

    def test_base_by_fingerprint_entry_and_host_path(self):
        exact = FLEET["exact"]
        host, path = sorted(self.expected({exact}))[0]
        hostname = {v: k for k, v in self.host_of.items()}[host]
        for how, kw in (("fingerprint", {"fingerprint": pb.Fingerprint.FromString(RECORDS[exact])}),
                        ("catalog entry", {"catalog_entry": "fleet-base"}),
                        ("host id:path", {"host_path": f"{host}:{path}"}),
                        ("hostname:path", {"host_path": f"{hostname}:{path}"})):
            with self.subTest(by=how):
                self.check(self.blast(**kw), exact)
        self.assertEqual(env.status_of(lambda: self.blast(catalog_entry="no-such-entry")), SC.NOT_FOUND)
        self.assertEqual(env.status_of(lambda: self.blast(model_digest=b"\7" * 32)), SC.NOT_FOUND)
        self.assertEqual(env.status_of(lambda: self.blast(host_path=f"{host}:/no/such/path")), SC.NOT_FOUND)

    def test_other_bases(self):
        for base in FLEET["queries"]:
            if base == FLEET["exact"]:
                continue
            with self.subTest(base=base):
                self.check(self.blast(model_digest=digest_of(RECORDS[base])), base)

    def test_inventory_of_the_fleet(self):
        items = self.inventory(include_removed=False)
        placed = {(self.host_of[h], p) for h, ms in FLEET["hosts"] for _, p, r in ms if not r}
        self.assertEqual({(i.host_id, i.path) for i in items}, placed)
        self.assertTrue(all(i.present for i in items))
        hosts = self.query.Hosts(pb.HostsRequest(), metadata=self.collector.query_md(), timeout=10).hosts
        self.assertEqual(len(hosts), len(FLEET["hosts"]))
        for h in hosts:
            expect = sum(1 for name, ms in FLEET["hosts"] if self.host_of[name] == h.host_id for _, _, r in ms if not r)
            self.assertEqual(h.models, expect, h.hostname)


# ---- shutdown ----------------------------------------------------------------------

class ShutdownTest(unittest.TestCase):
    def test_sigterm_with_open_stream(self):
        # Several streams left open: on SIGTERM, cancel_all ends them all and
        # the workers still send their statuses while the server shuts down.
        # Regression: the queue was shut down before those last batches were
        # started, and gRPC aborted ("assertion failed: grpc_cq_begin_op").
        import queue
        c = env.Collector(os.path.join(TMP, "sigterm")).start()
        ch = c.channel()
        ev = env.Events()
        streams = []
        for i in range(8):
            a = env.Agent(c, ch, f"sigterm-machine-{i}")
            a.enroll()
            q = queue.Queue()

            def requests(q=q):
                while True:
                    b = q.get()
                    if b is None:
                        return
                    yield b
            responses = a.ingest.Report(requests(), metadata=a.md(), timeout=60)
            q.put(ev.batch([ev.finding(1, "/srv/1")]))
            self.assertEqual(next(responses).acked_through, 1)
            streams.append((a, q, responses))
        t0 = time.monotonic()
        rc = c.stop(timeout=15)
        self.assertEqual(rc, 0, c.log())
        self.assertLess(time.monotonic() - t0, 10)
        for _, q, responses in streams:
            with self.assertRaises(grpc.RpcError):
                next(responses)
            q.put(None)
        ch.close()
        # The store survives: started again, the hosts are still there.
        c.start()
        try:
            ch = c.channel()
            hosts = rpc.QueryStub(ch).Hosts(pb.HostsRequest(), metadata=c.query_md(), timeout=10).hosts
            self.assertEqual(sorted((h.host_id, h.acked_through) for h in hosts),
                             sorted((a.host_id, 1) for a, _, _ in streams))
            ch.close()
        finally:
            self.assertEqual(c.stop(), 0, c.log())

if __name__ == "__main__":
    unittest.main(verbosity=2)
