/*
 * Live migration of the NVMe controller: nvme_ctrl_save() serialises a quiesced controller
 * (storage drained: only completions parked behind a full CQ and outstanding AERs remain),
 * nvme_ctrl_load() decodes a stream into a temporary image, validates every field against
 * this controller (CAP, guest RAM, the namespaces configured here), and only then replaces
 * the controller's state. nvme_ctrl_post_load() re-drives interrupts and wakes the I/O
 * thread once the rest of the machine (PCI config, MSI-X table) has been restored.
 *
 * Stream (little-endian, through util/buf.h), version NVME_MIG_VERSION:
 *   u16 version, u8 quiesced
 *   registers: cap u64, vs, intms, cc, csts, aqa u32, asq, acq u64, msix u8,
 *              io_queues_created u8, shutdown_pending u8
 *   namespaces: u8 count, then per namespace nsid u32, attached u8, read_only u8,
 *              lba_shift u8, bytes u64, nsze u64, nguid[16], eui64[8], uuid[16],
 *              u32 nr_bad, {slba u64, nlb u64}...
 *   dbbuf_dbs u64, dbbuf_eis u64
 *   CQs: u8 count, per CQ id u16, base u64, size, head, tail u32, phase u8, ien u8,
 *        vector u16, unsignalled u32, irq_pending u8, armed u8, remaining_us u64,
 *        u32 nr_parked, {sqid u16, cid u16, status u16, sq_head u32, result u32}...
 *   SQs: u8 count, per SQ id u16, base u64, size, head, tail u32, cqid u16, prio u8
 *   AERs: u8 count, cid u16...; events: u8 count, u32...; aen_masked u32;
 *         changed ns: u16 count, u32...; aborts: u8 count, {sqid u16, cid u16}...
 *   features, SMART, error log, firmware, self-test log, power-on time (see put_misc)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu/nvme_migrate_int.h"
#include "util/err.h"
#include "util/log.h"

/* ---- save ---- */

static void put_features(struct mig_buf *b, const struct nvme_features *f, uint64_t now)
{
    mig_put_u32(b, f->arbitration);
    mig_put_u32(b, f->power_mgmt);
    for (int s = 0; s < 9; s++)
        for (int t = 0; t < 2; t++)
            mig_put_u16(b, f->temp_thresh[s][t]);
    mig_put_u32(b, f->err_rec);
    mig_put_u8(b, f->vwc);
    mig_put_u32(b, f->num_queues);
    mig_put_u32(b, f->int_coalescing);
    for (int v = 0; v < NVME_NR_VECTORS; v++)
        mig_put_u32(b, f->iv_config[v]);
    mig_put_u32(b, f->async_event_config);
    /* The host-set timestamp as its current value: it keeps running on the destination. */
    mig_put_u8(b, f->timestamp_set_at_ms != 0);
    mig_put_u64(b, f->timestamp_set_at_ms ? f->timestamp_ms + (now - f->timestamp_set_at_ms) : 0);
    mig_put_bytes(b, f->host_behavior, sizeof(f->host_behavior));
    mig_put_u32(b, f->keep_alive_ms);
}

static void put_misc(struct mig_buf *b, const struct nvme_ctrl *c, uint64_t now)
{
    const struct nvme_smart *s = &c->smart;
    put_features(b, &c->feat, now);
    const uint64_t sm[] = {s->data_units_read,   s->data_units_written, s->host_reads,
                           s->host_writes,       s->busy_minutes,       s->power_cycles,
                           s->power_on_seconds,  s->unsafe_shutdowns,   s->media_errors,
                           s->error_log_entries, s->read_bytes_acc,     s->write_bytes_acc};
    for (size_t i = 0; i < sizeof(sm) / sizeof(sm[0]); i++)
        mig_put_u64(b, sm[i]);
    mig_put_u64(b, now - c->created_at_ms); /* power-on time since creation */
    mig_put_u32(b, c->errlog_next);
    mig_put_u64(b, c->error_count);
    mig_put_bytes(b, c->errlog, sizeof(c->errlog));
    mig_put_bytes(b, c->fw_slot, sizeof(c->fw_slot));
    mig_put_u8(b, c->fw_active_slot);
    mig_put_u8(b, c->fw_pending_slot); /* a downloaded, uncommitted image is dropped */
    mig_put_bytes(b, c->selftest_log, sizeof(c->selftest_log));
}

