/*
 * The control socket's request language, parsed without touching a VM: one JSON object
 * per line, {"cmd":"...", "id":ANY, ...} or QMP's {"execute":"...", "arguments":{...},
 * "id":ANY}. Kept pure so it can be unit-tested and fuzzed (fuzz/fuzz_control.c) on its
 * own. docs/control-protocol.md describes the protocol.
 */
#pragma once
#include <stddef.h>

#include "migrate/migrate.h"

/* Longest request line the server buffers; a longer one is refused and the client dropped. */
#define CONTROL_MAX_LINE (64 * 1024)

enum control_cmd {
    CONTROL_STATUS,
    CONTROL_PAUSE,
    CONTROL_RESUME,
    CONTROL_QUIT,
    CONTROL_MIGRATE,
    CONTROL_MIGRATE_STATUS,
    CONTROL_MIGRATE_CANCEL,
    CONTROL_QUERY_COMMANDS,
    CONTROL_WATCH,
    CONTROL_STATS,
};

/* Every command with a one-line description, in the order query-commands lists them. */
struct control_command_info {
    const char *name;
    enum control_cmd cmd;
    const char *desc;
};
extern const struct control_command_info control_commands[];
extern const size_t control_ncommands;

/* Error classes ("error":{"class":...,"desc":...}); docs/control-protocol.md lists when
 * each is used. */
#define CONTROL_ERR_INVALID_REQUEST   "InvalidRequest" /* not a request: JSON, shape, size */
#define CONTROL_ERR_COMMAND_NOT_FOUND "CommandNotFound"
#define CONTROL_ERR_INVALID_ARGUMENT  "InvalidArgument" /* a member's value or an unknown one */
#define CONTROL_ERR_INVALID_STATE     "InvalidState"    /* not now: e.g. pause while incoming */
#define CONTROL_ERR_DEVICE_BUSY       "DeviceBusy"      /* a migration is already running */
#define CONTROL_ERR_MIGRATION_FAILED  "MigrationFailed" /* the migration could not start */
#define CONTROL_ERR_INTERNAL          "InternalError"

struct json_object;

struct control_req {
    enum control_cmd cmd;
    struct json_object *id; /* the request's "id" (a reference), NULL when absent */
    struct mig_params mig;  /* CONTROL_MIGRATE only */
    const char *err_class;  /* on failure: one of CONTROL_ERR_* */
};

/* Parses one request line (without its newline). On failure err says why and out->id
 * still holds the id if one could be read, so the error reply can echo it: call
 * control_req_release either way. */
int control_parse_request(const char *buf, size_t len, struct control_req *out, char *err,
                          size_t errlen);
void control_req_release(struct control_req *r);
