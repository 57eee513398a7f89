#!/usr/bin/python3
"""`modelprov report inventory|blast-radius` against a real
`modelprov-collector` on loopback.

Simulated hosts (collector_env.py) report zoo models (generated ones when
../shared/zoo is missing, said plainly): a catalog base model, exact copies
of it, fine-tunes with the catalog matches `modelprov scan` really finds, an
unrelated model with no catalog match (grouped by family), a finding, a
stale host, and a hostile host whose hostname, model path and catalog match
carry markup, quotes, ampersands, a newline, "]]>" and unicode.  Both
reports are written as HTML, Markdown and CSV and checked against what was
reported: totals, groups, host table, highlighted graph nodes, the affected
table; the hostile text must show up as text and never as markup.  Then
headless Chromium renders both pages to PNG screenshots (kept under the
build directory as CI artifacts) and its DOM dump must hold the graph with
its nodes and no console message (a script, or anything the page's
Content-Security-Policy refused, would log one)."""
import csv
import glob
import html.parser
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import collector_env as env  # noqa: E402

pb, rpc = env.load_stubs()

BIN = env.BIN
HAVE_ZOO = env.require_zoo_rule()
STALE_AFTER_S = 6
# Under the sanitizers: Graphviz's and fontconfig's caches are not our leaks.
LSAN_SUPPRESSIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lsan-graphviz.supp")
SVG_NS = "{http://www.w3.org/2000/svg}"

HOSTILE_HOST = "=evil<script>alert('host')</script>&amp;\"x\""
HOSTILE_PATH = "/models/<script>alert(1)</script>\"'&.safetensors"
HOSTILE_PATH2 = "/models/na\u00efve\n]]><img src=x onerror=alert(3)>\u202e&lt;.bin"
HOSTILE_ENTRY = "evil</title><script>alert(2)</script> javascript:x onclick=y"
HOSTILE_FINDING = "<b onmouseover=alert(4)>pwn</b> ]]> & \"q\""

# Zoo models (folder) or generated stand-ins; "base" is the catalog entry
# the blast radius is asked about.
ZOO_MODELS = {"base": "llama/base-1", "sft": "llama/sft-light", "lora": "llama/lora-merged",
              "other": "llama/base-2", "gbase": "gpt2/base-1", "gsft": "gpt2/sft-light"}
CATALOG = {"base": "llama-base-1", "gbase": "gpt2-base-1"}


