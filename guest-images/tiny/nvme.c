/*
 * NVMe controller bring-up and admin commands (ring 3, polled): find the PCI
 * function, map BAR0, reset/enable, Identify, Set Features (Number of Queues),
 * Doorbell Buffer Config, MSI-X routing, I/O queue creation. Every wait is
 * bounded by the TSC (CAP.TO for RDY, cfg.timeout_ms for commands).
 */
#include "lapic.h"
#include "nvme.h"

#define PAGE 4096u

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* Copy a space-padded identify string, dropping trailing blanks and non-printables. */
static void id_string(char *dst, const uint8_t *src, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = (char)src[i];
        dst[i] = (ch >= 0x20 && ch < 0x7f) ? ch : '?';
        if (ch != ' ' && ch != 0)
            len = i + 1;
    }
    dst[len] = '\0';
}

const char *nvme_status_str(int st)
{
    if (st == NVME_ST_TIMEOUT)
        return "timeout";
    if (st == NVME_ST_FATAL)
        return "controller fatal (CSTS.CFS)";
    switch (st & 0x7ff) {
    case 0x000:
        return "success";
    case 0x001:
        return "invalid opcode";
    case 0x002:
        return "invalid field";
    case 0x004:
        return "data transfer error";
    case 0x006:
        return "internal error";
    case 0x007:
        return "abort requested";
    case 0x008:
        return "aborted: SQ deleted";
    case 0x00b:
        return "invalid namespace or format";
    case 0x013:
        return "PRP offset invalid";
    case 0x080:
        return "LBA out of range";
    case 0x081:
        return "capacity exceeded";
    case 0x100:
        return "completion queue invalid";
    case 0x101:
        return "invalid queue identifier";
    case 0x102:
        return "invalid queue size";
    case 0x10c:
        return "invalid queue deletion";
    case 0x280:
        return "write fault";
    case 0x281:
        return "unrecovered read error";
    default:
        return "other";
    }
}

int nvme_probe(struct nvme_ctrl *c, unsigned index)
{
    memset(c, 0, sizeof(*c));
    if (pci_find_class(0x010802, index, &c->pci)) {
        kprintf("tiny: nvme: no NVMe controller (class 01:08:02) #%u on PCI bus 0\n", index);
        return -1;
    }
    uint64_t size = 0, bar = pci_map_bar(&c->pci, 0, &size);
    if (!bar || size < 0x2000) {
        kprintf("tiny: nvme: BAR0 unusable (addr 0x%lx size 0x%lx)\n", bar, size);
        return -1;
    }
    /* The BAR must be reachable from ring 3 and uncached: P RW US PWT PCD. */
    for (uint64_t a = bar; a < bar + size; a += PAGE) {
        uint64_t f = page_flags(a);
        if ((f & 0x1f) != 0x1f) {
            kprintf("tiny: nvme: BAR0 page 0x%lx not mapped user/uncached (flags 0x%lx)\n", a, f);
            return -1;
        }
    }
    pci_write16(&c->pci, PCI_COMMAND,
                (uint16_t)(pci_read16(&c->pci, PCI_COMMAND) | PCI_CMD_MEM | PCI_CMD_MASTER));
    c->bar = (volatile uint8_t *)(uintptr_t)bar;
    c->bar_size = size;
    /* 64-bit registers as two 32-bit accesses, low half first (like Linux' lo_hi_readq). */
    c->cap = nvme_rd32(c, NVME_CAP) | (uint64_t)nvme_rd32(c, NVME_CAP + 4) << 32;
    c->vs = nvme_rd32(c, NVME_VS);
    c->db_stride = 4u << ((c->cap >> 32) & 0xf);
    uint64_t to = (c->cap >> 24) & 0xff;
    c->ready_tsc = ms_to_tsc((to ? to : 1) * 500);
    if (!((c->cap >> 37) & 1)) {
        kprintf("tiny: nvme: CAP.CSS lacks the NVM command set (cap=0x%lx)\n", c->cap);
        return -1;
    }
    if ((c->cap >> 48) & 0xf) {
        kprintf("tiny: nvme: CAP.MPSMIN > 4 KiB (cap=0x%lx)\n", c->cap);
        return -1;
    }
    c->page = ram_alloc(PAGE, PAGE);
    struct nvme_sqe *asq = ram_alloc(NVME_ADMIN_QSZ * sizeof(struct nvme_sqe), PAGE);
    struct nvme_cqe *acq = ram_alloc(NVME_ADMIN_QSZ * sizeof(struct nvme_cqe), PAGE);
    c->dbbuf_db = ram_alloc(PAGE, PAGE);
    c->dbbuf_ei = ram_alloc(PAGE, PAGE);
    if (!c->page || !asq || !acq || !c->dbbuf_ei) {
        kprintf("tiny: nvme: out of RAM for the admin queues\n");
        return -1;
    }
    c->admin.sq = asq;
    c->admin.cq = acq;
    return 0;
}

