/* test_reconnect.c -- the plain and the reconnecting client factory: the
 * back-off arithmetic alone (delays, jitter, reset, max_retries); then real
 * connections over loopback on a fake clock, where every retry is checked to
 * start at its exact time (refused attempts backing off and giving up, a
 * seeded jitter, stop_trying, a connector freed from a hook, a lost
 * connection retried with and without manual_reset); then one run on the
 * real clock (a server coming up, a lost connection retried). */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tw_factory.h"
#include "tw_testing.h"

#define E_FACTOR 2.7182818284590451

/* ---- helpers ------------------------------------------------------------ */

/* Iterate for about `ms` milliseconds, whatever happens. */
static void spin(tw_reactor_t *r, int ms)
{
    tw_time_t end = tw_time_now() + TW_MSEC(ms);
    while (tw_time_now() < end)
        assert_true(tw_reactor_iterate(r, TW_MSEC(5)) >= 0);
}

/* The library's log lines of domain "reconnect", at info and above. */
static struct {
    char lines[16][128];
    int n;
} logcap;

static void log_sink(tw_log_level_t level, const char *domain, const char *msg, void *arg)
{
    (void)arg;
    if (level < TW_LOG_INFO || strcmp(domain, "reconnect") != 0)
        return;
    if (logcap.n < 16)
        snprintf(logcap.lines[logcap.n], sizeof logcap.lines[0], "%s", msg);
    logcap.n++;
}

/* What the hooks and protocols saw. */
#define MAX_ATTEMPTS 16
typedef struct seen {
    tw_reactor_t *r;
    tw_reconnecting_factory_t *f; /* when set: record its delay at each start */
    double delay_at[MAX_ATTEMPTS];
    int started, failed, lost, made, proto_lost, gave_up;
    tw_time_t started_at[MAX_ATTEMPTS], lost_at, gave_up_at;
    int fail_code[MAX_ATTEMPTS];
    const char *fail_domain[MAX_ATTEMPTS];
    bool lost_clean, gave_up_clean;
    int gave_up_code;
    const char *gave_up_domain;
    bool free_in_failed; /* the failed hook frees the connector */
} seen_t;

typedef struct counted {
    tw_protocol_t base;
    seen_t *s;
} counted_t;

static void counted_made(tw_protocol_t *p, tw_transport_t *t)
{
    (void)t;
    ((counted_t *)p)->s->made++;
}

static void counted_data(tw_protocol_t *p, const void *data, size_t len)
{
    (void)p, (void)data, (void)len;
}

static void counted_lost(tw_protocol_t *p, const tw_failure_t *reason)
{
    (void)reason;
    ((counted_t *)p)->s->proto_lost++;
}

static void counted_destroy(tw_protocol_t *p)
{
    free(p);
}

static const tw_protocol_ops_t counted_ops = {
    .connection_made = counted_made,
    .data_received = counted_data,
    .connection_lost = counted_lost,
    .destroy = counted_destroy,
};

static tw_protocol_t *counted_build(void *arg)
{
    counted_t *p = calloc(1, sizeof *p);
    if (p) {
        p->base.ops = &counted_ops;
        p->s = arg;
    }
    return p ? &p->base : NULL;
}

static tw_protocol_t *refuse_build(void *arg)
{
    (void)arg;
    return NULL;
}

static void hook_started(tw_connector_t *c, void *arg)
{
    (void)c;
    seen_t *s = arg;
    if (s->started < MAX_ATTEMPTS) {
        s->started_at[s->started] = tw_reactor_now(s->r);
        s->delay_at[s->started] = s->f ? tw_reconnecting_factory_delay(s->f) : 0;
    }
    s->started++;
}

static void hook_failed(tw_connector_t *c, const tw_failure_t *reason, void *arg)
{
    seen_t *s = arg;
    assert_non_null(reason);
    if (s->failed < MAX_ATTEMPTS) {
        s->fail_code[s->failed] = reason->code;
        s->fail_domain[s->failed] = reason->domain; /* a static string */
    }
    s->failed++;
    if (s->free_in_failed)
        tw_connector_free(c);
}

static void hook_lost(tw_connector_t *c, const tw_failure_t *reason, void *arg)
{
    (void)c;
    seen_t *s = arg;
    s->lost++;
    s->lost_clean = reason == NULL;
    s->lost_at = tw_reactor_now(s->r);
}

