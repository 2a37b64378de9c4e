/* test_thread_queue.c -- the bounded blocking queue (tw_thread.h): FIFO
 * order, capacity, timeouts (-EAGAIN without waiting, -ETIMEDOUT after),
 * close waking blocked getters and putters, draining after close, and many
 * producers and consumers passing every item exactly once.
 *
 * The queue needs no reactor; the program still runs once per backend, as
 * every test does.  TSan-clean: threads share only the queue and atomics. */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "tw_thread.h"

static void fifo_order_and_length(void **state)
{
    tw_thread_queue_t *q = tw_thread_queue_new(4);
    assert_non_null(q);
    assert_int_equal(tw_thread_queue_length(q), 0);
    for (uintptr_t i = 1; i <= 4; i++)
        assert_int_equal(tw_thread_queue_put(q, (void *)i, 0), 0);
    assert_int_equal(tw_thread_queue_length(q), 4);
    /* Around the ring a few times. */
    for (uintptr_t i = 1; i <= 40; i++) {
        void *item = NULL;
        assert_int_equal(tw_thread_queue_get(q, &item, 0), 0);
        assert_int_equal((uintptr_t)item, i);
        assert_int_equal(tw_thread_queue_put(q, (void *)(i + 4), 0), 0);
    }
    assert_int_equal(tw_thread_queue_length(q), 4);
    tw_thread_queue_free(q, NULL);
}

static void bad_capacity_is_refused(void **state)
{
    errno = 0;
    assert_null(tw_thread_queue_new(0));
    assert_int_equal(errno, EINVAL);
    tw_thread_queue_free(NULL, NULL);
}

static void full_and_empty_time_out(void **state)
{
    tw_thread_queue_t *q = tw_thread_queue_new(2);
    assert_non_null(q);
    void *item = NULL;
    assert_int_equal(tw_thread_queue_get(q, &item, 0), -EAGAIN);
    tw_time_t t0 = tw_time_now();
    assert_int_equal(tw_thread_queue_get(q, &item, TW_MSEC(20)), -ETIMEDOUT);
    assert_true(tw_time_now() - t0 >= TW_MSEC(20)); /* it did wait, on the monotonic clock */

    assert_int_equal(tw_thread_queue_put(q, "a", 0), 0);
    assert_int_equal(tw_thread_queue_put(q, "b", TW_MSEC(10)), 0);
    assert_int_equal(tw_thread_queue_put(q, "c", 0), -EAGAIN);
    t0 = tw_time_now();
    assert_int_equal(tw_thread_queue_put(q, "c", TW_MSEC(20)), -ETIMEDOUT);
    assert_true(tw_time_now() - t0 >= TW_MSEC(20));
    assert_int_equal(tw_thread_queue_length(q), 2);
    tw_thread_queue_free(q, NULL);
}

/* ---- blocking, and close ----------------------------------------------------- */

typedef struct waiter {
    tw_thread_queue_t *q;
    atomic_int started;
    int rc;
    void *item;
} waiter_t;

static void *getter_main(void *arg)
{
    waiter_t *w = arg;
    atomic_store(&w->started, 1);
    w->rc = tw_thread_queue_get(w->q, &w->item, TW_WAIT_FOREVER);
    return NULL;
}

static void *putter_main(void *arg)
{
    waiter_t *w = arg;
    atomic_store(&w->started, 1);
    w->rc = tw_thread_queue_put(w->q, w->item, TW_WAIT_FOREVER);
    return NULL;
}

static void wait_started(waiter_t *w)
{
    while (!atomic_load(&w->started))
        sched_yield();
}

static void a_blocked_getter_gets_the_next_put(void **state)
{
    tw_thread_queue_t *q = tw_thread_queue_new(1);
    assert_non_null(q);
    waiter_t w = { .q = q, .rc = 1 };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, getter_main, &w), 0);
    wait_started(&w); /* whether it is asleep yet or not, it gets the item */
    assert_int_equal(tw_thread_queue_put(q, "x", TW_WAIT_FOREVER), 0);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, 0);
    assert_string_equal(w.item, "x");
    tw_thread_queue_free(q, NULL);
}

static void a_blocked_putter_goes_in_when_room_is_made(void **state)
{
    tw_thread_queue_t *q = tw_thread_queue_new(1);
    assert_non_null(q);
    assert_int_equal(tw_thread_queue_put(q, "first", 0), 0);
    waiter_t w = { .q = q, .rc = 1, .item = "second" };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, putter_main, &w), 0);
    wait_started(&w);
    void *item = NULL;
    assert_int_equal(tw_thread_queue_get(q, &item, TW_WAIT_FOREVER), 0);
    assert_string_equal(item, "first");
    assert_int_equal(tw_thread_queue_get(q, &item, TW_WAIT_FOREVER), 0);
    assert_string_equal(item, "second");
    pthread_join(t, NULL);
    assert_int_equal(w.rc, 0);
    tw_thread_queue_free(q, NULL);
}

