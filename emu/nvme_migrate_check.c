/*
 * NVMe migration: decoding a stream into a struct img and validating every field against
 * the destination controller before anything is applied (see nvme_migrate.c).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "emu/nvme_migrate_int.h"
#include "util/err.h"

void nvme_mig_img_free(struct img *im)
{
    if (!im)
        return;
    for (int i = 0; i < NVME_MAX_QUEUES; i++)
        free(im->cq[i].parked);
    for (int i = 0; i < NVME_MAX_NAMESPACES; i++)
        free(im->ns[i].bad);
    free(im);
}

/* ---- load: decode ---- */

struct dec {
    struct mig_cursor *cur;
    bool badbool; /* a boolean byte other than 0/1 */
};

static bool get_bool(struct dec *d)
{
    uint8_t v = mig_get_u8(d->cur);
    if (v > 1)
        d->badbool = true;
    return v != 0;
}

/* Bytes left: counted arrays are checked against it before anything is allocated. */
static size_t left(const struct mig_cursor *cur)
{
    return cur->bad || cur->pos > cur->len ? 0 : cur->len - cur->pos;
}

#define TRUNC()                                                                                    \
    do {                                                                                           \
        if (cur->bad)                                                                              \
            return err_set(err, errlen, "nvme: state truncated");                                  \
    } while (0)

static int dec_ns(struct dec *d, struct img *im, char *err, size_t errlen)
{
    struct mig_cursor *cur = d->cur;
    unsigned nr = mig_get_u8(cur);
    TRUNC();
    if (nr > NVME_MAX_NAMESPACES)
        return err_set(err, errlen, "nvme: %u namespaces in the stream (at most %d)", nr,
                       NVME_MAX_NAMESPACES);
    for (unsigned i = 0; i < nr; i++) {
        uint32_t nsid = mig_get_u32(cur);
        TRUNC();
        if (nsid == 0 || nsid > NVME_MAX_NAMESPACES)
            return err_set(err, errlen, "nvme: namespace id %u out of range", nsid);
        struct img_ns *ns = &im->ns[nsid - 1];
        if (ns->present)
            return err_set(err, errlen, "nvme: namespace %u defined twice", nsid);
        ns->present = true;
        ns->attached = get_bool(d);
        ns->read_only = get_bool(d);
        ns->lba_shift = mig_get_u8(cur);
        ns->bytes = mig_get_u64(cur);
        ns->nsze = mig_get_u64(cur);
        mig_get_bytes(cur, ns->nguid, sizeof(ns->nguid));
        mig_get_bytes(cur, ns->eui64, sizeof(ns->eui64));
        mig_get_bytes(cur, ns->uuid, sizeof(ns->uuid));
        ns->nr_bad = mig_get_u32(cur);
        TRUNC();
        if (ns->nr_bad > NVME_IO_MAX_BAD_RANGES)
            return err_set(err, errlen, "nvme: namespace %u has %u bad ranges (at most %d)", nsid,
                           ns->nr_bad, NVME_IO_MAX_BAD_RANGES);
        if ((size_t)ns->nr_bad * 16 > left(cur))
            return err_set(err, errlen, "nvme: state truncated");
        if (ns->nr_bad && !(ns->bad = calloc(ns->nr_bad, sizeof(*ns->bad))))
            return err_set(err, errlen, "nvme: out of memory loading the state");
        for (uint32_t j = 0; j < ns->nr_bad; j++) {
            ns->bad[j].slba = mig_get_u64(cur);
            ns->bad[j].nlb = mig_get_u64(cur);
        }
    }
    return 0;
}

