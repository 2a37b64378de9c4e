/* threadpool.c -- the thread bridge (tw_thread.h): a thread pool whose
 * results come back to the reactor thread as Deferreds, callInThread, and
 * blockingCallFromThread.  The bounded queue is in thread_queue.c.
 *
 * One mutex guards a pool's shared state: the FIFO of work not yet started,
 * the list of idle workers and the counters.  Each worker sleeps on a
 * condition variable of its own, and idle workers form a LIFO: a submission
 * takes the most recently idle worker (its cache is warm), hands it the item
 * directly and signals only that one, and the workers at the far end of the
 * list are the ones that reach their idle timeout.  With no idle worker the
 * item is queued, and a thread is started if fewer than max run.  So a
 * submission costs one lock, plus one signal when a worker is asleep.
 *
 * A result goes back with tw_call_from_thread(r, pool_done, item), one call
 * per item: the reactor batches them (one wake-up per burst), and because a
 * worker's own tw_call_from_thread calls and its results go through the same
 * queue, progress reports made by a work function run before its Deferred
 * fires.  Items are small nodes kept on free lists: the ones of
 * tw_defer_to_thread are made and recycled in the reactor thread only (no
 * lock), those of tw_call_in_thread under the pool's lock.
 *
 * Freeing a pool while messages of its workers are still queued for the
 * reactor: results and the "all threads exited" notice are left where they
 * are, so they still arrive in order; the pool's memory stays until the last
 * of them has (`inflight`) and until our last frame that runs user code has
 * unwound (`busy`: a Deferred's callbacks may free the pool).  Whatever is
 * still queued when the reactor is freed is delivered by the reactor's
 * pool_free hook, not dropped.  Blocking calls of its workers are taken
 * back with tw__thread_calls_forget (calls.c) and refused, since the
 * threads must return before they can be joined. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "tw_thread.h"

#define POOL_DEFAULT_MAX     10
#define POOL_DEFAULT_IDLE    TW_SEC(10)
#define POOL_FREE_LIST_MAX   1024 /* nodes kept for reuse, per list */

enum { WORK_DEFER, WORK_CALL, WORK_EXIT };

/* One piece of work: queued, running, or on its way back to the reactor. */
typedef struct pool_work {
    struct pool_work *next, *prev; /* the queue; `next` also links free lists */
    tw_threadpool_t *p;
    uint8_t kind;
    bool queued;                   /* on p's queue (p->lock) */
    bool cancelled;                /* reactor thread: d was cancelled after fn started */
    tw_thread_fn fn;               /* WORK_DEFER */
    void (*call)(void *arg);       /* WORK_CALL */
    void (*drop)(void *arg);       /* WORK_CALL: if it never runs */
    void *arg;
    tw_deferred_t *d;              /* WORK_DEFER: the pool's reference */
    tw_outcome_t out;              /* WORK_DEFER: fn's outcome, worker -> reactor */
} pool_work_t;

typedef struct pool_worker {
    struct pool_worker *next, *prev; /* p->idle_list; then p->zombies (next only) */
    tw_threadpool_t *p;
    pthread_t tid;                   /* set by the thread itself when it exits */
    pthread_cond_t wake;
    pool_work_t *item;               /* handed over by a submission (p->lock) */
    bool on_idle;                    /* on p->idle_list (p->lock) */
    int n;                           /* the number in its name */
} pool_worker_t;

/* A tw_blocking_call_from_thread in progress.  Two references: the waiting
 * thread's and the reactor side's (the queued call, then the step on the
 * Deferred fn returned).  `done` and `out` are written by the reactor thread
 * under `lock`; the caller reads them under it. */
typedef struct pool_bcall {
    atomic_int refs;
    tw_reactor_fn fn;
    void *arg;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    tw_outcome_t out;
    /* Reactor thread (p is also read, under a shard's lock, by a forget): */
    tw_threadpool_t *p;            /* the caller's pool when it is one of r's; NULL once let go */
    struct pool_bcall *next, *prev; /* p->bcalls, while the reactor side holds it */
    tw_deferred_t *d;              /* fn's Deferred, while waiting for it (a reference) */
    bool cancel_sent;              /* freeing the pool cancelled d */
} pool_bcall_t;

struct tw_threadpool {
    tw_reactor_t *r;
    pthread_mutex_t lock;

    /* Guarded by lock. */
    pool_work_t *head, *tail;     /* work not started, oldest first */
    size_t queued, running;
    int threads, idle, min, max;
    int next_n;                   /* names: the last number given */
    pool_worker_t *idle_list;     /* most recently idle first */
    pool_worker_t *zombies;       /* exited, not joined */
    pool_work_t *call_free;       /* free WORK_CALL nodes */
    size_t call_free_n;
    bool stopped, freeing, exit_sent;
    pthread_cond_t all_exited;    /* tw_threadpool_free waits here */

    atomic_int inflight;          /* messages sent to the reactor, not yet handled */

    /* Constant. */
    tw_time_t idle_timeout;
    size_t stack_size;
    unsigned flags;
    char name[16];

