/*
 * In-process migration round trip for kvm/vmstate.c (run by tests/guest/test-vmstate.sh):
 * boots a guest, pauses it mid-run, saves the KVM vCPU + VM state, creates a second VM in
 * this process, copies RAM and loads the state into it, destroys the first VM and resumes
 * the second; --hops repeats that. The guest's own checks (checksum expect=, timer ticks,
 * SMP results) then tell whether CPU state, LAPIC, irqchip and time survived. Device state
 * is not carried: the guest must be in a phase where only RAM and CPU state matter (the
 * tiny guest's ring-3 loops with a polled UART).
 *
 * Exit status: the guest's (as nvmevm run), 100 for a harness/state failure, 101 if the
 * guest finished before a migration could happen (retry with a shorter delay).
 */
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdnoreturn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kvm/boot.h"
#include "kvm/vcpu.h"
#include "kvm/vm.h"
#include "kvm/vmstate.h"
#include "util/buf.h"
#include "util/size.h"

#define HARNESS_FAIL  100
#define HARNESS_EARLY 101 /* the guest finished before a migration: too late to test */

struct opts {
    struct vm_config cfg;
    const char *out;
    const char *wait_for;
    int wait_count;
    int delay_ms;
    int hops;
    int timeout_s;
    bool hostile;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static noreturn void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static noreturn void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vmstate-harness: FAIL ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(HARNESS_FAIL);
}

/* How many times pattern occurs in the console log so far. */
static int count_in_log(const char *path, const char *pattern)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, pattern))
            n++;
    fclose(f);
    return n;
}

static struct vm *new_vm(const struct opts *o)
{
    struct vm *vm = calloc(1, sizeof(*vm));
    if (!vm)
        fail("out of memory");
    vm_create(vm, &o->cfg);
    /* The same kernel load as the source: CPUID and boot MSRs on every vCPU, which the
     * state load then overwrites (CPUID first). */
    struct boot_image img;
    boot_image_open(&img, &o->cfg);
    vm_load_kernel(vm, &img);
    boot_image_close(&img);
    return vm;
}

/* A load of any damaged copy must be refused before it reaches KVM. */
static void hostile_vcpu(struct vcpu *dst, const struct mig_buf *b)
{
    char err[200];
    struct mig_cursor c;
    uint8_t *copy = malloc(b->len);
    if (!copy)
        fail("out of memory");
    for (size_t l = 0; l < b->len; l++) {
        mig_cursor_init(&c, b->data, l);
        if (vmstate_load_vcpu(dst, &c, err, sizeof(err)) == 0)
            fail("vCPU state truncated to %zu of %zu bytes was accepted", l, b->len);
    }
    /* Walk the items and damage each length field, up and down. */
    size_t pos = 8;
    int items = 0;
    while (pos + 6 <= b->len) {
        uint16_t tag;
        uint32_t len;
        memcpy(&tag, b->data + pos, 2);
        memcpy(&len, b->data + pos + 2, 4);
        for (int d = -1; d <= 1; d += 2) {
            memcpy(copy, b->data, b->len);
            uint32_t bad = len + (uint32_t)d;
            memcpy(copy + pos + 2, &bad, 4);
            mig_cursor_init(&c, copy, b->len);
            if (vmstate_load_vcpu(dst, &c, err, sizeof(err)) == 0)
                fail("vCPU state with item %u length %u (real %u) was accepted", tag, bad, len);
        }
        if (tag == 0)
            break;
        /* Counts inside CPUID (tag 1) and MSRs (tag 12): absurd and off by one. */
        if (tag == 1 || tag == 12) {
            uint32_t cnt;
            memcpy(&cnt, b->data + pos + 6, 4);
            uint32_t bads[] = {cnt + 1, cnt - 1, 0xffffffffu, 0x10000000u};
            for (size_t k = 0; k < sizeof(bads) / sizeof(bads[0]); k++) {
                memcpy(copy, b->data, b->len);
                memcpy(copy + pos + 6, &bads[k], 4);
                mig_cursor_init(&c, copy, b->len);
                if (vmstate_load_vcpu(dst, &c, err, sizeof(err)) == 0)
                    fail("vCPU state with item %u count %u was accepted", tag, bads[k]);
            }
        }
        /* An MSR outside the allowlist (EFER, which nvmevm carries in sregs): refused. */
        uint32_t nmsr;
        memcpy(&nmsr, b->data + pos + 6, 4);
        if (tag == 12 && nmsr > 0) {
            uint32_t evil = 0xc0000080;
            memcpy(copy, b->data, b->len);
            memcpy(copy + pos + 10, &evil, 4);
            mig_cursor_init(&c, copy, b->len);
            if (vmstate_load_vcpu(dst, &c, err, sizeof(err)) == 0 ||
                !strstr(err, "not one nvmevm migrates"))
                fail("vCPU state with MSR 0x%x was not refused by the allowlist (%s)", evil, err);
            printf("vmstate-harness: %s\n", err);
        }
        pos += 6 + len;
        items++;
    }
    /* Wrong magic, version, vCPU index; a duplicated item; trailing garbage. */
    for (size_t off = 0; off < 8; off += 2) {
        memcpy(copy, b->data, b->len);
        copy[off] ^= 0x5a;
        mig_cursor_init(&c, copy, b->len);
        if (vmstate_load_vcpu(dst, &c, err, sizeof(err)) == 0)
            fail("vCPU state with header byte %zu changed was accepted", off);
    }
    uint8_t *big = malloc(b->len * 2);
    if (!big)
        fail("out of memory");
    memcpy(big, b->data, b->len);
    big[b->len] = 0;
    mig_cursor_init(&c, big, b->len + 1);
    if (vmstate_load_vcpu(dst, &c, err, sizeof(err)) == 0)
        fail("vCPU state with a trailing byte was accepted");
    free(big);
    free(copy);
    printf("vmstate-harness: %d items, %zu truncations and the damaged copies refused "
           "(last: %s)\n",
           items, b->len, err);
}

