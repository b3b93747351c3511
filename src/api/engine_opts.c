/*
 * engine_opts.c: engine options, defaults and checks in one place. ims_engine_config turns an
 * imgsim_engine_opts into the backend's configuration once; the backend takes that configuration
 * as it is and reports what it chose (imgsim_engine_info, through ims_backend_ops.info).
 */
#include <string.h>

#include "api/api.h"

void imgsim_engine_opts_init(imgsim_engine_opts *o) {
    memset(o, 0, sizeof *o);
    o->device = IMGSIM_DEVICE_CPU;
    o->precision = IMGSIM_PREC_FP32;
    o->max_batch = 32;
    o->normalize = 1;
}

#define MAX_BATCH_LIMIT 65536
#define AUTO_BATCH_CUDA 256 /* --batch-size=auto on CUDA: at most this, less where memory is short */
#define AUTO_BATCH_CPU 32   /* --batch-size=auto on the CPU */

imgsim_status ims_engine_config(ims_backend_cfg *cfg, const imgsim_engine_opts *opt, ims_err *e) {
    memset(cfg, 0, sizeof *cfg);
    int cuda = opt->device == IMGSIM_DEVICE_CUDA;
    if (opt->device != IMGSIM_DEVICE_CPU && !cuda)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "engine options: unknown device %d", (int)opt->device);
    if (cuda && opt->device_index < 0)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "engine options: CUDA device %d: expected 0 or more",
                        opt->device_index);

    /* precision: the device's default, or one the device supports */
    cfg->precision = opt->precision_set ? opt->precision : cuda ? IMGSIM_PREC_FP16 : IMGSIM_PREC_FP32;
    if ((int)cfg->precision < (int)IMGSIM_PREC_FP32 || (int)cfg->precision > (int)IMGSIM_PREC_INT8)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "engine options: unknown precision %d",
                        (int)cfg->precision);
    if (!cuda && (cfg->precision == IMGSIM_PREC_FP16 || cfg->precision == IMGSIM_PREC_TF32))
        return ims_fail(e, IMGSIM_ERR_UNSUPPORTED,
                        "precision %s is for --device=cuda; the CPU supports fp32, bf16 and int8",
                        imgsim_precision_str(cfg->precision));
    if (cuda && cfg->precision == IMGSIM_PREC_INT8)
        return ims_fail(e, IMGSIM_ERR_UNSUPPORTED,
                        "cuda: precision int8 is not supported by the CUDA engine yet (int8 runs on --device=cpu)");
    /* int8 needs a calibration file or a QDQ model: checked when the model is there (engine.c) */
    if (cuda && cfg->precision == IMGSIM_PREC_BF16)
        return ims_fail(e, IMGSIM_ERR_UNSUPPORTED,
                        "cuda: precision bf16 is not supported by the CUDA engine (use fp16, tf32 or fp32)");

    /* The batch size: the largest batch the engine runs (imgsim_engine_run's limit, and
     * imgsim_extract's batches unless imgsim_extract_opts.batch_size asks for fewer). N > 0 (the
     * CLI's --batch-size=N) is that, or an error where it does not fit (CUDA: device memory);
     * 0 (--batch-size=auto) is AUTO_BATCH_CUDA on CUDA, which the backend lowers to what fits in
     * free device memory (batch_auto), and AUTO_BATCH_CPU on the CPU. The GPU decoders are made
     * for cfg->max_batch, which the backend's choice never exceeds. */
    if (opt->max_batch > MAX_BATCH_LIMIT)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "batch size %d: expected 1..%d, or 0 for auto",
                        opt->max_batch, MAX_BATCH_LIMIT);
    cfg->batch_auto = opt->max_batch <= 0;
    cfg->max_batch = opt->max_batch > 0 ? opt->max_batch : cuda ? AUTO_BATCH_CUDA : AUTO_BATCH_CPU;

    if (opt->threads < 0)
        return ims_fail(e, IMGSIM_ERR_INVALID_ARG,
                        "engine options: %d threads: expected 0 (all cores) or more", opt->threads);
    cfg->threads = opt->threads > 0 ? ims_threads_cap(opt->threads, "threads") : ims_num_cores();
    cfg->device_index = cuda ? opt->device_index : 0;
    cfg->normalize = opt->normalize;
    cfg->engine_cache = opt->engine_cache;
    cfg->engine_file = opt->engine_file;
    return IMGSIM_OK;
}
