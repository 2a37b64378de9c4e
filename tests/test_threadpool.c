/* test_threadpool.c -- the thread bridge (tw_thread.h): tw_defer_to_thread
 * (exactly once, in the reactor thread, values and failures, progress before
 * the result), tw_call_in_thread, growing and resizing, idle timeouts,
 * cancellation, stop (cancelling and draining), the reactor's shutdown, the
 * default pool, tw_blocking_call_from_thread, and freeing a pool from a
 * callback or with a worker blocked on the reactor.
 *
 * Must be TSan-clean: what workers and the reactor thread share is atomic,
 * behind a gate's mutex, or handed over through a Deferred.  Nothing sleeps
 * to decide an outcome: tests iterate the reactor until a condition holds,
 * under a guard (a hang, not a slow machine, is what the guard catches). */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tw_testing.h"
#include "tw_thread.h"

/* ---- helpers ------------------------------------------------------------------ */

static void fail_on_unhandled(const tw_failure_t *f, void *arg)
{
    fail_msg("unexpected unhandled failure in a Deferred: [%s] %s (%d)", f->domain,
             f->message, f->code);
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

static void assert_clean(tw_reactor_t *r)
{
    char what[160];
    if (tw_reactor_check_clean(r, what, sizeof what) != 0)
        fail_msg("%s", what);
}

/* A gate workers wait at until the reactor thread opens it. */
typedef struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open;
    int waiting; /* workers at the gate now */
} gate_t;

static void gate_init(gate_t *g)
{
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->open = false;
    g->waiting = 0;
}

static void gate_pass(gate_t *g)
{
    pthread_mutex_lock(&g->lock);
    g->waiting++;
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    g->waiting--;
    pthread_mutex_unlock(&g->lock);
}

static void gate_open(gate_t *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static int gate_waiting(gate_t *g)
{
    pthread_mutex_lock(&g->lock);
    int n = g->waiting;
    pthread_mutex_unlock(&g->lock);
    return n;
}

static void gate_destroy(gate_t *g)
{
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
}

/* Iterate r (a few ms at a time) until pred(arg) holds; a 30 s guard. */
static void iterate_until_pred(tw_reactor_t *r, bool (*pred)(void *arg), void *arg,
                               const char *what)
{
    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    while (!pred(arg)) {
        if (tw_time_now() > give_up)
            fail_msg("gave up waiting for %s", what);
        assert_true(tw_reactor_iterate(r, TW_MSEC(2)) >= 0);
    }
}

typedef struct want_stats {
    tw_threadpool_t *p;
    int threads, idle, running; /* -1: any */
    long queued;
} want_stats_t;

static bool stats_match(void *arg)
{
    want_stats_t *w = arg;
    tw_threadpool_stats_t st;
    tw_threadpool_stats(w->p, &st);
    return (w->threads < 0 || st.threads == w->threads) && (w->idle < 0 || st.idle == w->idle) &&
           (w->running < 0 || st.running == (size_t)w->running) &&
           (w->queued < 0 || st.queued == (size_t)w->queued);
}

static void wait_stats(tw_reactor_t *r, tw_threadpool_t *p, int threads, int idle, int running,
                       long queued)
{
    want_stats_t w = { p, threads, idle, running, queued };
    if (!stats_match(&w)) {
        tw_time_t give_up = tw_time_now() + TW_SEC(30);
        while (!stats_match(&w) && tw_time_now() < give_up)
            assert_true(tw_reactor_iterate(r, TW_MSEC(2)) >= 0);
    }
    tw_threadpool_stats_t st;
    tw_threadpool_stats(p, &st);
    if (!stats_match(&w))
        fail_msg("pool stats: threads %d idle %d running %zu queued %zu; wanted %d %d %d %ld",
                 st.threads, st.idle, st.running, st.queued, threads, idle, running, queued);
}

typedef struct gate_wait {
    gate_t *g;
    int n;
} gate_wait_t;

static bool gate_has(void *arg)
{
    gate_wait_t *w = arg;
    return gate_waiting(w->g) >= w->n;
}

static void wait_at_gate(tw_reactor_t *r, gate_t *g, int n)
{
    gate_wait_t w = { g, n };
    iterate_until_pred(r, gate_has, &w, "workers at the gate");
}

/* What the Deferreds of one test saw; reactor thread only. */
typedef struct seen {
    int ok, failed;
    int code;               /* of the last failure */
    char domain[16], msg[64];
    uintptr_t value;        /* of the last success */
} seen_t;

static tw_outcome_t seen_ok(tw_outcome_t in, void *a1, void *a2)
{
    seen_t *s = a1;
    s->ok++;
    s->value = (uintptr_t)in.ptr;
    tw_outcome_discard(in);
    return TW_OK(NULL, NULL);
}

static tw_outcome_t seen_fail(tw_outcome_t in, void *a1, void *a2)
{
    seen_t *s = a1;
    s->failed++;
    s->code = in.failure->code;
    snprintf(s->domain, sizeof s->domain, "%s", in.failure->domain);
    snprintf(s->msg, sizeof s->msg, "%s", in.failure->message);
    tw_outcome_discard(in);
    return TW_OK(NULL, NULL);
}

static void watch(tw_deferred_t *d, seen_t *s)
{
    assert_non_null(d);
    assert_int_equal(tw_deferred_add_callbacks(d, seen_ok, seen_fail, s, NULL, NULL), 0);
    tw_deferred_unref(d);
}

static tw_threadpool_t *pool_new(tw_reactor_t *r, int min, int max, tw_time_t idle,
                                 unsigned flags)
{
    tw_threadpool_options_t o = { .min_threads = min, .max_threads = max, .name = "test",
                                  .idle_timeout = idle, .flags = flags };
    tw_threadpool_t *p = tw_threadpool_new(r, &o);
    assert_non_null(p);
    return p;
}

/* ---- many round trips -------------------------------------------------------------- */

enum { MANY = 10000 };

typedef struct many {
    pthread_t reactor;
    _Atomic uint8_t ran[MANY];       /* workers */
    atomic_int in_reactor_thread;    /* work that ran in the reactor thread */
    uint8_t fired[MANY];             /* reactor thread */
    int total, bad;
} many_t;

static many_t *many_g;

static tw_outcome_t many_work(void *arg)
{
    uintptr_t i = (uintptr_t)arg;
    if (pthread_equal(pthread_self(), many_g->reactor))
        atomic_fetch_add(&many_g->in_reactor_thread, 1);
    atomic_fetch_add(&many_g->ran[i], 1);
    uintptr_t *v = malloc(sizeof *v); /* a value with a destructor: ASan checks it is freed */
    if (!v)
        return TW_FAIL(tw_failure_new("test", -ENOMEM, NULL));
    *v = i * 3 + 1;
    return TW_OK(v, free);
}

static tw_outcome_t many_done(tw_outcome_t in, void *a1, void *a2)
{
    uintptr_t i = (uintptr_t)a1;
    if (!pthread_equal(pthread_self(), many_g->reactor) || in.kind != TW_OUTCOME_OK ||
        *(uintptr_t *)in.ptr != i * 3 + 1)
        many_g->bad++;
    many_g->fired[i]++;
    many_g->total++;
    tw_outcome_discard(in);
    return TW_OK(NULL, NULL);
}

static void ten_thousand_deferred_calls_fire_once_in_the_reactor_thread(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    many_t *m = calloc(1, sizeof *m);
    assert_non_null(m);
    many_g = m;
    m->reactor = pthread_self();
    tw_threadpool_t *p = pool_new(r, 0, 4, 0, 0);
    for (uintptr_t i = 0; i < MANY; i++) {
        tw_deferred_t *d = tw_defer_to_thread(r, p, many_work, (void *)i);
        assert_non_null(d);
        assert_int_equal(tw_deferred_add_callback(d, many_done, (void *)i, NULL), 0);
        tw_deferred_unref(d);
    }
    tw_test_run_until(r, &m->total, MANY);
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(atomic_load(&m->ran[i]), 1);
        assert_int_equal(m->fired[i], 1);
    }
    assert_int_equal(m->bad, 0);
    assert_int_equal(atomic_load(&m->in_reactor_thread), 0);
    tw_threadpool_stats_t st;
    tw_threadpool_stats(p, &st);
    assert_true(st.threads >= 1 && st.threads <= 4);
    assert_int_equal(st.queued, 0);
    tw_threadpool_free(p);
    assert_clean(r);
    tw_reactor_free(r);
    free(m);
}

