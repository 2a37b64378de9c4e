/* calls.c -- call queues, the waker, and tw_call_from_thread.
 *
 * Other threads append {cb, arg} to a vector under a mutex: one vector and
 * mutex per shard, a thread always using the same shard.  The waker (an
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
    q->v[q->n++] = (tw__call_t){ cb, arg };
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
        pthread_mutex_init(&r->xq[i].lock, NULL);
        r->xq[i].q.n = 0;
        r->xq[i].pending = 0;
    }
}

void tw__thread_calls_fini(tw_reactor_t *r)
{
    for (int i = 0; i < TW__XQ_SHARDS; i++) {
        tw__callq_free(&r->xq[i].q);
        pthread_mutex_destroy(&r->xq[i].lock);
    }
}

int tw_call_from_thread(tw_reactor_t *r, tw_call_cb cb, void *arg)
{
    static atomic_uint next_shard;
    static _Thread_local unsigned shard = UINT_MAX;
    if (!cb)
        return -EINVAL;
    if (shard == UINT_MAX) /* a thread keeps its shard: its calls stay in order */
        shard = atomic_fetch_add_explicit(&next_shard, 1, memory_order_relaxed) % TW__XQ_SHARDS;
    tw__xq_t *x = &r->xq[shard];

    pthread_mutex_lock(&x->lock);
    tw__callq_t *q = &x->q;
    int rc = 0;
    if (q->n < q->cap)
        q->v[q->n++] = (tw__call_t){ cb, arg };
    else
        rc = tw__callq_push(q, cb, arg);
    int wake = rc == 0 && !x->pending;
    if (wake)
        x->pending = 1;
    int wfd = r->wake_wfd;
    pthread_mutex_unlock(&x->lock);
    if (wake)
        tw__waker_wake(wfd);
    return rc;
}

/* Take the calls of each shard and run them.  While calls keep coming, a
 * shard's `pending` stays set, so its producers skip the waker write, and the
 * loop looks again on its next iteration (after polling I/O without
 * blocking).  `pending` is cleared only by a look that finds the shard
 * empty; its next producer then writes the waker, so no call is missed. */
int tw__thread_calls_run(tw_reactor_t *r)
{
    int ran = 0, busy = 0;
    for (int i = 0; i < TW__XQ_SHARDS; i++) {
        tw__xq_t *x = &r->xq[i];
        pthread_mutex_lock(&x->lock);
        tw__callq_t run = x->q;
        x->q = r->tq_run;
        if (run.n == 0)
            x->pending = 0;
        pthread_mutex_unlock(&x->lock);
        busy |= run.n != 0;
        for (size_t k = 0; k < run.n; k++)
            run.v[k].cb(r, run.v[k].arg);
        ran += (int)run.n;
        run.n = 0;
        r->tq_run = run;
    }
    r->tq_poll = busy;
    r->tq_taken = 1;
    return ran;
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
