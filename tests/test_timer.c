/* test_timer.c -- delayed calls: ordering, cancel/reset/delay (also from
 * inside callbacks), reactor-owned timers, saturation of huge delays,
 * tw_seconds, and freeing a reactor with timers pending. */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FAR_FUTURE TW_SEC(100LL * 365 * 24 * 3600) /* a century */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* ---- probes: embedded timers that record when and in what order they fire */

typedef struct recorder {
    int *order; /* probe indices in firing order */
    int n;
} recorder_t;

typedef struct probe {
    tw_timer_t t;
    tw_reactor_t *r;
    recorder_t *rec;
    int idx;
    int fired;
    tw_time_t due;      /* deadline when scheduled */
    tw_time_t fired_at; /* tw_reactor_now() inside the callback */
} probe_t;

static void probe_cb(tw_timer_t *t, void *arg)
{
    probe_t *p = arg;
    assert_ptr_equal(t, &p->t);
    assert_false(tw_timer_active(t));
    p->fired++;
    p->fired_at = tw_reactor_now(p->r);
    if (p->rec)
        p->rec->order[p->rec->n++] = p->idx;
}

static probe_t *probes_new(tw_reactor_t *r, int n, recorder_t *rec)
{
    probe_t *p = calloc((size_t)n, sizeof *p);
    assert_non_null(p);
    for (int i = 0; i < n; i++) {
        tw_timer_init(&p[i].t, r, probe_cb, &p[i]);
        p[i].r = r;
        p[i].rec = rec;
        p[i].idx = i;
    }
    rec->order = calloc((size_t)n, sizeof *rec->order);
    assert_non_null(rec->order);
    rec->n = 0;
    return p;
}

/* Every probe fired exactly once, no earlier than its deadline, in deadline
 * order, ties in the order given by rank[] (the order they were scheduled). */
static void assert_fired_in_order(const probe_t *p, int n, const recorder_t *rec,
                                  const int *rank)
{
    assert_int_equal(rec->n, n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(p[i].fired, 1);
        assert_true(p[i].fired_at >= p[i].due);
    }
    for (int i = 1; i < n; i++) {
        const probe_t *a = &p[rec->order[i - 1]], *b = &p[rec->order[i]];
        if (a->due > b->due || (a->due == b->due && rank[a->idx] > rank[b->idx]))
            fail_msg("timer %d (due %lld) fired before timer %d (due %lld)", a->idx,
                     (long long)a->due, b->idx, (long long)b->due);
    }
}

static int *identity_rank(int n)
{
    int *rank = malloc((size_t)n * sizeof *rank);
    assert_non_null(rank);
    for (int i = 0; i < n; i++)
        rank[i] = i;
    return rank;
}

/* ---- ordering ----------------------------------------------------------- */

static void random_delays_fire_in_deadline_order(void **state)
{
    (void)state;
    enum { N = 500 };
    tw_reactor_t *r = tw_test_reactor_new();
    recorder_t rec;
    probe_t *p = probes_new(r, N, &rec);
    for (int i = 0; i < N; i++) {
        /* 0..20 ms in 100 us steps: plenty of equal deadlines too */
        assert_int_equal(tw_timer_start(&p[i].t, TW_USEC(100) * (tw_time_t)(rng_next() % 200)),
                         0);
        p[i].due = tw_timer_deadline(&p[i].t);
    }
    assert_int_equal(tw_reactor_timer_count(r), N);
    assert_true(tw_test_iterate_until(r, &rec.n, N, 1000000));
    int *rank = identity_rank(N);
    assert_fired_in_order(p, N, &rec, rank);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    free(rank);
    free(rec.order);
    free(p);
    tw_reactor_free(r);
}

