/* test_reactor.c -- run/stop, triggers, soon calls, iterate, descriptor
 * readiness (including removal and fd reuse inside a batch), many
 * descriptors, backend limits, and tw_reactor_after_fork. */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static bool backend_is(const char *name)
{
    return strcmp(tw_reactor_backend_name(), name) == 0;
}

static void close_pair(int fds[2])
{
    close(fds[0]);
    close(fds[1]);
}

/* Stop the reactor from a delayed call; arg is the reactor. */
static void stop_cb(tw_timer_t *t, void *arg)
{
    (void)t;
    assert_int_equal(tw_reactor_stop(arg), 0);
}

/* A guard against a hang: stops the reactor and records that it had to. */
typedef struct guard {
    tw_timer_t t;
    tw_reactor_t *r;
    int fired;
} guard_t;

static void guard_cb(tw_timer_t *t, void *arg)
{
    guard_t *g = arg;
    (void)t;
    g->fired = 1;
    tw_reactor_stop(g->r);
}

static void guard_start(guard_t *g, tw_reactor_t *r)
{
    g->r = r;
    g->fired = 0;
    tw_timer_init(&g->t, r, guard_cb, g);
    assert_int_equal(tw_timer_start(&g->t, TW_SEC(30)), 0);
}

static void guard_end(guard_t *g)
{
    tw_timer_cancel(&g->t);
    assert_false(g->fired);
}

/* ---- run and stop ------------------------------------------------------- */

static void stop_when_not_running_is_refused(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    assert_false(tw_reactor_running(r));
    assert_int_equal(tw_reactor_stop(r), TW_ENOTRUNNING);
    tw_reactor_free(r);
    tw_reactor_free(NULL);
}

typedef struct runstate {
    tw_reactor_t *r;
    int calls;
    int rc_nested_run, rc_nested_iterate, rc_stop1, rc_stop2;
    bool running_inside;
} runstate_t;

static void nested_cb(tw_timer_t *t, void *arg)
{
    runstate_t *s = arg;
    (void)t;
    s->calls++;
    s->running_inside = tw_reactor_running(s->r);
    s->rc_nested_run = tw_reactor_run(s->r, TW_RUN_DEFAULT);
    s->rc_nested_iterate = tw_reactor_iterate(s->r, 0);
    s->rc_stop1 = tw_reactor_stop(s->r);
    s->rc_stop2 = tw_reactor_stop(s->r); /* already stopping */
}

static void run_returns_zero_after_stop_and_runs_again(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    for (int round = 0; round < 3; round++) {
        runstate_t s = { .r = r };
        guard_t g;
        guard_start(&g, r);
        assert_non_null(tw_reactor_call_later(r, TW_MSEC(round), nested_cb, &s));
        assert_int_equal(tw_reactor_run(r, TW_RUN_DEFAULT), 0);
        guard_end(&g);
        assert_int_equal(s.calls, 1);
        assert_true(s.running_inside);
        assert_int_equal(s.rc_nested_run, TW_EALREADY);
        assert_int_equal(s.rc_nested_iterate, TW_EALREADY);
        assert_int_equal(s.rc_stop1, 0);
        assert_int_equal(s.rc_stop2, TW_ENOTRUNNING);
        assert_false(tw_reactor_running(r));
        assert_int_equal(tw_reactor_stop(r), TW_ENOTRUNNING);
    }
    tw_reactor_free(r);
}

static void soft_stop_cb(tw_reactor_t *r, void *arg)
{
    (void)arg;
    tw_reactor_stop(r); /* TW_ENOTRUNNING unless a nested run started */
}

static void run_inside_iterate_cb(tw_timer_t *t, void *arg)
{
    runstate_t *s = arg;
    (void)t;
    s->calls++;
    /* A safety net: should the nested run start, this stops it. */
    assert_int_equal(tw_reactor_call_soon(s->r, soft_stop_cb, NULL), 0);
    s->rc_nested_run = tw_reactor_run(s->r, TW_RUN_DEFAULT);
    s->rc_nested_iterate = tw_reactor_iterate(s->r, 0);
    s->running_inside = tw_reactor_running(s->r);
    s->rc_stop1 = tw_reactor_stop(s->r);
}

static void run_from_a_callback_of_iterate_is_refused(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    runstate_t s = { .r = r };
    assert_non_null(tw_reactor_call_later(r, 0, run_inside_iterate_cb, &s));
    assert_int_equal(tw_reactor_iterate(r, 0), 2); /* the timer, then the soon call */
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.rc_nested_run, TW_EALREADY);
    assert_int_equal(s.rc_nested_iterate, TW_EALREADY);
    assert_false(s.running_inside);
    assert_int_equal(s.rc_stop1, TW_ENOTRUNNING);
    assert_false(tw_reactor_running(r));
    /* Afterwards the reactor runs normally. */
    assert_non_null(tw_reactor_call_later(r, 0, stop_cb, r));
    assert_int_equal(tw_reactor_run(r, TW_RUN_DEFAULT), 0);
    tw_reactor_free(r);
}

/* ---- triggers ----------------------------------------------------------- */

typedef struct trace {
    int ev[128];
    int n;
} trace_t;

typedef struct trig {
    trace_t *tr;
    int tag;
    int remove_ids[2]; /* triggers to remove when this one runs (0: none) */
    int rc_remove[2];
} trig_t;

static void trig_cb(tw_reactor_t *r, void *arg)
{
    trig_t *t = arg;
    assert_true(t->tr->n < 128);
    t->tr->ev[t->tr->n++] = t->tag;
    for (int i = 0; i < 2; i++)
        if (t->remove_ids[i])
            t->rc_remove[i] = tw_reactor_remove_trigger(r, t->remove_ids[i]);
}

typedef struct stopper {
    tw_timer_t t;
    trace_t *tr;
    tw_reactor_t *r;
} stopper_t;

