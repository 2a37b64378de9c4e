/* tw_thread.h -- the thread bridge: a thread pool, Deferreds fired by work
 * done in other threads, calls from worker threads into the reactor thread,
 * and a bounded blocking queue for the owner-thread pattern.
 *
 * Twisted's reactor.callInThread / deferToThread / blockingCallFromThread and
 * twisted.python.threadpool, for C.  (tw_call_from_thread, the other half of
 * the bridge, is in tw_reactor.h.)
 *
 * Lifetime, ownership and thread rules (read these first):
 *
 *  1. A pool belongs to one reactor (its Deferreds fire in that reactor's
 *     thread).  tw_threadpool_new(), _resize(), _stop(), _free() and
 *     tw_defer_to_thread() are reactor-thread-only; tw_call_in_thread() and
 *     tw_threadpool_stats() may be called from any thread, workers included,
 *     until tw_threadpool_free() is called (its own workers: until it
 *     returns; they are refused with -ESHUTDOWN meanwhile).
 *     Every reactor has a default pool, made on first use
 *     (tw_reactor_thread_pool(); 0..10 threads named "tw-pool-N", like
 *     Twisted's), stopped by the reactor's shutdown and freed with it.
 *     Free every other pool before its reactor.
 *  2. Threads are started on demand: a submission with no idle worker starts
 *     one if fewer than max run.  min threads are started at once and kept;
 *     threads above min exit after idle_timeout without work.
 *  3. Work functions run in a worker thread and must not call reactor-thread
 *     functions; they talk to the reactor with tw_call_from_thread() or
 *     tw_blocking_call_from_thread().  Their argument belongs to the caller
 *     and must stay valid until the work has run (or been cancelled: the
 *     Deferred then fires with a failure and the function never runs).
 *     A result travels back through the same queue as tw_call_from_thread
 *     calls: calls a work function made arrive before its Deferred fires.
 *     Workers block asynchronous signals (the reactor thread handles them).
 *  4. Stopping a pool (tw_threadpool_stop, or the reactor's shutdown for the
 *     pools it owns or was given with TW_POOL_STOP_ON_SHUTDOWN): no new work
 *     is accepted (-ESHUTDOWN); work already running finishes and its
 *     Deferreds fire; queued work that has not started is, by default,
 *     cancelled -- its Deferred errbacks with domain "thread", -ECANCELED
 *     ("thread pool stopped") and a tw_call_in_thread function is dropped
 *     (its drop callback, if any, runs) -- or, with TW_POOL_DRAIN, run to
 *     the end.  At reactor shutdown the loop keeps serving until the pool's
 *     running (and, with TW_POOL_DRAIN, queued) work is done, bounded by the
 *     reactor's shutdown timeout (tw_reactor_set_shutdown_timeout), so the
 *     results reach their Deferreds.  tw_threadpool_free() stops the pool,
 *     waits for running work (and, with TW_POOL_DRAIN, queued work) and joins
 *     every thread: it blocks.  The results of that last work still reach
 *     their Deferreds, in order, as the loop runs (or, at the latest, while
 *     tw_reactor_free() runs).  A worker blocked in
 *     tw_blocking_call_from_thread() is let go: a call not yet run fails with
 *     domain "thread", -ESHUTDOWN; a Deferred it waits for is cancelled.
 *  5. Errors: functions return 0 or a negative code (tw_error.h); failures
 *     made here have domain "thread".
 */
#ifndef TW_THREAD_H
#define TW_THREAD_H

#include <stdbool.h>
#include <stddef.h>

#include "tw_deferred.h"
#include "tw_reactor.h"

typedef struct tw_threadpool tw_threadpool_t;

/* Pool flags. */
#define TW_POOL_DRAIN            1u /* on stop, run queued work instead of cancelling it */
#define TW_POOL_STOP_ON_SHUTDOWN 2u /* the reactor's shutdown stops this pool (the
                                     * default pool always has it) */

typedef struct tw_threadpool_options {
    int min_threads;       /* kept running (default 0) */
    int max_threads;       /* at most (default 10; must be >= 1 and >= min) */
    const char *name;      /* thread name prefix, copied; threads are
                            * "<name>-<n>", cut to 15 bytes (default "tw-pool") */
    tw_time_t idle_timeout; /* threads above min exit after this long idle
                             * (0: default 10 s; < 0: EINVAL) */
    size_t stack_size;     /* 0: the system default; at least PTHREAD_STACK_MIN */
    unsigned flags;        /* TW_POOL_* */
} tw_threadpool_options_t;

/* A new pool for reactor r (NULL options: all defaults).  Returns NULL with
 * errno set (ENOMEM, EINVAL for inconsistent sizes, or why a min thread
 * could not start). */
tw_threadpool_t *tw_threadpool_new(tw_reactor_t *r, const tw_threadpool_options_t *opt);

/* The reactor's default pool (made on first call; NULL on -ENOMEM).  Once
 * it has been stopped (by a shutdown, or by hand), the next call outside a
 * shutdown frees it (waiting for work that outlived the shutdown timeout)
 * and makes a new one, so that each run of the reactor has a pool; during a
 * shutdown the stopped pool is returned, and work for it is refused. */
tw_threadpool_t *tw_reactor_thread_pool(tw_reactor_t *r);

/* Change the sizes (Twisted's adjustPoolsize / suggestThreadPoolSize).
 * Growing min starts threads now; shrinking max lets busy threads finish
 * their work and exit.  -EINVAL for min < 0, max < 1 or min > max. */
int tw_threadpool_resize(tw_threadpool_t *p, int min_threads, int max_threads);

