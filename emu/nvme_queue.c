/*
 * Submission and completion queues: creation and deletion, doorbells (MMIO, and shadow
 * doorbells with EventIdx), fetching SQEs, posting CQEs (parking them while a CQ is full),
 * and interrupts (MSI-X vectors, INTx with INTMS, coalescing).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "emu/nvme_int.h"

#define FETCH_BUDGET 64 /* SQEs per queue per pass: one busy queue cannot starve the rest */

/* ---- shadow doorbells: little-endian dwords in guest memory ---- */

static bool shadow_read(struct nvme_ctrl *c, uint64_t gpa, uint32_t *v)
{
    uint32_t *p = gpa_ptr(c->mem, gpa, 4);
    if (!p)
        return false;
    *v = le32toh(__atomic_load_n(p, __ATOMIC_ACQUIRE));
    return true;
}

static void shadow_write(struct nvme_ctrl *c, uint64_t gpa, uint32_t v)
{
    uint32_t *p = gpa_ptr_w(c->mem, gpa, 4);
    if (p)
        __atomic_store_n(p, htole32(v), __ATOMIC_RELEASE);
}

static void queue_attach_shadow(struct nvme_ctrl *c, uint16_t qid, bool is_cq)
{
    /* Linux never uses shadow doorbells for the admin queue: it stays on MMIO. */
    if (!c->dbbuf_dbs || qid == 0)
        return;
    uint64_t off = (2ull * qid + is_cq) * 4;
    uint32_t cur;
    if (is_cq) {
        struct nvme_cq *cq = &c->cq[qid];
        cq->db_addr = c->dbbuf_dbs + off;
        cq->ei_addr = c->dbbuf_eis + off;
        cur = cq->head;
    } else {
        struct nvme_sq *sq = &c->sq[qid];
        sq->db_addr = c->dbbuf_dbs + off;
        sq->ei_addr = c->dbbuf_eis + off;
        cur = sq->tail;
    }
    /* Seed both buffers with our view so stale contents (a reused buffer) cannot move
     * the queue pointers. */
    shadow_write(c, c->dbbuf_dbs + off, cur);
    shadow_write(c, c->dbbuf_eis + off, cur);
}

void nvme_dbbuf_attach(struct nvme_ctrl *c)
{
    for (uint16_t q = 1; q < NVME_MAX_QUEUES; q++) {
        if (c->sq[q].created)
            queue_attach_shadow(c, q, false);
        if (c->cq[q].created)
            queue_attach_shadow(c, q, true);
    }
}

/* ---- create / delete ---- */

int nvme_cq_create(struct nvme_ctrl *c, uint16_t qid, uint64_t base, uint32_t size, bool ien,
                   uint16_t vector)
{
    struct nvme_cq *cq = &c->cq[qid];
    cq->base = base;
    cq->size = size;
    cq->head = cq->tail = 0;
    cq->phase = 1;
    cq->ien = ien;
    cq->vector = vector;
    cq->nr_sqs = 0;
    TAILQ_INIT(&cq->parked);
    cq->parked_count = 0;
    cq->db_addr = cq->ei_addr = 0;
    cq->unsignalled = 0;
    cq->irq_pending = false;
    cq->irq_deadline_us = 0;
    cq->created = true;
    queue_attach_shadow(c, qid, true);
    return 0;
}

int nvme_sq_create(struct nvme_ctrl *c, uint16_t qid, uint64_t base, uint32_t size, uint16_t cqid,
                   uint8_t prio)
{
    struct nvme_sq *sq = &c->sq[qid];
    /* The admin pool also holds the AERs the host leaves outstanding. */
    uint32_t pool = size + (qid == 0 ? NVME_AERL + 1 : 0);
    sq->reqs = calloc(pool, sizeof(*sq->reqs));
    if (!sq->reqs)
        return -ENOMEM;
    TAILQ_INIT(&sq->free);
    for (uint32_t i = 0; i < pool; i++) {
        sq->reqs[i].ctrl = c;
        sq->reqs[i].sq = sq;
        TAILQ_INSERT_TAIL(&sq->free, &sq->reqs[i], link);
    }
    sq->base = base;
    sq->size = size;
    sq->head = sq->tail = 0;
    sq->cqid = cqid;
    sq->prio = prio;
    sq->inflight = 0;
    sq->db_addr = sq->ei_addr = 0;
    sq->deleting = false;
    sq->del_req = NULL;
    sq->created = true;
    c->cq[cqid].nr_sqs++;
    queue_attach_shadow(c, qid, false);
    return 0;
}