/* ---- failures, progress, call_in_thread ------------------------------------------ */

static tw_outcome_t failing_work(void *arg)
{
    return TW_FAIL(tw_failure_new("work", -EIO, "disk %s", (const char *)arg));
}

static tw_outcome_t null_failure_work(void *arg)
{
    return TW_FAIL(NULL); /* out of memory for the failure itself */
}

static void failures_from_work_reach_the_errback(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_threadpool_t *p = pool_new(r, 1, 2, 0, 0);
    seen_t s = { 0 }, s2 = { 0 };
    watch(tw_defer_to_thread(r, p, failing_work, "on fire"), &s);
    watch(tw_defer_to_thread(r, p, null_failure_work, NULL), &s2);
    tw_test_run_until(r, &s.failed, 1);
    tw_test_run_until(r, &s2.failed, 1);
    assert_int_equal(s.ok, 0);
    assert_string_equal(s.domain, "work");
    assert_int_equal(s.code, -EIO);
    assert_string_equal(s.msg, "disk on fire");
    assert_int_equal(s2.code, -ENOMEM);
    tw_threadpool_free(p);
    assert_clean(r);
    tw_reactor_free(r);
}

typedef struct progress {
    tw_reactor_t *r;
    int reports;       /* reactor thread */
    int at_result;     /* reports seen when the result arrived */
} progress_t;

static void progress_report(tw_reactor_t *r, void *arg)
{
    ((progress_t *)arg)->reports++;
}

static tw_outcome_t progress_work(void *arg)
{
    progress_t *pr = arg;
    for (int i = 0; i < 3; i++)
        tw_call_from_thread(pr->r, progress_report, pr); /* a failure shows as a short count */
    return TW_OK(NULL, NULL);
}

static tw_outcome_t progress_done(tw_outcome_t in, void *a1, void *a2)
{
    progress_t *pr = a1;
    pr->at_result = pr->reports;
    return in;
}

