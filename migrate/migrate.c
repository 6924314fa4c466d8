/* Source side of live migration: the pre-copy loop, switchover and disk handover. */
#include "migrate/migrate.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "block/block.h"
#include "kvm/vm.h"
#include "migrate/conn.h"
#include "migrate/proto.h"
#include "migrate/event.h"
#include "migrate/ram.h"
#include "migrate/stream.h"
#include "migrate/tcp.h"
#include "migrate/tls.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"
#include "util/thread_role.h"

#define CHUNK_PAGES 4096 /* 16 MiB between progress updates, cancel and throttle checks */

struct migration {
    struct vm *vm;
    struct mig_params p;
    struct mig_tls *tls; /* NULL: plain TCP */
    pthread_t thread;
    pthread_mutex_t lock; /* guards the progress fields */
    atomic_int state;
    atomic_bool cancel;
    unsigned pass;
    uint64_t ram_total, ram_remaining, bytes_sent, zero_pages;
    double bandwidth, dirty_rate, expected_downtime_ms, total_ms, downtime_ms;
    unsigned throttle_pct;
    char error[256];
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void fail(struct migration *m, int state, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct migration *m, int state, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&m->lock);
    err_vset(m->error, sizeof(m->error), fmt, ap);
    pthread_mutex_unlock(&m->lock);
    va_end(ap);
    atomic_store(&m->state, state);
    mig_event("source", migrate_state_name((enum mig_state)state), m->error, m->p.uri);
}

static void disks_each(struct vm *vm, int (*fn)(struct blk_dev *), int *first_err)
{
    for (int i = 0; i < vm->disks.nr_ns; i++) {
        int r = fn(vm->disks.ns[i].blk);
        if (r < 0 && first_err && !*first_err)
            *first_err = r;
    }
}

static int disk_sync(struct blk_dev *d)
{
    return fdatasync(d->fd) < 0 ? -errno : 0;
}

static int disk_unlock(struct blk_dev *d)
{
    blk_unlock(d);
    return 0;
}

/* Sleeps as needed so the average rate stays under max_bandwidth. */
static void throttle_bandwidth(struct migration *m, double start_ms, uint64_t bytes)
{
    if (!m->p.max_bandwidth)
        return;
    double want_ms = (double)bytes * 1e3 / (double)m->p.max_bandwidth;
    double el = now_ms() - start_ms;
    if (want_ms > el)
        usleep((useconds_t)((want_ms - el) * 1e3));
}

/* Auto-converge: take the vCPUs off the CPU for throttle_pct of each 10 ms slice. */
static void throttle_vcpus(struct migration *m)
{
    if (!m->throttle_pct)
        return;
    vm_pause(m->vm);
    usleep(m->throttle_pct * 100);
    vm_resume(m->vm);
}

/* One pass over the bitmap, in chunks so cancel, progress and throttling stay live. */
static int send_pass(struct migration *m, struct mig_stream *s, uint64_t *bm, bool first)
{
    double start = now_ms();
    uint64_t sent0 = s->bytes;
    for (;;) {
        if (atomic_load(&m->cancel))
            return -ECANCELED;
        struct ram_send_stats st = {0};
        uint64_t left = ram_bitmap_count(bm, ram_pages(m->vm));
        if (!left)
            break;
        int r = ram_send(m->vm, s, bm, first, CHUNK_PAGES, &st);
        if (r < 0)
            return r;
        pthread_mutex_lock(&m->lock);
        m->zero_pages += st.zero_pages;
        m->bytes_sent = s->bytes;
        m->ram_remaining = (left > CHUNK_PAGES ? left - CHUNK_PAGES : 0) * GUEST_PAGE_SIZE;
        pthread_mutex_unlock(&m->lock);
        throttle_bandwidth(m, start, s->bytes - sent0);
        throttle_vcpus(m);
    }
    int r = mig_flush(s);
    double el = now_ms() - start;
    if (el > 0 && s->bytes > sent0) {
        pthread_mutex_lock(&m->lock);
        m->bandwidth = (double)(s->bytes - sent0) * 1e3 / el;
        pthread_mutex_unlock(&m->lock);
    }
    return r;
}

