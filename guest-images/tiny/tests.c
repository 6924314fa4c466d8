/* The single-cpu tests. All of this runs in ring 3. */
#include "lapic.h"
#include "tiny.h"

#define WAIT_LOOP_CAP 20000000000ULL /* second bound, in case the TSC does not advance */

void tsc_delay(uint64_t cycles)
{
    uint64_t t0 = rdtsc();
    for (uint64_t i = 0; i < WAIT_LOOP_CAP && rdtsc() - t0 < cycles; i++)
        cpu_relax();
}

int wait_u32_geq(volatile uint32_t *p, uint32_t want, uint64_t tsc_budget)
{
    uint64_t t0 = rdtsc();
    for (uint64_t i = 0; i < WAIT_LOOP_CAP; i++) {
        if (*p >= want)
            return 0;
        if (rdtsc() - t0 > tsc_budget)
            break;
        cpu_relax();
    }
    return *p >= want ? 0 : -1;
}

/* A trivial dependent loop (~1 ns per iteration natively); the result proves it ran. */
uint64_t ring3_loop(uint64_t iters, uint64_t seed)
{
    uint64_t x = seed;
    for (uint64_t i = 0; i < iters; i++)
        x = x * 0x5851f42d4c957f2dULL + i;
    return x;
}

int test_hello(const struct opts *o)
{
    (void)o;
    unsigned cpl = current_cpl();
    kprintf("tiny: hello from ring %u\n", cpl);
    if (cpl != 3)
        fail(EXIT_FAIL, "hello: expected ring 3, running in ring %u", cpl);
    return 0;
}

/*
 * test=exits: cost of the VM exits a ring-3 device driver would take, in TSC
 * cycles per access: PIO read (COM1 LSR), PIO write (port 0x80, POST code),
 * LAPIC MMIO read (ID) and write (TPR).
 */
int test_exits(const struct opts *o)
{
    uint64_t n = o->iters ? o->iters : 1000;
    uint64_t t0 = rdtsc();
    for (uint64_t i = 0; i < n; i++)
        (void)inb(COM1 + 5);
    uint64_t t1 = rdtsc();
    for (uint64_t i = 0; i < n; i++)
        outb(0x80, 0);
    uint64_t t2 = rdtsc();
    for (uint64_t i = 0; i < n; i++)
        (void)lapic_read(LAPIC_ID);
    uint64_t t3 = rdtsc();
    for (uint64_t i = 0; i < n; i++)
        lapic_write(0x80 /* TPR */, 0);
    uint64_t t4 = rdtsc();
    kprintf("tiny: exits n=%lu tsc/op pio_in=%lu pio_out=%lu mmio_read=%lu mmio_write=%lu\n", n,
            (t1 - t0) / n, (t2 - t1) / n, (t3 - t2) / n, (t4 - t3) / n);
    return 0;
}

/* Deliberate #UD in ring 3: checks the exception path (expected exit code 64 + 6). */
int test_fault(const struct opts *o)
{
    (void)o;
    kprintf("tiny: raising #UD in ring 3 (expect exception vector=0x06)\n");
    __asm__ volatile("ud2");
    return 0;
}

/* test=reset [iters=MS]: after MS milliseconds (by the TSC, so the same wait under TCG),
 * the keyboard controller's reset pulse, as Linux's reboot=k does (the VMM ends with status
 * 0 and a RESET event). */
int test_reset(const struct opts *o)
{
    uint64_t until = rdtsc() + o->iters * tsc_mhz() * 1000;
    while (rdtsc() < until)
        __asm__ volatile("pause");
    kprintf("tiny: resetting through the i8042\n");
    outb(I8042_CMD, 0xfe);
    for (;;)
        __asm__ volatile("cli; hlt");
}

int test_ring3(const struct opts *o)
{
    uint64_t iters = o->iters ? o->iters : 10000000;
    uint64_t t0 = rdtsc();
    uint64_t r = ring3_loop(iters, 1);
    uint64_t dt = rdtsc() - t0;
    kprintf("tiny: ring3 loop done iters=%lu result=0x%016lx tsc=%lu cpl=%u\n", iters, r, dt,
            current_cpl());
    return 0;
}

int test_timer(const struct opts *o)
{
    uint64_t want = o->ticks ? o->ticks : 10;
    uint64_t period_us = o->period_us ? o->period_us : 1000;
    if (period_us > 4000000)
        fail(EXIT_BADARGS, "timer: period_us=%lu too large", period_us);

    lapic_enable();
    uint64_t start = timer_ticks;
    /* A hang guard, not a timing check: nested in a loaded TCG sandbox ticks come late. */
    uint64_t budget = (want * period_us / 1000000 + 60) * TSC_PER_SEC_GUESS;
    uint64_t t0 = rdtsc(), spins = 0, dt = 0;
    lapic_timer_periodic(VEC_TIMER, (uint32_t)(period_us * 1000)); /* 1 GHz APIC bus */
    while (timer_ticks - start < want && spins < WAIT_LOOP_CAP) {
        spins++;
        dt = rdtsc() - t0;
        if (dt > budget)
            break;
        cpu_relax();
    }
    dt = rdtsc() - t0;
    lapic_timer_stop();
    uint64_t got = timer_ticks - start;
    if (got < want)
        fail(EXIT_TIMEOUT, "timer: only %lu of %lu interrupts (tsc=%lu spins=%lu)", got, want, dt,
             spins);
    /* The APIC timer runs at 1 GHz in KVM and QEMU: this estimates the TSC rate. */
    kprintf("tiny: timer interrupts=%lu period_us=%lu tsc=%lu tsc_mhz~%lu spins=%lu\n", got,
            period_us, dt, dt / (want * period_us), spins);
    return 0;
}

/*
 * test=checksum: a long deterministic computation over registers and a 1 MiB
 * buffer, so that pausing/snapshotting the VM mid-run and resuming must keep
 * both CPU and memory state exact to reproduce the printed result.
 */
#define CK_WORDS (1u << 17) /* 1 MiB of uint64_t */
static uint64_t ck_buf[CK_WORDS];

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int test_checksum(const struct opts *o)
{
    uint64_t iters = o->iters ? o->iters : 100000000;
    uint64_t progress = o->progress;
    for (uint32_t i = 0; i < CK_WORDS; i++)
        ck_buf[i] = mix64(i);

    uint64_t h = 0x243f6a8885a308d3ULL, t0 = rdtsc();
    uint64_t next_report = progress ? progress : UINT64_MAX;
    for (uint64_t i = 0; i < iters; i++) {
        uint32_t idx = (uint32_t)(h >> 47); /* 17 bits */
        uint64_t w = ck_buf[idx] * 0x9e3779b97f4a7c15ULL + h;
        ck_buf[idx] = w;
        h = ((h ^ w) << 13 | (h ^ w) >> 51) + i;
        if (i + 1 == next_report) {
            kprintf("tiny: checksum progress i=%lu h=0x%016lx\n", i + 1, h);
            next_report += progress;
        }
    }
    for (uint32_t i = 0; i < CK_WORDS; i++)
        h = mix64(h ^ ck_buf[i]);
    uint64_t dt = rdtsc() - t0;
    kprintf("tiny: checksum iters=%lu result=0x%016lx tsc=%lu\n", iters, h, dt);
    if (o->have_expect && h != o->expect)
        fail(EXIT_MISMATCH, "checksum: result 0x%016lx != expect 0x%016lx", h, o->expect);
    return 0;
}
