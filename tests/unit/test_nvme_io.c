/*
 * The NVM I/O command set (emu/nvme_io.c) on the RAM block backend.
 *
 * This file builds two test programs:
 *  - test_nvme_io: the controller's queue, data-pointer and log code are replaced by small
 *    local stubs (below): commands go straight into nvme_io_exec and complete into a
 *    record here, so every status and every intermediate state (held completions, the
 *    flush after a write) can be inspected. The data pointer stub takes PRP1 as one
 *    contiguous buffer (split in two iovecs to exercise scatter).
 *  - test_nvme_io_host (NVME_IO_WITH_HOST): the same command set through the real
 *    controller, driven by the simulated host (tests/unit/nvme_host.c): real PRP lists,
 *    SQ/CQ, SMART counters and error log.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "emu/nvme_int.h"

#ifndef NVME_IO_WITH_HOST /* built twice: with local stubs, and on the real controller */

#define RAM_SIZE (8u << 20)
#define DISK     (2u << 20) /* 4096 LBAs of 512 bytes */
#define NSZE     (DISK >> 9)
#define BUF      0x100000ull /* guest buffers */
#define BUF2     0x300000ull

#define GEN(sc)   NVME_STATUS(NVME_SCT_GENERIC, sc)
#define CMD(sc)   NVME_STATUS(NVME_SCT_CMD_SPECIFIC, sc)
#define MEDIA(sc) NVME_STATUS(NVME_SCT_MEDIA, sc)

static struct nvme_ctrl *c;
static struct guest_mem mem;
static uint8_t *ram;
static struct blk_dev *disk;

/* What the stubs saw. */
static int completions;
static uint16_t last_status;
static int errlog_adds;
static uint16_t errlog_status;
static uint64_t errlog_lba;
static uint64_t acct_read_bytes, acct_write_bytes;
static int acct_reads, acct_writes;
static int dirty_marks;

static void add_ns(uint32_t nsid, struct blk_dev *d)
{
    struct nvme_ns *ns = &c->ns[nsid - 1];
    ns->nsid = nsid;
    ns->present = ns->attached = true;
    ns->blk = d;
    ns->q = blk_queue_new(d, 64);
    ns->lba_shift = 9;
    ns->nsze = d->size >> 9;
    ns->read_only = d->read_only;
}

static void setup(void)
{
    c = calloc(1, sizeof(*c));
    ram = calloc(1, RAM_SIZE);
    guest_mem_layout(&mem, ram, RAM_SIZE, RAM_SIZE);
    cr_assert_eq(guest_mem_dirty_enable(&mem), 0);
    c->mem = &mem;
    c->cfg.mdts = 5; /* 128 KiB */
    c->feat.vwc = true;
    disk = blk_mem_new(DISK);
    add_ns(1, disk);
    completions = errlog_adds = acct_reads = acct_writes = dirty_marks = 0;
    acct_read_bytes = acct_write_bytes = 0;
}

static void teardown(void)
{
    for (int i = 0; i < NVME_MAX_NAMESPACES; i++) {
        struct nvme_ns *ns = &c->ns[i];
        if (ns->q)
            blk_queue_free(ns->q);
        if (ns->blk)
            blk_close(ns->blk);
        nvme_ns_bad_clear(ns);
    }
    free(mem.dirty);
    free(ram);
    free(c);
}

TestSuite(nvme_io, .init = setup, .fini = teardown, .timeout = 20);

static struct nvme_sqe cmd(uint8_t op, uint32_t nsid, uint64_t slba, uint32_t nlb, uint64_t gpa)
{
    return (struct nvme_sqe){.opcode = op,
                             .nsid = nsid,
                             .cdw10 = (uint32_t)slba,
                             .cdw11 = (uint32_t)(slba >> 32),
                             .cdw12 = nlb - 1,
                             .dptr = {gpa, 0}};
}

/* Processes storage like the controller's loop: flush the batch, wait briefly on the
 * completion fds (io_uring completes asynchronously), reap. */
static void pump(void)
{
    struct pollfd p[NVME_MAX_NAMESPACES];
    int n = 0;
    for (int i = 0; i < NVME_MAX_NAMESPACES; i++)
        if (c->ns[i].q) {
            blk_flush_submissions(c->ns[i].q);
            p[n++] = (struct pollfd){.fd = blk_completion_fd(c->ns[i].q), .events = POLLIN};
        }
    poll(p, (nfds_t)n, 5);
    for (int i = 0; i < n; i++) { /* the waiter drains the fds, as the I/O thread does */
        uint64_t v;
        if ((p[i].revents & POLLIN) && read(p[i].fd, &v, sizeof(v)) < 0)
            continue;
    }
    nvme_io_reap(c);
}

static struct nvme_req *start(struct nvme_sqe s)
{
    struct nvme_req *r = calloc(1, sizeof(*r));
    r->cmd = s;
    nvme_io_exec(c, r);
    return r;
}

static uint16_t run(struct nvme_sqe s)
{
    int before = completions;
    struct nvme_req *r = start(s);
    for (int i = 0; i < 1000 && completions == before; i++)
        pump();
    cr_assert_eq(completions, before + 1, "command did not complete exactly once");
    cr_assert_null(r->bounce, "bounce buffer leaked");
    free(r);
    return last_status;
}

static void fill(uint64_t gpa, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        ram[gpa + i] = (uint8_t)(i * 13 + seed);
}

