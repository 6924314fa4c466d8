/* Admin commands: identify, features, queue creation checks, log pages, AER, abort,
 * namespace management/attachment, format, firmware and self-test. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/nvme_host.h"

static struct host *h;
static char ns_dir[] = "/tmp/nvmevm-admin-XXXXXX";

static void setup(void)
{
    cr_assert_not_null(mkdtemp(ns_dir));
    struct host_opts o = {.nr_ns = 2, .ns_dir = ns_dir};
    h = host_new(&o);
    cr_assert_not_null(h->c);
    nvme_ctrl_set_msix(h->c, true);
    cr_assert(host_enable(h, 32));
}

static void teardown(void)
{
    host_free(h);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", ns_dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(nvme_admin, .init = setup, .fini = teardown);

Test(nvme_admin, identify_controller)
{
    struct nvme_id_ctrl id;
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_CTRL, 0, 0, &id), 0);
    cr_assert_eq(memcmp(id.sn, "TEST0001    ", 12), 0);
    cr_assert_eq(memcmp(id.mn, "nvmevm test ", 12), 0);
    cr_assert_eq(memcmp(id.fr, "1.0     ", 8), 0);
    cr_assert_eq(id.mdts, 7);
    cr_assert_eq(le32toh(id.ver), 0x10400);
    cr_assert(le16toh(id.oacs) & NVME_CTRL_OACS_DBBUF_CFG);
    cr_assert(le16toh(id.oacs) & NVME_CTRL_OACS_NS_MGMT);
    cr_assert_eq(id.aerl, 3);
    cr_assert_eq(id.sqes, 0x66);
    cr_assert_eq(id.cqes, 0x44);
    cr_assert_eq(le32toh(id.nn), NVME_MAX_NAMESPACES);
    cr_assert(id.lpa & NVME_CTRL_LPA_CMD_EFFECTS);
    cr_assert(le16toh(id.kas) != 0);
    cr_assert(le32toh(id.sgls) & 1);
    cr_assert(le32toh(id.oaes) & NVME_CTRL_OAES_NA);
}

Test(nvme_admin, identify_namespaces)
{
    struct nvme_id_ns ns;
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_NS, 1, 0, &ns), 0);
    cr_assert_eq(le64toh(ns.nsze), HOST_DISK / 512);
    cr_assert_eq(ns.nlbaf, 1);
    cr_assert_eq(ns.flbas, 0);
    cr_assert_eq(ns.lbaf[0].ds, 9);
    cr_assert_eq(ns.lbaf[1].ds, 12);
    /* Valid but inactive NSID: zeroes; out of range: Invalid Namespace. */
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_NS, 7, 0, &ns), 0);
    cr_assert_eq(ns.nsze, 0);
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_NS, 0, 0, NULL), GEN(NVME_SC_INVALID_NS));
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_NS, 1000, 0, NULL), GEN(NVME_SC_INVALID_NS));

    uint32_t list[1024];
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_NS_ACTIVE_LIST, 0, 0, list), 0);
    cr_assert_eq(list[0], 1);
    cr_assert_eq(list[1], 2);
    cr_assert_eq(list[2], 0);
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_NS_ACTIVE_LIST, 1, 0, list), 0);
    cr_assert_eq(list[0], 2);
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_NS_ACTIVE_LIST, 0xfffffffe, 0, NULL),
                 GEN(NVME_SC_INVALID_NS));
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_CSI_NS_ACTIVE_LIST, 0, 0, list), 0);
    cr_assert_eq(list[0], 1);
}

