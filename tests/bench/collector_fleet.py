#!/usr/bin/python3
"""Collector fleet load and fault test (issue 7): two `modelprov-collector`
instances on loopback sharing one PostgreSQL database, 1,000 simulated
agents split across them, one instance SIGKILLed mid-stream and its agents
failing over to the other.  Run it as tests/bench/collector_fleet.sh, which
wraps it in tests/postgres/pg_server.py (a private PostgreSQL server).

  1. fingerprint records: every zoo model (../shared/zoo), or generated ones
     when the zoo is missing (collector_load.records_pool());
  2. reference: a fresh database, ONE collector instance, every agent
     enrolled on it and reporting its whole inventory, no kill;
  3. fleet: another fresh database, instances A and B sharing it and the
     enroll secret; half of the agents enroll through A, half through B
     (mixed in each generator process), and each reports its inventory:
     --models MODEL_ADDED events (sequence 1..N, each with a real
     fingerprint record and a path of its own) in batches of --batch, up
     to --pipeline batches ahead of their acks (as the real agent's
     reporter does).  Once --kill-at of all events are acknowledged, B gets
     SIGKILL.  Its agents see their calls fail and fail over as a real
     agent does: a Heartbeat on the survivor tells them acked_through, and
     they resend from acked_through + 1 with the same sequence numbers and
     the same bytes (an event is a pure function of agent and sequence);
  4. the store is checked in the database (both runs): every host has
     count(*) = count(DISTINCT seq) = last_seq = --models, sequences 1..N,
     one inventory row per event, and the total equals the events sent
     (none lost, none doubled); the acks' `stored` counts plus what the
     Heartbeats revealed (stored by B, acks lost with it) add up to the
     same number.

Prints, for both runs: ingest rate (events stored / time from the common
start to the last ack), p50/p99 acknowledgement latency (batch written to
the stream -> its ack read), CPU of the collectors, of PostgreSQL, of the
load generator and of everything else on the machine; for the fleet run
the failover time (SIGKILL -> every agent of B served by A; per agent:
failure -> A's Heartbeat answer, failure -> first ack from A), events
resent, duplicates the collector recognised and the failed calls by status;
and the fleet/reference ratio.  Exits 1 when an integrity check fails, 0
otherwise: nothing else is asserted (on a small machine both instances,
PostgreSQL and the load generator share the same cores; the ratio says
what two instances and a failover cost there).

The load generator is --procs processes, each an asyncio loop of grpc.aio
clients (a thread per stream would cost more CPU than the collectors),
sending pre-serialized bytes through raw streams; agents of a process share
a few HTTP/2 connections per instance.

usage: collector_fleet.py [--agents 1000] [--models 50] [--batch 10]
                          [--pipeline 4] [--procs N] [--kill-at 0.5]
                          [--engine postgresql|sqlite] [--no-reference]
                          [--threads N] [--keep]"""
import argparse
import asyncio
import multiprocessing
import os
import secrets
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.path.insert(0, HERE)
import collector_env as env  # noqa: E402
from collector_env import encode_varint, field_bytes, grpc  # noqa: E402
from collector_load import cpu_seconds, records_pool  # noqa: E402

# A failed-over agent retries the survivor this often before it gives up
# (the integrity check then reports what it could not deliver).
MAX_ATTEMPTS = 40
RETRY_S = (0.05, 1.0)                   # backoff: first, cap
CALL_TIMEOUT_S = 120


def machine_busy():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]      # guest time is inside user already
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name (field 3 first)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def tree_cpu(pid):
    """CPU seconds of a process and its children, those still running and
    those it has reaped (a PostgreSQL server: the postmaster and its
    backends, including the ones of a killed collector)."""
    tick = os.sysconf("SC_CLK_TCK")
    f = proc_stat(pid)
    total = sum(int(x) for x in f[11:15])           # utime stime cutime cstime
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            c = proc_stat(d)
        except OSError:
            continue
        if c[1] == str(pid):
            total += sum(int(x) for x in c[11:15])
    return total / tick


