#!/usr/bin/python3
"""Collector ingest benchmark: sustained model reports per second from many
concurrent simulated agents over loopback gRPC, against a fresh SQLite store.

  1. fingerprint records: every zoo model (../shared/zoo), or a few generated
     models when the zoo is missing; each report carries one (MODEL_ADDED
     with the fingerprint, a new path per event, so every event adds an
     inventory row; the store keeps one fingerprint per digest);
  2. a collector on 127.0.0.1:0 with a temporary store; --agents hosts enroll;
  3. reference: the same agents, processes and threads calling the trivial
     Heartbeat RPC (authenticated; one small store write) as fast as they
     can for --ref-seconds: the loopback RPC rate of this machine and this
     load generator;
  4. ingest: each agent streams ReportBatch messages of --batch events on
     one Report stream, lock-step (one batch, one ack), for --warmup plus
     --seconds; only acks received inside the measured window count.

The load generator is --procs processes (threads inside, one per agent,
one channel each) sending pre-serialized bytes through a raw stream (no
per-event protobuf work: an event is a few bytes of header in front of the
record, which is itself a packed Fingerprint).  CPU time of the collector
and of the generator are printed, so a saturated generator shows.  Finally
the store is checked: rows = acknowledged events.

Prints reports/s, MB/s, heartbeats/s, the ratio, and the target (>= 2,000
reports/s on SQLite).  Not a test: nothing is asserted.

usage: collector_load.py [--agents 100] [--procs N] [--batch 48] [--seconds 25]
                         [--warmup 3] [--ref-seconds 8] [--threads N] [--keep]"""
import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import collector_env as env  # noqa: E402
from collector_env import encode_varint, field_bytes, grpc  # noqa: E402


