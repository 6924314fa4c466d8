/*
 * The ring-3 I/O loop. Each job owns one I/O queue pair and keeps up to qd
 * commands in flight: fill free slots, ring the SQ doorbell once per batch,
 * reap completions by phase tag (or once the queue's MSI-X counter moved),
 * publish the CQ head once per batch. Nothing here enters ring 0.
 */
#include "nvme_io.h"

#define PAGE 4096u

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Per LBA: word 0 = LBA, word 1 = tag | pass, then a sequence seeded by (LBA, pass). */
static inline uint64_t pattern_word(uint64_t lba, uint32_t pass, uint64_t base, size_t i)
{
    if (i == 0)
        return lba;
    if (i == 1)
        return 0x74696e7900000000ULL | pass; /* "tiny" */
    return base + i * 0x9e3779b97f4a7c15ULL;
}

void pattern_fill(uint8_t *buf, uint64_t lba, unsigned nlbas, unsigned lba_shift, uint32_t pass)
{
    size_t words = ((size_t)1 << lba_shift) / 8;
    uint64_t *w = (uint64_t *)buf;
    for (unsigned s = 0; s < nlbas; s++, w += words) {
        uint64_t l = lba + s, base = mix64(l ^ (uint64_t)pass << 40);
        for (size_t i = 0; i < words; i++)
            w[i] = pattern_word(l, pass, base, i);
    }
}

int64_t pattern_check(const uint8_t *buf, uint64_t lba, unsigned nlbas, unsigned lba_shift,
                      uint32_t pass, uint64_t *want, uint64_t *got)
{
    size_t words = ((size_t)1 << lba_shift) / 8;
    const uint64_t *w = (const uint64_t *)buf;
    for (unsigned s = 0; s < nlbas; s++) {
        uint64_t l = lba + s, base = mix64(l ^ (uint64_t)pass << 40);
        for (size_t i = 0; i < words; i++) {
            uint64_t x = pattern_word(l, pass, base, i);
            if (w[s * words + i] != x) {
                *want = x;
                *got = w[s * words + i];
                return (int64_t)(s * words + i);
            }
        }
    }
    return -1;
}

static void poison(uint8_t *buf, uint32_t bytes)
{
    uint64_t *w = (uint64_t *)buf;
    for (uint32_t i = 0; i < bytes / 8; i++)
        w[i] = 0xdeadbeef0badf00dULL ^ i;
}

int io_job_setup(struct io_job *j)
{
    unsigned pages = (j->bs + PAGE - 1) / PAGE;
    j->slots = ram_alloc((uint64_t)j->qd * sizeof(struct io_slot), 64);
    j->free_ids = ram_alloc((uint64_t)j->qd * sizeof(uint16_t), 64);
    if (!j->slots || !j->free_ids)
        return -1;
    for (unsigned i = 0; i < j->qd; i++) {
        struct io_slot *s = &j->slots[i];
        s->buf = ram_alloc((uint64_t)pages * PAGE, PAGE);
        if (!s->buf)
            return -1;
        uint64_t b = (uint64_t)(uintptr_t)s->buf;
        if (pages == 2) {
            s->prp2 = b + PAGE;
        } else if (pages > 2) {
            uint64_t *list = ram_alloc(PAGE, PAGE);
            if (!list)
                return -1;
            for (unsigned k = 1; k < pages; k++)
                list[k - 1] = b + (uint64_t)k * PAGE;
            s->prp2 = (uint64_t)(uintptr_t)list;
        }
        /* Writes of the benchmark modes send this (non-zero, never re-filled) data. */
        pattern_fill(s->buf, 0x5eed0000ULL + i, j->nlb, j->c->lba_shift, 0xabcd);
        j->free_ids[i] = (uint16_t)(j->qd - 1 - i);
    }
    j->nfree = j->qd;
    j->rng = mix64(0x1234 + j->q->qid);
    j->seq = 0;
    j->reading = 1; /* so that the first verify round starts with writes */
    j->chunk = 4ULL * j->qd < 64 ? 64 : 4ULL * j->qd;
    if (j->chunk > j->nblocks)
        j->chunk = j->nblocks;
    return 0;
}

