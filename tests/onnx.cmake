# ONNX import/export tests (helper "onnx"): every malformed model refused with its own message
# under ASan+UBSan, torchvision exports (opsets 11/13/17/18, MobileNetV2, external data) loaded,
# `imgsim model init` output checked by onnx.checker and against torchvision, and the importer's
# tensor conversions and truncated/corrupted files in a cmocka unit test.
imgsim_py_test(onnx_reject test_onnx_reject.py)
imgsim_py_test(onnx_models test_onnx_models.py)
imgsim_c_test(test_onnx_import test_onnx_import.c ASAN)
