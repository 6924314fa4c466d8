/* nvmevm fio's console splitter (app/fio_console.c): what reaches stdout is exactly fio's
 * output between the guest's marker lines, whatever the chunking and line endings. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <string.h>

#include "app/fio_console.h"

static void feed_in_pieces(struct fio_console *fc, const char *s, size_t piece)
{
    for (size_t off = 0, n = strlen(s); off < n; off += piece)
        fio_console_feed(fc, s + off, n - off < piece ? n - off : piece);
}

static const char console[] = "sandbox: ready after 2.5 s\r\n"
                              "[    0.68] ACPI BIOS Error (bug)\r\n"
                              "nvmevm-init: started\r\n"
                              "@@nvmevm-fio-begin@@\r\n"
                              "{\r\n"
                              "  \"jobs\" : []\r\n"
                              "}\r\n"
                              "@@nvmevm-fio-end 3@@\r\n"
                              "nvmevm-init: exit status 3\r\n";

Test(fio_console, only_fio_output_reaches_stdout_in_any_chunking, .init = cr_redirect_stdout)
{
    size_t pieces[] = {1, 3, 7, 64, sizeof(console)};
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
        struct fio_console fc = {.fio_status = -1};
        feed_in_pieces(&fc, console, pieces[i]);
        fio_console_flush(&fc);
        cr_assert(fc.saw_begin);
        cr_assert_not(fc.in_fio);
        cr_assert_eq(fc.fio_status, 3);
        cr_assert_eq(fc.ntail, 4, "the console lines outside fio's output are kept");
        cr_assert_str_eq(fc.tail[3], "nvmevm-init: exit status 3");
    }
    fflush(stdout);
    cr_assert_stdout_eq_str("{\n  \"jobs\" : []\n}\n{\n  \"jobs\" : []\n}\n{\n  \"jobs\" : []\n}\n"
                            "{\n  \"jobs\" : []\n}\n{\n  \"jobs\" : []\n}\n");
}

Test(fio_console, no_markers_means_no_fio_output, .init = cr_redirect_stdout)
{
    struct fio_console fc = {.fio_status = -1};
    feed_in_pieces(&fc, "nvmevm: no --kernel given and the default guest is not built\n", 5);
    fio_console_flush(&fc);
    cr_assert_not(fc.saw_begin);
    cr_assert_eq(fc.fio_status, -1);
    cr_assert_eq(fc.ntail, 1);
    fflush(stdout);
    cr_assert_stdout_eq_str("");
}

Test(fio_console, an_endless_line_is_cut_not_overflowed)
{
    struct fio_console fc = {.fio_status = -1};
    char big[20000];
    memset(big, 'x', sizeof(big));
    fio_console_feed(&fc, big, sizeof(big));
    fio_console_flush(&fc);
    cr_assert_geq(fc.ntail, 2, "split into bounded pieces");
    cr_assert_lt(fc.len, sizeof(fc.line));
}
