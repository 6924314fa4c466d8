/*
 * io_uring backend: one ring per blk_queue (one per I/O thread and device).
 *
 * submit() only prepares SQEs; flush_submissions() hands the whole batch to the kernel
 * with one io_uring_enter. Completions raise an eventfd registered on the ring, so the
 * I/O thread can poll it next to its doorbell fds, and reap() peeks the CQ without ever
 * blocking. Data is never copied: the iovecs point into guest RAM.
 *
 * Each request owns an op slot while it is in the kernel. The ring holds at most `depth`
 * ops; requests beyond that wait on a backlog (heap-allocated ops) and enter the ring as
 * slots free up, so submit() never fails because the guest queued more than the depth.
 * A request may need several SQEs in turn (short transfers, fallbacks), never two at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <unistd.h>

#include "block/block.h"

#define REAP_BATCH  32
#define ZERO_CHUNK  (256 * 1024) /* write-zeroes fallback buffer */
#define MAX_RETRIES 1000         /* -EAGAIN/-EINTR resubmissions before giving up */

enum uop_stage {
    ST_RW,         /* READ or WRITE of req->iov */
    ST_PUNCH,      /* fallocate PUNCH_HOLE (discard, or write zeroes with unmap) */
    ST_ZERO_RANGE, /* fallocate ZERO_RANGE */
    ST_ZERO_WRITE, /* the filesystem refused both: write zeroes */
    ST_FSYNC,
    ST_NOP, /* zero-length requests, and failures found while preparing */
};

struct uop {
    struct blk_req *req;
    enum uop_stage stage;
    uint64_t done;     /* bytes finished (RW, ZERO_WRITE) */
    struct iovec *tmp; /* the rest of req->iov after a short transfer */
    struct iovec zio;
    unsigned retries;
    int fail;  /* ST_NOP: the result to report */
    bool heap; /* backlog op, freed on completion */
    TAILQ_ENTRY(uop) link;
};
TAILQ_HEAD(uop_list, uop);

struct uring_q {
    struct blk_queue base;
    struct io_uring ring;
    int efd;
    unsigned depth;
    unsigned in_ring;  /* ops with an SQE queued or in flight */
    uint64_t finished; /* requests whose done() ran */
    struct uop *pool;
    struct uop_list free;
    struct uop_list backlog;
    void *zeroes; /* ZERO_CHUNK zero bytes, allocated on first fallback */
};

static bool is_write_op(enum blk_op op)
{
    return op == BLK_WRITE || op == BLK_WRITE_ZEROES || op == BLK_DISCARD;
}

/* O_DIRECT is used only when everything is aligned to the device's unit; the kernel would
 * otherwise fail the request with -EINVAL. Anything else goes through the page cache. */
static bool direct_ok(const struct blk_dev *d, uint64_t off, uint64_t len, const struct iovec *iov,
                      int cnt)
{
    if (d->cache != BLK_CACHE_NONE || d->direct_fd < 0 || !d->logical_block)
        return false;
    uint64_t m = d->logical_block - 1;
    if ((off | len) & m)
        return false;
    for (int i = 0; i < cnt; i++)
        if (((uintptr_t)iov[i].iov_base | iov[i].iov_len) & m)
            return false;
    return true;
}

/* Writes into dst the iovecs of src after skipping `skip` bytes; returns the count. */
static int iov_tail(const struct iovec *src, int cnt, uint64_t skip, struct iovec *dst)
{
    int n = 0;
    for (int i = 0; i < cnt; i++) {
        if (skip >= src[i].iov_len) {
            skip -= src[i].iov_len;
            continue;
        }
        dst[n].iov_base = (uint8_t *)src[i].iov_base + skip;
        dst[n].iov_len = src[i].iov_len - skip;
        skip = 0;
        n++;
    }
    return n;
}

/* A read that hit end of file: the rest of the buffer reads as zeroes, like a hole. */
static void iov_zero_from(const struct iovec *iov, int cnt, uint64_t skip)
{
    for (int i = 0; i < cnt; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        memset((uint8_t *)iov[i].iov_base + skip, 0, iov[i].iov_len - skip);
        skip = 0;
    }
}

