#include "util/buf.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/le.h"

/* ---- mig_buf: append-only little-endian writer ---- */

void mig_buf_init(struct mig_buf *b)
{
    memset(b, 0, sizeof(*b));
}

void mig_buf_free(struct mig_buf *b)
{
    free(b->data);
    mig_buf_init(b);
}

/* Returns where n more bytes go, or NULL once the buffer is unusable. Savers do not check
 * every put; they check b->oom once before sending, so a failure must stay sticky. */
static uint8_t *reserve(struct mig_buf *b, size_t n)
{
    if (b->oom)
        return NULL;
    if (n > SIZE_MAX - b->len) {
        b->oom = true;
        return NULL;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) {
            if (cap > SIZE_MAX / 2) {
                cap = b->len + n;
                break;
            }
            cap *= 2;
        }
        uint8_t *p = realloc(b->data, cap);
        if (!p) {
            b->oom = true;
            return NULL;
        }
        b->data = p;
        b->cap = cap;
    }
    uint8_t *p = b->data + b->len;
    b->len += n;
    return p;
}

static void put_le(struct mig_buf *b, uint64_t v, size_t n)
{
    uint8_t *p = reserve(b, n);
    if (p)
        le_put(p, n, v);
}

void mig_put_u8(struct mig_buf *b, uint8_t v)
{
    put_le(b, v, 1);
}

void mig_put_u16(struct mig_buf *b, uint16_t v)
{
    put_le(b, v, 2);
}

void mig_put_u32(struct mig_buf *b, uint32_t v)
{
    put_le(b, v, 4);
}

void mig_put_u64(struct mig_buf *b, uint64_t v)
{
    put_le(b, v, 8);
}

void mig_put_bytes(struct mig_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    uint8_t *dst = reserve(b, n);
    if (dst)
        memcpy(dst, p, n);
}

/* ---- mig_cursor: bounds-checked reader ---- */

void mig_cursor_init(struct mig_cursor *c, const void *data, size_t len)
{
    c->data = data;
    c->len = data ? len : 0;
    c->pos = 0;
    c->bad = false;
}

/* Like mig_get_bytes but without the copy: the n bytes at the cursor, or NULL. */
static const uint8_t *take(struct mig_cursor *c, size_t n)
{
    if (c->bad || n > c->len - c->pos) {
        c->bad = true;
        return NULL;
    }
    const uint8_t *p = c->data + c->pos;
    c->pos += n;
    return p;
}

static uint64_t get_le(struct mig_cursor *c, size_t n)
{
    const uint8_t *p = take(c, n);
    return p ? le_get(p, n) : 0;
}

uint8_t mig_get_u8(struct mig_cursor *c)
{
    return (uint8_t)get_le(c, 1);
}

uint16_t mig_get_u16(struct mig_cursor *c)
{
    return (uint16_t)get_le(c, 2);
}

uint32_t mig_get_u32(struct mig_cursor *c)
{
    return (uint32_t)get_le(c, 4);
}

uint64_t mig_get_u64(struct mig_cursor *c)
{
    return get_le(c, 8);
}

bool mig_get_bytes(struct mig_cursor *c, void *dst, size_t n)
{
    const uint8_t *p = take(c, n);
    if (!p) {
        if (n)
            memset(dst, 0, n);
        return false;
    }
    if (n)
        memcpy(dst, p, n);
    return true;
}

bool mig_cursor_done(const struct mig_cursor *c)
{
    return !c->bad && c->pos == c->len;
}

/* ---- CRC32C ---- */

/*
 * Every byte of RAM crosses this function, so it must not be the bottleneck: SSE4.2's crc32
 * instruction does ~8 bytes per cycle; the fallback is slicing-by-8 (~1 byte per cycle), which
 * still beats a byte-at-a-time table by several times.
 */
#define CRC32C_POLY 0x82f63b78u /* reflected Castagnoli polynomial */

static uint32_t crc_table[8][256];
static bool crc_have_hw;
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
#if defined(__x86_64__)
    crc_have_hw = __builtin_cpu_supports("sse4.2");
#endif
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

static uint32_t crc_sw(uint32_t crc, const uint8_t *p, size_t len)
{
    while (len && ((uintptr_t)p & 7)) {
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
        len--;
    }
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        /* Little-endian hosts only (x86-64): the low byte of w is p[0]. */
        w ^= crc;
        crc = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
              crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
              crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
              crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return crc;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t len)
{
    while (len && ((uintptr_t)p & 7)) {
        crc = _mm_crc32_u8(crc, *p++);
        len--;
    }
    uint64_t c = crc;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        len -= 8;
    }
    crc = (uint32_t)c;
    while (len--)
        crc = _mm_crc32_u8(crc, *p++);
    return crc;
}

#endif

bool mig_crc32c_force_sw;

/* The stored value is the finalized (inverted) CRC, so calls chain: crc(crc(0, a), b) is the
 * CRC of a followed by b. */
uint32_t mig_crc32c(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&crc_once, crc_init);
    crc = ~crc;
#if defined(__x86_64__)
    if (crc_have_hw && !mig_crc32c_force_sw)
        return ~crc_hw(crc, data, len);
#endif
    return ~crc_sw(crc, data, len);
}
