/* nvmevm: command line and the main thread's event loop. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "app/cache_cmd.h"
#include "app/cli.h"
#include "app/console.h"
#include "app/control.h"
#include "app/control_stats.h"
#include "app/data_dirs.h"
#include "app/fio_cmd.h"
#include "app/guest_files.h"
#include "app/migrate_client.h"
#include "app/syscall_filter.h"
#include "block/block.h"
#include "hw/uart.h"
#include "kvm/boot.h"
#include "kvm/nvme_pci.h"
#include "kvm/probe.h"
#include "kvm/vm.h"
#include "migrate/migrate.h"
#include "migrate/tcp.h"
#include "migrate/tls.h"
#include "util/log.h"
#include "util/size.h"
#include "util/thread_role.h"

#define DEFAULT_MEM  (512ULL << 20)
#define MAX_NAME_LEN 64
#define MIN_MEM      (4ULL << 20)
#define MAX_CPUS_OPT 64

static void usage_run(FILE *f)
{
    fprintf(f,
            "usage: nvmevm run [options] [disk.img ...]\n"
            "\n"
            "Boots a guest. With no --kernel it boots nvmevm's default Debian Linux guest\n"
            "(built by scripts/build.sh into <build>/guest/, or by nvmevm-build-guest when\n"
            "installed; man nvmevm says where it is looked for). Each disk becomes a\n"
            "namespace of one emulated NVMe controller: disk.img is /dev/nvme0n1 in the guest,\n"
            "the next /dev/nvme0n2, and so on.\n"
            "\n"
            "options:\n"
            "  --kernel PATH    Linux bzImage (boot protocol 2.12+, 64-bit) or a multiboot\n"
            "                   image (ELF32 or a.out kludge), e.g. the tiny test guest\n"
            "  --initrd PATH    initramfs for a Linux kernel\n"
            "  --append TEXT    kernel command line; nvmevm adds console=ttyS0, reboot=k and\n"
            "                   i8042.noaux/nomux/dumbkbd unless TEXT sets console=, reboot=\n"
            "                   or i8042. options itself (multiboot: passed unchanged)\n"
            "  --mem SIZE       guest RAM: MiB, or with a K/M/G suffix; decimals allowed\n"
            "                   (512, 1.5G; a multiple of 4K; default 512M)\n"
            "  --mem-shared     back guest RAM with a memfd (MAP_SHARED) instead of anonymous\n"
            "                   memory; it then gets huge pages only if the host enables\n"
            "                   shmem THP\n"
            "  --cpus N         number of vCPUs, 1..64 (default 1)\n"
            "  --name NAME      VM name for the control socket (default vm-PID; at most 64\n"
            "                   characters, no '/')\n"
            "  --control PATH   control socket path (default $XDG_RUNTIME_DIR/nvmevm/NAME.sock,\n"
            "                   /run/nvmevm/NAME.sock as root)\n"
            "  --no-stdin       do not read the console from stdin\n"
            "  --seccomp=on|off, --no-seccomp\n"
            "                   confine each thread to the system calls it needs (default on;\n"
            "                   off in sanitizer builds); a forbidden call stops nvmevm with\n"
            "                   one line and status 159\n"
            "  --disk PATH[,ro][,lba=512|4096][,deletable=on]\n"
            "                   add a namespace backed by a file or block device (same as a\n"
            "                   plain PATH argument); ro = read-only; lba = block size\n"
            "                   (default 512); deletable=on lets the guest delete it\n"
            "  --fio JOBFILE    run this fio job in the default guest on its NVMe disks (see\n"
            "                   nvmevm fio --help, which also keeps the output clean)\n"
            "  --fio-arg ARG    an fio option for --fio, e.g. --output-format=json (may repeat)\n"
            "  --guest-file FILE\n"
            "                   put FILE into the guest as /user/NAME (may repeat)\n"
            "  --cache MODE     none (default: O_DIRECT when a request is aligned) or writeback\n"
            "  --queues N       NVMe I/O queue pairs offered to the guest, 1..64 (default 8)\n"
            "  --poll-us N      the NVMe I/O thread spins N microseconds for new work before\n"
            "                   sleeping (default 0)\n"
            "  --stats=on|off   live NVMe I/O statistics for `nvmevm ctl stats` and\n"
            "                   `nvmevm top` (default on; off only to measure their cost)\n"
            "  --incoming URI   receive a live migration on tcp:HOST:PORT instead of booting\n"
            "                   (start with the same --mem, --cpus and disks as the source);\n"
            "                   tcp:PORT listens on 127.0.0.1, tcp:0.0.0.0:PORT everywhere\n"
            "  --tls-psk FILE   the migration over TLS with a pre-shared key (psktool's\n"
            "                   identity:hexkey lines); the source uses the same file\n"
            "  --tls-cert FILE --tls-key FILE --tls-ca FILE\n"
            "                   the migration over TLS with certificates: this side's, its key,\n"
            "                   and the CA the source's client certificate must be signed by\n"
            "  --migrate-timeout N\n"
            "                   refuse the migration when the source sends nothing for N s\n"
            "                   (default 30)\n"
            "  --incoming-timeout N\n"
            "                   give up (exit 1) when no migration arrived within N s; a\n"
            "                   refused connection does not end the wait (default: forever)\n"
            "  -h, --help       this text\n"
            "\n"
            "Console: the guest's ttyS0 is on stdin/stdout; Ctrl-A x quits, Ctrl-A Ctrl-A\n"
            "sends Ctrl-A.\n"
            "Exit status: the guest's, written to I/O port 0x502 (byte v -> status v) or 0x501\n"
            "(byte v -> status 2v+1, as QEMU's isa-debug-exit); 0 after a guest reset or\n"
            "reboot; 1 on bad input or an nvmevm or KVM error; 2 on a usage error (unknown\n"
            "option, missing value); 128+signal after SIGINT/SIGTERM/SIGHUP; 159 when a\n"
            "thread made a system call its seccomp filter forbids.\n");
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nvmevm COMMAND [options]\n"
            "\n"
            "commands:\n"
            "  run      boot a guest (nvmevm run --help)\n"
            "  fio      run your fio job in the default guest on NVMe disks (nvmevm fio --help)\n"
            "  ctl      talk to a running nvmevm: status, pause, resume, quit, stats, --watch\n"
            "  top      live NVMe I/O statistics of a running nvmevm (nvmevm top --help)\n"
            "  list     the running VMs: name, pid, state, control socket\n"
            "  migrate  live-migrate a running nvmevm (nvmevm migrate --help)\n"
            "  probe    tell whether this host's /dev/kvm can run a Linux kernel\n"
            "  cache    show or clean nvmevm's cache (nvmevm cache --help)\n"
            "  version  print the version\n"
            "\n"
            "Exit status: 0 on success, 1 on bad input or an error, 2 on a usage error;\n"
            "run and fio pass the guest's (or fio's) status through.\n");
}

#define MAX_DISKS NVME_MAX_NAMESPACES

struct disk_opt {
    const char *path;
    bool ro;
    uint32_t lba_shift;
    bool deletable;
};

struct run_opts {
    struct vm_config cfg;
    struct disk_opt disks[MAX_DISKS];
    int ndisks;
    enum blk_cache cache;
    unsigned queues;
    unsigned poll_us;
    const char *incoming;
    struct mig_tls_opts tls;
    unsigned mig_timeout;
    unsigned incoming_timeout;
    const char *name;
    const char *control;
    bool read_stdin;
    bool seccomp;
    struct guest_files gf;
    bool stats_off;
};

static int parse_cpus(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 1 || v > MAX_CPUS_OPT)
        die("--cpus %s: expected a number from 1 to %d", s, MAX_CPUS_OPT);
    return (int)v;
}

static unsigned parse_uint(const char *opt, const char *s, unsigned lo, unsigned hi)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || !*s || v < lo || v > hi)
        die("%s %s: expected a number from %u to %u", opt, s, lo, hi);
    return (unsigned)v;
}

static void tls_path(const char *opt, const char *arg, char *out, size_t len)
{
    if (!*arg || strlen(arg) >= len)
        die("%s %s: expected a path shorter than %zu bytes", opt, arg, len);
    memcpy(out, arg, strlen(arg) + 1);
}

/* PATH[,ro][,lba=512|4096][,deletable=on|off]: deletable lets the guest's Namespace
 * Management delete the namespace (the file stays). The path itself may not contain a comma. */
