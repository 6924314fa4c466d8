#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "hw/bus.h"

/* A fake device that records its last access and answers reads with a tag. */
struct fake {
    uint8_t tag;
    int calls;
    uint64_t offset;
    uint32_t len;
    bool is_write;
    uint8_t written[8];
};

static void fake_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct fake *f = opaque;
    f->calls++;
    f->offset = offset;
    f->len = len;
    f->is_write = is_write;
    if (is_write)
        memcpy(f->written, data, len);
    else
        memset(data, f->tag, len);
}

static struct bus *b;

static void setup(void)
{
    b = bus_new("test");
    cr_assert_not_null(b);
}

static void teardown(void)
{
    bus_free(b);
}

TestSuite(bus, .init = setup, .fini = teardown, .timeout = 10);

Test(bus, dispatch_reaches_the_claiming_device_with_its_offset)
{
    struct fake a = {.tag = 0xa1}, c = {.tag = 0xc3};
    cr_assert_eq(bus_register(b, 0x3f8, 8, fake_io, &a, "a"), 0);
    cr_assert_eq(bus_register(b, 0x60, 5, fake_io, &c, "c"), 0);

    uint8_t data[4] = {0};
    cr_assert(bus_dispatch(b, 0x3fd, data, 1, false));
    cr_assert_eq(a.calls, 1);
    cr_assert_eq(a.offset, 5);
    cr_assert_eq(a.len, 1);
    cr_assert_eq(data[0], 0xa1);
    cr_assert_eq(c.calls, 0);

    uint8_t w[2] = {0x12, 0x34};
    cr_assert(bus_dispatch(b, 0x60, w, 2, true));
    cr_assert_eq(c.calls, 1);
    cr_assert_eq(c.offset, 0);
    cr_assert(c.is_write);
    cr_assert_eq(c.written[0], 0x12);
    cr_assert_eq(c.written[1], 0x34);
}

Test(bus, unclaimed_read_is_all_ones_and_returns_false)
{
    struct fake a = {.tag = 1};
    cr_assert_eq(bus_register(b, 0x1000, 0x100, fake_io, &a, "a"), 0);

    uint8_t data[8] = {0};
    cr_assert_not(bus_dispatch(b, 0x2000, data, 8, false));
    for (int i = 0; i < 8; i++)
        cr_assert_eq(data[i], 0xff);
    cr_assert_not(bus_dispatch(b, 0xfff, data, 1, true));
    cr_assert_not(bus_dispatch(b, 0x1100, data, 1, true));
    cr_assert_eq(a.calls, 0);
}

Test(bus, empty_bus_claims_nothing)
{
    uint8_t data[2] = {0, 0};
    cr_assert_not(bus_dispatch(b, 0, data, 2, false));
    cr_assert_eq(data[0], 0xff);
    cr_assert_eq(data[1], 0xff);
}

Test(bus, access_crossing_region_end_is_unclaimed)
{
    struct fake a = {.tag = 7};
    cr_assert_eq(bus_register(b, 0x100, 4, fake_io, &a, "a"), 0);

    uint8_t data[4] = {0};
    cr_assert(bus_dispatch(b, 0x102, data, 2, false)); /* last two bytes: inside */
    cr_assert_not(bus_dispatch(b, 0x102, data, 4, false));
    cr_assert_eq(data[0], 0xff);
    cr_assert_eq(data[3], 0xff);
    cr_assert_not(bus_dispatch(b, 0x103, data, 2, true));
    cr_assert_eq(a.calls, 1);
}

Test(bus, overlapping_claims_are_refused)
{
    struct fake a = {0};
    cr_assert_eq(bus_register(b, 0x100, 0x10, fake_io, &a, "a"), 0);

    cr_assert_eq(bus_register(b, 0x100, 0x10, fake_io, &a, "same"), -EEXIST);
    cr_assert_eq(bus_register(b, 0x104, 1, fake_io, &a, "inside"), -EEXIST);
    cr_assert_eq(bus_register(b, 0xf0, 0x11, fake_io, &a, "over start"), -EEXIST);
    cr_assert_eq(bus_register(b, 0x10f, 0x10, fake_io, &a, "over end"), -EEXIST);
    cr_assert_eq(bus_register(b, 0x0, 0x1000, fake_io, &a, "enclosing"), -EEXIST);

    /* Neighbours touching either edge are fine. */
    cr_assert_eq(bus_register(b, 0xf0, 0x10, fake_io, &a, "below"), 0);
    cr_assert_eq(bus_register(b, 0x110, 0x10, fake_io, &a, "above"), 0);
}

