#include "hw/i8042.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/buf.h"
#include "util/err.h"

#define PORT_DATA   0 /* 0x60 */
#define PORT_STATUS 4 /* 0x64: status on read, command on write */

#define STATUS_OBF      0x01
#define STATUS_SYS      0x04 /* POST passed */
#define STATUS_CMD      0x08 /* last write went to the command port */
#define STATUS_UNLOCKED 0x10

#define CMD_READ_CTR     0x20
#define CMD_WRITE_CTR    0x60
#define CMD_AUX_DISABLE  0xa7
#define CMD_AUX_ENABLE   0xa8
#define CMD_AUX_TEST     0xa9
#define CMD_SELF_TEST    0xaa
#define CMD_KBD_TEST     0xab
#define CMD_KBD_DISABLE  0xad
#define CMD_KBD_ENABLE   0xae
#define CMD_WRITE_OUTPUT 0xd1

#define SELF_TEST_OK      0x55
#define INTERFACE_TEST_OK 0x00
#define OUTPUT_RESET_LINE 0x01 /* active low: clearing it resets the CPU */

/* Keyboard interrupt, system flag, scancode translation: a typical BIOS setup. */
#define CTR_DEFAULT 0x45

struct i8042 {
    pthread_mutex_t lock;
    void (*reset)(void *opaque);
    void *opaque;
    uint8_t ctr;
    uint8_t pending_cmd; /* command awaiting its data byte, or 0 */
    bool obf;
    uint8_t out;
    bool last_was_cmd;
};

struct i8042 *i8042_new(void (*reset)(void *opaque), void *opaque)
{
    struct i8042 *k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    if (pthread_mutex_init(&k->lock, NULL) != 0) {
        free(k);
        return NULL;
    }
    k->reset = reset;
    k->opaque = opaque;
    k->ctr = CTR_DEFAULT;
    return k;
}

void i8042_free(struct i8042 *k)
{
    if (!k)
        return;
    pthread_mutex_destroy(&k->lock);
    free(k);
}

static void respond(struct i8042 *k, uint8_t byte)
{
    k->out = byte;
    k->obf = true;
}

/* Returns true when the command asks for a CPU reset. */
static bool command(struct i8042 *k, uint8_t cmd)
{
    k->pending_cmd = 0;
    switch (cmd) {
    case CMD_READ_CTR:
        respond(k, k->ctr);
        break;
    case CMD_WRITE_CTR:
    case CMD_WRITE_OUTPUT:
        k->pending_cmd = cmd;
        break;
    case CMD_SELF_TEST:
        respond(k, SELF_TEST_OK);
        break;
    case CMD_KBD_TEST:
    case CMD_AUX_TEST:
        respond(k, INTERFACE_TEST_OK);
        break;
    case CMD_KBD_DISABLE:
    case CMD_KBD_ENABLE:
    case CMD_AUX_DISABLE:
    case CMD_AUX_ENABLE:
        break;
    default:
        /* 0xf0-0xff pulse output lines whose mask bit is 0; bit 0 is reset. */
        return (cmd & 0xf0) == 0xf0 && !(cmd & OUTPUT_RESET_LINE);
    }
    return false;
}

/* Returns true when the data byte asks for a CPU reset. Data bytes that no
 * command awaits are meant for the keyboard, which is not modelled. */
static bool data_write(struct i8042 *k, uint8_t v)
{
    uint8_t cmd = k->pending_cmd;
    k->pending_cmd = 0;
    if (cmd == CMD_WRITE_CTR)
        k->ctr = v;
    return cmd == CMD_WRITE_OUTPUT && !(v & OUTPUT_RESET_LINE);
}

static uint8_t data_read(struct i8042 *k)
{
    uint8_t v = k->obf ? k->out : 0;
    k->obf = false;
    return v;
}

static uint8_t status(const struct i8042 *k)
{
    return STATUS_SYS | STATUS_UNLOCKED | (k->last_was_cmd ? STATUS_CMD : 0) |
           (k->obf ? STATUS_OBF : 0);
}

