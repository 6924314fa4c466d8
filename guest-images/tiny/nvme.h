/*
 * NVMe driver of the tiny guest: controller registers, queue and controller
 * state. nvme.c brings the controller up and runs admin commands, nvme_q.c has
 * the queue primitives (doorbells, shadow doorbells, completions), nvme_io.c the
 * ring-3 benchmark/verify loop, nvme_test.c / nvme_bad.c the tests.
 * Everything runs in ring 3; only MSI-X interrupts enter ring 0 (isr.S).
 */
#pragma once
#include "pci.h"
#include "tiny.h"

/* Controller registers (BAR0) */
#define NVME_CAP  0x00
#define NVME_VS   0x08
#define NVME_CC   0x14
#define NVME_CSTS 0x1c
#define NVME_AQA  0x24
#define NVME_ASQ  0x28
#define NVME_ACQ  0x30
#define NVME_DBS  0x1000

#define NVME_CC_EN     (1u << 0)
#define NVME_CC_IOSQES (6u << 16) /* 64-byte SQ entries */
#define NVME_CC_IOCQES (4u << 20) /* 16-byte CQ entries */
#define NVME_CSTS_RDY  (1u << 0)
#define NVME_CSTS_CFS  (1u << 1)

/* Admin opcodes */
#define NVME_ADM_DELETE_SQ   0x00
#define NVME_ADM_CREATE_SQ   0x01
#define NVME_ADM_GET_LOG     0x02
#define NVME_ADM_DELETE_CQ   0x04
#define NVME_ADM_CREATE_CQ   0x05
#define NVME_ADM_IDENTIFY    0x06
#define NVME_ADM_SET_FEATURE 0x09
#define NVME_ADM_AER         0x0c
#define NVME_ADM_DBBUF       0x7c
/* I/O opcodes */
#define NVME_CMD_FLUSH 0x00
#define NVME_CMD_WRITE 0x01
#define NVME_CMD_READ  0x02

#define NVME_FEAT_NUM_QUEUES 0x07
#define NVME_OACS_DBBUF      (1u << 8)

#define NVME_MAX_IOQ   8
#define NVME_ADMIN_QSZ 32
#define NVME_AER_CID   0xfff0 /* admin CID of the outstanding Asynchronous Event Request */

/* Status returned by the helpers: CQE status field (SC | SCT << 8 | ...), or these. */
#define NVME_ST_TIMEOUT (-1) /* no completion in time */
#define NVME_ST_FATAL   (-2) /* CSTS.CFS set while waiting */
#define NVME_SC(st)     ((st)&0xff)
#define NVME_SCT(st)    (((st) >> 8) & 7)

struct nvme_sqe {
    uint32_t cdw0; /* opcode 7:0, CID 31:16 */
    uint32_t nsid;
    uint32_t cdw2, cdw3;
    uint64_t mptr;
    uint64_t prp1, prp2;
    uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};
_Static_assert(sizeof(struct nvme_sqe) == 64, "SQ entry");

struct nvme_cqe {
    uint32_t dw0, dw1;
    uint16_t sq_head, sq_id;
    uint16_t cid;
    uint16_t status; /* bit 0: phase tag; 15:1: status field */
};
_Static_assert(sizeof(struct nvme_cqe) == 16, "CQ entry");

struct nvme_q {
    uint16_t qid, size;
    uint16_t sq_tail, cq_head, phase;
    uint16_t sq_pub, cq_pub; /* last values published through the (shadow) doorbells */
    struct nvme_sqe *sq;
    volatile struct nvme_cqe *cq;
    volatile uint32_t *sq_db, *cq_db;         /* MMIO doorbells */
    volatile uint32_t *sq_shadow, *cq_shadow; /* shadow doorbells (NULL: MMIO only) */
    volatile uint32_t *sq_ei, *cq_ei;         /* EventIdx entries */
    int always_mmio;                          /* admin queue: shadow and MMIO */
    int vector;                               /* msi_count index, -1 = polled */
    uint64_t mmio_db, shadow_only_db;         /* doorbell statistics */
};

struct nvme_cfg {
    unsigned queues; /* I/O queue pairs */
    unsigned spare;  /* queue ids requested in Set Features beyond those created */
    unsigned qsize;  /* entries per I/O queue */
    int shadow;      /* want Doorbell Buffer Config */
    int msix;        /* I/O CQs interrupt-driven (one MSI-X vector each) */
    uint32_t nsid;
    uint32_t apic[NVME_MAX_IOQ]; /* MSI-X destination of each I/O queue */
    uint64_t timeout_ms;         /* per command */
};

