#!/usr/bin/env python3
"""`modelprov catalog add|list|remove|import` and `modelprov scan`: importing
the reference project's database (../shared/provenancekit-db), a catalog of
the zoo's base models with labels, scans that must name the right base first,
metadata-only entries that never match on their own, and the errors (usage,
not a catalog, duplicate names)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

BIN = os.environ.get("MODELPROV_BIN", "build/cli/modelprov")
ZOO = os.environ.get("MODELPROV_ZOO", "../shared/zoo")
PK_DB = os.path.join(ZOO, "..", "provenancekit-db")
HAVE_ZOO = os.path.isdir(ZOO)
HAVE_PK_DB = os.path.isfile(os.path.join(PK_DB, "catalog", "manifest.json"))
if not HAVE_ZOO or not HAVE_PK_DB:
    print(f"zoo or provenancekit-db missing beside {ZOO}; their tests are skipped", file=sys.stderr)
    if os.environ.get("MODELPROV_REQUIRE_ZOO") == "1":
        sys.exit("MODELPROV_REQUIRE_ZOO=1 and the zoo or provenancekit-db is missing")

VERDICTS = {"Confirmed Match", "High-Confidence Match", "Weak Match", "Not Matched"}
METADATA_ONLY = "metadata only (no weights in catalog entry)"
BASES = [f"{fam}/base-{i}" for fam in ("llama", "gpt2") for i in range(1, 5)]


def run(*args, check_rc=None):
    p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300)
    if check_rc is not None and p.returncode != check_rc:
        raise AssertionError(f"{args}: exit {p.returncode}, stdout: {p.stdout}, stderr: {p.stderr}")
    return p


def pk_db_assets():
    """Names of the DB's assets whose feature file exists, read independently."""
    with open(os.path.join(PK_DB, "catalog", "manifest.json")) as f:
        manifest = json.load(f)
    names = []
    for shard in manifest["shards"]:
        with open(os.path.join(PK_DB, shard["shard_path"])) as f:
            for a in json.load(f)["assets"]:
                if os.path.isfile(os.path.join(PK_DB, a["feature_path"])):
                    names.append(a.get("canonical_name") or a["model_id"])
    return names


class UsageTest(unittest.TestCase):
    def test_help_and_usage_errors(self):
        for args in (("catalog", "--help"), ("catalog", "add", "--help"), ("scan", "--help")):
            p = run(*args, check_rc=0)
            self.assertIn("usage: modelprov", p.stdout)
        for args in (("catalog",), ("catalog", "bogus", "x"), ("catalog", "list"),
                     ("catalog", "remove", "only-one"), ("catalog", "add", "cat.db"),
                     ("scan", "model"), ("scan", "--catalog", "x.db"),
                     ("scan", "--catalog", "x.db", "--top-k", "0", "m"),
                     ("scan", "--catalog", "x.db", "--top-k", "-3", "m"),
                     ("scan", "--catalog", "x.db", "--threshold", "1.5", "m"),
                     ("scan", "--catalog", "x.db", "--threshold", "nan", "m")):
            with self.subTest(args=args):
                p = run(*args, check_rc=2)
                self.assertIn("modelprov", p.stderr)

    def test_not_a_catalog(self):
        with tempfile.TemporaryDirectory() as tmp:
            txt = os.path.join(tmp, "notes.txt")
            with open(txt, "w") as f:
                f.write("just some text, not a database at all; long enough for a header check\n" * 4)
            for args in (("catalog", "list", txt), ("catalog", "remove", txt, "x"),
                         ("catalog", "import", txt, PK_DB), ("scan", "--catalog", txt, txt)):
                with self.subTest(args=args):
                    p = run(*args, check_rc=2)
                    self.assertIn("not a modelprov catalog", p.stderr)
            with open(txt) as f:
                self.assertTrue(f.read().startswith("just some text"))  # untouched
            p = run("catalog", "list", os.path.join(tmp, "missing.db"), check_rc=2)
            self.assertIn("missing.db", p.stderr)
            self.assertFalse(os.path.exists(os.path.join(tmp, "missing.db")))  # list does not create

    def test_import_of_a_directory_that_is_not_a_database(self):
        with tempfile.TemporaryDirectory() as tmp:
            p = run("catalog", "import", os.path.join(tmp, "c.db"), tmp, check_rc=2)
            self.assertIn("not a provenancekit database", p.stderr)


