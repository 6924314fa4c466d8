/*
 * Data pointers: PRP1/PRP2 with chained PRP lists, and SGLs (I/O commands only), turned
 * into host iovecs. Every guest range is checked with gpa_ptr(), so a hostile pointer gives
 * a status (Data Transfer Error, PRP Offset Invalid, SGL errors), never a host access
 * outside guest RAM. Adjacent ranges are merged into one iovec.
 */
#include <string.h>

#include "emu/nvme_int.h"

#define SGL_MAX_DESCRIPTORS 4096 /* bounds descriptor loops (forward progress) */
#define BIT_BUCKET_CHUNK    65536

/* SGL descriptor types (high nibble of the identifier byte) and subtypes (low nibble). */
enum {
    SGL_DATA_BLOCK = 0x0,
    SGL_BIT_BUCKET = 0x1,
    SGL_SEGMENT = 0x2,
    SGL_LAST_SEGMENT = 0x3,
    SGL_SUBTYPE_ADDRESS = 0x0,
};

/* Bit bucket reads land here: the data is discarded, never reaches guest memory. */
static uint8_t bit_bucket[BIT_BUCKET_CHUNK];

static uint16_t sc(uint8_t code)
{
    return NVME_STATUS(NVME_SCT_GENERIC, code) | NVME_SC_DNR;
}

static uint16_t iov_add_host(struct nvme_req *r, void *p, uint64_t len)
{
    if (len == 0)
        return NVME_OK;
    if (r->iovcnt > 0) {
        struct iovec *last = &r->iov[r->iovcnt - 1];
        if ((uint8_t *)last->iov_base + last->iov_len == p && p != (void *)bit_bucket) {
            last->iov_len += len;
            r->data_len += len;
            return NVME_OK;
        }
    }
    if (r->iovcnt >= NVME_MAX_IOV)
        return sc(NVME_SC_INVALID_FIELD); /* too fragmented for one request */
    r->iov[r->iovcnt].iov_base = p;
    r->iov[r->iovcnt].iov_len = len;
    r->iovcnt++;
    r->data_len += len;
    return NVME_OK;
}

static uint16_t iov_add(struct nvme_ctrl *c, struct nvme_req *r, uint64_t gpa, uint64_t len)
{
    if (len == 0)
        return NVME_OK;
    void *p = gpa_ptr(c->mem, gpa, len);
    if (!p)
        return sc(NVME_SC_DATA_XFER_ERROR);
    return iov_add_host(r, p, len);
}

static uint16_t map_prp(struct nvme_ctrl *c, struct nvme_req *r, uint64_t len)
{
    uint64_t ps = nvme_page_size(c);
    uint64_t prp1 = r->cmd.dptr[0], prp2 = r->cmd.dptr[1];
    if (prp1 & 3)
        return sc(NVME_SC_PRP_INVALID_OFFSET);
    uint64_t first = ps - (prp1 & (ps - 1));
    if (first > len)
        first = len;
    uint16_t st = iov_add(c, r, prp1, first);
    if (st)
        return st;
    uint64_t rem = len - first;
    if (rem == 0)
        return NVME_OK;
    if (rem <= ps) {
        /* PRP2 is the second (last) data page. */
        if (prp2 & (ps - 1))
            return sc(NVME_SC_PRP_INVALID_OFFSET);
        return iov_add(c, r, prp2, rem);
    }
    /* PRP2 points to a PRP list; the last entry of each list page chains to the next. */
    uint64_t list = prp2;
    if (list & 7)
        return sc(NVME_SC_PRP_INVALID_OFFSET);
    while (rem) {
        uint64_t nent = (ps - (list & (ps - 1))) / 8;
        const uint64_t *ents = gpa_ptr(c->mem, list, nent * 8);
        if (!ents)
            return sc(NVME_SC_DATA_XFER_ERROR);
        for (uint64_t i = 0; i < nent && rem; i++) {
            uint64_t e = le64toh(__atomic_load_n(&ents[i], __ATOMIC_RELAXED));
            if (i == nent - 1 && rem > ps) {
                /* Chain pointer: page aligned, so every further list page holds at least
                 * ps/8 - 1 data entries and the walk always progresses. */
                if (e & (ps - 1))
                    return sc(NVME_SC_PRP_INVALID_OFFSET);
                list = e;
                break;
            }
            if (e & (ps - 1))
                return sc(NVME_SC_PRP_INVALID_OFFSET);
            uint64_t n = rem < ps ? rem : ps;
            st = iov_add(c, r, e, n);
            if (st)
                return st;
            rem -= n;
        }
    }
    return NVME_OK;
}