Test(nvme_admin, identify_descriptors_and_csi)
{
    uint8_t buf[4096];
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_NS_DESC_LIST, 1, 0, buf), 0);
    int seen = 0;
    for (size_t off = 0; off < sizeof(buf) && buf[off];) {
        struct nvme_ns_id_desc *d = (void *)(buf + off);
        seen |= 1 << d->nidt;
        if (d->nidt == NVME_NIDT_CSI)
            cr_assert_eq(d->nid[0], NVME_CSI_NVM);
        off += sizeof(*d) + d->nidl;
    }
    cr_assert_eq(seen, 1 << 1 | 1 << 2 | 1 << 3 | 1 << 4);
    /* Two namespaces have different identifiers. */
    struct nvme_id_ns a, b;
    host_identify(h, NVME_IDENTIFY_CNS_NS, 1, 0, &a);
    host_identify(h, NVME_IDENTIFY_CNS_NS, 2, 0, &b);
    cr_assert_neq(memcmp(a.nguid, b.nguid, 16), 0);

    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_CSI_NS, 1, 0, NULL), 0);
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_CSI_CTRL, 0, 0, NULL), 0);
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_CSI_INDEPENDENT_ID_NS, 1, 0, buf), 0);
    cr_assert_eq(((struct nvme_id_independent_id_ns *)buf)->nstat, 1);
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_CSI_NS, 1, 2u << 24, NULL),
                 GEN(NVME_SC_INVALID_FIELD), "ZNS CSI not supported");
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_CSI_CTRL, 0, 1u << 24, NULL),
                 GEN(NVME_SC_INVALID_FIELD));
    struct nvme_id_iocs *iocs = (void *)buf;
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_COMMAND_SET_STRUCTURE, 0, 0, buf), 0);
    cr_assert_eq(iocs->iocsc[0], 1);
    const uint8_t bad[] = {0x04, 0x09, 0x14, 0x1f, 0x7f, 0xff};
    for (size_t i = 0; i < sizeof(bad); i++)
        cr_assert_eq(host_identify(h, bad[i], 1, 0, NULL), GEN(NVME_SC_INVALID_FIELD), "CNS %#x",
                     bad[i]);
}

Test(nvme_admin, unknown_opcode_and_sgl_on_admin)
{
    struct nvme_sqe cmd = {.opcode = 0xff};
    cr_assert_eq(host_admin(h, &cmd, NULL), GEN(NVME_SC_INVALID_OPCODE));
    cmd = (struct nvme_sqe){.opcode = nvme_admin_identify, .flags = 1 << 6, .cdw10 = 1};
    cr_assert_eq(host_admin(h, &cmd, NULL), GEN(NVME_SC_INVALID_FIELD));
    cmd = (struct nvme_sqe){.opcode = nvme_admin_keep_alive};
    cr_assert_eq(host_admin(h, &cmd, NULL), 0);
    /* Identify into memory outside RAM: Data Transfer Error, no crash. */
    cmd = (struct nvme_sqe){.opcode = nvme_admin_identify, .cdw10 = 1, .dptr = {HOST_RAM}};
    cr_assert_eq(host_admin(h, &cmd, NULL), GEN(NVME_SC_DATA_XFER_ERROR));
}

Test(nvme_admin, number_of_queues)
{
    uint32_t res;
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_NUM_QUEUES, 0xffff, NULL),
                 GEN(NVME_SC_INVALID_FIELD));
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_NUM_QUEUES, 100 << 16 | 100, &res), 0);
    cr_assert_eq(res, 7u << 16 | 7, "clamped to the 8 configured");
    cr_assert_eq(host_get_feature(h, NVME_FEAT_FID_NUM_QUEUES, 0, 0, &res), 0);
    cr_assert_eq(res, 7u << 16 | 7);
    cr_assert_eq(host_create_io_queues(h, 2, 16, -1), 2);
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_NUM_QUEUES, 1 << 16 | 1, NULL),
                 GEN(NVME_SC_CMD_SEQ_ERROR));
}

Test(nvme_admin, features_get_set_select)
{
    uint32_t res;
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_ARBITRATION, 0x03020107, NULL), 0);
    cr_assert_eq(host_get_feature(h, NVME_FEAT_FID_ARBITRATION, 0, 0, &res), 0);
    cr_assert_eq(res, 0x03020107);
    cr_assert_eq(host_get_feature(h, NVME_FEAT_FID_ARBITRATION, 1, 0, &res), 0);
    cr_assert_eq(res, 0, "default");
    cr_assert_eq(host_get_feature(h, NVME_FEAT_FID_ARBITRATION, 2, 0, &res), 0);
    cr_assert_eq(res, 0, "saved = default");
    cr_assert_eq(host_get_feature(h, NVME_FEAT_FID_ARBITRATION, 3, 0, &res), 0);
    cr_assert_eq(res, 4, "changeable, not saveable");
    cr_assert_eq(host_get_feature(h, NVME_FEAT_FID_ERR_RECOVERY, 3, 0, &res), 0);
    cr_assert_eq(res, 6, "namespace specific");
    cr_assert_eq(host_get_feature(h, NVME_FEAT_FID_ARBITRATION, 4, 0, NULL),
                 GEN(NVME_SC_INVALID_FIELD));

    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_POWER_MGMT, 1, NULL),
                 GEN(NVME_SC_INVALID_FIELD));
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_VOLATILE_WC, 0, NULL), 0);
    cr_assert_eq(host_get_feature(h, NVME_FEAT_FID_VOLATILE_WC, 0, 0, &res), 0);
    cr_assert_eq(res, 0);
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_ERR_RECOVERY, 1u << 16, NULL),
                 GEN(NVME_SC_INVALID_FIELD), "DULBE unsupported");
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_IRQ_CONFIG, NVME_NR_VECTORS, NULL),
                 GEN(NVME_SC_INVALID_FIELD));
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_IRQ_CONFIG, 1u << 16 | 3, NULL), 0);
    cr_assert_eq(host_get_feature(h, NVME_FEAT_FID_IRQ_CONFIG, 0, 3, &res), 0);
    cr_assert_eq(res, 1u << 16 | 3);
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_KATO, 5000, NULL), 0);
    cr_assert_eq(host_get_feature(h, NVME_FEAT_FID_KATO, 0, 0, &res), 0);
    cr_assert_eq(res, 5000);
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_LBA_RANGE, 0, NULL), GEN(NVME_SC_INVALID_FIELD));
    cr_assert_eq(host_get_feature(h, 0x7e, 0, 0, NULL), GEN(NVME_SC_INVALID_FIELD));
    struct nvme_sqe sv = {.opcode = nvme_admin_set_features,
                          .cdw10 = NVME_FEAT_FID_ARBITRATION | 1u << 31};
    cr_assert_eq(host_admin(h, &sv, NULL), SPC(NVME_SC_FEATURE_NOT_SAVEABLE));
    /* A controller reset restores defaults. */
    cr_assert(host_disable(h));
    cr_assert(host_enable(h, 8));
    cr_assert_eq(host_get_feature(h, NVME_FEAT_FID_VOLATILE_WC, 0, 0, &res), 0);
    cr_assert_eq(res, 1);
}

