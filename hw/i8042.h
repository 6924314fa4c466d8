/*
 * i8042 keyboard-controller stub: enough for Linux's probe, and a 0xFE command
 * (pulse reset line) calls reset(), which the VMM turns into "guest reset".
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hw/device.h"

#define I8042_BASE 0x60 /* data 0x60, status/command 0x64: register 5 ports */
#define I8042_LEN  5

struct i8042;
struct mig_buf;
struct mig_cursor;

struct i8042 *i8042_new(void (*reset)(void *opaque), void *opaque);
void i8042_free(struct i8042 *k);
void i8042_io(void *i8042, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);
/* Migration (I8042_SECTION): control register, half-done command, pending response byte.
 * Load refuses a bad state with a one-line reason in err and leaves k unchanged. */
void i8042_save(struct i8042 *k, struct mig_buf *b);
int i8042_load(struct i8042 *k, struct mig_cursor *c, char *err, size_t errlen);

#define I8042_SECTION 0x71 /* migration section */
/* How the VM creates, saves, loads and frees it (hw/device.h). */
extern const struct device_ops i8042_device;
