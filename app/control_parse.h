/*
 * The control socket's request language, parsed without touching a VM: one JSON object
 * per line, {"cmd":"...", "id":ANY, ...}. Kept pure so it can be unit-tested and fuzzed
 * (fuzz/fuzz_control.c) on its own.
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
    CONTROL_STATS,
};

struct json_object;

struct control_req {
    enum control_cmd cmd;
    struct json_object *id; /* the request's "id" (a reference), NULL when absent */
    struct mig_params mig;  /* CONTROL_MIGRATE only */
};

/* Parses one request line (without its newline). On failure err says why and out->id
 * still holds the id if one could be read, so the error reply can echo it: call
 * control_req_release either way. */
int control_parse_request(const char *buf, size_t len, struct control_req *out, char *err,
                          size_t errlen);
void control_req_release(struct control_req *r);
