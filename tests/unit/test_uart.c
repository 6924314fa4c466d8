#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "hw/uart.h"

enum {
    RBR = 0,
    THR = 0,
    DLL = 0,
    IER = 1,
    DLM = 1,
    IIR = 2,
    FCR = 2,
    LCR = 3,
    MCR = 4,
    LSR = 5,
    MSR = 6,
    SCR = 7
};

#define MCR_OUT2 0x08
#define MCR_LOOP 0x10

/* Every irq_set call, so tests can check levels and that only changes are reported. */
static int irq_log[64];
static int irq_calls;
static int pipefd[2];
static struct uart *u;

static void record_irq(void *opaque, int level)
{
    cr_assert_eq(opaque, &irq_calls);
    if (irq_calls < 64)
        irq_log[irq_calls] = level;
    irq_calls++;
}

static int irq_level(void)
{
    return irq_calls ? irq_log[irq_calls - 1] : 0;
}

static void setup(void)
{
    irq_calls = 0;
    cr_assert_eq(pipe2(pipefd, O_NONBLOCK), 0);
    u = uart_new(pipefd[1], record_irq, &irq_calls);
    cr_assert_not_null(u);
}

static void teardown(void)
{
    uart_free(u);
    close(pipefd[0]);
    close(pipefd[1]);
}

TestSuite(uart, .init = setup, .fini = teardown, .timeout = 10);

static uint8_t in(unsigned reg)
{
    uint8_t v = 0;
    uart_io(u, reg, &v, 1, false);
    return v;
}

static void out(unsigned reg, uint8_t v)
{
    uart_io(u, reg, &v, 1, true);
}

static size_t drain(char *buf, size_t cap)
{
    ssize_t n = read(pipefd[0], buf, cap);
    return n < 0 ? 0 : (size_t)n;
}

Test(uart, thr_bytes_reach_out_fd)
{
    const char *msg = "hello, ttyS0\n";
    for (size_t i = 0; i < strlen(msg); i++)
        out(THR, (uint8_t)msg[i]);
    char buf[64] = {0};
    cr_assert_eq(drain(buf, sizeof(buf)), strlen(msg));
    cr_assert_str_eq(buf, msg);
}

Test(uart, negative_out_fd_drops_output)
{
    struct uart *quiet = uart_new(-1, NULL, NULL);
    uint8_t v = 'x';
    uart_io(quiet, THR, &v, 1, true);
    uart_io(quiet, LSR, &v, 1, false);
    cr_assert_eq(v, 0x60);
    uart_free(quiet);
}

Test(uart, full_out_pipe_does_not_block)
{
    /* The pipe is non-blocking: once full, bytes are dropped, not retried forever. */
    for (int i = 0; i < 1 << 17; i++)
        out(THR, 'z');
    cr_assert_eq(in(LSR)&0x60, 0x60);
}

Test(uart, lsr_reports_data_ready_only_with_input)
{
    cr_assert_eq(in(LSR), 0x60);
    cr_assert_eq(uart_input(u, (const uint8_t *)"ab", 2), 2);
    cr_assert_eq(in(LSR), 0x61);
    cr_assert_eq(in(RBR), 'a');
    cr_assert_eq(in(LSR), 0x61);
    cr_assert_eq(in(RBR), 'b');
    cr_assert_eq(in(LSR), 0x60);
}

Test(uart, input_is_read_in_order_across_wraparound)
{
    uint8_t buf[3000];
    for (int round = 0; round < 4; round++) {
        for (size_t i = 0; i < sizeof(buf); i++)
            buf[i] = (uint8_t)(i * 7 + round);
        cr_assert_eq(uart_input(u, buf, sizeof(buf)), sizeof(buf));
        for (size_t i = 0; i < sizeof(buf); i++)
            cr_assert_eq(in(RBR), buf[i], "round %d byte %zu", round, i);
        cr_assert_eq(in(LSR)&1, 0);
    }
}

Test(uart, full_input_queue_accepts_a_short_count)
{
    static uint8_t big[5000];
    memset(big, 'q', sizeof(big));
    size_t space = uart_input_space(u);
    cr_assert_geq(space, 4096);
    cr_assert_eq(uart_input(u, big, sizeof(big)), space);
    cr_assert_eq(uart_input_space(u), 0);
    cr_assert_eq(uart_input(u, big, 1), 0);
    in(RBR);
    cr_assert_eq(uart_input_space(u), 1);
    cr_assert_eq(uart_input(u, big, 10), 1);
}

