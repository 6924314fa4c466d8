/* NVMe controller registers: reset values, access widths, enable/disable/shutdown, CFS on
 * hostile configurations, INTMS/INTMC, and doorbell validation. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/nvme_host.h"
#include "util/events.h"

static struct host *h;

static void setup(void)
{
    h = host_new(NULL);
    cr_assert_not_null(h->c);
}

static void teardown(void)
{
    host_free(h);
}

TestSuite(nvme_regs, .init = setup, .fini = teardown);

#define CSTS_RDY 1u
#define CSTS_CFS 2u

Test(nvme_regs, reset_values)
{
    uint64_t cap = host_rd64(h, NVME_REG_CAP);
    cr_assert_eq(NVME_CAP_MQES(cap), 1023);
    cr_assert_eq(NVME_CAP_CQR(cap), 1);
    cr_assert_eq(NVME_CAP_DSTRD(cap), 0);
    cr_assert_eq(NVME_CAP_TO(cap), 0x14);
    cr_assert_eq(NVME_CAP_CSS(cap), NVME_CAP_CSS_NVM | NVME_CAP_CSS_CSI);
    cr_assert_eq(NVME_CAP_MPSMIN(cap), 0);
    cr_assert_eq(NVME_CAP_MPSMAX(cap), 4);
    cr_assert_eq(host_rd32(h, NVME_REG_VS), 0x00010400);
    cr_assert_eq(host_rd32(h, NVME_REG_CC), 0);
    cr_assert_eq(host_rd32(h, NVME_REG_CSTS), 0);
    cr_assert_eq(host_rd32(h, NVME_REG_INTMS), 0);
    cr_assert_eq(host_rd32(h, NVME_REG_AQA), 0);
    cr_assert_eq(host_rd64(h, NVME_REG_ASQ), 0);
}

Test(nvme_regs, read_only_registers_ignore_writes)
{
    uint64_t cap = host_rd64(h, NVME_REG_CAP);
    host_wr64(h, NVME_REG_CAP, ~0ull);
    host_wr32(h, NVME_REG_VS, 0x12345678);
    host_wr32(h, NVME_REG_CSTS, ~0u);
    cr_assert_eq(host_rd64(h, NVME_REG_CAP), cap);
    cr_assert_eq(host_rd32(h, NVME_REG_VS), 0x00010400);
    cr_assert_eq(host_rd32(h, NVME_REG_CSTS), 0);
}

Test(nvme_regs, sixty_four_bit_registers_as_two_dwords)
{
    uint64_t cap = host_rd64(h, NVME_REG_CAP);
    cr_assert_eq(host_rd32(h, NVME_REG_CAP), (uint32_t)cap);
    cr_assert_eq(host_rd32(h, NVME_REG_CAP + 4), (uint32_t)(cap >> 32));
    host_wr32(h, NVME_REG_ASQ, 0x12345000);
    host_wr32(h, NVME_REG_ASQ + 4, 0x1);
    cr_assert_eq(host_rd64(h, NVME_REG_ASQ), 0x112345000ull);
    host_wr64(h, NVME_REG_ACQ, 0x2000abc000ull);
    cr_assert_eq(host_rd32(h, NVME_REG_ACQ), 0x00abc000);
    cr_assert_eq(host_rd32(h, NVME_REG_ACQ + 4), 0x20);
}

Test(nvme_regs, any_width_any_offset_is_safe)
{
    uint32_t vs = host_rd32(h, NVME_REG_VS);
    cr_assert_eq(nvme_ctrl_mmio_read(h->c, NVME_REG_VS + 2, 1), (vs >> 16) & 0xff);
    cr_assert_eq(nvme_ctrl_mmio_read(h->c, NVME_REG_VS + 1, 2), (vs >> 8) & 0xffff);
    cr_assert_eq(nvme_ctrl_mmio_read(h->c, NVME_REG_VS + 3, 4),
                 (vs >> 24) | (host_rd32(h, NVME_REG_INTMS) << 8));
    /* Unaligned, zero-length, oversized and out-of-BAR accesses neither crash nor act. */
    for (uint64_t off = 0; off < NVME_BAR0_SIZE + 16; off += 3)
        for (unsigned len = 0; len <= 9; len++) {
            nvme_ctrl_mmio_read(h->c, off, len);
            if (off != NVME_REG_CC && off != NVME_REG_CC + 1 && off != NVME_REG_CC + 2 &&
                off != NVME_REG_CC + 3)
                nvme_ctrl_mmio_write(h->c, off, 0, len);
        }
    nvme_ctrl_mmio_read(h->c, ~0ull - 2, 4);
    nvme_ctrl_mmio_write(h->c, ~0ull - 2, 1, 4);
    cr_assert_eq(host_rd32(h, NVME_REG_VS), 0x00010400);
    /* A narrow write to AQA merges into the register. */
    nvme_ctrl_mmio_write(h->c, NVME_REG_AQA + 2, 0x1f, 1);
    nvme_ctrl_mmio_write(h->c, NVME_REG_AQA, 0x1f, 2);
    cr_assert_eq(host_rd32(h, NVME_REG_AQA), 0x001f001f);
}