/* Prepares the SQE for op's current stage. There is always room: in_ring <= depth <= SQ
 * size; should the kernel still hold SQEs back, submitting makes room. */
static int prep(struct uring_q *q, struct uop *op)
{
    struct blk_dev *d = q->base.dev;
    struct blk_req *r = op->req;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);
    while (!sqe) {
        io_uring_submit(&q->ring);
        sqe = io_uring_get_sqe(&q->ring);
    }
    switch (op->stage) {
    case ST_RW: {
        const struct iovec *iov = r->iov;
        int cnt = r->iovcnt;
        if (op->done) {
            if (!op->tmp) {
                op->tmp = malloc(sizeof(*op->tmp) * (size_t)r->iovcnt);
                if (!op->tmp) {
                    op->stage = ST_NOP; /* report the failure from reap(), like any other */
                    op->fail = -ENOMEM;
                    io_uring_prep_nop(sqe);
                    break;
                }
            }
            cnt = iov_tail(r->iov, r->iovcnt, op->done, op->tmp);
            iov = op->tmp;
        }
        uint64_t off = r->offset + op->done;
        int fd = direct_ok(d, off, r->len - op->done, iov, cnt) ? d->direct_fd : d->fd;
        if (r->op == BLK_READ)
            io_uring_prep_readv(sqe, fd, iov, (unsigned)cnt, off);
        else
            io_uring_prep_writev(sqe, fd, iov, (unsigned)cnt, off);
        break;
    }
    case ST_PUNCH:
        io_uring_prep_fallocate(sqe, d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, r->offset,
                                r->len);
        break;
    case ST_ZERO_RANGE:
        io_uring_prep_fallocate(sqe, d->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, r->offset,
                                r->len);
        break;
    case ST_ZERO_WRITE: {
        uint64_t n = r->len - op->done;
        op->zio.iov_base = q->zeroes;
        op->zio.iov_len = n < ZERO_CHUNK ? n : ZERO_CHUNK;
        uint64_t off = r->offset + op->done;
        int fd = direct_ok(d, off, op->zio.iov_len, &op->zio, 1) ? d->direct_fd : d->fd;
        io_uring_prep_writev(sqe, fd, &op->zio, 1, off);
        break;
    }
    case ST_FSYNC:
        io_uring_prep_fsync(sqe, d->fd, IORING_FSYNC_DATASYNC);
        break;
    case ST_NOP:
        io_uring_prep_nop(sqe);
        break;
    }
    io_uring_sqe_set_data(sqe, op);
    return 0;
}

static void start(struct uring_q *q, struct uop *op)
{
    q->in_ring++;
    prep(q, op);
}

static void op_put(struct uring_q *q, struct uop *op)
{
    free(op->tmp);
    op->tmp = NULL;
    if (op->heap)
        free(op);
    else
        TAILQ_INSERT_HEAD(&q->free, op, link);
}

/* Ends op with res: frees its slot, moves a backlog request into the ring, then calls
 * done() last so the callback may submit again (and reuse the slot). */
static int finish(struct uring_q *q, struct uop *op, int64_t res)
{
    struct blk_req *r = op->req;
    op_put(q, op);
    q->in_ring--;
    q->finished++;
    struct uop *next = TAILQ_FIRST(&q->backlog);
    if (next) {
        TAILQ_REMOVE(&q->backlog, next, link);
        start(q, next);
    }
    r->done(r, res);
    return 0;
}

static bool fallback_to_zero_write(struct uring_q *q)
{
    if (q->zeroes)
        return true;
    if (posix_memalign(&q->zeroes, 4096, ZERO_CHUNK))
        return (q->zeroes = NULL), false;
    memset(q->zeroes, 0, ZERO_CHUNK);
    return true;
}

