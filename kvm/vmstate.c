/*
 * KVM vCPU and VM state for migration. Layout of both records:
 *   magic u32, version u16, id u16 (vCPU index, 0 for the VM),
 *   then items: tag u16, length u32, payload; ended by tag 0 with length 0.
 * Payloads are KVM's own x86-64 structs, byte for byte, except CPUID (nent u32 + entries)
 * and MSRs (count u32 + {index u32, value u64}). A loader parses and size-checks every item
 * before the first ioctl, so a hostile or truncated record changes nothing.
 */
#include "kvm/vmstate.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "kvm/vcpu.h"
#include "kvm/vm.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/le.h"
#include "util/log.h"

#define VCPU_MAGIC  0x55504356u /* "VCPU" */
#define VM_MAGIC    0x54534d56u /* "VMST" */
#define STATE_VER   1
#define MAX_CPUID   256 /* KVM_MAX_CPUID_ENTRIES */
#define MAX_MSRS    1024
#define MAX_XSAVE   (1u << 20)
#define MIN_XSAVE   576 /* legacy area + XSAVE header */
#define MSR_CHUNK   64
#define MSR_RECSIZE 12
#define KHZ_PPM     250

#define MSR_IA32_TSC          0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0
#define APIC_LVTT             0x320
#define LVT_MASKED            (1u << 16)
#define LVTT_MODE_SHIFT       17
#define LVTT_MODE_DEADLINE    2

enum vcpu_tag {
    T_END = 0,
    T_CPUID,
    T_TSC_KHZ,
    T_MP_STATE,
    T_REGS,
    T_SREGS,
    T_SREGS2,
    T_XSAVE,
    T_FPU,
    T_XCRS,
    T_DEBUGREGS,
    T_LAPIC,
    T_MSRS,
    T_EVENTS,
    T_VCPU_MAX,
};

enum vm_tag {
    V_END = 0,
    V_PIC_MASTER, /* struct kvm_irqchip, chip_id 0 */
    V_PIC_SLAVE,  /* chip_id 1 */
    V_IOAPIC,     /* chip_id 2 */
    V_PIT2,
    V_CLOCK,
    V_VM_MAX,
};

static bool has_cap(struct vm *vm, int cap)
{
    return ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, cap) > 0;
}

static void put_item(struct mig_buf *b, uint16_t tag, const void *p, size_t len)
{
    mig_put_u16(b, tag);
    mig_put_u32(b, (uint32_t)len);
    mig_put_bytes(b, p, len);
}

/* ---- record parsing ---- */

struct item {
    const uint8_t *p;
    uint32_t len;
};

/* Reads the header and every item into it[] (pointers into the cursor's data). */
static int parse_record(struct mig_cursor *c, uint32_t magic, unsigned id, struct item *it,
                        unsigned ntags, const char *what, char *err, size_t errlen)
{
    memset(it, 0, ntags * sizeof(*it));
    uint32_t m = mig_get_u32(c);
    uint16_t ver = mig_get_u16(c);
    uint16_t rid = mig_get_u16(c);
    if (c->bad)
        return err_set(err, errlen, "%s state: truncated header", what);
    if (m != magic)
        return err_set(err, errlen, "%s state: bad magic 0x%08x", what, m);
    if (ver != STATE_VER)
        return err_set(err, errlen, "%s state: version %u, this nvmevm reads %u", what, ver,
                       STATE_VER);
    if (rid != id)
        return err_set(err, errlen, "%s state: record is for index %u, not %u", what, rid, id);
    for (;;) {
        uint16_t tag = mig_get_u16(c);
        uint32_t len = mig_get_u32(c);
        if (c->bad)
            return err_set(err, errlen, "%s state: truncated item header", what);
        if (tag == 0) {
            if (len != 0)
                return err_set(err, errlen, "%s state: end marker with length %u", what, len);
            break;
        }
        if (tag >= ntags)
            return err_set(err, errlen, "%s state: unknown item %u (newer nvmevm?)", what, tag);
        if (it[tag].p)
            return err_set(err, errlen, "%s state: item %u appears twice", what, tag);
        if (len > c->len - c->pos)
            return err_set(err, errlen, "%s state: item %u claims %u bytes, %zu remain", what, tag,
                           len, c->len - c->pos);
        it[tag].p = c->data + c->pos;
        it[tag].len = len;
        c->pos += len;
    }
    if (!mig_cursor_done(c))
        return err_set(err, errlen, "%s state: %zu trailing bytes", what, c->len - c->pos);
    return 0;
}

/* Copies a fixed-size item; -1 if it is missing (when required) or has the wrong size. */
static int get_fixed(const struct item *it, void *dst, size_t size, bool required, const char *name,
                     char *err, size_t errlen)
{
    if (!it->p)
        return required ? err_set(err, errlen, "vCPU state: %s missing", name) : 0;
    if (it->len != size)
        return err_set(err, errlen, "%s: %u bytes, expected %zu", name, it->len, size);
    memcpy(dst, it->p, size);
    return 1;
}

