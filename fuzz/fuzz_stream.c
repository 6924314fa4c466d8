/*
 * libFuzzer harness: every loader a migration stream reaches on the destination. The first
 * byte selects the target:
 *   0 mod 8  the whole stream through migrate/stream.c's reader (from a memfd), each section
 *            dispatched by id as incoming.c and vm_load_section do; with bit 7 set the
 *            harness first rewrites every section CRC so mutations get past the checksum
 *   1..7     one loader on the raw payload: NVMe section (MSI-X + controller, as
 *            kvm/nvme_pci.c's load_op), PCI config, uart, i8042, rtc, vCPU record, and
 *            (by bits 3-4) the VM irqchip record, the configuration or a RAM batch
 * A loader must accept or refuse with a reason, never crash; an NVMe state it accepted is
 * then run for a few passes, so a hostile state that passed the checks is exercised too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "emu/nvme.h"
#include "fuzz/fuzz_blk.h"
#include "hw/bus.h"
#include "hw/i8042.h"
#include "hw/msix.h"
#include "hw/pci.h"
#include "hw/rtc.h"
#include "hw/uart.h"
#include "kvm/nvme_pci.h"
#include "kvm/vm.h"
#include "kvm/vmstate.h"
#include "migrate/proto.h"
#include "migrate/ram.h"
#include "migrate/conn.h"
#include "migrate/stream.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/le.h"

#define RAM_SIZE (1u << 20)

/* The savers in ram.c and vmstate.c need the VM (kvm/vm.c); no loader calls these. */
void vm_dirty_log_sync(struct vm *vm, uint64_t *bm)
{
    (void)vm;
    (void)bm;
    abort();
}

bool vm_is_paused(struct vm *vm)
{
    (void)vm;
    abort();
}

struct machine {
    uint8_t *ram;
    struct vm vm;
    struct blk_dev *disk[2];
    struct nvme_ctrl *ctrl;
    struct msix msix;
    struct bus *pio, *mmio;
    struct pci_bus *pb;
    struct pci_dev pdev;
    struct uart *uart;
    struct i8042 *kbd;
    struct rtc *rtc;
};

static void on_msix(void *o, uint16_t v)
{
    (void)o;
    (void)v;
}

static void on_intx(void *o, int level)
{
    (void)o;
    (void)level;
}

static const struct nvme_host_ops host_ops = {.msix_notify = on_msix, .intx_set = on_intx};

static void deliver(void *o, unsigned vec, uint64_t addr, uint32_t data)
{
    (void)o;
    (void)vec;
    (void)addr;
    (void)data;
}

static const struct msix_ops mx_ops = {.deliver = deliver};

static void bar_io(void *o, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
    (void)o;
    (void)off;
    if (!is_write)
        memset(data, 0xff, len);
}

static time_t fixed_time(void)
{
    return 1700000000;
}

static void machine_init(struct machine *m)
{
    static uint8_t *ram;
    if (!ram)
        ram = malloc(RAM_SIZE);
    memset(ram, 0, RAM_SIZE);
    memset(m, 0, sizeof(*m));
    m->ram = ram;
    guest_mem_layout(&m->vm.mem, ram, RAM_SIZE, RAM_SIZE);
    m->vm.ncpus = 2;
    struct nvme_ctrl_config *cfg = &m->vm.disks;
    *cfg = (struct nvme_ctrl_config){
        .serial = "FUZZ0002", .nr_io_queues = 4, .mqes = 255, .mdts = 5, .nr_ns = 2};
    m->disk[0] = fblk_new(64 << 10, false);
    m->disk[1] = fblk_new(32 << 10, true);
    cfg->ns[0] = (struct nvme_ns_config){.blk = m->disk[0], .lba_shift = 9};
    cfg->ns[1] = (struct nvme_ns_config){.blk = m->disk[1], .lba_shift = 12};
    m->ctrl = nvme_ctrl_new(cfg, &m->vm.mem, &host_ops, m);
    if (!m->ctrl)
        abort();
    fblk_set_auto(m->disk[0], true);
    fblk_set_auto(m->disk[1], true);
    msix_init(&m->msix, NVME_NR_VECTORS, &mx_ops, m);

    m->pio = bus_new("pio");
    m->mmio = bus_new("mmio");
    m->pb = pci_bus_new(m->pio, m->mmio, 0xc0000000ull, 0x10000000ull);
    pci_set_ids(&m->pdev, 0x1b36, 0x0010);
    pci_set_class(&m->pdev, 0x010802, 0x01);
    msix_cap_build(&m->msix, m->pdev.cfg, m->pdev.wmask, 0x40, 0, 0, 0x2000, 0x3000);
    m->pdev.bar[0] = (struct pci_bar){.kind = PCI_BAR_MEM64, .size = 0x4000, .fn = bar_io};
    if (!m->pb || pci_add_device(m->pb, &m->pdev) < 0)
        abort();
    m->uart = uart_new(-1, NULL, NULL);
    m->kbd = i8042_new(NULL, NULL);
    m->rtc = rtc_new();
    rtc_set_time_source(m->rtc, fixed_time);
}

