"""Shared harness of the collector's end-to-end tests and of its load
benchmark: a real `modelprov-collector` on a loopback port, real gRPC from a
Python client generated from proto/ at run time.

  - load_stubs(): runs grpc_tools.protoc on proto/modelprov.proto into a
    temporary directory (generated code is never committed) and imports it;
  - Collector: secret files (mode 0600), optional self-signed TLS, start,
    SIGTERM / SIGKILL, restart on the same port and store, the `listening on
    ADDR` line of its stderr, channels, the store opened for reading;
  - test_store_url(): the store a test's collector uses: SQLite in the
    test's directory, or under `meson test --setup postgres`
    (MODELPROV_TEST_STORE=postgresql) a fresh database on the test's own
    PostgreSQL server (tests/postgres/pg_server.py, MODELPROV_TEST_PG);
  - Agent: enroll, heartbeat and a lock-step Report stream (one batch, one
    ack) with the credentials of one simulated host;
  - fingerprint records (`modelprov fingerprint -o`), generated models
    (tests/gen/make_model.py) and the events built from them.

Needs Debian's grpc for Python, which only /usr/bin/python3 has (the python3
on PATH may be a pyenv shim): imported by another interpreter, the running
script is started again under /usr/bin/python3."""
import hashlib
import importlib
import json
import os
import queue
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

SYSTEM_PYTHON = "/usr/bin/python3"
POSTGRES = os.environ.get("MODELPROV_TEST_STORE") == "postgresql"

try:
    import grpc
except ImportError:
    if os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON) and os.path.exists(SYSTEM_PYTHON):
        os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON, *sys.argv])
    raise

