#include "hw/pci.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/err.h"
#include "util/le.h"
#include "util/log.h"

#define CFG_SIZE 256

/* Legacy ISA devices live below 0xc000; the rest of the 64 KiB port space is ours. */
#define IO_ALLOC_BASE 0xc000
#define IO_ALLOC_END  0x10000
#define IO_LAST       0xffffULL
#define MEM32_LAST    0xffffffffULL

#define CONF1_ENABLE    0x80000000u
#define CONF1_EXT_REG   0x0f000000u /* AMD extended register bits: no such space here */
#define CONF1_BUS(a)    (((a) >> 16) & 0xff)
#define CONF1_SLOT(a)   (((a) >> 11) & 0x1f)
#define CONF1_FN(a)     (((a) >> 8) & 0x7)
#define CONF1_REG(a)    ((a)&0xfc)
#define CONF1_DATA_PORT 4

#define BRIDGE_VENDOR 0x1b36 /* Red Hat, as QEMU's host bridges: guests know it */
#define BRIDGE_DEVICE 0x0008
#define CLASS_BRIDGE  0x06

struct pci_bus {
    pthread_mutex_t lock; /* config space, BAR mappings and the conf1 address */
    struct bus *pio;
    struct bus *mmio;
    uint64_t mmio_base;
    uint64_t mmio_size;
    uint64_t mmio_next;
    uint64_t io_next;
    uint32_t conf1_addr;
    struct pci_dev *devs[PCI_MAX_DEVS];
    struct pci_dev bridge;
};

static uint32_t all_ones(uint32_t len)
{
    return len >= 4 ? 0xffffffffu : (1u << (8 * len)) - 1;
}

static bool cfg_range_ok(uint8_t slot, uint8_t fn, uint32_t off, uint32_t len)
{
    return slot < PCI_MAX_DEVS && fn == 0 && len >= 1 && len <= 4 && off < CFG_SIZE &&
           len <= CFG_SIZE - off;
}

/* ---- BARs ---- */

static uint32_t bar_reg(int i)
{
    return PCI_BASE_ADDRESS_0 + 4 * (uint32_t)i;
}

/* Address bits the guest may write; sizing reads back exactly these. */
static uint64_t bar_addr_mask(const struct pci_bar *b)
{
    uint64_t mask = ~(b->size - 1);
    switch (b->kind) {
    case PCI_BAR_IO:
        return mask & 0xfffffffcULL;
    case PCI_BAR_MEM32:
        return mask & 0xfffffff0ULL;
    case PCI_BAR_MEM64:
        return mask & ~0xfULL;
    default:
        return 0;
    }
}

static uint32_t bar_type_bits(enum pci_bar_kind kind)
{
    if (kind == PCI_BAR_IO)
        return PCI_BASE_ADDRESS_SPACE_IO;
    return kind == PCI_BAR_MEM64 ? PCI_BASE_ADDRESS_MEM_TYPE_64 : 0;
}

static uint64_t bar_decode(const struct pci_dev *d, int i)
{
    const struct pci_bar *b = &d->bar[i];
    uint64_t v = le32_get(&d->cfg[bar_reg(i)]);
    if (b->kind == PCI_BAR_MEM64)
        v |= (uint64_t)le32_get(&d->cfg[bar_reg(i + 1)]) << 32;
    return v & bar_addr_mask(b);
}

/* Mirrors config space onto the bus: called after every config write. */
static void bar_update(struct pci_bus *pb, struct pci_dev *d, int i)
{
    struct pci_bar *b = &d->bar[i];
    struct bus *bus = b->kind == PCI_BAR_IO ? pb->pio : pb->mmio;
    uint16_t cmd = (uint16_t)le16_get(&d->cfg[PCI_COMMAND]);
    bool enabled = cmd & (b->kind == PCI_BAR_IO ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY);
    uint64_t addr = bar_decode(d, i);
    /* 0 and the sizing pattern are not addresses a guest means to decode. */
    bool want = enabled && addr != 0 && addr != bar_addr_mask(b);

    if (b->mapped && (!want || addr != b->addr)) {
        bus_unregister(bus, b->addr);
        b->mapped = false;
    }
    if (want && !b->mapped) {
        int ret = bus_register(bus, addr, b->size, b->fn, b->opaque, "pci-bar");
        if (ret == 0)
            b->mapped = true;
        else
            debug_msg("pci %02x BAR%d at 0x%llx left unmapped (%d)", d->slot, i,
                      (unsigned long long)addr, ret);
    }
    b->addr = addr;
}

