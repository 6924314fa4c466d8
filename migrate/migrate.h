/*
 * Live migration, pre-copy over TCP. The source runs a migration thread beside the
 * running guest; the destination (nvmevm run --incoming tcp:HOST:PORT) receives into a
 * fresh VM before its vCPUs ever run. The shared disks' locks are the arbiter: the
 * destination runs only once it holds them, the source resumes only if it re-takes them,
 * so two running copies of one guest are impossible.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migrate/tls.h"

struct vm;

struct mig_params {
    char uri[256];
    unsigned downtime_ms;   /* switch over when remaining RAM / bandwidth <= this */
    uint64_t max_bandwidth; /* bytes/s, 0 = unlimited */
    unsigned timeout_s;     /* give up (cancel) or force the switchover after this */
    bool force_on_timeout;
    bool auto_converge;      /* throttle vCPUs when the guest dirties faster than we send */
    unsigned io_timeout_s;   /* a destination silent this long fails it (0: default) */
    struct mig_tls_opts tls; /* all empty: plain TCP */
};

enum mig_state { MIG_NONE, MIG_ACTIVE, MIG_COMPLETED, MIG_FAILED, MIG_CANCELLED };

struct migration;

/* Starts migrating vm in the background; NULL with a reason. The caller owns the handle
 * (one migration at a time: it checks migrate_state first) and frees it with migrate_free. */
struct migration *migrate_start(struct vm *vm, const struct mig_params *p, char *err,
                                size_t errlen);
/* MIG_NONE for NULL; MIG_COMPLETED once the guest was handed over. */
enum mig_state migrate_state(struct migration *m);
void migrate_cancel(struct migration *m);
struct mig_progress {
    enum mig_state state;
    unsigned pass;
    uint64_t ram_total, ram_remaining, bytes_sent, zero_pages;
    double bandwidth, dirty_rate, expected_downtime_ms; /* bytes/s, bytes/s, ms */
    unsigned throttle_pct;
    double total_ms, downtime_ms;
    char error[256];
};

/* A consistent snapshot of the migration's progress or result (m NULL: state MIG_NONE). */
void migrate_progress(struct migration *m, struct mig_progress *out);
const char *migrate_state_name(enum mig_state s);
/* Cancels if still running, joins the migration thread and frees m (NULL: nothing). */
void migrate_free(struct migration *m);

/*
 * Destination: a thread accepts the source on lfd (listening on uri: tcp_listen_uri),
 * receives and loads everything into vm (created with the same --mem/--cpus/disks, vCPUs
 * not started) and takes the disk locks, while the caller's main loop keeps serving. tls
 * (NULL: plain TCP; the caller frees it after finish) comes from mig_tls_new(..., true,
 * ...). A connection refused before anything was loaded (a stranger, garbage, a failed
 * handshake, another configuration) is logged and the wait goes on, until wait_timeout_s
 * (0: forever). io_timeout_s: a source silent this long fails its connection (0: default).
 * Takes lfd (closed at the end). NULL with a reason.
 */
struct mig_incoming;
struct mig_incoming *migrate_incoming_start(struct vm *vm, int lfd, const char *uri,
                                            struct mig_tls *tls, unsigned io_timeout_s,
                                            unsigned wait_timeout_s, char *err, size_t errlen);
/* Readable once the thread has finished (migrate_incoming_finish will not block). */
int migrate_incoming_fd(const struct mig_incoming *in);
/* "waiting" or "receiving". */
const char *migrate_incoming_state(struct mig_incoming *in);
/* Stops waiting (or receiving) at once; finish then reports it cancelled. */
void migrate_incoming_cancel(struct mig_incoming *in);
/* Joins and frees in: 0 when the guest may run here, -1 with a reason. */
int migrate_incoming_finish(struct mig_incoming *in, char *err, size_t errlen);