static void hostile_vm(struct vm *dst, const struct mig_buf *b)
{
    char err[200];
    struct mig_cursor c;
    for (size_t l = 0; l < b->len; l++) {
        mig_cursor_init(&c, b->data, l);
        if (vmstate_load_vm(dst, &c, err, sizeof(err)) == 0)
            fail("VM state truncated to %zu of %zu bytes was accepted", l, b->len);
    }
    printf("vmstate-harness: %zu truncations of the VM state refused (last: %s)\n", b->len, err);
}

struct watchdog {
    struct vm *volatile vm;
    int secs;
};

static void *watchdog_thread(void *arg)
{
    struct watchdog *w = arg;
    sleep((unsigned)w->secs);
    fprintf(stderr, "vmstate-harness: timeout after %d s\n", w->secs);
    fflush(NULL);
    _exit(124);
    return NULL;
}

/* Moves the guest from src into dst (created beforehand, not started); src is destroyed. */
static void migrate_once(const struct opts *o, struct vm *src, struct vm *dst, int hop)
{
    char err[200];
    double t0 = now_ms();
    vm_pause(src);
    if (atomic_load(&src->stopping)) {
        fprintf(stderr,
                "vmstate-harness: hop %d: the guest ended before the migration (status %d)\n", hop,
                src->exit_status);
        exit(HARNESS_EARLY);
    }
    struct mig_buf bvm, bcpu[VM_MAX_CPUS];
    mig_buf_init(&bvm);
    if (vmstate_save_vm(src, &bvm, err, sizeof(err)) < 0)
        fail("hop %d: save VM: %s", hop, err);
    size_t cpu_bytes = 0;
    for (int i = 0; i < src->ncpus; i++) {
        mig_buf_init(&bcpu[i]);
        if (vmstate_save_vcpu(src->vcpus[i], &bcpu[i], err, sizeof(err)) < 0)
            fail("hop %d: save vCPU %d: %s", hop, i, err);
        cpu_bytes += bcpu[i].len;
    }
    if (o->hostile && hop == 1) {
        hostile_vcpu(dst->vcpus[0], &bcpu[0]);
        hostile_vm(dst, &bvm);
    }
    if (src->mem.size != dst->mem.size)
        fail("RAM sizes differ");
    memcpy(dst->mem.host, src->mem.host, src->mem.size);

    struct mig_cursor c;
    mig_cursor_init(&c, bvm.data, bvm.len);
    if (vmstate_load_vm(dst, &c, err, sizeof(err)) < 0)
        fail("hop %d: load VM: %s", hop, err);
    for (int i = 0; i < dst->ncpus; i++) {
        mig_cursor_init(&c, bcpu[i].data, bcpu[i].len);
        if (vmstate_load_vcpu(dst->vcpus[i], &c, err, sizeof(err)) < 0)
            fail("hop %d: load vCPU %d: %s", hop, i, err);
        mig_buf_free(&bcpu[i]);
    }
    size_t vm_bytes = bvm.len;
    mig_buf_free(&bvm);

    vm_request_stop(src, 0);
    vm_join(src);
    vm_destroy(src);
    free(src);
    if (vmstate_kvmclock_ctrl(dst, err, sizeof(err)) < 0)
        fail("hop %d: %s", hop, err);
    vm_start(dst);
    printf("vmstate-harness: hop %d: vCPU state %zu bytes, VM state %zu bytes, downtime %.1f "
           "ms\n",
           hop, cpu_bytes, vm_bytes, now_ms() - t0);
    fflush(stdout);
}

