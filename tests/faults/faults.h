/*
 * faults.h — fault injection for the fault-loop tests (tests/faults, CMake option SBERT_FAULTS).
 *
 * The test executables that link sbert_faults are linked with GNU ld's --wrap for the calls
 * below (sbert_faults_link() in tests/faults/CMakeLists.txt), so every reference to them from
 * the objects of that link — the test, and our static libraries sbert_index, sbert_vindex,
 * sbert_proto, sbert_encoder, sbert_util — goes through __wrap_<call> in faults.c, which counts
 * it and, when armed, makes the chosen call fail as the system would. Nothing in the sources
 * knows about it; release builds never link it. Not reached: calls made inside shared libraries
 * (LMDB's own write()/fsync(), OpenBLAS, libstdc++'s operator new, so FAISS's C++ allocations),
 * which is why the mdb_* calls themselves are wrapped. cJSON (Debian's libcjson) allocates
 * through cJSON_InitHooks, which this library points at its counted malloc at startup.
 *
 * Families, with the failure each injects (sbert_fault_set_errno() changes the errno/LMDB code):
 *   ALLOC   malloc, calloc, realloc, strdup, strndup, aligned_alloc, cJSON's allocations:
 *           NULL, errno ENOMEM
 *   OPEN    open, fopen, mkostemp: -1/NULL, errno EMFILE
 *   READ    read, fread: -1 / 0 with the stream's error flag set, errno EIO
 *   WRITE   write, pwrite: -1, errno EIO
 *   FSYNC   fsync, fdatasync: -1, errno EIO
 *   RENAME  rename: -1, errno EIO
 *   MMAP    mmap: MAP_FAILED, errno ENOMEM
 *   THREAD  pthread_create: EAGAIN
 *   LMDB    mdb_env_create, mdb_env_open, mdb_env_set_mapsize, mdb_env_copy2, mdb_env_sync,
 *           mdb_txn_begin, mdb_txn_commit (the transaction is aborted, as LMDB frees a
 *           transaction whose commit fails), mdb_dbi_open, mdb_get, mdb_put, mdb_del,
 *           mdb_cursor_open, mdb_cursor_get, mdb_cursor_del, mdb_stat: EIO
 *
 * Thread safety: every function may be called from any thread; calls from every thread are
 * counted in one sequence, so a test that wants call N to be the same call each run keeps its
 * library's background threads idle (e.g. no snapshot thread work, OMP_NUM_THREADS=1).
 */
#ifndef SBERT_FAULTS_H
#define SBERT_FAULTS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    SBERT_FAULT_ALLOC = 1u << 0,
    SBERT_FAULT_OPEN = 1u << 1,
    SBERT_FAULT_READ = 1u << 2,
    SBERT_FAULT_WRITE = 1u << 3,
    SBERT_FAULT_FSYNC = 1u << 4,
    SBERT_FAULT_RENAME = 1u << 5,
    SBERT_FAULT_MMAP = 1u << 6,
    SBERT_FAULT_THREAD = 1u << 7,
    SBERT_FAULT_LMDB = 1u << 8,
    SBERT_FAULT_IO = (1u << 1) | (1u << 2) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6),
    SBERT_FAULT_ALL = (1u << 9) - 1
};

/* Fails the nth call (1-based) counted from now among the calls of the families in mask, once.
 * Resets the counters. */
void sbert_fault_arm(unsigned mask, uint64_t nth);

/* Fails each call of the families in mask with probability p, drawn from a generator seeded with
 * seed (the same seed gives the same sequence of failures for the same sequence of calls).
 * Resets the counters. */
void sbert_fault_arm_random(unsigned mask, double p, uint64_t seed);

/* Stops injecting; the counters keep their values. */
void sbert_fault_disarm(void);

/* The errno (LMDB: the return code) a family's injected failure gives; 0 restores the default
 * (see above). family is one SBERT_FAULT_* bit. */
void sbert_fault_set_errno(unsigned family, int err);

/* Calls of the armed families counted since the last arm, and failures injected since then. */
uint64_t sbert_fault_calls(void);
uint64_t sbert_fault_fired(void);

/* The family of the last failure injected (0: none), and a name for a family bit. */
unsigned sbert_fault_last_family(void);
const char *sbert_fault_family_name(unsigned family);

#ifdef __cplusplus
}
#endif

#endif
