/*
 * imgsim_module.c: imgsim._imgsim, the CPython extension under the imgsim package.
 *
 * A thin C layer over include/imgsim.h (and nothing else of the library): the engine handle, a
 * batched embedding pipeline over paths and in-memory images, store extraction, exact search,
 * preprocessing, and DLPack export of device copies. The pure-Python part (python/imgsim/) turns
 * Python items into the (kind, object) pairs this layer takes, allocates numpy outputs and wraps
 * stores; this file touches numpy only through the buffer protocol, so it builds without numpy.
 *
 * Rules every function here keeps:
 *  - The GIL is released around every call into the library that can take long (loading,
 *    preprocessing, inference, extraction, search). Everything a released section needs (paths,
 *    buffers) is taken out of Python objects before, and the objects are kept alive.
 *  - An engine is used by one thread at a time: each Engine object has a mutex, taken (with the
 *    GIL released) around every library call on its handle. Python threads may share an engine;
 *    their batches run one after another, while their decoding runs in parallel.
 *  - Failures raise imgsim.Error subclasses (one per imgsim_status) carrying the library's
 *    message, read from imgsim_last_error() on the thread that made the failing call.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <imgsim.h>

#include "dlpack.h"
#ifdef IMGSIM_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

/* ---- errors ------------------------------------------------------------------------------ */

#define N_STATUS (IMGSIM_ERR_INTERNAL + 1)
static PyObject *Error;                /* imgsim.Error */
static PyObject *status_exc[N_STATUS]; /* one subclass per failing status */

/* The exception instance for status st with message msg (bytes in the file-system encoding, as
 * the library writes file names); index and path (may be NULL) describe the item of an embed. */
static PyObject *make_error(imgsim_status st, const char *msg, Py_ssize_t index, PyObject *path) {
    PyObject *cls = st > 0 && st < N_STATUS && status_exc[st] ? status_exc[st] : Error;
    PyObject *m = PyUnicode_DecodeFSDefault(msg && *msg ? msg : imgsim_status_str(st));
    if (!m) return NULL;
    PyObject *exc = PyObject_CallOneArg(cls, m);
    if (!exc) {
        Py_DECREF(m);
        return NULL;
    }
    PyObject *status = PyLong_FromLong((long)st), *idx = index >= 0 ? PyLong_FromSsize_t(index) : Py_NewRef(Py_None);
    int bad = !status || !idx || PyObject_SetAttrString(exc, "status", status) ||
              PyObject_SetAttrString(exc, "message", m) || PyObject_SetAttrString(exc, "index", idx) ||
              PyObject_SetAttrString(exc, "path", path ? path : Py_None);
    Py_XDECREF(status);
    Py_XDECREF(idx);
    Py_DECREF(m);
    if (bad) {
        Py_DECREF(exc);
        return NULL;
    }
    return exc;
}

/* Raises the exception for st and msg; returns NULL. */
static PyObject *raise_status(imgsim_status st, const char *msg) {
    PyObject *exc = make_error(st, msg, -1, NULL);
    if (exc) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

static int num_cores(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* ---- buffers ----------------------------------------------------------------------------- */

/* Takes a C-contiguous buffer of element format fmt ("f", "e", "q", "B") and ndim dimensions
 * (ndim 0: any). writable: for outputs. Returns 0, or -1 with TypeError/ValueError set. */
static int get_buffer(PyObject *o, Py_buffer *v, const char *what, const char *fmt, int ndim, int writable) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(o, v, flags) != 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous%s array", what, writable ? " writable" : "");
        return -1;
    }
    const char *f = v->format ? v->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    int ok_fmt = !strcmp(f, fmt) || (!strcmp(fmt, "q") && !strcmp(f, "l") && sizeof(long) == 8);
    if (!ok_fmt || (ndim && v->ndim != ndim)) {
        PyErr_Format(PyExc_ValueError, "%s must be %d-D of element format '%s' (got %d-D '%s')", what, ndim, fmt,
                     v->ndim, f);
        PyBuffer_Release(v);
        return -1;
    }
    return 0;
}

/* The element type of the float matrix o: float16 where its buffer's format is 'e', else float32
 * (also when o has no buffer: get_buffer then says what is wrong); *fmt is the format for
 * get_buffer to require. */
static imgsim_dtype float_buffer_dtype(PyObject *o, const char **fmt) {
    imgsim_dtype dt = IMGSIM_F32;
    *fmt = "f";
    Py_buffer probe;
    if (PyObject_GetBuffer(o, &probe, PyBUF_FORMAT | PyBUF_ND) == 0) {
        const char *f = probe.format ? probe.format : "B";
        if (*f == '<' || *f == '=') f++;
        if (!strcmp(f, "e")) *fmt = "e", dt = IMGSIM_F16;
        PyBuffer_Release(&probe);
    } else {
        PyErr_Clear();
    }
    return dt;
}

/* ---- Engine ------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    imgsim_engine *e;     /* NULL once closed */
    imgsim_engine_info info;
    pthread_mutex_t mu;   /* held around every library call on e */
    PyObject *model_path; /* bytes */
} EngineObject;

/* Locks the engine with the GIL released (a thread holding mu may be waiting for the GIL). */
static void engine_lock(EngineObject *self) {
    if (pthread_mutex_trylock(&self->mu) == 0) return;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->mu);
    Py_END_ALLOW_THREADS
}

static PyObject *Engine_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    EngineObject *self = (EngineObject *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    pthread_mutex_init(&self->mu, NULL);
    return (PyObject *)self;
}

static void Engine_dealloc(EngineObject *self) {
    imgsim_engine_destroy(self->e); /* nobody else holds a reference, so nobody holds mu */
    self->e = NULL;
    pthread_mutex_destroy(&self->mu);
    Py_XDECREF(self->model_path);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Engine_init(EngineObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"model",       "layer",        "device",      "device_index",
                             "precision",   "batch_size",   "threads",     "normalize",
                             "engine_cache", "engine_file", "prepare_gpu_decode", "calib", NULL};
    PyObject *model = NULL, *calib = NULL;
    const char *layer = NULL, *cache = NULL, *efile = NULL;
    int device = 0, device_index = 0, precision = -1, batch = 32, threads = 0, normalize = 1, prep = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|ziiiiipzzpO&", kwlist, PyUnicode_FSConverter, &model,
                                     &layer, &device, &device_index, &precision, &batch, &threads, &normalize,
                                     &cache, &efile, &prep, PyUnicode_FSConverter, &calib))
        return -1;
    if (self->e) {
        PyErr_SetString(PyExc_RuntimeError, "Engine is already initialised");
        Py_DECREF(model);
        Py_XDECREF(calib);
        return -1;
    }
    imgsim_engine_opts o;
    imgsim_engine_opts_init(&o);
    o.device = device ? IMGSIM_DEVICE_CUDA : IMGSIM_DEVICE_CPU;
    o.device_index = device_index;
    if (precision >= 0) {
        o.precision = (imgsim_precision)precision;
        o.precision_set = 1;
    }
    o.max_batch = batch;
    o.threads = threads;
    o.normalize = normalize;
    o.engine_cache = cache;
    o.engine_file = efile;
    o.prepare_gpu_decode = prep;
    o.calib_file = calib ? PyBytes_AS_STRING(calib) : NULL; /* int8: read while the engine is planned */
    imgsim_engine *e = NULL;
    imgsim_status st;
    char msg[1024] = "";
    const char *path = PyBytes_AS_STRING(model);
    Py_BEGIN_ALLOW_THREADS
    st = imgsim_engine_load(&e, path, layer, &o);
    if (st) snprintf(msg, sizeof msg, "%s", imgsim_last_error());
    Py_END_ALLOW_THREADS
    Py_XDECREF(calib);
    if (st) {
        Py_DECREF(model);
        raise_status(st, msg);
        return -1;
    }
    imgsim_engine_get_info(e, &self->info);
    self->e = e;
    self->model_path = model;
    return 0;
}

/* The open engine, or NULL with an exception set. */
static imgsim_engine *engine_open(EngineObject *self) {
    if (!self->e) raise_status(IMGSIM_ERR_INVALID_ARG, "the engine is closed");
    return self->e;
}