static void usage(void)
{
    fprintf(stderr, "usage: vmstate_harness --kernel ELF --out LOG [--cpus N] [--mem SIZE]\n"
                    "  [--append CMDLINE] [--wait-for TEXT [--wait-count N]] [--delay-ms MS]\n"
                    "  [--hops N] [--timeout S] [--hostile]\n");
    exit(HARNESS_FAIL);
}

static void parse(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        {"kernel", required_argument, NULL, 'k'},     {"out", required_argument, NULL, 'o'},
        {"cpus", required_argument, NULL, 'c'},       {"mem", required_argument, NULL, 'm'},
        {"append", required_argument, NULL, 'a'},     {"wait-for", required_argument, NULL, 'w'},
        {"wait-count", required_argument, NULL, 'n'}, {"delay-ms", required_argument, NULL, 'd'},
        {"hops", required_argument, NULL, 'h'},       {"timeout", required_argument, NULL, 't'},
        {"hostile", no_argument, NULL, 'H'},          {NULL, 0, NULL, 0}};
    *o = (struct opts){.cfg = {.mem_size = 64ull << 20, .ncpus = 1, .console_out_fd = -1},
                       .wait_count = 1,
                       .hops = 1,
                       .timeout_s = 120};
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'k':
            o->cfg.kernel = optarg;
            break;
        case 'o':
            o->out = optarg;
            break;
        case 'c':
            o->cfg.ncpus = atoi(optarg);
            break;
        case 'm':
            if (parse_size(optarg, &o->cfg.mem_size) < 0)
                usage();
            break;
        case 'a':
            o->cfg.append = optarg;
            break;
        case 'w':
            o->wait_for = optarg;
            break;
        case 'n':
            o->wait_count = atoi(optarg);
            break;
        case 'd':
            o->delay_ms = atoi(optarg);
            break;
        case 'h':
            o->hops = atoi(optarg);
            break;
        case 't':
            o->timeout_s = atoi(optarg);
            break;
        case 'H':
            o->hostile = true;
            break;
        default:
            usage();
        }
    }
    if (!o->cfg.kernel || !o->out || o->cfg.ncpus < 1 || o->cfg.ncpus > VM_MAX_CPUS ||
        o->hops < 0 || o->timeout_s < 1)
        usage();
}

int main(int argc, char **argv)
{
    struct opts o;
    parse(argc, argv, &o);
    int fd = open(o.out, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        fail("%s: %m", o.out);
    o.cfg.console_out_fd = fd;
    /* As nvmevm's main thread: the vCPU kick signal is only for vCPU threads. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    struct watchdog w = {.secs = o.timeout_s};
    pthread_t wt;
    pthread_create(&wt, NULL, watchdog_thread, &w);

    struct vm *vm = new_vm(&o);
    /* Each destination is ready before its pause point: creating a VM takes a while in a
     * nested sandbox, longer than the whole SMP test. */
    struct vm *next = o.hops > 0 ? new_vm(&o) : NULL;
    vm_start(vm);
    if (o.wait_for) {
        double t0 = now_ms();
        while (count_in_log(o.out, o.wait_for) < o.wait_count) {
            if (atomic_load(&vm->stopping))
                fail("the guest ended before printing '%s' x%d", o.wait_for, o.wait_count);
            if (now_ms() - t0 > o.timeout_s * 1000.0)
                fail("no '%s' in the guest's output", o.wait_for);
            sleep_ms(2);
        }
    }
    for (int hop = 1; hop <= o.hops; hop++) {
        sleep_ms(o.delay_ms);
        migrate_once(&o, vm, next, hop);
        vm = next;
        next = hop < o.hops ? new_vm(&o) : NULL;
    }
    int status = vm_join(vm);
    vm_destroy(vm);
    free(vm);
    printf("vmstate-harness: guest exit status %d after %d hops\n", status, o.hops);
    return status;
}
