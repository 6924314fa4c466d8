/*
 * Internal state of the NVMe controller model, shared by the emu/ files:
 *   nvme_ctrl.c     registers, CC enable/disable/shutdown, CFS, lifecycle, process loop
 *   nvme_queue.c    SQ/CQ state, doorbells (MMIO, shadow + EventIdx), CQ posting, parking,
 *                   interrupts (vectors, coalescing, INTx/INTMS)
 *   nvme_admin.c    admin command dispatch, queue create/delete, abort, AER, dbbuf, keep alive
 *   nvme_features.c Get/Set Features
 *   nvme_identify.c Identify (all CNS values)
 *   nvme_log.c      log pages, SMART counters, error log
 *   nvme_nsmgmt.c   namespace management/attachment, format, firmware, self-test
 *   nvme_dptr.c     PRP/SGL walking into checked iovecs; copy to/from guest buffers
 *   nvme_io.c       I/O commands (read, write, flush, write zeroes, DSM, compare, verify,
 *                   copy, write uncorrectable) on struct blk_dev
 * Spec structures and constants come from libnvme (<libnvme.h>); the SQE and CQE layouts
 * are the only ones libnvme does not provide, so they are defined here.
 * All fields are host-endian in memory; guest-visible structures are little-endian
 * (x86 hosts only: le16/le32 conversions are identity, but use htole/letoh anyway).
 */
#pragma once
#include <endian.h>
#include <libnvme.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/uio.h>

#include "emu/nvme.h"
#include "emu/nvme_stats.h"

/* Submission queue entry (NVMe base spec, figure "Common Command Format"). */
struct nvme_sqe {
    uint8_t opcode;
    uint8_t flags; /* bits 7:6 PSDT (0 PRP, 1/2 SGL), 1:0 FUSE */
    uint16_t cid;
    uint32_t nsid;
    uint32_t cdw2;
    uint32_t cdw3;
    uint64_t mptr;
    uint64_t dptr[2]; /* PRP1/PRP2, or one 16-byte SGL descriptor */
    uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};
_Static_assert(sizeof(struct nvme_sqe) == 64, "SQE is 64 bytes");

/* Completion queue entry. status: bit 0 phase, bits 15:1 status field. */
struct nvme_cqe {
    uint32_t dw0;
    uint32_t dw1;
    uint16_t sq_head;
    uint16_t sq_id;
    uint16_t cid;
    uint16_t status;
};
_Static_assert(sizeof(struct nvme_cqe) == 16, "CQE is 16 bytes");

/* SGL descriptor (16 bytes): type in the high nibble of byte 15. */
struct nvme_sgl_desc {
    uint64_t addr;
    uint32_t len;
    uint8_t rsvd[3];
    uint8_t type;
};
_Static_assert(sizeof(struct nvme_sgl_desc) == 16, "SGL descriptor is 16 bytes");

/* status field values: (SCT << 8) | SC, optionally | NVME_SC_DNR (libnvme constants). */
#define NVME_STATUS(sct, sc) ((uint16_t)(((sct) << NVME_SCT_SHIFT) | (sc)))
#define NVME_OK              0

#define NVME_MAX_IOV        256 /* MDTS 512 KiB / 4 KiB pages = 128, plus SGL slack */
#define NVME_AERL           3   /* up to 4 outstanding AERs */
#define NVME_ERROR_LOG_SIZE 64
#define NVME_MAX_AEN_QUEUED 64

struct nvme_ctrl;
struct nvme_sq;

/* One command in flight. Each SQ owns a pool of these (one per queue entry). */
struct nvme_req {
    struct nvme_ctrl *ctrl;
    struct nvme_sq *sq;
    struct nvme_ns *ns;
    struct nvme_sqe cmd;
    uint32_t result; /* CQE DW0 */
    uint16_t status; /* status field */
    /* Data buffer in guest memory, mapped by nvme_dptr_map(). */
    struct iovec iov[NVME_MAX_IOV];
    int iovcnt;
    uint64_t data_len;
    /* Storage sub-requests (Copy and DSM may issue several). */
    struct blk_req blk;
    int blk_pending;
    void *bounce; /* Compare/Verify/Copy scratch, freed at completion */
    bool aborted;
    struct nvme_ns *held;           /* the namespace whose users count this command is in */
    uint64_t stats_t0;              /* fetched at (CLOCK_MONOTONIC ns); 0: not counted */
    struct nvme_io_stats *stats_ns; /* the namespace it counts against (NULL: none) */
    TAILQ_ENTRY(nvme_req) link;     /* free list, parked-on-CQ list, or AER list */
};
TAILQ_HEAD(nvme_req_list, nvme_req);

