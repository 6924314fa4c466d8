/*
 * test=nvme: NVMe benchmark / data verification in ring 3. Options (all
 * optional): mode= qd= queues= bs= ios= secs= span= offset= doorbell= irq=
 * nsid= qsize= cpus= timeout_ms= ctrl= (README.md). With cpus=N, I/O queue i
 * is driven by cpu i % N (APs started by smp_start) and its MSI-X vector is
 * routed to that cpu.
 */
#include "lapic.h"
#include "nvme_test.h"

static int word_is(const char *v, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(v, lit, n) == 0;
}

static uint64_t num_opt(const struct opts *o, const char *key, uint64_t dflt)
{
    const char *v;
    size_t n;
    uint64_t x;
    if (cmdline_find(o->cmdline, key, &v, &n))
        return dflt;
    if (parse_u64(v, n, &x))
        fail(EXIT_BADARGS, "nvme: bad number %s=%.*s", key, (int)n, v);
    return x;
}

/* span=N LBAs, or N with a k/m/g suffix: bytes. */
static void span_opt(const struct opts *o, struct nvme_opts *n)
{
    const char *v;
    size_t len;
    if (cmdline_find(o->cmdline, "span", &v, &len))
        return;
    unsigned shift = 0;
    char last = len ? v[len - 1] : 0;
    if (last == 'k' || last == 'K')
        shift = 10;
    else if (last == 'm' || last == 'M')
        shift = 20;
    else if (last == 'g' || last == 'G')
        shift = 30;
    uint64_t x;
    if (parse_u64(v, shift ? len - 1 : len, &x) || x == 0)
        fail(EXIT_BADARGS, "nvme: bad span=%.*s", (int)len, v);
    if (shift)
        n->span_bytes = x << shift;
    else
        n->span = x;
}

static int choice_opt(const struct opts *o, const char *key, const char *const *names,
                      unsigned count, int dflt)
{
    const char *v;
    size_t n;
    if (cmdline_find(o->cmdline, key, &v, &n))
        return dflt;
    for (unsigned i = 0; i < count; i++)
        if (word_is(v, n, names[i]))
            return (int)i;
    fail(EXIT_BADARGS, "nvme: bad %s=%.*s", key, (int)n, v);
}

void nvme_parse_opts(const struct opts *o, struct nvme_opts *n)
{
    static const char *const modes[] = {"verify", "randread", "randwrite", "seqread", "seqwrite"};
    static const char *const dbs[] = {"mmio", "shadow"};
    static const char *const irqs[] = {"poll", "msix"};
    memset(n, 0, sizeof(*n));
    n->mode = (enum io_mode)choice_opt(o, "mode", modes, 5, IO_VERIFY);
    n->shadow = choice_opt(o, "doorbell", dbs, 2, 0);
    n->msix = choice_opt(o, "irq", irqs, 2, 0);
    n->qd = num_opt(o, "qd", 1);
    n->queues = num_opt(o, "queues", 1);
    n->bs = num_opt(o, "bs", 4096);
    n->secs = num_opt(o, "secs", 0);
    n->ios = num_opt(o, "ios", n->secs ? UINT64_MAX : 10000);
    n->offset = num_opt(o, "offset", 0);
    n->qsize = num_opt(o, "qsize", 0);
    n->timeout_ms = num_opt(o, "timeout_ms", 5000);
    n->ctrl = num_opt(o, "ctrl", 0);
    n->nsid = (uint32_t)num_opt(o, "nsid", 1);
    n->strict = num_opt(o, "strict", 0) != 0;
    n->hold = num_opt(o, "hold", 0) != 0;
    pci_force_reassign = num_opt(o, "reassign", 0) != 0;
    n->cpus = o->cpus ? (unsigned)o->cpus : 1;
    span_opt(o, n);
    if (n->queues < 1 || n->queues > NVME_MAX_IOQ)
        fail(EXIT_BADARGS, "nvme: queues=%lu out of range 1..%u", n->queues, NVME_MAX_IOQ);
    if (n->qd < 1 || n->qd > 1023)
        fail(EXIT_BADARGS, "nvme: qd=%lu out of range 1..1023", n->qd);
    if (n->cpus < 1 || n->cpus > MAX_CPUS || n->cpus > n->queues)
        fail(EXIT_BADARGS, "nvme: cpus=%u out of range 1..min(%u, queues)", n->cpus, MAX_CPUS);
    if (n->bs < 512 || n->bs > (1u << 20) || (n->bs & 511))
        fail(EXIT_BADARGS, "nvme: bs=%lu not a multiple of 512 in 512..1M", n->bs);
    if (n->nsid == 0 || n->nsid == 0xffffffffu)
        fail(EXIT_BADARGS, "nvme: nsid=%u invalid", n->nsid);
    if (n->timeout_ms < 10)
        fail(EXIT_BADARGS, "nvme: timeout_ms=%lu too small", n->timeout_ms);
    if (n->ios == 0)
        fail(EXIT_BADARGS, "nvme: ios=0");
}

