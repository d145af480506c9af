/*
 * restore.h — `sbertctl restore`: a backup copied into place of a stopped store. The store
 * directory that was there is kept, renamed DIR.pre-restore-YYYYMMDDTHHMMSSZ; the backup's files
 * (store.mdb and index.snap) are copied into a fresh DIR, each written to a temporary name,
 * fsynced and renamed, then the directory fsynced; new files and the directory take the old
 * directory's owner and mode (so a restore run as root leaves a store the service's user opens).
 * The caller checks the backup (sbert_index_verify) before and the result after.
 *
 * Errors: 0 or -1 with errbuf naming the path and the reason; on failure after the old directory
 * was moved aside, errbuf says where it is.
 */
#ifndef SBC_RESTORE_H
#define SBC_RESTORE_H

#include <stddef.h>

/* Refuses (-1) while a process holds DIR's store lock (a running sbertd), when backup and data
 * are the same directory or one holds the other. *aside receives the kept directory's path ("" when
 * there was none). */
int sbc_restore(const char *backup, const char *data, char *aside, size_t aside_len, char *errbuf,
                size_t errlen);

#endif
