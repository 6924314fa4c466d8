/* xAPIC at LAPIC_BASE, accessed by MMIO (mapped with the U bit: usable from ring 3). */
#pragma once
#include <stdint.h>

#define LAPIC_ID       0x020
#define LAPIC_SVR      0x0f0
#define LAPIC_ICR_LO   0x300
#define LAPIC_ICR_HI   0x310
#define LAPIC_LVT_TMR  0x320
#define LAPIC_TMR_INIT 0x380
#define LAPIC_TMR_CUR  0x390
#define LAPIC_TMR_DIV  0x3e0

#define ICR_INIT    0x00004500 /* INIT, level assert */
#define ICR_STARTUP 0x00004600 /* SIPI; | vector */
#define ICR_BUSY    0x00001000

uint32_t lapic_read(uint32_t reg);
void lapic_write(uint32_t reg, uint32_t v);
void lapic_enable(void);
uint32_t lapic_id(void);
/* Periodic timer at the APIC bus clock (1 GHz in KVM and QEMU), divide by 1. */
void lapic_timer_periodic(uint8_t vector, uint32_t count);
void lapic_timer_stop(void);
/* Send an IPI and wait (bounded) for delivery; 0 = delivered. */
int lapic_send_ipi(uint32_t apic_id, uint32_t icr_lo);
