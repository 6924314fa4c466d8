#include "app/guest_files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"

/* Guest RAM holds the archive twice while the kernel unpacks it: keep it modest. */
#define GUEST_FILES_TOTAL_MAX (256u << 20)

bool guest_files_wanted(const struct guest_files *g)
{
    return g->fio_job || g->nfiles || g->nargs;
}

static int read_file(const char *path, size_t budget, char **data, size_t *len, char *err,
                     size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(err, errlen, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, errlen, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > budget) {
        close(fd);
        return err_set(err, errlen,
                       "%s: too large for the guest's initramfs (%lld MiB; all files "
                       "together at most %u MiB)",
                       path, (long long)st.st_size >> 20, GUEST_FILES_TOTAL_MAX >> 20);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (!buf || got != (size_t)st.st_size) {
        free(buf);
        return err_set(err, errlen, "%s: cannot read it", path);
    }
    *data = buf;
    *len = got;
    return 0;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Names the guest script relies on; a --guest-file may not replace them. */
static bool reserved(const char *name)
{
    return strcmp(name, "job.fio") == 0 || strcmp(name, "fio-args") == 0 ||
           strcmp(name, "namespaces") == 0;
}

static int add_path(struct cpio *out, const char *path, const char *name, size_t *budget, char *err,
                    size_t errlen)
{
    char *data = NULL;
    size_t len = 0;
    if (read_file(path, *budget, &data, &len, err, errlen) < 0)
        return -1;
    *budget -= len;
    char guest_name[300];
    snprintf(guest_name, sizeof(guest_name), "user/%s", name);
    int r = cpio_add_file(out, guest_name, 0644, data, len);
    free(data);
    return r < 0 ? err_set(err, errlen, "%s: cannot pack it (out of memory)", path) : 0;
}

static int check_names(const struct guest_files *g, char *err, size_t errlen)
{
    for (int i = 0; i < g->nfiles; i++) {
        const char *b = base_name(g->files[i]);
        if (!*b || strcmp(b, ".") == 0 || strcmp(b, "..") == 0 || strlen(b) > 255)
            return err_set(err, errlen, "--guest-file %s: expected a file name", g->files[i]);
        if (reserved(b))
            return err_set(err, errlen, "--guest-file %s: /user/%s is nvmevm's own (rename it)",
                           g->files[i], b);
        for (int j = 0; j < i; j++)
            if (strcmp(b, base_name(g->files[j])) == 0)
                return err_set(err, errlen, "--guest-file %s and %s: both would be /user/%s",
                               g->files[j], g->files[i], b);
    }
    for (int i = 0; i < g->nargs; i++)
        if (!*g->fio_args[i] || strchr(g->fio_args[i], '\n'))
            return err_set(err, errlen, "--fio-arg '%s': expected one non-empty line",
                           g->fio_args[i]);
    return 0;
}

int guest_files_pack(const struct guest_files *g, struct cpio *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (check_names(g, err, errlen) < 0)
        return -1;
    size_t budget = GUEST_FILES_TOTAL_MAX;
    char text[64];
    if (cpio_add_dir(out, "user", 0755) < 0)
        goto oom;
    if (g->fio_job && add_path(out, g->fio_job, "job.fio", &budget, err, errlen) < 0)
        goto fail;
    for (int i = 0; i < g->nfiles; i++)
        if (add_path(out, g->files[i], base_name(g->files[i]), &budget, err, errlen) < 0)
            goto fail;
    size_t args_len = 0;
    for (int i = 0; i < g->nargs; i++)
        args_len += strlen(g->fio_args[i]) + 1;
    char *args = malloc(args_len + 1);
    if (!args)
        goto oom;
    args[0] = '\0';
    for (int i = 0; i < g->nargs; i++)
        strcat(strcat(args, g->fio_args[i]), "\n");
    int r = cpio_add_file(out, "user/fio-args", 0644, args, args_len);
    free(args);
    int n = snprintf(text, sizeof(text), "%d\n", g->namespaces);
    if (r < 0 || cpio_add_file(out, "user/namespaces", 0644, text, (size_t)n) < 0 ||
        cpio_finish(out) < 0)
        goto oom;
    return 0;
oom:
    err_set(err, errlen, "packing the guest's files: out of memory");
fail:
    cpio_free(out);
    return -1;
}