static int dec_queues(struct dec *d, struct img *im, char *err, size_t errlen)
{
    struct mig_cursor *cur = d->cur;
    unsigned nr = mig_get_u8(cur);
    TRUNC();
    if (nr > NVME_MAX_QUEUES)
        return err_set(err, errlen, "nvme: %u CQs in the stream (at most %d)", nr, NVME_MAX_QUEUES);
    for (unsigned i = 0; i < nr; i++) {
        uint16_t id = mig_get_u16(cur);
        TRUNC();
        if (id >= NVME_MAX_QUEUES)
            return err_set(err, errlen, "nvme: CQ id %u out of range", id);
        struct img_cq *cq = &im->cq[id];
        if (cq->present)
            return err_set(err, errlen, "nvme: CQ %u defined twice", id);
        cq->present = true;
        cq->base = mig_get_u64(cur);
        cq->size = mig_get_u32(cur);
        cq->head = mig_get_u32(cur);
        cq->tail = mig_get_u32(cur);
        cq->phase = mig_get_u8(cur);
        cq->ien = get_bool(d);
        cq->vector = mig_get_u16(cur);
        cq->unsignalled = mig_get_u32(cur);
        cq->irq_pending = get_bool(d);
        cq->armed = get_bool(d);
        cq->remaining_us = mig_get_u64(cur);
        cq->nr_parked = mig_get_u32(cur);
        TRUNC();
        if ((size_t)cq->nr_parked * 14 > left(cur))
            return err_set(err, errlen, "nvme: state truncated");
        if (cq->nr_parked && !(cq->parked = calloc(cq->nr_parked, sizeof(*cq->parked))))
            return err_set(err, errlen, "nvme: out of memory loading the state");
        for (uint32_t j = 0; j < cq->nr_parked; j++) {
            struct img_parked *p = &cq->parked[j];
            p->sqid = mig_get_u16(cur);
            p->cid = mig_get_u16(cur);
            p->status = mig_get_u16(cur);
            p->sq_head = mig_get_u32(cur);
            p->result = mig_get_u32(cur);
        }
    }
    nr = mig_get_u8(cur);
    TRUNC();
    if (nr > NVME_MAX_QUEUES)
        return err_set(err, errlen, "nvme: %u SQs in the stream (at most %d)", nr, NVME_MAX_QUEUES);
    for (unsigned i = 0; i < nr; i++) {
        uint16_t id = mig_get_u16(cur);
        TRUNC();
        if (id >= NVME_MAX_QUEUES)
            return err_set(err, errlen, "nvme: SQ id %u out of range", id);
        struct img_sq *sq = &im->sq[id];
        if (sq->present)
            return err_set(err, errlen, "nvme: SQ %u defined twice", id);
        sq->present = true;
        sq->base = mig_get_u64(cur);
        sq->size = mig_get_u32(cur);
        sq->head = mig_get_u32(cur);
        sq->tail = mig_get_u32(cur);
        sq->cqid = mig_get_u16(cur);
        sq->prio = mig_get_u8(cur);
    }
    return 0;
}

static int dec_events(struct dec *d, struct img *im, char *err, size_t errlen)
{
    struct mig_cursor *cur = d->cur;
    im->nr_aer = mig_get_u8(cur);
    TRUNC();
    if (im->nr_aer > NVME_AERL + 1)
        return err_set(err, errlen, "nvme: %u outstanding AERs (AERL allows %d)", im->nr_aer,
                       NVME_AERL + 1);
    for (unsigned i = 0; i < im->nr_aer; i++)
        im->aer_cid[i] = mig_get_u16(cur);
    im->aen_count = mig_get_u8(cur);
    TRUNC();
    if (im->aen_count > NVME_MAX_AEN_QUEUED)
        return err_set(err, errlen, "nvme: %u queued events (at most %d)", im->aen_count,
                       NVME_MAX_AEN_QUEUED);
    for (unsigned i = 0; i < im->aen_count; i++)
        im->aen_queue[i] = mig_get_u32(cur);
    im->aen_masked = mig_get_u32(cur);
    im->changed_count = mig_get_u16(cur);
    TRUNC();
    if (im->changed_count > 1024)
        return err_set(err, errlen, "nvme: %u changed namespaces (at most 1024)",
                       im->changed_count);
    for (unsigned i = 0; i < im->changed_count; i++)
        im->changed[i] = mig_get_u32(cur);
    im->nr_abort = mig_get_u8(cur);
    TRUNC();
    if (im->nr_abort > 8)
        return err_set(err, errlen, "nvme: %u pending aborts (at most 8)", im->nr_abort);
    for (unsigned i = 0; i < im->nr_abort; i++) {
        im->abort[i].sqid = mig_get_u16(cur);
        im->abort[i].cid = mig_get_u16(cur);
    }
    return 0;
}