static void progress_from_a_worker_arrives_before_its_result(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_threadpool_t *p = pool_new(r, 0, 4, 0, 0);
    enum { N = 200 };
    progress_t pr[N];
    seen_t s = { 0 };
    for (int i = 0; i < N; i++) {
        pr[i] = (progress_t){ .r = r, .at_result = -1 };
        tw_deferred_t *d = tw_defer_to_thread(r, p, progress_work, &pr[i]);
        assert_non_null(d);
        assert_int_equal(tw_deferred_add_callback(d, progress_done, &pr[i], NULL), 0);
        watch(d, &s);
    }
    tw_test_run_until(r, &s.ok, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(pr[i].at_result, 3);
    tw_threadpool_free(p);
    assert_clean(r);
    tw_reactor_free(r);
}

typedef struct calls {
    tw_reactor_t *r;
    tw_threadpool_t *p;
    pthread_t reactor;
    atomic_int ran, off_thread, nested_rc;
    int reported; /* reactor thread */
} calls_t;

static void call_report(tw_reactor_t *r, void *arg)
{
    ((calls_t *)arg)->reported++;
}

static void call_fn(void *arg)
{
    calls_t *c = arg;
    if (!pthread_equal(pthread_self(), c->reactor))
        atomic_fetch_add(&c->off_thread, 1);
    atomic_fetch_add(&c->ran, 1);
    tw_call_from_thread(c->r, call_report, c);
}

static void call_fn_nested(void *arg)
{
    calls_t *c = arg; /* any thread may submit: a worker too */
    atomic_store(&c->nested_rc, tw_call_in_thread(c->p, call_fn, c, NULL));
    call_fn(arg);
}

static void call_in_thread_runs_in_a_worker(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_threadpool_t *p = pool_new(r, 0, 3, 0, 0);
    calls_t c = { .r = r, .p = p, .reactor = pthread_self(), .nested_rc = 1 };
    for (int i = 0; i < 50; i++)
        assert_int_equal(tw_call_in_thread(p, call_fn, &c, NULL), 0);
    assert_int_equal(tw_call_in_thread(p, call_fn_nested, &c, NULL), 0);
    tw_test_run_until(r, &c.reported, 52);
    assert_int_equal(atomic_load(&c.ran), 52);
    assert_int_equal(atomic_load(&c.off_thread), 52);
    assert_int_equal(atomic_load(&c.nested_rc), 0);
    assert_int_equal(tw_call_in_thread(p, NULL, NULL, NULL), -EINVAL);
    tw_threadpool_free(p);
    assert_clean(r);
    tw_reactor_free(r);
}

/* ---- sizes ------------------------------------------------------------------------- */

typedef struct blocker {
    gate_t *g;
    atomic_int now, most, ran;
} blocker_t;

static tw_outcome_t blocking_work(void *arg)
{
    blocker_t *b = arg;
    int n = atomic_fetch_add(&b->now, 1) + 1;
    int m = atomic_load(&b->most);
    while (n > m && !atomic_compare_exchange_weak(&b->most, &m, n))
        ;
    gate_pass(b->g);
    atomic_fetch_sub(&b->now, 1);
    atomic_fetch_add(&b->ran, 1);
    return TW_OK(NULL, NULL);
}

static void grows_on_demand_only_up_to_max(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_threadpool_t *p = pool_new(r, 0, 3, TW_SEC(30), 0);
    tw_threadpool_stats_t st;
    tw_threadpool_stats(p, &st);
    assert_int_equal(st.threads, 0); /* min 0: nothing started yet */
    gate_t g;
    gate_init(&g);
    blocker_t b = { .g = &g };
    seen_t s = { 0 };
    for (int i = 0; i < 20; i++)
        watch(tw_defer_to_thread(r, p, blocking_work, &b), &s);
    wait_at_gate(r, &g, 3);
    wait_stats(r, p, 3, 0, 3, 17);
    gate_open(&g);
    tw_test_run_until(r, &s.ok, 20);
    assert_int_equal(atomic_load(&b.most), 3);
    assert_int_equal(atomic_load(&b.ran), 20);
    wait_stats(r, p, 3, 3, 0, 0); /* all idle now (the timeout is long) */
    tw_threadpool_free(p);
    gate_destroy(&g);
    assert_clean(r);
    tw_reactor_free(r);
}

static void resize_starts_and_stops_threads(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_threadpool_t *p = pool_new(r, 2, 4, TW_SEC(30), 0);
    wait_stats(r, p, 2, 2, 0, 0); /* min threads start at once */
    assert_int_equal(tw_threadpool_resize(p, 5, 6), 0);
    wait_stats(r, p, 5, 5, 0, 0);
    assert_int_equal(tw_threadpool_resize(p, 0, 1), 0); /* idle ones above max go now */
    wait_stats(r, p, 1, 1, 0, 0);

    /* Busy threads above a shrunk max finish their item first. */
    assert_int_equal(tw_threadpool_resize(p, 0, 4), 0);
    gate_t g;
    gate_init(&g);
    blocker_t b = { .g = &g };
    seen_t s = { 0 };
    for (int i = 0; i < 4; i++)
        watch(tw_defer_to_thread(r, p, blocking_work, &b), &s);
    wait_at_gate(r, &g, 4);
    wait_stats(r, p, 4, 0, 4, 0);
    assert_int_equal(tw_threadpool_resize(p, 0, 2), 0);
    wait_stats(r, p, 4, 0, 4, 0); /* still busy: nobody is cut short */
    gate_open(&g);
    tw_test_run_until(r, &s.ok, 4);
    wait_stats(r, p, 2, 2, 0, 0);

    /* Growing max while work waits starts threads for it. */
    gate_t g2;
    gate_init(&g2);
    blocker_t b2 = { .g = &g2 };
    for (int i = 0; i < 5; i++)
        watch(tw_defer_to_thread(r, p, blocking_work, &b2), &s);
    wait_at_gate(r, &g2, 2);
    wait_stats(r, p, 2, 0, 2, 3);
    assert_int_equal(tw_threadpool_resize(p, 0, 5), 0);
    wait_at_gate(r, &g2, 5);
    wait_stats(r, p, 5, 0, 5, 0);
    gate_open(&g2);
    tw_test_run_until(r, &s.ok, 9);

    assert_int_equal(tw_threadpool_resize(p, -1, 2), -EINVAL);
    assert_int_equal(tw_threadpool_resize(p, 0, 0), -EINVAL);
    assert_int_equal(tw_threadpool_resize(p, 3, 2), -EINVAL);
    tw_threadpool_free(p);
    gate_destroy(&g);
    gate_destroy(&g2);
    assert_clean(r);
    tw_reactor_free(r);
}

static void idle_threads_above_min_exit_after_the_timeout(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_threadpool_t *p = pool_new(r, 1, 4, TW_MSEC(50), 0);
    gate_t g;
    gate_init(&g);
    blocker_t b = { .g = &g };
    seen_t s = { 0 };
    for (int i = 0; i < 4; i++)
        watch(tw_defer_to_thread(r, p, blocking_work, &b), &s);
    wait_at_gate(r, &g, 4);
    wait_stats(r, p, 4, 0, 4, 0);
    gate_open(&g);
    tw_test_run_until(r, &s.ok, 4);
    wait_stats(r, p, 1, 1, 0, 0); /* the one at min stays */

    /* And the pool still works, growing again. */
    gate_t g2;
    gate_init(&g2);
    blocker_t b2 = { .g = &g2 };
    for (int i = 0; i < 3; i++)
        watch(tw_defer_to_thread(r, p, blocking_work, &b2), &s);
    wait_at_gate(r, &g2, 3);
    gate_open(&g2);
    tw_test_run_until(r, &s.ok, 7);
    wait_stats(r, p, 1, 1, 0, 0);
    tw_threadpool_free(p);
    gate_destroy(&g);
    gate_destroy(&g2);
    assert_clean(r);
    tw_reactor_free(r);
}

static void bad_options_are_refused(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_threadpool_options_t o = { .min_threads = 3, .max_threads = 2 };
    errno = 0;
    assert_null(tw_threadpool_new(r, &o));
    assert_int_equal(errno, EINVAL);
    o = (tw_threadpool_options_t){ .max_threads = 0 };
    assert_null(tw_threadpool_new(r, &o));
    assert_int_equal(errno, EINVAL);
    o = (tw_threadpool_options_t){ .min_threads = -1, .max_threads = 1 };
    assert_null(tw_threadpool_new(r, &o));
    assert_int_equal(errno, EINVAL);
    tw_threadpool_t *p = tw_threadpool_new(r, NULL); /* all defaults */
    assert_non_null(p);
    assert_null(tw_defer_to_thread(r, p, NULL, NULL));
    assert_int_equal(errno, EINVAL);
    tw_threadpool_free(p);
    tw_threadpool_free(NULL);
    assert_clean(r);
    tw_reactor_free(r);
}

/* ---- names and stacks -------------------------------------------------------------- */

static tw_outcome_t name_work(void *arg)
{
    char *name = calloc(1, 32);
    if (!name)
        return TW_FAIL(NULL);
#ifdef __linux__
    pthread_getname_np(pthread_self(), name, 32);
#endif
    return TW_OK(name, free);
}

typedef struct named {
    char name[32];
    int n;
} named_t;

static tw_outcome_t name_done(tw_outcome_t in, void *a1, void *a2)
{
    named_t *nm = a1;
    snprintf(nm->name, sizeof nm->name, "%s", (char *)in.ptr);
    nm->n++;
    tw_outcome_discard(in);
    return TW_OK(NULL, NULL);
}

static void threads_are_named_prefix_dash_number(void **state)
{
#ifdef __linux__
    tw_reactor_t *r = tw_test_reactor_new();
    named_t nm = { 0 };
    /* The default pool: "tw-pool-1". */
    tw_deferred_t *d = tw_defer_to_thread(r, NULL, name_work, NULL);
    assert_non_null(d);
    assert_int_equal(tw_deferred_add_callback(d, name_done, &nm, NULL), 0);
    tw_deferred_unref(d);
    tw_test_run_until(r, &nm.n, 1);
    assert_string_equal(nm.name, "tw-pool-1");

    /* A long prefix is cut: the kernel keeps 15 bytes. */
    tw_threadpool_options_t o = { .max_threads = 1, .name = "a-very-long-pool-name",
                                  .stack_size = 256 * 1024 };
    tw_threadpool_t *p = tw_threadpool_new(r, &o);
    assert_non_null(p);
    d = tw_defer_to_thread(r, p, name_work, NULL);
    assert_non_null(d);
    assert_int_equal(tw_deferred_add_callback(d, name_done, &nm, NULL), 0);
    tw_deferred_unref(d);
    tw_test_run_until(r, &nm.n, 2);
    assert_string_equal(nm.name, "a-very-long-poo");
    tw_threadpool_free(p);
    tw_reactor_free(r);
#else
    skip();
#endif
}

static tw_outcome_t stack_work(void *arg)
{
    size_t size = 0;
#ifdef __linux__
    pthread_attr_t a;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getstacksize(&a, &size);
        pthread_attr_destroy(&a);
    }
#endif
    return TW_OK((void *)(uintptr_t)size, NULL);
}

