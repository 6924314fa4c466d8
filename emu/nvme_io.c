/*
 * The NVM command set on struct blk_dev: Read, Write, Flush, Write Zeroes, Dataset
 * Management, Compare, Verify, Copy and Write Uncorrectable.
 *
 * Every field of the SQE is guest-controlled: each check ends in a status code, never in
 * an access outside the namespace or guest RAM (the data pointer is mapped by
 * nvme_dptr_map, which checks every range).
 *
 * Submission is batched: nvme_io_exec only queues blk requests; nvme_ctrl_process flushes
 * each namespace queue once per pass. Follow-up steps of multi-step commands (flush after
 * write, Copy chunks, DSM ranges) are issued from completion callbacks, which flush their
 * queue at once because no pass may follow soon.
 *
 * Durability: with the volatile write cache disabled (Set Features VWC = 0) the host may
 * assume a completed write is on stable media, so every modifying command is followed by
 * an fdatasync before it completes (the same as FUA). With VWC on, only FUA writes and
 * Flush pay for it. O_DSYNC was not chosen because VWC can be toggled at run time.
 *
 * Multi-step commands keep their state in r->bounce (struct io_ctx), sized to at most
 * the maximum transfer: Compare, Verify and Copy move data in chunks no larger than MDTS.
 *
 * A command counts as a user of its namespace from submission to completion (ns->users),
 * and Format NVM and namespace deletion refuse busy namespaces; the LBA size is also
 * captured at submission, so no step of a command sees another geometry.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "emu/nvme_int.h"
#include "util/events.h"

#define SC_GEN(sc)   NVME_STATUS(NVME_SCT_GENERIC, sc)
#define SC_CMD(sc)   NVME_STATUS(NVME_SCT_CMD_SPECIFIC, sc)
#define SC_MEDIA(sc) NVME_STATUS(NVME_SCT_MEDIA, sc)
#define DNR          NVME_SC_DNR

#define NSID_BROADCAST 0xffffffffu
#define CDW12_FUA      ((uint32_t)NVME_IO_FUA << 16)  /* bit 30 (Write, Write Zeroes, Copy) */
#define CDW12_DEAC     ((uint32_t)NVME_IO_DEAC << 16) /* bit 25 (Write Zeroes) */
#define PAGE           4096ull

/* State of a multi-step command, in r->bounce. */
struct io_ctx {
    int nr, idx;     /* DSM/Copy ranges (flush: the next nsid index) */
    uint64_t pos;    /* LBAs done in the current range (Copy) or command (Verify) */
    uint64_t dst;    /* Copy: next destination LBA */
    uint64_t chunk;  /* LBAs in the current read/write */
    uint16_t status; /* broadcast flush: first failure */
    uint32_t shift;  /* the namespace's LBA size when the command was submitted */
    bool flushed;    /* the final flush was issued */
    struct iovec biov;
    union {
        struct nvme_dsm_range dsm[NVME_DSM_MAX_RANGES];
        struct nvme_copy_range copy[NVME_COPY_MSRC + 1];
    } rng;
    uint8_t buf[]; /* bounce buffer, <= max_xfer() */
};

static void io_done(struct blk_req *b, int64_t res);

/* Largest data transfer: MDTS (2^mdts pages), and never more than the iovec table holds
 * with 4 KiB PRP pages, which also bounds every bounce buffer. */
static uint64_t max_xfer(const struct nvme_ctrl *c)
{
    uint64_t cap = NVME_MAX_IOV * PAGE;
    unsigned mdts = c->cfg.mdts;
    if (mdts == 0 || mdts > 20)
        return cap;
    uint64_t m = PAGE << mdts;
    return m < cap ? m : cap;
}

static uint64_t cmd_slba(const struct nvme_req *r)
{
    return (uint64_t)le32toh(r->cmd.cdw10) | (uint64_t)le32toh(r->cmd.cdw11) << 32;
}

static uint32_t cmd_nlb(const struct nvme_req *r) /* 0's based field, returned as a count */
{
    return (le32toh(r->cmd.cdw12) & 0xffff) + 1;
}

static bool range_ok(const struct nvme_ns *ns, uint64_t slba, uint64_t nlb)
{
    return slba + nlb >= slba && slba + nlb <= ns->nsze;
}

