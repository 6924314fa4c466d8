/* The control socket's server: non-blocking, one buffer pair per client, driven by the
 * main loop's poll (app/main.c). Requests are parsed by app/control_parse.c; every reply
 * is built with json-c, so no text a client or the guest sent can change its structure. */
#include "app/control.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "app/control_parse.h"
#include "app/control_stats.h"
#include "kvm/vm.h"
#include "migrate/migrate.h"
#include "util/err.h"
#include "util/events.h"
#include "util/log.h"

/* A client that stops reading its replies gets no more served past this much backlog. */
#define MAX_OUT (256 * 1024)

/* The socket of this process, removed if nvmevm dies before control_close(). */
static char bound_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

static void unlink_bound(void)
{
    if (bound_path[0])
        unlink(bound_path);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Only a socket nobody answers on is ours to replace: a user's file, directory or
 * symlink given by mistake as --control stays untouched. */
static int clear_stale(int fd, const struct sockaddr_un *sa, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(sa->sun_path, &st) < 0)
        return errno == ENOENT ? 0 : err_set(err, errlen, "%s: %s", sa->sun_path, strerror(errno));
    if (!S_ISSOCK(st.st_mode))
        return err_set(err, errlen, "%s: exists and is not a socket; not replacing it",
                       sa->sun_path);
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
        return err_set(err, errlen,
                       "%s: another nvmevm is already using this control socket (use --name)",
                       sa->sun_path);
    if (unlink(sa->sun_path) < 0 && errno != ENOENT)
        return err_set(err, errlen, "%s: %s", sa->sun_path, strerror(errno));
    return 0;
}

int control_open(struct control *c, const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memset(c, 0, sizeof(*c));
    c->listen_fd = -1;
    for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
        c->conns[i].fd = -1;
    if (strlen(path) >= sizeof(sa.sun_path))
        return err_set(err, errlen, "%s: control socket path too long (at most %zu bytes)", path,
                       sizeof(sa.sun_path) - 1);
    memcpy(c->path, path, strlen(path) + 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return err_set(err, errlen, "control socket: %s", strerror(errno));
    if (clear_stale(fd, &sa, err, errlen) < 0) {
        close(fd);
        return -1;
    }
    mode_t old = umask(0177);
    int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (r < 0 || listen(fd, 8) < 0) {
        err_set(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    c->listen_fd = fd;
    if (events_init() < 0)
        warn_errno("events: eventfd (no events on the control socket)");
    static bool hooked;
    if (!hooked)
        atexit(unlink_bound);
    hooked = true;
    memcpy(bound_path, path, strlen(path) + 1);
    return 0;
}

static void conn_close(struct control_conn *k)
{
    if (k->fd >= 0)
        close(k->fd);
    free(k->in);
    free(k->out);
    control_stats_forget(k->stats_prev);
    *k = (struct control_conn){.fd = -1};
}

static void flush_watchers(struct control *c);

void control_close(struct control *c)
{
    if (c->listen_fd >= 0)
        flush_watchers(c);
    for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
        conn_close(&c->conns[i]);
    if (c->listen_fd >= 0) {
        close(c->listen_fd);
        unlink(c->path);
        bound_path[0] = '\0';
        c->listen_fd = -1;
    }
    migrate_free(c->mig);
    c->mig = NULL;
}

/* Queues obj (with the request's id, if any) as one line, and drops the reference. */
static void send_obj(struct control_conn *k, json_object *obj, json_object *id)
{
    if (id)
        json_object_object_add(obj, "id", json_object_get(id));
    const char *s = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
                                                            JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t n = strlen(s);
    char *out = realloc(k->out, k->out_len + n + 1);
    if (!out) {
        k->closing = true; /* no memory for the reply: drop the client, not the VM */
    } else {
        memcpy(out + k->out_len, s, n);
        out[k->out_len + n] = '\n';
        k->out = out;
        k->out_len += n + 1;
    }
    json_object_put(obj);
}

static json_object *ok_obj(void)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_boolean(1));
    return o;
}

static void add_str(json_object *o, const char *key, const char *v)
{
    json_object_object_add(o, key, json_object_new_string(v));
}

/* {"ok":false,"error":{"class":CLASS,"desc":MSG}}: scripts test "ok", programs the class. */
static void send_error(struct control_conn *k, const char *cls, const char *msg, json_object *id)
{
    json_object *o = json_object_new_object(), *e = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_boolean(0));
    add_str(e, "class", cls);
    add_str(e, "desc", msg);
    json_object_object_add(o, "error", e);
    send_obj(k, o, id);
}

