/* One virtual machine: KVM fds, guest RAM, buses, legacy devices, vCPUs. */
#pragma once
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "kvm/irq.h"
#include "kvm/mptable.h"
#include "util/guest_mem.h"

#define VM_MAX_CPUS 64

struct bus;
struct pci_bus;
struct uart;
struct i8042;
struct debug_exit;
struct rtc;
struct vcpu;
struct nvme_pci;
struct nvme_ctrl_config;
struct migration;
#define VM_MAX_PCI_IRQS 8

struct vm_config {
    uint64_t mem_size;
    int ncpus;
    const char *kernel; /* bzImage or multiboot image */
    const char *initrd;
    const char *append;
    int console_out_fd; /* where the UART writes (stdout) */
    bool mem_shared;    /* guest RAM in a memfd (MAP_SHARED) instead of anonymous memory */
};

enum boot_kind { BOOT_LINUX64, BOOT_MULTIBOOT, BOOT_INCOMING /* state comes from a stream */ };

struct vm {
    struct vm_config cfg;
    int kvm_fd;
    int vm_fd;
    int memfd; /* -1 unless cfg.mem_shared */
    struct guest_mem mem;
    size_t run_size;
    bool tsc_deadline;
    struct kvm_cpuid2 *supported_cpuid;

    struct bus *pio;
    struct bus *mmio;
    struct pci_bus *pci;
    struct uart *uart;
    struct i8042 *kbd;
    struct debug_exit *dbg;
    struct rtc *rtc;
    struct irq_router irq;
    struct mptable_pci_irq pci_irqs[VM_MAX_PCI_IRQS];
    int n_pci_irqs;
    struct nvme_pci *nvme;
    const struct nvme_ctrl_config *disks; /* the namespaces' backing devices, or NULL */
    struct migration *mig;                /* outgoing migration, or NULL */

    enum boot_kind boot;
    uint64_t entry;     /* first instruction */
    uint64_t boot_arg;  /* rsi (zero page) or ebx (multiboot info) */

    int ncpus;
    struct vcpu *vcpus[VM_MAX_CPUS];

    /* Lifecycle. The lock guards the counters; flags are atomics so vCPUs can poll them. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    atomic_bool pause_req;
    atomic_bool stopping;
    int n_parked;
    int n_threads;
    int exit_status;
    int stop_efd; /* readable once the VM has been asked to stop */
};

/* Wires INTA# of PCI slot to a free IOAPIC pin (listed in the MP table); returns the GSI. */
unsigned vm_add_pci_intx(struct vm *vm, uint8_t slot);

/* Opens /dev/kvm, creates the VM, RAM, irqchip, PIT, devices and vCPUs. Dies on error. */
void vm_create(struct vm *vm, const struct vm_config *cfg);
/* Prepares the vCPUs (CPUID, MSRs) for state that will arrive by migration. */
void vm_prepare_incoming(struct vm *vm);
/* Starts one thread per vCPU. */
void vm_start(struct vm *vm);
/* Stops every vCPU at an instruction boundary (pending PIO/MMIO completed) and waits. */
void vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
bool vm_is_paused(struct vm *vm);
/* Asks the VM to stop with status (the first request wins). Safe from any thread. */
void vm_request_stop(struct vm *vm, int status);
/* Joins the vCPU threads; returns the exit status. */
int vm_join(struct vm *vm);
void vm_destroy(struct vm *vm);

/* Wires INTA# of PCI slot to a free IOAPIC pin (listed in the MP table); returns the GSI. */
unsigned vm_add_pci_intx(struct vm *vm, uint8_t slot);

/* Opens /dev/kvm with a one-line error on failure. */
int kvm_open_dev(void);
