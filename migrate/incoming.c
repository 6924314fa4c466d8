/* Destination side of live migration: receive, validate, load, take the disks, run. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "block/block.h"
#include "kvm/vm.h"
#include "util/buf.h"
#include "migrate/migrate.h"
#include "migrate/proto.h"
#include "migrate/ram.h"
#include "migrate/stream.h"
#include "migrate/tcp.h"
#include "util/err.h"
#include "util/log.h"

/* Reads sections until END, applying each; -1 with a reason. */
static int receive_all(struct vm *vm, struct mig_stream *s, char *err, size_t errlen)
{
    for (;;) {
        uint32_t id;
        uint16_t ver;
        uint8_t *p = NULL;
        size_t len = 0;
        if (mig_read_section(s, &id, &ver, &p, &len, err, errlen) < 0)
            return -1;
        int r = 0;
        if (id == MIG_SEC_END) {
            free(p);
            return 0;
        }
        if (id == MIG_SEC_RAM && ver != RAM_SECTION_VERSION)
            r = err_set(err, errlen, "RAM section version %u, this nvmevm reads %u", ver,
                        RAM_SECTION_VERSION);
        else if (id == MIG_SEC_RAM)
            r = ram_receive(vm, p, len, err, errlen);
        else
            r = vm_load_section(vm, id, ver, p, len, err, errlen);
        free(p);
        if (r < 0)
            return -1;
    }
}

/* Tells the source why this side refuses the stream. */
static int send_err(int fd, const char *why)
{
    char line[280];
    snprintf(line, sizeof(line), "ERR %s", why);
    proto_write_line(fd, line);
    return -1;
}

int migrate_incoming(struct vm *vm, int lfd, const char *uri, char *err, size_t errlen)
{
    fprintf(stderr, "nvmevm: waiting for an incoming migration on %s\n", uri);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    close(lfd);
    if (fd < 0) {
        return err_set(err, errlen, "%s: accept: %s", uri, strerror(errno));
    }
    struct mig_stream s;
    mig_stream_init(&s, fd);
    int ret = -1;
    uint32_t id;
    uint16_t ver;
    uint8_t *p = NULL;
    size_t len = 0;
    if (mig_read_header(&s, err, errlen) < 0 ||
        mig_read_section(&s, &id, &ver, &p, &len, err, errlen) < 0) {
        send_err(fd, err);
        goto out;
    }
    struct mig_cursor c;
    mig_cursor_init(&c, p, len);
    if (id != MIG_SEC_CONFIG) {
        err_set(err, errlen, "stream does not start with the configuration");
        send_err(fd, err);
        goto out;
    }
    if (proto_config_check(vm, ver, &c, err, errlen) < 0) {
        send_err(fd, err);
        goto out;
    }
    proto_write_line(fd, "OK");
    if (receive_all(vm, &s, err, errlen) < 0) {
        send_err(fd, err);
        goto out;
    }
    vm_post_load(vm);
    char line[64];
    if (proto_write_line(fd, "LOADED") < 0 || proto_read_line(fd, line, sizeof(line), 60) < 0 ||
        strcmp(line, "HANDOVER") != 0) {
        err_set(err, errlen, "the source did not hand over its disks");
        goto out;
    }
    /* The guest runs here only once every disk is ours. */
    for (int i = 0; i < vm->disks.nr_ns; i++) {
        int r = blk_lock(vm->disks.ns[i].blk);
        if (r < 0) {
            err_set(err, errlen, "%s: cannot take the disk lock: %s", vm->disks.ns[i].blk->path,
                    strerror(-r));
            for (int j = 0; j < i; j++)
                blk_unlock(vm->disks.ns[j].blk);
            send_err(fd, err);
            goto out;
        }
    }
    proto_write_line(fd, "RUNNING");
    ret = 0;
out:
    free(p);
    mig_stream_free(&s);
    close(fd);
    return ret;
}
