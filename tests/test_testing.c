/* test_testing.c -- the testing kit: fake clock and teardown check. */
#define _GNU_SOURCE
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tw_testing.h>

typedef struct log {
    int n;
    int order[16];
    tw_time_t at[16];
    tw_fake_clock_t *clock;
} log_t;

static log_t *log_g;

static void record_cb(tw_timer_t *t, void *arg)
{
    (void)t;
    log_t *l = log_g;
    l->order[l->n] = (int)(intptr_t)arg;
    l->at[l->n] = l->clock->now;
    l->n++;
}

static void reschedule_cb(tw_timer_t *t, void *arg)
{
    record_cb(t, arg);
    if ((intptr_t)arg < 3) /* as Twisted's Clock: "now" is already the advanced time */
        tw_reactor_call_later(log_g->clock->r, 0, reschedule_cb, (void *)((intptr_t)arg + 1));
}

static void advance_runs_due_calls_in_order_and_no_others(void **state)
{
    (void)state;
    tw_reactor_t *r;
    tw_fake_clock_t clock;
    log_t l = { .clock = &clock };
    log_g = &l;
    assert_int_equal(tw_reactor_new(&r), 0);
    tw_fake_clock_attach(&clock, r, 0);
    assert_int_equal(tw_reactor_now(r), 0);
    tw_reactor_call_later(r, TW_SEC(3), record_cb, (void *)3);
    tw_reactor_call_later(r, TW_SEC(1), record_cb, (void *)1);
    tw_reactor_call_later(r, TW_SEC(2), record_cb, (void *)2);
    tw_reactor_call_later(r, TW_SEC(3600), record_cb, (void *)9);

    tw_fake_clock_advance(&clock, TW_MSEC(999));
    assert_int_equal(l.n, 0);
    tw_fake_clock_advance(&clock, TW_MSEC(1));
    assert_int_equal(l.n, 1);
    tw_fake_clock_advance(&clock, TW_SEC(5));
    assert_int_equal(l.n, 3);
    assert_int_equal(l.order[1], 2);
    assert_int_equal(l.order[2], 3);
    assert_int_equal(tw_reactor_timer_count(r), 1);
    char what[128];
    assert_true(tw_reactor_check_clean(r, what, sizeof what) < 0);
    assert_non_null(strstr(what, "1 delayed calls"));
    tw_fake_clock_detach(&clock);
    tw_reactor_free(r);
}

static void calls_scheduled_during_advance_run_if_due(void **state)
{
    (void)state;
    tw_reactor_t *r;
    tw_fake_clock_t clock;
    log_t l = { .clock = &clock };
    log_g = &l;
    assert_int_equal(tw_reactor_new(&r), 0);
    tw_fake_clock_attach(&clock, r, TW_SEC(100));
    tw_reactor_call_later(r, TW_SEC(1), reschedule_cb, (void *)1);
    tw_fake_clock_advance(&clock, TW_SEC(10));
    assert_int_equal(l.n, 3); /* the first at 101 s, and the two it chained with no delay */
    assert_int_equal(l.order[2], 3);
    assert_int_equal(l.at[2], TW_SEC(110));
    assert_int_equal(tw_reactor_check_clean(r, NULL, 0), 0);
    tw_reactor_free(r);
}

static void pump_advances_step_by_step(void **state)
{
    (void)state;
    tw_reactor_t *r;
    tw_fake_clock_t clock;
    log_t l = { .clock = &clock };
    log_g = &l;
    assert_int_equal(tw_reactor_new(&r), 0);
    tw_fake_clock_attach(&clock, r, 0);
    tw_reactor_call_later(r, TW_MSEC(15), record_cb, (void *)1);
    tw_reactor_call_later(r, TW_MSEC(25), record_cb, (void *)2);
    const tw_time_t steps[] = { TW_MSEC(10), TW_MSEC(10), TW_MSEC(10) };
    tw_fake_clock_pump(&clock, steps, 3);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.at[0], TW_MSEC(20)); /* seen at the step that passed it */
    assert_int_equal(l.at[1], TW_MSEC(30));
    tw_reactor_free(r);
}

static void check_clean_reports_watched_descriptors(void **state)
{
    (void)state;
    tw_reactor_t *r;
    int p[2];
    assert_int_equal(tw_reactor_new(&r), 0);
    assert_int_equal(tw_reactor_check_clean(r, NULL, 0), 0);
    tw_test_pipe(p);
    assert_int_equal(tw_reactor_add_reader(r, p[0], (tw_io_cb)(void (*)(void))abort, NULL), 0);
    assert_int_equal(tw_reactor_check_clean(r, NULL, 0), -1);
    tw_reactor_remove_reader(r, p[0]);
    assert_int_equal(tw_reactor_check_clean(r, NULL, 0), 0);
    close(p[0]);
    close(p[1]);
    tw_reactor_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(advance_runs_due_calls_in_order_and_no_others),
        cmocka_unit_test(calls_scheduled_during_advance_run_if_due),
        cmocka_unit_test(pump_advances_step_by_step),
        cmocka_unit_test(check_clean_reports_watched_descriptors),
    };
    TW_TEST_MAIN(tests);
}
