/*
 * Identify: every CNS value decoded (reference §5.1.5: treating CNS loosely broke Linux);
 * unsupported ones get Invalid Field. LBA formats: 0 = 512 B, 1 = 4096 B.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu/nvme_int.h"

#define NVME_CNTLID    0
#define NVMEVM_PCI_VID 0x1b36
#define IDENTIFY_SIZE  4096

static uint16_t invalid_field(void)
{
    return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_FIELD) | NVME_SC_DNR;
}

static uint16_t invalid_ns(void)
{
    return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_NS) | NVME_SC_DNR;
}

static void pad_copy(char *dst, const char *src, size_t n)
{
    size_t l = strlen(src);
    memset(dst, ' ', n);
    memcpy(dst, src, l < n ? l : n);
}

static void put_le128(uint8_t out[16], uint64_t v)
{
    memset(out, 0, 16);
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t identify_ctrl(struct nvme_ctrl *c, struct nvme_req *r)
{
    struct nvme_id_ctrl *id = calloc(1, sizeof(*id));
    if (!id)
        return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INTERNAL);
    id->vid = htole16(NVMEVM_PCI_VID);
    id->ssvid = htole16(NVMEVM_PCI_VID);
    pad_copy(id->sn, c->cfg.serial, sizeof(id->sn));
    pad_copy(id->mn, c->cfg.model, sizeof(id->mn));
    memcpy(id->fr, c->fw_slot[c->fw_active_slot - 1], sizeof(id->fr));
    id->rab = 6;
    id->ieee[0] = 0x00; /* 52:54:00, the OUI-style prefix virtual devices use */
    id->ieee[1] = 0x54;
    id->ieee[2] = 0x52;
    id->mdts = (uint8_t)c->cfg.mdts;
    id->cntlid = htole16(NVME_CNTLID);
    id->ver = htole32(c->vs);
    id->oaes = htole32(NVME_CTRL_OAES_NA | NVME_CTRL_OAES_FA);
    id->cntrltype = NVME_CTRL_CNTRLTYPE_IO;
    id->oacs = htole16(NVME_CTRL_OACS_FORMAT | NVME_CTRL_OACS_FW | NVME_CTRL_OACS_NS_MGMT |
                       NVME_CTRL_OACS_SELF_TEST | NVME_CTRL_OACS_DBBUF_CFG);
    id->acl = 3;
    id->aerl = NVME_AERL;
    id->frmw = (uint8_t)(3 << 1) | NVME_CTRL_FRMW_FW_ACT_NO_RESET; /* 3 slots */
    id->lpa = NVME_CTRL_LPA_CMD_EFFECTS | NVME_CTRL_LPA_EXTENDED;
    id->elpe = NVME_ERROR_LOG_SIZE - 1;
    id->npss = 0;
    id->wctemp = htole16(NVME_WCTEMP);
    id->cctemp = htole16(NVME_CCTEMP);
    if (c->cfg.ns_dir) {
        /* Namespace Management creates sparse files: report a generous pool. */
        uint64_t total = 1ull << 44, used = 0;
        for (int i = 0; i < NVME_MAX_NAMESPACES; i++)
            if (c->ns[i].present)
                used += c->ns[i].nsze << c->ns[i].lba_shift;
        put_le128(id->tnvmcap, total);
        put_le128(id->unvmcap, used < total ? total - used : 0);
    }
    id->edstt = htole16(1); /* extended self-test: about a minute (it is instant here) */
    id->dsto = 1;           /* one self-test at a time */
    id->kas = htole16(10);  /* keep alive granularity 1 s */
    id->sqes = 6 << 4 | 6;
    id->cqes = 4 << 4 | 4;
    id->nn = htole32(NVME_MAX_NAMESPACES);
    id->oncs = htole16(NVME_CTRL_ONCS_COMPARE | NVME_CTRL_ONCS_WRITE_UNCORRECTABLE |
                       NVME_CTRL_ONCS_DSM | NVME_CTRL_ONCS_WRITE_ZEROES | NVME_CTRL_ONCS_TIMESTAMP |
                       NVME_CTRL_ONCS_VERIFY | NVME_CTRL_ONCS_COPY);
    id->vwc = NVME_CTRL_VWC_PRESENT;
    id->sgls = htole32(1 | NVME_CTRL_SGLS_BIT_BUCKET);
    id->mnan = htole32(NVME_MAX_NAMESPACES);
    snprintf(id->subnqn, sizeof(id->subnqn), "nqn.2024-01.io.nvmevm:ctrl-%s", c->cfg.serial);
    id->psd[0].mp = htole16(2500); /* 25 W, in 0.01 W units */
    uint16_t st = nvme_dptr_to_guest(c, r, id, sizeof(*id));
    free(id);
    return st;
}

