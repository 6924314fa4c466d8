/*
 * The contract between a device and the VM that owns it. The VM keeps its devices in a
 * table, in creation order, and that order is the order of migration save and load, of
 * start, quiesce and post-load; free runs in reverse. A device describes itself here, beside
 * its state, so adding one touches only its own file and the one line that creates it
 * (kvm/vm.c: create_devices).
 *
 * Migration sections: one per device with state, named by the device's SECTION constant.
 * Ids 0x01-0x0f belong to the stream itself (configuration, RAM), 0x10-0x4f to the vCPUs,
 * 0x60 to the VM's in-kernel state; devices use 0x70 and up. The version is the section
 * header's; the VM refuses a section whose version differs before calling load.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "hw/bus.h"

struct mig_buf;
struct mig_cursor;

struct device_ops {
    const char *name;
    uint32_t section; /* migration section id; 0: nothing to migrate */
    uint16_t version; /* of that section's payload */
    /* Legacy port I/O at [pio_base, pio_base + pio_len) on the VM's PIO bus (len 0: none). */
    uint16_t pio_base, pio_len;
    bus_io_fn pio;
    /* All optional. save/load: the VM is paused and the device quiesced. */
    int (*save)(void *dev, struct mig_buf *b, char *err, size_t errlen);
    int (*load)(void *dev, struct mig_cursor *c, char *err, size_t errlen);
    /* Threads of its own: start (at boot, and resume after a failed migration) and quiesce
     * (stop them and finish every request in flight, so the state is complete in memory). */
    int (*start)(void *dev, char *err, size_t errlen);
    void (*quiesce)(void *dev);
    /* After every section is loaded: re-drive what the state implies (pending interrupts). */
    void (*post_load)(void *dev);
    void (*free)(void *dev);
};
