/*
 * Runs a child (nvmevm run, or the sandbox around it) and splits its console: the lines the
 * guest frames with "@@nvmevm-fio-begin@@" / "@@nvmevm-fio-end N@@" go to stdout, the rest to
 * stderr when verbose and, when the run fails, its last lines.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define FIO_BEGIN_MARK "@@nvmevm-fio-begin@@"
#define FIO_END_MARK   "@@nvmevm-fio-end "

struct fio_console {
    bool verbose;
    bool in_fio;     /* between the markers */
    bool saw_begin;  /* fio started in the guest */
    int fio_status;  /* from the end marker, -1 before */
    char line[8192]; /* the line being assembled */
    size_t len;
    char tail[40][256]; /* the last console lines outside fio's output */
    unsigned ntail;
};

/* Feeds child output (any chunking); whole lines are routed as they complete. */
void fio_console_feed(struct fio_console *fc, const char *buf, size_t n);
/* Routes a last line without a newline. */
void fio_console_flush(struct fio_console *fc);
/* Prints the remembered console lines to stderr. */
void fio_console_dump_tail(const struct fio_console *fc);

/* Runs argv[0] with argv; raw passes its output through untouched. SIGINT/SIGTERM/SIGHUP are
 * passed on to the child; timeout_s > 0 ends it (SIGTERM, then SIGKILL) and returns 124.
 * Returns the child's exit status (128+signal if it was killed). */
int fio_console_run(const char *const *argv, bool raw, bool verbose, unsigned timeout_s);
