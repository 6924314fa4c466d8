/* Multiboot v1 image parsing (the tiny guest's format). */
#include <criterion/criterion.h>
#include <elf.h>
#include <string.h>

#include "kvm/multiboot.h"

static uint8_t img[16384];

static void put32(size_t off, uint32_t v)
{
    memcpy(img + off, &v, 4);
}

static void kludge_image(void)
{
    memset(img, 0, sizeof(img));
    size_t h = 64;
    uint32_t flags = 1u << 16;
    put32(h, MULTIBOOT_HEADER_MAGIC);
    put32(h + 4, flags);
    put32(h + 8, (uint32_t)(0 - MULTIBOOT_HEADER_MAGIC - flags));
    put32(h + 12, 0x100040); /* header_addr */
    put32(h + 16, 0x100000); /* load_addr */
    put32(h + 20, 0x102000); /* load_end_addr */
    put32(h + 24, 0x104000); /* bss_end_addr */
    put32(h + 28, 0x100080); /* entry */
}

Test(multiboot, aout_kludge)
{
    kludge_image();
    struct mb_image m;
    char err[128] = "";
    cr_assert_eq(multiboot_parse(img, sizeof(img), &m, err, sizeof(err)), 1, "%s", err);
    cr_assert_eq(m.entry, 0x100080);
    cr_assert_eq(m.nseg, 1);
    cr_assert_eq(m.seg[0].file_off, 0);
    cr_assert_eq(m.seg[0].file_len, 0x2000);
    cr_assert_eq(m.seg[0].gpa, 0x100000);
    cr_assert_eq(m.seg[0].mem_len, 0x4000);
}

Test(multiboot, no_header_is_not_multiboot)
{
    memset(img, 0, sizeof(img));
    struct mb_image m;
    char err[128];
    cr_assert_eq(multiboot_parse(img, sizeof(img), &m, err, sizeof(err)), 0);
}

Test(multiboot, bad_checksum_is_not_multiboot)
{
    kludge_image();
    put32(64 + 8, 0);
    struct mb_image m;
    char err[128];
    cr_assert_eq(multiboot_parse(img, sizeof(img), &m, err, sizeof(err)), 0);
}

Test(multiboot, hostile_kludge_fields_refused)
{
    struct mb_image m;
    char err[128];
    kludge_image();
    put32(64 + 20, 0x200000); /* load_end far beyond the file */
    cr_assert_eq(multiboot_parse(img, sizeof(img), &m, err, sizeof(err)), -1);
    kludge_image();
    put32(64 + 12, 0x0ff000); /* header_addr below load_addr */
    cr_assert_eq(multiboot_parse(img, sizeof(img), &m, err, sizeof(err)), -1);
    kludge_image();
    put32(64 + 24, 0x101000); /* bss ends inside the image */
    cr_assert_eq(multiboot_parse(img, sizeof(img), &m, err, sizeof(err)), -1);
}

static void elf_image(uint32_t filesz, uint32_t memsz, uint16_t machine)
{
    memset(img, 0, sizeof(img));
    Elf32_Ehdr eh = {.e_type = ET_EXEC,
                     .e_machine = machine,
                     .e_version = 1,
                     .e_entry = 0x100010,
                     .e_phoff = sizeof(Elf32_Ehdr),
                     .e_ehsize = sizeof(Elf32_Ehdr),
                     .e_phentsize = sizeof(Elf32_Phdr),
                     .e_phnum = 1};
    memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS32;
    memcpy(img, &eh, sizeof(eh));
    Elf32_Phdr ph = {.p_type = PT_LOAD,
                     .p_offset = 0x1000,
                     .p_paddr = 0x100000,
                     .p_vaddr = 0x100000,
                     .p_filesz = filesz,
                     .p_memsz = memsz};
    memcpy(img + sizeof(eh), &ph, sizeof(ph));
    uint32_t flags = 0;
    put32(0x1000, MULTIBOOT_HEADER_MAGIC);
    put32(0x1004, flags);
    put32(0x1008, (uint32_t)(0 - MULTIBOOT_HEADER_MAGIC - flags));
}

Test(multiboot, elf32_segments)
{
    elf_image(0x800, 0x2000, EM_386);
    struct mb_image m;
    char err[128] = "";
    cr_assert_eq(multiboot_parse(img, sizeof(img), &m, err, sizeof(err)), 1, "%s", err);
    cr_assert_eq(m.entry, 0x100010);
    cr_assert_eq(m.nseg, 1);
    cr_assert_eq(m.seg[0].file_off, 0x1000);
    cr_assert_eq(m.seg[0].file_len, 0x800);
    cr_assert_eq(m.seg[0].mem_len, 0x2000);
}

Test(multiboot, elf_hostile_segments_refused)
{
    struct mb_image m;
    char err[128];
    elf_image(0x100000, 0x100000, EM_386); /* beyond the file */
    cr_assert_eq(multiboot_parse(img, sizeof(img), &m, err, sizeof(err)), -1);
    elf_image(0x800, 0x400, EM_386); /* filesz > memsz */
    cr_assert_eq(multiboot_parse(img, sizeof(img), &m, err, sizeof(err)), -1);
    elf_image(0x800, 0x800, EM_X86_64); /* QEMU refuses ELF64 too */
    cr_assert_eq(multiboot_parse(img, sizeof(img), &m, err, sizeof(err)), -1);
}

Test(multiboot, info_struct)
{
    struct mb_info mbi;
    multiboot_info_build(&mbi, 0x6100, 64 << 20);
    cr_assert_eq(mbi.flags & 5, 5);
    cr_assert_eq(mbi.cmdline, 0x6100);
    cr_assert_eq(mbi.mem_lower, 639);
    cr_assert_eq(mbi.mem_upper, (64 << 10) - 1024);
}
