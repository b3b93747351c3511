"""The HTML report in a real headless Chromium.
run --report on a labelled job with a truncated image; then `imgsim report JOB --page-size=P` and
search/dedup reports. Checked against numbers recomputed here from results.tsv and the manifests:
- chromium --dump-dom of report.html: min(P, queries) query rows on the first page, misses
  (top-1 label != query label) first, L x L confusion-matrix cells for the L labels seen, the
  failed image with its reason, links to every further page (and each exists), the last page holds
  the remaining rows;
- over CDP with the network emulated offline: every request the page makes is file:// inside the
  job folder (no other host), and every thumbnail loads (naturalWidth > 0) and is a picture of the
  image it stands for (mean colour close to the original's);
- chromium --screenshot keeps a picture of the page as a test artifact (report.png in the work
  folder); the dedup and search reports hold their groups and rows."""
import collections
import html.parser
import math
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cdp  # noqa: E402
import servelib as S  # noqa: E402
import testlib as T  # noqa: E402

if not cdp.find_chromium():
    T.skip("chromium is not installed (scripts/install-deps.sh installs it)")
w = T.workdir()
data = os.path.join(w, "data")
items = T.make_dataset(data, 4, [8, 7, 6, 5], seed=8, sizes=((96, 72), (120, 90), (72, 96)))
os.makedirs(os.path.join(data, "zz_mixed"))
for i in range(5):  # a last class whose images each look like another class: its queries miss, and sort last
    T.photo_like(96, 72, i % 4, 900 + i).save(os.path.join(data, "zz_mixed", "img_%d.jpg" % i), quality=90)