static bool ns_writable(const struct nvme_ns *ns)
{
    return !ns->read_only && !ns->blk->read_only;
}

/* With no volatile cache, or with FUA, data must be durable before completion. */
static bool want_flush(const struct nvme_ctrl *c, const struct nvme_req *r)
{
    bool fua = r->cmd.opcode != nvme_cmd_dsm && (le32toh(r->cmd.cdw12) & CDW12_FUA);
    return fua || !c->feat.vwc;
}

static struct nvme_ns *ns_lookup(struct nvme_ctrl *c, uint32_t nsid)
{
    if (nsid == 0 || nsid > NVME_MAX_NAMESPACES)
        return NULL;
    struct nvme_ns *ns = &c->ns[nsid - 1];
    if (!ns->present || !ns->attached || !ns->blk || !ns->q)
        return NULL;
    return ns;
}

/* Makes r a user of ns (NULL: of none), leaving the namespace it held. */
static void hold_ns(struct nvme_req *r, struct nvme_ns *ns)
{
    if (r->held)
        r->held->users--;
    r->held = ns;
    if (ns)
        ns->users++;
}

static void finish(struct nvme_ctrl *c, struct nvme_req *r, uint16_t status)
{
    hold_ns(r, NULL);
    r->status = status;
    free(r->bounce);
    r->bounce = NULL;
    nvme_req_complete(c, r);
}

/* Status for a failed storage request; media errors go to the error log. */
static uint16_t storage_status(struct nvme_ctrl *c, struct nvme_req *r, int64_t res, bool read,
                               uint64_t lba)
{
    uint16_t s;
    if (res == -ENOSPC || res == -EDQUOT) {
        s = SC_GEN(NVME_SC_CAP_EXCEEDED) | DNR; /* thin backing file ran out of room */
    } else {
        s = SC_MEDIA(read ? NVME_SC_READ_ERROR : NVME_SC_WRITE_FAULT);
        c->smart.media_errors++;
        nvme_error_log_add(c, r, s, lba, r->ns ? r->ns->nsid : 0);
    }
    events_postf("DISK_ERROR",
                 "{\"nsid\":%u,\"op\":\"%s\",\"lba\":%llu,\"status\":%u,\"errno\":%lld}",
                 r->ns ? (unsigned)r->ns->nsid : 0u, read ? "read" : "write",
                 (unsigned long long)lba, (unsigned)s, (long long)-res);
    return s;
}

/* Reads of blocks made uncorrectable by Write Uncorrectable. */
static uint16_t bad_status(struct nvme_ctrl *c, struct nvme_req *r, uint64_t lba)
{
    uint16_t s = SC_MEDIA(NVME_SC_READ_ERROR) | DNR;
    c->smart.media_errors++;
    nvme_error_log_add(c, r, s, lba, r->ns->nsid);
    return s;
}

/* Queues one storage request for r. `now`: called from a completion, so push it out
 * immediately instead of waiting for the next processing pass. */
static bool start_blk(struct nvme_req *r, enum blk_op op, uint64_t off, uint64_t len,
                      struct iovec *iov, int iovcnt, bool unmap, bool now)
{
    struct nvme_ns *ns = r->ns;
    r->blk = (struct blk_req){.op = op,
                              .offset = off,
                              .len = len,
                              .iov = iov,
                              .iovcnt = iovcnt,
                              .unmap = unmap,
                              .done = io_done,
                              .opaque = r};
    if (blk_submit(ns->q, &r->blk) < 0)
        return false;
    r->blk_pending = 1;
    if (now)
        blk_flush_submissions(ns->q);
    return true;
}

static void start_or_fail(struct nvme_ctrl *c, struct nvme_req *r, enum blk_op op, uint64_t off,
                          uint64_t len, struct iovec *iov, int iovcnt, bool unmap, bool now)
{
    if (!start_blk(r, op, off, len, iov, iovcnt, unmap, now))
        finish(c, r, SC_GEN(NVME_SC_INTERNAL));
}

static struct io_ctx *ctx_new(struct nvme_req *r, uint64_t buflen)
{
    struct io_ctx *x = calloc(1, sizeof(*x) + buflen);
    r->bounce = x;
    if (x && r->ns)
        x->shift = r->ns->lba_shift;
    return x;
}

