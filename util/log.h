/* One-line diagnostics: "nvmevm: <what>: <cause>". */
#pragma once
#include <stdnoreturn.h>

/* Print "nvmevm: msg" and exit(1). */
noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same, with ": strerror(errno)" appended. */
noreturn void die_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warn_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warn_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Only printed when NVMEVM_DEBUG is set in the environment. */
void debug_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Hook run by die() before exiting (restores the terminal, for example). */
void log_set_exit_hook(void (*hook)(void));
