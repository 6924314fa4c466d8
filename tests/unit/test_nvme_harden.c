/* Hardening of the NVMe model against state changes racing in-flight work: Format against
 * I/O, shutdown re-armed during its flush, enable during a reset's drain, namespace
 * deletion, and Copy limits advertised vs enforced. Driven through the simulated host;
 * the memory backend holds completions to keep requests in flight. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/nvme_host.h"

#define CMD_LIMIT  SPC(NVME_SC_CMD_SIZE_LIMIT_EXCEEDED)
#define NOT_READY  SF(NVME_SCT_GENERIC, NVME_SC_NS_NOT_READY) /* retryable: no DNR */
#define SHST(h)    ((host_rd32(h, NVME_REG_CSTS) >> NVME_CSTS_SHST_SHIFT) & NVME_CSTS_SHST_MASK)
#define SHN_NORMAL (1u << NVME_CC_SHN_SHIFT)

static struct host *h;
static char ns_dir[] = "/tmp/nvmevm-harden-XXXXXX";

static void setup(void)
{
    cr_assert_not_null(mkdtemp(ns_dir));
    /* Namespace 2 is deletable (as with --disk ...,deletable=on); namespace 1 is not. */
    struct host_opts o = {.nr_ns = 2, .ns_dir = ns_dir, .deletable_mask = 1u << 1};
    h = host_new(&o);
    cr_assert_not_null(h->c);
    nvme_ctrl_set_msix(h->c, true);
    cr_assert(host_enable(h, 32));
    cr_assert_eq(host_create_io_queues(h, 1, 64, -1), 1);
}

static void teardown(void)
{
    for (int i = 0; i < h->nr_disks; i++)
        blk_mem_hold(h->disk[i], false);
    host_free(h);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", ns_dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(nvme_harden, .init = setup, .fini = teardown, .timeout = 60);

static void pump(int n)
{
    for (int i = 0; i < n; i++)
        host_process(h);
}

static void hold_all(bool on)
{
    for (int i = 0; i < h->nr_disks; i++)
        blk_mem_hold(h->disk[i], on);
}

static struct nvme_sqe io_cmd(uint8_t op, uint32_t nsid, uint64_t slba, uint32_t nlb0, uint64_t gpa)
{
    return (struct nvme_sqe){.opcode = op,
                             .nsid = nsid,
                             .dptr = {gpa, 0},
                             .cdw10 = (uint32_t)slba,
                             .cdw11 = (uint32_t)(slba >> 32),
                             .cdw12 = nlb0};
}

static void put_copy(uint64_t gpa, int i, uint64_t slba, uint32_t nlb)
{
    struct nvme_copy_range d;
    memset(&d, 0, sizeof(d));
    d.slba = htole64(slba);
    d.nlb = htole16((uint16_t)(nlb - 1));
    memcpy((uint8_t *)host_ptr(h, gpa) + (size_t)i * sizeof(d), &d, sizeof(d));
}

static struct nvme_sqe copy_cmd(uint64_t sdlba, int nr, uint64_t gpa)
{
    struct nvme_sqe s = io_cmd(nvme_cmd_copy, 1, sdlba, 0, gpa);
    s.cdw12 = (uint32_t)(nr - 1);
    return s;
}

static struct nvme_sqe format_cmd(uint32_t nsid, unsigned lbaf)
{
    return (struct nvme_sqe){.opcode = nvme_admin_format_nvm, .nsid = nsid, .cdw10 = lbaf};
}

static uint16_t ns_delete(uint32_t nsid)
{
    struct nvme_sqe s = {.opcode = nvme_admin_ns_mgmt, .nsid = nsid, .cdw10 = 1};
    return host_admin(h, &s, NULL);
}

static bool ns_present(uint32_t nsid)
{
    uint8_t list[4096];
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_ALLOCATED_NS_LIST, 0, 0, list), 0);
    const uint32_t *ids = (const uint32_t *)list;
    for (int i = 0; i < 1024 && ids[i]; i++)
        if (le32toh(ids[i]) == nsid)
            return true;
    return false;
}

