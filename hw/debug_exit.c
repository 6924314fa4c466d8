#include "hw/debug_exit.h"

#include <stdlib.h>
#include <string.h>

struct debug_exit {
    void (*exit_cb)(void *opaque, int status);
    void *opaque;
};

struct debug_exit *debug_exit_new(void (*exit_cb)(void *opaque, int status), void *opaque)
{
    struct debug_exit *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->exit_cb = exit_cb;
    d->opaque = opaque;
    return d;
}

void debug_exit_free(struct debug_exit *d)
{
    free(d);
}

/* Only the low byte of a wider write counts, so one access is one exit. */
void debug_exit_io(void *debug_exit, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct debug_exit *d = debug_exit;
    if (!is_write) {
        memset(data, 0xff, len);
        return;
    }
    if (len == 0 || !d->exit_cb)
        return;
    uint8_t v = data[0];
    if (offset == 0)
        d->exit_cb(d->opaque, (v << 1) | 1);
    else if (offset == 1)
        d->exit_cb(d->opaque, v);
}

/* ---- the device table entry (hw/device.h) ---- */

static void free_op(void *dev)
{
    debug_exit_free(dev);
}

const struct device_ops debug_exit_device = {
    .name = "debug-exit",
    .pio_base = DEBUG_EXIT_BASE,
    .pio_len = DEBUG_EXIT_LEN,
    .pio = debug_exit_io,
    .free = free_op,
};
