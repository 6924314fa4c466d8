/* The bounded event queue (util/events.h): a ring of lines under one mutex, an eventfd to
 * wake the main loop, drop-oldest with a counter when full. */
#include "util/events.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char *ring[EVENTS_MAX];
static unsigned head, count;
static int efd = -1;
static unsigned long dropped_total, dropped_unreported;

int events_init(void)
{
    pthread_mutex_lock(&lock);
    int r = 0;
    if (efd < 0) {
        efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        r = efd < 0 ? -1 : 0;
    }
    pthread_mutex_unlock(&lock);
    return r;
}

int events_fd(void)
{
    return efd;
}

/* The whole line, so the consumer (the main thread) only copies bytes. */
static char *make_line(const char *event, const char *data_json)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    char *line = malloc(EVENTS_MAX_LINE + 1);
    if (!line)
        return NULL;
    int n = snprintf(line, EVENTS_MAX_LINE + 1,
                     "{\"event\":\"%s\",\"data\":%s,\"timestamp\":{\"seconds\":%lld,"
                     "\"microseconds\":%ld}}",
                     event, data_json, (long long)tv.tv_sec, (long)tv.tv_usec);
    if (n < 0 || n > EVENTS_MAX_LINE) /* cut short would not be JSON: keep the name and time */
        snprintf(line, EVENTS_MAX_LINE + 1,
                 "{\"event\":\"%s\",\"data\":{},\"timestamp\":{\"seconds\":%lld,"
                 "\"microseconds\":%ld}}",
                 event, (long long)tv.tv_sec, (long)tv.tv_usec);
    return line;
}

static void wake(void)
{
    uint64_t one = 1;
    if (write(efd, &one, sizeof(one)) < 0) {
        /* the counter is full: the main loop is awake anyway */
    }
}

void events_post(const char *event, const char *data_json)
{
    if (efd < 0)
        return;
    char *line = make_line(event, data_json);
    pthread_mutex_lock(&lock);
    if (!line) {
        dropped_total++, dropped_unreported++;
    } else {
        if (count == EVENTS_MAX) {
            free(ring[head]);
            head = (head + 1) % EVENTS_MAX;
            count--;
            dropped_total++, dropped_unreported++;
        }
        ring[(head + count) % EVENTS_MAX] = line;
        count++;
    }
    if (efd >= 0)
        wake();
    pthread_mutex_unlock(&lock);
}

void events_postf(const char *event, const char *fmt, ...)
{
    if (efd < 0)
        return;
    char data[EVENTS_MAX_LINE];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(data, sizeof(data), fmt, ap);
    va_end(ap);
    events_post(event, n < 0 || (size_t)n >= sizeof(data) ? "{}" : data);
}

char *events_take(void)
{
    char *line = NULL;
    pthread_mutex_lock(&lock);
    if (efd >= 0) {
        uint64_t v;
        if (read(efd, &v, sizeof(v)) < 0) {
            /* nothing signalled: the ring says what waits */
        }
    }
    if (dropped_unreported) {
        char data[64];
        snprintf(data, sizeof(data), "{\"count\":%lu}", dropped_unreported);
        if ((line = make_line("EVENTS_DROPPED", data)) != NULL)
            dropped_unreported = 0;
    } else if (count) {
        line = ring[head];
        ring[head] = NULL;
        head = (head + 1) % EVENTS_MAX;
        count--;
    }
    if (line && (count || dropped_unreported) && efd >= 0)
        wake(); /* more waits: keep the eventfd readable */
    pthread_mutex_unlock(&lock);
    return line;
}

unsigned long events_dropped(void)
{
    pthread_mutex_lock(&lock);
    unsigned long n = dropped_total;
    pthread_mutex_unlock(&lock);
    return n;
}

void events_shutdown(void)
{
    pthread_mutex_lock(&lock);
    while (count) {
        free(ring[head]);
        ring[head] = NULL;
        head = (head + 1) % EVENTS_MAX;
        count--;
    }
    head = 0;
    dropped_total = dropped_unreported = 0;
    if (efd >= 0)
        close(efd);
    efd = -1;
    pthread_mutex_unlock(&lock);
}