/* Item 1: the reviewer's reproducer. A 512 B namespace, Copy of two ranges of 8 LBAs in
 * flight, then Format to 4 KiB: the Copy's bounce buffer was sized for 512 B LBAs. */
Test(nvme_harden, format_is_refused_while_a_copy_runs_and_the_copy_keeps_its_geometry)
{
    uint8_t *d = blk_mem_data(h->disk[0]);
    for (int i = 0; i < 16 * 512; i++)
        d[i] = (uint8_t)(i * 7 + 1);
    uint64_t desc = host_alloc(h, 4096);
    put_copy(desc, 0, 0, 8);
    put_copy(desc, 1, 8, 8);
    hold_all(true);
    struct nvme_sqe cp = copy_cmd(100, 2, desc);
    uint16_t cid = host_submit(h, 1, &cp, false);
    pump(3); /* the first chunk's read is now held in storage */
    struct nvme_sqe fmt = format_cmd(1, 1);
    cr_assert_eq(host_admin(h, &fmt, NULL), NOT_READY);
    hold_all(false);
    cr_assert_eq(host_wait_cid(h, 1, cid, NULL), 0);
    cr_assert_arr_eq(d + 100 * 512, d, 16 * 512);
    struct nvme_id_ns ns;
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_NS, 1, 0, &ns), 0);
    cr_assert_eq(ns.flbas, 0, "the refused Format must not change the LBA size");
    /* Idle again: the same Format now runs. */
    cr_assert_eq(host_admin(h, &fmt, NULL), 0);
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_NS, 1, 0, &ns), 0);
    cr_assert_eq(ns.flbas, 1);
}

/* I/O arriving while Format zeroes the namespace must not run with half-changed geometry. */
Test(nvme_harden, io_during_format_gets_format_in_progress)
{
    hold_all(true);
    struct nvme_sqe fmt = format_cmd(1, 1);
    uint16_t fcid = host_submit(h, 0, &fmt, false);
    pump(3);
    uint64_t buf = host_alloc(h, 4096);
    struct nvme_sqe rd = io_cmd(nvme_cmd_read, 1, 0, 0, buf);
    cr_assert_eq(host_io(h, 1, &rd, NULL), SF(NVME_SCT_GENERIC, NVME_SC_FORMAT_IN_PROGRESS));
    /* The other namespace is not being formatted. */
    rd.nsid = 2;
    uint16_t rcid = host_submit(h, 1, &rd, false);
    hold_all(false);
    cr_assert_eq(host_wait_cid(h, 1, rcid, NULL), 0);
    cr_assert_eq(host_wait_cid(h, 0, fcid, NULL), 0);
    rd.nsid = 1;
    cr_assert_eq(host_io(h, 1, &rd, NULL), 0); /* one 4 KiB LBA now */
}

/* Suspected item: ns_busy() looked only at r->ns, i.e. the first target of a Format with
 * NSID FFFFFFFFh; deleting another target freed its queue under the zeroing. */
Test(nvme_harden, namespace_under_a_broadcast_format_cannot_be_deleted)
{
    hold_all(true);
    struct nvme_sqe fmt = format_cmd(NVME_NSID_ALL, 0);
    uint16_t fcid = host_submit(h, 0, &fmt, false);
    pump(3);
    cr_assert_eq(ns_delete(2), NOT_READY);
    hold_all(false);
    cr_assert_eq(host_wait_cid(h, 0, fcid, NULL), 0);
    cr_assert(ns_present(2));
    cr_assert_eq(ns_delete(2), 0);
    cr_assert(!ns_present(2));
}

