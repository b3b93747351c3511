"""Run by onnxruntime's Python (a venv with onnxruntime; see test_int8_qdq_ort.py and bench/cpu_qdq.sh).

  ort_qdq.py quantize FLOAT.onnx CALIB.npy OUT.onnx [--asymmetric] [--activations=uint8]
      onnxruntime.quantization.quantize_static(..., quant_format=QuantFormat.QDQ, per_channel=True,
      weight_type=QInt8, activation_type=QInt8 (QUInt8 with --activations=uint8), MinMax
      calibration on the rows of CALIB.npy [n, 3, H, W]), with extra_options
      ActivationSymmetric=True (what imgsim's symmetric kernels take) unless --asymmetric
      (quantize_static's default).
  ort_qdq.py run MODEL.onnx X.npy OUT.npy [--threads=2]
      ONNX Runtime (CPU) on the rows of X.npy; OUT.npy gets the input of the model's final Gemm
      (imgsim's default embedding), made a graph output.
  ort_qdq.py bench MODEL.onnx --batch=32 --threads=2 --iterations=K
      images/s of ONNX Runtime on random inputs of the model's size (JSON on stdout).
"""
import json
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort


def with_embedding_output(path):
    m = onnx.load(path)
    gemm = [n for n in m.graph.node if n.op_type == "Gemm"][-1]
    name = gemm.input[0]
    if name not in [o.name for o in m.graph.output]:
        m.graph.output.insert(0, onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return m, name


def session(model_bytes, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def main():
    a = sys.argv[1:]
    opts = {k[2:].split("=")[0]: (k.split("=", 1)[1] if "=" in k else True) for k in a if k.startswith("--")}
    a = [k for k in a if not k.startswith("--")]
    threads = int(opts.get("threads", 2))
    if a[0] == "quantize":
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        x = np.load(a[2]).astype(np.float32)

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.i = 0

            def get_next(self):
                if self.i >= len(x):
                    return None
                self.i += 1
                return {"input": x[self.i - 1:self.i]}

        extra = {} if opts.get("asymmetric") else {"ActivationSymmetric": True}
        quantize_static(a[1], a[3], Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8 if opts.get("activations") == "uint8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8, extra_options=extra)
    elif a[0] == "run":
        m, name = with_embedding_output(a[1])
        s = session(m.SerializeToString(), threads)
        x = np.load(a[2]).astype(np.float32)
        out = [s.run([name], {"input": x[i:i + 1]})[0].reshape(1, -1) for i in range(len(x))]
        np.save(a[3], np.concatenate(out))
    elif a[0] == "bench":
        m = onnx.load(a[1])
        s = session(m.SerializeToString(), threads)
        i = m.graph.input[0]
        dims = [d.dim_value for d in i.type.tensor_type.shape.dim]
        b = int(opts.get("batch", 32))
        x = np.random.default_rng(0).standard_normal([b] + dims[1:]).astype(np.float32)
        for _ in range(int(opts.get("warmup", 2))):
            s.run(None, {i.name: x})
        k = int(opts.get("iterations", 10))
        t = []
        for _ in range(k):
            t0 = time.perf_counter()
            s.run(None, {i.name: x})
            t.append(time.perf_counter() - t0)
        t.sort()
        print(json.dumps({"ort_version": ort.__version__, "batch_size": b, "threads": threads, "iterations": k,
                          "latency_ms_median": 1000 * t[len(t) // 2], "latency_ms_min": 1000 * t[0],
                          "images_per_s": b * k / sum(t)}))
    else:
        raise SystemExit("ort_qdq.py: quantize, run or bench")


if __name__ == "__main__":
    main()