/* ---- MSRs ---- */

struct msr_range {
    uint32_t lo, hi;
};

/* What migrates (a Firecracker-like allowlist): architectural and KVM paravirtual state,
 * not performance counters, LBRs or read-only feature MSRs. */
static const struct msr_range msr_allow[] = {
    {0x10, 0x12},             /* TSC, KVM_WALL_CLOCK, KVM_SYSTEM_TIME */
    {0x1b, 0x1b},             /* APIC_BASE */
    {0x3a, 0x3b},             /* FEATURE_CONTROL, TSC_ADJUST */
    {0x48, 0x48},             /* SPEC_CTRL */
    {0x10a, 0x10a},           /* ARCH_CAPABILITIES */
    {0x122, 0x122},           /* TSX_CTRL */
    {0x140, 0x140},           /* MISC_FEATURES_ENABLES */
    {0x174, 0x176},           /* SYSENTER_CS/ESP/EIP */
    {0x17a, 0x17b},           /* MCG_STATUS, MCG_CTL */
    {0x1a0, 0x1a0},           /* MISC_ENABLE */
    {0x1d9, 0x1d9},           /* DEBUGCTL */
    {0x200, 0x2ff},           /* MTRRs, PAT */
    {0x400, 0x47f},           /* MCi banks */
    {0x6e0, 0x6e0},           /* TSC_DEADLINE */
    {0xda0, 0xda0},           /* XSS */
    {0xc0000081, 0xc0000084}, /* STAR, LSTAR, CSTAR, SFMASK */
    {0xc0000100, 0xc0000103}, /* FS_BASE, GS_BASE, KERNEL_GS_BASE, TSC_AUX */
    {0xc0010015, 0xc0010015}, /* AMD HWCR */
    {0xc0010117, 0xc0010117}, /* AMD VM_HSAVE_PA */
    {0xc001011f, 0xc001011f}, /* AMD VIRT_SPEC_CTRL */
    {0x4b564d00, 0x4b564dff}, /* KVM paravirtual: kvmclock, async PF, steal time, PV EOI */
};

/* Losing one of these would break the guest: refuse instead of skipping. */
static const struct msr_range msr_essential[] = {
    {0x10, 0x12},
    {0x48, 0x48},
    {0x174, 0x176},
    {0x277, 0x277},
    {0x6e0, 0x6e0},
    {0xc0000081, 0xc0000084},
    {0xc0000102, 0xc0000103},
    {0x4b564d00, 0x4b564dff},
};

/* KVM_GET_MSR_INDEX_LIST leaves these out; KVM has 8 variable ranges. */
static const uint32_t mtrr_msrs[] = {0x2ff, 0x250, 0x258, 0x259, 0x268, 0x269,
                                     0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f};

static bool in_ranges(const struct msr_range *r, size_t n, uint32_t idx)
{
    for (size_t i = 0; i < n; i++)
        if (idx >= r[i].lo && idx <= r[i].hi)
            return true;
    return false;
}

#define IN(tbl, idx) in_ranges(tbl, sizeof(tbl) / sizeof(tbl[0]), idx)

static bool msr_is_essential(uint32_t idx)
{
    return IN(msr_essential, idx);
}

/* The MSR indices to save: KVM's list filtered by the allowlist, plus the MTRRs. */
static int msr_list(struct vm *vm, uint32_t **out, size_t *nout, char *err, size_t errlen)
{
    struct kvm_msr_list probe = {.nmsrs = 0};
    if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
        return err_set(err, errlen, "KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
    uint32_t n = probe.nmsrs;
    if (n > 16384)
        return err_set(err, errlen, "KVM_GET_MSR_INDEX_LIST: %u MSRs", n);
    struct kvm_msr_list *l = calloc(1, sizeof(*l) + (size_t)n * 4);
    uint32_t *idx = calloc((size_t)n + sizeof(mtrr_msrs) / 4 + 16, 4);
    if (!l || !idx) {
        free(l);
        free(idx);
        return err_set(err, errlen, "out of memory");
    }
    l->nmsrs = n;
    if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
        int e = errno;
        free(l);
        free(idx);
        return err_set(err, errlen, "KVM_GET_MSR_INDEX_LIST: %s", strerror(e));
    }
    size_t k = 0;
    for (uint32_t i = 0; i < l->nmsrs && i < n; i++)
        if (IN(msr_allow, l->indices[i]))
            idx[k++] = l->indices[i];
    for (size_t m = 0; m < sizeof(mtrr_msrs) / 4; m++) {
        bool dup = false;
        for (size_t j = 0; j < k && !dup; j++)
            dup = idx[j] == mtrr_msrs[m];
        if (!dup)
            idx[k++] = mtrr_msrs[m];
    }
    free(l);
    *out = idx;
    *nout = k;
    return 0;
}

