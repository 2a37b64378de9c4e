/* test_signal.c -- signals delivered in the reactor thread: delivery and
 * coalescing, replacing and removing handlers (the old disposition comes
 * back), reactors in several threads, TW_RUN_SIGNALS, SIGPIPE. */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void set_disposition(int signo, void (*handler)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(signo, &sa, NULL), 0);
}

static void (*disposition(int signo))(int)
{
    struct sigaction sa;
    assert_int_equal(sigaction(signo, NULL, &sa), 0);
    return sa.sa_handler;
}

/* Wait (outside any reactor) until *flag reaches want; false after 30 s. */
static bool wait_for(atomic_int *flag, int want)
{
    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    while (atomic_load(flag) < want) {
        if (tw_time_now() > give_up)
            return false;
        struct timespec ts = { 0, 100000 };
        nanosleep(&ts, NULL);
    }
    return true;
}

typedef struct sigrec {
    int calls;
    int signo;
    void *arg;
    pthread_t thread;
    int calls_inside_raise;
    bool stop;
} sigrec_t;

static int in_raise; /* set around raise(): the callback must never see it */

static void record_cb(tw_reactor_t *r, int signo, void *arg)
{
    sigrec_t *s = arg;
    s->calls++;
    s->signo = signo;
    s->arg = arg;
    s->thread = pthread_self();
    if (in_raise)
        s->calls_inside_raise++;
    if (s->stop)
        tw_reactor_stop(r);
}

/* ---- delivery ----------------------------------------------------------- */

static void signal_runs_callback_in_reactor_thread_after_raise_returns(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    sigrec_t s = { 0 };
    assert_int_equal(tw_reactor_on_signal(r, SIGUSR1, record_cb, &s), 0);
    in_raise = 1;
    assert_int_equal(raise(SIGUSR1), 0);
    in_raise = 0;
    assert_int_equal(s.calls, 0); /* the handler only records it */
    assert_true(tw_test_iterate_until(r, &s.calls, 1, 100));
    assert_int_equal(s.calls_inside_raise, 0);
    assert_int_equal(s.signo, SIGUSR1);
    assert_ptr_equal(s.arg, &s);
    assert_true(pthread_equal(s.thread, pthread_self()));

    /* kill() to the process as well; then nothing more. */
    assert_int_equal(kill(getpid(), SIGUSR1), 0);
    assert_true(tw_test_iterate_until(r, &s.calls, 2, 100));
    for (int i = 0; i < 3; i++)
        assert_true(tw_reactor_iterate(r, 0) >= 0);
    assert_int_equal(s.calls, 2);
    assert_int_equal(tw_reactor_on_signal(r, SIGUSR1, NULL, NULL), 0);
    tw_reactor_free(r);
}

static void deliveries_before_the_reactor_looks_are_coalesced(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    sigrec_t s = { 0 };
    assert_int_equal(tw_reactor_on_signal(r, SIGUSR1, record_cb, &s), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(raise(SIGUSR1), 0);
    assert_true(tw_test_iterate_until(r, &s.calls, 1, 100));
    for (int i = 0; i < 3; i++)
        assert_true(tw_reactor_iterate(r, 0) >= 0);
    assert_int_equal(s.calls, 1);
    tw_reactor_free(r);
}

static void removed_handler_does_not_get_a_pending_signal(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    sigrec_t s = { 0 };
    set_disposition(SIGUSR1, SIG_IGN);
    assert_int_equal(tw_reactor_on_signal(r, SIGUSR1, record_cb, &s), 0);
    assert_int_equal(raise(SIGUSR1), 0); /* recorded, not yet looked at */
    assert_int_equal(tw_reactor_on_signal(r, SIGUSR1, NULL, NULL), 0);
    for (int i = 0; i < 3; i++)
        assert_true(tw_reactor_iterate(r, 0) >= 0);
    assert_int_equal(s.calls, 0);
    tw_reactor_free(r);
    set_disposition(SIGUSR1, SIG_DFL);
}

/* ---- a reactor in another thread ---------------------------------------- */

typedef struct threaded {
    int signo;
    bool block_in_reactor; /* block the signal in the reactor's thread */
    atomic_int *ready;
    sigrec_t rec;
    pthread_t self;
    tw_reactor_t *r;
    int rc_run, timed_out;
} threaded_t;

static void threaded_ready_cb(tw_reactor_t *r, void *arg)
{
    (void)r;
    atomic_fetch_add(((threaded_t *)arg)->ready, 1);
}

static void threaded_guard_cb(tw_timer_t *t, void *arg)
{
    threaded_t *th = arg;
    (void)t;
    th->timed_out = 1;
    tw_reactor_stop(th->r);
}

static void *threaded_main(void *arg)
{
    threaded_t *th = arg;
    tw_reactor_t *r;
    th->self = pthread_self();
    if (th->block_in_reactor) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, th->signo);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
    }
    if (tw_reactor_new(&r) != 0) {
        th->rc_run = -1;
        atomic_fetch_add(th->ready, 1);
        return NULL;
    }
    th->r = r;
    th->rec.stop = true;
    tw_timer_t guard;
    tw_timer_init(&guard, r, threaded_guard_cb, th);
    tw_timer_start(&guard, TW_SEC(30));
    if (tw_reactor_on_signal(r, th->signo, record_cb, &th->rec) != 0 ||
        tw_reactor_call_when_running(r, threaded_ready_cb, th) != 0)
        th->rc_run = -2;
    else
        th->rc_run = tw_reactor_run(r, TW_RUN_DEFAULT);
    tw_timer_cancel(&guard);
    tw_reactor_free(r);
    return NULL;
}

