#include "app/fio_console.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

static void route(struct fio_console *fc, char *line, size_t len)
{
    while (len && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        len--;
    line[len] = '\0';
    /* The guest's tty turns \n into \r\n; a \r may also lead a line. */
    char *l = line;
    while (*l == '\r')
        l++;
    if (strstr(l, FIO_BEGIN_MARK)) {
        fc->in_fio = fc->saw_begin = true;
        return;
    }
    char *end = strstr(l, FIO_END_MARK);
    if (end) {
        fc->in_fio = false;
        fc->fio_status = atoi(end + strlen(FIO_END_MARK));
        return;
    }
    if (fc->in_fio) {
        fprintf(stdout, "%s\n", l);
        fflush(stdout);
        return;
    }
    if (fc->verbose)
        fprintf(stderr, "%s\n", l);
    snprintf(fc->tail[fc->ntail++ % 40], sizeof(fc->tail[0]), "%s", l);
}

void fio_console_feed(struct fio_console *fc, const char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (fc->len < sizeof(fc->line) - 1)
            fc->line[fc->len++] = buf[i];
        if (buf[i] == '\n' || fc->len == sizeof(fc->line) - 1) {
            route(fc, fc->line, fc->len);
            fc->len = 0;
        }
    }
}

void fio_console_flush(struct fio_console *fc)
{
    if (fc->len)
        route(fc, fc->line, fc->len);
    fc->len = 0;
}

void fio_console_dump_tail(const struct fio_console *fc)
{
    unsigned n = fc->ntail < 40 ? fc->ntail : 40;
    if (!n)
        return;
    fprintf(stderr, "nvmevm fio: the guest console's last %u lines:\n", n);
    for (unsigned i = fc->ntail - n; i < fc->ntail; i++)
        fprintf(stderr, "    %s\n", fc->tail[i % 40]);
}

static volatile sig_atomic_t child_pid, pending_signal;

static void forward(int sig)
{
    pending_signal = sig;
    if (child_pid > 0)
        kill((pid_t)child_pid, sig);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits for the child, reading its output when there is a pipe; -1 after a timeout. */
static int wait_child(pid_t pid, int fd, struct fio_console *fc, unsigned timeout_s)
{
    double deadline = timeout_s ? now_s() + timeout_s : 0, killed_at = 0;
    bool timed_out = false;
    for (;;) {
        if (deadline && !timed_out && now_s() > deadline) {
            timed_out = true;
            killed_at = now_s();
            kill(pid, SIGTERM);
        }
        if (timed_out && killed_at && now_s() > killed_at + 10) {
            kill(pid, SIGKILL);
            killed_at = 0;
        }
        if (fd >= 0) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            int r = poll(&p, 1, 500);
            if (r > 0) {
                char buf[4096];
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n > 0) {
                    fio_console_feed(fc, buf, (size_t)n);
                    continue;
                }
                if (n == 0 || errno != EINTR) {
                    close(fd);
                    fd = -1;
                }
            }
            continue;
        }
        int st;
        pid_t w = waitpid(pid, &st, timeout_s ? WNOHANG : 0);
        if (w == pid) {
            if (timed_out)
                return -1;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        if (w < 0 && errno != EINTR)
            die_errno("waitpid");
        if (w == 0)
            usleep(200 * 1000);
    }
}

int fio_console_run(const char *const *argv, bool raw, bool verbose, unsigned timeout_s)
{
    int pfd[2] = {-1, -1};
    if (!raw && pipe2(pfd, O_CLOEXEC) < 0)
        die_errno("pipe");
    struct sigaction sa = {.sa_handler = forward};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die_errno("fork");
    if (pid == 0) {
        if (!raw) {
            dup2(pfd[1], STDOUT_FILENO);
            dup2(pfd[1], STDERR_FILENO);
        }
        /* Without a terminal of its own the child must not read ours. */
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, STDIN_FILENO);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "nvmevm: %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    child_pid = pid;
    if (!raw)
        close(pfd[1]);
    struct fio_console *fc = calloc(1, sizeof(*fc));
    if (!fc)
        die("out of memory");
    fc->verbose = verbose;
    fc->fio_status = -1;
    int status = wait_child(pid, raw ? -1 : pfd[0], fc, timeout_s);
    fio_console_flush(fc);
    if (status < 0) {
        fprintf(stderr, "nvmevm fio: timed out after %u s; the guest was stopped\n", timeout_s);
        if (!raw && !verbose)
            fio_console_dump_tail(fc);
        free(fc);
        return 124;
    }
    if (!raw && status != 0 && !verbose)
        fio_console_dump_tail(fc);
    /* After a signal the child's status (128+signal) says what happened. */
    if (!raw && !pending_signal) {
        if (!fc->saw_begin) {
            fprintf(stderr, "nvmevm fio: the guest did not start fio (status %d)%s\n", status,
                    status ? "" : "; is the default guest image up to date?");
            if (status == 0)
                status = 1;
        } else if (fc->fio_status < 0 && status == 0) {
            fprintf(stderr, "nvmevm fio: fio's output ended without its end mark\n");
            status = 1;
        }
    }
    free(fc);
    return status;
}
