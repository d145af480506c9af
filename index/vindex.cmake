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
  ${CMAKE_CURRENT_LIST_DIR}/vindex_shim.cpp)
target_include_directories(sbert_vindex PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(sbert_vindex
  PUBLIC Threads::Threads
  PRIVATE faiss_c sbert_util sbert_warnings)
