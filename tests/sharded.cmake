# Sharded stores (issue 15 item 3, helper "shardstore"): extract/run --layout=sharded (one
# features-K.npy + manifest-K.tsv per shard, listed in meta.json) against the single layout byte
# for byte, search/dedup/update/run on it, numpy float64 top-k, refusals naming the file, imgsim.Store
imgsim_py_test(store_sharded test_store_sharded.py)
if(TARGET imgsim_python)
  set_property(TEST store_sharded APPEND PROPERTY ENVIRONMENT "IMGSIM_PY_MODULE=$<TARGET_FILE:imgsim_python>")
endif()
set_tests_properties(store_sharded PROPERTIES TIMEOUT 600)
