/* tw_testing.h -- the testing kit, part 1: a fake clock (Twisted's
 * task.Clock) and a teardown check (Twisted's dirty-reactor error).
 *
 * With a fake clock, a reactor's time moves only when the test says so:
 * delayed calls, timeouts and back-off delays are tested in microseconds,
 * deterministically.  I/O still works (the reactor still polls), and
 * tw_fake_clock_advance never blocks; drive the reactor with it rather than
 * with tw_reactor_run or tw_reactor_iterate(-1), which would wait in real
 * time for the next fake deadline.
 *
 * Ownership: a tw_fake_clock_t belongs to the caller and must outlive its
 * use by the reactor (until tw_fake_clock_detach or tw_reactor_free).
 * Reactor-thread-only.
 */
#ifndef TW_TESTING_H
#define TW_TESTING_H

#include <stdbool.h>
#include <stddef.h>

#include "tw_reactor.h"

typedef struct tw_fake_clock {
    tw_reactor_t *r;
    tw_time_t now;
} tw_fake_clock_t;

/* Make reactor r use a fake clock reading `start` (0 is fine). */
void tw_fake_clock_attach(tw_fake_clock_t *c, tw_reactor_t *r, tw_time_t start);

/* Give the reactor its real clock back. */
void tw_fake_clock_detach(tw_fake_clock_t *c);

/* Move time forward by `delta` (>= 0) and run every delayed call that is
 * due by then, in deadline order, including calls those calls schedule that
 * are due too (Twisted's Clock.advance).  Each pass is one non-blocking
 * tw_reactor_iterate: ready descriptors are dispatched and the soon calls
 * queued before the pass run (a soon call queued by a soon call waits for
 * the next advance).  Returns the
 * number of callbacks run. */
int tw_fake_clock_advance(tw_fake_clock_t *c, tw_time_t delta);

/* advance() by each step in turn (Twisted's Clock.pump). */
int tw_fake_clock_pump(tw_fake_clock_t *c, const tw_time_t *steps, size_t n);

/* The teardown check: 0 when the reactor holds nothing of the test's (no
 * active delayed call, no watched descriptor, no soon call), otherwise a
 * negative count and a description of what was left in `what` (may be NULL)
 * — turn it into a test failure.  tw_fake_clock etc. do not count. */
int tw_reactor_check_clean(tw_reactor_t *r, char *what, size_t len);

#endif
