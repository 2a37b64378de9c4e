/* deferred.c -- Deferreds: the chain, chaining, cancellation, timeouts and
 * lists.  The lock, semaphore and queue live in defer_sync.c.
 *
 * The chain runs as Twisted's _runCallbacks does: iteratively, with a stack
 * of the Deferreds met while a result travels from an inner Deferred to the
 * outer ones waiting on it, so a long chain of chains uses no C stack.  The
 * stack is intrusive (run_below); a Deferred on it is "busy": it is never
 * re-entered, and steps added to it meanwhile run when the stack gets back
 * to it. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tw_deferred.h"
#include "tw_log.h"

/* One step of a chain, or a continuation: hand the result to `waiter`, an
 * outer Deferred waiting on this one (the step holds a reference to it). */
typedef struct deferred_step {
    tw_deferred_cb cb, eb;
    void *a1, *a2;
    tw_deferred_args_free_cb args_free;
    tw_deferred_t *waiter;
} deferred_step_t;

struct tw_deferred {
    int refs;
    int paused;               /* user pauses only; waiting is result.kind == CHAIN */
    bool called;
    bool busy;                /* on a run stack */
    bool suppress;            /* cancelled without canceller: swallow one fire */
    tw_outcome_t result;      /* OK/FAIL once called; CHAIN (chain NULL): waiting */
    tw_deferred_t *waiting_on; /* weak: cleared when our continuation leaves it */
    tw_deferred_t *run_below; /* the run stack */
    deferred_step_t *steps;   /* FIFO: steps[head..n) are pending */
    size_t head, n, cap;
    tw_deferred_canceller_cb canceller;
    void *canceller_arg;
    void (*canceller_free)(void *arg); /* internal users: frees canceller_arg */
};

/* ---- failures, misuse, unhandled reports --------------------------------- */

static pthread_mutex_t deferred_hook_lock = PTHREAD_MUTEX_INITIALIZER;
static tw_deferred_unhandled_cb deferred_hook;
static void *deferred_hook_arg;