/* The VM's name as clients know it: the socket's file name without ".sock". */
static void vm_name(const struct control *c, char *out, size_t len)
{
    const char *slash = strrchr(c->path, '/');
    const char *base = slash ? slash + 1 : c->path;
    size_t n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".sock") == 0)
        n -= 5;
    snprintf(out, len, "%.*s", (int)n, base);
}

static void send_greeting(struct control *c, struct control_conn *k)
{
    char name[108];
    vm_name(c, name, sizeof(name));
    json_object *g = json_object_new_object(), *caps = json_object_new_array();
    add_str(g, "version", NVMEVM_VERSION);
    json_object_object_add(g, "protocol", json_object_new_int(CONTROL_PROTOCOL));
    add_str(g, "vm", name);
    json_object_object_add(g, "pid", json_object_new_int(getpid()));
    json_object_array_add(caps, json_object_new_string("events"));
    json_object_array_add(caps, json_object_new_string("migrate"));
    json_object_array_add(caps, json_object_new_string("stats"));
    json_object_object_add(g, "capabilities", caps);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "greeting", g);
    send_obj(k, o, NULL);
}

static void send_commands(struct control_conn *k, json_object *id)
{
    json_object *o = ok_obj(), *list = json_object_new_array();
    for (size_t i = 0; i < control_ncommands; i++) {
        json_object *e = json_object_new_object();
        add_str(e, "name", control_commands[i].name);
        add_str(e, "desc", control_commands[i].desc);
        json_object_array_add(list, e);
    }
    json_object_object_add(o, "commands", list);
    send_obj(k, o, id);
}

static void send_state(struct control_conn *k, const char *state, json_object *id)
{
    json_object *o = ok_obj();
    add_str(o, "state", state);
    send_obj(k, o, id);
}

static void serve_migrate(struct control *c, struct vm *vm, struct control_conn *k,
                          const struct control_req *r)
{
    char err[256];
    if (migrate_state(c->mig) == MIG_ACTIVE) {
        send_error(k, CONTROL_ERR_DEVICE_BUSY, "a migration is already running", r->id);
        return;
    }
    struct migration *m = migrate_start(vm, &r->mig, err, sizeof(err));
    if (!m) {
        send_error(k, CONTROL_ERR_MIGRATION_FAILED, err, r->id);
        return;
    }
    migrate_free(c->mig); /* the previous one, finished */
    c->mig = m;
    json_object *o = ok_obj();
    add_str(o, "migration", "active");
    send_obj(k, o, r->id);
}

static void serve_migrate_status(struct control *c, struct control_conn *k, json_object *id)
{
    struct mig_progress p;
    migrate_progress(c->mig, &p);
    json_object *o = ok_obj();
    add_str(o, "migration", migrate_state_name(p.state));
    if (p.state != MIG_NONE) {
        json_object_object_add(o, "pass", json_object_new_int64(p.pass));
        json_object_object_add(o, "ram_total", json_object_new_uint64(p.ram_total));
        json_object_object_add(o, "ram_remaining", json_object_new_uint64(p.ram_remaining));
        json_object_object_add(o, "bytes_sent", json_object_new_uint64(p.bytes_sent));
        json_object_object_add(o, "zero_pages", json_object_new_uint64(p.zero_pages));
        json_object_object_add(o, "bandwidth", json_object_new_double(p.bandwidth));
        json_object_object_add(o, "dirty_rate", json_object_new_double(p.dirty_rate));
        json_object_object_add(o, "expected_downtime_ms",
                               json_object_new_double(p.expected_downtime_ms));
        json_object_object_add(o, "throttle_pct", json_object_new_int64(p.throttle_pct));
        json_object_object_add(o, "total_ms", json_object_new_double(p.total_ms));
        json_object_object_add(o, "downtime_ms", json_object_new_double(p.downtime_ms));
        add_str(o, "error", p.error);
    }
    c->status_reads++;
    send_obj(k, o, id);
}

