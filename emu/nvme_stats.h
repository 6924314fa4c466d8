/*
 * Live I/O statistics of the NVMe controller, per I/O queue and per namespace: commands
 * (reads, writes, others), bytes, errors, the depth in flight now and its maximum, and a
 * latency histogram from the moment a command is fetched from its SQ to the moment its
 * CQE is posted (CLOCK_MONOTONIC, two clock reads per command).
 *
 * Threading: only the controller's I/O path writes the counters, always under the
 * controller's lock (one writer at a time), with relaxed atomic stores; any thread reads
 * them without the lock through nvme_stats_snapshot(), with relaxed atomic loads. Every
 * counter is a naturally aligned 64-bit word, so a reader never sees a torn value; a
 * snapshot is not one instant (a command may be counted in one field and not yet in
 * another), which is fine for rates and percentiles.
 *
 * The counters live with the controller and start at zero when it is created: on a live
 * migration's destination they start at zero again (they are not part of the stream).
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "emu/nvme.h"

/* Latency histogram: bucket 0 holds everything under 1024 ns; then 4 linear sub-buckets
 * per power of two from 2^10 ns (~1 us) to 2^34 ns (~17 s); longer ones land in the last. */
#define NVME_STATS_SUB_BITS  2
#define NVME_STATS_SUB       (1 << NVME_STATS_SUB_BITS)
#define NVME_STATS_MIN_SHIFT 10
#define NVME_STATS_MAX_SHIFT 33
#define NVME_STATS_NR_BUCKETS                                                                      \
    (1 + (NVME_STATS_MAX_SHIFT - NVME_STATS_MIN_SHIFT + 1) * NVME_STATS_SUB)

struct nvme_io_stats {
    uint64_t reads, writes, others;     /* commands completed, by kind */
    uint64_t errors;                    /* completed with a non-zero status (any kind) */
    uint64_t bytes_read, bytes_written; /* successful Read/Write data only */
    uint64_t depth, max_depth;          /* fetched and not yet completed */
    uint64_t lat_sum_ns, lat_max_ns;
    uint64_t hist[NVME_STATS_NR_BUCKETS];
};

/* Everything the controller counts (inside struct nvme_ctrl). */
struct nvme_stats {
    uint64_t started_ns;                          /* the controller was created (CLOCK_MONOTONIC) */
    struct nvme_io_stats q[NVME_MAX_QUEUES];      /* by queue id; [0], the admin queue, unused */
    struct nvme_io_stats ns[NVME_MAX_NAMESPACES]; /* by nsid - 1 */
};

/* A copy taken at one moment: the I/O queues and namespaces that exist, or existed and
 * counted something (a queue the guest deleted keeps its numbers). */
struct nvme_stats_snapshot {
    uint64_t taken_ns;   /* CLOCK_MONOTONIC */
    uint64_t started_ns; /* the controller was created: counting began */
    bool enabled;        /* false: the controller was configured with stats_off */
    int nr_queues;
    struct {
        uint16_t qid;
        bool live; /* the SQ exists now */
        struct nvme_io_stats s;
    } q[NVME_MAX_IO_QUEUES];
    int nr_ns;
    struct {
        uint32_t nsid;
        bool live; /* allocated now */
        struct nvme_io_stats s;
    } ns[NVME_MAX_NAMESPACES];
};

uint64_t nvme_stats_now_ns(void);

/* Fills s (it is large: allocate it, do not put it on a small stack). */
void nvme_stats_snapshot(struct nvme_ctrl *c, struct nvme_stats_snapshot *s);

/* Histogram helpers. The bucket a latency falls in, and a bucket's bounds [lo, hi). */
unsigned nvme_stats_bucket(uint64_t ns);
uint64_t nvme_stats_bucket_lo(unsigned b);
uint64_t nvme_stats_bucket_hi(unsigned b);
/* Latency at percentile p (0 < p <= 100, e.g. 99.9): the upper bound of the bucket the
 * p-th command falls in, never above the largest latency seen; 0 without commands. The
 * bucket width bounds the error: under 25% of the value above 1 us. */
uint64_t nvme_stats_percentile_ns(const struct nvme_io_stats *s, double p);
/* Commands completed (reads + writes + others). */
uint64_t nvme_stats_commands(const struct nvme_io_stats *s);

/* ---- the controller's I/O path (emu/nvme_queue.c) ---- */
struct nvme_req;
/* A command was fetched from I/O queue sq: starts its clock, counts it in flight. */
void nvme_stats_fetched(struct nvme_ctrl *c, struct nvme_req *r);
/* Its CQE was posted (or it went nowhere: queue deleted, controller reset). */
void nvme_stats_completed(struct nvme_ctrl *c, struct nvme_req *r);
