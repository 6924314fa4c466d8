/*
 * Opening a backing file or block device: permissions, the exclusive lock, the size and
 * the O_DIRECT unit. The I/O itself lives in the backends (uring.c, mem.c).
 *
 * Locking uses OFD (open file description) locks rather than flock(): they are
 * per-description like flock, so a second open in the same process conflicts too, but
 * unlike flock they also work over NFS (mapped to POSIX locks) and QEMU uses the same
 * mechanism, so nvmevm and QEMU exclude each other on one image.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block.h"
#include "util/err.h"

/* The O_DIRECT unit when the kernel cannot tell us (no STATX_DIOALIGN): 4096 is safe on
 * every device with 512- or 4096-byte sectors; smaller requests just go buffered. */
#define BLK_DEFAULT_DIRECT_UNIT 4096

static int ofd_lock(int fd, short type)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_OFD_SETLK, &fl) < 0)
        return -errno;
    return 0;
}

int blk_lock(struct blk_dev *d)
{
    if (d->fd < 0)
        return 0; /* memory backend: nothing to share */
    /* Writers are exclusive; read-only users share, but exclude a writer. */
    return ofd_lock(d->fd, d->read_only ? F_RDLCK : F_WRLCK);
}

void blk_unlock(struct blk_dev *d)
{
    if (d->fd >= 0)
        ofd_lock(d->fd, F_UNLCK);
}

/* Size and logical block size of a block device. */
static int probe_blockdev(int fd, uint64_t *size, uint32_t *lbs)
{
    int ssz = 0;
    if (ioctl(fd, BLKGETSIZE64, size) < 0)
        return -errno;
    if (ioctl(fd, BLKSSZGET, &ssz) < 0 || ssz < 512 || (ssz & (ssz - 1)))
        ssz = 512;
    *lbs = (uint32_t)ssz;
    return 0;
}

/* O_DIRECT alignment of a regular file: STATX_DIOALIGN (Linux 6.1+) reports what the
 * filesystem needs; both the file offset and the memory alignment must be honoured, so
 * take the larger. */
static uint32_t probe_file_direct_unit(int fd)
{
    struct statx stx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align) {
        uint32_t u = stx.stx_dio_offset_align;
        if (stx.stx_dio_mem_align > u)
            u = stx.stx_dio_mem_align;
        if (u >= 512 && u <= 65536 && !(u & (u - 1)))
            return u;
    }
    return BLK_DEFAULT_DIRECT_UNIT;
}

static struct blk_dev *fail(struct blk_dev *d, char *err, size_t errlen, const char *path,
                            const char *why)
{
    if (err && errlen)
        err_set(err, errlen, "%s: %s", path, why);
    blk_close(d);
    return NULL;
}

struct blk_dev *blk_open(const char *path, const struct blk_open_opts *o, char *err, size_t errlen)
{
    static const struct blk_open_opts defaults = {.cache = BLK_CACHE_WRITEBACK, .lock = true};
    if (!o)
        o = &defaults;
    struct blk_dev *d = calloc(1, sizeof(*d));
    if (!d)
        return fail(NULL, err, errlen, path, strerror(ENOMEM));
    d->ops = &blk_uring_ops;
    d->fd = -1;
    d->direct_fd = -1;
    d->read_only = o->read_only;
    d->cache = o->cache;
    d->path = strdup(path);
    if (!d->path)
        return fail(d, err, errlen, path, strerror(ENOMEM));

    int flags = (o->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    d->fd = open(path, flags);
    if (d->fd < 0)
        return fail(d, err, errlen, path, strerror(errno));

    struct stat st;
    if (fstat(d->fd, &st) < 0)
        return fail(d, err, errlen, path, strerror(errno));
    if (S_ISBLK(st.st_mode)) {
        int r = probe_blockdev(d->fd, &d->size, &d->logical_block);
        if (r < 0)
            return fail(d, err, errlen, path, strerror(-r));
    } else if (S_ISREG(st.st_mode)) {
        d->size = (uint64_t)st.st_size;
        d->logical_block = probe_file_direct_unit(d->fd);
    } else {
        return fail(d, err, errlen, path, "not a regular file or block device");
    }

    /* Lock before anything could write, so a refused second user never touches data. */
    if (o->lock) {
        int r = blk_lock(d);
        if (r == -EAGAIN || r == -EACCES)
            return fail(d, err, errlen, path,
                        "locked by another process (is another nvmevm using it?)");
        if (r < 0)
            return fail(d, err, errlen, path, strerror(-r));
    }

    /* A second description with O_DIRECT for aligned requests. Filesystems without
     * O_DIRECT (tmpfs before 6.6, some FUSE) refuse it: then everything goes buffered,
     * which is still correct, only through the page cache. */
    if (o->cache == BLK_CACHE_NONE) {
        d->direct_fd = open(path, flags | O_DIRECT);
        if (d->direct_fd < 0 && errno != EINVAL)
            return fail(d, err, errlen, path, strerror(errno));
    }
    return d;
}

void blk_close(struct blk_dev *d)
{
    if (!d)
        return;
    if (d->direct_fd >= 0)
        close(d->direct_fd);
    if (d->fd >= 0)
        close(d->fd); /* drops the OFD lock with the last reference */
    free(d->priv);
    free(d->path);
    free(d);
}
