#include "kvm/boot.h"

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvm/bootparams.h"
#include "kvm/layout.h"
#include "kvm/mptable.h"
#include "kvm/vcpu.h"
#include "kvm/vm.h"
#include "util/log.h"

static void map_file(struct file_map *f, const char *path)
{
    f->path = path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die_errno("%s", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        die_errno("%s", path);
    if (!S_ISREG(st.st_mode))
        die("%s: not a regular file", path);
    if (st.st_size == 0)
        die("%s: file is empty", path);
    f->size = (size_t)st.st_size;
    f->data = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->data == MAP_FAILED)
        die_errno("%s", path);
    close(fd);
}

static void unmap_file(struct file_map *f)
{
    if (f->data)
        munmap(f->data, f->size);
    f->data = NULL;
}

/* RAM below the PCI hole, where every boot structure and image must fit. */
static uint64_t low_ram(const struct vm_config *cfg)
{
    return cfg->mem_size < LAYOUT_PCI_HOLE ? cfg->mem_size : LAYOUT_PCI_HOLE;
}

static void check_multiboot(const struct boot_image *img, const struct vm_config *cfg)
{
    if (cfg->initrd || cfg->initrd_extra_len)
        die("%s: an initrd (--initrd, --fio, --guest-file) is only for Linux kernels, not "
            "multiboot images",
            img->kernel.path);
    for (int i = 0; i < img->mb.nseg; i++) {
        const struct mb_segment *s = &img->mb.seg[i];
        /* Below 32 KiB live nvmevm's boot structures; the MP table sits at 0xf0000. */
        bool clash = s->gpa < LAYOUT_BOOT_STACK ||
                     (s->gpa < LAYOUT_MPTABLE + 0x1000 && s->gpa + s->mem_len > LAYOUT_MPTABLE);
        if (clash || s->mem_len > low_ram(cfg) || s->gpa > low_ram(cfg) - s->mem_len)
            die("%s: segment at 0x%llx (+%llu bytes) is outside guest RAM or overlaps nvmevm's "
                "boot area (load images at 1 MiB)",
                img->kernel.path, (unsigned long long)s->gpa, (unsigned long long)s->mem_len);
    }
    const char *cmd = cfg->append ? cfg->append : "";
    if (strlen(cmd) >= LAYOUT_ZERO_PAGE - LAYOUT_MB_CMDLINE)
        die("--append: command line too long");
}

/* The extra archive first, then (4-byte aligned, where the kernel looks for the next archive)
 * the initrd file: the default guest's initrd is LZ4 legacy, a format without an end mark, so
 * nothing may follow it. Later archives win on a name clash; the extra one adds its own. */
static uint64_t initrd_file_offset(const struct vm_config *cfg)
{
    return ((uint64_t)cfg->initrd_extra_len + 3) & ~3ULL;
}

static uint64_t initrd_total(const struct boot_image *img, const struct vm_config *cfg)
{
    return img->initrd.size ? initrd_file_offset(cfg) + img->initrd.size : cfg->initrd_extra_len;
}

static void check_linux(struct boot_image *img, const struct vm_config *cfg)
{
    const struct file_map *k = &img->kernel;
    char err[160];
    uint64_t low = low_ram(cfg);
    img->unpacked = vmlinux_from_bzimage(k->data, k->size, &img->bz, vmlinux_cache_dir(), &img->vl,
                                         err, sizeof(err)) == 0;
    if (img->unpacked) {
        img->kernel_end = img->vl.end;
    } else {
        debug_msg("%s: booting through the guest's decompressor: %s", k->path, err);
        img->kernel_end = LAYOUT_KERNEL + (img->bz.init_size > img->bz.pm_size ? img->bz.init_size
                                                                               : img->bz.pm_size);
    }
    if (img->kernel_end > low)
        die("--mem %lluM is too small for %s (it needs %llu MiB)",
            (unsigned long long)(cfg->mem_size >> 20), k->path,
            (unsigned long long)((img->kernel_end >> 20) + 1));

    char cmdline[LAYOUT_CMDLINE_MAX];
    if (cmdline_compose(cmdline, sizeof(cmdline), cfg->append) < 0 ||
        (img->bz.cmdline_size && strlen(cmdline) > img->bz.cmdline_size))
        die("--append: command line too long (max %u bytes)",
            img->bz.cmdline_size ? img->bz.cmdline_size : LAYOUT_CMDLINE_MAX - 1);

    if (cfg->initrd)
        map_file(&img->initrd, cfg->initrd);
    uint64_t size = initrd_total(img, cfg);
    if (size && !initrd_place(size, img->bz.initrd_addr_max, low, img->kernel_end))
        die("%s: initrd (%llu MiB) does not fit in guest RAM with the kernel; raise --mem",
            cfg->initrd ? img->initrd.path : "the extra initramfs", (unsigned long long)size >> 20);
}

