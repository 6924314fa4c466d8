/*
 * Per-VM control socket (UNIX stream, mode 0600, JSON lines). One request per
 * connection: {"cmd":"status"|"pause"|"resume"|"quit"} -> {"ok":true,...}.
 */
#pragma once
#include <stddef.h>

struct vm;

struct control {
    int listen_fd;
    char path[108];
};

/* Default socket path for a VM name: $XDG_RUNTIME_DIR/nvmevm/NAME.sock, /run/nvmevm as root. */
int control_default_path(const char *name, char *out, size_t outlen);
/* Binds and listens; dies with a one-line error on failure. */
void control_open(struct control *c, const char *path);
/* Serves one pending connection (call when listen_fd is readable). */
void control_serve_one(struct control *c, struct vm *vm);
void control_close(struct control *c);

/* Client side: "nvmevm ctl [--socket PATH | --vm NAME] COMMAND". */
int control_client_main(int argc, char **argv);