struct sgl_walk {
    struct nvme_ctrl *c;
    struct nvme_req *r;
    uint64_t len;  /* expected transfer length */
    bool to_guest; /* reads: bit buckets allowed */
    unsigned ndesc;
};

static uint16_t sgl_data(struct sgl_walk *w, const struct nvme_sgl_desc *d)
{
    uint64_t dlen = le32toh(d->len);
    if ((d->type & 0xf) != SGL_SUBTYPE_ADDRESS)
        return sc(NVME_SC_SGL_INVALID_TYPE);
    if (w->r->data_len + dlen > w->len)
        return sc(NVME_SC_SGL_INVALID_DATA);
    if ((d->type >> 4) == SGL_DATA_BLOCK)
        return iov_add(w->c, w->r, le64toh(d->addr), dlen);
    /* Bit bucket: counts toward the length, the data goes nowhere. */
    if (!w->to_guest)
        return sc(NVME_SC_SGL_INVALID_TYPE);
    while (dlen) {
        uint64_t n = dlen < BIT_BUCKET_CHUNK ? dlen : BIT_BUCKET_CHUNK;
        uint16_t st = iov_add_host(w->r, bit_bucket, n);
        if (st)
            return st;
        dlen -= n;
    }
    return NVME_OK;
}

static uint16_t map_sgl(struct nvme_ctrl *c, struct nvme_req *r, uint64_t len, bool to_guest)
{
    struct sgl_walk w = {.c = c, .r = r, .len = len, .to_guest = to_guest};
    struct nvme_sgl_desc d;
    memcpy(&d, r->cmd.dptr, sizeof(d));
    bool in_last = false;
    for (;;) {
        if (++w.ndesc > SGL_MAX_DESCRIPTORS)
            return sc(NVME_SC_SGL_INVALID_COUNT);
        uint8_t type = d.type >> 4;
        if (type == SGL_DATA_BLOCK || type == SGL_BIT_BUCKET) {
            /* A data descriptor in the command or as a segment's last entry ends the list. */
            uint16_t st = sgl_data(&w, &d);
            if (st)
                return st;
            break;
        }
        if (type != SGL_SEGMENT && type != SGL_LAST_SEGMENT)
            return sc(NVME_SC_SGL_INVALID_TYPE); /* keyed, transport, reserved */
        if ((d.type & 0xf) != SGL_SUBTYPE_ADDRESS)
            return sc(NVME_SC_SGL_INVALID_TYPE);
        if (in_last)
            return sc(NVME_SC_SGL_INVALID_LAST);
        uint32_t slen = le32toh(d.len);
        if (slen == 0 || slen % sizeof(d))
            return sc(NVME_SC_SGL_INVALID_COUNT);
        uint64_t saddr = le64toh(d.addr);
        uint32_t n = slen / sizeof(d);
        if (n > SGL_MAX_DESCRIPTORS)
            return sc(NVME_SC_SGL_INVALID_COUNT);
        const struct nvme_sgl_desc *seg = gpa_ptr(c->mem, saddr, slen);
        if (!seg)
            return sc(NVME_SC_DATA_XFER_ERROR);
        in_last = type == SGL_LAST_SEGMENT;
        /* Every descriptor but the last must describe data; the last may chain. Copy each
         * one out once: the guest may rewrite the segment while we walk it. */
        for (uint32_t i = 0; i + 1 < n; i++) {
            struct nvme_sgl_desc e;
            memcpy(&e, &seg[i], sizeof(e));
            if (++w.ndesc > SGL_MAX_DESCRIPTORS)
                return sc(NVME_SC_SGL_INVALID_COUNT);
            uint8_t et = e.type >> 4;
            if (et == SGL_SEGMENT || et == SGL_LAST_SEGMENT)
                return sc(NVME_SC_SGL_INVALID_LAST);
            if (et != SGL_DATA_BLOCK && et != SGL_BIT_BUCKET)
                return sc(NVME_SC_SGL_INVALID_TYPE);
            uint16_t st = sgl_data(&w, &e);
            if (st)
                return st;
        }
        /* The last descriptor is counted at the top of the loop, so a segment that
         * chains to itself still uses up the descriptor budget. */
        memcpy(&d, &seg[n - 1], sizeof(d));
        uint8_t lt = d.type >> 4;
        if (in_last && (lt == SGL_SEGMENT || lt == SGL_LAST_SEGMENT))
            return sc(NVME_SC_SGL_INVALID_LAST);
    }
    if (r->data_len != len)
        return sc(NVME_SC_SGL_INVALID_DATA);
    return NVME_OK;
}