static void signal_reaches_reactor_running_in_another_thread(void **state)
{
    (void)state;
    atomic_int ready = 0;
    threaded_t th = { .signo = SIGUSR1, .block_in_reactor = true, .ready = &ready };
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, threaded_main, &th), 0);
    bool ok = wait_for(&ready, 1);
    if (ok)
        assert_int_equal(kill(getpid(), SIGUSR1), 0); /* handled here, delivered there */
    assert_int_equal(pthread_join(tid, NULL), 0);
    assert_true(ok);
    assert_int_equal(th.rc_run, 0);
    assert_false(th.timed_out);
    assert_int_equal(th.rec.calls, 1);
    assert_int_equal(th.rec.signo, SIGUSR1);
    assert_true(pthread_equal(th.rec.thread, th.self));
    assert_int_equal(disposition(SIGUSR1), SIG_DFL); /* freed: back to the default */
}

static void two_reactors_in_two_threads_both_get_the_signal(void **state)
{
    (void)state;
    atomic_int ready = 0;
    threaded_t th[2] = {
        { .signo = SIGUSR2, .ready = &ready },
        { .signo = SIGUSR2, .ready = &ready, .block_in_reactor = true },
    };
    pthread_t tid[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&tid[i], NULL, threaded_main, &th[i]), 0);
    bool ok = wait_for(&ready, 2);
    if (ok)
        assert_int_equal(kill(getpid(), SIGUSR2), 0); /* one signal for both */
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(tid[i], NULL), 0);
    assert_true(ok);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(th[i].rc_run, 0);
        assert_false(th[i].timed_out);
        assert_int_equal(th[i].rec.calls, 1);
        assert_true(pthread_equal(th[i].rec.thread, th[i].self));
    }
    assert_false(pthread_equal(th[0].self, th[1].self));
    assert_int_equal(disposition(SIGUSR2), SIG_DFL);
}

/* ---- replacing, removing, restoring ------------------------------------- */

static void plain_handler(int signo)
{
    (void)signo;
}

static void replacing_and_removing_a_handler_restores_old_disposition(void **state)
{
    (void)state;
    void (*const olds[])(int) = { SIG_IGN, plain_handler };
    for (int k = 0; k < 2; k++) {
        tw_reactor_t *r = tw_test_reactor_new();
        sigrec_t first = { 0 }, second = { 0 };
        set_disposition(SIGUSR2, olds[k]);
        assert_int_equal(tw_reactor_on_signal(r, SIGUSR2, record_cb, &first), 0);
        assert_true(disposition(SIGUSR2) != olds[k]);
        assert_true(disposition(SIGUSR2) != SIG_DFL);

        /* A second call replaces the callback. */
        assert_int_equal(tw_reactor_on_signal(r, SIGUSR2, record_cb, &second), 0);
        assert_int_equal(raise(SIGUSR2), 0);
        assert_true(tw_test_iterate_until(r, &second.calls, 1, 100));
        assert_int_equal(first.calls, 0);
        assert_ptr_equal(second.arg, &second);

        /* Removing it brings back what was there before. */
        assert_int_equal(tw_reactor_on_signal(r, SIGUSR2, NULL, NULL), 0);
        assert_true(disposition(SIGUSR2) == olds[k]);
        assert_int_equal(raise(SIGUSR2), 0); /* ignored or handled: we live */
        for (int i = 0; i < 3; i++)
            assert_true(tw_reactor_iterate(r, 0) >= 0);
        assert_int_equal(first.calls + second.calls, 1);
        /* Removing what is not there is fine. */
        assert_int_equal(tw_reactor_on_signal(r, SIGUSR2, NULL, NULL), 0);
        assert_int_equal(tw_reactor_on_signal(r, SIGHUP, NULL, NULL), 0);
        tw_reactor_free(r);
        assert_true(disposition(SIGUSR2) == olds[k]);
    }
    set_disposition(SIGUSR2, SIG_DFL);
}

