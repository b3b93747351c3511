# Data area: dataset listing, stratified split, feature-store reading, synthetic datasets.
imgsim_py_test(data_split test_data_split.py)
imgsim_py_test(data_listing test_data_listing.py)
imgsim_c_test(test_data_store test_data_store.c ASAN)
imgsim_py_test(data_synth test_data_synth.py)
imgsim_c_test(test_data_dataset test_data_dataset.c ASAN)