static void equal_deadlines_fire_in_scheduling_order(void **state)
{
    (void)state;
    enum { N = 1000 };
    tw_reactor_t *r = tw_test_reactor_new();
    recorder_t rec;
    probe_t *p = probes_new(r, N, &rec);
    int *rank = malloc(N * sizeof *rank);
    int *sched = malloc(N * sizeof *sched);
    assert_non_null(rank);
    assert_non_null(sched);
    /* Schedule in a shuffled order, all at the same instant. */
    for (int i = 0; i < N; i++)
        sched[i] = i;
    for (int i = N - 1; i > 0; i--) {
        int j = (int)(rng_next() % (uint64_t)(i + 1)), tmp = sched[i];
        sched[i] = sched[j];
        sched[j] = tmp;
    }
    tw_time_t when = tw_reactor_now(r) + TW_MSEC(2);
    for (int k = 0; k < N; k++) {
        probe_t *q = &p[sched[k]];
        assert_int_equal(tw_timer_start_at(&q->t, when), 0);
        q->due = when;
        rank[q->idx] = k;
    }
    /* Moving a timer is scheduling it again: the first one now goes last. */
    assert_int_equal(tw_timer_start_at(&p[sched[0]].t, when), 0);
    rank[sched[0]] = N;
    assert_int_equal(tw_timer_deadline(&p[sched[0]].t), when);

    assert_true(tw_test_iterate_until(r, &rec.n, N, 100000));
    assert_fired_in_order(p, N, &rec, rank);
    assert_int_equal(rec.order[N - 1], sched[0]);
    assert_int_equal(rec.order[0], sched[1]);
    free(sched);
    free(rank);
    free(rec.order);
    free(p);
    tw_reactor_free(r);
}

static void hundred_thousand_timers_fire_once_in_order(void **state)
{
    (void)state;
    enum { N = 100000 };
    tw_reactor_t *r = tw_test_reactor_new();
    recorder_t rec;
    probe_t *p = probes_new(r, N, &rec);
    tw_time_t base = tw_reactor_now(r);
    for (int i = 0; i < N; i++) {
        /* Deadlines spread over 50 ms, some already in the past. */
        tw_time_t when = base - TW_MSEC(5) + (tw_time_t)(rng_next() % (uint64_t)TW_MSEC(50));
        if (i % 7 == 0)
            when = base + TW_MSEC(10); /* a crowd of equal deadlines */
        assert_int_equal(tw_timer_start_at(&p[i].t, when), 0);
        p[i].due = when;
    }
    assert_int_equal(tw_reactor_timer_count(r), N);
    assert_true(tw_test_iterate_until(r, &rec.n, N, 1000000));
    int *rank = identity_rank(N);
    assert_fired_in_order(p, N, &rec, rank);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    /* Nothing fires twice later on. */
    assert_true(tw_reactor_iterate(r, 0) >= 0);
    assert_int_equal(rec.n, N);
    free(rank);
    free(rec.order);
    free(p);
    tw_reactor_free(r);
}

static void past_deadline_fires_on_next_iteration(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    recorder_t rec;
    probe_t *p = probes_new(r, 2, &rec);
    assert_int_equal(tw_timer_start_at(&p[0].t, 0), 0);
    assert_int_equal(tw_timer_start(&p[1].t, -TW_SEC(5)), 0); /* negative: as soon as possible */
    assert_true(tw_timer_deadline(&p[1].t) <= tw_time_now());
    assert_int_equal(tw_reactor_iterate(r, 0), 2);
    assert_int_equal(p[0].fired, 1);
    assert_int_equal(p[1].fired, 1);
    assert_int_equal(rec.order[0], 0);
    free(rec.order);
    free(p);
    tw_reactor_free(r);
}

/* ---- changing timers from inside callbacks ------------------------------ */

typedef struct meddler {
    tw_timer_t self;
    probe_t *victims;
    int fired;
    tw_time_t now;
    int rc_reset, rc_delay;
} meddler_t;

static void cancel_victim_cb(tw_timer_t *t, void *arg)
{
    meddler_t *m = arg;
    (void)t;
    m->fired++;
    assert_true(tw_timer_active(&m->victims[0].t));
    tw_timer_cancel(&m->victims[0].t);
    assert_false(tw_timer_active(&m->victims[0].t));
}