/* Handles one CQE: either the request is finished, or op goes back in the ring. */
static int complete(struct uring_q *q, struct uop *op, int res)
{
    struct blk_req *r = op->req;
    if (res == -EAGAIN || res == -EINTR) {
        if (++op->retries < MAX_RETRIES)
            return prep(q, op);
        return finish(q, op, -EIO);
    }

    switch (op->stage) {
    case ST_RW: {
        if (res < 0)
            return finish(q, op, res);
        if (res == 0) {
            if (r->op == BLK_WRITE)
                return finish(q, op, -EIO); /* no progress: do not spin */
            iov_zero_from(r->iov, r->iovcnt, op->done);
            return finish(q, op, (int64_t)r->len);
        }
        op->done += (uint64_t)res;
        if (op->done < r->len)
            return prep(q, op); /* short transfer: the rest */
        return finish(q, op, (int64_t)r->len);
    }
    case ST_PUNCH:
    case ST_ZERO_RANGE:
        if (res == -EOPNOTSUPP || res == -ENOTTY) {
            /* Punching unsupported: zeroing still gives the same reads. If the filesystem
             * cannot zero either (FAT, some FUSE), write real zeroes. */
            if (op->stage == ST_PUNCH) {
                op->stage = ST_ZERO_RANGE;
                return prep(q, op);
            }
            if (!fallback_to_zero_write(q))
                return finish(q, op, -ENOMEM);
            op->stage = ST_ZERO_WRITE;
            op->done = 0;
            if (!r->len)
                return finish(q, op, 0);
            return prep(q, op);
        }
        return finish(q, op, res < 0 ? res : 0);
    case ST_ZERO_WRITE:
        if (res <= 0)
            return finish(q, op, res < 0 ? res : -EIO);
        op->done += (uint64_t)res;
        if (op->done < r->len)
            return prep(q, op);
        return finish(q, op, 0);
    case ST_FSYNC:
        return finish(q, op, res < 0 ? res : 0);
    case ST_NOP:
        return finish(q, op, op->fail);
    }
    return 0;
}

static int uring_submit(struct blk_queue *bq, struct blk_req *r)
{
    struct uring_q *q = (struct uring_q *)bq;
    struct blk_dev *d = bq->dev;
    if (!r || !r->done)
        return -EINVAL;
    if (d->read_only && is_write_op(r->op))
        return -EROFS;
    /* Nothing past the device: a write there would grow a backing file, a read would
     * return zeroes for blocks that do not exist. Flushes carry no range. */
    if (r->op != BLK_FLUSH && (r->offset > d->size || r->len > d->size - r->offset))
        return -EINVAL;
    enum uop_stage stage;
    switch (r->op) {
    case BLK_READ:
    case BLK_WRITE:
        if (r->iovcnt < 0 || r->iovcnt > IOV_MAX || (r->iovcnt && !r->iov))
            return -EINVAL;
        stage = ST_RW;
        break;
    case BLK_FLUSH:
        stage = ST_FSYNC;
        break;
    case BLK_WRITE_ZEROES:
        stage = r->unmap ? ST_PUNCH : ST_ZERO_RANGE;
        break;
    case BLK_DISCARD:
        stage = ST_PUNCH;
        break;
    default:
        return -EINVAL;
    }

    struct uop *op = TAILQ_FIRST(&q->free);
    if (op) {
        TAILQ_REMOVE(&q->free, op, link);
    } else {
        op = calloc(1, sizeof(*op));
        if (!op)
            return -ENOMEM;
        op->heap = true;
    }
    op->req = r;
    op->stage = stage;
    op->done = 0;
    op->retries = 0;
    op->fail = 0;
    /* fallocate with len 0 is -EINVAL; an empty transfer would look like EOF. Both still
     * go through the ring so done() always runs from reap(), never from submit(). */
    if (!r->len && r->op != BLK_FLUSH)
        op->stage = ST_NOP;
    if (q->in_ring < q->depth)
        start(q, op);
    else
        TAILQ_INSERT_TAIL(&q->backlog, op, link);
    return 0;
}

