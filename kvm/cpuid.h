/* Per-vCPU CPUID from KVM_GET_SUPPORTED_CPUID: APIC ids, topology, hypervisor bit. */
#pragma once
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

/* Patches the n entries in place for vCPU apic_id of ncpus. Returns the new entry
 * count (topology sub-leaves may be rewritten but never exceed max). */
int cpuid_patch(struct kvm_cpuid_entry2 *e, int n, int max, int apic_id, int ncpus,
                bool tsc_deadline);
