#include "migrate/tcp.h"

#include <errno.h>
#include <stdbool.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/err.h"
#include "util/log.h"

/* Splits "tcp:HOST:PORT", "tcp::PORT" or "tcp:PORT" (HOST may be [v6addr]). Without a host
 * the address is 127.0.0.1: listening on every interface is asked for, never a default. */
static int parse(const char *uri, char *host, size_t hostlen, char *port, size_t portlen, char *err,
                 size_t errlen)
{
    if (strncmp(uri, "tcp:", 4) != 0) {
        return err_set(err, errlen, "%s: expected tcp:HOST:PORT", uri);
    }
    const char *h = uri + 4, *colon = strrchr(h, ':');
    if (!colon)
        colon = h - 1; /* tcp:PORT */
    if (!colon[1]) {
        return err_set(err, errlen, "%s: missing port (tcp:HOST:PORT)", uri);
    }
    size_t hl = colon < h ? 0 : (size_t)(colon - h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= hostlen || strlen(colon + 1) >= portlen) {
        return err_set(err, errlen, "%s: address too long", uri);
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (!hl)
        snprintf(host, hostlen, "127.0.0.1");
    snprintf(port, portlen, "%s", colon + 1);
    return 0;
}

int tcp_check_uri(const char *uri, char *err, size_t errlen)
{
    char host[256], port[16];
    if (parse(uri, host, sizeof(host), port, sizeof(port), err, errlen) < 0)
        return -1;
    char *end;
    errno = 0;
    unsigned long v = strtoul(port, &end, 10);
    if (errno || *end || port[0] < '0' || port[0] > '9' || v < 1 || v > 65535)
        return err_set(err, errlen, "%s: port '%s' is not a number from 1 to 65535", uri, port);
    return 0;
}

static int resolve(const char *uri, bool passive, struct addrinfo **res, char *err, size_t errlen)
{
    char host[256], port[32];
    if (parse(uri, host, sizeof(host), port, sizeof(port), err, errlen) < 0)
        return -1;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0};
    int r = getaddrinfo(host, port, &hints, res);
    if (r) {
        return err_set(err, errlen, "%s: %s", uri, gai_strerror(r));
    }
    return 0;
}

static void tune(int fd)
{
    int one = 1, buf = 4 << 20;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
}

/* Tries each resolved address in turn: connect (client) or bind+listen (server). */
static int open_first(const char *uri, bool passive, char *err, size_t errlen)
{
    struct addrinfo *res;
    if (resolve(uri, passive, &res, err, errlen) < 0)
        return -1;
    int fd = -1, saved = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        if (passive)
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        bool ok = passive ? bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 1) == 0
                          : connect(fd, a->ai_addr, a->ai_addrlen) == 0;
        if (ok)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        err_set(err, errlen, "%s: %s", uri,
                strerror(saved     ? saved
                         : passive ? EADDRNOTAVAIL
                                   : ECONNREFUSED));
    return fd;
}

int tcp_connect_uri(const char *uri, char *err, size_t errlen)
{
    int fd = open_first(uri, false, err, errlen);
    if (fd >= 0)
        tune(fd);
    return fd;
}

static bool is_loopback(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return false;
    if (ss.ss_family == AF_INET)
        return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss.ss_family == AF_INET6) {
        const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

int tcp_listen_uri(const char *uri, bool tls, char *err, size_t errlen)
{
    int fd = open_first(uri, true, err, errlen);
    if (fd >= 0 && !tls && !is_loopback(fd))
        warn_msg("warning: %s: the migration listens beyond this host without TLS: anyone who "
                 "can connect can feed this VM its state (use --tls-psk or --tls-cert)",
                 uri);
    return fd;
}

void tcp_host(const char *uri, char *host, size_t len)
{
    char port[32], err[8];
    if (parse(uri, host, len, port, sizeof(port), err, sizeof(err)) < 0)
        host[0] = '\0';
}