Test(nvme_regs, enable_and_disable)
{
    cr_assert(host_enable(h, 32));
    cr_assert_eq(host_rd32(h, NVME_REG_CSTS) & (CSTS_RDY | CSTS_CFS), CSTS_RDY);
    /* Admin queue registers are frozen while enabled. */
    host_wr32(h, NVME_REG_AQA, 0);
    cr_assert_eq(host_rd32(h, NVME_REG_AQA), 31u << 16 | 31);
    cr_assert(host_disable(h));
    cr_assert_eq(host_rd32(h, NVME_REG_CSTS), 0);
    /* And it comes back up. */
    cr_assert(host_enable(h, 2));
    struct nvme_sqe cmd = {.opcode = nvme_admin_keep_alive};
    cr_assert_eq(host_admin(h, &cmd, NULL), 0);
}

Test(nvme_regs, shutdown_sets_shst_complete)
{
    cr_assert(host_enable(h, 8));
    host_wr32(h, NVME_REG_CC, host_rd32(h, NVME_REG_CC) | 1u << 14); /* SHN normal */
    for (int i = 0; i < 10; i++)
        host_process(h);
    uint32_t csts = host_rd32(h, NVME_REG_CSTS);
    cr_assert_eq((csts >> 2) & 3, NVME_CSTS_SHST_CMPLT, "csts %#x", csts);
    /* Clearing SHN clears SHST; a reset and enable work after a shutdown. */
    host_wr32(h, NVME_REG_CC, host_rd32(h, NVME_REG_CC) & ~(3u << 14));
    cr_assert_eq((host_rd32(h, NVME_REG_CSTS) >> 2) & 3, 0);
    cr_assert(host_disable(h));
    cr_assert(host_enable(h, 8));
}

/* Found by fuzz/fuzz_nvme: SHN set again while the first shutdown's flush is still in
 * storage. The second shutdown must not reuse the in-flight flush request (that completed
 * it twice and drove the flush count negative, so drain and teardown waited forever). */
Test(nvme_regs, shutdown_again_while_flush_in_flight)
{
    cr_assert(host_enable(h, 8));
    blk_mem_hold(h->disk[0], true);
    uint32_t cc = host_rd32(h, NVME_REG_CC);
    host_wr32(h, NVME_REG_CC, cc | 1u << 14);
    host_process(h); /* the flush goes to storage and stays there */
    host_wr32(h, NVME_REG_CC, cc);
    host_wr32(h, NVME_REG_CC, cc | 1u << 14);
    for (int i = 0; i < 10; i++)
        host_process(h);
    blk_mem_hold(h->disk[0], false);
    for (int i = 0; i < 10; i++)
        host_process(h);
    cr_assert_eq(h->c->shutdown_flushes, 0);
    uint32_t csts = host_rd32(h, NVME_REG_CSTS);
    cr_assert_eq((csts >> 2) & 3, NVME_CSTS_SHST_CMPLT, "csts %#x", csts);
}

/* Found by fuzz/fuzz_nvme: SHN set and cleared before the I/O thread ran. The withdrawn
 * shutdown must not run later (it reported SHST complete with SHN clear, and a migration
 * saved "shutdown pending without CC.SHN", which the destination refuses). */