static bool disk_is(uint64_t lba, uint32_t nlb, int v)
{
    for (size_t i = 0; i < (size_t)nlb * 512; i++)
        if (blk_mem_data(disk)[lba * 512 + i] != v)
            return false;
    return true;
}

Test(nvme_io, write_then_read_back_and_smart_accounting)
{
    fill(BUF, 8 * 512, 1);
    cr_assert_eq(run(cmd(nvme_cmd_write, 1, 100, 8, BUF)), NVME_OK);
    cr_assert_arr_eq(blk_mem_data(disk) + 100 * 512, ram + BUF, 8 * 512);
    cr_assert_eq(run(cmd(nvme_cmd_read, 1, 100, 8, BUF2)), NVME_OK);
    cr_assert_arr_eq(ram + BUF2, ram + BUF, 8 * 512);
    cr_assert_eq(acct_writes, 1);
    cr_assert_eq(acct_write_bytes, 4096);
    cr_assert_eq(acct_reads, 1);
    cr_assert_eq(acct_read_bytes, 4096);
}

Test(nvme_io, lba_out_of_range)
{
    uint16_t want = GEN(NVME_SC_LBA_RANGE) | NVME_SC_DNR;
    cr_assert_eq(run(cmd(nvme_cmd_read, 1, NSZE - 1, 2, BUF)), want);
    cr_assert_eq(run(cmd(nvme_cmd_write, 1, NSZE, 1, BUF)), want);
    cr_assert_eq(run(cmd(nvme_cmd_read, 1, UINT64_MAX, 2, BUF)), want, "slba+nlb wraps");
    cr_assert_eq(run(cmd(nvme_cmd_write_zeroes, 1, NSZE - 8, 9, 0)), want);
    cr_assert_eq(run(cmd(nvme_cmd_verify, 1, UINT64_MAX - 1, 16, 0)), want);
    cr_assert_eq(run(cmd(nvme_cmd_write_uncor, 1, NSZE, 1, 0)), want);
    cr_assert_eq(run(cmd(nvme_cmd_read, 1, NSZE - 1, 1, BUF)), NVME_OK, "last LBA is fine");
    cr_assert_eq(acct_reads, 1, "failed commands are not accounted");
}

Test(nvme_io, invalid_namespace_and_opcode)
{
    uint16_t inv = GEN(NVME_SC_INVALID_NS) | NVME_SC_DNR;
    cr_assert_eq(run(cmd(nvme_cmd_read, 0, 0, 1, BUF)), inv);
    cr_assert_eq(run(cmd(nvme_cmd_read, 2, 0, 1, BUF)), inv, "not allocated");
    cr_assert_eq(run(cmd(nvme_cmd_read, 17, 0, 1, BUF)), inv);
    cr_assert_eq(run(cmd(nvme_cmd_read, 0xffffffff, 0, 1, BUF)), inv, "broadcast is flush only");
    cr_assert_eq(run(cmd(nvme_cmd_write, 0xffffffff, 0, 1, BUF)), inv);
    c->ns[0].attached = false;
    cr_assert_eq(run(cmd(nvme_cmd_read, 1, 0, 1, BUF)), inv, "detached");
    c->ns[0].attached = true;
    cr_assert_eq(run(cmd(0x7f, 1, 0, 1, BUF)), GEN(NVME_SC_INVALID_OPCODE) | NVME_SC_DNR);
    cr_assert_eq(run(cmd(nvme_cmd_resv_register, 1, 0, 1, BUF)),
                 GEN(NVME_SC_INVALID_OPCODE) | NVME_SC_DNR);
    struct nvme_sqe fused = cmd(nvme_cmd_read, 1, 0, 1, BUF);
    fused.flags = 1;
    cr_assert_eq(run(fused), GEN(NVME_SC_INVALID_FIELD) | NVME_SC_DNR);
}

Test(nvme_io, read_only_namespace_refuses_every_modification)
{
    struct blk_dev *ro = blk_mem_new(DISK);
    ro->read_only = true;
    add_ns(2, ro);
    uint16_t wp = GEN(NVME_SC_NS_WRITE_PROTECTED) | NVME_SC_DNR;
    cr_assert_eq(run(cmd(nvme_cmd_write, 2, 0, 1, BUF)), wp);
    cr_assert_eq(run(cmd(nvme_cmd_write_zeroes, 2, 0, 1, 0)), wp);
    cr_assert_eq(run(cmd(nvme_cmd_write_uncor, 2, 0, 1, 0)), wp);
    struct nvme_sqe dsm = cmd(nvme_cmd_dsm, 2, 0, 1, BUF);
    dsm.cdw10 = 0;
    dsm.cdw11 = NVME_DSMGMT_AD;
    cr_assert_eq(run(dsm), wp);
    struct nvme_sqe cp = cmd(nvme_cmd_copy, 2, 0, 1, BUF);
    cp.cdw12 = 0;
    cr_assert_eq(run(cp), wp);
    cr_assert_eq(run(cmd(nvme_cmd_read, 2, 0, 1, BUF)), NVME_OK);
    cr_assert_eq(run(cmd(nvme_cmd_flush, 2, 0, 1, 0)), NVME_OK);
}

