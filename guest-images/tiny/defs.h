/*
 * Constants shared by the assembly and C parts of the tiny test guest.
 * Plain numbers only (no C suffixes): this file is included from .S files.
 */
#pragma once

#define TINY_LOAD_ADDR  0x100000 /* multiboot load address (1 MiB) */
#define ISR_STUBS_ADDR  0x101000 /* fixed, so the IDT can be built at assembly time */
#define ISR_STUB_SIZE   16
#define TRAMPOLINE_ADDR 0x8000 /* AP real-mode entry; SIPI vector 0x08 */

#define MAX_CPUS     8
#define KSTACK_SHIFT 14 /* 16 KiB ring-0 stack per cpu (also its TSS.RSP0) */
#define KSTACK_SIZE  (1 << KSTACK_SHIFT)
#define USTACK_SIZE  16384 /* ring-3 stack per cpu */

/* GDT layout */
#define SEL_KCODE     0x08 /* 64-bit ring-0 code */
#define SEL_KDATA     0x10
#define SEL_UDATA     0x1b /* index 3, RPL 3 */
#define SEL_UCODE     0x23 /* index 4, RPL 3, 64-bit */
#define SEL_KCODE32   0x28 /* 32-bit ring-0 code (AP trampoline only) */
#define GDT_TSS_INDEX 6    /* TSS of cpu i: selector (6 + 2 i) * 8, 16-byte descriptor */
#define GDT_ENTRIES   (GDT_TSS_INDEX + 2 * MAX_CPUS)

/* Control registers / MSRs used by the long-mode switch */
#define CR0_PE_ET_PG 0x80000011
#define CR4_PAE      0x20
#define MSR_EFER     0xc0000080
#define EFER_LME     0x100

/* Interrupt vectors */
#define VEC_TIMER    0x40
#define VEC_SPURIOUS 0xff
#define VEC_MSI_BASE 0x50 /* MSI/MSI-X vectors 0x50..0x50+MSI_VECTORS-1: count + EOI */
#define MSI_VECTORS  16

#define LAPIC_BASE      0xfee00000
#define LAPIC_EOI       0xb0
#define DEBUG_EXIT_PORT 0x501
#define COM1            0x3f8

/*
 * Ring 3 -> ring 0 "system call": ud2 followed by these two signature bytes
 * makes the #UD handler stop the cpu (cli; hlt). kvm_pvm turns int $0x80 into
 * #UD and does not switch to ring 0 on syscall, but delivers exceptions
 * faithfully, so an exception is the one portable way down to ring 0.
 */
#define SYSCALL_SIG0 0x54 /* 'T' */
#define SYSCALL_SIG1 0x48 /* 'H': halt this cpu */
#define I8042_CMD    0x64 /* fallback stop: pulse reset (0xfe) */

/*
 * Exit codes written to the debug-exit port: byte v -> VMM exit status (v << 1) | 1.
 * v must stay below 128 so the status fits in 8 bits.
 */
#define EXIT_PASS       0
#define EXIT_FAIL       1  /* a test's check failed */
#define EXIT_TIMEOUT    2  /* a bounded wait expired */
#define EXIT_BADARGS    3  /* unknown test / bad cmdline value */
#define EXIT_MISMATCH   4  /* checksum differs from expect= */
#define EXIT_BOOT       5  /* bad multiboot magic */
#define EXIT_EXCEPTION  64 /* + vector (0..31): unexpected CPU exception */
#define EXIT_UNEXPECTED 96 /* unexpected interrupt vector >= 32 */
