/*
 * RAM above the image for large buffers (NVMe queues and data): a bump
 * allocator from the end of the bss (and of the multiboot info that QEMU puts
 * right after it) to the top of RAM reported by the loader (mem_upper), capped
 * at 1 GiB, the end of the identity-mapped write-back region. Physical =
 * virtual, so the addresses can be handed to DMA as they are.
 */
#include "tiny.h"

#define MB_INFO_MEM     (1u << 0)
#define MB_INFO_CMDLINE (1u << 2)
#define MAPPED_RAM_END  0x40000000ULL /* pd_low in multiboot.S */
#define PAGE            4096ULL

extern char __bss_end[];

static uint64_t next, top;

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

void ram_init(uint32_t mbi_addr)
{
    uint64_t start = (uint64_t)(uintptr_t)__bss_end;
    const volatile uint32_t *mbi = (const volatile uint32_t *)(uintptr_t)mbi_addr;
    /* The loader's info block and command line may sit right after the image. */
    if (mbi_addr >= start)
        start = (uint64_t)mbi_addr + PAGE;
    if (mbi_addr && (mbi[0] & MB_INFO_CMDLINE) && mbi[4] >= (uint64_t)(uintptr_t)__bss_end) {
        const char *s = (const char *)(uintptr_t)mbi[4];
        uint64_t end = mbi[4] + strlen(s) + 1;
        if (end > start)
            start = end;
    }
    next = align_up(start, PAGE);
    /* Without mem_upper, assume the 16 MiB the README promises to be enough. */
    top =
        (mbi_addr && (mbi[0] & MB_INFO_MEM)) ? 0x100000ULL + (uint64_t)mbi[2] * 1024 : 16ULL << 20;
    if (top > MAPPED_RAM_END)
        top = MAPPED_RAM_END;
}

void *ram_alloc(uint64_t size, uint64_t align)
{
    if (align < 64)
        align = 64;
    uint64_t p = align_up(next, align);
    if (p + size > top || p + size < p)
        return NULL;
    next = p + size;
    memset((void *)(uintptr_t)p, 0, size);
    return (void *)(uintptr_t)p;
}

uint64_t ram_top(void)
{
    return top;
}

uint64_t ram_mark(void)
{
    return next;
}

void ram_release(uint64_t mark)
{
    next = mark;
}