static void trace_stop_cb(tw_timer_t *t, void *arg)
{
    stopper_t *s = arg;
    (void)t;
    s->tr->ev[s->tr->n++] = 70;
    assert_int_equal(tw_reactor_stop(s->r), 0);
}

static void assert_trace(const trace_t *tr, const int *want, int n)
{
    char got[512] = "", exp[512] = "";
    for (int i = 0; i < tr->n; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), " %d", tr->ev[i]);
    for (int i = 0; i < n; i++)
        snprintf(exp + strlen(exp), sizeof exp - strlen(exp), " %d", want[i]);
    if (strcmp(got, exp) != 0)
        fail_msg("trace:%s\n  expected:%s", got, exp);
}

static void triggers_run_by_phase_then_in_order_added_on_every_run(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    trace_t tr = { .n = 0 };
    /* tags: 1x before, 2x during, 3x after startup; 4x/5x/6x shutdown */
    trig_t t[] = {
        { &tr, 31, { 0 }, { 0 } }, { &tr, 11, { 0 }, { 0 } }, { &tr, 21, { 0 }, { 0 } },
        { &tr, 12, { 0 }, { 0 } }, { &tr, 61, { 0 }, { 0 } }, { &tr, 41, { 0 }, { 0 } },
        { &tr, 51, { 0 }, { 0 } }, { &tr, 32, { 0 }, { 0 } }, { &tr, 13, { 0 }, { 0 } },
        { &tr, 22, { 0 }, { 0 } }, { &tr, 23, { 0 }, { 0 } }, { &tr, 42, { 0 }, { 0 } },
        { &tr, 99, { 0 }, { 0 } },
    };
    static const struct { tw_phase_t p; tw_event_t e; } where[] = {
        { TW_AFTER, TW_STARTUP }, { TW_BEFORE, TW_STARTUP }, { TW_DURING, TW_STARTUP },
        { TW_BEFORE, TW_STARTUP }, { TW_AFTER, TW_SHUTDOWN }, { TW_BEFORE, TW_SHUTDOWN },
        { TW_DURING, TW_SHUTDOWN }, { TW_AFTER, TW_STARTUP }, { TW_BEFORE, TW_STARTUP },
        { TW_DURING, TW_STARTUP }, { TW_DURING, TW_STARTUP }, { TW_BEFORE, TW_SHUTDOWN },
    };
    int id[13];
    for (int i = 0; i < 12; i++) {
        id[i] = tw_reactor_add_trigger(r, where[i].p, where[i].e, trig_cb, &t[i]);
        assert_true(id[i] > 0);
        for (int j = 0; j < i; j++)
            assert_int_not_equal(id[i], id[j]);
    }
    /* Removed before the run: 13 never runs. */
    assert_int_equal(tw_reactor_remove_trigger(r, id[8]), 0);
    assert_int_equal(tw_reactor_remove_trigger(r, id[8]), -ENOENT);
    /* 22 removes itself and 23 (later in its own phase); 41 removes 42. */
    t[9].remove_ids[0] = id[9];
    t[9].remove_ids[1] = id[10];
    t[5].remove_ids[0] = id[11];
    /* A call when running, made before the run: once, with the "after"s. */
    assert_int_equal(tw_reactor_call_when_running(r, trig_cb, &t[12]), 0);

    stopper_t st = { .tr = &tr, .r = r };
    tw_timer_init(&st.t, r, trace_stop_cb, &st);
    assert_int_equal(tw_timer_start(&st.t, 0), 0);
    assert_int_equal(tw_reactor_run(r, TW_RUN_DEFAULT), 0);
    static const int first[] = { 11, 12, 21, 22, 31, 32, 99, 70, 41, 51, 61 };
    assert_trace(&tr, first, (int)(sizeof first / sizeof *first));
    assert_int_equal(t[9].rc_remove[0], 0);
    assert_int_equal(t[9].rc_remove[1], 0);
    assert_int_equal(t[5].rc_remove[0], 0);

    /* Second run: the same triggers again, minus the removed and the once. */
    tr.n = 0;
    t[5].remove_ids[0] = 0;
    assert_int_equal(tw_timer_start(&st.t, 0), 0);
    assert_int_equal(tw_reactor_run(r, TW_RUN_DEFAULT), 0);
    static const int second[] = { 11, 12, 21, 31, 32, 70, 41, 51, 61 };
    assert_trace(&tr, second, (int)(sizeof second / sizeof *second));

    assert_int_equal(tw_reactor_remove_trigger(r, id[9]), -ENOENT);
    assert_int_equal(tw_reactor_remove_trigger(r, 123456), -ENOENT);
    assert_int_equal(tw_reactor_add_trigger(r, (tw_phase_t)3, TW_STARTUP, trig_cb, &t[0]),
                     -EINVAL);
    assert_int_equal(tw_reactor_add_trigger(r, TW_BEFORE, (tw_event_t)2, trig_cb, &t[0]),
                     -EINVAL);
    assert_int_equal(tw_reactor_add_trigger(r, TW_BEFORE, TW_STARTUP, NULL, NULL), -EINVAL);
    tw_reactor_free(r);
}

static void stop_call_cb(tw_reactor_t *r, void *arg)
{
    (void)arg;
    assert_int_equal(tw_reactor_stop(r), 0);
}

static void stop_in_startup_trigger_still_runs_shutdown_triggers(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    trace_t tr = { .n = 0 };
    trig_t a = { &tr, 1, { 0 }, { 0 } }, b = { &tr, 2, { 0 }, { 0 } };
    assert_true(tw_reactor_add_trigger(r, TW_BEFORE, TW_STARTUP, trig_cb, &a) > 0);
    assert_true(tw_reactor_add_trigger(r, TW_BEFORE, TW_STARTUP, stop_call_cb, NULL) > 0);
    assert_true(tw_reactor_add_trigger(r, TW_AFTER, TW_SHUTDOWN, trig_cb, &b) > 0);
    assert_int_equal(tw_reactor_run(r, TW_RUN_DEFAULT), 0);
    static const int want[] = { 1, 2 };
    assert_trace(&tr, want, 2);
    tw_reactor_free(r);
}

