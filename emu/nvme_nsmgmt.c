/*
 * Namespace Management (create/delete backing files in cfg.ns_dir), Namespace Attachment,
 * Format NVM (zeroes the namespace through storage), Firmware Image Download/Commit and
 * Device Self-test.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "emu/nvme_int.h"

#define NVME_CNTLID  0
#define FW_IMAGE_MAX (16u << 20)
#define FW_SLOTS     3

static uint16_t gen(uint8_t code)
{
    return NVME_STATUS(NVME_SCT_GENERIC, code) | NVME_SC_DNR;
}

static uint16_t spec(uint8_t code)
{
    return NVME_STATUS(NVME_SCT_CMD_SPECIFIC, code) | NVME_SC_DNR;
}

/* Namespace Not Ready without DNR: the host may retry once the namespace is idle. */
#define NS_BUSY NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_NS_NOT_READY)

/* ---- Namespace Management ---- */

static uint16_t ns_create(struct nvme_ctrl *c, struct nvme_req *r)
{
    if (!c->cfg.ns_dir)
        return gen(NVME_SC_INVALID_FIELD);
    struct nvme_id_ns *id = calloc(1, sizeof(*id));
    if (!id)
        return gen(NVME_SC_INTERNAL);
    uint16_t st = nvme_dptr_from_guest(c, r, id, sizeof(*id));
    uint64_t nsze = le64toh(id->nsze), ncap = le64toh(id->ncap);
    unsigned lbaf = (id->flbas & 0xf) | ((id->flbas >> 5) & 3) << 4;
    uint8_t dps = id->dps;
    free(id);
    if (st)
        return st;
    if (lbaf > 1)
        return spec(NVME_SC_INVALID_FORMAT);
    if (dps)
        return gen(NVME_SC_INVALID_FIELD);
    uint32_t shift = lbaf ? 12 : 9;
    if (nsze == 0 || nsze > (1ull << 50) >> shift)
        return spec(NVME_SC_NS_INSUFFICIENT_CAP);
    if (ncap != nsze)
        return spec(NVME_SC_THIN_PROV_NOT_SUPP);
    uint32_t nsid = 0;
    for (uint32_t i = 1; i <= NVME_MAX_NAMESPACES && !nsid; i++)
        if (!c->ns[i - 1].present)
            nsid = i;
    if (!nsid)
        return spec(NVME_SC_NS_ID_UNAVAILABLE);

    char path[4096];
    snprintf(path, sizeof(path), "%s/nvmevm-%s-ns%u.img", c->cfg.ns_dir, c->cfg.serial, nsid);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return gen(NVME_SC_INTERNAL);
    int rc = ftruncate(fd, (off_t)(nsze << shift));
    close(fd);
    char err[256];
    struct blk_open_opts o = {.cache = BLK_CACHE_WRITEBACK, .lock = true};
    struct blk_dev *blk = rc == 0 ? blk_open(path, &o, err, sizeof(err)) : NULL;
    if (!blk || nvme_ns_setup(c, nsid, blk, shift, true) < 0) {
        if (blk)
            blk_close(blk);
        unlink(path);
        return spec(NVME_SC_NS_INSUFFICIENT_CAP);
    }
    c->ns[nsid - 1].attached = false; /* created namespaces start detached */
    r->result = nsid;
    return NVME_OK;
}

/* Namespaces the VMM was given are the guest's disks: deleting one would leave the VM
 * without it (re-creating fails without a namespace directory, migration refuses the
 * changed configuration), so only created or explicitly deletable ones may go. */
static uint16_t ns_delete_check(const struct nvme_ns *ns)
{
    if (!ns->deletable)
        return gen(NVME_SC_INVALID_FIELD);
    if (nvme_ns_busy(ns))
        return NS_BUSY;
    return NVME_OK;
}

