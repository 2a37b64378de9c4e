/* calls.c -- call queues, the waker, and tw_call_from_thread.
 *
 * Other threads append {cb, arg, seq} to a vector under a mutex: one vector
 * and mutex per shard, a thread always using the same shard, and seq from one
 * counter, so the loop can run the calls of all shards in the order made.  The waker (an
 * eventfd on Linux, a non-blocking pipe elsewhere) is written only when the
 * shard's "wake pending" flag, kept under the same mutex, was clear: a flood
 * of calls costs one write per burst, not one per call.  The loop drains the
 * waker, swaps each vector out in O(1) under its mutex, and runs the calls
 * outside it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

#include "internal.h"

static int callq_grow(tw__callq_t *q)
{
    size_t cap = q->cap ? q->cap * 2 : 64;
    tw__call_t *v = realloc(q->v, cap * sizeof *v);
    if (!v)
        return -ENOMEM;
    q->v = v;
    q->cap = cap;
    return 0;
}

int tw__callq_push(tw__callq_t *q, tw_call_cb cb, void *arg)
{
    if (q->n == q->cap && callq_grow(q))
        return -ENOMEM;
    q->v[q->n++] = (tw__call_t){ cb, arg, 0 };
    return 0;
}

void tw__callq_free(tw__callq_t *q)
{
    free(q->v);
    *q = (tw__callq_t){ 0 };
}

void tw__thread_calls_init(tw_reactor_t *r)
{
    for (int i = 0; i < TW__XQ_SHARDS; i++) {
        /* Critical sections are a few instructions: spin briefly before
         * sleeping in the kernel, where the platform offers it. */
        pthread_mutexattr_t a;
        pthread_mutexattr_init(&a);
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
        pthread_mutex_init(&r->xq[i].lock, &a);
        pthread_mutexattr_destroy(&a);
        r->xq[i].q.n = 0;
        r->xq[i].pending = 0;
    }
}

void tw__thread_calls_fini(tw_reactor_t *r)
{
    for (int i = 0; i < TW__XQ_SHARDS; i++) {
        tw__callq_free(&r->xq[i].q);
        tw__callq_free(&r->tq_run[i]);
        pthread_mutex_destroy(&r->xq[i].lock);
    }
}

int tw_call_from_thread(tw_reactor_t *r, tw_call_cb cb, void *arg)
{
    static atomic_uint next_shard;
    static _Thread_local unsigned shard = UINT_MAX;
    if (!cb)
        return -EINVAL;
    if (shard == UINT_MAX) /* a thread keeps its shard */
        shard = atomic_fetch_add_explicit(&next_shard, 1, memory_order_relaxed) % TW__XQ_SHARDS;
    tw__xq_t *x = &r->xq[shard];

    pthread_mutex_lock(&x->lock);
    /* Taken under the lock, so each shard is sorted by seq.  One atomic
     * counter has one modification order, consistent with happens-before:
     * a call made after another (in any thread that can tell) gets a larger
     * number. */
    uint64_t seq = atomic_fetch_add_explicit(&r->xseq.next, 1, memory_order_relaxed);
    tw__callq_t *q = &x->q;
    int rc = 0;
    if (q->n == q->cap)
        rc = callq_grow(q);
    if (rc == 0)
        q->v[q->n++] = (tw__call_t){ cb, arg, seq };
    int wake = rc == 0 && !x->pending;
    if (wake)
        x->pending = 1;
    int wfd = r->wake_wfd;
    pthread_mutex_unlock(&x->lock);
    if (wake)
        tw__waker_wake(wfd);
    return rc;
}

/* Take the calls of every shard and run them in the order they were made.
 *
 * All shards are taken while all their locks are held, so the batch is
 * closed under "happened before": if a call in the batch was made after
 * another one, that one is in the batch too (or ran earlier).  The shards are
 * then merged by sequence number.
 *
 * While calls keep coming, a shard's `pending` stays set, so its producers
 * skip the waker write, and the loop looks again on its next iteration
 * (after polling I/O without blocking).  `pending` is cleared by a look that
 * finds the shard empty -- or holding a single call: one call is not a
 * stream, and looking again for the next would cost a system call each time
 * (a worker handing back one result at a time).  Its next producer then
 * writes the waker, so no call is missed. */