Test(nvme_io, mdts_exceeded)
{
    /* MDTS 5 = 128 KiB = 256 LBAs. */
    cr_assert_eq(run(cmd(nvme_cmd_read, 1, 0, 256, BUF)), NVME_OK);
    cr_assert_eq(run(cmd(nvme_cmd_read, 1, 0, 257, BUF)), GEN(NVME_SC_INVALID_FIELD) | NVME_SC_DNR);
    cr_assert_eq(run(cmd(nvme_cmd_write, 1, 0, 257, BUF)),
                 GEN(NVME_SC_INVALID_FIELD) | NVME_SC_DNR);
    cr_assert_eq(run(cmd(nvme_cmd_compare, 1, 0, 257, BUF)),
                 GEN(NVME_SC_INVALID_FIELD) | NVME_SC_DNR);
    /* Verify and Write Zeroes move no data: not limited by MDTS. */
    cr_assert_eq(run(cmd(nvme_cmd_verify, 1, 0, 4096, 0)), NVME_OK);
    cr_assert_eq(run(cmd(nvme_cmd_write_zeroes, 1, 0, 4096, 0)), NVME_OK);
}

Test(nvme_io, bad_data_pointer_is_a_data_transfer_error)
{
    uint16_t dte = GEN(NVME_SC_DATA_XFER_ERROR);
    cr_assert_eq(run(cmd(nvme_cmd_read, 1, 0, 8, RAM_SIZE - 512)), dte);
    cr_assert_eq(run(cmd(nvme_cmd_write, 1, 0, 1, 1ull << 40)), dte);
    cr_assert_eq(run(cmd(nvme_cmd_compare, 1, 0, 1, UINT64_MAX - 100)), dte);
    struct nvme_sqe dsm = cmd(nvme_cmd_dsm, 1, 0, 1, 1ull << 40);
    dsm.cdw10 = 255;
    dsm.cdw11 = NVME_DSMGMT_AD;
    cr_assert_eq(run(dsm), dte);
    cr_assert(disk_is(0, 8, 0), "nothing was written");
}

Test(nvme_io, flush_single_and_broadcast)
{
    add_ns(3, blk_mem_new(DISK));
    cr_assert_eq(run(cmd(nvme_cmd_flush, 1, 0, 1, 0)), NVME_OK);
    cr_assert_eq(run(cmd(nvme_cmd_flush, 0xffffffff, 0, 1, 0)), NVME_OK);
    /* A failing flush reports a write fault and logs it; broadcast reports it too, after
     * flushing the other namespaces. */
    blk_mem_inject_error(disk, 0, 0, EIO);
    cr_assert_eq(run(cmd(nvme_cmd_flush, 1, 0, 1, 0)), MEDIA(NVME_SC_WRITE_FAULT));
    cr_assert_eq(run(cmd(nvme_cmd_flush, 0xffffffff, 0, 1, 0)), MEDIA(NVME_SC_WRITE_FAULT));
    cr_assert_eq(errlog_adds, 2);
    cr_assert_eq(run(cmd(nvme_cmd_flush, 3, 0, 1, 0)), NVME_OK);
}

/* With the volatile write cache off, a write completes only after a flush. */
Test(nvme_io, vwc_off_write_waits_for_its_flush)
{
    c->feat.vwc = false;
    blk_mem_hold(disk, true);
    struct nvme_req *r = start(cmd(nvme_cmd_write, 1, 0, 1, BUF));
    pump();
    cr_assert_eq(completions, 0);
    blk_mem_release(disk); /* the write lands ... */
    pump();
    cr_assert_eq(completions, 0, "... but the flush is still in flight");
    cr_assert_eq(r->blk.op, BLK_FLUSH);
    blk_mem_release(disk);
    pump();
    cr_assert_eq(completions, 1);
    cr_assert_eq(last_status, NVME_OK);
    free(r);
    blk_mem_hold(disk, false);
    /* Flush with nothing volatile: immediate success. */
    cr_assert_eq(run(cmd(nvme_cmd_flush, 1, 0, 1, 0)), NVME_OK);
}

Test(nvme_io, fua_write_is_followed_by_a_flush)
{
    blk_mem_hold(disk, true);
    struct nvme_sqe s = cmd(nvme_cmd_write, 1, 0, 1, BUF);
    s.cdw12 |= (uint32_t)NVME_IO_FUA << 16;
    struct nvme_req *r = start(s);
    blk_mem_release(disk);
    pump();
    cr_assert_eq(completions, 0);
    cr_assert_eq(r->blk.op, BLK_FLUSH);
    blk_mem_hold(disk, false);
    pump();
    cr_assert_eq(completions, 1);
    free(r);
}

Test(nvme_io, write_zeroes_and_deallocate_read_zeroes)
{
    memset(blk_mem_data(disk), 0xaa, DISK);
    cr_assert_eq(run(cmd(nvme_cmd_write_zeroes, 1, 10, 5, 0)), NVME_OK);
    cr_assert(disk_is(10, 5, 0));
    cr_assert(disk_is(9, 1, 0xaa) && disk_is(15, 1, 0xaa));
    struct nvme_sqe wz = cmd(nvme_cmd_write_zeroes, 1, 100, 3, 0);
    wz.cdw12 |= 1u << 25; /* DEAC */
    cr_assert_eq(run(wz), NVME_OK);
    cr_assert(disk_is(100, 3, 0) && disk_is(103, 1, 0xaa));
    memset(ram + BUF2, 0xee, 512);
    cr_assert_eq(run(cmd(nvme_cmd_read, 1, 101, 1, BUF2)), NVME_OK);
    for (int i = 0; i < 512; i++)
        cr_assert_eq(ram[BUF2 + i], 0);
}

