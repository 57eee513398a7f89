"""modelprov-collector as a daemon, without gRPC clients: settings from the
config file and the command line, refusals of unsafe or broken settings,
systemd readiness (Type=notify) and journald line format, clean SIGTERM."""
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from collector_env import POSTGRES, StoreReader, test_store_url

COLLECTOR = os.environ.get("MODELPROV_COLLECTOR_BIN", "build/collector/modelprov-collector")


def write_secret(path, value, mode=0o600):
    with open(path, "w") as f:
        f.write(value + "\n")
    os.chmod(path, mode)


class CollectorDaemon(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.enroll = os.path.join(self.dir, "enroll")
        self.query = os.path.join(self.dir, "query")
        write_secret(self.enroll, "enroll-secret-0123456789")
        write_secret(self.query, "query-token-0123456789ab")
        self.store = test_store_url(self.dir, "store")

    def tearDown(self):
        self.tmp.cleanup()

    def base_args(self):
        return [COLLECTOR, "--listen", "127.0.0.1:0", "--store", self.store,
                "--enroll-secret-file", self.enroll, "--query-token-file", self.query,
                "--config", os.devnull]

    def run_refused(self, args, pattern, env=None):
        r = subprocess.run(args, capture_output=True, text=True, timeout=30, env=env)
        self.assertNotEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stderr, pattern)
        return r

    def start(self, args, env=None):
        p = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env)
        lines = []
        deadline = time.time() + 30
        while time.time() < deadline:
            line = p.stderr.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"listening on (\S+)", line)
            if m:
                return p, m.group(1), lines
        p.kill()
        p.wait()
        self.fail("collector did not start: " + "".join(lines))

    def stop(self, p):
        p.send_signal(signal.SIGTERM)
        rest = p.stderr.read()
        p.stderr.close()
        self.assertEqual(p.wait(timeout=30), 0, rest)
        return rest

    def test_help_and_version(self):
        r = subprocess.run([COLLECTOR, "--help"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0)
        for opt in ("--listen", "--store", "--enroll-secret-file", "--query-token-file",
                    "--admin-token-file", "--tls-cert", "--tls-key", "--insecure-loopback"):
            self.assertIn(opt, r.stdout)
        r = subprocess.run([COLLECTOR, "--version"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^modelprov-collector \d+\.\d+")

    def test_plaintext_needs_loopback(self):
        args = self.base_args()
        args[args.index("127.0.0.1:0")] = "0.0.0.0:0"
        self.run_refused(args + ["--insecure-loopback"], r"not a loopback address")
        self.run_refused(self.base_args(), r"no TLS certificate")

    def test_bad_settings_are_refused(self):
        self.run_refused(self.base_args() + ["--insecure-loopback", "--threads", "0"], r"threads")
        self.run_refused(self.base_args() + ["--insecure-loopback", "--bogus"], r"unknown or incomplete option")
        self.run_refused(self.base_args() + ["--insecure-loopback", "--tls-key", self.query],
                         r"go together|choose")
        args = self.base_args() + ["--insecure-loopback"]
        args[args.index(self.store)] = "mysql:x"
        self.run_refused(args, r"mysql|scheme|support")
        # A secret others can read, a short one, a missing file.
        os.chmod(self.query, 0o644)
        self.run_refused(self.base_args() + ["--insecure-loopback"], r"group or others")
        write_secret(self.query, "short")
        self.run_refused(self.base_args() + ["--insecure-loopback"], r"too short")
        os.unlink(self.query)
        self.run_refused(self.base_args() + ["--insecure-loopback"], r"cannot open query token")
        # The same value for two roles would let one stand in for the other.
        write_secret(self.query, "enroll-secret-0123456789")
        self.run_refused(self.base_args() + ["--insecure-loopback"], r"must differ")

    def test_config_file_and_overrides(self):
        conf = os.path.join(self.dir, "collector.conf")
        with open(conf, "w") as f:
            f.write("[collector]\n"
                    f"listen = 127.0.0.1:0\nstore = {self.store}\n"
                    f"enroll-secret-file = {self.enroll}\nquery-token-file = {self.query}\n"
                    "insecure-loopback = yes\nthreads = 2\n")
        p, addr, lines = self.start([COLLECTOR, "--config", conf])
        self.assertTrue(addr.startswith("127.0.0.1:"), addr)
        self.assertIn("2 worker threads", "".join(lines))
        self.stop(p)
        # The command line wins over the file.
        p, addr, lines = self.start([COLLECTOR, "--config", conf, "--threads", "3"])
        self.assertIn("3 worker threads", "".join(lines))
        self.stop(p)
        # Unknown keys and sections are errors, not silently ignored typos.
        with open(conf, "a") as f:
            f.write("lisen = 1.2.3.4:5\n")
        self.run_refused([COLLECTOR, "--config", conf], r'unknown key "lisen"')
        with open(conf, "w") as f:
            f.write("[agent]\nlisten = 127.0.0.1:0\n")
        self.run_refused([COLLECTOR, "--config", conf], r"unknown section")
        self.run_refused([COLLECTOR, "--config", os.path.join(self.dir, "missing.conf")],
                         r"cannot open config file")

    def test_listen_conflict(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        args = self.base_args() + ["--insecure-loopback"]
        args[args.index("127.0.0.1:0")] = f"127.0.0.1:{port}"
        try:
            self.run_refused(args, r"cannot listen")
        finally:
            s.close()

    def test_systemd_notify_and_journal_format(self):
        sock_path = os.path.join(self.dir, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        sock.settimeout(30)
        env = dict(os.environ, NOTIFY_SOCKET=sock_path)
        # JOURNAL_STREAM names the stream stderr is connected to; we use
        # the pipe's own device:inode as systemd would for the journal.
        r, w = os.pipe()
        st = os.fstat(w)
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        p = subprocess.Popen(self.base_args() + ["--insecure-loopback"], stderr=w, env=env)
        os.close(w)
        try:
            ready = sock.recv(4096).decode()
            self.assertIn("READY=1", ready)
            self.assertRegex(ready, r"STATUS=listening on 127\.0\.0\.1:\d+")
            p.send_signal(signal.SIGTERM)
            self.assertIn("STOPPING=1", sock.recv(4096).decode())
            self.assertEqual(p.wait(timeout=30), 0)
            out = os.read(r, 65536).decode()
            lines = [l for l in out.splitlines() if l]
            self.assertTrue(lines)
            for line in lines:
                self.assertRegex(line, r"^<[3-7]>", line)
            self.assertTrue(any(l.startswith("<6>listening on") for l in lines), out)
        finally:
            if p.poll() is None:
                p.kill()
            os.close(r)
            sock.close()

    def test_store_is_created_and_reused(self):
        p, _, _ = self.start(self.base_args() + ["--insecure-loopback"])
        self.stop(p)
        if POSTGRES:
            with StoreReader(self.store) as db:
                self.assertGreater(db.execute("SELECT count(*) FROM modelprov_meta").fetchone()[0], 0)
        else:
            path = self.store[len("sqlite:"):]
            self.assertTrue(os.path.exists(path))
            with open(path, "rb") as f:
                self.assertEqual(f.read(16), b"SQLite format 3\x00")
        p, _, _ = self.start(self.base_args() + ["--insecure-loopback"])
        self.stop(p)
        args = self.base_args() + ["--insecure-loopback"]
        if POSTGRES:
            # A database holding someone else's tables is refused, not migrated.
            foreign = test_store_url(self.dir, "foreign")
            import psycopg2
            c = psycopg2.connect(foreign)
            with c, c.cursor() as cur:
                cur.execute("CREATE TABLE accounts (id integer)")
            c.close()
            args[args.index(self.store)] = foreign
            self.run_refused(args, r"not a modelprov store")
            with StoreReader(foreign) as db:
                self.assertEqual(db.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
                                 .fetchone()[0], 1)
            return
        # A file that is not a store is refused, not overwritten.
        with open(os.path.join(self.dir, "junk.db"), "wb") as f:
            f.write(b"not a database at all" * 100)
        args[args.index(self.store)] = "sqlite:" + os.path.join(self.dir, "junk.db")
        self.run_refused(args, r"junk\.db")
        with open(os.path.join(self.dir, "junk.db"), "rb") as f:
            self.assertEqual(f.read(21), b"not a database at all")

if __name__ == "__main__":
    unittest.main()
