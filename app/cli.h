/* Conventions every subcommand's option parsing shares. */
#pragma once
#include <stdnoreturn.h>

/* getopt_long returned '?' (unknown option) or ':' (missing value; optstring must start with
 * ':' and opterr be 0): one line naming the option, then "see nvmevm CMD --help", status 2. */
noreturn void cli_bad_option(const char *cmd, int c, char **argv);
