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