static void dec_misc(struct dec *d, struct img *im)
{
    struct mig_cursor *cur = d->cur;
    struct nvme_features *f = &im->feat;
    f->arbitration = mig_get_u32(cur);
    f->power_mgmt = mig_get_u32(cur);
    for (int s = 0; s < 9; s++)
        for (int t = 0; t < 2; t++)
            f->temp_thresh[s][t] = mig_get_u16(cur);
    f->err_rec = mig_get_u32(cur);
    f->vwc = get_bool(d);
    f->num_queues = mig_get_u32(cur);
    f->int_coalescing = mig_get_u32(cur);
    for (int v = 0; v < NVME_NR_VECTORS; v++)
        f->iv_config[v] = mig_get_u32(cur);
    f->async_event_config = mig_get_u32(cur);
    im->ts_set = get_bool(d);
    im->ts_now = mig_get_u64(cur);
    mig_get_bytes(cur, f->host_behavior, sizeof(f->host_behavior));
    f->keep_alive_ms = mig_get_u32(cur);

    struct nvme_smart *s = &im->smart;
    uint64_t *sm[] = {&s->data_units_read,   &s->data_units_written, &s->host_reads,
                      &s->host_writes,       &s->busy_minutes,       &s->power_cycles,
                      &s->power_on_seconds,  &s->unsafe_shutdowns,   &s->media_errors,
                      &s->error_log_entries, &s->read_bytes_acc,     &s->write_bytes_acc};
    for (size_t i = 0; i < sizeof(sm) / sizeof(sm[0]); i++)
        *sm[i] = mig_get_u64(cur);
    im->elapsed_ms = mig_get_u64(cur);
    im->errlog_next = mig_get_u32(cur);
    im->error_count = mig_get_u64(cur);
    mig_get_bytes(cur, im->errlog, sizeof(im->errlog));
    mig_get_bytes(cur, im->fw_slot, sizeof(im->fw_slot));
    im->fw_active = mig_get_u8(cur);
    im->fw_pending = mig_get_u8(cur);
    mig_get_bytes(cur, im->selftest, sizeof(im->selftest));
}

int nvme_mig_decode(struct mig_cursor *cur, struct img *im, char *err, size_t errlen)
{
    struct dec d = {.cur = cur};
    uint16_t version = mig_get_u16(cur);
    TRUNC();
    if (version != NVME_MIG_VERSION)
        return err_set(err, errlen, "nvme: state version %u is unknown (this build reads %d)",
                       version, NVME_MIG_VERSION);
    im->quiesced = get_bool(&d);
    im->cap = mig_get_u64(cur);
    im->vs = mig_get_u32(cur);
    im->intms = mig_get_u32(cur);
    im->cc = mig_get_u32(cur);
    im->csts = mig_get_u32(cur);
    im->aqa = mig_get_u32(cur);
    im->asq = mig_get_u64(cur);
    im->acq = mig_get_u64(cur);
    im->msix = get_bool(&d);
    im->io_queues_created = get_bool(&d);
    im->shutdown_pending = get_bool(&d);
    if (dec_ns(&d, im, err, errlen))
        return -1;
    im->dbs = mig_get_u64(cur);
    im->eis = mig_get_u64(cur);
    if (dec_queues(&d, im, err, errlen) || dec_events(&d, im, err, errlen))
        return -1;
    dec_misc(&d, im);
    TRUNC();
    if (!mig_cursor_done(cur))
        return err_set(err, errlen, "nvme: %zu trailing bytes after the controller state",
                       left(cur));
    if (d.badbool)
        return err_set(err, errlen, "nvme: a boolean field is neither 0 nor 1");
    return 0;
}

