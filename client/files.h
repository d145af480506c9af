/*
 * files.h — what `sbertctl index PATH...` reads: the files under the paths given, and one file as
 * a document (its text through extract/, its identity and metadata).
 *
 * The walk: a PATH that is a file is itself; a directory is walked depth-first in name order
 * (so runs are repeatable), without following symbolic links (a link is reported as skipped, so
 * a link loop costs nothing) and without entering or taking names that start with "." (.git,
 * editor backups). Only regular files are taken; anything else under a directory is skipped with
 * a reason. A file's id is its path relative to the PATH given (a PATH that is a file: its own
 * name), with "/" between parts. Its root is the absolute path, symbolic links resolved, of the
 * directory the id is relative to: the PATH given, or the directory holding it when it is a file;
 * root + "/" + id is the file (sync tells its documents by root).
 *
 * Errors: 0 or -1 with errbuf saying what and where. Thread safety: no shared state.
 */
#ifndef SBC_FILES_H
#define SBC_FILES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct sbc_file {
    const char *path; /* to open: the PATH given joined with rel */
    const char *rel;  /* the id */
    const char *root; /* the directory rel is relative to (see above) */
    int64_t size;
    int64_t mtime_ns; /* modification time, ns since the epoch */
    int dir;          /* skipped: a directory that could not be listed */
};

/* Called for each regular file (f valid during the call) and for each entry skipped (f->path,
 * f->rel and f->root set, why the reason; f->dir set when it is a directory that could not be
 * listed, or an entry lstat failed on, which may be one: its files are then unknown). A non-zero
 * return stops the walk and is returned. */
typedef int (*sbc_file_fn)(const struct sbc_file *f, const char *why, void *user);

/* Walks path (see above). Returns 0, the first non-zero value fn returned, or -1 when path itself
 * cannot be read or resolved (errbuf). */
int sbc_files_walk(const char *path, sbc_file_fn fn, void *user, char *errbuf, size_t errlen);

/* A file as a document. */
struct sbc_file_doc {
    char *text; /* extracted, NUL-terminated, len bytes */
    size_t len;
    char *metadata_json; /* {"path","root","title"?,"format","size","mtime" (s),"mtime_nsec",
                            "sha256"} */
    char sha256[65];
};

/* Reads f (at most max_file_bytes; larger is refused without reading), hashes it, extracts its
 * text (at most max_text_bytes) and builds the metadata. When known_sha256 (may be NULL) equals
 * the file's hash, returns 1 with out->sha256 set and nothing else built: the content is what the
 * collection already has. Returns 0 with *out filled (free with sbc_file_doc_free), 1, or -1
 * with errbuf saying why the file is skipped. */
int sbc_file_doc_make(const struct sbc_file *f, size_t max_file_bytes, size_t max_text_bytes,
                      const char *known_sha256, struct sbc_file_doc *out, char *errbuf,
                      size_t errlen);

void sbc_file_doc_free(struct sbc_file_doc *d);

#endif
