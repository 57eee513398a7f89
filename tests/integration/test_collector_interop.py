#!/usr/bin/python3
"""Interop: any gRPC client generated from proto/modelprov.proto talks to the
C collector.  A Python grpcio client, its code generated at test time with
Debian's grpc_tools, runs every method of both services against a real
`modelprov-collector` on loopback, once in plaintext (--insecure-loopback)
and once over TLS with a self-signed certificate:

  Enroll, Report (one stream, several batches, each ack checked), Heartbeat,
  Hosts, Inventory (with and without removed models), Model, History,
  BlastRadius (by digest and by catalog entry), PushCatalog and FetchCatalog
  (a catalog made with `modelprov catalog add`; unchanged when current).

The models are generated (tests/gen/make_model.py): a base, a copy of it at a
second path, and an independent one, so the test needs no zoo."""
import hashlib
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import collector_env as env  # noqa: E402
from collector_env import grpc  # noqa: E402

pb, rpc = env.load_stubs()


class Models:
    """Generated models and their records, shared by both transports."""

    def __init__(self, tmp):
        common = ("--hidden", "64", "--layers", "2", "--vocab", "512")
        self.base_dir = env.make_model(os.path.join(tmp, "base"), *common, "--seed", "1")
        self.other_dir = env.make_model(os.path.join(tmp, "other"), *common, "--seed", "2")
        self.base = env.fingerprint(self.base_dir, os.path.join(tmp, "base.fp"))
        self.other = env.fingerprint(self.other_dir, os.path.join(tmp, "other.fp"))
        self.base_fp = pb.Fingerprint.FromString(self.base)
        self.other_fp = pb.Fingerprint.FromString(self.other)
        self.catalog = env.catalog_add(os.path.join(tmp, "catalog.db"), os.path.join(tmp, "base.fp"), "gen-base")
        with open(self.catalog, "rb") as f:
            self.catalog_bytes = f.read()