void nvme_bringup(struct nvme_ctrl *c, const struct nvme_opts *n, const uint32_t *apic)
{
    if (nvme_probe(c, (unsigned)n->ctrl))
        fail(EXIT_FAIL, "nvme: controller probe failed");
    unsigned mqes = (unsigned)(c->cap & 0xffff) + 1;
    uint64_t qsize = n->qsize ? n->qsize : (mqes < 256 ? mqes : 256);
    if (qsize <= n->qd)
        qsize = n->qd + 1;
    if (qsize > mqes || qsize > 4096)
        fail(EXIT_BADARGS, "nvme: queue size %lu (qd=%lu) above CAP.MQES+1=%u or 4096", qsize,
             n->qd, mqes);
    struct nvme_cfg cfg = {
        .queues = (unsigned)n->queues,
        .spare = n->spare_qids,
        .qsize = (unsigned)qsize,
        .shadow = n->shadow,
        .msix = n->msix,
        .nsid = n->nsid,
        .timeout_ms = n->timeout_ms,
    };
    for (unsigned i = 0; i < cfg.queues; i++)
        cfg.apic[i] = apic[i % n->cpus];
    if (nvme_init(c, &cfg))
        fail(EXIT_FAIL, "nvme: controller initialisation failed");
    char mn[41];
    memcpy(mn, c->mn, sizeof(mn));
    for (char *p = mn; *p; p++)
        if (*p == ' ')
            *p = '_';
    kprintf("tiny: nvme ctrl vid=0x%04x sn=%s mn=%s fr=%s ns%u lbas=%lu lba=%u\n", c->vid, c->sn,
            mn, c->fr, n->nsid, c->nsze, 1u << c->lba_shift);
    kprintf("tiny: nvme pci=%02x:%02x.%u bar0=0x%lx cap=0x%lx vs=0x%x mdts=%u oacs=0x%x nn=%u "
            "qsize=%u doorbell=%s irq=%s tsc_mhz=%lu\n",
            c->pci.bus, c->pci.dev, c->pci.fn, (uint64_t)(uintptr_t)c->bar, c->cap, c->vs, c->mdts,
            c->oacs, c->nn, cfg.qsize, c->dbbuf_on ? "shadow" : "mmio", n->msix ? "msix" : "poll",
            tsc_mhz());
}

void nvme_shutdown(struct nvme_ctrl *c)
{
    uint32_t cc = nvme_rd32(c, NVME_CC);
    nvme_wr32(c, NVME_CC, (cc & ~(3u << 14)) | (1u << 14)); /* SHN = normal */
    uint64_t t0 = rdtsc();
    while (((nvme_rd32(c, NVME_CSTS) >> 2) & 3) != 2) {
        if (rdtsc() - t0 > c->ready_tsc) {
            kprintf("tiny: note: nvme shutdown not complete (csts=0x%x)\n",
                    nvme_rd32(c, NVME_CSTS));
            return;
        }
        tsc_delay(tsc_mhz() * 100);
    }
}

/* ---- the run: jobs per cpu ---- */

static struct nvme_ctrl ctrl;
static struct io_job jobs[NVME_MAX_IOQ];
static struct io_job *cpu_jobs[MAX_CPUS][NVME_MAX_IOQ];
static unsigned cpu_njobs[MAX_CPUS];
static uint32_t cpu_apic[MAX_CPUS];
static volatile uint32_t aps_ready, go, cpus_done;

