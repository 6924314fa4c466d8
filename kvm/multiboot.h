/*
 * Multiboot v1 images (the tiny test guest; also what QEMU's -kernel accepts):
 * the a.out-kludge header addresses when present, else ELF32 PT_LOAD segments.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define MULTIBOOT_HEADER_MAGIC     0x1badb002u
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2badb002u
#define MB_MAX_SEGMENTS            8

struct mb_segment {
    uint64_t file_off;
    uint64_t file_len;
    uint64_t gpa;
    uint64_t mem_len; /* >= file_len; the rest is zeroed (bss) */
};

struct mb_image {
    uint32_t entry;
    int nseg;
    struct mb_segment seg[MB_MAX_SEGMENTS];
};

/* 1 = multiboot image parsed into out; 0 = no multiboot header; -1 = bad image (err set). */
int multiboot_parse(const uint8_t *file, size_t size, struct mb_image *out, char *err,
                    size_t errlen);

struct mb_info {
    uint32_t flags;
    uint32_t mem_lower; /* KiB below 640K */
    uint32_t mem_upper; /* KiB from 1 MiB */
    uint32_t boot_device;
    uint32_t cmdline;
    uint32_t mods_count;
    uint32_t mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length;
    uint32_t mmap_addr;
} __attribute__((packed));

void multiboot_info_build(struct mb_info *mbi, uint32_t cmdline_gpa, uint64_t low_ram_bytes);
