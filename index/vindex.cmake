# index/vindex.cmake — the vector index library `sbert_vindex` (index/vindex.h); included by
# index/CMakeLists.txt and, when that is absent, by tests/vindex and bench/index.
include_guard(GLOBAL)
include(${CMAKE_SOURCE_DIR}/cmake/faiss_c.cmake)

add_library(sbert_vindex STATIC
  ${CMAKE_CURRENT_LIST_DIR}/vindex.c
  ${CMAKE_CURRENT_LIST_DIR}/vindex_lset.c
  ${CMAKE_CURRENT_LIST_DIR}/vindex_train.c
  ${CMAKE_CURRENT_LIST_DIR}/vindex_snap.c
  ${CMAKE_CURRENT_LIST_DIR}/vindex_format.c
  ${CMAKE_CURRENT_LIST_DIR}/vindex_hash.c
  ${CMAKE_CURRENT_LIST_DIR}/vindex_qscan.c
  ${CMAKE_CURRENT_LIST_DIR}/vindex_qscan_ip.c
  ${CMAKE_CURRENT_LIST_DIR}/vindex_shim.cpp)
# The re-rank's products and adds stay separate roundings, as in FAISS's reference loop.
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/vindex_qscan_ip.c PROPERTIES
                            COMPILE_OPTIONS "-ffp-contract=off")
# The quantised Flat scan's kernels: each file gets its ISA's flags whatever SBERT_NATIVE says and
# runs only where vindex_qscan.c finds the CPU can (one binary for AVX2-only and AVX-512 machines).
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  target_sources(sbert_vindex PRIVATE ${CMAKE_CURRENT_LIST_DIR}/vindex_qscan_avx2.c
                                      ${CMAKE_CURRENT_LIST_DIR}/vindex_qscan_avxvnni.c
                                      ${CMAKE_CURRENT_LIST_DIR}/vindex_qscan_avx512.c)
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/vindex_qscan_avx2.c PROPERTIES
                              COMPILE_OPTIONS "-mavx2;-mno-avx512f")
  # VEX only, as its CPUs have no EVEX (tests/vindex checks the encoding)
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/vindex_qscan_avxvnni.c PROPERTIES
                              COMPILE_OPTIONS "-mavx2;-mavxvnni;-mno-avx512f")
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/vindex_qscan_avx512.c PROPERTIES
                              COMPILE_OPTIONS "-mavx2;-mavx512f;-mavx512bw;-mavx512vnni")
endif()
target_include_directories(sbert_vindex PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(sbert_vindex
  PUBLIC Threads::Threads
  PRIVATE faiss_c sbert_util sbert_warnings)