static uint64_t put_dsm(uint64_t gpa, int i, uint64_t slba, uint32_t nlb)
{
    struct nvme_dsm_range d = {.cattr = 0, .nlb = htole32(nlb), .slba = htole64(slba)};
    memcpy(ram + gpa + (size_t)i * sizeof(d), &d, sizeof(d));
    return gpa;
}

Test(nvme_io, dsm_deallocate_then_read_zeroes)
{
    memset(blk_mem_data(disk), 0x5c, DISK);
    put_dsm(BUF, 0, 8, 4);
    put_dsm(BUF, 1, 50, 0); /* empty ranges are skipped */
    put_dsm(BUF, 2, 200, 16);
    struct nvme_sqe s = cmd(nvme_cmd_dsm, 1, 0, 1, BUF);
    s.cdw10 = 2; /* 3 ranges */
    s.cdw11 = NVME_DSMGMT_AD | NVME_DSMGMT_IDR;
    s.cdw12 = 0;
    cr_assert_eq(run(s), NVME_OK);
    cr_assert(disk_is(8, 4, 0) && disk_is(200, 16, 0));
    cr_assert(disk_is(7, 1, 0x5c) && disk_is(12, 1, 0x5c) && disk_is(216, 1, 0x5c));
    cr_assert(disk_is(50, 1, 0x5c));
    cr_assert_eq(run(cmd(nvme_cmd_read, 1, 200, 16, BUF2)), NVME_OK);
    for (int i = 0; i < 16 * 512; i++)
        cr_assert_eq(ram[BUF2 + i], 0);

    /* One bad range fails the whole command before anything is deallocated. */
    memset(blk_mem_data(disk), 0x5c, DISK);
    put_dsm(BUF, 0, 8, 4);
    put_dsm(BUF, 1, NSZE - 1, 2);
    s.cdw10 = 1;
    cr_assert_eq(run(s), GEN(NVME_SC_LBA_RANGE) | NVME_SC_DNR);
    cr_assert(disk_is(8, 4, 0x5c));

    /* Hints only: accepted, nothing changes. */
    s.cdw11 = NVME_DSMGMT_IDW;
    cr_assert_eq(run(s), NVME_OK);
    cr_assert(disk_is(8, 4, 0x5c));

    /* All 256 ranges. */
    for (int i = 0; i < 256; i++)
        put_dsm(BUF, i, (uint64_t)i * 16, 1);
    s.cdw10 = 255;
    s.cdw11 = NVME_DSMGMT_AD;
    cr_assert_eq(run(s), NVME_OK);
    cr_assert(disk_is(0, 1, 0) && disk_is(255 * 16, 1, 0) && disk_is(1, 15, 0x5c));
}

Test(nvme_io, compare_match_and_mismatch)
{
    fill(BUF, 4 * 512, 7);
    cr_assert_eq(run(cmd(nvme_cmd_write, 1, 40, 4, BUF)), NVME_OK);
    cr_assert_eq(run(cmd(nvme_cmd_compare, 1, 40, 4, BUF)), NVME_OK);
    ram[BUF + 3 * 512 + 17] ^= 1;
    cr_assert_eq(run(cmd(nvme_cmd_compare, 1, 40, 4, BUF)),
                 MEDIA(NVME_SC_COMPARE_FAILED) | NVME_SC_DNR);
    cr_assert_arr_neq(blk_mem_data(disk) + 40 * 512, ram + BUF, 4 * 512);
}

Test(nvme_io, verify_reads_and_checks_bad_ranges)
{
    cr_assert_eq(run(cmd(nvme_cmd_verify, 1, 0, 1000, 0)), NVME_OK);
    blk_mem_inject_error(disk, 600 * 512, 512, EIO);
    cr_assert_eq(run(cmd(nvme_cmd_verify, 1, 0, 1000, 0)), MEDIA(NVME_SC_READ_ERROR));
    cr_assert_eq(errlog_adds, 1);
    cr_assert_eq(errlog_lba, 512, "the failing chunk (MDTS-sized) is reported");
    cr_assert_eq(c->smart.media_errors, 1);
}

static uint64_t put_copy(uint64_t gpa, int i, uint64_t slba, uint32_t nlb)
{
    struct nvme_copy_range d;
    memset(&d, 0, sizeof(d));
    d.slba = htole64(slba);
    d.nlb = htole16((uint16_t)(nlb - 1));
    memcpy(ram + gpa + (size_t)i * sizeof(d), &d, sizeof(d));
    return gpa;
}

static struct nvme_sqe copy_cmd(uint64_t sdlba, int nr, uint64_t gpa)
{
    struct nvme_sqe s = cmd(nvme_cmd_copy, 1, sdlba, 1, gpa);
    s.cdw12 = (uint32_t)(nr - 1);
    return s;
}

Test(nvme_io, copy_across_ranges)
{
    uint8_t *d = blk_mem_data(disk);
    for (int lba = 0; lba < 64; lba++)
        memset(d + lba * 512, lba + 1, 512);
    put_copy(BUF, 0, 2, 3);  /* LBAs 2..4 */
    put_copy(BUF, 1, 10, 1); /* LBA 10 */
    put_copy(BUF, 2, 20, 2); /* LBAs 20..21 */
    cr_assert_eq(run(copy_cmd(1000, 3, BUF)), NVME_OK);
    int want[] = {3, 4, 5, 11, 21, 22};
    for (int i = 0; i < 6; i++)
        cr_assert(disk_is(1000 + (uint64_t)i, 1, want[i]), "dest LBA %d", 1000 + i);
    cr_assert(disk_is(1006, 1, 0));
}