Test(bus, bad_ranges_are_invalid)
{
    struct fake a = {0};
    cr_assert_eq(bus_register(b, 0x100, 0, fake_io, &a, "empty"), -EINVAL);
    cr_assert_eq(bus_register(b, UINT64_MAX - 3, 5, fake_io, &a, "wraps"), -EINVAL);
    cr_assert_eq(bus_register(b, 0x100, 1, NULL, &a, "no handler"), -EINVAL);

    /* Ending exactly at the top of the address space does not wrap. */
    cr_assert_eq(bus_register(b, UINT64_MAX - 3, 4, fake_io, &a, "top"), 0);
    uint8_t data = 0;
    cr_assert(bus_dispatch(b, UINT64_MAX, &data, 1, false));
    cr_assert_eq(a.offset, 3);
    cr_assert_not(bus_dispatch(b, UINT64_MAX, (uint8_t[2]){0}, 2, false));
}

Test(bus, unregister_removes_only_the_region_at_that_base)
{
    struct fake a = {.tag = 1}, c = {.tag = 2};
    cr_assert_eq(bus_register(b, 0x100, 0x10, fake_io, &a, "a"), 0);
    cr_assert_eq(bus_register(b, 0x200, 0x10, fake_io, &c, "c"), 0);

    cr_assert_eq(bus_unregister(b, 0x108), -ENOENT);
    cr_assert_eq(bus_unregister(b, 0x300), -ENOENT);
    cr_assert_eq(bus_unregister(b, 0x100), 0);
    cr_assert_eq(bus_unregister(b, 0x100), -ENOENT);

    uint8_t data = 0;
    cr_assert_not(bus_dispatch(b, 0x100, &data, 1, false));
    cr_assert(bus_dispatch(b, 0x200, &data, 1, false));
    cr_assert_eq(data, 2);

    /* The freed range can be claimed again. */
    cr_assert_eq(bus_register(b, 0x100, 0x20, fake_io, &c, "c2"), 0);
    cr_assert(bus_dispatch(b, 0x11f, &data, 1, false));
    cr_assert_eq(c.offset, 0x1f);
}

Test(bus, many_regions_in_any_order_are_all_found)
{
    enum { N = 200 };
    static struct fake f[N];
    /* Register in a scrambled order so the sorted insert is exercised. */
    for (int k = 0; k < N; k++) {
        int i = (k * 37) % N;
        f[i] = (struct fake){.tag = (uint8_t)i};
        cr_assert_eq(bus_register(b, 0x1000 + (uint64_t)i * 0x20, 0x10, fake_io, &f[i], "f"), 0);
    }
    for (int i = 0; i < N; i++) {
        uint8_t data = 0;
        uint64_t base = 0x1000 + (uint64_t)i * 0x20;
        cr_assert(bus_dispatch(b, base + 0xf, &data, 1, false));
        cr_assert_eq(data, (uint8_t)i);
        cr_assert_eq(f[i].offset, 0xf);
        cr_assert_not(bus_dispatch(b, base + 0x10, &data, 1, false), "gap after %d", i);
    }
}

/* A handler that claims more space on its own bus, as PCI BAR remapping does. */
static struct fake nested_target = {.tag = 0x5a};
static void registering_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
                           bool is_write)
{
    struct bus *self = opaque;
    bus_unregister(self, 0x9000);
    bus_register(self, 0x9000, 0x10, fake_io, &nested_target, "nested");
}

Test(bus, handler_may_register_on_the_same_bus)
{
    cr_assert_eq(bus_register(b, 0xcf8, 8, registering_io, b, "cfg"), 0);
    uint8_t data = 0;
    cr_assert(bus_dispatch(b, 0xcfc, &data, 1, true));
    cr_assert(bus_dispatch(b, 0x9004, &data, 1, false));
    cr_assert_eq(data, 0x5a);
}

struct race {
    struct bus *b;
    atomic_bool stop;
    int bad;
};

static void *churn(void *arg)
{
    struct race *r = arg;
    static struct fake moving = {.tag = 0x33};
    for (int i = 0; i < 20000; i++) {
        uint64_t base = 0x10000 + (uint64_t)(i % 16) * 0x100;
        if (bus_register(r->b, base, 0x100, fake_io, &moving, "moving") != 0)
            r->bad++;
        if (bus_unregister(r->b, base) != 0)
            r->bad++;
    }
    r->stop = true;
    return NULL;
}

Test(bus, concurrent_register_and_dispatch)
{
    struct fake fixed = {.tag = 0x77};
    cr_assert_eq(bus_register(b, 0x100, 0x10, fake_io, &fixed, "fixed"), 0);
    struct race r = {.b = b};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, churn, &r), 0);

    long rounds = 0;
    int wrong = 0;
    while (!r.stop) {
        uint8_t data = 0;
        if (!bus_dispatch(b, 0x104, &data, 1, false) || data != 0x77)
            wrong++;
        /* The moving region is either there or not: never a torn answer. */
        data = 0;
        bool hit = bus_dispatch(b, 0x10000 + (uint64_t)(rounds % 16) * 0x100, &data, 1, false);
        if (data != (hit ? 0x33 : 0xff))
            wrong++;
        rounds++;
    }
    pthread_join(t, NULL);
    cr_assert_eq(r.bad, 0);
    cr_assert_eq(wrong, 0);
    cr_assert_gt(rounds, 0);
}
