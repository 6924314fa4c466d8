/*
 * test=nvme-bad: shared state between the runner (nvme_bad.c) and the catalogue
 * of misbehaviours (nvme_bad_cases.c).
 */
#pragma once
#include "nvme_test.h"

#define BAD_PAGE   4096u
#define CASE_NOCMD 1000 /* case result: nothing submitted (doorbell-only cases) */

enum expect { X_NONE, X_ERROR, X_ANY };

struct bad_case {
    const char *name;
    int (*run)(void);
    enum expect expect;
    int want_st;       /* X_ERROR: the specific status (SC | SCT << 8), -1 = any error */
    uint32_t min_xfer; /* skip unless MDTS allows this many bytes (0 = always) */
};

extern struct nvme_ctrl bad_ctrl;
extern uint8_t *bad_buf;       /* 4 pages of data buffer */
extern uint64_t *bad_prp_list; /* 1 page */
extern uint64_t bad_hole;      /* guest-physical address with no RAM and no device */
extern uint64_t bad_far_qid;   /* highest doorbell below the MSI-X structures */
extern unsigned bad_resets;
extern const struct bad_case bad_cases[];
extern const unsigned bad_ncases;

/* One command on I/O queue 1 with a fresh CID; status or NVME_ST_*. */
int bad_io(uint8_t opc, uint32_t nsid, uint64_t lba, uint32_t nlb, uint64_t prp1, uint64_t prp2);
int bad_admin(uint32_t opc, uint64_t prp1, uint32_t cdw10, uint32_t cdw11);
uint16_t bad_next_cid(void);

static inline uint32_t bad_lbas(uint32_t bytes)
{
    return bytes >> bad_ctrl.lba_shift;
}