ROOT = os.environ.get("MODELPROV_SOURCE_ROOT",
                      os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.environ.get("MODELPROV_BIN", os.path.join(ROOT, "build/cli/modelprov"))
COLLECTOR_BIN = os.environ.get("MODELPROV_COLLECTOR_BIN", os.path.join(ROOT, "build/collector/modelprov-collector"))
ZOO = os.environ.get("MODELPROV_ZOO", os.path.join(ROOT, "..", "shared", "zoo"))
HAVE_ZOO = os.path.isfile(os.path.join(ZOO, "models.json"))

# The server's receive limit (64 MiB); bigger messages get RESOURCE_EXHAUSTED
# from gRPC itself.
MAX_MESSAGE = 64 << 20
# Our client channels send and receive anything up to that and beyond, so
# that the server, not the client, decides about size.
CHANNEL_OPTIONS = (("grpc.max_receive_message_length", 256 << 20),
                   ("grpc.max_send_message_length", 256 << 20),
                   # reconnect soon after a collector restart (but keep
                   # the connect timeout, which min_reconnect_backoff_ms sets)
                   ("grpc.initial_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 500))
LISTENING = re.compile(r"listening on (\S+)")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

INGEST = "/modelprov.v1.Ingest/"
QUERY = "/modelprov.v1.Query/"


def require_zoo_rule():
    """Says plainly when the zoo is missing; a failure with MODELPROV_REQUIRE_ZOO=1."""
    if HAVE_ZOO:
        return True
    print(f"zoo missing: {ZOO}/models.json does not exist; using generated models instead", file=sys.stderr)
    if os.environ.get("MODELPROV_REQUIRE_ZOO") == "1":
        sys.exit("MODELPROV_REQUIRE_ZOO=1 and the zoo is missing")
    return False


# ---- generated Python code ------------------------------------------------

_stubs = None


def load_stubs():
    """(modelprov_pb2, modelprov_pb2_grpc), generated once per process into a
    temporary directory, imported, and the directory removed at once (worker
    processes of the benchmark end without running atexit handlers)."""
    global _stubs
    if _stubs:
        return _stubs
    out = tempfile.mkdtemp(prefix="modelprov-stubs-")
    try:
        p = subprocess.run([SYSTEM_PYTHON, "-m", "grpc_tools.protoc", "-I", os.path.join(ROOT, "proto"),
                            f"--python_out={out}", f"--grpc_python_out={out}",
                            os.path.join(ROOT, "proto", "modelprov.proto")], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"grpc_tools.protoc failed: {p.stderr}")
        sys.path.insert(0, out)
        try:
            pb = importlib.import_module("modelprov_pb2")
            rpc = importlib.import_module("modelprov_pb2_grpc")
        finally:
            sys.path.remove(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    _stubs = (pb, rpc)
    return _stubs


# ---- credentials ------------------------------------------------------------

def write_secret(path, value, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)         # whatever the umask
        os.write(fd, (value + "\n").encode())
    finally:
        os.close(fd)
    return path


def bearer(token):
    return (("authorization", "Bearer " + token),)


def host_metadata(host_id, key):
    return (("authorization", "Bearer " + key), ("modelprov-host-id", host_id))


def make_cert(directory):
    """A self-signed certificate for localhost and 127.0.0.1: (cert, key)."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    os.chmod(key, 0o600)
    return cert, key


# ---- the collector process -----------------------------------------------------

class CollectorError(Exception):
    pass


class DaemonProcess:
    """What the harnesses of both daemons share: the process, its log file
    (self.log_path, one per start) and how it is stopped.  Subclasses set
    self.proc, self.log_path and self.name."""
    name = "daemon"
    error = RuntimeError
    proc = None
    log_path = None

    def log(self):
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20):
        """SIGTERM; returns the exit status (SIGKILL and an error after timeout)."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise self.error(f"{self.name} ignored SIGTERM for {timeout} s:\n{self.log()}")

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self


def pg_admin():
    conninfo = os.environ.get("MODELPROV_TEST_PG")
    if not conninfo:
        raise RuntimeError("MODELPROV_TEST_STORE=postgresql but MODELPROV_TEST_PG is not set: run the tests "
                           "with `meson test --setup postgres` (tests/postgres/pg_server.py starts the server)")
    import psycopg2
    conn = psycopg2.connect(conninfo)
    conn.autocommit = True
    return conn, dict(kv.split("=", 1) for kv in conninfo.split())


def test_store_url(workdir, name="collector"):
    """The store URL for a collector whose files live in workdir: the same
    workdir and name give the same store (a restarted collector finds its
    data), a different one a fresh, empty store."""
    if not POSTGRES:
        return "sqlite:" + os.path.join(workdir, name + ".db")
    db = "t_" + hashlib.sha256(f"{os.path.realpath(workdir)}/{name}".encode()).hexdigest()[:24]
    conn, info = pg_admin()
    # Not `with conn`: psycopg2 opens a transaction there even in autocommit
    # mode, and CREATE DATABASE refuses to run inside one.
    try:
        with conn.cursor() as c:
            c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
            if not c.fetchone():
                c.execute(f"CREATE DATABASE {db}")
    finally:
        conn.close()
    return f"postgresql://{info['user']}@{info['host']}:{info['port']}/{db}"


class StoreReader:
    """Read-only SQL on a collector's store, either engine, with sqlite3's
    `?` placeholders: `with StoreReader(url) as db: db.execute(...).fetchone()`."""

    def __init__(self, url):
        self.url = url
        if url.startswith("sqlite:"):
            self.conn = sqlite3.connect(f"file:{url[len('sqlite:'):]}?mode=ro", uri=True, timeout=10)
        else:
            import psycopg2
            self.conn = psycopg2.connect(url)
            self.conn.set_session(readonly=True, autocommit=True)

    def execute(self, sql, params=()):
        if isinstance(self.conn, sqlite3.Connection):
            return self.conn.execute(sql, params)
        cur = self.conn.cursor()
        # psycopg2's placeholders are %s, and a literal % is %% then.
        cur.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(params))
        return cur

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.conn.close()


class Collector(DaemonProcess):
    """One collector on 127.0.0.1 with its own store and secrets in workdir.
    start() again after kill() or stop() reuses the store and the port."""
    name = "modelprov-collector"
    error = CollectorError

    def __init__(self, workdir, tls=False, admin=True, threads=None, extra_args=()):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.store_url = test_store_url(workdir)
        self.enroll_secret = "enroll-" + secrets.token_hex(16)
        self.query_token = "query-" + secrets.token_hex(16)
        self.admin_token = "admin-" + secrets.token_hex(16) if admin else None
        self.enroll_file = write_secret(os.path.join(workdir, "enroll.secret"), self.enroll_secret)
        self.query_file = write_secret(os.path.join(workdir, "query.token"), self.query_token)
        self.admin_file = write_secret(os.path.join(workdir, "admin.token"), self.admin_token) if admin else None
        # An explicit config file keeps a host's /etc/modelprov/collector.conf out.
        self.config_file = os.path.join(workdir, "collector.conf")
        with open(self.config_file, "w") as f:
            f.write("# collector_env.py: settings come from the command line\n[collector]\n")
        self.tls = tls
        self.cert = self.key = None
        if tls:
            self.cert, self.key = make_cert(workdir)
            with open(self.cert, "rb") as f:
                self.cert_pem = f.read()
        self.threads = threads
        self.extra_args = list(extra_args)
        self.port = 0
        self.proc = None
        self.starts = 0
        self.log_path = None

    # -- process

    def argv(self, listen):
        a = [COLLECTOR_BIN, "--config", self.config_file, "--listen", listen,
             "--store", self.store_url,
             "--enroll-secret-file", self.enroll_file, "--query-token-file", self.query_file]
        if self.admin_file:
            a += ["--admin-token-file", self.admin_file]
        if self.tls:
            a += ["--tls-cert", self.cert, "--tls-key", self.key]
        else:
            a += ["--insecure-loopback"]
        if self.threads:
            a += ["--threads", str(self.threads)]
        return a + self.extra_args

    def start(self, port=None, timeout=30):
        """Starts the collector and waits for its `listening on ADDR` line.
        port: None = the port of the previous start (0 the first time)."""
        assert self.proc is None or self.proc.poll() is not None, "collector already running"
        if port is None:
            port = self.port
        self.starts += 1
        self.log_path = os.path.join(self.dir, f"collector-{self.starts}.log")
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv(f"127.0.0.1:{port}"), stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            m = LISTENING.search(self.log())
            if m:
                break
            if self.proc.poll() is not None:
                raise CollectorError(f"collector exited with {self.proc.returncode} before listening:\n"
                                     f"{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise CollectorError(f"collector did not say `listening on` within {timeout} s:\n{self.log()}")
            time.sleep(0.02)
        self.addr = m.group(1)
        self.port = int(self.addr.rsplit(":", 1)[1])
        return self

    def __exit__(self, *exc):
        if self.alive():
            self.stop()

    # -- clients

    @property
    def target(self):
        return f"127.0.0.1:{self.port}"

    def channel(self, options=()):
        opts = CHANNEL_OPTIONS + tuple(options)
        if self.tls:
            return grpc.secure_channel(self.target, grpc.ssl_channel_credentials(root_certificates=self.cert_pem),
                                       options=opts)
        return grpc.insecure_channel(self.target, options=opts)

    def query_md(self):
        return bearer(self.query_token)

    def admin_md(self):
        return bearer(self.admin_token)

    # -- the store, read directly

    def db(self):
        """The store, read-only (the collector may be running)."""
        return StoreReader(self.store_url)

    def counts(self):
        """Row counts of the store's tables and each host's last sequence:
        what must not change when a request is refused."""
        with self.db() as c:
            out = {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                   for t in ("hosts", "events", "inventory", "fingerprints", "catalog")}
            out["last_seq"] = dict(c.execute("SELECT id, last_seq FROM hosts").fetchall())
            out["present"] = c.execute("SELECT count(*) FROM inventory WHERE present = 1").fetchone()[0]
        return out


# ---- a simulated agent -----------------------------------------------------------

class Agent:
    """One host: enrolls with a machine id, then reports and heartbeats
    with the host id and key it got."""

    def __init__(self, collector, channel, machine_id, hostname=None):
        self.pb, rpc = load_stubs()
        self.collector = collector
        self.channel = channel
        self.own_channel = False        # reconnect() closes only channels it made
        self.ingest = rpc.IngestStub(channel)
        self.query = rpc.QueryStub(channel)
        self.machine_id = machine_id
        self.hostname = hostname or "host-" + machine_id[:8]
        self.host_id = self.key = None
        self.acked_through = None

    def reconnect(self):
        """A new channel to the collector's current address (after a restart)."""
        _, rpc = load_stubs()
        if self.own_channel:
            self.channel.close()
        self.channel = self.collector.channel()
        self.own_channel = True
        self.ingest = rpc.IngestStub(self.channel)
        self.query = rpc.QueryStub(self.channel)

    def enroll(self, secret=None, timeout=10):
        pb = self.pb
        r = self.ingest.Enroll(pb.EnrollRequest(host=pb.HostInfo(hostname=self.hostname, machine_id=self.machine_id,
                                                                 agent_version="test-agent 1", os="linux")),
                               metadata=bearer(secret or self.collector.enroll_secret), timeout=timeout)
        self.host_id, self.key, self.acked_through = r.host_id, r.host_key, r.acked_through
        return r

    def md(self):
        return host_metadata(self.host_id, self.key)

    def heartbeat(self, timeout=10, **kw):
        r = self.ingest.Heartbeat(self.pb.HeartbeatRequest(agent_version="test-agent 1", **kw), metadata=self.md(),
                                  timeout=timeout)
        self.acked_through = r.acked_through
        return r

    def report_stream(self, batches, timeout=60, metadata=None, raw=False, on_ack=None):
        """Sends batches over one Report stream, each after the previous
        one's ack: (acks, error), error the grpc.RpcError that ended the
        stream early (None when every batch was acknowledged and the stream
        closed with OK).  raw: batches are bytes sent as they are.
        on_ack(ack) is called as each ack arrives."""
        q = queue.Queue()

        def requests():
            while True:
                b = q.get()
                if b is None:
                    return
                yield b

        if raw:
            call = self.channel.stream_stream(INGEST + "Report")
        else:
            call = self.ingest.Report
        responses = call(requests(), metadata=self.md() if metadata is None else metadata, timeout=timeout)
        acks = []
        try:
            for b in batches:
                q.put(b)
                try:
                    ack = next(responses)
                except StopIteration:
                    raise AssertionError(f"Report stream ended with OK after {len(acks)} of "
                                         f"{len(batches)} acks") from None
                acks.append(self.pb.ReportAck.FromString(ack) if raw else ack)
                if acks[-1].acked_through:
                    self.acked_through = acks[-1].acked_through
                if on_ack:
                    on_ack(acks[-1])
            q.put(None)
            extra = list(responses)
            if extra:
                raise AssertionError(f"Report sent {len(extra)} acks more than batches")
            return acks, None
        except grpc.RpcError as e:
            return acks, e
        finally:
            q.put(None)

    def report(self, batches, timeout=60):
        """report_stream() that must succeed: the acks."""
        acks, err = self.report_stream(batches, timeout)
        if err is not None:
            raise AssertionError(f"Report failed after {len(acks)} acks: {err.code()} {err.details()}")
        return acks


def status_of(fn):
    """The status code of calling fn (OK when it returns)."""
    try:
        fn()
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


# ---- models and records ------------------------------------------------------------

def make_model(out, *args):
    """A model directory from tests/gen/make_model.py (real weight values)."""
    subprocess.run([sys.executable, os.path.join(ROOT, "tests/gen/make_model.py"), "--out", out,
                    "--values", "normal", *args], check=True)
    return out


def perturb_model(src, out, noise=0.004, seed=5):
    """A fine-tune-like copy of a generated F16 model (tests/gen/perturb_model.py)."""
    subprocess.run([sys.executable, os.path.join(ROOT, "tests/gen/perturb_model.py"), src, out,
                    "--noise", str(noise), "--seed", str(seed)], check=True)
    return out


def fingerprint(model, out):
    """`modelprov fingerprint -q -o out model`: the record's bytes."""
    p = subprocess.run([BIN, "fingerprint", "-q", "-o", out, model], capture_output=True, text=True, timeout=300)
    if p.returncode not in (0, 1):
        raise RuntimeError(f"fingerprint {model}: exit {p.returncode}: {p.stderr}")
    with open(out, "rb") as f:
        return f.read()


def fingerprint_many(models, cache_dir, jobs=2):
    """{key: record bytes} for {key: model dir}, fingerprinted in parallel,
    each once per cache_dir."""
    import concurrent.futures
    os.makedirs(cache_dir, exist_ok=True)

    def one(item):
        key, model = item
        out = os.path.join(cache_dir, hashlib.sha256(key.encode()).hexdigest()[:16] + ".fp")
        if os.path.exists(out):
            with open(out, "rb") as f:
                return key, f.read()
        return key, fingerprint(model, out)

    with concurrent.futures.ThreadPoolExecutor(jobs) as ex:
        return dict(ex.map(one, models.items()))


def catalog_add(catalog, model_or_record, name):
    p = subprocess.run([BIN, "catalog", "add", "-q", catalog, model_or_record, "--name", name],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"catalog add {name}: exit {p.returncode}: {p.stderr}")
    return catalog


def now_ms():
    return int(time.time() * 1000)


class Events:
    """Builds Event messages for one host."""

    def __init__(self):
        self.pb, _ = load_stubs()

    def added(self, seq, path, record, kind=None, observed_at=None, with_fingerprint=True):
        pb = self.pb
        fp = pb.Fingerprint.FromString(record)
        ev = pb.Event(sequence=seq, kind=kind or pb.MODEL_ADDED, observed_at=observed_at or now_ms(), path=path,
                      model_digest=fp.model_digest)
        if with_fingerprint:
            ev.fingerprint.CopyFrom(fp)
        return ev

    def removed(self, seq, path, digest=b"", observed_at=None):
        return self.pb.Event(sequence=seq, kind=self.pb.MODEL_REMOVED, observed_at=observed_at or now_ms(), path=path,
                             model_digest=digest)

    def finding(self, seq, path, kind="unsafe-pickle-global", detail="os.system"):
        pb = self.pb
        return pb.Event(sequence=seq, kind=pb.FINDING, observed_at=now_ms(), path=path,
                        finding=pb.Finding(kind=kind, file="pytorch_model.bin", offset=-1, detail=detail))

    def match(self, seq, path, digest, entry="llama-base", verdict="Confirmed Match", score=0.97,
              relation="fine-tune / continued training"):
        pb = self.pb
        return pb.Event(sequence=seq, kind=pb.SCAN_MATCH, observed_at=now_ms(), path=path, model_digest=digest,
                        match=pb.ScanMatch(catalog_entry=entry, verdict=verdict, score=score, relation=relation))

    def batch(self, events):
        return self.pb.ReportBatch(events=list(events))


def encode_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(number, payload):
    """A length-delimited protobuf field: tag, length, payload."""
    return encode_varint(number << 3 | 2) + encode_varint(len(payload)) + payload
