/*
 * Ring-0 bring-up after the switch to 64-bit mode: TSS, IDT, PIC mask, then
 * straight to ring 3. Under kvm_pvm every ring-0 instruction is emulated
 * (~2 us each), so this file does the minimum; all real work runs in ring 3.
 */
#include "tiny.h"

struct tss {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
} __attribute__((packed));

_Static_assert(sizeof(struct tss) == 104, "TSS layout");

/*
 * TSS followed by an I/O permission bitmap that allows every port. With VMX or
 * TCG, IOPL = 3 already lets ring 3 use in/out; kvm_pvm runs guest ring 3 with
 * the hardware IOPL at 0 and decides on the trapped in/out from this bitmap.
 */
struct tss_io {
    struct tss tss;
    uint8_t iomap[65536 / 8]; /* all zero (bss): every port allowed */
    uint8_t iomap_end;        /* 0xff, as the architecture requires */
} __attribute__((packed));

uint8_t kstacks[MAX_CPUS][KSTACK_SIZE] __attribute__((aligned(4096)));
static struct tss_io tss[MAX_CPUS] __attribute__((aligned(128)));

struct desc_ptr {
    uint16_t limit;
    uint64_t base;
} __attribute__((packed));

extern struct desc_ptr idt_ptr;

/* Own TSS (RSP0 = top of this cpu's ring-0 stack), load TR and the shared IDT. */
static void cpu_init(unsigned cpu)
{
    struct tss_io *t = &tss[cpu];
    uint64_t base = (uint64_t)(uintptr_t)t;
    uint64_t limit = sizeof(*t) - 1;

    t->tss.rsp[0] = (uint64_t)(uintptr_t)kstacks[cpu] + KSTACK_SIZE;
    t->tss.iomap_base = sizeof(struct tss);
    t->iomap_end = 0xff;
    gdt[GDT_TSS_INDEX + 2 * cpu] = (limit & 0xffff) | ((base & 0xffffff) << 16) |
                                   (0x89ULL << 40) /* present, 64-bit TSS available */ |
                                   (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
    gdt[GDT_TSS_INDEX + 2 * cpu + 1] = base >> 32;
    uint16_t sel = (uint16_t)((GDT_TSS_INDEX + 2 * cpu) * 8);
    __asm__ volatile("ltr %0" : : "r"(sel) : "memory");
    __asm__ volatile("lidt %0" : : "m"(idt_ptr) : "memory");
}

static const char hello[] = "tiny: hello from ring 0\n";

void kmain(void)
{
    /* First serial output as early as possible (boot-to-first-byte benchmark). */
    serial_init();
    serial_write(hello, sizeof(hello) - 1);
    /* The legacy PIC may still have the BIOS timer unmasked; ring 3 runs with IF = 1. */
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    cpu_init(0);
    enter_user(user_main, 0);
}

void ap_main(unsigned cpu)
{
    cpu_init(cpu);
    enter_user(ap_user_main, cpu);
}
