/* bench_xthread.c -- calls from other threads into the loop (Twisted's
 * callFromThread): twine against libuv and libevent.
 *
 *   usage: bench_xthread twine|uv|ev tput K M    K producer threads x M calls each
 *          bench_xthread twine|uv|ev lat COUNT   COUNT single calls into an idle loop
 *
 *   twine  tw_call_from_thread(r, cb, arg); the main thread runs tw_reactor_run()
 *          and is stopped by a last tw_call_from_thread() whose callback calls
 *          tw_reactor_stop().  {thread, seq} travel in `arg`.
 *   uv     a mutex-protected queue of 16-byte {fn, tid, seq} + uv_async_send(),
 *          drained in the async callback (as bench/micro/xthread.c does)
 *   ev     evthread_use_pthreads(), the same queue + event_active() on a user
 *          event that is never added; EVLOOP_NO_EXIT_ON_EMPTY
 *
 * Every call checks that its seq is the next one of its thread (per-thread
 * FIFO) and counts itself; a run fails unless every call ran exactly once, in
 * order (and, for twine, unless the stop call ran after all of them).
 *
 *   tput: calls/s = K*M / (time from releasing the producers to the last call
 *         having run, timed in the loop thread).  Also reports wakeups (loop
 *         iterations that ran calls) and process CPU time / elapsed time.
 *   lat:  one producer waits until its previous call ran, sleeps a random
 *         200..800 us, takes t0 and makes one call; the call records now - t0
 *         in the loop thread.  The first 100 calls are warm-up and dropped.
 *
 * Prints one line: RESULT bench=xtput|xlat impl=... ... ok=1 (exit 1 if not).
 * Diagnosis: XT_PIN=same (all threads on CPU 0) or split (loop on CPU 0,
 * producers on CPU 1).
 */
#include "bench_common.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <uv.h>

#include "tw_reactor.h"

#define MAXT          64
#define LAT_WARMUP    100
#define PAUSE_MIN_NS  200000ull
#define PAUSE_SPAN_NS 600000ull

/* ---- the calls, shared by every implementation ------------------------ */

/* What the loop thread writes lives on cache lines of its own, away from what
 * the producers read on every call (the reactor pointer, the queue), so that
 * the benchmark adds no false sharing of its own. */
#define CACHE_LINE _Alignas(64)
static CACHE_LINE uint64_t done;  /* calls run (loop thread only) */
static uint64_t total;            /* calls expected */
static uint64_t t_last;           /* when the last call ran (loop thread) */
static uint64_t order_errors;
static uint64_t wakeups;
static uint32_t expected[MAXT];
static CACHE_LINE _Atomic uint64_t done_pub; /* what the latency producer waits on */
static CACHE_LINE uint64_t *t_send, *lat;

static inline void on_call(uint32_t tid, uint32_t seq)
{
    if (seq != expected[tid])
        order_errors++;
    expected[tid] = seq + 1;
    if (++done == total)
        t_last = now_ns();
}

static void on_lat_call(uint32_t tid, uint32_t seq)
{
    lat[seq] = now_ns() - t_send[seq];
    on_call(tid, seq);
    atomic_store_explicit(&done_pub, done, memory_order_release);
}

typedef struct {
    const char *name;
    void (*setup)(void);
    void (*call)(uint32_t tid, uint32_t seq, int latency); /* any producer thread */
    void (*producers_done)(void); /* after the last call of the last producer */
    void (*run)(void);            /* loop thread: until every call has run */
    void (*teardown)(void);
} impl_t;

/* ---- twine ------------------------------------------------------------- */

static CACHE_LINE tw_reactor_t *tr; /* read by the producers on every call */
static int t_stopped_early;

static inline void *tw_pack(uint32_t tid, uint32_t seq)
{
    return (void *)(((uintptr_t)tid << 32) | seq);
}

/* Wakeups are counted without a library call per call: the first call of a
 * batch opens it and queues a soon call, which runs at the end of the same
 * iteration and closes it. */