static int send_config(struct vm *vm, struct mig_stream *s)
{
    struct mig_buf b;
    mig_buf_init(&b);
    proto_config_put(vm, &b);
    int r =
        b.oom ? -ENOMEM : mig_write_section(s, MIG_SEC_CONFIG, PROTO_CONFIG_VERSION, b.data, b.len);
    mig_buf_free(&b);
    return r ? r : mig_flush(s);
}

static int emit_section(void *opaque, uint32_t id, uint16_t version, const void *data, size_t len,
                        char *err, size_t errlen)
{
    int r = mig_write_section(opaque, id, version, data, len);
    if (r < 0)
        return err_set(err, errlen, "sending section 0x%x: %s", id, strerror(-r));
    return 0;
}

/* What the destination answered, or why nothing came. */
static const char *no_reply(const struct mig_stream *s, const char *reply)
{
    if (*reply)
        return reply;
    if (s->conn->why)
        return s->conn->why;
    return s->conn->last_errno == ETIMEDOUT ? "no answer in time (--migrate-timeout)"
                                            : "connection lost";
}

/* Everything after the guest stopped: last pages, device and CPU state, disk handover.
 * Returns 0 once the destination runs; on failure the caller resumes the source. */
static int switchover(struct migration *m, struct mig_stream *s, uint64_t *bm, double *paused_at)
{
    struct vm *vm = m->vm;
    char err[200], reply[256];
    *paused_at = now_ms();
    mig_event("source", "device", NULL, m->p.uri); /* QMP's name: vCPUs stop, devices go */
    vm_quiesce(vm);
    debug_msg("switchover: vCPUs paused and storage drained after %.1f ms", now_ms() - *paused_at);
    ram_dirty_sync(vm, bm);
    struct ram_send_stats st = {0};
    int r = ram_send(vm, s, bm, false, 0, &st);
    if (r < 0) {
        fail(m, MIG_FAILED, "sending the last pages: %s", strerror(-r));
        return -1;
    }
    if (vm_save_state(vm, emit_section, s, err, sizeof(err)) < 0) {
        fail(m, MIG_FAILED, "%s", err);
        return -1;
    }
    if ((r = mig_write_end(s)) < 0 || (r = mig_flush(s)) < 0) {
        fail(m, MIG_FAILED, "sending the device state: %s", strerror(-r));
        return -1;
    }
    debug_msg("switchover: state sent after %.1f ms (%llu bytes)", now_ms() - *paused_at,
              (unsigned long long)s->bytes);
    if (proto_read_line(s->conn, reply, sizeof(reply), 120) < 0 || strcmp(reply, "LOADED") != 0) {
        fail(m, MIG_FAILED, "destination refused the state: %s", no_reply(s, reply));
        return -1;
    }
    debug_msg("switchover: destination loaded after %.1f ms", now_ms() - *paused_at);
    /* Everything the guest wrote must be on the shared disks before they change hands. */
    int derr = 0;
    disks_each(vm, disk_sync, &derr);
    if (derr) {
        fail(m, MIG_FAILED, "fdatasync before the disk handover: %s", strerror(-derr));
        return -1;
    }
    debug_msg("switchover: loaded and synced after %.1f ms", now_ms() - *paused_at);
    disks_each(vm, disk_unlock, NULL);
    if (proto_write_line(s->conn, "HANDOVER") < 0 ||
        proto_read_line(s->conn, reply, sizeof(reply), 60) < 0 || strcmp(reply, "RUNNING") != 0) {
        fail(m, MIG_FAILED, "destination did not start: %s", no_reply(s, reply));
        return -1;
    }
    return 0;
}

/* After a failure: the source keeps running, provided it can take its disks back. */
static void resume_source(struct migration *m, bool paused)
{
    struct vm *vm = m->vm;
    int lerr = 0;
    disks_each(vm, blk_lock, &lerr);
    if (lerr) {
        /* The destination holds the disks: it runs the guest now, we must not. */
        warn_msg("migration: the destination took the disks; this copy stops");
        vm_request_stop(vm, 1);
        return;
    }
    if (paused) {
        char err[200];
        if (vm_unquiesce(vm, err, sizeof(err)) < 0) {
            /* Better a stopped VM that says why than a guest without its storage. */
            warn_msg("migration: cannot resume the guest: %s; this copy stops", err);
            vm_request_stop(vm, 1);
            return;
        }
    }
    vm_dirty_log_stop(vm);
}