static PyObject *Engine_close(EngineObject *self, PyObject *unused) {
    engine_lock(self); /* waits for a running batch of another thread */
    imgsim_engine *e = self->e;
    self->e = NULL;
    pthread_mutex_unlock(&self->mu);
    Py_BEGIN_ALLOW_THREADS
    imgsim_engine_destroy(e);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *Engine_info(EngineObject *self, PyObject *unused) {
    if (!engine_open(self)) return NULL;
    const imgsim_engine_info *i = &self->info;
    return Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:s,s:i,s:s,s:n,s:s,s:d,s:O,s:O,s:s,s:s,s:s,s:O&}", "dim", i->dim,
                         "in_channels", i->in_channels, "in_height", i->in_height, "in_width", i->in_width,
                         "max_batch", i->max_batch, "device", i->device == IMGSIM_DEVICE_CUDA ? "cuda" : "cpu",
                         "device_index", 0, "precision", imgsim_precision_str(i->precision), "device_bytes",
                         (Py_ssize_t)i->device_bytes, "device_name", i->device_name, "build_seconds",
                         i->build_seconds, "loaded_from_file", i->loaded_from_file ? Py_True : Py_False,
                         "model_imported", i->model_imported ? Py_True : Py_False, "layer", i->layer,
                         "model_sha256", i->model_sha256, "calib_sha256", i->calib_sha256, "model",
                         PyUnicode_DecodeFSDefault,
                         PyBytes_AS_STRING(self->model_path));
}

static PyObject *Engine_get_dim(EngineObject *self, void *c) {
    return PyLong_FromLong(self->info.dim);
}

static PyObject *Engine_get_closed(EngineObject *self, void *c) {
    return PyBool_FromLong(self->e == NULL);
}

/* _run(input, out): input float32 [n, C, H, W], out float32 [n, dim]; runs in chunks of the
 * engine's max_batch. */
static PyObject *Engine_run(EngineObject *self, PyObject *args) {
    PyObject *in_o, *out_o;
    if (!PyArg_ParseTuple(args, "OO", &in_o, &out_o) || !engine_open(self)) return NULL;
    Py_buffer in, out;
    if (get_buffer(in_o, &in, "input", "f", 4, 0)) return NULL;
    if (get_buffer(out_o, &out, "out", "f", 2, 1)) {
        PyBuffer_Release(&in);
        return NULL;
    }
    const imgsim_engine_info *i = &self->info;
    Py_ssize_t n = in.shape[0];
    PyObject *ret = NULL;
    if (in.shape[1] != i->in_channels || in.shape[2] != i->in_height || in.shape[3] != i->in_width ||
        out.shape[0] != n || out.shape[1] != i->dim) {
        PyErr_Format(PyExc_ValueError, "input must be [n, %d, %d, %d] and out [n, %d]", i->in_channels, i->in_height,
                     i->in_width, i->dim);
        goto done;
    }
    imgsim_status st = IMGSIM_OK;
    char msg[1024] = "";
    size_t img = (size_t)i->in_channels * (size_t)i->in_height * (size_t)i->in_width;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->mu);
    if (!self->e) {
        st = IMGSIM_ERR_INVALID_ARG;
        snprintf(msg, sizeof msg, "the engine is closed");
    }
    for (Py_ssize_t b = 0; b < n && !st; b += i->max_batch) {
        int c = (int)(n - b < i->max_batch ? n - b : i->max_batch);
        st = imgsim_engine_run(self->e, (const float *)in.buf + (size_t)b * img, c, (float *)out.buf + (size_t)b * (size_t)i->dim);
        if (st) snprintf(msg, sizeof msg, "%s", imgsim_last_error());
    }
    pthread_mutex_unlock(&self->mu);
    Py_END_ALLOW_THREADS
    if (st)
        raise_status(st, msg);
    else
        ret = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&in);
    PyBuffer_Release(&out);
    return ret;
}

/* ---- progress and interruption ----------------------------------------------------------- */

/* A long call's progress callback (imgsim_progress_fn) into Python: takes the GIL, lets Ctrl-C
 * through (PyErr_CheckSignals, effective on the main thread) and calls the Python callable fn
 * (may be NULL) with (done, total). A Python exception stops the call and is kept for the caller
 * to raise in place of IMGSIM_ERR_CANCELLED. */
typedef struct py_progress {
    PyObject *fn;
    PyObject *exc, *exc_value, *exc_tb; /* the exception that stopped the call (exc: its type) */
} py_progress;

static int progress_cb(void *user, int64_t done, int64_t total) {
    py_progress *c = user;
    PyGILState_STATE g = PyGILState_Ensure();
    int stop = PyErr_CheckSignals() < 0;
    if (!stop && c->fn) {
        PyObject *r = PyObject_CallFunction(c->fn, "LL", (long long)done, (long long)total);
        stop = r == NULL;
        Py_XDECREF(r);
    }
    if (stop && !c->exc) PyErr_Fetch(&c->exc, &c->exc_value, &c->exc_tb);
    PyErr_Clear();
    PyGILState_Release(g);
    return stop;
}

/* ---- embedding pipeline ------------------------------------------------------------------ */

/* What an item is, as the Python layer hands it over. */
enum { ITEM_PATH = 0, ITEM_ENCODED = 1 };

typedef struct emb_item {
    int kind;
    const char *path;  /* ITEM_PATH: file-system encoded */
    const void *data;  /* ITEM_ENCODED: the file's bytes */
    size_t len;
} emb_item;

typedef struct emb_result {
    imgsim_status st;
    char *msg; /* malloc'ed, failures only */
} emb_result;

/* Workers preprocess items into a ring of S slots of B images; the calling thread runs each full
 * slot through the engine (batch b in slot b % S), in order, writing rows straight into out. The
 * batches are the CLI extraction's: items 0..B-1, B..2B-1, ..., a failed item's input zeroed in
 * place, so the same files give the same features bit for bit. */
typedef struct emb_job {
    EngineObject *eng;
    const emb_item *items;
    emb_result *res;
    int64_t n, n_batches;
    int B, S;
    size_t img_floats;
    imgsim_preprocess_opts pre;
    float *ring;         /* S * B * img_floats */
    int64_t *slot_batch; /* the batch each slot serves now */
    int *slot_done;      /* items done in it */
    atomic_llong next;
    int abort;
    pthread_mutex_t mu;
    pthread_cond_t cv_free, cv_full;
    py_progress *interrupt; /* checked between batches (Ctrl-C) */
} emb_job;

static int batch_count(const emb_job *j, int64_t b) {
    int64_t left = j->n - b * j->B;
    return (int)(left < j->B ? left : j->B);
}

static void *emb_worker(void *arg) {
    emb_job *j = arg;
    for (;;) {
        int64_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n) break;
        int64_t b = i / j->B;
        int slot = (int)(b % j->S);
        pthread_mutex_lock(&j->mu);
        while (j->slot_batch[slot] != b && !j->abort) pthread_cond_wait(&j->cv_free, &j->mu);
        int aborted = j->abort;
        pthread_mutex_unlock(&j->mu);
        if (aborted) break;
        float *dst = j->ring + ((size_t)slot * (size_t)j->B + (size_t)(i % j->B)) * j->img_floats;
        const emb_item *it = &j->items[i];
        imgsim_status st = it->kind == ITEM_PATH ? imgsim_preprocess_file(dst, it->path, &j->pre)
                                                 : imgsim_preprocess_mem(dst, it->data, it->len, &j->pre);
        j->res[i].st = st;
        if (st) {
            const char *m = imgsim_last_error();
            j->res[i].msg = strdup(m && *m ? m : imgsim_status_str(st));
            memset(dst, 0, j->img_floats * sizeof(float)); /* a defined input for the dropped row */
        }
        pthread_mutex_lock(&j->mu);
        if (++j->slot_done[slot] == batch_count(j, b)) pthread_cond_broadcast(&j->cv_full);
        pthread_mutex_unlock(&j->mu);
    }
    return NULL;
}

/* The consumer; runs without the GIL. Returns the status of an engine failure (message in msg),
 * else IMGSIM_OK; with stop_on_error, stops after the first batch holding a failed item. */
