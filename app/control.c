#include "app/control.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdint.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "kvm/vm.h"
#include "migrate/migrate.h"
#include "util/log.h"

int control_default_path(const char *name, char *out, size_t outlen)
{
    const char *base = getenv("XDG_RUNTIME_DIR");
    char dir[80];
    if (base && *base)
        snprintf(dir, sizeof(dir), "%s/nvmevm", base);
    else if (geteuid() == 0)
        snprintf(dir, sizeof(dir), "/run/nvmevm");
    else
        snprintf(dir, sizeof(dir), "/tmp/nvmevm-%u", (unsigned)geteuid());
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return -1;
    int n = snprintf(out, outlen, "%s/%s.sock", dir, name);
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

/* The socket of this process, removed if nvmevm dies before control_close(). */
static char bound_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

static void unlink_bound(void)
{
    if (bound_path[0])
        unlink(bound_path);
}

void control_open(struct control *c, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        die("%s: control socket path too long", path);
    c->mig = NULL;
    memcpy(c->path, path, strlen(path) + 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c->listen_fd < 0)
        die_errno("control socket");
    /* A stale socket from a crashed run is replaced; a live one is refused. */
    if (connect(c->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        die("%s: another nvmevm is already using this control socket (use --name)", path);
    unlink(path);
    mode_t old = umask(0177);
    int r = bind(c->listen_fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (r < 0 || listen(c->listen_fd, 4) < 0)
        die_errno("%s", path);
    static bool hooked;
    if (!hooked)
        atexit(unlink_bound);
    hooked = true;
    memcpy(bound_path, path, strlen(path) + 1);
}

void control_close(struct control *c)
{
    if (c->listen_fd >= 0) {
        close(c->listen_fd);
        unlink(c->path);
        bound_path[0] = '\0';
        c->listen_fd = -1;
    }
    migrate_free(c->mig);
    c->mig = NULL;
}

static void reply(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/* Sends obj as one line and drops the reference. */
static void reply_obj(int fd, json_object *obj)
{
    reply(fd, json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
                                                      JSON_C_TO_STRING_NOSLASHESCAPE));
    reply(fd, "\n");
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

static void reply_error(int fd, const char *msg)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_boolean(0));
    add_str(o, "error", msg);
    reply_obj(fd, o);
}

static void reply_state(int fd, const char *state)
{
    json_object *o = ok_obj();
    add_str(o, "state", state);
    reply_obj(fd, o);
}

/* A numeric or boolean member, dflt when absent; false if present with another type. */
static bool get_u64(json_object *req, const char *key, uint64_t dflt, uint64_t *out)
{
    json_object *v;
    *out = dflt;
    if (!json_object_object_get_ex(req, key, &v))
        return true;
    if (json_object_is_type(v, json_type_boolean)) {
        *out = json_object_get_boolean(v);
        return true;
    }
    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
        return false;
    *out = json_object_get_uint64(v);
    return true;
}

/* An optional string member into buf; false if it is not a string or does not fit. */
static bool get_str(json_object *req, const char *key, char *buf, size_t len)
{
    json_object *v;
    buf[0] = '\0';
    if (!json_object_object_get_ex(req, key, &v))
        return true;
    if (!json_object_is_type(v, json_type_string) || (size_t)json_object_get_string_len(v) >= len)
        return false;
    snprintf(buf, len, "%s", json_object_get_string(v));
    return true;
}

/* The migration channel: TLS files (paths as the source process sees them) and the
 * stalled-peer timeout. */
static bool get_channel(json_object *req, struct mig_params *mp)
{
    uint64_t io_timeout;
    struct mig_tls_opts *t = &mp->tls;
    if (!get_u64(req, "io_timeout_s", 0, &io_timeout) || io_timeout > 86400 ||
        !get_str(req, "tls_psk", t->psk, sizeof(t->psk)) ||
        !get_str(req, "tls_cert", t->cert, sizeof(t->cert)) ||
        !get_str(req, "tls_key", t->key, sizeof(t->key)) ||
        !get_str(req, "tls_ca", t->ca, sizeof(t->ca)) ||
        !get_str(req, "tls_hostname", t->hostname, sizeof(t->hostname)))
        return false;
    mp->io_timeout_s = (unsigned)io_timeout;
    return true;
}

static void serve_migrate(struct control *c, struct vm *vm, int fd, json_object *req)
{
    struct mig_params mp = {0};
    json_object *uri;
    uint64_t downtime, bw, timeout, force, autoconv;
    if (!json_object_object_get_ex(req, "uri", &uri) ||
        !json_object_is_type(uri, json_type_string) ||
        (size_t)json_object_get_string_len(uri) >= sizeof(mp.uri)) {
        reply_error(fd, "migrate: missing \"uri\"");
        return;
    }
    if (!get_u64(req, "downtime_ms", 300, &downtime) || !get_u64(req, "max_bandwidth", 0, &bw) ||
        !get_u64(req, "timeout_s", 0, &timeout) || !get_u64(req, "force", 0, &force) ||
        !get_u64(req, "auto_converge", 0, &autoconv) || downtime > UINT32_MAX ||
        timeout > UINT32_MAX) {
        reply_error(fd, "migrate: downtime_ms, max_bandwidth, timeout_s: numbers; force, "
                        "auto_converge: booleans");
        return;
    }
    snprintf(mp.uri, sizeof(mp.uri), "%s", json_object_get_string(uri));
    mp.downtime_ms = (unsigned)downtime;
    mp.max_bandwidth = bw;
    mp.timeout_s = (unsigned)timeout;
    mp.force_on_timeout = force != 0;
    mp.auto_converge = autoconv != 0;
    if (!get_channel(req, &mp)) {
        reply_error(fd, "migrate: tls_psk, tls_cert, tls_key, tls_ca, tls_hostname: strings "
                        "(paths under 256 bytes); io_timeout_s: seconds up to 86400");
        return;
    }
    char err[256];
    if (migrate_state(c->mig) == MIG_ACTIVE) {
        reply_error(fd, "a migration is already running");
        return;
    }
    struct migration *m = migrate_start(vm, &mp, err, sizeof(err));
    if (!m) {
        reply_error(fd, err);
        return;
    }
    migrate_free(c->mig); /* the previous one, finished */
    c->mig = m;
    json_object *o = ok_obj();
    add_str(o, "migration", "active");
    reply_obj(fd, o);
}

static void serve_migrate_status(struct control *c, int fd)
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
    reply_obj(fd, o);
}

void control_serve_one(struct control *c, struct vm *vm)
{
    int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    /* A client that never sends a line must not stall the VMM's main loop. */
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char line[512];
    size_t n = 0;
    while (n < sizeof(line) - 1) {
        ssize_t r = read(fd, line + n, 1);
        if (r <= 0 || line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    json_object *req = json_tokener_parse(line), *jcmd;
    const char *cmd = NULL;
    if (req && json_object_is_type(req, json_type_object) &&
        json_object_object_get_ex(req, "cmd", &jcmd) && json_object_is_type(jcmd, json_type_string))
        cmd = json_object_get_string(jcmd);
    if (!cmd) {
        reply_error(fd, "expected {\"cmd\":\"...\"}");
    } else if (strcmp(cmd, "status") == 0) {
        json_object *o = ok_obj();
        add_str(o, "state", vm_is_paused(vm) ? "paused" : "running");
        json_object_object_add(o, "cpus", json_object_new_int(vm->ncpus));
        json_object_object_add(o, "mem", json_object_new_uint64(vm->mem.size));
        json_object_object_add(o, "pid", json_object_new_int(getpid()));
        reply_obj(fd, o);
    } else if (strcmp(cmd, "pause") == 0) {
        vm_pause(vm);
        reply_state(fd, "paused");
    } else if (strcmp(cmd, "resume") == 0) {
        vm_resume(vm);
        reply_state(fd, "running");
    } else if (strcmp(cmd, "migrate") == 0) {
        serve_migrate(c, vm, fd, req);
    } else if (strcmp(cmd, "migrate-status") == 0) {
        serve_migrate_status(c, fd);
    } else if (strcmp(cmd, "migrate-cancel") == 0) {
        migrate_cancel(c->mig);
        reply_obj(fd, ok_obj());
    } else if (strcmp(cmd, "quit") == 0) {
        reply_state(fd, "stopping");
        vm_request_stop(vm, 0);
    } else {
        char msg[96];
        snprintf(msg, sizeof(msg), "unknown command '%.64s'", cmd);
        reply_error(fd, msg);
    }
    json_object_put(req);
    close(fd);
}

int control_request(const char *path, const char *req, char *out, size_t outlen)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        errno = e;
        return -1;
    }
    reply(fd, req);
    size_t n = 0;
    while (n + 1 < outlen) {
        ssize_t r = read(fd, out + n, outlen - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        if (out[n - 1] == '\n')
            break;
    }
    out[n] = '\0';
    close(fd);
    if (n == 0) {
        errno = ECONNRESET;
        return -1;
    }
    return 0;
}

int control_request_obj(const char *path, json_object *req, char *out, size_t outlen)
{
    char line[1024];
    int n = snprintf(line, sizeof(line), "%s\n",
                     json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE));
    if (n < 0 || (size_t)n >= sizeof(line)) {
        errno = E2BIG;
        return -1;
    }
    return control_request(path, line, out, outlen);
}

bool control_reply_ok(const char *reply_line)
{
    json_object *o = json_tokener_parse(reply_line), *ok;
    bool r = o && json_object_object_get_ex(o, "ok", &ok) && json_object_get_boolean(ok);
    json_object_put(o);
    return r;
}

int control_client_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'},
        {"vm", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    char path[108] = "";
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "s:n:h", opts, NULL)) != -1) {
        switch (o) {
        case 's':
            snprintf(path, sizeof(path), "%s", optarg);
            break;
        case 'n':
            if (control_default_path(optarg, path, sizeof(path)) < 0)
                die("--vm %s: name too long", optarg);
            break;
        case 'h':
            printf("usage: nvmevm ctl [--socket PATH | --vm NAME] status|pause|resume|quit\n");
            return 0;
        default:
            return 2;
        }
    }
    if (optind != argc - 1)
        die("ctl: expected one command: status, pause, resume or quit");
    if (!*path)
        die("ctl: say which VM with --socket PATH or --vm NAME");
    json_object *req = json_object_new_object();
    add_str(req, "cmd", argv[optind]);
    char buf[1024];
    int r = control_request_obj(path, req, buf, sizeof(buf));
    json_object_put(req);
    if (r < 0)
        die_errno("%s", path);
    fputs(buf, stdout);
    return control_reply_ok(buf) ? 0 : 1;
}
