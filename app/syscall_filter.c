#include "app/syscall_filter.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "util/err.h"
#include "util/log.h"
#include "util/thread_role.h"

/* Every thread: memory, locks, time, stdio, and what exit() and die() need from any
 * thread (atexit restores the terminal with an ioctl and removes the control socket).
 * ioctl stays open to every thread: KVM is driven through it from each of them. */
static const char *const base_calls[] = {
    "read",       "write",        "readv",          "writev",          "close",
    "futex",      "rt_sigreturn", "rt_sigprocmask", "restart_syscall", "exit",
    "exit_group", "mmap",         "munmap",         "mremap",          "mprotect",
    "madvise",    "brk",          "clock_gettime",  "clock_nanosleep", "nanosleep",
    "gettid",     "getpid",       "sched_yield",    "getrandom",       "fstat",
    "newfstatat", "lseek",        "unlink",         "ioctl",           "poll",
    "ppoll",      NULL,
};

/* The NVMe I/O thread: io_uring, its epoll, and the synchronous fallbacks of block/. */
static const char *const io_calls[] = {
    "io_uring_enter", "io_uring_register",
    "epoll_wait",     "epoll_pwait",
    "epoll_ctl",      "fdatasync",
    "fsync",          "fallocate",
    "ftruncate",      "pread64",
    "pwrite64",       "preadv",
    "pwritev",        NULL,
};

/* The migration thread: the TCP connection (names resolved through NSS files), the disk
 * handover (sync, lock release and retake) and the I/O thread's calls, which a quiesce
 * may run here. */
static const char *const migration_calls[] = {
    "socket", "connect",  "bind",     "getsockname",   "getpeername", "setsockopt", "getsockopt",
    "sendto", "recvfrom", "sendmsg",  "recvmsg",       "sendmmsg",    "shutdown",   "openat",
    "fcntl",  "flock",    "uname",    "fstatfs",       "sysinfo",     "getuid",     "geteuid",
    "getgid", "getegid",  "eventfd2", "epoll_create1", "pipe2",       "dup",        NULL,
};

/* Starting a thread, which then installs its own filter on top of its creator's: main
 * starts the migration thread, and the migration thread restarts the NVMe I/O thread when
 * a failed migration resumes the guest after its switchover began. */
static const char *const thread_start_calls[] = {
    "clone", "clone3", "set_robust_list", "rseq", "sigaltstack", "sched_getaffinity", NULL,
};

/* The main thread: the control socket; the migration thread inherits this filter (so
 * everything it needs is here too). */
static const char *const main_calls[] = {
    "accept4", "listen", "unlinkat", "signalfd4", NULL,
};

static struct sock_fprog progs[THREAD_ROLE_COUNT];
static const char *const role_names[THREAD_ROLE_COUNT] = {"main", "vcpu", "io", "migration"};
static __thread int my_role = -1;
static int selftest_role = -1;
/* Names resolved up front: the SIGSYS handler must not allocate. */
#define MAX_NR 512
static char *call_names[MAX_NR];

bool syscall_filter_default_on(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
    __has_feature(memory_sanitizer)
    return false;
#else
    return true;
#endif
#else
    return true;
#endif
}

static size_t put(char *buf, size_t at, size_t cap, const char *s)
{
    while (*s && at + 1 < cap)
        buf[at++] = *s++;
    return at;
}

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)uc;
    char msg[200], num[12];
    int nr = si->si_syscall;
    int i = (int)sizeof(num) - 1;
    num[i] = '\0';
    unsigned u = nr < 0 ? 0u : (unsigned)nr;
    do
        num[--i] = (char)('0' + u % 10);
    while ((u /= 10) && i > 0);
    size_t n = put(msg, 0, sizeof(msg), "nvmevm: seccomp: the ");
    n = put(msg, n, sizeof(msg), my_role >= 0 ? role_names[my_role] : "unknown");
    n = put(msg, n, sizeof(msg), " thread made a forbidden system call: ");
    n = put(msg, n, sizeof(msg), nr >= 0 && nr < MAX_NR && call_names[nr] ? call_names[nr] : "?");
    n = put(msg, n, sizeof(msg), " (");
    n = put(msg, n, sizeof(msg), num + i);
    n = put(msg, n, sizeof(msg), "); stopping\n");
    if (write(STDERR_FILENO, msg, n) < 0) {
        /* nothing left to report with */
    }
    _exit(128 + SIGSYS);
}

