/*
 * RAM-backed block device for unit tests. It behaves like the io_uring backend where the
 * model can tell the difference: requests only take effect once flushed to the "kernel"
 * (blk_flush_submissions) and reaped (blk_reap), the completion fd is an eventfd, and
 * tests can hold completions to keep I/O in flight (reset, abort, migration tests) or
 * inject errors to reach the media-error paths.
 *
 * Data moves at reap time, not at submit time, so a test that checks guest memory (or
 * dirty bits) before the completion sees exactly what a real asynchronous device gives.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <unistd.h>

#include "block/block.h"

#define MEM_MAX_FAULTS 16

struct mem_pending {
    struct blk_req *req;
    bool submitted; /* blk_flush_submissions() has run since submit */
    bool released;  /* blk_mem_release() let it through a hold */
    TAILQ_ENTRY(mem_pending) link;
};

struct mem_q {
    struct blk_queue base;
    int efd;
    TAILQ_HEAD(, mem_pending) pending;
    LIST_ENTRY(mem_q) link;
};

struct mem_fault {
    uint64_t offset, len;
    int err;
};

struct mem_dev {
    bool hold;
    LIST_HEAD(, mem_q) queues;
    struct mem_fault faults[MEM_MAX_FAULTS];
    int nr_faults;
    uint8_t data[]; /* one allocation, so blk_close() can free(d->priv) */
};

static struct mem_dev *md(struct blk_dev *d)
{
    return d->priv;
}

static void signal_q(struct mem_q *q)
{
    uint64_t one = 1;
    ssize_t r = write(q->efd, &one, sizeof(one));
    (void)r; /* counter overflow is impossible at test scale; readable is all we need */
}

static bool ready(const struct mem_dev *m, const struct mem_pending *p)
{
    return p->submitted && (!m->hold || p->released);
}

static int64_t fault_for(const struct mem_dev *m, const struct blk_req *r)
{
    for (int i = 0; i < m->nr_faults; i++) {
        const struct mem_fault *f = &m->faults[i];
        if (r->op == BLK_FLUSH) {
            if (!f->len)
                return -f->err; /* a zero-length fault fails flushes */
            continue;
        }
        if (r->len && r->offset < f->offset + f->len && f->offset < r->offset + r->len)
            return -f->err;
    }
    return 0;
}

int64_t blk_ram_transfer(uint8_t *data, uint64_t size, const struct blk_req *r)
{
    if (r->offset > size || r->len > size - r->offset)
        return -EIO;
    uint8_t *p = data + r->offset;
    uint64_t left = r->len;
    switch (r->op) {
    case BLK_READ:
    case BLK_WRITE:
        for (int i = 0; i < r->iovcnt && left; i++) {
            uint64_t n = r->iov[i].iov_len < left ? r->iov[i].iov_len : left;
            if (r->op == BLK_READ)
                memcpy(r->iov[i].iov_base, p, n);
            else
                memcpy(p, r->iov[i].iov_base, n);
            p += n;
            left -= n;
        }
        return (int64_t)r->len;
    case BLK_WRITE_ZEROES:
    case BLK_DISCARD:
        memset(p, 0, r->len);
        return 0;
    default:
        return -EINVAL;
    }
}

/* Performs r on the RAM image; returns what the io_uring backend would report. */
static int64_t execute(struct blk_dev *d, struct blk_req *r)
{
    struct mem_dev *m = md(d);
    int64_t err = fault_for(m, r);
    if (err)
        return err;
    if (r->op == BLK_FLUSH)
        return 0;
    return blk_ram_transfer(m->data, d->size, r);
}

static int mem_submit(struct blk_queue *bq, struct blk_req *r)
{
    struct mem_q *q = (struct mem_q *)bq;
    if (!r || !r->done || r->op > BLK_DISCARD)
        return -EINVAL;
    /* Like the io_uring backend: requests beyond the device are refused at submission. */
    if (r->op != BLK_FLUSH && (r->offset > bq->dev->size || r->len > bq->dev->size - r->offset))
        return -EINVAL;
    if (bq->dev->read_only && r->op != BLK_READ && r->op != BLK_FLUSH)
        return -EROFS;
    struct mem_pending *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->req = r;
    TAILQ_INSERT_TAIL(&q->pending, p, link);
    return 0;
}

static void mem_flush_submissions(struct blk_queue *bq)
{
    struct mem_q *q = (struct mem_q *)bq;
    struct mem_dev *m = md(bq->dev);
    bool any = false;
    struct mem_pending *p;
    for (p = TAILQ_FIRST(&q->pending); p; p = TAILQ_NEXT(p, link)) {
        p->submitted = true;
        any |= ready(m, p);
    }
    if (any)
        signal_q(q);
}

