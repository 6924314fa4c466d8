/*
 * NVMe controller registers (CAP, VS, INTMS/INTMC, CC, CSTS, AQA, ASQ, ACQ), enable,
 * reset and shutdown, the fatal-error state (CSTS.CFS), and the processing loop.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emu/nvme_int.h"
#include "util/events.h"
#include "util/log.h"

#define NVME_CAP_TO_500MS 0x14 /* 10 s ready timeout */
#define NVME_MPSMAX       4    /* 64 KiB */
#define NVME_VS_1_4       0x00010400
#define NS_QUEUE_DEPTH    1024
#define CSTS_RDY          (1u << NVME_CSTS_RDY_SHIFT)
#define CSTS_CFS          (1u << NVME_CSTS_CFS_SHIFT)

uint64_t nvme_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t nvme_now_ms(void)
{
    return nvme_now_us() / 1000;
}

uint32_t nvme_page_size(const struct nvme_ctrl *c)
{
    return 4096u << NVME_CC_MPS(c->cc);
}

void nvme_shadow_set(struct nvme_ctrl *c, uint64_t dbs, uint64_t eis)
{
    bool was = c->dbbuf_dbs != 0;
    c->dbbuf_dbs = dbs;
    c->dbbuf_eis = eis;
    if (was != (dbs != 0) && c->ops->shadow_changed)
        c->ops->shadow_changed(c->opaque, dbs != 0);
}

bool nvme_ctrl_ready(const struct nvme_ctrl *c)
{
    return (c->csts & CSTS_RDY) && !(c->csts & CSTS_CFS) && !c->resetting;
}

void nvme_ctrl_fatal(struct nvme_ctrl *c, const char *why)
{
    if (!(c->csts & CSTS_CFS)) {
        warn_msg("nvme: controller fatal status: %s", why);
        /* why is one of our constant texts (no quotes), safe inside a JSON string */
        events_postf("NVME_FATAL", "{\"reason\":\"%s\"}", why);
    }
    c->csts |= CSTS_CFS;
}

unsigned nvme_reqs_outstanding(const struct nvme_ctrl *c)
{
    unsigned n = 0;
    for (int i = 0; i < NVME_MAX_QUEUES; i++)
        n += c->sq[i].inflight;
    return n;
}

/* ---- enable / reset / shutdown ---- */

static bool ring_in_ram(struct nvme_ctrl *c, uint64_t base, uint32_t entries, uint32_t esize)
{
    return (base & (nvme_page_size(c) - 1)) == 0 && base &&
           gpa_ptr(c->mem, base, (uint64_t)entries * esize) != NULL;
}

static void ctrl_enable(struct nvme_ctrl *c)
{
    uint32_t asqs = (c->aqa & 0xfff) + 1, acqs = ((c->aqa >> 16) & 0xfff) + 1;
    uint32_t mqes = NVME_CAP_MQES(c->cap);
    const char *bad = NULL;
    unsigned css = NVME_CC_CSS(c->cc), iosqes = NVME_CC_IOSQES(c->cc);
    unsigned iocqes = NVME_CC_IOCQES(c->cc);

    /* Validate everything the guest controls before touching guest memory: a hostile
     * CC/AQA/ASQ/ACQ must end in CSTS.CFS, never in a queue we cannot access. */
    if (c->nr_abort_pending || nvme_reqs_outstanding(c))
        bad = "enable while requests are outstanding";
    else if (asqs < 2 || acqs < 2 || asqs > mqes + 1 || acqs > mqes + 1)
        bad = "AQA queue size invalid";
    else if (css != NVME_CC_CSS_NVM && css != NVME_CC_CSS_CSI)
        bad = "CC.CSS not supported";
    else if (NVME_CC_MPS(c->cc) > NVME_MPSMAX)
        bad = "CC.MPS above CAP.MPSMAX";
    else if (NVME_CC_AMS(c->cc) != NVME_CC_AMS_RR)
        bad = "CC.AMS not supported";
    else if ((iosqes && iosqes != 6) || (iocqes && iocqes != 4))
        bad = "CC.IOSQES/IOCQES invalid";
    else if (!ring_in_ram(c, c->asq, asqs, sizeof(struct nvme_sqe)))
        bad = "ASQ unaligned or outside guest RAM";
    else if (!ring_in_ram(c, c->acq, acqs, sizeof(struct nvme_cqe)))
        bad = "ACQ unaligned or outside guest RAM";
    if (bad) {
        nvme_ctrl_fatal(c, bad);
        return;
    }
    if (nvme_cq_create(c, 0, c->acq, acqs, true, 0) || nvme_sq_create(c, 0, c->asq, asqs, 0, 0)) {
        nvme_queues_reset(c);
        nvme_ctrl_fatal(c, "out of memory creating the admin queues");
        return;
    }
    nvme_fw_reset(c);
    c->csts = (c->csts & ~(NVME_CSTS_SHST_MASK << NVME_CSTS_SHST_SHIFT)) | CSTS_RDY;
}

