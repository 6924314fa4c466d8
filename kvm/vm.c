#include "kvm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "hw/bus.h"
#include "hw/debug_exit.h"
#include "hw/i8042.h"
#include "kvm/layout.h"
#include "hw/pci.h"
#include "hw/rtc.h"
#include "hw/uart.h"
#include "kvm/vcpu.h"
#include "util/log.h"

int kvm_open_dev(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        die_errno("/dev/kvm");
    int v = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (v != KVM_API_VERSION)
        die("/dev/kvm: unsupported KVM API version %d (need %d)", v, KVM_API_VERSION);
    return fd;
}

static void require_cap(struct vm *vm, int cap, const char *name)
{
    if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, cap) <= 0)
        die("/dev/kvm: missing required capability %s", name);
}

static void set_slot(struct vm *vm, uint32_t slot, uint64_t gpa, uint64_t size, void *host)
{
    struct kvm_userspace_memory_region r = {
        .slot = slot, .guest_phys_addr = gpa, .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)host};
    if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        die_errno("KVM_SET_USER_MEMORY_REGION (slot %u, %llu MiB)", slot,
                  (unsigned long long)(size >> 20));
}

/*
 * Anonymous memory by default: it gets transparent huge pages, and 2 MiB pages in the
 * nested page tables made a Linux boot ~30% faster under nested KVM. A memfd (--mem-shared)
 * only gets them where the host enables shmem THP (Debian: "never").
 */
static void create_ram(struct vm *vm)
{
    uint64_t size = vm->cfg.mem_size;
    void *host;
    vm->memfd = -1;
    if (vm->cfg.mem_shared) {
        vm->memfd = memfd_create("nvmevm-ram", MFD_CLOEXEC);
        if (vm->memfd < 0)
            die_errno("memfd_create");
        if (ftruncate(vm->memfd, (off_t)size) < 0)
            die_errno("guest RAM (%llu MiB)", (unsigned long long)(size >> 20));
        host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, vm->memfd, 0);
    } else {
        host = mmap(NULL, size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    }
    if (host == MAP_FAILED)
        die_errno("mmap guest RAM (%llu MiB)", (unsigned long long)(size >> 20));
    madvise(host, size, MADV_HUGEPAGE);
    /* Guest RAM in a core dump would be huge and may hold secrets. */
    madvise(host, size, MADV_DONTDUMP);
    guest_mem_layout(&vm->mem, host, size, LAYOUT_PCI_HOLE);
    set_slot(vm, 0, 0, vm->mem.low_size, host);
    if (vm->mem.high_size)
        set_slot(vm, 1, GUEST_4G, vm->mem.high_size, (uint8_t *)host + vm->mem.low_size);
}

static void fetch_supported_cpuid(struct vm *vm)
{
    for (int n = 64;; n *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (size_t)n * sizeof(c->entries[0]));
        if (!c)
            die("out of memory");
        c->nent = (uint32_t)n;
        if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            vm->supported_cpuid = c;
            return;
        }
        free(c);
        if (errno != E2BIG || n > 4096)
            die_errno("KVM_GET_SUPPORTED_CPUID");
    }
}

static void uart_irq(void *opaque, int level)
{
    struct vm *vm = opaque;
    struct kvm_irq_level irq = {.irq = UART_COM1_IRQ, .level = (uint32_t)level};
    if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
        warn_errno("KVM_IRQ_LINE %u", UART_COM1_IRQ);
}

static void guest_reset(void *opaque)
{
    vm_request_stop(opaque, -1);
}

static void guest_exit(void *opaque, int status)
{
    vm_request_stop(opaque, status);
}

static void must_register(struct bus *b, uint64_t base, uint64_t len, bus_io_fn fn, void *opaque,
                          const char *name)
{
    int r = bus_register(b, base, len, fn, opaque, name);
    if (r < 0)
        die("cannot place %s at 0x%llx: %s", name, (unsigned long long)base, strerror(-r));
}

static void create_devices(struct vm *vm)
{
    vm->pio = bus_new("pio");
    vm->mmio = bus_new("mmio");
    vm->uart = uart_new(vm->cfg.console_out_fd, uart_irq, vm);
    vm->kbd = i8042_new(guest_reset, vm);
    vm->dbg = debug_exit_new(guest_exit, vm);
    vm->rtc = rtc_new();
    vm->pci = pci_bus_new(vm->pio, vm->mmio, LAYOUT_PCI_MMIO, LAYOUT_PCI_MMIO_END - LAYOUT_PCI_MMIO);
    if (!vm->pio || !vm->mmio || !vm->uart || !vm->kbd || !vm->dbg || !vm->pci || !vm->rtc)
        die("out of memory creating devices");
    must_register(vm->pio, UART_COM1_BASE, UART_NR_PORTS, uart_io, vm->uart, "ttyS0");
    must_register(vm->pio, I8042_BASE, I8042_LEN, i8042_io, vm->kbd, "i8042");
    must_register(vm->pio, DEBUG_EXIT_BASE, DEBUG_EXIT_LEN, debug_exit_io, vm->dbg, "debug-exit");
    must_register(vm->pio, RTC_BASE, RTC_LEN, rtc_io, vm->rtc, "rtc");
    must_register(vm->pio, PCI_CONF1_BASE, PCI_CONF1_LEN, pci_conf1_io, vm->pci, "pci-conf1");
}

