/* tw_task.h -- Twisted's twisted.internet.task for C: LoopingCall (call a
 * function every interval, on a fixed grid) and Cooperator (run many
 * long-running jobs a step at a time, round-robin, without starving I/O).
 *
 * Lifetime and ownership rules (read these first):
 *
 *  1. Everything here is reactor-thread-only, like the reactor it uses.  Free
 *     a cooperator (and let every looping call stop) before freeing its
 *     reactor: they hold embedded timers of that reactor.
 *  2. A tw_looping_call_t is embedded and owned by the caller.  It may be
 *     freed (or initialised again) whenever it is not running: before
 *     start, after stop() returned, or in a callback of the Deferred that
 *     start() returned; never from inside its own function.
 *  3. start() gives the caller a reference to a Deferred (tw_deferred.h rule
 *     1); the loop keeps one of its own until it fires that Deferred: with
 *     NULL when the loop is stopped, or with a failure when the function
 *     fails (or, rarely, -ENOMEM scheduling the next call).  The loop does
 *     not touch the tw_looping_call_t after firing it.
 *  4. A cooperator is allocated by tw_cooperator_new() and owned by the
 *     caller until tw_cooperator_free(), which stops its unfinished tasks
 *     first.  Freeing it from inside one of its steps or completion callbacks
 *     is allowed: the memory goes when the cooperator's own frame unwinds.
 *  5. A task (tw_task_t) is reference-counted.  tw_cooperator_cooperate()
 *     gives the caller one reference (tw_task_unref drops it; the task goes on
 *     running); the cooperator holds another until the task finishes.  A
 *     finished task stays valid while referenced and answers every call.
 *  6. A task's `arg` belongs to the task from a successful cooperate() on:
 *     arg_free(arg) (may be NULL) runs exactly once, when the task finishes
 *     (done, failed or stopped) -- after its completion Deferreds have fired,
 *     and never while its step is running (a step that stops its own task
 *     sees arg freed after it returns).  When cooperate() or coiterate()
 *     fails (-ENOMEM), arg stays the caller's.
 *  7. Completion Deferreds (tw_task_when_done, tw_coiterate) are references
 *     the caller owns.  Each fires once: with NULL (no value) when the step
 *     returns TW_TASK_DONE, or with a failure of domain "task": the step's
 *     code, or -ECANCELED ("task stopped", "cooperator stopped").  A failure
 *     nobody handles is reported by the Deferred machinery (tw_deferred.h
 *     rule 5).  Cancelling one of them only detaches it; the task goes on.
 *  8. Errors: functions return 0 or a negative code; constructors NULL on
 *     -ENOMEM.  Failures made here have domain "task".
 */
#ifndef TW_TASK_H
#define TW_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tw_deferred.h"
#include "tw_reactor.h"

/* ---- LoopingCall ------------------------------------------------------------ */

typedef struct tw_looping_call tw_looping_call_t;

/* The repeated function.  Returns 0 to go on, or a negative code to end the
 * loop: the Deferred then errbacks with a failure (domain "task", that code).
 * It may call tw_looping_call_stop(lc): the Deferred fires (with NULL) right
 * after it returns.  tw_looping_call_count(lc) tells how many intervals
 * elapsed since the previous call. */
typedef int (*tw_looping_call_cb)(tw_looping_call_t *lc, void *arg);

/* Fields are private; the struct is public so it can be embedded. */
struct tw_looping_call {
    tw_timer_t timer;      /* private */
    tw_reactor_t *r;       /* private */
    tw_looping_call_cb fn; /* private */
    void *arg;             /* private */
    tw_deferred_t *d;      /* private: fired when the loop ends */
    tw_time_t interval;    /* private */
    tw_time_t start;       /* private: the grid's origin */
    int64_t last;          /* private: grid index of the previous call */
    uint64_t count;        /* private */
    bool running, in_call; /* private */
};

/* Prepare lc to call fn(lc, arg) on reactor r.  Idle until started. */
void tw_looping_call_init(tw_looping_call_t *lc, tw_reactor_t *r, tw_looping_call_cb fn,
                          void *arg);

/* Twisted's LoopingCall.start: call fn every `interval`, at start + k *
 * interval for k = 1, 2, ... (and at once, before this returns, if `now`).
 * Times are on a fixed grid: a late call does not shift the later ones, and
 * when intervals were missed (a blocked loop, a slow fn, a jumping clock)
 * fn is called once, with tw_looping_call_count() > 1, never in a burst.
 * interval 0: once per reactor iteration (a zero-delay timer), count always
 * 1 (with a fake clock, step it with tw_reactor_iterate(): like Twisted's
 * Clock, tw_fake_clock_advance() would never return).  Returns the
 * Deferred of rule 3 (already fired if fn ended the loop in the call made
 * `now`), or NULL when lc is running or inside its fn, interval < 0, or
 * -ENOMEM. */
tw_deferred_t *tw_looping_call_start(tw_looping_call_t *lc, tw_time_t interval, bool now);

