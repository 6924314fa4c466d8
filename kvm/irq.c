#include "kvm/irq.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "util/log.h"

#define PIC_MASTER_PINS 8
#define ISA_IRQS        16
#define IOAPIC_PINS     24

static int commit(struct irq_router *r)
{
    size_t sz = sizeof(struct kvm_irq_routing) + r->nr * sizeof(struct kvm_irq_routing_entry);
    struct kvm_irq_routing *t = calloc(1, sz);
    if (!t)
        return -ENOMEM;
    t->nr = r->nr;
    memcpy(t->entries, r->entries, r->nr * sizeof(struct kvm_irq_routing_entry));
    int ret = ioctl(r->vm_fd, KVM_SET_GSI_ROUTING, t) < 0 ? -errno : 0;
    free(t);
    return ret;
}

static void add_irqchip(struct irq_router *r, unsigned gsi, unsigned chip, unsigned pin)
{
    struct kvm_irq_routing_entry *e = &r->entries[r->nr++];
    memset(e, 0, sizeof(*e));
    e->gsi = gsi;
    e->type = KVM_IRQ_ROUTING_IRQCHIP;
    e->u.irqchip.irqchip = chip;
    e->u.irqchip.pin = pin;
}

void irq_router_init(struct irq_router *r, int vm_fd)
{
    memset(r, 0, sizeof(*r));
    r->vm_fd = vm_fd;
    pthread_mutex_init(&r->lock, NULL);
    r->entries = calloc(IRQ_MAX_ROUTES, sizeof(struct kvm_irq_routing_entry));
    if (!r->entries)
        die("out of memory");
    /* The same table KVM starts with; KVM_SET_GSI_ROUTING replaces it wholesale. */
    for (unsigned gsi = 0; gsi < IOAPIC_PINS; gsi++) {
        if (gsi < ISA_IRQS)
            add_irqchip(r, gsi,
                        gsi < PIC_MASTER_PINS ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
                        gsi % PIC_MASTER_PINS);
        add_irqchip(r, gsi, KVM_IRQCHIP_IOAPIC, gsi);
    }
    r->next_gsi = IRQ_FIRST_MSI_GSI;
    int err = commit(r);
    if (err)
        die("KVM_SET_GSI_ROUTING: %s", strerror(-err));
}

static struct kvm_irq_routing_entry *find_msi(struct irq_router *r, unsigned gsi)
{
    for (unsigned i = 0; i < r->nr; i++)
        if (r->entries[i].gsi == gsi && r->entries[i].type == KVM_IRQ_ROUTING_MSI)
            return &r->entries[i];
    return NULL;
}

int irq_msi_alloc(struct irq_router *r, unsigned *gsi)
{
    pthread_mutex_lock(&r->lock);
    int fd = -1;
    if (r->nr >= IRQ_MAX_ROUTES)
        goto out;
    struct kvm_irq_routing_entry *e = &r->entries[r->nr++];
    memset(e, 0, sizeof(*e));
    e->gsi = r->next_gsi++;
    e->type = KVM_IRQ_ROUTING_MSI;
    if (commit(r) < 0) {
        r->nr--;
        goto out;
    }
    fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        goto out;
    struct kvm_irqfd irqfd = {.fd = (uint32_t)fd, .gsi = e->gsi};
    if (ioctl(r->vm_fd, KVM_IRQFD, &irqfd) < 0) {
        close(fd);
        fd = -1;
        goto out;
    }
    *gsi = e->gsi;
out:
    pthread_mutex_unlock(&r->lock);
    return fd;
}

int irq_msi_update(struct irq_router *r, unsigned gsi, uint64_t addr, uint32_t data)
{
    pthread_mutex_lock(&r->lock);
    int ret = -ENOENT;
    struct kvm_irq_routing_entry *e = find_msi(r, gsi);
    if (e) {
        e->u.msi.address_lo = (uint32_t)addr;
        e->u.msi.address_hi = (uint32_t)(addr >> 32);
        e->u.msi.data = data;
        ret = commit(r);
    }
    pthread_mutex_unlock(&r->lock);
    return ret;
}

void irq_line(struct irq_router *r, unsigned gsi, int level)
{
    struct kvm_irq_level l = {.irq = gsi, .level = (uint32_t)level};
    if (ioctl(r->vm_fd, KVM_IRQ_LINE, &l) < 0)
        warn_errno("KVM_IRQ_LINE %u", gsi);
}

void irq_router_free(struct irq_router *r)
{
    free(r->entries);
    r->entries = NULL;
    pthread_mutex_destroy(&r->lock);
}
