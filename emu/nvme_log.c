/*
 * Log pages (Error Information, SMART/Health, Firmware Slot, Changed Namespace List,
 * Commands Supported and Effects, Device Self-test), the error log ring and SMART
 * counters. Pages are built whole, then the requested window (LPOL/LPOU, NUMD) copied.
 */
#include <stdlib.h>
#include <string.h>

#include "emu/nvme_int.h"

#define DATA_UNIT_BYTES (1000ull * 512)

static uint16_t invalid_field(void)
{
    return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_FIELD) | NVME_SC_DNR;
}

void nvme_error_log_add(struct nvme_ctrl *c, const struct nvme_req *r, uint16_t status,
                        uint64_t lba, uint32_t nsid)
{
    struct nvme_error_log_page *e = &c->errlog[c->errlog_next];
    c->errlog_next = (c->errlog_next + 1) % NVME_ERROR_LOG_SIZE;
    c->error_count++;
    c->smart.error_log_entries++;
    memset(e, 0, sizeof(*e));
    e->error_count = htole64(c->error_count);
    e->sqid = htole16(r && r->sq ? r->sq->id : 0xffff);
    e->cmdid = htole16(r ? r->cmd.cid : 0xffff);
    e->status_field = htole16((uint16_t)(status << 1));
    e->parm_error_location = htole16(0xffff);
    e->lba = htole64(lba);
    e->nsid = htole32(nsid);
}

void nvme_smart_account(struct nvme_ctrl *c, bool write, uint64_t bytes)
{
    /* Data units are thousands of 512-byte units, rounded up: keep the remainder and
     * count it as one more unit when reporting. */
    uint64_t *units = write ? &c->smart.data_units_written : &c->smart.data_units_read;
    uint64_t *acc = write ? &c->smart.write_bytes_acc : &c->smart.read_bytes_acc;
    if (write)
        c->smart.host_writes++;
    else
        c->smart.host_reads++;
    *acc += bytes;
    *units += *acc / DATA_UNIT_BYTES;
    *acc %= DATA_UNIT_BYTES;
}

uint8_t nvme_smart_critical_warning(const struct nvme_ctrl *c)
{
    uint8_t w = 0;
    if (NVME_TEMP_KELVIN > c->feat.temp_thresh[0][0] ||
        NVME_TEMP_KELVIN < c->feat.temp_thresh[0][1])
        w |= NVME_SMART_CRIT_TEMPERATURE;
    for (int i = 0; i < NVME_MAX_NAMESPACES; i++)
        if (c->ns[i].present && c->ns[i].read_only)
            w |= NVME_SMART_CRIT_MEDIA; /* bit 3: media placed in read-only mode */
    return w;
}

void nvme_ns_changed(struct nvme_ctrl *c, uint32_t nsid)
{
    for (unsigned i = 0; i < c->changed_ns_count; i++)
        if (c->changed_ns[i] == nsid || c->changed_ns[i] == 0xffffffff)
            goto event;
    if (c->changed_ns_count < 1024) {
        c->changed_ns[c->changed_ns_count++] = nsid;
    } else {
        c->changed_ns[0] = 0xffffffff; /* overflow: "more than 1024 changed" */
        c->changed_ns_count = 1;
    }
event:
    if (c->feat.async_event_config & NVME_CTRL_OAES_NA)
        nvme_aen_post(c, NVME_AER_NOTICE, NVME_AER_NOTICE_NS_CHANGED, NVME_LOG_LID_CHANGED_NS);
}

static void put_le128(uint8_t out[16], uint64_t v)
{
    memset(out, 0, 16);
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(v >> (8 * i));
}