Test(nvme_admin, timestamp_and_host_behavior)
{
    uint64_t gpa = host_alloc(h, 4096);
    uint8_t *p = host_ptr(h, gpa);
    uint64_t ts = 1700000000000ull;
    memcpy(p, &ts, 6);
    struct nvme_sqe set = {
        .opcode = nvme_admin_set_features, .cdw10 = NVME_FEAT_FID_TIMESTAMP, .dptr = {gpa}};
    cr_assert_eq(host_admin(h, &set, NULL), 0);
    memset(p, 0, 8);
    struct nvme_sqe get = {
        .opcode = nvme_admin_get_features, .cdw10 = NVME_FEAT_FID_TIMESTAMP, .dptr = {gpa}};
    cr_assert_eq(host_admin(h, &get, NULL), 0);
    uint64_t got = 0;
    memcpy(&got, p, 6);
    cr_assert(got >= ts && got < ts + 5000, "timestamp %lu", (unsigned long)got);
    cr_assert_eq((p[6] >> 1) & 7, 1, "origin: set by host");

    memset(p, 0xa5, 512);
    set.cdw10 = get.cdw10 = NVME_FEAT_FID_HOST_BEHAVIOR;
    cr_assert_eq(host_admin(h, &set, NULL), 0);
    memset(p, 0, 512);
    cr_assert_eq(host_admin(h, &get, NULL), 0);
    cr_assert_eq(p[0], 0xa5);
    cr_assert_eq(p[511], 0xa5);
}

struct qcase {
    uint8_t opcode;
    uint32_t cdw10, cdw11;
    uint64_t prp1;
    uint16_t status;
    const char *what;
};