static void stack_size_is_applied(void **state)
{
#ifdef __linux__
    tw_reactor_t *r = tw_test_reactor_new();
    tw_threadpool_options_t o = { .max_threads = 1, .stack_size = 1024 * 1024 };
    tw_threadpool_t *p = tw_threadpool_new(r, &o);
    assert_non_null(p);
    seen_t s = { 0 };
    watch(tw_defer_to_thread(r, p, stack_work, NULL), &s);
    tw_test_run_until(r, &s.ok, 1);
    assert_true(s.value >= 1024 * 1024 && s.value < 2 * 1024 * 1024);
    tw_threadpool_free(p);
    tw_reactor_free(r);
#else
    skip();
#endif
}

/* ---- cancelling ---------------------------------------------------------------- */

typedef struct counted {
    atomic_int ran;
} counted_t;

static tw_outcome_t counted_work(void *arg)
{
    atomic_fetch_add(&((counted_t *)arg)->ran, 1);
    char *v = strdup("a value nobody will see"); /* freed when it arrives */
    return v ? TW_OK(v, free) : TW_FAIL(NULL);
}

static void cancel_takes_queued_work_off_the_queue(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_threadpool_t *p = pool_new(r, 0, 1, 0, 0);
    gate_t g;
    gate_init(&g);
    blocker_t b = { .g = &g };
    counted_t c = { 0 };
    seen_t first = { 0 }, queued = { 0 }, later = { 0 };
    tw_deferred_t *d1 = tw_defer_to_thread(r, p, blocking_work, &b);
    tw_deferred_t *d2 = tw_defer_to_thread(r, p, counted_work, &c);
    tw_deferred_t *d3 = tw_defer_to_thread(r, p, counted_work, &c);
    assert_non_null(d1);
    assert_non_null(d2);
    assert_non_null(d3);
    wait_at_gate(r, &g, 1);
    wait_stats(r, p, 1, 0, 1, 2);

    tw_deferred_cancel(d2); /* queued: off the queue, errback at once */
    assert_int_equal(tw_deferred_add_callbacks(d2, seen_ok, seen_fail, &queued, NULL, NULL), 0);
    tw_deferred_unref(d2);
    assert_int_equal(queued.failed, 1);
    assert_string_equal(queued.domain, "deferred");
    assert_int_equal(queued.code, -ECANCELED);
    wait_stats(r, p, 1, 0, 1, 1);

    tw_deferred_cancel(d1); /* running: errback now, its outcome is discarded later */
    assert_int_equal(tw_deferred_add_callbacks(d1, seen_ok, seen_fail, &first, NULL, NULL), 0);
    tw_deferred_unref(d1);
    assert_int_equal(first.failed, 1);
    assert_string_equal(first.domain, "deferred");
    assert_int_equal(first.code, -ECANCELED);

    watch(d3, &later);
    gate_open(&g);
    tw_test_run_until(r, &later.ok, 1);
    wait_stats(r, p, 1, 1, 0, 0);
    assert_int_equal(atomic_load(&c.ran), 1); /* d2's never ran */
    assert_int_equal(atomic_load(&b.ran), 1);
    assert_int_equal(first.ok + first.failed, 1);

    /* A cancel after the result fired does nothing. */
    tw_deferred_t *d4 = tw_defer_to_thread(r, p, counted_work, &c);
    seen_t s4 = { 0 };
    assert_int_equal(tw_deferred_add_callbacks(d4, seen_ok, seen_fail, &s4, NULL, NULL), 0);
    tw_test_run_until(r, &s4.ok, 1);
    tw_deferred_cancel(d4);
    tw_deferred_unref(d4);
    assert_int_equal(s4.failed, 0);
    tw_threadpool_free(p);
    gate_destroy(&g);
    assert_clean(r);
    tw_reactor_free(r);
}

