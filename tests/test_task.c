/* test_task.c -- LoopingCall and Cooperator (tw_task.h): the fixed grid and
 * skipped-interval counts on a fake clock, stopping from inside, failures,
 * round-robin order, pause/resume, stop, completion Deferreds, freeing from
 * callbacks, and a busy task that must not starve I/O on a real reactor.
 *
 * Every test fails on an unhandled Deferred failure and ends with a clean
 * reactor (tw_reactor_check_clean). */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "tw_task.h"
#include "tw_testing.h"

/* ---- helpers ------------------------------------------------------------------ */

static void fail_on_unhandled(const tw_failure_t *f, void *arg)
{
    fail_msg("unexpected unhandled failure in a Deferred: [%s] %s", f->domain, f->message);
}

static int setup(void **state)
{
    tw_deferred_set_unhandled_hook(fail_on_unhandled, NULL);
    return 0;
}

static int teardown(void **state)
{
    tw_deferred_set_unhandled_hook(NULL, NULL);
    return 0;
}

static tw_outcome_t swallow(tw_outcome_t in, void *a1, void *a2)
{
    tw_outcome_discard(in);
    return TW_OK(NULL, NULL);
}

static tw_outcome_t count_fires(tw_outcome_t in, void *n, void *unused)
{
    (*(int *)n)++;
    return in;
}

/* d fired with NULL; drops the reference. */
static void expect_success(tw_deferred_t *d)
{
    const tw_outcome_t *o = tw_deferred_result(d);
    assert_non_null(o);
    assert_int_equal(o->kind, TW_OUTCOME_OK);
    assert_null(o->ptr);
    tw_deferred_unref(d);
}

/* d failed with ("task", code, a message containing msg); handles the failure
 * and drops the reference. */
static void expect_failure(tw_deferred_t *d, int code, const char *msg)
{
    const tw_outcome_t *o = tw_deferred_result(d);
    assert_non_null(o);
    assert_int_equal(o->kind, TW_OUTCOME_FAIL);
    assert_string_equal(o->failure->domain, "task");
    assert_int_equal(o->failure->code, code);
    if (msg && !strstr(o->failure->message, msg))
        fail_msg("failure message \"%s\" lacks \"%s\"", o->failure->message, msg);
    assert_int_equal(tw_deferred_add_errback(d, swallow, NULL, NULL), 0);
    tw_deferred_unref(d);
}

static void assert_clean(tw_reactor_t *r)
{
    char what[160];
    if (tw_reactor_check_clean(r, what, sizeof what) != 0)
        fail_msg("%s", what);
}

/* ---- LoopingCall ---------------------------------------------------------------- */

typedef struct lrec {
    tw_fake_clock_t *clock;
    int n;
    tw_time_t at[32];
    uint64_t count[32];
    int stop_at;  /* call tw_looping_call_stop in call number stop_at (1-based) */
    int fail_at;  /* return -EIO in call number fail_at */
    bool running_after_stop;
} lrec_t;

static int lrec_fn(tw_looping_call_t *lc, void *arg)
{
    lrec_t *l = arg;
    assert_true(l->n < 32);
    l->at[l->n] = l->clock->now;
    l->count[l->n] = tw_looping_call_count(lc);
    l->n++;
    if (l->n == l->stop_at) {
        assert_int_equal(tw_looping_call_stop(lc), 0);
        l->running_after_stop = tw_looping_call_running(lc);
        assert_null(tw_looping_call_start(lc, TW_SEC(1), true)); /* not from inside */
    }
    return l->n == l->fail_at ? -EIO : 0;
}

