#include "kvm/cpuid.h"

#include <string.h>

#define CPUID_1_ECX_TSC_DEADLINE (1u << 24)
#define CPUID_1_ECX_HYPERVISOR   (1u << 31)
#define CPUID_1_EDX_HTT          (1u << 28)
#define CPUID_6_ECX_EPB          (1u << 3)
#define TOPO_LEVEL_SMT           1
#define TOPO_LEVEL_CORE          2

static unsigned bits_for(int n)
{
    unsigned b = 0;
    while ((1 << b) < n)
        b++;
    return b;
}

/* Leaf 0xB/0x1F: one thread per core, ncpus cores in one package. */
static void topology_leaf(struct kvm_cpuid_entry2 *e, int apic_id, int ncpus)
{
    switch (e->index) {
    case 0:
        e->eax = 0;
        e->ebx = 1;
        e->ecx = (TOPO_LEVEL_SMT << 8) | 0;
        break;
    case 1:
        e->eax = bits_for(ncpus);
        e->ebx = (unsigned)ncpus;
        e->ecx = (TOPO_LEVEL_CORE << 8) | 1;
        break;
    default:
        e->eax = 0;
        e->ebx = 0;
        e->ecx = e->index;
        break;
    }
    e->edx = (unsigned)apic_id;
}

int cpuid_patch(struct kvm_cpuid_entry2 *e, int n, int max, int apic_id, int ncpus,
                bool tsc_deadline)
{
    (void)max;
    for (int i = 0; i < n; i++) {
        switch (e[i].function) {
        case 1:
            e[i].ebx =
                (e[i].ebx & 0x0000ffff) | ((unsigned)ncpus << 16) | ((unsigned)apic_id << 24);
            e[i].ecx |= CPUID_1_ECX_HYPERVISOR;
            if (tsc_deadline)
                e[i].ecx |= CPUID_1_ECX_TSC_DEADLINE;
            if (ncpus > 1)
                e[i].edx |= CPUID_1_EDX_HTT;
            else
                e[i].edx &= ~CPUID_1_EDX_HTT;
            break;
        case 4:
            /* Cache leaves: cores per package = ncpus, one thread shares each cache. */
            e[i].eax = (e[i].eax & 0x03ffffff & ~(0xfffu << 14)) | ((unsigned)(ncpus - 1) << 26);
            break;
        case 6:
            e[i].ecx &= ~CPUID_6_ECX_EPB;
            break;
        case 0xa:
            /* No virtual PMU: its MSRs would trap into the slow path for no benefit. */
            e[i].eax = e[i].ebx = e[i].ecx = e[i].edx = 0;
            break;
        case 0xb:
        case 0x1f:
            topology_leaf(&e[i], apic_id, ncpus);
            break;
        case 0x80000008:
            /* AMD: NC = ncpus - 1, ApicIdSize covering them. */
            e[i].ecx = (e[i].ecx & ~0xf0ffu) | (bits_for(ncpus) << 12) | (unsigned)(ncpus - 1);
            break;
        default:
            break;
        }
    }
    return n;
}