static void hook_gave_up(tw_connector_t *c, const tw_failure_t *reason, void *arg)
{
    (void)c;
    seen_t *s = arg;
    s->gave_up++;
    s->gave_up_at = tw_reactor_now(s->r);
    s->gave_up_clean = reason == NULL;
    if (reason) {
        s->gave_up_code = reason->code;
        s->gave_up_domain = reason->domain;
    }
}

static tw_client_hooks_t all_hooks(seen_t *s)
{
    return (tw_client_hooks_t){
        .build = counted_build,
        .started_connecting = hook_started,
        .connection_failed = hook_failed,
        .connection_lost = hook_lost,
        .gave_up = hook_gave_up,
        .arg = s,
    };
}

/* A port on 127.0.0.1 that nobody listens on now, below the usual ephemeral
 * range (so that no client socket of ours can be bound to it and connect to
 * itself); we listen on it later. */
static int free_port(tw_reactor_t *r)
{
    tw_client_factory_t f;
    tw_client_hooks_t h = { .build = refuse_build };
    assert_int_equal(tw_client_factory_init(&f, &h), 0);
    for (int i = 0; i < 500; i++) {
        int port = 10000 + (int)(((unsigned)getpid() * 7919u + (unsigned)i * 104729u) % 20000u);
        tw_tcp_listen_opts_t o = { .interface = "127.0.0.1", .port = port };
        tw_listener_t *l;
        if (tw_tcp_listen(r, &f.base, &o, &l) == 0) {
            tw_listener_close(l);
            return port;
        }
    }
    fail_msg("no free port");
    return -1;
}

static tw_listener_t *listen_on(tw_reactor_t *r, tw_factory_t *f, int port)
{
    tw_tcp_listen_opts_t o = { .interface = "127.0.0.1", .port = port };
    tw_listener_t *l = NULL;
    assert_int_equal(tw_tcp_listen(r, f, &o, &l), 0);
    return l;
}

static tw_connector_t *connect_to(tw_reactor_t *r, tw_factory_t *f, int port)
{
    tw_tcp_connect_opts_t o = { .host = "127.0.0.1", .port = port, .timeout = TW_SEC(5) };
    tw_connector_t *c = NULL;
    assert_int_equal(tw_tcp_connect(r, f, &o, &c), 0);
    return c;
}

static tw_reconnect_opts_t small_opts(int max_retries)
{
    tw_reconnect_opts_t o = TW_RECONNECT_DEFAULTS;
    o.initial_delay = 0.010;
    o.factor = 2.0;
    o.max_delay = 0.080;
    o.jitter = 0.0;
    o.max_retries = max_retries;
    return o;
}

/* 1 s doubling, capped at 10 s, no jitter: on the fake clock. */
static tw_reconnect_opts_t clock_opts(int max_retries)
{
    tw_reconnect_opts_t o = TW_RECONNECT_DEFAULTS;
    o.initial_delay = 1.0;
    o.factor = 2.0;
    o.max_delay = 10.0;
    o.jitter = 0.0;
    o.max_retries = max_retries;
    return o;
}

/* ---- the fake clock ----------------------------------------------------- */

/* Where the fake clocks start: not 0, so that a deadline taken as absolute
 * instead of relative shows. */
#define T0 TW_SEC(1000)

static void assert_clean(tw_reactor_t *r)
{
    char what[160];
    if (tw_reactor_check_clean(r, what, sizeof what) != 0)
        fail_msg("%s", what);
}

/* Let the kernel's answer (a refusal, an accepted connection, a close)
 * reach the factory without moving the fake clock: advance by 0, then wait
 * for I/O in real time -- a reactor on a fake clock never waits on the
 * clock -- until *counter reaches want. */
static void io_until(tw_fake_clock_t *clock, const int *counter, int want)
{
    tw_time_t now = clock->now;
    assert_true(tw_fake_clock_advance(clock, 0) >= 0);
    assert_true(tw_test_iterate_until(clock->r, counter, want, 200));
    assert_int_equal(tw_reactor_now(clock->r), now);
}

/* The retry pending is the reactor's only delayed call, due at `when`; the
 * attempt starts exactly then, not a nanosecond before. */
static void expect_retry_at(tw_fake_clock_t *clock, seen_t *s, tw_time_t when)
{
    int started = s->started;
    assert_int_equal(tw_reactor_timer_count(clock->r), 1);
    assert_int_equal(tw_reactor_next_timer(clock->r), when);
    assert_true(when > clock->now);
    assert_true(tw_fake_clock_advance(clock, when - clock->now - 1) >= 0);
    assert_int_equal(s->started, started);
    assert_true(tw_fake_clock_advance(clock, 1) > 0);
    assert_int_equal(s->started, started + 1);
    assert_int_equal(s->started_at[started], when);
}