@unittest.skipUnless(HAVE_PK_DB, "provenancekit-db missing")
class ImportTest(unittest.TestCase):
    def test_import_loads_every_base_model(self):
        expected = pk_db_assets()
        self.assertGreaterEqual(len(expected), 150)
        with tempfile.TemporaryDirectory() as tmp:
            cat = os.path.join(tmp, "pk.db")
            for _ in range(2):      # importing twice replaces: same result
                p = run("catalog", "import", cat, PK_DB, check_rc=0)
                self.assertIn(f"imported {len(expected)}, skipped 0", p.stdout)
                self.assertEqual(p.stderr, "")
            entries = json.loads(run("catalog", "list", "--json", cat, check_rc=0).stdout)
            self.assertEqual(sorted(e["name"] for e in entries), sorted(expected))
            for e in entries:
                self.assertEqual(e["source"], "provenancekit")
                self.assertFalse(e["has_weights"])
                self.assertIn(e["param_bucket"], {"<=1B", "1-10B", "10-40B", "40B+"})
                self.assertEqual(set(e["labels"]), {"family", "publisher"})
                self.assertEqual(len(e["arch_hash"]), 64)
            yi = next(e for e in entries if e["name"] == "Yi-1.5-6B")
            self.assertEqual(yi["labels"], {"family": "01ai--yi", "publisher": "01-ai"})
            self.assertEqual(yi["param_bucket"], "1-10B")

            table = run("catalog", "list", cat, check_rc=0).stdout
            self.assertIn("Yi-1.5-6B", table)
            self.assertIn(f"{len(expected)} entries", table)


