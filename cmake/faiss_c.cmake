# cmake/faiss_c.cmake — the FAISS C API as a static library target `faiss_c`.
#
# libfaiss-dev 1.7.3 ships the C API's headers' C++ counterpart but not the C API itself, so we
# compile c_api/*.cpp from Debian's own faiss source package (scripts/setup.sh unpacks it into
# third_party/faiss-src), the exact version libfaiss.a was built from.
#
# The C API is always compiled with NDEBUG: without it, FAISS_THROW's catch blocks in
# c_api/macros_impl.h print every caught exception to stderr, and a library must not print.
include_guard(GLOBAL)

set(SBERT_FAISS_SRC "${CMAKE_SOURCE_DIR}/third_party/faiss-src" CACHE PATH
    "Debian's faiss source package, unpacked (scripts/setup.sh does it)")
if(NOT EXISTS "${SBERT_FAISS_SRC}/c_api/Index_c.cpp")
  message(FATAL_ERROR "FAISS C API sources not found in ${SBERT_FAISS_SRC}: run scripts/setup.sh")
endif()

# OpenMP must be found before faiss: Debian's faiss-targets.cmake names OpenMP::OpenMP_CXX.
find_package(OpenMP REQUIRED)
find_package(faiss 1.7.3 REQUIRED CONFIG)

# Debian's libfaiss.a is built for the baseline x86-64 (no AVX, no popcnt). ON builds the same
# Debian source with FAISS_OPT_LEVEL=avx2 (its faiss_avx2 library) inside this build tree and links
# that instead; the headers stay Debian's (same source). See bench/index and docs in the report.
option(SBERT_FAISS_AVX2 "Link FAISS built from Debian's source with AVX2 instead of libfaiss.a" OFF)
if(SBERT_FAISS_AVX2 AND EXISTS /proc/cpuinfo)
  file(STRINGS /proc/cpuinfo _cpu_flags REGEX "^flags.* avx2 " LIMIT_COUNT 1)
  if(NOT _cpu_flags)
    message(WARNING "SBERT_FAISS_AVX2: this CPU has no AVX2; linking Debian's libfaiss.a")
    set(SBERT_FAISS_AVX2 OFF CACHE BOOL "" FORCE)
  endif()
endif()
if(SBERT_FAISS_AVX2)
  find_package(LAPACK REQUIRED)
  include(ExternalProject)
  set(_faiss_avx2_dir "${CMAKE_BINARY_DIR}/faiss-avx2")
  set(_faiss_avx2_lib "${_faiss_avx2_dir}/faiss/libfaiss_avx2.a")
  ExternalProject_Add(faiss_avx2_build
    SOURCE_DIR "${SBERT_FAISS_SRC}"
    BINARY_DIR "${_faiss_avx2_dir}"
    CMAKE_ARGS -DFAISS_OPT_LEVEL=avx2 -DFAISS_ENABLE_GPU=OFF -DFAISS_ENABLE_PYTHON=OFF
               -DFAISS_ENABLE_C_API=OFF -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release
               -DBLA_VENDOR=OpenBLAS -DCMAKE_POSITION_INDEPENDENT_CODE=ON
    # Its own -j: a nested make gets no jobserver from the outer build and would run -j1.
    BUILD_COMMAND ${CMAKE_COMMAND} --build <BINARY_DIR> --target faiss_avx2 --parallel 2
    INSTALL_COMMAND ""
    BUILD_BYPRODUCTS "${_faiss_avx2_lib}")
  add_library(sbert_faiss STATIC IMPORTED GLOBAL)
  set_target_properties(sbert_faiss PROPERTIES
    IMPORTED_LOCATION "${_faiss_avx2_lib}"
    INTERFACE_INCLUDE_DIRECTORIES "/usr/include"
    INTERFACE_LINK_LIBRARIES "OpenMP::OpenMP_CXX;${BLAS_LIBRARIES};${LAPACK_LIBRARIES}")
  add_dependencies(sbert_faiss faiss_avx2_build)
else()
  add_library(sbert_faiss INTERFACE IMPORTED GLOBAL)
  set_target_properties(sbert_faiss PROPERTIES INTERFACE_LINK_LIBRARIES faiss)
endif()

set(_faiss_c_dir "${SBERT_FAISS_SRC}/c_api")
add_library(faiss_c STATIC
  ${_faiss_c_dir}/AutoTune_c.cpp
  ${_faiss_c_dir}/Clustering_c.cpp
  ${_faiss_c_dir}/IndexFlat_c.cpp
  ${_faiss_c_dir}/IndexIVFFlat_c.cpp
  ${_faiss_c_dir}/IndexIVF_c.cpp
  ${_faiss_c_dir}/IndexLSH_c.cpp
  ${_faiss_c_dir}/IndexPreTransform_c.cpp
  ${_faiss_c_dir}/VectorTransform_c.cpp
  ${_faiss_c_dir}/IndexShards_c.cpp
  ${_faiss_c_dir}/IndexReplicas_c.cpp
  ${_faiss_c_dir}/Index_c.cpp
  ${_faiss_c_dir}/IndexBinary_c.cpp
  ${_faiss_c_dir}/IndexScalarQuantizer_c.cpp
  ${_faiss_c_dir}/MetaIndexes_c.cpp
  ${_faiss_c_dir}/clone_index_c.cpp
  ${_faiss_c_dir}/error_impl.cpp
  ${_faiss_c_dir}/index_factory_c.cpp
  ${_faiss_c_dir}/index_io_c.cpp
  ${_faiss_c_dir}/impl/AuxIndexStructures_c.cpp
  ${_faiss_c_dir}/utils/distances_c.cpp
)
target_compile_definitions(faiss_c PRIVATE NDEBUG)
# Third-party code: built without sbert_warnings.
target_compile_options(faiss_c PRIVATE -w)
# Consumers include the C API as "Index_c.h", "index_factory_c.h", ...
target_include_directories(faiss_c SYSTEM PUBLIC "${_faiss_c_dir}")
target_link_libraries(faiss_c PUBLIC sbert_faiss OpenMP::OpenMP_CXX)
