/* bzImage header checks, zero page, e820, initrd placement and command line. */
#include <criterion/criterion.h>
#include <string.h>

#include "kvm/bootparams.h"
#include "kvm/bzimage.h"
#include "kvm/layout.h"

static uint8_t img[64 * 1024];

/* A minimal, well-formed 64-bit bzImage header (protocol 2.15, 4 setup sectors). */
static void make_bzimage(void)
{
    memset(img, 0, sizeof(img));
    img[0x1f1] = 4;
    img[0x1fe] = 0x55;
    img[0x1ff] = 0xaa;
    img[0x200] = 0xeb;
    img[0x201] = 0x66; /* header ends at 0x268 */
    memcpy(img + 0x202, "HdrS", 4);
    img[0x206] = 0x0f;
    img[0x207] = 0x02;
    uint32_t initrd_max = 0x7fffffff, cmdline = 2047, init_size = 0x3f98000;
    memcpy(img + 0x22c, &initrd_max, 4);
    img[0x236] = 0x7f;
    memcpy(img + 0x238, &cmdline, 4);
    memcpy(img + 0x260, &init_size, 4);
}

Test(bzimage, accepts_good_header)
{
    make_bzimage();
    struct bzimage_info info;
    char err[128] = "";
    cr_assert_eq(bzimage_parse(img, sizeof(img), &info, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(info.version, 0x020f);
    cr_assert_eq(info.setup_size, 5 * 512);
    cr_assert_eq(info.pm_size, sizeof(img) - 5 * 512);
    cr_assert_eq(info.initrd_addr_max, 0x7fffffff);
    cr_assert_eq(info.cmdline_size, 2047);
    cr_assert_eq(info.init_size, 0x3f98000);
    cr_assert_eq(info.header_end, 0x268);
}

Test(bzimage, zero_setup_sects_means_four)
{
    make_bzimage();
    img[0x1f1] = 0;
    struct bzimage_info info;
    char err[128];
    cr_assert_eq(bzimage_parse(img, sizeof(img), &info, err, sizeof(err)), 0);
    cr_assert_eq(info.setup_size, 5 * 512);
}

static void expect_refused(size_t size, const char *needle)
{
    struct bzimage_info info;
    char err[128] = "";
    cr_assert_eq(bzimage_parse(img, size, &info, err, sizeof(err)), -1);
    cr_assert(strstr(err, needle) != NULL, "error '%s' should mention '%s'", err, needle);
}

Test(bzimage, refuses_bad_magic)
{
    make_bzimage();
    img[0x202] = 'X';
    expect_refused(sizeof(img), "HdrS");
}

Test(bzimage, refuses_old_protocol)
{
    make_bzimage();
    img[0x206] = 0x0b;
    expect_refused(sizeof(img), "too old");
}

Test(bzimage, refuses_without_64bit_entry)
{
    make_bzimage();
    img[0x236] = 0x7e;
    expect_refused(sizeof(img), "64-bit");
}

Test(bzimage, refuses_truncated)
{
    make_bzimage();
    expect_refused(0x100, "too small");
    make_bzimage();
    img[0x1f1] = 200; /* setup larger than the file */
    expect_refused(sizeof(img), "truncated");
}

Test(bzimage, refuses_bad_boot_flag_and_header_length)
{
    make_bzimage();
    img[0x1fe] = 0;
    expect_refused(sizeof(img), "boot flag");
    make_bzimage();
    img[0x201] = 0x10;
    expect_refused(sizeof(img), "header length");
}

static struct guest_mem mem_of(uint64_t size)
{
    struct guest_mem m;
    guest_mem_layout(&m, NULL, size, LAYOUT_PCI_HOLE);
    return m;
}

Test(e820, small_guest)
{
    struct guest_mem m = mem_of(512ULL << 20);
    struct boot_e820_entry t[8];
    int n = e820_build(t, 8, &m);
    cr_assert_eq(n, 3);
    cr_assert_eq(t[0].addr, 0);
    cr_assert_eq(t[0].size, 0x9fc00);
    cr_assert_eq(t[0].type, 1);
    cr_assert_eq(t[1].addr, 0x9fc00);
    cr_assert_eq(t[1].addr + t[1].size, 0x100000);
    cr_assert_eq(t[1].type, 2);
    cr_assert_eq(t[2].addr, 0x100000);
    cr_assert_eq(t[2].addr + t[2].size, 512ULL << 20);
    cr_assert_eq(t[2].type, 1);
}

Test(e820, large_guest_splits_around_pci_hole)
{
    struct guest_mem m = mem_of(6ULL << 30);
    struct boot_e820_entry t[8];
    int n = e820_build(t, 8, &m);
    cr_assert_eq(n, 4);
    cr_assert_eq(t[2].addr + t[2].size, LAYOUT_PCI_HOLE);
    cr_assert_eq(t[3].addr, 1ULL << 32);
    cr_assert_eq(t[3].size, (6ULL << 30) - LAYOUT_PCI_HOLE);
    uint64_t ram = 0;
    for (int i = 0; i < n; i++)
        if (t[i].type == 1)
            ram += t[i].size;
    cr_assert_eq(ram, (6ULL << 30) - (0x100000 - 0x9fc00));
}

Test(e820, respects_max_entries)
{
    struct guest_mem m = mem_of(6ULL << 30);
    struct boot_e820_entry t[2];
    cr_assert_eq(e820_build(t, 2, &m), 2);
}

Test(initrd, placed_high_aligned_and_below_limits)
{
    uint64_t a = initrd_place(40 << 20, 0x7fffffff, 512ULL << 20, 80 << 20);
    cr_assert_neq(a, 0);
    cr_assert_eq(a % (2 << 20), 0);
    cr_assert_leq(a + (40 << 20), 512ULL << 20);
    cr_assert_geq(a, 80 << 20);
    /* initrd_addr_max lower than RAM wins */
    a = initrd_place(1 << 20, (256 << 20) - 1, 1ULL << 30, 80 << 20);
    cr_assert_leq(a + (1 << 20), 256 << 20);
}

Test(initrd, refuses_when_it_would_hit_the_kernel)
{
    cr_assert_eq(initrd_place(100 << 20, 0x7fffffff, 128 << 20, 80 << 20), 0);
    cr_assert_eq(initrd_place(0, 0x7fffffff, 128 << 20, 80 << 20), 0);
}

Test(bootparams, copies_header_and_sets_loader_fields)
{
    make_bzimage();
    struct bzimage_info info;
    char err[128];
    cr_assert_eq(bzimage_parse(img, sizeof(img), &info, err, sizeof(err)), 0);
    struct guest_mem m = mem_of(1ULL << 30);
    static struct boot_params bp;
    bootparams_build(&bp, img, &info, &m, 0x20000, 0x30000000, 12345);
    cr_assert_eq(bp.hdr.header, 0x53726448); /* "HdrS" */
    cr_assert_eq(bp.hdr.version, 0x020f);
    cr_assert_eq(bp.hdr.type_of_loader, 0xff);
    cr_assert(bp.hdr.loadflags & CAN_USE_HEAP);
    cr_assert_eq(bp.hdr.cmd_line_ptr, 0x20000);
    cr_assert_eq(bp.hdr.ramdisk_image, 0x30000000);
    cr_assert_eq(bp.hdr.ramdisk_size, 12345);
    cr_assert_eq(bp.e820_entries, 3);
    cr_assert_eq(bp.e820_table[2].addr + bp.e820_table[2].size, 1ULL << 30);
}

Test(cmdline, adds_defaults_unless_set)
{
    char out[256];
    cr_assert_eq(cmdline_compose(out, sizeof(out), "quiet"), 0);
#define I8042 "i8042.noaux i8042.nomux i8042.dumbkbd"
    cr_assert_str_eq(out, "console=ttyS0 reboot=k " I8042 " quiet");
    cr_assert_eq(cmdline_compose(out, sizeof(out), "console=hvc0 quiet"), 0);
    cr_assert_str_eq(out, "reboot=k " I8042 " console=hvc0 quiet");
    cr_assert_eq(cmdline_compose(out, sizeof(out), "reboot=t i8042.direct console=ttyS1"), 0);
    cr_assert_str_eq(out, "reboot=t i8042.direct console=ttyS1");
    cr_assert_eq(cmdline_compose(out, sizeof(out), NULL), 0);
    cr_assert_str_eq(out, "console=ttyS0 reboot=k " I8042);
    /* "xconsole=" is not "console=" */
    cr_assert_eq(cmdline_compose(out, sizeof(out), "xconsole=1"), 0);
    cr_assert_str_eq(out, "console=ttyS0 reboot=k " I8042 " xconsole=1");
    cr_assert_eq(cmdline_compose(out, 10, "quiet"), -1);
}
