/*
 * Multiboot v1 header, 32-bit entry, GDT, identity page tables and the switch
 * to 64-bit mode for the bootstrap cpu. Everything here runs in ring 0, which
 * is instruction-emulated under kvm_pvm: keep it to a handful of instructions.
 * The page tables and GDT are static data, so nothing is built at run time.
 */
#include "defs.h"

#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0x00010002 /* bit 1: want mem_*; bit 16: a.out-kludge addresses valid */

        .section .multiboot, "a"
        .balign 4
        .globl mb_header
mb_header:
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)
        .long mb_header         /* header_addr */
        .long __image_start     /* load_addr */
        .long __load_end        /* load_end_addr */
        .long __bss_end         /* bss_end_addr */
        .long mb_entry          /* entry_addr */

/* Entered per the multiboot spec: 32-bit protected mode, paging off, EAX magic, EBX info. */
        .section .boot32, "ax"
        .code32
        .globl mb_entry
mb_entry:
        movl    %eax, mb_magic
        movl    %ebx, mb_info
        rdtsc
        movl    %eax, boot_tsc
        movl    %edx, boot_tsc + 4
        lgdt    gdt_ptr
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
        ljmp    $SEL_KCODE, $entry64

        .code64
entry64:
        movw    $SEL_KDATA, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        xorl    %eax, %eax
        movw    %ax, %fs
        movw    %ax, %gs
        movq    $(kstacks + KSTACK_SIZE), %rsp
        call    kmain
1:      cli
        hlt
        jmp     1b

        .section .data
        .balign 8
        .globl mb_magic, mb_info, boot_tsc
mb_magic:
        .long 0
mb_info:
        .long 0
boot_tsc:                               /* TSC at the multiboot entry */
        .quad 0

        .balign 16
        .globl gdt, gdt_ptr
gdt:
        .quad 0
        .quad 0x00af9a000000ffff        /* 0x08 ring-0 code, 64-bit */
        .quad 0x00cf92000000ffff        /* 0x10 ring-0 data */
        .quad 0x00cff2000000ffff        /* 0x18 ring-3 data */
        .quad 0x00affa000000ffff        /* 0x20 ring-3 code, 64-bit */
        .quad 0x00cf9a000000ffff        /* 0x28 ring-0 code, 32-bit (AP trampoline) */
        .fill 2 * MAX_CPUS, 8, 0        /* per-cpu TSS descriptors, filled by cpu_init() */
gdt_end:
        .balign 8
        .word 0, 0, 0
gdt_ptr:                                /* 6 bytes for 32-bit lgdt, 10 for 64-bit */
        .word gdt_end - gdt - 1
        .quad gdt

/*
 * Identity map, U bit set everywhere so ring 3 can reach memory and MMIO:
 *   0 - 1 GiB     2 MiB pages, write-back
 *   3 - 4 GiB     2 MiB pages, uncached (PCI BARs, IOAPIC, LAPIC at 0xfee00000)
 */
        .section .data.pagetables, "aw"
        .balign 4096
        .globl pml4
pml4:
        .quad pdpt + 0x7                /* P RW US */
        .fill 511, 8, 0
pdpt:
        .quad pd_low + 0x7
        .quad 0
        .quad 0
        .quad pd_high + 0x7
        .fill 508, 8, 0
pd_low:
        .set i, 0
        .rept 512
        .quad (i << 21) | 0x87          /* P RW US PS */
        .set i, i + 1
        .endr
pd_high:
        .set i, 0
        .rept 512
        .quad (0xc0000000 + (i << 21)) | 0x9f   /* P RW US PWT PCD PS */
        .set i, i + 1
        .endr