static void machine_free(struct machine *m)
{
    nvme_ctrl_free(m->ctrl);
    fblk_free(m->disk[0]);
    fblk_free(m->disk[1]);
    pci_bus_free(m->pb);
    bus_free(m->pio);
    bus_free(m->mmio);
    uart_free(m->uart);
    i8042_free(m->kbd);
    rtc_free(m->rtc);
    free(m->vm.mem.dirty);
}

/* The NVMe section: u32 length + MSI-X state, then the controller (kvm/nvme_pci.c). */
static int load_nvme(struct machine *m, struct mig_cursor *c, char *err, size_t errlen)
{
    uint32_t len = mig_get_u32(c);
    if (c->bad || len > c->len - c->pos)
        return err_set(err, errlen, "nvme: MSI-X state truncated");
    struct mig_cursor mc;
    mig_cursor_init(&mc, c->data + c->pos, len);
    c->pos += len;
    if (msix_load(&m->msix, &mc, err, errlen) < 0)
        return -1;
    if (nvme_ctrl_load(m->ctrl, c, err, errlen) < 0)
        return -1;
    nvme_ctrl_post_load(m->ctrl);
    /* Run what was accepted: parked completions, queued commands, interrupts. */
    for (int i = 0; i < 4; i++)
        if (!nvme_ctrl_process(m->ctrl))
            break;
    return 0;
}

static void poke_legacy(struct machine *m)
{
    uint8_t b;
    for (unsigned r = 0; r < 8; r++)
        uart_io(m->uart, r, &b, 1, false);
    i8042_io(m->kbd, 0x64, &b, 1, false);
    i8042_io(m->kbd, 0x60, &b, 1, false);
    b = 0x0a;
    rtc_io(m->rtc, 0, &b, 1, true);
    rtc_io(m->rtc, 1, &b, 1, false);
}

static int load_one(struct machine *m, uint32_t id, const uint8_t *p, size_t len, char *err,
                    size_t errlen)
{
    struct mig_cursor c;
    mig_cursor_init(&c, p, len);
    int r;
    switch (id) {
    case MIG_SEC_CONFIG:
        return proto_config_check(&m->vm, PROTO_CONFIG_VERSION, &c, err, errlen);
    case MIG_SEC_RAM:
        return ram_receive(&m->vm, p, len, err, errlen);
    case NVME_SECTION:
        return load_nvme(m, &c, err, errlen);
    case PCI_CONFIG_SECTION:
        return pci_bus_load(m->pb, &c, err, errlen);
    case UART_SECTION:
        r = uart_load(m->uart, &c, err, errlen);
        break;
    case I8042_SECTION:
        r = i8042_load(m->kbd, &c, err, errlen);
        break;
    case RTC_SECTION:
        r = rtc_load(m->rtc, &c, err, errlen);
        break;
    case VM_SECTION_KVM:
        return vmstate_check_vm(&c, err, errlen);
    default:
        if (id >= VM_SECTION_VCPU && id < VM_SECTION_VCPU + 2)
            return vmstate_check_vcpu(&c, id - VM_SECTION_VCPU, err, errlen);
        return err_set(err, errlen, "unknown section 0x%x", id);
    }
    if (r == 0)
        poke_legacy(m);
    return r;
}

/* A refusal is one line that says why. */
static int load_section(struct machine *m, uint32_t id, const uint8_t *p, size_t len, char *err,
                        size_t errlen)
{
    err[0] = 0;
    int r = load_one(m, id, p, len, err, errlen);
    if (r < 0 && (!err[0] || strchr(err, '\n'))) {
        fprintf(stderr, "fuzz_stream: section 0x%x refused without a one-line reason: '%s'\n", id,
                err);
        abort();
    }
    return r;
}

/* Rewrites each section's CRC32C in place, walking the framing as far as it is sane. */
static void fix_crcs(uint8_t *d, size_t n)
{
    size_t pos = 16;
    while (pos + MIG_SECTION_HDR <= n) {
        uint64_t len = le64_get(d + pos + 8);
        if (len > n - pos - MIG_SECTION_HDR)
            return;
        le32_put(d + pos + 16, mig_crc32c(0, d + pos + MIG_SECTION_HDR, len));
        pos += MIG_SECTION_HDR + len;
    }
}

static int stream_fd = -1;

static void run_stream(struct machine *m, const uint8_t *data, size_t size, bool fix)
{
    if (stream_fd < 0 && (stream_fd = memfd_create("fuzz-stream", MFD_CLOEXEC)) < 0)
        abort();
    uint8_t *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    if (fix)
        fix_crcs(copy, size);
    if (ftruncate(stream_fd, 0) < 0 || pwrite(stream_fd, copy, size, 0) != (ssize_t)size ||
        lseek(stream_fd, 0, SEEK_SET) != 0)
        abort();
    free(copy);
    struct mig_stream s;
    struct mig_conn conn; /* not closed: stream_fd is reused by the next input */
    mig_conn_plain(&conn, stream_fd, 0);
    mig_stream_init(&s, &conn);
    char err[256];
    if (mig_read_header(&s, err, sizeof(err)) == 0) {
        for (int i = 0; i < 64; i++) {
            uint32_t id;
            uint16_t ver;
            uint8_t *p = NULL;
            size_t len = 0;
            if (mig_read_section(&s, &id, &ver, &p, &len, err, sizeof(err)) < 0)
                break;
            int r = id == MIG_SEC_END ? 1 : load_section(m, id, p, len, err, sizeof(err));
            free(p);
            if (r)
                break;
        }
    }
    mig_stream_free(&s);
}