struct msr_set {
    struct kvm_msrs hdr;
    struct kvm_msr_entry e[MSR_CHUNK];
};

/*
 * GET or SET (req) the n entries in chunks. KVM stops at the first MSR it refuses and
 * returns how many it did; that one is skipped (ok[i] = false) and the rest still go, unless
 * it is essential. Returns 0 or -1.
 */
static int msrs_xfer(struct vcpu *v, unsigned long req, struct kvm_msr_entry *ent, bool *ok,
                     size_t n, char *err, size_t errlen)
{
    const char *name = req == KVM_GET_MSRS ? "KVM_GET_MSRS" : "KVM_SET_MSRS";
    struct msr_set *s = calloc(1, sizeof(*s));
    if (!s)
        return err_set(err, errlen, "out of memory");
    size_t i = 0;
    while (i < n) {
        size_t batch = n - i < MSR_CHUNK ? n - i : MSR_CHUNK;
        memset(s, 0, sizeof(*s));
        s->hdr.nmsrs = (uint32_t)batch;
        memcpy(s->e, ent + i, batch * sizeof(*ent));
        int r = ioctl(v->fd, req, s);
        if (r < 0) {
            int e = errno;
            free(s);
            return err_set(err, errlen, "vCPU %d: %s: %s", v->id, name, strerror(e));
        }
        if ((size_t)r > batch)
            r = (int)batch;
        for (int j = 0; j < r; j++) {
            ent[i + (size_t)j] = s->e[j];
            ok[i + (size_t)j] = true;
        }
        i += (size_t)r;
        if ((size_t)r < batch) {
            uint32_t bad = ent[i].index;
            if (msr_is_essential(bad)) {
                free(s);
                return err_set(err, errlen, "vCPU %d: %s: this host's KVM refuses MSR 0x%x", v->id,
                               name, bad);
            }
            debug_msg("vCPU %d: %s: MSR 0x%x skipped", v->id, name, bad);
            ok[i] = false;
            i++;
        }
    }
    free(s);
    return 0;
}

static int save_msrs(struct vcpu *v, const struct kvm_lapic_state *lapic, struct mig_buf *b,
                     char *err, size_t errlen)
{
    uint32_t *idx = NULL;
    size_t n = 0;
    if (msr_list(v->vm, &idx, &n, err, errlen) < 0)
        return -1;
    struct kvm_msr_entry *ent = calloc(n ? n : 1, sizeof(*ent));
    bool *ok = calloc(n ? n : 1, sizeof(*ok));
    int ret = -1;
    if (!ent || !ok) {
        err_set(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        ent[i].index = idx[i];
    if (msrs_xfer(v, KVM_GET_MSRS, ent, ok, n, err, errlen) < 0)
        goto out;

    /* A zero TSC_DEADLINE with the LAPIC timer in deadline mode may mean "just fired, not
     * yet delivered": re-arm it at the current TSC (one spurious tick at worst, never a
     * lost one), as Firecracker does. */
    uint32_t lvtt = le32_get((const uint8_t *)lapic->regs + APIC_LVTT);
    bool deadline_mode =
        !(lvtt & LVT_MASKED) && ((lvtt >> LVTT_MODE_SHIFT) & 3) == LVTT_MODE_DEADLINE;
    uint64_t tsc = 0;
    bool have_tsc = false;
    for (size_t i = 0; i < n; i++)
        if (ok[i] && ent[i].index == MSR_IA32_TSC) {
            tsc = ent[i].data;
            have_tsc = true;
        }
    if (!have_tsc) {
        err_set(err, errlen, "vCPU %d: IA32_TSC not readable", v->id);
        goto out;
    }
    uint32_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ok[i])
            continue;
        if (ent[i].index == MSR_IA32_TSC_DEADLINE && deadline_mode && ent[i].data == 0)
            ent[i].data = tsc;
        count++;
    }
    mig_put_u16(b, T_MSRS);
    mig_put_u32(b, 4 + count * MSR_RECSIZE);
    mig_put_u32(b, count);
    for (size_t i = 0; i < n; i++) {
        if (!ok[i])
            continue;
        mig_put_u32(b, ent[i].index);
        mig_put_u64(b, ent[i].data);
    }
    ret = 0;
out:
    free(idx);
    free(ent);
    free(ok);
    return ret;
}

