# Search tests (exact top-k, dedup): owned by the search area.
imgsim_c_test(test_search_unit test_search_unit.c ASAN)
imgsim_py_test(test_search_topk test_search_topk.py)
imgsim_py_test(test_search_dedup test_search_dedup.py)
