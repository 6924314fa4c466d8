/*
 * test=nvme-bad, the catalogue: each case does one wrong thing towards the
 * controller and returns the command status (or CASE_NOCMD when it only
 * misuses a doorbell). The runner (nvme_bad.c) judges the outcome and checks
 * that the controller still works.
 */
#include "nvme_bad.h"

struct nvme_ctrl bad_ctrl;
uint8_t *bad_buf;
uint64_t *bad_prp_list;
uint64_t bad_hole;
uint64_t bad_far_qid;
unsigned bad_resets;
static uint16_t cid_next = 0x100;

static struct nvme_q *q1(void)
{
    return &bad_ctrl.io[0];
}

uint16_t bad_next_cid(void)
{
    if (++cid_next >= 0xff00)
        cid_next = 0x100;
    return cid_next;
}

int bad_io(uint8_t opc, uint32_t nsid, uint64_t lba, uint32_t nlb, uint64_t prp1, uint64_t prp2)
{
    return nvme_io_sync(&bad_ctrl, q1(), bad_next_cid(), opc, nsid, lba, nlb, prp1, prp2);
}

/* ---- doorbell misuse: no command, the controller should ignore it (maybe raise an AER) ---- */

static volatile uint32_t *sq_db(uint32_t qid)
{
    return (volatile uint32_t *)(bad_ctrl.bar + NVME_DBS + 2 * qid * bad_ctrl.db_stride);
}

static volatile uint32_t *cq_db(uint32_t qid)
{
    return (volatile uint32_t *)(bad_ctrl.bar + NVME_DBS + (2 * qid + 1) * bad_ctrl.db_stride);
}

static int c_db_sq_next(void)
{
    *sq_db(bad_ctrl.nr_io + 1) = 1;
    return CASE_NOCMD;
}

static int c_db_sq_far(void)
{
    *sq_db((uint32_t)bad_far_qid) = 1;
    return CASE_NOCMD;
}

static int c_db_cq_next(void)
{
    *cq_db(bad_ctrl.nr_io + 1) = 1;
    return CASE_NOCMD;
}

static int c_sq_tail_oob(void)
{
    *q1()->sq_db = q1()->size + 3u;
    return CASE_NOCMD;
}

static int c_cq_head_oob(void)
{
    *q1()->cq_db = q1()->size + 3u;
    return CASE_NOCMD;
}

static int c_cq_head_ahead(void)
{
    /* Head moved past entries the controller never posted. */
    *q1()->cq_db = (q1()->cq_head + 5u) % q1()->size;
    return CASE_NOCMD;
}

static int c_admin_tail_oob(void)
{
    *bad_ctrl.admin.sq_db = NVME_ADMIN_QSZ + 7u;
    return CASE_NOCMD;
}

static int c_db_byte_write(void)
{
    *((volatile uint8_t *)q1()->sq_db + 1) = 0x55;
    return CASE_NOCMD;
}

/* ---- DMA to or from places that are not RAM ---- */

static int c_prp1_hole_read(void)
{
    return bad_io(NVME_CMD_READ, bad_ctrl.cfg.nsid, 0, bad_lbas(BAD_PAGE), bad_hole, 0);
}

static int c_prp1_hole_write(void)
{
    return bad_io(NVME_CMD_WRITE, bad_ctrl.cfg.nsid, 0, bad_lbas(BAD_PAGE), bad_hole, 0);
}

static int c_prp1_rom_read(void)
{
    return bad_io(NVME_CMD_READ, bad_ctrl.cfg.nsid, 0, bad_lbas(BAD_PAGE), 0xfffff000ULL, 0);
}

static int c_prp1_beyond_maxphys(void)
{
    return bad_io(NVME_CMD_READ, bad_ctrl.cfg.nsid, 0, bad_lbas(BAD_PAGE), 1ULL << 52, 0);
}

static int c_prp2_hole(void)
{
    return bad_io(NVME_CMD_READ, bad_ctrl.cfg.nsid, 0, bad_lbas(2 * BAD_PAGE), (uintptr_t)bad_buf,
                  bad_hole);
}

static int c_prp_list_hole(void)
{
    return bad_io(NVME_CMD_READ, bad_ctrl.cfg.nsid, 0, bad_lbas(4 * BAD_PAGE), (uintptr_t)bad_buf,
                  bad_hole);
}

static int c_prp_list_entry_hole(void)
{
    bad_prp_list[0] = (uintptr_t)bad_buf + BAD_PAGE;
    bad_prp_list[1] = bad_hole;
    bad_prp_list[2] = (uintptr_t)bad_buf + 3 * BAD_PAGE;
    return bad_io(NVME_CMD_READ, bad_ctrl.cfg.nsid, 0, bad_lbas(4 * BAD_PAGE), (uintptr_t)bad_buf,
                  (uintptr_t)bad_prp_list);
}

