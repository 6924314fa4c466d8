#pragma once
#include <stdint.h>
/* Parse "512M", "2G", "1.5G", "65536K", "1GiB" into bytes; a bare number counts in units of
 * 1 << bare_shift bytes (0: bytes; 20: MiB, as QEMU and kvmtool read --mem 512). Decimals
 * must come out as a whole number of bytes. Returns -1 on junk, overflow or a fraction. */
int parse_size_unit(const char *s, unsigned bare_shift, uint64_t *out);
/* parse_size_unit(s, 0, out): a bare number is bytes. */
int parse_size(const char *s, uint64_t *out);
