#!/usr/bin/python3
"""unit_runner.py - starts an installed systemd service the way the service
manager would, on a machine where systemd is not PID 1 (CI containers).

The package test runs the README's "Install on a fleet" steps verbatim; their
`systemctl start|stop|restart UNIT` lands here (tests/package/no-systemd/systemctl).
What a real start does and this one copies, from the installed unit file:

- Condition{PathExists,PathExistsGlob}= are checked first; a failed one skips
  the start, like systemd ("Condition check ... skipped").
- LoadCredential=ID:NAME reads /etc/credstore/NAME (then /run/credstore,
  /usr/lib/credstore), skipping a missing one; ID:/ABS reads the file and a
  missing one fails the start (exit status 243, systemd's CREDENTIALS).  The
  copies go to a private directory owned by the service user, files 0400,
  passed as $CREDENTIALS_DIRECTORY.
- User=/Group= with no supplementary groups, CapabilityBoundingSet= and
  AmbientCapabilities=, NoNewPrivileges=, UMask= and Nice=, through setpriv.
- StateDirectory= must already exist (the package creates it at install) and
  is passed as $STATE_DIRECTORY.
- Type=notify: $NOTIFY_SOCKET is a datagram socket this runner reads; the
  start returns once READY=1 arrives, fails if the service exits first.
  $WATCHDOG_USEC comes from WatchdogSec=.  Every notification is appended to
  RUNTIME/UNIT.notify for the test to check.
- stop sends SIGTERM and waits TimeoutStopSec= before SIGKILL.

The sandboxing directives (ProtectSystem=, SystemCallFilter=, ...) need PID 1
and are not copied; `systemd-analyze security` checks them instead.

usage: unit_runner.py start|stop|restart|is-active UNIT   (RUNTIME is
$MODELPROV_UNIT_RUNTIME)"""

import grp
import os
import pwd
import shlex
import signal
import socket
import subprocess
import sys
import time

# $MODELPROV_UNIT_DIRS (colon-separated) replaces the search path in the
# runner's own test.
UNIT_DIRS = (os.environ["MODELPROV_UNIT_DIRS"].split(":") if os.environ.get("MODELPROV_UNIT_DIRS")
             else ["/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"])
CREDSTORES = ["/etc/credstore", "/run/credstore", "/usr/lib/credstore"]
START_TIMEOUT_S = 90
EXIT_CREDENTIALS = 243


def unit_name(name):
    return name if "." in name else name + ".service"