/* ---- the arithmetic ----------------------------------------------------- */

static void defaults_are_twisteds_and_bad_options_are_refused(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    seen_t s = { .r = r };
    tw_client_hooks_t h = all_hooks(&s);
    tw_reconnecting_factory_t f;
    assert_int_equal(tw_reconnecting_factory_init(&f, r, &h, NULL), 0);
    assert_true(f.opts.initial_delay == 1.0);
    assert_true(f.opts.factor == 2.7182818284590451);
    assert_true(f.opts.jitter == 0.11962656472);
    assert_true(f.opts.max_delay == 3600.0);
    assert_int_equal(f.opts.max_retries, 0);
    assert_false(f.opts.manual_reset);
    assert_true(tw_reconnecting_factory_delay(&f) == 1.0);
    assert_int_equal(tw_reconnecting_factory_retries(&f), 0);
    assert_true(tw_reconnecting_factory_trying(&f));
    assert_false(tw_reconnecting_factory_pending(&f));
    assert_int_equal(tw_reconnecting_factory_retry(&f, NULL), -EINVAL); /* no connector yet */

    volatile double zero = 0.0;
    tw_reconnect_opts_t bad[6];
    for (int i = 0; i < 6; i++)
        bad[i] = TW_RECONNECT_DEFAULTS;
    bad[0].initial_delay = -1;
    bad[1].factor = 0;
    bad[2].jitter = -0.1;
    bad[3].max_delay = zero / zero;
    bad[4].max_delay = 1 / zero;
    bad[5].max_retries = -1;
    for (int i = 0; i < 6; i++)
        assert_int_equal(tw_reconnecting_factory_init(&f, r, &h, &bad[i]), -EINVAL);
    tw_client_hooks_t nobuild = h;
    nobuild.build = NULL;
    assert_int_equal(tw_reconnecting_factory_init(&f, r, &nobuild, NULL), -EINVAL);
    tw_client_factory_t cf;
    assert_int_equal(tw_client_factory_init(&cf, &nobuild), -EINVAL);
    assert_int_equal(tw_client_factory_init(&cf, NULL), -EINVAL);
    tw_reactor_free(r);
}

static void without_jitter_delays_grow_by_factor_up_to_max(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    seen_t s = { .r = r };
    tw_client_hooks_t h = all_hooks(&s);
    tw_reconnect_opts_t o = TW_RECONNECT_DEFAULTS;
    o.jitter = 0;
    tw_reconnecting_factory_t f;
    assert_int_equal(tw_reconnecting_factory_init(&f, r, &h, &o), 0);
    for (int n = 1; n <= 14; n++) {
        double want = fmin(pow(E_FACTOR, n), 3600.0); /* initial 1.0 */
        double got = tw_reconnecting_factory_next_delay(&f);
        assert_true(fabs(got - want) <= 1e-9 * want);
        assert_true(tw_reconnecting_factory_delay(&f) == got);
        assert_int_equal(tw_reconnecting_factory_retries(&f), n);
    }
    assert_true(tw_reconnecting_factory_delay(&f) == 3600.0); /* e^9 > 3600: capped */

    /* other numbers: 10 ms doubling, capped at 80 ms */
    tw_reconnect_opts_t so = small_opts(0);
    assert_int_equal(tw_reconnecting_factory_init(&f, r, &h, &so), 0);
    const double want[] = { 0.02, 0.04, 0.08, 0.08, 0.08 };
    for (int i = 0; i < 5; i++)
        assert_true(fabs(tw_reconnecting_factory_next_delay(&f) - want[i]) < 1e-12);
    assert_int_equal(tw_reactor_timer_count(r), 0); /* arithmetic alone schedules nothing */
    tw_reactor_free(r);
}

