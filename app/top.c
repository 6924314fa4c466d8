/*
 * Clients of the control socket's `stats` command: `nvmevm ctl stats [--json]` (totals
 * since the controller started, as a table) and `nvmevm top` (an iostat-like view
 * refreshed every interval). top keeps one connection open, so each reply's "interval"
 * rates cover exactly the time since its previous request. On a terminal each frame
 * replaces the last; otherwise frames are plain lines separated by a blank line, so
 * scripts and tests can read them.
 */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "app/cli.h"
#include "app/control.h"
#include "app/control_stats.h"
#include "util/err.h"
#include "util/log.h"

#define MAX_REPLY (4u << 20) /* a reply is ~1 KiB per queue: far below this */

static const char stats_req[] = "{\"cmd\":\"stats\"}\n";

/* Sends one stats request on rd's connection and returns its parsed reply (NULL, errno
 * set); the greeting and any event lines are skipped, each wait has the client timeout. */
static json_object *query(struct control_reader *rd)
{
    char *line = control_exchange(rd, stats_req, MAX_REPLY);
    if (!line)
        return NULL;
    json_object *o = json_tokener_parse(line);
    free(line);
    if (!o)
        errno = EBADMSG;
    return o;
}

/* A connection to path, or one line and exit. */
static struct control_reader *open_reader(const char *path)
{
    struct control_reader *rd = calloc(1, sizeof(*rd));
    if (!rd)
        die("out of memory");
    if ((rd->fd = control_connect(path)) < 0)
        control_request_die(path);
    return rd;
}

static void close_reader(struct control_reader *rd)
{
    close(rd->fd);
    free(rd);
}

/* A number at a dotted path ("interval.latency_us.p99"); 0 when absent. */
static double num(json_object *o, const char *path)
{
    char key[64];
    while (o && *path) {
        size_t len = strcspn(path, ".");
        if (len >= sizeof(key))
            return 0;
        memcpy(key, path, len);
        key[len] = '\0';
        if (!json_object_object_get_ex(o, key, &o))
            return 0;
        path += len + (path[len] == '.');
    }
    return o ? json_object_get_double(o) : 0;
}

/* The reply's error line, or NULL when it says ok. */
static const char *reply_error(json_object *r)
{
    json_object *ok, *e;
    if (json_object_object_get_ex(r, "ok", &ok) && json_object_get_boolean(ok))
        return NULL;
    if (json_object_object_get_ex(r, "error", &e)) {
        json_object *d;
        if (json_object_object_get_ex(e, "desc", &d)) /* {"class":...,"desc":...} */
            return json_object_get_string(d);
        return json_object_get_string(e);
    }
    return "unexpected reply";
}

typedef void (*row_fn)(const char *name, json_object *dev);

/* Calls row for every namespace ("ns1") and queue ("q1") of the reply. */
static void each_dev(json_object *r, row_fn row)
{
    static const struct {
        const char *list, *id, *prefix;
    } kinds[] = {{"namespaces", "nsid", "ns"}, {"queues", "qid", "q"}};
    for (size_t k = 0; k < 2; k++) {
        json_object *a;
        if (!json_object_object_get_ex(r, kinds[k].list, &a) ||
            !json_object_is_type(a, json_type_array))
            continue;
        for (size_t i = 0; i < json_object_array_length(a); i++) {
            json_object *d = json_object_array_get_idx(a, i);
            char name[32];
            snprintf(name, sizeof(name), "%s%.0f", kinds[k].prefix, num(d, kinds[k].id));
            row(name, d);
        }
    }
}

static void totals_row(const char *name, json_object *d)
{
    printf("%-5s %10.0f %10.0f %7.0f %6.0f %10.1f %10.1f %5.0f %5.0f %8.1f %8.1f %8.1f %8.1f "
           "%9.1f\n",
           name, num(d, "reads"), num(d, "writes"), num(d, "others"), num(d, "errors"),
           num(d, "bytes_read") / 1e6, num(d, "bytes_written") / 1e6, num(d, "depth"),
           num(d, "max_depth"), num(d, "latency_us.avg"), num(d, "latency_us.p50"),
           num(d, "latency_us.p99"), num(d, "latency_us.p99_9"), num(d, "latency_us.max"));
}