Test(nvme_regs, shutdown_withdrawn_before_it_starts)
{
    cr_assert(host_enable(h, 8));
    uint32_t cc = host_rd32(h, NVME_REG_CC);
    host_wr32(h, NVME_REG_CC, cc | 1u << 14);
    host_wr32(h, NVME_REG_CC, cc);
    for (int i = 0; i < 10; i++)
        host_process(h);
    cr_assert_not(h->c->shutdown_pending);
    uint32_t csts = host_rd32(h, NVME_REG_CSTS);
    cr_assert_eq((csts >> 2) & 3, 0, "csts %#x", csts);
}

/* Found by fuzz/fuzz_nvme: CC.EN set again while a reset waits for storage is fatal; the
 * reset finishing later must not clear that CFS, or the controller sits at EN=1, RDY=0,
 * CFS=0 (the driver waits for RDY forever, and the destination refuses such a state). */
/* EN=1 written while a reset drains: the reset's end acts on it (ready), never EN=1 with
 * neither RDY nor CFS (the driver would wait forever). */
Test(nvme_regs, enable_during_draining_reset_is_never_stuck)
{
    cr_assert(host_enable(h, 8));
    cr_assert_eq(host_create_io_queues(h, 1, 8, 0), 1);
    blk_mem_hold(h->disk[0], true);
    struct nvme_sqe rd = {.opcode = nvme_cmd_read, .nsid = 1, .dptr = {host_alloc(h, 4096)}};
    host_submit(h, 1, &rd, false);
    host_process(h); /* the read is in storage */
    uint32_t cc = host_rd32(h, NVME_REG_CC);
    host_wr32(h, NVME_REG_CC, cc & ~1u);
    host_wr32(h, NVME_REG_CC, cc);
    blk_mem_hold(h->disk[0], false);
    for (int i = 0; i < 10; i++)
        host_process(h);
    uint32_t csts = host_rd32(h, NVME_REG_CSTS);
    cr_assert((csts & 1) && !(csts & 2), "csts %#x: EN=1 must end ready, not stuck", csts);
    cr_assert(host_disable(h));
    cr_assert(host_enable(h, 8));
}

static void enable_raw(uint32_t aqa, uint64_t asq, uint64_t acq, uint32_t cc)
{
    host_wr32(h, NVME_REG_AQA, aqa);
    host_wr64(h, NVME_REG_ASQ, asq);
    host_wr64(h, NVME_REG_ACQ, acq);
    host_wr32(h, NVME_REG_CC, cc);
}

#define CC_OK (1u | 6u << 16 | 4u << 20)