static void jittered_delays_are_seeded_and_bounded(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    seen_t s = { .r = r };
    tw_client_hooks_t h = all_hooks(&s);
    tw_reconnecting_factory_t a, b, c;
    assert_int_equal(tw_reconnecting_factory_init(&a, r, &h, NULL), 0);
    assert_int_equal(tw_reconnecting_factory_init(&b, r, &h, NULL), 0);
    assert_int_equal(tw_reconnecting_factory_init(&c, r, &h, NULL), 0);
    tw_reconnecting_factory_seed(&a, 42);
    tw_reconnecting_factory_seed(&b, 42);
    tw_reconnecting_factory_seed(&c, 43);
    double prev = 1.0;
    int differ = 0, off_base = 0;
    for (int i = 0; i < 20; i++) {
        double da = tw_reconnecting_factory_next_delay(&a);
        double db = tw_reconnecting_factory_next_delay(&b);
        double dc = tw_reconnecting_factory_next_delay(&c);
        assert_true(da == db); /* same seed, same delays */
        differ += da != dc;
        /* normal(base, base * jitter), base = min(prev * e, 3600): within
         * six standard deviations (a 1-in-5e8 event; the seed fixes it) */
        double base = fmin(prev * E_FACTOR, 3600.0);
        assert_true(fabs(da - base) <= 6 * base * 0.11962656472);
        off_base += da != base;
        prev = da;
    }
    assert_true(differ >= 19);
    assert_int_equal(off_base, 20);
    tw_reactor_free(r);
}

static void jitter_is_normally_distributed(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    seen_t s = { .r = r };
    tw_client_hooks_t h = all_hooks(&s);
    tw_reconnect_opts_t o = TW_RECONNECT_DEFAULTS;
    o.initial_delay = 10.0;
    o.factor = 1.0;
    o.jitter = 0.1;
    tw_reconnecting_factory_t f;
    assert_int_equal(tw_reconnecting_factory_init(&f, r, &h, &o), 0);
    tw_reconnecting_factory_seed(&f, 7);
    enum { N = 40000 };
    double sum = 0, sq = 0;
    int within1 = 0, within2 = 0;
    for (int i = 0; i < N; i++) {
        tw_reconnecting_factory_reset_delay(&f);
        double d = tw_reconnecting_factory_next_delay(&f) - 10.0; /* N(0, 1) */
        sum += d;
        sq += d * d;
        within1 += fabs(d) <= 1.0;
        within2 += fabs(d) <= 2.0;
    }
    double mean = sum / N, sd = sqrt(sq / N - mean * mean);
    assert_true(fabs(mean) < 0.03);  /* standard error 0.005 */
    assert_true(fabs(sd - 1.0) < 0.03);
    assert_true(fabs((double)within1 / N - 0.6827) < 0.01);
    assert_true(fabs((double)within2 / N - 0.9545) < 0.006);
    tw_reactor_free(r);
}

static void reset_and_max_retries(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    seen_t s = { .r = r };
    tw_client_hooks_t h = all_hooks(&s);
    tw_reconnect_opts_t o = TW_RECONNECT_DEFAULTS;
    o.jitter = 0;
    o.factor = 2.0;
    o.max_retries = 3;
    tw_reconnecting_factory_t f;
    assert_int_equal(tw_reconnecting_factory_init(&f, r, &h, &o), 0);
    assert_true(tw_reconnecting_factory_next_delay(&f) == 2.0);
    assert_true(tw_reconnecting_factory_next_delay(&f) == 4.0);
    assert_true(tw_reconnecting_factory_next_delay(&f) == 8.0);
    assert_true(tw_reconnecting_factory_next_delay(&f) == -1.0); /* a 4th would pass 3 */
    assert_true(tw_reconnecting_factory_next_delay(&f) == -1.0);
    assert_int_equal(tw_reconnecting_factory_retries(&f), 3);
    assert_true(tw_reconnecting_factory_delay(&f) == 8.0);
    tw_reconnecting_factory_reset_delay(&f);
    assert_true(tw_reconnecting_factory_delay(&f) == 1.0);
    assert_int_equal(tw_reconnecting_factory_retries(&f), 0);
    assert_true(tw_reconnecting_factory_next_delay(&f) == 2.0);
    tw_reactor_free(r);
}

/* ---- on a fake clock ---------------------------------------------------- */

