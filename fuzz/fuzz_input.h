/* Reading a fuzzer's input as a stream of fields: past the end every read gives zero, so
 * any prefix of a program is itself a program. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct fin {
    const uint8_t *p;
    size_t n;
};

static inline void fin_bytes(struct fin *in, void *dst, size_t n)
{
    size_t k = n < in->n ? n : in->n;
    memcpy(dst, in->p, k);
    memset((uint8_t *)dst + k, 0, n - k);
    in->p += k;
    in->n -= k;
}

static inline uint8_t fin_u8(struct fin *in)
{
    uint8_t v;
    fin_bytes(in, &v, 1);
    return v;
}

static inline uint16_t fin_u16(struct fin *in)
{
    uint16_t v;
    fin_bytes(in, &v, 2);
    return v;
}

static inline uint32_t fin_u32(struct fin *in)
{
    uint32_t v;
    fin_bytes(in, &v, 4);
    return v;
}

static inline uint64_t fin_u64(struct fin *in)
{
    uint64_t v;
    fin_bytes(in, &v, 8);
    return v;
}