/* Wider accesses act as byte accesses to consecutive ports; 0x61-0x63 are
 * not ours (the in-kernel PIT owns 0x61) and read as floating. */
void i8042_io(void *i8042, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct i8042 *k = i8042;
    bool reset = false;

    pthread_mutex_lock(&k->lock);
    for (uint32_t i = 0; i < len; i++) {
        uint64_t port = offset + i;
        if (is_write) {
            if (port == PORT_DATA) {
                k->last_was_cmd = false;
                reset |= data_write(k, data[i]);
            } else if (port == PORT_STATUS) {
                k->last_was_cmd = true;
                reset |= command(k, data[i]);
            }
        } else if (port == PORT_DATA) {
            data[i] = data_read(k);
        } else if (port == PORT_STATUS) {
            data[i] = status(k);
        } else {
            data[i] = 0xff;
        }
    }
    pthread_mutex_unlock(&k->lock);

    /* Outside the lock: the VMM's reset path may stop vCPUs that are in here. */
    if (reset && k->reset)
        k->reset(k->opaque);
}

/* ---- migration ---- */

#define I8042_STATE_VERSION 1
#define FLAG_OBF            0x01
#define FLAG_LAST_CMD       0x02

void i8042_save(struct i8042 *k, struct mig_buf *b)
{
    pthread_mutex_lock(&k->lock);
    mig_put_u16(b, I8042_STATE_VERSION);
    mig_put_u8(b, k->ctr);
    mig_put_u8(b, k->pending_cmd);
    mig_put_u8(b, (k->obf ? FLAG_OBF : 0) | (k->last_was_cmd ? FLAG_LAST_CMD : 0));
    mig_put_u8(b, k->out);
    pthread_mutex_unlock(&k->lock);
}

int i8042_load(struct i8042 *k, struct mig_cursor *c, char *err, size_t errlen)
{
    uint16_t version = mig_get_u16(c);
    /* The version is judged first: another version's layout says nothing about this one. */
    if (c->bad) {
        return err_set(err, errlen, "i8042: state truncated before version");
    }
    if (version != I8042_STATE_VERSION) {
        return err_set(err, errlen, "i8042: state version %u, this nvmevm reads %u", version,
                       I8042_STATE_VERSION);
    }
    uint8_t ctr = mig_get_u8(c), pending = mig_get_u8(c), flags = mig_get_u8(c);
    uint8_t out = mig_get_u8(c);
    if (c->bad) {
        return err_set(err, errlen, "i8042: state truncated");
    }
    /* Only commands that take a data byte can be half done. */
    if (pending != 0 && pending != CMD_WRITE_CTR && pending != CMD_WRITE_OUTPUT) {
        return err_set(err, errlen, "i8042: pending command 0x%02x takes no data byte", pending);
    }
    if (flags & ~(FLAG_OBF | FLAG_LAST_CMD)) {
        return err_set(err, errlen, "i8042: flags 0x%02x has unknown bits set", flags);
    }
    if (!mig_cursor_done(c)) {
        return err_set(err, errlen, "i8042: %zu trailing bytes after state", c->len - c->pos);
    }
    pthread_mutex_lock(&k->lock);
    k->ctr = ctr;
    k->pending_cmd = pending;
    k->obf = flags & FLAG_OBF;
    k->last_was_cmd = flags & FLAG_LAST_CMD;
    k->out = out;
    pthread_mutex_unlock(&k->lock);
    return 0;
}

/* ---- the device table entry (hw/device.h) ---- */

static int save_op(void *dev, struct mig_buf *b, char *err, size_t errlen)
{
    i8042_save(dev, b);
    return 0;
}

static int load_op(void *dev, struct mig_cursor *c, char *err, size_t errlen)
{
    return i8042_load(dev, c, err, errlen);
}

static void free_op(void *dev)
{
    i8042_free(dev);
}

const struct device_ops i8042_device = {
    .name = "i8042",
    .section = I8042_SECTION,
    .version = 1,
    .pio_base = I8042_BASE,
    .pio_len = I8042_LEN,
    .pio = i8042_io,
    .save = save_op,
    .load = load_op,
    .free = free_op,
};
