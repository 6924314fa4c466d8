#include "kvm/multiboot.h"

#include <elf.h>
#include <stdio.h>
#include <string.h>

#include "kvm/layout.h"
#include "util/err.h"

#define MB_FLAG_AOUT_KLUDGE (1u << 16)
#define MB_SEARCH_LIMIT     8192

struct mb_header {
    uint32_t magic, flags, checksum;
    uint32_t header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr;
};

static int find_header(const uint8_t *file, size_t size, size_t *off)
{
    size_t limit = size < MB_SEARCH_LIMIT ? size : MB_SEARCH_LIMIT;
    for (size_t o = 0; o + 12 <= limit; o += 4) {
        uint32_t w[3];
        memcpy(w, file + o, 12);
        if (w[0] == MULTIBOOT_HEADER_MAGIC && (uint32_t)(w[0] + w[1] + w[2]) == 0) {
            *off = o;
            return 1;
        }
    }
    return 0;
}

static int parse_kludge(const uint8_t *file, size_t size, size_t hoff, const struct mb_header *h,
                        struct mb_image *out, char *err, size_t errlen)
{
    if (h->header_addr < h->load_addr || h->header_addr - h->load_addr > hoff) {
        return err_set(err, errlen, "bad multiboot header (header_addr below load_addr)");
    }
    uint64_t file_off = hoff - (h->header_addr - h->load_addr);
    uint64_t file_len =
        h->load_end_addr ? (uint64_t)h->load_end_addr - h->load_addr : size - file_off;
    if (h->load_end_addr && h->load_end_addr < h->load_addr) {
        return err_set(err, errlen, "bad multiboot header (load_end_addr below load_addr)");
    }
    if (file_off + file_len > size) {
        return err_set(err, errlen, "truncated multiboot image");
    }
    uint64_t mem_len = file_len;
    if (h->bss_end_addr) {
        if (h->bss_end_addr < h->load_addr + file_len) {
            return err_set(err, errlen, "bad multiboot header (bss_end_addr inside the image)");
        }
        mem_len = (uint64_t)h->bss_end_addr - h->load_addr;
    }
    out->nseg = 1;
    out->seg[0] = (struct mb_segment){file_off, file_len, h->load_addr, mem_len};
    out->entry = h->entry_addr;
    return 1;
}

static int parse_elf32(const uint8_t *file, size_t size, struct mb_image *out, char *err,
                       size_t errlen)
{
    Elf32_Ehdr eh;
    if (size < sizeof(eh) || memcmp(file, ELFMAG, SELFMAG) != 0) {
        return err_set(err, errlen, "multiboot image is not ELF and has no load addresses");
    }
    memcpy(&eh, file, sizeof(eh));
    if (eh.e_ident[EI_CLASS] != ELFCLASS32 || eh.e_machine != EM_386) {
        return err_set(err, errlen, "multiboot ELF must be ELF32 i386 (or use the a.out kludge)");
    }
    if (eh.e_phentsize != sizeof(Elf32_Phdr) ||
        (uint64_t)eh.e_phoff + (uint64_t)eh.e_phnum * sizeof(Elf32_Phdr) > size) {
        return err_set(err, errlen, "corrupted ELF program headers");
    }
    out->nseg = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf32_Phdr ph;
        memcpy(&ph, file + eh.e_phoff + i * sizeof(ph), sizeof(ph));
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
            continue;
        if ((uint64_t)ph.p_offset + ph.p_filesz > size || ph.p_filesz > ph.p_memsz) {
            return err_set(err, errlen, "corrupted ELF segment %u", i);
        }
        if (out->nseg == MB_MAX_SEGMENTS) {
            return err_set(err, errlen, "too many ELF segments (max %d)", MB_MAX_SEGMENTS);
        }
        out->seg[out->nseg++] =
            (struct mb_segment){ph.p_offset, ph.p_filesz, ph.p_paddr, ph.p_memsz};
    }
    if (out->nseg == 0) {
        return err_set(err, errlen, "ELF image has nothing to load");
    }
    out->entry = eh.e_entry;
    return 1;
}

int multiboot_parse(const uint8_t *file, size_t size, struct mb_image *out, char *err,
                    size_t errlen)
{
    memset(out, 0, sizeof(*out));
    size_t hoff;
    if (!find_header(file, size, &hoff))
        return 0;
    struct mb_header h = {0};
    memcpy(&h, file + hoff, size - hoff < sizeof(h) ? size - hoff : sizeof(h));
    if ((h.flags & MB_FLAG_AOUT_KLUDGE) && size - hoff >= sizeof(h))
        return parse_kludge(file, size, hoff, &h, out, err, errlen);
    return parse_elf32(file, size, out, err, errlen);
}

void multiboot_info_build(struct mb_info *mbi, uint32_t cmdline_gpa, uint64_t low_ram_bytes)
{
    memset(mbi, 0, sizeof(*mbi));
    mbi->flags = (1u << 0) | (1u << 2); /* mem_lower/upper and cmdline are valid */
    mbi->mem_lower = (uint32_t)(LAYOUT_EBDA >> 10);
    uint64_t upper = low_ram_bytes > LAYOUT_KERNEL ? (low_ram_bytes - LAYOUT_KERNEL) >> 10 : 0;
    mbi->mem_upper = upper > UINT32_MAX ? UINT32_MAX : (uint32_t)upper;
    mbi->cmdline = cmdline_gpa;
}
