/*
 * Ring transitions. enter_user() drops to ring 3 with iretq: RFLAGS.IOPL = 3 so
 * in/out (serial, debug-exit) work without syscalls, IF = 1 so the LAPIC timer
 * can interrupt the user loop. Ring 3 gets back to ring 0 only to stop the
 * cpu (sys_halt: a signed ud2, see defs.h); everything else is done in ring 3.
 */
#include "tiny.h"

#define USER_RFLAGS 0x3202 /* IOPL 3, IF, reserved bit 1 */

static uint8_t ustacks[MAX_CPUS][USTACK_SIZE] __attribute__((aligned(4096)));

void enter_user(void (*fn)(unsigned), unsigned cpu)
{
    /* As if called: rsp % 16 == 8 at function entry. */
    uint64_t sp = (uint64_t)(uintptr_t)ustacks[cpu] + USTACK_SIZE - 8;
    __asm__ volatile("pushq %[ss]\n\t"
                     "pushq %[sp]\n\t"
                     "pushq %[fl]\n\t"
                     "pushq %[cs]\n\t"
                     "pushq %[ip]\n\t"
                     "iretq"
                     :
                     : [ss] "i"(SEL_UDATA), [sp] "r"(sp), [fl] "i"(USER_RFLAGS),
                       [cs] "i"(SEL_UCODE), [ip] "r"(fn), "D"(cpu)
                     : "memory");
    __builtin_unreachable();
}

void sys_halt(void)
{
    for (;;)
        __asm__ volatile("ud2\n\t.byte %c0, %c1" : : "i"(SYSCALL_SIG0), "i"(SYSCALL_SIG1));
}

void guest_exit(unsigned code)
{
    if (code == EXIT_PASS)
        kprintf("tiny: PASS\n");
    else
        kprintf("tiny: exit code %u\n", code);
    outb(DEBUG_EXIT_PORT, (uint8_t)code);
    /* Still running: no debug-exit device. Ask for a reset, then stop this cpu. */
    outb(I8042_CMD, 0xfe);
    sys_halt();
}

void fail(unsigned code, const char *fmt, ...)
{
    char buf[200];
    va_list ap;
    va_start(ap, fmt);
    vformat(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    kprintf("tiny: FAIL %s\n", buf);
    guest_exit(code);
}
