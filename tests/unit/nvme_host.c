/* Simulated NVMe host driver for the controller model's unit tests (see nvme_host.h). */
#include "tests/unit/nvme_host.h"

#include <stdlib.h>
#include <string.h>

static void on_msix(void *opaque, uint16_t vector)
{
    struct host *h = opaque;
    if (vector < NVME_NR_VECTORS)
        h->msix[vector]++;
    h->msix_total++;
}

static void on_intx(void *opaque, int level)
{
    struct host *h = opaque;
    if (level && !h->intx)
        h->intx_raises++;
    h->intx = level;
}

static void on_kick(void *opaque)
{
    struct host *h = opaque;
    h->kicks++;
}

static void on_shadow_changed(void *opaque, bool on)
{
    struct host *h = opaque;
    h->shadow_on = on;
}

static const struct nvme_host_ops host_ops = {.msix_notify = on_msix,
                                              .intx_set = on_intx,
                                              .kick = on_kick,
                                              .shadow_changed = on_shadow_changed};

struct host *host_new(const struct host_opts *o)
{
    struct host *h = calloc(1, sizeof(*h));
    h->ram = calloc(1, HOST_RAM);
    guest_mem_layout(&h->mem, h->ram, HOST_RAM, HOST_RAM);
    h->next_page = 0x100000; /* leave low memory unused: address 0 stays invalid */
    struct nvme_ctrl_config cfg = {
        .serial = "TEST0001",
        .model = "nvmevm test",
        .nr_io_queues = o && o->nr_io_queues ? o->nr_io_queues : 8,
        .mqes = o && o->mqes ? o->mqes : 1023,
        .mdts = o && o->mdts ? o->mdts : 7,
        .ns_dir = o ? o->ns_dir : NULL,
    };
    cfg.nr_ns = o && o->nr_ns ? o->nr_ns : 1;
    for (int i = 0; i < cfg.nr_ns; i++) {
        h->disk[i] = blk_mem_new(HOST_DISK);
        cfg.ns[i].blk = h->disk[i];
        cfg.ns[i].lba_shift = 9;
        cfg.ns[i].deletable = o && (o->deletable_mask >> i & 1);
    }
    h->nr_disks = cfg.nr_ns;
    h->c = nvme_ctrl_new(&cfg, &h->mem, &host_ops, h);
    return h;
}

void host_free(struct host *h)
{
    nvme_ctrl_free(h->c);
    for (int i = 0; i < h->nr_disks; i++)
        blk_close(h->disk[i]);
    free(h->mem.dirty);
    free(h->ram);
    free(h);
}

uint32_t host_rd32(struct host *h, uint64_t off)
{
    return (uint32_t)nvme_ctrl_mmio_read(h->c, off, 4);
}

uint64_t host_rd64(struct host *h, uint64_t off)
{
    return nvme_ctrl_mmio_read(h->c, off, 8);
}

void host_wr32(struct host *h, uint64_t off, uint32_t v)
{
    if (h->swallow_dbs && h->shadow_on && off >= NVME_DOORBELL_BASE + 8 && off < NVME_BAR0_SIZE) {
        h->swallowed++;
        return;
    }
    nvme_ctrl_mmio_write(h->c, off, v, 4);
}

void host_wr64(struct host *h, uint64_t off, uint64_t v)
{
    nvme_ctrl_mmio_write(h->c, off, v, 8);
}

uint64_t host_alloc(struct host *h, uint64_t size)
{
    uint64_t gpa = h->next_page;
    h->next_page += (size + 4095) & ~4095ull;
    if (h->next_page > HOST_RAM)
        abort();
    memset(h->ram + gpa, 0, size);
    return gpa;
}

void *host_ptr(struct host *h, uint64_t gpa)
{
    return h->ram + gpa;
}

bool host_process(struct host *h)
{
    return nvme_ctrl_process(h->c);
}