typedef struct wr_ctx {
    tw_reactor_t *r;
    int inline_calls; /* calls made before call_when_running returned */
    int calls;
    int in_call;
} wr_ctx_t;

static void when_running_cb(tw_reactor_t *r, void *arg)
{
    wr_ctx_t *c = arg;
    c->calls++;
    if (c->in_call)
        c->inline_calls++;
    assert_true(tw_reactor_running(r));
    assert_int_equal(tw_reactor_stop(r), 0);
}

static void call_when_running_while_running_runs_soon(tw_timer_t *t, void *arg)
{
    wr_ctx_t *c = arg;
    (void)t;
    c->in_call = 1;
    assert_int_equal(tw_reactor_call_when_running(c->r, when_running_cb, c), 0);
    c->in_call = 0;
}

static void call_when_running_during_run_runs_soon_once(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    wr_ctx_t c = { .r = r };
    guard_t g;
    guard_start(&g, r);
    assert_non_null(tw_reactor_call_later(r, 0, call_when_running_while_running_runs_soon, &c));
    assert_int_equal(tw_reactor_run(r, TW_RUN_DEFAULT), 0);
    guard_end(&g);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.inline_calls, 0);
    /* Not again on the next run. */
    assert_non_null(tw_reactor_call_later(r, 0, stop_cb, r));
    assert_int_equal(tw_reactor_run(r, TW_RUN_DEFAULT), 0);
    assert_int_equal(c.calls, 1);
    tw_reactor_free(r);
}

/* ---- soon calls --------------------------------------------------------- */

typedef struct soon_ctx {
    int order[200];
    int n;
    int requeue; /* how many more times to queue itself */
} soon_ctx_t;

typedef struct soon_item {
    soon_ctx_t *c;
    int tag;
} soon_item_t;

static void soon_cb(tw_reactor_t *r, void *arg)
{
    soon_item_t *it = arg;
    it->c->order[it->c->n++] = it->tag;
    if (it->c->requeue > 0) {
        it->c->requeue--;
        assert_int_equal(tw_reactor_call_soon(r, soon_cb, it), 0);
    }
}

static void soon_calls_run_in_fifo_order(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    soon_ctx_t c = { .n = 0 };
    soon_item_t it[150];
    for (int i = 0; i < 150; i++) {
        it[i] = (soon_item_t){ &c, i };
        assert_int_equal(tw_reactor_call_soon(r, soon_cb, &it[i]), 0);
    }
    assert_int_equal(tw_reactor_iterate(r, TW_SEC(10)), 150);
    assert_int_equal(c.n, 150);
    for (int i = 0; i < 150; i++)
        assert_int_equal(c.order[i], i);
    assert_int_equal(tw_reactor_iterate(r, 0), 0);
    assert_int_equal(c.n, 150);
    assert_int_equal(tw_reactor_call_soon(r, NULL, NULL), -EINVAL);
    tw_reactor_free(r);
}

static void soon_call_made_by_soon_call_runs_next_iteration(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    soon_ctx_t c = { .n = 0, .requeue = 3 };
    soon_item_t a = { &c, 1 }, b = { &c, 2 };
    assert_int_equal(tw_reactor_call_soon(r, soon_cb, &a), 0);
    assert_int_equal(tw_reactor_call_soon(r, soon_cb, &b), 0);
    /* a requeues itself, then b requeues itself; each pass runs only what
     * was queued before it began.  A long timeout must not block. */
    assert_int_equal(tw_reactor_iterate(r, TW_SEC(10)), 2);
    assert_int_equal(c.n, 2);
    assert_int_equal(tw_reactor_iterate(r, TW_SEC(10)), 2);
    assert_int_equal(c.n, 4);
    assert_int_equal(tw_reactor_iterate(r, TW_SEC(10)), 1);
    assert_int_equal(c.n, 5);
    assert_int_equal(tw_reactor_iterate(r, 0), 0);
    static const int want[] = { 1, 2, 1, 2, 1 };
    for (int i = 0; i < 5; i++)
        assert_int_equal(c.order[i], want[i]);
    tw_reactor_free(r);
}

static void count_reads_cb(tw_reactor_t *r, int fd, void *arg)
{
    (void)r;
    char buf[64];
    (*(int *)arg)++;
    assert_true(read(fd, buf, sizeof buf) > 0);
}

static void endless_soon_cb(tw_reactor_t *r, void *arg)
{
    (*(int *)arg)++;
    assert_int_equal(tw_reactor_call_soon(r, endless_soon_cb, arg), 0);
}

