/*
 * Per-VM control socket (UNIX stream, mode 0600, JSON lines; the language is in
 * app/control_parse.h, the protocol in docs/control-protocol.md). Each connection first
 * gets a greeting line; "watch" adds asynchronous event lines (util/events.h).
 * {"cmd":"status"|"pause"|"resume"|"quit"} -> {"ok":true,...}, and for live migration
 * {"cmd":"migrate","uri":"tcp:H:P","downtime_ms":300,"max_bandwidth":B,
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
struct mig_incoming;

/* Clients served at once; one more evicts the longest idle. */
#define CONTROL_MAX_CLIENTS 16
/* Poll entries control_pollfds may fill: the listening socket, every client, the events. */
#define CONTROL_MAX_POLLFDS (2 + CONTROL_MAX_CLIENTS)
/* The version in the greeting; the protocol number changes only with an incompatible one. */
#ifndef NVMEVM_VERSION
#define NVMEVM_VERSION "0.1.0"
#endif
#define CONTROL_PROTOCOL 1
/* Seconds a client waits to connect and for each reply, unless told otherwise. */
#define CONTROL_CLIENT_TIMEOUT_S 10

struct control_conn {
    int fd; /* -1: a free slot */
    char *in;
    size_t in_len;
    char *out;
    size_t out_len, out_off;
    bool closing;  /* close once out is sent */
    bool draining; /* reply sent and our side shut: discard input until the client closes */
    uint64_t last_active_ms;
    bool watching;    /* asked for events */
    void *stats_prev; /* the previous `stats` snapshot (app/control_stats.c) */
};

struct control {
    int listen_fd;
    char path[108];
    unsigned status_reads;         /* migrate-status answers given (the source waits for one) */
    struct migration *mig;         /* the outgoing migration started through this socket, or NULL */
    struct mig_incoming *incoming; /* set while waiting for an incoming migration */
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

/* Serves the control socket while in (migrate_incoming_start) receives; sfd: the signalfd.
 * 1: the guest may run; 0: stopped by quit or a signal before that (*status: the exit
 * status); -1: the migration failed (err says why). */
int control_wait_incoming(struct control *c, struct vm *vm, struct mig_incoming *in, int sfd,
                          int *status, char *err, size_t errlen);

/* Sends one request line and reads its one-line answer (the greeting and event lines are
 * skipped), each step bounded by control_client_timeout_s. 0, or -1 with errno set
 * (ETIMEDOUT: no answer in time). */
/* Client options: --socket PATH (opt 's') or --vm NAME (opt 'n') sets path; dies with one
 * line when it cannot be a socket path. */
void control_target_arg(int opt, const char *arg, char *path, size_t pathlen);

int control_request(const char *path, const char *req, char *out, size_t outlen);
extern unsigned control_client_timeout_s;
/* Ends the process with one line for a failed control_request (errno): "PATH: no answer
 * within N s" or the system's reason. */
void control_request_die(const char *path) __attribute__((__noreturn__));
/* The control socket to use when none was named: the only live one in the default
 * directory. 0, or -1 with a one-line reason (none, or several). */
int control_find_lone(char *path, size_t len, char *err, size_t errlen);
/* Reading a connection line by line. */
struct control_reader {
    int fd;
    size_t len;
    char buf[64 * 1024];
};
/* The next line (with its newline, cut to outlen - 1): 1; 0 at end of stream; -1 with
 * errno (ETIMEDOUT past deadline, a CLOCK_MONOTONIC time in ms, 0: none). */
int control_read_line(struct control_reader *r, char *out, size_t outlen, uint64_t deadline);
enum control_line_kind { CONTROL_LINE_REPLY, CONTROL_LINE_GREETING, CONTROL_LINE_EVENT };
enum control_line_kind control_line_kind(const char *line);
/* Sends req on rd's connection and returns its reply line (malloc'd, at most max bytes),
 * skipping the greeting and events; each step bounded by control_client_timeout_s. NULL
 * with errno (ETIMEDOUT, ECONNRESET, EMSGSIZE). */
char *control_exchange(struct control_reader *rd, const char *req, size_t max);
/* Connects with the client timeout; the fd (blocking, with SO_RCVTIMEO), or -1 with errno. */
int control_connect(const char *path);

/* The same with req serialised (json-c) as one line. */
struct json_object;
int control_request_obj(const char *path, struct json_object *req, char *out, size_t outlen);
/* True if a reply line is a JSON object with "ok": true. */
bool control_reply_ok(const char *reply_line);

/* Client side: "nvmevm ctl [--socket PATH | --vm NAME] COMMAND" and "nvmevm ctl --watch". */
int control_client_main(int argc, char **argv);
/* "nvmevm list": the running VMs in the default socket directory. */
int control_list_main(int argc, char **argv);
