/* Lookup of the default guest and the sandbox scripts (see data_dirs.h). */
#include "app/data_dirs.h"

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/data_dirs_config.h"
#include "kvm/vmlinux.h"
#include "util/err.h"

#define MAX_PLACES 5

struct places {
    char path[MAX_PLACES][PATH_MAX];
    int n;
};

/* Adds a formatted path unless it is too long or already listed (the configured data dir
 * and the one beside the binary are the same place in an ordinary install). */
static void __attribute__((format(printf, 2, 3))) add_place(struct places *p, const char *fmt, ...)
{
    if (p->n == MAX_PLACES)
        return;
    char *dst = p->path[p->n];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(dst, PATH_MAX, fmt, ap);
    va_end(ap);
    if (len < 0 || len >= PATH_MAX)
        return;
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->path[i], dst) == 0)
            return;
    p->n++;
}

/* "A, B or C" into out, for a message. */
static void join_places(const struct places *p, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < p->n && used < len; i++) {
        const char *sep = i == 0 ? "" : i == p->n - 1 ? " or " : ", ";
        int n = snprintf(out + used, len - used, "%s%s", sep, p->path[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/* The parent of the binary's directory: <prefix> for <prefix>/bin/nvmevm. Textual, so a
 * message shows /opt/nvmevm/share/... and not /opt/nvmevm/bin/../share/.... */
static void exe_prefix(const struct data_roots *r, char *out, size_t len)
{
    snprintf(out, len, "%s", r->exe_dir);
    char *slash = strrchr(out, '/');
    if (slash && slash != out)
        *slash = '\0';
    else
        snprintf(out, len, "/");
}

static bool in_build_tree(const struct data_roots *r)
{
    char ninja[PATH_MAX];
    snprintf(ninja, sizeof(ninja), "%s/build.ninja", r->exe_dir);
    return access(ninja, F_OK) == 0;
}

static int first_with(const struct places *p, const char *file, int mode, char *dir, size_t len)
{
    for (int i = 0; i < p->n; i++) {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof(path), "%s/%s", p->path[i], file);
        if (access(path, mode) == 0 && strlen(p->path[i]) < len) {
            memcpy(dir, p->path[i], strlen(p->path[i]) + 1);
            return 0;
        }
    }
    return -1;
}

int data_roots_get(struct data_roots *r, char *err, size_t errlen)
{
    static char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n < 0)
        return err_set(err, errlen, "/proc/self/exe: cannot tell where the binary is");
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash && slash != exe)
        *slash = '\0';
    r->exe_dir = exe;
    r->data_dir = NVMEVM_DATA_DIR;
    r->bin_dir = NVMEVM_BIN_DIR;
    r->source_dir = NVMEVM_SOURCE_DIR;
    r->cache_dir = vmlinux_cache_dir();
    return 0;
}

/* The exact command that builds a guest into target: the source tree's builder for a
 * build-tree binary, else the installed wrapper (the one beside the binary if any). */
static void build_command(const struct data_roots *r, const char *target, char *out, size_t len)
{
    char wrapper[PATH_MAX + 32];
    if (in_build_tree(r)) {
        snprintf(out, len, "%s/guest-images/linux/build.sh %s", r->source_dir, target);
        return;
    }
    snprintf(wrapper, sizeof(wrapper), "%s/nvmevm-build-guest", r->exe_dir);
    if (access(wrapper, X_OK) < 0)
        snprintf(wrapper, sizeof(wrapper), "%s/nvmevm-build-guest", r->bin_dir);
    snprintf(out, len, "%s %s", wrapper, target);
}

int guest_dir_find(const struct data_roots *r, char *dir, size_t len, char *err, size_t errlen)
{
    struct places p = {.n = 0};
    char prefix[PATH_MAX], where[MAX_PLACES * (PATH_MAX + 8)], cmd[2 * PATH_MAX + 64];
    const char *env = getenv("NVMEVM_GUEST_DIR");
    if (env && *env) {
        add_place(&p, "%s", env);
        if (first_with(&p, "vmlinuz", R_OK, dir, len) == 0)
            return 0;
        build_command(r, env, cmd, sizeof(cmd));
        return err_set(err, errlen,
                       "no default guest in NVMEVM_GUEST_DIR=%s (no readable vmlinuz); build "
                       "one with: %s",
                       env, cmd);
    }
    exe_prefix(r, prefix, sizeof(prefix));
    add_place(&p, "%s/guest", r->exe_dir);
    add_place(&p, "%s/guest", r->data_dir);
    if (!in_build_tree(r)) /* a relocated install: <prefix>/bin/nvmevm moved as a whole */
        add_place(&p, "%s/share/nvmevm/guest", prefix);
    if (r->cache_dir)
        add_place(&p, "%s/guest", r->cache_dir);
    if (first_with(&p, "vmlinuz", R_OK, dir, len) == 0)
        return 0;
    join_places(&p, where, sizeof(where));
    /* Build where the binary will look first for its kind: beside a build-tree binary,
     * else in the user cache, which needs no root. */
    char target[PATH_MAX + 8];
    if (in_build_tree(r))
        snprintf(target, sizeof(target), "%s/guest", r->exe_dir);
    else if (r->cache_dir)
        snprintf(target, sizeof(target), "%s/guest", r->cache_dir);
    else
        snprintf(target, sizeof(target), "%s/guest", r->data_dir);
    build_command(r, target, cmd, sizeof(cmd));
    return err_set(err, errlen, "no default guest (no readable vmlinuz in %s); build one with: %s",
                   where, cmd);
}

int sandbox_dir_find(const struct data_roots *r, char *dir, size_t len, char *err, size_t errlen)
{
    struct places p = {.n = 0};
    char prefix[PATH_MAX], where[MAX_PLACES * (PATH_MAX + 8)];
    const char *env = getenv("NVMEVM_SANDBOX_DIR");
    if (env && *env) {
        add_place(&p, "%s", env);
        if (first_with(&p, "run.sh", X_OK, dir, len) == 0)
            return 0;
        return err_set(err, errlen, "no sandbox in NVMEVM_SANDBOX_DIR=%s (no executable run.sh)",
                       env);
    }
    /* A build-tree binary goes with its own source tree's scripts, not an older install. */
    if (in_build_tree(r))
        add_place(&p, "%s/tests/sandbox", r->source_dir);
    else {
        exe_prefix(r, prefix, sizeof(prefix));
        add_place(&p, "%s/share/nvmevm/sandbox", prefix);
    }
    add_place(&p, "%s/sandbox", r->data_dir);
    if (first_with(&p, "run.sh", X_OK, dir, len) == 0)
        return 0;
    join_places(&p, where, sizeof(where));
    return err_set(err, errlen,
                   "no sandbox scripts (no executable run.sh in %s); install nvmevm with "
                   "meson install or set NVMEVM_SANDBOX_DIR to a copy of tests/sandbox",
                   where);
}
