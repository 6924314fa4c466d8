/* NVMe controller migration (emu/nvme_migrate*.c): a busy controller A (I/O queues, a
 * full CQ with parked completions, an outstanding AER, SMART counters, error log, shadow
 * doorbells, several namespaces) is saved, its guest RAM and disks copied, and loaded into
 * a fresh controller B, which must carry on exactly as A would. Hostile streams are
 * refused with their own message and leave B unchanged. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/buf.h"
#include "tests/unit/nvme_host.h"

#define QD      16 /* I/O queue depth: a CQ holds 15 entries */
#define NPARKED 5
/* Bytes of put_misc() after the power-on time (errlog pos, count, ring, fw, self-test). */
#define TAIL_AFTER_ELAPSED (4 + 8 + 64 * 64 + 56 + 1 + 1 + 564)

static struct host *a, *b;

static void teardown(void)
{
    if (b)
        host_free(b);
    if (a)
        host_free(a);
    a = b = NULL;
}

TestSuite(nvme_migrate, .fini = teardown);

static struct host *new_host(int nr_ns)
{
    struct host *h = host_new(&(struct host_opts){.nr_ns = nr_ns});
    cr_assert_not_null(h->c);
    nvme_ctrl_set_msix(h->c, true);
    cr_assert(host_enable(h, 32));
    return h;
}

static struct nvme_sqe rw_cmd(uint8_t opc, uint32_t nsid, uint64_t slba, uint32_t nlb, uint64_t gpa)
{
    return (struct nvme_sqe){
        .opcode = opc, .nsid = nsid, .dptr = {gpa}, .cdw10 = (uint32_t)slba, .cdw12 = nlb};
}

/* Queues 1-2 (depth QD), 8 blocks of pattern at LBA 100, an invalid admin command (error
 * log), a full CQ 2 with NPARKED completions parked behind it (cids[] in order), and an
 * AER waiting for a temperature event. Returns the AER's CID. */
static uint16_t make_busy(struct host *h, uint16_t cids[QD - 1 + NPARKED], uint16_t *bad_cid)
{
    cr_assert_eq(host_create_io_queues(h, 2, QD, -1), 2);
    uint64_t buf = host_alloc(h, 4096);
    memset(host_ptr(h, buf), 0x5a, 4096);
    struct nvme_sqe w = rw_cmd(nvme_cmd_write, 1, 100, 7, buf);
    cr_assert_eq(host_io(h, 1, &w, NULL), 0);
    struct nvme_sqe bad = {.opcode = 0xc5};
    *bad_cid = host_submit(h, 0, &bad, false);
    cr_assert_eq(host_wait_cid(h, 0, *bad_cid, NULL), GEN(NVME_SC_INVALID_OPCODE));
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_ASYNC_EVENT,
                                  NVME_SMART_CRIT_TEMPERATURE | NVME_CTRL_OAES_NA, NULL),
                 0);
    struct nvme_sqe aer = {.opcode = nvme_admin_async_event};
    uint16_t aer_cid = host_submit(h, 0, &aer, false);
    host_process(h);
    cr_assert_eq(h->c->aer_outstanding, 1);

    uint64_t rbuf = host_alloc(h, 4096);
    for (int i = 0; i < QD - 1; i++) {
        struct nvme_sqe r = rw_cmd(nvme_cmd_read, 1, (uint64_t)i, 0, rbuf);
        cids[i] = host_submit(h, 2, &r, true);
    }
    host_ring_sq(h, 2);
    for (int i = 0; i < 8; i++)
        host_process(h);
    for (int i = 0; i < NPARKED; i++) {
        struct nvme_sqe r = rw_cmd(nvme_cmd_read, 1, (uint64_t)i, 0, rbuf);
        cids[QD - 1 + i] = host_submit(h, 2, &r, true);
    }
    host_ring_sq(h, 2);
    for (int i = 0; i < 8; i++)
        host_process(h);
    cr_assert_eq(h->c->cq[2].parked_count, NPARKED);
    return aer_cid;
}

static void save(struct host *h, struct mig_buf *m)
{
    mig_buf_init(m);
    nvme_ctrl_drain(h->c);
    nvme_ctrl_save(h->c, m);
    cr_assert(!m->oom);
}

