/* "nvmevm migrate": asks a running nvmevm (through its control socket) to migrate, shows
 * live progress, and ends with a summary. */
#include <errno.h>
#include <json-c/json.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app/cli.h"
#include "app/control.h"
#include "app/migrate_client.h"
#include "migrate/tcp.h"
#include "util/log.h"
#include "util/size.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: nvmevm migrate tcp:HOST:PORT [options]\n"
               "       nvmevm migrate --cancel [--vm NAME | --socket PATH]\n"
               "\n"
               "Live-migrates a running nvmevm to a destination started with\n"
               "'nvmevm run --incoming tcp:HOST:PORT' (same --mem, --cpus and disks).\n"
               "\n"
               "  --vm NAME          the VM (its --name); needed when several run\n"
               "  --socket PATH      its control socket instead\n"
               "  --downtime-ms N    switch over once the rest fits in N ms (default 300)\n"
               "  --max-bandwidth B  limit the pre-copy rate, bytes/s with K/M/G; MiB/s without\n"
               "                     a suffix, decimals allowed (default none)\n"
               "  --timeout-s N      give up after N seconds (default: never)\n"
               "  --on-timeout MODE  cancel (default: the source keeps running) or force\n"
               "                     (switch over anyway, downtime may exceed the budget)\n"
               "  --auto-converge    throttle the guest's vCPUs if it dirties memory faster\n"
               "                     than it can be sent\n"
               "  --tls-psk FILE     over TLS with a pre-shared key (psktool's identity:hexkey),\n"
               "                     the destination's --tls-psk file\n"
               "  --tls-cert FILE --tls-key FILE --tls-ca FILE\n"
               "                     over TLS with certificates: the source's client\n"
               "                     certificate, its key, the CA the destination's is signed by\n"
               "  --tls-hostname H   the name the destination's certificate must carry\n"
               "                     (default: the host in tcp:HOST:PORT)\n"
               "  --migrate-timeout N  fail when the destination is silent (or stops reading)\n"
               "                     for N s (default 30)\n"
               "  --json             print the progress and the summary as JSON lines\n"
               "  --cancel           stop a migration in flight (the source keeps running)\n");
}

/* A whole non-negative decimal number no larger than max, or a one-line refusal naming
 * the option and its text. */
static uint64_t parse_count(const char *opt, const char *s, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || s[0] < '0' || s[0] > '9' || v > max)
        die("%s %s: expected a whole number from 0 to %llu", opt, s, (unsigned long long)max);
    return v;
}

/* Members of one reply line; a missing or unparsable one reads as 0 or "". */
static double field(const char *js, const char *key)
{
    json_object *o = json_tokener_parse(js), *v;
    double r = o && json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0;
    json_object_put(o);
    return r;
}

/* A failed reply's reason: "error":{"class":...,"desc":...} (or a plain string). */
static void reply_error(const char *js, char *out, size_t len)
{
    json_object *o = json_tokener_parse(js), *e, *d;
    const char *s = "";
    if (o && json_object_object_get_ex(o, "error", &e)) {
        if (json_object_is_type(e, json_type_string))
            s = json_object_get_string(e);
        else if (json_object_object_get_ex(e, "desc", &d) &&
                 json_object_is_type(d, json_type_string))
            s = json_object_get_string(d);
    }
    snprintf(out, len, "%s", s);
    json_object_put(o);
}

static void field_str(const char *js, const char *key, char *out, size_t len)
{
    json_object *o = json_tokener_parse(js), *v;
    snprintf(out, len, "%s",
             o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
                 ? json_object_get_string(v)
                 : "");
    json_object_put(o);
}

static void progress_line(const char *js, bool tty)
{
    fprintf(stderr,
            "%smigrate: pass %.0f, sent %.0f MiB, remaining %.0f MiB, dirty %.0f MiB/s, "
            "%.0f MiB/s, expected downtime %.0f ms%s%s",
            tty ? "\r\033[K" : "", field(js, "pass"), field(js, "bytes_sent") / 1048576.0,
            field(js, "ram_remaining") / 1048576.0, field(js, "dirty_rate") / 1048576.0,
            field(js, "bandwidth") / 1048576.0, field(js, "expected_downtime_ms"),
            field(js, "throttle_pct") > 0 ? ", throttled" : "", tty ? "" : "\n");
}

/* The source nvmevm opens the files from its own directory: hand it absolute paths. */
static const char *absolute(const char *opt, const char *path)
{
    char *r = realpath(path, NULL);
    if (!r)
        die_errno("--%s %s", opt, path);
    return r; /* lives until the process ends */
}

