/*
 * cmd_synth.c: imgsim synth --out=DIR [--classes=10] [--per-class=30] [--min-side=256]
 *              [--max-side=640] [--seed=42] [--large-fraction=0] [--large-min-side=1200]
 *              [--quality=90] [--threads=0] [--quiet]
 *
 * Writes a labelled photo-like JPEG dataset (DIR/class_XX/img_YYYY.jpg, see include/imgsim_synth.h,
 * libimgsim_synth) for demos, tests and benchmarks. Not needed for real work; listed in
 * `imgsim --help` for benchmarks.
 */
#include <stdio.h>
#include <string.h>

#include "imgsim_synth.h"

#include "cli.h"

static const char usage[] =
    "imgsim synth --out=DIR [--classes=10] [--per-class=30] [--min-side=256] [--max-side=640]\n"
    "             [--seed=42] [--large-fraction=0] [--large-min-side=1200] [--quality=90]\n"
    "             [--threads=0] [--quiet]\n"
    "  writes DIR/class_XX/img_YYYY.jpg: generated photo-like images, each class with its own look;\n"
    "  sides in [min-side, max-side], except a --large-fraction share with sides in\n"
    "  [large-min-side, large-min-side*4/3]. The same options always give the same files.";

int cmd_synth(int argc, char **argv) {
    static const char *const value_opts[] = {
        "out",     "classes", "per-class", "min-side", "max-side", "seed", "large-fraction", "large-min-side",
        "quality", "threads", NULL};
    cli_args a;
    int started = cli_start(&a, argc, argv, value_opts, usage);
    if (started >= 0) return started;
    imgsim_synth_opts o;
    imgsim_synth_opts_init(&o);
    const char *out = cli_str(&a, "out", NULL);
    o.n_classes = (int)cli_int(&a, "classes", o.n_classes, 1, 10000);
    o.per_class = (int)cli_int(&a, "per-class", o.per_class, 1, 10000000);
    o.min_side = (int)cli_int(&a, "min-side", o.min_side, 8, 16384);
    o.max_side = (int)cli_int(&a, "max-side", o.max_side < o.min_side ? o.min_side : o.max_side, 8, 16384);
    o.seed = cli_u64(&a, "seed", o.seed);
    o.large_fraction = cli_double(&a, "large-fraction", 0.0, 0.0, 1.0);
    o.large_min_side = (int)cli_int(&a, "large-min-side", o.large_min_side, 8, 12288);
    o.quality = (int)cli_int(&a, "quality", o.quality, 1, 100);
    o.threads = (int)cli_int(&a, "threads", 0, 0, 4096);
    o.quiet = !cli_log_enabled(IMGSIM_LOG_INFO);
    int rc = cli_finish(&a, usage);
    if (!rc && !out) {
        fprintf(stderr, "imgsim synth: missing --out=DIR\nusage: %s\n", usage);
        rc = 2;
    }
    if (!rc && o.max_side < o.min_side) {
        fprintf(stderr, "imgsim synth: --max-side (%d) is below --min-side (%d)\n", o.max_side, o.min_side);
        rc = 2;
    }
    if (rc) {
        cli_free(&a);
        return rc;
    }
    double t0 = cli_now();
    imgsim_status st = imgsim_synth_dataset(out, &o);
    cli_free(&a);
    if (st != IMGSIM_OK) return cli_fail("synth", st);
    if (!o.quiet)
        fprintf(stderr, "imgsim synth: wrote %lld images in %d classes to %s (%.1f s)\n",
                (long long)o.n_classes * o.per_class, o.n_classes, out, cli_now() - t0);
    return 0;
}
