/* The control socket's client side and where sockets live: `nvmevm ctl`, the request helper
 * `nvmevm migrate` uses, and the default socket directory with its ownership checks. */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include "app/cli.h"
#include "app/control.h"
#include "app/control_stats.h"
#include "util/err.h"
#include "util/log.h"

#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)

/* Another user could have made the directory first (/tmp is shared) and would then see or
 * replace our sockets: use it only if it is a real directory of ours closed to others. */
static int check_dir(const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0700) == 0)
        return 0;
    if (errno != EEXIST)
        return err_set(err, errlen, "%s: %s", dir, strerror(errno));
    struct stat st;
    if (lstat(dir, &st) < 0)
        return err_set(err, errlen, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return err_set(err, errlen, "%s: not a directory (a symlink or file is not trusted)", dir);
    if (st.st_uid != geteuid())
        return err_set(err, errlen, "%s: owned by uid %u, not by us (uid %u)", dir,
                       (unsigned)st.st_uid, (unsigned)geteuid());
    if (st.st_mode & 077)
        return err_set(err, errlen, "%s: mode %04o, want 0700", dir, (unsigned)st.st_mode & 07777);
    return 0;
}

int control_default_path_err(const char *name, char *out, size_t outlen, char *err, size_t errlen)
{
    if (!*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return err_set(err, errlen, "VM name '%s': must be non-empty and contain no '/'", name);
    const char *base = getenv("XDG_RUNTIME_DIR");
    char dir[SUN_PATH_MAX];
    int n;
    if (base && *base)
        n = snprintf(dir, sizeof(dir), "%s/nvmevm", base);
    else if (geteuid() == 0)
        n = snprintf(dir, sizeof(dir), "/run/nvmevm");
    else
        n = snprintf(dir, sizeof(dir), "/tmp/nvmevm-%u", (unsigned)geteuid());
    if (n < 0 || (size_t)n >= sizeof(dir))
        return err_set(err, errlen, "XDG_RUNTIME_DIR %.64s...: too long for a socket path", base);
    n = snprintf(out, outlen, "%s/%s.sock", dir, name);
    if (n < 0 || (size_t)n >= outlen || (size_t)n >= SUN_PATH_MAX)
        return err_set(err, errlen, "%s/%.64s.sock: too long for a socket path (at most %zu)", dir,
                       name, SUN_PATH_MAX - 1);
    return check_dir(dir, err, errlen);
}

int control_default_path(const char *name, char *out, size_t outlen)
{
    return control_default_path_err(name, out, outlen, NULL, 0);
}

unsigned control_client_timeout_s = CONTROL_CLIENT_TIMEOUT_S;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline for poll (at least 0); -1 for no deadline. */
static int left_ms(uint64_t deadline)
{
    if (!deadline)
        return -1;
    uint64_t now = mono_ms();
    return now >= deadline ? 0 : (int)(deadline - now);
}

/* Waits for fd to become ready; -1 with ETIMEDOUT past the deadline. */
static int wait_fd(int fd, short ev, uint64_t deadline)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = ev};
        int r = poll(&p, 1, left_ms(deadline));
        if (r > 0)
            return 0;
        if (r == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (errno != EINTR)
            return -1;
    }
}

static uint64_t deadline_from_now(void)
{
    return control_client_timeout_s ? mono_ms() + control_client_timeout_s * 1000ULL : 0;
}

int control_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    /* A UNIX socket connects at once or says EAGAIN while its backlog is full. */
    uint64_t deadline = deadline_from_now();
    while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if ((errno != EAGAIN && errno != EINTR) || (deadline && mono_ms() >= deadline)) {
            int e = errno == EAGAIN ? ETIMEDOUT : errno;
            close(fd);
            errno = e;
            return -1;
        }
        usleep(20 * 1000);
    }
    return fd;
}

void control_target_arg(int opt, const char *arg, char *path, size_t pathlen)
{
    char err[256];
    if (opt == 's') {
        if (strlen(arg) >= pathlen || strlen(arg) >= SUN_PATH_MAX)
            die("--socket %s: too long for a socket path", arg);
        memcpy(path, arg, strlen(arg) + 1);
    } else if (control_default_path_err(arg, path, pathlen, err, sizeof(err)) < 0) {
        die("--vm: %s", err);
    }
}

static int write_all(int fd, const char *s, size_t n, uint64_t deadline)
{
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            if (wait_fd(fd, POLLOUT, deadline) < 0)
                return -1;
            continue;
        }
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