static void deferred_misuse(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void deferred_misuse(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tw_logv(TW_LOG_ERROR, "deferred", fmt, ap);
    va_end(ap);
#ifndef NDEBUG
    abort();
#endif
}

/* A failure must exist for the errback track to mean anything; when even
 * that allocation fails there is no way to go on. */
static tw_failure_t *deferred_oom(void)
{
    tw_failure_t *f = tw_failure_new("deferred", -ENOMEM, NULL);
    if (!f) {
        tw_log(TW_LOG_ERROR, "deferred", "out of memory for a failure");
        abort();
    }
    return f;
}

static tw_failure_t *deferred_cancelled(void)
{
    tw_failure_t *f = tw_failure_new("deferred", -ECANCELED, "Deferred was cancelled");
    return f ? f : deferred_oom();
}

static bool deferred_is_cancelled(const tw_failure_t *f)
{
    return f->code == -ECANCELED && strcmp(f->domain, "deferred") == 0;
}

void tw_deferred_set_unhandled_hook(tw_deferred_unhandled_cb hook, void *arg)
{
    pthread_mutex_lock(&deferred_hook_lock);
    deferred_hook = hook;
    deferred_hook_arg = arg;
    pthread_mutex_unlock(&deferred_hook_lock);
}

static void deferred_report(const tw_failure_t *f)
{
    char causes[512] = "";
    size_t len = 0;
    for (const tw_failure_t *c = f->cause; c && len < sizeof causes; c = c->cause) {
        int k = snprintf(causes + len, sizeof causes - len, "; caused by [%s] %s (%d)",
                         c->domain, c->message, c->code);
        len += k > 0 ? (size_t)k : 0;
    }
    tw_log(TW_LOG_ERROR, "deferred", "Unhandled error in Deferred: [%s] %s (%d)%s", f->domain,
           f->message, f->code, causes);
    pthread_mutex_lock(&deferred_hook_lock);
    tw_deferred_unhandled_cb hook = deferred_hook;
    void *arg = deferred_hook_arg;
    pthread_mutex_unlock(&deferred_hook_lock);
    if (hook)
        hook(f, arg);
}

void tw_outcome_discard(tw_outcome_t o)
{
    switch (o.kind) {
    case TW_OUTCOME_OK:
        if (o.free)
            o.free(o.ptr);
        break;
    case TW_OUTCOME_FAIL:
        tw_failure_free(o.failure);
        break;
    case TW_OUTCOME_CHAIN:
        tw_deferred_unref(o.chain);
        break;
    case TW_OUTCOME_PENDING:
        break;
    }
}

/* ---- life ------------------------------------------------------------------ */

tw_deferred_t *tw_deferred_new(tw_deferred_canceller_cb canceller, void *arg)
{
    tw_deferred_t *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->refs = 1;
    d->canceller = canceller;
    d->canceller_arg = arg;
    return d;
}

tw_deferred_t *tw_deferred_ref(tw_deferred_t *d)
{
    d->refs++;
    return d;
}

/* Free d.  A waiter whose last reference was our continuation is not freed
 * here but queued on *worklist (linked through run_below), so that dropping a
 * chain of a million unfired Deferreds takes no C stack. */
static void deferred_free(tw_deferred_t *d, tw_deferred_t **worklist)
{
    if (d->called && d->result.kind == TW_OUTCOME_FAIL)
        deferred_report(d->result.failure);
    tw_outcome_discard(d->result);
    /* Dropping steps runs user code (args_free): d is already unreachable,
     * so nothing can add to its steps meanwhile. */
    for (size_t i = d->head; i < d->n; i++) {
        deferred_step_t *s = &d->steps[i];
        if (s->waiter) {
            tw_deferred_t *w = s->waiter;
            if (w->waiting_on == d)
                w->waiting_on = NULL;
            if (--w->refs == 0) {
                w->run_below = *worklist;
                *worklist = w;
            }
        } else if (s->args_free) {
            s->args_free(s->a1, s->a2);
        }
    }
    if (d->canceller_free)
        d->canceller_free(d->canceller_arg);
    free(d->steps);
    free(d);
}

void tw_deferred_unref(tw_deferred_t *d)
{
    if (!d || --d->refs > 0)
        return;
    d->run_below = NULL;
    while (d) {
        tw_deferred_t *next = d->run_below;
        deferred_free(d, &next);
        d = next;
    }
}

bool tw_deferred_called(const tw_deferred_t *d)
{
    return d->called;
}

const tw_outcome_t *tw_deferred_result(const tw_deferred_t *d)
{
    if (!d->called || d->busy || d->result.kind == TW_OUTCOME_CHAIN || d->head < d->n)
        return NULL;
    return &d->result;
}

/* ---- running the chain ------------------------------------------------------ */

static int deferred_push_step(tw_deferred_t *d, const deferred_step_t *s)
{
    if (d->head == d->n) {
        d->head = d->n = 0;
    } else if (d->n == d->cap && d->head > 0) {
        memmove(d->steps, d->steps + d->head, (d->n - d->head) * sizeof *d->steps);
        d->n -= d->head;
        d->head = 0;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        deferred_step_t *v = realloc(d->steps, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        d->steps = v;
        d->cap = cap;
    }
    d->steps[d->n++] = *s;
    return 0;
}

/* Store what a step returned as d's result.  A Deferred that already has a
 * result is stolen from (it keeps NULL); otherwise d waits on it: a
 * continuation step is appended to it, holding a reference to d. */
static void deferred_settle(tw_deferred_t *d, tw_outcome_t out)
{
    if (out.kind == TW_OUTCOME_OK) {
        d->result = out;
        return;
    }
    if (out.kind == TW_OUTCOME_FAIL) {
        d->result = TW_FAIL(out.failure ? out.failure : deferred_oom());
        return;
    }
    tw_deferred_t *in = out.chain;
    if (out.kind != TW_OUTCOME_CHAIN || in == d) {
        deferred_misuse("a callback returned %s", in == d && out.kind == TW_OUTCOME_CHAIN
                        ? "the Deferred it is attached to" : "an outcome of unknown kind");
        tw_outcome_discard(out);
        tw_failure_t *f = tw_failure_new("deferred", -EINVAL, "callback returned a bad outcome");
        d->result = TW_FAIL(f ? f : deferred_oom());
        return;
    }
    if (!in) {
        d->result = TW_FAIL(deferred_oom());
        return;
    }
    if (in->called && !in->busy && !in->paused && in->result.kind != TW_OUTCOME_CHAIN) {
        d->result = in->result;
        in->result = TW_OK(NULL, NULL);
        tw_deferred_unref(in);
        return;
    }
    if (deferred_push_step(in, &(deferred_step_t){ .waiter = d }) < 0) {
        tw_deferred_unref(in);
        d->result = TW_FAIL(deferred_oom());
        return;
    }
    tw_deferred_ref(d);
    d->result = TW_CHAIN(NULL);
    d->waiting_on = in;
    tw_deferred_unref(in); /* may free in, and with it our continuation */
}

static void deferred_run(tw_deferred_t *d)
{
    if (d->busy)
        return;
    d->busy = true;
    d->run_below = NULL;
    tw_deferred_t *cur = tw_deferred_ref(d);
    while (cur) {
        bool finished = true;
        while (!cur->paused && cur->result.kind != TW_OUTCOME_CHAIN && cur->head < cur->n) {
            deferred_step_t s = cur->steps[cur->head++];
            if (s.waiter) {
                /* Give our result to the Deferred waiting on us and run it
                 * now; the step's reference moves to the stack.  (Twisted
                 * stops the whole stack if that one is paused; we go on
                 * with the rest of ours.) */
                tw_deferred_t *w = s.waiter;
                w->result = cur->result;
                cur->result = TW_OK(NULL, NULL);
                w->waiting_on = NULL;
                w->busy = true;
                w->run_below = cur;
                cur = w;
                finished = false;
                break;
            }
            tw_deferred_cb fn = cur->result.kind == TW_OUTCOME_FAIL ? s.eb : s.cb;
            if (!fn) {
                if (s.args_free)
                    s.args_free(s.a1, s.a2);
                continue;
            }
            tw_outcome_t in = cur->result;
            cur->result = TW_OK(NULL, NULL);
            deferred_settle(cur, fn(in, s.a1, s.a2));
        }
        if (finished) {
            if (cur->head == cur->n)
                cur->head = cur->n = 0;
            tw_deferred_t *below = cur->run_below;
            cur->busy = false;
            cur->run_below = NULL;
            tw_deferred_unref(cur);
            cur = below;
        }
    }
}

/* ---- firing, adding, pausing, cancelling ------------------------------------ */

int tw_deferred_fire(tw_deferred_t *d, tw_outcome_t o)
{
    if (o.kind != TW_OUTCOME_OK && o.kind != TW_OUTCOME_FAIL) {
        deferred_misuse("a Deferred can only be fired with a value or a failure");
        tw_outcome_discard(o);
        return -EINVAL;
    }
    if (o.kind == TW_OUTCOME_FAIL && !o.failure)
        o.failure = deferred_oom();
    if (d->called) {
        tw_outcome_discard(o);
        if (d->suppress) {
            d->suppress = false;
            return 0;
        }
        deferred_misuse("a Deferred was fired twice (callback or errback after it had fired)");
        return -EALREADY;
    }
    d->called = true;
    d->result = o;
    deferred_run(d);
    return 0;
}

int tw_deferred_callback(tw_deferred_t *d, void *ptr, tw_free_cb dtor)
{
    return tw_deferred_fire(d, TW_OK(ptr, dtor));
}

int tw_deferred_errback(tw_deferred_t *d, tw_failure_t *f)
{
    return tw_deferred_fire(d, TW_FAIL(f));
}

tw_deferred_t *tw_deferred_succeed(void *ptr, tw_free_cb dtor)
{
    tw_deferred_t *d = tw_deferred_new(NULL, NULL);
    if (d)
        tw_deferred_callback(d, ptr, dtor);
    else if (dtor)
        dtor(ptr);
    return d;
}

tw_deferred_t *tw_deferred_fail(tw_failure_t *f)
{
    tw_deferred_t *d = tw_deferred_new(NULL, NULL);
    if (d)
        tw_deferred_errback(d, f);
    else
        tw_failure_free(f);
    return d;
}

int tw_deferred_add_callbacks(tw_deferred_t *d, tw_deferred_cb cb, tw_deferred_cb eb,
                              void *a1, void *a2, tw_deferred_args_free_cb args_free)
{
    deferred_step_t s = { .cb = cb, .eb = eb, .a1 = a1, .a2 = a2, .args_free = args_free };
    if (deferred_push_step(d, &s) < 0)
        return -ENOMEM;
    if (d->called)
        deferred_run(d);
    return 0;
}

int tw_deferred_add_callback(tw_deferred_t *d, tw_deferred_cb cb, void *a1, void *a2)
{
    return tw_deferred_add_callbacks(d, cb, NULL, a1, a2, NULL);
}

int tw_deferred_add_errback(tw_deferred_t *d, tw_deferred_cb eb, void *a1, void *a2)
{
    return tw_deferred_add_callbacks(d, NULL, eb, a1, a2, NULL);
}

int tw_deferred_add_both(tw_deferred_t *d, tw_deferred_cb fn, void *a1, void *a2)
{
    return tw_deferred_add_callbacks(d, fn, fn, a1, a2, NULL);
}

static tw_outcome_t deferred_chain_step(tw_outcome_t in, void *to, void *unused)
{
    tw_deferred_fire(to, in);
    tw_deferred_unref(to);
    return TW_OK(NULL, NULL);
}

static void deferred_chain_drop(void *to, void *unused)
{
    tw_deferred_unref(to);
}

int tw_deferred_chain(tw_deferred_t *d, tw_deferred_t *to)
{
    tw_deferred_ref(to);
    int rc = tw_deferred_add_callbacks(d, deferred_chain_step, deferred_chain_step, to, NULL,
                                       deferred_chain_drop);
    if (rc < 0)
        tw_deferred_unref(to);
    return rc;
}

void tw_deferred_pause(tw_deferred_t *d)
{
    d->paused++;
}

void tw_deferred_unpause(tw_deferred_t *d)
{
    if (d->paused <= 0) {
        deferred_misuse("tw_deferred_unpause on a Deferred that is not paused");
        return;
    }
    if (--d->paused == 0 && d->called)
        deferred_run(d);
}

void tw_deferred_cancel(tw_deferred_t *d)
{
    tw_deferred_ref(d);
    if (!d->called) {
        if (d->canceller)
            d->canceller(d, d->canceller_arg);
        else
            d->suppress = true; /* eat the operation's own fire, when it comes */
        if (!d->called)
            tw_deferred_errback(d, deferred_cancelled());
    } else if (d->result.kind == TW_OUTCOME_CHAIN) {
        if (d->waiting_on) {
            tw_deferred_cancel(d->waiting_on);
        } else {
            /* What we waited on was freed unfired: nothing can cancel it,
             * so go on as if it had no canceller. */
            d->result = TW_FAIL(deferred_cancelled());
            deferred_run(d);
        }
    }
    tw_deferred_unref(d);
}

/* ---- time ------------------------------------------------------------------- */

typedef struct deferred_timeout {
    tw_timer_t *timer; /* NULL once it fired */
    tw_deferred_t *d;
    tw_time_t delay;
    bool timed_out;
} deferred_timeout_t;

static void deferred_timeout_fire(tw_timer_t *t, void *arg)
{
    deferred_timeout_t *to = arg;
    tw_deferred_t *d = to->d; /* `to` may be freed by the cancel */
    to->timer = NULL;
    to->timed_out = true;
    tw_deferred_cancel(d);
    tw_deferred_unref(d); /* the timer's reference */
}

static tw_outcome_t deferred_timeout_step(tw_outcome_t in, void *arg, void *unused)
{
    deferred_timeout_t *to = arg;
    if (to->timed_out && in.kind == TW_OUTCOME_FAIL && deferred_is_cancelled(in.failure)) {
        tw_failure_t *f = tw_failure_new("deferred", -ETIMEDOUT, "timed out after %g s",
                                         (double)to->delay / 1e9);
        in = TW_FAIL(tw_failure_wrap(f, in.failure));
    }
    if (to->timer) { /* fired first: the timeout is moot */
        tw_timer_cancel(to->timer);
        tw_deferred_unref(to->d);
    }
    free(to);
    return in;
}

static void deferred_timeout_drop(void *arg, void *unused)
{
    free(arg); /* d was freed after the timer fired (it was paused) */
}

int tw_deferred_add_timeout(tw_deferred_t *d, tw_reactor_t *r, tw_time_t delay)
{
    deferred_timeout_t *to = calloc(1, sizeof *to);
    if (!to)
        return -ENOMEM;
    to->d = d;
    to->delay = delay;
    to->timer = tw_reactor_call_later(r, delay, deferred_timeout_fire, to);
    if (!to->timer) {
        free(to);
        return -ENOMEM;
    }
    tw_deferred_ref(d);
    if (tw_deferred_add_callbacks(d, deferred_timeout_step, deferred_timeout_step, to, NULL,
                                  deferred_timeout_drop) < 0) {
        tw_timer_cancel(to->timer);
        free(to);
        tw_deferred_unref(d);
        return -ENOMEM;
    }
    return 0;
}

/* defer_later: the canceller's argument is the timer, until it fires. */
static void deferred_later_fire(tw_timer_t *t, void *arg)
{
    tw_deferred_t *d = arg;
    d->canceller_arg = NULL;
    tw_deferred_callback(d, NULL, NULL);
    tw_deferred_unref(d); /* the timer's reference */
}

static void deferred_later_cancel(tw_deferred_t *d, void *timer)
{
    tw_timer_cancel(timer);
    d->canceller_arg = NULL;
    tw_deferred_unref(d); /* the timer's; tw_deferred_cancel holds one too */
}

tw_deferred_t *tw_defer_later(tw_reactor_t *r, tw_time_t delay, tw_deferred_cb fn,
                              void *a1, void *a2)
{
    tw_deferred_t *d = tw_deferred_new(deferred_later_cancel, NULL);
    if (!d)
        return NULL;
    tw_timer_t *t = NULL;
    if ((fn && tw_deferred_add_callback(d, fn, a1, a2) < 0) ||
        !(t = tw_reactor_call_later(r, delay, deferred_later_fire, d))) {
        tw_deferred_unref(d);
        return NULL;
    }
    d->canceller_arg = t;
    return tw_deferred_ref(d);
}

/* ---- lists ------------------------------------------------------------------ */

/* Owned by the list's Deferred (freed with it); every member's step holds a
 * reference to that Deferred, so this outlives the steps. */
typedef struct deferred_list {
    tw_deferred_t *d;
    tw_deferred_list_result_t *res; /* NULL once handed on or freed */
    unsigned flags;
    size_t n, finished;
    tw_deferred_t *ds[]; /* weak: NULL once the member's step ended */
} deferred_list_t;

void tw_deferred_list_result_free(void *arg)
{
    tw_deferred_list_result_t *res = arg;
    if (!res)
        return;
    for (size_t i = 0; i < res->n; i++)
        tw_outcome_discard(res->items[i]);
    free(res);
}

static void deferred_list_free(void *arg)
{
    deferred_list_t *l = arg;
    tw_deferred_list_result_free(l->res);
    free(l);
}

static void deferred_list_fire(deferred_list_t *l, tw_outcome_t o)
{
    l->res = NULL;
    tw_deferred_fire(l->d, o);
}

/* Record member i's outcome while the list has not fired, and fire the list
 * when that decides it; returns what the member's own chain goes on with. */
static tw_outcome_t deferred_list_take(deferred_list_t *l, size_t i, tw_outcome_t in)
{
    tw_deferred_list_result_t *res = l->res;
    tw_outcome_t pass = TW_OK(NULL, NULL);
    l->finished++;
    if (in.kind == TW_OUTCOME_FAIL && !(l->flags & TW_DL_CONSUME_ERRORS))
        pass = TW_FAIL(tw_failure_copy(in.failure)); /* NULL: out of memory */
    if (in.kind == TW_OUTCOME_FAIL && (l->flags & TW_DL_FIRE_ON_ONE_ERRBACK)) {
        tw_failure_t *f = in.failure;
        tw_failure_t *first = tw_failure_new("deferred", f->code, "Deferred %zu of %zu failed: %s",
                                             i, l->n, f->message);
        tw_deferred_list_result_free(res);
        deferred_list_fire(l, TW_FAIL(tw_failure_wrap(first, f)));
        return pass;
    }
    res->items[i] = in;
    if (in.kind == TW_OUTCOME_OK && (l->flags & TW_DL_FIRE_ON_ONE_CALLBACK)) {
        res->index = i;
        deferred_list_fire(l, TW_OK(res, tw_deferred_list_result_free));
    } else if (l->finished == l->n) {
        deferred_list_fire(l, TW_OK(res, tw_deferred_list_result_free));
    }
    return pass;
}

static tw_outcome_t deferred_list_step(tw_outcome_t in, void *arg, void *index)
{
    deferred_list_t *l = arg;
    tw_deferred_t *ld = l->d;
    size_t i = (size_t)(uintptr_t)index;
    l->ds[i] = NULL;
    if (!ld->called && l->res) {
        in = deferred_list_take(l, i, in);
    } else if (in.kind == TW_OUTCOME_FAIL && (l->flags & TW_DL_CONSUME_ERRORS)) {
        tw_outcome_discard(in);
        in = TW_OK(NULL, NULL);
    }
    tw_deferred_unref(ld); /* the step's reference; may free l */
    return in;
}

static void deferred_list_drop(void *arg, void *index)
{
    deferred_list_t *l = arg;
    l->ds[(size_t)(uintptr_t)index] = NULL;
    tw_deferred_unref(l->d);
}

static void deferred_list_cancel(tw_deferred_t *ld, void *arg)
{
    deferred_list_t *l = arg;
    for (size_t i = 0; i < l->n; i++)
        if (l->ds[i])
            tw_deferred_cancel(l->ds[i]);
}

tw_deferred_t *tw_deferred_list(tw_deferred_t *const *ds, size_t n, unsigned flags)
{
    deferred_list_t *l = calloc(1, sizeof *l + n * sizeof *ds);
    tw_deferred_list_result_t *res = malloc(sizeof *res + n * sizeof res->items[0]);
    tw_deferred_t *ld = l && res ? tw_deferred_new(deferred_list_cancel, l) : NULL;
    if (!ld) {
        free(l);
        free(res);
        return NULL;
    }
    ld->canceller_free = deferred_list_free;
    res->n = res->index = n;
    for (size_t i = 0; i < n; i++)
        res->items[i] = (tw_outcome_t){ .kind = TW_OUTCOME_PENDING };
    l->d = ld;
    l->res = res;
    l->flags = flags;
    l->n = n;
    if (n == 0 && !(flags & TW_DL_FIRE_ON_ONE_CALLBACK))
        deferred_list_fire(l, TW_OK(res, tw_deferred_list_result_free));
    for (size_t i = 0; i < n; i++) {
        deferred_step_t s = { .cb = deferred_list_step, .eb = deferred_list_step, .a1 = l,
                              .a2 = (void *)(uintptr_t)i, .args_free = deferred_list_drop };
        if (deferred_push_step(ds[i], &s) < 0) {
            /* The member cannot be watched: count it as failed for lack of
             * memory, as if it had errbacked so. */
            if (!ld->called && l->res)
                tw_outcome_discard(deferred_list_take(l, i, TW_FAIL(deferred_oom())));
            continue;
        }
        tw_deferred_ref(ld);
        l->ds[i] = ds[i];
        if (ds[i]->called)
            deferred_run(ds[i]);
    }
    return ld;
}

tw_deferred_t *tw_deferred_gather(tw_deferred_t *const *ds, size_t n, unsigned flags)
{
    return tw_deferred_list(ds, n, TW_DL_FIRE_ON_ONE_ERRBACK | (flags & TW_DL_CONSUME_ERRORS));
}
