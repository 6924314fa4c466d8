/*
 * Application-processor start-up. The BSP copies trampoline_start..trampoline_end
 * to TRAMPOLINE_ADDR and sends INIT + SIPI (vector TRAMPOLINE_ADDR >> 12). The AP
 * starts in real mode at CS = TRAMPOLINE_ADDR >> 4, IP = 0, goes through 32-bit
 * protected mode to long mode with the BSP's GDT and page tables, takes a cpu
 * index with lock xadd and calls ap_main(index) on its own stack.
 * The code is position-dependent on TRAMPOLINE_ADDR: addresses inside it are
 * written as TRAMPOLINE_ADDR + (label - trampoline_start).
 */
#include "defs.h"

#define TR(label) (TRAMPOLINE_ADDR + ((label) - trampoline_start))

        .section .rodata
        .globl trampoline_start, trampoline_end
        .code16
trampoline_start:
        cli
        movw    %cs, %ax
        movw    %ax, %ds
        lgdtl   tr_gdt_ptr - trampoline_start
        movl    $0x11, %eax             /* PE | ET */
        movl    %eax, %cr0
        ljmpl   $SEL_KCODE32, $TR(tr32)

        .code32
tr32:
        movl    $CR4_PAE, %eax
        movl    %eax, %cr4
        movl    $pml4, %eax
        movl    %eax, %cr3
        movl    $MSR_EFER, %ecx
        xorl    %edx, %edx
        movl    $EFER_LME, %eax
        wrmsr
        movl    $CR0_PE_ET_PG, %eax
        movl    %eax, %cr0
        ljmp    $SEL_KCODE, $ap_entry64

        .balign 4
        .word   0
tr_gdt_ptr:
        .word   GDT_ENTRIES * 8 - 1
        .long   gdt
trampoline_end:

        .text
        .code64
ap_entry64:
        movw    $SEL_KDATA, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        xorl    %eax, %eax
        movw    %ax, %fs
        movw    %ax, %gs
        movl    $1, %eax
        lock xaddl %eax, ap_next_cpu(%rip)
        cmpl    $MAX_CPUS, %eax
        jae     2f
        movl    %eax, %edi
        leaq    1(%rax), %rsp
        shlq    $KSTACK_SHIFT, %rsp
        addq    $kstacks, %rsp
        call    ap_main
2:      cli
        hlt
        jmp     2b

        .section .data
        .balign 4
        .globl ap_next_cpu
ap_next_cpu:                            /* next AP index; 0 is the BSP */
        .long 1