/* All MSRs but TSC_DEADLINE, then TSC_DEADLINE: its value is relative to IA32_TSC. */
static int load_msrs(struct vcpu *v, const struct item *it, char *err, size_t errlen)
{
    uint32_t count = le32_get(it->p);
    struct kvm_msr_entry *ent = calloc(count ? count : 1, sizeof(*ent));
    bool *ok = calloc(count ? count : 1, sizeof(*ok));
    int ret = -1;
    if (!ent || !ok) {
        err_set(err, errlen, "out of memory");
        goto out;
    }
    size_t n = 0;
    struct kvm_msr_entry deadline = {0};
    bool have_deadline = false;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *p = it->p + 4 + (size_t)i * MSR_RECSIZE;
        struct kvm_msr_entry e = {.index = le32_get(p), .data = le64_get(p + 4)};
        if (e.index == MSR_IA32_TSC_DEADLINE) {
            deadline = e;
            have_deadline = true;
        } else {
            ent[n++] = e;
        }
    }
    if (msrs_xfer(v, KVM_SET_MSRS, ent, ok, n, err, errlen) < 0)
        goto out;
    bool dok = false;
    if (have_deadline && msrs_xfer(v, KVM_SET_MSRS, &deadline, &dok, 1, err, errlen) < 0)
        goto out;
    ret = 0;
out:
    free(ent);
    free(ok);
    return ret;
}

/* ---- vCPU ---- */

static int vcpu_get(struct vcpu *v, unsigned long req, void *arg, const char *name, char *err,
                    size_t errlen)
{
    if (ioctl(v->fd, req, arg) < 0)
        return err_set(err, errlen, "vCPU %d: %s: %s", v->id, name, strerror(errno));
    return 0;
}

static int save_cpuid(struct vcpu *v, struct mig_buf *b, char *err, size_t errlen)
{
    for (uint32_t n = 64; n <= MAX_CPUID * 4; n *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
        if (!c)
            return err_set(err, errlen, "out of memory");
        c->nent = n;
        if (ioctl(v->fd, KVM_GET_CPUID2, c) == 0) {
            if (c->nent > MAX_CPUID) {
                uint32_t nent = c->nent;
                free(c);
                return err_set(err, errlen, "vCPU %d: %u CPUID entries", v->id, nent);
            }
            size_t len = (size_t)c->nent * sizeof(c->entries[0]);
            mig_put_u16(b, T_CPUID);
            mig_put_u32(b, (uint32_t)(4 + len));
            mig_put_u32(b, c->nent);
            mig_put_bytes(b, c->entries, len);
            free(c);
            return 0;
        }
        int e = errno;
        free(c);
        if (e != E2BIG)
            return err_set(err, errlen, "vCPU %d: KVM_GET_CPUID2: %s", v->id, strerror(e));
    }
    return err_set(err, errlen, "vCPU %d: KVM_GET_CPUID2: too many entries", v->id);
}

static int save_fpu_state(struct vcpu *v, struct mig_buf *b, char *err, size_t errlen)
{
    struct vm *vm = v->vm;
    int size = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
    if (size > 0 || has_cap(vm, KVM_CAP_XSAVE)) {
        size_t sz = size > (int)sizeof(struct kvm_xsave) ? (size_t)size : sizeof(struct kvm_xsave);
        if (sz > MAX_XSAVE)
            return err_set(err, errlen, "vCPU %d: XSAVE area of %zu bytes", v->id, sz);
        struct kvm_xsave *x = calloc(1, sz);
        if (!x)
            return err_set(err, errlen, "out of memory");
        unsigned long req = size > 0 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
        int r = vcpu_get(v, req, x, size > 0 ? "KVM_GET_XSAVE2" : "KVM_GET_XSAVE", err, errlen);
        if (r == 0)
            put_item(b, T_XSAVE, x, sz);
        free(x);
        return r;
    }
    struct kvm_fpu fpu;
    if (vcpu_get(v, KVM_GET_FPU, &fpu, "KVM_GET_FPU", err, errlen) < 0)
        return -1;
    put_item(b, T_FPU, &fpu, sizeof(fpu));
    return 0;
}

