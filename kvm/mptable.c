#include "kvm/mptable.h"

#include <string.h>

#include "kvm/layout.h"

/* Record layouts from the MP specification, chapter 4. */
struct mp_floating {
    char signature[4]; /* "_MP_" */
    uint32_t config_ptr;
    uint8_t length; /* in 16-byte units */
    uint8_t spec_rev;
    uint8_t checksum;
    uint8_t feature[5];
} __attribute__((packed));

struct mp_config {
    char signature[4]; /* "PCMP" */
    uint16_t length;
    uint8_t spec_rev;
    uint8_t checksum;
    char oem[8];
    char product[12];
    uint32_t oem_ptr;
    uint16_t oem_size;
    uint16_t entry_count;
    uint32_t lapic_addr;
    uint16_t ext_length;
    uint8_t ext_checksum;
    uint8_t reserved;
} __attribute__((packed));

struct mp_cpu {
    uint8_t type; /* 0 */
    uint8_t apic_id;
    uint8_t apic_version;
    uint8_t flags; /* bit0 enabled, bit1 BSP */
    uint32_t signature;
    uint32_t features;
    uint32_t reserved[2];
} __attribute__((packed));

struct mp_bus {
    uint8_t type; /* 1 */
    uint8_t bus_id;
    char bus_type[6];
} __attribute__((packed));

struct mp_ioapic {
    uint8_t type; /* 2 */
    uint8_t id;
    uint8_t version;
    uint8_t flags;
    uint32_t addr;
} __attribute__((packed));

struct mp_intsrc {
    uint8_t type;     /* 3 = I/O interrupt, 4 = local interrupt */
    uint8_t irq_type; /* 0 INT, 1 NMI, 3 ExtINT */
    uint16_t flags;   /* polarity/trigger; 0 = conforms to the bus */
    uint8_t src_bus;
    uint8_t src_irq;
    uint8_t dst_apic;
    uint8_t dst_pin;
} __attribute__((packed));

_Static_assert(sizeof(struct mp_floating) == 16, "MP floating pointer is 16 bytes");
_Static_assert(sizeof(struct mp_config) == 44, "MP config header is 44 bytes");
_Static_assert(sizeof(struct mp_cpu) == 20, "MP processor entry is 20 bytes");
_Static_assert(sizeof(struct mp_bus) == 8, "MP bus entry is 8 bytes");
_Static_assert(sizeof(struct mp_ioapic) == 8, "MP IOAPIC entry is 8 bytes");
_Static_assert(sizeof(struct mp_intsrc) == 8, "MP interrupt entry is 8 bytes");

#define BUS_PCI       0
#define BUS_ISA       1
#define MP_IRQ_INT    0
#define MP_IRQ_NMI    1
#define MP_IRQ_EXTINT 3
/* PCI INTx: active low, level triggered. */
#define MP_FLAGS_PCI 0x000f

static uint8_t checksum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += p[i];
    return (uint8_t)(0 - s);
}

size_t mptable_build(uint8_t *buf, size_t buflen, uint32_t gpa, int ncpus,
                     const struct mptable_pci_irq *pci_irqs, int n_pci_irqs)
{
    if (ncpus < 1 || ncpus > MPTABLE_MAX_CPUS || n_pci_irqs < 0)
        return 0;
    size_t need = sizeof(struct mp_floating) + sizeof(struct mp_config) +
                  (size_t)ncpus * sizeof(struct mp_cpu) + 2 * sizeof(struct mp_bus) +
                  sizeof(struct mp_ioapic) + (16 + (size_t)n_pci_irqs + 2) * 8;
    if (need > buflen)
        return 0;
    memset(buf, 0, need);

    struct mp_floating *fp = (struct mp_floating *)buf;
    struct mp_config *cfg = (struct mp_config *)(buf + sizeof(*fp));
    uint8_t *p = (uint8_t *)(cfg + 1);
    uint16_t entries = 0;
    uint8_t ioapic_id = mptable_ioapic_id(ncpus);

    for (int i = 0; i < ncpus; i++) {
        struct mp_cpu c = {.type = 0,
                           .apic_id = (uint8_t)i,
                           .apic_version = 0x14,
                           .flags = (uint8_t)(1 | (i == 0 ? 2 : 0)),
                           .signature = 0x600,
                           .features = 0x201};
        memcpy(p, &c, sizeof(c));
        p += sizeof(c);
        entries++;
    }
    struct mp_bus pci = {.type = 1, .bus_id = BUS_PCI, .bus_type = {'P', 'C', 'I', ' ', ' ', ' '}};
    struct mp_bus isa = {.type = 1, .bus_id = BUS_ISA, .bus_type = {'I', 'S', 'A', ' ', ' ', ' '}};
    memcpy(p, &pci, 8);
    memcpy(p + 8, &isa, 8);
    p += 16;
    entries += 2;
    struct mp_ioapic io = {
        .type = 2, .id = ioapic_id, .version = 0x11, .flags = 1, .addr = (uint32_t)LAYOUT_IOAPIC};
    memcpy(p, &io, 8);
    p += 8;
    entries++;
    /* KVM's default routing wires ISA IRQ n to IOAPIC pin n (including the PIT on 0). */
    for (int irq = 0; irq < 16; irq++) {
        struct mp_intsrc s = {.type = 3,
                              .irq_type = MP_IRQ_INT,
                              .src_bus = BUS_ISA,
                              .src_irq = (uint8_t)irq,
                              .dst_apic = ioapic_id,
                              .dst_pin = (uint8_t)irq};
        memcpy(p, &s, 8);
        p += 8;
        entries++;
    }
    for (int i = 0; i < n_pci_irqs; i++) {
        struct mp_intsrc s = {.type = 3,
                              .irq_type = MP_IRQ_INT,
                              .flags = MP_FLAGS_PCI,
                              .src_bus = BUS_PCI,
                              .src_irq = (uint8_t)((pci_irqs[i].slot << 2) | (pci_irqs[i].pin & 3)),
                              .dst_apic = ioapic_id,
                              .dst_pin = pci_irqs[i].ioapic_pin};
        memcpy(p, &s, 8);
        p += 8;
        entries++;
    }
    /* Every local APIC: LINT0 is ExtINT (the 8259), LINT1 is NMI. */
    struct mp_intsrc lint0 = {
        .type = 4, .irq_type = MP_IRQ_EXTINT, .src_bus = BUS_ISA, .dst_apic = 0xff, .dst_pin = 0};
    struct mp_intsrc lint1 = {
        .type = 4, .irq_type = MP_IRQ_NMI, .src_bus = BUS_ISA, .dst_apic = 0xff, .dst_pin = 1};
    memcpy(p, &lint0, 8);
    memcpy(p + 8, &lint1, 8);
    p += 16;
    entries += 2;

    memcpy(cfg->signature, "PCMP", 4);
    cfg->length = (uint16_t)(p - (uint8_t *)cfg);
    cfg->spec_rev = 4;
    memcpy(cfg->oem, "NVMEVM  ", 8);
    memcpy(cfg->product, "NVMEVM 1.0  ", 12);
    cfg->entry_count = entries;
    cfg->lapic_addr = (uint32_t)LAYOUT_LAPIC;
    cfg->checksum = checksum((uint8_t *)cfg, cfg->length);

    memcpy(fp->signature, "_MP_", 4);
    fp->config_ptr = gpa + (uint32_t)sizeof(*fp);
    fp->length = 1;
    fp->spec_rev = 4;
    fp->checksum = checksum((uint8_t *)fp, sizeof(*fp));
    return (size_t)(p - buf);
}