static void *migration_thread(void *arg)
{
    thread_role_enter(THREAD_ROLE_MIGRATION);
    struct migration *m = arg;
    struct vm *vm = m->vm;
    char err[256];
    double t0 = now_ms(), paused_at = 0;
    bool paused = false;
    uint64_t *bm = ram_bitmap_new(vm);
    struct mig_stream s;
    struct mig_conn conn;
    int fd = tcp_connect_uri(m->p.uri, err, sizeof(err));
    mig_conn_plain(&conn, fd, m->p.io_timeout_s ? m->p.io_timeout_s : MIG_DEFAULT_IO_TIMEOUT);
    mig_stream_init(&s, &conn);
    if (fd < 0 || !bm) {
        fail(m, MIG_FAILED, "%s", fd < 0 ? err : "out of memory");
        goto out;
    }
    if (m->tls) {
        char host[256], why[256];
        tcp_host(m->p.uri, host, sizeof(host));
        if (mig_tls_start(m->tls, &conn, host, err, sizeof(err)) < 0) {
            fail(m, MIG_FAILED, "%s", err);
            goto out;
        }
        mig_tls_describe(&conn, why, sizeof(why));
        debug_msg("migration channel to %s: %s", m->p.uri, why);
    }
    char reply[256] = "";
    /* A destination that refuses says why before it closes: read that even when sending
     * failed. */
    bool sent = mig_write_header(&s) == 0 && send_config(vm, &s) == 0;
    if (proto_read_line(&conn, reply, sizeof(reply), (int)conn.timeout_s) < 0 || !sent ||
        strcmp(reply, "OK")) {
        fail(m, MIG_FAILED, "destination refused: %s",
             *reply    ? reply
             : s.error ? strerror(s.error)
                       : no_reply(&s, reply));
        goto out;
    }
    if (vm_dirty_log_start(vm) < 0) {
        fail(m, MIG_FAILED, "cannot enable dirty page logging");
        goto out;
    }
    ram_bitmap_fill(bm, ram_pages(vm));
    m->ram_total = vm->mem.size;
    unsigned fast_dirtying = 0;
    for (m->pass = 0;; m->pass++) {
        double pass_start = now_ms();
        int r = send_pass(m, &s, bm, m->pass == 0);
        if (r < 0) {
            /* The destination may have refused a section: its "ERR" line says which. */
            reply[0] = '\0';
            if (r != -ECANCELED && r != -ETIMEDOUT)
                proto_read_line(&conn, reply, sizeof(reply), 2);
            fail(m, r == -ECANCELED ? MIG_CANCELLED : MIG_FAILED, "%s",
                 r == -ECANCELED   ? "cancelled"
                 : *reply          ? reply
                 : r == -ETIMEDOUT ? "the destination stopped reading"
                                   : strerror(-r));
            break;
        }
        uint64_t dirty = ram_dirty_sync(vm, bm) * GUEST_PAGE_SIZE;
        double el_s = (now_ms() - pass_start) / 1e3;
        pthread_mutex_lock(&m->lock);
        m->ram_remaining = dirty;
        m->dirty_rate = el_s > 0 ? (double)dirty / el_s : 0;
        m->expected_downtime_ms = m->bandwidth > 0 ? (double)dirty * 1e3 / m->bandwidth : 0;
        pthread_mutex_unlock(&m->lock);
        if (m->pass > 0 && m->expected_downtime_ms <= m->p.downtime_ms)
            goto switch_over;
        if (m->p.auto_converge && m->dirty_rate > m->bandwidth / 2 && ++fast_dirtying >= 2)
            m->throttle_pct =
                m->throttle_pct ? (m->throttle_pct + 10 > 99 ? 99 : m->throttle_pct + 10) : 20;
        if (m->p.timeout_s && now_ms() - t0 > m->p.timeout_s * 1e3) {
            if (m->p.force_on_timeout)
                goto switch_over;
            fail(m, MIG_FAILED, "timed out after %u s (still %llu MiB to send per pass)",
                 m->p.timeout_s, (unsigned long long)(dirty >> 20));
            break;
        }
    }
    vm_dirty_log_stop(vm);
    goto out;
switch_over:
    paused = true;
    if (switchover(m, &s, bm, &paused_at) == 0) {
        pthread_mutex_lock(&m->lock);
        m->downtime_ms = now_ms() - paused_at;
        m->total_ms = now_ms() - t0;
        m->bytes_sent = s.bytes;
        m->ram_remaining = 0;
        pthread_mutex_unlock(&m->lock);
        /* The guest lives on at the destination; the main loop ends this process once the
         * user's `nvmevm migrate` has seen the result. */
        atomic_store(&m->state, MIG_COMPLETED);
        mig_event("source", "completed", NULL, m->p.uri);
        goto done;
    }
out:
    resume_source(m, paused);
done:
    pthread_mutex_lock(&m->lock);
    if (!m->total_ms)
        m->total_ms = now_ms() - t0;
    pthread_mutex_unlock(&m->lock);
    if (atomic_load(&m->state) == MIG_FAILED || atomic_load(&m->state) == MIG_CANCELLED)
        warn_msg("migration to %s failed: %s; the guest keeps running here", m->p.uri, m->error);
    mig_stream_free(&s);
    mig_conn_close(&conn);
    free(bm);
    return NULL;
}

