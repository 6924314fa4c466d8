/*
 * Device state for migration: save on one instance, load into a fresh one, and check the
 * guest-visible behaviour. Hostile states (truncated, wrong version, out-of-range fields,
 * trailing bytes) must be refused with a reason and leave the target exactly as it was.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/i8042.h"
#include "hw/msix.h"
#include "hw/pci.h"
#include "hw/rtc.h"
#include "hw/uart.h"
#include "util/buf.h"

/* ---- helpers shared by all devices ---- */

typedef void (*save_fn)(void *dev, struct mig_buf *b);
typedef int (*load_fn)(void *dev, struct mig_cursor *c, char *err, size_t errlen);

static struct mig_buf saved(save_fn save, void *dev)
{
    struct mig_buf b;
    mig_buf_init(&b);
    save(dev, &b);
    cr_assert_not(b.oom);
    cr_assert_gt(b.len, 2);
    return b;
}

static int load_bytes(load_fn load, void *dev, const uint8_t *p, size_t n, char *err, size_t errlen)
{
    struct mig_cursor c;
    mig_cursor_init(&c, p, n);
    err[0] = 0;
    int ret = load(dev, &c, err, errlen);
    if (ret)
        cr_assert_neq(err[0], 0, "a refusal says why");
    return ret;
}

/* Loads p and expects a refusal whose reason starts with want; the device's saved form must
 * be byte-identical before and after. Returns the reason for further checks. */
static const char *expect_refused(save_fn save, load_fn load, void *dev, const uint8_t *p, size_t n,
                                  const char *want)
{
    static char err[256];
    struct mig_buf before = saved(save, dev);
    cr_assert_eq(load_bytes(load, dev, p, n, err, sizeof(err)), -1, "accepted %zu bytes", n);
    cr_assert_eq(strchr(err, '\n'), NULL);
    if (want)
        cr_assert(strncmp(err, want, strlen(want)) == 0, "reason '%s', wanted '%s'", err, want);
    struct mig_buf after = saved(save, dev);
    cr_assert_eq(before.len, after.len);
    cr_assert(memcmp(before.data, after.data, before.len) == 0, "state changed by a refusal");
    mig_buf_free(&before);
    mig_buf_free(&after);
    return err;
}

/* Every strict prefix, the wrong version, and one trailing byte are all refused. */
static void expect_generic_refusals(save_fn save, load_fn load, void *dev,
                                    const struct mig_buf *good, const char *prefix)
{
    char want[64];
    for (size_t n = 0; n < good->len; n++)
        expect_refused(save, load, dev, good->data, n, prefix);

    uint8_t *copy = malloc(good->len + 1);
    cr_assert_not_null(copy);
    memcpy(copy, good->data, good->len);
    copy[good->len] = 0;
    snprintf(want, sizeof(want), "%s1 trailing bytes", prefix);
    expect_refused(save, load, dev, copy, good->len + 1, want);

    copy[0] = 9, copy[1] = 0;
    snprintf(want, sizeof(want), "%sstate version 9, this nvmevm reads 1", prefix);
    expect_refused(save, load, dev, copy, good->len, want);
    free(copy);
}

static void put_bytes_at(struct mig_buf *b, size_t off, const void *p, size_t n)
{
    cr_assert_leq(off + n, b->len);
    memcpy(b->data + off, p, n);
}

/* ---- UART ---- */

struct irq_log {
    int calls;
    int level;
};

static void irq_set(void *opaque, int level)
{
    struct irq_log *l = opaque;
    l->calls++;
    l->level = level;
}

static uint8_t uart_rd(struct uart *u, unsigned reg)
{
    uint8_t v = 0;
    uart_io(u, reg, &v, 1, false);
    return v;
}

static void uart_wr(struct uart *u, unsigned reg, uint8_t v)
{
    uart_io(u, reg, &v, 1, true);
}

static void uart_save_v(void *d, struct mig_buf *b)
{
    uart_save(d, b);
}

static int uart_load_v(void *d, struct mig_cursor *c, char *e, size_t n)
{
    return uart_load(d, c, e, n);
}

/* A driver-like setup: 115200 8N1, FIFO on, RX and THR interrupts, OUT2 on. */
static void uart_program(struct uart *u)
{
    uart_wr(u, 3, 0x80);
    uart_wr(u, 0, 0x01);
    uart_wr(u, 1, 0x02);
    uart_wr(u, 3, 0x03);
    uart_wr(u, 2, 0x01);
    uart_wr(u, 4, 0x0b);
    uart_wr(u, 7, 0x5a);
    uart_wr(u, 1, 0x03);
}