static imgsim_status emb_consume(emb_job *j, float *out, int stop_on_error, char *msg, size_t msg_len) {
    int dim = j->eng->info.dim;
    for (int64_t b = 0; b < j->n_batches; b++) {
        int slot = (int)(b % j->S), count = batch_count(j, b);
        pthread_mutex_lock(&j->mu);
        while (j->slot_done[slot] < count) pthread_cond_wait(&j->cv_full, &j->mu);
        pthread_mutex_unlock(&j->mu);
        int failed = 0;
        for (int k = 0; k < count; k++) failed |= j->res[b * j->B + k].st != IMGSIM_OK;
        if (failed && stop_on_error) return IMGSIM_OK;
        float *o = out + (size_t)b * (size_t)j->B * (size_t)dim;
        imgsim_status st;
        pthread_mutex_lock(&j->eng->mu);
        if (j->eng->e) {
            st = imgsim_engine_run(j->eng->e, j->ring + (size_t)slot * (size_t)j->B * j->img_floats, count, o);
            if (st) snprintf(msg, msg_len, "%s", imgsim_last_error());
        } else {
            st = IMGSIM_ERR_INVALID_ARG;
            snprintf(msg, msg_len, "the engine was closed during embed");
        }
        pthread_mutex_unlock(&j->eng->mu);
        if (st) return st;
        if (b + 1 < j->n_batches && progress_cb(j->interrupt, (b + 1) * j->B, j->n))
            return IMGSIM_ERR_CANCELLED; /* Ctrl-C: the exception is in j->interrupt */
        for (int k = 0; k < count; k++)
            if (j->res[b * j->B + k].st != IMGSIM_OK)
                for (int d = 0; d < dim; d++) o[(size_t)k * (size_t)dim + d] = NAN;
        pthread_mutex_lock(&j->mu); /* the slot goes to batch b + S */
        j->slot_done[slot] = 0;
        j->slot_batch[slot] = b + j->S;
        pthread_cond_broadcast(&j->cv_free);
        pthread_mutex_unlock(&j->mu);
    }
    return IMGSIM_OK;
}

/* pre: None or a 5-tuple (resize, crop, mean, std, interpolation), each a str in the CLI's
 * spelling or None (not given), applied to o with imgsim_preprocess_opts_set; with check, the
 * result is checked (imgsim_preprocess_opts_check). 0, or -1 with the exception set. */
static int pre_apply(imgsim_preprocess_opts *o, PyObject *pre, int check) {
    static const char *const names[5] = {"resize", "crop", "mean", "std", "interpolation"};
    if (pre && pre != Py_None) {
        if (!PyTuple_Check(pre) || PyTuple_GET_SIZE(pre) != 5) {
            PyErr_SetString(PyExc_TypeError, "pre must be a 5-tuple");
            return -1;
        }
        for (int i = 0; i < 5; i++) {
            PyObject *v = PyTuple_GET_ITEM(pre, i);
            if (v == Py_None) continue;
            const char *t = PyUnicode_Check(v) ? PyUnicode_AsUTF8(v) : NULL;
            if (!t) {
                if (!PyErr_Occurred()) PyErr_Format(PyExc_TypeError, "%s must be a str", names[i]);
                return -1;
            }
            imgsim_status st = imgsim_preprocess_opts_set(o, names[i], t);
            if (st) {
                raise_status(st, imgsim_last_error());
                return -1;
            }
        }
    }
    if (check) {
        imgsim_status st = imgsim_preprocess_opts_check(o);
        if (st) {
            raise_status(st, imgsim_last_error());
            return -1;
        }
    }
    return 0;
}

/* The crop pre sets must be the engine's input. 0, or -1 with the exception set. */
static int pre_fits(const imgsim_preprocess_opts *o, const imgsim_engine_info *info) {
    if (o->height == info->in_height && o->width == info->in_width) return 0;
    char msg[160];
    snprintf(msg, sizeof msg, "crop %dx%d is not the model's input %dx%d", o->height, o->width, info->in_height,
             info->in_width);
    raise_status(IMGSIM_ERR_INVALID_ARG, msg);
    return -1;
}

/* Engine._embed(items, out, batch_size=0, workers=0, stop_on_error=True, exif_rotate=True,
 * dct_scaling=False, max_pixels=0) -> [(index, status, message), ...] for the failed items (with
 * stop_on_error, those of the first batch holding one). items: a sequence of (kind, object):
 * (0, bytes path) or (1, bytes-like encoded image). out: float32 [n, dim], C order; failed rows are
 * NaN. */
static PyObject *Engine_embed(EngineObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"items", "out", "batch_size", "workers", "stop_on_error", "exif_rotate", "dct_scaling",
                             "max_pixels", "pre", NULL};
    PyObject *items_o, *out_o, *pre_o = Py_None;
    int batch = 0, workers = 0, stop = 1, exif = 1, dct = 0;
    unsigned long long max_pixels = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|iippiKO", kwlist, &items_o, &out_o, &batch, &workers, &stop, &exif,
                                     &dct, &max_pixels, &pre_o) ||
        !engine_open(self))
        return NULL;
    imgsim_preprocess_opts pre;
    imgsim_preprocess_opts_init(&pre);
    pre.height = self->info.in_height;
    pre.width = self->info.in_width;
    if (pre_apply(&pre, pre_o, 1) || pre_fits(&pre, &self->info)) return NULL;
    PyObject *seq = PySequence_Fast(items_o, "items must be a sequence");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    const imgsim_engine_info *info = &self->info;
    Py_buffer out;
    if (get_buffer(out_o, &out, "out", "f", 2, 1)) {
        Py_DECREF(seq);
        return NULL;
    }
    PyObject *ret = NULL;
    emb_item *items = calloc((size_t)(n ? n : 1), sizeof *items);
    emb_result *res = calloc((size_t)(n ? n : 1), sizeof *res);
    Py_buffer *bufs = calloc((size_t)(n ? n : 1), sizeof *bufs);
    char *have_buf = calloc((size_t)(n ? n : 1), 1);
    emb_job j;
    memset(&j, 0, sizeof j);
    pthread_t *th = NULL;
    int started = 0;
    if (!items || !res || !bufs || !have_buf) {
        PyErr_NoMemory();
        goto done;
    }
    if (out.shape[0] != n || out.shape[1] != info->dim) {
        PyErr_Format(PyExc_ValueError, "out must be [%zd, %d]", n, info->dim);
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PySequence_Fast_GET_ITEM(seq, i);
        int kind;
        PyObject *obj;
        if (!PyTuple_Check(t) || !PyArg_ParseTuple(t, "iO", &kind, &obj)) {
            PyErr_SetString(PyExc_TypeError, "items must be (kind, object) pairs");
            goto done;
        }
        items[i].kind = kind;
        if (kind == ITEM_PATH && PyBytes_Check(obj)) {
            items[i].path = PyBytes_AS_STRING(obj); /* alive: seq holds the tuple */
        } else if (kind == ITEM_ENCODED) {
            if (PyObject_GetBuffer(obj, &bufs[i], PyBUF_SIMPLE) != 0) goto done;
            have_buf[i] = 1;
            items[i].data = bufs[i].buf;
            items[i].len = (size_t)bufs[i].len;
        } else {
            PyErr_Format(PyExc_TypeError, "item %zd: unknown kind %d", i, kind);
            goto done;
        }
    }
    if (n == 0) {
        ret = PyList_New(0);
        goto done;
    }

    j.eng = self;
    j.items = items;
    j.res = res;
    j.n = n;
    j.B = batch > 0 && batch <= info->max_batch ? batch : info->max_batch;
    j.n_batches = (n + j.B - 1) / j.B;
    if (j.n < j.B) j.B = (int)n; /* the same single batch; a smaller ring */
    j.S = j.n_batches < 2 ? 1 : 2;
    j.img_floats = (size_t)info->in_channels * (size_t)info->in_height * (size_t)info->in_width;
    j.pre = pre;
    j.pre.exif_rotate = exif;
    j.pre.dct_scaling = dct;
    if (max_pixels) j.pre.max_pixels = max_pixels;
    j.ring = malloc((size_t)j.S * (size_t)j.B * j.img_floats * sizeof(float));
    j.slot_batch = calloc((size_t)j.S, sizeof *j.slot_batch);
    j.slot_done = calloc((size_t)j.S, sizeof *j.slot_done);
    if (workers <= 0) workers = num_cores();
    if (workers > n) workers = (int)n;
    th = calloc((size_t)workers, sizeof *th);
    if (!j.ring || !j.slot_batch || !j.slot_done || !th) {
        PyErr_NoMemory();
        goto done;
    }
    for (int s = 0; s < j.S; s++) j.slot_batch[s] = s;
    atomic_init(&j.next, 0);
    pthread_mutex_init(&j.mu, NULL);
    pthread_cond_init(&j.cv_free, NULL);
    pthread_cond_init(&j.cv_full, NULL);

    imgsim_status st = IMGSIM_OK;
    char msg[1024] = "";
    py_progress pc = {NULL, NULL, NULL, NULL};
    j.interrupt = &pc;
    Py_BEGIN_ALLOW_THREADS
    for (int w = 0; w < workers; w++)
        if (pthread_create(&th[w], NULL, emb_worker, &j) == 0) started++;
    if (started)
        st = emb_consume(&j, (float *)out.buf, stop, msg, sizeof msg);
    pthread_mutex_lock(&j.mu);
    j.abort = 1;
    pthread_cond_broadcast(&j.cv_free);
    pthread_mutex_unlock(&j.mu);
    for (int w = 0; w < started; w++) pthread_join(th[w], NULL);
    Py_END_ALLOW_THREADS
    pthread_mutex_destroy(&j.mu);
    pthread_cond_destroy(&j.cv_free);
    pthread_cond_destroy(&j.cv_full);
    if (!started) {
        raise_status(IMGSIM_ERR_INTERNAL, "cannot start worker threads");
        goto done;
    }
    if (pc.exc) {
        PyErr_Restore(pc.exc, pc.exc_value, pc.exc_tb);
        goto done;
    }
    if (st) {
        raise_status(st, msg);
        goto done;
    }
    ret = PyList_New(0);
    for (Py_ssize_t i = 0; ret && i < n; i++) {
        if (res[i].st == IMGSIM_OK) continue;
        if (!res[i].msg && stop) continue; /* not reached before the stop */
        PyObject *m = PyUnicode_DecodeFSDefault(res[i].msg ? res[i].msg : imgsim_status_str(res[i].st));
        PyObject *t = m ? Py_BuildValue("(niN)", i, (int)res[i].st, m) : NULL;
        if (!t || PyList_Append(ret, t)) Py_CLEAR(ret);
        Py_XDECREF(t);
        if (stop) break; /* the first failure */
    }
