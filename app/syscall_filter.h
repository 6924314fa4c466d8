/*
 * seccomp allowlists, one per thread role (util/thread_role.h), all defined in
 * app/syscall_filter.c. Each thread installs its own once set up; a thread started later
 * (the migration thread) inherits the main thread's filter and adds its own. A forbidden
 * call traps: one line naming the thread and the call on stderr, then exit status 159
 * (128 + SIGSYS).
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* On unless built with a sanitizer, whose runtime makes calls no allowlist expects (e.g.
 * LeakSanitizer's ptrace at exit). */
bool syscall_filter_default_on(void);
/* Compiles every role's filter and arranges for each thread to install it as it starts
 * (call before any thread starts). NVMEVM_SECCOMP_SELFTEST=ROLE (main, vcpu, io,
 * migration) makes that thread try execve right after installing its filter, to prove the
 * filter holds. */
int syscall_filter_setup(char *err, size_t errlen);
