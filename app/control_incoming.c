/* The destination's wait: the control socket keeps answering (status says "incoming",
 * quit works, watchers see the migration's events) while migrate/incoming.c receives on its
 * own thread. */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "app/control.h"
#include "kvm/vm.h"
#include "migrate/migrate.h"
#include "util/log.h"

int control_wait_incoming(struct control *c, struct vm *vm, struct mig_incoming *in, int sfd,
                          int *status, char *err, size_t errlen)
{
    int stop_status = -1;
    c->incoming = in;
    for (;;) {
        struct pollfd p[3 + CONTROL_MAX_POLLFDS] = {
            {.fd = migrate_incoming_fd(in), .events = POLLIN},
            {.fd = stop_status < 0 ? sfd : -1, .events = POLLIN},
            {.fd = stop_status < 0 ? vm->stop_efd : -1, .events = POLLIN},
        };
        int nctl = control_pollfds(c, p + 3);
        int r = poll(p, (nfds_t)(3 + nctl), -1);
        if (r < 0 && errno != EINTR)
            die_errno("poll");
        if (r <= 0)
            continue;
        if (p[0].revents & POLLIN)
            break;
        if (p[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
                stop_status = 128 + (int)si.ssi_signo;
                migrate_incoming_cancel(in);
            }
        }
        if ((p[2].revents & POLLIN) && stop_status < 0) {
            stop_status = vm->exit_status; /* quit on the control socket */
            migrate_incoming_cancel(in);
        }
        control_handle(c, vm, p + 3, nctl);
    }
    c->incoming = NULL;
    /* A quit served in the loop's last round cancelled the thread, whose end woke us first. */
    if (stop_status < 0 && atomic_load(&vm->stopping))
        stop_status = vm->exit_status;
    int r = migrate_incoming_finish(in, err, errlen);
    if (stop_status >= 0) {
        *status = stop_status;
        return 0;
    }
    return r < 0 ? -1 : 1;
}
