#include "kvm/nvme_pci.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "hw/msix.h"
#include "hw/pci.h"
#include "kvm/irq.h"
#include "kvm/vm.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/le.h"
#include "util/log.h"
#include "util/thread_role.h"

/* BAR0: registers and doorbells (the model), then the MSI-X table and PBA. */
#define BAR0_MSIX_TABLE 0x2000
#define BAR0_MSIX_PBA   0x3000
#define MSIX_CAP_OFF    0x40
#define NVMEVM_VENDOR   0x1b36 /* Red Hat's range for virtual devices; device id our own */
#define NVMEVM_DEVICE   0x00f0
#define CLASS_NVME      0x010802

struct nvme_pci {
    struct vm *vm;
    struct pci_dev pdev;
    struct msix msix;
    struct nvme_ctrl *ctrl;
    unsigned gsi[NVME_NR_VECTORS];
    int irqfd[NVME_NR_VECTORS];
    unsigned intx_gsi;
    unsigned poll_us;

    pthread_t thread;
    bool running;
    atomic_bool stop;
    int kick_efd;
    int epfd;
    int watched[NVME_MAX_NAMESPACES]; /* storage completion fds already in epoll */
    int nwatched;

    /* Doorbells caught in the kernel (KVM_IOEVENTFD) while shadow doorbells are on. */
    int db_efd;
    pthread_mutex_t db_lock; /* db_base and shadow_on: vCPU threads and the I/O thread */
    uint64_t db_base;        /* guest address the ioeventfds are registered at; 0 = none */
    bool shadow_on;          /* as last reported by the model (host_shadow_changed) */
};

/* ---- interrupts ---- */

static void msix_deliver(void *opaque, unsigned vec, uint64_t addr, uint32_t data)
{
    struct nvme_pci *n = opaque;
    (void)addr;
    (void)data;
    uint64_t one = 1;
    if (n->irqfd[vec] >= 0 && write(n->irqfd[vec], &one, sizeof(one)) < 0 && errno != EAGAIN)
        warn_errno("irqfd write (vector %u)", vec);
}

static void msix_route(void *opaque, unsigned vec, uint64_t addr, uint32_t data, bool masked)
{
    struct nvme_pci *n = opaque;
    (void)masked;
    if (n->irqfd[vec] >= 0)
        irq_msi_update(&n->vm->irq, n->gsi[vec], addr, data);
}

static const struct msix_ops msix_ops = {.deliver = msix_deliver, .route_changed = msix_route};

static void host_msix_notify(void *opaque, uint16_t vector)
{
    struct nvme_pci *n = opaque;
    msix_notify(&n->msix, vector);
}

