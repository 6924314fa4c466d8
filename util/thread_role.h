/*
 * Each long-lived thread announces what it is as its first act. app/ sets the hook (it
 * installs that role's seccomp filter); threads in lower layers call thread_role_enter
 * without knowing about seccomp, so the layer order holds.
 */
#pragma once

enum thread_role {
    THREAD_ROLE_MAIN,
    THREAD_ROLE_VCPU,
    THREAD_ROLE_IO,
    THREAD_ROLE_MIGRATION,
    THREAD_ROLE_COUNT,
};

void thread_role_set_hook(void (*hook)(enum thread_role role));
/* Calls the hook, if one is set. */
void thread_role_enter(enum thread_role role);