static void lc_fires_on_grid_from_start_with_now(void **state)
{
    tw_reactor_t *r;
    tw_fake_clock_t clock;
    tw_looping_call_t lc;
    lrec_t l = { .clock = &clock };
    assert_int_equal(tw_reactor_new(&r), 0);
    tw_fake_clock_attach(&clock, r, TW_SEC(100));
    tw_looping_call_init(&lc, r, lrec_fn, &l);
    assert_false(tw_looping_call_running(&lc));
    tw_deferred_t *d = tw_looping_call_start(&lc, TW_SEC(1), true);
    assert_non_null(d);
    assert_true(tw_looping_call_running(&lc));
    assert_int_equal(l.n, 1); /* called at once */
    assert_null(tw_looping_call_start(&lc, TW_SEC(1), true)); /* already running */
    for (int i = 0; i < 3; i++)
        tw_fake_clock_advance(&clock, TW_SEC(1));
    tw_fake_clock_advance(&clock, TW_MSEC(999));
    assert_int_equal(l.n, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(l.at[i], TW_SEC(100 + i));
        assert_int_equal(l.count[i], 1);
    }
    assert_int_equal(tw_reactor_next_timer(r), TW_SEC(104));
    assert_false(tw_deferred_called(d));
    assert_int_equal(tw_looping_call_stop(&lc), 0);
    assert_false(tw_looping_call_running(&lc));
    assert_int_equal(tw_looping_call_stop(&lc), -EALREADY);
    expect_success(d);
    assert_clean(r);
    tw_fake_clock_detach(&clock);
    tw_reactor_free(r);
}

static void lc_counts_skipped_intervals_without_a_burst(void **state)
{
    tw_reactor_t *r;
    tw_fake_clock_t clock;
    tw_looping_call_t lc;
    lrec_t l = { .clock = &clock };
    assert_int_equal(tw_reactor_new(&r), 0);
    tw_fake_clock_attach(&clock, r, 0);
    tw_looping_call_init(&lc, r, lrec_fn, &l);
    tw_deferred_t *d = tw_looping_call_start(&lc, TW_SEC(1), false);
    assert_non_null(d);
    assert_int_equal(l.n, 0);
    tw_fake_clock_advance(&clock, TW_MSEC(999));
    assert_int_equal(l.n, 0);
    tw_fake_clock_advance(&clock, TW_MSEC(1));
    assert_int_equal(l.n, 1);
    assert_int_equal(l.count[0], 1);
    /* The clock jumps 3.5 intervals: one call, counting 3, and the grid holds. */
    tw_fake_clock_advance(&clock, TW_MSEC(3500));
    assert_int_equal(l.n, 2);
    assert_int_equal(l.at[1], TW_MSEC(4500));
    assert_int_equal(l.count[1], 3);
    assert_int_equal(tw_reactor_next_timer(r), TW_SEC(5));
    tw_fake_clock_advance(&clock, TW_MSEC(500));
    assert_int_equal(l.n, 3);
    assert_int_equal(l.count[2], 1);
    /* A longer jump: still one call. */
    tw_fake_clock_advance(&clock, TW_SEC(10));
    assert_int_equal(l.n, 4);
    assert_int_equal(l.count[3], 10);
    assert_int_equal(tw_looping_call_stop(&lc), 0);
    expect_success(d);
    assert_clean(r);
    tw_reactor_free(r);
}

static void lc_stop_from_inside_fires_once_and_can_restart(void **state)
{
    tw_reactor_t *r;
    tw_fake_clock_t clock;
    tw_looping_call_t lc;
    lrec_t l = { .clock = &clock, .stop_at = 3 };
    int fires = 0;
    assert_int_equal(tw_reactor_new(&r), 0);
    tw_fake_clock_attach(&clock, r, 0);
    tw_looping_call_init(&lc, r, lrec_fn, &l);
    tw_deferred_t *d = tw_looping_call_start(&lc, TW_MSEC(100), true);
    assert_int_equal(tw_deferred_add_both(d, count_fires, &fires, NULL), 0);
    tw_fake_clock_advance(&clock, TW_MSEC(100));
    assert_int_equal(fires, 0);
    tw_fake_clock_advance(&clock, TW_MSEC(100)); /* the third call stops */
    assert_int_equal(l.n, 3);
    assert_false(l.running_after_stop);
    assert_int_equal(fires, 1);
    assert_false(tw_looping_call_running(&lc));
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_fake_clock_advance(&clock, TW_SEC(5));
    assert_int_equal(l.n, 3);
    assert_int_equal(fires, 1);
    expect_success(d);
    /* Stopped, it can start again: a new grid from the new start. */
    l.stop_at = 0;
    d = tw_looping_call_start(&lc, TW_MSEC(100), false);
    assert_non_null(d);
    tw_fake_clock_advance(&clock, TW_MSEC(100));
    assert_int_equal(l.n, 4);
    assert_int_equal(l.at[3], TW_MSEC(5300));
    assert_int_equal(tw_looping_call_stop(&lc), 0);
    expect_success(d);
    assert_clean(r);
    tw_reactor_free(r);
}

