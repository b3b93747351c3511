# int8 quantisation (owner: int8).
#  - test_quant_calib: the calibration maths of src/quant/ (entropy/percentile/min-max thresholds,
#    histograms, per-channel weight scales, half-to-even requantisation) against numpy versions
#    of the same definitions.
imgsim_c_test(test_quant_calib test_quant_calib.c ASAN)