Test(nvme_io, copy_larger_than_mdts_goes_in_chunks)
{
    uint8_t *d = blk_mem_data(disk);
    for (int i = 0; i < 2048 * 512; i++)
        d[i] = (uint8_t)(i / 512 + i);
    for (int i = 0; i < 8; i++)
        put_copy(BUF, i, (uint64_t)i * 256, 256); /* MCL worth, 8 x MSSRL */
    cr_assert_eq(run(copy_cmd(2048, 8, BUF)), NVME_OK);
    cr_assert_arr_eq(d + 2048 * 512, d, 2048 * 512);
}

Test(nvme_io, copy_limits_and_errors)
{
    uint16_t limit = CMD(NVME_SC_CMD_SIZE_LIMIT_EXCEEDED) | NVME_SC_DNR;
    put_copy(BUF, 0, 0, NVME_COPY_MSSRL + 1);
    cr_assert_eq(run(copy_cmd(3000, 1, BUF)), limit, "MSSRL");
    for (int i = 0; i < 9; i++)
        put_copy(BUF, i, (uint64_t)i * 256, 256);
    cr_assert_eq(run(copy_cmd(0, 9, BUF)), limit, "MCL");
    cr_assert_eq(run(copy_cmd(0, NVME_COPY_MSRC + 2, BUF)), limit, "MSRC");
    put_copy(BUF, 0, NSZE - 1, 2);
    cr_assert_eq(run(copy_cmd(0, 1, BUF)), GEN(NVME_SC_LBA_RANGE) | NVME_SC_DNR, "source");
    put_copy(BUF, 0, 0, 2);
    cr_assert_eq(run(copy_cmd(NSZE - 1, 1, BUF)), GEN(NVME_SC_LBA_RANGE) | NVME_SC_DNR, "dest");
    struct nvme_sqe s = copy_cmd(0, 1, BUF);
    s.cdw12 |= 1u << 8; /* descriptor format 1 */
    cr_assert_eq(run(s), GEN(NVME_SC_INVALID_FIELD) | NVME_SC_DNR);
    cr_assert_eq(run(copy_cmd(0, 1, 1ull << 40)), GEN(NVME_SC_DATA_XFER_ERROR));
}

Test(nvme_io, write_uncorrectable_then_read_fails_then_write_fixes_it)
{
    uint16_t ure = MEDIA(NVME_SC_READ_ERROR) | NVME_SC_DNR;
    cr_assert_eq(run(cmd(nvme_cmd_write_uncor, 1, 100, 10, 0)), NVME_OK);
    cr_assert(nvme_ns_lba_bad(&c->ns[0], 109, 1));
    cr_assert(!nvme_ns_lba_bad(&c->ns[0], 110, 5));
    cr_assert(!nvme_ns_lba_bad(&c->ns[0], 90, 10));
    cr_assert_eq(run(cmd(nvme_cmd_read, 1, 95, 6, BUF)), ure);
    cr_assert_eq(errlog_adds, 1);
    cr_assert_eq(errlog_status, ure);
    cr_assert_eq(errlog_lba, 95);
    cr_assert_eq(run(cmd(nvme_cmd_verify, 1, 105, 1, 0)), ure);
    cr_assert_eq(run(cmd(nvme_cmd_compare, 1, 105, 1, BUF)), ure);
    put_copy(BUF2, 0, 108, 4);
    cr_assert_eq(run(copy_cmd(500, 1, BUF2)), ure, "copy source");

    /* Writing the middle splits the range: the rewritten blocks read again. */
    cr_assert_eq(run(cmd(nvme_cmd_write, 1, 103, 2, BUF)), NVME_OK);
    cr_assert_eq(c->ns[0].nr_bad, 2);
    cr_assert_eq(run(cmd(nvme_cmd_read, 1, 103, 2, BUF)), NVME_OK);
    cr_assert_eq(run(cmd(nvme_cmd_read, 1, 102, 1, BUF)), ure);
    cr_assert_eq(run(cmd(nvme_cmd_read, 1, 105, 1, BUF)), ure);
    /* Write Zeroes and deallocate fix the rest. */
    cr_assert_eq(run(cmd(nvme_cmd_write_zeroes, 1, 100, 3, 0)), NVME_OK);
    put_dsm(BUF2, 0, 105, 5);
    struct nvme_sqe dsm = cmd(nvme_cmd_dsm, 1, 0, 1, BUF2);
    dsm.cdw10 = 0;
    dsm.cdw11 = NVME_DSMGMT_AD;
    dsm.cdw12 = 0;
    cr_assert_eq(run(dsm), NVME_OK);
    cr_assert_eq(c->ns[0].nr_bad, 0);
    cr_assert_eq(run(cmd(nvme_cmd_read, 1, 100, 10, BUF)), NVME_OK);
    /* Copy onto bad blocks fixes them too. */
    cr_assert_eq(run(cmd(nvme_cmd_write_uncor, 1, 500, 2, 0)), NVME_OK);
    put_copy(BUF2, 0, 0, 2);
    cr_assert_eq(run(copy_cmd(500, 1, BUF2)), NVME_OK);
    cr_assert_eq(c->ns[0].nr_bad, 0);
}