static void bars_update(struct pci_bus *pb, struct pci_dev *d)
{
    for (int i = 0; i < 6; i++)
        if (d->bar[i].kind != PCI_BAR_NONE)
            bar_update(pb, d, i);
}

static bool is_pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

static int bar_check(const struct pci_dev *d, int i)
{
    const struct pci_bar *b = &d->bar[i];
    switch (b->kind) {
    case PCI_BAR_NONE:
        return 0;
    case PCI_BAR_IO:
        if (b->size < 16 || b->size > IO_ALLOC_END - IO_ALLOC_BASE)
            return -EINVAL;
        break;
    case PCI_BAR_MEM32:
        if (b->size < 4096 || b->size > (MEM32_LAST + 1) / 2)
            return -EINVAL;
        break;
    case PCI_BAR_MEM64:
        if (b->size < 4096 || i == 5 || d->bar[i + 1].kind != PCI_BAR_NONE)
            return -EINVAL;
        break;
    default:
        return -EINVAL;
    }
    return is_pow2(b->size) && b->fn ? 0 : -EINVAL;
}

/* Next naturally aligned block inside [base, base+span) that ends at or below last. */
static int alloc_aligned(uint64_t *next, uint64_t base, uint64_t span, uint64_t size, uint64_t last,
                         uint64_t *out)
{
    uint64_t a = (*next + size - 1) & ~(size - 1);
    if (a < *next || a < base)
        return -ENOSPC;
    uint64_t used = a - base;
    /* a is a multiple of size, so a + (size - 1) cannot wrap. */
    if (used > span || size > span - used || a + (size - 1) > last)
        return -ENOSPC;
    *out = a;
    *next = a + size;
    return 0;
}

/* Like firmware: every BAR gets an address before the guest looks. */
static int bars_assign(struct pci_bus *pb, struct pci_dev *d, uint64_t addr[6])
{
    uint64_t io_next = pb->io_next, mmio_next = pb->mmio_next;
    for (int i = 0; i < 6; i++) {
        struct pci_bar *b = &d->bar[i];
        int ret = 0;
        if (b->kind == PCI_BAR_IO)
            ret = alloc_aligned(&io_next, IO_ALLOC_BASE, IO_ALLOC_END - IO_ALLOC_BASE, b->size,
                                IO_LAST, &addr[i]);
        else if (b->kind == PCI_BAR_MEM32)
            ret = alloc_aligned(&mmio_next, pb->mmio_base, pb->mmio_size, b->size, MEM32_LAST,
                                &addr[i]);
        else if (b->kind == PCI_BAR_MEM64)
            ret = alloc_aligned(&mmio_next, pb->mmio_base, pb->mmio_size, b->size, UINT64_MAX,
                                &addr[i]);
        if (ret)
            return ret;
    }
    pb->io_next = io_next;
    pb->mmio_next = mmio_next;
    return 0;
}

static void bar_init(struct pci_dev *d, int i, uint64_t addr)
{
    struct pci_bar *b = &d->bar[i];
    uint64_t mask = bar_addr_mask(b);
    uint32_t lo = (uint32_t)addr | bar_type_bits(b->kind);
    le_put(&d->wmask[bar_reg(i)], 4, (uint32_t)mask);
    le_put(&d->cfg[bar_reg(i)], 4, lo);
    if (b->kind == PCI_BAR_MEM64) {
        le_put(&d->wmask[bar_reg(i + 1)], 4, mask >> 32);
        le_put(&d->cfg[bar_reg(i + 1)], 4, addr >> 32);
    }
    b->addr = addr;
    b->mapped = false;
}