/* Stop accepting work; cancel (or, with TW_POOL_DRAIN, finish) what is
 * queued, as in rule 4 (the cancelled Deferreds errback, and drop functions
 * run, before this returns).  Does not block; threads exit as they finish.
 * Returns a Deferred (a reference) that fires with NULL in the reactor
 * thread once every thread has exited, after the Deferreds of the work that
 * ran (through the reactor's queue: not before this returns, even when no
 * thread was running), or NULL on -ENOMEM (the pool is stopped all the
 * same).  Each call returns a Deferred of its own; once every thread has
 * exited, one that has already fired. */
tw_deferred_t *tw_threadpool_stop(tw_threadpool_t *p);

/* Stop (if not stopped), wait for running work, join the threads, free.
 * Blocks the calling (reactor) thread until running work returns. */
void tw_threadpool_free(tw_threadpool_t *p);

typedef struct tw_threadpool_stats {
    int threads;    /* started and not exited */
    int idle;       /* waiting for work */
    size_t queued;  /* submitted, not started */
    size_t running; /* running now */
    bool stopped;
} tw_threadpool_stats_t;

/* A snapshot of the pool's counters.  Any thread. */
void tw_threadpool_stats(tw_threadpool_t *p, tw_threadpool_stats_t *st);

/* ---- running work ------------------------------------------------------ */

/* Work for tw_defer_to_thread: runs in a worker; returns a value
 * (TW_OK(ptr, free)) or a failure (TW_FAIL(f)), never TW_CHAIN. */
typedef tw_outcome_t (*tw_thread_fn)(void *arg);

/* Twisted's deferToThread: run fn(arg) in a worker of pool p (NULL: the
 * reactor's default pool) and return a Deferred (a reference) that fires in
 * the reactor thread with fn's outcome.  Cancelling it before fn has started
 * takes the work off the queue (fn never runs); after, fn runs to the end
 * and its outcome is freed when it arrives.  Either way the Deferred errbacks
 * at once with the usual cancel failure (domain "deferred", -ECANCELED), so
 * tw_deferred_add_timeout works on it.  Returns NULL with
 * errno ENOMEM, ESHUTDOWN (the pool is stopped), EINVAL (NULL fn, or a pool
 * of another reactor), or pthread_create's error when the pool has no
 * thread and none could be started. */
tw_deferred_t *tw_defer_to_thread(tw_reactor_t *r, tw_threadpool_t *p, tw_thread_fn fn,
                                  void *arg);

/* Twisted's callInThread: run fn(arg) in a worker, no result.  If the pool
 * is stopped before fn starts, drop(arg) runs instead (in the thread that
 * stops it; drop may be NULL).  Any thread, workers included.  Returns 0,
 * -ESHUTDOWN, -ENOMEM, -EINVAL (NULL fn), or pthread_create's error when the
 * pool has no thread and none could be started. */
int tw_call_in_thread(tw_threadpool_t *p, void (*fn)(void *arg), void *arg,
                      void (*drop)(void *arg));

/* Function run in the reactor thread for tw_blocking_call_from_thread.  It
 * may return a value, a failure, or TW_CHAIN(d): the caller then waits for
 * d to fire. */
typedef tw_outcome_t (*tw_reactor_fn)(tw_reactor_t *r, void *arg);

/* Twisted's blockingCallFromThread: from a thread that is not the reactor's,
 * run fn(r, arg) in the reactor thread and wait for its outcome (when fn
 * returns a Deferred, for that Deferred's).  The outcome is returned to the
 * caller, who owns it (tw_outcome_discard frees it).  Called from the
 * reactor thread itself it would deadlock, so it refuses at once: a failure
 * of domain "thread", -EDEADLK.  -ENOMEM also comes back as a failure, and
 * -ESHUTDOWN when the caller is a worker of a pool being freed (rule 4).
 * The call waits while the reactor is not running (it runs when it next
 * iterates); a call from a thread other than a pool's that is still queued
 * when the reactor is freed never returns. */
tw_outcome_t tw_blocking_call_from_thread(tw_reactor_t *r, tw_reactor_fn fn, void *arg);

/* ---- a bounded blocking queue (the owner-thread pattern) ---------------
 *
 * A FIFO of void * items shared by any number of threads: put blocks while
 * the queue is full, get while it is empty, each for at most a timeout.
 * Everything here is thread-safe.  Items are the callers': the queue never
 * frees them (tw_thread_queue_free hands leftovers to a callback).
 */

typedef struct tw_thread_queue tw_thread_queue_t;

#define TW_WAIT_FOREVER ((tw_time_t)-1)

/* A queue holding at most capacity items (>= 1).  NULL with errno set. */
tw_thread_queue_t *tw_thread_queue_new(size_t capacity);

/* Free a queue nobody uses any more; leftover(item) for each item still in
 * it (leftover may be NULL). */
void tw_thread_queue_free(tw_thread_queue_t *q, void (*leftover)(void *item));

/* Add item, waiting at most timeout (0: do not wait; TW_WAIT_FOREVER) for
 * room.  Returns 0, -ETIMEDOUT (full; 0 timeout: -EAGAIN), or -EPIPE once
 * the queue is closed (also when it is closed while waiting). */
int tw_thread_queue_put(tw_thread_queue_t *q, void *item, tw_time_t timeout);

/* Take the oldest item into *item, waiting at most timeout for one.
 * Returns 0, -ETIMEDOUT (empty; 0 timeout: -EAGAIN), or -EPIPE when the
 * queue is closed and empty (items put before close are still returned). */
int tw_thread_queue_get(tw_thread_queue_t *q, void **item, tw_time_t timeout);

/* Close: wake every waiter; puts fail with -EPIPE, gets drain what is left. */
void tw_thread_queue_close(tw_thread_queue_t *q);

/* Items in the queue now. */
size_t tw_thread_queue_length(tw_thread_queue_t *q);

#endif
