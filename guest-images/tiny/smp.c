/*
 * test=smp cpus=N: the BSP (ring 3) copies the trampoline below 1 MiB and starts
 * APIC ids 1..N-1 with INIT + SIPI + SIPI. Each AP reaches ap_user_main() in
 * ring 3 (trampoline.S -> ap_main -> enter_user), reports, runs a short loop,
 * and halts. The BSP waits, bounded, for all of them. smp_start() is also used
 * by other tests (nvme) to run their own function on the APs.
 */
#include "lapic.h"
#include "tiny.h"

#define AP_LOOP_ITERS 1000000

static volatile uint32_t ap_online;
static volatile uint32_t ap_done;
static volatile uint64_t ap_result[MAX_CPUS];
static void (*volatile ap_fn)(unsigned cpu);

static void smp_test_ap(unsigned cpu)
{
    kprintf("tiny: cpu %u online apic=%u cpl=%u\n", cpu, lapic_id(), current_cpl());
    uint64_t r = ring3_loop(AP_LOOP_ITERS, cpu);
    ap_result[cpu] = r;
    kprintf("tiny: cpu %u ring3 loop done iters=%u result=0x%016lx\n", cpu, AP_LOOP_ITERS, r);
    atomic_inc32(&ap_done);
}

void ap_user_main(unsigned cpu)
{
    atomic_inc32(&ap_online);
    void (*fn)(unsigned) = ap_fn;
    (fn ? fn : smp_test_ap)(cpu);
    sys_halt();
}

int smp_start(uint32_t cpus, void (*fn)(unsigned cpu))
{
    uint32_t aps = cpus - 1;
    if (aps == 0)
        return 0;
    ap_fn = fn;
    memcpy((void *)(uintptr_t)TRAMPOLINE_ADDR, trampoline_start,
           (size_t)(trampoline_end - trampoline_start));
    lapic_enable();
    for (uint32_t id = 1; id <= aps; id++)
        if (lapic_send_ipi(id, ICR_INIT))
            fail(EXIT_TIMEOUT, "smp: INIT to apic %u not delivered", id);
    /*
     * The MP spec's 10 ms INIT-to-SIPI wait is for real hardware; KVM and QEMU
     * handle INIT then SIPI in order, so ~1 ms is plenty (and the second SIPI
     * covers a lost first one).
     */
    tsc_delay(TSC_PER_SEC_GUESS / 1000);
    for (int round = 0; round < 2; round++) {
        for (uint32_t id = 1; id <= aps; id++)
            if (lapic_send_ipi(id, ICR_STARTUP | (TRAMPOLINE_ADDR >> 12)))
                fail(EXIT_TIMEOUT, "smp: SIPI to apic %u not delivered", id);
        if (round == 0)
            tsc_delay(TSC_PER_SEC_GUESS / 5000); /* ~200 us */
    }
    return wait_u32_geq(&ap_online, aps, 10 * TSC_PER_SEC_GUESS);
}

int test_smp(const struct opts *o)
{
    uint32_t cpus = o->cpus ? (uint32_t)o->cpus : 2;
    if (o->cpus > MAX_CPUS || cpus < 1)
        fail(EXIT_BADARGS, "smp: cpus=%lu out of range 1..%u", o->cpus, MAX_CPUS);
    uint32_t aps = cpus - 1;
    uint64_t t0 = rdtsc();
    (void)smp_start(cpus, NULL);
    uint32_t self = lapic_id();
    if (wait_u32_geq(&ap_done, aps, 10 * TSC_PER_SEC_GUESS))
        fail(EXIT_TIMEOUT, "smp: only %u of %u APs online, %u done", ap_online, aps, ap_done);
    uint64_t dt = rdtsc() - t0;
    for (uint32_t c = 1; c <= aps; c++)
        if (ap_result[c] != ring3_loop(AP_LOOP_ITERS, c))
            fail(EXIT_FAIL, "smp: cpu %u result mismatch", c);
    kprintf("tiny: smp cpus=%u bsp_apic=%u online=%u tsc=%lu\n", cpus, self, ap_online + 1, dt);
    return 0;
}
