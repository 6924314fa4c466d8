/*
 * Debug-exit ports, so a guest can end nvmevm with a chosen exit status.
 *   0x501 (byte v): exit status (v << 1) | 1 -- same as QEMU's
 *         "-device isa-debug-exit,iobase=0x501,iosize=1", so one guest binary
 *         reports identically under both VMMs.
 *   0x502 (byte v): exit status v exactly (used by the Linux guest's /init).
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "hw/device.h"

#define DEBUG_EXIT_BASE 0x501
#define DEBUG_EXIT_LEN  2

struct debug_exit;

struct debug_exit *debug_exit_new(void (*exit_cb)(void *opaque, int status), void *opaque);
void debug_exit_free(struct debug_exit *d);
void debug_exit_io(void *debug_exit, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

/* How the VM creates, saves, loads and frees it (hw/device.h). */
extern const struct device_ops debug_exit_device;