static void lc_interval_zero_runs_once_per_iteration(void **state)
{
    tw_reactor_t *r;
    tw_fake_clock_t clock;
    tw_looping_call_t lc;
    lrec_t l = { .clock = &clock };
    assert_int_equal(tw_reactor_new(&r), 0);
    tw_fake_clock_attach(&clock, r, 0);
    tw_looping_call_init(&lc, r, lrec_fn, &l);
    tw_deferred_t *d = tw_looping_call_start(&lc, 0, true);
    assert_int_equal(l.n, 1);
    for (int i = 1; i <= 5; i++) {
        assert_true(tw_reactor_iterate(r, 0) >= 0);
        assert_int_equal(l.n, 1 + i);
        assert_int_equal(l.count[i], 1);
    }
    assert_int_equal(tw_looping_call_stop(&lc), 0);
    expect_success(d);
    assert_clean(r);
    /* Without `now`: the first call on the next iteration. */
    d = tw_looping_call_start(&lc, 0, false);
    assert_int_equal(l.n, 6);
    tw_reactor_iterate(r, 0);
    assert_int_equal(l.n, 7);
    assert_int_equal(tw_looping_call_stop(&lc), 0);
    expect_success(d);
    assert_null(tw_looping_call_start(&lc, -1, true));
    assert_clean(r);
    tw_reactor_free(r);
}

static void lc_failure_errbacks_and_stops(void **state)
{
    tw_reactor_t *r;
    tw_fake_clock_t clock;
    tw_looping_call_t lc;
    lrec_t l = { .clock = &clock, .fail_at = 2 };
    assert_int_equal(tw_reactor_new(&r), 0);
    tw_fake_clock_attach(&clock, r, 0);
    tw_looping_call_init(&lc, r, lrec_fn, &l);
    tw_deferred_t *d = tw_looping_call_start(&lc, TW_SEC(1), true);
    tw_fake_clock_advance(&clock, TW_SEC(1));
    assert_int_equal(l.n, 2);
    assert_false(tw_looping_call_running(&lc));
    expect_failure(d, -EIO, "looping call failed");
    tw_fake_clock_advance(&clock, TW_SEC(5));
    assert_int_equal(l.n, 2);
    assert_int_equal(tw_looping_call_stop(&lc), -EALREADY);
    /* Failing in the call made by start: the Deferred has already failed. */
    l.n = 0;
    l.fail_at = 1;
    d = tw_looping_call_start(&lc, TW_SEC(1), true);
    assert_non_null(d);
    assert_false(tw_looping_call_running(&lc));
    expect_failure(d, -EIO, NULL);
    assert_clean(r);
    tw_reactor_free(r);
}

/* ---- Cooperator ----------------------------------------------------------------- */

static char trace[512];

static void trace_add(char c)
{
    size_t n = strlen(trace);
    assert_true(n + 1 < sizeof trace);
    trace[n] = c;
    trace[n + 1] = '\0';
}

typedef struct job {
    char name;
    int steps;         /* finish after this many steps; 0: never */
    int fail_at;       /* return -EIO at this step */
    int stop_self_at;  /* tw_task_stop(self) at this step, then return MORE */
    tw_task_t *self;
    int done;          /* steps run */
    int freed;         /* arg_free calls */
    bool in_step;
    tw_time_t spin;    /* busy-wait this long in each step */
    int poke_at, poke_fd; /* write to poke_fd at this step */
} job_t;

static int poke_iter, iter;

static int job_step(void *arg)
{
    job_t *j = arg;
    assert_int_equal(j->freed, 0);
    j->in_step = true;
    j->done++;
    trace_add(j->name);
    if (j->spin) {
        tw_time_t end = tw_time_now() + j->spin;
        while (tw_time_now() < end)
            ;
    }
    if (j->poke_at && j->done == j->poke_at) {
        tw_test_poke(j->poke_fd);
        poke_iter = iter;
    }
    if (j->stop_self_at && j->done == j->stop_self_at) {
        assert_int_equal(tw_task_stop(j->self), 0);
        assert_int_equal(j->freed, 0); /* not while its step runs */
    }
    j->in_step = false;
    if (j->fail_at && j->done == j->fail_at)
        return -EIO;
    return j->steps && j->done >= j->steps ? TW_TASK_DONE : TW_TASK_MORE;
}

