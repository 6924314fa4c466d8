/*
 * `nvmevm fio JOBFILE [disk ...]`: the user's own fio job in the default Linux guest.
 *
 * It runs `nvmevm run --fio JOBFILE ...` as a child (inside the QEMU TCG sandbox when this
 * host's /dev/kvm cannot run Linux) and reads the child's console: the guest frames fio's
 * output with two marker lines (guest-images/linux/scripts/fio-job.sh), and exactly that goes
 * to stdout, so `--output-format=json` output can be piped into a JSON reader. The rest of
 * the console goes to stderr with --verbose, and its last lines when something fails. The
 * exit status is fio's.
 */
#include "app/fio_cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "app/cli.h"
#include "app/data_dirs.h"
#include "app/fio_console.h"
#include "kvm/probe.h"
#include "util/log.h"
#include "util/size.h"

#define MAX_ARGS 256

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nvmevm fio [options] JOBFILE [disk.img ...]\n"
            "\n"
            "Runs the fio job JOBFILE in nvmevm's default Linux guest on its NVMe namespaces:\n"
            "disk.img is /dev/nvme0n1, the next /dev/nvme0n2, and so on. A job that names no\n"
            "filename= gets all of them (filename=/dev/nvme0n1:/dev/nvme0n2...; the list is\n"
            "also in $NVME_DISKS). fio runs in /user, beside the job and any --guest-file.\n"
            "With no disk, a temporary sparse one of --size is used and removed afterwards.\n"
            "Only fio's output goes to stdout. On a host whose /dev/kvm cannot run Linux, the\n"
            "guest runs inside the QEMU TCG sandbox (tests/sandbox/run.sh), and this says so.\n"
            "\n"
            "options:\n"
            "  --output-format=FMT  fio's output format: normal, terse, json or json+\n"
            "  --fio-arg ARG        another fio option, e.g. --fio-arg=--minimal (may repeat)\n"
            "  --guest-file FILE    put FILE beside the job as /user/NAME (may repeat)\n"
            "  --disk PATH[,opts]   a disk, with nvmevm run's options (,ro ,lba=4096 ...)\n"
            "  --size SIZE          size of the temporary disk (default 1G; MiB without suffix)\n"
            "  --mem SIZE           guest RAM (default 512M)\n"
            "  --cpus N             guest vCPUs (default 1)\n"
            "  --queues N           NVMe I/O queue pairs (default 8)\n"
            "  --cache MODE         none or writeback (see nvmevm run --help)\n"
            "  --sandbox=WHEN       auto (default), always or never\n"
            "  --timeout S          stop the guest after S seconds (exit 124)\n"
            "  -v, --verbose        the guest's console on stderr as it boots and runs\n"
            "  -h, --help           this text\n"
            "\n"
            "Exit status: fio's; 1 on bad input or an nvmevm error; 2 on a usage error;\n"
            "124 after --timeout.\n");
}

struct fio_opts {
    const char *job;
    const char *disks[32];
    int ndisks;
    const char *files[32];
    int nfiles;
    const char *fio_args[32];
    int nargs;
    const char *mem, *cpus, *queues, *cache, *size;
    enum { SANDBOX_AUTO, SANDBOX_ALWAYS, SANDBOX_NEVER } sandbox;
    unsigned timeout;
    bool verbose, raw;
};

static void add(const char **list, int *n, int max, const char *what, const char *v)
{
    if (*n == max)
        die("%s %s: at most %d", what, v, max);
    list[(*n)++] = v;
}

static void need_file(const char *what, const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        die_errno("%s %s", what, path);
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        die("%s %s: not a file", what, path);
    if (access(path, R_OK) < 0)
        die_errno("%s %s", what, path);
}