Test(nvme_regs, hostile_enable_configurations_set_cfs)
{
    uint64_t q = host_alloc(h, 8192);
    const struct {
        uint32_t aqa;
        uint64_t asq, acq;
        uint32_t cc;
        const char *what;
    } bad[] = {
        {0, q, q + 4096, CC_OK, "AQA 0 (one-entry queues)"},
        {0x0fff0fff, q, q + 4096, CC_OK, "AQA beyond RAM and MQES"},
        {0x00070007, HOST_RAM + 0x1000ull, q, CC_OK, "ASQ outside RAM"},
        {0x00070007, q, 0x7ffffffff000ull, CC_OK, "ACQ outside RAM"},
        {0x00070007, q, HOST_RAM - 0x1000ull + 0, CC_OK | 0, "ACQ straddles the end (ok: 8*16)"},
        {0x00070007, q, q + 4096, CC_OK | 7u << 4, "CSS admin-only"},
        {0x00070007, q, q + 4096, CC_OK | 5u << 7, "MPS 128 KiB"},
        {0x00070007, q, q + 4096, CC_OK | 1u << 11, "AMS WRR"},
        {0x00070007, q, q + 4096, 1u | 7u << 16 | 4u << 20, "IOSQES 7"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enable_raw(bad[i].aqa, bad[i].asq, bad[i].acq, bad[i].cc);
        uint32_t csts = host_rd32(h, NVME_REG_CSTS);
        if (i == 4) { /* the control case: valid and ready */
            cr_assert_eq(csts & 3, CSTS_RDY, "%s", bad[i].what);
        } else {
            cr_assert_eq(csts & 3, CSTS_CFS, "%s: csts %#x", bad[i].what, csts);
        }
        /* A reset clears CFS; processing in between never crashes. */
        host_process(h);
        host_wr32(h, NVME_REG_CC, 0);
        host_process(h);
        cr_assert_eq(host_rd32(h, NVME_REG_CSTS) & 3, 0, "%s", bad[i].what);
    }
}

/* CSTS.CFS is announced on the control socket: one NVME_FATAL event, with the reason. */
Test(nvme_regs, fatal_status_posts_one_event)
{
    cr_assert_eq(events_init(), 0);
    uint64_t q = host_alloc(h, 8192);
    enable_raw(0x00070007, HOST_RAM + 0x1000ull, q, CC_OK);
    cr_assert_eq(host_rd32(h, NVME_REG_CSTS) & 3, CSTS_CFS);
    host_process(h); /* still fatal: no second event */
    char *line = events_take();
    cr_assert_not_null(line);
    cr_assert(strstr(line, "{\"event\":\"NVME_FATAL\",\"data\":{\"reason\":\"") == line, "%s",
              line);
    free(line);
    cr_assert_null(events_take());
    events_shutdown();
}

Test(nvme_regs, doorbell_before_ready_is_ignored)
{
    for (uint32_t i = 0; i < 2 * NVME_MAX_QUEUES + 4; i++)
        host_wr32(h, NVME_DOORBELL_BASE + i * 4, 5);
    cr_assert_eq(host_process(h), false);
    cr_assert(host_enable(h, 4));
    struct nvme_sqe cmd = {.opcode = nvme_admin_keep_alive};
    cr_assert_eq(host_admin(h, &cmd, NULL), 0);
}

/* Arms one AER and returns its CID. */
static uint16_t arm_aer(void)
{
    struct nvme_sqe aer = {.opcode = nvme_admin_async_event};
    uint16_t cid = host_submit(h, 0, &aer, false);
    host_process(h);
    cr_assert_not(host_peek(h, 0, NULL), "AER completed with nothing to report");
    return cid;
}

Test(nvme_regs, doorbell_to_missing_queue_raises_error_event)
{
    cr_assert(host_enable(h, 8));
    uint16_t cid = arm_aer();
    host_wr32(h, NVME_DOORBELL_BASE + 5 * 8, 1); /* SQ 5 does not exist */
    struct nvme_cqe e;
    cr_assert_eq(host_wait(h, 0, &e), 0);
    cr_assert_eq(e.cid, cid);
    cr_assert_eq(e.dw0 & 7, NVME_AER_ERROR);
    cr_assert_eq((e.dw0 >> 8) & 0xff, NVME_AER_ERROR_INVALID_DB_REG);
    cr_assert_eq((e.dw0 >> 16) & 0xff, NVME_LOG_LID_ERROR);
    /* Masked until the error log is read: another bad doorbell reports nothing. */
    arm_aer();
    host_wr32(h, NVME_DOORBELL_BASE + 9 * 8 + 4, 1);
    host_process(h);
    cr_assert_not(host_peek(h, 0, NULL));
    uint8_t log[4096];
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_ERROR, 0, 4096, 0, false, log), 0);
    /* Reading the log re-arms the event type: the next bad doorbell is reported. */
    host_wr32(h, NVME_DOORBELL_BASE + 9 * 8 + 4, 1);
    cr_assert_eq(host_wait(h, 0, &e), 0);
    cr_assert_eq(e.dw0 & 7, NVME_AER_ERROR);
    /* Doorbells far beyond the queue array and odd widths are ignored safely. */
    nvme_ctrl_mmio_write(h->c, NVME_BAR0_SIZE - 4, 1, 4);
    nvme_ctrl_mmio_write(h->c, NVME_DOORBELL_BASE + 1, 1, 2);
    host_process(h);
}

Test(nvme_regs, sq_tail_beyond_size_is_ignored)
{
    cr_assert(host_enable(h, 4));
    arm_aer();
    host_wr32(h, NVME_DOORBELL_BASE, 4); /* size 4: valid tails are 0..3 */
    struct nvme_cqe e;
    cr_assert_eq(host_wait(h, 0, &e), 0);
    cr_assert_eq((e.dw0 >> 8) & 0xff, NVME_AER_ERROR_INVALID_DB_VAL);
    /* The admin queue still works. */
    struct nvme_sqe cmd = {.opcode = nvme_admin_keep_alive};
    cr_assert_eq(host_admin(h, &cmd, NULL), 0);
}