static void sq_free_pool(struct nvme_sq *sq)
{
    free(sq->reqs);
    sq->reqs = NULL;
    TAILQ_INIT(&sq->free);
    sq->deleting = false;
    sq->del_req = NULL;
    sq->db_addr = sq->ei_addr = 0;
    sq->head = sq->tail = 0;
}

void nvme_sq_delete(struct nvme_ctrl *c, uint16_t qid)
{
    struct nvme_sq *sq = &c->sq[qid];
    if (!sq->created)
        return;
    sq->created = false;
    struct nvme_cq *cq = &c->cq[sq->cqid];
    cq->nr_sqs--;
    nvme_cq_drop_parked(c, cq, sq);
    /* Storage may still hold requests from this pool (their iovecs and blk_req live in
     * it): keep it until they come back; nvme_req_recycle() frees it then. */
    if (sq->inflight)
        sq->deleting = true;
    else
        sq_free_pool(sq);
}

void nvme_cq_delete(struct nvme_ctrl *c, uint16_t qid)
{
    struct nvme_cq *cq = &c->cq[qid];
    nvme_cq_drop_parked(c, cq, NULL);
    cq->created = false;
    cq->irq_pending = false;
    cq->irq_deadline_us = 0;
    cq->unsignalled = 0;
    cq->db_addr = cq->ei_addr = 0;
    nvme_irq_intx_update(c);
}

void nvme_queues_reset(struct nvme_ctrl *c)
{
    for (int i = 0; i < NVME_MAX_QUEUES; i++)
        if (c->cq[i].created)
            nvme_cq_drop_parked(c, &c->cq[i], NULL);
    for (int i = 0; i < NVME_MAX_QUEUES; i++) {
        struct nvme_sq *sq = &c->sq[i];
        sq->created = false;
        sq->inflight = 0;
        sq_free_pool(sq);
    }
    for (int i = 0; i < NVME_MAX_QUEUES; i++) {
        c->cq[i].created = false;
        c->cq[i].nr_sqs = 0;
        c->cq[i].irq_pending = false;
        c->cq[i].irq_deadline_us = 0;
        c->cq[i].unsignalled = 0;
        c->cq[i].db_addr = c->cq[i].ei_addr = 0;
    }
}

/* ---- completion ---- */

void nvme_req_recycle(struct nvme_ctrl *c, struct nvme_req *r)
{
    struct nvme_sq *sq = r->sq;
    r->ns = NULL;
    if (r->stats_t0) /* every path of a counted command ends here, posted or dropped */
        nvme_stats_completed(c, r);
    TAILQ_INSERT_HEAD(&sq->free, r, link);
    sq->inflight--;
    if (sq->deleting && sq->inflight == 0) {
        struct nvme_req *del = sq->del_req;
        sq_free_pool(sq);
        if (del) {
            del->status = NVME_OK;
            nvme_req_complete(c, del);
        }
    }
}

void nvme_cq_drop_parked(struct nvme_ctrl *c, struct nvme_cq *cq, const struct nvme_sq *only)
{
    /* Move the victims out first: recycling may complete a deferred Delete SQ, which
     * posts on (and may park onto) the admin CQ while we would be walking it. */
    struct nvme_req_list drop = TAILQ_HEAD_INITIALIZER(drop);
    struct nvme_req *r = TAILQ_FIRST(&cq->parked);
    while (r) {
        struct nvme_req *next = TAILQ_NEXT(r, link);
        if (!only || r->sq == only) {
            TAILQ_REMOVE(&cq->parked, r, link);
            cq->parked_count--;
            TAILQ_INSERT_TAIL(&drop, r, link);
        }
        r = next;
    }
    while ((r = TAILQ_FIRST(&drop))) {
        TAILQ_REMOVE(&drop, r, link);
        nvme_req_recycle(c, r);
    }
}

static bool cq_full(const struct nvme_cq *cq)
{
    return (cq->tail + 1) % cq->size == cq->head;
}

