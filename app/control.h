/*
 * Per-VM control socket (UNIX stream, mode 0600, JSON lines). One request per
 * connection: {"cmd":"status"|"pause"|"resume"|"quit"} -> {"ok":true,...}, and for live
 * migration {"cmd":"migrate","uri":"tcp:H:P","downtime_ms":300,"max_bandwidth":B,
 * "timeout_s":S,"force":false,"auto_converge":false}, {"cmd":"migrate-status"},
 * {"cmd":"migrate-cancel"}.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

struct vm;
struct migration;

struct control {
    int listen_fd;
    char path[108];
    unsigned status_reads; /* migrate-status answers given (the source waits for one) */
    struct migration *mig; /* the outgoing migration started through this socket, or NULL */
};

/* Default socket path for a VM name: $XDG_RUNTIME_DIR/nvmevm/NAME.sock, /run/nvmevm as root. */
int control_default_path(const char *name, char *out, size_t outlen);
/* Binds and listens; dies with a one-line error on failure. */
void control_open(struct control *c, const char *path);
/* Serves one pending connection (call when listen_fd is readable). */
void control_serve_one(struct control *c, struct vm *vm);
/* Closes the socket and frees a finished (or cancels and joins a running) migration. */
void control_close(struct control *c);

/* Sends one request line and reads the one-line answer. 0, or -1 with errno set. */
int control_request(const char *path, const char *req, char *out, size_t outlen);

/* The same with req serialised (json-c) as one line. */
struct json_object;
int control_request_obj(const char *path, struct json_object *req, char *out, size_t outlen);
/* True if a reply line is a JSON object with "ok": true. */
bool control_reply_ok(const char *reply_line);

/* Client side: "nvmevm ctl [--socket PATH | --vm NAME] COMMAND". */
int control_client_main(int argc, char **argv);
