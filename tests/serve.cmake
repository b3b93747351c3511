# Report and serve tests (issue 17): the HTML report checked in a real headless Chromium, and
# `imgsim serve` over HTTP on 127.0.0.1 (the page test drives Chromium too). Without
# libmicrohttpd the serve tests skip; without chromium the page tests skip.
if(IMGSIM_HAVE_MHD)
  set(mhd_env "IMGSIM_HAVE_MHD=1")
else()
  set(mhd_env "IMGSIM_HAVE_MHD=0")
endif()
foreach(t serve_api serve_page report_page)
  imgsim_py_test(${t} test_${t}.py)
  set_property(TEST ${t} APPEND PROPERTY ENVIRONMENT "${mhd_env}")
  set_tests_properties(${t} PROPERTIES TIMEOUT 180)
endforeach()