uint16_t nvme_dptr_map(struct nvme_ctrl *c, struct nvme_req *r, uint64_t len, bool to_guest)
{
    r->iovcnt = 0;
    r->data_len = 0;
    if (len == 0)
        return NVME_OK;
    if (c->cfg.mdts && len > (4096ull << c->cfg.mdts))
        return sc(NVME_SC_INVALID_FIELD);
    unsigned psdt = r->cmd.flags >> 6;
    uint16_t st;
    if (psdt == 0)
        st = map_prp(c, r, len);
    else if (psdt <= 2 && r->sq->id != 0) /* admin commands are PRP only */
        st = map_sgl(c, r, len, to_guest);
    else
        st = sc(NVME_SC_INVALID_FIELD);
    if (st == NVME_OK && r->data_len != len)
        st = sc(NVME_SC_DATA_XFER_ERROR);
    if (st) {
        r->iovcnt = 0;
        r->data_len = 0;
    }
    return st;
}

uint16_t nvme_dptr_to_guest(struct nvme_ctrl *c, struct nvme_req *r, const void *buf, uint64_t len)
{
    uint16_t st = nvme_dptr_map(c, r, len, true);
    if (st)
        return st;
    const uint8_t *p = buf;
    for (int i = 0; i < r->iovcnt; i++) {
        memcpy(r->iov[i].iov_base, p, r->iov[i].iov_len);
        p += r->iov[i].iov_len;
    }
    nvme_dptr_mark_dirty(c, r);
    return NVME_OK;
}

uint16_t nvme_dptr_from_guest(struct nvme_ctrl *c, struct nvme_req *r, void *buf, uint64_t len)
{
    uint16_t st = nvme_dptr_map(c, r, len, false);
    if (st)
        return st;
    uint8_t *p = buf;
    for (int i = 0; i < r->iovcnt; i++) {
        memcpy(p, r->iov[i].iov_base, r->iov[i].iov_len);
        p += r->iov[i].iov_len;
    }
    return NVME_OK;
}

void nvme_dptr_mark_dirty(struct nvme_ctrl *c, const struct nvme_req *r)
{
    const uint8_t *lo = c->mem->host, *hi = c->mem->host + c->mem->size;
    for (int i = 0; i < r->iovcnt; i++) {
        const uint8_t *p = r->iov[i].iov_base;
        if (p >= lo && p + r->iov[i].iov_len <= hi) /* skips the bit bucket */
            guest_mem_mark_dirty(c->mem, (uint64_t)(p - lo), r->iov[i].iov_len);
    }
}
