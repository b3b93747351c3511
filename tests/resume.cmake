# Resumable and incremental stores (issue 12, items 6 and 7, helper "resume").
imgsim_py_test(resume_kill test_resume.py)
imgsim_py_test(resume_update test_update.py)
# --durable (issue 12 item 6): every store file fsynced before its rename and its folder after, as
# strace sees it; none without it; run durable by default (skipped without strace)
imgsim_py_test(durable test_durable.py)
