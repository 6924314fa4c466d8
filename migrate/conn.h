/*
 * The byte channel under a migration stream: a socket, either plain or inside a TLS
 * session (migrate/tls.h). The stream format and the line protocol sit above these three
 * calls and do not know which one they have. Every wait is bounded by timeout_s, so a peer
 * that stalls ends the migration with ETIMEDOUT instead of hanging it.
 */
#pragma once
#include <stddef.h>
#include <sys/types.h>

#define MIG_DEFAULT_IO_TIMEOUT 30 /* seconds without a byte from the peer */

struct mig_conn;

struct mig_conn_ops {
    /* > 0 bytes moved, 0 = end of stream (read only), or -errno. */
    ssize_t (*read)(struct mig_conn *c, void *buf, size_t n);
    ssize_t (*write)(struct mig_conn *c, const void *buf, size_t n);
    void (*close)(struct mig_conn *c);
};

struct mig_conn {
    const struct mig_conn_ops *ops;
    int fd;
    unsigned timeout_s; /* 0 = wait forever */
    void *session;      /* the TLS session, for tls.c */
    int last_errno;     /* the last failure's errno (ETIMEDOUT: the peer stalled) */
    const char *why;    /* the TLS layer's last failure in words (static), or NULL */
};

/* A plain connection over fd (a socket or, in tests, a pipe); it owns fd. */
void mig_conn_plain(struct mig_conn *c, int fd, unsigned timeout_s);
ssize_t mig_conn_read(struct mig_conn *c, void *buf, size_t n);
ssize_t mig_conn_write(struct mig_conn *c, const void *buf, size_t n);
/* Closes the connection and its fd (nothing when already closed). */
void mig_conn_close(struct mig_conn *c);

/* The plain fd calls with the timeout, for the TLS layer underneath its session. */
ssize_t mig_fd_read(int fd, void *buf, size_t n, unsigned timeout_s);
ssize_t mig_fd_write(int fd, const void *buf, size_t n, unsigned timeout_s);