class InteropScenario:
    """Every method, in the order an agent and an operator use them."""
    tls = False

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="collector-interop-")
        cls.models = Models(cls.tmp)
        cls.collector = env.Collector(os.path.join(cls.tmp, "collector"), tls=cls.tls).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.collector.stop()
        log = cls.collector.log()
        shutil.rmtree(cls.tmp)
        if rc != 0:
            raise AssertionError(f"collector exit status {rc} after SIGTERM; its log:\n{log[-6000:]}")

    def test_every_method(self):
        m, c = self.models, self.collector
        ch = c.channel()
        grpc.channel_ready_future(ch).result(timeout=10)
        query = rpc.QueryStub(ch)
        ingest = rpc.IngestStub(ch)
        agent = env.Agent(c, ch, machine_id="0123456789abcdef0123456789abcdef", hostname="interop-host")
        ev = env.Events()
        t0 = env.now_ms()

        # Enroll: a UUID host id, a key, nothing acknowledged yet.
        r = agent.enroll()
        self.assertRegex(r.host_id, env.UUID)
        self.assertGreaterEqual(len(r.host_key), 16)
        self.assertEqual(r.acked_through, 0)

        # Report: three batches on one stream, one ack each.
        base_digest, other_digest = m.base_fp.model_digest, m.other_fp.model_digest
        self.assertEqual(len(base_digest), 32)
        batches = [
            ev.batch([ev.added(1, "/srv/models/base", m.base), ev.added(2, "/srv/models/other", m.other)]),
            ev.batch([ev.finding(3, "/srv/models/other"),
                      ev.match(4, "/srv/models/base", base_digest, entry="gen-base"),
                      ev.added(5, "/opt/copy-of-base", m.base)]),
            ev.batch([ev.removed(6, "/srv/models/other", other_digest)]),
        ]
        acks = agent.report(batches)
        self.assertEqual([(a.acked_through, a.stored, a.duplicates) for a in acks], [(2, 2, 0), (5, 3, 0), (6, 1, 0)])

        # Heartbeat: the server's clock and where it is.
        hb = agent.heartbeat(models=2, outbox_pending=0)
        self.assertEqual(hb.acked_through, 6)
        self.assertLess(abs(hb.server_time - env.now_ms()), 60_000)
        self.assertEqual(hb.catalog_version, "")

        # Hosts.
        hosts = query.Hosts(pb.HostsRequest(), metadata=c.query_md(), timeout=10).hosts
        self.assertEqual(len(hosts), 1)
        h = hosts[0]
        self.assertEqual((h.host_id, h.hostname, h.acked_through, h.models), (agent.host_id, "interop-host", 6, 2))
        self.assertEqual(h.agent_version, "test-agent 1")
        self.assertFalse(h.stale)
        self.assertGreaterEqual(h.last_seen, h.enrolled_at)

        # Inventory: the two copies of the base are present; the removed
        # model only with include_removed.
        items = query.Inventory(pb.InventoryRequest(), metadata=c.query_md(), timeout=10).items
        self.assertEqual(sorted((i.path, i.model_digest, i.present) for i in items),
                         [("/opt/copy-of-base", base_digest, True), ("/srv/models/base", base_digest, True)])
        for i in items:
            self.assertEqual((i.host_id, i.hostname), (agent.host_id, "interop-host"))
            self.assertLessEqual(i.first_seen, i.last_seen)
            self.assertGreaterEqual(i.first_seen, t0 - 1000)
            with self.subTest("inventory model_name"):
                self.assertEqual(i.model_name, m.base_fp.name)
        items = query.Inventory(pb.InventoryRequest(host_id=agent.host_id, include_removed=True),
                                metadata=c.query_md(), timeout=10).items
        self.assertEqual(sorted((i.path, i.present) for i in items),
                         [("/opt/copy-of-base", True), ("/srv/models/base", True), ("/srv/models/other", False)])

        # Model: the stored fingerprint is the record that was sent, and
        # where it is.
        mr = query.Model(pb.ModelRequest(model_digest=base_digest), metadata=c.query_md(), timeout=10)
        self.assertEqual(mr.fingerprint, m.base_fp)
        self.assertEqual(sorted(l.path for l in mr.locations), ["/opt/copy-of-base", "/srv/models/base"])
        with self.assertRaises(grpc.RpcError) as e:
            query.Model(pb.ModelRequest(model_digest=b"\x01" * 32), metadata=c.query_md(), timeout=10)
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)

        # History: every event in order, without fingerprint bodies.
        hist = query.History(pb.HistoryRequest(host_id=agent.host_id), metadata=c.query_md(), timeout=10).events
        self.assertEqual([(e.host_id, e.event.sequence, e.event.kind, e.event.path) for e in hist],
                         [(agent.host_id, 1, pb.MODEL_ADDED, "/srv/models/base"),
                          (agent.host_id, 2, pb.MODEL_ADDED, "/srv/models/other"),
                          (agent.host_id, 3, pb.FINDING, "/srv/models/other"),
                          (agent.host_id, 4, pb.SCAN_MATCH, "/srv/models/base"),
                          (agent.host_id, 5, pb.MODEL_ADDED, "/opt/copy-of-base"),
                          (agent.host_id, 6, pb.MODEL_REMOVED, "/srv/models/other")])
        for e in hist:
            self.assertFalse(e.event.HasField("fingerprint"))
        self.assertEqual(hist[0].event.model_digest, base_digest)
        self.assertEqual((hist[2].event.finding.kind, hist[2].event.finding.detail), ("unsafe-pickle-global", "os.system"))
        self.assertEqual((hist[3].event.match.catalog_entry, hist[3].event.match.verdict), ("gen-base", "Confirmed Match"))
        self.assertAlmostEqual(hist[3].event.match.score, 0.97)
        only = query.History(pb.HistoryRequest(path="/srv/models/other"), metadata=c.query_md(), timeout=10).events
        self.assertEqual([e.event.sequence for e in only], [2, 3, 6])

        # Catalog distribution: push (admin token), fetch (host key).
        pr = ingest.PushCatalog(pb.PushCatalogRequest(catalog=m.catalog_bytes), metadata=c.admin_md(), timeout=30)
        self.assertEqual(pr.version, hashlib.sha256(m.catalog_bytes).hexdigest())
        self.assertEqual(pr.entries, 1)
        fr = ingest.FetchCatalog(pb.FetchCatalogRequest(), metadata=agent.md(), timeout=30)
        self.assertEqual((fr.version, fr.unchanged, fr.catalog), (pr.version, False, m.catalog_bytes))
        fr = ingest.FetchCatalog(pb.FetchCatalogRequest(have_version=pr.version), metadata=agent.md(), timeout=30)
        self.assertEqual((fr.version, fr.unchanged, fr.catalog), (pr.version, True, b""))
        self.assertEqual(agent.heartbeat().catalog_version, pr.version)

        # Blast radius of the base: both copies, as exact copies; never the
        # independent model.
        for how, req in (("digest", pb.BlastRadiusRequest(model_digest=base_digest)),
                         ("fingerprint", pb.BlastRadiusRequest(fingerprint=m.base_fp)),
                         ("catalog entry", pb.BlastRadiusRequest(catalog_entry="gen-base"))):
            with self.subTest(blast_radius_by=how):
                br = query.BlastRadius(req, metadata=c.query_md(), timeout=30)
                hits = sorted((h.item.path, h.relation, h.item.present) for h in br.hits)
                self.assertEqual(hits, [("/opt/copy-of-base", "exact copy", True),
                                        ("/srv/models/base", "exact copy", True)])
                for h in br.hits:
                    self.assertEqual((h.item.host_id, h.item.model_digest), (agent.host_id, base_digest))
                    self.assertGreaterEqual(h.score, 0.99)
                self.assertGreaterEqual(br.fingerprints_considered, br.fingerprints_scored)
        ch.close()


class PlaintextInterop(InteropScenario, unittest.TestCase):
    tls = False


class TlsInterop(InteropScenario, unittest.TestCase):
    tls = True

    def test_plaintext_client_and_unknown_ca_refused(self):
        c = self.collector
        for what, ch in (("plaintext", grpc.insecure_channel(c.target)),
                         ("system roots", grpc.secure_channel(c.target, grpc.ssl_channel_credentials()))):
            with self.subTest(client=what):
                stub = rpc.QueryStub(ch)
                code = env.status_of(lambda: stub.Hosts(pb.HostsRequest(), metadata=c.query_md(), timeout=5))
                self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
                ch.close()
        self.assertTrue(c.alive())


if __name__ == "__main__":
    unittest.main(verbosity=2)
