#pragma once
/* "nvmevm migrate ..." (see its --help). */
int migrate_client_main(int argc, char **argv);
