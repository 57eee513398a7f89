"""Harness of the agent's end-to-end tests, its benchmark and the demo: a real
`modelprovd` watching temporary directories, reporting to a real collector
(collector_env.Collector) on loopback.

  - Modelprovd: start (waits for READY=1 on a NOTIFY_SOCKET the harness
    reads), stop (SIGTERM), kill (SIGKILL), SIGSTOP/SIGCONT, its stderr
    log, the bytes it says it read, the sd_notify messages it sent;
  - inventory(): the collector's inventory through the Query service;
  - wait_until(): polling with a deadline (only tests poll; the agent never
    does).

Needs /usr/bin/python3 (grpc), like collector_env."""
import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time

from collector_env import BIN, ROOT, Collector, DaemonProcess, bearer, load_stubs, QUERY  # noqa: F401 (re-exported)

AGENT_BIN = os.environ.get("MODELPROV_AGENT_BIN", os.path.join(ROOT, "build/agent/modelprovd"))
READ_LINE = re.compile(r"model (?:added|changed): (\S+) .*read (\d+) of (\d+) bytes")


class AgentError(Exception):
    pass


def wait_until(cond, timeout=30, interval=0.05, what="condition"):
    """Polls cond() until it returns something true; returns that."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class NotifySocket:
    """The AF_UNIX datagram socket systemd would give the service: every
    sd_notify message the agent sends, in order."""

    def __init__(self, path):
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []
        self.lock = threading.Lock()
        self.closed = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self.closed:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.messages.extend(data.decode(errors="replace").split("\n"))

    def lines(self):
        with self.lock:
            return list(self.messages)

    def has(self, prefix):
        return any(m.startswith(prefix) for m in self.lines())

    def close(self):
        self.closed = True
        self.thread.join()
        self.sock.close()


class Modelprovd(DaemonProcess):
    """One agent with its own state dir under workdir.  start() again after
    stop() or kill() reuses the state dir."""
    name = "modelprovd"
    error = AgentError

    def __init__(self, workdir, watch, collector=None, settle=0.2, extra_args=(), env=None):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.state_dir = os.path.join(workdir, "state")
        self.watch = list(watch)
        self.collector = collector
        self.settle = settle
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.config_file = os.path.join(workdir, "agent.conf")
        with open(self.config_file, "w") as f:
            f.write("# agent_env.py: settings come from the command line\n[agent]\n")
        self.proc = None
        self.starts = 0
        self.log_path = None
        self.notify = None

    def argv(self):
        a = [AGENT_BIN, "--config", self.config_file, "--state-dir", self.state_dir,
             "--settle", str(self.settle), "--read-rate", "0"]
        for w in self.watch:
            a += ["--watch", w]
        if self.collector is not None:
            a += ["--collector", self.collector.target, "--enroll-secret-file", self.collector.enroll_file,
                  "--insecure-loopback", "--heartbeat", "2"]
        return a + self.extra_args

    def start(self, timeout=60, wait_ready=True):
        assert not self.alive(), "agent already running"
        self.starts += 1
        self.log_path = os.path.join(self.dir, f"agent-{self.starts}.log")
        if self.notify:
            self.notify.close()
        self.notify = NotifySocket(os.path.join(self.dir, "notify.sock"))
        env = dict(os.environ)
        env.pop("WATCHDOG_USEC", None)
        env.pop("WATCHDOG_PID", None)
        env["NOTIFY_SOCKET"] = self.notify.path
        env.update(self.env)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        log.close()
        if wait_ready:
            deadline = time.monotonic() + timeout
            while not self.notify.has("READY=1"):
                if self.proc.poll() is not None:
                    raise AgentError(f"modelprovd exited with {self.proc.returncode} before READY=1:\n{self.log()}")
                if time.monotonic() > deadline:
                    self.kill()
                    raise AgentError(f"modelprovd not READY within {timeout} s:\n{self.log()}")
                time.sleep(0.02)
        return self

    def reads(self):
        """[(model root, bytes read, bytes total)] from this start's log."""
        return [(m.group(1), int(m.group(2)), int(m.group(3))) for m in READ_LINE.finditer(self.log())]

    def bytes_read(self):
        return sum(r[1] for r in self.reads())

    def signal(self, sig):
        self.proc.send_signal(sig)

    def close(self):
        if self.alive():
            self.stop()
        if self.notify:
            self.notify.close()
            self.notify = None

    def __exit__(self, *exc):
        self.close()

    def state_db(self):
        return sqlite3.connect(f"file:{self.state_dir}/state.db?mode=ro", uri=True, timeout=10)

    def status_json(self):
        import json
        p = subprocess.run([BIN, "status", "--state-dir", self.state_dir, "--json"], capture_output=True, text=True,
                           timeout=60)
        if p.returncode != 0:
            raise AgentError(f"modelprov status: exit {p.returncode}: {p.stderr} {p.stdout[:2000]}")
        return json.loads(p.stdout)


def inventory(collector, include_removed=False):
    """{path: InventoryItem} of every host, from the collector's Query service."""
    pb, grpc_pb = load_stubs()
    with collector.channel() as ch:
        stub = grpc_pb.QueryStub(ch)
        resp = stub.Inventory(pb.InventoryRequest(include_removed=include_removed), metadata=collector.query_md(),
                              timeout=30)
    return {item.path: item for item in resp.items}


def history(collector, limit=100000):
    pb, grpc_pb = load_stubs()
    with collector.channel() as ch:
        stub = grpc_pb.QueryStub(ch)
        resp = stub.History(pb.HistoryRequest(limit=limit), metadata=collector.query_md(), timeout=30)
    return list(resp.events)