/* ---- Write Uncorrectable ranges: sorted, disjoint, adjacent ones merged ---- */

bool nvme_ns_lba_bad(const struct nvme_ns *ns, uint64_t slba, uint64_t nlb)
{
    uint64_t end = slba + nlb < slba ? UINT64_MAX : slba + nlb;
    for (int i = 0; i < ns->nr_bad && ns->bad[i].slba < end; i++)
        if (slba < ns->bad[i].slba + ns->bad[i].nlb)
            return nlb != 0;
    return false;
}

void nvme_ns_bad_clear(struct nvme_ns *ns)
{
    free(ns->bad);
    ns->bad = NULL;
    ns->nr_bad = 0;
}

static bool bad_reserve(struct nvme_ns *ns, int count)
{
    struct nvme_bad_range *b = realloc(ns->bad, sizeof(*b) * (size_t)count);
    if (!b)
        return false;
    ns->bad = b;
    return true;
}

/* Adds [s, s+n); false if the list would exceed NVME_IO_MAX_BAD_RANGES. */
static bool bad_add(struct nvme_ns *ns, uint64_t s, uint64_t n)
{
    uint64_t e = s + n;
    int i = 0;
    while (i < ns->nr_bad && ns->bad[i].slba + ns->bad[i].nlb < s)
        i++;
    int j = i; /* [i, j): ranges overlapping or touching [s, e) */
    while (j < ns->nr_bad && ns->bad[j].slba <= e)
        j++;
    if (j > i) {
        if (ns->bad[i].slba < s)
            s = ns->bad[i].slba;
        uint64_t last = ns->bad[j - 1].slba + ns->bad[j - 1].nlb;
        if (last > e)
            e = last;
    }
    int count = ns->nr_bad - (j - i) + 1;
    if (count > NVME_IO_MAX_BAD_RANGES)
        return false;
    if (count > ns->nr_bad && !bad_reserve(ns, count))
        return false;
    memmove(&ns->bad[i + 1], &ns->bad[j], sizeof(*ns->bad) * (size_t)(ns->nr_bad - j));
    ns->bad[i] = (struct nvme_bad_range){s, e - s};
    ns->nr_bad = count;
    return true;
}

/* Blocks rewritten (write, write zeroes, deallocate) are readable again. A write in the
 * middle of a range splits it; if the list is full the right-hand piece is forgotten,
 * so those blocks read back their old data instead of failing (the only inexactness). */
static void bad_remove(struct nvme_ns *ns, uint64_t s, uint64_t n)
{
    uint64_t e = s + n;
    for (int i = 0; i < ns->nr_bad;) {
        struct nvme_bad_range *b = &ns->bad[i];
        uint64_t bs = b->slba, be = b->slba + b->nlb;
        if (be <= s || bs >= e) {
            i++;
            continue;
        }
        bool left = bs<s, right = be> e;
        if (left && right) {
            if (ns->nr_bad < NVME_IO_MAX_BAD_RANGES && bad_reserve(ns, ns->nr_bad + 1)) {
                memmove(&ns->bad[i + 2], &ns->bad[i + 1],
                        sizeof(*ns->bad) * (size_t)(ns->nr_bad - i - 1));
                ns->bad[i + 1] = (struct nvme_bad_range){e, be - e};
                ns->nr_bad++;
            }
            ns->bad[i].nlb = s - bs;
            return; /* disjoint ranges: nothing further can overlap */
        }
        if (left) {
            b->nlb = s - bs;
            i++;
        } else if (right) {
            b->slba = e;
            b->nlb = be - e;
            i++;
        } else {
            memmove(&ns->bad[i], &ns->bad[i + 1], sizeof(*ns->bad) * (size_t)(ns->nr_bad - i - 1));
            ns->nr_bad--;
        }
    }
}

/* ---- Read, Write, Write Zeroes ---- */