static int wait_csts(struct nvme_ctrl *c, uint32_t rdy_want, const char *what)
{
    uint64_t t0 = rdtsc();
    for (uint64_t i = 0; i < 2000000000ULL; i++) {
        uint32_t csts = nvme_rd32(c, NVME_CSTS);
        if (csts == 0xffffffffu) {
            kprintf("tiny: nvme: CSTS reads all ones (%s)\n", what);
            return -1;
        }
        if ((csts & NVME_CSTS_RDY) == rdy_want)
            return 0;
        if (rdy_want && (csts & NVME_CSTS_CFS)) {
            kprintf("tiny: nvme: controller fatal status while %s (csts=0x%x)\n", what, csts);
            return -1;
        }
        if (rdtsc() - t0 > c->ready_tsc)
            break;
        tsc_delay(tsc_mhz() * 10); /* 10 us between polls */
    }
    kprintf("tiny: nvme: timeout %s (CAP.TO=%lu x 500 ms, csts=0x%x)\n", what,
            (c->cap >> 24) & 0xff, nvme_rd32(c, NVME_CSTS));
    return -1;
}

int nvme_disable(struct nvme_ctrl *c)
{
    uint32_t cc = nvme_rd32(c, NVME_CC);
    if (cc & NVME_CC_EN)
        nvme_wr32(c, NVME_CC, cc & ~NVME_CC_EN);
    c->nr_io = 0;
    c->aer_outstanding = 0;
    c->dbbuf_on = 0;
    return wait_csts(c, 0, "waiting for CSTS.RDY=0 after CC.EN=0");
}

static int nvme_enable(struct nvme_ctrl *c)
{
    struct nvme_q *a = &c->admin;
    nvme_q_setup(c, a, 0, NVME_ADMIN_QSZ, a->sq, a->cq);
    a->always_mmio = 1;
    uint64_t asq = (uint64_t)(uintptr_t)a->sq, acq = (uint64_t)(uintptr_t)a->cq;
    nvme_wr32(c, NVME_AQA, (NVME_ADMIN_QSZ - 1u) << 16 | (NVME_ADMIN_QSZ - 1u));
    nvme_wr32(c, NVME_ASQ, (uint32_t)asq);
    nvme_wr32(c, NVME_ASQ + 4, (uint32_t)(asq >> 32));
    nvme_wr32(c, NVME_ACQ, (uint32_t)acq);
    nvme_wr32(c, NVME_ACQ + 4, (uint32_t)(acq >> 32));
    /* CSS = 0 (NVM), MPS = 0 (4 KiB), AMS = 0 (round robin), SHN = 0. */
    nvme_wr32(c, NVME_CC, NVME_CC_IOSQES | NVME_CC_IOCQES | NVME_CC_EN);
    return wait_csts(c, NVME_CSTS_RDY, "waiting for CSTS.RDY=1 after CC.EN=1");
}

/* A completion on the admin queue that is not the command being waited for. */
static void admin_other(struct nvme_ctrl *c, const struct nvme_cqe *e)
{
    if (e->cid == NVME_AER_CID && c->aer_outstanding) {
        c->aer_outstanding = 0;
        c->aer_count++;
        c->aer_dw0 = nvme_cqe_status(e) ? 0xffffffffu : e->dw0;
        c->aer_new = 1;
    } else {
        c->stray_cqes++;
        kprintf("tiny: nvme: stray admin completion cid=0x%x status=0x%x\n", e->cid,
                nvme_cqe_status(e));
    }
}

int nvme_admin(struct nvme_ctrl *c, struct nvme_sqe *cmd, uint32_t *dw0)
{
    uint16_t cid = c->next_cid++;
    if (c->next_cid >= 0xff00)
        c->next_cid = 0;
    cmd->cdw0 = (cmd->cdw0 & 0xffff) | (uint32_t)cid << 16;
    nvme_sq_push(&c->admin, cmd);
    nvme_sq_ring(&c->admin);
    uint64_t t0 = rdtsc();
    for (;;) {
        uint64_t spent = rdtsc() - t0;
        struct nvme_cqe e;
        int r = nvme_cq_wait(c, &c->admin, &e, spent < c->cmd_tsc ? c->cmd_tsc - spent : 0);
        if (r)
            return r;
        nvme_cq_ring(&c->admin);
        if (e.cid == cid) {
            if (dw0)
                *dw0 = e.dw0;
            return nvme_cqe_status(&e);
        }
        admin_other(c, &e);
    }
}

