# Report and serve tests (issue 17): the HTML report checked in a real headless Chromium, and
# `imgsim serve` over HTTP on 127.0.0.1 (the page test drives Chromium too). Without
# libmicrohttpd the serve tests skip; without chromium the page tests skip.
if(IMGSIM_HAVE_MHD)
  set(mhd_env "IMGSIM_HAVE_MHD=1")
else()
  set(mhd_env "IMGSIM_HAVE_MHD=0")
endif()
foreach(t serve_api serve_limits serve_page report_page)
  imgsim_py_test(${t} test_${t}.py)
  set_property(TEST ${t} APPEND PROPERTY ENVIRONMENT "${mhd_env}")
  set_tests_properties(${t} PROPERTIES TIMEOUT 180)
endforeach()
# A build without libmicrohttpd (-DIMGSIM_SERVE=OFF, or no libmicrohttpd-dev) compiles the other
# half of cmd_serve.c (the stub that says how to get the server): checked here, warning-free, so
# that half cannot rot unseen whichever way this build was configured.
add_test(NAME serve_off_compiles
         COMMAND ${CMAKE_C_COMPILER} -std=c11 -fsyntax-only -Wall -Wextra -Werror -UIMGSIM_HAVE_MHD
                 -I${PROJECT_SOURCE_DIR}/include -I${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/src/cli/cmd_serve.c)