int control_read_line(struct control_reader *r, char *out, size_t outlen, uint64_t deadline)
{
    for (;;) {
        char *nl = r->len ? memchr(r->buf, '\n', r->len) : NULL;
        size_t n = nl ? (size_t)(nl - r->buf) + 1 : 0;
        if (!nl && r->len == sizeof(r->buf))
            n = r->len; /* longer than we keep: handed over in pieces */
        if (n) {
            size_t c = n < outlen - 1 ? n : outlen - 1;
            memcpy(out, r->buf, c);
            out[c] = '\0';
            memmove(r->buf, r->buf + n, r->len - n);
            r->len -= n;
            return 1;
        }
        if (wait_fd(r->fd, POLLIN, deadline) < 0)
            return -1;
        ssize_t got = read(r->fd, r->buf + r->len, sizeof(r->buf) - r->len);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got < 0)
            return -1;
        if (got == 0) {
            if (!r->len)
                return 0;
            n = r->len < outlen - 1 ? r->len : outlen - 1; /* a last line without newline */
            memcpy(out, r->buf, n);
            out[n] = '\0';
            r->len = 0;
            return 1;
        }
        r->len += (size_t)got;
    }
}

enum control_line_kind control_line_kind(const char *line)
{
    json_object *o = json_tokener_parse(line);
    enum control_line_kind k = CONTROL_LINE_REPLY;
    if (o && json_object_is_type(o, json_type_object)) {
        if (json_object_object_get_ex(o, "greeting", NULL))
            k = CONTROL_LINE_GREETING;
        else if (json_object_object_get_ex(o, "event", NULL))
            k = CONTROL_LINE_EVENT;
    }
    json_object_put(o);
    return k;
}

char *control_exchange(struct control_reader *rd, const char *req, size_t max)
{
    if (write_all(rd->fd, req, strlen(req), deadline_from_now()) < 0)
        return NULL;
    uint64_t deadline = deadline_from_now();
    size_t cap = sizeof(rd->buf) + 1, len = 0;
    char *line = malloc(cap), *piece = malloc(cap);
    while (line && piece) {
        int got = control_read_line(rd, piece, cap, deadline);
        if (got <= 0) {
            errno = got == 0 ? ECONNRESET : errno; /* closed without an answer */
            break;
        }
        size_t n = strlen(piece);
        if (len == 0 && piece[n - 1] == '\n' && control_line_kind(piece) != CONTROL_LINE_REPLY)
            continue; /* the greeting, or an event */
        if (len + n + 1 > cap) {
            char *b = len + n + 1 <= max ? realloc(line, 2 * (len + n + 1)) : NULL;
            if (!b) {
                errno = EMSGSIZE;
                break;
            }
            line = b;
            cap = 2 * (len + n + 1);
        }
        memcpy(line + len, piece, n + 1);
        len += n;
        if (piece[n - 1] == '\n') { /* a long reply comes in pieces: this was its end */
            free(piece);
            return line;
        }
    }
    int e = line && piece ? errno : ENOMEM;
    free(line);
    free(piece);
    errno = e;
    return NULL;
}

int control_request(const char *path, const char *req, char *out, size_t outlen)
{
    struct control_reader *rd = calloc(1, sizeof(*rd));
    if (!rd) {
        errno = ENOMEM;
        return -1;
    }
    rd->fd = control_connect(path);
    char *line = rd->fd >= 0 ? control_exchange(rd, req, outlen) : NULL;
    int e = errno;
    if (line)
        snprintf(out, outlen, "%s", line);
    free(line);
    if (rd->fd >= 0)
        close(rd->fd);
    free(rd);
    errno = e;
    return line ? 0 : -1;
}

void control_request_die(const char *path)
{
    if (errno == ETIMEDOUT)
        die("%s: no answer within %u s", path, control_client_timeout_s);
    die_errno("%s", path);
}

int control_request_obj(const char *path, json_object *req, char *out, size_t outlen)
{
    /* json-c escapes every string, so no user text can add members to the request. */
    const char *js = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t n = strlen(js);
    char *line = malloc(n + 2);
    if (!line) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(line, js, n);
    memcpy(line + n, "\n", 2);
    int r = control_request(path, line, out, outlen);
    free(line);
    return r;
}

bool control_reply_ok(const char *reply_line)
{
    json_object *o = json_tokener_parse(reply_line), *ok;
    bool r = o && json_object_object_get_ex(o, "ok", &ok) &&
             json_object_is_type(ok, json_type_boolean) && json_object_get_boolean(ok);
    json_object_put(o);
    return r;
}