static void refused_attempts_retry_at_exact_times_then_give_up(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int port = free_port(r);
    tw_fake_clock_t clock;
    tw_fake_clock_attach(&clock, r, T0);
    seen_t s = { .r = r };
    tw_client_hooks_t h = all_hooks(&s);
    tw_reconnect_opts_t o = clock_opts(6);
    tw_reconnecting_factory_t f;
    assert_int_equal(tw_reconnecting_factory_init(&f, r, &h, &o), 0);
    s.f = &f;
    logcap.n = 0;

    /* Each refusal schedules the next attempt initial * factor^n later,
     * capped: 2, 4, 8, 10, 10, 10 s. */
    tw_connector_t *c = connect_to(r, &f.base, port);
    assert_int_equal(s.started, 1);
    assert_int_equal(s.started_at[0], T0);
    tw_time_t at = T0;
    for (int n = 1; n <= 6; n++) {
        io_until(&clock, &s.failed, n);
        assert_int_equal(s.fail_code[n - 1], -ECONNREFUSED);
        assert_string_equal(s.fail_domain[n - 1], "tcp");
        assert_true(tw_reconnecting_factory_pending(&f));
        double delay = fmin(o.initial_delay * pow(o.factor, n), o.max_delay);
        at += tw_seconds(delay);
        expect_retry_at(&clock, &s, at);
        assert_true(s.delay_at[n] == delay);
        assert_int_equal(tw_reconnecting_factory_retries(&f), n);
    }
    assert_int_equal(at, T0 + TW_SEC(2 + 4 + 8 + 10 + 10 + 10));

    /* The 6th retry's refusal: it gives up at once, with that failure. */
    io_until(&clock, &s.failed, 7);
    assert_int_equal(s.gave_up, 1);
    assert_int_equal(s.gave_up_at, at);
    assert_false(s.gave_up_clean);
    assert_string_equal(s.gave_up_domain, "tcp");
    assert_int_equal(s.gave_up_code, -ECONNREFUSED);
    assert_false(tw_reconnecting_factory_trying(&f));
    assert_false(tw_reconnecting_factory_pending(&f));
    assert_int_equal(tw_reconnecting_factory_retries(&f), 6);
    assert_clean(r);
    tw_fake_clock_advance(&clock, TW_SEC(3600));
    assert_int_equal(s.started, 7);
    assert_int_equal(s.made, 0);

    assert_int_equal(logcap.n, 7);
    assert_string_equal(logcap.lines[0], "reconnecting in 2.00 s (attempt 1)");
    assert_string_equal(logcap.lines[2], "reconnecting in 8.00 s (attempt 3)");
    assert_string_equal(logcap.lines[5], "reconnecting in 10.00 s (attempt 6)");
    assert_string_equal(logcap.lines[6], "giving up after 6 retries");

    tw_connector_free(c);
    assert_clean(r);
    tw_fake_clock_detach(&clock);
    tw_reactor_free(r);
}

static void seeded_jitter_retries_at_the_factorys_own_times(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int port = free_port(r);
    tw_fake_clock_t clock;
    tw_fake_clock_attach(&clock, r, T0);
    seen_t s = { .r = r };
    tw_client_hooks_t h = all_hooks(&s);
    tw_reconnect_opts_t o = TW_RECONNECT_DEFAULTS; /* factor e, jitter 0.1196... */
    o.max_retries = 5;
    tw_reconnecting_factory_t f, twin;
    assert_int_equal(tw_reconnecting_factory_init(&f, r, &h, &o), 0);
    assert_int_equal(tw_reconnecting_factory_init(&twin, r, &h, &o), 0);
    tw_reconnecting_factory_seed(&f, 42);
    tw_reconnecting_factory_seed(&twin, 42);
    s.f = &f;

    /* The twin, never connected, computes the delays the factory will use. */
    double delay[5], base = o.initial_delay;
    for (int i = 0; i < 5; i++) {
        delay[i] = tw_reconnecting_factory_next_delay(&twin);
        assert_true(delay[i] > 0 && delay[i] != base * o.factor); /* jittered */
        base = delay[i];
    }

    tw_connector_t *c = connect_to(r, &f.base, port);
    tw_time_t at = T0;
    for (int n = 1; n <= 5; n++) {
        io_until(&clock, &s.failed, n);
        at += tw_seconds(delay[n - 1]);
        expect_retry_at(&clock, &s, at);
        assert_true(s.delay_at[n] == delay[n - 1]);
    }
    io_until(&clock, &s.failed, 6);
    assert_int_equal(s.gave_up, 1);
    assert_int_equal(s.gave_up_at, at);
    assert_clean(r);
    tw_fake_clock_advance(&clock, TW_SEC(3600));
    assert_int_equal(s.started, 6);

    tw_connector_free(c);
    assert_clean(r);
    tw_fake_clock_detach(&clock);
    tw_reactor_free(r);
}

