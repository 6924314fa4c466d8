/*
 * Guest-physical memory as the VMM sees it. Every access to guest RAM goes
 * through gpa_ptr()/gpa_ptr_w(): they refuse ranges that leave RAM or wrap,
 * so a hostile guest address can never reach host memory outside the mapping.
 *
 * Layout: RAM below the 32-bit PCI hole sits at gpa [0, low_size); the rest
 * at [4 GiB, 4 GiB + high_size). Both are one contiguous host mapping.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_PAGE_SIZE  4096ULL
#define GUEST_PAGE_SHIFT 12
#define GUEST_4G         (1ULL << 32)

struct guest_mem {
    uint8_t *host;      /* base of the host mapping (size bytes) */
    uint64_t size;      /* total RAM bytes */
    uint64_t low_size;  /* RAM mapped at gpa 0 */
    uint64_t high_size; /* RAM mapped at gpa 4 GiB */
    /* Pages written by the VMM itself (device DMA), one bit per RAM page,
     * indexed by RAM offset. KVM's dirty log does not see these writes. */
    uint64_t *dirty;
};

/* Split size bytes of RAM around a hole [hole_start, 4 GiB). */
void guest_mem_layout(struct guest_mem *m, uint8_t *host, uint64_t size, uint64_t hole_start);

/* RAM offset of gpa for len bytes, or -1 if any byte is outside RAM. */
int64_t gpa_to_offset(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Host pointer for reading [gpa, gpa+len), or NULL if out of bounds. */
void *gpa_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Host pointer for writing [gpa, gpa+len): also marks the pages dirty. */
void *gpa_ptr_w(struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Copy helpers; return false (and copy nothing) when out of bounds. */
bool gpa_read(const struct guest_mem *m, uint64_t gpa, void *dst, uint64_t len);
bool gpa_write(struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len);

/* Dirty bitmap of VMM writes: allocate, mark, and fetch-and-clear. */
int guest_mem_dirty_enable(struct guest_mem *m);
void guest_mem_mark_dirty(struct guest_mem *m, uint64_t ram_offset, uint64_t len);
/* ORs the VMM-dirty bits into out (one bit per RAM page) and clears them. */
void guest_mem_dirty_collect(struct guest_mem *m, uint64_t *out);

/* Typed checked pointer: GPA_PTR(m, gpa, struct foo) is NULL when out of RAM. */
#define GPA_PTR(m, gpa, type) ((type *)gpa_ptr((m), (gpa), sizeof(type)))