int vmstate_save_vcpu(struct vcpu *v, struct mig_buf *b, char *err, size_t errlen)
{
    struct vm *vm = v->vm;
    if (v->started && !vm_is_paused(vm))
        return err_set(err, errlen, "vCPU %d: running (pause the VM first)", v->id);
    mig_put_u32(b, VCPU_MAGIC);
    mig_put_u16(b, STATE_VER);
    mig_put_u16(b, (uint16_t)v->id);

    /* MP state first: reading it makes KVM accept pending INIT/SIPI events. */
    struct kvm_mp_state mp;
    if (vcpu_get(v, KVM_GET_MP_STATE, &mp, "KVM_GET_MP_STATE", err, errlen) < 0)
        return -1;
    put_item(b, T_MP_STATE, &mp, sizeof(mp));

    struct kvm_regs regs;
    if (vcpu_get(v, KVM_GET_REGS, &regs, "KVM_GET_REGS", err, errlen) < 0)
        return -1;
    put_item(b, T_REGS, &regs, sizeof(regs));

    if (has_cap(vm, KVM_CAP_SREGS2)) {
        struct kvm_sregs2 s2;
        if (vcpu_get(v, KVM_GET_SREGS2, &s2, "KVM_GET_SREGS2", err, errlen) < 0)
            return -1;
        put_item(b, T_SREGS2, &s2, sizeof(s2));
    } else {
        struct kvm_sregs s;
        if (vcpu_get(v, KVM_GET_SREGS, &s, "KVM_GET_SREGS", err, errlen) < 0)
            return -1;
        put_item(b, T_SREGS, &s, sizeof(s));
    }

    if (save_fpu_state(v, b, err, errlen) < 0)
        return -1;

    if (has_cap(vm, KVM_CAP_XCRS)) {
        struct kvm_xcrs x;
        if (vcpu_get(v, KVM_GET_XCRS, &x, "KVM_GET_XCRS", err, errlen) < 0)
            return -1;
        put_item(b, T_XCRS, &x, sizeof(x));
    }
    if (has_cap(vm, KVM_CAP_DEBUGREGS)) {
        struct kvm_debugregs d;
        if (vcpu_get(v, KVM_GET_DEBUGREGS, &d, "KVM_GET_DEBUGREGS", err, errlen) < 0)
            return -1;
        put_item(b, T_DEBUGREGS, &d, sizeof(d));
    }

    struct kvm_lapic_state lapic;
    if (vcpu_get(v, KVM_GET_LAPIC, &lapic, "KVM_GET_LAPIC", err, errlen) < 0)
        return -1;
    put_item(b, T_LAPIC, &lapic, sizeof(lapic));

    int khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
    if (khz > 0) {
        uint32_t k = (uint32_t)khz;
        put_item(b, T_TSC_KHZ, &k, sizeof(k));
    }
    if (save_cpuid(v, b, err, errlen) < 0)
        return -1;
    if (save_msrs(v, &lapic, b, err, errlen) < 0)
        return -1;

    /* Events last: pending exceptions, interrupts, NMIs, SIPI vector, interrupt shadow. */
    struct kvm_vcpu_events ev;
    if (vcpu_get(v, KVM_GET_VCPU_EVENTS, &ev, "KVM_GET_VCPU_EVENTS", err, errlen) < 0)
        return -1;
    put_item(b, T_EVENTS, &ev, sizeof(ev));

    mig_put_u16(b, T_END);
    mig_put_u32(b, 0);
    if (b->oom)
        return err_set(err, errlen, "vCPU %d: out of memory", v->id);
    return 0;
}

/* Decoded vCPU record, checked before any ioctl. */
struct vcpu_state {
    struct kvm_mp_state mp;
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_sregs2 sregs2;
    bool have_sregs2;
    struct kvm_fpu fpu;
    bool have_xsave;
    struct kvm_xcrs xcrs;
    bool have_xcrs;
    struct kvm_debugregs dregs;
    bool have_dregs;
    struct kvm_lapic_state lapic;
    struct kvm_vcpu_events ev;
    uint32_t tsc_khz;
};

static int decode_vcpu(struct vcpu *v, struct item *it, struct vcpu_state *s, char *err,
                       size_t errlen)
{
    if (get_fixed(&it[T_MP_STATE], &s->mp, sizeof(s->mp), true, "MP state", err, errlen) < 0 ||
        get_fixed(&it[T_REGS], &s->regs, sizeof(s->regs), true, "registers", err, errlen) < 0 ||
        get_fixed(&it[T_LAPIC], &s->lapic, sizeof(s->lapic), true, "LAPIC", err, errlen) < 0 ||
        get_fixed(&it[T_EVENTS], &s->ev, sizeof(s->ev), true, "events", err, errlen) < 0)
        return -1;
    int r = get_fixed(&it[T_SREGS2], &s->sregs2, sizeof(s->sregs2), false, "sregs2", err, errlen);
    if (r < 0)
        return -1;
    s->have_sregs2 = r > 0;
    r = get_fixed(&it[T_SREGS], &s->sregs, sizeof(s->sregs), !s->have_sregs2, "sregs", err, errlen);
    if (r < 0)
        return -1;
    if (s->have_sregs2 && r > 0)
        return err_set(err, errlen, "vCPU state: both sregs and sregs2");
    r = get_fixed(&it[T_XCRS], &s->xcrs, sizeof(s->xcrs), false, "XCRs", err, errlen);
    if (r < 0)
        return -1;
    s->have_xcrs = r > 0;
    if (s->have_xcrs && s->xcrs.nr_xcrs > KVM_MAX_XCRS)
        return err_set(err, errlen, "XCRs: count %u", s->xcrs.nr_xcrs);
    r = get_fixed(&it[T_DEBUGREGS], &s->dregs, sizeof(s->dregs), false, "debugregs", err, errlen);
    if (r < 0)
        return -1;
    s->have_dregs = r > 0;
    s->tsc_khz = 0;
    if (get_fixed(&it[T_TSC_KHZ], &s->tsc_khz, 4, false, "TSC kHz", err, errlen) < 0)
        return -1;

    s->have_xsave = it[T_XSAVE].p != NULL;
    if (s->have_xsave) {
        if (it[T_FPU].p)
            return err_set(err, errlen, "vCPU state: both XSAVE and FPU");
        if (it[T_XSAVE].len < MIN_XSAVE || it[T_XSAVE].len > MAX_XSAVE)
            return err_set(err, errlen, "XSAVE: %u bytes", it[T_XSAVE].len);
    } else if (get_fixed(&it[T_FPU], &s->fpu, sizeof(s->fpu), true, "FPU/XSAVE", err, errlen) < 0) {
        return -1;
    }

    const struct item *c = &it[T_CPUID];
    if (!c->p)
        return err_set(err, errlen, "vCPU state: CPUID missing");
    if (c->len < 4 || le32_get(c->p) > MAX_CPUID ||
        c->len != 4 + le32_get(c->p) * sizeof(struct kvm_cpuid_entry2))
        return err_set(err, errlen, "CPUID: %u bytes do not hold the %u entries it claims", c->len,
                       c->len >= 4 ? le32_get(c->p) : 0);
    const struct item *m = &it[T_MSRS];
    if (!m->p)
        return err_set(err, errlen, "vCPU state: MSRs missing");
    if (m->len < 4 || le32_get(m->p) > MAX_MSRS || m->len != 4 + le32_get(m->p) * MSR_RECSIZE)
        return err_set(err, errlen, "MSRs: %u bytes do not hold the %u MSRs they claim", m->len,
                       m->len >= 4 ? le32_get(m->p) : 0);
    /* The source saves only allowlisted MSRs; anything else in a stream is an attempt to
     * set state nvmevm never migrates (e.g. an MSR that switches a host feature). */
    for (uint32_t i = 0; i < le32_get(m->p); i++) {
        uint32_t idx = le32_get(m->p + 4 + (size_t)i * MSR_RECSIZE);
        if (!IN(msr_allow, idx))
            return err_set(err, errlen,
                           "vCPU %d: MSR 0x%x in the stream is not one nvmevm migrates", v->id,
                           idx);
    }
    return 0;
}

