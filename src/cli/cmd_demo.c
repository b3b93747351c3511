/* cmd_demo.c: imgsim demo: generates a labelled photo-like JPEG dataset and a random-weight
 * ResNet-50 (nothing downloaded), then runs the whole job on them with imgsim run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imgsim_synth.h"

#include "cli.h"

static const char *usage =
    "imgsim demo [--out=DIR] [--arch=resnet50|resnet18] [--classes=10] [--per-class=30] [--device=cpu|cuda]\n"
    "       [--precision] [--batch-size] [--workers] [--threads] [--quiet]";

int cmd_demo(int argc, char **argv) {
    static const char *const vals[] = {"out", "arch", "classes", "per-class", "device", "precision", "batch-size",
                                       "workers", "threads", NULL};
    cli_args a;
    if (cli_init(&a, argc, argv, vals)) return 1;
    if (cli_flag(&a, "help")) {
        printf("usage: %s\n", usage);
        cli_free(&a);
        return 0;
    }
    const char *out = cli_str(&a, "out", "imgsim-demo");
    const char *arch = cli_str(&a, "arch", "resnet50");
    int classes = (int)cli_int(&a, "classes", 10, 2, 1000);
    int per_class = (int)cli_int(&a, "per-class", 30, 2, 100000);
    const char *pass[5] = {0};
    static const char *passed[] = {"device", "precision", "batch-size", "workers", "threads"};
    char passbuf[5][128];
    for (int i = 0; i < 5; i++) {
        const char *v = cli_str(&a, passed[i], NULL);
        if (v) {
            snprintf(passbuf[i], sizeof passbuf[i], "--%s=%s", passed[i], v);
            pass[i] = passbuf[i];
        }
    }
    int quiet = cli_flag(&a, "quiet");
    int rc = cli_finish(&a, usage);
    if (rc) {
        cli_free(&a);
        return rc;
    }
    char *data = cli_path_join(out, "data"), *model = NULL, *job = cli_path_join(out, "job");
    char mname[64];
    snprintf(mname, sizeof mname, "%s-random.onnx", arch);
    model = cli_path_join(out, mname);
    rc = 1;
    if (!data || !model || !job || cli_mkdir_p("demo", out)) goto done;

    fprintf(stderr, "imgsim demo: generating %d classes x %d photo-like JPEGs in %s\n", classes, per_class, data);
    imgsim_synth_opts so;
    imgsim_synth_opts_init(&so);
    so.n_classes = classes;
    so.per_class = per_class;
    so.min_side = 160;
    so.max_side = 800;
    so.seed = 42;
    so.quiet = quiet;
    imgsim_status sst = imgsim_synth_dataset(data, &so);
    if (sst) {
        rc = cli_fail("demo", sst);
        goto done;
    }
    if (!cli_path_exists(model)) {
        fprintf(stderr, "imgsim demo: writing %s (%s, random Kaiming-normal weights, seed 42)\n", model, arch);
        imgsim_status st = imgsim_model_init(model, arch, 42);
        if (st) {
            rc = cli_fail("demo", st);
            goto done;
        }
    }
    char mopt[1024], oopt[1024];
    snprintf(mopt, sizeof mopt, "--model=%s", model);
    snprintf(oopt, sizeof oopt, "--out=%s", job);
    char *rargv[16];
    int rargc = 0;
    rargv[rargc++] = "run";
    rargv[rargc++] = data;
    rargv[rargc++] = mopt;
    rargv[rargc++] = oopt;
    for (int i = 0; i < 5; i++)
        if (pass[i]) rargv[rargc++] = (char *)pass[i];
    if (quiet) rargv[rargc++] = "--quiet";
    rargv[rargc] = NULL;
    rc = cmd_run(rargc, rargv);
    if (rc == 0) {
        fprintf(stderr,
                "\nimgsim demo: done. Results: %s/results.tsv, summary: %s/summary.json, splits: %s/{train,test}.tsv\n"
                "\nNOTE: the demo model %s has RANDOM weights (no download happens), so its features only\n"
                "group images by low-level look, and the accuracies above say little about a real model.\n"
                "For real features, export a pretrained torchvision model where PyTorch and internet are available:\n"
                "    python3 tools/export_torchvision.py --arch resnet50 --out resnet50.onnx\n"
                "and run: imgsim run %s --model=resnet50.onnx --out=%s-pretrained\n",
                job, job, job, model, data, job);
    }
done:
    free(data);
    free(model);
    free(job);
    cli_free(&a);
    return rc;
}