/* tw_deferred_add_timeout: a timeout while the work runs is the usual
 * timeout failure; while it is queued, the pool's own cancel failure. */
static void timeouts_on_running_and_queued_work(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_threadpool_t *p = pool_new(r, 0, 1, 0, 0);
    gate_t g;
    gate_init(&g);
    blocker_t b = { .g = &g };
    counted_t c = { 0 };
    seen_t running = { 0 }, queued = { 0 };
    tw_deferred_t *d1 = tw_defer_to_thread(r, p, blocking_work, &b);
    tw_deferred_t *d2 = tw_defer_to_thread(r, p, counted_work, &c);
    assert_non_null(d1);
    assert_non_null(d2);
    wait_at_gate(r, &g, 1);
    assert_int_equal(tw_deferred_add_timeout(d1, r, TW_MSEC(1)), 0);
    assert_int_equal(tw_deferred_add_timeout(d2, r, TW_MSEC(1)), 0);
    watch(d1, &running);
    watch(d2, &queued);
    tw_test_run_until(r, &running.failed, 1);
    tw_test_run_until(r, &queued.failed, 1);
    assert_string_equal(running.domain, "deferred");
    assert_int_equal(running.code, -ETIMEDOUT);
    assert_string_equal(queued.domain, "deferred"); /* taken off the queue, timed out */
    assert_int_equal(queued.code, -ETIMEDOUT);
    gate_open(&g);
    wait_stats(r, p, 1, 1, 0, 0);
    assert_int_equal(atomic_load(&c.ran), 0);
    tw_threadpool_free(p);
    gate_destroy(&g);
    assert_clean(r);
    tw_reactor_free(r);
}

/* The pool's queued cancel fires d inside the cancel: a callback cancelling
 * another queued Deferred then is fine. */
static tw_outcome_t cancel_other(tw_outcome_t in, void *a1, void *a2)
{
    tw_deferred_cancel(a1);
    return in;
}

/* ---- stopping ------------------------------------------------------------------- */

typedef struct dropped {
    int n; /* reactor thread: drop runs in the thread that stops the pool */
    pthread_t thread;
    bool wrong_thread;
} dropped_t;

static void drop_fn(void *arg)
{
    dropped_t *dr = arg;
    dr->n++;
    if (!pthread_equal(pthread_self(), dr->thread))
        dr->wrong_thread = true;
}

static void never_called(void *arg)
{
    fail_msg("a dropped call ran");
}

static void stop_cancels_queued_work_and_waits_for_running(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_threadpool_t *p = pool_new(r, 0, 1, 0, 0);
    gate_t g;
    gate_init(&g);
    blocker_t b = { .g = &g };
    counted_t c = { 0 };
    dropped_t dr = { .thread = pthread_self() };
    seen_t running = { 0 }, queued = { 0 }, stopped = { 0 };
    watch(tw_defer_to_thread(r, p, blocking_work, &b), &running);
    wait_at_gate(r, &g, 1);
    tw_deferred_t *q[5];
    for (int i = 0; i < 5; i++) {
        q[i] = tw_defer_to_thread(r, p, counted_work, &c);
        assert_non_null(q[i]);
    }
    /* The first cancelled one's callback cancels another (already failed). */
    assert_int_equal(tw_deferred_add_callbacks(q[0], cancel_other, cancel_other, q[1], NULL,
                                               NULL), 0);
    for (int i = 0; i < 5; i++)
        watch(q[i], &queued);
    assert_int_equal(tw_call_in_thread(p, never_called, &dr, drop_fn), 0);
    assert_int_equal(tw_call_in_thread(p, never_called, &dr, NULL), 0);

    tw_deferred_t *sd = tw_threadpool_stop(p);
    assert_non_null(sd);
    assert_int_equal(queued.failed, 5); /* at once, in the reactor thread */
    assert_string_equal(queued.domain, "thread");
    assert_int_equal(queued.code, -ECANCELED);
    assert_string_equal(queued.msg, "thread pool stopped");
    assert_int_equal(dr.n, 1);
    assert_false(dr.wrong_thread);
    assert_null(tw_defer_to_thread(r, p, counted_work, &c));
    assert_int_equal(errno, ESHUTDOWN);
    assert_int_equal(tw_call_in_thread(p, never_called, &dr, drop_fn), -ESHUTDOWN);
    tw_threadpool_stats_t st;
    tw_threadpool_stats(p, &st);
    assert_true(st.stopped);
    assert_int_equal(st.queued, 0);

    assert_int_equal(tw_deferred_add_callbacks(sd, seen_ok, seen_fail, &stopped, NULL, NULL), 0);
    tw_deferred_unref(sd);
    for (int i = 0; i < 20; i++) /* not before the running item is done */
        assert_true(tw_reactor_iterate(r, 0) >= 0);
    assert_int_equal(stopped.ok, 0);
    assert_int_equal(running.ok, 0);
    gate_open(&g);
    tw_test_run_until(r, &stopped.ok, 1);
    assert_int_equal(running.ok, 1); /* the running one's result came first */
    assert_int_equal(atomic_load(&c.ran), 0);
    wait_stats(r, p, 0, 0, 0, 0);

    /* Stopping again: fired already. */
    sd = tw_threadpool_stop(p);
    assert_non_null(sd);
    assert_true(tw_deferred_called(sd));
    tw_deferred_unref(sd);
    tw_threadpool_free(p);
    gate_destroy(&g);
    assert_clean(r);
    tw_reactor_free(r);
}

static void ran_fn(void *arg)
{
    atomic_fetch_add(&((counted_t *)arg)->ran, 1);
}

