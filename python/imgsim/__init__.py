"""imgsim: CNN image features and exact cosine search, from Python.

A thin layer over the C library (libimgsim, include/imgsim.h), built into the extension module
``imgsim._imgsim``. Numpy arrays in and out, zero-copy where it can (stores are memory-mapped,
search reads numpy buffers in place), the GIL released around every long call, and failures raised
as :class:`imgsim.Error` subclasses carrying the library's message (file and reason)::

    import imgsim
    with imgsim.Engine("resnet50.onnx") as eng:          # device="cuda" for the GPU
        store = eng.extract("photos/", "store/")          # a feature store, as `imgsim extract`
        q = eng.embed(["query.jpg"])                      # [1, 2048] float32, L2-normalised
    scores, idx = imgsim.search(store, q, k=5)            # exact top-k, ties by lower row
    print([store.paths[i] for i in idx[0]])

Public names: Engine, Store, search, dedup, split, run, calibrate, preprocess, model_info, the exception
classes (Error and one subclass per library status) and set_log_level.
"""
from . import _imgsim
from ._engine import Engine, calibrate, preprocess
from ._imgsim import (BackendError, Error, FileError, FormatError, InternalError, InvalidArgumentError,
                      MismatchError, NoDeviceError, OutOfMemoryError, TooLargeError, UnsupportedError)
from ._job import run, split
from ._search import dedup, search
from ._store import Store

__version__ = _imgsim.version()


def model_info(path, layer=None):
    """What an ONNX model holds, as a dict: dim (of the embedding layer), input (C, H, W), opset,
    layer (the chosen value), sha256 (of the file), n_nodes (after optimisation), embedding (how the
    layer was chosen, in words), operators (the optimised graph's operator counts) and quantized
    (True: a QDQ model, its QuantizeLinear/DequantizeLinear scales are what precision="int8" runs
    with, no calibration file).

    layer=None picks the input of the final classifier, as the CLI does. Raises FileError or
    FormatError naming the file."""
    return _imgsim.model_info(path, layer)


def set_log_level(level):
    """Library log messages go to stderr at or below level: 0 quiet, 1 error, 2 warn (default for
    the package), 3 info, 4 debug. Process-wide."""
    _imgsim.set_log_level(int(level))


def has_cuda():
    """True when this build of imgsim has the CUDA backend (a GPU may still be absent)."""
    return _imgsim.has_cuda()


# a notebook gets warnings, not the CLI's info lines (set_log_level(3) brings them back)
_imgsim.set_log_level(2)

__all__ = ["Engine", "Store", "search", "dedup", "split", "run", "calibrate", "preprocess", "model_info",
           "set_log_level",
           "has_cuda", "Error", "InvalidArgumentError", "OutOfMemoryError", "FileError", "FormatError",
           "UnsupportedError", "TooLargeError", "MismatchError", "NoDeviceError", "BackendError", "InternalError"]
