#include "migrate/tls.h"

#include <ctype.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "migrate/conn.h"
#include "util/err.h"

#define MAX_PSKS    16
#define MIN_PSK_LEN 16   /* bytes; psktool makes 32 */
#define TLS_RECORD  0x16 /* content type of a handshake record: how every TLS peer starts */

/* Forward secrecy with a PSK too: the key only authenticates an (EC)DHE exchange. */
#define PRIO_PSK  "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:+ECDHE-PSK:+DHE-PSK"
#define PRIO_X509 "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

struct psk {
    char identity[128];
    unsigned char key[64];
    size_t len;
};

struct mig_tls {
    bool server;
    struct mig_tls_opts o;
    struct psk psks[MAX_PSKS];
    int npsks;
    gnutls_psk_server_credentials_t psk_srv;
    gnutls_psk_client_credentials_t psk_cli;
    gnutls_certificate_credentials_t x509;
};

static int hexval(int ch)
{
    return isdigit(ch) ? ch - '0' : isxdigit(ch) ? (tolower(ch) - 'a' + 10) : -1;
}

/* One "identity:hexkey" line into p; -1 with what is wrong with it. */
static int parse_psk_line(char *line, struct psk *p, const char *file, int lineno, char *err,
                          size_t errlen)
{
    char *colon = strchr(line, ':');
    if (!colon || colon == line)
        return err_set(err, errlen, "%s:%d: expected identity:hexkey (psktool's format)", file,
                       lineno);
    *colon = '\0';
    const char *hex = colon + 1;
    size_t hl = strlen(hex);
    if ((size_t)(colon - line) >= sizeof(p->identity))
        return err_set(err, errlen, "%s:%d: identity longer than %zu bytes", file, lineno,
                       sizeof(p->identity) - 1);
    if (hl % 2 || hl / 2 > sizeof(p->key))
        return err_set(err, errlen,
                       "%s:%d: the key must be an even number of hex digits, at most %zu", file,
                       lineno, sizeof(p->key) * 2);
    for (size_t i = 0; i < hl; i += 2) {
        int hi = hexval((unsigned char)hex[i]), lo = hexval((unsigned char)hex[i + 1]);
        if (hi < 0 || lo < 0)
            return err_set(err, errlen, "%s:%d: the key is not hexadecimal", file, lineno);
        p->key[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    p->len = hl / 2;
    if (p->len < MIN_PSK_LEN)
        return err_set(err, errlen, "%s:%d: key of %zu bytes is too short (at least %d)", file,
                       lineno, p->len, MIN_PSK_LEN);
    memcpy(p->identity, line, (size_t)(colon - line) + 1);
    return 0;
}

static int load_psks(struct mig_tls *t, char *err, size_t errlen)
{
    const char *file = t->o.psk;
    FILE *f = fopen(file, "r");
    if (!f)
        return err_set(err, errlen, "--tls-psk %s: %s", file, strerror(errno));
    char line[512];
    int lineno = 0, ret = 0;
    while (ret == 0 && fgets(line, sizeof(line), f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0] || line[0] == '#')
            continue;
        if (t->npsks == MAX_PSKS)
            ret = err_set(err, errlen, "--tls-psk %s: more than %d keys", file, MAX_PSKS);
        else
            ret = parse_psk_line(line, &t->psks[t->npsks++], file, lineno, err, errlen);
    }
    fclose(f);
    if (ret == 0 && t->npsks == 0)
        ret = err_set(err, errlen, "--tls-psk %s: no key in the file", file);
    return ret;
}

/* The server looks the client's identity up; an unknown one fails the handshake. */
static int psk_lookup(gnutls_session_t s, const char *identity, gnutls_datum_t *key)
{
    const struct mig_tls *t = gnutls_session_get_ptr(s);
    for (int i = 0; i < t->npsks; i++) {
        if (strcmp(t->psks[i].identity, identity) != 0)
            continue;
        key->data = gnutls_malloc(t->psks[i].len);
        if (!key->data)
            return -1;
        memcpy(key->data, t->psks[i].key, t->psks[i].len);
        key->size = (unsigned)t->psks[i].len;
        return 0;
    }
    return -1;
}

static int load_x509(struct mig_tls *t, char *err, size_t errlen)
{
    const struct mig_tls_opts *o = &t->o;
    if (!o->cert[0] || !o->key[0] || !o->ca[0])
        return err_set(err, errlen,
                       "TLS with certificates needs all of --tls-cert, --tls-key and "
                       "--tls-ca");
    int r = gnutls_certificate_allocate_credentials(&t->x509);
    if (r < 0)
        return err_set(err, errlen, "TLS credentials: %s", gnutls_strerror(r));
    r = gnutls_certificate_set_x509_key_file(t->x509, o->cert, o->key, GNUTLS_X509_FMT_PEM);
    if (r < 0)
        return err_set(err, errlen, "--tls-cert %s / --tls-key %s: %s", o->cert, o->key,
                       gnutls_strerror(r));
    r = gnutls_certificate_set_x509_trust_file(t->x509, o->ca, GNUTLS_X509_FMT_PEM);
    if (r <= 0)
        return err_set(err, errlen, "--tls-ca %s: %s", o->ca,
                       r == 0 ? "no certificate in the file" : gnutls_strerror(r));
    return 0;
}

struct mig_tls *mig_tls_new(const struct mig_tls_opts *o, bool server, char *err, size_t errlen)
{
    if (o->psk[0] && (o->cert[0] || o->key[0] || o->ca[0])) {
        err_set(err, errlen, "--tls-psk and --tls-cert/--tls-key/--tls-ca exclude each other");
        return NULL;
    }
    if (o->psk[0] && o->hostname[0]) {
        err_set(err, errlen, "--tls-hostname applies to certificates, not to --tls-psk");
        return NULL;
    }
    struct mig_tls *t = calloc(1, sizeof(*t));
    if (!t) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    t->server = server;
    t->o = *o;
    if (o->psk[0] ? load_psks(t, err, errlen) < 0 : load_x509(t, err, errlen) < 0) {
        mig_tls_free(t);
        return NULL;
    }
    int r = 0;
    if (o->psk[0] && server) {
        r = gnutls_psk_allocate_server_credentials(&t->psk_srv);
        if (r == 0)
            gnutls_psk_set_server_credentials_function(t->psk_srv, psk_lookup);
    } else if (o->psk[0]) {
        gnutls_datum_t key = {t->psks[0].key, (unsigned)t->psks[0].len};
        r = gnutls_psk_allocate_client_credentials(&t->psk_cli);
        if (r == 0)
            r = gnutls_psk_set_client_credentials(t->psk_cli, t->psks[0].identity, &key,
                                                  GNUTLS_PSK_KEY_RAW);
    }
    if (r < 0) {
        err_set(err, errlen, "TLS PSK credentials: %s", gnutls_strerror(r));
        mig_tls_free(t);
        return NULL;
    }
    return t;
}

void mig_tls_free(struct mig_tls *t)
{
    if (!t)
        return;
    if (t->psk_srv)
        gnutls_psk_free_server_credentials(t->psk_srv);
    if (t->psk_cli)
        gnutls_psk_free_client_credentials(t->psk_cli);
    if (t->x509)
        gnutls_certificate_free_credentials(t->x509);
    explicit_bzero(t->psks, sizeof(t->psks));
    free(t);
}

/* ---- the session as a mig_conn ---- */

/* GnuTLS reaches the socket through these, so every wait keeps the connection's timeout. */
static ssize_t pull(gnutls_transport_ptr_t ptr, void *buf, size_t n)
{
    struct mig_conn *c = ptr;
    ssize_t r = mig_fd_read(c->fd, buf, n, c->timeout_s);
    if (r < 0) {
        c->last_errno = (int)-r;
        gnutls_transport_set_errno(c->session, (int)-r);
        return -1;
    }
    return r;
}

static ssize_t push(gnutls_transport_ptr_t ptr, const void *buf, size_t n)
{
    struct mig_conn *c = ptr;
    ssize_t r = mig_fd_write(c->fd, buf, n, c->timeout_s);
    if (r < 0) {
        c->last_errno = (int)-r;
        gnutls_transport_set_errno(c->session, (int)-r);
        return -1;
    }
    return r;
}

static int pull_timeout(gnutls_transport_ptr_t ptr, unsigned ms)
{
    struct mig_conn *c = ptr;
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    int n = poll(&p, 1, ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int)ms);
    return n < 0 ? -1 : n;
}