Test(nvme_io, bad_ranges_merge_and_stay_bounded)
{
    cr_assert_eq(run(cmd(nvme_cmd_write_uncor, 1, 10, 5, 0)), NVME_OK);
    cr_assert_eq(run(cmd(nvme_cmd_write_uncor, 1, 15, 5, 0)), NVME_OK);  /* touching */
    cr_assert_eq(run(cmd(nvme_cmd_write_uncor, 1, 12, 20, 0)), NVME_OK); /* overlapping */
    cr_assert_eq(run(cmd(nvme_cmd_write_uncor, 1, 0, 2, 0)), NVME_OK);
    cr_assert_eq(c->ns[0].nr_bad, 2);
    cr_assert_eq(c->ns[0].bad[0].slba, 0);
    cr_assert_eq(c->ns[0].bad[1].slba, 10);
    cr_assert_eq(c->ns[0].bad[1].nlb, 22);
    cr_assert_eq(run(cmd(nvme_cmd_write_uncor, 1, 2, 8, 0)), NVME_OK); /* fills the gap */
    cr_assert_eq(c->ns[0].nr_bad, 1);
    cr_assert_eq(c->ns[0].bad[0].nlb, 32);

    /* Disjoint ranges up to the limit, then refusal (never unbounded growth). */
    nvme_ns_bad_clear(&c->ns[0]);
    for (int i = 0; i < NVME_IO_MAX_BAD_RANGES; i++)
        cr_assert_eq(run(cmd(nvme_cmd_write_uncor, 1, (uint64_t)i * 2, 1, 0)), NVME_OK);
    cr_assert_eq(run(cmd(nvme_cmd_write_uncor, 1, 4000, 1, 0)),
                 GEN(NVME_SC_INTERNAL) | NVME_SC_DNR);
    cr_assert_eq(run(cmd(nvme_cmd_write_uncor, 1, 1, 1, 0)), NVME_OK, "merging still works");
    cr_assert_eq(c->ns[0].nr_bad, NVME_IO_MAX_BAD_RANGES - 1);
}

Test(nvme_io, storage_errors_become_media_errors)
{
    blk_mem_inject_error(disk, 64 * 512, 512, EIO);
    cr_assert_eq(run(cmd(nvme_cmd_read, 1, 60, 8, BUF)), MEDIA(NVME_SC_READ_ERROR));
    cr_assert_eq(errlog_status, MEDIA(NVME_SC_READ_ERROR));
    cr_assert_eq(errlog_lba, 60);
    cr_assert_eq(run(cmd(nvme_cmd_write, 1, 64, 1, BUF)), MEDIA(NVME_SC_WRITE_FAULT));
    cr_assert_eq(errlog_status, MEDIA(NVME_SC_WRITE_FAULT));
    cr_assert_eq(errlog_adds, 2);
    cr_assert_eq(c->smart.media_errors, 2);
    blk_mem_inject_error(disk, 64 * 512, 512, ENOSPC);
    cr_assert_eq(run(cmd(nvme_cmd_write, 1, 64, 1, BUF)), GEN(NVME_SC_CAP_EXCEEDED) | NVME_SC_DNR);
    cr_assert_eq(acct_writes, 0);
}

Test(nvme_io, read_buffers_are_dirtied_after_the_data_lands)
{
    memset(blk_mem_data(disk), 0x42, 4096);
    uint64_t bits[RAM_SIZE / 4096 / 64];
    memset(bits, 0, sizeof(bits));
    guest_mem_dirty_collect(&mem, bits);
    memset(bits, 0, sizeof(bits));

    blk_mem_hold(disk, true);
    struct nvme_req *r = start(cmd(nvme_cmd_read, 1, 0, 8, BUF));
    pump();
    cr_assert_eq(completions, 0);
    guest_mem_dirty_collect(&mem, bits);
    cr_assert_eq(bits[BUF / 4096 / 64], 0, "dirty before the data landed");
    cr_assert_eq(ram[BUF], 0);

    blk_mem_release(disk);
    pump();
    cr_assert_eq(completions, 1);
    cr_assert_eq(ram[BUF], 0x42);
    cr_assert_eq(dirty_marks, 1);
    guest_mem_dirty_collect(&mem, bits);
    cr_assert(bits[BUF / 4096 / 64] & (1ull << (BUF / 4096 % 64)));
    free(r);
    blk_mem_hold(disk, false);

    /* Writes read guest memory: no dirtying. */
    cr_assert_eq(run(cmd(nvme_cmd_write, 1, 0, 8, BUF2)), NVME_OK);
    cr_assert_eq(dirty_marks, 1);
}

Test(nvme_io, many_commands_in_one_batch)
{
    struct nvme_req *r[64];
    for (int i = 0; i < 64; i++) {
        fill(BUF + (uint64_t)i * 512, 512, (unsigned)i);
        r[i] = start(cmd(nvme_cmd_write, 1, (uint64_t)i, 1, BUF + (uint64_t)i * 512));
    }
    cr_assert_eq(completions, 0, "nothing completes before the batch is flushed");
    pump();
    cr_assert_eq(completions, 64);
    cr_assert_arr_eq(blk_mem_data(disk), ram + BUF, 64 * 512);
    for (int i = 0; i < 64; i++)
        free(r[i]);
}

