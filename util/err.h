/*
 * One-line error reports. Functions that can refuse their input take (char *err,
 * size_t errlen) and fill it with one line a user can act on; err_set is the one way to do
 * that, and returns -1 so a refusal is a single statement: `return err_set(err, errlen, ...)`.
 * err may be NULL (the caller does not want the reason).
 */
#pragma once
#include <stddef.h>

int err_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#include <stdarg.h>
int err_vset(char *err, size_t errlen, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