Test(nvme_admin, queue_creation_and_deletion_checks)
{
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_NUM_QUEUES, 3u << 16 | 3, NULL), 0);
    uint64_t mem = host_alloc(h, 64 * 1024);
    const struct qcase cases[] = {
        {nvme_admin_create_cq, 0 | 15 << 16, 3, mem, SPC(NVME_SC_QID_INVALID), "CQ qid 0"},
        {nvme_admin_create_cq, 5 | 15 << 16, 3, mem, SPC(NVME_SC_QID_INVALID), "CQ qid > granted"},
        {nvme_admin_create_cq, 1 | 0 << 16, 3, mem, SPC(NVME_SC_QUEUE_SIZE), "CQ size 1"},
        {nvme_admin_create_cq, 1 | 1024u << 16, 3, mem, SPC(NVME_SC_QUEUE_SIZE), "CQ > MQES+1"},
        {nvme_admin_create_cq, 1 | 15 << 16, 2, mem, GEN(NVME_SC_INVALID_FIELD), "CQ PC=0"},
        {nvme_admin_create_cq, 1 | 15 << 16, 3, mem + 8, GEN(NVME_SC_INVALID_FIELD),
         "CQ unaligned"},
        {nvme_admin_create_cq, 1 | 15 << 16, 3, HOST_RAM, GEN(NVME_SC_DATA_XFER_ERROR), "CQ out"},
        {nvme_admin_create_cq, 1 | 15 << 16, 3 | (uint32_t)NVME_NR_VECTORS << 16, mem,
         SPC(NVME_SC_INVALID_VECTOR), "CQ vector"},
        {nvme_admin_create_cq, 1 | 15 << 16, 3 | 1u << 16, mem, 0, "CQ 1 ok"},
        {nvme_admin_create_cq, 1 | 15 << 16, 3, mem, SPC(NVME_SC_QID_INVALID), "CQ 1 again"},
        {nvme_admin_create_sq, 1 | 15 << 16, 2u << 16 | 1, mem + 4096, SPC(NVME_SC_CQ_INVALID),
         "SQ on missing CQ"},
        {nvme_admin_create_sq, 1 | 15 << 16, 0u << 16 | 1, mem + 4096, SPC(NVME_SC_CQ_INVALID),
         "SQ on admin CQ"},
        {nvme_admin_create_sq, 0 | 15 << 16, 1u << 16 | 1, mem + 4096, SPC(NVME_SC_QID_INVALID),
         "SQ qid 0"},
        {nvme_admin_create_sq, 1 | 0 << 16, 1u << 16 | 1, mem + 4096, SPC(NVME_SC_QUEUE_SIZE),
         "SQ size 1"},
        {nvme_admin_create_sq, 1 | 15 << 16, 1u << 16, mem + 4096, GEN(NVME_SC_INVALID_FIELD),
         "SQ PC=0"},
        {nvme_admin_create_sq, 1 | 15 << 16, 1u << 16 | 1, mem + 4096, 0, "SQ 1 ok"},
        {nvme_admin_create_sq, 1 | 15 << 16, 1u << 16 | 1, mem + 8192, SPC(NVME_SC_QID_INVALID),
         "SQ 1 again"},
        {nvme_admin_delete_cq, 1, 0, 0, SPC(NVME_SC_INVALID_QUEUE), "CQ in use"},
        {nvme_admin_delete_sq, 0, 0, 0, SPC(NVME_SC_QID_INVALID), "delete admin SQ"},
        {nvme_admin_delete_sq, 2, 0, 0, SPC(NVME_SC_QID_INVALID), "delete missing SQ"},
        {nvme_admin_delete_sq, 1, 0, 0, 0, "delete SQ 1"},
        {nvme_admin_delete_sq, 1, 0, 0, SPC(NVME_SC_QID_INVALID), "delete SQ 1 twice"},
        {nvme_admin_delete_cq, 0, 0, 0, SPC(NVME_SC_QID_INVALID), "delete admin CQ"},
        {nvme_admin_delete_cq, 1, 0, 0, 0, "delete CQ 1"},
        {nvme_admin_delete_cq, 1, 0, 0, SPC(NVME_SC_QID_INVALID), "delete CQ 1 twice"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct nvme_sqe cmd = {.opcode = cases[i].opcode,
                               .cdw10 = cases[i].cdw10,
                               .cdw11 = cases[i].cdw11,
                               .dptr = {cases[i].prp1}};
        cr_assert_eq(host_admin(h, &cmd, NULL), cases[i].status, "%s", cases[i].what);
    }
    /* Without MSI-X only vector 0 exists. */
    nvme_ctrl_set_msix(h->c, false);
    struct nvme_sqe cq = {.opcode = nvme_admin_create_cq,
                          .cdw10 = 2 | 15 << 16,
                          .cdw11 = 3 | 1u << 16,
                          .dptr = {mem}};
    cr_assert_eq(host_admin(h, &cq, NULL), SPC(NVME_SC_INVALID_VECTOR));
}

Test(nvme_admin, error_log_records_failures)
{
    struct nvme_sqe cmd = {.opcode = 0xfe};
    uint16_t cid = host_submit(h, 0, &cmd, false);
    cr_assert_eq(host_wait(h, 0, NULL), GEN(NVME_SC_INVALID_OPCODE));
    struct nvme_error_log_page log[64];
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_ERROR, 0, sizeof(log), 0, false, log), 0);
    cr_assert_eq(le64toh(log[0].error_count), 1);
    cr_assert_eq(le16toh(log[0].cmdid), cid);
    cr_assert_eq(le16toh(log[0].sqid), 0);
    cr_assert_eq(le16toh(log[0].status_field) >> 1, GEN(NVME_SC_INVALID_OPCODE));
    cr_assert_eq(log[1].error_count, 0);
    struct nvme_smart_log smart;
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_SMART, NVME_NSID_ALL, 512, 0, false, &smart), 0);
    cr_assert_eq(smart.num_err_log_entries[0], 1);
}