def cpu_seconds(pid):
    """user + system CPU seconds of a process (children not included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def records_pool(tmp):
    """[(digest, record bytes)] of real fingerprint records."""
    if env.HAVE_ZOO:
        import json
        with open(os.path.join(env.ZOO, "models.json")) as f:
            models = {m["folder"]: os.path.join(env.ZOO, m["folder"]) for m in json.load(f)}
        source = f"{len(models)} zoo models"
    else:
        print(f"zoo missing ({env.ZOO}): generated models instead", file=sys.stderr)
        models = {}
        for seed in range(1, 5):
            models[f"gen{seed}"] = env.make_model(os.path.join(tmp, f"gen{seed}"), "--hidden", "128", "--layers", "4",
                                                  "--vocab", "4000", "--seed", str(seed))
        source = f"{len(models)} generated models"
    recs = env.fingerprint_many(models, os.path.join(tmp, "records"), jobs=os.cpu_count() or 2)
    pb, _ = env.load_stubs()
    return [(pb.Fingerprint.FromString(r).model_digest, r) for r in recs.values()], source


# ---- the load generator (runs in worker processes) --------------------------------

class BatchMaker:
    """Serialized ReportBatch bytes for one agent: MODEL_ADDED events with
    a fingerprint, new paths, contiguous sequences."""

    def __init__(self, agent_no, pool, batch):
        self.prefix = f"/srv/agent-{agent_no:04d}/model-".encode()
        # per record: the digest field and the fingerprint field, built once
        self.tails = [field_bytes(5, d) + field_bytes(6, r) for d, r in pool]
        self.batch = batch
        self.seq = 0
        self.k = agent_no

    def next(self):
        out = []
        now = encode_varint(int(time.time() * 1000))
        for _ in range(self.batch):
            self.seq += 1
            self.k += 1
            head = (b"\x08" + encode_varint(self.seq) + b"\x10\x01" + b"\x18" + now +
                    field_bytes(4, self.prefix + str(self.seq).encode()))
            out.append(field_bytes(1, head + self.tails[self.k % len(self.tails)]))
        return b"".join(out)


def agent_ingest(ch, cred, agent_no, pool, batch, t0, t_begin, t_end, result, lock):
    host_id, key = cred
    md = env.host_metadata(host_id, key)
    maker = BatchMaker(agent_no, pool, batch)
    pending = maker.next()              # the next batch, built while waiting for an ack
    counted = acked = 0
    cv = threading.Condition()
    go = []

    def requests():
        while True:
            with cv:
                while not go:
                    cv.wait()
                item = go.pop(0)
            if item is None:
                return
            yield item

    while time.time() < t0:
        time.sleep(0.001)
    calls = ch.stream_stream(env.INGEST + "Report")
    responses = calls(requests(), metadata=md, timeout=max(60.0, t_end - time.time() + 60))
    pb, _ = env.load_stubs()
    error = None
    try:
        while time.time() < t_end:
            with cv:
                go.append(pending)
                cv.notify()
            pending = maker.next()
            ack = pb.ReportAck.FromString(next(responses))
            now = time.time()
            if ack.stored != batch:
                error = f"ack stored {ack.stored} of {batch}"
                break
            acked += ack.stored
            if t_begin <= now <= t_end:
                counted += ack.stored
    except grpc.RpcError as e:
        error = f"{e.code()}: {e.details()}"
    finally:
        with cv:
            go.append(None)
            cv.notify()
    try:
        for _ in responses:
            pass
    except grpc.RpcError:
        pass
    with lock:
        result["counted"] += counted
        result["acked"] += acked
        if error:
            result["errors"].append(error)


def agent_heartbeat(ch, cred, t0, t_begin, t_end, result, lock):
    pb, rpc = env.load_stubs()
    stub = rpc.IngestStub(ch)
    md = env.host_metadata(*cred)
    req = pb.HeartbeatRequest(agent_version="bench")
    counted, error = 0, None
    while time.time() < t0:
        time.sleep(0.001)
    try:
        while time.time() < t_end:
            stub.Heartbeat(req, metadata=md, timeout=30)
            if time.time() >= t_begin:
                counted += 1
    except grpc.RpcError as e:
        error = f"{e.code()}: {e.details()}"
    with lock:
        result["counted"] += counted
        if error:
            result["errors"].append(error)


def worker(job):
    """One process: a thread per agent.  Returns the counts and the CPU
    time the process used inside the measured window."""
    kind, target, agents, record_files, batch, t0, t_begin, t_end, per_channel = job
    pool = []
    for path in record_files:
        with open(path, "rb") as f:
            rec = f.read()
        pb, _ = env.load_stubs()
        pool.append((pb.Fingerprint.FromString(rec).model_digest, rec))
    result = {"counted": 0, "acked": 0, "errors": []}
    lock = threading.Lock()
    threads = []
    # Agents of a process share a few HTTP/2 connections (each agent its own
    # stream and credentials): a Python channel per agent costs the
    # generator more CPU than the collector spends.
    channels = [grpc.insecure_channel(target, options=env.CHANNEL_OPTIONS + (("grpc.use_local_subchannel_pool", 1),))
                for _ in range((len(agents) + per_channel - 1) // per_channel)]
    for i, (agent_no, cred) in enumerate(agents):
        ch = channels[i // per_channel]
        if kind == "ingest":
            args = (ch, cred, agent_no, pool, batch, t0, t_begin, t_end, result, lock)
            threads.append(threading.Thread(target=agent_ingest, args=args))
        else:
            threads.append(threading.Thread(target=agent_heartbeat,
                                            args=(ch, cred, t0, t_begin, t_end, result, lock)))
    cpu = []

    def sample_cpu():
        for t in (t_begin, t_end):
            time.sleep(max(0.0, t - time.time()))
            cpu.append(time.process_time())

    threads.append(threading.Thread(target=sample_cpu))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for ch in channels:
        ch.close()
    result["cpu"] = cpu[1] - cpu[0]
    return result


def run_phase(ctx, kind, collector, creds, procs, record_files, batch, warmup, seconds, per_channel):
    """Runs one phase over every agent: (events counted in the window, all
    acked events, errors, collector CPU s and generator CPU s in the window)."""
    numbered = list(enumerate(creds))
    t0 = time.time() + 3.0                      # all processes start together
    t_begin, t_end = t0 + warmup, t0 + warmup + seconds
    jobs = [(kind, collector.target, numbered[i::procs], record_files, batch, t0, t_begin, t_end, per_channel)
            for i in range(procs)]
    with ctx.Pool(procs) as p:
        async_res = p.map_async(worker, jobs)
        while time.time() < t_begin:
            time.sleep(0.005)
        c0 = cpu_seconds(collector.proc.pid)
        while time.time() < t_end:
            time.sleep(0.005)
        c1 = cpu_seconds(collector.proc.pid)
        results = async_res.get(timeout=seconds + warmup + 300)
    return (sum(r["counted"] for r in results), sum(r["acked"] for r in results),
            [e for r in results for e in r["errors"]], c1 - c0, sum(r["cpu"] for r in results))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--procs", type=int, default=0, help="load generator processes (default: CPUs, 2..8)")
    ap.add_argument("--batch", type=int, default=48, help="events per ReportBatch")
    ap.add_argument("--seconds", type=float, default=25.0, help="measured ingest window")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--ref-seconds", type=float, default=8.0, help="measured Heartbeat window")
    ap.add_argument("--agents-per-connection", type=int, default=10,
                    help="agents sharing one channel (HTTP/2 connection) in the generator")
    ap.add_argument("--threads", type=int, default=0, help="collector worker threads (default: its own)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    procs = args.procs or max(2, min(8, os.cpu_count() or 2))
    if not os.access(env.COLLECTOR_BIN, os.X_OK):
        sys.exit(f"no collector binary at {env.COLLECTOR_BIN} (set MODELPROV_COLLECTOR_BIN)")

    tmp = tempfile.mkdtemp(prefix="collector-load-")
    ctx = multiprocessing.get_context("spawn")
    try:
        pool, source = records_pool(tmp)
        record_files = []
        for i, (_, rec) in enumerate(pool):
            path = os.path.join(tmp, f"rec-{i}.fp")
            with open(path, "wb") as f:
                f.write(rec)
            record_files.append(path)
        avg_rec = sum(len(r) for _, r in pool) / len(pool)

        collector = env.Collector(os.path.join(tmp, "collector"), threads=args.threads or None).start()
        ch = collector.channel()
        creds = []
        for i in range(args.agents):
            a = env.Agent(collector, ch, f"load-machine-{i:05d}", f"load-{i:03d}")
            a.enroll()
            creds.append((a.host_id, a.key))
        ch.close()
        print(f"collector_load: {args.agents} agents in {procs} processes, batches of {args.batch} "
              f"MODEL_ADDED events with fingerprints from {source} (avg record {avg_rec / 1024:.1f} KiB), "
              f"{collector.store_url.split(':')[0]} store, {os.cpu_count()} CPUs", flush=True)

        hb, _, hb_err, hb_ccpu, hb_gcpu = run_phase(ctx, "heartbeat", collector, creds, procs, record_files,
                                                    args.batch, 1.0, args.ref_seconds, args.agents_per_connection)
        ing, acked, ing_err, ccpu, gcpu = run_phase(ctx, "ingest", collector, creds, procs, record_files,
                                                    args.batch, args.warmup, args.seconds, args.agents_per_connection)
        hb_win, win = args.ref_seconds, args.seconds
        rc = collector.stop()
        with collector.db() as db:
            rows = db.execute("SELECT count(*) FROM events").fetchone()[0]
            inv = db.execute("SELECT count(*) FROM inventory").fetchone()[0]
            fps = db.execute("SELECT count(*) FROM fingerprints").fetchone()[0]
        store = collector.store_url
        size = f"{os.path.getsize(store[len('sqlite:'):]) / 1e6:.0f} MB" if store.startswith("sqlite:") else store

        rate, hb_rate = ing / win, hb / hb_win
        print(f"reference: Heartbeat RPC (authenticated, one small store write) {hb_rate:,.0f}/s over {hb_win:.0f} s; "
              f"collector CPU {hb_ccpu / hb_win:.2f} cores, load generator CPU {hb_gcpu / hb_win:.2f} cores")
        print(f"ingest: {rate:,.0f} model reports/s over {win:.0f} s ({rate * avg_rec / 1e6:.1f} MB/s of records, "
              f"{rate / args.batch:,.0f} batches/s); collector CPU {ccpu / win:.2f} cores, load generator CPU "
              f"{gcpu / win:.2f} cores")
        print(f"ratio: reports/s / heartbeats/s = {rate / hb_rate:.2f} (each report is one event row, one inventory "
              f"row and a parsed fingerprint; each heartbeat one small write)")
        print(f"target >= 2,000 reports/s on SQLite: {'met' if rate >= 2000 else 'NOT met'} ({rate:,.0f}/s)")
        print(f"store: {rows:,} event rows = {acked:,} acknowledged events: {'yes' if rows == acked else 'NO'}; "
              f"{inv:,} inventory rows, {fps} fingerprints, {size}; collector exit status {rc}")
        for what, errs in (("heartbeat", hb_err), ("ingest", ing_err)):
            if errs:
                print(f"{what} errors ({len(errs)}): {sorted(set(errs))[:5]}")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
