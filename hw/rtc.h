/*
 * MC146818 CMOS real-time clock at ports 0x70/0x71, reading the host's UTC time.
 * Without it Linux's rtc_cmos driver spends seconds probing an absent chip.
 * The guest may write the CMOS RAM bytes; writes to the clock itself are ignored.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "hw/device.h"

#define RTC_BASE 0x70
#define RTC_LEN  2

struct rtc;
struct mig_buf;
struct mig_cursor;

struct rtc *rtc_new(void);
void rtc_free(struct rtc *r);
void rtc_io(void *rtc, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);
/* For tests: read clocks from this function instead of time(). */
void rtc_set_time_source(struct rtc *r, time_t (*now)(void));
/* Migration (RTC_SECTION): the index register and CMOS RAM. The clock is not state: both
 * sides read their host's time. Load refuses a bad state with a one-line reason in err and
 * leaves r unchanged. */
void rtc_save(struct rtc *r, struct mig_buf *b);
int rtc_load(struct rtc *r, struct mig_cursor *c, char *err, size_t errlen);

#define RTC_SECTION 0x72 /* migration section */
/* How the VM creates, saves, loads and frees it (hw/device.h). */
extern const struct device_ops rtc_device;
