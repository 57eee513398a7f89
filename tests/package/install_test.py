#!/usr/bin/python3
"""install_test.py - the README's "Install on a fleet", run verbatim on this
machine, with checks between the steps; then remove and purge.

Needs root: it installs the packages it builds into this machine (and purges
them again at the end).  Without systemd as PID 1 (CI containers) the
README's `systemctl` is tests/package/no-systemd/systemctl, which starts the
installed units the way the service manager would (unit_runner.py): as their
users, with their capabilities, credentials and $NOTIFY_SOCKET.

Steps, each checked:
  1. build: dpkg-buildpackage in a copy of the tree; lintian has no errors
  2. install the collector: files, conffiles, user, directories, unit
     enabled, the "not started" notice; it does not start without secrets
  3. secrets + TLS, start: READY=1, secrets came as credentials
  4. install the agent, configure, restart: READY=1; it fingerprints a model
     in root's (0700) home through its one capability and reports it
  5. query hosts / status show this host and the model
  then: systemd-analyze security thresholds and verify on the installed
  units; SIGTERM stops both; remove keeps config, credentials and state;
  purge deletes them and keeps the users.

Ends with "package test: ok" or a failure naming what went wrong."""

import glob
import grp
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
ZOO = os.path.join(os.path.dirname(REPO), "shared", "zoo")
PACKAGES = ["modelprov", "modelprov-agent", "modelprov-collector"]
EXPOSURE_MAX = {"modelprovd.service": 2.0, "modelprov-collector.service": 1.5}
HUB = "/root/.cache/huggingface/hub"
TEST_MODEL = "models--modelprov-pkgtest--llama"
UNITDIR = "/lib/systemd/system"
CREDSTORE = "/etc/credstore"


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)
    print(f"  ok: {what}")


def run(cmd, **kw):
    print("+ " + (cmd if isinstance(cmd, str) else " ".join(cmd)), flush=True)
    return subprocess.run(cmd, check=True, text=True, **kw)


def output(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE, **kw).stdout


def readme_blocks():
    """The sh blocks of the README's "Install on a fleet" section, dedented."""
    text = open(os.path.join(REPO, "README.md")).read()
    m = re.search(r"^## Install on a fleet\n(.*?)^## ", text, re.S | re.M)
    if not m:
        raise Failure("README.md has no \"Install on a fleet\" section")
    blocks = []
    for indent, body in re.findall(r"^( *)```sh\n(.*?)^\1```", m.group(1), re.S | re.M):
        blocks.append("".join(line[len(indent):] + "\n" for line in body.splitlines()))
    return blocks


class Steps:
    def __init__(self, work):
        self.work = work
        self.runtime = os.path.join(work, "run")
        os.mkdir(self.runtime, 0o711)
        self.env = dict(os.environ, COLLECTOR="localhost", MODELPROV_UNIT_RUNTIME=self.runtime)
        # test.sh ran the same suite on the same tree minutes ago; the build
        # runs it again only when asked (MODELPROV_PACKAGE_CHECK=1).
        if os.environ.get("MODELPROV_PACKAGE_CHECK") != "1":
            self.env["DEB_BUILD_OPTIONS"] = "nocheck"

        # The README's `sudo` is a no-op for root (CI machines may lack it).
        # Real systemd runs the units itself; otherwise our stand-in does.
        self.env["PATH"] = os.path.join(HERE, "bin") + ":" + self.env["PATH"]
        self.systemd = os.path.isdir("/run/systemd/system")
        if not self.systemd:
            self.env["PATH"] = os.path.join(HERE, "no-systemd") + ":" + self.env["PATH"]
        self.blocks = readme_blocks()
        if len(self.blocks) != 5:
            raise Failure(f"expected 5 sh blocks in README's install section, found {len(self.blocks)}")

    def block(self, i, cwd):
        print(f"== README install step {i + 1}", flush=True)
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", self.blocks[i]], cwd=cwd, env=self.env,
                           text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        sys.stdout.write(r.stdout)
        if r.returncode != 0:
            raise Failure(f"README install step {i + 1} failed (exit {r.returncode})")
        return r.stdout

    def notifications(self, unit):
        if self.systemd:
            return output(["systemctl", "show", "-p", "StatusText", unit])
        try:
            return open(os.path.join(self.runtime, unit + ".notify")).read()
        except FileNotFoundError:
            return ""

    def active(self, unit):
        return subprocess.run(["systemctl", "is-active", "--quiet", unit], env=self.env).returncode == 0

    def unit_log(self, unit):
        if self.systemd:
            return output(["journalctl", "-u", unit, "--no-pager", "-n", "200"])
        try:
            return open(os.path.join(self.runtime, unit + ".log")).read()
        except FileNotFoundError:
            return ""


