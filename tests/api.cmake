# Public API tests (issue 11): the store, compatibility and dedup calls through imgsim.h alone,
# against numpy/hashlib references.
imgsim_c_test(test_api_store test_api_store.c ASAN)
# the dataset, .npy and folder-lock calls against Python's os/csv and numpy
imgsim_c_test(test_api_data test_api_data.c ASAN)
# The public headers as the only door: src/cli/ and python/src/ include no library-internal header
# and name no ims_ function; nm of the libraries shows only imgsim_/ims_ symbols.
set(api_libs $<TARGET_FILE:imgsim> $<TARGET_FILE:imgsim_synth>)
if(IMGSIM_ASAN)
  list(APPEND api_libs $<TARGET_FILE:imgsim_asan> $<TARGET_FILE:imgsim_synth_asan>)
endif()
imgsim_py_test(api_public_only test_api_public_only.py ${api_libs})
# imgsim_extract_engines (issue 15, --device=cuda:0,1): 2-4 CPU engines write the store one engine
# writes, byte for byte (numpy reads the same matrix); cancel + resume; refusals
imgsim_c_test(test_extract_engines test_extract_engines.c ASAN)