/* A GnuTLS failure as an errno for the stream layer, the socket's own error first. */
static ssize_t tls_errno(struct mig_conn *c, int r)
{
    if ((r == GNUTLS_E_PULL_ERROR || r == GNUTLS_E_PUSH_ERROR) && c->last_errno)
        return -c->last_errno;
    c->why = r == GNUTLS_E_FATAL_ALERT_RECEIVED
                 ? gnutls_alert_get_name(gnutls_alert_get(c->session))
                 : gnutls_strerror(r);
    return r == GNUTLS_E_PREMATURE_TERMINATION ? -ECONNRESET : -EPROTO;
}

static ssize_t tls_read(struct mig_conn *c, void *buf, size_t n)
{
    for (;;) {
        ssize_t r = gnutls_record_recv(c->session, buf, n);
        if (r >= 0)
            return r;
        if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED)
            return tls_errno(c, (int)r);
    }
}

static ssize_t tls_write(struct mig_conn *c, const void *buf, size_t n)
{
    for (;;) {
        ssize_t r = gnutls_record_send(c->session, buf, n);
        if (r > 0)
            return r;
        if (r == 0)
            return -EIO;
        if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED)
            return tls_errno(c, (int)r);
    }
}

static void tls_close(struct mig_conn *c)
{
    /* Tells the peer the end is deliberate; no waiting for its answer. */
    gnutls_bye(c->session, GNUTLS_SHUT_WR);
    gnutls_deinit(c->session);
    c->session = NULL;
}