static void stop_trying_cancels_the_attempt_and_the_pending_retry(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int port = free_port(r);
    tw_fake_clock_t clock;
    tw_fake_clock_attach(&clock, r, T0);
    seen_t s = { .r = r };
    tw_client_hooks_t h = all_hooks(&s);
    tw_reconnect_opts_t o = clock_opts(0);
    tw_reconnecting_factory_t f;
    assert_int_equal(tw_reconnecting_factory_init(&f, r, &h, &o), 0);

    /* An attempt in progress: cancelled inside stop_trying, not retried. */
    tw_connector_t *c = connect_to(r, &f.base, port);
    assert_int_equal(s.started, 1);
    tw_reconnecting_factory_stop_trying(&f);
    assert_int_equal(s.failed, 1);
    assert_int_equal(s.fail_code[0], -ECANCELED);
    assert_false(tw_reconnecting_factory_pending(&f));
    assert_clean(r);
    tw_fake_clock_advance(&clock, TW_SEC(3600));
    assert_int_equal(s.started, 1);
    assert_int_equal(s.failed, 1);

    /* Trying again (reset_delay), by hand: refused, a retry is pending for
     * 2 s later; stop_trying a nanosecond before drops it. */
    tw_reconnecting_factory_reset_delay(&f);
    assert_int_equal(tw_connector_connect(c), 0);
    tw_time_t at = clock.now;
    io_until(&clock, &s.failed, 2);
    assert_int_equal(s.fail_code[1], -ECONNREFUSED);
    assert_true(tw_reconnecting_factory_pending(&f));
    assert_int_equal(tw_reactor_check_clean(r, NULL, 0), -1);
    assert_int_equal(tw_reactor_next_timer(r), at + TW_SEC(2));
    tw_fake_clock_advance(&clock, TW_SEC(2) - 1);
    assert_int_equal(s.started, 2);
    tw_reconnecting_factory_stop_trying(&f);
    assert_false(tw_reconnecting_factory_pending(&f));
    assert_int_equal(s.failed, 2); /* nothing in progress to cancel */
    assert_clean(r);
    assert_int_equal(tw_reconnecting_factory_retry(&f, NULL), -ECANCELED);
    tw_fake_clock_advance(&clock, TW_SEC(3600));
    assert_int_equal(s.started, 2);
    assert_int_equal(s.failed, 2);

    tw_connector_free(c);
    assert_clean(r);
    tw_fake_clock_detach(&clock);
    tw_reactor_free(r);
}

static void freeing_the_connector_cancels_the_retry(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int port = free_port(r);
    tw_fake_clock_t clock;
    tw_fake_clock_attach(&clock, r, T0);
    seen_t s = { .r = r };
    tw_client_hooks_t h = all_hooks(&s);
    tw_reconnect_opts_t o = clock_opts(0);
    tw_reconnecting_factory_t f;
    assert_int_equal(tw_reconnecting_factory_init(&f, r, &h, &o), 0);

    /* freed from outside, with a retry pending */
    tw_connector_t *c = connect_to(r, &f.base, port);
    io_until(&clock, &s.failed, 1);
    assert_true(tw_reconnecting_factory_pending(&f));
    tw_connector_free(c);
    assert_false(tw_reconnecting_factory_pending(&f));
    assert_clean(r);
    tw_fake_clock_advance(&clock, TW_SEC(3600));
    assert_int_equal(s.started, 1);

    /* freed from the connection_failed hook: nothing is scheduled */
    s.free_in_failed = true;
    connect_to(r, &f.base, port);
    io_until(&clock, &s.failed, 2);
    assert_false(tw_reconnecting_factory_pending(&f));
    assert_clean(r);
    tw_fake_clock_advance(&clock, TW_SEC(3600));
    assert_int_equal(s.started, 2);
    tw_fake_clock_detach(&clock);
    tw_reactor_free(r);
}

/* A lost connection is retried initial * factor after the loss; the next
 * loss's retry comes after the same delay when connecting reset it, after
 * a grown one with manual_reset (until reset_delay). */
