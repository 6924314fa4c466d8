#include "guest_mem.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

void guest_mem_layout(struct guest_mem *m, uint8_t *host, uint64_t size, uint64_t hole_start)
{
    memset(m, 0, sizeof(*m));
    m->host = host;
    m->size = size;
    m->low_size = size < hole_start ? size : hole_start;
    m->high_size = size - m->low_size;
}

int64_t gpa_to_offset(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
    if (len == 0 || gpa + len < gpa)
        return -1;
    if (gpa < m->low_size)
        return len <= m->low_size - gpa ? (int64_t)gpa : -1;
    if (gpa >= GUEST_4G && gpa - GUEST_4G < m->high_size) {
        uint64_t off = gpa - GUEST_4G;
        return len <= m->high_size - off ? (int64_t)(m->low_size + off) : -1;
    }
    return -1;
}

void *gpa_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
    int64_t off = gpa_to_offset(m, gpa, len);
    return off < 0 ? NULL : m->host + off;
}

void guest_mem_mark_dirty(struct guest_mem *m, uint64_t ram_offset, uint64_t len)
{
    if (!m->dirty || len == 0)
        return;
    uint64_t first = ram_offset >> GUEST_PAGE_SHIFT;
    uint64_t last = (ram_offset + len - 1) >> GUEST_PAGE_SHIFT;
    for (uint64_t p = first; p <= last; p++)
        atomic_fetch_or_explicit((_Atomic uint64_t *)&m->dirty[p / 64], 1ULL << (p % 64),
                                 memory_order_relaxed);
}

void *gpa_ptr_w(struct guest_mem *m, uint64_t gpa, uint64_t len)
{
    int64_t off = gpa_to_offset(m, gpa, len);
    if (off < 0)
        return NULL;
    guest_mem_mark_dirty(m, (uint64_t)off, len);
    return m->host + off;
}

bool gpa_read(const struct guest_mem *m, uint64_t gpa, void *dst, uint64_t len)
{
    void *p = gpa_ptr(m, gpa, len);
    if (!p)
        return false;
    memcpy(dst, p, len);
    return true;
}

bool gpa_write(struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len)
{
    void *p = gpa_ptr_w(m, gpa, len);
    if (!p)
        return false;
    memcpy(p, src, len);
    return true;
}

int guest_mem_dirty_enable(struct guest_mem *m)
{
    uint64_t pages = (m->size + GUEST_PAGE_SIZE - 1) >> GUEST_PAGE_SHIFT;
    m->dirty = calloc((pages + 63) / 64, sizeof(uint64_t));
    return m->dirty ? 0 : -1;
}

void guest_mem_dirty_collect(struct guest_mem *m, uint64_t *out)
{
    if (!m->dirty)
        return;
    uint64_t pages = (m->size + GUEST_PAGE_SIZE - 1) >> GUEST_PAGE_SHIFT;
    for (uint64_t i = 0; i < (pages + 63) / 64; i++)
        out[i] |=
            atomic_exchange_explicit((_Atomic uint64_t *)&m->dirty[i], 0, memory_order_relaxed);
}