static void put_cq(struct mig_buf *b, const struct nvme_cq *cq, uint64_t now_us)
{
    mig_put_u16(b, cq->id);
    mig_put_u64(b, cq->base);
    mig_put_u32(b, cq->size);
    mig_put_u32(b, cq->head);
    mig_put_u32(b, cq->tail);
    mig_put_u8(b, cq->phase);
    mig_put_u8(b, cq->ien);
    mig_put_u16(b, cq->vector);
    mig_put_u32(b, cq->unsignalled);
    mig_put_u8(b, cq->irq_pending);
    /* Coalescing deadline as time remaining: monotonic clocks differ between hosts. */
    mig_put_u8(b, cq->irq_deadline_us != 0);
    mig_put_u64(b, cq->irq_deadline_us > now_us ? cq->irq_deadline_us - now_us : 0);
    mig_put_u32(b, cq->parked_count);
    const struct nvme_req *r;
    TAILQ_FOREACH(r, &cq->parked, link)
    {
        mig_put_u16(b, r->sq->id);
        mig_put_u16(b, r->cmd.cid);
        mig_put_u16(b, r->status);
        mig_put_u32(b, r->sq->head); /* what the CQE reports when posted */
        mig_put_u32(b, r->result);
    }
}

static bool ctrl_quiesced(const struct nvme_ctrl *c)
{
    unsigned parked = 0, aers = 0;
    const struct nvme_req *r;
    for (int i = 0; i < NVME_MAX_QUEUES; i++) {
        if (c->sq[i].deleting)
            return false;
        TAILQ_FOREACH(r, &c->cq[i].parked, link)
        parked++;
    }
    TAILQ_FOREACH(r, &c->aer_reqs, link)
    aers++;
    return !c->resetting && c->shutdown_flushes == 0 && aers == c->aer_outstanding &&
           nvme_reqs_outstanding(c) == parked + aers;
}

void nvme_ctrl_save(struct nvme_ctrl *c, struct mig_buf *b)
{
    pthread_mutex_lock(&c->lock);
    uint64_t now = nvme_now_ms(), now_us = nvme_now_us();
    bool quiesced = ctrl_quiesced(c);
    if (!quiesced) /* the destination refuses this stream: no half state is resumed */
        warn_msg("nvme: saving a controller with requests still in storage (not drained)");
    mig_put_u16(b, NVME_MIG_VERSION);
    mig_put_u8(b, quiesced);
    mig_put_u64(b, c->cap);
    mig_put_u32(b, c->vs);
    mig_put_u32(b, c->intms);
    mig_put_u32(b, c->cc);
    mig_put_u32(b, c->csts);
    mig_put_u32(b, c->aqa);
    mig_put_u64(b, c->asq);
    mig_put_u64(b, c->acq);
    mig_put_u8(b, c->msix_enabled);
    mig_put_u8(b, c->io_queues_created);
    mig_put_u8(b, c->shutdown_pending);

    uint8_t nr = 0;
    for (int i = 0; i < NVME_MAX_NAMESPACES; i++)
        nr += c->ns[i].present;
    mig_put_u8(b, nr);
    for (int i = 0; i < NVME_MAX_NAMESPACES; i++) {
        const struct nvme_ns *ns = &c->ns[i];
        if (!ns->present)
            continue;
        mig_put_u32(b, ns->nsid);
        mig_put_u8(b, ns->attached);
        mig_put_u8(b, ns->read_only);
        mig_put_u8(b, (uint8_t)ns->lba_shift);
        mig_put_u64(b, ns->blk->size);
        mig_put_u64(b, ns->nsze);
        mig_put_bytes(b, ns->nguid, sizeof(ns->nguid));
        mig_put_bytes(b, ns->eui64, sizeof(ns->eui64));
        mig_put_bytes(b, ns->uuid, sizeof(ns->uuid));
        mig_put_u32(b, (uint32_t)ns->nr_bad);
        for (int j = 0; j < ns->nr_bad; j++) {
            mig_put_u64(b, ns->bad[j].slba);
            mig_put_u64(b, ns->bad[j].nlb);
        }
    }
    mig_put_u64(b, c->dbbuf_dbs);
    mig_put_u64(b, c->dbbuf_eis);

    uint8_t ncq = 0, nsq = 0;
    for (int i = 0; i < NVME_MAX_QUEUES; i++) {
        ncq += c->cq[i].created;
        nsq += c->sq[i].created;
    }
    mig_put_u8(b, ncq);
    for (int i = 0; i < NVME_MAX_QUEUES; i++)
        if (c->cq[i].created)
            put_cq(b, &c->cq[i], now_us);
    mig_put_u8(b, nsq);
    for (int i = 0; i < NVME_MAX_QUEUES; i++) {
        const struct nvme_sq *sq = &c->sq[i];
        if (!sq->created)
            continue;
        mig_put_u16(b, sq->id);
        mig_put_u64(b, sq->base);
        mig_put_u32(b, sq->size);
        mig_put_u32(b, sq->head);
        mig_put_u32(b, sq->tail);
        mig_put_u16(b, sq->cqid);
        mig_put_u8(b, sq->prio);
    }

    const struct nvme_req *r;
    mig_put_u8(b, (uint8_t)c->aer_outstanding);
    TAILQ_FOREACH(r, &c->aer_reqs, link)
    mig_put_u16(b, r->cmd.cid);
    mig_put_u8(b, (uint8_t)c->aen_count);
    for (unsigned i = 0; i < c->aen_count; i++)
        mig_put_u32(b, c->aen_queue[i]);
    mig_put_u32(b, c->aen_masked);
    mig_put_u16(b, (uint16_t)c->changed_ns_count);
    for (unsigned i = 0; i < c->changed_ns_count; i++)
        mig_put_u32(b, c->changed_ns[i]);
    mig_put_u8(b, (uint8_t)c->nr_abort_pending);
    for (unsigned i = 0; i < c->nr_abort_pending; i++) {
        mig_put_u16(b, c->abort_pending[i].sqid);
        mig_put_u16(b, c->abort_pending[i].cid);
    }
    put_misc(b, c, now);
    pthread_mutex_unlock(&c->lock);
}

