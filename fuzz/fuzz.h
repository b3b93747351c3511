/*
 * fuzz.h: what the libFuzzer harnesses of fuzz/ share: a private scratch folder (the importers
 * under test read files, so each input is written to one), and FUZZ_CHECK, which aborts with a
 * message when an invariant of the library is broken (libFuzzer then saves the input as a crash).
 *
 * The harnesses are built twice: with libFuzzer (`make fuzz`, clang, fuzz/CMakeLists.txt) and,
 * in the ordinary build, with standalone.c as a replay driver that runs the committed seeds and
 * regression inputs under ASan+UBSan as CTest tests (tests/fuzz.cmake).
 */
#ifndef IMGSIM_FUZZ_H
#define IMGSIM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "imgsim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts (a crash for libFuzzer) when cond is false: an invariant of the library is broken. */
#define FUZZ_CHECK(cond, ...)                                                                                \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "fuzz invariant broken (%s:%d): %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fputc('\n', stderr);                                                                             \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

/* The process's scratch folder (created on first use, removed at exit with what is in it):
 * "$TMPDIR/imgsim-fuzz-XXXXXX" (or /tmp). Aborts when it cannot be created. */
const char *fuzz_dir(void);

/* "fuzz_dir()/name" in a static buffer (one per name slot: slot 0..3). */
const char *fuzz_path(int slot, const char *name);

/* Writes data to path (truncating), aborts on failure. */
void fuzz_write(const char *path, const void *data, size_t size);

/* Reads a whole file (malloc'ed, *size set), NULL when it cannot be read. */
uint8_t *fuzz_read(const char *path, size_t *size);

/* Checks that a failing call left a message that names `name` (every bad input gets a clear
 * error naming the file and the reason) and a status other than IMGSIM_ERR_INTERNAL. */
void fuzz_check_error(imgsim_status st, const char *msg, const char *name);

/* Fault injection (core.h's ims_alloc_fail_after): from the n-th library allocation on, every
 * one fails, with n in [0, bound) taken from a hash of the input, so one input always fails at
 * the same point and the corpus as a whole reaches every point. fuzz_fail_off() ends it. */
void fuzz_fail_from(const uint8_t *data, size_t size, unsigned bound);
void fuzz_fail_off(void);

/* Checks the result of a call made under fuzz_fail_from: success (n was past its last
 * allocation) or IMGSIM_ERR_NOMEM with a message (which may name the item being worked on, e.g.
 * a list entry, rather than `name`); any other status means an allocation failure was reported as
 * another error. */
void fuzz_check_nomem(imgsim_status st, const char *msg, const char *name);

#endif /* IMGSIM_FUZZ_H */
