/* main.c: the imgsim command-line tool: dispatches to one subcommand per file. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli/mpi.h"

/* OpenMP threads (oneDNN's, through libgomp) should wait passively: an idle inference thread then
 * sleeps at once instead of spinning for milliseconds, leaving the cores to the decode workers and
 * to other jobs on the machine (on the 2-core dev machine under load: ~20% less CPU for the same
 * extract, no slower). libgomp reads its environment once, when it is loaded, before main (and
 * glibc resets the environment after .preinit_array functions run), so the commands that run
 * oneDNN inference on the CPU set OMP_WAIT_POLICY=PASSIVE and execute themselves again, once
 * (about 0.1 s of CPU: a second dynamic load). A wait policy or
 * spin count the user set is kept (OMP_WAIT_POLICY=active for libgomp's spinning default). */
static void omp_wait_passive(char **argv) {
    static const char *const inference[] = {"extract", "run", "search", "bench", "demo", "calibrate"};
    int wanted = 0;
    for (size_t i = 0; i < sizeof inference / sizeof inference[0]; i++) wanted |= !strcmp(argv[1], inference[i]);
    for (int i = 2; argv[i]; i++) /* on the GPU oneDNN's threads stay idle: no second start-up */
        if (!strncmp(argv[i], "--device=cuda", 13) || (!strcmp(argv[i], "--device") && argv[i + 1] &&
                                                       !strncmp(argv[i + 1], "cuda", 4)))
            wanted = 0;
    if (!wanted || getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 0) != 0) return;
    execv("/proc/self/exe", argv); /* returns only on failure (no /proc): go on spinning */
}

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} command;

/* the commands that run across the ranks of an MPI job (mpirun) */
static int distributed(const char *name) {
    return !strcmp(name, "search") || !strcmp(name, "extract") || !strcmp(name, "run") || !strcmp(name, "dedup");
}

static const command commands[] = {
    {"split", cmd_split, "stratified train/test split of a labelled image folder or list"},
    {"preprocess", cmd_preprocess, "decode and preprocess one image into a .npy tensor"},
    {"extract", cmd_extract, "extract CNN features of images into a feature store"},
    {"calibrate", cmd_calibrate, "int8 calibration: per-tensor scales of a model from sample images"},
    {"search", cmd_search, "exact cosine top-k of queries against a gallery store"},
    {"run", cmd_run, "the whole job: split, extract gallery and queries, search, report"},
    {"dedup", cmd_dedup, "near-duplicate pairs within a feature store"},
    {"report", cmd_report, "an HTML report of a run job, search results or dedup pairs"},
    {"serve", cmd_serve, "answer similarity queries over HTTP, with a web page"},
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
    omp_wait_passive(argv);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name)) continue;
        cli_mpi_init(&argc, &argv); /* under mpirun only */
        int rc;
        if (cli_mpi_size() > 1 && !distributed(commands[i].name)) {
            if (cli_mpi_rank() == 0)
                fprintf(stderr, "imgsim %s: does not run across MPI ranks yet (extract, run, search and dedup do); run it "
                                "as one process, without mpirun\n", argv[1]);
            rc = 2;
        } else {
            rc = commands[i].fn(argc - 1, argv + 1);
        }
        cli_mpi_finalize();
        return rc;
    }
    fprintf(stderr, "imgsim: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