struct nvme_cq {
    uint16_t id;
    bool created;
    uint64_t base; /* guest-physical */
    uint32_t size; /* entries */
    uint32_t head; /* from the host's doorbell */
    uint32_t tail; /* next slot the controller writes */
    uint8_t phase;
    bool ien;
    uint16_t vector;
    int nr_sqs; /* SQs bound to this CQ: it cannot be deleted while > 0 */
    /* Completions waiting for a free slot, posted in order when the host frees space. */
    struct nvme_req_list parked;
    uint32_t parked_count;
    /* Shadow doorbell and EventIdx guest addresses (0 = not configured). */
    uint64_t db_addr;
    uint64_t ei_addr;
    /* Interrupt state: posted entries not yet signalled (coalescing), pending for INTx. */
    uint32_t unsignalled;
    bool irq_pending;
    uint64_t irq_deadline_us; /* coalescing: signal by then (0 = no timer armed) */
};

struct nvme_sq {
    uint16_t id;
    bool created;
    uint64_t base;
    uint32_t size;
    uint32_t head; /* next entry the controller fetches */
    uint32_t tail; /* from the host's doorbell */
    uint16_t cqid;
    uint8_t prio;
    struct nvme_req *reqs; /* size entries */
    struct nvme_req_list free;
    uint32_t inflight;
    uint64_t db_addr;
    uint64_t ei_addr;
    /* Delete I/O SQ while storage still holds requests: the pool lives on until they
     * finish, then del_req (the Delete command) completes. */
    bool deleting;
    struct nvme_req *del_req;
};

struct nvme_bad_range { /* Write Uncorrectable: reads fail until rewritten */
    uint64_t slba;
    uint64_t nlb;
};

struct nvme_ns {
    uint32_t nsid;
    bool present;  /* allocated */
    bool attached; /* visible to this controller */
    struct blk_dev *blk;
    struct blk_queue *q;
    bool owns_blk; /* created by Namespace Management: closed and deleted by the model */
    uint32_t lba_shift;
    uint64_t nsze; /* LBAs */
    bool read_only;
    uint8_t nguid[16];
    uint8_t eui64[8];
    uint8_t uuid[16];
    struct nvme_bad_range *bad;
    int nr_bad;
    bool deletable; /* Namespace Management may delete it (created ones, or configured so) */
    /* I/O commands executing on it and shutdown flushes in flight: while > 0 its geometry
     * may not change and it may not go away (their offsets and buffers depend on both). */
    unsigned users;
    struct nvme_req *format_req; /* Format NVM zeroing it: I/O is refused meanwhile */
};

static inline bool nvme_ns_busy(const struct nvme_ns *ns)
{
    return ns->users || ns->format_req;
}

struct nvme_smart {
    uint64_t data_units_read; /* thousands of 512-byte units, rounded up (spec) */
    uint64_t data_units_written;
    uint64_t host_reads;
    uint64_t host_writes;
    uint64_t busy_minutes;
    uint64_t power_cycles;
    uint64_t power_on_seconds;
    uint64_t unsafe_shutdowns;
    uint64_t media_errors;
    uint64_t error_log_entries;
    /* Sub-unit accumulators: bytes not yet counted as a whole data unit. */
    uint64_t read_bytes_acc;
    uint64_t write_bytes_acc;
};

