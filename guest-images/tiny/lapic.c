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
