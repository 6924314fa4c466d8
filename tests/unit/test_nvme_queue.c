/* I/O queues: completions parked on a full CQ, shadow doorbells and EventIdx, interrupts
 * (MSI-X vectors, INTx, coalescing), reset and SQ deletion with I/O in flight, fairness,
 * SMART counters and dirty-page marking. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/unit/nvme_host.h"

static struct host *h;

static void setup(void)
{
    h = host_new(NULL);
    cr_assert_not_null(h->c);
    nvme_ctrl_set_msix(h->c, true);
    cr_assert(host_enable(h, 32));
}

static void teardown(void)
{
    host_free(h);
}

TestSuite(nvme_queue, .init = setup, .fini = teardown);

static struct nvme_sqe read_cmd(uint64_t slba, uint64_t gpa)
{
    return (struct nvme_sqe){
        .opcode = nvme_cmd_read, .nsid = 1, .dptr = {gpa}, .cdw10 = (uint32_t)slba};
}

Test(nvme_queue, read_write_roundtrip_and_smart)
{
    cr_assert_eq(host_create_io_queues(h, 2, 64, -1), 2);
    uint64_t buf = host_alloc(h, 16384);
    memset(host_ptr(h, buf), 0xab, 16384);
    cr_assert_eq(host_rw(h, 1, true, 8, 31, buf), 0); /* 16 KiB through a PRP list */
    cr_assert_eq(memcmp(blk_mem_data(h->disk[0]) + 8 * 512, host_ptr(h, buf), 16384), 0);
    memset(host_ptr(h, buf), 0, 16384);
    cr_assert_eq(host_rw(h, 2, false, 8, 31, buf), 0);
    cr_assert_eq(((uint8_t *)host_ptr(h, buf))[16383], 0xab);
    struct nvme_smart_log s;
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_SMART, 0, 512, 0, false, &s), 0);
    cr_assert_eq(s.host_reads[0], 1);
    cr_assert_eq(s.host_writes[0], 1);
    cr_assert_eq(s.data_units_read[0], 1);
    cr_assert_eq(s.data_units_written[0], 1);
    cr_assert_eq(h->msix[1], 1);
    cr_assert_eq(h->msix[2], 1);
}

Test(nvme_queue, full_cq_parks_and_posts_in_order)
{
    cr_assert(host_create_tiny_cq_pair(h));
    struct host_q *q = &h->q[1];
    uint64_t buf = host_alloc(h, 4096);
    uint16_t cids[10];
    for (int i = 0; i < 10; i++) {
        struct nvme_sqe r = read_cmd((uint64_t)i, buf);
        cids[i] = host_submit(h, 1, &r, true);
        /* The host's SQ and CQ depths differ: track the CQ with its own depth below. */
    }
    q->depth = 16;
    host_ring_sq(h, 1);
    for (int i = 0; i < 20; i++)
        host_process(h);
    cr_assert_eq(h->c->cq[1].parked_count, 7);
    cr_assert_eq(h->c->sq[1].head, 10);
    /* Consume one at a time through a 4-entry CQ view. */
    q->depth = 4;
    uint32_t last_head = 0;
    for (int i = 0; i < 10; i++) {
        struct nvme_cqe e;
        int tries = 0;
        while (!host_poll(h, 1, &e) && tries++ < 10)
            host_process(h);
        cr_assert_eq(e.cid, cids[i], "completion %d in order", i);
        cr_assert_eq(cqe_sf(&e), 0);
        cr_assert(le16toh(e.sq_head) >= last_head);
        last_head = le16toh(e.sq_head);
    }
    cr_assert_eq(h->c->cq[1].parked_count, 0);
    cr_assert_eq(last_head, 10);
}

