/*
 * fuzz_common.h — shared by the fuzz targets (tests/fuzz/fuzz_<t>.c). Each target defines
 * LLVMFuzzerTestOneInput(); it is linked either with libFuzzer (SBERT_FUZZ=ON, clang) or with
 * replay.c, which feeds it the committed corpus and regression inputs in any build.
 *
 * FUZZ_ASSERT states an invariant of the code under test: a violation aborts, which libFuzzer
 * records as a crash and the replay test as a failure.
 */
#ifndef SBERT_FUZZ_COMMON_H
#define SBERT_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#endif
