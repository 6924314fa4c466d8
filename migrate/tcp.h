/* "tcp:HOST:PORT" endpoints for migration streams; "tcp:PORT" and "tcp::PORT" mean
 * 127.0.0.1. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* A destination one can connect to: tcp:HOST:PORT or tcp:PORT, the port a number from 1
 * to 65535. 0, or -1 with a one-line reason naming the URI. */
int tcp_check_uri(const char *uri, char *err, size_t errlen);
/* Connects; returns a socket or -1 with a one-line reason. */
int tcp_connect_uri(const char *uri, char *err, size_t errlen);
/* Listens on the URI's address; returns the listening socket or -1 with a reason. Warns in
 * one line when it listens beyond loopback and tls is false. */
int tcp_listen_uri(const char *uri, bool tls, char *err, size_t errlen);
/* The URI's host part (what a server certificate must name); "" if unparsable. */
void tcp_host(const char *uri, char *host, size_t len);
