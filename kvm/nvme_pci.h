/*
 * The NVMe PCI function: class 01:08:02 behind the host bridge, a 64-bit BAR0 with
 * the controller registers, doorbells, MSI-X table and PBA, INTx as a fallback, and a
 * dedicated I/O thread that runs the controller model (emu/) and its io_uring queues.
 */
#pragma once
#include <stdbool.h>

#include "emu/nvme.h"

struct vm;

struct nvme_pci_config {
    struct nvme_ctrl_config ctrl;
    unsigned poll_us; /* spin this long for new work before sleeping (0: never spin) */
};

struct nvme_pci;

/* Adds the function to vm's PCI bus; dies with a one-line error on failure. */
struct nvme_pci *nvme_pci_create(struct vm *vm, const struct nvme_pci_config *cfg);
/* Starts / stops the I/O thread. */
void nvme_pci_start(struct nvme_pci *n);
void nvme_pci_stop(struct nvme_pci *n);
void nvme_pci_free(struct nvme_pci *n);

/* Migration: stop the I/O thread and finish every storage request (completions posted,
 * interrupts raised), so the controller's state is complete in memory; and back. */
void nvme_pci_quiesce(struct nvme_pci *n);
void nvme_pci_resume(struct nvme_pci *n);
struct msix *nvme_pci_msix(struct nvme_pci *n);
struct nvme_ctrl *nvme_pci_ctrl(struct nvme_pci *n);
