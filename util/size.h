#pragma once
#include <stdint.h>
/* Parse "512M", "2G", "65536K", "1048576" into bytes. Returns -1 on junk or overflow. */
int parse_size(const char *s, uint64_t *out);
