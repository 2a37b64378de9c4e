/* tw_reactor.h -- the event loop: descriptors, delayed calls, triggers,
 * signals and calls from other threads.
 *
 * Lifetime and thread rules (read these first):
 *
 *  1. A reactor belongs to one thread: the thread that runs it (or, before it
 *     first runs, the thread that created it).  Every function here is
 *     reactor-thread-only, except tw_call_from_thread(), which any thread may
 *     call at any time while the reactor exists.
 *  2. There is no hidden global reactor: a program may run one reactor per
 *     thread.  Signals are process-wide, so a signal is delivered to every
 *     reactor that asked for it.
 *  3. Callbacks run in the reactor thread, one at a time, never from a signal
 *     handler.  Inside any callback it is safe to add or remove any watcher,
 *     schedule or cancel any delayed call (including the one running), stop
 *     the reactor, or close a descriptor after removing its watchers.
 *  4. Nothing the reactor calls is freed while it is running: a watcher
 *     removed during a batch of ready descriptors is not called again, even
 *     when its fd number is reused by a new watcher in the same batch.
 *  5. Time is monotonic (CLOCK_MONOTONIC), in nanoseconds, cached by the loop
 *     (refreshed when the wait for I/O returns); calls due at the same
 *     instant run in the order scheduled.
 *  6. Errors: functions return 0 or a negative code (tw_error.h).
 */
#ifndef TW_REACTOR_H
#define TW_REACTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tw_error.h"

typedef struct tw_reactor tw_reactor_t;

/* From a pointer to a struct's member back to the struct: how callbacks find
 * the object that embeds a tw_timer_t, tw_protocol_t, tw_factory_t, ... */
#define TW_CONTAINER_OF(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* ---- time ------------------------------------------------------------- */

/* Monotonic time and durations, in nanoseconds. */
typedef int64_t tw_time_t;

#define TW_NSEC(n) ((tw_time_t)(n))
#define TW_USEC(n) ((tw_time_t)(n) * 1000)
#define TW_MSEC(n) ((tw_time_t)(n) * 1000000)
#define TW_SEC(n)  ((tw_time_t)(n) * 1000000000)
#define TW_TIME_MAX INT64_MAX /* "never": a deadline that is never reached */

/* A duration from seconds as a double (Twisted's unit): negative and NaN give
 * 0, values too large to represent give TW_TIME_MAX. */
tw_time_t tw_seconds(double s);

/* The monotonic clock, read now. */
tw_time_t tw_time_now(void);

/* ---- the reactor ------------------------------------------------------ */

/* Create a reactor on the backend this program was linked with.  On first
 * use in the process, SIGPIPE is set to ignored if it was at its default, so
 * that a write to a closed socket returns EPIPE instead of killing the
 * process.  Returns 0 and stores the reactor in *out, or a negative code
 * (-ENOMEM, -EMFILE, ...).  The caller owns the reactor. */
int tw_reactor_new(tw_reactor_t **out);

/* Free a reactor that is not running.  Pending delayed calls, triggers, soon
 * calls and thread calls are dropped without being called (their arguments
 * are not freed: they belong to the caller); watchers are forgotten but their
 * descriptors are not closed.  The reactor stops receiving the signals it
 * asked for.  NULL is accepted. */
void tw_reactor_free(tw_reactor_t *r);

/* The backend linked into this program: "select", "poll", "epoll" or
 * "kqueue".  A static string. */
const char *tw_reactor_backend_name(void);

/* Flags for tw_reactor_run(). */
#define TW_RUN_DEFAULT 0u
#define TW_RUN_SIGNALS 1u /* SIGINT and SIGTERM stop the reactor (unless the
                           * application already asked for them with
                           * tw_reactor_on_signal); removed again on return */

/* Run until tw_reactor_stop().  Fires the startup triggers (before, during,
 * after; tw_reactor_call_when_running calls run with "after"), then loops,
 * each pass being one tw_reactor_iterate(); on stop it fires the "before
 * shutdown" triggers, keeps looping while Deferreds returned by shutdown
 * Deferred triggers are pending (up to the shutdown timeout), then fires the
 * "during" and "after" triggers and returns 0.
 * May be called again after it returns: each run is a new startup and each
 * stop a new shutdown.  Returns TW_EALREADY if the reactor is already running
 * or inside tw_reactor_iterate() (a nested run), or a negative code if the
 * backend fails. */
