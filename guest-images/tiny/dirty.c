/*
 * test=dirty: keeps rewriting an N MiB region of guest RAM at a given rate and
 * checks, page by page, that memory still holds what was written last. Built
 * for live migration: a page the VMM forgot to resend (lost dirty bit), sent
 * too early (stale) or put at the wrong address shows up as an error.
 *
 * Options: mb=N (region size, default 64), rate_mb_s=R (MiB/s written, 0 = as
 * fast as possible, default 0), secs=S (stop after S seconds, default 10
 * unless passes= is given), passes=P (stop after P full passes), progress_s=N
 * (seconds between progress lines, default 2, 0 = none), inject=K (self-test:
 * flip a bit in the middle page after pass K; the test must then FAIL),
 * prefill=1 (write pass 1 unpaced first, then "tiny: dirty filled ..."),
 * idle=1 (after that, write nothing: spin until secs are up, then verify).
 *
 * Page p of generation g (g >= 1): word 0 = DIRTY_MAGIC | p, word 1 = g,
 * words 2..511 = seed(p, g) + i * golden ratio. Generation 0 is all zeros (the
 * region starts zeroed). Pass K walks the pages in order; for each page it
 * first checks the page holds generation K-1 (written one pass earlier, so the
 * whole region is re-verified every pass), then writes generation K. When the
 * time is up it stops mid-pass and verifies the whole region once more
 * (pages before the cursor: K, the rest: K-1), computing the checksum.
 */
#include "tiny.h"

#define DIRTY_MAGIC   0x4449525400000000ULL /* "DIRT" in the high half */
#define PAGE_BYTES    4096ULL
#define PAGE_WORDS    512u
#define CHUNK_PAGES   16u /* pacing / deadline granularity: 64 KiB */
#define MAX_ERR_LINES 5
#define GOLDEN        0x9e3779b97f4a7c15ULL

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t page_seed(uint64_t page, uint64_t gen)
{
    return mix64(page * GOLDEN ^ (gen << 32) ^ 0x5deece66dULL);
}

static void page_write(uint64_t *w, uint64_t page, uint64_t gen)
{
    uint64_t s = page_seed(page, gen);
    w[0] = DIRTY_MAGIC | page;
    w[1] = gen;
    for (unsigned i = 2; i < PAGE_WORDS; i++)
        w[i] = s + i * GOLDEN;
}

static uint64_t expected_word(uint64_t page, uint64_t gen, unsigned i)
{
    if (gen == 0)
        return 0;
    if (i == 0)
        return DIRTY_MAGIC | page;
    if (i == 1)
        return gen;
    return page_seed(page, gen) + i * GOLDEN;
}

/* Returns the index of the first wrong word, or -1. */
static int page_check(const uint64_t *w, uint64_t page, uint64_t gen)
{
    if (gen == 0) {
        for (unsigned i = 0; i < PAGE_WORDS; i++)
            if (w[i])
                return (int)i;
        return -1;
    }
    if (w[0] != (DIRTY_MAGIC | page))
        return 0;
    if (w[1] != gen)
        return 1;
    uint64_t s = page_seed(page, gen);
    for (unsigned i = 2; i < PAGE_WORDS; i++)
        if (w[i] != s + i * GOLDEN)
            return (int)i;
    return -1;
}

struct dirty {
    uint64_t *base;
    uint64_t pages;
    uint64_t errors;
};

static void report(struct dirty *d, uint64_t page, uint64_t gen, int word, const char *when)
{
    d->errors++;
    if (d->errors > MAX_ERR_LINES)
        return;
    const uint64_t *w = d->base + page * PAGE_WORDS;
    uint64_t got = w[word];
    /* Decode the stamp found in the page: tells lost (older gen) from misplaced (other page). */
    kprintf("tiny: dirty error (%s) page=%lu addr=0x%lx word=%d want=0x%016lx got=0x%016lx "
            "found page=%ld gen=%lu expected gen=%lu\n",
            when, page, (uint64_t)(uintptr_t)w, word, expected_word(page, gen, (unsigned)word), got,
            (w[0] & ~0xffffffffULL) == DIRTY_MAGIC ? (long)(w[0] & 0xffffffffULL) : -1L, w[1], gen);
}

static uint64_t opt(const struct opts *o, const char *key, uint64_t dflt)
{
    const char *v;
    size_t n;
    uint64_t x;
    if (cmdline_find(o->cmdline, key, &v, &n))
        return dflt;
    if (parse_u64(v, n, &x))
        fail(EXIT_BADARGS, "dirty: bad number %s=%.*s", key, (int)n, v);
    return x;
}

