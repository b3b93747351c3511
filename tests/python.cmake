# The Python package (python/, pyproject.toml): pip install of this checkout into a fresh venv,
# then the installed package against the CLI, numpy and torch (test_python_package.py runs
# python_checks.py). Skipped when venv/pip/scikit-build-core cannot be had.
imgsim_py_test(python_package test_python_package.py)
set_tests_properties(python_package PROPERTIES TIMEOUT 900)