static void exec_rw(struct nvme_ctrl *c, struct nvme_req *r, bool write)
{
    struct nvme_ns *ns = r->ns;
    uint64_t slba = cmd_slba(r), nlb = cmd_nlb(r);
    uint64_t len = nlb << ns->lba_shift;
    if (!range_ok(ns, slba, nlb))
        return finish(c, r, SC_GEN(NVME_SC_LBA_RANGE) | DNR);
    if (len > max_xfer(c))
        return finish(c, r, SC_GEN(NVME_SC_INVALID_FIELD) | DNR);
    if (write && !ns_writable(ns))
        return finish(c, r, SC_GEN(NVME_SC_NS_WRITE_PROTECTED) | DNR);
    if (!write && nvme_ns_lba_bad(ns, slba, nlb))
        return finish(c, r, bad_status(c, r, slba));
    uint16_t s = nvme_dptr_map(c, r, len, !write);
    if (s != NVME_OK)
        return finish(c, r, s);
    r->data_len = len;
    start_or_fail(c, r, write ? BLK_WRITE : BLK_READ, slba << ns->lba_shift, len, r->iov, r->iovcnt,
                  false, false);
}

static void exec_write_zeroes(struct nvme_ctrl *c, struct nvme_req *r)
{
    struct nvme_ns *ns = r->ns;
    uint64_t slba = cmd_slba(r), nlb = cmd_nlb(r);
    if (!range_ok(ns, slba, nlb))
        return finish(c, r, SC_GEN(NVME_SC_LBA_RANGE) | DNR);
    if (!ns_writable(ns))
        return finish(c, r, SC_GEN(NVME_SC_NS_WRITE_PROTECTED) | DNR);
    bool deac = le32toh(r->cmd.cdw12) & CDW12_DEAC;
    start_or_fail(c, r, BLK_WRITE_ZEROES, slba << ns->lba_shift, nlb << ns->lba_shift, NULL, 0,
                  deac, false);
}

static void read_done(struct nvme_ctrl *c, struct nvme_req *r, int64_t res)
{
    /* Storage wrote guest RAM: dirty it only now, so a migration pass that copied the
     * pages before the data landed sends them again. */
    nvme_dptr_mark_dirty(c, r);
    if (res < 0)
        return finish(c, r, storage_status(c, r, res, true, cmd_slba(r)));
    nvme_smart_account(c, false, r->data_len);
    finish(c, r, NVME_OK);
}

/* Write and Write Zeroes: the data step, then the flush when durability requires it. */
static void write_done(struct nvme_ctrl *c, struct nvme_req *r, int64_t res)
{
    if (res < 0)
        return finish(c, r, storage_status(c, r, res, false, cmd_slba(r)));
    if (r->blk.op == BLK_FLUSH)
        return finish(c, r, NVME_OK);
    bad_remove(r->ns, cmd_slba(r), cmd_nlb(r));
    if (r->cmd.opcode == nvme_cmd_write)
        nvme_smart_account(c, true, r->data_len);
    if (want_flush(c, r))
        return start_or_fail(c, r, BLK_FLUSH, 0, 0, NULL, 0, false, true);
    finish(c, r, NVME_OK);
}

/* ---- Flush (one namespace, or every attached one for NSID FFFFFFFFh) ---- */

static void flush_next(struct nvme_ctrl *c, struct nvme_req *r, bool now)
{
    struct io_ctx *x = r->bounce;
    while (x->idx < NVME_MAX_NAMESPACES) {
        struct nvme_ns *ns = ns_lookup(c, (uint32_t)++x->idx);
        if (!ns)
            continue;
        r->ns = ns;
        hold_ns(r, ns);
        if (!start_blk(r, BLK_FLUSH, 0, 0, NULL, 0, false, now))
            x->status = x->status ? x->status : SC_GEN(NVME_SC_INTERNAL);
        else
            return;
    }
    finish(c, r, x->status);
}

static void exec_flush(struct nvme_ctrl *c, struct nvme_req *r)
{
    /* Without a volatile cache every write was flushed before it completed. */
    if (!c->feat.vwc)
        return finish(c, r, NVME_OK);
    if (le32toh(r->cmd.nsid) != NSID_BROADCAST)
        return start_or_fail(c, r, BLK_FLUSH, 0, 0, NULL, 0, false, false);
    if (!ctx_new(r, 0))
        return finish(c, r, SC_GEN(NVME_SC_INTERNAL));
    flush_next(c, r, false);
}