int vmstate_check_vcpu(struct mig_cursor *c, unsigned id, char *err, size_t errlen)
{
    struct item it[T_VCPU_MAX];
    if (parse_record(c, VCPU_MAGIC, id, it, T_VCPU_MAX, "vCPU", err, errlen) < 0)
        return -1;
    struct vcpu_state *s = calloc(1, sizeof(*s));
    if (!s)
        return err_set(err, errlen, "out of memory");
    int ret = decode_vcpu(NULL, it, s, err, errlen);
    free(s);
    return ret;
}

static int load_cpuid(struct vcpu *v, const struct item *it, char *err, size_t errlen)
{
    uint32_t n = le32_get(it->p);
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (size_t)n * sizeof(c->entries[0]));
    if (!c)
        return err_set(err, errlen, "out of memory");
    c->nent = n;
    memcpy(c->entries, it->p + 4, (size_t)n * sizeof(c->entries[0]));
    int r = vcpu_get(v, KVM_SET_CPUID2, c, "KVM_SET_CPUID2", err, errlen);
    free(c);
    return r;
}

/* The guest calibrated against the source's TSC rate: it must not change. */
static int check_tsc_khz(struct vcpu *v, uint32_t want, char *err, size_t errlen)
{
    if (!want)
        return 0;
    int have = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
    if (have <= 0)
        return err_set(err, errlen, "vCPU %d: KVM_GET_TSC_KHZ: %s", v->id, strerror(errno));
    uint64_t diff = (uint64_t)(have > (int)want ? (uint32_t)have - want : want - (uint32_t)have);
    if (diff * 1000000 <= (uint64_t)want * KHZ_PPM)
        return 0;
    if (has_cap(v->vm, KVM_CAP_TSC_CONTROL) &&
        ioctl(v->fd, KVM_SET_TSC_KHZ, (unsigned long)want) == 0)
        return 0;
    return err_set(err, errlen,
                   "vCPU %d: guest TSC runs at %u kHz, this host at %d kHz and its "
                   "KVM cannot scale it",
                   v->id, want, have);
}

static int load_sregs(struct vcpu *v, struct vcpu_state *s, char *err, size_t errlen)
{
    if (!s->have_sregs2)
        return vcpu_get(v, KVM_SET_SREGS, &s->sregs, "KVM_SET_SREGS", err, errlen);
    if (has_cap(v->vm, KVM_CAP_SREGS2))
        return vcpu_get(v, KVM_SET_SREGS2, &s->sregs2, "KVM_SET_SREGS2", err, errlen);
    /* Without SREGS2 only the PAE PDPTRs are lost, and they only matter outside long mode. */
    const struct kvm_sregs2 *s2 = &s->sregs2;
    bool pae_legacy = (s2->cr0 & (1u << 31)) && (s2->cr4 & (1u << 5)) && !(s2->efer & (1u << 10));
    if ((s2->flags & KVM_SREGS2_FLAGS_PDPTRS_VALID) && pae_legacy)
        return err_set(err, errlen, "vCPU %d: guest uses PAE paging and this KVM lacks SREGS2",
                       v->id);
    struct kvm_sregs r = {.cs = s2->cs,
                          .ds = s2->ds,
                          .es = s2->es,
                          .fs = s2->fs,
                          .gs = s2->gs,
                          .ss = s2->ss,
                          .tr = s2->tr,
                          .ldt = s2->ldt,
                          .gdt = s2->gdt,
                          .idt = s2->idt,
                          .cr0 = s2->cr0,
                          .cr2 = s2->cr2,
                          .cr3 = s2->cr3,
                          .cr4 = s2->cr4,
                          .cr8 = s2->cr8,
                          .efer = s2->efer,
                          .apic_base = s2->apic_base};
    return vcpu_get(v, KVM_SET_SREGS, &r, "KVM_SET_SREGS", err, errlen);
}