static void ns_delete_one(struct nvme_ctrl *c, struct nvme_ns *ns)
{
    uint32_t nsid = ns->nsid;
    bool was_attached = ns->attached;
    char *path = ns->owns_blk && ns->blk->path ? strdup(ns->blk->path) : NULL;
    nvme_ns_teardown(c, ns);
    if (path)
        unlink(path);
    free(path);
    if (was_attached)
        nvme_ns_changed(c, nsid);
}

uint16_t nvme_adm_ns_mgmt(struct nvme_ctrl *c, struct nvme_req *r)
{
    unsigned sel = r->cmd.cdw10 & 0xf;
    if (sel == 0)
        return ns_create(c, r);
    if (sel != 1)
        return gen(NVME_SC_INVALID_FIELD);
    uint32_t nsid = r->cmd.nsid;
    if (nsid == NVME_NSID_ALL) {
        /* All or nothing: check every namespace before deleting any. */
        for (int i = 0; i < NVME_MAX_NAMESPACES; i++) {
            uint16_t st = c->ns[i].present ? ns_delete_check(&c->ns[i]) : NVME_OK;
            if (st)
                return st;
        }
        for (int i = 0; i < NVME_MAX_NAMESPACES; i++)
            if (c->ns[i].present)
                ns_delete_one(c, &c->ns[i]);
        return NVME_OK;
    }
    if (nsid == 0 || nsid > NVME_MAX_NAMESPACES || !c->ns[nsid - 1].present)
        return gen(NVME_SC_INVALID_FIELD);
    uint16_t st = ns_delete_check(&c->ns[nsid - 1]);
    if (st)
        return st;
    ns_delete_one(c, &c->ns[nsid - 1]);
    return NVME_OK;
}

/* ---- Namespace Attachment ---- */

uint16_t nvme_adm_ns_attach(struct nvme_ctrl *c, struct nvme_req *r)
{
    unsigned sel = r->cmd.cdw10 & 0xf;
    uint32_t nsid = r->cmd.nsid;
    if (sel > 1)
        return gen(NVME_SC_INVALID_FIELD);
    if (nsid == 0 || nsid > NVME_MAX_NAMESPACES || !c->ns[nsid - 1].present)
        return gen(NVME_SC_INVALID_FIELD);
    uint16_t list[2048];
    uint16_t st = nvme_dptr_from_guest(c, r, list, sizeof(list));
    if (st)
        return st;
    unsigned n = le16toh(list[0]);
    bool ours = false;
    for (unsigned i = 1; i <= n && i < 2048; i++)
        if (le16toh(list[i]) == NVME_CNTLID)
            ours = true;
    if (n == 0 || n > 2047 || !ours)
        return spec(NVME_SC_CTRL_LIST_INVALID);
    struct nvme_ns *ns = &c->ns[nsid - 1];
    if (sel == 0 && ns->attached)
        return spec(NVME_SC_NS_ALREADY_ATTACHED);
    if (sel == 1 && !ns->attached)
        return spec(NVME_SC_NS_NOT_ATTACHED);
    ns->attached = sel == 0;
    nvme_ns_changed(c, nsid);
    return NVME_OK;
}

/* ---- Format NVM ---- */

static void format_done(struct blk_req *b, int64_t res)
{
    struct nvme_req *r = b->opaque;
    if (res < 0 && r->status == NVME_OK)
        r->status = gen(NVME_SC_INTERNAL);
    if (--r->blk_pending > 0)
        return;
    for (int i = 0; i < NVME_MAX_NAMESPACES; i++)
        if (r->ctrl->ns[i].format_req == r)
            r->ctrl->ns[i].format_req = NULL;
    free(r->bounce);
    r->bounce = NULL;
    if (r->status)
        nvme_error_log_add(r->ctrl, r, r->status, 0, r->cmd.nsid);
    nvme_req_complete(r->ctrl, r);
}

