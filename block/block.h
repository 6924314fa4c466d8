/*
 * Block backends for the NVMe model. The model only sees struct blk_dev and
 * struct blk_queue through these calls, so unit tests can plug in a memory backend
 * with controllable completion timing, and the VMM uses io_uring (block/uring.c).
 *
 * Threading: a blk_queue belongs to one thread (the device's I/O thread); submit
 * and reap happen there. blk_dev is shared (read-only after open).
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

enum blk_op {
    BLK_READ,
    BLK_WRITE,
    BLK_FLUSH,        /* fdatasync */
    BLK_WRITE_ZEROES, /* fallocate ZERO_RANGE (or PUNCH_HOLE when .unmap) */
    BLK_DISCARD,      /* fallocate PUNCH_HOLE|KEEP_SIZE: later reads return zeroes */
};

struct blk_req {
    enum blk_op op;
    uint64_t offset; /* bytes */
    uint64_t len;    /* bytes; for READ/WRITE the sum of iov lengths */
    struct iovec *iov;
    int iovcnt;
    bool unmap; /* WRITE_ZEROES: deallocate too */
    /* Called from blk_queue_reap() on the queue's thread. res: bytes or 0, or -errno. */
    void (*done)(struct blk_req *req, int64_t res);
    void *opaque;
};

enum blk_cache { BLK_CACHE_WRITEBACK, BLK_CACHE_NONE };

struct blk_open_opts {
    bool read_only;
    enum blk_cache cache; /* NONE: O_DIRECT when a request is aligned, buffered otherwise */
    bool lock;            /* exclusive advisory lock (two VMMs never write one disk) */
};

struct blk_dev;

/* Backends embed this first in their queue struct. */
struct blk_queue {
    struct blk_dev *dev;
};

struct blk_backend_ops {
    struct blk_queue *(*queue_new)(struct blk_dev *dev, unsigned depth);
    void (*queue_free)(struct blk_queue *q);
    /* Queues a request; returns 0, or -errno if it could not be queued (done not called). */
    int (*submit)(struct blk_queue *q, struct blk_req *req);
    /* Pushes queued requests to the backend (one syscall for a batch). */
    void (*flush_submissions)(struct blk_queue *q);
    /* Calls done() for finished requests; returns how many. Never blocks. */
    int (*reap)(struct blk_queue *q);
    /* An fd that becomes readable when completions are ready (eventfd), or -1. */
    int (*completion_fd)(struct blk_queue *q);
};

struct blk_dev {
    const struct blk_backend_ops *ops;
    char *path;
    uint64_t size;          /* bytes */
    uint32_t logical_block; /* 512 or 4096: the smallest O_DIRECT unit */
    bool read_only;
    enum blk_cache cache;
    int fd;        /* buffered fd (-1 for memory backends) */
    int direct_fd; /* O_DIRECT fd, or -1 */
    void *priv;    /* backend data */
};

/* Opens a file or block device with the io_uring backend. On failure returns NULL and
 * writes a one-line reason ("disk.img: No such file or directory") into err. */
struct blk_dev *blk_open(const char *path, const struct blk_open_opts *o, char *err, size_t errlen);
/* A RAM-backed device for tests: completions are held until blk_mem_release(). */
struct blk_dev *blk_mem_new(uint64_t size);
void blk_mem_hold(struct blk_dev *d, bool hold); /* hold completions (in-flight I/O) */
void blk_mem_release(struct blk_dev *d);         /* let held completions be reaped */
uint8_t *blk_mem_data(struct blk_dev *d);
/* Performs a read, write, write-zeroes or discard of r on a RAM image of size bytes (flush
 * excluded); returns what the io_uring backend would report. Shared by RAM-backed fakes. */
int64_t blk_ram_transfer(uint8_t *data, uint64_t size, const struct blk_req *r);
void blk_close(struct blk_dev *d);

/* Re-takes or drops the exclusive lock (live migration hands it over). 0 or -errno. */
int blk_lock(struct blk_dev *d);
void blk_unlock(struct blk_dev *d);

static inline struct blk_queue *blk_queue_new(struct blk_dev *d, unsigned depth)
{
    return d->ops->queue_new(d, depth);
}
static inline void blk_queue_free(struct blk_queue *q)
{
    q->dev->ops->queue_free(q);
}
static inline int blk_submit(struct blk_queue *q, struct blk_req *r)
{
    return q->dev->ops->submit(q, r);
}
static inline void blk_flush_submissions(struct blk_queue *q)
{
    q->dev->ops->flush_submissions(q);
}
static inline int blk_reap(struct blk_queue *q)
{
    return q->dev->ops->reap(q);
}
static inline int blk_completion_fd(struct blk_queue *q)
{
    return q->dev->ops->completion_fd(q);
}

/* ---- Backend internals shared by block/open.c, uring.c and mem.c ---- */

/* The io_uring backend (block/uring.c); blk_open() installs it. */
extern const struct blk_backend_ops blk_uring_ops;

/* Memory backend fault injection: requests overlapping [offset, offset + len) complete
 * with -err (err 0 removes the fault); len 0 makes flushes fail. Lets tests reach the
 * model's media-error paths. */
void blk_mem_inject_error(struct blk_dev *d, uint64_t offset, uint64_t len, int err);