static void callback_cancels_a_timer_due_in_the_same_batch(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    recorder_t rec;
    meddler_t m = { .victims = probes_new(r, 1, &rec) };
    tw_timer_init(&m.self, r, cancel_victim_cb, &m);
    tw_time_t when = tw_reactor_now(r) - TW_MSEC(1); /* both due at once */
    assert_int_equal(tw_timer_start_at(&m.self, when), 0);
    assert_int_equal(tw_timer_start_at(&m.victims[0].t, when), 0);
    assert_int_equal(tw_reactor_iterate(r, 0), 1);
    assert_int_equal(m.fired, 1);
    assert_int_equal(m.victims[0].fired, 0);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    for (int i = 0; i < 3; i++)
        assert_true(tw_reactor_iterate(r, 0) >= 0);
    assert_int_equal(m.victims[0].fired, 0);
    free(rec.order);
    free(m.victims);
    tw_reactor_free(r);
}

/* victims[0] and [1] are due in this batch: reset [0] and delay [1], so that
 * neither runs now; cancel [2], due later. */
static void reset_delay_cancel_others_cb(tw_timer_t *t, void *arg)
{
    meddler_t *m = arg;
    (void)t;
    m->fired++;
    m->now = tw_reactor_now(m->victims[0].r);
    m->rc_reset = tw_timer_reset(&m->victims[0].t, TW_MSEC(5));
    m->rc_delay = tw_timer_delay(&m->victims[1].t, TW_MSEC(10));
    tw_timer_cancel(&m->victims[2].t);
    m->victims[0].due = tw_timer_deadline(&m->victims[0].t);
    m->victims[1].due = tw_timer_deadline(&m->victims[1].t);
}

static void callback_resets_delays_and_cancels_other_timers(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    recorder_t rec;
    meddler_t m = { .victims = probes_new(r, 3, &rec) };
    tw_timer_init(&m.self, r, reset_delay_cancel_others_cb, &m);
    tw_time_t when = tw_reactor_now(r) - TW_MSEC(1);
    assert_int_equal(tw_timer_start_at(&m.self, when), 0);
    assert_int_equal(tw_timer_start_at(&m.victims[0].t, when), 0);
    assert_int_equal(tw_timer_start_at(&m.victims[1].t, when), 0);
    assert_int_equal(tw_timer_start(&m.victims[2].t, TW_MSEC(1)), 0);

    assert_int_equal(tw_reactor_iterate(r, 0), 1);
    assert_int_equal(m.fired, 1);
    assert_int_equal(m.rc_reset, 0);
    assert_int_equal(m.rc_delay, 0);
    assert_int_equal(m.victims[0].due, m.now + TW_MSEC(5));
    assert_int_equal(m.victims[1].due, when + TW_MSEC(10));
    assert_int_equal(rec.n, 0);
    assert_int_equal(tw_reactor_timer_count(r), 2);

    assert_true(tw_test_iterate_until(r, &rec.n, 2, 100000));
    assert_int_equal(m.victims[0].fired, 1);
    assert_int_equal(m.victims[1].fired, 1);
    assert_int_equal(m.victims[2].fired, 0);
    assert_true(m.victims[0].fired_at >= m.victims[0].due);
    assert_true(m.victims[1].fired_at >= m.victims[1].due);
    free(rec.order);
    free(m.victims);
    tw_reactor_free(r);
}

typedef struct selfie {
    tw_timer_t t;
    tw_reactor_t *r;
    int fired;
    int restarts;     /* how many more times to restart */
    int cancel_after; /* restart, then cancel right away */
    bool active_in_cb, active_after_restart, active_after_cancel;
    int rc_reset, rc_delay;
} selfie_t;

static void selfie_cb(tw_timer_t *t, void *arg)
{
    selfie_t *s = arg;
    s->fired++;
    s->active_in_cb = tw_timer_active(t);
    s->rc_reset = tw_timer_reset(t, TW_MSEC(1));
    s->rc_delay = tw_timer_delay(t, TW_MSEC(1));
    tw_timer_cancel(t); /* not active: left alone */
    if (s->restarts > 0) {
        s->restarts--;
        assert_int_equal(tw_timer_start(t, 0), 0);
        s->active_after_restart = tw_timer_active(t);
        if (s->cancel_after) {
            tw_timer_cancel(t);
            s->active_after_cancel = tw_timer_active(t);
        }
    }
}