static void flush_done(struct nvme_ctrl *c, struct nvme_req *r, int64_t res)
{
    struct io_ctx *x = r->bounce;
    uint16_t s = res < 0 ? storage_status(c, r, res, false, 0) : NVME_OK;
    if (!x)
        return finish(c, r, s);
    if (s && !x->status)
        x->status = s;
    flush_next(c, r, true);
}

/* ---- Dataset Management ---- */

static void dsm_next(struct nvme_ctrl *c, struct nvme_req *r, bool now)
{
    struct io_ctx *x = r->bounce;
    while (x->idx < x->nr && le32toh(x->rng.dsm[x->idx].nlb) == 0)
        x->idx++;
    if (x->idx == x->nr) {
        if (want_flush(c, r) && !x->flushed) {
            x->flushed = true;
            return start_or_fail(c, r, BLK_FLUSH, 0, 0, NULL, 0, false, now);
        }
        return finish(c, r, NVME_OK);
    }
    const struct nvme_dsm_range *d = &x->rng.dsm[x->idx];
    start_or_fail(c, r, BLK_DISCARD, le64toh(d->slba) << x->shift,
                  (uint64_t)le32toh(d->nlb) << x->shift, NULL, 0, true, now);
}

static void exec_dsm(struct nvme_ctrl *c, struct nvme_req *r)
{
    struct nvme_ns *ns = r->ns;
    /* Integral-read/write and frequency hints need no action; only AD changes data. */
    if (!(le32toh(r->cmd.cdw11) & NVME_DSMGMT_AD))
        return finish(c, r, NVME_OK);
    if (!ns_writable(ns))
        return finish(c, r, SC_GEN(NVME_SC_NS_WRITE_PROTECTED) | DNR);
    struct io_ctx *x = ctx_new(r, 0);
    if (!x)
        return finish(c, r, SC_GEN(NVME_SC_INTERNAL));
    x->nr = (int)(le32toh(r->cmd.cdw10) & 0xff) + 1;
    uint16_t s = nvme_dptr_from_guest(c, r, x->rng.dsm, sizeof(x->rng.dsm[0]) * (size_t)x->nr);
    if (s != NVME_OK)
        return finish(c, r, s);
    /* Check every range before deallocating any: all or nothing for bad input. */
    for (int i = 0; i < x->nr; i++)
        if (!range_ok(ns, le64toh(x->rng.dsm[i].slba), le32toh(x->rng.dsm[i].nlb)))
            return finish(c, r, SC_GEN(NVME_SC_LBA_RANGE) | DNR);
    dsm_next(c, r, false);
}

static void dsm_done(struct nvme_ctrl *c, struct nvme_req *r, int64_t res)
{
    struct io_ctx *x = r->bounce;
    if (res < 0) {
        uint64_t lba = x->idx < x->nr ? le64toh(x->rng.dsm[x->idx].slba) : 0;
        return finish(c, r, storage_status(c, r, res, false, lba));
    }
    if (r->blk.op == BLK_FLUSH)
        return finish(c, r, NVME_OK);
    const struct nvme_dsm_range *d = &x->rng.dsm[x->idx];
    bad_remove(r->ns, le64toh(d->slba), le32toh(d->nlb));
    x->idx++;
    dsm_next(c, r, true);
}

/* ---- Compare and Verify ---- */

/* Compares the guest buffer (mapped in r->iov) with buf. */
static bool iov_equal(const struct nvme_req *r, const uint8_t *buf, uint64_t len)
{
    for (int i = 0; i < r->iovcnt && len; i++) {
        uint64_t n = r->iov[i].iov_len < len ? r->iov[i].iov_len : len;
        if (memcmp(r->iov[i].iov_base, buf, n))
            return false;
        buf += n;
        len -= n;
    }
    return true;
}

