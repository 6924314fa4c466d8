#include <criterion/criterion.h>

#include "hw/bus.h"
#include "hw/debug_exit.h"

static int exits;
static int last_status;
static struct debug_exit *d;

static void record_exit(void *opaque, int status)
{
    cr_assert_eq(opaque, &exits);
    exits++;
    last_status = status;
}

static void setup(void)
{
    exits = 0;
    last_status = -1;
    d = debug_exit_new(record_exit, &exits);
    cr_assert_not_null(d);
}

static void teardown(void)
{
    debug_exit_free(d);
}

TestSuite(debug_exit, .init = setup, .fini = teardown, .timeout = 10);

static void out(uint64_t off, uint8_t v)
{
    debug_exit_io(d, off, &v, 1, true);
}

Test(debug_exit, port_0x501_encodes_like_qemu)
{
    out(0, 0x10);
    cr_assert_eq(exits, 1);
    cr_assert_eq(last_status, 0x21);
    out(0, 0x00);
    cr_assert_eq(last_status, 1);
    out(0, 0xff);
    cr_assert_eq(last_status, 0x1ff);
}

Test(debug_exit, port_0x502_is_exact)
{
    out(1, 3);
    cr_assert_eq(exits, 1);
    cr_assert_eq(last_status, 3);
    out(1, 0);
    cr_assert_eq(last_status, 0);
    out(1, 0xff);
    cr_assert_eq(last_status, 255);
}

Test(debug_exit, wide_write_uses_low_byte_once)
{
    uint8_t v[4] = {0x07, 0x99, 0x99, 0x99};
    debug_exit_io(d, 0, v, 4, true);
    cr_assert_eq(exits, 1);
    cr_assert_eq(last_status, 0x0f);
    debug_exit_io(d, 1, v, 2, true);
    cr_assert_eq(exits, 2);
    cr_assert_eq(last_status, 0x07);
}

Test(debug_exit, reads_float_and_never_exit)
{
    uint8_t v[4] = {0};
    debug_exit_io(d, 0, v, 4, false);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(v[i], 0xff);
    debug_exit_io(d, 1, v, 1, false);
    cr_assert_eq(exits, 0);
}

Test(debug_exit, stray_offsets_and_empty_writes_are_ignored)
{
    uint8_t v = 1;
    debug_exit_io(d, 2, &v, 1, true);
    debug_exit_io(d, UINT64_MAX, &v, 1, true);
    debug_exit_io(d, 0, &v, 0, true);
    cr_assert_eq(exits, 0);
}

Test(debug_exit, reachable_through_the_io_bus)
{
    struct bus *pio = bus_new("pio");
    cr_assert_eq(bus_register(pio, DEBUG_EXIT_BASE, DEBUG_EXIT_LEN, debug_exit_io, d, "dbg"), 0);
    uint8_t v = 42;
    cr_assert(bus_dispatch(pio, 0x502, &v, 1, true));
    cr_assert_eq(last_status, 42);
    cr_assert(bus_dispatch(pio, 0x501, &v, 1, true));
    cr_assert_eq(last_status, 85);
    cr_assert_not(bus_dispatch(pio, 0x503, &v, 1, true));
    cr_assert_eq(exits, 2);
    bus_free(pio);
}
