/* The event queue (util/events.h): order, timestamps, a bounded ring that drops the oldest
 * and says how many, posting from several threads at once. */
#include <criterion/criterion.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/events.h"

static void setup(void)
{
    cr_assert_eq(events_init(), 0);
}

static void teardown(void)
{
    events_shutdown();
}

TestSuite(events, .init = setup, .fini = teardown);

static bool readable(void)
{
    struct pollfd p = {.fd = events_fd(), .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

Test(events, nothing_before_init_or_after_shutdown)
{
    events_shutdown();
    events_post("RESET", "{}");
    cr_assert_eq(events_fd(), -1);
    cr_assert_null(events_take());
}

Test(events, lines_in_order_with_timestamps)
{
    cr_assert(!readable());
    events_post("RESET", "{\"source\":\"i8042\"}");
    events_postf("SHUTDOWN", "{\"status\":%d}", 3);
    cr_assert(readable());
    char *a = events_take(), *b = events_take();
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    long long sec;
    long usec;
    cr_assert_eq(sscanf(a,
                        "{\"event\":\"RESET\",\"data\":{\"source\":\"i8042\"},\"timestamp\":{"
                        "\"seconds\":%lld,\"microseconds\":%ld}}",
                        &sec, &usec),
                 2, "%s", a);
    cr_assert(sec > 1000000000 && usec >= 0 && usec < 1000000);
    cr_assert(strstr(b, "{\"event\":\"SHUTDOWN\",\"data\":{\"status\":3},") == b, "%s", b);
    free(a);
    free(b);
    cr_assert_null(events_take());
    cr_assert(!readable());
}

Test(events, full_queue_drops_the_oldest_and_reports_it)
{
    for (int i = 0; i < EVENTS_MAX + 10; i++)
        events_postf("N", "{\"i\":%d}", i);
    cr_assert_eq(events_dropped(), 10);
    char *line = events_take();
    cr_assert(strstr(line, "{\"event\":\"EVENTS_DROPPED\",\"data\":{\"count\":10},") == line, "%s",
              line);
    free(line);
    for (int i = 10; i < EVENTS_MAX + 10; i++) {
        char want[32];
        line = events_take();
        cr_assert_not_null(line, "event %d", i);
        snprintf(want, sizeof(want), "{\"i\":%d}", i);
        cr_assert(strstr(line, want), "want %s: %s", want, line);
        free(line);
    }
    cr_assert_null(events_take());
    cr_assert_eq(events_dropped(), 10); /* the total stays */
}

Test(events, oversized_data_keeps_a_valid_line)
{
    char big[EVENTS_MAX_LINE + 100];
    memset(big, 'x', sizeof(big));
    big[0] = '"', big[sizeof(big) - 2] = '"', big[sizeof(big) - 1] = '\0';
    events_post("BIG", big);
    char *line = events_take();
    cr_assert(strstr(line, "{\"event\":\"BIG\",\"data\":{},\"timestamp\":") == line, "%.80s", line);
    cr_assert(strlen(line) <= EVENTS_MAX_LINE);
    free(line);
}

static void *poster(void *arg)
{
    for (int i = 0; i < 100; i++)
        events_postf("T", "{\"t\":%d,\"i\":%d}", (int)(long)arg, i);
    return NULL;
}

Test(events, concurrent_posters_lose_nothing_that_fits)
{
    pthread_t t[2];
    for (long i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, poster, (void *)i);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    int seen[2] = {0, 0};
    char *line;
    while ((line = events_take()) != NULL) {
        int th, i;
        cr_assert_eq(sscanf(strstr(line, "\"data\":"), "\"data\":{\"t\":%d,\"i\":%d}", &th, &i), 2);
        cr_assert_eq(i, seen[th], "thread %d: event %d after %d", th, i, seen[th]);
        seen[th]++;
        free(line);
    }
    cr_assert_eq(seen[0] + seen[1], 200);
}
