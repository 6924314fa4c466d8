/*
 * Block backends against real files: the io_uring backend on a temp file in /var/tmp
 * (a disk filesystem: tmpfs may refuse O_DIRECT), and the RAM backend's hold/release.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "block/block.h"

static char path[64];

static void mkfile(uint64_t size)
{
    strcpy(path, "/var/tmp/nvmevm-test-block-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, (off_t)size), 0);
    close(fd);
}

static void cleanup(void)
{
    if (path[0])
        unlink(path);
    path[0] = 0;
}

TestSuite(block, .fini = cleanup, .timeout = 30);

struct done {
    int calls;
    int64_t res;
};

static void on_done(struct blk_req *r, int64_t res)
{
    struct done *d = r->opaque;
    d->calls++;
    d->res = res;
}

/* Waits on the completion eventfd (as the I/O thread does) until n requests finished. */
static void wait_for(struct blk_queue *q, int *count, int n)
{
    for (int spins = 0; *count < n; spins++) {
        struct pollfd p = {.fd = blk_completion_fd(q), .events = POLLIN};
        cr_assert_geq(poll(&p, 1, 5000), 0);
        uint64_t v;
        if (p.revents & POLLIN) /* drain it, as the I/O thread does */
            cr_assert_eq(read(p.fd, &v, sizeof(v)), sizeof(v));
        blk_reap(q);
        cr_assert_lt(spins, 10000, "requests never completed");
    }
}

static int64_t run(struct blk_queue *q, enum blk_op op, uint64_t off, void *buf, uint64_t len,
                   bool unmap)
{
    struct done d = {0};
    struct iovec iov = {buf, len};
    struct blk_req r = {.op = op,
                        .offset = off,
                        .len = len,
                        .iov = &iov,
                        .iovcnt = buf ? 1 : 0,
                        .unmap = unmap,
                        .done = on_done,
                        .opaque = &d};
    cr_assert_eq(blk_submit(q, &r), 0);
    blk_flush_submissions(q);
    wait_for(q, &d.calls, 1);
    cr_assert_eq(d.calls, 1);
    return d.res;
}

static struct blk_dev *open_ok(bool ro, enum blk_cache cache)
{
    char err[256] = "";
    struct blk_open_opts o = {.read_only = ro, .cache = cache, .lock = true};
    struct blk_dev *d = blk_open(path, &o, err, sizeof(err));
    cr_assert_not_null(d, "blk_open: %s", err);
    return d;
}

static void *aligned_buf(size_t len, int fill)
{
    void *p = NULL;
    cr_assert_eq(posix_memalign(&p, 4096, len), 0);
    memset(p, fill, len);
    return p;
}

static void pattern(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 7 + seed);
}

static void write_read_back(enum blk_cache cache, uint64_t off, size_t len)
{
    mkfile(1 << 20);
    struct blk_dev *d = open_ok(false, cache);
    struct blk_queue *q = blk_queue_new(d, 8);
    cr_assert_not_null(q);
    uint8_t *w = aligned_buf(len, 0), *r = aligned_buf(len, 0xee);
    pattern(w, len, (unsigned)off);
    cr_assert_eq(run(q, BLK_WRITE, off, w, len, false), (int64_t)len);
    cr_assert_eq(run(q, BLK_READ, off, r, len, false), (int64_t)len);
    cr_assert_arr_eq(r, w, len);

    /* What is on disk, seen through an independent descriptor. */
    memset(r, 0, len);
    int fd = open(path, O_RDONLY);
    cr_assert_eq(pread(fd, r, len, (off_t)off), (ssize_t)len);
    close(fd);
    cr_assert_arr_eq(r, w, len);
    free(w);
    free(r);
    blk_queue_free(q);
    blk_close(d);
}

Test(block, buffered_write_then_read_back)
{
    write_read_back(BLK_CACHE_WRITEBACK, 4096, 16384);
}

Test(block, buffered_unaligned_write_then_read_back)
{
    write_read_back(BLK_CACHE_WRITEBACK, 100, 3001);
}

