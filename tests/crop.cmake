# Preprocessing a ViT/CLIP user expects (helper "prep", issue 14 item 5): --resize=HxW|shorter:S,
# --crop, --interp=bilinear|bicubic, --mean/--std against torchvision (bit-exact on PNGs), the
# full pipeline against torch (cosine >= 0.9999), meta.json / job.json recording and the
# refusals of search, update and resumed extraction; the CUDA path (skipped without a GPU).
imgsim_py_test(preprocess_crop test_preprocess_crop.py)
if(TARGET imgsim_python)
  set_property(TEST preprocess_crop APPEND PROPERTY ENVIRONMENT "IMGSIM_PY_MODULE=$<TARGET_FILE:imgsim_python>")
endif()
imgsim_py_test(pipeline_crop test_pipeline_crop.py)
if(TARGET imgsim_python)
  set_property(TEST pipeline_crop APPEND PROPERTY ENVIRONMENT "IMGSIM_PY_MODULE=$<TARGET_FILE:imgsim_python>")
endif()
# on a CUDA engine: mean/std in the GPU kernel, resize + crop preprocessed on the CPU, --decode=gpu
# refused with a crop (skipped, 77, without a GPU)
imgsim_py_test(gpu_crop test_gpu_crop.py)
