/*
 * A simulated host for the NVMe controller model (like QEMU's qtest driver): guest RAM in
 * a malloc'd buffer, RAM-backed namespaces, and a tiny driver that writes registers, builds
 * queues in "guest" memory, rings doorbells and polls completions by calling
 * nvme_ctrl_process() itself (there is no I/O thread). Interrupts are recorded.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "emu/nvme_int.h"

#define HOST_RAM     (64u << 20)
#define HOST_DISK    (4u << 20) /* per namespace */
#define HOST_TIMEOUT 1000       /* nvme_ctrl_process() calls before a wait gives up */

/* Status field of a CQE (phase stripped); HOST_NO_CQE when none arrived. */
#define HOST_NO_CQE 0xffff
#define SF(sct, sc) NVME_STATUS(sct, sc)
#define GEN(sc)     (NVME_STATUS(NVME_SCT_GENERIC, sc) | NVME_SC_DNR)
#define SPC(sc)     (NVME_STATUS(NVME_SCT_CMD_SPECIFIC, sc) | NVME_SC_DNR)

struct host_opts {
    int nr_ns;             /* default 1 */
    unsigned mqes;         /* default 1023 */
    unsigned mdts;         /* default 7 */
    unsigned nr_io_queues; /* default 8 */
    const char *ns_dir;
    unsigned deletable_mask; /* bit i: namespace i+1 may be deleted by the guest */
};

struct host_q {
    uint64_t sq, cq; /* guest addresses */
    uint32_t depth;
    uint32_t sq_tail, cq_head;
    uint8_t phase;
    bool shadow; /* ring through the shadow doorbell buffer, not MMIO */
    /* CQEs consumed while waiting for another CID, handed out by host_poll first. */
    struct nvme_cqe stash[16];
    int nstash;
};

struct host {
    uint8_t *ram;
    struct guest_mem mem;
    struct nvme_ctrl *c;
    struct blk_dev *disk[NVME_MAX_NAMESPACES];
    int nr_disks;
    uint64_t next_page;
    uint16_t next_cid;
    struct host_q q[NVME_MAX_QUEUES]; /* [0] admin */
    uint64_t dbs, eis;                /* shadow doorbell buffers (0: unused) */
    /* Interrupts seen. */
    unsigned msix[NVME_NR_VECTORS];
    unsigned msix_total;
    int intx;
    unsigned intx_raises;
    unsigned kicks;
    /* Shadow doorbell state as reported by the model; with swallow_dbs set the host acts
     * like KVM ioeventfds: I/O queue doorbell writes while it is on never reach the model. */
    bool shadow_on;
    bool swallow_dbs;
    unsigned swallowed;
};

struct host *host_new(const struct host_opts *o);
void host_free(struct host *h);

uint32_t host_rd32(struct host *h, uint64_t off);
uint64_t host_rd64(struct host *h, uint64_t off);
void host_wr32(struct host *h, uint64_t off, uint32_t v);
void host_wr64(struct host *h, uint64_t off, uint64_t v);

/* Zeroed, page-aligned guest memory (bump allocator); host_ptr maps a guest address. */
uint64_t host_alloc(struct host *h, uint64_t size);
void *host_ptr(struct host *h, uint64_t gpa);

/* Programs AQA/ASQ/ACQ and CC.EN=1; true if CSTS.RDY came up. */
bool host_enable(struct host *h, uint32_t admin_depth);
/* CC.EN=0, processing until RDY drops (bounded); true if it did. */
bool host_disable(struct host *h);
bool host_process(struct host *h); /* one nvme_ctrl_process() */

/* Submits on queue qid (rings the doorbell unless noring); returns the CID used. */
uint16_t host_submit(struct host *h, uint16_t qid, struct nvme_sqe *cmd, bool noring);
void host_ring_sq(struct host *h, uint16_t qid);
/* Takes the next CQE if its phase says it is new; rings the CQ head doorbell. */
bool host_poll(struct host *h, uint16_t qid, struct nvme_cqe *out);
/* Like host_poll without consuming or ringing. */
bool host_peek(struct host *h, uint16_t qid, struct nvme_cqe *out);
/* Processes until a CQE arrives on qid (bounded); its status field, or HOST_NO_CQE. */
uint16_t host_wait(struct host *h, uint16_t qid, struct nvme_cqe *out);
/* Same, for the CQE of command cid (others are stashed for host_poll). */
uint16_t host_wait_cid(struct host *h, uint16_t qid, uint16_t cid, struct nvme_cqe *out);

/* Submit and wait (admin queue / an I/O queue). */
uint16_t host_admin(struct host *h, struct nvme_sqe *cmd, struct nvme_cqe *out);
uint16_t host_io(struct host *h, uint16_t qid, struct nvme_sqe *cmd, struct nvme_cqe *out);

/* Set Features Number of Queues, then n CQ/SQ pairs of depth entries, CQ i on vector
 * (vector < 0: vector i). Returns how many pairs were created. */
int host_create_io_queues(struct host *h, int n, uint32_t depth, int vector);

/* Queue pair 1 with a 4-entry CQ (it holds 3 completions) under a 16-entry SQ, so that
 * completions park; h->q[1].depth is 16 (the SQ's): set it to 4 to consume the CQ. */
bool host_create_tiny_cq_pair(struct host *h);

/* Common commands. buf receives 4 KiB (identify) / len bytes (log). */
uint16_t host_identify(struct host *h, uint8_t cns, uint32_t nsid, uint32_t cdw11, void *buf);
uint16_t host_get_log(struct host *h, uint8_t lid, uint32_t nsid, uint32_t len, uint64_t off,
                      bool rae, void *buf);
uint16_t host_set_feature(struct host *h, uint8_t fid, uint32_t cdw11, uint32_t *result);
uint16_t host_get_feature(struct host *h, uint8_t fid, uint8_t sel, uint32_t cdw11,
                          uint32_t *result);
/* Read/write nlb+1 blocks of namespace 1 with a PRP buffer at gpa. */
uint16_t host_rw(struct host *h, uint16_t qid, bool write, uint64_t slba, uint32_t nlb,
                 uint64_t gpa);
/* Doorbell Buffer Config with fresh pages; I/O queues then ring through shadow buffers. */
uint16_t host_dbbuf(struct host *h);

static inline uint16_t cqe_sf(const struct nvme_cqe *e)
{
    return le16toh(e->status) >> 1;
}
