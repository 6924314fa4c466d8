#include "hw/msix.h"

#include <stdio.h>
#include <linux/pci_regs.h>
#include <string.h>

#include "util/buf.h"
#include "util/err.h"
#include "util/le.h"

#define VC_MASKED     0x1
#define ENTRY_ADDR_LO 0
#define ENTRY_ADDR_HI 1
#define ENTRY_DATA    2
#define ENTRY_CTRL    3

void msix_init(struct msix *m, unsigned nvec, const struct msix_ops *ops, void *opaque)
{
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    m->nvec = nvec > MSIX_MAX_VECTORS ? MSIX_MAX_VECTORS : nvec;
    m->ops = ops;
    m->opaque = opaque;
    /* Vectors come out of reset masked (PCI spec). */
    for (unsigned v = 0; v < m->nvec; v++)
        m->table[v][ENTRY_CTRL] = VC_MASKED;
}

void msix_cap_build(struct msix *m, uint8_t *cfg, uint8_t *wmask, uint8_t cap_off, uint8_t next,
                    uint8_t bir, uint32_t table_off, uint32_t pba_off)
{
    m->cap_off = cap_off;
    cfg[cap_off + PCI_CAP_LIST_ID] = PCI_CAP_ID_MSIX;
    cfg[cap_off + PCI_CAP_LIST_NEXT] = next;
    le16_put(cfg + cap_off + PCI_MSIX_FLAGS, (uint16_t)(m->nvec - 1));
    le32_put(cfg + cap_off + PCI_MSIX_TABLE, table_off | bir);
    le32_put(cfg + cap_off + PCI_MSIX_PBA, pba_off | bir);
    wmask[cap_off + PCI_MSIX_FLAGS + 1] = (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL) >> 8;
}

static uint64_t entry_addr(const struct msix *m, unsigned v)
{
    return (uint64_t)m->table[v][ENTRY_ADDR_HI] << 32 | m->table[v][ENTRY_ADDR_LO];
}

static bool vector_masked(const struct msix *m, unsigned v)
{
    return !m->enabled || m->func_masked || (m->table[v][ENTRY_CTRL] & VC_MASKED);
}

static void route_update(struct msix *m, unsigned v)
{
    if (m->ops->route_changed)
        m->ops->route_changed(m->opaque, v, entry_addr(m, v), m->table[v][ENTRY_DATA],
                              vector_masked(m, v));
}

/* Delivers vectors whose pending bit is set and that are no longer masked. Lock held. */
static void flush_pending(struct msix *m)
{
    for (unsigned v = 0; v < m->nvec; v++) {
        uint64_t bit = 1ULL << (v % 64);
        if ((m->pba[v / 64] & bit) && !vector_masked(m, v)) {
            m->pba[v / 64] &= ~bit;
            m->ops->deliver(m->opaque, v, entry_addr(m, v), m->table[v][ENTRY_DATA]);
        }
    }
}

void msix_cfg_written(struct msix *m, const uint8_t *cfg)
{
    uint16_t mc = le16_get(cfg + m->cap_off + PCI_MSIX_FLAGS);
    pthread_mutex_lock(&m->lock);
    bool was_enabled = m->enabled, was_masked = m->func_masked;
    m->enabled = mc & PCI_MSIX_FLAGS_ENABLE;
    m->func_masked = mc & PCI_MSIX_FLAGS_MASKALL;
    if (was_enabled != m->enabled || was_masked != m->func_masked) {
        for (unsigned v = 0; v < m->nvec; v++)
            route_update(m, v);
        flush_pending(m);
    }
    pthread_mutex_unlock(&m->lock);
}

void msix_table_io(struct msix *m, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
    /* The spec allows aligned 32- and 64-bit accesses only; anything else reads 0. */
    if ((len != 4 && len != 8) || (off & (len - 1)) || off + len > m->nvec * MSIX_ENTRY_SIZE) {
        if (!is_write)
            memset(data, 0, len);
        return;
    }
    pthread_mutex_lock(&m->lock);
    for (uint32_t done = 0; done < len; done += 4) {
        unsigned v = (unsigned)((off + done) / MSIX_ENTRY_SIZE);
        unsigned w = (unsigned)(((off + done) % MSIX_ENTRY_SIZE) / 4);
        if (!is_write) {
            memcpy(data + done, &m->table[v][w], 4);
            continue;
        }
        uint32_t val;
        memcpy(&val, data + done, 4);
        if (w == ENTRY_CTRL)
            val &= VC_MASKED; /* other bits are reserved */
        if (m->table[v][w] == val)
            continue;
        m->table[v][w] = val;
        route_update(m, v);
        if (w == ENTRY_CTRL)
            flush_pending(m);
    }
    pthread_mutex_unlock(&m->lock);
}

