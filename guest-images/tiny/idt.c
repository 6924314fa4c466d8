/*
 * C side of interrupt handling (ring 0). The IDT itself is static data in isr.S.
 * Unexpected exceptions/interrupts print the vector and RIP on COM1 and end the
 * VM through the debug-exit port with EXIT_EXCEPTION + vector (or EXIT_UNEXPECTED).
 * A signed ud2 from ring 3 is sys_halt() (see defs.h).
 */
#include "tiny.h"

struct isr_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss;
};

void isr_dispatch(struct isr_frame *f);

static NORETURN void halt_forever(void)
{
    for (;;)
        __asm__ volatile("cli; hlt");
}

void isr_dispatch(struct isr_frame *f)
{
    if (f->vector == 6 && (f->cs & 3) == 3) {
        const volatile uint8_t *ip = (const volatile uint8_t *)(uintptr_t)f->rip;
        if (ip[0] == 0x0f && ip[1] == 0x0b && ip[2] == SYSCALL_SIG0 && ip[3] == SYSCALL_SIG1)
            halt_forever(); /* sys_halt() */
    }
    uint64_t cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    uint32_t apic = *(volatile uint32_t *)(uintptr_t)(LAPIC_BASE + 0x20) >> 24;
    kprintf("tiny: FAIL exception vector=0x%02lx error=0x%lx rip=0x%lx cs=0x%lx rsp=0x%lx "
            "cr2=0x%lx apic=%u\n",
            f->vector, f->error, f->rip, f->cs, f->rsp, cr2, apic);
    unsigned code = f->vector < 32 ? EXIT_EXCEPTION + (unsigned)f->vector : EXIT_UNEXPECTED;
    outb(DEBUG_EXIT_PORT, (uint8_t)code);
    outb(I8042_CMD, 0xfe); /* no debug-exit device: reset instead */
    halt_forever();
}
