/* thread_queue.c -- a bounded blocking FIFO for threads (tw_thread.h), and
 * the monotonic condition variables the thread pool shares with it.
 *
 * A ring of void * under one mutex, with one condition variable for getters
 * (not empty) and one for putters (not full).  A side is signalled only when
 * somebody waits on it, so an uncontended put or get costs one lock. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"
#include "tw_thread.h"

/* ---- monotonic condition variables -------------------------------------- */

/* macOS has no pthread_condattr_setclock: its waits are on the wall clock,
 * and a deadline is converted when waiting. */
#if defined(__APPLE__)
#define COND_ON_WALL_CLOCK 1
#endif

int tw__cond_init(pthread_cond_t *c)
{
#ifdef COND_ON_WALL_CLOCK
    return -pthread_cond_init(c, NULL);
#else
    pthread_condattr_t a;
    int rc = pthread_condattr_init(&a);
    if (rc)
        return -rc;
    rc = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
    return -rc;
#endif
}

int tw__cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, tw_time_t deadline)
{
    if (deadline == TW_TIME_MAX)
        return pthread_cond_wait(c, m);
#ifdef COND_ON_WALL_CLOCK
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    tw_time_t left = deadline - tw_time_now();
    tw_time_t wall = (tw_time_t)now.tv_sec * TW_SEC(1) + now.tv_nsec;
    deadline = left > 0 && wall < TW_TIME_MAX - left ? wall + left : wall;
#endif
    if (deadline < 0)
        deadline = 0;
    struct timespec ts = { .tv_sec = (time_t)(deadline / TW_SEC(1)),
                           .tv_nsec = (long)(deadline % TW_SEC(1)) };
    return pthread_cond_timedwait(c, m, &ts);
}

/* now + timeout, saturating; TW_TIME_MAX for "for ever" (any negative). */
static tw_time_t queue_deadline(tw_time_t timeout)
{
    if (timeout < 0)
        return TW_TIME_MAX;
    tw_time_t now = tw_time_now();
    return timeout >= TW_TIME_MAX - now ? TW_TIME_MAX : now + timeout;
}

/* ---- the queue ------------------------------------------------------------ */

struct tw_thread_queue {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    int getters, putters; /* waiting now */
    bool closed;
    size_t cap, head, n;  /* items v[head], v[head + 1], ... (mod cap) */
    void **v;
};

tw_thread_queue_t *tw_thread_queue_new(size_t capacity)
{
    if (capacity < 1 || capacity > SIZE_MAX / sizeof(void *)) {
        errno = EINVAL;
        return NULL;
    }
    tw_thread_queue_t *q = calloc(1, sizeof *q);
    void **v = malloc(capacity * sizeof *v);
    if (!q || !v) {
        free(q);
        free(v);
        errno = ENOMEM;
        return NULL;
    }
    int rc = -pthread_mutex_init(&q->lock, NULL);
    if (rc == 0 && (rc = tw__cond_init(&q->not_empty)) != 0)
        pthread_mutex_destroy(&q->lock);
    if (rc == 0 && (rc = tw__cond_init(&q->not_full)) != 0) {
        pthread_cond_destroy(&q->not_empty);
        pthread_mutex_destroy(&q->lock);
    }
    if (rc) {
        free(q);
        free(v);
        errno = -rc;
        return NULL;
    }
    q->v = v;
    q->cap = capacity;
    return q;
}

void tw_thread_queue_free(tw_thread_queue_t *q, void (*leftover)(void *item))
{
    if (!q)
        return;
    for (size_t i = 0; leftover && i < q->n; i++)
        leftover(q->v[(q->head + i) % q->cap]);
    pthread_cond_destroy(&q->not_full);
    pthread_cond_destroy(&q->not_empty);
    pthread_mutex_destroy(&q->lock);
    free(q->v);
    free(q);
}

int tw_thread_queue_put(tw_thread_queue_t *q, void *item, tw_time_t timeout)
{
    tw_time_t deadline = 0;
    int rc = 0;
    pthread_mutex_lock(&q->lock);
    while (!q->closed && q->n == q->cap) {
        if (timeout == 0) {
            rc = -EAGAIN;
            break;
        }
        if (rc == ETIMEDOUT) { /* the last wait timed out and the queue is still full */
            rc = -ETIMEDOUT;
            break;
        }
        if (deadline == 0)
            deadline = queue_deadline(timeout);
        q->putters++;
        rc = tw__cond_wait_until(&q->not_full, &q->lock, deadline);
        q->putters--;
    }
    if (q->closed) {
        rc = -EPIPE;
    } else if (rc >= 0) {
        rc = 0;
        q->v[(q->head + q->n++) % q->cap] = item;
        if (q->getters)
            pthread_cond_signal(&q->not_empty);
    }
    pthread_mutex_unlock(&q->lock);
    return rc;
}

int tw_thread_queue_get(tw_thread_queue_t *q, void **item, tw_time_t timeout)
{
    tw_time_t deadline = 0;
    int rc = 0;
    pthread_mutex_lock(&q->lock);
    while (q->n == 0 && !q->closed) {
        if (timeout == 0) {
            rc = -EAGAIN;
            break;
        }
        if (rc == ETIMEDOUT) {
            rc = -ETIMEDOUT;
            break;
        }
        if (deadline == 0)
            deadline = queue_deadline(timeout);
        q->getters++;
        rc = tw__cond_wait_until(&q->not_empty, &q->lock, deadline);
        q->getters--;
    }
    if (q->n > 0) { /* items put before close are still handed out */
        rc = 0;
        *item = q->v[q->head];
        q->head = (q->head + 1) % q->cap;
        q->n--;
        if (q->putters)
            pthread_cond_signal(&q->not_full);
    } else if (q->closed) {
        rc = -EPIPE;
    }
    pthread_mutex_unlock(&q->lock);
    return rc;
}

void tw_thread_queue_close(tw_thread_queue_t *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = true;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->lock);
}

size_t tw_thread_queue_length(tw_thread_queue_t *q)
{
    pthread_mutex_lock(&q->lock);
    size_t n = q->n;
    pthread_mutex_unlock(&q->lock);
    return n;
}