/* NSID checks shared by the per-namespace CNS values. Returns the namespace if it is
 * usable (present and, unless allocated_ok, attached), NULL with *st = OK for an inactive
 * but valid NSID (zero-filled reply), NULL with an error otherwise. */
static struct nvme_ns *ns_lookup(struct nvme_ctrl *c, uint32_t nsid, bool allocated_ok,
                                 uint16_t *st)
{
    *st = NVME_OK;
    if (nsid == 0 || nsid > NVME_MAX_NAMESPACES) {
        *st = invalid_ns();
        return NULL;
    }
    struct nvme_ns *ns = &c->ns[nsid - 1];
    if (!ns->present || (!ns->attached && !allocated_ok))
        return NULL;
    return ns;
}

static void fill_lbafs(struct nvme_id_ns *id)
{
    id->nlbaf = 1;
    id->lbaf[0].ds = 9;
    id->lbaf[0].rp = NVME_LBAF_RP_GOOD;
    id->lbaf[1].ds = 12;
    id->lbaf[1].rp = NVME_LBAF_RP_BEST;
}

static uint16_t identify_ns(struct nvme_ctrl *c, struct nvme_req *r, bool allocated)
{
    struct nvme_id_ns *id = calloc(1, sizeof(*id));
    if (!id)
        return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INTERNAL);
    uint16_t st = NVME_OK;
    if (r->cmd.nsid == NVME_NSID_ALL) {
        fill_lbafs(id); /* capabilities common to all namespaces */
    } else {
        struct nvme_ns *ns = ns_lookup(c, r->cmd.nsid, allocated, &st);
        if (ns) {
            id->nsze = id->ncap = id->nuse = htole64(ns->nsze);
            fill_lbafs(id);
            id->flbas = ns->lba_shift == 12 ? 1 : 0;
            id->dlfeat = NVME_NS_DLFEAT_RB_ALL_0S | NVME_NS_DLFEAT_WRITE_ZEROES;
            id->mssrl = htole16(NVME_COPY_MSSRL); /* exactly what exec_copy enforces */
            id->mcl = htole32(NVME_COPY_MCL);
            id->msrc = NVME_COPY_MSRC;
            id->nsattr = ns->read_only ? NVME_NS_NSATTR_WRITE_PROTECTED : 0;
            put_le128(id->nvmcap, ns->nsze << ns->lba_shift);
            memcpy(id->nguid, ns->nguid, sizeof(id->nguid));
            memcpy(id->eui64, ns->eui64, sizeof(id->eui64));
        }
    }
    if (st == NVME_OK)
        st = nvme_dptr_to_guest(c, r, id, sizeof(*id));
    free(id);
    return st;
}

static uint16_t ns_list(struct nvme_ctrl *c, struct nvme_req *r, bool allocated)
{
    if (r->cmd.nsid >= 0xfffffffe)
        return invalid_ns();
    struct nvme_ns_list list;
    memset(&list, 0, sizeof(list));
    int n = 0;
    for (uint32_t nsid = r->cmd.nsid + 1; nsid <= NVME_MAX_NAMESPACES; nsid++) {
        const struct nvme_ns *ns = &c->ns[nsid - 1];
        if (ns->present && (allocated || ns->attached))
            list.ns[n++] = htole32(nsid);
    }
    return nvme_dptr_to_guest(c, r, &list, sizeof(list));
}

static uint16_t ns_descs(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint16_t st;
    struct nvme_ns *ns = ns_lookup(c, r->cmd.nsid, false, &st);
    if (!ns)
        return st ? st : invalid_ns();
    uint8_t buf[IDENTIFY_SIZE] = {0};
    size_t off = 0;
    const struct {
        uint8_t type, len;
        const void *data;
    } d[] = {
        {NVME_NIDT_EUI64, NVME_NIDT_EUI64_LEN, ns->eui64},
        {NVME_NIDT_NGUID, NVME_NIDT_NGUID_LEN, ns->nguid},
        {NVME_NIDT_UUID, NVME_NIDT_UUID_LEN, ns->uuid},
        {NVME_NIDT_CSI, NVME_NIDT_CSI_LEN, &(uint8_t){NVME_CSI_NVM}},
    };
    for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
        struct nvme_ns_id_desc *h = (struct nvme_ns_id_desc *)(buf + off);
        h->nidt = d[i].type;
        h->nidl = d[i].len;
        memcpy(buf + off + sizeof(*h), d[i].data, d[i].len);
        off += sizeof(*h) + d[i].len;
    }
    return nvme_dptr_to_guest(c, r, buf, sizeof(buf));
}

