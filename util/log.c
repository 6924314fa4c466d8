#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void (*exit_hook)(void);

void log_set_exit_hook(void (*hook)(void))
{
    exit_hook = hook;
}

static void vmsg(const char *fmt, va_list ap, int err)
{
    char buf[512];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    if (err)
        fprintf(stderr, "nvmevm: %s: %s\n", buf, strerror(err));
    else
        fprintf(stderr, "nvmevm: %s\n", buf);
}

noreturn void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(fmt, ap, 0);
    va_end(ap);
    if (exit_hook)
        exit_hook();
    exit(1);
}

noreturn void die_errno(const char *fmt, ...)
{
    int err = errno;
    va_list ap;
    va_start(ap, fmt);
    vmsg(fmt, ap, err);
    va_end(ap);
    if (exit_hook)
        exit_hook();
    exit(1);
}

void warn_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(fmt, ap, 0);
    va_end(ap);
}

void warn_errno(const char *fmt, ...)
{
    int err = errno;
    va_list ap;
    va_start(ap, fmt);
    vmsg(fmt, ap, err);
    va_end(ap);
}

void debug_msg(const char *fmt, ...)
{
    static int enabled = -1;
    if (enabled < 0)
        enabled = getenv("NVMEVM_DEBUG") != NULL;
    if (!enabled)
        return;
    va_list ap;
    va_start(ap, fmt);
    vmsg(fmt, ap, 0);
    va_end(ap);
}