def pg_server_pid():
    """The postmaster's pid of the test server (MODELPROV_TEST_PG), or None."""
    if not os.environ.get("MODELPROV_TEST_PG"):
        return None
    conn, _ = env.pg_admin()
    try:
        with conn.cursor() as c:
            c.execute("SHOW data_directory")
            data = c.fetchone()[0]
        with open(os.path.join(data, "postmaster.pid")) as f:
            return int(f.readline())
    except OSError:
        return None
    finally:
        conn.close()


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


# ---- the simulated agents (run in worker processes) -----------------------------

_progress = None                        # events acknowledged, all processes (shared Value)


def worker_init(progress):
    global _progress
    _progress = progress


class Inventory:
    """The events of one agent as bytes: event `seq` is always the same
    bytes (fixed observed_at, path and record), so a resend after a failover
    is exactly what was sent before."""

    def __init__(self, agent_no, tails, models, t_base):
        self.agent_no = agent_no
        self.tails = tails
        self.models = models
        self.prefix = f"/srv/fleet-{agent_no:05d}/model-".encode()
        self.t_base = t_base

    def event(self, seq):
        head = (b"\x08" + encode_varint(seq) + b"\x10\x01" + b"\x18" + encode_varint(self.t_base + seq) +
                field_bytes(4, self.prefix + str(seq).encode()))
        return field_bytes(1, head + self.tails[(self.agent_no * 7 + seq) % len(self.tails)])

    def batch(self, first, n):
        """The ReportBatch of events first .. first + n - 1 (bytes)."""
        last = min(self.models, first + n - 1)
        return b"".join(self.event(s) for s in range(first, last + 1)), last


class Link:
    """The aio channels of one process to one collector instance, shared
    by its agents (--agents-per-connection per HTTP/2 connection)."""

    def __init__(self, target, per_channel):
        self.target = target
        self.per_channel = per_channel
        self.channels = []

    def channel(self, k):
        i = k // self.per_channel
        while len(self.channels) <= i:
            self.channels.append(grpc.aio.insecure_channel(self.target, options=env.CHANNEL_OPTIONS +
                                                           (("grpc.use_local_subchannel_pool", 1),)))
        return self.channels[i]

    async def close(self):
        for ch in self.channels:
            await ch.close()


def rpc_failure(e):
    """A short text for an exception that ended a call."""
    if isinstance(e, grpc.aio.AioRpcError):
        return f"{e.code().name}: {e.details()}"
    return f"{type(e).__name__}: {e}"


# Exceptions that mean "this call is over": the instance died, the
# connection broke, or the stream was already finished when we wrote.
CALL_ERRORS = (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError, ConnectionError)


