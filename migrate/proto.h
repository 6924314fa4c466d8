/* The small conversation around the stream: the configuration both sides must share,
 * and one-line replies on the return path ("OK", "ERR reason", "LOADED", "HANDOVER",
 * "RUNNING"). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define PROTO_CONFIG_VERSION 1 /* of the MIG_SEC_CONFIG section */

struct vm;
struct mig_buf;
struct mig_cursor;
struct mig_conn;

void proto_config_put(const struct vm *vm, struct mig_buf *b);
/* 0 if the stream's configuration (section version `version`) equals this VM's; -1 with
 * the first difference. */
int proto_config_check(const struct vm *vm, uint16_t version, struct mig_cursor *c, char *err,
                       size_t errlen);

int proto_write_line(struct mig_conn *c, const char *line);
/* Reads one line (without the newline) within timeout_s seconds. 0 or -1. */
int proto_read_line(struct mig_conn *c, char *buf, size_t len, int timeout_s);
