#include "migrate/stream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/conn.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/le.h"

#define MIG_HDR_SIZE 16
/* Small sections (device state, page batches) are coalesced up to this size so the socket
 * sees few large writes; bigger payloads bypass the buffer to avoid a copy. */
#define WBUF_SIZE (1u << 20)

void mig_stream_init(struct mig_stream *s, struct mig_conn *conn)
{
    memset(s, 0, sizeof(*s));
    s->conn = conn;
}

void mig_stream_free(struct mig_stream *s)
{
    free(s->wbuf);
    s->wbuf = NULL;
    s->wlen = s->wcap = 0;
}

/* ---- writing ---- */

static int fail(struct mig_stream *s, int err)
{
    if (!s->error)
        s->error = err;
    return -s->error;
}

static int write_all(struct mig_stream *s, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = mig_conn_write(s->conn, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            s->bytes += (uint64_t)w;
            continue;
        }
        return fail(s, w == 0 ? EIO : (int)-w); /* no progress and no error: do not spin */
    }
    return 0;
}

int mig_flush(struct mig_stream *s)
{
    if (s->error)
        return -s->error;
    int ret = write_all(s, s->wbuf, s->wlen);
    s->wlen = 0;
    return ret;
}

static int append(struct mig_stream *s, const void *p, size_t n)
{
    if (s->error)
        return -s->error;
    if (!s->wbuf) {
        s->wbuf = malloc(WBUF_SIZE);
        if (!s->wbuf)
            return fail(s, ENOMEM);
        s->wcap = WBUF_SIZE;
    }
    if (n > s->wcap - s->wlen) {
        int ret = mig_flush(s);
        if (ret)
            return ret;
    }
    if (n >= s->wcap)
        return write_all(s, p, n);
    memcpy(s->wbuf + s->wlen, p, n);
    s->wlen += n;
    return 0;
}

int mig_write_header(struct mig_stream *s)
{
    uint8_t h[MIG_HDR_SIZE];
    memcpy(h, MIG_MAGIC, 8);
    le_put(h + 8, 4, MIG_VERSION);
    le_put(h + 12, 4, 0); /* flags: none defined */
    return append(s, h, sizeof(h));
}

static int write_section(struct mig_stream *s, uint32_t id, uint16_t version, const void *payload,
                         size_t len)
{
    uint8_t h[MIG_SECTION_HDR];
    le_put(h, 4, id);
    le_put(h + 4, 2, version);
    le_put(h + 6, 2, 0);
    le_put(h + 8, 8, len);
    le_put(h + 16, 4, mig_crc32c(0, payload, len));
    le_put(h + 20, 4, 0);
    int ret = append(s, h, sizeof(h));
    if (ret == 0 && len > 0)
        ret = append(s, payload, len);
    return ret;
}

int mig_write_section(struct mig_stream *s, uint32_t id, uint16_t version, const void *payload,
                      size_t len)
{
    if (s->error)
        return -s->error;
    /* Caller bugs, not stream failures: nothing was written, so the stream stays usable. */
    if (len > MIG_MAX_SECTION)
        return -EMSGSIZE;
    if (id == MIG_SEC_END || (len > 0 && !payload))
        return -EINVAL;
    return write_section(s, id, version, payload, len);
}

/* The end marker is the last thing sent, so it also pushes out the buffer. */
int mig_write_end(struct mig_stream *s)
{
    int ret = write_section(s, MIG_SEC_END, 0, NULL, 0);
    return ret ? ret : mig_flush(s);
}

/* ---- reading ---- */

/* 0 = got all n bytes, 1 = EOF first (*got says how many came), -errno = read error. */
static int read_exact(struct mig_stream *s, uint8_t *p, size_t n, size_t *got)
{
    size_t done = 0;
    int ret = 0;
    while (done < n) {
        ssize_t r = mig_conn_read(s->conn, p + done, n - done);
        if (r > 0) {
            done += (size_t)r;
            s->bytes += (uint64_t)r;
            continue;
        }
        ret = r == 0 ? 1 : (int)r;
        break;
    }
    if (got)
        *got = done;
    return ret;
}

