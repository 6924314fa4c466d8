/* CMOS RTC: the registers Linux's rtc_cmos and its clock read use. */
#include <criterion/criterion.h>

#include "hw/rtc.h"

static time_t fixed(void)
{
    return 1795857845; /* 2026-11-28 09:24:05 UTC, a Saturday */
}

static uint8_t rd(struct rtc *r, uint8_t reg)
{
    uint8_t v = reg;
    rtc_io(r, 0, &v, 1, true);
    rtc_io(r, 1, &v, 1, false);
    return v;
}

static void wr(struct rtc *r, uint8_t reg, uint8_t val)
{
    rtc_io(r, 0, &reg, 1, true);
    rtc_io(r, 1, &val, 1, true);
}

Test(rtc, bcd_time_from_host_clock)
{
    struct rtc *r = rtc_new();
    rtc_set_time_source(r, fixed);
    cr_assert_eq(rd(r, 0x00), 0x05);
    cr_assert_eq(rd(r, 0x02), 0x24);
    cr_assert_eq(rd(r, 0x04), 0x09);
    cr_assert_eq(rd(r, 0x06), 0x07, "Saturday is day 7");
    cr_assert_eq(rd(r, 0x07), 0x28);
    cr_assert_eq(rd(r, 0x08), 0x11);
    cr_assert_eq(rd(r, 0x09), 0x26);
    cr_assert_eq(rd(r, 0x32), 0x20);
    rtc_free(r);
}

Test(rtc, status_registers_say_valid_and_not_updating)
{
    struct rtc *r = rtc_new();
    cr_assert_eq(rd(r, 0x0a) & 0x80, 0, "UIP clear");
    cr_assert_eq(rd(r, 0x0d) & 0x80, 0x80, "VRT: time valid");
    cr_assert_eq(rd(r, 0x0b) & 0x02, 0x02, "24-hour mode");
    wr(r, 0x0d, 0);
    cr_assert_eq(rd(r, 0x0d), 0x80, "D is read-only");
    rtc_free(r);
}

Test(rtc, binary_and_12_hour_modes)
{
    struct rtc *r = rtc_new();
    rtc_set_time_source(r, fixed);
    wr(r, 0x0b, 0x06); /* binary, 24h */
    cr_assert_eq(rd(r, 0x02), 24);
    cr_assert_eq(rd(r, 0x09), 26);
    wr(r, 0x0b, 0x04); /* binary, 12h: 09 is AM */
    cr_assert_eq(rd(r, 0x04), 9);
    rtc_free(r);
}

Test(rtc, cmos_ram_and_nmi_bit)
{
    struct rtc *r = rtc_new();
    wr(r, 0x40, 0xab);
    cr_assert_eq(rd(r, 0x40), 0xab);
    wr(r, 0x80 | 0x41, 0xcd); /* NMI-disable bit is not part of the index */
    cr_assert_eq(rd(r, 0x41), 0xcd);
    wr(r, 0x00, 0x59);
    uint8_t v = 0;
    rtc_io(r, 0, &v, 1, false);
    cr_assert_eq(v, 0xff, "index port is write-only");
    uint8_t wide[4] = {0, 0, 0, 0};
    rtc_io(r, 1, wide, 4, false); /* wide access: no crash, upper bytes all-ones */
    cr_assert_eq(wide[3], 0xff);
    rtc_free(r);
}
