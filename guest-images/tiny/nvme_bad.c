/*
 * test=nvme-bad: misbehave towards the controller and check it survives.
 * Each case does one wrong thing (bogus doorbell, bad DMA address, invalid
 * command or queue operation), then the guest reports what came back (status,
 * timeout, CSTS.CFS, asynchronous event, stray completions) and checks that a
 * verified write+read still works, resetting and re-initialising the
 * controller if it does not. PASS = nothing hung and I/O works at the end;
 * strict=1 also fails on outcomes other than the expected ones.
 */
#include "nvme_bad.h"

#define PAGE BAD_PAGE

static struct nvme_opts nopts;

/* ---- around each case ---- */

static void reinit(const char *why)
{
    kprintf("tiny: nvme-bad   reset + re-init (%s)\n", why);
    bad_resets++;
    if (nvme_init(&bad_ctrl, &bad_ctrl.cfg))
        fail(EXIT_FAIL, "nvme-bad: controller does not come back after reset (%s)", why);
    nvme_post_aer(&bad_ctrl);
}

/* Write a pattern to one block, read it back, compare. 0 = the controller works. */
static int probe(uint32_t pass)
{
    uint32_t nlb = bad_lbas(PAGE);
    uint64_t lba = (bad_ctrl.nsze / 2) & ~(uint64_t)(nlb - 1);
    pattern_fill(bad_buf, lba, nlb, bad_ctrl.lba_shift, pass);
    int st = bad_io(NVME_CMD_WRITE, bad_ctrl.cfg.nsid, lba, nlb, (uintptr_t)bad_buf, 0);
    if (st)
        return st;
    memset(bad_buf, 0, PAGE);
    st = bad_io(NVME_CMD_READ, bad_ctrl.cfg.nsid, lba, nlb, (uintptr_t)bad_buf, 0);
    if (st)
        return st;
    uint64_t want, got;
    return pattern_check(bad_buf, lba, nlb, bad_ctrl.lba_shift, pass, &want, &got) < 0 ? 0 : 0x7fff;
}

/*
 * Give asynchronous reactions ~20 ms: count stray I/O completions, answer an
 * asynchronous event (*event = its dw0, else 0).
 */
static unsigned settle(uint32_t *event)
{
    unsigned stray = 0;
    uint64_t t0 = rdtsc(), span = ms_to_tsc(20);
    while (rdtsc() - t0 < span) {
        nvme_admin_poll(&bad_ctrl);
        for (unsigned i = 0; i < bad_ctrl.nr_io; i++) {
            struct nvme_cqe e;
            int got = 0;
            while (nvme_cq_pop(&bad_ctrl.io[i], &e)) {
                kprintf("tiny: nvme-bad   stray completion qid=%u cid=0x%x status=0x%x\n",
                        bad_ctrl.io[i].qid, e.cid, nvme_cqe_status(&e));
                stray++;
                got = 1;
            }
            if (got)
                nvme_cq_ring(&bad_ctrl.io[i]);
        }
        cpu_relax();
    }
    if (bad_ctrl.aer_new) {
        uint32_t dw0 = bad_ctrl.aer_dw0;
        bad_ctrl.aer_new = 0;
        *event = dw0;
        if (dw0 != 0xffffffffu) {
            /* Read the log page (RAE = 0) to re-arm this event type, then repost. */
            unsigned lid = (dw0 >> 16) & 0xff;
            int st = bad_admin(NVME_ADM_GET_LOG, (uintptr_t)bad_prp_list, lid | 15u << 16, 0);
            if (st)
                kprintf("tiny: nvme-bad   get log page 0x%x: 0x%x %s\n", lid, st,
                        nvme_status_str(st));
            memset(bad_prp_list, 0, PAGE);
        }
        nvme_post_aer(&bad_ctrl);
    }
    return stray;
}

