/*
 * A block backend for the fuzzers: RAM-backed like block/mem.c, but every request is held
 * until the fuzzer releases it, one at a time and in any order, with a result of its
 * choosing. No threads, no fds, no clock: a run depends only on its input.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"

struct blk_dev *fblk_new(uint64_t size, bool read_only);
void fblk_free(struct blk_dev *d);
/* Requests submitted (flushed or not) and not yet reaped, over every queue of d. */
unsigned fblk_pending(struct blk_dev *d);
/* Lets the idx-th pending request (mod the count) complete at the next reap. fail: it
 * completes with -EIO instead of doing its work. False if nothing is pending. */
bool fblk_release(struct blk_dev *d, unsigned idx, bool fail);
/* Every request, now and later, completes at the next reap (drain and teardown need it:
 * they wait for storage). */
void fblk_set_auto(struct blk_dev *d, bool on);
