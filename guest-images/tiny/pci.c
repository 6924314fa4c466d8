/*
 * PCI configuration mechanism #1 on bus 0, BAR placement and MSI-X. All of it
 * runs in ring 3 (port I/O through the TSS bitmap, MMIO through U-bit pages).
 */
#include "pci.h"
#include "tiny.h"

#define CFG_ADDR 0xcf8
#define CFG_DATA 0xcfc

static void cfg_select(const struct pci_dev *d, unsigned off)
{
    outl(CFG_ADDR, 0x80000000u | (uint32_t)d->bus << 16 | (uint32_t)d->dev << 11 |
                       (uint32_t)d->fn << 8 | (off & 0xfc));
}

uint32_t pci_read32(const struct pci_dev *d, unsigned off)
{
    cfg_select(d, off);
    return inl(CFG_DATA);
}

uint16_t pci_read16(const struct pci_dev *d, unsigned off)
{
    cfg_select(d, off);
    return inw((uint16_t)(CFG_DATA + (off & 2)));
}

void pci_write32(const struct pci_dev *d, unsigned off, uint32_t v)
{
    cfg_select(d, off);
    outl(CFG_DATA, v);
}

void pci_write16(const struct pci_dev *d, unsigned off, uint16_t v)
{
    cfg_select(d, off);
    outw((uint16_t)(CFG_DATA + (off & 2)), v);
}

/* Calls fn for every present function on bus 0; stops when fn returns nonzero. */
static int pci_each(int (*fn)(const struct pci_dev *d, void *arg), void *arg)
{
    for (uint8_t dev = 0; dev < 32; dev++) {
        for (uint8_t fn_no = 0; fn_no < 8; fn_no++) {
            struct pci_dev d = {.bus = 0, .dev = dev, .fn = fn_no};
            uint32_t id = pci_read32(&d, 0);
            if ((id & 0xffff) == 0xffff) {
                if (fn_no == 0)
                    break;
                continue;
            }
            d.vendor = (uint16_t)id;
            d.device = (uint16_t)(id >> 16);
            d.class_rev = pci_read32(&d, 0x08);
            int r = fn(&d, arg);
            if (r)
                return r;
            if (fn_no == 0 && !(pci_read32(&d, 0x0c) & 0x00800000)) /* not multi-function */
                break;
        }
    }
    return 0;
}

struct find_arg {
    uint32_t class24;
    unsigned index;
    struct pci_dev *out;
};

static int find_cb(const struct pci_dev *d, void *arg)
{
    struct find_arg *a = arg;
    if ((d->class_rev >> 8) != a->class24)
        return 0;
    if (a->index--)
        return 0;
    *a->out = *d;
    return 1;
}

int pci_find_class(uint32_t class24, unsigned index, struct pci_dev *out)
{
    struct find_arg a = {class24, index, out};
    return pci_each(find_cb, &a) ? 0 : -1;
}

unsigned pci_find_cap(const struct pci_dev *d, uint8_t id)
{
    if (!(pci_read16(d, 0x06) & (1u << 4))) /* status: capability list */
        return 0;
    unsigned off = pci_read32(d, 0x34) & 0xfc;
    for (int n = 0; off && n < 48; n++) {
        uint32_t w = pci_read32(d, off);
        if ((w & 0xff) == id)
            return off;
        off = (w >> 8) & 0xfc;
    }
    return 0;
}

/* ---- BARs ---- */

struct bar {
    uint64_t addr, size;
    int is64, is_mem;
};

