/*
 * One virtual machine: KVM fds, guest RAM, buses, its device table, vCPUs. The VM owns
 * everything it creates, including the NVMe function and its disks; vm_destroy frees it all.
 * Live migration (migrate/) talks to it only through the functions under "migration" below.
 */
#pragma once
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emu/nvme.h"
#include "kvm/irq.h"
#include "kvm/mptable.h"
#include "util/guest_mem.h"

#define VM_MAX_CPUS    64
#define VM_MAX_DEVICES 16

/* Migration sections of the VM itself (devices name theirs: hw/device.h). */
#define VM_SECTION_VCPU 0x10 /* + vCPU index: registers, LAPIC, MSRs, CPUID (kvm/vmstate.h) */
#define VM_SECTION_KVM  0x60 /* in-kernel PIC, IOAPIC, PIT and kvmclock */

struct bus;
struct pci_bus;
struct uart;
struct vcpu;
struct nvme_pci;
struct nvme_pci_config;
struct device_ops;
#define VM_MAX_PCI_IRQS 8

struct vm_device {
    const struct device_ops *ops;
    void *dev;
};

struct vm_config {
    uint64_t mem_size;
    int ncpus;
    const char *kernel; /* bzImage or multiboot image */
    const char *initrd;
    /* A second initramfs archive in memory, loaded with initrd (its files are added to the
     * guest's root file system): the user's fio job and --guest-file files. */
    const void *initrd_extra;
    size_t initrd_extra_len;
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
    struct uart *uart; /* the console */
    struct irq_router irq;
    struct mptable_pci_irq pci_irqs[VM_MAX_PCI_IRQS];
    int n_pci_irqs;
    /* In creation order, which is the order of save, load, start, quiesce and post-load. */
    struct vm_device devs[VM_MAX_DEVICES];
    int ndevs;
    struct nvme_pci *nvme;         /* NULL without disks */
    struct nvme_ctrl_config disks; /* the namespaces (nr_ns 0: none); their blk_devs are ours */

    enum boot_kind boot;
    uint64_t entry;    /* first instruction */
    uint64_t boot_arg; /* rsi (zero page) or ebx (multiboot info) */

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

/* Opens /dev/kvm, creates the VM, RAM, irqchip, PIT, devices and vCPUs. Dies on error. */
void vm_create(struct vm *vm, const struct vm_config *cfg);
/* Adds dev to the device table (and its ports to the PIO bus); returns dev. Dies if dev is
 * NULL (its constructor failed), the table is full, or its section or ports are taken. */
void *vm_add_device(struct vm *vm, const struct device_ops *ops, void *dev);
/* The NVMe function with cfg's namespaces. The VM takes ownership of the opened disks. */
void vm_add_nvme(struct vm *vm, const struct nvme_pci_config *cfg);
/* Prepares the vCPUs (CPUID, MSRs) for state that will arrive by migration. */
void vm_prepare_incoming(struct vm *vm);
/* Starts the devices' threads, then one thread per vCPU. Dies on error (first start only). */
void vm_start(struct vm *vm);
/* Stops every vCPU at an instruction boundary (pending PIO/MMIO completed) and waits. */
void vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
bool vm_is_paused(struct vm *vm);
/* Asks the VM to stop with status (the first request wins). Safe from any thread. */
void vm_request_stop(struct vm *vm, int status);
/* Joins the vCPU threads; returns the exit status. */
int vm_join(struct vm *vm);
/* Frees everything vm_create and vm_add_* created, closing the disks. */
void vm_destroy(struct vm *vm);

/* ---- migration (kvm/vm_state.c) ---- */

/* Receives each section vm_save_state produces; 0, or -1 with a reason. */
typedef int (*vm_emit_fn)(void *opaque, uint32_t section, uint16_t version, const void *data,
                          size_t len, char *err, size_t errlen);
/* Stops every vCPU at an instruction boundary and quiesces every device (storage drained,
 * completions posted): the VM's state is then complete in memory. */
void vm_quiesce(struct vm *vm);
/* Undoes vm_quiesce after a failed migration: restarts the devices, tells a kvmclock guest
 * it was stopped, resumes the vCPUs. -1 with a reason if a device cannot restart (the
 * vCPUs then stay paused). */
int vm_unquiesce(struct vm *vm, char *err, size_t errlen);
/* Everything but RAM, quiesced: devices in table order, then the VM, then each vCPU. */
int vm_save_state(struct vm *vm, vm_emit_fn emit, void *opaque, char *err, size_t errlen);
/* One section into the (not yet started) destination VM; refuses an unknown section or
 * a version other than this nvmevm's. */
int vm_load_section(struct vm *vm, uint32_t section, uint16_t version, const uint8_t *payload,
                    size_t len, char *err, size_t errlen);
/* The sections vm_save_state sends, in its order, with a name for messages: what a
 * complete stream must carry. Returns how many (at most max). */
int vm_sections(const struct vm *vm, uint32_t *ids, const char **names, int max);
/* After the last section: devices re-drive pending interrupts; kvmclock is told. */
void vm_post_load(struct vm *vm);

/* Dirty-page log over all of guest RAM (KVM's per-slot logs and the VMM's own writes),
 * as a bitmap indexed by RAM offset in pages (vm->mem.size / GUEST_PAGE_SIZE bits). */
int vm_dirty_log_start(struct vm *vm);
void vm_dirty_log_stop(struct vm *vm);
/* ORs every page dirtied since the last call (or the start) into bm. */
void vm_dirty_log_sync(struct vm *vm, uint64_t *bm);
/* Wires INTA# of PCI slot to a free IOAPIC pin (listed in the MP table); returns the GSI. */
unsigned vm_add_pci_intx(struct vm *vm, uint8_t slot);

/* Opens /dev/kvm with a one-line error on failure. */
int kvm_open_dev(void);
