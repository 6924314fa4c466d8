/* Builders for the Linux zero page (boot_params), its e820 map and the command line. */
#pragma once
#include <asm/bootparam.h>
#include <stddef.h>
#include <stdint.h>

#include "kvm/bzimage.h"
#include "util/guest_mem.h"

/* e820: RAM below 640K, 0x9fc00-1M reserved, RAM from 1 MiB, high RAM above 4 GiB.
 * Returns the number of entries written (at most max). */
int e820_build(struct boot_e820_entry *tbl, int max, const struct guest_mem *m);

/* Highest 2 MiB-aligned gpa for the initrd that stays below initrd_addr_max and the end
 * of low RAM, above kernel_end. 0 if it does not fit. */
uint64_t initrd_place(uint64_t initrd_size, uint64_t initrd_addr_max, uint64_t low_ram_end,
                      uint64_t kernel_end);

/* Fills bp from the kernel's setup header plus nvmevm's choices. */
void bootparams_build(struct boot_params *bp, const uint8_t *kernel_file,
                      const struct bzimage_info *info, const struct guest_mem *m,
                      uint32_t cmdline_gpa, uint64_t initrd_gpa, uint64_t initrd_size);

/* user cmdline + defaults nvmevm adds unless the user set them (console=, reboot=, i8042.).
 * Returns -1 if the result does not fit in out. */
int cmdline_compose(char *out, size_t outlen, const char *user);
