/*
 * PCI bus 0 behind a host bridge, configuration mechanism #1 (0xCF8/0xCFC).
 * Devices are type-0 functions with up to 6 BARs; BARs are assigned addresses
 * at registration (like firmware would) and are mapped on the MMIO/PIO bus
 * only while the matching COMMAND bit (MEM/IO) is set, remapped when the guest
 * moves them.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/pci_regs.h>

#include "hw/bus.h"
#include "util/le.h"

#include "hw/device.h"

#define PCI_CONF1_BASE 0xcf8
#define PCI_CONF1_LEN  8
#define PCI_MAX_DEVS   32

enum pci_bar_kind { PCI_BAR_NONE = 0, PCI_BAR_MEM32, PCI_BAR_MEM64, PCI_BAR_IO };

struct pci_bar {
    enum pci_bar_kind kind; /* a MEM64 BAR also uses the next BAR slot */
    uint64_t size;          /* power of two, >= 16 (IO) or 4096 (MEM) */
    bus_io_fn fn;
    void *opaque;
    /* managed by pci.c */
    uint64_t addr;
    bool mapped;
};

struct pci_dev {
    uint8_t cfg[256];   /* config space; device code fills IDs, class, capabilities */
    uint8_t wmask[256]; /* bits the guest may write (pci.c sets COMMAND/BAR/INT_LINE) */
    struct pci_bar bar[6];
    /* Optional: called after the guest wrote config space (e.g. MSI-X enable). */
    void (*cfg_written)(struct pci_dev *d, uint32_t off, uint32_t len);
    void *opaque;
    /* managed by pci.c */
    uint8_t slot;
};

/* Config space by register name (<linux/pci_regs.h>), little-endian as the guest reads it. */
static inline void pci_cfg_set8(struct pci_dev *d, unsigned reg, uint8_t v)
{
    d->cfg[reg] = v;
}

static inline void pci_cfg_set16(struct pci_dev *d, unsigned reg, uint16_t v)
{
    le16_put(&d->cfg[reg], v);
}

static inline void pci_cfg_set32(struct pci_dev *d, unsigned reg, uint32_t v)
{
    le32_put(&d->cfg[reg], v);
}

static inline uint16_t pci_cfg_get16(const struct pci_dev *d, unsigned reg)
{
    return le16_get(&d->cfg[reg]);
}

/* Vendor and device id, repeated as the subsystem ids. */
static inline void pci_set_ids(struct pci_dev *d, uint16_t vendor, uint16_t device)
{
    pci_cfg_set16(d, PCI_VENDOR_ID, vendor);
    pci_cfg_set16(d, PCI_DEVICE_ID, device);
    pci_cfg_set16(d, PCI_SUBSYSTEM_VENDOR_ID, vendor);
    pci_cfg_set16(d, PCI_SUBSYSTEM_ID, device);
}

/* class: base class << 16 | subclass << 8 | programming interface. */
static inline void pci_set_class(struct pci_dev *d, uint32_t class_code, uint8_t revision)
{
    pci_cfg_set32(d, PCI_CLASS_REVISION, class_code << 8 | revision);
}

struct pci_bus;
struct mig_buf;
struct mig_cursor;

/* MMIO BARs are allocated from [mmio_base, mmio_base+mmio_size), IO BARs from 0xc000. */
struct pci_bus *pci_bus_new(struct bus *pio, struct bus *mmio, uint64_t mmio_base,
                            uint64_t mmio_size);
void pci_bus_free(struct pci_bus *pb);
/* Puts d in the next free slot (slot 0 is the host bridge). 0 or -errno. */
int pci_add_device(struct pci_bus *pb, struct pci_dev *d);
/* Takes d off the bus (its BARs unmapped), so d can be freed before the bus. */
void pci_remove_device(struct pci_bus *pb, struct pci_dev *d);
/* bus_io_fn for PCI_CONF1_BASE..+8. */
void pci_conf1_io(void *pci_bus, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);
/* Config space accessors used by conf1 and by unit tests (bus 0 only). */
uint32_t pci_cfg_read(struct pci_bus *pb, uint8_t slot, uint8_t fn, uint32_t off, uint32_t len);
void pci_cfg_write(struct pci_bus *pb, uint8_t slot, uint8_t fn, uint32_t off, uint32_t len,
                   uint32_t val);

/*
 * Migration (PCI_CONFIG_SECTION): the conf1 address and every function's config space.
 * Load needs the same devices in the same slots (vendor, device, class, read-only bytes and
 * BAR type/size bits equal), takes only guest-writable bits from the stream, remaps every
 * BAR as guest writes would, then calls each device's cfg_written(d, 0, 256) so the device
 * picks up config-held state (e.g. MSI-X Enable/Function Mask). Refusal: -1, a one-line
 * reason in err, bus unchanged.
 */
void pci_bus_save(struct pci_bus *pb, struct mig_buf *b);
int pci_bus_load(struct pci_bus *pb, struct mig_cursor *c, char *err, size_t errlen);

#define PCI_CONFIG_SECTION 0x73 /* migration section */
/* How the VM creates, saves, loads and frees it (hw/device.h). */
extern const struct device_ops pci_bus_device;
