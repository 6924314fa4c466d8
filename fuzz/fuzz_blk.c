/* Held-completion block backend for the fuzzers (see fuzz_blk.h). */
#include "fuzz/fuzz_blk.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

struct fb_req {
    struct blk_req *req;
    bool released;
    int64_t forced; /* 0, or the -errno it completes with */
    TAILQ_ENTRY(fb_req) link;
};

struct fb_q {
    struct blk_queue base;
    TAILQ_HEAD(, fb_req) pending;
    LIST_ENTRY(fb_q) link;
};

struct fb_dev {
    bool autocomplete;
    LIST_HEAD(, fb_q) queues;
    uint8_t data[];
};

static struct fb_dev *fd_of(struct blk_dev *d)
{
    return d->priv;
}

static int64_t execute(struct blk_dev *d, struct blk_req *r)
{
    if (r->op == BLK_FLUSH)
        return 0;
    return blk_ram_transfer(fd_of(d)->data, d->size, r);
}

static int fb_submit(struct blk_queue *bq, struct blk_req *r)
{
    struct fb_q *q = (struct fb_q *)bq;
    if (!r || !r->done || r->op > BLK_DISCARD)
        return -EINVAL;
    if (bq->dev->read_only && r->op != BLK_READ && r->op != BLK_FLUSH)
        return -EROFS;
    struct fb_req *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->req = r;
    TAILQ_INSERT_TAIL(&q->pending, p, link);
    return 0;
}

static void fb_flush(struct blk_queue *bq)
{
    (void)bq; /* release order is the fuzzer's, not submission order */
}

static int fb_reap(struct blk_queue *bq)
{
    struct fb_q *q = (struct fb_q *)bq;
    struct fb_dev *m = fd_of(bq->dev);
    int n = 0;
    /* Rescan after each callback: done() may submit more (Copy, DSM, shutdown flushes). */
    for (;;) {
        struct fb_req *p;
        TAILQ_FOREACH(p, &q->pending, link)
        if (p->released || m->autocomplete)
            break;
        if (!p)
            return n;
        TAILQ_REMOVE(&q->pending, p, link);
        struct blk_req *r = p->req;
        int64_t res = p->forced ? p->forced : execute(bq->dev, r);
        free(p);
        n++;
        r->done(r, res);
    }
}

static int fb_completion_fd(struct blk_queue *bq)
{
    (void)bq;
    return -1;
}

static void fb_queue_free(struct blk_queue *bq)
{
    struct fb_q *q = (struct fb_q *)bq;
    if (!q)
        return;
    struct fb_req *p;
    while ((p = TAILQ_FIRST(&q->pending))) {
        TAILQ_REMOVE(&q->pending, p, link);
        free(p);
    }
    LIST_REMOVE(q, link);
    free(q);
}

static struct blk_queue *fb_queue_new(struct blk_dev *d, unsigned depth)
{
    (void)depth;
    struct fb_q *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->base.dev = d;
    TAILQ_INIT(&q->pending);
    LIST_INSERT_HEAD(&fd_of(d)->queues, q, link);
    return &q->base;
}

static const struct blk_backend_ops fb_ops = {
    .queue_new = fb_queue_new,
    .queue_free = fb_queue_free,
    .submit = fb_submit,
    .flush_submissions = fb_flush,
    .reap = fb_reap,
    .completion_fd = fb_completion_fd,
};

struct blk_dev *fblk_new(uint64_t size, bool read_only)
{
    struct blk_dev *d = calloc(1, sizeof(*d));
    struct fb_dev *m = calloc(1, sizeof(*m) + size);
    if (!d || !m) {
        free(d);
        free(m);
        return NULL;
    }
    LIST_INIT(&m->queues);
    d->ops = &fb_ops;
    d->priv = m;
    d->path = NULL;
    d->size = size;
    d->logical_block = 512;
    d->read_only = read_only;
    d->fd = -1;
    d->direct_fd = -1;
    return d;
}

void fblk_free(struct blk_dev *d)
{
    if (!d)
        return;
    struct fb_q *q;
    while ((q = LIST_FIRST(&fd_of(d)->queues)))
        fb_queue_free(&q->base);
    free(d->priv);
    free(d);
}

unsigned fblk_pending(struct blk_dev *d)
{
    unsigned n = 0;
    struct fb_q *q;
    struct fb_req *p;
    LIST_FOREACH(q, &fd_of(d)->queues, link)
    TAILQ_FOREACH(p, &q->pending, link)
    n += !p->released;
    return n;
}

bool fblk_release(struct blk_dev *d, unsigned idx, bool fail)
{
    unsigned n = fblk_pending(d);
    if (!n)
        return false;
    idx %= n;
    struct fb_q *q;
    struct fb_req *p;
    LIST_FOREACH(q, &fd_of(d)->queues, link)
    TAILQ_FOREACH(p, &q->pending, link)
    {
        if (p->released || idx--)
            continue;
        p->released = true;
        p->forced = fail ? -EIO : 0;
        return true;
    }
    return false;
}

void fblk_set_auto(struct blk_dev *d, bool on)
{
    fd_of(d)->autocomplete = on;
}