void msix_pba_io(struct msix *m, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
    if (is_write)
        return; /* read-only */
    memset(data, 0, len);
    pthread_mutex_lock(&m->lock);
    for (uint32_t i = 0; i < len; i++) {
        uint64_t byte = off + i;
        if (byte < sizeof(m->pba))
            data[i] = (uint8_t)(m->pba[byte / 8] >> (8 * (byte % 8)));
    }
    pthread_mutex_unlock(&m->lock);
}

void msix_notify(struct msix *m, unsigned vec)
{
    if (vec >= m->nvec)
        return;
    pthread_mutex_lock(&m->lock);
    if (vector_masked(m, vec))
        m->pba[vec / 64] |= 1ULL << (vec % 64);
    else
        m->ops->deliver(m->opaque, vec, entry_addr(m, vec), m->table[vec][ENTRY_DATA]);
    pthread_mutex_unlock(&m->lock);
}

bool msix_is_enabled(struct msix *m)
{
    pthread_mutex_lock(&m->lock);
    bool e = m->enabled;
    pthread_mutex_unlock(&m->lock);
    return e;
}

/* ---- migration ---- */

#define MSIX_STATE_VERSION 1
#define FLAG_ENABLED       0x01
#define FLAG_FUNC_MASKED   0x02
#define PBA_WORDS(n)       (((n) + 63) / 64)

void msix_save(struct msix *m, struct mig_buf *b)
{
    pthread_mutex_lock(&m->lock);
    mig_put_u16(b, MSIX_STATE_VERSION);
    mig_put_u16(b, (uint16_t)m->nvec);
    mig_put_u8(b, (m->enabled ? FLAG_ENABLED : 0) | (m->func_masked ? FLAG_FUNC_MASKED : 0));
    for (unsigned v = 0; v < m->nvec; v++)
        for (int w = 0; w < 4; w++)
            mig_put_u32(b, m->table[v][w]);
    for (unsigned i = 0; i < PBA_WORDS(m->nvec); i++)
        mig_put_u64(b, m->pba[i]);
    pthread_mutex_unlock(&m->lock);
}

int msix_load(struct msix *m, struct mig_cursor *c, char *err, size_t errlen)
{
    uint16_t version = mig_get_u16(c);
    if (c->bad) {
        return err_set(err, errlen, "msix: state truncated before version");
    }
    if (version != MSIX_STATE_VERSION) {
        return err_set(err, errlen, "msix: state version %u, this nvmevm reads %u", version,
                       MSIX_STATE_VERSION);
    }
    /* nvec is fixed when the device is built and is not written under the lock. */
    unsigned nvec = mig_get_u16(c);
    uint8_t flags = mig_get_u8(c);
    if (c->bad) {
        return err_set(err, errlen, "msix: state truncated in header");
    }
    if (nvec != m->nvec) {
        return err_set(err, errlen, "msix: %u vectors in the stream, %u here", nvec, m->nvec);
    }
    if (flags & ~(FLAG_ENABLED | FLAG_FUNC_MASKED)) {
        return err_set(err, errlen, "msix: flags 0x%02x has unknown bits set", flags);
    }
    uint32_t table[MSIX_MAX_VECTORS][4];
    uint64_t pba[PBA_WORDS(MSIX_MAX_VECTORS)] = {0};
    for (unsigned v = 0; v < nvec; v++)
        for (int w = 0; w < 4; w++)
            table[v][w] = mig_get_u32(c);
    for (unsigned i = 0; i < PBA_WORDS(nvec); i++)
        pba[i] = mig_get_u64(c);
    if (c->bad) {
        return err_set(err, errlen, "msix: state truncated in table or PBA");
    }
    for (unsigned v = 0; v < nvec; v++) {
        if (table[v][ENTRY_CTRL] & ~VC_MASKED) {
            return err_set(err, errlen, "msix: vector %u control 0x%08x has reserved bits set", v,
                           table[v][ENTRY_CTRL]);
        }
    }
    if (nvec % 64 && (pba[nvec / 64] >> (nvec % 64))) {
        return err_set(err, errlen, "msix: PBA has pending bits beyond vector %u", nvec - 1);
    }
    if (!mig_cursor_done(c)) {
        return err_set(err, errlen, "msix: %zu trailing bytes after state", c->len - c->pos);
    }

    pthread_mutex_lock(&m->lock);
    m->enabled = flags & FLAG_ENABLED;
    m->func_masked = flags & FLAG_FUNC_MASKED;
    memcpy(m->table, table, nvec * sizeof(table[0]));
    memcpy(m->pba, pba, sizeof(m->pba));
    for (unsigned v = 0; v < m->nvec; v++)
        route_update(m, v);
    flush_pending(m);
    pthread_mutex_unlock(&m->lock);
    return 0;
}
