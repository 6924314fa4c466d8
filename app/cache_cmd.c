/* nvmevm cache: list and clean nvmevm's user cache (see cache_cmd.h). */
#include "app/cache_cmd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvm/vmlinux.h"

struct cache_entry {
    char name[NAME_MAX + 1];
    const char *what;
    uint64_t bytes;
};

struct cache_listing {
    struct cache_entry *e;
    int n, cap;
    int others; /* entries that are not nvmevm's: never touched */
};

static bool has_file(const char *dir, const char *name, const char *file)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s/%s", dir, name, file);
    return access(path, F_OK) == 0;
}

/* What an entry of the cache directory is, or NULL when it is not nvmevm's. A directory
 * counts only with a file its builder writes, so a cache directory pointed at a folder of
 * the user's (NVMEVM_CACHE_DIR=$HOME) never loses an unrelated "guest" folder. */
static const char *entry_kind(const char *dir, const char *name)
{
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (lstat(path, &st) < 0)
        return NULL;
    if (S_ISREG(st.st_mode) && strncmp(name, "vmlinux-", 8) == 0)
        return "decompressed kernel (nvmevm run)";
    if (!S_ISDIR(st.st_mode))
        return NULL;
    if (strcmp(name, "guest") == 0 &&
        (has_file(dir, name, ".stamp") || has_file(dir, name, ".lock") ||
         has_file(dir, name, "kernel-package")))
        return "default Linux guest (nvmevm-build-guest)";
    if (strcmp(name, "sandbox") == 0 &&
        (has_file(dir, name, "sandbox.cpio") || has_file(dir, name, ".stamp")))
        return "sandbox initramfs and kernel (share/nvmevm/sandbox/run.sh)";
    return NULL;
}

static uint64_t walk_bytes;

static int add_size(const char *path, const struct stat *st, int type, struct FTW *f)
{
    walk_bytes += (uint64_t)st->st_blocks * 512;
    return 0;
}

/* Disk space used by path and everything under it; symlinks are not followed. */
static uint64_t disk_usage(const char *path)
{
    walk_bytes = 0;
    nftw(path, add_size, 16, FTW_PHYS);
    return walk_bytes;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct cache_entry *)a)->name, ((const struct cache_entry *)b)->name);
}

/* Lists dir's entries. Returns 0 (an absent directory is an empty cache) or -1 with errno. */
static int list_cache(const char *dir, struct cache_listing *l)
{
    memset(l, 0, sizeof(*l));
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        const char *what = entry_kind(dir, de->d_name);
        if (!what) {
            l->others++;
            continue;
        }
        if (l->n == l->cap) {
            int cap = l->cap ? 2 * l->cap : 16;
            struct cache_entry *e = realloc(l->e, (size_t)cap * sizeof(*e));
            if (!e) {
                closedir(d);
                errno = ENOMEM;
                return -1;
            }
            l->e = e;
            l->cap = cap;
        }
        struct cache_entry *e = &l->e[l->n++];
        snprintf(e->name, sizeof(e->name), "%s", de->d_name);
        e->what = what;
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        e->bytes = disk_usage(path);
    }
    closedir(d);
    if (l->n)
        qsort(l->e, (size_t)l->n, sizeof(*l->e), by_name);
    return 0;
}

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *f)
{
    if (remove(path) < 0 && errno != ENOENT) {
        fprintf(stderr, "nvmevm: cache clean: %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

/* A builder (guest-images/linux/build.sh, the sandbox's run.sh) holds DIR/.lock while it
 * writes: removing the directory under it would leave a broken image. Returns the locked
 * descriptor (-1 when there is no lock file), or -2 when a builder holds it. */
static int lock_builder(const char *path)
{
    char lock[PATH_MAX + 8];
    snprintf(lock, sizeof(lock), "%s/.lock", path);
    int fd = open(lock, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        close(fd);
        return -2;
    }
    return fd;
}

static int show(const char *dir, const struct cache_listing *l)
{
    uint64_t total = 0;
    printf("nvmevm cache: %s\n", dir);
    for (int i = 0; i < l->n; i++) {
        const struct cache_entry *e = &l->e[i];
        bool is_dir = strcmp(e->name, "guest") == 0 || strcmp(e->name, "sandbox") == 0;
        printf("  %9.1f MiB  %s%s  %s\n", mib(e->bytes), e->name, is_dir ? "/" : "", e->what);
        total += e->bytes;
    }
    if (l->n == 0)
        printf("  empty\n");
    else
        printf("  %9.1f MiB  total (nvmevm cache clean removes it)\n", mib(total));
    if (l->others)
        printf("  (%d other entr%s, not nvmevm's: left alone)\n", l->others,
               l->others == 1 ? "y" : "ies");
    return 0;
}

static int clean(const char *dir, const struct cache_listing *l, bool dry_run)
{
    uint64_t freed = 0;
    int status = 0;
    for (int i = 0; i < l->n; i++) {
        const struct cache_entry *e = &l->e[i];
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", dir, e->name);
        int lock = lock_builder(path);
        if (lock == -2) {
            printf("skipped    %9.1f MiB  %s (a build holds %s/.lock)\n", mib(e->bytes), path,
                   path);
            continue;
        }
        if (!dry_run && nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
            status = 1;
        else {
            printf("%s %9.1f MiB  %s\n", dry_run ? "would remove" : "removed   ", mib(e->bytes),
                   path);
            freed += e->bytes;
        }
        if (lock >= 0)
            close(lock);
    }
    if (l->n == 0)
        printf("nvmevm cache: %s is empty\n", dir);
    else
        printf("%s %.1f MiB\n", dry_run ? "would free" : "freed", mib(freed));
    return status;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: nvmevm cache [list]            show nvmevm's user cache and its sizes\n"
               "       nvmevm cache clean [--dry-run]  remove it (--dry-run: only say what)\n"
               "\n"
               "The cache is $NVMEVM_CACHE_DIR, else $XDG_CACHE_HOME/nvmevm, else\n"
               "~/.cache/nvmevm. It holds decompressed kernels (vmlinux-*, one per bzImage\n"
               "booted, written by nvmevm run), guest/ (nvmevm-build-guest's default) and\n"
               "sandbox/ (the installed sandbox's initramfs). Everything in it is rebuilt on\n"
               "demand; other files there are left alone.\n");
}

int cache_main(int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : "list";
    bool dry_run = false;
    if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0 || strcmp(sub, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(sub, "clean") == 0 && argc == 3 &&
        (strcmp(argv[2], "--dry-run") == 0 || strcmp(argv[2], "-n") == 0))
        dry_run = true;
    else if (!((strcmp(sub, "list") == 0 || strcmp(sub, "clean") == 0) && argc <= 2)) {
        fprintf(stderr,
                "nvmevm: cache %s: expected 'nvmevm cache [list]' or 'nvmevm cache "
                "clean [--dry-run]'\n",
                sub);
        return 2;
    }
    const char *dir = vmlinux_cache_dir();
    if (!dir) {
        printf("nvmevm cache: none (NVMEVM_CACHE_DIR, XDG_CACHE_HOME and HOME are unset)\n");
        return 0;
    }
    struct cache_listing l;
    if (list_cache(dir, &l) < 0) {
        fprintf(stderr, "nvmevm: cache: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    int status = strcmp(sub, "clean") == 0 ? clean(dir, &l, dry_run) : show(dir, &l);
    free(l.e);
    return status;
}