static void rates_row(const char *name, json_object *d)
{
    printf("%-5s %10.1f %10.1f %9.2f %9.2f %8.1f %8.1f %6.2f %5.0f\n", name,
           num(d, "interval.read_iops"), num(d, "interval.write_iops"),
           num(d, "interval.read_bps") / 1e6, num(d, "interval.write_bps") / 1e6,
           num(d, "interval.latency_us.avg"), num(d, "interval.latency_us.p99"),
           num(d, "interval.avg_depth"), num(d, "depth"));
}

int stats_client_print(const char *path, bool json)
{
    struct control_reader *rd = open_reader(path);
    json_object *r = query(rd);
    int e = errno;
    close_reader(rd);
    if (!r) {
        errno = e;
        control_request_die(path);
    }
    const char *err = reply_error(r);
    if (json) {
        puts(json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN |
                                                   JSON_C_TO_STRING_NOSLASHESCAPE));
    } else if (!err) {
        printf("uptime %.1f s%s\n", num(r, "uptime_s"),
               json_object_get_boolean(json_object_object_get(r, "enabled"))
                   ? ""
                   : " (statistics are off: nvmevm run --stats=off)");
        printf("%-5s %10s %10s %7s %6s %10s %10s %5s %5s %8s %8s %8s %8s %9s\n", "dev", "reads",
               "writes", "others", "errors", "read MB", "written MB", "depth", "max", "avg us",
               "p50 us", "p99 us", "p99.9 us", "max us");
        each_dev(r, totals_row);
    }
    if (err && !json)
        fprintf(stderr, "nvmevm: %s: %s\n", path, err);
    json_object_put(r);
    return err ? 1 : 0;
}

static void usage_top(FILE *f)
{
    fprintf(f, "usage: nvmevm top [--vm NAME | --socket PATH] [--interval S] [--count N]\n"
               "Shows a running nvmevm's NVMe I/O every S seconds (default 1), per namespace\n"
               "(ns1...) and per I/O queue (q1...): reads and writes per second, MB/s,\n"
               "average and 99th percentile latency from fetch to completion, the average\n"
               "depth over the interval (aqu) and the depth in flight now. The first frame covers "
               "the time since the VM started. It stops\n"
               "after N frames (default: never). On a terminal each frame replaces the last;\n"
               "otherwise frames are printed one after another, separated by a blank line.\n");
}

int top_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'},   {"vm", required_argument, NULL, 'n'},
        {"interval", required_argument, NULL, 'i'}, {"count", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},           {0, 0, 0, 0},
    };
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)] = "", *end;
    double interval = 1.0;
    long count = -1;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":s:n:i:c:h", opts, NULL)) != -1) {
        switch (o) {
        case 's':
        case 'n':
            control_target_arg(o, optarg, path, sizeof(path));
            break;
        case 'i':
            errno = 0;
            interval = strtod(optarg, &end);
            if (errno || end == optarg || *end || !isfinite(interval) || interval < 0.05 ||
                interval > 86400)
                die("--interval %s: expected seconds between 0.05 and 86400", optarg);
            break;
        case 'c':
            errno = 0;
            count = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || count < 1)
                die("--count %s: expected a positive number of frames", optarg);
            break;
        case 'h':
            usage_top(stdout);
            return 0;
        default:
            cli_bad_option("top", o, argv);
        }
    }
    if (optind != argc)
        die("top: unexpected argument '%s'", argv[optind]);
    char err[300];
    if (!*path && control_find_lone(path, sizeof(path), err, sizeof(err)) < 0)
        die("top: %s", err);
    struct control_reader *rd = open_reader(path);
    bool tty = isatty(STDOUT_FILENO);
    for (long frame = 0; count < 0 || frame < count; frame++) {
        if (frame) {
            struct timespec ts = {(time_t)interval,
                                  (long)((interval - (double)(time_t)interval) * 1e9)};
            while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
        }
        json_object *r = query(rd);
        if (!r && errno == ECONNRESET)
            die("%s: the VM stopped", path);
        if (!r)
            control_request_die(path);
        const char *e = reply_error(r);
        if (e)
            die("%s: %s", path, e);
        if (tty)
            fputs("\033[H\033[2J", stdout);
        else if (frame)
            putchar('\n');
        printf("nvmevm top  %s  uptime %.1f s  interval %.2f s\n", path, num(r, "uptime_s"),
               num(r, "interval_s"));
        printf("%-5s %10s %10s %9s %9s %8s %8s %6s %5s\n", "dev", "r/s", "w/s", "rMB/s", "wMB/s",
               "avg us", "p99 us", "aqu", "depth");
        each_dev(r, rates_row);
        fflush(stdout);
        json_object_put(r);
    }
    close_reader(rd);
    return 0;
}
