/*
 * An address bus (one for port I/O, one for MMIO). Devices claim
 * [base, base+len); overlapping claims are refused. Accesses to unclaimed
 * addresses read all-ones and drop writes: an unknown port never stops a VM.
 * Safe for concurrent dispatch from vCPU threads while BARs are remapped.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>

/* offset is relative to the region's base; data holds len (1..8) bytes, little-endian. */
typedef void (*bus_io_fn)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
                          bool is_write);

struct bus;

struct bus *bus_new(const char *name);
void bus_free(struct bus *b);
/* 0 on success; -EINVAL for len 0 or a range that wraps; -EEXIST if it overlaps a claim. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_io_fn fn, void *opaque,
                 const char *name);
/* Removes the region starting exactly at base: 0, or -ENOENT. */
int bus_unregister(struct bus *b, uint64_t base);
/* Dispatches one access. Returns false (reads filled with 0xff) if nothing claims addr. */
bool bus_dispatch(struct bus *b, uint64_t addr, uint8_t *data, uint32_t len, bool is_write);
