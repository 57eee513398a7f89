#!/usr/bin/env python3
"""Digest benchmark: `modelprov fingerprint` against `openssl dgst -sha256` on
the same warm files, measured in one run, printed as ratios.

  1. one 2 GiB safetensors file of random BF16 tensors shaped like a
     transformer: fingerprint --jobs 1 time / openssl dgst time (target <= 1.15)
  2. the same model in 4 shards: fingerprint --jobs 2 time / one openssl dgst
     over all shards (target <= 0.70)
  3. peak RSS of fingerprint on 1 GiB and 4 GiB files (target <= 64 MiB,
     growth < 8 MiB)

Times are the best of --repeat runs (default 3); files are read once first so
every run sees a warm page cache.  Usage: digest.py [--dir DIR] [--keep]."""
import argparse
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GiB = 1 << 30


def make(out, target, shards):
    if os.path.isdir(out):
        return
    subprocess.run([sys.executable, os.path.join(ROOT, "tests/gen/make_model.py"), "--out", out,
                    "--dtype", "BF16", "--hidden", "2048", "--vocab", "32000", "--intermediate", "5504",
                    "--target-bytes", str(target), "--shards", str(shards), "--bytes-random"], check=True)


def weight_files(d):
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".safetensors"))


def warm(files):
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(16 << 20):
                pass


def timed(cmd):
    """Wall time and peak RSS (KiB) of one run."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}")
    return dt, ru.ru_maxrss


def best(cmd, repeat):
    runs = [timed(cmd) for _ in range(repeat)]
    return min(r[0] for r in runs), max(r[1] for r in runs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/var/tmp/modelprov-bench")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build/cli/modelprov"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    mp = args.bin

    single, sharded = os.path.join(args.dir, "single-2g"), os.path.join(args.dir, "sharded-2g")
    small, large = os.path.join(args.dir, "single-1g"), os.path.join(args.dir, "single-4g")
    for d, size, shards in ((single, 2 * GiB, 1), (sharded, 2 * GiB, 4), (small, GiB, 1), (large, 4 * GiB, 1)):
        make(d, size, shards)

    print(f"machine: {os.cpu_count()} CPUs; {open('/proc/cpuinfo').read().count('sha_ni') and 'SHA-NI' or 'no SHA-NI'}")

    files = weight_files(single)
    warm(files)
    size = sum(os.path.getsize(f) for f in files)
    t_ssl, _ = best(["openssl", "dgst", "-sha256", *files], args.repeat)
    t_mp, rss = best([mp, "fingerprint", "--quiet", "--jobs", "1", "-o", "/dev/null", single], args.repeat)
    print(f"\n1 file, {size / GiB:.2f} GiB BF16")
    print(f"  openssl dgst -sha256        {t_ssl:7.3f} s  ({size / t_ssl / 1e9:.2f} GB/s)")
    print(f"  modelprov fingerprint -j1   {t_mp:7.3f} s  ({size / t_mp / 1e9:.2f} GB/s), peak RSS {rss / 1024:.1f} MiB")
    print(f"  ratio fingerprint/openssl   {t_mp / t_ssl:7.3f}   (target <= 1.15)")

    files = weight_files(sharded)
    warm(files)
    size = sum(os.path.getsize(f) for f in files)
    t_ssl4, _ = best(["openssl", "dgst", "-sha256", *files], args.repeat)
    t_mp4, rss4 = best([mp, "fingerprint", "--quiet", "--jobs", "2", "-o", "/dev/null", sharded], args.repeat)
    print(f"\n4 shards, {size / GiB:.2f} GiB BF16")
    print(f"  openssl dgst -sha256 (all)  {t_ssl4:7.3f} s")
    print(f"  modelprov fingerprint -j2   {t_mp4:7.3f} s, peak RSS {rss4 / 1024:.1f} MiB")
    print(f"  ratio fingerprint/openssl   {t_mp4 / t_ssl4:7.3f}   (target <= 0.70)")

    rss_by = {}
    for d in (small, large):
        files = weight_files(d)
        warm(files)
        _, rss_by[d] = best([mp, "fingerprint", "--quiet", "--jobs", "1", "-o", "/dev/null", d], 1)
    print(f"\npeak RSS: 1 GiB file {rss_by[small] / 1024:.1f} MiB, 4 GiB file {rss_by[large] / 1024:.1f} MiB, "
          f"growth {(rss_by[large] - rss_by[small]) / 1024:.1f} MiB   (targets <= 64 MiB, growth < 8 MiB)")

    if not args.keep:
        shutil.rmtree(args.dir)


if __name__ == "__main__":
    main()
