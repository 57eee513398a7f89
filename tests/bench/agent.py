#!/usr/bin/python3
"""modelprovd benchmark.  Three measurements, each beside a reference taken
in the same run on the same machine (absolute times on shared machines are
noise):

1. Restart over an unchanged tree: 10,000 files in 500 model directories
   (each a small generated model plus notes), fingerprinted once; then the
   agent is restarted.  Printed: the agent's initial crawl time (its log),
   the time from exec to READY=1, the weight bytes read (must be 0), and as
   reference `find -printf` (a stat of every file) over the same tree.
   Target: crawl <= 2 s, zero bytes read.
2. Rename → inventory latency: a model written outside the watched tree is
   renamed in; the time until the collector's inventory lists it, minus the
   settle time.  Reference: `modelprov fingerprint` of the same model (the
   target is <= 2 s plus the fingerprint time).  Median of --rounds.
3. Idle CPU: the agent's user+system CPU time over --idle seconds with
   nothing changing (heartbeats to the collector included).  Target: under
   0.05 s per 60 s.  Reference: the CPU time of the collector over the same
   period.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import collector_env as cenv  # noqa: E402
from agent_env import Modelprovd, inventory, wait_until  # noqa: E402


def cpu_seconds(pid):
    """CPU time of every thread of pid, in ns resolution (schedstat's first
    field; /proc/PID/stat counts clock ticks of 10 ms, too coarse here)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass
    return total / 1e9


def build_tree(root, base, dirs, files_per_dir):
    model_files = os.listdir(base)
    for i in range(dirs):
        d = os.path.join(root, f"org{i % 50:02d}", f"model{i:03d}")
        os.makedirs(d)
        for name in model_files:
            shutil.copy(os.path.join(base, name), os.path.join(d, name))
        for j in range(files_per_dir - len(model_files)):
            with open(os.path.join(d, f"note{j:02d}.txt"), "w") as f:
                f.write("x")


def crawl_line(log):
    import re
    m = re.findall(r"initial crawl: (\d+) files in (\d+) dirs in ([0-9.]+) s", log)
    return m[-1] if m else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dirs", type=int, default=500)
    ap.add_argument("--files-per-dir", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--idle", type=float, default=60.0)
    ap.add_argument("--settle", type=float, default=0.5)
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="modelprov-bench-agent-")
    try:
        base = cenv.make_model(os.path.join(tmp, "base"), "--hidden", "64", "--layers", "2", "--vocab", "256")
        root = os.path.join(tmp, "models")
        os.makedirs(root)
        build_tree(root, base, a.dirs, a.files_per_dir)
        n_files = sum(len(f) for _, _, f in os.walk(root))

        collector = cenv.Collector(os.path.join(tmp, "collector")).start()
        agent = Modelprovd(os.path.join(tmp, "agent"), [root], collector=collector, settle=a.settle,
                           extra_args=["--heartbeat", "60"])
        try:
            # -- 1. restart over an unchanged tree
            t0 = time.monotonic()
            agent.start(timeout=300)
            wait_until(lambda: agent.status_json()["outbox"]["events"] == 0 and
                       len(agent.status_json()["models"]) == a.dirs, 900, 0.5, "every model fingerprinted")
            first = time.monotonic() - t0
            agent.stop()
            t0 = time.monotonic()
            agent.start(timeout=300)
            ready = time.monotonic() - t0
            time.sleep(a.settle * 3 + 1)
            crawl = crawl_line(agent.log())
            t0 = time.monotonic()
            subprocess.run(["find", root, "-printf", "%s %T@\n"], stdout=subprocess.DEVNULL, check=True)
            find_s = time.monotonic() - t0
            print(f"tree: {n_files} files in {a.dirs} model directories; first fingerprinting of all: {first:.1f} s")
            if crawl:
                crawl_s = float(crawl[2])
                print(f"restart crawl (agent log): {crawl[0]} files, {crawl[1]} dirs in {crawl_s:.3f} s "
                      f"(target <= 2 s)  ratio to find -printf ({find_s:.3f} s): {crawl_s / find_s:.1f}x")
            print(f"restart: exec to READY=1 {ready:.3f} s; bytes read after restart: {agent.bytes_read()} "
                  f"(target 0)")

            # -- 2. rename -> inventory latency
            lat, fps = [], []
            for r in range(a.rounds):
                src = cenv.make_model(os.path.join(tmp, f"new{r}"), "--hidden", "128", "--layers", "4",
                                      "--seed", str(100 + r))
                t0 = time.monotonic()
                subprocess.run([cenv.BIN, "fingerprint", "-q", "-o", os.devnull, src], check=True)
                fps.append(time.monotonic() - t0)
                dst = os.path.join(root, f"new{r}")
                t0 = time.monotonic()
                os.rename(src, dst)
                wait_until(lambda: dst in inventory(collector), 120, 0.01, dst)
                lat.append(time.monotonic() - t0 - a.settle)
            ml, mf = statistics.median(lat), statistics.median(fps)
            print(f"rename -> inventory minus settle ({a.settle} s): median {ml:.3f} s over {a.rounds} "
                  f"(target <= 2 s + fingerprint time); `modelprov fingerprint` alone: {mf:.3f} s; "
                  f"overhead {ml - mf:.3f} s")

            # -- 3. idle CPU
            time.sleep(a.settle * 3 + 1)
            c0, k0 = cpu_seconds(agent.proc.pid), cpu_seconds(collector.proc.pid)
            time.sleep(a.idle)
            c1, k1 = cpu_seconds(agent.proc.pid), cpu_seconds(collector.proc.pid)
            print(f"idle {a.idle:.0f} s: agent CPU {c1 - c0:.3f} s (target < 0.05 s per 60 s); collector over the same time: {k1 - k0:.3f} s")
        finally:
            agent.close()
            collector.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
