#include "app/control_parse.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "util/err.h"

/* Deep nesting only costs us stack and memory: no request needs more than two levels,
 * and an id may be a small structure. */
#define MAX_DEPTH 8

const struct control_command_info control_commands[] = {
    {"status", CONTROL_STATUS, "the VM's state (running, paused, incoming), vCPUs, memory, pid"},
    {"pause", CONTROL_PAUSE, "stop every vCPU at an instruction boundary"},
    {"resume", CONTROL_RESUME, "let paused vCPUs run again"},
    {"quit", CONTROL_QUIT, "stop the VM; nvmevm exits 0"},
    {"migrate", CONTROL_MIGRATE,
     "start a live migration to uri (tcp:HOST:PORT) with downtime_ms, max_bandwidth, ..."},
    {"migrate-status", CONTROL_MIGRATE_STATUS, "progress or result of the live migration"},
    {"migrate-cancel", CONTROL_MIGRATE_CANCEL, "stop a live migration; the guest stays here"},
    {"query-commands", CONTROL_QUERY_COMMANDS, "this list"},
    {"watch", CONTROL_WATCH, "send asynchronous events on this connection from now on"},
    {"stats", CONTROL_STATS, "live I/O statistics per namespace and queue (docs/stats.md)"},
};
const size_t control_ncommands = sizeof(control_commands) / sizeof(control_commands[0]);

static const char *const migrate_keys[] = {
    "cmd",           "execute",   "id",     "uri",           "downtime_ms",
    "max_bandwidth", "timeout_s", "force",  "auto_converge", "tls_psk",
    "tls_cert",      "tls_key",   "tls_ca", "tls_hostname",  "io_timeout_s"};

/* A non-negative integer member no larger than max, dflt when absent. */
static int get_uint(json_object *req, const char *key, uint64_t dflt, uint64_t max, uint64_t *out,
                    char *err, size_t errlen)
{
    json_object *v;
    *out = dflt;
    if (!json_object_object_get_ex(req, key, &v))
        return 0;
    if (!json_object_is_type(v, json_type_int))
        return err_set(err, errlen, "migrate: \"%s\" must be a number", key);
    /* json-c keeps integers above INT64_MAX as unsigned; below zero as signed. */
    if (json_object_get_int64(v) < 0)
        return err_set(err, errlen, "migrate: \"%s\" must not be negative", key);
    uint64_t u = json_object_get_uint64(v);
    if (u > max)
        return err_set(err, errlen, "migrate: \"%s\" is too large (at most %llu)", key,
                       (unsigned long long)max);
    *out = u;
    return 0;
}

static int get_bool(json_object *req, const char *key, bool *out, char *err, size_t errlen)
{
    json_object *v;
    *out = false;
    if (!json_object_object_get_ex(req, key, &v))
        return 0;
    if (!json_object_is_type(v, json_type_boolean))
        return err_set(err, errlen, "migrate: \"%s\" must be true or false", key);
    *out = json_object_get_boolean(v);
    return 0;
}

static bool printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* An optional string member (a path or host name as the source process sees it). */
static int get_str(json_object *req, const char *key, char *buf, size_t len, char *err,
                   size_t errlen)
{
    json_object *v;
    buf[0] = '\0';
    if (!json_object_object_get_ex(req, key, &v))
        return 0;
    size_t n = json_object_is_type(v, json_type_string) ? (size_t)json_object_get_string_len(v) : 0;
    const char *s = n ? json_object_get_string(v) : NULL;
    if (!s || n >= len || memchr(s, '\0', n) || !printable(s, n))
        return err_set(err, errlen, "migrate: \"%s\" must be 1 to %zu printable characters", key,
                       len - 1);
    memcpy(buf, s, n + 1);
    return 0;
}

static int parse_migrate(json_object *req, struct mig_params *mp, char *err, size_t errlen)
{
    /* An unknown member is refused rather than ignored: a misspelt "force" must not
     * silently mean the default. */
    json_object_object_foreach(req, key, val)
    {
        (void)val;
        bool known = false;
        for (size_t i = 0; i < sizeof(migrate_keys) / sizeof(migrate_keys[0]); i++)
            known = known || strcmp(key, migrate_keys[i]) == 0;
        if (!known)
            return err_set(err, errlen, "migrate: unknown member \"%.64s\"", key);
    }
    json_object *uri;
    if (!json_object_object_get_ex(req, "uri", &uri) || !json_object_is_type(uri, json_type_string))
        return err_set(err, errlen, "migrate: missing \"uri\" (a string)");
    size_t ulen = (size_t)json_object_get_string_len(uri);
    const char *u = json_object_get_string(uri);
    if (ulen >= sizeof(mp->uri) || ulen == 0 || memchr(u, '\0', ulen) || !printable(u, ulen))
        return err_set(err, errlen, "migrate: \"uri\" must be 1 to %zu printable characters",
                       sizeof(mp->uri) - 1);
    memcpy(mp->uri, u, ulen + 1);
    uint64_t downtime, bw, timeout, io_timeout;
    struct mig_tls_opts *t = &mp->tls;
    if (get_str(req, "tls_psk", t->psk, sizeof(t->psk), err, errlen) < 0 ||
        get_str(req, "tls_cert", t->cert, sizeof(t->cert), err, errlen) < 0 ||
        get_str(req, "tls_key", t->key, sizeof(t->key), err, errlen) < 0 ||
        get_str(req, "tls_ca", t->ca, sizeof(t->ca), err, errlen) < 0 ||
        get_str(req, "tls_hostname", t->hostname, sizeof(t->hostname), err, errlen) < 0 ||
        get_uint(req, "io_timeout_s", 0, 86400, &io_timeout, err, errlen) < 0)
        return -1;
    mp->io_timeout_s = (unsigned)io_timeout;
    if (get_uint(req, "downtime_ms", 300, UINT32_MAX, &downtime, err, errlen) < 0 ||
        get_uint(req, "max_bandwidth", 0, UINT64_MAX, &bw, err, errlen) < 0 ||
        get_uint(req, "timeout_s", 0, UINT32_MAX, &timeout, err, errlen) < 0 ||
        get_bool(req, "force", &mp->force_on_timeout, err, errlen) < 0 ||
        get_bool(req, "auto_converge", &mp->auto_converge, err, errlen) < 0)
        return -1;
    mp->downtime_ms = (unsigned)downtime;
    mp->max_bandwidth = bw;
    mp->timeout_s = (unsigned)timeout;
    return 0;
}