static void freed_reactor_restores_disposition_when_last_lets_go(void **state)
{
    (void)state;
    set_disposition(SIGUSR1, SIG_IGN);
    tw_reactor_t *a = tw_test_reactor_new(), *b = tw_test_reactor_new();
    sigrec_t sa = { 0 }, sb = { 0 };
    assert_int_equal(tw_reactor_on_signal(a, SIGUSR1, record_cb, &sa), 0);
    assert_int_equal(tw_reactor_on_signal(b, SIGUSR1, record_cb, &sb), 0);
    assert_int_equal(tw_reactor_on_signal(a, SIGHUP, record_cb, &sa), 0);
    assert_true(disposition(SIGHUP) != SIG_DFL);

    tw_reactor_free(a); /* b still wants SIGUSR1 */
    assert_true(disposition(SIGUSR1) != SIG_IGN);
    assert_true(disposition(SIGHUP) == SIG_DFL);
    assert_int_equal(raise(SIGUSR1), 0);
    assert_true(tw_test_iterate_until(b, &sb.calls, 1, 100));
    assert_int_equal(sa.calls, 0);

    tw_reactor_free(b);
    assert_true(disposition(SIGUSR1) == SIG_IGN);
    set_disposition(SIGUSR1, SIG_DFL);
}

static void sixty_fifth_signal_watching_reactor_gets_no_slot(void **state)
{
    (void)state;
    enum { SLOTS = 64 };
    tw_reactor_t *r[SLOTS + 1];
    sigrec_t s[SLOTS + 1];
    memset(s, 0, sizeof s);
    for (int i = 0; i <= SLOTS; i++)
        r[i] = tw_test_reactor_new();
    for (int i = 0; i < SLOTS; i++)
        assert_int_equal(tw_reactor_on_signal(r[i], SIGUSR1, record_cb, &s[i]), 0);
    assert_int_equal(tw_reactor_on_signal(r[SLOTS], SIGUSR1, record_cb, &s[SLOTS]),
                     TW_ENOSIGSLOT);
    assert_int_equal(tw_reactor_on_signal(r[SLOTS], SIGUSR1, NULL, NULL), 0);
    /* One signal reaches all 64. */
    assert_int_equal(raise(SIGUSR1), 0);
    for (int i = 0; i < SLOTS; i++)
        assert_true(tw_test_iterate_until(r[i], &s[i].calls, 1, 100));
    assert_true(tw_reactor_iterate(r[SLOTS], 0) >= 0);
    assert_int_equal(s[SLOTS].calls, 0);
    /* A freed reactor gives its slot back. */
    tw_reactor_free(r[0]);
    assert_int_equal(tw_reactor_on_signal(r[SLOTS], SIGUSR1, record_cb, &s[SLOTS]), 0);
    assert_int_equal(raise(SIGUSR1), 0);
    assert_true(tw_test_iterate_until(r[SLOTS], &s[SLOTS].calls, 1, 100));
    for (int i = 1; i <= SLOTS; i++)
        tw_reactor_free(r[i]);
    assert_true(disposition(SIGUSR1) == SIG_DFL);
}

static void on_signal_refuses_sigkill_sigstop_and_bad_numbers(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    sigrec_t s = { 0 };
    assert_int_equal(tw_reactor_on_signal(r, SIGKILL, record_cb, &s), -EINVAL);
    assert_int_equal(tw_reactor_on_signal(r, SIGSTOP, record_cb, &s), -EINVAL);
    assert_int_equal(tw_reactor_on_signal(r, SIGKILL, NULL, NULL), -EINVAL);
    assert_int_equal(tw_reactor_on_signal(r, 0, record_cb, &s), -EINVAL);
    assert_int_equal(tw_reactor_on_signal(r, -1, record_cb, &s), -EINVAL);
    assert_int_equal(tw_reactor_on_signal(r, 65, record_cb, &s), -EINVAL);
    assert_int_equal(tw_reactor_on_signal(r, 1000, record_cb, &s), -EINVAL);
    assert_int_equal(disposition(SIGUSR1), SIG_DFL);
    tw_reactor_free(r);
}

