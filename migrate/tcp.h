/* "tcp:HOST:PORT" endpoints for migration streams. */
#pragma once
#include <stddef.h>

/* Connects; returns a socket or -1 with a one-line reason. */
int tcp_connect_uri(const char *uri, char *err, size_t errlen);
/* Listens on the URI's address; returns the listening socket or -1 with a reason. */
int tcp_listen_uri(const char *uri, char *err, size_t errlen);