/* QMP's form takes its arguments from "arguments" (absent: *args NULL); the plain form
 * has them beside "cmd". */
static int qmp_arguments(json_object *req, json_object **args, char *err, size_t errlen)
{
    *args = NULL;
    json_object_object_foreach(req, key, val)
    {
        if (strcmp(key, "arguments") == 0) {
            if (!json_object_is_type(val, json_type_object))
                return err_set(err, errlen, "\"arguments\" must be an object");
            *args = val;
        } else if (strcmp(key, "execute") && strcmp(key, "id")) {
            return err_set(err, errlen, "unknown member \"%.64s\" (arguments go in \"arguments\")",
                           key);
        }
    }
    return 0;
}

static int parse_object(json_object *req, struct control_req *out, char *err, size_t errlen)
{
    json_object *jcmd, *id, *jexec;
    out->err_class = CONTROL_ERR_INVALID_REQUEST;
    if (!json_object_is_type(req, json_type_object))
        return err_set(err, errlen, "expected a JSON object {\"cmd\":\"...\"}");
    if (json_object_object_get_ex(req, "id", &id))
        out->id = json_object_get(id); /* a JSON null id is NULL too: echoed as absent */
    bool has_cmd = json_object_object_get_ex(req, "cmd", &jcmd);
    bool qmp = json_object_object_get_ex(req, "execute", &jexec);
    if (has_cmd && qmp)
        return err_set(err, errlen, "give \"cmd\" or \"execute\", not both");
    if (qmp)
        jcmd = jexec;
    if ((!has_cmd && !qmp) || !json_object_is_type(jcmd, json_type_string))
        return err_set(err, errlen, "expected {\"cmd\":\"...\"} or {\"execute\":\"...\"}");
    const char *cmd = json_object_get_string(jcmd);
    size_t clen = (size_t)json_object_get_string_len(jcmd);
    for (size_t i = 0; i < control_ncommands; i++) {
        if (strlen(control_commands[i].name) == clen &&
            memcmp(control_commands[i].name, cmd, clen) == 0) {
            out->cmd = control_commands[i].cmd;
            json_object *args = req;
            if (qmp && qmp_arguments(req, &args, err, errlen) < 0)
                return -1;
            if (out->cmd != CONTROL_MIGRATE)
                return 0;
            out->err_class = CONTROL_ERR_INVALID_ARGUMENT;
            if (!args)
                return err_set(err, errlen, "migrate: missing \"uri\" (a string)");
            return parse_migrate(args, &out->mig, err, errlen);
        }
    }
    out->err_class = CONTROL_ERR_COMMAND_NOT_FOUND;
    /* The command goes back inside a JSON string (escaped), but keep it short. */
    return err_set(err, errlen, "unknown command '%.*s'", (int)(clen < 64 ? clen : 64),
                   printable(cmd, clen < 64 ? clen : 64) ? cmd : "(unprintable)");
}

int control_parse_request(const char *buf, size_t len, struct control_req *out, char *err,
                          size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->err_class = CONTROL_ERR_INVALID_REQUEST;
    if (len > CONTROL_MAX_LINE)
        return err_set(err, errlen, "request longer than %d bytes", CONTROL_MAX_LINE);
    /* json-c would stop at a NUL and leave the rest unread. */
    if (memchr(buf, '\0', len))
        return err_set(err, errlen, "request contains a NUL byte");
    json_tokener *tok = json_tokener_new_ex(MAX_DEPTH);
    if (!tok) {
        out->err_class = CONTROL_ERR_INTERNAL;
        return err_set(err, errlen, "out of memory");
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                    JSON_TOKENER_VALIDATE_UTF8);
    json_object *req = json_tokener_parse_ex(tok, buf, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    int r;
    if (!req || jerr != json_tokener_success) {
        r = err_set(err, errlen, "not JSON: %s",
                    jerr == json_tokener_continue ? "unexpected end of line"
                                                  : json_tokener_error_desc(jerr));
    } else {
        while (end < len && (buf[end] == ' ' || buf[end] == '\t' || buf[end] == '\r'))
            end++;
        if (end != len)
            r = err_set(err, errlen, "trailing characters after the JSON object");
        else
            r = parse_object(req, out, err, errlen);
    }
    json_object_put(req);
    return r;
}

void control_req_release(struct control_req *r)
{
    json_object_put(r->id);
    r->id = NULL;
}
