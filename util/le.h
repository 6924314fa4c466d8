/*
 * Little-endian loads and stores at any alignment. Guest-visible layouts (PCI config
 * space, boot headers, KVM's byte arrays) and the migration wire format are all
 * little-endian; spelling the byte order out keeps them right on any host.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* n bytes (0..8) as an unsigned integer. */
static inline uint64_t le_get(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

static inline void le_put(void *p, size_t n, uint64_t v)
{
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t le16_get(const void *p)
{
    return (uint16_t)le_get(p, 2);
}

static inline uint32_t le32_get(const void *p)
{
    return (uint32_t)le_get(p, 4);
}

static inline uint64_t le64_get(const void *p)
{
    return le_get(p, 8);
}

static inline void le16_put(void *p, uint16_t v)
{
    le_put(p, 2, v);
}

static inline void le32_put(void *p, uint32_t v)
{
    le_put(p, 4, v);
}

static inline void le64_put(void *p, uint64_t v)
{
    le_put(p, 8, v);
}
