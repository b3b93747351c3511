# Engine options and GPU decoding's shared parts (owner: engine).
#  - test_engine_opts: imgsim_engine_opts resolved once (ims_engine_config): defaults, auto batch
#    size per device, one error per mistake before any file or device is touched.
#  - test_gpu_route: the GPU decoding interface's shared code through a fake implementation:
#    job lifetime, ready flag, JPEG routing by size (AUTO) and in GPU mode. No GPU needed.
imgsim_c_test(test_engine_opts test_engine_opts.c ASAN)
imgsim_c_test(test_gpu_route test_gpu_route.c ASAN)
#  - tuning_env: getenv only in src/core/tune.c, and every knob it reads in README "Tuning knobs".
imgsim_py_test(tuning_env test_tuning_env.py)
