/* testing.c -- the fake clock and the teardown check (tw_testing.h). */
#define _GNU_SOURCE
#include <stdio.h>

#include "internal.h"
#include "tw_testing.h"

static tw_time_t fake_clock_read(void *arg)
{
    return ((tw_fake_clock_t *)arg)->now;
}

void tw_fake_clock_attach(tw_fake_clock_t *c, tw_reactor_t *r, tw_time_t start)
{
    c->r = r;
    c->now = start;
    tw_reactor_set_clock(r, fake_clock_read, c);
}

void tw_fake_clock_detach(tw_fake_clock_t *c)
{
    tw_reactor_set_clock(c->r, NULL, NULL);
}

int tw_fake_clock_advance(tw_fake_clock_t *c, tw_time_t delta)
{
    if (delta > 0)
        c->now = delta > TW_TIME_MAX - c->now ? TW_TIME_MAX : c->now + delta;
    int ran = 0;
    /* One pass runs what was due when it began; calls scheduled meanwhile
     * that are due too need another pass.  Each pass polls I/O without
     * blocking.  (As with Twisted's Clock, a call that keeps rescheduling
     * itself with no delay keeps this going.) */
    do {
        int n = tw_reactor_iterate(c->r, 0);
        if (n < 0)
            return n;
        ran += n;
    } while (tw_reactor_next_timer(c->r) <= c->now);
    return ran;
}

int tw_fake_clock_pump(tw_fake_clock_t *c, const tw_time_t *steps, size_t n)
{
    int ran = 0;
    for (size_t i = 0; i < n; i++) {
        int k = tw_fake_clock_advance(c, steps[i]);
        if (k < 0)
            return k;
        ran += k;
    }
    return ran;
}

int tw_reactor_check_clean(tw_reactor_t *r, char *what, size_t len)
{
    int timers = tw_reactor_timer_count(r), fds = tw_reactor_watched_count(r);
    int soon = (int)r->soon.n;
    int left = timers + fds + soon;
    if (what && len)
        snprintf(what, len, left ? "reactor unclean: %d delayed calls, %d watched "
                                   "descriptors, %d soon calls left behind" : "clean",
                 timers, fds, soon);
    return -left;
}