Test(block, direct_aligned_write_then_read_back)
{
    mkfile(4096);
    struct blk_dev *d = open_ok(false, BLK_CACHE_NONE);
    bool direct = d->direct_fd >= 0;
    blk_close(d);
    cleanup();
    if (!direct)
        cr_skip_test("/var/tmp does not support O_DIRECT: only the buffered path runs");
    write_read_back(BLK_CACHE_NONE, 8192, 65536);
}

Test(block, cache_none_unaligned_request_goes_buffered_and_is_correct)
{
    /* Misaligned offset and length: O_DIRECT would fail with EINVAL, the buffered fd
     * must take it. */
    write_read_back(BLK_CACHE_NONE, 513, 1000);
}

Test(block, multi_iovec_request)
{
    mkfile(1 << 16);
    struct blk_dev *d = open_ok(false, BLK_CACHE_NONE);
    struct blk_queue *q = blk_queue_new(d, 4);
    uint8_t *buf = aligned_buf(16384, 0), *back = aligned_buf(16384, 0);
    pattern(buf, 16384, 3);
    struct iovec iov[3] = {{buf, 4096}, {buf + 4096, 8192}, {buf + 12288, 4096}};
    struct done dn = {0};
    struct blk_req r = {.op = BLK_WRITE,
                        .offset = 4096,
                        .len = 16384,
                        .iov = iov,
                        .iovcnt = 3,
                        .done = on_done,
                        .opaque = &dn};
    cr_assert_eq(blk_submit(q, &r), 0);
    blk_flush_submissions(q);
    wait_for(q, &dn.calls, 1);
    cr_assert_eq(dn.res, 16384);
    cr_assert_eq(run(q, BLK_READ, 4096, back, 16384, false), 16384);
    cr_assert_arr_eq(back, buf, 16384);
    free(buf);
    free(back);
    blk_queue_free(q);
    blk_close(d);
}

Test(block, flush_succeeds)
{
    mkfile(8192);
    struct blk_dev *d = open_ok(false, BLK_CACHE_WRITEBACK);
    struct blk_queue *q = blk_queue_new(d, 4);
    uint8_t buf[512];
    memset(buf, 0x5a, sizeof(buf));
    cr_assert_eq(run(q, BLK_WRITE, 0, buf, sizeof(buf), false), 512);
    cr_assert_eq(run(q, BLK_FLUSH, 0, NULL, 0, false), 0);
    blk_queue_free(q);
    blk_close(d);
}

static void zero_op_reads_zeroes(enum blk_op op, bool unmap)
{
    mkfile(1 << 20);
    struct blk_dev *d = open_ok(false, BLK_CACHE_WRITEBACK);
    struct blk_queue *q = blk_queue_new(d, 4);
    size_t len = 256 * 1024;
    uint8_t *buf = aligned_buf(len, 0xab), *back = aligned_buf(len, 0);
    cr_assert_eq(run(q, BLK_WRITE, 0, buf, len, false), (int64_t)len);
    /* Zero the middle 64 KiB + 512 bytes (a partial filesystem block on each side). */
    cr_assert_eq(run(q, op, 65536 - 512, NULL, 65536 + 1024, unmap), 0);
    cr_assert_eq(run(q, BLK_READ, 0, back, len, false), (int64_t)len);
    for (size_t i = 0; i < len; i++) {
        bool zeroed = i >= 65536 - 512 && i < 65536 - 512 + 65536 + 1024;
        cr_assert_eq(back[i], zeroed ? 0 : 0xab, "byte %zu", i);
    }
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_size, 1 << 20, "KEEP_SIZE: the file size must not change");
    free(buf);
    free(back);
    blk_queue_free(q);
    blk_close(d);
}

Test(block, write_zeroes_reads_back_zeroes)
{
    zero_op_reads_zeroes(BLK_WRITE_ZEROES, false);
}

Test(block, write_zeroes_with_unmap_reads_back_zeroes)
{
    zero_op_reads_zeroes(BLK_WRITE_ZEROES, true);
}

Test(block, discard_reads_back_zeroes)
{
    zero_op_reads_zeroes(BLK_DISCARD, false);
}