int tw_reactor_run(tw_reactor_t *r, unsigned flags);

/* Ask a running reactor to stop.  Returns at once: the current iteration
 * completes, then the shutdown triggers run and tw_reactor_run() returns.
 * Returns TW_ENOTRUNNING if the reactor is not running or already stopping. */
int tw_reactor_stop(tw_reactor_t *r);

/* True between the start of tw_reactor_run() and its return. */
bool tw_reactor_running(const tw_reactor_t *r);

/* One pass of the loop, for embedding in another event loop: wait at most
 * `timeout` for I/O (0: poll, -1: until something happens; shortened to the
 * next delayed call, and 0 when soon calls are queued), dispatch the ready
 * descriptors, then run the delayed calls that are due, then the soon calls.
 * Triggers do not run.  Returns the number of callbacks run, or a negative
 * code; TW_EALREADY when called from inside a callback of this reactor. */
int tw_reactor_iterate(tw_reactor_t *r, tw_time_t timeout);

/* The reactor's idea of now: the monotonic time cached at the start of this
 * iteration (read fresh when called outside the loop). */
tw_time_t tw_reactor_now(tw_reactor_t *r);

/* The reactor's read buffer, lent to a reader callback so that an idle
 * connection holds no buffer of its own: valid until the callback returns,
 * and shared by every transport of the reactor (reactor-thread-only).
 * Stores its size (TW_READ_BUFFER_SIZE) in *size.  NULL only when memory is
 * exhausted. */
#define TW_READ_BUFFER_SIZE 65536
void *tw_reactor_read_buffer(tw_reactor_t *r, size_t *size);

/* Called in the child after fork() to give it its own kernel state: the
 * backend is re-created with every watcher re-registered, and the thread
 * waker is replaced.  Thread calls queued but not yet run are dropped.
 * Returns 0 or a negative code. */
int tw_reactor_after_fork(tw_reactor_t *r);

/* ---- descriptors (Twisted's IReactorFDSet) ---------------------------- */

/* Called when `fd` is ready to read (or write).  An error or hang-up on the
 * descriptor also counts as ready, so that the read or write sees it.
 * Readiness is level-triggered: the callback is called again on the next
 * iteration while the condition holds. */
typedef void (*tw_io_cb)(tw_reactor_t *r, int fd, void *arg);

/* Watch `fd` for reading (writing) and call cb(r, fd, arg) when it is ready.
 * Replaces an earlier reader (writer) for the same fd.  The descriptor stays
 * the caller's: remove its watchers before closing it.  Returns 0, -EBADF
 * for a negative fd, -EINVAL for a NULL cb, TW_EFDSETSIZE on the select backend for fd >=
 * FD_SETSIZE, -EPERM on epoll for a regular file, or -ENOMEM. */
int tw_reactor_add_reader(tw_reactor_t *r, int fd, tw_io_cb cb, void *arg);
int tw_reactor_add_writer(tw_reactor_t *r, int fd, tw_io_cb cb, void *arg);

/* Stop watching `fd` for reading (writing).  Returns 0 (also when it was not
 * watched).  Safe from any callback, including the fd's own: a ready event
 * gathered before the removal is never delivered afterwards. */
int tw_reactor_remove_reader(tw_reactor_t *r, int fd);
int tw_reactor_remove_writer(tw_reactor_t *r, int fd);

/* Both of the above. */
void tw_reactor_remove_all(tw_reactor_t *r, int fd);

/* Whether fd has a reader (writer), and how many descriptors are watched. */
bool tw_reactor_is_reading(const tw_reactor_t *r, int fd);
bool tw_reactor_is_writing(const tw_reactor_t *r, int fd);
int tw_reactor_watched_count(const tw_reactor_t *r);

/* ---- delayed calls (Twisted's IDelayedCall) --------------------------- */

typedef struct tw_timer tw_timer_t;
typedef void (*tw_timer_cb)(tw_timer_t *t, void *arg);

/* A delayed call.  The fields are private; the struct is public so that it
 * can be embedded in the caller's own objects and started and cancelled with
 * no allocation.  Embedded timers belong to the caller, who may free one at
 * any time it is not active (or after cancelling it). */
