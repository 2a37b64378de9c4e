/* bench_timers.c -- delayed calls: twine against libuv and libevent.
 *
 *   usage: bench_timers twine|uv|ev N
 *
 * One process measures one implementation with N pending far timers, in three
 * phases (the method of bench/micro/timers.c):
 *
 *   1. setup  schedule N far timers, deadlines uniform in [1, 100] s -> add_far_ns
 *   2. fire   schedule FIRE (1M) timers due uniformly within [0, 50] ms
 *             (add_near_ns), sleep until 80 ms after the last add so that all
 *             are due, then step the loop without blocking until all have
 *             fired; elapsed / timers fired -> fire_ns.  Far timers that come
 *             due meanwhile fire too and are counted (far_fired_in_fire).
 *   3. schedule + cancel, inside a loop callback (where applications do it):
 *             PAIRS (1M) x { start one more timer, random deadline in
 *             [1, 100] s; cancel it }                         -> sc_rand_ns
 *             PAIRS x { start it due in 0.5 s, earlier than every pending
 *             timer; cancel it }                              -> sc_early_ns
 *             One timer handle is reused.
 *
 * twine: embedded tw_timer_t (one array per kind, each timer inside a small
 * wrapper that records its deadline, as the libuv driver does), started with
 * tw_timer_start_at; the loop step is tw_reactor_iterate(r, 0); phase 3 runs in
 * a tw_reactor_call_soon callback with tw_timer_start / tw_timer_cancel.
 * libuv: uv_timer_init/start/stop, uv_run(NOWAIT), phase 3 in a uv_idle callback.
 * libevent: evtimer_new/add/del, EVLOOP_NONBLOCK, phase 3 in an event_base_once
 * callback.  Deadlines are precomputed in each library's unit, so the timed
 * loops contain only timer calls.
 *
 * Checks (exit 1 when one fails): every near timer fired exactly once and in
 * deadline order (twine: also in scheduling order for equal deadlines); the
 * timers still pending plus the far timers that fired equal N; the reused
 * timer is idle at the end.
 *
 * Prints: RESULT bench=timers impl=... N=... add_far_ns=.. add_near_ns=..
 *         fire_ns=.. sc_rand_ns=.. sc_early_ns=.. ... ok=1
 * Diagnosis: BENCH_FIRE=n fires n instead of 1M near timers, BENCH_PAIRS=n.
 */
#include "bench_common.h"

#include <string.h>
#include <sys/resource.h>

#include <event2/event.h>
#include <uv.h>

#include "tw_reactor.h"

#define FAR_MIN_NS    1000000000ull   /* 1 s */
#define FAR_MAX_NS    100000000000ull /* 100 s */
#define NEAR_MAX_NS   50000000ull     /* 50 ms */
#define EARLY_NS      500000000ull    /* 0.5 s: before every pending far timer */
#define FIRE_SLACK_NS 80000000ull     /* sleep after the last near add */

static uint32_t FIRE = 1000000u;
static uint32_t PAIRS = 1000000u;

static uint64_t seed = 0x243F6A8885A308D3ull;
static uint64_t far_off(void) { return FAR_MIN_NS + rng_below(&seed, FAR_MAX_NS - FAR_MIN_NS + 1); }
static uint64_t near_off(void) { return rng_below(&seed, NEAR_MAX_NS + 1); }

/* results and checks */
static double r_add_far, r_add_near, r_fire, r_sc_rand, r_sc_early;
static uint64_t near_fired, far_fired, far_fired_in_fire, inversions, pending_after;
static uint64_t last_due, last_idx;
static int extra_fired, extra_active_after, sc_done;

static double per(uint64_t t0, uint64_t t1, uint64_t n)
{
    return n ? (double)(t1 - t0) / (double)n : 0.0;
}

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz);
    if (!p)
        DIE("out of memory");
    return p;
}

static size_t max3(size_t a, size_t b, size_t c)
{
    size_t m = a > b ? a : b;
    return m > c ? m : c;
}