def parse_unit(name):
    """The [Unit] and [Service] settings of an installed unit, as a dict of
    lists (settings may repeat; an empty assignment resets the list)."""
    for d in UNIT_DIRS:
        path = os.path.join(d, name)
        if os.path.exists(path):
            break
    else:
        sys.exit(f"Unit {name} could not be found.")
    settings = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;[":
                continue
            key, _, value = line.partition("=")
            if value == "":
                settings[key] = []
            else:
                settings.setdefault(key, []).append(value)
    return settings


def last(settings, key, default=None):
    v = settings.get(key)
    return v[-1] if v else default


def runtime_path(name, suffix):
    return os.path.join(os.environ["MODELPROV_UNIT_RUNTIME"], name + suffix)


def conditions_met(settings):
    for cond in settings.get("ConditionPathExists", []):
        negate = cond.startswith("!")
        if os.path.exists(cond.lstrip("!")) == negate:
            return False, f"ConditionPathExists={cond}"
    return True, None


def seconds(value):
    value = value.strip()
    for suffix, mult in (("min", 60), ("ms", 0.001), ("s", 1)):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * mult
    return float(value)


def load_credentials(settings, name, uid, gid):
    """Copies the unit's credentials into a directory only the service user
    can read; returns its path, or None when the unit has none."""
    entries = settings.get("LoadCredential", [])
    if not entries:
        return None
    creds = runtime_path(name, ".credentials")
    subprocess.run(["rm", "-rf", creds], check=True)
    os.mkdir(creds, 0o700)
    for entry in entries:
        cid, _, source = entry.partition(":")
        source = source or cid
        if source.startswith("/"):
            try:
                data = open(source, "rb").read()
            except OSError as e:
                print(f"{name}: Failed to set up credentials: {source}: {e.strerror}", file=sys.stderr)
                sys.exit(EXIT_CREDENTIALS)
        else:
            data = None
            for store in CREDSTORES:
                try:
                    data = open(os.path.join(store, source), "rb").read()
                    break
                except FileNotFoundError:
                    continue
            if data is None:
                print(f"{name}: Couldn't read inherited credential '{source}', skipping", file=sys.stderr)
                continue
        path = os.path.join(creds, cid)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        os.write(fd, data)
        os.close(fd)
        os.chown(path, uid, gid)
    os.chmod(creds, 0o500)
    os.chown(creds, uid, gid)
    return creds


def setpriv_command(settings, uid, gid):
    if "User" not in settings:
        return []           # runs as the runner's own user: nothing to change
    caps = " ".join(settings.get("AmbientCapabilities", [])).split()
    bounding = " ".join(settings.get("CapabilityBoundingSet", [])).split()
    cap_list = ",".join("+" + c.lower().removeprefix("cap_") for c in caps)
    bound_list = ",".join("+" + c.lower().removeprefix("cap_") for c in bounding)
    cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
           "--bounding-set=-all" + ("," + bound_list if bound_list else ""),
           "--inh-caps=-all" + ("," + cap_list if cap_list else ""),
           "--ambient-caps=-all" + ("," + cap_list if cap_list else "")]
    if last(settings, "NoNewPrivileges") == "yes":
        cmd.append("--no-new-privs")
    return cmd


