#!/usr/bin/python3
"""pg_server.py - runs a command beside a PostgreSQL server of its own.

    pg_server.py [--keep] [--shared-buffers SIZE] -- COMMAND [ARGS...]

Creates a cluster in a fresh temporary directory (initdb from Debian's
postgresql package), starts it on 127.0.0.1 at a free port and on a Unix
socket in that directory, runs COMMAND with

    MODELPROV_TEST_PG  libpq conninfo of the server's "postgres" database as
                       its superuser (tests create a database per store),

then stops the server (fast shutdown) and deletes the directory, whatever
COMMAND did.  Exits with COMMAND's status.  The meson test setup "postgres"
uses this as its wrapper, so each test binary gets a server nobody else
touches.

Run as root, the server runs as the "postgres" system user (PostgreSQL
refuses root); the directory is made accessible to it.  The server is for
tests: trust authentication on loopback only, fsync off, shared_buffers
128MB unless --shared-buffers says otherwise (benchmarks size it as
docs/scaling.md advises a fleet's server)."""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

START_TIMEOUT_S = 60


def pg_bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        sys.exit(f"pg_server: no {name}: install Debian's postgresql package")
    return found[-1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_server_user():
    """setpriv prefix that drops root to the postgres user, or nothing."""
    if os.geteuid() != 0:
        return [], None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        sys.exit("pg_server: running as root needs the postgres user (Debian's postgresql package)")
    return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups"], pw


def main():
    args = sys.argv[1:]
    keep = False
    shared_buffers = "128MB"
    while args[:1] in (["--keep"], ["--shared-buffers"]):
        if args[0] == "--keep":
            keep, args = True, args[1:]
        elif len(args) >= 2 and args[1].isalnum():
            shared_buffers, args = args[1], args[2:]
        else:
            sys.exit(__doc__)
    if args[:1] != ["--"] or len(args) < 2:
        sys.exit(__doc__)
    command = args[1:]

    prefix, pw = as_server_user()
    top = tempfile.mkdtemp(prefix="modelprov-pg.")
    data = os.path.join(top, "data")
    if pw:
        os.chown(top, pw.pw_uid, pw.pw_gid)
    port = free_port()
    log = os.path.join(top, "server.log")
    env = dict(os.environ, LC_ALL="C.UTF-8")

    r = subprocess.run(prefix + [pg_bin("initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                                 "--no-instructions"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        shutil.rmtree(top, ignore_errors=True)
        sys.exit(f"pg_server: initdb failed:\n{r.stderr}")

    options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={top} "
               "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 "
               f"-c shared_buffers={shared_buffers}")
    server_up = False
    status = 1
    try:
        r = subprocess.run(prefix + [pg_bin("pg_ctl"), "-D", data, "-l", log, "-o", options, "-w", "-t",
                                     str(START_TIMEOUT_S), "start"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            sys.stderr.write(f"pg_server: the server did not start:\n{r.stderr}")
            if os.path.exists(log):
                sys.stderr.write(open(log).read()[-4000:])
            return 1
        server_up = True
        conninfo = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
        child = subprocess.Popen(command, env=dict(os.environ, MODELPROV_TEST_PG=conninfo))
        # meson's timeout SIGTERMs us: pass it on, then clean up below.
        signal.signal(signal.SIGTERM, lambda *_: child.terminate())
        status = child.wait()
        if status < 0:
            status = 128 - status
    finally:
        if server_up:
            subprocess.run(prefix + [pg_bin("pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if keep:
            print(f"pg_server: kept {top}", file=sys.stderr)
        else:
            shutil.rmtree(top, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