struct tw_timer {
    uint32_t slot;      /* private: heap position, or UINT32_MAX when idle */
    uint32_t flags;     /* private */
    tw_reactor_t *r;    /* private */
    tw_timer_cb cb;     /* private */
    void *arg;          /* private */
    uint64_t seq;       /* private: scheduling order, breaks ties */
};

/* Prepare an embedded timer for reactor r, calling cb(t, arg) when it fires.
 * The timer is idle until started. */
void tw_timer_init(tw_timer_t *t, tw_reactor_t *r, tw_timer_cb cb, void *arg);

/* Schedule the timer `delay` from now (delay <= 0: due now; it runs with the
 * due timers of this iteration if scheduled from an I/O callback, or of the
 * next one if scheduled from a timer), or at the absolute monotonic time
 * `when`.  A timer
 * that is already active is moved.  Returns 0 or -ENOMEM. */
int tw_timer_start(tw_timer_t *t, tw_time_t delay);
int tw_timer_start_at(tw_timer_t *t, tw_time_t when);

/* Cancel an active timer; a timer that is not active is left alone.  For a
 * timer from tw_reactor_call_later(), this frees it. */
void tw_timer_cancel(tw_timer_t *t);

/* Twisted's reset(): fire `delay` from now instead.  Twisted's delay(): fire
 * `delta` later than currently scheduled.  Both return TW_ENOTACTIVE if the
 * timer already fired or was cancelled. */
int tw_timer_reset(tw_timer_t *t, tw_time_t delay);
int tw_timer_delay(tw_timer_t *t, tw_time_t delta);

/* Whether the timer is scheduled and has not yet fired (false inside its own
 * callback, unless the callback started it again). */
bool tw_timer_active(const tw_timer_t *t);

/* The deadline of an active timer (monotonic nanoseconds). */
tw_time_t tw_timer_deadline(const tw_timer_t *t);

/* Twisted's callLater / callAt, and sched's enter / enterabs.  The returned
 * timer is allocated and owned by the reactor: it is valid until its
 * callback returns (unless the callback started it again) or it is cancelled
 * with tw_timer_cancel(), and is freed by the reactor then; it may be reset
 * or delayed in between.  Returns NULL when
 * memory is exhausted. */
tw_timer_t *tw_reactor_call_later(tw_reactor_t *r, tw_time_t delay, tw_timer_cb cb, void *arg);
tw_timer_t *tw_reactor_call_at(tw_reactor_t *r, tw_time_t when, tw_timer_cb cb, void *arg);

/* Number of active delayed calls. */
int tw_reactor_timer_count(const tw_reactor_t *r);

/* The deadline of the earliest active delayed call, or TW_TIME_MAX. */
tw_time_t tw_reactor_next_timer(const tw_reactor_t *r);

/* Replace the reactor's clock: clock(arg) returns the time in nanoseconds,
 * never going backwards; NULL restores CLOCK_MONOTONIC.  The testing kit's
 * fake clock (tw_testing.h) is built on this.  Set it before scheduling
 * delayed calls: their deadlines are on the clock that was current. */
void tw_reactor_set_clock(tw_reactor_t *r, tw_time_t (*clock)(void *arg), void *arg);

/* ---- soon calls and system event triggers ----------------------------- */

typedef void (*tw_call_cb)(tw_reactor_t *r, void *arg);

/* Call cb(r, arg) soon: at the end of this iteration (after the due timers)
 * or, if made from a soon call, at the end of the next one, so soon calls
 * cannot starve I/O; the reactor does not block for I/O while soon calls
 * are queued.  Calls run in the order made.  Returns 0, -EINVAL (NULL cb)
 * or -ENOMEM. */
int tw_reactor_call_soon(tw_reactor_t *r, tw_call_cb cb, void *arg);

/* Call cb once the reactor is running: now-ish (as a soon call) if it is,
 * otherwise after the startup triggers of the next run.  Returns 0 or
 * -ENOMEM. */
int tw_reactor_call_when_running(tw_reactor_t *r, tw_call_cb cb, void *arg);

typedef enum tw_phase { TW_BEFORE = 0, TW_DURING = 1, TW_AFTER = 2 } tw_phase_t;
typedef enum tw_event { TW_STARTUP = 0, TW_SHUTDOWN = 1 } tw_event_t;

