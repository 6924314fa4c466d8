/*
 * PCI bus 0 through configuration mechanism #1 (ports 0xcf8/0xcfc, usable from
 * ring 3), memory BARs placed in the uncached, user-mapped 3-4 GiB window, and
 * MSI-X set-up. Only the BSP touches configuration space.
 */
#pragma once
#include <stdint.h>

#define PCI_COMMAND       0x04
#define PCI_CMD_MEM       (1u << 1)
#define PCI_CMD_MASTER    (1u << 2)
#define PCI_CMD_INTX_OFF  (1u << 10)
#define PCI_CAP_MSIX      0x11
#define MMIO_WINDOW_START 0xc0000000ULL /* pd_high in multiboot.S: UC, U bit */
#define MMIO_WINDOW_END   0xfec00000ULL /* IOAPIC, LAPIC and firmware above */

struct pci_dev {
    uint8_t bus, dev, fn;
    uint16_t vendor, device;
    uint32_t class_rev; /* class << 24 | subclass << 16 | prog-if << 8 | revision */
};

uint32_t pci_read32(const struct pci_dev *d, unsigned off);
uint16_t pci_read16(const struct pci_dev *d, unsigned off);
void pci_write32(const struct pci_dev *d, unsigned off, uint32_t v);
void pci_write16(const struct pci_dev *d, unsigned off, uint16_t v);

/* index-th function on bus 0 whose class/subclass/prog-if is class24; 0 = found. */
int pci_find_class(uint32_t class24, unsigned index, struct pci_dev *out);
/* Offset of capability id in the list, 0 if absent. */
unsigned pci_find_cap(const struct pci_dev *d, uint8_t id);
/*
 * Address of memory BAR bar (64-bit aware). If unassigned or outside the
 * mapped 3-4 GiB window, size it and move it to a free spot there. Turns on
 * memory decoding. 0 = no usable memory BAR. *size gets its size.
 */
uint64_t pci_map_bar(const struct pci_dev *d, unsigned bar, uint64_t *size);
/* Test knob: place BARs as if no firmware had assigned them. */
extern int pci_force_reassign;
/* Page-table flags of the 4K/2M/1G mapping of va (walks the static tables), 0 if unmapped. */
uint64_t page_flags(uint64_t va);

struct msix {
    const struct pci_dev *dev;
    unsigned cap;             /* config offset of the capability */
    unsigned nvec;            /* table size */
    volatile uint32_t *table; /* 16 bytes per entry */
};
/* Enable MSI-X (function masked, all entries masked, INTx off). 0 = ok. */
int msix_init(const struct pci_dev *d, struct msix *m);
/* Entry idx -> fixed vector at apic_id, unmasked. */
void msix_route(const struct msix *m, unsigned idx, uint32_t apic_id, uint8_t vector);
/* Clear the function mask: interrupts start flowing. */
void msix_unmask(const struct msix *m);
