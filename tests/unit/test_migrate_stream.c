/* Migration buffers, CRC32C and the stream format: round trips and every refusal. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/buf.h"
#include "migrate/conn.h"
#include "migrate/stream.h"

/* Any section ids do for the codec: these are two devices' and a vCPU's. */
#define MIG_SEC_UART 0x70
#define MIG_SEC_VCPU 0x10
#define MIG_SEC_RTC  0x72

/* ---- CRC32C ---- */

Test(crc32c, check_value)
{
    mig_crc32c_force_sw = false;
    cr_assert_eq(mig_crc32c(0, "123456789", 9), 0xE3069283u);
    mig_crc32c_force_sw = true;
    cr_assert_eq(mig_crc32c(0, "123456789", 9), 0xE3069283u);
    mig_crc32c_force_sw = false;
    cr_assert_eq(mig_crc32c(0, NULL, 0), 0);
}

/* Both implementations agree at every length and alignment, and calls chain. */
Test(crc32c, hw_and_sw_agree_and_chain)
{
    uint8_t buf[600];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 7919 + (i >> 3));
    for (size_t start = 0; start < 9; start++) {
        for (size_t len = 0; len + start <= sizeof(buf); len += 37) {
            mig_crc32c_force_sw = true;
            uint32_t sw = mig_crc32c(0, buf + start, len);
            mig_crc32c_force_sw = false;
            uint32_t hw = mig_crc32c(0, buf + start, len);
            cr_assert_eq(sw, hw, "start %zu len %zu", start, len);
            size_t half = len / 3;
            uint32_t chained =
                mig_crc32c(mig_crc32c(0, buf + start, half), buf + start + half, len - half);
            cr_assert_eq(chained, hw);
        }
    }
}

/* ---- mig_buf / mig_cursor ---- */

Test(buf, round_trip_every_width)
{
    struct mig_buf b;
    mig_buf_init(&b);
    const uint8_t blob[5] = {1, 2, 3, 4, 5};
    mig_put_u8(&b, 0);
    mig_put_u8(&b, 0xff);
    mig_put_u16(&b, 0xbeef);
    mig_put_u16(&b, 0xffff);
    mig_put_u32(&b, 0xdeadbeef);
    mig_put_u32(&b, 0);
    mig_put_u64(&b, 0x0123456789abcdefULL);
    mig_put_u64(&b, UINT64_MAX);
    mig_put_bytes(&b, blob, sizeof(blob));
    mig_put_bytes(&b, NULL, 0);
    cr_assert_not(b.oom);
    cr_assert_eq(b.len, 2 + 4 + 8 + 16 + 5);
    /* Little-endian on the wire regardless of the host. */
    cr_assert_eq(b.data[2], 0xef);
    cr_assert_eq(b.data[3], 0xbe);

    struct mig_cursor c;
    mig_cursor_init(&c, b.data, b.len);
    cr_assert_eq(mig_get_u8(&c), 0);
    cr_assert_eq(mig_get_u8(&c), 0xff);
    cr_assert_eq(mig_get_u16(&c), 0xbeef);
    cr_assert_eq(mig_get_u16(&c), 0xffff);
    cr_assert_eq(mig_get_u32(&c), 0xdeadbeef);
    cr_assert_eq(mig_get_u32(&c), 0);
    cr_assert_eq(mig_get_u64(&c), 0x0123456789abcdefULL);
    cr_assert_eq(mig_get_u64(&c), UINT64_MAX);
    uint8_t out[5];
    cr_assert(mig_get_bytes(&c, out, sizeof(out)));
    cr_assert_arr_eq(out, blob, sizeof(blob));
    cr_assert(mig_cursor_done(&c));
    mig_buf_free(&b);
    cr_assert_null(b.data);
    cr_assert_eq(b.len, 0);
}

Test(buf, grows_past_initial_capacity)
{
    struct mig_buf b;
    mig_buf_init(&b);
    for (uint32_t i = 0; i < 100000; i++)
        mig_put_u32(&b, i);
    cr_assert_eq(b.len, 400000);
    struct mig_cursor c;
    mig_cursor_init(&c, b.data, b.len);
    for (uint32_t i = 0; i < 100000; i++)
        cr_assert_eq(mig_get_u32(&c), i);
    cr_assert(mig_cursor_done(&c));
    mig_buf_free(&b);
}

