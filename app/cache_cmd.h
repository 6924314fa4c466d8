/*
 * "nvmevm cache [list]" shows what nvmevm keeps in its user cache (vmlinux_cache_dir():
 * $NVMEVM_CACHE_DIR, else $XDG_CACHE_HOME/nvmevm, else ~/.cache/nvmevm) with sizes;
 * "nvmevm cache clean [--dry-run]" removes it. Only nvmevm's own entries are touched:
 * decompressed kernels (vmlinux-*), the guest built by nvmevm-build-guest (guest/) and the
 * installed sandbox's initramfs (sandbox/).
 */
#pragma once

/* argv[0] is "cache". Returns the exit status: 0, 1 when something could not be removed,
 * 2 on a usage error. */
int cache_main(int argc, char **argv);