done:
    if (res)
        for (Py_ssize_t i = 0; i < n; i++) free(res[i].msg);
    if (have_buf)
        for (Py_ssize_t i = 0; i < n; i++)
            if (have_buf[i]) PyBuffer_Release(&bufs[i]);
    free(items), free(res), free(bufs), free(have_buf), free(th);
    free(j.ring), free(j.slot_batch), free(j.slot_done);
    PyBuffer_Release(&out);
    Py_DECREF(seq);
    return ret;
}

/* ---- extraction into a store ------------------------------------------------------------- */

/* Engine._extract(input, store_dir, batch_size=0, workers=0, dtype=0, decode=0, quiet=True,
 * exif_rotate=True, dct_scaling=False, max_pixels=0, progress=None, pre=None, sharded=False,
 * update=False, hash=False, durable=False, shard_size=0) -> stats dict. */
static PyObject *Engine_extract(EngineObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"input",    "store_dir", "batch_size", "workers", "dtype",   "decode",
                             "quiet",    "exif_rotate", "dct_scaling", "max_pixels", "progress", "pre",
                             "sharded",  "update",    "hash",       "durable", "shard_size", NULL};
    PyObject *input = NULL, *store = NULL, *progress = Py_None, *pre_o = Py_None;
    int batch = 0, workers = 0, dtype = 0, decode = 0, quiet = 1, exif = 1, dct = 0, sharded = 0;
    int update = 0, hash = 0, durable = 0;
    unsigned long long max_pixels = 0;
    long long shard_size = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&O&|iiiipppKOOppppL", kwlist, PyUnicode_FSConverter, &input,
                                     PyUnicode_FSConverter, &store, &batch, &workers, &dtype, &decode, &quiet, &exif,
                                     &dct, &max_pixels, &progress, &pre_o, &sharded, &update, &hash, &durable,
                                     &shard_size))
        return NULL;
    py_progress pc = {progress == Py_None ? NULL : progress, NULL, NULL, NULL};
    PyObject *ret = NULL;
    if (!engine_open(self)) goto done;
    imgsim_extract_opts xo;
    imgsim_extract_opts_init(&xo);
    xo.pre.height = self->info.in_height;
    xo.pre.width = self->info.in_width;
    if (pre_apply(&xo.pre, pre_o, 1) || pre_fits(&xo.pre, &self->info)) goto done;
    xo.pre.exif_rotate = exif;
    xo.pre.dct_scaling = dct;
    if (max_pixels) xo.pre.max_pixels = max_pixels;
    xo.workers = workers;
    xo.batch_size = batch;
    xo.dtype = dtype ? IMGSIM_F16 : IMGSIM_F32;
    xo.layout = sharded ? IMGSIM_LAYOUT_SHARDED : IMGSIM_LAYOUT_SINGLE;
    xo.update = update;
    xo.hash = hash;
    xo.durable = durable;
    xo.shard_size = shard_size;
    xo.quiet = quiet;
    xo.decode = (imgsim_decode)decode;
    xo.progress = progress_cb;
    xo.progress_user = &pc;
    imgsim_extract_stats s;
    memset(&s, 0, sizeof s);
    imgsim_status st;
    char msg[1024] = "";
    const char *in = PyBytes_AS_STRING(input), *dir = PyBytes_AS_STRING(store);
    const char *model = PyBytes_AS_STRING(self->model_path);
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->mu);
    if (self->e) {
        st = imgsim_extract(self->e, model, in, dir, &xo, &s);
        if (st) snprintf(msg, sizeof msg, "%s", imgsim_last_error());
    } else {
        st = IMGSIM_ERR_INVALID_ARG;
        snprintf(msg, sizeof msg, "the engine is closed");
    }
    pthread_mutex_unlock(&self->mu);
    Py_END_ALLOW_THREADS
    if (pc.exc) { /* the callback's exception (KeyboardInterrupt, ...) stopped the job */
        PyErr_Restore(pc.exc, pc.exc_value, pc.exc_tb);
        goto done;
    }
    if (st) {
        raise_status(st, msg);
        goto done;
    }
    ret = Py_BuildValue("{s:L,s:L,s:L,s:L,s:L,s:d,s:d,s:d,s:d,s:d,s:d,s:L}", "kept", (long long)s.kept, "inputs",
                        (long long)s.inputs, "ok", (long long)s.ok, "failed", (long long)s.failed, "skipped", (long long)s.skipped,
                        "seconds_total", s.seconds_total, "seconds_list", s.seconds_list, "seconds_decode_busy",
                        s.seconds_decode_busy, "seconds_infer_busy", s.seconds_infer_busy, "seconds_write",
                        s.seconds_write, "images_per_s", s.images_per_s, "gpu_decoded", (long long)s.gpu_decoded);
done:
    Py_XDECREF(input);
    Py_XDECREF(store);
    return ret;
}

