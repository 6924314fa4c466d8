#pragma once
/* "nvmevm fio [options] JOBFILE [disk ...]": see app/fio_cmd.c. */
int fio_main(int argc, char **argv);