class Fleet:
    """Records of the fleet's models and their real catalog matches."""

    def __init__(self, tmp):
        if HAVE_ZOO:
            dirs = {k: os.path.join(env.ZOO, v) for k, v in ZOO_MODELS.items()}
        else:
            common = ("--hidden", "64", "--layers", "2", "--vocab", "512")
            g = lambda name, *a: env.make_model(os.path.join(tmp, name), *a)  # noqa: E731
            dirs = {"base": g("base", *common, "--seed", "11"), "other": g("other", *common, "--seed", "12"),
                    "gbase": g("gbase", "--hidden", "96", "--layers", "3", "--vocab", "700", "--seed", "13")}
            dirs["sft"] = env.perturb_model(dirs["base"], os.path.join(tmp, "sft"), seed=5)
            dirs["lora"] = env.perturb_model(dirs["base"], os.path.join(tmp, "lora"), seed=6)
            dirs["gsft"] = env.perturb_model(dirs["gbase"], os.path.join(tmp, "gsft"), seed=7)
        self.records = env.fingerprint_many(dirs, os.path.join(tmp, "records"))
        self.fp = {k: pb.Fingerprint.FromString(v) for k, v in self.records.items()}
        self.hex = {k: v.model_digest.hex() for k, v in self.fp.items()}
        self.paths = {}
        for k, rec in self.records.items():
            self.paths[k] = os.path.join(tmp, "records", k + ".fp")
            with open(self.paths[k], "wb") as f:
                f.write(rec)
        self.catalog = os.path.join(tmp, "catalog.db")
        for k, name in CATALOG.items():
            env.catalog_add(self.catalog, self.paths[k], name)
        # What an agent's scan finds: the best catalog match of each model.
        self.matches = {}
        for k in self.records:
            p = subprocess.run([BIN, "scan", "-q", self.paths[k], "--catalog", self.catalog, "--json", "--top-k", "1"],
                               capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, p.stderr
            top = json.loads(p.stdout)
            if top:
                self.matches[k] = top[0]


def texts(svg_group):
    return " ".join("".join(t.itertext()) for t in svg_group.iter(SVG_NS + "text"))


class Page(html.parser.HTMLParser):
    """Tags, attributes and text of an HTML page, as a browser tokenizes it."""

    def __init__(self, data):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs, self.text = [], [], []
        self.feed(data)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_data(self, data):
        self.text.append(data)


class ReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cli-report-")
        cls.fleet = Fleet(cls.tmp)
        cls.collector = env.Collector(os.path.join(cls.tmp, "collector"),
                                      extra_args=["--stale-after", str(STALE_AFTER_S)]).start()
        cls.report_fleet()
        cls.out = os.path.join(cls.tmp, "out")
        os.makedirs(cls.out)
        cls.reports = {}
        for kind, args in (("inventory", ["inventory"]), ("incident", ["blast-radius", CATALOG["base"]]),
                           ("by-digest", ["blast-radius", cls.fleet.hex["base"]])):
            for fmt in ("html", "md", "csv"):
                path = os.path.join(cls.out, f"{kind}.{fmt}")
                cls.keep_fresh()
                p = cls.run_report(*args, "-o", path, "--format", fmt)
                assert p.returncode == 0, f"report {args} {fmt}: exit {p.returncode}: {p.stderr}"
                assert p.stdout == "", p.stdout
                with open(path, encoding="utf-8", newline="") as f:
                    cls.reports[kind, fmt] = f.read()

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "channel", None):
            cls.channel.close()
        rc = cls.collector.stop()
        log = cls.collector.log()
        shutil.rmtree(cls.tmp)
        if rc != 0:
            raise AssertionError(f"collector exit status {rc} after SIGTERM; its log:\n{log[-6000:]}")

    @classmethod
    def report_fleet(cls):
        f, c = cls.fleet, cls.collector
        ch = c.channel()
        ev = env.Events()
        cls.agents = {}
        for i, name in enumerate(("gpu-a", "gpu-b", "gpu-c", HOSTILE_HOST, "old-box")):
            a = env.Agent(c, ch, machine_id=f"{i + 1:032x}", hostname=name)
            a.enroll()
            cls.agents[name] = a
        r = f.records

        def match(seq, path, key, entry=None):
            m = f.matches[key]
            return ev.match(seq, path, f.fp[key].model_digest, entry=entry or m["name"], verdict=m["verdict"],
                            score=m["identity_score"], relation=m["relation"])

        cls.agents["gpu-a"].report([ev.batch([
            ev.added(1, "/models/llama-base", r["base"]), ev.added(2, "/models/gpt2", r["gbase"]),
            match(3, "/models/llama-base", "base"), match(4, "/models/gpt2", "gbase")])])
        cls.agents["gpu-b"].report([ev.batch([
            ev.added(1, "/srv/sft", r["sft"]), ev.added(2, "/srv/lora", r["lora"]),
            match(3, "/srv/sft", "sft"), match(4, "/srv/lora", "lora"),
            ev.finding(5, "/srv/lora", detail="os.system, in pickle")])])
        cls.agents["gpu-c"].report([ev.batch([
            ev.added(1, "/data/base-2", r["other"]), ev.added(2, "/data/copy", r["base"]),
            match(3, "/data/copy", "base")])])
        cls.agents[HOSTILE_HOST].report([ev.batch([
            ev.added(1, HOSTILE_PATH, r["gsft"]), ev.added(2, HOSTILE_PATH2, r["gsft"]),
            match(3, HOSTILE_PATH, "gsft", entry=HOSTILE_ENTRY),
            ev.finding(4, HOSTILE_PATH, kind="unsafe-pickle-global", detail=HOSTILE_FINDING)])])
        cls.agents["old-box"].report([ev.batch([ev.added(1, "/opt/sft", r["sft"])])])
        cls.channel = ch        # for keep_fresh()
        # The catalog the agents matched against, for blast radius by entry.
        p = subprocess.run([BIN, "catalog", "push", f.catalog, "--collector", c.target, "--token-file",
                            c.admin_file, "--insecure-loopback"], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        # old-box goes stale; keep_fresh() keeps the others reporting.
        time.sleep(STALE_AFTER_S + 0.5)

    @classmethod
    def keep_fresh(cls):
        for name, a in cls.agents.items():
            if name != "old-box":
                a.heartbeat()

    @classmethod
    def run_report(cls, *args, env_extra=None):
        c = cls.collector
        e = {k: v for k, v in os.environ.items() if not k.startswith("MODELPROV_TOKEN")}
        e["LSAN_OPTIONS"] = "suppressions=" + LSAN_SUPPRESSIONS
        e.update(env_extra or {})
        return subprocess.run([BIN, "report", *args, "--collector", c.target, "--token-file", c.query_file,
                               "--insecure-loopback"], capture_output=True, text=True, timeout=300, env=e)

    # -- helpers

    def svg(self, kind):
        page = self.reports[kind, "html"]
        m = re.search(r"<svg\b.*?</svg>", page, re.S)
        self.assertIsNotNone(m, "no inline SVG")
        return ET.fromstring(m.group(0))

    def nodes(self, kind):
        """{label text: set of classes} of the graph's nodes."""
        out = {}
        for g in self.svg(kind).iter(SVG_NS + "g"):
            cls = g.get("class", "").split()
            if "node" in cls:
                out[texts(g)] = set(cls)
        return out

    def node(self, nodes, *words):
        found = [k for k in nodes if all(w in k for w in words)]
        self.assertEqual(len(found), 1, f"{words} in {list(nodes)}")
        return nodes[found[0]]

    def check_safe_html(self, page):
        p = Page(page)
        self.assertNotIn("script", p.tags)
        self.assertNotIn("img", p.tags)
        self.assertNotIn("iframe", p.tags)
        self.assertNotIn("foreignobject", p.tags)
        for name, value in p.attrs:
            self.assertFalse(name.startswith("on"), (name, value))
            self.assertNotIn("javascript:", (value or "").lower())
        self.assertIn("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                      "style-src 'unsafe-inline'; img-src data:\">", page)
        self.assertNotIn("<?xml", page)
        self.assertNotIn("<!DOCTYPE svg", page)
        self.assertNotIn("http://", re.sub(r'xmlns(:xlink)?="http://www\.w3\.org/[^"]*"', "", page))
        self.assertNotIn("https://", page)
        return "".join(p.text)

    # -- inventory

    def test_inventory_html(self):
        f, page = self.fleet, self.reports["inventory", "html"]
        text = self.check_safe_html(page)
        # Totals: 5 hosts (1 stale); 9 installed; 6 distinct; 2 findings.
        for key, want in (("hosts", 5), ("models", 9), ("weights", 6), ("findings", 2)):
            self.assertRegex(page, rf'<span class="n" id="total-{key}">{want}</span>')
        self.assertIn("1 stale", page)
        # Findings come first, before the totals and the graph.
        self.assertLess(page.index('id="findings"'), page.index('id="totals"'))
        self.assertLess(page.index('id="totals"'), page.index('id="lineage"'))
        self.assertIn("os.system, in pickle", text)
        self.assertIn(HOSTILE_FINDING, text)
        # The file inside the model each finding is about (the agent's
        # Finding.file, kept by the collector).
        self.assertEqual(page.count('<td class="mono">pytorch_model.bin</td>'), 2)
        # Models by base model: the catalog entries with their counts.
        self.assertRegex(text, rf"{CATALOG['base']} \(catalog entry: 3 models, 5 copies on 4 hosts\)")
        self.assertIn(f"{HOSTILE_ENTRY} (catalog entry: 1 model, 2 copies on 1 host)", text)
        if f.matches.get("other"):
            self.fail(f"the unrelated model matched the catalog: {f.matches['other']}")
        self.assertRegex(text, r"family [0-9a-f]{12}.* \(no catalog match: 1 model, 1 copy on 1 host\)")
        # Hosts: stale flags.
        rows = re.findall(r"<tr[^>]*><td>([^<]*)</td><td class=\"mono\">[0-9a-f-]{36}</td>.*?</tr>", page)
        self.assertEqual(len(rows), 5, rows)
        old = re.search(r"<tr[^>]*><td>old-box</td>.*?</tr>", page).group(0)
        self.assertIn("badge stale", old)
        fresh = re.search(r"<tr[^>]*><td>gpu-a</td><td class=\"mono\">.*?</tr>", page).group(0)
        self.assertIn("reporting", fresh)
        # Hostile text is text: the path and hostname read back exactly.
        self.assertIn(HOSTILE_PATH, text)
        self.assertIn(HOSTILE_HOST, text)
        # A newline and a right-to-left override both show as U+FFFD.
        self.assertIn(HOSTILE_PATH2.replace("\n", "\ufffd").replace("\u202e", "\ufffd"), text)
        for (kind, fmt), body in self.reports.items():
            if fmt != "csv":            # CSV is data: the path as it is
                self.assertNotIn("\u202e", body, (kind, fmt))

        # The graph: groups -> models -> hosts, edge labels with relation and
        # score, no highlight in an inventory.
        nodes = self.nodes("inventory")
        self.assertGreaterEqual(len(nodes), 2 + 1 + 6 + 5)
        self.node(nodes, CATALOG["base"], "catalog base model")
        self.node(nodes, "old-box", "(stale)")
        self.node(nodes, "gpu-a")
        self.node(nodes, "alert('host')")        # the hostile host, as text
        # Text that only a tag could make active is no reason to refuse it.
        self.node(nodes, "alert(2)</script> javascript:x onclick=y")
        self.assertFalse(any({"hit", "target"} & c for c in nodes.values()))
        edges = [texts(g) for g in self.svg("inventory").iter(SVG_NS + "g") if "edge" in g.get("class", "")]
        sft = f.matches["sft"]
        self.assertIn(f"{sft['relation']} {sft['identity_score']:.3f}", edges)
        self.assertIn("2 paths", edges)          # the hostile host holds gsft twice

    def test_inventory_markdown(self):
        md = self.reports["inventory", "md"]
        self.assertTrue(md.startswith("# Fleet inventory\n"))
        self.assertLess(md.index("## Findings (2)"), md.index("## Totals"))
        self.assertEqual(md.count(" | pytorch\\_model.bin | "), 2)
        self.assertIn("- Hosts: 5 (1 stale)\n- Models installed: 9\n- Distinct weights: 6\n- Findings: 2\n", md)
        self.assertIn(f"### {CATALOG['base']} (catalog entry: 3 models on 4 hosts)", md)
        self.assertIn("| old-box |", md)
        self.assertIn("| STALE |", md)
        # No raw markup, no line broken by a hostile newline, every table
        # row with its columns.
        self.assertIsNone(re.search(r"(?<!\\)[<>&]", md))     # every one escaped
        self.assertIn("\\<script\\>alert\\(1\\)\\</script\\>\"'\\&.safetensors", md)
        for line in md.splitlines():
            if line.startswith("| ") and "---" not in line:
                cells = re.split(r"(?<!\\)\|", line)[1:-1]
                self.assertIn(len(cells), (6, 7, 8), line)     # hosts, findings, models

    def test_inventory_csv(self):
        f, raw = self.fleet, self.reports["inventory", "csv"]
        self.assertIn("\r\n", raw)
        rows = list(csv.DictReader(io.StringIO(raw, newline="")))
        self.assertEqual(len(rows), 9)
        by = {(r["host"], r["path"]): r for r in rows}
        base = by["gpu-a", "/models/llama-base"]
        self.assertEqual((base["model_digest"], base["base_model"], base["base_kind"]),
                         (f.hex["base"], CATALOG["base"], "catalog"))
        self.assertEqual(base["host_stale"], "false")
        self.assertEqual(by["old-box", "/opt/sft"]["host_stale"], "true")
        self.assertEqual(by["gpu-b", "/srv/lora"]["findings"], "1")
        other = by["gpu-c", "/data/base-2"]
        self.assertEqual((other["base_kind"], other["relation"], other["score"]), ("family", "", ""))
        # A cell a spreadsheet would take for a formula gets an apostrophe.
        hostile = by["'" + HOSTILE_HOST, HOSTILE_PATH]
        self.assertEqual(hostile["base_model"], HOSTILE_ENTRY)
        self.assertEqual(by["'" + HOSTILE_HOST, HOSTILE_PATH2]["model_digest"], f.hex["gsft"])
        self.assertFalse([r for r in rows if r["host"].startswith("=")])
        sft = by["gpu-b", "/srv/sft"]
        self.assertAlmostEqual(float(sft["score"]), f.matches["sft"]["identity_score"], places=6)

    # -- incident

    def test_incident_html(self):
        f, page = self.fleet, self.reports["incident", "html"]
        text = self.check_safe_html(page)
        self.assertIn(f"Blast radius: {CATALOG['base']}", text)
        # base on gpu-a and gpu-c, sft on gpu-b and old-box, lora on gpu-b.
        self.assertRegex(page, r'id="summary">5 paths on 4 hosts affected<')
        aside = re.search(r'<aside id="affected">.*?</aside>', page, re.S).group(0)
        affected = set(re.findall(r'<tr class="hit"><td>([^<]*)</td><td class="mono">([^<]*)</td>', aside))
        self.assertEqual(affected, {("gpu-a", "/models/llama-base"), ("gpu-c", "/data/copy"),
                                    ("gpu-b", "/srv/sft"), ("gpu-b", "/srv/lora"), ("old-box", "/opt/sft")})
        # The graph and the table side by side, in the lineage section.
        self.assertLess(page.index('id="lineage-graph"'), page.index('<aside id="affected">'))

        nodes = self.nodes("incident")
        self.assertIn("target", self.node(nodes, CATALOG["base"], "catalog base model"))
        for host in ("gpu-a", "gpu-b", "gpu-c", "old-box"):
            self.assertIn("hit", self.node(nodes, host), host)
        self.assertNotIn("hit", self.node(nodes, "alert('host')"))
        self.assertNotIn("hit", self.node(nodes, f.hex["other"][:12]))
        self.assertNotIn("hit", self.node(nodes, f.hex["gbase"][:12]))
        for k in ("base", "sft", "lora"):
            self.assertIn("hit", self.node(nodes, f.hex[k][:12]), k)

    def test_incident_by_digest(self):
        f = self.fleet
        nodes = self.nodes("by-digest")
        self.assertIn("target", self.node(nodes, f.hex["base"][:12]))
        for k in ("sft", "lora"):
            self.assertIn("hit", self.node(nodes, f.hex[k][:12]), k)
        self.assertNotIn("hit", self.node(nodes, f.hex["gsft"][:12]))
        self.assertEqual(len(nodes), len(self.nodes("inventory")))     # the query is a node of the fleet
        self.check_safe_html(self.reports["by-digest", "html"])

    def test_incident_markdown_and_csv(self):
        f = self.fleet
        md = self.reports["incident", "md"]
        self.assertTrue(md.startswith(f"# Blast radius: {CATALOG['base']}\n"), md[:80])
        self.assertIn("**5 paths on 4 hosts affected**", md)
        self.assertLess(md.index("## Findings"), md.index("## Affected hosts and paths"))
        rows = list(csv.DictReader(io.StringIO(self.reports["incident", "csv"], newline="")))
        self.assertEqual(sorted((r["host"], r["path"]) for r in rows),
                         sorted([("gpu-a", "/models/llama-base"), ("gpu-c", "/data/copy"), ("gpu-b", "/srv/sft"),
                                 ("gpu-b", "/srv/lora"), ("old-box", "/opt/sft")]))
        for r in rows:
            self.assertIn(r["model_digest"], (f.hex["base"], f.hex["sft"], f.hex["lora"]))
            self.assertGreater(float(r["score"]), 0)

    def test_nothing_affected_and_errors(self):
        # A model no host holds: said plainly, the query its own node.
        lonely = env.make_model(os.path.join(self.tmp, "lonely"), "--hidden", "32", "--layers", "1", "--vocab",
                                "300", "--seed", "99")
        record = os.path.join(self.tmp, "lonely.fp")
        env.fingerprint(lonely, record)
        for fmt, want in (("md", "**Nothing affected**"), ("html", 'id="summary">Nothing affected<')):
            self.keep_fresh()
            p = self.run_report("blast-radius", record, "--format", fmt)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn(want, p.stdout)
            self.assertIn("Nothing in the fleet is affected.", p.stdout)
        self.assertIn("queried:", p.stdout)
        p = self.run_report("blast-radius", "no-such-entry")
        self.assertEqual(p.returncode, 2)
        self.assertIn(f"collector {self.collector.target}: ", p.stderr)
        p = self.run_report("inventory", "--format", "pdf")
        self.assertEqual(p.returncode, 2)
        self.assertIn("--format is html, md or csv", p.stderr)
        p = self.run_report("blast-radius")
        self.assertEqual(p.returncode, 2)
        p = self.run_report("inventory", "-o", os.path.join(self.tmp, "no-such-dir", "r.html"))
        self.assertEqual(p.returncode, 2)
        self.assertIn("cannot write", p.stderr)
        # The format follows -o's suffix; stdout without -o.
        out = os.path.join(self.tmp, "suffix.csv")
        self.keep_fresh()
        self.assertEqual(self.run_report("inventory", "-o", out).returncode, 0)
        with open(out) as fh:
            self.assertTrue(fh.read().startswith("host,host_id,host_stale,"))
        p = self.run_report("inventory")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.startswith("<!DOCTYPE html>"))

    # -- in a browser

    def test_chromium_screenshot(self):
        chromium = shutil.which("chromium")
        if not chromium:
            msg = "chromium is not installed (scripts/setup.sh installs it): no screenshot check"
            if os.environ.get("CI"):
                self.fail(msg)
            print(msg, file=sys.stderr)
            self.skipTest(msg)
        artifacts = os.path.join(os.environ.get("MODELPROV_BUILD_ROOT", self.tmp), "report-screenshots")
        os.makedirs(artifacts, exist_ok=True)
        for kind in ("inventory", "incident"):
            with self.subTest(report=kind):
                page = os.path.join(self.out, f"{kind}.html")
                png = os.path.join(artifacts, f"{kind}.png")
                if os.path.exists(png):
                    os.unlink(png)
                shot = self.chromium(chromium, "--screenshot=" + png, "--window-size=1400,1000", page)
                self.assertTrue(os.path.exists(png), shot.stderr[-3000:])
                with open(png, "rb") as fh:
                    head = fh.read(24)
                self.assertEqual(head[:8], b"\x89PNG\r\n\x1a\n")
                self.assertEqual(struct.unpack(">II", head[16:24]), (1400, 1000))
                self.assertGreater(os.path.getsize(png), 20000)     # not a blank page

                dom = self.chromium(chromium, "--dump-dom", page)
                self.assertIn("<svg", dom.stdout)
                self.assertGreaterEqual(len(re.findall(r'<g id="node\d+" class="node', dom.stdout)), 14)
                if kind == "incident":
                    self.assertIn('class="node target"', dom.stdout)
                self.assertNotIn("<script", dom.stdout)
                self.assertNotIn("<img", dom.stdout)
                # Console messages (script errors, CSP refusals) reach
                # stderr as CONSOLE lines with --enable-logging.
                for out in (shot.stderr, dom.stderr):
                    self.assertFalse(re.search(r"CONSOLE|Refused to|Uncaught", out), out[-3000:])

    def chromium(self, chromium, *args):
        *opts, page = args
        profile = tempfile.mkdtemp(prefix="chromium-", dir=self.tmp)
        p = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + profile,
                            "--no-first-run", "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0", *opts, "file://" + page],
                           capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        return p