static void timer_is_inactive_in_own_callback_and_active_after_restart(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    selfie_t s = { .r = r, .restarts = 1 };
    tw_timer_init(&s.t, r, selfie_cb, &s);
    assert_false(tw_timer_active(&s.t));
    assert_int_equal(tw_timer_deadline(&s.t), TW_TIME_MAX);
    assert_int_equal(tw_timer_start(&s.t, 0), 0);
    assert_true(tw_timer_active(&s.t));

    assert_int_equal(tw_reactor_iterate(r, 0), 1);
    assert_int_equal(s.fired, 1);
    assert_false(s.active_in_cb);
    assert_int_equal(s.rc_reset, TW_ENOTACTIVE);
    assert_int_equal(s.rc_delay, TW_ENOTACTIVE);
    assert_true(s.active_after_restart);
    assert_true(tw_timer_active(&s.t));

    assert_int_equal(tw_reactor_iterate(r, 0), 1);
    assert_int_equal(s.fired, 2);
    assert_false(tw_timer_active(&s.t));
    assert_true(tw_reactor_iterate(r, 0) >= 0);
    assert_int_equal(s.fired, 2);
    tw_reactor_free(r);
}

static void timer_restarted_and_cancelled_in_own_callback_stays_cancelled(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    selfie_t s = { .r = r, .restarts = 1, .cancel_after = 1 };
    tw_timer_init(&s.t, r, selfie_cb, &s);
    assert_int_equal(tw_timer_start(&s.t, 0), 0);
    assert_int_equal(tw_reactor_iterate(r, 0), 1);
    assert_true(s.active_after_restart);
    assert_false(s.active_after_cancel);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    for (int i = 0; i < 3; i++)
        assert_true(tw_reactor_iterate(r, 0) >= 0);
    assert_int_equal(s.fired, 1);
    tw_reactor_free(r);
}

typedef struct spinner {
    tw_timer_t t;
    int fired;
} spinner_t;

static void spinner_cb(tw_timer_t *t, void *arg)
{
    spinner_t *s = arg;
    s->fired++;
    assert_int_equal(tw_timer_start(t, 0), 0);
}

static void reader_count_cb(tw_reactor_t *r, int fd, void *arg)
{
    (void)r;
    char buf[16];
    (*(int *)arg)++;
    assert_true(read(fd, buf, sizeof buf) > 0);
}

static void zero_delay_self_restart_runs_once_per_iteration(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    spinner_t s = { 0 };
    int reads = 0, p[2];
    tw_test_pipe(p);
    assert_int_equal(tw_reactor_add_reader(r, p[0], reader_count_cb, &reads), 0);
    tw_timer_init(&s.t, r, spinner_cb, &s);
    assert_int_equal(tw_timer_start(&s.t, 0), 0);
    for (int i = 1; i <= 50; i++) {
        assert_int_equal(tw_reactor_iterate(r, TW_SEC(10)), 1);
        assert_int_equal(s.fired, i);
    }
    /* An fd made ready is dispatched in between, not starved. */
    tw_test_poke(p[1]);
    assert_int_equal(tw_reactor_iterate(r, TW_SEC(10)), 2);
    assert_int_equal(reads, 1);
    assert_int_equal(s.fired, 51);
    tw_timer_cancel(&s.t);
    tw_reactor_remove_reader(r, p[0]);
    close(p[0]);
    close(p[1]);
    tw_reactor_free(r);
}

/* ---- reset / delay / cancel outside callbacks --------------------------- */

static void reset_and_delay_move_an_active_timer(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    recorder_t rec;
    probe_t *p = probes_new(r, 1, &rec);
    assert_int_equal(tw_timer_start(&p->t, TW_SEC(3600)), 0);
    tw_time_t before = tw_time_now();
    assert_int_equal(tw_timer_reset(&p->t, TW_SEC(7200)), 0);
    tw_time_t after = tw_time_now();
    tw_time_t d = tw_timer_deadline(&p->t);
    assert_true(d >= before + TW_SEC(7200) && d <= after + TW_SEC(7200));
    assert_int_equal(tw_timer_delay(&p->t, TW_SEC(1)), 0);
    assert_int_equal(tw_timer_deadline(&p->t), d + TW_SEC(1));
    assert_int_equal(tw_reactor_timer_count(r), 1);
    /* Reset to no delay: fires on the next iteration. */
    assert_int_equal(tw_timer_reset(&p->t, 0), 0);
    assert_int_equal(tw_reactor_iterate(r, 0), 1);
    assert_int_equal(p->fired, 1);
    free(rec.order);
    free(p);
    tw_reactor_free(r);
}

