/*
 * The control socket's `stats` command: a snapshot of the NVMe controller's live I/O
 * statistics (emu/nvme_stats.h) as JSON, per namespace and per I/O queue, with totals
 * since the controller started and rates since the connection's previous `stats` (the
 * interval's latency percentiles come from the difference of the two histograms). The
 * fields are listed in docs/stats.md.
 */
#include "app/control_stats.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/control_parse.h"
#include "emu/nvme_stats.h"
#include "kvm/nvme_pci.h"
#include "kvm/vm.h"

static void add_u64(json_object *o, const char *key, uint64_t v)
{
    json_object_object_add(o, key, json_object_new_uint64(v));
}

/* Three decimals are plenty (microseconds, seconds, per second) and keep lines short. */
static void add_dbl(json_object *o, const char *key, double v)
{
    char txt[32];
    snprintf(txt, sizeof(txt), "%.3f", v);
    json_object_object_add(o, key, json_object_new_double_s(v, txt));
}

static uint64_t sub0(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

/* Latency summary of s in microseconds: avg, p50, p90, p99, p99.9, max. */
static json_object *latency_obj(const struct nvme_io_stats *s)
{
    json_object *o = json_object_new_object();
    uint64_t n = 0;
    for (unsigned b = 0; b < NVME_STATS_NR_BUCKETS; b++)
        n += s->hist[b];
    add_dbl(o, "avg", n ? (double)s->lat_sum_ns / (double)n / 1000.0 : 0.0);
    add_dbl(o, "p50", (double)nvme_stats_percentile_ns(s, 50) / 1000.0);
    add_dbl(o, "p90", (double)nvme_stats_percentile_ns(s, 90) / 1000.0);
    add_dbl(o, "p99", (double)nvme_stats_percentile_ns(s, 99) / 1000.0);
    add_dbl(o, "p99_9", (double)nvme_stats_percentile_ns(s, 99.9) / 1000.0);
    add_dbl(o, "max", (double)s->lat_max_ns / 1000.0);
    return o;
}

/* What happened between prev and cur. The interval's maximum latency is not known
 * exactly: the top of the highest bucket that gained commands stands for it. */
static void diff_stats(struct nvme_io_stats *d, const struct nvme_io_stats *cur,
                       const struct nvme_io_stats *prev)
{
    memset(d, 0, sizeof(*d));
    d->reads = sub0(cur->reads, prev->reads);
    d->writes = sub0(cur->writes, prev->writes);
    d->others = sub0(cur->others, prev->others);
    d->errors = sub0(cur->errors, prev->errors);
    d->bytes_read = sub0(cur->bytes_read, prev->bytes_read);
    d->bytes_written = sub0(cur->bytes_written, prev->bytes_written);
    d->lat_sum_ns = sub0(cur->lat_sum_ns, prev->lat_sum_ns);
    for (unsigned b = 0; b < NVME_STATS_NR_BUCKETS; b++) {
        d->hist[b] = sub0(cur->hist[b], prev->hist[b]);
        if (d->hist[b])
            d->lat_max_ns = nvme_stats_bucket_hi(b);
    }
    if (d->lat_max_ns > cur->lat_max_ns)
        d->lat_max_ns = cur->lat_max_ns;
}

static json_object *interval_obj(const struct nvme_io_stats *cur, const struct nvme_io_stats *prev,
                                 double secs)
{
    static const struct nvme_io_stats zero;
    struct nvme_io_stats d;
    diff_stats(&d, cur, prev ? prev : &zero);
    json_object *o = json_object_new_object();
    double per = secs > 0 ? 1.0 / secs : 0.0;
    add_dbl(o, "read_iops", (double)d.reads * per);
    add_dbl(o, "write_iops", (double)d.writes * per);
    add_dbl(o, "iops", (double)nvme_stats_commands(&d) * per);
    add_dbl(o, "read_bps", (double)d.bytes_read * per);
    add_dbl(o, "write_bps", (double)d.bytes_written * per);
    /* Little's law: time spent in flight per second of wall time is the mean depth. */
    add_dbl(o, "avg_depth", secs > 0 ? (double)d.lat_sum_ns / 1e9 / secs : 0.0);
    add_u64(o, "commands", nvme_stats_commands(&d));
    add_u64(o, "errors", d.errors);
    json_object_object_add(o, "latency_us", latency_obj(&d));
    return o;
}

static json_object *io_obj(const struct nvme_io_stats *s, const struct nvme_io_stats *prev,
                           double secs)
{
    json_object *o = json_object_new_object();
    add_u64(o, "reads", s->reads);
    add_u64(o, "writes", s->writes);
    add_u64(o, "others", s->others);
    add_u64(o, "errors", s->errors);
    add_u64(o, "bytes_read", s->bytes_read);
    add_u64(o, "bytes_written", s->bytes_written);
    add_u64(o, "depth", s->depth);
    add_u64(o, "max_depth", s->max_depth);
    json_object_object_add(o, "latency_us", latency_obj(s));
    json_object_object_add(o, "interval", interval_obj(s, prev, secs));
    return o;
}

static const struct nvme_io_stats *prev_queue(const struct nvme_stats_snapshot *p, uint16_t qid)
{
    for (int i = 0; p && i < p->nr_queues; i++)
        if (p->q[i].qid == qid)
            return &p->q[i].s;
    return NULL;
}

static const struct nvme_io_stats *prev_ns(const struct nvme_stats_snapshot *p, uint32_t nsid)
{
    for (int i = 0; p && i < p->nr_ns; i++)
        if (p->ns[i].nsid == nsid)
            return &p->ns[i].s;
    return NULL;
}

json_object *control_stats_reply(struct vm *vm, void **prev)
{
    json_object *o = json_object_new_object();
    struct nvme_ctrl *c = nvme_pci_ctrl(vm->nvme);
    struct nvme_stats_snapshot *s = c ? malloc(sizeof(*s)) : NULL;
    if (!s) {
        json_object *e = json_object_new_object();
        json_object_object_add(o, "ok", json_object_new_boolean(0));
        json_object_object_add(
            e, "class",
            json_object_new_string(c ? CONTROL_ERR_INTERNAL : CONTROL_ERR_INVALID_STATE));
        json_object_object_add(
            e, "desc",
            json_object_new_string(c ? "out of memory"
                                     : "no NVMe controller (the VM has no disks)"));
        json_object_object_add(o, "error", e);
        return o;
    }
    nvme_stats_snapshot(c, s);
    const struct nvme_stats_snapshot *p = *prev;
    uint64_t since = p ? p->taken_ns : s->started_ns;
    double secs = (double)sub0(s->taken_ns, since) / 1e9;
    json_object_object_add(o, "ok", json_object_new_boolean(1));
    json_object_object_add(o, "enabled", json_object_new_boolean(s->enabled));
    add_dbl(o, "uptime_s", (double)sub0(s->taken_ns, s->started_ns) / 1e9);
    add_dbl(o, "interval_s", secs);
    json_object *nss = json_object_new_array();
    for (int i = 0; i < s->nr_ns; i++) {
        json_object *n = io_obj(&s->ns[i].s, prev_ns(p, s->ns[i].nsid), secs);
        json_object_object_add(n, "nsid", json_object_new_int64(s->ns[i].nsid));
        json_object_object_add(n, "live", json_object_new_boolean(s->ns[i].live));
        json_object_array_add(nss, n);
    }
    json_object_object_add(o, "namespaces", nss);
    json_object *qs = json_object_new_array();
    for (int i = 0; i < s->nr_queues; i++) {
        json_object *q = io_obj(&s->q[i].s, prev_queue(p, s->q[i].qid), secs);
        json_object_object_add(q, "qid", json_object_new_int(s->q[i].qid));
        json_object_object_add(q, "live", json_object_new_boolean(s->q[i].live));
        json_object_array_add(qs, q);
    }
    json_object_object_add(o, "queues", qs);
    free(*prev);
    *prev = s;
    return o;
}

void control_stats_forget(void *prev)
{
    free(prev);
}