/* The next command of job j: 1 = *write / *blk / *pass set; 0 = nothing to issue now. */
static int job_next(struct io_job *j, uint64_t now, int *write, uint64_t *blk, uint32_t *pass)
{
    if (j->issued >= j->target)
        return 0;
    if (j->deadline && now > j->deadline && j->mode != IO_VERIFY) {
        j->target = j->issued;
        return 0;
    }
    *pass = 0;
    switch (j->mode) {
    case IO_RANDREAD:
    case IO_RANDWRITE:
        j->rng ^= j->rng << 13;
        j->rng ^= j->rng >> 7;
        j->rng ^= j->rng << 17;
        *blk = j->rng % j->nblocks;
        *write = j->mode == IO_RANDWRITE;
        return 1;
    case IO_SEQREAD:
    case IO_SEQWRITE:
        *blk = j->seq;
        if (++j->seq == j->nblocks)
            j->seq = 0;
        *write = j->mode == IO_SEQWRITE;
        return 1;
    case IO_VERIFY:
        if (j->round_issued == j->round_len) {
            if (j->inflight)
                return 0; /* reads only after every write of the round completed */
            if (!j->reading) {
                j->reading = 1;
            } else {
                uint64_t left = (j->target - j->issued) / 2;
                if ((j->deadline && now > j->deadline) || left == 0) {
                    j->target = j->issued;
                    return 0;
                }
                j->reading = 0;
                j->pass++;
                j->round_base = (j->round_base + j->round_len) % j->nblocks;
                j->round_len = left < j->chunk ? left : j->chunk;
            }
            j->round_issued = 0;
        }
        *blk = (j->round_base + j->round_issued++) % j->nblocks;
        *write = !j->reading;
        *pass = j->pass;
        return 1;
    }
    return 0;
}

static void note_error(struct io_job *j, enum io_err_kind kind, int status, uint16_t cid,
                       uint64_t lba)
{
    j->errors++;
    if (j->err.kind != ERR_NONE)
        return;
    j->err.kind = kind;
    j->err.status = status;
    j->err.qid = j->q->qid;
    j->err.cid = cid;
    j->err.lba = lba;
}

static void complete(struct io_job *j, const struct nvme_cqe *e, uint64_t now)
{
    if (e->cid >= j->qd || !j->slots[e->cid].busy || e->sq_id != j->q->qid) {
        note_error(j, ERR_BAD_CQE, nvme_cqe_status(e), e->cid, e->sq_id);
        return;
    }
    struct io_slot *s = &j->slots[e->cid];
    s->busy = 0;
    j->free_ids[j->nfree++] = e->cid;
    j->inflight--;
    j->done++;
    uint64_t lat = now - s->t_submit;
    j->lat_sum += lat;
    if (lat > j->lat_max)
        j->lat_max = lat;
    int st = nvme_cqe_status(e);
    if (st) {
        note_error(j, ERR_STATUS, st, e->cid, s->lba);
        return;
    }
    if (j->mode == IO_VERIFY && !s->write) {
        uint64_t want = 0, got = 0;
        int64_t off = pattern_check(s->buf, s->lba, j->nlb, j->c->lba_shift, s->pass, &want, &got);
        if (off >= 0) {
            int first = j->err.kind == ERR_NONE;
            note_error(j, ERR_MISMATCH, 0, e->cid, s->lba);
            if (first) {
                j->err.offset = (uint64_t)off * 8;
                j->err.want = want;
                j->err.got = got;
            }
        }
    }
}

static void submit(struct io_job *j, uint64_t now)
{
    unsigned added = 0;
    int write;
    uint64_t blk;
    uint32_t pass;
    while (j->nfree && job_next(j, now, &write, &blk, &pass)) {
        uint16_t id = j->free_ids[--j->nfree];
        struct io_slot *s = &j->slots[id];
        s->lba = j->lba0 + blk * j->nlb;
        s->pass = pass;
        s->write = (uint8_t)write;
        s->busy = 1;
        if (write && j->mode == IO_VERIFY)
            pattern_fill(s->buf, s->lba, j->nlb, j->c->lba_shift, pass);
        else if (j->mode == IO_VERIFY)
            poison(s->buf, j->bs); /* a read that moves no data must not see the old write */
        struct nvme_sqe cmd = {
            .cdw0 = (uint32_t)(write ? NVME_CMD_WRITE : NVME_CMD_READ) | (uint32_t)id << 16,
            .nsid = j->c->cfg.nsid,
            .prp1 = (uint64_t)(uintptr_t)s->buf,
            .prp2 = s->prp2,
            .cdw10 = (uint32_t)s->lba,
            .cdw11 = (uint32_t)(s->lba >> 32),
            .cdw12 = j->nlb - 1,
        };
        s->t_submit = rdtsc();
        nvme_sq_push(j->q, &cmd);
        if (j->inflight++ == 0)
            j->last_progress = s->t_submit;
        j->issued++;
        added++;
    }
    if (added)
        nvme_sq_ring(j->q);
}

