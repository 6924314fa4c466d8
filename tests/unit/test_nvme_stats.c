/* Live I/O statistics (emu/nvme_stats.c) through the simulated host: exact counts and bytes
 * per queue and per namespace, errors, depth in flight (parked completions count until
 * posted) returning to zero, the histogram's buckets and percentiles, and stats_off. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "emu/nvme_stats.h"
#include "tests/unit/nvme_host.h"

static struct host *h;
static struct nvme_stats_snapshot *snap;

static void setup(void)
{
    struct host_opts o = {.nr_ns = 2};
    h = host_new(&o);
    cr_assert_not_null(h->c);
    nvme_ctrl_set_msix(h->c, true);
    cr_assert(host_enable(h, 32));
    snap = calloc(1, sizeof(*snap));
}

static void teardown(void)
{
    free(snap);
    host_free(h);
}

TestSuite(nvme_stats, .init = setup, .fini = teardown);

static const struct nvme_io_stats *queue(uint16_t qid)
{
    for (int i = 0; i < snap->nr_queues; i++)
        if (snap->q[i].qid == qid)
            return &snap->q[i].s;
    return NULL;
}

static const struct nvme_io_stats *ns(uint32_t nsid)
{
    for (int i = 0; i < snap->nr_ns; i++)
        if (snap->ns[i].nsid == nsid)
            return &snap->ns[i].s;
    return NULL;
}

/* nlb blocks (512 B) at slba of namespace nsid, one command, waited for. */
static uint16_t io(uint16_t qid, uint8_t opcode, uint32_t nsid, uint64_t slba, uint32_t nlb)
{
    uint64_t buf = host_alloc(h, 4096);
    struct nvme_sqe c = {
        .opcode = opcode, .nsid = nsid, .dptr = {buf}, .cdw10 = (uint32_t)slba, .cdw12 = nlb - 1};
    return host_io(h, qid, &c, NULL);
}

static uint64_t hist_total(const struct nvme_io_stats *s)
{
    uint64_t n = 0;
    for (unsigned b = 0; b < NVME_STATS_NR_BUCKETS; b++)
        n += s->hist[b];
    return n;
}

Test(nvme_stats, counts_and_bytes_per_queue_and_namespace)
{
    cr_assert_eq(host_create_io_queues(h, 2, 64, -1), 2);
    for (int i = 0; i < 7; i++) /* q1: 7 reads of 4 KiB from ns1 */
        cr_assert_eq(io(1, nvme_cmd_read, 1, (uint64_t)i * 8, 8), 0);
    for (int i = 0; i < 5; i++) /* q2: 5 writes of 2 KiB to ns2 */
        cr_assert_eq(io(2, nvme_cmd_write, 2, (uint64_t)i * 4, 4), 0);
    for (int i = 0; i < 3; i++) /* q1: 3 writes of 512 B to ns2, 1 flush of ns1 */
        cr_assert_eq(io(1, nvme_cmd_write, 2, 100 + (uint64_t)i, 1), 0);
    struct nvme_sqe flush = {.opcode = nvme_cmd_flush, .nsid = 1};
    cr_assert_eq(host_io(h, 1, &flush, NULL), 0);
    /* Admin commands are not I/O: not counted anywhere. */
    struct nvme_sqe ka = {.opcode = nvme_admin_keep_alive};
    cr_assert_eq(host_admin(h, &ka, NULL), 0);

    nvme_stats_snapshot(h->c, snap);
    cr_assert(snap->enabled);
    cr_assert_eq(snap->nr_queues, 2, "two live I/O queues");
    cr_assert_eq(snap->nr_ns, 2);
    const struct nvme_io_stats *q1 = queue(1), *q2 = queue(2), *n1 = ns(1), *n2 = ns(2);
    cr_assert(q1 && q2 && n1 && n2);
    cr_assert_eq(q1->reads, 7);
    cr_assert_eq(q1->writes, 3);
    cr_assert_eq(q1->others, 1);
    cr_assert_eq(q1->bytes_read, 7 * 4096);
    cr_assert_eq(q1->bytes_written, 3 * 512);
    cr_assert_eq(q2->reads, 0);
    cr_assert_eq(q2->writes, 5);
    cr_assert_eq(q2->bytes_written, 5 * 2048);
    cr_assert_eq(n1->reads, 7);
    cr_assert_eq(n1->writes, 0);
    cr_assert_eq(n1->others, 1);
    cr_assert_eq(n1->bytes_read, 7 * 4096);
    cr_assert_eq(n2->writes, 8);
    cr_assert_eq(n2->bytes_written, 5 * 2048 + 3 * 512);
    cr_assert_eq(q1->errors + q2->errors + n1->errors + n2->errors, 0);
    /* Every command has one latency sample; one at a time: depth back to 0, max 1. */
    cr_assert_eq(hist_total(q1), 11);
    cr_assert_eq(hist_total(n2), 8);
    cr_assert_eq(q1->depth, 0);
    cr_assert_eq(n2->depth, 0);
    cr_assert_eq(q1->max_depth, 1);
    cr_assert_gt(q1->lat_max_ns, 0);
    cr_assert_geq(q1->lat_sum_ns, q1->lat_max_ns);
    cr_assert_gt(snap->taken_ns, snap->started_ns);
}