static void close_wakes_blocked_getters_and_putters(void **state)
{
    enum { N = 3 };
    tw_thread_queue_t *empty = tw_thread_queue_new(1), *full = tw_thread_queue_new(1);
    assert_non_null(empty);
    assert_non_null(full);
    assert_int_equal(tw_thread_queue_put(full, "resident", 0), 0);
    waiter_t g[N], p[N];
    pthread_t tg[N], tp[N];
    for (int i = 0; i < N; i++) {
        g[i] = (waiter_t){ .q = empty, .rc = 1 };
        p[i] = (waiter_t){ .q = full, .rc = 1, .item = "blocked" };
        assert_int_equal(pthread_create(&tg[i], NULL, getter_main, &g[i]), 0);
        assert_int_equal(pthread_create(&tp[i], NULL, putter_main, &p[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        wait_started(&g[i]);
        wait_started(&p[i]);
    }
    /* Asleep or about to be: close must reach them either way. */
    tw_thread_queue_close(empty);
    tw_thread_queue_close(full);
    for (int i = 0; i < N; i++) {
        pthread_join(tg[i], NULL);
        pthread_join(tp[i], NULL);
        assert_int_equal(g[i].rc, -EPIPE);
        assert_int_equal(p[i].rc, -EPIPE);
    }
    /* What was put before close is still handed out, then -EPIPE. */
    void *item = NULL;
    assert_int_equal(tw_thread_queue_put(full, "late", 0), -EPIPE);
    assert_int_equal(tw_thread_queue_get(full, &item, 0), 0);
    assert_string_equal(item, "resident");
    assert_int_equal(tw_thread_queue_get(full, &item, 0), -EPIPE);
    assert_int_equal(tw_thread_queue_get(full, &item, TW_WAIT_FOREVER), -EPIPE);
    tw_thread_queue_free(empty, NULL);
    tw_thread_queue_free(full, NULL);
}

static int leftovers;

static void count_leftover(void *item)
{
    leftovers++;
    free(item);
}

static void free_hands_leftovers_to_the_callback(void **state)
{
    tw_thread_queue_t *q = tw_thread_queue_new(8);
    assert_non_null(q);
    for (int i = 0; i < 5; i++) {
        void *item = malloc(16);
        assert_non_null(item);
        assert_int_equal(tw_thread_queue_put(q, item, 0), 0);
    }
    void *item = NULL;
    assert_int_equal(tw_thread_queue_get(q, &item, 0), 0);
    free(item);
    leftovers = 0;
    tw_thread_queue_free(q, count_leftover);
    assert_int_equal(leftovers, 4);
}

/* ---- many producers and consumers ---------------------------------------------- */

enum { PRODUCERS = 4, CONSUMERS = 4, PER_PRODUCER = 20000 };

typedef struct mpmc {
    tw_thread_queue_t *q;
    _Atomic uint8_t seen[PRODUCERS * PER_PRODUCER];
    atomic_int bad, got, next_producer;
} mpmc_t;

static void *mpmc_producer(void *arg)
{
    mpmc_t *m = arg;
    int id = atomic_fetch_add(&m->next_producer, 1);
    for (int i = 0; i < PER_PRODUCER; i++) {
        uintptr_t v = (uintptr_t)(id * PER_PRODUCER + i) + 1; /* never NULL */
        if (tw_thread_queue_put(m->q, (void *)v, TW_WAIT_FOREVER) != 0)
            atomic_fetch_add(&m->bad, 1);
    }
    return NULL;
}

static void *mpmc_consumer(void *arg)
{
    mpmc_t *m = arg;
    int last[PRODUCERS]; /* per producer, items come out in the order put */
    for (int i = 0; i < PRODUCERS; i++)
        last[i] = -1;
    for (;;) {
        void *item = NULL;
        int rc = tw_thread_queue_get(m->q, &item, TW_WAIT_FOREVER);
        if (rc == -EPIPE)
            return NULL;
        if (rc != 0) {
            atomic_fetch_add(&m->bad, 1);
            return NULL;
        }
        uintptr_t v = (uintptr_t)item - 1;
        int id = (int)(v / PER_PRODUCER), seq = (int)(v % PER_PRODUCER);
        if (v >= (uintptr_t)PRODUCERS * PER_PRODUCER || seq <= last[id])
            atomic_fetch_add(&m->bad, 1);
        else
            last[id] = seq;
        atomic_fetch_add(&m->seen[v], 1);
        atomic_fetch_add(&m->got, 1);
    }
}

static void many_producers_and_consumers_pass_each_item_once(void **state)
{
    mpmc_t *m = calloc(1, sizeof *m);
    assert_non_null(m);
    m->q = tw_thread_queue_new(64); /* small: putters block often */
    assert_non_null(m->q);
    pthread_t prod[PRODUCERS], cons[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++)
        assert_int_equal(pthread_create(&cons[i], NULL, mpmc_consumer, m), 0);
    for (int i = 0; i < PRODUCERS; i++)
        assert_int_equal(pthread_create(&prod[i], NULL, mpmc_producer, m), 0);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(prod[i], NULL);
    tw_thread_queue_close(m->q); /* consumers drain what is left, then see -EPIPE */
    for (int i = 0; i < CONSUMERS; i++)
        pthread_join(cons[i], NULL);
    assert_int_equal(atomic_load(&m->bad), 0);
    assert_int_equal(atomic_load(&m->got), PRODUCERS * PER_PRODUCER);
    for (int i = 0; i < PRODUCERS * PER_PRODUCER; i++)
        assert_int_equal(atomic_load(&m->seen[i]), 1);
    assert_int_equal(tw_thread_queue_length(m->q), 0);
    tw_thread_queue_free(m->q, NULL);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fifo_order_and_length),
        cmocka_unit_test(bad_capacity_is_refused),
        cmocka_unit_test(full_and_empty_time_out),
        cmocka_unit_test(a_blocked_getter_gets_the_next_put),
        cmocka_unit_test(a_blocked_putter_goes_in_when_room_is_made),
        cmocka_unit_test(close_wakes_blocked_getters_and_putters),
        cmocka_unit_test(free_hands_leftovers_to_the_callback),
        cmocka_unit_test(many_producers_and_consumers_pass_each_item_once),
    };
    TW_TEST_MAIN(tests);
}
