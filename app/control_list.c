/* Finding running VMs: the live control sockets in the default directory. `nvmevm list`
 * prints them; `nvmevm ctl` and `nvmevm migrate` without --vm/--socket take the only one. */
#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/control.h"
#include "util/err.h"
#include "util/log.h"

#define MAX_VMS 256

struct found {
    char path[108];
    char name[108];
};

/* The socket directory (the one control_default_path uses). */
static int socket_dir(char *dir, size_t len, char *err, size_t errlen)
{
    if (control_default_path_err("x", dir, len, err, errlen) < 0)
        return -1;
    *strrchr(dir, '/') = '\0';
    return 0;
}

/* Live sockets only: one nobody listens on is left over from a VM that was killed. */
static int find_all(struct found *out, int max, char *dir, size_t dirlen, char *err, size_t errlen)
{
    if (socket_dir(dir, dirlen, err, errlen) < 0)
        return -1;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : err_set(err, errlen, "%s: %s", dir, strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        size_t len = strlen(e->d_name);
        if (len <= 5 || strcmp(e->d_name + len - 5, ".sock") != 0)
            continue;
        int w = snprintf(out[n].path, sizeof(out[n].path), "%s/%s", dir, e->d_name);
        if (w < 0 || (size_t)w >= sizeof(out[n].path))
            continue;
        int fd = control_connect(out[n].path);
        if (fd < 0)
            continue;
        close(fd);
        snprintf(out[n].name, sizeof(out[n].name), "%.*s", (int)(len - 5), e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

int control_find_lone(char *path, size_t len, char *err, size_t errlen)
{
    static struct found vms[2];
    char dir[108];
    int n = find_all(vms, 2, dir, sizeof(dir), err, errlen);
    if (n < 0)
        return -1;
    if (n == 0)
        return err_set(err, errlen,
                       "no running nvmevm found in %s: say which with --vm NAME or --socket PATH",
                       dir);
    if (n > 1)
        return err_set(err, errlen,
                       "several VMs are running (nvmevm list): say which with --vm NAME or "
                       "--socket PATH");
    if (strlen(vms[0].path) >= len)
        return err_set(err, errlen, "%s: path too long", vms[0].path);
    memcpy(path, vms[0].path, strlen(vms[0].path) + 1);
    return 0;
}

int control_list_main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: nvmevm list\n\nThe running VMs (name, pid, state, control socket) in "
               "the default socket\ndirectory; leftover sockets of VMs that died are skipped.\n");
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "nvmevm list: unexpected %s %s (see nvmevm list --help)\n",
                argv[1][0] == '-' ? "option" : "argument", argv[1]);
        return 2;
    }
    static struct found vms[MAX_VMS];
    char dir[108], err[300];
    int n = find_all(vms, MAX_VMS, dir, sizeof(dir), err, sizeof(err));
    if (n < 0)
        die("list: %s", err);
    printf("%-24s %8s  %-9s %s\n", "NAME", "PID", "STATE", "SOCKET");
    for (int i = 0; i < n; i++) {
        char rep[4096];
        const char *state = "?";
        long long pid = 0;
        json_object *o = NULL, *v;
        if (control_request(vms[i].path, "{\"cmd\":\"status\"}\n", rep, sizeof(rep)) == 0 &&
            (o = json_tokener_parse(rep)) != NULL) {
            if (json_object_object_get_ex(o, "state", &v))
                state = json_object_get_string(v);
            if (json_object_object_get_ex(o, "pid", &v))
                pid = json_object_get_int64(v);
        } else {
            state = "no-answer";
        }
        printf("%-24s %8lld  %-9s %s\n", vms[i].name, pid, state, vms[i].path);
        json_object_put(o);
    }
    return 0;
}
