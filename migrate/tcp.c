#include "migrate/tcp.h"

#include <errno.h>
#include <stdbool.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/err.h"

/* Splits "tcp:HOST:PORT" (HOST may be [v6addr] or empty for "any"). */
static int parse(const char *uri, char *host, size_t hostlen, char *port, size_t portlen, char *err,
                 size_t errlen)
{
    if (strncmp(uri, "tcp:", 4) != 0) {
        return err_set(err, errlen, "%s: expected tcp:HOST:PORT", uri);
    }
    const char *h = uri + 4, *colon = strrchr(h, ':');
    if (!colon || !colon[1]) {
        return err_set(err, errlen, "%s: missing port (tcp:HOST:PORT)", uri);
    }
    size_t hl = (size_t)(colon - h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= hostlen || strlen(colon + 1) >= portlen) {
        return err_set(err, errlen, "%s: address too long", uri);
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    snprintf(port, portlen, "%s", colon + 1);
    return 0;
}

static int resolve(const char *uri, bool passive, struct addrinfo **res, char *err, size_t errlen)
{
    char host[256], port[32];
    if (parse(uri, host, sizeof(host), port, sizeof(port), err, errlen) < 0)
        return -1;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0};
    int r = getaddrinfo(*host ? host : NULL, port, &hints, res);
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

int tcp_listen_uri(const char *uri, char *err, size_t errlen)
{
    return open_first(uri, true, err, errlen);
}
