/* test_calls.c -- tw_call_from_thread: many producers, exactly-once and
 * per-thread order, calls from the reactor thread, no starvation of I/O by a
 * flood, and calls dropped by tw_reactor_free.  Must be TSan-clean: data
 * shared across threads is atomic or handed over by the reactor's queue. */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- many producers ----------------------------------------------------- */

enum { NTHREADS = 8, PER_THREAD = 100000 };

typedef struct storm {
    tw_reactor_t *r;
    pthread_t reactor_thread;
    atomic_int started;          /* producers that are running */
    atomic_int push_errors;
    /* Touched only in the reactor thread: */
    uint32_t next[NTHREADS];     /* next sequence number expected per thread */
    long received;
    long out_of_order, wrong_thread, bad_thread_id;
    int timed_out;
} storm_t;

typedef struct producer {
    storm_t *s;
    uint32_t id;
} producer_t;

static storm_t *storm_g; /* the callbacks' argument carries only id and sequence */

static void storm_cb(tw_reactor_t *r, void *arg)
{
    storm_t *s = storm_g;
    uintptr_t v = (uintptr_t)arg;
    uint32_t id = (uint32_t)(v >> 32), seq = (uint32_t)v;
    if (!pthread_equal(pthread_self(), s->reactor_thread))
        s->wrong_thread++;
    if (id >= NTHREADS) {
        s->bad_thread_id++;
    } else {
        if (seq != s->next[id])
            s->out_of_order++;
        s->next[id] = seq + 1;
    }
    if (++s->received == (long)NTHREADS * PER_THREAD)
        tw_reactor_stop(r);
}

static void *producer_main(void *arg)
{
    producer_t *p = arg;
    atomic_fetch_add(&p->s->started, 1);
    for (uint32_t seq = 0; seq < PER_THREAD; seq++) {
        uintptr_t v = ((uintptr_t)p->id << 32) | seq;
        if (tw_call_from_thread(p->s->r, storm_cb, (void *)v) != 0)
            atomic_fetch_add(&p->s->push_errors, 1);
    }
    return NULL;
}

static void storm_guard_cb(tw_timer_t *t, void *arg)
{
    storm_t *s = arg;
    (void)t;
    s->timed_out = 1;
    tw_reactor_stop(s->r);
}

static void eight_threads_calls_run_once_in_reactor_thread_in_order(void **state)
{
    (void)state;
    _Static_assert(sizeof(uintptr_t) >= 8, "id and sequence are packed in a pointer");
    storm_t *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->r = tw_test_reactor_new();
    s->reactor_thread = pthread_self();
    storm_g = s;
    tw_timer_t guard;
    tw_timer_init(&guard, s->r, storm_guard_cb, s);
    assert_int_equal(tw_timer_start(&guard, TW_SEC(60)), 0);

    producer_t p[NTHREADS];
    pthread_t tid[NTHREADS];
    for (uint32_t i = 0; i < NTHREADS; i++) {
        p[i] = (producer_t){ s, i };
        assert_int_equal(pthread_create(&tid[i], NULL, producer_main, &p[i]), 0);
    }
    assert_int_equal(tw_reactor_run(s->r, TW_RUN_DEFAULT), 0);
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_join(tid[i], NULL), 0);
    tw_timer_cancel(&guard);

    assert_int_equal(s->timed_out, 0);
    assert_int_equal(atomic_load(&s->push_errors), 0);
    assert_int_equal(s->received, (long)NTHREADS * PER_THREAD);
    assert_int_equal(s->wrong_thread, 0);
    assert_int_equal(s->bad_thread_id, 0);
    assert_int_equal(s->out_of_order, 0);
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(s->next[i], PER_THREAD);
    /* Nothing runs twice afterwards. */
    for (int i = 0; i < 3; i++)
        assert_true(tw_reactor_iterate(s->r, 0) >= 0);
    assert_int_equal(s->received, (long)NTHREADS * PER_THREAD);
    tw_reactor_free(s->r);
    storm_g = NULL;
    free(s);
}

/* ---- calls from the reactor thread itself ------------------------------- */

typedef struct self_call {
    tw_reactor_t *r;
    int order[16];
    int n;
    int in_call;       /* inside tw_call_from_thread: must not run inline */
    int ran_inline;
    int chain;         /* how many more to queue from inside a call */
} self_call_t;

typedef struct self_item {
    self_call_t *c;
    int tag;
} self_item_t;

/* ---- order across threads ------------------------------------------------ */

/* Two threads take turns: A calls, then lets B call, then waits for its turn
 * again.  Each call happens after the previous one, so the reactor must run
 * them in exactly the order made, although they come from two threads (and
 * so from two of the reactor's queue shards). */