Test(buf, overrun_sets_bad_and_reads_zero)
{
    const uint8_t data[3] = {0x11, 0x22, 0x33};
    struct mig_cursor c;
    mig_cursor_init(&c, data, sizeof(data));
    cr_assert_eq(mig_get_u16(&c), 0x2211);
    /* Two bytes wanted, one left: nothing is consumed and the cursor turns bad. */
    cr_assert_eq(mig_get_u16(&c), 0);
    cr_assert(c.bad);
    /* Bad is sticky even for reads that would fit. */
    cr_assert_eq(mig_get_u8(&c), 0);
    cr_assert_eq(mig_get_u32(&c), 0);
    cr_assert_eq(mig_get_u64(&c), 0);
    cr_assert_not(mig_cursor_done(&c));

    uint8_t dst[4] = {0xaa, 0xaa, 0xaa, 0xaa};
    mig_cursor_init(&c, data, sizeof(data));
    cr_assert_not(mig_get_bytes(&c, dst, 4));
    cr_assert(c.bad);
    cr_assert_eq(dst[0] | dst[1] | dst[2] | dst[3], 0, "dst is zero-filled");
}

Test(buf, done_refuses_leftovers)
{
    const uint8_t data[3] = {1, 2, 3};
    struct mig_cursor c;
    mig_cursor_init(&c, data, sizeof(data));
    mig_get_u16(&c);
    cr_assert_not(mig_cursor_done(&c));
    mig_get_u8(&c);
    cr_assert(mig_cursor_done(&c));
    mig_cursor_init(&c, NULL, 0);
    cr_assert(mig_cursor_done(&c));
    cr_assert_eq(mig_get_u8(&c), 0);
    cr_assert(c.bad);
}

/* ---- stream ---- */

static void ignore_sigpipe(void)
{
    signal(SIGPIPE, SIG_IGN); /* as nvmevm does */
}

TestSuite(stream, .init = ignore_sigpipe, .timeout = 30);

#define BIG_LEN (10u << 20)

struct writer_arg {
    int fd;
    int ret;
};

static uint8_t small[100];
static uint8_t *big;

static void fill(void)
{
    for (size_t i = 0; i < sizeof(small); i++)
        small[i] = (uint8_t)(i ^ 0x5a);
    big = malloc(BIG_LEN);
    cr_assert_not_null(big);
    for (size_t i = 0; i < BIG_LEN; i++)
        big[i] = (uint8_t)(i * 131 + (i >> 11));
}

static int write_sample(int fd)
{
    struct mig_stream s;
    struct mig_conn conn;
    mig_conn_plain(&conn, fd, 0);
    mig_stream_init(&s, &conn);
    int ret = mig_write_header(&s);
    ret = ret ? ret : mig_write_section(&s, MIG_SEC_UART, 1, small, sizeof(small));
    ret = ret ? ret : mig_write_section(&s, MIG_SEC_RAM, 3, big, BIG_LEN);
    ret = ret ? ret : mig_write_section(&s, MIG_SEC_CONFIG, 7, NULL, 0);
    ret = ret ? ret : mig_write_section(&s, MIG_SEC_VCPU + 5, 2, small, 1);
    ret = ret ? ret : mig_write_end(&s);
    mig_stream_free(&s);
    return ret;
}

static void *writer(void *p)
{
    struct writer_arg *a = p;
    a->ret = write_sample(a->fd);
    close(a->fd);
    return NULL;
}

static void expect_section(struct mig_stream *s, uint32_t id, uint16_t ver, const void *data,
                           size_t len)
{
    uint32_t gid;
    uint16_t gver;
    uint8_t *payload;
    size_t glen;
    char err[256] = "";
    cr_assert_eq(mig_read_section(s, &gid, &gver, &payload, &glen, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(gid, id);
    cr_assert_eq(gver, ver);
    cr_assert_eq(glen, len);
    if (len == 0)
        cr_assert_null(payload);
    else
        cr_assert(memcmp(payload, data, len) == 0);
    free(payload);
}

static void read_sample(int fd)
{
    struct mig_stream s;
    struct mig_conn conn;
    mig_conn_plain(&conn, fd, 0);
    mig_stream_init(&s, &conn);
    char err[256] = "";
    cr_assert_eq(mig_read_header(&s, err, sizeof(err)), 0, "%s", err);
    expect_section(&s, MIG_SEC_UART, 1, small, sizeof(small));
    expect_section(&s, MIG_SEC_RAM, 3, big, BIG_LEN);
    expect_section(&s, MIG_SEC_CONFIG, 7, NULL, 0);
    expect_section(&s, MIG_SEC_VCPU + 5, 2, small, 1);
    expect_section(&s, MIG_SEC_END, 0, NULL, 0);
    uint64_t expect = 16 + 5 * MIG_SECTION_HDR + sizeof(small) + BIG_LEN + 1;
    cr_assert_eq(s.bytes, expect);
    mig_stream_free(&s);
}

static void round_trip(bool nonblocking)
{
    fill();
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    if (nonblocking) {
        /* Exercises the EAGAIN/poll paths: the 10 MiB section overflows any socket buffer. */
        fcntl(sv[0], F_SETFL, O_NONBLOCK);
        fcntl(sv[1], F_SETFL, O_NONBLOCK);
    }
    struct writer_arg a = {.fd = sv[1]};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, writer, &a), 0);
    read_sample(sv[0]);
    pthread_join(t, NULL);
    cr_assert_eq(a.ret, 0);
    close(sv[0]);
    free(big);
}

