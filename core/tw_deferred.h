/* tw_deferred.h -- Twisted's Deferred for C: a result that is not there yet,
 * and a chain of callbacks that will process it.
 *
 * Lifetime and ownership rules (read these first):
 *
 *  1. A Deferred is reference-counted.  tw_deferred_new() and every function
 *     here that returns a tw_deferred_t * give the caller one reference;
 *     tw_deferred_ref() takes another, tw_deferred_unref() drops one.  The
 *     Deferred is freed when the last reference goes.  While its callbacks
 *     run, the chain holds a reference of its own, so a callback may drop
 *     the caller's last reference.  A pointer you keep is a reference you own.
 *  2. Whoever will fire a Deferred keeps a reference to it until it does
 *     (a timer, a lock's waiting list, the test that calls it back).  The
 *     references point downstream: a Deferred waiting on another (chaining)
 *     is kept alive by that other one, never the reverse, so no cycle forms:
 *     a chain that nobody can fire any more is simply freed.
 *  3. An outcome (tw_outcome_t) is a value (ptr plus the function that frees
 *     it, NULL when nothing is to be freed), a failure (tw_failure_t, owned),
 *     or -- returned by a callback only -- a Deferred to wait for (a
 *     reference).  Handing an outcome to a function here, or returning it
 *     from a callback, transfers everything in it.  A callback receives the
 *     current outcome and owns it: it returns it (passes it on), or frees it
 *     (tw_outcome_discard) or reuses it and returns another.  At every step
 *     exactly one party owns the result, and the last one frees it: the
 *     Deferred itself, when it is freed holding a value.
 *  4. Callbacks carry two bound arguments, given when they are added (the
 *     talk's "set_cb(f, *a)").  Two covers the common pairs (an object and a
 *     tag, a context and an index) at a fixed size with no allocation; more
 *     go in a struct.  With tw_deferred_add_callbacks() an args_free function
 *     can be given: it is called with both arguments exactly when the step
 *     ends without calling cb or eb (skipped, because the chain was on the
 *     other track, or dropped, because the Deferred was freed unfired), so
 *     arguments that a callback would free are never leaked.
 *  5. Unhandled failures are reported deterministically: when the last
 *     reference to a Deferred whose chain ended in a failure is dropped, the
 *     failure is logged (tw_log, error level, domain "deferred") and passed
 *     to the hook set with tw_deferred_set_unhandled_hook().  Twisted only
 *     reports at garbage collection.
 *  6. API misuse is caught loudly in debug builds (no NDEBUG): firing a
 *     Deferred twice, unpausing one that is not paused, firing with a
 *     Deferred.  Such calls log at error level, then abort(); release builds
 *     log, free what was passed and carry on (functions that return a code
 *     return -EALREADY or -EINVAL; a callback returning its own Deferred
 *     becomes a failure).
 *  7. Threads: a Deferred belongs to one thread (the reactor's, when it uses
 *     one); nothing here is thread-safe except the hook setter.  To fire a
 *     Deferred from another thread, send the call with tw_call_from_thread().
 *  8. Errors: functions that allocate return -ENOMEM (or NULL) when memory is
 *     exhausted; a function that fails that way calls none of its callbacks
 *     and takes nothing it was given (bound arguments stay the caller's).
 *
 * Failures made here have domain "deferred": cancelled (-ECANCELED),
 * timed out (-ETIMEDOUT), out of memory (-ENOMEM), queue underflow (-EBUSY),
 * and the first error of a list (the code of that error, which is its
 * cause).  Queue overflow is a return code of put (-ENOBUFS), not a failure.
 */
#ifndef TW_DEFERRED_H
#define TW_DEFERRED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tw_error.h"
#include "tw_reactor.h"

typedef struct tw_deferred tw_deferred_t;

/* Frees a value (free(3) itself fits). */
typedef void (*tw_free_cb)(void *ptr);

/* ---- outcomes ------------------------------------------------------------ */

typedef enum tw_outcome_kind {
    TW_OUTCOME_OK = 0,    /* a value: ptr, free */
    TW_OUTCOME_FAIL = 1,  /* a failure */
    TW_OUTCOME_CHAIN = 2, /* returned by a callback: wait for this Deferred */
    TW_OUTCOME_PENDING = 3, /* in a list result only: had not fired yet */
} tw_outcome_kind_t;

typedef struct tw_outcome {
    tw_outcome_kind_t kind;
    void *ptr;             /* TW_OUTCOME_OK: the value */
    tw_free_cb free;       /* TW_OUTCOME_OK: frees ptr; NULL: nothing to free */
    tw_failure_t *failure; /* TW_OUTCOME_FAIL: owned */
    tw_deferred_t *chain;  /* TW_OUTCOME_CHAIN: a reference */
} tw_outcome_t;

