#include <criterion/criterion.h>
#include <string.h>

#include "hw/i8042.h"

#define DATA   0
#define STATUS 4
#define CMD    4
#define OBF    0x01
#define IBF    0x02

static int resets;
static struct i8042 *k;

static void count_reset(void *opaque)
{
    cr_assert_eq(opaque, &resets);
    resets++;
}

static void setup(void)
{
    resets = 0;
    k = i8042_new(count_reset, &resets);
    cr_assert_not_null(k);
}

static void teardown(void)
{
    i8042_free(k);
}

TestSuite(i8042, .init = setup, .fini = teardown, .timeout = 10);

static uint8_t in(unsigned port)
{
    uint8_t v = 0;
    i8042_io(k, port, &v, 1, false);
    return v;
}

static void out(unsigned port, uint8_t v)
{
    i8042_io(k, port, &v, 1, true);
}

/* Issues a command and returns its response, asserting one is pending. */
static uint8_t query(uint8_t cmd)
{
    out(CMD, cmd);
    cr_assert(in(STATUS)&OBF, "command 0x%02x gave no response", cmd);
    uint8_t v = in(DATA);
    cr_assert_eq(in(STATUS)&OBF, 0, "reading data clears OBF");
    return v;
}

Test(i8042, idle_status_has_no_buffer_full)
{
    cr_assert_eq(in(STATUS) & (OBF | IBF), 0);
    cr_assert_eq(in(DATA), 0);
}

Test(i8042, self_test_answers_0x55_once)
{
    cr_assert_eq(query(0xaa), 0x55);
    cr_assert_eq(in(DATA), 0, "the response is consumed");
}

Test(i8042, interface_tests_pass)
{
    cr_assert_eq(query(0xab), 0x00);
    cr_assert_eq(query(0xa9), 0x00);
}

Test(i8042, command_byte_round_trips)
{
    uint8_t initial = query(0x20);
    out(CMD, 0x60);
    cr_assert_eq(in(STATUS)&OBF, 0);
    out(DATA, (uint8_t)~initial);
    cr_assert_eq(query(0x20), (uint8_t)~initial);
}

Test(i8042, stray_data_does_not_change_command_byte)
{
    uint8_t initial = query(0x20);
    out(DATA, 0xf2); /* a keyboard command, not ours */
    cr_assert_eq(query(0x20), initial);
    out(CMD, 0x60);
    out(CMD, 0xad); /* a new command cancels the pending write */
    out(DATA, 0x00);
    cr_assert_eq(query(0x20), initial);
}

Test(i8042, enable_disable_give_no_response)
{
    const uint8_t cmds[] = {0xad, 0xae, 0xa7, 0xa8, 0x12, 0xd3};
    for (size_t i = 0; i < sizeof(cmds); i++) {
        out(CMD, cmds[i]);
        cr_assert_eq(in(STATUS)&OBF, 0, "command 0x%02x", cmds[i]);
    }
    cr_assert_eq(resets, 0);
}

Test(i8042, pulse_reset_line_resets)
{
    out(CMD, 0xfe);
    cr_assert_eq(resets, 1);
    out(CMD, 0xff); /* pulses nothing */
    cr_assert_eq(resets, 1);
}

Test(i8042, output_port_write_resets_only_with_bit0_clear)
{
    out(CMD, 0xd1);
    out(DATA, 0x03);
    cr_assert_eq(resets, 0);
    out(CMD, 0xd1);
    out(DATA, 0x02);
    cr_assert_eq(resets, 1);
    out(DATA, 0x00); /* no command pending: no reset */
    cr_assert_eq(resets, 1);
}

Test(i8042, other_ports_float)
{
    for (unsigned port = 1; port <= 3; port++) {
        out(port, 0xfe);
        cr_assert_eq(in(port), 0xff);
    }
    cr_assert_eq(resets, 0);
    cr_assert_eq(in(STATUS)&OBF, 0);
}

Test(i8042, wide_and_stray_accesses_do_not_crash)
{
    out(CMD, 0xaa);
    uint8_t r[4];
    i8042_io(k, DATA, r, 4, false);
    cr_assert_eq(r[0], 0x55);
    cr_assert_eq(r[1], 0xff);
    for (uint64_t off = 0; off < 8; off++)
        for (uint32_t len = 1; len <= 8; len++) {
            uint8_t d[8];
            memset(d, 0x01, sizeof(d)); /* odd values: no reset pulses */
            i8042_io(k, off, d, len, false);
            i8042_io(k, off, d, len, true);
        }
    cr_assert_eq(resets, 0);
}

Test(i8042, null_reset_callback_is_tolerated)
{
    struct i8042 *quiet = i8042_new(NULL, NULL);
    uint8_t v = 0xfe;
    i8042_io(quiet, CMD, &v, 1, true);
    i8042_free(quiet);
}