/* ---- bus and devices ---- */

struct pci_bus *pci_bus_new(struct bus *pio, struct bus *mmio, uint64_t mmio_base,
                            uint64_t mmio_size)
{
    struct pci_bus *pb = calloc(1, sizeof(*pb));
    if (!pb)
        return NULL;
    if (pthread_mutex_init(&pb->lock, NULL) != 0) {
        free(pb);
        return NULL;
    }
    pb->pio = pio;
    pb->mmio = mmio;
    pb->mmio_base = mmio_base;
    pb->mmio_size = mmio_size;
    pb->mmio_next = mmio_base;
    pb->io_next = IO_ALLOC_BASE;

    struct pci_dev *br = &pb->bridge;
    pci_cfg_set16(br, PCI_VENDOR_ID, BRIDGE_VENDOR);
    pci_cfg_set16(br, PCI_DEVICE_ID, BRIDGE_DEVICE);
    pci_set_class(br, (uint32_t)CLASS_BRIDGE << 16, 0);
    pb->devs[0] = br;
    return pb;
}

static void unmap_bars(struct pci_bus *pb, struct pci_dev *d)
{
    for (int i = 0; i < 6; i++) {
        struct pci_bar *b = &d->bar[i];
        if (b->mapped)
            bus_unregister(b->kind == PCI_BAR_IO ? pb->pio : pb->mmio, b->addr);
        b->mapped = false;
    }
}

void pci_bus_free(struct pci_bus *pb)
{
    if (!pb)
        return;
    for (int s = 0; s < PCI_MAX_DEVS; s++)
        if (pb->devs[s])
            unmap_bars(pb, pb->devs[s]);
    pthread_mutex_destroy(&pb->lock);
    free(pb);
}

void pci_remove_device(struct pci_bus *pb, struct pci_dev *d)
{
    pthread_mutex_lock(&pb->lock);
    for (int s = 0; s < PCI_MAX_DEVS; s++) {
        if (pb->devs[s] == d) {
            unmap_bars(pb, d);
            pb->devs[s] = NULL;
        }
    }
    pthread_mutex_unlock(&pb->lock);
}

int pci_add_device(struct pci_bus *pb, struct pci_dev *d)
{
    for (int i = 0; i < 6; i++) {
        int ret = bar_check(d, i);
        if (ret)
            return ret;
        if (d->bar[i].kind == PCI_BAR_MEM64)
            i++; /* the upper half is validated as NONE by bar_check */
    }

    pthread_mutex_lock(&pb->lock);
    int slot = 1;
    while (slot < PCI_MAX_DEVS && pb->devs[slot])
        slot++;
    uint64_t addr[6] = {0};
    int ret = slot < PCI_MAX_DEVS ? bars_assign(pb, d, addr) : -ENOSPC;
    if (ret) {
        pthread_mutex_unlock(&pb->lock);
        return ret;
    }

    /* Only the type-0 layout is implemented, so that is what the guest sees. */
    d->cfg[PCI_HEADER_TYPE] = 0;
    uint16_t cmd_wmask =
        PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE;
    d->wmask[PCI_COMMAND] |= (uint8_t)cmd_wmask;
    d->wmask[PCI_COMMAND + 1] |= (uint8_t)(cmd_wmask >> 8);
    d->wmask[PCI_INTERRUPT_LINE] = 0xff;
    for (int i = 0; i < 6; i++)
        if (d->bar[i].kind != PCI_BAR_NONE)
            bar_init(d, i, addr[i]);
    d->slot = (uint8_t)slot;
    pb->devs[slot] = d;
    bars_update(pb, d);
    pthread_mutex_unlock(&pb->lock);
    return 0;
}

/* ---- config space access ---- */

uint32_t pci_cfg_read(struct pci_bus *pb, uint8_t slot, uint8_t fn, uint32_t off, uint32_t len)
{
    if (!cfg_range_ok(slot, fn, off, len))
        return all_ones(len);
    uint32_t v = all_ones(len);
    pthread_mutex_lock(&pb->lock);
    const struct pci_dev *d = pb->devs[slot];
    if (d)
        v = le_get(&d->cfg[off], len);
    pthread_mutex_unlock(&pb->lock);
    return v;
}