static void stop_with_drain_runs_the_queue_to_the_end(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_threadpool_t *p = pool_new(r, 0, 2, 0, TW_POOL_DRAIN);
    gate_t g;
    gate_init(&g);
    blocker_t b = { .g = &g };
    counted_t c = { 0 }, calls = { 0 };
    seen_t s = { 0 }, stopped = { 0 };
    for (int i = 0; i < 2; i++)
        watch(tw_defer_to_thread(r, p, blocking_work, &b), &s);
    wait_at_gate(r, &g, 2);
    for (int i = 0; i < 10; i++)
        watch(tw_defer_to_thread(r, p, counted_work, &c), &s);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tw_call_in_thread(p, ran_fn, &calls, never_called), 0);
    tw_deferred_t *sd = tw_threadpool_stop(p);
    assert_non_null(sd);
    assert_int_equal(tw_deferred_add_callbacks(sd, seen_ok, seen_fail, &stopped, NULL, NULL), 0);
    tw_deferred_unref(sd);
    assert_int_equal(s.failed, 0);
    assert_null(tw_defer_to_thread(r, p, counted_work, &c));
    assert_int_equal(errno, ESHUTDOWN);
    gate_open(&g);
    tw_test_run_until(r, &stopped.ok, 1);
    assert_int_equal(s.ok, 12); /* every result before the stop's */
    assert_int_equal(atomic_load(&c.ran), 10);
    assert_int_equal(atomic_load(&calls.ran), 3);
    tw_threadpool_free(p);
    gate_destroy(&g);
    assert_clean(r);
    tw_reactor_free(r);
}

/* ---- the reactor's shutdown ------------------------------------------------------ */

typedef struct shut {
    tw_reactor_t *r;
    tw_threadpool_t *drain, *plain; /* STOP_ON_SHUTDOWN, with and without DRAIN */
    gate_t g;
    blocker_t b;
    counted_t c;
    seen_t dflt, drained, cancelled, plain_running, after_run;
    bool returned;
} shut_t;

static void shut_open_gate(tw_timer_t *t, void *arg)
{
    gate_open(&((shut_t *)arg)->g);
}

static void shut_begin(tw_reactor_t *r, void *arg)
{
    shut_t *sh = arg;
    watch(tw_defer_to_thread(r, NULL, blocking_work, &sh->b), &sh->dflt); /* default pool */
    watch(tw_defer_to_thread(r, sh->drain, blocking_work, &sh->b), &sh->drained);
    watch(tw_defer_to_thread(r, sh->drain, counted_work, &sh->c), &sh->drained);
    watch(tw_defer_to_thread(r, sh->plain, blocking_work, &sh->b), &sh->plain_running);
    watch(tw_defer_to_thread(r, sh->plain, counted_work, &sh->c), &sh->cancelled);
}

static void shut_check(tw_timer_t *t, void *arg)
{
    shut_t *sh = arg;
    if (gate_waiting(&sh->g) < 3) { /* three blocked workers, then stop */
        tw_timer_start(t, TW_MSEC(1));
        return;
    }
    assert_int_equal(tw_reactor_stop(sh->r), 0);
    /* The gate opens only once the loop is stopping: timers still run. */
    assert_non_null(tw_reactor_call_later(sh->r, TW_MSEC(5), shut_open_gate, sh));
}

static void shutdown_waits_for_running_work_of_the_pools_it_stops(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    shut_t *sh = calloc(1, sizeof *sh);
    assert_non_null(sh);
    sh->r = r;
    gate_init(&sh->g);
    sh->b.g = &sh->g;
    sh->drain = pool_new(r, 0, 1, 0, TW_POOL_DRAIN | TW_POOL_STOP_ON_SHUTDOWN);
    sh->plain = pool_new(r, 0, 1, 0, TW_POOL_STOP_ON_SHUTDOWN);
    tw_timer_t check;
    tw_timer_init(&check, r, shut_check, sh);
    assert_int_equal(tw_timer_start(&check, TW_MSEC(1)), 0);
    assert_int_equal(tw_reactor_call_when_running(r, shut_begin, sh), 0);
    assert_int_equal(tw_reactor_run(r, TW_RUN_DEFAULT), 0);
    /* Every Deferred fired before run returned. */
    assert_int_equal(sh->dflt.ok, 1);
    assert_int_equal(sh->drained.ok, 2);
    assert_int_equal(sh->plain_running.ok, 1);
    assert_int_equal(sh->cancelled.failed, 1);
    assert_int_equal(sh->cancelled.code, -ECANCELED);
    assert_int_equal(atomic_load(&sh->c.ran), 1);
    tw_threadpool_stats_t st;
    tw_threadpool_stats(sh->plain, &st);
    assert_true(st.stopped);
    assert_int_equal(st.threads, 0);

    /* The next run makes a new default pool. */
    tw_threadpool_t *fresh = tw_reactor_thread_pool(r);
    assert_non_null(fresh);
    tw_threadpool_stats(fresh, &st);
    assert_false(st.stopped);
    watch(tw_defer_to_thread(r, NULL, counted_work, &sh->c), &sh->after_run);
    tw_test_run_until(r, &sh->after_run.ok, 1);

    tw_threadpool_free(sh->drain);
    tw_threadpool_free(sh->plain);
    gate_destroy(&sh->g);
    tw_reactor_free(r);
    free(sh);
}

/* ---- freeing ---------------------------------------------------------------------- */

static void default_pool_is_freed_with_the_reactor(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    gate_t g;
    gate_init(&g);
    gate_open(&g);
    blocker_t b = { .g = &g };
    counted_t c = { 0 };
    seen_t s = { 0 };
    /* Work queued, running, and results on their way when the reactor is
     * freed: every Deferred fires (ASan checks that nothing leaks). */
    for (int i = 0; i < 30; i++)
        watch(tw_defer_to_thread(r, NULL, counted_work, &c), &s);
    watch(tw_defer_to_thread(r, NULL, blocking_work, &b), &s);
    tw_reactor_free(r); /* queued ones are cancelled, running ones finish */
    assert_int_equal(s.ok + s.failed, 31);
    assert_int_equal(atomic_load(&c.ran) + atomic_load(&b.ran), s.ok);
    if (s.failed)
        assert_int_equal(s.code, -ECANCELED);
    gate_destroy(&g);

    /* A pool freed, then its reactor, with no iteration in between: the
     * results on their way are delivered when the reactor goes. */
    r = tw_test_reactor_new();
    seen_t s2 = { 0 };
    tw_threadpool_t *p = pool_new(r, 0, 2, 0, 0);
    for (int i = 0; i < 10; i++)
        watch(tw_defer_to_thread(r, p, counted_work, &c), &s2);
    tw_threadpool_free(p);
    tw_reactor_free(r);
    assert_int_equal(s2.ok + s2.failed, 10);

    /* A default pool that never ran anything. */
    r = tw_test_reactor_new();
    assert_non_null(tw_reactor_thread_pool(r));
    tw_reactor_free(r);
}