static void nvme_ap(unsigned cpu)
{
    lapic_enable(); /* MSI-X vectors of this cpu's queues */
    cpu_apic[cpu] = lapic_id();
    atomic_inc32(&aps_ready);
    if (wait_u32_geq(&go, 1, 600 * TSC_PER_SEC_GUESS))
        return;
    io_run(cpu_jobs[cpu], cpu_njobs[cpu]);
    atomic_inc32(&cpus_done);
}

static const char *const mode_names[] = {"verify", "randread", "randwrite", "seqread", "seqwrite"};

static void print_error(const struct io_err *e)
{
    switch (e->kind) {
    case ERR_STATUS:
        kprintf("tiny: nvme first error: qid=%u cid=%u lba=%lu status=0x%x sct=%u sc=0x%02x (%s)\n",
                e->qid, e->cid, e->lba, e->status, NVME_SCT(e->status), NVME_SC(e->status),
                nvme_status_str(e->status));
        break;
    case ERR_MISMATCH:
        kprintf("tiny: nvme first error: data mismatch qid=%u lba=%lu offset=%lu want=0x%016lx "
                "got=0x%016lx\n",
                e->qid, e->lba, e->offset, e->want, e->got);
        break;
    case ERR_BAD_CQE:
        kprintf("tiny: nvme first error: bogus completion on qid=%u: cid=%u sqid=%lu status=0x%x\n",
                e->qid, e->cid, e->lba, e->status);
        break;
    case ERR_NONE:
        break;
    }
}

