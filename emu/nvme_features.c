/*
 * Get/Set Features. Nothing is saveable (ONCS.Save Features is clear), so the "saved"
 * selection reports the default; "supported capabilities" says what may change.
 */
#include <string.h>

#include "emu/nvme_int.h"

enum { SEL_CURRENT = 0, SEL_DEFAULT = 1, SEL_SAVED = 2, SEL_SUPPORTED = 3 };
enum { CAP_SAVEABLE = 1, CAP_NS_SPECIFIC = 2, CAP_CHANGEABLE = 4 };

#define AEC_SUPPORTED 0x30f /* SMART warnings 0-3, NS attribute (8), FW activation (9) */

static uint16_t invalid_field(void)
{
    return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_FIELD) | NVME_SC_DNR;
}

static void defaults(const struct nvme_ctrl *c, struct nvme_features *f)
{
    memset(f, 0, sizeof(*f));
    f->arbitration = 0; /* burst 1, all priority weights 0 (round robin only) */
    f->power_mgmt = 0;
    for (int s = 0; s < 9; s++) {
        f->temp_thresh[s][0] = 0xffff; /* over: effectively disabled for the sensors */
        f->temp_thresh[s][1] = 0;      /* under */
    }
    f->temp_thresh[0][0] = NVME_WCTEMP;
    f->vwc = true;
    f->num_queues = (c->cfg.nr_io_queues - 1) | (c->cfg.nr_io_queues - 1) << 16;
    f->int_coalescing = 0;
    for (int v = 0; v < NVME_NR_VECTORS; v++)
        f->iv_config[v] = (uint32_t)v;
    f->async_event_config = 0;
    f->keep_alive_ms = 0;
}

void nvme_features_reset(struct nvme_ctrl *c)
{
    /* The host-set timestamp survives a controller reset; it is lost on power off. */
    uint64_t ts = c->feat.timestamp_ms, at = c->feat.timestamp_set_at_ms;
    defaults(c, &c->feat);
    c->feat.timestamp_ms = ts;
    c->feat.timestamp_set_at_ms = at;
}

static bool temp_over(const struct nvme_ctrl *c)
{
    return NVME_TEMP_KELVIN > c->feat.temp_thresh[0][0] ||
           NVME_TEMP_KELVIN < c->feat.temp_thresh[0][1];
}

/* ---- Get Features ---- */

static uint16_t get_timestamp(struct nvme_ctrl *c, struct nvme_req *r, bool current)
{
    uint8_t buf[8] = {0};
    uint64_t now = nvme_now_ms();
    uint64_t ts;
    uint8_t attr = 0; /* Synch 0: the counter ran continuously */
    if (current && c->feat.timestamp_set_at_ms) {
        ts = c->feat.timestamp_ms + (now - c->feat.timestamp_set_at_ms);
        attr |= 1 << 1; /* origin: set by a Set Features command */
    } else {
        ts = now - c->created_at_ms; /* origin 0: time since the last reset */
    }
    for (int i = 0; i < 6; i++)
        buf[i] = (uint8_t)(ts >> (8 * i));
    buf[6] = attr;
    return nvme_dptr_to_guest(c, r, buf, sizeof(buf));
}

static uint32_t capabilities(uint8_t fid)
{
    switch (fid) {
    case NVME_FEAT_FID_NUM_QUEUES:
    case NVME_FEAT_FID_ARBITRATION:
    case NVME_FEAT_FID_POWER_MGMT:
    case NVME_FEAT_FID_TEMP_THRESH:
    case NVME_FEAT_FID_VOLATILE_WC:
    case NVME_FEAT_FID_IRQ_COALESCE:
    case NVME_FEAT_FID_IRQ_CONFIG:
    case NVME_FEAT_FID_ASYNC_EVENT:
    case NVME_FEAT_FID_TIMESTAMP:
    case NVME_FEAT_FID_KATO:
    case NVME_FEAT_FID_HOST_BEHAVIOR:
        return CAP_CHANGEABLE;
    case NVME_FEAT_FID_ERR_RECOVERY:
        return CAP_CHANGEABLE | CAP_NS_SPECIFIC;
    default:
        return 0;
    }
}

uint16_t nvme_adm_get_features(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint8_t fid = r->cmd.cdw10 & 0xff;
    unsigned sel = (r->cmd.cdw10 >> 8) & 7;
    if (sel > SEL_SUPPORTED)
        return invalid_field();
    uint32_t caps = capabilities(fid);
    if (!caps)
        return invalid_field();
    if (sel == SEL_SUPPORTED) {
        r->result = caps;
        return NVME_OK;
    }
    struct nvme_features def;
    const struct nvme_features *f = &c->feat;
    if (sel != SEL_CURRENT) {
        defaults(c, &def);
        f = &def;
    }
    switch (fid) {
    case NVME_FEAT_FID_ARBITRATION:
        r->result = f->arbitration;
        break;
    case NVME_FEAT_FID_POWER_MGMT:
        r->result = f->power_mgmt;
        break;
    case NVME_FEAT_FID_TEMP_THRESH: {
        unsigned tmpsel = (r->cmd.cdw11 >> 16) & 0xf, thsel = (r->cmd.cdw11 >> 20) & 3;
        if (tmpsel > 8 || thsel > 1)
            return invalid_field();
        r->result = f->temp_thresh[tmpsel][thsel] | tmpsel << 16 | thsel << 20;
        break;
    }
    case NVME_FEAT_FID_ERR_RECOVERY:
        r->result = f->err_rec;
        break;
    case NVME_FEAT_FID_VOLATILE_WC:
        r->result = f->vwc;
        break;
    case NVME_FEAT_FID_NUM_QUEUES:
        r->result = f->num_queues;
        break;
    case NVME_FEAT_FID_IRQ_COALESCE:
        r->result = f->int_coalescing;
        break;
    case NVME_FEAT_FID_IRQ_CONFIG: {
        uint16_t iv = r->cmd.cdw11 & 0xffff;
        if (iv >= NVME_NR_VECTORS)
            return invalid_field();
        r->result = f->iv_config[iv];
        break;
    }
    case NVME_FEAT_FID_ASYNC_EVENT:
        r->result = f->async_event_config;
        break;
    case NVME_FEAT_FID_TIMESTAMP:
        return get_timestamp(c, r, sel == SEL_CURRENT);
    case NVME_FEAT_FID_KATO:
        r->result = f->keep_alive_ms;
        break;
    case NVME_FEAT_FID_HOST_BEHAVIOR:
        return nvme_dptr_to_guest(c, r, f->host_behavior, sizeof(f->host_behavior));
    }
    return NVME_OK;
}