Test(uart, dlab_switches_to_divisor_latch)
{
    out(IER, 0x05);
    out(LCR, 0x83);
    out(DLL, 0x01);
    out(DLM, 0x02);
    cr_assert_eq(in(DLL), 0x01);
    cr_assert_eq(in(DLM), 0x02);
    cr_assert_eq(in(LCR), 0x83);
    char buf[8];
    cr_assert_eq(drain(buf, sizeof(buf)), 0, "a DLL write is not output");

    out(LCR, 0x03);
    cr_assert_eq(in(IER), 0x05, "DLM write must not touch IER");
    out(THR, 'k');
    cr_assert_eq(drain(buf, sizeof(buf)), 1);
    out(LCR, 0x80);
    cr_assert_eq(in(DLL), 0x01, "THR write must not touch DLL");
}

Test(uart, scratch_and_mcr_hold_values)
{
    out(SCR, 0xa5);
    cr_assert_eq(in(SCR), 0xa5);
    out(MCR, 0xff);
    cr_assert_eq(in(MCR), 0x1f);
    out(IER, 0xff);
    cr_assert_eq(in(IER), 0x0f);
}

Test(uart, iir_shows_fifo_bits_when_enabled)
{
    cr_assert_eq(in(IIR), 0x01);
    out(FCR, 0x07);
    cr_assert_eq(in(IIR), 0xc1);
    out(FCR, 0x00);
    cr_assert_eq(in(IIR), 0x01);
}

Test(uart, thri_raises_and_is_acked_by_iir_read)
{
    out(MCR, MCR_OUT2);
    cr_assert_eq(irq_calls, 0);
    out(IER, 0x02);
    cr_assert_eq(irq_calls, 1);
    cr_assert_eq(irq_level(), 1);

    cr_assert_eq(in(IIR), 0x02);
    cr_assert_eq(irq_calls, 2);
    cr_assert_eq(irq_level(), 0);
    cr_assert_eq(in(IIR), 0x01, "the IIR read acknowledged THRI");

    /* Writing THR empties at once, so THRE (and its interrupt) comes back. */
    out(THR, 'x');
    cr_assert_eq(irq_level(), 1);
    cr_assert_eq(in(IIR), 0x02);
    cr_assert_eq(irq_level(), 0);
}

Test(uart, thri_rearms_when_ier_bit_is_set_again)
{
    out(MCR, MCR_OUT2);
    out(IER, 0x02);
    in(IIR);
    cr_assert_eq(irq_level(), 0);
    out(IER, 0x00);
    cr_assert_eq(in(IIR), 0x01);
    out(IER, 0x02);
    cr_assert_eq(irq_level(), 1);
    cr_assert_eq(in(IIR), 0x02);
}

Test(uart, disabling_ier_lowers_the_line)
{
    out(MCR, MCR_OUT2);
    out(IER, 0x02);
    cr_assert_eq(irq_level(), 1);
    out(IER, 0x00);
    cr_assert_eq(irq_level(), 0);
    cr_assert_eq(irq_calls, 2);
}

Test(uart, received_data_outranks_thr_empty)
{
    out(MCR, MCR_OUT2);
    out(FCR, 0x01);
    uart_input(u, (const uint8_t *)"hi", 2);
    cr_assert_eq(irq_calls, 0, "RDI still masked");
    out(IER, 0x03);
    cr_assert_eq(irq_level(), 1);
    cr_assert_eq(in(IIR), 0xc4);
    cr_assert_eq(in(IIR), 0xc4, "RDI is not acked by reading IIR");
    in(RBR);
    in(RBR);
    cr_assert_eq(irq_level(), 1, "THRI is still pending");
    cr_assert_eq(in(IIR), 0xc2);
    cr_assert_eq(in(IIR), 0xc1);
    cr_assert_eq(irq_level(), 0);
}

