# Resumable and incremental stores (issue 12, items 6 and 7, helper "resume").
imgsim_py_test(resume_kill test_resume.py)
imgsim_py_test(resume_update test_update.py)