static const struct mig_conn_ops tls_ops = {
    .read = tls_read,
    .write = tls_write,
    .close = tls_close,
};

/* Server side: a peer whose first byte cannot start a TLS handshake gets told so. */
static int check_first_byte(struct mig_conn *c, char *err, size_t errlen)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    int n = poll(&p, 1, c->timeout_s ? (int)c->timeout_s * 1000 : -1);
    if (n == 0)
        return err_set(err, errlen, "TLS handshake: nothing received for %u s", c->timeout_s);
    char head[8];
    ssize_t got = n < 0 ? -1 : recv(c->fd, head, sizeof(head), MSG_PEEK);
    if (got <= 0)
        return err_set(err, errlen, "TLS handshake: the peer closed the connection");
    if (head[0] == TLS_RECORD)
        return 0;
    const char *why = got >= 4 && memcmp(head, "NVME", 4) == 0
                          ? "the peer sent a plain-text migration stream, this destination "
                            "requires TLS (--tls-*)"
                          : "the peer does not speak TLS";
    char line[200];
    int len = snprintf(line, sizeof(line), "ERR %s\n", why);
    mig_fd_write(c->fd, line, (size_t)len, 2);
    return err_set(err, errlen, "%s", why);
}

/* The one-line reason a handshake failed, with the verification result or the alert. */
static int handshake_error(struct mig_conn *c, gnutls_session_t s, bool psk, int r, char *err,
                           size_t errlen)
{
    const char *hint = psk ? " (do both sides use the same --tls-psk key?)" : "";
    if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
        gnutls_datum_t out = {0};
        unsigned status = gnutls_session_get_verify_cert_status(s);
        if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) == 0) {
            char *t = (char *)out.data;
            size_t n = strlen(t);
            while (n && (t[n - 1] == ' ' || t[n - 1] == '.'))
                t[--n] = '\0';
            err_set(err, errlen, "TLS: the peer's certificate is refused: %s", t);
            gnutls_free(out.data);
            return -1;
        }
    }
    if ((r == GNUTLS_E_PULL_ERROR || r == GNUTLS_E_PUSH_ERROR) && c->last_errno == ETIMEDOUT)
        return err_set(err, errlen, "TLS handshake: nothing received for %u s", c->timeout_s);
    if ((r == GNUTLS_E_PULL_ERROR || r == GNUTLS_E_PUSH_ERROR) && c->last_errno)
        return err_set(err, errlen, "TLS handshake: %s%s", strerror(c->last_errno), hint);
    if (r == GNUTLS_E_TIMEDOUT)
        return err_set(err, errlen, "TLS handshake: not finished within %u s", c->timeout_s);
    if (r == GNUTLS_E_FATAL_ALERT_RECEIVED || r == GNUTLS_E_WARNING_ALERT_RECEIVED)
        return err_set(err, errlen, "TLS handshake: the peer refused it (alert: %s)%s",
                       gnutls_alert_get_name(gnutls_alert_get(s)), hint);
    if (r == GNUTLS_E_UNEXPECTED_PACKET_LENGTH || r == GNUTLS_E_UNEXPECTED_PACKET ||
        r == GNUTLS_E_UNSUPPORTED_VERSION_PACKET)
        return err_set(err, errlen, "TLS handshake: %s (does the peer speak TLS?)",
                       gnutls_strerror(r));
    return err_set(err, errlen, "TLS handshake: %s%s", gnutls_strerror(r), hint);
}