static CACHE_LINE int t_batch_open; /* loop thread only */

static void tw_close_batch(tw_reactor_t *r, void *arg)
{
    (void)r;
    (void)arg;
    t_batch_open = 0;
}

static inline void tw_count_wakeup(tw_reactor_t *r)
{
    if (!t_batch_open) {
        t_batch_open = 1;
        wakeups++;
        if (tw_reactor_call_soon(r, tw_close_batch, NULL))
            DIE("tw_reactor_call_soon");
    }
}

static void tw_on_call(tw_reactor_t *r, void *arg)
{
    uintptr_t x = (uintptr_t)arg;
    tw_count_wakeup(r);
    on_call((uint32_t)(x >> 32), (uint32_t)x);
}

static void tw_on_lat_call(tw_reactor_t *r, void *arg)
{
    uintptr_t x = (uintptr_t)arg;
    on_lat_call((uint32_t)(x >> 32), (uint32_t)x); /* takes the time first */
    tw_count_wakeup(r);
}

static void tw_on_stop(tw_reactor_t *r, void *arg)
{
    (void)arg;
    if (done != total)
        t_stopped_early = 1; /* queued after every call: they must all have run */
    if (tw_reactor_stop(r))
        DIE("tw_reactor_stop");
}

static void tw_setup(void)
{
    if (tw_reactor_new(&tr))
        DIE("tw_reactor_new");
}

static void tw_call(uint32_t tid, uint32_t seq, int latency)
{
    if (tw_call_from_thread(tr, latency ? tw_on_lat_call : tw_on_call, tw_pack(tid, seq)))
        DIE("tw_call_from_thread");
}

static void tw_producers_done(void)
{
    if (tw_call_from_thread(tr, tw_on_stop, NULL))
        DIE("tw_call_from_thread");
}

static void tw_run(void)
{
    if (tw_reactor_run(tr, TW_RUN_DEFAULT))
        DIE("tw_reactor_run");
}

static void tw_teardown(void)
{
    tw_reactor_free(tr);
    if (t_stopped_early)
        order_errors++;
}

/* ---- the queue used for libuv and libevent ----------------------------- */

typedef void (*call_fn)(uint32_t tid, uint32_t seq);
typedef struct {
    call_fn fn;
    uint32_t tid, seq;
} qcall_t;
typedef struct {
    qcall_t *v;
    size_t n, cap;
} callvec;

static CACHE_LINE struct {
    pthread_mutex_t mu;
    callvec pending;
} q = { .mu = PTHREAD_MUTEX_INITIALIZER };
static CACHE_LINE callvec local; /* the loop thread's drain buffer, swapped with q.pending */

static void q_push(qcall_t c)
{
    pthread_mutex_lock(&q.mu);
    callvec *v = &q.pending;
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 1024;
        v->v = realloc(v->v, v->cap * sizeof *v->v);
        if (!v->v)
            DIE("out of memory");
    }
    v->v[v->n++] = c;
    pthread_mutex_unlock(&q.mu);
}

/* Loop thread: take everything queued and run it outside the lock. */
static void q_drain(void)
{
    pthread_mutex_lock(&q.mu);
    callvec t = q.pending;
    q.pending = local;
    local = t;
    pthread_mutex_unlock(&q.mu);
    for (size_t i = 0; i < local.n; i++)
        local.v[i].fn(local.v[i].tid, local.v[i].seq);
    local.n = 0;
}

static void q_on_call(uint32_t tid, uint32_t seq)
{
    on_call(tid, seq);
}

static void q_free(void)
{
    free(q.pending.v);
    free(local.v);
}

static void no_producers_done(void) {}

/* ---- libuv ------------------------------------------------------------- */

static uv_loop_t uloop;
static uv_async_t uasync;

static void u_async_cb(uv_async_t *h)
{
    wakeups++;
    q_drain();
    if (done >= total)
        uv_stop(h->loop);
}