static int load_xsave(struct vcpu *v, const struct item *it, char *err, size_t errlen)
{
    int cap = ioctl(v->vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
    if (cap <= 0 && !has_cap(v->vm, KVM_CAP_XSAVE))
        return err_set(err, errlen, "vCPU %d: this host's KVM has no XSAVE", v->id);
    size_t room = cap > (int)sizeof(struct kvm_xsave) ? (size_t)cap : sizeof(struct kvm_xsave);
    if (it->len > room) {
        /* Bytes past this host's size are fine only if they are unused (zero). */
        for (size_t i = room; i < it->len; i++)
            if (it->p[i])
                return err_set(err, errlen,
                               "vCPU %d: XSAVE state of %u bytes, this host "
                               "takes %zu",
                               v->id, it->len, room);
    }
    struct kvm_xsave *x = calloc(1, room);
    if (!x)
        return err_set(err, errlen, "out of memory");
    memcpy(x, it->p, it->len < room ? it->len : room);
    int r = vcpu_get(v, KVM_SET_XSAVE, x, "KVM_SET_XSAVE", err, errlen);
    free(x);
    return r;
}

int vmstate_load_vcpu(struct vcpu *v, struct mig_cursor *c, char *err, size_t errlen)
{
    struct vm *vm = v->vm;
    if (v->started)
        return err_set(err, errlen, "vCPU %d: already running", v->id);
    struct item it[T_VCPU_MAX];
    if (parse_record(c, VCPU_MAGIC, (unsigned)v->id, it, T_VCPU_MAX, "vCPU", err, errlen) < 0)
        return -1;
    struct vcpu_state *s = calloc(1, sizeof(*s));
    if (!s)
        return err_set(err, errlen, "out of memory");
    int ret = -1;
    if (decode_vcpu(v, it, s, err, errlen) < 0)
        goto out;
    if (s->have_xcrs && !has_cap(vm, KVM_CAP_XCRS)) {
        err_set(err, errlen, "vCPU %d: guest uses XCR0 and this host's KVM lacks XCRS", v->id);
        goto out;
    }
    if (s->have_dregs && !has_cap(vm, KVM_CAP_DEBUGREGS) && (s->dregs.dr7 & 0xff)) {
        err_set(err, errlen, "vCPU %d: guest has breakpoints and this KVM lacks DEBUGREGS", v->id);
        goto out;
    }

    /* CPUID first: KVM derives which MSRs and XSAVE features exist from it. The vCPU has
     * not run, so replacing what vcpu_setup_boot set is allowed. */
    if (load_cpuid(v, &it[T_CPUID], err, errlen) < 0 ||
        check_tsc_khz(v, s->tsc_khz, err, errlen) < 0)
        goto out;
    if (vcpu_get(v, KVM_SET_MP_STATE, &s->mp, "KVM_SET_MP_STATE", err, errlen) < 0)
        goto out;
    /* SET_REGS drops pending exceptions: events come after it. */
    if (vcpu_get(v, KVM_SET_REGS, &s->regs, "KVM_SET_REGS", err, errlen) < 0)
        goto out;
    if (load_sregs(v, s, err, errlen) < 0)
        goto out;
    if (s->have_xsave ? load_xsave(v, &it[T_XSAVE], err, errlen) < 0
                      : vcpu_get(v, KVM_SET_FPU, &s->fpu, "KVM_SET_FPU", err, errlen) < 0)
        goto out;
    if (s->have_xcrs && vcpu_get(v, KVM_SET_XCRS, &s->xcrs, "KVM_SET_XCRS", err, errlen) < 0)
        goto out;
    if (s->have_dregs && has_cap(vm, KVM_CAP_DEBUGREGS) &&
        vcpu_get(v, KVM_SET_DEBUGREGS, &s->dregs, "KVM_SET_DEBUGREGS", err, errlen) < 0)
        goto out;
    /* LAPIC after SREGS (APIC base) and before the MSRs (TSC_DEADLINE needs the timer mode). */
    if (vcpu_get(v, KVM_SET_LAPIC, &s->lapic, "KVM_SET_LAPIC", err, errlen) < 0)
        goto out;
    if (load_msrs(v, &it[T_MSRS], err, errlen) < 0)
        goto out;
    s->ev.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
    if (vcpu_get(v, KVM_SET_VCPU_EVENTS, &s->ev, "KVM_SET_VCPU_EVENTS", err, errlen) < 0)
        goto out;
    ret = 0;
out:
    free(s);
    return ret;
}

/* ---- VM ---- */

int vmstate_save_vm(struct vm *vm, struct mig_buf *b, char *err, size_t errlen)
{
    mig_put_u32(b, VM_MAGIC);
    mig_put_u16(b, STATE_VER);
    mig_put_u16(b, 0);
    for (uint32_t chip = 0; chip < 3; chip++) {
        struct kvm_irqchip ic = {.chip_id = chip};
        if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &ic) < 0)
            return err_set(err, errlen, "KVM_GET_IRQCHIP %u: %s", chip, strerror(errno));
        put_item(b, (uint16_t)(V_PIC_MASTER + chip), &ic, sizeof(ic));
    }
    struct kvm_pit_state2 pit;
    if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0)
        return err_set(err, errlen, "KVM_GET_PIT2: %s", strerror(errno));
    put_item(b, V_PIT2, &pit, sizeof(pit));
    /* With flags, realtime and host_tsc when this KVM has them (kept for diagnosis; the load
     * continues the clock from .clock). */
    struct kvm_clock_data clk;
    memset(&clk, 0, sizeof(clk));
    if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clk) < 0)
        return err_set(err, errlen, "KVM_GET_CLOCK: %s", strerror(errno));
    put_item(b, V_CLOCK, &clk, sizeof(clk));
    mig_put_u16(b, V_END);
    mig_put_u32(b, 0);
    if (b->oom)
        return err_set(err, errlen, "VM state: out of memory");
    return 0;
}