static PyMethodDef Engine_methods[] = {
    {"close", (PyCFunction)Engine_close, METH_NOARGS,
     "close()\n--\n\nFrees the engine (waits for a batch another thread is running). Idempotent."},
    {"info", (PyCFunction)Engine_info, METH_NOARGS, "info()\n--\n\nWhat the engine is, as a dict."},
    {"_run", (PyCFunction)Engine_run, METH_VARARGS, "_run(input, out): float32 [n,C,H,W] -> [n,dim]."},
    {"_embed", (PyCFunction)(void (*)(void))Engine_embed, METH_VARARGS | METH_KEYWORDS,
     "_embed(items, out, ...): the batched embedding pipeline (see imgsim.Engine.embed)."},
    {"_extract", (PyCFunction)(void (*)(void))Engine_extract, METH_VARARGS | METH_KEYWORDS,
     "_extract(input, store_dir, ...): imgsim_extract (see imgsim.Engine.extract)."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Engine_getset[] = {
    {"dim", (getter)Engine_get_dim, NULL, "feature dimension", NULL},
    {"closed", (getter)Engine_get_closed, NULL, "True once close() ran", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "imgsim._imgsim.Engine",
    .tp_basicsize = sizeof(EngineObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Engine(model, layer=None, device=0, device_index=0, precision=-1, batch_size=32, threads=0,\n"
              "       normalize=True, engine_cache=None, engine_file=None, prepare_gpu_decode=False,\n"
              "       calib=None)\n--\n\n"
              "The low-level engine handle (imgsim_engine_load). Use imgsim.Engine.",
    .tp_new = Engine_new,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_methods = Engine_methods,
    .tp_getset = Engine_getset,
};

/* ---- module functions -------------------------------------------------------------------- */

/* _search(idx, score, gallery, queries, k, threads=0, device=0, device_index=0, gpu_memory=0):
 * idx int64 [q, k] and score float32 [q, k] are written; gallery [n, d] and queries [q, d] are
 * both float32 or both float16. */
static PyObject *mod_search(PyObject *m, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"idx", "score", "gallery", "queries", "k", "threads", "device", "device_index",
                             "gpu_memory", NULL};
    PyObject *io, *so, *go, *qo;
    int k, threads = 0, device = 0, device_index = 0;
    unsigned long long gpu_memory = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOi|iiiK", kwlist, &io, &so, &go, &qo, &k, &threads, &device,
                                     &device_index, &gpu_memory))
        return NULL;
    Py_buffer idx, score, g, q;
    if (get_buffer(io, &idx, "idx", "q", 2, 1)) return NULL;
    if (get_buffer(so, &score, "score", "f", 2, 1)) {
        PyBuffer_Release(&idx);
        return NULL;
    }
    PyObject *ret = NULL;
    int have_g = 0, have_q = 0;
    const char *fmt;
    imgsim_dtype dt = float_buffer_dtype(go, &fmt); /* the queries must match the gallery */
    if (get_buffer(go, &g, "gallery", fmt, 2, 0)) goto done;
    have_g = 1;
    if (get_buffer(qo, &q, "queries", fmt, 2, 0)) goto done;
    have_q = 1;
    if (g.shape[1] != q.shape[1] || g.shape[1] < 1 || g.shape[1] > (1 << 30)) {
        PyErr_Format(PyExc_ValueError, "gallery has %zd-d rows and queries %zd-d", g.shape[1], q.shape[1]);
        goto done;
    }
    if (k < 1 || idx.shape[0] != q.shape[0] || idx.shape[1] != k || score.shape[0] != q.shape[0] ||
        score.shape[1] != k) {
        PyErr_Format(PyExc_ValueError, "k must be >= 1 and idx, score [%zd, %d]", q.shape[0], k);
        goto done;
    }
    imgsim_search_opts o;
    imgsim_search_opts_init(&o);
    o.threads = threads;
    o.device = device ? IMGSIM_DEVICE_CUDA : IMGSIM_DEVICE_CPU;
    o.device_index = device_index;
    o.gpu_memory = (size_t)gpu_memory;
    imgsim_status st;
    char msg[1024] = "";
    Py_BEGIN_ALLOW_THREADS
    st = imgsim_search((int64_t *)idx.buf, (float *)score.buf, g.buf, (int64_t)g.shape[0], q.buf, (int64_t)q.shape[0],
                       (int)g.shape[1], dt, k, &o);
    if (st) snprintf(msg, sizeof msg, "%s", imgsim_last_error());
    Py_END_ALLOW_THREADS
    if (st)
        raise_status(st, msg);
    else
        ret = Py_NewRef(Py_None);
done:
    if (have_g) PyBuffer_Release(&g);
    if (have_q) PyBuffer_Release(&q);
    PyBuffer_Release(&idx);
    PyBuffer_Release(&score);
    return ret;
}

/* _preprocess(out, kind, obj, exif_rotate=True, dct_scaling=True, max_pixels=0, pre=None): one
 * item into out, float32 [3, H, W] (H, W from out's shape: the crop). kind as in Engine._embed;
 * pre as in pre_apply. */
static PyObject *mod_preprocess(PyObject *m, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"out", "kind", "obj", "exif_rotate", "dct_scaling", "max_pixels", "pre", NULL};
    PyObject *oo, *obj, *pre_o = Py_None;
    int kind, exif = 1, dct = 1;
    unsigned long long max_pixels = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OiO|ppKO", kwlist, &oo, &kind, &obj, &exif, &dct, &max_pixels, &pre_o))
        return NULL;
    Py_buffer out, in;
    if (get_buffer(oo, &out, "out", "f", 3, 1)) return NULL;
    PyObject *ret = NULL;
    int have_in = 0;
    if (out.shape[0] != 3 || out.shape[1] < 1 || out.shape[2] < 1) {
        PyErr_SetString(PyExc_ValueError, "out must be [3, H, W]");
        goto done;
    }
    imgsim_preprocess_opts o;
    imgsim_preprocess_opts_init(&o);
    if (pre_apply(&o, pre_o, 0)) goto done;
    o.height = (int)out.shape[1]; /* out's shape is the crop (the caller's from pre) */
    o.width = (int)out.shape[2];
    o.exif_rotate = exif;
    o.dct_scaling = dct;
    if (max_pixels) o.max_pixels = max_pixels;
    imgsim_status st;
    char msg[1024] = "";
    if (kind == ITEM_PATH && PyBytes_Check(obj)) {
        const char *p = PyBytes_AS_STRING(obj);
        Py_BEGIN_ALLOW_THREADS
        st = imgsim_preprocess_file((float *)out.buf, p, &o);
        if (st) snprintf(msg, sizeof msg, "%s", imgsim_last_error());
        Py_END_ALLOW_THREADS
    } else if (kind == ITEM_ENCODED) {
        if (PyObject_GetBuffer(obj, &in, PyBUF_SIMPLE) != 0) goto done;
        have_in = 1;
        Py_BEGIN_ALLOW_THREADS
        st = imgsim_preprocess_mem((float *)out.buf, in.buf, (size_t)in.len, &o);
        if (st) snprintf(msg, sizeof msg, "%s", imgsim_last_error());
        Py_END_ALLOW_THREADS
    } else {
        PyErr_Format(PyExc_TypeError, "unknown item kind %d", kind);
        goto done;
    }
    if (st)
        raise_status(st, msg);
    else
        ret = Py_NewRef(Py_None);
done:
    if (have_in) PyBuffer_Release(&in);
    PyBuffer_Release(&out);
    return ret;
}

/* model_info(path, layer=None) -> dict (imgsim_model_load + imgsim_model_get_info). */
static PyObject *mod_model_info(PyObject *m, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", "layer", NULL};
    PyObject *path;
    const char *layer = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|z", kwlist, PyUnicode_FSConverter, &path, &layer)) return NULL;
    imgsim_model *mo = NULL;
    imgsim_model_info i;
    imgsim_status st;
    char msg[1024] = "";
    const char *p = PyBytes_AS_STRING(path);
    Py_BEGIN_ALLOW_THREADS
    st = imgsim_model_load(&mo, p, layer);
    if (!st) st = imgsim_model_get_info(mo, &i);
    if (st) snprintf(msg, sizeof msg, "%s", imgsim_last_error());
    imgsim_model_destroy(mo);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (st) return raise_status(st, msg);
    return Py_BuildValue("{s:i,s:(iii),s:i,s:s,s:s,s:i,s:s,s:s,s:O}", "dim", i.dim, "input", i.in_channels,
                         i.in_height, i.in_width, "opset", i.opset, "layer", i.layer, "sha256", i.sha256, "n_nodes",
                         i.n_nodes, "embedding", i.embedding, "operators", i.operators, "quantized",
                         i.quantized ? Py_True : Py_False);
}

/* _calibrate(model, input, out, images, method, percentile, layer, batch_size, threads, exif_rotate,
 * dct_scaling, max_pixels) -> dict: imgsim_model_load + imgsim_calibrate + imgsim_calib_save, the
 * CLI's `imgsim calibrate` (method 0 entropy, 1 percentile, 2 minmax). */
static PyObject *mod_calibrate(PyObject *m, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"model",   "input",       "out",         "images",     "method",
                             "percentile", "layer",    "batch_size",  "threads",    "exif_rotate",
                             "dct_scaling", "max_pixels", NULL};
    PyObject *model = NULL, *input = NULL, *out = NULL;
    const char *layer = NULL;
    imgsim_calib_opts co;
    imgsim_calib_opts_init(&co);
    int method = 0, exif = co.pre.exif_rotate, dct = co.pre.dct_scaling;
    unsigned long long max_pixels = co.pre.max_pixels;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&O&O&|iidziippK", kwlist, PyUnicode_FSConverter, &model,
                                     PyUnicode_FSConverter, &input, PyUnicode_FSConverter, &out, &co.images,
                                     &method, &co.percentile, &layer, &co.batch_size, &co.threads, &exif,
                                     &dct, &max_pixels))
        return NULL; /* (the converters release what they made) */
    co.method = (imgsim_calib_method)method;
    co.pre.exif_rotate = exif;
    co.pre.dct_scaling = dct;
    co.pre.max_pixels = max_pixels;
    co.quiet = 1;
    imgsim_model *mo = NULL;
    imgsim_calib *c = NULL;
    imgsim_calib_info ci;
    imgsim_status st;
    char msg[1024] = "";
    const char *mp = PyBytes_AS_STRING(model), *ip = PyBytes_AS_STRING(input), *op = PyBytes_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS
    st = imgsim_model_load(&mo, mp, layer);
    if (!st) st = imgsim_calibrate(&c, mo, ip, &co);
    if (!st) st = imgsim_calib_save(c, op);
    if (!st) st = imgsim_calib_get_info(c, &ci);
    if (st) snprintf(msg, sizeof msg, "%s", imgsim_last_error());
    imgsim_model_destroy(mo);
    Py_END_ALLOW_THREADS
    PyObject *ret = NULL;
    if (st)
        raise_status(st, msg);
    else
        ret = Py_BuildValue("{s:s,s:s,s:i,s:i,s:i,s:d}", "model_sha256", ci.model_sha256, "layer", ci.layer,
                            "images", ci.images, "images_requested", ci.images_requested, "n_tensors",
                            ci.n_tensors, "percentile", ci.percentile);
    imgsim_calib_destroy(c);
    Py_DECREF(model), Py_DECREF(input), Py_DECREF(out);
    return ret;
}