Test(nvme_queue, shadow_doorbells_and_event_idx)
{
    cr_assert_eq(host_create_io_queues(h, 1, 32, -1), 1);
    cr_assert_eq(host_dbbuf(h), 0);
    uint32_t *sdb = host_ptr(h, h->dbs + 8), *sei = host_ptr(h, h->eis + 8);
    uint64_t buf = host_alloc(h, 4096);
    /* Write the shadow tail only: no MMIO doorbell at all. */
    struct nvme_sqe r = read_cmd(0, buf);
    host_submit(h, 1, &r, true);
    h->q[1].shadow = false;
    *sdb = h->q[1].sq_tail;
    cr_assert_eq(host_wait(h, 1, NULL), 0);
    cr_assert_eq(*sei, 1, "SQ EventIdx published");
    /* The Linux-style path (shadow + need_event MMIO) keeps working over wrap-around. */
    h->q[1].shadow = true;
    for (int i = 0; i < 70; i++) {
        r = read_cmd((uint64_t)i, buf);
        cr_assert_eq(host_io(h, 1, &r, NULL), 0, "command %d", i);
    }
    cr_assert_eq(*sei, h->q[1].sq_tail);
    /* The admin queue stays on MMIO doorbells. */
    struct nvme_sqe ka = {.opcode = nvme_admin_keep_alive};
    cr_assert_eq(host_admin(h, &ka, NULL), 0);
    cr_assert_eq(*(uint32_t *)host_ptr(h, h->dbs), 0);
    /* A bogus shadow value is ignored (and the queue keeps working). */
    *sdb = 1000;
    host_process(h);
    *sdb = h->q[1].sq_tail;
    r = read_cmd(0, buf);
    cr_assert_eq(host_io(h, 1, &r, NULL), 0);
}

/* Linux's nvme_dbbuf_need_event(): ring only if the new tail passed EventIdx. */
static bool need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old)
{
    return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old);
}

Test(nvme_queue, polling_asks_for_no_doorbells)
{
    cr_assert_eq(host_create_io_queues(h, 1, 8, -1), 1);
    cr_assert_eq(host_dbbuf(h), 0);
    uint32_t *sdb = host_ptr(h, h->dbs + 8), *sei = host_ptr(h, h->eis + 8);
    uint64_t buf = host_alloc(h, 4096);
    nvme_ctrl_set_polling(h->c, true);
    host_process(h); /* a pass publishes the polling EventIdx */
    h->q[1].shadow = false;
    /* Submit 20 commands through the shadow tail only, wrapping the 8-entry queue: the
     * host would never need to ring, and the controller still sees every one. */
    for (int i = 0; i < 20; i++) {
        struct nvme_sqe r = read_cmd((uint64_t)i, buf);
        uint16_t old = (uint16_t)h->q[1].sq_tail;
        host_submit(h, 1, &r, true);
        cr_assert_not(need_event((uint16_t)*sei, (uint16_t)h->q[1].sq_tail, old),
                      "command %d would have rung the doorbell", i);
        *sdb = h->q[1].sq_tail;
        cr_assert_eq(host_wait(h, 1, NULL), 0, "command %d", i);
    }
    /* Polling off: the next pass publishes EventIdx = tail, so the next submit rings. */
    nvme_ctrl_set_polling(h->c, false);
    host_process(h);
    cr_assert_eq(*sei, h->q[1].sq_tail);
    cr_assert(need_event((uint16_t)*sei, (uint16_t)((h->q[1].sq_tail + 1) % 8),
                         (uint16_t)h->q[1].sq_tail));
}

Test(nvme_queue, shadow_cq_head_releases_parked)
{
    cr_assert_eq(host_create_io_queues(h, 1, 4, -1), 1);
    cr_assert_eq(host_dbbuf(h), 0);
    uint64_t buf = host_alloc(h, 4096);
    for (int i = 0; i < 4; i++) {
        struct nvme_sqe r = read_cmd(0, buf);
        host_submit(h, 1, &r, false);
        for (int k = 0; k < 4; k++)
            host_process(h);
    }
    /* 3 slots in a 4-entry CQ: the fourth is parked; CQ EventIdx = head. */
    cr_assert_eq(h->c->cq[1].parked_count, 1);
    cr_assert_eq(*(uint32_t *)host_ptr(h, h->eis + 12), 0);
    /* Consume through the shadow head only (no MMIO): processing picks it up. */
    struct nvme_cqe *ring = host_ptr(h, h->q[1].cq);
    cr_assert(le16toh(ring[0].status) & 1);
    *(uint32_t *)host_ptr(h, h->dbs + 12) = 2;
    host_process(h);
    cr_assert_eq(h->c->cq[1].parked_count, 0);
    cr_assert(le16toh(ring[2].status) & 1);
}

