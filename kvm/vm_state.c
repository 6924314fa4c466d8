/*
 * The VM's side of live migration: quiesce and restart, and its state as sections. The
 * device table (kvm/vm.c) decides what is saved and in which order; each device saves and
 * loads itself (hw/device.h); the VM adds its in-kernel state and its vCPUs (kvm/vmstate.c).
 * Nothing here knows the wire format: sections go out through the caller's emit function.
 */
#include <stdio.h>
#include <string.h>

#include "hw/device.h"
#include "kvm/vcpu.h"
#include "kvm/vm.h"
#include "kvm/vmstate.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"

#define VM_SECTION_VERSION 1 /* of VM_SECTION_KVM and VM_SECTION_VCPU */

void vm_quiesce(struct vm *vm)
{
    vm_pause(vm);
    for (int i = 0; i < vm->ndevs; i++)
        if (vm->devs[i].ops->quiesce)
            vm->devs[i].ops->quiesce(vm->devs[i].dev);
}

int vm_unquiesce(struct vm *vm, char *err, size_t errlen)
{
    for (int i = 0; i < vm->ndevs; i++) {
        const struct device_ops *ops = vm->devs[i].ops;
        if (ops->start && ops->start(vm->devs[i].dev, err, errlen) < 0)
            return -1;
    }
    char cerr[160];
    if (vmstate_kvmclock_ctrl(vm, cerr, sizeof(cerr)) < 0)
        debug_msg("%s", cerr);
    vm_resume(vm);
    return 0;
}

static int emit_buf(vm_emit_fn emit, void *opaque, uint32_t id, uint16_t version, struct mig_buf *b,
                    char *err, size_t errlen)
{
    if (b->oom)
        return err_set(err, errlen, "out of memory saving section 0x%x", id);
    int r = emit(opaque, id, version, b->data, b->len, err, errlen);
    b->len = 0;
    return r;
}

int vm_save_state(struct vm *vm, vm_emit_fn emit, void *opaque, char *err, size_t errlen)
{
    struct mig_buf b;
    mig_buf_init(&b);
    int r = -1;
    for (int i = 0; i < vm->ndevs; i++) {
        const struct device_ops *ops = vm->devs[i].ops;
        if (!ops->section)
            continue;
        if (ops->save(vm->devs[i].dev, &b, err, errlen) < 0 ||
            emit_buf(emit, opaque, ops->section, ops->version, &b, err, errlen) < 0)
            goto out;
    }
    if (vmstate_save_vm(vm, &b, err, errlen) < 0 ||
        emit_buf(emit, opaque, VM_SECTION_KVM, VM_SECTION_VERSION, &b, err, errlen) < 0)
        goto out;
    for (int i = 0; i < vm->ncpus; i++)
        if (vmstate_save_vcpu(vm->vcpus[i], &b, err, errlen) < 0 ||
            emit_buf(emit, opaque, VM_SECTION_VCPU + (uint32_t)i, VM_SECTION_VERSION, &b, err,
                     errlen) < 0)
            goto out;
    r = 0;
out:
    mig_buf_free(&b);
    return r;
}

int vm_sections(const struct vm *vm, uint32_t *ids, const char **names, int max)
{
    int n = 0;
    for (int i = 0; i < vm->ndevs && n < max; i++)
        if (vm->devs[i].ops->section) {
            ids[n] = vm->devs[i].ops->section;
            names[n++] = vm->devs[i].ops->name;
        }
    if (n < max) {
        ids[n] = VM_SECTION_KVM;
        names[n++] = "KVM irqchip/PIT/clock";
    }
    for (int i = 0; i < vm->ncpus && n < max; i++) {
        ids[n] = VM_SECTION_VCPU + (uint32_t)i;
        names[n++] = "vCPU";
    }
    return n;
}

static int check_version(uint32_t id, const char *what, uint16_t version, uint16_t want, char *err,
                         size_t errlen)
{
    if (version == want)
        return 0;
    return err_set(err, errlen, "section 0x%x (%s): version %u, this nvmevm reads %u", id, what,
                   version, want);
}

int vm_load_section(struct vm *vm, uint32_t id, uint16_t version, const uint8_t *payload,
                    size_t len, char *err, size_t errlen)
{
    struct mig_cursor c;
    mig_cursor_init(&c, payload, len);
    for (int i = 0; i < vm->ndevs; i++) {
        const struct device_ops *ops = vm->devs[i].ops;
        if (!ops->section || ops->section != id)
            continue;
        if (check_version(id, ops->name, version, ops->version, err, errlen) < 0)
            return -1;
        return ops->load(vm->devs[i].dev, &c, err, errlen);
    }
    if (id == VM_SECTION_KVM) {
        if (check_version(id, "irqchip", version, VM_SECTION_VERSION, err, errlen) < 0)
            return -1;
        return vmstate_load_vm(vm, &c, err, errlen);
    }
    if (id >= VM_SECTION_VCPU && id < VM_SECTION_VCPU + (uint32_t)vm->ncpus) {
        if (check_version(id, "vCPU", version, VM_SECTION_VERSION, err, errlen) < 0)
            return -1;
        return vmstate_load_vcpu(vm->vcpus[id - VM_SECTION_VCPU], &c, err, errlen);
    }
    if (id >= VM_SECTION_VCPU && id < VM_SECTION_VCPU + VM_MAX_CPUS)
        return err_set(err, errlen, "section 0x%x: vCPU %u, this VM has --cpus %d", id,
                       id - VM_SECTION_VCPU, vm->ncpus);
    return err_set(err, errlen, "unknown section 0x%x (a device this VM does not have?)", id);
}

void vm_post_load(struct vm *vm)
{
    for (int i = 0; i < vm->ndevs; i++)
        if (vm->devs[i].ops->post_load)
            vm->devs[i].ops->post_load(vm->devs[i].dev);
    /* A kvmclock guest is told it was stopped, so its watchdogs ignore the pause. */
    char cerr[160];
    if (vmstate_kvmclock_ctrl(vm, cerr, sizeof(cerr)) < 0)
        debug_msg("%s", cerr);
}
