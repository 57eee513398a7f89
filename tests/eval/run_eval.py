#!/usr/bin/env python3
"""Evaluation harness: `modelprov compare` over every pair of a pairs file
(../shared/zoo/pairs.json), scored against the labels.

  run_eval.py PAIRS_JSON [--bin PATH] [--cache DIR] [--reuse] [--json OUT] [--jobs N] [--voa]

Every model folder named in the pairs file (paths relative to the file's
directory) is fingerprinted once (`modelprov fingerprint -q -o`), then each
pair is compared from the two stored records (`modelprov compare --json`),
which is what users do with a catalog.  A pair is "matched" when the verdict
is Confirmed Match or High-Confidence Match (a Weak Match is not a match).

Prints a table per (label, category, difficulty): pairs, correct, missed
(linked, not matched), false matches (independent, matched), the lowest
identity score of a linked pair and the highest of an independent pair; the
ambiguous-shared-init pairs are listed with their verdicts, not scored.  Then
the hard pairs one by one, the relation hints of the quantization pairs, and,
when compare reports them (details.voa_exact / voa_sketch), exact against
sketched vocabulary overlap; records carry only the sketch, so --voa also
compares every pair by model paths to get the exact value.

Exit status 1 (a "failure") when an independent pair is matched, an easy or
medium linked pair is not matched, a GGUF Q4_0/Q8_0 model compared with its
unquantized source does not get the relation "quantized copy", or compare
breaks its --json contract or fails; 0 otherwise.  When the pairs file does
not exist: exit 77 (meson's "skipped"), or 1 with MODELPROV_REQUIRE_ZOO=1.
--json OUT writes every pair's full compare JSON with its labels, for
calibration.  Standard library only."""
import argparse
import concurrent.futures
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SKIP = 77

VERDICTS = ("Confirmed Match", "High-Confidence Match", "Weak Match", "Not Matched")
MATCHED = VERDICTS[:2]
LABELS = ("linked", "independent", "ambiguous-shared-init")
DIFFICULTIES = ("easy", "medium", "hard")
SCORES = ("pipeline_score", "identity_score", "tokenizer_score")
QUANTIZED = re.compile(r"q[48]_0", re.IGNORECASE)


def load_json(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"eval: cannot read {what} {path}: {e}")


def load_pairs(path):
    pairs = load_json(path, "pairs file")
    if not isinstance(pairs, list):
        sys.exit(f"eval: {path}: expected a JSON list of pairs")
    for i, p in enumerate(pairs):
        ok = isinstance(p, dict) and all(isinstance(p.get(k), str) for k in ("a", "b", "label", "category"))
        if not ok or p["label"] not in LABELS:
            sys.exit(f"eval: {path}: pair {i} is not {{a, b, label ({'|'.join(LABELS)}), category, difficulty}}")
        p.setdefault("difficulty", "unknown")
    return pairs


def model_formats(zoo):
    """folder -> format string from models.json next to the pairs file, if any."""
    path = os.path.join(zoo, "models.json")
    if not os.path.exists(path):
        return {}
    models = load_json(path, "models file")
    if not isinstance(models, list):
        return {}
    return {m["folder"]: m.get("format", "") for m in models if isinstance(m, dict) and "folder" in m}


def is_quantized(folder, formats):
    return bool(QUANTIZED.search(formats.get(folder) or folder))


