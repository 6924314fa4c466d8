/*
 * Where nvmevm finds what is not inside the binary: the default Linux guest and the
 * sandbox scripts. The same binary runs from a build tree (build/nvmevm, data beside it and
 * in the source tree), installed (<prefix>/bin/nvmevm, data in <prefix>/share/nvmevm), or
 * copied elsewhere, so each lookup tries a fixed list of places in order and, when none
 * has the data, names every place it looked. docs/nvmevm.1 (ENVIRONMENT, FILES) documents
 * both orders.
 */
#pragma once
#include <stddef.h>

/* The places the lookups start from. */
struct data_roots {
    const char *exe_dir;    /* directory of the running binary */
    const char *data_dir;   /* <prefix>/share/nvmevm as configured by meson */
    const char *bin_dir;    /* <prefix>/bin as configured (nvmevm-build-guest lives there) */
    const char *source_dir; /* the source tree the binary was built from */
    const char *cache_dir;  /* nvmevm's user cache (vmlinux_cache_dir()), NULL without one */
};

/* Fills r for the running binary (/proc/self/exe). Returns 0 or -1 with a reason. */
int data_roots_get(struct data_roots *r, char *err, size_t errlen);

/* The default guest: the first directory holding a readable vmlinuz among
 * $NVMEVM_GUEST_DIR (when set, the only place), <exe_dir>/guest, <data_dir>/guest,
 * <exe_dir>/../share/nvmevm/guest (not for a build-tree binary), <cache_dir>/guest.
 * Returns 0 with the directory in dir, or -1 with one line naming every place looked and
 * the command that builds a guest. */
int guest_dir_find(const struct data_roots *r, char *dir, size_t len, char *err, size_t errlen);

/* The sandbox scripts (tests/sandbox's run.sh and init): the first directory holding an
 * executable run.sh among $NVMEVM_SANDBOX_DIR (when set, the only place), then for a
 * binary in a build directory (build.ninja beside it) <source_dir>/tests/sandbox, for any
 * other <exe_dir>/../share/nvmevm/sandbox, then <data_dir>/sandbox. Returns 0 or -1 with
 * one line naming every place looked. */
int sandbox_dir_find(const struct data_roots *r, char *dir, size_t len, char *err, size_t errlen);
