/*
 * Live I/O statistics (see emu/nvme_stats.h). The I/O path pays two clock reads and a
 * few plain stores per command: the controller's lock already serialises every writer, so
 * an increment is a relaxed load and a relaxed store (no locked instruction), and readers
 * on other threads use relaxed loads of the same aligned words.
 */
#include "emu/nvme_stats.h"

#include <string.h>
#include <time.h>

#include "emu/nvme_int.h"

#define LOAD(x)     __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define ADD(x, v)   STORE(x, LOAD(x) + (v)) /* single writer: see the file comment */

uint64_t nvme_stats_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- histogram ---- */

unsigned nvme_stats_bucket(uint64_t ns)
{
    if (ns < (1ull << NVME_STATS_MIN_SHIFT))
        return 0;
    unsigned e = 63u - (unsigned)__builtin_clzll(ns);
    if (e > NVME_STATS_MAX_SHIFT)
        return NVME_STATS_NR_BUCKETS - 1;
    unsigned sub = (unsigned)(ns >> (e - NVME_STATS_SUB_BITS)) & (NVME_STATS_SUB - 1);
    return 1 + (e - NVME_STATS_MIN_SHIFT) * NVME_STATS_SUB + sub;
}

uint64_t nvme_stats_bucket_lo(unsigned b)
{
    if (b == 0)
        return 0;
    unsigned e = NVME_STATS_MIN_SHIFT + (b - 1) / NVME_STATS_SUB, sub = (b - 1) % NVME_STATS_SUB;
    return (1ull << e) + (uint64_t)sub * (1ull << (e - NVME_STATS_SUB_BITS));
}

uint64_t nvme_stats_bucket_hi(unsigned b)
{
    if (b == 0)
        return 1ull << NVME_STATS_MIN_SHIFT;
    unsigned e = NVME_STATS_MIN_SHIFT + (b - 1) / NVME_STATS_SUB;
    return nvme_stats_bucket_lo(b) + (1ull << (e - NVME_STATS_SUB_BITS));
}

uint64_t nvme_stats_commands(const struct nvme_io_stats *s)
{
    return s->reads + s->writes + s->others;
}

uint64_t nvme_stats_percentile_ns(const struct nvme_io_stats *s, double p)
{
    uint64_t total = 0;
    for (unsigned b = 0; b < NVME_STATS_NR_BUCKETS; b++)
        total += s->hist[b];
    if (!total || !(p > 0))
        return 0;
    /* The rank of the p-th command, 1-based: ceil(total * p / 100), within [1, total]. */
    double want = (double)total * (p > 100 ? 100 : p) / 100.0;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want)
        rank++;
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < NVME_STATS_NR_BUCKETS; b++) {
        seen += s->hist[b];
        if (seen >= rank) {
            uint64_t hi = nvme_stats_bucket_hi(b);
            return hi < s->lat_max_ns ? hi : s->lat_max_ns;
        }
    }
    return s->lat_max_ns;
}

/* ---- the I/O path ---- */

/* A command for a namespace that does not exist is counted on its queue only. */
static struct nvme_io_stats *ns_stats(struct nvme_ctrl *c, uint32_t nsid)
{
    if (nsid < 1 || nsid > NVME_MAX_NAMESPACES || !c->ns[nsid - 1].present)
        return NULL;
    return &c->stats.ns[nsid - 1];
}

static void depth_up(struct nvme_io_stats *s)
{
    uint64_t d = LOAD(s->depth) + 1;
    STORE(s->depth, d);
    if (d > LOAD(s->max_depth))
        STORE(s->max_depth, d);
}

void nvme_stats_fetched(struct nvme_ctrl *c, struct nvme_req *r)
{
    if (c->cfg.stats_off)
        return;
    r->stats_t0 = nvme_stats_now_ns();
    depth_up(&c->stats.q[r->sq->id]);
    r->stats_ns = ns_stats(c, r->cmd.nsid);
    if (r->stats_ns)
        depth_up(r->stats_ns);
}