int test_nvme(const struct opts *o)
{
    struct nvme_opts n;
    nvme_parse_opts(o, &n);
    (void)tsc_mhz(); /* calibrate before any timing */
    cpu_apic[0] = lapic_id();
    if (n.cpus > 1) {
        if (smp_start(n.cpus, nvme_ap) ||
            wait_u32_geq(&aps_ready, n.cpus - 1, 10 * TSC_PER_SEC_GUESS))
            fail(EXIT_TIMEOUT, "nvme: only %u of %u APs started", aps_ready, n.cpus - 1);
    }
    struct nvme_ctrl *c = &ctrl;
    nvme_bringup(c, &n, cpu_apic);

    unsigned lba_size = 1u << c->lba_shift;
    if (n.bs % lba_size)
        fail(EXIT_BADARGS, "nvme: bs=%lu not a multiple of the LBA size %u", n.bs, lba_size);
    if (c->max_xfer && n.bs > c->max_xfer)
        fail(EXIT_BADARGS, "nvme: bs=%lu above MDTS (%lu bytes)", n.bs, c->max_xfer);
    uint64_t span = n.span_bytes ? n.span_bytes >> c->lba_shift : n.span;
    if (n.offset >= c->nsze)
        fail(EXIT_BADARGS, "nvme: offset=%lu beyond the namespace (%lu LBAs)", n.offset, c->nsze);
    if (!span || span > c->nsze - n.offset)
        span = c->nsze - n.offset;
    uint32_t nlb = (uint32_t)(n.bs >> c->lba_shift);
    uint64_t blocks = span / nlb;
    unsigned q = (unsigned)n.queues;
    if (blocks < (n.mode == IO_VERIFY ? q : 1))
        fail(EXIT_BADARGS, "nvme: span of %lu LBAs too small for bs=%lu x %u queues", span, n.bs,
             q);

    uint64_t deadline = n.secs ? rdtsc() + ms_to_tsc(n.secs * 1000) : 0;
    for (unsigned i = 0; i < q; i++) {
        struct io_job *j = &jobs[i];
        memset(j, 0, sizeof(*j));
        j->c = c;
        j->q = &c->io[i];
        j->mode = n.mode;
        j->qd = (unsigned)n.qd;
        j->bs = (uint32_t)n.bs;
        j->nlb = nlb;
        j->timeout_tsc = c->cmd_tsc;
        j->target = n.ios == UINT64_MAX ? UINT64_MAX : n.ios / q + (i < n.ios % q);
        if (n.mode == IO_VERIFY) { /* disjoint regions: no two queues touch the same LBA */
            j->nblocks = blocks / q;
            j->lba0 = n.offset + (uint64_t)i * j->nblocks * nlb;
        } else {
            j->nblocks = blocks;
            j->lba0 = n.offset;
        }
        if (io_job_setup(j))
            fail(EXIT_FAIL, "nvme: out of RAM for qd=%lu x bs=%lu buffers (RAM top 0x%lx)", n.qd,
                 n.bs, ram_top());
        j->seq = (uint64_t)i * blocks / q;
        unsigned cpu = i % n.cpus;
        cpu_jobs[cpu][cpu_njobs[cpu]++] = j;
    }
    kprintf("tiny: nvme run mode=%s qd=%lu queues=%u cpus=%u bs=%lu span=%lu offset=%lu "
            "ios=%lu secs=%lu\n",
            mode_names[n.mode], n.qd, q, n.cpus, n.bs, span, n.offset,
            n.ios == UINT64_MAX ? 0 : n.ios, n.secs);

    for (unsigned i = 0; i < q; i++)
        jobs[i].deadline = deadline ? rdtsc() + ms_to_tsc(n.secs * 1000) : 0;
    go = 1;
    io_run(cpu_jobs[0], cpu_njobs[0]);
    if (n.cpus > 1 && wait_u32_geq(&cpus_done, n.cpus - 1, (n.secs + 120) * TSC_PER_SEC_GUESS * 2))
        fail(EXIT_TIMEOUT, "nvme: only %u of %u APs finished", cpus_done, n.cpus - 1);

    uint64_t t0 = UINT64_MAX, t1 = 0, done = 0, errors = 0, lat = 0, lat_max = 0, kicks = 0;
    uint64_t mmio_db = 0, shadow_db = 0, irqs = 0;
    const struct io_err *first = NULL;
    for (unsigned i = 0; i < q; i++) {
        struct io_job *j = &jobs[i];
        t0 = j->t_start < t0 ? j->t_start : t0;
        t1 = j->t_end > t1 ? j->t_end : t1;
        done += j->done;
        errors += j->errors;
        lat += j->lat_sum;
        lat_max = j->lat_max > lat_max ? j->lat_max : lat_max;
        kicks += j->kicks;
        mmio_db += j->q->mmio_db;
        shadow_db += j->q->shadow_only_db;
        irqs += j->q->vector >= 0 ? msi_count[j->q->vector] : 0;
        if (!first && j->err.kind != ERR_NONE)
            first = &j->err;
        if (q > 1)
            kprintf("tiny: nvme queue qid=%u cpu=%u ios=%lu errors=%lu lat_avg_us=%lu\n", j->q->qid,
                    i % n.cpus, j->done, j->errors, j->done ? j->lat_sum / j->done / tsc_mhz() : 0);
    }
    uint64_t mhz = tsc_mhz(), us = (t1 - t0) / mhz;
    if (us == 0)
        us = 1;
    uint64_t lat10 = done ? lat * 10 / done / mhz : 0;
    kprintf("tiny: nvme mode=%s qd=%lu queues=%u ios=%lu errors=%lu iops=%lu mb_s=%lu "
            "lat_avg_us=%lu.%lu lat_max_us=%lu time_ms=%lu\n",
            mode_names[n.mode], n.qd, q, done, errors, done * 1000000 / us, done * n.bs / us,
            lat10 / 10, lat10 % 10, lat_max / mhz, us / 1000);
    kprintf("tiny: nvme doorbells mmio=%lu shadow_only=%lu kicks=%lu irqs=%lu stray=%u\n", mmio_db,
            shadow_db, kicks, irqs, c->stray_cqes);
    if (first)
        print_error(first);
    nvme_shutdown(c);
    if (errors)
        fail(EXIT_FAIL, "nvme: %lu errors", errors);
    if (n.strict && kicks)
        fail(EXIT_FAIL, "nvme: %lu shadow-doorbell stalls needed an MMIO kick", kicks);
    if (n.hold) { /* the host reads the device's statistics, then stops the VM */
        kprintf("tiny: nvme holding\n");
        for (;;)
            cpu_relax();
    }
    return 0;
}
