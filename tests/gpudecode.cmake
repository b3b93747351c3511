# GPU input pipeline tests (lead): nvJPEG + fused preprocessing against the CPU path, and mixed
# batches through imgsim extract --device=cuda --decode=gpu, and AUTO routing against the CPU
# pipeline. Skipped (exit 77) without a GPU.
imgsim_py_test(gpu_decode test_gpu_decode.py)
imgsim_py_test(gpu_dedup test_gpu_dedup.py)
imgsim_py_test(gpu_run test_gpu_run.py)
imgsim_py_test(gpu_auto test_gpu_auto.py)
# The Python package's DLPack output on a CUDA engine, through this build's extension module
if(TARGET imgsim_python)
  imgsim_py_test(gpu_dlpack test_gpu_dlpack.py)
  set_property(TEST gpu_dlpack APPEND PROPERTY ENVIRONMENT "IMGSIM_PY_MODULE=$<TARGET_FILE:imgsim_python>")
endif()
# Several CUDA engines in one job (issue 15): --device=cuda:0,0 / cuda:all extract, search and run
# against cuda:0 and numpy; mpirun -np 2 on one GPU. Skipped (77) without a GPU.
imgsim_py_test(gpu_multi test_gpu_multi.py)
if(IMGSIM_HAVE_MPI)
  set_property(TEST gpu_multi APPEND PROPERTY ENVIRONMENT "IMGSIM_HAVE_MPI=1")
endif()
