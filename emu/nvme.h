/*
 * The NVMe controller model. No KVM in here: the model reaches guest memory through
 * util/guest_mem.h (every access checked), storage through block/block.h, and
 * interrupts through struct nvme_host_ops, so unit tests drive it with a simulated
 * host (tests/unit/nvme_host.c) exactly like the VMM does.
 *
 * Threading: every nvme_ctrl_* entry point takes the controller's lock, so register
 * accesses from vCPU threads and processing on the I/O thread may interleave freely.
 * Work (fetching SQ entries, submitting to storage, posting completions) happens only in
 * nvme_ctrl_process(), which the host calls on its I/O thread after a doorbell kick, a
 * storage completion (block completion fds) or a timer.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"
#include "util/guest_mem.h"

#define NVME_BAR0_SIZE      0x4000 /* registers + doorbells (Windows wants >= 16 KiB) */
#define NVME_MAX_IO_QUEUES  64
#define NVME_MAX_QUEUES     (NVME_MAX_IO_QUEUES + 1) /* + admin */
#define NVME_MAX_NAMESPACES 16
#define NVME_NR_VECTORS     (NVME_MAX_QUEUES) /* MSI-X table entries */
#define NVME_DOORBELL_BASE  0x1000

struct nvme_ctrl;

struct nvme_host_ops {
    /* Signal interrupt vector v (MSI-X). The PCI layer applies the MSI-X mask and PBA. */
    void (*msix_notify)(void *opaque, uint16_t vector);
    /* INTx level (used while MSI-X is disabled). */
    void (*intx_set)(void *opaque, int level);
    /* Wake the I/O thread (e.g. a doorbell written from a vCPU thread). May be NULL. */
    void (*kick)(void *opaque);
    /* Shadow doorbells turned on or off (Doorbell Buffer Config, reset, migration load).
     * Called with the controller's lock held, before the guest can observe the change
     * (RDY dropping, the command completing): a VMM that swallows doorbell writes in the
     * kernel while shadow doorbells are on (ioeventfd) must stop before this returns when
     * on is false, or MMIO SQ tail values written from then on are lost. May be NULL. */
    void (*shadow_changed)(void *opaque, bool on);
};

struct nvme_ns_config {
    struct blk_dev *blk; /* opened by the caller; the model never closes it */
    uint32_t lba_shift;  /* 9 (512 B) or 12 (4 KiB) */
    bool deletable;      /* Namespace Management may delete it (default: refused) */
};

struct nvme_ctrl_config {
    const char *serial;    /* up to 20 chars */
    const char *model;     /* up to 40 chars */
    unsigned nr_io_queues; /* 1..NVME_MAX_IO_QUEUES */
    unsigned mqes;         /* max queue entries - 1 (CAP.MQES), >= 1023 */
    unsigned mdts;         /* max transfer = 2^mdts * 4 KiB */
    int nr_ns;
    struct nvme_ns_config ns[NVME_MAX_NAMESPACES];
    /* Directory where Namespace Management creates backing files (NULL: unsupported). */
    const char *ns_dir;
    bool stats_off; /* no live I/O statistics (emu/nvme_stats.h): for measuring their cost */
};

struct nvme_ctrl *nvme_ctrl_new(const struct nvme_ctrl_config *cfg, struct guest_mem *mem,
                                const struct nvme_host_ops *ops, void *opaque);
void nvme_ctrl_free(struct nvme_ctrl *c);

/* BAR0 accesses (offset within BAR0, len 1/2/4/8). */
uint64_t nvme_ctrl_mmio_read(struct nvme_ctrl *c, uint64_t off, unsigned len);
void nvme_ctrl_mmio_write(struct nvme_ctrl *c, uint64_t off, uint64_t val, unsigned len);

/* Does all pending work; returns true if it made progress (callers polling may spin). */
bool nvme_ctrl_process(struct nvme_ctrl *c);

/* The PCI layer reports MSI-X enable changes (INTx is used while disabled). */
void nvme_ctrl_set_msix(struct nvme_ctrl *c, bool enabled);

/* Storage completion fds the I/O thread should wait on (one per namespace queue). */
int nvme_ctrl_completion_fds(struct nvme_ctrl *c, int *fds, int max);

/* Shadow doorbells: true while the guest has configured them (the VMM may then use
 * ioeventfd for doorbells, and the poller may read shadow values). */
bool nvme_ctrl_shadow_enabled(struct nvme_ctrl *c);

/* The I/O thread is (or stops) spinning on shadow doorbells: while on, EventIdx tells the
 * host driver that doorbell writes are unnecessary. Turning it off takes effect at the
 * next nvme_ctrl_process(), which publishes EventIdx and re-reads the shadow tails. */
void nvme_ctrl_set_polling(struct nvme_ctrl *c, bool on);

/* Waits for all storage requests in flight and posts their completions (for pause). */
void nvme_ctrl_drain(struct nvme_ctrl *c);

/* Earliest time (CLOCK_MONOTONIC, ms) nvme_ctrl_process() has timed work to do, such as an
 * interrupt delayed by coalescing; UINT64_MAX if none. The I/O thread sleeps until then. */
uint64_t nvme_ctrl_next_deadline_ms(struct nvme_ctrl *c);

/* ---- Live migration (emu/nvme_migrate.c; byte buffers from util/buf.h) ---- */
struct mig_buf;
struct mig_cursor;
/* Appends the controller's state. Order on the source: stop vCPUs, nvme_ctrl_drain(),
 * then save (no storage request may be in flight; the stream says so if one was, and the
 * destination refuses it). Leaves the controller unchanged: the source may resume. */
void nvme_ctrl_save(struct nvme_ctrl *c, struct mig_buf *b);
/* Replaces the state of c, created from the same configuration (same namespaces and
 * sizes) on the destination's guest RAM, with the saved state. Everything is validated
 * first: on error returns -1 with a one-line reason in err and c is unchanged. Call
 * before vCPUs and the I/O thread start; then nvme_ctrl_post_load(). */
int nvme_ctrl_load(struct nvme_ctrl *c, struct mig_cursor *cur, char *err, size_t errlen);
/* After every device's state is loaded (PCI config, MSI-X table): re-drives the INTx
 * level and MSI-X vectors with unconsumed completions, and kicks the I/O thread. */
void nvme_ctrl_post_load(struct nvme_ctrl *c);