static void lost_connections_are_retried_at_exact_times(void **state)
{
    (void)state;
    for (int manual = 0; manual <= 1; manual++) {
        tw_reactor_t *r = tw_test_reactor_new();
        tw_fake_clock_t clock;
        tw_fake_clock_attach(&clock, r, T0);
        seen_t s = { .r = r }, srv = { .r = r };
        tw_client_hooks_t h = all_hooks(&s);
        tw_reconnect_opts_t o = clock_opts(0);
        o.manual_reset = manual;
        tw_reconnecting_factory_t f;
        assert_int_equal(tw_reconnecting_factory_init(&f, r, &h, &o), 0);
        tw_client_factory_t server;
        tw_client_hooks_t sh = { .build = counted_build, .arg = &srv };
        assert_int_equal(tw_client_factory_init(&server, &sh), 0);
        tw_listener_t *l = listen_on(r, &server.base, 0);

        tw_connector_t *c = connect_to(r, &f.base, tw_listener_port(l));
        io_until(&clock, &s.made, 1);
        io_until(&clock, &srv.made, 1);
        /* Each retry's delay, then the retry count once it connected. */
        const double want[] = { 2.0, manual ? 4.0 : 2.0, 2.0 };
        const int retries[] = { manual, 2 * manual, manual };
        for (int i = 0; i < 3; i++) {
            if (i == 2 && manual) { /* what a handshake would do */
                tw_reconnecting_factory_reset_delay(&f);
                assert_true(tw_reconnecting_factory_delay(&f) == 1.0);
            }
            tw_factory_lose_connections(&server.base);
            io_until(&clock, &s.lost, i + 1);
            assert_true(s.lost_clean);
            assert_int_equal(s.lost_at, clock.now);
            expect_retry_at(&clock, &s, s.lost_at + tw_seconds(want[i]));
            io_until(&clock, &s.made, i + 2);
            io_until(&clock, &srv.made, i + 2);
            assert_false(tw_reconnecting_factory_pending(&f));
            /* manual_reset: connecting reset nothing, the delay stays grown */
            assert_int_equal(tw_reconnecting_factory_retries(&f), retries[i]);
            assert_true(tw_reconnecting_factory_delay(&f) == (manual ? want[i] : 1.0));
        }
        assert_int_equal(s.failed, 0);
        assert_int_equal(s.proto_lost, 3);

        tw_reconnecting_factory_stop_trying(&f);
        tw_connector_free(c);
        tw_listener_close(l);
        io_until(&clock, &srv.proto_lost, 4);
        tw_fake_clock_advance(&clock, 0);
        assert_int_equal(tw_factory_connection_count(&server.base), 0);
        assert_int_equal(tw_factory_connection_count(&f.base), 0);
        assert_clean(r);
        tw_fake_clock_detach(&clock);
        tw_reactor_free(r);
    }
}

static void plain_client_factory_calls_its_hooks(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int closed = free_port(r);
    tw_fake_clock_t clock;
    tw_fake_clock_attach(&clock, r, T0);
    seen_t s = { .r = r }, srv = { .r = r };
    tw_client_hooks_t h = all_hooks(&s);
    tw_client_factory_t f, server;
    assert_int_equal(tw_client_factory_init(&f, &h), 0);
    assert_null(f.hooks.gave_up);
    tw_client_hooks_t sh = { .build = counted_build, .arg = &srv };
    assert_int_equal(tw_client_factory_init(&server, &sh), 0);
    tw_listener_t *l = listen_on(r, &server.base, 0);

    tw_connector_t *c = connect_to(r, &f.base, tw_listener_port(l));
    assert_int_equal(s.started, 1);
    io_until(&clock, &s.made, 1);
    tw_factory_lose_connections(&server.base);
    io_until(&clock, &s.lost, 1);
    assert_true(s.lost_clean);
    assert_int_equal(s.proto_lost, 1);
    assert_int_equal(tw_reactor_timer_count(r), 0); /* a plain factory never retries */
    tw_connector_free(c);

    c = connect_to(r, &f.base, closed);
    io_until(&clock, &s.failed, 1);
    assert_string_equal(s.fail_domain[0], "tcp");
    assert_int_equal(s.fail_code[0], -ECONNREFUSED);
    tw_fake_clock_advance(&clock, TW_SEC(3600));
    assert_int_equal(s.started, 2);
    tw_connector_free(c);

    tw_listener_close(l);
    io_until(&clock, &srv.proto_lost, 1);
    tw_fake_clock_advance(&clock, 0);
    assert_clean(r);
    tw_fake_clock_detach(&clock);
    tw_reactor_free(r);
}

/* ---- on the real clock ---------------------------------------------------- */

