# Pipeline tests (lead): extraction into stores, search of stores and images, the run job,
# store reuse, and the core unit tests.
imgsim_c_test(test_core test_core.c ASAN)
imgsim_py_test(pipeline_extract test_pipeline_extract.py)
imgsim_py_test(pipeline_run test_pipeline_run.py)
