/*
 * Guest RAM for pre-copy migration: the VM's dirty log (vm_dirty_log_*: KVM's merged with
 * the pages the VMM itself wrote) and page batches on the wire. Bitmaps are indexed by RAM offset
 * in pages.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct mig_stream;

#define RAM_SECTION_VERSION 1
#define RAM_REC_ZERO        1ULL /* low bit of a record's offset: the page is all zeroes */

uint64_t ram_pages(const struct vm *vm);
uint64_t *ram_bitmap_new(const struct vm *vm);
/* ORs every page dirtied since the last call into bm; returns how many bits bm has set. */
uint64_t ram_dirty_sync(struct vm *vm, uint64_t *bm);
uint64_t ram_bitmap_count(const uint64_t *bm, uint64_t pages);
void ram_bitmap_fill(uint64_t *bm, uint64_t pages);

struct ram_send_stats {
    uint64_t pages;      /* pages sent with data */
    uint64_t zero_pages; /* pages sent (or skipped) as zero */
    uint64_t bytes;
};

/* Sends every page set in bm (clearing the bits) in RAM sections. first_pass: zero pages
 * are skipped entirely (the destination's RAM starts zeroed). max_pages limits the work
 * of this call (0 = no limit). Returns 0 or -errno. */
int ram_send(struct vm *vm, struct mig_stream *s, uint64_t *bm, bool first_pass, uint64_t max_pages,
             struct ram_send_stats *st);
/* Applies one RAM section from the stream. -1 with a reason for a hostile record. */
int ram_receive(struct vm *vm, const uint8_t *payload, size_t len, char *err, size_t errlen);
