/*
 * cmd_model.c: imgsim model init | info
 *
 *   imgsim model init --arch=resnet18|resnet34|resnet50 [--seed=N] --out=FILE.onnx
 *       writes a torchvision-layout ResNet with random (Kaiming-normal) weights as ONNX
 *       (opset 13, dynamic batch), for demos and tests without PyTorch.
 *   imgsim model info FILE.onnx [--layer=NAME] [--json]
 *       loads and validates the model as `imgsim extract` would and prints its opset, input
 *       shape, operator and parameter counts and the embedding layer with its dimension.
 *
 * info goes through the public imgsim_model_load (the same checks, layer choice and
 * optimisation as extraction), which also counts the file's own operators and parameters.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "imgsim_synth.h"

#include "cli.h"

static const char usage_top[] =
    "imgsim model init --arch=resnet18|resnet34|resnet50 [--seed=N] --out=FILE.onnx\n"
    "       imgsim model info FILE.onnx [--layer=NAME] [--json]";

static const char usage_init[] =
    "imgsim model init --arch=resnet18|resnet34|resnet50 [--seed=N] --out=FILE.onnx\n"
    "  --arch  torchvision ResNet layout (with its 1000-class fc head)\n"
    "  --seed  seed of the Kaiming-normal weights (default 0)\n"
    "  --out   the ONNX file to write (opset 13, input \"input\" [batch_size, 3, 224, 224])";

static const char usage_info[] =
    "imgsim model info FILE.onnx [--layer=NAME] [--json]\n"
    "  --layer  the value whose features are extracted (default: the input of the final linear\n"
    "           classifier when the graph ends in one, else the graph output; for a ViT the class\n"
    "           token after the final LayerNorm, a CLIP tower's projection kept); pool:cls the\n"
    "           class token, pool:mean the mean of the patch tokens\n"
    "  --json   print one JSON object";

/* Prints s as a JSON string. */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static int model_init(int argc, char **argv) {
    static const char *const vopts[] = {"arch", "seed", "out", NULL};
    cli_args a;
    int started = cli_start(&a, argc, argv, vopts, usage_init);
    if (started >= 0) return started;
    const char *arch = cli_str(&a, "arch", NULL);
    uint64_t seed = cli_u64(&a, "seed", 0);
    const char *out = cli_str(&a, "out", NULL);
    int rc = cli_finish(&a, usage_init);
    if (!rc && (!arch || !out)) {
        fprintf(stderr, "imgsim model init: --arch and --out are required\nusage: %s\n", usage_init);
        rc = 2;
    }
    if (!rc && strcmp(arch, "resnet18") && strcmp(arch, "resnet34") && strcmp(arch, "resnet50")) {
        fprintf(stderr, "imgsim model init: --arch=%s: expected resnet18, resnet34 or resnet50\n", arch);
        rc = 2;
    }
    if (!rc) {
        imgsim_status s = imgsim_model_init(out, arch, seed);
        if (s != IMGSIM_OK)
            rc = cli_fail("model init", s);
        else if (cli_log_enabled(IMGSIM_LOG_INFO))
            fprintf(stderr, "imgsim model init: wrote %s (%s, seed %" PRIu64 ")\n", out, arch, seed);
    }
    cli_free(&a);
    return rc;
}

static int model_info(int argc, char **argv) {
    static const char *const vopts[] = {"layer", NULL};
    cli_args a;
    int started = cli_start(&a, argc, argv, vopts, usage_info);
    if (started >= 0) return started;
    const char *layer = cli_str(&a, "layer", NULL);
    int json = cli_flag(&a, "json");
    const char *path = cli_pos(&a, 0);
    int rc = cli_finish(&a, usage_info);
    if (!rc && !path) {
        fprintf(stderr, "imgsim model info: which model?\nusage: %s\n", usage_info);
        rc = 2;
    }
    imgsim_model *m = NULL;
    if (!rc) {
        imgsim_status s = imgsim_model_load(&m, path, layer);
        if (s != IMGSIM_OK) rc = cli_fail("model info", s);
    }
    imgsim_model_info mi;
    if (!rc) {
        imgsim_status s = imgsim_model_get_info(m, &mi);
        if (s != IMGSIM_OK) rc = cli_fail("model info", s);
    }
    int n_ops = rc ? 0 : mi.n_nodes_file;
    int64_t n_params = rc ? 0 : mi.n_params;
    if (!rc && json) {
        printf("{\"model\": ");
        json_str(stdout, path);
        printf(", \"sha256\": \"%s\", \"opset\": %d, \"input\": [-1, %d, %d, %d], \"nodes\": %d, "
               "\"nodes_optimized\": %d, \"params\": %" PRId64 ", \"layer\": ",
               mi.sha256, mi.opset, mi.in_channels, mi.in_height, mi.in_width, n_ops, mi.n_nodes, n_params);
        json_str(stdout, mi.layer);
        printf(", \"embedding\": ");
        json_str(stdout, mi.embedding);
        printf(", \"operators\": ");
        json_str(stdout, mi.operators);
        printf(", \"dim\": %d}\n", mi.dim);
    } else if (!rc) {
        printf("model:      %s\n", path);
        printf("sha256:     %s\n", mi.sha256);
        printf("opset:      %d\n", mi.opset);
        printf("input:      [N, %d, %d, %d] float32\n", mi.in_channels, mi.in_height, mi.in_width);
        printf("nodes:      %d operators (%d after optimisation)\n", n_ops, mi.n_nodes);
        printf("params:     %" PRId64 " (%.1f MB as float32)\n", n_params, (double)n_params * 4 / 1e6);
        printf("layer:      %s\n", mi.layer);
        printf("embedding:  %s\n", mi.embedding);
        printf("operators:  %s\n", mi.operators);
        printf("dim:        %d\n", mi.dim);
    }
    imgsim_model_destroy(m);
    cli_free(&a);
    return rc;
}

int cmd_model(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(argc < 2 ? stderr : stdout, "usage: %s\n", usage_top);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "init")) return model_init(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info")) return model_info(argc - 1, argv + 1);
    fprintf(stderr, "imgsim model: unknown subcommand '%s'\nusage: %s\n", argv[1], usage_top);
    return 2;
}