good = open(os.path.join(data, items[0][0]), "rb").read()
with open(os.path.join(data, "class_01", "zz_truncated.jpg"), "wb") as f:
    f.write(good[:len(good) // 3])
model = S.tiny_model(os.path.join(w, "tiny.onnx"))
job = os.path.join(w, "job")
K = 3
T.run(["run", data, "--model=" + model, "--out=" + job, "--k=%d" % K, "--test-size=0.4", "--seed=3", "--quiet", "--report"])
T.check(os.path.exists(os.path.join(job, "report.html")), "run --report wrote report.html")
P = 4
T.run(["report", job, "--page-size=%d" % P, "--quiet"])

# the truth, from the job's own files
res = T.read_tsv(os.path.join(job, "results.tsv"))
byq = collections.OrderedDict()
for r in res:
    byq.setdefault(r["query_path"], []).append(r)
nq = len(byq)
misses = [q for q, rows in byq.items() if rows[0]["match_label"] != rows[0]["query_label"]]
labels = sorted({rows[0]["query_label"] for rows in byq.values()} | {rows[0]["match_label"] for rows in byq.values()})
failed = [m for s in ("gallery", "queries") for m in T.read_tsv(os.path.join(job, s, "manifest.tsv")) if m["row"] == "-1"]
T.check(len(failed) == 1 and "truncated" in failed[0]["path"], "one failed image in the manifests: %s" % failed)
pages = math.ceil(nq / P)
order = list(byq)
T.check(misses and max(order.index(q) for q in misses) >= P, "the job has misses (%d of %d queries) that sort first only "
        "when the report puts them first" % (len(misses), nq))


class Dom(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.cells, self.imgs, self.links, self.text = [], 0, [], [], []
        self.row = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = a.get("class", "").split()
        if tag == "tr" and "qrow" in cls:
            self.row = {"miss": "miss" in cls, "paths": []}
            self.rows.append(self.row)
        if tag == "rect" and "cm-cell" in cls:
            self.cells += 1
        if tag == "img":
            self.imgs.append(a)
            if self.row is not None:
                self.row["paths"].append(a.get("title"))
        if tag == "a":
            self.links.append(a.get("href"))

    def handle_data(self, d):
        self.text.append(d)


def dom(page):
    d = Dom()
    d.feed(cdp.run_chromium(["--dump-dom", "file://" + os.path.join(job, page)]))
    return d


d1 = dom("report.html")
T.check(len(d1.rows) == min(P, nq), "first page: %d query rows, expected %d" % (len(d1.rows), min(P, nq)))
nm = min(len(misses), len(d1.rows))
T.check([r["miss"] for r in d1.rows] == [True] * nm + [False] * (len(d1.rows) - nm), "misses first: %s" % [r["miss"] for r in d1.rows])
T.check(all(r["paths"] and os.path.basename(r["paths"][0]) == os.path.basename(q) for r, q in zip(d1.rows, misses)),
        "the first rows are the misses, in order")
T.check(d1.cells == len(labels) ** 2, "confusion matrix: %d cells, expected %d" % (d1.cells, len(labels) ** 2))
text = " ".join(d1.text)
T.check("zz_truncated.jpg" in text and "truncated" in failed[0]["error"] and failed[0]["error"][:40] in text,
        "the failure and its reason are shown")
T.check("Stage timings" in text and "gallery (train)" in text, "stage timings chart")
for p in range(2, pages + 1):
    T.check("report-%d.html" % p in d1.links, "page 1 links page %d" % p)
    T.check(os.path.exists(os.path.join(job, "report-%d.html" % p)), "report-%d.html exists" % p)
last = dom("report-%d.html" % pages if pages > 1 else "report.html")
T.check(len(last.rows) == nq - (pages - 1) * P, "last page: %d rows, expected %d" % (len(last.rows), nq - (pages - 1) * P))
T.check(not os.path.exists(os.path.join(job, "report-%d.html" % (pages + 1))), "no page past the last")
for a in d1.imgs + last.imgs:
    T.check(not a["src"].startswith(("http:", "https:", "//", "/")), "thumbnail src is relative: %s" % a["src"])
    T.check(os.path.isfile(os.path.join(job, a["src"])), "thumbnail file exists: %s" % a["src"])

# the page offline, every request recorded, every thumbnail loaded and of the right image
b = cdp.Browser()
try:
    b.call("Network.enable")
    b.call("Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1, uploadThroughput=-1)
    b.navigate("file://" + os.path.join(job, "report.html"))
    b.eval("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
    info = b.wait_for("(() => { const im = [...document.images]; return im.every(i => i.complete) ? "
                      "im.map(i => [i.getAttribute('src'), i.title, i.naturalWidth]) : null })()", 20)
    T.check(len(info) == len(d1.imgs) and all(n > 0 for _, _, n in info), "every thumbnail loads: %s" %
            [x for x in info if x[2] == 0][:3])
    urls = [e["params"]["request"]["url"] for e in b.events if e.get("method") == "Network.requestWillBeSent"]
    T.check(urls, "requests were recorded")
    T.check(all(u.startswith("file://" + job + "/") for u in urls), "requests outside the job folder: %s" %
            [u for u in urls if not u.startswith("file://" + job)][:3])
    for src, title, _ in info[:12]:
        img = Image.open(os.path.join(job, src)).convert("RGB")
        orig = Image.open(title if os.path.isabs(title) else os.path.join(job, title)).convert("RGB")
        T.check(max(img.size) <= 128, "thumbnail size %s" % (img.size,))
        diff = np.abs(np.asarray(img, np.float64).mean((0, 1)) - np.asarray(orig, np.float64).mean((0, 1))).max()
        T.check(diff < 6, "thumbnail %s differs from %s by %.1f in mean colour" % (src, title, diff))
finally:
    b.close()
cdp.run_chromium(["--screenshot=" + os.path.join(w, "report.png"), "--window-size=1200,1800",
                  "file://" + os.path.join(job, "report.html")])
T.check(os.path.getsize(os.path.join(w, "report.png")) > 10000, "screenshot written")

# search and dedup reports
sdir = os.path.join(w, "search")
os.makedirs(sdir)
T.run(["search", "--gallery=" + os.path.join(job, "gallery"), "--query=" + os.path.join(job, "queries"),
       "--out=" + os.path.join(sdir, "res.tsv"), "--k=2", "--report", "--quiet"])
ds = dom("../search/report.html")
T.check(len(ds.rows) == min(50, nq) and all(len(r["paths"]) == 3 for r in ds.rows), "search report rows")
ddir = os.path.join(w, "dedup")
os.makedirs(ddir)
import json  # noqa: E402
T.run(["dedup", os.path.join(job, "gallery"), "--threshold=0.97", "--out=" + os.path.join(ddir, "pairs.json"), "--report", "--quiet"])
pairs = json.load(open(os.path.join(ddir, "pairs.json")))
parent = {}


def find(x):
    while parent.setdefault(x, x) != x:
        x = parent[x]
    return x


for a, lst in pairs.items():
    for bpath, _ in lst:
        parent[find(a)] = find(bpath)
groups = len({find(x) for x in parent})
dd = Dom()
dd.feed(cdp.run_chromium(["--dump-dom", "file://" + os.path.join(ddir, "report.html")]))
ngroups = " ".join(dd.text).count("Group ")
T.check(ngroups == min(groups, 50), "dedup report: %d groups shown, %d expected" % (ngroups, groups))
T.check(len(dd.imgs) == min(len(parent), 24 * 50), "dedup report thumbnails: %d for %d images" % (len(dd.imgs), len(parent)))
print("screenshot:", os.path.join(w, "report.png"))
T.finish()
