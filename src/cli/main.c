/* main.c: the imgsim command-line tool: dispatches to one subcommand per file. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"split", cmd_split, "stratified train/test split of a labelled image folder or list"},
    {"preprocess", cmd_preprocess, "decode and preprocess one image into a .npy tensor"},
    {"extract", cmd_extract, "extract CNN features of images into a feature store"},
    {"search", cmd_search, "exact cosine top-k of queries against a gallery store"},
    {"run", cmd_run, "the whole job: split, extract gallery and queries, search, report"},
    {"dedup", cmd_dedup, "near-duplicate pairs within a feature store"},
    {"engine", cmd_engine, "build or inspect CUDA engine files"},
    {"model", cmd_model, "create (init) or inspect (info) ONNX models"},
    {"bench", cmd_bench, "time the inference engine alone"},
    {"demo", cmd_demo, "generate a small dataset and model and run the whole job"},
    {"topk", cmd_topk, "exact top-k over raw .npy matrices (tests, benchmarks)"},
    {"synth", cmd_synth, "generate a labelled photo-like JPEG dataset (demos, tests, benchmarks)"},
    {"gpupre", cmd_gpupre, "preprocess files through the GPU input path into a .npy (tests)"},
};

static void usage(FILE *f) {
    fprintf(f, "imgsim %s: CNN image features and cosine-similarity search\n\n"
               "usage: imgsim <command> [options]\n\ncommands:\n",
            imgsim_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nRun 'imgsim <command> --help' for a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("imgsim %s\n", imgsim_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "imgsim: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