void pci_cfg_write(struct pci_bus *pb, uint8_t slot, uint8_t fn, uint32_t off, uint32_t len,
                   uint32_t val)
{
    if (!cfg_range_ok(slot, fn, off, len))
        return;
    pthread_mutex_lock(&pb->lock);
    struct pci_dev *d = pb->devs[slot];
    if (!d) {
        pthread_mutex_unlock(&pb->lock);
        return;
    }
    for (uint32_t i = 0; i < len; i++) {
        uint8_t m = d->wmask[off + i];
        uint8_t b = (uint8_t)(val >> (8 * i));
        d->cfg[off + i] = (uint8_t)((d->cfg[off + i] & ~m) | (b & m));
    }
    bars_update(pb, d);
    void (*cb)(struct pci_dev *, uint32_t, uint32_t) = d->cfg_written;
    pthread_mutex_unlock(&pb->lock);
    /* Unlocked: the device may take its own locks or read config space back. */
    if (cb)
        cb(d, off, len);
}

/* ---- configuration mechanism #1 ---- */

static void conf1_data(struct pci_bus *pb, uint32_t lane, uint8_t *data, uint32_t len,
                       bool is_write)
{
    pthread_mutex_lock(&pb->lock);
    uint32_t a = pb->conf1_addr;
    pthread_mutex_unlock(&pb->lock);

    bool valid = (a & CONF1_ENABLE) && !(a & CONF1_EXT_REG) && CONF1_BUS(a) == 0;
    uint8_t slot = (uint8_t)CONF1_SLOT(a), fn = (uint8_t)CONF1_FN(a);
    uint32_t off = CONF1_REG(a) + lane;
    if (is_write) {
        if (valid)
            pci_cfg_write(pb, slot, fn, off, len, le_get(data, len));
    } else {
        le_put(data, len, valid ? pci_cfg_read(pb, slot, fn, off, len) : all_ones(len));
    }
}

void pci_conf1_io(void *pci_bus, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct pci_bus *pb = pci_bus;

    /* Only dword accesses hit the address register, so probes such as
     * Linux's byte write to 0xcfb cannot clobber it. */
    if (offset == 0 && len == 4) {
        pthread_mutex_lock(&pb->lock);
        if (is_write)
            pb->conf1_addr = le_get(data, 4);
        else
            le_put(data, 4, pb->conf1_addr);
        pthread_mutex_unlock(&pb->lock);
        return;
    }
    if (offset >= CONF1_DATA_PORT && len >= 1 && len <= 4 && offset - CONF1_DATA_PORT + len <= 4) {
        conf1_data(pb, (uint32_t)(offset - CONF1_DATA_PORT), data, len, is_write);
        return;
    }
    if (!is_write)
        for (uint32_t i = 0; i < len; i++)
            data[i] = 0xff;
}

/* ---- migration ---- */

#define PCI_STATE_VERSION 1

struct saved_dev {
    uint8_t slot;
    uint8_t cfg[CFG_SIZE];
};

void pci_bus_save(struct pci_bus *pb, struct mig_buf *b)
{
    pthread_mutex_lock(&pb->lock);
    uint8_t count = 0;
    for (int s = 0; s < PCI_MAX_DEVS; s++)
        count += pb->devs[s] != NULL;
    mig_put_u16(b, PCI_STATE_VERSION);
    mig_put_u32(b, pb->conf1_addr);
    mig_put_u8(b, count);
    for (int s = 0; s < PCI_MAX_DEVS; s++) {
        if (!pb->devs[s])
            continue;
        mig_put_u8(b, (uint8_t)s);
        mig_put_bytes(b, pb->devs[s]->cfg, CFG_SIZE);
    }
    pthread_mutex_unlock(&pb->lock);
}

