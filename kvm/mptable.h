/*
 * Intel MultiProcessor Specification 1.4 table: how a Linux guest without ACPI
 * finds every CPU, the IOAPIC, and which IOAPIC pin each ISA/PCI interrupt uses.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define MPTABLE_MAX_CPUS    64
#define MPTABLE_IOAPIC_PINS 24

struct mptable_pci_irq {
    uint8_t slot; /* PCI device number on bus 0 */
    uint8_t pin;  /* 0 = INTA# .. 3 = INTD# */
    uint8_t ioapic_pin;
};

/* Builds the floating pointer + configuration table at buf, which the guest sees at gpa.
 * Returns the bytes used, or 0 if buf is too small or ncpus is out of range. */
size_t mptable_build(uint8_t *buf, size_t buflen, uint32_t gpa, int ncpus,
                     const struct mptable_pci_irq *pci_irqs, int n_pci_irqs);

/* The IOAPIC's MP-table id (after the CPUs' APIC ids 0..ncpus-1). */
static inline uint8_t mptable_ioapic_id(int ncpus)
{
    return (uint8_t)ncpus;
}