enum { TURNS = 20000 };

typedef struct relay {
    tw_reactor_t *r;
    atomic_int turn;   /* the number of the next call to make */
    atomic_int errors;
    int next;          /* reactor thread only: the number expected next */
    int ran, out_of_order;
} relay_t;

static relay_t *relay_g;

static void relay_cb(tw_reactor_t *r, void *arg)
{
    (void)r;
    if ((int)(intptr_t)arg != relay_g->next)
        relay_g->out_of_order++;
    relay_g->next = (int)(intptr_t)arg + 1;
    relay_g->ran++;
}

static void *relay_main(void *arg)
{
    relay_t *rl = relay_g;
    int parity = (int)(intptr_t)arg;
    for (int n = parity; n < 2 * TURNS; n += 2) {
        while (atomic_load(&rl->turn) != n)
            sched_yield();
        if (tw_call_from_thread(rl->r, relay_cb, (void *)(intptr_t)n) != 0)
            atomic_fetch_add(&rl->errors, 1);
        atomic_store(&rl->turn, n + 1);
    }
    return NULL;
}

static void calls_from_two_threads_run_in_the_order_made(void **state)
{
    (void)state;
    relay_t rl = { .r = tw_test_reactor_new() };
    relay_g = &rl;
    pthread_t a, b;
    assert_int_equal(pthread_create(&a, NULL, relay_main, (void *)(intptr_t)0), 0);
    assert_int_equal(pthread_create(&b, NULL, relay_main, (void *)(intptr_t)1), 0);
    assert_true(tw_test_iterate_until(rl.r, &rl.ran, 2 * TURNS, 100000000));
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    assert_int_equal(atomic_load(&rl.errors), 0);
    assert_int_equal(rl.ran, 2 * TURNS);
    assert_int_equal(rl.out_of_order, 0);
    tw_reactor_free(rl.r);
}

static void self_cb(tw_reactor_t *r, void *arg)
{
    self_item_t *it = arg;
    self_call_t *c = it->c;
    if (c->in_call)
        c->ran_inline++;
    c->order[c->n++] = it->tag;
    if (c->chain > 0) {
        c->chain--;
        c->in_call = 1;
        assert_int_equal(tw_call_from_thread(r, self_cb, it), 0);
        c->in_call = 0;
    }
}

static void calls_from_reactor_thread_run_on_a_later_iteration(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    self_call_t c = { .r = r, .chain = 2 };
    self_item_t a = { &c, 1 }, b = { &c, 2 };
    c.in_call = 1;
    assert_int_equal(tw_call_from_thread(r, self_cb, &a), 0);
    assert_int_equal(tw_call_from_thread(r, self_cb, &b), 0);
    c.in_call = 0;
    assert_int_equal(c.n, 0);
    assert_true(tw_test_iterate_until(r, &c.n, 2, 100));
    assert_int_equal(c.n, 2); /* the calls they made wait for the next pass */
    assert_true(tw_test_iterate_until(r, &c.n, 4, 100));
    for (int i = 0; i < 3; i++)
        assert_true(tw_reactor_iterate(r, 0) >= 0);
    assert_int_equal(c.n, 4);
    assert_int_equal(c.ran_inline, 0);
    static const int want[] = { 1, 2, 1, 2 };
    for (int i = 0; i < 4; i++)
        assert_int_equal(c.order[i], want[i]);
    assert_int_equal(tw_call_from_thread(r, NULL, NULL), -EINVAL);
    tw_reactor_free(r);
}

/* ---- a flood does not starve I/O ---------------------------------------- */

typedef struct flood {
    tw_reactor_t *r;
    atomic_int stop;
    atomic_long pushed;
    atomic_long ran;   /* written by the reactor thread only */
    long errors;       /* producer thread only, read after join */
} flood_t;