Test(nvme_regs, cq_head_beyond_tail_is_ignored)
{
    cr_assert(host_enable(h, 8));
    arm_aer();
    host_wr32(h, NVME_DOORBELL_BASE + 4, 5); /* nothing posted yet */
    struct nvme_cqe e;
    cr_assert_eq(host_wait(h, 0, &e), 0);
    cr_assert_eq(e.dw0 & 7, NVME_AER_ERROR);
    cr_assert_eq((e.dw0 >> 8) & 0xff, NVME_AER_ERROR_INVALID_DB_VAL);
}

Test(nvme_regs, intms_intmc_mask_intx)
{
    cr_assert(host_enable(h, 8));
    struct nvme_sqe cmd = {.opcode = nvme_admin_keep_alive};
    host_submit(h, 0, &cmd, false);
    host_process(h);
    cr_assert_eq(h->intx, 1, "INTx asserted for the admin completion");
    host_wr32(h, NVME_REG_INTMS, 1);
    cr_assert_eq(host_rd32(h, NVME_REG_INTMS), 1);
    cr_assert_eq(h->intx, 0, "masked");
    host_wr32(h, NVME_REG_INTMS, 4);
    cr_assert_eq(host_rd32(h, NVME_REG_INTMC), 5, "RW1S accumulates");
    host_wr32(h, NVME_REG_INTMC, 1);
    cr_assert_eq(host_rd32(h, NVME_REG_INTMS), 4);
    cr_assert_eq(h->intx, 1, "unmasked: still pending");
    /* Consuming the entry (CQ head catches up) deasserts. */
    cr_assert(host_poll(h, 0, NULL));
    cr_assert_eq(h->intx, 0);
    cr_assert(host_disable(h));
    cr_assert_eq(host_rd32(h, NVME_REG_INTMS), 0, "reset clears INTMS");
}

Test(nvme_regs, msix_mode_ignores_intms_and_notifies)
{
    nvme_ctrl_set_msix(h->c, true);
    cr_assert(host_enable(h, 8));
    host_wr32(h, NVME_REG_INTMS, 1);
    cr_assert_eq(host_rd32(h, NVME_REG_INTMS), 0);
    struct nvme_sqe cmd = {.opcode = nvme_admin_keep_alive};
    cr_assert_eq(host_admin(h, &cmd, NULL), 0);
    cr_assert_eq(h->msix[0], 1);
    cr_assert_eq(h->intx, 0);
}

Test(nvme_regs, fatal_status_stops_processing_until_reset)
{
    cr_assert(host_enable(h, 8));
    nvme_ctrl_fatal(h->c, "test");
    cr_assert_eq(host_rd32(h, NVME_REG_CSTS) & 3, CSTS_RDY | CSTS_CFS);
    struct nvme_sqe cmd = {.opcode = nvme_admin_keep_alive};
    host_submit(h, 0, &cmd, false);
    for (int i = 0; i < 5; i++)
        host_process(h);
    cr_assert_not(host_peek(h, 0, NULL));
    cr_assert(host_disable(h));
    cr_assert_eq(host_rd32(h, NVME_REG_CSTS) & 3, 0);
    cr_assert(host_enable(h, 8));
    cr_assert_eq(host_admin(h, &cmd, NULL), 0);
}

Test(nvme_regs, cq_in_unmapped_memory_is_fatal_not_a_crash)
{
    cr_assert(host_enable(h, 8));
    /* Guest RAM "shrinks" under the controller: the CQE write must fail cleanly. */
    h->c->cq[0].base = HOST_RAM - 16 * 2;
    h->c->cq[0].tail = 4;
    struct nvme_sqe cmd = {.opcode = nvme_admin_keep_alive};
    host_submit(h, 0, &cmd, false);
    host_process(h);
    cr_assert(host_rd32(h, NVME_REG_CSTS) & CSTS_CFS);
}