static void pick_hole(void)
{
    /* Above RAM, below the PCI window, away from BARs: nothing decodes it on a PC. */
    bad_hole = (ram_top() + (256ULL << 20) - 1) & ~((256ULL << 20) - 1);
    if (bad_hole < 0x40000000ULL)
        bad_hole = 0x40000000ULL;
    if (bad_hole + PAGE > MMIO_WINDOW_START)
        bad_hole = 1ULL << 40;
    /* Doorbells beyond the created queues, but below the MSI-X table/PBA if in BAR0. */
    uint64_t limit = bad_ctrl.bar_size;
    unsigned cap = pci_find_cap(&bad_ctrl.pci, PCI_CAP_MSIX);
    if (cap) {
        uint32_t t = pci_read32(&bad_ctrl.pci, cap + 4), p = pci_read32(&bad_ctrl.pci, cap + 8);
        if ((t & 7) == 0 && (t & ~7u) < limit)
            limit = t & ~7u;
        if ((p & 7) == 0 && (p & ~7u) < limit)
            limit = p & ~7u;
    }
    bad_far_qid = (limit - NVME_DBS) / (2 * bad_ctrl.db_stride) - 1;
    if (bad_far_qid > 0xffff)
        bad_far_qid = 0xffff;
}

static void sfmt(char *b, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vformat(b, n, fmt, ap);
    va_end(ap);
}

static void expect_str(const struct bad_case *bc, char *b, size_t n)
{
    if (bc->expect == X_NONE)
        sfmt(b, n, "ignored");
    else if (bc->expect == X_ANY)
        sfmt(b, n, "any");
    else if (bc->want_st < 0)
        sfmt(b, n, "error");
    else
        sfmt(b, n, "error:0x%03x", bc->want_st);
}

static void result_str(int st, char *b, size_t n)
{
    if (st == CASE_NOCMD)
        sfmt(b, n, "no-command");
    else if (st < 0)
        sfmt(b, n, "%s", st == NVME_ST_TIMEOUT ? "timeout" : "fatal");
    else
        sfmt(b, n, "0x%03x(%s)", st, nvme_status_str(st));
}

/* ok / ok-other-error / ok-fatal / skipped / unexpected */
static const char *verdict(const struct bad_case *bc, int st, int fatal, unsigned stray)
{
    if (bc->expect == X_ANY)
        return fatal ? "ok-fatal" : "ok";
    if (bc->expect == X_NONE)
        return (st == CASE_NOCMD || st == 0) && !fatal && !stray ? "ok" : "unexpected";
    if (st == CASE_NOCMD)
        return "skipped";
    if (fatal)
        return "ok-fatal";
    if (st <= 0 || stray)
        return "unexpected";
    if (bc->want_st >= 0 && (st & 0x7ff) != bc->want_st)
        return "ok-other-error";
    return "ok";
}