/* The device reads its own register page (peer-to-peer to itself): harmless reads. */
static int c_prp1_own_bar_write(void)
{
    return bad_io(NVME_CMD_WRITE, bad_ctrl.cfg.nsid, 0, bad_lbas(BAD_PAGE), (uintptr_t)bad_ctrl.bar,
                  0);
}

static int c_prp1_misaligned(void)
{
    return bad_io(NVME_CMD_READ, bad_ctrl.cfg.nsid, 0, 1, (uintptr_t)bad_buf + 1, 0);
}

/* ---- invalid I/O commands ---- */

static int c_lba_out_of_range(void)
{
    return bad_io(NVME_CMD_READ, bad_ctrl.cfg.nsid, bad_ctrl.nsze, 1, (uintptr_t)bad_buf, 0);
}

static int c_lba_straddles_end(void)
{
    return bad_io(NVME_CMD_READ, bad_ctrl.cfg.nsid, bad_ctrl.nsze - 1, 2, (uintptr_t)bad_buf, 0);
}

static int c_bad_io_opcode(void)
{
    return bad_io(0x7f, bad_ctrl.cfg.nsid, 0, 1, (uintptr_t)bad_buf, 0);
}

static int c_bad_nsid(void)
{
    return bad_io(NVME_CMD_READ, 0xffff0000u, 0, 1, (uintptr_t)bad_buf, 0);
}

static int c_nsid_zero(void)
{
    return bad_io(NVME_CMD_READ, 0, 0, 1, (uintptr_t)bad_buf, 0);
}

static int c_fused_alone(void)
{
    struct nvme_q *q = q1();
    uint16_t cid = bad_next_cid();
    struct nvme_sqe cmd = {.cdw0 = NVME_CMD_READ | 1u << 8 /* FUSE: first */ | (uint32_t)cid << 16,
                           .nsid = bad_ctrl.cfg.nsid,
                           .prp1 = (uintptr_t)bad_buf};
    nvme_sq_push(q, &cmd);
    nvme_sq_ring(q);
    struct nvme_cqe e;
    int r = nvme_cq_wait(&bad_ctrl, q, &e, bad_ctrl.cmd_tsc);
    if (r)
        return r;
    nvme_cq_ring(q);
    return e.cid == cid ? nvme_cqe_status(&e) : NVME_ST_TIMEOUT;
}

static int c_sqe_all_ones(void)
{
    struct nvme_q *q = q1();
    struct nvme_sqe cmd;
    memset(&cmd, 0xff, sizeof(cmd));
    uint16_t cid = bad_next_cid();
    cmd.cdw0 = 0x0000ffffu | (uint32_t)cid << 16;
    nvme_sq_push(q, &cmd);
    nvme_sq_ring(q);
    struct nvme_cqe e;
    int r = nvme_cq_wait(&bad_ctrl, q, &e, bad_ctrl.cmd_tsc);
    if (r)
        return r;
    nvme_cq_ring(q);
    return e.cid == cid ? nvme_cqe_status(&e) : NVME_ST_TIMEOUT;
}

/* ---- invalid admin commands and queue management ---- */

int bad_admin(uint32_t opc, uint64_t prp1, uint32_t cdw10, uint32_t cdw11)
{
    struct nvme_sqe cmd = {.cdw0 = opc, .prp1 = prp1, .cdw10 = cdw10, .cdw11 = cdw11};
    return nvme_admin(&bad_ctrl, &cmd, NULL);
}

static uint32_t qsize_qid(uint32_t size, uint32_t qid)
{
    return (size - 1) << 16 | qid;
}

static int c_bad_admin_opcode(void)
{
    return bad_admin(0x3f, 0, 0, 0);
}

static int c_create_sq_bad_cq(void)
{
    uint32_t qid = bad_ctrl.nr_io + 1;
    return bad_admin(NVME_ADM_CREATE_SQ, (uintptr_t)bad_buf, qsize_qid(16, qid), 0x3f << 16 | 1);
}

static int c_create_cq_bad_qid(void)
{
    return bad_admin(NVME_ADM_CREATE_CQ, (uintptr_t)bad_buf, qsize_qid(16, 0xffff), 1);
}

static int c_create_cq_too_big(void)
{
    uint32_t mqes = (uint32_t)(bad_ctrl.cap & 0xffff);
    if (mqes == 0xffff)
        return CASE_NOCMD;
    return bad_admin(NVME_ADM_CREATE_CQ, (uintptr_t)bad_buf,
                     qsize_qid(mqes + 2, bad_ctrl.nr_io + 1), 1);
}

static int c_create_sq_existing(void)
{
    return bad_admin(NVME_ADM_CREATE_SQ, (uintptr_t)bad_buf, qsize_qid(16, 1), 1u << 16 | 1);
}

static int c_delete_cq_in_use(void)
{
    return bad_admin(NVME_ADM_DELETE_CQ, 0, 1, 0);
}

static int c_delete_sq_missing(void)
{
    return bad_admin(NVME_ADM_DELETE_SQ, 0, bad_ctrl.nr_io + 1, 0);
}