Test(stream, round_trip_socketpair)
{
    round_trip(false);
}

Test(stream, round_trip_nonblocking)
{
    round_trip(true);
}

/* A complete stream in a temporary file, which the corruption tests then damage. */
static int sample_file(void)
{
    fill();
    char path[] = "/tmp/mig-test-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    cr_assert_eq(write_sample(fd), 0);
    free(big);
    return fd;
}

static void poke(int fd, off_t off, const void *p, size_t n)
{
    cr_assert_eq(pwrite(fd, p, n, off), (ssize_t)n);
}

/* Reads the stream from the start until it fails; returns the error message. */
static const char *read_until_error(int fd)
{
    static char err[256];
    err[0] = 0;
    cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
    struct mig_stream s;
    struct mig_conn conn;
    mig_conn_plain(&conn, fd, 0);
    mig_stream_init(&s, &conn);
    int ret = mig_read_header(&s, err, sizeof(err));
    while (ret == 0) {
        uint32_t id;
        uint16_t ver;
        uint8_t *payload;
        size_t len;
        ret = mig_read_section(&s, &id, &ver, &payload, &len, err, sizeof(err));
        free(payload);
        if (ret == 0 && id == MIG_SEC_END)
            cr_assert_fail("stream was accepted");
    }
    cr_assert_neq(s.error, 0, "a refused stream stays failed");
    mig_stream_free(&s);
    cr_assert_eq(strchr(err, '\n'), NULL, "one line");
    return err;
}

/* Offsets in the sample: header 16, UART section header at 16, payload at 40, RAM at 140. */
#define UART_HDR 16
#define RAM_HDR  (UART_HDR + MIG_SECTION_HDR + 100)

Test(stream, sample_file_is_valid)
{
    int fd = sample_file();
    fill();
    cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
    read_sample(fd);
    free(big);
    close(fd);
}

Test(stream, bad_magic)
{
    int fd = sample_file();
    poke(fd, 3, "X", 1);
    cr_assert_str_eq(read_until_error(fd), "not an nvmevm migration stream");
    close(fd);
}

Test(stream, foreign_short_stream)
{
    int fd = sample_file();
    cr_assert_eq(ftruncate(fd, 4), 0);
    poke(fd, 0, "QEVM", 4);
    cr_assert_str_eq(read_until_error(fd), "not an nvmevm migration stream");
    close(fd);
}

Test(stream, bad_version)
{
    int fd = sample_file();
    uint8_t v[4] = {2, 0, 0, 0};
    poke(fd, 8, v, 4);
    cr_assert_str_eq(read_until_error(fd), "stream version 2, this nvmevm reads 1");
    close(fd);
}

Test(stream, header_reserved_flags)
{
    int fd = sample_file();
    uint8_t v[4] = {0, 1, 0, 0};
    poke(fd, 12, v, 4);
    cr_assert_str_eq(read_until_error(fd), "stream header flags 0x100: reserved bits set");
    close(fd);
}

Test(stream, crc_flip)
{
    int fd = sample_file();
    uint8_t byte;
    cr_assert_eq(pread(fd, &byte, 1, RAM_HDR + MIG_SECTION_HDR + 5000000), 1);
    byte ^= 0x10;
    poke(fd, RAM_HDR + MIG_SECTION_HDR + 5000000, &byte, 1);
    const char *err = read_until_error(fd);
    cr_assert(strncmp(err, "section 0x2 checksum mismatch", 29) == 0, "%s", err);
    close(fd);
}

