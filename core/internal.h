/* internal.h -- the reactor's private state, shared by the files of core/.
 * Never installed. */
#ifndef TW_INTERNAL_H
#define TW_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "tw_log.h"
#include "tw_reactor.h"

#define TW__NSIG 65 /* signal numbers 1..64 */

#ifndef container_of
#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))
#endif

/* Debug builds check that reactor-thread-only functions are called on the
 * reactor's thread.  Release builds (-DNDEBUG) check nothing. */
#ifndef NDEBUG
#define TW__ASSERT_OWNER(r) tw__assert_owner((r), __func__)
void tw__assert_owner(const tw_reactor_t *r, const char *fn);
#else
#define TW__ASSERT_OWNER(r) ((void)0)
#endif

/* What the core knows about one descriptor; the table is indexed by fd. */
typedef struct tw__watch {
    tw_io_cb rcb, wcb;
    void *rarg, *warg;
    uint32_t mask; /* TW__READ | TW__WRITE currently registered */
    uint32_t gen;  /* bumped on every removal: stale ready events are dropped */
} tw__watch_t;

/* One entry of the timer heap (16 bytes, four to a cache line): the deadline
 * lives in the array, so sifting only touches a timer to update its slot, or
 * to read its sequence number when two deadlines are equal. */
typedef struct tw__hent {
    tw_time_t due;
    tw_timer_t *t;
} tw__hent_t;

typedef struct tw__call {
    tw_call_cb cb;
    void *arg;
    uint64_t seq; /* thread calls: the order they were made in, across threads */
} tw__call_t;

/* A growable FIFO of calls (soon calls, thread calls). */
typedef struct tw__callq {
    tw__call_t *v;
    size_t n, cap;
} tw__callq_t;

/* Calls from other threads: one shard per producer thread (threads are
 * spread over the shards round-robin), each on cache lines of its own (the
 * reactor is allocated 64-byte aligned), so producers rarely share a lock and
 * the loop's bookkeeping never bounces the lines they use on every call.  A
 * sequence number from one counter orders calls across shards. */
#define TW__XQ_SHARDS 4
typedef struct tw__xq {
    _Alignas(64) pthread_mutex_t lock;
    tw__callq_t q; /* guarded by lock */
    int pending;   /* guarded by lock: the loop will look at q without a wake-up */
} tw__xq_t;

typedef struct tw__trigger {
    int id;
    uint8_t phase, event, dead;
    tw_call_cb cb;
    void *arg;
    tw_shutdown_cb dcb; /* set instead of cb: a "before shutdown" Deferred trigger */
} tw__trigger_t;

typedef struct tw__sighandler {
    tw_signal_cb cb;
    void *arg;
} tw__sighandler_t;

struct tw_reactor {
    /* backend */
    void *be;
    tw__fired_t *fired;
    int fired_cap;

    void *rbuf;           /* lent to readers: tw_reactor_read_buffer */

    /* descriptors */
    tw__watch_t *fds;
    int fds_cap;
    int nwatched;

    /* time and timers */
    tw_time_t now;
    tw_time_t (*clock)(void *arg); /* NULL: CLOCK_MONOTONIC */
    void *clock_arg;
    int in_loop;          /* inside iterate: `now` is fresh enough */
    tw__hent_t *heap;
    uint32_t heap_n, heap_cap;
    uint64_t timer_seq;
    tw_timer_t *timer_free; /* cache of reactor-owned timers */
    uint32_t timer_free_n;

    /* soon calls: `soon` collects, `soon_run` is being run */
    tw__callq_t soon, soon_run;

    /* triggers */
    tw__trigger_t *trig;
    int trig_n, trig_cap, trig_next_id, trig_firing;
    tw__callq_t when_running;
    tw_time_t shutdown_timeout; /* how long shutdown waits for Deferreds */
    int draining;               /* waiting for them: the loop runs while stopping */

    /* run state */
    int running, stopping;
    pthread_t owner;

