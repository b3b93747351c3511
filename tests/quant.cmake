# int8 quantisation (owner: int8).
#  - test_quant_calib: the calibration maths of src/quant/ (entropy/percentile/min-max thresholds,
#    histograms, per-channel weight scales, half-to-even requantisation) against numpy versions
#    of the same definitions.
imgsim_c_test(test_quant_calib test_quant_calib.c ASAN)
#  - int8_cpu_calib: imgsim calibrate and its file (determinism, content against hashlib/onnx/numpy,
#    round trip, refusals); int8_cpu_parity: calibrated int8 against fp32 features (cosine, top-1).
imgsim_py_test(int8_cpu_calib test_int8_cpu.py --arch=resnet18 --calib --images=16)
imgsim_py_test(int8_cpu_parity test_int8_cpu.py --arch=resnet18 --int8 --images=40)
set_tests_properties(int8_cpu_calib int8_cpu_parity PROPERTIES TIMEOUT 900)
#  - int8_run: imgsim run --precision=int8 without --calib (DIR/int8.calib made, reused, made again
#    when it no longer matches), calib_sha256 in meta.json / job.json, refusals of mixed stores.
imgsim_py_test(int8_run test_int8_run.py)
set_tests_properties(int8_run PROPERTIES TIMEOUT 900)
#  - int8_qdq_cpu: a QDQ ResNet-18 (QuantizeLinear/DequantizeLinear written by tests/qdq_models.py as
#    onnxruntime's quantize_static writes them) at --precision=int8 without --calib against torch's
#    float64 simulation of the QDQ graph, fp32 against the dequantised model, and the refusals.
imgsim_py_test(int8_qdq_cpu test_int8_qdq.py --images=12 --size=128)
set_tests_properties(int8_qdq_cpu PROPERTIES TIMEOUT 900)
#  - int8_qdq_asym: the same QDQ ResNet-18 with asymmetric activations (quantize_static's default:
#    uint8 and int8 zero points), int8 against torch's float64 simulation by imgsim's rounding rules,
#    fp32 against the dequantised model, and an int8 run by the sanitizer build.
imgsim_py_test(int8_qdq_asym test_int8_qdq_asym.py --images=12 --size=128)
set_tests_properties(int8_qdq_asym PROPERTIES TIMEOUT 900)
#  - int8_qdq_ort (optional: skipped without a Python with onnxruntime, IMGSIM_ORT_PYTHON or
#    .venv-ort/bin/python): a ResNet-18 quantised by onnxruntime's quantize_static (QDQ), imgsim int8
#    against ONNX Runtime's output and the simulation by imgsim's rules; the same for quantize_static's
#    default, asymmetric activations (uint8, and int8, with zero points).
imgsim_py_test(int8_qdq_ort test_int8_qdq_ort.py --images=16 --size=224)
set_tests_properties(int8_qdq_ort PROPERTIES TIMEOUT 1200)
#  - int8_qdq_run: imgsim run --precision=int8 and imgsim.run(precision="int8") of a small QDQ
#    ResNet-18: no calibration (no DIR/int8.calib), the features of extract --precision=int8 of the
#    same model bit for bit, --calib with a QDQ model refused, model_info's "quantized".
imgsim_py_test(int8_qdq_run test_int8_qdq_run.py)
set_tests_properties(int8_qdq_run PROPERTIES TIMEOUT 900)
if(TARGET imgsim_python)
  set_property(TEST int8_qdq_run APPEND PROPERTY ENVIRONMENT "IMGSIM_PY_MODULE=$<TARGET_FILE:imgsim_python>")
endif()
