/*
 * libFuzzer harness: the NVMe controller model driven by a program. Each input is a
 * sequence of operations a hostile guest (and a hostile storage backend) can perform:
 * register accesses, commands on admin and I/O queues with data pointers fixed up into
 * (or out of) guest RAM, correct and wrong doorbells, shadow doorbells, guest memory
 * writes, storage completions released in any order or failed, resets, and migration of
 * the controller mid-run (save, load into a fresh controller, continue). The model must
 * never crash, and a state it saved itself must always load.
 *
 * Guest RAM is 1 MiB split around a hole (768 KiB at 0, 256 KiB at 4 GiB), so pointers
 * can also fall in the hole or past the end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu/nvme_int.h"
#include "fuzz/fuzz_blk.h"
#include "fuzz/fuzz_input.h"
#include "util/buf.h"

#define RAM_SIZE  (1u << 20)
#define RAM_LOW   (768u << 10)
#define RAM_PAGES (RAM_SIZE / 4096)
#define NR_DISKS  2
#define HOST_QS   5 /* admin + 4 I/O queue pairs the host driver tracks */
#define ADMIN_QD  16

/* Fixed pages for what the harness's own driver builds; data pointers may hit them too. */
#define PG_ASQ     16
#define PG_ACQ     17
#define PG_DBS     18
#define PG_EIS     19
#define PG_IOSQ(q) (20 + 2 * (q))
#define PG_IOCQ(q) (21 + 2 * (q))

enum op {
    OP_REG_WRITE,
    OP_REG_READ,
    OP_CMD,
    OP_DOORBELL,
    OP_RING,
    OP_REAP_CQ,
    OP_PROCESS,
    OP_STORAGE,
    OP_MEM_WRITE,
    OP_QUEUE_PAIR,
    OP_DBBUF,
    OP_RESET,
    OP_ENABLE,
    OP_MIGRATE,
    OP_MIGRATE_CORRUPT,
    OP_MSIX,
    OP_STORAGE_ALL,
    OP_MAX,
};

struct hq {
    uint64_t sq, cq;
    uint32_t depth, tail, head;
    uint8_t phase;
};

struct fz {
    uint8_t *ram;
    struct guest_mem mem;
    struct nvme_ctrl_config cfg;
    struct blk_dev *disk[NR_DISKS];
    struct nvme_ctrl *c;
    struct hq q[HOST_QS];
    bool shadow;
    unsigned irqs;
};

static void on_msix(void *opaque, uint16_t vector)
{
    ((struct fz *)opaque)->irqs += vector < NVME_NR_VECTORS;
}

static void on_intx(void *opaque, int level)
{
    ((struct fz *)opaque)->irqs += level != 0;
}

static const struct nvme_host_ops fz_ops = {.msix_notify = on_msix, .intx_set = on_intx};

static uint64_t page_gpa(unsigned page)
{
    page %= RAM_PAGES;
    return page < RAM_LOW / 4096 ? (uint64_t)page * 4096
                                 : (1ull << 32) + (page - RAM_LOW / 4096) * 4096ull;
}

static void *ram_at(struct fz *f, uint64_t gpa, uint64_t len)
{
    return gpa_ptr(&f->mem, gpa, len);
}

/* A guest address: mostly in RAM (any page, any offset), sometimes just outside it. */
static uint64_t fix_ptr(struct fin *in)
{
    uint8_t sel = fin_u8(in);
    switch (sel >> 5) {
    case 7: {
        static const uint64_t edge[] = {0,
                                        RAM_LOW - 8,
                                        RAM_LOW,
                                        (1ull << 32) - 4096,
                                        (1ull << 32) + RAM_SIZE - RAM_LOW - 8,
                                        (1ull << 32) + RAM_SIZE - RAM_LOW,
                                        ~0ull - 4095,
                                        0};
        return (sel & 7) == 7 ? fin_u64(in) : edge[sel & 7];
    }
    case 6:
        return page_gpa(fin_u8(in)) + (fin_u16(in) & 0xfff);
    default:
        /* Page-aligned or dword-aligned: what PRP and queue bases want. */
        return page_gpa(fin_u8(in)) + (sel & 1 ? (fin_u16(in) & 0xffc) : 0);
    }
}

static void mmio_wr(struct fz *f, uint64_t off, uint64_t v, unsigned len)
{
    nvme_ctrl_mmio_write(f->c, off, v, len);
}

static void process(struct fz *f, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (!nvme_ctrl_process(f->c))
            break;
}