Test(nvme_queue, per_queue_vectors_and_coalescing_threshold)
{
    cr_assert_eq(host_create_io_queues(h, 3, 64, -1), 3);
    uint64_t buf = host_alloc(h, 4096);
    struct nvme_sqe r = read_cmd(0, buf);
    cr_assert_eq(host_io(h, 2, &r, NULL), 0);
    cr_assert_eq(h->msix[2], 1);
    cr_assert_eq(h->msix[1], 0);
    /* THR 3 (4 entries), TIME 25.5 ms. */
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_IRQ_COALESCE, 255u << 8 | 3, NULL), 0);
    unsigned before = h->msix[1];
    for (int i = 0; i < 3; i++) {
        r = read_cmd(0, buf);
        host_submit(h, 1, &r, false);
    }
    for (int i = 0; i < 5; i++)
        host_process(h);
    cr_assert_eq(h->msix[1], before, "3 entries: below the threshold");
    cr_assert_neq(nvme_ctrl_next_deadline_ms(h->c), UINT64_MAX);
    r = read_cmd(0, buf);
    host_submit(h, 1, &r, false);
    for (int i = 0; i < 5; i++)
        host_process(h);
    cr_assert_eq(h->msix[1], before + 1, "4th entry fires");
    cr_assert_eq(nvme_ctrl_next_deadline_ms(h->c), UINT64_MAX);
    /* Admin completions are never coalesced. */
    unsigned adm = h->msix[0];
    struct nvme_sqe ka = {.opcode = nvme_admin_keep_alive};
    cr_assert_eq(host_admin(h, &ka, NULL), 0);
    cr_assert_eq(h->msix[0], adm + 1);
    /* Coalescing disabled for vector 3. */
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_IRQ_CONFIG, 1u << 16 | 3, NULL), 0);
    r = read_cmd(0, buf);
    cr_assert_eq(host_io(h, 3, &r, NULL), 0);
    cr_assert_eq(h->msix[3], 1);
}

Test(nvme_queue, coalescing_time_limit)
{
    cr_assert_eq(host_create_io_queues(h, 1, 64, -1), 1);
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_IRQ_COALESCE, 20u << 8 | 9, NULL), 0);
    uint64_t buf = host_alloc(h, 4096);
    struct nvme_sqe r = read_cmd(0, buf);
    host_submit(h, 1, &r, false);
    for (int i = 0; i < 3; i++)
        host_process(h);
    cr_assert(host_peek(h, 1, NULL), "posted");
    cr_assert_eq(h->msix[1], 0, "interrupt held back");
    uint64_t d = nvme_ctrl_next_deadline_ms(h->c);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    cr_assert(d >= now && d <= now + 3, "deadline %lu now %lu", (unsigned long)d,
              (unsigned long)now);
    nanosleep(&(struct timespec){.tv_nsec = 3 * 1000 * 1000}, NULL);
    host_process(h);
    cr_assert_eq(h->msix[1], 1, "time limit fired");
    cr_assert_eq(nvme_ctrl_next_deadline_ms(h->c), UINT64_MAX);
}

Test(nvme_queue, intx_for_io_queue)
{
    nvme_ctrl_set_msix(h->c, false);
    cr_assert_eq(host_create_io_queues(h, 1, 16, 0), 1);
    cr_assert_eq(h->intx, 0);
    uint64_t buf = host_alloc(h, 4096);
    struct nvme_sqe r = read_cmd(0, buf);
    host_submit(h, 1, &r, false);
    for (int i = 0; i < 3; i++)
        host_process(h);
    cr_assert_eq(h->intx, 1);
    cr_assert(host_poll(h, 1, NULL));
    cr_assert_eq(h->intx, 0, "head caught up with tail");
}

Test(nvme_queue, fair_round_robin_between_queues)
{
    cr_assert_eq(host_create_io_queues(h, 2, 256, -1), 2);
    uint64_t buf = host_alloc(h, 4096);
    for (int i = 0; i < 200; i++) {
        struct nvme_sqe r = read_cmd(0, buf);
        host_submit(h, 1, &r, true);
    }
    host_ring_sq(h, 1);
    struct nvme_sqe r = read_cmd(0, buf);
    host_submit(h, 2, &r, false);
    host_process(h);
    cr_assert(h->c->sq[1].head < 200, "queue 1 did not get everything in one pass");
    cr_assert_eq(h->c->sq[2].head, 1, "queue 2 served in the same pass");
    for (int i = 0; i < 10; i++)
        host_process(h);
    cr_assert_eq(h->c->sq[1].head, 200);
}