static void reset_and_delay_fail_after_firing_or_cancel(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    recorder_t rec;
    probe_t *p = probes_new(r, 2, &rec);
    assert_int_equal(tw_timer_reset(&p[0].t, 0), TW_ENOTACTIVE); /* never started */
    assert_int_equal(tw_timer_delay(&p[0].t, 0), TW_ENOTACTIVE);
    assert_int_equal(tw_timer_start(&p[0].t, 0), 0);
    assert_int_equal(tw_timer_start(&p[1].t, TW_SEC(60)), 0);
    assert_int_equal(tw_reactor_iterate(r, 0), 1);
    assert_int_equal(p[0].fired, 1);
    assert_int_equal(tw_timer_reset(&p[0].t, TW_MSEC(1)), TW_ENOTACTIVE);
    assert_int_equal(tw_timer_delay(&p[0].t, TW_MSEC(1)), TW_ENOTACTIVE);
    assert_false(tw_timer_active(&p[0].t));

    tw_timer_cancel(&p[1].t);
    tw_timer_cancel(&p[1].t); /* twice is harmless */
    assert_int_equal(tw_timer_reset(&p[1].t, TW_MSEC(1)), TW_ENOTACTIVE);
    assert_int_equal(tw_timer_delay(&p[1].t, TW_MSEC(1)), TW_ENOTACTIVE);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    /* Nothing was rescheduled by the failed calls. */
    for (int i = 0; i < 3; i++)
        assert_true(tw_reactor_iterate(r, 0) >= 0);
    assert_int_equal(p[0].fired, 1);
    assert_int_equal(p[1].fired, 0);
    free(rec.order);
    free(p);
    tw_reactor_free(r);
}

/* ---- reactor-owned timers ----------------------------------------------- */

typedef struct owned_ctx {
    tw_reactor_t *r;
    int fired;
    int restarts;
    int cancel_after_restart;
    tw_timer_t *last;
} owned_ctx_t;

static void owned_cb(tw_timer_t *t, void *arg)
{
    owned_ctx_t *c = arg;
    c->fired++;
    c->last = t;
    assert_false(tw_timer_active(t));
    if (c->restarts > 0) {
        c->restarts--;
        assert_int_equal(tw_timer_start(t, 0), 0);
        assert_true(tw_timer_active(t));
        if (c->cancel_after_restart) {
            tw_timer_cancel(t);
            assert_false(tw_timer_active(t));
        }
    }
}

static void call_later_and_call_at_run_once(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    owned_ctx_t a = { .r = r }, b = { .r = r };
    tw_timer_t *ta = tw_reactor_call_later(r, TW_MSEC(1), owned_cb, &a);
    tw_timer_t *tb = tw_reactor_call_at(r, tw_reactor_now(r) + TW_MSEC(2), owned_cb, &b);
    assert_non_null(ta);
    assert_non_null(tb);
    assert_true(tw_timer_active(ta));
    assert_true(tw_timer_deadline(tb) > tw_timer_deadline(ta) - TW_MSEC(1));
    assert_int_equal(tw_reactor_timer_count(r), 2);
    for (int i = 0; i < 100000 && !(a.fired && b.fired); i++)
        assert_true(tw_reactor_iterate(r, TW_MSEC(50)) >= 0);
    assert_int_equal(a.fired, 1);
    assert_int_equal(b.fired, 1);
    assert_ptr_equal(a.last, ta);
    assert_ptr_equal(b.last, tb);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    for (int i = 0; i < 3; i++)
        assert_true(tw_reactor_iterate(r, 0) >= 0);
    assert_int_equal(a.fired + b.fired, 2);
    tw_reactor_free(r);
}