static void add_disk(struct run_opts *o, char *spec)
{
    if (o->ndisks == MAX_DISKS)
        die("%s: at most %d disks", spec, MAX_DISKS);
    struct disk_opt *d = &o->disks[o->ndisks++];
    d->lba_shift = 9;
    char *save = NULL;
    d->path = strtok_r(spec, ",", &save);
    if (!d->path || !*d->path)
        die("--disk: empty path");
    for (char *p; (p = strtok_r(NULL, ",", &save)) != NULL;) {
        if (strcmp(p, "ro") == 0)
            d->ro = true;
        else if (strcmp(p, "lba=512") == 0)
            d->lba_shift = 9;
        else if (strcmp(p, "lba=4096") == 0)
            d->lba_shift = 12;
        else if (strncmp(p, "lba=", 4) == 0)
            die("--disk %s: lba=%s: the block size must be 512 or 4096", d->path, p + 4);
        else if (strcmp(p, "deletable=on") == 0)
            d->deletable = true;
        else if (strcmp(p, "deletable=off") == 0)
            d->deletable = false;
        else
            die("--disk %s: unknown option '%s' (ro, lba=512, lba=4096, deletable=on|off)", d->path,
                p);
    }
}

static uint64_t parse_mem(const char *s)
{
    uint64_t v;
    if (parse_size_unit(s, 20, &v) < 0)
        die("--mem %s: expected a size like 512 (MiB), 512M, 1.5G or 2G", s);
    if (v < MIN_MEM)
        die("--mem %s: too small (at least 4M)", s);
    if (v & 4095)
        die("--mem %s: not a whole number of 4 KiB pages (try %lluK)", s,
            (unsigned long long)((v + 4095) >> 12) << 2);
    struct sysinfo si;
    if (sysinfo(&si) == 0) {
        uint64_t host = (uint64_t)si.totalram * si.mem_unit;
        if (v > host)
            die("--mem %s: more than this host's %llu MiB of RAM", s,
                (unsigned long long)(host >> 20));
    }
    return v;
}

