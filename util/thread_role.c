#include "util/thread_role.h"

#include <stddef.h>

static void (*role_hook)(enum thread_role);

void thread_role_set_hook(void (*hook)(enum thread_role role))
{
    role_hook = hook;
}

void thread_role_enter(enum thread_role role)
{
    if (role_hook)
        role_hook(role);
}