/* Read a BAR and its size (memory decoding off while probing). Returns BAR slots used. */
static unsigned bar_probe(const struct pci_dev *d, unsigned i, struct bar *b)
{
    unsigned off = 0x10 + 4 * i;
    uint32_t lo = pci_read32(d, off);
    b->is_mem = !(lo & 1);
    b->is64 = b->is_mem && ((lo >> 1) & 3) == 2;
    b->addr = 0;
    b->size = 0;
    if (!b->is_mem)
        return 1;
    uint32_t hi = b->is64 ? pci_read32(d, off + 4) : 0;
    uint16_t cmd = pci_read16(d, PCI_COMMAND);
    pci_write16(d, PCI_COMMAND, (uint16_t)(cmd & ~PCI_CMD_MEM));
    pci_write32(d, off, 0xffffffffu);
    uint64_t mask = pci_read32(d, off) & ~0xfULL;
    if (b->is64) {
        pci_write32(d, off + 4, 0xffffffffu);
        mask |= (uint64_t)pci_read32(d, off + 4) << 32;
        pci_write32(d, off + 4, hi);
    } else {
        mask |= 0xffffffff00000000ULL;
    }
    pci_write32(d, off, lo);
    pci_write16(d, PCI_COMMAND, cmd);
    b->addr = ((uint64_t)hi << 32 | lo) & ~0xfULL;
    /* A BAR that reads back 0 is not implemented. */
    int none = b->is64 ? mask == 0 : (mask & 0xffffffffULL) == 0;
    b->size = none ? 0 : ~mask + 1;
    return b->is64 ? 2 : 1;
}

#define MAX_RANGES 64

struct ranges_arg {
    const struct pci_dev *self;
    unsigned self_bar;
    unsigned n;
    uint64_t start[MAX_RANGES], end[MAX_RANGES];
};

/* Collects the assigned memory BARs of every function except (self, self_bar). */
static int ranges_cb(const struct pci_dev *d, void *arg)
{
    struct ranges_arg *a = arg;
    unsigned hdr = (pci_read32(d, 0x0c) >> 16) & 0x7f;
    unsigned nbars = hdr == 0 ? 6 : hdr == 1 ? 2 : 0;
    int same = d->bus == a->self->bus && d->dev == a->self->dev && d->fn == a->self->fn;
    for (unsigned i = 0; i < nbars;) {
        struct bar b;
        unsigned used = bar_probe(d, i, &b);
        if (!(same && i == a->self_bar) && b.is_mem && b.size && b.addr && a->n < MAX_RANGES) {
            a->start[a->n] = b.addr;
            a->end[a->n] = b.addr + b.size;
            a->n++;
        }
        i += used;
    }
    return 0;
}

/* First size-aligned slot of the window (above RAM) that overlaps no other BAR; 0 = none. */
static uint64_t free_slot(const struct pci_dev *d, unsigned bar, uint64_t size)
{
    static struct ranges_arg ra;
    ra.self = d;
    ra.self_bar = bar;
    ra.n = 0;
    pci_each(ranges_cb, &ra);
    uint64_t align = size < 4096 ? 4096 : size;
    uint64_t a = MMIO_WINDOW_START > ram_top() ? MMIO_WINDOW_START : ram_top();
    a = (a + align - 1) & ~(align - 1);
    while (a + size <= MMIO_WINDOW_END) {
        unsigned k;
        for (k = 0; k < ra.n; k++)
            if (ra.start[k] < a + size && a < ra.end[k])
                break;
        if (k == ra.n)
            return a;
        a = (ra.end[k] + align - 1) & ~(align - 1); /* skip past the conflict */
    }
    return 0;
}

int pci_force_reassign;

/* BARs this guest placed itself (reassign=1 moves each only once). */
static uint32_t placed[16];
static unsigned nplaced;

static int was_placed(uint32_t key)
{
    for (unsigned i = 0; i < nplaced; i++)
        if (placed[i] == key)
            return 1;
    return 0;
}

