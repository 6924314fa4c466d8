/* Linux x86 bzImage header checks (boot protocol 2.12+, 64-bit entry). */
#pragma once
#include <stddef.h>
#include <stdint.h>

struct bzimage_info {
    uint16_t version;  /* boot protocol, e.g. 0x020f */
    size_t setup_size; /* bytes before the protected-mode code */
    size_t pm_size;    /* protected-mode code size */
    uint32_t initrd_addr_max;
    uint32_t cmdline_size; /* max command line length, excluding NUL */
    uint32_t init_size;    /* memory the kernel needs from its load address */
    uint64_t pref_address;
    size_t header_end; /* end of the setup header within the file */
};

/* 0 if file is a bootable 64-bit bzImage; else -1 with a reason in err. */
int bzimage_parse(const uint8_t *file, size_t size, struct bzimage_info *out, char *err,
                  size_t errlen);