struct nvme_ctrl {
    struct pci_dev pci;
    volatile uint8_t *bar;
    uint64_t bar_size;
    uint64_t cap;
    uint32_t vs;
    uint32_t db_stride; /* bytes between doorbells: 4 << CAP.DSTRD */
    uint64_t ready_tsc; /* CAP.TO in TSC cycles */
    uint64_t cmd_tsc;   /* command timeout in TSC cycles */
    struct nvme_cfg cfg;
    struct nvme_q admin;
    struct nvme_q io[NVME_MAX_IOQ];
    unsigned nr_io; /* I/O queue pairs created */
    uint16_t next_cid;
    /* Identify */
    uint16_t vid;
    char sn[21], mn[41], fr[9];
    uint8_t mdts;
    uint16_t oacs;
    uint32_t nn;
    uint64_t nsze;
    unsigned lba_shift;
    uint64_t max_xfer; /* bytes per command (MDTS), 0 = no limit */
    uint8_t *page;     /* 4 KiB scratch for identify / log pages */
    /* Doorbell Buffer Config */
    uint32_t *dbbuf_db, *dbbuf_ei;
    int dbbuf_on;
    /* MSI-X */
    struct msix msix;
    int msix_on;
    /* Asynchronous events */
    int aer_outstanding;
    unsigned aer_count;
    uint32_t aer_dw0; /* of the last AER completion */
    int aer_new;
    /* Completions that matched nothing */
    unsigned stray_cqes;
};

static inline uint32_t nvme_rd32(const struct nvme_ctrl *c, unsigned off)
{
    return *(volatile uint32_t *)(c->bar + off);
}

static inline void nvme_wr32(const struct nvme_ctrl *c, unsigned off, uint32_t v)
{
    *(volatile uint32_t *)(c->bar + off) = v;
}

static inline uint64_t ms_to_tsc(uint64_t ms)
{
    return ms * tsc_mhz() * 1000;
}

/* nvme.c: bring-up and admin commands */
/* Find the index-th NVMe function on bus 0, map BAR0, read CAP. 0 = ok (else message printed). */
int nvme_probe(struct nvme_ctrl *c, unsigned index);
/* Reset, enable, identify, queues, optional shadow doorbells / MSI-X. 0 = ok. */
int nvme_init(struct nvme_ctrl *c, const struct nvme_cfg *cfg);
/* CC.EN = 0 and wait for RDY = 0. 0 = ok. */
int nvme_disable(struct nvme_ctrl *c);
/* Synchronous admin command (CID assigned here); returns status or NVME_ST_*. */
int nvme_admin(struct nvme_ctrl *c, struct nvme_sqe *cmd, uint32_t *dw0);
/* Post an Asynchronous Event Request (completes later; see aer_new). */
void nvme_post_aer(struct nvme_ctrl *c);
/* Reap admin completions (AERs) without issuing anything. */
void nvme_admin_poll(struct nvme_ctrl *c);
const char *nvme_status_str(int st);

/* nvme_q.c: queue primitives */
void nvme_q_setup(struct nvme_ctrl *c, struct nvme_q *q, uint16_t qid, uint16_t size,
                  struct nvme_sqe *sq, volatile struct nvme_cqe *cq);
void nvme_q_shadow(struct nvme_ctrl *c, struct nvme_q *q);
/* Copy cmd to the SQ tail and advance it (no doorbell). */
void nvme_sq_push(struct nvme_q *q, const struct nvme_sqe *cmd);
/* Publish sq_tail / cq_head: shadow + EventIdx rule, or the MMIO doorbell. */
void nvme_sq_ring(struct nvme_q *q);
void nvme_cq_ring(struct nvme_q *q);
/* Take the next completion if its phase tag is current; 1 = got one. */
int nvme_cq_pop(struct nvme_q *q, struct nvme_cqe *out);
/* Poll for one completion, bounded; checks CSTS.CFS now and then. 0, NVME_ST_TIMEOUT/FATAL. */
int nvme_cq_wait(struct nvme_ctrl *c, struct nvme_q *q, struct nvme_cqe *out, uint64_t tsc);
static inline int nvme_cqe_status(const struct nvme_cqe *e)
{
    return e->status >> 1;
}