static void job_free(void *arg)
{
    job_t *j = arg;
    assert_false(j->in_step);
    j->freed++;
}

typedef struct coop_fixture {
    tw_reactor_t *r;
    tw_fake_clock_t clock;
    tw_cooperator_t *c;
} coop_fixture_t;

static void coop_open(coop_fixture_t *f, tw_time_t budget)
{
    trace[0] = '\0';
    assert_int_equal(tw_reactor_new(&f->r), 0);
    tw_fake_clock_attach(&f->clock, f->r, 0);
    f->c = tw_cooperator_new(f->r);
    assert_non_null(f->c);
    tw_cooperator_set_budget(f->c, budget);
}

static void coop_close(coop_fixture_t *f)
{
    tw_cooperator_free(f->c);
    assert_clean(f->r);
    tw_reactor_free(f->r);
}

/* One burst: the cooperator's timer is 1 ns ahead. */
static void burst(coop_fixture_t *f)
{
    tw_fake_clock_advance(&f->clock, TW_MSEC(1));
}

static void coop_interleaves_tasks_and_fires_on_completion(void **state)
{
    coop_fixture_t f;
    coop_open(&f, TW_COOPERATOR_BUDGET);
    job_t a = { .name = 'A', .steps = 3 }, b = { .name = 'B', .steps = 3 };
    tw_task_t *ta = tw_cooperator_cooperate(f.c, job_step, &a, job_free);
    assert_non_null(ta);
    tw_deferred_t *da = tw_task_when_done(ta), *da2 = tw_task_when_done(ta);
    tw_deferred_t *db = tw_coiterate(f.c, job_step, &b, job_free);
    assert_non_null(db);
    assert_int_equal(tw_cooperator_task_count(f.c), 2);
    assert_string_equal(trace, ""); /* never before cooperate returns */
    tw_reactor_iterate(f.r, 0);     /* the fake clock has not moved: no burst */
    assert_string_equal(trace, "");
    for (int i = 0; i < 100 && tw_cooperator_task_count(f.c); i++)
        burst(&f);
    assert_string_equal(trace, "ABABAB");
    assert_int_equal(a.freed, 1);
    assert_int_equal(b.freed, 1);
    assert_int_equal(tw_task_state(ta), TW_TASK_STATE_DONE);
    expect_success(da);
    expect_success(da2);
    expect_success(db);
    expect_success(tw_task_when_done(ta)); /* after the fact: already fired */
    assert_int_equal(tw_task_stop(ta), -EALREADY);
    assert_int_equal(tw_task_pause(ta), -EALREADY);
    assert_int_equal(tw_reactor_timer_count(f.r), 0);
    tw_task_unref(ta);
    coop_close(&f);
}

static void coop_budget_zero_steps_round_robin_one_per_burst(void **state)
{
    coop_fixture_t f;
    coop_open(&f, 0);
    job_t a = { .name = 'A' }, b = { .name = 'B' }, c = { .name = 'C' };
    tw_deferred_t *da = tw_coiterate(f.c, job_step, &a, job_free);
    tw_deferred_t *db = tw_coiterate(f.c, job_step, &b, job_free);
    burst(&f);
    assert_string_equal(trace, "A");
    tw_deferred_t *dc = tw_coiterate(f.c, job_step, &c, job_free); /* at the end */
    for (int i = 0; i < 6; i++)
        burst(&f);
    assert_string_equal(trace, "ABCABCA");
    /* Freeing the cooperator stops every task. */
    tw_cooperator_free(f.c);
    f.c = NULL;
    expect_failure(da, -ECANCELED, "cooperator stopped");
    expect_failure(db, -ECANCELED, "cooperator stopped");
    expect_failure(dc, -ECANCELED, "cooperator stopped");
    assert_int_equal(a.freed + b.freed + c.freed, 3);
    coop_close(&f);
}