def safe_name(folder):
    """A cache file name per folder; distinct folders give distinct names."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", folder.strip("/").replace("/", "__"))


def fingerprint(mp, model, out):
    t0 = time.monotonic()
    p = subprocess.run([mp, "fingerprint", "-q", "--jobs", "1", "-o", out, model],
                       capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        return None, f"fingerprint exited {p.returncode}: {p.stderr.strip()[:300]}"
    return time.monotonic() - t0, None


def check_contract(j):
    """Problems with compare's --json contract (empty list when it holds)."""
    if not isinstance(j, dict):
        return ["output is not a JSON object"]
    bad = []
    if j.get("verdict") not in VERDICTS:
        bad.append(f"verdict {j.get('verdict')!r} is not one of {VERDICTS}")
    for k in SCORES:
        v = j.get(k, "missing")
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            bad.append(f"{k} is {v!r}, not a number in [0, 1] or null")
    if not isinstance(j.get("relation"), str):
        bad.append(f"relation is {j.get('relation')!r}, not a string")
    sig = j.get("signals")
    if not isinstance(sig, dict) or not sig:
        bad.append("signals is not a non-empty object")
    else:
        for name, v in sig.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                bad.append(f"signals.{name} is {v!r}, not a finite number or null")
    return bad


def compare(mp, fa, fb):
    """(compare JSON, seconds, error)."""
    t0 = time.monotonic()
    p = subprocess.run([mp, "compare", "--json", fa, fb], capture_output=True, text=True, timeout=300)
    dt = time.monotonic() - t0
    if p.returncode not in (0, 1):
        return None, dt, f"compare exited {p.returncode}: {p.stderr.strip()[:300]}"
    try:
        j = json.loads(p.stdout)
    except ValueError as e:
        return None, dt, f"compare --json printed no JSON ({e}): {p.stdout.strip()[:200]!r}"
    bad = check_contract(j)
    if bad:
        return j, dt, "contract: " + "; ".join(bad)
    return j, dt, None


def fmt(x, width=6):
    return f"{x:{width}.3f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else f"{'-':>{width}}"


def score(r):
    """Adds r['matched'], r['correct'], r['failure'] (a reason or None)."""
    j, label, diff = r["compare"], r["label"], r["difficulty"]
    r["matched"] = bool(j) and not r["error"] and j["verdict"] in MATCHED
    r["correct"] = False if r["error"] else (r["matched"] == (label == "linked"))
    r["failure"] = None
    if label == "ambiguous-shared-init":
        return
    if r["error"]:
        r["failure"] = r["error"]
    elif label == "independent" and r["matched"]:
        r["failure"] = f"independent pair matched ({j['verdict']})"
    elif label == "linked" and diff in ("easy", "medium") and not r["matched"]:
        r["failure"] = f"{diff} linked pair not matched ({j['verdict']})"
    elif r["quant_source"] and j["relation"] != "quantized copy":
        r["failure"] = f"quantized copy of its source, relation {j['relation']!r}"


def identity(r):
    j = r["compare"]
    v = j.get("identity_score") if j and not r["error"] else None
    return v if isinstance(v, (int, float)) else None


def print_table(results):
    groups = {}
    for r in results:
        if r["label"] != "ambiguous-shared-init":
            groups.setdefault((r["label"], r["category"], r["difficulty"]), []).append(r)
    order = {d: i for i, d in enumerate(DIFFICULTIES)}
    print(f"{'label':<12} {'category':<27} {'diff':<6} {'pairs':>5} {'correct':>7} {'missed':>6} "
          f"{'false':>5} {'min linked':>10} {'max indep':>9}")
    totals = {}
    for key in sorted(groups, key=lambda k: (k[0], k[1], order.get(k[2], 9))):
        rs = groups[key]
        linked = [identity(r) for r in rs if r["label"] == "linked"]
        indep = [identity(r) for r in rs if r["label"] == "independent"]
        missed = sum(1 for r in rs if r["label"] == "linked" and not r["matched"])
        false = sum(1 for r in rs if r["label"] == "independent" and r["matched"])
        correct = sum(r["correct"] for r in rs)
        lo = min((v for v in linked if v is not None), default=None)
        hi = max((v for v in indep if v is not None), default=None)
        print(f"{key[0]:<12} {key[1]:<27} {key[2]:<6} {len(rs):>5} {correct:>7} {missed:>6} {false:>5} "
              f"{fmt(lo, 10)} {fmt(hi, 9)}")
        t = totals.setdefault((key[0], key[2]), [0, 0, 0, 0, [], []])
        t[0] += len(rs)
        t[1] += correct
        t[2] += missed
        t[3] += false
        t[4] += [v for v in linked if v is not None]
        t[5] += [v for v in indep if v is not None]
    print()
    print(f"{'label':<12} {'difficulty':<34} {'pairs':>5} {'correct':>7} {'missed':>6} {'false':>5} "
          f"{'min linked':>10} {'max indep':>9}")
    for key in sorted(totals, key=lambda k: (k[0], order.get(k[1], 9))):
        n, c, m, f, lk, ind = totals[key]
        print(f"{key[0]:<12} {key[1]:<34} {n:>5} {c:>7} {m:>6} {f:>5} "
              f"{fmt(min(lk, default=None), 10)} {fmt(max(ind, default=None), 9)}")


