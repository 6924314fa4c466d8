#include "hw/uart.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/err.h"

/* Register offsets (DLAB=0 meaning unless noted). */
enum {
    REG_RBR_THR_DLL = 0,
    REG_IER_DLM = 1,
    REG_IIR_FCR = 2,
    REG_LCR = 3,
    REG_MCR = 4,
    REG_LSR = 5,
    REG_MSR = 6,
    REG_SCR = 7,
};

#define IER_RDI  0x01
#define IER_THRI 0x02
#define IER_MSI  0x08
#define IER_MASK 0x0f

#define IIR_NO_INT 0x01
#define IIR_MSI    0x00
#define IIR_THRI   0x02
#define IIR_RDI    0x04
#define IIR_FIFO   0xc0

#define FCR_ENABLE 0x01

#define LCR_DLAB 0x80

#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR   0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_CTS  0x10
#define MSR_DSR  0x20
#define MSR_RI   0x40
#define MSR_DCD  0x80

#define INPUT_QUEUE_SIZE 4096

struct uart {
    pthread_mutex_t lock;
    int out_fd;
    void (*irq_set)(void *opaque, int level);
    void *irq_opaque;
    int irq_level;

    uint8_t ier, lcr, mcr, scr, dll, dlm;
    bool fifo_enabled;
    bool thri_pending;
    uint8_t msr_delta; /* low nibble of MSR, cleared when MSR is read */

    uint8_t in[INPUT_QUEUE_SIZE];
    size_t in_head; /* next byte the guest reads */
    size_t in_count;
};

struct uart *uart_new(int out_fd, void (*irq_set)(void *opaque, int level), void *irq_opaque)
{
    struct uart *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    if (pthread_mutex_init(&u->lock, NULL) != 0) {
        free(u);
        return NULL;
    }
    u->out_fd = out_fd;
    u->irq_set = irq_set;
    u->irq_opaque = irq_opaque;
    /* Output is synchronous, so the transmitter is empty from the start. */
    u->thri_pending = true;
    return u;
}

void uart_free(struct uart *u)
{
    if (!u)
        return;
    pthread_mutex_destroy(&u->lock);
    free(u);
}

/* Modem inputs: in loopback they echo MCR, otherwise a permanently ready peer. */
static uint8_t msr_lines(const struct uart *u)
{
    if (!(u->mcr & MCR_LOOP))
        return MSR_DCD | MSR_DSR | MSR_CTS;
    uint8_t v = 0;
    if (u->mcr & MCR_RTS)
        v |= MSR_CTS;
    if (u->mcr & MCR_DTR)
        v |= MSR_DSR;
    if (u->mcr & MCR_OUT1)
        v |= MSR_RI;
    if (u->mcr & MCR_OUT2)
        v |= MSR_DCD;
    return v;
}

static uint8_t msr_deltas(uint8_t before, uint8_t after)
{
    uint8_t changed = before ^ after;
    uint8_t d = 0;
    if (changed & MSR_CTS)
        d |= MSR_DCTS;
    if (changed & MSR_DSR)
        d |= MSR_DDSR;
    if ((before & MSR_RI) && !(after & MSR_RI))
        d |= MSR_TERI;
    if (changed & MSR_DCD)
        d |= MSR_DDCD;
    return d;
}

/* Highest-priority pending and enabled source, as IIR encodes it. */
static uint8_t pending_iir(const struct uart *u)
{
    if ((u->ier & IER_RDI) && u->in_count > 0)
        return IIR_RDI;
    if ((u->ier & IER_THRI) && u->thri_pending)
        return IIR_THRI;
    if ((u->ier & IER_MSI) && u->msr_delta)
        return IIR_MSI;
    return IIR_NO_INT;
}

/*
 * Called with the lock held so that level changes reach irq_set in the order
 * they happened; irq_set only issues an ioctl, it never calls back into us.
 * OUT2 gates the line as on PC boards; loopback forces OUT2 inactive there.
 */
static void update_irq(struct uart *u)
{
    bool gate = (u->mcr & MCR_OUT2) && !(u->mcr & MCR_LOOP);
    int level = gate && pending_iir(u) != IIR_NO_INT;
    if (level == u->irq_level)
        return;
    u->irq_level = level;
    if (u->irq_set)
        u->irq_set(u->irq_opaque, level);
}

static bool input_push(struct uart *u, uint8_t byte)
{
    if (u->in_count == INPUT_QUEUE_SIZE)
        return false;
    u->in[(u->in_head + u->in_count) % INPUT_QUEUE_SIZE] = byte;
    u->in_count++;
    return true;
}

static uint8_t input_pop(struct uart *u)
{
    if (u->in_count == 0)
        return 0;
    uint8_t byte = u->in[u->in_head];
    u->in_head = (u->in_head + 1) % INPUT_QUEUE_SIZE;
    u->in_count--;
    return byte;
}

