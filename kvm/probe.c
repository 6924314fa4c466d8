#include "kvm/probe.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "kvm/layout.h"
#include "util/err.h"

#define PROBE_MEM   0x10000
#define PROBE_CODE  0x1000
#define PROBE_ITERS 20000u

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

struct probe_vm {
    int kvm, vm, vcpu;
    struct kvm_run *run;
    size_t run_size;
    uint8_t *mem;
};

static void probe_close(struct probe_vm *p)
{
    if (p->run && p->run != MAP_FAILED)
        munmap(p->run, p->run_size);
    if (p->mem && p->mem != MAP_FAILED)
        munmap(p->mem, PROBE_MEM);
    if (p->vcpu >= 0)
        close(p->vcpu);
    if (p->vm >= 0)
        close(p->vm);
    if (p->kvm >= 0)
        close(p->kvm);
}

/* Real-mode loop: mov ecx, n; 1: dec ecx; jnz 1b; out 0x10, al; hlt */
static void write_loop(uint8_t *code, uint32_t n)
{
    uint8_t prog[] = {0x66, 0xb9, 0, 0, 0, 0, 0x66, 0x49, 0x75, 0xfc, 0xe6, 0x10, 0xf4};
    memcpy(prog + 2, &n, 4);
    memcpy(code, prog, sizeof(prog));
}

/* Runs the loop once from reset state; returns elapsed ns or -1. */
static double run_loop(struct probe_vm *p, uint32_t n, char *err, size_t errlen)
{
    write_loop(p->mem + PROBE_CODE, n);
    struct kvm_sregs s;
    if (ioctl(p->vcpu, KVM_GET_SREGS, &s) < 0)
        goto fail;
    s.cs.base = 0;
    s.cs.selector = 0;
    if (ioctl(p->vcpu, KVM_SET_SREGS, &s) < 0)
        goto fail;
    struct kvm_regs r = {.rip = PROBE_CODE, .rflags = 2};
    if (ioctl(p->vcpu, KVM_SET_REGS, &r) < 0)
        goto fail;
    double t0 = now_ns();
    if (ioctl(p->vcpu, KVM_RUN, 0) < 0)
        goto fail;
    double t1 = now_ns();
    if (p->run->exit_reason != KVM_EXIT_IO || p->run->io.port != 0x10) {
        return err_set(err, errlen, "probe guest stopped unexpectedly (KVM exit %u)",
                       p->run->exit_reason);
    }
    return t1 - t0;
fail:
    err_set(err, errlen, "probe VM: %s", strerror(errno));
    return -1;
}

int probe_ring0_speed(double *ns_per_iter, char *err, size_t errlen)
{
    struct probe_vm p = {.kvm = -1, .vm = -1, .vcpu = -1};
    int ret = -1;
    p.kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (p.kvm < 0 && errno == ENOENT) {
        return err_set(err, errlen, "this host has no /dev/kvm: guests cannot run here");
    }
    if (p.kvm < 0) {
        return err_set(err, errlen, "/dev/kvm: %s: guests cannot run here", strerror(errno));
    }
    p.vm = ioctl(p.kvm, KVM_CREATE_VM, 0);
    if (p.vm < 0) {
        err_set(err, errlen, "KVM_CREATE_VM: %s", strerror(errno));
        goto out;
    }
    ioctl(p.vm, KVM_SET_TSS_ADDR, (unsigned long)LAYOUT_TSS);
    p.mem = mmap(NULL, PROBE_MEM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p.mem == MAP_FAILED) {
        err_set(err, errlen, "mmap: %s", strerror(errno));
        goto out;
    }
    struct kvm_userspace_memory_region reg = {
        .slot = 0, .memory_size = PROBE_MEM, .userspace_addr = (uint64_t)(uintptr_t)p.mem};
    p.vcpu = -1;
    if (ioctl(p.vm, KVM_SET_USER_MEMORY_REGION, &reg) < 0 ||
        (p.vcpu = ioctl(p.vm, KVM_CREATE_VCPU, 0)) < 0) {
        err_set(err, errlen, "probe VM setup: %s", strerror(errno));
        goto out;
    }
    int rs = ioctl(p.kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    p.run_size = rs > 0 ? (size_t)rs : 0;
    p.run = mmap(NULL, p.run_size, PROT_READ | PROT_WRITE, MAP_SHARED, p.vcpu, 0);
    if (p.run == MAP_FAILED) {
        err_set(err, errlen, "mmap kvm_run: %s", strerror(errno));
        goto out;
    }
    double base = run_loop(&p, 1, err, errlen);
    double full = base < 0 ? -1 : run_loop(&p, PROBE_ITERS, err, errlen);
    if (full < 0)
        goto out;
    double d = full - base;
    *ns_per_iter = (d > 0 ? d : 0) / PROBE_ITERS;
    ret = 0;
out:
    probe_close(&p);
    return ret;
}

int probe_linux_capable(char *why, size_t whylen)
{
    double ns;
    char err[160];
    if (probe_ring0_speed(&ns, err, sizeof(err)) < 0) {
        snprintf(why, whylen, "%s", err);
        return -1;
    }
    if (ns > PROBE_SLOW_NS_PER_ITER) {
        snprintf(why, whylen,
                 "this host's /dev/kvm emulates guest ring-0 code (%.0f ns per loop iteration, "
                 "e.g. kvm_pvm): a Linux kernel cannot boot here",
                 ns);
        return 0;
    }
    snprintf(why, whylen,
             "this host's /dev/kvm runs guest ring-0 code in hardware (%.1f ns per loop "
             "iteration): Linux guests run directly",
             ns);
    return 1;
}

int probe_main(int argc, char **argv)
{
    bool quiet = argc > 1 && strcmp(argv[1], "--quiet") == 0;
    bool help = argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
    if (argc > 2 || (argc > 1 && !quiet && !help)) {
        fprintf(stderr, "nvmevm probe: unknown option %s (see nvmevm probe --help)\n",
                argv[argc > 2 && quiet ? 2 : 1]);
        return 2;
    }
    if (help) {
        printf("usage: nvmevm probe [--quiet]\n"
               "Times a short ring-0 loop in a throwaway VM to decide whether this host's\n"
               "/dev/kvm can run a Linux kernel. Exit status: 0 yes, 3 no (ring-0 code is\n"
               "emulated, as under kvm_pvm; no /dev/kvm; no permission to open it), 2 usage.\n");
        return 0;
    }
    char why[256];
    int ok = probe_linux_capable(why, sizeof(why));
    if (!quiet)
        printf("nvmevm: %s\n", why);
    return ok > 0 ? 0 : 3;
}