typedef struct freer {
    tw_threadpool_t *p;
    int fired; /* results after the free */
    bool freed;
} freer_t;

/* Frees the pool from the first result's callback; counts the others. */
static tw_outcome_t free_pool_step(tw_outcome_t in, void *a1, void *a2)
{
    freer_t *f = a1;
    if (f->freed) {
        f->fired++;
    } else {
        f->freed = true;
        tw_threadpool_free(f->p); /* the other results are fired by this */
    }
    tw_outcome_discard(in);
    return TW_OK(NULL, NULL);
}

static void free_from_a_result_callback_lets_the_rest_arrive(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    counted_t c = { 0 };
    freer_t f = { .p = pool_new(r, 0, 4, 0, 0) };
    enum { N = 500 };
    for (int i = 0; i < N; i++) {
        tw_deferred_t *d = tw_defer_to_thread(r, f.p, counted_work, &c);
        assert_non_null(d);
        assert_int_equal(tw_deferred_add_both(d, free_pool_step, &f, NULL), 0);
        tw_deferred_unref(d);
    }
    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    while (!f.freed && tw_time_now() < give_up)
        assert_true(tw_reactor_iterate(r, TW_MSEC(50)) >= 0);
    assert_true(f.freed);
    tw_test_run_until(r, &f.fired, N - 1); /* the rest arrive as the loop runs */
    for (int i = 0; i < 10; i++)           /* once each */
        assert_true(tw_reactor_iterate(r, 0) >= 0);
    assert_int_equal(f.fired, N - 1);
    assert_clean(r);
    tw_reactor_free(r);
}

typedef struct again {
    tw_threadpool_t *p;
    gate_t *g;
    int n;
} again_t;

static tw_outcome_t free_pool_again(tw_outcome_t in, void *a1, void *a2)
{
    again_t *ag = a1;
    tw_threadpool_free(ag->p); /* being freed already: nothing happens */
    gate_open(ag->g);          /* so that the free's wait for the running item ends */
    ag->n++;
    tw_outcome_discard(in);
    return TW_OK(NULL, NULL);
}

static void free_from_a_callback_of_its_own_stop(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    tw_threadpool_t *p = pool_new(r, 0, 1, 0, 0);
    gate_t g;
    gate_init(&g);
    blocker_t b = { .g = &g };
    counted_t c = { 0 };
    seen_t s = { 0 };
    again_t ag = { .p = p, .g = &g };
    watch(tw_defer_to_thread(r, p, blocking_work, &b), &s);
    wait_at_gate(r, &g, 1);
    for (int i = 0; i < 3; i++) {
        tw_deferred_t *d = tw_defer_to_thread(r, p, counted_work, &c);
        assert_non_null(d);
        assert_int_equal(tw_deferred_add_both(d, free_pool_again, &ag, NULL), 0);
        tw_deferred_unref(d);
    }
    tw_threadpool_free(p); /* cancels the three, whose callbacks free it again */
    assert_int_equal(ag.n, 3);
    tw_test_run_until(r, &s.ok, 1);
    assert_int_equal(atomic_load(&c.ran), 0);
    gate_destroy(&g);
    assert_clean(r);
    tw_reactor_free(r);
}

/* ---- tw_blocking_call_from_thread ---------------------------------------------- */

typedef struct bc_ctx {
    tw_reactor_t *r;
    pthread_t reactor;
    atomic_int wrong_thread;
    atomic_int calling; /* workers about to block */
    tw_deferred_t *held; /* a Deferred the reactor fn hands out and keeps */
} bc_ctx_t;

static bc_ctx_t *bc_g;

static tw_outcome_t rfn_value(tw_reactor_t *r, void *arg)
{
    if (!pthread_equal(pthread_self(), bc_g->reactor))
        atomic_fetch_add(&bc_g->wrong_thread, 1);
    return TW_OK((void *)((uintptr_t)arg * 2), NULL);
}

static tw_outcome_t rfn_fail(tw_reactor_t *r, void *arg)
{
    return TW_FAIL(tw_failure_new("app", -ENOENT, "no such key"));
}

static tw_outcome_t later_value(tw_outcome_t in, void *a1, void *a2)
{
    char *s = strdup("from a timer");
    return s ? TW_OK(s, free) : TW_FAIL(NULL);
}

static tw_outcome_t rfn_later(tw_reactor_t *r, void *arg)
{
    return TW_CHAIN(tw_defer_later(r, TW_MSEC(5), later_value, NULL, NULL));
}

static tw_outcome_t rfn_held(tw_reactor_t *r, void *arg)
{
    bc_g->held = tw_deferred_new(NULL, NULL);
    return TW_CHAIN(tw_deferred_ref(bc_g->held));
}

/* Which reactor function a worker calls. */
typedef struct rfn_box {
    tw_reactor_fn fn;
} rfn_box_t;

static rfn_box_t box_value = { rfn_value }, box_fail = { rfn_fail }, box_later = { rfn_later },
                 box_held = { rfn_held };

/* Work: make a blocking call, and pass its outcome on as our own. */
static tw_outcome_t bc_work(void *arg)
{
    const rfn_box_t *box = arg;
    atomic_fetch_add(&bc_g->calling, 1);
    return tw_blocking_call_from_thread(bc_g->r, box->fn, (void *)(uintptr_t)21);
}

static void *bc_plain_thread(void *arg)
{
    tw_outcome_t o = tw_blocking_call_from_thread(bc_g->r, rfn_value, (void *)(uintptr_t)50);
    return o.kind == TW_OUTCOME_OK ? o.ptr : NULL;
}

