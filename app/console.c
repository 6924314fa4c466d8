#include "app/console.h"

#include <stdlib.h>
#include <termios.h>
#include <unistd.h>

#include "util/log.h"

#define CTRL_A 0x01

static struct termios saved;
static int saved_fd = -1;

void console_restore(void)
{
    if (saved_fd >= 0) {
        tcsetattr(saved_fd, TCSANOW, &saved);
        saved_fd = -1;
    }
}

void console_raw_mode(int fd)
{
    if (!isatty(fd) || tcgetattr(fd, &saved) < 0)
        return;
    struct termios raw = saved;
    /* Like cfmakeraw, but keep ISIG off too: Ctrl-C goes to the guest, Ctrl-A x quits. */
    raw.c_iflag &= ~(unsigned)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    raw.c_oflag &= ~(unsigned)OPOST;
    raw.c_lflag &= ~(unsigned)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    raw.c_cflag &= ~(unsigned)(CSIZE | PARENB);
    raw.c_cflag |= CS8;
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr(fd, TCSANOW, &raw) < 0)
        return;
    saved_fd = fd;
    atexit(console_restore);
    log_set_exit_hook(console_restore);
}

size_t console_filter_input(struct console_filter *f, const uint8_t *in, size_t n, uint8_t *out,
                            bool *quit)
{
    size_t o = 0;
    *quit = false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = in[i];
        if (f->escape) {
            f->escape = false;
            if (c == 'x' || c == 'X') {
                *quit = true;
                return o;
            }
            if (c == CTRL_A)
                out[o++] = CTRL_A;
            continue; /* unknown escapes are swallowed, as in QEMU */
        }
        if (c == CTRL_A) {
            f->escape = true;
            continue;
        }
        out[o++] = c;
    }
    return o;
}
