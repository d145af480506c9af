/*
 * rotate.h — the dated backups `sbertctl backup --rotate ROOT` keeps under one folder: each named
 * sbertd-YYYYMMDDTHHMMSSZ (UTC; "-N" appended when that second is taken), the newest `keep`
 * kept, older ones removed.
 *
 * Pruning removes only what is certainly a backup sbertd wrote: a directory (not a symbolic
 * link) whose name has exactly that form and that holds store.mdb and nothing but regular files.
 * Anything else under ROOT is left alone and never counted.
 * Errors: 0 or -1 with errbuf naming the path and the reason. Thread safety: none needed; the
 * functions keep no state.
 */
#ifndef SBC_ROTATE_H
#define SBC_ROTATE_H

#include <stddef.h>
#include <time.h>

/* The name of a backup taken at t (UTC) with suffix n (0: none), e.g. sbertd-20261203T041500Z or
 * sbertd-20261203T041500Z-2. Returns 0, or -1 when out is too small. */
int sbc_rotate_name(time_t t, int n, char *out, size_t outlen);

/* The name for a new backup under root taken at t: sbc_rotate_name(t, n) with n one past the
 * highest suffix root already has for that second (0 when it has none), so names sort in the
 * order the backups were made even after the older of one second were pruned. Returns 0, or -1
 * when out is too small or root cannot be read (errbuf says why). */
int sbc_rotate_next(const char *root, time_t t, char *out, size_t outlen, char *errbuf,
                    size_t errlen);

/* 1 when name has the form sbc_rotate_name makes, else 0. */
int sbc_rotate_is_name(const char *name);

/* Removes the backups under root beyond the newest keep (keep >= 1). On success *removed (may be
 * NULL when nothing was removed) is a malloc'd array of *n_removed malloc'd names, oldest first,
 * that the caller frees; a backup that could not be removed fails the call after the ones before
 * it were removed. */
int sbc_rotate_prune(const char *root, int keep, char ***removed, size_t *n_removed, char *errbuf,
                     size_t errlen);

#endif
