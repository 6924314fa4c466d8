/* One vCPU: its KVM fd, shared kvm_run page, thread, and exit handling. */
#pragma once
#include <pthread.h>
#include <stdbool.h>

struct vm;
struct kvm_run;

struct vcpu {
    struct vm *vm;
    int id;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool started;
    /* The last exit was PIO/MMIO: KVM finishes that instruction on the next KVM_RUN. */
    bool io_pending;
};

struct vcpu *vcpu_create(struct vm *vm, int id);
/* CPUID, MSRs, LAPIC LINT pins, and for the BSP the registers of the boot entry. */
void vcpu_setup_boot(struct vcpu *v);
void vcpu_start(struct vcpu *v);
/* Forces the vCPU out of KVM_RUN (safe from any thread). */
void vcpu_kick(struct vcpu *v);
void vcpu_join(struct vcpu *v);
void vcpu_destroy(struct vcpu *v);