void nvme_admin_poll(struct nvme_ctrl *c)
{
    struct nvme_cqe e;
    int got = 0;
    while (nvme_cq_pop(&c->admin, &e)) {
        admin_other(c, &e);
        got = 1;
    }
    if (got)
        nvme_cq_ring(&c->admin);
}

void nvme_post_aer(struct nvme_ctrl *c)
{
    if (c->aer_outstanding)
        return;
    struct nvme_sqe cmd = {.cdw0 = NVME_ADM_AER | (uint32_t)NVME_AER_CID << 16};
    c->aer_outstanding = 1;
    nvme_sq_push(&c->admin, &cmd);
    nvme_sq_ring(&c->admin);
}

static int identify(struct nvme_ctrl *c)
{
    uint8_t *p = c->page;
    struct nvme_sqe cmd = {.cdw0 = NVME_ADM_IDENTIFY, .prp1 = (uintptr_t)p, .cdw10 = 1};
    int st = nvme_admin(c, &cmd, NULL);
    if (st) {
        kprintf("tiny: nvme: Identify Controller failed: 0x%x %s\n", st, nvme_status_str(st));
        return -1;
    }
    c->vid = (uint16_t)(p[0] | p[1] << 8);
    id_string(c->sn, p + 4, 20);
    id_string(c->mn, p + 24, 40);
    id_string(c->fr, p + 64, 8);
    c->mdts = p[77];
    c->oacs = (uint16_t)(p[256] | p[257] << 8);
    c->nn = le32(p + 516);
    c->max_xfer = c->mdts ? (uint64_t)PAGE << c->mdts : 0;

    memset(p, 0, PAGE);
    struct nvme_sqe ns = {.cdw0 = NVME_ADM_IDENTIFY, .nsid = c->cfg.nsid, .prp1 = (uintptr_t)p};
    st = nvme_admin(c, &ns, NULL);
    if (st) {
        kprintf("tiny: nvme: Identify Namespace %u failed: 0x%x %s\n", c->cfg.nsid, st,
                nvme_status_str(st));
        return -1;
    }
    c->nsze = le64(p);
    unsigned flbas = p[26], fmt = (flbas & 0xf) | ((flbas >> 5) & 3) << 4;
    uint32_t lbaf = le32(p + 128 + 4 * fmt);
    unsigned lbads = (lbaf >> 16) & 0xff, ms = lbaf & 0xffff;
    if (c->nsze == 0) {
        kprintf("tiny: nvme: namespace %u is not active (NSZE=0)\n", c->cfg.nsid);
        return -1;
    }
    if (lbads != 9 && lbads != 12) {
        kprintf("tiny: nvme: namespace %u: LBA size 2^%u not supported (only 512 and 4096)\n",
                c->cfg.nsid, lbads);
        return -1;
    }
    if (ms) {
        kprintf("tiny: nvme: namespace %u: LBA format with %u metadata bytes not supported\n",
                c->cfg.nsid, ms);
        return -1;
    }
    c->lba_shift = lbads;
    return 0;
}

static int set_num_queues(struct nvme_ctrl *c, unsigned n)
{
    uint32_t dw0 = 0;
    struct nvme_sqe cmd = {.cdw0 = NVME_ADM_SET_FEATURE,
                           .cdw10 = NVME_FEAT_NUM_QUEUES,
                           .cdw11 = (n - 1) << 16 | (n - 1)};
    int st = nvme_admin(c, &cmd, &dw0);
    if (st) {
        kprintf("tiny: nvme: Set Features (Number of Queues) failed: 0x%x %s\n", st,
                nvme_status_str(st));
        return -1;
    }
    unsigned nsq = (dw0 & 0xffff) + 1, ncq = (dw0 >> 16) + 1;
    if (nsq < n || ncq < n) {
        kprintf("tiny: nvme: controller grants %u SQs / %u CQs, %u wanted\n", nsq, ncq, n);
        return -1;
    }
    return 0;
}

static void setup_dbbuf(struct nvme_ctrl *c)
{
    if (!(c->oacs & NVME_OACS_DBBUF)) {
        kprintf("tiny: note: controller lacks Doorbell Buffer Config (OACS=0x%x): using MMIO "
                "doorbells\n",
                c->oacs);
        return;
    }
    memset(c->dbbuf_db, 0, PAGE);
    memset(c->dbbuf_ei, 0, PAGE);
    struct nvme_sqe cmd = {
        .cdw0 = NVME_ADM_DBBUF, .prp1 = (uintptr_t)c->dbbuf_db, .prp2 = (uintptr_t)c->dbbuf_ei};
    int st = nvme_admin(c, &cmd, NULL);
    if (st) {
        kprintf("tiny: note: Doorbell Buffer Config failed (0x%x %s): using MMIO doorbells\n", st,
                nvme_status_str(st));
        return;
    }
    c->dbbuf_on = 1;
    nvme_q_shadow(c, &c->admin); /* admin queue: shadow and MMIO, whichever the device reads */
}