/* ---- seeds: FUZZ_WRITE_SEEDS=dir fuzz_stream writes real saved states and exits ---- */

static void write_seed(const char *dir, const char *name, uint8_t sel, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(&sel, 1, 1, f) != 1 || (n && fwrite(p, 1, n, f) != n) || fclose(f))
        abort();
}

static void save_nvme(struct machine *m, struct mig_buf *b)
{
    struct mig_buf x;
    mig_buf_init(&x);
    msix_save(&m->msix, &x);
    mig_put_u32(b, (uint32_t)x.len);
    mig_put_bytes(b, x.data, x.len);
    mig_buf_free(&x);
    nvme_ctrl_save(m->ctrl, b);
}

static void write_seeds(const char *dir)
{
    struct machine m;
    machine_init(&m);
    /* A running controller with its admin queue, as a guest leaves it. */
    nvme_ctrl_mmio_write(m.ctrl, 0x24, 15u << 16 | 15u, 4);
    nvme_ctrl_mmio_write(m.ctrl, 0x28, 0x10000, 8);
    nvme_ctrl_mmio_write(m.ctrl, 0x30, 0x11000, 8);
    nvme_ctrl_mmio_write(m.ctrl, 0x14, 1 | 6 << 16 | 4 << 20, 4);
    nvme_ctrl_process(m.ctrl);
    struct {
        const char *name;
        uint32_t id;
        uint8_t sel;
    } sec[] = {{"config", MIG_SEC_CONFIG, 7 | 1 << 3},
               {"nvme", NVME_SECTION, 1},
               {"pci", PCI_CONFIG_SECTION, 2},
               {"uart", UART_SECTION, 3},
               {"i8042", I8042_SECTION, 4},
               {"rtc", RTC_SECTION, 5}};
    int fd = memfd_create("seed", MFD_CLOEXEC);
    struct mig_stream st;
    struct mig_conn conn;
    mig_conn_plain(&conn, fd, 0);
    mig_stream_init(&st, &conn);
    mig_write_header(&st);
    for (size_t i = 0; i < sizeof(sec) / sizeof(sec[0]); i++) {
        struct mig_buf b;
        mig_buf_init(&b);
        switch (sec[i].id) {
        case MIG_SEC_CONFIG:
            proto_config_put(&m.vm, &b);
            break;
        case NVME_SECTION:
            save_nvme(&m, &b);
            break;
        case PCI_CONFIG_SECTION:
            pci_bus_save(m.pb, &b);
            break;
        case UART_SECTION:
            uart_save(m.uart, &b);
            break;
        case I8042_SECTION:
            i8042_save(m.kbd, &b);
            break;
        default:
            rtc_save(m.rtc, &b);
        }
        write_seed(dir, sec[i].name, sec[i].sel, b.data, b.len);
        mig_write_section(&st, sec[i].id, sec[i].id == MIG_SEC_CONFIG ? PROTO_CONFIG_VERSION : 1,
                          b.data, b.len);
        mig_buf_free(&b);
    }
    mig_write_end(&st);
    off_t len = lseek(fd, 0, SEEK_END);
    uint8_t *all = malloc((size_t)len);
    if (pread(fd, all, (size_t)len, 0) != len)
        abort();
    write_seed(dir, "stream", 0x80, all, (size_t)len);
    free(all);
    mig_stream_free(&st);
    close(fd);
    machine_free(&m);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("FUZZ_WRITE_SEEDS");
    if (dir) {
        write_seeds(dir);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    struct machine m;
    machine_init(&m);
    char err[256];
    static const uint32_t direct[8] = {
        0,           NVME_SECTION,        PCI_CONFIG_SECTION, UART_SECTION, I8042_SECTION,
        RTC_SECTION, VM_SECTION_VCPU + 1, VM_SECTION_KVM};
    static const uint32_t more[4] = {VM_SECTION_KVM, MIG_SEC_CONFIG, MIG_SEC_RAM, VM_SECTION_VCPU};
    if (sel % 8 == 0) {
        run_stream(&m, data, size, sel & 0x80);
    } else {
        uint32_t id = sel % 8 == 7 ? more[sel >> 3 & 3] : direct[sel % 8];
        uint8_t *copy = malloc(size ? size : 1); /* exact size: ASan sees any over-read */
        memcpy(copy, data, size);
        load_section(&m, id, copy, size, err, sizeof(err));
        free(copy);
    }
    machine_free(&m);
    return 0;
}