static void reap(struct io_job *j)
{
    struct nvme_q *q = j->q;
    if (q->vector >= 0) {
        uint64_t n = msi_count[q->vector];
        if (n == j->irq_seen)
            return;
        j->irq_seen = n; /* taken before looking at the CQ: no completion can be missed */
    }
    struct nvme_cqe e;
    uint64_t now = rdtsc();
    unsigned got = 0;
    while (nvme_cq_pop(q, &e)) {
        complete(j, &e, now);
        got++;
    }
    if (got) {
        nvme_cq_ring(q);
        j->last_progress = now;
    }
}

static void stalled(struct io_job *j, uint64_t now)
{
    struct nvme_q *q = j->q;
    uint64_t idle = now - j->last_progress;
    /*
     * Shadow doorbells: a device that misses an update (EventIdx race) would stall
     * the queue. Ring the MMIO doorbell once per stall after 100 ms and count it.
     */
    if (q->sq_shadow && idle > ms_to_tsc(100) && j->kick_mark != j->last_progress) {
        j->kick_mark = j->last_progress;
        j->kicks++;
        if (j->kicks <= 3) /* diagnostics: what the device last saw */
            kprintf("tiny: nvme stall qid=%u sq_tail=%u sq_ei=%u cq_head=%u cq_ei=%u inflight=%u\n",
                    q->qid, q->sq_tail, *q->sq_ei, q->cq_head, *q->cq_ei, j->inflight);
        *q->sq_db = q->sq_tail;
        *q->cq_db = q->cq_head;
    }
    if (idle > j->timeout_tsc) {
        uint32_t csts = nvme_rd32(j->c, NVME_CSTS);
        fail(EXIT_TIMEOUT,
             "nvme: I/O timeout qid=%u inflight=%u issued=%lu done=%lu sq_tail=%u cq_head=%u "
             "phase=%u irqs=%lu csts=0x%x",
             q->qid, j->inflight, j->issued, j->done, q->sq_tail, q->cq_head, q->phase,
             q->vector >= 0 ? msi_count[q->vector] : 0, csts);
    }
}

void io_run(struct io_job **jobs, unsigned n)
{
    uint64_t t0 = rdtsc();
    for (unsigned i = 0; i < n; i++) {
        jobs[i]->t_start = t0;
        jobs[i]->last_progress = t0;
        jobs[i]->irq_seen = jobs[i]->q->vector >= 0 ? msi_count[jobs[i]->q->vector] : 0;
    }
    for (unsigned active = n; active;) {
        active = 0;
        for (unsigned i = 0; i < n; i++) {
            struct io_job *j = jobs[i];
            if (j->finished)
                continue;
            uint64_t now = rdtsc();
            submit(j, now);
            if (j->inflight)
                reap(j);
            if (j->inflight == 0 && j->issued >= j->target) {
                j->finished = 1;
                j->t_end = rdtsc();
                continue;
            }
            active++;
            if (j->inflight && now - j->last_progress > ms_to_tsc(50))
                stalled(j, rdtsc());
        }
    }
}

int nvme_io_sync(struct nvme_ctrl *c, struct nvme_q *q, uint16_t cid, uint8_t opc, uint32_t nsid,
                 uint64_t slba, uint32_t nlb, uint64_t prp1, uint64_t prp2)
{
    struct nvme_sqe cmd = {
        .cdw0 = opc | (uint32_t)cid << 16,
        .nsid = nsid,
        .prp1 = prp1,
        .prp2 = prp2,
        .cdw10 = (uint32_t)slba,
        .cdw11 = (uint32_t)(slba >> 32),
        .cdw12 = nlb - 1,
    };
    nvme_sq_push(q, &cmd);
    nvme_sq_ring(q);
    uint64_t t0 = rdtsc();
    for (;;) {
        struct nvme_cqe e;
        uint64_t spent = rdtsc() - t0;
        int r = nvme_cq_wait(c, q, &e, spent < c->cmd_tsc ? c->cmd_tsc - spent : 0);
        if (r)
            return r;
        nvme_cq_ring(q);
        if (e.cid == cid)
            return nvme_cqe_status(&e);
        c->stray_cqes++;
        kprintf("tiny: nvme: stray completion qid=%u cid=0x%x status=0x%x\n", q->qid, e.cid,
                nvme_cqe_status(&e));
    }
}