static void exec_compare(struct nvme_ctrl *c, struct nvme_req *r)
{
    struct nvme_ns *ns = r->ns;
    uint64_t slba = cmd_slba(r), nlb = cmd_nlb(r);
    uint64_t len = nlb << ns->lba_shift;
    if (!range_ok(ns, slba, nlb))
        return finish(c, r, SC_GEN(NVME_SC_LBA_RANGE) | DNR);
    if (len > max_xfer(c))
        return finish(c, r, SC_GEN(NVME_SC_INVALID_FIELD) | DNR);
    if (nvme_ns_lba_bad(ns, slba, nlb))
        return finish(c, r, bad_status(c, r, slba));
    uint16_t s = nvme_dptr_map(c, r, len, false);
    if (s != NVME_OK)
        return finish(c, r, s);
    r->data_len = len;
    struct io_ctx *x = ctx_new(r, len);
    if (!x)
        return finish(c, r, SC_GEN(NVME_SC_INTERNAL));
    x->biov = (struct iovec){x->buf, len};
    start_or_fail(c, r, BLK_READ, slba << ns->lba_shift, len, &x->biov, 1, false, false);
}

static void compare_done(struct nvme_ctrl *c, struct nvme_req *r, int64_t res)
{
    struct io_ctx *x = r->bounce;
    if (res < 0)
        return finish(c, r, storage_status(c, r, res, true, cmd_slba(r)));
    nvme_smart_account(c, false, r->data_len);
    if (!iov_equal(r, x->buf, r->data_len))
        return finish(c, r, SC_MEDIA(NVME_SC_COMPARE_FAILED) | DNR);
    finish(c, r, NVME_OK);
}

static void verify_next(struct nvme_ctrl *c, struct nvme_req *r, bool now)
{
    struct io_ctx *x = r->bounce;
    uint64_t nlb = cmd_nlb(r);
    if (x->pos == nlb)
        return finish(c, r, NVME_OK);
    uint64_t max = max_xfer(c) >> x->shift;
    x->chunk = nlb - x->pos < max ? nlb - x->pos : max;
    x->biov = (struct iovec){x->buf, x->chunk << x->shift};
    start_or_fail(c, r, BLK_READ, (cmd_slba(r) + x->pos) << x->shift, x->biov.iov_len, &x->biov, 1,
                  false, now);
}

/* Verify transfers no data, so it is not subject to MDTS; it reads in MDTS chunks. */
static void exec_verify(struct nvme_ctrl *c, struct nvme_req *r)
{
    struct nvme_ns *ns = r->ns;
    uint64_t slba = cmd_slba(r), nlb = cmd_nlb(r);
    if (!range_ok(ns, slba, nlb))
        return finish(c, r, SC_GEN(NVME_SC_LBA_RANGE) | DNR);
    if (nvme_ns_lba_bad(ns, slba, nlb))
        return finish(c, r, bad_status(c, r, slba));
    uint64_t max = max_xfer(c) >> ns->lba_shift;
    if (!ctx_new(r, (nlb < max ? nlb : max) << ns->lba_shift))
        return finish(c, r, SC_GEN(NVME_SC_INTERNAL));
    verify_next(c, r, false);
}

static void verify_done(struct nvme_ctrl *c, struct nvme_req *r, int64_t res)
{
    struct io_ctx *x = r->bounce;
    if (res < 0)
        return finish(c, r, storage_status(c, r, res, true, cmd_slba(r) + x->pos));
    x->pos += x->chunk;
    verify_next(c, r, true);
}

/* ---- Copy (descriptor format 0, within one namespace) ---- */

static void copy_next(struct nvme_ctrl *c, struct nvme_req *r, bool now)
{
    struct io_ctx *x = r->bounce;
    while (x->idx < x->nr && x->pos == (uint64_t)le16toh(x->rng.copy[x->idx].nlb) + 1) {
        x->idx++;
        x->pos = 0;
    }
    if (x->idx == x->nr) {
        if (want_flush(c, r) && !x->flushed) {
            x->flushed = true;
            return start_or_fail(c, r, BLK_FLUSH, 0, 0, NULL, 0, false, now);
        }
        return finish(c, r, NVME_OK);
    }
    const struct nvme_copy_range *d = &x->rng.copy[x->idx];
    uint64_t left = (uint64_t)le16toh(d->nlb) + 1 - x->pos;
    uint64_t max = max_xfer(c) >> x->shift;
    x->chunk = left < max ? left : max;
    x->biov = (struct iovec){x->buf, x->chunk << x->shift};
    start_or_fail(c, r, BLK_READ, (le64toh(d->slba) + x->pos) << x->shift, x->biov.iov_len,
                  &x->biov, 1, false, now);
}

