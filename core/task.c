/* task.c -- LoopingCall and Cooperator (tw_task.h), after Twisted's
 * twisted/internet/task.py.
 *
 * A looping call is one embedded timer placed on the grid start + k *
 * interval; each firing works out k from the reactor's time, so the
 * intervals missed are counted instead of replayed.
 *
 * A cooperator keeps its unfinished tasks in two circular lists, `ring` (the
 * running ones) and `paused`; a task is in exactly one of them until it
 * finishes, in none after.  As in Twisted's list of tasks, new and resumed
 * tasks go at the end (before the head of `ring`), and `cursor`, the next to
 * step, goes round and carries over from one burst to the next.  `busy`
 * counts the cooperator's own frames (a burst, a stop) so that a free from a
 * callback waits for them. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>

#include "tw_log.h"
#include "tw_task.h"

/* ---- LoopingCall ------------------------------------------------------------ */

static void task_lc_fire(tw_timer_t *timer, void *arg);

void tw_looping_call_init(tw_looping_call_t *lc, tw_reactor_t *r, tw_looping_call_cb fn,
                          void *arg)
{
    *lc = (tw_looping_call_t){ .r = r, .fn = fn, .arg = arg };
    tw_timer_init(&lc->timer, r, task_lc_fire, lc);
}

/* start + k * interval, saturating at TW_TIME_MAX. */
static tw_time_t task_lc_grid(const tw_looping_call_t *lc, int64_t k)
{
    if (k > (TW_TIME_MAX - lc->start) / lc->interval)
        return TW_TIME_MAX;
    return lc->start + k * lc->interval;
}

/* The loop is over: fire the Deferred (NULL, or the failure for code < 0). */
static void task_lc_end(tw_looping_call_t *lc, int code)
{
    tw_deferred_t *d = lc->d;
    lc->d = NULL;
    lc->running = false;
    tw_timer_cancel(&lc->timer);
    /* From here on lc may be freed by d's callbacks: only d is touched. */
    if (code < 0)
        tw_deferred_errback(d, tw_failure_new("task", code, "looping call failed: %s",
                                              tw_strerror(code)));
    else
        tw_deferred_callback(d, NULL, NULL);
    tw_deferred_unref(d);
}

/* Call fn if a new interval has begun, then schedule the next call. */
static void task_lc_call(tw_looping_call_t *lc, tw_time_t now)
{
    int64_t k = lc->interval ? (now - lc->start) / lc->interval : lc->last + 1;
    if (k > lc->last) {
        lc->count = lc->interval ? (uint64_t)(k - lc->last) : 1;
        lc->last = k;
        lc->in_call = true;
        int rc = lc->fn(lc, lc->arg);
        lc->in_call = false;
        if (rc < 0 || !lc->running) {
            task_lc_end(lc, rc < 0 ? rc : 0);
            return;
        }
    }
    int rc = lc->interval ? tw_timer_start_at(&lc->timer, task_lc_grid(lc, lc->last + 1))
                          : tw_timer_start(&lc->timer, 0);
    if (rc < 0)
        task_lc_end(lc, rc);
}

static void task_lc_fire(tw_timer_t *timer, void *arg)
{
    (void)timer;
    tw_looping_call_t *lc = arg;
    task_lc_call(lc, tw_reactor_now(lc->r));
}

tw_deferred_t *tw_looping_call_start(tw_looping_call_t *lc, tw_time_t interval, bool now)
{
    if (lc->running || lc->in_call || interval < 0)
        return NULL;
    tw_deferred_t *d = tw_deferred_new(NULL, NULL);
    if (!d)
        return NULL;
    lc->interval = interval;
    lc->start = tw_reactor_now(lc->r);
    lc->last = now ? -1 : 0; /* with `now`, the call at start is interval 0's */
    lc->count = 0;
    if (!now) {
        int rc = interval ? tw_timer_start_at(&lc->timer, task_lc_grid(lc, 1))
                          : tw_timer_start(&lc->timer, 0);
        if (rc < 0) {
            tw_deferred_unref(d);
            return NULL;
        }
    }
    lc->d = tw_deferred_ref(d);
    lc->running = true;
    if (now)
        task_lc_call(lc, lc->start); /* d has no callbacks yet: lc stays ours */
    return d;
}