Test(nvme_admin, smart_log)
{
    nvme_smart_account(h->c, false, 512);
    nvme_smart_account(h->c, false, 512000);
    nvme_smart_account(h->c, true, 4096);
    struct nvme_smart_log s;
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_SMART, 0, 512, 0, false, &s), 0);
    cr_assert_eq(s.temperature[0] | s.temperature[1] << 8, 300);
    cr_assert_eq(s.critical_warning, 0);
    cr_assert_eq(s.data_units_read[0], 2, "513 units of 512 B round up to 2 thousand");
    cr_assert_eq(s.data_units_written[0], 1);
    cr_assert_eq(s.host_reads[0], 2);
    cr_assert_eq(s.host_writes[0], 1);
    cr_assert_eq(s.power_cycles[0], 1);
    cr_assert_eq(s.avail_spare, 100);
    /* A read-only namespace sets critical warning bit 3. */
    h->c->ns[1].read_only = true;
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_SMART, 0, 512, 0, false, &s), 0);
    cr_assert_eq(s.critical_warning, NVME_SMART_CRIT_MEDIA);
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_SMART, 9, 512, 0, false, NULL),
                 GEN(NVME_SC_INVALID_NS));
}

Test(nvme_admin, log_offsets_and_lengths)
{
    struct nvme_smart_log full;
    uint8_t part[64];
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_SMART, 0, 512, 0, false, &full), 0);
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_SMART, 0, 64, 128, false, part), 0);
    cr_assert_eq(memcmp(part, (uint8_t *)&full + 128, 64), 0);
    /* Reading past the end returns zeroes; starting past the end is an error. */
    uint8_t tail[64];
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_SMART, 0, 64, 480, false, tail), 0);
    cr_assert_eq(tail[40], 0);
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_SMART, 0, 64, 516, false, NULL),
                 GEN(NVME_SC_INVALID_FIELD));
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_SMART, 0, 64, 2, false, NULL),
                 GEN(NVME_SC_INVALID_FIELD));
    cr_assert_eq(host_get_log(h, 0x70, 0, 64, 0, false, NULL), SPC(NVME_SC_INVALID_LOG_PAGE));
    struct nvme_cmd_effects_log *eff = malloc(sizeof(*eff));
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_CMD_EFFECTS, 0, 4096, 0, false, eff), 0);
    cr_assert(le32toh(eff->acs[nvme_admin_identify]) & NVME_CMD_EFFECTS_CSUPP);
    cr_assert(le32toh(eff->iocs[nvme_cmd_read]) & NVME_CMD_EFFECTS_CSUPP);
    cr_assert_eq(eff->acs[0x7f], 0);
    free(eff);
}

static uint16_t arm_aer(void)
{
    struct nvme_sqe aer = {.opcode = nvme_admin_async_event};
    uint16_t cid = host_submit(h, 0, &aer, false);
    host_process(h);
    return cid;
}

Test(nvme_admin, aer_limit)
{
    for (int i = 0; i < 4; i++)
        arm_aer();
    cr_assert_not(host_peek(h, 0, NULL));
    struct nvme_sqe aer = {.opcode = nvme_admin_async_event};
    cr_assert_eq(host_admin(h, &aer, NULL), SPC(NVME_SC_ASYNC_LIMIT));
}

Test(nvme_admin, aer_temperature_threshold)
{
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_ASYNC_EVENT, NVME_SMART_CRIT_TEMPERATURE, NULL),
                 0);
    uint16_t cid = arm_aer();
    /* Over-temperature threshold 290 K < 300 K: SMART event, warning bit 1. */
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_TEMP_THRESH, 290, NULL), 0);
    struct nvme_cqe e;
    cr_assert_eq(host_wait(h, 0, &e), 0);
    cr_assert_eq(e.cid, cid);
    cr_assert_eq(e.dw0, NVME_AER_SMART | NVME_AER_SMART_TEMPERATURE_THRESHOLD << 8 |
                            NVME_LOG_LID_SMART << 16);
    struct nvme_smart_log s;
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_SMART, 0, 512, 0, true, &s), 0);
    cr_assert_eq(s.critical_warning, NVME_SMART_CRIT_TEMPERATURE);
    uint32_t res;
    cr_assert_eq(host_get_feature(h, NVME_FEAT_FID_TEMP_THRESH, 0, 0, &res), 0);
    cr_assert_eq(res & 0xffff, 290);
    /* RAE kept it masked: an under-threshold event is not reported yet. */
    arm_aer();
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_TEMP_THRESH, 1u << 20 | 310, NULL), 0);
    cr_assert_not(host_peek(h, 0, NULL));
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_SMART, 0, 512, 0, false, &s), 0);
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_TEMP_THRESH, 1u << 20 | 305, NULL), 0);
    cr_assert_eq(host_wait(h, 0, &e), 0);
    cr_assert_eq(e.dw0 & 7, NVME_AER_SMART);
    /* Not enabled in the configuration: no event. */
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_ASYNC_EVENT, 0, NULL), 0);
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_SMART, 0, 512, 0, false, &s), 0);
    arm_aer();
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_TEMP_THRESH, 280, NULL), 0);
    cr_assert_not(host_peek(h, 0, NULL));
}