static void connects_once_server_is_up_and_reconnects_after_loss(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    int port = free_port(r);
    seen_t s = { .r = r }, srv = { .r = r };
    tw_client_hooks_t h = all_hooks(&s);
    tw_reconnect_opts_t o = clock_opts(0); /* tiny: 1 ms doubling, capped at 4 ms */
    o.initial_delay = 0.001;
    o.max_delay = 0.004;
    tw_reconnecting_factory_t f;
    assert_int_equal(tw_reconnecting_factory_init(&f, r, &h, &o), 0);
    tw_client_factory_t server;
    tw_client_hooks_t sh = { .build = counted_build, .arg = &srv };
    assert_int_equal(tw_client_factory_init(&server, &sh), 0);

    /* Nobody listens yet: three refused attempts, the delay grows. */
    tw_connector_t *c = connect_to(r, &f.base, port);
    assert_true(tw_test_iterate_until(r, &s.failed, 3, 400));
    assert_int_equal(s.failed, 3);
    assert_int_equal(tw_reconnecting_factory_retries(&f), 3);
    assert_true(tw_reconnecting_factory_delay(&f) == 0.004);
    assert_true(tw_reconnecting_factory_pending(&f));

    /* The server comes up: the pending retry connects, and the connection
     * resets the back-off. */
    tw_listener_t *l = listen_on(r, &server.base, port);
    assert_true(tw_test_iterate_until(r, &s.made, 1, 400));
    assert_true(tw_test_iterate_until(r, &srv.made, 1, 400));
    assert_int_equal(s.started, 4);
    assert_int_equal(s.failed, 3);
    assert_true(s.started_at[3] - s.started_at[2] >= TW_MSEC(4));
    assert_int_equal(tw_reconnecting_factory_retries(&f), 0);
    assert_true(tw_reconnecting_factory_delay(&f) == 0.001);
    assert_false(tw_reconnecting_factory_pending(&f));
    assert_non_null(tw_connector_transport(c));

    /* The server drops it: connection_lost, then a retry after
     * initial * factor = 2 ms, which connects again. */
    tw_factory_lose_connections(&server.base);
    assert_true(tw_test_iterate_until(r, &s.made, 2, 400));
    assert_int_equal(s.lost, 1);
    assert_int_equal(s.proto_lost, 1);
    assert_true(s.lost_clean);
    assert_int_equal(s.started, 5);
    assert_true(s.started_at[4] - s.lost_at >= TW_MSEC(2));
    assert_int_equal(tw_reconnecting_factory_retries(&f), 0);
    assert_true(tw_reconnecting_factory_delay(&f) == 0.001);

    /* stop_trying while connected leaves the connection alone; once it is
     * lost, nothing is retried. */
    tw_reconnecting_factory_stop_trying(&f);
    assert_non_null(tw_connector_transport(c));
    assert_int_equal(s.failed, 3);
    assert_true(tw_test_iterate_until(r, &srv.made, 2, 400));
    tw_factory_lose_connections(&server.base);
    assert_true(tw_test_iterate_until(r, &s.lost, 2, 400));
    spin(r, 20); /* five times the longest delay */
    assert_int_equal(s.started, 5);
    assert_int_equal(s.made, 2);
    assert_false(tw_reconnecting_factory_pending(&f));
    assert_null(tw_connector_transport(c));

    tw_connector_free(c);
    tw_listener_close(l);
    assert_true(tw_test_iterate_until(r, &srv.proto_lost, 2, 400));
    spin(r, 5);
    assert_int_equal(tw_factory_connection_count(&server.base), 0);
    assert_int_equal(tw_factory_connection_count(&f.base), 0);
    assert_clean(r);
    tw_reactor_free(r);
}

int main(void)
{
    tw_log_set_sink(log_sink, NULL);
    tw_log_set_level(TW_LOG_DEBUG);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_are_twisteds_and_bad_options_are_refused),
        cmocka_unit_test(without_jitter_delays_grow_by_factor_up_to_max),
        cmocka_unit_test(jittered_delays_are_seeded_and_bounded),
        cmocka_unit_test(jitter_is_normally_distributed),
        cmocka_unit_test(reset_and_max_retries),
        cmocka_unit_test(refused_attempts_retry_at_exact_times_then_give_up),
        cmocka_unit_test(seeded_jitter_retries_at_the_factorys_own_times),
        cmocka_unit_test(stop_trying_cancels_the_attempt_and_the_pending_retry),
        cmocka_unit_test(freeing_the_connector_cancels_the_retry),
        cmocka_unit_test(lost_connections_are_retried_at_exact_times),
        cmocka_unit_test(plain_client_factory_calls_its_hooks),
        cmocka_unit_test(connects_once_server_is_up_and_reconnects_after_loss),
    };
    TW_TEST_MAIN(tests);
}