/* _split(dataset, test_size, seed, out_dir) -> {"train", "test", "skipped"} (imgsim_split). */
static PyObject *mod_split(PyObject *m, PyObject *args) {
    PyObject *ds = NULL, *out = NULL;
    double test_size;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "O&dKO&", PyUnicode_FSConverter, &ds, &test_size, &seed, PyUnicode_FSConverter, &out))
        return NULL;
    imgsim_split_info info;
    imgsim_status st;
    char msg[1024] = "";
    const char *d = PyBytes_AS_STRING(ds), *o = PyBytes_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS
    st = imgsim_split(&info, d, test_size, (uint64_t)seed, o);
    if (st) snprintf(msg, sizeof msg, "%s", imgsim_last_error());
    Py_END_ALLOW_THREADS
    Py_DECREF(ds);
    Py_DECREF(out);
    if (st) return raise_status(st, msg);
    return Py_BuildValue("{s:L,s:L,s:L}", "train", (long long)info.train, "test", (long long)info.test, "skipped",
                         (long long)info.skipped);
}

/* _store_open(dir) -> dict: the store checked by imgsim_store_open (the library's meaning of a
 * valid, complete store): n, dim, dtype, paths, labels, n_failed, unit_norm. The features are not
 * kept (the Python Store memory-maps features.npy itself). */
static PyObject *mod_store_open(PyObject *m, PyObject *args) {
    PyObject *dir;
    if (!PyArg_ParseTuple(args, "O&", PyUnicode_FSConverter, &dir)) return NULL;
    imgsim_store *s = NULL;
    imgsim_store_info i;
    imgsim_status st;
    char msg[1024] = "";
    const char *d = PyBytes_AS_STRING(dir);
    Py_BEGIN_ALLOW_THREADS
    st = imgsim_store_open(&s, d);
    if (!st) st = imgsim_store_get_info(s, &i);
    if (st) snprintf(msg, sizeof msg, "%s", imgsim_last_error());
    Py_END_ALLOW_THREADS
    Py_DECREF(dir);
    if (st) {
        imgsim_store_close(s);
        return raise_status(st, msg);
    }
    PyObject *paths = PyList_New((Py_ssize_t)i.n), *labels = PyList_New((Py_ssize_t)i.n), *ret = NULL;
    for (int64_t r = 0; paths && labels && r < i.n; r++) {
        PyObject *p = PyUnicode_DecodeFSDefault(i.paths[r]), *l = PyUnicode_DecodeFSDefault(i.labels[r]);
        if (!p || !l) {
            Py_XDECREF(p);
            Py_XDECREF(l);
            goto done;
        }
        PyList_SET_ITEM(paths, (Py_ssize_t)r, p);
        PyList_SET_ITEM(labels, (Py_ssize_t)r, l);
    }
    if (paths && labels)
        ret = Py_BuildValue("{s:L,s:i,s:s,s:O,s:O,s:L,s:O}", "n", (long long)i.n, "dim", i.dim, "dtype",
                            i.dtype == IMGSIM_F16 ? "float16" : "float32", "paths", paths, "labels", labels,
                            "n_failed", (long long)i.n_failed, "unit_norm", i.unit_norm ? Py_True : Py_False);
done:
    Py_XDECREF(paths);
    Py_XDECREF(labels);
    imgsim_store_close(s);
    return ret;
}

/* _store_features_f32(dir, out, unit): imgsim_store_features_f32 into out, float32 [n, dim]
 * (unit: rows divided by their L2 norm, as the CLI compares a --no-normalize store). */
static PyObject *mod_store_features_f32(PyObject *m, PyObject *args) {
    PyObject *dir, *oo;
    int unit;
    if (!PyArg_ParseTuple(args, "O&Op", PyUnicode_FSConverter, &dir, &oo, &unit)) return NULL;
    Py_buffer out;
    if (get_buffer(oo, &out, "out", "f", 2, 1)) {
        Py_DECREF(dir);
        return NULL;
    }
    imgsim_store *s = NULL;
    imgsim_store_info i;
    imgsim_status st;
    char msg[1024] = "";
    const char *d = PyBytes_AS_STRING(dir);
    Py_BEGIN_ALLOW_THREADS
    st = imgsim_store_open(&s, d);
    if (!st) st = imgsim_store_get_info(s, &i);
    if (!st && (out.shape[0] != i.n || out.shape[1] != i.dim)) {
        st = IMGSIM_ERR_INVALID_ARG;
        snprintf(msg, sizeof msg, "%s: out must be [%lld, %d]", d, (long long)i.n, i.dim);
    } else if (!st) {
        st = imgsim_store_features_f32((float *)out.buf, s, unit);
        if (st) snprintf(msg, sizeof msg, "%s", imgsim_last_error());
    } else {
        snprintf(msg, sizeof msg, "%s", imgsim_last_error());
    }
    imgsim_store_close(s);
    Py_END_ALLOW_THREADS
    Py_DECREF(dir);
    PyBuffer_Release(&out);
    if (st) return raise_status(st, msg);
    Py_RETURN_NONE;
}

/* Pairs collected by imgsim_dedup's callback (without the GIL). */
typedef struct pair_list {
    int64_t *ij;
    float *s;
    size_t n, cap;
    int oom;
} pair_list;

static void on_pair(void *user, int64_t i, int64_t j, float score) {
    pair_list *l = user;
    if (l->oom) return;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 1024;
        int64_t *ij = realloc(l->ij, nc * 2 * sizeof *ij);
        if (ij) l->ij = ij;
        float *s = ij ? realloc(l->s, nc * sizeof *s) : NULL;
        if (s) l->s = s;
        if (!ij || !s) {
            l->oom = 1;
            return;
        }
        l->cap = nc;
    }
    l->ij[2 * l->n] = i;
    l->ij[2 * l->n + 1] = j;
    l->s[l->n++] = score;
}