/* The same commands on a real file through io_uring (O_DIRECT where aligned). */
Test(nvme_io, file_backend_end_to_end)
{
    char path[] = "/var/tmp/nvmevm-test-nvme-io-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, DISK), 0);
    close(fd);
    char err[256];
    struct blk_open_opts o = {.cache = BLK_CACHE_NONE, .lock = true};
    struct blk_dev *d = blk_open(path, &o, err, sizeof(err));
    unlink(path);
    cr_assert_not_null(d, "%s", err);
    add_ns(4, d);

    fill(BUF, 64 * 512, 3);
    cr_assert_eq(run(cmd(nvme_cmd_write, 4, 8, 64, BUF)), NVME_OK);
    cr_assert_eq(run(cmd(nvme_cmd_read, 4, 8, 64, BUF2)), NVME_OK);
    cr_assert_arr_eq(ram + BUF2, ram + BUF, 64 * 512);
    cr_assert_eq(run(cmd(nvme_cmd_compare, 4, 8, 64, BUF)), NVME_OK);
    cr_assert_eq(run(cmd(nvme_cmd_flush, 4, 0, 1, 0)), NVME_OK);

    put_copy(BUF2, 0, 8, 16);
    struct nvme_sqe cp = copy_cmd(1000, 1, BUF2);
    cp.nsid = 4;
    cr_assert_eq(run(cp), NVME_OK);
    cr_assert_eq(run(cmd(nvme_cmd_read, 4, 1000, 16, BUF2)), NVME_OK);
    cr_assert_arr_eq(ram + BUF2, ram + BUF, 16 * 512);

    put_dsm(BUF2, 0, 8, 8);
    struct nvme_sqe dsm = cmd(nvme_cmd_dsm, 4, 0, 1, BUF2);
    dsm.cdw10 = 0;
    dsm.cdw11 = NVME_DSMGMT_AD;
    dsm.cdw12 = 0;
    cr_assert_eq(run(dsm), NVME_OK);
    cr_assert_eq(run(cmd(nvme_cmd_write_zeroes, 4, 20, 4, 0)), NVME_OK);
    cr_assert_eq(run(cmd(nvme_cmd_read, 4, 8, 64, BUF2)), NVME_OK);
    for (int i = 0; i < 64 * 512; i++) {
        bool zero = i < 8 * 512 || (i >= 12 * 512 && i < 16 * 512);
        cr_assert_eq(ram[BUF2 + i], zero ? 0 : ram[BUF + i], "byte %d", i);
    }
    cr_assert_eq(run(cmd(nvme_cmd_verify, 4, 0, 4096, 0)), NVME_OK);
}

/* ---- stubs for the rest of the controller ---- */

void nvme_req_complete(struct nvme_ctrl *ctrl, struct nvme_req *r)
{
    completions++;
    last_status = r->status;
}

void nvme_error_log_add(struct nvme_ctrl *ctrl, const struct nvme_req *r, uint16_t status,
                        uint64_t lba, uint32_t nsid)
{
    errlog_adds++;
    errlog_status = status;
    errlog_lba = lba;
}

void nvme_smart_account(struct nvme_ctrl *ctrl, bool write, uint64_t bytes)
{
    if (write) {
        acct_writes++;
        acct_write_bytes += bytes;
    } else {
        acct_reads++;
        acct_read_bytes += bytes;
    }
}

uint16_t nvme_dptr_map(struct nvme_ctrl *ctrl, struct nvme_req *r, uint64_t len, bool to_guest)
{
    uint8_t *p = gpa_ptr(ctrl->mem, r->cmd.dptr[0], len);
    if (!p)
        return GEN(NVME_SC_DATA_XFER_ERROR);
    uint64_t half = len >= 1024 ? len / 2 : len;
    r->iov[0] = (struct iovec){p, half};
    r->iov[1] = (struct iovec){p + half, len - half};
    r->iovcnt = half < len ? 2 : 1;
    return NVME_OK;
}

uint16_t nvme_dptr_from_guest(struct nvme_ctrl *ctrl, struct nvme_req *r, void *buf, uint64_t len)
{
    uint16_t s = nvme_dptr_map(ctrl, r, len, false);
    if (s == NVME_OK)
        memcpy(buf, ram + r->cmd.dptr[0], len);
    return s;
}

void nvme_dptr_mark_dirty(struct nvme_ctrl *ctrl, const struct nvme_req *r)
{
    dirty_marks++;
    for (int i = 0; i < r->iovcnt; i++)
        guest_mem_mark_dirty(ctrl->mem, (uint64_t)((uint8_t *)r->iov[i].iov_base - ram),
                             r->iov[i].iov_len);
}

#else /* NVME_IO_WITH_HOST */

#include "tests/unit/nvme_host.h"

static struct host *h;

static void host_setup(void)
{
    h = host_new(NULL);
    cr_assert_not_null(h);
    cr_assert(host_enable(h, 32));
    cr_assert_eq(host_create_io_queues(h, 1, 64, 0), 1);
}

static void host_teardown(void)
{
    host_free(h);
}

TestSuite(nvme_io_host, .init = host_setup, .fini = host_teardown, .timeout = 20);

static uint16_t io(struct nvme_sqe s)
{
    return host_io(h, 1, &s, NULL);
}

static struct nvme_sqe hcmd(uint8_t op, uint64_t slba, uint32_t nlb, uint64_t gpa)
{
    return (struct nvme_sqe){.opcode = op,
                             .nsid = 1,
                             .cdw10 = (uint32_t)slba,
                             .cdw11 = (uint32_t)(slba >> 32),
                             .cdw12 = nlb - 1,
                             .dptr = {gpa, 0}};
}

