"""The serve page in a real headless Chromium, driven over its remote debugging protocol (all on
127.0.0.1): load GET /, pick an image in the page's file input (DOM.setFileInputFiles fires the
page's own change handler, as a user's pick does), and wait until the matches appear. They must be
those of POST /search for the same image and k (which test_serve_api checks against `imgsim
search`), in order, and every match thumbnail must have loaded (naturalWidth > 0). A bad file
picked in the page shows the server's reason. The screenshot is kept in the test's work folder."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cdp  # noqa: E402
import servelib as S  # noqa: E402
import testlib as T  # noqa: E402

S.need_serve()
if not cdp.find_chromium():
    T.skip("chromium is not installed (scripts/install-deps.sh installs it)")
w = T.workdir()
data, qdir = os.path.join(w, "data"), os.path.join(w, "queries")
T.make_dataset(data, 3, 5, seed=5, sizes=((96, 72), (120, 90)))
qitems = T.make_dataset(qdir, 3, 1, seed=6, sizes=((96, 72),))
model = S.tiny_model(os.path.join(w, "tiny.onnx"))
gal = os.path.join(w, "gallery")
T.run(["extract", "--model=" + model, "--out=" + gal, data, "--quiet"])
bad = os.path.join(w, "notes.txt")
with open(bad, "w") as f:
    f.write("not an image at all, just some text\n" * 3)

srv = S.Server(["--gallery=" + gal])
browser = None
try:
    browser = cdp.Browser()
    browser.navigate("http://127.0.0.1:%d/" % srv.port)
    T.check("imgsim serve" in browser.eval("document.title"), "page title")
    browser.wait_for("document.getElementById('info').textContent.includes('images')", 10)
    K = int(browser.eval("document.getElementById('k').value"))
    doc = browser.call("DOM.getDocument", depth=-1)["root"]["nodeId"]
    node = browser.call("DOM.querySelector", nodeId=doc, selector="#file")["nodeId"]
    for rel, _ in qitems:
        q = os.path.join(qdir, rel)
        st, want = srv.json("POST", "/search?k=%d" % K, open(q, "rb").read())
        T.check(st == 200 and len(want["matches"]) == K, "reference search for %s" % rel)
        browser.eval("document.getElementById('matches').innerHTML = ''; "
                     "document.getElementById('status').dataset.state = 'idle'")
        browser.call("DOM.setFileInputFiles", files=[q], nodeId=node)
        state = browser.wait_for("(s => s === 'done' || s === 'error' ? s : '')"
                                 "(document.getElementById('status').dataset.state)", 20)
        T.check(state == "done", "%s: page status %s: %s" % (rel, state, browser.eval("document.getElementById('status').textContent")))
        got = browser.eval("[...document.querySelectorAll('#matches .match')].map(m => m.dataset.path)")
        T.check(got == [m["path"] for m in want["matches"]], "%s: page shows %s, POST /search gives %s" %
                (rel, got, [m["path"] for m in want["matches"]]))
        scores = browser.eval("[...document.querySelectorAll('#matches .match')].map(m => +m.dataset.score)")
        T.check(all(abs(a - m["score"]) < 1e-6 for a, m in zip(scores, want["matches"])), "%s: scores on the page" % rel)
        loaded = browser.wait_for("(() => { const im = [...document.querySelectorAll('#matches img')]; "
                                  "return im.length && im.every(i => i.complete) ? im.map(i => i.naturalWidth) : null })()", 20)
        T.check(len(loaded) == K and all(x > 0 for x in loaded), "%s: thumbnails loaded: %s" % (rel, loaded))
    browser.screenshot(os.path.join(w, "serve_page.png"))
    # a bad pick: the page shows the server's reason, and the next good pick works again
    browser.call("DOM.setFileInputFiles", files=[bad], nodeId=node)
    browser.wait_for("document.getElementById('status').dataset.state === 'error'", 20)
    msg = browser.eval("document.getElementById('status').textContent")
    T.check("415" in msg and "not a JPEG" in msg, "bad file: page says %r" % msg)
    st, stats = srv.json("GET", "/stats")
    T.check(stats["requests"]["search"] >= 2 * len(qitems) + 1 and stats["requests"]["thumb"] >= K,
            "the page's requests reached the server: %s" % stats["requests"])
finally:
    if browser:
        browser.close()
    srv.stop()
print("screenshot:", os.path.join(w, "serve_page.png"))
T.finish()