static const char *const chip_name[3] = {"PIC master", "PIC slave", "IOAPIC"};

static int decode_vm(struct mig_cursor *c, struct kvm_irqchip ic[3], struct kvm_pit_state2 *pit,
                     struct kvm_clock_data *clk, char *err, size_t errlen)
{
    struct item it[V_VM_MAX];
    if (parse_record(c, VM_MAGIC, 0, it, V_VM_MAX, "VM", err, errlen) < 0)
        return -1;
    for (unsigned i = 0; i < 3; i++) {
        if (get_fixed(&it[V_PIC_MASTER + i], &ic[i], sizeof(ic[i]), true, chip_name[i], err,
                      errlen) < 0)
            return -1;
        if (ic[i].chip_id != i)
            return err_set(err, errlen, "%s: chip id %u", chip_name[i], ic[i].chip_id);
    }
    if (get_fixed(&it[V_PIT2], pit, sizeof(*pit), true, "PIT", err, errlen) < 0 ||
        get_fixed(&it[V_CLOCK], clk, sizeof(*clk), true, "kvmclock", err, errlen) < 0)
        return -1;
    return 0;
}

int vmstate_check_vm(struct mig_cursor *c, char *err, size_t errlen)
{
    struct kvm_irqchip ic[3];
    struct kvm_pit_state2 pit;
    struct kvm_clock_data clk;
    return decode_vm(c, ic, &pit, &clk, err, errlen);
}

int vmstate_load_vm(struct vm *vm, struct mig_cursor *c, char *err, size_t errlen)
{
    struct kvm_irqchip ic[3];
    struct kvm_pit_state2 pit;
    struct kvm_clock_data clk;
    if (decode_vm(c, ic, &pit, &clk, err, errlen) < 0)
        return -1;

    if (ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0)
        return err_set(err, errlen, "KVM_SET_PIT2: %s", strerror(errno));
    /* The guest's clock continues from the saved value: it neither goes backwards nor sees
     * the downtime, like the TSC (see vmstate.h). */
    struct kvm_clock_data set = {.clock = clk.clock};
    if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &set) < 0)
        return err_set(err, errlen, "KVM_SET_CLOCK: %s", strerror(errno));
    for (unsigned i = 0; i < 3; i++)
        if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &ic[i]) < 0)
            return err_set(err, errlen, "KVM_SET_IRQCHIP (%s): %s", chip_name[i], strerror(errno));
    return 0;
}

int vmstate_kvmclock_ctrl(struct vm *vm, char *err, size_t errlen)
{
    for (int i = 0; i < vm->ncpus; i++) {
        if (ioctl(vm->vcpus[i]->fd, KVM_KVMCLOCK_CTRL, 0) == 0)
            continue;
        if (errno == EINVAL || errno == ENOTTY)
            continue; /* no kvmclock in this guest (or KVM) */
        return err_set(err, errlen, "vCPU %d: KVM_KVMCLOCK_CTRL: %s", i, strerror(errno));
    }
    return 0;
}