static void cancelled_call_later_never_runs_and_is_freed(void **state)
{
    (void)state;
    enum { N = 3000 }; /* more than the reactor caches: some are really freed */
    tw_reactor_t *r = tw_test_reactor_new();
    owned_ctx_t c = { .r = r };
    tw_timer_t **t = malloc(N * sizeof *t);
    assert_non_null(t);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            t[i] = tw_reactor_call_later(r, TW_MSEC(1) + i, owned_cb, &c);
            assert_non_null(t[i]);
        }
        assert_int_equal(tw_reactor_timer_count(r), N);
        for (int i = 0; i < N; i++)
            tw_timer_cancel(t[i]);
        assert_int_equal(tw_reactor_timer_count(r), 0);
    }
    /* One that is reset and delayed before it is cancelled. */
    tw_timer_t *x = tw_reactor_call_later(r, TW_SEC(60), owned_cb, &c);
    assert_non_null(x);
    assert_int_equal(tw_timer_reset(x, TW_SEC(120)), 0);
    assert_int_equal(tw_timer_delay(x, TW_SEC(1)), 0);
    tw_timer_cancel(x);
    /* Wait past the deadlines the cancelled timers had. */
    tw_time_t until = tw_time_now() + TW_MSEC(20);
    while (tw_time_now() < until)
        assert_true(tw_reactor_iterate(r, TW_MSEC(5)) >= 0);
    assert_int_equal(c.fired, 0);
    free(t);
    tw_reactor_free(r);
}

static void owned_timer_restarted_in_callback_fires_again(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    owned_ctx_t c = { .r = r, .restarts = 2 };
    tw_timer_t *t = tw_reactor_call_later(r, 0, owned_cb, &c);
    assert_non_null(t);
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(tw_reactor_iterate(r, 0), 1);
        assert_int_equal(c.fired, i);
        assert_ptr_equal(c.last, t);
    }
    assert_int_equal(tw_reactor_timer_count(r), 0);
    assert_true(tw_reactor_iterate(r, 0) >= 0);
    assert_int_equal(c.fired, 3);
    tw_reactor_free(r);
}

static void owned_timer_cancelled_in_own_callback_after_restart(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    owned_ctx_t c = { .r = r, .restarts = 1, .cancel_after_restart = 1 };
    assert_non_null(tw_reactor_call_later(r, 0, owned_cb, &c));
    assert_int_equal(tw_reactor_iterate(r, 0), 1);
    assert_int_equal(c.fired, 1);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    for (int i = 0; i < 3; i++)
        assert_true(tw_reactor_iterate(r, 0) >= 0);
    assert_int_equal(c.fired, 1);
    /* The freed timer can be recycled by the next call_later. */
    owned_ctx_t d = { .r = r };
    assert_non_null(tw_reactor_call_later(r, 0, owned_cb, &d));
    assert_int_equal(tw_reactor_iterate(r, 0), 1);
    assert_int_equal(d.fired, 1);
    assert_int_equal(c.fired, 1);
    tw_reactor_free(r);
}

/* ---- limits ------------------------------------------------------------- */