struct nvme_features {
    uint32_t arbitration;
    uint32_t power_mgmt;
    uint16_t temp_thresh[9][2]; /* [sensor][0 over, 1 under] */
    uint32_t err_rec;
    bool vwc;                            /* volatile write cache enabled */
    uint32_t num_queues;                 /* NCQR << 16 | NSQR as granted */
    uint32_t int_coalescing;             /* TIME << 8 | THR */
    uint32_t iv_config[NVME_NR_VECTORS]; /* per-vector CD (coalescing disable) */
    uint32_t async_event_config;
    uint64_t timestamp_ms;        /* host-set value ... */
    uint64_t timestamp_set_at_ms; /* ... at this monotonic time */
    uint8_t host_behavior[512];
    uint32_t keep_alive_ms;
};

struct nvme_ctrl {
    pthread_mutex_t lock;
    struct nvme_ctrl_config cfg;
    struct guest_mem *mem;
    const struct nvme_host_ops *ops;
    void *opaque;

    /* Registers. */
    uint64_t cap;
    uint32_t vs;
    uint32_t intms; /* INTx vector mask */
    uint32_t cc;
    uint32_t csts;
    uint32_t aqa;
    uint64_t asq;
    uint64_t acq;
    bool msix_enabled;

    struct nvme_sq sq[NVME_MAX_QUEUES];
    struct nvme_cq cq[NVME_MAX_QUEUES];
    struct nvme_ns ns[NVME_MAX_NAMESPACES]; /* index nsid - 1 */

    /* Doorbell Buffer Config (shadow doorbells), 0 = off. */
    uint64_t dbbuf_dbs;
    uint64_t dbbuf_eis;

    struct nvme_features feat;
    struct nvme_smart smart;
    struct nvme_error_log_page errlog[NVME_ERROR_LOG_SIZE]; /* ring, newest at errlog_next-1 */
    unsigned errlog_next;
    uint64_t error_count;

    /* Asynchronous events: outstanding AER commands and events waiting for one. */
    struct nvme_req_list aer_reqs;
    unsigned aer_outstanding;
    uint32_t aen_queue[NVME_MAX_AEN_QUEUED]; /* CQE DW0 values */
    unsigned aen_count;
    uint32_t aen_masked;       /* event types reported but not yet cleared by reading the log */
    uint32_t changed_ns[1024]; /* Changed Namespace List log */
    unsigned changed_ns_count;

    /* Firmware and self-test. */
    char fw_slot[7][8];
    uint8_t fw_active_slot;
    uint8_t *fw_image;
    uint32_t fw_image_len;
    uint8_t selftest_log[564];

    uint64_t created_at_ms; /* power-on time base */
    bool polling;           /* the host's I/O thread is spinning: ask for no doorbells */

    /* CC.EN 1->0 with storage requests in flight: the reset finishes (RDY=0) in
     * nvme_ctrl_process() once they have all come back, so no pool is freed under them. */
    bool resetting;
    bool shutdown_pending; /* CC.SHN written: flush storage, then CSTS.SHST = complete */
    int shutdown_flushes;
    struct blk_req shutdown_req[NVME_MAX_NAMESPACES];
    bool io_queues_created; /* Set Features Number of Queues is refused after this */
    int intx_level;
    uint8_t fw_pending_slot; /* activated at the next controller enable (0 = none) */
    struct {
        uint16_t sqid, cid;
    } abort_pending[8]; /* Abort targets still in their SQ: aborted when fetched */
    unsigned nr_abort_pending;

    struct nvme_stats stats; /* emu/nvme_stats.c; not migrated */
};

/* ---- nvme_ctrl.c ---- */
uint64_t nvme_now_ms(void);
/* Marks the controller fatal (CSTS.CFS): the host must reset it. */
void nvme_ctrl_fatal(struct nvme_ctrl *c, const char *why);
bool nvme_ctrl_ready(const struct nvme_ctrl *c);