static int setup_msix(struct nvme_ctrl *c)
{
    unsigned need = c->cfg.queues + 1;
    if (!c->msix_on) {
        if (msix_init(&c->pci, &c->msix)) {
            kprintf("tiny: nvme: no usable MSI-X capability\n");
            return -1;
        }
        c->msix_on = 1;
    }
    if (c->msix.nvec < need || need > MSI_VECTORS) {
        kprintf("tiny: nvme: MSI-X has %u vectors, %u needed\n", c->msix.nvec, need);
        return -1;
    }
    lapic_enable();
    msix_route(&c->msix, 0, lapic_id(), VEC_MSI_BASE); /* admin CQ (polled anyway) */
    for (unsigned i = 0; i < c->cfg.queues; i++)
        msix_route(&c->msix, i + 1, c->cfg.apic[i], (uint8_t)(VEC_MSI_BASE + i + 1));
    msix_unmask(&c->msix);
    return 0;
}

static int create_io_queue(struct nvme_ctrl *c, unsigned i)
{
    struct nvme_q *q = &c->io[i];
    uint16_t qid = (uint16_t)(i + 1), qs = (uint16_t)c->cfg.qsize;
    nvme_q_setup(c, q, qid, qs, q->sq, q->cq);
    if (c->dbbuf_on)
        nvme_q_shadow(c, q);
    uint32_t irq = 0;
    if (c->cfg.msix) {
        q->vector = (int)qid;
        irq = (uint32_t)qid << 16 | 2; /* IV, IEN */
    }
    struct nvme_sqe cq = {.cdw0 = NVME_ADM_CREATE_CQ,
                          .prp1 = (uintptr_t)q->cq,
                          .cdw10 = (uint32_t)(qs - 1) << 16 | qid,
                          .cdw11 = irq | 1 /* PC */};
    int st = nvme_admin(c, &cq, NULL);
    if (st) {
        kprintf("tiny: nvme: Create I/O CQ %u failed: 0x%x %s\n", qid, st, nvme_status_str(st));
        return -1;
    }
    struct nvme_sqe sq = {.cdw0 = NVME_ADM_CREATE_SQ,
                          .prp1 = (uintptr_t)q->sq,
                          .cdw10 = (uint32_t)(qs - 1) << 16 | qid,
                          .cdw11 = (uint32_t)qid << 16 | 1 /* CQID, PC */};
    st = nvme_admin(c, &sq, NULL);
    if (st) {
        kprintf("tiny: nvme: Create I/O SQ %u failed: 0x%x %s\n", qid, st, nvme_status_str(st));
        return -1;
    }
    return 0;
}

int nvme_init(struct nvme_ctrl *c, const struct nvme_cfg *cfg)
{
    c->cfg = *cfg;
    c->cmd_tsc = ms_to_tsc(cfg->timeout_ms);
    unsigned mqes = (unsigned)(c->cap & 0xffff) + 1;
    if (cfg->qsize > mqes || cfg->qsize < 2) {
        kprintf("tiny: nvme: qsize=%u outside 2..%u (CAP.MQES)\n", cfg->qsize, mqes);
        return -1;
    }
    for (unsigned i = 0; i < cfg->queues; i++) {
        struct nvme_q *q = &c->io[i];
        if (q->sq && q->size == cfg->qsize)
            continue;
        q->sq = ram_alloc(cfg->qsize * sizeof(struct nvme_sqe), PAGE);
        q->cq = ram_alloc(cfg->qsize * sizeof(struct nvme_cqe), PAGE);
        q->size = (uint16_t)cfg->qsize;
        if (!q->sq || !q->cq) {
            kprintf("tiny: nvme: out of RAM for I/O queues\n");
            return -1;
        }
    }
    if (nvme_disable(c) || nvme_enable(c) || identify(c) ||
        set_num_queues(c, cfg->queues + cfg->spare))
        return -1;
    if (cfg->shadow)
        setup_dbbuf(c);
    if (cfg->msix && setup_msix(c))
        return -1;
    for (unsigned i = 0; i < cfg->queues; i++) {
        if (create_io_queue(c, i))
            return -1;
        c->nr_io = i + 1;
    }
    return 0;
}