int test_nvme_bad(const struct opts *o)
{
    nvme_parse_opts(o, &nopts);
    if (nopts.queues < 2)
        nopts.queues = 2;
    nopts.spare_qids = 1; /* qid 3: allocated, never created */
    if (!nopts.qsize)
        nopts.qsize = 16;
    nopts.msix = 0;
    if (nopts.timeout_ms > 2000)
        nopts.timeout_ms = 2000;
    (void)tsc_mhz();
    uint32_t apic[MAX_CPUS] = {0};
    nvme_bringup(&bad_ctrl, &nopts, apic);
    bad_buf = ram_alloc(4 * PAGE, PAGE);
    bad_prp_list = ram_alloc(PAGE, PAGE);
    if (!bad_buf || !bad_prp_list)
        fail(EXIT_FAIL, "nvme-bad: out of RAM");
    pick_hole();
    kprintf("tiny: nvme-bad hole=0x%lx far_qid=%lu qsize=%u cases=%u\n", bad_hole, bad_far_qid,
            bad_ctrl.cfg.qsize, bad_ncases);
    nvme_post_aer(&bad_ctrl);
    if (probe(1))
        fail(EXIT_FAIL, "nvme-bad: verified I/O fails before any misbehaviour");

    unsigned unexpected = 0, ncases = bad_ncases;
    for (unsigned i = 0; i < ncases; i++) {
        const struct bad_case *bc = &bad_cases[i];
        if (bad_ctrl.max_xfer && bad_ctrl.max_xfer < bc->min_xfer) {
            kprintf("tiny: nvme-bad case=%s skipped (MDTS %lu bytes)\n", bc->name,
                    bad_ctrl.max_xfer);
            continue;
        }
        unsigned stray0 = bad_ctrl.stray_cqes;
        int st = bc->run();
        uint32_t event = 0;
        unsigned stray = settle(&event);
        stray += bad_ctrl.stray_cqes - stray0;
        uint32_t csts = nvme_rd32(&bad_ctrl, NVME_CSTS);
        int fatal = (csts & NVME_CSTS_CFS) != 0 || st == NVME_ST_FATAL;
        const char *v = verdict(bc, st, fatal, stray);
        char ex[32], res[64], ev[48];
        expect_str(bc, ex, sizeof(ex));
        result_str(st, res, sizeof(res));
        if (event)
            sfmt(ev, sizeof(ev), "0x%x(type=%u,info=0x%x,log=0x%x)", event, event & 7,
                 (event >> 8) & 0xff, (event >> 16) & 0xff);
        else
            sfmt(ev, sizeof(ev), "none");
        kprintf("tiny: nvme-bad case=%s result=%s expect=%s event=%s stray=%u csts=0x%x -> %s\n",
                bc->name, res, ex, ev, stray, csts, v);
        if (v[0] == 'u')
            unexpected++;
        if (fatal)
            reinit("controller fatal status");
        else if (st == NVME_ST_TIMEOUT)
            reinit("command lost");
        int p = probe(2 + i);
        if (p) {
            kprintf("tiny: nvme-bad   controller unusable after %s: probe 0x%x (%s)\n", bc->name,
                    p < 0 ? 0xffff : p, p == 0x7fff ? "data mismatch" : nvme_status_str(p));
            unexpected++;
            reinit("probe failed");
            p = probe(1000 + i);
            if (p)
                fail(EXIT_FAIL, "nvme-bad: I/O still fails after reset (case %s): 0x%x", bc->name,
                     p);
        }
    }

    /* Finally: a short verified run on every queue, as test=nvme does. */
    static struct io_job jobs[2];
    struct io_job *jp[2];
    uint64_t blocks = bad_ctrl.nsze / bad_lbas(PAGE);
    for (unsigned i = 0; i < 2; i++) {
        struct io_job *j = &jobs[i];
        memset(j, 0, sizeof(*j));
        j->c = &bad_ctrl;
        j->q = &bad_ctrl.io[i];
        j->mode = IO_VERIFY;
        j->qd = bad_ctrl.cfg.qsize - 1 < 8 ? bad_ctrl.cfg.qsize - 1 : 8;
        j->bs = PAGE;
        j->nlb = bad_lbas(PAGE);
        j->nblocks = blocks / 2 < 256 ? blocks / 2 : 256;
        j->lba0 = (uint64_t)i * j->nblocks * j->nlb;
        j->target = 512;
        j->timeout_tsc = bad_ctrl.cmd_tsc;
        if (io_job_setup(j))
            fail(EXIT_FAIL, "nvme-bad: out of RAM");
        jp[i] = j;
    }
    io_run(jp, 2);
    uint64_t errors = jobs[0].errors + jobs[1].errors, done = jobs[0].done + jobs[1].done;
    kprintf("tiny: nvme-bad final verify ios=%lu errors=%lu\n", done, errors);
    kprintf("tiny: nvme-bad summary cases=%u unexpected=%u resets=%u async_events=%u\n", ncases,
            unexpected, bad_resets, bad_ctrl.aer_count);
    nvme_shutdown(&bad_ctrl);
    if (errors)
        fail(EXIT_FAIL, "nvme-bad: final verify has %lu errors", errors);
    if (nopts.strict && unexpected)
        fail(EXIT_FAIL, "nvme-bad: %u unexpected outcomes (strict=1)", unexpected);
    return 0;
}