/* ---- nvme_queue.c ---- */
/* Doorbell write from MMIO (or the shadow poller): qid*2 for SQ tail, qid*2+1 for CQ head. */
void nvme_doorbell_write(struct nvme_ctrl *c, uint32_t db_index, uint32_t value);
/* Fetches new SQEs from every SQ (reading shadow doorbells when configured). */
bool nvme_queues_fetch(struct nvme_ctrl *c);
/* Posts the CQE for r (or parks it if the CQ is full), recycles r, raises the interrupt. */
void nvme_req_complete(struct nvme_ctrl *c, struct nvme_req *r);
/* Resets a request's per-command fields (a freshly fetched or re-created command). */
void nvme_req_clear(struct nvme_req *r);
/* Posts parked completions into freed CQ space. */
bool nvme_cq_post_parked(struct nvme_ctrl *c, struct nvme_cq *cq);
int nvme_sq_create(struct nvme_ctrl *c, uint16_t qid, uint64_t base, uint32_t size, uint16_t cqid,
                   uint8_t prio);
int nvme_cq_create(struct nvme_ctrl *c, uint16_t qid, uint64_t base, uint32_t size, bool ien,
                   uint16_t vector);
void nvme_sq_delete(struct nvme_ctrl *c, uint16_t qid);
void nvme_cq_delete(struct nvme_ctrl *c, uint16_t qid);
void nvme_irq_update(struct nvme_ctrl *c, struct nvme_cq *cq);
void nvme_irq_intx_update(struct nvme_ctrl *c);

/* ---- nvme_admin.c ---- */
void nvme_admin_exec(struct nvme_ctrl *c, struct nvme_req *r);
/* Queues an asynchronous event (type, info, log page) and completes an AER if one waits. */
void nvme_aen_post(struct nvme_ctrl *c, uint8_t type, uint8_t info, uint8_t log_page);

/* ---- nvme_log.c ---- */
void nvme_error_log_add(struct nvme_ctrl *c, const struct nvme_req *r, uint16_t status,
                        uint64_t lba, uint32_t nsid);
void nvme_smart_account(struct nvme_ctrl *c, bool write, uint64_t bytes);

/* ---- nvme_dptr.c ---- */
/* Maps the command's PRP or SGL data pointer for len bytes into r->iov (every range
 * checked with gpa_ptr). to_guest: the controller will write (reads, identify...).
 * Returns NVME_OK or a status (Data Transfer Error, Invalid Field, SGL errors...). */
uint16_t nvme_dptr_map(struct nvme_ctrl *c, struct nvme_req *r, uint64_t len, bool to_guest);
/* Copies a controller buffer to/from the mapped data pointer (maps it first). */
uint16_t nvme_dptr_to_guest(struct nvme_ctrl *c, struct nvme_req *r, const void *buf, uint64_t len);
uint16_t nvme_dptr_from_guest(struct nvme_ctrl *c, struct nvme_req *r, void *buf, uint64_t len);
/* Marks r's mapped guest pages dirty (after storage wrote into them). */
void nvme_dptr_mark_dirty(struct nvme_ctrl *c, const struct nvme_req *r);

/* ---- nvme_io.c ---- */
/* Executes an I/O command: completes r now (nvme_req_complete) or when storage finishes. */
void nvme_io_exec(struct nvme_ctrl *c, struct nvme_req *r);
/* Reaps storage completions for every namespace; returns true if any. */
bool nvme_io_reap(struct nvme_ctrl *c);
bool nvme_ns_lba_bad(const struct nvme_ns *ns, uint64_t slba, uint64_t nlb);

/* ---- nvme_nsmgmt.c ---- */
int nvme_ns_setup(struct nvme_ctrl *c, uint32_t nsid, struct blk_dev *blk, uint32_t lba_shift,
                  bool owns_blk);
void nvme_ns_teardown(struct nvme_ctrl *c, struct nvme_ns *ns);

/* ---- Internal API added with the controller files (nvme_ctrl engineer) ---- */

/* An admin handler's return value meaning "completes later" (AER, Format, deferred delete). */
#define NVME_STATUS_ASYNC 0xffffu

/* nvme_ctrl.c */
uint64_t nvme_now_us(void);
uint32_t nvme_page_size(const struct nvme_ctrl *c); /* CC.MPS */
/* Sets the Doorbell Buffer Config addresses (0, 0: off) and tells the host. */
void nvme_shadow_set(struct nvme_ctrl *c, uint64_t dbs, uint64_t eis);
/* Requests taken from SQ pools and not yet recycled (storage, parked, AERs...). */
unsigned nvme_reqs_outstanding(const struct nvme_ctrl *c);

