/*
 * Builds a "newc" cpio archive in memory, the format Linux unpacks as an initramfs: used to
 * hand the guest the user's files (an fio job, --guest-file) without rebuilding its image.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

struct cpio {
    uint8_t *buf;
    size_t len, cap;
    uint32_t next_ino;
};

/* Each returns 0, or -1 (out of memory, or a name that is empty, absolute or too long). */
int cpio_add_dir(struct cpio *c, const char *name, uint32_t mode);
int cpio_add_file(struct cpio *c, const char *name, uint32_t mode, const void *data, size_t len);
/* Ends the archive with its trailer and pads it to a multiple of 4 bytes. */
int cpio_finish(struct cpio *c);
void cpio_free(struct cpio *c);