/* tmpfs has PUNCH_HOLE but no ZERO_RANGE (-EOPNOTSUPP): the backend must write zeroes. */
Test(block, write_zeroes_falls_back_to_writing_zeroes)
{
    struct statfs sf;
    if (statfs("/dev/shm", &sf) < 0 || sf.f_type != TMPFS_MAGIC)
        cr_skip_test("no tmpfs at /dev/shm to refuse FALLOC_FL_ZERO_RANGE");
    strcpy(path, "/dev/shm/nvmevm-test-block-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    size_t len = 1 << 20;
    uint8_t *buf = aligned_buf(len, 0xcd);
    cr_assert_eq(write(fd, buf, len), (ssize_t)len);
    close(fd);
    struct blk_dev *d = open_ok(false, BLK_CACHE_WRITEBACK);
    struct blk_queue *q = blk_queue_new(d, 4);
    /* 600 KiB + 100 bytes: several fallback chunks and an unaligned tail. */
    cr_assert_eq(run(q, BLK_WRITE_ZEROES, 1000, NULL, 600 * 1024 + 100, false), 0);
    cr_assert_eq(run(q, BLK_READ, 0, buf, len, false), (int64_t)len);
    for (size_t i = 0; i < len; i++) {
        bool zeroed = i >= 1000 && i < 1000 + 600 * 1024 + 100;
        cr_assert_eq(buf[i], zeroed ? 0 : 0xcd, "byte %zu", i);
    }
    free(buf);
    blk_queue_free(q);
    blk_close(d);
}

Test(block, short_read_at_eof_fills_zeroes)
{
    mkfile(8192);
    struct blk_dev *d = open_ok(false, BLK_CACHE_NONE);
    cr_assert_eq(d->size, 8192);
    /* Someone else shrinks the file after open: reads up to the size seen at open still
     * run, and what is no longer there reads as zeroes, like a hole. */
    int fd = open(path, O_WRONLY | O_TRUNC);
    uint8_t data[4196];
    pattern(data, sizeof(data), 9);
    cr_assert_eq(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));
    close(fd);
    struct blk_queue *q = blk_queue_new(d, 4);
    uint8_t *back = aligned_buf(8192, 0xee);
    cr_assert_eq(run(q, BLK_READ, 0, back, 8192, false), 8192);
    cr_assert_arr_eq(back, data, sizeof(data));
    for (size_t i = sizeof(data); i < 8192; i++)
        cr_assert_eq(back[i], 0, "byte %zu", i);
    free(back);
    blk_queue_free(q);
    blk_close(d);
}

/* Requests must stay inside the device: a write past the end used to grow the backing file
 * (offset + len was only checked for wraparound). Refused at submission, done() not run. */
static void refuses_beyond_end(struct blk_dev *d)
{
    struct blk_queue *q = blk_queue_new(d, 4);
    uint8_t *buf = aligned_buf(8192, 0x5a);
    struct done dn = {0};
    struct iovec iov = {buf, 4096};
    struct blk_req r = {.op = BLK_WRITE,
                        .offset = d->size - 512,
                        .len = 4096,
                        .iov = &iov,
                        .iovcnt = 1,
                        .done = on_done,
                        .opaque = &dn};
    cr_assert_eq(blk_submit(q, &r), -EINVAL, "write straddling the end");
    r.offset = d->size;
    cr_assert_eq(blk_submit(q, &r), -EINVAL, "write at the end");
    r.op = BLK_READ;
    r.offset = d->size + 4096;
    cr_assert_eq(blk_submit(q, &r), -EINVAL, "read beyond the end");
    r.op = BLK_WRITE_ZEROES;
    r.iov = NULL;
    r.iovcnt = 0;
    r.offset = 0;
    r.len = d->size + 4096;
    cr_assert_eq(blk_submit(q, &r), -EINVAL, "write zeroes past the end");
    r.op = BLK_DISCARD;
    r.offset = UINT64_MAX - 4095;
    r.len = 4096;
    cr_assert_eq(blk_submit(q, &r), -EINVAL, "discard far beyond the end");
    cr_assert_eq(dn.calls, 0);
    /* Up to the last byte is fine. */
    cr_assert_eq(run(q, BLK_WRITE, d->size - 4096, buf, 4096, false), 4096);
    free(buf);
    blk_queue_free(q);
}