class SimAgent:
    """One host: enrolled through its home instance, reports its
    inventory over a pipelined Report stream and fails over to the next
    instance of `links` when a call fails."""

    def __init__(self, no, home, links, inv, cred, args, stats):
        self.no, self.home, self.links, self.inv = no, home, links, inv
        self.host_id, self.key = cred
        self.md = env.host_metadata(self.host_id, self.key)
        self.args = args
        self.stats = stats
        self.at = home                  # the instance currently used
        self.acked = 0
        self.sent_max = 0               # highest sequence ever written to a stream
        self.failed_at = None           # time of the failure we are recovering from
        self.reconnected = False        # since then, a Heartbeat answered

    def channel(self):
        return self.links[self.at].channel(self.no)

    async def heartbeat(self):
        pb, rpc = env.load_stubs()
        r = await rpc.IngestStub(self.channel()).Heartbeat(pb.HeartbeatRequest(agent_version="fleet-bench"),
                                                           metadata=self.md, timeout=10)
        if r.acked_through > self.acked:
            # stored by the dead instance, its acks lost with the stream
            self.stats["learned"] += r.acked_through - self.acked
        self.acked = max(self.acked, r.acked_through)

    async def stream_once(self):
        """One Report stream from acked + 1 to the end of the inventory.
        Returns normally when everything is acknowledged; raises the error
        that ended the stream otherwise."""
        pb, _ = env.load_stubs()
        call = self.channel().stream_stream(env.INGEST + "Report")(metadata=self.md, timeout=CALL_TIMEOUT_S)
        inflight = []                   # (last seq, time written), oldest first
        nxt = self.acked + 1
        try:
            while self.acked < self.inv.models:
                while nxt <= self.inv.models and len(inflight) < self.args.pipeline:
                    data, last = self.inv.batch(nxt, self.args.batch)
                    await call.write(data)
                    if nxt <= self.sent_max:
                        self.stats["resent"] += min(last, self.sent_max) - nxt + 1
                    self.sent_max = max(self.sent_max, last)
                    inflight.append((last, time.time()))
                    nxt = last + 1
                raw = await call.read()
                if raw is grpc.aio.EOF:
                    raise ConnectionError("Report stream ended before its acks")
                now = time.time()
                ack = pb.ReportAck.FromString(raw)
                last, t_sent = inflight.pop(0)
                self.stats["latency"].append(now - t_sent)
                self.stats["stored"] += ack.stored
                self.stats["duplicates"] += ack.duplicates
                if ack.stored:
                    with _progress.get_lock():
                        _progress.value += ack.stored
                if self.failed_at is not None:
                    self.stats["failover"].append((self.failed_at, now))
                    self.failed_at = None
                self.acked = max(self.acked, ack.acked_through)
                if ack.acked_through < last:
                    # a gap: the collector stopped short; resync and resend
                    self.stats["gaps"] += 1
                    raise ConnectionError(f"acked through {ack.acked_through} of {last}")
            await call.done_writing()
            raw = await call.read()
            if raw is not grpc.aio.EOF:
                raise ConnectionError("an ack more than batches")
            code = await call.code()
            if code != grpc.StatusCode.OK:
                raise ConnectionError(f"Report ended with {code.name}")
        except BaseException:
            call.cancel()
            raise

    async def run(self):
        attempt = 0
        synced = True                   # acked is known to be the server's (fresh enrollment)
        while True:
            try:
                if not synced:
                    await self.heartbeat()
                    synced = True
                    if self.failed_at is not None and not self.reconnected:
                        self.stats["reconnect"].append(time.time() - self.failed_at)
                        self.reconnected = True
                await self.stream_once()
                now = time.time()
                if self.failed_at is not None:
                    # the dead instance had stored everything: no ack needed
                    self.stats["failover"].append((self.failed_at, now))
                self.stats["done"].append(now)
                return
            except CALL_ERRORS as e:
                attempt += 1
                synced = False
                what = e.code().name if isinstance(e, grpc.aio.AioRpcError) else type(e).__name__
                self.stats["retries"][what] = self.stats["retries"].get(what, 0) + 1
                if self.failed_at is None:
                    self.failed_at = time.time()
                    self.reconnected = False
                    self.stats["failures"] += 1
                if attempt >= MAX_ATTEMPTS:
                    self.stats["errors"].append(f"agent {self.no}: gave up after {attempt} attempts: "
                                                f"{rpc_failure(e)}")
                    return
                # The next instance (the load balancer's job in a real
                # fleet: the agent reconnects to its one address).
                self.at = (self.at + 1) % len(self.links)
                await asyncio.sleep(min(RETRY_S[1], RETRY_S[0] * 2 ** min(attempt - 1, 10)))


async def enroll_all(targets, secret, machines, per_channel):
    pb, rpc = env.load_stubs()
    links = [Link(t, per_channel) for t in targets]

    async def one(k, home, machine):
        stub = rpc.IngestStub(links[home].channel(k))
        r = await stub.Enroll(pb.EnrollRequest(host=pb.HostInfo(hostname="fleet-" + machine[-5:], machine_id=machine,
                                                                 agent_version="fleet-bench", os="linux")),
                              metadata=env.bearer(secret), timeout=60)
        return (r.host_id, r.host_key)

    creds = await asyncio.gather(*(one(k, home, m) for k, (home, m) in enumerate(machines)))
    for link in links:
        await link.close()
    return creds


