/* timer.c -- delayed calls: a 4-ary min-heap of {deadline, timer}.
 *
 * The deadline is stored in the heap array itself, so sifting compares
 * entries that sit next to each other in memory and only writes the timer to
 * update its slot.  Each timer carries a sequence number, taken when it is
 * scheduled, that breaks ties: calls due at the same instant run in the order
 * they were scheduled.  Insert, cancel and move are
 * O(log n); finding the next deadline is O(1). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

#define SLOT_IDLE   UINT32_MAX
#define TF_OWNED    1u /* allocated by tw_reactor_call_later: the reactor frees it */
#define TF_RUNNING  2u /* an owned timer whose callback is on the stack */
#define FREE_CACHE  1024

tw_time_t tw_time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (tw_time_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

tw_time_t tw_seconds(double s)
{
    if (!(s > 0)) /* also NaN */
        return 0;
    if (s >= 9.2e9) /* INT64_MAX ns is about 9.22e9 s */
        return TW_TIME_MAX;
    return (tw_time_t)(s * 1e9 + 0.5);
}

void tw__update_time(tw_reactor_t *r)
{
    r->now = r->clock ? r->clock(r->clock_arg) : tw_time_now();
}

void tw_reactor_set_clock(tw_reactor_t *r, tw_time_t (*clock)(void *arg), void *arg)
{
    TW__ASSERT_OWNER(r);
    r->clock = clock;
    r->clock_arg = clock ? arg : NULL;
    tw__update_time(r);
}

tw_time_t tw_reactor_next_timer(const tw_reactor_t *r)
{
    return tw__timers_next(r);
}

static inline tw_time_t timer_now(tw_reactor_t *r)
{
    if (!r->in_loop)
        tw__update_time(r);
    return r->now;
}

static inline tw_time_t timer_add(tw_time_t now, tw_time_t delay)
{
    if (delay <= 0)
        return now;
    /* now may be negative (a deadline set long in the past by start_at) */
    return now >= 0 && delay > TW_TIME_MAX - now ? TW_TIME_MAX : now + delay;
}

/* ---- the heap --------------------------------------------------------- */

static inline int heap_less(const tw__hent_t *a, const tw__hent_t *b)
{
    return a->due < b->due || (a->due == b->due && a->t->seq < b->t->seq);
}

/* A 4-ary heap: half the levels of a binary heap, so half the cache misses
 * and slot writes per sift on a large heap, and the four children of a node
 * share one or two cache lines. */
#define HEAP_D 4

static void heap_up(tw__hent_t *h, uint32_t i, tw__hent_t e)
{
    while (i > 0) {
        uint32_t p = (i - 1) / HEAP_D;
        if (!heap_less(&e, &h[p]))
            break;
        h[i] = h[p];
        h[i].t->slot = i;
        i = p;
    }
    h[i] = e;
    e.t->slot = i;
}

static void heap_down(tw__hent_t *h, uint32_t n, uint32_t i, tw__hent_t e)
{
    for (;;) {
        uint32_t c = HEAP_D * i + 1;
        if (c >= n)
            break;
        uint32_t end = n - c > HEAP_D ? c + HEAP_D : n, m = c;
        for (uint32_t k = c + 1; k < end; k++)
            if (heap_less(&h[k], &h[m]))
                m = k;
        if (!heap_less(&h[m], &e))
            break;
        h[i] = h[m];
        h[i].t->slot = i;
        i = m;
    }
    h[i] = e;
    e.t->slot = i;
}

/* Put entry e at slot i (a hole) and restore the heap around it. */
static void heap_place(tw_reactor_t *r, uint32_t i, tw__hent_t e)
{
    if (i > 0 && heap_less(&e, &r->heap[(i - 1) / HEAP_D]))
        heap_up(r->heap, i, e);
    else
        heap_down(r->heap, r->heap_n, i, e);
}

static void heap_remove(tw_reactor_t *r, tw_timer_t *t)
{
    uint32_t i = t->slot;
    tw__hent_t last = r->heap[--r->heap_n];
    t->slot = SLOT_IDLE;
    if (i != r->heap_n)
        heap_place(r, i, last);
}

static int heap_grow(tw_reactor_t *r)
{
    uint32_t cap = r->heap_cap ? r->heap_cap * 2 : 64;
    if (cap <= r->heap_cap) /* 2^32 timers */
        return -ENOMEM;
    tw__hent_t *h = realloc(r->heap, (size_t)cap * sizeof *h);
    if (!h)
        return -ENOMEM;
    r->heap = h;
    r->heap_cap = cap;
    return 0;
}

static int timer_schedule(tw_timer_t *t, tw_time_t due)
{
    tw_reactor_t *r = t->r;
    t->seq = r->timer_seq++;
    tw__hent_t e = { due, t };
    if (t->slot != SLOT_IDLE) { /* move in place */
        heap_place(r, t->slot, e);
        return 0;
    }
    if (r->heap_n == r->heap_cap && heap_grow(r))
        return -ENOMEM;
    heap_up(r->heap, r->heap_n++, e);
    return 0;
}

/* ---- public timer calls ----------------------------------------------- */

void tw_timer_init(tw_timer_t *t, tw_reactor_t *r, tw_timer_cb cb, void *arg)
{
    *t = (tw_timer_t){ .slot = SLOT_IDLE, .r = r, .cb = cb, .arg = arg };
}

int tw_timer_start(tw_timer_t *t, tw_time_t delay)
{
    TW__ASSERT_OWNER(t->r);
    return timer_schedule(t, timer_add(timer_now(t->r), delay));
}

int tw_timer_start_at(tw_timer_t *t, tw_time_t when)
{
    TW__ASSERT_OWNER(t->r);
    return timer_schedule(t, when);
}

static void timer_release(tw_reactor_t *r, tw_timer_t *t)
{
    if (r->timer_free_n >= FREE_CACHE) {
        free(t);
        return;
    }
    t->arg = r->timer_free; /* the free list threads through arg */
    r->timer_free = t;
    r->timer_free_n++;
}

void tw_timer_cancel(tw_timer_t *t)
{
    if (t->slot == SLOT_IDLE)
        return;
    TW__ASSERT_OWNER(t->r);
    heap_remove(t->r, t);
    if ((t->flags & (TF_OWNED | TF_RUNNING)) == TF_OWNED)
        timer_release(t->r, t);
}

int tw_timer_reset(tw_timer_t *t, tw_time_t delay)
{
    if (t->slot == SLOT_IDLE)
        return TW_ENOTACTIVE;
    return tw_timer_start(t, delay);
}

int tw_timer_delay(tw_timer_t *t, tw_time_t delta)
{
    if (t->slot == SLOT_IDLE)
        return TW_ENOTACTIVE;
    TW__ASSERT_OWNER(t->r);
    return timer_schedule(t, timer_add(t->r->heap[t->slot].due, delta));
}

bool tw_timer_active(const tw_timer_t *t)
{
    return t->slot != SLOT_IDLE;
}

tw_time_t tw_timer_deadline(const tw_timer_t *t)
{
    return t->slot == SLOT_IDLE ? TW_TIME_MAX : t->r->heap[t->slot].due;
}

static tw_timer_t *timer_owned(tw_reactor_t *r, tw_timer_cb cb, void *arg)
{
    tw_timer_t *t = r->timer_free;
    if (t) {
        r->timer_free = t->arg;
        r->timer_free_n--;
    } else if (!(t = malloc(sizeof *t))) {
        return NULL;
    }
    tw_timer_init(t, r, cb, arg);
    t->flags = TF_OWNED;
    return t;
}

tw_timer_t *tw_reactor_call_at(tw_reactor_t *r, tw_time_t when, tw_timer_cb cb, void *arg)
{
    TW__ASSERT_OWNER(r);
    tw_timer_t *t = timer_owned(r, cb, arg);
    if (t && timer_schedule(t, when)) {
        timer_release(r, t);
        t = NULL;
    }
    return t;
}

tw_timer_t *tw_reactor_call_later(tw_reactor_t *r, tw_time_t delay, tw_timer_cb cb, void *arg)
{
    return tw_reactor_call_at(r, timer_add(timer_now(r), delay), cb, arg);
}

int tw_reactor_timer_count(const tw_reactor_t *r)
{
    return (int)r->heap_n;
}

/* ---- the loop's side -------------------------------------------------- */

void tw__timers_init(tw_reactor_t *r)
{
    tw__update_time(r);
}

void tw__timers_fini(tw_reactor_t *r)
{
    for (uint32_t i = 0; i < r->heap_n; i++) {
        tw_timer_t *t = r->heap[i].t;
        t->slot = SLOT_IDLE;
        if (t->flags & TF_OWNED)
            free(t);
    }
    while (r->timer_free) {
        tw_timer_t *t = r->timer_free;
        r->timer_free = t->arg;
        free(t);
    }
    free(r->heap);
    r->heap = NULL;
    r->heap_n = r->heap_cap = 0;
}

tw_time_t tw__timers_next(const tw_reactor_t *r)
{
    return r->heap_n ? r->heap[0].due : TW_TIME_MAX;
}

/* Run the timers due at the cached time, in deadline order.  Timers scheduled
 * by these callbacks wait for the next iteration even when already due, so a
 * callback that reschedules itself with no delay cannot starve I/O. */
int tw__timers_run(tw_reactor_t *r)
{
    uint64_t limit = r->timer_seq;
    tw_time_t now = r->now;
    int ran = 0;
    while (r->heap_n) {
        tw__hent_t e = r->heap[0];
        tw_timer_t *t = e.t;
        if (e.due > now || t->seq >= limit)
            break;
        heap_remove(r, t);
        ran++;
        if (!(t->flags & TF_OWNED)) {
            t->cb(t, t->arg); /* t may be freed by its owner from here on */
            continue;
        }
        t->flags |= TF_RUNNING;
        t->cb(t, t->arg);
        t->flags &= ~TF_RUNNING;
        if (t->slot == SLOT_IDLE)
            timer_release(r, t);
    }
    return ran;
}