/* ---- load: validate the image against this controller ---- */

static int size_str(char *out, size_t n, uint64_t bytes)
{
    if (bytes && bytes % (1ull << 20) == 0)
        return snprintf(out, n, "%llu MiB", (unsigned long long)(bytes >> 20));
    return snprintf(out, n, "%llu bytes", (unsigned long long)bytes);
}

static int check_ns(const struct nvme_ctrl *c, const struct img *im, char *err, size_t errlen)
{
    for (unsigned i = 0; i < NVME_MAX_NAMESPACES; i++) {
        const struct nvme_ns *here = &c->ns[i];
        const struct img_ns *ns = &im->ns[i];
        unsigned nsid = i + 1;
        if (ns->present && !here->present)
            return err_set(err, errlen,
                           "nvme: namespace %u is in the stream but not configured here", nsid);
        if (!ns->present && here->present)
            return err_set(err, errlen,
                           "nvme: namespace %u is configured here but not in the stream", nsid);
        if (!ns->present)
            continue;
        if (ns->bytes != here->blk->size) {
            char a[32], b[32];
            size_str(a, sizeof(a), here->blk->size);
            size_str(b, sizeof(b), ns->bytes);
            return err_set(err, errlen, "nvme: namespace %u is %s here, %s in the stream", nsid, a,
                           b);
        }
        /* Any backend takes 512-byte LBAs: block/ goes buffered where O_DIRECT cannot. */
        if (ns->lba_shift != 9 && ns->lba_shift != 12)
            return err_set(err, errlen, "nvme: namespace %u LBA shift %u not usable here", nsid,
                           ns->lba_shift);
        if (ns->nsze != ns->bytes >> ns->lba_shift)
            return err_set(err, errlen, "nvme: namespace %u NSZE %llu does not match its size",
                           nsid, (unsigned long long)ns->nsze);
        if (ns->read_only != here->read_only)
            return err_set(err, errlen, "nvme: namespace %u is %s here, %s in the stream", nsid,
                           here->read_only ? "read-only" : "writable",
                           ns->read_only ? "read-only" : "writable");
        for (uint32_t j = 0; j < ns->nr_bad; j++) {
            const struct nvme_bad_range *b = &ns->bad[j];
            if (b->nlb == 0 || b->slba >= ns->nsze || b->nlb > ns->nsze - b->slba)
                return err_set(err, errlen, "nvme: namespace %u bad range %u outside the namespace",
                               nsid, j);
            if (j && ns->bad[j - 1].slba + ns->bad[j - 1].nlb > b->slba)
                return err_set(err, errlen, "nvme: namespace %u bad ranges unsorted or overlapping",
                               nsid);
        }
    }
    return 0;
}

static bool ring_ok(const struct nvme_ctrl *c, uint64_t base, uint32_t entries, uint32_t esize,
                    uint64_t page)
{
    return base && !(base & (page - 1)) && gpa_ptr(c->mem, base, (uint64_t)entries * esize);
}

