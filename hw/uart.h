/*
 * 8250/16550A UART (the guest's ttyS0). Output bytes go to out_fd; host input is
 * queued with uart_input(). The interrupt line is reported through irq_set so the
 * model needs no KVM: the VMM maps it to KVM_IRQ_LINE.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hw/device.h"

#define UART_COM1_BASE 0x3f8
#define UART_COM1_IRQ  4
#define UART_NR_PORTS  8

struct uart;
struct mig_buf;
struct mig_cursor;

struct uart *uart_new(int out_fd, void (*irq_set)(void *opaque, int level), void *irq_opaque);
void uart_free(struct uart *u);
/* bus_io_fn for the 8 ports at UART_COM1_BASE. */
void uart_io(void *uart, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);
/* Queue host input; returns how many bytes were accepted (the rest must be retried). */
size_t uart_input(struct uart *u, const uint8_t *buf, size_t n);
/* Free space in the input queue (the host stops reading stdin at 0). */
size_t uart_input_space(struct uart *u);

/* Migration (UART_SECTION): registers, pending-interrupt state and unread input. Load refuses
 * a bad state with a one-line reason in err and leaves u unchanged; on success it drives the
 * IRQ line to the loaded level (always calls irq_set, since the line's state on this side is
 * unknown). */
void uart_save(struct uart *u, struct mig_buf *b);
int uart_load(struct uart *u, struct mig_cursor *c, char *err, size_t errlen);

#define UART_SECTION 0x70 /* migration section */
/* How the VM creates, saves, loads and frees it (hw/device.h). */
extern const struct device_ops uart_device;