static uint16_t attach(uint32_t nsid, bool detach)
{
    uint64_t gpa = host_alloc(h, 4096);
    uint16_t *list = host_ptr(h, gpa);
    list[0] = 1;
    list[1] = 0; /* controller id 0 */
    struct nvme_sqe cmd = {
        .opcode = nvme_admin_ns_attach, .nsid = nsid, .cdw10 = detach, .dptr = {gpa}};
    return host_admin(h, &cmd, NULL);
}

Test(nvme_admin, namespace_attach_events_and_changed_list)
{
    cr_assert_eq(host_set_feature(h, NVME_FEAT_FID_ASYNC_EVENT, NVME_CTRL_OAES_NA, NULL), 0);
    arm_aer();
    cr_assert_eq(attach(2, true), 0);
    struct nvme_cqe e;
    cr_assert_eq(host_wait(h, 0, &e), 0);
    cr_assert_eq(e.dw0,
                 NVME_AER_NOTICE | NVME_AER_NOTICE_NS_CHANGED << 8 | NVME_LOG_LID_CHANGED_NS << 16);
    uint32_t list[1024];
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_NS_ACTIVE_LIST, 0, 0, list), 0);
    cr_assert_eq(list[0], 1);
    cr_assert_eq(list[1], 0);
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_ALLOCATED_NS_LIST, 0, 0, list), 0);
    cr_assert_eq(list[1], 2);
    cr_assert_eq(attach(2, true), SPC(NVME_SC_NS_NOT_ATTACHED));
    cr_assert_eq(attach(9, false), GEN(NVME_SC_INVALID_FIELD));
    /* Masked until the log is read; reading returns and clears the list. */
    arm_aer();
    cr_assert_eq(attach(2, false), 0);
    cr_assert_not(host_peek(h, 0, NULL));
    cr_assert_eq(attach(2, false), SPC(NVME_SC_NS_ALREADY_ATTACHED));
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_CHANGED_NS, 0, 4096, 0, false, list), 0);
    cr_assert_eq(list[0], 2);
    cr_assert_eq(list[1], 0);
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_CHANGED_NS, 0, 4096, 0, false, list), 0);
    cr_assert_eq(list[0], 0, "read clears");
    /* Re-armed: the next change is reported. */
    cr_assert_eq(attach(1, true), 0);
    cr_assert_eq(host_wait(h, 0, &e), 0);
    cr_assert_eq(e.dw0 & 7, NVME_AER_NOTICE);
    /* Bad controller list. */
    uint64_t gpa = host_alloc(h, 4096);
    uint16_t *cl = host_ptr(h, gpa);
    cl[0] = 1;
    cl[1] = 5;
    struct nvme_sqe cmd = {.opcode = nvme_admin_ns_attach, .nsid = 1, .dptr = {gpa}};
    cr_assert_eq(host_admin(h, &cmd, NULL), SPC(NVME_SC_CTRL_LIST_INVALID));
}