/* Twisted's addSystemEventTrigger: cb(r, arg) runs on every startup (start
 * of tw_reactor_run) or shutdown (after tw_reactor_stop) in `phase`;
 * triggers of one phase run in the order added, and all "before" triggers run
 * before all "during", before all "after".  Returns a positive id for
 * tw_reactor_remove_trigger(), or -ENOMEM / -EINVAL. */
int tw_reactor_add_trigger(tw_reactor_t *r, tw_phase_t phase, tw_event_t event,
                           tw_call_cb cb, void *arg);

/* Remove a trigger; safe from inside a trigger.  Returns 0 or -ENOENT. */
int tw_reactor_remove_trigger(tw_reactor_t *r, int id);

/* Twisted's addSystemEventTrigger('before', 'shutdown', fn) where fn returns
 * a Deferred: a graceful drain.  fn(r, arg) runs with the other "before
 * shutdown" triggers, on every shutdown, and returns a Deferred (the
 * reference is the reactor's) or NULL (nothing to wait for).  Once the
 * "before" phase has run, the loop keeps iterating -- descriptors, delayed
 * calls, soon calls, thread calls and signals all work -- until every
 * Deferred returned has fired, or the shutdown timeout has passed: the
 * pending ones are then cancelled (tw_deferred_cancel) and a warning is
 * logged.  Then the "during" and "after" triggers run and tw_reactor_run
 * returns.  A Deferred that fails is logged (warning, domain "reactor") and
 * its failure consumed: failures never block shutdown.  While waiting,
 * tw_reactor_running() is true and tw_reactor_stop() returns TW_ENOTRUNNING.
 * If the loop itself failed (tw_reactor_run returning a backend error), the
 * Deferreds are cancelled at once.  Startup triggers cannot wait.  Returns an
 * id for tw_reactor_remove_trigger(), or -EINVAL (NULL fn) or -ENOMEM. */
typedef struct tw_deferred *(*tw_shutdown_cb)(tw_reactor_t *r, void *arg);
int tw_reactor_add_shutdown_deferred(tw_reactor_t *r, tw_shutdown_cb fn, void *arg);

/* How long shutdown waits for the Deferreds above, counted from the end of
 * the "before" phase on the reactor's clock: default TW_SHUTDOWN_TIMEOUT;
 * TW_TIME_MAX waits for ever; 0 (or less) cancels them at once. */
#define TW_SHUTDOWN_TIMEOUT TW_SEC(30)
void tw_reactor_set_shutdown_timeout(tw_reactor_t *r, tw_time_t timeout);

/* ---- signals ---------------------------------------------------------- */

typedef void (*tw_signal_cb)(tw_reactor_t *r, int signo, void *arg);

/* Call cb(r, signo, arg) in the reactor thread, on a later iteration, after
 * `signo` is delivered to the process.  The signal handler itself only
 * records the signal and wakes the reactor; deliveries of one signal that
 * arrive before the reactor looks are coalesced into one call (as the kernel
 * does).  One callback per signal per reactor: a second call replaces the
 * first; cb == NULL removes it, and the process's earlier disposition for the
 * signal comes back when no reactor wants it.  SIGKILL and SIGSTOP are
 * refused with -EINVAL.  Returns 0, -EINVAL, or TW_ENOSIGSLOT when more than
 * 64 reactors watch signals at once. */
int tw_reactor_on_signal(tw_reactor_t *r, int signo, tw_signal_cb cb, void *arg);

/* ---- calls from other threads ----------------------------------------- */

/* Twisted's callFromThread: run cb(r, arg) in the reactor thread, on its next
 * iteration.  The one function here that any thread may call, at any time
 * while the reactor exists (not concurrently with tw_reactor_free).  Calls
 * are never lost and never run twice, and run in the order made: calls of
 * one thread in program order, and of different threads whenever one call
 * happened before the other (the caller of the second could know that the
 * first was made, e.g. after a join, a lock or an atomic flag).  Never
 * blocks on the reactor: the queue grows as needed.  When woken, the
 * reactor takes the whole queue at once and runs those calls;
 * calls made after that wait for the next wake-up, after other ready
 * descriptors have been served, so a flood cannot starve I/O.  Calls still
 * queued when the reactor is freed are dropped.  Returns 0, -EINVAL (NULL
 * cb) or -ENOMEM. */
int tw_call_from_thread(tw_reactor_t *r, tw_call_cb cb, void *arg);

#endif
