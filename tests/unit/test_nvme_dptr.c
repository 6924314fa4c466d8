/* Data pointers: PRP entries and chained lists, SGL descriptors (data blocks, segments,
 * bit buckets, keyed/invalid types, loops), MDTS, hostile addresses, iovec merging. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/nvme_host.h"

static struct host *h;
static struct nvme_req *r;

static void setup(void)
{
    h = host_new(NULL);
    cr_assert(host_enable(h, 8));
    cr_assert_eq(host_create_io_queues(h, 1, 16, 0), 1);
    r = calloc(1, sizeof(*r));
    r->ctrl = h->c;
    r->sq = &h->c->sq[1];
}

static void teardown(void)
{
    free(r);
    host_free(h);
}

TestSuite(nvme_dptr, .init = setup, .fini = teardown);

static uint16_t map(uint64_t prp1, uint64_t prp2, uint64_t len)
{
    memset(&r->cmd, 0, sizeof(r->cmd));
    r->cmd.dptr[0] = prp1;
    r->cmd.dptr[1] = prp2;
    return nvme_dptr_map(h->c, r, len, true);
}

static void *hp(uint64_t gpa)
{
    return host_ptr(h, gpa);
}

Test(nvme_dptr, prp_single_and_two_pages)
{
    uint64_t p = host_alloc(h, 3 * 4096);
    cr_assert_eq(map(p + 0x100, 0, 0xf00), 0);
    cr_assert_eq(r->iovcnt, 1);
    cr_assert_eq(r->iov[0].iov_base, hp(p + 0x100));
    cr_assert_eq(r->data_len, 0xf00);
    /* Adjacent pages merge into one iovec; distant ones do not. */
    cr_assert_eq(map(p, p + 4096, 8192), 0);
    cr_assert_eq(r->iovcnt, 1);
    cr_assert_eq(r->iov[0].iov_len, 8192);
    cr_assert_eq(map(p + 0x800, p + 8192, 4096), 0);
    cr_assert_eq(r->iovcnt, 2);
    cr_assert_eq(r->iov[0].iov_len, 0x800);
    cr_assert_eq(r->iov[1].iov_base, hp(p + 8192));
    cr_assert_eq(map(p, p + 8192 + 8, 8192), GEN(NVME_SC_PRP_INVALID_OFFSET));
    cr_assert_eq(map(p + 2, 0, 16), GEN(NVME_SC_PRP_INVALID_OFFSET));
    cr_assert_eq(map(0, 0, 0), 0, "no data");
    cr_assert_eq(r->iovcnt, 0);
}

Test(nvme_dptr, prp_outside_ram)
{
    cr_assert_eq(map(HOST_RAM, 0, 512), GEN(NVME_SC_DATA_XFER_ERROR));
    cr_assert_eq(map(HOST_RAM - 4096, HOST_RAM, 8192), GEN(NVME_SC_DATA_XFER_ERROR));
    cr_assert_eq(map(~0ull & ~4095ull, 0, 4096), GEN(NVME_SC_DATA_XFER_ERROR));
    cr_assert_eq(r->iovcnt, 0, "nothing left mapped on failure");
    uint64_t list = host_alloc(h, 4096), p = host_alloc(h, 4096);
    uint64_t *e = hp(list);
    e[0] = HOST_RAM + 4096;
    cr_assert_eq(map(p, list, 3 * 4096), GEN(NVME_SC_DATA_XFER_ERROR));
    cr_assert_eq(map(p, HOST_RAM + 8, 3 * 4096), GEN(NVME_SC_DATA_XFER_ERROR));
}

