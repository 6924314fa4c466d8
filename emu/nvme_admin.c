/*
 * Admin command dispatch, I/O queue creation and deletion, Abort, Asynchronous Event
 * Requests, Doorbell Buffer Config and Keep Alive. Identify, features, log pages and
 * namespace/firmware management live in their own files.
 */
#include <string.h>

#include "emu/nvme_int.h"

static uint16_t gen(uint8_t code)
{
    return NVME_STATUS(NVME_SCT_GENERIC, code) | NVME_SC_DNR;
}

static uint16_t spec(uint8_t code)
{
    return NVME_STATUS(NVME_SCT_CMD_SPECIFIC, code) | NVME_SC_DNR;
}

/* ---- asynchronous events ---- */

static void aen_deliver(struct nvme_ctrl *c)
{
    while (!TAILQ_EMPTY(&c->aer_reqs) && c->aen_count) {
        /* Oldest event whose type is not masked (reported, log page not read yet). */
        unsigned i;
        for (i = 0; i < c->aen_count; i++)
            if (!(c->aen_masked & (1u << (c->aen_queue[i] & 7))))
                break;
        if (i == c->aen_count)
            return;
        uint32_t ev = c->aen_queue[i];
        memmove(&c->aen_queue[i], &c->aen_queue[i + 1], (c->aen_count - i - 1) * sizeof(ev));
        c->aen_count--;
        c->aen_masked |= 1u << (ev & 7);
        struct nvme_req *r = TAILQ_FIRST(&c->aer_reqs);
        TAILQ_REMOVE(&c->aer_reqs, r, link);
        c->aer_outstanding--;
        r->result = ev;
        r->status = NVME_OK;
        nvme_req_complete(c, r);
    }
}

void nvme_aen_post(struct nvme_ctrl *c, uint8_t type, uint8_t info, uint8_t log_page)
{
    uint32_t ev = (uint32_t)(type & 7) | (uint32_t)info << 8 | (uint32_t)log_page << 16;
    /* While a type is masked the host has not read its log yet: the log page already
     * tells it everything, so another event of that type is not queued. */
    if (c->aen_masked & (1u << (type & 7)))
        return;
    for (unsigned i = 0; i < c->aen_count; i++)
        if (c->aen_queue[i] == ev)
            return;
    if (c->aen_count < NVME_MAX_AEN_QUEUED)
        c->aen_queue[c->aen_count++] = ev;
    aen_deliver(c);
}

void nvme_aen_clear(struct nvme_ctrl *c, uint8_t type)
{
    c->aen_masked &= ~(1u << (type & 7));
    aen_deliver(c);
}

void nvme_admin_reset(struct nvme_ctrl *c)
{
    struct nvme_req *r;
    while ((r = TAILQ_FIRST(&c->aer_reqs))) {
        TAILQ_REMOVE(&c->aer_reqs, r, link);
        nvme_req_recycle(c, r);
    }
    c->aer_outstanding = 0;
    c->aen_count = 0;
    c->aen_masked = 0;
    c->nr_abort_pending = 0;
}

static uint16_t async_event_request(struct nvme_ctrl *c, struct nvme_req *r)
{
    if (c->aer_outstanding > NVME_AERL)
        return spec(NVME_SC_ASYNC_LIMIT);
    TAILQ_INSERT_TAIL(&c->aer_reqs, r, link);
    c->aer_outstanding++;
    aen_deliver(c);
    return NVME_STATUS_ASYNC;
}

/* ---- abort ---- */

bool nvme_abort_match(struct nvme_ctrl *c, const struct nvme_req *r)
{
    for (unsigned i = 0; i < c->nr_abort_pending; i++)
        if (c->abort_pending[i].sqid == r->sq->id && c->abort_pending[i].cid == r->cmd.cid) {
            c->abort_pending[i] = c->abort_pending[--c->nr_abort_pending];
            return true;
        }
    return false;
}

