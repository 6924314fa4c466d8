#include "app/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

void cli_bad_option(const char *cmd, int c, char **argv)
{
    /* optind has moved past the offending word (for "--opt", the word itself). */
    const char *word = argv[optind - 1];
    char shortopt[3] = {'-', (char)optopt, '\0'};
    if (optopt && word[0] == '-' && word[1] != '-')
        word = shortopt;
    if (c == ':')
        fprintf(stderr, "nvmevm %s: option %s needs a value (see nvmevm %s --help)\n", cmd, word,
                cmd);
    else
        fprintf(stderr, "nvmevm %s: unknown option %s (see nvmevm %s --help)\n", cmd, word, cmd);
    exit(2);
}