/* The second half of a controller reset: runs once no storage request is in flight. */
static void ctrl_reset_finish(struct nvme_ctrl *c)
{
    nvme_admin_reset(c);
    nvme_queues_reset(c);
    nvme_shadow_set(c, 0, 0);
    nvme_features_reset(c);
    c->io_queues_created = false;
    c->nr_abort_pending = 0;
    c->intms = 0;
    c->resetting = false;
    c->csts &= ~(CSTS_RDY | CSTS_CFS);
    nvme_irq_intx_update(c);
    /* CC.EN written back to 1 while the drain ran: act on it now, as on any enable, so
     * the controller ends ready (or fatal if CC is bad), never disabled with EN=1. */
    if (NVME_CC_EN(c->cc))
        ctrl_enable(c);
}

static void ctrl_reset_begin(struct nvme_ctrl *c)
{
    /* Completions and AERs nobody will read: drop them now; storage requests must come
     * back first (their iovecs point into pools we are about to free). */
    c->resetting = true;
    nvme_admin_reset(c);
    for (int i = 0; i < NVME_MAX_QUEUES; i++)
        if (c->cq[i].created)
            nvme_cq_drop_parked(c, &c->cq[i], NULL);
    if (nvme_reqs_outstanding(c) == 0)
        ctrl_reset_finish(c);
}

/* One flush of the round ended (or the round's own hold). SHST says complete only if
 * this round's flushes answer the shutdown the host is waiting for: SHN may have been
 * cleared meanwhile (no shutdown wanted) or set again (a new round flushes later writes). */
static void shutdown_round_put(struct nvme_ctrl *c)
{
    if (--c->shutdown_flushes > 0 || c->shutdown_pending || !NVME_CC_SHN(c->cc))
        return;
    c->csts = (c->csts & ~(NVME_CSTS_SHST_MASK << NVME_CSTS_SHST_SHIFT)) |
              (NVME_CSTS_SHST_CMPLT << NVME_CSTS_SHST_SHIFT);
}

static void shutdown_flush_done(struct blk_req *req, int64_t res)
{
    struct nvme_ctrl *c = req->opaque;
    c->ns[req - c->shutdown_req].users--;
    if (res < 0)
        warn_msg("nvme: flush at shutdown failed: %s", strerror((int)-res));
    shutdown_round_put(c);
}

/* Called from nvme_ctrl_process(): storage submissions belong to the I/O thread. A round
 * still in flight owns shutdown_req[]: a new request waits for it to end. */
static bool shutdown_start(struct nvme_ctrl *c)
{
    if (!c->shutdown_pending || c->shutdown_flushes)
        return false;
    c->shutdown_pending = false;
    c->shutdown_flushes = 1; /* held until every flush is queued */
    for (int i = 0; i < NVME_MAX_NAMESPACES; i++) {
        struct nvme_ns *ns = &c->ns[i];
        if (!ns->present || !ns->q || ns->blk->read_only)
            continue;
        struct blk_req *b = &c->shutdown_req[i];
        memset(b, 0, sizeof(*b));
        b->op = BLK_FLUSH;
        b->done = shutdown_flush_done;
        b->opaque = c;
        if (blk_submit(ns->q, b) < 0)
            continue;
        c->shutdown_flushes++;
        ns->users++;
        blk_flush_submissions(ns->q);
    }
    shutdown_round_put(c);
    return true;
}

