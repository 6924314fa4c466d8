/*
 * The control socket's `stats` command (server side, app/control_stats.c) and its clients
 * (app/top.c): `nvmevm ctl stats [--json]` and `nvmevm top`. The reply's fields are
 * described in docs/stats.md.
 */
#pragma once
#include <stdbool.h>

struct vm;
struct json_object;

/* The reply to {"cmd":"stats"}: {"ok":true, ...}, or {"ok":false,"error":...} for a VM
 * without disks. *prev is the connection's previous snapshot (NULL at first): rates cover
 * the time since it, or since the controller started; it is replaced by the new one.
 * Free it with control_stats_forget() when the connection closes. */
struct json_object *control_stats_reply(struct vm *vm, void **prev);
void control_stats_forget(void *prev);

/* `nvmevm ctl stats` on socket path: a table, or the reply line itself with json. */
int stats_client_print(const char *path, bool json);
/* `nvmevm top [--vm NAME | --socket PATH] [--interval S] [--count N]`. */
int top_main(int argc, char **argv);