/* ---- load: commit ---- */

/* Everything that can fail is allocated before the controller is touched. */
struct fresh {
    struct nvme_req *pool[NVME_MAX_QUEUES];
    struct nvme_bad_range *bad[NVME_MAX_NAMESPACES];
};

static bool fresh_alloc(const struct img *im, struct fresh *fr)
{
    memset(fr, 0, sizeof(*fr));
    for (int q = 0; q < NVME_MAX_QUEUES; q++)
        if (im->sq[q].present &&
            !(fr->pool[q] =
                  calloc(im->sq[q].size + (q == 0 ? NVME_AERL + 1 : 0), sizeof(struct nvme_req))))
            goto oom;
    for (int i = 0; i < NVME_MAX_NAMESPACES; i++)
        if (im->ns[i].nr_bad &&
            !(fr->bad[i] = malloc(sizeof(struct nvme_bad_range) * im->ns[i].nr_bad)))
            goto oom;
    return true;
oom:
    for (int q = 0; q < NVME_MAX_QUEUES; q++)
        free(fr->pool[q]);
    for (int i = 0; i < NVME_MAX_NAMESPACES; i++)
        free(fr->bad[i]);
    return false;
}

/* Takes a request from sq's pool for a parked completion or an AER. */
static struct nvme_req *take_req(struct nvme_sq *sq, uint16_t cid)
{
    struct nvme_req *r = TAILQ_FIRST(&sq->free);
    TAILQ_REMOVE(&sq->free, r, link); /* validated: the pool has room */
    sq->inflight++;
    memset(&r->cmd, 0, sizeof(r->cmd));
    r->cmd.cid = cid;
    nvme_req_clear(r);
    return r;
}