static void write_cc(struct nvme_ctrl *c, uint32_t val)
{
    uint32_t old = c->cc;
    /* While enabled only EN and SHN may change: MPS, CSS and the entry sizes are what
     * the live queues were validated against (spec: other changes are undefined). */
    if (NVME_CC_EN(old) && NVME_CC_EN(val)) {
        uint32_t keep = NVME_CC_SHN_MASK << NVME_CC_SHN_SHIFT;
        val = (old & ~keep) | (val & keep);
    }
    c->cc = val;
    if (NVME_CC_EN(val) && !NVME_CC_EN(old)) {
        if (!c->resetting)
            ctrl_enable(c); /* else the reset's end enables (ctrl_reset_finish) */
    } else if (!NVME_CC_EN(val) && NVME_CC_EN(old)) {
        ctrl_reset_begin(c);
    }
    if (NVME_CC_SHN(val) && !NVME_CC_SHN(old)) {
        c->csts = (c->csts & ~(NVME_CSTS_SHST_MASK << NVME_CSTS_SHST_SHIFT)) |
                  (NVME_CSTS_SHST_OCCUR << NVME_CSTS_SHST_SHIFT);
        c->shutdown_pending = true;
        if (c->ops->kick)
            c->ops->kick(c->opaque);
    } else if (!NVME_CC_SHN(val) && NVME_CC_SHN(old)) {
        c->shutdown_pending = false; /* withdrawn before the I/O thread started it */
        c->csts &= ~(NVME_CSTS_SHST_MASK << NVME_CSTS_SHST_SHIFT);
    }
}

/* ---- register file ---- */

static uint32_t reg_read32(struct nvme_ctrl *c, uint64_t off)
{
    switch (off) {
    case NVME_REG_CAP:
        return (uint32_t)c->cap;
    case NVME_REG_CAP + 4:
        return (uint32_t)(c->cap >> 32);
    case NVME_REG_VS:
        return c->vs;
    case NVME_REG_INTMS:
    case NVME_REG_INTMC:
        return c->intms;
    case NVME_REG_CC:
        return c->cc;
    case NVME_REG_CSTS:
        return c->csts;
    case NVME_REG_AQA:
        return c->aqa;
    case NVME_REG_ASQ:
        return (uint32_t)c->asq;
    case NVME_REG_ASQ + 4:
        return (uint32_t)(c->asq >> 32);
    case NVME_REG_ACQ:
        return (uint32_t)c->acq;
    case NVME_REG_ACQ + 4:
        return (uint32_t)(c->acq >> 32);
    default:
        return 0; /* reserved, CMB/BP/PMR (not implemented), doorbells (write-only) */
    }
}

static void reg_write32(struct nvme_ctrl *c, uint64_t off, uint32_t val)
{
    if (off >= NVME_DOORBELL_BASE) {
        nvme_doorbell_write(c, (uint32_t)((off - NVME_DOORBELL_BASE) / 4), val);
        return;
    }
    /* AQA/ASQ/ACQ may only change while the controller is disabled (spec: writes while
     * enabled have undefined results; ignoring them keeps the live queues consistent). */
    bool en = NVME_CC_EN(c->cc);
    switch (off) {
    case NVME_REG_INTMS:
        if (!c->msix_enabled) {
            c->intms |= val;
            nvme_irq_intx_update(c);
        }
        break;
    case NVME_REG_INTMC:
        if (!c->msix_enabled) {
            c->intms &= ~val;
            nvme_irq_intx_update(c);
        }
        break;
    case NVME_REG_CC:
        write_cc(c, val);
        break;
    case NVME_REG_AQA:
        if (!en)
            c->aqa = val & 0x0fff0fff;
        break;
    case NVME_REG_ASQ:
        if (!en)
            c->asq = (c->asq & 0xffffffff00000000ull) | (val & ~0xfffu);
        break;
    case NVME_REG_ASQ + 4:
        if (!en)
            c->asq = (c->asq & 0xffffffffull) | ((uint64_t)val << 32);
        break;
    case NVME_REG_ACQ:
        if (!en)
            c->acq = (c->acq & 0xffffffff00000000ull) | (val & ~0xfffu);
        break;
    case NVME_REG_ACQ + 4:
        if (!en)
            c->acq = (c->acq & 0xffffffffull) | ((uint64_t)val << 32);
        break;
    default:
        break; /* read-only (CAP, VS, CSTS), NSSR unsupported, reserved */
    }
}

