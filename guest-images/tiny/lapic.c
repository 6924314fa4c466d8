/* Local APIC (xAPIC MMIO). Called from ring 3: each access is one MMIO exit. */
#include "lapic.h"
#include "tiny.h"

uint32_t lapic_read(uint32_t reg)
{
    return *(volatile uint32_t *)(uintptr_t)(LAPIC_BASE + reg);
}

void lapic_write(uint32_t reg, uint32_t v)
{
    *(volatile uint32_t *)(uintptr_t)(LAPIC_BASE + reg) = v;
}

void lapic_enable(void)
{
    lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS); /* APIC software enable */
}

uint32_t lapic_id(void)
{
    return lapic_read(LAPIC_ID) >> 24;
}

void lapic_timer_periodic(uint8_t vector, uint32_t count)
{
    lapic_write(LAPIC_TMR_DIV, 0xb);                 /* divide by 1 */
    lapic_write(LAPIC_LVT_TMR, (1u << 17) | vector); /* periodic, unmasked */
    lapic_write(LAPIC_TMR_INIT, count);
}

void lapic_timer_stop(void)
{
    lapic_write(LAPIC_LVT_TMR, 1u << 16); /* masked */
    lapic_write(LAPIC_TMR_INIT, 0);
}

int lapic_send_ipi(uint32_t apic_id, uint32_t icr_lo)
{
    lapic_write(LAPIC_ICR_HI, apic_id << 24);
    lapic_write(LAPIC_ICR_LO, icr_lo);
    for (unsigned i = 0; i < 1000000; i++)
        if (!(lapic_read(LAPIC_ICR_LO) & ICR_BUSY))
            return 0;
    return -1;
}

/*
 * TSC rate against the LAPIC timer, which counts at 1 GHz (divide by 1) in KVM
 * and QEMU: a masked one-shot count runs for ~10 ms of APIC time. Each LAPIC
 * read is an MMIO exit (a few us), small against 10 ms. Falls back to 3 GHz
 * if the timer does not move.
 */
#define CAL_APIC_TICKS 10000000u /* 10 ms at 1 GHz */

uint64_t tsc_mhz(void)
{
    static uint64_t mhz;
    if (mhz)
        return mhz;
    lapic_enable();
    uint32_t saved_lvt = lapic_read(LAPIC_LVT_TMR);
    lapic_write(LAPIC_TMR_DIV, 0xb);
    lapic_write(LAPIC_LVT_TMR, (1u << 16) | VEC_TIMER); /* masked, one-shot */
    lapic_write(LAPIC_TMR_INIT, 0xffffffffu);
    uint32_t c0 = lapic_read(LAPIC_TMR_CUR);
    uint64_t t0 = rdtsc(), t1 = t0;
    uint32_t c1 = c0;
    for (uint64_t i = 0; i < 100000000ULL; i++) {
        c1 = lapic_read(LAPIC_TMR_CUR);
        t1 = rdtsc();
        if (c0 - c1 >= CAL_APIC_TICKS || t1 - t0 > 2 * TSC_PER_SEC_GUESS)
            break;
    }
    lapic_write(LAPIC_TMR_INIT, 0);
    lapic_write(LAPIC_LVT_TMR, saved_lvt);
    uint64_t us = (uint64_t)(c0 - c1) / 1000;
    if (us < 1000 || t1 <= t0) {
        kprintf("tiny: note: LAPIC timer does not count, assuming a 3 GHz TSC\n");
        mhz = TSC_PER_SEC_GUESS / 1000000;
    } else {
        mhz = (t1 - t0) / us;
    }
    if (mhz == 0)
        mhz = 1;
    return mhz;
}
