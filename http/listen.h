/* listen.h — private to http/: the listening socket (listen.c). */
#ifndef SBERT_HTTP_LISTEN_H
#define SBERT_HTTP_LISTEN_H

#include <stddef.h>

/* Resolves and binds address ("host:port", "[v6]:port"), listens, and returns the socket in
 * *fd_out (the caller closes it) and its port. A non-loopback address without allow_remote is
 * SBERT_HTTP_EREMOTE and is never bound. Else 0 or an SBERT_HTTP_E* code with err filled. */
int http_listen_open(const char *address, int allow_remote, int *fd_out, unsigned *port, char *err,
                     size_t errlen);

/* Checks a socket handed over (systemd): listening TCP, loopback unless allow_remote. Sets *port.
 * Does not close fd. 0 or an SBERT_HTTP_E* code with err filled. */
int http_listen_check(int fd, int allow_remote, unsigned *port, char *err, size_t errlen);

#endif