/* Suspected item: shutdown flushes were not counted by ns_busy() either. */
Test(nvme_harden, namespace_with_a_shutdown_flush_in_flight_cannot_be_deleted)
{
    hold_all(true);
    host_wr32(h, NVME_REG_CC, host_rd32(h, NVME_REG_CC) | SHN_NORMAL);
    pump(3);
    cr_assert_eq(SHST(h), NVME_CSTS_SHST_OCCUR);
    cr_assert_eq(ns_delete(2), NOT_READY);
    hold_all(false);
    pump(5);
    cr_assert_eq(SHST(h), NVME_CSTS_SHST_CMPLT);
    cr_assert_eq(h->c->shutdown_flushes, 0);
    cr_assert_eq(ns_delete(2), 0);
}

/* Item 3: Write Uncorrectable ranges were kept, in old-LBA units, across Format. */
Test(nvme_harden, format_forgets_write_uncorrectable_ranges)
{
    struct nvme_sqe wu = io_cmd(nvme_cmd_write_uncor, 1, 8, 7, 0);
    cr_assert_eq(host_io(h, 1, &wu, NULL), 0);
    uint64_t buf = host_alloc(h, 4096);
    struct nvme_sqe rd = io_cmd(nvme_cmd_read, 1, 8, 0, buf);
    cr_assert_eq(host_io(h, 1, &rd, NULL), SF(NVME_SCT_MEDIA, NVME_SC_READ_ERROR) | NVME_SC_DNR);
    /* Same LBA size: the data is zeroes now, so it reads back. */
    struct nvme_sqe fmt = format_cmd(1, 0);
    cr_assert_eq(host_admin(h, &fmt, NULL), 0);
    cr_assert_eq(host_io(h, 1, &rd, NULL), 0);
    /* To 4 KiB: old 512 B LBAs 8..15 are new LBA 1. */
    cr_assert_eq(host_io(h, 1, &wu, NULL), 0);
    fmt = format_cmd(1, 1);
    cr_assert_eq(host_admin(h, &fmt, NULL), 0);
    rd = io_cmd(nvme_cmd_read, 1, 1, 0, buf);
    cr_assert_eq(host_io(h, 1, &rd, NULL), 0);
    rd.cdw10 = 8;
    cr_assert_eq(host_io(h, 1, &rd, NULL), 0);
    cr_assert_eq(h->c->ns[0].nr_bad, 0);
}

/* Item 4: Identify must advertise exactly the limits Copy enforces; both sides of each. */
Test(nvme_harden, copy_limits_advertised_are_the_limits_enforced)
{
    struct nvme_id_ns ns;
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_NS, 1, 0, &ns), 0);
    unsigned mssrl = le16toh(ns.mssrl), mcl = le32toh(ns.mcl), nr_max = ns.msrc + 1u;
    cr_assert_eq(mssrl, NVME_COPY_MSSRL);
    cr_assert_eq(mcl, NVME_COPY_MCL);
    cr_assert_eq(nr_max, NVME_COPY_MSRC + 1u);
    uint64_t desc = host_alloc(h, 8192);
    struct nvme_sqe cp;

    put_copy(desc, 0, 0, mssrl); /* MSSRL: at the limit, then one over */
    cp = copy_cmd(4096, 1, desc);
    cr_assert_eq(host_io(h, 1, &cp, NULL), 0);
    put_copy(desc, 0, 0, mssrl + 1);
    cr_assert_eq(host_io(h, 1, &cp, NULL), CMD_LIMIT);

    unsigned full = mcl / mssrl; /* MCL: ranges of MSSRL adding up to it, then one LBA more */
    cr_assert_leq(full, nr_max - 1);
    for (unsigned i = 0; i < full; i++)
        put_copy(desc, (int)i, (uint64_t)i * mssrl, mssrl);
    cr_assert_eq(mcl % mssrl, 0);
    cp = copy_cmd(4096, (int)full, desc);
    cr_assert_eq(host_io(h, 1, &cp, NULL), 0);
    put_copy(desc, (int)full, 0, 1);
    cp = copy_cmd(4096, (int)full + 1, desc);
    cr_assert_eq(host_io(h, 1, &cp, NULL), CMD_LIMIT);

    for (unsigned i = 0; i <= nr_max; i++) /* MSRC: that many ranges, then one more */
        put_copy(desc, (int)i, i, 1);
    cp = copy_cmd(4096, (int)nr_max, desc);
    cr_assert_eq(host_io(h, 1, &cp, NULL), 0);
    cp = copy_cmd(4096, (int)nr_max + 1, desc);
    cr_assert_eq(host_io(h, 1, &cp, NULL), CMD_LIMIT);
}