/* ---- Set Features ---- */

static uint16_t set_num_queues(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint32_t nsqr = r->cmd.cdw11 & 0xffff, ncqr = r->cmd.cdw11 >> 16;
    if (nsqr == 0xffff || ncqr == 0xffff)
        return invalid_field();
    /* Allowed only before the first I/O queue exists (spec: once per reset). */
    if (c->io_queues_created)
        return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_CMD_SEQ_ERROR) | NVME_SC_DNR;
    uint32_t max = c->cfg.nr_io_queues - 1;
    nsqr = nsqr < max ? nsqr : max;
    ncqr = ncqr < max ? ncqr : max;
    c->feat.num_queues = nsqr | ncqr << 16;
    r->result = c->feat.num_queues;
    return NVME_OK;
}

static uint16_t set_temp_thresh(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint16_t tmpth = r->cmd.cdw11 & 0xffff;
    unsigned tmpsel = (r->cmd.cdw11 >> 16) & 0xf, thsel = (r->cmd.cdw11 >> 20) & 3;
    if (thsel > 1)
        return invalid_field();
    if (tmpsel == 0xf) { /* all sensors */
        for (int s = 0; s < 9; s++)
            c->feat.temp_thresh[s][thsel] = tmpth;
    } else if (tmpsel <= 8) {
        c->feat.temp_thresh[tmpsel][thsel] = tmpth;
    } else {
        return invalid_field();
    }
    /* Crossing a threshold is a SMART/health event if the host enabled that warning. */
    if (temp_over(c) && (c->feat.async_event_config & NVME_SMART_CRIT_TEMPERATURE))
        nvme_aen_post(c, NVME_AER_SMART, NVME_AER_SMART_TEMPERATURE_THRESHOLD, NVME_LOG_LID_SMART);
    return NVME_OK;
}

static uint16_t set_timestamp(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint8_t buf[8];
    uint16_t st = nvme_dptr_from_guest(c, r, buf, sizeof(buf));
    if (st)
        return st;
    uint64_t ts = 0;
    for (int i = 0; i < 6; i++)
        ts |= (uint64_t)buf[i] << (8 * i);
    c->feat.timestamp_ms = ts;
    c->feat.timestamp_set_at_ms = nvme_now_ms();
    if (!c->feat.timestamp_set_at_ms)
        c->feat.timestamp_set_at_ms = 1;
    return NVME_OK;
}

uint16_t nvme_adm_set_features(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint8_t fid = r->cmd.cdw10 & 0xff;
    uint32_t v = r->cmd.cdw11;
    if (r->cmd.cdw10 & (1u << 31)) /* SV: nothing is saveable */
        return NVME_STATUS(NVME_SCT_CMD_SPECIFIC, NVME_SC_FEATURE_NOT_SAVEABLE) | NVME_SC_DNR;
    switch (fid) {
    case NVME_FEAT_FID_ARBITRATION:
        c->feat.arbitration = v;
        return NVME_OK;
    case NVME_FEAT_FID_POWER_MGMT:
        if ((v & 0x1f) != 0) /* NPSS 0: power state 0 only */
            return invalid_field();
        c->feat.power_mgmt = v & 0xff;
        return NVME_OK;
    case NVME_FEAT_FID_TEMP_THRESH:
        return set_temp_thresh(c, r);
    case NVME_FEAT_FID_ERR_RECOVERY:
        if (v & (1u << 16)) /* DULBE needs deallocated-block errors, which we lack */
            return invalid_field();
        c->feat.err_rec = v & 0xffff;
        return NVME_OK;
    case NVME_FEAT_FID_VOLATILE_WC:
        c->feat.vwc = v & 1;
        return NVME_OK;
    case NVME_FEAT_FID_NUM_QUEUES:
        return set_num_queues(c, r);
    case NVME_FEAT_FID_IRQ_COALESCE:
        c->feat.int_coalescing = v & 0xffff;
        return NVME_OK;
    case NVME_FEAT_FID_IRQ_CONFIG: {
        uint16_t iv = v & 0xffff;
        if (iv >= NVME_NR_VECTORS)
            return invalid_field();
        c->feat.iv_config[iv] = v & 0x1ffff;
        return NVME_OK;
    }
    case NVME_FEAT_FID_ASYNC_EVENT:
        c->feat.async_event_config = v & AEC_SUPPORTED;
        return NVME_OK;
    case NVME_FEAT_FID_TIMESTAMP:
        return set_timestamp(c, r);
    case NVME_FEAT_FID_KATO:
        c->feat.keep_alive_ms = v;
        return NVME_OK;
    case NVME_FEAT_FID_HOST_BEHAVIOR:
        return nvme_dptr_from_guest(c, r, c->feat.host_behavior, sizeof(c->feat.host_behavior));
    default:
        return invalid_field();
    }
}
