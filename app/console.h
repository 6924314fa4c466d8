/*
 * The host terminal as the guest's serial console: raw mode while the VM runs
 * (restored on every exit path), and QEMU's escape: Ctrl-A x quits, Ctrl-A
 * Ctrl-A sends a literal Ctrl-A.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct console_filter {
    bool escape; /* the previous byte was Ctrl-A */
};

/* Puts fd in raw mode if it is a terminal, and arranges restoring it at exit. */
void console_raw_mode(int fd);
void console_restore(void);

/* Copies in to out (out has room for n bytes), dropping escape sequences.
 * Sets *quit on Ctrl-A x and stops there. Returns the bytes written to out. */
size_t console_filter_input(struct console_filter *f, const uint8_t *in, size_t n, uint8_t *out,
                            bool *quit);
