# Search tests (exact top-k, dedup): owned by the search area.
imgsim_c_test(test_search_unit test_search_unit.c ASAN)
imgsim_py_test(test_search_topk test_search_topk.py)
imgsim_py_test(test_search_dedup test_search_dedup.py)
# imgsim search across MPI ranks (mpirun on the CPU) against the one-process search
imgsim_py_test(mpi_search test_mpi_search.py)
if(IMGSIM_HAVE_MPI)
  set_property(TEST mpi_search APPEND PROPERTY ENVIRONMENT "IMGSIM_HAVE_MPI=1")
endif()
set_tests_properties(mpi_search PROPERTIES TIMEOUT 300)
# extract and run across MPI ranks (issue 15): stores and results against one process's
imgsim_py_test(mpi_extract test_mpi_extract.py)
imgsim_py_test(mpi_run test_mpi_run.py)
imgsim_py_test(mpi_dedup test_mpi_dedup.py)
if(IMGSIM_HAVE_MPI)
  set_property(TEST mpi_extract mpi_run mpi_dedup APPEND PROPERTY ENVIRONMENT "IMGSIM_HAVE_MPI=1")
endif()
set_tests_properties(mpi_extract mpi_run mpi_dedup PROPERTIES TIMEOUT 300)
