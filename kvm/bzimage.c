#include "kvm/bzimage.h"

#include <asm/bootparam.h>
#include <stdio.h>
#include <string.h>

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint16_t rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* Offsets into the file (the setup header lives at 0x1f1 of the zero page and the image). */
#define OFF_SETUP_SECTS 0x1f1
#define OFF_BOOT_FLAG   0x1fe
#define OFF_JUMP        0x200
#define OFF_HEADER      0x202
#define OFF_VERSION     0x206
#define OFF_INITRD_MAX  0x22c
#define OFF_XLOADFLAGS  0x236
#define OFF_CMDLINE_SZ  0x238
#define OFF_PREF_ADDR   0x258
#define OFF_INIT_SIZE   0x260
#define MIN_HEADER_END  0x268

int bzimage_parse(const uint8_t *file, size_t size, struct bzimage_info *out, char *err,
                  size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (size < MIN_HEADER_END) {
        snprintf(err, errlen, "not a bzImage (file too small: %zu bytes)", size);
        return -1;
    }
    if (memcmp(file + OFF_HEADER, "HdrS", 4) != 0) {
        snprintf(err, errlen, "not a bzImage (no \"HdrS\" boot header)");
        return -1;
    }
    if (rd16(file + OFF_BOOT_FLAG) != 0xaa55) {
        snprintf(err, errlen, "not a bzImage (boot flag is not 0xAA55)");
        return -1;
    }
    out->version = rd16(file + OFF_VERSION);
    if (out->version < 0x020c) {
        snprintf(err, errlen, "boot protocol %u.%02u is too old (nvmevm needs 2.12 or newer)",
                 out->version >> 8, out->version & 0xff);
        return -1;
    }
    if (!(file[OFF_XLOADFLAGS] & XLF_KERNEL_64)) {
        snprintf(err, errlen, "kernel has no 64-bit entry point (XLF_KERNEL_64 not set)");
        return -1;
    }
    unsigned sects = file[OFF_SETUP_SECTS] ? file[OFF_SETUP_SECTS] : 4;
    out->setup_size = (size_t)(sects + 1) * 512;
    if (out->setup_size >= size) {
        snprintf(err, errlen, "truncated bzImage (setup is %zu bytes, file is %zu)",
                 out->setup_size, size);
        return -1;
    }
    out->pm_size = size - out->setup_size;
    out->header_end = OFF_JUMP + 2 + file[OFF_JUMP + 1];
    if (out->header_end < MIN_HEADER_END || out->header_end > 0x290 || out->header_end > size) {
        snprintf(err, errlen, "corrupted bzImage (setup header length %zu)", out->header_end);
        return -1;
    }
    out->initrd_addr_max = rd32(file + OFF_INITRD_MAX);
    out->cmdline_size = rd32(file + OFF_CMDLINE_SZ);
    memcpy(&out->pref_address, file + OFF_PREF_ADDR, 8);
    out->init_size = rd32(file + OFF_INIT_SIZE);
    return 0;
}
