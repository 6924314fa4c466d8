/*
 * i8042 keyboard-controller stub: enough for Linux's probe, and a 0xFE command
 * (pulse reset line) calls reset(), which the VMM turns into "guest reset".
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#define I8042_BASE 0x60 /* data 0x60, status/command 0x64: register 5 ports */
#define I8042_LEN  5

struct i8042;

struct i8042 *i8042_new(void (*reset)(void *opaque), void *opaque);
void i8042_free(struct i8042 *k);
void i8042_io(void *i8042, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);
