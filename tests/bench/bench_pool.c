/* bench_pool.c -- work handed to a thread pool and its result brought back to
 * the loop thread (Twisted's deferToThread): twine against libuv.
 *
 *   usage: bench_pool twine|uv tput N C   N round trips, at most C in flight
 *          bench_pool twine|uv lat N      N round trips one at a time, each
 *                                         after a 1 ms pause of the loop
 *
 *   twine  tw_defer_to_thread(r, pool, work, i) on a pool made with
 *          tw_threadpool_new(min = max = 4); the Deferred's callback (in the
 *          loop thread) checks the result and submits the next round trip
 *   uv     uv_queue_work(loop, req, work, after_work) on libuv's own pool
 *          (UV_THREADPOOL_SIZE is set to 4, its default); after_work checks
 *          the result and submits the next
 *
 * The work function is the same tiny fixed job for both: FNV-1a over 64
 * bytes derived from the round trip's index, so that the bridge, not the
 * work, is what is timed.  BENCH_POOL_THREADS=n changes the pool size (both).
 *
 * Every round trip counts itself in the worker (each must run exactly once,
 * never in the loop thread) and in its completion, which must arrive in the
 * loop thread with the right hash.  A run fails unless every one of the N
 * round trips ran once and completed once, correctly, in the loop thread.
 *
 *   tput: round trips/s = N / (time from the first submission to the last
 *         completion, timed in the loop thread).  Also reports process CPU
 *         time / elapsed time, process CPU time per round trip (less
 *         disturbed by other processes than the rate) and how many worker
 *         threads ran work.
 *   lat:  the loop waits 1 ms (a timer; the workers and the loop go idle),
 *         takes t0 and submits one; the completion records now - t0 in the
 *         loop thread: a submit -> worker wake-up -> loop wake-up round trip.
 *         The first 100 are warm-up and dropped.  (libuv's timers count in
 *         milliseconds, hence 1 ms for both.)
 *
 * Prints one line: RESULT bench=pooltput|poollat impl=... ... ok=1 (exit 1
 * if not).
 */
#include "bench_common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>

#include <uv.h>

#include "tw_deferred.h"
#include "tw_reactor.h"
#include "tw_thread.h"

#define LAT_WARMUP 100
#define MAXC       4096
#define CACHE_LINE _Alignas(64)

/* ---- shared by both implementations ------------------------------------ */

static uint32_t N;             /* round trips to make (warm-up included) */
static uint32_t C;             /* at most in flight */
static int lat_mode;
static int n_threads = 4;
static pthread_t loop_thread;

/* Loop thread only. */
static CACHE_LINE uint32_t submitted, completed;
static uint64_t t_first, t_last;
static uint64_t bad_hash, bad_thread, failures;
static uint8_t *completions;   /* per round trip: how many completions arrived */
static uint64_t *t_send, *lat; /* lat mode */

/* Workers. */
static CACHE_LINE _Atomic uint8_t *runs; /* per round trip: how many times it ran */
static CACHE_LINE atomic_uint work_in_loop, workers_seen;
static _Thread_local int worker_counted;

/* The work: FNV-1a over 64 bytes made from i. */
static uint64_t work_hash(uint32_t i)
{
    uint64_t buf[8];
    for (int k = 0; k < 8; k++)
        buf[k] = (uint64_t)i * 0x9E3779B97F4A7C15ull + (uint64_t)k;
    const unsigned char *p = (const unsigned char *)buf;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t k = 0; k < sizeof buf; k++)
        h = (h ^ p[k]) * 0x100000001b3ull;
    return h;
}

/* Worker thread: the job, and the checks of where and how often it ran. */
static uint64_t do_work(uint32_t i)
{
    if (!worker_counted) {
        worker_counted = 1;
        atomic_fetch_add_explicit(&workers_seen, 1, memory_order_relaxed);
    }
    if (pthread_equal(pthread_self(), loop_thread))
        atomic_fetch_add_explicit(&work_in_loop, 1, memory_order_relaxed);
    if (i < N)
        atomic_fetch_add_explicit(&runs[i], 1, memory_order_relaxed);
    return work_hash(i);
}

typedef struct {
    const char *name;
    void (*setup)(void);
    void (*submit)(uint32_t i);            /* loop thread */
    void (*pause)(void);                   /* lat: call lat_resume() in 1 ms */
    void (*run)(void);                     /* until every round trip completed */
    void (*stop)(void);                    /* loop thread: the last one completed */
    void (*teardown)(void);
} impl_t;
static const impl_t *impl;

static void submit_next(void)
{
    uint32_t i = submitted++;
    if (lat_mode)
        t_send[i] = now_ns();
    impl->submit(i);
}

static void lat_resume(void)
{
    submit_next();
}

/* Loop thread: one round trip has come back with hash h (ok = 0: it failed). */
static void on_complete(uint32_t i, uint64_t h, int ok)
{
    uint64_t t = now_ns();
    if (lat_mode && i < N)
        lat[i] = t - t_send[i];
    if (!pthread_equal(pthread_self(), loop_thread))
        bad_thread++;
    if (!ok)
        failures++;
    else if (h != work_hash(i))
        bad_hash++;
    if (i < N)
        completions[i]++;
    if (++completed == N) {
        t_last = t;
        impl->stop();
        return;
    }
    if (lat_mode)
        impl->pause();
    else if (submitted < N)
        submit_next();
}

