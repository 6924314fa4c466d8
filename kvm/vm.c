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

#include "block/block.h"
#include "hw/bus.h"
#include "hw/debug_exit.h"
#include "hw/device.h"
#include "hw/i8042.h"
#include "hw/pci.h"
#include "hw/rtc.h"
#include "hw/uart.h"
#include "kvm/layout.h"
#include "kvm/nvme_pci.h"
#include "kvm/vcpu.h"
#include "util/events.h"
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

/*
 * Guest RAM is one or two KVM memory slots: slot 0 below the PCI hole, slot 1 from 4 GiB.
 * Both are contiguous in vm->mem.host, so a RAM offset in pages indexes the dirty bitmaps.
 */
#define RAM_SLOTS 2

struct ram_slot {
    uint64_t gpa, size, offset; /* offset: into vm->mem.host */
};

static int ram_slots(const struct vm *vm, struct ram_slot s[RAM_SLOTS])
{
    s[0] = (struct ram_slot){.gpa = 0, .size = vm->mem.low_size, .offset = 0};
    if (!vm->mem.high_size)
        return 1;
    s[1] =
        (struct ram_slot){.gpa = GUEST_4G, .size = vm->mem.high_size, .offset = vm->mem.low_size};
    return 2;
}

static int set_slot(struct vm *vm, uint32_t slot, const struct ram_slot *rs, uint32_t flags)
{
    struct kvm_userspace_memory_region r = {.slot = slot,
                                            .flags = flags,
                                            .guest_phys_addr = rs->gpa,
                                            .memory_size = rs->size,
                                            .userspace_addr =
                                                (uint64_t)(uintptr_t)(vm->mem.host + rs->offset)};
    return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

static int set_dirty_logging(struct vm *vm, bool on)
{
    struct ram_slot rs[RAM_SLOTS];
    int n = ram_slots(vm, rs), r = 0;
    for (int i = 0; i < n && !r; i++)
        r = set_slot(vm, (uint32_t)i, &rs[i], on ? KVM_MEM_LOG_DIRTY_PAGES : 0);
    return r;
}

int vm_dirty_log_start(struct vm *vm)
{
    int r = set_dirty_logging(vm, true);
    if (!r && !vm->mem.dirty && guest_mem_dirty_enable(&vm->mem) < 0)
        r = -ENOMEM;
    return r;
}

void vm_dirty_log_stop(struct vm *vm)
{
    int r = set_dirty_logging(vm, false);
    if (r < 0)
        debug_msg("stopping the dirty log: %s", strerror(-r));
}

/* KVM_GET_DIRTY_LOG returns and clears one slot's bitmap; OR it in at the slot's offset. */
static void sync_slot(struct vm *vm, uint32_t slot, const struct ram_slot *rs, uint64_t *bm)
{
    uint64_t pages = rs->size / GUEST_PAGE_SIZE, base = rs->offset / GUEST_PAGE_SIZE;
    uint64_t words = (pages + 63) / 64;
    uint64_t *tmp = calloc(words, sizeof(uint64_t));
    struct kvm_dirty_log log = {.slot = slot, .dirty_bitmap = tmp};
    if (tmp && ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) == 0) {
        for (uint64_t w = 0; w < words; w++) {
            uint64_t bits = tmp[w];
            while (bits) {
                uint64_t p = base + w * 64 + (uint64_t)__builtin_ctzll(bits);
                bm[p / 64] |= 1ULL << (p % 64);
                bits &= bits - 1;
            }
        }
    } else {
        /* Without a log we cannot know what changed: resend the whole slot. */
        for (uint64_t p = base; p < base + pages; p++)
            bm[p / 64] |= 1ULL << (p % 64);
    }
    free(tmp);
}