static uint16_t abort_cmd(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint16_t sqid = r->cmd.cdw10 & 0xffff, cid = r->cmd.cdw10 >> 16;
    r->result = 1; /* "not aborted" unless we find it */
    if (sqid >= NVME_MAX_QUEUES || !c->sq[sqid].created)
        return NVME_OK;
    if (sqid == 0) {
        for (struct nvme_req *a = TAILQ_FIRST(&c->aer_reqs); a; a = TAILQ_NEXT(a, link))
            if (a->cmd.cid == cid) {
                TAILQ_REMOVE(&c->aer_reqs, a, link);
                c->aer_outstanding--;
                a->status = gen(NVME_SC_ABORT_REQ) & ~NVME_SC_DNR;
                nvme_req_complete(c, a);
                r->result = 0;
                return NVME_OK;
            }
        return NVME_OK;
    }
    /* Still in the SQ (not fetched yet)? Then it is aborted when we get to it. */
    struct nvme_sq *sq = &c->sq[sqid];
    for (uint32_t h = sq->head; h != sq->tail; h = (h + 1) % sq->size) {
        const struct nvme_sqe *e = gpa_ptr(c->mem, sq->base + (uint64_t)h * sizeof(*e), sizeof(*e));
        if (!e || le16toh(e->cid) != cid)
            continue;
        if (c->nr_abort_pending < sizeof(c->abort_pending) / sizeof(c->abort_pending[0])) {
            c->abort_pending[c->nr_abort_pending].sqid = sqid;
            c->abort_pending[c->nr_abort_pending].cid = cid;
            c->nr_abort_pending++;
            r->result = 0;
        }
        break;
    }
    return NVME_OK;
}

/* ---- queues ---- */

static unsigned granted_sqs(const struct nvme_ctrl *c)
{
    return (c->feat.num_queues & 0xffff) + 1;
}

static unsigned granted_cqs(const struct nvme_ctrl *c)
{
    return (c->feat.num_queues >> 16) + 1;
}

static uint16_t queue_base_check(struct nvme_ctrl *c, uint64_t base, uint32_t entries,
                                 uint32_t esize)
{
    if (base == 0 || (base & (nvme_page_size(c) - 1)))
        return gen(NVME_SC_INVALID_FIELD);
    if (!gpa_ptr(c->mem, base, (uint64_t)entries * esize))
        return gen(NVME_SC_DATA_XFER_ERROR);
    return NVME_OK;
}

static uint16_t create_cq(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint16_t qid = r->cmd.cdw10 & 0xffff;
    uint32_t size = (r->cmd.cdw10 >> 16) + 1;
    bool pc = r->cmd.cdw11 & 1, ien = r->cmd.cdw11 & 2;
    uint16_t iv = r->cmd.cdw11 >> 16;
    if (qid == 0 || qid >= NVME_MAX_QUEUES || qid > granted_cqs(c) || c->cq[qid].created)
        return spec(NVME_SC_QID_INVALID);
    if (size < 2 || size > NVME_CAP_MQES(c->cap) + 1u)
        return spec(NVME_SC_QUEUE_SIZE);
    if (!pc || NVME_CC_IOCQES(c->cc) != 4)
        return gen(NVME_SC_INVALID_FIELD);
    if (ien && (iv >= NVME_NR_VECTORS || (!c->msix_enabled && iv != 0)))
        return spec(NVME_SC_INVALID_VECTOR);
    uint16_t st = queue_base_check(c, r->cmd.dptr[0], size, sizeof(struct nvme_cqe));
    if (st)
        return st;
    nvme_cq_create(c, qid, r->cmd.dptr[0], size, ien, ien ? iv : 0);
    c->io_queues_created = true;
    return NVME_OK;
}

static uint16_t create_sq(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint16_t qid = r->cmd.cdw10 & 0xffff;
    uint32_t size = (r->cmd.cdw10 >> 16) + 1;
    bool pc = r->cmd.cdw11 & 1;
    uint8_t prio = (r->cmd.cdw11 >> 1) & 3;
    uint16_t cqid = r->cmd.cdw11 >> 16;
    if (qid == 0 || qid >= NVME_MAX_QUEUES || qid > granted_sqs(c) || c->sq[qid].created ||
        c->sq[qid].deleting)
        return spec(NVME_SC_QID_INVALID);
    if (cqid == 0 || cqid >= NVME_MAX_QUEUES || !c->cq[cqid].created)
        return spec(NVME_SC_CQ_INVALID);
    if (size < 2 || size > NVME_CAP_MQES(c->cap) + 1u)
        return spec(NVME_SC_QUEUE_SIZE);
    if (!pc || NVME_CC_IOSQES(c->cc) != 6)
        return gen(NVME_SC_INVALID_FIELD);
    uint16_t st = queue_base_check(c, r->cmd.dptr[0], size, sizeof(struct nvme_sqe));
    if (st)
        return st;
    if (nvme_sq_create(c, qid, r->cmd.dptr[0], size, cqid, prio))
        return gen(NVME_SC_INTERNAL);
    c->io_queues_created = true;
    return NVME_OK;
}

