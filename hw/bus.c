#include "hw/bus.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct region {
    uint64_t base;
    uint64_t len;
    bus_io_fn fn;
    void *opaque;
    char name[32]; /* kept for debugging sessions only */
};

struct bus {
    pthread_rwlock_t lock;
    struct region *regions; /* sorted by base, never overlapping */
    size_t count;
    size_t cap;
    char name[32];
};

struct bus *bus_new(const char *name)
{
    struct bus *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    if (pthread_rwlock_init(&b->lock, NULL) != 0) {
        free(b);
        return NULL;
    }
    snprintf(b->name, sizeof(b->name), "%s", name ? name : "");
    return b;
}

void bus_free(struct bus *b)
{
    if (!b)
        return;
    pthread_rwlock_destroy(&b->lock);
    free(b->regions);
    free(b);
}

/* Index of the first region whose base is greater than addr (0..count). */
static size_t first_above(const struct bus *b, uint64_t addr)
{
    size_t lo = 0, hi = b->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->regions[mid].base <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static uint64_t region_last(const struct region *r)
{
    return r->base + (r->len - 1);
}

static int grow(struct bus *b)
{
    if (b->count < b->cap)
        return 0;
    size_t cap = b->cap ? b->cap * 2 : 16;
    struct region *r = realloc(b->regions, cap * sizeof(*r));
    if (!r)
        return -ENOMEM;
    b->regions = r;
    b->cap = cap;
    return 0;
}

int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_io_fn fn, void *opaque,
                 const char *name)
{
    if (len == 0 || base + (len - 1) < base || !fn)
        return -EINVAL;
    uint64_t last = base + (len - 1);

    pthread_rwlock_wrlock(&b->lock);
    size_t idx = first_above(b, base);
    int ret = 0;
    if (idx > 0 && region_last(&b->regions[idx - 1]) >= base)
        ret = -EEXIST;
    else if (idx < b->count && b->regions[idx].base <= last)
        ret = -EEXIST;
    else
        ret = grow(b);
    if (ret == 0) {
        memmove(&b->regions[idx + 1], &b->regions[idx], (b->count - idx) * sizeof(b->regions[0]));
        struct region *r = &b->regions[idx];
        r->base = base;
        r->len = len;
        r->fn = fn;
        r->opaque = opaque;
        snprintf(r->name, sizeof(r->name), "%s", name ? name : "");
        b->count++;
    }
    pthread_rwlock_unlock(&b->lock);
    return ret;
}

int bus_unregister(struct bus *b, uint64_t base)
{
    int ret = -ENOENT;
    pthread_rwlock_wrlock(&b->lock);
    size_t idx = first_above(b, base);
    if (idx > 0 && b->regions[idx - 1].base == base) {
        idx--;
        memmove(&b->regions[idx], &b->regions[idx + 1],
                (b->count - idx - 1) * sizeof(b->regions[0]));
        b->count--;
        ret = 0;
    }
    pthread_rwlock_unlock(&b->lock);
    return ret;
}

/*
 * The handler runs after the lock is dropped: handlers such as the PCI config
 * port remap BARs, i.e. call bus_register() on this very bus, which would
 * deadlock under the read lock. The price is that a handler may still run
 * once just after its region was unregistered, so opaques must outlive the bus.
 */
bool bus_dispatch(struct bus *b, uint64_t addr, uint8_t *data, uint32_t len, bool is_write)
{
    bus_io_fn fn = NULL;
    void *opaque = NULL;
    uint64_t offset = 0;

    pthread_rwlock_rdlock(&b->lock);
    size_t idx = first_above(b, addr);
    if (idx > 0 && len > 0) {
        const struct region *r = &b->regions[idx - 1];
        offset = addr - r->base;
        /* Partly-claimed accesses are unclaimed: a device only sees its own bytes. */
        if (offset < r->len && len <= r->len - offset) {
            fn = r->fn;
            opaque = r->opaque;
        }
    }
    pthread_rwlock_unlock(&b->lock);

    if (!fn) {
        if (!is_write)
            memset(data, 0xff, len);
        return false;
    }
    fn(opaque, offset, data, len, is_write);
    return true;
}