struct migration *migrate_start(struct vm *vm, const struct mig_params *p, char *err, size_t errlen)
{
    struct migration *m = calloc(1, sizeof(*m));
    if (!m) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    m->vm = vm;
    m->p = *p;
    /* Credentials are read now, so a wrong path is the request's error, not the thread's. */
    if (mig_tls_wanted(&p->tls) && !(m->tls = mig_tls_new(&p->tls, false, err, errlen))) {
        free(m);
        return NULL;
    }
    pthread_mutex_init(&m->lock, NULL);
    atomic_store(&m->state, MIG_ACTIVE);
    mig_event("source", "active", NULL, p->uri);
    if (pthread_create(&m->thread, NULL, migration_thread, m) != 0) {
        err_set(err, errlen, "cannot start the migration thread");
        pthread_mutex_destroy(&m->lock);
        mig_tls_free(m->tls);
        free(m);
        return NULL;
    }
    return m;
}

enum mig_state migrate_state(struct migration *m)
{
    return m ? atomic_load(&m->state) : MIG_NONE;
}

void migrate_cancel(struct migration *m)
{
    if (m)
        atomic_store(&m->cancel, true);
}

void migrate_free(struct migration *m)
{
    if (!m)
        return;
    atomic_store(&m->cancel, true);
    pthread_join(m->thread, NULL);
    pthread_mutex_destroy(&m->lock);
    mig_tls_free(m->tls);
    free(m);
}

const char *migrate_state_name(enum mig_state s)
{
    static const char *names[] = {"none", "active", "completed", "failed", "cancelled"};
    return s >= MIG_NONE && s <= MIG_CANCELLED ? names[s] : "unknown";
}

void migrate_progress(struct migration *m, struct mig_progress *out)
{
    memset(out, 0, sizeof(*out));
    out->state = MIG_NONE;
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    out->state = atomic_load(&m->state);
    out->pass = m->pass;
    out->ram_total = m->ram_total;
    out->ram_remaining = m->ram_remaining;
    out->bytes_sent = m->bytes_sent;
    out->zero_pages = m->zero_pages;
    out->bandwidth = m->bandwidth;
    out->dirty_rate = m->dirty_rate;
    out->expected_downtime_ms = m->expected_downtime_ms;
    out->throttle_pct = m->throttle_pct;
    out->total_ms = m->total_ms;
    out->downtime_ms = m->downtime_ms;
    memcpy(out->error, m->error, sizeof(out->error));
    pthread_mutex_unlock(&m->lock);
}
