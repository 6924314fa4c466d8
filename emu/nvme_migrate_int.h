/*
 * Private to emu/nvme_migrate*.c: the decoded NVMe migration image (plain data, no
 * pointers into any controller), its decoder and validator (nvme_migrate_check.c).
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emu/nvme_int.h"
#include "util/buf.h"

#define NVME_MIG_VERSION  1
#define MIG_AEC_SUPPORTED 0x30fu /* nvme_features.c AEC_SUPPORTED */
#define MIG_FW_SLOTS      3      /* nvme_nsmgmt.c FW_SLOTS */
#define MIG_DATA_UNIT     (1000ull * 512)
#define MIG_MAX_COAL_US   (255ull * 100) /* coalescing TIME is at most 255 * 100 us */

struct img_parked {
    uint16_t sqid, cid, status;
    uint32_t sq_head, result;
};

struct img_cq {
    bool present, ien, irq_pending, armed;
    uint64_t base, remaining_us;
    uint32_t size, head, tail, unsignalled, nr_parked;
    uint8_t phase;
    uint16_t vector;
    struct img_parked *parked;
};

struct img_sq {
    bool present;
    uint64_t base;
    uint32_t size, head, tail;
    uint16_t cqid;
    uint8_t prio;
};

struct img_ns {
    bool present, attached, read_only;
    uint32_t lba_shift, nr_bad;
    uint64_t bytes, nsze;
    uint8_t nguid[16], eui64[8], uuid[16];
    struct nvme_bad_range *bad;
};

struct img {
    bool quiesced, msix, io_queues_created, shutdown_pending;
    uint64_t cap, asq, acq;
    uint32_t vs, intms, cc, csts, aqa;
    struct img_ns ns[NVME_MAX_NAMESPACES];
    uint64_t dbs, eis;
    struct img_cq cq[NVME_MAX_QUEUES];
    struct img_sq sq[NVME_MAX_QUEUES];
    unsigned nr_aer, aen_count, changed_count, nr_abort;
    uint16_t aer_cid[NVME_AERL + 1];
    uint32_t aen_queue[NVME_MAX_AEN_QUEUED], aen_masked;
    uint32_t changed[1024];
    struct {
        uint16_t sqid, cid;
    } abort[8];
    struct nvme_features feat;
    bool ts_set;
    uint64_t ts_now;
    struct nvme_smart smart;
    uint64_t elapsed_ms;
    uint32_t errlog_next;
    uint64_t error_count;
    struct nvme_error_log_page errlog[NVME_ERROR_LOG_SIZE];
    char fw_slot[7][8];
    uint8_t fw_active, fw_pending;
    uint8_t selftest[564];
};

_Static_assert(sizeof(((struct nvme_ctrl *)0)->fw_slot) == sizeof(((struct img *)0)->fw_slot),
               "firmware slots");
_Static_assert(sizeof(((struct nvme_ctrl *)0)->selftest_log) == sizeof(((struct img *)0)->selftest),
               "self-test log");
_Static_assert(sizeof(((struct nvme_ctrl *)0)->abort_pending) == sizeof(((struct img *)0)->abort),
               "pending aborts");

void nvme_mig_img_free(struct img *im);
/* Decodes the whole stream (version, bounds, truncation, trailing bytes) into im. */
int nvme_mig_decode(struct mig_cursor *cur, struct img *im, char *err, size_t errlen);
/* Validates im against controller c (its CAP, guest RAM, configured namespaces). */
int nvme_mig_check(const struct nvme_ctrl *c, const struct img *im, char *err, size_t errlen);