static int c_create_cq_hole(void)
{
    uint32_t qid = bad_ctrl.nr_io + 1;
    int st = bad_admin(NVME_ADM_CREATE_CQ, bad_hole, qsize_qid(16, qid), 1);
    if (st == 0)
        (void)bad_admin(NVME_ADM_DELETE_CQ, 0, qid, 0); /* accepted: take it away again */
    return st;
}

/* ---- reset with commands in flight ---- */

static int c_reset_inflight(void)
{
    for (unsigned i = 0; i < bad_ctrl.nr_io; i++) {
        struct nvme_q *q = &bad_ctrl.io[i];
        for (unsigned k = 0; k < 4 && k + 1 < q->size; k++) {
            struct nvme_sqe cmd = {.cdw0 = NVME_CMD_READ | (uint32_t)bad_next_cid() << 16,
                                   .nsid = bad_ctrl.cfg.nsid,
                                   .prp1 = (uintptr_t)bad_buf + k * BAD_PAGE,
                                   .cdw10 = k * 8};
            nvme_sq_push(q, &cmd);
        }
        nvme_sq_ring(q);
    }
    int r = nvme_init(&bad_ctrl, &bad_ctrl.cfg); /* CC.EN = 0 at once, then bring-up again */
    bad_resets++;
    if (r)
        fail(EXIT_FAIL, "nvme-bad: controller does not come back after a reset with I/O in flight");
    nvme_post_aer(&bad_ctrl);
    return 0;
}

const struct bad_case bad_cases[] = {
    {"db-sq-uncreated-qid", c_db_sq_next, X_NONE, 0, 0},
    {"db-sq-far-qid", c_db_sq_far, X_NONE, 0, 0},
    {"db-cq-uncreated-qid", c_db_cq_next, X_NONE, 0, 0},
    {"db-sq-tail-beyond-size", c_sq_tail_oob, X_NONE, 0, 0},
    {"db-cq-head-beyond-size", c_cq_head_oob, X_NONE, 0, 0},
    {"db-cq-head-past-tail", c_cq_head_ahead, X_NONE, 0, 0},
    {"db-admin-tail-beyond-size", c_admin_tail_oob, X_NONE, 0, 0},
    {"db-byte-write", c_db_byte_write, X_NONE, 0, 0},
    {"prp1-unmapped-read", c_prp1_hole_read, X_ERROR, 0x004, 0},
    {"prp1-unmapped-write", c_prp1_hole_write, X_ERROR, 0x004, 0},
    {"prp1-rom-read", c_prp1_rom_read, X_ANY, 0, 0},
    {"prp1-beyond-maxphyaddr", c_prp1_beyond_maxphys, X_ERROR, 0x004, 0},
    {"prp2-unmapped", c_prp2_hole, X_ERROR, 0x004, 2 * BAD_PAGE},
    {"prp-list-unmapped", c_prp_list_hole, X_ERROR, 0x004, 4 * BAD_PAGE},
    {"prp-list-entry-unmapped", c_prp_list_entry_hole, X_ERROR, 0x004, 4 * BAD_PAGE},
    {"prp1-own-bar-write", c_prp1_own_bar_write, X_ANY, 0, 0},
    {"prp1-misaligned", c_prp1_misaligned, X_ANY, 0, 0},
    {"lba-out-of-range", c_lba_out_of_range, X_ERROR, 0x080, 0},
    {"lba-straddles-end", c_lba_straddles_end, X_ERROR, 0x080, 0},
    {"io-bad-opcode", c_bad_io_opcode, X_ERROR, 0x001, 0},
    {"io-bad-nsid", c_bad_nsid, X_ERROR, 0x00b, 0},
    {"io-nsid-zero", c_nsid_zero, X_ERROR, 0x00b, 0},
    {"io-fused-alone", c_fused_alone, X_ERROR, -1, 0},
    {"io-sqe-all-ones", c_sqe_all_ones, X_ERROR, -1, 0},
    {"admin-bad-opcode", c_bad_admin_opcode, X_ERROR, 0x001, 0},
    {"create-sq-missing-cq", c_create_sq_bad_cq, X_ERROR, 0x100, 0},
    {"create-cq-bad-qid", c_create_cq_bad_qid, X_ERROR, 0x101, 0},
    {"create-cq-too-big", c_create_cq_too_big, X_ERROR, 0x102, 0},
    {"create-sq-existing", c_create_sq_existing, X_ERROR, 0x101, 0},
    {"delete-cq-in-use", c_delete_cq_in_use, X_ERROR, 0x10c, 0},
    {"delete-sq-missing", c_delete_sq_missing, X_ERROR, 0x101, 0},
    {"create-cq-unmapped", c_create_cq_hole, X_ANY, 0, 0},
    {"reset-with-io-inflight", c_reset_inflight, X_NONE, 0, 0},
};

const unsigned bad_ncases = sizeof(bad_cases) / sizeof(bad_cases[0]);