def verdict_of(r):
    if r["error"] and not r["compare"]:
        return "ERROR"
    return r["compare"]["verdict"] if r["compare"] else "ERROR"


def print_pairs(title, rs, extra=None):
    if not rs:
        return
    print(f"\n{title}")
    for r in rs:
        j = r["compare"] or {}
        rel = j.get("relation") if isinstance(j.get("relation"), str) else "-"
        line = (f"  {r['a']:<28} {r['b']:<28} {r['category']:<26} {verdict_of(r):<21} "
                f"id {fmt(identity(r))}  {rel}")
        if extra:
            line += extra(r)
        if r["failure"]:
            line += "   <-- FAIL"
        print(line)


def voa_pair(j):
    """(exact, sketch) vocabulary Jaccard from compare's details, or None."""
    d = (j or {}).get("details")
    if not isinstance(d, dict):
        return None
    exact, sketch = d.get("voa_exact"), d.get("voa_sketch")
    if isinstance(exact, (int, float)) and isinstance(sketch, (int, float)):
        return exact, sketch
    return None


def add_exact_voa(mp, zoo, results):
    """Records carry the vocabulary sketch only; compare by model paths (which
    reads the tokenizers) once per model pair for the exact overlap."""
    done = {}
    for r in results:
        if r["compare"] and not voa_pair(r["compare"]):
            key = (r["a"], r["b"])
            if key not in done:
                j, _, err = compare(mp, os.path.join(zoo, r["a"]), os.path.join(zoo, r["b"]))
                done[key] = None if err else voa_pair(j)
            r["voa_by_path"] = done[key]