/* Loop thread, at the start: the first C submissions (one in lat mode). */
static void start(void)
{
    t_first = now_ns();
    uint32_t first = lat_mode ? 1 : C;
    while (submitted < first && submitted < N)
        submit_next();
}

/* ---- twine ------------------------------------------------------------- */

static tw_reactor_t *tr;
static tw_threadpool_t *tpool;

static tw_outcome_t tw_work(void *arg)
{
    return TW_OK((void *)(uintptr_t)do_work((uint32_t)(uintptr_t)arg), NULL);
}

static tw_outcome_t tw_done(tw_outcome_t in, void *a1, void *a2)
{
    (void)a2;
    on_complete((uint32_t)(uintptr_t)a1, (uint64_t)(uintptr_t)in.ptr, 1);
    return TW_OK(NULL, NULL);
}

static tw_outcome_t tw_failed(tw_outcome_t in, void *a1, void *a2)
{
    (void)a2;
    if (in.failure)
        fprintf(stderr, "bench_pool twine: round trip %u failed: %s: %s\n",
                (unsigned)(uintptr_t)a1, in.failure->domain, in.failure->message);
    tw_outcome_discard(in);
    on_complete((uint32_t)(uintptr_t)a1, 0, 0);
    return TW_OK(NULL, NULL);
}

static void tw_submit(uint32_t i)
{
    tw_deferred_t *d = tw_defer_to_thread(tr, tpool, tw_work, (void *)(uintptr_t)i);
    if (!d)
        DIE("tw_defer_to_thread: %s", strerror(errno));
    if (tw_deferred_add_callbacks(d, tw_done, tw_failed, (void *)(uintptr_t)i, NULL, NULL))
        DIE("tw_deferred_add_callbacks");
    tw_deferred_unref(d); /* the pool keeps its own reference until it fires */
}

static void tw_resume(tw_timer_t *t, void *arg)
{
    (void)t;
    (void)arg;
    lat_resume();
}

static void tw_pause(void)
{
    if (!tw_reactor_call_later(tr, TW_MSEC(1), tw_resume, NULL))
        DIE("tw_reactor_call_later");
}

static void tw_start(tw_reactor_t *r, void *arg)
{
    (void)r;
    (void)arg;
    start();
}

static void tw_setup(void)
{
    if (tw_reactor_new(&tr))
        DIE("tw_reactor_new");
    tw_threadpool_options_t o = { .min_threads = n_threads, .max_threads = n_threads,
                                  .name = "bench" };
    if (!(tpool = tw_threadpool_new(tr, &o)))
        DIE("tw_threadpool_new: %s", strerror(errno));
}

static void tw_run(void)
{
    if (tw_reactor_call_soon(tr, tw_start, NULL))
        DIE("tw_reactor_call_soon");
    if (tw_reactor_run(tr, TW_RUN_DEFAULT))
        DIE("tw_reactor_run");
}

static void tw_stop(void)
{
    if (tw_reactor_stop(tr))
        DIE("tw_reactor_stop");
}

static void tw_teardown(void)
{
    tw_threadpool_free(tpool);
    tw_reactor_free(tr);
}

/* ---- libuv ------------------------------------------------------------- */

typedef struct {
    uv_work_t req;
    uint32_t i;
    uint64_t h;
} uslot_t;

static uv_loop_t uloop;
static uv_timer_t utimer;
static uslot_t *uslots;       /* C of them; a slot carries one round trip at a time */
static uslot_t *ufree[MAXC];  /* free slots */
static uint32_t n_ufree;

static void u_work(uv_work_t *req)
{
    uslot_t *s = (uslot_t *)req;
    s->h = do_work(s->i);
}

static void u_after_work(uv_work_t *req, int status)
{
    uslot_t *s = (uslot_t *)req;
    if (status)
        fprintf(stderr, "bench_pool uv: round trip %u: %s\n", s->i, uv_strerror(status));
    ufree[n_ufree++] = s;
    on_complete(s->i, s->h, status == 0);
}

static void u_submit(uint32_t i)
{
    if (!n_ufree)
        DIE("more than C in flight");
    uslot_t *s = ufree[--n_ufree];
    s->i = i;
    int e = uv_queue_work(&uloop, &s->req, u_work, u_after_work);
    if (e)
        DIE("uv_queue_work: %s", uv_strerror(e));
}

static void u_resume(uv_timer_t *t)
{
    (void)t;
    lat_resume();
}

static void u_pause(void)
{
    if (uv_timer_start(&utimer, u_resume, 1, 0))
        DIE("uv_timer_start");
}

static void u_setup(void)
{
    char n[16];
    snprintf(n, sizeof n, "%d", n_threads);
    setenv("UV_THREADPOOL_SIZE", n, 1); /* read when the pool starts */
    if (uv_loop_init(&uloop) || uv_timer_init(&uloop, &utimer))
        DIE("uv init");
    if (!(uslots = calloc(C, sizeof *uslots)))
        DIE("out of memory");
    for (uint32_t k = 0; k < C; k++)
        ufree[n_ufree++] = &uslots[C - 1 - k];
}

