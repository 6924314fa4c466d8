/*
 * PCI MSI-X: the capability in config space, the vector table and the pending-bit
 * array (PBA), with per-vector and function masks. No KVM here: delivery and route
 * changes go through callbacks (kvm/irq.c turns them into GSI routes + irqfds).
 */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MSIX_MAX_VECTORS 128
#define MSIX_CAP_SIZE    12
#define MSIX_ENTRY_SIZE  16

struct mig_buf;
struct mig_cursor;

struct msix_ops {
    /* Fire vector vec (unmasked, enabled) with its current address/data. */
    void (*deliver)(void *opaque, unsigned vec, uint64_t addr, uint32_t data);
    /* The vector's address/data/mask changed: rebuild its route. May be NULL. */
    void (*route_changed)(void *opaque, unsigned vec, uint64_t addr, uint32_t data, bool masked);
};

struct msix {
    pthread_mutex_t lock;
    unsigned nvec;
    uint8_t cap_off; /* capability offset in config space */
    bool enabled;
    bool func_masked;
    uint32_t table[MSIX_MAX_VECTORS][4]; /* addr lo, addr hi, data, vector control */
    uint64_t pba[(MSIX_MAX_VECTORS + 63) / 64];
    const struct msix_ops *ops;
    void *opaque;
};

void msix_init(struct msix *m, unsigned nvec, const struct msix_ops *ops, void *opaque);
/* Writes the capability at cap_off into cfg (table/PBA in BAR bir at the given offsets)
 * and marks the Message Control bits the guest may change in wmask. */
void msix_cap_build(struct msix *m, uint8_t *cfg, uint8_t *wmask, uint8_t cap_off, uint8_t next,
                    uint8_t bir, uint32_t table_off, uint32_t pba_off);
/* After a config-space write: picks up Enable and Function Mask. */
void msix_cfg_written(struct msix *m, const uint8_t *cfg);
/* BAR accesses to the table and the PBA (offsets relative to each). */
void msix_table_io(struct msix *m, uint64_t off, uint8_t *data, uint32_t len, bool is_write);
void msix_pba_io(struct msix *m, uint64_t off, uint8_t *data, uint32_t len, bool is_write);
/* The device raises vec: delivered now, or remembered in the PBA while masked. */
void msix_notify(struct msix *m, unsigned vec);
bool msix_is_enabled(struct msix *m);
/*
 * Migration (inside the owning function's section, e.g. NVME_SECTION): Enable, Function Mask, the
 * table and the PBA. The vector count must equal this side's. After a load every vector's
 * route_changed is called (routes are not state: the destination builds them anew) and
 * pending vectors that are now unmasked are delivered. Refusal: -1, a one-line reason in err
 * (prefixed "msix"), m unchanged. Enable/Function Mask also live in PCI config space: load
 * PCI first, whose cfg_written then agrees with the state loaded here.
 */
void msix_save(struct msix *m, struct mig_buf *b);
int msix_load(struct msix *m, struct mig_cursor *c, char *err, size_t errlen);