Test(nvme_admin, namespace_create_and_delete)
{
    uint64_t gpa = host_alloc(h, 4096);
    struct nvme_id_ns *id = host_ptr(h, gpa);
    id->nsze = id->ncap = htole64(2048);
    id->flbas = 1; /* 4 KiB */
    struct nvme_sqe cmd = {.opcode = nvme_admin_ns_mgmt, .dptr = {gpa}};
    struct nvme_cqe e;
    cr_assert_eq(host_admin(h, &cmd, &e), 0);
    uint32_t nsid = le32toh(e.dw0);
    cr_assert_eq(nsid, 3);
    char path[256];
    snprintf(path, sizeof(path), "%s/nvmevm-TEST0001-ns3.img", ns_dir);
    cr_assert_eq(access(path, F_OK), 0);
    struct nvme_id_ns ns;
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_NS, 3, 0, &ns), 0);
    cr_assert_eq(ns.nsze, 0, "created detached");
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_ALLOCATED_NS, 3, 0, &ns), 0);
    cr_assert_eq(le64toh(ns.nsze), 2048);
    cr_assert_eq(ns.flbas, 1);
    cr_assert_eq(attach(3, false), 0);
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_NS, 3, 0, &ns), 0);
    cr_assert_eq(le64toh(ns.nsze), 2048);
    /* Thin provisioning and bad formats are refused. */
    id->ncap = htole64(1024);
    cr_assert_eq(host_admin(h, &cmd, NULL), SPC(NVME_SC_THIN_PROV_NOT_SUPP));
    id->ncap = id->nsze;
    id->flbas = 5;
    cr_assert_eq(host_admin(h, &cmd, NULL), SPC(NVME_SC_INVALID_FORMAT));
    /* Delete. */
    struct nvme_sqe del = {.opcode = nvme_admin_ns_mgmt, .nsid = 3, .cdw10 = 1};
    cr_assert_eq(host_admin(h, &del, NULL), 0);
    cr_assert_neq(access(path, F_OK), 0);
    cr_assert_eq(host_admin(h, &del, NULL), GEN(NVME_SC_INVALID_FIELD));
}

Test(nvme_admin, format_changes_lba_size_and_zeroes)
{
    uint8_t *data = blk_mem_data(h->disk[0]);
    memset(data, 0x5a, 8192);
    struct nvme_sqe fmt = {.opcode = nvme_admin_format_nvm, .nsid = 1, .cdw10 = 1};
    cr_assert_eq(host_admin(h, &fmt, NULL), 0);
    cr_assert_eq(data[0], 0);
    cr_assert_eq(data[8191], 0);
    struct nvme_id_ns ns;
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_NS, 1, 0, &ns), 0);
    cr_assert_eq(ns.flbas, 1);
    cr_assert_eq(le64toh(ns.nsze), HOST_DISK / 4096);
    fmt.cdw10 = 2;
    cr_assert_eq(host_admin(h, &fmt, NULL), SPC(NVME_SC_INVALID_FORMAT));
    fmt.cdw10 = 1u << 5; /* PI type 1 */
    cr_assert_eq(host_admin(h, &fmt, NULL), SPC(NVME_SC_INVALID_FORMAT));
    fmt.cdw10 = 2u << 9; /* crypto erase */
    cr_assert_eq(host_admin(h, &fmt, NULL), GEN(NVME_SC_INVALID_FIELD));
    fmt.cdw10 = 0;
    fmt.nsid = NVME_NSID_ALL;
    cr_assert_eq(host_admin(h, &fmt, NULL), 0);
    cr_assert_eq(host_identify(h, NVME_IDENTIFY_CNS_NS, 2, 0, &ns), 0);
    cr_assert_eq(ns.flbas, 0);
    fmt.nsid = 9;
    cr_assert_eq(host_admin(h, &fmt, NULL), GEN(NVME_SC_INVALID_NS));
}

Test(nvme_admin, firmware_download_and_commit)
{
    uint64_t gpa = host_alloc(h, 4096);
    memcpy(host_ptr(h, gpa), "NEWFW2.0 and the rest of the image", 34);
    struct nvme_sqe commit = {.opcode = nvme_admin_fw_commit, .cdw10 = 2 | 3 << 3};
    cr_assert_eq(host_admin(h, &commit, NULL), SPC(NVME_SC_FIRMWARE_IMAGE), "nothing yet");
    struct nvme_sqe dl = {.opcode = nvme_admin_fw_download, .cdw10 = 1, .dptr = {gpa}};
    cr_assert_eq(host_admin(h, &dl, NULL), 0);
    dl.cdw11 = 2;
    dl.dptr[0] = gpa + 8;
    cr_assert_eq(host_admin(h, &dl, NULL), 0);
    dl.cdw11 = 1;
    cr_assert_eq(host_admin(h, &dl, NULL), SPC(NVME_SC_OVERLAPPING_RANGE));
    commit.cdw10 = 7 | 3 << 3;
    cr_assert_eq(host_admin(h, &commit, NULL), SPC(NVME_SC_FIRMWARE_SLOT));
    commit.cdw10 = 2 | 3 << 3; /* slot 2, activate now */
    cr_assert_eq(host_admin(h, &commit, NULL), 0);
    struct nvme_firmware_slot fw;
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_FW_SLOT, 0, 512, 0, false, &fw), 0);
    cr_assert_eq(fw.afi & 7, 2);
    cr_assert_eq(memcmp(fw.frs[1], "NEWFW2.0", 8), 0);
    cr_assert_eq(memcmp(fw.frs[0], "1.0     ", 8), 0);
    struct nvme_id_ctrl id;
    host_identify(h, NVME_IDENTIFY_CNS_CTRL, 0, 0, &id);
    cr_assert_eq(memcmp(id.fr, "NEWFW2.0", 8), 0);
    /* CA 2: activate slot 1 at the next reset. */
    commit.cdw10 = 1 | 2 << 3;
    cr_assert_eq(host_admin(h, &commit, NULL), 0);
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_FW_SLOT, 0, 512, 0, false, &fw), 0);
    cr_assert_eq(fw.afi, 2 | 1 << 4);
    cr_assert(host_disable(h));
    cr_assert(host_enable(h, 8));
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_FW_SLOT, 0, 512, 0, false, &fw), 0);
    cr_assert_eq(fw.afi, 1);
    commit.cdw10 = 3 | 2 << 3; /* empty slot */
    cr_assert_eq(host_admin(h, &commit, NULL), SPC(NVME_SC_FIRMWARE_IMAGE));
}

