/*
 * encoder/qgemm_avxvnni.c compiled a second time, with AVX512-VNNI + VL flags and vpdpbusd's
 * EVEX-256 form (SBERT_QGEMM_VNNI_EVEX), as sbert_qgemm_avxvnni_evex: the AVX-VNNI kernel's
 * tiling, tails and arithmetic, runnable on AVX-512 CPUs that lack AVX-VNNI. A file of its own so
 * that its flags are its own (CMake's source properties belong to a file name).
 */
#define SBERT_QGEMM_VNNI_EVEX 1
#include "qgemm_avxvnni.c"
