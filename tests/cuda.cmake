# CUDA engine tests (owned by the cuda area). Only with the CUDA backend built (CI builds it: nvcc
# and cuDNN are installed there, no GPU).
#  - test_cuda_engine_file: engine file/plan logic, no GPU needed (runs in CI).
#  - test_cuda_parity: engine vs PyTorch on ResNet-18/50 (fp32/tf32/fp16), engine cache, corrupted
#    engine file, compute-sanitizer; exits 77 (skipped) without a GPU. Run on the GPU machine with
#    scripts/gpu-check.sh.
if(IMGSIM_HAVE_CUDA)
  imgsim_c_test(test_cuda_engine_file test_cuda_engine_file.c)

  add_executable(test_cuda_run test_cuda_run.c)
  target_include_directories(test_cuda_run PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(test_cuda_run PRIVATE imgsim)
  set_target_properties(test_cuda_run PROPERTIES LINKER_LANGUAGE CUDA)

  imgsim_py_test(test_cuda_parity test_cuda_parity.py)
  set_property(TEST test_cuda_parity APPEND PROPERTY ENVIRONMENT
               "IMGSIM_CUDA_RUN=$<TARGET_FILE:test_cuda_run>")
  set_tests_properties(test_cuda_parity PROPERTIES TIMEOUT 1200)
endif()