static void blocking_call_from_thread_values_failures_and_deferreds(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    bc_ctx_t ctx = { .r = r, .reactor = pthread_self() };
    bc_g = &ctx;
    tw_threadpool_t *p = pool_new(r, 0, 4, 0, 0);
    seen_t v = { 0 }, f = { 0 }, l = { 0 };
    watch(tw_defer_to_thread(r, p, bc_work, &box_value), &v);
    watch(tw_defer_to_thread(r, p, bc_work, &box_fail), &f);
    watch(tw_defer_to_thread(r, p, bc_work, &box_later), &l);
    tw_test_run_until(r, &v.ok, 1);
    tw_test_run_until(r, &f.failed, 1);
    assert_int_equal(v.value, 42);
    assert_string_equal(f.domain, "app");
    assert_int_equal(f.code, -ENOENT);
    tw_test_run_until(r, &l.ok, 1); /* the timer's value, freed by seen_ok */
    assert_int_equal(atomic_load(&ctx.wrong_thread), 0);

    /* From a thread that is not a pool's. */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, bc_plain_thread, NULL), 0);
    void *res = NULL;
    for (;;) { /* iterate until the thread has its answer */
        assert_true(tw_reactor_iterate(r, TW_MSEC(2)) >= 0);
        if (pthread_tryjoin_np(t, &res) == 0)
            break;
    }
    assert_int_equal((uintptr_t)res, 100);

    /* From the reactor thread: refused at once. */
    tw_outcome_t o = tw_blocking_call_from_thread(r, rfn_value, NULL);
    assert_int_equal(o.kind, TW_OUTCOME_FAIL);
    assert_string_equal(o.failure->domain, "thread");
    assert_int_equal(o.failure->code, -EDEADLK);
    tw_outcome_discard(o);
    tw_threadpool_free(p);
    assert_clean(r);
    tw_reactor_free(r);
}

static void free_releases_workers_blocked_on_the_reactor(void **state)
{
    tw_reactor_t *r = tw_test_reactor_new();
    bc_ctx_t ctx = { .r = r, .reactor = pthread_self() };
    bc_g = &ctx;

    /* 1: a blocking call still queued for the reactor when the pool is
     * freed is refused, and its worker finishes. */
    tw_threadpool_t *p = pool_new(r, 0, 2, 0, 0);
    seen_t q = { 0 };
    watch(tw_defer_to_thread(r, p, bc_work, &box_value), &q);
    while (atomic_load(&ctx.calling) < 1)
        sched_yield();
    tw_threadpool_free(p); /* without iterating: the call is queued or refused */
    tw_test_run_until(r, &q.failed, 1);
    assert_string_equal(q.domain, "thread");
    assert_int_equal(q.code, -ESHUTDOWN);

    /* 2: one waiting for a Deferred: freeing cancels it. */
    p = pool_new(r, 0, 2, 0, 0);
    seen_t h = { 0 };
    watch(tw_defer_to_thread(r, p, bc_work, &box_held), &h);
    while (!ctx.held)
        assert_true(tw_reactor_iterate(r, TW_MSEC(2)) >= 0);
    tw_threadpool_free(p);
    tw_test_run_until(r, &h.failed, 1);
    assert_int_equal(h.code, -ECANCELED);
    assert_true(tw_deferred_called(ctx.held));
    tw_deferred_unref(ctx.held);
    ctx.held = NULL;

    /* 3: paused, so the cancel cannot settle it: refused with -ESHUTDOWN,
     * and the Deferred's late result is dropped when it comes. */
    p = pool_new(r, 0, 2, 0, 0);
    seen_t z = { 0 };
    watch(tw_defer_to_thread(r, p, bc_work, &box_held), &z);
    while (!ctx.held)
        assert_true(tw_reactor_iterate(r, TW_MSEC(2)) >= 0);
    tw_deferred_pause(ctx.held);
    tw_threadpool_free(p);
    tw_test_run_until(r, &z.failed, 1);
    assert_int_equal(z.code, -ESHUTDOWN);
    tw_deferred_unpause(ctx.held); /* the cancel's failure goes to our step, which drops it */
    tw_deferred_unref(ctx.held);
    assert_clean(r);
    tw_reactor_free(r);
}

/* ---- thread rules ------------------------------------------------------------------ */

#ifndef NDEBUG
static void *wrong_thread_main(void *arg)
{
    tw_threadpool_new(arg, NULL); /* reactor-thread-only: aborts in debug builds */
    return NULL;
}
#endif

static void reactor_thread_functions_abort_on_another_thread(void **state)
{
#ifdef NDEBUG
    skip();
#else
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        tw_log_set_level(TW_LOG_NONE);
        tw_reactor_t *r = NULL;
        if (tw_reactor_new(&r) != 0)
            _exit(2);
        pthread_t t;
        if (pthread_create(&t, NULL, wrong_thread_main, r) != 0)
            _exit(3);
        pthread_join(t, NULL);
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGABRT);
#endif
}

/* Every test fails on an unhandled Deferred failure. */
#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(ten_thousand_deferred_calls_fire_once_in_the_reactor_thread),
        TEST(failures_from_work_reach_the_errback),
        TEST(progress_from_a_worker_arrives_before_its_result),
        TEST(call_in_thread_runs_in_a_worker),
        TEST(grows_on_demand_only_up_to_max),
        TEST(resize_starts_and_stops_threads),
        TEST(idle_threads_above_min_exit_after_the_timeout),
        TEST(bad_options_are_refused),
        TEST(threads_are_named_prefix_dash_number),
        TEST(stack_size_is_applied),
        TEST(cancel_takes_queued_work_off_the_queue),
        TEST(timeouts_on_running_and_queued_work),
        TEST(stop_cancels_queued_work_and_waits_for_running),
        TEST(stop_with_drain_runs_the_queue_to_the_end),
        TEST(shutdown_waits_for_running_work_of_the_pools_it_stops),
        TEST(default_pool_is_freed_with_the_reactor),
        TEST(free_from_a_result_callback_lets_the_rest_arrive),
        TEST(free_from_a_callback_of_its_own_stop),
        TEST(blocking_call_from_thread_values_failures_and_deferreds),
        TEST(free_releases_workers_blocked_on_the_reactor),
        cmocka_unit_test(reactor_thread_functions_abort_on_another_thread),
    };
    TW_TEST_MAIN(tests);
}