static void exec_copy(struct nvme_ctrl *c, struct nvme_req *r)
{
    struct nvme_ns *ns = r->ns;
    uint32_t cdw12 = le32toh(r->cmd.cdw12);
    int nr = (int)(cdw12 & 0xff) + 1;
    if (((cdw12 >> 8) & 0xf) != 0) /* only descriptor format 0 */
        return finish(c, r, SC_GEN(NVME_SC_INVALID_FIELD) | DNR);
    if (nr > NVME_COPY_MSRC + 1)
        return finish(c, r, SC_CMD(NVME_SC_CMD_SIZE_LIMIT_EXCEEDED) | DNR);
    if (!ns_writable(ns))
        return finish(c, r, SC_GEN(NVME_SC_NS_WRITE_PROTECTED) | DNR);
    struct io_ctx *x = ctx_new(r, 0); /* the bounce buffer is sized once ranges are known */
    if (!x)
        return finish(c, r, SC_GEN(NVME_SC_INTERNAL));
    x->nr = nr;
    uint16_t s = nvme_dptr_from_guest(c, r, x->rng.copy, sizeof(x->rng.copy[0]) * (size_t)nr);
    if (s != NVME_OK)
        return finish(c, r, s);
    uint64_t total = 0;
    for (int i = 0; i < nr; i++) {
        uint64_t slba = le64toh(x->rng.copy[i].slba);
        uint64_t nlb = (uint64_t)le16toh(x->rng.copy[i].nlb) + 1;
        if (nlb > NVME_COPY_MSSRL)
            return finish(c, r, SC_CMD(NVME_SC_CMD_SIZE_LIMIT_EXCEEDED) | DNR);
        total += nlb;
        if (!range_ok(ns, slba, nlb))
            return finish(c, r, SC_GEN(NVME_SC_LBA_RANGE) | DNR);
    }
    if (total > NVME_COPY_MCL)
        return finish(c, r, SC_CMD(NVME_SC_CMD_SIZE_LIMIT_EXCEEDED) | DNR);
    x->dst = cmd_slba(r);
    if (!range_ok(ns, x->dst, total))
        return finish(c, r, SC_GEN(NVME_SC_LBA_RANGE) | DNR);
    for (int i = 0; i < nr; i++) {
        uint64_t slba = le64toh(x->rng.copy[i].slba);
        if (nvme_ns_lba_bad(ns, slba, (uint64_t)le16toh(x->rng.copy[i].nlb) + 1))
            return finish(c, r, bad_status(c, r, slba));
    }
    uint64_t chunk_max = max_xfer(c) >> ns->lba_shift;
    uint64_t buflen = (total < chunk_max ? total : chunk_max) << ns->lba_shift;
    x = realloc(x, sizeof(*x) + buflen);
    if (!x)
        return finish(c, r, SC_GEN(NVME_SC_INTERNAL));
    r->bounce = x;
    copy_next(c, r, false);
}

static void copy_done(struct nvme_ctrl *c, struct nvme_req *r, int64_t res)
{
    struct io_ctx *x = r->bounce;
    struct nvme_ns *ns = r->ns;
    bool read = r->blk.op == BLK_READ;
    if (res < 0) {
        uint64_t lba = read ? le64toh(x->rng.copy[x->idx].slba) + x->pos : x->dst;
        return finish(c, r, storage_status(c, r, res, read, lba));
    }
    switch (r->blk.op) {
    case BLK_READ: /* chunk is in the bounce buffer: write it to the destination */
        return start_or_fail(c, r, BLK_WRITE, x->dst << x->shift, x->biov.iov_len, &x->biov, 1,
                             false, true);
    case BLK_WRITE:
        bad_remove(ns, x->dst, x->chunk);
        x->dst += x->chunk;
        x->pos += x->chunk;
        return copy_next(c, r, true);
    default: /* the final flush */
        return finish(c, r, NVME_OK);
    }
}

/* ---- Write Uncorrectable ---- */