/* A destination like a migration target: same configuration, guest RAM and disks copied
 * from h (after h was drained and saved), the driver's own bookkeeping carried over. */
static struct host *clone_host(struct host *h)
{
    struct host *n = host_new(&(struct host_opts){.nr_ns = h->nr_disks});
    cr_assert_not_null(n->c);
    memcpy(n->ram, h->ram, HOST_RAM);
    for (int i = 0; i < h->nr_disks; i++)
        memcpy(blk_mem_data(n->disk[i]), blk_mem_data(h->disk[i]), HOST_DISK);
    n->next_page = h->next_page;
    n->next_cid = h->next_cid;
    memcpy(n->q, h->q, sizeof(n->q));
    n->dbs = h->dbs;
    n->eis = h->eis;
    return n;
}

static int load(struct host *h, const struct mig_buf *m, char *err, size_t errlen)
{
    struct mig_cursor cur;
    mig_cursor_init(&cur, m->data, m->len);
    int rc = nvme_ctrl_load(h->c, &cur, err, errlen);
    if (rc == 0)
        nvme_ctrl_post_load(h->c);
    return rc;
}

/* Full migration a -> new b. */
static struct host *migrate(struct host *h)
{
    struct mig_buf m;
    char err[256] = "";
    save(h, &m);
    struct host *n = clone_host(h);
    cr_assert_eq(load(n, &m, err, sizeof(err)), 0, "load failed: %s", err);
    mig_buf_free(&m);
    return n;
}

static void smart(struct host *h, struct nvme_smart_log *s)
{
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_SMART, 0, 512, 0, false, s), 0);
}

Test(nvme_migrate, busy_controller_round_trip)
{
    uint16_t cids[QD - 1 + NPARKED], bad_cid;
    a = new_host(1);
    uint16_t aer_cid = make_busy(a, cids, &bad_cid);
    a->c->smart.power_cycles = 5;
    struct nvme_smart_log sa, sb;
    smart(a, &sa);
    cr_assert_eq(sa.host_reads[0], QD - 1 + NPARKED);

    unsigned before = a->msix[2];
    b = migrate(a);
    cr_assert_eq(b->c->cq[2].parked_count, NPARKED);
    cr_assert_eq(b->c->aer_outstanding, 1);
    /* CQ 2 holds entries the host has not consumed: its vector is signalled again. */
    cr_assert(before >= 1);
    cr_assert_eq(b->msix[2], 1);
    cr_assert_eq(b->msix[1], 0);
    cr_assert_eq(nvme_reqs_outstanding(b->c), NPARKED + 1);
    /* The host drains CQ 2: the 15 posted on A, then the parked ones as space frees. */
    for (int i = 0; i < QD - 1 + NPARKED; i++) {
        struct nvme_cqe e;
        cr_assert_eq(host_wait(b, 2, &e), 0, "completion %d", i);
        cr_assert_eq(e.cid, cids[i], "completion %d: cid %u, want %u", i, e.cid, cids[i]);
        cr_assert_eq(le16toh(e.sq_id), 2);
        if (i >= QD - 1)
            cr_assert_eq(le16toh(e.sq_head), (QD - 1 + NPARKED) % QD);
    }
    cr_assert_eq(b->c->cq[2].parked_count, 0);
    cr_assert_eq(host_wait(b, 2, NULL), HOST_NO_CQE);
    cr_assert_eq(nvme_reqs_outstanding(b->c), 1); /* the AER */

    /* Data written on A reads back on B; new I/O on both queues works. */
    uint64_t buf = host_alloc(b, 4096);
    struct nvme_sqe r = rw_cmd(nvme_cmd_read, 1, 100, 7, buf);
    cr_assert_eq(host_io(b, 1, &r, NULL), 0);
    for (int i = 0; i < 4096; i++)
        cr_assert_eq(((uint8_t *)host_ptr(b, buf))[i], 0x5a);
    r = rw_cmd(nvme_cmd_read, 1, 100, 0, buf);
    cr_assert_eq(host_io(b, 2, &r, NULL), 0);

    /* SMART counters continued (+2 reads on B), the error log survived. */
    smart(b, &sb);
    cr_assert_eq(sb.host_reads[0], sa.host_reads[0] + 2);
    cr_assert_eq(sb.host_writes[0], sa.host_writes[0]);
    cr_assert_eq(sb.data_units_read[0], sa.data_units_read[0]);
    cr_assert_eq(sb.data_units_written[0], sa.data_units_written[0]);
    cr_assert_eq(sb.power_cycles[0], 5);
    cr_assert_eq(sb.num_err_log_entries[0], 1);
    struct nvme_error_log_page el;
    cr_assert_eq(host_get_log(b, NVME_LOG_LID_ERROR, 0, sizeof(el), 0, false, &el), 0);
    cr_assert_eq(le64toh(el.error_count), 1);
    cr_assert_eq(le16toh(el.cmdid), bad_cid);
    cr_assert_eq(le16toh(el.sqid), 0);

    /* The AER issued on A completes on B when the temperature crosses the threshold. */
    cr_assert_eq(host_set_feature(b, NVME_FEAT_FID_TEMP_THRESH, 250, NULL), 0);
    struct nvme_cqe e;
    cr_assert_eq(host_wait_cid(b, 0, aer_cid, &e), 0);
    cr_assert_eq(le32toh(e.dw0), NVME_AER_SMART | NVME_AER_SMART_TEMPERATURE_THRESHOLD << 8 |
                                     NVME_LOG_LID_SMART << 16);
    cr_assert_eq(nvme_reqs_outstanding(b->c), 0);
}

