# Public API tests (issue 11): the store, compatibility and dedup calls through imgsim.h alone,
# against numpy/hashlib references.
imgsim_c_test(test_api_store test_api_store.c ASAN)