bool host_enable(struct host *h, uint32_t depth)
{
    struct host_q *q = &h->q[0];
    memset(q, 0, sizeof(*q));
    q->depth = depth;
    q->sq = host_alloc(h, depth * 64);
    q->cq = host_alloc(h, depth * 16);
    q->phase = 1;
    host_wr32(h, NVME_REG_AQA, (depth - 1) << 16 | (depth - 1));
    host_wr64(h, NVME_REG_ASQ, q->sq);
    host_wr64(h, NVME_REG_ACQ, q->cq);
    host_wr32(h, NVME_REG_CC, 1 | 6 << 16 | 4 << 20);
    return host_rd32(h, NVME_REG_CSTS) & 1;
}

bool host_disable(struct host *h)
{
    host_wr32(h, NVME_REG_CC, host_rd32(h, NVME_REG_CC) & ~1u);
    for (int i = 0; i < HOST_TIMEOUT && (host_rd32(h, NVME_REG_CSTS) & 1); i++)
        host_process(h);
    memset(h->q, 0, sizeof(h->q));
    h->dbs = h->eis = 0;
    return !(host_rd32(h, NVME_REG_CSTS) & 1);
}

void host_ring_sq(struct host *h, uint16_t qid)
{
    struct host_q *q = &h->q[qid];
    if (q->shadow) {
        /* Linux: shadow first, full barrier, MMIO only if we crossed EventIdx. */
        uint32_t *db = host_ptr(h, h->dbs + qid * 8u), *ei = host_ptr(h, h->eis + qid * 8u);
        uint32_t old = *db;
        __atomic_store_n(db, q->sq_tail, __ATOMIC_SEQ_CST);
        uint16_t e = (uint16_t)*ei, n = (uint16_t)q->sq_tail, o = (uint16_t)old;
        if ((uint16_t)(n - e - 1) < (uint16_t)(n - o))
            host_wr32(h, NVME_DOORBELL_BASE + qid * 8u, q->sq_tail);
        return;
    }
    host_wr32(h, NVME_DOORBELL_BASE + qid * 8u, q->sq_tail);
}

uint16_t host_submit(struct host *h, uint16_t qid, struct nvme_sqe *cmd, bool noring)
{
    struct host_q *q = &h->q[qid];
    cmd->cid = h->next_cid++;
    memcpy(host_ptr(h, q->sq + (uint64_t)q->sq_tail * 64), cmd, 64);
    q->sq_tail = (q->sq_tail + 1) % q->depth;
    if (!noring)
        host_ring_sq(h, qid);
    return cmd->cid;
}

bool host_peek(struct host *h, uint16_t qid, struct nvme_cqe *out)
{
    struct host_q *q = &h->q[qid];
    if (!q->depth)
        return false;
    if (q->nstash) {
        if (out)
            *out = q->stash[0];
        return true;
    }
    struct nvme_cqe *e = host_ptr(h, q->cq + (uint64_t)q->cq_head * 16);
    if ((le16toh(__atomic_load_n(&e->status, __ATOMIC_ACQUIRE)) & 1) != q->phase)
        return false;
    if (out)
        memcpy(out, e, sizeof(*out));
    return true;
}

bool host_poll(struct host *h, uint16_t qid, struct nvme_cqe *out)
{
    struct host_q *q = &h->q[qid];
    if (q->nstash) {
        if (out)
            *out = q->stash[0];
        memmove(&q->stash[0], &q->stash[1], --q->nstash * sizeof(q->stash[0]));
        return true;
    }
    if (!host_peek(h, qid, out))
        return false;
    if (++q->cq_head == q->depth) {
        q->cq_head = 0;
        q->phase ^= 1;
    }
    if (q->shadow)
        __atomic_store_n((uint32_t *)host_ptr(h, h->dbs + qid * 8u + 4), q->cq_head,
                         __ATOMIC_SEQ_CST);
    host_wr32(h, NVME_DOORBELL_BASE + qid * 8u + 4, q->cq_head);
    return true;
}

uint16_t host_wait(struct host *h, uint16_t qid, struct nvme_cqe *out)
{
    struct nvme_cqe tmp;
    for (int i = 0; i < HOST_TIMEOUT; i++) {
        if (host_poll(h, qid, &tmp)) {
            if (out)
                *out = tmp;
            return cqe_sf(&tmp);
        }
        host_process(h);
    }
    return HOST_NO_CQE;
}

