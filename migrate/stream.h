/*
 * The migration wire format:
 *   header   "NVMEVMIG" (8 bytes), version u32, flags u32
 *   section  id u32, version u16, flags u16, length u64, crc32c u32, reserved u32 (24 bytes),
 *            then `length` payload bytes whose CRC32C is crc32c
 *   end      a section with id MIG_SEC_END and length 0
 * All integers little-endian. Readers check magic, version, every length against a limit,
 * and every checksum, and refuse with a one-line reason.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MIG_MAGIC       "NVMEVMIG"
#define MIG_VERSION     1
#define MIG_SECTION_HDR 24
#define MIG_MAX_SECTION (64u << 20) /* no section payload is larger */

/* The stream's own sections. The VM's state travels in sections its owners name: the VM
 * (VM_SECTION_KVM, VM_SECTION_VCPU + i in kvm/vm.h) and each device (its *_SECTION,
 * hw/device.h); migrate/ passes them through to vm_load_section without looking inside. */
enum mig_section_id {
    MIG_SEC_CONFIG = 1, /* RAM size, vCPU count, disks: must equal the destination's */
    MIG_SEC_RAM = 2,    /* a batch of pages */
    MIG_SEC_END = 0xffffffffu,
};

struct mig_conn;

struct mig_stream {
    struct mig_conn *conn; /* not owned */
    uint8_t *wbuf;         /* write buffering: sections are sent in large writes */
    size_t wlen, wcap;
    uint64_t bytes; /* total bytes sent or received */
    int error;      /* first errno seen (0 = none) */
};

void mig_stream_init(struct mig_stream *s, struct mig_conn *conn);
void mig_stream_free(struct mig_stream *s);

/* Writing. Each returns 0 or -errno (sticky: after an error everything fails). */
int mig_write_header(struct mig_stream *s);
int mig_write_section(struct mig_stream *s, uint32_t id, uint16_t version, const void *payload,
                      size_t len);
int mig_write_end(struct mig_stream *s);
int mig_flush(struct mig_stream *s);

/* Reading. 0 on success, -1 with a one-line reason in err. */
int mig_read_header(struct mig_stream *s, char *err, size_t errlen);
/* Reads the next section into *payload (malloc'd, caller frees; NULL for length 0). */
int mig_read_section(struct mig_stream *s, uint32_t *id, uint16_t *version, uint8_t **payload,
                     size_t *len, char *err, size_t errlen);