/* _dedup(x, threshold, threads=0, device=0, device_index=0, gpu_memory=0) -> [(i, j, score)]:
 * imgsim_dedup over x (float32 or float16 [n, dim], C order), in the library's order. */
static PyObject *mod_dedup(PyObject *m, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"x", "threshold", "threads", "device", "device_index", "gpu_memory", NULL};
    PyObject *xo;
    float threshold;
    int threads = 0, device = 0, device_index = 0;
    unsigned long long gpu_memory = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Of|iiiK", kwlist, &xo, &threshold, &threads, &device, &device_index,
                                     &gpu_memory))
        return NULL;
    Py_buffer x;
    const char *fmt;
    imgsim_dtype dt = float_buffer_dtype(xo, &fmt);
    if (get_buffer(xo, &x, "x", fmt, 2, 0)) return NULL;
    imgsim_search_opts o;
    imgsim_search_opts_init(&o);
    o.threads = threads;
    o.device = device ? IMGSIM_DEVICE_CUDA : IMGSIM_DEVICE_CPU;
    o.device_index = device_index;
    o.gpu_memory = (size_t)gpu_memory;
    pair_list l = {0};
    imgsim_status st;
    char msg[1024] = "";
    Py_BEGIN_ALLOW_THREADS
    st = imgsim_dedup(x.buf, (int64_t)x.shape[0], (int)x.shape[1], dt, threshold, &o, on_pair, &l);
    if (st) snprintf(msg, sizeof msg, "%s", imgsim_last_error());
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&x);
    PyObject *ret = NULL;
    if (st)
        raise_status(st, msg);
    else if (l.oom)
        PyErr_NoMemory();
    else if ((ret = PyList_New((Py_ssize_t)l.n)))
        for (size_t p = 0; p < l.n; p++) {
            PyObject *t = Py_BuildValue("(LLd)", (long long)l.ij[2 * p], (long long)l.ij[2 * p + 1], (double)l.s[p]);
            if (!t) {
                Py_CLEAR(ret);
                break;
            }
            PyList_SET_ITEM(ret, (Py_ssize_t)p, t);
        }
    free(l.ij);
    free(l.s);
    return ret;
}

/* error(status, message, index=None, path=None) -> the imgsim.Error subclass instance. */
static PyObject *mod_error(PyObject *m, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"status", "message", "index", "path", NULL};
    int st;
    PyObject *msg, *path = NULL;
    Py_ssize_t index = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iO&|nO", kwlist, &st, PyUnicode_FSConverter, &msg, &index, &path))
        return NULL;
    PyObject *e = make_error((imgsim_status)st, PyBytes_AS_STRING(msg), index, path);
    Py_DECREF(msg);
    return e;
}

static PyObject *mod_version(PyObject *m, PyObject *unused) {
    return PyUnicode_FromString(imgsim_version());
}

static PyObject *mod_set_log_level(PyObject *m, PyObject *arg) {
    long l = PyLong_AsLong(arg);
    if (l == -1 && PyErr_Occurred()) return NULL;
    imgsim_set_log_level((imgsim_log_level)(l < 0 ? 0 : l > 4 ? 4 : l));
    Py_RETURN_NONE;
}

static PyObject *mod_has_cuda(PyObject *m, PyObject *unused) {
#ifdef IMGSIM_HAVE_CUDA
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE;
#endif
}

/* ---- DLPack ------------------------------------------------------------------------------ */

/* A device array handed out through DLPack: DLPackTensor owns the DLManagedTensor until
 * __dlpack__ passes it to a consumer (once; the consumer then calls its deleter). */
typedef struct {
    PyObject_HEAD
    DLManagedTensor *mt; /* NULL once exported */
    int64_t shape[2];
    int device_type, device_id;
    int bits;
} DLPackObject;

#ifdef IMGSIM_HAVE_CUDA
/* The DLManagedTensor's deleter: frees the device copy, its shape and itself. */
static void dl_deleter(DLManagedTensor *mt) {
    if (!mt) return;
    int prev = 0;
    cudaGetDevice(&prev);
    cudaSetDevice(mt->dl_tensor.device.device_id);
    cudaFree(mt->dl_tensor.data);
    cudaSetDevice(prev);
    free(mt->dl_tensor.shape);
    free(mt);
}
#endif

/* The capsule's destructor: an unconsumed capsule (still named "dltensor") frees the tensor; a
 * consumer renames it "used_dltensor" and owns it. */
static void dl_capsule_destructor(PyObject *cap) {
    if (!PyCapsule_IsValid(cap, "dltensor")) return;
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    DLManagedTensor *mt = PyCapsule_GetPointer(cap, "dltensor");
    if (mt && mt->deleter) mt->deleter(mt);
    PyErr_Restore(t, v, tb);
}

static void DLPack_dealloc(DLPackObject *self) {
    if (self->mt && self->mt->deleter) self->mt->deleter(self->mt);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *DLPack_dlpack(DLPackObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"stream", "max_version", "dl_device", "copy", NULL};
    PyObject *stream = NULL, *maxv = NULL, *dev = NULL, *copy = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|$OOOO", kwlist, &stream, &maxv, &dev, &copy)) return NULL;
    if (!self->mt) {
        PyErr_SetString(PyExc_BufferError, "this DLPack tensor was already exported (__dlpack__ gives it away once)");
        return NULL;
    }
    /* the data was made synchronously (the copy finished and the device was synchronised), so
     * it is ready on any stream the consumer names */
    PyObject *cap = PyCapsule_New(self->mt, "dltensor", dl_capsule_destructor);
    if (cap) self->mt = NULL;
    return cap;
}

static PyObject *DLPack_device(DLPackObject *self, PyObject *unused) {
    return Py_BuildValue("(ii)", self->device_type, self->device_id);
}

static PyObject *DLPack_get_shape(DLPackObject *self, void *c) {
    return Py_BuildValue("(LL)", (long long)self->shape[0], (long long)self->shape[1]);
}

static PyObject *DLPack_get_dtype(DLPackObject *self, void *c) {
    return PyUnicode_FromString(self->bits == 16 ? "float16" : "float32");
}

