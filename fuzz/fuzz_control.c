/* libFuzzer harness: the control socket's request parser (app/control_parse.c) on
 * arbitrary bytes, in both forms ({"cmd":...} and QMP's {"execute":...,"arguments":...}).
 * Whatever arrives must parse into a listed command or be refused with a message and an
 * error class, and leak nothing. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "app/control_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct control_req r;
    char err[256];
    err[0] = '\0';
    int rc = control_parse_request((const char *)data, size, &r, err, sizeof(err));
    /* A refusal always says why; an accepted migrate always has a terminated uri. */
    if (rc < 0 && (!err[0] || !r.err_class || !r.err_class[0]))
        __builtin_trap();
    if (rc == 0) {
        bool listed = false;
        for (size_t i = 0; i < control_ncommands; i++)
            listed = listed || control_commands[i].cmd == r.cmd;
        if (!listed)
            __builtin_trap();
    }
    if (rc == 0 && r.cmd == CONTROL_MIGRATE && !memchr(r.mig.uri, '\0', sizeof(r.mig.uri)))
        __builtin_trap();
    control_req_release(&r);
    return 0;
}