/* The three things a callback returns.  TW_FAIL(NULL) and TW_CHAIN(NULL)
 * stand for an out-of-memory failure, so a constructor that returned NULL
 * can be passed straight on: return TW_FAIL(tw_failure_new(...)). */
#define TW_OK(p, f) ((tw_outcome_t){ .kind = TW_OUTCOME_OK, .ptr = (p), .free = (f) })
#define TW_FAIL(fl) ((tw_outcome_t){ .kind = TW_OUTCOME_FAIL, .failure = (fl) })
#define TW_CHAIN(d) ((tw_outcome_t){ .kind = TW_OUTCOME_CHAIN, .chain = (d) })

/* Give up an outcome: free its value (with its free function), free its
 * failure, or drop its Deferred reference.  A pending outcome is left. */
void tw_outcome_discard(tw_outcome_t o);

/* ---- Deferreds ------------------------------------------------------------ */

/* A step of the chain.  `in` is the current outcome (TW_OUTCOME_OK or
 * TW_OUTCOME_FAIL, owned by the callback); a1, a2 are the arguments bound
 * when the step was added.  Returns the next outcome: a value continues on
 * the callback track, a failure on the errback track, and a Deferred makes
 * this chain wait for it and then continue with its result. */
typedef tw_outcome_t (*tw_deferred_cb)(tw_outcome_t in, void *a1, void *a2);

/* Frees the bound arguments of a step that never called its function. */
typedef void (*tw_deferred_args_free_cb)(void *a1, void *a2);

/* Asked to stop the operation behind d (tw_deferred_cancel).  It may fire d
 * (typically with its own failure); if it does not, d errbacks with the
 * cancelled failure.  Either way the operation must not fire d afterwards. */
typedef void (*tw_deferred_canceller_cb)(tw_deferred_t *d, void *arg);

/* A new, unfired Deferred; one reference for the caller.  `canceller` may be
 * NULL; `arg` is passed to it and stays the caller's (it must stay valid
 * while d may be cancelled, i.e. until d fires).  NULL on -ENOMEM. */
tw_deferred_t *tw_deferred_new(tw_deferred_canceller_cb canceller, void *arg);

/* A Deferred that has already fired with the value (ptr, free) -- Twisted's
 * succeed() -- or with the failure f (fail()).  Take ownership of what they
 * are given, even when they return NULL (-ENOMEM). */
tw_deferred_t *tw_deferred_succeed(void *ptr, tw_free_cb dtor);
tw_deferred_t *tw_deferred_fail(tw_failure_t *f);

/* Take or drop a reference.  ref returns d; unref accepts NULL.  Dropping the
 * last reference frees d: a value it holds is freed, a failure is reported as
 * unhandled (rule 5), pending steps are dropped (their args_free runs). */
tw_deferred_t *tw_deferred_ref(tw_deferred_t *d);
void tw_deferred_unref(tw_deferred_t *d);

/* Fire d: callback with the value (ptr, free), errback with the failure f,
 * or fire with an outcome (TW_OUTCOME_OK or TW_OUTCOME_FAIL).  The chain runs
 * now, before these return, as far as it can (up to a pause or a Deferred
 * that has no result yet).  Each takes what it is given.  A Deferred fires
 * once: a second call is API misuse (rule 6), except that the first call
 * after a cancel of a Deferred without canceller is quietly swallowed (its
 * value freed), as Twisted does.  Return 0 (or -EALREADY, -EINVAL, release
 * builds only). */
int tw_deferred_callback(tw_deferred_t *d, void *ptr, tw_free_cb dtor);
int tw_deferred_errback(tw_deferred_t *d, tw_failure_t *f);
int tw_deferred_fire(tw_deferred_t *d, tw_outcome_t o);

/* Add a step: cb runs if the chain is on the callback track when it gets
 * there, eb if on the errback track; a NULL function passes the outcome
 * through unchanged.  cb and eb share the bound arguments a1, a2; args_free
 * (may be NULL) is rule 4.  Steps run in the order added; if d has fired
 * and is not paused or waiting, the step runs before this returns.
 * Returns 0, or -ENOMEM (nothing was added or called). */
int tw_deferred_add_callbacks(tw_deferred_t *d, tw_deferred_cb cb, tw_deferred_cb eb,
                              void *a1, void *a2, tw_deferred_args_free_cb args_free);
int tw_deferred_add_callback(tw_deferred_t *d, tw_deferred_cb cb, void *a1, void *a2);
int tw_deferred_add_errback(tw_deferred_t *d, tw_deferred_cb eb, void *a1, void *a2);
int tw_deferred_add_both(tw_deferred_t *d, tw_deferred_cb fn, void *a1, void *a2);