/* Near timers must fire in deadline order; `idx` (scheduling order) breaks
 * ties when the implementation promises FIFO for equal deadlines (twine). */
static inline void near_fire(uint64_t due, uint64_t idx, int fifo)
{
    if (near_fired && (due < last_due || (fifo && due == last_due && idx <= last_idx)))
        inversions++;
    last_due = due;
    last_idx = idx;
    near_fired++;
}

/* ------------------------------------------------------------------------- */
/* twine                                                                     */
/* ------------------------------------------------------------------------- */

typedef struct {
    tw_timer_t t; /* embedded: no allocation per start */
    uint64_t due;
    uint64_t idx;
} ttimer;

static tw_reactor_t *tr;
static tw_timer_t textra;
static tw_time_t *t_offs;

static void t_near_cb(tw_timer_t *t, void *arg)
{
    (void)arg;
    const ttimer *w = (const ttimer *)t; /* t is the first member */
    near_fire(w->due, w->idx, 1);
}

static void t_far_cb(tw_timer_t *t, void *arg)
{
    (void)t;
    (void)arg;
    far_fired++;
}

static void t_extra_cb(tw_timer_t *t, void *arg)
{
    (void)t;
    (void)arg;
    extra_fired++;
}

static void t_bench_cb(tw_reactor_t *r, void *arg)
{
    (void)r;
    (void)arg;
    const tw_time_t *o = t_offs;
    uint64_t t0 = now_ns();
    for (uint32_t i = 0; i < PAIRS; i++) {
        if (tw_timer_start(&textra, o[i]))
            DIE("tw_timer_start");
        tw_timer_cancel(&textra);
    }
    r_sc_rand = per(t0, now_ns(), PAIRS);
    t0 = now_ns();
    for (uint32_t i = 0; i < PAIRS; i++) {
        if (tw_timer_start(&textra, (tw_time_t)EARLY_NS))
            DIE("tw_timer_start");
        tw_timer_cancel(&textra);
    }
    r_sc_early = per(t0, now_ns(), PAIRS);
    sc_done = 1;
}

static void run_twine(uint32_t N)
{
    if (tw_reactor_new(&tr))
        DIE("tw_reactor_new");
    ttimer *far = xcalloc(N, sizeof *far), *nr = xcalloc(FIRE, sizeof *nr);
    tw_time_t *offs = xcalloc(max3(N, FIRE, PAIRS), sizeof *offs);
    for (uint32_t i = 0; i < N; i++)
        tw_timer_init(&far[i].t, tr, t_far_cb, NULL);
    for (uint32_t i = 0; i < FIRE; i++) {
        tw_timer_init(&nr[i].t, tr, t_near_cb, NULL);
        nr[i].idx = i;
    }
    /* 1. N far timers */
    for (uint32_t i = 0; i < N; i++)
        offs[i] = (tw_time_t)far_off();
    tw_time_t base = tw_time_now();
    uint64_t t0 = now_ns();
    for (uint32_t i = 0; i < N; i++)
        if (tw_timer_start_at(&far[i].t, base + offs[i]))
            DIE("tw_timer_start_at");
    r_add_far = per(t0, now_ns(), N);
    /* 2. fire */
    for (uint32_t i = 0; i < FIRE; i++)
        offs[i] = (tw_time_t)near_off();
    base = tw_time_now();
    t0 = now_ns();
    for (uint32_t i = 0; i < FIRE; i++)
        if (tw_timer_start_at(&nr[i].t, base + offs[i]))
            DIE("tw_timer_start_at");
    r_add_near = per(t0, now_ns(), FIRE);
    for (uint32_t i = 0; i < FIRE; i++)
        nr[i].due = (uint64_t)(base + offs[i]);
    sleep_ns(FIRE_SLACK_NS);
    uint64_t ff0 = far_fired;
    t0 = now_ns();
    while (near_fired < FIRE)
        if (tw_reactor_iterate(tr, 0) < 0)
            DIE("tw_reactor_iterate");
    uint64_t t1 = now_ns();
    far_fired_in_fire = far_fired - ff0;
    r_fire = per(t0, t1, near_fired + far_fired_in_fire);
    for (uint32_t i = 0; i < FIRE; i++)
        if (tw_timer_active(&nr[i].t))
            inversions++; /* a near timer still pending: counted as a failure */
    /* 3. schedule + cancel, inside a soon call */
    for (uint32_t i = 0; i < PAIRS; i++)
        offs[i] = (tw_time_t)far_off();
    t_offs = offs;
    tw_timer_init(&textra, tr, t_extra_cb, NULL);
    if (tw_reactor_call_soon(tr, t_bench_cb, NULL))
        DIE("tw_reactor_call_soon");
    while (!sc_done)
        if (tw_reactor_iterate(tr, 0) < 0)
            DIE("tw_reactor_iterate");
    extra_active_after = tw_timer_active(&textra);
    pending_after = (uint64_t)tw_reactor_timer_count(tr);
    tw_reactor_free(tr);
    free(far);
    free(nr);
    free(offs);
}

