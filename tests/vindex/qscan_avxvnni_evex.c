/*
 * index/vindex_qscan_avxvnni.c compiled a second time, with AVX512-VNNI + VL flags and vpdpbusd's
 * EVEX-256 form (VINDEX_QSCAN_VNNI_EVEX), as qscan_dots_avxvnni_evex: the AVX-VNNI kernel's
 * loop, tail and arithmetic, runnable on AVX-512 CPUs that lack AVX-VNNI. A file of its own so
 * that its flags are its own (CMake's source properties belong to a file name).
 */
#define VINDEX_QSCAN_VNNI_EVEX 1
#include "vindex_qscan_avxvnni.c"
