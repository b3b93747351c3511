# Transformer image embedders on the CPU engine (helper "vit", issue 14): tests/vit_models.py
# exports torchvision's VisionTransformer, a DINOv2-like and a CLIP-like tower (random weights)
# at opsets 13 and 17; the engine's output against PyTorch float64 (relative L2 <= 1e-5), the
# passes' result (one Attention per block, LayerNorm / GELU / quick GELU / biases fused), the
# default embedding and --layer=pool:cls|pool:mean; masked and unrecognised attention refused.
imgsim_py_test(onnx_vit_small_op13 test_onnx_vit.py --arch=vit_small --opset=13 --check-graph --pool)
imgsim_py_test(onnx_vit_small_op17 test_onnx_vit.py --arch=vit_small --opset=17 --check-graph --pool)
imgsim_py_test(onnx_vit_dinov2_op13 test_onnx_vit.py --arch=dinov2_s14 --depth=2 --opset=13 --check-graph)
imgsim_py_test(onnx_vit_dinov2_op17 test_onnx_vit.py --arch=dinov2_s14 --depth=2 --opset=17 --check-graph --pool)
imgsim_py_test(onnx_vit_clip_op13 test_onnx_vit.py --arch=clip_b32 --depth=2 --width=128 --opset=13 --check-graph)
imgsim_py_test(onnx_vit_clip_op17 test_onnx_vit.py --arch=clip_b32 --depth=2 --width=128 --opset=17 --check-graph --pool)
imgsim_py_test(onnx_vit_refuse_masked test_onnx_vit.py --arch=masked)
imgsim_py_test(onnx_vit_refuse_manual test_onnx_vit.py --arch=manual)
# torchvision vit_b_16 at full size (86M parameters): one image, batch 1
imgsim_py_test(onnx_vit_b_16_op13 test_onnx_vit.py --arch=vit_b_16 --opset=13 --images=1 --batch-size=1 --check-graph)
imgsim_py_test(onnx_vit_b_16_op17 test_onnx_vit.py --arch=vit_b_16 --opset=17 --images=1 --batch-size=1 --check-graph)
set_tests_properties(onnx_vit_b_16_op13 onnx_vit_b_16_op17 PROPERTIES LABELS long)
# The same checks on exports by a current torch (2.x: nn.MultiheadAttention goes through
# scaled_dot_product_attention, the packed projection through unflatten, Mod in the shape
# arithmetic): IMGSIM_PYTHON_TORCH2 names a Python with torch >= 2, torchvision, onnx and numpy
# (a venv; CMake cache or the environment at ctest time). Skipped (77) without one: CI has only
# Debian's torch 1.13. Opset 14 is the lowest torch 2.x exports scaled_dot_product_attention at (at
# 13 its exporter refuses it, and vit_models.py's error says so).
set(IMGSIM_PYTHON_TORCH2 "$ENV{IMGSIM_PYTHON_TORCH2}" CACHE FILEPATH "Python with torch >= 2 for the onnx_vit_torch2_* tests (optional)")
foreach(t
    "vit_small_op14;--arch=vit_small;--opset=14;--check-graph;--pool"
    "vit_small_op18;--arch=vit_small;--opset=18;--check-graph;--pool"
    "dinov2_op17;--arch=dinov2_s14;--depth=2;--opset=17;--check-graph;--pool"
    "clip_op17;--arch=clip_b32;--depth=2;--width=128;--opset=17;--check-graph;--pool"
    "refuse_masked;--arch=masked"
    "refuse_manual;--arch=manual")
  list(GET t 0 name)
  list(REMOVE_AT t 0)
  imgsim_py_test(onnx_vit_torch2_${name} test_onnx_vit.py ${t} --torch2)
  if(IMGSIM_PYTHON_TORCH2)
    get_test_property(onnx_vit_torch2_${name} ENVIRONMENT env)
    set_tests_properties(onnx_vit_torch2_${name} PROPERTIES ENVIRONMENT "${env};IMGSIM_PYTHON_TORCH2=${IMGSIM_PYTHON_TORCH2}")
  endif()
endforeach()
