/*
 * Asynchronous events for the control socket (migration state changes, guest reset and
 * exit, NVMe controller fatal status, disk errors). They arise on vCPU, I/O and migration
 * threads; the main loop sends them to clients that asked with "watch". This queue is the
 * meeting point, here in util/ so that emu/, kvm/ and migrate/ can post without knowing
 * about app/.
 *
 * Bounded: when the consumer falls behind, the oldest events are dropped and counted, and
 * the next take reports how many (an EVENTS_DROPPED event). Before events_init() (unit
 * tests, fuzzers) posting does nothing.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* Events kept while nobody takes them; one more drops the oldest. */
#define EVENTS_MAX 256
/* Longest event line (JSON, without its newline); a longer data object is replaced by {}. */
#define EVENTS_MAX_LINE 1024

/* Creates the queue and its eventfd; 0, or -1 with errno. Safe to call twice. */
int events_init(void);
/* The eventfd the main loop polls: readable while events wait. -1 before events_init. */
int events_fd(void);
/*
 * Posts one event from any thread: event is a constant name ("MIGRATION"), data_json a JSON
 * object's text built by the caller from numbers and fixed names (text from outside must
 * be serialised by json-c first). The line gets a wall-clock timestamp, QMP's
 * {"seconds":S,"microseconds":U}.
 */
void events_post(const char *event, const char *data_json);
/* The same with data formatted like printf. */
void events_postf(const char *event, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Takes the oldest waiting event as one line (malloc'd, no newline; the caller frees),
 * NULL when none waits. After drops, the first line taken reports them. */
char *events_take(void);
/* Events dropped since events_init because the queue was full. */
unsigned long events_dropped(void);
/* Empties the queue and closes the eventfd (tests). */
void events_shutdown(void);