Test(nvme_dptr, prp_list_and_offsets)
{
    uint64_t data = host_alloc(h, 16 * 4096), list = host_alloc(h, 4096);
    uint64_t *e = hp(list);
    for (int i = 0; i < 15; i++)
        e[i] = data + 4096 * (uint64_t)(i + 1);
    cr_assert_eq(map(data, list, 16 * 4096), 0);
    cr_assert_eq(r->iovcnt, 1, "contiguous pages merge");
    cr_assert_eq(r->data_len, 16 * 4096);
    /* Reverse order: no merging, 16 iovecs in list order. */
    for (int i = 0; i < 15; i++)
        e[i] = data + 4096 * (uint64_t)(15 - i);
    cr_assert_eq(map(data, list, 16 * 4096), 0);
    cr_assert_eq(r->iovcnt, 16);
    cr_assert_eq(r->iov[1].iov_base, hp(data + 15 * 4096));
    /* The last entry may be partial. */
    cr_assert_eq(map(data, list, 2 * 4096 + 100), 0);
    cr_assert_eq(r->iov[r->iovcnt - 1].iov_len, 100);
    e[3] |= 0x200;
    cr_assert_eq(map(data, list, 16 * 4096), GEN(NVME_SC_PRP_INVALID_OFFSET));
    cr_assert_eq(map(data, list + 4, 16 * 4096), GEN(NVME_SC_PRP_INVALID_OFFSET));
}

Test(nvme_dptr, prp_list_chains)
{
    uint64_t data = host_alloc(h, 8 * 4096), l1 = host_alloc(h, 4096), l2 = host_alloc(h, 4096);
    /* The first list starts 16 bytes before its page end: one data entry, then a chain. */
    uint64_t *a = hp(l1 + 4096 - 16), *b = hp(l2);
    a[0] = data + 4096;
    a[1] = l2;
    b[0] = data + 2 * 4096;
    b[1] = data + 3 * 4096;
    cr_assert_eq(map(data, l1 + 4096 - 16, 4 * 4096), 0);
    cr_assert_eq(r->data_len, 4 * 4096);
    cr_assert_eq(r->iovcnt, 1);
    /* A chain pointer must be page aligned. */
    a[1] = l2 + 8;
    cr_assert_eq(map(data, l1 + 4096 - 16, 4 * 4096), GEN(NVME_SC_PRP_INVALID_OFFSET));
    /* A list that chains to itself still ends: every page yields data entries. */
    uint64_t *self = hp(l2);
    for (int i = 0; i < 511; i++)
        self[i] = data;
    self[511] = l2;
    cr_assert_eq(map(data, l2, 512 * 1024), 0);
    cr_assert_eq(r->data_len, 512 * 1024);
}

Test(nvme_dptr, mdts_and_psdt)
{
    uint64_t p = host_alloc(h, 4096);
    cr_assert_eq(map(p, 0, (512 * 1024) + 4096), GEN(NVME_SC_INVALID_FIELD));
    memset(&r->cmd, 0, sizeof(r->cmd));
    r->cmd.flags = 3 << 6;
    cr_assert_eq(nvme_dptr_map(h->c, r, 512, true), GEN(NVME_SC_INVALID_FIELD));
    /* SGLs are for I/O queues only. */
    struct nvme_req *adm = calloc(1, sizeof(*adm));
    adm->sq = &h->c->sq[0];
    adm->cmd.flags = 1 << 6;
    cr_assert_eq(nvme_dptr_map(h->c, adm, 512, true), GEN(NVME_SC_INVALID_FIELD));
    free(adm);
}

static void sgl(struct nvme_sgl_desc *d, uint64_t addr, uint32_t len, uint8_t type)
{
    d->addr = htole64(addr);
    d->len = htole32(len);
    memset(d->rsvd, 0, sizeof(d->rsvd));
    d->type = (uint8_t)(type << 4);
}

static uint16_t map_sgl(const struct nvme_sgl_desc *d, uint64_t len, bool to_guest)
{
    memset(&r->cmd, 0, sizeof(r->cmd));
    r->cmd.flags = 1 << 6;
    memcpy(r->cmd.dptr, d, sizeof(*d));
    return nvme_dptr_map(h->c, r, len, to_guest);
}