/* ------------------------------------------------------------------------- */
/* libuv                                                                     */
/* ------------------------------------------------------------------------- */

typedef struct {
    uv_timer_t h; /* first */
    uint64_t due; /* ms */
    uint64_t idx;
} utimer;

static uv_loop_t uloop;
static uv_timer_t uextra;
static uint64_t *u_offs;

static void u_near_cb(uv_timer_t *h)
{
    const utimer *u = (const utimer *)h;
    near_fire(u->due, u->idx, 0);
}

static void u_far_cb(uv_timer_t *h)
{
    (void)h;
    far_fired++;
}

static void u_extra_cb(uv_timer_t *h)
{
    (void)h;
    extra_fired++;
}

static void u_bench_cb(uv_idle_t *idle)
{
    const uint64_t *o = u_offs;
    uint64_t t0 = now_ns();
    for (uint32_t i = 0; i < PAIRS; i++) {
        uv_timer_start(&uextra, u_extra_cb, o[i], 0);
        uv_timer_stop(&uextra);
    }
    r_sc_rand = per(t0, now_ns(), PAIRS);
    t0 = now_ns();
    for (uint32_t i = 0; i < PAIRS; i++) {
        uv_timer_start(&uextra, u_extra_cb, EARLY_NS / 1000000, 0);
        uv_timer_stop(&uextra);
    }
    r_sc_early = per(t0, now_ns(), PAIRS);
    uv_idle_stop(idle);
    uv_stop(idle->loop);
}