Test(block, requests_beyond_the_device_are_refused)
{
    mkfile(64 * 1024);
    struct blk_dev *d = open_ok(false, BLK_CACHE_NONE);
    refuses_beyond_end(d);
    blk_close(d);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_size, 64 * 1024, "the backing file must not grow");
    struct blk_dev *m = blk_mem_new(64 * 1024);
    refuses_beyond_end(m);
    blk_close(m);
}

Test(block, batch_of_64_requests_in_one_submission)
{
    mkfile(64 * 4096);
    struct blk_dev *d = open_ok(false, BLK_CACHE_NONE);
    struct blk_queue *q = blk_queue_new(d, 64);
    uint8_t *buf = aligned_buf(64 * 4096, 0);
    struct iovec iov[64];
    struct blk_req r[64];
    struct done dn = {0};
    int finished = 0;
    for (int i = 0; i < 64; i++) {
        memset(buf + i * 4096, i + 1, 4096);
        iov[i] = (struct iovec){buf + i * 4096, 4096};
        r[i] = (struct blk_req){.op = BLK_WRITE,
                                .offset = (uint64_t)i * 4096,
                                .len = 4096,
                                .iov = &iov[i],
                                .iovcnt = 1,
                                .done = on_done,
                                .opaque = &dn};
        cr_assert_eq(blk_submit(q, &r[i]), 0);
    }
    /* Nothing reaches the kernel before the flush. */
    cr_assert_eq(blk_reap(q), 0);
    cr_assert_eq(dn.calls, 0);
    blk_flush_submissions(q);
    while (finished < 64) {
        struct pollfd p = {.fd = blk_completion_fd(q), .events = POLLIN};
        cr_assert_gt(poll(&p, 1, 5000), 0, "completion eventfd never became readable");
        finished += blk_reap(q);
    }
    cr_assert_eq(dn.calls, 64);
    cr_assert_eq(dn.res, 4096);
    int fd = open(path, O_RDONLY);
    uint8_t blk[4096];
    for (int i = 0; i < 64; i++) {
        cr_assert_eq(pread(fd, blk, 4096, i * 4096), 4096);
        cr_assert_eq(blk[0], i + 1);
        cr_assert_eq(blk[4095], i + 1);
    }
    close(fd);
    free(buf);
    blk_queue_free(q);
    blk_close(d);
}

Test(block, more_requests_than_depth_wait_in_the_backlog)
{
    mkfile(100 * 512);
    struct blk_dev *d = open_ok(false, BLK_CACHE_WRITEBACK);
    struct blk_queue *q = blk_queue_new(d, 4);
    uint8_t buf[100][512];
    struct iovec iov[100];
    struct blk_req r[100];
    struct done dn = {0};
    for (int i = 0; i < 100; i++) {
        memset(buf[i], i, 512);
        iov[i] = (struct iovec){buf[i], 512};
        r[i] = (struct blk_req){.op = BLK_WRITE,
                                .offset = (uint64_t)i * 512,
                                .len = 512,
                                .iov = &iov[i],
                                .iovcnt = 1,
                                .done = on_done,
                                .opaque = &dn};
        cr_assert_eq(blk_submit(q, &r[i]), 0);
    }
    blk_flush_submissions(q);
    wait_for(q, &dn.calls, 100);
    int fd = open(path, O_RDONLY);
    for (int i = 0; i < 100; i++) {
        uint8_t b;
        cr_assert_eq(pread(fd, &b, 1, i * 512 + 511), 1);
        cr_assert_eq(b, i);
    }
    close(fd);
    blk_queue_free(q);
    blk_close(d);
}