/* Accepts a new CQ head if it lies within the entries posted so far. */
static bool cq_head_valid(const struct nvme_cq *cq, uint32_t v)
{
    if (v >= cq->size)
        return false;
    return (v + cq->size - cq->head) % cq->size <= (cq->tail + cq->size - cq->head) % cq->size;
}

static void cq_head_update(struct nvme_ctrl *c, struct nvme_cq *cq, uint32_t v)
{
    cq->head = v;
    if (cq->head == cq->tail && cq->irq_pending) {
        cq->irq_pending = false;
        nvme_irq_intx_update(c);
    }
}

/* Shadow CQ head: publish EventIdx before reading the head (reference §5.1.1), otherwise
 * the host may skip the MMIO doorbell we rely on to learn about freed space. */
static void cq_refresh_shadow(struct nvme_ctrl *c, struct nvme_cq *cq)
{
    if (!cq->db_addr)
        return;
    shadow_write(c, cq->ei_addr, cq->head);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint32_t v;
    if (!shadow_read(c, cq->db_addr, &v) || v == cq->head)
        return;
    if (!cq_head_valid(cq, v)) {
        nvme_doorbell_error(c, NVME_AER_ERROR_INVALID_DB_VAL);
        return;
    }
    cq_head_update(c, cq, v);
}

static bool cq_post(struct nvme_ctrl *c, struct nvme_cq *cq, struct nvme_req *r)
{
    struct nvme_cqe *e = gpa_ptr_w(c->mem, cq->base + (uint64_t)cq->tail * sizeof(*e), sizeof(*e));
    if (!e) {
        nvme_ctrl_fatal(c, "CQ entry outside guest RAM");
        return false;
    }
    e->dw0 = htole32(r->result);
    e->dw1 = 0;
    e->sq_head = htole16((uint16_t)r->sq->head);
    e->sq_id = htole16(r->sq->id);
    e->cid = htole16(r->cmd.cid);
    /* The host polls the phase bit: the rest of the entry must be visible first. */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&e->status, htole16((uint16_t)(r->status << 1) | cq->phase), __ATOMIC_RELAXED);
    if (++cq->tail == cq->size) {
        cq->tail = 0;
        cq->phase ^= 1;
    }
    cq->unsignalled++;
    return true;
}

void nvme_req_complete(struct nvme_ctrl *c, struct nvme_req *r)
{
    struct nvme_sq *sq = r->sq;
    r->ns = NULL;
    /* Completions for a deleted queue or a controller being reset go nowhere. */
    if (!sq->created || !nvme_ctrl_ready(c)) {
        nvme_req_recycle(c, r);
        return;
    }
    struct nvme_cq *cq = &c->cq[sq->cqid];
    if (TAILQ_EMPTY(&cq->parked) && cq_full(cq))
        cq_refresh_shadow(c, cq);
    if (!TAILQ_EMPTY(&cq->parked) || cq_full(cq)) {
        /* Park in order; they go out when the host frees space (CQ head doorbell). */
        TAILQ_INSERT_TAIL(&cq->parked, r, link);
        cq->parked_count++;
        return;
    }
    cq_post(c, cq, r); /* on failure the controller is already fatal */
    nvme_req_recycle(c, r);
}

bool nvme_cq_post_parked(struct nvme_ctrl *c, struct nvme_cq *cq)
{
    bool posted = false;
    if (TAILQ_EMPTY(&cq->parked))
        return false;
    cq_refresh_shadow(c, cq);
    struct nvme_req *r;
    while ((r = TAILQ_FIRST(&cq->parked)) && !cq_full(cq) && nvme_ctrl_ready(c)) {
        TAILQ_REMOVE(&cq->parked, r, link);
        cq->parked_count--;
        cq_post(c, cq, r);
        nvme_req_recycle(c, r);
        posted = true;
    }
    return posted;
}

/* ---- doorbells ---- */

void nvme_doorbell_error(struct nvme_ctrl *c, uint8_t info)
{
    nvme_aen_post(c, NVME_AER_ERROR, info, NVME_LOG_LID_ERROR);
}