uint16_t host_wait_cid(struct host *h, uint16_t qid, uint16_t cid, struct nvme_cqe *out)
{
    struct host_q *q = &h->q[qid];
    for (int i = 0; i < q->nstash; i++)
        if (q->stash[i].cid == cid) {
            struct nvme_cqe e = q->stash[i];
            memmove(&q->stash[i], &q->stash[i + 1], (size_t)(--q->nstash - i) * sizeof(e));
            if (out)
                *out = e;
            return cqe_sf(&e);
        }
    struct nvme_cqe e;
    for (int i = 0; i < HOST_TIMEOUT; i++) {
        int saved = q->nstash;
        q->nstash = 0; /* take from the ring, not the stash */
        bool got = host_poll(h, qid, &e);
        q->nstash = saved;
        if (got) {
            if (e.cid == cid) {
                if (out)
                    *out = e;
                return cqe_sf(&e);
            }
            if (q->nstash < 16)
                q->stash[q->nstash++] = e;
            continue;
        }
        host_process(h);
    }
    return HOST_NO_CQE;
}

uint16_t host_admin(struct host *h, struct nvme_sqe *cmd, struct nvme_cqe *out)
{
    uint16_t cid = host_submit(h, 0, cmd, false);
    return host_wait_cid(h, 0, cid, out);
}

uint16_t host_io(struct host *h, uint16_t qid, struct nvme_sqe *cmd, struct nvme_cqe *out)
{
    uint16_t cid = host_submit(h, qid, cmd, false);
    return host_wait_cid(h, qid, cid, out);
}

int host_create_io_queues(struct host *h, int n, uint32_t depth, int vector)
{
    uint32_t res = 0;
    if (host_set_feature(h, NVME_FEAT_FID_NUM_QUEUES, (uint32_t)(n - 1) << 16 | (uint32_t)(n - 1),
                         &res))
        return 0;
    int granted = (int)(res & 0xffff) + 1;
    int made = 0;
    for (int i = 1; i <= n && i <= granted; i++) {
        struct host_q *q = &h->q[i];
        memset(q, 0, sizeof(*q));
        q->depth = depth;
        q->phase = 1;
        q->sq = host_alloc(h, depth * 64);
        q->cq = host_alloc(h, depth * 16);
        uint16_t iv = (uint16_t)(vector < 0 ? i : vector);
        struct nvme_sqe cq = {.opcode = nvme_admin_create_cq,
                              .dptr = {q->cq},
                              .cdw10 = (depth - 1) << 16 | (uint32_t)i,
                              .cdw11 = (uint32_t)iv << 16 | 3};
        if (host_admin(h, &cq, NULL))
            break;
        struct nvme_sqe sq = {.opcode = nvme_admin_create_sq,
                              .dptr = {q->sq},
                              .cdw10 = (depth - 1) << 16 | (uint32_t)i,
                              .cdw11 = (uint32_t)i << 16 | 1};
        if (host_admin(h, &sq, NULL))
            break;
        made++;
    }
    return made;
}

bool host_create_tiny_cq_pair(struct host *h)
{
    if (host_set_feature(h, NVME_FEAT_FID_NUM_QUEUES, 0, NULL))
        return false;
    uint64_t cq = host_alloc(h, 4096), sq = host_alloc(h, 4096);
    struct nvme_sqe mk = {
        .opcode = nvme_admin_create_cq, .dptr = {cq}, .cdw10 = 3u << 16 | 1, .cdw11 = 1u << 16 | 3};
    if (host_admin(h, &mk, NULL))
        return false;
    mk = (struct nvme_sqe){.opcode = nvme_admin_create_sq,
                           .dptr = {sq},
                           .cdw10 = 15u << 16 | 1,
                           .cdw11 = 1u << 16 | 1};
    if (host_admin(h, &mk, NULL))
        return false;
    h->q[1] = (struct host_q){.sq = sq, .cq = cq, .depth = 16, .phase = 1};
    return true;
}