static PyMethodDef DLPack_methods[] = {
    {"__dlpack__", (PyCFunction)(void (*)(void))DLPack_dlpack, METH_VARARGS | METH_KEYWORDS,
     "__dlpack__(*, stream=None)\n--\n\nThe DLPack capsule (\"dltensor\"); hands the memory to the consumer, once."},
    {"__dlpack_device__", (PyCFunction)DLPack_device, METH_NOARGS,
     "__dlpack_device__()\n--\n\n(device_type, device_id): (2, N) for CUDA device N."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef DLPack_getset[] = {{"shape", (getter)DLPack_get_shape, NULL, "(n, dim)", NULL},
                                      {"dtype", (getter)DLPack_get_dtype, NULL, "'float32' or 'float16'", NULL},
                                      {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject DLPackType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "imgsim._imgsim.DLPackTensor",
    .tp_basicsize = sizeof(DLPackObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Features in device memory, for torch.from_dlpack / cupy.from_dlpack (no copy on their side).",
    .tp_dealloc = (destructor)DLPack_dealloc,
    .tp_methods = DLPack_methods,
    .tp_getset = DLPack_getset,
};

/* _cuda_dlpack(host, device_index) -> DLPackTensor: a copy of host (float32 or float16 [n, d],
 * C order) in the memory of CUDA device device_index. */
static PyObject *mod_cuda_dlpack(PyObject *m, PyObject *args) {
    PyObject *ho;
    int dev;
    if (!PyArg_ParseTuple(args, "Oi", &ho, &dev)) return NULL;
#ifndef IMGSIM_HAVE_CUDA
    (void)ho, (void)dev;
    return raise_status(IMGSIM_ERR_NO_DEVICE, "imgsim was built without CUDA: no device memory for DLPack output");
#else
    Py_buffer h;
    int bits = 32;
    if (PyObject_GetBuffer(ho, &h, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) return NULL;
    const char *f = h.format ? h.format : "B";
    if (*f == '<' || *f == '=') f++;
    if (!strcmp(f, "e")) bits = 16;
    if (h.ndim != 2 || (strcmp(f, "f") && bits != 16)) {
        PyBuffer_Release(&h);
        PyErr_SetString(PyExc_ValueError, "host must be float32 or float16 [n, d]");
        return NULL;
    }
    DLPackObject *self = PyObject_New(DLPackObject, &DLPackType);
    DLManagedTensor *mt = calloc(1, sizeof *mt);
    int64_t *shape = calloc(2, sizeof *shape);
    if (!self || !mt || !shape) {
        Py_XDECREF(self);
        free(mt), free(shape);
        PyBuffer_Release(&h);
        return PyErr_NoMemory();
    }
    self->mt = NULL;
    void *d = NULL;
    cudaError_t ce;
    size_t bytes = (size_t)h.len;
    Py_BEGIN_ALLOW_THREADS
    int prev = 0;
    cudaGetDevice(&prev);
    ce = cudaSetDevice(dev);
    if (ce == cudaSuccess) ce = cudaMalloc(&d, bytes ? bytes : 1);
    if (ce == cudaSuccess && bytes) ce = cudaMemcpy(d, h.buf, bytes, cudaMemcpyHostToDevice);
    if (ce == cudaSuccess) ce = cudaDeviceSynchronize(); /* ready for any stream of the consumer */
    if (ce != cudaSuccess && d) cudaFree(d);
    cudaSetDevice(prev);
    Py_END_ALLOW_THREADS
    if (ce != cudaSuccess) {
        PyBuffer_Release(&h);
        free(mt), free(shape);
        Py_DECREF(self);
        char msg[256];
        snprintf(msg, sizeof msg, "DLPack output on cuda:%d: %s", dev, cudaGetErrorString(ce));
        return raise_status(IMGSIM_ERR_BACKEND, msg);
    }
    shape[0] = h.shape[0];
    shape[1] = h.shape[1];
    PyBuffer_Release(&h);
    mt->dl_tensor.data = d;
    mt->dl_tensor.device.device_type = kDLCUDA;
    mt->dl_tensor.device.device_id = dev;
    mt->dl_tensor.ndim = 2;
    mt->dl_tensor.dtype.code = kDLFloat;
    mt->dl_tensor.dtype.bits = (uint8_t)bits;
    mt->dl_tensor.dtype.lanes = 1;
    mt->dl_tensor.shape = shape;
    mt->dl_tensor.strides = NULL;
    mt->dl_tensor.byte_offset = 0;
    mt->manager_ctx = NULL;
    mt->deleter = dl_deleter;
    self->mt = mt;
    self->shape[0] = shape[0];
    self->shape[1] = shape[1];
    self->device_type = kDLCUDA;
    self->device_id = dev;
    self->bits = bits;
    return (PyObject *)self;
#endif
}

static PyMethodDef mod_methods[] = {
    {"_search", (PyCFunction)(void (*)(void))mod_search, METH_VARARGS | METH_KEYWORDS,
     "_search(idx, score, gallery, queries, k, ...): imgsim_search into idx/score (see imgsim.search)."},
    {"_preprocess", (PyCFunction)(void (*)(void))mod_preprocess, METH_VARARGS | METH_KEYWORDS,
     "_preprocess(out, kind, obj, ...): one item into out [3, H, W] (see imgsim.preprocess)."},
    {"model_info", (PyCFunction)(void (*)(void))mod_model_info, METH_VARARGS | METH_KEYWORDS,
     "model_info(path, layer=None)\n--\n\nWhat an ONNX model holds: dim, input, opset, layer, sha256, n_nodes."},
    {"_split", mod_split, METH_VARARGS, "_split(dataset, test_size, seed, out_dir): imgsim_split (see imgsim.split)."},
    {"_calibrate", (PyCFunction)(void (*)(void))mod_calibrate, METH_VARARGS | METH_KEYWORDS,
     "_calibrate(model, input, out, ...): imgsim_calibrate + imgsim_calib_save (see imgsim.calibrate)."},
    {"_store_open", mod_store_open, METH_VARARGS, "_store_open(dir): the store as imgsim_store_open checks it."},
    {"_store_features_f32", mod_store_features_f32, METH_VARARGS,
     "_store_features_f32(dir, out, unit): imgsim_store_features_f32 into out."},
    {"_dedup", (PyCFunction)(void (*)(void))mod_dedup, METH_VARARGS | METH_KEYWORDS,
     "_dedup(x, threshold, ...): imgsim_dedup pairs (see imgsim.dedup)."},
    {"error", (PyCFunction)(void (*)(void))mod_error, METH_VARARGS | METH_KEYWORDS,
     "error(status, message, index=None, path=None)\n--\n\nThe imgsim.Error subclass instance for a status."},
    {"version", mod_version, METH_NOARGS, "version()\n--\n\nThe C library's version, 'MAJOR.MINOR.PATCH'."},
    {"set_log_level", mod_set_log_level, METH_O,
     "set_log_level(level)\n--\n\nLibrary log messages on stderr at or below level (0 quiet .. 4 debug)."},
    {"has_cuda", mod_has_cuda, METH_NOARGS, "has_cuda()\n--\n\nTrue when the library was built with CUDA."},
    {"_cuda_dlpack", mod_cuda_dlpack, METH_VARARGS, "_cuda_dlpack(host, device_index): a device copy for DLPack."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_imgsim",
    .m_doc = "The C layer of imgsim over include/imgsim.h (use the imgsim package).",
    .m_size = -1,
    .m_methods = mod_methods,
};

/* One exception class per status: name, extra built-in base (or NULL), doc. */
static int add_exceptions(PyObject *m) {
    struct {
        imgsim_status st;
        const char *name;
        PyObject *base;
        const char *doc;
    } t[] = {
        {IMGSIM_ERR_INVALID_ARG, "InvalidArgumentError", PyExc_ValueError, "A bad argument or option value."},
        {IMGSIM_ERR_NOMEM, "OutOfMemoryError", PyExc_MemoryError, "An allocation in the library failed."},
        {IMGSIM_ERR_IO, "FileError", PyExc_OSError, "A file could not be opened, read or written."},
        {IMGSIM_ERR_FORMAT, "FormatError", PyExc_ValueError,
         "Corrupt, truncated or malformed input (image, model, store)."},
        {IMGSIM_ERR_UNSUPPORTED, "UnsupportedError", PyExc_ValueError, "Well-formed input imgsim does not handle."},
        {IMGSIM_ERR_TOO_LARGE, "TooLargeError", PyExc_ValueError, "An input over a configured or arithmetic limit."},
        {IMGSIM_ERR_MISMATCH, "MismatchError", PyExc_ValueError,
         "Stores, models or engine files that do not belong together."},
        {IMGSIM_ERR_NO_DEVICE, "NoDeviceError", PyExc_RuntimeError,
         "The requested device (CUDA) is absent or was not built in."},
        {IMGSIM_ERR_BACKEND, "BackendError", PyExc_RuntimeError, "The compute library reported an error."},
        {IMGSIM_ERR_INTERNAL, "InternalError", PyExc_RuntimeError, "A bug in imgsim."},
    };
    Error = PyErr_NewExceptionWithDoc("imgsim.Error",
                                      "Base of every imgsim failure. Attributes: status (the imgsim_status number), "
                                      "message (the library's message, naming the file and the reason), index and "
                                      "path (the item of an embed, else None).",
                                      NULL, NULL);
    if (!Error || PyModule_AddObjectRef(m, "Error", Error)) return -1;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char full[96];
        snprintf(full, sizeof full, "imgsim.%s", t[i].name);
        PyObject *bases = PyTuple_Pack(2, Error, t[i].base);
        if (!bases) return -1;
        PyObject *c = PyErr_NewExceptionWithDoc(full, t[i].doc, bases, NULL);
        Py_DECREF(bases);
        if (!c || PyModule_AddObjectRef(m, t[i].name, c)) return -1;
        status_exc[t[i].st] = c;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__imgsim(void) {
    if (PyType_Ready(&EngineType) < 0 || PyType_Ready(&DLPackType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    if (add_exceptions(m) || PyModule_AddObjectRef(m, "Engine", (PyObject *)&EngineType) ||
        PyModule_AddObjectRef(m, "DLPackTensor", (PyObject *)&DLPackType)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
