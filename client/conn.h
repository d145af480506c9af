/*
 * conn.h — sbertctl's connection to sbertd: one nanomsg REQ socket, one request at a time.
 *
 * nanomsg behaviour this module handles (measured on nanomsg 1.1.5):
 *   - nn_connect() never fails for a missing peer: it connects in the background and a request
 *     waits forever. So before connecting, an ipc:// endpoint is probed (the socket file exists
 *     and something accepts on it) and a plain tcp://HOST:PORT endpoint gets a TCP connect with
 *     the timeout; a failed probe is SBC_CONN_EUNREACHABLE, reported at once.
 *   - A reply larger than NN_RCVMAXSIZE (default 1 MiB) is dropped silently, so the limit is set
 *     explicitly to the caller's max_message.
 *   - A REQ socket re-sends an unanswered request every NN_REQ_RESEND_IVL (default 60 s). The
 *     interval is set beyond the reply timeout, so a request is re-sent only when nanomsg itself
 *     reconnects (daemon restarted); writes carry a req_id, which makes such a re-send harmless.
 *
 * Errors: 0 or a negative SBC_CONN_E* code; sbc_conn_strerror() names it and errbuf (when given)
 * receives a sentence naming the endpoint (it is left empty only for SBC_CONN_ENOMEM).
 * Thread safety: a connection is used by one thread at a time.
 */
#ifndef SBC_CONN_H
#define SBC_CONN_H

#include <stddef.h>

enum {
    SBC_CONN_OK = 0,
    SBC_CONN_ENOMEM = -1,       /* allocation failed */
    SBC_CONN_EINVAL = -2,       /* a bad endpoint URL or argument */
    SBC_CONN_EUNREACHABLE = -3, /* nothing listens at the endpoint */
    SBC_CONN_ETIMEOUT = -4,     /* no reply within the timeout */
    SBC_CONN_ENN = -5,          /* another nanomsg error (its text is in errbuf) */
};

const char *sbc_conn_strerror(int err);

typedef struct sbc_conn sbc_conn;

/* Probes and connects to url (ipc://PATH or tcp://HOST:PORT, or any nanomsg URL, which is then
 * not probed). timeout_ms bounds the probe and each call's send and reply; max_message is the
 * largest reply accepted (bytes). On success *out owns the connection. */
int sbc_conn_open(const char *url, int timeout_ms, size_t max_message, sbc_conn **out, char *errbuf,
                  size_t errlen);

/* Sends req (len bytes) and waits for the reply. On success *reply is a NUL-terminated copy
 * (reply_len bytes before the NUL) that the caller frees with free(). */
int sbc_conn_call(sbc_conn *c, const char *req, size_t len, char **reply, size_t *reply_len,
                  char *errbuf, size_t errlen);

/* Closes the socket. NULL is allowed. */
void sbc_conn_close(sbc_conn *c);

#endif
