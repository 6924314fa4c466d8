/*
 * Ring-3 entry of the bootstrap cpu: parse the multiboot command line and run
 * the selected test(s). Unknown key=value words and words without '=' (QEMU
 * puts the kernel file name first) are ignored; an unknown test fails.
 */
#include "tiny.h"

#define MB_BOOTLOADER_MAGIC 0x2badb002
#define MB_INFO_MEM         (1u << 0)
#define MB_INFO_CMDLINE     (1u << 2)
#define CMDLINE_MAX         1024

struct mb_info {
    uint32_t flags, mem_lower, mem_upper, boot_device, cmdline;
};

static char cmdline[CMDLINE_MAX];
static char test_name[32] = "all";

static int word_eq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static void set_u64(const char *key, size_t klen, const char *val, size_t vlen, uint64_t *dst)
{
    if (parse_u64(val, vlen, dst))
        fail(EXIT_BADARGS, "bad number for %.*s", (int)klen, key);
}

static void parse_cmdline(struct opts *o)
{
    const char *p = cmdline;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *w = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        size_t n = (size_t)(p - w);
        const char *eq = w;
        while (eq < p && *eq != '=')
            eq++;
        if (n == 0 || eq == p)
            continue;
        size_t klen = (size_t)(eq - w), vlen = (size_t)(p - eq - 1);
        const char *v = eq + 1;
        if (word_eq(w, klen, "test")) {
            if (vlen >= sizeof(test_name))
                vlen = sizeof(test_name) - 1;
            memcpy(test_name, v, vlen);
            test_name[vlen] = '\0';
        } else if (word_eq(w, klen, "iters")) {
            set_u64(w, klen, v, vlen, &o->iters);
        } else if (word_eq(w, klen, "ticks")) {
            set_u64(w, klen, v, vlen, &o->ticks);
        } else if (word_eq(w, klen, "period_us")) {
            set_u64(w, klen, v, vlen, &o->period_us);
        } else if (word_eq(w, klen, "cpus")) {
            set_u64(w, klen, v, vlen, &o->cpus);
        } else if (word_eq(w, klen, "progress")) {
            set_u64(w, klen, v, vlen, &o->progress);
        } else if (word_eq(w, klen, "expect")) {
            set_u64(w, klen, v, vlen, &o->expect);
            o->have_expect = 1;
        } else if (word_eq(w, klen, "verbose")) {
            uint64_t x = 0;
            set_u64(w, klen, v, vlen, &x);
            o->verbose = x != 0;
        }
    }
}

static int run(const char *name, const struct opts *o)
{
    if (!strlen(name) || word_eq(name, strlen(name), "all")) {
        int rc = test_hello(o);
        if (!rc)
            rc = test_ring3(o);
        if (!rc)
            rc = test_timer(o);
        return rc;
    }
    static const struct {
        const char *name;
        int (*fn)(const struct opts *);
    } tests[] = {
        {"hello", test_hello}, {"ring3", test_ring3},       {"timer", test_timer},
        {"smp", test_smp},     {"checksum", test_checksum}, {"fault", test_fault},
        {"exits", test_exits}, {"nvme", test_nvme},         {"nvme-bad", test_nvme_bad},
        {"dirty", test_dirty}, {"reset", test_reset},
    };
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
        if (word_eq(name, strlen(name), tests[i].name))
            return tests[i].fn(o);
    fail(EXIT_BADARGS,
         "unknown test '%s' (hello ring3 timer smp checksum exits fault reset nvme nvme-bad dirty "
         "all)",
         name);
}

void user_main(unsigned cpu)
{
    (void)cpu;
    uint64_t ring3_tsc = rdtsc();
    if (mb_magic != MB_BOOTLOADER_MAGIC)
        fail(EXIT_BOOT, "not booted by a multiboot loader (eax=0x%x)", mb_magic);
    const struct mb_info *mbi = (const struct mb_info *)(uintptr_t)mb_info;
    if ((mbi->flags & MB_INFO_CMDLINE) && mbi->cmdline) {
        const char *s = (const char *)(uintptr_t)mbi->cmdline;
        size_t n = 0;
        while (n + 1 < CMDLINE_MAX && s[n]) {
            cmdline[n] = s[n];
            n++;
        }
        cmdline[n] = '\0';
    }
    ram_init(mb_info);
    struct opts o = {0};
    parse_cmdline(&o);
    o.test = test_name;
    o.cmdline = cmdline;
    if (o.verbose)
        kprintf("tiny: multiboot flags=0x%x mem_lower=%uK mem_upper=%uK cmdline='%s'\n", mbi->flags,
                (mbi->flags & MB_INFO_MEM) ? mbi->mem_lower : 0,
                (mbi->flags & MB_INFO_MEM) ? mbi->mem_upper : 0, cmdline);
    if (o.verbose)
        kprintf("tiny: tsc from multiboot entry to ring 3: %lu\n", ring3_tsc - boot_tsc);
    int rc = run(test_name, &o);
    guest_exit(rc ? EXIT_FAIL : EXIT_PASS);
}
