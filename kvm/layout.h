/* Fixed guest-physical addresses nvmevm uses while booting a guest. */
#pragma once

#define LAYOUT_GDT          0x0500ULL /* boot GDT (Linux: 0x10 code, 0x18 data) */
#define LAYOUT_MB_INFO      0x6000ULL /* multiboot info struct */
#define LAYOUT_MB_CMDLINE   0x6100ULL /* multiboot cmdline (up to 3.75 KiB) */
#define LAYOUT_ZERO_PAGE    0x7000ULL /* Linux boot_params */
#define LAYOUT_BOOT_STACK   0x8ff0ULL
#define LAYOUT_PML4         0x9000ULL /* identity page tables: PML4, PDPT, 4 PDs */
#define LAYOUT_PDPT         0xa000ULL
#define LAYOUT_PD           0xb000ULL  /* 0xb000..0xefff: 4 GiB of 2 MiB pages */
#define LAYOUT_CMDLINE      0x20000ULL /* Linux command line */
#define LAYOUT_CMDLINE_MAX  4096
#define LAYOUT_EBDA         0x9fc00ULL    /* reserved from here to 1 MiB */
#define LAYOUT_MPTABLE      0xf0000ULL    /* MP floating pointer + config table (BIOS area) */
#define LAYOUT_KERNEL       0x100000ULL   /* bzImage protected-mode code, multiboot images */
#define LAYOUT_PCI_HOLE     0xc0000000ULL /* 32-bit PCI MMIO hole: 3 GiB .. 4 GiB */
#define LAYOUT_PCI_MMIO     0xc0000000ULL /* BARs are allocated from here ... */
#define LAYOUT_PCI_MMIO_END 0xfec00000ULL /* ... up to the IOAPIC */
#define LAYOUT_IOAPIC       0xfec00000ULL
#define LAYOUT_LAPIC        0xfee00000ULL
#define LAYOUT_TSS          0xfffbd000ULL /* KVM_SET_TSS_ADDR: 3 pages, inside the hole */
#define LAYOUT_IDENTITY_MAP 0xfffbc000ULL /* KVM_SET_IDENTITY_MAP_ADDR: 1 page */