Test(nvme_admin, device_self_test)
{
    struct nvme_sqe st = {.opcode = nvme_admin_dev_self_test, .nsid = 0, .cdw10 = 1};
    cr_assert_eq(host_admin(h, &st, NULL), 0);
    st.cdw10 = 2;
    st.nsid = 1;
    cr_assert_eq(host_admin(h, &st, NULL), 0);
    struct nvme_self_test_log log;
    cr_assert_eq(host_get_log(h, NVME_LOG_LID_DEVICE_SELF_TEST, 0, sizeof(log), 0, false, &log), 0);
    cr_assert_eq(log.current_operation, 0);
    cr_assert_eq(log.result[0].dsts, 2 << 4 | NVME_ST_RESULT_NO_ERR);
    cr_assert_eq(le32toh(log.result[0].nsid), 1);
    cr_assert_eq(log.result[1].dsts, 1 << 4 | NVME_ST_RESULT_NO_ERR);
    cr_assert_eq(log.result[2].dsts & 0xf, NVME_ST_RESULT_NOT_USED);
    st.cdw10 = 3;
    cr_assert_eq(host_admin(h, &st, NULL), GEN(NVME_SC_INVALID_FIELD));
    st.cdw10 = 1;
    st.nsid = 12;
    cr_assert_eq(host_admin(h, &st, NULL), GEN(NVME_SC_INVALID_NS));
}

Test(nvme_admin, abort_aer_and_unknown_command)
{
    uint16_t cid = arm_aer();
    struct nvme_sqe ab = {.opcode = nvme_admin_abort_cmd, .cdw10 = (uint32_t)cid << 16};
    host_submit(h, 0, &ab, false);
    host_process(h);
    struct nvme_cqe e1, e2;
    cr_assert(host_poll(h, 0, &e1));
    cr_assert(host_poll(h, 0, &e2));
    struct nvme_cqe *aer = e1.cid == cid ? &e1 : &e2, *abr = e1.cid == cid ? &e2 : &e1;
    cr_assert_eq(cqe_sf(aer), NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_ABORT_REQ));
    cr_assert_eq(cqe_sf(abr), 0);
    cr_assert_eq(abr->dw0 & 1, 0, "aborted");
    ab.cdw10 = 0x7777u << 16;
    cr_assert_eq(host_admin(h, &ab, &e1), 0);
    cr_assert_eq(e1.dw0 & 1, 1, "not aborted");
    ab.cdw10 = 60; /* no such SQ */
    cr_assert_eq(host_admin(h, &ab, &e1), 0);
    cr_assert_eq(e1.dw0 & 1, 1);
}

Test(nvme_admin, dbbuf_config_checks)
{
    struct nvme_sqe cmd = {.opcode = nvme_admin_dbbuf, .dptr = {0, 0}};
    cr_assert_eq(host_admin(h, &cmd, NULL), GEN(NVME_SC_INVALID_FIELD));
    uint64_t p = host_alloc(h, 8192);
    cmd.dptr[0] = p + 8;
    cmd.dptr[1] = p + 4096;
    cr_assert_eq(host_admin(h, &cmd, NULL), GEN(NVME_SC_INVALID_FIELD));
    cmd.dptr[0] = HOST_RAM;
    cr_assert_eq(host_admin(h, &cmd, NULL), GEN(NVME_SC_INVALID_FIELD));
    cr_assert_eq(host_dbbuf(h), 0);
    cr_assert(nvme_ctrl_shadow_enabled(h->c));
    cr_assert(host_disable(h));
    cr_assert_not(nvme_ctrl_shadow_enabled(h->c), "reset forgets shadow doorbells");
}
