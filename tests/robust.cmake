# Robustness tests (issue 12, helper "robust"): inputs that used to hang or give wrong answers with
# exit 0, two writers of one store, resource bounds, file names that are not UTF-8.
imgsim_py_test(robust_search test_robust_search.py)
imgsim_py_test(robust_hangs test_robust_hangs.py)
imgsim_py_test(robust_names test_robust_names.py)
imgsim_py_test(robust_mlp_head test_robust_mlp_head.py)
imgsim_py_test(robust_decode test_robust_decode.py)
imgsim_py_test(robust_writers test_robust_writers.py)
