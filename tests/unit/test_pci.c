#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "hw/pci.h"

#define MMIO_BASE 0xc0000000ULL
#define MMIO_SIZE 0x10000000ULL

#define REG_COMMAND  0x04
#define REG_CLASS    0x08
#define REG_BAR(i)   (0x10 + 4 * (i))
#define REG_INT_LINE 0x3c
#define CMD_IO       0x1
#define CMD_MEM      0x2

static struct bus *pio, *mmio;
static struct pci_bus *pb;

/* The BAR handler records where the bus delivered the access. */
struct bar_log {
    int calls;
    uint64_t offset;
    uint8_t tag;
};
static struct bar_log mem_log = {.tag = 0x3e}, io_log = {.tag = 0x10}, mem64_log = {.tag = 0x64};

static void bar_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct bar_log *l = opaque;
    l->calls++;
    l->offset = offset;
    if (!is_write)
        memset(data, l->tag, len);
}

static struct pci_dev dev;
static int cfg_writes;
static uint32_t cfg_last_off, cfg_last_len;

static void on_cfg_write(struct pci_dev *d, uint32_t off, uint32_t len)
{
    cr_assert_eq(d, &dev);
    cfg_writes++;
    cfg_last_off = off;
    cfg_last_len = len;
}

static void setup(void)
{
    pio = bus_new("pio");
    mmio = bus_new("mmio");
    pb = pci_bus_new(pio, mmio, MMIO_BASE, MMIO_SIZE);
    cr_assert_not_null(pb);
    cr_assert_eq(bus_register(pio, PCI_CONF1_BASE, PCI_CONF1_LEN, pci_conf1_io, pb, "conf1"), 0);

    memset(&dev, 0, sizeof(dev));
    mem_log.calls = io_log.calls = mem64_log.calls = 0;
    cfg_writes = 0;
    /* vendor 0x1af4, device 0x1234, class 0x010802 (NVMe), INTA# */
    dev.cfg[0] = 0xf4, dev.cfg[1] = 0x1a, dev.cfg[2] = 0x34, dev.cfg[3] = 0x12;
    dev.cfg[0x09] = 0x02, dev.cfg[0x0a] = 0x08, dev.cfg[0x0b] = 0x01;
    dev.cfg[0x3d] = 1;
    dev.bar[0] =
        (struct pci_bar){.kind = PCI_BAR_MEM32, .size = 0x4000, .fn = bar_io, .opaque = &mem_log};
    dev.bar[1] =
        (struct pci_bar){.kind = PCI_BAR_IO, .size = 0x20, .fn = bar_io, .opaque = &io_log};
    dev.bar[2] = (struct pci_bar){
        .kind = PCI_BAR_MEM64, .size = 0x10000, .fn = bar_io, .opaque = &mem64_log};
    dev.cfg_written = on_cfg_write;
}

static void teardown(void)
{
    pci_bus_free(pb);
    bus_free(pio);
    bus_free(mmio);
}

TestSuite(pci, .init = setup, .fini = teardown, .timeout = 10);

/* ---- port I/O as the guest does it ---- */

