/* cmd_extract.c: imgsim extract: features of a folder, TSV list or single image into a store. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cli/mpi.h"

static const char *usage =
    "imgsim extract --model=M.onnx --out=STORE [--device=cpu|cuda[:N]|cuda:N,M,...|cuda:all] [--precision=fp32|bf16|fp16|tf32|int8 [--calib=FILE]]\n"
    "       [--batch-size=N|auto] [--workers=N] [--threads=N] [--layer=NAME] [--dtype=float32|float16]\n"
    "       [--no-normalize] [--max-pixels=N] [--no-exif-rotate] [--fast-decode]\n"
    "       [--resize=HxW|shorter:S] [--crop=HxW|N] [--interp=bilinear|bicubic] [--mean=R,G,B] [--std=R,G,B]\n"
    "       [--engine-cache=DIR|off] [--engine=FILE] [--decode=auto|cpu|gpu] [--shard-size=N] [--layout=single|sharded]\n"
    "       [--durable] [--update] [--hash] [--quiet] INPUT\n"
    "  --update: STORE is complete and from the same model and settings: extract only the images of INPUT\n"
    "  that are new or changed (path, size, modification time), drop removed ones, keep the other rows\n"
    "  --hash: record each input's SHA-256 in inputs.tsv; with --update, compare content (path, size,\n"
    "  hash) instead of modification time, so a touched file is kept and one rewritten in place is not\n"
    "  --shard-size: images per shard of the store being written (default 1024): an extract killed and\n"
    "  run again with the same command keeps the complete shards; --durable: each file fsynced (and its\n"
    "  folder) before it counts as written, so a power cut keeps them too (imgsim run: on by default)\n"
    "  --layout=sharded: the store keeps one features-K.npy + manifest-K.tsv per shard, listed in\n"
    "  meta.json, instead of joining them into features.npy + manifest.tsv (default single)\n"
    "  --device=cuda:0,1 (or cuda:all): one engine per listed GPU (cuda:0,0: two on GPU 0), the store's\n"
    "  shards dealt to them; the store equals a one-GPU extraction's\n"
    "  --resize, --crop: resize (to HxW, or the shorter side to S) then centre-crop to the model's input\n"
    "  (--crop, when given, must be it); default: resize straight to the input. --mean/--std: ImageNet's";

/* the listed files that are not images (imgsim_extract warns of them itself) */
static void warn_skipped(const imgsim_dataset *ds) {
    imgsim_dataset_info di;
    if (!cli_log_enabled(IMGSIM_LOG_WARN) || imgsim_dataset_get_info(ds, &di)) return;
    for (size_t i = 0; i < di.n_skipped; i++) {
        imgsim_dataset_skip sk;
        if (!imgsim_dataset_get_skipped(ds, i, &sk)) fprintf(stderr, "imgsim: warning: skipped %s: %s\n", sk.path, sk.reason);
    }
}