static void apply_queues(struct nvme_ctrl *c, const struct img *im, struct fresh *fr)
{
    uint64_t now_us = nvme_now_us();
    nvme_shadow_set(c, im->dbs, im->eis);
    for (uint16_t q = 0; q < NVME_MAX_QUEUES; q++) {
        const struct img_cq *s = &im->cq[q];
        struct nvme_cq *cq = &c->cq[q];
        if (!s->present)
            continue;
        cq->base = s->base;
        cq->size = s->size;
        cq->head = s->head;
        cq->tail = s->tail;
        cq->phase = s->phase;
        cq->ien = s->ien;
        cq->vector = s->vector;
        cq->nr_sqs = 0;
        TAILQ_INIT(&cq->parked);
        cq->parked_count = 0;
        /* Shadow addresses are derived as on creation; the buffers themselves are guest
         * RAM (already migrated) and are not re-seeded: that could lose a newer tail. */
        cq->db_addr = im->dbs && q ? im->dbs + (2ull * q + 1) * 4 : 0;
        cq->ei_addr = im->dbs && q ? im->eis + (2ull * q + 1) * 4 : 0;
        cq->unsignalled = s->unsignalled;
        cq->irq_pending = s->irq_pending;
        cq->irq_deadline_us = s->armed ? now_us + s->remaining_us + 1 : 0;
        cq->created = true;
    }
    for (uint16_t q = 0; q < NVME_MAX_QUEUES; q++) {
        const struct img_sq *s = &im->sq[q];
        struct nvme_sq *sq = &c->sq[q];
        if (!s->present)
            continue;
        uint32_t pool = s->size + (q == 0 ? NVME_AERL + 1 : 0);
        sq->reqs = fr->pool[q];
        fr->pool[q] = NULL;
        TAILQ_INIT(&sq->free);
        for (uint32_t i = 0; i < pool; i++) {
            sq->reqs[i].ctrl = c;
            sq->reqs[i].sq = sq;
            TAILQ_INSERT_TAIL(&sq->free, &sq->reqs[i], link);
        }
        sq->base = s->base;
        sq->size = s->size;
        sq->head = s->head;
        sq->tail = s->tail;
        sq->cqid = s->cqid;
        sq->prio = s->prio;
        sq->inflight = 0;
        sq->db_addr = im->dbs && q ? im->dbs + 2ull * q * 4 : 0;
        sq->ei_addr = im->dbs && q ? im->eis + 2ull * q * 4 : 0;
        sq->deleting = false;
        sq->del_req = NULL;
        sq->created = true;
        c->cq[s->cqid].nr_sqs++;
    }
    for (uint16_t q = 0; q < NVME_MAX_QUEUES; q++)
        for (uint32_t j = 0; j < im->cq[q].nr_parked; j++) {
            const struct img_parked *p = &im->cq[q].parked[j];
            struct nvme_req *r = take_req(&c->sq[p->sqid], p->cid);
            r->status = p->status;
            r->result = p->result;
            TAILQ_INSERT_TAIL(&c->cq[q].parked, r, link);
            c->cq[q].parked_count++;
        }
    for (unsigned i = 0; i < im->nr_aer; i++) {
        struct nvme_req *r = take_req(&c->sq[0], im->aer_cid[i]);
        r->cmd.opcode = nvme_admin_async_event;
        TAILQ_INSERT_TAIL(&c->aer_reqs, r, link);
    }
    c->aer_outstanding = im->nr_aer;
}