static void build_smart(struct nvme_ctrl *c, struct nvme_smart_log *s)
{
    s->critical_warning = nvme_smart_critical_warning(c);
    s->temperature[0] = NVME_TEMP_KELVIN & 0xff;
    s->temperature[1] = NVME_TEMP_KELVIN >> 8;
    s->avail_spare = 100;
    s->spare_thresh = 10;
    s->percent_used = 0;
    put_le128(s->data_units_read, c->smart.data_units_read + (c->smart.read_bytes_acc ? 1 : 0));
    put_le128(s->data_units_written,
              c->smart.data_units_written + (c->smart.write_bytes_acc ? 1 : 0));
    put_le128(s->host_reads, c->smart.host_reads);
    put_le128(s->host_writes, c->smart.host_writes);
    put_le128(s->ctrl_busy_time, c->smart.busy_minutes);
    put_le128(s->power_cycles, c->smart.power_cycles);
    uint64_t secs = c->smart.power_on_seconds + (nvme_now_ms() - c->created_at_ms) / 1000;
    put_le128(s->power_on_hours, secs / 3600);
    put_le128(s->unsafe_shutdowns, c->smart.unsafe_shutdowns);
    put_le128(s->media_errors, c->smart.media_errors);
    put_le128(s->num_err_log_entries, c->smart.error_log_entries);
    s->temp_sensor[0] = htole16(NVME_TEMP_KELVIN);
}

static void build_errors(struct nvme_ctrl *c, struct nvme_error_log_page *out)
{
    /* Newest first; unused entries stay zero (error count 0). */
    unsigned n =
        c->error_count < NVME_ERROR_LOG_SIZE ? (unsigned)c->error_count : NVME_ERROR_LOG_SIZE;
    for (unsigned i = 0; i < n; i++)
        out[i] = c->errlog[(c->errlog_next + NVME_ERROR_LOG_SIZE - 1 - i) % NVME_ERROR_LOG_SIZE];
}

static void build_fw(struct nvme_ctrl *c, struct nvme_firmware_slot *f)
{
    f->afi = c->fw_active_slot | (uint8_t)(c->fw_pending_slot << 4);
    memcpy(f->frs, c->fw_slot, sizeof(f->frs));
}

static void build_effects(struct nvme_cmd_effects_log *e)
{
    const uint32_t sup = NVME_CMD_EFFECTS_CSUPP;
    const uint8_t admin[] = {
        nvme_admin_delete_sq,   nvme_admin_create_sq,    nvme_admin_get_log_page,
        nvme_admin_delete_cq,   nvme_admin_create_cq,    nvme_admin_identify,
        nvme_admin_abort_cmd,   nvme_admin_set_features, nvme_admin_get_features,
        nvme_admin_async_event, nvme_admin_fw_download,  nvme_admin_dev_self_test,
        nvme_admin_keep_alive,  nvme_admin_dbbuf};
    for (size_t i = 0; i < sizeof(admin); i++)
        e->acs[admin[i]] = htole32(sup);
    /* Commands that change namespaces or capacity: the host rescans after them. */
    e->acs[nvme_admin_ns_mgmt] = htole32(sup | NVME_CMD_EFFECTS_NIC | NVME_CMD_EFFECTS_NCC);
    e->acs[nvme_admin_ns_attach] = htole32(sup | NVME_CMD_EFFECTS_NIC | NVME_CMD_EFFECTS_NCC);
    e->acs[nvme_admin_format_nvm] =
        htole32(sup | NVME_CMD_EFFECTS_LBCC | NVME_CMD_EFFECTS_NCC | NVME_CMD_EFFECTS_NIC |
                (1u << 17)); /* CSE: no other command to any namespace meanwhile */
    e->acs[nvme_admin_fw_commit] = htole32(sup | NVME_CMD_EFFECTS_CCC);
    const uint8_t io_ro[] = {nvme_cmd_flush, nvme_cmd_read, nvme_cmd_compare, nvme_cmd_verify};
    const uint8_t io_rw[] = {nvme_cmd_write, nvme_cmd_write_uncor, nvme_cmd_write_zeroes,
                             nvme_cmd_dsm, nvme_cmd_copy};
    for (size_t i = 0; i < sizeof(io_ro); i++)
        e->iocs[io_ro[i]] = htole32(sup);
    for (size_t i = 0; i < sizeof(io_rw); i++)
        e->iocs[io_rw[i]] = htole32(sup | NVME_CMD_EFFECTS_LBCC);
}

