#include "migrate/ram.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvm/vm.h"
#include "util/buf.h"
#include "migrate/stream.h"
#include "util/err.h"

#define PAGE          GUEST_PAGE_SIZE
#define PAGES_PER_SEC 256 /* one RAM section carries up to 1 MiB of page data */

uint64_t ram_pages(const struct vm *vm)
{
    return vm->mem.size / PAGE;
}

uint64_t *ram_bitmap_new(const struct vm *vm)
{
    return calloc((ram_pages(vm) + 63) / 64, sizeof(uint64_t));
}

uint64_t ram_bitmap_count(const uint64_t *bm, uint64_t pages)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < (pages + 63) / 64; i++)
        n += (uint64_t)__builtin_popcountll(bm[i]);
    return n;
}

void ram_bitmap_fill(uint64_t *bm, uint64_t pages)
{
    memset(bm, 0, (pages + 63) / 64 * sizeof(uint64_t));
    for (uint64_t p = 0; p < pages; p++)
        bm[p / 64] |= 1ULL << (p % 64);
}

uint64_t ram_dirty_sync(struct vm *vm, uint64_t *bm)
{
    vm_dirty_log_sync(vm, bm);
    return ram_bitmap_count(bm, ram_pages(vm));
}

static bool page_is_zero(const uint8_t *p)
{
    const uint64_t *w = (const uint64_t *)p;
    for (size_t i = 0; i < PAGE / 8; i++)
        if (w[i])
            return false;
    return true;
}

int ram_send(struct vm *vm, struct mig_stream *s, uint64_t *bm, bool first_pass, uint64_t max_pages,
             struct ram_send_stats *st)
{
    uint64_t pages = ram_pages(vm), done = 0;
    struct mig_buf b;
    mig_buf_init(&b);
    unsigned in_batch = 0;
    int ret = 0;
    for (uint64_t w = 0; w < (pages + 63) / 64 && !ret; w++) {
        while (bm[w] && !ret) {
            uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bm[w]);
            bm[w] &= bm[w] - 1;
            const uint8_t *src = vm->mem.host + p * PAGE;
            bool zero = page_is_zero(src);
            if (zero) {
                st->zero_pages++;
                if (first_pass)
                    continue;
                mig_put_u64(&b, p * PAGE | RAM_REC_ZERO);
            } else {
                mig_put_u64(&b, p * PAGE);
                mig_put_bytes(&b, src, PAGE);
                st->pages++;
            }
            if (++in_batch == PAGES_PER_SEC) {
                ret = b.oom ? -ENOMEM
                            : mig_write_section(s, MIG_SEC_RAM, RAM_SECTION_VERSION, b.data, b.len);
                b.len = 0;
                in_batch = 0;
            }
            if (max_pages && ++done >= max_pages)
                goto out;
        }
    }
out:
    if (!ret && in_batch)
        ret =
            b.oom ? -ENOMEM : mig_write_section(s, MIG_SEC_RAM, RAM_SECTION_VERSION, b.data, b.len);
    mig_buf_free(&b);
    return ret;
}

int ram_receive(struct vm *vm, const uint8_t *payload, size_t len, char *err, size_t errlen)
{
    struct mig_cursor c;
    mig_cursor_init(&c, payload, len);
    while (c.pos < c.len) {
        uint64_t rec = mig_get_u64(&c);
        uint64_t off = rec & ~(PAGE - 1);
        if (c.bad || (rec & (PAGE - 1) & ~RAM_REC_ZERO) || off >= vm->mem.size) {
            return err_set(err, errlen, "RAM: bad page record 0x%llx (RAM is %llu MiB)",
                           (unsigned long long)rec, (unsigned long long)(vm->mem.size >> 20));
        }
        uint8_t *dst = vm->mem.host + off;
        if (rec & RAM_REC_ZERO) {
            memset(dst, 0, PAGE);
        } else if (!mig_get_bytes(&c, dst, PAGE)) {
            return err_set(err, errlen, "RAM: truncated page at offset 0x%llx",
                           (unsigned long long)off);
        }
    }
    return 0;
}