/* The default guest: the first of the places app/data_dirs.h lists that has one. */
static void default_guest(struct vm_config *cfg)
{
    static char dir[PATH_MAX], kernel[PATH_MAX + 16], initrd[PATH_MAX + 16];
    struct data_roots roots;
    char err[4096];
    if (data_roots_get(&roots, err, sizeof(err)) < 0 ||
        guest_dir_find(&roots, dir, sizeof(dir), err, sizeof(err)) < 0)
        die("no --kernel given and %s", err);
    snprintf(kernel, sizeof(kernel), "%s/vmlinuz", dir);
    snprintf(initrd, sizeof(initrd), "%s/initrd.img", dir);
    cfg->kernel = kernel;
    if (!cfg->initrd)
        cfg->initrd = initrd;
}

/* --fio and --guest-file: the default guest runs the job unless --append picks a script. */
static void guest_files_setup(struct run_opts *o)
{
    static char append[4096];
    o->gf.namespaces = o->ndisks;
    if (o->gf.nargs && !o->gf.fio_job)
        die("--fio-arg applies to --fio JOBFILE");
    if (o->gf.fio_job && o->ndisks == 0)
        die("--fio %s: give the disks to run it on (nvmevm run --fio JOB disk.img ...)",
            o->gf.fio_job);
    if (!o->gf.fio_job)
        return;
    const char *user = o->cfg.append ? o->cfg.append : "quiet";
    if (strstr(user, "nvmevm.run="))
        return;
    if ((size_t)snprintf(append, sizeof(append), "%s nvmevm.run=fio-job", user) >= sizeof(append))
        die("--append: command line too long");
    o->cfg.append = append;
}

