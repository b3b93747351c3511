# ONNX import/export tests (helper "onnx"): every malformed model refused with its own message
# under ASan+UBSan, torchvision exports (opsets 11/13/17/18, MobileNetV2, external data) loaded,
# `imgsim model init` output checked by onnx.checker and against torchvision, and the importer's
# tensor conversions and truncated/corrupted files in a cmocka unit test.
imgsim_py_test(onnx_reject test_onnx_reject.py)
imgsim_py_test(onnx_models test_onnx_models.py)
imgsim_c_test(test_onnx_import test_onnx_import.c ASAN)
# torchvision families beyond ResNet (test_onnx_families.py): exported by
# tools/export_torchvision.py with random weights and BN statistics, the CPU engine's logits
# against PyTorch float64 (relative L2 <= 1e-5), small inputs to keep CI fast.
imgsim_py_test(onnx_family_mobilenet_v3_small_op13 test_onnx_families.py --arch=mobilenet_v3_small --opset=13 --size=64)
imgsim_py_test(onnx_family_mobilenet_v3_large_op17 test_onnx_families.py --arch=mobilenet_v3_large --opset=17 --size=64)
