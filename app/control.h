/*
 * Per-VM control socket (UNIX stream, mode 0600, JSON lines; the language is in
 * app/control_parse.h). {"cmd":"status"|"pause"|"resume"|"quit"} -> {"ok":true,...}, and for
 * live migration {"cmd":"migrate","uri":"tcp:H:P","downtime_ms":300,"max_bandwidth":B,
 * "timeout_s":S,"force":false,"auto_converge":false}, {"cmd":"migrate-status"},
 * {"cmd":"migrate-cancel"}, and {"cmd":"stats"} (live I/O statistics, docs/stats.md).
 * A request may carry "id" (any JSON value); its reply echoes it.
 * A connection may send several requests. The socket is non-blocking and every client has
 * its own buffers, driven by the main loop's poll: a slow or silent client never holds up
 * the VM or another client.
 */
#pragma once
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct migration;

/* Clients served at once; one more evicts the longest idle. */
#define CONTROL_MAX_CLIENTS 16
/* Poll entries control_pollfds may fill: the listening socket and every client. */
#define CONTROL_MAX_POLLFDS (1 + CONTROL_MAX_CLIENTS)

struct control_conn {
    int fd; /* -1: a free slot */
    char *in;
    size_t in_len;
    char *out;
    size_t out_len, out_off;
    bool closing;  /* close once out is sent */
    bool draining; /* reply sent and our side shut: discard input until the client closes */
    uint64_t last_active_ms;
    void *stats_prev; /* the previous `stats` snapshot (app/control_stats.c) */
};

struct control {
    int listen_fd;
    char path[108];
    unsigned status_reads; /* migrate-status answers given (the source waits for one) */
    struct migration *mig; /* the outgoing migration started through this socket, or NULL */
    struct control_conn conns[CONTROL_MAX_CLIENTS];
};

/* Default socket path for a VM name: $XDG_RUNTIME_DIR/nvmevm/NAME.sock, /run/nvmevm as
 * root, else /tmp/nvmevm-UID. The directory is created, or accepted only if it is ours
 * (a real directory, owned by us, no access for others). */
int control_default_path_err(const char *name, char *out, size_t outlen, char *err, size_t errlen);
/* The same, for callers that only need to know it failed. */
int control_default_path(const char *name, char *out, size_t outlen);
/* Binds and listens. A stale socket is replaced; a live one, or anything that is not a
 * socket, is refused. */
int control_open(struct control *c, const char *path, char *err, size_t errlen);
/* Fills up to CONTROL_MAX_POLLFDS entries for the main loop's poll; returns how many. */
int control_pollfds(struct control *c, struct pollfd *p);
/* Serves whatever poll reported on those entries. */
void control_handle(struct control *c, struct vm *vm, const struct pollfd *p, int n);
/* Closes the socket and clients and frees a finished (or cancels and joins a running)
 * migration. */
void control_close(struct control *c);

/* A connected client socket: the fd, or -1 with errno set. */
int control_connect(const char *path);
/* Client options: --socket PATH (opt 's') or --vm NAME (opt 'n') sets path; dies with one
 * line when it cannot be a socket path. */
void control_target_arg(int opt, const char *arg, char *path, size_t pathlen);

/* Sends one request line and reads the one-line answer. 0, or -1 with errno set. */
int control_request(const char *path, const char *req, char *out, size_t outlen);

/* The same with req serialised (json-c) as one line. */
struct json_object;
int control_request_obj(const char *path, struct json_object *req, char *out, size_t outlen);
/* True if a reply line is a JSON object with "ok": true. */
bool control_reply_ok(const char *reply_line);

/* Client side: "nvmevm ctl [--socket PATH | --vm NAME] COMMAND". */
int control_client_main(int argc, char **argv);