class EmptyFleetTest(unittest.TestCase):
    """A collector no agent reported to yet: every format says so."""

    def test_empty(self):
        with tempfile.TemporaryDirectory(prefix="cli-report-empty-") as tmp:
            with env.Collector(os.path.join(tmp, "collector")).start() as c:
                def report(*args):
                    p = subprocess.run([BIN, "report", "inventory", *args, "--collector", c.target, "--token-file",
                                        c.query_file, "--insecure-loopback"], capture_output=True, text=True,
                                       timeout=120, env=dict(os.environ, LSAN_OPTIONS="suppressions=" +
                                                             LSAN_SUPPRESSIONS))
                    self.assertEqual(p.returncode, 0, p.stderr)
                    return p.stdout
                page = report()
                self.assertIn("No host reported a model yet.", page)
                self.assertIn("<h2>Findings (0)</h2>", page)
                for key in ("hosts", "models", "weights", "findings"):
                    self.assertIn(f'<span class="n" id="total-{key}">0</span>', page)
                self.assertIn("- Hosts: 0 (0 stale)\n", report("--format", "md"))
                self.assertEqual(report("--format", "csv").splitlines(),
                                 [",".join(["host", "host_id", "host_stale", "host_last_seen", "path", "model_name",
                                            "model_digest", "format", "base_model", "base_kind", "relation",
                                            "verdict", "score", "findings", "first_seen", "last_seen"])])


if __name__ == "__main__":
    unittest.main(verbosity=2)