uint16_t nvme_adm_format(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint32_t d = r->cmd.cdw10;
    unsigned lbaf = (d & 0xf) | ((d >> 12) & 3) << 4;
    unsigned mset = (d >> 4) & 1, pi = (d >> 5) & 7, ses = (d >> 9) & 7;
    if (lbaf > 1 || mset || pi)
        return spec(NVME_SC_INVALID_FORMAT);
    if (ses > 1)
        return gen(NVME_SC_INVALID_FIELD); /* cryptographic erase: not supported */
    uint32_t shift = lbaf ? 12 : 9;
    struct nvme_ns *targets[NVME_MAX_NAMESPACES];
    unsigned n = 0;
    for (int i = 0; i < NVME_MAX_NAMESPACES; i++) {
        struct nvme_ns *ns = &c->ns[i];
        if (!ns->present || !ns->attached)
            continue;
        if (r->cmd.nsid == NVME_NSID_ALL || r->cmd.nsid == ns->nsid)
            targets[n++] = ns;
    }
    if (n == 0)
        return gen(NVME_SC_INVALID_NS);
    for (unsigned i = 0; i < n; i++) {
        if ((1u << shift) < targets[i]->blk->logical_block)
            return spec(NVME_SC_INVALID_FORMAT);
        if (targets[i]->read_only)
            return gen(NVME_SC_NS_WRITE_PROTECTED);
    }
    /* Commands in flight computed their offsets and buffers with the current LBA size
     * (Linux freezes its queues around Format, so only a misbehaving host gets here). */
    for (unsigned i = 0; i < n; i++)
        if (nvme_ns_busy(targets[i]))
            return NS_BUSY;
    struct blk_req *reqs = n == 1 ? &r->blk : calloc(n, sizeof(*reqs));
    if (!reqs)
        return gen(NVME_SC_INTERNAL);
    if (n > 1)
        r->bounce = reqs;
    r->ns = targets[0];
    r->status = NVME_OK;
    r->blk_pending = (int)n + 1; /* held until every request is queued */
    for (unsigned i = 0; i < n; i++) {
        struct nvme_ns *ns = targets[i];
        ns->lba_shift = shift;
        ns->nsze = ns->blk->size >> shift;
        ns->format_req = r;
        nvme_ns_bad_clear(ns); /* every block is zeroes now, and the old LBA units are gone */
        struct blk_req *b = &reqs[i];
        memset(b, 0, sizeof(*b));
        b->op = BLK_WRITE_ZEROES;
        b->unmap = true;
        b->offset = 0;
        b->len = ns->nsze << shift;
        b->done = format_done;
        b->opaque = r;
        if (b->len == 0 || blk_submit(ns->q, b) < 0)
            format_done(b, b->len ? -5 : 0);
    }
    format_done(&(struct blk_req){.opaque = r}, 0);
    return NVME_STATUS_ASYNC;
}

/* ---- Firmware ---- */

void nvme_fw_init(struct nvme_ctrl *c)
{
    memset(c->fw_slot, 0, sizeof(c->fw_slot));
    memcpy(c->fw_slot[0], "1.0     ", 8);
    c->fw_active_slot = 1;
    c->fw_pending_slot = 0;
    struct nvme_self_test_log *log = (struct nvme_self_test_log *)c->selftest_log;
    memset(log, 0, sizeof(*log));
    for (int i = 0; i < NVME_LOG_ST_MAX_RESULTS; i++)
        log->result[i].dsts = NVME_ST_RESULT_NOT_USED;
}

void nvme_fw_reset(struct nvme_ctrl *c)
{
    if (c->fw_pending_slot) {
        c->fw_active_slot = c->fw_pending_slot;
        c->fw_pending_slot = 0;
    }
}

uint16_t nvme_adm_fw_download(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint64_t len = ((uint64_t)r->cmd.cdw10 + 1) * 4, off = (uint64_t)r->cmd.cdw11 * 4;
    if (off + len > FW_IMAGE_MAX)
        return gen(NVME_SC_INVALID_FIELD);
    if (off == 0)
        c->fw_image_len = 0; /* a new image starts */
    else if (off < c->fw_image_len)
        return spec(NVME_SC_OVERLAPPING_RANGE);
    uint8_t *img = realloc(c->fw_image, off + len);
    if (!img)
        return gen(NVME_SC_INTERNAL);
    c->fw_image = img;
    if (off > c->fw_image_len)
        memset(img + c->fw_image_len, 0, off - c->fw_image_len);
    uint16_t st = nvme_dptr_from_guest(c, r, img + off, len);
    if (st)
        return st;
    c->fw_image_len = (uint32_t)(off + len);
    return NVME_OK;
}

