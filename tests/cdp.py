"""cdp.py: drives a real headless Chromium through its remote debugging protocol (CDP) for the
page tests, with only the standard library: a minimal WebSocket client (RFC 6455 handshake,
masked client text frames, unfragmented or fragmented server frames) and a few CDP calls.
Everything stays on 127.0.0.1; every wait has a deadline."""
import base64
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


BASE_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
              "--disable-extensions", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--metrics-recording-only", "--disable-default-apps", "--mute-audio",
              "--hide-scrollbars"]


def run_chromium(args, timeout=60):
    """Runs chromium once (--dump-dom, --screenshot) with a throwaway profile; returns stdout text."""
    prof = tempfile.mkdtemp(prefix="imgsim-chromium-")
    try:
        p = subprocess.run([find_chromium()] + BASE_FLAGS + ["--user-data-dir=" + prof] + args,
                           capture_output=True, text=True, timeout=timeout)
        return p.stdout
    finally:
        shutil.rmtree(prof, ignore_errors=True)


class WebSocket:
    def __init__(self, url, timeout=30):
        u = urllib.parse.urlparse(url)
        assert u.hostname in ("127.0.0.1", "localhost"), url
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n") % (u.path, u.hostname, u.port, key)
        self.sock.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise IOError("websocket handshake: connection closed")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise IOError("websocket handshake refused: %r" % status)
        self.buf = head.split(b"\r\n\r\n", 1)[1]

    def send(self, text):
        data = text.encode()
        n = len(data)
        hdr = bytes([0x81])
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            hdr += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError("websocket read timed out")
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise IOError("websocket closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self, timeout=30):
        """The next text message (fragments joined); None on close."""
        deadline = time.time() + timeout
        msg = b""
        while True:
            b0, b1 = self._read(2, deadline)
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2, deadline))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8, deadline))[0]
            if b1 & 0x80:
                mask = self._read(4, deadline)
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self._read(n, deadline)))
            else:
                payload = self._read(n, deadline)
            if op == 8:
                return None
            if op in (9, 10):  # ping/pong: not used by Chromium's DevTools server for us
                continue
            msg += payload
            if b0 & 0x80:
                return msg.decode()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Browser:
    """A headless Chromium with remote debugging on 127.0.0.1 and one page."""

    def __init__(self, extra_flags=(), timeout=30):
        self.prof = tempfile.mkdtemp(prefix="imgsim-chromium-")
        self.proc = subprocess.Popen([find_chromium()] + BASE_FLAGS + list(extra_flags) +
                                     ["--user-data-dir=" + self.prof, "--remote-debugging-address=127.0.0.1",
                                      "--remote-debugging-port=0", "--window-size=1200,900", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + timeout
        ws_url = None
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                if self.proc.poll() is not None:
                    break
                continue
            if "DevTools listening on" in line:
                ws_url = line.split("DevTools listening on", 1)[1].strip()
                break
        if not ws_url:
            self.close()
            raise RuntimeError("chromium did not start its DevTools server")
        # keep draining chromium's chatty stderr so it never blocks on a full pipe
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
        self.events = []
        self.next_id = 0
        self.ws = WebSocket(ws_url, timeout)
        tid = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=tid, flatten=True)["sessionId"]

    def call(self, method, timeout=30, session=None, **params):
        self.next_id += 1
        mid = self.next_id
        msg = {"id": mid, "method": method, "params": params}
        if session or (method not in ("Target.createTarget", "Target.attachToTarget") and hasattr(self, "session")):
            msg["sessionId"] = session or self.session
        self.ws.send(json.dumps(msg))
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError(method)
            m = self.ws.recv(left)
            if m is None:
                raise IOError("DevTools connection closed during " + method)
            m = json.loads(m)
            if m.get("id") == mid:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)

    def eval(self, expr, timeout=30):
        r = self.call("Runtime.evaluate", timeout=timeout, expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError("page script failed: %s" % r["exceptionDetails"])
        return r["result"].get("value")

    def wait_for(self, expr, timeout=30, poll=0.1):
        """Polls a JS expression until truthy; returns its value, or raises TimeoutError."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = self.eval(expr)
            if v:
                return v
            time.sleep(poll)
        raise TimeoutError("page never satisfied: " + expr)

    def navigate(self, url, timeout=30):
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'", timeout)

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            if getattr(self, "ws", None):
                self.ws.close()
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            shutil.rmtree(self.prof, ignore_errors=True)