def supervise(name):
    """Runs the service in the foreground of this (detached) process."""
    settings = parse_unit(name)
    if last(settings, "Type") != "notify":
        sys.exit(f"{name}: only Type=notify services are run here")
    status_file = runtime_path(name, ".status")
    notify_log = open(runtime_path(name, ".notify"), "a", buffering=1)

    def set_status(s):
        with open(status_file + ".tmp", "w") as f:
            f.write(s + "\n")
        os.replace(status_file + ".tmp", status_file)

    # systemd runs a system unit without User= as root, which is who runs
    # this in the package test; the runner's own test may run as anyone.
    user = last(settings, "User") or pwd.getpwuid(os.getuid()).pw_name
    pw = pwd.getpwnam(user)
    gid = grp.getgrnam(last(settings, "Group")).gr_gid if last(settings, "Group") else pw.pw_gid
    uid = pw.pw_uid

    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "USER": user, "LOGNAME": user, "HOME": pw.pw_dir, "INVOCATION_ID": os.urandom(16).hex()}
    for state in " ".join(settings.get("StateDirectory", [])).split():
        path = os.path.join("/var/lib", state)
        st = os.stat(path)          # the package must have created it
        if (st.st_uid, st.st_gid) != (uid, gid):
            set_status(f"FAILED {path} is not owned by {user}")
            sys.exit(1)
        env["STATE_DIRECTORY"] = path
    creds = load_credentials(settings, name, uid, gid)
    if creds:
        env["CREDENTIALS_DIRECTORY"] = creds

    sock_path = runtime_path(name, ".notify.sock")
    if os.path.exists(sock_path):
        os.unlink(sock_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    os.chmod(sock_path, 0o777)
    env["NOTIFY_SOCKET"] = sock_path
    if last(settings, "WatchdogSec"):
        env["WATCHDOG_USEC"] = str(int(seconds(last(settings, "WatchdogSec")) * 1e6))

    umask = int(last(settings, "UMask", "0022"), 8)
    nice = int(last(settings, "Nice", "0"))

    def preexec():
        os.umask(umask)
        if nice:
            os.nice(nice)

    argv = setpriv_command(settings, uid, gid) + shlex.split(last(settings, "ExecStart"))
    log = open(runtime_path(name, ".log"), "ab")
    child = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             preexec_fn=preexec)
    set_status(f"STARTING {child.pid}")

    stop_timeout = seconds(last(settings, "TimeoutStopSec", "90"))

    def on_term(signum, frame):
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(stop_timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    signal.signal(signal.SIGTERM, on_term)
    ready = False

    def take(msg):
        nonlocal ready
        for line in msg.decode(errors="replace").splitlines():
            notify_log.write(line + "\n")
            if line == "READY=1" and not ready:
                ready = True
                set_status(f"READY {child.pid}")

    sock.settimeout(0.2)
    while child.poll() is None:
        try:
            take(sock.recv(65536))
        except (socket.timeout, InterruptedError):
            continue
    # The SIGTERM handler waits for the child inside the loop, so whatever it
    # sent while stopping (STOPPING=1) is still queued: read it before the
    # exit is recorded, as systemd does.
    sock.setblocking(False)
    while True:
        try:
            take(sock.recv(65536))
        except BlockingIOError:
            break
    set_status(f"EXITED {child.returncode}")
    sys.exit(0)


def read_status(name):
    try:
        return open(runtime_path(name, ".status")).read().split(None, 1)
    except FileNotFoundError:
        return ["INACTIVE"]


def start(name):
    settings = parse_unit(name)
    ok, failed = conditions_met(settings)
    if not ok:
        print(f"{name}: Condition check resulted in {name} being skipped ({failed}).")
        return 0
    if read_status(name)[0] in ("READY", "STARTING"):
        return 0
    for suffix in (".status", ".notify"):
        if os.path.exists(runtime_path(name, suffix)):
            os.unlink(runtime_path(name, suffix))
    runner = subprocess.Popen([sys.executable, os.path.abspath(__file__), "supervise", name],
                              start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    with open(runtime_path(name, ".runner"), "w") as f:
        f.write(str(runner.pid))
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        status = read_status(name)
        if status[0] == "READY":
            return 0
        if status[0] in ("EXITED", "FAILED") or runner.poll() is not None:
            print(f"Job for {name} failed ({' '.join(status)}); its log:", file=sys.stderr)
            sys.stderr.write(open(runtime_path(name, ".log")).read()[-4000:])
            return runner.poll() if runner.poll() not in (None, 0) else 1
        time.sleep(0.1)
    print(f"Job for {name} timed out waiting for READY=1", file=sys.stderr)
    return 1


def stop(name):
    """SIGTERM to the runner, which passes it on and records the exit."""
    try:
        pid = int(open(runtime_path(name, ".runner")).read())
    except FileNotFoundError:
        return 0
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    timeout = seconds(last(parse_unit(name), "TimeoutStopSec", "90")) + 10
    deadline = time.monotonic() + timeout
    while read_status(name)[0] in ("READY", "STARTING") and time.monotonic() < deadline:
        time.sleep(0.1)
    os.unlink(runtime_path(name, ".runner"))
    if read_status(name)[0] in ("READY", "STARTING"):
        print(f"{name}: did not stop within {timeout:.0f} s", file=sys.stderr)
        return 1
    return 0


def main():
    args = [a for a in sys.argv[1:] if a != "--quiet"]
    if len(args) != 2:
        sys.exit(__doc__)
    verb, name = args[0], unit_name(args[1])
    if verb == "supervise":
        supervise(name)
    elif verb == "start":
        sys.exit(start(name))
    elif verb == "stop":
        sys.exit(stop(name))
    elif verb == "restart":
        stop(name)
        sys.exit(start(name))
    elif verb == "is-active":
        active = read_status(name)[0] == "READY"
        if "--quiet" not in sys.argv:
            print("active" if active else "inactive")
        sys.exit(0 if active else 3)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
