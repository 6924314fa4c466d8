/*
 * Can this host's /dev/kvm run a Linux kernel? Some hosts (kvm_pvm) run guest
 * ring-3 code natively but emulate ring-0 code instruction by instruction, far
 * too slowly for a kernel. We time a short ring-0 loop in a throwaway VM.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* Above this, ring-0 code is emulated rather than run in hardware. */
#define PROBE_SLOW_NS_PER_ITER 200.0

/* 0 and *ns_per_iter on success; -1 with a reason in err. */
int probe_ring0_speed(double *ns_per_iter, char *err, size_t errlen);
/* "nvmevm probe": prints the verdict. Exit status 0 = Linux guests run here, 3 = they do not,
 * 1 = no usable /dev/kvm. */
int probe_main(int argc, char **argv);
/* 1 if a Linux kernel can boot here, 0 if not, -1 if /dev/kvm is unusable; why says so. */
int probe_linux_capable(char *why, size_t whylen);