/* Twisted's chainDeferred: when d reaches this point, fire `to` with its
 * outcome; d continues with NULL (a success).  The step holds a reference to
 * `to` until then.  Returns 0 or -ENOMEM. */
int tw_deferred_chain(tw_deferred_t *d, tw_deferred_t *to);

/* Stop running steps until as many unpauses as pauses were made.  Unpausing
 * a Deferred that is not paused is API misuse. */
void tw_deferred_pause(tw_deferred_t *d);
void tw_deferred_unpause(tw_deferred_t *d);

/* Twisted's cancel().  Unfired: call the canceller; if it did not fire d
 * (or there is none), errback with the cancelled failure (domain
 * "deferred", -ECANCELED), and without a canceller swallow the operation's
 * later fire.  Waiting on another Deferred (chaining): cancel that one.
 * Otherwise: nothing. */
void tw_deferred_cancel(tw_deferred_t *d);

/* Whether d has been fired (callback, errback, or cancel). */
bool tw_deferred_called(const tw_deferred_t *d);

/* The current result, borrowed, or NULL when there is none to look at: not
 * fired, paused with steps pending, waiting on another Deferred, or in a
 * step.  For tests (Twisted's successResultOf / failureResultOf). */
const tw_outcome_t *tw_deferred_result(const tw_deferred_t *d);

/* Called with each unhandled failure (borrowed for the call) after it is
 * logged; NULL removes the hook.  Process-wide; safe from any thread. */
typedef void (*tw_deferred_unhandled_cb)(const tw_failure_t *f, void *arg);
void tw_deferred_set_unhandled_hook(tw_deferred_unhandled_cb hook, void *arg);

/* ---- time ------------------------------------------------------------------ */

/* Twisted's addTimeout: if d has not fired `delay` from now, cancel it; a
 * cancelled failure that results becomes the timeout failure (domain
 * "deferred", -ETIMEDOUT, "timed out after X s", the cancelled failure as its
 * cause).  Covers the steps added before this call, none added after.  The
 * reactor's timer holds a reference to d until it fires or d does (then the
 * timer is cancelled).  Free the reactor only after: a timer dropped with the
 * reactor leaks its reference.  Returns 0 or -ENOMEM. */
int tw_deferred_add_timeout(tw_deferred_t *d, tw_reactor_t *r, tw_time_t delay);

/* Twisted's deferLater: a Deferred that fires `delay` from now with the
 * outcome of fn(TW_OK(NULL, NULL), a1, a2) (a NULL fn: with NULL); fn may
 * return a Deferred to wait for.  Cancelling it cancels the timer, and fn is
 * then never called (a1, a2 stay the caller's).  The timer holds a reference
 * until it fires (reactor rule as above).  NULL on -ENOMEM. */
tw_deferred_t *tw_defer_later(tw_reactor_t *r, tw_time_t delay, tw_deferred_cb fn,
                              void *a1, void *a2);

/* ---- lists ------------------------------------------------------------------ */

#define TW_DL_FIRE_ON_ONE_CALLBACK 1u /* fire with the first success */
#define TW_DL_FIRE_ON_ONE_ERRBACK  2u /* errback with the first failure */
#define TW_DL_CONSUME_ERRORS       4u /* members' chains go on with NULL after a failure */

/* What a list fires with; free it with tw_deferred_list_result_free (it is
 * delivered as TW_OK(res, tw_deferred_list_result_free)). */
typedef struct tw_deferred_list_result {
    size_t n;             /* number of Deferreds in the list */
    size_t index;         /* FIRE_ON_ONE_CALLBACK: the one that fired; else n */
    tw_outcome_t items[]; /* one per Deferred: OK, FAIL, or PENDING (owned) */
} tw_deferred_list_result_t;

void tw_deferred_list_result_free(void *res);

/* Twisted's DeferredList over ds[0..n-1] (the array and its references stay
 * the caller's; the list adds a step to each).  Fires when every member has
 * fired, with all outcomes; with FIRE_ON_ONE_CALLBACK, at the first success
 * instead (items[index]); with FIRE_ON_ONE_ERRBACK, errbacks at the first
 * failure with a "first error" failure whose cause is that failure.  An
 * empty list fires at once (never, with FIRE_ON_ONE_CALLBACK).
 *
 * Ownership: C cannot share a value as Python does, so the list takes what
 * it reports.  Until the list fires, a member's value moves into the result
 * and its chain goes on with NULL; a member's failure moves in too and its
 * chain goes on with a copy (still reported if unhandled), or with NULL under
 * CONSUME_ERRORS.  After the list fired, members' outcomes pass through
 * untouched (CONSUME_ERRORS still turns failures into NULL).  Values
 * collected before a first-error errback are freed then.  Cancelling the list
 * before it fires cancels every member.  NULL on -ENOMEM. */