void nvme_doorbell_write(struct nvme_ctrl *c, uint32_t db_index, uint32_t value)
{
    if (!nvme_ctrl_ready(c))
        return; /* before RDY, during reset or after CFS: ignored */
    uint32_t qid = db_index / 2;
    if (qid >= NVME_MAX_QUEUES) {
        nvme_doorbell_error(c, NVME_AER_ERROR_INVALID_DB_REG);
        return;
    }
    if (db_index & 1) {
        struct nvme_cq *cq = &c->cq[qid];
        if (!cq->created) {
            nvme_doorbell_error(c, NVME_AER_ERROR_INVALID_DB_REG);
            return;
        }
        if (!cq_head_valid(cq, value)) {
            nvme_doorbell_error(c, NVME_AER_ERROR_INVALID_DB_VAL);
            return;
        }
        cq_head_update(c, cq, value);
        if (TAILQ_EMPTY(&cq->parked))
            return;
    } else {
        struct nvme_sq *sq = &c->sq[qid];
        if (!sq->created) {
            nvme_doorbell_error(c, NVME_AER_ERROR_INVALID_DB_REG);
            return;
        }
        if (value >= sq->size) {
            nvme_doorbell_error(c, NVME_AER_ERROR_INVALID_DB_VAL);
            return;
        }
        sq->tail = value;
    }
    if (c->ops->kick)
        c->ops->kick(c->opaque);
}

/* ---- fetching ---- */

void nvme_req_clear(struct nvme_req *r)
{
    r->ns = NULL;
    r->result = 0;
    r->status = NVME_OK;
    r->iovcnt = 0;
    r->data_len = 0;
    r->blk_pending = 0;
    r->bounce = NULL;
    r->aborted = false;
    r->held = NULL;
    r->stats_t0 = 0;
}

static void sqe_to_host(struct nvme_sqe *d, const struct nvme_sqe *s)
{
    memcpy(d, s, sizeof(*d));
    d->cid = le16toh(d->cid);
    d->nsid = le32toh(d->nsid);
    d->cdw2 = le32toh(d->cdw2);
    d->cdw3 = le32toh(d->cdw3);
    d->mptr = le64toh(d->mptr);
    d->dptr[0] = le64toh(d->dptr[0]);
    d->dptr[1] = le64toh(d->dptr[1]);
    d->cdw10 = le32toh(d->cdw10);
    d->cdw11 = le32toh(d->cdw11);
    d->cdw12 = le32toh(d->cdw12);
    d->cdw13 = le32toh(d->cdw13);
    d->cdw14 = le32toh(d->cdw14);
    d->cdw15 = le32toh(d->cdw15);
}

static bool sq_shadow_tail(struct nvme_ctrl *c, struct nvme_sq *sq)
{
    uint32_t v;
    if (!shadow_read(c, sq->db_addr, &v) || v == sq->tail)
        return false;
    if (v >= sq->size) {
        nvme_doorbell_error(c, NVME_AER_ERROR_INVALID_DB_VAL);
        return false;
    }
    sq->tail = v;
    return true;
}

static unsigned sq_fetch(struct nvme_ctrl *c, struct nvme_sq *sq, unsigned budget)
{
    unsigned n = 0;
    if (sq->db_addr)
        sq_shadow_tail(c, sq);
    for (;;) {
        while (sq->head != sq->tail && n < budget) {
            /* An admin command just executed may have reset or deleted things. */
            if (!sq->created || !nvme_ctrl_ready(c))
                return n;
            struct nvme_req *r = TAILQ_FIRST(&sq->free);
            if (!r)
                return n; /* every request busy: resume when one comes back */
            const struct nvme_sqe *e =
                gpa_ptr(c->mem, sq->base + (uint64_t)sq->head * sizeof(*e), sizeof(*e));
            if (!e) {
                nvme_ctrl_fatal(c, "SQ entry outside guest RAM");
                return n;
            }
            TAILQ_REMOVE(&sq->free, r, link);
            sq->inflight++;
            sqe_to_host(&r->cmd, e);
            sq->head = (sq->head + 1) % sq->size;
            nvme_req_clear(r);
            if (sq->id)
                nvme_stats_fetched(c, r);
            n++;
            if (c->nr_abort_pending && nvme_abort_match(c, r)) {
                r->aborted = true;
                r->status = NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_ABORT_REQ);
                nvme_req_complete(c, r);
            } else if (sq->id == 0) {
                nvme_admin_exec(c, r);
            } else {
                nvme_io_exec(c, r);
            }
        }
        if (!sq->db_addr || !sq->created)
            break;
        /* Publish how far we got, then look again: a host that read the old EventIdx
         * skipped the MMIO doorbell and relies on this re-read (reference §5.1.1). */
        /* While the I/O thread polls, an EventIdx just behind the tail tells the host
         * that no doorbell write is needed at all (need_event is never true). */
        shadow_write(c, sq->ei_addr, c->polling ? (sq->tail + sq->size - 1) % sq->size : sq->tail);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (n >= budget || !sq_shadow_tail(c, sq))
            break;
    }
    return n;
}