Test(nvme_queue, reset_waits_for_io_in_flight)
{
    cr_assert_eq(host_create_io_queues(h, 1, 16, -1), 1);
    uint64_t buf = host_alloc(h, 4096);
    blk_mem_hold(h->disk[0], true);
    for (int i = 0; i < 4; i++) {
        struct nvme_sqe r = read_cmd((uint64_t)i, buf);
        host_submit(h, 1, &r, false);
    }
    for (int i = 0; i < 3; i++)
        host_process(h);
    cr_assert_eq(h->c->sq[1].inflight, 4);
    host_wr32(h, NVME_REG_CC, host_rd32(h, NVME_REG_CC) & ~1u);
    for (int i = 0; i < 3; i++)
        host_process(h);
    cr_assert_eq(host_rd32(h, NVME_REG_CSTS) & 1, 1, "RDY stays until storage returns");
    blk_mem_hold(h->disk[0], false);
    blk_mem_release(h->disk[0]);
    for (int i = 0; i < 5 && (host_rd32(h, NVME_REG_CSTS) & 1); i++)
        host_process(h);
    cr_assert_eq(host_rd32(h, NVME_REG_CSTS) & 1, 0);
    cr_assert_not(host_peek(h, 1, NULL), "completions of a reset controller are dropped");
    memset(h->q, 0, sizeof(h->q));
    cr_assert(host_enable(h, 8));
    cr_assert_eq(host_create_io_queues(h, 1, 16, -1), 1);
    struct nvme_sqe r = read_cmd(0, buf);
    cr_assert_eq(host_io(h, 1, &r, NULL), 0);
}

Test(nvme_queue, delete_sq_with_io_in_flight)
{
    cr_assert_eq(host_create_io_queues(h, 1, 16, -1), 1);
    uint64_t buf = host_alloc(h, 4096);
    blk_mem_hold(h->disk[0], true);
    struct nvme_sqe r = read_cmd(0, buf);
    host_submit(h, 1, &r, false);
    for (int i = 0; i < 3; i++)
        host_process(h);
    struct nvme_sqe del = {.opcode = nvme_admin_delete_sq, .cdw10 = 1};
    uint16_t cid = host_submit(h, 0, &del, false);
    for (int i = 0; i < 3; i++)
        host_process(h);
    cr_assert_not(host_peek(h, 0, NULL), "Delete SQ waits for the storage request");
    struct nvme_sqe mk = {.opcode = nvme_admin_create_sq,
                          .dptr = {h->q[1].sq},
                          .cdw10 = 15u << 16 | 1,
                          .cdw11 = 1u << 16 | 1};
    cr_assert_eq(host_admin(h, &mk, NULL), SPC(NVME_SC_QID_INVALID), "still being deleted");
    blk_mem_hold(h->disk[0], false);
    blk_mem_release(h->disk[0]);
    cr_assert_eq(host_wait_cid(h, 0, cid, NULL), 0);
    cr_assert_not(host_peek(h, 1, NULL), "the aborted read is not posted");
    cr_assert_eq(host_admin(h, &mk, NULL), 0, "qid reusable");
}

Test(nvme_queue, dirty_pages_marked_for_device_writes)
{
    cr_assert_eq(guest_mem_dirty_enable(&h->mem), 0);
    uint64_t pages = HOST_RAM / 4096;
    uint64_t *bits = calloc(pages / 64, 8);
    guest_mem_dirty_collect(&h->mem, bits);
    memset(bits, 0, pages / 8);
    uint64_t idbuf = host_alloc(h, 4096);
    struct nvme_sqe id = {.opcode = nvme_admin_identify, .cdw10 = 1, .dptr = {idbuf}};
    cr_assert_eq(host_admin(h, &id, NULL), 0);
    guest_mem_dirty_collect(&h->mem, bits);
#define DIRTY(gpa) ((bits[((gpa) >> 12) / 64] >> (((gpa) >> 12) % 64)) & 1)
    cr_assert(DIRTY(idbuf), "identify data page");
    cr_assert(DIRTY(h->q[0].cq), "admin CQ page");
    cr_assert_not(DIRTY(h->q[0].sq), "SQ is only read");
    cr_assert_eq(host_create_io_queues(h, 1, 16, -1), 1);
    uint64_t buf = host_alloc(h, 8192);
    memset(bits, 0, pages / 8);
    guest_mem_dirty_collect(&h->mem, bits);
    memset(bits, 0, pages / 8);
    cr_assert_eq(host_rw(h, 1, false, 0, 15, buf), 0);
    guest_mem_dirty_collect(&h->mem, bits);
    cr_assert(DIRTY(buf) && DIRTY(buf + 4096), "read data pages");
    cr_assert(DIRTY(h->q[1].cq));
    free(bits);
}