int tw_looping_call_stop(tw_looping_call_t *lc)
{
    if (!lc->running)
        return -EALREADY;
    if (lc->in_call)
        lc->running = false; /* task_lc_call ends the loop when fn returns */
    else
        task_lc_end(lc, 0);
    return 0;
}

bool tw_looping_call_running(const tw_looping_call_t *lc)
{
    return lc->running;
}

uint64_t tw_looping_call_count(const tw_looping_call_t *lc)
{
    return lc->count;
}

/* ---- Cooperator ----------------------------------------------------------- */

struct tw_task {
    int refs;
    int pauses;
    tw_task_state_t state;   /* once finished: DONE, FAILED or STOPPED */
    bool in_step;
    tw_cooperator_t *coop;   /* NULL once finished */
    tw_task_step_cb step;
    void *arg;
    tw_free_cb arg_free;
    tw_failure_t *failure;   /* FAILED, STOPPED: what when_done reports */
    tw_task_t *prev, *next;  /* in coop->ring or coop->paused */
    tw_deferred_t **waiters; /* when_done Deferreds (references) */
    size_t nwait, wcap;
};

struct tw_cooperator {
    tw_reactor_t *r;
    tw_timer_t timer;        /* the next burst */
    tw_time_t budget;
    tw_task_t *ring;         /* running tasks */
    tw_task_t *cursor;       /* in ring: the next to step */
    tw_task_t *paused;
    size_t ntasks;
    int busy;                /* frames of ours on the stack */
    bool stopped, dying;
};

static void task_tick(tw_timer_t *timer, void *arg);

/* Insert t before *head (at the end of the list), or remove it. */
static void task_ring_add(tw_task_t **head, tw_task_t *t)
{
    if (!*head) {
        t->prev = t->next = t;
        *head = t;
        return;
    }
    t->next = *head;
    t->prev = (*head)->prev;
    t->prev->next = t;
    (*head)->prev = t;
}

static void task_ring_del(tw_task_t **head, tw_task_t *t)
{
    if (t->next == t) {
        *head = NULL;
    } else {
        t->prev->next = t->next;
        t->next->prev = t->prev;
        if (*head == t)
            *head = t->next;
    }
    t->prev = t->next = NULL;
}

/* Make sure a burst is coming if anything can run. */
static int task_reschedule(tw_cooperator_t *c)
{
    if (!c->ring || c->busy || tw_timer_active(&c->timer))
        return 0;
    return tw_timer_start(&c->timer, 1);
}

static void task_link(tw_task_t *t)
{
    tw_cooperator_t *c = t->coop;
    task_ring_add(t->pauses ? &c->paused : &c->ring, t);
    if (!c->cursor && !t->pauses)
        c->cursor = t;
}

static void task_unlink(tw_task_t *t)
{
    tw_cooperator_t *c = t->coop;
    if (t->pauses) {
        task_ring_del(&c->paused, t);
        return;
    }
    if (c->cursor == t)
        c->cursor = t->next != t ? t->next : NULL;
    task_ring_del(&c->ring, t);
    if (!c->ring)
        tw_timer_cancel(&c->timer);
}

static void task_drop_arg(tw_task_t *t)
{
    tw_free_cb f = t->arg_free;
    t->arg_free = NULL;
    if (f)
        f(t->arg);
}

/* Finish a live task: fire its waiters, free its arg (unless its step is
 * running), drop the cooperator's reference.  Touches c only before firing. */