uint64_t pci_map_bar(const struct pci_dev *d, unsigned bar, uint64_t *size)
{
    struct bar b;
    bar_probe(d, bar, &b);
    if (!b.is_mem || !b.size)
        return 0;
    *size = b.size;
    uint32_t key = (uint32_t)d->bus << 16 | (uint32_t)d->dev << 11 | (uint32_t)d->fn << 8 | bar;
    int force = pci_force_reassign && !was_placed(key);
    if (force || b.addr < MMIO_WINDOW_START || b.addr + b.size > MMIO_WINDOW_END) {
        /* Unassigned (no firmware) or unreachable: move it into the mapped window. */
        uint64_t found = free_slot(d, bar, b.size);
        if (!found)
            return 0;
        kprintf("tiny: pci %02x:%02x.%u BAR%u 0x%lx -> 0x%lx (size 0x%lx)\n", d->bus, d->dev, d->fn,
                bar, b.addr, found, b.size);
        uint16_t cmd = pci_read16(d, PCI_COMMAND);
        pci_write16(d, PCI_COMMAND, (uint16_t)(cmd & ~PCI_CMD_MEM));
        pci_write32(d, 0x10 + 4 * bar, (uint32_t)found);
        if (b.is64)
            pci_write32(d, 0x14 + 4 * bar, 0);
        pci_write16(d, PCI_COMMAND, cmd);
        b.addr = found;
        if (nplaced < sizeof(placed) / sizeof(placed[0]))
            placed[nplaced++] = key;
    }
    pci_write16(d, PCI_COMMAND, (uint16_t)(pci_read16(d, PCI_COMMAND) | PCI_CMD_MEM));
    return b.addr;
}

extern uint64_t pml4[512];

uint64_t page_flags(uint64_t va)
{
    const uint64_t *t = pml4;
    for (int level = 3; level >= 0; level--) {
        uint64_t e = t[(va >> (12 + 9 * level)) & 511];
        if (!(e & 1))
            return 0;
        if (level == 0 || (level <= 2 && (e & 0x80)))
            return e & 0xfff;
        t = (const uint64_t *)(uintptr_t)(e & 0x000ffffffffff000ULL);
    }
    return 0;
}

/* ---- MSI-X ---- */

#define MSIX_CTRL_ENABLE (1u << 15)
#define MSIX_CTRL_FMASK  (1u << 14)

int msix_init(const struct pci_dev *d, struct msix *m)
{
    unsigned cap = pci_find_cap(d, PCI_CAP_MSIX);
    if (!cap)
        return -1;
    uint16_t ctrl = pci_read16(d, cap + 2);
    uint32_t tbl = pci_read32(d, cap + 4);
    uint64_t size = 0;
    uint64_t base = pci_map_bar(d, tbl & 7, &size);
    if (!base)
        return -1;
    m->dev = d;
    m->cap = cap;
    m->nvec = (ctrl & 0x7ff) + 1u;
    m->table = (volatile uint32_t *)(uintptr_t)(base + (tbl & ~7u));
    pci_write16(d, PCI_COMMAND, (uint16_t)(pci_read16(d, PCI_COMMAND) | PCI_CMD_INTX_OFF));
    pci_write16(d, cap + 2, (uint16_t)(ctrl | MSIX_CTRL_ENABLE | MSIX_CTRL_FMASK));
    for (unsigned i = 0; i < m->nvec; i++)
        m->table[4 * i + 3] = 1; /* vector control: masked */
    return 0;
}

void msix_route(const struct msix *m, unsigned idx, uint32_t apic_id, uint8_t vector)
{
    volatile uint32_t *e = m->table + 4 * idx;
    e[0] = 0xfee00000u | (apic_id << 12); /* physical destination, no redirection hint */
    e[1] = 0;
    e[2] = vector; /* fixed, edge */
    e[3] = 0;      /* unmasked */
}

void msix_unmask(const struct msix *m)
{
    uint16_t ctrl = pci_read16(m->dev, m->cap + 2);
    pci_write16(m->dev, m->cap + 2, (uint16_t)((ctrl | MSIX_CTRL_ENABLE) & ~MSIX_CTRL_FMASK));
}