static void serve_line(struct control *c, struct vm *vm, struct control_conn *k, const char *line,
                       size_t len)
{
    struct control_req r;
    char err[256];
    if (control_parse_request(line, len, &r, err, sizeof(err)) < 0) {
        send_error(k, r.err_class, err, r.id);
        control_req_release(&r);
        return;
    }
    /* Waiting for an incoming migration, the VM has no guest yet: only these make sense. */
    if (c->incoming && r.cmd != CONTROL_STATUS && r.cmd != CONTROL_QUIT &&
        r.cmd != CONTROL_QUERY_COMMANDS && r.cmd != CONTROL_WATCH &&
        r.cmd != CONTROL_MIGRATE_STATUS) {
        send_error(k, CONTROL_ERR_INVALID_STATE,
                   "waiting for an incoming migration: no guest runs here yet", r.id);
        control_req_release(&r);
        return;
    }
    switch (r.cmd) {
    case CONTROL_STATUS: {
        json_object *o = ok_obj();
        add_str(o, "state", c->incoming ? "incoming" : vm_is_paused(vm) ? "paused" : "running");
        if (c->incoming)
            add_str(o, "incoming", migrate_incoming_state(c->incoming));
        json_object_object_add(o, "cpus", json_object_new_int(vm->ncpus));
        json_object_object_add(o, "mem", json_object_new_uint64(vm->mem.size));
        json_object_object_add(o, "pid", json_object_new_int(getpid()));
        send_obj(k, o, r.id);
        break;
    }
    case CONTROL_PAUSE:
        vm_pause(vm);
        send_state(k, "paused", r.id);
        break;
    case CONTROL_RESUME:
        vm_resume(vm);
        send_state(k, "running", r.id);
        break;
    case CONTROL_MIGRATE:
        serve_migrate(c, vm, k, &r);
        break;
    case CONTROL_MIGRATE_STATUS:
        serve_migrate_status(c, k, r.id);
        break;
    case CONTROL_MIGRATE_CANCEL:
        if (migrate_state(c->mig) != MIG_ACTIVE) {
            send_error(k, CONTROL_ERR_INVALID_STATE, "no migration is running", r.id);
            break;
        }
        migrate_cancel(c->mig);
        send_obj(k, ok_obj(), r.id);
        break;
    case CONTROL_STATS:
        send_obj(k, control_stats_reply(vm, &k->stats_prev), r.id);
        break;
    case CONTROL_QUIT:
        send_state(k, "stopping", r.id);
        vm_request_stop(vm, 0);
        if (c->incoming)
            migrate_incoming_cancel(c->incoming);
        break;
    case CONTROL_QUERY_COMMANDS:
        send_commands(k, r.id);
        break;
    case CONTROL_WATCH:
        k->watching = true;
        send_obj(k, ok_obj(), r.id);
        break;
    }
    control_req_release(&r);
}

/* Serves every complete line buffered, then (at EOF) a last unterminated one. */
static void serve_lines(struct control *c, struct vm *vm, struct control_conn *k, bool eof)
{
    while (!k->closing && k->out_len - k->out_off < MAX_OUT) {
        char *nl = k->in_len ? memchr(k->in, '\n', k->in_len) : NULL;
        if (!nl) {
            if (eof && k->in_len)
                serve_line(c, vm, k, k->in, k->in_len);
            if (eof)
                k->closing = true, k->in_len = 0;
            return;
        }
        size_t len = (size_t)(nl - k->in);
        serve_line(c, vm, k, k->in, len > 0 && k->in[len - 1] == '\r' ? len - 1 : len);
        memmove(k->in, nl + 1, k->in_len - len - 1);
        k->in_len -= len + 1;
    }
}

/* Closing with unread input would reset the connection and lose the reply on its way:
 * the client reads its error first, then the rest of what it sent is discarded. */
static void conn_drain(struct control_conn *k)
{
    char junk[4096];
    for (int i = 0; i < 16; i++) {
        ssize_t r = read(k->fd, junk, sizeof(junk));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            return;
        if (r <= 0)
            break;
    }
    conn_close(k);
}

static void conn_read(struct control *c, struct vm *vm, struct control_conn *k)
{
    if (k->draining) {
        conn_drain(k);
        return;
    }
    if (!k->in && !(k->in = malloc(CONTROL_MAX_LINE + 1))) {
        k->closing = true;
        return;
    }
    bool eof = false;
    while (k->in_len <= CONTROL_MAX_LINE) { /* no room left: the line is too long, below */
        ssize_t r = read(k->fd, k->in + k->in_len, CONTROL_MAX_LINE + 1 - k->in_len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno != EAGAIN) {
            conn_close(k); /* the client is gone: nobody to answer */
            return;
        }
        eof = r == 0;
        if (r > 0)
            k->in_len += (size_t)r;
        break;
    }
    k->last_active_ms = now_ms();
    serve_lines(c, vm, k, eof);
    if (k->in_len > CONTROL_MAX_LINE && !memchr(k->in, '\n', k->in_len)) {
        char msg[80];
        snprintf(msg, sizeof(msg), "request longer than %d bytes", CONTROL_MAX_LINE);
        send_error(k, CONTROL_ERR_INVALID_REQUEST, msg, NULL);
        k->closing = true;
        k->in_len = 0;
    }
}

