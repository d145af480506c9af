/*
 * notify.h — the sending side of systemd's sd_notify(3) protocol for sbertctl's long jobs (sync
 * run as a service, docs/sync.md): one datagram of "KEY=value" lines to the unix socket named by
 * $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace). No libsystemd: the protocol is
 * one sendto() of text.
 *
 * Thread safety: a handle is used by one thread. Never prints: errors are returned.
 */
#ifndef SBC_NOTIFY_H
#define SBC_NOTIFY_H

typedef struct sbc_notify sbc_notify;

enum {
    SBC_NOTIFY_ENOMEM = -1,
    SBC_NOTIFY_EADDR = -2, /* $NOTIFY_SOCKET is not a usable unix socket address */
    SBC_NOTIFY_ESEND = -3, /* socket() or sendto() failed (errno kept) */
};

/* Opens the notification socket when $NOTIFY_SOCKET is set: returns 0 and *out (free with
 * sbc_notify_free), or 0 and *out NULL when it is unset or empty (every call below is then a
 * no-op), or an SBC_NOTIFY_E* code. */
int sbc_notify_open(sbc_notify **out);

/* Sends msg ("STATUS=...\n" lines, newline-separated) as one datagram. n may be NULL. Returns 0
 * or SBC_NOTIFY_ESEND. */
int sbc_notify_send(sbc_notify *n, const char *msg);

/* Sends "STATUS=<text>": progress lines at most once a second; with force always (a run's first
 * and last state), and without delaying the next progress line. Newlines in the text become
 * spaces. n may be NULL. Returns as sbc_notify_send. */
int sbc_notify_status(sbc_notify *n, int force, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void sbc_notify_free(sbc_notify *n);

const char *sbc_notify_strerror(int code);

#endif