static void host_intx_set(void *opaque, int level)
{
    struct nvme_pci *n = opaque;
    if (pci_cfg_get16(&n->pdev, PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE)
        level = 0;
    irq_line(&n->vm->irq, n->intx_gsi, level);
}

static void host_kick(void *opaque)
{
    struct nvme_pci *n = opaque;
    uint64_t one = 1;
    if (write(n->kick_efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        warn_errno("I/O thread kick");
}

static void update_doorbell_eventfds_locked(struct nvme_pci *n);

/* Runs under the controller's lock, before the guest can see shadow doorbells go off
 * (a reset's RDY=0): the ioeventfds are gone before its next MMIO doorbell write, which
 * must reach the model because only MMIO carries the SQ tail then. Updating them from the
 * I/O thread after epoll_wait, as before, left them in place for as long as the thread
 * kept finding work or spun polling, and KVM swallowed the SQ tails written meanwhile.
 * KVM_IOEVENTFD from here cannot deadlock: vCPUs waiting on the controller's lock are in
 * userspace, outside the kernel's SRCU read side that the deassign waits for. */
static void host_shadow_changed(void *opaque, bool on)
{
    struct nvme_pci *n = opaque;
    pthread_mutex_lock(&n->db_lock);
    n->shadow_on = on;
    update_doorbell_eventfds_locked(n);
    pthread_mutex_unlock(&n->db_lock);
}

static const struct nvme_host_ops host_ops = {.msix_notify = host_msix_notify,
                                              .intx_set = host_intx_set,
                                              .kick = host_kick,
                                              .shadow_changed = host_shadow_changed};

/* ---- BAR0 and config space ---- */

static uint64_t le_load(const uint8_t *d, uint32_t len)
{
    uint64_t v = 0;
    for (uint32_t i = 0; i < len && i < 8; i++)
        v |= (uint64_t)d[i] << (8 * i);
    return v;
}

static void le_store(uint8_t *d, uint32_t len, uint64_t v)
{
    for (uint32_t i = 0; i < len && i < 8; i++)
        d[i] = (uint8_t)(v >> (8 * i));
}

static void bar0_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
    struct nvme_pci *n = opaque;
    if (off >= BAR0_MSIX_PBA) {
        msix_pba_io(&n->msix, off - BAR0_MSIX_PBA, data, len, is_write);
    } else if (off >= BAR0_MSIX_TABLE) {
        msix_table_io(&n->msix, off - BAR0_MSIX_TABLE, data, len, is_write);
    } else if (is_write) {
        nvme_ctrl_mmio_write(n->ctrl, off, le_load(data, len), len);
    } else {
        le_store(data, len, nvme_ctrl_mmio_read(n->ctrl, off, len));
    }
}

static void cfg_written(struct pci_dev *d, uint32_t off, uint32_t len)
{
    struct nvme_pci *n = d->opaque;
    (void)off;
    (void)len;
    msix_cfg_written(&n->msix, d->cfg);
    nvme_ctrl_set_msix(n->ctrl, msix_is_enabled(&n->msix));
}

static void build_config_space(struct nvme_pci *n)
{
    struct pci_dev *d = &n->pdev;
    pci_set_ids(d, NVMEVM_VENDOR, NVMEVM_DEVICE);
    pci_set_class(d, CLASS_NVME, 0x01);
    pci_cfg_set16(d, PCI_STATUS, PCI_STATUS_CAP_LIST);
    pci_cfg_set8(d, PCI_CAPABILITY_LIST, MSIX_CAP_OFF);
    pci_cfg_set8(d, PCI_INTERRUPT_PIN, 1); /* INTA# */
    msix_cap_build(&n->msix, d->cfg, d->wmask, MSIX_CAP_OFF, 0, 0, BAR0_MSIX_TABLE, BAR0_MSIX_PBA);
    n->pdev.bar[0] =
        (struct pci_bar){.kind = PCI_BAR_MEM64, .size = NVME_BAR0_SIZE, .fn = bar0_io, .opaque = n};
    n->pdev.cfg_written = cfg_written;
    n->pdev.opaque = n;
}

/* ---- I/O thread ---- */

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void epoll_add(struct nvme_pci *n, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 && errno != EEXIST)
        warn_errno("epoll_ctl");
}

/* Storage queues can appear later (Namespace Management): watch any new completion fd. */
static void watch_completion_fds(struct nvme_pci *n)
{
    int fds[NVME_MAX_NAMESPACES];
    int nfds = nvme_ctrl_completion_fds(n->ctrl, fds, NVME_MAX_NAMESPACES);
    for (int i = 0; i < nfds; i++) {
        bool known = false;
        for (int j = 0; j < n->nwatched && !known; j++)
            known = n->watched[j] == fds[i];
        if (!known && fds[i] >= 0 && n->nwatched < NVME_MAX_NAMESPACES) {
            epoll_add(n, fds[i]);
            n->watched[n->nwatched++] = fds[i];
        }
    }
}

static int ioeventfd(struct nvme_pci *n, uint64_t addr, bool assign)
{
    struct kvm_ioeventfd io = {
        .addr = addr, .len = 4, .fd = n->db_efd, .flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN};
    return ioctl(n->vm->vm_fd, KVM_IOEVENTFD, &io);
}

static void doorbell_eventfds(struct nvme_pci *n, uint64_t base, bool assign)
{
    /* I/O queues only: the admin queue has no shadow doorbell, its MMIO value matters. */
    for (unsigned q = 1; q < NVME_MAX_QUEUES; q++) {
        uint64_t db = base + NVME_DOORBELL_BASE + q * 8;
        if (ioeventfd(n, db, assign) < 0 || ioeventfd(n, db + 4, assign) < 0) {
            if (assign)
                debug_msg("KVM_IOEVENTFD: %s (doorbells stay MMIO exits)", strerror(errno));
            return;
        }
    }
}

/*
 * With shadow doorbells the guest's doorbell write only means "look at the shadow values",
 * so KVM can swallow it in the kernel and signal an eventfd: no exit to userspace.
 * Re-evaluated when the model turns shadow doorbells on or off (at once, see
 * host_shadow_changed) and by the I/O thread when it sleeps (BAR0 moves). Turning them on
 * late is harmless: MMIO doorbell writes keep working meanwhile.
 */
static void update_doorbell_eventfds_locked(struct nvme_pci *n)
{
    uint64_t want = 0;
    if (n->shadow_on && n->pdev.bar[0].mapped)
        want = n->pdev.bar[0].addr;
    if (want == n->db_base)
        return;
    if (n->db_base)
        doorbell_eventfds(n, n->db_base, false);
    if (want)
        doorbell_eventfds(n, want, true);
    n->db_base = want;
}

static void update_doorbell_eventfds(struct nvme_pci *n)
{
    pthread_mutex_lock(&n->db_lock);
    update_doorbell_eventfds_locked(n);
    pthread_mutex_unlock(&n->db_lock);
}

static int sleep_ms(struct nvme_pci *n)
{
    uint64_t deadline = nvme_ctrl_next_deadline_ms(n->ctrl);
    if (deadline == UINT64_MAX)
        return 100;
    uint64_t now = now_us() / 1000;
    return deadline <= now ? 0 : (int)(deadline - now < 100 ? deadline - now : 100);
}

static void *io_thread(void *arg)
{
    struct nvme_pci *n = arg;
    pthread_setname_np(pthread_self(), "nvme-io");
    thread_role_enter(THREAD_ROLE_IO);
    epoll_add(n, n->kick_efd);
    epoll_add(n, n->db_efd);
    watch_completion_fds(n);
    uint64_t last_work = now_us();
    bool polling = false;
    while (!atomic_load(&n->stop)) {
        if (nvme_ctrl_process(n->ctrl)) {
            last_work = now_us();
            if (n->poll_us && !polling)
                nvme_ctrl_set_polling(n->ctrl, polling = true);
            continue;
        }
        /* Polling mode: keep looking for work a while before paying for a wakeup. */
        bool spinning = n->poll_us && now_us() - last_work < n->poll_us;
        if (!spinning && polling) {
            /* One more pass publishes "ring me" EventIdx values before we sleep. */
            nvme_ctrl_set_polling(n->ctrl, polling = false);
            continue;
        }
        struct epoll_event ev[8];
        int r = epoll_wait(n->epfd, ev, 8, spinning ? 0 : sleep_ms(n));
        for (int i = 0; i < r; i++) {
            uint64_t v;
            if (read(ev[i].data.fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                warn_errno("I/O thread eventfd");
        }
        if (!spinning) {
            watch_completion_fds(n);
            update_doorbell_eventfds(n);
        }
    }
    pthread_mutex_lock(&n->db_lock);
    if (n->db_base)
        doorbell_eventfds(n, n->db_base, false);
    n->db_base = 0;
    pthread_mutex_unlock(&n->db_lock);
    return NULL;
}

/* ---- lifecycle ---- */

struct nvme_pci *nvme_pci_create(struct vm *vm, const struct nvme_pci_config *cfg)
{
    struct nvme_pci *n = calloc(1, sizeof(*n));
    if (!n)
        die("out of memory");
    n->vm = vm;
    n->poll_us = cfg->poll_us;
    pthread_mutex_init(&n->db_lock, NULL);
    n->kick_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    n->db_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    n->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (n->kick_efd < 0 || n->db_efd < 0 || n->epfd < 0)
        die_errno("nvme I/O thread setup");
    msix_init(&n->msix, NVME_NR_VECTORS, &msix_ops, n);
    for (unsigned v = 0; v < NVME_NR_VECTORS; v++) {
        n->irqfd[v] = irq_msi_alloc(&vm->irq, &n->gsi[v]);
        if (n->irqfd[v] < 0)
            die_errno("cannot set up MSI-X vector %u (irqfd)", v);
    }
    n->ctrl = nvme_ctrl_new(&cfg->ctrl, &vm->mem, &host_ops, n);
    if (!n->ctrl)
        die("cannot create the NVMe controller");
    build_config_space(n);
    int err = pci_add_device(vm->pci, &n->pdev);
    if (err < 0)
        die("cannot add the NVMe function to the PCI bus: %s", strerror(-err));
    n->intx_gsi = vm_add_pci_intx(vm, n->pdev.slot);
    pci_cfg_set8(&n->pdev, PCI_INTERRUPT_LINE, (uint8_t)n->intx_gsi);
    return n;
}

int nvme_pci_start(struct nvme_pci *n, char *err, size_t errlen)
{
    if (n->running)
        return 0;
    atomic_store(&n->stop, false);
    int r = pthread_create(&n->thread, NULL, io_thread, n);
    if (r)
        return err_set(err, errlen, "cannot start the NVMe I/O thread: %s", strerror(r));
    n->running = true;
    return 0;
}

void nvme_pci_stop(struct nvme_pci *n)
{
    if (!n->running)
        return;
    atomic_store(&n->stop, true);
    host_kick(n);
    pthread_join(n->thread, NULL);
    n->running = false;
}

struct nvme_ctrl *nvme_pci_ctrl(struct nvme_pci *n)
{
    return n ? n->ctrl : NULL;
}

void nvme_pci_free(struct nvme_pci *n)
{
    if (!n)
        return;
    nvme_pci_stop(n);
    pci_remove_device(n->vm->pci, &n->pdev); /* the bus outlives us in vm_destroy */
    nvme_ctrl_free(n->ctrl);
    for (unsigned v = 0; v < NVME_NR_VECTORS; v++)
        if (n->irqfd[v] >= 0)
            close(n->irqfd[v]);
    close(n->kick_efd);
    close(n->db_efd);
    close(n->epfd);
    pthread_mutex_destroy(&n->db_lock);
    free(n);
}

void nvme_pci_quiesce(struct nvme_pci *n)
{
    nvme_pci_stop(n);
    nvme_ctrl_drain(n->ctrl);
}

/* ---- the device table entry (hw/device.h) ---- */

static int save_op(void *dev, struct mig_buf *b, char *err, size_t errlen)
{
    struct nvme_pci *n = dev;
    struct mig_buf m;
    mig_buf_init(&m);
    msix_save(&n->msix, &m);
    if (m.oom) {
        mig_buf_free(&m);
        return err_set(err, errlen, "nvme: out of memory saving MSI-X");
    }
    mig_put_u32(b, (uint32_t)m.len);
    mig_put_bytes(b, m.data, m.len);
    mig_buf_free(&m);
    nvme_ctrl_save(n->ctrl, b);
    return 0;
}

static int load_op(void *dev, struct mig_cursor *c, char *err, size_t errlen)
{
    struct nvme_pci *n = dev;
    uint32_t len = mig_get_u32(c);
    if (c->bad || len > c->len - c->pos)
        return err_set(err, errlen, "nvme: MSI-X state truncated");
    struct mig_cursor m;
    mig_cursor_init(&m, c->data + c->pos, len);
    c->pos += len;
    if (msix_load(&n->msix, &m, err, errlen) < 0)
        return -1;
    return nvme_ctrl_load(n->ctrl, c, err, errlen);
}

static int start_op(void *dev, char *err, size_t errlen)
{
    return nvme_pci_start(dev, err, errlen);
}

static void quiesce_op(void *dev)
{
    nvme_pci_quiesce(dev);
}

static void post_load_op(void *dev)
{
    struct nvme_pci *n = dev;
    nvme_ctrl_post_load(n->ctrl);
}

static void free_op(void *dev)
{
    nvme_pci_free(dev);
}

const struct device_ops nvme_pci_device = {
    .name = "nvme",
    .section = NVME_SECTION,
    .version = 1,
    .save = save_op,
    .load = load_op,
    .start = start_op,
    .quiesce = quiesce_op,
    .post_load = post_load_op,
    .free = free_op,
};