@unittest.skipUnless(HAVE_ZOO, "zoo missing")
class ZooCatalogTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()
        cls.cat = os.path.join(cls.tmp, "zoo.db")
        for name in BASES:
            family = name.split("/")[0]
            run("catalog", "add", "-q", cls.cat, os.path.join(ZOO, name), "--name", name,
                "--label", f"family={family}", "--label", "license=zoo", check_rc=0)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def scan(self, model, *extra, cat=None):
        p = run("scan", "-q", os.path.join(ZOO, model), "--catalog", cat or self.cat, "--json", *extra,
                check_rc=0)
        return json.loads(p.stdout)

    def test_list_shows_labels(self):
        entries = json.loads(run("catalog", "list", "--json", self.cat, check_rc=0).stdout)
        self.assertEqual(sorted(e["name"] for e in entries), sorted(BASES))
        for e in entries:
            self.assertEqual(e["labels"], {"family": e["name"].split("/")[0], "license": "zoo"})
            self.assertTrue(e["has_weights"])
            self.assertEqual(e["source"], "local")
            self.assertEqual(e["param_bucket"], "<=1B")
            self.assertEqual(len(e["model_digest"]), 64)
        table = run("catalog", "list", self.cat, check_rc=0).stdout
        self.assertIn("llama/base-1", table)
        self.assertIn("family=llama,license=zoo", table)

    def test_scan_names_the_right_base_first(self):
        # These need real compare scores (lib/compare); with the placeholder
        # compare every score is NaN and nothing reaches the threshold.
        for model, base in (("llama/sft-light", "llama/base-1"), ("gpt2/base-1-q8_0", "gpt2/base-1"),
                            ("llama/base-1-q4_0", "llama/base-1"), ("gpt2/sft-light", "gpt2/base-1"),
                            ("llama/base-1-gguf-f16", "llama/base-1"), ("gpt2/base-1-pt", "gpt2/base-1")):
            with self.subTest(model=model):
                matches = self.scan(model)
                self.assertGreaterEqual(len(matches), 1, f"{model}: no match")
                first = matches[0]
                self.assertEqual(first["name"], base)
                self.assertEqual(first["rank"], 1)
                self.assertIn(first["verdict"], {"Confirmed Match", "High-Confidence Match"})
                self.assertEqual(first["labels"]["family"], base.split("/")[0])
                self.assertEqual(first["evidence"], "weights")
                # No other base of the zoo is a match.
                for m in matches[1:]:
                    self.assertNotIn(m["verdict"], {"Confirmed Match", "High-Confidence Match"})

    def test_scan_json_contract(self):
        matches = self.scan("llama/base-1", "--top-k", "8", "--threshold", "0")
        self.assertEqual(len(matches), 8)           # every entry passes threshold 0
        self.assertEqual([m["rank"] for m in matches], list(range(1, 9)))
        for m in matches:
            self.assertIn(m["verdict"], VERDICTS)
            for k in ("pipeline_score", "identity_score", "tokenizer_score"):
                self.assertIn(k, m)
                self.assertTrue(m[k] is None or 0 <= m[k] <= 1)
            self.assertIsInstance(m["relation"], str)
            self.assertIsInstance(m["signals"], dict)
            self.assertEqual(m["source"], "local")
        # The model itself is in the catalog: it comes first.
        self.assertEqual(matches[0]["name"], "llama/base-1")
        self.assertEqual(self.scan("llama/base-1", "--top-k", "2", "--threshold", "0")[:2],
                         matches[:2])

    def test_scan_of_a_fingerprint_file_equals_scan_of_the_model(self):
        fp = os.path.join(self.tmp, "sft.fp")
        run("fingerprint", "-q", "-o", fp, os.path.join(ZOO, "llama/sft-light"), check_rc=0)
        p = run("scan", fp, "--catalog", self.cat, "--json", "--threshold", "0", "--top-k", "8", check_rc=0)
        self.assertEqual(json.loads(p.stdout), self.scan("llama/sft-light", "--threshold", "0", "--top-k", "8"))

    def test_table_output(self):
        p = run("scan", "-q", os.path.join(ZOO, "gpt2/base-2"), "--catalog", self.cat, "--threshold", "0",
                check_rc=0)
        header = p.stdout.splitlines()[0].split()
        self.assertEqual(header[:7], ["RANK", "NAME", "VERDICT", "IDENTITY", "PIPELINE", "TOKENIZER", "RELATION"])
        self.assertIn("8 of 8 catalog entries compared", p.stdout)
        # Threshold 1 with a model that is not in the catalog: a clean "no match", exit 0.
        p = run("scan", "-q", os.path.join(ZOO, "gpt2/base-sametok"), "--catalog", self.cat, "--threshold", "1",
                check_rc=0)
        self.assertIn("no match", p.stdout)

    def test_add_replace_remove(self):
        cat = os.path.join(self.tmp, "edit.db")
        model = os.path.join(ZOO, "gpt2/base-1")
        fp = os.path.join(self.tmp, "g.fp")
        run("fingerprint", "-q", "-o", fp, model, check_rc=0)

        self.assertIn("added 'g'", run("catalog", "add", "-q", cat, model, "--name", "g", check_rc=0).stdout)
        p = run("catalog", "add", cat, fp, "--name", "g", check_rc=2)
        self.assertIn("already exists", p.stderr)
        p = run("catalog", "add", cat, fp, "--name", "g", "--replace", "--label", "tier=gold", check_rc=0)
        self.assertIn("replaced 'g'", p.stdout)
        # From the record file: same digest as from the model; the default name is the model's.
        run("catalog", "add", cat, fp, check_rc=0)
        entries = {e["name"]: e for e in json.loads(run("catalog", "list", "--json", cat, check_rc=0).stdout)}
        self.assertEqual(set(entries), {"g", "base-1"})
        self.assertEqual(entries["g"]["labels"], {"tier": "gold"})
        self.assertEqual(entries["g"]["model_digest"], entries["base-1"]["model_digest"])

        for bad in ("novalue", "=x", "bad key=x"):
            with self.subTest(label=bad):
                run("catalog", "add", cat, fp, "--name", "h", "--label", bad, check_rc=2)

        self.assertIn("removed 'g'", run("catalog", "remove", cat, "g", check_rc=0).stdout)
        p = run("catalog", "remove", cat, "g", check_rc=2)
        self.assertIn("no entry named 'g'", p.stderr)
        names = [e["name"] for e in json.loads(run("catalog", "list", "--json", cat, check_rc=0).stdout)]
        self.assertEqual(names, ["base-1"])

    @unittest.skipUnless(HAVE_PK_DB, "provenancekit-db missing")
    def test_metadata_only_entries_never_match_on_their_own(self):
        cat = os.path.join(self.tmp, "mixed.db")
        shutil.copy(self.cat, cat)
        run("catalog", "import", cat, PK_DB, check_rc=0)
        matches = self.scan("llama/sft-light", "--threshold", "0", "--top-k", "200", "--all-buckets", cat=cat)
        self.assertEqual(len(matches), len(BASES) + len(pk_db_assets()))
        self.assertEqual(matches[0]["name"], "llama/base-1")
        imported = [m for m in matches if m["source"] == "provenancekit"]
        self.assertEqual(len(imported), len(pk_db_assets()))
        for m in imported:
            self.assertFalse(m["has_weights"])
            self.assertEqual(m["evidence"], METADATA_ONLY)
            self.assertIn(m["verdict"], {"Weak Match", "Not Matched"})
        p = run("scan", "-q", os.path.join(ZOO, "llama/base-1"), "--catalog", cat, "--threshold", "0",
                "--top-k", "200", check_rc=0)
        self.assertIn(METADATA_ONLY, p.stdout)
        # The size pre-filter: a tiny model is not compared with 10B+ entries.
        self.assertNotIn("40B+", p.stdout)
        filtered = self.scan("llama/sft-light", "--threshold", "0", "--top-k", "200", cat=cat)
        self.assertLess(len(filtered), len(matches))
        self.assertNotIn("10-40B", {m["param_bucket"] for m in filtered})


if __name__ == "__main__":
    unittest.main(verbosity=2)