int tw__thread_calls_run(tw_reactor_t *r)
{
    tw__callq_t *run = r->tq_run;
    size_t total = 0, at[TW__XQ_SHARDS] = { 0 };
    int streaming = 0;
    for (int i = 0; i < TW__XQ_SHARDS; i++)
        pthread_mutex_lock(&r->xq[i].lock);
    for (int i = 0; i < TW__XQ_SHARDS; i++) {
        tw__xq_t *x = &r->xq[i];
        tw__callq_t q = x->q;
        x->q = run[i];
        run[i] = q;
        if (q.n <= 1)
            x->pending = 0;
        else
            streaming = 1;
        total += q.n;
    }
    for (int i = TW__XQ_SHARDS - 1; i >= 0; i--)
        pthread_mutex_unlock(&r->xq[i].lock);
    r->tq_poll = streaming;
    r->tq_taken = 1;

    int busy = -1, nbusy = 0;
    for (int i = 0; i < TW__XQ_SHARDS; i++)
        if (run[i].n)
            busy = i, nbusy++;
    /* Each call's cb is cleared as it is taken, so that
     * tw__thread_calls_forget (run from a call) skips the ones already run. */
    if (nbusy == 1) { /* one shard: already in order */
        tw__call_t *v = run[busy].v;
        for (size_t k = 0; k < total; k++) {
            tw__call_t c = v[k];
            v[k].cb = NULL;
            c.cb(r, c.arg);
        }
    } else {
        for (size_t done = 0; done < total; done++) {
            int best = -1;
            for (int i = 0; i < TW__XQ_SHARDS; i++)
                if (at[i] < run[i].n &&
                    (best < 0 || run[i].v[at[i]].seq < run[best].v[at[best]].seq))
                    best = i;
            tw__call_t c = run[best].v[at[best]];
            run[best].v[at[best]++].cb = NULL;
            c.cb(r, c.arg);
        }
    }
    for (int i = 0; i < TW__XQ_SHARDS; i++)
        run[i].n = 0;
    return (int)total;
}

static void calls_forgotten(tw_reactor_t *r, void *arg)
{
    (void)r;
    (void)arg;
}

void tw__thread_calls_forget(tw_reactor_t *r, bool (*match)(tw_call_cb cb, void *arg, void *ctx),
                             void *ctx)
{
    for (int i = 0; i < TW__XQ_SHARDS; i++) {
        /* Calls of the batch being run (this may be one of them) that have
         * not run yet: cb is cleared as each is taken. */
        tw__callq_t *q = &r->tq_run[i];
        for (size_t k = 0; k < q->n; k++) {
            tw__call_t *c = &q->v[k];
            if (c->cb && c->cb != calls_forgotten && match(c->cb, c->arg, ctx))
                c->cb = calls_forgotten;
        }
        tw__xq_t *x = &r->xq[i];
        pthread_mutex_lock(&x->lock);
        for (size_t k = 0; k < x->q.n; k++) {
            tw__call_t *c = &x->q.v[k];
            if (c->cb != calls_forgotten && match(c->cb, c->arg, ctx))
                c->cb = calls_forgotten;
        }
        pthread_mutex_unlock(&x->lock);
    }
}

/* ---- the waker -------------------------------------------------------- */

int tw__waker_open(tw_reactor_t *r)
{
#ifdef __linux__
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return -errno;
    r->wake_rfd = r->wake_wfd = fd;
#else
    int p[2];
    if (pipe(p) < 0)
        return -errno;
    for (int i = 0; i < 2; i++) {
        fcntl(p[i], F_SETFD, FD_CLOEXEC);
        fcntl(p[i], F_SETFL, fcntl(p[i], F_GETFL) | O_NONBLOCK);
    }
    r->wake_rfd = p[0];
    r->wake_wfd = p[1];
#endif
    return 0;
}

void tw__waker_close(tw_reactor_t *r)
{
    if (r->wake_wfd >= 0 && r->wake_wfd != r->wake_rfd)
        close(r->wake_wfd);
    if (r->wake_rfd >= 0)
        close(r->wake_rfd);
    r->wake_rfd = r->wake_wfd = -1;
}

/* Async-signal-safe: called from signal handlers too.  A full pipe or a
 * saturated eventfd means a wake-up is already pending, which is enough. */
void tw__waker_wake(int wfd)
{
#ifdef __linux__
    uint64_t one = 1;
    ssize_t n = write(wfd, &one, sizeof one);
#else
    char c = 0;
    ssize_t n = write(wfd, &c, 1);
#endif
    (void)n;
}

void tw__waker_drain(int rfd)
{
#ifdef __linux__
    uint64_t v;
    ssize_t n = read(rfd, &v, sizeof v);
    (void)n;
#else
    char buf[256];
    while (read(rfd, buf, sizeof buf) == (ssize_t)sizeof buf)
        ;
#endif
}