void vm_dirty_log_sync(struct vm *vm, uint64_t *bm)
{
    struct ram_slot rs[RAM_SLOTS];
    int n = ram_slots(vm, rs);
    for (int i = 0; i < n; i++)
        sync_slot(vm, (uint32_t)i, &rs[i], bm);
    guest_mem_dirty_collect(&vm->mem, bm);
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
        host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                    -1, 0);
    }
    if (host == MAP_FAILED)
        die_errno("mmap guest RAM (%llu MiB)", (unsigned long long)(size >> 20));
    madvise(host, size, MADV_HUGEPAGE);
    /* Guest RAM in a core dump would be huge and may hold secrets. */
    madvise(host, size, MADV_DONTDUMP);
    guest_mem_layout(&vm->mem, host, size, LAYOUT_PCI_HOLE);
    struct ram_slot rs[RAM_SLOTS];
    int n = ram_slots(vm, rs);
    for (int i = 0; i < n; i++) {
        int r = set_slot(vm, (uint32_t)i, &rs[i], 0);
        if (r < 0)
            die("KVM_SET_USER_MEMORY_REGION (slot %d, %llu MiB): %s", i,
                (unsigned long long)(rs[i].size >> 20), strerror(-r));
    }
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
    events_post("RESET", "{\"source\":\"i8042\"}");
    vm_request_stop(opaque, -1);
}

static void guest_exit(void *opaque, int status)
{
    vm_request_stop(opaque, status);
}

void *vm_add_device(struct vm *vm, const struct device_ops *ops, void *dev)
{
    if (!dev)
        die("cannot create %s: out of memory", ops->name);
    if (vm->ndevs == VM_MAX_DEVICES)
        die("cannot add %s: more than %d devices", ops->name, VM_MAX_DEVICES);
    for (int i = 0; ops->section && i < vm->ndevs; i++)
        if (vm->devs[i].ops->section == ops->section)
            die("%s and %s both claim migration section 0x%x", vm->devs[i].ops->name, ops->name,
                ops->section);
    if (ops->pio_len) {
        int r = bus_register(vm->pio, ops->pio_base, ops->pio_len, ops->pio, dev, ops->name);
        if (r < 0)
            die("cannot place %s at port 0x%x: %s", ops->name, ops->pio_base, strerror(-r));
    }
    vm->devs[vm->ndevs++] = (struct vm_device){.ops = ops, .dev = dev};
    return dev;
}

/* The device table: one line per device, in the order of save and load. */
static void create_devices(struct vm *vm)
{
    vm->pio = bus_new("pio");
    vm->mmio = bus_new("mmio");
    if (!vm->pio || !vm->mmio)
        die("out of memory creating the buses");
    vm->pci = vm_add_device(
        vm, &pci_bus_device,
        pci_bus_new(vm->pio, vm->mmio, LAYOUT_PCI_MMIO, LAYOUT_PCI_MMIO_END - LAYOUT_PCI_MMIO));
    vm->uart = vm_add_device(vm, &uart_device, uart_new(vm->cfg.console_out_fd, uart_irq, vm));
    vm_add_device(vm, &i8042_device, i8042_new(guest_reset, vm));
    vm_add_device(vm, &debug_exit_device, debug_exit_new(guest_exit, vm));
    vm_add_device(vm, &rtc_device, rtc_new());
}

void vm_add_nvme(struct vm *vm, const struct nvme_pci_config *cfg)
{
    vm->disks = cfg->ctrl;
    vm->nvme = vm_add_device(vm, &nvme_pci_device, nvme_pci_create(vm, cfg));
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
    for (int i = 0; i < vm->ndevs; i++) {
        const struct device_ops *ops = vm->devs[i].ops;
        char err[200];
        if (ops->start && ops->start(vm->devs[i].dev, err, sizeof(err)) < 0)
            die("%s", err);
    }
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
        events_postf("SHUTDOWN", "{\"status\":%d}", vm->exit_status);
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
    /* Reverse order: the NVMe function goes before the PCI bus it sits on. */
    for (int i = vm->ndevs - 1; i >= 0; i--)
        if (vm->devs[i].ops->free)
            vm->devs[i].ops->free(vm->devs[i].dev);
    vm->ndevs = 0;
    for (int i = 0; i < vm->disks.nr_ns; i++)
        blk_close(vm->disks.ns[i].blk);
    vm->disks.nr_ns = 0;
    irq_router_free(&vm->irq);
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
    pthread_cond_destroy(&vm->cond);
    pthread_mutex_destroy(&vm->lock);
}