static void huge_delays_saturate_and_stay_pending(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    recorder_t rec;
    probe_t *p = probes_new(r, 4, &rec);
    owned_ctx_t c = { .r = r };
    tw_time_t now = tw_reactor_now(r);
    assert_int_equal(tw_timer_start(&p[0].t, TW_TIME_MAX), 0);
    assert_int_equal(tw_timer_start(&p[1].t, INT64_MAX - 1), 0);
    assert_int_equal(tw_timer_start(&p[2].t, tw_seconds(1e300)), 0);
    assert_int_equal(tw_timer_start(&p[3].t, TW_SEC(3600)), 0);
    tw_time_t d3 = tw_timer_deadline(&p[3].t);
    assert_int_equal(tw_timer_delay(&p[3].t, TW_TIME_MAX), 0); /* delay saturates too */
    tw_timer_t *o1 = tw_reactor_call_later(r, INT64_MAX - 1, owned_cb, &c);
    tw_timer_t *o2 = tw_reactor_call_at(r, TW_TIME_MAX, owned_cb, &c);
    assert_non_null(o1);
    assert_non_null(o2);
    for (int i = 0; i < 4; i++) {
        tw_time_t d = tw_timer_deadline(&p[i].t);
        assert_true(d == TW_TIME_MAX || d > now + FAR_FUTURE);
        assert_true(d >= d3);
    }
    assert_true(tw_timer_deadline(o1) > now + FAR_FUTURE);
    assert_int_equal(tw_timer_deadline(o2), TW_TIME_MAX);
    assert_int_equal(tw_reactor_timer_count(r), 6);
    /* Delaying one at the limit stays at the limit. */
    assert_int_equal(tw_timer_delay(&p[0].t, TW_SEC(1)), 0);
    assert_int_equal(tw_timer_deadline(&p[0].t), TW_TIME_MAX);

    for (int i = 0; i < 3; i++)
        assert_int_equal(tw_reactor_iterate(r, 0), 0);
    assert_int_equal(rec.n, 0);
    assert_int_equal(c.fired, 0);
    for (int i = 0; i < 4; i++)
        assert_true(tw_timer_active(&p[i].t));
    assert_int_equal(tw_reactor_timer_count(r), 6);

    /* A short timer among them still fires on time. */
    owned_ctx_t s = { .r = r };
    assert_non_null(tw_reactor_call_later(r, TW_MSEC(1), owned_cb, &s));
    assert_true(tw_test_iterate_until(r, &s.fired, 1, 1000));
    assert_int_equal(rec.n, 0);
    assert_int_equal(c.fired, 0);
    tw_timer_cancel(o1);
    tw_reactor_free(r); /* with embedded timers still pending: free them after */
    free(rec.order);
    free(p);
}

static void delaying_a_timer_due_long_ago_does_not_overflow(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    recorder_t rec;
    probe_t *p = probes_new(r, 2, &rec);
    assert_int_equal(tw_timer_start_at(&p[0].t, INT64_MIN), 0);
    assert_int_equal(tw_timer_delay(&p[0].t, TW_SEC(1)), 0);
    assert_int_equal(tw_timer_deadline(&p[0].t), INT64_MIN + TW_SEC(1));
    assert_int_equal(tw_timer_delay(&p[0].t, TW_TIME_MAX), 0);
    assert_int_equal(tw_timer_deadline(&p[0].t), INT64_MIN + TW_SEC(1) + TW_TIME_MAX);
    assert_int_equal(tw_timer_start_at(&p[1].t, -TW_SEC(1)), 0);
    assert_int_equal(tw_timer_delay(&p[1].t, TW_MSEC(1)), 0);
    assert_int_equal(tw_reactor_iterate(r, 0), 2); /* both still in the past */
    assert_int_equal(rec.n, 2);
    assert_int_equal(rec.order[0], 1); /* -1 s + 1 ms comes before -1 ns + 1 s */
    free(rec.order);
    free(p);
    tw_reactor_free(r);
}

static void seconds_conversion_clamps_and_rounds(void **state)
{
    (void)state;
    assert_int_equal(tw_seconds(1.5), TW_MSEC(1500));
    assert_int_equal(tw_seconds(0), 0);
    assert_int_equal(tw_seconds(-0.0), 0);
    assert_int_equal(tw_seconds(-1.5), 0);
    assert_int_equal(tw_seconds(-1e300), 0);
    assert_int_equal(tw_seconds(NAN), 0);
    assert_int_equal(tw_seconds(-NAN), 0);
    assert_int_equal(tw_seconds(-INFINITY), 0);
    assert_int_equal(tw_seconds(INFINITY), TW_TIME_MAX);
    assert_int_equal(tw_seconds(1e300), TW_TIME_MAX);
    assert_int_equal(tw_seconds(1e10), TW_TIME_MAX);
    assert_int_equal(tw_seconds(1e-9), 1);
    assert_int_equal(tw_seconds(0.25e-9), 0);
    assert_int_equal(tw_seconds(2.5e-6), TW_NSEC(2500));
    assert_int_equal(tw_seconds(86400), TW_SEC(86400));
    assert_int_equal(tw_seconds(9e9), TW_SEC(9000000000LL));
    assert_true(tw_seconds(9.2e9) > 0);
    assert_int_equal(TW_USEC(3), 3000);
    assert_int_equal(TW_MSEC(3), 3000000);
    assert_int_equal(TW_SEC(3), 3000000000LL);
}