static void exec_write_uncor(struct nvme_ctrl *c, struct nvme_req *r)
{
    struct nvme_ns *ns = r->ns;
    uint64_t slba = cmd_slba(r), nlb = cmd_nlb(r);
    if (!range_ok(ns, slba, nlb))
        return finish(c, r, SC_GEN(NVME_SC_LBA_RANGE) | DNR);
    if (!ns_writable(ns))
        return finish(c, r, SC_GEN(NVME_SC_NS_WRITE_PROTECTED) | DNR);
    /* The marks live in controller memory only: they do not survive a VMM restart. */
    if (!bad_add(ns, slba, nlb))
        return finish(c, r, SC_GEN(NVME_SC_INTERNAL) | DNR);
    finish(c, r, NVME_OK);
}

/* ---- dispatch ---- */

static void io_done(struct blk_req *b, int64_t res)
{
    struct nvme_req *r = b->opaque;
    struct nvme_ctrl *c = r->ctrl;
    r->blk_pending = 0;
    switch (r->cmd.opcode) {
    case nvme_cmd_read:
        return read_done(c, r, res);
    case nvme_cmd_write:
    case nvme_cmd_write_zeroes:
        return write_done(c, r, res);
    case nvme_cmd_flush:
        return flush_done(c, r, res);
    case nvme_cmd_dsm:
        return dsm_done(c, r, res);
    case nvme_cmd_compare:
        return compare_done(c, r, res);
    case nvme_cmd_verify:
        return verify_done(c, r, res);
    case nvme_cmd_copy:
        return copy_done(c, r, res);
    default:
        return finish(c, r, SC_GEN(NVME_SC_INTERNAL));
    }
}

void nvme_io_exec(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint32_t nsid = le32toh(r->cmd.nsid);
    uint8_t op = r->cmd.opcode;
    r->ctrl = c;
    r->status = NVME_OK;
    r->result = 0;
    r->blk_pending = 0;
    r->bounce = NULL;
    r->data_len = 0;
    r->held = NULL;
    switch (op) {
    case nvme_cmd_flush:
    case nvme_cmd_write:
    case nvme_cmd_read:
    case nvme_cmd_write_uncor:
    case nvme_cmd_compare:
    case nvme_cmd_write_zeroes:
    case nvme_cmd_dsm:
    case nvme_cmd_verify:
    case nvme_cmd_copy:
        break;
    default:
        return finish(c, r, SC_GEN(NVME_SC_INVALID_OPCODE) | DNR);
    }
    if (r->cmd.flags & 0x3) /* fused operations are not supported (ONCS/FUSES = 0) */
        return finish(c, r, SC_GEN(NVME_SC_INVALID_FIELD) | DNR);
    if (op == nvme_cmd_flush && nsid == NSID_BROADCAST) {
        r->ns = NULL;
        return exec_flush(c, r);
    }
    r->ns = ns_lookup(c, nsid);
    if (!r->ns)
        return finish(c, r, SC_GEN(NVME_SC_INVALID_NS) | DNR);
    /* The namespace's geometry is changing: the host retries after the Format. */
    if (r->ns->format_req)
        return finish(c, r, SC_GEN(NVME_SC_FORMAT_IN_PROGRESS));
    hold_ns(r, r->ns);
    switch (op) {
    case nvme_cmd_flush:
        return exec_flush(c, r);
    case nvme_cmd_read:
        return exec_rw(c, r, false);
    case nvme_cmd_write:
        return exec_rw(c, r, true);
    case nvme_cmd_write_zeroes:
        return exec_write_zeroes(c, r);
    case nvme_cmd_dsm:
        return exec_dsm(c, r);
    case nvme_cmd_compare:
        return exec_compare(c, r);
    case nvme_cmd_verify:
        return exec_verify(c, r);
    case nvme_cmd_copy:
        return exec_copy(c, r);
    default:
        return exec_write_uncor(c, r);
    }
}

bool nvme_io_reap(struct nvme_ctrl *c)
{
    bool any = false;
    /* Detached or deleted namespaces may still have requests in flight: reap any queue. */
    for (int i = 0; i < NVME_MAX_NAMESPACES; i++)
        if (c->ns[i].q && blk_reap(c->ns[i].q) > 0)
            any = true;
    return any;
}