static void conn_write(struct control_conn *k)
{
    while (k->out_off < k->out_len) {
        ssize_t w = send(k->fd, k->out + k->out_off, k->out_len - k->out_off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            return;
        if (w <= 0) {
            conn_close(k);
            return;
        }
        k->out_off += (size_t)w;
        k->last_active_ms = now_ms();
    }
    free(k->out);
    k->out = NULL;
    k->out_len = k->out_off = 0;
    if (k->closing && !k->draining) {
        shutdown(k->fd, SHUT_WR);
        k->draining = true;
        k->last_active_ms = now_ms();
    }
}

static void accept_clients(struct control *c)
{
    for (;;) {
        int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            return;
        struct control_conn *slot = NULL;
        for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
            struct control_conn *k = &c->conns[i];
            if (k->fd < 0) {
                slot = k;
                break;
            }
            if (!slot || k->last_active_ms < slot->last_active_ms)
                slot = k;
        }
        /* All taken: the client idle longest makes room (it can connect again). */
        if (slot->fd >= 0)
            conn_close(slot);
        slot->fd = fd;
        slot->last_active_ms = now_ms();
        send_greeting(c, slot);
    }
}

/* Appends every waiting event to each watching client's output. A watcher that has not
 * read a full backlog is dropped: the VM never waits for a client. */
static void deliver_events(struct control *c)
{
    char *line;
    while ((line = events_take()) != NULL) {
        size_t n = strlen(line);
        for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
            struct control_conn *k = &c->conns[i];
            if (k->fd < 0 || !k->watching || k->closing)
                continue;
            char *out =
                k->out_len - k->out_off < MAX_OUT ? realloc(k->out, k->out_len + n + 1) : NULL;
            if (!out) {
                conn_close(k);
                continue;
            }
            memcpy(out + k->out_len, line, n);
            out[k->out_len + n] = '\n';
            k->out = out;
            k->out_len += n + 1;
        }
        free(line);
    }
}

/* At the end, the last events (the guest's exit) still reach the watchers: a short,
 * bounded wait for their sockets to take them. */
static void flush_watchers(struct control *c)
{
    deliver_events(c);
    uint64_t until = now_ms() + 500;
    for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
        struct control_conn *k = &c->conns[i];
        while (k->fd >= 0 && k->watching && k->out_off < k->out_len && now_ms() < until) {
            struct pollfd p = {.fd = k->fd, .events = POLLOUT};
            if (poll(&p, 1, (int)(until - now_ms())) <= 0)
                break;
            conn_write(k);
        }
    }
}

int control_pollfds(struct control *c, struct pollfd *p)
{
    int n = 0;
    p[n++] = (struct pollfd){.fd = c->listen_fd, .events = POLLIN};
    for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
        struct control_conn *k = &c->conns[i];
        short ev = 0;
        if (k->out_off < k->out_len)
            ev |= POLLOUT;
        if (k->draining || (!k->closing && k->out_len - k->out_off < MAX_OUT))
            ev |= POLLIN;
        /* A free slot keeps its place with fd -1, which poll skips. */
        p[n++] = (struct pollfd){.fd = k->fd >= 0 ? k->fd : -1, .events = ev};
    }
    p[n++] = (struct pollfd){.fd = events_fd(), .events = POLLIN};
    return n;
}

void control_handle(struct control *c, struct vm *vm, const struct pollfd *p, int n)
{
    for (int i = 1; i < n && i <= CONTROL_MAX_CLIENTS; i++) {
        struct control_conn *k = &c->conns[i - 1];
        if (k->fd < 0 || p[i].fd != k->fd || !p[i].revents)
            continue;
        if (p[i].revents & (POLLIN | POLLHUP | POLLERR))
            conn_read(c, vm, k);
        if (k->fd >= 0 && k->out_len - k->out_off < MAX_OUT && k->in_len && !k->closing)
            serve_lines(c, vm, k, false); /* lines held back while the backlog was full */
        if (k->fd >= 0 && !k->draining)
            conn_write(k);
    }
    if (n > 0 && (p[0].revents & POLLIN))
        accept_clients(c);
    if (n == CONTROL_MAX_POLLFDS && (p[n - 1].revents & POLLIN))
        deliver_events(c);
}
