#!/usr/bin/python3
"""Simulated agents for the demo: each HOST=RECORD... argument enrolls a host
with the collector at ADDR (plaintext loopback) and reports the fingerprint
records (written by `modelprov fingerprint -o`) as models added under
/models/<record name>, over the Report stream, one acknowledged batch per
host.  The demo's own host runs the real agent (modelprovd); these stand in
for the other hosts of a fleet, with a Python client generated from proto/
(Debian's python3-grpcio).

usage: demo_fleet.py ADDR ENROLL_SECRET_FILE HOST=RECORD[,RECORD...]..."""
import os
import subprocess
import sys
import tempfile
import time

import grpc

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
stubs = tempfile.mkdtemp(prefix="modelprov-demo-stubs-")
subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", os.path.join(root, "proto"),
                f"--python_out={stubs}", f"--grpc_python_out={stubs}",
                os.path.join(root, "proto", "modelprov.proto")], check=True)
sys.path.insert(0, stubs)
import modelprov_pb2 as pb  # noqa: E402
import modelprov_pb2_grpc as rpc  # noqa: E402

addr, secret_file, hosts = sys.argv[1], sys.argv[2], sys.argv[3:]
secret = open(secret_file).read().strip()
ingest = rpc.IngestStub(grpc.insecure_channel(addr))

for spec in hosts:
    hostname, records = spec.split("=", 1)
    r = ingest.Enroll(pb.EnrollRequest(host=pb.HostInfo(hostname=hostname, machine_id="demo-" + hostname,
                                                         agent_version="demo", os="linux")),
                      metadata=(("authorization", "Bearer " + secret),), timeout=10)
    events = []
    for i, path in enumerate(records.split(","), start=r.acked_through + 1):
        fp = pb.Fingerprint.FromString(open(path, "rb").read())
        name = os.path.splitext(os.path.basename(path))[0]
        events.append(pb.Event(sequence=i, kind=pb.MODEL_ADDED, observed_at=int(time.time() * 1000),
                               path="/models/" + name, model_digest=fp.model_digest, fingerprint=fp))
    md = (("authorization", "Bearer " + r.host_key), ("modelprov-host-id", r.host_id))
    for ack in ingest.Report(iter([pb.ReportBatch(events=events)]), metadata=md, timeout=30):
        print(f"{hostname}: enrolled as {r.host_id}, reported {len(events)} model{'s' if len(events) != 1 else ''}, "
              f"acked through {ack.acked_through} (stored {ack.stored}, duplicates {ack.duplicates})")