static void coop_pause_and_resume(void **state)
{
    coop_fixture_t f;
    coop_open(&f, 0);
    job_t a = { .name = 'A' }, b = { .name = 'B' };
    tw_task_t *ta = tw_cooperator_cooperate(f.c, job_step, &a, job_free);
    tw_task_t *tb = tw_cooperator_cooperate(f.c, job_step, &b, job_free);
    assert_int_equal(tw_task_resume(ta), -EINVAL);
    assert_int_equal(tw_task_pause(ta), 0);
    assert_int_equal(tw_task_state(ta), TW_TASK_STATE_PAUSED);
    for (int i = 0; i < 4; i++)
        burst(&f);
    assert_string_equal(trace, "BBBB");
    assert_int_equal(tw_task_pause(ta), 0); /* paused twice: two resumes */
    assert_int_equal(tw_task_resume(ta), 0);
    assert_int_equal(tw_task_state(ta), TW_TASK_STATE_PAUSED);
    burst(&f);
    assert_string_equal(trace, "BBBBB");
    assert_int_equal(tw_task_resume(ta), 0);
    assert_int_equal(tw_task_state(ta), TW_TASK_STATE_RUNNING);
    for (int i = 0; i < 4; i++)
        burst(&f);
    assert_string_equal(trace, "BBBBBBABA");
    /* Everything paused: no timer keeps the reactor busy. */
    assert_int_equal(tw_task_pause(ta), 0);
    assert_int_equal(tw_task_pause(tb), 0);
    assert_int_equal(tw_reactor_timer_count(f.r), 0);
    burst(&f);
    assert_string_equal(trace, "BBBBBBABA");
    assert_int_equal(tw_task_resume(tb), 0);
    assert_int_equal(tw_reactor_timer_count(f.r), 1);
    burst(&f);
    assert_string_equal(trace, "BBBBBBABAB");
    /* Stopping a paused task works too; its pause count can still be undone. */
    tw_deferred_t *da = tw_task_when_done(ta);
    assert_int_equal(tw_task_stop(ta), 0);
    expect_failure(da, -ECANCELED, "task stopped");
    assert_int_equal(tw_task_resume(ta), 0);
    assert_int_equal(tw_task_resume(ta), -EINVAL);
    assert_int_equal(tw_task_state(ta), TW_TASK_STATE_STOPPED);
    assert_int_equal(a.freed, 1);
    assert_int_equal(tw_task_stop(tb), 0);
    assert_int_equal(b.freed, 1);
    assert_int_equal(tw_cooperator_task_count(f.c), 0);
    tw_task_unref(ta);
    tw_task_unref(tb);
    coop_close(&f);
}

static void coop_stop_and_step_failure_errback(void **state)
{
    coop_fixture_t f;
    coop_open(&f, 0);
    job_t a = { .name = 'A' }, b = { .name = 'B', .fail_at = 2 };
    tw_task_t *ta = tw_cooperator_cooperate(f.c, job_step, &a, job_free);
    tw_deferred_t *da = tw_task_when_done(ta);
    tw_deferred_t *db = tw_coiterate(f.c, job_step, &b, job_free);
    for (int i = 0; i < 4; i++)
        burst(&f);
    assert_string_equal(trace, "ABAB");
    expect_failure(db, -EIO, "task failed");
    assert_int_equal(b.freed, 1);
    assert_false(tw_deferred_called(da));
    assert_int_equal(tw_task_stop(ta), 0);
    expect_failure(da, -ECANCELED, "task stopped");
    expect_failure(tw_task_when_done(ta), -ECANCELED, "task stopped");
    assert_int_equal(tw_task_stop(ta), -EALREADY);
    for (int i = 0; i < 3; i++)
        burst(&f);
    assert_string_equal(trace, "ABAB"); /* no step after a stop */
    assert_int_equal(a.freed, 1);
    assert_int_equal(tw_task_state(ta), TW_TASK_STATE_STOPPED);
    /* A stopped cooperator stops what it is given at once. */
    assert_true(tw_cooperator_running(f.c));
    tw_cooperator_stop(f.c);
    assert_false(tw_cooperator_running(f.c));
    job_t c = { .name = 'C' };
    tw_deferred_t *dc = tw_coiterate(f.c, job_step, &c, job_free);
    expect_failure(dc, -ECANCELED, "cooperator stopped");
    assert_int_equal(c.freed, 1);
    tw_task_unref(ta);
    coop_close(&f);
}

/* A when_done callback that frees the cooperator (a2) of the task. */
static tw_outcome_t free_coop(tw_outcome_t in, void *fixture, void *unused)
{
    coop_fixture_t *f = fixture;
    tw_cooperator_free(f->c);
    f->c = NULL;
    return in;
}

