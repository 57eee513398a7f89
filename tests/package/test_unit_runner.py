#!/usr/bin/python3
"""test_unit_runner.py - the package test's systemd stand-in keeps what a
service tells it while it stops.

Regression: the runner's SIGTERM handler waited for the service inside the
receive loop, and when the stop took longer than the loop's receive timeout
the STOPPING=1 the service had sent was never read (CI failed "modelprov-
collector sent STOPPING=1").  The service here sends STOPPING=1 and then takes
half a second to exit."""

import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "unit_runner.py")

SERVICE = r'''
import os, signal, socket, sys, time
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def notify(msg):
    sock.sendto(msg.encode(), os.environ["NOTIFY_SOCKET"])
def on_term(signum, frame):
    notify("STOPPING=1")
    time.sleep(0.5)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
notify("READY=1\nSTATUS=waiting")
while True:
    signal.pause()
'''

failures = 0


def check(cond, what):
    global failures
    print(("ok: " if cond else "FAILED: ") + what)
    if not cond:
        failures += 1


def runner(tmp, verb):
    env = dict(os.environ, MODELPROV_UNIT_DIRS=tmp, MODELPROV_UNIT_RUNTIME=tmp)
    return subprocess.run([sys.executable, RUNNER, verb, "slowstop"], env=env, timeout=60).returncode


with tempfile.TemporaryDirectory() as tmp:
    script = os.path.join(tmp, "service.py")
    with open(script, "w") as f:
        f.write(SERVICE)
    with open(os.path.join(tmp, "slowstop.service"), "w") as f:
        f.write(f"[Service]\nType=notify\nExecStart={sys.executable} {script}\nTimeoutStopSec=10\n")
    for attempt in range(3):
        check(runner(tmp, "start") == 0, f"start #{attempt + 1} returns once READY=1 arrives")
        check(runner(tmp, "is-active") == 0, f"is-active after start #{attempt + 1}")
        check(runner(tmp, "stop") == 0, f"stop #{attempt + 1}")
        notes = open(os.path.join(tmp, "slowstop.service.notify")).read().splitlines()
        check("READY=1" in notes and "STATUS=waiting" in notes, "READY=1 and STATUS= recorded")
        check("STOPPING=1" in notes, f"STOPPING=1 sent while stopping is recorded (stop #{attempt + 1})")
        status = open(os.path.join(tmp, "slowstop.service.status")).read().split()
        check(status == ["EXITED", "0"], f"exit recorded as {status}")

sys.exit(1 if failures else 0)