/* Checks every value the child would check too, so a mistake is one line before any boot. */
static void validate(const struct fio_opts *o)
{
    uint64_t v;
    if (o->size && (parse_size_unit(o->size, 20, &v) < 0 || v < (1u << 20)))
        die("--size %s: expected a size of at least 1M, like 1G or 512 (MiB)", o->size);
    if (o->mem && parse_size_unit(o->mem, 20, &v) < 0)
        die("--mem %s: expected a size like 512 (MiB), 512M or 1.5G", o->mem);
    need_file("job", o->job);
    for (int i = 0; i < o->nfiles; i++)
        need_file("--guest-file", o->files[i]);
    for (int i = 0; i < o->ndisks; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%.*s", (int)strcspn(o->disks[i], ","), o->disks[i]);
        need_file("disk", path);
    }
    for (int i = 0; i < o->nargs; i++)
        if (strncmp(o->fio_args[i], "--", 2) != 0)
            die("--fio-arg %s: expected an fio option starting with --", o->fio_args[i]);
}

static void parse(int argc, char **argv, struct fio_opts *o)
{
    static const struct option opts[] = {
        {"output-format", required_argument, NULL, 'O'},
        {"fio-arg", required_argument, NULL, 'F'},
        {"guest-file", required_argument, NULL, 'g'},
        {"disk", required_argument, NULL, 'd'},
        {"size", required_argument, NULL, 's'},
        {"mem", required_argument, NULL, 'm'},
        {"cpus", required_argument, NULL, 'c'},
        {"queues", required_argument, NULL, 'q'},
        {"cache", required_argument, NULL, 'W'},
        {"sandbox", required_argument, NULL, 'S'},
        {"timeout", required_argument, NULL, 't'},
        {"verbose", no_argument, NULL, 'v'},
        {"raw", no_argument, NULL, 'R'}, /* the sandbox's inner run: no filtering */
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    static char fmt_arg[64];
    memset(o, 0, sizeof(*o));
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":vh", opts, NULL)) != -1) {
        switch (c) {
        case 'O':
            if (strcmp(optarg, "normal") && strcmp(optarg, "terse") && strcmp(optarg, "json") &&
                strcmp(optarg, "json+"))
                die("--output-format %s: expected normal, terse, json or json+", optarg);
            snprintf(fmt_arg, sizeof(fmt_arg), "--output-format=%s", optarg);
            add(o->fio_args, &o->nargs, 32, "--fio-arg", fmt_arg);
            break;
        case 'F':
            add(o->fio_args, &o->nargs, 32, "--fio-arg", optarg);
            break;
        case 'g':
            add(o->files, &o->nfiles, 32, "--guest-file", optarg);
            break;
        case 'd':
            add(o->disks, &o->ndisks, 32, "--disk", optarg);
            break;
        case 's':
            o->size = optarg;
            break;
        case 'm':
            o->mem = optarg;
            break;
        case 'c':
            o->cpus = optarg;
            break;
        case 'q':
            o->queues = optarg;
            break;
        case 'W':
            o->cache = optarg;
            break;
        case 'S':
            if (strcmp(optarg, "auto") == 0)
                o->sandbox = SANDBOX_AUTO;
            else if (strcmp(optarg, "always") == 0)
                o->sandbox = SANDBOX_ALWAYS;
            else if (strcmp(optarg, "never") == 0)
                o->sandbox = SANDBOX_NEVER;
            else
                die("--sandbox %s: expected auto, always or never", optarg);
            break;
        case 't': {
            char *end;
            errno = 0;
            unsigned long t = strtoul(optarg, &end, 10);
            if (errno || *end || !*optarg || t < 1 || t > 604800)
                die("--timeout %s: expected seconds from 1 to 604800", optarg);
            o->timeout = (unsigned)t;
            break;
        }
        case 'v':
            o->verbose = true;
            break;
        case 'R':
            o->raw = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            cli_bad_option("fio", c, argv);
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "nvmevm fio: no JOBFILE given (see nvmevm fio --help)\n");
        exit(2);
    }
    o->job = argv[optind++];
    while (optind < argc)
        add(o->disks, &o->ndisks, 32, "disk", argv[optind++]);
    validate(o);
}

static const char *self_exe(void)
{
    static char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n < 0)
        die_errno("/proc/self/exe");
    exe[n] = '\0';
    return exe;
}