uint16_t nvme_adm_get_log_page(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint8_t lid = r->cmd.cdw10 & 0xff;
    bool rae = r->cmd.cdw10 & (1u << 15);
    uint64_t numd = ((uint64_t)(r->cmd.cdw11 & 0xffff) << 16 | (r->cmd.cdw10 >> 16)) + 1;
    uint64_t len = numd * 4;
    uint64_t off = (uint64_t)r->cmd.cdw13 << 32 | r->cmd.cdw12;
    uint8_t csi = r->cmd.cdw14 >> 24;
    if (off & 3)
        return invalid_field();
    /* Bounded by MDTS (or 2 MiB without one): the buffer below is that large. */
    if (len > (c->cfg.mdts ? 4096ull << c->cfg.mdts : 1ull << 21))
        return invalid_field();

    size_t size;
    int aen_type = -1;
    union {
        struct nvme_smart_log smart;
        struct nvme_firmware_slot fw;
        struct nvme_cmd_effects_log effects;
        struct nvme_error_log_page err[NVME_ERROR_LOG_SIZE];
        uint32_t changed[1024];
        uint8_t selftest[564];
    } *page = calloc(1, sizeof(*page));
    if (!page)
        return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INTERNAL);
    switch (lid) {
    case NVME_LOG_LID_ERROR:
        build_errors(c, page->err);
        size = sizeof(page->err);
        aen_type = NVME_AER_ERROR;
        break;
    case NVME_LOG_LID_SMART:
        if (r->cmd.nsid != 0 && r->cmd.nsid != NVME_NSID_ALL &&
            (r->cmd.nsid > NVME_MAX_NAMESPACES || !c->ns[r->cmd.nsid - 1].present)) {
            free(page);
            return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_NS) | NVME_SC_DNR;
        }
        build_smart(c, &page->smart); /* controller-wide (LPA bit 0 clear) */
        size = sizeof(page->smart);
        aen_type = NVME_AER_SMART;
        break;
    case NVME_LOG_LID_FW_SLOT:
        build_fw(c, &page->fw);
        size = sizeof(page->fw);
        break;
    case NVME_LOG_LID_CHANGED_NS:
        for (unsigned i = 0; i < c->changed_ns_count; i++)
            page->changed[i] = htole32(c->changed_ns[i]);
        size = sizeof(page->changed);
        aen_type = NVME_AER_NOTICE;
        break;
    case NVME_LOG_LID_CMD_EFFECTS:
        if (csi != NVME_CSI_NVM) {
            free(page);
            return invalid_field();
        }
        build_effects(&page->effects);
        size = sizeof(page->effects);
        break;
    case NVME_LOG_LID_DEVICE_SELF_TEST:
        memcpy(page->selftest, c->selftest_log, sizeof(c->selftest_log));
        size = sizeof(c->selftest_log);
        break;
    default:
        free(page);
        return NVME_STATUS(NVME_SCT_CMD_SPECIFIC, NVME_SC_INVALID_LOG_PAGE) | NVME_SC_DNR;
    }
    if (off > size) {
        free(page);
        return invalid_field();
    }
    /* The window past the end of the page reads as zeroes. */
    uint8_t *out = calloc(1, len);
    if (!out) {
        free(page);
        return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INTERNAL);
    }
    uint64_t n = size - off < len ? size - off : len;
    memcpy(out, (uint8_t *)page + off, n);
    free(page);
    uint16_t st = nvme_dptr_to_guest(c, r, out, len);
    free(out);
    if (st)
        return st;
    /* Reading a log (without Retain Asynchronous Event) clears its event condition. */
    if (!rae && aen_type >= 0) {
        if (lid == NVME_LOG_LID_CHANGED_NS)
            c->changed_ns_count = 0;
        nvme_aen_clear(c, (uint8_t)aen_type);
    }
    return NVME_OK;
}