Test(nvme_queue, commands_beyond_queue_and_bad_nsid)
{
    cr_assert_eq(host_create_io_queues(h, 1, 16, -1), 1);
    uint64_t buf = host_alloc(h, 4096);
    struct nvme_sqe r = read_cmd(0, buf);
    r.nsid = 9;
    cr_assert_eq(host_io(h, 1, &r, NULL), GEN(NVME_SC_INVALID_NS));
    r = read_cmd(0, buf);
    r.dptr[0] = HOST_RAM; /* PRP outside RAM */
    cr_assert_eq(host_io(h, 1, &r, NULL), GEN(NVME_SC_DATA_XFER_ERROR));
    /* Doorbell of a queue that was deleted: ignored, error event queued. */
    struct nvme_sqe del = {.opcode = nvme_admin_delete_sq, .cdw10 = 1};
    cr_assert_eq(host_admin(h, &del, NULL), 0);
    host_wr32(h, NVME_DOORBELL_BASE + 8, 3);
    host_process(h);
    cr_assert_eq(h->c->aen_count, 1);
}

/* The order Linux's nvme-pci probe uses (reference §4.1), end to end. */
Test(nvme_queue, linux_probe_sequence)
{
    struct nvme_id_ctrl id;
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_CTRL, 0, 0, &id), 0);
    cr_assert(id.lpa & NVME_CTRL_LPA_CMD_EFFECTS);
    struct nvme_cmd_effects_log *eff = malloc(sizeof(*eff));
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_CMD_EFFECTS, 0, sizeof(*eff), 0, false, eff), 0);
    free(eff);
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_CSI_CTRL, 0, 0, NULL), 0);
    uint8_t ts[8] = {0};
    uint64_t tsbuf = host_alloc(h, 4096);
    memcpy(host_ptr(h, tsbuf), ts, sizeof(ts));
    struct nvme_sqe setts = {
        .opcode = nvme_admin_set_features, .cdw10 = NVME_FEAT_FID_TIMESTAMP, .dptr = {tsbuf}};
    cr_assert_eq(host_admin(h, &setts, NULL), 0);
    cr_assert_eq(host_create_io_queues(h, 4, 1024, -1), 4);
    cr_assert_eq(host_dbbuf(h), 0);
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_ASYNC_EVENT,
                                  le32toh(id.oaes) & (NVME_CTRL_OAES_NA | NVME_CTRL_OAES_FA), NULL),
                 0);
    struct nvme_sqe aer = {.opcode = nvme_admin_async_event};
    host_submit(h, 0, &aer, false);
    uint32_t list[1024];
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_NS_ACTIVE_LIST, 0, 0, list), 0);
    cr_assert_eq(list[0], 1);
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_NS_DESC_LIST, 1, 0, NULL), 0);
    struct nvme_id_ns ns;
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_NS, 1, 0, &ns), 0);
    cr_assert_eq(le64toh(ns.nsze), HOST_DISK / 512);
    uint64_t buf = host_alloc(h, 4096);
    for (uint16_t q = 1; q <= 4; q++)
        cr_assert_eq(host_rw(h, q, false, 0, 7, buf), 0, "queue %u", q);
    /* Orderly shutdown, as at reboot. */
    host_wr32(h, NVME_REG_CC, host_rd32(h, NVME_REG_CC) | 1u << 14);
    for (int i = 0; i < 5; i++)
        host_process(h);
    cr_assert_eq((host_rd32(h, NVME_REG_CSTS) >> 2) & 3, NVME_CSTS_SHST_CMPLT);
}
