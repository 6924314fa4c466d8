/* Destination side of live migration: receive, validate, load, take the disks, run. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "block/block.h"
#include "kvm/vm.h"
#include "migrate/conn.h"
#include "migrate/event.h"
#include "migrate/migrate.h"
#include "migrate/proto.h"
#include "migrate/ram.h"
#include "migrate/stream.h"
#include "migrate/tls.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"

#define MAX_SECTIONS (VM_MAX_DEVICES + 1 + VM_MAX_CPUS)

/* Which of the VM's sections arrived: each exactly once, all before the guest may run. */
struct section_set {
    uint32_t ids[MAX_SECTIONS];
    const char *names[MAX_SECTIONS];
    bool seen[MAX_SECTIONS];
    int n;
    bool ram;
};

static int section_arrived(struct section_set *set, uint32_t id, char *err, size_t errlen)
{
    if (id == MIG_SEC_CONFIG)
        return err_set(err, errlen, "the configuration section comes twice in the stream");
    if (id == MIG_SEC_RAM) {
        set->ram = true; /* RAM comes in many batches */
        return 0;
    }
    for (int i = 0; i < set->n; i++) {
        if (set->ids[i] != id)
            continue;
        if (set->seen[i])
            return err_set(err, errlen, "section 0x%x (%s) comes twice in the stream", id,
                           set->names[i]);
        set->seen[i] = true;
    }
    return 0; /* an unknown id is vm_load_section's to refuse */
}

static int sections_complete(const struct section_set *set, char *err, size_t errlen)
{
    if (!set->ram)
        return err_set(err, errlen, "the stream ended without any RAM section");
    for (int i = 0; i < set->n; i++)
        if (!set->seen[i])
            return err_set(err, errlen, "the stream ended without section 0x%x (%s)", set->ids[i],
                           set->names[i]);
    return 0;
}

/* Reads sections until END, applying each; -1 with a reason. */
static int receive_all(struct vm *vm, struct mig_stream *s, char *err, size_t errlen)
{
    struct section_set set = {0};
    set.n = vm_sections(vm, set.ids, set.names, MAX_SECTIONS);
    for (;;) {
        uint32_t id;
        uint16_t ver;
        uint8_t *p = NULL;
        size_t len = 0;
        if (mig_read_section(s, &id, &ver, &p, &len, err, errlen) < 0)
            return -1;
        int r = 0;
        if (id == MIG_SEC_END) {
            free(p);
            return sections_complete(&set, err, errlen);
        }
        if (section_arrived(&set, id, err, errlen) < 0)
            r = -1;
        else if (id == MIG_SEC_RAM && ver != RAM_SECTION_VERSION)
            r = err_set(err, errlen, "RAM section version %u, this nvmevm reads %u", ver,
                        RAM_SECTION_VERSION);
        else if (id == MIG_SEC_RAM)
            r = ram_receive(vm, p, len, err, errlen);
        else
            r = vm_load_section(vm, id, ver, p, len, err, errlen);
        free(p);
        if (r < 0)
            return -1;
    }
}

/* Tells the source why this side refuses the stream. */
static int send_err(struct mig_conn *c, const char *why)
{
    char line[280];
    snprintf(line, sizeof(line), "ERR %s", why);
    proto_write_line(c, line);
    return -1;
}

static void peer_name(int fd, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
            port = ntohs(a->sin6_port);
        }
    }
    snprintf(buf, len, "%s port %u", host, port);
}

static int receive(struct vm *vm, struct mig_conn *c, bool *touched, char *err, size_t errlen);

