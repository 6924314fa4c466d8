/* Destination side of live migration: receive, validate, load, take the disks, run. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "block/block.h"
#include "kvm/vm.h"
#include "migrate/conn.h"
#include "migrate/migrate.h"
#include "migrate/proto.h"
#include "migrate/ram.h"
#include "migrate/stream.h"
#include "migrate/tls.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"

#define MAX_SECTIONS (VM_MAX_DEVICES + 1 + VM_MAX_CPUS)

/* Which of the VM's sections arrived: each exactly once, all before the guest may run. */
struct section_set {
    uint32_t ids[MAX_SECTIONS];
    const char *names[MAX_SECTIONS];
    bool seen[MAX_SECTIONS];
    int n;
    bool ram;
};

static int section_arrived(struct section_set *set, uint32_t id, char *err, size_t errlen)
{
    if (id == MIG_SEC_CONFIG)
        return err_set(err, errlen, "the configuration section comes twice in the stream");
    if (id == MIG_SEC_RAM) {
        set->ram = true; /* RAM comes in many batches */
        return 0;
    }
    for (int i = 0; i < set->n; i++) {
        if (set->ids[i] != id)
            continue;
        if (set->seen[i])
            return err_set(err, errlen, "section 0x%x (%s) comes twice in the stream", id,
                           set->names[i]);
        set->seen[i] = true;
    }
    return 0; /* an unknown id is vm_load_section's to refuse */
}

static int sections_complete(const struct section_set *set, char *err, size_t errlen)
{
    if (!set->ram)
        return err_set(err, errlen, "the stream ended without any RAM section");
    for (int i = 0; i < set->n; i++)
        if (!set->seen[i])
            return err_set(err, errlen, "the stream ended without section 0x%x (%s)", set->ids[i],
                           set->names[i]);
    return 0;
}

/* Reads sections until END, applying each; -1 with a reason. */
static int receive_all(struct vm *vm, struct mig_stream *s, char *err, size_t errlen)
{
    struct section_set set = {0};
    set.n = vm_sections(vm, set.ids, set.names, MAX_SECTIONS);
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
            return sections_complete(&set, err, errlen);
        }
        if (section_arrived(&set, id, err, errlen) < 0)
            r = -1;
        else if (id == MIG_SEC_RAM && ver != RAM_SECTION_VERSION)
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
static int send_err(struct mig_conn *c, const char *why)
{
    char line[280];
    snprintf(line, sizeof(line), "ERR %s", why);
    proto_write_line(c, line);
    return -1;
}

static void peer_name(int fd, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
            port = ntohs(a->sin6_port);
        }
    }
    snprintf(buf, len, "%s port %u", host, port);
}

/*
 * The connection that carries the migration. With TLS, a peer that fails the handshake
 * (no TLS, wrong key, untrusted certificate, silent) is a stranger: it is refused in one
 * line and the destination goes on waiting for the real source. Without TLS nothing tells
 * a stranger from a broken source, so the first connection is the migration.
 */
static int accept_source(int lfd, struct mig_tls *tls, unsigned timeout_s, struct mig_conn *c,
                         char *err, size_t errlen)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
            continue;
        if (fd < 0)
            return err_set(err, errlen, "accept: %s", strerror(errno));
        mig_conn_plain(c, fd, timeout_s);
        if (!tls)
            return 0;
        char peer[80], why[256];
        peer_name(fd, peer, sizeof(peer));
        if (mig_tls_start(tls, c, NULL, why, sizeof(why)) == 0) {
            mig_tls_describe(c, why, sizeof(why));
            fprintf(stderr, "nvmevm: migration channel from %s: %s\n", peer, why);
            return 0;
        }
        warn_msg("refused a connection from %s: %s; still waiting for the source", peer, why);
        mig_conn_close(c);
    }
}

static int receive(struct vm *vm, struct mig_conn *c, char *err, size_t errlen)
{
    struct mig_stream s;
    mig_stream_init(&s, c);
    int ret = -1;
    uint32_t id;
    uint16_t ver;
    uint8_t *p = NULL;
    size_t len = 0;
    if (mig_read_header(&s, err, errlen) < 0 ||
        mig_read_section(&s, &id, &ver, &p, &len, err, errlen) < 0) {
        send_err(c, err);
        goto out;
    }
    struct mig_cursor cur;
    mig_cursor_init(&cur, p, len);
    if (id != MIG_SEC_CONFIG) {
        err_set(err, errlen, "stream does not start with the configuration");
        send_err(c, err);
        goto out;
    }
    if (proto_config_check(vm, ver, &cur, err, errlen) < 0) {
        send_err(c, err);
        goto out;
    }
    proto_write_line(c, "OK");
    if (receive_all(vm, &s, err, errlen) < 0) {
        send_err(c, err);
        goto out;
    }
    vm_post_load(vm);
    char line[64];
    if (proto_write_line(c, "LOADED") < 0 || proto_read_line(c, line, sizeof(line), 60) < 0 ||
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
            send_err(c, err);
            goto out;
        }
    }
    proto_write_line(c, "RUNNING");
    ret = 0;
out:
    free(p);
    mig_stream_free(&s);
    return ret;
}

int migrate_incoming(struct vm *vm, int lfd, const char *uri, struct mig_tls *tls,
                     unsigned timeout_s, char *err, size_t errlen)
{
    fprintf(stderr, "nvmevm: waiting for an incoming migration on %s%s\n", uri,
            tls ? " (TLS)" : "");
    struct mig_conn c;
    int r =
        accept_source(lfd, tls, timeout_s ? timeout_s : MIG_DEFAULT_IO_TIMEOUT, &c, err, errlen);
    close(lfd);
    if (r < 0)
        return -1;
    r = receive(vm, &c, err, errlen);
    mig_conn_close(&c);
    return r;
}