static void u_run(void)
{
    start();
    uv_run(&uloop, UV_RUN_DEFAULT); /* returns when no request or timer is left */
}

static void u_stop(void) {}

static void u_teardown(void)
{
    uv_close((uv_handle_t *)&utimer, NULL);
    uv_run(&uloop, UV_RUN_DEFAULT);
    if (uv_loop_close(&uloop))
        DIE("uv_loop_close");
    free(uslots);
}

static const impl_t impls[] = {
    { "twine", tw_setup, tw_submit, tw_pause, tw_run, tw_stop, tw_teardown },
    { "uv", u_setup, u_submit, u_pause, u_run, u_stop, u_teardown },
};

/* ---- main -------------------------------------------------------------- */

int main(int argc, char **argv)
{
    if (argc < 4)
        DIE("usage: %s twine|uv tput N C | twine|uv lat N", argv[0]);
    for (size_t i = 0; i < sizeof impls / sizeof impls[0]; i++)
        if (!strcmp(argv[1], impls[i].name))
            impl = &impls[i];
    if (!impl)
        DIE("unknown impl %s (twine, uv)", argv[1]);
    uint32_t n = (uint32_t)strtoul(argv[3], NULL, 10);
    if (!strcmp(argv[2], "tput")) {
        if (argc != 5)
            DIE("tput needs N C");
        C = (uint32_t)strtoul(argv[4], NULL, 10);
        N = n;
    } else if (!strcmp(argv[2], "lat")) {
        if (argc != 4)
            DIE("lat needs N");
        lat_mode = 1;
        C = 1;
        N = n + LAT_WARMUP;
    } else {
        DIE("unknown mode %s", argv[2]);
    }
    if (n < 1 || C < 1 || C > MAXC)
        DIE("bad N or C (1 <= C <= %d)", MAXC);
    n_threads = (int)env_u64("BENCH_POOL_THREADS", 4);
    if (n_threads < 1 || n_threads > 128)
        DIE("bad BENCH_POOL_THREADS");

    runs = calloc(N, sizeof *runs);
    completions = calloc(N, sizeof *completions);
    t_send = calloc(N, sizeof *t_send);
    lat = calloc(N, sizeof *lat);
    if (!runs || !completions || !t_send || !lat)
        DIE("out of memory");
    loop_thread = pthread_self();

    impl->setup();
    double c0 = cpu_s();
    uint64_t w0 = now_ns();
    impl->run();
    double c1 = cpu_s();
    uint64_t w1 = now_ns();
    impl->teardown();

    uint64_t twice = 0, lost = 0;
    for (uint32_t i = 0; i < N; i++) {
        uint8_t k = atomic_load_explicit(&runs[i], memory_order_relaxed);
        twice += k > 1 || completions[i] > 1;
        lost += k == 0 || completions[i] == 0;
    }
    unsigned in_loop = atomic_load(&work_in_loop), seen = atomic_load(&workers_seen);
    int ok = completed == N && submitted == N && twice == 0 && lost == 0 && bad_hash == 0 &&
             bad_thread == 0 && failures == 0 && in_loop == 0 && t_last > t_first;
    if (!ok)
        fprintf(stderr,
                "bench_pool %s %s: check failed (completed=%u/%u ran-or-completed-twice=%llu "
                "lost=%llu bad_hash=%llu completions-off-loop=%llu failures=%llu "
                "work-in-loop=%u)\n",
                impl->name, argv[2], completed, N, (unsigned long long)twice,
                (unsigned long long)lost, (unsigned long long)bad_hash,
                (unsigned long long)bad_thread, (unsigned long long)failures, in_loop);

    if (!lat_mode) {
        double el = (double)(t_last - t_first) / 1e9;
        printf("RESULT bench=pooltput impl=%s C=%u N=%u threads=%d rt_per_s=%.0f elapsed_s=%.3f "
               "cpu_util=%.2f cpu_us_per_rt=%.2f workers=%u ok=%d\n",
               impl->name, C, N, n_threads, (double)N / el, el,
               (c1 - c0) / ((double)(w1 - w0) / 1e9), (c1 - c0) * 1e6 / N, seen, ok);
    } else {
        uint64_t *v = lat + LAT_WARMUP;
        qsort(v, n, sizeof *v, cmp_u64);
#define PCT(p) ((double)v[(size_t)((double)(n - 1) * (p))] / 1000.0)
        printf("RESULT bench=poollat impl=%s n=%u threads=%d p50_us=%.1f p90_us=%.1f p99_us=%.1f "
               "p999_us=%.1f max_us=%.1f min_us=%.1f workers=%u ok=%d\n",
               impl->name, n, n_threads, PCT(0.50), PCT(0.90), PCT(0.99), PCT(0.999),
               (double)v[n - 1] / 1000.0, (double)v[0] / 1000.0, seen, ok);
    }
    return ok ? 0 : 1;
}
