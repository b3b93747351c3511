# CPU (oneDNN) backend tests (owner: cpu).
#  - test_cpu_ops: every operator on small hand-built graphs against naive C references (odd
#    shapes, groups, dilation, asymmetric pads, ceil_mode, fused residual, partial batches, bf16).
#  - cpu_parity_*: torchvision models with random weights and random BN statistics exported to
#    ONNX, against PyTorch: engine-only (same tensor, float64 reference, relative error <= 1e-5),
#    `imgsim extract` on real-size images (cosine >= 0.9999, relative L2 <= 1e-3) and bf16
#    (cosine >= 0.999, skipped without AVX-512 BF16).
imgsim_c_test(test_cpu_ops test_cpu_ops.c ASAN)
imgsim_py_test(cpu_parity_resnet18_op13 test_cpu_parity.py --arch=resnet18 --opset=13 --images=5 --batch-size=4 --extract --bf16)
imgsim_py_test(cpu_parity_resnet18_op17 test_cpu_parity.py --arch=resnet18 --opset=17 --images=3 --batch-size=2)
imgsim_py_test(cpu_parity_resnet50_op13 test_cpu_parity.py --arch=resnet50 --opset=13 --images=2 --batch-size=2)
imgsim_py_test(cpu_parity_resnet50_op17 test_cpu_parity.py --arch=resnet50 --opset=17 --images=4 --batch-size=4 --extract --bf16)
imgsim_py_test(cpu_parity_mobilenet_v2 test_cpu_parity.py --arch=mobilenet_v2 --size=96 --images=3 --batch-size=2 --bf16)
imgsim_py_test(cpu_parity_resnext test_cpu_parity.py --arch=resnext_small --size=64 --images=3 --batch-size=2 --bf16)
set_tests_properties(cpu_parity_resnet50_op13 cpu_parity_resnet50_op17 PROPERTIES TIMEOUT 900)
imgsim_py_test(cpu_bench test_cpu_bench.py)