    /* waker: thread calls and signals */
    int wake_rfd, wake_wfd;   /* eventfd: both the same fd; wfd read by producers */
    tw__callq_t tq_run[TW__XQ_SHARDS]; /* thread calls being run */
    int tq_poll;              /* the last look found calls: look again next time */
    int tq_taken;             /* the queues were taken during this iteration */
    tw__xq_t xq[TW__XQ_SHARDS];
    struct {
        _Alignas(64) _Atomic uint64_t next; /* taken under a shard's lock */
    } xseq;

    /* signals */
    int sig_slot; /* index in the process-wide table, or -1 */
    tw__sighandler_t sig[TW__NSIG];
    int run_signals; /* signals installed by TW_RUN_SIGNALS: bitmask SIGINT/SIGTERM */
    void (*chld_hook)(tw_reactor_t *r); /* process.c's reaper, run on SIGCHLD */

    /* modules that keep per-reactor state; each sets its own finaliser, so
     * a program that does not use one does not link it */
    struct tw_threadpool *pool;           /* the default thread pool, or NULL */
    void (*pool_free)(tw_reactor_t *r);   /* threadpool.c: stop and join it */
    void *procs;                          /* process.c's state, or NULL */
    void (*procs_free)(tw_reactor_t *r);  /* process.c: forget the children */
};

/* timer.c */
void tw__timers_init(tw_reactor_t *r);
void tw__timers_fini(tw_reactor_t *r);
int tw__timers_run(tw_reactor_t *r);          /* run due timers, return count */
tw_time_t tw__timers_next(const tw_reactor_t *r); /* earliest deadline or TW_TIME_MAX */
void tw__update_time(tw_reactor_t *r);

/* calls.c (queues, waker, thread calls) */
int tw__callq_push(tw__callq_t *q, tw_call_cb cb, void *arg);
void tw__callq_free(tw__callq_t *q);
void tw__thread_calls_init(tw_reactor_t *r);
void tw__thread_calls_fini(tw_reactor_t *r);
int tw__thread_calls_run(tw_reactor_t *r);   /* take and run what was queued */
/* Make every queued thread call not yet run for which match(cb, arg, ctx)
 * is true do nothing instead (match may take over arg; it runs under a
 * shard's lock, so it must not call tw_call_from_thread).  For a module
 * about to free what its queued calls point to (threadpool.c).  Reactor
 * thread only. */
void tw__thread_calls_forget(tw_reactor_t *r, bool (*match)(tw_call_cb cb, void *arg, void *ctx),
                             void *ctx);
int tw__waker_open(tw_reactor_t *r);
void tw__waker_close(tw_reactor_t *r);
void tw__waker_wake(int wfd);                 /* async-signal-safe */
void tw__waker_drain(int rfd);

/* thread_queue.c: condition variables on CLOCK_MONOTONIC where the
 * platform has pthread_condattr_setclock, and a wait until a deadline on
 * tw_time_now()'s clock (TW_TIME_MAX: no deadline).  The wait returns 0
 * or ETIMEDOUT (and may wake spuriously). */
int tw__cond_init(pthread_cond_t *c);
int tw__cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, tw_time_t deadline);

/* signal.c */
int tw__signals_dispatch(tw_reactor_t *r);   /* run pending signal callbacks */
void tw__signals_release(tw_reactor_t *r);    /* forget every signal of r */
void tw__signals_rebind(tw_reactor_t *r);     /* the waker changed (after fork) */
/* Run hook(r) on SIGCHLD, before the application's own SIGCHLD callback (if
 * any), which keeps working beside it; NULL removes it.  The reactor watches
 * SIGCHLD while either wants it.  Returns 0 or a code as tw_reactor_on_signal. */
int tw__signals_set_chld_hook(tw_reactor_t *r, void (*hook)(tw_reactor_t *r));
void tw__sigpipe_ignore_once(void);

#endif