int cmd_extract(int argc, char **argv) {
    static const char *const vals[] = {"model", "out", "layer", "layout", CLI_EXTRACT_VALUE_OPTS, NULL};
    cli_args a;
    int started = cli_start(&a, argc, argv, vals, usage);
    if (started >= 0) return started;
    const char *model = cli_str(&a, "model", NULL), *out = cli_str(&a, "out", NULL);
    const char *layer = cli_str(&a, "layer", NULL);
    imgsim_engine_opts eo;
    imgsim_extract_opts xo;
    cli_engine_opts(&a, &eo);
    cli_extract_opts(&a, &xo);
    const int pre_given = cli_preprocess_given(&a);
    eo.prepare_gpu_decode = xo.decode != IMGSIM_DECODE_CPU; /* CUDA: nvJPEG made while the engine loads */
    if (cli_flag(&a, "no-normalize")) eo.normalize = 0;
    xo.update = cli_flag(&a, "update");
    xo.hash = cli_flag(&a, "hash");
    const char *input = cli_pos(&a, 0);
    int rc = cli_finish(&a, usage);
    if (!rc && (!model || !out || !input)) {
        fprintf(stderr, "imgsim extract: --model, --out and INPUT are required\nusage: %s\n", usage);
        rc = 2;
    }
    if (rc) {
        cli_free(&a);
        return rc;
    }
    int ranks = cli_mpi_size(), n_eng = a.n_devices;
    if (ranks > 1 && n_eng > 1) {
        fprintf(stderr, "imgsim extract: under mpirun each rank drives one GPU: give --device=cuda:N (a rank per "
                        "GPU), not a list\n");
        cli_free(&a);
        return 2;
    }
    if (n_eng > 1 && xo.update) {
        fprintf(stderr, "imgsim extract: --update runs on one engine: give one device\n");
        cli_free(&a);
        return 2;
    }
    if (ranks > 1) { /* under mpirun: the cores of this host shared by its ranks */
        if (!eo.threads) eo.threads = cli_mpi_threads_per_rank();
        if (!xo.workers) xo.workers = cli_mpi_threads_per_rank();
    }
    /* the engine straight from the model file: a cached CUDA engine skips the ONNX import */
    imgsim_engine *engs[CLI_MAX_DEVICES];
    double t0 = cli_now();
    int bad = cli_engines_make("extract", &a, NULL, model, layer, &eo, engs);
    imgsim_engine *e = engs[0];
    if (cli_mpi_agree("extract", bad, imgsim_last_error())) {
        cli_engines_destroy(engs, n_eng);
        cli_free(&a);
        return 1;
    }
    imgsim_engine_info ei;
    imgsim_engine_get_info(e, &ei);
    cli_preprocess_fit(&xo.pre, pre_given, ei.in_height, ei.in_width);
    if (cli_mpi_rank() == 0) /* (once for the job) */
        cli_info("imgsim: model %s: layer '%s', %d-d features, input %dx%dx%d\n", model, ei.layer, ei.dim,
            ei.in_channels, ei.in_height, ei.in_width);
    if (cli_mpi_rank() == 0)
        cli_info("imgsim: engine%s %s, %s, batch %d, ready in %.2f s%s\n", n_eng > 1 ? "s" : "", ei.device_name,
            imgsim_precision_str(ei.precision), ei.max_batch, cli_now() - t0,
            ei.model_imported ? "" : " (cached engine, model not imported)");
    imgsim_status st;
    imgsim_extract_stats s;
    if (n_eng > 1) { /* one engine per listed GPU, the shards dealt to them */
        cli_info("imgsim: %d engines on cuda:%d", n_eng, a.devices[0]);
        for (int i = 1; i < n_eng; i++) cli_info(",%d", a.devices[i]);
        cli_info("\n");
        imgsim_dataset *ds = NULL;
        st = imgsim_dataset_open(&ds, input);
        if (!st) warn_skipped(ds);
        if (!st) st = imgsim_extract_engines(engs, n_eng, ds, out, &xo, &s);
        imgsim_dataset_destroy(ds);
        cli_engines_destroy(engs, n_eng);
        cli_free(&a);
        if (st) return cli_fail("extract", st);
        cli_info("imgsim: %s: %lld images ok, %lld failed, %lld skipped in %.2f s: %.1f images/s end to end, "
                 "%d engines (inference busy %.2f s in all)\n", out, (long long)s.ok, (long long)s.failed,
                 (long long)s.skipped, s.seconds_total, s.images_per_s, n_eng, s.seconds_infer_busy);
        return 0;
    }
    if (ranks > 1) { /* every rank lists the input (a shared file system) and extracts its shards */
        imgsim_dataset *ds = NULL;
        st = imgsim_dataset_open(&ds, input);
        if (st) fprintf(stderr, "imgsim extract: rank %d of %d on %s: %s\n", cli_mpi_rank(), ranks, cli_mpi_host(),
                        imgsim_last_error());
        bad = cli_mpi_agree("extract", st != IMGSIM_OK, imgsim_last_error());
        if (!bad && cli_mpi_rank() == 0) warn_skipped(ds);
        bad = bad || cli_extract_ranks("extract", e, ds, out, &xo, &s);
        imgsim_dataset_destroy(ds);
        imgsim_engine_destroy(e);
        cli_free(&a);
        if (bad || cli_mpi_rank() != 0) return bad;
        cli_info("imgsim: %s: %lld images ok, %lld failed, %lld skipped in %.2f s: %.1f images/s end to end, "
                 "%d ranks\n", out, (long long)s.ok, (long long)s.failed, (long long)s.skipped, s.seconds_total,
                 s.images_per_s, ranks);
        return 0;
    }
    st = imgsim_extract(e, model, input, out, &xo, &s);
    imgsim_engine_destroy(e);
    cli_free(&a);
    if (st) return cli_fail("extract", st);
    int workers = xo.workers > 0 ? xo.workers : 0;
    cli_info(
            "imgsim: %s: %lld images ok, %lld failed, %lld skipped in %.2f s: %.1f images/s end to end\n"
            "imgsim: stages: cpu decode+preprocess busy %.2f s (%.0f%% of %s workers), gpu decode %lld images in "
            "%.2f s, inference %.2f s, write %.2f s, waiting for workers %.2f s, setup %.2f s, nvJPEG init %.2f s\n",
            out, (long long)s.ok, (long long)s.failed, (long long)s.skipped, s.seconds_total, s.images_per_s,
            s.seconds_decode_busy, s.seconds_total > 0 ? 100.0 * s.seconds_decode_busy / (s.seconds_total *
            (workers ? workers : cli_num_cores())) : 0, workers ? "the" : "all",
            (long long)s.gpu_decoded, s.seconds_gpu_decode, s.seconds_infer_busy, s.seconds_write,
            s.seconds_wait_workers, s.seconds_setup, s.seconds_gpu_init);
    return 0;
}