static void uring_flush_submissions(struct blk_queue *bq)
{
    struct uring_q *q = (struct uring_q *)bq;
    if (io_uring_sq_ready(&q->ring))
        io_uring_submit(&q->ring); /* on -EAGAIN/-EBUSY the SQEs stay for the next call */
}

static int reap_cqes(struct uring_q *q)
{
    uint64_t before = q->finished;
    for (;;) {
        struct io_uring_cqe *cqes[REAP_BATCH];
        struct uop *ops[REAP_BATCH];
        int res[REAP_BATCH];
        unsigned n = io_uring_peek_batch_cqe(&q->ring, cqes, REAP_BATCH);
        if (!n)
            break;
        /* Copy out and release the CQ slots before running callbacks that may submit. */
        for (unsigned i = 0; i < n; i++) {
            ops[i] = io_uring_cqe_get_data(cqes[i]);
            res[i] = cqes[i]->res;
        }
        io_uring_cq_advance(&q->ring, n);
        for (unsigned i = 0; i < n; i++)
            complete(q, ops[i], res[i]);
    }
    return (int)(q->finished - before);
}

static int uring_reap(struct blk_queue *bq)
{
    struct uring_q *q = (struct uring_q *)bq;
    /* The completion eventfd is the waiter's to drain (the I/O thread reads it after
     * epoll): reaping only peeks the CQ ring, no syscall per call on the hot path. */
    int n = reap_cqes(q);
    uring_flush_submissions(bq); /* resubmissions of short transfers and fallbacks */
    return n;
}

static int uring_completion_fd(struct blk_queue *bq)
{
    return ((struct uring_q *)bq)->efd;
}

static void uring_queue_free(struct blk_queue *bq)
{
    struct uring_q *q = (struct uring_q *)bq;
    if (!q)
        return;
    /* Requests still in flight point into guest RAM and at the caller's blk_reqs: wait
     * for them (their done() runs) rather than let the kernel write into freed memory. */
    while (q->in_ring) {
        struct io_uring_cqe *cqe;
        io_uring_submit(&q->ring);
        if (io_uring_wait_cqe(&q->ring, &cqe) < 0)
            break;
        reap_cqes(q);
    }
    io_uring_queue_exit(&q->ring);
    if (q->efd >= 0)
        close(q->efd);
    struct uop *op;
    while ((op = TAILQ_FIRST(&q->backlog))) {
        TAILQ_REMOVE(&q->backlog, op, link);
        free(op);
    }
    free(q->zeroes);
    free(q->pool);
    free(q);
}

static struct blk_queue *uring_queue_new(struct blk_dev *d, unsigned depth)
{
    if (depth < 1)
        depth = 1;
    if (depth > 4096)
        depth = 4096; /* IORING_MAX_ENTRIES is 32768; deeper gains nothing */
    struct uring_q *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->base.dev = d;
    q->depth = depth;
    q->efd = -1;
    TAILQ_INIT(&q->free);
    TAILQ_INIT(&q->backlog);
    q->pool = calloc(depth, sizeof(*q->pool));
    if (!q->pool)
        goto fail_alloc;
    for (unsigned i = 0; i < depth; i++)
        TAILQ_INSERT_TAIL(&q->free, &q->pool[i], link);
    if (io_uring_queue_init(depth, &q->ring, 0) < 0)
        goto fail_alloc;
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0 || io_uring_register_eventfd(&q->ring, q->efd) < 0) {
        io_uring_queue_exit(&q->ring);
        goto fail_alloc;
    }
    return &q->base;

fail_alloc:
    if (q->efd >= 0)
        close(q->efd);
    free(q->pool);
    free(q);
    return NULL;
}

const struct blk_backend_ops blk_uring_ops = {
    .queue_new = uring_queue_new,
    .queue_free = uring_queue_free,
    .submit = uring_submit,
    .flush_submissions = uring_flush_submissions,
    .reap = uring_reap,
    .completion_fd = uring_completion_fd,
};