struct argv_buf {
    const char *v[MAX_ARGS];
    int n;
};

static void arg(struct argv_buf *a, const char *s)
{
    if (a->n >= MAX_ARGS - 1)
        die("too many arguments");
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
}

static void arg2(struct argv_buf *a, const char *opt, const char *val)
{
    if (val) {
        arg(a, opt);
        arg(a, val);
    }
}

/* The options both ways of running share, in `nvmevm run` / `nvmevm fio` spelling. */
static void common_args(struct argv_buf *a, const struct fio_opts *o)
{
    arg2(a, "--mem", o->mem);
    arg2(a, "--cpus", o->cpus);
    arg2(a, "--queues", o->queues);
    arg2(a, "--cache", o->cache);
}

/* The sandbox's run.sh, found as app/data_dirs.h says. */
static const char *sandbox_script(void)
{
    static char path[PATH_MAX + 16];
    char dir[PATH_MAX], err[1024];
    struct data_roots r;
    if (data_roots_get(&r, err, sizeof(err)) < 0 ||
        sandbox_dir_find(&r, dir, sizeof(dir), err, sizeof(err)) < 0)
        die("the QEMU TCG sandbox is needed here: %s", err);
    snprintf(path, sizeof(path), "%s/run.sh", dir);
    return path;
}

/* A temporary disk when the user gave none; removed by run_and_filter's caller. */
static char *temp_disk(const struct fio_opts *o)
{
    uint64_t size = 1ULL << 30;
    if (o->size)
        parse_size_unit(o->size, 20, &size);
    const char *dir = getenv("TMPDIR");
    static char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/nvmevm-fio-XXXXXX.img", dir && *dir ? dir : "/var/tmp");
    int fd = mkstemps(path, 4);
    if (fd < 0)
        die_errno("temporary disk %s", path);
    if (ftruncate(fd, (off_t)size) < 0) {
        unlink(path);
        die_errno("temporary disk %s", path);
    }
    close(fd);
    return path;
}

/* The child `nvmevm run` in this host's KVM. */
static void direct_args(struct argv_buf *a, const struct fio_opts *o, const char *tmp_disk)
{
    arg(a, self_exe());
    arg(a, "run");
    arg(a, "--no-stdin");
    common_args(a, o);
    arg2(a, "--fio", o->job);
    for (int i = 0; i < o->nfiles; i++)
        arg2(a, "--guest-file", o->files[i]);
    for (int i = 0; i < o->nargs; i++)
        arg2(a, "--fio-arg", o->fio_args[i]);
    for (int i = 0; i < o->ndisks; i++)
        arg2(a, "--disk", o->disks[i]);
    if (tmp_disk)
        arg(a, tmp_disk);
}

/* PATH,opt,opt...: does an option say ro? */
static bool disk_is_ro(const char *spec)
{
    for (const char *p = strchr(spec, ','); p; p = strchr(p + 1, ','))
        if (strncmp(p + 1, "ro", 2) == 0 && (p[3] == ',' || p[3] == '\0'))
            return true;
    return false;
}

/* The sandbox sees the host's files read-only and its /tmp not at all: the disks go in as
 * virtio disks (/dev/vda, ...) and the job and guest files as copies in its control share. */