void vm_create(struct vm *vm, const struct vm_config *cfg)
{
    memset(vm, 0, sizeof(*vm));
    vm->cfg = *cfg;
    vm->ncpus = cfg->ncpus;
    pthread_mutex_init(&vm->lock, NULL);
    pthread_cond_init(&vm->cond, NULL);
    vm->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vm->stop_efd < 0)
        die_errno("eventfd");

    vm->kvm_fd = kvm_open_dev();
    require_cap(vm, KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY");
    require_cap(vm, KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP");
    require_cap(vm, KVM_CAP_PIT2, "KVM_CAP_PIT2");
    require_cap(vm, KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT");
    vm->tsc_deadline = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
    int max_vcpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
    if (max_vcpus > 0 && cfg->ncpus > max_vcpus)
        die("--cpus %d: this host's KVM allows at most %d", cfg->ncpus, max_vcpus);

    vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    if (vm->vm_fd < 0)
        die_errno("KVM_CREATE_VM");
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)LAYOUT_TSS) < 0)
        die_errno("KVM_SET_TSS_ADDR");
    uint64_t idmap = LAYOUT_IDENTITY_MAP;
    if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
        debug_msg("KVM_SET_IDENTITY_MAP_ADDR: %s (ignored)", strerror(errno));
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
        die_errno("KVM_CREATE_IRQCHIP");
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
        die_errno("KVM_CREATE_PIT2");

    irq_router_init(&vm->irq, vm->vm_fd);
    create_ram(vm);
    create_devices(vm);
    fetch_supported_cpuid(vm);
    int rs = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (rs <= 0)
        die_errno("KVM_GET_VCPU_MMAP_SIZE");
    vm->run_size = (size_t)rs;
    for (int i = 0; i < vm->ncpus; i++)
        vm->vcpus[i] = vcpu_create(vm, i);
}

void vm_prepare_incoming(struct vm *vm)
{
    vm->boot = BOOT_INCOMING;
    for (int i = 0; i < vm->ncpus; i++)
        vcpu_setup_boot(vm->vcpus[i]);
}

/* IOAPIC pins 16-23 are free for PCI: ISA devices use 0-15. */
unsigned vm_add_pci_intx(struct vm *vm, uint8_t slot)
{
    if (vm->n_pci_irqs >= VM_MAX_PCI_IRQS)
        die("too many PCI devices with INTx");
    unsigned pin = 16 + (unsigned)vm->n_pci_irqs;
    vm->pci_irqs[vm->n_pci_irqs++] =
        (struct mptable_pci_irq){.slot = slot, .pin = 0, .ioapic_pin = (uint8_t)pin};
    return pin;
}

/* ---- lifecycle ---- */

/* Threads are created, and kicks sent, under vm->lock: a stop or pause requested while a
 * vCPU thread is still starting can then never miss it. */
void vm_start(struct vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    vm->n_threads = vm->ncpus;
    for (int i = 0; i < vm->ncpus; i++)
        vcpu_start(vm->vcpus[i]);
    pthread_mutex_unlock(&vm->lock);
}

void vm_request_stop(struct vm *vm, int status)
{
    pthread_mutex_lock(&vm->lock);
    if (!atomic_load(&vm->stopping)) {
        vm->exit_status = status < 0 ? 0 : status;
        atomic_store(&vm->stopping, true);
        uint64_t one = 1;
        if (write(vm->stop_efd, &one, sizeof(one)) < 0)
            debug_msg("stop eventfd: %s", strerror(errno));
    }
    pthread_cond_broadcast(&vm->cond);
    for (int i = 0; i < vm->ncpus; i++)
        if (vm->vcpus[i])
            vcpu_kick(vm->vcpus[i]);
    pthread_mutex_unlock(&vm->lock);
}

void vm_pause(struct vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    atomic_store(&vm->pause_req, true);
    for (int i = 0; i < vm->ncpus; i++)
        vcpu_kick(vm->vcpus[i]);
    while (vm->n_parked < vm->n_threads && !atomic_load(&vm->stopping))
        pthread_cond_wait(&vm->cond, &vm->lock);
    pthread_mutex_unlock(&vm->lock);
}

void vm_resume(struct vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    atomic_store(&vm->pause_req, false);
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
}

bool vm_is_paused(struct vm *vm)
{
    return atomic_load(&vm->pause_req);
}

int vm_join(struct vm *vm)
{
    for (int i = 0; i < vm->ncpus; i++)
        vcpu_join(vm->vcpus[i]);
    return vm->exit_status;
}

void vm_destroy(struct vm *vm)
{
    for (int i = 0; i < vm->ncpus; i++)
        vcpu_destroy(vm->vcpus[i]);
    uart_free(vm->uart);
    i8042_free(vm->kbd);
    debug_exit_free(vm->dbg);
    rtc_free(vm->rtc);
    pci_bus_free(vm->pci);
    bus_free(vm->pio);
    bus_free(vm->mmio);
    munmap(vm->mem.host, vm->mem.size);
    free(vm->mem.dirty);
    free(vm->supported_cpuid);
    if (vm->memfd >= 0)
        close(vm->memfd);
    close(vm->vm_fd);
    close(vm->kvm_fd);
    close(vm->stop_efd);
}