uint16_t host_identify(struct host *h, uint8_t cns, uint32_t nsid, uint32_t cdw11, void *buf)
{
    uint64_t gpa = host_alloc(h, 4096);
    struct nvme_sqe cmd = {
        .opcode = nvme_admin_identify, .nsid = nsid, .dptr = {gpa}, .cdw10 = cns, .cdw11 = cdw11};
    uint16_t st = host_admin(h, &cmd, NULL);
    if (buf)
        memcpy(buf, host_ptr(h, gpa), 4096);
    return st;
}

uint16_t host_get_log(struct host *h, uint8_t lid, uint32_t nsid, uint32_t len, uint64_t off,
                      bool rae, void *buf)
{
    uint64_t gpa = host_alloc(h, len);
    uint32_t numd = len / 4 - 1;
    struct nvme_sqe cmd = {.opcode = nvme_admin_get_log_page,
                           .nsid = nsid,
                           .dptr = {gpa, 0},
                           .cdw10 = lid | (rae ? 1u << 15 : 0) | (numd & 0xffff) << 16,
                           .cdw11 = numd >> 16,
                           .cdw12 = (uint32_t)off,
                           .cdw13 = (uint32_t)(off >> 32)};
    if (len > 4096) {
        /* Two pages at most in these tests: PRP2 is the second page. */
        cmd.dptr[1] = gpa + 4096;
    }
    uint16_t st = host_admin(h, &cmd, NULL);
    if (buf)
        memcpy(buf, host_ptr(h, gpa), len);
    return st;
}

uint16_t host_set_feature(struct host *h, uint8_t fid, uint32_t cdw11, uint32_t *result)
{
    struct nvme_sqe cmd = {.opcode = nvme_admin_set_features, .cdw10 = fid, .cdw11 = cdw11};
    struct nvme_cqe e = {0};
    uint16_t st = host_admin(h, &cmd, &e);
    if (result)
        *result = le32toh(e.dw0);
    return st;
}

uint16_t host_get_feature(struct host *h, uint8_t fid, uint8_t sel, uint32_t cdw11,
                          uint32_t *result)
{
    struct nvme_sqe cmd = {
        .opcode = nvme_admin_get_features, .cdw10 = fid | (uint32_t)sel << 8, .cdw11 = cdw11};
    struct nvme_cqe e = {0};
    uint16_t st = host_admin(h, &cmd, &e);
    if (result)
        *result = le32toh(e.dw0);
    return st;
}

uint16_t host_rw(struct host *h, uint16_t qid, bool write, uint64_t slba, uint32_t nlb,
                 uint64_t gpa)
{
    uint64_t len = (uint64_t)(nlb + 1) * 512;
    struct nvme_sqe cmd = {.opcode = write ? nvme_cmd_write : nvme_cmd_read,
                           .nsid = 1,
                           .dptr = {gpa, 0},
                           .cdw10 = (uint32_t)slba,
                           .cdw11 = (uint32_t)(slba >> 32),
                           .cdw12 = nlb};
    uint64_t first = 4096 - (gpa & 4095);
    if (len > first) {
        if (len - first <= 4096) {
            cmd.dptr[1] = gpa + first;
        } else {
            /* PRP list in its own page, for contiguous guest buffers. */
            uint64_t list = host_alloc(h, 4096);
            uint64_t *ents = host_ptr(h, list);
            uint64_t p = gpa + first;
            for (int i = 0; p < gpa + len && i < 511; i++, p += 4096)
                ents[i] = p;
            cmd.dptr[1] = list;
        }
    }
    return host_io(h, qid, &cmd, NULL);
}

uint16_t host_dbbuf(struct host *h)
{
    uint64_t dbs = host_alloc(h, 4096), eis = host_alloc(h, 4096);
    struct nvme_sqe cmd = {.opcode = nvme_admin_dbbuf, .dptr = {dbs, eis}};
    uint16_t st = host_admin(h, &cmd, NULL);
    if (st == 0) {
        h->dbs = dbs;
        h->eis = eis;
        for (int i = 1; i < NVME_MAX_QUEUES; i++)
            if (h->q[i].depth)
                h->q[i].shadow = true;
    }
    return st;
}