static int check_regs(const struct nvme_ctrl *c, const struct img *im, char *err, size_t errlen)
{
    bool en = NVME_CC_EN(im->cc), rdy = im->csts & (1u << NVME_CSTS_RDY_SHIFT);
    bool cfs = im->csts & (1u << NVME_CSTS_CFS_SHIFT);
    if (!im->quiesced)
        return err_set(err, errlen,
                       "nvme: the source was saved with requests in storage (not drained)");
    if (im->cap != c->cap)
        return err_set(err, errlen, "nvme: CAP %#llx in the stream, %#llx here",
                       (unsigned long long)im->cap, (unsigned long long)c->cap);
    if (im->vs != c->vs)
        return err_set(err, errlen, "nvme: version register %#x in the stream, %#x here", im->vs,
                       c->vs);
    if ((im->aqa & ~0x0fff0fffu) || (im->asq & 0xfff) || (im->acq & 0xfff) || (im->csts & ~0xfu))
        return err_set(err, errlen, "nvme: reserved bits set in AQA, ASQ, ACQ or CSTS");
    if (rdy && !en)
        return err_set(err, errlen, "nvme: CSTS.RDY set while CC.EN is clear");
    if (en && !rdy && !cfs)
        return err_set(err, errlen, "nvme: CC.EN set but CSTS neither ready nor fatal");
    if (im->shutdown_pending && !NVME_CC_SHN(im->cc))
        return err_set(err, errlen, "nvme: shutdown pending without CC.SHN");
    if (rdy) {
        unsigned iosqes = NVME_CC_IOSQES(im->cc), iocqes = NVME_CC_IOCQES(im->cc);
        unsigned css = NVME_CC_CSS(im->cc);
        if ((css != NVME_CC_CSS_NVM && css != NVME_CC_CSS_CSI) || NVME_CC_MPS(im->cc) > 4 ||
            NVME_CC_AMS(im->cc) != NVME_CC_AMS_RR || (iosqes && iosqes != 6) ||
            (iocqes && iocqes != 4))
            return err_set(err, errlen,
                           "nvme: CC %#x is not a configuration this controller enables", im->cc);
    }
    return 0;
}

static int check_cq(const struct nvme_ctrl *c, const struct img *im, unsigned id, char *err,
                    size_t errlen)
{
    const struct img_cq *cq = &im->cq[id];
    uint64_t page = 4096ull << NVME_CC_MPS(im->cc);
    uint32_t mqes = NVME_CAP_MQES(c->cap);
    if (id && id > (im->feat.num_queues >> 16) + 1)
        return err_set(err, errlen, "nvme: CQ %u above the granted number of queues", id);
    if (cq->size < 2 || cq->size > mqes + 1)
        return err_set(err, errlen, "nvme: CQ %u size %u outside 2..%u (CAP.MQES)", id, cq->size,
                       mqes + 1);
    if (cq->head >= cq->size || cq->tail >= cq->size || cq->phase > 1)
        return err_set(err, errlen, "nvme: CQ %u head, tail or phase out of range", id);
    if (cq->vector >= NVME_NR_VECTORS || (!cq->ien && cq->vector) || (!id && !cq->ien))
        return err_set(err, errlen, "nvme: CQ %u interrupt vector %u out of range", id, cq->vector);
    if (id && NVME_CC_IOCQES(im->cc) != 4)
        return err_set(err, errlen, "nvme: I/O CQ %u exists but CC.IOCQES is not 4", id);
    if (!ring_ok(c, cq->base, cq->size, sizeof(struct nvme_cqe), page))
        return err_set(err, errlen,
                       "nvme: CQ %u at %#llx (%u entries) unaligned or outside guest RAM", id,
                       (unsigned long long)cq->base, cq->size);
    if (cq->unsignalled > 0x10000 ||
        (cq->armed && (!cq->ien || cq->remaining_us > MIG_MAX_COAL_US)))
        return err_set(err, errlen, "nvme: CQ %u interrupt coalescing state out of range", id);
    bool full = (cq->tail + 1) % cq->size == cq->head;
    if (cq->nr_parked && !full && !(im->csts & (1u << NVME_CSTS_CFS_SHIFT)))
        return err_set(err, errlen, "nvme: CQ %u has parked completions but is not full", id);
    for (uint32_t j = 0; j < cq->nr_parked; j++) {
        const struct img_parked *p = &cq->parked[j];
        if (p->sqid >= NVME_MAX_QUEUES || !im->sq[p->sqid].present || im->sq[p->sqid].cqid != id)
            return err_set(err, errlen,
                           "nvme: parked completion on CQ %u for SQ %u, which is not bound to it",
                           id, p->sqid);
        if (p->status > 0x7fff || p->sq_head != im->sq[p->sqid].head)
            return err_set(err, errlen, "nvme: parked completion on CQ %u: bad status or SQ head",
                           id);
    }
    return 0;
}

