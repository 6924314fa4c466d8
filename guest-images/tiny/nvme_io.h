/* NVMe I/O jobs: one per I/O queue, driven by io_run() in ring 3 (nvme_io.c). */
#pragma once
#include "nvme.h"

enum io_mode { IO_VERIFY, IO_RANDREAD, IO_RANDWRITE, IO_SEQREAD, IO_SEQWRITE };

struct io_slot { /* one per command id (CID = slot index) */
    uint8_t *buf;
    uint64_t prp2;
    uint64_t lba;
    uint64_t t_submit;
    uint32_t pass;
    uint8_t write, busy;
};

enum io_err_kind { ERR_NONE, ERR_STATUS, ERR_MISMATCH, ERR_BAD_CQE };

struct io_err {
    enum io_err_kind kind;
    int status;
    uint16_t qid, cid;
    uint64_t lba, offset, want, got;
};

struct io_job {
    struct nvme_ctrl *c;
    struct nvme_q *q;
    enum io_mode mode;
    unsigned qd;
    uint32_t bs, nlb;       /* bytes and LBAs per command */
    uint64_t lba0, nblocks; /* region: nblocks blocks of bs bytes from LBA lba0 */
    uint64_t target;        /* commands to issue (UINT64_MAX: until deadline) */
    uint64_t deadline;      /* TSC; 0 = none */
    uint64_t timeout_tsc;   /* no completion for this long with commands in flight: fail */
    struct io_slot *slots;
    uint16_t *free_ids;
    unsigned nfree, inflight;
    uint64_t issued, done, errors, lat_sum, lat_max, rng, seq;
    /* verify: rounds of writes then reads of the same blocks */
    uint32_t pass;
    uint64_t round_base, round_len, round_issued, chunk;
    int reading;
    struct io_err err; /* first error */
    uint64_t t_start, t_end, last_progress, irq_seen, kicks, kick_mark;
    int finished;
};

/* Buffers, PRP lists and initial state; 0 = ok. */
int io_job_setup(struct io_job *j);
/* Run the jobs to completion (this cpu); fails the test (guest exit) on a stuck queue. */
void io_run(struct io_job **jobs, unsigned n);
void pattern_fill(uint8_t *buf, uint64_t lba, unsigned nlbas, unsigned lba_shift, uint32_t pass);
/* Index of the first wrong 64-bit word, or -1; *want / *got describe it. */
int64_t pattern_check(const uint8_t *buf, uint64_t lba, unsigned nlbas, unsigned lba_shift,
                      uint32_t pass, uint64_t *want, uint64_t *got);
/* One synchronous command on q with CID cid; returns status or NVME_ST_*. */
int nvme_io_sync(struct nvme_ctrl *c, struct nvme_q *q, uint16_t cid, uint8_t opc, uint32_t nsid,
                 uint64_t slba, uint32_t nlb, uint64_t prp1, uint64_t prp2);
