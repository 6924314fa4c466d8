/*
 * The files `nvmevm run --fio JOB --guest-file FILE` hands the default Linux guest, packed as
 * an extra initramfs archive (see guest-images/linux/scripts/fio-job.sh for the contract):
 * /user/job.fio, each FILE as /user/BASENAME, fio options in /user/fio-args (one per line),
 * the namespace count in /user/namespaces.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "util/cpio.h"

#define GUEST_FILES_MAX    32
#define GUEST_FIO_ARGS_MAX 32

struct guest_files {
    const char *fio_job; /* NULL: no job */
    const char *files[GUEST_FILES_MAX];
    int nfiles;
    const char *fio_args[GUEST_FIO_ARGS_MAX];
    int nargs;
    int namespaces;
};

/* True when there is anything to pack. */
bool guest_files_wanted(const struct guest_files *g);
/* Reads every file and builds the archive; 0, or -1 with one line in err naming the input. */
int guest_files_pack(const struct guest_files *g, struct cpio *out, char *err, size_t errlen);