static void account(struct nvme_io_stats *s, const struct nvme_req *r, uint64_t lat, unsigned b)
{
    STORE(s->depth, LOAD(s->depth) - 1);
    bool ok = r->status == NVME_OK;
    switch (r->cmd.opcode) {
    case nvme_cmd_read:
        ADD(s->reads, 1);
        if (ok)
            ADD(s->bytes_read, r->data_len);
        break;
    case nvme_cmd_write:
        ADD(s->writes, 1);
        if (ok)
            ADD(s->bytes_written, r->data_len);
        break;
    default:
        ADD(s->others, 1);
    }
    if (!ok)
        ADD(s->errors, 1);
    ADD(s->lat_sum_ns, lat);
    if (lat > LOAD(s->lat_max_ns))
        STORE(s->lat_max_ns, lat);
    ADD(s->hist[b], 1);
}

void nvme_stats_completed(struct nvme_ctrl *c, struct nvme_req *r)
{
    /* Requests fetched before stats were counting (loaded by a migration) have no clock. */
    if (!r->stats_t0)
        return;
    uint64_t now = nvme_stats_now_ns();
    uint64_t lat = now > r->stats_t0 ? now - r->stats_t0 : 0;
    unsigned b = nvme_stats_bucket(lat);
    r->stats_t0 = 0;
    account(&c->stats.q[r->sq->id], r, lat, b);
    if (r->stats_ns)
        account(r->stats_ns, r, lat, b);
}

/* ---- readers ---- */

/* Every member is a uint64_t: a snapshot reads them one aligned word at a time. */
_Static_assert(sizeof(struct nvme_io_stats) % sizeof(uint64_t) == 0, "only 64-bit counters");

static void copy_stats(struct nvme_io_stats *d, const struct nvme_io_stats *s)
{
    const uint64_t *from = (const uint64_t *)s;
    uint64_t *to = (uint64_t *)d;
    for (size_t i = 0; i < sizeof(*s) / sizeof(uint64_t); i++)
        to[i] = __atomic_load_n(&from[i], __ATOMIC_RELAXED);
}

void nvme_stats_snapshot(struct nvme_ctrl *c, struct nvme_stats_snapshot *s)
{
    bool sq_live[NVME_MAX_QUEUES], ns_live[NVME_MAX_NAMESPACES];
    /* Which queues and namespaces exist is controller state: read it under the lock
     * (held for a moment); the counters themselves are read without it. */
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < NVME_MAX_QUEUES; i++)
        sq_live[i] = c->sq[i].created;
    for (int i = 0; i < NVME_MAX_NAMESPACES; i++)
        ns_live[i] = c->ns[i].present;
    pthread_mutex_unlock(&c->lock);

    memset(s, 0, sizeof(*s));
    s->taken_ns = nvme_stats_now_ns();
    s->started_ns = c->stats.started_ns;
    s->enabled = !c->cfg.stats_off;
    for (int q = 1; q < NVME_MAX_QUEUES; q++) {
        struct nvme_io_stats tmp;
        copy_stats(&tmp, &c->stats.q[q]);
        if (!sq_live[q] && !nvme_stats_commands(&tmp) && !tmp.depth)
            continue;
        s->q[s->nr_queues].qid = (uint16_t)q;
        s->q[s->nr_queues].live = sq_live[q];
        s->q[s->nr_queues++].s = tmp;
    }
    for (int i = 0; i < NVME_MAX_NAMESPACES; i++) {
        struct nvme_io_stats tmp;
        copy_stats(&tmp, &c->stats.ns[i]);
        if (!ns_live[i] && !nvme_stats_commands(&tmp) && !tmp.depth)
            continue;
        s->ns[s->nr_ns].nsid = (uint32_t)i + 1;
        s->ns[s->nr_ns].live = ns_live[i];
        s->ns[s->nr_ns++].s = tmp;
    }
}