static void run_uv(uint32_t N)
{
    if (uv_loop_init(&uloop))
        DIE("uv_loop_init");
    utimer *far = xcalloc(N, sizeof *far), *nr = xcalloc(FIRE, sizeof *nr);
    uint64_t *offs = xcalloc(max3(N, FIRE, PAIRS), sizeof *offs);
    for (uint32_t i = 0; i < N; i++)
        uv_timer_init(&uloop, &far[i].h);
    for (uint32_t i = 0; i < FIRE; i++) {
        uv_timer_init(&uloop, &nr[i].h);
        nr[i].idx = i;
    }
    /* 1. N far timers (libuv counts in ms) */
    for (uint32_t i = 0; i < N; i++)
        offs[i] = far_off() / 1000000;
    uv_update_time(&uloop);
    uint64_t t0 = now_ns();
    for (uint32_t i = 0; i < N; i++)
        uv_timer_start(&far[i].h, u_far_cb, offs[i], 0);
    r_add_far = per(t0, now_ns(), N);
    /* 2. fire */
    for (uint32_t i = 0; i < FIRE; i++)
        offs[i] = near_off() / 1000000;
    uv_update_time(&uloop);
    uint64_t base = uv_now(&uloop);
    t0 = now_ns();
    for (uint32_t i = 0; i < FIRE; i++)
        uv_timer_start(&nr[i].h, u_near_cb, offs[i], 0);
    r_add_near = per(t0, now_ns(), FIRE);
    for (uint32_t i = 0; i < FIRE; i++)
        nr[i].due = base + offs[i];
    sleep_ns(FIRE_SLACK_NS);
    uint64_t ff0 = far_fired;
    t0 = now_ns();
    while (near_fired < FIRE)
        uv_run(&uloop, UV_RUN_NOWAIT);
    uint64_t t1 = now_ns();
    far_fired_in_fire = far_fired - ff0;
    r_fire = per(t0, t1, near_fired + far_fired_in_fire);
    /* 3. schedule + cancel, inside an idle callback */
    for (uint32_t i = 0; i < PAIRS; i++)
        offs[i] = far_off() / 1000000;
    u_offs = offs;
    uv_timer_init(&uloop, &uextra);
    uv_idle_t idle;
    uv_idle_init(&uloop, &idle);
    uv_idle_start(&idle, u_bench_cb);
    uv_run(&uloop, UV_RUN_DEFAULT);
    extra_active_after = uv_is_active((uv_handle_t *)&uextra);
    pending_after = uloop.timer_heap.nelts;
}

/* ------------------------------------------------------------------------- */
/* libevent                                                                  */
/* ------------------------------------------------------------------------- */

typedef struct {
    uint64_t due_us;
    uint64_t idx;
} einfo;

static struct event_base *ebase;
static struct event *eextra;
static struct timeval *e_tvs;

static void e_near_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    const einfo *e = arg;
    near_fire(e->due_us, e->idx, 0);
}

static void e_far_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    far_fired++;
}

static void e_extra_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    extra_fired++;
}

static struct timeval ns_tv(uint64_t ns)
{
    return (struct timeval){ (time_t)(ns / 1000000000ull),
                             (suseconds_t)(ns % 1000000000ull / 1000) };
}

static void e_bench_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    const struct timeval *tv = e_tvs;
    uint64_t t0 = now_ns();
    for (uint32_t i = 0; i < PAIRS; i++) {
        evtimer_add(eextra, &tv[i]);
        evtimer_del(eextra);
    }
    r_sc_rand = per(t0, now_ns(), PAIRS);
    struct timeval early = ns_tv(EARLY_NS);
    t0 = now_ns();
    for (uint32_t i = 0; i < PAIRS; i++) {
        evtimer_add(eextra, &early);
        evtimer_del(eextra);
    }
    r_sc_early = per(t0, now_ns(), PAIRS);
}