void boot_image_open(struct boot_image *img, const struct vm_config *cfg)
{
    memset(img, 0, sizeof(*img));
    char err[160];
    map_file(&img->kernel, cfg->kernel);
    int mb = multiboot_parse(img->kernel.data, img->kernel.size, &img->mb, err, sizeof(err));
    if (mb < 0)
        die("%s: %s", img->kernel.path, err);
    img->multiboot = mb == 1;
    if (img->multiboot) {
        check_multiboot(img, cfg);
        return;
    }
    if (bzimage_parse(img->kernel.data, img->kernel.size, &img->bz, err, sizeof(err)) < 0)
        die("%s: %s", img->kernel.path, err);
    check_linux(img, cfg);
}

void boot_image_close(struct boot_image *img)
{
    if (img->unpacked)
        vmlinux_release(&img->vl);
    img->unpacked = false;
    unmap_file(&img->initrd);
    unmap_file(&img->kernel);
}

/* ---- into guest RAM (sizes were checked by boot_image_open) ---- */

static void copy_to_guest(struct vm *vm, uint64_t gpa, const void *src, uint64_t len,
                          const char *what)
{
    void *dst = gpa_ptr(&vm->mem, gpa, len);
    if (!dst)
        die("%s does not fit in guest RAM (%llu bytes at 0x%llx; RAM is %llu MiB)", what,
            (unsigned long long)len, (unsigned long long)gpa,
            (unsigned long long)(vm->mem.size >> 20));
    memcpy(dst, src, len);
}

static void zero_guest(struct vm *vm, uint64_t gpa, uint64_t len, const char *what)
{
    if (len == 0)
        return;
    void *dst = gpa_ptr(&vm->mem, gpa, len);
    if (!dst)
        die("%s does not fit in guest RAM", what);
    memset(dst, 0, len);
}

/* Identity map of the first 4 GiB with 2 MiB pages: PML4 -> PDPT -> 4 PDs. */
static void build_identity_tables(struct vm *vm)
{
    uint64_t pml4[512] = {0}, pdpt[512] = {0}, pd[4 * 512];
    pml4[0] = LAYOUT_PDPT | 0x3;
    for (uint64_t i = 0; i < 4; i++)
        pdpt[i] = (LAYOUT_PD + i * 4096) | 0x3;
    for (uint64_t i = 0; i < 4 * 512; i++)
        pd[i] = (i << 21) | 0x83; /* present, writable, 2 MiB page */
    copy_to_guest(vm, LAYOUT_PML4, pml4, sizeof(pml4), "page tables");
    copy_to_guest(vm, LAYOUT_PDPT, pdpt, sizeof(pdpt), "page tables");
    copy_to_guest(vm, LAYOUT_PD, pd, sizeof(pd), "page tables");
}

static void build_gdt(struct vm *vm)
{
    uint64_t gdt[5] = {
        0,
        0,
        0x00af9b000000ffffULL, /* 0x10: 64-bit code (__BOOT_CS) */
        0x00cf93000000ffffULL, /* 0x18: flat data (__BOOT_DS) */
        0x00008b0000000067ULL, /* 0x20: TSS (busy 32/64-bit TSS type) */
    };
    copy_to_guest(vm, LAYOUT_GDT, gdt, sizeof(gdt), "GDT");
}