static void task_finish(tw_task_t *t, tw_task_state_t state, tw_failure_t *f)
{
    task_unlink(t);
    t->coop->ntasks--;
    t->coop = NULL;
    t->state = state;
    t->failure = f;
    tw_deferred_t **w = t->waiters;
    size_t n = t->nwait;
    t->waiters = NULL;
    t->nwait = t->wcap = 0;
    for (size_t i = 0; i < n; i++) {
        if (state == TW_TASK_STATE_DONE)
            tw_deferred_callback(w[i], NULL, NULL);
        else /* a NULL copy stands for -ENOMEM (tw_deferred.h) */
            tw_deferred_errback(w[i], tw_failure_copy(f));
        tw_deferred_unref(w[i]);
    }
    free(w);
    if (!t->in_step)
        task_drop_arg(t);
    tw_task_unref(t);
}

static tw_failure_t *task_stopped(const char *what)
{
    return tw_failure_new("task", -ECANCELED, "%s stopped", what);
}

/* Leave a frame of ours; free c if it was freed meanwhile.  True if gone. */
static bool task_coop_leave(tw_cooperator_t *c)
{
    if (--c->busy || !c->dying)
        return false;
    tw_timer_cancel(&c->timer);
    free(c);
    return true;
}

/* Run one step of t; finish it if the step says so. */
static void task_step(tw_task_t *t)
{
    t->refs++; /* the step may stop t and drop every other reference */
    t->in_step = true;
    int rc = t->step(t->arg);
    t->in_step = false;
    if (!t->coop)
        task_drop_arg(t); /* finished during its own step */
    else if (rc == TW_TASK_DONE)
        task_finish(t, TW_TASK_STATE_DONE, NULL);
    else if (rc < 0)
        task_finish(t, TW_TASK_STATE_FAILED,
                    tw_failure_new("task", rc, "task failed: %s", tw_strerror(rc)));
    tw_task_unref(t);
}

static void task_tick(tw_timer_t *timer, void *arg)
{
    (void)timer;
    tw_cooperator_t *c = arg;
    c->busy++;
    tw_time_t end = tw_time_now() + c->budget;
    while (c->cursor) {
        tw_task_t *t = c->cursor;
        c->cursor = t->next; /* the cursor moves on first */
        task_step(t);
        if (tw_time_now() >= end)
            break;
    }
    if (task_coop_leave(c))
        return;
    if (task_reschedule(c) < 0) {
        tw_log(TW_LOG_ERROR, "task", "cannot schedule the cooperator: out of memory");
        c->busy++;
        while (c->ring)
            task_finish(c->ring, TW_TASK_STATE_FAILED,
                        tw_failure_new("task", -ENOMEM, "cooperator could not schedule"));
        task_coop_leave(c);
    }
}

tw_cooperator_t *tw_cooperator_new(tw_reactor_t *r)
{
    tw_cooperator_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->r = r;
    c->budget = TW_COOPERATOR_BUDGET;
    tw_timer_init(&c->timer, r, task_tick, c);
    return c;
}

void tw_cooperator_stop(tw_cooperator_t *c)
{
    c->busy++;
    c->stopped = true;
    while (c->ring || c->paused)
        task_finish(c->ring ? c->ring : c->paused, TW_TASK_STATE_STOPPED,
                    task_stopped("cooperator"));
    tw_timer_cancel(&c->timer);
    task_coop_leave(c);
}

void tw_cooperator_free(tw_cooperator_t *c)
{
    if (!c || c->dying)
        return;
    c->dying = true;
    c->busy++;
    tw_cooperator_stop(c);
    task_coop_leave(c);
}

void tw_cooperator_set_budget(tw_cooperator_t *c, tw_time_t budget)
{
    c->budget = budget < 0 ? 0 : budget;
}

bool tw_cooperator_running(const tw_cooperator_t *c)
{
    return !c->stopped;
}

size_t tw_cooperator_task_count(const tw_cooperator_t *c)
{
    return c->ntasks;
}

/* A new task, with one when_done Deferred in *d if d is not NULL; running,
 * or finished at once if c is stopped.  NULL (nothing taken) on -ENOMEM. */