static void outl(uint16_t port, uint32_t v)
{
    uint8_t d[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    cr_assert(bus_dispatch(pio, port, d, 4, true));
}

static uint32_t in_n(uint16_t port, uint32_t len)
{
    uint8_t d[4] = {0};
    bus_dispatch(pio, port, d, len, false);
    return d[0] | d[1] << 8 | d[2] << 16 | (uint32_t)d[3] << 24;
}

static void out_n(uint16_t port, uint32_t len, uint32_t v)
{
    uint8_t d[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    bus_dispatch(pio, port, d, len, true);
}

static uint32_t conf1_addr(unsigned bus, unsigned slot, unsigned fn, unsigned reg)
{
    return 0x80000000u | bus << 16 | slot << 11 | fn << 8 | (reg & 0xfc);
}

static uint32_t cfg_in(unsigned slot, unsigned reg, uint32_t len)
{
    outl(0xcf8, conf1_addr(0, slot, 0, reg));
    return in_n((uint16_t)(0xcfc + (reg & 3)), len);
}

static void cfg_out(unsigned slot, unsigned reg, uint32_t len, uint32_t v)
{
    outl(0xcf8, conf1_addr(0, slot, 0, reg));
    out_n((uint16_t)(0xcfc + (reg & 3)), len, v);
}

static void add_dev(void)
{
    cr_assert_eq(pci_add_device(pb, &dev), 0);
    cr_assert_eq(dev.slot, 1);
}

static bool mmio_hits(uint64_t addr, struct bar_log *l)
{
    uint8_t v = 0;
    int before = l->calls;
    return bus_dispatch(mmio, addr, &v, 1, false) && l->calls == before + 1 && v == l->tag;
}

/* ---- conf1 ---- */

Test(pci, conf1_address_reads_back)
{
    outl(0xcf8, 0x80000000u);
    cr_assert_eq(in_n(0xcf8, 4), 0x80000000u);
    /* Linux's probe writes a byte to 0xcfb first: it must not touch the register. */
    out_n(0xcfb, 1, 0x01);
    cr_assert_eq(in_n(0xcf8, 4), 0x80000000u);
    outl(0xcf8, 0x12345678u);
    cr_assert_eq(in_n(0xcf8, 4), 0x12345678u);
}

Test(pci, host_bridge_ids)
{
    cr_assert_eq(cfg_in(0, 0x00, 4), 0x00081b36u);
    cr_assert_eq(cfg_in(0, REG_CLASS, 4) >> 8, 0x060000u);
    cr_assert_eq(cfg_in(0, 0x0e, 1) & 0x7f, 0x00, "header type 0");
}

Test(pci, device_ids_through_conf1)
{
    add_dev();
    cr_assert_eq(cfg_in(1, 0x00, 4), 0x12341af4u);
    cr_assert_eq(cfg_in(1, REG_CLASS, 4) >> 8, 0x010802u);
    cr_assert_eq(cfg_in(1, 0x3d, 1), 1);
}

Test(pci, missing_functions_read_all_ones)
{
    add_dev();
    cr_assert_eq(cfg_in(5, 0x00, 4), 0xffffffffu);
    cr_assert_eq(cfg_in(31, 0x00, 2), 0xffffu);
    outl(0xcf8, conf1_addr(1, 0, 0, 0));
    cr_assert_eq(in_n(0xcfc, 4), 0xffffffffu, "bus 1 does not exist");
    outl(0xcf8, conf1_addr(0, 1, 1, 0));
    cr_assert_eq(in_n(0xcfc, 4), 0xffffffffu, "function 1 does not exist");
    outl(0xcf8, conf1_addr(0, 1, 0, 0) & ~0x80000000u);
    cr_assert_eq(in_n(0xcfc, 4), 0xffffffffu, "enable bit clear");
    outl(0xcf8, conf1_addr(0, 1, 0, 0) | 0x01000000u);
    cr_assert_eq(in_n(0xcfc, 4), 0xffffffffu, "extended register space");
    cr_assert_eq(pci_cfg_read(pb, 7, 0, 0, 4), 0xffffffffu);
    cr_assert_eq(pci_cfg_read(pb, 40, 0, 0, 1), 0xffu);
}

Test(pci, sub_dword_accesses_use_the_right_lane)
{
    add_dev();
    cr_assert_eq(cfg_in(1, 0x00, 1), 0xf4);
    cr_assert_eq(cfg_in(1, 0x01, 1), 0x1a);
    cr_assert_eq(cfg_in(1, 0x02, 1), 0x34);
    cr_assert_eq(cfg_in(1, 0x03, 1), 0x12);
    cr_assert_eq(cfg_in(1, 0x02, 2), 0x1234);
    cr_assert_eq(cfg_in(1, 0x01, 2), 0x341a);

    cfg_out(1, REG_INT_LINE, 1, 11);
    cr_assert_eq(cfg_in(1, REG_INT_LINE, 2), 0x010b, "line written, pin intact");
    cfg_out(1, 0x3d, 1, 4);
    cr_assert_eq(cfg_in(1, 0x3d, 1), 1, "INTERRUPT_PIN is read-only");

    cfg_out(1, 0x05, 1, 0x04); /* INTx disable lives in the upper COMMAND byte */
    cr_assert_eq(cfg_in(1, REG_COMMAND, 2), 0x0400);
    cfg_out(1, REG_COMMAND, 2, 0xffff);
    cr_assert_eq(cfg_in(1, REG_COMMAND, 2), 0x0407);
}

Test(pci, ids_and_class_are_read_only)
{
    add_dev();
    cfg_out(1, 0x00, 4, 0);
    cfg_out(1, REG_CLASS, 4, 0);
    cr_assert_eq(cfg_in(1, 0x00, 4), 0x12341af4u);
    cr_assert_eq(cfg_in(1, REG_CLASS, 4) >> 8, 0x010802u);
    cfg_out(0, 0x00, 4, 0);
    cr_assert_eq(cfg_in(0, 0x00, 4), 0x00081b36u);
}

Test(pci, cfg_written_sees_every_guest_write)
{
    add_dev();
    cfg_out(1, 0x02, 2, 0xdead); /* read-only, but still reported */
    cr_assert_eq(cfg_writes, 1);
    cr_assert_eq(cfg_last_off, 0x02);
    cr_assert_eq(cfg_last_len, 2);
    cfg_out(1, REG_COMMAND, 4, CMD_MEM);
    cr_assert_eq(cfg_writes, 2);
    cr_assert_eq(cfg_last_off, REG_COMMAND);
    cr_assert_eq(cfg_last_len, 4);
}

/* ---- BARs ---- */

Test(pci, bars_get_aligned_addresses_and_type_bits)
{
    add_dev();
    uint32_t b0 = cfg_in(1, REG_BAR(0), 4);
    cr_assert_eq(b0 & 0xf, 0, "MEM32, non-prefetchable");
    cr_assert_geq(b0, MMIO_BASE);
    cr_assert_lt(b0, MMIO_BASE + MMIO_SIZE);
    cr_assert_eq(b0 & 0x3fff, 0);
    cr_assert_eq(dev.bar[0].addr, b0);

    uint32_t b1 = cfg_in(1, REG_BAR(1), 4);
    cr_assert_eq(b1 & 0x3, 1, "I/O BAR");
    cr_assert_geq(b1 & ~3u, 0xc000);
    cr_assert_eq((b1 & ~3u) % 0x20, 0);

    uint64_t b2 = (cfg_in(1, REG_BAR(2), 4) & ~0xfull) | (uint64_t)cfg_in(1, REG_BAR(3), 4) << 32;
    cr_assert_eq(cfg_in(1, REG_BAR(2), 4) & 0x6, 0x4, "64-bit memory");
    cr_assert_eq(b2 % 0x10000, 0);
    cr_assert_geq(b2, MMIO_BASE);
    cr_assert_lt(b2, MMIO_BASE + MMIO_SIZE);
    cr_assert(b2 + 0x10000 <= b0 || b0 + 0x4000 <= b2, "BARs must not overlap");
    cr_assert_eq(cfg_in(1, REG_BAR(4), 4), 0, "unused BAR");
}

Test(pci, bar_sizing_mem32)
{
    add_dev();
    uint32_t orig = cfg_in(1, REG_BAR(0), 4);
    cfg_out(1, REG_BAR(0), 4, 0xffffffffu);
    cr_assert_eq(cfg_in(1, REG_BAR(0), 4), 0xffffc000u);
    cfg_out(1, REG_BAR(0), 4, orig);
    cr_assert_eq(cfg_in(1, REG_BAR(0), 4), orig);
}

Test(pci, bar_sizing_io)
{
    add_dev();
    cfg_out(1, REG_BAR(1), 4, 0xffffffffu);
    cr_assert_eq(cfg_in(1, REG_BAR(1), 4), 0xffffffe1u);
}

Test(pci, bar_sizing_mem64_covers_both_halves)
{
    add_dev();
    cfg_out(1, REG_BAR(2), 4, 0xffffffffu);
    cfg_out(1, REG_BAR(3), 4, 0xffffffffu);
    cr_assert_eq(cfg_in(1, REG_BAR(2), 4), 0xffff0004u);
    cr_assert_eq(cfg_in(1, REG_BAR(3), 4), 0xffffffffu);
}

Test(pci, unused_bars_ignore_writes)
{
    add_dev();
    cfg_out(1, REG_BAR(4), 4, 0xffffffffu);
    cr_assert_eq(cfg_in(1, REG_BAR(4), 4), 0);
}

Test(pci, command_mem_maps_and_unmaps_mem_bars)
{
    add_dev();
    uint64_t b0 = dev.bar[0].addr, b2 = dev.bar[2].addr;
    cr_assert_not(mmio_hits(b0, &mem_log), "mapped before COMMAND.MEM");

    cfg_out(1, REG_COMMAND, 2, CMD_MEM);
    cr_assert(dev.bar[0].mapped);
    cr_assert(mmio_hits(b0 + 0x123, &mem_log));
    cr_assert_eq(mem_log.offset, 0x123);
    cr_assert(mmio_hits(b2 + 0xfff0, &mem64_log));
    cr_assert_eq(mem64_log.offset, 0xfff0);
    cr_assert_not(dev.bar[1].mapped, "I/O decode is still off");

    cfg_out(1, REG_COMMAND, 2, 0);
    cr_assert_not(dev.bar[0].mapped);
    cr_assert_not(mmio_hits(b0, &mem_log));
    cr_assert_not(mmio_hits(b2, &mem64_log));
}

Test(pci, command_io_maps_io_bar)
{
    add_dev();
    uint16_t port = (uint16_t)dev.bar[1].addr;
    uint8_t v = 0;
    cr_assert_not(bus_dispatch(pio, port, &v, 1, false));
    cfg_out(1, REG_COMMAND, 2, CMD_IO);
    cr_assert(bus_dispatch(pio, port + 5, &v, 1, false));
    cr_assert_eq(io_log.offset, 5);
    cr_assert_eq(v, io_log.tag);
    cr_assert_eq(mem_log.calls, 0);
    cfg_out(1, REG_COMMAND, 2, 0);
    cr_assert_not(bus_dispatch(pio, port, &v, 1, false));
}

Test(pci, moving_an_enabled_bar_remaps_it)
{
    add_dev();
    uint64_t old = dev.bar[0].addr;
    uint64_t moved = MMIO_BASE + 0x8000000;
    cfg_out(1, REG_COMMAND, 2, CMD_MEM);
    cfg_out(1, REG_BAR(0), 4, (uint32_t)moved);
    cr_assert_eq(dev.bar[0].addr, moved);
    cr_assert_not(mmio_hits(old, &mem_log));
    cr_assert(mmio_hits(moved + 4, &mem_log));
    cr_assert_eq(mem_log.offset, 4);

    /* Moving the upper half of a 64-bit BAR moves it too. */
    uint64_t b2 = dev.bar[2].addr;
    cfg_out(1, REG_BAR(3), 4, 0x1);
    cr_assert_not(mmio_hits(b2, &mem64_log));
    cr_assert(mmio_hits(b2 | 0x100000000ULL, &mem64_log));
}

Test(pci, sizing_while_enabled_does_not_map_the_mask)
{
    add_dev();
    cfg_out(1, REG_COMMAND, 2, CMD_MEM);
    cfg_out(1, REG_BAR(0), 4, 0xffffffffu);
    cr_assert_not(dev.bar[0].mapped);
    cr_assert_not(mmio_hits(0xffffc000u, &mem_log));
    cfg_out(1, REG_BAR(0), 4, 0);
    cr_assert_not(dev.bar[0].mapped, "address 0 means unassigned");
}

Test(pci, bar_over_another_device_stays_unmapped)
{
    struct bar_log other = {.tag = 0x99};
    add_dev();
    uint64_t b0 = dev.bar[0].addr;
    cr_assert_eq(bus_register(mmio, b0, 0x1000, bar_io, &other, "squatter"), 0);
    cfg_out(1, REG_COMMAND, 2, CMD_MEM);
    cr_assert_not(dev.bar[0].mapped);
    cr_assert(mmio_hits(b0, &other), "the existing claim wins");
    cfg_out(1, REG_COMMAND, 2, 0);
    cr_assert(mmio_hits(b0, &other), "disabling must not remove someone else's region");
}

Test(pci, direct_accessors_match_conf1)
{
    add_dev();
    cr_assert_eq(pci_cfg_read(pb, 1, 0, 0, 4), 0x12341af4u);
    cr_assert_eq(pci_cfg_read(pb, 1, 0, 2, 1), 0x34);
    pci_cfg_write(pb, 1, 0, REG_INT_LINE, 1, 5);
    cr_assert_eq(cfg_in(1, REG_INT_LINE, 1), 5);
    cr_assert_eq(pci_cfg_read(pb, 1, 0, 0xff, 2), 0xffff, "past the end");
    cr_assert_eq(pci_cfg_read(pb, 1, 1, 0, 4), 0xffffffffu);
}

Test(pci, hostile_conf1_accesses_do_not_crash)
{
    add_dev();
    const uint32_t addrs[] = {0, 0xffffffffu, 0x80000000u, 0x8000fffcu, 0x80ff0000u, 0x7fffffffu};
    for (size_t a = 0; a < sizeof(addrs) / sizeof(addrs[0]); a++)
        for (uint16_t port = 0xcf8; port < 0xd00; port++)
            for (uint32_t len = 1; len <= 8; len++) {
                uint8_t d[8];
                memset(d, 0xff, sizeof(d));
                outl(0xcf8, addrs[a]);
                bus_dispatch(pio, port, d, len, true);
                bus_dispatch(pio, port, d, len, false);
            }
    uint8_t d[8];
    pci_conf1_io(pb, 100, d, 8, false);
    cr_assert_eq(d[7], 0xff);
    pci_conf1_io(pb, 0, d, 2, false);
    cr_assert_eq(d[0], 0xff, "only dword accesses reach the address register");
}

/* ---- registration ---- */

Test(pci, bad_bars_are_rejected)
{
    struct pci_dev bad = {0};
    bad.bar[0] = (struct pci_bar){.kind = PCI_BAR_MEM32, .size = 0x3000, .fn = bar_io};
    cr_assert_eq(pci_add_device(pb, &bad), -EINVAL, "size not a power of two");
    bad.bar[0] = (struct pci_bar){.kind = PCI_BAR_MEM32, .size = 0x1000};
    cr_assert_eq(pci_add_device(pb, &bad), -EINVAL, "no handler");
    bad.bar[0] = (struct pci_bar){0};
    bad.bar[5] = (struct pci_bar){.kind = PCI_BAR_MEM64, .size = 0x1000, .fn = bar_io};
    cr_assert_eq(pci_add_device(pb, &bad), -EINVAL, "64-bit BAR needs a second slot");
    bad.bar[5] = (struct pci_bar){.kind = PCI_BAR_IO, .size = 4, .fn = bar_io};
    cr_assert_eq(pci_add_device(pb, &bad), -EINVAL, "I/O BAR too small");
    cr_assert_eq(cfg_in(1, 0, 4), 0xffffffffu, "nothing was added");
}

Test(pci, mmio_window_exhaustion_is_reported)
{
    /* Static: the bus keeps pointers to its devices until teardown. */
    static struct pci_dev big, more;
    big.bar[0] = (struct pci_bar){.kind = PCI_BAR_MEM32, .size = MMIO_SIZE, .fn = bar_io};
    cr_assert_eq(pci_add_device(pb, &big), 0);
    cr_assert_eq(big.bar[0].addr, MMIO_BASE);
    more.bar[0] = (struct pci_bar){.kind = PCI_BAR_MEM32, .size = 0x1000, .fn = bar_io};
    cr_assert_eq(pci_add_device(pb, &more), -ENOSPC);
}

Test(pci, slots_run_out_after_31_devices)
{
    static struct pci_dev devs[PCI_MAX_DEVS];
    for (int i = 1; i < PCI_MAX_DEVS; i++) {
        cr_assert_eq(pci_add_device(pb, &devs[i]), 0);
        cr_assert_eq(devs[i].slot, i);
    }
    cr_assert_eq(pci_add_device(pb, &devs[0]), -ENOSPC);
}

/* vm_destroy frees the NVMe function before the bus it sits on: once removed, the device
 * is gone from config space and its BARs from the buses, and the bus never touches it
 * again (ASan saw pci_bus_free read a freed device before pci_remove_device existed). */
Test(pci, removed_device_is_forgotten)
{
    add_dev();
    cfg_out(1, REG_COMMAND, 2, CMD_IO | CMD_MEM);
    uint16_t port = (uint16_t)dev.bar[1].addr;
    uint8_t v = 0;
    cr_assert(bus_dispatch(pio, port, &v, 1, false));
    pci_remove_device(pb, &dev);
    cr_assert_eq(cfg_in(1, 0x00, 4), 0xffffffffu);
    cr_assert_not(bus_dispatch(pio, port, &v, 1, false));
    cr_assert_not(dev.bar[0].mapped);
    memset(&dev, 0xa5, sizeof(dev)); /* what a freed device may hold */
}