Test(stream, length_over_limit)
{
    int fd = sample_file();
    uint8_t len[8] = {0x01, 0, 0, 0x04, 0, 0, 0, 0}; /* 64 MiB + 1 */
    poke(fd, UART_HDR + 8, len, 8);
    cr_assert_str_eq(read_until_error(fd), "section 0x70 length 67108865 exceeds limit 67108864");
    close(fd);
}

Test(stream, section_reserved_bits)
{
    int fd = sample_file();
    uint8_t one = 1;
    poke(fd, UART_HDR + 20, &one, 1);
    cr_assert_str_eq(read_until_error(fd),
                     "section 0x70: reserved bits set (flags 0x0, reserved 0x1)");
    close(fd);
}

Test(stream, truncated_in_header)
{
    int fd = sample_file();
    cr_assert_eq(ftruncate(fd, 10), 0);
    cr_assert_str_eq(read_until_error(fd), "truncated stream: header ends after 10 of 16 bytes");
    close(fd);
}

Test(stream, truncated_in_section_header)
{
    int fd = sample_file();
    cr_assert_eq(ftruncate(fd, RAM_HDR + 7), 0);
    cr_assert_str_eq(read_until_error(fd),
                     "truncated stream: section header at byte 140 ends after 7 of 24 bytes");
    close(fd);
}

Test(stream, truncated_mid_payload)
{
    int fd = sample_file();
    cr_assert_eq(ftruncate(fd, RAM_HDR + MIG_SECTION_HDR + 1000), 0);
    cr_assert_str_eq(read_until_error(fd),
                     "truncated stream: section 0x2 payload ends after 1000 of 10485760 bytes");
    close(fd);
}

Test(stream, missing_end_marker)
{
    int fd = sample_file();
    off_t size = lseek(fd, 0, SEEK_END);
    cr_assert_eq(ftruncate(fd, size - MIG_SECTION_HDR), 0);
    const char *err = read_until_error(fd);
    cr_assert(strstr(err, "ends after 0 of 24 bytes"), "%s", err);
    close(fd);
}

Test(stream, end_with_payload)
{
    int fd = sample_file();
    off_t size = lseek(fd, 0, SEEK_END);
    uint8_t one = 1;
    poke(fd, size - MIG_SECTION_HDR + 8, &one, 1);
    cr_assert_str_eq(read_until_error(fd), "end section has length 1");
    close(fd);
}

Test(stream, failure_is_sticky_for_readers)
{
    int fd = sample_file();
    poke(fd, 0, "x", 1);
    cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
    struct mig_stream s;
    struct mig_conn conn;
    mig_conn_plain(&conn, fd, 0);
    mig_stream_init(&s, &conn);
    char err[256];
    cr_assert_eq(mig_read_header(&s, err, sizeof(err)), -1);
    uint32_t id;
    uint16_t ver;
    uint8_t *payload;
    size_t len;
    cr_assert_eq(mig_read_section(&s, &id, &ver, &payload, &len, err, sizeof(err)), -1);
    cr_assert(strstr(err, "already failed"), "%s", err);
    cr_assert_null(payload);
    close(fd);
}

Test(stream, write_errors_are_sticky)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    close(p[0]);
    struct mig_stream s;
    struct mig_conn conn;
    mig_conn_plain(&conn, p[1], 0);
    mig_stream_init(&s, &conn);
    cr_assert_eq(mig_write_header(&s), 0, "buffered, not yet written");
    cr_assert_eq(mig_flush(&s), -EPIPE);
    cr_assert_eq(mig_write_section(&s, MIG_SEC_RTC, 1, small, 4), -EPIPE);
    cr_assert_eq(mig_write_end(&s), -EPIPE);
    mig_stream_free(&s);
    close(p[1]);
}

Test(stream, caller_errors_leave_stream_usable)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    struct mig_stream s;
    struct mig_conn conn;
    mig_conn_plain(&conn, p[1], 0);
    mig_stream_init(&s, &conn);
    cr_assert_eq(mig_write_section(&s, MIG_SEC_RAM, 1, small, MIG_MAX_SECTION + 1), -EMSGSIZE);
    cr_assert_eq(mig_write_section(&s, MIG_SEC_END, 1, NULL, 0), -EINVAL);
    cr_assert_eq(mig_write_header(&s), 0);
    cr_assert_eq(mig_write_end(&s), 0);
    cr_assert_eq(s.bytes, 16 + MIG_SECTION_HDR);
    mig_stream_free(&s);
    close(p[0]);
    close(p[1]);
}
