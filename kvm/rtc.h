/*
 * MC146818 CMOS real-time clock at ports 0x70/0x71, reading the host's UTC time.
 * Without it Linux's rtc_cmos driver spends seconds probing an absent chip.
 * The guest may write the CMOS RAM bytes; writes to the clock itself are ignored.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#define RTC_BASE 0x70
#define RTC_LEN  2

struct rtc;

struct rtc *rtc_new(void);
void rtc_free(struct rtc *r);
void rtc_io(void *rtc, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);
/* For tests: read clocks from this function instead of time(). */
void rtc_set_time_source(struct rtc *r, time_t (*now)(void));