def mode_owner(path):
    st = os.stat(path)
    return stat.S_IMODE(st.st_mode), pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name


def installed(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", pkg], text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return r.stdout.strip()


def purge_leftovers():
    present = [p for p in PACKAGES if installed(p) not in ("", "not-installed")]
    if present:
        print(f"package test: purging {' '.join(present)} left from an earlier run")
        run(["apt-get", "purge", "-y", "-q"] + present)


def copy_tree(dst):
    """The checkout as git sees it (tracked and unignored files), so build
    directories and earlier package builds stay out."""
    if not os.path.isdir(os.path.join(REPO, ".git")):
        shutil.copytree(REPO, dst, symlinks=True,
                        ignore=shutil.ignore_patterns("build*", "obj-*", "fuzz-corpus-work", "__pycache__"))
        return
    files = output(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO)
    for rel in filter(None, files.split("\0")):
        src = os.path.join(REPO, rel)
        if not os.path.lexists(src):
            continue                    # deleted in the working tree
        os.makedirs(os.path.dirname(os.path.join(dst, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dst, rel), follow_symlinks=False)


def step_build(s):
    src = os.path.join(s.work, "modelprov")
    copy_tree(src)
    s.block(0, src)
    debs = {p: glob.glob(os.path.join(s.work, f"{p}_*.deb")) for p in PACKAGES}
    for p, found in debs.items():
        check(len(found) == 1, f"{p} .deb built")
    changes = glob.glob(os.path.join(s.work, "modelprov_*.changes"))
    lint = subprocess.run(["lintian", "--fail-on", "error", "--display-info"] + changes, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tags = [line for line in lint.stdout.splitlines() if re.match(r"^[EWI]: ", line)]
    for line in tags:
        print("  lintian: " + line)
    check(lint.returncode == 0, "lintian reports no errors")
    check(not [t for t in tags if t.startswith(("E:", "W:"))],
          "lintian reports no warnings (each is fixed or overridden with a reason in debian/)")


def check_common_install(pkg, unit, user, state_dir, conffile, binary):
    check(os.access(binary, os.X_OK), f"{binary} installed")
    check(os.path.exists(os.path.join(UNITDIR, unit)), f"{unit} installed")
    conffiles = output(["dpkg-query", "-W", "-f=${Conffiles}", pkg])
    check(conffile in conffiles, f"{conffile} is a conffile of {pkg}")
    check(mode_owner(conffile) == (0o644, "root", "root"), f"{conffile} is 0644 root")
    pw = pwd.getpwnam(user)
    check(pw.pw_uid < 1000 and pw.pw_shell.endswith("nologin"), f"system user {user} without a login shell")
    check(mode_owner(state_dir) == (0o700, user, user), f"{state_dir} is 0700 {user}")
    check(mode_owner(CREDSTORE)[:2] == (0o700, "root"), f"{CREDSTORE} is 0700 root")
    wants = f"/etc/systemd/system/multi-user.target.wants/{unit}"
    check(os.path.islink(wants), f"{unit} enabled")


def step_install_collector(s):
    out = s.block(1, s.work)
    check_common_install("modelprov-collector", "modelprov-collector.service", "modelprov-collector",
                         "/var/lib/modelprov-collector", "/etc/modelprov/collector.conf",
                         "/usr/sbin/modelprov-collector")
    check(os.access("/usr/bin/modelprov", os.X_OK), "/usr/bin/modelprov installed")
    check("enabled but not started" in out, "the collector package says it is not started yet")
    subprocess.run(["systemctl", "start", "modelprov-collector"], env=s.env)
    check(not s.active("modelprov-collector"), "the collector stays inactive without its enroll secret")


def step_start_collector(s):
    s.block(2, s.work)
    for name in ("enroll-secret", "query-token", "tls-key"):
        path = f"{CREDSTORE}/modelprov-collector.{name}"
        check(mode_owner(path)[:2] == (0o600, "root"), f"{path} is 0600 root")
    check(s.active("modelprov-collector"), "the collector is active (READY=1)")
    check("listening on 0.0.0.0:7443" in s.notifications("modelprov-collector.service"),
          "the collector's STATUS= says where it listens")
    conf = open("/etc/modelprov/collector.conf").read()
    check(not re.search(r"^\s*(enroll-secret-file|query-token-file|tls-key)\s*=", conf, re.M),
          "collector.conf names no secret file: the secrets came as credentials")


def place_test_model(s):
    """A model in root's home (0700): only CAP_DAC_READ_SEARCH lets the
    agent's user read it.  The zoo's hub-cache model, or a generated one."""
    s.created_hub = not os.path.exists(HUB)
    os.makedirs(HUB, exist_ok=True)
    dst = os.path.join(HUB, TEST_MODEL)
    shutil.rmtree(dst, ignore_errors=True)
    zoo_model = os.path.join(ZOO, "hub", "models--zoo--llama-chained")
    if os.path.isdir(zoo_model):
        shutil.copytree(zoo_model, dst, symlinks=True)
    else:
        print(f"package test: zoo missing ({ZOO}): using a generated model")
        run([sys.executable, os.path.join(REPO, "tests/gen/make_model.py"), "--out", dst, "--hidden", "64",
             "--layers", "2", "--vocab", "512"], stdout=subprocess.DEVNULL)
    os.chmod(dst, 0o700)
    check(mode_owner(dst) == (0o700, "root", "root"), f"test model in {dst}, 0700 root")
    s.model_dir = dst


def check_capability_needed(s):
    """Without CAP_DAC_READ_SEARCH the agent's user cannot even list the
    model: the agent reading it proves the capability reached it."""
    r = subprocess.run(["setpriv", "--reuid=modelprov", "--regid=modelprov", "--clear-groups",
                        "--inh-caps=-all", "ls", s.model_dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    check(r.returncode != 0, "the modelprov user cannot read the model without the capability")


def query(s, *args):
    env = dict(s.env, MODELPROV_COLLECTOR="localhost:7443")
    return output(["modelprov", "query"] + list(args) + ["--token-file", "query.token", "--ca-file", "ca.pem",
                                                        "--json"], cwd=s.work, env=env)


def step_install_agent(s):
    place_test_model(s)
    s.block(3, s.work)
    check_common_install("modelprov-agent", "modelprovd.service", "modelprov", "/var/lib/modelprov",
                         "/etc/modelprov/agent.conf", "/usr/sbin/modelprovd")
    postinst = open("/var/lib/dpkg/info/modelprov-agent.postinst").read()
    check("_dh_action=restart" in postinst and "deb-systemd-invoke $_dh_action 'modelprovd.service'" in postinst,
          "the agent's postinst starts it on install and restarts it on upgrade")
    check_capability_needed(s)
    check(s.active("modelprovd"), "the agent is active (READY=1)")
    check("STATUS=" in s.notifications("modelprovd.service") or s.systemd, "the agent reports STATUS=")
    # Reported: the collector's inventory holds the model from root's home.
    deadline = time.monotonic() + 120
    inventory = ""
    while time.monotonic() < deadline:
        inventory = query(s, "inventory")
        if s.model_dir in inventory:
            break
        time.sleep(1)
    if s.model_dir not in inventory:
        print(s.unit_log("modelprovd.service")[-4000:])
    check(s.model_dir in inventory, "the collector's inventory holds the model the agent read in /root")


def step_check(s):
    out = s.block(4, s.work)
    hostname = socket.gethostname()
    check(hostname in out, f"`modelprov query hosts` lists this host ({hostname})")
    check(re.search(r"^collector: +localhost:7443", out, re.M), "`modelprov status` shows the agent's collector")
    check(not re.search(r"^last contact: +never", out, re.M), "`modelprov status` shows a contact")


def step_units():
    for unit, limit in EXPOSURE_MAX.items():
        path = os.path.join(UNITDIR, unit)
        r = subprocess.run(["systemd-analyze", "security", "--offline=yes", f"--threshold={int(limit * 10)}",
                            path], text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
        print(f"  {unit}: exposure {m.group(1) if m else '?'} (limit {limit})")
        check(r.returncode == 0 and m and float(m.group(1)) <= limit, f"{unit} exposure at most {limit}")
    units = [os.path.join(UNITDIR, u) for u in EXPOSURE_MAX]
    r = subprocess.run(["systemd-analyze", "verify"] + units, text=True, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    # Outside a booted system verify also looks at the dependencies' units;
    # only lines about our units count.
    ours = [line for line in r.stdout.splitlines() if any(u in line for u in EXPOSURE_MAX)]
    for line in r.stdout.splitlines():
        print("  verify: " + line)
    check(not ours, "systemd-analyze verify has nothing to say about our units")


def step_stop(s):
    for unit in ("modelprovd", "modelprov-collector"):
        run(["systemctl", "stop", unit], env=s.env)
        check(not s.active(unit), f"{unit} stopped")
        if not s.systemd:
            check("STOPPING=1" in s.notifications(unit + ".service"), f"{unit} sent STOPPING=1")
            status = open(os.path.join(s.runtime, unit + ".service.status")).read().split()
            check(status == ["EXITED", "0"], f"{unit} exited 0 on SIGTERM")


KEPT = ["/etc/modelprov/agent.conf", "/etc/modelprov/collector.conf", "/var/lib/modelprov/state.db",
        "/var/lib/modelprov-collector/collector.db", f"{CREDSTORE}/modelprov-agent.enroll-secret",
        f"{CREDSTORE}/modelprov-collector.enroll-secret", f"{CREDSTORE}/modelprov-collector.tls-key"]


def step_remove_purge():
    run(["apt-get", "remove", "-y", "-q"] + PACKAGES)
    for b in ("/usr/bin/modelprov", "/usr/sbin/modelprovd", "/usr/sbin/modelprov-collector",
              f"{UNITDIR}/modelprovd.service"):
        check(not os.path.exists(b), f"remove: {b} gone")
    for k in KEPT:
        check(os.path.exists(k), f"remove: {k} kept")
    run(["apt-get", "purge", "-y", "-q"] + PACKAGES)
    for k in KEPT + ["/var/lib/modelprov", "/var/lib/modelprov-collector"]:
        check(not os.path.exists(k), f"purge: {k} gone")
    for user in ("modelprov", "modelprov-collector"):
        check(pwd.getpwnam(user) is not None, f"purge: user {user} kept")


def cleanup(s):
    for unit in ("modelprovd", "modelprov-collector"):
        subprocess.run(["systemctl", "stop", unit], env=s.env, stderr=subprocess.DEVNULL)
    if getattr(s, "model_dir", None):
        shutil.rmtree(s.model_dir, ignore_errors=True)
        if s.created_hub:
            shutil.rmtree("/root/.cache/huggingface", ignore_errors=True)


def main():
    if os.geteuid() != 0:
        sys.exit("package test: needs root (it installs and purges the packages on this machine)")
    purge_leftovers()
    work = tempfile.mkdtemp(prefix="modelprov-pkgtest.", dir="/var/tmp")
    # The services' users reach their credentials and $NOTIFY_SOCKET in
    # work/run (as under /run/credentials): traversable, not listable.
    os.chmod(work, 0o711)
    s = Steps(work)
    try:
        step_build(s)
        step_install_collector(s)
        step_start_collector(s)
        step_install_agent(s)
        step_check(s)
        step_units()
        step_stop(s)
        step_remove_purge()
    except (Failure, subprocess.CalledProcessError) as e:
        for unit in ("modelprov-collector.service", "modelprovd.service"):
            log = s.unit_log(unit)
            if log:
                print(f"--- {unit} log (end)\n{log[-3000:]}")
        print(f"package test: FAILED: {e}")
        cleanup(s)
        purge_leftovers()
        return 1
    cleanup(s)
    shutil.rmtree(work, ignore_errors=True)
    print("package test: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