Test(nvme_migrate, several_namespaces_and_their_settings)
{
    a = new_host(3);
    cr_assert_eq(host_create_io_queues(a, 1, QD, -1), 1);
    cr_assert_eq(host_set_feature(a, NVME_FEAT_FID_ASYNC_EVENT, NVME_CTRL_OAES_NA, NULL), 0);
    /* Detach namespace 2; mark LBAs 10-13 of namespace 3 uncorrectable. */
    uint64_t list = host_alloc(a, 4096);
    uint16_t *ctrls = host_ptr(a, list);
    ctrls[0] = htole16(1);
    ctrls[1] = 0;
    struct nvme_sqe det = {.opcode = nvme_admin_ns_attach, .nsid = 2, .dptr = {list}, .cdw10 = 1};
    cr_assert_eq(host_admin(a, &det, NULL), 0);
    struct nvme_sqe wu = rw_cmd(nvme_cmd_write_uncor, 3, 10, 3, 0);
    cr_assert_eq(host_io(a, 1, &wu, NULL), 0);
    uint64_t buf = host_alloc(a, 4096);
    memset(host_ptr(a, buf), 0xc3, 512);
    struct nvme_sqe w = rw_cmd(nvme_cmd_write, 3, 50, 0, buf);
    cr_assert_eq(host_io(a, 1, &w, NULL), 0);
    memcpy(a->c->ns[2].uuid, "0123456789abcdef", 16); /* must travel, not be re-derived */
    b = migrate(a);
    cr_assert(b->c->ns[0].attached && !b->c->ns[1].attached && b->c->ns[2].attached);
    cr_assert_eq(memcmp(b->c->ns[2].uuid, "0123456789abcdef", 16), 0);
    cr_assert_eq(b->c->ns[2].nr_bad, 1);
    uint32_t ids[1024];
    cr_assert_eq(host_identify(b, NVME_IDENTIFY_CNS_NS_ACTIVE_LIST, 0, 0, ids), 0);
    cr_assert_eq(ids[0], 1);
    cr_assert_eq(ids[1], 3);
    cr_assert_eq(ids[2], 0);
    /* Changed Namespace List carried: namespace 2 reported. */
    uint32_t ch[4];
    cr_assert_eq(host_get_log(b, NVME_LOG_LID_CHANGED_NS, 0, sizeof(ch), 0, false, ch), 0);
    cr_assert_eq(ch[0], 2);
    struct nvme_sqe r = rw_cmd(nvme_cmd_read, 3, 12, 0, buf);
    cr_assert_eq(host_io(b, 1, &r, NULL), SF(NVME_SCT_MEDIA, NVME_SC_READ_ERROR) | NVME_SC_DNR);
    memset(host_ptr(b, buf), 0, 512);
    r = rw_cmd(nvme_cmd_read, 3, 50, 0, buf);
    cr_assert_eq(host_io(b, 1, &r, NULL), 0);
    cr_assert_eq(((uint8_t *)host_ptr(b, buf))[511], 0xc3);
    r = rw_cmd(nvme_cmd_read, 2, 0, 0, buf);
    cr_assert_neq(host_io(b, 1, &r, NULL), 0); /* detached: not usable */
}

