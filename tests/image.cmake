# Image decoding and preprocessing tests (owner: image). Python tests compare the CLI's output
# with PIL / torchvision; the bad-input test also runs the sanitizer build.
add_executable(test_image_mkycck test_image_mkycck.c)
target_link_libraries(test_image_mkycck PRIVATE PkgConfig::DEPS)

imgsim_py_test(test_image_decode test_image_decode.py $<TARGET_FILE:test_image_mkycck>)
imgsim_py_test(test_image_preprocess test_image_preprocess.py)
imgsim_py_test(test_image_badinput test_image_badinput.py)
imgsim_c_test(test_image_api test_image_api.c ASAN)
