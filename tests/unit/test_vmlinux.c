/* Host-side unpacking of a bzImage's xz payload into a loadable vmlinux, with the cache. */
#include <criterion/criterion.h>
#include <elf.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvm/vmlinux.h"

static uint8_t elf[64 * 1024];

static void make_elf(void)
{
    memset(elf, 0x90, sizeof(elf));
    Elf64_Ehdr eh = {.e_type = ET_EXEC,
                     .e_machine = EM_X86_64,
                     .e_version = 1,
                     .e_entry = 0x1000000,
                     .e_phoff = sizeof(Elf64_Ehdr),
                     .e_ehsize = sizeof(Elf64_Ehdr),
                     .e_phentsize = sizeof(Elf64_Phdr),
                     .e_phnum = 1};
    memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    memcpy(elf, &eh, sizeof(eh));
    Elf64_Phdr ph = {.p_type = PT_LOAD,
                     .p_offset = 0x1000,
                     .p_vaddr = 0xffffffff81000000,
                     .p_paddr = 0x1000000,
                     .p_filesz = 0x2000,
                     .p_memsz = 0x5000};
    memcpy(elf + sizeof(eh), &ph, sizeof(ph));
}

/* A bzImage-shaped buffer: 5 setup sectors, then payload_offset 0 with xz(elf) + size. */
static size_t make_bzimage(uint8_t *out, size_t cap, struct bzimage_info *info)
{
    memset(out, 0, 5 * 512);
    size_t xz_len = 0;
    cr_assert_eq(lzma_easy_buffer_encode(1, LZMA_CHECK_CRC32, NULL, elf, sizeof(elf), out + 5 * 512,
                                         &xz_len, cap - 5 * 512 - 4),
                 LZMA_OK);
    uint32_t usize = sizeof(elf), off = 0, len = (uint32_t)xz_len + 4;
    memcpy(out + 5 * 512 + xz_len, &usize, 4);
    memcpy(out + 0x248, &off, 4);
    memcpy(out + 0x24c, &len, 4);
    *info = (struct bzimage_info){.version = 0x020f, .setup_size = 5 * 512, .pm_size = xz_len + 4};
    return 5 * 512 + xz_len + 4;
}

Test(vmlinux, unpacks_parses_and_caches)
{
    make_elf();
    static uint8_t bz[128 * 1024];
    struct bzimage_info info;
    size_t n = make_bzimage(bz, sizeof(bz), &info);
    char dir[] = "/tmp/nvmevm-vmlinux-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    struct vmlinux v;
    char err[160] = "";
    cr_assert_eq(vmlinux_from_bzimage(bz, n, &info, dir, &v, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(v.entry, 0x1000000);
    cr_assert_eq(v.nseg, 1);
    cr_assert_eq(v.seg[0].paddr, 0x1000000);
    cr_assert_eq(v.seg[0].mem_len, 0x5000);
    cr_assert_eq(v.end, 0x1005000);
    cr_assert_eq(memcmp(v.data, elf, sizeof(elf)), 0, "decompressed bytes equal the original");
    cr_assert_eq(v.mapped, 0, "first run decompresses");
    vmlinux_release(&v);
    cr_assert_eq(vmlinux_from_bzimage(bz, n, &info, dir, &v, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(v.mapped, 1, "second run comes from the cache");
    cr_assert_eq(memcmp(v.data, elf, sizeof(elf)), 0);
    vmlinux_release(&v);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(vmlinux, refuses_other_payloads_and_corruption)
{
    make_elf();
    static uint8_t bz[128 * 1024];
    struct bzimage_info info;
    size_t n = make_bzimage(bz, sizeof(bz), &info);
    struct vmlinux v;
    char err[160];
    bz[5 * 512] = 0x1f; /* gzip magic: not handled here, the guest decompresses it */
    cr_assert_eq(vmlinux_from_bzimage(bz, n, &info, NULL, &v, err, sizeof(err)), -1);
    n = make_bzimage(bz, sizeof(bz), &info);
    bz[5 * 512 + 100] ^= 0xff; /* corrupt stream */
    cr_assert_eq(vmlinux_from_bzimage(bz, n, &info, NULL, &v, err, sizeof(err)), -1);
    n = make_bzimage(bz, sizeof(bz), &info);
    uint32_t huge = 0x7fffffff;
    memcpy(bz + 0x24c, &huge, 4); /* payload beyond the file */
    cr_assert_eq(vmlinux_from_bzimage(bz, n, &info, NULL, &v, err, sizeof(err)), -1);
}

Test(vmlinux, parse_rejects_hostile_elf)
{
    make_elf();
    struct vmlinux v = {.data = elf, .size = sizeof(elf)};
    char err[160];
    cr_assert_eq(vmlinux_parse(&v, err, sizeof(err)), 0);
    Elf64_Phdr ph;
    memcpy(&ph, elf + sizeof(Elf64_Ehdr), sizeof(ph));
    ph.p_filesz = 0x100000; /* past the file */
    memcpy(elf + sizeof(Elf64_Ehdr), &ph, sizeof(ph));
    cr_assert_eq(vmlinux_parse(&v, err, sizeof(err)), -1);
    make_elf();
    elf[EI_CLASS] = ELFCLASS32;
    cr_assert_eq(vmlinux_parse(&v, err, sizeof(err)), -1);
}