/*
 * Checks one saved function against the one here. Lock held. Read-only bytes must match:
 * they describe the device (IDs, class, capabilities, BAR type and size), so a difference
 * means the other side ran a different device, and taking its bytes would lie to the guest.
 */
static int saved_dev_check(const struct pci_dev *d, const struct saved_dev *sd, char *err,
                           size_t errlen)
{
    uint32_t sv = le16_get(&sd->cfg[PCI_VENDOR_ID]), sdev = le16_get(&sd->cfg[PCI_DEVICE_ID]);
    uint32_t hv = le16_get(&d->cfg[PCI_VENDOR_ID]), hdev = le16_get(&d->cfg[PCI_DEVICE_ID]);
    if (sv != hv || sdev != hdev) {
        return err_set(err, errlen, "pci %02x: device %04x:%04x in the stream, %04x:%04x here",
                       sd->slot, sv, sdev, hv, hdev);
    }
    uint32_t sclass = le_get(&sd->cfg[PCI_CLASS_PROG], 3),
             hclass = le_get(&d->cfg[PCI_CLASS_PROG], 3);
    if (sclass != hclass) {
        return err_set(err, errlen, "pci %02x: class 0x%06x in the stream, 0x%06x here", sd->slot,
                       sclass, hclass);
    }
    for (int i = 0; i < 6; i++) {
        uint32_t reg = bar_reg(i), m = le32_get(&d->wmask[reg]);
        uint32_t sbar = le32_get(&sd->cfg[reg]), hbar = le32_get(&d->cfg[reg]);
        if ((sbar ^ hbar) & ~m) {
            return err_set(
                err, errlen,
                "pci %02x: BAR%d 0x%08x does not fit this BAR (fixed bits 0x%08x of 0x%08x)",
                sd->slot, i, sbar, hbar & ~m, ~m);
        }
    }
    for (uint32_t off = 0; off < CFG_SIZE; off++) {
        /* STATUS is status, not identity: a device that models it restores it itself. */
        if (off == PCI_STATUS || off == PCI_STATUS + 1)
            continue;
        if ((sd->cfg[off] ^ d->cfg[off]) & ~d->wmask[off]) {
            return err_set(err, errlen,
                           "pci %02x: read-only config byte 0x%02x is 0x%02x in the "
                           "stream, 0x%02x here",
                           sd->slot, off, sd->cfg[off], d->cfg[off]);
        }
    }
    return 0;
}