static void apply(struct nvme_ctrl *c, const struct img *im, struct fresh *fr)
{
    /* Drop whatever this controller held (a fresh one holds nothing). */
    nvme_admin_reset(c);
    nvme_queues_reset(c);
    c->vs = im->vs;
    c->intms = im->intms;
    c->cc = im->cc;
    c->csts = im->csts;
    c->aqa = im->aqa;
    c->asq = im->asq;
    c->acq = im->acq;
    c->msix_enabled = im->msix;
    c->io_queues_created = im->io_queues_created;
    c->shutdown_pending = im->shutdown_pending;
    c->shutdown_flushes = 0;
    /* Readiness (nvme_ctrl_ready) derives from CSTS and this flag: nothing else is cached,
     * so doorbells work at once when CC.EN/CSTS.RDY say so (cf. Propolis #981). */
    c->resetting = false;
    for (int i = 0; i < NVME_MAX_NAMESPACES; i++) {
        const struct img_ns *s = &im->ns[i];
        struct nvme_ns *ns = &c->ns[i];
        if (!s->present)
            continue;
        nvme_ns_bad_clear(ns);
        ns->attached = s->attached;
        ns->lba_shift = s->lba_shift;
        ns->nsze = s->nsze;
        memcpy(ns->nguid, s->nguid, sizeof(ns->nguid));
        memcpy(ns->eui64, s->eui64, sizeof(ns->eui64));
        memcpy(ns->uuid, s->uuid, sizeof(ns->uuid));
        if (s->nr_bad) {
            ns->bad = fr->bad[i];
            fr->bad[i] = NULL;
            memcpy(ns->bad, s->bad, sizeof(*ns->bad) * s->nr_bad);
            ns->nr_bad = (int)s->nr_bad;
        }
    }
    apply_queues(c, im, fr);
    memcpy(c->aen_queue, im->aen_queue, sizeof(c->aen_queue));
    c->aen_count = im->aen_count;
    c->aen_masked = im->aen_masked;
    memcpy(c->changed_ns, im->changed, sizeof(c->changed_ns));
    c->changed_ns_count = im->changed_count;
    memcpy(c->abort_pending, im->abort, sizeof(c->abort_pending));
    c->nr_abort_pending = im->nr_abort;

    uint64_t now = nvme_now_ms();
    c->feat = im->feat;
    c->feat.timestamp_ms = im->ts_set ? im->ts_now : 0;
    c->feat.timestamp_set_at_ms = im->ts_set ? (now ? now : 1) : 0;
    c->smart = im->smart;
    if (now >= im->elapsed_ms) {
        c->created_at_ms = now - im->elapsed_ms;
    } else { /* this host booted more recently than the controller ran */
        c->smart.power_on_seconds += im->elapsed_ms / 1000;
        c->created_at_ms = now;
    }
    memcpy(c->errlog, im->errlog, sizeof(c->errlog));
    c->errlog_next = im->errlog_next;
    c->error_count = im->error_count;
    memcpy(c->fw_slot, im->fw_slot, sizeof(c->fw_slot));
    c->fw_active_slot = im->fw_active;
    c->fw_pending_slot = im->fw_pending;
    free(c->fw_image);
    c->fw_image = NULL;
    c->fw_image_len = 0;
    memcpy(c->selftest_log, im->selftest, sizeof(c->selftest_log));
}

/* Storage requests, a reset or shutdown flushes in progress on the destination. */
static bool dest_busy(const struct nvme_ctrl *c)
{
    unsigned held = c->aer_outstanding;
    for (int i = 0; i < NVME_MAX_QUEUES; i++)
        held += c->cq[i].parked_count;
    for (int i = 0; i < NVME_MAX_QUEUES; i++)
        if (c->sq[i].deleting)
            return true;
    return c->resetting || c->shutdown_flushes || nvme_reqs_outstanding(c) != held;
}

int nvme_ctrl_load(struct nvme_ctrl *c, struct mig_cursor *cur, char *err, size_t errlen)
{
    struct img *im = calloc(1, sizeof(*im));
    if (!im)
        return err_set(err, errlen, "nvme: out of memory loading the state");
    pthread_mutex_lock(&c->lock);
    int rc = -1;
    struct fresh fr;
    if (dest_busy(c))
        err_set(err, errlen, "nvme: the destination controller is busy (requests in storage)");
    else if (nvme_mig_decode(cur, im, err, errlen) == 0 &&
             nvme_mig_check(c, im, err, errlen) == 0) {
        if (!fresh_alloc(im, &fr)) {
            err_set(err, errlen, "nvme: out of memory restoring the controller");
        } else {
            apply(c, im, &fr);
            rc = 0;
        }
    }
    pthread_mutex_unlock(&c->lock);
    nvme_mig_img_free(im);
    return rc;
}

void nvme_ctrl_post_load(struct nvme_ctrl *c)
{
    pthread_mutex_lock(&c->lock);
    /* INTx: the destination's line starts low; drive the level the state implies. */
    c->intx_level = -1;
    nvme_irq_intx_update(c);
    /* MSI-X: entries the host has not consumed may belong to an interrupt that was lost
     * with the source (in flight at pause): signal again. A spurious interrupt only makes
     * the driver look at an unchanged CQ; the PCI layer applies masks and the PBA. */
    if (c->msix_enabled && c->ops->msix_notify)
        for (int i = 0; i < NVME_MAX_QUEUES; i++) {
            const struct nvme_cq *cq = &c->cq[i];
            if (cq->created && cq->ien && cq->irq_pending && cq->head != cq->tail)
                c->ops->msix_notify(c->opaque, cq->vector);
        }
    /* Commands the host queued before the pause, parked completions and shutdown work
     * are picked up by the next nvme_ctrl_process(). */
    if (c->ops->kick)
        c->ops->kick(c->opaque);
    pthread_mutex_unlock(&c->lock);
}
