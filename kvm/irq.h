/*
 * KVM interrupt routing: the GSI table (irqchip pins plus MSI routes) and irqfds,
 * so device threads inject MSIs by writing an eventfd, without a vCPU or an ioctl.
 */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define IRQ_MAX_ROUTES    1024
#define IRQ_FIRST_MSI_GSI 24 /* 0-23 are the PIC/IOAPIC pins */

struct kvm_irq_routing_entry;

struct irq_router {
    int vm_fd;
    pthread_mutex_t lock;
    unsigned nr;
    struct kvm_irq_routing_entry *entries;
    unsigned next_gsi;
};

/* Installs KVM's default irqchip routes (ISA IRQs on PIC and IOAPIC, 16-23 on the IOAPIC)
 * so that later MSI routes can be added to the same table. Dies on error. */
void irq_router_init(struct irq_router *r, int vm_fd);
/* Frees the table (the routes die with the VM's fd). */
void irq_router_free(struct irq_router *r);
/* Allocates an MSI GSI with an irqfd bound to it; returns the eventfd, or -1. */
int irq_msi_alloc(struct irq_router *r, unsigned *gsi);
/* Points an MSI GSI at a new address/data. 0 or -errno. */
int irq_msi_update(struct irq_router *r, unsigned gsi, uint64_t addr, uint32_t data);
/* Raises (level 1) or lowers an IOAPIC/PIC input. */
void irq_line(struct irq_router *r, unsigned gsi, int level);