/* A byte that cannot be written (closed or non-blocking full fd) is dropped:
 * the guest must never stall on the host's console. */
static void emit(int fd, uint8_t byte)
{
    if (fd < 0)
        return;
    for (;;) {
        ssize_t n = write(fd, &byte, 1);
        if (n == 1 || (n < 0 && errno != EINTR))
            return;
    }
}

static void transmit(struct uart *u, uint8_t byte)
{
    u->thri_pending = false;
    if (u->mcr & MCR_LOOP)
        input_push(u, byte); /* a full receiver overruns: the byte is lost */
    else
        emit(u->out_fd, byte);
    /* The shift register empties at once, so THRE rises again immediately. */
    u->thri_pending = true;
}

static uint8_t read_reg(struct uart *u, unsigned reg)
{
    bool dlab = u->lcr & LCR_DLAB;
    switch (reg) {
    case REG_RBR_THR_DLL:
        return dlab ? u->dll : input_pop(u);
    case REG_IER_DLM:
        return dlab ? u->dlm : u->ier;
    case REG_IIR_FCR: {
        uint8_t iir = pending_iir(u);
        /* Reading IIR acknowledges a THR-empty interrupt it reports. */
        if (iir == IIR_THRI)
            u->thri_pending = false;
        return iir | (u->fifo_enabled ? IIR_FIFO : 0);
    }
    case REG_LCR:
        return u->lcr;
    case REG_MCR:
        return u->mcr;
    case REG_LSR:
        return LSR_THRE | LSR_TEMT | (u->in_count > 0 ? LSR_DR : 0);
    case REG_MSR: {
        uint8_t v = msr_lines(u) | u->msr_delta;
        u->msr_delta = 0;
        return v;
    }
    case REG_SCR:
        return u->scr;
    default:
        return 0xff;
    }
}

static void write_reg(struct uart *u, unsigned reg, uint8_t v)
{
    bool dlab = u->lcr & LCR_DLAB;
    switch (reg) {
    case REG_RBR_THR_DLL:
        if (dlab)
            u->dll = v;
        else
            transmit(u, v);
        break;
    case REG_IER_DLM:
        if (dlab) {
            u->dlm = v;
            break;
        }
        /* Enabling THRI while the holding register is empty raises it anew. */
        if ((v & IER_THRI) && !(u->ier & IER_THRI))
            u->thri_pending = true;
        u->ier = v & IER_MASK;
        break;
    case REG_IIR_FCR:
        /* FIFO resets are ignored: the queue models the line as well as the
         * FIFO, and dropping host input typed before the driver starts helps no one. */
        u->fifo_enabled = v & FCR_ENABLE;
        break;
    case REG_LCR:
        u->lcr = v;
        break;
    case REG_MCR: {
        uint8_t before = msr_lines(u);
        u->mcr = v & MCR_MASK;
        u->msr_delta |= msr_deltas(before, msr_lines(u));
        break;
    }
    case REG_SCR:
        u->scr = v;
        break;
    default:
        /* LSR and MSR writes are factory-test hooks with nothing to model. */
        break;
    }
}

/* Wider accesses behave as consecutive byte accesses, like an 8-bit ISA part. */
void uart_io(void *uart, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct uart *u = uart;
    pthread_mutex_lock(&u->lock);
    for (uint32_t i = 0; i < len; i++) {
        uint64_t reg = offset + i;
        if (reg >= UART_NR_PORTS) {
            if (!is_write)
                data[i] = 0xff;
            continue;
        }
        if (is_write)
            write_reg(u, (unsigned)reg, data[i]);
        else
            data[i] = read_reg(u, (unsigned)reg);
    }
    update_irq(u);
    pthread_mutex_unlock(&u->lock);
}

size_t uart_input(struct uart *u, const uint8_t *buf, size_t n)
{
    size_t accepted = 0;
    pthread_mutex_lock(&u->lock);
    while (accepted < n && input_push(u, buf[accepted]))
        accepted++;
    update_irq(u);
    pthread_mutex_unlock(&u->lock);
    return accepted;
}

size_t uart_input_space(struct uart *u)
{
    pthread_mutex_lock(&u->lock);
    size_t space = INPUT_QUEUE_SIZE - u->in_count;
    pthread_mutex_unlock(&u->lock);
    return space;
}

/* ---- migration ---- */

#define UART_STATE_VERSION 1
#define FLAG_FIFO          0x01
#define FLAG_THRI          0x02
#define MSR_DELTA_MASK     0x0f

