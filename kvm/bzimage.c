#include "kvm/bzimage.h"

#include <asm/bootparam.h>
#include <stdio.h>
#include <string.h>

#include "util/err.h"
#include "util/le.h"

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
        return err_set(err, errlen, "not a bzImage (file too small: %zu bytes)", size);
    }
    if (memcmp(file + OFF_HEADER, "HdrS", 4) != 0) {
        return err_set(err, errlen, "not a bzImage (no \"HdrS\" boot header)");
    }
    if (le16_get(file + OFF_BOOT_FLAG) != 0xaa55) {
        return err_set(err, errlen, "not a bzImage (boot flag is not 0xAA55)");
    }
    out->version = le16_get(file + OFF_VERSION);
    if (out->version < 0x020c) {
        return err_set(err, errlen, "boot protocol %u.%02u is too old (nvmevm needs 2.12 or newer)",
                       out->version >> 8, out->version & 0xff);
    }
    if (!(file[OFF_XLOADFLAGS] & XLF_KERNEL_64)) {
        return err_set(err, errlen, "kernel has no 64-bit entry point (XLF_KERNEL_64 not set)");
    }
    unsigned sects = file[OFF_SETUP_SECTS] ? file[OFF_SETUP_SECTS] : 4;
    out->setup_size = (size_t)(sects + 1) * 512;
    if (out->setup_size >= size) {
        return err_set(err, errlen, "truncated bzImage (setup is %zu bytes, file is %zu)",
                       out->setup_size, size);
    }
    out->pm_size = size - out->setup_size;
    out->header_end = OFF_JUMP + 2 + file[OFF_JUMP + 1];
    if (out->header_end < MIN_HEADER_END || out->header_end > 0x290 || out->header_end > size) {
        return err_set(err, errlen, "corrupted bzImage (setup header length %zu)", out->header_end);
    }
    out->initrd_addr_max = le32_get(file + OFF_INITRD_MAX);
    out->cmdline_size = le32_get(file + OFF_CMDLINE_SZ);
    out->pref_address = le64_get(file + OFF_PREF_ADDR);
    out->init_size = le32_get(file + OFF_INIT_SIZE);
    return 0;
}