/* A readable line for one event: time, name, then data's members as key=value. */
static void print_human(const char *line)
{
    json_object *o = json_tokener_parse(line), *ev, *data, *ts, *sec, *usec;
    if (!o || !json_object_object_get_ex(o, "event", &ev)) {
        fputs(line, stdout);
        json_object_put(o);
        return;
    }
    time_t t = 0;
    long us = 0;
    if (json_object_object_get_ex(o, "timestamp", &ts) &&
        json_object_object_get_ex(ts, "seconds", &sec) &&
        json_object_object_get_ex(ts, "microseconds", &usec)) {
        t = (time_t)json_object_get_int64(sec);
        us = (long)json_object_get_int64(usec);
    }
    struct tm tm;
    char when[32] = "?";
    if (localtime_r(&t, &tm))
        strftime(when, sizeof(when), "%H:%M:%S", &tm);
    printf("%s.%03ld %s", when, us / 1000, json_object_get_string(ev));
    if (json_object_object_get_ex(o, "data", &data) &&
        json_object_is_type(data, json_type_object)) {
        json_object_object_foreach(data, key, val)
        {
            printf(" %s=%s", key, json_object_get_string(val));
        }
    }
    putchar('\n');
    json_object_put(o);
}

/* ctl --watch: events as they come, until the VM ends (0) or the connection fails. */
static int watch(const char *path, bool human)
{
    int fd = control_connect(path);
    if (fd < 0)
        control_request_die(path);
    struct control_reader *rd = calloc(1, sizeof(*rd));
    if (!rd)
        die("out of memory");
    rd->fd = fd;
    static const char req[] = "{\"cmd\":\"watch\"}\n";
    char line[8192];
    if (write_all(fd, req, sizeof(req) - 1, deadline_from_now()) < 0)
        control_request_die(path);
    setvbuf(stdout, NULL, _IOLBF, 0);
    bool subscribed = false;
    for (;;) {
        /* Only the answer to "watch" has a deadline; events come when they come. */
        int r = control_read_line(rd, line, sizeof(line), subscribed ? 0 : deadline_from_now());
        if (r < 0)
            control_request_die(path);
        if (r == 0)
            break; /* the VM ended */
        enum control_line_kind k = control_line_kind(line);
        if (k == CONTROL_LINE_GREETING)
            continue;
        if (k == CONTROL_LINE_REPLY) {
            if (!control_reply_ok(line))
                die("%s: watch refused: %.200s", path, line);
            subscribed = true;
            continue;
        }
        if (human)
            print_human(line);
        else
            fputs(line, stdout);
    }
    free(rd);
    close(fd);
    return 0;
}

static unsigned parse_timeout(const char *s)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || !*s || *s == '-' || v < 1 || v > 3600)
        die("--timeout %s: expected seconds from 1 to 3600", s);
    return (unsigned)v;
}

int control_client_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'},  {"vm", required_argument, NULL, 'n'},
        {"timeout", required_argument, NULL, 't'}, {"watch", no_argument, NULL, 'w'},
        {"human", no_argument, NULL, 'H'},         {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},          {0, 0, 0, 0},
    };
    char path[SUN_PATH_MAX] = "", err[256];
    bool watching = false, human = false, json = false;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":s:n:h", opts, NULL)) != -1) {
        switch (o) {
        case 's':
        case 'n':
            control_target_arg(o, optarg, path, sizeof(path));
            break;
        case 't':
            control_client_timeout_s = parse_timeout(optarg);
            break;
        case 'w':
            watching = true;
            break;
        case 'H':
            human = true;
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            printf("usage: nvmevm ctl [--socket PATH | --vm NAME] [--timeout S] COMMAND\n"
                   "       nvmevm ctl [--socket PATH | --vm NAME] stats [--json]\n"
                   "       nvmevm ctl [--socket PATH | --vm NAME] --watch [--human]\n"
                   "\n"
                   "COMMAND: status, pause, resume, quit, stats, migrate-status, migrate-cancel,\n"
                   "query-commands (docs/control-protocol.md). Without --socket or --vm: the\n"
                   "only running VM. --timeout: seconds to wait for an answer (default %d).\n"
                   "--watch prints the VM's events, one JSON line each (--human: readable),\n"
                   "until the VM ends.\n",
                   CONTROL_CLIENT_TIMEOUT_S);
            return 0;
        default:
            cli_bad_option("ctl", o, argv);
        }
    }
    if (watching ? optind != argc : optind != argc - 1)
        die(watching ? "ctl --watch: takes no command"
                     : "ctl: expected one command: status, pause, resume, quit, ... "
                       "(query-commands lists them)");
    if (!*path && control_find_lone(path, sizeof(path), err, sizeof(err)) < 0)
        die("ctl: %s", err);
    if (watching)
        return watch(path, human);
    if (strcmp(argv[optind], "stats") == 0)
        return stats_client_print(path, json);
    json_object *req = json_object_new_object();
    json_object_object_add(req, "cmd", json_object_new_string(argv[optind]));
    char buf[16384];
    int r = control_request_obj(path, req, buf, sizeof(buf));
    json_object_put(req);
    if (r < 0)
        control_request_die(path);
    fputs(buf, stdout);
    return control_reply_ok(buf) ? 0 : 1;
}
