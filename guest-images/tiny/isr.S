/*
 * Interrupt entry: 256 stubs of ISR_STUB_SIZE bytes at the fixed address
 * ISR_STUBS_ADDR (checked by linker.ld), so the IDT below is pure assembly-time
 * data and needs no run-time setup. Ring-0 code is emulated under kvm_pvm, so
 * the timer and spurious vectors have short dedicated paths; everything else
 * goes through isr_common to isr_dispatch() (idt.c).
 */
#include "defs.h"

/* vectors for which the CPU pushes an error code */
#define HAS_ERR(v) ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || (v) == 21 || \
                    (v) == 29 || (v) == 30)

        .section .isr_stubs, "ax"
        .code64
        .globl isr_stubs
isr_stubs:
        .set vec, 0
        .rept 256
        .org isr_stubs + vec * ISR_STUB_SIZE, 0xcc
        .if vec == VEC_TIMER
        jmp     isr_timer
        .elseif vec >= VEC_MSI_BASE && vec < VEC_MSI_BASE + MSI_VECTORS
        incq    msi_count + 8 * (vec - VEC_MSI_BASE)(%rip)
        jmp     isr_eoi
        .elseif vec == VEC_SPURIOUS
        iretq
        .elseif HAS_ERR(vec)
        pushq   $vec
        jmp     isr_common
        .else
        pushq   $0
        pushq   $vec
        jmp     isr_common
        .endif
        .set vec, vec + 1
        .endr
        .org isr_stubs + 256 * ISR_STUB_SIZE, 0xcc

isr_common:
        pushq   %rax
        pushq   %rbx
        pushq   %rcx
        pushq   %rdx
        pushq   %rsi
        pushq   %rdi
        pushq   %rbp
        pushq   %r8
        pushq   %r9
        pushq   %r10
        pushq   %r11
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rsp, %rdi
        call    isr_dispatch
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %r11
        popq    %r10
        popq    %r9
        popq    %r8
        popq    %rbp
        popq    %rdi
        popq    %rsi
        popq    %rdx
        popq    %rcx
        popq    %rbx
        popq    %rax
        addq    $16, %rsp               /* vector, error code */
        iretq

/*
 * LAPIC timer: count and EOI (6 instructions: this path is emulated per tick).
 * The MSI vectors' stubs count in msi_count[] and join at isr_eoi.
 */
isr_timer:
        incq    timer_ticks(%rip)
isr_eoi:
        pushq   %rax
        movl    $(LAPIC_BASE + LAPIC_EOI), %eax
        movl    $0, (%rax)
        popq    %rax
        iretq

        .section .data
        .balign 16
        .globl idt, idt_ptr
idt:
        .set vec, 0
        .rept 256
        .word   (ISR_STUBS_ADDR + vec * ISR_STUB_SIZE) & 0xffff
        .word   SEL_KCODE
        .byte   0                       /* IST */
        .byte   0x8e                    /* present, DPL 0, 64-bit interrupt gate */
        .word   (ISR_STUBS_ADDR + vec * ISR_STUB_SIZE) >> 16
        .long   0
        .long   0
        .set vec, vec + 1
        .endr
idt_end:
        .balign 8
        .word 0, 0, 0
idt_ptr:
        .word   idt_end - idt - 1
        .quad   idt

        .bss
        .balign 8
        .globl timer_ticks
timer_ticks:
        .quad 0
        .globl msi_count
msi_count:                              /* per MSI vector: interrupts taken */
        .fill MSI_VECTORS, 8, 0