Test(uart_state, round_trip_with_input_and_interrupt)
{
    struct irq_log src_irq = {0}, dst_irq = {0};
    struct uart *src = uart_new(-1, irq_set, &src_irq);
    struct uart *dst = uart_new(-1, irq_set, &dst_irq);
    uart_program(src);
    cr_assert_eq(uart_input(src, (const uint8_t *)"hello", 5), 5);
    cr_assert_eq(src_irq.level, 1);

    struct mig_buf b = saved(uart_save_v, src);
    char err[128];
    cr_assert_eq(load_bytes(uart_load_v, dst, b.data, b.len, err, sizeof(err)), 0, "%s", err);
    /* The line is driven even though the fresh device thought it was already low. */
    cr_assert_eq(dst_irq.calls, 1);
    cr_assert_eq(dst_irq.level, 1);

    cr_assert_eq(uart_rd(dst, 2), 0xc4, "FIFO on, RX data interrupt pending");
    cr_assert_eq(uart_rd(dst, 3), 0x03);
    cr_assert_eq(uart_rd(dst, 4), 0x0b);
    cr_assert_eq(uart_rd(dst, 7), 0x5a);
    cr_assert_eq(uart_rd(dst, 1), 0x03);
    cr_assert_eq(uart_input_space(dst), 4096 - 5);
    char got[6] = {0};
    for (int i = 0; i < 5; i++)
        got[i] = (char)uart_rd(dst, 0);
    cr_assert_str_eq(got, "hello");
    cr_assert_eq(uart_rd(dst, 5) & 0x01, 0, "queue drained");
    /* With RX empty, the THR-empty interrupt that was pending at save time shows next. */
    cr_assert_eq(uart_rd(dst, 2), 0xc2);
    uart_wr(dst, 3, 0x83);
    cr_assert_eq(uart_rd(dst, 0), 0x01, "DLL");
    cr_assert_eq(uart_rd(dst, 1), 0x02, "DLM");
    mig_buf_free(&b);
    uart_free(src);
    uart_free(dst);
}

Test(uart_state, wrapped_queue_keeps_order)
{
    struct uart *src = uart_new(-1, NULL, NULL);
    struct uart *dst = uart_new(-1, NULL, NULL);
    static uint8_t data[6000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + (i >> 8));
    cr_assert_eq(uart_input(src, data, 4000), 4000);
    for (int i = 0; i < 3000; i++)
        cr_assert_eq(uart_rd(src, 0), data[i]);
    cr_assert_eq(uart_input(src, data + 4000, 2000), 2000); /* wraps around the ring */

    struct mig_buf b = saved(uart_save_v, src);
    char err[128];
    cr_assert_eq(load_bytes(uart_load_v, dst, b.data, b.len, err, sizeof(err)), 0, "%s", err);
    for (int i = 3000; i < 6000; i++)
        cr_assert_eq(uart_rd(dst, 0), data[i], "byte %d", i);
    cr_assert_eq(uart_rd(dst, 5) & 0x01, 0);
    mig_buf_free(&b);
    uart_free(src);
    uart_free(dst);
}