static int add_calls(scmp_filter_ctx ctx, const char *const *names, char *err, size_t errlen)
{
    for (; *names; names++) {
        int nr = seccomp_syscall_resolve_name(*names);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not on this kernel's ABI: nobody can call it anyway */
        if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) < 0)
            return err_set(err, errlen, "seccomp: cannot allow %s", *names);
    }
    return 0;
}

static int build(enum thread_role role, char *err, size_t errlen)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
    if (!ctx)
        return err_set(err, errlen, "seccomp: cannot create a filter");
    int r = add_calls(ctx, base_calls, err, errlen);
    /* Signals only to our own threads (vCPU kicks, pthread_kill). */
    if (r == 0 && seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                                   SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid())) < 0)
        r = err_set(err, errlen, "seccomp: cannot allow tgkill");
    if (r == 0 && role != THREAD_ROLE_VCPU)
        r = add_calls(ctx, io_calls, err, errlen);
    if (r == 0 && (role == THREAD_ROLE_MIGRATION || role == THREAD_ROLE_MAIN))
        r = add_calls(ctx, migration_calls, err, errlen);
    if (r == 0 && role == THREAD_ROLE_MAIN)
        r = add_calls(ctx, main_calls, err, errlen);
    if (r == 0 && (role == THREAD_ROLE_MIGRATION || role == THREAD_ROLE_MAIN)) {
        r = add_calls(ctx, thread_start_calls, err, errlen);
        /* A started thread names itself and installs its own filter on top. */
        if (r == 0 && (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                                        SCMP_A0(SCMP_CMP_EQ, PR_SET_NO_NEW_PRIVS)) < 0 ||
                       seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                                        SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME)) < 0 ||
                       seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(seccomp), 1,
                                        SCMP_A0(SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER)) < 0))
            r = err_set(err, errlen, "seccomp: cannot allow prctl/seccomp");
    }
    /* Exported once here, so a thread installs it with two system calls and no library. */
    int pfd[2] = {-1, -1};
    if (r == 0 && pipe2(pfd, O_CLOEXEC) < 0)
        r = err_set(err, errlen, "seccomp: pipe: %s", strerror(errno));
    if (r == 0 && seccomp_export_bpf(ctx, pfd[1]) < 0)
        r = err_set(err, errlen, "seccomp: cannot export the %s filter", role_names[role]);
    seccomp_release(ctx);
    if (pfd[1] >= 0)
        close(pfd[1]);
    if (r == 0) {
        size_t cap = 65536, n = 0;
        char *buf = malloc(cap);
        ssize_t got;
        while (buf && n < cap && (got = read(pfd[0], buf + n, cap - n)) > 0)
            n += (size_t)got;
        if (!buf || n == 0 || n % sizeof(struct sock_filter) || n == cap) {
            free(buf);
            r = err_set(err, errlen, "seccomp: bad %s filter", role_names[role]);
        } else {
            progs[role].filter = (struct sock_filter *)buf;
            progs[role].len = (unsigned short)(n / sizeof(struct sock_filter));
        }
    }
    if (pfd[0] >= 0)
        close(pfd[0]);
    return r;
}

static void enter(enum thread_role role)
{
    my_role = (int)role;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &progs[role]) < 0)
        die_errno("seccomp: cannot install the %s thread's filter", role_names[role]);
    if (selftest_role == (int)role) {
        char *argv[] = {NULL};
        syscall(SYS_execve, "", argv, argv);
        warn_msg("seccomp self-test: the %s thread was allowed to call execve", role_names[role]);
    }
}

int syscall_filter_setup(char *err, size_t errlen)
{
    const char *st = getenv("NVMEVM_SECCOMP_SELFTEST");
    for (int i = 0; st && i < THREAD_ROLE_COUNT; i++)
        if (strcmp(st, role_names[i]) == 0)
            selftest_role = i;
    /* glibc reads /etc/localtime on the first time conversion of the process, even for
     * gmtime_r (the RTC's, in a vCPU thread): do it now, before any filter. */
    tzset();
    for (int nr = 0; nr < MAX_NR; nr++)
        call_names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
    for (int role = 0; role < THREAD_ROLE_COUNT; role++)
        if (build((enum thread_role)role, err, errlen) < 0)
            return -1;
    struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, NULL) < 0)
        return err_set(err, errlen, "seccomp: sigaction: %s", strerror(errno));
    thread_role_set_hook(enter);
    return 0;
}