static void endless_soon_calls_do_not_starve_io(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int p[2], reads = 0, soons = 0;
    tw_test_pipe(p);
    assert_int_equal(tw_reactor_add_reader(r, p[0], count_reads_cb, &reads), 0);
    assert_int_equal(tw_reactor_call_soon(r, endless_soon_cb, &soons), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(tw_reactor_iterate(r, TW_SEC(10)), 1);
    tw_test_poke(p[1]);
    assert_int_equal(tw_reactor_iterate(r, TW_SEC(10)), 2);
    assert_int_equal(reads, 1);
    assert_int_equal(soons, 6);
    tw_reactor_remove_reader(r, p[0]);
    close_pair(p);
    tw_reactor_free(r); /* the pending soon call is dropped */
}

typedef struct stages {
    int trace[8];
    int n;
    tw_timer_t t;
    tw_reactor_t *r;
} stages_t;

static void stage_soon_cb(tw_reactor_t *r, void *arg)
{
    stages_t *s = arg;
    (void)r;
    s->trace[s->n++] = 3;
}

static void stage_timer_cb(tw_timer_t *t, void *arg)
{
    stages_t *s = arg;
    (void)t;
    s->trace[s->n++] = 2;
}

static void stage_io_cb(tw_reactor_t *r, int fd, void *arg)
{
    stages_t *s = arg;
    s->trace[s->n++] = 1;
    tw_reactor_remove_reader(r, fd);
    /* Queued from an I/O callback: both run later in this same pass. */
    assert_int_equal(tw_reactor_call_soon(r, stage_soon_cb, s), 0);
    assert_int_equal(tw_timer_start(&s->t, 0), 0);
}

static void io_then_due_timers_then_soon_calls_in_one_iteration(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    stages_t s = { .r = r };
    int p[2];
    tw_test_pipe(p);
    tw_timer_init(&s.t, r, stage_timer_cb, &s);
    assert_int_equal(tw_reactor_add_reader(r, p[0], stage_io_cb, &s), 0);
    tw_test_poke(p[1]);
    assert_int_equal(tw_reactor_iterate(r, TW_SEC(10)), 3);
    assert_int_equal(s.n, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(s.trace[i], i + 1);
    assert_int_equal(tw_reactor_iterate(r, 0), 0);
    close_pair(p);
    tw_reactor_free(r);
}

/* ---- iterate ------------------------------------------------------------ */

static void flag_timer_cb(tw_timer_t *t, void *arg)
{
    (void)t;
    (*(int *)arg)++;
}

static void iterate_zero_returns_promptly(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int p[2], reads = 0, fired = 0;
    tw_test_pipe(p);
    assert_int_equal(tw_reactor_add_reader(r, p[0], count_reads_cb, &reads), 0);
    assert_non_null(tw_reactor_call_later(r, TW_SEC(20), flag_timer_cb, &fired));
    tw_time_t start = tw_time_now();
    for (int i = 0; i < 10; i++)
        assert_int_equal(tw_reactor_iterate(r, 0), 0);
    /* Blocking on the 20 s timer even once would break this bound. */
    assert_true(tw_time_now() - start < TW_SEC(10));
    assert_int_equal(reads, 0);
    assert_int_equal(fired, 0);
    tw_reactor_remove_reader(r, p[0]);
    close_pair(p);
    tw_reactor_free(r);
}

static void iterate_forever_with_only_a_timer_fires_it(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int fired = 0, passes = 0;
    tw_time_t start = tw_time_now();
    assert_non_null(tw_reactor_call_later(r, TW_MSEC(3), flag_timer_cb, &fired));
    while (!fired && passes < 100) {
        assert_true(tw_reactor_iterate(r, -1) >= 0);
        passes++;
    }
    assert_int_equal(fired, 1);
    assert_true(tw_time_now() - start >= TW_MSEC(3));
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_reactor_free(r);
}

typedef struct now_ctx {
    tw_reactor_t *r;
    tw_time_t first, second;
    int fired;
} now_ctx_t;

static void now_cb(tw_timer_t *t, void *arg)
{
    now_ctx_t *c = arg;
    (void)t;
    c->first = tw_reactor_now(c->r);
    tw_time_t until = tw_time_now() + TW_USEC(100);
    while (tw_time_now() < until) /* let the clock move on */
        ;
    c->second = tw_reactor_now(c->r);
    c->fired++;
}

static void reactor_now_is_cached_in_callbacks_and_fresh_outside(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    tw_time_t a = tw_reactor_now(r), b = tw_time_now(), c = tw_reactor_now(r);
    assert_true(a <= b && b <= c);
    now_ctx_t n = { .r = r };
    assert_non_null(tw_reactor_call_later(r, 0, now_cb, &n));
    assert_int_equal(tw_reactor_iterate(r, 0), 1);
    assert_int_equal(n.fired, 1);
    assert_int_equal(n.first, n.second);
    assert_true(n.first >= c);
    assert_true(tw_reactor_now(r) >= n.second + TW_USEC(100));
    tw_reactor_free(r);
}

/* ---- descriptors -------------------------------------------------------- */

typedef struct io_count {
    int reads, writes;
    int last_fd;
    bool drain;
} io_count_t;

static void io_read_cb(tw_reactor_t *r, int fd, void *arg)
{
    io_count_t *c = arg;
    (void)r;
    c->reads++;
    c->last_fd = fd;
    if (c->drain) {
        char buf[256];
        while (read(fd, buf, sizeof buf) > 0)
            ;
    }
}

static void io_write_cb(tw_reactor_t *r, int fd, void *arg)
{
    io_count_t *c = arg;
    (void)r;
    c->writes++;
    c->last_fd = fd;
}

static void pipe_reader_fires_after_write_and_not_before(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int p[2];
    io_count_t c = { .drain = true };
    tw_test_pipe(p);
    assert_int_equal(tw_reactor_add_reader(r, p[0], io_read_cb, &c), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tw_reactor_iterate(r, 0), 0);
    assert_int_equal(c.reads, 0);
    tw_test_poke(p[1]);
    assert_int_equal(tw_reactor_iterate(r, TW_SEC(10)), 1);
    assert_int_equal(c.reads, 1);
    assert_int_equal(c.last_fd, p[0]);
    assert_int_equal(tw_reactor_iterate(r, 0), 0); /* drained: quiet again */
    assert_int_equal(c.reads, 1);
    /* Hang-up counts as readable. */
    close(p[1]);
    assert_int_equal(tw_reactor_iterate(r, TW_SEC(10)), 1);
    assert_int_equal(c.reads, 2);
    char b;
    assert_int_equal(read(p[0], &b, 1), 0);
    tw_reactor_remove_reader(r, p[0]);
    close(p[0]);
    tw_reactor_free(r);
}

static void readiness_is_level_triggered_until_removed(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int s[2];
    io_count_t c = { .drain = false };
    tw_test_socketpair(s);
    tw_test_poke(s[1]);
    assert_int_equal(tw_reactor_add_reader(r, s[0], io_read_cb, &c), 0);
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(tw_reactor_iterate(r, TW_SEC(10)), 1);
        assert_int_equal(c.reads, i);
    }
    assert_int_equal(tw_reactor_remove_reader(r, s[0]), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tw_reactor_iterate(r, 0), 0);
    assert_int_equal(c.reads, 3);
    close_pair(s);
    tw_reactor_free(r);
}

static void socket_writer_fires_when_writable_and_stops_when_removed(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int s[2];
    io_count_t c = { 0 }, d = { .drain = true };
    tw_test_socketpair(s);
    assert_int_equal(tw_reactor_add_writer(r, s[0], io_write_cb, &c), 0);
    assert_int_equal(tw_reactor_iterate(r, TW_SEC(10)), 1);
    assert_int_equal(c.writes, 1);
    assert_int_equal(c.last_fd, s[0]);
    /* Fill the socket: no longer writable, so no callback. */
    char buf[4096];
    memset(buf, 'x', sizeof buf);
    while (write(s[0], buf, sizeof buf) > 0)
        ;
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(tw_reactor_iterate(r, 0), 0);
    assert_int_equal(c.writes, 1);
    /* The peer reads it all: writable again. */
    assert_int_equal(tw_reactor_add_reader(r, s[1], io_read_cb, &d), 0);
    assert_true(tw_test_iterate_until(r, &c.writes, 2, 100));
    assert_true(d.reads >= 1);
    assert_int_equal(tw_reactor_remove_writer(r, s[0]), 0);
    assert_int_equal(tw_reactor_remove_reader(r, s[1]), 0);
    int before = c.writes;
    for (int i = 0; i < 3; i++)
        assert_int_equal(tw_reactor_iterate(r, 0), 0);
    assert_int_equal(c.writes, before);
    close_pair(s);
    tw_reactor_free(r);
}

static void watch_queries_track_readers_and_writers(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int s[2], p[2];
    io_count_t c = { 0 }, c2 = { 0 };
    tw_test_socketpair(s);
    tw_test_pipe(p);
    assert_int_equal(tw_reactor_watched_count(r), 0);
    assert_false(tw_reactor_is_reading(r, s[0]));
    assert_false(tw_reactor_is_writing(r, s[0]));
    assert_false(tw_reactor_is_reading(r, 100000));
    assert_false(tw_reactor_is_reading(r, -1));

    assert_int_equal(tw_reactor_add_reader(r, s[0], io_read_cb, &c), 0);
    assert_true(tw_reactor_is_reading(r, s[0]));
    assert_false(tw_reactor_is_writing(r, s[0]));
    assert_int_equal(tw_reactor_watched_count(r), 1);
    assert_int_equal(tw_reactor_add_writer(r, s[0], io_write_cb, &c), 0);
    assert_true(tw_reactor_is_writing(r, s[0]));
    assert_int_equal(tw_reactor_watched_count(r), 1); /* one descriptor, both ways */
    assert_int_equal(tw_reactor_add_reader(r, p[0], io_read_cb, &c), 0);
    assert_int_equal(tw_reactor_watched_count(r), 2);

    /* Replacing a reader keeps one reader: only the new callback runs. */
    assert_int_equal(tw_reactor_add_reader(r, p[0], io_read_cb, &c2), 0);
    assert_int_equal(tw_reactor_watched_count(r), 2);
    tw_test_poke(p[1]);
    assert_true(tw_test_iterate_until(r, &c2.reads, 1, 100));
    assert_int_equal(c.reads, 0);

    assert_int_equal(tw_reactor_remove_reader(r, s[0]), 0);
    assert_false(tw_reactor_is_reading(r, s[0]));
    assert_true(tw_reactor_is_writing(r, s[0]));
    assert_int_equal(tw_reactor_watched_count(r), 2);
    tw_reactor_remove_all(r, s[0]);
    assert_false(tw_reactor_is_writing(r, s[0]));
    assert_int_equal(tw_reactor_watched_count(r), 1);
    tw_reactor_remove_all(r, p[0]);
    assert_int_equal(tw_reactor_watched_count(r), 0);

    /* Removing what is not watched is fine; bad arguments are refused. */
    assert_int_equal(tw_reactor_remove_reader(r, s[0]), 0);
    assert_int_equal(tw_reactor_remove_writer(r, 100000), 0);
    assert_int_equal(tw_reactor_remove_reader(r, -1), 0);
    assert_int_equal(tw_reactor_add_reader(r, -1, io_read_cb, &c), -EBADF);
    assert_int_equal(tw_reactor_add_writer(r, -5, io_write_cb, &c), -EBADF);
    assert_int_equal(tw_reactor_add_reader(r, s[0], NULL, &c), -EINVAL);
    assert_int_equal(tw_reactor_watched_count(r), 0);
    close_pair(s);
    close_pair(p);
    tw_reactor_free(r);
}

/* ---- removal inside a batch --------------------------------------------- */

typedef struct pairwise {
    int fd[2];        /* the two watched descriptors */
    bool writer[2];   /* whether fd[i] is watched for writing (else reading) */
    int calls[2];
    int total;
} pairwise_t;

static void pairwise_cb(tw_reactor_t *r, int fd, void *arg)
{
    pairwise_t *pw = arg;
    int me = fd == pw->fd[0] ? 0 : 1;
    pw->calls[me]++;
    pw->total++;
    for (int i = 0; i < 2; i++) {
        if (pw->writer[i])
            tw_reactor_remove_writer(r, pw->fd[i]);
        else
            tw_reactor_remove_reader(r, pw->fd[i]);
    }
}

static void watcher_removed_by_earlier_callback_in_batch_is_not_called(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int a[2], b[2];
    tw_test_pipe(a);
    tw_test_socketpair(b);
    pairwise_t pw = { .fd = { a[0], b[0] } };
    assert_int_equal(tw_reactor_add_reader(r, a[0], pairwise_cb, &pw), 0);
    assert_int_equal(tw_reactor_add_reader(r, b[0], pairwise_cb, &pw), 0);
    tw_test_poke(a[1]);
    tw_test_poke(b[1]);
    assert_int_equal(tw_reactor_iterate(r, TW_SEC(10)), 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tw_reactor_iterate(r, 0), 0);
    assert_int_equal(pw.total, 1);
    assert_int_equal(tw_reactor_watched_count(r), 0);
    close_pair(a);
    close_pair(b);
    tw_reactor_free(r);
}

static void reader_and_writer_removing_each_other_run_once(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int a[2], b[2];
    tw_test_pipe(a);
    tw_test_socketpair(b);
    /* A readable pipe and a writable socket. */
    pairwise_t pw = { .fd = { a[0], b[0] }, .writer = { false, true } };
    assert_int_equal(tw_reactor_add_reader(r, a[0], pairwise_cb, &pw), 0);
    assert_int_equal(tw_reactor_add_writer(r, b[0], pairwise_cb, &pw), 0);
    tw_test_poke(a[1]);
    assert_int_equal(tw_reactor_iterate(r, TW_SEC(10)), 1);
    assert_int_equal(tw_reactor_iterate(r, 0), 0);
    assert_int_equal(pw.total, 1);
    close_pair(a);
    close_pair(b);
    tw_reactor_free(r);
}

typedef struct same_fd {
    int fd;
    int reads, writes;
} same_fd_t;

static void same_fd_read_cb(tw_reactor_t *r, int fd, void *arg)
{
    same_fd_t *s = arg;
    s->reads++;
    tw_reactor_remove_all(r, fd);
}

static void same_fd_write_cb(tw_reactor_t *r, int fd, void *arg)
{
    same_fd_t *s = arg;
    s->writes++;
    tw_reactor_remove_all(r, fd);
}

static void reader_removing_writer_of_same_fd_stops_its_event(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int s[2];
    tw_test_socketpair(s);
    tw_test_poke(s[1]); /* s[0] readable and writable at once */
    same_fd_t sf = { .fd = s[0] };
    assert_int_equal(tw_reactor_add_reader(r, s[0], same_fd_read_cb, &sf), 0);
    assert_int_equal(tw_reactor_add_writer(r, s[0], same_fd_write_cb, &sf), 0);
    assert_int_equal(tw_reactor_iterate(r, TW_SEC(10)), 1);
    assert_int_equal(tw_reactor_iterate(r, 0), 0);
    assert_int_equal(sf.reads + sf.writes, 1);
    close_pair(s);
    tw_reactor_free(r);
}

typedef struct reuse {
    int a[2], b[2];
    int first;       /* fd whose callback ran first, or -1 */
    int victim;      /* the fd number that was closed and reused */
    int fresh_w;     /* write end of the pipe now behind `victim` */
    int calls;
    int fresh_calls; /* calls of the watcher added on the reused number */
} reuse_t;

static void fresh_cb(tw_reactor_t *r, int fd, void *arg)
{
    reuse_t *u = arg;
    char buf[16];
    (void)r;
    u->fresh_calls++;
    assert_int_equal(fd, u->victim);
    assert_true(read(fd, buf, sizeof buf) > 0);
}

static void reuse_cb(tw_reactor_t *r, int fd, void *arg)
{
    reuse_t *u = arg;
    u->calls++;
    tw_reactor_remove_reader(r, fd);
    if (u->first >= 0)
        return;
    u->first = fd;
    int victim = fd == u->a[0] ? u->b[0] : u->a[0];
    int *victim_pair = fd == u->a[0] ? u->b : u->a;
    assert_int_equal(tw_reactor_remove_reader(r, victim), 0);
    assert_int_equal(close(victim), 0);
    int np[2];
    tw_test_pipe(np);
    if (np[1] == victim) { /* keep the number free for the read end */
        int w = fcntl(np[1], F_DUPFD_CLOEXEC, victim + 1);
        assert_true(w > victim);
        close(np[1]);
        np[1] = w;
    }
    if (np[0] != victim) {
        assert_int_equal(dup3(np[0], victim, O_CLOEXEC), victim);
        close(np[0]);
    }
    u->victim = victim;
    u->fresh_w = np[1];
    victim_pair[0] = victim; /* now the fresh pipe's read end */
    assert_int_equal(tw_reactor_add_reader(r, victim, fresh_cb, u), 0);
}

static void stale_event_never_reaches_a_watcher_on_a_reused_fd(void **state)
{
    (void)state;
    for (int round = 0; round < 20; round++) {
        tw_reactor_t *r = tw_test_reactor_new();
        reuse_t u = { .first = -1, .victim = -1, .fresh_w = -1 };
        tw_test_pipe(u.a);
        tw_test_pipe(u.b);
        assert_int_equal(tw_reactor_add_reader(r, u.a[0], reuse_cb, &u), 0);
        assert_int_equal(tw_reactor_add_reader(r, u.b[0], reuse_cb, &u), 0);
        tw_test_poke(u.a[1]);
        tw_test_poke(u.b[1]);
        assert_int_equal(tw_reactor_iterate(r, TW_SEC(10)), 1);
        assert_int_equal(u.calls, 1);
        assert_true(u.victim >= 0);
        assert_true(tw_reactor_is_reading(r, u.victim));
        for (int i = 0; i < 3; i++)
            assert_int_equal(tw_reactor_iterate(r, 0), 0);
        assert_int_equal(u.fresh_calls, 0);
        /* The new watcher works once its own pipe has data. */
        tw_test_poke(u.fresh_w);
        assert_int_equal(tw_reactor_iterate(r, TW_SEC(10)), 1);
        assert_int_equal(u.fresh_calls, 1);
        tw_reactor_remove_reader(r, u.victim);
        assert_int_equal(tw_reactor_watched_count(r), 0);
        close_pair(u.a);
        close_pair(u.b);
        close(u.fresh_w);
        tw_reactor_free(r);
    }
}

/* ---- many descriptors and backend limits -------------------------------- */

typedef struct many {
    int *hits;
    int total;
} many_t;

typedef struct many_item {
    many_t *m;
    int idx;
} many_item_t;

static void many_cb(tw_reactor_t *r, int fd, void *arg)
{
    many_item_t *it = arg;
    char b;
    (void)r;
    assert_int_equal(read(fd, &b, 1), 1);
    it->m->hits[it->idx]++;
    it->m->total++;
}

static void five_thousand_socket_readers_all_fire(void **state)
{
    (void)state;
    enum { N = 5000 };
    if (backend_is("select")) {
        print_message("select cannot watch %d descriptors (FD_SETSIZE is %d): skipped; "
                      "see fd_at_or_above_fd_setsize_is_refused_only_by_select\n", N,
                      FD_SETSIZE);
        skip();
    }
    long lim = tw_test_raise_nofile(2 * N + 256);
    if (lim < 2 * N + 256) {
        print_message("RLIMIT_NOFILE hard limit %ld is below %d: skipped\n", lim, 2 * N + 256);
        skip();
    }
    tw_reactor_t *r = tw_test_reactor_new();
    int (*sv)[2] = malloc(N * sizeof *sv);
    many_item_t *items = malloc(N * sizeof *items);
    many_t m = { .hits = calloc(N, sizeof(int)) };
    assert_non_null(sv);
    assert_non_null(items);
    assert_non_null(m.hits);
    for (int i = 0; i < N; i++) {
        tw_test_socketpair(sv[i]);
        items[i] = (many_item_t){ &m, i };
        assert_int_equal(tw_reactor_add_reader(r, sv[i][0], many_cb, &items[i]), 0);
    }
    assert_int_equal(tw_reactor_watched_count(r), N);
    assert_int_equal(tw_reactor_iterate(r, 0), 0);
    for (int i = 0; i < N; i++)
        tw_test_poke(sv[i][1]);
    assert_true(tw_test_iterate_until(r, &m.total, N, 100));
    for (int i = 0; i < 3; i++)
        assert_int_equal(tw_reactor_iterate(r, 0), 0);
    assert_int_equal(m.total, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(m.hits[i], 1);
    for (int i = 0; i < N; i++) {
        tw_reactor_remove_reader(r, sv[i][0]);
        close_pair(sv[i]);
    }
    assert_int_equal(tw_reactor_watched_count(r), 0);
    free(m.hits);
    free(items);
    free(sv);
    tw_reactor_free(r);
}

static void fd_at_or_above_fd_setsize_is_refused_only_by_select(void **state)
{
    (void)state;
    int big = FD_SETSIZE + 5;
    if (tw_test_raise_nofile(big + 16) < big + 16) {
        print_message("RLIMIT_NOFILE is too low to open fd %d: skipped\n", big);
        skip();
    }
    tw_reactor_t *r = tw_test_reactor_new();
    int p[2];
    io_count_t c = { .drain = true };
    tw_test_pipe(p);
    assert_int_equal(dup3(p[0], big, O_CLOEXEC), big);
    int rc_r = tw_reactor_add_reader(r, big, io_read_cb, &c);
    int rc_w = tw_reactor_add_writer(r, big, io_write_cb, &c);
    if (backend_is("select")) {
        assert_int_equal(rc_r, TW_EFDSETSIZE);
        assert_int_equal(rc_w, TW_EFDSETSIZE);
        assert_false(tw_reactor_is_reading(r, big));
        assert_false(tw_reactor_is_writing(r, big));
        assert_int_equal(tw_reactor_watched_count(r), 0);
        assert_int_equal(tw_reactor_remove_reader(r, big), 0);
        /* The reactor still works for descriptors below the limit. */
        assert_int_equal(tw_reactor_add_reader(r, p[0], io_read_cb, &c), 0);
        tw_test_poke(p[1]);
        assert_true(tw_test_iterate_until(r, &c.reads, 1, 100));
        assert_int_equal(c.last_fd, p[0]);
        tw_reactor_remove_reader(r, p[0]);
    } else {
        assert_int_equal(rc_r, 0);
        assert_int_equal(rc_w, 0); /* a pipe's read end is never writable */
        assert_int_equal(tw_reactor_watched_count(r), 1);
        tw_test_poke(p[1]);
        assert_true(tw_test_iterate_until(r, &c.reads, 1, 100));
        assert_int_equal(c.last_fd, big);
        tw_reactor_remove_all(r, big);
    }
    assert_int_equal(tw_reactor_watched_count(r), 0);
    close(big);
    close_pair(p);
    tw_reactor_free(r);
}

static void regular_file_reader_is_refused_on_epoll(void **state)
{
    (void)state;
    if (!backend_is("epoll")) {
        print_message("regular files are refused only by epoll; not checked on %s: "
                      "skipped\n", tw_reactor_backend_name());
        skip();
    }
    tw_reactor_t *r = tw_test_reactor_new();
    char path[] = "/tmp/twine-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    io_count_t c = { 0 };
    assert_int_equal(tw_reactor_add_reader(r, fd, io_read_cb, &c), -EPERM);
    assert_int_equal(tw_reactor_add_writer(r, fd, io_write_cb, &c), -EPERM);
    assert_false(tw_reactor_is_reading(r, fd));
    assert_int_equal(tw_reactor_watched_count(r), 0);
    assert_int_equal(tw_reactor_iterate(r, 0), 0);
    assert_int_equal(c.reads + c.writes, 0);
    close(fd);
    tw_reactor_free(r);
}

/* ---- fork --------------------------------------------------------------- */

/* In the child, cmocka's asserts must not be used: failures are exit codes. */
typedef struct forked {
    int reads, timers, calls, pre_calls, sigs;
} forked_t;

static void forked_pre_call_cb(tw_reactor_t *r, void *arg)
{
    (void)r;
    ((forked_t *)arg)->pre_calls++;
}

static void forked_sig_cb(tw_reactor_t *r, int signo, void *arg)
{
    (void)r;
    (void)signo;
    ((forked_t *)arg)->sigs++;
}

static void forked_read_cb(tw_reactor_t *r, int fd, void *arg)
{
    char b;
    (void)r;
    if (read(fd, &b, 1) == 1)
        ((forked_t *)arg)->reads++;
}

static void forked_timer_cb(tw_timer_t *t, void *arg)
{
    (void)t;
    ((forked_t *)arg)->timers++;
}

static void forked_call_cb(tw_reactor_t *r, void *arg)
{
    (void)r;
    ((forked_t *)arg)->calls++;
}

static int child_iterate_until(tw_reactor_t *r, const int *counter, int want)
{
    tw_time_t give_up = tw_time_now() + TW_SEC(20);
    while (*counter < want && tw_time_now() < give_up)
        if (tw_reactor_iterate(r, TW_MSEC(50)) < 0)
            return 0;
    return *counter == want;
}

static int child_main(tw_reactor_t *r, int wfd, forked_t *f)
{
    if (tw_reactor_after_fork(r) != 0)
        return 10;
    if (tw_reactor_watched_count(r) != 1)
        return 11;
    if (!child_iterate_until(r, &f->timers, 1)) /* started before the fork */
        return 12;
    char c = 'c';
    if (write(wfd, &c, 1) != 1 || !child_iterate_until(r, &f->reads, 1))
        return 13;
    if (!tw_reactor_call_later(r, TW_MSEC(1), forked_timer_cb, f) ||
        !child_iterate_until(r, &f->timers, 2))
        return 14;
    if (tw_call_from_thread(r, forked_call_cb, f) != 0 || !child_iterate_until(r, &f->calls, 1))
        return 15;
    if (f->pre_calls != 0) /* queued before the fork: the parent's, dropped here */
        return 16;
    if (raise(SIGUSR2) != 0 || !child_iterate_until(r, &f->sigs, 1))
        return 17;
    tw_reactor_free(r);
    return 0;
}

static void after_fork_child_keeps_watchers_and_timers(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int p[2];
    forked_t f = { 0 };
    tw_timer_t t;
    tw_test_pipe(p);
    assert_int_equal(tw_reactor_add_reader(r, p[0], forked_read_cb, &f), 0);
    tw_timer_init(&t, r, forked_timer_cb, &f);
    assert_int_equal(tw_timer_start(&t, TW_MSEC(2)), 0); /* cannot fire before the fork */
    assert_int_equal(tw_call_from_thread(r, forked_pre_call_cb, &f), 0);
    assert_int_equal(tw_reactor_on_signal(r, SIGUSR2, forked_sig_cb, &f), 0);

    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_main(r, p[1], &f));
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0)
        fail_msg("child failed at step %d (10: after_fork, 11: count, 12: old timer, "
                 "13: pipe reader, 14: new timer, 15: thread call, 16: pre-fork thread call "
                 "not dropped, 17: signal)", WEXITSTATUS(status));

    /* The parent's reactor is untouched by the child. */
    assert_int_equal(f.reads, 0);
    assert_true(tw_test_iterate_until(r, &f.timers, 1, 1000));
    tw_test_poke(p[1]);
    assert_true(tw_test_iterate_until(r, &f.reads, 1, 100));
    assert_int_equal(tw_call_from_thread(r, forked_call_cb, &f), 0);
    assert_true(tw_test_iterate_until(r, &f.calls, 1, 100));
    assert_true(tw_test_iterate_until(r, &f.pre_calls, 1, 100));
    assert_int_equal(f.sigs, 0); /* the child's signal was the child's */
    assert_int_equal(tw_reactor_on_signal(r, SIGUSR2, NULL, NULL), 0);
    tw_reactor_remove_reader(r, p[0]);
    close_pair(p);
    tw_reactor_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stop_when_not_running_is_refused),
        cmocka_unit_test(run_returns_zero_after_stop_and_runs_again),
        cmocka_unit_test(run_from_a_callback_of_iterate_is_refused),
        cmocka_unit_test(triggers_run_by_phase_then_in_order_added_on_every_run),
        cmocka_unit_test(stop_in_startup_trigger_still_runs_shutdown_triggers),
        cmocka_unit_test(call_when_running_during_run_runs_soon_once),
        cmocka_unit_test(soon_calls_run_in_fifo_order),
        cmocka_unit_test(soon_call_made_by_soon_call_runs_next_iteration),
        cmocka_unit_test(endless_soon_calls_do_not_starve_io),
        cmocka_unit_test(io_then_due_timers_then_soon_calls_in_one_iteration),
        cmocka_unit_test(iterate_zero_returns_promptly),
        cmocka_unit_test(iterate_forever_with_only_a_timer_fires_it),
        cmocka_unit_test(reactor_now_is_cached_in_callbacks_and_fresh_outside),
        cmocka_unit_test(pipe_reader_fires_after_write_and_not_before),
        cmocka_unit_test(readiness_is_level_triggered_until_removed),
        cmocka_unit_test(socket_writer_fires_when_writable_and_stops_when_removed),
        cmocka_unit_test(watch_queries_track_readers_and_writers),
        cmocka_unit_test(watcher_removed_by_earlier_callback_in_batch_is_not_called),
        cmocka_unit_test(reader_and_writer_removing_each_other_run_once),
        cmocka_unit_test(reader_removing_writer_of_same_fd_stops_its_event),
        cmocka_unit_test(stale_event_never_reaches_a_watcher_on_a_reused_fd),
        cmocka_unit_test(five_thousand_socket_readers_all_fire),
        cmocka_unit_test(fd_at_or_above_fd_setsize_is_refused_only_by_select),
        cmocka_unit_test(regular_file_reader_is_refused_on_epoll),
        cmocka_unit_test(after_fork_child_keeps_watchers_and_timers),
    };
    TW_TEST_MAIN(tests);
}
