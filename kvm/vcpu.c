#include "kvm/vcpu.h"

#include <errno.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hw/bus.h"
#include "kvm/cpuid.h"
#include "kvm/layout.h"
#include "kvm/multiboot.h"
#include "kvm/vm.h"
#include "util/events.h"
#include "util/log.h"
#include "util/thread_role.h"

#define SIG_VCPU_KICK SIGUSR1

#define MSR_IA32_SYSENTER_CS    0x174
#define MSR_IA32_SYSENTER_ESP   0x175
#define MSR_IA32_SYSENTER_EIP   0x176
#define MSR_IA32_MISC_ENABLE    0x1a0
#define MSR_MTRR_DEF_TYPE       0x2ff
#define MSR_STAR                0xc0000081
#define MSR_LSTAR               0xc0000082
#define MSR_CSTAR               0xc0000083
#define MSR_SYSCALL_MASK        0xc0000084
#define MSR_KERNEL_GS_BASE      0xc0000102
#define MISC_ENABLE_FAST_STRING 1
#define MTRR_ENABLE_WB          ((1 << 11) | 6)

#define APIC_LVT0        0x350
#define APIC_LVT1        0x360
#define APIC_MODE_NMI    0x4
#define APIC_MODE_EXTINT 0x7

static __thread struct kvm_run *tls_run;

static void kick_handler(int sig)
{
    (void)sig;
    /* Makes a KVM_RUN that is about to start (or running) return EINTR at once. */
    if (tls_run)
        tls_run->immediate_exit = 1;
}

static void install_kick_handler_once(void)
{
    struct sigaction sa = {.sa_handler = kick_handler};
    sigemptyset(&sa.sa_mask);
    sigaction(SIG_VCPU_KICK, &sa, NULL);
}

static void install_kick_handler(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install_kick_handler_once);
}

struct vcpu *vcpu_create(struct vm *vm, int id)
{
    struct vcpu *v = calloc(1, sizeof(*v));
    if (!v)
        die("out of memory");
    v->vm = vm;
    v->id = id;
    v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
    if (v->fd < 0)
        die_errno("KVM_CREATE_VCPU %d", id);
    v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED)
        die_errno("mmap vCPU %d run area", id);
    install_kick_handler();
    return v;
}

static void vcpu_ioctl(struct vcpu *v, unsigned long req, void *arg, const char *name)
{
    if (ioctl(v->fd, req, arg) < 0)
        die_errno("vCPU %d: %s", v->id, name);
}

static void setup_cpuid(struct vcpu *v)
{
    const struct kvm_cpuid2 *sup = v->vm->supported_cpuid;
    size_t sz = sizeof(*sup) + sup->nent * sizeof(sup->entries[0]);
    struct kvm_cpuid2 *c = malloc(sz);
    if (!c)
        die("out of memory");
    memcpy(c, sup, sz);
    c->nent = (uint32_t)cpuid_patch(c->entries, (int)c->nent, (int)c->nent, v->id, v->vm->ncpus,
                                    v->vm->tsc_deadline);
    vcpu_ioctl(v, KVM_SET_CPUID2, c, "KVM_SET_CPUID2");
    free(c);
}

static void setup_msrs(struct vcpu *v)
{
    static const struct {
        uint32_t index;
        uint64_t value;
    } boot_msrs[] = {
        {MSR_IA32_SYSENTER_CS, 0},
        {MSR_IA32_SYSENTER_ESP, 0},
        {MSR_IA32_SYSENTER_EIP, 0},
        {MSR_STAR, 0},
        {MSR_LSTAR, 0},
        {MSR_CSTAR, 0},
        {MSR_SYSCALL_MASK, 0},
        {MSR_KERNEL_GS_BASE, 0},
        {MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING},
        {MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WB},
    };
    size_t n = sizeof(boot_msrs) / sizeof(boot_msrs[0]);
    /* Set one at a time: an MSR this host's KVM lacks must not drop the others. */
    for (size_t i = 0; i < n; i++) {
        struct {
            struct kvm_msrs hdr;
            struct kvm_msr_entry e;
        } m = {.hdr.nmsrs = 1, .e = {.index = boot_msrs[i].index, .data = boot_msrs[i].value}};
        if (ioctl(v->fd, KVM_SET_MSRS, &m) != 1)
            debug_msg("vCPU %d: MSR 0x%x not settable (ignored)", v->id, boot_msrs[i].index);
    }
}

