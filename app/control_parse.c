#include "app/control_parse.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "util/err.h"

/* Deep nesting only costs us stack and memory: no request needs more than two levels,
 * and an id may be a small structure. */
#define MAX_DEPTH 8

static const struct {
    const char *name;
    enum control_cmd cmd;
} commands[] = {
    {"status", CONTROL_STATUS},
    {"pause", CONTROL_PAUSE},
    {"resume", CONTROL_RESUME},
    {"quit", CONTROL_QUIT},
    {"migrate", CONTROL_MIGRATE},
    {"migrate-status", CONTROL_MIGRATE_STATUS},
    {"migrate-cancel", CONTROL_MIGRATE_CANCEL},
    {"stats", CONTROL_STATS},
};

static const char *const migrate_keys[] = {
    "cmd",       "id",     "uri",           "downtime_ms", "max_bandwidth",
    "timeout_s", "force",  "auto_converge", "tls_psk",     "tls_cert",
    "tls_key",   "tls_ca", "tls_hostname",  "io_timeout_s"};

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

static int parse_object(json_object *req, struct control_req *out, char *err, size_t errlen)
{
    json_object *jcmd, *id;
    if (!json_object_is_type(req, json_type_object))
        return err_set(err, errlen, "expected a JSON object {\"cmd\":\"...\"}");
    if (json_object_object_get_ex(req, "id", &id))
        out->id = json_object_get(id); /* a JSON null id is NULL too: echoed as absent */
    if (!json_object_object_get_ex(req, "cmd", &jcmd) ||
        !json_object_is_type(jcmd, json_type_string))
        return err_set(err, errlen, "expected {\"cmd\":\"...\"}");
    const char *cmd = json_object_get_string(jcmd);
    size_t clen = (size_t)json_object_get_string_len(jcmd);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strlen(commands[i].name) == clen && memcmp(commands[i].name, cmd, clen) == 0) {
            out->cmd = commands[i].cmd;
            return out->cmd == CONTROL_MIGRATE ? parse_migrate(req, &out->mig, err, errlen) : 0;
        }
    }
    /* The command goes back inside a JSON string (escaped), but keep it short. */
    return err_set(err, errlen, "unknown command '%.*s'", (int)(clen < 64 ? clen : 64),
                   printable(cmd, clen < 64 ? clen : 64) ? cmd : "(unprintable)");
}

int control_parse_request(const char *buf, size_t len, struct control_req *out, char *err,
                          size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (len > CONTROL_MAX_LINE)
        return err_set(err, errlen, "request longer than %d bytes", CONTROL_MAX_LINE);
    /* json-c would stop at a NUL and leave the rest unread. */
    if (memchr(buf, '\0', len))
        return err_set(err, errlen, "request contains a NUL byte");
    json_tokener *tok = json_tokener_new_ex(MAX_DEPTH);
    if (!tok)
        return err_set(err, errlen, "out of memory");
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