    /* Reactor thread only. */
    pool_work_t *defer_free;      /* free WORK_DEFER nodes */
    size_t defer_free_n;
    pool_work_t exit_node;        /* "every thread has exited", sent once after stop */
    bool exited;                  /* ... and it has arrived */
    tw_deferred_t **waiters;      /* from tw_threadpool_stop, fired when exited */
    size_t nwaiters, capwaiters;
    int trigger;                  /* the shutdown trigger's id, or 0 */
    pool_bcall_t *bcalls;         /* blocking calls the reactor side holds */
    pool_bcall_t *bcalls_taken;   /* ... and those taken back from the queue */
    int busy;                     /* our frames running user code */
    bool dead;                    /* tw_threadpool_free was called: release once
                                   * busy and inflight are 0 */
};

/* The worker running on this thread, if it is one. */
static _Thread_local pool_worker_t *pool_self;

static void pool_done(tw_reactor_t *r, void *arg);
static void pool_bcall_run(tw_reactor_t *r, void *arg);

/* ---- small pieces ------------------------------------------------------------ */

static tw_failure_t *pool_failure(int code, const char *msg)
{
    return tw_failure_new("thread", code, "%s", msg);
}

static void pool_release(tw_threadpool_t *p)
{
    for (pool_work_t *w = p->call_free, *next; w; w = next) {
        next = w->next;
        free(w);
    }
    for (pool_work_t *w = p->defer_free, *next; w; w = next) {
        next = w->next;
        free(w);
    }
    free(p->waiters);
    pthread_cond_destroy(&p->all_exited);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* Reactor thread.  After tw_threadpool_free the pool lives on while its
 * messages are on their way (they arrive in order with the calls the work
 * made) or one of our frames is on the stack. */
static void pool_unbusy(tw_threadpool_t *p)
{
    if (--p->busy == 0 && p->dead && atomic_load(&p->inflight) == 0)
        pool_release(p);
}

/* Hand a message to the reactor thread.  tw_call_from_thread fails only when
 * memory is exhausted; a result must not be lost, so retry. */
static void pool_send(tw_reactor_t *r, tw_call_cb cb, void *arg)
{
    for (int tries = 0; tw_call_from_thread(r, cb, arg) != 0; tries++) {
        if (tries == 0)
            tw_log(TW_LOG_ERROR, "thread", "out of memory handing a result to the reactor: "
                                           "retrying");
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
}

static void pool_enqueue(tw_threadpool_t *p, pool_work_t *w)
{
    w->next = NULL;
    w->prev = p->tail;
    if (p->tail)
        p->tail->next = w;
    else
        p->head = w;
    p->tail = w;
    w->queued = true;
    p->queued++;
}

static void pool_unqueue(tw_threadpool_t *p, pool_work_t *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        p->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        p->tail = w->prev;
    w->next = w->prev = NULL;
    w->queued = false;
    p->queued--;
}

static void pool_idle_push(tw_threadpool_t *p, pool_worker_t *wk)
{
    wk->prev = NULL;
    wk->next = p->idle_list;
    if (p->idle_list)
        p->idle_list->prev = wk;
    p->idle_list = wk;
    wk->on_idle = true;
    p->idle++;
}

static void pool_idle_remove(tw_threadpool_t *p, pool_worker_t *wk)
{
    if (wk->prev)
        wk->prev->next = wk->next;
    else
        p->idle_list = wk->next;
    if (wk->next)
        wk->next->prev = wk->prev;
    wk->next = wk->prev = NULL;
    wk->on_idle = false;
    p->idle--;
}

/* Take every idle worker off the list and wake it, to look at the pool
 * again (stopped, resized).  Under p->lock. */
static void pool_wake_all(tw_threadpool_t *p)
{
    while (p->idle_list) {
        pool_worker_t *wk = p->idle_list;
        pool_idle_remove(p, wk);
        pthread_cond_signal(&wk->wake);
    }
}

/* Under p->lock: the exited workers, for pool_join after unlocking. */
static pool_worker_t *pool_take_zombies(tw_threadpool_t *p)
{
    pool_worker_t *z = p->zombies;
    p->zombies = NULL;
    return z;
}

static void pool_join(pool_worker_t *z)
{
    while (z) {
        pool_worker_t *next = z->next;
        pthread_join(z->tid, NULL);
        pthread_cond_destroy(&z->wake);
        free(z);
        z = next;
    }
}

/* Under p->lock: after stop, once the last thread is gone, tell the reactor
 * (through the same queue as the results, so after all of them). */
static void pool_maybe_send_exit(tw_threadpool_t *p)
{
    if (p->stopped && p->threads == 0 && !p->exit_sent) {
        p->exit_sent = true;
        atomic_fetch_add(&p->inflight, 1);
        pool_send(p->r, pool_done, &p->exit_node);
    }
}

/* Under p->lock: a thread has exited, or failed to start. */
static void pool_thread_gone(tw_threadpool_t *p)
{
    p->threads--;
    pool_maybe_send_exit(p);
    if (p->freeing)
        pthread_cond_broadcast(&p->all_exited);
}

/* ---- workers ------------------------------------------------------------------- */

static void pool_name_thread(const tw_threadpool_t *p, int n)
{
    char name[32];
    snprintf(name, sizeof name, "%s-%d", p->name, n);
    name[15] = '\0'; /* the kernel's limit */
#if defined(__linux__)
    pthread_setname_np(pthread_self(), name);
#elif defined(__APPLE__)
    pthread_setname_np(name);
#elif defined(__NetBSD__)
    pthread_setname_np(pthread_self(), "%s", name);
#else
    (void)name;
#endif
}

/* Run one item, outside the lock. */
static void pool_run(tw_threadpool_t *p, pool_work_t *w)
{
    if (w->kind == WORK_CALL) {
        w->call(w->arg);
        return;
    }
    w->out = w->fn(w->arg);
    atomic_fetch_add(&p->inflight, 1);
    pool_send(p->r, pool_done, w);
}

static void *pool_worker_main(void *arg)
{
    pool_worker_t *wk = arg;
    tw_threadpool_t *p = wk->p;
    pool_self = wk;
    pool_name_thread(p, wk->n);

    pthread_mutex_lock(&p->lock);
    for (;;) {
        pool_work_t *w = wk->item;
        wk->item = NULL;
        if (!w && (w = p->head) != NULL)
            pool_unqueue(p, w);
        if (w) {
            bool call = w->kind == WORK_CALL; /* a result is the reactor's once sent */
            p->running++;
            pthread_mutex_unlock(&p->lock);
            pool_run(p, w);
            pthread_mutex_lock(&p->lock);
            p->running--;
            if (call) {
                if (p->call_free_n < POOL_FREE_LIST_MAX) {
                    w->next = p->call_free;
                    p->call_free = w;
                    p->call_free_n++;
                } else {
                    free(w);
                }
            }
            if (p->threads > p->max) /* shrunk: finish this item, then go */
                break;
            continue;
        }
        if (p->stopped || p->threads > p->max)
            break;
        /* Idle.  Above min, only for idle_timeout; then look again (a
         * spurious wake-up, a resize or a stop takes us off the list). */
        tw_time_t deadline = TW_TIME_MAX;
        if (p->threads > p->min) {
            tw_time_t now = tw_time_now();
            deadline = p->idle_timeout < TW_TIME_MAX - now ? now + p->idle_timeout
                                                            : TW_TIME_MAX;
        }
        pool_idle_push(p, wk);
        int rc = 0;
        while (wk->on_idle && rc != ETIMEDOUT)
            rc = tw__cond_wait_until(&wk->wake, &p->lock, deadline);
        if (wk->on_idle)
            pool_idle_remove(p, wk);
        if (!wk->item && rc == ETIMEDOUT && p->threads > p->min)
            break;
    }
    wk->tid = pthread_self();
    wk->next = p->zombies;
    p->zombies = wk;
    pool_thread_gone(p);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Start a worker; p->threads already counts it.  Returns 0 or a negative
 * code (and then no longer counts it). */
static int pool_start_thread(tw_threadpool_t *p, int n)
{
    pool_worker_t *wk = calloc(1, sizeof *wk);
    int rc = wk ? tw__cond_init(&wk->wake) : -ENOMEM;
    if (rc == 0) {
        wk->p = p;
        wk->n = n;
        pthread_attr_t a;
        pthread_t tid;
        rc = -pthread_attr_init(&a);
        if (rc == 0 && p->stack_size)
            rc = -pthread_attr_setstacksize(&a, p->stack_size);
        if (rc == 0) {
            /* Workers block the signals the reactor thread handles: a signal
             * must not interrupt a work function's system calls. */
            sigset_t all, old;
            sigfillset(&all);
            pthread_sigmask(SIG_SETMASK, &all, &old);
            rc = -pthread_create(&tid, &a, pool_worker_main, wk);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
        }
        pthread_attr_destroy(&a);
        if (rc == 0)
            return 0;
        pthread_cond_destroy(&wk->wake);
    }
    free(wk);
    pthread_mutex_lock(&p->lock);
    pool_thread_gone(p);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

/* Under p->lock: hand w to the most recently idle worker, or queue it and
 * count a thread to start if none is idle and fewer than max run (returns
 * its number, or 0).  -ESHUTDOWN once stopped. */
static int pool_submit_locked(tw_threadpool_t *p, pool_work_t *w, pool_worker_t **wake)
{
    if (p->stopped)
        return -ESHUTDOWN;
    pool_worker_t *wk = p->idle_list;
    if (wk) {
        pool_idle_remove(p, wk);
        wk->item = w;
        w->queued = false;
        /* Signalled under the lock, wk cannot be gone yet.  The reactor
         * thread, the only one that stops, shrinks or frees a pool, may
         * signal after unlocking instead (*wake): the worker, holding an
         * item, cannot exit before it is signalled, and does not wake
         * straight into a lock we still hold. */
        if (wake)
            *wake = wk;
        else
            pthread_cond_signal(&wk->wake);
        return 0;
    }
    pool_enqueue(p, w);
    if (p->threads >= p->max)
        return 0;
    p->threads++;
    return ++p->next_n;
}

/* After pool_submit_locked returned n > 0 (and the lock was released):
 * start that thread.  If it cannot start and no thread is left to run w,
 * take w back: returns the error.  Otherwise w stays queued: returns 0. */
static int pool_submit_start(tw_threadpool_t *p, pool_work_t *w, int n)
{
    int rc = pool_start_thread(p, n);
    if (rc == 0)
        return 0;
    pthread_mutex_lock(&p->lock);
    bool orphan = p->threads == 0 && w->queued;
    if (orphan)
        pool_unqueue(p, w);
    pthread_mutex_unlock(&p->lock);
    return orphan ? rc : 0;
}

/* ---- pools ----------------------------------------------------------------------- */

static tw_deferred_t *pool_on_shutdown(tw_reactor_t *r, void *arg);
static void pool_stop(tw_threadpool_t *p);
static void pool_reactor_free(tw_reactor_t *r);

tw_threadpool_t *tw_threadpool_new(tw_reactor_t *r, const tw_threadpool_options_t *opt)
{
    TW__ASSERT_OWNER(r);
    tw_threadpool_options_t o = opt ? *opt : (tw_threadpool_options_t){ 0 };
    if (!opt)
        o.max_threads = POOL_DEFAULT_MAX;
    if (o.min_threads < 0 || o.max_threads < 1 || o.min_threads > o.max_threads ||
        o.idle_timeout < 0) {
        errno = EINVAL;
        return NULL;
    }
    tw_threadpool_t *p = calloc(1, sizeof *p);
    if (!p) {
        errno = ENOMEM;
        return NULL;
    }
    /* Critical sections are a few instructions, and the reactor thread and
     * the workers meet here on every item: spin briefly before sleeping in
     * the kernel, where the platform offers it (as calls.c does). */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
    int mrc = pthread_mutex_init(&p->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    if (mrc != 0) {
        free(p);
        errno = ENOMEM;
        return NULL;
    }
    if (pthread_cond_init(&p->all_exited, NULL) != 0) {
        pthread_mutex_destroy(&p->lock);
        free(p);
        errno = ENOMEM;
        return NULL;
    }
    p->r = r;
    p->min = o.min_threads;
    p->max = o.max_threads;
    p->idle_timeout = o.idle_timeout ? o.idle_timeout : POOL_DEFAULT_IDLE;
    p->stack_size = o.stack_size;
    if (p->stack_size && p->stack_size < (size_t)PTHREAD_STACK_MIN)
        p->stack_size = (size_t)PTHREAD_STACK_MIN;
    p->flags = o.flags;
    snprintf(p->name, sizeof p->name, "%s", o.name ? o.name : "tw-pool");
    p->exit_node = (pool_work_t){ .p = p, .kind = WORK_EXIT };
    r->pool_free = pool_reactor_free; /* see there */
    if (p->flags & TW_POOL_STOP_ON_SHUTDOWN) {
        p->trigger = tw_reactor_add_shutdown_deferred(r, pool_on_shutdown, p);
        if (p->trigger < 0) {
            p->trigger = 0;
            tw_threadpool_free(p);
            errno = ENOMEM;
            return NULL;
        }
    }
    for (int i = 0; i < o.min_threads; i++) {
        pthread_mutex_lock(&p->lock);
        p->threads++;
        int n = ++p->next_n;
        pthread_mutex_unlock(&p->lock);
        int rc = pool_start_thread(p, n);
        if (rc < 0) {
            tw_threadpool_free(p);
            errno = -rc;
            return NULL;
        }
    }
    return p;
}

int tw_threadpool_resize(tw_threadpool_t *p, int min_threads, int max_threads)
{
    TW__ASSERT_OWNER(p->r);
    if (min_threads < 0 || max_threads < 1 || min_threads > max_threads)
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    p->min = min_threads;
    p->max = max_threads;
    int first = p->next_n + 1, start = 0;
    if (!p->stopped) {
        /* Idle workers look again: the ones above max go, the others
         * re-arm (or drop) their idle timeout.  Busy ones above max go
         * after their current item. */
        pool_wake_all(p);
        /* Up to min, and up to max while work waits. */
        int want = p->min;
        size_t more = p->queued;
        if (p->threads < p->max && more > 0) {
            int room = p->max - p->threads;
            int w = p->threads + (more < (size_t)room ? (int)more : room);
            want = w > want ? w : want;
        }
        start = want > p->threads ? want - p->threads : 0;
        p->threads += start;
        p->next_n += start;
    }
    pool_worker_t *z = pool_take_zombies(p);
    pthread_mutex_unlock(&p->lock);
    pool_join(z);
    int rc = 0;
    for (int i = 0; i < start; i++) {
        int e = pool_start_thread(p, first + i);
        if (e < 0 && rc == 0)
            rc = e;
    }
    return rc;
}

void tw_threadpool_stats(tw_threadpool_t *p, tw_threadpool_stats_t *st)
{
    pthread_mutex_lock(&p->lock);
    *st = (tw_threadpool_stats_t){ .threads = p->threads, .idle = p->idle, .queued = p->queued,
                                   .running = p->running, .stopped = p->stopped };
    pthread_mutex_unlock(&p->lock);
}

/* ---- results in the reactor thread --------------------------------------------- */

static void pool_defer_node_free(tw_threadpool_t *p, pool_work_t *w)
{
    if (p->defer_free_n < POOL_FREE_LIST_MAX) {
        w->next = p->defer_free;
        p->defer_free = w;
        p->defer_free_n++;
    } else {
        free(w);
    }
}

/* Every thread has exited after stop: fire the stop Deferreds. */
static void pool_exited(tw_threadpool_t *p)
{
    if (p->exited)
        return;
    p->exited = true;
    pthread_mutex_lock(&p->lock);
    pool_worker_t *z = pool_take_zombies(p);
    pthread_mutex_unlock(&p->lock);
    pool_join(z);
    tw_deferred_t **ws = p->waiters;
    size_t n = p->nwaiters;
    p->waiters = NULL;
    p->nwaiters = p->capwaiters = 0;
    p->busy++;
    for (size_t i = 0; i < n; i++) {
        tw_deferred_callback(ws[i], NULL, NULL);
        tw_deferred_unref(ws[i]);
    }
    free(ws);
    pool_unbusy(p);
}

/* A message from a worker: a result, or the exit notice.  The pool may
 * have been freed since it was sent (it is still there: inflight). */
static void pool_done(tw_reactor_t *r, void *arg)
{
    (void)r;
    pool_work_t *w = arg;
    tw_threadpool_t *p = w->p;
    p->busy++;
    atomic_fetch_sub(&p->inflight, 1);
    if (w->kind == WORK_EXIT) {
        pool_exited(p);
        pool_unbusy(p);
        return;
    }
    tw_deferred_t *d = w->d;
    tw_outcome_t o = w->out;
    bool cancelled = w->cancelled;
    pool_defer_node_free(p, w);
    if (o.kind != TW_OUTCOME_OK && o.kind != TW_OUTCOME_FAIL) { /* a thread fn's misuse */
        tw_outcome_discard(o);
        o = TW_FAIL(pool_failure(-EINVAL, "a thread function returned a Deferred"));
    }
    if (cancelled) /* cancel already fired d: the outcome has nowhere to go */
        tw_outcome_discard(o);
    else
        tw_deferred_fire(d, o);
    tw_deferred_unref(d);
    pool_unbusy(p);
}

/* ---- running work: tw_defer_to_thread, tw_call_in_thread ----------------------- */

/* The canceller of tw_defer_to_thread's Deferreds. */
static void pool_cancel(tw_deferred_t *d, void *arg)
{
    pool_work_t *w = arg;
    tw_threadpool_t *p = w->p;
    pthread_mutex_lock(&p->lock);
    bool queued = w->queued;
    if (queued)
        pool_unqueue(p, w);
    pthread_mutex_unlock(&p->lock);
    if (!queued) { /* running, or its result is on the way: discard it */
        w->cancelled = true;
        return;
    }
    pool_defer_node_free(p, w);
    /* tw_deferred_cancel errbacks with the usual cancel failure when we
     * return, so tw_deferred_add_timeout turns it into -ETIMEDOUT. */
    p->busy++;
    tw_deferred_unref(d); /* the pool's reference; tw_deferred_cancel holds one */
    pool_unbusy(p);
}

tw_deferred_t *tw_defer_to_thread(tw_reactor_t *r, tw_threadpool_t *p, tw_thread_fn fn,
                                  void *arg)
{
    TW__ASSERT_OWNER(r);
    if (!p && !(p = tw_reactor_thread_pool(r))) {
        errno = ENOMEM;
        return NULL;
    }
    if (!fn || p->r != r) {
        errno = EINVAL;
        return NULL;
    }
    pool_work_t *w = p->defer_free;
    if (w) {
        p->defer_free = w->next;
        p->defer_free_n--;
    } else if (!(w = malloc(sizeof *w))) {
        errno = ENOMEM;
        return NULL;
    }
    tw_deferred_t *d = tw_deferred_new(pool_cancel, w);
    if (!d) {
        pool_defer_node_free(p, w);
        errno = ENOMEM;
        return NULL;
    }
    *w = (pool_work_t){ .p = p, .kind = WORK_DEFER, .fn = fn, .arg = arg,
                        .d = tw_deferred_ref(d) };

    pool_worker_t *wake = NULL;
    pthread_mutex_lock(&p->lock);
    int n = pool_submit_locked(p, w, &wake);
    pool_worker_t *z = p->zombies ? pool_take_zombies(p) : NULL;
    pthread_mutex_unlock(&p->lock);
    if (wake)
        pthread_cond_signal(&wake->wake);
    pool_join(z);
    if (n > 0)
        n = pool_submit_start(p, w, n);
    if (n < 0) {
        pool_defer_node_free(p, w);
        tw_deferred_unref(d);
        tw_deferred_unref(d);
        errno = -n;
        return NULL;
    }
    return d;
}

int tw_call_in_thread(tw_threadpool_t *p, void (*fn)(void *arg), void *arg,
                      void (*drop)(void *arg))
{
    if (!fn)
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    pool_work_t *w = p->call_free;
    if (w) {
        p->call_free = w->next;
        p->call_free_n--;
    } else {
        pthread_mutex_unlock(&p->lock);
        if (!(w = malloc(sizeof *w)))
            return -ENOMEM;
        pthread_mutex_lock(&p->lock);
    }
    *w = (pool_work_t){ .p = p, .kind = WORK_CALL, .call = fn, .drop = drop, .arg = arg };
    int n = pool_submit_locked(p, w, NULL); /* any thread: signal under the lock */
    if (n < 0) {
        w->next = p->call_free;
        p->call_free = w;
        p->call_free_n++;
    }
    /* Exited workers are joined (and freed) by the reactor thread only:
     * tw_defer_to_thread relies on it to signal a worker after unlocking. */
    pool_worker_t *z = p->zombies && pthread_equal(pthread_self(), p->r->owner)
                           ? pool_take_zombies(p) : NULL;
    pthread_mutex_unlock(&p->lock);
    pool_join(z);
    if (n > 0 && (n = pool_submit_start(p, w, n)) < 0)
        free(w);
    return n < 0 ? n : 0;
}

/* ---- stopping and freeing ------------------------------------------------------ */

/* Stop accepting work; cancel or keep the queue (rule 4); wake the idle. */
static void pool_stop(tw_threadpool_t *p)
{
    pool_work_t *cancelled = NULL;
    pthread_mutex_lock(&p->lock);
    p->stopped = true;
    if (!(p->flags & TW_POOL_DRAIN)) {
        cancelled = p->head;
        for (pool_work_t *w = cancelled; w; w = w->next)
            w->queued = false;
        p->head = p->tail = NULL;
        p->queued = 0;
    }
    pool_wake_all(p);
    pool_maybe_send_exit(p);
    pool_worker_t *z = pool_take_zombies(p);
    pthread_mutex_unlock(&p->lock);
    pool_join(z);

    /* Callbacks run from here: a cancel of one of these (w->cancelled) or
     * a free of the pool (busy) is expected. */
    p->busy++;
    while (cancelled) {
        pool_work_t *w = cancelled;
        cancelled = w->next;
        if (w->kind == WORK_CALL) {
            void (*drop)(void *) = w->drop;
            void *arg = w->arg;
            free(w);
            if (drop)
                drop(arg);
            continue;
        }
        tw_deferred_t *d = w->d;
        bool skip = w->cancelled;
        pool_defer_node_free(p, w);
        if (!skip)
            tw_deferred_errback(d, pool_failure(-ECANCELED, "thread pool stopped"));
        tw_deferred_unref(d);
    }
    pool_unbusy(p);
}

tw_deferred_t *tw_threadpool_stop(tw_threadpool_t *p)
{
    TW__ASSERT_OWNER(p->r);
    tw_deferred_t *d = NULL;
    if (p->exited) {
        d = tw_deferred_succeed(NULL, NULL);
    } else {
        if (p->nwaiters == p->capwaiters) {
            size_t cap = p->capwaiters ? 2 * p->capwaiters : 2;
            tw_deferred_t **v = realloc(p->waiters, cap * sizeof *v);
            if (v) {
                p->waiters = v;
                p->capwaiters = cap;
            }
        }
        if (p->nwaiters < p->capwaiters && (d = tw_deferred_new(NULL, NULL)) != NULL)
            p->waiters[p->nwaiters++] = tw_deferred_ref(d);
    }
    /* Fires d only later, through the reactor's queue, even when no thread
     * is left: after every result already on its way. */
    if (!p->stopped)
        pool_stop(p);
    if (!d)
        errno = ENOMEM;
    return d;
}

static tw_deferred_t *pool_on_shutdown(tw_reactor_t *r, void *arg)
{
    (void)r;
    tw_threadpool_t *p = arg;
    return p->exited ? NULL : tw_threadpool_stop(p);
}

static void pool_bcall_answer(pool_bcall_t *bc, tw_outcome_t o);
static void pool_bcall_unref(pool_bcall_t *bc);

/* Blocking calls of p's workers still queued for the reactor, taken back by
 * tw__thread_calls_forget. */
static bool pool_bcall_match(tw_call_cb cb, void *arg, void *ctx)
{
    tw_threadpool_t *p = ctx;
    pool_bcall_t *bc = arg;
    if (cb != pool_bcall_run || bc->p != p)
        return false;
    bc->next = p->bcalls_taken;
    p->bcalls_taken = bc;
    return true;
}

static void pool_bcall_unlink(tw_threadpool_t *p, pool_bcall_t *bc);

/* Let the workers blocked in tw_blocking_call_from_thread go, so that
 * they can exit: the calls still queued are refused (-ESHUTDOWN); for those
 * the reactor side holds (running, or waiting for a Deferred), what they
 * wait for is cancelled, and the ones still unanswered after that are
 * refused.  No new ones are made once `freeing` is set. */
static void pool_release_bcalls(tw_threadpool_t *p)
{
    tw__thread_calls_forget(p->r, pool_bcall_match, p);
    while (p->bcalls_taken) {
        pool_bcall_t *bc = p->bcalls_taken;
        p->bcalls_taken = bc->next;
        bc->next = NULL;
        bc->p = NULL;
        pool_bcall_answer(bc, TW_FAIL(pool_failure(-ESHUTDOWN, "the thread pool is being freed")));
        pool_bcall_unref(bc); /* the queued call's reference */
    }
    for (;;) { /* a cancel may answer any of them: look again from the start */
        pool_bcall_t *bc = p->bcalls;
        while (bc && (!bc->d || bc->cancel_sent))
            bc = bc->next;
        if (!bc)
            break;
        bc->cancel_sent = true;
        tw_deferred_cancel(bc->d);
    }
    while (p->bcalls) { /* a paused Deferred, or fn itself is freeing the pool */
        pool_bcall_t *bc = p->bcalls;
        pool_bcall_unlink(p, bc);
        pool_bcall_answer(bc, TW_FAIL(pool_failure(-ESHUTDOWN, "the thread pool is being freed")));
    }
}

static void pool_free_now(tw_threadpool_t *p)
{
    if (p->dead)
        return; /* again, from a callback fired while freeing it */
    p->dead = true; /* released by the last pool_unbusy, once nothing is in flight */
    p->busy++;
    if (!p->stopped)
        pool_stop(p);
    pthread_mutex_lock(&p->lock);
    p->freeing = true;
    pool_wake_all(p);
    pthread_mutex_unlock(&p->lock);
    pool_release_bcalls(p);
    pthread_mutex_lock(&p->lock);
    while (p->threads > 0)
        pthread_cond_wait(&p->all_exited, &p->lock);
    pool_worker_t *z = pool_take_zombies(p);
    pthread_mutex_unlock(&p->lock);
    pool_join(z);
    /* The last results and the exit notice are on their way: they arrive as
     * the loop runs, in order with the calls the work made (or when the
     * reactor is freed, below). */
    if (p->trigger > 0)
        tw_reactor_remove_trigger(p->r, p->trigger);
    p->trigger = 0;
    if (p->r->pool == p)
        p->r->pool = NULL;
    pool_unbusy(p);
}

void tw_threadpool_free(tw_threadpool_t *p)
{
    if (!p)
        return;
    TW__ASSERT_OWNER(p->r);
    pool_free_now(p);
}

/* ---- the reactor's default pool -------------------------------------------------- */

/* The messages of every pool of r still queued: results first, then exit
 * notices (which must come after them). */
typedef struct pool_sweep {
    pool_work_t *results, **results_tail, *exits;
} pool_sweep_t;

static bool pool_sweep_match(tw_call_cb cb, void *arg, void *ctx)
{
    pool_sweep_t *sw = ctx;
    pool_work_t *w = arg;
    if (cb != pool_done)
        return false;
    if (w->kind == WORK_EXIT) {
        w->next = sw->exits;
        sw->exits = w;
    } else {
        w->next = NULL;
        *sw->results_tail = w;
        sw->results_tail = &w->next;
    }
    return true;
}

/* tw_reactor_free: free the default pool, then deliver what every pool
 * (freed already, as pools must be before their reactor) still had on its
 * way, rather than let the reactor drop it with its thread calls. */
static void pool_reactor_free(tw_reactor_t *r)
{
    if (r->pool)
        pool_free_now(r->pool);
    r->pool = NULL;
    pool_sweep_t sw = { 0 };
    sw.results_tail = &sw.results;
    tw__thread_calls_forget(r, pool_sweep_match, &sw);
    pool_work_t *lists[2] = { sw.results, sw.exits };
    for (int i = 0; i < 2; i++) {
        while (lists[i]) {
            pool_work_t *w = lists[i];
            lists[i] = w->next;
            pool_done(r, w);
        }
    }
}

tw_threadpool_t *tw_reactor_thread_pool(tw_reactor_t *r)
{
    TW__ASSERT_OWNER(r);
    /* Stopped by an earlier shutdown (or by hand): a new one, as Twisted
     * makes a new pool for each run.  Not while shutting down: work
     * submitted then is refused. */
    if (r->pool && r->pool->stopped && !r->stopping)
        pool_free_now(r->pool);
    if (!r->pool) {
        tw_threadpool_options_t o = { .max_threads = POOL_DEFAULT_MAX, .name = "tw-pool",
                                      .flags = TW_POOL_STOP_ON_SHUTDOWN };
        r->pool = tw_threadpool_new(r, &o);
    }
    return r->pool;
}

/* ---- tw_blocking_call_from_thread ------------------------------------------------ */

static void pool_bcall_unref(pool_bcall_t *bc)
{
    if (atomic_fetch_sub_explicit(&bc->refs, 1, memory_order_acq_rel) != 1)
        return;
    pthread_cond_destroy(&bc->cond);
    pthread_mutex_destroy(&bc->lock);
    free(bc);
}

/* Reactor thread: give the caller its outcome (or discard o if it has one). */
static void pool_bcall_answer(pool_bcall_t *bc, tw_outcome_t o)
{
    if (bc->done) { /* only the reactor thread writes it */
        tw_outcome_discard(o);
        return;
    }
    pthread_mutex_lock(&bc->lock);
    bc->out = o;
    bc->done = true;
    pthread_cond_signal(&bc->cond);
    pthread_mutex_unlock(&bc->lock);
}

static void pool_bcall_link(tw_threadpool_t *p, pool_bcall_t *bc)
{
    bc->prev = NULL;
    bc->next = p->bcalls;
    if (p->bcalls)
        p->bcalls->prev = bc;
    p->bcalls = bc;
}

static void pool_bcall_unlink(tw_threadpool_t *p, pool_bcall_t *bc)
{
    if (bc->prev)
        bc->prev->next = bc->next;
    else
        p->bcalls = bc->next;
    if (bc->next)
        bc->next->prev = bc->prev;
    bc->next = bc->prev = NULL;
    bc->p = NULL;
}

/* The reactor side is done with bc: answer, forget, drop its reference. */
static void pool_bcall_finish(pool_bcall_t *bc, tw_outcome_t o)
{
    if (bc->p)
        pool_bcall_unlink(bc->p, bc);
    pool_bcall_answer(bc, o);
    pool_bcall_unref(bc);
}

static tw_outcome_t pool_bcall_step(tw_outcome_t in, void *arg, void *unused)
{
    (void)unused;
    pool_bcall_t *bc = arg;
    tw_deferred_t *d = bc->d;
    bc->d = NULL;
    pool_bcall_finish(bc, in);
    tw_deferred_unref(d); /* the chain holds its own while it runs */
    return TW_OK(NULL, NULL);
}

static void pool_bcall_drop(void *arg, void *unused)
{
    (void)unused;
    pool_bcall_t *bc = arg; /* the Deferred went unfired: we no longer hold it */
    bc->d = NULL;
    pool_bcall_finish(bc, TW_FAIL(pool_failure(-ECANCELED, "the Deferred was dropped")));
}

static void pool_bcall_run(tw_reactor_t *r, void *arg)
{
    pool_bcall_t *bc = arg;
    if (bc->p)
        pool_bcall_link(bc->p, bc);
    tw_outcome_t o = bc->fn(r, bc->arg);
    if (o.kind == TW_OUTCOME_CHAIN && o.chain && !bc->done) {
        bc->d = o.chain; /* our reference */
        if (tw_deferred_add_callbacks(o.chain, pool_bcall_step, pool_bcall_step, bc, NULL,
                                      pool_bcall_drop) == 0)
            return; /* the step finishes (perhaps already has) */
        bc->d = NULL;
        tw_deferred_unref(o.chain);
        o = TW_FAIL(pool_failure(-ENOMEM, "out of memory waiting for a Deferred"));
    } else if (o.kind == TW_OUTCOME_CHAIN && !o.chain) {
        o = TW_FAIL(pool_failure(-ENOMEM, "out of memory"));
    }
    pool_bcall_finish(bc, o);
}

tw_outcome_t tw_blocking_call_from_thread(tw_reactor_t *r, tw_reactor_fn fn, void *arg)
{
    pool_worker_t *self = pool_self;
    /* A pool worker is never the reactor thread: only other threads read
     * r->owner (which tw_reactor_run sets). */
    if (!self && pthread_equal(pthread_self(), r->owner))
        return TW_FAIL(pool_failure(-EDEADLK, "blocking call from the reactor thread "
                                              "would deadlock"));
    pool_bcall_t *bc = calloc(1, sizeof *bc);
    if (!bc)
        return TW_FAIL(pool_failure(-ENOMEM, "out of memory"));
    if (pthread_mutex_init(&bc->lock, NULL) != 0) {
        free(bc);
        return TW_FAIL(pool_failure(-ENOMEM, "out of memory"));
    }
    if (pthread_cond_init(&bc->cond, NULL) != 0) {
        pthread_mutex_destroy(&bc->lock);
        free(bc);
        return TW_FAIL(pool_failure(-ENOMEM, "out of memory"));
    }
    atomic_init(&bc->refs, 2);
    bc->fn = fn;
    bc->arg = arg;

    int rc;
    tw_threadpool_t *p = self && self->p->r == r ? self->p : NULL;
    if (p) {
        /* Sent under the pool's lock, so that a free either sees it queued
         * (and takes it back) or has already refused it. */
        pthread_mutex_lock(&p->lock);
        if (p->freeing) {
            rc = -ESHUTDOWN;
        } else {
            bc->p = p;
            rc = tw_call_from_thread(r, pool_bcall_run, bc);
        }
        pthread_mutex_unlock(&p->lock);
    } else {
        rc = tw_call_from_thread(r, pool_bcall_run, bc);
    }
    if (rc < 0) {
        atomic_store(&bc->refs, 1);
        pool_bcall_unref(bc);
        return TW_FAIL(pool_failure(rc, rc == -ESHUTDOWN ? "the thread pool is being freed"
                                                         : "out of memory"));
    }
    pthread_mutex_lock(&bc->lock);
    while (!bc->done)
        pthread_cond_wait(&bc->cond, &bc->lock);
    tw_outcome_t o = bc->out;
    pthread_mutex_unlock(&bc->lock);
    pool_bcall_unref(bc);
    return o;
}
