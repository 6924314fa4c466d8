/*
 * Byte buffers for migration state. Savers append little-endian fields to a mig_buf;
 * loaders read them back through a mig_cursor, which refuses to read past the end, so a
 * truncated or hostile stream becomes a clean error, never an out-of-bounds read.
 * Every device keeps its save/load beside its state (uart.c: uart_save/uart_load, ...).
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mig_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    bool oom; /* an allocation failed: the buffer is unusable */
};

void mig_buf_init(struct mig_buf *b);
void mig_buf_free(struct mig_buf *b);
void mig_put_u8(struct mig_buf *b, uint8_t v);
void mig_put_u16(struct mig_buf *b, uint16_t v);
void mig_put_u32(struct mig_buf *b, uint32_t v);
void mig_put_u64(struct mig_buf *b, uint64_t v);
void mig_put_bytes(struct mig_buf *b, const void *p, size_t n);

struct mig_cursor {
    const uint8_t *data;
    size_t len;
    size_t pos;
    bool bad; /* a read went past the end: every later read returns 0 */
};

void mig_cursor_init(struct mig_cursor *c, const void *data, size_t len);
uint8_t mig_get_u8(struct mig_cursor *c);
uint16_t mig_get_u16(struct mig_cursor *c);
uint32_t mig_get_u32(struct mig_cursor *c);
uint64_t mig_get_u64(struct mig_cursor *c);
/* Copies n bytes; false (and zero-fills dst) if fewer remain. */
bool mig_get_bytes(struct mig_cursor *c, void *dst, size_t n);
/* True if every read succeeded and exactly all bytes were consumed. */
bool mig_cursor_done(const struct mig_cursor *c);

/* CRC32C (Castagnoli), as the stream's section checksums. */
uint32_t mig_crc32c(uint32_t crc, const void *data, size_t len);
/* Tests only: true forces the portable CRC32C even where SSE4.2 is available. */
extern bool mig_crc32c_force_sw;