static void run_ev(uint32_t N)
{
    ebase = event_base_new();
    if (!ebase)
        DIE("event_base_new");
    struct event **far = xcalloc(N, sizeof *far), **nr = xcalloc(FIRE, sizeof *nr);
    einfo *ni = xcalloc(FIRE, sizeof *ni);
    struct timeval *tvs = xcalloc(max3(N, FIRE, PAIRS), sizeof *tvs);
    for (uint32_t i = 0; i < N; i++)
        if (!(far[i] = evtimer_new(ebase, e_far_cb, NULL)))
            DIE("evtimer_new");
    for (uint32_t i = 0; i < FIRE; i++) {
        if (!(nr[i] = evtimer_new(ebase, e_near_cb, &ni[i])))
            DIE("evtimer_new");
        ni[i].idx = i;
    }
    /* 1. N far timers */
    for (uint32_t i = 0; i < N; i++)
        tvs[i] = ns_tv(far_off());
    uint64_t t0 = now_ns();
    for (uint32_t i = 0; i < N; i++)
        evtimer_add(far[i], &tvs[i]);
    r_add_far = per(t0, now_ns(), N);
    /* 2. fire */
    for (uint32_t i = 0; i < FIRE; i++)
        tvs[i] = ns_tv(near_off());
    t0 = now_ns();
    for (uint32_t i = 0; i < FIRE; i++)
        evtimer_add(nr[i], &tvs[i]);
    r_add_near = per(t0, now_ns(), FIRE);
    for (uint32_t i = 0; i < FIRE; i++) { /* the deadlines, for the order check */
        struct timeval tv;
        if (!event_pending(nr[i], EV_TIMEOUT, &tv))
            DIE("near timer not pending");
        ni[i].due_us = (uint64_t)tv.tv_sec * 1000000ull + (uint64_t)tv.tv_usec;
    }
    sleep_ns(FIRE_SLACK_NS);
    uint64_t ff0 = far_fired;
    t0 = now_ns();
    while (near_fired < FIRE)
        event_base_loop(ebase, EVLOOP_NONBLOCK);
    uint64_t t1 = now_ns();
    far_fired_in_fire = far_fired - ff0;
    r_fire = per(t0, t1, near_fired + far_fired_in_fire);
    /* 3. schedule + cancel, inside a loop callback */
    for (uint32_t i = 0; i < PAIRS; i++)
        tvs[i] = ns_tv(far_off());
    e_tvs = tvs;
    if (!(eextra = evtimer_new(ebase, e_extra_cb, NULL)))
        DIE("evtimer_new");
    if (event_base_once(ebase, -1, EV_TIMEOUT, e_bench_cb, NULL, NULL))
        DIE("event_base_once");
    event_base_loop(ebase, EVLOOP_ONCE);
    extra_active_after = event_pending(eextra, EV_TIMEOUT, NULL) != 0;
    pending_after = (uint64_t)event_base_get_num_events(ebase, EVENT_BASE_COUNT_ADDED);
}

/* ------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    if (argc != 3)
        DIE("usage: %s twine|uv|ev N", argv[0]);
    const char *impl = argv[1];
    uint32_t N = (uint32_t)strtoul(argv[2], NULL, 10);
    FIRE = (uint32_t)env_u64("BENCH_FIRE", FIRE);
    PAIRS = (uint32_t)env_u64("BENCH_PAIRS", PAIRS);
    if (FIRE == 0 || PAIRS == 0)
        DIE("BENCH_FIRE and BENCH_PAIRS must be positive");

    if (!strcmp(impl, "twine"))
        run_twine(N);
    else if (!strcmp(impl, "uv"))
        run_uv(N);
    else if (!strcmp(impl, "ev"))
        run_ev(N);
    else
        DIE("unknown impl %s (twine, uv, ev)", impl);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    int ok = near_fired == FIRE && inversions == 0 && r_sc_rand > 0 && r_sc_early > 0 &&
             pending_after + far_fired == N && !extra_fired && !extra_active_after;
    printf("RESULT bench=timers impl=%s N=%u add_far_ns=%.1f add_near_ns=%.1f fire_ns=%.1f "
           "sc_rand_ns=%.1f sc_early_ns=%.1f fired=%u near_fired=%llu far_fired_in_fire=%llu "
           "far_fired=%llu inversions=%llu pending_after=%llu maxrss_mb=%.0f ok=%d\n",
           impl, N, r_add_far, r_add_near, r_fire, r_sc_rand, r_sc_early, FIRE,
           (unsigned long long)near_fired, (unsigned long long)far_fired_in_fire,
           (unsigned long long)far_fired, (unsigned long long)inversions,
           (unsigned long long)pending_after, ru.ru_maxrss / 1024.0, ok);
    if (!ok)
        fprintf(stderr, "bench_timers %s N=%u: check failed (near_fired=%llu/%u inversions=%llu "
                "pending_after=%llu far_fired=%llu extra_fired=%d extra_active=%d)\n",
                impl, N, (unsigned long long)near_fired, FIRE, (unsigned long long)inversions,
                (unsigned long long)pending_after, (unsigned long long)far_fired, extra_fired,
                extra_active_after);
    return ok ? 0 : 1;
}