Test(block, second_open_is_refused_with_a_clear_message)
{
    mkfile(4096);
    struct blk_dev *d = open_ok(false, BLK_CACHE_WRITEBACK);
    char err[256] = "", want[256];
    struct blk_open_opts o = {.lock = true};
    cr_assert_null(blk_open(path, &o, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s: locked by another process (is another nvmevm using it?)",
             path);
    cr_assert_str_eq(err, want);
    /* A read-only user is refused too: it would see a disk changing under it. */
    o.read_only = true;
    cr_assert_null(blk_open(path, &o, err, sizeof(err)));
    blk_close(d);
    /* Closing releases the lock. */
    d = open_ok(false, BLK_CACHE_WRITEBACK);
    blk_close(d);
}

Test(block, second_process_is_refused)
{
    mkfile(4096);
    struct blk_dev *d = open_ok(false, BLK_CACHE_WRITEBACK);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        char err[256];
        struct blk_open_opts o = {.lock = true};
        struct blk_dev *d2 = blk_open(path, &o, err, sizeof(err));
        _exit(d2 == NULL && strstr(err, "locked by another process") ? 0 : 1);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child was not refused");
    blk_close(d);
}

Test(block, read_only_opens_share_and_refuse_writes)
{
    mkfile(8192);
    struct blk_dev *a = open_ok(true, BLK_CACHE_WRITEBACK);
    struct blk_dev *b = open_ok(true, BLK_CACHE_WRITEBACK);
    cr_assert(a->read_only);
    char err[256];
    struct blk_open_opts o = {.lock = true};
    cr_assert_null(blk_open(path, &o, err, sizeof(err)), "a writer must wait for readers");

    struct blk_queue *q = blk_queue_new(a, 4);
    uint8_t buf[512] = {1};
    struct iovec iov = {buf, 512};
    struct done dn = {0};
    struct blk_req r = {.op = BLK_WRITE,
                        .offset = 0,
                        .len = 512,
                        .iov = &iov,
                        .iovcnt = 1,
                        .done = on_done,
                        .opaque = &dn};
    cr_assert_eq(blk_submit(q, &r), -EROFS);
    r.op = BLK_WRITE_ZEROES;
    cr_assert_eq(blk_submit(q, &r), -EROFS);
    r.op = BLK_DISCARD;
    cr_assert_eq(blk_submit(q, &r), -EROFS);
    cr_assert_eq(dn.calls, 0);
    cr_assert_eq(run(q, BLK_READ, 0, buf, 512, false), 512);
    blk_queue_free(q);
    blk_close(a);
    blk_close(b);
}

Test(block, lock_handover)
{
    mkfile(4096);
    struct blk_dev *a = open_ok(false, BLK_CACHE_WRITEBACK);
    char err[256];
    struct blk_open_opts nolock = {.lock = false};
    struct blk_dev *b = blk_open(path, &nolock, err, sizeof(err));
    cr_assert_not_null(b, "%s", err);
    cr_assert_eq(blk_lock(b), -EAGAIN);
    blk_unlock(a);                /* migration source lets go ... */
    cr_assert_eq(blk_lock(b), 0); /* ... and the destination takes over */
    cr_assert_eq(blk_lock(a), -EAGAIN);
    blk_close(a);
    blk_close(b);
}

Test(block, open_errors_are_one_line)
{
    char err[256];
    cr_assert_null(blk_open("/nonexistent/disk.img", NULL, err, sizeof(err)));
    cr_assert_str_eq(err, "/nonexistent/disk.img: No such file or directory");
    cr_assert_null(blk_open("/var/tmp", NULL, err, sizeof(err)));
    cr_assert_str_eq(err, "/var/tmp: Is a directory");
    cr_assert_null(blk_open("/dev/null", NULL, err, sizeof(err)));
    cr_assert_str_eq(err, "/dev/null: not a regular file or block device");
}

Test(block, size_and_direct_unit_are_probed)
{
    mkfile(3 << 20);
    struct blk_dev *d = open_ok(false, BLK_CACHE_NONE);
    cr_assert_eq(d->size, 3 << 20);
    cr_assert(d->logical_block == 512 || d->logical_block == 4096, "unit %u", d->logical_block);
    blk_close(d);
}

/* ---- RAM backend ---- */

Test(block, mem_hold_keeps_requests_in_flight_until_release)
{
    struct blk_dev *d = blk_mem_new(1 << 16);
    struct blk_queue *q = blk_queue_new(d, 8);
    uint8_t buf[512];
    memset(buf, 0x77, sizeof(buf));
    struct iovec iov = {buf, sizeof(buf)};
    struct done dn = {0};
    struct blk_req r = {.op = BLK_WRITE,
                        .offset = 1024,
                        .len = 512,
                        .iov = &iov,
                        .iovcnt = 1,
                        .done = on_done,
                        .opaque = &dn};
    blk_mem_hold(d, true);
    cr_assert_eq(blk_submit(q, &r), 0);
    blk_flush_submissions(q);
    cr_assert_eq(blk_reap(q), 0);
    cr_assert_eq(dn.calls, 0);
    cr_assert_eq(blk_mem_data(d)[1024], 0, "data must land at completion, not submission");

    blk_mem_release(d);
    struct pollfd p = {.fd = blk_completion_fd(q), .events = POLLIN};
    cr_assert_eq(poll(&p, 1, 0), 1, "release must make the completion fd readable");
    cr_assert_eq(blk_reap(q), 1);
    cr_assert_eq(dn.calls, 1);
    cr_assert_eq(dn.res, 512);
    cr_assert_eq(blk_mem_data(d)[1024], 0x77);
    cr_assert_eq(blk_mem_data(d)[1535], 0x77);

    /* Still holding: a new request waits again. */
    cr_assert_eq(blk_submit(q, &r), 0);
    blk_flush_submissions(q);
    cr_assert_eq(blk_reap(q), 0);
    blk_mem_hold(d, false);
    cr_assert_eq(blk_reap(q), 1);
    cr_assert_eq(dn.calls, 2);
    blk_queue_free(q);
    blk_close(d);
}

Test(block, mem_requests_need_a_flush_and_complete_on_reap)
{
    struct blk_dev *d = blk_mem_new(4096);
    struct blk_queue *q = blk_queue_new(d, 8);
    memset(blk_mem_data(d), 0x11, 4096);
    uint8_t buf[4096];
    struct iovec iov = {buf, sizeof(buf)};
    struct done dn = {0};
    struct blk_req r = {.op = BLK_READ,
                        .offset = 0,
                        .len = 4096,
                        .iov = &iov,
                        .iovcnt = 1,
                        .done = on_done,
                        .opaque = &dn};
    cr_assert_eq(blk_submit(q, &r), 0);
    cr_assert_eq(blk_reap(q), 0, "not flushed yet");
    blk_flush_submissions(q);
    cr_assert_eq(blk_reap(q), 1);
    cr_assert_eq(buf[4095], 0x11);

    r.op = BLK_DISCARD;
    r.offset = 512;
    r.len = 512;
    cr_assert_eq(blk_submit(q, &r), 0);
    blk_flush_submissions(q);
    cr_assert_eq(blk_reap(q), 1);
    cr_assert_eq(blk_mem_data(d)[511], 0x11);
    cr_assert_eq(blk_mem_data(d)[512], 0);
    cr_assert_eq(blk_mem_data(d)[1023], 0);
    cr_assert_eq(blk_mem_data(d)[1024], 0x11);

    /* Beyond the end is refused at submission (as by io_uring); injected faults complete
     * with errors. */
    r.op = BLK_READ;
    r.offset = 4096;
    cr_assert_eq(blk_submit(q, &r), -EINVAL);
    blk_mem_inject_error(d, 0, 512, EIO);
    r.offset = 0;
    cr_assert_eq(blk_submit(q, &r), 0);
    blk_flush_submissions(q);
    blk_reap(q);
    cr_assert_eq(dn.res, -EIO);
    blk_mem_inject_error(d, 0, 512, 0);
    cr_assert_eq(blk_submit(q, &r), 0);
    blk_flush_submissions(q);
    blk_reap(q);
    cr_assert_eq(dn.res, 512);
    blk_queue_free(q);
    blk_close(d);
}