/* Every refusal leaves the stream failed: the position within it is no longer known. */
static int refuse(struct mig_stream *s, int err, char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int refuse(struct mig_stream *s, int err, char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vset(buf, len, fmt, ap);
    va_end(ap);
    if (!s->error)
        s->error = err;
    return -1;
}

/* A stalled peer is named as such: "Connection timed out" would suggest the network. */
static const char *io_reason(const struct mig_stream *s, int e, char *buf, size_t len)
{
    if (e == ETIMEDOUT && s->conn && s->conn->timeout_s) {
        snprintf(buf, len, "nothing received for %u s (the peer stalled)", s->conn->timeout_s);
        return buf;
    }
    return strerror(e);
}

static int already_failed(struct mig_stream *s, char *err, size_t errlen)
{
    if (err && errlen)
        err_set(err, errlen, "migration stream already failed: %s", strerror(s->error));
    return -1;
}

int mig_read_header(struct mig_stream *s, char *err, size_t errlen)
{
    if (s->error)
        return already_failed(s, err, errlen);
    uint8_t h[MIG_HDR_SIZE];
    char why[80];
    size_t got;
    int ret = read_exact(s, h, sizeof(h), &got);
    if (ret < 0)
        return refuse(s, -ret, err, errlen, "reading stream header: %s",
                      io_reason(s, -ret, why, sizeof(why)));
    /* A short foreign stream is still foreign: check the magic on what arrived. */
    if (got >= 2 && h[0] == 0x16 && h[1] == 0x03) /* a TLS handshake record */
        return refuse(s, EPROTO, err, errlen,
                      "the peer speaks TLS: start this destination with the source's --tls-* "
                      "options");
    if (memcmp(h, MIG_MAGIC, got < 8 ? got : 8) != 0)
        return refuse(s, EPROTO, err, errlen, "not an nvmevm migration stream");
    if (ret == 1)
        return refuse(s, EPROTO, err, errlen, "truncated stream: header ends after %zu of %d bytes",
                      got, MIG_HDR_SIZE);
    uint32_t version = (uint32_t)le_get(h + 8, 4), flags = (uint32_t)le_get(h + 12, 4);
    if (version != MIG_VERSION)
        return refuse(s, EPROTO, err, errlen, "stream version %" PRIu32 ", this nvmevm reads %d",
                      version, MIG_VERSION);
    if (flags != 0)
        return refuse(s, EPROTO, err, errlen,
                      "stream header flags 0x%" PRIx32 ": reserved bits set", flags);
    return 0;
}

int mig_read_section(struct mig_stream *s, uint32_t *id, uint16_t *version, uint8_t **payload,
                     size_t *len, char *err, size_t errlen)
{
    *payload = NULL;
    *len = 0;
    if (s->error)
        return already_failed(s, err, errlen);

    uint8_t h[MIG_SECTION_HDR];
    char why[80];
    size_t got;
    uint64_t at = s->bytes;
    int ret = read_exact(s, h, sizeof(h), &got);
    if (ret < 0)
        return refuse(s, -ret, err, errlen, "reading section header: %s",
                      io_reason(s, -ret, why, sizeof(why)));
    if (ret == 1)
        return refuse(s, EPROTO, err, errlen,
                      "truncated stream: section header at byte %" PRIu64
                      " ends after %zu of %d bytes",
                      at, got, MIG_SECTION_HDR);

    uint32_t sid = (uint32_t)le_get(h, 4);
    uint16_t sver = (uint16_t)le_get(h + 4, 2), sflags = (uint16_t)le_get(h + 6, 2);
    uint64_t slen = le_get(h + 8, 8);
    uint32_t crc = (uint32_t)le_get(h + 16, 4), reserved = (uint32_t)le_get(h + 20, 4);
    if (sflags != 0 || reserved != 0)
        return refuse(s, EPROTO, err, errlen,
                      "section 0x%" PRIx32 ": reserved bits set (flags 0x%x, reserved 0x%" PRIx32
                      ")",
                      sid, sflags, reserved);
    if (slen > MIG_MAX_SECTION)
        return refuse(s, EPROTO, err, errlen,
                      "section 0x%" PRIx32 " length %" PRIu64 " exceeds limit %u", sid, slen,
                      MIG_MAX_SECTION);
    if (sid == MIG_SEC_END && slen != 0)
        return refuse(s, EPROTO, err, errlen, "end section has length %" PRIu64, slen);

    uint8_t *p = NULL;
    if (slen > 0) {
        p = malloc(slen);
        if (!p)
            return refuse(s, ENOMEM, err, errlen,
                          "section 0x%" PRIx32 ": no memory for %" PRIu64 " bytes", sid, slen);
        ret = read_exact(s, p, slen, &got);
        if (ret != 0) {
            free(p);
            if (ret < 0)
                return refuse(s, -ret, err, errlen, "reading section 0x%" PRIx32 ": %s", sid,
                              io_reason(s, -ret, why, sizeof(why)));
            return refuse(s, EPROTO, err, errlen,
                          "truncated stream: section 0x%" PRIx32
                          " payload ends after %zu of %" PRIu64 " bytes",
                          sid, got, slen);
        }
    }
    uint32_t actual = mig_crc32c(0, p, slen);
    if (actual != crc) {
        free(p);
        return refuse(s, EPROTO, err, errlen,
                      "section 0x%" PRIx32 " checksum mismatch (stored 0x%08" PRIx32
                      ", computed 0x%08" PRIx32 ")",
                      sid, crc, actual);
    }
    *id = sid;
    *version = sver;
    *payload = p;
    *len = slen;
    return 0;
}