/* ---- TW_RUN_SIGNALS ----------------------------------------------------- */

typedef struct logcap {
    int n;
    char last[256];
} logcap_t;

static void capture_sink(tw_log_level_t level, const char *domain, const char *msg, void *arg)
{
    logcap_t *c = arg;
    (void)level;
    (void)domain;
    c->n++;
    strncpy(c->last, msg, sizeof c->last - 1);
}

typedef struct term_ctx {
    tw_reactor_t *r;
    int shutdown_ran;
    int killed;
    bool installed;
    int app_calls;
    int timed_out;
} term_ctx_t;

static void send_sigterm_cb(tw_timer_t *t, void *arg)
{
    term_ctx_t *c = arg;
    (void)t;
    c->installed = disposition(SIGTERM) != SIG_DFL && disposition(SIGINT) != SIG_DFL;
    if (!c->installed) { /* do not kill the test program: fail instead */
        tw_reactor_stop(c->r);
        return;
    }
    c->killed = 1;
    assert_int_equal(kill(getpid(), SIGTERM), 0);
}

static void shutdown_cb(tw_reactor_t *r, void *arg)
{
    (void)r;
    ((term_ctx_t *)arg)->shutdown_ran++;
}

static void guard_stop_cb(tw_timer_t *t, void *arg)
{
    term_ctx_t *c = arg;
    (void)t;
    c->timed_out = 1;
    tw_reactor_stop(c->r);
}

static void run_signals_flag_stops_on_sigterm_and_removes_handlers(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    term_ctx_t c = { .r = r };
    logcap_t cap = { 0 };
    tw_log_set_level(TW_LOG_INFO);
    tw_log_set_sink(capture_sink, &cap);
    assert_int_equal(disposition(SIGTERM), SIG_DFL);
    assert_true(tw_reactor_add_trigger(r, TW_BEFORE, TW_SHUTDOWN, shutdown_cb, &c) > 0);
    assert_non_null(tw_reactor_call_later(r, 0, send_sigterm_cb, &c));
    tw_timer_t *guard = tw_reactor_call_later(r, TW_SEC(30), guard_stop_cb, &c);
    assert_non_null(guard);
    assert_int_equal(tw_reactor_run(r, TW_RUN_SIGNALS), 0);
    tw_log_set_sink(NULL, NULL);
    assert_true(c.installed);
    assert_int_equal(c.killed, 1);
    assert_int_equal(c.timed_out, 0);
    assert_int_equal(c.shutdown_ran, 1);
    assert_true(cap.n >= 1);
    assert_non_null(strstr(cap.last, "stopping"));
    assert_true(disposition(SIGTERM) == SIG_DFL);
    assert_true(disposition(SIGINT) == SIG_DFL);
    tw_timer_cancel(guard);
    tw_reactor_free(r);
}

static void app_sigint_cb(tw_reactor_t *r, int signo, void *arg)
{
    term_ctx_t *c = arg;
    (void)signo;
    c->app_calls++;
    if (tw_reactor_running(r))
        tw_reactor_stop(r);
}

static void raise_sigint_cb(tw_timer_t *t, void *arg)
{
    (void)t;
    (void)arg;
    assert_int_equal(raise(SIGINT), 0);
}