static int check_sq(const struct nvme_ctrl *c, const struct img *im, unsigned id, char *err,
                    size_t errlen)
{
    const struct img_sq *sq = &im->sq[id];
    uint64_t page = 4096ull << NVME_CC_MPS(im->cc);
    uint32_t mqes = NVME_CAP_MQES(c->cap);
    if (id && id > (im->feat.num_queues & 0xffff) + 1)
        return err_set(err, errlen, "nvme: SQ %u above the granted number of queues", id);
    if (sq->size < 2 || sq->size > mqes + 1)
        return err_set(err, errlen, "nvme: SQ %u size %u outside 2..%u (CAP.MQES)", id, sq->size,
                       mqes + 1);
    if (sq->head >= sq->size || sq->tail >= sq->size || sq->prio > 3)
        return err_set(err, errlen, "nvme: SQ %u head, tail or priority out of range", id);
    if (sq->cqid >= NVME_MAX_QUEUES || !im->cq[sq->cqid].present || (id == 0) != (sq->cqid == 0))
        return err_set(err, errlen, "nvme: SQ %u bound to CQ %u, which does not exist", id,
                       sq->cqid);
    if (id && NVME_CC_IOSQES(im->cc) != 6)
        return err_set(err, errlen, "nvme: I/O SQ %u exists but CC.IOSQES is not 6", id);
    if (!ring_ok(c, sq->base, sq->size, sizeof(struct nvme_sqe), page))
        return err_set(err, errlen,
                       "nvme: SQ %u at %#llx (%u entries) unaligned or outside guest RAM", id,
                       (unsigned long long)sq->base, sq->size);
    /* Parked completions (and AERs on the admin queue) occupy entries of the SQ's pool. */
    uint32_t used = id == 0 ? im->nr_aer : 0, pool = sq->size + (id == 0 ? NVME_AERL + 1 : 0);
    for (unsigned q = 0; q < NVME_MAX_QUEUES; q++)
        for (uint32_t j = 0; j < im->cq[q].nr_parked; j++)
            used += im->cq[q].parked[j].sqid == id;
    if (used > pool)
        return err_set(err, errlen, "nvme: SQ %u has %u parked requests, more than its %u entries",
                       id, used, pool);
    return 0;
}

static int check_queues(const struct nvme_ctrl *c, const struct img *im, char *err, size_t errlen)
{
    bool rdy = im->csts & (1u << NVME_CSTS_RDY_SHIFT);
    uint64_t page = 4096ull << NVME_CC_MPS(im->cc);
    if (rdy) {
        if (!im->cq[0].present || !im->sq[0].present || im->cq[0].base != im->acq ||
            im->sq[0].base != im->asq || im->cq[0].size != ((im->aqa >> 16) & 0xfff) + 1 ||
            im->sq[0].size != (im->aqa & 0xfff) + 1)
            return err_set(err, errlen, "nvme: admin queues do not match AQA/ASQ/ACQ");
    } else {
        for (unsigned q = 0; q < NVME_MAX_QUEUES; q++)
            if (im->cq[q].present || im->sq[q].present)
                return err_set(err, errlen, "nvme: queues exist while the controller is not ready");
        if (im->dbs || im->nr_aer || im->aen_count || im->nr_abort)
            return err_set(err, errlen, "nvme: queue state while the controller is not ready");
    }
    for (unsigned q = 0; q < NVME_MAX_QUEUES; q++) {
        if (im->cq[q].present && check_cq(c, im, q, err, errlen))
            return -1;
        if (im->sq[q].present && check_sq(c, im, q, err, errlen))
            return -1;
    }
    uint64_t need = 2ull * NVME_MAX_QUEUES * 4;
    if ((im->dbs == 0) != (im->eis == 0) ||
        (im->dbs && (!ring_ok(c, im->dbs, 1, need, page) || !ring_ok(c, im->eis, 1, need, page))))
        return err_set(err, errlen,
                       "nvme: shadow doorbell/EventIdx buffers %#llx/%#llx unaligned or outside "
                       "guest RAM",
                       (unsigned long long)im->dbs, (unsigned long long)im->eis);
    for (unsigned i = 0; i < im->nr_abort; i++)
        if (im->abort[i].sqid == 0 || im->abort[i].sqid >= NVME_MAX_QUEUES ||
            !im->sq[im->abort[i].sqid].present)
            return err_set(err, errlen, "nvme: pending abort for SQ %u, which does not exist",
                           im->abort[i].sqid);
    return 0;
}