def enroll_job(job):
    targets, secret, machines, per_channel = job
    return asyncio.run(enroll_all(targets, secret, machines, per_channel))


async def report_all(job):
    targets, agents, record_files, args, t0 = job
    pb, _ = env.load_stubs()
    tails = []
    for path in record_files:
        with open(path, "rb") as f:
            rec = f.read()
        tails.append(field_bytes(5, pb.Fingerprint.FromString(rec).model_digest) + field_bytes(6, rec))
    links = [Link(t, args.agents_per_connection) for t in targets]
    stats = {"latency": [], "stored": 0, "learned": 0, "duplicates": 0, "resent": 0, "gaps": 0, "failures": 0,
             "failover": [], "reconnect": [], "done": [], "errors": [], "retries": {}}
    t_base = int(t0 * 1000)
    sims = [SimAgent(k, home, links, Inventory(no, tails, args.models, t_base), cred, args, stats)
            for k, (no, home, cred) in enumerate(agents)]
    cpu0 = time.process_time()
    await asyncio.sleep(max(0.0, t0 - time.time()))
    await asyncio.gather(*(s.run() for s in sims))
    stats["cpu"] = time.process_time() - cpu0
    for link in links:
        await link.close()
    return stats


def report_job(job):
    return asyncio.run(report_all(job))


# ---- one run -------------------------------------------------------------------------

class Run:
    """One measured run: its instances, its agents, what they reported."""

    def __init__(self, name, collectors, kill=None):
        self.name = name
        self.collectors = collectors
        self.kill = kill                # the instance to SIGKILL, or None
        self.t_kill = None
        self.pg_pid = None              # the PostgreSQL server, for its CPU time


def start_instances(tmp, name, url, n, threads):
    """n collectors on one store, all with the first one's secrets."""
    out = []
    for i in range(n):
        c = env.Collector(os.path.join(tmp, f"{name}-{'AB'[i]}"), threads=threads or None)
        c.store_url = url
        if out:
            first = out[0]
            for attr in ("enroll_secret", "enroll_file", "query_token", "query_file", "admin_token", "admin_file"):
                setattr(c, attr, getattr(first, attr))
        out.append(c)
    for c in out:
        c.start()
    return out