Test(nvme_dptr, sgl_data_block)
{
    uint64_t p = host_alloc(h, 8192);
    struct nvme_sgl_desc d;
    sgl(&d, p + 3, 5000, 0);
    cr_assert_eq(map_sgl(&d, 5000, false), 0);
    cr_assert_eq(r->iovcnt, 1);
    cr_assert_eq(r->iov[0].iov_base, hp(p + 3));
    cr_assert_eq(map_sgl(&d, 4096, false), GEN(NVME_SC_SGL_INVALID_DATA), "SGL longer");
    cr_assert_eq(map_sgl(&d, 6000, false), GEN(NVME_SC_SGL_INVALID_DATA), "SGL shorter");
    sgl(&d, HOST_RAM - 100, 200, 0);
    cr_assert_eq(map_sgl(&d, 200, false), GEN(NVME_SC_DATA_XFER_ERROR));
    sgl(&d, p, 512, 4); /* keyed */
    cr_assert_eq(map_sgl(&d, 512, false), GEN(NVME_SC_SGL_INVALID_TYPE));
    sgl(&d, p, 512, 0);
    d.type |= 1; /* offset subtype */
    cr_assert_eq(map_sgl(&d, 512, false), GEN(NVME_SC_SGL_INVALID_TYPE));
    sgl(&d, p, 512, 0xf);
    cr_assert_eq(map_sgl(&d, 512, false), GEN(NVME_SC_SGL_INVALID_TYPE));
}

Test(nvme_dptr, sgl_segments_and_bit_bucket)
{
    uint64_t data = host_alloc(h, 4 * 4096), seg1 = host_alloc(h, 4096), seg2 = host_alloc(h, 4096);
    struct nvme_sgl_desc *s1 = hp(seg1), *s2 = hp(seg2), d;
    /* Segment: two data blocks (one zero-length) then a Last Segment with two more. */
    sgl(&s1[0], data, 1024, 0);
    sgl(&s1[1], data + 9999, 0, 0);
    sgl(&s1[2], seg2, 2 * 16, 3);
    sgl(&s2[0], data + 1024, 1024, 0); /* adjacent: merges with the first */
    sgl(&s2[1], data + 8192, 2048, 0);
    sgl(&d, seg1, 3 * 16, 2);
    cr_assert_eq(map_sgl(&d, 4096, false), 0);
    cr_assert_eq(r->iovcnt, 2);
    cr_assert_eq(r->iov[0].iov_len, 2048);
    cr_assert_eq(r->iov[1].iov_base, hp(data + 8192));
    /* Bit bucket: counts toward the length, lands outside guest memory; reads only. */
    sgl(&s2[1], 0, 2048, 1);
    cr_assert_eq(map_sgl(&d, 4096, true), 0);
    cr_assert_eq(r->data_len, 4096);
    uint8_t *ram = h->ram;
    cr_assert((uint8_t *)r->iov[1].iov_base < ram ||
              (uint8_t *)r->iov[1].iov_base >= ram + HOST_RAM);
    cr_assert_eq(map_sgl(&d, 4096, false), GEN(NVME_SC_SGL_INVALID_TYPE));
    /* Copying to the guest through it writes only the real blocks (and marks them dirty). */
    cr_assert_eq(guest_mem_dirty_enable(&h->mem), 0);
    uint8_t src[4096];
    memset(src, 0x77, sizeof(src));
    memset(hp(data), 0, 4 * 4096);
    memset(&r->cmd, 0, sizeof(r->cmd));
    r->cmd.flags = 1 << 6;
    memcpy(r->cmd.dptr, &d, sizeof(d));
    cr_assert_eq(nvme_dptr_to_guest(h->c, r, src, sizeof(src)), 0);
    cr_assert_eq(((uint8_t *)hp(data))[2047], 0x77);
    cr_assert_eq(((uint8_t *)hp(data))[2048], 0);
    uint64_t *bits = calloc(HOST_RAM / 4096 / 64, 8);
    guest_mem_dirty_collect(&h->mem, bits);
    cr_assert(bits[(data >> 12) / 64] >> ((data >> 12) % 64) & 1);
    free(bits);
}