static void coop_stop_from_own_step_and_free_from_callback(void **state)
{
    coop_fixture_t f;
    coop_open(&f, TW_COOPERATOR_BUDGET);
    job_t a = { .name = 'A', .stop_self_at = 2 }, b = { .name = 'B' };
    job_t c = { .name = 'C', .steps = 3 };
    a.self = tw_cooperator_cooperate(f.c, job_step, &a, job_free);
    tw_deferred_t *da = tw_task_when_done(a.self);
    int fires = 0;
    assert_int_equal(tw_deferred_add_both(da, count_fires, &fires, NULL), 0);
    tw_deferred_t *db = tw_coiterate(f.c, job_step, &b, job_free);
    tw_deferred_t *dc = tw_coiterate(f.c, job_step, &c, job_free);
    assert_int_equal(tw_deferred_add_callback(dc, free_coop, &f, NULL), 0);
    for (int i = 0; i < 100 && f.c; i++)
        burst(&f);
    /* A stopped itself in its second step; C finished in its third and its
     * callback freed the cooperator in the middle of the burst, stopping B. */
    assert_string_equal(trace, "ABCABCBC");
    assert_null(f.c);
    assert_int_equal(fires, 1);
    assert_int_equal(a.freed + b.freed + c.freed, 3);
    assert_int_equal(tw_task_state(a.self), TW_TASK_STATE_STOPPED);
    expect_failure(da, -ECANCELED, "task stopped");
    expect_failure(db, -ECANCELED, "cooperator stopped");
    expect_success(dc);
    tw_task_unref(a.self);
    coop_close(&f);
}

static void on_readable(tw_reactor_t *r, int fd, void *arg)
{
    char buf[16];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    *(int *)arg = iter;
}

static void coop_busy_task_does_not_starve_io(void **state)
{
    tw_reactor_t *r;
    int p[2], read_iter = -1;
    trace[0] = '\0';
    assert_int_equal(tw_reactor_new(&r), 0);
    tw_test_pipe(p);
    assert_int_equal(tw_reactor_add_reader(r, p[0], on_readable, &read_iter), 0);
    tw_cooperator_t *c = tw_cooperator_new(r);
    /* Each step spins 1 ms, forever; the pipe is written from step 25 on. */
    job_t busy = { .name = 'x', .spin = TW_MSEC(1), .poke_at = 25, .poke_fd = p[1] };
    tw_task_t *t = tw_cooperator_cooperate(c, job_step, &busy, NULL);
    poke_iter = -1;
    int max_steps = 0;
    for (iter = 0; iter < 200 && read_iter < 0; iter++) {
        int before = busy.done;
        tw_time_t t0 = tw_time_now();
        assert_true(tw_reactor_iterate(r, TW_MSEC(50)) >= 0);
        int steps = busy.done - before;
        if (steps > max_steps)
            max_steps = steps;
        trace[0] = '\0';
        assert_true(tw_time_now() - t0 < TW_MSEC(500)); /* bursts are bounded */
    }
    assert_true(poke_iter >= 0);
    assert_true(read_iter >= 0);
    /* Written during a burst, read on the next iteration. */
    assert_true(read_iter - poke_iter <= 1);
    assert_true(busy.done >= 25);
    assert_true(max_steps >= 1 && max_steps <= 30); /* ~10 steps of 1 ms per burst */
    assert_int_equal(tw_task_state(t), TW_TASK_STATE_RUNNING);
    assert_int_equal(tw_task_stop(t), 0);
    tw_task_unref(t);
    tw_cooperator_free(c);
    tw_reactor_remove_reader(r, p[0]);
    close(p[0]);
    close(p[1]);
    assert_clean(r);
    tw_reactor_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(lc_fires_on_grid_from_start_with_now, setup, teardown),
        cmocka_unit_test_setup_teardown(lc_counts_skipped_intervals_without_a_burst, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(lc_stop_from_inside_fires_once_and_can_restart, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(lc_interval_zero_runs_once_per_iteration, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(lc_failure_errbacks_and_stops, setup, teardown),
        cmocka_unit_test_setup_teardown(coop_interleaves_tasks_and_fires_on_completion, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(coop_budget_zero_steps_round_robin_one_per_burst,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(coop_pause_and_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(coop_stop_and_step_failure_errback, setup, teardown),
        cmocka_unit_test_setup_teardown(coop_stop_from_own_step_and_free_from_callback, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(coop_busy_task_does_not_starve_io, setup, teardown),
    };
    TW_TEST_MAIN(tests);
}
