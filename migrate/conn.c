#include "migrate/conn.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* 0 when fd is ready, -ETIMEDOUT after timeout_s without it, -errno on a poll error. */
static int wait_ready(int fd, short events, unsigned timeout_s)
{
    struct pollfd p = {.fd = fd, .events = events};
    int ms = timeout_s ? (int)(timeout_s > 2000000 ? 2000000000 : timeout_s * 1000) : -1;
    for (;;) {
        int n = poll(&p, 1, ms);
        if (n > 0)
            return 0;
        if (n == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

ssize_t mig_fd_read(int fd, void *buf, size_t n, unsigned timeout_s)
{
    for (;;) {
        int w = wait_ready(fd, POLLIN, timeout_s);
        if (w < 0)
            return w;
        ssize_t r = read(fd, buf, n);
        if (r >= 0)
            return r;
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
    }
}

ssize_t mig_fd_write(int fd, const void *buf, size_t n, unsigned timeout_s)
{
    for (;;) {
        int w = wait_ready(fd, POLLOUT, timeout_s);
        if (w < 0)
            return w;
        /* A blocking write of a large buffer could wait forever for a reader that stopped;
         * MSG_DONTWAIT takes what fits and comes back to the bounded poll. */
        ssize_t r = send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r < 0 && errno == ENOTSOCK)
            r = write(fd, buf, n);
        if (r > 0)
            return r;
        if (r == 0)
            return -EIO;
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
    }
}

static ssize_t plain_read(struct mig_conn *c, void *buf, size_t n)
{
    return mig_fd_read(c->fd, buf, n, c->timeout_s);
}

static ssize_t plain_write(struct mig_conn *c, const void *buf, size_t n)
{
    return mig_fd_write(c->fd, buf, n, c->timeout_s);
}

static void plain_close(struct mig_conn *c)
{
    (void)c;
}

static const struct mig_conn_ops plain_ops = {
    .read = plain_read,
    .write = plain_write,
    .close = plain_close,
};

void mig_conn_plain(struct mig_conn *c, int fd, unsigned timeout_s)
{
    memset(c, 0, sizeof(*c));
    c->ops = &plain_ops;
    c->fd = fd;
    c->timeout_s = timeout_s;
}

ssize_t mig_conn_read(struct mig_conn *c, void *buf, size_t n)
{
    ssize_t r = c->ops ? c->ops->read(c, buf, n) : -EBADF;
    if (r < 0)
        c->last_errno = (int)-r;
    return r;
}

ssize_t mig_conn_write(struct mig_conn *c, const void *buf, size_t n)
{
    ssize_t r = c->ops ? c->ops->write(c, buf, n) : -EBADF;
    if (r < 0)
        c->last_errno = (int)-r;
    return r;
}

void mig_conn_close(struct mig_conn *c)
{
    if (c->ops)
        c->ops->close(c);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->ops = NULL;
}