static tw_task_t *task_new(tw_cooperator_t *c, tw_task_step_cb step, void *arg,
                           tw_free_cb arg_free, tw_deferred_t **d)
{
    tw_task_t *t = malloc(sizeof *t);
    if (!t)
        return NULL;
    *t = (tw_task_t){ .refs = 2, .coop = c, .step = step, .arg = arg, .arg_free = arg_free };
    if (d) {
        t->waiters = malloc(sizeof *t->waiters);
        *d = t->waiters ? tw_deferred_new(NULL, NULL) : NULL;
        if (!*d) {
            free(t->waiters);
            free(t);
            return NULL;
        }
        t->waiters[0] = tw_deferred_ref(*d);
        t->nwait = t->wcap = 1;
    }
    task_link(t);
    c->ntasks++;
    if (!c->stopped && task_reschedule(c) < 0) {
        task_unlink(t);
        c->ntasks--;
        if (d) {
            tw_deferred_unref(*d);
            tw_deferred_unref(*d);
        }
        free(t->waiters);
        free(t);
        return NULL;
    }
    if (c->stopped)
        task_finish(t, TW_TASK_STATE_STOPPED, task_stopped("cooperator"));
    return t;
}

tw_task_t *tw_cooperator_cooperate(tw_cooperator_t *c, tw_task_step_cb step, void *arg,
                                   tw_free_cb arg_free)
{
    return task_new(c, step, arg, arg_free, NULL);
}

tw_deferred_t *tw_coiterate(tw_cooperator_t *c, tw_task_step_cb step, void *arg,
                            tw_free_cb arg_free)
{
    tw_deferred_t *d;
    tw_task_t *t = task_new(c, step, arg, arg_free, &d);
    if (!t)
        return NULL;
    tw_task_unref(t);
    return d;
}

int tw_task_pause(tw_task_t *t)
{
    if (!t->coop)
        return -EALREADY;
    if (t->pauses == 0) {
        task_unlink(t);
        t->pauses = 1;
        task_link(t);
    } else {
        t->pauses++;
    }
    return 0;
}

int tw_task_resume(tw_task_t *t)
{
    if (t->pauses == 0)
        return -EINVAL;
    if (t->pauses > 1 || !t->coop) {
        t->pauses--;
        return 0;
    }
    task_unlink(t);
    t->pauses = 0;
    task_link(t);
    int rc = task_reschedule(t->coop);
    if (rc < 0) { /* stay paused */
        task_unlink(t);
        t->pauses = 1;
        task_link(t);
    }
    return rc;
}

int tw_task_stop(tw_task_t *t)
{
    if (!t->coop)
        return -EALREADY;
    task_finish(t, TW_TASK_STATE_STOPPED, task_stopped("task"));
    return 0;
}

tw_deferred_t *tw_task_when_done(tw_task_t *t)
{
    if (!t->coop) {
        if (t->state == TW_TASK_STATE_DONE)
            return tw_deferred_succeed(NULL, NULL);
        tw_failure_t *f = tw_failure_copy(t->failure);
        return f ? tw_deferred_fail(f) : NULL;
    }
    if (t->nwait == t->wcap) {
        size_t cap = t->wcap ? 2 * t->wcap : 2;
        tw_deferred_t **w = realloc(t->waiters, cap * sizeof *w);
        if (!w)
            return NULL;
        t->waiters = w;
        t->wcap = cap;
    }
    tw_deferred_t *d = tw_deferred_new(NULL, NULL);
    if (!d)
        return NULL;
    t->waiters[t->nwait++] = tw_deferred_ref(d);
    return d;
}

tw_task_state_t tw_task_state(const tw_task_t *t)
{
    if (!t->coop)
        return t->state;
    return t->pauses ? TW_TASK_STATE_PAUSED : TW_TASK_STATE_RUNNING;
}

tw_task_t *tw_task_ref(tw_task_t *t)
{
    t->refs++;
    return t;
}

void tw_task_unref(tw_task_t *t)
{
    if (!t || --t->refs > 0)
        return;
    tw_failure_free(t->failure);
    free(t->waiters);
    free(t);
}