static void u_setup(void)
{
    if (uv_loop_init(&uloop) || uv_async_init(&uloop, &uasync, u_async_cb))
        DIE("uv init");
}

static void u_call(uint32_t tid, uint32_t seq, int latency)
{
    q_push((qcall_t){ latency ? on_lat_call : q_on_call, tid, seq });
    uv_async_send(&uasync);
}

static void u_run(void)
{
    uv_run(&uloop, UV_RUN_DEFAULT);
}

static void u_teardown(void)
{
    uv_close((uv_handle_t *)&uasync, NULL);
    uv_run(&uloop, UV_RUN_DEFAULT);
    if (uv_loop_close(&uloop))
        DIE("uv_loop_close");
    q_free();
}

/* ---- libevent ---------------------------------------------------------- */

static struct event_base *ebase;
static struct event *euser;

static void e_user_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    wakeups++;
    q_drain();
    if (done >= total)
        event_base_loopbreak(ebase);
}

static void e_setup(void)
{
    if (evthread_use_pthreads())
        DIE("evthread_use_pthreads");
    if (!(ebase = event_base_new()))
        DIE("event_base_new");
    if (!(euser = event_new(ebase, -1, 0, e_user_cb, NULL)))
        DIE("event_new");
}

static void e_call(uint32_t tid, uint32_t seq, int latency)
{
    q_push((qcall_t){ latency ? on_lat_call : q_on_call, tid, seq });
    event_active(euser, EV_READ, 0);
}

static void e_run(void)
{
    event_base_loop(ebase, EVLOOP_NO_EXIT_ON_EMPTY);
}

static void e_teardown(void)
{
    event_free(euser);
    event_base_free(ebase);
    q_free();
}

static const impl_t impls[] = {
    { "twine", tw_setup, tw_call, tw_producers_done, tw_run, tw_teardown },
    { "uv", u_setup, u_call, no_producers_done, u_run, u_teardown },
    { "ev", e_setup, e_call, no_producers_done, e_run, e_teardown },
};
static const impl_t *impl;

/* ---- optional pinning (diagnosis only) --------------------------------- */

static void pin_self(int is_loop)
{
    const char *p = getenv("XT_PIN");
    if (!p || !*p)
        return;
    int cpu = !strcmp(p, "same") ? 0 : !strcmp(p, "split") ? (is_loop ? 0 : 1) : -1;
    if (cpu < 0)
        DIE("XT_PIN must be same or split");
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set))
        DIE("pthread_setaffinity_np");
}

/* ---- producers --------------------------------------------------------- */

static CACHE_LINE pthread_barrier_t bar;
static uint32_t K, M, LAT_N;
static CACHE_LINE atomic_uint finished;

static void *tput_producer(void *arg)
{
    uint32_t tid = (uint32_t)(uintptr_t)arg;
    void (*call)(uint32_t, uint32_t, int) = impl->call;
    pin_self(0);
    pthread_barrier_wait(&bar);
    for (uint32_t s = 0; s < M; s++)
        call(tid, s, 0);
    /* The last producer to finish queues the stop: every call of every
     * producer was queued before it. */
    if (atomic_fetch_add(&finished, 1) + 1 == K)
        impl->producers_done();
    return NULL;
}

