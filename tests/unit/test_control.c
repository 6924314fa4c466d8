/* The control socket's request parser, and the seccomp policy applied in a child. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "app/control_parse.h"
#include "app/syscall_filter.h"
#include "util/thread_role.h"

static int parse(const char *s, struct control_req *r, char *err, size_t errlen)
{
    return control_parse_request(s, strlen(s), r, err, errlen);
}

Test(control, status_and_id_echo)
{
    struct control_req r;
    char err[256];
    cr_assert_eq(parse("{\"cmd\":\"status\",\"id\":{\"n\":[1,2]}}", &r, err, sizeof(err)), 0);
    cr_assert_eq(r.cmd, CONTROL_STATUS);
    cr_assert_not_null(r.id);
    cr_assert_str_eq(json_object_to_json_string_ext(r.id, JSON_C_TO_STRING_PLAIN), "{\"n\":[1,2]}");
    control_req_release(&r);
}

/* The id is kept even when the request is refused, so the error reply can carry it. */
Test(control, id_kept_on_refusal)
{
    struct control_req r;
    char err[256];
    cr_assert_eq(parse("{\"cmd\":\"fly\",\"id\":7}", &r, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "unknown command 'fly'");
    cr_assert_not_null(r.id);
    cr_assert_eq(json_object_get_int(r.id), 7);
    control_req_release(&r);
}

/* Each kind of refusal has its class. */
Test(control, error_classes)
{
    static const struct {
        const char *req, *cls, *desc;
    } cases[] = {
        {"nonsense", CONTROL_ERR_INVALID_REQUEST, "not JSON"},
        {"[1]", CONTROL_ERR_INVALID_REQUEST, "expected a JSON object"},
        {"{\"cmd\":5}", CONTROL_ERR_INVALID_REQUEST, "expected {\"cmd\""},
        {"{\"id\":1}", CONTROL_ERR_INVALID_REQUEST, "expected {\"cmd\""},
        {"{\"cmd\":\"status\",\"execute\":\"status\"}", CONTROL_ERR_INVALID_REQUEST, "not both"},
        {"{\"execute\":\"status\",\"uri\":1}", CONTROL_ERR_INVALID_REQUEST, "unknown member"},
        {"{\"execute\":\"status\",\"arguments\":[]}", CONTROL_ERR_INVALID_REQUEST,
         "must be an object"},
        {"{\"execute\":\"fly\"}", CONTROL_ERR_COMMAND_NOT_FOUND, "unknown command 'fly'"},
        {"{\"cmd\":\"migrate\"}", CONTROL_ERR_INVALID_ARGUMENT, "missing \"uri\""},
        {"{\"execute\":\"migrate\"}", CONTROL_ERR_INVALID_ARGUMENT, "missing \"uri\""},
        {"{\"cmd\":\"migrate\",\"uri\":\"tcp:1\",\"timeout_s\":-1}", CONTROL_ERR_INVALID_ARGUMENT,
         "must not be negative"},
        {"{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"tcp:1\",\"frce\":true}}",
         CONTROL_ERR_INVALID_ARGUMENT, "unknown member \"frce\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct control_req r;
        char err[256];
        cr_assert_eq(parse(cases[i].req, &r, err, sizeof(err)), -1, "%s", cases[i].req);
        cr_assert_str_eq(r.err_class, cases[i].cls, "%s: %s", cases[i].req, r.err_class);
        cr_assert(strstr(err, cases[i].desc), "%s: %s", cases[i].req, err);
        control_req_release(&r);
    }
}

/* QMP's form: "execute", the arguments in "arguments", the id echoed. */
Test(control, qmp_execute_with_arguments)
{
    struct control_req r;
    char err[256];
    const char *req = "{\"execute\":\"migrate\",\"id\":\"m1\",\"arguments\":{\"uri\":\"tcp:9\","
                      "\"downtime_ms\":50,\"force\":true}}";
    cr_assert_eq(parse(req, &r, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(r.cmd, CONTROL_MIGRATE);
    cr_assert_str_eq(r.mig.uri, "tcp:9");
    cr_assert_eq(r.mig.downtime_ms, 50);
    cr_assert(r.mig.force_on_timeout);
    cr_assert_str_eq(json_object_get_string(r.id), "m1");
    control_req_release(&r);
    cr_assert_eq(parse("{\"execute\":\"watch\"}", &r, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(r.cmd, CONTROL_WATCH);
    control_req_release(&r);
    cr_assert_eq(parse("{\"execute\":\"status\",\"arguments\":{}}", &r, err, sizeof(err)), 0);
    control_req_release(&r);
}

/* query-commands lists every command the parser accepts, each with a description. */
Test(control, command_list_is_complete)
{
    cr_assert_eq(control_ncommands, 10);
    for (size_t i = 0; i < control_ncommands; i++) {
        struct control_req r;
        char line[128], err[256];
        snprintf(line, sizeof(line), "{\"cmd\":\"%s\"%s}", control_commands[i].name,
                 control_commands[i].cmd == CONTROL_MIGRATE ? ",\"uri\":\"tcp:1\"" : "");
        cr_assert_eq(parse(line, &r, err, sizeof(err)), 0, "%s: %s", line, err);
        cr_assert_eq(r.cmd, control_commands[i].cmd);
        cr_assert(control_commands[i].desc && *control_commands[i].desc);
        control_req_release(&r);
    }
}

/* What `nvmevm migrate 'tcp:h:1","force":true,"x":"'` sends: json-c escapes the argument,
 * so the VM sees one uri string and force stays false. */
Test(control, uri_cannot_inject_members)
{
    const char *evil = "tcp:h:1\",\"force\":true,\"x\":\"";
    json_object *req = json_object_new_object();
    json_object_object_add(req, "cmd", json_object_new_string("migrate"));
    json_object_object_add(req, "uri", json_object_new_string(evil));
    const char *line = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
    struct control_req r;
    char err[256];
    cr_assert_eq(control_parse_request(line, strlen(line), &r, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(r.cmd, CONTROL_MIGRATE);
    cr_assert_str_eq(r.mig.uri, evil);
    cr_assert_eq(r.mig.force_on_timeout, false);
    control_req_release(&r);
    json_object_put(req);
}

Test(control, migrate_members_typed)
{
    struct control_req r;
    char err[256];
    cr_assert_eq(parse("{\"cmd\":\"migrate\",\"uri\":\"tcp:a:1\",\"downtime_ms\":5,"
                       "\"force\":true,\"auto_converge\":false,\"timeout_s\":9,"
                       "\"max_bandwidth\":18446744073709551615}",
                       &r, err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(r.mig.downtime_ms, 5);
    cr_assert_eq(r.mig.timeout_s, 9);
    cr_assert_eq(r.mig.force_on_timeout, true);
    cr_assert_eq(r.mig.max_bandwidth, UINT64_MAX);
    control_req_release(&r);
    static const char *const bad[] = {
        "{\"cmd\":\"migrate\",\"uri\":\"tcp:a:1\",\"force\":1}",
        "{\"cmd\":\"migrate\",\"uri\":\"tcp:a:1\",\"downtime_ms\":-1}",
        "{\"cmd\":\"migrate\",\"uri\":\"tcp:a:1\",\"downtime_ms\":4294967296}",
        "{\"cmd\":\"migrate\",\"uri\":\"tcp:a:1\",\"forse\":true}",
        "{\"cmd\":\"migrate\",\"uri\":\"tcp:a:1\\n\"}",
        "{\"cmd\":\"migrate\",\"uri\":\"\"}",
        "{\"cmd\":\"migrate\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        cr_assert_eq(parse(bad[i], &r, err, sizeof(err)), -1, "accepted %s", bad[i]);
        cr_assert(err[0]);
        control_req_release(&r);
    }
}

Test(control, malformed_refused)
{
    static const char *const bad[] = {
        "",
        "{",
        "[]",
        "\"status\"",
        "{\"cmd\":1}",
        "{\"cmd\":\"status\"} x",
        "{\"cmd\":\"status\"}{\"cmd\":\"quit\"}",
        "{\"cmd\":\"st\xff\"}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct control_req r;
        char err[256] = "";
        cr_assert_eq(parse(bad[i], &r, err, sizeof(err)), -1, "accepted %s", bad[i]);
        cr_assert(err[0]);
        control_req_release(&r);
    }
    struct control_req r;
    char err[256];
    cr_assert_eq(control_parse_request("{\"cmd\":\"status\"}\0x", 18, &r, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "request contains a NUL byte");
    control_req_release(&r);
}

Test(control, migrate_tls_members)
{
    struct control_req r;
    char err[256];
    const char *ok = "{\"cmd\":\"migrate\",\"uri\":\"tcp:h:1\",\"tls_psk\":\"/k\","
                     "\"tls_hostname\":\"h\",\"io_timeout_s\":5}";
    cr_assert_eq(control_parse_request(ok, strlen(ok), &r, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(r.mig.tls.psk, "/k");
    cr_assert_str_eq(r.mig.tls.hostname, "h");
    cr_assert_eq(r.mig.io_timeout_s, 5);
    control_req_release(&r);
    const char *bad[] = {
        "{\"cmd\":\"migrate\",\"uri\":\"tcp:h:1\",\"tls_psk\":5}",
        "{\"cmd\":\"migrate\",\"uri\":\"tcp:h:1\",\"tls_ca\":\"a\\nb\"}",
        "{\"cmd\":\"migrate\",\"uri\":\"tcp:h:1\",\"io_timeout_s\":100000}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(control_parse_request(bad[i], strlen(bad[i]), &r, err, sizeof(err)), -1,
                     "%s accepted", bad[i]);
        control_req_release(&r);
    }
}

/* The seccomp tests need a build without sanitizers: their runtimes make system calls no
 * allowlist expects, which is why nvmevm turns seccomp off by default in such builds
 * (syscall_filter_default_on). The normal build runs them. */
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)

/* A child with the vCPU thread's filter calls socket(): it must be stopped with status
 * 159 and not get a socket. Without the filter the child would exit 0. */
static int child_with_filter(enum thread_role role, int (*act)(void))
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        char err[256];
        if (syscall_filter_setup(err, sizeof(err)) < 0)
            _exit(2);
        thread_role_enter(role);
        _exit(act());
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st), "child died by signal %d", WTERMSIG(st));
    return WEXITSTATUS(st);
}

static int open_socket(void)
{
    return socket(AF_INET, SOCK_STREAM, 0) >= 0 ? 0 : 3;
}

static int write_pipe(void)
{
    int p[2];
    if (pipe(p) < 0) /* pipe2 is not on the vCPU thread's list */
        return 4;
    return write(p[1], "x", 1) == 1 ? 0 : 5;
}

Test(control, seccomp_stops_forbidden_call)
{
    cr_assert_eq(child_with_filter(THREAD_ROLE_VCPU, open_socket), 128 + SIGSYS);
    cr_assert_eq(child_with_filter(THREAD_ROLE_IO, open_socket), 128 + SIGSYS);
}

Test(control, seccomp_allows_listed_calls)
{
    /* The migration thread's filter allows socket(); the vCPU's would trap pipe(). */
    cr_assert_eq(child_with_filter(THREAD_ROLE_MIGRATION, open_socket), 0);
    cr_assert_eq(child_with_filter(THREAD_ROLE_VCPU, write_pipe), 128 + SIGSYS);
}

static int convert_time(void)
{
    time_t t = 86400;
    struct tm tm;
    return gmtime_r(&t, &tm) && tm.tm_mday == 2 ? 0 : 7;
}

/* The RTC converts the host's time in a vCPU thread: glibc's first conversion opens
 * /etc/localtime, which the vCPU filter forbids; setup does it beforehand. */
Test(control, seccomp_time_conversion_in_vcpu)
{
    cr_assert_eq(child_with_filter(THREAD_ROLE_VCPU, convert_time), 0);
}

#endif /* no sanitizer */
