/* Shared declarations of the tiny test guest (freestanding, no libc). */
#pragma once
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "defs.h"

#define NORETURN __attribute__((noreturn))

/* ---- port I/O and small CPU helpers (usable in ring 3: RFLAGS.IOPL = 3) ---- */
static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline void outw(uint16_t port, uint16_t v)
{
    __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint16_t inw(uint16_t port)
{
    uint16_t v;
    __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline void outl(uint16_t port, uint32_t v)
{
    __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint32_t inl(uint16_t port)
{
    uint32_t v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

/* Full fence: orders an earlier store before a later load (shadow doorbells). */
static inline void mfence(void)
{
    __asm__ volatile("mfence" ::: "memory");
}

static inline void barrier(void)
{
    __asm__ volatile("" ::: "memory");
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static inline void cpu_relax(void)
{
    __asm__ volatile("pause" ::: "memory");
}

static inline unsigned current_cpl(void)
{
    uint16_t cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    return cs & 3;
}

static inline unsigned current_iopl(void)
{
    uint64_t f;
    __asm__ volatile("pushfq; popq %0" : "=r"(f));
    return (f >> 12) & 3;
}

static inline uint32_t atomic_inc32(volatile uint32_t *p)
{
    uint32_t v = 1;
    __asm__ volatile("lock xaddl %0, %1" : "+r"(v), "+m"(*p) : : "memory");
    return v + 1;
}

/* ---- symbols from the assembly files ---- */
extern uint32_t mb_magic, mb_info; /* EAX / EBX at the multiboot entry */
extern uint64_t boot_tsc;          /* TSC at the multiboot entry */
extern uint64_t gdt[GDT_ENTRIES];
extern const char trampoline_start[], trampoline_end[];
extern volatile uint64_t timer_ticks;          /* counted by the LAPIC timer handler */
extern uint8_t kstacks[MAX_CPUS][KSTACK_SIZE]; /* cpu.c */
/* MSI interrupts taken per vector VEC_MSI_BASE + i (isr.S) */
extern volatile uint64_t msi_count[MSI_VECTORS];

/* ---- lib.c ---- */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int vformat(char *buf, size_t size, const char *fmt, va_list ap);
/* Decimal or 0x-hex; returns 0 on success. */
int parse_u64(const char *s, size_t len, uint64_t *out);
/* Find "key=value" in a space-separated command line; 0 = found (value not NUL-terminated). */
int cmdline_find(const char *cmdline, const char *key, const char **val, size_t *vlen);

/* ---- mem.c: RAM after the image (identity mapped, write-back, U bit) ---- */
void ram_init(uint32_t mbi_addr);
/* Zeroed, aligned; NULL if it does not fit below the top of RAM (or 1 GiB). */
void *ram_alloc(uint64_t size, uint64_t align);
uint64_t ram_top(void);  /* end of usable RAM above 1 MiB */
uint64_t ram_mark(void); /* allocation pointer, for ram_release() */
void ram_release(uint64_t mark);

/* ---- serial.c ---- */
void serial_init(void);
void serial_write(const char *s, size_t n); /* no lock, no formatting: ring-0 safe and cheap */
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- cpu.c (ring 0) ---- */
void kmain(void) NORETURN;
void ap_main(unsigned cpu) NORETURN;

/* ---- ring3.c ---- */
void enter_user(void (*fn)(unsigned), unsigned cpu) NORETURN; /* ring 0 -> ring 3 */
void sys_halt(void) NORETURN;                                 /* ring 3 -> ring 0, stop cpu */
void guest_exit(unsigned code) NORETURN; /* print PASS/FAIL, write the debug-exit port */
void fail(unsigned code, const char *fmt, ...) NORETURN __attribute__((format(printf, 2, 3)));

/* ---- tests (ring 3) ---- */
struct opts {
    const char *test; /* NUL-terminated copy */
    uint64_t iters;   /* 0 = test default */
    uint64_t ticks;
    uint64_t period_us;
    uint64_t cpus;
    uint64_t expect;
    int have_expect;
    uint64_t progress;
    int verbose;
    /* the whole command line, for tests with their own options (nvme) */
    const char *cmdline;
};

void user_main(unsigned cpu) NORETURN;
int test_nvme(const struct opts *o);
int test_nvme_bad(const struct opts *o);
int test_hello(const struct opts *o);
int test_ring3(const struct opts *o);
int test_timer(const struct opts *o);
int test_checksum(const struct opts *o);
int test_smp(const struct opts *o);
int test_fault(const struct opts *o);
int test_reset(const struct opts *o);
int test_exits(const struct opts *o);
int test_dirty(const struct opts *o); /* dirty.c */
void ap_user_main(unsigned cpu) NORETURN;
/*
 * Start APs 1..cpus-1 (INIT, SIPI, SIPI); each runs fn(cpu) in ring 3, then halts.
 * Returns once all are online (0) or after ~10 s (-1). fn NULL = the smp test's body.
 */
int smp_start(uint32_t cpus, void (*fn)(unsigned cpu));
/* TSC rate in MHz, measured once against the LAPIC timer (1 GHz bus in KVM and QEMU). */
uint64_t tsc_mhz(void);

/* Spin until *p >= want or the deadline passes; 0 = reached. Bounded by a loop count too. */
int wait_u32_geq(volatile uint32_t *p, uint32_t want, uint64_t tsc_budget);
void tsc_delay(uint64_t cycles);

/* TSC budgets assume a TSC of about 3 GHz (only used for generous timeouts). */
#define TSC_PER_SEC_GUESS 3000000000ULL
uint64_t ring3_loop(uint64_t iters, uint64_t seed);
