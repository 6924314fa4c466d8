/*
 * Booting a bzImage without its in-guest decompressor: nvmevm unpacks the compressed
 * payload (xz) once on the host, keeps the resulting vmlinux in a cache, and loads its
 * ELF segments directly. Under nested virtualization the guest's decompressor is the
 * slowest part of a boot (ring-0 code, ~10-20 s); natively it still costs ~0.2 s.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kvm/bzimage.h"

#define VMLINUX_MAX_SEGMENTS 8

struct vmlinux_segment {
    uint64_t file_off, file_len, paddr, mem_len;
};

struct vmlinux {
    uint8_t *data; /* the ELF file (mmap of the cache entry, or malloc) */
    size_t size;
    int mapped;
    uint64_t entry; /* physical */
    uint64_t end;   /* highest physical byte + 1 */
    int nseg;
    struct vmlinux_segment seg[VMLINUX_MAX_SEGMENTS];
};

/* Fills v from the bzImage's payload (cached under cache_dir when not NULL).
 * Returns 0, or -1 with a reason (unsupported compression, corrupt payload...): the
 * caller then boots the bzImage the classic way. */
int vmlinux_from_bzimage(const uint8_t *file, size_t size, const struct bzimage_info *info,
                         const char *cache_dir, struct vmlinux *v, char *err, size_t errlen);
/* Parses an ELF64 x86-64 vmlinux held in v->data/v->size. */
int vmlinux_parse(struct vmlinux *v, char *err, size_t errlen);
void vmlinux_release(struct vmlinux *v);
/* $NVMEVM_CACHE_DIR, else $XDG_CACHE_HOME/nvmevm, else $HOME/.cache/nvmevm. */
const char *vmlinux_cache_dir(void);
