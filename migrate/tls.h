/*
 * TLS for the migration channel (GnuTLS): a pre-shared key (psktool's "identity:hexkey"
 * file) or X.509 certificates with mutual authentication. The destination is the TLS
 * server and requires the source's client certificate; the source checks the server's
 * certificate against the CA and the destination's host name (or an explicit one).
 * TLS 1.3 is preferred, 1.2 the oldest accepted.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

struct mig_conn;

struct mig_tls_opts {
    char psk[256];      /* file: identity:hexkey lines */
    char cert[256];     /* this side's certificate (PEM) */
    char key[256];      /* its private key (PEM) */
    char ca[256];       /* CA that signed the peer's certificate (PEM) */
    char hostname[256]; /* source only: the name the server's certificate must carry */
};

static inline bool mig_tls_wanted(const struct mig_tls_opts *o)
{
    return o->psk[0] || o->cert[0] || o->key[0] || o->ca[0] || o->hostname[0];
}

struct mig_tls;

/* Checks the combination of options and loads every file, so a mistake is reported
 * before any connection; NULL with a one-line reason. */
struct mig_tls *mig_tls_new(const struct mig_tls_opts *o, bool server, char *err, size_t errlen);
void mig_tls_free(struct mig_tls *t);

/*
 * The handshake on c, a connected plain connection; from then on c reads and writes
 * through the session. host: what the server's certificate must name (client side; the
 * --tls-hostname option wins). -1 with a reason; c stays a plain connection then.
 * Server side, a peer that does not start a TLS handshake (e.g. a plain-text nvmevm
 * stream) is told so in one plain-text "ERR" line before the refusal.
 */
int mig_tls_start(struct mig_tls *t, struct mig_conn *c, const char *host, char *err,
                  size_t errlen);
/* What the session negotiated, e.g. "TLS1.3, PSK identity 'nvmevm'", for one log line. */
void mig_tls_describe(const struct mig_conn *c, char *buf, size_t len);
