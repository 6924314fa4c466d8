/* CPUID patching per vCPU. */
#include <criterion/criterion.h>
#include <string.h>

#include "kvm/cpuid.h"

static int make(struct kvm_cpuid_entry2 *e)
{
    int n = 0;
    e[n++] = (struct kvm_cpuid_entry2){.function = 1, .ebx = 0xff00abcd, .ecx = 0, .edx = 0};
    e[n++] = (struct kvm_cpuid_entry2){.function = 6, .ecx = 0x9};
    e[n++] = (struct kvm_cpuid_entry2){.function = 0xa, .eax = 0x07300402, .edx = 0x603};
    for (uint32_t i = 0; i < 3; i++)
        e[n++] = (struct kvm_cpuid_entry2){.function = 0xb, .index = i, .eax = 9, .ebx = 9};
    e[n++] = (struct kvm_cpuid_entry2){.function = 0x40000000, .ebx = 0x4b4d564b};
    return n;
}

static struct kvm_cpuid_entry2 *find(struct kvm_cpuid_entry2 *e, int n, uint32_t fn, uint32_t idx)
{
    for (int i = 0; i < n; i++)
        if (e[i].function == fn && e[i].index == idx)
            return &e[i];
    return NULL;
}

Test(cpuid, apic_id_count_and_hypervisor_bit)
{
    struct kvm_cpuid_entry2 e[16];
    int n = make(e);
    cpuid_patch(e, n, 16, 3, 4, true);
    struct kvm_cpuid_entry2 *l1 = find(e, n, 1, 0);
    cr_assert_eq(l1->ebx >> 24, 3);
    cr_assert_eq((l1->ebx >> 16) & 0xff, 4);
    cr_assert_eq(l1->ebx & 0xffff, 0xabcd, "low bits kept");
    cr_assert(l1->ecx & (1u << 31), "hypervisor bit");
    cr_assert(l1->ecx & (1u << 24), "TSC deadline");
    cr_assert(l1->edx & (1u << 28), "HTT with several CPUs");
}

Test(cpuid, single_cpu_has_no_htt_and_no_deadline_when_unsupported)
{
    struct kvm_cpuid_entry2 e[16];
    int n = make(e);
    e[0].edx |= 1u << 28;
    cpuid_patch(e, n, 16, 0, 1, false);
    cr_assert_not(e[0].edx & (1u << 28));
    cr_assert_not(e[0].ecx & (1u << 24));
}

Test(cpuid, topology_and_masked_leaves)
{
    struct kvm_cpuid_entry2 e[16];
    int n = make(e);
    cpuid_patch(e, n, 16, 5, 6, true);
    struct kvm_cpuid_entry2 *smt = find(e, n, 0xb, 0), *core = find(e, n, 0xb, 1),
                            *inval = find(e, n, 0xb, 2);
    cr_assert_eq(smt->ebx, 1);
    cr_assert_eq((smt->ecx >> 8) & 0xff, 1);
    cr_assert_eq(core->ebx, 6);
    cr_assert_eq(core->eax, 3, "6 CPUs need 3 APIC id bits");
    cr_assert_eq((core->ecx >> 8) & 0xff, 2);
    cr_assert_eq(inval->ebx, 0);
    cr_assert_eq((inval->ecx >> 8) & 0xff, 0, "level type invalid ends the list");
    cr_assert_eq(smt->edx, 5);
    cr_assert_eq(core->edx, 5);
    cr_assert_eq(find(e, n, 6, 0)->ecx, 0x1, "EPB cleared");
    cr_assert_eq(find(e, n, 0xa, 0)->eax, 0, "no PMU");
    cr_assert_eq(find(e, n, 0x40000000, 0)->ebx, 0x4b4d564b, "KVM leaves kept");
}
