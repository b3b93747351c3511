# GPU exact search tests (issue 7), owned by the gpusearch area. Both skip (exit 77) where imgsim
# was built without CUDA or no GPU is present, as in CI; scripts/gpu-check.sh runs them on a GPU.
imgsim_c_test(test_gpusearch_api test_gpusearch_api.c)
set_tests_properties(test_gpusearch_api PROPERTIES SKIP_RETURN_CODE 77)
imgsim_py_test(test_gpusearch_parity test_gpusearch_parity.py)

# Benchmark driver for bench/search_gpu.sh (not installed, not a test).
if(IMGSIM_HAVE_CUDA)
  add_executable(gpusearch_bench test_gpusearch_bench.c)
  target_include_directories(gpusearch_bench PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(gpusearch_bench PRIVATE ${IMGSIM_WARN})
  target_link_libraries(gpusearch_bench PRIVATE imgsim)
  set_target_properties(gpusearch_bench PROPERTIES LINKER_LANGUAGE CUDA)
endif()
