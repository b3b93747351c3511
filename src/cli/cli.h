/*
 * cli.h: the imgsim command-line tool: one file per subcommand (cmd_<name>.c), each an
 * int cmd_<name>(int argc, char **argv) returning the process exit status (0 ok, 1 failure,
 * 2 usage error), and a small option parser shared by all of them.
 */
#ifndef IMGSIM_CLI_H
#define IMGSIM_CLI_H

#include <stdint.h>

#include "cli/util.h"
#include "imgsim.h"

int cmd_split(int argc, char **argv);
int cmd_preprocess(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_dedup(int argc, char **argv);
int cmd_engine(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_topk(int argc, char **argv); /* hidden helper for tests and benchmarks */
int cmd_synth(int argc, char **argv);
int cmd_gpupre(int argc, char **argv); /* hidden helper for GPU decoding tests */
int cmd_report(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);

/* Options: "--name=value", "--name value" (for options declared as taking a value) and flags
 * "--name". Everything else is positional. argv[0] is the subcommand. */
#define CLI_MAX_DEVICES 64

typedef struct cli_args {
    int argc;
    char **argv;
    unsigned char *used; /* per argv entry */
    const char *cmd;     /* for messages */
    int error;           /* set when a value is malformed or an option is unknown */
    int n_devices;       /* cli_engine_opts: the GPUs of --device=cuda:all or cuda:0,2,... (a GPU may
                            repeat: two engines on it); 1 for cpu, cuda and cuda:N */
    int devices[CLI_MAX_DEVICES];
} cli_args;

/* Parses; value_opts lists the options (without "--") that take a value, NULL-terminated. */
int cli_init(cli_args *a, int argc, char **argv, const char *const *value_opts);
/* The start of every subcommand: cli_init, then --help (prints usage) and -q/-v. Returns -1 to go
 * on, or the exit status to return at once (0 after --help, 1 when parsing failed). */
int cli_start(cli_args *a, int argc, char **argv, const char *const *value_opts, const char *usage);

/* The preprocessing options (cli_preprocess_opts). */
#define CLI_PREPROCESS_VALUE_OPTS "resize", "crop", "mean", "std", "interp"
/* The options that take a value in every command that builds an engine and extracts images. */
#define CLI_EXTRACT_VALUE_OPTS                                                                                 \
    "device", "precision", "batch-size", "workers", "threads", "dtype", "max-pixels", "engine-cache", "engine", \
        "decode", "calib", "shard-size", CLI_PREPROCESS_VALUE_OPTS
void cli_free(cli_args *a);
const char *cli_str(cli_args *a, const char *name, const char *def);
int cli_flag(cli_args *a, const char *name); /* 1 if present */
long cli_int(cli_args *a, const char *name, long def, long min, long max);
double cli_double(cli_args *a, const char *name, double def, double min, double max);
uint64_t cli_u64(cli_args *a, const char *name, uint64_t def);
/* n-th positional argument (0-based, after the subcommand), or NULL. */
const char *cli_pos(cli_args *a, int n);
int cli_npos(cli_args *a);
/* After reading every option: reports unknown options and errors. Returns 0 if all is well, else
 * prints to stderr and returns 2. */
int cli_finish(cli_args *a, const char *usage);

/* Shared option groups (parsed the same way by every command that has them). */
/* --device=cpu|cuda[:N], --precision=fp32|bf16|fp16|tf32|int8, --batch-size=N|auto, --threads=N,
 * --engine-cache=DIR|off, --engine=FILE, --calib=FILE */
int cli_engine_opts(cli_args *a, imgsim_engine_opts *o);
/* The engines of --device: one per GPU of a->devices (cli_engine_opts; one engine for cpu, cuda,
 * cuda:N), made one after the other so that the first builds and caches the engine file and the
 * others load it; from the loaded model m, or when m is NULL from model_path and layer. Fills
 * engs[a->n_devices]; returns 0, or 1 after printing the error (none left made). */
int cli_engines_make(const char *cmd, const cli_args *a, imgsim_model *m, const char *model_path, const char *layer,
                     const imgsim_engine_opts *eo, imgsim_engine **engs);
void cli_engines_destroy(imgsim_engine **engs, int n);
/* --batch-size=N|auto as imgsim_engine_opts.max_batch (auto: 0); def when absent. Every command
 * spells it so (engine build also takes --max-batch=N, its old spelling, for a release). */
int cli_batch_size(cli_args *a, int def);
/* --workers=N, --max-pixels=N, --no-exif-rotate, --fast-decode (--no-dct-scaling: a no-op),
 * --dtype=float32|float16, the preprocessing options (cli_preprocess_opts),
 * --decode=auto|cpu|gpu, --quiet */
int cli_extract_opts(cli_args *a, imgsim_extract_opts *o);
/* The CLI_PRE_* bits of the preprocessing options present on the command line. */
int cli_preprocess_given(cli_args *a);
/* --resize=HxW|shorter:S, --crop=HxW|N, --mean=r,g,b, --std=r,g,b, --interp=bilinear|bicubic into
 * pre (imgsim_preprocess_opts_set; a bad value is reported and sets a->error). Returns which were
 * given (CLI_PRE_* bits). Without --crop, pre's height and width are left alone: the caller sets
 * them to the model's input (cli_preprocess_fit). */
enum { CLI_PRE_RESIZE = 1, CLI_PRE_CROP = 2, CLI_PRE_MEAN = 4, CLI_PRE_STD = 8, CLI_PRE_INTERP = 16 };
int cli_preprocess_opts(cli_args *a, imgsim_preprocess_opts *pre);
/* The crop (network input) is the model's in_h x in_w unless --crop was given (given: the bits
 * cli_preprocess_opts returned). */
void cli_preprocess_fit(imgsim_preprocess_opts *pre, int given, int in_h, int in_w);
/* With preprocessing options given on the command line, checks them against the gallery's
 * (gallery_pre, from its meta.json; the crop defaults to the gallery's): prints which field
 * differs and returns 1, else 0. For commands that embed images the gallery's way. */
int cli_preprocess_match(const char *cmd, const imgsim_preprocess_opts *pre, int given,
                         const imgsim_preprocess_opts *gallery_pre, const char *gallery);
/* -q/--quiet, -v/--verbose: set the log level */
void cli_log_opts(cli_args *a);

/* fprintf to stderr unless -q/--quiet (the log level is below INFO): progress and reports. */
void cli_info(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Prints "imgsim <cmd>: <msg>" for a failed status with imgsim_last_error() and returns 1. */
int cli_fail(const char *cmd, imgsim_status st);

#endif