static void ring_sq(struct fz *f, unsigned qid, bool mmio)
{
    struct hq *q = &f->q[qid];
    if (f->shadow && qid) {
        uint32_t *db = ram_at(f, page_gpa(PG_DBS) + qid * 8u, 4);
        if (db)
            *db = q->tail;
    }
    if (mmio || !f->shadow || !qid)
        mmio_wr(f, NVME_DOORBELL_BASE + qid * 8u, q->tail, 4);
}

static void submit(struct fz *f, unsigned qid, struct nvme_sqe *cmd, bool ring)
{
    struct hq *q = &f->q[qid];
    if (!q->depth)
        return;
    uint8_t *slot = ram_at(f, q->sq + (uint64_t)q->tail * 64, 64);
    if (slot)
        memcpy(slot, cmd, 64);
    q->tail = (q->tail + 1) % q->depth;
    if (ring)
        ring_sq(f, qid, false);
}

/* Consumes up to max new CQEs of host queue qid and tells the controller. */
static void reap_cq(struct fz *f, unsigned qid, unsigned max)
{
    struct hq *q = &f->q[qid];
    if (!q->depth)
        return;
    unsigned n = 0;
    while (n < max) {
        struct nvme_cqe *e = ram_at(f, q->cq + (uint64_t)q->head * 16, 16);
        if (!e || (le16toh(e->status) & 1) != q->phase)
            break;
        if (++q->head == q->depth) {
            q->head = 0;
            q->phase ^= 1;
        }
        n++;
    }
    if (!n)
        return;
    if (f->shadow && qid) {
        uint32_t *db = ram_at(f, page_gpa(PG_DBS) + qid * 8u + 4, 4);
        if (db)
            *db = q->head;
    }
    mmio_wr(f, NVME_DOORBELL_BASE + qid * 8u + 4, q->head, 4);
}

/* Programs the admin queue and sets CC.EN, like a driver's probe. */
static void enable(struct fz *f, uint32_t cc_extra)
{
    memset(f->q, 0, sizeof(f->q));
    f->shadow = false;
    struct hq *a = &f->q[0];
    a->depth = ADMIN_QD;
    a->sq = page_gpa(PG_ASQ);
    a->cq = page_gpa(PG_ACQ);
    a->phase = 1;
    memset(ram_at(f, a->cq, 4096), 0, 4096);
    mmio_wr(f, NVME_REG_AQA, (ADMIN_QD - 1) << 16 | (ADMIN_QD - 1), 4);
    mmio_wr(f, NVME_REG_ASQ, a->sq, 8);
    mmio_wr(f, NVME_REG_ACQ, a->cq, 8);
    mmio_wr(f, NVME_REG_CC, 1 | 6 << 16 | 4 << 20 | cc_extra, 4);
    process(f, 2);
}

static void admin_and_wait(struct fz *f, struct nvme_sqe *cmd)
{
    submit(f, 0, cmd, true);
    process(f, 4);
    reap_cq(f, 0, ADMIN_QD);
}

static void queue_pair(struct fz *f, unsigned qid, uint32_t depth, uint16_t vector, bool ien)
{
    struct hq *q = &f->q[qid];
    memset(q, 0, sizeof(*q));
    q->depth = depth;
    q->sq = page_gpa(PG_IOSQ(qid));
    q->cq = page_gpa(PG_IOCQ(qid));
    q->phase = 1;
    memset(ram_at(f, q->cq, 4096), 0, 4096);
    struct nvme_sqe cq = {.opcode = nvme_admin_create_cq,
                          .dptr = {q->cq},
                          .cdw10 = (depth - 1) << 16 | qid,
                          .cdw11 = (uint32_t)vector << 16 | (ien ? 3 : 1)};
    admin_and_wait(f, &cq);
    struct nvme_sqe sq = {.opcode = nvme_admin_create_sq,
                          .dptr = {q->sq},
                          .cdw10 = (depth - 1) << 16 | qid,
                          .cdw11 = qid << 16 | 1};
    admin_and_wait(f, &sq);
}

static uint32_t pick_nsid(struct fin *in)
{
    uint8_t s = fin_u8(in);
    switch (s & 7) {
    case 0:
        return 0;
    case 1:
    case 2:
    case 3:
        return 1;
    case 4:
        return 2;
    case 5:
        return 0xffffffffu;
    case 6:
        return s >> 3;
    default:
        return fin_u32(in);
    }
}

