/*
 * The guest's boot image in two steps. boot_image_open() reads and checks everything the
 * user named (kernel and initrd files, their headers, the command line, whether they fit
 * in --mem) without touching /dev/kvm, so a mistake is reported on any host, KVM or not.
 * vm_load_kernel() then copies the checked image into guest RAM and sets the boot state.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvm/bzimage.h"
#include "kvm/multiboot.h"
#include "kvm/vmlinux.h"

struct vm;
struct vm_config;

struct file_map {
    const char *path;
    uint8_t *data;
    size_t size;
};

struct boot_image {
    struct file_map kernel, initrd; /* initrd.data is NULL without one */
    bool multiboot;
    struct mb_image mb;
    struct bzimage_info bz;
    bool unpacked;       /* vl holds the bzImage's payload as an ELF vmlinux */
    struct vmlinux vl;   /* when unpacked */
    uint64_t kernel_end; /* Linux: end of the memory the kernel needs */
};

/* Checks cfg's kernel, initrd and command line against cfg's RAM size. Dies on error. */
void boot_image_open(struct boot_image *img, const struct vm_config *cfg);
void boot_image_close(struct boot_image *img);
/* Copies the image into guest RAM and prepares every vCPU's boot state. Dies on error. */
void vm_load_kernel(struct vm *vm, struct boot_image *img);