/* Item 2: CC.SHN 1->0->1 while the shutdown flush runs must neither resubmit the request
 * in flight nor report completion before the second shutdown's flush. */
Test(nvme_harden, shutdown_rearmed_during_its_flush_is_exact)
{
    uint32_t cc = host_rd32(h, NVME_REG_CC);
    hold_all(true);
    host_wr32(h, NVME_REG_CC, cc | SHN_NORMAL);
    pump(3);
    cr_assert_eq(h->c->shutdown_flushes, 2, "one flush per namespace in flight");
    host_wr32(h, NVME_REG_CC, cc);
    cr_assert_eq(SHST(h), 0);
    host_wr32(h, NVME_REG_CC, cc | SHN_NORMAL);
    pump(3);
    cr_assert_eq(h->c->shutdown_flushes, 2, "the flushes in flight were not resubmitted");
    for (int i = 0; i < h->nr_disks; i++)
        blk_mem_release(h->disk[i]); /* the first round ends; the second is held */
    pump(3);
    cr_assert_eq(SHST(h), NVME_CSTS_SHST_OCCUR, "complete before the second flush");
    cr_assert_eq(h->c->shutdown_flushes, 2);
    hold_all(false);
    pump(5);
    cr_assert_eq(SHST(h), NVME_CSTS_SHST_CMPLT);
    cr_assert_eq(h->c->shutdown_flushes, 0);
    cr_assert(!h->c->shutdown_pending);
}

/* SHN cleared while the flush runs: the flush ending must not report a shutdown. */
Test(nvme_harden, shutdown_cancelled_during_its_flush_reports_nothing)
{
    uint32_t cc = host_rd32(h, NVME_REG_CC);
    hold_all(true);
    host_wr32(h, NVME_REG_CC, cc | SHN_NORMAL);
    pump(3);
    host_wr32(h, NVME_REG_CC, cc);
    hold_all(false);
    pump(5);
    cr_assert_eq(h->c->shutdown_flushes, 0);
    cr_assert_eq(SHST(h), 0);
}

/* Item 5: CC.EN=1 written while a reset drains storage. After the drain the controller
 * must act on CC.EN=1 (become ready), never be left neither ready nor fatal. */
Test(nvme_harden, enable_during_reset_drain_ends_ready)
{
    uint64_t buf = host_alloc(h, 4096);
    hold_all(true);
    struct nvme_sqe rd = io_cmd(nvme_cmd_read, 1, 0, 0, buf);
    host_submit(h, 1, &rd, false);
    pump(3);
    uint32_t cc = host_rd32(h, NVME_REG_CC);
    host_wr32(h, NVME_REG_CC, cc & ~1u);
    host_wr32(h, NVME_REG_CC, cc);
    pump(3);
    uint32_t csts = host_rd32(h, NVME_REG_CSTS);
    cr_assert_eq(csts & (1u << NVME_CSTS_CFS_SHIFT), 0, "csts %#x", csts);
    hold_all(false);
    /* RDY stays 1 until the drain ends (the reset is not complete before): wait for it. */
    for (int i = 0; i < 10 && h->c->resetting; i++)
        host_process(h);
    cr_assert(!h->c->resetting);
    csts = host_rd32(h, NVME_REG_CSTS);
    cr_assert_eq(csts & 1, 1, "not ready after the drain: csts %#x", csts);
    cr_assert_eq(csts & (1u << NVME_CSTS_CFS_SHIFT), 0, "csts %#x", csts);
    /* The admin queue is fresh (same rings): restart the host's view and use it. */
    struct host_q *q = &h->q[0];
    memset(host_ptr(h, q->cq), 0, (size_t)q->depth * 16);
    q->sq_tail = q->cq_head = 0;
    q->phase = 1;
    q->nstash = 0;
    uint16_t st = host_identify(h, NVME_IDENTIFY_CNS_CTRL, 0, 0, NULL);
    cr_assert_eq(st, 0, "identify %#x csts %#x", st, host_rd32(h, NVME_REG_CSTS));
}

