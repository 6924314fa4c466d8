/* Options shared by test=nvme and test=nvme-bad (parsed in nvme_test.c). */
#pragma once
#include "nvme_io.h"

struct nvme_opts {
    enum io_mode mode;
    uint64_t qd, queues, bs, ios, secs, span, span_bytes, offset, qsize, timeout_ms, ctrl;
    uint32_t nsid;
    int shadow, msix, strict, hold;
    unsigned cpus;
    unsigned spare_qids; /* allocate this many queue ids more than created (nvme-bad) */
};

void nvme_parse_opts(const struct opts *o, struct nvme_opts *n);
/* Probe controller n->ctrl and bring it up with n's queue/doorbell/irq settings. */
void nvme_bringup(struct nvme_ctrl *c, const struct nvme_opts *n, const uint32_t *apic);
/* CC.SHN = normal shutdown, wait (bounded) for CSTS.SHST = complete. */
void nvme_shutdown(struct nvme_ctrl *c);