Test(nvme_migrate, shadow_doorbells_keep_working)
{
    a = new_host(1);
    cr_assert_eq(host_create_io_queues(a, 1, QD, -1), 1);
    cr_assert_eq(host_dbbuf(a), 0);
    uint64_t buf = host_alloc(a, 4096);
    memset(host_ptr(a, buf), 0x77, 512);
    struct nvme_sqe w = rw_cmd(nvme_cmd_write, 1, 7, 0, buf);
    cr_assert_eq(host_io(a, 1, &w, NULL), 0);

    b = migrate(a);
    cr_assert_neq(b->c->sq[1].db_addr, 0);
    /* Several commands through the shadow tail only (no MMIO doorbell), over a wrap. */
    for (int i = 0; i < 2 * QD; i++) {
        memset(host_ptr(b, buf), 0, 512);
        struct nvme_sqe r = rw_cmd(nvme_cmd_read, 1, 7, 0, buf);
        uint16_t cid = host_submit(b, 1, &r, true);
        __atomic_store_n((uint32_t *)host_ptr(b, b->dbs + 8), b->q[1].sq_tail, __ATOMIC_SEQ_CST);
        cr_assert_eq(host_wait_cid(b, 1, cid, NULL), 0, "command %d", i);
        cr_assert_eq(((uint8_t *)host_ptr(b, buf))[0], 0x77);
    }
    /* EventIdx is published on B as it was on A. */
    cr_assert_eq(*(uint32_t *)host_ptr(b, b->eis + 8), b->q[1].sq_tail);
}

Test(nvme_migrate, intx_level_redriven)
{
    a = host_new(NULL);
    cr_assert(host_enable(a, 32));
    struct nvme_sqe id = {.opcode = nvme_admin_identify, .dptr = {host_alloc(a, 4096)}, .cdw10 = 1};
    host_submit(a, 0, &id, false);
    for (int i = 0; i < 4; i++)
        host_process(a);
    cr_assert_eq(a->intx, 1); /* completion not consumed: the level stays high */
    b = migrate(a);
    cr_assert_eq(b->intx, 1);
    cr_assert_eq(host_wait(b, 0, NULL), 0);
    host_process(b);
    cr_assert_eq(b->intx, 0);
}

Test(nvme_migrate, coalescing_deadline_carried_as_remaining_time)
{
    a = new_host(1);
    cr_assert_eq(host_create_io_queues(a, 1, QD, -1), 1);
    cr_assert_eq(host_set_feature(a, NVME_FEAT_FID_IRQ_COALESCE, 255u << 8 | 10, NULL), 0);
    uint64_t buf = host_alloc(a, 4096);
    struct nvme_sqe r = rw_cmd(nvme_cmd_read, 1, 0, 0, buf);
    host_submit(a, 1, &r, false);
    for (int i = 0; i < 3; i++)
        host_process(a);
    cr_assert_eq(a->msix[1], 0);
    cr_assert_neq(a->c->cq[1].irq_deadline_us, 0);

    b = migrate(a);
    uint64_t now = nvme_now_us(), dl = b->c->cq[1].irq_deadline_us;
    cr_assert(dl > now && dl <= now + 25500 + 1, "deadline %llu us away",
              (unsigned long long)(dl - now));
    cr_assert_eq(b->c->cq[1].unsignalled, 1);
    cr_assert_eq(b->msix[1], 0);
    cr_assert_neq(nvme_ctrl_next_deadline_ms(b->c), UINT64_MAX);
    nanosleep(&(struct timespec){.tv_nsec = 30 * 1000000}, NULL);
    host_process(b);
    cr_assert_eq(b->msix[1], 1);
    cr_assert_eq(host_wait(b, 1, NULL), 0);
}