static void op_cmd(struct fz *f, struct fin *in)
{
    uint8_t qsel = fin_u8(in);
    struct nvme_sqe cmd = {0};
    cmd.opcode = fin_u8(in);
    cmd.flags = fin_u8(in);
    cmd.cid = fin_u16(in);
    cmd.nsid = pick_nsid(in);
    uint8_t fix = fin_u8(in);
    cmd.dptr[0] = fix & 1 ? fix_ptr(in) : fin_u64(in);
    cmd.dptr[1] = fix & 2 ? fix_ptr(in) : fix & 4 ? fin_u64(in) : 0;
    cmd.mptr = fix & 8 ? fix_ptr(in) : 0;
    if (fix & 16) { /* SGL data block descriptor built from a pointer and a length */
        cmd.flags = (uint8_t)((cmd.flags & 0x3f) | 1 << 6);
        cmd.dptr[0] = fix_ptr(in);
        cmd.dptr[1] = (uint64_t)fin_u32(in) | (uint64_t)fin_u8(in) << 56;
    }
    uint32_t *dw = &cmd.cdw10;
    for (int i = 0; i < 6; i++)
        dw[i] = fix & 32 && i > 0 ? fin_u16(in) : fin_u32(in);
    submit(f, qsel % HOST_QS, &cmd, !(qsel & 0x80));
}

static void op_storage(struct fz *f, struct fin *in)
{
    uint8_t d = fin_u8(in);
    uint8_t n = (uint8_t)(fin_u8(in) % 8 + 1);
    for (uint8_t i = 0; i < n; i++)
        fblk_release(f->disk[d % NR_DISKS], fin_u8(in), d & 0x80);
}

static void settle_storage(struct fz *f, bool on)
{
    for (int i = 0; i < NR_DISKS; i++)
        fblk_set_auto(f->disk[i], on);
}

/* Save, then load into a fresh controller (corrupting the saved bytes first if asked). */
static void op_migrate(struct fz *f, struct fin *in, bool corrupt)
{
    settle_storage(f, true);
    nvme_ctrl_drain(f->c);
    settle_storage(f, false);
    struct mig_buf b;
    mig_buf_init(&b);
    nvme_ctrl_save(f->c, &b);
    if (b.oom)
        abort();
    unsigned flips = corrupt ? fin_u8(in) % 4 + 1 : 0;
    for (unsigned i = 0; i < flips && b.len; i++) {
        size_t at = fin_u16(in) % b.len;
        b.data[at] ^= (uint8_t)(fin_u8(in) | 1);
    }
    struct nvme_ctrl *n = nvme_ctrl_new(&f->cfg, &f->mem, &fz_ops, f);
    if (!n)
        abort();
    struct mig_cursor cur;
    mig_cursor_init(&cur, b.data, b.len);
    char err[256];
    if (nvme_ctrl_load(n, &cur, err, sizeof(err)) < 0) {
        if (!corrupt) {
            fprintf(stderr, "fuzz_nvme: own saved state refused: %s\n", err);
            abort();
        }
        settle_storage(f, true);
        nvme_ctrl_free(n);
        settle_storage(f, false);
    } else {
        nvme_ctrl_post_load(n);
        settle_storage(f, true);
        nvme_ctrl_free(f->c);
        settle_storage(f, false);
        f->c = n;
    }
    mig_buf_free(&b);
}

