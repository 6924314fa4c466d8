/* MSI-X table, masks and pending bits. */
#include <criterion/criterion.h>
#include <string.h>

#include "hw/msix.h"

static int delivered[8];
static uint32_t last_data;
static int routes;

static void deliver(void *opaque, unsigned vec, uint64_t addr, uint32_t data)
{
    (void)opaque;
    (void)addr;
    delivered[vec]++;
    last_data = data;
}

static void route_changed(void *opaque, unsigned vec, uint64_t addr, uint32_t data, bool masked)
{
    (void)opaque, (void)vec, (void)addr, (void)data, (void)masked;
    routes++;
}

static const struct msix_ops ops = {deliver, route_changed};
static struct msix m;
static uint8_t cfg[256], wmask[256];

static void setup(void)
{
    memset(delivered, 0, sizeof(delivered));
    memset(cfg, 0, sizeof(cfg));
    memset(wmask, 0, sizeof(wmask));
    routes = 0;
    msix_init(&m, 8, &ops, NULL);
    msix_cap_build(&m, cfg, wmask, 0x40, 0, 0, 0x2000, 0x3000);
}

static void set_mc(uint16_t mc)
{
    memcpy(cfg + 0x42, &mc, 2);
    msix_cfg_written(&m, cfg);
}

static void w32(uint64_t off, uint32_t v)
{
    msix_table_io(&m, off, (uint8_t *)&v, 4, true);
}

static void program(unsigned vec, uint32_t data, bool masked)
{
    w32(vec * 16, 0xfee00000);
    w32(vec * 16 + 4, 0);
    w32(vec * 16 + 8, data);
    w32(vec * 16 + 12, masked ? 1 : 0);
}

TestSuite(msix, .init = setup);

Test(msix, capability_layout)
{
    cr_assert_eq(cfg[0x40], 0x11);
    uint16_t mc;
    memcpy(&mc, cfg + 0x42, 2);
    cr_assert_eq(mc & 0x7ff, 7, "table size N-1");
    uint32_t t, p;
    memcpy(&t, cfg + 0x44, 4);
    memcpy(&p, cfg + 0x48, 4);
    cr_assert_eq(t, 0x2000);
    cr_assert_eq(p, 0x3000);
    cr_assert_eq(wmask[0x43], 0xc0, "only enable and function mask are writable");
}

Test(msix, masked_until_enabled_then_pending_delivered)
{
    program(2, 0x41, false);
    msix_notify(&m, 2); /* MSI-X not enabled yet: pending */
    cr_assert_eq(delivered[2], 0);
    uint8_t pba = 0;
    msix_pba_io(&m, 0, &pba, 1, false);
    cr_assert_eq(pba, 1 << 2);
    set_mc(0x8000);
    cr_assert_eq(delivered[2], 1, "pending vector delivered on enable");
    cr_assert_eq(last_data, 0x41);
    msix_pba_io(&m, 0, &pba, 1, false);
    cr_assert_eq(pba, 0);
    msix_notify(&m, 2);
    cr_assert_eq(delivered[2], 2);
}

Test(msix, vector_and_function_mask)
{
    set_mc(0x8000);
    program(1, 0x50, true);
    msix_notify(&m, 1);
    cr_assert_eq(delivered[1], 0);
    w32(1 * 16 + 12, 0); /* unmask: pending fires */
    cr_assert_eq(delivered[1], 1);
    set_mc(0xc000); /* function mask */
    msix_notify(&m, 1);
    cr_assert_eq(delivered[1], 1);
    set_mc(0x8000);
    cr_assert_eq(delivered[1], 2);
}

Test(msix, hostile_accesses)
{
    uint8_t buf[8] = {0xaa};
    msix_table_io(&m, 8 * 16, buf, 4, false); /* past the table */
    cr_assert_eq(buf[0], 0);
    msix_table_io(&m, 2, buf, 4, true); /* misaligned: ignored */
    msix_table_io(&m, 0, buf, 2, true); /* 16-bit: ignored */
    msix_notify(&m, 100);               /* out of range */
    uint32_t v = 0xffffffff;
    w32(12, v);
    msix_table_io(&m, 12, (uint8_t *)&v, 4, false);
    cr_assert_eq(v, 1, "reserved vector-control bits read as zero");
    cr_assert_eq(routes, 0, "nothing changed, no route rebuild");
    program(0, 0x30, false);
    cr_assert_gt(routes, 0, "a new address/data rebuilds the route");
}