static int mem_reap(struct blk_queue *bq)
{
    struct mem_q *q = (struct mem_q *)bq;
    struct mem_dev *m = md(bq->dev);
    uint64_t v;
    ssize_t rd = read(q->efd, &v, sizeof(v)); /* drain; re-signalled below if needed */
    (void)rd;
    int n = 0;
    /* Restart the scan after each callback: done() may submit, flush or even reap. */
    for (;;) {
        struct mem_pending *p;
        for (p = TAILQ_FIRST(&q->pending); p; p = TAILQ_NEXT(p, link))
            if (ready(m, p))
                break;
        if (!p)
            break;
        TAILQ_REMOVE(&q->pending, p, link);
        struct blk_req *r = p->req;
        free(p);
        int64_t res = execute(bq->dev, r);
        n++;
        r->done(r, res);
    }
    return n;
}

static int mem_completion_fd(struct blk_queue *bq)
{
    return ((struct mem_q *)bq)->efd;
}

static void mem_queue_free(struct blk_queue *bq)
{
    struct mem_q *q = (struct mem_q *)bq;
    if (!q)
        return;
    /* Unreaped requests are dropped without done(): tests free queues after draining. */
    struct mem_pending *p;
    while ((p = TAILQ_FIRST(&q->pending))) {
        TAILQ_REMOVE(&q->pending, p, link);
        free(p);
    }
    LIST_REMOVE(q, link);
    close(q->efd);
    free(q);
}

static struct blk_queue *mem_queue_new(struct blk_dev *d, unsigned depth)
{
    struct mem_q *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->base.dev = d;
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0) {
        free(q);
        return NULL;
    }
    TAILQ_INIT(&q->pending);
    LIST_INSERT_HEAD(&md(d)->queues, q, link);
    return &q->base;
}

static const struct blk_backend_ops mem_ops = {
    .queue_new = mem_queue_new,
    .queue_free = mem_queue_free,
    .submit = mem_submit,
    .flush_submissions = mem_flush_submissions,
    .reap = mem_reap,
    .completion_fd = mem_completion_fd,
};

struct blk_dev *blk_mem_new(uint64_t size)
{
    struct blk_dev *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->priv = calloc(1, sizeof(struct mem_dev) + size);
    d->path = strdup("mem");
    if (!d->priv || !d->path) {
        free(d->priv);
        free(d->path);
        free(d);
        return NULL;
    }
    LIST_INIT(&md(d)->queues);
    d->ops = &mem_ops;
    d->size = size;
    d->logical_block = 512;
    d->cache = BLK_CACHE_WRITEBACK;
    d->fd = -1;
    d->direct_fd = -1;
    return d;
}

/* Wakes every queue that now has something to reap. */
static void kick_all(struct blk_dev *d)
{
    struct mem_q *q;
    for (q = LIST_FIRST(&md(d)->queues); q; q = LIST_NEXT(q, link)) {
        struct mem_pending *p;
        for (p = TAILQ_FIRST(&q->pending); p; p = TAILQ_NEXT(p, link))
            if (ready(md(d), p)) {
                signal_q(q);
                break;
            }
    }
}

void blk_mem_hold(struct blk_dev *d, bool hold)
{
    if (d->ops != &mem_ops)
        return;
    md(d)->hold = hold;
    if (!hold)
        kick_all(d);
}

void blk_mem_release(struct blk_dev *d)
{
    if (d->ops != &mem_ops)
        return;
    struct mem_q *q;
    for (q = LIST_FIRST(&md(d)->queues); q; q = LIST_NEXT(q, link)) {
        struct mem_pending *p;
        for (p = TAILQ_FIRST(&q->pending); p; p = TAILQ_NEXT(p, link))
            p->released = true; /* still needs a flush, like any request */
    }
    kick_all(d);
}

uint8_t *blk_mem_data(struct blk_dev *d)
{
    return d->ops == &mem_ops ? md(d)->data : NULL;
}

void blk_mem_inject_error(struct blk_dev *d, uint64_t offset, uint64_t len, int err)
{
    if (d->ops != &mem_ops)
        return;
    struct mem_dev *m = md(d);
    for (int i = 0; i < m->nr_faults; i++) {
        if (m->faults[i].offset == offset && m->faults[i].len == len) {
            if (err) {
                m->faults[i].err = err;
            } else {
                m->faults[i] = m->faults[--m->nr_faults];
            }
            return;
        }
    }
    if (err && m->nr_faults < MEM_MAX_FAULTS)
        m->faults[m->nr_faults++] = (struct mem_fault){offset, len, err};
}