static void run_signals_flag_leaves_application_handler_alone(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    term_ctx_t c = { .r = r };
    assert_int_equal(tw_reactor_on_signal(r, SIGINT, app_sigint_cb, &c), 0);
    assert_true(tw_reactor_add_trigger(r, TW_BEFORE, TW_SHUTDOWN, shutdown_cb, &c) > 0);
    assert_non_null(tw_reactor_call_later(r, 0, raise_sigint_cb, NULL));
    tw_timer_t *guard = tw_reactor_call_later(r, TW_SEC(30), guard_stop_cb, &c);
    assert_int_equal(tw_reactor_run(r, TW_RUN_SIGNALS), 0);
    assert_int_equal(c.timed_out, 0);
    assert_int_equal(c.app_calls, 1); /* the application's, not the reactor's */
    assert_int_equal(c.shutdown_ran, 1);
    tw_timer_cancel(guard);
    /* Still the application's after the run: SIGINT does not kill us. */
    assert_true(disposition(SIGINT) != SIG_DFL);
    assert_int_equal(raise(SIGINT), 0);
    assert_true(tw_test_iterate_until(r, &c.app_calls, 2, 100));
    assert_int_equal(tw_reactor_on_signal(r, SIGINT, NULL, NULL), 0);
    assert_true(disposition(SIGINT) == SIG_DFL);
    tw_reactor_free(r);
}

static void app_sigterm_cb(tw_reactor_t *r, int signo, void *arg)
{
    (void)r;
    (void)signo;
    ((term_ctx_t *)arg)->app_calls++;
}

static void take_sigterm_and_stop_cb(tw_timer_t *t, void *arg)
{
    term_ctx_t *c = arg;
    (void)t;
    assert_int_equal(tw_reactor_on_signal(c->r, SIGTERM, app_sigterm_cb, c), 0);
    assert_int_equal(tw_reactor_stop(c->r), 0);
}

static void handler_registered_during_run_signals_outlives_the_run(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    term_ctx_t c = { .r = r };
    assert_non_null(tw_reactor_call_later(r, 0, take_sigterm_and_stop_cb, &c));
    assert_int_equal(tw_reactor_run(r, TW_RUN_SIGNALS), 0);
    /* SIGINT was the run's and is gone; SIGTERM is now the application's. */
    assert_true(disposition(SIGINT) == SIG_DFL);
    assert_true(disposition(SIGTERM) != SIG_DFL); /* checked before raising it */
    assert_int_equal(raise(SIGTERM), 0);
    assert_true(tw_test_iterate_until(r, &c.app_calls, 1, 100));
    assert_int_equal(tw_reactor_on_signal(r, SIGTERM, NULL, NULL), 0);
    assert_true(disposition(SIGTERM) == SIG_DFL);
    tw_reactor_free(r);
}

/* ---- SIGPIPE ------------------------------------------------------------ */

static void sigpipe_is_ignored_after_reactor_new(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    assert_true(disposition(SIGPIPE) == SIG_IGN);
    int p[2];
    tw_test_pipe(p);
    close(p[0]);
    char c = 'x';
    errno = 0;
    assert_int_equal(write(p[1], &c, 1), -1);
    assert_int_equal(errno, EPIPE);
    close(p[1]);
    int s[2];
    tw_test_socketpair(s);
    close(s[1]);
    assert_int_equal(write(s[0], &c, 1), -1);
    assert_int_equal(errno, EPIPE);
    close(s[0]);
    tw_reactor_free(r);
    assert_true(disposition(SIGPIPE) == SIG_IGN); /* stays: it is process-wide */
}

int main(void)
{
    /* Start from defaults, whatever the caller left us, so the tests that
     * check "the old disposition comes back" and SIGPIPE mean something. */
    static const int sigs[] = { SIGUSR1, SIGUSR2, SIGHUP, SIGINT, SIGTERM, SIGPIPE };
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        signal(sigs[i], SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sigpipe_is_ignored_after_reactor_new),
        cmocka_unit_test(signal_runs_callback_in_reactor_thread_after_raise_returns),
        cmocka_unit_test(deliveries_before_the_reactor_looks_are_coalesced),
        cmocka_unit_test(removed_handler_does_not_get_a_pending_signal),
        cmocka_unit_test(signal_reaches_reactor_running_in_another_thread),
        cmocka_unit_test(two_reactors_in_two_threads_both_get_the_signal),
        cmocka_unit_test(replacing_and_removing_a_handler_restores_old_disposition),
        cmocka_unit_test(freed_reactor_restores_disposition_when_last_lets_go),
        cmocka_unit_test(sixty_fifth_signal_watching_reactor_gets_no_slot),
        cmocka_unit_test(on_signal_refuses_sigkill_sigstop_and_bad_numbers),
        cmocka_unit_test(run_signals_flag_stops_on_sigterm_and_removes_handlers),
        cmocka_unit_test(run_signals_flag_leaves_application_handler_alone),
        cmocka_unit_test(handler_registered_during_run_signals_outlives_the_run),
    };
    TW_TEST_MAIN(tests);
}
