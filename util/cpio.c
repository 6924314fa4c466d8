#include "util/cpio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CPIO_NAME_MAX 4096

static int reserve(struct cpio *c, size_t more)
{
    if (more > SIZE_MAX - c->len)
        return -1;
    if (c->len + more <= c->cap)
        return 0;
    size_t cap = c->cap ? c->cap : 4096;
    while (cap < c->len + more) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    uint8_t *b = realloc(c->buf, cap);
    if (!b)
        return -1;
    c->buf = b;
    c->cap = cap;
    return 0;
}

static int append(struct cpio *c, const void *data, size_t len)
{
    if (reserve(c, len + 3) < 0)
        return -1;
    if (len)
        memcpy(c->buf + c->len, data, len);
    c->len += len;
    while (c->len & 3)
        c->buf[c->len++] = 0;
    return 0;
}

/* The header (110 bytes of hex fields) and the NUL-terminated name, padded to 4 bytes. */
static int entry(struct cpio *c, const char *name, uint32_t mode, const void *data, size_t len)
{
    size_t namesize = strlen(name) + 1;
    if (namesize > CPIO_NAME_MAX || len > UINT32_MAX)
        return -1;
    char hdr[111];
    snprintf(hdr, sizeof(hdr), "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
             ++c->next_ino, mode, 0u, 0u, S_ISDIR(mode) ? 2u : 1u, 0u, (uint32_t)len, 0u, 0u, 0u,
             0u, (uint32_t)namesize, 0u);
    if (reserve(c, 110 + namesize + 3) < 0)
        return -1;
    memcpy(c->buf + c->len, hdr, 110);
    c->len += 110;
    if (append(c, name, namesize) < 0)
        return -1;
    return append(c, data, len);
}

int cpio_add_dir(struct cpio *c, const char *name, uint32_t mode)
{
    if (!*name || name[0] == '/')
        return -1;
    return entry(c, name, S_IFDIR | (mode & 07777), NULL, 0);
}

int cpio_add_file(struct cpio *c, const char *name, uint32_t mode, const void *data, size_t len)
{
    if (!*name || name[0] == '/')
        return -1;
    return entry(c, name, S_IFREG | (mode & 07777), data, len);
}

int cpio_finish(struct cpio *c)
{
    return entry(c, "TRAILER!!!", 0, NULL, 0);
}

void cpio_free(struct cpio *c)
{
    free(c->buf);
    memset(c, 0, sizeof(*c));
}
