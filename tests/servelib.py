"""servelib.py: helpers for the serve and report tests: a tiny CNN as ONNX (so CPU inference is
fast on 2 cores), starting `imgsim serve` on a free localhost port, and HTTP requests with
http.client (every one with a timeout)."""
import http.client
import json
import os
import select
import subprocess
import time

import testlib as T


def tiny_model(path, seed=0, size=64):
    """Conv(3->16, s2)+ReLU, Conv(16->32, s2)+ReLU, GAP, Flatten, Gemm: 32-d features at 'flat'."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)

    def w(name, shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * np.sqrt(2 / np.prod(shape[1:]))).astype(np.float32), name)

    def zeros(name, n):
        return numpy_helper.from_array(np.zeros(n, np.float32), name)

    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"], transB=1)]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
                          [w("w1", (16, 3, 3, 3)), zeros("b1", 16), w("w2", (32, 16, 3, 3)), zeros("b2", 32),
                           w("fw", (10, 32)), zeros("fb", 10)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return path


def need_serve():
    if os.environ.get("IMGSIM_HAVE_MHD", "1") == "0":
        T.skip("imgsim was built without libmicrohttpd: no serve command")


class Server:
    """`imgsim serve ARGS --port=0` with its port read from its 'listening on' line."""

    def __init__(self, args, cli=None, timeout=60, env=None):
        e = dict(os.environ)
        if env:
            e.update(env)
        self.proc = subprocess.Popen([cli or T.CLI, "serve", "--port=0"] + [str(a) for a in args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=e)
        self.log = b""
        deadline = time.time() + timeout
        self.port = None
        while time.time() < deadline and self.port is None:
            r, _, _ = select.select([self.proc.stderr], [], [], 0.2)
            if r:
                chunk = os.read(self.proc.stderr.fileno(), 65536)
                if not chunk:
                    break
                self.log += chunk
                for line in self.log.decode(errors="replace").splitlines():
                    if "listening on http://127.0.0.1:" in line:
                        self.port = int(line.split("listening on http://127.0.0.1:", 1)[1].split("/")[0])
            elif self.proc.poll() is not None:
                break
        if self.port is None:
            self.stop()
            raise RuntimeError("imgsim serve did not start:\n" + self.log.decode(errors="replace"))

    def request(self, method, path, body=None, headers=None, timeout=30):
        """(status, headers dict, body bytes)"""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def json(self, method, path, body=None, headers=None, timeout=30):
        st, h, b = self.request(method, path, body, headers, timeout)
        return st, json.loads(b.decode())

    def drain_log(self):
        while True:
            r, _, _ = select.select([self.proc.stderr], [], [], 0)
            if not r:
                break
            chunk = os.read(self.proc.stderr.fileno(), 65536)
            if not chunk:
                break
            self.log += chunk
        return self.log.decode(errors="replace")

    def stop(self, sig=15, timeout=10):
        """Sends sig and waits; returns (exit code, seconds it took)."""
        t0 = time.time()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        dt = time.time() - t0
        self.drain_log()
        return self.proc.returncode, dt


def multipart(field, filename, data, extra=None):
    """(body, content type) of a multipart/form-data upload."""
    b = "imgsim-test-boundary-7f3a"
    parts = []
    for k, v in (extra or {}).items():
        parts.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (b, k, v)).encode())
    parts.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                  "Content-Type: application/octet-stream\r\n\r\n" % (b, field, filename)).encode() + data + b"\r\n")
    parts.append(("--%s--\r\n" % b).encode())
    return b"".join(parts), "multipart/form-data; boundary=" + b