def print_voa(results):
    rows = []
    for r in results:
        v = voa_pair(r["compare"]) or r.get("voa_by_path")
        if v:
            rows.append((r, v[0], v[1]))
    if not rows:
        return
    seen, errs = set(), []
    print("\nvocabulary overlap, exact Jaccard vs sketch estimate (distinct model pairs)")
    for r, exact, sketch in rows:
        key = (r["a"], r["b"])
        if key in seen:
            continue
        seen.add(key)
        errs.append(abs(exact - sketch))
    print(f"  pairs {len(errs)}, mean |error| {statistics.fmean(errs):.4f}, max |error| {max(errs):.4f}")
    for r, exact, sketch in sorted(rows, key=lambda t: -abs(t[1] - t[2]))[:8]:
        print(f"  {r['a']:<28} {r['b']:<28} exact {exact:.4f} sketch {sketch:.4f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs")
    ap.add_argument("--bin", default=os.environ.get("MODELPROV_BIN", os.path.join(ROOT, "build/cli/modelprov")))
    ap.add_argument("--cache", help="directory for the fingerprint records (default: a temp dir)")
    ap.add_argument("--reuse", action="store_true", help="reuse records already in --cache")
    ap.add_argument("--json", dest="json_out", help="write every pair's compare JSON here")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="fingerprints run in parallel")
    ap.add_argument("--voa", action="store_true",
                    help="also compare every pair by model paths for exact vs sketched vocabulary overlap")
    args = ap.parse_args()

    if not os.path.isfile(args.pairs):
        print(f"eval: zoo missing: {args.pairs} does not exist; nothing evaluated")
        return 1 if os.environ.get("MODELPROV_REQUIRE_ZOO") == "1" else SKIP
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"eval: {args.bin} is not an executable modelprov (build it, or pass --bin)")
    zoo = os.path.dirname(os.path.abspath(args.pairs))
    pairs = load_pairs(args.pairs)
    formats = model_formats(zoo)

    tmp = None
    cache = args.cache
    if cache:
        os.makedirs(cache, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="modelprov-eval-")
        cache = tmp.name

    folders = sorted({p[k] for p in pairs for k in ("a", "b")})
    names = {f: safe_name(f) for f in folders}
    if len(set(names.values())) != len(folders):
        sys.exit("eval: two model folders map to one cache name")
    records = {f: os.path.join(cache, names[f] + ".fp") for f in folders}
    fp_error, fp_time = {}, {}
    todo = [f for f in folders if not (args.reuse and os.path.isfile(records[f]))]
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as ex:
        futs = {ex.submit(fingerprint, args.bin, os.path.join(zoo, f), records[f]): f for f in todo}
        for fut in concurrent.futures.as_completed(futs):
            fp_time[futs[fut]], err = fut.result()
            if err:
                fp_error[futs[fut]] = err
    t_fp = time.monotonic() - t0

    results, t_cmp = [], []
    for p in pairs:
        r = dict(p)
        qa, qb = is_quantized(p["a"], formats), is_quantized(p["b"], formats)
        r["quant_source"] = p["category"] == "quantization" and qa != qb
        bad = [f"{f}: {fp_error[f]}" for f in (p["a"], p["b"]) if f in fp_error]
        if bad:
            r["compare"], r["error"] = None, "; ".join(bad)
        else:
            r["compare"], dt, r["error"] = compare(args.bin, records[p["a"]], records[p["b"]])
            t_cmp.append(dt)
        score(r)
        results.append(r)

    print(f"eval: {len(pairs)} pairs over {len(folders)} models from {args.pairs}")
    print(f"fingerprinted {len(todo)} models in {t_fp:.1f} s ({args.jobs} at a time); "
          f"compare median {statistics.median(t_cmp) * 1000 if t_cmp else float('nan'):.1f} ms per pair\n")
    print_table(results)

    print_pairs("ambiguous-shared-init pairs (reported, not scored)",
                [r for r in results if r["label"] == "ambiguous-shared-init"])
    print_pairs("hard pairs", [r for r in results if r["difficulty"] == "hard"
                               and r["label"] != "ambiguous-shared-init"])
    print_pairs("quantization pairs (relation hints; 'quantized copy' required where one side is its "
                "unquantized source: *)", [r for r in results if r["category"] == "quantization"],
                extra=lambda r: "  *" if r["quant_source"] else "")
    if args.voa:
        add_exact_voa(args.bin, zoo, results)
    print_voa(results)

    hard = [r for r in results if r["label"] == "linked" and r["difficulty"] == "hard"]
    if hard:
        by_cat = {}
        for r in hard:
            c = by_cat.setdefault(r["category"], [0, 0])
            c[0] += r["matched"]
            c[1] += 1
        print(f"\nhard linked pairs detected: {sum(r['matched'] for r in hard)} of {len(hard)} ("
              + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(by_cat.items())) + ")")

    failures = [r for r in results if r["failure"]]
    if failures:
        print("\nfailures")
        for r in failures:
            print(f"  {r['a']} vs {r['b']} ({r['label']}/{r['category']}/{r['difficulty']}): {r['failure']}")

    if args.json_out:
        keep = ("a", "b", "label", "category", "difficulty", "compare", "error", "matched", "failure")
        with open(args.json_out, "w") as f:
            json.dump([{k: r[k] for k in keep} for r in results], f, indent=1)

    scored = sum(1 for r in results if r["label"] != "ambiguous-shared-init")
    print(f"\neval: {scored} scored pairs, {len(failures)} failures")
    if tmp:
        tmp.cleanup()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
