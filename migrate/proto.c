#include "migrate/proto.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "block/block.h"
#include "emu/nvme.h"
#include "kvm/vm.h"
#include "util/buf.h"
#include "util/err.h"

void proto_config_put(const struct vm *vm, struct mig_buf *b)
{
    mig_put_u64(b, vm->mem.size);
    mig_put_u32(b, (uint32_t)vm->ncpus);
    int n = vm->disks.nr_ns;
    mig_put_u32(b, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        mig_put_u64(b, vm->disks.ns[i].blk->size);
        mig_put_u32(b, vm->disks.ns[i].lba_shift);
        mig_put_u8(b, vm->disks.ns[i].blk->read_only);
    }
}

int proto_config_check(const struct vm *vm, uint16_t ver, struct mig_cursor *c, char *err,
                       size_t errlen)
{
    uint64_t mem = mig_get_u64(c);
    uint32_t cpus = mig_get_u32(c), n = mig_get_u32(c);
    int have = vm->disks.nr_ns;
    if (c->bad || ver != PROTO_CONFIG_VERSION) {
        return err_set(err, errlen, "configuration: unreadable (version %u)", ver);
    }
    if (mem != vm->mem.size) {
        return err_set(err, errlen, "guest RAM is %llu MiB in the stream, %llu MiB here (--mem)",
                       (unsigned long long)(mem >> 20), (unsigned long long)(vm->mem.size >> 20));
    }
    if (cpus != (uint32_t)vm->ncpus) {
        return err_set(err, errlen, "%u vCPUs in the stream, %d here (--cpus)", cpus, vm->ncpus);
    }
    if (n != (uint32_t)have) {
        return err_set(err, errlen, "%u disks in the stream, %d here", n, have);
    }
    for (uint32_t i = 0; i < n; i++) {
        uint64_t size = mig_get_u64(c);
        uint32_t shift = mig_get_u32(c);
        uint8_t ro = mig_get_u8(c);
        const struct nvme_ns_config *ns = &vm->disks.ns[i];
        if (c->bad) {
            return err_set(err, errlen, "configuration: truncated");
        }
        if (size != ns->blk->size || shift != ns->lba_shift || ro != ns->blk->read_only) {
            err_set(err, errlen,
                    "disk %u differs: %llu bytes, %u-byte LBAs%s in the stream; %s here is "
                    "%llu bytes, %u-byte LBAs%s",
                    i + 1, (unsigned long long)size, 1u << (shift & 31), ro ? ", ro" : "",
                    ns->blk->path, (unsigned long long)ns->blk->size, 1u << ns->lba_shift,
                    ns->blk->read_only ? ", ro" : "");
            return -1;
        }
    }
    if (!mig_cursor_done(c)) {
        return err_set(err, errlen, "configuration: unexpected trailing bytes");
    }
    return 0;
}

int proto_write_line(int fd, const char *line)
{
    char buf[300];
    int n = snprintf(buf, sizeof(buf), "%s\n", line);
    if (n < 0 || (size_t)n >= sizeof(buf))
        n = (int)sizeof(buf) - 1, buf[n - 1] = '\n';
    for (int done = 0; done < n;) {
        ssize_t w = write(fd, buf + done, (size_t)(n - done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        done += (int)w;
    }
    return 0;
}

int proto_read_line(int fd, char *buf, size_t len, int timeout_s)
{
    size_t n = 0;
    buf[0] = '\0';
    time_t deadline = time(NULL) + timeout_s;
    while (n + 1 < len) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left = (int)(deadline - time(NULL));
        if (left < 0 || poll(&p, 1, left * 1000) <= 0) {
            buf[n] = '\0';
            return -1;
        }
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            buf[n] = '\0';
            return -1;
        }
        if (ch == '\n')
            break;
        buf[n++] = ch;
    }
    buf[n] = '\0';
    return 0;
}