static uint16_t csi_ns(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint16_t st;
    struct nvme_ns *ns = ns_lookup(c, r->cmd.nsid, false, &st);
    if (st)
        return st;
    struct nvme_nvm_id_ns id;
    memset(&id, 0, sizeof(id));
    (void)ns; /* no protection information or extended LBA formats to report */
    return nvme_dptr_to_guest(c, r, &id, sizeof(id));
}

static uint16_t csi_ctrl(struct nvme_ctrl *c, struct nvme_req *r)
{
    struct nvme_id_ctrl_nvm id;
    memset(&id, 0, sizeof(id)); /* no DSM / Write Zeroes / Verify limits beyond MDTS */
    return nvme_dptr_to_guest(c, r, &id, sizeof(id));
}

static uint16_t indep_ns(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint16_t st;
    struct nvme_ns *ns = ns_lookup(c, r->cmd.nsid, false, &st);
    if (st)
        return st;
    struct nvme_id_independent_id_ns id;
    memset(&id, 0, sizeof(id));
    if (ns) {
        id.nsattr = ns->read_only ? NVME_NS_NSATTR_WRITE_PROTECTED : 0;
        id.nstat = 1; /* namespace ready */
    }
    return nvme_dptr_to_guest(c, r, &id, sizeof(id));
}

static uint16_t ctrl_list(struct nvme_ctrl *c, struct nvme_req *r, bool for_ns)
{
    uint16_t list[2048] = {0};
    uint16_t cntid = r->cmd.cdw10 >> 16;
    bool include = cntid <= NVME_CNTLID;
    if (for_ns) {
        uint16_t st;
        struct nvme_ns *ns = ns_lookup(c, r->cmd.nsid, true, &st);
        if (st)
            return st;
        include = include && ns && ns->attached;
    }
    if (include) {
        list[0] = htole16(1);
        list[1] = htole16(NVME_CNTLID);
    }
    return nvme_dptr_to_guest(c, r, list, sizeof(list));
}

static uint16_t iocs(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint16_t cntid = r->cmd.cdw10 >> 16;
    if (cntid != NVME_CNTLID && cntid != 0xffff)
        return invalid_field();
    struct nvme_id_iocs *id = calloc(1, sizeof(*id));
    if (!id)
        return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INTERNAL);
    id->iocsc[0] = htole64(1ull << NVME_CSI_NVM); /* combination 0: NVM only */
    uint16_t st = nvme_dptr_to_guest(c, r, id, sizeof(*id));
    free(id);
    return st;
}

uint16_t nvme_adm_identify(struct nvme_ctrl *c, struct nvme_req *r)
{
    uint8_t cns = r->cmd.cdw10 & 0xff;
    uint8_t csi = r->cmd.cdw11 >> 24;
    switch (cns) {
    case NVME_IDENTIFY_CNS_NS:
        return identify_ns(c, r, false);
    case NVME_IDENTIFY_CNS_CTRL:
        return identify_ctrl(c, r);
    case NVME_IDENTIFY_CNS_NS_ACTIVE_LIST:
        return ns_list(c, r, false);
    case NVME_IDENTIFY_CNS_NS_DESC_LIST:
        return ns_descs(c, r);
    case NVME_IDENTIFY_CNS_CSI_NS:
        return csi == NVME_CSI_NVM ? csi_ns(c, r) : invalid_field();
    case NVME_IDENTIFY_CNS_CSI_CTRL:
        return csi == NVME_CSI_NVM ? csi_ctrl(c, r) : invalid_field();
    case NVME_IDENTIFY_CNS_CSI_NS_ACTIVE_LIST:
        return csi == NVME_CSI_NVM ? ns_list(c, r, false) : invalid_field();
    case NVME_IDENTIFY_CNS_CSI_INDEPENDENT_ID_NS:
        return indep_ns(c, r);
    case NVME_IDENTIFY_CNS_ALLOCATED_NS_LIST:
        return ns_list(c, r, true);
    case NVME_IDENTIFY_CNS_ALLOCATED_NS:
        return identify_ns(c, r, true);
    case NVME_IDENTIFY_CNS_NS_CTRL_LIST:
        return ctrl_list(c, r, true);
    case NVME_IDENTIFY_CNS_CTRL_LIST:
        return ctrl_list(c, r, false);
    case NVME_IDENTIFY_CNS_COMMAND_SET_STRUCTURE:
        return iocs(c, r);
    default:
        return invalid_field();
    }
}