/* ---- hostile streams ---- */

static void snapshot(struct host *h, struct mig_buf *m)
{
    mig_buf_init(m);
    nvme_ctrl_save(h->c, m);
    /* The power-on time since creation moves with the clock. */
    memset(m->data + m->len - TAIL_AFTER_ELAPSED - 8, 0, 8);
}

/* Loads m into b, which must refuse with a message containing want and stay unchanged. */
static void refused(const struct mig_buf *m, const char *want)
{
    struct mig_buf before, after;
    char err[256] = "";
    snapshot(b, &before);
    cr_assert_eq(load(b, m, err, sizeof(err)), -1, "accepted; expected \"%s\"", want);
    cr_assert(strstr(err, want), "message \"%s\", expected \"%s\"", err, want);
    cr_assert(strncmp(err, "nvme: ", 6) == 0);
    snapshot(b, &after);
    cr_assert_eq(before.len, after.len);
    cr_assert_eq(memcmp(before.data, after.data, before.len), 0, "B changed");
    mig_buf_free(&before);
    mig_buf_free(&after);
    /* B still works. */
    uint8_t id[4096];
    cr_assert_eq(host_identify(b, NVME_IDENTIFY_CNS_CTRL, 0, 0, id), 0);
}

static uint16_t hcids[QD - 1 + NPARKED], hbad;

static void hostile_setup(int nr_ns_a, int nr_ns_b)
{
    a = new_host(nr_ns_a);
    make_busy(a, hcids, &hbad);
    nvme_ctrl_drain(a->c);
    b = new_host(nr_ns_b);
}

/* Saves a after mutate() changed one field, then restores it. */
#define SAVE_WITH(m, field, value)                                                                 \
    do {                                                                                           \
        __typeof__(field) saved_ = (field);                                                        \
        (field) = (value);                                                                         \
        mig_buf_init(m);                                                                           \
        nvme_ctrl_save(a->c, m);                                                                   \
        (field) = saved_;                                                                          \
    } while (0)

