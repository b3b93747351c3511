# Fuzz harness replay (helper "fuzz"): each libFuzzer harness of fuzz/ linked with a plain main()
# (fuzz/standalone.c) and the sanitizer build of the library, run over its committed seeds
# (fuzz/corpus/TARGET) and the inputs that once crashed it (fuzz/regress/TARGET). This keeps the
# harnesses compiling in the ordinary build and every fixed crash fixed; the fuzzing itself is
# `make fuzz` (clang, see fuzz/README.md).
if(IMGSIM_ASAN)
  set(IMGSIM_FUZZ_REPLAY_LIB imgsim_asan)
  set(IMGSIM_FUZZ_REPLAY_ENV "ASAN_OPTIONS=detect_leaks=1" "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1")
else()
  set(IMGSIM_FUZZ_REPLAY_LIB imgsim)
  set(IMGSIM_FUZZ_REPLAY_ENV "")
endif()
foreach(t image onnx npy tsv)
  add_executable(fuzz_${t}_replay ${PROJECT_SOURCE_DIR}/fuzz/fuzz_${t}.c ${PROJECT_SOURCE_DIR}/fuzz/fuzz_util.c
                 ${PROJECT_SOURCE_DIR}/fuzz/standalone.c)
  target_include_directories(fuzz_${t}_replay PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(fuzz_${t}_replay PRIVATE ${IMGSIM_WARN})
  target_link_libraries(fuzz_${t}_replay PRIVATE ${IMGSIM_FUZZ_REPLAY_LIB})
  if(IMGSIM_HAVE_CUDA AND NOT IMGSIM_ASAN)
    set_target_properties(fuzz_${t}_replay PROPERTIES LINKER_LANGUAGE CUDA)
  endif()
  add_test(NAME fuzz_${t}_replay COMMAND fuzz_${t}_replay ${PROJECT_SOURCE_DIR}/fuzz/corpus/${t}
           ${PROJECT_SOURCE_DIR}/fuzz/regress/${t})
  set_tests_properties(fuzz_${t}_replay PROPERTIES ENVIRONMENT "${IMGSIM_FUZZ_REPLAY_ENV}")
endforeach()