Test(uart, input_raises_rdi_and_reading_lowers_it)
{
    out(MCR, MCR_OUT2);
    out(IER, 0x01);
    cr_assert_eq(irq_calls, 0);
    uart_input(u, (const uint8_t *)"x", 1);
    cr_assert_eq(irq_calls, 1);
    cr_assert_eq(irq_level(), 1);
    uart_input(u, (const uint8_t *)"y", 1);
    cr_assert_eq(irq_calls, 1, "no call without a level change");
    in(RBR);
    cr_assert_eq(irq_calls, 1);
    in(RBR);
    cr_assert_eq(irq_calls, 2);
    cr_assert_eq(irq_level(), 0);
}

Test(uart, out2_gates_the_line)
{
    out(IER, 0x02);
    cr_assert_eq(irq_calls, 0);
    cr_assert_eq(in(IIR), 0x02, "IIR reports regardless of OUT2");
    out(IER, 0x00);
    out(IER, 0x02);
    out(MCR, MCR_OUT2);
    cr_assert_eq(irq_calls, 1);
    cr_assert_eq(irq_level(), 1);
    out(MCR, 0x00);
    cr_assert_eq(irq_calls, 2);
    cr_assert_eq(irq_level(), 0);
}

Test(uart, loopback_echoes_modem_lines_and_data)
{
    /* Linux's 8250 probe: MCR=LOOP|OUT2|RTS must read MSR status 0x90. */
    out(MCR, MCR_LOOP | 0x0a);
    cr_assert_eq(in(MSR)&0xf0, 0x90);
    out(THR, 'L');
    char buf[4];
    cr_assert_eq(drain(buf, sizeof(buf)), 0, "loopback output stays inside");
    cr_assert_eq(in(LSR)&1, 1);
    cr_assert_eq(in(RBR), 'L');
    out(MCR, 0);
    cr_assert_eq(in(MSR)&0xf0, 0xb0);
}

Test(uart, modem_status_deltas_interrupt_and_clear_on_read)
{
    out(MCR, MCR_LOOP);
    in(MSR);
    out(IER, 0x08);
    out(MCR, MCR_LOOP | 0x02); /* RTS -> CTS changes */
    cr_assert_eq(in(IIR), 0x00);
    cr_assert_eq(in(MSR), 0x11);
    cr_assert_eq(in(MSR), 0x10);
    cr_assert_eq(in(IIR), 0x01);
}

Test(uart, wide_accesses_act_bytewise)
{
    out(LCR, 0x80);
    uint8_t w[2] = {0x34, 0x12};
    uart_io(u, DLL, w, 2, true);
    cr_assert_eq(in(DLL), 0x34);
    cr_assert_eq(in(DLM), 0x12);
    out(LCR, 0x03);

    uint8_t r[4];
    uart_io(u, LSR, r, 4, false); /* LSR, MSR, SCR, then one byte past the UART */
    cr_assert_eq(r[0], 0x60);
    cr_assert_eq(r[2], 0x00);
    cr_assert_eq(r[3], 0xff);
}

Test(uart, hostile_accesses_do_not_crash)
{
    for (uint64_t off = 0; off < 16; off++)
        for (uint32_t len = 1; len <= 8; len++)
            for (int v = 0; v < 256; v += 17) {
                uint8_t data[8];
                memset(data, v, sizeof(data));
                uart_io(u, off, data, len, true);
                uart_io(u, off, data, len, false);
            }
    uint8_t far = 0;
    uart_io(u, UINT64_MAX, &far, 1, false);
    cr_assert_eq(far, 0xff);
}

enum { STREAM_LEN = 200000 };

/* The host side: feeds a known sequence, retrying whatever the queue refuses. */
static void *feed(void *arg)
{
    size_t sent = 0;
    while (sent < STREAM_LEN) {
        uint8_t chunk[97];
        size_t n = 0;
        while (n < sizeof(chunk) && sent + n < STREAM_LEN) {
            chunk[n] = (uint8_t)((sent + n) % 251);
            n++;
        }
        size_t got = uart_input(u, chunk, n);
        sent += got;
        if (got == 0)
            sched_yield();
    }
    return arg;
}

Test(uart, concurrent_input_and_guest_reads_keep_order)
{
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, feed, NULL), 0);
    size_t received = 0;
    int bad = 0;
    while (received < STREAM_LEN) {
        if (!(in(LSR)&1)) {
            sched_yield();
            continue;
        }
        if (in(RBR) != (uint8_t)(received % 251))
            bad++;
        received++;
    }
    pthread_join(t, NULL);
    cr_assert_eq(bad, 0);
    cr_assert_eq(in(LSR)&1, 0);
}