int test_dirty(const struct opts *o)
{
    uint64_t mb = opt(o, "mb", 64);
    uint64_t rate = opt(o, "rate_mb_s", 0);
    uint64_t max_passes = opt(o, "passes", 0);
    uint64_t secs = opt(o, "secs", max_passes ? 0 : 10);
    uint64_t progress_s = opt(o, "progress_s", 2);
    uint64_t prefill = opt(o, "prefill", 0), idle = opt(o, "idle", 0);
    uint64_t inject = opt(o, "inject", 0); /* self-test: corrupt one page after pass N */
    if (idle && !secs)
        fail(EXIT_BADARGS, "dirty: idle=1 needs secs=");
    if (mb == 0 || mb > 1024)
        fail(EXIT_BADARGS, "dirty: mb=%lu out of range 1..1024", mb);

    uint64_t bytes = mb << 20;
    void *p = ram_alloc(bytes, 1ULL << 21);
    if (!p)
        fail(EXIT_BADARGS, "dirty: mb=%lu does not fit: free RAM 0x%lx-0x%lx (%lu MiB)", mb,
             ram_mark(), ram_top(), (ram_top() - ram_mark()) >> 20);

    struct dirty d = {.base = p, .pages = bytes / PAGE_BYTES};
    uint64_t mhz = tsc_mhz();
    uint64_t tsc_s = mhz * 1000000ULL;
    /* TSC cycles per page at the requested rate (0 = unpaced). */
    uint64_t tsc_per_page = rate ? tsc_s / (rate * 256) : 0;
    if (rate && !tsc_per_page)
        tsc_per_page = 1;
    kprintf("tiny: dirty start mb=%lu pages=%lu region=0x%lx-0x%lx rate_mb_s=%lu secs=%lu "
            "passes=%lu tsc_mhz=%lu\n",
            mb, d.pages, (uint64_t)(uintptr_t)p, (uint64_t)(uintptr_t)p + bytes, rate, secs,
            max_passes, mhz);

    uint64_t start = rdtsc(), prev = start, elapsed = 0; /* elapsed never goes backwards */
    uint64_t pace_base = start, pace_pages = 0;          /* pages written since pace_base */
    uint64_t written = 0, last_print = 0, last_print_written = 0;
    uint64_t gen = 1, cursor = 0, passes = 0;
    int done = 0;
    if (prefill) { /* pass 1 unpaced, so the whole region is non-zero from here on */
        for (uint64_t pg = 0; pg < d.pages; pg++)
            page_write(d.base + pg * PAGE_WORDS, pg, 1);
        written = d.pages;
        passes = 1;
        gen = 2;
        prev = pace_base = rdtsc();
        elapsed = prev - start;
        kprintf("tiny: dirty filled mb=%lu t_ms=%lu\n", mb, elapsed / (mhz * 1000));
    }
    if (idle) { /* write nothing more: spin on the TSC until the time is up */
        done = 1;
        for (uint64_t i = 0; i < (1ULL << 40) && elapsed < secs * tsc_s; i++) {
            for (unsigned k = 0; k < 1000; k++)
                cpu_relax();
            uint64_t now = rdtsc();
            if (now > prev)
                elapsed += now - prev;
            prev = now;
        }
    }
    while (!done) {
        for (cursor = 0; cursor < d.pages;) {
            uint64_t end = cursor + CHUNK_PAGES < d.pages ? cursor + CHUNK_PAGES : d.pages;
            uint64_t chunk = end - cursor;
            for (; cursor < end; cursor++) {
                uint64_t *w = d.base + cursor * PAGE_WORDS;
                int bad = page_check(w, cursor, gen - 1);
                if (bad >= 0)
                    report(&d, cursor, gen - 1, bad, "pass");
                page_write(w, cursor, gen);
            }
            written += chunk;
            pace_pages += chunk;
            uint64_t now = rdtsc();
            if (tsc_per_page) {
                uint64_t target = pace_base + pace_pages * tsc_per_page;
                if (now > target + tsc_s / 10) {
                    /* >100 ms behind (e.g. the VM was paused): do not burst to catch up. */
                    pace_base = now;
                    pace_pages = 0;
                } else {
                    for (uint64_t i = 0; i < 4000000000ULL && now < target; i++) {
                        cpu_relax();
                        now = rdtsc();
                    }
                }
            }
            if (now > prev)
                elapsed += now - prev;
            prev = now;
            if (secs && elapsed >= secs * tsc_s) {
                done = 1;
                cursor = end;
                break;
            }
        }
        if (cursor >= d.pages) {
            passes++;
            if (max_passes && passes >= max_passes)
                done = 1;
            if (inject && passes == inject)
                d.base[(d.pages / 2) * PAGE_WORDS + 7] ^= 1;
        }
        if (progress_s && !done && elapsed - last_print >= progress_s * tsc_s) {
            uint64_t ms = (elapsed - last_print) / (mhz * 1000);
            kprintf("tiny: dirty pass=%lu errors=%lu mb_s=%lu t_ms=%lu\n", passes, d.errors,
                    ms ? ((written - last_print_written) * 4 / 1024) * 1000 / ms : 0,
                    elapsed / (mhz * 1000));
            last_print = elapsed;
            last_print_written = written;
        }
        if (!done && cursor >= d.pages)
            gen++;
    }

    /* Final check of the whole region: [0, cursor) holds gen, the rest gen - 1. */
    uint64_t sum = 0x243f6a8885a308d3ULL;
    for (uint64_t pg = 0; pg < d.pages; pg++) {
        uint64_t want = pg < cursor ? gen : gen - 1;
        const uint64_t *w = d.base + pg * PAGE_WORDS;
        int bad = page_check(w, pg, want);
        if (bad >= 0)
            report(&d, pg, want, bad, "final");
        uint64_t x = 0;
        for (unsigned i = 0; i < PAGE_WORDS; i++)
            x ^= w[i] * (2 * i + 1);
        sum = mix64(sum ^ x);
    }
    uint64_t ms = elapsed / (mhz * 1000);
    kprintf("tiny: dirty mb=%lu passes=%lu errors=%lu checksum=0x%016lx written_mb=%lu "
            "mb_s=%lu t_ms=%lu\n",
            mb, passes, d.errors, sum, written * 4 / 1024, ms ? written * 4 / 1024 * 1000 / ms : 0,
            ms);
    if (d.errors)
        fail(EXIT_FAIL, "dirty: %lu pages did not hold their last write", d.errors);
    return 0;
}
