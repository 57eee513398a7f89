#!/usr/bin/env python3
"""Signal benchmarks (issue 3), measured in one run, printed as a table:

  a. full fingerprint (digests + all signals, --jobs 1) of one warm 2 GiB BF16
     safetensors file shaped like a transformer (hidden 2048, vocab 32000,
     19 layers), divided by `openssl dgst -sha256` on the same file
     (target <= 1.30: the signals ride on the digest pass);
  b. `compare --json` of two stored fingerprints of such models (different
     seeds), median of --compares runs (target <= 5 ms), beside the median
     of `modelprov --version`, the process-start floor included in it;
  c. `scan --json` of a stored fingerprint against a 1,000-entry catalog
     (target <= 200 ms), and the same with --all-buckets (no size filter).  Half the entries have the scanned model's shape
     (so the structural pre-filter passes them to full scoring), half are
     small generated models of varied shapes and seeds; each record is added
     under many names with `catalog add`.

Weights are real numbers (make_model.py --values tiled: no NaN/Inf/denormal
slow paths that random bytes would hit).  Times of (a) are the best of
--repeat runs on warm files.  Usage: signals.py [--dir DIR] [--keep]."""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GiB = 1 << 30
GEN = os.path.join(ROOT, "tests/gen/make_model.py")
CATALOG_SIZE = 1000


def make(out, *args):
    if not os.path.isdir(out):
        subprocess.run([sys.executable, GEN, "--out", out, *args], check=True)
    return out


def make_big(out, seed):
    return make(out, "--dtype", "BF16", "--hidden", "2048", "--vocab", "32000", "--intermediate", "5504",
                "--target-bytes", str(2 * GiB), "--values", "tiled", "--seed", str(seed))


def warm(path):
    with open(path, "rb") as fh:
        while fh.read(16 << 20):
            pass


def timed(cmd):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode not in (0, 1):     # compare/scan may use 1 for "findings"
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr.decode(errors='replace')}")
    return dt


def best(cmd, repeat):
    return min(timed(cmd) for _ in range(repeat))


def median(cmd, n):
    timed(cmd)                         # warm-up: page cache, dynamic loader
    return statistics.median(timed(cmd) for _ in range(n))


def fingerprint(mp, model, out):
    if not os.path.exists(out):
        subprocess.run([mp, "fingerprint", "-q", "-o", out, model], check=True)
    return out


def build_catalog(mp, d, same_shape_fp):
    """CATALOG_SIZE entries: half copies of same_shape_fp, half small models."""
    catalog = os.path.join(d, "catalog.db")
    if os.path.exists(catalog):
        return catalog
    small = []
    for i, (hidden, layers, vocab) in enumerate([(64, 2, 512), (128, 4, 1024), (256, 4, 4000),
                                                 (128, 8, 2048), (64, 4, 32000)] * 4):
        m = make(os.path.join(d, f"small-{i}"), "--hidden", str(hidden), "--layers", str(layers),
                 "--vocab", str(vocab), "--values", "normal", "--seed", str(100 + i))
        small.append(fingerprint(mp, m, m + ".fp"))
    t0 = time.perf_counter()
    for i in range(CATALOG_SIZE):
        fp = same_shape_fp if i % 2 == 0 else small[(i // 2) % len(small)]
        subprocess.run([mp, "catalog", "add", catalog, fp, "--name", f"entry-{i:04d}"],
                       check=True, stdout=subprocess.DEVNULL)
    print(f"catalog: {CATALOG_SIZE} entries added in {time.perf_counter() - t0:.1f} s "
          f"({CATALOG_SIZE // 2} of the scanned shape, {CATALOG_SIZE // 2} from {len(small)} small models)")
    return catalog


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/var/tmp/modelprov-bench-signals")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build/cli/modelprov"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--compares", type=int, default=50)
    ap.add_argument("--only", choices=("fingerprint", "compare", "scan"), action="append",
                    help="run only these parts (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    args = ap.parse_args()
    parts = set(args.only or ("fingerprint", "compare", "scan"))
    os.makedirs(args.dir, exist_ok=True)
    mp = args.bin
    rows = []

    a = make_big(os.path.join(args.dir, "big-a"), 1)
    weights = os.path.join(a, "model.safetensors")
    size = os.path.getsize(weights)
    print(f"machine: {os.cpu_count()} CPUs; {'SHA-NI' if 'sha_ni' in open('/proc/cpuinfo').read() else 'no SHA-NI'}")
    print(f"model: {size / GiB:.2f} GiB BF16, hidden 2048, vocab 32000")

    if "fingerprint" in parts:
        warm(weights)
        t_ssl = best(["openssl", "dgst", "-sha256", weights], args.repeat)
        t_fp = best([mp, "fingerprint", "-q", "--jobs", "1", "-o", os.path.join(args.dir, "tmp.fp"), a],
                    args.repeat)
        rows += [("openssl dgst -sha256 (2 GiB)", t_ssl, "", ""),
                 ("fingerprint --jobs 1 (2 GiB)", t_fp, f"{t_fp / t_ssl:.3f} x openssl", "<= 1.30")]

    fa = fp_b = None
    if parts & {"compare", "scan"}:
        fa = fingerprint(mp, a, os.path.join(args.dir, "big-a.fp"))
        b = make_big(os.path.join(args.dir, "big-b"), 2)
        fp_b = fingerprint(mp, b, os.path.join(args.dir, "big-b.fp"))
        print(f"records: {os.path.getsize(fa)} and {os.path.getsize(fp_b)} bytes")

    if "compare" in parts:
        t_ver = median([mp, "--version"], args.compares)
        t_cmp = median([mp, "compare", "--json", fa, fp_b], args.compares)
        rows += [("modelprov --version (process start)", t_ver, "", ""),
                 ("compare --json a.fp b.fp", t_cmp, f"{(t_cmp - t_ver) * 1e3:.2f} ms over start", "<= 5 ms")]

    if "scan" in parts:
        catalog = build_catalog(mp, args.dir, fp_b)
        n = max(5, args.compares // 5)
        t_scan = median([mp, "scan", fa, "--catalog", catalog, "--json"], n)
        t_all = median([mp, "scan", fa, "--catalog", catalog, "--json", "--all-buckets"], n)
        rows += [(f"scan a.fp, {CATALOG_SIZE}-entry catalog", t_scan, "size pre-filter on", "<= 200 ms"),
                 (f"scan a.fp, {CATALOG_SIZE}-entry, --all-buckets", t_all, "every entry scored", "")]

    print(f"\n{'benchmark':<40} {'time':>11}  {'ratio / note':<24} {'target'}")
    for name, t, note, target in rows:
        shown = f"{t:8.3f} s " if t >= 1 else f"{t * 1e3:8.2f} ms"
        print(f"{name:<40} {shown:>11}  {note:<24} {target}")

    if not args.keep:
        shutil.rmtree(args.dir)


if __name__ == "__main__":
    main()
