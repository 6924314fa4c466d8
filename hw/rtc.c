#include "hw/rtc.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/err.h"

#define REG_SECONDS 0x00
#define REG_MINUTES 0x02
#define REG_HOURS   0x04
#define REG_WEEKDAY 0x06
#define REG_DAY     0x07
#define REG_MONTH   0x08
#define REG_YEAR    0x09
#define REG_A       0x0a
#define REG_B       0x0b
#define REG_C       0x0c
#define REG_D       0x0d
#define REG_CENTURY 0x32

#define B_24H         0x02
#define B_BINARY      0x04
#define D_VALID       0x80
#define A_DIVIDER_32K 0x26 /* 32.768 kHz time base, 1024 Hz rate; UIP (bit 7) never set */

struct rtc {
    pthread_mutex_t lock;
    uint8_t index;
    uint8_t ram[128];
    time_t (*now)(void);
};

static time_t host_now(void)
{
    return time(NULL);
}

struct rtc *rtc_new(void)
{
    struct rtc *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    pthread_mutex_init(&r->lock, NULL);
    r->ram[REG_A] = A_DIVIDER_32K;
    r->ram[REG_B] = B_24H;
    r->ram[REG_D] = D_VALID;
    r->now = host_now;
    return r;
}

void rtc_free(struct rtc *r)
{
    if (!r)
        return;
    pthread_mutex_destroy(&r->lock);
    free(r);
}

void rtc_set_time_source(struct rtc *r, time_t (*now)(void))
{
    r->now = now;
}

static uint8_t encode(const struct rtc *r, int v)
{
    if (r->ram[REG_B] & B_BINARY)
        return (uint8_t)v;
    return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static uint8_t read_reg(struct rtc *r, uint8_t reg)
{
    time_t t = r->now();
    struct tm tm;
    gmtime_r(&t, &tm);
    switch (reg) {
    case REG_SECONDS:
        return encode(r, tm.tm_sec);
    case REG_MINUTES:
        return encode(r, tm.tm_min);
    case REG_HOURS:
        if (r->ram[REG_B] & B_24H)
            return encode(r, tm.tm_hour);
        /* 12-hour mode: 1..12, bit 7 = PM */
        return (uint8_t)(encode(r, tm.tm_hour % 12 ? tm.tm_hour % 12 : 12) |
                         (tm.tm_hour >= 12 ? 0x80 : 0));
    case REG_WEEKDAY:
        return encode(r, tm.tm_wday + 1);
    case REG_DAY:
        return encode(r, tm.tm_mday);
    case REG_MONTH:
        return encode(r, tm.tm_mon + 1);
    case REG_YEAR:
        return encode(r, tm.tm_year % 100);
    case REG_CENTURY:
        return encode(r, (tm.tm_year + 1900) / 100);
    case REG_C:
        return 0; /* no interrupt flags: we raise no RTC interrupts */
    default:
        return r->ram[reg];
    }
}

static void write_reg(struct rtc *r, uint8_t reg, uint8_t v)
{
    switch (reg) {
    case REG_A:
        r->ram[REG_A] = (uint8_t)(v & 0x7f);
        break;
    case REG_B:
        r->ram[REG_B] = v;
        break;
    case REG_C:
    case REG_D:
        break; /* read-only */
    case REG_SECONDS:
    case REG_MINUTES:
    case REG_HOURS:
    case REG_WEEKDAY:
    case REG_DAY:
    case REG_MONTH:
    case REG_YEAR:
    case REG_CENTURY:
        break; /* the clock follows the host */
    default:
        r->ram[reg] = v;
        break;
    }
}

void rtc_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct rtc *r = opaque;
    if (len == 0)
        return;
    pthread_mutex_lock(&r->lock);
    if (offset == 0) {
        if (is_write)
            r->index = data[0] & 0x7f; /* bit 7 is the NMI mask, not part of the index */
        else
            data[0] = 0xff;
    } else {
        if (is_write)
            write_reg(r, r->index, data[0]);
        else
            data[0] = read_reg(r, r->index);
    }
    for (uint32_t i = 1; !is_write && i < len; i++)
        data[i] = 0xff;
    pthread_mutex_unlock(&r->lock);
}

/* ---- migration ---- */

#define RTC_STATE_VERSION 1
#define RTC_RAM_SIZE      128
#define A_UIP             0x80

void rtc_save(struct rtc *r, struct mig_buf *b)
{
    pthread_mutex_lock(&r->lock);
    mig_put_u16(b, RTC_STATE_VERSION);
    mig_put_u8(b, r->index);
    mig_put_bytes(b, r->ram, RTC_RAM_SIZE);
    pthread_mutex_unlock(&r->lock);
}

int rtc_load(struct rtc *r, struct mig_cursor *c, char *err, size_t errlen)
{
    uint16_t version = mig_get_u16(c);
    if (c->bad) {
        return err_set(err, errlen, "rtc: state truncated before version");
    }
    if (version != RTC_STATE_VERSION) {
        return err_set(err, errlen, "rtc: state version %u, this nvmevm reads %u", version,
                       RTC_STATE_VERSION);
    }
    uint8_t index = mig_get_u8(c);
    uint8_t ram[RTC_RAM_SIZE];
    if (!mig_get_bytes(c, ram, sizeof(ram))) {
        return err_set(err, errlen, "rtc: state truncated in CMOS RAM");
    }
    /* The values below are ones no guest write can produce (see rtc_io and write_reg). */
    if (index >= RTC_RAM_SIZE) {
        return err_set(err, errlen, "rtc: index 0x%02x beyond CMOS RAM", index);
    }
    if (ram[REG_A] & A_UIP) {
        return err_set(err, errlen, "rtc: register A 0x%02x has UIP set", ram[REG_A]);
    }
    if (ram[REG_D] != D_VALID) {
        return err_set(err, errlen, "rtc: register D 0x%02x is read-only 0x%02x", ram[REG_D],
                       D_VALID);
    }
    if (!mig_cursor_done(c)) {
        return err_set(err, errlen, "rtc: %zu trailing bytes after state", c->len - c->pos);
    }
    pthread_mutex_lock(&r->lock);
    r->index = index;
    memcpy(r->ram, ram, sizeof(ram));
    pthread_mutex_unlock(&r->lock);
    return 0;
}

/* ---- the device table entry (hw/device.h) ---- */

static int save_op(void *dev, struct mig_buf *b, char *err, size_t errlen)
{
    rtc_save(dev, b);
    return 0;
}

static int load_op(void *dev, struct mig_cursor *c, char *err, size_t errlen)
{
    return rtc_load(dev, c, err, errlen);
}

static void free_op(void *dev)
{
    rtc_free(dev);
}

const struct device_ops rtc_device = {
    .name = "rtc",
    .section = RTC_SECTION,
    .version = 1,
    .pio_base = RTC_BASE,
    .pio_len = RTC_LEN,
    .pio = rtc_io,
    .save = save_op,
    .load = load_op,
    .free = free_op,
};