static int check_events(const struct img *im, char *err, size_t errlen)
{
    if (im->aen_masked & ~0xffu)
        return err_set(err, errlen, "nvme: masked event types %#x out of range", im->aen_masked);
    for (unsigned i = 0; i < im->aen_count; i++) {
        uint32_t ev = im->aen_queue[i];
        if (ev >> 24 || (ev & 0xf8))
            return err_set(err, errlen, "nvme: queued event %#x malformed", ev);
        if (im->nr_aer && !(im->aen_masked & (1u << (ev & 7))))
            return err_set(err, errlen, "nvme: event %#x queued while an AER waits for it", ev);
    }
    for (unsigned i = 0; i < im->changed_count; i++) {
        uint32_t n = im->changed[i];
        if ((n == 0 || n > NVME_MAX_NAMESPACES) && !(n == 0xffffffffu && im->changed_count == 1))
            return err_set(err, errlen, "nvme: changed namespace list entry %#x invalid", n);
    }
    return 0;
}

static int check_misc(const struct nvme_ctrl *c, const struct img *im, char *err, size_t errlen)
{
    const struct nvme_features *f = &im->feat;
    uint32_t maxq = c->cfg.nr_io_queues - 1;
    bool bad = (f->power_mgmt & ~0xe0u) || (f->err_rec & ~0xffffu) || (f->int_coalescing >> 16) ||
               (f->num_queues & 0xffff) > maxq || (f->num_queues >> 16) > maxq ||
               (f->async_event_config & ~MIG_AEC_SUPPORTED);
    for (unsigned v = 0; v < NVME_NR_VECTORS; v++)
        if ((f->iv_config[v] & 0xffff) != v || f->iv_config[v] > 0x1ffff)
            bad = true;
    if (bad)
        return err_set(err, errlen, "nvme: feature values out of range");
    const struct nvme_smart *s = &im->smart;
    if (s->read_bytes_acc >= MIG_DATA_UNIT || s->write_bytes_acc >= MIG_DATA_UNIT ||
        s->power_cycles == 0)
        return err_set(err, errlen, "nvme: SMART counters inconsistent");
    if (im->errlog_next != im->error_count % NVME_ERROR_LOG_SIZE)
        return err_set(err, errlen, "nvme: error log position %u does not match count %llu",
                       im->errlog_next, (unsigned long long)im->error_count);
    bool fw_bad = im->fw_active < 1 || im->fw_active > MIG_FW_SLOTS ||
                  !im->fw_slot[im->fw_active - 1][0] || im->fw_pending > MIG_FW_SLOTS ||
                  im->fw_pending == im->fw_active ||
                  (im->fw_pending && !im->fw_slot[im->fw_pending - 1][0]);
    for (unsigned i = MIG_FW_SLOTS; i < 7 && !fw_bad; i++)
        for (unsigned j = 0; j < 8; j++)
            fw_bad |= im->fw_slot[i][j] != 0;
    if (fw_bad)
        return err_set(err, errlen, "nvme: firmware slots invalid");
    return 0;
}

int nvme_mig_check(const struct nvme_ctrl *c, const struct img *im, char *err, size_t errlen)
{
    if (check_regs(c, im, err, errlen) || check_ns(c, im, err, errlen) ||
        check_misc(c, im, err, errlen) || check_queues(c, im, err, errlen) ||
        check_events(im, err, errlen))
        return -1;
    return 0;
}
