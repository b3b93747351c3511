"""imgsim.Engine: a model planned for one device, embedding images into numpy arrays."""
import os
import struct
import sys
import zlib

import numpy as np

from . import _imgsim
from ._store import Store

_PRECISIONS = {"fp32": 0, "bf16": 1, "fp16": 2, "tf32": 3, "int8": 4}
_CALIB_METHODS = {"entropy": 0, "percentile": 1, "minmax": 2}
_DECODE = {"auto": 0, "cpu": 1, "gpu": 2}
_INVALID_ARG = 1  # IMGSIM_ERR_INVALID_ARG


def _bad(msg):
    """An InvalidArgumentError (also a ValueError) with msg."""
    return _imgsim.error(_INVALID_ARG, msg)


def _parse_device(device):
    """'cpu' | 'cuda' | 'cuda:N' -> (device code, index)."""
    d = "cpu" if device is None else str(device).strip().lower()
    if d == "cpu":
        return 0, 0
    if d == "cuda":
        return 1, 0
    if d.startswith("cuda:") and d[5:].isdigit():
        return 1, int(d[5:])
    raise _bad("device %r: expected 'cpu', 'cuda' or 'cuda:N'" % (device,))


def _dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float16):
        raise _bad("dtype %s: features are float32 or float16" % dt)
    return dt


# ---- items ------------------------------------------------------------------------------------

def _is_pil(x):
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(x, pil.Image)


def _png(a):
    """Lossless PNG bytes of a uint8 [H, W, 3] array (filter 0, fast zlib), for the library's
    decoder: the pixels it decodes are exactly a's."""
    h, w, _ = a.shape
    raw = np.empty((h, 1 + 3 * w), np.uint8)
    raw[:, 0] = 0
    raw[:, 1:] = a.reshape(h, 3 * w)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw.tobytes(), 1)) + chunk(b"IEND", b""))


def _pixels(a, i):
    """A uint8 [H, W, 3] array (C order) of an ndarray or PIL image item."""
    if _is_pil(a):
        a = np.asarray(a if a.mode == "RGB" else a.convert("RGB"))
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise _bad("item %d: an array must be uint8 [H, W, 3] (RGB), got %s %s" %
                   (i, getattr(a, "dtype", type(a).__name__), getattr(a, "shape", "")))
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise _bad("item %d: an empty %dx%d image" % (i, a.shape[1], a.shape[0]))
    return np.ascontiguousarray(a)


def _item(x, i):
    """(kind, object) for the C layer: (0, path bytes) or (1, encoded image bytes)."""
    if isinstance(x, (str, os.PathLike)):
        return (0, os.fsencode(x))
    if isinstance(x, (bytes, bytearray, memoryview)):
        return (1, x)
    if isinstance(x, np.ndarray) or _is_pil(x):
        return (1, _png(_pixels(x, i)))
    raise TypeError("item %d: expected a path, bytes, a uint8 HxWx3 numpy array or a PIL image, got %s" %
                    (i, type(x).__name__))


def _as_list(items):
    """items as a list; a single item (path, bytes, HxWx3 array, PIL image) becomes [item] and an
    [N, H, W, 3] array N items."""
    if isinstance(items, (str, os.PathLike, bytes, bytearray, memoryview)) or _is_pil(items):
        return [items]
    if isinstance(items, np.ndarray):
        if items.ndim == 3:
            return [items]
        if items.ndim == 4:
            return list(items)
    return list(items)


def _describe(x):
    if isinstance(x, (str, os.PathLike)):
        return os.fspath(x)
    if isinstance(x, (bytes, bytearray, memoryview)):
        return "%d bytes in memory" % len(x)
    return "pixels in memory"


def _progress_callback(bar):
    """A callback(done, total) for the C layer: bar itself when it is a plain callable, else an
    adapter feeding a tqdm-compatible bar (total set once, update(n) with the increments)."""
    if bar is None:
        return None
    if not hasattr(bar, "update") and callable(bar):
        return bar
    last = [0]

    def feed(done, total):
        if last[0] == 0 and getattr(bar, "total", None) != total:
            bar.total = total
            if hasattr(bar, "refresh"):
                bar.refresh()
        bar.update(done - last[0])
        last[0] = done

    return feed


