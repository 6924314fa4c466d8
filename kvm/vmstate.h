/*
 * KVM state of a VM and its vCPUs for migration (everything KVM keeps in the kernel:
 * registers, LAPIC, MSRs, irqchip, PIT, kvmclock). Device models save their own state.
 *
 * Time: the guest does not see the downtime. IA32_TSC travels in the MSR set and kvmclock
 * as KVM_GET_CLOCK's value; the destination sets both to the saved values, so the TSC and
 * kvmclock continue from the instant of the save (never backwards, no jump forward).
 *
 * Destination order: vm_create + vm_prepare_incoming (or vm_load_kernel) for the same
 * --cpus/--mem, then vmstate_load_vm, then vmstate_load_vcpu for every vCPU (CPUID first,
 * then the rest), RAM, then vmstate_kvmclock_ctrl, then vm_start.
 */
#pragma once
#include <stddef.h>

struct vm;
struct vcpu;
struct mig_buf;
struct mig_cursor;

/* The vCPU must be out of KVM_RUN: paused (vm_pause completes pending PIO/MMIO) or never
 * started. Returns 0, or -1 with a one-line reason in err. */
int vmstate_save_vcpu(struct vcpu *v, struct mig_buf *b, char *err, size_t errlen);
/* Before the vCPU thread first runs. Parses and checks the whole record before it touches
 * KVM; refuses (-1) state this host's KVM cannot take rather than dropping it. */
int vmstate_load_vcpu(struct vcpu *v, struct mig_cursor *c, char *err, size_t errlen);

/* The parsing and checking half of the loads, without KVM (what a hostile stream can reach
 * before the first ioctl; the fuzzer calls these). 0, or -1 with a reason. */
int vmstate_check_vcpu(struct mig_cursor *c, unsigned id, char *err, size_t errlen);
int vmstate_check_vm(struct mig_cursor *c, char *err, size_t errlen);

/* PIC master, PIC slave, IOAPIC, PIT, kvmclock. vCPUs paused. */
int vmstate_save_vm(struct vm *vm, struct mig_buf *b, char *err, size_t errlen);
int vmstate_load_vm(struct vm *vm, struct mig_cursor *c, char *err, size_t errlen);

/* KVM_KVMCLOCK_CTRL on every vCPU (tells a kvmclock guest it was stopped, so its watchdogs
 * ignore the pause). Call while the vCPUs are out of KVM_RUN, just before they (re)start:
 * on the destination before vm_start, on the source before vm_resume after a failed
 * migration. A vCPU whose guest has no kvmclock is skipped. */
int vmstate_kvmclock_ctrl(struct vm *vm, char *err, size_t errlen);
