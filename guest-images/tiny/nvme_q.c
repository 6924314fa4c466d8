/*
 * NVMe queue primitives, used from ring 3 in the hot loop: SQ push, doorbells
 * (MMIO, or shadow doorbell + EventIdx after Doorbell Buffer Config) and CQ
 * phase-tag polling. Queue memory is ordinary write-back RAM; the device reads
 * it by DMA, so the only ordering needed on x86 (TSO) is compiler ordering,
 * plus a full fence between the shadow store and the EventIdx load.
 */
#include "nvme.h"

void nvme_q_setup(struct nvme_ctrl *c, struct nvme_q *q, uint16_t qid, uint16_t size,
                  struct nvme_sqe *sq, volatile struct nvme_cqe *cq)
{
    memset(q, 0, sizeof(*q));
    q->qid = qid;
    q->size = size;
    q->phase = 1;
    q->sq = sq;
    q->cq = cq;
    q->vector = -1;
    q->sq_db = (volatile uint32_t *)(c->bar + NVME_DBS + (2u * qid) * c->db_stride);
    q->cq_db = (volatile uint32_t *)(c->bar + NVME_DBS + (2u * qid + 1) * c->db_stride);
    memset(sq, 0, (size_t)size * sizeof(*sq));
    memset((void *)cq, 0, (size_t)size * sizeof(*cq));
}

/* Shadow doorbell and EventIdx slots use the same layout as the MMIO doorbells. */
void nvme_q_shadow(struct nvme_ctrl *c, struct nvme_q *q)
{
    unsigned sq_off = (2u * q->qid) * c->db_stride / 4,
             cq_off = (2u * q->qid + 1) * c->db_stride / 4;
    q->sq_shadow = c->dbbuf_db + sq_off;
    q->cq_shadow = c->dbbuf_db + cq_off;
    q->sq_ei = c->dbbuf_ei + sq_off;
    q->cq_ei = c->dbbuf_ei + cq_off;
    *q->sq_shadow = q->sq_pub;
    *q->cq_shadow = q->cq_pub;
}

void nvme_sq_push(struct nvme_q *q, const struct nvme_sqe *cmd)
{
    uint64_t *d = (uint64_t *)&q->sq[q->sq_tail];
    const uint64_t *s = (const uint64_t *)cmd;
    for (int i = 0; i < 8; i++)
        d[i] = s[i];
    if (++q->sq_tail == q->size)
        q->sq_tail = 0;
}

/* The standard EventIdx test: did new_idx move past event_idx since old? */
static inline int need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old)
{
    return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old);
}

static inline void publish(struct nvme_q *q, volatile uint32_t *shadow, volatile uint32_t *ei,
                           volatile uint32_t *db, uint16_t *pub, uint16_t val)
{
    uint16_t old = *pub;
    *pub = val;
    barrier(); /* queue entries / consumed CQEs before the doorbell */
    if (shadow) {
        *shadow = val;
        mfence(); /* the shadow store must be visible before EventIdx is read */
        if (!need_event((uint16_t)*ei, val, old) && !q->always_mmio) {
            q->shadow_only_db++;
            return;
        }
    }
    *db = val;
    q->mmio_db++;
}

void nvme_sq_ring(struct nvme_q *q)
{
    publish(q, q->sq_shadow, q->sq_ei, q->sq_db, &q->sq_pub, q->sq_tail);
}

void nvme_cq_ring(struct nvme_q *q)
{
    publish(q, q->cq_shadow, q->cq_ei, q->cq_db, &q->cq_pub, q->cq_head);
}

int nvme_cq_pop(struct nvme_q *q, struct nvme_cqe *out)
{
    volatile struct nvme_cqe *e = &q->cq[q->cq_head];
    uint16_t st = e->status;
    if ((st & 1) != q->phase)
        return 0;
    out->dw0 = e->dw0;
    out->dw1 = e->dw1;
    out->sq_head = e->sq_head;
    out->sq_id = e->sq_id;
    out->cid = e->cid;
    out->status = st;
    if (++q->cq_head == q->size) {
        q->cq_head = 0;
        q->phase ^= 1;
    }
    return 1;
}

int nvme_cq_wait(struct nvme_ctrl *c, struct nvme_q *q, struct nvme_cqe *out, uint64_t tsc)
{
    uint64_t t0 = rdtsc(), last_csts = t0, csts_every = tsc_mhz() * 1000; /* 1 ms */
    for (uint64_t i = 0;; i++) {
        if (nvme_cq_pop(q, out))
            return 0;
        uint64_t now = rdtsc();
        if (now - last_csts > csts_every) {
            last_csts = now;
            if (nvme_rd32(c, NVME_CSTS) & NVME_CSTS_CFS)
                return NVME_ST_FATAL;
        }
        if (now - t0 > tsc || i > 20000000000ULL)
            return nvme_cq_pop(q, out) ? 0 : NVME_ST_TIMEOUT;
        cpu_relax();
    }
}
