/* calls.c -- call queues, the waker, and tw_call_from_thread.
 *
 * Other threads append {cb, arg} to a vector under a mutex.  The waker (an
 * eventfd on Linux, a non-blocking pipe elsewhere) is written only when the
 * "wake pending" flag, kept under the same mutex, was clear: a flood of calls
 * costs one write per loop iteration, not one per call.  The loop drains the
 * waker, swaps the whole vector out in O(1) under the mutex, clears the flag,
 * and runs the calls outside it (reactor.c, reactor_wake_cb). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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

int tw_call_from_thread(tw_reactor_t *r, tw_call_cb cb, void *arg)
{
    if (!cb)
        return -EINVAL;
    pthread_mutex_lock(&r->tq_lock);
    tw__callq_t *q = &r->tq;
    int rc = 0;
    if (q->n < q->cap)
        q->v[q->n++] = (tw__call_t){ cb, arg };
    else
        rc = tw__callq_push(q, cb, arg);
    int wake = rc == 0 && !r->tq_pending;
    if (wake)
        r->tq_pending = 1;
    int wfd = r->wake_wfd;
    pthread_mutex_unlock(&r->tq_lock);
    if (wake)
        tw__waker_wake(wfd);
    return rc;
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