Test(nvme_stats, errors_counted_without_bytes)
{
    cr_assert_eq(host_create_io_queues(h, 1, 64, -1), 1);
    uint64_t nsze = HOST_DISK / 512;
    cr_assert_eq(io(1, nvme_cmd_read, 1, nsze, 8), GEN(NVME_SC_LBA_RANGE));
    cr_assert_eq(io(1, nvme_cmd_write, 1, nsze - 1, 2), GEN(NVME_SC_LBA_RANGE));
    cr_assert_eq(io(1, nvme_cmd_read, 9, 0, 1), GEN(NVME_SC_INVALID_NS)); /* no namespace 9 */
    cr_assert_eq(io(1, 0x7e, 1, 0, 1), GEN(NVME_SC_INVALID_OPCODE));
    cr_assert_eq(io(1, nvme_cmd_read, 1, 0, 8), 0);
    nvme_stats_snapshot(h->c, snap);
    const struct nvme_io_stats *q1 = queue(1), *n1 = ns(1);
    cr_assert_eq(q1->reads, 3);
    cr_assert_eq(q1->writes, 1);
    cr_assert_eq(q1->others, 1);
    cr_assert_eq(q1->errors, 4);
    cr_assert_eq(q1->bytes_read, 4096, "only the successful read moved data");
    cr_assert_eq(q1->bytes_written, 0);
    cr_assert_eq(n1->errors, 3);
    cr_assert_eq(n1->reads, 2);
    cr_assert_null(ns(9), "namespace 9 does not exist and is not reported");
    cr_assert_eq(snap->nr_ns, 2);
}

/* Parked completions are still in flight: depth counts them until their CQE is posted. */
Test(nvme_stats, depth_counts_parked_and_returns_to_zero)
{
    cr_assert(host_create_tiny_cq_pair(h));
    uint64_t buf = host_alloc(h, 4096);
    for (int i = 0; i < 10; i++) {
        struct nvme_sqe r = {
            .opcode = nvme_cmd_read, .nsid = 1, .dptr = {buf}, .cdw10 = (uint32_t)i};
        host_submit(h, 1, &r, true);
    }
    host_ring_sq(h, 1);
    for (int i = 0; i < 20; i++)
        host_process(h);
    nvme_stats_snapshot(h->c, snap);
    cr_assert_eq(queue(1)->depth, 7, "3 posted, 7 parked on the full CQ");
    cr_assert_eq(queue(1)->max_depth, 10);
    cr_assert_eq(ns(1)->depth, 7);
    cr_assert_eq(queue(1)->reads, 3);
    h->q[1].depth = 4;
    for (int i = 0; i < 10; i++) {
        struct nvme_cqe e;
        int tries = 0;
        while (!host_poll(h, 1, &e) && tries++ < 10)
            host_process(h);
        cr_assert_eq(cqe_sf(&e), 0);
    }
    nvme_stats_snapshot(h->c, snap);
    cr_assert_eq(queue(1)->depth, 0);
    cr_assert_eq(ns(1)->depth, 0);
    cr_assert_eq(queue(1)->reads, 10);
    cr_assert_eq(hist_total(queue(1)), 10);
}