static void fw_revision(const uint8_t *img, uint32_t len, char out[8])
{
    bool printable = len >= 8;
    for (int i = 0; i < 8 && printable; i++)
        printable = img[i] >= 0x20 && img[i] < 0x7f;
    if (printable) {
        memcpy(out, img, 8);
        return;
    }
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < len; i++)
        h = (h ^ img[i]) * 16777619u;
    char tmp[9];
    snprintf(tmp, sizeof(tmp), "F%07X", h & 0xfffffff);
    memcpy(out, tmp, 8);
}

uint16_t nvme_adm_fw_commit(struct nvme_ctrl *c, struct nvme_req *r)
{
    unsigned fs = r->cmd.cdw10 & 7, ca = (r->cmd.cdw10 >> 3) & 7;
    if (r->cmd.cdw10 & (1u << 31) || ca > 3)
        return gen(NVME_SC_INVALID_FIELD); /* boot partitions and reserved actions */
    if (fs > FW_SLOTS)
        return spec(NVME_SC_FIRMWARE_SLOT);
    if (ca == 2) {
        if (fs == 0 || !c->fw_slot[fs - 1][0])
            return spec(fs == 0 ? NVME_SC_FIRMWARE_SLOT : NVME_SC_FIRMWARE_IMAGE);
        c->fw_pending_slot = fs == c->fw_active_slot ? 0 : (uint8_t)fs;
        return NVME_OK;
    }
    if (!c->fw_image_len)
        return spec(NVME_SC_FIRMWARE_IMAGE);
    if (fs == 0) /* controller's choice: the slot after the active one */
        fs = c->fw_active_slot % FW_SLOTS + 1;
    fw_revision(c->fw_image, c->fw_image_len, c->fw_slot[fs - 1]);
    free(c->fw_image);
    c->fw_image = NULL;
    c->fw_image_len = 0;
    if (ca == 1) {
        c->fw_pending_slot = (uint8_t)fs;
    } else if (ca == 3) {
        c->fw_active_slot = (uint8_t)fs;
        c->fw_pending_slot = 0;
    }
    return NVME_OK;
}

/* ---- Device Self-test ---- */

uint16_t nvme_adm_self_test(struct nvme_ctrl *c, struct nvme_req *r)
{
    unsigned stc = r->cmd.cdw10 & 0xf;
    uint32_t nsid = r->cmd.nsid;
    if (nsid != 0 && nsid != NVME_NSID_ALL &&
        (nsid > NVME_MAX_NAMESPACES || !c->ns[nsid - 1].present || !c->ns[nsid - 1].attached))
        return gen(NVME_SC_INVALID_NS);
    if (stc == 0xf)
        return NVME_OK; /* abort: nothing is ever running (tests complete at once) */
    if (stc != 1 && stc != 2)
        return gen(NVME_SC_INVALID_FIELD);
    /* Both tests finish immediately: the log gets a passing result, newest first. */
    struct nvme_self_test_log *log = (struct nvme_self_test_log *)c->selftest_log;
    memmove(&log->result[1], &log->result[0],
            sizeof(log->result[0]) * (NVME_LOG_ST_MAX_RESULTS - 1));
    struct nvme_st_result *e = &log->result[0];
    memset(e, 0, sizeof(*e));
    e->dsts = (uint8_t)(stc << 4 | NVME_ST_RESULT_NO_ERR);
    e->poh =
        htole64((nvme_now_ms() - c->created_at_ms) / 3600000 + c->smart.power_on_seconds / 3600);
    if (nsid != 0) {
        e->vdi = 1; /* NSID field valid */
        e->nsid = htole32(nsid);
    }
    log->current_operation = 0;
    log->completion = 0;
    return NVME_OK;
}
