/* MP table: what a Linux guest without ACPI reads to find CPUs and the IOAPIC. */
#include <criterion/criterion.h>
#include <string.h>

#include "kvm/mptable.h"

static uint8_t buf[8192];

static uint8_t sum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    while (n--)
        s += *p++;
    return s;
}

static const uint8_t *config_of(uint32_t gpa)
{
    uint32_t ptr;
    memcpy(&ptr, buf + 4, 4);
    cr_assert_geq(ptr, gpa);
    return buf + (ptr - gpa);
}

Test(mptable, floating_pointer_and_checksums)
{
    size_t n = mptable_build(buf, sizeof(buf), 0xf0000, 2, NULL, 0);
    cr_assert_gt(n, 0);
    cr_assert_eq(memcmp(buf, "_MP_", 4), 0);
    cr_assert_eq(sum(buf, 16), 0, "floating pointer checksum");
    cr_assert_eq(buf[8], 1);  /* length in paragraphs */
    cr_assert_eq(buf[9], 4);  /* spec 1.4 */
    cr_assert_eq(buf[11], 0); /* feature byte 1: 0 = config table present */
    const uint8_t *cfg = config_of(0xf0000);
    cr_assert_eq(memcmp(cfg, "PCMP", 4), 0);
    uint16_t len;
    memcpy(&len, cfg + 4, 2);
    cr_assert_eq(sum(cfg, len), 0, "config table checksum");
    cr_assert_leq((size_t)(cfg - buf) + len, n);
}

static int count_entries(int ncpus, int type, int *bsp_count, int *ioapic_id)
{
    const uint8_t *cfg = config_of(0xf0000);
    uint16_t count;
    memcpy(&count, cfg + 34, 2);
    const uint8_t *p = cfg + 44;
    int found = 0;
    for (int i = 0; i < count; i++) {
        if (p[0] == type)
            found++;
        if (p[0] == 0) {
            cr_assert(p[3] & 1, "cpu enabled");
            if (p[3] & 2)
                (*bsp_count)++;
            cr_assert_lt(p[1], ncpus);
        }
        if (p[0] == 2)
            *ioapic_id = p[1];
        p += p[0] == 0 ? 20 : 8;
    }
    return found;
}

Test(mptable, every_cpu_listed_once_with_one_bsp)
{
    for (int ncpus = 1; ncpus <= MPTABLE_MAX_CPUS; ncpus *= 2) {
        cr_assert_gt(mptable_build(buf, sizeof(buf), 0xf0000, ncpus, NULL, 0), 0);
        int bsp = 0, ioapic = -1;
        cr_assert_eq(count_entries(ncpus, 0, &bsp, &ioapic), ncpus);
        cr_assert_eq(bsp, 1);
        cr_assert_eq(ioapic, ncpus, "IOAPIC id must not clash with APIC ids");
    }
}

Test(mptable, isa_irqs_and_pci_routes)
{
    struct mptable_pci_irq pci[] = {{.slot = 1, .pin = 0, .ioapic_pin = 16}};
    cr_assert_gt(mptable_build(buf, sizeof(buf), 0xf0000, 1, pci, 1), 0);
    int bsp = 0, ioapic = -1;
    cr_assert_eq(count_entries(1, 3, &bsp, &ioapic), 17); /* 16 ISA + 1 PCI */
    cr_assert_eq(count_entries(1, 4, &bsp, &ioapic), 2);  /* LINT0, LINT1 */
    cr_assert_eq(count_entries(1, 1, &bsp, &ioapic), 2);  /* PCI and ISA buses */
}

Test(mptable, refuses_bad_input)
{
    cr_assert_eq(mptable_build(buf, sizeof(buf), 0xf0000, 0, NULL, 0), 0);
    cr_assert_eq(mptable_build(buf, sizeof(buf), 0xf0000, 65, NULL, 0), 0);
    cr_assert_eq(mptable_build(buf, 64, 0xf0000, 4, NULL, 0), 0);
}