static void flood_cb(tw_reactor_t *r, void *arg)
{
    flood_t *f = arg;
    (void)r;
    atomic_store_explicit(&f->ran, atomic_load_explicit(&f->ran, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static void *flooder_main(void *arg)
{
    flood_t *f = arg;
    long pushed = 0;
    while (!atomic_load(&f->stop)) {
        /* Keep at most a million calls in flight, so that a reactor that
         * falls behind (or never drains) cannot eat all memory. */
        if (pushed - atomic_load_explicit(&f->ran, memory_order_relaxed) > 1000000) {
            sched_yield();
            continue;
        }
        if (tw_call_from_thread(f->r, flood_cb, f) != 0)
            f->errors++;
        atomic_store(&f->pushed, ++pushed);
    }
    return NULL;
}

static void read_cb(tw_reactor_t *r, int fd, void *arg)
{
    char buf[16];
    (void)r;
    (*(int *)arg)++;
    assert_true(read(fd, buf, sizeof buf) > 0);
}

static void flood_of_thread_calls_does_not_starve_io(void **state)
{
    (void)state;
    tw_reactor_t *r = tw_test_reactor_new();
    flood_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->r = r;
    int p[2], reads = 0;
    tw_test_pipe(p);
    assert_int_equal(tw_reactor_add_reader(r, p[0], read_cb, &reads), 0);
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, flooder_main, f), 0);

    /* Ten times: wait until the flood has moved on through the loop, then
     * make the pipe readable; its reader must run within 5 passes. */
    tw_time_t give_up = tw_time_now() + TW_SEC(30);
    bool flowing = true;
    int reads_seen = 0;
    long ran_before = 0;
    for (int round = 0; round < 10 && flowing; round++) {
        while (atomic_load(&f->ran) < ran_before + 1000 && tw_time_now() < give_up)
            assert_true(tw_reactor_iterate(r, TW_MSEC(50)) >= 0);
        flowing = atomic_load(&f->ran) >= ran_before + 1000;
        ran_before = atomic_load(&f->ran);
        tw_test_poke(p[1]);
        for (int passes = 0; reads == reads_seen && passes < 5; passes++)
            assert_true(tw_reactor_iterate(r, TW_SEC(10)) >= 0);
        if (reads == reads_seen)
            break;
        reads_seen = reads;
    }
    atomic_store(&f->stop, 1);
    assert_int_equal(pthread_join(tid, NULL), 0);
    assert_true(flowing);
    assert_int_equal(reads, 10); /* each within 5 passes of its write */
    assert_int_equal(f->errors, 0);
    /* Everything pushed runs, once. */
    long pushed = atomic_load(&f->pushed);
    give_up = tw_time_now() + TW_SEC(30);
    while (atomic_load(&f->ran) < pushed && tw_time_now() < give_up)
        assert_true(tw_reactor_iterate(r, TW_MSEC(50)) >= 0);
    assert_int_equal(atomic_load(&f->ran), pushed);
    tw_reactor_remove_reader(r, p[0]);
    close(p[0]);
    close(p[1]);
    tw_reactor_free(r);
    free(f);
}

/* ---- calls still queued when the reactor is freed ----------------------- */

typedef struct dropped {
    tw_reactor_t *r;
    atomic_int calls;
    atomic_int push_errors;
} dropped_t;

static void dropped_cb(tw_reactor_t *r, void *arg)
{
    (void)r;
    atomic_fetch_add(&((dropped_t *)arg)->calls, 1);
}

static void *queue_then_exit(void *arg)
{
    dropped_t *d = arg;
    for (int i = 0; i < 10000; i++)
        if (tw_call_from_thread(d->r, dropped_cb, d) != 0)
            atomic_fetch_add(&d->push_errors, 1);
    return NULL;
}

static void calls_queued_before_free_are_dropped(void **state)
{
    (void)state;
    dropped_t d = { .r = tw_test_reactor_new() };
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, queue_then_exit, &d), 0);
    assert_int_equal(pthread_join(tid, NULL), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(tw_call_from_thread(d.r, dropped_cb, &d), 0);
    tw_reactor_free(d.r); /* ASan: the queues go with it */
    assert_int_equal(atomic_load(&d.calls), 0);

    /* And after a pass has swapped the queue once. */
    d.r = tw_test_reactor_new();
    assert_int_equal(tw_call_from_thread(d.r, dropped_cb, &d), 0);
    int n = 0;
    for (int i = 0; i < 100 && atomic_load(&d.calls) == 0; i++)
        n += tw_reactor_iterate(d.r, TW_MSEC(50)) > 0;
    assert_int_equal(atomic_load(&d.calls), 1);
    assert_int_equal(pthread_create(&tid, NULL, queue_then_exit, &d), 0);
    assert_int_equal(pthread_join(tid, NULL), 0);
    tw_reactor_free(d.r);
    assert_int_equal(atomic_load(&d.calls), 1);
    assert_int_equal(atomic_load(&d.push_errors), 0);
    assert_true(n >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(eight_threads_calls_run_once_in_reactor_thread_in_order),
        cmocka_unit_test(calls_from_two_threads_run_in_the_order_made),
        cmocka_unit_test(calls_from_reactor_thread_run_on_a_later_iteration),
        cmocka_unit_test(flood_of_thread_calls_does_not_starve_io),
        cmocka_unit_test(calls_queued_before_free_are_dropped),
    };
    TW_TEST_MAIN(tests);
}