struct mig_incoming {
    struct vm *vm;
    int lfd;
    char uri[256];
    struct mig_tls *tls;
    unsigned io_timeout_s, wait_timeout_s;
    int done_efd, cancel_efd;
    pthread_t thread;
    pthread_mutex_t lock;
    int conn_fd; /* the connection being received, -1: none (under lock) */
    atomic_bool receiving, cancelled;
    int result;
    char err[300];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits for a connection until the deadline (0: none) or a cancel; 1 with fd, 0 when
 * nothing (spurious wake), -1 with a reason. */
static int wait_connection(struct mig_incoming *in, double deadline, int *fd, char *err,
                           size_t errlen)
{
    struct pollfd p[2] = {{.fd = in->lfd, .events = POLLIN},
                          {.fd = in->cancel_efd, .events = POLLIN}};
    int ms = -1;
    if (deadline > 0) {
        double left = deadline - now_s();
        ms = left <= 0 ? 0 : (int)(left * 1000) + 1;
    }
    int r = poll(p, 2, ms);
    if (r < 0)
        return errno == EINTR ? 0 : err_set(err, errlen, "poll: %s", strerror(errno));
    if (p[1].revents || atomic_load(&in->cancelled))
        return err_set(err, errlen, "cancelled while waiting for the source");
    if (r == 0)
        return err_set(err, errlen, "no migration arrived within %u s (--incoming-timeout)",
                       in->wait_timeout_s);
    *fd = accept4(in->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (*fd >= 0)
        return 1;
    if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
    return err_set(err, errlen, "accept: %s", strerror(errno));
}

static void set_conn_fd(struct mig_incoming *in, int fd)
{
    pthread_mutex_lock(&in->lock);
    in->conn_fd = fd;
    pthread_mutex_unlock(&in->lock);
}

/*
 * Connections until one carries a whole migration. A connection refused before anything
 * was loaded (a stranger, garbage, a failed TLS handshake, another VM's configuration,
 * silence) is logged in one line and the wait goes on: the VM is still fresh. Once the
 * configuration matched and loading began, a failure ends it: the VM holds part of a
 * stream and would need RAM cleared and every device rebuilt to take another.
 */
static int incoming_run(struct mig_incoming *in, char *err, size_t errlen)
{
    double deadline = in->wait_timeout_s ? now_s() + in->wait_timeout_s : 0;
    unsigned io_timeout = in->io_timeout_s ? in->io_timeout_s : MIG_DEFAULT_IO_TIMEOUT;
    for (;;) {
        int fd = -1;
        int r = wait_connection(in, deadline, &fd, err, errlen);
        if (r < 0)
            return -1;
        if (r == 0)
            continue;
        char peer[80], why[256];
        peer_name(fd, peer, sizeof(peer));
        struct mig_conn c;
        mig_conn_plain(&c, fd, io_timeout);
        set_conn_fd(in, fd);
        atomic_store(&in->receiving, true);
        mig_event("destination", "receiving", NULL, in->uri);
        bool touched = false;
        if (in->tls && mig_tls_start(in->tls, &c, NULL, why, sizeof(why)) < 0) {
            r = -1;
        } else {
            if (in->tls) {
                mig_tls_describe(&c, why, sizeof(why));
                fprintf(stderr, "nvmevm: migration channel from %s: %s\n", peer, why);
            }
            r = receive(in->vm, &c, &touched, why, sizeof(why));
        }
        set_conn_fd(in, -1);
        mig_conn_close(&c);
        atomic_store(&in->receiving, false);
        if (r == 0)
            return 0;
        if (atomic_load(&in->cancelled))
            return err_set(err, errlen, "cancelled: %s", why);
        if (touched)
            return err_set(err, errlen, "%s", why);
        warn_msg("refused a connection from %s: %s; still waiting for the source", peer, why);
        mig_event("destination", "refused", why, in->uri);
    }
}

static void *incoming_thread(void *arg)
{
    struct mig_incoming *in = arg;
    in->result = incoming_run(in, in->err, sizeof(in->err));
    close(in->lfd);
    in->lfd = -1;
    mig_event("destination", in->result == 0 ? "completed" : "failed",
              in->result == 0 ? NULL : in->err, in->uri);
    uint64_t one = 1;
    if (write(in->done_efd, &one, sizeof(one)) < 0)
        warn_errno("incoming migration: eventfd");
    return NULL;
}

static int receive(struct vm *vm, struct mig_conn *c, bool *touched, char *err, size_t errlen)
{
    struct mig_stream s;
    mig_stream_init(&s, c);
    int ret = -1;
    uint32_t id;
    uint16_t ver;
    uint8_t *p = NULL;
    size_t len = 0;
    if (mig_read_header(&s, err, errlen) < 0 ||
        mig_read_section(&s, &id, &ver, &p, &len, err, errlen) < 0) {
        send_err(c, err);
        goto out;
    }
    struct mig_cursor cur;
    mig_cursor_init(&cur, p, len);
    if (id != MIG_SEC_CONFIG) {
        err_set(err, errlen, "stream does not start with the configuration");
        send_err(c, err);
        goto out;
    }
    if (proto_config_check(vm, ver, &cur, err, errlen) < 0) {
        send_err(c, err);
        goto out;
    }
    *touched = true;
    proto_write_line(c, "OK");
    if (receive_all(vm, &s, err, errlen) < 0) {
        send_err(c, err);
        goto out;
    }
    vm_post_load(vm);
    char line[64];
    if (proto_write_line(c, "LOADED") < 0 || proto_read_line(c, line, sizeof(line), 60) < 0 ||
        strcmp(line, "HANDOVER") != 0) {
        err_set(err, errlen, "the source did not hand over its disks");
        goto out;
    }
    /* The guest runs here only once every disk is ours. */
    for (int i = 0; i < vm->disks.nr_ns; i++) {
        int r = blk_lock(vm->disks.ns[i].blk);
        if (r < 0) {
            err_set(err, errlen, "%s: cannot take the disk lock: %s", vm->disks.ns[i].blk->path,
                    strerror(-r));
            for (int j = 0; j < i; j++)
                blk_unlock(vm->disks.ns[j].blk);
            send_err(c, err);
            goto out;
        }
    }
    proto_write_line(c, "RUNNING");
    ret = 0;
out:
    free(p);
    mig_stream_free(&s);
    return ret;
}

struct mig_incoming *migrate_incoming_start(struct vm *vm, int lfd, const char *uri,
                                            struct mig_tls *tls, unsigned io_timeout_s,
                                            unsigned wait_timeout_s, char *err, size_t errlen)
{
    struct mig_incoming *in = calloc(1, sizeof(*in));
    if (!in) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    *in = (struct mig_incoming){.vm = vm,
                                .lfd = lfd,
                                .tls = tls,
                                .io_timeout_s = io_timeout_s,
                                .wait_timeout_s = wait_timeout_s,
                                .conn_fd = -1};
    snprintf(in->uri, sizeof(in->uri), "%s", uri);
    pthread_mutex_init(&in->lock, NULL);
    in->done_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    in->cancel_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (in->done_efd < 0 || in->cancel_efd < 0) {
        err_set(err, errlen, "eventfd: %s", strerror(errno));
        goto fail;
    }
    /* poll says when to accept; a connection gone before accept4 must not block it */
    int fl = fcntl(lfd, F_GETFL);
    if (fl < 0 || fcntl(lfd, F_SETFL, fl | O_NONBLOCK) < 0) {
        err_set(err, errlen, "listening socket: %s", strerror(errno));
        goto fail;
    }
    fprintf(stderr, "nvmevm: waiting for an incoming migration on %s%s\n", uri,
            tls ? " (TLS)" : "");
    mig_event("destination", "waiting", NULL, uri);
    if (pthread_create(&in->thread, NULL, incoming_thread, in) != 0) {
        err_set(err, errlen, "cannot start the incoming migration thread");
        goto fail;
    }
    return in;
fail:
    if (in->done_efd >= 0)
        close(in->done_efd);
    if (in->cancel_efd >= 0)
        close(in->cancel_efd);
    pthread_mutex_destroy(&in->lock);
    free(in);
    close(lfd);
    return NULL;
}

int migrate_incoming_fd(const struct mig_incoming *in)
{
    return in->done_efd;
}

const char *migrate_incoming_state(struct mig_incoming *in)
{
    return atomic_load(&in->receiving) ? "receiving" : "waiting";
}

void migrate_incoming_cancel(struct mig_incoming *in)
{
    atomic_store(&in->cancelled, true);
    uint64_t one = 1;
    if (write(in->cancel_efd, &one, sizeof(one)) < 0)
        warn_errno("incoming migration: eventfd");
    /* A receive in progress ends at once: its reads see the connection shut. */
    pthread_mutex_lock(&in->lock);
    if (in->conn_fd >= 0)
        shutdown(in->conn_fd, SHUT_RDWR);
    pthread_mutex_unlock(&in->lock);
}

int migrate_incoming_finish(struct mig_incoming *in, char *err, size_t errlen)
{
    pthread_join(in->thread, NULL);
    int r = in->result;
    if (r < 0)
        err_set(err, errlen, "%s", in->err);
    close(in->done_efd);
    close(in->cancel_efd);
    pthread_mutex_destroy(&in->lock);
    free(in);
    return r;
}