bool nvme_queues_fetch(struct nvme_ctrl *c)
{
    bool progress = false;
    /* Admin first, then every I/O queue with the same budget (round robin per pass). */
    for (int q = 0; q < NVME_MAX_QUEUES && nvme_ctrl_ready(c); q++) {
        struct nvme_sq *sq = &c->sq[q];
        if (sq->created && sq_fetch(c, sq, FETCH_BUDGET))
            progress = true;
    }
    return progress;
}

/* ---- interrupts ---- */

void nvme_irq_intx_update(struct nvme_ctrl *c)
{
    int level = 0;
    if (!c->msix_enabled)
        for (int i = 0; i < NVME_MAX_QUEUES && !level; i++) {
            const struct nvme_cq *cq = &c->cq[i];
            if (cq->created && cq->irq_pending && !(c->intms & (1u << (cq->vector & 31))))
                level = 1;
        }
    if (level != c->intx_level) {
        c->intx_level = level;
        if (c->ops->intx_set)
            c->ops->intx_set(c->opaque, level);
    }
}

static void cq_signal(struct nvme_ctrl *c, struct nvme_cq *cq)
{
    cq->unsignalled = 0;
    cq->irq_deadline_us = 0;
    cq->irq_pending = true; /* the INTx level holds until the host's head catches up */
    if (c->msix_enabled) {
        if (c->ops->msix_notify)
            c->ops->msix_notify(c->opaque, cq->vector);
    } else {
        nvme_irq_intx_update(c);
    }
}

/* Decides whether cq's posted-but-unsignalled entries raise the interrupt now. */
static bool cq_irq_eval(struct nvme_ctrl *c, struct nvme_cq *cq, uint64_t *now)
{
    if (!cq->unsignalled)
        return false;
    if (!cq->ien) {
        cq->unsignalled = 0; /* polled queue */
        return false;
    }
    uint32_t thr = c->feat.int_coalescing & 0xff, time = (c->feat.int_coalescing >> 8) & 0xff;
    /* Coalescing applies to I/O queues only, and not to vectors with CD set; TIME 0 means
     * "no delay" and THR 0 means one entry: either way, signal at once. */
    bool coalesce = cq->id != 0 && thr && time && !(c->feat.iv_config[cq->vector] & (1u << 16));
    if (coalesce && cq->unsignalled < thr + 1) {
        if (!*now)
            *now = nvme_now_us();
        if (!cq->irq_deadline_us) {
            cq->irq_deadline_us = *now + time * 100ull;
            return false;
        }
        if (*now < cq->irq_deadline_us)
            return false;
    }
    cq_signal(c, cq);
    return true;
}

void nvme_irq_update(struct nvme_ctrl *c, struct nvme_cq *cq)
{
    uint64_t now = 0;
    cq_irq_eval(c, cq, &now);
}

bool nvme_irq_process(struct nvme_ctrl *c)
{
    bool any = false;
    uint64_t now = 0;
    for (int i = 0; i < NVME_MAX_QUEUES; i++)
        if (c->cq[i].created && cq_irq_eval(c, &c->cq[i], &now))
            any = true;
    return any;
}

uint64_t nvme_irq_next_deadline_us(const struct nvme_ctrl *c)
{
    uint64_t d = UINT64_MAX;
    for (int i = 0; i < NVME_MAX_QUEUES; i++)
        if (c->cq[i].created && c->cq[i].irq_deadline_us && c->cq[i].irq_deadline_us < d)
            d = c->cq[i].irq_deadline_us;
    return d;
}