/* Modem-status deltas are pending-interrupt state too; and a quiet state lowers the line. */
Test(uart_state, msr_delta_and_quiet_line)
{
    struct irq_log src_irq = {0}, dst_irq = {0};
    struct uart *src = uart_new(-1, irq_set, &src_irq);
    struct uart *dst = uart_new(-1, irq_set, &dst_irq);
    uart_wr(src, 4, 0x08 | 0x10 | 0x02); /* OUT2, loopback, RTS */
    uart_wr(src, 1, 0x08);               /* MSI only */
    struct mig_buf b = saved(uart_save_v, src);
    char err[128];
    cr_assert_eq(load_bytes(uart_load_v, dst, b.data, b.len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(uart_rd(dst, 2), 0x00, "modem-status interrupt pending");
    /* Loopback drops DSR (the modem lines now echo MCR): DDSR was pending at save time. */
    cr_assert_eq(uart_rd(dst, 6) & 0x0f, 0x02, "DDSR carried over");
    mig_buf_free(&b);

    /* dst now has its line high (OUT2 and input pending); a quiet state must lower it. */
    struct uart *quiet = uart_new(-1, NULL, NULL);
    uart_wr(dst, 4, 0x08);
    uart_wr(dst, 1, 0x01);
    uart_input(dst, (const uint8_t *)"x", 1);
    cr_assert_eq(dst_irq.level, 1);
    b = saved(uart_save_v, quiet);
    cr_assert_eq(load_bytes(uart_load_v, dst, b.data, b.len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(dst_irq.level, 0);
    mig_buf_free(&b);
    uart_free(quiet);
    uart_free(src);
    uart_free(dst);
}

/* The destination's interrupt controller may disagree with a fresh UART's idea of its line, so
 * load drives the line even when the level seems unchanged. */
Test(uart_state, line_driven_even_if_unchanged)
{
    struct irq_log dst_irq = {0};
    struct uart *src = uart_new(-1, NULL, NULL);
    struct uart *dst = uart_new(-1, irq_set, &dst_irq);
    struct mig_buf b = saved(uart_save_v, src);
    char err[128];
    cr_assert_eq(load_bytes(uart_load_v, dst, b.data, b.len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(dst_irq.calls, 1);
    cr_assert_eq(dst_irq.level, 0);
    mig_buf_free(&b);
    uart_free(src);
    uart_free(dst);
}

Test(uart_state, hostile)
{
    struct irq_log src_irq = {0}, dst_irq = {0};
    struct uart *src = uart_new(-1, irq_set, &src_irq);
    struct uart *dst = uart_new(-1, irq_set, &dst_irq);
    uart_program(src);
    uart_input(src, (const uint8_t *)"abc", 3);
    uart_program(dst);
    uart_input(dst, (const uint8_t *)"target", 6);
    int calls = dst_irq.calls;
    struct mig_buf good = saved(uart_save_v, src);
    expect_generic_refusals(uart_save_v, uart_load_v, dst, &good, "uart: ");

    /* Layout: version 2, six registers, flags, msr delta, count at 10, bytes at 14. */
    struct mig_buf bad = saved(uart_save_v, src);
    uint8_t big[4] = {0x70, 0x11, 0x01, 0x00}; /* 70000 */
    put_bytes_at(&bad, 10, big, 4);
    expect_refused(uart_save_v, uart_load_v, dst, bad.data, bad.len,
                   "uart: input length 70000 exceeds queue size 4096");
    uint8_t cnt[4] = {4, 0, 0, 0}; /* claims one byte more than present */
    put_bytes_at(&bad, 10, cnt, 4);
    expect_refused(uart_save_v, uart_load_v, dst, bad.data, bad.len, "uart: input truncated");
    mig_buf_free(&bad);

    const struct {
        size_t off;
        uint8_t v;
        const char *want;
    } fields[] = {
        {2, 0xf3, "uart: IER 0xf3 has reserved bits set"},
        {4, 0x2b, "uart: MCR 0x2b has reserved bits set"},
        {8, 0x04, "uart: flags 0x04 has unknown bits set"},
        {9, 0x10, "uart: MSR delta 0x10 has non-delta bits set"},
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        bad = saved(uart_save_v, src);
        bad.data[fields[i].off] = fields[i].v;
        expect_refused(uart_save_v, uart_load_v, dst, bad.data, bad.len, fields[i].want);
        mig_buf_free(&bad);
    }
    cr_assert_eq(dst_irq.calls, calls, "no refusal touched the IRQ line");
    cr_assert_eq(uart_rd(dst, 0), 't', "target's own input survives");
    mig_buf_free(&good);
    uart_free(src);
    uart_free(dst);
}

/* ---- i8042 ---- */

static int resets;

static void on_reset(void *opaque)
{
    (void)opaque;
    resets++;
}

static uint8_t kbc_rd(struct i8042 *k, unsigned port)
{
    uint8_t v = 0;
    i8042_io(k, port, &v, 1, false);
    return v;
}

static void kbc_wr(struct i8042 *k, unsigned port, uint8_t v)
{
    i8042_io(k, port, &v, 1, true);
}

static void i8042_save_v(void *d, struct mig_buf *b)
{
    i8042_save(d, b);
}

static int i8042_load_v(void *d, struct mig_cursor *c, char *e, size_t n)
{
    return i8042_load(d, c, e, n);
}

static void i8042_move(struct i8042 *src, struct i8042 *dst)
{
    struct mig_buf b = saved(i8042_save_v, src);
    char err[128];
    cr_assert_eq(load_bytes(i8042_load_v, dst, b.data, b.len, err, sizeof(err)), 0, "%s", err);
    mig_buf_free(&b);
}

Test(i8042_state, pending_response)
{
    struct i8042 *src = i8042_new(on_reset, NULL), *dst = i8042_new(on_reset, NULL);
    kbc_wr(src, 4, 0x60); /* write CTR ... */
    kbc_wr(src, 0, 0x47);
    kbc_wr(src, 4, 0x20); /* ... and ask for it back, unread at save time */
    i8042_move(src, dst);
    cr_assert_eq(kbc_rd(dst, 4) & 0x09, 0x09, "OBF and last-was-command");
    cr_assert_eq(kbc_rd(dst, 0), 0x47);
    cr_assert_eq(kbc_rd(dst, 4) & 0x01, 0);
    i8042_free(src);
    i8042_free(dst);
}

Test(i8042_state, half_done_command)
{
    struct i8042 *src = i8042_new(on_reset, NULL), *dst = i8042_new(on_reset, NULL);
    resets = 0;
    kbc_wr(src, 4, 0xd1); /* write output port: the data byte arrives after migration */
    i8042_move(src, dst);
    kbc_wr(dst, 0, 0xfe);
    cr_assert_eq(resets, 1, "the destination completes the command");
    i8042_free(src);
    i8042_free(dst);
}

Test(i8042_state, hostile)
{
    struct i8042 *src = i8042_new(on_reset, NULL), *dst = i8042_new(on_reset, NULL);
    kbc_wr(src, 4, 0xaa);
    kbc_wr(dst, 4, 0x60);
    struct mig_buf good = saved(i8042_save_v, src);
    expect_generic_refusals(i8042_save_v, i8042_load_v, dst, &good, "i8042: ");
    struct mig_buf bad = saved(i8042_save_v, src);
    bad.data[3] = 0x20; /* READ_CTR takes no data byte, so it cannot be half done */
    expect_refused(i8042_save_v, i8042_load_v, dst, bad.data, bad.len,
                   "i8042: pending command 0x20 takes no data byte");
    bad.data[3] = 0;
    bad.data[4] = 0x80;
    expect_refused(i8042_save_v, i8042_load_v, dst, bad.data, bad.len,
                   "i8042: flags 0x80 has unknown bits set");
    mig_buf_free(&bad);
    mig_buf_free(&good);
    i8042_free(src);
    i8042_free(dst);
}

/* ---- RTC ---- */

static time_t fixed_time(void)
{
    return 1700000000; /* 2023-11-14 22:13:20 UTC */
}

static uint8_t cmos_rd(struct rtc *r, uint8_t idx)
{
    uint8_t v = 0;
    rtc_io(r, 0, &idx, 1, true);
    rtc_io(r, 1, &v, 1, false);
    return v;
}

static void cmos_wr(struct rtc *r, uint8_t idx, uint8_t v)
{
    rtc_io(r, 0, &idx, 1, true);
    rtc_io(r, 1, &v, 1, true);
}

static void rtc_save_v(void *d, struct mig_buf *b)
{
    rtc_save(d, b);
}

static int rtc_load_v(void *d, struct mig_cursor *c, char *e, size_t n)
{
    return rtc_load(d, c, e, n);
}

Test(rtc_state, ram_round_trip_clock_follows_host)
{
    struct rtc *src = rtc_new(), *dst = rtc_new();
    rtc_set_time_source(dst, fixed_time);
    for (uint8_t i = 0x0e; i < 0x80; i++)
        cmos_wr(src, i, (uint8_t)(i ^ 0xa5));
    cmos_wr(src, 0x0b, 0x06); /* binary, 24 h */
    uint8_t idx = 0x40;
    rtc_io(src, 0, &idx, 1, true); /* the guest selected a register and was paused */

    struct mig_buf b = saved(rtc_save_v, src);
    char err[128];
    cr_assert_eq(load_bytes(rtc_load_v, dst, b.data, b.len, err, sizeof(err)), 0, "%s", err);
    uint8_t v = 0;
    rtc_io(dst, 1, &v, 1, false);
    cr_assert_eq(v, 0x40 ^ 0xa5, "index restored");
    for (uint8_t i = 0x0e; i < 0x80; i++)
        if (i != 0x32) /* century is a clock register */
            cr_assert_eq(cmos_rd(dst, i), (uint8_t)(i ^ 0xa5), "byte 0x%02x", i);
    /* Binary mode came across; the time is the destination's own. */
    cr_assert_eq(cmos_rd(dst, 0x00), 20);
    cr_assert_eq(cmos_rd(dst, 0x04), 22);
    mig_buf_free(&b);
    rtc_free(src);
    rtc_free(dst);
}

Test(rtc_state, hostile)
{
    struct rtc *src = rtc_new(), *dst = rtc_new();
    cmos_wr(dst, 0x20, 0x77);
    struct mig_buf good = saved(rtc_save_v, src);
    expect_generic_refusals(rtc_save_v, rtc_load_v, dst, &good, "rtc: ");
    struct mig_buf bad = saved(rtc_save_v, src);
    bad.data[2] = 0x80;
    expect_refused(rtc_save_v, rtc_load_v, dst, bad.data, bad.len,
                   "rtc: index 0x80 beyond CMOS RAM");
    bad.data[2] = 0;
    bad.data[3 + 0x0a] |= 0x80;
    expect_refused(rtc_save_v, rtc_load_v, dst, bad.data, bad.len, "rtc: register A");
    bad.data[3 + 0x0a] &= 0x7f;
    bad.data[3 + 0x0d] = 0;
    expect_refused(rtc_save_v, rtc_load_v, dst, bad.data, bad.len, "rtc: register D");
    cr_assert_eq(cmos_rd(dst, 0x20), 0x77);
    mig_buf_free(&bad);
    mig_buf_free(&good);
    rtc_free(src);
    rtc_free(dst);
}

/* ---- PCI ---- */

#define MMIO_BASE 0xc0000000ULL
#define MMIO_SIZE 0x10000000ULL

struct bar_log {
    int calls;
    uint64_t offset;
};

static void bar_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct bar_log *l = opaque;
    l->calls++;
    l->offset = offset;
    if (!is_write)
        memset(data, 0x3e, len);
}

struct side {
    struct bus *pio, *mmio;
    struct pci_bus *pb;
    struct pci_dev dev;
    struct bar_log mem, io, mem64;
    int cfg_writes;
    uint32_t cfg_off, cfg_len;
};

static void on_cfg_written(struct pci_dev *d, uint32_t off, uint32_t len)
{
    struct side *s = d->opaque;
    s->cfg_writes++;
    s->cfg_off = off;
    s->cfg_len = len;
}

static void side_init(struct side *s, uint16_t device_id, bool add)
{
    memset(s, 0, sizeof(*s));
    s->pio = bus_new("pio");
    s->mmio = bus_new("mmio");
    s->pb = pci_bus_new(s->pio, s->mmio, MMIO_BASE, MMIO_SIZE);
    cr_assert_not_null(s->pb);
    struct pci_dev *d = &s->dev;
    d->cfg[0] = 0xf4, d->cfg[1] = 0x1a;
    d->cfg[2] = (uint8_t)device_id, d->cfg[3] = (uint8_t)(device_id >> 8);
    d->cfg[0x09] = 0x02, d->cfg[0x0a] = 0x08, d->cfg[0x0b] = 0x01;
    d->cfg[0x3d] = 1;
    d->bar[0] = (struct pci_bar){PCI_BAR_MEM32, 0x4000, bar_io, &s->mem, 0, false};
    d->bar[1] = (struct pci_bar){PCI_BAR_IO, 0x20, bar_io, &s->io, 0, false};
    d->bar[2] = (struct pci_bar){PCI_BAR_MEM64, 0x10000, bar_io, &s->mem64, 0, false};
    d->cfg_written = on_cfg_written;
    d->opaque = s;
    if (add)
        cr_assert_eq(pci_add_device(s->pb, d), 0);
}

static void side_free(struct side *s)
{
    pci_bus_free(s->pb);
    bus_free(s->pio);
    bus_free(s->mmio);
}

static void pci_save_v(void *d, struct mig_buf *b)
{
    pci_bus_save(d, b);
}

static int pci_load_v(void *d, struct mig_cursor *c, char *e, size_t n)
{
    return pci_bus_load(d, c, e, n);
}

static uint32_t conf1_addr(unsigned slot, unsigned reg)
{
    return 0x80000000u | slot << 11 | reg;
}

static void conf1_write_addr(struct pci_bus *pb, uint32_t a)
{
    pci_conf1_io(pb, 0, (uint8_t *)&a, 4, true);
}

/* The guest's view on the source: BAR0 moved, BAR1 moved, decoding on, conf1 mid-access. */
static void guest_programs(struct side *s)
{
    pci_cfg_write(s->pb, 1, 0, 0x10, 4, 0xc8000000);
    pci_cfg_write(s->pb, 1, 0, 0x14, 4, 0xd000);
    pci_cfg_write(s->pb, 1, 0, 0x3c, 1, 11);
    pci_cfg_write(s->pb, 1, 0, 0x04, 2, 0x0007);
    conf1_write_addr(s->pb, conf1_addr(1, 0x10));
}

static void pci_move(struct side *src, struct side *dst)
{
    struct mig_buf b = saved(pci_save_v, src->pb);
    char err[200];
    cr_assert_eq(load_bytes(pci_load_v, dst->pb, b.data, b.len, err, sizeof(err)), 0, "%s", err);
    mig_buf_free(&b);
}

Test(pci_state, config_and_bar_remap)
{
    struct side src, dst;
    side_init(&src, 0x1234, true);
    side_init(&dst, 0x1234, true);
    guest_programs(&src);
    uint8_t buf[4];
    cr_assert(bus_dispatch(src.mmio, 0xc8000010, buf, 4, false));

    pci_move(&src, &dst);
    cr_assert_eq(dst.cfg_writes, 1);
    cr_assert_eq(dst.cfg_off, 0);
    cr_assert_eq(dst.cfg_len, 256);
    cr_assert_eq(pci_cfg_read(dst.pb, 1, 0, 0x10, 4), 0xc8000000);
    cr_assert_eq(pci_cfg_read(dst.pb, 1, 0, 0x04, 2), 0x0007);
    cr_assert_eq(pci_cfg_read(dst.pb, 1, 0, 0x3c, 1), 11);

    /* The moved BARs decode at their new addresses on the destination, and only there. */
    cr_assert(bus_dispatch(dst.mmio, 0xc8000010, buf, 4, false));
    cr_assert_eq(dst.mem.calls, 1);
    cr_assert_eq(dst.mem.offset, 0x10);
    cr_assert_not(bus_dispatch(dst.mmio, MMIO_BASE, buf, 4, false), "old BAR0 address is free");
    cr_assert(bus_dispatch(dst.pio, 0xd004, buf, 1, false));
    cr_assert_eq(dst.io.offset, 4);
    uint64_t bar2 = pci_cfg_read(dst.pb, 1, 0, 0x18, 4) & ~0xfULL;
    cr_assert(bus_dispatch(dst.mmio, bar2 + 8, buf, 4, false));
    cr_assert_eq(dst.mem64.offset, 8);

    /* conf1 resumes mid-access: the data port reads the register the source selected. */
    uint32_t v = 0;
    pci_conf1_io(dst.pb, 4, (uint8_t *)&v, 4, false);
    cr_assert_eq(v, 0xc8000000);
    side_free(&src);
    side_free(&dst);
}

/* Decoding off at save time: the destination must not map what the guest disabled. */
Test(pci_state, command_off_unmaps)
{
    struct side src, dst;
    side_init(&src, 0x1234, true);
    side_init(&dst, 0x1234, true);
    pci_cfg_write(dst.pb, 1, 0, 0x04, 2, 0x0003);
    uint8_t buf[4];
    cr_assert(bus_dispatch(dst.mmio, MMIO_BASE, buf, 4, false));
    pci_move(&src, &dst);
    cr_assert_not(bus_dispatch(dst.mmio, MMIO_BASE, buf, 4, false));
    cr_assert_eq(dst.mem.calls, 1);
    side_free(&src);
    side_free(&dst);
}

/* Two devices trade BAR0 addresses: each new address is still claimed by the other device's
 * old mapping until that one moves, so a device-by-device remap would leave one unmapped. */
Test(pci_state, bars_trading_places)
{
    struct side src, dst;
    side_init(&src, 0x1234, true);
    side_init(&dst, 0x1234, true);
    struct bar_log src_b = {0}, dst_b = {0};
    struct pci_dev src_dev2 = src.dev, dst_dev2 = dst.dev;
    /* A copy of device 1 made after registration: drop its BARs, keep its identity. */
    for (int i = 0; i < 6; i++)
        src_dev2.bar[i] = dst_dev2.bar[i] = (struct pci_bar){0};
    memset(src_dev2.cfg + 0x10, 0, 24), memset(src_dev2.wmask + 0x10, 0, 24);
    memset(dst_dev2.cfg + 0x10, 0, 24), memset(dst_dev2.wmask + 0x10, 0, 24);
    src_dev2.bar[0] = (struct pci_bar){PCI_BAR_MEM32, 0x4000, bar_io, &src_b, 0, false};
    dst_dev2.bar[0] = (struct pci_bar){PCI_BAR_MEM32, 0x4000, bar_io, &dst_b, 0, false};
    src_dev2.cfg_written = dst_dev2.cfg_written = NULL;
    cr_assert_eq(pci_add_device(src.pb, &src_dev2), 0);
    cr_assert_eq(pci_add_device(dst.pb, &dst_dev2), 0);
    uint32_t a = pci_cfg_read(dst.pb, 1, 0, 0x10, 4), b = pci_cfg_read(dst.pb, 2, 0, 0x10, 4);
    for (uint8_t slot = 1; slot <= 2; slot++)
        pci_cfg_write(dst.pb, slot, 0, 0x04, 2, 0x0002);
    /* The guest swaps them with decoding off, then turns decoding on. */
    pci_cfg_write(src.pb, 1, 0, 0x10, 4, b);
    pci_cfg_write(src.pb, 2, 0, 0x10, 4, a);
    for (uint8_t slot = 1; slot <= 2; slot++)
        pci_cfg_write(src.pb, slot, 0, 0x04, 2, 0x0002);

    pci_move(&src, &dst);
    uint8_t buf[4];
    cr_assert(bus_dispatch(dst.mmio, a + 4, buf, 4, false));
    cr_assert_eq(dst_b.calls, 1, "device 2 now answers at device 1's old address");
    cr_assert(bus_dispatch(dst.mmio, b + 4, buf, 4, false));
    cr_assert_eq(dst.mem.calls, 1, "and device 1 at device 2's");
    side_free(&src);
    side_free(&dst);
}

Test(pci_state, hostile)
{
    struct side src, dst;
    side_init(&src, 0x1234, true);
    side_init(&dst, 0x1234, true);
    guest_programs(&src);
    pci_cfg_write(dst.pb, 1, 0, 0x04, 2, 0x0003); /* dst decodes at its initial addresses */
    struct mig_buf good = saved(pci_save_v, src.pb);
    expect_generic_refusals(pci_save_v, pci_load_v, dst.pb, &good, "pci: ");

    /* Layout: version 2, conf1 4, count 1, then (slot 1, cfg 256) per device: bridge, dev. */
    const size_t dev_cfg = 2 + 4 + 1 + 257 + 1;
    struct mig_buf bad = saved(pci_save_v, src.pb);
    bad.data[dev_cfg + 0x10] |= 0x10; /* below BAR0's 16 KiB size */
    expect_refused(pci_save_v, pci_load_v, dst.pb, bad.data, bad.len, "pci 01: BAR0 0xc8000010");
    bad.data[dev_cfg + 0x10] &= ~0x10;
    bad.data[dev_cfg + 0x14] &= ~0x01; /* BAR1 claims memory instead of I/O */
    expect_refused(pci_save_v, pci_load_v, dst.pb, bad.data, bad.len, "pci 01: BAR1");
    bad.data[dev_cfg + 0x14] |= 0x01;
    bad.data[dev_cfg + 0x0a] = 0x00;
    expect_refused(pci_save_v, pci_load_v, dst.pb, bad.data, bad.len,
                   "pci 01: class 0x010002 in the stream, 0x010802 here");
    bad.data[dev_cfg + 0x0a] = 0x08;
    bad.data[dev_cfg + 0x2c] = 0x99;
    expect_refused(pci_save_v, pci_load_v, dst.pb, bad.data, bad.len,
                   "pci 01: read-only config byte 0x2c");
    bad.data[dev_cfg + 0x2c] = 0;
    bad.data[dev_cfg - 1] = 0; /* the device claims slot 0 after the bridge */
    expect_refused(pci_save_v, pci_load_v, dst.pb, bad.data, bad.len,
                   "pci: slot 0 listed after slot 0");
    bad.data[dev_cfg - 1] = 40;
    expect_refused(pci_save_v, pci_load_v, dst.pb, bad.data, bad.len, "pci: slot 40 beyond");
    bad.data[dev_cfg - 1] = 2;
    expect_refused(pci_save_v, pci_load_v, dst.pb, bad.data, bad.len,
                   "pci 02: device 1af4:1234 in the stream is not present here");
    bad.data[dev_cfg - 1] = 1;
    bad.data[6] = 200;
    expect_refused(pci_save_v, pci_load_v, dst.pb, bad.data, bad.len, "pci: 200 devices exceed");
    mig_buf_free(&bad);

    /* Different hardware on the destination. */
    struct side other, none;
    side_init(&other, 0x5678, true);
    side_init(&none, 0x1234, false);
    expect_refused(pci_save_v, pci_load_v, other.pb, good.data, good.len,
                   "pci 01: device 1af4:1234 in the stream, 1af4:5678 here");
    expect_refused(pci_save_v, pci_load_v, none.pb, good.data, good.len,
                   "pci 01: device 1af4:1234 in the stream is not present here");
    struct mig_buf bridge_only = saved(pci_save_v, none.pb);
    expect_refused(pci_save_v, pci_load_v, dst.pb, bridge_only.data, bridge_only.len,
                   "pci 01: device 1af4:1234 here is missing from the stream");

    /* Nothing moved: dst still decodes at its own addresses and saw no cfg_written. */
    uint8_t buf[4];
    cr_assert(bus_dispatch(dst.mmio, MMIO_BASE, buf, 4, false));
    cr_assert_not(bus_dispatch(dst.mmio, 0xc8000000, buf, 4, false));
    cr_assert_eq(dst.cfg_writes, 1, "only the test's own COMMAND write");
    mig_buf_free(&bridge_only);
    mig_buf_free(&good);
    side_free(&other);
    side_free(&none);
    side_free(&src);
    side_free(&dst);
}

/* ---- MSI-X ---- */

struct msix_log {
    int delivered[8];
    int routes[8];
    uint64_t route_addr[8];
    uint32_t route_data[8];
    bool route_masked[8];
};

static void mx_deliver(void *opaque, unsigned vec, uint64_t addr, uint32_t data)
{
    struct msix_log *l = opaque;
    (void)addr, (void)data;
    l->delivered[vec]++;
}

static void mx_route(void *opaque, unsigned vec, uint64_t addr, uint32_t data, bool masked)
{
    struct msix_log *l = opaque;
    l->routes[vec]++;
    l->route_addr[vec] = addr;
    l->route_data[vec] = data;
    l->route_masked[vec] = masked;
}

static const struct msix_ops mx_ops = {mx_deliver, mx_route};

static void mx_w32(struct msix *m, uint64_t off, uint32_t v)
{
    msix_table_io(m, off, (uint8_t *)&v, 4, true);
}

static void mx_enable(struct msix *m, uint16_t mc)
{
    uint8_t cfg[256] = {0}, wmask[256] = {0};
    msix_cap_build(m, cfg, wmask, 0x40, 0, 0, 0x2000, 0x3000);
    memcpy(cfg + 0x42, &mc, 2);
    msix_cfg_written(m, cfg);
}

static void msix_save_v(void *d, struct mig_buf *b)
{
    msix_save(d, b);
}

static int msix_load_v(void *d, struct mig_cursor *c, char *e, size_t n)
{
    return msix_load(d, c, e, n);
}

/* Eight vectors programmed, vector 3 masked with an interrupt pending on it. */
static void msix_source(struct msix *m, struct msix_log *l)
{
    msix_init(m, 8, &mx_ops, l);
    for (unsigned v = 0; v < 8; v++) {
        mx_w32(m, v * 16, 0xfee00000 | v << 12);
        mx_w32(m, v * 16 + 8, 0x40 + v);
        mx_w32(m, v * 16 + 12, v == 3);
    }
    mx_enable(m, 0x8000);
    msix_notify(m, 3);
    cr_assert_eq(l->delivered[3], 0);
}

static uint8_t pba_byte(struct msix *m)
{
    uint8_t v = 0;
    msix_pba_io(m, 0, &v, 1, false);
    return v;
}

Test(msix_state, table_pba_masks_routes)
{
    static struct msix src, dst;
    struct msix_log sl = {0}, dl = {0};
    msix_source(&src, &sl);
    msix_init(&dst, 8, &mx_ops, &dl);
    struct mig_buf b = saved(msix_save_v, &src);
    char err[128];
    cr_assert_eq(load_bytes(msix_load_v, &dst, b.data, b.len, err, sizeof(err)), 0, "%s", err);
    cr_assert(msix_is_enabled(&dst));
    for (unsigned v = 0; v < 8; v++) {
        cr_assert_eq(dl.routes[v], 1, "vector %u route rebuilt", v);
        cr_assert_eq(dl.route_addr[v], 0xfee00000 | v << 12);
        cr_assert_eq(dl.route_data[v], 0x40 + v);
        cr_assert_eq(dl.route_masked[v], v == 3);
        cr_assert_eq(dl.delivered[v], 0);
    }
    cr_assert_eq(pba_byte(&dst), 1 << 3, "still pending, still masked");
    uint32_t ctrl = 0;
    msix_table_io(&dst, 3 * 16 + 12, (uint8_t *)&ctrl, 4, false);
    cr_assert_eq(ctrl, 1);
    mx_w32(&dst, 3 * 16 + 12, 0);
    cr_assert_eq(dl.delivered[3], 1, "unmasking on the destination delivers it");
    cr_assert_eq(pba_byte(&dst), 0);
    mig_buf_free(&b);
}

/* A state with a pending bit on an unmasked vector is delivered as the load completes. */
Test(msix_state, pending_unmasked_delivered_on_load)
{
    static struct msix src, dst;
    struct msix_log sl = {0}, dl = {0};
    msix_source(&src, &sl);
    mx_enable(&src, 0xc000); /* function mask: vector 5 becomes pending */
    msix_notify(&src, 5);
    msix_init(&dst, 8, &mx_ops, &dl);
    struct mig_buf b = saved(msix_save_v, &src);
    char err[128];
    cr_assert_eq(load_bytes(msix_load_v, &dst, b.data, b.len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(dl.delivered[5], 0, "function still masked");
    cr_assert_eq(pba_byte(&dst), (1 << 3) | (1 << 5));
    /* The same state with Function Mask clear: vector 5 fires, masked vector 3 waits. */
    static struct msix dst2;
    struct msix_log dl2 = {0};
    msix_init(&dst2, 8, &mx_ops, &dl2);
    b.data[4] &= ~0x02;
    cr_assert_eq(load_bytes(msix_load_v, &dst2, b.data, b.len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(dl2.delivered[5], 1);
    cr_assert_eq(dl2.delivered[3], 0);
    cr_assert_eq(pba_byte(&dst2), 1 << 3);
    mig_buf_free(&b);
}

Test(msix_state, hostile)
{
    static struct msix src, dst, small;
    struct msix_log sl = {0}, dl = {0}, ml = {0};
    msix_source(&src, &sl);
    msix_init(&dst, 8, &mx_ops, &dl);
    mx_w32(&dst, 16 + 8, 0x1234);
    memset(dl.routes, 0, sizeof(dl.routes));
    struct mig_buf good = saved(msix_save_v, &src);
    expect_generic_refusals(msix_save_v, msix_load_v, &dst, &good, "msix: ");

    msix_init(&small, 4, &mx_ops, &ml);
    expect_refused(msix_save_v, msix_load_v, &small, good.data, good.len,
                   "msix: 8 vectors in the stream, 4 here");
    struct mig_buf bad = saved(msix_save_v, &src);
    bad.data[4] = 0x04;
    expect_refused(msix_save_v, msix_load_v, &dst, bad.data, bad.len,
                   "msix: flags 0x04 has unknown bits set");
    bad.data[4] = 0x01;
    bad.data[5 + 2 * 16 + 12] = 0x02; /* vector 2 control: reserved bit */
    expect_refused(msix_save_v, msix_load_v, &dst, bad.data, bad.len,
                   "msix: vector 2 control 0x00000002 has reserved bits set");
    bad.data[5 + 2 * 16 + 12] = 0;
    bad.data[5 + 8 * 16 + 1] = 0x01; /* PBA bit 8: there is no vector 8 */
    expect_refused(msix_save_v, msix_load_v, &dst, bad.data, bad.len,
                   "msix: PBA has pending bits beyond vector 7");
    mig_buf_free(&bad);
    for (unsigned v = 0; v < 8; v++) {
        cr_assert_eq(dl.routes[v], 0, "a refused load rebuilt no route");
        cr_assert_eq(dl.delivered[v], 0);
    }
    mig_buf_free(&good);
}