static void *lat_producer(void *arg)
{
    (void)arg;
    uint64_t rs = 0x9E3779B97F4A7C15ull;
    pin_self(0);
    for (uint32_t i = 0; i < LAT_N; i++) {
        while (atomic_load_explicit(&done_pub, memory_order_acquire) < i)
            sleep_ns(20000);
        sleep_ns(PAUSE_MIN_NS + rng_below(&rs, PAUSE_SPAN_NS));
        t_send[i] = now_ns();
        impl->call(0, i, 1);
    }
    impl->producers_done();
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        DIE("usage: %s twine|uv|ev tput K M | twine|uv|ev lat COUNT", argv[0]);
    for (size_t i = 0; i < sizeof impls / sizeof impls[0]; i++)
        if (!strcmp(argv[1], impls[i].name))
            impl = &impls[i];
    if (!impl)
        DIE("unknown impl %s (twine, uv, ev)", argv[1]);

    pin_self(1);
    impl->setup();

    if (!strcmp(argv[2], "tput")) {
        if (argc != 5)
            DIE("tput needs K M");
        K = (uint32_t)strtoul(argv[3], NULL, 10);
        M = (uint32_t)strtoul(argv[4], NULL, 10);
        if (K < 1 || K > MAXT || M < 1)
            DIE("bad K or M");
        total = (uint64_t)K * M;
        pthread_t th[MAXT];
        pthread_barrier_init(&bar, NULL, K + 1);
        for (uint32_t t = 0; t < K; t++)
            if (pthread_create(&th[t], NULL, tput_producer, (void *)(uintptr_t)t))
                DIE("pthread_create");
        pthread_barrier_wait(&bar);
        double c0 = cpu_s();
        uint64_t t0 = now_ns();
        impl->run();
        double c1 = cpu_s();
        uint64_t t1 = now_ns();
        for (uint32_t t = 0; t < K; t++)
            pthread_join(th[t], NULL);
        impl->teardown();
        int ok = done == total && order_errors == 0 && t_last > t0;
        for (uint32_t t = 0; t < K; t++)
            ok &= expected[t] == M;
        double el = (double)(t_last - t0) / 1e9;
        printf("RESULT bench=xtput impl=%s K=%u M=%u calls_per_s=%.0f elapsed_s=%.3f "
               "cpu_util=%.2f wakeups=%llu calls_per_wakeup=%.1f done=%llu order_errors=%llu "
               "ok=%d\n",
               impl->name, K, M, (double)total / el, el, (c1 - c0) / ((double)(t1 - t0) / 1e9),
               (unsigned long long)wakeups, wakeups ? (double)done / (double)wakeups : 0.0,
               (unsigned long long)done, (unsigned long long)order_errors, ok);
        if (!ok)
            fprintf(stderr, "bench_xthread %s tput: check failed (done=%llu/%llu order_errors=%llu)\n",
                    impl->name, (unsigned long long)done, (unsigned long long)total,
                    (unsigned long long)order_errors);
        return ok ? 0 : 1;
    }

    if (!strcmp(argv[2], "lat")) {
        uint32_t n = (uint32_t)strtoul(argv[3], NULL, 10);
        if (n < 1)
            DIE("bad COUNT");
        LAT_N = n + LAT_WARMUP;
        total = LAT_N;
        K = 1;
        t_send = calloc(LAT_N, sizeof *t_send);
        lat = calloc(LAT_N, sizeof *lat);
        if (!t_send || !lat)
            DIE("out of memory");
        pthread_t th;
        if (pthread_create(&th, NULL, lat_producer, NULL))
            DIE("pthread_create");
        impl->run();
        pthread_join(th, NULL);
        impl->teardown();
        int ok = done == total && order_errors == 0 && expected[0] == LAT_N;
        uint64_t *v = lat + LAT_WARMUP;
        qsort(v, n, sizeof *v, cmp_u64);
#define PCT(p) ((double)v[(size_t)((double)(n - 1) * (p))] / 1000.0)
        printf("RESULT bench=xlat impl=%s n=%u p50_us=%.1f p90_us=%.1f p99_us=%.1f "
               "p999_us=%.1f max_us=%.1f min_us=%.1f wakeups=%llu ok=%d\n",
               impl->name, n, PCT(0.50), PCT(0.90), PCT(0.99), PCT(0.999),
               (double)v[n - 1] / 1000.0, (double)v[0] / 1000.0, (unsigned long long)wakeups, ok);
        if (!ok)
            fprintf(stderr, "bench_xthread %s lat: check failed (done=%llu/%llu order_errors=%llu)\n",
                    impl->name, (unsigned long long)done, (unsigned long long)total,
                    (unsigned long long)order_errors);
        return ok ? 0 : 1;
    }
    DIE("unknown mode %s", argv[2]);
}
