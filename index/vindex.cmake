# index/vindex.cmake — the vector index library `sbert_vindex` (index/vindex.h); included by
# index/CMakeLists.txt and, when that is absent, by tests/vindex and bench/index.
include_guard(GLOBAL)
include(${CMAKE_SOURCE_DIR}/cmake/faiss_c.cmake)

add_library(sbert_vindex STATIC
  ${CMAKE_CURRENT_LIST_DIR}/vindex.c
  ${CMAKE_CURRENT_LIST_DIR}/vindex_shim.cpp)
target_include_directories(sbert_vindex PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(sbert_vindex
  PUBLIC Threads::Threads
  PRIVATE faiss_c sbert_warnings)

# bench/index's program (bench/index/run.sh builds it); not part of `all`.
add_executable(bench_index EXCLUDE_FROM_ALL ${CMAKE_SOURCE_DIR}/bench/index/bench_index.c)
target_link_libraries(bench_index PRIVATE sbert_vindex sbert_warnings)
set_target_properties(bench_index PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench)

# bench/index/facts.c: re-checks the FAISS behaviours this module is designed around.
add_executable(vindex_facts EXCLUDE_FROM_ALL ${CMAKE_SOURCE_DIR}/bench/index/facts.c)
target_link_libraries(vindex_facts PRIVATE sbert_vindex faiss_c sbert_warnings m)
set_target_properties(vindex_facts PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench)