int pci_bus_load(struct pci_bus *pb, struct mig_cursor *c, char *err, size_t errlen)
{
    uint16_t version = mig_get_u16(c);
    if (c->bad) {
        return err_set(err, errlen, "pci: state truncated before version");
    }
    if (version != PCI_STATE_VERSION) {
        return err_set(err, errlen, "pci: state version %u, this nvmevm reads %u", version,
                       PCI_STATE_VERSION);
    }
    uint32_t conf1 = mig_get_u32(c); /* any value is one a guest could have written */
    uint8_t count = mig_get_u8(c);
    if (c->bad) {
        return err_set(err, errlen, "pci: state truncated in bus registers");
    }
    if (count > PCI_MAX_DEVS) {
        return err_set(err, errlen, "pci: %u devices exceed the bus's %d slots", count,
                       PCI_MAX_DEVS);
    }
    struct saved_dev *sd = calloc(count ? count : 1, sizeof(*sd));
    if (!sd) {
        return err_set(err, errlen, "pci: out of memory");
    }
    int ret = -1;
    for (unsigned i = 0; i < count; i++) {
        sd[i].slot = mig_get_u8(c);
        if (!mig_get_bytes(c, sd[i].cfg, CFG_SIZE)) {
            err_set(err, errlen, "pci: state truncated in device %u of %u", i + 1, count);
            goto out;
        }
        if (sd[i].slot >= PCI_MAX_DEVS) {
            err_set(err, errlen, "pci: slot %u beyond the bus's %d slots", sd[i].slot,
                    PCI_MAX_DEVS);
            goto out;
        }
        /* Ascending order makes duplicates impossible to miss. */
        if (i > 0 && sd[i].slot <= sd[i - 1].slot) {
            err_set(err, errlen, "pci: slot %u listed after slot %u (duplicate or unsorted)",
                    sd[i].slot, sd[i - 1].slot);
            goto out;
        }
    }
    if (!mig_cursor_done(c)) {
        err_set(err, errlen, "pci: %zu trailing bytes after state", c->len - c->pos);
        goto out;
    }

    pthread_mutex_lock(&pb->lock);
    bool in_stream[PCI_MAX_DEVS] = {false};
    for (unsigned i = 0; i < count; i++) {
        const struct pci_dev *d = pb->devs[sd[i].slot];
        if (!d) {
            err_set(err, errlen, "pci %02x: device %04x:%04x in the stream is not present here",
                    sd[i].slot, le16_get(&sd[i].cfg[PCI_VENDOR_ID]),
                    le16_get(&sd[i].cfg[PCI_DEVICE_ID]));
            pthread_mutex_unlock(&pb->lock);
            goto out;
        }
        if (saved_dev_check(d, &sd[i], err, errlen)) {
            pthread_mutex_unlock(&pb->lock);
            goto out;
        }
        in_stream[sd[i].slot] = true;
    }
    for (int s = 0; s < PCI_MAX_DEVS; s++) {
        const struct pci_dev *d = pb->devs[s];
        if (d && !in_stream[s]) {
            err_set(err, errlen, "pci %02x: device %04x:%04x here is missing from the stream", s,
                    le16_get(&d->cfg[PCI_VENDOR_ID]), le16_get(&d->cfg[PCI_DEVICE_ID]));
            pthread_mutex_unlock(&pb->lock);
            goto out;
        }
    }

    /* Commit: every check passed, nothing below can fail. */
    pb->conf1_addr = conf1;
    for (unsigned i = 0; i < count; i++) {
        struct pci_dev *d = pb->devs[sd[i].slot];
        for (uint32_t off = 0; off < CFG_SIZE; off++)
            d->cfg[off] =
                (uint8_t)((d->cfg[off] & ~d->wmask[off]) | (sd[i].cfg[off] & d->wmask[off]));
    }
    /* Unmap everything before mapping anything: otherwise a BAR moving onto an address that
     * another BAR is about to leave would find it still claimed and stay unmapped. */
    for (unsigned i = 0; i < count; i++) {
        struct pci_dev *d = pb->devs[sd[i].slot];
        for (int b = 0; b < 6; b++) {
            struct pci_bar *bar = &d->bar[b];
            if (bar->mapped)
                bus_unregister(bar->kind == PCI_BAR_IO ? pb->pio : pb->mmio, bar->addr);
            bar->mapped = false;
        }
    }
    for (unsigned i = 0; i < count; i++)
        bars_update(pb, pb->devs[sd[i].slot]);
    pthread_mutex_unlock(&pb->lock);

    /* Unlocked, as after guest writes: devices may read config space back. */
    for (unsigned i = 0; i < count; i++) {
        struct pci_dev *d = pb->devs[sd[i].slot];
        if (d->cfg_written)
            d->cfg_written(d, 0, CFG_SIZE);
    }
    ret = 0;
out:
    free(sd);
    return ret;
}

/* ---- the device table entry (hw/device.h) ---- */

static int save_op(void *dev, struct mig_buf *b, char *err, size_t errlen)
{
    pci_bus_save(dev, b);
    return 0;
}

static int load_op(void *dev, struct mig_cursor *c, char *err, size_t errlen)
{
    return pci_bus_load(dev, c, err, errlen);
}

static void free_op(void *dev)
{
    pci_bus_free(dev);
}

const struct device_ops pci_bus_device = {
    .name = "pci-conf1",
    .section = PCI_CONFIG_SECTION,
    .version = 1,
    .pio_base = PCI_CONF1_BASE,
    .pio_len = PCI_CONF1_LEN,
    .pio = pci_conf1_io,
    .save = save_op,
    .load = load_op,
    .free = free_op,
};
