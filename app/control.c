#include "app/control.h"

#include <errno.h>
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

/* Finds "key": in a one-line JSON object; returns a pointer after the colon. */
static const char *json_field(const char *line, const char *key)
{
    char pat[40];
    snprintf(pat, sizeof(pat), "\"%s\"", key);
    const char *p = strstr(line, pat);
    if (!p)
        return NULL;
    p = strchr(p + strlen(pat), ':');
    return p ? p + 1 : NULL;
}

static uint64_t json_u64(const char *line, const char *key, uint64_t dflt)
{
    const char *p = json_field(line, key);
    if (!p)
        return dflt;
    while (*p == ' ')
        p++;
    if (strncmp(p, "true", 4) == 0)
        return 1;
    if (strncmp(p, "false", 5) == 0)
        return 0;
    return strtoull(p, NULL, 10);
}

/* Extracts the string value of key from a one-line JSON object. */
static int json_str(const char *line, const char *key, char *out, size_t len)
{
    const char *p = json_field(line, key);
    if (!p)
        return -1;
    p = strchr(p, '"');
    if (!p)
        return -1;
    const char *e = strchr(++p, '"');
    if (!e || (size_t)(e - p) >= len)
        return -1;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
    return 0;
}

/* Extracts the value of "cmd" from a one-line JSON object. */
static int parse_cmd(const char *line, char *cmd, size_t len)
{
    return json_str(line, "cmd", cmd, len);
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
    char cmd[32], out[400];
    if (parse_cmd(line, cmd, sizeof(cmd)) < 0) {
        reply(fd, "{\"ok\":false,\"error\":\"expected {\\\"cmd\\\":\\\"...\\\"}\"}\n");
    } else if (strcmp(cmd, "status") == 0) {
        snprintf(out, sizeof(out),
                 "{\"ok\":true,\"state\":\"%s\",\"cpus\":%d,\"mem\":%llu,\"pid\":%d}\n",
                 vm_is_paused(vm) ? "paused" : "running", vm->ncpus,
                 (unsigned long long)vm->mem.size, (int)getpid());
        reply(fd, out);
    } else if (strcmp(cmd, "pause") == 0) {
        vm_pause(vm);
        reply(fd, "{\"ok\":true,\"state\":\"paused\"}\n");
    } else if (strcmp(cmd, "resume") == 0) {
        vm_resume(vm);
        reply(fd, "{\"ok\":true,\"state\":\"running\"}\n");
    } else if (strcmp(cmd, "migrate") == 0) {
        struct mig_params mp = {.downtime_ms = 300};
        char err[256];
        if (json_str(line, "uri", mp.uri, sizeof(mp.uri)) < 0) {
            reply(fd, "{\"ok\":false,\"error\":\"migrate: missing \\\"uri\\\"\"}\n");
        } else {
            mp.downtime_ms = (unsigned)json_u64(line, "downtime_ms", 300);
            mp.max_bandwidth = json_u64(line, "max_bandwidth", 0);
            mp.timeout_s = (unsigned)json_u64(line, "timeout_s", 0);
            mp.force_on_timeout = json_u64(line, "force", 0) != 0;
            mp.auto_converge = json_u64(line, "auto_converge", 0) != 0;
            struct migration *m = NULL;
            if (migrate_state(c->mig) == MIG_ACTIVE)
                snprintf(err, sizeof(err), "a migration is already running");
            else if ((m = migrate_start(vm, &mp, err, sizeof(err))) != NULL) {
                migrate_free(c->mig);
                c->mig = m;
            }
            if (!m) {
                snprintf(out, sizeof(out), "{\"ok\":false,\"error\":\"%s\"}\n", err);
                reply(fd, out);
            } else {
                reply(fd, "{\"ok\":true,\"migration\":\"active\"}\n");
            }
        }
    } else if (strcmp(cmd, "migrate-status") == 0) {
        char js[768];
        migrate_status_json(c->mig, js, sizeof(js));
        c->status_reads++;
        reply(fd, js);
        reply(fd, "\n");
    } else if (strcmp(cmd, "migrate-cancel") == 0) {
        migrate_cancel(c->mig);
        reply(fd, "{\"ok\":true}\n");
    } else if (strcmp(cmd, "quit") == 0) {
        reply(fd, "{\"ok\":true,\"state\":\"stopping\"}\n");
        vm_request_stop(vm, 0);
    } else {
        snprintf(out, sizeof(out), "{\"ok\":false,\"error\":\"unknown command '%s'\"}\n", cmd);
        reply(fd, out);
    }
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
    char req[96], buf[1024];
    snprintf(req, sizeof(req), "{\"cmd\":\"%s\"}\n", argv[optind]);
    if (control_request(path, req, buf, sizeof(buf)) < 0)
        die_errno("%s", path);
    fputs(buf, stdout);
    return strstr(buf, "\"ok\":true") ? 0 : 1;
}
