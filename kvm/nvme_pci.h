/*
 * The NVMe PCI function: class 01:08:02 behind the host bridge, a 64-bit BAR0 with
 * the controller registers, doorbells, MSI-X table and PBA, INTx as a fallback, and a
 * dedicated I/O thread that runs the controller model (emu/) and its io_uring queues.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "emu/nvme.h"
#include "hw/device.h"

struct vm;

struct nvme_pci_config {
    struct nvme_ctrl_config ctrl;
    unsigned poll_us; /* spin this long for new work before sleeping (0: never spin) */
};

struct nvme_pci;

/* Migration section: the MSI-X state (length-prefixed), then the controller's. */
#define NVME_SECTION 0x80

/* Adds the function to vm's PCI bus; dies with a one-line error on failure. The VM adds it
 * to its device table (vm_add_nvme), which starts, quiesces, saves, loads and frees it. */
struct nvme_pci *nvme_pci_create(struct vm *vm, const struct nvme_pci_config *cfg);
extern const struct device_ops nvme_pci_device;

/* Starts the I/O thread: 0, or -1 with a reason. */
int nvme_pci_start(struct nvme_pci *n, char *err, size_t errlen);
void nvme_pci_stop(struct nvme_pci *n);
void nvme_pci_free(struct nvme_pci *n);
/* The controller model, for readers of its statistics (emu/nvme_stats.h). */
struct nvme_ctrl *nvme_pci_ctrl(struct nvme_pci *n);
/* Migration: stop the I/O thread and finish every storage request (completions posted,
 * interrupts raised), so the controller's state is complete in memory. */
void nvme_pci_quiesce(struct nvme_pci *n);