static void parse_run(int argc, char **argv, struct run_opts *o)
{
    static const struct option opts[] = {
        {"kernel", required_argument, NULL, 'k'},
        {"initrd", required_argument, NULL, 'i'},
        {"append", required_argument, NULL, 'a'},
        {"mem", required_argument, NULL, 'm'},
        {"cpus", required_argument, NULL, 'c'},
        {"name", required_argument, NULL, 'n'},
        {"control", required_argument, NULL, 'C'},
        {"no-stdin", no_argument, NULL, 'S'},
        {"mem-shared", no_argument, NULL, 'M'},
        {"disk", required_argument, NULL, 'D'},
        {"cache", required_argument, NULL, 'W'},
        {"queues", required_argument, NULL, 'Q'},
        {"poll-us", required_argument, NULL, 'P'},
        {"incoming", required_argument, NULL, 'I'},
        {"tls-psk", required_argument, NULL, 1},
        {"tls-cert", required_argument, NULL, 2},
        {"tls-key", required_argument, NULL, 3},
        {"tls-ca", required_argument, NULL, 4},
        {"migrate-timeout", required_argument, NULL, 5},
        {"fio", required_argument, NULL, 6},
        {"guest-file", required_argument, NULL, 7},
        {"fio-arg", required_argument, NULL, 8},
        {"incoming-timeout", required_argument, NULL, 10},
        {"seccomp", required_argument, NULL, 'X'},
        {"no-seccomp", no_argument, NULL, 'x'},
        {"stats", required_argument, NULL, 9},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    memset(o, 0, sizeof(*o));
    o->cfg.mem_size = DEFAULT_MEM;
    o->cfg.ncpus = 1;
    o->cfg.console_out_fd = STDOUT_FILENO;
    o->read_stdin = true;
    o->cache = BLK_CACHE_NONE;
    o->queues = 8;
    o->seccomp = syscall_filter_default_on();
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'k':
            o->cfg.kernel = optarg;
            break;
        case 'i':
            o->cfg.initrd = optarg;
            break;
        case 'a':
            o->cfg.append = optarg;
            break;
        case 'm':
            o->cfg.mem_size = parse_mem(optarg);
            break;
        case 'c':
            o->cfg.ncpus = parse_cpus(optarg);
            break;
        case 'n':
            if (!*optarg || strchr(optarg, '/') || strlen(optarg) > MAX_NAME_LEN)
                die("--name %s: expected 1 to %d characters without '/'", optarg, MAX_NAME_LEN);
            o->name = optarg;
            break;
        case 'C':
            o->control = optarg;
            break;
        case 'S':
            o->read_stdin = false;
            break;
        case 'M':
            o->cfg.mem_shared = true;
            break;
        case 'D':
            add_disk(o, optarg);
            break;
        case 'Q':
            o->queues = parse_uint("--queues", optarg, 1, NVME_MAX_IO_QUEUES);
            break;
        case 'I':
            o->incoming = optarg;
            break;
        case 'P':
            o->poll_us = parse_uint("--poll-us", optarg, 0, 10000000);
            break;
        case 1:
            tls_path("--tls-psk", optarg, o->tls.psk, sizeof(o->tls.psk));
            break;
        case 2:
            tls_path("--tls-cert", optarg, o->tls.cert, sizeof(o->tls.cert));
            break;
        case 3:
            tls_path("--tls-key", optarg, o->tls.key, sizeof(o->tls.key));
            break;
        case 4:
            tls_path("--tls-ca", optarg, o->tls.ca, sizeof(o->tls.ca));
            break;
        case 5:
            o->mig_timeout = parse_uint("--migrate-timeout", optarg, 1, 86400);
            break;
        case 6:
            o->gf.fio_job = optarg;
            break;
        case 7:
            if (o->gf.nfiles == GUEST_FILES_MAX)
                die("--guest-file %s: at most %d files", optarg, GUEST_FILES_MAX);
            o->gf.files[o->gf.nfiles++] = optarg;
            break;
        case 8:
            if (o->gf.nargs == GUEST_FIO_ARGS_MAX)
                die("--fio-arg %s: at most %d options", optarg, GUEST_FIO_ARGS_MAX);
            o->gf.fio_args[o->gf.nargs++] = optarg;
            break;
        case 10:
            o->incoming_timeout = parse_uint("--incoming-timeout", optarg, 1, 86400 * 365);
            break;
        case 'W':
            if (strcmp(optarg, "none") == 0)
                o->cache = BLK_CACHE_NONE;
            else if (strcmp(optarg, "writeback") == 0)
                o->cache = BLK_CACHE_WRITEBACK;
            else
                die("--cache %s: expected none or writeback", optarg);
            break;
        case 'X':
            if (strcmp(optarg, "on") && strcmp(optarg, "off"))
                die("--seccomp %s: expected on or off", optarg);
            o->seccomp = strcmp(optarg, "on") == 0;
            break;
        case 'x':
            o->seccomp = false;
            break;
        case 9:
            if (strcmp(optarg, "on") && strcmp(optarg, "off"))
                die("--stats %s: expected on or off", optarg);
            o->stats_off = strcmp(optarg, "off") == 0;
            break;
        case 'h':
            usage_run(stdout);
            exit(0);
        default:
            cli_bad_option("run", c, argv);
        }
    }
    while (optind < argc)
        add_disk(o, argv[optind++]);
    if (!o->incoming && (mig_tls_wanted(&o->tls) || o->mig_timeout || o->incoming_timeout))
        die("--tls-*, --migrate-timeout and --incoming-timeout apply to --incoming (the source "
            "takes the first two on nvmevm migrate)");
    if (!o->cfg.kernel && !o->incoming) /* a destination gets its guest from the source */
        default_guest(&o->cfg);
    guest_files_setup(o);
}