Test(nvme_stats, deleted_queue_keeps_its_numbers)
{
    cr_assert_eq(host_create_io_queues(h, 2, 64, -1), 2);
    cr_assert_eq(io(2, nvme_cmd_read, 1, 0, 1), 0);
    struct nvme_sqe del = {.opcode = nvme_admin_delete_sq, .cdw10 = 2};
    cr_assert_eq(host_admin(h, &del, NULL), 0);
    nvme_stats_snapshot(h->c, snap);
    cr_assert_eq(snap->nr_queues, 2);
    cr_assert_eq(snap->q[1].qid, 2);
    cr_assert_not(snap->q[1].live);
    cr_assert(snap->q[0].live);
    cr_assert_eq(snap->q[1].s.reads, 1);
}

Test(nvme_stats, off_counts_nothing)
{
    h->c->cfg.stats_off = true;
    cr_assert_eq(host_create_io_queues(h, 1, 64, -1), 1);
    cr_assert_eq(io(1, nvme_cmd_read, 1, 0, 8), 0);
    nvme_stats_snapshot(h->c, snap);
    cr_assert_not(snap->enabled);
    cr_assert_eq(queue(1)->reads, 0);
    cr_assert_eq(queue(1)->depth, 0);
    cr_assert_eq(ns(1)->reads, 0);
}

Test(nvme_stats, buckets_cover_every_latency_in_order)
{
    cr_assert_eq(nvme_stats_bucket(0), 0);
    cr_assert_eq(nvme_stats_bucket(1023), 0);
    cr_assert_eq(nvme_stats_bucket(1024), 1);
    cr_assert_eq(nvme_stats_bucket(UINT64_MAX), NVME_STATS_NR_BUCKETS - 1);
    for (unsigned b = 0; b + 1 < NVME_STATS_NR_BUCKETS; b++) {
        uint64_t lo = nvme_stats_bucket_lo(b), hi = nvme_stats_bucket_hi(b);
        cr_assert_lt(lo, hi);
        cr_assert_eq(nvme_stats_bucket(lo), b, "bucket %u", b);
        cr_assert_eq(nvme_stats_bucket(hi - 1), b, "bucket %u", b);
        cr_assert_eq(nvme_stats_bucket_lo(b + 1), hi, "buckets %u and %u touch", b, b + 1);
        /* Log-linear: a bucket is at most a quarter of its lower bound wide (above 1 us). */
        if (b)
            cr_assert_leq((hi - lo) * 4, lo);
    }
    /* ~10 s still has a bucket of its own, below the catch-all. */
    cr_assert_lt(nvme_stats_bucket(10000000000ull), NVME_STATS_NR_BUCKETS - 1);
}

Test(nvme_stats, percentiles_of_a_synthetic_histogram)
{
    struct nvme_io_stats s;
    memset(&s, 0, sizeof(s));
    cr_assert_eq(nvme_stats_percentile_ns(&s, 50), 0, "no commands: 0");
    /* 900 at 10 us, 90 at 100 us, 9 at 1 ms, 1 at 50 ms. */
    s.hist[nvme_stats_bucket(10000)] = 900;
    s.hist[nvme_stats_bucket(100000)] = 90;
    s.hist[nvme_stats_bucket(1000000)] = 9;
    s.hist[nvme_stats_bucket(50000000)] = 1;
    s.lat_max_ns = 50000000;
    uint64_t b10 = nvme_stats_bucket_hi(nvme_stats_bucket(10000));
    cr_assert_eq(nvme_stats_percentile_ns(&s, 50), b10);
    cr_assert_eq(nvme_stats_percentile_ns(&s, 90), b10, "the 900th of 1000 is still at 10 us");
    cr_assert_eq(nvme_stats_percentile_ns(&s, 99), nvme_stats_bucket_hi(nvme_stats_bucket(100000)));
    cr_assert_eq(nvme_stats_percentile_ns(&s, 99.9),
                 nvme_stats_bucket_hi(nvme_stats_bucket(1000000)));
    cr_assert_eq(nvme_stats_percentile_ns(&s, 100), 50000000, "never above the maximum seen");
    /* Bucket tops are within 25% of the true values. */
    cr_assert_leq(b10, 12500);
    cr_assert_gt(b10, 10000);
}