uint64_t nvme_ctrl_mmio_read(struct nvme_ctrl *c, uint64_t off, unsigned len)
{
    if (len == 0 || len > 8 || off >= NVME_BAR0_SIZE || off + len > NVME_BAR0_SIZE)
        return 0;
    pthread_mutex_lock(&c->lock);
    /* Assemble any width at any offset from the aligned dwords it touches. */
    uint64_t v = 0;
    for (unsigned i = 0; i < len; i++) {
        uint64_t o = off + i;
        uint32_t d = reg_read32(c, o & ~3ull);
        v |= (uint64_t)((d >> ((o & 3) * 8)) & 0xff) << (i * 8);
    }
    pthread_mutex_unlock(&c->lock);
    return v;
}

void nvme_ctrl_mmio_write(struct nvme_ctrl *c, uint64_t off, uint64_t val, unsigned len)
{
    if (len == 0 || len > 8 || off >= NVME_BAR0_SIZE || off + len > NVME_BAR0_SIZE)
        return;
    pthread_mutex_lock(&c->lock);
    if ((off & 3) == 0 && (len == 4 || len == 8)) {
        reg_write32(c, off, (uint32_t)val);
        if (len == 8)
            reg_write32(c, off + 4, (uint32_t)(val >> 32));
    } else if (off < NVME_DOORBELL_BASE) {
        /* Narrow or unaligned register write: merge into each touched dword (doorbells
         * only take whole dwords; a partial doorbell value would be garbage). */
        uint64_t first = off & ~3ull, last = (off + len - 1) & ~3ull;
        for (uint64_t d = first; d <= last; d += 4) {
            uint32_t cur = reg_read32(c, d);
            if (d == NVME_REG_INTMC)
                cur = 0; /* RW1C: writing back the mask would clear it all */
            for (unsigned i = 0; i < len; i++) {
                uint64_t o = off + i;
                if ((o & ~3ull) != d)
                    continue;
                unsigned sh = (o & 3) * 8;
                cur = (cur & ~(0xffu << sh)) | (uint32_t)((val >> (i * 8)) & 0xff) << sh;
            }
            if (d == NVME_REG_INTMS || d == NVME_REG_INTMC) {
                /* Only the written bytes count for RW1S/RW1C. */
                uint32_t m = 0;
                for (unsigned i = 0; i < len; i++)
                    if (((off + i) & ~3ull) == d)
                        m |= 0xffu << (((off + i) & 3) * 8);
                cur &= m;
            }
            reg_write32(c, d, cur);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

/* ---- lifecycle ---- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

struct nvme_ctrl *nvme_ctrl_new(const struct nvme_ctrl_config *cfg, struct guest_mem *mem,
                                const struct nvme_host_ops *ops, void *opaque)
{
    struct nvme_ctrl *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    pthread_mutex_init(&c->lock, NULL);
    c->cfg = *cfg;
    c->cfg.serial = dup_or_null(cfg->serial ? cfg->serial : "NVMEVM0001");
    c->cfg.model = dup_or_null(cfg->model ? cfg->model : "nvmevm NVMe controller");
    c->cfg.ns_dir = dup_or_null(cfg->ns_dir);
    if (c->cfg.nr_io_queues < 1)
        c->cfg.nr_io_queues = 1;
    if (c->cfg.nr_io_queues > NVME_MAX_IO_QUEUES)
        c->cfg.nr_io_queues = NVME_MAX_IO_QUEUES;
    if (c->cfg.mqes == 0)
        c->cfg.mqes = 1023;
    if (c->cfg.mqes > 0xffff)
        c->cfg.mqes = 0xffff;
    if (c->cfg.nr_ns > NVME_MAX_NAMESPACES)
        c->cfg.nr_ns = NVME_MAX_NAMESPACES;
    c->mem = mem;
    c->ops = ops;
    c->opaque = opaque;

    c->cap = (uint64_t)c->cfg.mqes << NVME_CAP_MQES_SHIFT | (uint64_t)1 << NVME_CAP_CQR_SHIFT |
             (uint64_t)NVME_CAP_TO_500MS << NVME_CAP_TO_SHIFT |
             (uint64_t)(NVME_CAP_CSS_NVM | NVME_CAP_CSS_CSI) << NVME_CAP_CSS_SHIFT |
             (uint64_t)0 << NVME_CAP_MPSMIN_SHIFT | (uint64_t)NVME_MPSMAX << NVME_CAP_MPSMAX_SHIFT;
    c->vs = NVME_VS_1_4;
    c->created_at_ms = nvme_now_ms();
    c->stats.started_ns = nvme_stats_now_ns();
    c->smart.power_cycles = 1;
    TAILQ_INIT(&c->aer_reqs);
    for (int i = 0; i < NVME_MAX_QUEUES; i++) {
        c->sq[i].id = c->cq[i].id = (uint16_t)i;
        TAILQ_INIT(&c->sq[i].free);
        TAILQ_INIT(&c->cq[i].parked);
    }
    nvme_features_reset(c);
    nvme_fw_init(c);
    for (int i = 0; i < c->cfg.nr_ns; i++) {
        const struct nvme_ns_config *n = &cfg->ns[i];
        if (!n->blk || nvme_ns_setup(c, (uint32_t)i + 1, n->blk, n->lba_shift, false) < 0) {
            warn_msg("nvme: namespace %d could not be set up", i + 1);
            nvme_ctrl_free(c);
            return NULL;
        }
        c->ns[i].deletable = n->deletable;
    }
    return c;
}

/* Reaps storage until no request is outstanding, sleeping on the completion fds. */
static void drain_locked(struct nvme_ctrl *c, int timeout_ms)
{
    uint64_t end = nvme_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        nvme_io_reap(c);
        if (c->resetting && nvme_reqs_outstanding(c) == 0)
            ctrl_reset_finish(c);
        /* Anything left that is not parked/an AER is storage we must wait for. */
        unsigned waiting = nvme_reqs_outstanding(c) - c->aer_outstanding;
        for (int i = 0; i < NVME_MAX_QUEUES; i++)
            waiting -= c->cq[i].parked_count;
        if ((waiting == 0 && c->shutdown_flushes == 0) || nvme_now_ms() >= end)
            break;
        struct pollfd pfd[NVME_MAX_NAMESPACES];
        int n = 0;
        for (int i = 0; i < NVME_MAX_NAMESPACES; i++)
            if (c->ns[i].present && c->ns[i].q) {
                int fd = blk_completion_fd(c->ns[i].q);
                if (fd >= 0)
                    pfd[n++] = (struct pollfd){.fd = fd, .events = POLLIN};
            }
        if (n)
            poll(pfd, (nfds_t)n, 10);
        else
            nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
}

void nvme_ctrl_drain(struct nvme_ctrl *c)
{
    pthread_mutex_lock(&c->lock);
    drain_locked(c, 60000);
    for (int i = 0; i < NVME_MAX_QUEUES; i++)
        if (c->cq[i].created)
            nvme_cq_post_parked(c, &c->cq[i]);
    nvme_irq_process(c);
    pthread_mutex_unlock(&c->lock);
}

void nvme_ctrl_free(struct nvme_ctrl *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->cc = 0; /* the reset below must not enable again */
    c->resetting = true;
    nvme_admin_reset(c);
    for (int i = 0; i < NVME_MAX_QUEUES; i++)
        if (c->cq[i].created)
            nvme_cq_drop_parked(c, &c->cq[i], NULL);
    drain_locked(c, 60000);
    if (nvme_reqs_outstanding(c))
        warn_msg("nvme: freeing the controller with storage requests still in flight");
    nvme_queues_reset(c);
    for (int i = 0; i < NVME_MAX_NAMESPACES; i++)
        if (c->ns[i].present)
            nvme_ns_teardown(c, &c->ns[i]);
    pthread_mutex_unlock(&c->lock);
    free(c->fw_image);
    free((char *)c->cfg.serial);
    free((char *)c->cfg.model);
    free((char *)c->cfg.ns_dir);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void nvme_ctrl_set_msix(struct nvme_ctrl *c, bool enabled)
{
    pthread_mutex_lock(&c->lock);
    c->msix_enabled = enabled;
    nvme_irq_intx_update(c);
    pthread_mutex_unlock(&c->lock);
}

int nvme_ctrl_completion_fds(struct nvme_ctrl *c, int *fds, int max)
{
    int n = 0;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < NVME_MAX_NAMESPACES && n < max; i++)
        if (c->ns[i].present && c->ns[i].q) {
            int fd = blk_completion_fd(c->ns[i].q);
            if (fd >= 0)
                fds[n++] = fd;
        }
    pthread_mutex_unlock(&c->lock);
    return n;
}

bool nvme_ctrl_shadow_enabled(struct nvme_ctrl *c)
{
    pthread_mutex_lock(&c->lock);
    bool on = c->dbbuf_dbs != 0;
    pthread_mutex_unlock(&c->lock);
    return on;
}

void nvme_ctrl_set_polling(struct nvme_ctrl *c, bool on)
{
    pthread_mutex_lock(&c->lock);
    c->polling = on;
    pthread_mutex_unlock(&c->lock);
}

uint64_t nvme_ctrl_next_deadline_ms(struct nvme_ctrl *c)
{
    pthread_mutex_lock(&c->lock);
    uint64_t us = nvme_irq_next_deadline_us(c);
    pthread_mutex_unlock(&c->lock);
    return us == UINT64_MAX ? UINT64_MAX : (us + 999) / 1000;
}

bool nvme_ctrl_process(struct nvme_ctrl *c)
{
    bool progress = false;
    pthread_mutex_lock(&c->lock);
    if (nvme_io_reap(c))
        progress = true;
    if (c->resetting) {
        if (nvme_reqs_outstanding(c) == 0) {
            ctrl_reset_finish(c);
            progress = true;
        }
    } else if (nvme_ctrl_ready(c)) {
        for (int i = 0; i < NVME_MAX_QUEUES; i++)
            if (c->cq[i].created && nvme_cq_post_parked(c, &c->cq[i]))
                progress = true;
        if (nvme_queues_fetch(c))
            progress = true;
        if (nvme_io_reap(c))
            progress = true;
    }
    if (shutdown_start(c))
        progress = true;
    /* Storage requests queued by this pass go out in one batch per namespace queue. */
    for (int i = 0; i < NVME_MAX_NAMESPACES; i++)
        if (c->ns[i].present && c->ns[i].q)
            blk_flush_submissions(c->ns[i].q);
    if (nvme_irq_process(c))
        progress = true;
    pthread_mutex_unlock(&c->lock);
    return progress;
}

/* ---- namespaces (shared by new() and Namespace Management) ---- */

int nvme_ns_setup(struct nvme_ctrl *c, uint32_t nsid, struct blk_dev *blk, uint32_t lba_shift,
                  bool owns_blk)
{
    if (nsid == 0 || nsid > NVME_MAX_NAMESPACES || !blk)
        return -EINVAL;
    if (lba_shift != 9 && lba_shift != 12)
        lba_shift = blk->logical_block > 512 ? 12 : 9;
    /* An LBA smaller than the backend's O_DIRECT unit is fine: block/ falls back to
     * buffered I/O for requests O_DIRECT cannot take. */
    struct nvme_ns *ns = &c->ns[nsid - 1];
    memset(ns, 0, sizeof(*ns));
    ns->q = blk_queue_new(blk, NS_QUEUE_DEPTH);
    if (!ns->q)
        return -ENOMEM;
    ns->nsid = nsid;
    ns->present = true;
    ns->attached = true;
    ns->blk = blk;
    ns->owns_blk = owns_blk;
    ns->deletable = owns_blk;
    ns->lba_shift = lba_shift;
    ns->nsze = blk->size >> lba_shift;
    ns->read_only = blk->read_only;
    /* Stable identifiers derived from the serial and nsid: the same configuration gives
     * the guest the same /dev/disk/by-id names across boots. */
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *s = c->cfg.serial; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    h = (h ^ nsid) * 0x100000001b3ull;
    uint8_t id[16];
    for (int i = 0; i < 16; i++) {
        h = (h ^ (uint64_t)i) * 0x100000001b3ull;
        id[i] = (uint8_t)(h >> 56);
    }
    memcpy(ns->nguid, id, 16);
    ns->eui64[0] = 0x52; /* locally administered OUI-style prefix */
    ns->eui64[1] = 0x54;
    ns->eui64[2] = 0x00;
    memcpy(ns->eui64 + 3, id + 3, 5);
    memcpy(ns->uuid, id, 16);
    ns->uuid[6] = (uint8_t)((ns->uuid[6] & 0x0f) | 0x40); /* version 4 */
    ns->uuid[8] = (uint8_t)((ns->uuid[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    return 0;
}

void nvme_ns_teardown(struct nvme_ctrl *c, struct nvme_ns *ns)
{
    if (ns->q)
        blk_queue_free(ns->q);
    if (ns->owns_blk && ns->blk)
        blk_close(ns->blk); /* the file stays: Namespace Management's delete unlinks it */
    free(ns->bad);
    memset(ns, 0, sizeof(*ns));
}