int mig_tls_start(struct mig_tls *t, struct mig_conn *c, const char *host, char *err, size_t errlen)
{
    if (t->server && check_first_byte(c, err, errlen) < 0)
        return -1;
    gnutls_session_t s;
    int r = gnutls_init(&s, (t->server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_TICKETS);
    if (r < 0)
        return err_set(err, errlen, "TLS: %s", gnutls_strerror(r));
    bool psk = t->o.psk[0];
    const char *name = t->o.hostname[0] ? t->o.hostname : host;
    r = gnutls_priority_set_direct(s, psk ? PRIO_PSK : PRIO_X509, NULL);
    if (r >= 0 && psk)
        r = gnutls_credentials_set(s, GNUTLS_CRD_PSK,
                                   t->server ? (void *)t->psk_srv : (void *)t->psk_cli);
    if (r >= 0 && !psk)
        r = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, t->x509);
    if (r >= 0 && !psk && t->server) {
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
        gnutls_session_set_verify_cert(s, NULL, 0); /* the source's: signed by our CA */
    } else if (r >= 0 && !psk) {
        if (!name || !*name) {
            gnutls_deinit(s);
            return err_set(err, errlen,
                           "TLS: no host name to check the certificate against "
                           "(--tls-hostname)");
        }
        gnutls_session_set_verify_cert(s, name, 0);
        r = gnutls_server_name_set(s, GNUTLS_NAME_DNS, name, strlen(name));
    }
    if (r < 0) {
        gnutls_deinit(s);
        return err_set(err, errlen, "TLS: %s", gnutls_strerror(r));
    }
    gnutls_session_set_ptr(s, t);
    c->session = s;
    c->last_errno = 0;
    gnutls_transport_set_ptr(s, c);
    gnutls_transport_set_push_function(s, push);
    gnutls_transport_set_pull_function(s, pull);
    gnutls_transport_set_pull_timeout_function(s, pull_timeout);
    /* A stranger trickling bytes must not hold the handshake open either. */
    if (c->timeout_s)
        gnutls_handshake_set_timeout(s, c->timeout_s * 1000);
    do
        r = gnutls_handshake(s);
    while (r < 0 && !gnutls_error_is_fatal(r));
    if (r < 0) {
        handshake_error(c, s, psk, r, err, errlen);
        /* The peer learns why too (a wrong key: an alert, not a bare close). */
        if (r != GNUTLS_E_FATAL_ALERT_RECEIVED && r != GNUTLS_E_PULL_ERROR &&
            r != GNUTLS_E_PUSH_ERROR)
            gnutls_alert_send_appropriate(s, r);
        gnutls_deinit(s);
        c->session = NULL;
        return -1;
    }
    c->ops = &tls_ops;
    return 0;
}

void mig_tls_describe(const struct mig_conn *c, char *buf, size_t len)
{
    gnutls_session_t s = c->session;
    if (!s || c->ops != &tls_ops) {
        snprintf(buf, len, "plain TCP");
        return;
    }
    const char *ver = gnutls_protocol_get_name(gnutls_protocol_get_version(s));
    const char *id = gnutls_psk_server_get_username(s);
    if (gnutls_auth_get_type(s) == GNUTLS_CRD_PSK)
        snprintf(buf, len, "%s, PSK identity '%s'", ver ? ver : "TLS", id ? id : "?");
    else
        snprintf(buf, len, "%s, X.509 certificates", ver ? ver : "TLS");
}