def run_agents(ctx, run, args, procs, record_files):
    """Enrolls args.agents hosts (as many through each instance),
    lets them report, SIGKILLs run.kill when args.kill_at of the events are
    acknowledged.  Returns the merged stats and the timing."""
    targets = [c.target for c in run.collectors]
    n_inst = len(targets)
    tag = secrets.token_hex(4)
    # Home instances alternate within each generator process's agents.
    machines = [((i // procs) % n_inst, f"fleet-{tag}-{i:05d}") for i in range(args.agents)]
    progress = ctx.Value("q", 0)
    total = args.agents * args.models
    with ctx.Pool(procs, initializer=worker_init, initargs=(progress,)) as pool:
        t = time.time()
        parts = pool.map(enroll_job, [(targets, run.collectors[0].enroll_secret, machines[i::procs],
                                       args.agents_per_connection) for i in range(procs)])
        creds = [None] * args.agents
        for i, part in enumerate(parts):
            for k, cred in enumerate(part):
                creds[i + k * procs] = cred
        enroll_s = time.time() - t

        t0 = time.time() + 2.0
        jobs = [(targets, [(no, machines[no][0], creds[no]) for no in range(i, args.agents, procs)], record_files,
                 args, t0) for i in range(procs)]
        pending = pool.map_async(report_job, jobs)
        while time.time() < t0:
            time.sleep(0.005)
        cpu0 = {id(c): cpu_seconds(c.proc.pid) for c in run.collectors}
        pg0 = tree_cpu(run.pg_pid) if run.pg_pid else None
        busy0 = machine_busy()
        cpu = {}
        while not pending.ready():
            if run.kill is not None and run.t_kill is None and progress.value >= args.kill_at * total:
                cpu[id(run.kill)] = cpu_seconds(run.kill.proc.pid) - cpu0[id(run.kill)]
                run.t_kill = time.time()
                run.kill.kill()
                print(f"  {run.name}: SIGKILL to instance {run.kill.target} after {progress.value:,} of "
                      f"{total:,} events acknowledged ({run.t_kill - t0:.1f} s in)", flush=True)
            time.sleep(0.002)
        results = pending.get()
        window = time.time() - t0
        busy1 = machine_busy()
        pg1 = tree_cpu(run.pg_pid) if run.pg_pid else None
        for c in run.collectors:
            if c.alive():
                cpu[id(c)] = cpu_seconds(c.proc.pid) - cpu0[id(c)]
    merged = {"latency": [], "stored": 0, "learned": 0, "duplicates": 0, "resent": 0, "gaps": 0, "failures": 0,
              "failover": [], "reconnect": [], "done": [], "errors": [], "retries": {}, "cpu": 0.0}
    for r in results:
        for k, v in r.items():
            if isinstance(v, dict):
                for code, n in v.items():
                    merged[k][code] = merged[k].get(code, 0) + n
            else:
                merged[k] = merged[k] + v
    end = max(merged["done"]) if merged["done"] else time.time()
    merged.update(enroll_s=enroll_s, t0=t0, wall=end - t0, window=window, collector_cpu=[cpu.get(id(c), 0.0) for c in run.collectors],
                  machine_cores=(busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]) * (os.cpu_count() or 1),
                  pg_cpu=pg1 - pg0 if pg0 is not None else None)
    return merged


# ---- integrity, in the database ------------------------------------------------------

def check_store(url, agents, models, r):
    """Problems found in the store (empty: none lost, none doubled) and
    the total number of event rows.  r: the run's stats, whose acks
    (stored) plus what heartbeats revealed after a failover (learned: stored
    by the killed instance, its acks lost) must add up to the rows."""
    problems = []
    with env.StoreReader(url) as db:
        rows = db.execute(
            "SELECT h.id, h.last_seq, count(e.seq), count(DISTINCT e.seq), coalesce(min(e.seq), 0), "
            "coalesce(max(e.seq), 0) FROM hosts h LEFT JOIN events e ON e.host_id = h.id "
            "GROUP BY h.id, h.last_seq").fetchall()
        total = db.execute("SELECT count(*) FROM events").fetchone()[0]
        inventory = db.execute("SELECT count(*) FROM inventory").fetchone()[0]
        present = db.execute("SELECT count(*) FROM inventory WHERE present = 1").fetchone()[0]
    if len(rows) != agents:
        problems.append(f"{len(rows)} hosts enrolled, expected {agents}")
    bad = [r for r in rows if not (r[1] == r[2] == r[3] == r[5] == models and r[4] == 1)]
    for host, last, n, distinct, lo, hi in bad[:5]:
        problems.append(f"host {host}: last_seq {last}, {n} rows, {distinct} distinct sequences, {lo}..{hi} "
                        f"(expected {models} and 1..{models})")
    if len(bad) > 5:
        problems.append(f"... and {len(bad) - 5} more hosts")
    want = agents * models
    if total != want:
        problems.append(f"{total:,} event rows, expected {want:,}")
    if inventory != want or present != want:
        problems.append(f"{inventory:,} inventory rows ({present:,} present), expected {want:,}")
    if r["stored"] + r["learned"] != total:
        problems.append(f"acks said {r['stored']:,} events stored and heartbeats {r['learned']:,} more, "
                        f"the store holds {total:,}")
    return problems, total


# ---- main ----------------------------------------------------------------------------

def new_store(tmp, engine, name):
    if engine == "sqlite":
        return "sqlite:" + os.path.join(tmp, name + ".db")
    conn, info = env.pg_admin()
    db = f"fleet_{name}_{secrets.token_hex(4)}"
    with conn.cursor() as c:
        c.execute(f"CREATE DATABASE {db}")
    conn.close()
    return f"postgresql://{info['user']}@{info['host']}:{info['port']}/{db}"


def report(name, r, args, total):
    lat = r["latency"]
    delivered = r["stored"] + r["learned"]
    rate = delivered / r["wall"] if r["wall"] > 0 else 0.0
    w = r["window"]
    cpu = ", ".join(f"{c / w:.2f}" for c in r["collector_cpu"])
    known = sum(r["collector_cpu"]) + r["cpu"] + (r["pg_cpu"] or 0)
    pg = f"; PostgreSQL {r['pg_cpu'] / w:.2f}" if r["pg_cpu"] is not None else ""
    print(f"{name}: {rate:,.0f} events/s ({delivered:,} stored in {r['wall']:.1f} s from the common start to the "
          f"last ack); ack latency p50 {percentile(lat, 50) * 1000:.0f} ms, p99 {percentile(lat, 99) * 1000:.0f} ms "
          f"over {len(lat):,} batches; enrollment of {args.agents:,} hosts {r['enroll_s']:.1f} s")
    print(f"  CPU (cores over the run): collector(s) {cpu}{pg}; load generator {r['cpu'] / w:.2f}; whole machine "
          f"{r['machine_cores']:.2f} of {os.cpu_count()} (everything else on it: "
          f"{max(0.0, r['machine_cores'] - known / w):.2f})")
    return rate


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--models", type=int, default=50, help="MODEL_ADDED events per agent (its inventory)")
    ap.add_argument("--batch", type=int, default=10, help="events per ReportBatch")
    ap.add_argument("--pipeline", type=int, default=4, help="batches in flight per stream (the agent's default)")
    ap.add_argument("--procs", type=int, default=0, help="load generator processes (default: CPUs, 2..8)")
    ap.add_argument("--kill-at", type=float, default=0.5, help="SIGKILL instance B after this share of events")
    ap.add_argument("--engine", choices=("postgresql", "sqlite"), default="postgresql",
                    help="sqlite: both instances on one SQLite file (no server needed; a smoke test)")
    ap.add_argument("--no-reference", action="store_true", help="skip the one-instance reference run")
    ap.add_argument("--agents-per-connection", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="collector worker threads (default: its own)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (and the databases)")
    args = ap.parse_args()
    if args.agents < 2 or args.models < 1 or args.batch < 1 or args.pipeline < 1 or not 0 < args.kill_at < 1:
        ap.error("need --agents >= 2, --models >= 1, --batch >= 1, --pipeline >= 1, 0 < --kill-at < 1")
    procs = args.procs or max(2, min(8, os.cpu_count() or 2))
    if not os.access(env.COLLECTOR_BIN, os.X_OK):
        sys.exit(f"no collector binary at {env.COLLECTOR_BIN} (set MODELPROV_COLLECTOR_BIN)")
    if args.engine == "postgresql" and not os.environ.get("MODELPROV_TEST_PG"):
        sys.exit("no PostgreSQL server: run tests/bench/collector_fleet.sh (or --engine sqlite)")

    tmp = tempfile.mkdtemp(prefix="collector-fleet-")
    ctx = multiprocessing.get_context("spawn")
    total = args.agents * args.models
    failed = []
    collectors = []
    try:
        pool, source = records_pool(tmp)
        record_files = []
        for i, (_, rec) in enumerate(pool):
            path = os.path.join(tmp, f"rec-{i}.fp")
            with open(path, "wb") as f:
                f.write(rec)
            record_files.append(path)
        avg_rec = sum(len(r) for _, r in pool) / len(pool)
        print(f"collector_fleet: {args.agents:,} agents x {args.models} MODEL_ADDED events = {total:,} events "
              f"(fingerprints from {source}, avg record {avg_rec / 1024:.1f} KiB), batches of {args.batch}, "
              f"{args.pipeline} in flight, {procs} generator processes, {args.engine} store, {os.cpu_count()} CPUs",
              flush=True)

        pg_pid = pg_server_pid() if args.engine == "postgresql" else None
        ref_rate = None
        if not args.no_reference:
            url = new_store(tmp, args.engine, "ref")
            run = Run("reference (one instance, no kill)", start_instances(tmp, "ref", url, 1, args.threads))
            run.pg_pid = pg_pid
            collectors += run.collectors
            r = run_agents(ctx, run, args, procs, record_files)
            rc = run.collectors[0].stop()
            ref_rate = report(run.name, r, args, total)
            problems, rows = check_store(url, args.agents, args.models, r)
            print(f"  store: {rows:,} event rows for {total:,} events sent: "
                  f"{'none lost, none doubled' if not problems else 'INTEGRITY FAILED'}; collector exit status {rc}")
            failed += [f"reference: {p}" for p in problems + r["errors"][:5]]

        url = new_store(tmp, args.engine, "fleet")
        run = Run("fleet (two instances, one killed)", start_instances(tmp, "fleet", url, 2, args.threads))
        run.pg_pid = pg_pid
        collectors += run.collectors
        run.kill = run.collectors[1]
        r = run_agents(ctx, run, args, procs, record_files)
        rc = run.collectors[0].stop()
        rate = report(run.name, r, args, total)
        if run.t_kill is None:
            print("  the kill never happened: every event was acknowledged first (use a smaller --kill-at)")
            failed.append("fleet: no kill")
        else:
            back = [t for _, t in r["failover"]]
            per = [b - a for a, b in r["failover"]]
            done_after = sum(1 for t in r["done"] if t > run.t_kill)
            rec = r["reconnect"]
            if back:
                print(f"  failover: {max(back) - run.t_kill:.2f} s from SIGKILL until every one of the {len(back)} "
                      f"agents whose calls failed was served by the survivor; per agent: failure -> the "
                      f"survivor's Heartbeat answer p50 {percentile(rec, 50) * 1000:.0f} ms, max "
                      f"{max(rec) * 1000:.0f} ms; failure -> first ack from it p50 {percentile(per, 50) * 1000:.0f} "
                      f"ms, max {max(per) * 1000:.0f} ms (behind the survivor's queue); {done_after:,} agents "
                      f"finished after the kill")
            else:
                print("  failover: no agent saw a failure")
            print(f"  after failover: {r['learned']:,} events stored by B but never acknowledged (the survivor's "
                  f"Heartbeat said so); {r['resent']:,} events resent, of which the collector recognised "
                  f"{r['duplicates']:,} as duplicates; {r['gaps']} gaps; failed calls: "
                  f"{', '.join(f'{k} {v}' for k, v in sorted(r['retries'].items())) or 'none'}")
        problems, rows = check_store(url, args.agents, args.models, r)
        print(f"  store: {rows:,} event rows for {total:,} events sent; per host count(*) = count(DISTINCT seq) = "
              f"last_seq = {args.models}: {'yes, none lost, none doubled' if not problems else 'INTEGRITY FAILED'}; "
              f"survivor exit status {rc}")
        failed += [f"fleet: {p}" for p in problems + r["errors"][:5]]
        print(f"  (closed loop: every agent sends its whole inventory at once, up to {args.pipeline} batch(es) in "
              f"flight, so up to {args.agents * args.pipeline:,} batches wait at the collectors: the latency is "
              f"mostly that queue; --pipeline 1 or fewer --agents shorten it)")
        if ref_rate:
            print(f"ratio: fleet with failover / one instance = {rate / ref_rate:.2f} (same agents, same events, "
                  f"same machine; the fleet run includes the kill and the resends)")
        for p in failed:
            print(f"FAILED {p}")
        return 1 if failed else 0
    finally:
        for c in collectors:
            c.kill()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
