/* defer_sync.c -- Twisted's DeferredLock, DeferredSemaphore and DeferredQueue,
 * built on the public Deferred API only.  A lock is a semaphore of one token
 * (Twisted's DeferredLock is exactly that, with another name for "no token
 * left": locked). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tw_deferred.h"
#include "tw_log.h"

/* A FIFO of (ptr, free) pairs: queued values, or waiting Deferreds (ptr is a
 * reference, free unused). */
typedef struct sync_item {
    void *ptr;
    tw_free_cb free;
} sync_item_t;

typedef struct sync_fifo {
    sync_item_t *v;
    size_t head, n, cap;
} sync_fifo_t;

static size_t sync_len(const sync_fifo_t *q)
{
    return q->n - q->head;
}

static int sync_push(sync_fifo_t *q, void *ptr, tw_free_cb f)
{
    if (q->head == q->n) {
        q->head = q->n = 0;
    } else if (q->n == q->cap && q->head > 0) {
        memmove(q->v, q->v + q->head, sync_len(q) * sizeof *q->v);
        q->n -= q->head;
        q->head = 0;
    }
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 4;
        sync_item_t *v = realloc(q->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        q->v = v;
        q->cap = cap;
    }
    q->v[q->n++] = (sync_item_t){ ptr, f };
    return 0;
}

static sync_item_t sync_pop(sync_fifo_t *q)
{
    return q->v[q->head++];
}

/* Remove the waiting Deferred d (a cancelled waiter). */
static bool sync_remove(sync_fifo_t *q, const void *d)
{
    for (size_t i = q->head; i < q->n; i++) {
        if (q->v[i].ptr == d) {
            memmove(q->v + i, q->v + i + 1, (q->n - i - 1) * sizeof *q->v);
            q->n--;
            return true;
        }
    }
    return false;
}

/* Free the FIFO; each waiting Deferred is errbacked (as cancelled: what it
 * waited for is gone) and its reference dropped.  The FIFO is taken first,
 * so that the errbacks see an object that no longer exists, not a half-freed
 * one: they must not use it. */
static void sync_fail_waiters(sync_fifo_t q, const char *what)
{
    while (sync_len(&q) > 0) {
        tw_deferred_t *d = sync_pop(&q).ptr;
        tw_deferred_errback(d, tw_failure_new("deferred", -ECANCELED, "the %s was freed", what));
        tw_deferred_unref(d);
    }
    free(q.v);
}

static void sync_misuse(const char *msg)
{
    tw_log(TW_LOG_ERROR, "deferred", "%s", msg);
#ifndef NDEBUG
    abort();
#endif
}

/* ---- semaphore and lock ------------------------------------------------------ */

struct tw_deferred_semaphore {
    int tokens, limit;
    sync_fifo_t waiting;
};

tw_deferred_semaphore_t *tw_deferred_semaphore_new(int tokens)
{
    if (tokens < 1)
        return NULL;
    tw_deferred_semaphore_t *s = calloc(1, sizeof *s);
    if (s)
        s->tokens = s->limit = tokens;
    return s;
}

void tw_deferred_semaphore_free(tw_deferred_semaphore_t *s)
{
    if (!s)
        return;
    sync_fifo_t waiting = s->waiting;
    free(s);
    sync_fail_waiters(waiting, "semaphore");
}

static void sync_cancel_acquire(tw_deferred_t *d, void *arg)
{
    tw_deferred_semaphore_t *s = arg;
    if (sync_remove(&s->waiting, d))
        tw_deferred_unref(d);
}

/* Fire d now if a token is free, else queue it.  0 or -ENOMEM. */
static int sync_acquire(tw_deferred_semaphore_t *s, tw_deferred_t *d)
{
    if (s->tokens > 0) {
        s->tokens--;
        tw_deferred_callback(d, s, NULL);
        return 0;
    }
    if (sync_push(&s->waiting, d, NULL) < 0)
        return -ENOMEM;
    tw_deferred_ref(d);
    return 0;
}

tw_deferred_t *tw_deferred_semaphore_acquire(tw_deferred_semaphore_t *s)
{
    tw_deferred_t *d = tw_deferred_new(sync_cancel_acquire, s);
    if (d && sync_acquire(s, d) < 0) {
        tw_deferred_unref(d);
        return NULL;
    }
    return d;
}

void tw_deferred_semaphore_release(tw_deferred_semaphore_t *s)
{
    if (s->tokens >= s->limit) {
        sync_misuse("a DeferredSemaphore or DeferredLock was released more than acquired");
        return;
    }
    if (sync_len(&s->waiting) == 0) {
        s->tokens++;
        return;
    }
    tw_deferred_t *d = sync_pop(&s->waiting).ptr; /* the token passes to it */
    tw_deferred_callback(d, s, NULL);
    tw_deferred_unref(d);
}

int tw_deferred_semaphore_tokens(const tw_deferred_semaphore_t *s)
{
    return s->tokens;
}

size_t tw_deferred_semaphore_waiting(const tw_deferred_semaphore_t *s)
{
    return sync_len(&s->waiting);
}

/* run(): what the acquire step needs, more than two arguments. */
typedef struct sync_run {
    tw_deferred_semaphore_t *s;
    tw_deferred_cb fn;
    void *a1, *a2;
} sync_run_t;

static tw_outcome_t sync_release_step(tw_outcome_t in, void *s, void *unused)
{
    tw_deferred_semaphore_release(s);
    return in;
}