void uart_save(struct uart *u, struct mig_buf *b)
{
    pthread_mutex_lock(&u->lock);
    mig_put_u16(b, UART_STATE_VERSION);
    mig_put_u8(b, u->ier);
    mig_put_u8(b, u->lcr);
    mig_put_u8(b, u->mcr);
    mig_put_u8(b, u->scr);
    mig_put_u8(b, u->dll);
    mig_put_u8(b, u->dlm);
    mig_put_u8(b, (u->fifo_enabled ? FLAG_FIFO : 0) | (u->thri_pending ? FLAG_THRI : 0));
    mig_put_u8(b, u->msr_delta);
    /* The queue goes out unwrapped, oldest byte first. */
    mig_put_u32(b, (uint32_t)u->in_count);
    size_t first = INPUT_QUEUE_SIZE - u->in_head;
    if (first > u->in_count)
        first = u->in_count;
    mig_put_bytes(b, u->in + u->in_head, first);
    mig_put_bytes(b, u->in, u->in_count - first);
    pthread_mutex_unlock(&u->lock);
}

int uart_load(struct uart *u, struct mig_cursor *c, char *err, size_t errlen)
{
    /* Decoded into a scratch copy so a refusal leaves the live device untouched. It is heap
     * allocated because the queue makes it too big for a vCPU thread's stack comfort. */
    struct uart *t = malloc(sizeof(*t));
    if (!t)
        return err_set(err, errlen, "uart: out of memory");
    int ret = -1;
    uint16_t version = mig_get_u16(c);
    if (c->bad) {
        err_set(err, errlen, "uart: state truncated before version");
        goto out;
    }
    if (version != UART_STATE_VERSION) {
        err_set(err, errlen, "uart: state version %u, this nvmevm reads %u", version,
                UART_STATE_VERSION);
        goto out;
    }
    t->ier = mig_get_u8(c);
    t->lcr = mig_get_u8(c);
    t->mcr = mig_get_u8(c);
    t->scr = mig_get_u8(c);
    t->dll = mig_get_u8(c);
    t->dlm = mig_get_u8(c);
    uint8_t flags = mig_get_u8(c);
    t->msr_delta = mig_get_u8(c);
    uint32_t count = mig_get_u32(c);
    if (c->bad) {
        err_set(err, errlen, "uart: state truncated in registers");
        goto out;
    }
    if (t->ier & ~IER_MASK) {
        err_set(err, errlen, "uart: IER 0x%02x has reserved bits set", t->ier);
        goto out;
    }
    if (t->mcr & ~MCR_MASK) {
        err_set(err, errlen, "uart: MCR 0x%02x has reserved bits set", t->mcr);
        goto out;
    }
    if (flags & ~(FLAG_FIFO | FLAG_THRI)) {
        err_set(err, errlen, "uart: flags 0x%02x has unknown bits set", flags);
        goto out;
    }
    if (t->msr_delta & ~MSR_DELTA_MASK) {
        err_set(err, errlen, "uart: MSR delta 0x%02x has non-delta bits set", t->msr_delta);
        goto out;
    }
    if (count > INPUT_QUEUE_SIZE) {
        err_set(err, errlen, "uart: input length %u exceeds queue size %d", count,
                INPUT_QUEUE_SIZE);
        goto out;
    }
    if (!mig_get_bytes(c, t->in, count)) {
        err_set(err, errlen, "uart: input truncated (%u bytes announced)", count);
        goto out;
    }
    if (!mig_cursor_done(c)) {
        err_set(err, errlen, "uart: %zu trailing bytes after state", c->len - c->pos);
        goto out;
    }

    pthread_mutex_lock(&u->lock);
    u->ier = t->ier;
    u->lcr = t->lcr;
    u->mcr = t->mcr;
    u->scr = t->scr;
    u->dll = t->dll;
    u->dlm = t->dlm;
    u->fifo_enabled = flags & FLAG_FIFO;
    u->thri_pending = flags & FLAG_THRI;
    u->msr_delta = t->msr_delta;
    memcpy(u->in, t->in, count);
    u->in_head = 0;
    u->in_count = count;
    /* Force the line: the destination's interrupt controller may not match our cached level. */
    u->irq_level = -1;
    update_irq(u);
    pthread_mutex_unlock(&u->lock);
    ret = 0;
out:
    free(t);
    return ret;
}

/* ---- the device table entry (hw/device.h) ---- */

static int save_op(void *dev, struct mig_buf *b, char *err, size_t errlen)
{
    uart_save(dev, b);
    return 0;
}

static int load_op(void *dev, struct mig_cursor *c, char *err, size_t errlen)
{
    return uart_load(dev, c, err, errlen);
}

static void free_op(void *dev)
{
    uart_free(dev);
}

const struct device_ops uart_device = {
    .name = "ttyS0",
    .section = UART_SECTION,
    .version = 1,
    .pio_base = UART_COM1_BASE,
    .pio_len = UART_NR_PORTS,
    .pio = uart_io,
    .save = save_op,
    .load = load_op,
    .free = free_op,
};
