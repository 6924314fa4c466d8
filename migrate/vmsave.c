#include "migrate/vmsave.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "emu/nvme.h"
#include "hw/i8042.h"
#include "hw/msix.h"
#include "kvm/nvme_pci.h"
#include "hw/pci.h"
#include "hw/rtc.h"
#include "hw/uart.h"
#include "kvm/vcpu.h"
#include "kvm/vm.h"
#include "kvm/vmstate.h"
#include "util/buf.h"
#include "migrate/stream.h"
#include "util/err.h"

static int put(struct mig_stream *s, uint32_t id, struct mig_buf *b, char *err, size_t errlen)
{
    if (b->oom) {
        return err_set(err, errlen, "out of memory saving section 0x%x", id);
    }
    int r = mig_write_section(s, id, 1, b->data, b->len);
    b->len = 0;
    if (r < 0) {
        return err_set(err, errlen, "sending section 0x%x: %s", id, strerror(-r));
    }
    return 0;
}

int vmsave_write_all(struct vm *vm, struct mig_stream *s, char *err, size_t errlen)
{
    struct mig_buf b;
    mig_buf_init(&b);
    int r = -1;
    pci_bus_save(vm->pci, &b);
    if (put(s, MIG_SEC_PCI, &b, err, errlen) < 0)
        goto out;
    if (vm->nvme) {
        msix_save(nvme_pci_msix(vm->nvme), &b);
        if (put(s, MIG_SEC_MSIX, &b, err, errlen) < 0)
            goto out;
        nvme_ctrl_save(nvme_pci_ctrl(vm->nvme), &b);
        if (put(s, MIG_SEC_NVME, &b, err, errlen) < 0)
            goto out;
    }
    uart_save(vm->uart, &b);
    if (put(s, MIG_SEC_UART, &b, err, errlen) < 0)
        goto out;
    i8042_save(vm->kbd, &b);
    if (put(s, MIG_SEC_I8042, &b, err, errlen) < 0)
        goto out;
    rtc_save(vm->rtc, &b);
    if (put(s, MIG_SEC_RTC, &b, err, errlen) < 0)
        goto out;
    if (vmstate_save_vm(vm, &b, err, errlen) < 0 || put(s, MIG_SEC_IRQCHIP, &b, err, errlen) < 0)
        goto out;
    for (int i = 0; i < vm->ncpus; i++)
        if (vmstate_save_vcpu(vm->vcpus[i], &b, err, errlen) < 0 ||
            put(s, MIG_SEC_VCPU + (uint32_t)i, &b, err, errlen) < 0)
            goto out;
    r = 0;
out:
    mig_buf_free(&b);
    return r;
}

int vmsave_load_section(struct vm *vm, uint32_t id, uint16_t version, const uint8_t *payload,
                        size_t len, char *err, size_t errlen)
{
    struct mig_cursor c;
    mig_cursor_init(&c, payload, len);
    if (version != 1) {
        return err_set(err, errlen, "section 0x%x: version %u, this nvmevm reads 1", id, version);
    }
    switch (id) {
    case MIG_SEC_PCI:
        return pci_bus_load(vm->pci, &c, err, errlen);
    case MIG_SEC_MSIX:
    case MIG_SEC_NVME:
        if (!vm->nvme) {
            return err_set(err, errlen, "the stream has an NVMe controller, this VM has no disks");
        }
        if (id == MIG_SEC_MSIX)
            return msix_load(nvme_pci_msix(vm->nvme), &c, err, errlen);
        return nvme_ctrl_load(nvme_pci_ctrl(vm->nvme), &c, err, errlen);
    case MIG_SEC_UART:
        return uart_load(vm->uart, &c, err, errlen);
    case MIG_SEC_I8042:
        return i8042_load(vm->kbd, &c, err, errlen);
    case MIG_SEC_RTC:
        return rtc_load(vm->rtc, &c, err, errlen);
    case MIG_SEC_IRQCHIP:
        return vmstate_load_vm(vm, &c, err, errlen);
    default:
        if (id >= MIG_SEC_VCPU && id < MIG_SEC_VCPU + (uint32_t)vm->ncpus)
            return vmstate_load_vcpu(vm->vcpus[id - MIG_SEC_VCPU], &c, err, errlen);
        err_set(err, errlen, "unknown section 0x%x (vCPU sections beyond --cpus %d?)", id,
                 vm->ncpus);
        return -1;
    }
}