static void run_op(struct fz *f, struct fin *in)
{
    static const uint16_t regs[] = {
        NVME_REG_CAP,    NVME_REG_VS,   NVME_REG_INTMS,  NVME_REG_INTMC,
        NVME_REG_CC,     NVME_REG_CSTS, NVME_REG_NSSR,   NVME_REG_AQA,
        NVME_REG_ASQ,    NVME_REG_ACQ,  NVME_REG_CMBLOC, NVME_REG_CMBSZ,
        NVME_REG_BPINFO, NVME_REG_CRTO, NVME_REG_PMRCAP, NVME_REG_PMRCTL,
    };
    uint8_t op = fin_u8(in) % OP_MAX;
    switch (op) {
    case OP_REG_WRITE:
    case OP_REG_READ: {
        uint8_t s = fin_u8(in);
        uint64_t off = s & 0x80 ? fin_u16(in) % (NVME_BAR0_SIZE + 8) : regs[s % 16] + (s >> 4 & 3);
        unsigned len = 1u << (fin_u8(in) & 3);
        if (op == OP_REG_READ)
            (void)nvme_ctrl_mmio_read(f->c, off, len);
        else
            mmio_wr(f, off, fin_u64(in), len);
        break;
    }
    case OP_CMD:
        op_cmd(f, in);
        break;
    case OP_DOORBELL: { /* any doorbell register, any value */
        uint16_t idx = fin_u16(in);
        mmio_wr(f, NVME_DOORBELL_BASE + (idx % 0x800) * 4u, fin_u32(in), 4);
        break;
    }
    case OP_RING: {
        uint8_t s = fin_u8(in);
        ring_sq(f, s % HOST_QS, s & 0x80);
        break;
    }
    case OP_REAP_CQ: {
        uint8_t s = fin_u8(in);
        reap_cq(f, s % HOST_QS, (s >> 3) + 1);
        break;
    }
    case OP_PROCESS:
        process(f, fin_u8(in) % 16 + 1);
        break;
    case OP_STORAGE:
        op_storage(f, in);
        break;
    case OP_MEM_WRITE: {
        uint64_t gpa = fix_ptr(in);
        uint8_t buf[64];
        size_t len = fin_u8(in) % sizeof(buf) + 1;
        fin_bytes(in, buf, len);
        gpa_write(&f->mem, gpa, buf, len);
        break;
    }
    case OP_QUEUE_PAIR: {
        uint8_t s = fin_u8(in);
        uint8_t d = fin_u8(in);
        queue_pair(f, s % (HOST_QS - 1) + 1, d % 64 + 2, (uint16_t)(s >> 3 & 7), s & 0x80);
        break;
    }
    case OP_DBBUF: {
        struct nvme_sqe cmd = {.opcode = nvme_admin_dbbuf,
                               .dptr = {page_gpa(PG_DBS), page_gpa(PG_EIS)}};
        admin_and_wait(f, &cmd);
        f->shadow = true;
        break;
    }
    case OP_RESET:
        mmio_wr(f, NVME_REG_CC, 0, 4);
        process(f, fin_u8(in) % 4 + 1);
        memset(f->q, 0, sizeof(f->q));
        f->shadow = false;
        break;
    case OP_ENABLE:
        enable(f, (uint32_t)(fin_u8(in) & 3) << 14); /* CC.SHN too, sometimes */
        break;
    case OP_MIGRATE:
        op_migrate(f, in, false);
        break;
    case OP_MIGRATE_CORRUPT:
        op_migrate(f, in, true);
        break;
    case OP_MSIX:
        nvme_ctrl_set_msix(f->c, fin_u8(in) & 1);
        break;
    case OP_STORAGE_ALL:
        settle_storage(f, true);
        process(f, 4);
        settle_storage(f, false);
        break;
    }
}

static uint8_t *ram_buf;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ram_buf)
        ram_buf = malloc(RAM_SIZE);
    memset(ram_buf, 0, RAM_SIZE);
    struct fz f = {.ram = ram_buf};
    struct fin in = {data, size};
    guest_mem_layout(&f.mem, f.ram, RAM_SIZE, RAM_LOW);
    uint8_t setup = fin_u8(&in);
    if (setup & 1)
        guest_mem_dirty_enable(&f.mem);
    f.cfg = (struct nvme_ctrl_config){.serial = "FUZZ0001",
                                      .model = "nvmevm fuzz",
                                      .nr_io_queues = 4,
                                      .mqes = 255,
                                      .mdts = 5,
                                      .nr_ns = NR_DISKS};
    f.disk[0] = fblk_new(64 << 10, false);
    f.disk[1] = fblk_new(32 << 10, setup & 2);
    f.cfg.ns[0] = (struct nvme_ns_config){.blk = f.disk[0], .lba_shift = 9};
    f.cfg.ns[1] = (struct nvme_ns_config){.blk = f.disk[1], .lba_shift = 12};
    f.c = nvme_ctrl_new(&f.cfg, &f.mem, &fz_ops, &f);
    if (!f.c)
        abort();
    if (setup & 4)
        nvme_ctrl_set_msix(f.c, true);
    /* Most programs start from a running controller, so they spend their bytes on
     * commands rather than on rediscovering the enable sequence. */
    if (!(setup & 8)) {
        enable(&f, 0);
        if (setup & 16)
            queue_pair(&f, 1, 32, 1, true);
    }
    for (int steps = 0; in.n && steps < 512; steps++)
        run_op(&f, &in);
    settle_storage(&f, true);
    nvme_ctrl_free(f.c);
    for (int i = 0; i < NR_DISKS; i++)
        fblk_free(f.disk[i]);
    free(f.mem.dirty);
    return 0;
}
