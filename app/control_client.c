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
#include <unistd.h>

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

static int write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

int control_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        return fd;
    int e = errno;
    if (fd >= 0)
        close(fd);
    errno = e;
    return -1;
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

int control_request(const char *path, const char *req, char *out, size_t outlen)
{
    int fd = control_connect(path);
    if (fd < 0)
        return -1;
    if (write_all(fd, req, strlen(req)) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    size_t n = 0;
    while (n + 1 < outlen) {
        ssize_t r = read(fd, out + n, outlen - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (memchr(out + n - (size_t)r, '\n', (size_t)r))
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

int control_client_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'},
        {"vm", required_argument, NULL, 'n'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    char path[SUN_PATH_MAX] = "";
    bool json = false;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "s:n:h", opts, NULL)) != -1) {
        switch (o) {
        case 's':
        case 'n':
            control_target_arg(o, optarg, path, sizeof(path));
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            printf("usage: nvmevm ctl [--socket PATH | --vm NAME] status|pause|resume|quit\n"
                   "       nvmevm ctl [--socket PATH | --vm NAME] stats [--json]\n");
            return 0;
        default:
            return 2;
        }
    }
    if (optind != argc - 1)
        die("ctl: expected one command: status, pause, resume, quit or stats");
    if (!*path)
        die("ctl: say which VM with --socket PATH or --vm NAME");
    if (strcmp(argv[optind], "stats") == 0)
        return stats_client_print(path, json);
    json_object *req = json_object_new_object();
    json_object_object_add(req, "cmd", json_object_new_string(argv[optind]));
    char buf[4096];
    int r = control_request_obj(path, req, buf, sizeof(buf));
    json_object_put(req);
    if (r < 0)
        die_errno("%s", path);
    fputs(buf, stdout);
    return control_reply_ok(buf) ? 0 : 1;
}