static void sandbox_args(struct argv_buf *a, const struct fio_opts *o)
{
    static char strs[4 * 32 + 8][PATH_MAX + 32];
    int s = 0;
    uint64_t mem = 512ULL << 20, disk = 0;
    if (o->mem)
        parse_size_unit(o->mem, 20, &mem);
    if (!o->ndisks) {
        disk = 1ULL << 30;
        if (o->size)
            parse_size_unit(o->size, 20, &disk);
    }
    snprintf(strs[s], sizeof(strs[s]), "%lluM", (unsigned long long)((mem + disk) >> 20) + 2048);
    arg(a, sandbox_script());
    arg2(a, "--cpus", "1"); /* two soft-locked up under nested guests (sandbox README) */
    arg2(a, "--mem", strs[s++]);
    snprintf(strs[s], sizeof(strs[s]), "%u", o->timeout ? o->timeout + 120 : 604800);
    arg2(a, "--timeout", strs[s++]);
    for (int i = 0; i < o->ndisks; i++) {
        snprintf(strs[s], sizeof(strs[s]), "%.*s", (int)strcspn(o->disks[i], ","), o->disks[i]);
        arg2(a, disk_is_ro(o->disks[i]) ? "--disk-ro" : "--disk", strs[s++]);
    }
    arg2(a, "--copy", o->job);
    for (int i = 0; i < o->nfiles; i++)
        arg2(a, "--copy", o->files[i]);
    arg(a, "--");
    arg(a, self_exe());
    arg(a, "fio");
    arg(a, "--raw");
    arg(a, "--sandbox=never");
    common_args(a, o);
    arg2(a, "--size", o->size);
    if (o->timeout) {
        snprintf(strs[s], sizeof(strs[s]), "%u", o->timeout);
        arg2(a, "--timeout", strs[s++]);
    }
    for (int i = 0; i < o->nargs; i++)
        arg2(a, "--fio-arg", o->fio_args[i]);
    int copy = 0;
    const char *base = strrchr(o->job, '/');
    snprintf(strs[s], sizeof(strs[s]), "/run/sandbox/files/%d/%s", copy++,
             base ? base + 1 : o->job);
    const char *job = strs[s++];
    for (int i = 0; i < o->nfiles; i++) {
        base = strrchr(o->files[i], '/');
        snprintf(strs[s], sizeof(strs[s]), "/run/sandbox/files/%d/%s", copy++,
                 base ? base + 1 : o->files[i]);
        arg2(a, "--guest-file", strs[s++]);
    }
    for (int i = 0; i < o->ndisks; i++) {
        const char *opts = o->disks[i] + strcspn(o->disks[i], ",");
        snprintf(strs[s], sizeof(strs[s]), "/dev/vd%c%s", 'a' + i, opts);
        arg2(a, "--disk", strs[s++]);
    }
    arg(a, job);
}

int fio_main(int argc, char **argv)
{
    struct fio_opts o;
    parse(argc, argv, &o);
    bool sandbox = false;
    if (o.sandbox != SANDBOX_NEVER) {
        char why[256];
        int r = o.sandbox == SANDBOX_ALWAYS ? 0 : probe_linux_capable(why, sizeof(why));
        sandbox = r <= 0;
        if (sandbox && o.sandbox == SANDBOX_AUTO)
            fprintf(stderr, "nvmevm fio: running the guest inside the QEMU TCG sandbox (%s)\n",
                    why);
        else if (sandbox)
            fprintf(stderr, "nvmevm fio: running the guest inside the QEMU TCG sandbox "
                            "(--sandbox=always)\n");
    }
    if (o.ndisks > 26 && sandbox)
        die("at most 26 disks inside the sandbox");
    struct argv_buf a = {.n = 0};
    char *tmp = NULL;
    if (sandbox) {
        /* A build tree's sandbox takes its kernel from this build's guest image (an
         * installed one uses the user cache; run.sh decides). */
        char dir[PATH_MAX + 16];
        snprintf(dir, sizeof(dir), "%s", self_exe());
        *strrchr(dir, '/') = '\0';
        size_t n = strlen(dir);
        snprintf(dir + n, sizeof(dir) - n, "/build.ninja");
        bool build_tree = access(dir, F_OK) == 0;
        dir[n] = '\0';
        if (!getenv("NVMEVM_BUILD") && build_tree)
            setenv("NVMEVM_BUILD", dir, 1);
        sandbox_args(&a, &o);
    } else {
        if (!o.ndisks) {
            tmp = temp_disk(&o);
            fprintf(stderr, "nvmevm fio: no disk given: a temporary %s disk %s\n",
                    o.size ? o.size : "1G", tmp);
        }
        direct_args(&a, &o, tmp);
    }
    int status = fio_console_run(a.v, o.raw, o.verbose, o.timeout);
    if (tmp)
        unlink(tmp);
    return status;
}