/* nvme_queue.c */
void nvme_queues_reset(struct nvme_ctrl *c); /* drops parked CQEs, deletes every queue */
void nvme_cq_drop_parked(struct nvme_ctrl *c, struct nvme_cq *cq, const struct nvme_sq *only);
void nvme_req_recycle(struct nvme_ctrl *c, struct nvme_req *r);
/* Interrupts and coalescing timers for every CQ; returns true if one was signalled. */
bool nvme_irq_process(struct nvme_ctrl *c);
uint64_t nvme_irq_next_deadline_us(const struct nvme_ctrl *c);
void nvme_dbbuf_attach(struct nvme_ctrl *c); /* after Doorbell Buffer Config */
/* Asynchronous event for a bad doorbell (info 0: invalid register, 1: invalid value). */
void nvme_doorbell_error(struct nvme_ctrl *c, uint8_t info);

/* nvme_admin.c */
void nvme_admin_reset(struct nvme_ctrl *c); /* drops AERs, queued events, pending aborts */
bool nvme_abort_match(struct nvme_ctrl *c, const struct nvme_req *r);
void nvme_aen_clear(struct nvme_ctrl *c, uint8_t type); /* host read the log: unmask */

/* nvme_features.c */
void nvme_features_reset(struct nvme_ctrl *c);
uint16_t nvme_adm_get_features(struct nvme_ctrl *c, struct nvme_req *r);
uint16_t nvme_adm_set_features(struct nvme_ctrl *c, struct nvme_req *r);

/* nvme_identify.c */
uint16_t nvme_adm_identify(struct nvme_ctrl *c, struct nvme_req *r);

/* nvme_log.c */
#define NVME_TEMP_KELVIN 300 /* reported composite temperature (constant) */
#define NVME_WCTEMP      343
#define NVME_CCTEMP      373
uint16_t nvme_adm_get_log_page(struct nvme_ctrl *c, struct nvme_req *r);
uint8_t nvme_smart_critical_warning(const struct nvme_ctrl *c);
/* Records nsid in the Changed Namespace List and sends the notice event. */
void nvme_ns_changed(struct nvme_ctrl *c, uint32_t nsid);

/* nvme_nsmgmt.c */
uint16_t nvme_adm_ns_mgmt(struct nvme_ctrl *c, struct nvme_req *r);
uint16_t nvme_adm_ns_attach(struct nvme_ctrl *c, struct nvme_req *r);
uint16_t nvme_adm_format(struct nvme_ctrl *c, struct nvme_req *r);
uint16_t nvme_adm_fw_download(struct nvme_ctrl *c, struct nvme_req *r);
uint16_t nvme_adm_fw_commit(struct nvme_ctrl *c, struct nvme_req *r);
uint16_t nvme_adm_self_test(struct nvme_ctrl *c, struct nvme_req *r);
void nvme_fw_init(struct nvme_ctrl *c);
void nvme_fw_reset(struct nvme_ctrl *c); /* controller enable: activate a pending slot */

/* ---- nvme_io.c: limits for Identify (nvme_identify.c reports these) ---- */
/* Copy (Identify Namespace MSSRL/MCL/MSRC; ONCS.Copy): per source range, per command, and
 * the number of source ranges (MSRC is 0's based: 128 ranges). Copies move in bounded
 * chunks through one bounce buffer, so these bound guest-visible work, not memory. */
#define NVME_COPY_MSSRL 256
#define NVME_COPY_MCL   2048
#define NVME_COPY_MSRC  127
/* Write Uncorrectable: at most this many disjoint bad ranges per namespace (merged). */
#define NVME_IO_MAX_BAD_RANGES 1024
/* Flush with NSID FFFFFFFFh is supported: Identify Controller VWC bits 2:1 = 11b. */

/* Forgets all Write Uncorrectable ranges (Format NVM, namespace teardown). */
void nvme_ns_bad_clear(struct nvme_ns *ns);