/* fn's Deferred was freed unfired: give the token back all the same. */
static void sync_release_drop(void *s, void *unused)
{
    tw_deferred_semaphore_release(s);
}

/* Twisted's execute(): maybeDeferred(f).addBoth(release). */
static tw_outcome_t sync_run_step(tw_outcome_t in, void *arg, void *unused)
{
    sync_run_t run = *(sync_run_t *)arg;
    free(arg);
    tw_outcome_t out = run.fn(in, run.a1, run.a2);
    if (out.kind == TW_OUTCOME_CHAIN && out.chain) {
        if (tw_deferred_add_callbacks(out.chain, sync_release_step, sync_release_step, run.s,
                                      NULL, sync_release_drop) == 0)
            return out;
        tw_outcome_discard(out);
        out = TW_FAIL(tw_failure_new("deferred", -ENOMEM, NULL));
    }
    tw_deferred_semaphore_release(run.s);
    return out;
}

static void sync_run_drop(void *arg, void *unused)
{
    free(arg); /* the acquire failed (was cancelled): fn never runs */
}

tw_deferred_t *tw_deferred_semaphore_run(tw_deferred_semaphore_t *s, tw_deferred_cb fn,
                                         void *a1, void *a2)
{
    sync_run_t *run = malloc(sizeof *run);
    tw_deferred_t *d = run ? tw_deferred_new(sync_cancel_acquire, s) : NULL;
    if (!d) {
        free(run);
        return NULL;
    }
    *run = (sync_run_t){ s, fn, a1, a2 };
    if (tw_deferred_add_callbacks(d, sync_run_step, NULL, run, NULL, sync_run_drop) < 0) {
        free(run);
        tw_deferred_unref(d);
        return NULL;
    }
    if (sync_acquire(s, d) < 0) {
        tw_deferred_unref(d); /* frees run through sync_run_drop */
        return NULL;
    }
    return d;
}

tw_deferred_lock_t *tw_deferred_lock_new(void)
{
    return tw_deferred_semaphore_new(1);
}

void tw_deferred_lock_free(tw_deferred_lock_t *l)
{
    tw_deferred_semaphore_free(l);
}

tw_deferred_t *tw_deferred_lock_acquire(tw_deferred_lock_t *l)
{
    return tw_deferred_semaphore_acquire(l);
}

void tw_deferred_lock_release(tw_deferred_lock_t *l)
{
    tw_deferred_semaphore_release(l);
}

tw_deferred_t *tw_deferred_lock_run(tw_deferred_lock_t *l, tw_deferred_cb fn, void *a1,
                                    void *a2)
{
    return tw_deferred_semaphore_run(l, fn, a1, a2);
}

bool tw_deferred_lock_locked(const tw_deferred_lock_t *l)
{
    return l->tokens == 0;
}

/* ---- queue -------------------------------------------------------------------- */

struct tw_deferred_queue {
    size_t size, backlog;
    sync_fifo_t pending; /* values */
    sync_fifo_t waiting; /* gets */
};

tw_deferred_queue_t *tw_deferred_queue_new(size_t size, size_t backlog)
{
    tw_deferred_queue_t *q = calloc(1, sizeof *q);
    if (q) {
        q->size = size;
        q->backlog = backlog;
    }
    return q;
}

void tw_deferred_queue_free(tw_deferred_queue_t *q)
{
    if (!q)
        return;
    sync_fifo_t pending = q->pending, waiting = q->waiting;
    free(q);
    while (sync_len(&pending) > 0) {
        sync_item_t v = sync_pop(&pending);
        if (v.free)
            v.free(v.ptr);
    }
    free(pending.v);
    sync_fail_waiters(waiting, "queue");
}

static void sync_cancel_get(tw_deferred_t *d, void *arg)
{
    tw_deferred_queue_t *q = arg;
    if (sync_remove(&q->waiting, d))
        tw_deferred_unref(d);
}

int tw_deferred_queue_put(tw_deferred_queue_t *q, void *ptr, tw_free_cb dtor)
{
    if (sync_len(&q->waiting) > 0) {
        tw_deferred_t *d = sync_pop(&q->waiting).ptr;
        tw_deferred_callback(d, ptr, dtor);
        tw_deferred_unref(d);
        return 0;
    }
    if (sync_len(&q->pending) >= q->size)
        return -ENOBUFS;
    return sync_push(&q->pending, ptr, dtor);
}

tw_deferred_t *tw_deferred_queue_get(tw_deferred_queue_t *q)
{
    if (sync_len(&q->pending) > 0) {
        tw_deferred_t *d = tw_deferred_new(NULL, NULL);
        if (d) {
            sync_item_t v = sync_pop(&q->pending);
            tw_deferred_callback(d, v.ptr, v.free);
        }
        return d;
    }
    if (sync_len(&q->waiting) >= q->backlog)
        return tw_deferred_fail(tw_failure_new("deferred", -EBUSY,
                                               "queue underflow: %zu gets already waiting",
                                               sync_len(&q->waiting)));
    tw_deferred_t *d = tw_deferred_new(sync_cancel_get, q);
    if (d && sync_push(&q->waiting, d, NULL) < 0) {
        tw_deferred_unref(d);
        return NULL;
    }
    return d ? tw_deferred_ref(d) : NULL;
}

size_t tw_deferred_queue_pending(const tw_deferred_queue_t *q)
{
    return sync_len(&q->pending);
}

size_t tw_deferred_queue_waiting(const tw_deferred_queue_t *q)
{
    return sync_len(&q->waiting);
}