/* A Linux kernel on a host that emulates ring 0 would crawl and then fail: say so first. */
static void warn_if_linux_cannot_run(const struct vm *vm)
{
    char why[256];
    if (vm->boot == BOOT_LINUX64 && probe_linux_capable(why, sizeof(why)) == 0)
        warn_msg("warning: %s; run Linux guests inside the QEMU TCG sandbox (its run.sh -- "
                 "nvmevm run ..., see man nvmevm) or use nvmevm fio, which does so itself",
                 why);
}

static int signal_fd(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    /* Blocked before any thread starts, so only the signalfd sees them. */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0)
        die_errno("signalfd");
    return fd;
}

static void block_kick_signal(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* Reads what the host typed and hands it to the UART; false at EOF or Ctrl-A x. */
static bool pump_stdin(struct vm *vm, struct console_filter *cf)
{
    uint8_t in[256], out[256];
    size_t room = uart_input_space(vm->uart);
    if (room == 0)
        return true;
    ssize_t n = read(STDIN_FILENO, in, room < sizeof(in) ? room : sizeof(in));
    if (n < 0)
        return errno == EINTR || errno == EAGAIN;
    if (n == 0)
        return false;
    bool quit;
    size_t m = console_filter_input(cf, in, (size_t)n, out, &quit);
    uart_input(vm->uart, out, m);
    if (quit)
        vm_request_stop(vm, 0);
    return !quit;
}

/* After a successful migration the guest lives on elsewhere: stop once `nvmevm migrate`
 * has read the result (or 3 s later if nobody asks). */
static bool migration_done(struct vm *vm, struct control *ctl)
{
    static unsigned reads_at_completion;
    static double completed_at;
    if (migrate_state(ctl->mig) != MIG_COMPLETED)
        return false;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    if (completed_at == 0) {
        completed_at = now;
        reads_at_completion = ctl->status_reads;
        fprintf(stderr, "nvmevm: migrated; the guest now runs at the destination\n");
    }
    if (ctl->status_reads > reads_at_completion || now - completed_at > 3) {
        vm_request_stop(vm, 0);
        return true;
    }
    return false;
}

static int event_loop(struct vm *vm, struct control *ctl, bool read_stdin)
{
    int sfd = signal_fd();
    struct console_filter cf = {0};
    bool stdin_open = read_stdin;
    int status = -1;
    while (status < 0) {
        struct pollfd p[3 + CONTROL_MAX_POLLFDS] = {
            {.fd = vm->stop_efd, .events = POLLIN},
            {.fd = sfd, .events = POLLIN},
            {.fd = stdin_open && uart_input_space(vm->uart) ? STDIN_FILENO : -1, .events = POLLIN},
        };
        int nctl = control_pollfds(ctl, p + 3);
        if (migration_done(vm, ctl))
            break;
        /* While the UART's input queue is full, re-check every 10 ms for room; during a
         * migration, every 100 ms for its end. */
        int r = poll(p, (nfds_t)(3 + nctl), stdin_open ? 10 : ctl->mig ? 100 : -1);
        if (r < 0 && errno != EINTR)
            die_errno("poll");
        if (p[0].revents & POLLIN)
            break;
        if (p[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
                vm_request_stop(vm, 128 + (int)si.ssi_signo);
                break;
            }
        }
        if (r > 0)
            control_handle(ctl, vm, p + 3, nctl);
        if (p[2].revents & (POLLIN | POLLHUP))
            stdin_open = pump_stdin(vm, &cf);
    }
    /* A paused VM must be released so its vCPU threads can see the stop. */
    vm_resume(vm);
    close(sfd);
    return vm_join(vm);
}

/* The same file twice would be two namespaces writing one file behind each other's back (and
 * the second lock would fail with a misleading message): name the repeat instead. */
static void refuse_repeated_disks(const struct run_opts *o)
{
    struct stat st[MAX_DISKS];
    for (int i = 0; i < o->ndisks; i++) {
        if (stat(o->disks[i].path, &st[i]) < 0)
            die_errno("%s", o->disks[i].path);
        for (int j = 0; j < i; j++)
            if (st[i].st_dev == st[j].st_dev && st[i].st_ino == st[j].st_ino &&
                st[i].st_rdev == st[j].st_rdev)
                die("%s: given twice (as disk %d and disk %d); each disk needs its own file",
                    o->disks[i].path, j + 1, i + 1);
    }
}

/* Opens every disk before the guest starts, so a bad one is a one-line error up front. */
static void open_disks(const struct run_opts *o, struct nvme_pci_config *nc)
{
    memset(nc, 0, sizeof(*nc));
    nc->poll_us = o->poll_us;
    nc->ctrl.serial = "NVMEVM0001";
    nc->ctrl.model = "nvmevm NVMe controller";
    nc->ctrl.nr_io_queues = o->queues;
    nc->ctrl.mqes = 1023;
    nc->ctrl.mdts = 7;
    nc->ctrl.nr_ns = o->ndisks;
    nc->ctrl.stats_off = o->stats_off;
    for (int i = 0; i < o->ndisks; i++) {
        /* An incoming VM takes the locks only when the source hands the disks over. */
        struct blk_open_opts bo = {
            .read_only = o->disks[i].ro, .cache = o->cache, .lock = !o->incoming};
        char err[256];
        const char *path = o->disks[i].path;
        struct blk_dev *b = blk_open(path, &bo, err, sizeof(err));
        if (!b && !o->disks[i].ro && access(path, R_OK) == 0 && access(path, W_OK) < 0)
            die("%s (to give the guest a read-only disk, add ,ro: --disk %s,ro)", err, path);
        if (!b)
            die("%s", err);
        uint64_t lba = 1ULL << o->disks[i].lba_shift;
        if (b->size < lba)
            die("%s: too small for one %llu-byte block", path, (unsigned long long)lba);
        if (b->size % lba)
            warn_msg("warning: %s: the last %llu bytes are not a whole %llu-byte block; "
                     "the guest does not see them",
                     path, (unsigned long long)(b->size % lba), (unsigned long long)lba);
        nc->ctrl.ns[i] = (struct nvme_ns_config){
            .blk = b, .lba_shift = o->disks[i].lba_shift, .deletable = o->disks[i].deletable};
    }
}

static int cmd_run(int argc, char **argv)
{
    struct run_opts o;
    parse_run(argc, argv, &o);
    /* Every input the user gave is checked before /dev/kvm is opened, so a mistake is
     * reported as itself on any host, with or without KVM. */
    struct nvme_pci_config nc;
    refuse_repeated_disks(&o);
    open_disks(&o, &nc);
    struct cpio extra = {0};
    if (guest_files_wanted(&o.gf)) {
        char gerr[400];
        if (guest_files_pack(&o.gf, &extra, gerr, sizeof(gerr)) < 0)
            die("%s", gerr);
        o.cfg.initrd_extra = extra.buf;
        o.cfg.initrd_extra_len = extra.len;
    }
    struct boot_image img = {0};
    if (!o.incoming)
        boot_image_open(&img, &o.cfg);
    char name[64], path[108];
    if (!o.name) {
        snprintf(name, sizeof(name), "vm-%d", (int)getpid());
        o.name = name;
    }
    char err[300];
    if (o.control) {
        if (strlen(o.control) >= sizeof(path))
            die("--control %s: too long for a socket path (at most %zu bytes)", o.control,
                sizeof(path) - 1);
        snprintf(path, sizeof(path), "%s", o.control);
    } else if (control_default_path_err(o.name, path, sizeof(path), err, sizeof(err)) < 0) {
        die("control socket: %s", err);
    }
    struct control ctl;
    if (control_open(&ctl, path, err, sizeof(err)) < 0)
        die("%s", err);
    if (o.seccomp && syscall_filter_setup(err, sizeof(err)) < 0) {
        control_close(&ctl);
        die("%s", err);
    }
    int incoming_fd = -1;
    struct mig_tls *tls = NULL;
    if (o.incoming) {
        if (mig_tls_wanted(&o.tls) && !(tls = mig_tls_new(&o.tls, true, err, sizeof(err)))) {
            control_close(&ctl);
            die("--incoming: %s", err);
        }
        incoming_fd = tcp_listen_uri(o.incoming, tls != NULL, err, sizeof(err));
        if (incoming_fd < 0) {
            control_close(&ctl);
            die("--incoming %s", err);
        }
    }

    block_kick_signal();
    struct vm vm;
    vm_create(&vm, &o.cfg);
    if (o.ndisks)
        vm_add_nvme(&vm, &nc); /* the VM owns the disks from here on */
    if (o.incoming) {
        vm_prepare_incoming(&vm);
    } else {
        vm_load_kernel(&vm, &img);
        boot_image_close(&img);
        warn_if_linux_cannot_run(&vm);
    }
    fprintf(stderr, "nvmevm: control socket %s\n", path);
    if (o.incoming) {
        int sfd = signal_fd(), stopped = 0;
        struct mig_incoming *in = migrate_incoming_start(
            &vm, incoming_fd, o.incoming, tls, o.mig_timeout, o.incoming_timeout, err, sizeof(err));
        int r = in ? control_wait_incoming(&ctl, &vm, in, sfd, &stopped, err, sizeof(err)) : -1;
        close(sfd);
        mig_tls_free(tls);
        if (r == 0) { /* quit or a signal while waiting: no guest ran here */
            control_close(&ctl);
            vm_destroy(&vm);
            return stopped;
        }
        if (r < 0) {
            control_close(&ctl);
            die("incoming migration refused: %s", err);
        }
        fprintf(stderr, "nvmevm: migration received, the guest runs here\n");
    }
    if (o.read_stdin)
        console_raw_mode(STDIN_FILENO);
    vm_start(&vm);
    thread_role_enter(THREAD_ROLE_MAIN);
    int status = event_loop(&vm, &ctl, o.read_stdin);
    console_restore();
    control_close(&ctl);
    vm_destroy(&vm);
    cpio_free(&extra);
    return status;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "probe") == 0)
        return probe_main(argc - 1, argv + 1);
    if (strcmp(cmd, "fio") == 0)
        return fio_main(argc - 1, argv + 1);
    if (strcmp(cmd, "ctl") == 0)
        return control_client_main(argc - 1, argv + 1);
    if (strcmp(cmd, "migrate") == 0)
        return migrate_client_main(argc - 1, argv + 1);
    if (strcmp(cmd, "list") == 0)
        return control_list_main(argc - 1, argv + 1);
    if (strcmp(cmd, "cache") == 0)
        return cache_main(argc - 1, argv + 1);
    if (strcmp(cmd, "top") == 0)
        return top_main(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("nvmevm 0.1.0\n");
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "nvmevm: unknown command '%s' (see nvmevm --help)\n", cmd);
    return 2;
}