static void set_lapic_lvt(struct kvm_lapic_state *l, int reg, uint32_t mode)
{
    uint32_t val;
    memcpy(&val, &l->regs[reg], 4);
    val = (val & ~0x700u) | (mode << 8);
    memcpy(&l->regs[reg], &val, 4);
}

static void setup_lint(struct vcpu *v)
{
    struct kvm_lapic_state l;
    vcpu_ioctl(v, KVM_GET_LAPIC, &l, "KVM_GET_LAPIC");
    set_lapic_lvt(&l, APIC_LVT0, APIC_MODE_EXTINT);
    set_lapic_lvt(&l, APIC_LVT1, APIC_MODE_NMI);
    vcpu_ioctl(v, KVM_SET_LAPIC, &l, "KVM_SET_LAPIC");
}

static void flat_segment(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code64)
{
    *s = (struct kvm_segment){.base = 0,
                              .limit = 0xffffffff,
                              .selector = sel,
                              .type = type,
                              .present = 1,
                              .dpl = 0,
                              .db = code64 ? 0 : 1,
                              .s = 1,
                              .l = code64 ? 1 : 0,
                              .g = 1};
}

static void setup_boot_regs(struct vcpu *v)
{
    struct vm *vm = v->vm;
    struct kvm_sregs sregs;
    vcpu_ioctl(v, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
    struct kvm_regs regs = {.rflags = 0x2};

    if (vm->boot == BOOT_LINUX64) {
        flat_segment(&sregs.cs, 0x10, 0xb, true);
        flat_segment(&sregs.ds, 0x18, 0x3, false);
        sregs.cr3 = LAYOUT_PML4;
        sregs.cr4 = 0x20;       /* PAE */
        sregs.cr0 = 0x80000011; /* PG | ET | PE */
        sregs.efer = 0x500;     /* LME | LMA */
        regs.rsi = vm->boot_arg;
        regs.rsp = LAYOUT_BOOT_STACK;
    } else {
        flat_segment(&sregs.cs, 0x08, 0xb, false);
        flat_segment(&sregs.ds, 0x10, 0x3, false);
        sregs.cr0 = 0x11; /* ET | PE: 32-bit protected mode, paging off */
        sregs.cr4 = 0;
        sregs.efer = 0;
        regs.rax = MULTIBOOT_BOOTLOADER_MAGIC;
        regs.rbx = vm->boot_arg;
    }
    sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
    sregs.gdt.base = LAYOUT_GDT;
    sregs.gdt.limit = 5 * 8 - 1;
    sregs.tr =
        (struct kvm_segment){.base = 0, .limit = 0x67, .selector = 0x20, .type = 0xb, .present = 1};
    regs.rip = vm->entry;
    vcpu_ioctl(v, KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
    vcpu_ioctl(v, KVM_SET_REGS, &regs, "KVM_SET_REGS");

    struct kvm_fpu fpu = {.fcw = 0x37f, .mxcsr = 0x1f80};
    vcpu_ioctl(v, KVM_SET_FPU, &fpu, "KVM_SET_FPU");
}

void vcpu_setup_boot(struct vcpu *v)
{
    /* CPUID first: KVM decides which MSRs exist from it. */
    setup_cpuid(v);
    setup_msrs(v);
    setup_lint(v);
    /* APs stay in wait-for-SIPI, as the in-kernel LAPIC starts them; an incoming
     * migration brings every register itself. */
    if (v->id == 0 && v->vm->boot != BOOT_INCOMING)
        setup_boot_regs(v);
}

static void handle_io(struct vcpu *v)
{
    struct kvm_run *r = v->run;
    uint8_t *data = (uint8_t *)r + r->io.data_offset;
    bool is_write = r->io.direction == KVM_EXIT_IO_OUT;
    for (uint32_t i = 0; i < r->io.count; i++) {
        bus_dispatch(v->vm->pio, r->io.port, data, r->io.size, is_write);
        data += r->io.size;
    }
}

static void handle_mmio(struct vcpu *v)
{
    struct kvm_run *r = v->run;
    uint32_t len = r->mmio.len > 8 ? 8 : r->mmio.len;
    bus_dispatch(v->vm->mmio, r->mmio.phys_addr, r->mmio.data, len, r->mmio.is_write);
}

static void report_fatal(struct vcpu *v, const char *what)
{
    struct kvm_regs regs;
    unsigned long long rip = 0;
    if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0)
        rip = regs.rip;
    warn_msg("vCPU %d: %s at rip 0x%llx", v->id, what, rip);
    vm_request_stop(v->vm, 1);
}

/* Returns false when the vCPU thread should end. */
static bool handle_exit(struct vcpu *v)
{
    struct kvm_run *r = v->run;
    char what[96];
    switch (r->exit_reason) {
    case KVM_EXIT_IO:
        handle_io(v);
        v->io_pending = true;
        return true;
    case KVM_EXIT_MMIO:
        handle_mmio(v);
        v->io_pending = true;
        return true;
    case KVM_EXIT_INTR:
    case KVM_EXIT_IRQ_WINDOW_OPEN:
        return true;
    case KVM_EXIT_HLT:
        return true;
    case KVM_EXIT_SHUTDOWN:
        debug_msg("vCPU %d: guest shutdown (triple fault or reset)", v->id);
        events_post("RESET", "{\"source\":\"triple-fault\"}");
        vm_request_stop(v->vm, -1);
        return false;
    case KVM_EXIT_SYSTEM_EVENT:
        debug_msg("vCPU %d: system event %u", v->id, r->system_event.type);
        events_postf("RESET", "{\"source\":\"system-event\",\"type\":%u}", r->system_event.type);
        vm_request_stop(v->vm, -1);
        return false;
    case KVM_EXIT_INTERNAL_ERROR:
        snprintf(what, sizeof(what), "KVM internal error (suberror %u%s)", r->internal.suberror,
                 r->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ? ": emulation failure" : "");
        report_fatal(v, what);
        return false;
    case KVM_EXIT_FAIL_ENTRY:
        snprintf(what, sizeof(what), "VM entry failed (hardware reason 0x%llx)",
                 (unsigned long long)r->fail_entry.hardware_entry_failure_reason);
        report_fatal(v, what);
        return false;
    default:
        snprintf(what, sizeof(what), "unexpected KVM exit %u", r->exit_reason);
        report_fatal(v, what);
        return false;
    }
}

/* Lets KVM complete a half-done PIO/MMIO instruction without running further guest code. */
static void complete_pending_io(struct vcpu *v)
{
    if (!v->io_pending)
        return;
    v->run->immediate_exit = 1;
    if (ioctl(v->fd, KVM_RUN, 0) == 0 || errno != EINTR)
        debug_msg("vCPU %d: completing pending I/O did not return EINTR", v->id);
    v->run->immediate_exit = 0;
    v->io_pending = false;
}

static void park(struct vcpu *v)
{
    struct vm *vm = v->vm;
    complete_pending_io(v);
    pthread_mutex_lock(&vm->lock);
    vm->n_parked++;
    pthread_cond_broadcast(&vm->cond);
    while (atomic_load(&vm->pause_req) && !atomic_load(&vm->stopping))
        pthread_cond_wait(&vm->cond, &vm->lock);
    vm->n_parked--;
    pthread_mutex_unlock(&vm->lock);
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *v = arg;
    struct vm *vm = v->vm;
    char name[16];
    snprintf(name, sizeof(name), "vcpu%d", v->id);
    pthread_setname_np(pthread_self(), name);
    thread_role_enter(THREAD_ROLE_VCPU);
    tls_run = v->run;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIG_VCPU_KICK);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);

    for (;;) {
        if (atomic_load(&vm->stopping))
            break;
        if (atomic_load(&vm->pause_req)) {
            park(v);
            continue;
        }
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                /* KVM completed any pending PIO/MMIO before honouring immediate_exit. */
                v->run->immediate_exit = 0;
                v->io_pending = false;
                continue;
            }
            report_fatal(v, strerror(errno));
            break;
        }
        v->io_pending = false;
        if (!handle_exit(v))
            break;
    }
    complete_pending_io(v);
    tls_run = NULL;
    pthread_mutex_lock(&vm->lock);
    vm->n_threads--;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
    return NULL;
}

void vcpu_start(struct vcpu *v)
{
    int err = pthread_create(&v->thread, NULL, vcpu_thread, v);
    if (err)
        die("cannot start vCPU %d thread: %s", v->id, strerror(err));
    v->started = true;
}

void vcpu_kick(struct vcpu *v)
{
    if (v->started)
        pthread_kill(v->thread, SIG_VCPU_KICK);
}

void vcpu_join(struct vcpu *v)
{
    if (v->started) {
        pthread_join(v->thread, NULL);
        v->started = false;
    }
}

void vcpu_destroy(struct vcpu *v)
{
    if (!v)
        return;
    munmap(v->run, v->vm->run_size);
    close(v->fd);
    free(v);
}
