#include "kvm/bootparams.h"

#include <stdio.h>
#include <string.h>

#include "kvm/layout.h"

#define E820_TYPE_RAM      1
#define E820_TYPE_RESERVED 2

static int e820_add(struct boot_e820_entry *tbl, int n, int max, uint64_t addr, uint64_t size,
                    uint32_t type)
{
    if (n >= max || size == 0)
        return n;
    tbl[n].addr = addr;
    tbl[n].size = size;
    tbl[n].type = type;
    return n + 1;
}

int e820_build(struct boot_e820_entry *tbl, int max, const struct guest_mem *m)
{
    int n = 0;
    n = e820_add(tbl, n, max, 0, LAYOUT_EBDA, E820_TYPE_RAM);
    n = e820_add(tbl, n, max, LAYOUT_EBDA, LAYOUT_KERNEL - LAYOUT_EBDA, E820_TYPE_RESERVED);
    if (m->low_size > LAYOUT_KERNEL)
        n = e820_add(tbl, n, max, LAYOUT_KERNEL, m->low_size - LAYOUT_KERNEL, E820_TYPE_RAM);
    if (m->high_size)
        n = e820_add(tbl, n, max, GUEST_4G, m->high_size, E820_TYPE_RAM);
    return n;
}

uint64_t initrd_place(uint64_t initrd_size, uint64_t initrd_addr_max, uint64_t low_ram_end,
                      uint64_t kernel_end)
{
    const uint64_t align = 2ULL << 20;
    uint64_t top = low_ram_end;
    if (initrd_addr_max && initrd_addr_max + 1 < top)
        top = initrd_addr_max + 1;
    if (initrd_size == 0 || initrd_size > top)
        return 0;
    uint64_t addr = (top - initrd_size) & ~(align - 1);
    if (addr < kernel_end)
        return 0;
    return addr;
}

void bootparams_build(struct boot_params *bp, const uint8_t *kernel_file,
                      const struct bzimage_info *info, const struct guest_mem *m,
                      uint32_t cmdline_gpa, uint64_t initrd_gpa, uint64_t initrd_size)
{
    memset(bp, 0, sizeof(*bp));
    /* The setup header is copied verbatim; the kernel expects its own values back. */
    memcpy((uint8_t *)bp + 0x1f1, kernel_file + 0x1f1, info->header_end - 0x1f1);
    struct setup_header *h = &bp->hdr;
    h->type_of_loader = 0xff; /* "undefined" boot loader */
    h->vid_mode = 0xffff;     /* normal VGA; we have none, the console is ttyS0 */
    h->loadflags |= CAN_USE_HEAP;
    h->heap_end_ptr = 0xfe00;
    h->cmd_line_ptr = cmdline_gpa;
    h->ramdisk_image = (uint32_t)initrd_gpa;
    h->ramdisk_size = (uint32_t)initrd_size;
    bp->ext_ramdisk_image = (uint32_t)(initrd_gpa >> 32);
    bp->ext_ramdisk_size = (uint32_t)(initrd_size >> 32);
    bp->e820_entries = (uint8_t)e820_build(bp->e820_table, E820_MAX_ENTRIES_ZEROPAGE, m);
}

static int has_param(const char *cmdline, const char *key)
{
    size_t klen = strlen(key);
    for (const char *p = cmdline; (p = strstr(p, key)) != NULL; p += klen) {
        if (p == cmdline || p[-1] == ' ')
            return 1;
    }
    return 0;
}

int cmdline_compose(char *out, size_t outlen, const char *user)
{
    if (!user)
        user = "";
    /* The i8042 is a stub with no AUX port: these skip seconds of probing for one. */
    int n =
        snprintf(out, outlen, "%s%s%s%s", has_param(user, "console=") ? "" : "console=ttyS0 ",
                 has_param(user, "reboot=") ? "" : "reboot=k ",
                 has_param(user, "i8042.") ? "" : "i8042.noaux i8042.nomux i8042.dumbkbd ", user);
    if (n < 0 || (size_t)n >= outlen)
        return -1;
    /* Trim a trailing space left when user is empty. */
    if (n > 0 && out[n - 1] == ' ')
        out[n - 1] = '\0';
    return 0;
}