/* Stop calling fn; the Deferred fires with NULL before this returns (after
 * fn returns, if called from inside fn).  Returns 0, or -EALREADY when lc is
 * not running. */
int tw_looping_call_stop(tw_looping_call_t *lc);

/* True from start() until stop() or the end of the loop. */
bool tw_looping_call_running(const tw_looping_call_t *lc);

/* Inside fn: intervals elapsed since the previous call (Twisted's withCount),
 * >= 1; 1 when on time.  0 before the first call. */
uint64_t tw_looping_call_count(const tw_looping_call_t *lc);

/* ---- Cooperator ----------------------------------------------------------- */

typedef struct tw_cooperator tw_cooperator_t;
typedef struct tw_task tw_task_t;

/* A step does one small unit of work and returns TW_TASK_MORE (call me
 * again), TW_TASK_DONE (finished), or a negative code (failed). */
#define TW_TASK_DONE 0
#define TW_TASK_MORE 1
typedef int (*tw_task_step_cb)(void *arg);

typedef enum tw_task_state {
    TW_TASK_STATE_RUNNING = 0, /* will be stepped */
    TW_TASK_STATE_PAUSED = 1,  /* paused more times than resumed */
    TW_TASK_STATE_DONE = 2,    /* its step returned TW_TASK_DONE */
    TW_TASK_STATE_FAILED = 3,  /* its step returned an error */
    TW_TASK_STATE_STOPPED = 4, /* tw_task_stop, or its cooperator stopped */
} tw_task_state_t;

/* How long a burst of steps may last: 10 ms, as Twisted's _Timer. */
#define TW_COOPERATOR_BUDGET TW_MSEC(10)

/* A cooperator on reactor r.  It steps its running tasks in bursts, one step
 * per task in turn (round-robin, resuming where the last burst ended), until
 * the burst has lasted its budget (measured on the real monotonic clock, at
 * least one step per burst).  Between bursts the reactor does one iteration:
 * the next burst is a timer 1 ns ahead (Twisted's _EPSILON), so I/O is
 * served between bursts, and with a fake clock each tw_fake_clock_advance()
 * of >= 1 ns runs exactly one burst.  NULL on -ENOMEM. */
tw_cooperator_t *tw_cooperator_new(tw_reactor_t *r);

/* Stop (as tw_cooperator_stop) and free.  NULL is accepted.  Rule 4. */
void tw_cooperator_free(tw_cooperator_t *c);

/* The burst budget (default TW_COOPERATOR_BUDGET); 0: one step per burst. */
void tw_cooperator_set_budget(tw_cooperator_t *c, tw_time_t budget);

/* Twisted's Cooperator.stop: every unfinished task, paused ones included,
 * is stopped ("cooperator stopped", -ECANCELED); tasks added later are stopped
 * at once.  A stopped cooperator cannot be restarted. */
void tw_cooperator_stop(tw_cooperator_t *c);

/* Whether c has not been stopped. */
bool tw_cooperator_running(const tw_cooperator_t *c);

/* Unfinished tasks (running or paused). */
size_t tw_cooperator_task_count(const tw_cooperator_t *c);

/* Twisted's cooperate(): run step(arg) as a task of c.  The first step runs
 * in the next burst, never before this returns.  Returns the task (rule 5;
 * arg: rule 6), already stopped if c is stopped, or NULL on -ENOMEM. */
tw_task_t *tw_cooperator_cooperate(tw_cooperator_t *c, tw_task_step_cb step, void *arg,
                                   tw_free_cb arg_free);

/* Twisted's coiterate(): cooperate() and when_done() in one, keeping no
 * reference to the task.  Returns the completion Deferred (rule 7), or NULL
 * on -ENOMEM (then arg stays the caller's). */
tw_deferred_t *tw_coiterate(tw_cooperator_t *c, tw_task_step_cb step, void *arg,
                            tw_free_cb arg_free);

/* Pause: no step runs until as many resumes as pauses were made (a step in
 * progress completes).  Returns 0, or -EALREADY when t has finished. */
int tw_task_pause(tw_task_t *t);

/* Undo one pause.  Returns 0, -EINVAL when t is not paused, or -ENOMEM. */
int tw_task_resume(tw_task_t *t);

/* Finish t now: no further step; its completion Deferreds errback with "task
 * stopped" (-ECANCELED) before this returns.  Safe from t's own step.
 * Returns 0, or -EALREADY when t has already finished. */
int tw_task_stop(tw_task_t *t);

/* Twisted's whenDone(): a new Deferred (rule 7) for the task's completion;
 * each call returns a new one.  Already fired when t has finished.  NULL on
 * -ENOMEM. */
tw_deferred_t *tw_task_when_done(tw_task_t *t);

tw_task_state_t tw_task_state(const tw_task_t *t);

/* Take or drop a reference (rule 5).  ref returns t; unref accepts NULL. */
tw_task_t *tw_task_ref(tw_task_t *t);
void tw_task_unref(tw_task_t *t);

#endif