Test(nvme_dptr, sgl_invalid_segments)
{
    uint64_t data = host_alloc(h, 4096), seg = host_alloc(h, 4096), seg2 = host_alloc(h, 4096);
    struct nvme_sgl_desc *s = hp(seg), *s2 = hp(seg2), d;
    sgl(&d, seg, 20, 2);
    cr_assert_eq(map_sgl(&d, 512, false), GEN(NVME_SC_SGL_INVALID_COUNT), "length not 16n");
    sgl(&d, seg, 0, 3);
    cr_assert_eq(map_sgl(&d, 512, false), GEN(NVME_SC_SGL_INVALID_COUNT), "empty segment");
    sgl(&d, HOST_RAM, 32, 3);
    cr_assert_eq(map_sgl(&d, 512, false), GEN(NVME_SC_DATA_XFER_ERROR));
    /* A segment descriptor in a non-last position. */
    sgl(&s[0], seg2, 16, 2);
    sgl(&s[1], data, 512, 0);
    sgl(&d, seg, 32, 2);
    cr_assert_eq(map_sgl(&d, 512, false), GEN(NVME_SC_SGL_INVALID_LAST));
    /* A Last Segment may not chain further. */
    sgl(&s[0], data, 256, 0);
    sgl(&s[1], seg2, 16, 3);
    sgl(&d, seg, 32, 3);
    cr_assert_eq(map_sgl(&d, 512, false), GEN(NVME_SC_SGL_INVALID_LAST));
    sgl(&s2[0], data + 256, 256, 0);
    sgl(&d, seg, 32, 2);
    cr_assert_eq(map_sgl(&d, 512, false), 0, "the same as a Segment is fine");
    /* A segment that points to itself: bounded, not a hang. */
    sgl(&s[0], seg, 16, 2);
    sgl(&d, seg, 16, 2);
    cr_assert_eq(map_sgl(&d, 512, false), GEN(NVME_SC_SGL_INVALID_COUNT));
    /* Two segments pointing at each other, each with a data block: also bounded. */
    sgl(&s[0], data, 1, 0);
    sgl(&s[1], seg2, 32, 2);
    sgl(&s2[0], data, 1, 0);
    sgl(&s2[1], seg, 32, 2);
    sgl(&d, seg, 32, 2);
    uint16_t st = map_sgl(&d, 1u << 20, false);
    cr_assert(st == GEN(NVME_SC_SGL_INVALID_COUNT) || st == GEN(NVME_SC_INVALID_FIELD) ||
                  st == GEN(NVME_SC_SGL_INVALID_DATA),
              "status %#x", st);
}

Test(nvme_dptr, too_fragmented)
{
    uint64_t data = host_alloc(h, 300 * 1024), seg = host_alloc(h, 300 * 16);
    struct nvme_sgl_desc *s = hp(seg), d;
    for (int i = 0; i < 300; i++)
        sgl(&s[i], data + (uint64_t)i * 1024, 512, 0); /* gaps: no merging */
    sgl(&d, seg, 300 * 16, 3);
    cr_assert_eq(map_sgl(&d, 300 * 512, false), GEN(NVME_SC_INVALID_FIELD));
    cr_assert_eq(r->iovcnt, 0);
    cr_assert_eq(map_sgl(&d, 300 * 512 - 1, false), GEN(NVME_SC_INVALID_FIELD));
}

Test(nvme_dptr, sgl_read_through_the_io_path)
{
    uint64_t data = host_alloc(h, 8192), seg = host_alloc(h, 4096);
    memset(blk_mem_data(h->disk[0]), 0x3c, 4096);
    struct nvme_sgl_desc *s = hp(seg);
    sgl(&s[0], 0, 1024, 1);
    sgl(&s[1], data, 3072, 0);
    struct nvme_sqe cmd = {.opcode = nvme_cmd_read, .nsid = 1, .flags = 1 << 6, .cdw12 = 7};
    struct nvme_sgl_desc d;
    sgl(&d, seg, 32, 3);
    memcpy(cmd.dptr, &d, sizeof(d));
    cr_assert_eq(host_io(h, 1, &cmd, NULL), 0);
    cr_assert_eq(((uint8_t *)hp(data))[0], 0x3c);
    cr_assert_eq(((uint8_t *)hp(data))[3071], 0x3c);
    cr_assert_eq(((uint8_t *)hp(data))[3072], 0);
    /* Keyed SGL on the I/O path: SGL Descriptor Type Invalid. */
    sgl(&d, data, 4096, 4);
    memcpy(cmd.dptr, &d, sizeof(d));
    cr_assert_eq(host_io(h, 1, &cmd, NULL), GEN(NVME_SC_SGL_INVALID_TYPE));
}
