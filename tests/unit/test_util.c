/* The checked guest-memory accessor, dirty tracking, size parsing, console escapes. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/console.h"
#include "util/cpio.h"
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

Test(size, bare_numbers_in_mib_and_decimals)
{
    uint64_t v;
    cr_assert_eq(parse_size_unit("512", 20, &v), 0);
    cr_assert_eq(v, 512ULL << 20, "a bare --mem 512 is 512 MiB, as in QEMU");
    cr_assert_eq(parse_size_unit("1.5G", 20, &v), 0);
    cr_assert_eq(v, 1536ULL << 20);
    cr_assert_eq(parse_size_unit("0.5", 20, &v), 0);
    cr_assert_eq(v, 512ULL << 10);
    cr_assert_eq(parse_size_unit("4096B", 20, &v), 0);
    cr_assert_eq(v, 4096, "B means bytes whatever the bare unit");
    cr_assert_eq(parse_size_unit("2.25KiB", 20, &v), 0);
    cr_assert_eq(v, 2304);
    cr_assert_eq(parse_size_unit("0.1K", 20, &v), -1, "102.4 bytes is not a whole number");
    cr_assert_eq(parse_size_unit("1.", 20, &v), -1);
    cr_assert_eq(parse_size_unit(".5G", 20, &v), -1);
    cr_assert_eq(parse_size_unit("1.5.1G", 20, &v), -1);
    cr_assert_eq(parse_size_unit("17179869184G", 20, &v), -1, "overflow");
    cr_assert_eq(parse_size_unit("1.0000000000000000001G", 20, &v), -1, "too many digits");
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

/* The archive the guest gets must be one Linux and cpio(1) read back file by file. */
Test(cpio, archive_reads_back_with_cpio_tool)
{
    struct cpio c = {0};
    cr_assert_eq(cpio_add_dir(&c, "user", 0755), 0);
    cr_assert_eq(cpio_add_file(&c, "user/job.fio", 0644, "[j]\nrw=read\n", 12), 0);
    cr_assert_eq(cpio_add_file(&c, "user/empty", 0600, NULL, 0), 0);
    cr_assert_eq(cpio_add_file(&c, "/etc/passwd", 0644, "x", 1), -1, "absolute names refused");
    cr_assert_eq(cpio_add_file(&c, "", 0644, "x", 1), -1);
    cr_assert_eq(cpio_finish(&c), 0);
    cr_assert_eq(c.len % 4, 0);
    cr_assert_eq(memcmp(c.buf, "070701", 6), 0);

    char dir[] = "/tmp/nvmevm-cpio.XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[64], cmd[256];
    snprintf(path, sizeof(path), "%s/a.cpio", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(c.buf, 1, c.len, f), c.len);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "cd %s && cpio -i -d --quiet <a.cpio && cat user/job.fio", dir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char out[64] = {0};
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    cr_assert_eq(pclose(p), 0, "cpio(1) read the archive");
    cr_assert_eq(n, 12);
    cr_assert_str_eq(out, "[j]\nrw=read\n");
    struct stat st;
    snprintf(path, sizeof(path), "%s/user/empty", dir);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_size, 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    cpio_free(&c);
}
