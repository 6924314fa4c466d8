#include "migrate/proto.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "block/block.h"
#include "emu/nvme.h"
#include "kvm/vm.h"
#include "migrate/conn.h"
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

int proto_write_line(struct mig_conn *c, const char *line)
{
    char buf[300];
    int n = snprintf(buf, sizeof(buf), "%s\n", line);
    if (n < 0 || (size_t)n >= sizeof(buf))
        n = (int)sizeof(buf) - 1, buf[n - 1] = '\n';
    for (int done = 0; done < n;) {
        ssize_t w = mig_conn_write(c, buf + done, (size_t)(n - done));
        if (w <= 0)
            return -1;
        done += (int)w;
    }
    return 0;
}

int proto_read_line(struct mig_conn *c, char *buf, size_t len, int timeout_s)
{
    size_t n = 0;
    int ret = 0;
    unsigned saved = c->timeout_s;
    time_t deadline = time(NULL) + timeout_s;
    while (n + 1 < len) {
        int left = (int)(deadline - time(NULL));
        if (left <= 0) {
            ret = -1;
            break;
        }
        /* The whole line within timeout_s, however slowly its bytes come. */
        c->timeout_s = (unsigned)left;
        char ch;
        ssize_t r = mig_conn_read(c, &ch, 1);
        if (r <= 0) {
            ret = -1;
            break;
        }
        if (ch == '\n')
            break;
        buf[n++] = ch;
    }
    c->timeout_s = saved;
    buf[n] = '\0';
    return ret;
}