static void write_mptable(struct vm *vm)
{
    uint8_t *buf = gpa_ptr(&vm->mem, LAYOUT_MPTABLE, 0x10000);
    if (!buf || !mptable_build(buf, 0x10000, (uint32_t)LAYOUT_MPTABLE, vm->ncpus, vm->pci_irqs,
                               vm->n_pci_irqs))
        die("cannot build the MP table");
}

static void load_linux(struct vm *vm, const struct boot_image *img)
{
    const struct file_map *k = &img->kernel;
    if (img->unpacked) {
        for (int i = 0; i < img->vl.nseg; i++) {
            const struct vmlinux_segment *s = &img->vl.seg[i];
            copy_to_guest(vm, s->paddr, img->vl.data + s->file_off, s->file_len, "kernel");
            zero_guest(vm, s->paddr + s->file_len, s->mem_len - s->file_len, "kernel");
        }
        vm->entry = img->vl.entry;
    } else {
        copy_to_guest(vm, LAYOUT_KERNEL, k->data + img->bz.setup_size, img->bz.pm_size, "kernel");
        vm->entry = LAYOUT_KERNEL + 0x200;
    }

    char cmdline[LAYOUT_CMDLINE_MAX];
    if (cmdline_compose(cmdline, sizeof(cmdline), vm->cfg.append) < 0)
        die("--append: command line too long");
    copy_to_guest(vm, LAYOUT_CMDLINE, cmdline, strlen(cmdline) + 1, "command line");

    uint64_t initrd_gpa = 0, initrd_size = initrd_total(img, &vm->cfg);
    if (initrd_size) {
        initrd_gpa =
            initrd_place(initrd_size, img->bz.initrd_addr_max, vm->mem.low_size, img->kernel_end);
        if (vm->cfg.initrd_extra_len)
            copy_to_guest(vm, initrd_gpa, vm->cfg.initrd_extra, vm->cfg.initrd_extra_len, "initrd");
        if (img->initrd.data)
            copy_to_guest(vm, initrd_gpa + initrd_file_offset(&vm->cfg), img->initrd.data,
                          img->initrd.size, "initrd");
    }

    struct boot_params *bp = gpa_ptr(&vm->mem, LAYOUT_ZERO_PAGE, sizeof(*bp));
    bootparams_build(bp, k->data, &img->bz, &vm->mem, (uint32_t)LAYOUT_CMDLINE, initrd_gpa,
                     initrd_size);
    build_identity_tables(vm);
    build_gdt(vm);
    write_mptable(vm);
    vm->boot = BOOT_LINUX64;
    vm->boot_arg = LAYOUT_ZERO_PAGE;
}

static void load_multiboot(struct vm *vm, const struct boot_image *img)
{
    for (int i = 0; i < img->mb.nseg; i++) {
        const struct mb_segment *s = &img->mb.seg[i];
        copy_to_guest(vm, s->gpa, img->kernel.data + s->file_off, s->file_len, "kernel");
        zero_guest(vm, s->gpa + s->file_len, s->mem_len - s->file_len, "kernel");
    }
    const char *cmd = vm->cfg.append ? vm->cfg.append : "";
    copy_to_guest(vm, LAYOUT_MB_CMDLINE, cmd, strlen(cmd) + 1, "command line");
    struct mb_info mbi;
    multiboot_info_build(&mbi, (uint32_t)LAYOUT_MB_CMDLINE, vm->mem.low_size);
    copy_to_guest(vm, LAYOUT_MB_INFO, &mbi, sizeof(mbi), "multiboot info");
    write_mptable(vm);
    vm->boot = BOOT_MULTIBOOT;
    vm->entry = img->mb.entry;
    vm->boot_arg = LAYOUT_MB_INFO;
}

void vm_load_kernel(struct vm *vm, struct boot_image *img)
{
    if (img->multiboot)
        load_multiboot(vm, img);
    else
        load_linux(vm, img);
    for (int i = 0; i < vm->ncpus; i++)
        vcpu_setup_boot(vm->vcpus[i]);
}