static void timer_count_tracks_active_timers(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    recorder_t rec;
    probe_t *p = probes_new(r, 3, &rec);
    owned_ctx_t c = { .r = r };
    assert_int_equal(tw_reactor_timer_count(r), 0);
    assert_int_equal(tw_timer_start(&p[0].t, 0), 0);
    assert_int_equal(tw_reactor_timer_count(r), 1);
    assert_int_equal(tw_timer_start(&p[0].t, TW_SEC(5)), 0); /* moved, not added */
    assert_int_equal(tw_reactor_timer_count(r), 1);
    assert_int_equal(tw_timer_start(&p[1].t, 0), 0);
    assert_int_equal(tw_timer_start(&p[2].t, TW_SEC(5)), 0);
    assert_non_null(tw_reactor_call_later(r, 0, owned_cb, &c));
    tw_timer_t *o = tw_reactor_call_later(r, TW_SEC(5), owned_cb, &c);
    assert_non_null(o);
    assert_int_equal(tw_reactor_timer_count(r), 5);
    assert_int_equal(tw_reactor_iterate(r, 0), 2); /* p[1] and one owned */
    assert_int_equal(tw_reactor_timer_count(r), 3);
    tw_timer_cancel(&p[2].t);
    tw_timer_cancel(o);
    assert_int_equal(tw_reactor_timer_count(r), 1);
    tw_timer_cancel(&p[0].t);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    free(rec.order);
    free(p);
    tw_reactor_free(r);
}

static void freeing_reactor_drops_pending_timers_without_leaks(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    recorder_t rec;
    probe_t *p = probes_new(r, 3, &rec);
    owned_ctx_t c = { .r = r };
    for (int i = 0; i < 3; i++)
        assert_int_equal(tw_timer_start(&p[i].t, i == 0 ? 0 : TW_SEC(60)), 0);
    for (int i = 0; i < 100; i++)
        assert_non_null(tw_reactor_call_later(r, i == 0 ? 0 : TW_SEC(60) + i, owned_cb, &c));
    /* A few in the reactor's cache of free timers too. */
    for (int i = 0; i < 10; i++)
        tw_timer_cancel(tw_reactor_call_later(r, TW_SEC(1), owned_cb, &c));
    assert_int_equal(tw_reactor_timer_count(r), 103);
    tw_reactor_free(r); /* even the due ones are dropped, never called */
    assert_int_equal(c.fired, 0);
    assert_int_equal(rec.n, 0);
    for (int i = 0; i < 3; i++)
        assert_false(tw_timer_active(&p[i].t));
    free(rec.order);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(random_delays_fire_in_deadline_order),
        cmocka_unit_test(equal_deadlines_fire_in_scheduling_order),
        cmocka_unit_test(hundred_thousand_timers_fire_once_in_order),
        cmocka_unit_test(past_deadline_fires_on_next_iteration),
        cmocka_unit_test(callback_cancels_a_timer_due_in_the_same_batch),
        cmocka_unit_test(callback_resets_delays_and_cancels_other_timers),
        cmocka_unit_test(timer_is_inactive_in_own_callback_and_active_after_restart),
        cmocka_unit_test(timer_restarted_and_cancelled_in_own_callback_stays_cancelled),
        cmocka_unit_test(zero_delay_self_restart_runs_once_per_iteration),
        cmocka_unit_test(reset_and_delay_move_an_active_timer),
        cmocka_unit_test(reset_and_delay_fail_after_firing_or_cancel),
        cmocka_unit_test(call_later_and_call_at_run_once),
        cmocka_unit_test(cancelled_call_later_never_runs_and_is_freed),
        cmocka_unit_test(owned_timer_restarted_in_callback_fires_again),
        cmocka_unit_test(owned_timer_cancelled_in_own_callback_after_restart),
        cmocka_unit_test(huge_delays_saturate_and_stay_pending),
        cmocka_unit_test(delaying_a_timer_due_long_ago_does_not_overflow),
        cmocka_unit_test(seconds_conversion_clamps_and_rounds),
        cmocka_unit_test(timer_count_tracks_active_timers),
        cmocka_unit_test(freeing_reactor_drops_pending_timers_without_leaks),
    };
    TW_TEST_MAIN(tests);
}