_PRE_KEYS = ("resize", "crop", "mean", "std", "interpolation")


def _size_text(name, v, shorter_int):
    """resize/crop as the library spells them: an int is torchvision's (Resize(S): the shorter
    side; CenterCrop(N): N x N), a pair (h, w), a str as the CLI's option."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return ("shorter:%d" if shorter_int else "%d") % int(v)
    try:
        h, w = v
        return "%dx%d" % (int(h), int(w))
    except (TypeError, ValueError):
        raise _bad("%s=%r: expected an int, an (h, w) pair or a str" % (name, v)) from None


def _pre_tuple(resize=None, crop=None, mean=None, std=None, interpolation=None):
    """The preprocessing keyword arguments as the C layer takes them (None: all defaults)."""
    vals = [_size_text("resize", resize, True), _size_text("crop", crop, False)]
    for name, v in (("mean", mean), ("std", std)):
        if v is not None and not isinstance(v, str):
            try:
                v = ",".join(repr(float(x)) for x in v)
            except (TypeError, ValueError):
                raise _bad("%s=%r: expected three numbers" % (name, v)) from None
        vals.append(v)
    if interpolation is not None:
        interpolation = str(getattr(interpolation, "value", interpolation)).lower()  # torchvision's enum too
    vals.append(interpolation)
    return None if all(v is None for v in vals) else tuple(vals)


def _crop_hw(crop, default):
    """The output (h, w) of a crop argument (None: default)."""
    t = _size_text("crop", crop, False)
    if t is None:
        return tuple(int(x) for x in default)
    h, _, w = t.partition("x")
    try:
        return int(h), int(w or h)
    except ValueError:
        raise _bad("crop=%r: expected HxW or N" % (crop,)) from None


def preprocess(item, size=(224, 224), *, resize=None, crop=None, mean=None, std=None, interpolation=None,
               exif_rotate=True, dct_scaling=False, max_pixels=None):
    """The network input of one image, float32 [3, H, W] (what Engine.embed feeds the engine):
    decoded, EXIF-rotated (files and bytes), resized with PIL's antialiased filter, centre-cropped,
    scaled to [0, 1] and normalised, as torchvision's Resize + CenterCrop + ToTensor + Normalize.
    item: a path, bytes, a uint8 HxWx3 array or a PIL image.

    Default: resized straight to size = (H, W), ImageNet mean/std. resize: an int S (torchvision's
    Resize(S): the shorter side becomes S), an (h, w) pair, or "shorter:S" / "HxW"; crop: the
    centre crop (an int N for N x N, or (h, w)), the output size (default: size); mean, std: three
    numbers each; interpolation: "bilinear" (default) or "bicubic" (CLIP's)."""
    h, w = _crop_hw(crop, size)
    out = np.empty((3, h, w), np.float32)
    kind, obj = _item(item, 0)
    _imgsim._preprocess(out, kind, obj, exif_rotate=exif_rotate, dct_scaling=dct_scaling,
                        max_pixels=int(max_pixels or 0), pre=_pre_tuple(resize, crop, mean, std, interpolation))
    return out


class Engine:
    """A model loaded once and planned for one device and precision; embeds images many times.

    Engine(model, device="cpu", precision=None, batch_size=32, layer=None, engine_cache=None,
           threads=0, normalize=True, engine_file=None, calib=None)

    model: an ONNX file. device: "cpu", "cuda" or "cuda:N". precision: "fp32" | "bf16" (CPU) |
    "fp16" | "tf32" (CUDA) | "int8" (CPU, with calib); None is the device's default (fp32 on the
    CPU, fp16 on CUDA). calib: precision="int8"'s calibration file (imgsim.calibrate or
    `imgsim calibrate`), made for this model and layer: one for another raises MismatchError.
    A QDQ model (model_info's "quantized") runs int8 with its own scales: calib=None (a calib
    given with one raises InvalidArgumentError).
    batch_size: the largest batch (the CLI's --batch-size; "auto" on CUDA). layer: the embedding
    layer (None: the input of the final classifier). engine_cache: CUDA engine-file folder (None:
    $XDG_CACHE_HOME/imgsim, "off": none). threads: CPU inference threads (0: all cores).
    normalize: L2-normalise rows.

    resize, crop, mean, std, interpolation: the preprocessing embed() and extract() use unless
    they are given theirs (as imgsim.preprocess takes them: resize=256, crop=224 is torchvision's
    Resize(256) + CenterCrop(224); CLIP: resize=224, crop=224, interpolation="bicubic" and its
    mean/std). The crop must be the model's input size (the default). Default: resize straight to
    the input size, ImageNet mean/std.

    A context manager (``with imgsim.Engine(...) as eng:``) that frees the engine on exit; close()
    does the same. Thread safety: one engine may be shared by several Python threads. The engine
    runs one batch at a time (a lock inside the binding), while the threads' decoding and
    preprocessing run in parallel; every call releases the GIL.

    Raises FileError / FormatError naming the model file when it is missing or malformed,
    NoDeviceError where CUDA is absent, UnsupportedError for a precision the device lacks.
    """

    def __init__(self, model, device="cpu", precision=None, batch_size=32, layer=None, engine_cache=None,
                 threads=0, normalize=True, engine_file=None, calib=None, resize=None, crop=None, mean=None,
                 std=None, interpolation=None):
        dev, idx = _parse_device(device)
        if precision is None:
            prec = -1
        elif str(precision).lower() in _PRECISIONS:
            prec = _PRECISIONS[str(precision).lower()]
        else:
            raise _bad("precision %r: expected one of %s" % (precision, ", ".join(_PRECISIONS)))
        if batch_size == "auto":
            bs = 0
        else:
            bs = int(batch_size)
            if bs < 1:
                raise _bad("batch_size %r: expected a positive number or 'auto'" % (batch_size,))
        self.model = os.fspath(model)
        self._device = (dev, idx)
        extra = {} if calib is None else {"calib": os.fspath(calib)}
        self._pre = dict(resize=resize, crop=crop, mean=mean, std=std, interpolation=interpolation)
        _pre_tuple(**self._pre)  # malformed values fail here, before the engine is built
        self._e = _imgsim.Engine(self.model, layer, dev, idx, prec, bs, int(threads), bool(normalize),
                                 None if engine_cache is None else os.fspath(engine_cache),
                                 None if engine_file is None else os.fspath(engine_file), dev == 1, **extra)
        self._info = self._e.info()

    # -- what it is --
    @property
    def dim(self):
        """The feature dimension (columns of embed's output)."""
        return self._info["dim"]

    @property
    def input_size(self):
        """The network input (height, width); images are resized to it."""
        return (self._info["in_height"], self._info["in_width"])

    @property
    def device(self):
        """'cpu' or 'cuda:N'."""
        return "cpu" if self._device[0] == 0 else "cuda:%d" % self._device[1]

    @property
    def max_batch(self):
        """The largest batch the engine runs at once (embed's default batch)."""
        return self._info["max_batch"]

    def info(self):
        """A dict: dim, in_channels, in_height, in_width, max_batch, device, precision,
        device_bytes, device_name, build_seconds, loaded_from_file, model_imported, layer,
        model_sha256, calib_sha256 (int8: the calibration file's sha256, else ""), model."""
        d = self._e.info()
        d["device"] = self.device
        d.pop("device_index", None)
        return d

    def close(self):
        """Frees the engine (after a batch another thread is running). Safe to call twice; later
        calls on the engine raise InvalidArgumentError."""
        self._e.close()

    @property
    def closed(self):
        """True once close() ran."""
        return self._e.closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        if self.closed:
            return "<imgsim.Engine %s (closed)>" % self.model
        return "<imgsim.Engine %s on %s, %s, %d-d, input %dx%d>" % (
            self.model, self.device, self._info["precision"], self.dim, self.input_size[1], self.input_size[0])

    def _pre_for(self, **given):
        """The preprocessing tuple for a call: its own arguments, else the engine's."""
        return _pre_tuple(**{k: given[k] if given.get(k) is not None else self._pre[k] for k in _PRE_KEYS})

    # -- embedding --
    def embed(self, items, *, errors="raise", dtype="float32", out="numpy", batch_size=None, workers=0,
              exif_rotate=True, dct_scaling=False, max_pixels=None, resize=None, crop=None, mean=None, std=None,
              interpolation=None):
        """Features of images, one row per item, in order: numpy [n, dim] float32 (or float16).

        items: a list (or any iterable) of paths (str or os.PathLike), bytes objects (encoded
        JPEG/PNG/WebP), numpy uint8 [H, W, 3] RGB arrays or PIL images (converted to RGB like
        PIL's convert('RGB')); a single item gives one row, a uint8 [N, H, W, 3] array N rows.
        Files and bytes are decoded by imgsim (EXIF orientation applied unless
        exif_rotate=False); arrays and PIL images are taken as the pixels they hold.

        The same files give the same rows, bit for bit, as `imgsim extract` with the same engine
        settings: items go through the engine in batches of batch_size (default: the engine's
        batch) exactly as the CLI batches its files.

        errors="raise" (default): the first item that cannot be read or decoded raises (FileError,
        FormatError, TooLargeError, ...; .index is the item's position and .path its file, and the
        message names the file and the reason). errors="collect": returns (features, failures)
        where failures is a list of (index, message) and the rows of failed items are NaN: a NaN
        row never comes back without its failure listed.

        out="numpy" (default) returns a numpy array. out="dlpack" returns an object with
        __dlpack__ / __dlpack_device__ for torch.from_dlpack or cupy.from_dlpack: on a CUDA
        engine the features in device memory (a copy made once, handed over without another), on
        the CPU the numpy array itself (which speaks DLPack).

        workers: decoding threads (0: all cores). The GIL is released while images are decoded and
        the engine runs, so other Python threads go on.

        resize, crop, mean, std, interpolation: the preprocessing (see Engine; default the
        engine's).
        """
        if errors not in ("raise", "collect"):
            raise _bad("errors=%r: expected 'raise' or 'collect'" % (errors,))
        if out not in ("numpy", "dlpack"):
            raise _bad("out=%r: expected 'numpy' or 'dlpack'" % (out,))
        dt = _dtype(dtype)
        items = _as_list(items)
        pairs = [_item(x, i) for i, x in enumerate(items)]
        feats = np.empty((len(pairs), self.dim), np.float32)
        failed = self._e._embed(pairs, feats, batch_size=int(batch_size or 0), workers=int(workers),
                                stop_on_error=errors == "raise", exif_rotate=bool(exif_rotate),
                                dct_scaling=bool(dct_scaling), max_pixels=int(max_pixels or 0),
                                pre=self._pre_for(resize=resize, crop=crop, mean=mean, std=std,
                                                  interpolation=interpolation))
        # a file's message names the file; an in-memory item's names its position
        failed = [(i, st, m if pairs[i][0] == 0 else "item %d (%s): %s" % (
            i, _describe(items[i]), m[len("<memory>: "):] if m.startswith("<memory>: ") else m))
            for i, st, m in failed]
        if errors == "raise" and failed:
            i, status, msg = failed[0]
            path = os.fsdecode(pairs[i][1]) if pairs[i][0] == 0 else None
            raise _imgsim.error(status, msg, index=i, path=path)
        if dt != np.float32:
            feats = feats.astype(dt)
        if out == "dlpack" and self._device[0] == 1:
            feats = _imgsim._cuda_dlpack(feats, self._device[1])
        if errors == "collect":
            return feats, [(i, m) for i, _, m in failed]
        return feats

    def run(self, inputs):
        """Features of already preprocessed inputs: float32 [n, C, H, W] (as preprocess() makes
        them) -> float32 [n, dim]. Runs in batches of the engine's max_batch."""
        x = np.ascontiguousarray(inputs, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        out = np.empty((x.shape[0], self.dim), np.float32)
        self._e._run(x, out)
        return out

    # -- stores --
    def extract(self, input, out, *, progress=None, dtype="float32", batch_size=None, workers=0, decode="auto",
                exif_rotate=True, dct_scaling=False, max_pixels=None, resize=None, crop=None, mean=None, std=None,
                interpolation=None, layout="single", update=False, hash=False, durable=False, shard_size=None):
        """Features of every image of input into the store folder out, as `imgsim extract` does;
        returns the Store (memory-mapped).

        input: an ImageFolder-layout folder (label = first-level folder), a TSV list
        "path<TAB>label" with a header line, or one image file. A bad image is recorded in the
        store's manifest (Store.failed) and never fails the job; a missing input raises FileError.
        progress: None/False (silent), True (the library's progress lines on stderr), a callable
        progress(done, total), or a tqdm-compatible bar (anything with update(n); its total is
        set). dtype: "float32" or "float16" (features.npy). decode: "auto" | "cpu" | "gpu"
        (JPEG decoding with a CUDA engine and nvJPEG). The store's stats are in Store.stats.
        resize, crop, mean, std, interpolation: the preprocessing (see Engine; default the
        engine's), recorded in the store's meta.json. layout: "single" (features.npy) or "sharded"
        (one features-K.npy + manifest-K.tsv per shard, `extract --layout=sharded`; Store.shards).
        update: out is a complete store of the same model and settings: only the new and changed
        images of input are extracted, removed ones dropped (`extract --update`; a store that
        cannot be updated is extracted in full, with a warning). hash: record each input's SHA-256
        and, with update, compare content rather than modification time (`--hash`). durable:
        fsync every file before it counts as written (`--durable`). shard_size: images per shard
        (default 1024; a killed extraction called again keeps its complete shards).
        """
        if shard_size is not None and int(shard_size) < 1:
            raise _bad("shard_size=%r: expected a positive number of images" % (shard_size,))
        if layout not in ("single", "sharded"):
            raise _bad("layout=%r: expected 'single' or 'sharded'" % (layout,))
        if str(decode) not in _DECODE:
            raise _bad("decode=%r: expected 'auto', 'cpu' or 'gpu'" % (decode,))
        dt = _dtype(dtype)
        quiet, bar, own_bar = True, None, False
        if progress is True:
            try:
                from tqdm.auto import tqdm
                bar, own_bar = tqdm(desc="extract", unit="img"), True
            except ImportError:  # no tqdm: the library's own progress lines on stderr
                quiet = False
        elif progress is not None and progress is not False:
            bar = progress
        callback = _progress_callback(bar)
        try:
            stats = self._e._extract(os.fspath(input), os.fspath(out), batch_size=int(batch_size or 0),
                                     workers=int(workers), dtype=1 if dt == np.float16 else 0,
                                     decode=_DECODE[decode], quiet=quiet, exif_rotate=bool(exif_rotate),
                                     dct_scaling=bool(dct_scaling), max_pixels=int(max_pixels or 0),
                                     progress=callback, sharded=layout == "sharded", update=bool(update),
                                     hash=bool(hash), durable=bool(durable), shard_size=int(shard_size or 0),
                                     pre=self._pre_for(resize=resize, crop=crop, mean=mean, std=std,
                                                       interpolation=interpolation))
        finally:
            if own_bar:
                bar.close()
        store = Store(out)
        store.stats = stats
        return store


def calibrate(model, input, out, images=512, method="entropy", percentile=99.99, layer=None, *, batch_size=32,
              threads=0, exif_rotate=True, dct_scaling=False, max_pixels=None):
    """int8 calibration, as `imgsim calibrate`: runs model's float32 CPU engine over up to images
    images of input (a folder, TSV list or image; spread evenly over the sorted listing), decoded
    and preprocessed as extraction does, and writes each convolution tensor's int8 scale to the
    calibration file out (JSON, atomically; the same inputs give the CLI's bytes). method:
    "entropy" (TensorRT's KL-divergence calibration), "percentile" (of |x|, percentile in
    (0, 100]) or "minmax". layer: the embedding layer (None: the classifier's input). Returns a
    dict: model_sha256, layer, images (used), images_requested, n_tensors, percentile. Use the file
    with Engine(model, precision="int8", calib=out). Raises FileError / FormatError naming the
    model or input, InvalidArgumentError for a bad method or count."""
    if str(method).lower() not in _CALIB_METHODS:
        raise _bad("method %r: expected one of %s" % (method, ", ".join(_CALIB_METHODS)))
    images = int(images)
    if images < 1:
        raise _bad("images=%d: expected 1 or more" % images)
    kw = {}
    if max_pixels is not None:
        kw["max_pixels"] = int(max_pixels)
    return _imgsim._calibrate(os.fspath(model), os.fspath(input), os.fspath(out), images,
                              _CALIB_METHODS[str(method).lower()], float(percentile), layer, int(batch_size),
                              int(threads), bool(exif_rotate), bool(dct_scaling), **kw)
