/*
 * COM1 output by polling: wait for LSR.THRE, write THR. Works in ring 0 and in
 * ring 3 (IOPL = 3 / TSS I/O bitmap). Each port access is a VM exit, and under
 * kvm_pvm a ring-3 one costs ~20-30 us, so LSR is read once per FIFO load:
 * THRE set means the 16-byte transmit FIFO is empty.
 */
#include "tiny.h"

#define UART_THR        0
#define UART_IER        1
#define UART_FCR        2
#define UART_LCR        3
#define UART_LSR        5
#define LSR_THRE        0x20
#define THRE_SPIN_LIMIT 100000 /* never hang on a broken UART: write anyway */
#define TX_FIFO_SIZE    16

static volatile uint32_t serial_lock_word;
static unsigned tx_room; /* bytes that may be written before LSR must be read again */

/*
 * Minimal init: no interrupts, FIFOs on, 8N1. The baud divisor is left alone
 * (virtual UARTs ignore it), which saves three port writes.
 */
void serial_init(void)
{
    outb(COM1 + UART_IER, 0x00);
    outb(COM1 + UART_FCR, 0x07); /* enable and clear FIFOs */
    outb(COM1 + UART_LCR, 0x03);
    tx_room = 0;
}

void serial_write(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (tx_room == 0) {
            for (unsigned k = 0; k < THRE_SPIN_LIMIT; k++)
                if (inb(COM1 + UART_LSR) & LSR_THRE)
                    break;
            tx_room = TX_FIFO_SIZE;
        }
        outb(COM1 + UART_THR, (uint8_t)s[i]);
        tx_room--;
    }
}

/*
 * Lines from several cpus must not interleave. The lock is taken with a bounded
 * spin so a cpu that died holding it (or an exception handler interrupting the
 * holder on the same cpu) cannot deadlock the output.
 */
static void serial_lock(void)
{
    /* Ring 0 only prints when dying, and its spin would be emulated: keep it short. */
    uint64_t spins = current_cpl() == 0 ? 1000 : 100000000;
    for (uint64_t i = 0; i < spins; i++) {
        uint32_t v = 1;
        __asm__ volatile("xchgl %0, %1" : "+r"(v), "+m"(serial_lock_word) : : "memory");
        if (v == 0)
            return;
        cpu_relax();
    }
}

static void serial_unlock(void)
{
    __asm__ volatile("" ::: "memory");
    serial_lock_word = 0;
}

void kprintf(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vformat(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(buf))
        n = sizeof(buf) - 1;
    serial_lock();
    serial_write(buf, (size_t)n);
    serial_unlock();
}