int migrate_client_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"vm", required_argument, NULL, 'n'},
        {"socket", required_argument, NULL, 's'},
        {"downtime-ms", required_argument, NULL, 'd'},
        {"max-bandwidth", required_argument, NULL, 'b'},
        {"timeout-s", required_argument, NULL, 't'},
        {"on-timeout", required_argument, NULL, 'o'},
        {"auto-converge", no_argument, NULL, 'a'},
        {"json", no_argument, NULL, 'j'},
        {"cancel", no_argument, NULL, 'c'},
        {"tls-psk", required_argument, NULL, 1},
        {"tls-cert", required_argument, NULL, 2},
        {"tls-key", required_argument, NULL, 3},
        {"tls-ca", required_argument, NULL, 4},
        {"tls-hostname", required_argument, NULL, 5},
        {"migrate-timeout", required_argument, NULL, 6},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    static const char *const tls_keys[] = {NULL,      "tls_psk", "tls_cert",
                                           "tls_key", "tls_ca",  "tls_hostname"};
    static const char *tls[6]; /* static: the realpath() copies stay reachable to the end */
    unsigned io_timeout = 0;
    char path[108] = "";
    unsigned downtime = 300, timeout = 0;
    uint64_t bw = 0;
    bool force = false, autoconv = false, json = false, cancel = false;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (o) {
        case 'n': {
            char err[256];
            if (control_default_path_err(optarg, path, sizeof(path), err, sizeof(err)) < 0)
                die("--vm: %s", err);
            break;
        }
        case 's':
            snprintf(path, sizeof(path), "%s", optarg);
            break;
        case 'd':
            downtime = (unsigned)parse_count("--downtime-ms", optarg, UINT32_MAX);
            break;
        case 't':
            timeout = (unsigned)parse_count("--timeout-s", optarg, UINT32_MAX);
            break;
        case 'b':
            if (parse_size_unit(optarg, 20, &bw) < 0 || bw == 0)
                die("--max-bandwidth %s: expected bytes/s like 500M (MiB/s without a suffix)",
                    optarg);
            break;
        case 'o':
            if (strcmp(optarg, "force") && strcmp(optarg, "cancel"))
                die("--on-timeout %s: expected cancel or force", optarg);
            force = strcmp(optarg, "force") == 0;
            break;
        case 'a':
            autoconv = true;
            break;
        case 'j':
            json = true;
            break;
        case 'c':
            cancel = true;
            break;
        case 1:
        case 2:
        case 3:
        case 4:
            tls[o] = absolute(opts[o + 8].name, optarg);
            break;
        case 5:
            tls[o] = optarg;
            break;
        case 6: {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || !*optarg || v < 1 || v > 86400)
                die("--migrate-timeout %s: expected seconds from 1 to 86400", optarg);
            io_timeout = (unsigned)v;
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            cli_bad_option("migrate", o, argv);
        }
    }
    char rep[1024], err[300];
    if (!cancel && optind != argc - 1)
        die("migrate: expected the destination, e.g. tcp:10.0.0.2:4444");
    if (cancel && optind != argc)
        die("migrate --cancel: takes no destination");
    /* Everything is checked before the VM is asked: nothing half-understood is sent. */
    if (!cancel && tcp_check_uri(argv[optind], err, sizeof(err)) < 0)
        die("migrate: %s", err);
    if (!*path && control_find_lone(path, sizeof(path), err, sizeof(err)) < 0)
        die("migrate: %s", err);
    if (cancel) {
        if (control_request(path, "{\"cmd\":\"migrate-cancel\"}\n", rep, sizeof(rep)) < 0)
            control_request_die(path);
        if (!control_reply_ok(rep)) {
            reply_error(rep, err, sizeof(err));
            die("migrate --cancel: %s", err);
        }
        fprintf(stderr, "nvmevm: migration cancelled\n");
        return 0;
    }
    json_object *req = json_object_new_object();
    json_object_object_add(req, "cmd", json_object_new_string("migrate"));
    json_object_object_add(req, "uri", json_object_new_string(argv[optind]));
    json_object_object_add(req, "downtime_ms", json_object_new_int64(downtime));
    json_object_object_add(req, "max_bandwidth", json_object_new_uint64(bw));
    json_object_object_add(req, "timeout_s", json_object_new_int64(timeout));
    json_object_object_add(req, "force", json_object_new_boolean(force));
    json_object_object_add(req, "auto_converge", json_object_new_boolean(autoconv));
    for (int i = 1; i < 6; i++)
        if (tls[i])
            json_object_object_add(req, tls_keys[i], json_object_new_string(tls[i]));
    if (io_timeout)
        json_object_object_add(req, "io_timeout_s", json_object_new_int64(io_timeout));
    int r = control_request_obj(path, req, rep, sizeof(rep));
    json_object_put(req);
    if (r < 0)
        control_request_die(path);
    if (!control_reply_ok(rep)) {
        reply_error(rep, err, sizeof(err));
        die("migrate: %s", err);
    }
    bool tty = isatty(STDERR_FILENO) && !json;
    char state[32] = "active";
    double last_pass = -1;
    while (strcmp(state, "active") == 0) {
        usleep(200 * 1000);
        if (control_request(path, "{\"cmd\":\"migrate-status\"}\n", rep, sizeof(rep)) < 0)
            die("migrate: the source nvmevm (%s) ended before it reported a result (a source "
                "that handed its disks over but got no confirmation stops itself: the guest "
                "runs on the destination if it says so)",
                path);
        field_str(rep, "migration", state, sizeof(state));
        if (json)
            fputs(rep, stdout);
        else if (strcmp(state, "active") == 0 && (tty || field(rep, "pass") != last_pass))
            progress_line(rep, tty); /* a log gets one line per pass, a terminal a live one */
        last_pass = field(rep, "pass");
    }
    if (tty)
        fputc('\n', stderr);
    if (strcmp(state, "completed") != 0) {
        char e[256];
        field_str(rep, "error", e, sizeof(e));
        fprintf(stderr, "nvmevm: migration %s: %s; the guest keeps running on the source\n", state,
                e);
        return 1;
    }
    if (!json)
        printf("migrated to %s: total %.2f s, downtime %.1f ms, %.1f MiB sent, "
               "%.0f zero pages skipped\n",
               argv[optind], field(rep, "total_ms") / 1e3, field(rep, "downtime_ms"),
               field(rep, "bytes_sent") / 1048576.0, field(rep, "zero_pages"));
    return 0;
}