Test(nvme_migrate, baseline_stream_loads_into_a_used_controller)
{
    hostile_setup(1, 1);
    struct mig_buf m;
    char err[256] = "";
    save(a, &m);
    cr_assert_eq(load(b, &m, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(b->c->cq[2].parked_count, NPARKED);
    cr_assert_eq(nvme_reqs_outstanding(b->c), NPARKED + 1);
    mig_buf_free(&m);
}

Test(nvme_migrate, refuses_bad_version_truncation_and_trailing_bytes)
{
    hostile_setup(1, 1);
    struct mig_buf m;
    save(a, &m);
    m.data[0] = 7;
    refused(&m, "version 7 is unknown");
    m.data[0] = 1;
    size_t len = m.len;
    for (size_t cut = 0; cut < len; cut += len / 37 + 1) {
        m.len = cut;
        refused(&m, "truncated");
    }
    m.len = len - 1;
    refused(&m, "truncated");
    m.len = len;
    mig_put_u8(&m, 0);
    refused(&m, "1 trailing bytes");
    mig_buf_free(&m);
}

Test(nvme_migrate, refuses_bad_queues)
{
    hostile_setup(1, 1);
    struct nvme_ctrl *c = a->c;
    struct mig_buf m;
    SAVE_WITH(&m, c->cq[1].id, 99);
    refused(&m, "CQ id 99 out of range");
    mig_buf_free(&m);
    SAVE_WITH(&m, c->sq[2].id, NVME_MAX_QUEUES);
    refused(&m, "SQ id 65 out of range");
    mig_buf_free(&m);
    SAVE_WITH(&m, c->sq[1].size, NVME_CAP_MQES(c->cap) + 2);
    refused(&m, "SQ 1 size 1025 outside 2..1024 (CAP.MQES)");
    mig_buf_free(&m);
    SAVE_WITH(&m, c->cq[1].size, 1);
    refused(&m, "CQ 1 size 1 outside");
    mig_buf_free(&m);
    SAVE_WITH(&m, c->cq[1].base, 2ull * HOST_RAM);
    refused(&m, "CQ 1 at 0x8000000 (16 entries) unaligned or outside guest RAM");
    mig_buf_free(&m);
    SAVE_WITH(&m, c->sq[2].base, (uint64_t)HOST_RAM - 512);
    refused(&m, "SQ 2 at 0x3fffe00 (16 entries) unaligned or outside guest RAM");
    mig_buf_free(&m);
    SAVE_WITH(&m, c->dbbuf_dbs, (uint64_t)HOST_RAM);
    refused(&m, "shadow doorbell/EventIdx buffers");
    mig_buf_free(&m);
    SAVE_WITH(&m, c->sq[1].cqid, 5);
    refused(&m, "SQ 1 bound to CQ 5, which does not exist");
    mig_buf_free(&m);
    SAVE_WITH(&m, c->cq[2].vector, NVME_NR_VECTORS);
    refused(&m, "CQ 2 interrupt vector 65 out of range");
    mig_buf_free(&m);
    SAVE_WITH(&m, c->sq[1].head, QD);
    refused(&m, "SQ 1 head, tail or priority out of range");
    mig_buf_free(&m);
}

Test(nvme_migrate, refuses_parked_completion_on_non_full_cq)
{
    hostile_setup(1, 1);
    struct mig_buf m;
    SAVE_WITH(&m, a->c->cq[2].head, (a->c->cq[2].head + 1) % QD);
    refused(&m, "CQ 2 has parked completions but is not full");
    mig_buf_free(&m);
    /* A parked completion whose SQ is bound to another CQ. */
    struct nvme_req *r = TAILQ_FIRST(&a->c->cq[2].parked);
    SAVE_WITH(&m, r->sq, &a->c->sq[1]);
    refused(&m, "parked completion on CQ 2 for SQ 1, which is not bound to it");
    mig_buf_free(&m);
}

Test(nvme_migrate, refuses_other_namespaces)
{
    hostile_setup(2, 2);
    struct mig_buf m;
    uint64_t size = a->disk[1]->size;
    SAVE_WITH(&m, a->disk[1]->size, 2 * size);
    refused(&m, "nvme: namespace 2 is 4 MiB here, 8 MiB in the stream");
    mig_buf_free(&m);
    SAVE_WITH(&m, a->c->ns[1].present, false);
    refused(&m, "namespace 2 is configured here but not in the stream");
    mig_buf_free(&m);
    host_free(b);
    b = new_host(1);
    save(a, &m);
    refused(&m, "namespace 2 is in the stream but not configured here");
    mig_buf_free(&m);
}

Test(nvme_migrate, refuses_inconsistent_controller_state)
{
    hostile_setup(1, 1);
    struct nvme_ctrl *c = a->c;
    struct mig_buf m;
    SAVE_WITH(&m, c->sq[1].inflight, c->sq[1].inflight + 1);
    refused(&m, "not drained");
    mig_buf_free(&m);
    SAVE_WITH(&m, c->cap, c->cap ^ 1);
    refused(&m, "CAP 0x");
    mig_buf_free(&m);
    SAVE_WITH(&m, c->csts, 0);
    refused(&m, "CC.EN set but CSTS neither ready nor fatal");
    mig_buf_free(&m);
    SAVE_WITH(&m, c->cc, c->cc & ~1u);
    refused(&m, "CSTS.RDY set while CC.EN is clear");
    mig_buf_free(&m);
    SAVE_WITH(&m, c->aen_masked, 0x100);
    refused(&m, "masked event types");
    mig_buf_free(&m);
    SAVE_WITH(&m, c->feat.num_queues, 0);
    refused(&m, "CQ 2 above the granted number of queues");
    mig_buf_free(&m);
    SAVE_WITH(&m, c->error_count, 3);
    refused(&m, "error log position");
    mig_buf_free(&m);
    SAVE_WITH(&m, c->fw_active_slot, 3);
    refused(&m, "firmware slots invalid");
    mig_buf_free(&m);
}