/* Item 6: the guest must not delete the disks it was given on the command line. */
Test(nvme_harden, command_line_namespaces_are_not_deletable_unless_allowed)
{
    uint16_t refused = GEN(NVME_SC_INVALID_FIELD);
    cr_assert_eq(ns_delete(1), refused);
    cr_assert(ns_present(1));
    /* A namespace the guest created itself may go, but "delete all" is all or nothing. */
    uint64_t idp = host_alloc(h, 4096);
    struct nvme_id_ns *id = host_ptr(h, idp);
    id->nsze = id->ncap = htole64(64);
    struct nvme_sqe create = {.opcode = nvme_admin_ns_mgmt, .dptr = {idp}, .cdw10 = 0};
    struct nvme_cqe e;
    cr_assert_eq(host_admin(h, &create, &e), 0);
    uint32_t nsid = le32toh(e.dw0);
    cr_assert_eq(ns_delete(NVME_NSID_ALL), refused);
    cr_assert(ns_present(1) && ns_present(2) && ns_present(nsid));
    cr_assert_eq(ns_delete(nsid), 0);
    cr_assert_eq(ns_delete(2), 0, "namespace 2 was configured deletable");
    cr_assert(ns_present(1) && !ns_present(2) && !ns_present(nsid));
}

/* Suspected item (stale ioeventfds): the VMM swallows I/O doorbell writes in the kernel
 * while shadow doorbells are on, and learned that they went off (reset) only when its I/O
 * thread next slept. The model now reports the change under its lock, before RDY drops;
 * the simulated host swallows doorbells exactly as KVM would, and must not lose a tail. */
Test(nvme_harden, shadow_doorbells_off_is_reported_before_the_reset_is_visible)
{
    h->swallow_dbs = true;
    cr_assert_eq(host_dbbuf(h), 0);
    cr_assert(h->shadow_on, "Doorbell Buffer Config must report shadow doorbells on");
    uint64_t buf = host_alloc(h, 4096);
    struct nvme_sqe rd = io_cmd(nvme_cmd_read, 1, 0, 0, buf);
    cr_assert_eq(host_io(h, 1, &rd, NULL), 0);
    /* A reset with a read in flight: RDY drops only once it is back. */
    hold_all(true);
    host_submit(h, 1, &rd, false);
    pump(3);
    uint32_t cc = host_rd32(h, NVME_REG_CC);
    host_wr32(h, NVME_REG_CC, cc & ~1u);
    for (int i = 0; i < 3; i++) {
        cr_assert(host_rd32(h, NVME_REG_CSTS) & 1);
        cr_assert(h->shadow_on, "still on while the reset drains");
        host_process(h);
    }
    hold_all(false);
    for (int i = 0; i < 10 && (host_rd32(h, NVME_REG_CSTS) & 1); i++)
        host_process(h);
    cr_assert_eq(host_rd32(h, NVME_REG_CSTS) & 1, 0);
    cr_assert(!h->shadow_on, "RDY is 0: the host must already know shadow doorbells are off");
    /* Without Doorbell Buffer Config again, I/O rings through MMIO and must work. */
    memset(h->q, 0, sizeof(h->q));
    h->dbs = h->eis = 0;
    cr_assert(host_enable(h, 32));
    cr_assert_eq(host_create_io_queues(h, 1, 64, -1), 1);
    unsigned swallowed = h->swallowed;
    cr_assert_eq(host_io(h, 1, &rd, NULL), 0);
    cr_assert_eq(h->swallowed, swallowed);
}