static uint16_t delete_sq(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint16_t qid = r->cmd.cdw10 & 0xffff;
    if (qid == 0 || qid >= NVME_MAX_QUEUES || !c->sq[qid].created)
        return spec(NVME_SC_QID_INVALID);
    /* Drop aborts aimed at this queue: its commands are all aborted now. */
    for (unsigned i = 0; i < c->nr_abort_pending;)
        if (c->abort_pending[i].sqid == qid)
            c->abort_pending[i] = c->abort_pending[--c->nr_abort_pending];
        else
            i++;
    nvme_sq_delete(c, qid);
    if (c->sq[qid].deleting) {
        /* Completes when storage has returned every request of the queue. */
        c->sq[qid].del_req = r;
        return NVME_STATUS_ASYNC;
    }
    return NVME_OK;
}

static uint16_t delete_cq(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint16_t qid = r->cmd.cdw10 & 0xffff;
    if (qid == 0 || qid >= NVME_MAX_QUEUES || !c->cq[qid].created)
        return spec(NVME_SC_QID_INVALID);
    if (c->cq[qid].nr_sqs)
        return spec(NVME_SC_INVALID_QUEUE);
    nvme_cq_delete(c, qid);
    return NVME_OK;
}

/* ---- doorbell buffer config ---- */

static uint16_t dbbuf_config(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint64_t dbs = r->cmd.dptr[0], eis = r->cmd.dptr[1];
    uint64_t ps = nvme_page_size(c);
    uint64_t need = 2ull * NVME_MAX_QUEUES * 4;
    if (!dbs || !eis || (dbs & (ps - 1)) || (eis & (ps - 1)) || !gpa_ptr(c->mem, dbs, need) ||
        !gpa_ptr(c->mem, eis, need))
        return gen(NVME_SC_INVALID_FIELD);
    nvme_shadow_set(c, dbs, eis);
    nvme_dbbuf_attach(c);
    return NVME_OK;
}

/* ---- dispatch ---- */

void nvme_admin_exec(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint16_t st;
    if (r->cmd.flags & 0xc3) {
        st = gen(NVME_SC_INVALID_FIELD); /* SGL (PSDT) or fused on the admin queue */
    } else {
        switch (r->cmd.opcode) {
        case nvme_admin_delete_sq:
            st = delete_sq(c, r);
            break;
        case nvme_admin_create_sq:
            st = create_sq(c, r);
            break;
        case nvme_admin_get_log_page:
            st = nvme_adm_get_log_page(c, r);
            break;
        case nvme_admin_delete_cq:
            st = delete_cq(c, r);
            break;
        case nvme_admin_create_cq:
            st = create_cq(c, r);
            break;
        case nvme_admin_identify:
            st = nvme_adm_identify(c, r);
            break;
        case nvme_admin_abort_cmd:
            st = abort_cmd(c, r);
            break;
        case nvme_admin_set_features:
            st = nvme_adm_set_features(c, r);
            break;
        case nvme_admin_get_features:
            st = nvme_adm_get_features(c, r);
            break;
        case nvme_admin_async_event:
            st = async_event_request(c, r);
            break;
        case nvme_admin_ns_mgmt:
            st = nvme_adm_ns_mgmt(c, r);
            break;
        case nvme_admin_fw_commit:
            st = nvme_adm_fw_commit(c, r);
            break;
        case nvme_admin_fw_download:
            st = nvme_adm_fw_download(c, r);
            break;
        case nvme_admin_dev_self_test:
            st = nvme_adm_self_test(c, r);
            break;
        case nvme_admin_ns_attach:
            st = nvme_adm_ns_attach(c, r);
            break;
        case nvme_admin_keep_alive:
            st = NVME_OK; /* accepted; the timer is not enforced (PCIe hosts never set it) */
            break;
        case nvme_admin_dbbuf:
            st = dbbuf_config(c, r);
            break;
        case nvme_admin_format_nvm:
            st = nvme_adm_format(c, r);
            break;
        default:
            st = gen(NVME_SC_INVALID_OPCODE);
            break;
        }
    }
    if (st == NVME_STATUS_ASYNC)
        return;
    r->status = st;
    if (st != NVME_OK)
        nvme_error_log_add(c, r, st, 0, r->cmd.nsid);
    nvme_req_complete(c, r);
}