Test(nvme_io_host, write_read_through_prp_lists_with_smart_counters)
{
    uint64_t a = host_alloc(h, 64 * 512), b = host_alloc(h, 64 * 512);
    uint8_t *pa = host_ptr(h, a), *pb = host_ptr(h, b);
    for (int i = 0; i < 64 * 512; i++)
        pa[i] = (uint8_t)(i * 31 + 5);
    uint64_t w0 = h->c->smart.host_writes, r0 = h->c->smart.host_reads;
    cr_assert_eq(host_rw(h, 1, true, 7, 63, a), NVME_OK);
    cr_assert_eq(host_rw(h, 1, false, 7, 63, b), NVME_OK);
    cr_assert_arr_eq(pb, pa, 64 * 512);
    cr_assert_arr_eq(blk_mem_data(h->disk[0]) + 7 * 512, pa, 64 * 512);
    cr_assert_eq(h->c->smart.host_writes, w0 + 1);
    cr_assert_eq(h->c->smart.host_reads, r0 + 1);
}

Test(nvme_io_host, bad_prp_is_a_data_transfer_error)
{
    cr_assert_eq(host_rw(h, 1, false, 0, 0, HOST_RAM + 4096), GEN(NVME_SC_DATA_XFER_ERROR));
    /* A valid PRP1 with a PRP2 outside RAM: nothing may be transferred. */
    struct nvme_sqe s = hcmd(nvme_cmd_write, 0, 16, host_alloc(h, 4096));
    s.dptr[1] = HOST_RAM + 8192;
    cr_assert_eq(io(s), GEN(NVME_SC_DATA_XFER_ERROR));
}

Test(nvme_io_host, statuses_reach_the_host)
{
    uint64_t a = host_alloc(h, 4096);
    uint32_t nsze = HOST_DISK / 512;
    cr_assert_eq(io(hcmd(nvme_cmd_read, nsze, 1, a)), GEN(NVME_SC_LBA_RANGE));
    struct nvme_sqe s = hcmd(nvme_cmd_read, 0, 1, a);
    s.nsid = 9;
    cr_assert_eq(io(s), GEN(NVME_SC_INVALID_NS));
    cr_assert_eq(io(hcmd(0x7e, 0, 1, a)), GEN(NVME_SC_INVALID_OPCODE));
    /* MDTS 7 = 512 KiB = 1024 LBAs. */
    cr_assert_eq(io(hcmd(nvme_cmd_read, 0, 1025, a)), GEN(NVME_SC_INVALID_FIELD));
}

Test(nvme_io_host, write_uncorrectable_logs_a_media_error_until_rewritten)
{
    uint64_t a = host_alloc(h, 4096);
    uint64_t errs = h->c->error_count;
    cr_assert_eq(io(hcmd(nvme_cmd_write_uncor, 30, 4, 0)), NVME_OK);
    cr_assert_eq(host_rw(h, 1, false, 28, 3, a),
                 SF(NVME_SCT_MEDIA, NVME_SC_READ_ERROR) | NVME_SC_DNR);
    cr_assert_eq(h->c->error_count, errs + 1);
    cr_assert_eq(h->c->smart.media_errors, 1);
    cr_assert_eq(host_rw(h, 1, true, 30, 3, a), NVME_OK);
    cr_assert_eq(host_rw(h, 1, false, 28, 7, a), NVME_OK);
}

Test(nvme_io_host, dsm_and_copy_fetch_their_descriptors_from_guest_memory)
{
    uint8_t *disk = blk_mem_data(h->disk[0]);
    memset(disk, 0x77, 64 * 512);
    uint64_t d = host_alloc(h, 4096);
    struct nvme_dsm_range *r = host_ptr(h, d);
    r[0] = (struct nvme_dsm_range){.nlb = htole32(2), .slba = htole64(4)};
    struct nvme_sqe s = hcmd(nvme_cmd_dsm, 0, 1, d);
    s.cdw10 = 0;
    s.cdw11 = NVME_DSMGMT_AD;
    s.cdw12 = 0;
    cr_assert_eq(io(s), NVME_OK);
    cr_assert_eq(disk[4 * 512], 0);
    cr_assert_eq(disk[6 * 512 - 1], 0);
    cr_assert_eq(disk[6 * 512], 0x77);

    uint64_t cpd = host_alloc(h, 4096);
    struct nvme_copy_range *cr = host_ptr(h, cpd);
    cr[0].slba = htole64(10);
    cr[0].nlb = htole16(1); /* 2 LBAs */
    s = hcmd(nvme_cmd_copy, 200, 1, cpd);
    s.cdw12 = 0;
    cr_assert_eq(io(s), NVME_OK);
    cr_assert_arr_eq(disk + 200 * 512, disk + 10 * 512, 1024);
    cr_assert_eq(disk[200 * 512], 0x77);
}

Test(nvme_io_host, reads_dirty_guest_pages)
{
    if (!h->mem.dirty)
        cr_assert_eq(guest_mem_dirty_enable(&h->mem), 0);
    uint64_t a = host_alloc(h, 4096);
    size_t words = HOST_RAM / 4096 / 64;
    uint64_t *bits = calloc(words, sizeof(uint64_t));
    guest_mem_dirty_collect(&h->mem, bits);
    memset(bits, 0, words * sizeof(uint64_t));
    cr_assert_eq(host_rw(h, 1, false, 0, 7, a), NVME_OK);
    guest_mem_dirty_collect(&h->mem, bits);
    cr_assert(bits[a / 4096 / 64] & (1ull << (a / 4096 % 64)));
    free(bits);
}

#endif /* NVME_IO_WITH_HOST */