tw_deferred_t *tw_deferred_list(tw_deferred_t *const *ds, size_t n, unsigned flags);

/* Twisted's gatherResults: all values (a list result whose items are all
 * TW_OUTCOME_OK) or the first failure (as FIRE_ON_ONE_ERRBACK).  Like
 * Twisted, the others are not cancelled on a failure: cancel them yourself if
 * their work is moot.  flags: 0 or TW_DL_CONSUME_ERRORS.  NULL on -ENOMEM. */
tw_deferred_t *tw_deferred_gather(tw_deferred_t *const *ds, size_t n, unsigned flags);

/* ---- synchronisation: DeferredLock, DeferredSemaphore, DeferredQueue -------- */

/* A semaphore of `tokens` (>= 1); a lock is a semaphore of one token.  acquire
 * returns a Deferred that fires (with the semaphore as a borrowed value) when
 * a token is held -- at once if one is free, else in FIFO order as tokens
 * are released.  Cancelling a waiting acquire removes it from the queue.
 * release gives a token back (releasing more than was acquired is API
 * misuse).  run acquires, then runs fn(in, a1, a2) as a step (in is the
 * semaphore, borrowed) and releases after its outcome, waiting for a Deferred
 * fn returns; the Deferred returned fires with fn's outcome.  free: waiting
 * acquires are errbacked ("the semaphore was freed"); free only when no
 * run() is still in progress, and never from inside one of its own steps.
 * new returns NULL on -ENOMEM or tokens < 1, acquire and run NULL on -ENOMEM. */
typedef struct tw_deferred_semaphore tw_deferred_semaphore_t;
typedef struct tw_deferred_semaphore tw_deferred_lock_t;

tw_deferred_semaphore_t *tw_deferred_semaphore_new(int tokens);
void tw_deferred_semaphore_free(tw_deferred_semaphore_t *s);
tw_deferred_t *tw_deferred_semaphore_acquire(tw_deferred_semaphore_t *s);
void tw_deferred_semaphore_release(tw_deferred_semaphore_t *s);
tw_deferred_t *tw_deferred_semaphore_run(tw_deferred_semaphore_t *s, tw_deferred_cb fn,
                                         void *a1, void *a2);
int tw_deferred_semaphore_tokens(const tw_deferred_semaphore_t *s); /* free now */
size_t tw_deferred_semaphore_waiting(const tw_deferred_semaphore_t *s);

tw_deferred_lock_t *tw_deferred_lock_new(void);
void tw_deferred_lock_free(tw_deferred_lock_t *l);
tw_deferred_t *tw_deferred_lock_acquire(tw_deferred_lock_t *l);
void tw_deferred_lock_release(tw_deferred_lock_t *l);
tw_deferred_t *tw_deferred_lock_run(tw_deferred_lock_t *l, tw_deferred_cb fn, void *a1,
                                    void *a2);
bool tw_deferred_lock_locked(const tw_deferred_lock_t *l);

/* Twisted's DeferredQueue.  size: how many values may wait in the queue;
 * backlog: how many gets may wait for a value (TW_DQ_UNLIMITED: no limit).
 * put hands (ptr, free) to the oldest waiting get, else queues it; returns 0,
 * -ENOBUFS when `size` values are queued (QueueOverflow) or -ENOMEM, and then
 * the value stays the caller's.  get returns a Deferred that fires with the
 * next value (ownership moves to its chain): at once if one is queued; when
 * `backlog` gets already wait, it has already failed (QueueUnderflow: domain
 * "deferred", -EBUSY).  Cancelling a waiting get removes it.  free: queued
 * values are freed, waiting gets errbacked with the cancelled failure.  NULL
 * on -ENOMEM. */
#define TW_DQ_UNLIMITED SIZE_MAX
typedef struct tw_deferred_queue tw_deferred_queue_t;

tw_deferred_queue_t *tw_deferred_queue_new(size_t size, size_t backlog);
void tw_deferred_queue_free(tw_deferred_queue_t *q);
int tw_deferred_queue_put(tw_deferred_queue_t *q, void *ptr, tw_free_cb dtor);
tw_deferred_t *tw_deferred_queue_get(tw_deferred_queue_t *q);
size_t tw_deferred_queue_pending(const tw_deferred_queue_t *q); /* values queued */
size_t tw_deferred_queue_waiting(const tw_deferred_queue_t *q); /* gets waiting */

#endif
