/* The checked guest-memory accessor, dirty tracking, size parsing, console escapes. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "app/console.h"
#include "util/guest_mem.h"
#include "util/size.h"

static uint8_t ram[64 * 4096];

static struct guest_mem small(void)
{
    struct guest_mem m;
    guest_mem_layout(&m, ram, sizeof(ram), 0xc0000000);
    return m;
}

Test(guest_mem, in_bounds_and_edges)
{
    struct guest_mem m = small();
    cr_assert_eq(gpa_ptr(&m, 0, 1), ram);
    cr_assert_eq(gpa_ptr(&m, sizeof(ram) - 8, 8), ram + sizeof(ram) - 8);
    cr_assert_null(gpa_ptr(&m, sizeof(ram) - 8, 9));
    cr_assert_null(gpa_ptr(&m, sizeof(ram), 1));
    cr_assert_null(gpa_ptr(&m, 0, 0), "empty ranges are refused");
}

Test(guest_mem, overflow_refused)
{
    struct guest_mem m = small();
    cr_assert_null(gpa_ptr(&m, UINT64_MAX, 2));
    cr_assert_null(gpa_ptr(&m, 8, UINT64_MAX));
    cr_assert_null(gpa_ptr(&m, UINT64_MAX - 4095, 8192));
}

Test(guest_mem, high_ram_above_4g)
{
    struct guest_mem m;
    guest_mem_layout(&m, (uint8_t *)0x10000, 5ULL << 30, 3ULL << 30);
    cr_assert_eq(m.low_size, 3ULL << 30);
    cr_assert_eq(m.high_size, 2ULL << 30);
    cr_assert_eq(gpa_to_offset(&m, 1ULL << 32, 4096), (int64_t)(3ULL << 30));
    cr_assert_eq(gpa_to_offset(&m, (3ULL << 30) + 4096, 1), -1, "hole is not RAM");
    cr_assert_eq(gpa_to_offset(&m, (3ULL << 30) - 4, 8), -1, "no straddling into the hole");
    cr_assert_eq(gpa_to_offset(&m, (1ULL << 32) + (2ULL << 30), 1), -1);
}

Test(guest_mem, writes_mark_dirty_and_collect_clears)
{
    struct guest_mem m = small();
    cr_assert_eq(guest_mem_dirty_enable(&m), 0);
    uint8_t data[10] = {1, 2, 3};
    cr_assert(gpa_write(&m, 4096 * 3 - 4, data, sizeof(data))); /* pages 2 and 3 */
    cr_assert_not(gpa_write(&m, sizeof(ram) - 4, data, sizeof(data)));
    uint8_t back[10];
    cr_assert(gpa_read(&m, 4096 * 3 - 4, back, sizeof(back)));
    cr_assert_eq(memcmp(back, data, sizeof(data)), 0);
    uint64_t bits[1] = {0};
    guest_mem_dirty_collect(&m, bits);
    cr_assert_eq(bits[0], (1ULL << 2) | (1ULL << 3));
    bits[0] = 0;
    guest_mem_dirty_collect(&m, bits);
    cr_assert_eq(bits[0], 0, "collect clears");
    (void)gpa_ptr(&m, 0, 4096);
    guest_mem_dirty_collect(&m, bits);
    cr_assert_eq(bits[0], 0, "reads do not dirty");
    free(m.dirty);
}

Test(size, suffixes_and_junk)
{
    uint64_t v;
    cr_assert_eq(parse_size("512M", &v), 0);
    cr_assert_eq(v, 512ULL << 20);
    cr_assert_eq(parse_size("2G", &v), 0);
    cr_assert_eq(v, 2ULL << 30);
    cr_assert_eq(parse_size("64k", &v), 0);
    cr_assert_eq(v, 64ULL << 10);
    cr_assert_eq(parse_size("1GiB", &v), 0);
    cr_assert_eq(v, 1ULL << 30);
    cr_assert_eq(parse_size("4096", &v), 0);
    cr_assert_eq(v, 4096);
    cr_assert_eq(parse_size("", &v), -1);
    cr_assert_eq(parse_size("-1G", &v), -1);
    cr_assert_eq(parse_size("12X", &v), -1);
    cr_assert_eq(parse_size("99999999999999999999", &v), -1);
    cr_assert_eq(parse_size("99999999999T", &v), -1, "overflow");
}

Test(console, ctrl_a_x_quits_and_ctrl_a_ctrl_a_is_literal)
{
    struct console_filter f = {0};
    uint8_t out[16];
    bool quit;
    const uint8_t in1[] = {'a', 0x01, 0x01, 'b'};
    size_t n = console_filter_input(&f, in1, sizeof(in1), out, &quit);
    cr_assert_not(quit);
    cr_assert_eq(n, 3);
    cr_assert_eq(memcmp(out,
                        "a\x01"
                        "b",
                        3),
                 0);
    const uint8_t in2[] = {'c', 0x01};
    n = console_filter_input(&f, in2, sizeof(in2), out, &quit);
    cr_assert_eq(n, 1);
    const uint8_t in3[] = {'x', 'd'}; /* escape spans two reads */
    n = console_filter_input(&f, in3, sizeof(in3), out, &quit);
    cr_assert(quit);
    cr_assert_eq(n, 0);
}
